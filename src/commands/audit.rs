//! `imgbuild verify` and `imgbuild diff`: flags → `imgbuild::verify` / `imgbuild::diff`,
//! and their output. A difference is exit 1 (`Error::differs`) with the explanation
//! on stdout.

use super::{epoch_flag, platform_flags, registry_options, threads_flag, write_report};
use crate::cli::{DiffArgs, RegistryArgs, VerifyArgs};
use imgbuild::build::BuildOptions;
use imgbuild::diff::{DiffOptions, Report};
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
    };
    let opts = DiffOptions {
        ignore: Vec::new(),
        registry: registry_options(registry, quiet),
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
