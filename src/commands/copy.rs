//! `imgbuild copy SRC DST`: an image between registries, layouts and archives.

use super::{image_ref, write_report, Context};
use crate::cli::CopyArgs;
use imgbuild::reference::{has_explicit_tag, Reference};
use imgbuild::{Error, Result};

pub(super) fn run(args: CopyArgs, ctx: &Context) -> Result<()> {
    let src = without_default_tag(image_ref(&args.source, "source")?, &args.source);
    let dst = without_default_tag(
        image_ref(&args.destination, "destination")?,
        &args.destination,
    );
    let copied = imgbuild::copy::copy(&src, &dst, &ctx.registry_options())?;
    let text = if args.json {
        serde_json::to_string(&copied).map_err(|e| Error::input(e.to_string()))?
    } else {
        copied.digest.clone()
    };
    write_report(&text)
}

/// A registry reference typed without a tag gets none (the parser fills in `latest`),
/// so that the destination's tag falls back to the source's, as docs/cli.md says.
fn without_default_tag(reference: Reference, typed: &str) -> Reference {
    match reference {
        Reference::Registry(mut r) if !has_explicit_tag(typed) => {
            r.tag = None;
            Reference::Registry(r)
        }
        other => other,
    }
}
