//! Each stage of a build alone, through the library: a plan from a hand-made recipe
//! (no tar involved), a layer from a hand-made plan, and `build::resolve` refusing bad
//! input before `--out` exists.

mod common;

use imgbuild::build::{self, BuildOptions};
use imgbuild::compress::Compression;
use imgbuild::digest::Digest;
use imgbuild::format::FormatVersion;
use imgbuild::layer;
use imgbuild::layout::Layout;
use imgbuild::plan::{self, Content, Entry, EntryKind, LayerPlan, PlanOptions};
use imgbuild::platform::Platform;
use imgbuild::recipe::{Recipe, RecipeSource};
use imgbuild::ExitCode;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn recipe_from(text: &str, context: &Path) -> Recipe {
    let source = RecipeSource {
        path: context.join("recipe.toml"),
        text: text.to_string(),
    };
    Recipe::parse(source, context.to_path_buf()).expect("the recipe parses")
}

#[test]
fn a_plan_is_resolved_from_a_recipe_string_and_a_context() {
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(ctx.path().join("bin")).expect("mkdir");
    std::fs::write(ctx.path().join("bin/tool"), b"#!/bin/sh\n").expect("write");
    let recipe = recipe_from(
        "[[layer]]\nname = \"app\"\n[[layer.copy]]\nsrc = \"bin/tool\"\ndst = \"/usr/bin/tool\"\nmode = 0o755\n[[layer.file]]\npath = \"/etc/app.conf\"\ncontent = \"a = 1\\n\"\n",
        ctx.path(),
    );
    let plan =
        plan::resolve(&recipe, &Platform::linux_amd64(), &PlanOptions::default()).expect("plan");
    assert_eq!(plan.layers.len(), 1);
    let layer = &plan.layers[0];
    assert_eq!(layer.name, "app");
    let paths: Vec<String> = layer
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert_eq!(
        paths,
        ["etc/", "etc/app.conf", "usr/", "usr/bin/", "usr/bin/tool"]
    );
    let tool = &layer.entries[4];
    assert_eq!(tool.mode, 0o755);
    match &tool.kind {
        EntryKind::File {
            content: Content::Path { path, .. },
            size,
        } => {
            assert_eq!(*size, 10);
            assert!(path.ends_with("bin/tool"), "{}", path.display());
        }
        other => panic!("bin/tool planned as {other:?}"),
    }
    match &layer.entries[1].kind {
        EntryKind::File {
            content: Content::Inline(bytes),
            size: 6,
        } => assert_eq!(bytes.as_slice(), b"a = 1\n"),
        other => panic!("app.conf planned as {other:?}"),
    }
}

fn entry(path: &str, kind: EntryKind, mode: u32) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
    }
}

#[test]
fn a_layer_is_written_from_a_hand_made_plan_and_reads_back_to_its_digests() {
    let out = tempfile::tempdir().expect("tmp");
    let layout = Layout::create(out.path()).expect("layout");
    let data = b"hello\n".to_vec();
    let plan = LayerPlan {
        name: "hand-made".into(),
        entries: vec![
            entry("etc/", EntryKind::Dir, 0o755),
            entry(
                "etc/hello",
                EntryKind::File {
                    size: data.len() as u64,
                    content: Content::Inline(Arc::new(data)),
                },
                0o644,
            ),
            entry(
                "etc/link",
                EntryKind::Symlink {
                    target: b"hello".to_vec(),
                },
                0o777,
            ),
        ],
    };
    for compression in [Compression::None, Compression::Gzip] {
        let blob = layer::write_layer(
            &plan,
            0,
            compression,
            FormatVersion::V1,
            NonZeroUsize::MIN,
            &layout,
        )
        .expect("write");
        let stored = std::fs::read(layout.blob_path(&blob.digest)).expect("blob");
        assert_eq!(Digest::of(&stored), blob.digest);
        assert_eq!(stored.len() as u64, blob.size);
        let tar = match compression {
            Compression::Gzip => {
                let mut t = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(stored.as_slice()),
                    &mut t,
                )
                .expect("gunzip");
                t
            }
            _ => stored.clone(),
        };
        assert_eq!(Digest::of(&tar), blob.diff_id, "{compression:?}");
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("tar")
            .map(|e| {
                let e = e.expect("entry");
                e.path().expect("path").to_string_lossy().into_owned()
            })
            .collect();
        assert_eq!(names, ["etc/", "etc/hello", "etc/link"], "{compression:?}");
    }
}

fn options(recipe: PathBuf, out: PathBuf) -> BuildOptions {
    BuildOptions {
        recipe,
        out,
        platforms: imgbuild::build::Platforms::Recipe,
        tags: None,
        epoch: None,
        env_epoch: None,
        threads: NonZeroUsize::MIN,
        events: imgbuild::events::Events::silent(),
        no_cache: false,
        shared_cache: Default::default(),
        registry: Default::default(),
        locked: false,
        context_out: None,
        extra_outputs: Vec::new(),
        compression: None,
        format: None,
        fallback_format: None,
    }
}

#[test]
fn resolve_raises_input_errors_before_out_exists() {
    let c = common::Ctx::new();
    c.write("present", b"x\n");
    let cases = [
        // Found while planning, the last reading step.
        "[[layer]]\nname = \"l\"\n[[layer.copy]]\nsrc = \"present\"\ndst = \"/p\"\n[[layer.copy]]\nsrc = \"missing\"\ndst = \"/m\"\n",
        // A config user that is neither a [[user]] nor numeric.
        "[config]\nuser = \"nobody\"\n[[layer]]\nname = \"l\"\n[[layer.copy]]\nsrc = \"present\"\ndst = \"/p\"\n",
    ];
    for text in cases {
        c.recipe_text(text);
        let out = c.path().join("out");
        let err = build::resolve(&options(c.recipe(), out.clone())).expect_err(text);
        assert_eq!(err.exit_code(), ExitCode::BadInput, "{err}");
        assert!(!out.exists(), "resolve wrote {}", out.display());
    }
    // --locked without a lock: refused, and an existing layout is left as it was.
    c.recipe_text("[[layer]]\nname = \"l\"\n[[layer.copy]]\nsrc = \"present\"\ndst = \"/p\"\n");
    let out = c.path().join("existing");
    build::build(&options(c.recipe(), out.clone())).expect("first build");
    let before = listing(&out);
    let mut locked = options(c.recipe(), out.clone());
    locked.locked = true;
    let err = build::resolve(&locked).expect_err("--locked without a lock");
    assert_eq!(err.exit_code(), ExitCode::BadInput, "{err}");
    assert_eq!(listing(&out), before);
}

/// Every file under `dir` with its bytes.
fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                files.push((p, bytes));
            }
        }
    }
    files.sort();
    files
}
