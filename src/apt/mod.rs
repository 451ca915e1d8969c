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
    /// The package URL (purl) scanners use: `pkg:deb/debian/NAME@VERSION?arch=ARCH`,
    /// the version percent-encoded (an epoch's `:`, a `+`).
    pub fn purl(&self) -> String {
        let mut version = String::new();
        for b in self.version.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                version.push(char::from(b));
            } else {
                version.push_str(&format!("%{b:02X}"));
            }
        }
        format!(
            "pkg:deb/debian/{}@{version}?arch={}",
            self.name, self.architecture
        )
    }
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
