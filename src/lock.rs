//! `recipe.lock`: every floating input of a recipe, pinned (docs/registries.md, "recipe.lock").
//!
//! Written by `imgbuild lock`, read by `build` (which then needs neither the network
//! to resolve a base tag nor git history to resolve a `"git"` epoch), and enforced by
//! `build --locked`. The lock sits next to the recipe: `recipe.toml` → `recipe.lock`
//! (the recipe's file name with `.lock` for its extension). It is TOML:
//!
//! ```toml
//! version = 1
//! format = 2                                     # the format version (docs/determinism.md)
//! [base]
//! image = "registry.example.com/acme/base:1.2"   # as the recipe writes it
//! digest = "sha256:…"                            # what it resolved to (index or manifest)
//! [base.platforms]                               # the manifest of each platform built
//! "linux/amd64" = "sha256:…"
//! [[url]]
//! url = "https://example.com/vendor.tar.gz"
//! sha256 = "…"
//! [[package]]                                    # Debian packages (crate::apt)
//! layer = "system"
//! platform = "linux/amd64"
//! name = "tzdata"
//! version = "2024a-0+deb12u1"
//! architecture = "all"
//! source = "https://deb.debian.org/debian"
//! filename = "pool/main/t/tzdata/tzdata_2024a-0+deb12u1_all.deb"
//! sha256 = "…"
//! [apt-layers]                                   # the names each layer asked for
//! system = ["tzdata"]
//! [[apt-source]]                                 # where the packages were resolved
//! url = "https://deb.debian.org/debian"
//! suite = "bookworm"
//! components = ["main"]
//! [source-date-epoch]                            # only when the recipe says "git"
//! git = 1700000000
//! commit = "…"                                   # the commit it came from (informative)
//! ```
//!
//! A lock without `format` was written before format versions existed: it means
//! format 1, the only format there was, so every build it locked keeps its digest.
//! `imgbuild lock` keeps the format an existing lock pins (re-locking to take a newer
//! base must not change every layer's bytes); `--format-version` or the recipe's
//! `[image] format` choose another, and a recipe without a lock gets the newest.
//!
//! `imgbuild lock --check` ([`check`]) resolves the lock without writing it and lists
//! how the existing one differs.
//!
//! The base is a registry image or an `oci:DIR[:TAG]` layout inside the context
//! (`image` as the recipe writes it, `digest` what its tag — or the layout's only
//! image — gives when locked).
//!
//! Staleness: the lock is stale when it pins a different base reference than the
//! recipe names (or a base the recipe no longer has), when the recipe's base carries
//! a digest that differs from the lock's, when a platform built has no pin, or when
//! a url of the recipe (as each platform built expands it) is missing or has another
//! sha256. The `"git"` epoch is not compared with the repository's current HEAD:
//! committing the lock itself moves HEAD, so such a check could never pass; re-run
//! `imgbuild lock` to take a newer commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{FormatSource, FormatVersion};

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lock {
    pub version: u32,
    /// The format version; None (a lock older than format versions) means format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<LockedBase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub url: Vec<LockedUrl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package: Vec<LockedPackage>,
    /// Per layer with `packages`, the names it asked for when locked (sorted): a
    /// recipe that asks for others has a stale lock.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apt_layers: BTreeMap<String, Vec<String>>,
    /// The `[[apt-source]]`s the package pins were resolved from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apt_source: Vec<crate::apt::LockedAptSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<LockedEpoch>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    pub image: String,
    pub digest: String,
    #[serde(default)]
    pub platforms: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedUrl {
    pub url: String,
    pub sha256: String,
}

pub use crate::apt::LockedPackage;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedEpoch {
    pub git: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Where the lock of `recipe` lives.
pub fn path_for(recipe: &Path) -> PathBuf {
    recipe.with_extension("lock")
}

impl Lock {
    /// Reads the lock next to `recipe`; None when there is none.
    pub fn load(recipe: &Path) -> Result<Option<Lock>> {
        let path = path_for(recipe);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io_path("cannot read", &path, e)),
        };
        let lock: Lock = toml::from_str(&text).map_err(|e| {
            let mut err = Error::input(format!("{}: {}", path.display(), e.message()));
            if let Some(span) = e.span() {
                let line = text[..span.start].matches('\n').count() + 1;
                let col = span.start - text[..span.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                err = Error::input(format!(
                    "{}:{line}:{col}: {}",
                    path.display(),
                    e.message()
                ));
            }
            err.with_hint("recipe.lock is written by `imgbuild lock`; run it again rather than editing the file")
        })?;
        if lock.version != LOCK_VERSION {
            return Err(Error::input(format!(
                "{}: lock version {} is not supported (this imgbuild writes version {LOCK_VERSION})",
                path.display(),
                lock.version
            ))
            .with_hint("run `imgbuild lock` to rewrite it"));
        }
        let bad = |what: String| {
            Error::input(format!("{}: {what}", path.display()))
                .with_hint("recipe.lock is written by `imgbuild lock`; run it again rather than editing the file")
        };
        for p in &lock.package {
            p.check().map_err(bad)?;
        }
        for u in &lock.url {
            if !crate::digest::is_sha256_hex(&u.sha256) {
                return Err(bad(format!(
                    "url {}: sha256 {:?} is not 64 lowercase hex digits",
                    u.url, u.sha256
                )));
            }
        }
        if let Some(n) = lock.format {
            if FormatVersion::from_number(u64::from(n)).is_none() {
                return Err(Error::input(format!(
                    "{}: format {n} is not a format version this imgbuild builds ({})",
                    path.display(),
                    FormatVersion::known()
                ))
                .with_hint("a newer imgbuild wrote it: upgrade, or run `imgbuild lock --format-version N` to pin one this imgbuild knows"));
            }
        }
        Ok(Some(lock))
    }

    /// The format version the lock pins: format 1 when it names none (it was written
    /// before format versions existed).
    pub fn format_version(&self) -> FormatVersion {
        self.format
            .and_then(|n| FormatVersion::from_number(u64::from(n)))
            .unwrap_or(FormatVersion::V1)
    }

    /// Writes the lock next to `recipe`, atomically.
    pub fn save(&self, recipe: &Path) -> Result<PathBuf> {
        let path = path_for(recipe);
        let body = toml::to_string(self)
            .map_err(|e| Error::input(format!("cannot encode the lock: {e}")))?;
        let text = format!(
            "# Written by `imgbuild lock`: the recipe's floating inputs, pinned.\n# Commit it next to the recipe; `imgbuild build --locked` checks it.\n{body}"
        );
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut temp = crate::atomic::TempFile::new_in(dir, 0o644)
            .map_err(|e| Error::io_path("cannot write to", dir, e))?;
        std::io::Write::write_all(&mut temp, text.as_bytes())
            .map_err(|e| Error::io_path("cannot write", &path, e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644));
        }
        temp.persist(&path, crate::atomic::Durability::Synced)
            .map_err(|e| Error::io_path("cannot replace", &path, e))?;
        Ok(path)
    }
}

/// The error `build --locked` gives for a stale or missing pin.
pub fn stale(recipe: &Path, what: impl std::fmt::Display) -> Error {
    Error::input(format!("--locked: {} {what}", path_for(recipe).display()))
        .with_hint("run `imgbuild lock` and commit recipe.lock, or build without --locked")
}

/// A lock that cannot be used as it is, in a build without `--locked` (so the message
/// does not blame a flag that was not given): exit 2.
pub fn unusable(recipe: &Path, what: impl std::fmt::Display) -> Error {
    Error::input(format!("{} {what}", path_for(recipe).display()))
        .with_hint("run `imgbuild lock` to refresh it, and commit recipe.lock")
}

/// `stale` under `--locked`, else `unusable`.
pub fn refused(recipe: &Path, locked: bool, what: impl std::fmt::Display) -> Error {
    if locked {
        stale(recipe, what)
    } else {
        unusable(recipe, what)
    }
}

/// The warning of a build without `--locked` whose lock is stale: the build goes on
/// with the recipe's inputs, and says how to refresh the lock.
pub fn stale_warning(recipe: &Path, what: impl std::fmt::Display) -> String {
    format!(
        "{} is stale: it {what}; building on the recipe's base. Run `imgbuild lock` to refresh it (a --locked build refuses a stale lock)",
        path_for(recipe).display()
    )
}

/// `imgbuild lock`: resolves the recipe's floating inputs and writes the lock. The
/// format version is `format_flag`, else the recipe's, else the existing lock's, else
/// the newest; the lock written always names it.
pub fn lock(
    recipe_path: &Path,
    registry: &crate::registry::client::Options,
    format_flag: Option<FormatVersion>,
) -> Result<(PathBuf, Lock, FormatSource)> {
    let (lock, source) = resolve(recipe_path, registry, format_flag)?;
    let path = lock.save(recipe_path)?;
    Ok((path, lock, source))
}

/// `imgbuild lock --check`: what `imgbuild lock` would write, compared with the lock
/// next to the recipe, which is never written. An empty list: the lock is current.
///
/// A `"git"` epoch is compared by presence only (the recipe says `"git"` and the lock
/// pins a commit time, or neither): committing the lock moves HEAD, so comparing
/// the time could never pass.
pub fn check(
    recipe_path: &Path,
    registry: &crate::registry::client::Options,
    format_flag: Option<FormatVersion>,
) -> Result<(PathBuf, Vec<String>)> {
    let path = path_for(recipe_path);
    let (wanted, _) = resolve(recipe_path, registry, format_flag)?;
    let differences = match Lock::load(recipe_path) {
        Ok(Some(existing)) => differences(&existing, &wanted),
        Ok(None) => vec![format!("{} does not exist", path.display())],
        Err(e) if e.class() == crate::error::Class::BadInput => {
            vec![format!(
                "{} cannot be read: {}",
                path.display(),
                e.message()
            )]
        }
        Err(e) => return Err(e),
    };
    Ok((path, differences))
}

/// How `existing` differs from `wanted` (what `imgbuild lock` would write), one line
/// per difference, `existing` first.
pub fn differences(existing: &Lock, wanted: &Lock) -> Vec<String> {
    let mut out = Vec::new();
    if existing.version != wanted.version {
        out.push(format!(
            "lock version: {} → {}",
            existing.version, wanted.version
        ));
    }
    // A lock without `format` pins format 1, as `build --locked` reads it.
    if existing.format_version() != wanted.format_version() {
        let was = match existing.format {
            Some(n) => n.to_string(),
            None => "not recorded (which means 1)".to_string(),
        };
        out.push(format!("format: {was} → {}", wanted.format_version()));
    }
    match (&existing.base, &wanted.base) {
        (None, None) => {}
        (Some(b), None) => out.push(format!(
            "base: pins {} ({}), the recipe has no base image",
            b.image, b.digest
        )),
        (None, Some(b)) => out.push(format!("base: not pinned → {} {}", b.image, b.digest)),
        (Some(a), Some(b)) => {
            if a.image != b.image {
                out.push(format!("base image: {} → {}", a.image, b.image));
            }
            if a.digest != b.digest {
                out.push(format!("base {}: {} → {}", b.image, a.digest, b.digest));
            }
            let platforms: std::collections::BTreeSet<&String> =
                a.platforms.keys().chain(b.platforms.keys()).collect();
            for p in platforms {
                let (was, now) = (a.platforms.get(p), b.platforms.get(p));
                if was != now {
                    let show =
                        |d: Option<&String>| d.map_or("not pinned", |d| d.as_str()).to_string();
                    out.push(format!("base platform {p}: {} → {}", show(was), show(now)));
                }
            }
        }
    }
    for u in &existing.url {
        match wanted.url.iter().find(|w| w.url == u.url) {
            None => out.push(format!(
                "url {}: pinned, the recipe no longer has it",
                u.url
            )),
            Some(w) if w.sha256 != u.sha256 => {
                out.push(format!("url {}: sha256 {} → {}", u.url, u.sha256, w.sha256))
            }
            Some(_) => {}
        }
    }
    for w in &wanted.url {
        if !existing.url.iter().any(|u| u.url == w.url) {
            out.push(format!("url {}: not pinned → sha256 {}", w.url, w.sha256));
        }
    }
    if existing.apt_layers != wanted.apt_layers {
        out.push(format!(
            "packages asked for: {:?} → {:?}",
            existing.apt_layers, wanted.apt_layers
        ));
    }
    if existing.apt_source != wanted.apt_source {
        out.push(format!(
            "apt sources: {} → {}",
            crate::apt::show_sources(&existing.apt_source),
            crate::apt::show_sources(&wanted.apt_source)
        ));
    }
    package_differences(existing, wanted, &mut out);
    match (&existing.source_date_epoch, &wanted.source_date_epoch) {
        (Some(e), None) => out.push(format!(
            "source-date-epoch: pins git {}, the recipe's epoch is not \"git\"",
            e.git
        )),
        (None, Some(e)) => out.push(format!("source-date-epoch: not pinned → git {}", e.git)),
        _ => {}
    }
    out
}

/// How the package pins differ: one line per package, layer and platform.
fn package_differences(existing: &Lock, wanted: &Lock, out: &mut Vec<String>) {
    let key = |p: &LockedPackage| (p.layer.clone(), p.platform.clone(), p.name.clone());
    let show = |p: &LockedPackage| format!("{} {} ({})", p.version, p.architecture, p.sha256);
    let was: BTreeMap<_, _> = existing.package.iter().map(|p| (key(p), p)).collect();
    let now: BTreeMap<_, _> = wanted.package.iter().map(|p| (key(p), p)).collect();
    for (k, p) in &was {
        let (layer, platform, name) = k;
        match now.get(k) {
            None => out.push(format!(
                "package {name} (layer {layer:?}, {platform}): pinned, no longer needed"
            )),
            Some(n) if n != p => out.push(format!(
                "package {name} (layer {layer:?}, {platform}): {} → {}",
                show(p),
                show(n)
            )),
            Some(_) => {}
        }
    }
    for (k, n) in &now {
        if !was.contains_key(k) {
            let (layer, platform, name) = k;
            out.push(format!(
                "package {name} (layer {layer:?}, {platform}): not pinned → {}",
                show(n)
            ));
        }
    }
}

/// The pin of base `name` read through `source`: its root digest and the manifest of
/// each platform.
fn locked_base(
    name: String,
    source: &dyn crate::source::ImageSource,
    platforms: &[crate::platform::Platform],
) -> Result<LockedBase> {
    let (digest, bytes) = source.root()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::input(format!(
            "base image {name}: {digest} is not a manifest or index: {e}"
        ))
    })?;
    let is_index = crate::image::is_index_value(&value);
    let mut pins = BTreeMap::new();
    for p in platforms {
        let d = if is_index {
            let index: crate::image::Index = serde_json::from_value(value.clone())
                .map_err(|e| Error::input(format!("base image {name}: bad index: {e}")))?;
            crate::base::select_platform(&index, p, &name)?
        } else {
            digest.clone()
        };
        pins.insert(p.to_string(), d.to_string());
    }
    Ok(LockedBase {
        image: name,
        digest: digest.to_string(),
        platforms: pins,
    })
}

/// What `imgbuild lock` would write for the recipe, and where its format came from.
fn resolve(
    recipe_path: &Path,
    registry: &crate::registry::client::Options,
    format_flag: Option<FormatVersion>,
) -> Result<(Lock, FormatSource)> {
    use crate::base::BaseSource;
    use crate::recipe::{EpochSetting, Recipe};
    use crate::source::RegistrySource;

    let recipe = Recipe::load(recipe_path)?;
    let platforms = recipe.platforms()?;
    // An unreadable existing lock is what `imgbuild lock` replaces: it pins nothing.
    let existing = Lock::load(recipe_path).ok().flatten();
    let (format, source) = match (format_flag, recipe.format()?, &existing) {
        (Some(f), _, _) => (f, FormatSource::Flag),
        (None, Some(f), _) => (f, FormatSource::Recipe),
        (None, None, Some(l)) => (l.format_version(), FormatSource::Lock),
        (None, None, None) => (FormatVersion::NEWEST, FormatSource::Newest),
    };
    let mut lock = Lock {
        version: LOCK_VERSION,
        format: Some(format.number()),
        ..Lock::default()
    };
    match crate::base::resolve(&recipe)? {
        Some(BaseSource::Registry {
            name, reference, ..
        }) => {
            // The tag (or digest) the recipe names, read as any image is read.
            let source = RegistrySource::open(&reference, registry)?;
            lock.base = Some(locked_base(name, &source, &platforms)?);
        }
        Some(BaseSource::Layout(base)) => {
            // The digest the recipe names, else its tag (or only image) in the layout now.
            let digest = match &base.digest {
                Some(d) => d.clone(),
                None => base.resolve_now()?,
            };
            let image = base.pinned(&digest)?;
            lock.base = Some(locked_base(base.name, &image.source, &platforms)?);
        }
        None => {}
    }
    // Every url as each platform expands it: a url with {arch} is one pin per file.
    for pin in crate::fetch::pins(&recipe, &platforms)? {
        if !lock.url.iter().any(|u| u.url == pin.url) {
            lock.url.push(LockedUrl {
                url: pin.url,
                sha256: pin.sha256,
            });
        }
    }
    lock.package = crate::apt::lock_packages(&recipe, &platforms, registry)?;
    lock.apt_layers = crate::apt::requested(&recipe);
    lock.apt_source = crate::apt::sources(&recipe);
    if let Some(e) = &recipe.image.source_date_epoch {
        if let EpochSetting::Named(_) = e.get_ref() {
            let seconds = crate::epoch::git_commit_time(&recipe.context)?;
            let commit = std::process::Command::new("git")
                .arg("-C")
                .arg(&recipe.context)
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            lock.source_date_epoch = Some(LockedEpoch {
                git: seconds,
                commit,
            });
        }
    }
    Ok((lock, source))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lock_without_format_is_current_for_format_1() {
        let old = super::Lock {
            version: super::LOCK_VERSION,
            ..super::Lock::default()
        };
        let wanted = super::Lock {
            format: Some(1),
            ..old.clone()
        };
        assert!(super::differences(&old, &wanted).is_empty());
        let newer = super::Lock {
            format: Some(2),
            ..old.clone()
        };
        assert_eq!(super::differences(&old, &newer).len(), 1);
    }

    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("recipe.toml");
        let lock = Lock {
            version: 1,
            format: Some(2),
            base: Some(LockedBase {
                image: "127.0.0.1:5000/base:1".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                platforms: [(
                    "linux/amd64".to_string(),
                    format!("sha256:{}", "b".repeat(64)),
                )]
                .into(),
            }),
            url: vec![LockedUrl {
                url: "https://example.com/x.tar".into(),
                sha256: "c".repeat(64),
            }],
            package: vec![LockedPackage {
                layer: "system".into(),
                platform: "linux/amd64".into(),
                name: "tzdata".into(),
                version: "2024a-0+deb12u1".into(),
                architecture: "all".into(),
                source: "https://deb.example/debian".into(),
                filename: "pool/main/t/tzdata/tzdata_2024a-0+deb12u1_all.deb".into(),
                sha256: "e".repeat(64),
            }],
            apt_layers: [("system".to_string(), vec!["tzdata".to_string()])].into(),
            apt_source: vec![crate::apt::LockedAptSource {
                url: "https://deb.debian.org/debian".into(),
                suite: "bookworm".into(),
                components: vec!["main".into()],
            }],
            source_date_epoch: Some(LockedEpoch {
                git: 1_700_000_000,
                commit: Some("d".repeat(40)),
            }),
        };
        let path = lock.save(&recipe).unwrap();
        assert_eq!(path, dir.path().join("recipe.lock"));
        assert_eq!(Lock::load(&recipe).unwrap(), Some(lock));

        std::fs::write(&path, "version = 1\nbase-image = \"x\"\n").unwrap();
        let e = Lock::load(&recipe).unwrap_err();
        assert!(e.message().contains("recipe.lock:2:1"), "{}", e.message());

        std::fs::write(&path, "version = 1\n").unwrap();
        let old = Lock::load(&recipe).unwrap().unwrap();
        assert_eq!(
            (old.format, old.format_version()),
            (None, FormatVersion::V1)
        );

        std::fs::write(&path, "version = 1\nformat = 9\n").unwrap();
        let e = Lock::load(&recipe).unwrap_err();
        assert!(e.message().contains("format 9 is not"), "{}", e.message());
        assert!(e.message().contains("1, 2 (the newest)"), "{}", e.message());

        std::fs::write(&path, "version = 7\n").unwrap();
        let e = Lock::load(&recipe).unwrap_err();
        assert!(e.message().contains("lock version 7"), "{}", e.message());

        std::fs::remove_file(&path).unwrap();
        assert_eq!(Lock::load(&recipe).unwrap(), None);
    }
}
