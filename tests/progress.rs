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

/// The pseudo-terminal's size: tall and wide enough that nothing scrolls or wraps.
const ROWS: u16 = 500;
const COLS: u16 = 400;

/// Runs `imgbuild ARGS` with stdout and stderr on a pseudo-terminal, expecting
/// success; returns the bytes the terminal received (escapes included).
fn on_a_terminal(args: &[String]) -> String {
    on_a_terminal_exiting(args, 0)
}

/// [`on_a_terminal`], expecting exit code `code`.
fn on_a_terminal_exiting(args: &[String], code: i32) -> String {
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
    let command = format!("stty rows {ROWS} cols {COLS} && exec {}", quoted.join(" "));
    let o = script
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("run script");
    let all = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(code),
        "imgbuild's exit code on a terminal: {all}"
    );
    all
}

/// What the terminal shows once the command has ended: `raw` played through a
/// terminal emulator, so a bar that was cleared is gone and a printed line stays.
/// Its non-empty lines, right-trimmed.
fn final_screen(raw: &str) -> Vec<String> {
    let size = |n| std::num::NonZeroU16::new(n).expect("a terminal has rows and columns");
    let mut terminal = vt100::Parser::new(size(ROWS), size(COLS), 0);
    terminal.process(raw.as_bytes());
    // Row by row: a line that fills the width exactly would otherwise be joined
    // with the next one, as if it had wrapped.
    terminal
        .screen()
        .rows(0, COLS)
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether `line` is a progress bar: `[` then the bar's `=`, `>` and spaces, `]`.
fn is_bar(line: &str) -> bool {
    line.split('[').skip(1).any(|rest| {
        rest.split_once(']').is_some_and(|(inside, _)| {
            inside.len() >= 10 && inside.chars().all(|c| c == '=' || c == '>' || c == ' ')
        })
    })
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
            .any(|l| l.starts_with("layer data") && l.contains("(linux/amd64,linux/arm64) sha256:")),
        "{err}"
    );
    assert!(
        layer_lines
            .iter()
            .any(|l| l.starts_with("layer arch") && l.contains("(linux/arm64) sha256:")),
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
    assert!(has_blob_bar(&text), "a bar named after the blob: {text:?}");
    let screen = final_screen(&text);
    assert_no_bar_left(&screen);
    assert!(
        screen.iter().any(|l| l.starts_with("uploaded sha256:")),
        "{screen:#?}"
    );
    assert!(
        screen.iter().any(|l| l.starts_with("pushed ")),
        "the push's summary line: {screen:#?}"
    );
}

/// Whether the terminal received a blob's bar (`blob HEX12 [`) at some point.
fn has_blob_bar(raw: &str) -> bool {
    raw.split("blob ").skip(1).any(|rest| {
        rest.len() > 14
            && rest[..12].bytes().all(|b| b.is_ascii_hexdigit())
            && rest[12..].starts_with(" [")
    })
}

fn assert_no_bar_left(screen: &[String]) {
    let bars: Vec<&String> = screen.iter().filter(|l| is_bar(l)).collect();
    assert!(
        bars.is_empty(),
        "bars left on the screen after the command ended: {bars:#?}\nscreen: {screen:#?}"
    );
}

/// Once a build has ended, a terminal shows exactly what a pipe gets on stderr (the
/// same layer lines, the same summary), plus the digest on stdout, and no bar.
#[test]
fn a_terminal_keeps_the_lines_a_pipe_gets_and_no_bar() {
    let ctx = context();
    let out = ctx.path().join("out");
    let piped = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run imgbuild");
    assert!(piped.status.success(), "{}", common::stderr(&piped));
    let digest = String::from_utf8_lossy(&piped.stdout).trim().to_string();
    let mut plain: Vec<String> = String::from_utf8_lossy(&piped.stderr)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect();
    std::fs::remove_dir_all(&out).unwrap();

    let raw = build_on_a_terminal(&ctx, &[]);
    assert!(
        raw.lines().any(is_bar),
        "bars were drawn while it ran: {raw:?}"
    );
    let mut screen = final_screen(&raw);
    assert_no_bar_left(&screen);
    // stdout's digest is the last line; the rest is stderr's. Layers are written
    // concurrently, so their lines may come in another order.
    assert_eq!(
        screen.pop().as_deref(),
        Some(digest.as_str()),
        "{screen:#?}"
    );
    screen.sort();
    plain.sort();
    assert_eq!(screen, plain, "terminal vs pipe");
    assert!(
        plain.iter().any(|l| l.contains("(3 layers written, ")),
        "both end with the summary line: {plain:#?}"
    );
}

/// Pushes `context()`'s image to `reg` as `repo_tag` (no terminal); its reference.
fn pushed_image(reg: &common::registry::Registry, repo_tag: &str) -> String {
    let ctx = context();
    let reference = reg.reference(repo_tag);
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={reference}"))
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "{}", common::stderr(&o));
    reference
}

/// A base pulled on a terminal: a bar per blob while it downloads, gone when it is
/// done; its lines stay.
#[test]
fn a_pull_on_a_terminal_clears_each_blob_bar_when_it_is_done() {
    let reg = common::registry::Registry::start(common::registry::Mode::Plain);
    let base = pushed_image(&reg, "progress/base:1");
    let ctx = Ctx::new();
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\"]\n[base]\nimage = \"{base}\"\n\
         [[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app\"\n  content = \"x\\n\"\n"
    ));
    let raw = build_on_a_terminal(&ctx, &[]);
    assert!(has_blob_bar(&raw), "a bar per blob pulled: {raw:?}");
    let screen = final_screen(&raw);
    assert_no_bar_left(&screen);
    assert!(
        screen.iter().any(|l| l.starts_with("pulled ")),
        "{screen:#?}"
    );
}

/// `diff` of two registry images reads their layers with a bar per blob; a bar goes
/// when its blob has been read, though no other event follows it.
#[test]
fn a_diff_on_a_terminal_clears_each_blob_bar_when_it_is_read() {
    let reg = common::registry::Registry::start(common::registry::Mode::Plain);
    let a = pushed_image(&reg, "progress/diff:a");
    let ctx = context();
    ctx.write("data/big.bin", common::test_bytes(7, 3_000_000));
    let b = reg.reference("progress/diff:b");
    let o = imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={b}"))
        .output()
        .expect("run imgbuild");
    assert!(o.status.success(), "{}", common::stderr(&o));
    // The images differ: exit 1.
    let raw = on_a_terminal_exiting(&["diff".to_string(), a, b], 1);
    assert!(has_blob_bar(&raw), "a bar per blob read: {raw:?}");
    assert_no_bar_left(&final_screen(&raw));
}
