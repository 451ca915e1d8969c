//! Every example recipe bundled in `recipes/` builds, and an auditor's rebuild of it
//! (`imgbuild verify`) matches: the examples are part of what CI checks, so they
//! cannot rot.

mod common;

use common::imgbuild;
use std::path::{Path, PathBuf};

fn bundled_recipes() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("recipe.toml"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

#[test]
fn every_bundled_recipe_builds_and_verifies_against_its_own_build() {
    let recipes = bundled_recipes();
    assert!(!recipes.is_empty(), "recipes/ holds no recipe.toml");
    for recipe in recipes {
        let text = std::fs::read_to_string(&recipe).expect("read recipe");
        if text.contains("[[apt-source]]") {
            // Tests reach loopback addresses only, and this recipe fetches from a
            // Debian mirror: tests/apt.rs builds it from a loopback copy instead.
            common::skip(
                "every_bundled_recipe_builds_and_verifies_against_its_own_build",
                &format!(
                    "{} fetches from its [[apt-source]]; tests/apt.rs \
                     (real_debian_packages_build_the_example_and_run_where_a_daemon_answers) \
                     builds it from a loopback copy of its packages",
                    recipe.display()
                ),
            );
            continue;
        }
        let out = tempfile::tempdir().expect("temp dir");
        let layout = out.path().join("layout");
        let digest = common::build_digest(&recipe, &layout, &[]);
        assert!(
            digest.starts_with("sha256:"),
            "{}: {digest}",
            recipe.display()
        );
        let o = imgbuild()
            .arg("verify")
            .arg(&recipe)
            .arg("--against")
            .arg(format!("oci:{}@{digest}", layout.display()))
            .output()
            .expect("run imgbuild verify");
        assert!(
            o.status.success(),
            "{} does not verify against its own build: {}{}",
            recipe.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
