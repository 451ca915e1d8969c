//! imgbuild against registries that lie, stall, redirect and fish for credentials:
//! small scripted servers on 127.0.0.1 (tests/common/fake.rs). No traffic leaves
//! loopback: a URL naming another host reaches a fake HTTP proxy on 127.0.0.1
//! (`http_proxy`), which records what would have left the machine.

mod common;

use common::fake::{respond, FakeServer};
use common::{imgbuild, stderr, Ctx};

const USER: &str = "bob";
const PASSWORD: &str = "hunter2-Pa55word";
const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A build whose base is `base` (a registry reference).
fn ctx_with_base(base: &str) -> Ctx {
    let ctx = Ctx::new();
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base}\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
    ));
    ctx
}

/// `imgbuild` whose plain-HTTP requests to hosts other than 127.0.0.1 go to `proxy`.
fn imgbuild_behind(proxy: &FakeServer) -> std::process::Command {
    let mut c = imgbuild();
    let proxy_url = format!("http://{}", proxy.host());
    for k in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env(k, &proxy_url);
    }
    for k in ["no_proxy", "NO_PROXY"] {
        c.env(k, "127.0.0.1,localhost");
    }
    c
}

/// A fake proxy that answers 502 to everything and records what reached it.
fn recording_proxy() -> FakeServer {
    FakeServer::start(|_, out| respond(out, 502, &[], b""))
}

#[test]
fn credentials_are_not_sent_to_a_plain_http_token_realm_on_another_host() {
    let proxy = recording_proxy();
    let realm = "http://token.attacker.test/token";
    let registry = FakeServer::start(move |_, out| {
        let challenge = format!("Bearer realm=\"{realm}\",service=\"fake\"");
        respond(out, 401, &[("WWW-Authenticate", &challenge)], b"{}");
    });
    let ctx = ctx_with_base(&format!("{}/base@{ZERO_DIGEST}", registry.host()));
    let o = imgbuild_behind(&proxy)
        .env("IMGBUILD_REGISTRY_USER", USER)
        .env("IMGBUILD_REGISTRY_PASSWORD", PASSWORD)
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains(realm), "names the realm: {err}");
    assert!(err.contains("plain HTTP"), "says why: {err}");
    assert!(!err.contains(PASSWORD), "{err}");
    // Nothing went to the token host, and no request anywhere carried the credentials
    // beyond the registry itself.
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    assert!(
        registry
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "{:?}",
        registry.requests()
    );
}

/// A registry whose first `/v2/` names an allowed token realm (plain HTTP on
/// loopback) and every later one a plain-HTTP realm on another host: imgbuild gets
/// its tokens from the realm it checked, and nothing it sends ever carries the
/// credentials to the other host (oci-client, left to itself, asked `/v2/` again and
/// sent them to the second realm).
#[test]
fn credentials_are_not_sent_to_a_token_realm_named_by_a_later_challenge() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let proxy = recording_proxy();
    // The allowed realm: refuses, so that the build stops at the token.
    let token = FakeServer::start(|_, out| respond(out, 401, &[], b"{\"details\":\"denied\"}"));
    let allowed = format!("http://{}/token", token.host());
    let elsewhere = "http://token.attacker.test/token";
    let pings = std::sync::Arc::new(AtomicUsize::new(0));
    let registry = {
        let (allowed, pings) = (allowed.clone(), pings.clone());
        FakeServer::start(move |req, out| {
            let realm = if req.target == "/v2/" && pings.fetch_add(1, Ordering::SeqCst) == 0 {
                allowed.as_str()
            } else {
                elsewhere
            };
            let challenge = format!("Bearer realm=\"{realm}\",service=\"fake\"");
            respond(out, 401, &[("WWW-Authenticate", &challenge)], b"{}");
        })
    };
    let ctx = ctx_with_base(&format!("{}/base@{ZERO_DIGEST}", registry.host()));
    let o = imgbuild_behind(&proxy)
        .env("IMGBUILD_REGISTRY_USER", USER)
        .env("IMGBUILD_REGISTRY_PASSWORD", PASSWORD)
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let leaked: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.header("authorization").is_some() || r.target.contains(PASSWORD))
        .collect();
    assert!(leaked.is_empty(), "credentials left loopback: {leaked:?}");
    assert!(
        proxy
            .requests()
            .iter()
            .all(|r| !r.target.contains("attacker")),
        "{:?}",
        proxy.requests()
    );
    // The credentials went to the allowed realm, and only there.
    assert!(
        token.requests().iter().any(|r| r
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))),
        "{:?}",
        token.requests()
    );
    assert!(!err.contains(PASSWORD), "{err}");
    // The error names the realm the credentials were offered to, and only that one.
    assert!(err.contains(&allowed), "names the realm: {err}");
    assert!(!err.contains("attacker"), "{err}");
}

/// A token server that answers with an endless body: imgbuild stops reading at the
/// cap and says so, instead of reading it all.
#[test]
fn a_huge_token_answer_is_refused_without_reading_it_all() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const HUGE: usize = 200 << 20;
    let written = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let token = FakeServer::start(move |_, out| {
        use std::io::Write;
        // No Content-Length: the body ends when the connection closes.
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"token\":\"";
        let _ = out.write_all(head.as_bytes());
        let chunk = vec![b'a'; 1 << 20];
        while counter.load(Ordering::SeqCst) < HUGE {
            if out.write_all(&chunk).is_err() {
                break;
            }
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let realm = format!("http://{}/token", token.host());
    let registry = FakeServer::start(move |_, out| {
        let challenge = format!("Bearer realm=\"{realm}\",service=\"fake\"");
        respond(out, 401, &[("WWW-Authenticate", &challenge)], b"{}");
    });
    let (o, _ctx) = build_on(
        &format!("{}/base@{ZERO_DIGEST}", registry.host()),
        &[],
        imgbuild(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("larger than the 4 MiB"), "{err}");
    assert!(err.contains("stopped reading"), "{err}");
    // imgbuild hung up long before the end (socket buffers hold a few MiB more).
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < HUGE / 4, "the server wrote {sent} bytes");
}

/// Runs imgbuild and checks that it failed with exit 2, never showing `PASSWORD`, and
/// pointing at where credentials belong.
fn assert_refused_without_secret(o: &std::process::Output) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(!all.contains(PASSWORD), "the password is shown: {all}");
    assert!(all.contains("<redacted>"), "{all}");
    assert!(
        all.contains("docker login"),
        "says where credentials go: {all}"
    );
    all
}

#[test]
fn credentials_in_push_targets_are_refused_and_never_shown() {
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n",
    );
    let out = ctx.path().join("out");
    for target in [
        format!("{USER}:{PASSWORD}@127.0.0.1:9/repo:1"),
        format!("https://{USER}:{PASSWORD}@127.0.0.1:9/repo"),
    ] {
        for json in [false, true] {
            let mut c = imgbuild();
            c.arg("build")
                .arg(ctx.recipe())
                .arg("--out")
                .arg(&out)
                .arg(format!("--push={target}"));
            if json {
                c.arg("--json");
            }
            assert_refused_without_secret(&c.output().unwrap());
        }
        let o = imgbuild()
            .arg("push")
            .arg(format!("oci:{}", out.display()))
            .arg(&target)
            .output()
            .unwrap();
        assert_refused_without_secret(&o);
    }
    assert!(!out.join("index.json").exists(), "nothing was built");
}

#[test]
fn credentials_in_the_recipe_repository_or_base_are_refused_and_never_shown() {
    for table in [
        format!("repository = \"{USER}:{PASSWORD}@127.0.0.1:9/repo\"\n"),
        format!("[base]\nimage = \"https://{USER}:{PASSWORD}@127.0.0.1:9/base@{ZERO_DIGEST}\"\n"),
    ] {
        let ctx = Ctx::new();
        ctx.recipe_text(&format!(
            "[image]\nsource-date-epoch = 1700000000\n{table}[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n"
        ));
        let o = imgbuild()
            .arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(ctx.path().join("out"))
            .output()
            .unwrap();
        let all = assert_refused_without_secret(&o);
        assert!(all.contains("recipe.toml:"), "points at the recipe: {all}");
    }
}

/// Passwords whose halves are `HALVES`, joined by a character that ends an authority or
/// a userinfo in some parser (`/`, `@`, `:`, `\`) or spells one (`%2F`).
const HALVES: [&str; 2] = ["Xy7qHalf", "Zw4kHalf"];

fn tricky_passwords() -> Vec<String> {
    ["/", "@", ":", "\\", "%2F", "/@:\\"]
        .iter()
        .map(|sep| format!("{}{sep}{}", HALVES[0], HALVES[1]))
        .collect()
}

/// Exit 2, neither half of the password in stdout or stderr, `<redacted>` shown.
fn assert_refused_without_tricky_secret(o: &std::process::Output, what: &str) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(2), "{what}: {all}");
    for half in HALVES {
        assert!(!all.contains(half), "{what}: the password is shown: {all}");
    }
    assert!(all.contains("<redacted>"), "{what}: {all}");
}

#[test]
fn passwords_holding_slash_at_colon_or_backslash_are_never_shown() {
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n",
    );
    let out = ctx.path().join("out");
    for password in tricky_passwords() {
        for scheme in ["", "https://"] {
            let target = format!("{scheme}{USER}:{password}@127.0.0.1:9/repo:1");
            for json in [false, true] {
                let mut push = imgbuild();
                push.arg("push")
                    .arg(format!("oci:{}", out.display()))
                    .arg(&target);
                let mut build = imgbuild();
                build
                    .arg("build")
                    .arg(ctx.recipe())
                    .arg("--out")
                    .arg(&out)
                    .arg(format!("--push={target}"));
                if json {
                    push.arg("--json");
                    build.arg("--json");
                }
                assert_refused_without_tricky_secret(&push.output().unwrap(), &target);
                assert_refused_without_tricky_secret(&build.output().unwrap(), &target);
            }
            let toml = |v: &str| v.replace('\\', "\\\\");
            let repository = format!("{scheme}{USER}:{password}@127.0.0.1:9/repo");
            let base = format!("{scheme}{USER}:{password}@127.0.0.1:9/base@{ZERO_DIGEST}");
            for table in [
                format!("repository = \"{}\"\n", toml(&repository)),
                format!("[base]\nimage = \"{}\"\n", toml(&base)),
            ] {
                let ctx = Ctx::new();
                ctx.recipe_text(&format!(
                    "[image]\nsource-date-epoch = 1700000000\n{table}[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n"
                ));
                let o = imgbuild()
                    .arg("build")
                    .arg(ctx.recipe())
                    .arg("--out")
                    .arg(ctx.path().join("out"))
                    .output()
                    .unwrap();
                assert_refused_without_tricky_secret(&o, &table);
            }
        }
    }
    assert!(!out.join("index.json").exists(), "nothing was built");
}

#[test]
fn credentials_spelled_with_toml_escapes_are_blanked_in_the_recipe_excerpt() {
    // A basic string with `\\`, with `\uXXXX` (one for the `@`), a literal string: the
    // excerpt must not show the source line, whatever the spelling.
    for value in [
        r#""bob:Xy7qHalf\\Zw4kHalf@127.0.0.1:9/repo""#,
        r#""bob:Xy7qHalf\u002FZw4kHalf@127.0.0.1:9/repo""#,
        r#""bob:Xy7qHalf/Zw4kHalf\u0040127.0.0.1:9/repo""#,
        r#"'bob:Xy7qHalf\Zw4kHalf@127.0.0.1:9/repo'"#,
    ] {
        for table in [
            format!("repository = {value}\n"),
            format!("[base]\nimage = {value}\n"),
        ] {
            let ctx = Ctx::new();
            ctx.recipe_text(&format!(
                "[image]\nsource-date-epoch = 1700000000\n{table}[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n"
            ));
            for json in [false, true] {
                let mut c = imgbuild();
                c.arg("build")
                    .arg(ctx.recipe())
                    .arg("--out")
                    .arg(ctx.path().join("out"));
                if json {
                    c.arg("--json");
                }
                assert_refused_without_tricky_secret(&c.output().unwrap(), &table);
            }
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A one-layer image manifest whose config and layer are `config` and `layer`.
fn manifest_for(config: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256(layer),
            "size": layer.len(),
        }],
    }))
    .unwrap()
}

/// A fake registry asking for no credentials, serving `manifest` for its digest and
/// answering blob GETs with `blob`.
fn registry_with_blobs(
    manifest: Vec<u8>,
    blob: impl Fn(&common::fake::Seen, &mut std::net::TcpStream) + Send + Sync + 'static,
) -> FakeServer {
    FakeServer::start(move |req, out| {
        if req.target == "/v2/" {
            respond(out, 200, &[], b"{}");
        } else if req.target.contains("/manifests/") {
            let kind = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
            respond(out, 200, &kind, &manifest);
        } else if req.target.contains("/blobs/") {
            blob(req, out);
        } else {
            respond(out, 404, &[], b"{}");
        }
    })
}

fn build_on(base: &str, extra: &[&str], cmd: std::process::Command) -> (std::process::Output, Ctx) {
    let ctx = ctx_with_base(base);
    let mut cmd = cmd;
    cmd.arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .args(extra);
    (cmd.output().unwrap(), ctx)
}

#[test]
fn a_blob_redirected_to_plain_http_on_another_host_is_not_followed() {
    let proxy = recording_proxy();
    let (config, layer) = (b"{}".to_vec(), b"layer".to_vec());
    let manifest = manifest_for(&config, &layer);
    let digest = sha256(&manifest);
    let registry = registry_with_blobs(manifest, |req, out| {
        let to = format!("http://cdn.attacker.test{}", req.target);
        respond(out, 307, &[("Location", &to)], b"");
    });
    let (o, _ctx) = build_on(
        &format!("{}/base@{digest}", registry.host()),
        &[],
        imgbuild_behind(&proxy),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("redirected to plain HTTP (http://cdn.attacker.test/"),
        "{err}"
    );
    assert!(err.contains("plain HTTP to cdn.attacker.test"), "{err}");
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}

#[test]
fn a_huge_manifest_is_refused_without_reading_it_all() {
    const HUGE: usize = 200 << 20;
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    let registry = FakeServer::start(move |req, out| {
        use std::io::Write;
        if req.target == "/v2/" {
            return respond(out, 200, &[], b"{}");
        }
        // No Content-Length: the body ends when the connection closes.
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n";
        let _ = out.write_all(head.as_bytes());
        let chunk = vec![b' '; 1 << 20];
        while counter.load(std::sync::atomic::Ordering::SeqCst) < HUGE {
            if out.write_all(&chunk).is_err() {
                break;
            }
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
    });
    let (o, _ctx) = build_on(
        &format!("{}/base@{ZERO_DIGEST}", registry.host()),
        &[],
        imgbuild(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("larger than the 4 MiB"), "{err}");
    assert!(err.contains("stopped reading"), "{err}");
    // imgbuild hung up long before the end (socket buffers hold a few MiB more).
    let sent = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < HUGE / 4, "the server wrote {sent} bytes");
}

#[test]
fn a_registry_that_stalls_mid_blob_times_out_and_says_so() {
    let (config, layer) = (b"{}".to_vec(), vec![7u8; 4096]);
    let manifest = manifest_for(&config, &layer);
    let digest = sha256(&manifest);
    let config_digest = sha256(&config);
    let registry = registry_with_blobs(manifest, move |req, out| {
        use std::io::Write;
        if req.target.ends_with(&config_digest) {
            return respond(out, 200, &[], &config);
        }
        common::fake::respond_head(out, 200, &[], 4096);
        let _ = out.write_all(&[7u8; 100]);
        let _ = out.flush();
        // Then nothing: a stalled registry (bounded, so that the test's threads end).
        std::thread::sleep(std::time::Duration::from_secs(20));
    });
    let (o, _ctx) = build_on(
        &format!("{}/base@{digest}", registry.host()),
        &["--registry-timeout", "1"],
        imgbuild(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let host = registry.host();
    assert!(
        err.contains(&format!(
            "timed out after 1 s without data from {host} (attempt 6 of 6)"
        )),
        "{err}"
    );
    assert!(err.contains("--registry-timeout"), "{err}");
}

#[test]
fn an_upload_location_on_plain_http_elsewhere_gets_no_bytes() {
    let proxy = recording_proxy();
    let registry = FakeServer::start(|req, out| {
        if req.target == "/v2/" {
            respond(out, 200, &[], b"{}");
        } else if req.method == "POST" && req.target.contains("/blobs/uploads/") {
            let to = [("Location", "http://upload.attacker.test/session/1")];
            respond(out, 202, &to, b"");
        } else {
            respond(out, 404, &[], b"{}");
        }
    });
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n",
    );
    let o = imgbuild_behind(&proxy)
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={}/repo:1", registry.host()))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("to be uploaded to http://upload.attacker.test/session/1; imgbuild refuses (plain HTTP to upload.attacker.test"),
        "{err}"
    );
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    assert!(
        registry.requests().iter().all(|r| r.method != "PUT"),
        "{:?}",
        registry.requests()
    );
}

/// Records the retry notes of a registry client.
struct Retries(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl imgbuild::events::Reporter for Retries {
    fn report(&self, event: imgbuild::events::Event) {
        if let imgbuild::events::Event::Retrying {
            what, why, attempt, ..
        } = event
        {
            self.0
                .lock()
                .unwrap()
                .push(format!("{what}: {why} (attempt {attempt})"));
        }
    }
}

/// A registry whose manifest GETs answer 503 with `Retry-After: <retry_after>` the
/// first `failures` times, then the manifest; `/v2/` answers 200.
fn registry_failing(failures: usize, retry_after: &'static str) -> FakeServer {
    let count = std::sync::atomic::AtomicUsize::new(0);
    FakeServer::start(move |req, out| {
        if req.target == "/v2/" {
            respond(out, 200, &[], b"{}");
        } else if req.target == "/v2/acme/app/manifests/v1" {
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures {
                respond(out, 503, &[("Retry-After", retry_after)], b"busy");
            } else {
                let ct = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");
                respond(out, 200, &[ct], br#"{"schemaVersion":2}"#);
            }
        } else {
            respond(out, 404, &[], b"{}");
        }
    })
}

/// Gets `acme/app:v1` from `registry` with `retry`: the result and the retry notes.
fn get_manifest_with(
    registry: &FakeServer,
    retry: imgbuild::registry::client::Retry,
) -> (imgbuild::Result<Vec<u8>>, Vec<String>) {
    use imgbuild::registry::client::{runtime, Options, RegistryClient};
    let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let opts = Options {
        retry,
        events: imgbuild::events::Events::new(Retries(notes.clone())),
        ..Options::default()
    };
    let result = runtime().unwrap().block_on(async {
        let client = RegistryClient::connect(&registry.host(), "acme/app", &opts).await?;
        client
            .get_manifest("acme/app", "v1")
            .await
            .map(|(bytes, _)| bytes)
    });
    let notes = notes.lock().unwrap().clone();
    (result, notes)
}

fn manifest_gets(registry: &FakeServer) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.target == "/v2/acme/app/manifests/v1")
        .count()
}

#[test]
fn a_registry_that_fails_twice_with_retry_after_is_retried_until_it_answers() {
    let registry = registry_failing(2, "0");
    let retry = imgbuild::registry::client::Retry {
        attempts: 4,
        ..Default::default()
    };
    let (result, notes) = get_manifest_with(&registry, retry);
    assert_eq!(result.unwrap(), br#"{"schemaVersion":2}"#);
    assert_eq!(manifest_gets(&registry), 3);
    let at = format!("GET manifest v1 at {}", registry.host());
    assert_eq!(
        notes,
        [
            format!("{at}: HTTP 503 (attempt 2)"),
            format!("{at}: HTTP 503 (attempt 3)")
        ]
    );
}

#[test]
fn a_registry_that_keeps_failing_is_given_up_after_the_attempts() {
    let registry = registry_failing(usize::MAX, "0");
    let retry = imgbuild::registry::client::Retry {
        attempts: 3,
        ..Default::default()
    };
    let (result, notes) = get_manifest_with(&registry, retry);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("HTTP 503 (attempt 3 of 3)"), "{err}");
    assert_eq!(manifest_gets(&registry), 3);
    assert_eq!(notes.len(), 2, "{notes:?}");
}

#[test]
fn a_retry_after_past_the_budget_ends_the_retries_at_once() {
    // The backoff alone would retry at once (its ceiling is a nanosecond): only the
    // Retry-After, an hour against a minute's budget, stops it.
    let registry = registry_failing(usize::MAX, "3600");
    let retry = imgbuild::registry::client::Retry {
        attempts: 5,
        base: std::time::Duration::from_nanos(1),
        max: std::time::Duration::from_nanos(1),
        budget: std::time::Duration::from_secs(60),
    };
    let (result, notes) = get_manifest_with(&registry, retry);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("HTTP 503 (attempt 1 of 5)"), "{err}");
    assert_eq!(manifest_gets(&registry), 1);
    assert!(notes.is_empty(), "{notes:?}");
}
