//! The OCI layout as a shared store: builds add to it, never disturb each other.

mod common;

use common::Ctx;
use std::fs;

fn recipe(tag: &str, content: &str) -> String {
    format!(
        "[image]\ntags = [\"{tag}\"]\n[[layer]]\nname = \"l\"\n[[layer.file]]\npath = \"/f\"\ncontent = \"{content}\"\n[[layer.copy]]\nsrc = \"big\"\ndst = \"/big\"\n"
    )
}

#[test]
fn concurrent_builds_into_one_out_all_land_with_their_tags() {
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let ctxs: Vec<Ctx> = (0..6)
        .map(|i| {
            let c = Ctx::new();
            c.recipe_text(&recipe(&format!("t{i}"), &format!("build {i}")));
            c.write("big", common::test_bytes(i, 2_000_000));
            c
        })
        .collect();
    let digests: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ctxs
            .iter()
            .map(|c| s.spawn(|| c.build_ok(&o, &["--threads", "2"])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(o.join("index.json")).expect("index")).expect("json");
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 6, "{index}");
    for (i, d) in digests.iter().enumerate() {
        let tagged = entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == format!("t{i}"))
            .unwrap_or_else(|| panic!("tag t{i} missing: {index}"));
        assert_eq!(tagged["digest"], d.as_str());
        let layout = common::Layout::new(&o);
        for layer in layout.layer_digests(d) {
            assert!(!layout.entries(&layer).is_empty());
        }
    }
    let stray: Vec<_> = fs::read_dir(o.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temp files left behind: {stray:?}");
}

#[test]
fn a_tag_moves_to_the_newest_build_and_other_tags_stay() {
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let c = Ctx::new();
    c.write("big", b"x");
    c.recipe_text(&recipe("keep", "one"));
    let first = c.build_ok(&o, &[]);
    c.recipe_text(&recipe("keep", "two"));
    let second = c.build_ok(&o, &["--tag", "latest"]);
    c.recipe_text(&recipe("keep", "three"));
    let third = c.build_ok(&o, &["--tag", "latest"]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(o.join("index.json")).expect("index")).expect("json");
    let by_tag = |t: &str| {
        index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == t)
            .map(|e| e["digest"].as_str().expect("digest").to_string())
    };
    assert_eq!(by_tag("keep").as_deref(), Some(first.as_str()));
    assert_eq!(by_tag("latest").as_deref(), Some(third.as_str()));
    assert_ne!(second, third);
    // Old images stay in the store: nothing is ever deleted.
    assert!(o.join("blobs/sha256").join(&second[7..]).is_file());
}

#[test]
fn layout_files_are_readable_by_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let c = Ctx::new();
    c.write("big", b"x").recipe_text(&recipe("t", "x"));
    let d = c.build_ok(&o, &[]);
    for p in [
        o.join("index.json"),
        o.join("oci-layout"),
        o.join("blobs/sha256").join(&d[7..]),
    ] {
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o044, "{} is {mode:o}", p.display());
    }
}

#[test]
fn out_inside_a_copied_tree_is_skipped_with_one_warning_that_quiet_silences() {
    let c = Ctx::new();
    c.write("app/main.txt", "x");
    c.recipe_text("[image]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nname = \"l\"\n[[layer.copy]]\nsrc = \"app/\"\ndst = \"/app/\"\n");
    let o = c.path().join("app/out");
    let first = c.build_ok(&o, &[]);
    let second = c.build(&o, &[]);
    let log = common::stderr(&second);
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), first);
    assert_eq!(log.matches("warning: not copying").count(), 1, "{log}");
    let quiet = c.build(&o, &["-q"]);
    assert!(quiet.status.success());
    assert!(
        quiet.stderr.is_empty(),
        "-q prints nothing but errors: {}",
        common::stderr(&quiet)
    );
}
