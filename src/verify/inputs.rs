//! Before a rebuild: the local inputs against those an image's provenance records.
//!
//! The provenance (docs/provenance.md) lists every context file whose bytes reached
//! the image — the recipe, the lock, each source — with its sha256. Each is hashed
//! here, in the local checkout, and any that differs or is missing is named, so that
//! an auditor learns which input explains a failed reproduction before spending a
//! build on it. Names come from a document fetched from a registry: each must be a
//! plain relative path, and is opened below the context without following symlinks
//! (`beneath`), so a hostile provenance cannot make imgbuild read outside it.

use std::io::Read as _;
use std::path::{Component, Path};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// One recorded input that the checkout does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDifference {
    /// The path relative to the context, as the provenance names it.
    pub name: String,
    /// `recipe`, `lock` or `source`.
    pub role: String,
    /// What is wrong: `changed (…)`, `missing here`, ….
    pub what: String,
}

impl std::fmt::Display for InputDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The name comes from a registry's document: escaped, so it cannot move the
        // cursor or write escape codes into a CI log.
        write!(
            f,
            "{} {}: {}",
            self.role,
            self.name.escape_debug(),
            self.what
        )
    }
}

/// The recorded context inputs of `statement` that the files below `context` do not
/// match (empty: every one matches). Inputs that are not context files (url archives,
/// the base image) are not checked here: the rebuild fetches them by digest.
pub fn compare(statement: &Value, context: &Path) -> Result<Vec<InputDifference>> {
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let root = crate::beneath::open_root(context)
        .map_err(|e| Error::io_path("cannot open the context", context, e))?;
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for dep in deps {
        let role = dep["annotations"]["imgbuild.role"].as_str().unwrap_or("");
        if !matches!(role, "recipe" | "lock" | "source") {
            continue;
        }
        let (Some(name), Some(recorded)) = (dep["name"].as_str(), dep["digest"]["sha256"].as_str())
        else {
            continue;
        };
        let differ = |what: String| InputDifference {
            name: name.to_string(),
            role: role.to_string(),
            what,
        };
        let rel = Path::new(name);
        if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            out.push(differ("not a path inside the context".into()));
            continue;
        }
        // One guess per file and run: a provenance naming a file twice (with two
        // hashes) would let whoever wrote it test guesses of the file's content.
        if !seen.insert(name.to_string()) {
            out.push(differ("named more than once in the provenance".into()));
            continue;
        }
        // The file's own hash is never shown: the provenance may name any file of
        // the checkout, and the log may be public.
        match hash_beneath(&root, rel) {
            Ok(here) if here == recorded => {}
            Ok(_) => out.push(differ(format!(
                "changed (the provenance records sha256 {}…, the file here differs)",
                short(recorded)
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(differ("missing here".into()))
            }
            Err(e) => out.push(differ(format!("cannot be read here: {e}"))),
        }
    }
    Ok(out)
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

fn hash_beneath(root: &std::os::fd::OwnedFd, rel: &Path) -> std::io::Result<String> {
    use std::os::fd::AsFd as _;
    let mut file = crate::beneath::open_regular(root.as_fd(), rel)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statement(deps: Value) -> Value {
        json!({"predicate": {"buildDefinition": {"resolvedDependencies": deps}}})
    }

    fn sha(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    #[test]
    fn names_each_changed_or_missing_input_and_refuses_paths_outside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("recipe.toml"), b"r").unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a"), b"changed").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("src/link")).unwrap();
        let s = statement(json!([
            {"name": "recipe.toml", "digest": {"sha256": sha(b"r")}, "annotations": {"imgbuild.role": "recipe"}},
            {"name": "src/a", "digest": {"sha256": sha(b"original")}, "annotations": {"imgbuild.role": "source"}},
            {"name": "src/gone", "digest": {"sha256": sha(b"x")}, "annotations": {"imgbuild.role": "source"}},
            {"name": "../outside", "digest": {"sha256": sha(b"x")}, "annotations": {"imgbuild.role": "source"}},
            {"name": "src/link", "digest": {"sha256": sha(b"x")}, "annotations": {"imgbuild.role": "source"}},
            {"name": "recipe.toml", "digest": {"sha256": sha(b"guess")}, "annotations": {"imgbuild.role": "source"}},
            {"uri": "https://example.com/a.tar", "digest": {"sha256": sha(b"x")}, "annotations": {"imgbuild.role": "archive"}},
        ]));
        let found = compare(&s, dir.path()).unwrap();
        assert!(
            !found
                .iter()
                .any(|d| d.what.contains(&sha(b"changed")[..12])),
            "the local file's hash is never shown: {found:?}"
        );
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|d| (d.name.as_str(), d.what.split(' ').next().unwrap_or("")))
            .collect();
        assert_eq!(
            names,
            [
                ("src/a", "changed"),
                ("src/gone", "missing"),
                ("../outside", "not"),
                ("src/link", "cannot"),
                ("recipe.toml", "named")
            ],
            "{found:?}"
        );
    }
}
