//! `[[user]]`/`[[group]]` on a base image that has `/etc/passwd` and `/etc/group`:
//! format 2 merges the recipe's entries into the base's; format 1 keeps its bytes
//! (the recipe's files replace the base's) and warns. The bases are built by imgbuild
//! itself into a layout inside the context.

mod common;

use common::{stderr, Ctx, Layout};

const BASE_GROUP: &str = "root:x:0:\ndaemon:x:1:\nstaff:x:50:op\nnogroup:x:65534:\n";
/// The second base layer's passwd, which replaces the first's.
const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nop:x:10:50:operator:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

/// TOML's basic string for `s`.
fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// A base layout in `c`'s `base/` with two layers (the first writes an early
/// /etc/passwd and /etc/group, the second rewrites /etc/passwd) and the layers of
/// `more`. Returns the `[base]` image value.
fn base(c: &Ctx, more: &str, platforms: &str) -> String {
    let b = Ctx::new();
    b.recipe_text(&format!(
        "[image]\nformat = 1\nsource-date-epoch = 1600000000\nplatforms = {platforms}\n[[layer]]\nname = \"etc\"\n[[layer.file]]\npath = \"/etc/passwd\"\ncontent = \"root:x:0:0:root:/root:/bin/sh\\nearly:x:5:5:early:/:/bin/sh\\n\"\n[[layer.file]]\npath = \"/etc/group\"\ncontent = {}\n[[layer]]\nname = \"users\"\n[[layer.file]]\npath = \"/etc/passwd\"\ncontent = {}\n{more}",
        toml_str(BASE_GROUP),
        toml_str(BASE_PASSWD),
    ));
    let digest = b.build_ok(&c.path().join("base"), &[]);
    format!("oci:base@{digest}")
}

const ACCOUNTS: &str = "[[group]]\nname = \"staff\"\ngid = 50\n[[user]]\nname = \"app\"\nuid = 1000\nhome = \"/home/app\"\ngroups = [\"staff\"]\n[[user]]\nname = \"op\"\nuid = 11\ngid = 50\n[[layer]]\nname = \"app\"\n[[layer.file]]\npath = \"/app\"\ncontent = \"app\"\n";

fn recipe(c: &Ctx, base: &str, format: u32) {
    c.recipe_text(&format!(
        "[image]\nformat = {format}\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base}\"\n{ACCOUNTS}"
    ));
}

/// The text of `path` in the accounts layer: the layer after the base's `base_layers`.
fn accounts_file(out: &std::path::Path, digest: &str, base_layers: usize, path: &str) -> String {
    let layout = Layout::new(out);
    let layers = layout.layer_digests(digest);
    assert_eq!(layers.len(), base_layers + 2, "base layers, accounts, app");
    let entries = layout.entries(&layers[base_layers]);
    let entry = entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} not in the accounts layer: {entries:?}"));
    String::from_utf8(entry.data.clone()).expect("utf8")
}

fn build(c: &Ctx, out: &std::path::Path) -> (String, String) {
    let o = c.build(out, &[]);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let digest = String::from_utf8(o.stdout.clone())
        .expect("utf8")
        .trim()
        .to_string();
    (digest, stderr(&o))
}

#[test]
fn format_2_merges_the_recipe_accounts_into_the_base_files() {
    let c = Ctx::new();
    let image = base(&c, "", "[\"linux/amd64\"]");
    recipe(&c, &image, 2);
    let out = tempfile::tempdir().expect("tmp");
    let (digest, err) = build(&c, out.path());
    // Every base entry in its order (root keeps its shell), op replaced in place by
    // the recipe's, app appended; the passwd is the second base layer's.
    assert_eq!(
        accounts_file(out.path(), &digest, 2, "etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nop:x:11:50:op:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\napp:x:1000:1000:app:/home/app:/sbin/nologin\n"
    );
    // staff keeps the base's member and gains the recipe's; app's own group follows.
    assert_eq!(
        accounts_file(out.path(), &digest, 2, "etc/group"),
        "root:x:0:\ndaemon:x:1:\nstaff:x:50:op,app\nnogroup:x:65534:\napp:x:1000:\n"
    );
    assert!(
        err.contains(
            "warning: the recipe's user \"op\" (uid 11, gid 50) replaces base image oci:base@"
        ) && err.contains("(uid 10, gid 50) in /etc/passwd"),
        "{err}"
    );
    assert!(!err.contains("format 1 writes them whole"), "{err}");
}

#[test]
fn format_2_honours_a_base_layer_that_removes_a_file() {
    let c = Ctx::new();
    // A third base layer removes /etc/group: the recipe's group file stands alone,
    // and the passwd is still the second layer's.
    let cleanup = "[[layer]]\nname = \"cleanup\"\nremove = [\"/etc/group\"]\n";
    let image = base(&c, cleanup, "[\"linux/amd64\"]");
    recipe(&c, &image, 2);
    let out = tempfile::tempdir().expect("tmp");
    let (digest, _) = build(&c, out.path());
    assert_eq!(
        accounts_file(out.path(), &digest, 3, "etc/group"),
        "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"
    );
    assert_eq!(
        accounts_file(out.path(), &digest, 3, "etc/passwd"),
        format!("{BASE_PASSWD}app:x:1000:1000:app:/home/app:/sbin/nologin\n").replace(
            "op:x:10:50:operator:/root:/bin/sh",
            "op:x:11:50:op:/:/sbin/nologin"
        )
    );
}

#[test]
fn format_1_keeps_replacing_the_base_files_and_warns_once() {
    let c = Ctx::new();
    // Two platforms: the warning is said once all the same.
    let image = base(&c, "", "[\"linux/amd64\", \"linux/arm64\"]");
    c.recipe_text(&format!(
        "[image]\nformat = 1\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[base]\nimage = \"{image}\"\n{ACCOUNTS}"
    ));
    let out = tempfile::tempdir().expect("tmp");
    let (digest, err) = build(&c, out.path());
    let layout = Layout::new(out.path());
    let manifests = layout.json(&digest)["manifests"].clone();
    let manifest = manifests[0]["digest"].as_str().expect("digest");
    // The recipe's files alone, as format 1 always wrote them.
    assert_eq!(
        accounts_file(out.path(), manifest, 2, "etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\napp:x:1000:1000:app:/home/app:/sbin/nologin\nop:x:11:50:op:/:/sbin/nologin\n"
    );
    assert_eq!(
        accounts_file(out.path(), manifest, 2, "etc/group"),
        "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"
    );
    let warning = "the recipe's [[user]]/[[group]] replace base image oci:base@";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(
        err.contains(
            "/etc/passwd and /etc/group (format 1 writes them whole); format 2 merges them"
        ),
        "{err}"
    );
}

#[test]
fn format_1_on_a_base_without_account_files_says_nothing() {
    let c = Ctx::new();
    let b = Ctx::new();
    b.recipe_text("[image]\nformat = 1\n[[layer]]\nname = \"l\"\n[[layer.file]]\npath = \"/etc/motd\"\ncontent = \"hi\"\n");
    let digest = b.build_ok(&c.path().join("base"), &[]);
    recipe(&c, &format!("oci:base@{digest}"), 1);
    let out = tempfile::tempdir().expect("tmp");
    let (_, err) = build(&c, out.path());
    assert!(!err.contains("[[user]]"), "{err}");
}

#[test]
fn format_2_refuses_a_malformed_base_file_naming_base_layer_and_file() {
    let c = Ctx::new();
    let b = Ctx::new();
    b.recipe_text("[image]\nformat = 1\n[[layer]]\nname = \"etc\"\n[[layer.file]]\npath = \"/etc/passwd\"\ncontent = \"root:x:0:0:root:/root:/bin/sh\\nbroken line\\n\"\n");
    let digest = b.build_ok(&c.path().join("base"), &[]);
    recipe(&c, &format!("oci:base@{digest}"), 2);
    let out = tempfile::tempdir().expect("tmp");
    let dir = out.path().join("out");
    let o = c.build(&dir, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("base image oci:base@{digest}: layer 0 (sha256:"))
            && err.contains("/etc/passwd cannot be merged")
            && err.contains("line 2: 1 field,"),
        "{err}"
    );
    assert!(!dir.exists(), "a refused build wrote {}", dir.display());
}

#[test]
fn format_2_merges_into_a_registry_base_read_after_it_is_pulled() {
    use common::registry::{Mode, Registry};
    let reg = Registry::start(Mode::Plain);
    let c = Ctx::new();
    let b = Ctx::new();
    b.recipe_text(&format!(
        "[image]\nformat = 1\nsource-date-epoch = 1600000000\n[[layer]]\nname = \"etc\"\n[[layer.file]]\npath = \"/etc/passwd\"\ncontent = {}\n[[layer.file]]\npath = \"/etc/group\"\ncontent = {}\n",
        toml_str(BASE_PASSWD),
        toml_str(BASE_GROUP),
    ));
    let base_digest = b.build_ok(
        &b.path().join("out"),
        &[&format!("--push={}", reg.reference("lib/base:1"))],
    );
    let image = format!("{}@{base_digest}", reg.reference("lib/base:1"));
    recipe(&c, &image, 2);
    let out = tempfile::tempdir().expect("tmp");
    let (digest, err) = build(&c, out.path());
    assert_eq!(
        accounts_file(out.path(), &digest, 1, "etc/group"),
        "root:x:0:\ndaemon:x:1:\nstaff:x:50:op,app\nnogroup:x:65534:\napp:x:1000:\n"
    );
    assert!(
        accounts_file(out.path(), &digest, 1, "etc/passwd")
            .starts_with("root:x:0:0:root:/root:/bin/sh\ndaemon:"),
        "{err}"
    );
    assert!(
        err.contains(&format!("replaces base image {image}'s (uid 10, gid 50)")),
        "{err}"
    );
}
