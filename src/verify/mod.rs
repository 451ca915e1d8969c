//! `imgbuild verify RECIPE --against REF`: rebuild the recipe in a temporary layout
//! and compare, bit for bit, with a published image. The rebuild never touches the
//! user's `--out` (it is only left out of context walks, exactly as `build` would)
//! nor any registry but the base image's, which it only reads. The temporary layout
//! is removed when the verification ends, whatever the outcome.
//!
//! The format version of the rebuild: `--format-version`, else the recipe's, else
//! recipe.lock's, as for `build`; else the one the image names in its
//! `org.imgbuild.format-version` annotation; else — the image has none — format 1, the
//! only format whose images carry no annotation. So an image built with format 1 and
//! no lock still verifies with every later release. (A provenance attached to the
//! image would say the same, but is not always there; the annotation always is.)
//! `inputs` checks a checkout against the inputs a provenance records.

pub mod inputs;

use crate::build::{self, BuildOptions};
use crate::diff::{self, DiffOptions, Report, SideFormat};
use crate::error::{Error, Result};
use crate::format::{FormatSource, FormatVersion};
use crate::reference::Reference;

/// What a verification found.
#[derive(Debug)]
pub enum Verdict {
    /// The rebuilt image is REF, byte for byte.
    Verified(Report),
    /// It is not: the report says how they differ (A is the rebuild, B is REF).
    Differs(Report),
}

/// A verification's verdict and how the rebuild's format version was chosen.
#[derive(Debug)]
pub struct Verification {
    pub verdict: Verdict,
    /// The format version the rebuild used, and what chose it.
    pub format: FormatVersion,
    pub format_source: FormatSource,
    /// What the image says of its own format.
    pub image_format: SideFormat,
}

/// The format a rebuild of `image` falls back to when neither the flag, the recipe
/// nor a lock names one: the image's annotation, else format 1 (None: the annotation
/// names a version this imgbuild does not know; the newest is tried).
pub fn fallback_format(image: SideFormat) -> Option<FormatVersion> {
    match image {
        SideFormat::Known(n) => FormatVersion::from_number(u64::from(n)),
        SideFormat::Unmarked => Some(FormatVersion::V1),
    }
}

/// Rebuilds with `build` (whose `out` is the user's `--out`, kept out of source
/// walks but never written) and compares the result with `against`.
pub fn verify(
    build: &BuildOptions,
    against: &Reference,
    opts: &DiffOptions,
) -> Result<Verification> {
    // Read REF first: a bad or unreachable reference fails before the rebuild.
    let image = crate::inspect::inspect(against, &opts.registry)?;
    let image_format = SideFormat::of(&image);
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
        // An audit reads no cache and fills none.
        shared_cache: Default::default(),
        fallback_format: fallback_format(image_format),
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
    report.a.format = SideFormat::Known(rebuilt.format.number());
    let verdict = if report.identical() {
        Verdict::Verified(report)
    } else {
        Verdict::Differs(report)
    };
    Ok(Verification {
        verdict,
        format: rebuilt.format,
        format_source: rebuilt.format_source,
        image_format,
    })
}
