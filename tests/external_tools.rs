//! imgbuild's output, checked by tools we did not write: oci-image-tool (the OCI
//! reference validator), umoci (unpacks a layout into a runtime bundle), skopeo
//! (containers/image), Debian's static busybox run under chroot, and Docker where a
//! daemon answers.
//!
//! The tools come from Debian: `apt-get install -y skopeo umoci oci-image-tool
//! busybox-static docker-registry`. A missing tool fails the test (the README's test
//! command installs them); only the three Docker tests (a layout loaded with `docker
//! load`, an image pushed to a loopback registry and `docker pull`ed, the README's
//! example run) skip, and only when no daemon answers, saying so on stderr and in the
//! file named by `IMGBUILD_SKIPPED_LOG`.

mod common;

use common::{require_tool, skip, Ctx, Layout};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The source date epoch of every recipe here: 2023-11-14T22:13:20Z.
const EPOCH: i64 = 1_700_000_000;
const TAG: &str = "v1";

// ---------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd`, failing the test if it cannot be started.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(cmd)))
}

/// Runs `cmd` and returns its stdout, failing the test with its output unless it
/// exits 0.
fn run_ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "`{}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        describe(cmd),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 stdout")
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective uid of this process.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn require_root(test: &str, why: &str) {
    assert!(
        is_root(),
        "{test} needs root ({why}); run the tests as root, as CI does"
    );
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// The descriptor in the layout's index.json whose ref name is `tag`.
fn tagged(layout: &Path, tag: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let found = index["manifests"]
        .as_array()
        .expect("index.json has manifests")
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned();
    found.unwrap_or_else(|| panic!("index.json has no descriptor tagged {tag:?}: {index}"))
}

/// `umoci unpack --image LAYOUT:TAG BUNDLE`; returns BUNDLE/rootfs.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    require_tool("umoci");
    run_ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    );
    bundle.join("rootfs")
}

// ---------------------------------------------------------------------------------
// The recipe using every item kind
// ---------------------------------------------------------------------------------

const LONG_D: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
const LONG_E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
const LONG_F: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff.txt";

/// Image path of the deep file: more than 255 bytes, so neither ustar's name nor its
/// prefix field can hold it.
fn long_path() -> String {
    format!("app/tree/long/{LONG_D}/{LONG_E}/{LONG_F}")
}

const FULL_RECIPE: &str = r#"
[image]
tags = ["v1"]
platforms = ["linux/amd64"]
source-date-epoch = 1700000000
compression = "gzip"

[config]
entrypoint = ["/app/bin/tool"]
cmd = ["--serve", "8080"]
env = { PATH = "/app/bin:/usr/bin:/bin", LANG = "C.UTF-8" }
workdir = "/app"
user = "svc"

[[user]]
name = "svc"
uid = 65532
gid = 65532
home = "/home/svc"

[[layer]]
name = "base"

  [[layer.file]]
  path = "/etc/motd"
  content = "welcome, this file is removed by a later layer\n"

  [[layer.file]]
  path = "/etc/keep.conf"
  content = "keep = true\n"

  [[layer.archive]]
  src = "vendor/rootfs.tar.gz"
  dst = "/opt/vendor"

[[layer]]
name = "app"

  [[layer.copy]]
  src = "bin/tool"
  dst = "/app/bin/tool"

  [[layer.copy]]
  src = "bin/helper"
  dst = "/app/bin/helper"
  mode = 0o4755

  [[layer.copy]]
  src = "tree/"
  dst = "/app/tree/"
  exclude = ["**/*.map", "skip/"]

  [[layer.dir]]
  path = "/data"
  mode = 0o750
  uid = 65532
  gid = 65532

  [[layer.dir]]
  path = "/tmp"
  mode = 0o1777

  [[layer.dir]]
  path = "/var/empty"

  [[layer.symlink]]
  path = "/usr/bin/tool"
  target = "/app/bin/tool"

  [[layer.symlink]]
  path = "/app/current"
  target = "tree"

  [[layer.file]]
  path = "/etc/app.conf"
  content = "port = 8080\n"
  mode = 0o600
  uid = 65532
  gid = 65532

[[layer]]
name = "cleanup"
remove = ["/etc/motd", "/opt/vendor/share"]
"#;

/// A `.tar.gz` written with the `tar` and `flate2` crates, with its own modes, owners
/// and mtimes (the mtimes must not survive), and no entries for `share/` and
/// `share/doc/` (imgbuild must emit them).
fn vendor_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let header = |kind: tar::EntryType, mode: u32, id: u64, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(id);
        h.set_gid(id);
        h.set_mtime(12_345);
        h.set_size(size);
        h
    };
    let mut h = header(tar::EntryType::Directory, 0o755, 0, 0);
    b.append_data(&mut h, "lib/", std::io::empty())
        .expect("tar dir");
    let lib = b"\x7fELF not really a library\n";
    let mut h = header(tar::EntryType::Regular, 0o755, 1000, lib.len() as u64);
    b.append_data(&mut h, "lib/libv.so", &lib[..])
        .expect("tar file");
    let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0);
    b.append_link(&mut h, "lib/libv.so.1", "libv.so")
        .expect("tar symlink");
    let readme = b"vendor readme\n";
    let mut h = header(tar::EntryType::Regular, 0o644, 0, readme.len() as u64);
    b.append_data(&mut h, "share/doc/README", &readme[..])
        .expect("tar file");
    b.into_inner().expect("tar").finish().expect("gzip")
}

/// A context for [`FULL_RECIPE`]: every item kind, plus the awkward cases (setuid,
/// sticky, hardlinks, long and non-ASCII names, empty directories, source modes and
/// owners that must not leak, excluded files).
fn full_context() -> Ctx {
    let ctx = Ctx::new();
    ctx.recipe_text(FULL_RECIPE);
    ctx.write("vendor/rootfs.tar.gz", vendor_archive());
    // Any x bit makes a copied file 0o755, whatever the rest of the source mode.
    ctx.write_mode("bin/tool", "#!/bin/sh\necho tool\n", 0o700);
    ctx.write_mode("bin/helper", "#!/bin/sh\necho helper\n", 0o755);

    ctx.write("tree/a.txt", "alpha\n");
    ctx.hardlink("tree/a.txt", "tree/a-link.txt");
    ctx.write_mode("tree/run.sh", "#!/bin/sh\n", 0o750);
    ctx.write("tree/café/naïve résumé.txt", "bonjour\n");
    ctx.write("tree/css/site.css", "body {}\n");
    ctx.write("tree/css/site.css.map", "excluded\n");
    ctx.write("tree/debug.map", "excluded\n");
    ctx.write("tree/skip/x.txt", "excluded\n");
    ctx.mkdir("tree/emptydir");
    ctx.write(&format!("tree/long/{LONG_D}/{LONG_E}/{LONG_F}"), "deep\n");
    ctx.symlink("a.txt", "tree/rel-link");
    ctx.symlink(
        &format!("long/{LONG_D}/{LONG_E}/{LONG_F}"),
        "tree/long-link",
    );
    // Source directory modes and owners do not reach the image.
    fs::set_permissions(
        ctx.path().join("tree/café"),
        fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    if is_root() {
        std::os::unix::fs::chown(ctx.path().join("tree/css/site.css"), Some(4321), Some(4321))
            .expect("chown");
    }
    ctx
}

// ---------------------------------------------------------------------------------
// 1. oci-image-tool
// ---------------------------------------------------------------------------------

fn oci_validate(args: &[&str], target: &Path) {
    require_tool("oci-image-tool");
    let out = run_ok(
        Command::new("oci-image-tool")
            .arg("validate")
            .args(args)
            .arg(target),
    );
    assert!(
        out.contains("succeeded") || out.contains("OK"),
        "oci-image-tool validate {args:?} {} exited 0 without reporting success:\n{out}",
        target.display()
    );
}

#[test]
fn oci_image_tool_validates_the_layout_manifest_and_config() {
    require_tool("oci-image-tool");
    let ctx = full_context();
    let out = tempfile::tempdir().expect("temp dir");
    let layout = out.path().join("layout");
    let digest = ctx.build_ok(&layout, &[]);

    let desc = tagged(&layout, TAG);
    assert_eq!(
        desc["digest"],
        digest.as_str(),
        "the tag names the printed digest"
    );
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    oci_validate(
        &["--type", "image", "--ref", &format!("name={TAG}")],
        &layout,
    );
    oci_validate(&["--type", "manifest"], &blob_path(&layout, &digest));
    let l = Layout::new(&layout);
    let config_digest = l.manifest(&digest)["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    oci_validate(&["--type", "config"], &blob_path(&layout, &config_digest));

    // Two platforms: the tag names an index, which validates as an image too.
    let multi = Ctx::new();
    multi.recipe_text(
        r#"
[image]
tags = ["v1"]
platforms = ["linux/amd64", "linux/arm64"]
source-date-epoch = 1700000000

[config]
entrypoint = ["/app/tool"]

[[layer]]
name = "app"

  [[layer.copy]]
  src = "bin/{arch}/tool"
  dst = "/app/tool"

  [[layer.dir]]
  path = "/tmp"
  mode = 0o1777

  [[layer.symlink]]
  path = "/usr/bin/tool"
  target = "/app/tool"

  [[layer.file]]
  path = "/etc/tool.conf"
  content = "x = 1\n"
"#,
    );
    multi.write_mode("bin/amd64/tool", "amd64 tool\n", 0o755);
    multi.write_mode("bin/arm64/tool", "arm64 tool\n", 0o755);
    let mlayout = out.path().join("multi");
    let index_digest = multi.build_ok(&mlayout, &[]);
    let desc = tagged(&mlayout, TAG);
    assert_eq!(desc["digest"], index_digest.as_str());
    assert_eq!(
        desc["mediaType"], "application/vnd.oci.image.index.v1+json",
        "with two platforms the tag must name an index"
    );
    oci_validate(
        &["--type", "image", "--ref", &format!("name={TAG}")],
        &mlayout,
    );
    oci_validate(
        &["--type", "imageIndex"],
        &blob_path(&mlayout, &index_digest),
    );
    let ml = Layout::new(&mlayout);
    let index = ml.json(&index_digest);
    let manifests = index["manifests"].as_array().expect("index manifests");
    assert_eq!(manifests.len(), 2, "one manifest per platform: {index}");
    for m in manifests {
        let d = m["digest"].as_str().expect("manifest digest");
        oci_validate(&["--type", "manifest"], &blob_path(&mlayout, d));
        let c = ml.manifest(d)["config"]["digest"]
            .as_str()
            .expect("config")
            .to_string();
        oci_validate(&["--type", "config"], &blob_path(&mlayout, &c));
    }
}

// ---------------------------------------------------------------------------------
// 2. umoci unpack
// ---------------------------------------------------------------------------------

#[derive(Clone, PartialEq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    /// A regular file whose content the test checks separately.
    AnyFile,
    Link(String),
}

#[derive(Clone, PartialEq)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Dir => write!(f, "dir")?,
            Kind::File(c) => write!(f, "file {:?}", String::from_utf8_lossy(c))?,
            Kind::AnyFile => write!(f, "file")?,
            Kind::Link(t) => write!(f, "symlink -> {t:?}")?,
        }
        write!(f, " mode {:o} owner {}:{}", self.mode, self.uid, self.gid)
    }
}

fn dir(mode: u32, id: u32) -> Node {
    Node {
        kind: Kind::Dir,
        mode,
        uid: id,
        gid: id,
    }
}
fn file(content: &str, mode: u32, id: u32) -> Node {
    Node {
        kind: Kind::File(content.as_bytes().to_vec()),
        mode,
        uid: id,
        gid: id,
    }
}
fn any_file(mode: u32, id: u32) -> Node {
    Node {
        kind: Kind::AnyFile,
        mode,
        uid: id,
        gid: id,
    }
}
fn link(target: &str) -> Node {
    Node {
        kind: Kind::Link(target.to_string()),
        mode: 0o777,
        uid: 0,
        gid: 0,
    }
}

/// Every entry under `root` (relative paths, root itself excluded), read with
/// `symlink_metadata`: kind, the 12 permission bits, owner; plus mtime and inode.
fn walk(root: &Path) -> BTreeMap<String, (Node, fs::Metadata)> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Node, fs::Metadata)>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            let md = fs::symlink_metadata(&p).expect("symlink_metadata");
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_str()
                .expect("utf-8 path");
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                Kind::Link(t.to_str().expect("utf-8 target").to_string())
            } else if ft.is_file() {
                Kind::File(fs::read(&p).expect("read file"))
            } else {
                panic!("{rel}: unexpected file type {ft:?}");
            };
            let node = Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
            };
            out.insert(rel.to_string(), (node, md));
            if ft.is_dir() {
                go(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

#[test]
fn umoci_unpack_gives_the_tree_modes_owners_and_links_the_recipe_says() {
    require_tool("umoci");
    require_root(
        "umoci_unpack_gives_the_tree_modes_owners_and_links_the_recipe_says",
        "umoci unpack sets real owners, and the source tree is chowned to check owners do not leak",
    );
    let ctx = full_context();
    let out = tempfile::tempdir().expect("temp dir");
    let layout = out.path().join("layout");
    ctx.build_ok(&layout, &[]);
    let rootfs = umoci_unpack(&layout, TAG, &out.path().join("bundle"));
    let got = walk(&rootfs);

    let mut want: BTreeMap<String, Node> = BTreeMap::new();
    let mut put = |p: &str, n: Node| {
        want.insert(p.to_string(), n);
    };
    // [[user]]
    put("etc", dir(0o755, 0));
    put("etc/passwd", any_file(0o644, 0)); // content checked below
    put("etc/group", any_file(0o644, 0));
    // layer "base"; /etc/motd and /opt/vendor/share are removed by "cleanup"
    put("etc/keep.conf", file("keep = true\n", 0o644, 0));
    put("opt", dir(0o755, 0));
    put("opt/vendor", dir(0o755, 0));
    put("opt/vendor/lib", dir(0o755, 0));
    put(
        "opt/vendor/lib/libv.so",
        file("\x7fELF not really a library\n", 0o755, 1000),
    );
    put("opt/vendor/lib/libv.so.1", link("libv.so"));
    // layer "app"
    put("app", dir(0o755, 0));
    put("app/bin", dir(0o755, 0));
    put("app/bin/tool", file("#!/bin/sh\necho tool\n", 0o755, 0));
    put(
        "app/bin/helper",
        file("#!/bin/sh\necho helper\n", 0o4755, 0),
    );
    put("app/current", link("tree"));
    put("app/tree", dir(0o755, 0));
    put("app/tree/a.txt", file("alpha\n", 0o644, 0));
    put("app/tree/a-link.txt", file("alpha\n", 0o644, 0));
    put("app/tree/run.sh", file("#!/bin/sh\n", 0o755, 0));
    put("app/tree/café", dir(0o755, 0));
    put(
        "app/tree/café/naïve résumé.txt",
        file("bonjour\n", 0o644, 0),
    );
    put("app/tree/css", dir(0o755, 0));
    put("app/tree/css/site.css", file("body {}\n", 0o644, 0));
    put("app/tree/emptydir", dir(0o755, 0));
    put("app/tree/long", dir(0o755, 0));
    put(&format!("app/tree/long/{LONG_D}"), dir(0o755, 0));
    put(&format!("app/tree/long/{LONG_D}/{LONG_E}"), dir(0o755, 0));
    put(&long_path(), file("deep\n", 0o644, 0));
    put("app/tree/rel-link", link("a.txt"));
    put(
        "app/tree/long-link",
        link(&format!("long/{LONG_D}/{LONG_E}/{LONG_F}")),
    );
    put("data", dir(0o750, 65532));
    put("tmp", dir(0o1777, 0));
    put("var", dir(0o755, 0));
    put("var/empty", dir(0o755, 0));
    put("usr", dir(0o755, 0));
    put("usr/bin", dir(0o755, 0));
    put("usr/bin/tool", link("/app/bin/tool"));
    put("etc/app.conf", file("port = 8080\n", 0o600, 65532));
    assert!(long_path().len() > 255, "the long path must not fit ustar");

    let mut wrong = Vec::new();
    for (path, want_node) in &want {
        match got.get(path) {
            None => wrong.push(format!("missing    {path}: want {want_node:?}")),
            Some((got_node, _)) => {
                let mut g = got_node.clone();
                if want_node.kind == Kind::AnyFile && matches!(g.kind, Kind::File(_)) {
                    g.kind = Kind::AnyFile;
                }
                if &g != want_node {
                    wrong.push(format!("wrong      {path}: got {g:?}, want {want_node:?}"));
                }
            }
        }
    }
    for (path, (got_node, _)) in &got {
        if !want.contains_key(path) {
            wrong.push(format!("unexpected {path}: {got_node:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the tree umoci unpacked differs from the recipe:\n{}",
        wrong.join("\n")
    );

    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("svc:x:65532:65532:") && l.contains(":/home/svc:")),
        "/etc/passwd lacks the [[user]] entry:\n{passwd}"
    );
    let group = fs::read_to_string(rootfs.join("etc/group")).expect("group");
    assert!(
        group.lines().any(|l| l.starts_with("svc:x:65532:")),
        "/etc/group lacks the [[user]] group:\n{group}"
    );

    // Hardlinks in one copied tree stay one inode.
    let (_, a) = &got["app/tree/a.txt"];
    let (_, b) = &got["app/tree/a-link.txt"];
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "a.txt and a-link.txt were hardlinked in the source; they must be one inode"
    );
    assert_eq!(a.nlink(), 2, "a.txt: nlink");
    // Only those two share an inode.
    let mut by_ino: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
    for (p, (n, md)) in &got {
        if matches!(n.kind, Kind::File(_)) {
            by_ino.entry(md.ino()).or_default().push(p);
        }
    }
    let shared: Vec<_> = by_ino.values().filter(|v| v.len() > 1).collect();
    assert_eq!(
        shared,
        vec![&vec![
            &"app/tree/a-link.txt".to_string(),
            &"app/tree/a.txt".to_string()
        ]]
    );

    // Removed by a later layer.
    assert!(
        fs::symlink_metadata(rootfs.join("etc/motd")).is_err(),
        "/etc/motd was removed"
    );
    assert!(
        fs::symlink_metadata(rootfs.join("opt/vendor/share")).is_err(),
        "/opt/vendor/share was removed"
    );

    // Every entry carries the source date epoch (umoci restores mtimes, symlinks too).
    let wrong: Vec<String> = got
        .iter()
        .filter(|(_, (_, md))| md.mtime() != EPOCH || md.mtime_nsec() != 0)
        .map(|(p, (_, md))| format!("{p}: {}.{:09}", md.mtime(), md.mtime_nsec()))
        .collect();
    assert!(
        wrong.is_empty(),
        "entries whose mtime is not the epoch {EPOCH}:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// 3. skopeo
// ---------------------------------------------------------------------------------

fn skopeo() -> Command {
    require_tool("skopeo");
    let mut c = Command::new("skopeo");
    // No trust policy is needed to read local layouts; don't depend on the host's.
    c.arg("--insecure-policy");
    c
}

fn skopeo_json(args: &[&str]) -> serde_json::Value {
    let out = run_ok(skopeo().args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo {args:?}: not JSON ({e}):\n{out}"))
}

#[test]
fn skopeo_inspect_reports_our_digest_and_config() {
    require_tool("skopeo");
    let ctx = full_context();
    let out = tempfile::tempdir().expect("temp dir");
    let layout = out.path().join("layout");
    let digest = ctx.build_ok(&layout, &[]);
    let reference = format!("oci:{}:{TAG}", layout.display());

    let inspect = skopeo_json(&["inspect", &reference]);
    assert_eq!(
        inspect["Digest"],
        digest.as_str(),
        "skopeo inspect Digest: {inspect:#}"
    );
    let l = Layout::new(&layout);
    assert_eq!(
        inspect["Layers"],
        serde_json::json!(l.layer_digests(&digest))
    );
    assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Architecture"], "amd64");

    let config = skopeo_json(&["inspect", "--config", &reference]);
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        serde_json::json!(["LANG=C.UTF-8", "PATH=/app/bin:/usr/bin:/bin"]),
        "{config:#}"
    );
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/app/bin/tool"]),
        "{config:#}"
    );
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["--serve", "8080"]),
        "{config:#}"
    );
    assert_eq!(
        c["User"], "65532:65532",
        "user \"svc\" resolved through [[user]]: {config:#}"
    );
    assert_eq!(c["WorkingDir"], "/app", "{config:#}");

    // A copy to another layout keeps the bytes, hence the digest.
    let other = out.path().join("other");
    let other_ref = format!("oci:{}:{TAG}", other.display());
    run_ok(skopeo().args(["copy", "--preserve-digests", &reference, &other_ref]));
    let copied = skopeo_json(&["inspect", &other_ref]);
    assert_eq!(
        copied["Digest"],
        digest.as_str(),
        "digest after skopeo copy: {copied:#}"
    );
    assert_eq!(
        fs::read(blob_path(&other, &digest)).expect("copied manifest blob"),
        l.blob(&digest),
        "the copied manifest's bytes"
    );
}

// ---------------------------------------------------------------------------------
// 4. busybox under chroot
// ---------------------------------------------------------------------------------

const BUSYBOX: &str = "/bin/busybox";
const GREETING: &str = "hello from an imgbuild image\n";

/// A context whose image holds Debian's static busybox and a greeting.
fn busybox_context() -> Ctx {
    require_tool("busybox");
    let bytes = fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("cannot read {BUSYBOX} ({e}); install it with apt-get install -y busybox-static")
    });
    let ctx = Ctx::new();
    ctx.write_mode("busybox", bytes, 0o755);
    ctx.recipe_text(&format!(
        r#"
[image]
tags = ["v1"]
platforms = ["linux/amd64"]
source-date-epoch = 1700000000

[config]
cmd = ["/bin/sh"]
env = {{ PATH = "/bin" }}

[[layer]]
name = "busybox"

  [[layer.copy]]
  src = "busybox"
  dst = "/bin/busybox"

  [[layer.symlink]]
  path = "/bin/sh"
  target = "busybox"

  [[layer.symlink]]
  path = "/bin/echo"
  target = "busybox"

  [[layer.symlink]]
  path = "/bin/cat"
  target = "busybox"

  [[layer.file]]
  path = "/etc/greeting"
  content = {GREETING:?}
"#
    ));
    ctx
}

#[test]
fn busybox_image_runs_a_command_under_chroot() {
    require_tool("umoci");
    require_tool("chroot");
    require_root(
        "busybox_image_runs_a_command_under_chroot",
        "chroot(2) needs CAP_SYS_CHROOT",
    );
    let ctx = busybox_context();
    let out = tempfile::tempdir().expect("temp dir");
    let layout = out.path().join("layout");
    ctx.build_ok(&layout, &[]);
    let rootfs = umoci_unpack(&layout, TAG, &out.path().join("bundle"));

    let o = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/sh", "-c", "cat /etc/greeting; echo ok"])
        .env_clear()
        // Finds chroot on the host; inside the image only /bin exists.
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("Operation not permitted"),
        "chroot failed with EPERM: this test needs root (CAP_SYS_CHROOT):\n{err}"
    );
    assert!(
        o.status.success(),
        "chroot {} /bin/sh -c … failed ({}):\n{err}",
        rootfs.display(),
        o.status
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{GREETING}ok\n")
    );
}

// ---------------------------------------------------------------------------------
// 5. Docker, where a daemon answers
// ---------------------------------------------------------------------------------

/// Removes a Docker image when dropped, so a failed assertion leaves nothing behind.
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "--force", &self.0])
            .output();
    }
}

/// Whether a Docker daemon answers `docker info`.
fn docker_daemon_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `docker run`s the busybox image (no network) and checks what its shell prints.
fn assert_docker_runs_the_greeting(image: &str) {
    let got = run_ok(Command::new("docker").args([
        "run",
        "--rm",
        "--network=none",
        image,
        "/bin/sh",
        "-c",
        "cat /etc/greeting; echo ok",
    ]));
    assert_eq!(got, format!("{GREETING}ok\n"));
}

#[test]
fn docker_runs_the_image_where_a_daemon_answers() {
    const NAME: &str = "docker_runs_the_image_where_a_daemon_answers";
    if !docker_daemon_answers() {
        skip(NAME, "no Docker daemon answers (docker info failed)");
        return;
    }
    let ctx = busybox_context();
    let out = tempfile::tempdir().expect("temp dir");
    let layout = out.path().join("layout");
    ctx.build_ok(&layout, &[]);

    // A tag of our own, so that parallel runs on one daemon do not collide.
    let tag = format!("t{}", std::process::id());
    let image = format!("imgbuild-test:{tag}");
    let archive = out.path().join("image.tar");
    run_ok(skopeo().args([
        "copy",
        &format!("oci:{}:{TAG}", layout.display()),
        &format!("docker-archive:{}:{image}", archive.display()),
    ]));
    run_ok(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let _cleanup = DockerImage(image.clone());
    assert_docker_runs_the_greeting(&image);
}

/// The other way an image reaches Docker: `build --push` to a registry on loopback,
/// then `docker pull` (Docker talks plain HTTP to 127.0.0.0/8 without configuration)
/// and `docker run`. Docker must report the digest imgbuild printed.
#[test]
fn docker_pulls_and_runs_a_pushed_image_where_a_daemon_answers() {
    const NAME: &str = "docker_pulls_and_runs_a_pushed_image_where_a_daemon_answers";
    if !docker_daemon_answers() {
        skip(NAME, "no Docker daemon answers (docker info failed)");
        return;
    }
    let reg = common::registry::Registry::start(common::registry::Mode::Plain);
    let ctx = busybox_context();
    let out = tempfile::tempdir().expect("temp dir");
    let layout = out.path().join("layout");
    let tag = format!("p{}", std::process::id());
    let repo = reg.reference("imgbuild-test/busybox");
    let image = format!("{repo}:{tag}");
    let digest = ctx.build_ok(&layout, &[&format!("--push={image}")]);
    assert!(digest.starts_with("sha256:"), "{digest}");

    run_ok(Command::new("docker").args(["pull", &image]));
    let _cleanup = DockerImage(image.clone());
    let repo_digests = run_ok(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]));
    assert!(
        repo_digests.contains(&format!("{repo}@{digest}")),
        "docker pulled {repo_digests}, imgbuild pushed {digest}"
    );
    assert_docker_runs_the_greeting(&image);
}

// ---------------------------------------------------------------------------------
// 6. The README's example: recipes/hello runs
// ---------------------------------------------------------------------------------

/// Builds the bundled example (recipes/hello, as the README's first command does) into
/// a fresh layout; returns the layout, inside `out`.
fn build_bundled_example(out: &Path) -> PathBuf {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/hello/recipe.toml");
    let layout = out.join("layout");
    common::build_digest(&recipe, &layout, &[]);
    layout
}

/// The image's entrypoint and cmd, as its config says.
fn entrypoint_and_cmd(layout: &Path, tag: &str) -> Vec<String> {
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(blob_path(
            layout,
            tagged(layout, tag)["digest"].as_str().expect("digest"),
        ))
        .expect("manifest"),
    )
    .expect("manifest JSON");
    let config: serde_json::Value = serde_json::from_slice(
        &fs::read(blob_path(
            layout,
            manifest["config"]["digest"].as_str().expect("config"),
        ))
        .expect("config"),
    )
    .expect("config JSON");
    ["Entrypoint", "Cmd"]
        .iter()
        .flat_map(|k| config["config"][k].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// Without Docker: unpacked by umoci, the example's program runs chrooted into the
/// image's own root file system (nothing of the host's: a program needing a shell or a
/// libc the image lacks fails here) with the config's entrypoint and cmd.
#[test]
fn the_bundled_example_runs_its_program_from_the_unpacked_image() {
    require_root(
        "the_bundled_example_runs_its_program_from_the_unpacked_image",
        "chroot",
    );
    let out = tempfile::tempdir().expect("temp dir");
    let layout = build_bundled_example(out.path());
    let argv = entrypoint_and_cmd(&layout, "latest");
    assert_eq!(argv, ["/app/bin/hello", "--greeting", "hello"]);
    let rootfs = umoci_unpack(&layout, "latest", &out.path().join("bundle"));
    let got = run_ok(Command::new("chroot").arg(&rootfs).args(&argv));
    assert_eq!(got, "hello from imgbuild\n");
}

/// The README's `docker run` of the example, where a daemon answers.
#[test]
fn the_bundled_example_runs_under_docker_where_a_daemon_answers() {
    const NAME: &str = "the_bundled_example_runs_under_docker_where_a_daemon_answers";
    if !docker_daemon_answers() {
        skip(NAME, "no Docker daemon answers (docker info failed)");
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let layout = build_bundled_example(out.path());
    let image = format!("imgbuild-hello:t{}", std::process::id());
    let archive = out.path().join("image.tar");
    run_ok(skopeo().args([
        "copy",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker-archive:{}:{image}", archive.display()),
    ]));
    run_ok(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let _cleanup = DockerImage(image.clone());
    let got = run_ok(Command::new("docker").args(["run", "--rm", "--network=none", &image]));
    assert_eq!(got, "hello from imgbuild\n");
    let got = run_ok(Command::new("docker").args([
        "run",
        "--rm",
        "--network=none",
        &image,
        "--greeting",
        "hi",
    ]));
    assert_eq!(got, "hi from imgbuild\n");
}

// ---------------------------------------------------------------------------------
// 7. Archives: --out docker-archive:FILE, --out oci-archive:FILE, --load
// ---------------------------------------------------------------------------------

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Builds the bundled example into `--out OUT` (an archive), returning the digest.
fn build_example_to(out: &str) -> String {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/hello/recipe.toml");
    let o = common::imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--out")
        .arg(out)
        .arg("-q")
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_docker_archive_is_read_by_skopeo_is_reproducible_and_runs_where_a_daemon_answers() {
    const NAME: &str =
        "a_docker_archive_is_read_by_skopeo_is_reproducible_and_runs_where_a_daemon_answers";
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hello.tar");
    let digest = build_example_to(&format!("docker-archive:{}", file.display()));
    // Nothing but the archive is left beside it.
    let names: Vec<String> = fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["hello.tar"]);
    // skopeo reads it as Docker would: our config, our layers.
    let config: serde_json::Value = serde_json::from_str(&run_ok(skopeo().args([
        "inspect",
        "--config",
        &format!("docker-archive:{}", file.display()),
    ])))
    .expect("config JSON");
    assert_eq!(config["config"]["Entrypoint"][0], "/app/bin/hello");
    // The same build gives the same archive, byte for byte.
    let again = dir.path().join("again.tar");
    assert_eq!(
        build_example_to(&format!("docker-archive:{}", again.display())),
        digest
    );
    assert_eq!(sha256_file(&file), sha256_file(&again));

    if !docker_daemon_answers() {
        skip(NAME, "no Docker daemon answers (docker info failed)");
        return;
    }
    let out = run_ok(Command::new("docker").arg("load").arg("-i").arg(&file));
    let _cleanup = (
        DockerImage("hello:1.0.0".into()),
        DockerImage("hello:latest".into()),
    );
    assert!(
        out.contains("hello:1.0.0") && out.contains("hello:latest"),
        "{out}"
    );
    let got = run_ok(Command::new("docker").args(["run", "--rm", "--network=none", "hello:1.0.0"]));
    assert_eq!(got, "hello from imgbuild\n");
}

#[test]
fn an_oci_archive_holds_the_built_image_under_its_tags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hello-oci.tar");
    let digest = build_example_to(&format!("oci-archive:{}", file.display()));
    for tag in ["1.0.0", "latest"] {
        let v: serde_json::Value = serde_json::from_str(&run_ok(
            skopeo().args(["inspect", &format!("oci-archive:{}:{tag}", file.display())]),
        ))
        .expect("inspect JSON");
        assert_eq!(v["Digest"], digest.as_str(), "{v}");
    }
}

#[test]
fn a_docker_archive_of_two_platforms_is_refused_and_leaves_nothing_behind() {
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         [[layer]]\nname = \"a\"\n  [[layer.file]]\n  path = \"/a\"\n  content = \"a\\n\"\n",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("multi.tar");
    let o = common::imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(format!("docker-archive:{}", file.display()))
        .output()
        .expect("run imgbuild");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--out docker-archive: takes one platform, and this build has 2"),
        "{err}"
    );
    assert!(
        err.contains("--platform linux/amd64") && err.contains("oci-archive:"),
        "{err}"
    );
    // Refused before the build: no layer was written.
    assert!(
        !err.contains("layer a"),
        "refused only after building: {err}"
    );
    assert_eq!(
        fs::read_dir(dir.path()).expect("read dir").count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn build_load_hands_the_image_to_docker_where_a_daemon_answers() {
    const NAME: &str = "build_load_hands_the_image_to_docker_where_a_daemon_answers";
    if !docker_daemon_answers() {
        skip(NAME, "no Docker daemon answers (docker info failed)");
        return;
    }
    let ctx = busybox_context();
    let repo = format!("imgbuild-load-{}", std::process::id());
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&text.replace("[image]\n", &format!("[image]\nrepository = \"{repo}\"\n")));
    let out = tempfile::tempdir().expect("temp dir");
    let o = common::imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(out.path().join("layout"))
        .arg("--load")
        .output()
        .expect("run imgbuild");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let image = format!("{repo}:{TAG}");
    let _cleanup = DockerImage(image.clone());
    assert!(err.contains("into Docker") && err.contains(&image), "{err}");
    assert_docker_runs_the_greeting(&image);
}

/// What docs/registries.md says of zstd layers and Docker: Docker Engine 23.0 and
/// later pull and run them; older engines fail to register the layer.
#[test]
fn a_zstd_image_is_pulled_by_docker_23_and_later_only() {
    const NAME: &str = "a_zstd_image_is_pulled_by_docker_23_and_later_only";
    if !docker_daemon_answers() {
        skip(NAME, "no Docker daemon answers (docker info failed)");
        return;
    }
    let engine =
        run_ok(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]));
    let major: u32 = engine
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    let reg = common::registry::Registry::start(common::registry::Mode::Plain);
    let ctx = busybox_context();
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&text.replace("[image]\n", "[image]\ncompression = \"zstd\"\n"));
    let out = tempfile::tempdir().expect("temp dir");
    let image = format!(
        "{}:z{}",
        reg.reference("imgbuild-test/zstd"),
        std::process::id()
    );
    ctx.build_ok(&out.path().join("layout"), &[&format!("--push={image}")]);
    let pulled = run(Command::new("docker").args(["pull", &image]));
    let _cleanup = DockerImage(image.clone());
    if major >= 23 {
        assert!(
            pulled.status.success(),
            "Docker {engine}: {}",
            String::from_utf8_lossy(&pulled.stderr)
        );
        assert_docker_runs_the_greeting(&image);
    } else {
        assert!(
            !pulled.status.success(),
            "Docker {engine} pulled a zstd image: docs/registries.md needs updating"
        );
    }
}

/// Archives as sources: `inspect`, `diff` and `push` read imgbuild's archives and a
/// legacy docker archive written by skopeo (manifest.json and layer tars only).
#[test]
fn archives_are_read_by_inspect_diff_and_push() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = build_bundled_example(dir.path());
    let oci_archive = dir.path().join("hello-oci.tar");
    let docker_archive = dir.path().join("hello-docker.tar");
    let digest = build_example_to(&format!("oci-archive:{}", oci_archive.display()));
    assert_eq!(
        build_example_to(&format!("docker-archive:{}", docker_archive.display())),
        digest
    );
    let legacy = dir.path().join("legacy.tar");
    run_ok(skopeo().args([
        "copy",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker-archive:{}:hello:latest", legacy.display()),
    ]));

    let inspect = |reference: &str| -> serde_json::Value {
        let o = common::imgbuild()
            .args(["inspect", reference, "--json"])
            .output()
            .expect("run imgbuild");
        assert!(
            o.status.success(),
            "{reference}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).expect("inspect JSON")
    };
    let oci_ref = format!("oci-archive:{}:1.0.0", oci_archive.display());
    let docker_ref = format!("docker-archive:{}", docker_archive.display());
    assert_eq!(inspect(&oci_ref)["digest"], digest.as_str());
    assert_eq!(inspect(&docker_ref)["digest"], digest.as_str());
    // `repository:tag` names a RepoTags entry, repository included.
    let named = format!("{docker_ref}:hello:latest");
    assert_eq!(inspect(&named)["digest"], digest.as_str());
    let o = common::imgbuild()
        .args(["inspect", &format!("{docker_ref}:other:latest")])
        .output()
        .expect("run imgbuild");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // skopeo's legacy archive: the same config, the same uncompressed layers.
    let legacy_ref = format!("docker-archive:{}:hello:latest", legacy.display());
    let v = inspect(&legacy_ref);
    let ours = inspect(&format!("oci:{}:latest", layout.display()));
    assert_eq!(v["manifests"][0]["config"], ours["manifests"][0]["config"]);

    // diff: the layout and its oci-archive are identical.
    let o = common::imgbuild()
        .args([
            "diff",
            &format!("oci:{}:latest", layout.display()),
            &oci_ref,
        ])
        .output()
        .expect("run imgbuild");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // push from an archive: the registry holds the image under its digest.
    let reg = common::registry::Registry::start(common::registry::Mode::Plain);
    let target = reg.reference("archives/hello:1");
    let o = common::imgbuild()
        .args(["push", &docker_ref, &target])
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    let pushed: serde_json::Value = serde_json::from_str(&run_ok(skopeo().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .expect("skopeo JSON");
    assert_eq!(pushed["Digest"], digest.as_str());
}

/// A hostile archive: an entry climbing out with `..` is refused, and nothing is
/// written outside the unpacking directory.
#[test]
fn an_archive_entry_with_dotdot_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("evil.tar");
    let mut tar = Vec::new();
    {
        let mut header = [0u8; 512];
        let name = b"../../../../tmp/imgbuild-evil-entry";
        header[..name.len()].copy_from_slice(name);
        header[100..107].copy_from_slice(b"0000644");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(b"00000000004");
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        tar.extend_from_slice(&header);
        let mut data = [0u8; 512];
        data[..4].copy_from_slice(b"evil");
        tar.extend_from_slice(&data);
        tar.extend_from_slice(&[0u8; 1024]);
    }
    fs::write(&file, tar).expect("write");
    let _ = fs::remove_file("/tmp/imgbuild-evil-entry");
    let o = common::imgbuild()
        .args(["inspect", &format!("oci-archive:{}", file.display())])
        .output()
        .expect("run imgbuild");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("outside the archive's directory"), "{err}");
    assert!(!Path::new("/tmp/imgbuild-evil-entry").exists());
}

/// An archive written inside the tree the recipe copies: neither the temporary layout
/// beside it nor the archive itself (from the previous build) gets into the image, so
/// two builds give one digest and one archive.
#[test]
fn an_archive_inside_the_copied_context_never_feeds_the_image() {
    let ctx = Ctx::new();
    ctx.write("app/hello.txt", "hello\n");
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"all\"\n  [[layer.copy]]\n  src = \"app/\"\n  dst = \"/app/\"\n",
    );
    let file = ctx.path().join("app/image.tar");
    let build = || {
        let o = common::imgbuild()
            .arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(format!("oci-archive:{}", file.display()))
            .output()
            .expect("run imgbuild");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (first, _) = build();
    let first_archive = sha256_file(&file);
    let (second, err) = build();
    assert_eq!(first, second, "{err}");
    assert_eq!(sha256_file(&file), first_archive);
    assert!(err.contains("it is the output archive"), "{err}");
    let left: Vec<String> = fs::read_dir(ctx.path().join("app"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "only hello.txt and image.tar: {left:?}");
}
