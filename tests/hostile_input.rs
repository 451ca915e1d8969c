//! Generated hostile input (docs/security.md): the recipe parser and the tar readers
//! used on archives and on image layers must answer every input with `Ok` or a clean
//! error — never a panic. Case counts are bounded so the suite runs in seconds; a
//! failing case is shrunk and printed by proptest.

use imgbuild::plan::{self, PlanOptions};
use imgbuild::platform::Platform;
use imgbuild::recipe::{Recipe, RecipeSource};
use proptest::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Shrinking a failure is worth a little time; finding one must stay bounded.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

/// Parses `text` as a recipe in `context`, then asks it everything a build asks
/// before planning; renders any error (which points into the text).
fn parse_all_the_way(text: &str, context: &Path) -> Option<Recipe> {
    let source = RecipeSource {
        path: PathBuf::from("recipe.toml"),
        text: text.to_string(),
    };
    match Recipe::parse(source, context.to_path_buf()) {
        Ok(r) => {
            for e in [
                r.platforms().err(),
                r.compression().err(),
                r.repository().err(),
            ]
            .into_iter()
            .flatten()
            {
                let _ = e.to_string();
            }
            Some(r)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

/// Pieces of recipes: real keys and sections with values of every kind, so that
/// generated recipes get past the TOML syntax into the per-key checks.
fn recipe_line() -> impl Strategy<Value = String> {
    let sections = prop::sample::select(vec![
        "[image]",
        "[base]",
        "[config]",
        "[annotations]",
        "[[user]]",
        "[[group]]",
        "[[layer]]",
        "[[layer.copy]]",
        "[[layer.file]]",
        "[[layer.dir]]",
        "[[layer.symlink]]",
        "[[layer.archive]]",
        "[config.env]",
        "[config.labels]",
    ]);
    let keys = prop::sample::select(vec![
        "name",
        "src",
        "dst",
        "path",
        "target",
        "content",
        "mode",
        "dir-mode",
        "uid",
        "gid",
        "exclude",
        "remove",
        "tags",
        "platforms",
        "compression",
        "image",
        "repository",
        "source-date-epoch",
        "user",
        "entrypoint",
        "cmd",
        "workdir",
        "ports",
        "url",
        "sha256",
        "strip-components",
        "home",
        "shell",
        "groups",
    ]);
    let values = prop::sample::select(vec![
        "\"\"",
        "\"/\"",
        "\"a\"",
        "\"/a/b\"",
        "\"../x\"",
        "\"/etc/.wh.x\"",
        "\"{arch}/{os}{variant}\"",
        "\"oci:base@sha256:0000\"",
        "\"docker.io/library/alpine:3\"",
        "\"https://u:p@h/x.tar.gz\"",
        "\"linux/amd64\"",
        "\"gzip\"",
        "\"zstd\"",
        "\"git\"",
        "0",
        "-1",
        "4294967296",
        "0o7777",
        "0o10000",
        "1.5",
        "true",
        "[]",
        "[\"a\", 1]",
        "[\"linux/arm/v7\", \"linux/amd64\", \"linux/amd64\"]",
        "{}",
        "{ \"linux/amd64\" = \"ab\" }",
        "\"\\u0000\"",
        "\"é/\\t\"",
    ]);
    prop_oneof![
        sections.prop_map(str::to_string),
        (keys, values).prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,40}",
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn the_recipe_parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        let dir = tempfile::tempdir().expect("tmp");
        parse_all_the_way(&text, dir.path());
    }

    #[test]
    fn the_recipe_parser_and_planner_never_panic_on_generated_recipes(
        lines in prop::collection::vec(recipe_line(), 0..24)
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("a"), b"x").expect("write");
        let text = lines.join("\n");
        if let Some(recipe) = parse_all_the_way(&text, dir.path()) {
            if let Err(e) = plan::resolve(&recipe, &Platform::linux_amd64(), &PlanOptions::default()) {
                let _ = e.to_string();
            }
        }
    }
}

/// A small valid tar with every kind of member the readers handle.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, path, l).expect("link"),
            None => b.append_data(&mut h, path, data).expect("append"),
        }
    };
    add("d/", tar::EntryType::Directory, b"", None);
    add("d/f", tar::EntryType::Regular, b"hello world\n", None);
    add("d/s", tar::EntryType::Symlink, b"", Some("f"));
    add("d/h", tar::EntryType::Link, b"", Some("d/f"));
    add(
        &format!("d/{}", "n".repeat(150)),
        tar::EntryType::Regular,
        b"long name",
        None,
    );
    b.into_inner().expect("tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A valid tar (plain, gzip or zstd) with bytes overwritten, cut or appended.
fn hostile_tar() -> impl Strategy<Value = Vec<u8>> {
    let base = prop::sample::select(vec![0u8, 1, 2]).prop_map(|kind| {
        let tar = sample_tar();
        match kind {
            0 => tar,
            1 => gzip(&tar),
            _ => zstd::encode_all(&tar[..], 1).expect("zstd"),
        }
    });
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16);
    (
        base,
        edits,
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(mut bytes, edits, cut, do_cut, tail)| {
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes.extend_from_slice(&tail);
            bytes
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn the_layer_reader_never_panics(bytes in hostile_tar()) {
        if let Err(e) = imgbuild::diff::tar::walk_layer(&bytes[..], None, "a generated layer") {
            let _ = e.to_string();
        }
    }

    #[test]
    fn the_layer_reader_never_panics_on_noise(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = imgbuild::diff::tar::walk_layer(&bytes[..], None, "noise");
    }

    #[test]
    fn the_archive_reader_never_panics(bytes in hostile_tar(), strip in 0u32..3) {
        let dir = tempfile::tempdir().expect("tmp");
        let context = dir.path().canonicalize().expect("canonical");
        std::fs::write(context.join("a.tar"), &bytes).expect("write");
        let text = format!(
            "[[layer]]\nname = \"l\"\n[[layer.archive]]\nsrc = \"a.tar\"\ndst = \"/x\"\nstrip-components = {strip}\n"
        );
        let recipe = parse_all_the_way(&text, &context).expect("the recipe itself is valid");
        match plan::resolve(&recipe, &Platform::linux_amd64(), &PlanOptions::default()) {
            Ok(plan) => {
                // What the plan accepted must also write: the writer reads the spool.
                let out = tempfile::tempdir().expect("tmp");
                let layout = imgbuild::layout::Layout::create(out.path()).expect("layout");
                for layer in &plan.layers {
                    let _ = imgbuild::layer::write_layer(
                        layer,
                        0,
                        imgbuild::compress::Compression::None,
                        imgbuild::format::FormatVersion::V1,
                        std::num::NonZeroUsize::MIN,
                        &layout,
                    );
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
