//! `imgbuild diff A B`: two images built from recipes that differ in one thing each;
//! the diff must find exactly that thing, at the right level, and exit 1 (0 only when
//! identical; equal apart from `--ignore`d entries is still 1).

mod common;

use common::registry::{Mode, Registry};
use common::{imgbuild, stderr, Ctx};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn recipe(image_extra: &str, env: &str, more_layers: &str) -> String {
    format!(
        "[image]\nsource-date-epoch = 1700000000\n{image_extra}\n[config]\nenv = {{ {env} }}\n\
         [[layer]]\nname = \"app\"\n[[layer.copy]]\nsrc = \"app/\"\ndst = \"/app/\"\n{more_layers}"
    )
}

/// A context with the standard sources and recipe; `out` dirs live outside it.
struct Case {
    ctx: Ctx,
    outs: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let ctx = Ctx::new();
        ctx.write("app/hello", "hello\n")
            .write_mode("app/run.sh", "#!/bin/sh\n", 0o644)
            .write("app/data.txt", "data\n")
            .recipe_text(&recipe("", "A = \"1\"", ""));
        Case {
            ctx,
            outs: tempfile::tempdir().expect("tmp"),
        }
    }

    /// Builds the context as it is now into a fresh layout named `name`.
    fn build(&self, name: &str) -> PathBuf {
        self.build_with(name, &[])
    }

    /// The same, with extra `build` flags.
    fn build_with(&self, name: &str, args: &[&str]) -> PathBuf {
        let out = self.outs.path().join(name);
        self.ctx.build_ok(&out, args);
        out
    }
}

fn oci(p: &Path) -> String {
    format!("oci:{}", p.display())
}

fn run_diff(a: &str, b: &str, extra: &[&str]) -> Output {
    imgbuild()
        .args(["diff", a, b])
        .args(extra)
        .output()
        .expect("run imgbuild diff")
}

/// `diff --json`: the exit code and the parsed object.
fn diff_json(a: &str, b: &str, extra: &[&str]) -> (i32, Value) {
    let o = run_diff(a, b, &[&["--json"], extra].concat());
    let code = o.status.code().expect("exit code");
    assert!(
        code == 0 || code == 1,
        "diff failed ({code}): {}",
        stderr(&o)
    );
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    (code, v)
}

fn differences(v: &Value) -> &Vec<Value> {
    v["differences"].as_array().expect("differences array")
}

fn of_level<'a>(v: &'a Value, level: &str) -> Vec<&'a Value> {
    differences(v)
        .iter()
        .filter(|d| d["level"] == level)
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[test]
fn identical_images_exit_0_and_say_identical() {
    let c = Case::new();
    let a = c.build("a");
    let b = c.build("b");
    let o = run_diff(&oci(&a), &oci(&b), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().next(), Some("identical"), "{text}");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!((code, &v["identical"]), (0, &Value::Bool(true)));
    assert!(differences(&v).is_empty());
}

#[test]
fn a_changed_file_shows_its_content_sha256_old_to_new() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.write("app/hello", "HELLO\n");
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let entries = of_level(&v, "entry");
    assert_eq!(entries.len(), 1, "{v:#}");
    let e = entries[0];
    assert_eq!(
        (&e["path"], &e["change"]),
        (&"/app/hello".into(), &"changed".into())
    );
    assert_eq!(
        e["fields"],
        serde_json::json!([{"field": "content", "old": sha256(b"hello\n"), "new": sha256(b"HELLO\n")}])
    );
    // The layer that holds it is named once; nothing else differs.
    let layers = of_level(&v, "layer");
    assert_eq!(layers.len(), 1, "{v:#}");
    assert_eq!(layers[0]["change"], "changed");
    assert_ne!(layers[0]["old"]["diffId"], layers[0]["new"]["diffId"]);
    assert_eq!(v["summary"]["differences"], 2, "{v:#}");

    let o = run_diff(&oci(&a), &oci(&b), &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text.lines().next(),
        Some("2 differences: 1 layer, 1 entry"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "~ /app/hello  content {} → {}",
            sha256(b"hello\n"),
            sha256(b"HELLO\n")
        )),
        "{text}"
    );
}

#[test]
fn a_mode_change_shows_only_the_mode_field() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.write_mode("app/run.sh", "#!/bin/sh\n", 0o755);
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let entries = of_level(&v, "entry");
    assert_eq!(entries.len(), 1, "{v:#}");
    assert_eq!(entries[0]["path"], "/app/run.sh");
    assert_eq!(
        entries[0]["fields"],
        serde_json::json!([{"field": "mode", "old": "0644", "new": "0755"}])
    );
}

#[test]
fn an_env_change_is_one_config_json_path_old_to_new() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.recipe_text(&recipe("", "A = \"2\"", ""));
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    assert_eq!(differences(&v).len(), 1, "{v:#}");
    let d = &differences(&v)[0];
    assert_eq!(d["level"], "config");
    assert!(
        d["path"].as_str().expect("path").starts_with("config.Env["),
        "{d}"
    );
    assert_eq!((&d["old"], &d["new"]), (&"A=1".into(), &"A=2".into()));
    let text = String::from_utf8_lossy(&run_diff(&oci(&a), &oci(&b), &[]).stdout).into_owned();
    let line = format!("{}: \"A=1\" → \"A=2\"", d["path"].as_str().expect("path"));
    assert!(text.contains(&line), "{line} not in:\n{text}");
}

#[test]
fn an_added_file_is_an_added_entry() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.write("app/new.txt", "new\n");
    let b = c.build("b");
    let (_, v) = diff_json(&oci(&a), &oci(&b), &[]);
    let entries = of_level(&v, "entry");
    assert_eq!(entries.len(), 1, "{v:#}");
    assert_eq!(
        (&entries[0]["path"], &entries[0]["change"]),
        (&"/app/new.txt".into(), &"added".into())
    );
    assert!(entries[0]["old"].is_null());
    assert_eq!(entries[0]["new"]["type"], "file");
    assert_eq!(entries[0]["new"]["content"], sha256(b"new\n"));
}

#[test]
fn a_removed_file_is_a_removed_entry() {
    let c = Case::new();
    let a = c.build("a");
    std::fs::remove_file(c.ctx.path().join("app/data.txt")).expect("rm");
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let entries = of_level(&v, "entry");
    assert_eq!(entries.len(), 1, "{v:#}");
    assert_eq!(
        (&entries[0]["path"], &entries[0]["change"]),
        (&"/app/data.txt".into(), &"removed".into())
    );
    assert!(entries[0]["new"].is_null());
    let text = String::from_utf8_lossy(&run_diff(&oci(&a), &oci(&b), &[]).stdout).into_owned();
    assert!(
        text.contains("- /app/data.txt  file 0644 0:0 5 bytes"),
        "{text}"
    );
}

#[test]
fn recompression_is_the_same_diff_id_under_another_digest_with_no_entry_differences() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx
        .recipe_text(&recipe("compression = \"zstd\"", "A = \"1\"", ""));
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    assert_eq!(differences(&v).len(), 1, "{v:#}");
    let l = &differences(&v)[0];
    assert_eq!(
        (&l["level"], &l["change"]),
        (&"layer".into(), &"recompressed".into())
    );
    assert_eq!(l["old"]["diffId"], l["new"]["diffId"]);
    assert_ne!(l["old"]["digest"], l["new"]["digest"]);
    assert_eq!(
        l["old"]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        l["new"]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert!(of_level(&v, "entry").is_empty());
}

#[test]
fn an_extra_layer_is_reported_as_added_after_the_common_ones() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.recipe_text(&recipe(
        "",
        "A = \"1\"",
        "[[layer]]\nname = \"more\"\n[[layer.file]]\npath = \"/more\"\ncontent = \"m\"\n",
    ));
    let b = c.build("b");
    let (_, v) = diff_json(&oci(&a), &oci(&b), &[]);
    let layers = of_level(&v, "layer");
    assert_eq!(layers.len(), 1, "{v:#}");
    assert_eq!(
        (&layers[0]["layer"], &layers[0]["change"]),
        (&1.into(), &"added".into())
    );
    assert!(layers[0]["old"].is_null());
    // The history gained an entry: a config difference, named by its path.
    assert!(
        of_level(&v, "config")
            .iter()
            .any(|d| d["path"].as_str().unwrap_or("").starts_with("history[1]")),
        "{v:#}"
    );
}

/// `--ignore` accepts the only difference, but the two digests still differ: the
/// summary says "equal apart from the ignored fields", never "identical", and the
/// exit code stays 1; the JSON says `identical: false, equalApartFromIgnored: true`.
#[test]
fn ignore_hides_the_only_difference_but_never_says_identical() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.write("app/hello", "HELLO\n");
    let b = c.build("b");
    assert_eq!(run_diff(&oci(&a), &oci(&b), &[]).status.code(), Some(1));
    for glob in ["/app/hello", "app/*"] {
        let o = run_diff(&oci(&a), &oci(&b), &["--ignore", glob]);
        assert_eq!(o.status.code(), Some(1), "--ignore {glob}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            text.lines().next(),
            Some("equal apart from the ignored fields (1 ignored)"),
            "{text}"
        );
        assert!(!text.contains("identical"), "{text}");
        let (code, v) = diff_json(&oci(&a), &oci(&b), &["--ignore", glob]);
        assert_eq!((code, &v["summary"]["ignored"]), (1, &1.into()));
        assert_eq!(v["identical"], false, "{v:#}");
        assert_eq!(v["equalApartFromIgnored"], true, "{v:#}");
        assert!(differences(&v).is_empty(), "{v:#}");
    }
    // A glob that matches something else hides nothing.
    let (code, v) = diff_json(&oci(&a), &oci(&b), &["--ignore", "/var/**"]);
    assert_eq!(code, 1);
    assert_eq!(v["equalApartFromIgnored"], false, "{v:#}");
    // The same image: identical, not "apart from" anything.
    let (code, v) = diff_json(&oci(&a), &oci(&a), &["--ignore", "/app/hello"]);
    assert_eq!(code, 0);
    assert_eq!(
        (&v["identical"], &v["equalApartFromIgnored"]),
        (&true.into(), &false.into())
    );
}

#[test]
fn json_output_parses_with_python_and_has_the_documented_fields() {
    common::require_tool("python3");
    let c = Case::new();
    let a = c.build("a");
    c.ctx.write("app/hello", "HELLO\n");
    c.ctx.recipe_text(&recipe("", "A = \"2\"", ""));
    let b = c.build("b");
    let o = run_diff(&oci(&a), &oci(&b), &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let check = r#"
import json, sys
v = json.load(sys.stdin)
assert v["identical"] is False
assert v["equalApartFromIgnored"] is False
for side in ("a", "b"):
    assert set(v[side]) == {"reference", "digest", "mediaType", "formatVersion"}, v[side]
assert v["recompressedOnly"] is False
assert set(v["summary"]) == {"differences", "ignored", "index", "platform", "manifest", "config", "layer", "entry"}, v["summary"]
assert v["summary"]["differences"] == len(v["differences"])
keys = {
    "config": {"level", "platform", "path", "change", "old", "new"},
    "layer": {"level", "platform", "layer", "change", "old", "new", "note"},
    "entry": {"level", "platform", "layer", "path", "change", "fields", "old", "new"},
}
seen = set()
for d in v["differences"]:
    assert set(d) == keys[d["level"]], d
    seen.add(d["level"])
assert seen == {"config", "layer", "entry"}, seen
print("ok")
"#;
    let mut py = Command::new("python3")
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut py.stdin.take().expect("stdin"), &o.stdout).expect("pipe");
    let r = py.wait_with_output().expect("python3");
    assert!(
        r.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "ok");
}

#[test]
fn a_platform_on_one_side_only_is_reported_and_shared_ones_match() {
    let c = Case::new();
    c.ctx.recipe_text(&recipe(
        "platforms = [\"linux/amd64\", \"linux/arm64\"]",
        "A = \"1\"",
        "",
    ));
    let a = c.build("a");
    c.ctx.recipe_text(&recipe(
        "platforms = [\"linux/amd64\", \"linux/arm/v7\"]",
        "A = \"1\"",
        "",
    ));
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    // The index's second descriptor names another platform; nothing else differs
    // but the platforms themselves.
    let index: Vec<(&Value, &Value, &Value)> = of_level(&v, "index")
        .iter()
        .map(|d| (&d["path"], &d["old"], &d["new"]))
        .collect();
    assert_eq!(
        index,
        [
            (
                &"manifests[1].platform.architecture".into(),
                &"arm64".into(),
                &"arm".into()
            ),
            (
                &"manifests[1].platform.variant".into(),
                &Value::Null,
                &"v7".into()
            )
        ],
        "{v:#}"
    );
    let platforms: Vec<(String, String)> = differences(&v)
        .iter()
        .filter(|d| d["level"] != "index")
        .map(|d| {
            assert_eq!(d["level"], "platform", "only platforms differ: {v:#}");
            (
                d["platform"].as_str().unwrap_or("").into(),
                d["change"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("linux/arm64".to_string(), "removed".to_string()),
            ("linux/arm/v7".to_string(), "added".to_string())
        ]
    );
    let text = String::from_utf8_lossy(&run_diff(&oci(&a), &oci(&b), &[]).stdout).into_owned();
    assert!(
        text.contains("\nplatforms\n  linux/arm64  only in A (sha256:"),
        "{text}"
    );
    assert!(
        text.contains("\n  linux/arm/v7  only in B (sha256:"),
        "{text}"
    );
}

fn push(layout: &Path, dest: &str) {
    let o = imgbuild()
        .args(["push", &oci(layout), dest])
        .output()
        .expect("run imgbuild push");
    assert!(o.status.success(), "push: {}", stderr(&o));
}

#[test]
fn a_layout_and_the_same_image_pushed_to_a_registry_are_identical() {
    let reg = Registry::start(Mode::Plain);
    let c = Case::new();
    let a = c.build("a");
    let dest = reg.reference("acme/diff:1");
    push(&a, &dest);
    let o = run_diff(&oci(&a), &dest, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().next(),
        Some("identical")
    );
}

#[test]
fn registry_layers_are_streamed_and_walked_like_layout_ones() {
    let reg = Registry::start(Mode::Plain);
    let c = Case::new();
    let a = c.build("a");
    push(&a, &reg.reference("acme/diff:a"));
    c.ctx.write("app/hello", "HELLO\n");
    let b = c.build("b");
    push(&b, &reg.reference("acme/diff:b"));
    let from_layouts = diff_json(&oci(&a), &oci(&b), &[]).1;
    let across = diff_json(&reg.reference("acme/diff:a"), &oci(&b), &[]).1;
    let registries = diff_json(
        &reg.reference("acme/diff:a"),
        &reg.reference("acme/diff:b"),
        &[],
    )
    .1;
    assert_eq!(of_level(&from_layouts, "entry").len(), 1);
    assert_eq!(from_layouts["differences"], across["differences"]);
    assert_eq!(from_layouts["differences"], registries["differences"]);
}

#[test]
fn bad_references_and_globs_exit_2() {
    let c = Case::new();
    let a = c.build("a");
    let missing = c.outs.path().join("missing");
    for (x, y, extra) in [
        (oci(&missing), oci(&a), vec![]),
        (oci(&a), "Not A Reference!".to_string(), vec![]),
        (format!("{}:no-such-tag", oci(&a)), oci(&a), vec![]),
        (oci(&a), oci(&a), vec!["--ignore", "/a/[b"]),
    ] {
        let o = run_diff(&x, &y, &extra);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{x} {y} {extra:?}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

/// The layer blob of a single-platform layout image (its first layer).
fn first_layer_blob(layout: &Path) -> PathBuf {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let l = common::Layout::new(layout);
    let layer = l.layer_digests(digest)[0].clone();
    layout.join("blobs/sha256").join(&layer[7..])
}

fn overwrite(path: &Path, bytes: &[u8]) {
    let mut perms = std::fs::metadata(path).expect("blob").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).expect("chmod");
    std::fs::write(path, bytes).expect("overwrite blob");
}

#[test]
fn layers_with_the_same_diff_id_are_not_read() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx
        .recipe_text(&recipe("compression = \"zstd\"", "A = \"1\"", ""));
    let b = c.build("b");
    // Were B's layer read, this would be a corrupt-layer error (exit 2).
    overwrite(&first_layer_blob(&b), b"not a layer at all");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    assert_eq!(differences(&v)[0]["change"], "recompressed", "{v:#}");
}

#[test]
fn a_corrupt_layer_is_bad_input_naming_the_layer() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.write("app/hello", "HELLO\n");
    let b = c.build("b");
    overwrite(&first_layer_blob(&b), b"not a layer at all");
    let o = run_diff(&oci(&a), &oci(&b), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("layer 0 of {}", oci(&b))), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn an_index_against_a_single_manifest_is_a_media_type_difference() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx.recipe_text(&recipe(
        "platforms = [\"linux/amd64\", \"linux/arm64\"]",
        "A = \"1\"",
        "",
    ));
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let d = differences(&v);
    assert_eq!(d.len(), 2, "{v:#}");
    assert_eq!(
        (&d[0]["level"], &d[0]["path"]),
        (&"index".into(), &"mediaType".into())
    );
    assert_eq!(d[0]["old"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(d[0]["new"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        (&d[1]["level"], &d[1]["platform"], &d[1]["change"]),
        (&"platform".into(), &"linux/arm64".into(), &"added".into())
    );
}

#[test]
fn a_whiteout_in_a_later_layer_is_an_added_entry_of_that_layer() {
    let c = Case::new();
    let cleanup = |remove: &str| {
        format!("[[layer]]\nname = \"cleanup\"\n{remove}[[layer.file]]\npath = \"/keep\"\ncontent = \"k\"\n")
    };
    c.ctx.recipe_text(&recipe("", "A = \"1\"", &cleanup("")));
    let a = c.build("a");
    c.ctx.recipe_text(&recipe(
        "",
        "A = \"1\"",
        &cleanup("remove = [\"/app/data.txt\"]\n"),
    ));
    let b = c.build("b");
    let (_, v) = diff_json(&oci(&a), &oci(&b), &[]);
    // The whiteout and its implicit parent directory, both new in layer 1.
    let entries: Vec<(&Value, &Value, &Value)> = of_level(&v, "entry")
        .iter()
        .map(|e| (&e["layer"], &e["path"], &e["change"]))
        .collect();
    assert_eq!(
        entries,
        [
            (&1.into(), &"/app".into(), &"added".into()),
            (&1.into(), &"/app/.wh.data.txt".into(), &"added".into())
        ],
        "{v:#}"
    );
}

#[test]
fn a_change_in_a_layer_shared_by_platforms_is_reported_for_each_platform() {
    let c = Case::new();
    let both = "platforms = [\"linux/amd64\", \"linux/arm64\"]";
    c.ctx.recipe_text(&recipe(both, "A = \"1\"", ""));
    let a = c.build("a");
    c.ctx.write("app/hello", "HELLO\n");
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let entries: Vec<(&Value, &Value, &Value)> = of_level(&v, "entry")
        .iter()
        .map(|e| (&e["platform"], &e["path"], &e["fields"][0]["new"]))
        .collect();
    let new = sha256(b"HELLO\n").into();
    assert_eq!(
        entries,
        [
            (&"linux/amd64".into(), &"/app/hello".into(), &new),
            (&"linux/arm64".into(), &"/app/hello".into(), &new)
        ],
        "{v:#}"
    );
    assert_eq!(of_level(&v, "layer").len(), 2, "{v:#}");
}

/// `imgbuild diff A B | head -1`: the reader stops early; the exit code is still the
/// comparison's (1), and no "Broken pipe" error is printed.
#[test]
fn a_reader_that_stops_early_keeps_exit_1_and_gets_no_broken_pipe_error() {
    use std::io::{BufRead, BufReader};
    let case = Case::new();
    let a = case.build("a");
    // Enough changed files that the report is far larger than a pipe's buffer.
    for i in 0..3000 {
        case.ctx
            .write(&format!("app/many/file-{i:04}.txt"), "new\n");
    }
    let b = case.build("b");
    let mut child = imgbuild()
        .args(["diff", &oci(&a), &oci(&b)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run imgbuild diff");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the summary line");
    // The reader is dropped here: the pipe closes with most of the report unread.
    let o = child.wait_with_output().expect("wait");
    assert!(first.contains("differences"), "{first}");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        !stderr(&o).to_lowercase().contains("broken pipe"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_single_arm_v7_manifest_matches_the_same_manifest_in_an_index() {
    let c = Case::new();
    c.ctx
        .recipe_text(&recipe("platforms = [\"linux/arm/v7\"]", "A = \"1\"", ""));
    let a = c.build("a");
    c.ctx.recipe_text(&recipe(
        "platforms = [\"linux/amd64\", \"linux/arm/v7\"]",
        "A = \"1\"",
        "",
    ));
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        v["a"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The variant comes from A's config: linux/arm/v7 is on both sides, the same
    // manifest; only linux/amd64 is B's alone.
    let platforms: Vec<(&Value, &Value)> = of_level(&v, "platform")
        .iter()
        .map(|d| (&d["platform"], &d["change"]))
        .collect();
    assert_eq!(
        platforms,
        [(&"linux/amd64".into(), &"added".into())],
        "{v:#}"
    );
}

#[test]
fn a_layout_directory_that_does_not_exist_is_named_as_such() {
    let c = Case::new();
    let a = c.build("a");
    let missing = c.outs.path().join("missing");
    for (x, y) in [(oci(&missing), oci(&a)), (oci(&a), oci(&missing))] {
        let o = run_diff(&x, &y, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "the directory {} does not exist",
                missing.display()
            )) && !err.contains("oci-layout"),
            "{err}"
        );
    }
}

/// Writes `bytes` as a blob of the layout; its digest.
fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let path = layout.join("blobs/sha256").join(&d[7..]);
    if !path.exists() {
        std::fs::write(&path, bytes).expect("write blob");
    }
    d
}

/// The JSON of the layout's (first) root: a manifest or an index.
fn root_json(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    common::Layout::new(layout).json(digest)
}

/// Makes `v` the layout's root (index.json's first descriptor).
fn set_root(layout: &Path, v: &Value) {
    let bytes = serde_json::to_vec(v).expect("json");
    let digest = put_blob(layout, &bytes);
    let path = layout.join("index.json");
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("index")).expect("json");
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = bytes.len().into();
    overwrite(&path, &serde_json::to_vec(&index).expect("json"));
}

/// Replaces the only layer of the layout's single-manifest image by the plain tar
/// `tar` (manifest descriptor and config diff_id follow).
fn set_layer_tar(layout: &Path, tar: &[u8]) {
    let mut m = root_json(layout);
    let digest = put_blob(layout, tar);
    m["layers"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": digest,
        "size": tar.len(),
    }]);
    let l = common::Layout::new(layout);
    let mut config = l.json(m["config"]["digest"].as_str().expect("config digest"));
    config["rootfs"]["diff_ids"] = serde_json::json!([digest]);
    let config = serde_json::to_vec(&config).expect("json");
    m["config"]["digest"] = put_blob(layout, &config).into();
    m["config"]["size"] = config.len().into();
    set_root(layout, &m);
}

#[test]
fn a_layer_digest_that_is_not_sha256_is_bad_input_naming_the_layer() {
    let c = Case::new();
    let a = c.build("a");
    let b = c.build("b");
    let mut m = root_json(&b);
    m["layers"][0]["digest"] = format!("sha512:{}", "ab".repeat(64)).into();
    set_root(&b, &m);
    let o = run_diff(&oci(&a), &oci(&b), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("layer 0 of {}", oci(&b))) && err.contains("sha512:"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

/// PAX records (`LEN KEY=VALUE\n`), values as raw bytes.
fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = 1 + k.len() + 1 + v.len() + 1;
        let mut len = body + 1;
        while body + len.to_string().len() != len {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// A plain tar: an optional PAX global header, then regular files (raw path bytes,
/// their PAX records, content), each 0644 0:0 mtime 1.
type Pax<'a> = &'a [(&'a str, &'a [u8])];
fn pax_tar(global: Option<Pax>, files: &[(&[u8], Pax, &[u8])]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut b = tar::Builder::new(Vec::new());
    let mut append = |kind: tar::EntryType, path: &[u8], data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_path(std::ffi::OsStr::from_bytes(path)).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_cksum();
        b.append(&h, data).expect("append");
    };
    if let Some(g) = global {
        append(
            tar::EntryType::XGlobalHeader,
            b"pax_global_header",
            &pax_records(g),
        );
    }
    for (path, pax, data) in files {
        if !pax.is_empty() {
            append(tar::EntryType::XHeader, b"PaxHeader", &pax_records(pax));
        }
        append(tar::EntryType::Regular, path, data);
    }
    b.into_inner().expect("tar")
}

#[test]
fn a_pax_global_header_alone_is_an_encoding_difference_not_a_reordering() {
    let c = Case::new();
    let a = c.build("a");
    let b = c.build("b");
    let files: &[(&[u8], Pax, &[u8])] = &[(b"f", &[], b"x"), (b"g", &[], b"y")];
    set_layer_tar(&a, &pax_tar(None, files));
    set_layer_tar(&b, &pax_tar(Some(&[("comment", b"built by me")]), files));
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let layers = of_level(&v, "layer");
    assert_eq!(layers.len(), 1, "{v:#}");
    assert!(of_level(&v, "entry").is_empty(), "{v:#}");
    let note = layers[0]["note"].as_str().unwrap_or_default();
    assert!(note.contains("encoded differently"), "{v:#}");
}

#[test]
fn binary_xattr_values_are_compared_as_bytes_and_shown_in_hex() {
    let c = Case::new();
    let a = c.build("a");
    let b = c.build("b");
    let cap = "SCHILY.xattr.security.capability";
    // Two capability sets that differ in one byte >= 0x80 (no valid UTF-8 either).
    let tar_with = |last: u8| {
        let value = [0x01, 0x00, 0x00, 0x02, last];
        pax_tar(None, &[(b"bin/ping", &[(cap, &value[..])], b"ping")])
    };
    set_layer_tar(&a, &tar_with(0x80));
    set_layer_tar(&b, &tar_with(0xc0));
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let entries = of_level(&v, "entry");
    assert_eq!(entries.len(), 1, "{v:#}");
    assert_eq!(entries[0]["path"], "/bin/ping");
    assert_eq!(
        entries[0]["fields"],
        serde_json::json!([{"field": format!("pax:{cap}"), "old": "hex:0100000280", "new": "hex:01000002c0"}])
    );
    assert_eq!(entries[0]["old"]["pax"][cap], "hex:0100000280");
    assert!(of_level(&v, "layer")[0]["note"].is_null(), "{v:#}");
    let text = String::from_utf8_lossy(&run_diff(&oci(&a), &oci(&b), &[]).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "    ~ /bin/ping  pax:{cap} hex:0100000280 → hex:01000002c0\n"
        )),
        "{text}"
    );
}

#[test]
fn non_utf8_paths_stay_apart_and_are_shown_in_hex() {
    let c = Case::new();
    let a = c.build("a");
    let b = c.build("b");
    // Lossy conversion would make both names `/x\u{fffd}`.
    set_layer_tar(
        &a,
        &pax_tar(None, &[(b"x\xe9", &[], b"1"), (b"x\xe8", &[], b"2")]),
    );
    set_layer_tar(&b, &pax_tar(None, &[(b"x\xe9", &[], b"1")]));
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let entries: Vec<(&Value, &Value)> = of_level(&v, "entry")
        .iter()
        .map(|e| (&e["path"], &e["change"]))
        .collect();
    assert_eq!(
        entries,
        [(&"hex:2f78e8".into(), &"removed".into())],
        "{v:#}"
    );
    // Globs match the path's bytes.
    let (code, v) = diff_json(&oci(&a), &oci(&b), &["--ignore", "/x*"]);
    assert_eq!((code, &v["summary"]["ignored"]), (1, &1.into()), "{v:#}");
    assert_eq!(v["equalApartFromIgnored"], true, "{v:#}");
}

#[test]
fn platforms_in_another_order_are_index_differences_by_position() {
    let c = Case::new();
    c.ctx.recipe_text(&recipe(
        "platforms = [\"linux/amd64\", \"linux/arm64\"]",
        "A = \"1\"",
        "",
    ));
    let a = c.build("a");
    let b = c.build("b");
    let mut index = root_json(&b);
    let list = index["manifests"].as_array_mut().expect("manifests");
    list.swap(0, 1);
    // And an annotation on one descriptor, which no digest covers.
    list[0]["annotations"] = serde_json::json!({"com.example.note": "x"});
    set_root(&b, &index);
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    let records: Vec<(&Value, &Value, &Value, &Value)> = differences(&v)
        .iter()
        .map(|d| (&d["level"], &d["path"], &d["old"], &d["new"]))
        .collect();
    let index_level = &Value::from("index");
    assert_eq!(
        records,
        [
            (
                index_level,
                &"manifests[0].annotations".into(),
                &Value::Null,
                &serde_json::json!({"com.example.note": "x"})
            ),
            (
                index_level,
                &"manifests[0].platform.architecture".into(),
                &"amd64".into(),
                &"arm64".into()
            ),
            (
                index_level,
                &"manifests[1].platform.architecture".into(),
                &"arm64".into(),
                &"amd64".into()
            )
        ],
        "{v:#}"
    );
    let text = String::from_utf8_lossy(&run_diff(&oci(&a), &oci(&b), &[]).stdout).into_owned();
    assert!(!text.contains("(bytes)"), "{text}");
    assert!(
        text.contains("  index     manifests[0].platform.architecture: \"amd64\" → \"arm64\"\n"),
        "{text}"
    );
}

/// Recompresses every gzip layer of the layout's single-manifest image at another
/// level: the same tars (diff_ids), the same media type, other digests.
fn recompress_gzip_layers(layout: &Path) {
    use std::io::{Read, Write};
    let mut m = root_json(layout);
    let layers = m["layers"].as_array().expect("layers").clone();
    let mut new_layers = Vec::new();
    for l in layers {
        let d = l["digest"].as_str().expect("digest");
        let blob = std::fs::read(layout.join("blobs/sha256").join(&d[7..])).expect("blob");
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .expect("gunzip");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        gz.write_all(&tar).expect("gzip");
        let bytes = gz.finish().expect("gzip");
        let mut l = l.clone();
        l["digest"] = put_blob(layout, &bytes).into();
        l["size"] = bytes.len().into();
        new_layers.push(l);
    }
    m["layers"] = Value::Array(new_layers);
    set_root(layout, &m);
}

#[test]
fn a_recompression_keeping_the_media_type_is_named_once_not_layer_by_layer() {
    let c = Case::new();
    c.ctx.recipe_text(&recipe(
        "",
        "A = \"1\"",
        "[[layer]]\nname = \"more\"\n[[layer.file]]\npath = \"/etc/more\"\ncontent = \"more\"\n",
    ));
    let a = c.build("a");
    let b = c.build("b");
    recompress_gzip_layers(&b);
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    assert_eq!(v["recompressedOnly"], true, "{v:#}");
    let layers = of_level(&v, "layer");
    assert_eq!(layers.len(), 2, "{v:#}");
    assert!(
        layers.iter().all(|l| l["change"] == "recompressed"),
        "{v:#}"
    );

    let o = run_diff(&oci(&a), &oci(&b), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("layers  the layers' uncompressed contents are identical; only their compressed bytes differ (a different compressor or format version)"),
        "{text}"
    );
    assert!(text.contains("  layers    2 recompressed:"), "{text}");
    assert!(!text.contains("layer 0"), "{text}");
    assert!(!text.contains("layer 1"), "{text}");
}

#[test]
fn another_media_type_is_not_called_a_mere_recompression() {
    let c = Case::new();
    let a = c.build("a");
    c.ctx
        .recipe_text(&recipe("compression = \"zstd\"", "A = \"1\"", ""));
    let b = c.build("b");
    let (code, v) = diff_json(&oci(&a), &oci(&b), &[]);
    assert_eq!(code, 1);
    assert_eq!(v["recompressedOnly"], false, "{v:#}");
    let o = run_diff(&oci(&a), &oci(&b), &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    // Named by its recipe name, from the config's history.
    assert!(text.contains("layer 0 (app) recompressed"), "{text}");
    let layer = &v["differences"][0];
    assert_eq!(layer["new"]["name"], "app", "{v:#}");
    assert!(
        !text.contains("uncompressed contents are identical"),
        "{text}"
    );
}

#[test]
fn images_of_two_format_versions_name_both_versions() {
    let c = Case::new();
    let one = c.build_with("one", &["--format-version", "1"]);
    let two = c.build_with("two", &["--format-version", "2"]);
    let (code, v) = diff_json(&oci(&one), &oci(&two), &[]);
    assert_eq!(code, 1);
    assert_eq!(v["a"]["formatVersion"], Value::Null, "{v:#}");
    assert_eq!(v["b"]["formatVersion"], 2, "{v:#}");
    // Format 1's manifest has no annotations at all: the whole object is added.
    let manifest = of_level(&v, "manifest");
    assert_eq!(manifest.len(), 1, "{v:#}");
    assert_eq!(manifest[0]["path"], "annotations", "{v:#}");
    assert_eq!(
        manifest[0]["new"],
        serde_json::json!({"org.imgbuild.format-version": "2"}),
        "{v:#}"
    );
    let o = run_diff(&oci(&one), &oci(&two), &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("format  A: format 1 or another builder (no org.imgbuild.format-version annotation); B: format 2"),
        "{text}"
    );
    // The same format on both sides: no format line.
    let two_again = c.build_with("two-again", &["--format-version", "2"]);
    c.ctx.write("app/hello", "changed\n");
    let changed = c.build_with("changed", &["--format-version", "2"]);
    let o = run_diff(&oci(&two_again), &oci(&changed), &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("format  "), "{text}");
}
