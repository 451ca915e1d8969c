//! The layer cache shared through a registry (`build --cache-to` / `--cache-from`),
//! against a real registry (Debian's `docker-registry` on 127.0.0.1,
//! tests/common/registry.rs) and OCI layouts: a second machine's build takes every
//! layer from the cache and gets the same digest; a damaged, unreachable or
//! unreadable cache is a warning and a normal build; concurrent writers lose nothing;
//! a push mounts the cached layers.
//!
//! Tools (Debian): `apt-get install -y docker-registry skopeo apache2-utils`.

mod common;

use common::proxy::{Action, Fault, FaultProxy};
use common::registry::{Mode, Registry};
use common::{imgbuild, require_tool, stderr, test_bytes};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

const RECIPE: &str = r#"[image]
source-date-epoch = 1700000000

[[layer]]
name = "deps"
  [[layer.copy]]
  src = "deps"
  dst = "/opt/deps"

[[layer]]
name = "app"
  [[layer.copy]]
  src = "app"
  dst = "/app"
  [[layer.file]]
  path = "/etc/app.conf"
  content = "port = 8080\n"
"#;

/// A context at `root`: the recipe and a few files per layer.
fn make_context(root: &Path) {
    fs::create_dir_all(root.join("deps/lib")).expect("mkdir");
    fs::create_dir_all(root.join("app/bin")).expect("mkdir");
    fs::write(root.join("recipe.toml"), RECIPE).expect("write recipe");
    fs::write(root.join("deps/lib/a.so"), test_bytes(1, 400_000)).expect("write");
    fs::write(root.join("deps/lib/b.so"), test_bytes(2, 50_000)).expect("write");
    fs::write(root.join("app/bin/server"), test_bytes(3, 200_000)).expect("write");
    fs::write(root.join("app/README"), b"the app\n").expect("write");
}

/// The same context copied to `to`, as another machine's checkout would be: other
/// path, other mtimes, other owners (when the tests run as root).
fn copy_context(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success());
    let later = SystemTime::now() + Duration::from_secs(86_400);
    for rel in [
        "deps/lib/a.so",
        "deps/lib/b.so",
        "app/bin/server",
        "app/README",
    ] {
        let path = to.join(rel);
        let f = fs::File::options().append(true).open(&path).expect("open");
        f.set_modified(later).expect("set mtime");
        let _ = std::os::unix::fs::chown(&path, Some(12345), Some(12345));
    }
}

/// A build's result as `--json` gives it, and its stderr.
struct Built {
    digest: String,
    /// Per recipe layer, `source`.
    sources: Vec<String>,
    /// Per layer, the blob digest.
    layers: Vec<String>,
    json: Value,
    log: String,
}

fn build(context: &Path, out: &Path, args: &[&str]) -> Built {
    let o = build_output(context, out, args);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).expect("--json output");
    let layers = json["manifests"][0]["layers"]
        .as_array()
        .expect("layers")
        .clone();
    Built {
        digest: json["digest"].as_str().expect("digest").to_string(),
        sources: layers
            .iter()
            .map(|l| l["source"].as_str().expect("source").to_string())
            .collect(),
        layers: layers
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_string())
            .collect(),
        json,
        log: stderr(&o),
    }
}

fn build_output(context: &Path, out: &Path, args: &[&str]) -> Output {
    imgbuild()
        .arg("build")
        .arg(context.join("recipe.toml"))
        .arg("--out")
        .arg(out)
        .arg("--json")
        .args(args)
        .output()
        .expect("run imgbuild")
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn all(sources: &[String], what: &str) -> bool {
    sources.iter().all(|s| s == what)
}

/// The registry's file of blob `digest` (distribution's filesystem driver).
fn stored_blob(reg: &Registry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg.storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
fn a_second_machine_takes_every_layer_from_the_registry_cache_and_gets_the_same_digest() {
    let reg = Registry::start(Mode::Plain);
    let cache = reg.reference("team/cache");
    let (a, b) = (tmp(), tmp());
    make_context(a.path());
    let first = build(a.path(), &a.path().join("out"), &["--cache-to", &cache]);
    assert!(all(&first.sources, "built"), "{:?}", first.sources);
    assert!(
        first
            .log
            .contains(&format!("cache {cache}: 2 layers stored")),
        "{}",
        first.log
    );

    // Machine B: the sources elsewhere, other mtimes and owners, an empty --out.
    let b_context = b.path().join("checkout");
    copy_context(a.path(), &b_context);
    let out_b = b.path().join("out");
    let second = build(&b_context, &out_b, &["--cache-from", &cache]);
    assert_eq!(second.digest, first.digest);
    assert!(
        all(&second.sources, "registry-cache"),
        "{:?}",
        second.sources
    );
    assert!(
        second
            .log
            .lines()
            .filter(|l| l.starts_with("layer "))
            .all(|l| l.ends_with(&format!("registry cache {cache})"))),
        "{}",
        second.log
    );
    // The image in B's --out is complete: skopeo reads it.
    require_tool("skopeo");
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}", out_b.display()))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "{}", stderr(&o));

    // One file of one layer changed: that layer only is built.
    fs::write(b_context.join("app/README"), b"the app, changed\n").expect("write");
    let third = build(
        &b_context,
        &b.path().join("out3"),
        &["--cache-from", &cache],
    );
    assert_ne!(third.digest, first.digest);
    assert_eq!(third.sources, ["registry-cache", "built"]);
    assert_eq!(third.layers[0], first.layers[0]);
}

#[test]
fn cache_entries_are_ordinary_tagged_oci_artifacts_that_skopeo_lists() {
    require_tool("skopeo");
    let reg = Registry::start(Mode::Plain);
    let cache = reg.reference("cache");
    let a = tmp();
    make_context(a.path());
    build(a.path(), &a.path().join("out"), &["--cache-to", &cache]);
    let o = std::process::Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{cache}"))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "{}", stderr(&o));
    let tags: Value = serde_json::from_slice(&o.stdout).expect("json");
    let tags = tags["Tags"].as_array().expect("tags");
    assert_eq!(tags.len(), 2, "{tags:?}");
    let tag = tags[0].as_str().expect("tag");
    assert!(tag.starts_with("imgbuild-cache-"), "{tag}");
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{cache}:{tag}"))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "{}", stderr(&o));
    let entry: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        entry["artifactType"],
        "application/vnd.imgbuild.layer-cache.v1"
    );
    assert_eq!(
        entry["annotations"]["org.imgbuild.cache.key"],
        tag.trim_start_matches("imgbuild-cache-")
    );
}

#[test]
fn an_oci_layout_serves_as_a_shared_cache() {
    let (a, b) = (tmp(), tmp());
    make_context(a.path());
    let cache = format!("oci:{}", a.path().join("cache").display());
    let first = build(a.path(), &a.path().join("out"), &["--cache-to", &cache]);
    copy_context(a.path(), &b.path().join("c"));
    let second = build(
        &b.path().join("c"),
        &b.path().join("out"),
        &["--cache-from", &cache],
    );
    assert_eq!(second.digest, first.digest);
    assert!(
        all(&second.sources, "registry-cache"),
        "{:?}",
        second.sources
    );
}

#[test]
fn a_cache_blob_with_wrong_bytes_is_a_miss_with_a_warning_never_a_wrong_layer() {
    let reg = Registry::start(Mode::Plain);
    let cache = reg.reference("cache");
    let a = tmp();
    make_context(a.path());
    let first = build(a.path(), &a.path().join("out"), &["--cache-to", &cache]);
    // The "app" layer's blob in the registry's storage: other bytes, same length.
    let path = stored_blob(&reg, &first.layers[1]);
    let mut bytes = fs::read(&path).expect("stored blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, bytes).expect("corrupt the blob");
    let second = build(a.path(), &a.path().join("out2"), &["--cache-from", &cache]);
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.sources, ["registry-cache", "built"]);
    assert!(
        second.log.contains("warning: cache ") && second.log.contains("\"app\""),
        "{}",
        second.log
    );
}

#[test]
fn a_truncated_cache_entry_is_a_miss_with_a_warning() {
    let reg = Registry::start(Mode::Plain);
    let a = tmp();
    make_context(a.path());
    let first = build(
        a.path(),
        &a.path().join("out"),
        &["--cache-to", &reg.reference("cache")],
    );
    // Every entry read through the proxy arrives cut in half.
    let entry = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"applic"#;
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![Fault::new(Action::Respond(
            vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            entry.into(),
        ))
        .method("GET")
        .path("/manifests/imgbuild-cache-")
        .times(100)],
    );
    let cache = format!("{}/cache", proxy.host());
    let second = build(a.path(), &a.path().join("out2"), &["--cache-from", &cache]);
    assert_eq!(second.digest, first.digest);
    assert!(all(&second.sources, "built"), "{:?}", second.sources);
    assert_eq!(
        second.log.matches("is not usable").count(),
        2,
        "{}",
        second.log
    );
}

#[test]
fn an_unreachable_cache_is_a_warning_and_a_normal_build() {
    let a = tmp();
    make_context(a.path());
    let plain = build(a.path(), &a.path().join("plain"), &[]);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let cache = format!("127.0.0.1:{port}/cache");
    let o = build_output(
        a.path(),
        &a.path().join("out"),
        &["--cache-from", &cache, "--cache-to", &cache],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(json["digest"].as_str(), Some(plain.digest.as_str()));
    let log = stderr(&o);
    assert!(
        log.contains(&format!("warning: --cache-from {cache}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("warning: --cache-to {cache}")),
        "{log}"
    );
}

#[test]
fn a_cache_the_credentials_cannot_read_is_a_warning_and_a_normal_build() {
    let reg = Registry::start(Mode::htpasswd("cache-user", "cache-Pa55"));
    let a = tmp();
    make_context(a.path());
    let plain = build(a.path(), &a.path().join("plain"), &[]);
    let cache = reg.reference("cache");
    let o = build_output(
        a.path(),
        &a.path().join("out"),
        &["--cache-from", &cache, "--cache-to", &cache],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(json["digest"].as_str(), Some(plain.digest.as_str()));
    let log = stderr(&o);
    assert!(
        log.contains(&format!("warning: --cache-from {cache}")),
        "{log}"
    );
    assert!(log.contains("without this cache"), "{log}");
}

#[test]
fn two_concurrent_writers_lose_no_entry_and_corrupt_nothing() {
    let reg = Registry::start(Mode::Plain);
    let cache = reg.reference("cache");
    let (a, b) = (tmp(), tmp());
    make_context(a.path());
    make_context(b.path());
    // B shares the "deps" layer with A, and has an "app" layer of its own.
    fs::write(b.path().join("app/README"), b"the other app\n").expect("write");
    let spawn = |dir: &Path| {
        imgbuild()
            .arg("build")
            .arg(dir.join("recipe.toml"))
            .arg("--out")
            .arg(dir.join("out"))
            .arg("--json")
            .args(["--cache-to", &cache])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn imgbuild")
    };
    let (ja, jb) = (spawn(a.path()), spawn(b.path()));
    let (oa, ob) = (
        ja.wait_with_output().expect("wait"),
        jb.wait_with_output().expect("wait"),
    );
    assert!(oa.status.success(), "{}", stderr(&oa));
    assert!(ob.status.success(), "{}", stderr(&ob));
    for (dir, o) in [(a.path(), &oa), (b.path(), &ob)] {
        let written: Value = serde_json::from_slice(&o.stdout).expect("json");
        let again = build(dir, &dir.join("again"), &["--cache-from", &cache]);
        assert_eq!(again.json["digest"], written["digest"]);
        assert!(all(&again.sources, "registry-cache"), "{:?}", again.sources);
    }
}

/// Machine A builds with `--cache-to cache`; machine B gets a copy of the context
/// (at `b/c`). Returns (A's dir, B's dir, A's build).
fn machine_a_fills(cache: &str) -> (tempfile::TempDir, tempfile::TempDir, Built) {
    let (a, b) = (tmp(), tmp());
    make_context(a.path());
    let first = build(a.path(), &a.path().join("out"), &["--cache-to", cache]);
    copy_context(a.path(), &b.path().join("c"));
    (a, b, first)
}

/// Machine B's `build --no-out --json` of its copy, run in its directory.
fn no_out_build(b: &Path, args: &[&str]) -> Output {
    imgbuild()
        .current_dir(b)
        .arg("build")
        .arg(b.join("c/recipe.toml"))
        .args(["--no-out", "--json"])
        .args(args)
        .output()
        .expect("run imgbuild")
}

#[test]
fn a_push_to_the_caches_registry_mounts_the_cached_layers() {
    let reg = Registry::start(Mode::Plain);
    let cache = reg.reference("cache");
    let (a, b) = (tmp(), tmp());
    make_context(a.path());
    build(a.path(), &a.path().join("out"), &["--cache-to", &cache]);
    copy_context(a.path(), &b.path().join("c"));
    let push = format!("--push={}", reg.reference("app:1"));
    let pushed = build(
        &b.path().join("c"),
        &b.path().join("out"),
        &["--cache-from", &cache, &push],
    );
    assert!(
        all(&pushed.sources, "registry-cache"),
        "{:?}",
        pushed.sources
    );
    let report = &pushed.json["pushed"];
    // Both layers mounted from the cache's repository; only the config uploaded.
    assert_eq!(report["mounted"], 2, "{report}");
    assert_eq!(report["uploaded"], 1, "{report}");
}

/// `build --no-out --push` to the cache's registry: the cached layers are mounted
/// into the target repository and never downloaded (no GET of their blobs reaches
/// the registry), nothing is left on disk, and the pushed image is the one machine
/// A built.
#[test]
fn a_push_with_no_out_mounts_the_cached_layers_without_downloading_them() {
    require_tool("skopeo");
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(reg.addr(), Vec::new());
    let cache = format!("{}/cache", proxy.host());
    let (_a, b, first) = machine_a_fills(&cache);
    let scratch = b.path().join("tmp");
    fs::create_dir(&scratch).expect("mkdir");
    let before = proxy.requests().len();
    let push = format!("--push={}/app:1", proxy.host());
    let o = imgbuild()
        .current_dir(b.path())
        .env("TMPDIR", &scratch)
        .arg("build")
        .arg(b.path().join("c/recipe.toml"))
        .args(["--no-out", "--json", "--cache-from", &cache, &push])
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).expect("--json output");
    assert_eq!(json["digest"], first.json["digest"], "{json}");
    assert_eq!(json["layout"], Value::Null, "{json}");
    let report = &json["pushed"];
    assert_eq!(report["mounted"], 2, "{report}");
    assert_eq!(report["uploaded"], 1, "{report}");
    let requests = proxy.requests()[before..].to_vec();
    for layer in &first.layers {
        assert!(
            !requests
                .iter()
                .any(|r| r.0 == "GET" && r.1.ends_with(&format!("/blobs/{layer}"))),
            "layer {layer} was downloaded: {requests:?}"
        );
    }
    assert!(!b.path().join("out").exists(), "--no-out wrote ./out");
    let left: Vec<_> = fs::read_dir(&scratch).expect("read TMPDIR").collect();
    assert!(left.is_empty(), "the temporary layout is left: {left:?}");
    let log = stderr(&o);
    assert!(log.contains("built sha256:"), "{log}");
    assert!(!log.contains("wrote sha256:"), "{log}");
    // The image in the registry is whole: skopeo copies it, every blob checked.
    let copy = b.path().join("copy");
    let copied = std::process::Command::new("skopeo")
        .arg("copy")
        .args(reg.skopeo_flags("src-"))
        .arg(format!("docker://{}", reg.reference("app:1")))
        .arg(format!("oci:{}:1", copy.display()))
        .output()
        .expect("run skopeo");
    assert!(copied.status.success(), "skopeo copy: {}", stderr(&copied));
}

/// With --no-out, a cache the push registry cannot mount from (an OCI layout here)
/// still serves the layers: they are read into the temporary layout and uploaded.
#[test]
fn a_push_with_no_out_uploads_layers_from_a_cache_it_cannot_mount_from() {
    let reg = Registry::start(Mode::Plain);
    let dir = tmp();
    let cache = format!("oci:{}", dir.path().join("cache").display());
    let (_a, b, first) = machine_a_fills(&cache);
    let push = format!("--push={}", reg.reference("app:1"));
    let o = no_out_build(b.path(), &["--cache-from", &cache, &push]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).expect("--json output");
    assert_eq!(json["digest"], first.json["digest"], "{json}");
    assert_eq!(json["pushed"]["uploaded"], 3, "{json}");
    assert!(!b.path().join("out").exists());
}

/// With --no-out and a --cache-to the push registry cannot mount into (an OCI
/// layout), the cached layers are downloaded after all, so that the cache gets them.
#[test]
fn a_push_with_no_out_still_fills_a_cache_to_that_needs_the_bytes() {
    let reg = Registry::start(Mode::Plain);
    let cache = reg.reference("cache");
    let (_a, b, _) = machine_a_fills(&cache);
    let to = b.path().join("layout-cache");
    let cache_to = format!("oci:{}", to.display());
    let push = format!("--push={}", reg.reference("app:1"));
    let o = no_out_build(
        b.path(),
        &["--cache-from", &cache, "--cache-to", &cache_to, &push],
    );
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(!log.contains("cannot store"), "{log}");
    assert!(log.contains("2 layers stored"), "{log}");
    let index = fs::read_to_string(to.join("index.json")).expect("the layout cache");
    assert_eq!(
        index.matches("org.opencontainers.image.ref.name").count(),
        2,
        "{index}"
    );
}

#[test]
fn no_out_without_push_or_with_out_is_exit_2() {
    let a = tmp();
    make_context(a.path());
    for args in [
        vec!["--no-out"],
        vec!["--no-out", "--push=127.0.0.1:1/app", "--out", "elsewhere"],
    ] {
        let o = imgbuild()
            .current_dir(a.path())
            .arg("build")
            .args(&args)
            .output()
            .expect("run imgbuild");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--no-out"), "{}", stderr(&o));
        assert!(!a.path().join("out").exists() && !a.path().join("elsewhere").exists());
    }
}

#[test]
fn a_malformed_cache_reference_is_exit_2_before_the_build() {
    let a = tmp();
    make_context(a.path());
    for (flag, value) in [
        ("--cache-to", "127.0.0.1:5000/cache:v1"),
        ("--cache-from", "oci-archive:/tmp/cache.tar"),
    ] {
        let out = a.path().join("out");
        let o = build_output(a.path(), &out, &[flag, value]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
        assert!(!out.join("index.json").exists());
    }
}

#[test]
fn the_variables_name_the_caches_and_the_first_cache_with_the_key_wins() {
    let (a, b) = (tmp(), tmp());
    make_context(a.path());
    let filled = format!("oci:{}", a.path().join("filled").display());
    let empty = format!("oci:{}", a.path().join("empty").display());
    // An empty layout to read from first: it has no entry, so the second one serves.
    build(a.path(), &a.path().join("o0"), &["--cache-to", &empty]);
    fs::write(a.path().join("app/README"), b"another app\n").expect("write");
    let o = imgbuild()
        .env("IMGBUILD_CACHE_TO", &filled)
        .arg("build")
        .arg(a.path().join("recipe.toml"))
        .arg("--out")
        .arg(a.path().join("o1"))
        .arg("--json")
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "{}", stderr(&o));
    copy_context(a.path(), &b.path().join("c"));
    let o = imgbuild()
        .env("IMGBUILD_CACHE_FROM", format!("{empty},{filled}"))
        .arg("build")
        .arg(b.path().join("c/recipe.toml"))
        .arg("--out")
        .arg(b.path().join("out"))
        .arg("--json")
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).expect("json");
    let log = stderr(&o);
    // "deps" is in both caches (the first wins); "app" only in the second.
    for line in log.lines().filter(|l| l.starts_with("layer ")) {
        let expected = if line.starts_with("layer deps") {
            &empty
        } else {
            &filled
        };
        assert!(
            line.ends_with(&format!("registry cache {expected})")),
            "{log}"
        );
    }
    let sources: Vec<&str> = json["manifests"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["source"].as_str().expect("source"))
        .collect();
    assert_eq!(sources, ["registry-cache", "registry-cache"]);
}

#[test]
fn a_rebuild_into_the_same_out_reports_the_local_cache_and_no_cache_reads_no_cache() {
    let a = tmp();
    make_context(a.path());
    let cache = format!("oci:{}", a.path().join("cache").display());
    let out = a.path().join("out");
    let first = build(a.path(), &out, &["--cache-to", &cache]);
    let again = build(a.path(), &out, &["--cache-from", &cache]);
    assert_eq!(again.digest, first.digest);
    assert!(all(&again.sources, "local-cache"), "{:?}", again.sources);
    let fresh = build(
        a.path(),
        &a.path().join("out2"),
        &["--cache-from", &cache, "--no-cache"],
    );
    assert_eq!(fresh.digest, first.digest);
    assert!(all(&fresh.sources, "built"), "{:?}", fresh.sources);
}

#[test]
fn a_layout_cache_inside_a_copied_tree_never_feeds_the_image() {
    let a = tmp();
    make_context(a.path());
    let cache = format!("oci:{}", a.path().join("app/cache").display());
    let first = build(a.path(), &a.path().join("out"), &["--cache-to", &cache]);
    let second = build(a.path(), &a.path().join("out2"), &["--cache-from", &cache]);
    assert_eq!(second.digest, first.digest, "{}", second.log);
    assert!(
        all(&second.sources, "registry-cache"),
        "{:?}",
        second.sources
    );
}
