//! imgbuild against a real registry (Debian's `docker-registry`, started by
//! tests/common/registry.rs on 127.0.0.1): `build --push`, `imgbuild push`,
//! `inspect` of registry references, base images pulled from a registry, `lock` and
//! `--locked`, credentials, TLS and failures. skopeo is the independent client that
//! checks what we pushed.
//!
//! Tools (Debian): `apt-get install -y docker-registry skopeo openssl apache2-utils`.

mod common;

use common::registry::{Mode, Registry};
use common::{imgbuild, require_tool, stderr, Ctx};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const USER: &str = "imgbuild-pusher";
const PASSWORD: &str = "s3cret-Pa55word";

fn recipe(extra: &str) -> String {
    format!(
        r#"[image]
source-date-epoch = 1700000000
tags = ["1.0"]
{extra}
[config]
entrypoint = ["/app/hello"]

[[layer]]
name = "app"
  [[layer.file]]
  path = "/app/hello"
  content = "hello from the registry test\n"
  mode = 0o755
  [[layer.file]]
  path = "/etc/motd"
  content = "welcome\n"
"#
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run imgbuild")
}

/// Runs `cmd`, failing the test with its stderr unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `imgbuild` with flags reaching `reg` (its CA when TLS).
fn imgbuild_for(reg: &Registry) -> Command {
    let mut c = imgbuild();
    if let Some(ca) = reg.ca_cert_path() {
        c.arg("--registry-ca").arg(ca);
    }
    c
}

/// `skopeo inspect --raw`-style check: the digest the registry serves for `reference`.
fn skopeo_digest(reg: &Registry, reference: &str) -> String {
    require_tool("skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--format", "{{.Digest}}"]);
    cmd.args(reg.skopeo_flags(""));
    cmd.arg(format!("docker://{reference}"));
    let o = cmd.output().expect("run skopeo");
    assert!(
        o.status.success(),
        "skopeo inspect {reference}: {}\n{}",
        stderr(&o),
        reg.log()
    );
    stdout(&o)
}

fn skopeo_raw(reg: &Registry, reference: &str) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    cmd.args(reg.skopeo_flags(""));
    cmd.arg(format!("docker://{reference}"));
    let o = cmd.output().expect("run skopeo");
    assert!(o.status.success(), "skopeo inspect --raw: {}", stderr(&o));
    o.stdout
}

fn build_push(ctx: &Ctx, out: &Path, reg: &Registry, target: &str, extra: &[&str]) -> Output {
    run(imgbuild_for(reg)
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(out)
        .arg(format!("--push={target}"))
        .args(extra))
}

#[test]
fn build_push_plain_registry_gives_the_built_digest_to_skopeo() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let o = build_push(&ctx, &out, &reg, &reg.reference("acme/hello"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = stdout(&o);
    assert!(digest.starts_with("sha256:"), "{digest}");
    // Every tag points at our digest, and the manifest bytes are ours.
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("acme/hello:1.0")),
        digest
    );
    let ours = fs::read(out.join("blobs/sha256").join(&digest[7..])).unwrap();
    assert_eq!(skopeo_raw(&reg, &reg.reference("acme/hello:1.0")), ours);

    // skopeo copies it back into a layout with the same digest.
    let back = ctx.path().join("back");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--preserve-digests", "--insecure-policy"]);
    cmd.args(reg.skopeo_flags("src-"));
    cmd.arg(format!("docker://{}", reg.reference("acme/hello:1.0")));
    cmd.arg(format!("oci:{}:copy", back.display()));
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "skopeo copy: {}", stderr(&o));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);

    // The same build pushed again: every blob is already there.
    let o = build_push(&ctx, &out, &reg, &reg.reference("acme/hello"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), digest, "pushing must not change the digest");
    assert!(
        stderr(&o).contains("0 uploaded") && stderr(&o).contains("already there"),
        "re-push uploaded something: {}",
        stderr(&o)
    );
}

#[test]
fn push_command_copies_a_layout_image_and_inspect_reads_it_back() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe("platforms = [\"linux/amd64\", \"linux/arm64\"]"));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    // No tag on the destination: the source's tag is used.
    let o = run_ok(
        imgbuild()
            .arg("push")
            .arg(format!("oci:{}:1.0", out.display()))
            .arg(reg.reference("multi/app"))
            .arg("--json"),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["digest"], digest);
    assert_eq!(report["tags"], serde_json::json!(["1.0"]));
    // camelCase keys, and the image ready to pull by digest.
    assert!(
        report["uploadedBytes"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert!(report.get("uploaded_bytes").is_none(), "{report}");
    assert_eq!(
        report["reference"],
        format!("{}@{digest}", reg.reference("multi/app")),
        "{report}"
    );
    // An index: skopeo sees our exact index bytes.
    let ours = fs::read(out.join("blobs/sha256").join(&digest[7..])).unwrap();
    assert_eq!(skopeo_raw(&reg, &reg.reference("multi/app:1.0")), ours);

    let o = run_ok(
        imgbuild()
            .arg("inspect")
            .arg(reg.reference("multi/app:1.0"))
            .arg("--json"),
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["digest"], digest);
    let platforms: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(v["manifests"][1]["config"]["architecture"], "arm64");

    // The layout's inspect and the registry's agree.
    let local = run(imgbuild()
        .arg("inspect")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg("--json"));
    let l: serde_json::Value = serde_json::from_str(&stdout(&local)).unwrap();
    assert_eq!(l["manifests"], v["manifests"]);

    // Pushing by digest only: the destination names the digest.
    run_ok(
        imgbuild()
            .arg("push")
            .arg(format!("oci:{}@{digest}", out.display()))
            .arg(format!("{}@{digest}", reg.reference("bydigest/app"))),
    );
    // (No tag exists there, so ask for the raw bytes by digest.)
    assert_eq!(
        skopeo_raw(&reg, &format!("{}@{digest}", reg.reference("bydigest/app"))),
        ours
    );
}

#[test]
fn htpasswd_registry_takes_credentials_from_docker_config_and_env() {
    let reg = Registry::start(Mode::htpasswd(USER, PASSWORD));
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let home = tempfile::tempdir().unwrap();
    fs::create_dir_all(home.path().join(".docker")).unwrap();
    fs::write(
        home.path().join(".docker/config.json"),
        reg.docker_config_json().to_string(),
    )
    .unwrap();

    // From ~/.docker/config.json (auths).
    let o = build_push(&ctx, &out, &reg, &reg.reference("private/app"), &[]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "no credentials must fail: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains(&reg.host()), "{}", stderr(&o));
    assert!(
        !out.join("index.json").exists(),
        "a push that cannot authenticate fails before building"
    );
    let o = run_ok(
        imgbuild_for(&reg)
            .env("HOME", home.path())
            .arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg(format!("--push={}", reg.reference("private/app"))),
    );
    let digest = stdout(&o);
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("private/app:1.0")),
        digest
    );

    // From IMGBUILD_REGISTRY_USER/_PASSWORD.
    run_ok(
        imgbuild_for(&reg)
            .env("IMGBUILD_REGISTRY_USER", USER)
            .env("IMGBUILD_REGISTRY_PASSWORD", PASSWORD)
            .arg("push")
            .arg(format!("oci:{}:1.0", out.display()))
            .arg(reg.reference("private/other:2")),
    );

    // Wrong credentials: exit 3, the registry named, the secret nowhere.
    let wrong = "not-the-Pa55word";
    let o = run(imgbuild_for(&reg)
        .env("IMGBUILD_REGISTRY_USER", USER)
        .env("IMGBUILD_REGISTRY_PASSWORD", wrong)
        .arg("push")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg(reg.reference("private/other:3")));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&reg.host()) && err.contains("401"), "{err}");
    assert!(
        err.contains("IMGBUILD_REGISTRY_USER"),
        "the source of the credentials is named: {err}"
    );
    assert!(
        !err.contains(wrong) && !stdout(&o).contains(wrong),
        "secret leaked: {err}"
    );
}

#[test]
fn htpasswd_registry_takes_credentials_from_a_credential_helper() {
    let reg = Registry::start(Mode::htpasswd(USER, PASSWORD));
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(home.path().join(".docker")).unwrap();
    let log = home.path().join("helper.log");
    let helper = bin.join("docker-credential-imgbuildtest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\necho \"$server\" >> {log}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        home.path().join(".docker/config.json"),
        serde_json::json!({ "credHelpers": { reg.host(): "imgbuildtest" } }).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = run_ok(
        imgbuild_for(&reg)
            .env("HOME", home.path())
            .env("PATH", path)
            .arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg(format!("--push={}", reg.reference("helped/app"))),
    );
    assert!(
        !stderr(&o).contains(PASSWORD),
        "secret leaked: {}",
        stderr(&o)
    );
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("helped/app:1.0")),
        stdout(&o)
    );
    let asked = fs::read_to_string(&log).expect("the helper was run");
    assert!(asked.contains(&reg.host()), "helper asked for {asked:?}");
}

#[test]
fn tls_registry_needs_its_ca_and_works_with_registry_ca() {
    let reg = Registry::start(Mode::Tls);
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    // Without the CA: TLS is verified, so the push fails, and no plain-HTTP fallback
    // hides the failure.
    let o = run(imgbuild()
        .arg("push")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg(reg.reference("tls/app:1.0")));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&reg.host()), "{}", stderr(&o));
    // With it: pushed over HTTPS.
    run_ok(
        imgbuild_for(&reg)
            .arg("push")
            .arg(format!("oci:{}:1.0", out.display()))
            .arg(reg.reference("tls/app:1.0")),
    );
    assert_eq!(skopeo_digest(&reg, &reg.reference("tls/app:1.0")), digest);
    // A CA file that holds no certificate is bad input.
    let bogus = ctx.path().join("bogus.pem");
    fs::write(&bogus, "not a certificate\n").unwrap();
    let o = run(imgbuild()
        .arg("--registry-ca")
        .arg(&bogus)
        .arg("push")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg(reg.reference("tls/app:1.0")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bogus.pem"), "{}", stderr(&o));
}

/// Pushes a base image built by imgbuild and returns (its digest, reference by tag).
fn push_base(reg: &Registry, ctx: &Ctx, repo_tag: &str, greeting: &str) -> String {
    let base_ctx = Ctx::new();
    base_ctx.recipe_text(&format!(
        r#"[image]
source-date-epoch = 1600000000
[config]
env = {{ GREETING = "{greeting}" }}
[[layer]]
name = "base"
  [[layer.file]]
  path = "/etc/motd"
  content = "{greeting}\n"
  [[layer.file]]
  path = "/etc/os-release"
  content = "ID=imgbuild-test\n"
"#
    ));
    let out = ctx.path().join(format!("base-out-{greeting}"));
    let o = run_ok(
        imgbuild()
            .arg("build")
            .arg(base_ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg(format!("--push={}", reg.reference(repo_tag))),
    );
    stdout(&o)
}

#[test]
fn base_image_from_a_registry_is_pulled_verified_and_mounted_on_push() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let base_digest = push_base(&reg, &ctx, "lib/base:1", "hi");
    let base_ref = format!("{}@{base_digest}", reg.reference("lib/base:1"));
    ctx.recipe_text(&format!(
        r#"[image]
source-date-epoch = 1700000000
[base]
image = "{base_ref}"
[[layer]]
name = "app"
  [[layer.file]]
  path = "/app/hello"
  content = "on top\n"
[[layer]]
name = "cleanup"
remove = ["/etc/motd"]
"#
    ));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    let layout = common::Layout::new(&out);
    let manifest = layout.manifest(&digest);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        base_ref.as_str()
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base_digest.as_str()
    );
    // The base's layer comes first, byte for byte (same descriptor as in the registry).
    let base_manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(
        &reg,
        &format!("{}@{base_digest}", reg.reference("lib/base")),
    ))
    .unwrap();
    assert_eq!(manifest["layers"][0], base_manifest["layers"][0]);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    let config = layout.config(&digest);
    assert!(
        config["config"]["Env"].to_string().contains("GREETING=hi"),
        "{config}"
    );
    // The whiteout against the base's file.
    let last = layout.layer_digests(&digest)[2].clone();
    let names: Vec<String> = layout.entries(&last).into_iter().map(|e| e.path).collect();
    assert!(names.contains(&"etc/.wh.motd".to_string()), "{names:?}");

    // A second build into a fresh layout gives the same digest (the base is pinned).
    let out2 = ctx.path().join("out2");
    assert_eq!(ctx.build_ok(&out2, &[]), digest);

    // Pushed to another repository of the same registry: the base layer is mounted.
    let o = build_push(&ctx, &out, &reg, &reg.reference("apps/derived:1"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 mounted"), "{}", stderr(&o));
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("apps/derived:1")),
        digest
    );
}

#[test]
fn lock_pins_a_tagged_base_and_locked_builds_enforce_it() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let first = push_base(&reg, &ctx, "lib/moving:stable", "one");
    let base = reg.reference("lib/moving:stable");
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base}\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
    ));
    let out = ctx.path().join("out");
    // --locked without a lock: exit 2, nothing written.
    let o = ctx.build(&out, &["--locked"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("recipe.lock"), "{}", stderr(&o));
    assert!(!out.exists());
    // Unlocked: the tag is resolved now, with a warning.
    let o = ctx.build(&out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not pinned"), "{}", stderr(&o));
    let unlocked = stdout(&o);

    let o = run_ok(imgbuild().arg("lock").arg(ctx.recipe()));
    assert!(stdout(&o).is_empty(), "lock prints nothing on stdout");
    let lock = fs::read_to_string(ctx.path().join("recipe.lock")).unwrap();
    assert!(
        lock.contains(&first) && lock.contains("\"linux/amd64\""),
        "{lock}"
    );

    // The tag moves; the locked build still uses the pinned base.
    push_base(&reg, &ctx, "lib/moving:stable", "two");
    let fresh = ctx.path().join("fresh");
    let o = ctx.build(&fresh, &["--locked"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), unlocked);

    // A stale lock: the recipe now names another base.
    let text = fs::read_to_string(ctx.recipe()).unwrap();
    fs::write(
        ctx.recipe(),
        text.replace("lib/moving:stable", "lib/moving:other"),
    )
    .unwrap();
    let o = ctx.build(&ctx.path().join("stale"), &["--locked"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("lib/moving:stable"), "{}", stderr(&o));
    assert!(!ctx.path().join("stale").exists());
}

#[test]
fn unreachable_registry_fails_with_exit_3_naming_the_host() {
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let o = run(imgbuild()
        .arg("push")
        .arg(format!("oci:{}@{digest}", out.display()))
        .arg(format!("{host}/x/y:1")));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&host), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn bad_push_targets_are_bad_input() {
    let ctx = Ctx::new();
    ctx.recipe_text(&format!("# a comment first\n{}", recipe("")));
    let out = ctx.path().join("out");
    // --push without a repository in the recipe.
    let o = ctx.build(&out, &["--push"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("repository"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("recipe.toml:2:1") && stderr(&o).contains("2 | [image]"),
        "points at the [image] table: {}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing is written");
    // Without an [image] table the error names the recipe file.
    let bare = Ctx::new();
    bare.recipe_text("[[layer]]\nname = \"a\"\n  [[layer.dir]]\n  path = \"/a\"\n");
    let o = bare.build(&bare.path().join("out"), &["--push"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("recipe.toml: --push: the recipe names no [image].repository"),
        "{}",
        stderr(&o)
    );
    // A layout reference as a push target.
    let o = ctx.build(&out, &["--push=oci:somewhere"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A digest in the push target.
    let o = ctx.build(
        &out,
        &[&format!("--push=127.0.0.1:1/x@sha256:{}", "a".repeat(64))],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A source that is not a layout reference.
    let o = run(imgbuild().args(["push", "127.0.0.1:1/a:b", "127.0.0.1:1/c:d"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn token_auth_registry_push_pull_and_mount_with_source_scope() {
    let reg = Registry::start(Mode::token(USER, PASSWORD));
    let ctx = Ctx::new();
    let creds = |c: &mut Command| {
        c.env("IMGBUILD_REGISTRY_USER", USER)
            .env("IMGBUILD_REGISTRY_PASSWORD", PASSWORD);
    };
    // A base, pushed with a token.
    let base_ctx = Ctx::new();
    base_ctx.recipe_text(
        "[image]\nsource-date-epoch = 1\n[[layer]]\nname = \"b\"\n  [[layer.file]]\n  path = \"/etc/base\"\n  content = \"base\\n\"\n",
    );
    let mut cmd = imgbuild();
    creds(&mut cmd);
    let o = run(cmd
        .arg("build")
        .arg(base_ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("base-out"))
        .arg(format!("--push={}", reg.reference("lib/base:1"))));
    assert!(o.status.success(), "{}\n{}", stderr(&o), reg.log());
    let base_digest = stdout(&o);
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("lib/base:1")),
        base_digest
    );

    // Derived from it (pulled with a token), pushed to another repository: mounted,
    // with a token that asked for pull on the base's repository.
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1\n[base]\nimage = \"{}@{base_digest}\"\n[[layer]]\nname = \"a\"\n  [[layer.file]]\n  path = \"/app\"\n  content = \"app\\n\"\n",
        reg.reference("lib/base:1")
    ));
    let mut cmd = imgbuild();
    creds(&mut cmd);
    let o = run(cmd
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={}", reg.reference("apps/derived:1"))));
    assert!(o.status.success(), "{}\n{}", stderr(&o), reg.log());
    assert!(stderr(&o).contains("1 mounted"), "{}", stderr(&o));
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("apps/derived:1")),
        stdout(&o)
    );
    let asked = reg.token_requests();
    assert!(
        asked.iter().any(|r| r.granted
            && r.scopes.iter().any(|s| s == "repository:lib/base:pull")
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:apps/derived:"))),
        "no token asked for the mount's source scope: {asked:?}"
    );

    // Wrong password: the token server refuses; exit 3, no secret.
    let o = run(imgbuild()
        .env("IMGBUILD_REGISTRY_USER", USER)
        .env("IMGBUILD_REGISTRY_PASSWORD", "wrong-Pa55")
        .arg("inspect")
        .arg(reg.reference("apps/derived:1")));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!stderr(&o).contains("wrong-Pa55"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&reg.host()), "{}", stderr(&o));
}

#[test]
fn push_survives_dropped_connections_500_and_429() {
    use common::proxy::{Action, Fault, FaultProxy};
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![
            Fault::new(Action::Drop).method("HEAD").path("/blobs/"),
            Fault::new(Action::Status(500))
                .method("POST")
                .path("/blobs/uploads/"),
            Fault::new(Action::Status(429))
                .method("PUT")
                .path("/blobs/uploads/"),
            Fault::new(Action::Drop)
                .method("PUT")
                .path("/blobs/uploads/"),
            Fault::new(Action::Status(503))
                .method("PUT")
                .path("/manifests/"),
        ],
    );
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    let target = format!("{}/faulty/app:1.0", proxy.host());
    let o = run(imgbuild()
        .arg("push")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg(&target));
    assert!(o.status.success(), "{}\n{:?}", stderr(&o), proxy.requests());
    assert_eq!(stdout(&o), digest);
    assert_eq!(
        proxy.faults_left(),
        0,
        "every fault was hit: {:?}",
        proxy.requests()
    );
    assert!(stderr(&o).contains("retrying"), "{}", stderr(&o));
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("faulty/app:1.0")),
        digest
    );

    // A re-push with nothing new: one HEAD per blob, then the manifest.
    let before = proxy.requests().len();
    run_ok(
        imgbuild()
            .arg("push")
            .arg(format!("oci:{}:1.0", out.display()))
            .arg(&target),
    );
    let again: Vec<_> = proxy.requests()[before..].to_vec();
    let heads = again
        .iter()
        .filter(|r| r.0 == "HEAD" && r.1.contains("/blobs/"))
        .count();
    let uploads = again
        .iter()
        .filter(|r| r.1.contains("/blobs/uploads"))
        .count();
    let manifests = again
        .iter()
        .filter(|r| r.0 == "PUT" && r.1.contains("/manifests/"))
        .count();
    let pings = again
        .iter()
        .filter(|r| r.0 == "GET" && r.1 == "/v2/")
        .count();
    let blobs = common::Layout::new(&out).layer_digests(&digest).len() + 1;
    assert_eq!(heads, blobs, "one HEAD per blob: {again:?}");
    assert_eq!(uploads, 0, "{again:?}");
    assert_eq!(manifests, 1, "{again:?}");
    // And nothing else but the one version check that finds how to talk to it.
    assert_eq!(pings, 1, "one GET /v2/: {again:?}");
    assert_eq!(again.len(), heads + manifests + pings, "{again:?}");
}

#[test]
fn registry_killed_mid_push_fails_with_exit_3_and_moves_no_tag() {
    use common::proxy::{Action, Fault, FaultProxy};
    let mut reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let old = ctx.build_ok(&out, &[]);
    // The tag exists, pointing at the old image.
    run_ok(
        imgbuild()
            .arg("push")
            .arg(format!("oci:{}:1.0", out.display()))
            .arg(reg.reference("killed/app:1.0")),
    );
    // A new image; the registry dies when its first blob upload starts.
    ctx.recipe_text(&recipe("").replace("hello from the registry test", "a newer build"));
    let new = ctx.build_ok(&out, &[]);
    assert_ne!(new, old);
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![Fault::new(Action::Run(Box::new(reg.kill_switch())))
            .method("POST")
            .path("/blobs/uploads/")],
    );
    let o = run(imgbuild()
        .arg("push")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg(format!("{}/killed/app:1.0", proxy.host())));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&proxy.host()), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    reg.restart();
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("killed/app:1.0")),
        old,
        "the tag moved although the push failed"
    );
}

/// `docker login` to some registries (Azure ACR among them) stores an OAuth2 refresh
/// token, `identitytoken`, instead of a password. imgbuild exchanges it at the token
/// realm (`POST`, `grant_type=refresh_token`) for access tokens: push, a base pulled
/// back, and a wrong token refused with exit 3 without showing it.
#[test]
fn token_registry_takes_a_docker_identity_token() {
    let reg = Registry::start(Mode::token(USER, PASSWORD));
    let identity = reg
        .identity_token()
        .expect("token mode has an identity token");
    let home = tempfile::tempdir().unwrap();
    let config = |token: &str| {
        fs::create_dir_all(home.path().join(".docker")).unwrap();
        let auth = base64_basic("<token>", "");
        fs::write(
            home.path().join(".docker/config.json"),
            serde_json::json!({
                "auths": { reg.host(): { "auth": auth, "identitytoken": token } }
            })
            .to_string(),
        )
        .unwrap();
    };
    config(&identity);
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let o = run_ok(
        imgbuild_for(&reg)
            .env("HOME", home.path())
            .arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg(format!("--push={}", reg.reference("acr/app"))),
    );
    let digest = stdout(&o);
    assert_eq!(skopeo_digest(&reg, &reg.reference("acr/app:1.0")), digest);
    let grants: Vec<_> = reg
        .token_requests()
        .into_iter()
        .filter(|r| r.grant.as_deref() == Some("refresh_token"))
        .collect();
    assert!(
        grants
            .iter()
            .any(|r| r.granted && r.scopes.iter().any(|s| s == "repository:acr/app:pull,push")),
        "no refresh-token grant with push scope: {:?}",
        reg.token_requests()
    );

    // A build on that image, pushed to another repository: the base layer is mounted,
    // with a token exchanged for both scopes (push here, pull there).
    let derived = Ctx::new();
    derived.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1\n[base]\nimage = \"{}\"\n[[layer]]\nname = \"more\"\n  [[layer.file]]\n  path = \"/etc/more\"\n  content = \"more\\n\"\n",
        reg.reference(&format!("acr/app@{digest}"))
    ));
    let o = run_ok(
        imgbuild_for(&reg)
            .env("HOME", home.path())
            .arg("build")
            .arg(derived.recipe())
            .arg("--out")
            .arg(derived.path().join("out"))
            .arg(format!("--push={}", reg.reference("acr/derived:1"))),
    );
    assert!(
        reg.token_requests()
            .iter()
            .any(|r| r.grant.as_deref() == Some("refresh_token")
                && r.granted
                && r.scopes
                    == [
                        "repository:acr/derived:pull,push".to_string(),
                        "repository:acr/app:pull".to_string()
                    ]),
        "no refresh-token grant for the mount's two scopes: {:?}",
        reg.token_requests()
    );
    assert!(
        !stderr(&o).contains(" 0 mounted"),
        "the base layer is mounted: {}",
        stderr(&o)
    );

    // The same credentials read it back (inspect pulls with a token of its own).
    let o = run_ok(
        imgbuild_for(&reg)
            .env("HOME", home.path())
            .args(["inspect", &reg.reference("acr/app:1.0")]),
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&digest));

    // A revoked token: exit 3, naming the file, never the token.
    let wrong = "revoked-identity-token-0123456789";
    config(wrong);
    let o = run(imgbuild_for(&reg)
        .env("HOME", home.path())
        .arg("push")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg(reg.reference("acr/other:1.0")));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains(wrong),
        "the token leaked: {}",
        stderr(&o)
    );
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Hosted registries combine the two: HTTPS and Bearer tokens. Here with a private CA:
/// build --push with credentials from the environment, skopeo reads it back over
/// verified TLS, and a registry base is pulled and mounted through the same flow.
#[test]
fn tls_and_token_auth_together_push_pull_and_mount() {
    let reg = Registry::start(Mode::tls_token(USER, PASSWORD));
    let creds = |c: &mut Command| {
        c.env("IMGBUILD_REGISTRY_USER", USER)
            .env("IMGBUILD_REGISTRY_PASSWORD", PASSWORD);
    };
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let mut cmd = imgbuild_for(&reg);
    creds(&mut cmd);
    let o = run_ok(
        cmd.arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg(format!("--push={}", reg.reference("hosted/app"))),
    );
    let digest = stdout(&o);
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("hosted/app:1.0")),
        digest
    );

    // The pushed image as a base, in another repository of the same registry.
    let derived = Ctx::new();
    derived.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1\n[base]\nimage = \"{}\"\n[[layer]]\nname = \"more\"\n  [[layer.file]]\n  path = \"/etc/more\"\n  content = \"more\\n\"\n",
        reg.reference(&format!("hosted/app@{digest}"))
    ));
    let mut cmd = imgbuild_for(&reg);
    creds(&mut cmd);
    let o = run_ok(
        cmd.arg("build")
            .arg(derived.recipe())
            .arg("--out")
            .arg(derived.path().join("out"))
            .arg(format!("--push={}", reg.reference("hosted/derived:1"))),
    );
    let derived_digest = stdout(&o);
    let err = stderr(&o);
    let mounted: u32 = err
        .split(" mounted")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no mount count in: {err}"));
    assert!(
        mounted >= 1,
        "the base's layer is mounted, not uploaded: {err}"
    );
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("hosted/derived:1")),
        derived_digest
    );
    assert!(
        reg.token_requests().iter().all(|r| r.status == 200),
        "every token request was granted: {:?}",
        reg.token_requests()
    );
}

/// A registry that declines a mount answers 202 and opens an upload session; imgbuild
/// uploads instead and cancels that session, leaving nothing half-open behind.
#[test]
fn a_declined_mount_falls_back_to_upload_and_cancels_the_session_it_opened() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let base_digest = push_base(&reg, &ctx, "lib/gone:1", "bye");
    let base_ref = format!("{}@{base_digest}", reg.reference("lib/gone"));
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base_ref}\"\n\
         [[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
    ));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    // The base repository forgets its layer (the registry keeps the data): a mount
    // from it is declined with 202.
    let base_layer = common::Layout::new(&out).layer_digests(&digest)[0].clone();
    let o = run(Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, urllib.request as u\n\
         r = u.urlopen(u.Request(sys.argv[1], method='DELETE'))\n\
         print(r.status)",
        )
        .arg(format!("{}/v2/lib/gone/blobs/{base_layer}", reg.base_url())));
    assert!(
        o.status.success(),
        "DELETE of the base blob: {}",
        stderr(&o)
    );

    let o = run_ok(
        imgbuild()
            .arg("push")
            .arg(format!("oci:{}", out.display()))
            .arg(reg.reference("apps/fallback:1")),
    );
    assert!(stderr(&o).contains("0 mounted"), "{}", stderr(&o));
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("apps/fallback:1")),
        digest
    );
    // A live session has a `startedat` file (distribution 2.8; a cancelled one keeps
    // only hash-state debris, a completed one nothing).
    let uploads = reg
        .storage_dir()
        .join("docker/registry/v2/repositories/apps/fallback/_uploads");
    let open: Vec<_> = fs::read_dir(&uploads)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("startedat").exists())
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        open.is_empty(),
        "upload sessions left open: {open:?}\n{}",
        reg.log()
    );
}

/// An access token got for an identity token expires (here after 3 s, while the push
/// stalls for 4 s): imgbuild exchanges the identity token again before the next
/// request instead of going on without one.
#[test]
fn identity_token_access_is_renewed_when_it_expires_mid_push() {
    use common::proxy::{Action, Fault, FaultProxy};
    let reg = Registry::start(Mode::token(USER, PASSWORD));
    reg.set_token_lifetime(3);
    let stall = || std::thread::sleep(std::time::Duration::from_secs(4));
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![Fault::new(Action::Run(Box::new(stall)))
            .method("PUT")
            .path("/manifests/")],
    );
    let home = tempfile::tempdir().unwrap();
    fs::create_dir_all(home.path().join(".docker")).unwrap();
    fs::write(
        home.path().join(".docker/config.json"),
        serde_json::json!({
            "auths": { proxy.host(): {
                "auth": base64_basic("<token>", ""),
                "identitytoken": reg.identity_token().unwrap(),
            } }
        })
        .to_string(),
    )
    .unwrap();
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    let o = run_ok(
        imgbuild()
            .env("HOME", home.path())
            .arg("push")
            .arg(format!("oci:{}:1.0", out.display()))
            .arg(format!("{}/acr/slow:1.0", proxy.host())),
    );
    assert_eq!(stdout(&o), digest);
    let grants = reg
        .token_requests()
        .into_iter()
        .filter(|r| r.grant.as_deref() == Some("refresh_token") && r.granted)
        .count();
    assert!(
        grants >= 2,
        "the identity token was exchanged {grants} time(s): {:?}",
        reg.token_requests()
    );
}

/// When the referrers API cannot be asked (a registry still failing after the
/// retries), attaching documents is an error (exit 3), not a reason to write a
/// fallback tag on a registry that may have the API.
#[test]
fn a_failing_referrers_query_is_an_error_not_a_fallback_tag() {
    use common::proxy::{Action, Fault, FaultProxy};
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![Fault::new(Action::Status(503))
            .method("GET")
            .path("/referrers/")
            .times(100)],
    );
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let out = ctx.path().join("out");
    let o = run(imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .arg("--provenance")
        .arg(ctx.path().join("provenance.json"))
        .arg(format!("--push={}/refs/app", proxy.host())));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("referrers") && stderr(&o).contains("503"),
        "{}",
        stderr(&o)
    );
    let tags = Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}", reg.reference("refs/app")))
        .output()
        .unwrap();
    assert!(tags.status.success(), "{}", stderr(&tags));
    let tags = String::from_utf8_lossy(&tags.stdout);
    assert!(
        !tags.contains("sha256-"),
        "a fallback tag was written: {tags}"
    );
}

/// A multi-platform image on a multi-platform base of the same registry, pushed to
/// another repository: every platform's base layers are mounted, none uploaded again.
#[test]
fn a_multi_platform_push_mounts_the_base_layers_of_every_platform() {
    let reg = Registry::start(Mode::Plain);
    let base = Ctx::new();
    base.write("base/amd64.txt", "base for amd64\n")
        .write("base/arm64.txt", "base for arm64\n");
    base.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         [[layer]]\nname = \"base\"\n  [[layer.copy]]\n  src = \"base/{arch}.txt\"\n  dst = \"/etc/base.txt\"\n",
    );
    let o = build_push(
        &base,
        &base.path().join("out"),
        &reg,
        &reg.reference("lib/multi:1"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let base_digest = stdout(&o).trim().to_string();

    let ctx = Ctx::new();
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         [base]\nimage = \"{}@{base_digest}\"\n\
         [[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/hello\"\n  content = \"on top\\n\"\n",
        reg.reference("lib/multi:1")
    ));
    let out = ctx.path().join("out");
    let o = build_push(&ctx, &out, &reg, &reg.reference("apps/multi:1"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    // Two platforms, each with its own base layer: both mounted from lib/multi.
    let mounted = err.matches("mounted sha256:").count();
    assert_eq!(mounted, 2, "{err}");
    assert!(err.contains("; 2 mounted;"), "{err}");
}

/// A loopback registry speaking HTTPS with a certificate imgbuild does not trust: the
/// error says so and names the host and the fix, instead of falling back to plain HTTP
/// (which such a server answers with a bare "400").
#[test]
fn a_loopback_registry_with_an_untrusted_certificate_is_reported_as_such() {
    let reg = Registry::start(Mode::Tls);
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let o = run(imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={}", reg.reference("untrusted/app:1"))));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains(&reg.host()), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("--registry-ca"), "{err}");
    assert!(!err.contains("400"), "{err}");
}

/// No credentials anywhere for a registry that wants them: the error lists where
/// imgbuild looked, once, in its order (the variables, then each credentials file).
#[test]
fn missing_credentials_list_where_imgbuild_looked_once() {
    let reg = Registry::start(Mode::htpasswd("alice", "s3cret-Pa55"));
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe(""));
    let home = ctx.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(home.join(".docker/config.json"), "{\"auths\":{}}").unwrap();
    let o = run(imgbuild_for(&reg)
        .env("HOME", &home)
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={}", reg.reference("private/app:1"))));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("401"), "{err}");
    assert_eq!(err.matches("looked in: ").count(), 1, "{err}");
    let looked = err.split("looked in: ").nth(1).unwrap_or_default();
    let variables = looked
        .find("IMGBUILD_REGISTRY_USER")
        .expect("the variables");
    let containers = looked
        .find(&format!(
            "{}/.config/containers/auth.json (missing)",
            home.display()
        ))
        .expect("containers' auth.json, missing");
    let docker = looked
        .find(&format!("{}/.docker/config.json", home.display()))
        .expect("docker's config.json");
    assert!(
        variables < containers && containers < docker,
        "in order: {err}"
    );
    assert!(
        !looked[docker..].starts_with(&format!("{}/.docker/config.json (missing)", home.display())),
        "{err}"
    );
}

/// `imgbuild copy` between every kind of place: a layout to a registry, the registry
/// to a layout and to a docker archive, and back; the digest never changes, and skopeo
/// sees it in the registry.
#[test]
fn copy_moves_an_image_between_registries_layouts_and_archives_unchanged() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(&recipe("platforms = [\"linux/amd64\", \"linux/arm64\"]"));
    let out = ctx.path().join("out");
    let digest = ctx.build_ok(&out, &[]);
    let copy = |src: &str, dst: &str| -> String {
        let o = run(imgbuild().args(["copy", src, dst]));
        assert!(o.status.success(), "copy {src} {dst}: {}", stderr(&o));
        stdout(&o)
    };
    let target = reg.reference("copies/app:2");
    assert_eq!(copy(&format!("oci:{}:1.0", out.display()), &target), digest);
    assert_eq!(skopeo_digest(&reg, &target), digest);
    let back = ctx.path().join("back");
    assert_eq!(copy(&target, &format!("oci:{}", back.display())), digest);
    // Every platform came along, under the destination's tag (the source's: 2).
    let layout = common::Layout::new(&back);
    let index = layout.json(&digest);
    let children = index["manifests"].as_array().expect("an index");
    assert_eq!(children.len(), 2);
    for child in children {
        let m = layout.json(child["digest"].as_str().expect("digest"));
        for l in m["layers"].as_array().expect("layers") {
            layout.blob(l["digest"].as_str().expect("layer digest"));
        }
    }
    let tagged = fs::read_to_string(back.join("index.json")).expect("index.json");
    assert!(
        tagged.contains("\"org.opencontainers.image.ref.name\":\"2\""),
        "{tagged}"
    );
    let archive = ctx.path().join("app.tar");
    assert_eq!(
        copy(&target, &format!("oci-archive:{}", archive.display())),
        digest
    );
    assert_eq!(
        copy(
            &format!("oci-archive:{}:2", archive.display()),
            &reg.reference("copies/again:3")
        ),
        digest
    );
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("copies/again:3")),
        digest
    );
    // A destination without a tag gets the source's (1.0), not `latest`.
    copy(
        &format!("oci:{}:1.0", out.display()),
        &reg.reference("copies/untagged"),
    );
    assert_eq!(
        skopeo_digest(&reg, &reg.reference("copies/untagged:1.0")),
        digest
    );
    // A destination directory holding something else is refused, and left as it was.
    let project = ctx.path().join("project");
    fs::create_dir_all(&project).unwrap();
    fs::write(project.join("notes.txt"), "mine\n").unwrap();
    let o = run(imgbuild().args(["copy", &target, &format!("oci:{}", project.display())]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not an OCI image layout"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_dir(&project).unwrap().count(), 1);
    // A destination naming another digest is refused.
    let o = run(imgbuild().args([
        "copy",
        &target,
        &format!("oci:{}@sha256:{}", back.display(), "0".repeat(64)),
    ]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// An image the registry does not have is bad input (exit 2), as a missing image in a
/// layout is, for every command that reads one: inspect, diff, verify, a base pulled by
/// build, lock. A registry that cannot be reached stays exit 3.
#[test]
fn a_missing_registry_image_is_bad_input_like_a_missing_layout_image() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let present = push_base(&reg, &ctx, "lib/here:1", "hi");
    let zero = format!("sha256:{}", "0".repeat(64));
    let missing_tag = reg.reference("lib/here:nope");
    let missing_digest = format!("{}@{zero}", reg.reference("lib/here"));
    let missing_repo = reg.reference("lib/nowhere:1");
    let here = reg.reference("lib/here:1");
    for missing in [&missing_tag, &missing_digest, &missing_repo] {
        let o = run(imgbuild().arg("inspect").arg(missing));
        assert_eq!(
            o.status.code(),
            Some(2),
            "inspect {missing}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(&reg.host()), "{}", stderr(&o));
        let o = run(imgbuild().arg("diff").arg(&here).arg(missing));
        assert_eq!(o.status.code(), Some(2), "diff {missing}: {}", stderr(&o));
    }
    // The same in a layout, for comparison.
    let out = ctx.path().join("base-out-hi");
    let o = run(imgbuild()
        .arg("inspect")
        .arg(format!("oci:{}:nope", out.display())));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // verify --against a missing image.
    ctx.recipe_text(&recipe(""));
    let o = run(imgbuild()
        .arg("verify")
        .arg(ctx.recipe())
        .arg("--against")
        .arg(&missing_tag));
    assert_eq!(o.status.code(), Some(2), "verify: {}", stderr(&o));

    // A base the registry does not have: build and lock.
    for base in [&missing_tag, &missing_digest] {
        ctx.recipe_text(&format!(
            "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base}\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
        ));
        let o = ctx.build(&ctx.path().join("out"), &[]);
        assert_eq!(o.status.code(), Some(2), "build on {base}: {}", stderr(&o));
        let o = run(imgbuild().arg("lock").arg(ctx.recipe()));
        assert_eq!(o.status.code(), Some(2), "lock on {base}: {}", stderr(&o));
    }
    assert!(!ctx.path().join("recipe.lock").exists());
    // The image that is there still reads.
    let o = run_ok(imgbuild().arg("inspect").arg(&here));
    assert!(stdout(&o).contains(&present), "{}", stdout(&o));

    // A registry that is gone is not bad input.
    let mut reg = reg;
    reg.stop();
    let o = run(imgbuild().arg("inspect").arg(&missing_tag));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// A `recipe.lock` whose base digest the registry does not have (edited by hand, or
/// the image deleted) is the lock and the registry disagreeing: the error says so,
/// names the lock, the digest it pins and what the registry's tag gives, and says to
/// run `imgbuild lock` — with and without `--locked`, exit 2, nothing written.
#[test]
fn a_tampered_lock_digest_is_named_as_the_lock_disagreeing_with_the_registry() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let real = push_base(&reg, &ctx, "lib/pinned:1", "one");
    let base = reg.reference("lib/pinned:1");
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base}\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
    ));
    run_ok(imgbuild().arg("lock").arg(ctx.recipe()));
    let lock_path = ctx.path().join("recipe.lock");
    let lock = fs::read_to_string(&lock_path).unwrap();
    let forged = format!("sha256:{}", "5".repeat(64));
    assert!(lock.contains(&real), "{lock}");
    fs::write(&lock_path, lock.replace(&real, &forged)).unwrap();
    for flags in [&[][..], &["--locked"][..]] {
        let out = ctx.path().join("out");
        let o = ctx.build(&out, flags);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains("disagree"), "{flags:?}: {err}");
        assert!(
            err.contains(&lock_path.display().to_string()),
            "names the lock: {err}"
        );
        assert!(err.contains(&forged), "the lock's digest: {err}");
        assert!(err.contains(&real), "what the registry's tag gives: {err}");
        assert!(err.contains("imgbuild lock"), "the hint: {err}");
        assert!(!out.join("index.json").exists());
    }
}

/// A `recipe.lock` that pins another base than the recipe names is stale: a plain
/// build warns, says to run `imgbuild lock`, and builds on the recipe's base (the
/// image a fresh lock would give); `--locked` refuses it (exit 2).
#[test]
fn a_stale_lock_is_a_warning_without_locked_and_exit_2_with_it() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let old = push_base(&reg, &ctx, "lib/old:1", "old");
    let new = push_base(&reg, &ctx, "lib/new:1", "new");
    let recipe_on = |base: &str| {
        format!(
            "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base}\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
        )
    };
    ctx.recipe_text(&recipe_on(&reg.reference("lib/old:1")));
    run_ok(imgbuild().arg("lock").arg(ctx.recipe()));
    let lock = fs::read_to_string(ctx.path().join("recipe.lock")).unwrap();
    assert!(lock.contains(&old), "{lock}");

    // The recipe moves to another base; the lock is not refreshed.
    let new_base = reg.reference("lib/new:1");
    ctx.recipe_text(&recipe_on(&new_base));
    let out = ctx.path().join("out");
    let o = ctx.build(&out, &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("--locked:") && !err.contains("error"),
        "a warning, not an error about a flag not given: {err}"
    );
    let warning = err
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains("recipe.lock"))
        .unwrap_or_else(|| panic!("a warning about the stale lock: {err}"));
    assert!(
        warning.contains("imgbuild lock")
            && warning.contains("lib/old:1")
            && warning.contains("stale"),
        "{warning}"
    );
    let digest = stdout(&o);
    let manifest = common::Layout::new(&out).manifest(&digest);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        new.as_str(),
        "built on the recipe's base"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        new_base.as_str()
    );
    // The lock is left as it was.
    assert_eq!(
        fs::read_to_string(ctx.path().join("recipe.lock")).unwrap(),
        lock
    );

    // --locked: exit 2, nothing written.
    let locked_out = ctx.path().join("locked");
    let o = ctx.build(&locked_out, &["--locked"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("lib/old:1"), "{}", stderr(&o));
    assert!(!locked_out.join("index.json").exists());

    // Refreshed, the plain build is quiet about the lock and gives the same image.
    run_ok(imgbuild().arg("lock").arg(ctx.recipe()));
    let o = ctx.build(&ctx.path().join("fresh"), &["--locked"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("recipe.lock"), "{}", stderr(&o));
    assert_eq!(stdout(&o), digest);
}
