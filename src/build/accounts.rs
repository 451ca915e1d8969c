//! `[[user]]`/`[[group]]` on a base image that has `/etc/passwd` or `/etc/group`.
//!
//! A plan's accounts layer holds the recipe's files alone (`plan::accounts`). Once the
//! base is read (a registry base is pulled after planning), this step reads the base's
//! two files for each platform — from the last base layer that has each, whiteouts
//! honoured — and, from format 2 on, puts the recipe's entries merged into the base's
//! in the layer (`plan::passwd`'s rules). Format 1's bytes predate merging: there the
//! recipe's files replace the base's, with a warning. Part of the resolve stage:
//! nothing of the image is written yet, and a base file it cannot merge is exit 2.

use super::BuildOptions;
use crate::base::{BaseFile, BaseImage, BasePlatform};
use crate::error::{Error, Result};
use crate::format::FormatVersion;
use crate::plan::passwd::{Db, Input, Note};
use crate::plan::{accounts, Plan};
use crate::recipe::Recipe;

/// The largest base `/etc/passwd` or `/etc/group` read (a hostile base could make it
/// any size).
const LIMIT: u64 = 4 << 20;

const FILES: [(Db, &str); 2] = [(Db::Passwd, "etc/passwd"), (Db::Group, "etc/group")];

/// Merges (format 2 and later) or warns about replacing (format 1) the base's account
/// files, for every platform: `targets` are each platform's plan and base manifest.
/// Each warning is said once.
pub(super) fn on_base<'t>(
    opts: &BuildOptions,
    recipe: &Recipe,
    format: FormatVersion,
    base: Option<&BaseImage>,
    targets: impl Iterator<Item = (&'t mut Plan, Option<&'t BasePlatform>)>,
) -> Result<()> {
    let Some(base) = base else { return Ok(()) };
    // Said once each, and only once every platform merged: a build refused for one
    // platform's base says nothing about another's.
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |message: String| {
        if !warnings.contains(&message) {
            warnings.push(message);
        }
    };
    for (plan, bp) in targets {
        let Some(bp) = bp else { continue };
        let Some(layer) = accounts::layer_mut(recipe, plan) else {
            break;
        };
        let paths = FILES.map(|(_, p)| p);
        let found = base.read_files(bp, &paths, LIMIT)?;
        if format == FormatVersion::V1 {
            let replaced: Vec<&str> = FILES
                .iter()
                .zip(&found)
                .filter(|(_, f)| **f != BaseFile::Absent)
                .map(|((db, _), _)| db.path())
                .collect();
            if !replaced.is_empty() {
                warn(format!(
                    "the recipe's [[user]]/[[group]] replace base image {}'s {} (format 1 writes them whole); format 2 merges them, keeping the base's accounts: set [image] format = 2",
                    base.name,
                    replaced.join(" and ")
                ));
            }
            continue;
        }
        for ((db, _), file) in FILES.iter().zip(found) {
            let (index, bytes) = match file {
                BaseFile::Absent => continue,
                BaseFile::File { layer, bytes } => (layer, bytes),
                BaseFile::Unreadable { layer, what } => {
                    return Err(bad(base, bp, layer, *db, format!("it is {what}")))
                }
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| bad(base, bp, index, *db, "it is not UTF-8 text".into()))?;
            let merged = match accounts::merged(recipe, *db, &text)? {
                Ok(m) => m,
                Err((Input::Base, m)) => return Err(bad(base, bp, index, *db, m.to_string())),
                Err((_, m)) => {
                    return Err(Error::input(format!(
                        "internal: the recipe's {} does not parse: {m}",
                        db.path()
                    )))
                }
            };
            for note in &merged.notes {
                warn(describe(*db, note, &base.name));
            }
            accounts::replace_file(layer, *db, merged.text);
        }
    }
    for w in warnings {
        opts.events.warn(w);
    }
    Ok(())
}

/// A base account file that cannot be merged: exit 2 naming the base, layer and file.
fn bad(base: &BaseImage, bp: &BasePlatform, layer: usize, db: Db, why: String) -> Error {
    let digest = bp
        .layers
        .get(layer)
        .map(|l| l.digest.to_string())
        .unwrap_or_default();
    Error::input(format!(
        "base image {}: layer {layer} ({digest}): {} cannot be merged with the recipe's [[user]]/[[group]]: {why}",
        base.name,
        db.path()
    ))
    .with_hint(format!(
        "format 2 keeps the base's accounts and adds the recipe's, so it reads {} as text of `{}` lines; fix the base, or write the accounts in a [[layer.file]] of your own",
        db.path(),
        db.layout()
    ))
}

fn describe(db: Db, note: &Note, base: &str) -> String {
    match note {
        Note::Replaced {
            name,
            base: theirs,
            ours,
        } => format!(
            "the recipe's {} {name:?} ({ours}) replaces base image {base}'s ({theirs}) in {}",
            db.what(),
            db.path()
        ),
        Note::SharedId {
            name,
            id,
            base_name,
        } => format!(
            "the recipe's {} {name:?} has {id}, as base image {base}'s {} {base_name:?} does ({})",
            db.what(),
            db.what(),
            db.path()
        ),
    }
}
