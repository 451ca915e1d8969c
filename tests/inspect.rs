//! `imgbuild inspect` on layout references.

mod common;

use common::{imgbuild, Ctx};
use std::process::Command;

fn ctx(extra_image: &str) -> Ctx {
    let c = Ctx::new();
    c.recipe_text(&format!(
        "[image]\ntags = [\"v1\", \"latest\"]\n{extra_image}\n[config]\nentrypoint = [\"/app\"]\n[[layer]]\nname = \"one\"\n[[layer.file]]\npath = \"/app\"\ncontent = \"x\"\n[[layer]]\nname = \"two\"\n[[layer.dir]]\npath = \"/data\"\n"
    ));
    c
}

fn inspect(args: &[&str]) -> std::process::Output {
    imgbuild().arg("inspect").args(args).output().expect("run")
}

#[test]
fn json_output_holds_the_exact_manifest_and_config_of_the_build() {
    let c = ctx("");
    let out = c.path().join("o");
    let digest = c.build_ok(&out, &[]);
    let o = inspect(&[&format!("oci:{}:v1", out.display()), "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["digest"], digest.as_str());
    let layout = common::Layout::new(&out);
    assert_eq!(v["manifests"][0]["manifest"], layout.manifest(&digest));
    assert_eq!(v["manifests"][0]["config"], layout.config(&digest));
    assert_eq!(v["manifests"][0]["platform"], "linux/amd64");
    assert!(v["index"].is_null());
}

#[test]
fn text_output_names_every_layer_with_its_diff_id_and_history() {
    let c = ctx("");
    let out = c.path().join("o");
    let digest = c.build_ok(&out, &[]);
    let o = inspect(&[&format!("oci:{}@{digest}", out.display())]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let layout = common::Layout::new(&out);
    let config = layout.config(&digest);
    for (layer, diff_id) in layout
        .layer_digests(&digest)
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().expect("diff_ids"))
    {
        let line = text
            .lines()
            .find(|l| l.contains(layer.as_str()))
            .unwrap_or_else(|| panic!("{layer} missing:\n{text}"));
        assert!(line.contains(diff_id.as_str().expect("str")), "{line}");
    }
    assert!(
        text.contains("imgbuild: layer one") && text.contains("imgbuild: layer two"),
        "{text}"
    );
    assert!(text.contains("entrypoint  [\"/app\"]"), "{text}");
}

#[test]
fn a_multi_platform_image_shows_its_index_and_each_platform() {
    let c = ctx("platforms = [\"linux/amd64\", \"linux/arm/v7\"]");
    let out = c.path().join("o");
    let digest = c.build_ok(&out, &[]);
    let o = inspect(&[&format!("oci:{}:latest", out.display()), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    let platforms: Vec<&str> = v["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["platform"].as_str().expect("platform"))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm/v7"]);
}

#[test]
fn skopeo_reads_the_same_manifest_bytes() {
    common::require_tool("skopeo");
    let c = ctx("");
    let out = c.path().join("o");
    c.build_ok(&out, &[]);
    let ours = inspect(&[&format!("oci:{}:v1", out.display()), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&ours.stdout).expect("json");
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v1", out.display()))
        .output()
        .expect("skopeo");
    assert!(raw.status.success(), "{}", common::stderr(&raw));
    let theirs: serde_json::Value = serde_json::from_slice(&raw.stdout).expect("json");
    assert_eq!(v["manifests"][0]["manifest"], theirs);
}

#[test]
fn an_unknown_tag_or_an_ambiguous_layout_is_bad_input_listing_the_tags() {
    let c = ctx("");
    let out = c.path().join("o");
    c.build_ok(&out, &[]);
    let other = ctx("");
    other.recipe_text("[image]\ntags = [\"other\"]\n");
    other.build_ok(&out, &[]);
    let o = inspect(&[&format!("oci:{}:nope", out.display())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("no image is tagged \"nope\"")
            && common::stderr(&o).contains("latest, other, v1"),
        "{}",
        common::stderr(&o)
    );
    let o = inspect(&[&format!("oci:{}", out.display())]);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(err.contains("several images"), "{err}");
    // The hint names both ways to say which: a tag, or the digest.
    assert!(
        err.contains("latest, other, v1")
            && err.contains(&format!("oci:{}@sha256:", out.display())),
        "{err}"
    );
}

#[test]
fn bad_references_are_refused_with_exit_2() {
    // (Registry references are inspected for real in tests/registry.rs.)
    let o = inspect(&["Not A Ref"]);
    assert_eq!(o.status.code(), Some(2));
    let o = inspect(&["oci:/nonexistent/layout:v1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("/nonexistent/layout does not exist"),
        "{}",
        common::stderr(&o)
    );
    // A directory that exists but is no layout is named as such.
    let plain = tempfile::tempdir().expect("temp dir");
    let o = inspect(&[&format!("oci:{}", plain.path().display())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("not an OCI image layout"),
        "{}",
        common::stderr(&o)
    );
    // A digest the layout does not hold.
    let c = ctx("");
    let out = c.path().join("out");
    c.build_ok(&out, &[]);
    let missing = format!("oci:{}@sha256:{}", out.display(), "0".repeat(64));
    let o = inspect(&[&missing]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("holds no blob") && common::stderr(&o).contains("help:"),
        "{}",
        common::stderr(&o)
    );
}

/// `inspect -h` names both kinds of reference it reads, and no command's help claims
/// that something is "not yet" supported.
#[test]
fn help_names_registry_references_and_claims_nothing_is_not_yet_supported() {
    let help = |args: &[&str]| {
        let o = imgbuild().args(args).output().expect("run");
        assert!(o.status.success(), "{args:?}: {}", common::stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let inspect = help(&["inspect", "-h"]);
    assert!(
        inspect.contains("host[:port]/repository"),
        "inspect -h must name registry references: {inspect}"
    );
    let top = help(&["--help"]);
    let line = top.lines().find(|l| l.trim_start().starts_with("inspect"));
    assert!(
        line.is_some_and(|l| l.contains("registry")),
        "the inspect line of --help: {top}"
    );
    for cmd in [
        "build",
        "lock",
        "push",
        "inspect",
        "verify",
        "diff",
        "completions",
    ] {
        for flag in ["-h", "--help"] {
            let text = help(&[cmd, flag]);
            assert!(
                !text.to_lowercase().contains("not yet"),
                "{cmd} {flag}: {text}"
            );
        }
    }
    assert!(!top.to_lowercase().contains("not yet"), "{top}");
}
