//! `[[layer.archive]] url = …, sha256 = …`: downloads from real servers on 127.0.0.1
//! — a plain-HTTP server written here (it counts requests and can answer with
//! scripted errors) and `openssl s_server -WWW` with a certificate from a test CA —
//! checked against the same archive used through `src`.
//!
//! Needs `openssl` on PATH (a missing tool fails the test, as elsewhere).

mod common;

use common::{imgbuild, make_tar, stderr, Ctx, Layout};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EPOCH: &str = "--source-date-epoch=1700000000";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A small archive whose content depends on `tag`.
fn archive(tag: &str) -> Vec<u8> {
    let hello = format!("hello from {tag}\n");
    gzip(&make_tar(&[
        ("opt/", None, None),
        ("opt/tool/", None, None),
        ("opt/tool/hello.txt", Some(hello.as_bytes()), None),
        ("opt/tool/link", None, Some("hello.txt")),
    ]))
}

// ---------------------------------------------------------------------------------
// A plain-HTTP file server on 127.0.0.1 that counts requests
// ---------------------------------------------------------------------------------

#[derive(Default)]
struct ServerState {
    files: BTreeMap<String, Vec<u8>>,
    /// Statuses answered (in order) before a path is served.
    failures: BTreeMap<String, Vec<u16>>,
    /// Paths answered with a redirect to another path.
    redirects: BTreeMap<String, String>,
    /// Every request's path, in order.
    requests: Vec<String>,
    /// The `Retry-After` sent with every failure status, if any.
    retry_after: Option<String>,
}

struct HttpServer {
    port: u16,
    state: Arc<Mutex<ServerState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    fn start() -> HttpServer {
        let listener =
            TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(Mutex::new(ServerState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: the server stops with the test, or after five minutes at most.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpServer {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn put(&self, path: &str, bytes: Vec<u8>) {
        self.lock().files.insert(format!("/{path}"), bytes);
    }

    fn fail_first(&self, path: &str, statuses: &[u16]) {
        self.lock()
            .failures
            .insert(format!("/{path}"), statuses.to_vec());
    }

    /// Sends `Retry-After: <value>` with every failure status.
    fn retry_after(&self, value: &str) {
        self.lock().retry_after = Some(value.to_string());
    }

    /// Answers `from` with a 302 to `location` (a path or a whole url).
    fn redirect(&self, from: &str, location: &str) {
        self.lock()
            .redirects
            .insert(format!("/{from}"), location.to_string());
    }

    fn requests(&self, path: &str) -> usize {
        let want = format!("/{path}");
        self.lock().requests.iter().filter(|p| **p == want).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().expect("server state")
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<ServerState>) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, location, body, retry_after) = {
        let mut s = state.lock().expect("server state");
        s.requests.push(path.clone());
        let failure = s.failures.get_mut(&path).and_then(|f| {
            if f.is_empty() {
                None
            } else {
                Some(f.remove(0))
            }
        });
        let retry_after = failure.and(s.retry_after.clone());
        let (status, location, body) = match (failure, s.redirects.get(&path), s.files.get(&path)) {
            (Some(code), _, _) => (code, None, b"try again\n".to_vec()),
            (None, Some(to), _) => (302, Some(to.clone()), Vec::new()),
            (None, None, Some(f)) => (200, None, f.clone()),
            (None, None, None) => (404, None, b"not found\n".to_vec()),
        };
        (status, location, body, retry_after)
    };
    let reason = match status {
        200 => "OK",
        302 => "Found",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(l) = location {
        response.push_str(&format!("Location: {l}\r\n"));
    }
    if let Some(wait) = retry_after {
        response.push_str(&format!("Retry-After: {wait}\r\n"));
    }
    response.push_str("\r\n");
    let _ = conn.write_all(response.as_bytes());
    let _ = conn.write_all(&body);
    let _ = conn.flush();
}

// ---------------------------------------------------------------------------------
// An HTTPS file server: openssl s_server -WWW with a certificate from a test CA
// ---------------------------------------------------------------------------------

struct HttpsServer {
    port: u16,
    child: Child,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpsServer {
    /// Serves `files` (name → bytes) from a temp directory over HTTPS.
    fn start(files: &[(&str, &[u8])]) -> HttpsServer {
        common::require_tool("openssl");
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = common::registry::make_certs(dir.path());
        let www = dir.path().join("www");
        fs::create_dir_all(&www).expect("mkdir www");
        for (name, bytes) in files {
            fs::write(www.join(name), bytes).expect("write served file");
        }
        let port = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-WWW", "-http_server_binmode", "-quiet"])
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&tls.cert)
            .arg("-key")
            .arg(&tls.key)
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpsServer {
            port,
            child,
            ca: tls.cert_dir.join("ca.crt"),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn url_recipe(url: &str, sha256: &str) -> String {
    format!(
        "[[layer]]\nname = \"tool\"\n[[layer.archive]]\nurl = \"{url}\"\nsha256 = \"{sha256}\"\n"
    )
}

fn build(ctx: &Ctx, out: &Path, args: &[&str]) -> Output {
    let mut all = vec![EPOCH];
    all.extend_from_slice(args);
    ctx.build(out, &all)
}

fn build_ok(ctx: &Ctx, out: &Path, args: &[&str]) -> String {
    let mut all = vec![EPOCH];
    all.extend_from_slice(args);
    ctx.build_ok(out, &all)
}

fn downloads(out: &Path) -> PathBuf {
    out.join(".imgbuild/downloads/sha256")
}

/// Every file under `dir` (relative paths), sorted; empty when `dir` is missing.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .expect("under dir")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

fn exit_code(o: &Output) -> Option<i32> {
    o.status.code()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn url_archive_builds_the_same_image_as_the_same_archive_as_src() {
    let server = HttpServer::start();
    let bytes = archive("one");
    server.put("tool.tar.gz", bytes.clone());

    let by_url = Ctx::new();
    by_url.recipe_text(&url_recipe(&server.url("tool.tar.gz"), &sha256_hex(&bytes)));
    let out_url = by_url.path().join("out");
    let d_url = build_ok(&by_url, &out_url, &[]);

    let by_src = Ctx::new();
    by_src.write("vendor/tool.tar.gz", &bytes).recipe_text(
        "[[layer]]\nname = \"tool\"\n[[layer.archive]]\nsrc = \"vendor/tool.tar.gz\"\n",
    );
    let out_src = by_src.path().join("out");
    let d_src = build_ok(&by_src, &out_src, &[]);

    assert_eq!(
        d_url, d_src,
        "a url archive must build the same image as src"
    );
    let layout = Layout::new(&out_url);
    let layers = layout.layer_digests(&d_url);
    let entries = layout.entries(&layers[0]);
    let hello = entries
        .iter()
        .find(|e| e.path == "opt/tool/hello.txt")
        .expect("hello.txt in the layer");
    assert_eq!(hello.data, b"hello from one\n");
    assert_eq!(
        files_under(&downloads(&out_url)),
        vec![sha256_hex(&bytes)],
        "the download is cached under its sha256"
    );
}

#[test]
fn second_build_uses_the_download_cache_even_with_no_cache() {
    let server = HttpServer::start();
    let bytes = archive("cached");
    server.put("t.tar.gz", bytes.clone());
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe(&server.url("t.tar.gz"), &sha256_hex(&bytes)));
    let out = ctx.path().join("out");
    let first = build_ok(&ctx, &out, &[]);
    let second = build_ok(&ctx, &out, &[]);
    let third = build_ok(&ctx, &out, &["--no-cache"]);
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(
        server.requests("t.tar.gz"),
        1,
        "the server must see one request for three builds"
    );
}

#[test]
fn damaged_cached_download_is_detected_and_fetched_again() {
    let server = HttpServer::start();
    let bytes = archive("damaged");
    let hex = sha256_hex(&bytes);
    server.put("t.tar.gz", bytes.clone());
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe(&server.url("t.tar.gz"), &hex));
    let out = ctx.path().join("out");
    let first = build_ok(&ctx, &out, &[]);
    let cached = downloads(&out).join(&hex);
    let mut damaged = fs::read(&cached).expect("cached download");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    fs::write(&cached, &damaged).expect("damage the cache");

    let o = build(&ctx, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fetching") && stderr(&o).contains("again"),
        "the refetch is reported: {}",
        stderr(&o)
    );
    let second = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(first, second);
    assert_eq!(server.requests("t.tar.gz"), 2);
    assert_eq!(fs::read(&cached).expect("cached download"), bytes);
}

#[test]
fn sha256_mismatch_exits_2_naming_url_and_both_hashes_and_writes_nothing() {
    let server = HttpServer::start();
    let bytes = archive("real");
    let actual = sha256_hex(&bytes);
    let pinned = sha256_hex(b"something else");
    server.put("t.tar.gz", bytes);

    // A layout that already holds an image: the failed build must not change it.
    let ctx = Ctx::new();
    ctx.recipe_text("[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"/a\"\ncontent = \"a\"\n");
    let out = ctx.path().join("out");
    build_ok(&ctx, &out, &[]);
    let index_before = fs::read(out.join("index.json")).expect("index.json");
    let blobs_before = files_under(&out.join("blobs"));

    let url = server.url("t.tar.gz");
    ctx.recipe_text(&url_recipe(&url, &pinned));
    let o = build(&ctx, &out, &[]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(2), "{err}");
    assert!(err.contains(&url), "names the url: {err}");
    assert!(err.contains(&actual), "names the actual sha256: {err}");
    assert!(err.contains(&pinned), "names the pinned sha256: {err}");
    assert!(err.contains("recipe.toml:5:10"), "points at sha256: {err}");
    assert!(err.contains("update sha256"), "says how to fix it: {err}");
    assert_eq!(
        fs::read(out.join("index.json")).expect("index.json"),
        index_before
    );
    assert_eq!(files_under(&out.join("blobs")), blobs_before);
    assert_eq!(
        files_under(&downloads(&out)),
        Vec::<String>::new(),
        "no unverified download is kept"
    );

    // The same into a new directory: no layout appears at all.
    let fresh = ctx.path().join("fresh");
    let o = build(&ctx, &fresh, &[]);
    assert_eq!(exit_code(&o), Some(2), "{}", stderr(&o));
    assert!(!fresh.join("index.json").exists());
    assert!(!fresh.join("oci-layout").exists());
    assert_eq!(files_under(&fresh.join("blobs")), Vec::<String>::new());
}

#[test]
fn http_404_exits_3_naming_url_and_status() {
    let server = HttpServer::start();
    let ctx = Ctx::new();
    let url = server.url("missing.tar.gz");
    ctx.recipe_text(&url_recipe(&url, &"a".repeat(64)));
    let o = build(&ctx, &ctx.path().join("out"), &[]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(3), "{err}");
    assert!(
        err.contains(&format!("cannot download {url}: HTTP 404 Not Found")),
        "{err}"
    );
    assert_eq!(server.requests("missing.tar.gz"), 1, "a 404 is not retried");
}

#[test]
fn http_503_twice_then_200_succeeds_after_retries() {
    let server = HttpServer::start();
    let bytes = archive("flaky");
    server.put("t.tar.gz", bytes.clone());
    server.fail_first("t.tar.gz", &[503, 503]);
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe(&server.url("t.tar.gz"), &sha256_hex(&bytes)));
    let out = ctx.path().join("out");
    let o = build(&ctx, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("retrying"), "{}", stderr(&o));
    assert_eq!(server.requests("t.tar.gz"), 3);
    assert_eq!(
        fs::read(downloads(&out).join(sha256_hex(&bytes))).expect("download"),
        bytes
    );
}

#[test]
fn a_503_asking_to_retry_after_the_budget_is_not_retried() {
    let server = HttpServer::start();
    let bytes = archive("busy");
    server.put("t.tar.gz", bytes.clone());
    server.fail_first("t.tar.gz", &[503, 503]);
    // An hour, against the 3 minutes a request may take with its retries.
    server.retry_after("3600");
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe(&server.url("t.tar.gz"), &sha256_hex(&bytes)));
    let o = build(&ctx, &ctx.path().join("out"), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("HTTP 503 Service Unavailable"), "{err}");
    assert!(!err.contains("retrying"), "{err}");
    assert_eq!(server.requests("t.tar.gz"), 1);
}

#[test]
fn a_503_with_a_short_retry_after_is_retried() {
    let server = HttpServer::start();
    let bytes = archive("soon");
    server.put("t.tar.gz", bytes.clone());
    server.fail_first("t.tar.gz", &[503]);
    server.retry_after("0");
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe(&server.url("t.tar.gz"), &sha256_hex(&bytes)));
    let o = build(&ctx, &ctx.path().join("out"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(server.requests("t.tar.gz"), 2);
}

#[test]
fn redirects_are_followed() {
    let server = HttpServer::start();
    let bytes = archive("moved");
    server.put("new/t.tar.gz", bytes.clone());
    server.redirect("old/t.tar.gz", "/new/t.tar.gz");
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe(
        &server.url("old/t.tar.gz"),
        &sha256_hex(&bytes),
    ));
    build_ok(&ctx, &ctx.path().join("out"), &[]);
    assert_eq!(server.requests("old/t.tar.gz"), 1);
    assert_eq!(server.requests("new/t.tar.gz"), 1);
}

#[test]
fn redirect_to_plain_http_on_a_non_loopback_host_is_refused() {
    let server = HttpServer::start();
    server.redirect("t.tar.gz", "http://example.invalid/t.tar.gz");
    let ctx = Ctx::new();
    let url = server.url("t.tar.gz");
    ctx.recipe_text(&url_recipe(&url, &"a".repeat(64)));
    let o = build(&ctx, &ctx.path().join("out"), &[]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(3), "{err}");
    assert!(
        err.contains(&format!("cannot download {url}")) && err.contains("redirected to plain HTTP"),
        "{err}"
    );
    assert_eq!(
        server.requests("t.tar.gz"),
        1,
        "a refused redirect is not retried"
    );
}

#[test]
fn url_with_credentials_is_refused_without_showing_the_password() {
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe(
        "https://user:s3cret@127.0.0.1:1/t.tar.gz",
        &"a".repeat(64),
    ));
    let o = build(&ctx, &ctx.path().join("out"), &[]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(2), "{err}");
    let first_line = err.lines().next().unwrap_or("");
    assert!(first_line.contains("carries credentials"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "not even in the recipe excerpt: {err}"
    );
    assert!(
        err.contains("recipe.toml:"),
        "the place is still named: {err}"
    );
    // `imgbuild lock` refuses it too, and writes no recipe.lock holding the password.
    let o = imgbuild().arg("lock").arg(ctx.recipe()).output().unwrap();
    assert_eq!(exit_code(&o), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("s3cret"), "{}", stderr(&o));
    assert!(!ctx.path().join("recipe.lock").exists());
}

#[test]
fn lock_refuses_urls_that_build_would_refuse() {
    for (url, says) in [
        ("ftp://127.0.0.1/t.tar.gz", "scheme"),
        ("127.0.0.1/t.tar.gz", "not a valid url"),
    ] {
        let ctx = Ctx::new();
        ctx.recipe_text(&url_recipe(url, &"a".repeat(64)));
        let o = imgbuild().arg("lock").arg(ctx.recipe()).output().unwrap();
        assert_eq!(exit_code(&o), Some(2), "{url}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{url}: {}", stderr(&o));
        assert!(!ctx.path().join("recipe.lock").exists(), "{url}");
    }
}

#[test]
fn a_sha256_table_with_two_hashes_for_one_url_is_refused() {
    let ctx = Ctx::new();
    ctx.recipe_text(&format!(
        "[image]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nname = \"tool\"\n\
         [[layer.archive]]\nurl = \"https://127.0.0.1:1/same.tar.gz\"\n\
         sha256 = {{ \"linux/amd64\" = \"{}\", \"linux/arm64\" = \"{}\" }}\n",
        "a".repeat(64),
        "b".repeat(64)
    ));
    let o = build(&ctx, &ctx.path().join("out"), &[]);
    assert_eq!(exit_code(&o), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("different hashes for the same url"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn https_with_unknown_ca_exits_3_with_tls_hint_and_works_with_registry_ca() {
    let bytes = archive("tls");
    let server = HttpsServer::start(&[("t.tar.gz", &bytes)]);
    let ctx = Ctx::new();
    let url = server.url("t.tar.gz");
    ctx.recipe_text(&url_recipe(&url, &sha256_hex(&bytes)));
    let out = ctx.path().join("out");

    let o = build(&ctx, &out, &[]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(3), "{err}");
    assert!(err.contains(&format!("cannot download {url}")), "{err}");
    assert!(err.contains("--registry-ca"), "hints at the flag: {err}");
    assert!(!out.join("index.json").exists());

    let ca = server.ca.to_string_lossy().into_owned();
    let digest = build_ok(&ctx, &out, &["--registry-ca", &ca]);
    let layout = Layout::new(&out);
    let layers = layout.layer_digests(&digest);
    assert!(layout
        .entries(&layers[0])
        .iter()
        .any(|e| e.path == "opt/tool/hello.txt" && e.data == b"hello from tls\n"));
}

#[test]
fn plain_http_to_a_non_loopback_host_exits_2_before_connecting() {
    let ctx = Ctx::new();
    ctx.recipe_text(&url_recipe("http://example.invalid/x.tar", &"a".repeat(64)));
    let out = ctx.path().join("out");
    let o = build(&ctx, &out, &[]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(2), "{err}");
    assert!(err.contains("plain HTTP to example.invalid"), "{err}");
    assert!(err.contains("--insecure-registry example.invalid"), "{err}");
    assert!(err.contains("recipe.toml:4:7"), "points at the url: {err}");
    assert!(!out.exists(), "nothing is written");
}

/// Two platforms, one url with `{arch}`, one sha256 per platform.
fn per_platform(server: &HttpServer) -> (Ctx, String, String) {
    let amd64 = archive("amd64");
    let arm64 = archive("arm64");
    server.put("tool-amd64.tar.gz", amd64.clone());
    server.put("tool-arm64.tar.gz", arm64.clone());
    let ctx = Ctx::new();
    let template = server.url("tool-{arch}.tar.gz");
    ctx.recipe_text(&format!(
        "[image]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nname = \"tool\"\n[[layer.archive]]\nurl = \"{template}\"\nsha256 = {{ \"linux/amd64\" = \"{}\", \"linux/arm64\" = \"{}\" }}\n",
        sha256_hex(&amd64),
        sha256_hex(&arm64)
    ));
    (ctx, sha256_hex(&amd64), sha256_hex(&arm64))
}

#[test]
fn per_platform_sha256_table_with_arch_in_the_url() {
    let server = HttpServer::start();
    let (ctx, _, _) = per_platform(&server);
    let out = ctx.path().join("out");
    let digest = build_ok(&ctx, &out, &[]);
    let layout = Layout::new(&out);
    let index = layout.json(&digest);
    let manifests = index["manifests"].as_array().expect("an index");
    assert_eq!(manifests.len(), 2);
    for m in manifests {
        let arch = m["platform"]["architecture"].as_str().expect("arch");
        let d = m["digest"].as_str().expect("digest");
        let layers = layout.layer_digests(d);
        let hello = layout
            .entries(&layers[0])
            .into_iter()
            .find(|e| e.path == "opt/tool/hello.txt")
            .expect("hello.txt");
        assert_eq!(hello.data, format!("hello from {arch}\n").into_bytes());
    }
    assert_eq!(server.requests("tool-amd64.tar.gz"), 1);
    assert_eq!(server.requests("tool-arm64.tar.gz"), 1);

    // A platform the table does not pin: exit 2 at sha256, naming the platform.
    let o = build(&ctx, &out, &["--platform", "linux/amd64,linux/s390x"]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(2), "{err}");
    assert!(
        err.contains("no hash for platform linux/s390x") && err.contains("recipe.toml:7:10"),
        "{err}"
    );
}

#[test]
fn one_sha256_for_a_url_with_arch_on_two_platforms_exits_2_explaining_the_table() {
    let ctx = Ctx::new();
    ctx.recipe_text(&format!(
        "[image]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n{}",
        url_recipe("https://127.0.0.1:1/tool-{arch}.tar.gz", &"a".repeat(64))
    ));
    let o = build(&ctx, &ctx.path().join("out"), &[]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(2), "{err}");
    assert!(err.contains("one sha256 cannot pin"), "{err}");
    assert!(err.contains("sha256 = {"), "shows the table form: {err}");
}

#[test]
fn lock_records_each_expanded_url_and_locked_build_checks_them() {
    let server = HttpServer::start();
    let (ctx, amd64, arm64) = per_platform(&server);
    let o = imgbuild()
        .arg("lock")
        .arg(ctx.recipe())
        .output()
        .expect("run imgbuild lock");
    assert!(o.status.success(), "{}", stderr(&o));
    let lock: toml::Value =
        toml::from_str(&fs::read_to_string(ctx.path().join("recipe.lock")).expect("recipe.lock"))
            .expect("lock is TOML");
    let urls: Vec<(String, String)> = lock["url"]
        .as_array()
        .expect("[[url]]")
        .iter()
        .map(|u| {
            (
                u["url"].as_str().expect("url").to_string(),
                u["sha256"].as_str().expect("sha256").to_string(),
            )
        })
        .collect();
    assert_eq!(
        urls,
        vec![
            (server.url("tool-amd64.tar.gz"), amd64.clone()),
            (server.url("tool-arm64.tar.gz"), arm64.clone()),
        ]
    );

    let out = ctx.path().join("out");
    build_ok(&ctx, &out, &["--locked"]);

    // The recipe moves to a new file for arm64; the lock still pins the old one.
    let newer = archive("arm64, newer");
    server.put("tool-arm64.tar.gz", newer.clone());
    let text = fs::read_to_string(ctx.recipe()).expect("recipe");
    ctx.recipe_text(&text.replace(&arm64, &sha256_hex(&newer)));
    let o = build(&ctx, &out, &["--locked"]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), Some(2), "{err}");
    assert!(
        err.contains("recipe.lock")
            && err.contains(&server.url("tool-arm64.tar.gz"))
            && err.contains(&arm64),
        "{err}"
    );
    // Without --locked the recipe's pin is what counts.
    build_ok(&ctx, &out, &[]);
}

#[test]
fn provenance_names_a_url_archive_by_url_and_sha256_not_by_its_download_path() {
    let server = HttpServer::start();
    let bytes = archive("prov");
    server.put("tool.tar.gz", bytes.clone());
    let ctx = Ctx::new();
    let url = server.url("tool.tar.gz");
    ctx.recipe_text(&url_recipe(&url, &sha256_hex(&bytes)));
    let out = ctx.path().join("out");
    let statement = ctx.path().join("provenance.json");
    build_ok(
        &ctx,
        &out,
        &["--provenance", statement.to_str().expect("utf-8 path")],
    );
    let text = fs::read_to_string(&statement).expect("provenance written");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("provenance is JSON");
    let deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies");
    let archive = deps
        .iter()
        .find(|d| d["uri"] == url.as_str())
        .unwrap_or_else(|| panic!("no dependency for {url}: {text}"));
    assert_eq!(archive["digest"]["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(archive["annotations"]["imgbuild.role"], "archive");
    assert!(
        !text.contains(".imgbuild/downloads") && !text.contains(out.to_str().expect("utf-8")),
        "the download cache's host path leaked into the provenance: {text}"
    );
}
