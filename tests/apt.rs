//! `[[apt-source]]` and `packages`: a real apt repository built here — packages made
//! with `dpkg-deb --build`, indexed with `apt-ftparchive`, signed with a throw-away
//! `gpg` key — served over plain HTTP on 127.0.0.1, locked with `imgbuild lock` and
//! built with `imgbuild build`.
//!
//! Needs `dpkg-deb`, `apt-ftparchive` (apt-utils), `gpg`, `xz` and `md5sum` on PATH
//! (scripts/test.sh installs them; a missing tool fails the test, as elsewhere).

mod common;

use common::fake::{respond, FakeServer};
use common::{imgbuild, require_tool, skip, stderr, Ctx, Layout};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCH: &str = "--source-date-epoch=1700000000";

/// One package of the test repository.
struct Pkg {
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    depends: &'static str,
    provides: &'static str,
    files: &'static [(&'static str, &'static str, u32)],
    postinst: bool,
    /// dpkg-deb's -Z: every compression imgbuild reads appears in the repository.
    compression: &'static str,
}

const fn pkg(name: &'static str, version: &'static str, arch: &'static str) -> Pkg {
    Pkg {
        name,
        version,
        arch,
        depends: "",
        provides: "",
        files: &[],
        postinst: false,
        compression: "xz",
    }
}

/// app needs libfoo ≥ 2, awk (mawk provides it) or mawk, and a mail-transport-agent
/// (exim provides it); legacy needs libfoo << 2.
fn packages() -> Vec<Pkg> {
    vec![
        Pkg {
            depends: "libfoo (>= 2), awk | mawk, mail-transport-agent",
            files: &[
                ("usr/bin/app", "#!/bin/sh\necho app\n", 0o755),
                ("etc/app.conf", "verbose = false\n", 0o644),
            ],
            postinst: true,
            ..pkg("app", "1.0-1", "amd64")
        },
        Pkg {
            depends: "libfoo (<< 2)",
            files: &[("usr/bin/legacy", "legacy\n", 0o755)],
            ..pkg("legacy", "0.9", "amd64")
        },
        Pkg {
            files: &[("usr/lib/libfoo.so.1", "libfoo one\n", 0o644)],
            ..pkg("libfoo", "1.5", "amd64")
        },
        Pkg {
            files: &[("usr/lib/libfoo.so.2", "libfoo two\n", 0o644)],
            ..pkg("libfoo", "2.0", "amd64")
        },
        Pkg {
            provides: "awk",
            files: &[("usr/bin/mawk", "mawk\n", 0o755)],
            compression: "zstd",
            ..pkg("mawk", "1.3.4", "amd64")
        },
        Pkg {
            provides: "mail-transport-agent",
            files: &[("usr/share/exim/README", "exim\n", 0o644)],
            compression: "gzip",
            ..pkg("exim", "4.96", "all")
        },
        Pkg {
            files: &[("usr/bin/tool", "tool for arm64\n", 0o755)],
            ..pkg("armonly", "1", "arm64")
        },
        Pkg {
            files: &[("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)],
            ..pkg("passwd-shipper", "1", "all")
        },
        Pkg {
            depends: "halfway",
            ..pkg("broken-app", "1", "amd64")
        },
        Pkg {
            depends: "missing-lib (>= 1) | other-missing",
            ..pkg("halfway", "1", "amd64")
        },
    ]
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("run tool");
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A gpg home with one fresh signing key.
struct Key {
    home: tempfile::TempDir,
}

impl Key {
    fn new() -> Key {
        require_tool("gpg");
        let home = tempfile::Builder::new()
            .prefix("g")
            .tempdir_in("/tmp")
            .expect("gpg home");
        fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let key = Key { home };
        run(key.gpg().args([
            "--quick-gen-key",
            "imgbuild test repository <repo@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]));
        key
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(self.home.path()).args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    }

    fn export(&self, armored: bool) -> Vec<u8> {
        let mut c = self.gpg();
        if armored {
            c.arg("--armor");
        }
        run(c.arg("--export")).stdout
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// A signed apt repository on disk, served on 127.0.0.1.
struct Repo {
    root: tempfile::TempDir,
    key: Key,
    server: FakeServer,
}

impl Repo {
    fn new() -> Repo {
        for tool in ["dpkg-deb", "apt-ftparchive", "xz", "md5sum"] {
            require_tool(tool);
        }
        let root = tempfile::tempdir().expect("repo dir");
        for p in packages() {
            make_deb(root.path(), &p);
        }
        Repo::serving(root)
    }

    /// A repository of the given `.deb` files only.
    fn of_debs(debs: &[PathBuf]) -> Repo {
        for tool in ["apt-ftparchive", "xz"] {
            require_tool(tool);
        }
        let root = tempfile::tempdir().expect("repo dir");
        let pool = root.path().join("debian/pool/main");
        fs::create_dir_all(&pool).expect("mkdir pool");
        for deb in debs {
            fs::copy(deb, pool.join(deb.file_name().expect("file name"))).expect("copy .deb");
        }
        Repo::serving(root)
    }

    fn serving(root: tempfile::TempDir) -> Repo {
        let repo = Repo {
            server: file_server(root.path().to_path_buf()),
            root,
            key: Key::new(),
        };
        repo.index();
        repo
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn url(&self) -> String {
        format!("http://{}/debian", self.server.host())
    }

    /// Writes the Packages indexes, Release, InRelease and Release.gpg.
    fn index(&self) {
        self.write_packages();
        self.write_release();
    }

    /// The Packages index of `arch`, as written by `write_packages`.
    fn packages_index(&self, arch: &str) -> PathBuf {
        self.path(&format!("debian/dists/stable/main/binary-{arch}/Packages"))
    }

    fn write_packages(&self) {
        let dists = self.path("debian/dists/stable");
        for arch in ["amd64", "arm64"] {
            let dir = dists.join(format!("main/binary-{arch}"));
            fs::create_dir_all(&dir).expect("mkdir");
            let out = run(Command::new("apt-ftparchive")
                .current_dir(self.path("debian"))
                .args(["--arch", arch, "packages", "pool"]))
            .stdout;
            fs::write(dir.join("Packages"), out).expect("write Packages");
            run(Command::new("xz").arg("-kf").arg(dir.join("Packages")));
        }
    }

    /// Release (from the Packages files as they are now), signed.
    fn write_release(&self) {
        let dists = self.path("debian/dists/stable");
        let release = run(Command::new("apt-ftparchive").current_dir(&dists).args([
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64 arm64",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "release",
            ".",
        ]))
        .stdout;
        fs::write(dists.join("Release"), release).expect("write Release");
        self.sign(&self.key);
    }

    /// Signs Release (again) with `key`.
    fn sign(&self, key: &Key) {
        let dists = self.path("debian/dists/stable");
        for f in ["InRelease", "Release.gpg"] {
            let _ = fs::remove_file(dists.join(f));
        }
        run(key
            .gpg()
            .arg("--clearsign")
            .arg("-o")
            .arg(dists.join("InRelease"))
            .arg(dists.join("Release")));
        run(key
            .gpg()
            .arg("--detach-sign")
            .arg("-o")
            .arg(dists.join("Release.gpg"))
            .arg(dists.join("Release")));
    }

    /// The .deb file of a package in the pool.
    fn deb(&self, name: &str, version: &str, arch: &str) -> PathBuf {
        self.path(&format!("debian/pool/main/{name}_{version}_{arch}.deb"))
    }
}

/// Builds one package with dpkg-deb into the pool.
fn make_deb(root: &Path, p: &Pkg) {
    let stage = root.join("stage").join(format!("{}_{}", p.name, p.version));
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian).expect("mkdir");
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <test@example.invalid>\n",
        p.name, p.version, p.arch
    );
    for (k, v) in [("Depends", p.depends), ("Provides", p.provides)] {
        if !v.is_empty() {
            control.push_str(&format!("{k}: {v}\n"));
        }
    }
    control.push_str(&format!(
        "Description: test package {}\n for imgbuild's tests\n",
        p.name
    ));
    fs::write(debian.join("control"), control).expect("control");
    let mut md5sums = String::new();
    for (path, content, mode) in p.files {
        let f = stage.join(path);
        fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        fs::write(&f, content).expect("file");
        fs::set_permissions(&f, fs::Permissions::from_mode(*mode)).expect("chmod");
        let sum = run(Command::new("md5sum").arg(&f)).stdout;
        let sum = String::from_utf8_lossy(&sum);
        let hex = sum.split_whitespace().next().expect("md5");
        md5sums.push_str(&format!("{hex}  {path}\n"));
    }
    if !md5sums.is_empty() {
        fs::write(debian.join("md5sums"), md5sums).expect("md5sums");
    }
    if p.postinst {
        fs::write(debian.join("postinst"), "#!/bin/sh\nexit 0\n").expect("postinst");
        fs::set_permissions(debian.join("postinst"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    // Directories get a fixed mode whatever the umask.
    let mut dirs = vec![stage.clone()];
    while let Some(d) = dirs.pop() {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        for e in fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                dirs.push(e.path());
            }
        }
    }
    let pool = root.join("debian/pool/main");
    fs::create_dir_all(&pool).expect("mkdir");
    run(Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("--root-owner-group")
        .arg(format!("-Z{}", p.compression))
        .arg("--build")
        .arg(&stage)
        .arg(pool.join(format!("{}_{}_{}.deb", p.name, p.version, p.arch))));
}

/// A plain-HTTP server on 127.0.0.1 (the tests' scripted server) serving `root` as
/// it is on disk at each request, so that a test can change the repository between
/// two commands.
fn file_server(root: PathBuf) -> FakeServer {
    FakeServer::start(move |req, out| {
        let path = req.target.trim_start_matches('/');
        match (!path.contains(".."))
            .then(|| fs::read(root.join(path)).ok())
            .flatten()
        {
            Some(bytes) => respond(out, 200, &[], &bytes),
            None => respond(out, 404, &[], b"not found\n"),
        }
    })
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// A context whose recipe takes `packages` from `repo`, trusting `keyring`.
fn context(repo: &Repo, packages: &[&str], keyring: &[u8]) -> Ctx {
    let ctx = Ctx::new();
    ctx.write("keys/repo.gpg", keyring);
    let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
    ctx.recipe_text(&format!(
        r#"[image]
platforms = ["linux/amd64"]

[[apt-source]]
url = "{}"
suite = "stable"
components = ["main"]
signed-by = "keys/repo.gpg"

[[layer]]
name = "system"
packages = [{}]
"#,
        repo.url(),
        list.join(", ")
    ));
    ctx
}

fn lock(ctx: &Ctx) -> Output {
    imgbuild()
        .arg("lock")
        .arg(ctx.recipe())
        .output()
        .expect("run imgbuild lock")
}

fn lock_ok(ctx: &Ctx) -> toml::Value {
    let o = lock(ctx);
    assert!(o.status.success(), "lock failed: {}", stderr(&o));
    let text = fs::read_to_string(ctx.path().join("recipe.lock")).expect("recipe.lock");
    toml::from_str(&text).expect("lock is TOML")
}

/// `name=version/arch` of every package pin.
fn pinned(lock: &toml::Value) -> Vec<String> {
    lock["package"]
        .as_array()
        .expect("package pins")
        .iter()
        .map(|p| {
            format!(
                "{}={}/{}",
                p["name"].as_str().expect("name"),
                p["version"].as_str().expect("version"),
                p["architecture"].as_str().expect("arch")
            )
        })
        .collect()
}

fn assert_refused(o: &Output, ctx: &Ctx, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    assert!(stderr(o).contains(needle), "stderr: {}", stderr(o));
    assert!(
        !ctx.path().join("recipe.lock").exists(),
        "recipe.lock was written"
    );
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn lock_pins_the_closure_with_alternatives_and_provides() {
    let repo = Repo::new();
    let ctx = context(&repo, &["app"], &repo.key.export(false));
    let lock = lock_ok(&ctx);
    assert_eq!(
        pinned(&lock),
        [
            "app=1.0-1/amd64",
            "exim=4.96/all",
            "libfoo=2.0/amd64",
            "mawk=1.3.4/amd64"
        ]
    );
    let app = &lock["package"][0];
    assert_eq!(app["layer"].as_str(), Some("system"));
    assert_eq!(app["platform"].as_str(), Some("linux/amd64"));
    assert_eq!(
        app["filename"].as_str(),
        Some("pool/main/app_1.0-1_amd64.deb")
    );
    let deb = fs::read(repo.deb("app", "1.0-1", "amd64")).expect("deb");
    assert_eq!(app["sha256"].as_str(), Some(sha256_hex(&deb).as_str()));
}

#[test]
fn a_version_relation_rules_a_candidate_out() {
    let repo = Repo::new();
    let ctx = context(&repo, &["legacy"], &repo.key.export(true));
    assert_eq!(
        pinned(&lock_ok(&ctx)),
        ["legacy=0.9/amd64", "libfoo=1.5/amd64"]
    );
}

#[test]
fn an_unknown_package_is_named_with_the_nearest_names() {
    let repo = Repo::new();
    let ctx = context(&repo, &["libfo"], &repo.key.export(false));
    let o = lock(&ctx);
    assert_refused(&o, &ctx, "package \"libfo\" is not in the apt sources");
    assert!(stderr(&o).contains("libfoo"), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("recipe.toml:"),
        "stderr: {}",
        stderr(&o)
    );
}

/// `awk` is only provided (by mawk): a lock would pin mawk, which the build could
/// never match to the name the layer lists, so lock refuses it and names mawk.
#[test]
fn a_virtual_package_name_is_refused_naming_its_providers() {
    let repo = Repo::new();
    let ctx = context(&repo, &["awk"], &repo.key.export(false));
    let o = lock(&ctx);
    assert_refused(&o, &ctx, "package \"awk\" is a virtual package");
    assert!(stderr(&o).contains("mawk"), "stderr: {}", stderr(&o));
}

#[test]
fn an_unsigned_release_is_refused() {
    let repo = Repo::new();
    for f in ["InRelease", "Release.gpg"] {
        fs::remove_file(repo.path(&format!("debian/dists/stable/{f}"))).expect("rm");
    }
    let ctx = context(&repo, &["app"], &repo.key.export(false));
    assert_refused(&lock(&ctx), &ctx, "is not signed");
}

#[test]
fn a_release_signed_by_another_key_is_refused() {
    let repo = Repo::new();
    let other = Key::new();
    let ctx = context(&repo, &["app"], &other.export(false));
    assert_refused(&lock(&ctx), &ctx, "does not verify with any key");
    // The detached signature is checked the same way.
    fs::remove_file(repo.path("debian/dists/stable/InRelease")).expect("rm");
    assert_refused(&lock(&ctx), &ctx, "does not verify with any key");
}

#[test]
fn a_signed_release_of_another_suite_is_refused() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    // The same signed files, served as if they were suite "testing".
    fs::rename(
        repo.path("debian/dists/stable"),
        repo.path("debian/dists/testing"),
    )
    .expect("mv");
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&text.replace("suite = \"stable\"", "suite = \"testing\""));
    assert_refused(&lock(&ctx), &ctx, "is for suite stable");
}

#[test]
fn a_detached_signature_is_accepted() {
    let repo = Repo::new();
    fs::remove_file(repo.path("debian/dists/stable/InRelease")).expect("rm");
    let ctx = context(&repo, &["mawk"], &repo.key.export(true));
    assert_eq!(pinned(&lock_ok(&ctx)), ["mawk=1.3.4/amd64"]);
}

#[test]
fn a_tampered_release_or_index_is_refused() {
    let repo = Repo::new();
    let ctx = context(&repo, &["app"], &repo.key.export(false));
    // A signed text changed after signing.
    let in_release = repo.path("debian/dists/stable/InRelease");
    let text = fs::read_to_string(&in_release).expect("InRelease");
    fs::write(
        &in_release,
        text.replacen("Suite: stable", "Suite: stabl3", 1),
    )
    .expect("write");
    assert_refused(&lock(&ctx), &ctx, "does not verify with any key");
    // A Packages index that is not the one the signed Release lists.
    repo.sign(&repo.key);
    let packages = repo.path("debian/dists/stable/main/binary-amd64/Packages.xz");
    let mut bytes = fs::read(&packages).expect("Packages.xz");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&packages, bytes).expect("write");
    assert_refused(&lock(&ctx), &ctx, "the signed Release says");
}

#[test]
fn a_build_installs_the_packages_and_their_status() {
    let repo = Repo::new();
    let ctx = context(&repo, &["app"], &repo.key.export(false));
    lock_ok(&ctx);
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH]);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("postinst").count(),
        1,
        "one note about maintainer scripts: {err}"
    );
    assert!(err.contains("app"), "stderr: {err}");
    let digest = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let layout = Layout::new(&out);
    let layers = layout.layer_digests(&digest);
    let entries = layout.entries(&layers[0]);
    let find = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p} missing from {:?}", names(&entries)))
    };
    let app = find("usr/bin/app");
    assert_eq!(
        (app.mode, app.uid, app.gid, app.mtime),
        (0o755, 0, 0, 1700000000)
    );
    assert_eq!(app.data, b"#!/bin/sh\necho app\n");
    assert_eq!(find("usr/lib/libfoo.so.2").mode, 0o644);
    let status = String::from_utf8_lossy(&find("var/lib/dpkg/status.d/app").data).to_string();
    assert!(
        status.starts_with("Package: app\nStatus: install ok installed\nVersion: 1.0-1\n"),
        "{status}"
    );
    let md5sums =
        String::from_utf8_lossy(&find("var/lib/dpkg/status.d/app.md5sums").data).to_string();
    assert!(md5sums.contains("  usr/bin/app\n"), "{md5sums}");
    assert!(entries.iter().all(|e| !e.path.contains("DEBIAN")));
    assert!(entries.iter().all(|e| !e.path.contains("libfoo.so.1")));
}

/// The same packages give the same image, and each format version's bytes are
/// pinned: a change to them is a new format version (CHANGELOG.md).
#[test]
fn package_layers_are_reproducible_and_pinned_by_a_golden_digest() {
    let repo = Repo::new();
    let ctx = context(&repo, &["app"], &repo.key.export(false));
    lock_ok(&ctx);
    let first = ctx.build_ok(&ctx.path().join("out1"), &[EPOCH, "--locked"]);
    let second = ctx.build_ok(&ctx.path().join("out2"), &[EPOCH, "--locked"]);
    assert_eq!(first, second);
    assert_eq!(first, GOLDEN_APP_FORMAT_2);
    let v1 = ctx.build_ok(&ctx.path().join("out3"), &[EPOCH, "--format-version", "1"]);
    assert_eq!(v1, GOLDEN_APP_FORMAT_1);
}

const GOLDEN_APP_FORMAT_2: &str =
    "sha256:d9235e3240710902c39160d1a3aea7f89e8cdbb0ed6d76819e56fdb6157b5e87";
const GOLDEN_APP_FORMAT_1: &str =
    "sha256:2ca5fd04e04ba68086adf14ce70dfb4d4bc69d9aded6b5a2fa7705d570ae31cf";

#[test]
fn a_second_build_downloads_nothing() {
    let repo = Repo::new();
    let ctx = context(&repo, &["app"], &repo.key.export(false));
    lock_ok(&ctx);
    let out = ctx.path().join("out");
    let first = ctx.build_ok(&out, &[EPOCH, "--locked"]);
    let debs = || {
        let seen = repo.server.requests();
        seen.iter().filter(|r| r.target.ends_with(".deb")).count()
    };
    assert_eq!(debs(), 4);
    // Without the layer cache: every package is read again, from the download cache.
    let second = ctx.build_ok(&out, &[EPOCH, "--locked", "--no-cache"]);
    assert_eq!(first, second);
    assert_eq!(debs(), 4);
}

#[test]
fn a_tampered_deb_is_refused_naming_the_package() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    lock_ok(&ctx);
    // Another valid package under the pinned file name.
    fs::copy(
        repo.deb("libfoo", "2.0", "amd64"),
        repo.deb("mawk", "1.3.4", "amd64"),
    )
    .expect("swap deb");
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("package mawk 1.3.4"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists());
}

#[test]
fn an_unreachable_deb_is_an_io_failure() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    lock_ok(&ctx);
    fs::remove_file(repo.deb("mawk", "1.3.4", "amd64")).expect("rm");
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH]);
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("mawk_1.3.4_amd64.deb"),
        "{}",
        stderr(&o)
    );
    // A mirror drops old versions: the message names the package and how to re-pin.
    assert!(
        stderr(&o).contains("Debian package mawk 1.3.4"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("imgbuild lock"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists());
}

#[test]
fn a_package_layer_without_a_lock_asks_for_imgbuild_lock() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("imgbuild lock"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists());
}

fn names(entries: &[common::TarEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An ar member: 60-byte header, data, padding to an even length.
fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(
        format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            "100644",
            data.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
}

/// A tar of one entry with a raw name (no checks) and `kind`.
fn raw_tar(name: &[u8], kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).expect("append");
    b.into_inner().expect("tar")
}

/// A hand-made package whose data.tar holds one hostile entry.
fn hostile_deb(name: &str, entry: &[u8], kind: tar::EntryType) -> Vec<u8> {
    let control = format!(
        "Package: {name}\nVersion: 1\nArchitecture: amd64\nMaintainer: T <t@example.invalid>\nDescription: hostile\n"
    );
    let mut deb = b"!<arch>\n".to_vec();
    ar_member(&mut deb, "debian-binary", b"2.0\n");
    ar_member(
        &mut deb,
        "control.tar",
        &raw_tar(b"./control", tar::EntryType::Regular, control.as_bytes()),
    );
    ar_member(&mut deb, "data.tar", &raw_tar(entry, kind, b"owned\n"));
    deb
}

#[test]
fn a_hostile_package_is_refused_before_anything_is_written() {
    let repo = Repo::new();
    let cases = [
        (
            "escape",
            &b"./../../etc/cron.d/evil"[..],
            tar::EntryType::Regular,
            "contains '..'",
        ),
        (
            "device",
            &b"./dev/evil"[..],
            tar::EntryType::Char,
            "of a kind imgbuild does not put in images",
        ),
    ];
    for (name, entry, kind, _) in &cases {
        fs::write(
            repo.path(&format!("debian/pool/main/{name}_1_amd64.deb")),
            hostile_deb(name, entry, *kind),
        )
        .expect("write deb");
    }
    repo.index();
    for (name, _, _, message) in cases {
        let ctx = context(&repo, &[name], &repo.key.export(false));
        lock_ok(&ctx);
        let out = ctx.path().join("out");
        let o = ctx.build(&out, &[EPOCH]);
        assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("package {name} 1")),
            "{}",
            stderr(&o)
        );
        assert!(!out.join("index.json").exists());
    }
}

/// A data.tar.xz whose stream asks for more memory to decode than imgbuild allows
/// (a 256 MiB dictionary: an xz bomb's way to exhaust memory) is refused, not
/// decoded.
#[test]
fn an_xz_member_that_needs_too_much_memory_is_refused() {
    let repo = Repo::new();
    let tar = raw_tar(b"./usr/share/doc/big", tar::EntryType::Regular, b"owned\n");
    let mut child = Command::new("xz")
        .args(["--lzma2=dict=256MiB,mf=hc3", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("xz");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&tar)
        .expect("write tar");
    let xz = child.wait_with_output().expect("xz output");
    assert!(xz.status.success());
    let control = "Package: bomb\nVersion: 1\nArchitecture: amd64\nMaintainer: T <t@example.invalid>\nDescription: bomb\n";
    let mut deb = b"!<arch>\n".to_vec();
    ar_member(&mut deb, "debian-binary", b"2.0\n");
    ar_member(
        &mut deb,
        "control.tar",
        &raw_tar(b"./control", tar::EntryType::Regular, control.as_bytes()),
    );
    ar_member(&mut deb, "data.tar.xz", &xz.stdout);
    fs::write(repo.path("debian/pool/main/bomb_1_amd64.deb"), deb).expect("write deb");
    repo.index();
    let ctx = context(&repo, &["bomb"], &repo.key.export(false));
    lock_ok(&ctx);
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("data.tar.xz"), "{}", stderr(&o));
    assert!(stderr(&o).contains("memory"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists());
}

/// recipe.lock is input too: a pin whose sha256 is a path (it names a file of the
/// download cache), whose filename leaves the pool or whose name is not a package
/// name is refused before anything is fetched, written or removed.
#[test]
fn a_hostile_lock_is_refused_before_anything_is_touched() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    let lock = lock_ok(&ctx);
    let sha = lock["package"][0]["sha256"]
        .as_str()
        .expect("sha256")
        .to_string();
    let filename = lock["package"][0]["filename"]
        .as_str()
        .expect("filename")
        .to_string();
    let victim = ctx.path().join("victim");
    fs::write(&victim, "keep me\n").expect("victim");
    let text = fs::read_to_string(ctx.path().join("recipe.lock")).expect("lock");
    for (what, from, to) in [
        ("sha256", sha.clone(), victim.display().to_string()),
        ("sha256", sha.clone(), "../../victim".to_string()),
        (
            "filename",
            filename.clone(),
            "../../../etc/passwd".to_string(),
        ),
        ("filename", filename, "pool/%2e%2e/%2e%2e/x.deb".to_string()),
        ("name", "\"mawk\"".to_string(), "\"../../x\"".to_string()),
    ] {
        fs::write(ctx.path().join("recipe.lock"), text.replacen(&from, &to, 1)).expect("lock");
        let out = ctx.path().join("out");
        let o = ctx.build(&out, &[EPOCH, "--locked"]);
        assert_eq!(o.status.code(), Some(2), "{what} {to}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("recipe.lock"),
            "{what} {to}: {}",
            stderr(&o)
        );
        assert!(!out.exists(), "{what} {to}: --out was written");
        assert_eq!(fs::read(&victim).expect("victim"), b"keep me\n");
    }
}

/// A Packages index (signed and hash-checked, so a hostile repository's own) that
/// names a package `../../etc/x` is refused: the name would become a path of the
/// package database in the layer.
#[test]
fn an_index_with_a_path_for_a_package_name_is_refused() {
    let repo = Repo::new();
    repo.write_packages();
    let index = repo.packages_index("amd64");
    let mut text = fs::read_to_string(&index).expect("Packages");
    text.push_str(&format!(
        "\nPackage: ../../etc/x\nVersion: 1\nArchitecture: amd64\nFilename: pool/main/x.deb\nSize: 1\nSHA256: {}\n",
        "a".repeat(64)
    ));
    fs::write(&index, text).expect("Packages");
    fs::remove_file(index.with_extension("xz")).expect("remove Packages.xz");
    repo.write_release();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    let o = lock(&ctx);
    assert_refused(&o, &ctx, "not a Debian package name");
}

#[test]
fn a_lock_for_other_packages_is_stale() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    lock_ok(&ctx);
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&text.replace("\"mawk\"", "\"mawk\", \"libfoo\""));
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH, "--locked"]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("imgbuild lock"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists());
    let check = imgbuild()
        .args(["lock", "--check"])
        .arg(ctx.recipe())
        .output()
        .expect("lock --check");
    assert_eq!(check.status.code(), Some(1), "stderr: {}", stderr(&check));
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(stdout.contains("package libfoo"), "{stdout}");
}

/// Pins resolved from one suite are not used for another: changing the suite (or
/// url, or components) of the `[[apt-source]]` makes the lock stale.
#[test]
fn a_lock_from_another_suite_is_stale() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    lock_ok(&ctx);
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&text.replace("suite = \"stable\"", "suite = \"testing\""));
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH, "--locked"]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("suite stable"), "{}", stderr(&o));
    assert!(stderr(&o).contains("suite testing"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists());
}

/// spdx-tools' full SPDX 2.3 validation (as in tests/provenance.rs).
const CHECK_SPDX: &str = r#"
import sys
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
msgs = validate_full_spdx_document(parse_file(sys.argv[1]), "SPDX-2.3")
for m in msgs:
    print(m.validation_message, m.context)
sys.exit(1 if msgs else 0)
"#;

#[test]
fn sbom_and_provenance_list_every_package_with_its_purl() {
    let python = std::env::var("IMGBUILD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_tools = Command::new(&python)
        .args(["-c", "import spdx_tools"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_tools,
        "{python} cannot `import spdx_tools`; run the tests with `bash scripts/test.sh`, which \
         installs it into a venv, or set IMGBUILD_TEST_PYTHON to a python that has it"
    );
    let repo = Repo::new();
    let ctx = context(&repo, &["app"], &repo.key.export(false));
    lock_ok(&ctx);
    let (sbom, provenance) = (ctx.path().join("sbom.json"), ctx.path().join("prov.json"));
    let o = ctx.build(
        &ctx.path().join("out"),
        &[
            EPOCH,
            "--sbom",
            sbom.to_str().expect("utf8"),
            "--provenance",
            provenance.to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&sbom).expect("sbom")).expect("json");
    let purls: Vec<&str> = doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .filter(|p| p.starts_with("pkg:deb/"))
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/app@1.0-1?arch=amd64",
            "pkg:deb/debian/exim@4.96?arch=all",
            "pkg:deb/debian/libfoo@2.0?arch=amd64",
            "pkg:deb/debian/mawk@1.3.4?arch=amd64"
        ]
    );
    let check = Command::new(&python)
        .args(["-c", CHECK_SPDX])
        .arg(&sbom)
        .output()
        .expect("run python with spdx-tools (scripts/test.sh installs it)");
    assert!(
        check.status.success(),
        "spdx-tools refused the SBOM: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let statement: serde_json::Value =
        serde_json::from_slice(&fs::read(&provenance).expect("provenance")).expect("json");
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("deps");
    let app = deps
        .iter()
        .find(|d| d["name"] == "pkg:deb/debian/app@1.0-1?arch=amd64")
        .expect("app in the provenance");
    assert_eq!(app["annotations"]["imgbuild.role"], "package");
    assert_eq!(
        app["uri"].as_str(),
        Some(format!("{}/pool/main/app_1.0-1_amd64.deb", repo.url()).as_str())
    );
}

#[test]
fn an_arch_all_package_is_pinned_once_per_platform_and_built_for_both() {
    let repo = Repo::new();
    let ctx = context(&repo, &["exim"], &repo.key.export(false));
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&text.replace(
        "platforms = [\"linux/amd64\"]",
        "platforms = [\"linux/amd64\", \"linux/arm64\"]",
    ));
    let pins = lock_ok(&ctx);
    let platforms: Vec<&str> = pins["package"]
        .as_array()
        .expect("pins")
        .iter()
        .map(|p| p["platform"].as_str().expect("platform"))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    ctx.build_ok(&ctx.path().join("out"), &[EPOCH, "--locked"]);
    // armonly exists for arm64 only.
    let ctx = context(&repo, &["armonly"], &repo.key.export(false));
    let o = lock(&ctx);
    assert_refused(&o, &ctx, "is not in the apt sources for linux/amd64");
}

#[test]
fn the_recipes_accounts_are_merged_into_a_packages_passwd() {
    let repo = Repo::new();
    let ctx = context(&repo, &["passwd-shipper"], &repo.key.export(false));
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&format!(
        "{text}\n[[user]]\nname = \"app\"\nuid = 1000\n\n[[user]]\nname = \"root\"\nuid = 0\nshell = \"/bin/bash\"\n"
    ));
    lock_ok(&ctx);
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[EPOCH]);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let digest = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let layout = Layout::new(&out);
    let layers = layout.layer_digests(&digest);
    // The accounts layer first, then the package layer, whose /etc/passwd has both.
    let entries = layout.entries(&layers[1]);
    let passwd = entries
        .iter()
        .find(|e| e.path == "etc/passwd")
        .expect("the package's /etc/passwd");
    let passwd = String::from_utf8_lossy(&passwd.data).to_string();
    assert!(passwd.contains("\napp:x:1000:1000:"), "{passwd}");
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
}

#[test]
fn diff_names_a_package_version_change() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk"], &repo.key.export(false));
    lock_ok(&ctx);
    let (old, new) = (ctx.path().join("old"), ctx.path().join("new"));
    ctx.build_ok(&old, &[EPOCH]);
    make_deb(
        repo.root.path(),
        &Pkg {
            provides: "awk",
            files: &[("usr/bin/mawk", "mawk, newer\n", 0o755)],
            ..pkg("mawk", "1.3.4-2", "amd64")
        },
    );
    repo.index();
    lock_ok(&ctx);
    ctx.build_ok(&new, &[EPOCH]);
    let o = imgbuild()
        .arg("diff")
        .arg(format!("oci:{}", old.display()))
        .arg(format!("oci:{}", new.display()))
        .output()
        .expect("run imgbuild diff");
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("package mawk 1.3.4 amd64 → mawk 1.3.4-2 amd64"),
        "{text}"
    );
}

#[test]
fn an_unmet_dependency_names_the_package_and_what_needed_it() {
    let repo = Repo::new();
    let ctx = context(&repo, &["mawk", "broken-app"], &repo.key.export(false));
    let o = lock(&ctx);
    assert_refused(
        &o,
        &ctx,
        "halfway 1 (needed by broken-app) depends on missing-lib (>= 1) | other-missing",
    );
    assert!(
        stderr(&o).contains("has no package missing-lib"),
        "{}",
        stderr(&o)
    );
    // The caret is under the name the recipe lists.
    assert!(stderr(&o).contains("recipe.toml:12:21"), "{}", stderr(&o));
}

/// Debian's own signed Release files, as `apt-get update` left them on this machine,
/// verify with Debian's archive keyring through the same code as `imgbuild lock`
/// (RSA keys, several signatures, subkeys). Nothing is fetched: where the files are
/// not there, the test says it was skipped.
#[test]
fn debians_own_inrelease_verifies_with_the_debian_archive_keyring() {
    use imgbuild::apt::{control, release};
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    let lists: Vec<PathBuf> = fs::read_dir("/var/lib/apt/lists")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_string_lossy().to_string());
                    name.is_some_and(|n| {
                        n.starts_with("deb.debian.org_debian_dists_") && n.ends_with("_InRelease")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if !keyring.is_file() || lists.is_empty() {
        eprintln!(
            "skipped: no Debian InRelease in /var/lib/apt/lists or no {}",
            keyring.display()
        );
        return;
    }
    let ring = release::Keyring::parse(&fs::read(keyring).expect("keyring")).expect("keyring");
    for list in lists {
        let bytes = fs::read(&list).expect("InRelease");
        let text = release::verify_inline(&bytes, &ring)
            .unwrap_or_else(|e| panic!("{}: {e}", list.display()));
        let paragraph = control::parse(&text).expect("deb822")[0].clone();
        let suite = paragraph.get("Suite").expect("Suite");
        let files = release::index_files(&text, suite).expect("index files");
        assert!(!files.is_empty(), "{}", list.display());
        // Changed after signing: refused.
        let tampered = String::from_utf8_lossy(&bytes).replacen(suite, "tampered", 1);
        assert!(release::verify_inline(tampered.as_bytes(), &ring).is_err());
    }
}

/// Real Debian packages: `ca-certificates`, `tzdata`, `libc6` and `coreutils` with all they
/// depend on, fetched by scripts/test.sh with `apt-get download` into the directory
/// `IMGBUILD_TEST_DEBIAN_DEBS` names, served from the loopback repository, build the
/// bundled example recipes/debian (its url and keyring pointed at that repository).
/// The lock pins the closure, the layer holds the C library, a zone file, the
/// certificates and a status.d record per package, and the build names the packages
/// whose postinst did not run. Where a Docker daemon answers, `docker run` executes
/// the dynamically linked `openssl` (the example's entrypoint), and `date` (from
/// coreutils) reads a zone file. Where the packages could not be fetched, or no daemon answers,
/// the test says what it skipped.
#[test]
fn real_debian_packages_build_the_example_and_run_where_a_daemon_answers() {
    const NAME: &str = "real_debian_packages_build_the_example_and_run_where_a_daemon_answers";
    let debs: Vec<PathBuf> = std::env::var_os("IMGBUILD_TEST_DEBIAN_DEBS")
        .and_then(|dir| fs::read_dir(dir).ok())
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default();
    if debs.is_empty() || std::env::consts::ARCH != "x86_64" {
        skip(
            NAME,
            "needs x86-64 and Debian's ca-certificates, tzdata, libc6 and coreutils .debs in \
             IMGBUILD_TEST_DEBIAN_DEBS (scripts/test.sh fetches them with apt-get download)",
        );
        return;
    }
    let repo = Repo::of_debs(&debs);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/debian/recipe.toml");
    let text = fs::read_to_string(&example).expect("recipes/debian/recipe.toml");
    assert!(text.contains("url = \"https://deb.debian.org/debian\""));
    assert!(text.contains("suite = \"bookworm\""));
    let tag = format!("t{}", std::process::id());
    let text = text
        .replace("https://deb.debian.org/debian", &repo.url())
        .replace("suite = \"bookworm\"", "suite = \"stable\"")
        .replace("tags = [\"bookworm\"]", &format!("tags = [\"{tag}\"]"));
    let ctx = Ctx::new();
    ctx.write("keys/debian-archive-keyring.gpg", repo.key.export(false));
    ctx.recipe_text(&text);

    let lock = lock_ok(&ctx);
    let pins = pinned(&lock);
    for name in [
        "ca-certificates=",
        "tzdata=",
        "libc6=",
        "openssl=",
        "libssl3=",
    ] {
        assert!(
            pins.iter().any(|p| p.starts_with(name)),
            "{name} not pinned: {pins:?}"
        );
    }

    let daemon = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    let out = ctx.path().join("out");
    let args: &[&str] = if daemon { &[EPOCH, "--load"] } else { &[EPOCH] };
    let o = ctx.build(&out, args);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("postinst") && err.contains("ca-certificates"),
        "the unrun postinst of ca-certificates is named: {err}"
    );
    let digest = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let layout = Layout::new(&out);
    let layers = layout.layer_digests(&digest);
    let entries: Vec<common::TarEntry> = layers.iter().flat_map(|l| layout.entries(l)).collect();
    let has = |p: &str| entries.iter().any(|e| e.path == p);
    for path in [
        "usr/share/zoneinfo/Asia/Tokyo",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2",
        "usr/bin/openssl",
        "bin/date",
        "usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt",
        "var/lib/dpkg/status.d/libc6",
        "var/lib/dpkg/status.d/libc6.md5sums",
        "var/lib/dpkg/status.d/tzdata",
    ] {
        assert!(has(path), "{path} missing from the image");
    }

    if !daemon {
        skip(
            NAME,
            "no Docker daemon answers (docker info): the image was built and checked, not run",
        );
        return;
    }
    let image = format!("debian-base:{tag}");
    let docker_run = |args: &[&str]| {
        let o = Command::new("docker")
            .args(["run", "--rm", "--network=none"])
            .args(args)
            .output()
            .expect("docker run");
        assert!(
            o.status.success(),
            "docker run {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let version = docker_run(&[&image]);
    let zone = docker_run(&[
        "-e",
        "TZ=Asia/Tokyo",
        "--entrypoint",
        "/bin/date",
        &image,
        "-d",
        "@0",
    ]);
    let _ = Command::new("docker")
        .args(["rmi", "--force", &image])
        .output();
    assert!(
        version.starts_with("OpenSSL 3"),
        "openssl version: {version}"
    );
    // 09:00 in Tokyo at the epoch: the zone file was read (UTC otherwise).
    assert_eq!(
        zone, "Thu Jan  1 09:00:00 JST 1970\n",
        "date under TZ=Asia/Tokyo"
    );
}
