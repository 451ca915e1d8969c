//! Lock time: every `[[apt-source]]`'s signed Release and Packages indexes, read for
//! each platform's architecture, and every layer's packages resolved into pins.

use super::closure::{self, Candidate, Unresolvable};
use super::release::{self, IndexFile, Keyring};
use super::{control, debian_arch, LockedPackage};
use crate::error::{Error, Result};
use crate::fetch::Getter;
use crate::platform::Platform;
use crate::recipe::{AptSource, Recipe};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use toml::Spanned;

/// The most imgbuild reads of a Release file or a compressed index.
const MAX_INDEX: u64 = 512 << 20;
/// The most an index may decompress to.
const MAX_PACKAGES: u64 = 2 << 30;

/// Every layer's packages with their dependency closure, for every platform, in
/// recipe order, then platform order, then name. Nothing is fetched when no layer
/// has packages.
pub fn lock_packages(
    recipe: &Recipe,
    platforms: &[Platform],
    opts: &crate::registry::client::Options,
) -> Result<Vec<LockedPackage>> {
    let Some(first) = recipe
        .layers
        .iter()
        .find_map(|l| l.get_ref().packages.first())
    else {
        return Ok(Vec::new());
    };
    let getter = Getter::new(opts)?;
    let mut releases = Vec::new();
    for source in &recipe.apt_sources {
        releases.push(signed_release(recipe, source, &getter)?);
    }
    let mut out = Vec::new();
    for platform in platforms {
        let arch = debian_arch(platform).ok_or_else(|| {
            recipe
                .error_at(first.span(), format!("platform {platform} has no Debian architecture"))
                .with_hint("build packages for linux/amd64, linux/arm64, linux/arm/v7, linux/arm/v6, linux/arm/v5, linux/386, linux/ppc64le, linux/s390x, linux/riscv64, linux/mips64le or linux/loong64")
        })?;
        let mut candidates = Vec::new();
        for (i, source) in recipe.apt_sources.iter().enumerate() {
            candidates.extend(packages_of(recipe, source, i, &releases[i], arch, &getter)?);
        }
        for layer in &recipe.layers {
            let l = layer.get_ref();
            if l.packages.is_empty() {
                continue;
            }
            let roots: Vec<String> = l.packages.iter().map(|p| p.get_ref().clone()).collect();
            let chosen = closure::closure(&roots, &candidates)
                .map_err(|e| unresolvable(recipe, &l.packages, platform, e))?;
            for i in chosen {
                let c = &candidates[i];
                out.push(LockedPackage {
                    layer: l.name.get_ref().clone(),
                    platform: platform.to_string(),
                    name: c.name.clone(),
                    version: c.version.clone(),
                    architecture: c.arch.clone(),
                    source: recipe.apt_sources[c.source].get_ref().url.get_ref().clone(),
                    filename: c.filename.clone(),
                    sha256: c.sha256.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn unresolvable(
    recipe: &Recipe,
    packages: &[Spanned<String>],
    platform: &Platform,
    e: Unresolvable,
) -> Error {
    match e {
        Unresolvable::Unknown { name, nearest } => {
            let at = packages
                .iter()
                .find(|p| *p.get_ref() == name)
                .map_or(0..0, |p| p.span());
            let hint = if nearest.is_empty() {
                "check the name, the suite and the components of the [[apt-source]]".to_string()
            } else {
                format!("the nearest names are: {}", nearest.join(", "))
            };
            recipe
                .error_at(
                    at,
                    format!("package {name:?} is not in the apt sources for {platform}"),
                )
                .with_hint(hint)
        }
        Unresolvable::Virtual { name, providers } => {
            let at = packages
                .iter()
                .find(|p| *p.get_ref() == name)
                .map_or(0..0, |p| p.span());
            recipe
                .error_at(
                    at,
                    format!("package {name:?} is a virtual package for {platform}: no package has that name, {} provide(s) it", providers.join(", ")),
                )
                .with_hint(format!(
                    "name the package to install instead, e.g. {:?}",
                    providers.first().map_or("", String::as_str)
                ))
        }
        Unresolvable::Unmet {
            package,
            dependency,
            why,
            root,
        } => {
            let at = packages
                .iter()
                .find(|p| *p.get_ref() == root)
                .or(packages.first())
                .map_or(0..0, |p| p.span());
            let needed = if package.split(' ').next() == Some(root.as_str()) {
                String::new()
            } else {
                format!(" (needed by {root})")
            };
            recipe
                .error_at(at, format!("{package}{needed} depends on {dependency}, which cannot be met for {platform}: {why}"))
                .with_hint("add a source that has it, or choose other packages")
        }
    }
}

/// The verified Release of `source` and the index files it lists.
struct SignedRelease {
    base: String,
    files: Vec<IndexFile>,
}

/// Fetches and verifies `InRelease`, else `Release` with `Release.gpg`.
fn signed_release(
    recipe: &Recipe,
    source: &Spanned<AptSource>,
    getter: &Getter<'_>,
) -> Result<SignedRelease> {
    let s = source.get_ref();
    let keyring = read_keyring(recipe, s)?;
    let base = format!(
        "{}/dists/{}",
        s.url.get_ref().trim_end_matches('/'),
        s.suite.get_ref()
    );
    let bad = |what: String| {
        recipe
            .error_at(s.url.span(), format!("apt source {}: {what}", s.url.get_ref()))
            .with_hint(format!(
                "check that {} is the key the repository signs with; imgbuild reads no unsigned or unverified index",
                s.signed_by.get_ref()
            ))
    };
    let text = match getter.get(&format!("{base}/InRelease"), MAX_INDEX)? {
        Some(bytes) => release::verify_inline(&bytes, &keyring).map_err(bad)?,
        None => {
            let Some(plain) = getter.get(&format!("{base}/Release"), MAX_INDEX)? else {
                return Err(bad(format!("{base} has neither InRelease nor Release")));
            };
            let Some(sig) = getter.get(&format!("{base}/Release.gpg"), MAX_INDEX)? else {
                return Err(bad(format!(
                    "{base}/Release is not signed (no InRelease, no Release.gpg)"
                )));
            };
            release::verify_detached(&plain, &sig, &keyring).map_err(bad)?;
            String::from_utf8(plain).map_err(|_| bad("Release is not UTF-8 text".into()))?
        }
    };
    let files = release::index_files(&text, s.suite.get_ref()).map_err(bad)?;
    Ok(SignedRelease { base, files })
}

/// The `signed-by` keyring, opened below the context without following symlinks.
fn read_keyring(recipe: &Recipe, s: &AptSource) -> Result<Keyring> {
    let rel = s.signed_by.get_ref();
    let file = crate::beneath::open_root(&recipe.context)
        .and_then(|root| {
            crate::beneath::open_regular(std::os::fd::AsFd::as_fd(&root), std::path::Path::new(rel))
        })
        .map_err(|e| {
            recipe
                .error_at(s.signed_by.span(), format!("cannot read keyring {rel:?}: {e}"))
                .with_hint("signed-by names a keyring file inside the context (a regular file, not through a symlink)")
        })?;
    let mut bytes = Vec::new();
    file.take(64 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io_path("cannot read keyring", &recipe.context.join(rel), e))?;
    Keyring::parse(&bytes).map_err(|why| {
        recipe
            .error_at(s.signed_by.span(), format!("keyring {rel:?}: {why}"))
            .with_hint("export the repository's key with `gpg --export` (binary) or `gpg --armor --export`")
    })
}

/// The candidates of one source for `arch` (its own indexes and `binary-all`).
fn packages_of(
    recipe: &Recipe,
    source: &Spanned<AptSource>,
    index: usize,
    release: &SignedRelease,
    arch: &str,
    getter: &Getter<'_>,
) -> Result<Vec<Candidate>> {
    let s = source.get_ref();
    let bad = |what: String| {
        recipe
            .error_at(s.url.span(), format!("apt source {}: {what}", s.url.get_ref()))
            .with_hint("the repository's indexes do not match its signed Release file: it is damaged or tampered with")
    };
    let mut out = Vec::new();
    for component in &s.components {
        let mut found = false;
        for a in [arch, "all"] {
            let dir = format!("{}/binary-{a}/Packages", component.get_ref());
            let Some((file, kind)) = ["xz", "gz", ""].iter().find_map(|ext| {
                let path = if ext.is_empty() {
                    dir.clone()
                } else {
                    format!("{dir}.{ext}")
                };
                release
                    .files
                    .iter()
                    .find(|f| f.path == path)
                    .map(|f| (f, *ext))
            }) else {
                continue;
            };
            found |= a == arch;
            let url = format!("{}/{}", release.base, file.path);
            let bytes = getter
                .get(&url, MAX_INDEX)?
                .ok_or_else(|| bad(format!("{url} is listed in Release but not served")))?;
            let hex = format!("{:x}", Sha256::digest(&bytes));
            if hex != file.sha256 || bytes.len() as u64 != file.size {
                return Err(bad(format!(
                    "{url} has sha256 {hex} ({} bytes), the signed Release says {} ({} bytes)",
                    bytes.len(),
                    file.sha256,
                    file.size
                )));
            }
            let text = decompress(&bytes, kind).map_err(|e| bad(format!("{url}: {e}")))?;
            out.extend(candidates(&text, arch, index).map_err(|e| bad(format!("{url}: {e}")))?);
        }
        if !found {
            return Err(bad(format!(
                "the suite {} has no index for component {} and architecture {arch}",
                s.suite.get_ref(),
                component.get_ref()
            )));
        }
    }
    Ok(out)
}

fn decompress(bytes: &[u8], kind: &str) -> std::result::Result<String, String> {
    let mut out = Vec::new();
    let read = match kind {
        "xz" => super::deb::xz_reader(bytes)
            .and_then(|r| r.take(MAX_PACKAGES + 1).read_to_end(&mut out))
            .map_err(|e| format!("not a readable xz stream ({e})")),
        "gz" => flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_PACKAGES + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("not a readable gzip stream ({e})")),
        _ => {
            out.extend_from_slice(bytes);
            Ok(out.len())
        }
    };
    read?;
    if out.len() as u64 > MAX_PACKAGES {
        return Err("the index decompresses to more than 2 GiB".to_string());
    }
    String::from_utf8(out).map_err(|_| "the index is not UTF-8 text".to_string())
}

/// The packages of a `Packages` index for `arch` (and `all`).
fn candidates(
    text: &str,
    arch: &str,
    source: usize,
) -> std::result::Result<Vec<Candidate>, String> {
    let mut out = Vec::new();
    for p in control::parse(text)? {
        let field = |k: &str| p.get(k).ok_or_else(|| format!("a package without {k}"));
        let name = field("Package")?;
        let a = field("Architecture")?;
        if a != arch && a != "all" {
            continue;
        }
        if !crate::recipe::valid_package_name(name) {
            return Err(format!(
                "the index names a package {name:?}, which is not a Debian package name"
            ));
        }
        let filename = field("Filename")?;
        if !super::safe_filename(filename) {
            return Err(format!(
                "package {name} has the unsafe Filename {filename:?}"
            ));
        }
        let sha256 = field("SHA256")?.to_ascii_lowercase();
        if !crate::digest::is_sha256_hex(&sha256) {
            return Err(format!("package {name} has a bad SHA256"));
        }
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            if let Some(v) = p.get(key) {
                depends.extend(
                    control::parse_relations(v).map_err(|e| format!("package {name}: {e}"))?,
                );
            }
        }
        let provides = match p.get("Provides") {
            Some(v) => control::parse_relations(v)
                .map_err(|e| format!("package {name}: {e}"))?
                .into_iter()
                .flatten()
                .collect(),
            None => Vec::new(),
        };
        out.push(Candidate {
            name: name.to_string(),
            version: field("Version")?.to_string(),
            arch: a.to_string(),
            filename: filename.to_string(),
            sha256,
            source,
            depends,
            provides,
        });
    }
    Ok(out)
}
