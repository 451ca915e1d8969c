//! Progress display through the real binary: bars when stderr is a terminal (a
//! pseudo-terminal made by util-linux's `script`), plain lines naming each layer and
//! its platforms when it is not, and nothing with `-q`.

mod common;

use common::{imgbuild, require_tool, Ctx};
use std::process::Command;

/// A two-platform recipe with a layer big enough to be written in several chunks,
/// and one shared by both platforms.
fn context() -> Ctx {
    let ctx = Ctx::new();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ctx.write("data/big.bin", big)
        .write("amd64.txt", "amd64\n")
        .write("arm64.txt", "arm64\n");
    ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         [[layer]]\nname = \"data\"\n  [[layer.copy]]\n  src = \"data/\"\n  dst = \"/data/\"\n\
         [[layer]]\nname = \"arch\"\n  [[layer.copy]]\n  src = \"{arch}.txt\"\n  dst = \"/arch.txt\"\n",
    );
    ctx
}

/// Runs `imgbuild ARGS` with stdout and stderr on a pseudo-terminal; returns what the
/// terminal received.
fn on_a_terminal(args: &[String]) -> String {
    require_tool("script");
    let binary = env!("CARGO_BIN_EXE_imgbuild");
    let quoted: Vec<String> = std::iter::once(binary.to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    // `imgbuild()` clears the environment the tests control; `script` runs its command
    // with that environment.
    let mut script = Command::new("script");
    for (k, v) in imgbuild().get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let o = script
        .args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "160")
        .output()
        .expect("run script");
    let all = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "imgbuild failed on a terminal: {all}");
    all
}

/// `imgbuild build` of `ctx` into `ctx/out` with `extra` flags, on a terminal.
fn build_on_a_terminal(ctx: &Ctx, extra: &[String]) -> String {
    let mut args = vec![
        "build".to_string(),
        ctx.recipe().display().to_string(),
        "--out".to_string(),
        ctx.path().join("out").display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    on_a_terminal(&args)
}

#[test]
fn a_terminal_gets_a_bar_per_layer_then_its_line_and_a_summary() {
    let ctx = context();
    let text = build_on_a_terminal(&ctx, &[]);
    assert!(
        text.contains("\u{1b}["),
        "bars are drawn with terminal escapes: {text:?}"
    );
    assert!(
        text.contains("layer data (linux/amd64,linux/arm64) ["),
        "{text:?}"
    );
    assert!(
        text.contains("=>") || text.contains("=="),
        "a bar fills: {text:?}"
    );
    assert!(
        text.contains("layer data (linux/amd64,linux/arm64) sha256:"),
        "{text:?}"
    );
    assert!(
        text.contains("layer arch (linux/amd64) sha256:"),
        "{text:?}"
    );
    assert!(
        text.contains("layer arch (linux/arm64) sha256:"),
        "{text:?}"
    );
    assert!(
        text.contains("(3 layers written, "),
        "the summary line: {text:?}"
    );
}

#[test]
fn quiet_on_a_terminal_shows_no_progress() {
    let ctx = context();
    let text = build_on_a_terminal(&ctx, &["-q".into()]);
    assert!(!text.contains("layer "), "{text:?}");
    assert!(!text.contains("\u{1b}["), "{text:?}");
    assert!(
        text.trim().starts_with("sha256:"),
        "only the digest: {text:?}"
    );
}

#[test]
fn a_pipe_gets_plain_lines_naming_the_layer_and_its_platforms() {
    let ctx = context();
    let out = ctx.path().join("out");
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run imgbuild");
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains('\u{1b}'),
        "no terminal escapes in a pipe: {err:?}"
    );
    assert!(!err.contains("[="), "no bars in a pipe: {err:?}");
    let layer_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("layer ")).collect();
    assert_eq!(layer_lines.len(), 3, "one line per layer written: {err}");
    assert!(
        layer_lines
            .iter()
            .any(|l| l.starts_with("layer data") && l.contains(" linux/amd64,linux/arm64 sha256:")),
        "{err}"
    );
    assert!(
        layer_lines
            .iter()
            .any(|l| l.starts_with("layer arch") && l.contains(" linux/arm64 sha256:")),
        "{err}"
    );
}

#[test]
fn a_push_on_a_terminal_shows_a_bar_per_blob_uploaded() {
    let reg = common::registry::Registry::start(common::registry::Mode::Plain);
    let ctx = context();
    let text = build_on_a_terminal(
        &ctx,
        &[format!("--push={}", reg.reference("progress/push:1"))],
    );
    // The 3 MB layer's blob gets a bar, then its line.
    let bar = text.split("blob ").skip(1).any(|rest| {
        rest.len() > 14
            && rest[..12].bytes().all(|b| b.is_ascii_hexdigit())
            && rest[12..].starts_with(" [")
    });
    assert!(bar, "a bar named after the blob: {text:?}");
    assert!(text.contains("uploaded sha256:"), "{text:?}");
    assert!(
        text.contains("pushed "),
        "the push's summary line: {text:?}"
    );
}
