//! `build --sbom` streams the document: the memory it adds to a build is a few dozen
//! bytes per file (the SHA-1 the verification code sorts, a layer's hardlink index),
//! not the document (the SBOM of 100k files once took 800 MB).
//!
//! Measured, not timed: the peak resident size of the imgbuild process (as the kernel
//! reports it to the parent, via python3's `resource.getrusage(RUSAGE_CHILDREN)`)
//! with and without `--sbom`, for a build of many small files. Each measurement runs
//! in its own python3 process, so no other child of the test counts.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

/// Peak RSS in KiB of `imgbuild ARGS…`, which must succeed.
fn peak_rss_kib(args: &[&str]) -> u64 {
    common::require_tool("python3");
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n\
                  sys.stderr.write(r.stderr.decode(errors='replace'))\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)\n";
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_imgbuild"))
        .args(args)
        .env("HOME", "/nonexistent/imgbuild-test-home")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&o.stdout);
    let kib: i64 = text.trim().parse().unwrap_or(-1);
    assert!(kib > 0, "imgbuild failed: {}", common::stderr(&o));
    kib as u64
}

#[test]
fn the_sbom_of_many_files_adds_a_few_bytes_of_memory_per_file() {
    const FILES: usize = 30_000;
    let dir = tempfile::tempdir().expect("tmp");
    let ctx = dir.path();
    for i in 0..FILES {
        let sub = ctx.join(format!("tree/{:03}", i % 300));
        if i < 300 {
            fs::create_dir_all(&sub).expect("mkdir");
        }
        fs::write(sub.join(format!("file-{i:06}.txt")), format!("{i}\n")).expect("write");
    }
    fs::write(
        ctx.join("recipe.toml"),
        "[[layer]]\nname = \"many\"\n[[layer.copy]]\nsrc = \"tree\"\ndst = \"/tree\"\n",
    )
    .expect("recipe");
    let recipe = ctx.join("recipe.toml");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "build",
            recipe.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        peak_rss_kib(&args)
    };
    let without = run(&ctx.join("out1"), &[]);
    let sbom = ctx.join("sbom.json");
    let with = run(&ctx.join("out2"), &["--sbom", sbom.to_str().expect("utf8")]);
    let listed = fs::read_to_string(&sbom)
        .expect("sbom")
        .matches("\"fileName\"")
        .count();
    assert_eq!(listed, FILES, "the SBOM lists every file");
    // Holding the document (or a JSON value per file) costs kilobytes per file:
    // over 200 MiB here. Streaming needs a few dozen bytes per file.
    let added = with.saturating_sub(without);
    assert!(
        added < 64 * 1024,
        "--sbom added {added} KiB of peak memory for {FILES} files ({without} KiB without it)"
    );
}
