//! `imgbuild verify` and `imgbuild diff`: flags → `imgbuild::verify` / `imgbuild::diff`,
//! and their output. A difference is exit 1 (`Error::differs`) with the explanation
//! on stdout.

use super::{
    epoch_flag, format_flag, platform_flags, registry_options, threads_flag, write_report,
};
use crate::cli::{DiffArgs, RegistryArgs, VerifyArgs};
use imgbuild::build::BuildOptions;
use imgbuild::diff::{DiffOptions, Report, SideFormat};
use imgbuild::format::FormatSource;
use imgbuild::reference::Reference;
use imgbuild::verify::Verdict;
use imgbuild::{Error, Result};

pub fn diff(args: DiffArgs, quiet: bool, registry: &RegistryArgs) -> Result<()> {
    let a = reference(&args.a, "A")?;
    let b = reference(&args.b, "B")?;
    let opts = DiffOptions {
        ignore: args.ignore.clone(),
        registry: registry_options(registry, quiet),
    };
    let report = imgbuild::diff::diff(&a, &b, &opts)?;
    print(&report, args.json)?;
    if report.identical() {
        Ok(())
    } else {
        Err(Error::differs(""))
    }
}

pub fn verify(args: VerifyArgs, quiet: bool, registry: &RegistryArgs) -> Result<()> {
    let against = reference(&args.against, "--against")?;
    let build = BuildOptions {
        recipe: args.recipe.clone(),
        out: args.out.clone(),
        platforms: platform_flags(&args.inputs.platform)?,
        tags: None,
        epoch: epoch_flag(args.inputs.source_date_epoch.as_ref())?,
        env_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        threads: threads_flag(args.inputs.threads),
        quiet,
        no_cache: true,
        registry: registry_options(registry, quiet),
        locked: args.inputs.locked,
        context_out: None,
        format: format_flag(args.inputs.format_version)?,
        fallback_format: None,
    };
    let opts = DiffOptions {
        ignore: Vec::new(),
        registry: registry_options(registry, quiet),
    };
    let v = imgbuild::verify::verify(&build, &against, &opts)?;
    if !quiet {
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
        eprintln!("verify: rebuilt with format {} ({why})", v.format);
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

fn reference(text: &str, what: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|m| {
        Error::input(format!("{what}: {m}")).with_hint(
            "write oci:DIR, oci:DIR:TAG, oci:DIR@sha256:… or host[:port]/repository[:tag][@sha256:…]",
        )
    })
}

fn print(report: &Report, json: bool) -> Result<()> {
    let text = if json {
        report.to_json().to_string()
    } else {
        report.to_text()
    };
    write_report(&text)
}
