//! `imgbuild lock`: pin the recipe's floating inputs in recipe.lock; with `--check`,
//! only say whether recipe.lock is what it would write (exit 1 when not).

use super::{format_flag, note, write_report, Context};
use crate::cli::LockArgs;
use imgbuild::format::{FormatSource, FormatVersion};
use imgbuild::{Error, Result};

pub(super) fn run(args: LockArgs, ctx: &Context) -> Result<()> {
    if args.check {
        return check(&args, ctx);
    }
    let (path, lock, format_source) = imgbuild::lock::lock(
        &args.recipe,
        &ctx.registry_options(),
        format_flag(args.format_version)?,
    )?;
    if !ctx.quiet {
        let mut pinned = Vec::new();
        let format = lock.format_version();
        pinned.push(match format_source {
            FormatSource::Lock if format != FormatVersion::NEWEST => format!(
                "format {format}, kept from the existing lock; `imgbuild lock --format-version {}` moves to the newest",
                FormatVersion::NEWEST
            ),
            FormatSource::Lock => format!("format {format}, kept from the existing lock"),
            other => format!("format {format}, {}", other.describe()),
        });
        if let Some(b) = &lock.base {
            pinned.push(format!("base {} → {}", b.image, b.digest));
        }
        if !lock.url.is_empty() {
            pinned.push(format!("{} url archive(s)", lock.url.len()));
        }
        if !lock.package.is_empty() {
            pinned.push(format!("{} Debian package pin(s)", lock.package.len()));
        }
        if let Some(e) = &lock.source_date_epoch {
            pinned.push(format!("source-date-epoch {}", e.git));
        }
        note(&format!("wrote {} ({})", path.display(), pinned.join("; ")));
    }
    if args.json {
        write_report(&lock_json(&path, &lock).to_string())?;
    }
    Ok(())
}

/// `lock --json`: the lock as written, with imgbuild's camelCase keys.
fn lock_json(path: &std::path::Path, lock: &imgbuild::lock::Lock) -> serde_json::Value {
    serde_json::json!({
        "lock": path.display().to_string(),
        "formatVersion": lock.format_version().number(),
        "base": lock.base.as_ref().map(|b| serde_json::json!({
            "image": b.image, "digest": b.digest, "platforms": b.platforms,
        })),
        "urls": lock.url.iter().map(|u| serde_json::json!({"url": u.url, "sha256": u.sha256})).collect::<Vec<_>>(),
        "packages": lock.package.iter().map(|p| serde_json::json!({
            "layer": p.layer, "platform": p.platform, "name": p.name, "version": p.version,
            "architecture": p.architecture, "source": p.source, "filename": p.filename,
            "sha256": p.sha256,
        })).collect::<Vec<_>>(),
        "sourceDateEpoch": lock.source_date_epoch.as_ref().map(|e| serde_json::json!({
            "git": e.git, "commit": e.commit,
        })),
    })
}

/// `imgbuild lock --check`: the differences on stdout and exit 1, or exit 0; the lock
/// is never written.
fn check(args: &LockArgs, ctx: &Context) -> Result<()> {
    let (path, differences) = imgbuild::lock::check(
        &args.recipe,
        &ctx.registry_options(),
        format_flag(args.format_version)?,
    )?;
    if args.json {
        write_report(
            &serde_json::json!({
                "lock": path.display().to_string(),
                "current": differences.is_empty(),
                "differences": differences,
            })
            .to_string(),
        )?;
    }
    if differences.is_empty() {
        if !ctx.quiet {
            note(&format!("{} is current", path.display()));
        }
        return Ok(());
    }
    if !args.json {
        write_report(&differences.join("\n"))?;
    }
    Err(Error::differs(format!(
        "{} is stale: `imgbuild lock` would write it differently ({} difference{})",
        path.display(),
        differences.len(),
        if differences.len() == 1 { "" } else { "s" }
    ))
    .with_hint("run `imgbuild lock` and commit recipe.lock"))
}
