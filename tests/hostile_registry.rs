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
