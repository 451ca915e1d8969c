//! `imgbuild verify RECIPE --against REF`: rebuild in a temporary layout, compare
//! with a layout or a registry image; exit 0 with `verified sha256:…`, or 1 with the
//! diff; never write to --out, the given layout, or anywhere but a temp dir.

mod common;

use common::registry::{Mode, Registry};
use common::{imgbuild, stderr, Ctx};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

const RECIPE: &str = "[image]\nsource-date-epoch = 1700000000\n[config]\nenv = { A = \"1\" }\n\
    [[layer]]\nname = \"app\"\n[[layer.copy]]\nsrc = \"app/\"\ndst = \"/app/\"\n";

fn ctx() -> Ctx {
    let c = Ctx::new();
    c.write("app/hello", "hello\n")
        .write("app/data.txt", "data\n")
        .recipe_text(RECIPE);
    c
}

fn verify(recipe: &Path, against: &str, extra: &[&str]) -> Output {
    imgbuild()
        .arg("verify")
        .arg(recipe)
        .args(["--against", against])
        .args(extra)
        .output()
        .expect("run imgbuild verify")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every path under `root` with its size, mtime (ns) and mode.
fn snapshot(root: &Path) -> BTreeMap<String, (u64, i64, i64, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            let m = fs::symlink_metadata(e.path()).expect("metadata");
            out.insert(
                e.path()
                    .strip_prefix(root)
                    .expect("prefix")
                    .display()
                    .to_string(),
                (m.len(), m.mtime(), m.mtime_nsec(), m.mode()),
            );
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn verify_against_a_layout_built_from_the_same_recipe_prints_verified() {
    let c = ctx();
    let out = c.path().join("out");
    let digest = c.build_ok(&out, &[]);
    let o = verify(
        &c.recipe(),
        &format!("oci:{}", out.display()),
        &["--out", &out.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("verified {digest}\n"));

    let o = verify(
        &c.recipe(),
        &format!("oci:{}", out.display()),
        &["--out", &out.display().to_string(), "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["identical"], true);
    assert_eq!(v["b"]["digest"], digest.as_str());
    assert_eq!(v["a"]["digest"], digest.as_str());
}

#[test]
fn verify_against_a_registry_push_by_tag_and_by_digest() {
    let reg = Registry::start(Mode::Plain);
    let c = ctx();
    let out = c.path().join("out");
    let dest = reg.reference("acme/verify");
    let o = imgbuild()
        .arg("build")
        .arg(c.recipe())
        .arg("--out")
        .arg(&out)
        .arg(format!("--push={dest}:1.0"))
        .output()
        .expect("build --push");
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = stdout(&o).trim().to_string();
    for against in [format!("{dest}:1.0"), format!("{dest}@{digest}")] {
        let o = verify(
            &c.recipe(),
            &against,
            &["--out", &out.display().to_string()],
        );
        assert_eq!(o.status.code(), Some(0), "{against}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("verified {digest}\n"));
    }
}

#[test]
fn a_changed_source_file_exits_1_with_a_diff_naming_the_file() {
    let c = ctx();
    let out = c.path().join("out");
    c.build_ok(&out, &[]);
    c.write("app/hello", "HELLO\n");
    let against = format!("oci:{}", out.display());
    let out_arg = out.display().to_string();
    let o = verify(&c.recipe(), &against, &["--out", &out_arg]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(
        text.lines().next(),
        Some("2 differences: 1 layer, 1 entry"),
        "{text}"
    );
    assert!(text.contains("~ /app/hello  content sha256:"), "{text}");
    assert!(stderr(&o).contains("is not"), "{}", stderr(&o));

    let o = verify(&c.recipe(), &against, &["--out", &out_arg, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let entries: Vec<&serde_json::Value> = v["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .filter(|d| d["level"] == "entry")
        .collect();
    assert_eq!(entries.len(), 1, "{v:#}");
    assert_eq!(entries[0]["path"], "/app/hello");
    // A is the rebuild, B the published image.
    assert!(
        v["a"]["reference"]
            .as_str()
            .unwrap_or("")
            .starts_with("rebuilt from"),
        "{v:#}"
    );
}

#[test]
fn verify_leaves_out_and_the_given_layout_untouched_and_cleans_up() {
    let c = ctx();
    // The recipe copies the whole context; --out is inside it and must stay out of
    // the rebuild exactly as it stayed out of the build.
    c.recipe_text(&RECIPE.replace(
        "src = \"app/\"\ndst = \"/app/\"",
        "src = \"./\"\ndst = \"/ctx/\"",
    ));
    let out = c.path().join("out");
    c.build_ok(&out, &[]);
    let before = snapshot(&out);
    let tmp = tempfile::tempdir().expect("tmp");
    let run = |extra: &[&str]| {
        imgbuild()
            .env("TMPDIR", tmp.path())
            .arg("verify")
            .arg(c.recipe())
            .args(["--against", &format!("oci:{}", out.display())])
            .args(["--out", &out.display().to_string()])
            .args(extra)
            .output()
            .expect("verify")
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(snapshot(&out), before, "verify changed --out");
    c.write("app/hello", "changed\n");
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(snapshot(&out), before, "a failed verify changed --out");
    assert_eq!(
        fs::read_dir(tmp.path()).expect("tmp").count(),
        0,
        "verify left its temporary layout behind"
    );
}

#[test]
fn bad_references_exit_2_before_any_rebuild() {
    let c = ctx();
    let out = c.path().join("out");
    c.build_ok(&out, &[]);
    for against in [
        "oci:/nonexistent/imgbuild-layout".to_string(),
        "Not A Reference!".to_string(),
        format!("oci:{}:no-such-tag", out.display()),
    ] {
        let o = verify(&c.recipe(), &against, &[]);
        assert_eq!(o.status.code(), Some(2), "{against}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "{against}: {}", stdout(&o));
    }
}

#[test]
fn platforms_in_another_order_are_named_not_reported_as_bytes_only() {
    let c = ctx();
    let out = c.path().join("out");
    c.build_ok(&out, &["--platform", "linux/amd64,linux/arm64"]);
    let against = format!("oci:{}", out.display());
    let out_arg = out.display().to_string();
    let o = verify(
        &c.recipe(),
        &against,
        &["--out", &out_arg, "--platform", "linux/arm64,linux/amd64"],
    );
    // The index lists platforms in the order given: another order, another index.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(!text.contains("(bytes)"), "{text}");
    assert!(
        text.contains("manifests[0].platform.architecture: \"arm64\" → \"amd64\""),
        "{text}"
    );
}

/// The lines of stderr that say which format the rebuild used.
fn format_line(o: &Output) -> String {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("verify: rebuilt with format"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_image_built_with_format_1_verifies_without_a_lock_or_a_flag() {
    let c = ctx();
    let out = c.path().join("out");
    let digest = c.build_ok(&out, &["--format-version", "1"]);
    let out_arg = out.display().to_string();
    let against = format!("oci:{}", out.display());
    let o = verify(&c.recipe(), &against, &["--out", &out_arg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("verified {digest}\n"));
    assert_eq!(
        format_line(&o),
        format!("verify: rebuilt with format 1 ({against} carries no org.imgbuild.format-version annotation, as format 1 images do)")
    );
    // -q keeps stderr for errors.
    let o = verify(&c.recipe(), &against, &["--out", &out_arg, "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn an_image_of_a_later_format_verifies_by_its_annotation() {
    let c = ctx();
    let out = c.path().join("out");
    let digest = c.build_ok(&out, &["--format-version", "2"]);
    let against = format!("oci:{}", out.display());
    let o = verify(
        &c.recipe(),
        &against,
        &["--out", &out.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("verified {digest}\n"));
    assert_eq!(
        format_line(&o),
        format!("verify: rebuilt with format 2 (from {against}'s org.imgbuild.format-version annotation)")
    );
}

#[test]
fn a_lock_written_before_format_versions_verifies_a_format_1_image() {
    let c = ctx();
    let out = c.path().join("out");
    let digest = c.build_ok(&out, &["--format-version", "1"]);
    c.write("recipe.lock", "version = 1\n");
    let o = verify(
        &c.recipe(),
        &format!("oci:{}", out.display()),
        &["--out", &out.display().to_string(), "--locked"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("verified {digest}\n"));
    assert_eq!(
        format_line(&o),
        "verify: rebuilt with format 1 (from recipe.lock)"
    );
}

#[test]
fn a_format_mismatch_is_named_plainly_with_the_flag_that_fixes_it() {
    let c = ctx();
    let out = c.path().join("out");
    c.build_ok(&out, &["--format-version", "1"]);
    let against = format!("oci:{}", out.display());
    let out_arg = out.display().to_string();
    let o = verify(
        &c.recipe(),
        &against,
        &["--out", &out_arg, "--format-version", "2"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{against} was built with format 1 (it has no format annotation), rebuilt with format 2"
        )),
        "{err}"
    );
    assert!(err.contains("--format-version 1"), "{err}");
    assert_eq!(
        format_line(&o),
        "verify: rebuilt with format 2 (from --format-version)"
    );
    let text = stdout(&o);
    assert!(
        text.contains("format  A: format 2; B: format 1 or another builder"),
        "{text}"
    );
    // The same through the environment, and the flag that fixes it.
    let o = imgbuild()
        .env("IMGBUILD_FORMAT_VERSION", "1")
        .arg("verify")
        .arg(c.recipe())
        .args(["--against", &against, "--out", &out_arg])
        .output()
        .expect("verify");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
