//! `imgbuild lock`: pin the recipe's floating inputs in recipe.lock.

use super::Context;
use crate::cli::LockArgs;
use imgbuild::Result;

pub(super) fn run(args: LockArgs, ctx: &Context) -> Result<()> {
    let (path, lock) = imgbuild::lock::lock(&args.recipe, &ctx.registry_options())?;
    if !ctx.quiet {
        let mut pinned = Vec::new();
        if let Some(b) = &lock.base {
            pinned.push(format!("base {} → {}", b.image, b.digest));
        }
        if !lock.url.is_empty() {
            pinned.push(format!("{} url archive(s)", lock.url.len()));
        }
        if let Some(e) = &lock.source_date_epoch {
            pinned.push(format!("source-date-epoch {}", e.git));
        }
        if pinned.is_empty() {
            pinned.push("nothing floating".to_string());
        }
        eprintln!("wrote {} ({})", path.display(), pinned.join("; "));
    }
    Ok(())
}
