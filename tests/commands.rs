//! The everyday commands a CI script reaches for besides `build`: `version`,
//! `lock --check`, `digest`, `tags`, `--compression`, `--platform all` and
//! `docker://` references, run through the real binary (registries: the real harness of
//! tests/common/registry.rs, cross-checked with skopeo).

mod common;

use common::proxy::{Action, Fault, FaultProxy};
use common::registry::{Mode, Registry};
use common::{imgbuild, stderr, Ctx};
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn version_prints_imgbuild_and_format_versions_and_json_has_the_same() {
    let o = imgbuild().arg("version").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let expected = format!(
        "imgbuild {}\nwrites format version 2 (the newest)\nrebuilds format versions 1, 2",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(text, expected);
    // `--version` says the same.
    let o = imgbuild().arg("--version").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);

    let o = imgbuild().args(["version", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "newestFormatVersion": 2,
            "formatVersions": [1, 2],
        })
    );
}

/// Every subcommand, `help` included.
const VERBS: &[&str] = &[
    "build",
    "lock",
    "push",
    "copy",
    "inspect",
    "verify",
    "diff",
    "sign",
    "verify-signature",
    "digest",
    "tags",
    "version",
    "completions",
    "help",
];

#[test]
fn help_lists_every_subcommand_with_one_line() {
    let o = imgbuild().arg("--help").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands: section")
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .collect();
    // One line each: every line is a subcommand's name and its description, and
    // every subcommand has one.
    let mut names: Vec<&str> = commands
        .iter()
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or("");
            assert!(words.next().is_some(), "no description: {l:?}\n{help}");
            name
        })
        .collect();
    names.sort();
    let mut verbs = VERBS.to_vec();
    verbs.sort();
    assert_eq!(names, verbs, "{help}");
}

fn lock_check(recipe: &std::path::Path) -> Output {
    imgbuild()
        .args(["lock", "--check"])
        .arg(recipe)
        .output()
        .unwrap()
}

#[test]
fn lock_check_fails_on_a_missing_or_stale_lock_without_writing_it() {
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n",
    );
    let lock = ctx.path().join("recipe.lock");
    // No lock: exit 1, saying so, and none written.
    let o = lock_check(&ctx.recipe());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("does not exist"), "{}", stdout(&o));
    assert!(stderr(&o).contains("imgbuild lock"), "{}", stderr(&o));
    assert!(!lock.exists());

    // A lock just written is current: exit 0.
    let o = imgbuild().arg("lock").arg(ctx.recipe()).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lock_check(&ctx.recipe());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("is current"), "{}", stderr(&o));

    // The recipe now names another format: stale, the difference printed, the lock
    // untouched.
    let written = std::fs::read(&lock).unwrap();
    let text = std::fs::read_to_string(ctx.recipe()).unwrap();
    std::fs::write(
        ctx.recipe(),
        text.replace("[image]\n", "[image]\nformat = 1\n"),
    )
    .unwrap();
    let o = lock_check(&ctx.recipe());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o), "format: 2 → 1");
    assert!(stderr(&o).contains("stale"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&lock).unwrap(), written);
}

#[test]
fn lock_check_sees_a_moved_base_tag_in_a_registry() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let first = push_image(&reg, "lib/moving:stable", "one");
    let base = reg.reference("lib/moving:stable");
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\nformat = 2\n[base]\nimage = \"{base}\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
    ));
    let o = imgbuild().arg("lock").arg(ctx.recipe()).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lock_check(&ctx.recipe());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // The tag moves: stale, naming the pinned digest and the one the tag names now.
    let lock = std::fs::read(ctx.path().join("recipe.lock")).unwrap();
    let second = push_image(&reg, "lib/moving:stable", "two");
    let o = lock_check(&ctx.recipe());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let shown = stdout(&o);
    assert!(
        shown.contains(&format!("base {base}: {first} → {second}")),
        "{shown}"
    );
    assert!(shown.contains("base platform linux/amd64"), "{shown}");
    assert_eq!(std::fs::read(ctx.path().join("recipe.lock")).unwrap(), lock);
}

/// Builds a one-layer image saying `greeting` and pushes it to `reg` as
/// `repo_tag`; its digest.
fn push_image(reg: &Registry, repo_tag: &str, greeting: &str) -> String {
    let ctx = Ctx::new();
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1600000000\n[[layer]]\nname = \"base\"\n  [[layer.file]]\n  path = \"/etc/motd\"\n  content = \"{greeting}\\n\"\n"
    ));
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={}", reg.reference(repo_tag)))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// `skopeo inspect --format '{{.Digest}}' docker://REF` on a plain-HTTP harness registry.
fn skopeo_digest(reg: &Registry, reference: &str) -> String {
    common::require_tool("skopeo");
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--format", "{{.Digest}}"])
        .args(reg.skopeo_flags(""))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo inspect: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn docker_transport_references_work_wherever_a_registry_reference_does() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\ntags = [\"1.0\"]\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n",
    );
    let out = ctx.path().join("out");
    // build --push=docker://…: the recipe's tag, as without the prefix.
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .arg(format!("--push=docker://{}", reg.reference("acme/app")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = stdout(&o);
    assert_eq!(skopeo_digest(&reg, &reg.reference("acme/app:1.0")), digest);

    // push to docker://…:TAG.
    let o = imgbuild()
        .arg("push")
        .arg(format!("oci:{}:1.0", out.display()))
        .arg(format!("docker://{}", reg.reference("other/app:2")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(skopeo_digest(&reg, &reg.reference("other/app:2")), digest);

    // inspect and diff read docker://… references.
    let o = imgbuild()
        .args(["inspect", "--json"])
        .arg(format!("docker://{}", reg.reference("other/app:2")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["digest"], digest);
    let o = imgbuild()
        .arg("diff")
        .arg(format!("docker://{}", reg.reference("acme/app:1.0")))
        .arg(format!("oci:{}:1.0", out.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // A base written the skopeo way.
    let child = Ctx::new();
    child.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"docker://{}@{digest}\"\n[[layer]]\nname = \"more\"\n  [[layer.file]]\n  path = \"/app/y\"\n  content = \"y\\n\"\n",
        reg.reference("acme/app")
    ));
    let o = child.build(&child.path().join("out"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn compression_flag_overrides_the_recipe_for_build_and_verify() {
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\ncompression = \"gzip\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n",
    );
    let media_type = |out: &std::path::Path, digest: &str| {
        let m = common::Layout::new(out).manifest(digest);
        m["layers"][0]["mediaType"].as_str().unwrap().to_string()
    };
    let out = ctx.path().join("out");
    let gzip = ctx.build_ok(&out, &[]);
    assert!(media_type(&out, &gzip).ends_with("tar+gzip"));
    let provenance = ctx.path().join("provenance.json");
    let zstd = ctx.build_ok(
        &out,
        &[
            "--compression",
            "zstd",
            "--provenance",
            provenance.to_str().unwrap(),
        ],
    );
    assert!(media_type(&out, &zstd).ends_with("tar+zstd"));
    let statement: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&provenance).unwrap()).unwrap();
    let build = &statement["predicate"]["buildDefinition"];
    assert_eq!(build["externalParameters"]["flags"]["compression"], "zstd");
    assert_eq!(build["internalParameters"]["compression"], "zstd");
    let none = ctx.build_ok(&out, &["--compression=none"]);
    assert!(media_type(&out, &none).ends_with(".tar"));
    assert_eq!(
        std::collections::BTreeSet::from([&gzip, &zstd, &none]).len(),
        3
    );
    // The same through the variable.
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .env("IMGBUILD_COMPRESSION", "zstd")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), zstd, "{}", stderr(&o));

    // verify rebuilds with the flag: the zstd image verifies only with it.
    let verify = |extra: &[&str]| {
        imgbuild()
            .arg("verify")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg("--against")
            .arg(format!("oci:{}@{zstd}", out.display()))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = verify(&["--compression", "zstd"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    // An unknown kind is bad usage, naming the valid ones.
    let o = ctx.build(&ctx.path().join("bad"), &["--compression", "brotli"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("zstd"), "{}", stderr(&o));
    assert!(!ctx.path().join("bad").exists());
}

/// `skopeo list-tags docker://REPO`: the tags, in the registry's order.
fn skopeo_tags(reg: &Registry, repository: &str) -> Vec<String> {
    common::require_tool("skopeo");
    let o = std::process::Command::new("skopeo")
        .arg("list-tags")
        .args(reg.skopeo_flags(""))
        .arg(format!("docker://{repository}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo list-tags: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn lines(o: &Output) -> Vec<String> {
    stdout(o).lines().map(str::to_string).collect()
}

#[test]
fn digest_prints_what_skopeo_sees_for_registry_and_layout_references() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\ntags = [\"1.0\"]\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n",
    );
    let out = ctx.path().join("out");
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .arg(format!("--push={}", reg.reference("acme/multi")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let index = stdout(&o);
    let tagged = reg.reference("acme/multi:1.0");
    assert_eq!(skopeo_digest(&reg, &tagged), index);
    for reference in [
        tagged.clone(),
        format!("docker://{tagged}"),
        format!("{}@{index}", reg.reference("acme/multi")),
        format!("oci:{}:1.0", out.display()),
        format!("oci:{}", out.display()),
    ] {
        let o = imgbuild().arg("digest").arg(&reference).output().unwrap();
        assert!(o.status.success(), "{reference}: {}", stderr(&o));
        assert_eq!(stdout(&o), index, "{reference}");
    }
    let o = imgbuild()
        .args(["digest", "--json"])
        .arg(&tagged)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["digest"], index.as_str());
    assert_eq!(v["reference"], tagged.as_str());

    // A tag the registry lacks, and one the layout lacks: errors naming them.
    let o = imgbuild()
        .arg("digest")
        .arg(reg.reference("acme/multi:nope"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    let o = imgbuild()
        .arg("digest")
        .arg(format!("oci:{}:nope", out.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1.0"),
        "the hint lists the tags: {}",
        stderr(&o)
    );
}

#[test]
fn tags_lists_a_repository_following_pages_with_retries_as_skopeo_does() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\ntags = [\"1.0\", \"1.1\", \"2.0\", \"latest\", \"stable\"]\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n",
    );
    let out = ctx.path().join("out");
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .arg(format!("--push={}", reg.reference("acme/app")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = skopeo_tags(&reg, &reg.reference("acme/app"));
    assert_eq!(expected.len(), 5, "{expected:?}");

    // One request.
    let o = imgbuild()
        .arg("tags")
        .arg(reg.reference("acme/app"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&o), expected);

    // Pages: the harness registry (distribution 2.8) ignores `?n=`, so a proxy in
    // front of it answers the tag list in pages of two, linked as distribution 3
    // does, and fails the second page once with a 503: the pages are followed, the
    // failed one retried, and the tags come out as skopeo lists them.
    let e = &expected;
    let after = |i: usize| format!("last={}", e[i]);
    let page = |tags: &[String], next: Option<&String>| {
        let headers = next
            .map(|last| {
                vec![(
                    "Link".to_string(),
                    format!("</v2/acme/app/tags/list?n=2&last={last}>; rel=\"next\""),
                )]
            })
            .unwrap_or_default();
        Action::Respond(
            headers,
            serde_json::json!({"name": "acme/app", "tags": tags}).to_string(),
        )
    };
    let proxy = FaultProxy::start(
        reg.addr(),
        vec![
            Fault::new(Action::Status(503)).path(&after(1)).times(1),
            Fault::new(page(&e[2..4], Some(&e[3]))).path(&after(1)),
            Fault::new(page(&e[4..], None)).path(&after(3)),
            Fault::new(page(&e[..2], Some(&e[1]))).path("tags/list?n=2"),
        ],
    );
    let o = imgbuild()
        .args(["tags", "--page-size", "2"])
        .arg(format!("docker://{}/acme/app", proxy.host()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&o), expected);
    let pages: Vec<(String, u16)> = proxy
        .requests()
        .into_iter()
        .filter(|(_, target, _)| target.contains("/tags/list"))
        .map(|(_, target, status)| (target, status))
        .collect();
    let list = "/v2/acme/app/tags/list?n=2";
    let want = vec![
        (list.to_string(), 200),
        (format!("{list}&{}", after(1)), 503),
        (format!("{list}&{}", after(1)), 200),
        (format!("{list}&{}", after(3)), 200),
    ];
    assert_eq!(pages, want);
    assert!(
        stderr(&o).contains("503"),
        "the retry is reported: {}",
        stderr(&o)
    );
    // Every page went through the same proxy, whose /v2/ is the real registry's.
    assert!(proxy
        .requests()
        .iter()
        .any(|(_, t, s)| t == "/v2/" && *s != 0));

    // --json.
    let o = imgbuild()
        .args(["tags", "--json"])
        .arg(reg.reference("acme/app"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["repository"], reg.reference("acme/app"));
    assert_eq!(v["tags"], serde_json::json!(expected));

    // A layout's tags, in index.json's order (sorted by name).
    let o = imgbuild()
        .arg("tags")
        .arg(format!("oci:{}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&o), ["1.0", "1.1", "2.0", "latest", "stable"]);

    // A reference naming an image is bad input; an unknown repository fails, naming it.
    for bad in [
        reg.reference("acme/app:1.0"),
        format!("oci:{}:1.0", out.display()),
    ] {
        let o = imgbuild().arg("tags").arg(&bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("names an image"), "{}", stderr(&o));
    }
    let o = imgbuild()
        .arg("tags")
        .arg(reg.reference("acme/none"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("acme/none"), "{}", stderr(&o));
}

/// `lock --json` describes what was pinned; `lock --check --json` says whether the
/// lock is current and lists the differences (exit 1 when stale), camelCase keys.
#[test]
fn lock_json_and_lock_check_json() {
    let ctx = Ctx::new();
    ctx.recipe_text("[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"a\"\n  [[layer.file]]\n  path = \"/a\"\n  content = \"a\\n\"\n");
    let check = || {
        imgbuild()
            .arg("lock")
            .arg(ctx.recipe())
            .args(["--check", "--json"])
            .output()
            .unwrap()
    };
    let o = check();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["current"], false, "{v}");
    assert!(!v["differences"].as_array().unwrap().is_empty(), "{v}");

    let o = imgbuild()
        .arg("lock")
        .arg(ctx.recipe())
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["formatVersion"], 2, "{v}");
    assert!(v["base"].is_null(), "{v}");
    assert!(v["lock"].as_str().unwrap().ends_with("recipe.lock"), "{v}");

    let o = check();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"lock": v["lock"], "current": true, "differences": []})
    );
}

/// The platforms of the image `digest` in layout `out`: each manifest's, from its
/// config (one for a manifest, in index order for an index).
fn built_platforms(out: &std::path::Path, digest: &str) -> Vec<String> {
    let layout = common::Layout::new(out);
    let root = layout.json(digest);
    let manifests: Vec<String> = match root["manifests"].as_array() {
        Some(list) => list
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .collect(),
        None => vec![digest.to_string()],
    };
    manifests
        .iter()
        .map(|m| {
            let c = layout.config(m);
            format!(
                "{}/{}",
                c["os"].as_str().unwrap(),
                c["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn platform_all_builds_the_recipes_platforms_else_every_platform_of_the_base() {
    let reg = Registry::start(Mode::Plain);
    let c = Ctx::new();
    // A two-platform base, in a layout of the context and in a registry.
    let base = Ctx::new();
    base.recipe_text(
        "[image]\nsource-date-epoch = 1\nplatforms = [\"linux/arm64\", \"linux/amd64\"]\ntags = [\"1\"]\n[[layer]]\nname = \"b\"\n  [[layer.file]]\n  path = \"/b\"\n  content = \"b\\n\"\n",
    );
    base.build_ok(&c.path().join("base"), &[]);
    let o = imgbuild()
        .arg("push")
        .arg(format!("oci:{}:1", c.path().join("base").display()))
        .arg(reg.reference("acme/base:1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let on = |image: &str, platforms: &str| {
        format!(
            "[image]\nsource-date-epoch = 1\n{platforms}[base]\nimage = \"{image}\"\n[[layer]]\nname = \"x\"\n  [[layer.file]]\n  path = \"/x\"\n  content = \"x\\n\"\n"
        )
    };
    let out = c.path().join("o");
    let registry_base = reg.reference("acme/base:1");

    // No platforms in the recipe: every platform of the base's index, in its order.
    for image in ["oci:base:1", registry_base.as_str()] {
        c.recipe_text(&on(image, ""));
        let d = c.build_ok(&out, &["--platform", "all"]);
        assert_eq!(
            built_platforms(&out, &d),
            ["linux/arm64", "linux/amd64"],
            "{image}"
        );
        // verify shares the flag: the rebuild is the same image.
        let o = imgbuild()
            .arg("verify")
            .arg(c.recipe())
            .arg("--out")
            .arg(&out)
            .arg("--against")
            .arg(format!("oci:{}@{d}", out.display()))
            .args(["--platform", "all"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{image}: {}", stderr(&o));
    }

    // The recipe's platforms, when it lists them.
    c.recipe_text(&on("oci:base:1", "platforms = [\"linux/amd64\"]\n"));
    let d = c.build_ok(&out, &["--platform", "all"]);
    assert_eq!(built_platforms(&out, &d), ["linux/amd64"]);

    // No base and no platforms: linux/amd64, the default.
    c.recipe_text(&on("scratch", ""));
    let d = c.build_ok(&out, &["--platform=all"]);
    assert_eq!(built_platforms(&out, &d), ["linux/amd64"]);

    // `all` stands alone.
    for args in [
        &["--platform", "all,linux/arm64"][..],
        &["--platform", "linux/arm64", "--platform", "all"][..],
    ] {
        let o = c.build(&out, args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.contains("--platform all cannot be combined with other platforms")
                && e.contains("linux/arm64"),
            "{args:?}: {e}"
        );
    }
}

/// A repository the registry does not know is bad input (exit 2), as a missing image
/// is for every other command.
#[test]
fn tags_of_an_unknown_repository_is_exit_2() {
    let reg = Registry::start(Mode::Plain);
    let o = imgbuild()
        .args(["tags", &reg.reference("nobody/here")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nobody/here"), "{}", stderr(&o));
}

/// A stdout whose reader is gone (`imgbuild … | head` after head quit) is success for
/// every subcommand: no panic (exit 101), no error message, the exit code the command
/// would have had. Each verb of [`VERBS`] must have a case here.
#[test]
fn a_closed_stdout_is_success_for_every_command() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\ntags = [\"v1\"]\n[[layer]]\nname = \"one\"\n  [[layer.file]]\n  path = \"/app\"\n  content = \"x\\n\"\n",
    );
    let out = ctx.path().join("o");
    ctx.build_ok(&out, &[]);
    let image = format!("oci:{}:v1", out.display());
    let recipe = ctx.recipe().display().to_string();
    let fresh = ctx.path().join("fresh").display().to_string();
    let copied = format!("oci:{}:v1", ctx.path().join("copied").display());
    let pushed = reg.reference("closed/stdout:v1");
    let repository = reg.reference("closed/stdout");
    // A second recipe on the pushed image, for lock.
    let locking = Ctx::new();
    locking.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{pushed}\"\n"
    ));
    let lock_recipe = locking.recipe().display().to_string();
    // A key pair, for sign and verify-signature.
    common::require_tool("openssl");
    let key = ctx.path().join("cosign.key").display().to_string();
    let public = ctx.path().join("cosign.pub").display().to_string();
    for args in [
        vec!["genpkey", "-algorithm", "ed25519", "-out", &key],
        vec!["pkey", "-in", &key, "-pubout", "-out", &public],
    ] {
        let o = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    }
    let cases: Vec<Vec<&str>> = vec![
        vec!["build", &recipe, "--out", &fresh],
        vec!["build", &recipe, "--out", &fresh, "--json"],
        vec!["push", &image, &pushed],
        vec!["push", &image, &pushed, "--json"],
        vec!["sign", &pushed, "--key", &key],
        vec!["sign", &pushed, "--key", &key, "--json"],
        vec!["verify-signature", &pushed, "--key", &public],
        vec!["verify-signature", &pushed, "--key", &public, "--json"],
        vec!["lock", &lock_recipe, "--json"],
        vec!["lock", &lock_recipe, "--check", "--json"],
        vec!["copy", &image, &copied],
        vec!["copy", &image, &copied, "--json"],
        vec!["inspect", &image],
        vec!["inspect", &image, "--json"],
        vec!["verify", &recipe, "--against", &image],
        vec!["verify", &recipe, "--against", &image, "--json"],
        vec!["diff", &image, &image],
        vec!["diff", &image, &image, "--json"],
        vec!["digest", &image],
        vec!["digest", &pushed],
        vec!["tags", &repository],
        vec!["tags", &repository, "--json"],
        vec!["version"],
        vec!["version", "--json"],
        vec!["--version"],
        vec!["completions", "bash"],
        vec!["completions", "zsh"],
        vec!["help"],
        vec!["help", "build"],
    ];
    for verb in VERBS {
        assert!(
            cases.iter().any(|c| c[0] == *verb),
            "no closed-stdout case for `imgbuild {verb}`"
        );
    }
    for args in cases {
        let o = common::run_with_closed_stdout(imgbuild().args(&args));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked")
                && !err.to_lowercase().contains("broken pipe")
                && !err.starts_with("error"),
            "{args:?}: {err}"
        );
    }
}
