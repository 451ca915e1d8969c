//! Golden digests, per format version. Each case builds a recipe from sources
//! generated here and must produce exactly the pinned manifest (or index) digest of
//! every format version in its table. A released format's digests never change: an
//! image built with it must rebuild bit for bit with every later release (a change of
//! bytes is a new format version, docs/determinism.md). The recipes name `format = 1`
//! themselves; every other format is built from the same recipe with
//! `--format-version N`. The last layer's diff_id is pinned separately: it never
//! changes, even across format versions (only compressed bytes may; the one content
//! rule a format changed — format 2 merges `[[user]]` into a base's /etc/passwd —
//! changes only the accounts layer, which no case has last).
//!
//! Format 2's column is filled in when its compressor lands: adding a format to a case
//! is one `(2, "sha256:…")` row in its table.
//!
//! To see the digests a change produces: `IMGBUILD_GOLDEN_PRINT=1 cargo test --test
//! golden -- --nocapture` (the test still fails on a mismatch); it prints format 2's
//! too, whether pinned yet or not.

mod common;

use common::{make_tar, test_bytes, Ctx, Layout};
use std::io::Write;

struct Case {
    ctx: Ctx,
    args: Vec<&'static str>,
}

/// A case's image digest per format version: `(format, digest)`, format 1 first.
type Digests = &'static [(u32, &'static str)];

/// Checks every format of `digests`; prints (with IMGBUILD_GOLDEN_PRINT) the digests of
/// the formats it does not pin yet.
fn check(name: &str, case: Case, digests: Digests, want_last_diff_id: &str) {
    assert_eq!(
        digests.first().map(|d| d.0),
        Some(1),
        "{name}: format 1's digest comes first"
    );
    let recipe = std::fs::read_to_string(case.ctx.recipe()).expect("recipe");
    assert!(
        recipe.contains("format = 1\n"),
        "{name}: a golden recipe names its format"
    );
    for (format, want) in digests {
        check_format(name, &case, *format, Some(want), want_last_diff_id);
    }
    if std::env::var_os("IMGBUILD_GOLDEN_PRINT").is_some() {
        for format in 2..=NEWEST_FORMAT {
            if !digests.iter().any(|d| d.0 == format) {
                check_format(name, &case, format, None, want_last_diff_id);
            }
        }
    }
}

/// The newest format version this imgbuild builds.
const NEWEST_FORMAT: u32 = 2;

fn check_format(name: &str, case: &Case, format: u32, want: Option<&str>, want_last_diff_id: &str) {
    let format_flag = format.to_string();
    let mut extra: Vec<&str> = case.args.clone();
    if format != 1 {
        extra.extend(["--format-version", &format_flag]);
    }
    let out = tempfile::tempdir().expect("tmp");
    let root = out.path().join("out");
    let mut args = vec!["--threads", "2"];
    args.extend(extra.iter().copied());
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
        println!("GOLDEN {name} format {format}: {digest} {diff_id}");
    }
    assert_eq!(
        diff_id, want_last_diff_id,
        "{name} (format {format}): the diff_id of the last layer changed: the tar normal form changed"
    );
    let Some(want) = want else { return };
    assert_eq!(
        digest, want,
        "{name}: the image digest of format {format} changed"
    );
    // The same case on one thread, into a fresh layout, gives the same bytes.
    let single = tempfile::tempdir().expect("tmp");
    let mut args1 = vec!["--threads", "1"];
    args1.extend(extra.iter().copied());
    let one = case.ctx.build_ok(&single.path().join("out"), &args1);
    assert_eq!(
        one, digest,
        "{name} (format {format}): 1 thread and 2 threads disagree"
    );
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

const EPOCH: &str = "[image]\nformat = 1\nsource-date-epoch = 1700000000\n";

#[test]
fn golden_inline_file() {
    let c = ctx(&format!("{EPOCH}[[layer]]\nname = \"files\"\n[[layer.file]]\npath = \"/etc/app.conf\"\ncontent = \"a = 1\\n\"\n[[layer.file]]\npath = \"/usr/local/bin/run\"\ncontent = \"#!/bin/sh\\n\"\nmode = 0o755\nuid = 10\ngid = 20\n"));
    check(
        "inline_file",
        case(c),
        &[
            (
                1,
                "sha256:98206110d47eaafb7f2be30ab46327faaa9636759a9de5ddc02f260ea612313b",
            ),
            (
                2,
                "sha256:47de59587a5b7c8bbce6a9ee304fc019842349ef7c720946fba8ae823b4b73c2",
            ),
        ],
        "sha256:fc4f05fc805a4ba7ad3c15de49dd4fc621a020de66fa65803a5e546551144c02",
    );
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
    check(
        "copy_file_and_tree",
        case(c),
        &[
            (
                1,
                "sha256:1f2d0074cbda43adb4e2882e6db03550f0c7eca590ac977a26aea331cd4790af",
            ),
            (
                2,
                "sha256:8436defbabe7bfeb62f60644497252348eafd4b607b93da7861c6838ec543380",
            ),
        ],
        "sha256:decb68289b6a09149ce12811948d0bf00142b135fc5a845ef42251c3e6464cf3",
    );
}

#[test]
fn golden_explicit_dirs_including_empty_sticky_and_setgid() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"dirs\"\n[[layer.dir]]\npath = \"/tmp\"\nmode = 0o1777\n[[layer.dir]]\npath = \"/var/lib/app/data\"\nmode = 0o2750\nuid = 65532\ngid = 65532\n[[layer.dir]]\npath = \"/empty\"\n"
    ));
    c.mkdir("tree/empty-inside");
    check(
        "dirs",
        case(c),
        &[
            (
                1,
                "sha256:943537a7cf4e4096638fb9fdd1d2686cc5f84d846529f739a770bc894f304827",
            ),
            (
                2,
                "sha256:9b65b6c706d7a74c67af7273bae56cd337e5f1e5a844cbe5c67873ce9efbebd0",
            ),
        ],
        "sha256:5ef0b9c1285382682a72806982cd045071bbebf598ca38837f6b3cd9ea068572",
    );
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
    check(
        "symlinks",
        case(c),
        &[
            (
                1,
                "sha256:bef6a52e37f94462abdacd2ce9c3802184ee23174a00ad62c57d5e653d757a8c",
            ),
            (
                2,
                "sha256:8d27ddd5f6082110d931db3c249f62cf39ff11ad280a5b267d98fda7c8587419",
            ),
        ],
        "sha256:3ab2715ed061a85ada62fb6f0935e6e80edd7d918c9164c586bed9cc2c1ce2e9",
    );
}

#[test]
fn golden_hardlinks_within_one_tree() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"hard\"\n[[layer.copy]]\nsrc = \"t/\"\ndst = \"/t/\"\n"
    ));
    c.write("t/z-original", test_bytes(2, 5000)).mkdir("t/a");
    c.hardlink("t/z-original", "t/a/first-in-order")
        .hardlink("t/z-original", "t/m-middle");
    check(
        "hardlinks",
        case(c),
        &[
            (
                1,
                "sha256:dde937f3d3132eef6be7b54dd23d6713b0653456401dc636a187062d05240606",
            ),
            (
                2,
                "sha256:06fed7b26312e88454f8fd8c4ea6602cb5ff576e0eeda7b062b8bdff0c776287",
            ),
        ],
        "sha256:df7f227e172778383c8e6f824fec757db8c94c7c38931a9511ce51ff6ef1d6f4",
    );
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
    check(
        "long_paths",
        case(c),
        &[
            (
                1,
                "sha256:f6b5b6db458ac72275e616d4aed34fc1728466c3e14f4b6d062c0c12e30b0ba8",
            ),
            (
                2,
                "sha256:3fc9d64b1e610f2d847789d66a1ecdbf8cdb3b7ca7451bf43f02ae3e338a36e5",
            ),
        ],
        "sha256:f8f3f01a390337c6252da16b90de5e93e1f34414d606ce5cda60009a3f0f12d2",
    );
}

#[test]
fn golden_non_ascii_names() {
    let c = ctx(&format!("{EPOCH}[[layer]]\nname = \"unicode\"\n[[layer.copy]]\nsrc = \"u/\"\ndst = \"/données/\"\n[[layer.file]]\npath = \"/etc/日本語.conf\"\ncontent = \"ü\\n\"\n"));
    c.write("u/café.txt", "café\n")
        .write("u/naïve résumé.txt", "x\n")
        .write("u/emoji-🚀.txt", "🚀\n")
        .write("u/Ärger/ß", "ß\n");
    check(
        "non_ascii",
        case(c),
        &[
            (
                1,
                "sha256:d2ec41631794f6fb36f2c4ecca4a03fad17e6b0c2af5dbcd3d8d5c782082e156",
            ),
            (
                2,
                "sha256:685c2afde2bfeecc8d723e22ef6c4c21962d423110759ce8373bad9229e54f5d",
            ),
        ],
        "sha256:06a47a9a7fc86a2c3599e92bdc9f2067a1ef52d0bc4f81406d7677de52988a41",
    );
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
    check(
        "archives",
        case(c),
        &[
            (
                1,
                "sha256:4a1c53b7dd47645b06e7289552e17cb2948fb183de65fe743c49da17f776a13f",
            ),
            (
                2,
                "sha256:d5acc99b4fc81d35787619129d71567b3184bb92c882e895b8a9d19d1e45ecc6",
            ),
        ],
        "sha256:a64b386738fb403d63c2718774cdaa6d6413cc2e369db1da97317a12406c0b8a",
    );
}

#[test]
fn golden_whiteouts_against_an_earlier_layer() {
    let c = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"base\"\n[[layer.file]]\npath = \"/etc/motd\"\ncontent = \"hi\"\n[[layer.file]]\npath = \"/etc/keep\"\ncontent = \"k\"\n[[layer.dir]]\npath = \"/var/cache/apt\"\n[[layer]]\nname = \"cleanup\"\nremove = [\"/etc/motd\", \"/var/cache/apt\"]\n"
    ));
    check(
        "whiteouts",
        case(c),
        &[
            (
                1,
                "sha256:6daf9587b6ffee6f985b097ad9142b39c7d840932b3039a413907f98b6cbbf0f",
            ),
            (
                2,
                "sha256:3df43680d39c0dcffad918cb687540f656ad0336c0d3768499f7f47902ba2312",
            ),
        ],
        "sha256:c9eb962238c7418f2e47a830a563eca1d18b4c771faaa945ed9f01f8ee4d9390",
    );
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
    check(
        "users_and_config",
        case(c),
        &[
            (
                1,
                "sha256:d90af7e0c51e2acc477b53e7058d7ae4a9584a99368e3bbde56233db28a830bb",
            ),
            (
                2,
                "sha256:3f6103a015efdcb6d0d0a222235e6b1c83e5bd83c595d70c18dddc5ee78171cc",
            ),
        ],
        "sha256:6142e46655553f91bd12baf9add040742d0f3ffeaefb28f403efb3a9878d7de8",
    );
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
    check(
        "gzip",
        compression_case("gzip"),
        &[
            (
                1,
                "sha256:3d6da31e4a3b134826695848c49cabe71f6d90f50a03af9239a0c33a40b4b097",
            ),
            (
                2,
                "sha256:2bcd91fef3ae6187b2a198407f53bff104b94da768ce09061fb356f44688bd71",
            ),
        ],
        "sha256:c4012adde0ba1e4fcf7a44ea36c37ac9f19bf9db91b32c189bb52ff1133a1c02",
    );
}

#[test]
fn golden_zstd() {
    check(
        "zstd",
        compression_case("zstd"),
        &[
            (
                1,
                "sha256:f40910c319fd1085216ffae5bf373b8bd72bc754726c6f39f0343e750ace5675",
            ),
            (
                2,
                "sha256:0fdef998d77611541e5c9909e7d4df18ae5c4ee24eded3bf26ba0eab88d3faa6",
            ),
        ],
        "sha256:c4012adde0ba1e4fcf7a44ea36c37ac9f19bf9db91b32c189bb52ff1133a1c02",
    );
}

#[test]
fn golden_uncompressed() {
    check(
        "none",
        compression_case("none"),
        &[
            (
                1,
                "sha256:d8313fd1cbc2bff0006ae0a93e80219ea9fc4b57c4b4dd58fdaed80a5f8c580a",
            ),
            (
                2,
                "sha256:993c3fe39501e7a1f5a86a7ff11a70fccbee8facd0689309836aa49fae1d6189",
            ),
        ],
        "sha256:c4012adde0ba1e4fcf7a44ea36c37ac9f19bf9db91b32c189bb52ff1133a1c02",
    );
}

#[test]
fn golden_multi_platform_with_arch_placeholders() {
    let c = ctx(&format!(
        "{EPOCH}platforms = [\"linux/amd64\", \"linux/arm64\", \"linux/arm/v7\"]\ntags = [\"multi\"]\n[[layer]]\nname = \"common\"\n[[layer.file]]\npath = \"/etc/common\"\ncontent = \"same everywhere\"\n[[layer]]\nname = \"bin\"\n[[layer.copy]]\nsrc = \"target/{{arch}}{{variant}}/app\"\ndst = \"/app\"\n"
    ));
    c.write_mode("target/amd64/app", b"amd64 binary", 0o755)
        .write_mode("target/arm64/app", b"arm64 binary", 0o755)
        .write_mode("target/armv7/app", b"armv7 binary", 0o755);
    check(
        "multi_platform",
        case(c),
        &[
            (
                1,
                "sha256:d6b16c3a254fa3b005aa1dc02eea4b1b50edff327f2ca42c615fc21615779cb4",
            ),
            (
                2,
                "sha256:06515ebbe4ed45b17fad22816e4627b4ee4e3b68c3e2768736006fcf83584c42",
            ),
        ],
        "sha256:a1e841710a82e5af0c1a58f4232736a42291fcdc9874c45da5caea4e371ecb63",
    );
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
    check(
        "base_layout",
        case(c),
        &[
            (
                1,
                "sha256:702d730df8d1a304ef06a27c9cc23464333a6aa2d65ce63446280fb73c9a7f59",
            ),
            (
                2,
                "sha256:9c7886357ce62f33c78e5f66cd307604a783602ef66d34c823fd774adbc1660f",
            ),
        ],
        "sha256:253b28c6f30260253fda34e66e0a46084fb6a3b4f6f88c44a35de61684ed1f8a",
    );
}

/// A base that has /etc/passwd and /etc/group (two layers: the second rewrites
/// passwd) under a recipe with [[user]] and [[group]]. Format 1 replaces the base's
/// files with the recipe's (its bytes predate merging, and its digest here was pinned
/// before merging existed); format 2 merges them, so its accounts layer differs.
#[test]
fn golden_accounts_on_a_base_with_passwd_and_group() {
    let c = ctx("");
    let base_ctx = ctx(&format!(
        "{EPOCH}[[layer]]\nname = \"base-etc\"\n[[layer.file]]\npath = \"/etc/passwd\"\ncontent = \"root:x:0:0:root:/root:/bin/sh\\n\"\n[[layer.file]]\npath = \"/etc/group\"\ncontent = \"root:x:0:\\ndaemon:x:1:\\nstaff:x:50:op\\nnogroup:x:65534:\\n\"\n[[layer]]\nname = \"base-users\"\n[[layer.file]]\npath = \"/etc/passwd\"\ncontent = \"root:x:0:0:root:/root:/bin/sh\\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\\nop:x:10:50:operator:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\\n\"\n"
    ));
    let base_digest = base_ctx.build_ok(
        &c.path().join("base"),
        &["--source-date-epoch", "1600000000"],
    );
    c.recipe_text(&format!(
        "{EPOCH}[base]\nimage = \"oci:base@{base_digest}\"\n[[group]]\nname = \"staff\"\ngid = 50\n[[user]]\nname = \"app\"\nuid = 1000\nhome = \"/home/app\"\ngroups = [\"staff\"]\n[[user]]\nname = \"daemon\"\nuid = 1\nshell = \"/bin/false\"\n[[layer]]\nname = \"app\"\n[[layer.file]]\npath = \"/app\"\ncontent = \"app\"\n"
    ));
    check(
        "accounts_on_base",
        case(c),
        &[
            (
                1,
                "sha256:6d89e38694d28af0aa2aa0e3ea84c913d3262f55fd9a04883131bbfd082e5025",
            ),
            (
                2,
                "sha256:d76f3ce59926d5f5778db419c3930ffd8c8d7327bd6f63985a41442da43c3cb0",
            ),
        ],
        "sha256:7a21ee7f5fda9cc0bf423241d6dad08d46072cb8d375936727ea2810f9c5f605",
    );
}

/// Every format keeps the tar normal form (diff_ids never change) and names itself in
/// each manifest from format 2 on; format 1's manifests carry no such annotation.
#[test]
fn format_2_keeps_every_diff_id_and_names_itself_in_the_manifest() {
    for kind in ["gzip", "zstd", "none"] {
        let case = compression_case(kind);
        let manifest_of = |format: &str| {
            let out = tempfile::tempdir().expect("tmp");
            let root = out.path().join("out");
            let digest = case
                .ctx
                .build_ok(&root, &["--format-version", format, "--threads", "2"]);
            let layout = Layout::new(&root);
            let manifest = layout.json(&digest);
            let config = layout.config(&digest);
            (manifest, config["rootfs"]["diff_ids"].clone())
        };
        let (m1, d1) = manifest_of("1");
        let (m2, d2) = manifest_of("2");
        assert_eq!(d1, d2, "{kind}: format 2 changed a diff_id");
        assert_eq!(
            m1["annotations"]["org.imgbuild.format-version"],
            serde_json::Value::Null,
            "{kind}: format 1 bytes never carry the annotation"
        );
        assert_eq!(
            m2["annotations"]["org.imgbuild.format-version"], "2",
            "{kind}"
        );
        if kind == "none" {
            // Uncompressed, a layer blob is its tar: the same in every format.
            assert_eq!(m1["layers"], m2["layers"], "{kind}");
        }
    }
}
