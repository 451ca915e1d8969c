//! docs/determinism.md: nothing but the inputs may change the digest. Each test builds the same
//! source twice, once under one perturbation of the host, and asserts equal digests.
//! The source is the shared benchmark corpus at a small scale (small files, binaries,
//! big files, symlinks, hardlinks, empty dirs, long and non-ASCII names).

mod common;

use common::{imgbuild, Ctx};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECIPE: &str = r#"
[image]
tags = ["t"]
source-date-epoch = 1700000000

[config]
entrypoint = ["/app/bin/tool_0"]

[[user]]
name = "app"
uid = 1000

[[layer]]
name = "corpus"
  [[layer.copy]]
  src = "corpus/"
  dst = "/app/"
  exclude = ["*.md"]

[[layer]]
name = "extra"
  [[layer.file]]
  path = "/etc/extra"
  content = "x\n"
"#;

fn corpus_script() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/make-corpus.py");
    assert!(
        p.is_file(),
        "{} is missing: the tests need the shared corpus generator",
        p.display()
    );
    p
}

/// A context holding the corpus, generated under `umask`.
fn corpus_ctx(umask: &str) -> Ctx {
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask {umask} && python3 \"$0\" \"$1\" --scale 0.02"
        ))
        .arg(corpus_script())
        .arg(ctx.path().join("corpus"))
        .status()
        .expect("python3 runs");
    assert!(status.success(), "make-corpus.py failed");
    ctx
}

fn build(ctx: &Ctx, args: &[&str]) -> String {
    let out = tempfile::tempdir().expect("tmp");
    ctx.build_ok(&out.path().join("out"), args)
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for p in names {
        let m = fs::symlink_metadata(&p).expect("meta");
        if m.is_dir() {
            walk(&p, f);
        }
        f(&p);
    }
}

#[test]
fn same_source_twice_gives_the_same_digest() {
    let ctx = corpus_ctx("022");
    assert_eq!(build(&ctx, &[]), build(&ctx, &[]));
}

#[test]
fn umask_of_the_source_tree_and_of_imgbuild_does_not_change_the_digest() {
    let a = corpus_ctx("022");
    let b = corpus_ctx("077");
    let out = tempfile::tempdir().expect("tmp");
    let o = Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" build \"$1\" --out \"$2\"")
        .arg(env!("CARGO_BIN_EXE_imgbuild"))
        .arg(b.recipe())
        .arg(out.path().join("o"))
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(build(&a, &[]), String::from_utf8_lossy(&o.stdout).trim());
}

#[test]
fn file_mtimes_do_not_change_the_digest() {
    let ctx = corpus_ctx("022");
    let before = build(&ctx, &[]);
    let mut n: u64 = 12345;
    walk(&ctx.path().join("corpus"), &mut |p| {
        if fs::symlink_metadata(p)
            .expect("meta")
            .file_type()
            .is_symlink()
        {
            return;
        }
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(n % 2_000_000_000);
        let f = fs::File::options().read(true).open(p).expect("open");
        f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
            .expect("set times");
    });
    assert_eq!(before, build(&ctx, &[]));
}

#[test]
fn file_creation_order_does_not_change_the_digest() {
    // Copy the tree twice, creating entries in opposite orders, so that directory
    // listing order (and inode numbers) differ.
    let src = corpus_ctx("022");
    let mut paths = Vec::new();
    walk(&src.path().join("corpus"), &mut |p| {
        paths.push(p.to_path_buf())
    });
    paths.sort();
    let copy = |reverse: bool| {
        let ctx = Ctx::new();
        ctx.recipe_text(RECIPE);
        let mut list = paths.clone();
        if reverse {
            list.reverse();
        }
        let root = src.path();
        // Directories first (in the chosen order), then files and links.
        for p in list
            .iter()
            .filter(|p| fs::symlink_metadata(p).expect("m").is_dir())
        {
            fs::create_dir_all(ctx.path().join(p.strip_prefix(root).expect("prefix")))
                .expect("mkdir");
        }
        let mut inodes: std::collections::HashMap<u64, PathBuf> = Default::default();
        for p in list
            .iter()
            .filter(|p| !fs::symlink_metadata(p).expect("m").is_dir())
        {
            let m = fs::symlink_metadata(p).expect("m");
            let dst = ctx.path().join(p.strip_prefix(root).expect("prefix"));
            if m.file_type().is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(p).expect("link"), &dst).expect("symlink");
            } else if let Some(first) = inodes.get(&m.ino()) {
                fs::hard_link(first, &dst).expect("hardlink");
            } else {
                fs::copy(p, &dst).expect("copy");
                inodes.insert(m.ino(), dst);
            }
        }
        ctx
    };
    let forward = copy(false);
    let backward = copy(true);
    assert_eq!(build(&forward, &[]), build(&backward, &[]));
}

#[test]
fn owners_of_the_source_files_do_not_change_the_digest() {
    let ctx = corpus_ctx("022");
    let before = build(&ctx, &[]);
    let status = Command::new("chown")
        .arg("-R")
        .arg("-h")
        .arg("1234:5678")
        .arg(ctx.path().join("corpus"))
        .status()
        .expect("chown runs");
    assert!(
        status.success(),
        "chown failed: this test needs root (CI runs as root)"
    );
    assert_eq!(before, build(&ctx, &[]));
}

#[test]
fn timezone_and_locale_do_not_change_the_digest() {
    let ctx = corpus_ctx("022");
    let before = build(&ctx, &[]);
    let out = tempfile::tempdir().expect("tmp");
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(out.path().join("o"))
        .env("TZ", "Pacific/Chatham")
        .env("LANG", "tr_TR.UTF-8")
        .env("LC_ALL", "tr_TR.UTF-8")
        .env("LC_COLLATE", "de_DE.UTF-8")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(before, String::from_utf8_lossy(&o.stdout).trim());
}

#[test]
fn context_path_and_current_directory_do_not_change_the_digest() {
    let ctx = corpus_ctx("022");
    let before = build(&ctx, &[]);
    let elsewhere = tempfile::tempdir().expect("tmp");
    let moved = elsewhere.path().join("some/much/deeper/context path");
    fs::create_dir_all(moved.parent().expect("parent")).expect("mkdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(ctx.path())
        .arg(&moved)
        .status()
        .expect("cp");
    assert!(status.success());
    let out = tempfile::tempdir().expect("tmp");
    // A relative recipe path, run from the recipe's parent directory.
    let o = imgbuild()
        .current_dir(moved.parent().expect("parent"))
        .arg("build")
        .arg("context path/recipe.toml")
        .arg("--out")
        .arg(out.path().join("o"))
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(before, String::from_utf8_lossy(&o.stdout).trim());
}

#[test]
fn thread_count_does_not_change_the_digest_for_any_compression() {
    let ctx = corpus_ctx("022");
    for compression in ["gzip", "zstd", "none"] {
        ctx.recipe_text(&RECIPE.replace(
            "[image]",
            &format!("[image]\ncompression = \"{compression}\""),
        ));
        let one = build(&ctx, &["--threads", "1"]);
        assert_eq!(
            one,
            build(&ctx, &["--threads", "2"]),
            "{compression}: 1 vs 2 threads"
        );
        assert_eq!(
            one,
            build(&ctx, &["--threads", "8"]),
            "{compression}: 1 vs 8 threads"
        );
    }
}

#[test]
fn a_prefilled_output_layout_does_not_change_the_digest() {
    let ctx = corpus_ctx("022");
    let before = build(&ctx, &[]);
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    // Another image with the same tag, plus stray files, already in --out.
    let other = Ctx::new();
    other.recipe_text("[image]\ntags = [\"t\"]\n[[layer]]\nname = \"x\"\n[[layer.file]]\npath = \"/x\"\ncontent = \"other\"\n");
    other.build_ok(&o, &[]);
    fs::write(o.join("blobs/sha256/.tmp-stale"), b"half a blob").expect("write");
    assert_eq!(before, ctx.build_ok(&o, &[]));
    // And building into it again changes nothing either.
    assert_eq!(before, ctx.build_ok(&o, &[]));
}

#[test]
fn the_output_directory_inside_a_copied_tree_is_not_copied() {
    let ctx = corpus_ctx("022");
    let clean = build(&ctx, &[]);
    let out = ctx.path().join("corpus/out");
    let first = ctx.build_ok(&out, &[]);
    let second = ctx.build_ok(&out, &[]);
    assert_eq!(clean, first);
    assert_eq!(
        first, second,
        "the layout written by the first build must not enter the second"
    );
}

#[test]
fn source_date_epoch_precedence_is_flag_then_recipe_then_environment() {
    let ctx = Ctx::new();
    ctx.recipe_text("[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"/f\"\ncontent = \"\"\n");
    let out = tempfile::tempdir().expect("tmp");
    let epoch_of = |args: &[&str], env: Option<&str>| {
        let mut c = imgbuild();
        c.arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(out.path().join("o"))
            .arg("--json")
            .args(args);
        if let Some(e) = env {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let o = c.output().expect("run");
        assert!(o.status.success(), "{}", common::stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["sourceDateEpoch"].as_u64().expect("epoch")
    };
    assert_eq!(epoch_of(&[], None), 0);
    assert_eq!(epoch_of(&[], Some("77")), 77);
    assert_eq!(epoch_of(&["--source-date-epoch", "5"], Some("77")), 5);
    ctx.recipe_text("[image]\nsource-date-epoch = 9\n[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"/f\"\ncontent = \"\"\n");
    assert_eq!(epoch_of(&[], Some("77")), 9);
    assert_eq!(epoch_of(&["--source-date-epoch", "5"], None), 5);
}

#[test]
fn a_rebuild_with_nothing_changed_writes_no_layer_and_gives_the_same_digest() {
    let ctx = corpus_ctx("022");
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let cold = ctx.build(&o, &[]);
    assert!(cold.status.success(), "{}", common::stderr(&cold));
    let warm = ctx.build(&o, &[]);
    assert!(warm.status.success(), "{}", common::stderr(&warm));
    assert_eq!(cold.stdout, warm.stdout);
    let log = common::stderr(&warm);
    let layers: Vec<&str> = log.lines().filter(|l| l.starts_with("layer ")).collect();
    assert_eq!(layers.len(), 3, "{log}");
    assert!(
        layers.iter().all(|l| l.ends_with("local cache)")),
        "every layer comes from the cache: {log}"
    );
}

#[test]
fn the_layer_cache_notices_a_changed_source_even_with_the_same_size_and_mtime() {
    let ctx = corpus_ctx("022");
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let before = ctx.build_ok(&o, &[]);
    let victim = ctx.path().join("corpus/data/blob_0.bin");
    let meta = fs::metadata(&victim).expect("meta");
    let mut bytes = fs::read(&victim).expect("read");
    bytes[1000] ^= 0xff;
    fs::write(&victim, &bytes).expect("write");
    // Put the mtime back: only the ctime (which nothing can set) tells the change.
    let f = fs::File::options().write(true).open(&victim).expect("open");
    f.set_modified(meta.modified().expect("mtime"))
        .expect("set mtime");
    let after = ctx.build_ok(&o, &[]);
    assert_ne!(before, after, "a changed source must change the digest");
    let fresh = tempfile::tempdir().expect("tmp");
    assert_eq!(
        after,
        ctx.build_ok(&fresh.path().join("o"), &["--no-cache"]),
        "the cached build equals a fresh one"
    );
}

#[test]
fn a_stale_cache_entry_whose_blob_is_gone_is_rebuilt() {
    let ctx = corpus_ctx("022");
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let digest = ctx.build_ok(&o, &[]);
    for entry in fs::read_dir(o.join("blobs/sha256")).expect("blobs") {
        let p = entry.expect("entry").path();
        if fs::metadata(&p).expect("meta").len() > 1_000_000 {
            fs::remove_file(&p).expect("rm");
        }
    }
    assert_eq!(digest, ctx.build_ok(&o, &[]));
    let layout = common::Layout::new(&o);
    for layer in layout.layer_digests(&digest) {
        assert!(
            !layout.blob(&layer).is_empty(),
            "layer {layer} is back in the layout"
        );
    }
}
