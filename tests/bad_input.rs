//! Bad input (docs/cli.md, "Output streams and exit codes") exits 2 with a message that says what is wrong, where (recipe
//! file:line:col and the line, or the source path) and how to fix it — and leaves
//! nothing in --out.

mod common;

use common::{imgbuild, Ctx};
use std::process::Command;

/// Builds, expects exit 2, checks that --out was not created, returns stderr.
fn fails(ctx: &Ctx, args: &[&str]) -> String {
    let out = ctx.path().join("never-written");
    let o = ctx.build(&out, args);
    let err = common::stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit 2, got {:?}: {err}",
        o.status.code()
    );
    assert!(o.stdout.is_empty(), "stdout must stay empty on error");
    assert!(
        !out.exists(),
        "--out must not be created on bad input; stderr: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn layer(items: &str) -> String {
    format!("[[layer]]\nname = \"l\"\n{items}")
}

#[test]
fn syntax_error_points_at_the_line() {
    let c = Ctx::new();
    c.recipe_text("[image]\ntags = [\"a\",\n[config]\n");
    let e = fails(&c, &[]);
    assert!(e.contains("recipe.toml:"), "{e}");
    assert!(e.contains(" | "), "the offending line is shown: {e}");
}

#[test]
fn unknown_key_names_the_key_and_suggests_the_nearest() {
    let c = Ctx::new();
    c.recipe_text(&layer("[[layer.copy]]\nsrc = \"a\"\ndest = \"/a\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("unknown key `dest`"), "{e}");
    assert!(e.contains("did you mean `dst`?"), "{e}");
    assert!(e.contains("recipe.toml:5:1"), "{e}");
}

#[test]
fn wrong_type_is_reported_with_location_in_words_with_an_example() {
    let c = Ctx::new();
    c.recipe_text("[image]\ntags = \"latest\"\n");
    let e = fails(&c, &[]);
    assert!(e.contains("recipe.toml:2:8"), "{e}");
    assert!(
        e.contains("error: `tags` must be an array, not a string (\"latest\")"),
        "{e}"
    );
    assert!(e.contains("help: write tags = [\"…\"]"), "{e}");
    assert!(!e.contains("invalid type"), "no serde jargon: {e}");

    c.recipe_text("[image]\ncompression = 5\n");
    let e = fails(&c, &[]);
    assert!(e.contains("recipe.toml:2:15"), "{e}");
    assert!(
        e.contains("`compression` must be a string, not a number (5)"),
        "{e}"
    );
}

#[test]
fn mode_out_of_range_is_rejected() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "[[layer.file]]\npath = \"/f\"\ncontent = \"\"\nmode = 0o10000\n",
    ));
    let e = fails(&c, &[]);
    assert!(e.contains("out of range") && e.contains("0o7777"), "{e}");
}

#[test]
fn relative_destination_is_rejected_with_the_absolute_form_suggested() {
    let c = Ctx::new();
    c.write("a", "x")
        .recipe_text(&layer("[[layer.copy]]\nsrc = \"a\"\ndst = \"app/a\"\n"));
    let e = fails(&c, &[]);
    assert!(
        e.contains("not an absolute path") && e.contains("\"/app/a\""),
        "{e}"
    );
}

#[test]
fn dotdot_destination_is_rejected() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "[[layer.symlink]]\npath = \"/a/../../b\"\ntarget = \"x\"\n",
    ));
    assert!(fails(&c, &[]).contains("'..'"));
}

#[test]
fn missing_source_names_the_path() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "[[layer.copy]]\nsrc = \"target/app\"\ndst = \"/app\"\n",
    ));
    let e = fails(&c, &[]);
    assert!(
        e.contains("does not exist") && e.contains("target/app") && e.contains("recipe.toml:4:7"),
        "{e}"
    );
}

#[test]
fn source_escaping_the_context_with_dotdot_is_rejected() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "[[layer.copy]]\nsrc = \"../etc/passwd\"\ndst = \"/p\"\n",
    ));
    let e = fails(&c, &[]);
    assert!(e.contains("outside the context"), "{e}");
}

#[test]
fn source_escaping_through_a_symlinked_parent_directory_is_rejected() {
    let outside = tempfile::tempdir().expect("tmp");
    std::fs::write(outside.path().join("secret"), "s").expect("write");
    let c = Ctx::new();
    c.symlink(outside.path().to_str().expect("utf8"), "link");
    c.recipe_text(&layer(
        "[[layer.copy]]\nsrc = \"link/secret\"\ndst = \"/s\"\n",
    ));
    let e = fails(&c, &[]);
    assert!(
        e.contains("outside the context") && e.contains("symlinked directory"),
        "{e}"
    );
}

#[test]
fn a_symlink_source_is_copied_as_a_symlink_not_followed_outside() {
    // Not an error: naming a symlink copies the link itself.
    let c = Ctx::new();
    c.symlink("/etc/passwd", "passwd-link");
    c.recipe_text(&layer(
        "[[layer.copy]]\nsrc = \"passwd-link\"\ndst = \"/p\"\n",
    ));
    let out = c.path().join("o");
    c.build_ok(&out, &[]);
}

#[test]
fn fifo_in_a_copied_tree_is_named() {
    let c = Ctx::new();
    c.mkdir("tree");
    let st = Command::new("mkfifo")
        .arg(c.path().join("tree/pipe"))
        .status()
        .expect("mkfifo");
    assert!(st.success());
    c.recipe_text(&layer("[[layer.copy]]\nsrc = \"tree/\"\ndst = \"/t/\"\n"));
    let e = fails(&c, &[]);
    assert!(
        e.contains("tree/pipe") && e.contains("FIFO") && e.contains("exclude"),
        "{e}"
    );
}

#[test]
fn socket_in_a_copied_tree_is_named() {
    let c = Ctx::new();
    c.mkdir("tree");
    let _listener =
        std::os::unix::net::UnixListener::bind(c.path().join("tree/sock")).expect("bind");
    c.recipe_text(&layer("[[layer.copy]]\nsrc = \"tree/\"\ndst = \"/t/\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("tree/sock") && e.contains("socket"), "{e}");
}

#[test]
fn device_file_in_a_copied_tree_is_named() {
    let c = Ctx::new();
    c.mkdir("tree");
    let st = Command::new("mknod")
        .arg(c.path().join("tree/null"))
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(
        st.success(),
        "mknod failed: this test needs root (CI runs as root)"
    );
    c.recipe_text(&layer("[[layer.copy]]\nsrc = \"tree/\"\ndst = \"/t/\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("tree/null") && e.contains("device"), "{e}");
}

#[test]
fn two_items_writing_one_path_are_both_shown() {
    let c = Ctx::new();
    c.recipe_text(&layer("[[layer.file]]\npath = \"/etc/x\"\ncontent = \"a\"\n[[layer.symlink]]\npath = \"/etc/x\"\ntarget = \"y\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("two items of layer \"l\" write /etc/x"), "{e}");
    assert!(e.contains("first written here"), "{e}");
}

#[test]
fn identical_directories_from_two_items_are_allowed() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "[[layer.dir]]\npath = \"/d\"\n[[layer.dir]]\npath = \"/d/\"\n",
    ));
    c.build_ok(&c.path().join("o"), &[]);
}

#[test]
fn a_file_used_as_a_directory_is_rejected() {
    let c = Ctx::new();
    c.recipe_text(&layer("[[layer.file]]\npath = \"/a\"\ncontent = \"\"\n[[layer.file]]\npath = \"/a/b\"\ncontent = \"\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("/a/b") && e.contains("non-directory"), "{e}");
}

#[test]
fn unknown_platform_is_rejected_with_a_suggestion() {
    let c = Ctx::new();
    c.recipe_text("[image]\nplatforms = [\"linux/aarch64\"]\n");
    let e = fails(&c, &[]);
    assert!(
        e.contains("unknown architecture \"aarch64\"") && e.contains("recipe.toml:2:14"),
        "{e}"
    );
    let c = Ctx::new();
    c.recipe_text("");
    let e = fails(&c, &["--platform", "linux/amd65"]);
    assert!(e.contains("--platform") && e.contains("amd64"), "{e}");
}

#[test]
fn unknown_compression_is_rejected() {
    let c = Ctx::new();
    c.recipe_text("[image]\ncompression = \"gzip9\"\n");
    let e = fails(&c, &[]);
    assert!(
        e.contains("unknown compression \"gzip9\"") && e.contains("did you mean \"gzip\""),
        "{e}"
    );
}

#[test]
fn missing_recipe_says_how_to_fix_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("o");
    let o = imgbuild()
        .current_dir(dir.path())
        .arg("build")
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("recipe.toml does not exist") && e.contains("help:"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn bad_source_date_epoch_is_rejected() {
    let c = Ctx::new();
    c.recipe_text("");
    let e = fails(&c, &["--source-date-epoch", "yesterday"]);
    assert!(
        e.contains("--source-date-epoch") && e.contains("whole number"),
        "{e}"
    );
    let out = c.path().join("never-written");
    let o = imgbuild()
        .arg("build")
        .arg(c.recipe())
        .arg("--out")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "1.5")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("SOURCE_DATE_EPOCH"));
    assert!(!out.exists());
}

#[test]
fn invalid_image_repository_is_rejected_at_its_line_even_without_push() {
    for (repository, says) in [
        (
            "registry.example.com/acme/Hello:1.0@sha256:zz",
            "must not carry a tag or digest",
        ),
        (
            "registry.example.com/acme/hello:1.0",
            "must not carry a tag or digest",
        ),
        (
            "registry.example.com/acme/Hello",
            "is not a registry repository",
        ),
        ("oci:some/dir", "is not a registry repository"),
    ] {
        let c = Ctx::new();
        c.recipe_text(&format!(
            "[image]\nrepository = \"{repository}\"\n{}",
            layer("  [[layer.file]]\n  path = \"/a\"\n  content = \"a\"\n")
        ));
        let docs = c.path().join("docs");
        std::fs::create_dir(&docs).unwrap();
        let provenance = docs.join("p.json");
        let sbom = docs.join("s.json");
        let e = fails(
            &c,
            &[
                "--provenance",
                provenance.to_str().unwrap(),
                "--sbom",
                sbom.to_str().unwrap(),
            ],
        );
        assert!(e.contains(says), "{repository}: {e}");
        assert!(e.contains("recipe.toml:2:14"), "{repository}: {e}");
        assert!(e.contains("help:"), "{repository}: {e}");
        assert!(
            !provenance.exists() && !sbom.exists(),
            "{repository}: a document was written"
        );
    }
}

#[test]
fn unknown_user_name_in_config_is_rejected() {
    let c = Ctx::new();
    c.recipe_text("[config]\nuser = \"nobody-here\"\n");
    let e = fails(&c, &[]);
    assert!(e.contains("nobody-here") && e.contains("[[user]]"), "{e}");
}

#[test]
fn removing_and_writing_one_path_in_one_layer_is_rejected() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "remove = [\"/etc/x\"]\n[[layer.file]]\npath = \"/etc/x\"\ncontent = \"\"\n",
    ));
    assert!(fails(&c, &[]).contains("both removes and writes /etc/x"));
}

#[test]
fn archive_with_path_traversal_is_rejected() {
    let c = Ctx::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // set_path refuses "..", so write the name bytes directly, as a hostile tool would.
    h.as_gnu_mut().expect("gnu").name[..11].copy_from_slice(b"../evil.txt");
    h.set_cksum();
    b.append(&h, &b"x"[..]).expect("append");
    c.write("a.tar", b.into_inner().expect("tar"));
    c.recipe_text(&layer("[[layer.archive]]\nsrc = \"a.tar\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("'..'"), "{e}");
}

#[test]
fn usage_errors_exit_2() {
    let o = imgbuild()
        .args(["build", "--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let o = imgbuild().args(["frobnicate"]).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn unwritable_output_is_an_io_error_exit_3() {
    let c = Ctx::new();
    c.recipe_text(&layer("[[layer.file]]\npath = \"/f\"\ncontent = \"x\"\n"));
    c.write("blocker", "a file where --out's parent should be");
    let o = c.build(&c.path().join("blocker/out"), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("blocker"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn a_recipe_that_is_not_utf8_is_bad_input() {
    let c = Ctx::new();
    c.write("recipe.toml", b"[image]\ntags = [\"\xff\xfe\"]\n");
    let e = fails(&c, &[]);
    assert!(e.contains("not UTF-8"), "{e}");
}

#[test]
fn a_directory_as_recipe_means_its_recipe_toml() {
    let c = Ctx::new();
    c.recipe_text("[[layer]]\nname = \"l\"\n[[layer.file]]\npath = \"/f\"\ncontent = \"x\"\n");
    let out = c.path().join("o");
    let o = imgbuild()
        .arg("build")
        .arg(c.path())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        c.build_ok(&c.path().join("o2"), &[])
    );
}

#[test]
fn out_that_is_a_non_empty_non_layout_directory_is_refused() {
    let c = Ctx::new();
    c.recipe_text("");
    c.write("target/app.bin", "someone else's file");
    let o = c.build(&c.path().join("target"), &[]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("not an OCI image layout") && e.contains("help:"),
        "{e}"
    );
    let names: Vec<_> = std::fs::read_dir(c.path().join("target"))
        .expect("dir")
        .collect();
    assert_eq!(names.len(), 1, "nothing was added to it");
}

#[test]
fn names_starting_with_wh_are_refused_everywhere() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "[[layer.file]]\npath = \"/e/.wh.x\"\ncontent = \"\"\n",
    ));
    assert!(fails(&c, &[]).contains("whiteout"));
    c.recipe_text(&layer("remove = [\"/a/.wh..wh..opq\"]\n"));
    assert!(fails(&c, &[]).contains("whiteout"));
    c.write("d/.wh.foo", "x");
    c.recipe_text(&layer("[[layer.copy]]\nsrc = \"d\"\ndst = \"/d\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("d/.wh.foo") && e.contains("exclude"), "{e}");
    c.write(
        "a.tar",
        common::make_tar(&[("x/.wh.y", Some(&b""[..]), None)]),
    );
    c.recipe_text(&layer("[[layer.archive]]\nsrc = \"a.tar\"\n"));
    assert!(fails(&c, &[]).contains("whiteout"));
}

#[test]
fn a_file_or_symlink_at_the_root_or_with_a_trailing_slash_is_refused() {
    let c = Ctx::new();
    c.recipe_text(&layer("[[layer.file]]\npath = \"/\"\ncontent = \"\"\n"));
    assert!(fails(&c, &[]).contains("root directory"));
    c.recipe_text(&layer("[[layer.symlink]]\npath = \"/\"\ntarget = \"x\"\n"));
    assert!(fails(&c, &[]).contains("root directory"));
    c.recipe_text(&layer("[[layer.file]]\npath = \"/x/\"\ncontent = \"\"\n"));
    let e = fails(&c, &[]);
    assert!(e.contains("ends in '/'") && e.contains("\"/x\""), "{e}");
}

#[test]
fn modes_must_be_written_in_octal() {
    let c = Ctx::new();
    c.recipe_text(&layer(
        "[[layer.file]]\npath = \"/f\"\ncontent = \"\"\nmode = 755\n",
    ));
    let e = fails(&c, &[]);
    assert!(
        e.contains("not written in octal") && e.contains("0o755"),
        "{e}"
    );
    c.write("d/x", "x");
    c.recipe_text(&layer(
        "[[layer.copy]]\nsrc = \"d\"\ndst = \"/d\"\ndir-mode = 493\n",
    ));
    let e = fails(&c, &[]);
    assert!(e.contains("0o755"), "493 is 0o755: {e}");
    c.recipe_text(&layer(
        "[[layer.file]]\npath = \"/f\"\ncontent = \"\"\nmode = 0o755\n",
    ));
    c.build_ok(&c.path().join("o"), &[]);
}

#[test]
fn tag_flags_are_checked_like_recipe_tags() {
    let c = Ctx::new();
    c.recipe_text("");
    for bad in ["bad tag", "", "a/b", "x:y"] {
        let e = fails(&c, &["--tag", bad]);
        assert!(
            e.contains("--tag") && e.contains("not a valid tag"),
            "{bad:?}: {e}"
        );
    }
    let e = fails(&c, &["--tag", "v1,,v2"]);
    assert!(e.contains("not a valid tag"), "{e}");
}

#[test]
fn platform_flags_tolerate_spaces_after_commas() {
    let c = Ctx::new();
    c.recipe_text("");
    let out = c.path().join("o");
    let d = c.build_ok(&out, &["--platform", "linux/amd64, linux/arm64"]);
    let index = common::Layout::new(&out).json(&d);
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
}

#[test]
fn env_keys_and_stop_signal_are_checked() {
    let c = Ctx::new();
    c.recipe_text("[config]\nenv = { \"A=B\" = \"x\" }\n");
    assert!(fails(&c, &[]).contains("no '='"));
    c.recipe_text("[config]\nenv = { \"\" = \"x\" }\n");
    assert!(fails(&c, &[]).contains("non-empty"));
    c.recipe_text("[config]\nstop-signal = \"\"\n");
    assert!(fails(&c, &[]).contains("stop-signal is empty"));
}

#[test]
fn a_fractional_epoch_gets_a_clear_message() {
    let c = Ctx::new();
    c.recipe_text("[image]\nsource-date-epoch = 1.5\n");
    let e = fails(&c, &[]);
    assert!(
        e.contains("whole number of seconds or \"git\"") && !e.contains("EpochSetting"),
        "{e}"
    );
}

#[test]
fn a_path_conflict_shows_the_earlier_item_as_first() {
    let c = Ctx::new();
    c.write("d/ok", "x");
    c.recipe_text(&layer("[[layer.copy]]\nsrc = \"d/\"\ndst = \"/d/\"\n[[layer.file]]\npath = \"/d/ok\"\ncontent = \"\"\n"));
    let e = fails(&c, &[]);
    let (main, first) = e.split_once("first written here").expect("two snippets");
    assert!(
        main.contains("recipe.toml:6:") && first.contains("recipe.toml:3:"),
        "{e}"
    );
}

#[test]
fn a_truncated_compressed_archive_is_bad_input_naming_the_archive() {
    use std::io::Write;
    let tar = common::make_tar(&[
        ("a", Some(&common::test_bytes(1, 200_000)[..]), None),
        ("b", Some(&common::test_bytes(2, 200_000)[..]), None),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    for (name, whole) in [("t.tar.gz", gz), ("t.tar.zst", zst)] {
        let c = Ctx::new();
        c.write(name, &whole[..whole.len() / 2]);
        c.recipe_text(&layer(&format!(
            "[[layer.archive]]\nsrc = \"{name}\"\ndst = \"/x\"\n"
        )));
        let e = fails(&c, &[]);
        assert!(
            e.contains(&format!("archive {name}")) && e.contains("corrupt or truncated"),
            "{e}"
        );
        assert!(
            e.contains("recipe.toml:"),
            "the error points at the item: {e}"
        );
    }
}

/// `build --push REF` with a space: REF is read as the recipe's path; the error says
/// so and how to write it, instead of only "recipe REF does not exist".
#[test]
fn push_with_a_space_says_to_write_push_equals() {
    let c = Ctx::new();
    let o = common::imgbuild()
        .current_dir(c.path())
        .args(["build", "--push", "registry.example/team/app:1"])
        .output()
        .expect("run imgbuild");
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(
            "with a space after --push, registry.example/team/app:1 was read as the recipe's path"
        ),
        "{e}"
    );
    assert!(
        e.contains("write --push=registry.example/team/app:1"),
        "{e}"
    );
}

/// Every recipe in `testdata/bad-recipes/` is refused with exit 2, an empty stdout,
/// nothing written, and each line of its `.expect` file on stderr.
#[test]
fn every_bad_recipe_in_testdata_gets_its_error() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bad-recipes");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/bad-recipes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "{} cases in {}",
        cases.len(),
        dir.display()
    );
    for case in cases {
        let expect = case.with_extension("expect");
        let wanted = std::fs::read_to_string(&expect)
            .unwrap_or_else(|e| panic!("{}: {e} (every case needs one)", expect.display()));
        let c = Ctx::new();
        c.recipe_text(&std::fs::read_to_string(&case).expect("read case"));
        let e = fails(&c, &[]);
        for fragment in wanted.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                e.contains(fragment),
                "{}: stderr lacks {fragment:?}:\n{e}",
                case.display()
            );
        }
    }
}
