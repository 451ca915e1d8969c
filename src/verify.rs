//! `imgbuild verify RECIPE --against REF`: rebuild the recipe in a temporary layout
//! and compare, bit for bit, with a published image. The rebuild never touches the
//! user's `--out` (it is only left out of context walks, exactly as `build` would)
//! nor any registry but the base image's, which it only reads. The temporary layout
//! is removed when the verification ends, whatever the outcome.

use crate::build::{self, BuildOptions};
use crate::diff::{self, DiffOptions, Report};
use crate::error::{Error, Result};
use crate::reference::Reference;

/// What a verification found.
#[derive(Debug)]
pub enum Verdict {
    /// The rebuilt image is REF, byte for byte.
    Verified(Report),
    /// It is not: the report says how they differ (A is the rebuild, B is REF).
    Differs(Report),
}

/// Rebuilds with `build` (whose `out` is the user's `--out`, kept out of source
/// walks but never written) and compares the result with `against`.
pub fn verify(build: &BuildOptions, against: &Reference, opts: &DiffOptions) -> Result<Verdict> {
    // Read REF first: a bad or unreachable reference fails before the rebuild.
    crate::inspect::inspect(against, &opts.registry)?;
    let temp = tempfile::Builder::new()
        .prefix("imgbuild-verify-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a temporary directory for the rebuild", e))?;
    let store = temp.path().join("layout");
    let rebuild_opts = BuildOptions {
        out: store.clone(),
        context_out: Some(
            build
                .context_out
                .clone()
                .unwrap_or_else(|| build.out.clone()),
        ),
        tags: Some(Vec::new()),
        no_cache: true,
        ..build.clone()
    };
    let rebuilt = build::build(&rebuild_opts)?;
    let rebuilt_ref = Reference::Layout {
        dir: store,
        tag: None,
        digest: Some(rebuilt.digest.clone()),
    };
    let options = DiffOptions {
        ignore: Vec::new(),
        ..opts.clone()
    };
    // Equal digests make the diff a formality (nothing below the root is read).
    let mut report = diff::diff(&rebuilt_ref, against, &options)?;
    report.a.reference = format!("rebuilt from {}", build.recipe.display());
    Ok(if report.identical() {
        Verdict::Verified(report)
    } else {
        Verdict::Differs(report)
    })
}
