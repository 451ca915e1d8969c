//! `imgbuild copy SRC DST`: an image between registries, layouts and archives.

use super::{image_ref, write_report, Context};
use crate::cli::CopyArgs;
use imgbuild::{Error, Result};

pub(super) fn run(args: CopyArgs, ctx: &Context) -> Result<()> {
    let src = image_ref(&args.source, "source")?;
    let dst = image_ref(&args.destination, "destination")?;
    let copied = imgbuild::copy::copy(&src, &dst, &ctx.registry_options())?;
    let text = if args.json {
        serde_json::to_string(&copied).map_err(|e| Error::input(e.to_string()))?
    } else {
        copied.digest.clone()
    };
    write_report(&text)
}
