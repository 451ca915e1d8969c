//! `build --provenance` and `build --sbom`, checked by tools we did not write:
//! the SBOM by the SPDX validator of the Python `spdx-tools` package; the provenance
//! by the in-toto project's own Python bindings (`in-toto-attestation`: the Statement
//! and SLSA Provenance v1 protobuf messages, parsed strictly from our JSON, and the
//! Statement's `validate()`); file checksums by `sha256sum`; what `--push` attaches
//! by skopeo (the referrers fallback tag) and a plain HTTP GET of the blobs from
//! Debian's docker-registry.
//!
//! The Python packages come from scripts/test.sh (a venv under target/, named by
//! IMGBUILD_TEST_PYTHON); without them these tests fail, as with any missing tool.

mod common;

use common::registry::{Mode, Registry};
use common::{imgbuild, make_tar, stderr, test_bytes, Ctx};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCH: &str = "[image]\nsource-date-epoch = 1700000000\n";

/// The Python that has `modules` (IMGBUILD_TEST_PYTHON, else python3). A missing
/// validator fails the test, like any other missing tool: scripts/test.sh installs them.
fn python_with(test: &str, modules: &[&str]) -> String {
    let python = std::env::var("IMGBUILD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let import = format!("import {}", modules.join(", "));
    let ok = Command::new(&python)
        .args(["-c", &import])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{test}: {python} cannot `{import}`; run the tests with `bash scripts/test.sh`, which \
         installs them into a venv, or set IMGBUILD_TEST_PYTHON to a python that has them \
         (pip install spdx-tools==0.8.5 in-toto-attestation==0.9.3)"
    );
    python
}

fn run_python(python: &str, script: &str, args: &[&Path]) -> Output {
    Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python")
}

/// The in-toto project's bindings: parse strictly (unknown fields are errors) into
/// the Statement and the SLSA Provenance v1 messages, then validate.
const CHECK_PROVENANCE: &str = r#"
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
doc = json.load(open(sys.argv[1]))
st = json_format.ParseDict(doc, statement_pb2.Statement())
Statement.copy_from_pb(st).validate()
assert st.predicate_type == "https://slsa.dev/provenance/v1", st.predicate_type
p = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
bd = p.build_definition
assert bd.build_type, "buildType is required"
assert len(bd.external_parameters) > 0, "externalParameters is required"
assert p.run_details.builder.id, "builder.id is required"
for rd in list(bd.resolved_dependencies) + list(st.subject):
    ResourceDescriptor.copy_from_pb(rd).validate()
print("valid")
"#;

/// spdx-tools: parse the JSON and run the full SPDX 2.3 validation.
const CHECK_SPDX: &str = r#"
import sys
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
doc = parse_file(sys.argv[1])
msgs = validate_full_spdx_document(doc, "SPDX-2.3")
for m in msgs:
    print(m.validation_message, m.context)
sys.exit(1 if msgs else 0)
"#;

fn sha256sum(path: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A context with a base image (built into `base/` by imgbuild), a copied directory,
/// an inline file and a local archive. Returns the base's digest.
fn context(ctx: &Ctx, extra_image: &str) -> String {
    let base = Ctx::new();
    base.recipe_text(&format!(
        "{EPOCH}[[layer]]\nname = \"base\"\n  [[layer.file]]\n  path = \"/etc/base-release\"\n  content = \"base 1\\n\"\n"
    ));
    let base_digest = base.build_ok(&ctx.path().join("base"), &[]);
    ctx.write("app/bin/tool", test_bytes(1, 70_000))
        .write("app/share/readme.txt", "read me\n")
        .write(
            "extra.tar",
            make_tar(&[("opt-file.txt", Some(b"from the archive\n"), None)]),
        );
    ctx.recipe_text(&format!(
        "[image]\nsource-date-epoch = 1700000000\n{extra_image}\n[base]\nimage = \"oci:base@{base_digest}\"\n\n\
[[layer]]\nname = \"app\"\n  [[layer.copy]]\n  src = \"app\"\n  dst = \"/app\"\n  \
[[layer.file]]\n  path = \"/etc/motd\"\n  content = \"hello\\n\"\n  \
[[layer.archive]]\n  src = \"extra.tar\"\n  dst = \"/opt\"\n"
    ));
    base_digest
}

fn build(ctx: &Ctx, out: &Path, docs: &Path, extra: &[&str]) -> Output {
    imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(out)
        .arg("--provenance")
        .arg(docs.join("provenance.json"))
        .arg("--sbom")
        .arg(docs.join("sbom.spdx.json"))
        .args(extra)
        .output()
        .expect("run imgbuild")
}

#[test]
fn provenance_is_a_valid_slsa_v1_statement_naming_the_image_and_its_inputs() {
    let test = "provenance_is_a_valid_slsa_v1_statement_naming_the_image_and_its_inputs";
    let ctx = Ctx::new();
    let base_digest = context(&ctx, "");
    let out = ctx.path().join("out");
    let o = build(&ctx, &out, ctx.path(), &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let result: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = ctx.path().join("provenance.json");
    assert_eq!(result["provenance"], path.display().to_string());
    assert_eq!(
        result["sbom"],
        ctx.path().join("sbom.spdx.json").display().to_string()
    );
    let digest = result["digest"].as_str().unwrap().to_string();

    let p = read_json(&path);
    assert_eq!(p["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(p["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(p["subject"][0]["name"], "image");
    assert_eq!(p["subject"][0]["digest"]["sha256"], digest[7..]);
    let bd = &p["predicate"]["buildDefinition"];
    assert_eq!(bd["externalParameters"]["recipe"], "recipe.toml");
    assert_eq!(
        bd["internalParameters"]["sourceDateEpoch"],
        serde_json::json!({"seconds": 1700000000, "source": "recipe"})
    );
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let dep = |name: &str| {
        deps.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no resolved dependency {name}: {deps:?}"))
            .clone()
    };
    for rel in [
        "recipe.toml",
        "app/bin/tool",
        "app/share/readme.txt",
        "extra.tar",
    ] {
        assert_eq!(
            dep(rel)["digest"]["sha256"],
            sha256sum(&ctx.path().join(rel)),
            "{rel}"
        );
    }
    assert_eq!(dep("base")["digest"]["sha256"], base_digest[7..]);
    assert_eq!(
        p["predicate"]["runDetails"]["builder"]["version"]["imgbuild"],
        env!("CARGO_PKG_VERSION")
    );

    let python = python_with(test, &["in_toto_attestation", "google.protobuf"]);
    let o = run_python(&python, CHECK_PROVENANCE, &[&path]);
    assert!(
        o.status.success(),
        "in-toto-attestation rejected the provenance: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn sbom_passes_spdx_tools_and_lists_every_file_with_its_sha256() {
    let test = "sbom_passes_spdx_tools_and_lists_every_file_with_its_sha256";
    let ctx = Ctx::new();
    let base_digest = context(&ctx, "");
    let out = ctx.path().join("out");
    let o = build(&ctx, &out, ctx.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = ctx.path().join("sbom.spdx.json");
    let s = read_json(&path);
    assert_eq!(s["spdxVersion"], "SPDX-2.3");
    assert_eq!(s["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let files = s["files"].as_array().unwrap();
    let file = |name: &str| {
        files
            .iter()
            .find(|f| f["fileName"] == name)
            .unwrap_or_else(|| panic!("no file {name} in the SBOM"))
            .clone()
    };
    let sha256 = |f: &serde_json::Value| {
        f["checksums"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["algorithm"] == "SHA256")
            .map(|c| c["checksumValue"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        sha256(&file("./app/bin/tool")),
        sha256sum(&ctx.path().join("app/bin/tool"))
    );
    assert_eq!(
        sha256(&file("./app/share/readme.txt")),
        sha256sum(&ctx.path().join("app/share/readme.txt"))
    );
    let scratch = ctx.path().join("expected");
    fs::write(&scratch, "from the archive\n").unwrap();
    assert_eq!(sha256(&file("./opt/opt-file.txt")), sha256sum(&scratch));
    fs::write(&scratch, "base 1\n").unwrap();
    assert_eq!(sha256(&file("./etc/base-release")), sha256sum(&scratch));
    // The base image is a package with its digest; its file belongs to it.
    let base = s["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-BaseImage")
        .expect("base package")
        .clone();
    assert_eq!(base["checksums"][0]["checksumValue"], base_digest[7..]);
    let base_file_id = file("./etc/base-release")["SPDXID"].clone();
    assert!(s["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["spdxElementId"] == "SPDXRef-BaseImage"
            && r["relationshipType"] == "CONTAINS"
            && r["relatedSpdxElement"] == base_file_id));

    let python = python_with(test, &["spdx_tools"]);
    let o = run_python(&python, CHECK_SPDX, &[&path]);
    assert!(
        o.status.success(),
        "spdx-tools rejected the SBOM:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn provenance_and_sbom_are_byte_identical_across_builds_and_context_paths() {
    let one = Ctx::new();
    context(&one, "");
    let o = build(&one, &one.path().join("out"), one.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Same sources in another directory, a fresh --out, no layer cache.
    let two = Ctx::new();
    context(&two, "");
    let o = build(
        &two,
        &two.path().join("elsewhere"),
        two.path(),
        &["--no-cache"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["provenance.json", "sbom.spdx.json"] {
        let a = fs::read(one.path().join(name)).unwrap();
        let b = fs::read(two.path().join(name)).unwrap();
        assert!(
            a == b,
            "{name} differs between two builds of the same sources"
        );
    }
    // A different input changes them.
    two.write("app/share/readme.txt", "changed\n");
    let o = build(&two, &two.path().join("out"), two.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["provenance.json", "sbom.spdx.json"] {
        let a = fs::read(one.path().join(name)).unwrap();
        let b = fs::read(two.path().join(name)).unwrap();
        assert!(a != b, "{name} did not change with the input");
    }
}

#[test]
fn unwritable_document_paths_are_bad_input_and_nothing_is_built() {
    let ctx = Ctx::new();
    ctx.recipe_text(&format!(
        "{EPOCH}[[layer]]\nname = \"a\"\n  [[layer.file]]\n  path = \"/a\"\n  content = \"a\"\n"
    ));
    let out = ctx.path().join("out");
    let same = ctx.path().join("doc.json");
    for (flag, value, extra) in [
        (
            "--provenance",
            ctx.path().join("missing-dir/p.json"),
            vec![],
        ),
        ("--sbom", ctx.path().to_path_buf(), vec![]),
        (
            "--sbom",
            same.clone(),
            vec!["--provenance".to_string(), same.display().to_string()],
        ),
    ] {
        let o = imgbuild()
            .arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg(flag)
            .arg(&value)
            .args(&extra)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(flag) && stderr(&o).contains(&value.display().to_string()),
            "{}",
            stderr(&o)
        );
        assert!(!out.exists(), "{flag}: --out was written");
    }
}

const SMALL: &str = "[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"a\"\n  [[layer.file]]\n  path = \"/a\"\n  content = \"a\"\n";

#[test]
fn symlinked_recipe_is_named_relative_to_its_context_never_by_a_host_path() {
    let ctx = Ctx::new();
    ctx.write("mono/common/recipe.toml", SMALL)
        .symlink("../common/recipe.toml", "mono/svc/recipe.toml");
    let via_link = ctx.path().join("via-link.json");
    let direct = ctx.path().join("direct.json");
    for (recipe, doc) in [
        ("mono/svc/recipe.toml", &via_link),
        ("mono/common/recipe.toml", &direct),
    ] {
        let o = imgbuild()
            .arg("build")
            .arg(ctx.path().join(recipe))
            .arg("--out")
            .arg(ctx.path().join("out"))
            .arg("--provenance")
            .arg(doc)
            .output()
            .unwrap();
        assert!(o.status.success(), "{recipe}: {}", stderr(&o));
    }
    let text = fs::read_to_string(&via_link).unwrap();
    let real = ctx.path().canonicalize().unwrap();
    for host in [ctx.path(), real.as_path()] {
        assert!(
            !text.contains(&*host.to_string_lossy()),
            "the provenance holds the host path {}:\n{text}",
            host.display()
        );
    }
    let doc = read_json(&via_link);
    let definition = &doc["predicate"]["buildDefinition"];
    assert_eq!(definition["externalParameters"]["recipe"], "recipe.toml");
    assert_eq!(definition["resolvedDependencies"][0]["name"], "recipe.toml");
    assert!(
        fs::read(&direct).unwrap() == text.as_bytes(),
        "the provenance of the linked recipe differs from the recipe's own:\n{text}\n{}",
        fs::read_to_string(&direct).unwrap()
    );
}

#[test]
fn document_paths_that_are_not_regular_files_or_name_a_directory_are_bad_input_before_the_build() {
    let ctx = Ctx::new();
    ctx.recipe_text(SMALL)
        .symlink("/dev/null", "null.json")
        .write("same.json", "old\n");
    let fifo = ctx.path().join("fifo.json");
    let o = Command::new("mkfifo").arg(&fifo).output().expect("mkfifo");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = ctx.path().join("out");
    let cases: [(&[&str], &str); 5] = [
        (&["--provenance", "fifo.json"], "FIFO"),
        (&["--sbom", "null.json"], "character device"),
        (&["--provenance", "newdir/"], "newdir/: is a directory"),
        (
            &["--provenance", "same.json", "--sbom", "./same.json"],
            "name the same file",
        ),
        (
            &["--provenance", "p.json", "--sbom", "sub/../p.json"],
            "name the same file",
        ),
    ];
    fs::create_dir(ctx.path().join("sub")).unwrap();
    for (args, says) in cases {
        let o = imgbuild()
            .current_dir(ctx.path())
            .arg("build")
            .arg("recipe.toml")
            .arg("--out")
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(!out.exists(), "{args:?}: built before refusing");
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(fs::symlink_metadata(ctx.path().join("null.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(ctx.path().join("same.json")).unwrap(), b"old\n");
    assert!(!ctx.path().join("p.json").exists());
}

#[test]
fn documents_are_written_through_a_symlink_and_get_the_umask_mode() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = Ctx::new();
    ctx.recipe_text(SMALL)
        .write("docs/provenance.json", "old\n")
        .symlink("docs/provenance.json", "link.json");
    // umask 022 for imgbuild, set by the shell that runs it; the environment as
    // common::imgbuild() leaves it.
    let mut sh = Command::new("sh");
    for (k, _) in std::env::vars() {
        if k.starts_with("IMGBUILD_") {
            sh.env_remove(k);
        }
    }
    let o = sh
        .env_remove("SOURCE_DATE_EPOCH")
        .env("HOME", "/nonexistent/imgbuild-test-home")
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_imgbuild"))
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg("--provenance")
        .arg(ctx.path().join("link.json"))
        .arg("--sbom")
        .arg(ctx.path().join("sbom.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let link = ctx.path().join("link.json");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a file"
    );
    let doc = read_json(&ctx.path().join("docs/provenance.json"));
    assert_eq!(doc["_type"], "https://in-toto.io/Statement/v1");
    for file in ["docs/provenance.json", "sbom.json"] {
        let mode = fs::metadata(ctx.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{file}: mode {:o}", mode & 0o777);
    }
    let leftovers: Vec<_> = fs::read_dir(ctx.path().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "provenance.json")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// A blob fetched with a plain HTTP GET (Python's urllib: not our client).
fn fetch_blob(python: &str, reg: &Registry, repo: &str, digest: &str, to: &Path) {
    let url = format!("{}/v2/{repo}/blobs/{digest}", reg.base_url());
    let o = Command::new(python)
        .args([
            "-c",
            "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())",
            &url,
        ])
        .arg(to)
        .output()
        .unwrap();
    assert!(o.status.success(), "GET {url}: {}", stderr(&o));
}

fn skopeo_raw(reg: &Registry, reference: &str) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    cmd.args(reg.skopeo_flags(""));
    cmd.arg(format!("docker://{reference}"));
    let o = cmd.output().expect("run skopeo");
    assert!(
        o.status.success(),
        "skopeo inspect --raw {reference}: {}",
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn push_attaches_provenance_and_sbom_listed_once_by_the_referrers_fallback_tag() {
    common::require_tool("skopeo");
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    let repo = "acme/attested";
    context(
        &ctx,
        &format!("repository = \"{}\"\ntags = [\"1.0\"]", reg.reference(repo)),
    );
    let out = ctx.path().join("out");
    let docs: PathBuf = ctx.path().to_path_buf();
    let push = || {
        let o = build(&ctx, &out, &docs, &["--push", "--json"]);
        assert!(o.status.success(), "{}\n{}", stderr(&o), reg.log());
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let result = push();
    let digest = result["digest"].as_str().unwrap().to_string();
    let tag = format!("sha256-{}", &digest[7..]);
    assert_eq!(result["attached"].as_array().unwrap().len(), 2, "{result}");
    assert_eq!(result["attached"][0]["listedBy"], tag);

    let check = || {
        let index = skopeo_raw(&reg, &format!("{}:{tag}", reg.reference(repo)));
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let listed = index["manifests"].as_array().unwrap().clone();
        let mut types: Vec<&str> = listed
            .iter()
            .map(|m| m["artifactType"].as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(
            types,
            ["application/spdx+json", "application/vnd.in-toto+json"],
            "{index}"
        );
        listed
    };
    let listed = check();
    let python = std::env::var("IMGBUILD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    for m in &listed {
        let d = m["digest"].as_str().unwrap();
        let manifest = skopeo_raw(&reg, &format!("{}@{d}", reg.reference(repo)));
        assert_eq!(manifest["subject"]["digest"], digest.as_str());
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        let file = if manifest["artifactType"] == "application/spdx+json" {
            "sbom.spdx.json"
        } else {
            "provenance.json"
        };
        let fetched = ctx.path().join(format!("fetched-{file}"));
        fetch_blob(
            &python,
            &reg,
            repo,
            layers[0]["digest"].as_str().unwrap(),
            &fetched,
        );
        assert!(
            fs::read(&fetched).unwrap() == fs::read(docs.join(file)).unwrap(),
            "the attached {file} is not the written one"
        );
    }

    // Pushed again: the same two referrers, not four.
    let again = push();
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(check(), listed);
}

#[test]
fn multi_platform_push_with_a_registry_base_attaches_to_the_index_and_merges_pushes() {
    common::require_tool("skopeo");
    let test = "multi_platform_push_with_a_registry_base_attaches_to_the_index_and_merges_pushes";
    let reg = Registry::start(Mode::Plain);
    // A two-platform base image, pushed by imgbuild.
    let base = Ctx::new();
    base.recipe_text(&format!(
        "{EPOCH}platforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nname = \"base\"\n  [[layer.file]]\n  path = \"/etc/os-release\"\n  content = \"ID=imgbuild-test\\n\"\n"
    ));
    let o = imgbuild()
        .arg("build")
        .arg(base.recipe())
        .arg("--out")
        .arg(base.path().join("out"))
        .arg(format!("--push={}", reg.reference("lib/base:1")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let base_digest = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let base_ref = format!("{}@{base_digest}", reg.reference("lib/base:1"));

    let ctx = Ctx::new();
    ctx.write("app/amd64.txt", "amd64\n")
        .write("app/arm64.txt", "arm64\n");
    ctx.recipe_text(&format!(
        "{EPOCH}platforms = [\"linux/amd64\", \"linux/arm64\"]\n[base]\nimage = \"{base_ref}\"\n[[layer]]\nname = \"app\"\n  [[layer.copy]]\n  src = \"app/{{arch}}.txt\"\n  dst = \"/app/arch.txt\"\n"
    ));
    let out = ctx.path().join("out");
    let target = reg.reference("acme/multi:2.0");
    let push = |docs: &[&str]| {
        let mut cmd = imgbuild();
        cmd.arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .arg(format!("--push={target}"))
            .arg("--json");
        for d in docs {
            cmd.arg(format!("--{d}"))
                .arg(ctx.path().join(format!("{d}.json")));
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}\n{}", stderr(&o), reg.log());
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let first = push(&["provenance"]);
    let digest = first["digest"].as_str().unwrap().to_string();
    assert_eq!(
        first["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let fallback = format!("{}:sha256-{}", reg.reference("acme/multi"), &digest[7..]);
    let listed = |n: usize| {
        let index = skopeo_raw(&reg, &fallback);
        let m = index["manifests"].as_array().unwrap().clone();
        assert_eq!(m.len(), n, "{index}");
        m
    };
    assert_eq!(listed(1)[0]["artifactType"], "application/vnd.in-toto+json");
    // The recipe names no repository: the statement names the image where it was
    // pushed, the repository its attachment lives in.
    let statement: serde_json::Value =
        serde_json::from_slice(&fs::read(ctx.path().join("provenance.json")).unwrap()).unwrap();
    assert_eq!(
        statement["subject"][0]["name"],
        reg.reference("acme/multi").as_str(),
        "{statement}"
    );
    // A later push with the SBOM only keeps the provenance listed; both again: no change.
    push(&["sbom"]);
    let two = listed(2);
    push(&["provenance", "sbom"]);
    assert_eq!(listed(2), two);
    for m in &two {
        let a = skopeo_raw(
            &reg,
            &format!(
                "{}@{}",
                reg.reference("acme/multi"),
                m["digest"].as_str().unwrap()
            ),
        );
        assert_eq!(
            a["subject"]["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(a["subject"]["digest"], digest.as_str());
    }

    // The provenance names the index and each platform's manifest, and the base.
    let p = read_json(&ctx.path().join("provenance.json"));
    let subject = p["subject"].as_array().unwrap();
    assert_eq!(subject.len(), 3, "{p}");
    assert_eq!(subject[0]["digest"]["sha256"], digest[7..]);
    let base_dep = p["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "base")
        .unwrap()
        .clone();
    assert_eq!(base_dep["uri"], format!("docker://{base_ref}"));
    assert_eq!(base_dep["digest"]["sha256"], base_digest[7..]);
    // The SBOM lists both platforms' files, the pulled base's included.
    let sbom = ctx.path().join("sbom.json");
    let s = read_json(&sbom);
    let names: Vec<&str> = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fileName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "./app/arch.txt").count(),
        2,
        "{names:?}"
    );
    assert!(names.contains(&"./etc/os-release"), "{names:?}");
    let python = python_with(test, &["spdx_tools"]);
    let o = run_python(&python, CHECK_SPDX, &[&sbom]);
    assert!(
        o.status.success(),
        "spdx-tools rejected the SBOM:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}
