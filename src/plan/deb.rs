//! A layer's `packages`: the `.deb` files recipe.lock pins for this platform (already
//! downloaded and verified by `crate::fetch`), unpacked into entries, plus the package
//! database the way distroless images keep it: `/var/lib/dpkg/status.d/<package>`
//! (the control paragraph, installed) and `/var/lib/dpkg/status.d/<package>.md5sums`.
//!
//! `data.tar` is decompressed once into a temporary spool, read like any archive
//! (`archive::read_members`: no `..`, no device files, modes and numeric owners from
//! the package, no mtimes). Maintainer scripts are never run.

use super::archive::{hardlink_groups, read_members, Bad};
use super::passwd::{Db, Input, Note};
use super::{normalize_hardlinks, Content, EntryKind, Item, Meta, PlanOptions, Spool};
use crate::apt::{deb, LockedPackage};
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::recipe::{Layer, Recipe};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::ops::Range;
use std::sync::Arc;

const STATUS_DIR: &str = "var/lib/dpkg/status.d";

/// Every entry of the layer's pinned packages, in path order.
pub(crate) fn resolve(
    recipe: &Recipe,
    layer: &Layer,
    platform: &Platform,
    options: &PlanOptions,
    warnings: &mut Vec<String>,
) -> Result<Vec<Item>> {
    let span = packages_span(layer);
    let name = layer.name.get_ref();
    let platform_text = platform.to_string();
    let pins: Vec<&LockedPackage> = options
        .packages
        .iter()
        .filter(|p| p.layer == *name && p.platform == platform_text)
        .collect();
    let missing: Vec<&str> = layer
        .packages
        .iter()
        .map(|p| p.get_ref().as_str())
        .filter(|n| !pins.iter().any(|p| p.name == *n))
        .collect();
    if !missing.is_empty() {
        return Err(recipe
            .error_at(
                span,
                format!(
                    "recipe.lock pins no {} for layer {name:?} on {platform}",
                    missing.join(", ")
                ),
            )
            .with_hint(
                "packages are resolved by `imgbuild lock`: run it, and commit recipe.lock",
            ));
    }
    let mut by_path: BTreeMap<Vec<u8>, (Item, String)> = BTreeMap::new();
    let mut with_postinst = Vec::new();
    for pin in pins {
        let (items, has_postinst) = package_items(recipe, pin, span.clone(), options)?;
        if has_postinst {
            with_postinst.push(pin.name.clone());
        }
        for item in items {
            match by_path.get(&item.path) {
                Some((first, _)) if first.kind == EntryKind::Dir && item.kind == EntryKind::Dir => {
                }
                Some((_, owner)) => {
                    return Err(recipe
                        .error_at(
                            span,
                            format!(
                                "packages {owner} and {} both ship /{}",
                                pin.name,
                                String::from_utf8_lossy(&item.path)
                            ),
                        )
                        .with_hint("put one of them in another layer, or leave one out"))
                }
                None => {
                    by_path.insert(item.path.clone(), (item, pin.name.clone()));
                }
            }
        }
    }
    merge_accounts(recipe, span, &mut by_path, warnings)?;
    if !with_postinst.is_empty() {
        warnings.push(format!(
            "layer {name:?}: maintainer scripts are never run; these packages have a postinst that did not run: {}",
            with_postinst.join(", ")
        ));
    }
    Ok(by_path.into_values().map(|(item, _)| item).collect())
}

/// The largest `/etc/passwd` or `/etc/group` of a package merged with the recipe's
/// accounts.
const ACCOUNTS_LIMIT: u64 = 4 << 20;

/// A package's `/etc/passwd` or `/etc/group` would hide the recipe's (written in the
/// accounts layer, below): the recipe's `[[user]]`/`[[group]]` are merged into it, by
/// the rules used for a base image's (`passwd::merge`).
fn merge_accounts(
    recipe: &Recipe,
    span: Range<usize>,
    by_path: &mut BTreeMap<Vec<u8>, (Item, String)>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    if recipe.users.is_empty() && recipe.groups.is_empty() {
        return Ok(());
    }
    for db in [Db::Passwd, Db::Group] {
        let Some((item, owner)) = by_path.get_mut(&db.path().as_bytes()[1..]) else {
            continue;
        };
        let bad = |why: String| {
            recipe
                .error_at(
                    span.clone(),
                    format!(
                        "package {owner}'s {} cannot be merged with the recipe's [[user]]/[[group]]: {why}",
                        db.path()
                    ),
                )
                .with_hint("put the package in a layer of its own image, or write the accounts in a [[layer.file]]")
        };
        let bytes = match &item.kind {
            EntryKind::File { size, .. } if *size > ACCOUNTS_LIMIT => {
                return Err(bad(format!("it is larger than {ACCOUNTS_LIMIT} bytes")))
            }
            EntryKind::File {
                content: Content::Spool { spool, offset },
                size,
            } => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut spool.reader_at(*offset).take(*size), &mut bytes)
                    .map_err(|e| Error::io_path("cannot read", &spool.path, e))?;
                bytes
            }
            EntryKind::File {
                content: Content::Inline(b),
                ..
            } => b.to_vec(),
            _ => return Err(bad("it is not a regular file".into())),
        };
        let text = String::from_utf8(bytes).map_err(|_| bad("it is not UTF-8 text".into()))?;
        let merged = match super::accounts::merged(recipe, db, &text)? {
            Ok(m) => m,
            Err((Input::Base, m)) => return Err(bad(m.to_string())),
            Err((_, m)) => {
                return Err(Error::input(format!(
                    "internal: the recipe's {} does not parse: {m}",
                    db.path()
                )))
            }
        };
        for note in merged.notes {
            warnings.push(match note {
                Note::Replaced { name, base, ours } => format!(
                    "the recipe's {} {name:?} ({ours}) replaces package {owner}'s ({base}) in {}",
                    db.what(),
                    db.path()
                ),
                Note::SharedId { name, id, base_name } => format!(
                    "the recipe's {} {name:?} has {id}, as package {owner}'s {base_name:?} does ({})",
                    db.what(),
                    db.path()
                ),
            });
        }
        item.kind = EntryKind::File {
            size: merged.text.len() as u64,
            content: Content::Inline(Arc::new(merged.text.into_bytes())),
        };
    }
    Ok(())
}

/// From the first package name of the layer to the last (for messages).
fn packages_span(layer: &Layer) -> Range<usize> {
    match (layer.packages.first(), layer.packages.last()) {
        (Some(a), Some(b)) => a.span().start..b.span().end,
        _ => layer.name.span(),
    }
}

/// The entries of one package, its status files included; and whether it has a
/// postinst.
fn package_items(
    recipe: &Recipe,
    pin: &LockedPackage,
    span: Range<usize>,
    options: &PlanOptions,
) -> Result<(Vec<Item>, bool)> {
    let label = format!("package {} {}", pin.name, pin.version);
    let bad = Bad {
        recipe,
        at: span.clone(),
        archive: &label,
        hint: "the package is damaged or not a Debian package; if the repository is trusted, run `imgbuild lock` again",
    };
    let path = options.downloads.get(&pin.sha256).ok_or_else(|| {
        recipe.error_at(
            span.clone(),
            format!("internal: {label} was not downloaded before planning"),
        )
    })?;
    let file =
        File::open(path).map_err(|e| Error::io_path("cannot read downloaded package", path, e))?;
    let members = deb::members(&file).map_err(|e| bad.err(e))?;
    let control = deb::read_control(&file, &members.control).map_err(|e| bad.err(e))?;
    let said = (
        control.paragraph.get("Package"),
        control.paragraph.get("Version"),
    );
    if said != (Some(pin.name.as_str()), Some(pin.version.as_str())) {
        return Err(bad.err(format!(
            "its control file says it is {} {}",
            said.0.unwrap_or("?"),
            said.1.unwrap_or("?")
        )));
    }
    let mut temp = tempfile::NamedTempFile::new()
        .map_err(|e| Error::io("cannot create a temporary file", e))?;
    deb::unpack(&file, &members.data, temp.as_file_mut(), deb::MAX_DATA).map_err(|e| bad.err(e))?;
    let temp = temp.into_temp_path();
    let spooled = File::open(&temp).map_err(|e| Error::io_path("cannot read", &temp, e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io_path("cannot read", path, e))?;
    let spool = Arc::new(Spool {
        path: temp.to_path_buf(),
        source: path.clone(),
        source_stamp: crate::stamp::FileStamp::of(&meta),
        file: spooled,
        _temp: Some(temp),
    });
    let (mut items, links) = read_members(b"", 0, &spool, &bad)?;
    let groups = hardlink_groups(&items, links, &bad)?;
    normalize_hardlinks(&mut items, groups);
    let mut status = control.paragraph.clone();
    status
        .fields
        .retain(|(k, _)| !k.eq_ignore_ascii_case("Status"));
    let at = status
        .fields
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case("Package"))
        .map_or(0, |i| i + 1);
    status
        .fields
        .insert(at, ("Status".into(), "install ok installed".into()));
    items.push(inline(
        format!("{STATUS_DIR}/{}", pin.name),
        status.to_text().into_bytes(),
    ));
    if let Some(md5sums) = control.md5sums {
        items.push(inline(
            format!("{STATUS_DIR}/{}.md5sums", pin.name),
            md5sums,
        ));
    }
    Ok((items, control.has_postinst))
}

fn inline(path: String, bytes: Vec<u8>) -> Item {
    Item {
        path: path.into_bytes(),
        kind: EntryKind::File {
            size: bytes.len() as u64,
            content: Content::Inline(Arc::new(bytes)),
        },
        meta: Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
    }
}
