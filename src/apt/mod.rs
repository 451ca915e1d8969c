//! Debian packages without a package manager: `[[apt-source]]` repositories and the
//! `packages` of a layer.
//!
//! `imgbuild lock` reads each source's `InRelease` (or `Release` + `Release.gpg`),
//! checks its signature against the `signed-by` keyring (`release.rs`), reads the
//! `Packages` index of each platform's Debian architecture (checked against the
//! sha256 the signed Release gives), computes every layer's dependency closure
//! (`closure.rs`) and pins each package (`LockedPackage`). A build only fetches what
//! the lock pins (`crate::fetch`, sha256-verified into the download cache) and unpacks
//! it (`deb.rs`, read when the layer is planned); it never resolves again and never runs a
//! maintainer script.

pub mod closure;
pub mod control;
pub mod deb;
mod index;
pub mod release;
pub mod version;

use serde::{Deserialize, Serialize};

pub use index::lock_packages;

/// One Debian package of one layer for one platform, as `imgbuild lock` resolved it:
/// the build fetches `source` + `/` + `filename` and checks its sha256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub layer: String,
    pub platform: String,
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The `[[apt-source]]` url it comes from.
    pub source: String,
    pub filename: String,
    pub sha256: String,
}

impl LockedPackage {
    /// Where the build downloads the package from.
    pub fn url(&self) -> String {
        format!("{}/{}", self.source.trim_end_matches('/'), self.filename)
    }
}

impl LockedPackage {
    /// Refuses a pin no `imgbuild lock` writes: a package name outside Debian's rules,
    /// a file name that would leave the source's pool, a sha256 that is not 64
    /// lowercase hex digits (it names a file in the download cache).
    pub fn check(&self) -> Result<(), String> {
        if !crate::recipe::valid_package_name(&self.name) {
            return Err(format!(
                "package name {:?} is not a Debian package name",
                self.name
            ));
        }
        if !valid_arch(&self.architecture) {
            return Err(format!(
                "package {}: architecture {:?} is not a Debian architecture name",
                self.name, self.architecture
            ));
        }
        if !safe_filename(&self.filename) {
            return Err(format!(
                "package {}: filename {:?} is not a relative path inside the repository",
                self.name, self.filename
            ));
        }
        if !crate::digest::is_sha256_hex(&self.sha256) {
            return Err(format!(
                "package {}: sha256 {:?} is not 64 lowercase hex digits",
                self.name, self.sha256
            ));
        }
        Ok(())
    }

    /// The package URL (purl) scanners use: `pkg:deb/debian/NAME@VERSION?arch=ARCH`,
    /// each part percent-encoded (an epoch's `:`, the `+` of `libstdc++6`).
    pub fn purl(&self) -> String {
        let encode = |s: &str| {
            let mut out = String::new();
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        };
        format!(
            "pkg:deb/debian/{}@{}?arch={}",
            encode(&self.name),
            encode(&self.version),
            encode(&self.architecture)
        )
    }
}

/// A file name of a repository's pool, as a Packages index or recipe.lock gives it:
/// relative, without `.` or `..` components, and only of the characters pool file
/// names use — no `?` or `#`, and no `%` but the `%3a` of an epoch's colon (as
/// `apt-get download` names files), so that a URL cannot read `%2e%2e` as `..`.
pub fn safe_filename(s: &str) -> bool {
    !s.starts_with('/')
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~-/%".contains(c))
        && s.split('%')
            .skip(1)
            .all(|rest| rest.starts_with("3a") || rest.starts_with("3A"))
}

/// A Debian architecture name (`amd64`, `all`, `ppc64el`, `hurd-i386`).
pub fn valid_arch(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The Debian architecture of an OCI platform, or None when Debian has none.
pub fn debian_arch(p: &crate::platform::Platform) -> Option<&'static str> {
    if p.os != "linux" {
        return None;
    }
    Some(match (p.architecture.as_str(), p.variant.as_deref()) {
        ("amd64", _) => "amd64",
        ("arm64", _) => "arm64",
        ("arm", Some("v7") | None) => "armhf",
        ("arm", Some("v5" | "v6")) => "armel",
        ("386", _) => "i386",
        ("ppc64le", _) => "ppc64el",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        ("mips64le", _) => "mips64el",
        ("loong64", _) => "loong64",
        _ => return None,
    })
}

/// An `[[apt-source]]` as recipe.lock records it: a lock made from another url,
/// suite or components is stale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedAptSource {
    pub url: String,
    pub suite: String,
    pub components: Vec<String>,
}

impl std::fmt::Display for LockedAptSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (suite {}, {})",
            self.url,
            self.suite,
            self.components.join(", ")
        )
    }
}

/// Several sources for a message: `a (suite …); b (suite …)`, or `none`.
pub fn show_sources(list: &[LockedAptSource]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The recipe's `[[apt-source]]`s, as recipe.lock records them (empty when no layer
/// has `packages`, since nothing is resolved from them then).
pub fn sources(recipe: &crate::recipe::Recipe) -> Vec<LockedAptSource> {
    if recipe
        .layers
        .iter()
        .all(|l| l.get_ref().packages.is_empty())
    {
        return Vec::new();
    }
    recipe
        .apt_sources
        .iter()
        .map(|s| {
            let s = s.get_ref();
            LockedAptSource {
                url: s.url.get_ref().clone(),
                suite: s.suite.get_ref().clone(),
                components: s.components.iter().map(|c| c.get_ref().clone()).collect(),
            }
        })
        .collect()
}

/// Per layer with `packages`, the names it asks for, sorted (what recipe.lock records
/// so that a build can tell a stale lock).
pub fn requested(
    recipe: &crate::recipe::Recipe,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for layer in &recipe.layers {
        let l = layer.get_ref();
        if !l.packages.is_empty() {
            let mut names: Vec<String> = l.packages.iter().map(|p| p.get_ref().clone()).collect();
            names.sort();
            out.insert(l.name.get_ref().clone(), names);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::safe_filename;

    #[test]
    fn pool_file_names_stay_in_the_pool() {
        for ok in [
            "pool/main/t/tzdata/tzdata_2026b-0+deb12u1_all.deb",
            "pool/main/libattr1_1%3a2.5.1-4_amd64.deb",
            "pool/main/x/x_1.0~rc1_amd64.deb",
        ] {
            assert!(safe_filename(ok), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "pool/../../x.deb",
            "pool/./x.deb",
            "pool//x.deb",
            "pool/%2e%2e/%2e%2e/x.deb",
            "pool/x%2fy.deb",
            "pool/x.deb?y",
            "pool/x.deb#y",
            "pool/x%3",
        ] {
            assert!(!safe_filename(bad), "{bad}");
        }
    }
}
