//! Lock policy, all in one place: what `recipe.lock` pins and what `--locked` demands.
//!
//! - `--locked`: a lock must exist and agree with the recipe (format, base name, url
//!   pins) — [`check_locked`], [`check_locked_urls`];
//! - the base image's digest (a registry's or a layout's alike): the recipe's own
//!   `@sha256:…`, else the lock's, else its tag (a layout's only image, for `oci:DIR`)
//!   resolved now (refused under `--locked`) — [`pin_base`]; a lock's pin the registry
//!   does not have is the lock disagreeing with the registry — [`lock_disagrees`] — and
//!   one the layout does not hold, with the layout — [`open_layout_base`];
//! - the base's per-platform manifests must be the ones the lock pinned, when it pins
//!   this base — [`check_platform_pin`];
//! - without `--locked`, a lock that pins another base than the recipe's is stale: a
//!   warning, and the recipe's base is built on — [`warn_stale`];
//! - the epoch: a `"git"` epoch comes from the lock when it pins one — [`resolve_epoch`];
//! - the format version: flag > recipe > lock > caller's fallback > newest —
//!   [`resolve_format`].
//!
//! Every error here is exit code 2 (a stale or missing pin under `--locked`, a lock
//! that cannot be used), except a failure to reach
//! the registry while resolving an unpinned base tag (exit 3).

use super::BuildOptions;
use crate::base::{BaseImage, BasePlatform, BaseSource, LayoutBase};
use crate::digest::Digest;
use crate::epoch::{self, EpochSource, SourceDateEpoch};
use crate::error::{Error, Result};
use crate::fetch;
use crate::format::{FormatSource, FormatVersion};
use crate::lock::{self, Lock, LockedBase};
use crate::platform::Platform;
use crate::recipe::{EpochSetting, Recipe};
use crate::reference::RegistryRef;
use crate::source::{ImageSource, RegistrySource};
use std::path::Path;

/// `--locked`: a lock must exist and agree with the recipe's format and base (its
/// url pins are checked by [`check_locked_urls`], once the platforms are known).
pub(super) fn check_locked(recipe: &Recipe, recipe_path: &Path, lock: Option<&Lock>) -> Result<()> {
    let Some(lock) = lock else {
        return Err(Error::input(format!(
            "--locked: there is no {}",
            lock::path_for(recipe_path).display()
        ))
        .with_hint("run `imgbuild lock` and commit the file it writes"));
    };
    // A lock without a format field means format 1: it stays current for a recipe
    // that names no format, so a locked build keeps its digest across the upgrade.
    if let (Some(f), Some(key)) = (recipe.format()?, &recipe.image.format) {
        if f != lock.format_version() {
            return Err(recipe
                .error_at(
                    key.span(),
                    format!(
                        "--locked: {} pins format {}, but the recipe says format = {f}",
                        lock::path_for(recipe_path).display(),
                        lock.format_version()
                    ),
                )
                .with_hint(
                    "run `imgbuild lock` and commit recipe.lock, or build without --locked",
                ));
        }
    }
    if let Some(what) = base_staleness(recipe, lock) {
        return Err(lock::stale(recipe_path, what));
    }
    Ok(())
}

/// `--locked`: the lock must pin every url of the recipe as the platforms built
/// expand it, with the recipe's sha256. Only after [`check_locked`].
pub(super) fn check_locked_urls(
    recipe_path: &Path,
    lock: Option<&Lock>,
    url_pins: &[fetch::UrlPin],
) -> Result<()> {
    let Some(lock) = lock else {
        return Ok(());
    };
    for pin in url_pins {
        match lock.url.iter().find(|u| u.url == pin.url) {
            Some(u) if u.sha256.trim_start_matches("sha256:") == pin.sha256 => {}
            Some(u) => {
                return Err(lock::stale(
                    recipe_path,
                    format!(
                        "pins {} to sha256 {}, but the recipe says {}",
                        pin.url, u.sha256, pin.sha256
                    ),
                ))
            }
            None => {
                return Err(lock::stale(
                    recipe_path,
                    format!("does not pin {} ({})", pin.url, pin.platform),
                ))
            }
        }
    }
    Ok(())
}

/// How the lock's base pin disagrees with the recipe's base: another base, or one the
/// recipe no longer names. None when it pins the recipe's base, or pins none.
fn base_staleness(recipe: &Recipe, lock: &Lock) -> Option<String> {
    let base_name = recipe
        .base
        .image
        .as_ref()
        .map(|s| s.get_ref().as_str())
        .filter(|n| *n != "scratch");
    match (&lock.base, base_name) {
        (Some(b), Some(n)) if b.image != n => Some(format!(
            "pins base {}, but the recipe's base is {n}",
            b.image
        )),
        (Some(b), None) => Some(format!(
            "pins base {}, which the recipe no longer names",
            b.image
        )),
        _ => None,
    }
}

/// Without `--locked`, a stale lock is a warning, not an error: the build uses the
/// recipe's base (the lock's pin applies only to the base it names) and says how to
/// refresh the lock.
pub(super) fn warn_stale(recipe: &Recipe, opts: &BuildOptions, lock: Option<&Lock>) {
    if let Some(what) = lock.and_then(|l| base_staleness(recipe, l)) {
        opts.events.warn(lock::stale_warning(&opts.recipe, what));
    }
}

/// The lock's base pin when it pins this base: the same name as the recipe's and the
/// same digest as the one built on. A pin of another base says nothing about this one.
fn pinned_base<'a>(lock: Option<&'a Lock>, name: &str, digest: &Digest) -> Option<&'a LockedBase> {
    lock.and_then(|l| l.base.as_ref())
        .filter(|b| b.image == name && Digest::parse(&b.digest).as_ref() == Some(digest))
}

/// Where a base's digest came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BasePin {
    /// The recipe's own `@sha256:…`.
    Recipe,
    /// `recipe.lock`.
    Lock,
    /// The tag (or a layout's only image), resolved now.
    Tag,
}

/// The digest a base (from a registry or a layout) is pinned to: the recipe's own
/// `@sha256:…`, else the lock's, else (without `--locked`) its tag resolved now — a
/// layout's from its `index.json`, `oci:DIR` its only image — with a warning.
pub(super) fn pin_base(
    recipe: &Recipe,
    opts: &BuildOptions,
    lock: Option<&Lock>,
    base: &BaseSource,
) -> Result<(Digest, BasePin)> {
    let name = base.name();
    let locked = lock
        .and_then(|l| l.base.as_ref())
        .filter(|b| b.image == name)
        .map(|b| {
            Digest::parse(&b.digest).ok_or_else(|| {
                lock::refused(
                    &opts.recipe,
                    opts.locked,
                    format!(
                        "pins base {name} to {:?}, which is not a sha256 digest",
                        b.digest
                    ),
                )
            })
        })
        .transpose()?;
    if let Some(d) = base.written_digest() {
        if let Some(l) = locked.as_ref().filter(|l| *l != d) {
            let what = format!("pins base {name} to {l}, but the recipe says {d}");
            if opts.locked {
                return Err(lock::stale(&opts.recipe, what));
            }
            opts.events.warn(lock::stale_warning(&opts.recipe, what));
        }
        return Ok((d.clone(), BasePin::Recipe));
    }
    if let Some(d) = locked {
        return Ok((d, BasePin::Lock));
    }
    let written = match base {
        BaseSource::Registry { .. } => "host/repo:tag@sha256:…",
        BaseSource::Layout(_) => "oci:DIR@sha256:…",
    };
    if opts.locked {
        return Err(recipe
            .error_at(base.span(), format!("--locked: base image {name:?} is not pinned"))
            .with_hint(format!("run `imgbuild lock` to pin it in recipe.lock, or write the digest: image = \"{written}\"")));
    }
    // Its tag (or `latest`), read as any image is read.
    let (digest, today, pinned) = match base {
        BaseSource::Registry { reference, .. } => {
            let (digest, _) = RegistrySource::open(reference, &opts.registry)?.root()?;
            let today = format!("its tag resolved to {digest} today");
            (digest.clone(), today, format!("{name}@{digest}"))
        }
        BaseSource::Layout(l) => {
            let digest = l.resolve_now()?;
            let today = match &l.tag {
                Some(t) => format!("its tag {t} in {} gives {digest} today", l.dir),
                None => format!("the only image of {} is {digest} today", l.dir),
            };
            (digest.clone(), today, l.pinned_form(&digest))
        }
    };
    opts.events.warn(format!(
        "base image {name} is not pinned; {today}. Pin it with `imgbuild lock` (or write {pinned}) so that the build is reproducible"
    ));
    Ok((digest, BasePin::Tag))
}

/// A layout base at the digest it was pinned to. When that pin is the lock's and the
/// layout holds no such image (the lock was edited, or the layout rewritten), the
/// lock and the layout disagree, and the error says which says what.
pub(super) fn open_layout_base(
    opts: &BuildOptions,
    base: &LayoutBase,
    (digest, from): (&Digest, BasePin),
) -> Result<BaseImage> {
    if from != BasePin::Lock || base.layout.has_blob(digest) {
        return base.pinned(digest);
    }
    let today = match base.resolve_now() {
        Ok(d) => match &base.tag {
            Some(t) => format!("its tag {t} is {d}"),
            None => format!("its only image is {d}"),
        },
        Err(_) => match &base.tag {
            Some(t) => format!("it has no tag {t} either"),
            None => "it has no single image either".to_string(),
        },
    };
    Err(Error::input(format!(
        "{} and the layout disagree: the lock pins base {} to {digest}, but the layout {} holds no {digest} ({today})",
        lock::path_for(&opts.recipe).display(),
        base.name,
        base.dir,
    ))
    .with_hint(format!(
        "the lock was edited, or the layout was rewritten: run `imgbuild lock` to pin what {} gives today, check the change, and commit recipe.lock",
        base.name
    ))
    .with_path(lock::path_for(&opts.recipe)))
}

/// A base pinned by the lock could not be pulled: when the registry definitely has no
/// manifest of the digest the lock pins (404) and its tag gives another (or none), the
/// lock and the registry disagree — an edited lock, or the pinned image deleted — and
/// the error says which says what. Any other failure is returned as it is.
pub(super) fn lock_disagrees(
    opts: &BuildOptions,
    name: &str,
    reference: &RegistryRef,
    pinned: &Digest,
    err: Error,
) -> Error {
    if err.status() != Some(404) {
        return err;
    }
    let tag = reference
        .tag
        .clone()
        .unwrap_or_else(|| crate::reference::DEFAULT_TAG.to_string());
    let by_tag = RegistryRef {
        digest: None,
        tag: Some(tag.clone()),
        ..reference.clone()
    };
    let today = match RegistrySource::open(&by_tag, &opts.registry).and_then(|s| s.root()) {
        Ok((d, _)) if d == *pinned => return err,
        Ok((d, _)) => format!("its tag {tag} is {d}"),
        Err(e) if e.status() == Some(404) => format!("it has no tag {tag} either"),
        Err(_) => return err,
    };
    Error::input(format!(
        "{} and the registry disagree: the lock pins base {name} to {pinned}, but the registry {}/{} has no manifest {pinned} ({today})",
        lock::path_for(&opts.recipe).display(),
        reference.registry,
        reference.repository,
    ))
    .with_hint(format!(
        "the lock was edited, or the pinned image was deleted from the registry: run `imgbuild lock` to pin what {by_tag} gives today, check the change, and commit recipe.lock"
    ))
    .with_registry(&reference.registry)
    .with_status(404)
    .with_path(lock::path_for(&opts.recipe))
}

/// The platform manifest a base index gave must be the one the lock pinned, when the
/// lock pins this base (`name` at `digest`; a stale lock's pins are for another).
pub(super) fn check_platform_pin(
    recipe: &Path,
    lock: Option<&Lock>,
    locked: bool,
    (name, digest): (&str, &Digest),
    platform: &Platform,
    bp: &BasePlatform,
) -> Result<()> {
    let Some(base) = pinned_base(lock, name, digest) else {
        return Ok(());
    };
    match base.platforms.get(&platform.to_string()) {
        Some(d) if *d != bp.manifest_digest.to_string() => Err(lock::refused(
            recipe,
            locked,
            format!(
                "pins the {platform} manifest of base {} to {d}, but its index gives {}",
                base.image, bp.manifest_digest
            ),
        )),
        None if locked => Err(lock::stale(
            recipe,
            format!("pins no {platform} manifest of base {}", base.image),
        )),
        _ => Ok(()),
    }
}

/// The format version: `--format-version`, else the recipe's, else the lock's (format
/// 1 for a lock written before format versions existed), else the caller's fallback,
/// else the newest.
pub(super) fn resolve_format(
    recipe: &Recipe,
    opts: &BuildOptions,
    lock: Option<&Lock>,
) -> Result<(FormatVersion, FormatSource)> {
    if let Some(f) = opts.format {
        return Ok((f, FormatSource::Flag));
    }
    if let Some(f) = recipe.format()? {
        return Ok((f, FormatSource::Recipe));
    }
    if let Some(l) = lock {
        return Ok((l.format_version(), FormatSource::Lock));
    }
    Ok(match opts.fallback_format {
        Some(f) => (f, FormatSource::Fallback),
        None => (FormatVersion::NEWEST, FormatSource::Newest),
    })
}

/// The epoch (docs/determinism.md): flag, else recipe, else `SOURCE_DATE_EPOCH`, else 0. A `"git"` epoch
/// comes from the lock when it pins one.
pub(super) fn resolve_epoch(
    recipe: &Recipe,
    opts: &BuildOptions,
    lock: Option<&Lock>,
) -> Result<SourceDateEpoch> {
    if let Some(s) = opts.epoch {
        return Ok(SourceDateEpoch {
            seconds: epoch::check_range(s, "--source-date-epoch")?,
            source: EpochSource::Flag,
        });
    }
    if let Some(e) = &recipe.image.source_date_epoch {
        return match e.get_ref() {
            EpochSetting::Seconds(s) => Ok(SourceDateEpoch {
                seconds: *s as u64,
                source: EpochSource::Recipe,
            }),
            EpochSetting::Named(_) => {
                if let Some(pinned) = lock.and_then(|l| l.source_date_epoch.as_ref()) {
                    return Ok(SourceDateEpoch {
                        seconds: epoch::check_range(pinned.git, "recipe.lock source-date-epoch")?,
                        source: EpochSource::RecipeGit,
                    });
                }
                if opts.locked {
                    return Err(recipe
                        .error_at(
                            e.span(),
                            "--locked: source-date-epoch = \"git\" is not pinned",
                        )
                        .with_hint(
                            "run `imgbuild lock` to record the commit time in recipe.lock",
                        ));
                }
                Ok(SourceDateEpoch {
                    seconds: epoch::git_commit_time(&recipe.context)?,
                    source: EpochSource::RecipeGit,
                })
            }
        };
    }
    if let Some(v) = opts.env_epoch.as_deref().filter(|v| !v.is_empty()) {
        return Ok(SourceDateEpoch {
            seconds: epoch::parse_epoch(v, "SOURCE_DATE_EPOCH")?,
            source: EpochSource::Environment,
        });
    }
    Ok(SourceDateEpoch {
        seconds: 0,
        source: EpochSource::Default,
    })
}
