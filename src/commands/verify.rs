//! `imgbuild verify`: rebuild the recipe in a temporary layout and compare it, bit
//! for bit, with a published image. A difference is exit 1 (`Error::differs`) with
//! the explanation `diff` would give on stdout.

use super::diff::print;
use super::{image_ref, write_report, Context};
use crate::cli::VerifyArgs;
use imgbuild::diff::DiffOptions;
use imgbuild::verify::Verdict;
use imgbuild::{Error, Result};

pub(super) fn run(args: VerifyArgs, ctx: &Context) -> Result<()> {
    let against = image_ref(&args.against, "--against")?;
    let mut build = ctx.build_options(&args.recipe, &args.out, &args.inputs)?;
    build.no_cache = true;
    let opts = DiffOptions {
        ignore: Vec::new(),
        registry: ctx.registry_options(),
    };
    match imgbuild::verify::verify(&build, &against, &opts)? {
        Verdict::Verified(report) => {
            if args.json {
                print(&report, true)
            } else {
                write_report(&format!("verified {}", report.b.digest))
            }
        }
        Verdict::Differs(report) => {
            print(&report, args.json)?;
            Err(Error::differs(format!(
                "the rebuild ({}) is not {} ({})",
                report.a.digest, args.against, report.b.digest
            )))
        }
    }
}
