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
