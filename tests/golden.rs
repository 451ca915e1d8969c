//! SPEC §3.5: golden digests. Each case builds a recipe from sources generated here
//! and must produce exactly the pinned manifest (or index) digest. A change to any of
//! them is a change of imgbuild's output format: it bumps FORMAT_VERSION and is called
//! out in CHANGELOG.md. Layer diff_ids are pinned separately: they must never change,
//! even across format versions (only compressed bytes may).
//!
//! To see the digests a change produces: `IMGBUILD_GOLDEN_PRINT=1 cargo test --test
//! golden -- --nocapture` (the test still fails on a mismatch).

mod common;

use common::{make_tar, test_bytes, Ctx, Layout};
use std::io::Write;

struct Case {
    ctx: Ctx,
    args: Vec<&'static str>,
}

fn check(name: &str, case: Case, want_digest: &str, want_last_diff_id: &str) {
    let out = tempfile::tempdir().expect("tmp");
    let root = out.path().join("out");
    let mut args = vec!["--threads", "2"];
    args.extend(case.args.iter().copied());
    let digest = case.ctx.build_ok(&root, &args);
    let layout = Layout::new(&root);
    let top = layout.json(&digest);
    let manifest = match top["manifests"].as_array() {
        Some(m) => m[0]["digest"].as_str().expect("digest").to_string(),
        None => digest.clone(),
    };
    let config = layout.config(&manifest);
    let diff_id = config["rootfs"]["diff_ids"]
        .as_array()
        .and_then(|d| d.last())
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    if std::env::var_os("IMGBUILD_GOLDEN_PRINT").is_some() {
        println!("GOLDEN {name}: {digest} {diff_id}");
    }
    assert_eq!(
        diff_id, want_last_diff_id,
        "{name}: the diff_id of the last layer changed: the tar normal form changed"
    );
    assert_eq!(digest, want_digest, "{name}: the image digest changed");
}

fn ctx(recipe: &str) -> Ctx {
    let c = Ctx::new();
    c.recipe_text(recipe);
    c
}

fn case(c: Ctx) -> Case {
    Case {
        ctx: c,
        args: vec![],
    }
}

const EPOCH: &str = "[image]\nsource-date-epoch = 1700000000\n";

#[test]
fn golden_inline_file() {
    let c = ctx(&format!("{EPOCH}[[layer]]\nname = \"files\"\n[[layer.file]]\npath = \"/etc/app.conf\"\ncontent = \"a = 1\\n\"\n[[layer.file]]\npath = \"/usr/local/bin/run\"\ncontent = \"#!/bin/sh\\n\"\nmode = 0o755\nuid = 10\ngid = 20\n"));
    check("inline_file", case(c), "", "");
}

#[test]
fn golden_copy_file_and_tree_with_exclude_and_modes() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"copy\"\n[[layer.copy]]\nsrc = \"bin/tool\"\ndst = \"/usr/bin/\"\n[[layer.copy]]\nsrc = \"bin/tool\"\ndst = \"/opt/tool-renamed\"\nmode = 0o4750\nuid = 1\ngid = 2\n[[layer.copy]]\nsrc = \"site/\"\ndst = \"/srv/site/\"\nexclude = [\"*.map\", \"cache/\", \"/top-only.txt\"]\ndir-mode = 0o750\nuid = 33\ngid = 33\n"
    ));
    c.write_mode("bin/tool", b"#!/bin/sh\necho tool\n", 0o700)
        .write("site/index.html", b"<h1>hi</h1>\n")
        .write("site/app.js", test_bytes(1, 3000))
        .write("site/app.js.map", b"{}")
        .write("site/top-only.txt", b"excluded at top\n")
        .write("site/sub/top-only.txt", b"kept below top\n")
        .write("site/cache/x", b"excluded dir\n")
        .write("site/sub/cache", b"a file named cache is kept\n");
    check("copy_file_and_tree", case(c), "", "");
}

#[test]
fn golden_explicit_dirs_including_empty_sticky_and_setgid() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"dirs\"\n[[layer.dir]]\npath = \"/tmp\"\nmode = 0o1777\n[[layer.dir]]\npath = \"/var/lib/app/data\"\nmode = 0o2750\nuid = 65532\ngid = 65532\n[[layer.dir]]\npath = \"/empty\"\n"
    ));
    c.mkdir("tree/empty-inside");
    check("dirs", case(c), "", "");
}

#[test]
fn golden_symlinks_from_items_and_trees() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"links\"\n[[layer.symlink]]\npath = \"/usr/bin/app\"\ntarget = \"../lib/app/app\"\n[[layer.copy]]\nsrc = \"tree/\"\ndst = \"/lib/app/\"\n[[layer.copy]]\nsrc = \"lone-link\"\ndst = \"/lone-link\"\n"
    ));
    c.write("tree/app", b"binary\n")
        .symlink("app", "tree/relative")
        .symlink("/lib/app/app", "tree/absolute")
        .symlink("does/not/exist", "tree/dangling")
        .symlink("tree/app", "lone-link");
    check("symlinks", case(c), "", "");
}

#[test]
fn golden_hardlinks_within_one_tree() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"hard\"\n[[layer.copy]]\nsrc = \"t/\"\ndst = \"/t/\"\n"
    ));
    c.write("t/z-original", test_bytes(2, 5000)).mkdir("t/a");
    c.hardlink("t/z-original", "t/a/first-in-order")
        .hardlink("t/z-original", "t/m-middle");
    check("hardlinks", case(c), "", "");
}

#[test]
fn golden_long_paths_and_link_targets() {
    let long_dir = format!("{}/{}/{}", "a".repeat(60), "b".repeat(60), "c".repeat(60));
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"long\"\n[[layer.copy]]\nsrc = \"long/\"\ndst = \"/long/\"\n[[layer.symlink]]\npath = \"/l\"\ntarget = \"/long/{long_dir}/{}.txt\"\n",
        "d".repeat(120)
    ));
    c.write(
        &format!("long/{long_dir}/{}.txt", "d".repeat(120)),
        b"long path\n",
    )
    .write(&format!("long/{}", "e".repeat(99)), b"99\n")
    .write(
        &format!("long/{}/{}", "p".repeat(150), "n".repeat(90)),
        b"prefix split\n",
    );
    check("long_paths", case(c), "", "");
}

#[test]
fn golden_non_ascii_names() {
    let c = ctx(&format!("{EPOCH}[[layer]]\nname = \"unicode\"\n[[layer.copy]]\nsrc = \"u/\"\ndst = \"/données/\"\n[[layer.file]]\npath = \"/etc/日本語.conf\"\ncontent = \"ü\\n\"\n"));
    c.write("u/café.txt", "café\n")
        .write("u/naïve résumé.txt", "x\n")
        .write("u/emoji-🚀.txt", "🚀\n")
        .write("u/Ärger/ß", "ß\n");
    check("non_ascii", case(c), "", "");
}

#[test]
fn golden_archives_tar_gz_zst_with_strip_components() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"archives\"\n[[layer.archive]]\nsrc = \"v/plain.tar\"\ndst = \"/opt/plain\"\n[[layer.archive]]\nsrc = \"v/pkg.tar.gz\"\ndst = \"/opt/gz\"\nstrip-components = 1\n[[layer.archive]]\nsrc = \"v/pkg.tar.zst\"\ndst = \"/opt/zst\"\n"
    ));
    let big = test_bytes(3, 200_000);
    let tar = make_tar(&[
        ("pkg/", None, None),
        ("pkg/bin/", None, None),
        ("pkg/bin/tool", Some(&big[..]), None),
        ("pkg/bin/tool-link", None, Some("tool")),
        ("pkg/bin/tool-hard", None, Some("hard:pkg/bin/tool")),
        ("pkg/README", Some(&b"readme\n"[..]), None),
    ]);
    c.write("v/plain.tar", &tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gz");
    c.write("v/pkg.tar.gz", gz.finish().expect("gz"));
    c.write(
        "v/pkg.tar.zst",
        zstd::encode_all(&tar[..], 3).expect("zstd"),
    );
    check("archives", case(c), "", "");
}

#[test]
fn golden_whiteouts_against_an_earlier_layer() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"base\"\n[[layer.file]]\npath = \"/etc/motd\"\ncontent = \"hi\"\n[[layer.file]]\npath = \"/etc/keep\"\ncontent = \"k\"\n[[layer.dir]]\npath = \"/var/cache/apt\"\n[[layer]]\nname = \"cleanup\"\nremove = [\"/etc/motd\", \"/var/cache/apt\"]\n"
    ));
    check("whiteouts", case(c), "", "");
}

#[test]
fn golden_users_groups_and_full_config() {
    let c = ctx(&format!(
        r#"{EPOCH}tags = ["1.0"]
[config]
entrypoint = ["/app"]
cmd = ["--port", "8080"]
env = {{ PATH = "/usr/bin:/bin", LANG = "C.UTF-8", A = "x=y" }}
workdir = "/home/app"
user = "app"
exposed-ports = ["8080/tcp", "53/udp", "9000"]
volumes = ["/data", "/cache"]
labels = {{ "org.opencontainers.image.source" = "https://example.com/x", "b" = "2" }}
stop-signal = "SIGINT"
[annotations]
"org.opencontainers.image.version" = "1.0"
"com.example.z" = "last"
[[group]]
name = "staff"
gid = 50
[[user]]
name = "app"
uid = 65532
home = "/home/app"
shell = "/bin/sh"
groups = ["staff"]
[[user]]
name = "svc"
uid = 1001
gid = 50
[[layer]]
name = "app"
[[layer.file]]
path = "/app"
content = "app"
mode = 0o755
"#
    ));
    check("users_and_config", case(c), "", "");
}

fn compression_case(kind: &str) -> Case {
    let c = ctx(&format!("{EPOCH}compression = \"{kind}\"\n[[layer]]\nname = \"data\"\n[[layer.copy]]\nsrc = \"data/\"\ndst = \"/data/\"\n"));
    // Several gzip blocks (128 KiB each) with matches across block boundaries.
    c.write("data/big.bin", test_bytes(4, 700_000))
        .write("data/small.txt", b"small\n")
        .write("data/empty", b"");
    case(c)
}

#[test]
fn golden_gzip() {
    check("gzip", compression_case("gzip"), "", "");
}

#[test]
fn golden_zstd() {
    check("zstd", compression_case("zstd"), "", "");
}

#[test]
fn golden_uncompressed() {
    check("none", compression_case("none"), "", "");
}

#[test]
fn golden_multi_platform_with_arch_placeholders() {
    let c = ctx(&format!(
        "{EPOCH}platforms = [\"linux/amd64\", \"linux/arm64\", \"linux/arm/v7\"]\ntags = [\"multi\"]\n[[layer]]\nname = \"common\"\n[[layer.file]]\npath = \"/etc/common\"\ncontent = \"same everywhere\"\n[[layer]]\nname = \"bin\"\n[[layer.copy]]\nsrc = \"target/{{arch}}{{variant}}/app\"\ndst = \"/app\"\n"
    ));
    c.write_mode("target/amd64/app", b"amd64 binary", 0o755)
        .write_mode("target/arm64/app", b"arm64 binary", 0o755)
        .write_mode("target/armv7/app", b"armv7 binary", 0o755);
    check("multi_platform", case(c), "", "");
}

#[test]
fn golden_base_image_from_an_oci_layout() {
    // The base is itself built by imgbuild into a layout inside the context.
    let c = ctx("");
    let base_ctx = ctx(&format!(
        "{EPOCH}[config]\nenv = {{ PATH = \"/bin\", FROM_BASE = \"1\" }}\ncmd = [\"/bin/base\"]\nlabels = {{ base = \"yes\" }}\n[[layer]]\nname = \"base-root\"\n[[layer.file]]\npath = \"/etc/motd\"\ncontent = \"base motd\"\n[[layer.file]]\npath = \"/bin/base\"\ncontent = \"base\"\nmode = 0o755\n"
    ));
    let base_digest = base_ctx.build_ok(
        &c.path().join("base"),
        &["--source-date-epoch", "1600000000"],
    );
    c.recipe_text(&format!(
        "{EPOCH}[base]\nimage = \"oci:base@{base_digest}\"\n[config]\nenv = {{ PATH = \"/usr/bin:/bin\" }}\n[[layer]]\nname = \"app\"\nremove = [\"/etc/motd\"]\n[[layer.file]]\npath = \"/app\"\ncontent = \"app\"\n"
    ));
    check("base_layout", case(c), "", "");
}
