//! The registry harness (tests/common/registry.rs) against a real `docker-registry`,
//! with skopeo as the independent client: our layouts pushed with
//! `skopeo copy --preserve-digests` come back with the digest our build printed, in
//! every set-up (plain, htpasswd, TLS, TLS + htpasswd, bearer tokens), and the set-ups
//! refuse what they should (wrong credentials, an untrusted CA, a token without the
//! scope or with a bad signature). The fault proxy (tests/common/proxy.rs) relays a
//! push faithfully, injects the faults it is told to, and logs what it saw; a killed
//! registry restarts with its content.
//!
//! Tools (Debian): `apt-get install -y docker-registry skopeo openssl apache2-utils`.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::proxy::{Action, Fault, FaultProxy};
use common::registry::{Mode, Registry};
use common::token;
use common::{require_tool, Ctx, Layout};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const USER: &str = "imgbuild-tester";
const PASSWORD: &str = "pa55-w0rd!";

/// skopeo, isolated from the machine: a permissive policy and an empty auth file of
/// its own, and a bound on how long any command may take.
struct Skopeo {
    dir: tempfile::TempDir,
}

impl Skopeo {
    fn new() -> Skopeo {
        require_tool("skopeo");
        let dir = tempfile::tempdir().expect("skopeo temp dir");
        fs::write(
            dir.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("policy");
        fs::write(dir.path().join("auth.json"), "{}").expect("auth file");
        Skopeo { dir }
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    fn run(&self, args: &[String]) -> Output {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .args(["--command-timeout", "120s"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", self.auth_file())
            .env("HOME", self.dir.path())
            .env_remove("DOCKER_CONFIG");
        cmd.output().expect("run skopeo")
    }

    fn ok(&self, args: &[String], reg: &Registry) -> Output {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "skopeo {args:?} failed ({}):\n{}\n--- registry log ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            reg.log()
        );
        o
    }

    /// `skopeo copy --preserve-digests [--all] oci:LAYOUT:TAG docker://REG/REPO:TAG`.
    fn push(&self, reg: &Registry, layout: &Path, tag: &str, repo: &str, all: bool) -> Output {
        self.push_via(&reg.host(), reg, layout, tag, repo, all)
    }

    /// As `push`, to `host` (e.g. a proxy in front of `reg`) with `reg`'s flags.
    fn push_via(
        &self,
        host: &str,
        reg: &Registry,
        layout: &Path,
        tag: &str,
        repo: &str,
        all: bool,
    ) -> Output {
        let mut args = strings(&["copy", "--preserve-digests"]);
        if all {
            args.push("--all".into());
        }
        args.extend(reg.skopeo_flags("dest-"));
        args.push(format!("oci:{}:{tag}", layout.display()));
        args.push(format!("docker://{host}/{repo}:{tag}"));
        self.run(&args)
    }

    /// `skopeo inspect [--raw] docker://REG/REF` with the registry's flags.
    fn inspect(&self, reg: &Registry, reference: &str, raw: bool) -> Vec<u8> {
        let mut args = strings(&["inspect"]);
        if raw {
            args.push("--raw".into());
        }
        args.extend(reg.skopeo_flags(""));
        args.push(format!("docker://{}", reg.reference(reference)));
        self.ok(&args, reg).stdout
    }

    /// The `Digest` that `skopeo inspect` reports for `reference` on `reg`.
    fn digest(&self, reg: &Registry, reference: &str) -> String {
        let info: serde_json::Value =
            serde_json::from_slice(&self.inspect(reg, reference, false)).expect("inspect json");
        info["Digest"].as_str().expect("Digest").to_string()
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Builds recipes/hello into `out` and returns the digest the build printed.
fn build_hello(out: &Path) -> String {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/hello/recipe.toml");
    common::build_digest(&recipe, out, &[])
}

/// Pushes the hello example with skopeo and checks that `skopeo inspect` reports the
/// digest our build printed, for both of its tags. Returns the registry, still running.
fn hello_round_trip(mode: Mode) -> Registry {
    let reg = Registry::start(mode);
    let out = tempfile::tempdir().expect("out dir");
    let layout = out.path().join("layout");
    let digest = build_hello(&layout);
    let skopeo = Skopeo::new();
    for tag in ["1.0.0", "latest"] {
        let o = skopeo.push(&reg, &layout, tag, "imgbuild/hello", false);
        assert!(
            o.status.success(),
            "skopeo copy to {:?} failed: {}\n--- registry log ---\n{}",
            reg.mode(),
            stderr(&o),
            reg.log()
        );
        let info: serde_json::Value =
            serde_json::from_slice(&skopeo.inspect(&reg, &format!("imgbuild/hello:{tag}"), false))
                .expect("skopeo inspect json");
        assert_eq!(
            info["Digest"], digest,
            "registry digest for :{tag} differs from the build's: {info}"
        );
        // The bytes the registry serves are our manifest's, bit for bit.
        let raw = skopeo.inspect(&reg, &format!("imgbuild/hello:{tag}"), true);
        assert_eq!(raw, Layout::new(&layout).blob(&digest), "manifest bytes");
    }
    reg
}

#[test]
fn plain_http_registry_serves_the_digest_our_build_printed() {
    hello_round_trip(Mode::Plain);
}

#[test]
fn htpasswd_registry_serves_the_digest_our_build_printed_to_valid_credentials() {
    hello_round_trip(Mode::htpasswd(USER, PASSWORD));
}

#[test]
fn tls_registry_serves_the_digest_our_build_printed_when_the_test_ca_is_trusted() {
    hello_round_trip(Mode::Tls);
}

#[test]
fn tls_htpasswd_registry_serves_the_digest_our_build_printed() {
    hello_round_trip(Mode::tls_htpasswd(USER, PASSWORD));
}

#[test]
fn htpasswd_registry_refuses_wrong_and_missing_credentials_with_401() {
    let reg = Registry::start(Mode::htpasswd(USER, PASSWORD));
    let out = tempfile::tempdir().expect("out dir");
    let layout = out.path().join("layout");
    build_hello(&layout);
    let skopeo = Skopeo::new();
    let dest = format!("docker://{}", reg.reference("imgbuild/hello:1.0.0"));
    let src = format!("oci:{}:1.0.0", layout.display());

    let wrong = format!("{USER}:not-the-password");
    let o = skopeo.run(&strings(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &wrong,
        &src,
        &dest,
    ]));
    let e = stderr(&o);
    assert!(!o.status.success(), "push with a wrong password succeeded");
    let lower = e.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("unauthorized"),
        "the refusal does not say 401/unauthorized: {e}"
    );
    assert!(!e.contains("not-the-password"), "skopeo echoed the secret");
    assert!(
        reg.log().contains("401"),
        "the registry did not log a 401:\n{}",
        reg.log()
    );

    let o = skopeo.run(&strings(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-no-creds",
        &src,
        &dest,
    ]));
    let e = stderr(&o).to_lowercase();
    assert!(!o.status.success(), "anonymous push succeeded");
    assert!(
        e.contains("401") || e.contains("unauthorized") || e.contains("authentication required"),
        "the anonymous refusal does not say why: {e}"
    );
}

#[test]
fn tls_registry_is_refused_with_a_certificate_error_without_the_test_ca() {
    let reg = Registry::start(Mode::Tls);
    let out = tempfile::tempdir().expect("out dir");
    let layout = out.path().join("layout");
    build_hello(&layout);
    let skopeo = Skopeo::new();
    // An empty cert dir: only the system roots, which do not hold the test CA.
    let empty = tempfile::tempdir().expect("empty cert dir");
    let o = skopeo.run(&[
        "copy".into(),
        "--dest-cert-dir".into(),
        empty.path().display().to_string(),
        format!("oci:{}:1.0.0", layout.display()),
        format!("docker://{}", reg.reference("imgbuild/hello:1.0.0")),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success(), "push to an untrusted CA succeeded");
    assert!(
        e.contains("x509") || e.contains("certificate"),
        "the refusal is not a certificate error: {e}"
    );
}

#[test]
fn multi_platform_index_keeps_its_digest_and_bytes_through_the_registry() {
    let reg = Registry::start(Mode::Plain);
    let c = Ctx::new();
    c.recipe_text(
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

  [[layer.file]]
  path = "/etc/tool.conf"
  content = "x = 1\n"
"#,
    );
    c.write_mode("bin/amd64/tool", "amd64 tool\n", 0o755);
    c.write_mode("bin/arm64/tool", "arm64 tool\n", 0o755);
    let out = tempfile::tempdir().expect("out dir");
    let layout_dir = out.path().join("layout");
    let index_digest = c.build_ok(&layout_dir, &[]);
    let layout = Layout::new(&layout_dir);
    let index = layout.json(&index_digest);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "two platforms must build an index"
    );

    let skopeo = Skopeo::new();
    let o = skopeo.push(&reg, &layout_dir, "v1", "imgbuild/multi", true);
    assert!(
        o.status.success(),
        "skopeo copy --all failed: {}\n--- registry log ---\n{}",
        stderr(&o),
        reg.log()
    );
    let raw = skopeo.inspect(&reg, "imgbuild/multi:v1", true);
    let served = format!("sha256:{:x}", Sha256::digest(&raw));
    assert_eq!(served, index_digest, "the tag does not name our index");
    assert_eq!(raw, layout.blob(&index_digest), "index bytes");

    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2, "{index}");
    for m in manifests {
        let d = m["digest"].as_str().expect("child digest");
        let child = skopeo.inspect(&reg, &format!("imgbuild/multi@{d}"), true);
        assert_eq!(child, layout.blob(d), "child manifest {d} bytes");
    }
}

#[test]
fn docker_config_json_from_the_harness_authenticates_skopeo() {
    docker_config_json_authenticates(Mode::htpasswd(USER, PASSWORD));
}

#[test]
fn docker_config_json_from_the_harness_authenticates_skopeo_with_tokens() {
    docker_config_json_authenticates(Mode::token(USER, PASSWORD));
}

fn docker_config_json_authenticates(mode: Mode) {
    let reg = Registry::start(mode);
    let out = tempfile::tempdir().expect("out dir");
    let layout = out.path().join("layout");
    let digest = build_hello(&layout);
    let skopeo = Skopeo::new();
    assert!(skopeo
        .push(&reg, &layout, "1.0.0", "imgbuild/hello", false)
        .status
        .success());
    // No --creds: only the auth file written from docker_config_json().
    fs::write(
        skopeo.auth_file(),
        serde_json::to_vec(&reg.docker_config_json()).expect("json"),
    )
    .expect("write auth file");
    let info = skopeo.ok(
        &[
            "inspect".into(),
            "--tls-verify=false".into(),
            format!("docker://{}", reg.reference("imgbuild/hello:1.0.0")),
        ],
        &reg,
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(info["Digest"], digest);
    if reg.token_realm().is_some() {
        let log = reg.token_requests();
        let last = log.last().expect("token requests");
        assert!(
            last.granted && last.user.as_deref() == Some(USER),
            "{log:#?}"
        );
    }
}

#[test]
fn registries_get_distinct_ports_and_stop_when_dropped() {
    let a = Registry::start(Mode::Plain);
    let b = Registry::start(Mode::Plain);
    assert_ne!(a.port(), b.port());
    let addr = a.host().parse().expect("socket addr");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    drop(a);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the registry still listens after drop"
    );
    assert!(b.log().contains("listening on 127.0.0.1"), "{}", b.log());
}

/// An answer read by [`http`].
struct Response {
    status: u16,
    /// Status line and headers, as text.
    head: String,
    body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh loopback connection (`Connection: close`), read to
/// the end; Err when the connection closes without an answer. `body`, when given, is
/// sent with `Content-Length`.
fn http(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    let addr = host.parse().expect("host is IP:PORT");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {host}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.set_write_timeout(Some(Duration::from_secs(20))).ok();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if let Some(b) = body {
        req += &format!("Content-Length: {}\r\n", b.len());
    }
    req += "\r\n";
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    if let Some(b) = body {
        s.write_all(b).map_err(|e| format!("write body: {e}"))?;
    }
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    if buf.is_empty() {
        return Err(format!(
            "the connection closed without an answer ({read:?})"
        ));
    }
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete head in {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {head:?}"))?;
    Ok(Response {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    })
}

fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

/// A token from the registry's issuer for `scope`, with the test credentials.
fn fetch_token(reg: &Registry, scope: &str) -> String {
    let realm = reg.token_realm().expect("token mode");
    let host = realm
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix("/token"))
        .expect("realm is http://HOST/token");
    let target = format!(
        "/token?service={}&scope={}",
        token::SERVICE,
        scope
            .replace(':', "%3A")
            .replace('/', "%2F")
            .replace(',', "%2C")
    );
    let auth = basic_auth(USER, PASSWORD);
    let r = http(host, "GET", &target, &[("Authorization", &auth)], None).expect("token");
    assert_eq!(r.status, 200, "token refused: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("token json");
    assert_eq!(v["token"], v["access_token"], "{v}");
    assert_eq!(v["expires_in"], 300, "{v}");
    assert!(
        v["issued_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
    v["token"].as_str().expect("token string").to_string()
}

#[test]
fn token_registry_serves_the_digest_our_build_printed_and_logs_the_push_scope() {
    let reg = hello_round_trip(Mode::token(USER, PASSWORD));
    let log = reg.token_requests();
    let push = log
        .iter()
        .find(|r| {
            r.scopes
                .iter()
                .any(|s| s.starts_with("repository:imgbuild/hello:") && s.contains("push"))
        })
        .unwrap_or_else(|| panic!("no token request asked to push: {log:#?}"));
    assert_eq!(push.user.as_deref(), Some(USER), "{push:?}");
    assert!(push.granted, "{push:?}");
    assert_eq!(push.service.as_deref(), Some(token::SERVICE), "{push:?}");
    assert!(log.iter().all(|r| r.granted), "{log:#?}");
}

#[test]
fn token_registry_refuses_anonymous_and_wrong_credentials_at_the_issuer() {
    let reg = Registry::start(Mode::token(USER, PASSWORD));
    let out = tempfile::tempdir().expect("out dir");
    let layout = out.path().join("layout");
    build_hello(&layout);
    let skopeo = Skopeo::new();
    let dest = format!("docker://{}", reg.reference("imgbuild/hello:1.0.0"));
    let src = format!("oci:{}:1.0.0", layout.display());

    let o = skopeo.run(&strings(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-no-creds",
        &src,
        &dest,
    ]));
    let e = stderr(&o).to_lowercase();
    assert!(!o.status.success(), "anonymous push succeeded");
    assert!(
        e.contains("401") || e.contains("unauthorized"),
        "the anonymous refusal does not say why: {e}"
    );
    let log = reg.token_requests();
    assert!(
        log.iter().any(|r| r.user.is_none()
            && !r.granted
            && r.status == 401
            && r.scopes.iter().any(|s| s.contains("push"))),
        "no refused anonymous push-scope request in {log:#?}"
    );

    let wrong = format!("{USER}:not-the-password");
    let o = skopeo.run(&strings(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &wrong,
        &src,
        &dest,
    ]));
    let e = stderr(&o);
    assert!(!o.status.success(), "push with a wrong password succeeded");
    assert!(
        e.to_lowercase().contains("401") || e.to_lowercase().contains("unauthorized"),
        "the refusal does not say 401/unauthorized: {e}"
    );
    assert!(!e.contains("not-the-password"), "skopeo echoed the secret");
    let log = reg.token_requests();
    assert!(
        log.iter()
            .any(|r| r.user.as_deref() == Some(USER) && !r.granted && r.status == 401),
        "no refused request from {USER} in {log:#?}"
    );
    assert!(log.iter().all(|r| !r.granted), "{log:#?}");
}

#[test]
fn token_registry_checks_the_signature_and_the_scope_of_each_token() {
    let reg = Registry::start(Mode::token(USER, PASSWORD));
    let host = reg.host();
    let tags = "/v2/imgbuild/hello/tags/list";

    let r = http(&host, "GET", "/v2/", &[], None).expect("GET /v2/");
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!("realm=\"{}\"", reg.token_realm().unwrap()))
            && challenge.contains(&format!("service=\"{}\"", token::SERVICE)),
        "challenge: {challenge:?}"
    );

    // A token for another repository: 401 again, naming the scope it lacks.
    let other = fetch_token(&reg, "repository:imgbuild/other:pull,push");
    let r = http(
        &host,
        "GET",
        tags,
        &[("Authorization", &format!("Bearer {other}"))],
        None,
    )
    .expect("GET tags");
    assert_eq!(r.status, 401, "{}\n{}", r.head, reg.log());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("scope=\"repository:imgbuild/hello:pull\""),
        "challenge: {challenge:?}"
    );

    // The right scope passes authorization (the repository does not exist yet: 404).
    let good = fetch_token(&reg, "repository:imgbuild/hello:pull");
    let r = http(
        &host,
        "GET",
        tags,
        &[("Authorization", &format!("Bearer {good}"))],
        None,
    )
    .expect("GET tags");
    assert_eq!(
        r.status,
        404,
        "{}\n{}\n--- registry log ---\n{}",
        r.head,
        r.text(),
        reg.log()
    );
    assert!(r.text().contains("NAME_UNKNOWN"), "{}", r.text());

    // The same token with its claims altered no longer verifies.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&parts[1])
        .expect("claims");
    let forged = String::from_utf8(claims)
        .expect("utf8 claims")
        .replace("imgbuild/hello", "imgbuild/hellp");
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged);
    let r = http(
        &host,
        "GET",
        "/v2/imgbuild/hellp/tags/list",
        &[("Authorization", &format!("Bearer {}", parts.join(".")))],
        None,
    )
    .expect("GET tags");
    assert_eq!(r.status, 401, "a forged token was accepted: {}", r.head);
    assert!(
        reg.log().contains("invalid RS256 signature"),
        "the refusal was not for the signature:\n{}",
        reg.log()
    );
}

#[test]
fn fault_proxy_relays_a_push_and_a_re_push_only_checks_blobs() {
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(reg.addr(), vec![]);
    let out = tempfile::tempdir().expect("out dir");
    let layout = out.path().join("layout");
    let digest = build_hello(&layout);
    let skopeo = Skopeo::new();

    let o = skopeo.push_via(
        &proxy.host(),
        &reg,
        &layout,
        "1.0.0",
        "imgbuild/hello",
        false,
    );
    assert!(
        o.status.success(),
        "push through the proxy failed: {}\nproxy log: {:#?}\n--- registry log ---\n{}",
        stderr(&o),
        proxy.requests(),
        reg.log()
    );
    assert_eq!(skopeo.digest(&reg, "imgbuild/hello:1.0.0"), digest);
    let first = proxy.requests();
    // The upload URLs the registry handed out (Location) led back through the proxy.
    assert!(
        first
            .iter()
            .any(|(m, p, s)| m == "PUT" && p.contains("/blobs/uploads/") && *s == 201),
        "blob uploads bypassed the proxy: {first:#?}"
    );
    assert!(
        first.iter().any(|r| *r
            == (
                "PUT".to_string(),
                "/v2/imgbuild/hello/manifests/1.0.0".to_string(),
                201
            )),
        "{first:#?}"
    );
    assert!(first.iter().all(|(_, _, s)| *s != 0), "{first:#?}");

    let o = skopeo.push_via(
        &proxy.host(),
        &reg,
        &layout,
        "1.0.0",
        "imgbuild/hello",
        false,
    );
    assert!(o.status.success(), "re-push failed: {}", stderr(&o));
    let again = &proxy.requests()[first.len()..];
    let blobs = 1 + Layout::new(&layout).layer_digests(&digest).len();
    let heads = again
        .iter()
        .filter(|(m, p, s)| m == "HEAD" && p.contains("/blobs/sha256:") && *s == 200)
        .count();
    assert!(
        heads >= blobs,
        "{heads} blob HEADs for {blobs} blobs: {again:#?}"
    );
    assert!(
        !again.iter().any(|(_, p, _)| p.contains("/blobs/uploads/")),
        "the re-push uploaded again: {again:#?}"
    );
}

#[test]
fn fault_proxy_streams_large_and_chunked_bodies_and_keeps_location_on_the_proxy() {
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(reg.addr(), vec![]);
    let host = proxy.host();
    let blob = common::test_bytes(7, 6 * 1024 * 1024 + 13);
    let digest = format!("sha256:{:x}", Sha256::digest(&blob));

    let r = http(&host, "POST", "/v2/imgbuild/big/blobs/uploads/", &[], None).expect("POST");
    assert_eq!(r.status, 202, "{}", r.head);
    let location = r.header("location").expect("Location").to_string();
    let prefix = format!("http://{host}/v2/imgbuild/big/blobs/uploads/");
    assert!(location.starts_with(&prefix), "Location {location}");

    // Chunked request body: three chunks and the last-chunk.
    let target = format!(
        "{}&digest={digest}",
        &location[format!("http://{host}").len()..]
    );
    let mut s = TcpStream::connect(host.as_str()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "PUT {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )
    .expect("head");
    for part in blob.chunks(blob.len() / 3 + 1) {
        write!(s, "{:x}\r\n", part.len()).expect("chunk size");
        s.write_all(part).expect("chunk");
        s.write_all(b"\r\n").expect("crlf");
    }
    s.write_all(b"0\r\n\r\n").expect("last chunk");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "{answer}\n{}",
        reg.log()
    );

    // `Expect: 100-continue`: the body goes once the registry's 100 came back.
    let small = b"expect-continue blob\n";
    let small_digest = format!("sha256:{:x}", Sha256::digest(small));
    let r = http(&host, "POST", "/v2/imgbuild/big/blobs/uploads/", &[], None).expect("POST");
    let location = r.header("location").expect("Location").to_string();
    let target = format!(
        "{}&digest={small_digest}",
        &location[format!("http://{host}").len()..]
    );
    let mut s = TcpStream::connect(host.as_str()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        small.len()
    )
    .expect("head");
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(small).expect("body");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "{answer}\n{}",
        reg.log()
    );

    // Back through the proxy, Content-Length framed, byte for byte.
    let r = http(
        &host,
        "GET",
        &format!("/v2/imgbuild/big/blobs/{digest}"),
        &[],
        None,
    )
    .expect("GET blob");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body.len(), blob.len());
    assert!(r.body == blob, "the blob came back altered");
    let r = http(
        &host,
        "HEAD",
        &format!("/v2/imgbuild/big/blobs/{digest}"),
        &[],
        None,
    )
    .expect("HEAD blob");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*blob.len().to_string()));
    assert!(r.body.is_empty());
}

#[test]
fn fault_proxy_status_faults_reach_the_client_then_pass_through() {
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![
            Fault::new(Action::Status(500)).method("GET").path("/v2/"),
            Fault::new(Action::Status(429))
                .method("PUT")
                .path("/manifests/")
                .times(100),
        ],
    );
    let host = proxy.host();
    let r = http(&host, "GET", "/v2/", &[], None).expect("GET /v2/");
    assert_eq!(r.status, 500, "{}", r.head);
    assert!(r.text().contains("fault injected"), "{}", r.text());
    let r = http(&host, "GET", "/v2/", &[], None).expect("GET /v2/");
    assert_eq!(r.status, 200, "the fault fired more than once: {}", r.head);
    assert_eq!(
        proxy.requests(),
        vec![
            ("GET".to_string(), "/v2/".to_string(), 500),
            ("GET".to_string(), "/v2/".to_string(), 200)
        ]
    );

    // skopeo reports the 429 on the manifest, and the tag does not exist.
    let out = tempfile::tempdir().expect("out dir");
    let layout = out.path().join("layout");
    build_hello(&layout);
    let skopeo = Skopeo::new();
    let o = skopeo.push_via(&host, &reg, &layout, "1.0.0", "imgbuild/hello", false);
    assert!(
        !o.status.success(),
        "the push ignored a 429 on its manifest"
    );
    let e = stderr(&o);
    assert!(
        e.contains("429") || e.to_lowercase().contains("too many requests"),
        "skopeo does not report the 429: {e}"
    );
    let log = proxy.requests();
    assert!(
        log.iter()
            .any(|(m, p, s)| m == "PUT" && p.ends_with("/manifests/1.0.0") && *s == 429),
        "{log:#?}"
    );
    let r = http(
        &reg.host(),
        "GET",
        "/v2/imgbuild/hello/tags/list",
        &[],
        None,
    )
    .expect("tags");
    assert!(!r.text().contains("1.0.0"), "the tag exists: {}", r.text());
}

#[test]
fn fault_proxy_drop_closes_the_connection_without_an_answer() {
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![Fault::new(Action::Drop).method("GET").path("/v2/").times(2)],
    );
    let host = proxy.host();
    for _ in 0..2 {
        let e = http(&host, "GET", "/v2/", &[], None).err();
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("without an answer")),
            "{e:?}"
        );
    }
    // Other methods are not matched; after two drops GET passes too.
    assert_eq!(http(&host, "HEAD", "/v2/", &[], None).unwrap().status, 200);
    assert_eq!(http(&host, "GET", "/v2/", &[], None).unwrap().status, 200);
    assert_eq!(proxy.faults_left(), 0);
    let statuses: Vec<u16> = proxy.requests().into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(statuses, vec![0, 0, 200, 200]);
}

#[test]
fn registry_killed_at_the_manifest_put_keeps_the_old_tag_after_restart() {
    let mut reg = Registry::start(Mode::Plain);
    let out = tempfile::tempdir().expect("out dir");
    let old_layout = out.path().join("old");
    let old = build_hello(&old_layout);
    let skopeo = Skopeo::new();
    assert!(skopeo
        .push(&reg, &old_layout, "1.0.0", "imgbuild/hello", false)
        .status
        .success());

    // A different image under the same tag; the registry dies as its manifest arrives.
    let c = Ctx::new();
    c.recipe_text(
        "[image]\ntags = [\"1.0.0\"]\nsource-date-epoch = 1700000000\n\n\
         [[layer]]\nname = \"x\"\n  [[layer.file]]\n  path = \"/new\"\n  content = \"new\\n\"\n",
    );
    let new_layout = out.path().join("new");
    let new = c.build_ok(&new_layout, &[]);
    assert_ne!(new, old);
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![Fault::new(Action::Run(Box::new(reg.kill_switch())))
            .method("PUT")
            .path("/manifests/")],
    );
    let o = skopeo.push_via(
        &proxy.host(),
        &reg,
        &new_layout,
        "1.0.0",
        "imgbuild/hello",
        false,
    );
    assert!(
        !o.status.success(),
        "the push survived the registry's death"
    );
    assert!(!reg.is_running(), "the kill switch did not kill");
    let log = proxy.requests();
    assert_eq!(
        log.last(),
        Some(&(
            "PUT".to_string(),
            "/v2/imgbuild/hello/manifests/1.0.0".to_string(),
            0
        )),
        "{log:#?}"
    );
    // With the registry down, the proxy answers 502.
    let r = http(&proxy.host(), "GET", "/v2/", &[], None).expect("GET /v2/");
    assert_eq!(r.status, 502, "{}", r.head);

    reg.restart();
    assert!(reg.is_running());
    assert_eq!(
        skopeo.digest(&reg, "imgbuild/hello:1.0.0"),
        old,
        "the interrupted push moved the tag"
    );
    // kill + restart by hand keeps content too.
    reg.kill();
    assert!(!reg.is_running());
    reg.restart();
    assert_eq!(skopeo.digest(&reg, "imgbuild/hello:1.0.0"), old);
    assert!(
        reg.log().matches("listening on 127.0.0.1").count() >= 3,
        "{}",
        reg.log()
    );
}
