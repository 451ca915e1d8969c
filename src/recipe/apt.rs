//! Checks of `[[apt-source]]` and of each layer's `packages`: the shape of every
//! value, before anything is fetched (the keyring file is read by `imgbuild lock`).

use super::Recipe;
use crate::error::Result;
use std::collections::BTreeMap;
use std::ops::Range;

impl Recipe {
    pub(super) fn validate_apt(&self) -> Result<()> {
        for source in &self.apt_sources {
            let s = source.get_ref();
            let url = s.url.get_ref();
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || reqwest::Url::parse(url).is_err() {
                return Err(self
                    .error_at(
                        s.url.span(),
                        format!("apt-source url {url:?} is not an http(s) url"),
                    )
                    .with_hint(
                        "write the repository's root, e.g. url = \"https://deb.debian.org/debian\"",
                    ));
            }
            let suite = s.suite.get_ref();
            if !valid_path_part(suite) {
                return Err(self
                    .error_at(
                        s.suite.span(),
                        format!("suite {suite:?} is not a suite name"),
                    )
                    .with_hint(
                        "name a suite or codename of the repository, e.g. suite = \"bookworm\"",
                    ));
            }
            if s.components.is_empty() {
                return Err(self
                    .error_at(source.span(), "an apt-source needs at least one component")
                    .with_hint("components = [\"main\"]"));
            }
            for c in &s.components {
                if !valid_path_part(c.get_ref()) {
                    return Err(self.error_at(
                        c.span(),
                        format!("component {:?} is not a component name", c.get_ref()),
                    ));
                }
            }
            let key = s.signed_by.get_ref();
            if key.is_empty() || key.starts_with('/') || key.split('/').any(|c| c == "..") {
                return Err(self
                    .error_at(
                        s.signed_by.span(),
                        format!("signed-by {key:?} must name a keyring file inside the context"),
                    )
                    .with_hint("copy the repository's public key next to the recipe: signed-by = \"keys/debian-archive.asc\""));
            }
        }
        let mut first_packages: Option<Range<usize>> = None;
        for layer in &self.layers {
            let mut seen: BTreeMap<&str, Range<usize>> = BTreeMap::new();
            for p in &layer.get_ref().packages {
                let name = p.get_ref();
                if !valid_package_name(name) {
                    return Err(self
                        .error_at(p.span(), format!("{name:?} is not a Debian package name"))
                        .with_hint("package names are lowercase letters, digits and + - . (at least two characters), e.g. \"ca-certificates\""));
                }
                if seen.insert(name, p.span()).is_some() {
                    return Err(self.error_at(
                        p.span(),
                        format!("package {name:?} is listed twice in this layer"),
                    ));
                }
                first_packages.get_or_insert(p.span());
            }
        }
        if let (Some(span), true) = (first_packages, self.apt_sources.is_empty()) {
            return Err(self
                .error_at(span, "packages need an [[apt-source]] to come from")
                .with_hint("add [[apt-source]] with url, suite, components and signed-by"));
        }
        Ok(())
    }
}

/// A suite or component: path segments without `..`, `.` or odd characters.
fn valid_path_part(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.ends_with('/')
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+/~".contains(c))
}

/// Debian policy 5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least two
/// characters, starting with a letter or digit.
pub fn valid_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}
