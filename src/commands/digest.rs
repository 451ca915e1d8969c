//! `imgbuild digest REF`: the digest of the image a reference names (its manifest or
//! index), as a CI script needs it after a push (`crane digest`).

use super::{image_ref, write_report, Context};
use crate::cli::DigestArgs;
use imgbuild::Result;

pub(super) fn run(args: DigestArgs, ctx: &Context) -> Result<()> {
    let reference = image_ref(&args.reference, "REF")?;
    let source = imgbuild::source::open(&reference, &ctx.registry_options())?;
    let (digest, _) = source.root()?;
    if args.json {
        write_report(
            &serde_json::json!({
                "reference": reference.to_string(),
                "digest": digest,
            })
            .to_string(),
        )
    } else {
        write_report(&digest.to_string())
    }
}
