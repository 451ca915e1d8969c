//! Test harness: temp build contexts, the real `imgbuild` binary, and readers for the
//! layouts it writes. Every test runs the binary the way a user would.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn imgbuild() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
    // Tests control the epoch themselves.
    c.env_remove("SOURCE_DATE_EPOCH");
    for (k, _) in std::env::vars() {
        if k.starts_with("IMGBUILD_") {
            c.env_remove(k);
        }
    }
    // Registry credentials come only from what a test sets up.
    for k in ["DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"] {
        c.env_remove(k);
    }
    c.env("HOME", "/nonexistent/imgbuild-test-home");
    c
}

/// A temporary build context with a recipe and sources.
pub struct Ctx {
    pub dir: tempfile::TempDir,
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn recipe(&self) -> PathBuf {
        self.path().join("recipe.toml")
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&p, content).expect("write");
        self
    }

    pub fn write_mode(&self, rel: &str, content: impl AsRef<[u8]>, mode: u32) -> &Self {
        self.write(rel, content);
        fs::set_permissions(self.path().join(rel), fs::Permissions::from_mode(mode))
            .expect("chmod");
        self
    }

    pub fn mkdir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.path().join(rel)).expect("mkdir");
        self
    }

    pub fn symlink(&self, target: &str, rel: &str) -> &Self {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }

    pub fn hardlink(&self, existing: &str, rel: &str) -> &Self {
        fs::hard_link(self.path().join(existing), self.path().join(rel)).expect("hardlink");
        self
    }

    pub fn recipe_text(&self, text: &str) -> &Self {
        self.write("recipe.toml", text)
    }

    /// Runs `imgbuild build` on this context's recipe into `out`.
    pub fn build(&self, out: &Path, args: &[&str]) -> Output {
        imgbuild()
            .arg("build")
            .arg(self.recipe())
            .arg("--out")
            .arg(out)
            .args(args)
            .output()
            .expect("run imgbuild")
    }

    /// Builds and returns the digest, failing the test with stderr on error.
    pub fn build_ok(&self, out: &Path, args: &[&str]) -> String {
        build_digest(&self.recipe(), out, args)
    }
}

/// Runs `imgbuild build RECIPE --out OUT ARGS…` and returns the digest it printed,
/// failing the test with its stderr on error.
pub fn build_digest(recipe: &Path, out: &Path, args: &[&str]) -> String {
    let o = imgbuild()
        .arg("build")
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let d = String::from_utf8(o.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(
        d.starts_with("sha256:") && d.len() == 71,
        "stdout is not a digest: {d:?}"
    );
    d
}

/// A layout written by imgbuild, read back with nothing but serde_json, flate2, zstd
/// and tar: independent of imgbuild's own types.
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        fs::read(self.root.join("blobs/sha256").join(hex)).expect("blob exists")
    }

    pub fn json(&self, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&self.blob(digest)).expect("json blob")
    }

    /// The manifest of a single-platform image digest.
    pub fn manifest(&self, digest: &str) -> serde_json::Value {
        self.json(digest)
    }

    pub fn config(&self, manifest_digest: &str) -> serde_json::Value {
        let m = self.manifest(manifest_digest);
        self.json(m["config"]["digest"].as_str().expect("config digest"))
    }

    pub fn layer_digests(&self, manifest_digest: &str) -> Vec<String> {
        let m = self.manifest(manifest_digest);
        m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect()
    }

    /// The uncompressed tar of a layer, whatever its compression.
    pub fn layer_tar(&self, digest: &str) -> Vec<u8> {
        let raw = self.blob(digest);
        let mut out = Vec::new();
        if raw.starts_with(&[0x1f, 0x8b]) {
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .expect("gunzip");
        } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            out = zstd::decode_all(&raw[..]).expect("unzstd");
        } else {
            out = raw;
        }
        out
    }

    /// Entries of a layer: (path, type, mode, uid, gid, mtime, link target or content).
    pub fn entries(&self, layer_digest: &str) -> Vec<TarEntry> {
        let tar = self.layer_tar(layer_digest);
        let mut a = tar::Archive::new(&tar[..]);
        a.entries()
            .expect("tar")
            .map(|e| {
                let mut e = e.expect("entry");
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("read entry");
                let h = e.header().clone();
                TarEntry {
                    path: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    kind: h.entry_type().as_byte() as char,
                    mode: h.mode().expect("mode"),
                    uid: e.header().uid().expect("uid"),
                    gid: e.header().gid().expect("gid"),
                    mtime: h.mtime().expect("mtime"),
                    link: e
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned()),
                    data,
                    uname: h.username_bytes().map(|b| b.to_vec()).unwrap_or_default(),
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TarEntry {
    pub path: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
    pub data: Vec<u8>,
    pub uname: Vec<u8>,
}

/// True when `tool` is on PATH. Tests that need an external tool fail (not skip)
/// when it is missing: the README's test command installs them.
pub fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed; run the test command from README.md, which installs it"
    );
}

/// Says that `test` was skipped on this machine and why: on stderr, and in the file
/// named by `IMGBUILD_SKIPPED_LOG`, which scripts/test.sh lists at the end of its run,
/// so that a skip never passes silently.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("IMGBUILD_SKIPPED_LOG") {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open IMGBUILD_SKIPPED_LOG {log:?}: {e}"));
        writeln!(f, "{line}").expect("write IMGBUILD_SKIPPED_LOG");
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic pseudo-random bytes (a 64-bit LCG), half text-like, half noise,
/// so that compressed output exercises both literal and match paths.
pub fn test_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    let words: [&[u8]; 8] = [
        b"layer ", b"digest ", b"blob ", b"tar ", b"recipe ", b"image ", b"\n", b"index ",
    ];
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if (x >> 60) < 8 {
            out.extend_from_slice(words[((x >> 33) % 8) as usize]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// One member for `make_tar`: path, file content (or None), link target (None for a
/// directory; a `hard:` prefix makes a hardlink).
pub type TarMember<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);

/// A tar archive (uncompressed) built with the tar crate, fixed metadata.
pub fn make_tar(entries: &[TarMember]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(123456);
        h.set_uid(7);
        h.set_gid(8);
        match (data, link) {
            (Some(d), _) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o640);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, path, *d).expect("append");
            }
            (None, Some(l)) if l.starts_with("hard:") => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, path, &l[5..]).expect("link");
            }
            (None, Some(l)) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, l).expect("symlink");
            }
            (None, None) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o750);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).expect("dir");
            }
        }
    }
    b.into_inner().expect("tar")
}
pub mod fake;
pub mod proxy;
pub mod registry;
pub mod token;

/// Runs `cmd` with a stdout whose reader is already gone (a pipe whose read end is
/// closed before the command starts), as `imgbuild … | head` is when `head` has quit:
/// every write to stdout fails with EPIPE, whatever its size. stderr is captured.
pub fn run_with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run imgbuild")
}
