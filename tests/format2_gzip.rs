//! Format 2 gzip layers are multi-member gzip streams (one member per 1 MiB block, see
//! docs/determinism.md). These tests prove that the readers real users have read
//! every member, and that the bytes are the same on every x86-64 CPU:
//!
//! - GNU gzip (`gzip -dc`) and Python's `gzip` module read the whole stream;
//! - Go's `compress/gzip` (what containerd, Docker, skopeo and most scanners use), in a
//!   tiny Go program built with Debian's `golang-go`;
//! - the compressors (gzip and zstd, formats 1 and 2), run under `qemu-x86_64 -cpu
//!   qemu64` (Debian's `qemu-user`: the baseline x86-64 CPU, no SSE4/AVX/PCLMUL/SHA),
//!   give the same bytes as on the host.
//!
//! - whole images whose gzip layer is format 2: `umoci unpack` extracts it, `skopeo
//!   copy … dir: --dest-decompress` decompresses it, and Docker (where a daemon
//!   answers) `docker load`s and runs it.
//!
//! `flate2`'s `MultiGzDecoder`, and that `GzDecoder` sees only the first member, are
//! covered by the unit tests in src/compress/gzip_members.rs.
//!
//! The Go, qemu and Docker tests skip when `go`, `qemu-x86_64` or a Docker daemon is
//! absent, saying so on stderr and in the file named by `IMGBUILD_SKIPPED_LOG`;
//! scripts/test.sh installs `golang-go` and `qemu-user`.

mod common;

use common::skip;

use imgbuild::compress::{Compression, Encoder};
use imgbuild::format::FormatVersion;
use std::fs;
use std::io::Read;
use std::io::Write;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// About 3.3 MiB (four members, the last one short) of text-like and random bytes
/// from a fixed seed.
fn input() -> Vec<u8> {
    let mut x: u64 = 0x1db_0002;
    let mut next = move || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let words: [&[u8]; 8] = [
        b"layer ",
        b"digest ",
        b"tar\n",
        b"usr/lib/",
        b"0644 ",
        b"{\"k\": 1}",
        b"the ",
        b"a",
    ];
    let mut out = Vec::new();
    while out.len() < 3_500_000 {
        if next() % 5 == 0 {
            for _ in 0..512 {
                out.extend_from_slice(&next().to_le_bytes());
            }
        } else {
            for _ in 0..2048 {
                out.extend_from_slice(words[(next() % 8) as usize]);
            }
        }
    }
    out.truncate(3_500_000);
    out
}

fn compress(kind: Compression, format: FormatVersion, data: &[u8]) -> Vec<u8> {
    let threads = NonZeroUsize::new(2).expect("not zero");
    let mut enc = Encoder::new(kind, format, Vec::new(), threads).expect("encoder");
    enc.write_all(data).expect("write");
    enc.finish().expect("finish")
}

fn format2(data: &[u8]) -> Vec<u8> {
    compress(Compression::Gzip, FormatVersion::V2, data)
}

fn write_stream(dir: &Path) -> (Vec<u8>, std::path::PathBuf) {
    let data = input();
    let path = dir.join("layer.tar.gz");
    fs::write(&path, format2(&data)).expect("write stream");
    (data, path)
}

fn output_of(cmd: &mut Command) -> Vec<u8> {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[test]
fn gnu_gzip_reads_every_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, path) = write_stream(dir.path());
    let got = output_of(Command::new("gzip").arg("-dc").arg(&path));
    assert!(
        got == data,
        "gzip -dc: {} bytes, want {}",
        got.len(),
        data.len()
    );
    // And `gzip -t` finds nothing wrong with the stream.
    output_of(Command::new("gzip").arg("-t").arg(&path));
}

#[test]
fn python_gzip_reads_every_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, path) = write_stream(dir.path());
    let got = output_of(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import gzip, sys\n\
         with gzip.open(sys.argv[1], 'rb') as f:\n    sys.stdout.buffer.write(f.read())",
            )
            .arg(&path),
    );
    assert!(
        got == data,
        "python gzip: {} bytes, want {}",
        got.len(),
        data.len()
    );
}

const GO_READER: &str = r#"package main

import (
	"compress/gzip"
	"io"
	"os"
)

// Decompresses os.Args[1] with compress/gzip's default (multistream) reader.
func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	r, err := gzip.NewReader(f)
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(os.Stdout, r); err != nil {
		panic(err)
	}
}
"#;

#[test]
fn go_compress_gzip_reads_every_member() {
    const NAME: &str = "go_compress_gzip_reads_every_member";
    if !have("go") {
        skip(NAME, "go is not installed (apt-get install golang-go)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, path) = write_stream(dir.path());
    let src = dir.path().join("gunzip.go");
    fs::write(&src, GO_READER).expect("write Go program");
    let got = output_of(
        Command::new("go")
            .arg("run")
            .arg(&src)
            .arg(&path)
            .env("GOCACHE", dir.path().join("gocache"))
            .env("GOPATH", dir.path().join("gopath"))
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPROXY", "off"),
    );
    assert!(
        got == data,
        "Go compress/gzip: {} bytes, want {}",
        got.len(),
        data.len()
    );
}

/// The hashes compared across CPUs: gzip and zstd, formats 1 and 2.
fn fingerprints() -> String {
    let data = input();
    let mut lines = String::new();
    for (name, kind, format) in [
        ("gzip format 2", Compression::Gzip, FormatVersion::V2),
        ("gzip format 1", Compression::Gzip, FormatVersion::V1),
        ("zstd format 2", Compression::Zstd, FormatVersion::V2),
        ("zstd format 1", Compression::Zstd, FormatVersion::V1),
    ] {
        let digest = imgbuild::digest::Digest::of(&compress(kind, format, &data));
        lines.push_str(&format!("{name}: {digest}\n"));
    }
    lines
}

/// Not a test on its own: what `compressor_bytes_are_the_same_on_the_baseline_cpu`
/// runs under qemu. Writes the fingerprints to the file named by
/// `IMGBUILD_QEMU_CHILD_OUT`.
#[test]
#[ignore = "run under qemu by compressor_bytes_are_the_same_on_the_baseline_cpu"]
fn qemu_child() {
    if let Some(out) = std::env::var_os("IMGBUILD_QEMU_CHILD_OUT") {
        fs::write(out, fingerprints()).expect("write fingerprints");
    }
}

#[test]
fn compressor_bytes_are_the_same_on_the_baseline_cpu() {
    const NAME: &str = "compressor_bytes_are_the_same_on_the_baseline_cpu";
    if !have("qemu-x86_64") {
        skip(
            NAME,
            "qemu-x86_64 is not installed (apt-get install qemu-user)",
        );
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        skip(NAME, "the host is not x86-64");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("fingerprints.txt");
    let exe = std::env::current_exe().expect("test executable");
    let o = Command::new("qemu-x86_64")
        .args(["-cpu", "qemu64"])
        .arg(&exe)
        .args(["--exact", "qemu_child", "--ignored", "--test-threads", "1"])
        .env("IMGBUILD_QEMU_CHILD_OUT", &out)
        .output()
        .expect("run qemu-x86_64");
    assert!(
        o.status.success(),
        "the compressor under qemu64 failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let emulated = fs::read_to_string(&out).expect("fingerprints from qemu");
    assert_eq!(emulated, fingerprints(), "qemu64 (left) vs host (right)");
}

// ---------------------------------------------------------------------------------
// Whole images with a format 2 layer
// ---------------------------------------------------------------------------------

const TAG: &str = "v1";
const GREETING: &str = "hello from a format 2 layer\n";

/// Builds an image holding Debian's static busybox, a greeting and `input()` as
/// `/data.bin` (so the layer spans several members), then rewrites its gzip layer in
/// format 2: decompressed and recompressed with format 2's encoder, the manifest and
/// index updated to the new digest and size. The tar, so the diff_id, is unchanged.
fn format_2_image(dir: &Path) -> PathBuf {
    common::require_tool("busybox");
    let busybox = fs::read("/bin/busybox").expect("read /bin/busybox (busybox-static)");
    let ctx = common::Ctx::new();
    ctx.write_mode("busybox", busybox, 0o755);
    ctx.write("data.bin", input());
    ctx.recipe_text(&format!(
        r#"
[image]
tags = ["{TAG}"]
platforms = ["linux/amd64"]
source-date-epoch = 1700000000
compression = "gzip"

[config]
cmd = ["/bin/sh"]
env = {{ PATH = "/bin" }}

[[layer]]
name = "all"

  [[layer.copy]]
  src = "busybox"
  dst = "/bin/busybox"

  [[layer.copy]]
  src = "data.bin"
  dst = "/data.bin"

  [[layer.symlink]]
  path = "/bin/sh"
  target = "busybox"

  [[layer.file]]
  path = "/etc/greeting"
  content = {GREETING:?}
"#
    ));
    let layout = dir.join("layout");
    ctx.build_ok(&layout, &[]);
    recompress_as_format_2(&layout);
    layout
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
}

/// Stores `bytes` as a blob; returns its digest.
fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = imgbuild::digest::Digest::of(bytes).to_string();
    fs::write(blob_path(layout, &digest), bytes).expect("write blob");
    digest
}

fn recompress_as_format_2(layout: &Path) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).expect("index.json")).expect("index JSON");
    let desc = &mut index["manifests"][0];
    let manifest_digest = desc["digest"]
        .as_str()
        .expect("manifest digest")
        .to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob_path(layout, &manifest_digest)).expect("manifest"))
            .expect("manifest JSON");
    let layers = manifest["layers"].as_array_mut().expect("layers");
    for layer in layers {
        assert!(
            layer["mediaType"]
                .as_str()
                .is_some_and(|m| m.ends_with("+gzip")),
            "a gzip layer: {layer}"
        );
        let old = fs::read(blob_path(layout, layer["digest"].as_str().expect("digest")))
            .expect("layer blob");
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&old[..])
            .read_to_end(&mut tar)
            .expect("format 1 layer decodes");
        let new = format2(&tar);
        assert!(
            new.len() > 2 * 1024 * 1024 / 3,
            "the layer spans several members"
        );
        layer["digest"] = put_blob(layout, &new).into();
        layer["size"] = new.len().into();
    }
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest bytes");
    desc["digest"] = put_blob(layout, &manifest_bytes).into();
    desc["size"] = manifest_bytes.len().into();
    fs::write(
        &index_path,
        serde_json::to_vec(&index).expect("index bytes"),
    )
    .expect("index");
}

#[test]
fn umoci_unpacks_a_format_2_layer() {
    common::require_tool("umoci");
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = format_2_image(dir.path());
    let bundle = dir.path().join("bundle");
    let mut cmd = Command::new("umoci");
    cmd.arg("unpack");
    // The owner of /proc/self is the effective uid of this process.
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        cmd.arg("--rootless");
    }
    output_of(
        cmd.arg("--image")
            .arg(format!("{}:{TAG}", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert!(fs::read(rootfs.join("data.bin")).expect("data.bin") == input());
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/greeting")).expect("greeting"),
        GREETING
    );
}

#[test]
fn skopeo_decompresses_a_format_2_layer_to_its_diff_id() {
    common::require_tool("skopeo");
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = format_2_image(dir.path());
    let out = dir.path().join("dir");
    output_of(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-decompress"])
            .arg(format!("oci:{}:{TAG}", layout.display()))
            .arg(format!("dir:{}", out.display())),
    );
    // The decompressed layer is stored under its digest, which must be the diff_id.
    let config: serde_json::Value = {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index"))
                .expect("index JSON");
        let m = index["manifests"][0]["digest"].as_str().expect("digest");
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(blob_path(&layout, m)).expect("manifest"))
                .expect("manifest JSON");
        let c = manifest["config"]["digest"]
            .as_str()
            .expect("config digest");
        serde_json::from_slice(&fs::read(blob_path(&layout, c)).expect("config"))
            .expect("config JSON")
    };
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().expect("diff_id");
    let hex = diff_id.strip_prefix("sha256:").expect("sha256");
    let tar = fs::read(out.join(hex)).expect("skopeo wrote the layer under its diff_id");
    assert_eq!(imgbuild::digest::Digest::of(&tar).to_string(), diff_id);
}

fn docker_daemon_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn docker_loads_and_runs_a_format_2_image_where_a_daemon_answers() {
    const NAME: &str = "docker_loads_and_runs_a_format_2_image_where_a_daemon_answers";
    if !docker_daemon_answers() {
        skip(NAME, "no Docker daemon answers (docker info failed)");
        return;
    }
    common::require_tool("skopeo");
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = format_2_image(dir.path());
    let image = format!("imgbuild-format2-test:t{}", std::process::id());
    let archive = dir.path().join("image.tar");
    output_of(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy"])
            .arg(format!("oci:{}:{TAG}", layout.display()))
            .arg(format!("docker-archive:{}:{image}", archive.display())),
    );
    output_of(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let run = Command::new("docker")
        .args(["run", "--rm", "--network", "none", &image])
        .args([
            "/bin/sh",
            "-c",
            "busybox cat /etc/greeting; busybox sha256sum /data.bin",
        ])
        .output();
    let _ = Command::new("docker")
        .args(["rmi", "--force", &image])
        .output();
    let run = run.expect("docker run");
    assert!(
        run.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let want_sum = imgbuild::digest::Digest::of(&input()).to_string();
    let want = format!(
        "{GREETING}{}  /data.bin\n",
        want_sum.strip_prefix("sha256:").expect("sha256")
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout), want);
}
