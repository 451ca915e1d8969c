//! `imgbuild verify`: rebuild the recipe in a temporary layout and compare it, bit
//! for bit, with a published image. A difference is exit 1 (`Error::differs`) with
//! the explanation `diff` would give on stdout.

use super::diff::print;
use super::{image_ref, note, write_report, Context};
use crate::cli::VerifyArgs;
use imgbuild::build::BuildOptions;
use imgbuild::diff::{DiffOptions, SideFormat};
use imgbuild::format::FormatSource;
use imgbuild::reference::Reference;
use imgbuild::sign::PublicKey;
use imgbuild::verify::Verdict;
use imgbuild::{Error, Result};

pub(super) fn run(args: VerifyArgs, ctx: &Context) -> Result<()> {
    let against = pinned(image_ref(&args.against, "--against")?, ctx)?;
    // IMGBUILD_VERIFY_KEY set for the signed registry images of a CI job does not make
    // a verification against a layout fail: from the environment, it applies only to
    // registry images. On the command line it always applies.
    let key_path = args.key.as_deref().filter(|k| {
        matches!(against, Reference::Registry(_)) || !super::from_env("IMGBUILD_VERIFY_KEY", k)
    });
    let key = key_path.map(PublicKey::load).transpose()?;
    if let Some(key) = &key {
        check_signature(&against, key, &args.against, ctx)?;
    }
    let mut build = ctx.build_options(&args.recipe, &args.out, &args.inputs)?;
    build.no_cache = true;
    check_recorded_inputs(&against, key.as_ref(), &args.against, &mut build, ctx)?;
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

/// A registry reference by tag, resolved once to its digest: the signature, the
/// provenance and the comparison all then concern that one image, even if the tag
/// moves (or a registry answers each question differently) meanwhile.
fn pinned(reference: Reference, ctx: &Context) -> Result<Reference> {
    match reference {
        Reference::Registry(mut r) if r.digest.is_none() => {
            let source =
                imgbuild::source::open(&Reference::Registry(r.clone()), &ctx.registry_options())?;
            r.digest = Some(source.root()?.0);
            Ok(Reference::Registry(r))
        }
        other => Ok(other),
    }
}

/// `verify --key PUB`: the image must carry a valid signature by the key before it is
/// worth rebuilding (exit 1 without one, nothing rebuilt).
fn check_signature(against: &Reference, key: &PublicKey, text: &str, ctx: &Context) -> Result<()> {
    let Reference::Registry(r) = against else {
        return Err(Error::input(format!(
            "--key checks a signature in a registry, and --against {text} is not a registry image"
        ))
        .with_hint("verify against the pushed image (host/repository[:tag]), or leave out --key"));
    };
    let check = imgbuild::sign::verify_signature(r, key, &ctx.registry_options())?;
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

/// The provenance attached to a registry image (with `--key`: only one signed by the
/// key): the checkout must hold every context input it records, byte for byte —
/// exit 1 naming each that differs, before anything is rebuilt — and the rebuild
/// takes the epoch it records when the build was given one by flag or environment.
/// An image without provenance is rebuilt and compared as it is.
fn check_recorded_inputs(
    against: &Reference,
    key: Option<&PublicKey>,
    text: &str,
    build: &mut BuildOptions,
    ctx: &Context,
) -> Result<()> {
    let Reference::Registry(r) = against else {
        return Ok(());
    };
    let opts = ctx.registry_options();
    let Some(digest) = r.digest.clone() else {
        return Ok(());
    };
    let found = match imgbuild::sign::attestations::find_provenance(r, &digest, key, &opts) {
        Ok(found) => found,
        // Without a key the provenance is a help, not a requirement: a registry that
        // cannot answer for it does not stop the rebuild.
        Err(e) if key.is_none() && e.class() == imgbuild::error::Class::Io => {
            if !ctx.quiet {
                note(&format!(
                    "warning: cannot read {text}'s provenance ({}); rebuilding without checking the inputs first",
                    e.message()
                ));
            }
            None
        }
        Err(e) => return Err(e),
    };
    let Some(found) = found else {
        if !ctx.quiet {
            note(&format!(
                "verify: {text} has no provenance{}; rebuilding without checking the inputs first",
                if key.is_some() {
                    " signed by the key"
                } else {
                    ""
                }
            ));
        }
        return Ok(());
    };
    let context = context_of(&build.recipe)?;
    let differences = imgbuild::verify::inputs::compare(&found.statement, &context)?;
    if !differences.is_empty() {
        let list: Vec<String> = differences.iter().map(|d| d.to_string()).collect();
        return Err(Error::differs(format!(
            "this checkout is not what {text}'s provenance ({}) records: {}",
            found.from,
            list.join("; ")
        ))
        .with_hint("check out the revision the image was built from; nothing was rebuilt"));
    }
    if !ctx.quiet {
        note(&format!(
            "verify: the checkout holds every input {text}'s provenance ({}) records",
            found.from
        ));
    }
    let epoch =
        &found.statement["predicate"]["buildDefinition"]["internalParameters"]["sourceDateEpoch"];
    let given = matches!(epoch["source"].as_str(), Some("flag" | "environment"));
    if let (true, None, None, Some(seconds)) = (
        given,
        build.epoch,
        &build.env_epoch,
        epoch["seconds"].as_u64(),
    ) {
        build.epoch = Some(seconds);
        if !ctx.quiet {
            note(&format!(
                "verify: rebuilding with source date epoch {seconds}, as the provenance records"
            ));
        }
    }
    Ok(())
}

/// The context a recipe path builds from: the directory holding it (or the path
/// itself, when it is a directory holding recipe.toml).
fn context_of(recipe: &std::path::Path) -> Result<std::path::PathBuf> {
    let dir = if recipe.is_dir() {
        recipe
    } else {
        match recipe.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        }
    };
    dir.canonicalize()
        .map_err(|e| Error::io_path("cannot resolve the recipe's directory", dir, e))
}
