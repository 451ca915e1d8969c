//! The OCI layout as a shared store: builds add to it, never disturb each other.

mod common;

use common::Ctx;
use std::fs;

fn recipe(tag: &str, content: &str) -> String {
    format!(
        "[image]\ntags = [\"{tag}\"]\n[[layer]]\nname = \"l\"\n[[layer.file]]\npath = \"/f\"\ncontent = \"{content}\"\n[[layer.copy]]\nsrc = \"big\"\ndst = \"/big\"\n"
    )
}

#[test]
fn concurrent_builds_into_one_out_all_land_with_their_tags() {
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let ctxs: Vec<Ctx> = (0..6)
        .map(|i| {
            let c = Ctx::new();
            c.recipe_text(&recipe(&format!("t{i}"), &format!("build {i}")));
            c.write("big", common::test_bytes(i, 2_000_000));
            c
        })
        .collect();
    let digests: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ctxs
            .iter()
            .map(|c| s.spawn(|| c.build_ok(&o, &["--threads", "2"])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(o.join("index.json")).expect("index")).expect("json");
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 6, "{index}");
    for (i, d) in digests.iter().enumerate() {
        let tagged = entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == format!("t{i}"))
            .unwrap_or_else(|| panic!("tag t{i} missing: {index}"));
        assert_eq!(tagged["digest"], d.as_str());
        let layout = common::Layout::new(&o);
        for layer in layout.layer_digests(d) {
            assert!(!layout.entries(&layer).is_empty());
        }
    }
    let stray: Vec<_> = fs::read_dir(o.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temp files left behind: {stray:?}");
}

#[test]
fn a_tag_moves_to_the_newest_build_and_other_tags_stay() {
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let c = Ctx::new();
    c.write("big", b"x");
    c.recipe_text(&recipe("keep", "one"));
    let first = c.build_ok(&o, &[]);
    c.recipe_text(&recipe("keep", "two"));
    let second = c.build_ok(&o, &["--tag", "latest"]);
    c.recipe_text(&recipe("keep", "three"));
    let third = c.build_ok(&o, &["--tag", "latest"]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(o.join("index.json")).expect("index")).expect("json");
    let by_tag = |t: &str| {
        index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == t)
            .map(|e| e["digest"].as_str().expect("digest").to_string())
    };
    assert_eq!(by_tag("keep").as_deref(), Some(first.as_str()));
    assert_eq!(by_tag("latest").as_deref(), Some(third.as_str()));
    assert_ne!(second, third);
    // Old images stay in the store: nothing is ever deleted.
    assert!(o.join("blobs/sha256").join(&second[7..]).is_file());
}

#[test]
fn layout_files_are_readable_by_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let out = tempfile::tempdir().expect("tmp");
    let o = out.path().join("o");
    let c = Ctx::new();
    c.write("big", b"x").recipe_text(&recipe("t", "x"));
    let d = c.build_ok(&o, &[]);
    for p in [
        o.join("index.json"),
        o.join("oci-layout"),
        o.join("blobs/sha256").join(&d[7..]),
    ] {
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o044, "{} is {mode:o}", p.display());
    }
}

#[test]
fn out_inside_a_copied_tree_is_skipped_with_one_warning_that_quiet_silences() {
    let c = Ctx::new();
    c.write("app/main.txt", "x");
    c.recipe_text("[image]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nname = \"l\"\n[[layer.copy]]\nsrc = \"app/\"\ndst = \"/app/\"\n");
    let o = c.path().join("app/out");
    let first = c.build_ok(&o, &[]);
    let second = c.build(&o, &[]);
    let log = common::stderr(&second);
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), first);
    assert_eq!(log.matches("warning: not copying").count(), 1, "{log}");
    let quiet = c.build(&o, &["-q"]);
    assert!(quiet.status.success());
    assert!(
        quiet.stderr.is_empty(),
        "-q prints nothing but errors: {}",
        common::stderr(&quiet)
    );
}

#[test]
fn an_empty_layer_is_built_with_a_warning() {
    let c = Ctx::new();
    c.write(
        "a.tar",
        common::make_tar(&[("pkg/", None, None), ("pkg/f", Some(&b"x"[..]), None)]),
    );
    c.recipe_text("[[layer]]\nname = \"stripped\"\n[[layer.archive]]\nsrc = \"a.tar\"\nstrip-components = 9\n");
    let o = c.build(&c.path().join("o"), &[]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("warning: layer \"stripped\" is empty"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn a_base_configs_unmodelled_fields_are_carried_over() {
    use sha2::Digest as _;
    let c = Ctx::new();
    let base = Ctx::new();
    base.recipe_text("[[layer]]\nname = \"b\"\n[[layer.file]]\npath = \"/b\"\ncontent = \"b\"\n");
    let base_dir = c.path().join("base");
    let d = base.build_ok(&base_dir, &[]);
    // Rewrite the base's config with fields imgbuild does not model, as other
    // builders write them, and give it a new manifest.
    let layout = common::Layout::new(&base_dir);
    let mut manifest = layout.manifest(&d);
    let mut config = layout.config(&d);
    config["author"] = "someone@example.com".into();
    config["os.version"] = "10.0.17763.1".into();
    let put = |v: &serde_json::Value| {
        let bytes = serde_json::to_vec(v).expect("json");
        let hex = format!("{:x}", sha2::Sha256::digest(&bytes));
        fs::write(base_dir.join("blobs/sha256").join(&hex), &bytes).expect("write");
        (format!("sha256:{hex}"), bytes.len())
    };
    let (cd, cs) = put(&config);
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, _) = put(&manifest);
    c.recipe_text(&format!("[base]\nimage = \"oci:base@{md}\"\n[[layer]]\nname = \"x\"\n[[layer.file]]\npath = \"/x\"\ncontent = \"x\"\n"));
    let out = c.path().join("o");
    let ours = c.build_ok(&out, &[]);
    let got = common::Layout::new(&out).config(&ours);
    assert_eq!(got["author"], "someone@example.com");
    assert_eq!(got["os.version"], "10.0.17763.1");
}

#[test]
fn a_symlinked_lock_file_is_refused_and_nothing_is_created_outside_out() {
    let c = Ctx::new();
    c.recipe_text(&recipe("t", "x")).write("big", "b");
    let out = c.path().join("out");
    let outside = c.path().join("outside");
    fs::create_dir_all(&out).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    std::os::unix::fs::symlink(outside.join("planted"), out.join(".index.json.lock"))
        .expect("symlink");
    let o = c.build(&out, &[]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(".index.json.lock is a symlink") && err.contains("delete the symlink"),
        "{err}"
    );
    assert!(
        !outside.join("planted").exists(),
        "the lock was created through the symlink, outside --out"
    );
}

/// A pid that ran and has exited (and was reaped): no process has it now.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[test]
fn a_build_removes_temp_files_of_killed_builds_but_not_of_running_ones() {
    let c = Ctx::new();
    c.recipe_text(&recipe("t", "x")).write("big", "b");
    let out = c.path().join("out");
    c.build_ok(&out, &[]);
    let dead = dead_pid();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let live = sleeper.id();
    let dirs = [
        out.clone(),
        out.join("blobs/sha256"),
        out.join(".imgbuild/layers"),
    ];
    let mut stale = Vec::new();
    let mut kept = Vec::new();
    let mut held = Vec::new();
    for dir in &dirs {
        fs::create_dir_all(dir).expect("mkdir");
        let s = dir.join(format!(".tmp-{dead}-killed"));
        fs::write(&s, "half a blob").expect("write");
        stale.push(s);
        // A running process's temp file stays, whatever its lock.
        let k = dir.join(format!(".tmp-{live}-running"));
        fs::write(&k, "in progress").expect("write");
        kept.push(k);
        // A file locked by its writer stays even when its pid looks dead (a build in
        // another pid namespace sharing the layout).
        let h = dir.join(format!(".tmp-{dead}-locked"));
        fs::write(&h, "in progress elsewhere").expect("write");
        let f = fs::File::open(&h).expect("open");
        f.lock().expect("lock");
        held.push(f);
        kept.push(h);
        // A temp file being created (not yet locked and named) stays; one left so for
        // minutes by a build killed then is removed.
        let fresh = dir.join(".tmpnew-fresh");
        fs::write(&fresh, "").expect("write");
        kept.push(fresh);
        let old = dir.join(".tmpnew-old");
        fs::write(&old, "").expect("write");
        fs::File::options()
            .write(true)
            .open(&old)
            .expect("open")
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
            .expect("set mtime");
        stale.push(old);
    }
    c.write("big", "changed");
    c.build_ok(&out, &[]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    for s in &stale {
        assert!(!s.exists(), "{} of a killed build was left", s.display());
    }
    for k in &kept {
        assert!(k.exists(), "{} of a live build was removed", k.display());
    }
    drop(held);
}

#[test]
fn a_base_layout_outside_the_context_is_refused_at_its_recipe_line() {
    // A real layout outside the context: absolute, through `..` and through a
    // symlink, each refused as `src` would be (exit 2 at the line of `image`).
    let outside = Ctx::new();
    outside.recipe_text(&recipe("t", "x")).write("big", "b");
    let base_dir = outside.path().join("layout");
    let d = outside.build_ok(&base_dir, &[]);
    let d = d.trim();
    let c = Ctx::new();
    std::os::unix::fs::symlink(&base_dir, c.path().join("linked")).unwrap();
    let rel_up = {
        let mut up = std::path::PathBuf::new();
        for _ in c.path().components().skip(1) {
            up.push("..");
        }
        up.join(base_dir.strip_prefix("/").unwrap())
    };
    for (dir, why) in [
        (base_dir.display().to_string(), "is absolute"),
        (
            rel_up.display().to_string(),
            "goes outside the context with '..'",
        ),
        ("linked".to_string(), "outside the context"),
    ] {
        c.recipe_text(&format!(
            "[base]\nimage = \"oci:{dir}@{d}\"\n[[layer]]\nname = \"x\"\n[[layer.file]]\npath = \"/x\"\ncontent = \"x\"\n"
        ));
        let out = c.path().join("o");
        let o = c.build(&out, &[]);
        let e = common::stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{dir}: {e}");
        assert!(e.contains(why), "{dir}: {e}");
        assert!(e.contains("recipe.toml:2:9"), "{dir}: {e}");
        assert!(
            !out.join("index.json").exists(),
            "{dir}: something was written"
        );
    }
}

/// A base image of `content`, tagged `tag`, built into `dir`: its digest.
fn tagged_base(dir: &std::path::Path, tag: &str, content: &str) -> String {
    let b = Ctx::new();
    b.recipe_text(&format!(
        "[image]\ntags = [\"{tag}\"]\n[[layer]]\nname = \"b\"\n[[layer.file]]\npath = \"/b\"\ncontent = \"{content}\"\n"
    ));
    b.build_ok(dir, &[])
}

/// The base manifest digest a build's (single-platform) manifest names.
fn base_of(out: &std::path::Path, digest: &str) -> String {
    common::Layout::new(out).manifest(digest)["annotations"]["org.opencontainers.image.base.digest"]
        .as_str()
        .expect("base.digest annotation")
        .to_string()
}

fn lock_cmd(c: &Ctx) -> std::process::Output {
    common::imgbuild()
        .arg("lock")
        .arg(c.recipe())
        .output()
        .expect("run imgbuild lock")
}

#[test]
fn an_oci_dir_tag_base_is_pinned_like_a_registry_tag() {
    let c = Ctx::new();
    let base_dir = c.path().join("base");
    let one = tagged_base(&base_dir, "1", "one");
    let two = tagged_base(&base_dir, "2", "two");
    let on = |image: &str| {
        format!(
            "[image]\nsource-date-epoch = 1\nformat = 2\n[base]\nimage = \"{image}\"\n[[layer]]\nname = \"x\"\n[[layer.file]]\npath = \"/x\"\ncontent = \"x\"\n"
        )
    };
    c.recipe_text(&on("oci:base:1"));
    let out = c.path().join("o");

    // A plain build reads the tag now, and says that the base is not pinned.
    let o = c.build(&out, &[]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("base image oci:base:1 is not pinned")
            && e.contains(&format!("gives {one} today"))
            && e.contains("imgbuild lock")
            && e.contains(&format!("oci:base@{one}")),
        "{e}"
    );
    let built = String::from_utf8(o.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(base_of(&out, &built), one);

    // --locked requires the pin: a lock, and one that pins this base.
    let o = c.build(&out, &["--locked"]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("recipe.lock"), "{e}");
    c.write("recipe.lock", "version = 1\nformat = 2\n");
    let o = c.build(&out, &["--locked"]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("--locked")
            && e.contains("\"oci:base:1\" is not pinned")
            && e.contains("imgbuild lock"),
        "{e}"
    );

    // `imgbuild lock` pins it: the [base] entry and the platform's manifest.
    let o = lock_cmd(&c);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let lock: toml::Value =
        toml::from_str(&fs::read_to_string(c.path().join("recipe.lock")).expect("lock"))
            .expect("toml");
    assert_eq!(lock["base"]["image"].as_str(), Some("oci:base:1"), "{lock}");
    assert_eq!(
        lock["base"]["digest"].as_str(),
        Some(one.as_str()),
        "{lock}"
    );
    assert_eq!(
        lock["base"]["platforms"]["linux/amd64"].as_str(),
        Some(one.as_str()),
        "{lock}"
    );

    // The tag moves: --locked, and a plain build, keep the locked digest, silently.
    let moved = tagged_base(&base_dir, "1", "moved");
    assert_ne!(moved, one);
    for args in [&["--locked"][..], &[][..]] {
        let o = c.build(&out, args);
        let e = common::stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
        assert!(!e.contains("not pinned"), "{args:?}: {e}");
        let d = String::from_utf8(o.stdout)
            .expect("utf8")
            .trim()
            .to_string();
        assert_eq!(d, built, "{args:?}: the lock's pin was not used");
    }

    // A lock whose pin the layout does not hold: the lock and the layout disagree.
    let lock_path = c.path().join("recipe.lock");
    let good_lock = fs::read_to_string(&lock_path).expect("lock");
    let zero = format!("sha256:{}", "0".repeat(64));
    fs::write(&lock_path, good_lock.replace(&one, &zero)).expect("write");
    let o = c.build(&out, &[]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("recipe.lock and the layout disagree")
            && e.contains(&zero)
            && e.contains(&moved),
        "{e}"
    );
    fs::write(&lock_path, &good_lock).expect("write");

    // Another tag than the lock pins: a stale lock is a warning without --locked (the
    // recipe's base is built on), exit 2 with it.
    c.recipe_text(&on("oci:base:2"));
    let o = c.build(&out, &[]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("is stale") && e.contains("pins base oci:base:1"),
        "{e}"
    );
    let d = String::from_utf8(o.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(base_of(&out, &d), two);
    let o = c.build(&out, &["--locked"]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("--locked") && e.contains("pins base oci:base:1"),
        "{e}"
    );

    // A tag the layout lacks: exit 2, listing the tags there.
    c.recipe_text(&on("oci:base:3"));
    let o = c.build(&out, &[]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("no image is tagged \"3\"") && e.contains("tags in this layout"),
        "{e}"
    );

    // `oci:DIR`: the layout's only image, under the same rules.
    let solo = tagged_base(&c.path().join("solo"), "s", "solo");
    c.recipe_text(&on("oci:solo"));
    let o = c.build(&out, &[]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains(&format!("the only image of solo is {solo} today")),
        "{e}"
    );
    let o = c.build(&out, &["--locked"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    let o = lock_cmd(&c);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = c.build(&out, &["--locked"]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    let d = String::from_utf8(o.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(base_of(&out, &d), solo);
}
