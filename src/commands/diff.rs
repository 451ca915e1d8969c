//! `imgbuild diff`: explain how two images differ. A difference is exit 1
//! (`Error::differs`) with the explanation on stdout.

use super::{image_ref, write_report, Context};
use crate::cli::DiffArgs;
use imgbuild::diff::{DiffOptions, Report};
use imgbuild::{Error, Result};

pub(super) fn run(args: DiffArgs, ctx: &Context) -> Result<()> {
    let a = image_ref(&args.a, "A")?;
    let b = image_ref(&args.b, "B")?;
    let opts = DiffOptions {
        ignore: args.ignore.clone(),
        registry: ctx.registry_options(),
    };
    let report = imgbuild::diff::diff(&a, &b, &opts)?;
    print(&report, args.json)?;
    if report.identical() {
        Ok(())
    } else {
        Err(Error::differs(""))
    }
}

/// A diff report on stdout: text, or the JSON of docs/auditing.md.
pub(super) fn print(report: &Report, json: bool) -> Result<()> {
    let text = if json {
        report.to_json().to_string()
    } else {
        report.to_text()
    };
    write_report(&text)
}
