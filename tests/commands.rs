//! The everyday commands a CI script reaches for besides `build`: `version`,
//! `lock --check`, `digest`, `tags`, `--compression` and `docker://` references,
//! run through the real binary (registries: the real harness of
//! tests/common/registry.rs, cross-checked with skopeo).

mod common;

use common::{imgbuild, stderr};
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
    "inspect",
    "verify",
    "diff",
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

