//! `imgbuild verify`: rebuild the recipe in a temporary layout and compare it, bit
//! for bit, with a published image. A difference is exit 1 (`Error::differs`) with
//! the explanation `diff` would give on stdout.

use super::diff::print;
use super::{image_ref, note, write_report, Context};
use crate::cli::VerifyArgs;
use imgbuild::diff::{DiffOptions, SideFormat};
use imgbuild::format::FormatSource;
use imgbuild::verify::Verdict;
use imgbuild::{Error, Result};

pub(super) fn run(args: VerifyArgs, ctx: &Context) -> Result<()> {
    let against = image_ref(&args.against, "--against")?;
    if let Some(path) = &args.key {
        check_signature(&against, path, &args.against, ctx)?;
    }
    let mut build = ctx.build_options(&args.recipe, &args.out, &args.inputs)?;
    build.no_cache = true;
    let opts = DiffOptions {
        ignore: Vec::new(),
        registry: ctx.registry_options(),
    };
    let v = imgbuild::verify::verify(&build, &against, &opts)?;
    if !ctx.quiet {
        let why = match (v.format_source, v.image_format) {
            (FormatSource::Fallback, SideFormat::Known(_)) => format!(
                "from {}'s {} annotation",
                args.against,
                imgbuild::format::ANNOTATION
            ),
            (FormatSource::Fallback, SideFormat::Unmarked) => format!(
                "{} carries no {} annotation, as format 1 images do",
                args.against,
                imgbuild::format::ANNOTATION
            ),
            (FormatSource::Newest, SideFormat::Known(n)) => format!(
                "the newest: {} names format {n}, which this imgbuild does not build",
                args.against
            ),
            (source, _) => source.describe().to_string(),
        };
        note(&format!("verify: rebuilt with format {} ({why})", v.format));
    }
    match v.verdict {
        Verdict::Verified(report) => {
            if args.json {
                print(&report, true)
            } else {
                write_report(&format!("verified {}", report.b.digest))
            }
        }
        Verdict::Differs(report) => {
            print(&report, args.json)?;
            let mut err = Error::differs(format!(
                "the rebuild ({}) is not {} ({})",
                report.a.digest, args.against, report.b.digest
            ));
            // The image's format, when it is not the rebuild's: named plainly, with the
            // flag that rebuilds it the way it was built.
            let built = match v.image_format {
                SideFormat::Known(n) => Some((n, String::new())),
                SideFormat::Unmarked => Some((1, " (it has no format annotation)".to_string())),
            }
            .filter(|(n, _)| *n != v.format.number());
            if let Some((n, how)) = built {
                let known = imgbuild::format::FormatVersion::from_number(u64::from(n)).is_some();
                err = Error::differs(format!(
                    "{}: {} was built with format {n}{how}, rebuilt with format {}",
                    err.message(),
                    args.against,
                    v.format
                ))
                .with_hint(if known {
                    format!("rebuild with the image's format: `--format-version {n}`, or pin it with `imgbuild lock --format-version {n}`")
                } else {
                    format!("this imgbuild does not build format {n}: verify with the imgbuild release that built it, or a later one")
                });
            }
            Err(err)
        }
    }
}

/// `verify --key PUB`: the image must carry a valid signature by the key before it is
/// worth rebuilding (exit 1 without one, nothing rebuilt).
fn check_signature(
    against: &imgbuild::reference::Reference,
    key: &std::path::Path,
    text: &str,
    ctx: &Context,
) -> Result<()> {
    let imgbuild::reference::Reference::Registry(r) = against else {
        return Err(Error::input(format!(
            "--key checks a signature in a registry, and --against {text} is not a registry image"
        ))
        .with_hint("verify against the pushed image (host/repository[:tag]), or leave out --key"));
    };
    let key = imgbuild::sign::PublicKey::load(key)?;
    let check = imgbuild::sign::verify_signature(r, &key, &ctx.registry_options())?;
    super::sign::require_verified(&check, text)?;
    if !ctx.quiet {
        note(&format!(
            "verify: {text} ({}) is signed by the {} key",
            check.digest,
            key.algorithm()
        ));
    }
    Ok(())
}
