//! Format versions as a user chooses them: `--format-version` (and
//! `IMGBUILD_FORMAT_VERSION`) over the recipe's `[image] format` over `recipe.lock`'s
//! over the newest; a lock older than format versions means format 1; `imgbuild lock`
//! pins one; the build's `--json` and provenance name the one used.

mod common;

use common::{imgbuild, stderr, Ctx};
use serde_json::Value;
use std::process::Output;

const RECIPE: &str = "[image]\nsource-date-epoch = 1700000000\n\
    [[layer]]\nname = \"app\"\n[[layer.file]]\npath = \"/etc/app\"\ncontent = \"app\\n\"\n";

fn ctx(image_extra: &str) -> Ctx {
    let c = Ctx::new();
    c.recipe_text(&RECIPE.replace("[image]\n", &format!("[image]\n{image_extra}")));
    c
}

/// `build --json` with `args`: the output and the parsed object (exit 0 asserted).
fn build_json(c: &Ctx, args: &[&str]) -> (Output, Value) {
    let out = c.path().join("out");
    let o = c.build(&out, &[&["--json"], args].concat());
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let v = serde_json::from_slice(&o.stdout).expect("json");
    (o, v)
}

fn notes(o: &Output) -> usize {
    stderr(o).matches("note: built with format").count()
}

fn lock(c: &Ctx, args: &[&str]) -> Output {
    imgbuild()
        .arg("lock")
        .arg(c.recipe())
        .args(args)
        .output()
        .expect("run imgbuild lock")
}

fn lock_text(c: &Ctx) -> String {
    std::fs::read_to_string(c.path().join("recipe.lock")).expect("recipe.lock")
}

#[test]
fn a_build_naming_no_format_uses_the_newest_and_says_so_once_unless_quiet() {
    let c = ctx("platforms = [\"linux/amd64\", \"linux/arm64\"]\n");
    let (o, v) = build_json(&c, &[]);
    assert_eq!(v["formatVersion"], 2);
    assert_eq!(notes(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("note: built with format 2 (the newest)") && err.contains("imgbuild lock"),
        "{err}"
    );
    let (o, _) = build_json(&c, &["-q"]);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn the_flag_beats_the_recipe_which_beats_the_lock() {
    let c = ctx("format = 1\n");
    c.write("recipe.lock", "version = 1\nformat = 2\n");
    let (o, v) = build_json(&c, &[]);
    assert_eq!(v["formatVersion"], 1, "the recipe's format");
    assert_eq!(notes(&o), 0, "{}", stderr(&o));
    let (_, v) = build_json(&c, &["--format-version", "2"]);
    assert_eq!(v["formatVersion"], 2, "the flag's format");
    c.recipe_text(RECIPE);
    let (o, v) = build_json(&c, &[]);
    assert_eq!(v["formatVersion"], 2, "the lock's format");
    assert_eq!(notes(&o), 0, "{}", stderr(&o));
    let out = c.path().join("out");
    let o = imgbuild()
        .env("IMGBUILD_FORMAT_VERSION", "1")
        .args(["build", "--json", "--out"])
        .arg(&out)
        .arg(c.recipe())
        .output()
        .expect("build");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["formatVersion"], 1, "IMGBUILD_FORMAT_VERSION");
}

#[test]
fn a_lock_written_before_format_versions_means_format_1_and_keeps_the_digest() {
    let c = ctx("");
    let out = c.path().join("one");
    let format_1 = c.build_ok(&out, &["--format-version", "1"]);
    c.write("recipe.lock", "version = 1\n");
    for args in [&[][..], &["--locked"][..]] {
        let o = c.build(&c.path().join("locked"), args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format_1,
            "{args:?}"
        );
        assert_eq!(notes(&o), 0, "{}", stderr(&o));
    }
}

#[test]
fn lock_pins_the_newest_keeps_an_existing_format_and_takes_the_flag_or_the_recipe() {
    let c = ctx("");
    let o = lock(&c, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        lock_text(&c).contains("\nformat = 2\n"),
        "{}",
        lock_text(&c)
    );
    assert!(
        stderr(&o).contains("format 2, the newest"),
        "{}",
        stderr(&o)
    );

    // A lock from before format versions: re-locking keeps format 1.
    c.write("recipe.lock", "version = 1\n");
    let o = lock(&c, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        lock_text(&c).contains("\nformat = 1\n"),
        "{}",
        lock_text(&c)
    );
    assert!(
        stderr(&o).contains("format 1, kept from the existing lock"),
        "{}",
        stderr(&o)
    );

    let o = lock(&c, &["--format-version", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        lock_text(&c).contains("\nformat = 2\n"),
        "{}",
        lock_text(&c)
    );

    c.recipe_text(&RECIPE.replace("[image]\n", "[image]\nformat = 1\n"));
    let o = lock(&c, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        lock_text(&c).contains("\nformat = 1\n"),
        "{}",
        lock_text(&c)
    );
}

#[test]
fn locked_fails_when_the_recipe_names_another_format_than_the_lock() {
    let c = ctx("format = 2\n");
    c.write("recipe.lock", "version = 1\n");
    let o = c.build(&c.path().join("out"), &["--locked"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("pins format 1, but the recipe says format = 2") && err.contains(":2:10"),
        "{err}"
    );
    assert!(!c.path().join("out").exists(), "nothing is written");
}

#[test]
fn an_unknown_format_version_is_exit_2_listing_the_known_ones() {
    let c = ctx("");
    let out = c.path().join("out");
    let check = |o: Output, what: &str| {
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("1, 2 (the newest)"),
            "{what}: {}",
            stderr(&o)
        );
    };
    check(c.build(&out, &["--format-version", "9"]), "build flag");
    check(lock(&c, &["--format-version", "0"]), "lock flag");
    check(
        imgbuild()
            .env("IMGBUILD_FORMAT_VERSION", "3")
            .arg("verify")
            .arg(c.recipe())
            .args(["--against", "oci:/nonexistent/imgbuild-layout"])
            .output()
            .expect("verify"),
        "verify env",
    );
    c.write("recipe.lock", "version = 1\nformat = 9\n");
    check(c.build(&out, &[]), "lock file");
    c.recipe_text(&RECIPE.replace("[image]\n", "[image]\nformat = 9\n"));
    let o = c.build(&out, &[]);
    assert!(stderr(&o).contains("recipe.toml:2:10"), "{}", stderr(&o));
    check(o, "recipe key");
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn provenance_and_json_record_the_format_actually_used() {
    let c = ctx("");
    for format in [1, 2] {
        let provenance = c.path().join(format!("provenance-{format}.json"));
        let (_, v) = build_json(
            &c,
            &[
                "--format-version",
                &format.to_string(),
                "--provenance",
                &provenance.display().to_string(),
            ],
        );
        assert_eq!(v["formatVersion"], format);
        let p: Value =
            serde_json::from_slice(&std::fs::read(&provenance).expect("provenance")).expect("json");
        let predicate = &p["predicate"];
        assert_eq!(
            predicate["buildDefinition"]["internalParameters"]["formatVersion"],
            format
        );
        assert_eq!(
            predicate["runDetails"]["builder"]["version"]["format"],
            format.to_string()
        );
    }
}
