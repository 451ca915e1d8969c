//! Hostile base images: a manifest that lies about a layer's size, a config that lies
//! about a diff_id, a layer that is a truncated gzip stream — from a layout and from a
//! registry (a fake one on 127.0.0.1). Each is refused with exit 2 naming the layer and
//! the base, before anything is written (`--sbom` included), and a layer checked once
//! is not decompressed again.

mod common;

use common::fake::{respond, FakeServer};
use common::{stderr, Ctx, Layout};
use std::fs;
use std::path::Path;

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Writes `bytes` as a blob of the layout at `root`; its digest.
fn put_blob(root: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let hex = digest.strip_prefix("sha256:").unwrap();
    fs::write(root.join("blobs/sha256").join(hex), bytes).unwrap();
    digest
}

/// A good base built by imgbuild in `ctx/base`: (layout root, manifest digest).
fn good_base(ctx: &Ctx) -> (std::path::PathBuf, String) {
    let base_ctx = Ctx::new();
    base_ctx.recipe_text(
        "[image]\nsource-date-epoch = 1700000000\n[[layer]]\nname = \"base\"\n  [[layer.file]]\n  path = \"/etc/base.txt\"\n  content = \"from the base image, long enough to compress into something\\n\"\n",
    );
    let root = ctx.path().join("base");
    let digest = base_ctx.build_ok(&root, &[]);
    (root, digest.trim().to_string())
}

/// The ways a base can lie. Each returns the new manifest digest in `root`.
#[derive(Clone, Copy, Debug)]
enum Lie {
    LayerSize,
    DiffId,
    TruncatedGzip,
    /// gzip bytes under the media type of a plain tar.
    MediaTypeOtherThanBytes,
    /// A media type no layer reader knows.
    NotALayerMediaType,
}

fn make_hostile(root: &Path, manifest_digest: &str, lie: Lie) -> String {
    let layout = Layout::new(root);
    let mut manifest = layout.manifest(manifest_digest);
    let mut config = layout.config(manifest_digest);
    match lie {
        Lie::LayerSize => {
            let size = manifest["layers"][0]["size"].as_u64().unwrap();
            manifest["layers"][0]["size"] = (size + 1).into();
        }
        Lie::DiffId => {
            config["rootfs"]["diff_ids"][0] = format!("sha256:{}", "1".repeat(64)).into();
        }
        Lie::TruncatedGzip => {
            let layer = layout.blob(manifest["layers"][0]["digest"].as_str().unwrap());
            let truncated = &layer[..layer.len() / 2];
            manifest["layers"][0]["digest"] = put_blob(root, truncated).into();
            manifest["layers"][0]["size"] = truncated.len().into();
        }
        Lie::MediaTypeOtherThanBytes => {
            manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
        }
        Lie::NotALayerMediaType => {
            manifest["layers"][0]["mediaType"] = "application/octet-stream".into();
        }
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put_blob(root, &config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    put_blob(root, &serde_json::to_vec(&manifest).unwrap())
}

fn recipe_on(base: &str) -> String {
    format!(
        "[image]\nsource-date-epoch = 1700000000\n[base]\nimage = \"{base}\"\n[[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/app/x\"\n  content = \"x\\n\"\n"
    )
}

fn assert_refused(o: &std::process::Output, lie: Lie, layer_digest: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{lie:?}: {err}");
    assert!(err.contains("base image"), "{lie:?}: {err}");
    assert!(
        err.contains(&format!("layer 0 ({layer_digest})")),
        "{lie:?} names the layer: {err}"
    );
    let why = match lie {
        Lie::LayerSize => "but the manifest says",
        Lie::DiffId => "but the config's diff_id is",
        Lie::TruncatedGzip => "truncated or corrupt",
        Lie::MediaTypeOtherThanBytes => "says a plain tar, but its bytes are gzip",
        Lie::NotALayerMediaType => "is not a layer type",
    };
    assert!(err.contains(why), "{lie:?}: {err}");
}

#[test]
fn a_layout_base_that_lies_is_refused_before_anything_is_written() {
    for lie in [
        Lie::LayerSize,
        Lie::DiffId,
        Lie::TruncatedGzip,
        Lie::MediaTypeOtherThanBytes,
        Lie::NotALayerMediaType,
    ] {
        let ctx = Ctx::new();
        let (root, good) = good_base(&ctx);
        let bad = make_hostile(&root, &good, lie);
        let layer = Layout::new(&root).layer_digests(&bad)[0].clone();
        // The output layout already holds an image: it must stay as it was.
        let out = ctx.path().join("out");
        ctx.recipe_text(&recipe_on(&format!("oci:base@{good}")));
        ctx.build_ok(&out, &[]);
        let index_before = fs::read(out.join("index.json")).unwrap();
        ctx.recipe_text(&recipe_on(&format!("oci:base@{bad}")));
        let sbom = ctx.path().join("sbom.json");
        let o = ctx.build(&out, &["--sbom", sbom.to_str().unwrap()]);
        assert_refused(&o, lie, &layer);
        assert_eq!(
            fs::read(out.join("index.json")).unwrap(),
            index_before,
            "{lie:?}: index.json changed"
        );
        assert!(!sbom.exists(), "{lie:?}: an SBOM was written");
    }
}

#[test]
fn a_base_layer_is_decompressed_once_and_the_result_recorded_in_the_layout() {
    let ctx = Ctx::new();
    let (root, good) = good_base(&ctx);
    let out = ctx.path().join("out");
    ctx.recipe_text(&recipe_on(&format!("oci:base@{good}")));
    ctx.build_ok(&out, &[]);
    let layer = Layout::new(&root).layer_digests(&good)[0].clone();
    let diff_id = Layout::new(&root).config(&good)["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let record = out
        .join(".imgbuild/verified-layers")
        .join(layer.strip_prefix("sha256:").unwrap());
    assert_eq!(fs::read_to_string(&record).unwrap().trim(), diff_id);
    // A second build does not decompress the layer again: with the record in place
    // the (now unreadable as gzip) blob of the same digest is not looked into. The
    // size is still checked, so keep it.
    let blob = root
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let len = fs::metadata(&blob).unwrap().len() as usize;
    fs::write(&blob, vec![0u8; len]).unwrap();
    let o = ctx.build(&out, &[]);
    // The build goes past the base check (the import then finds the altered blob).
    let err = stderr(&o);
    assert!(!err.contains("not a valid layer"), "{err}");
    assert!(!err.contains("diff_id"), "{err}");
}

/// A gzip stream of exactly `size` bytes decompressing to `tar` (padded with a gzip
/// header comment).
fn gzip_of_size(tar: &[u8], size: usize) -> Vec<u8> {
    use std::io::Write as _;
    let gz = |comment: Option<Vec<u8>>| {
        let mut b = flate2::GzBuilder::new();
        if let Some(c) = comment {
            b = b.comment(c);
        }
        let mut w = b.write(Vec::new(), flate2::Compression::best());
        w.write_all(tar).unwrap();
        w.finish().unwrap()
    };
    let bare = gz(None).len();
    assert!(bare + 1 < size, "the padded stream cannot be {size} bytes");
    let out = gz(Some(vec![b'p'; size - bare - 1]));
    assert_eq!(out.len(), size);
    out
}

#[test]
fn a_base_blob_that_is_not_its_digest_is_refused_even_when_out_holds_that_digest() {
    let ctx = Ctx::new();
    let (root, good) = good_base(&ctx);
    let out = ctx.path().join("out");
    ctx.recipe_text(&recipe_on(&format!("oci:base@{good}")));
    ctx.build_ok(&out, &[]);
    let index_before = fs::read(out.join("index.json")).unwrap();
    let layer = Layout::new(&root).layer_digests(&good)[0].clone();
    let hex = layer.strip_prefix("sha256:").unwrap().to_string();
    let record = out.join(".imgbuild/verified-layers").join(&hex);
    let record_before = fs::read(&record).unwrap();
    // The base now lists the same layer digest with another diff_id, and ships
    // another gzip stream of the same size under that digest, decompressing to it.
    let blob = root.join("blobs/sha256").join(&hex);
    let size = fs::metadata(&blob).unwrap().len() as usize;
    let evil_tar = vec![0u8; 1024]; // an empty tar
    fs::write(&blob, gzip_of_size(&evil_tar, size)).unwrap();
    let layout = Layout::new(&root);
    let manifest = layout.manifest(&good);
    let mut config = layout.config(&good);
    config["rootfs"]["diff_ids"][0] = sha256(&evil_tar).into();
    let mut manifest = manifest;
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put_blob(&root, &config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let bad = put_blob(&root, &serde_json::to_vec(&manifest).unwrap());
    ctx.recipe_text(&recipe_on(&format!("oci:base@{bad}")));
    let o = ctx.build(&out, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("layer 0 ({layer})")), "{err}");
    assert!(err.contains("not the manifest's"), "{err}");
    assert_eq!(fs::read(out.join("index.json")).unwrap(), index_before);
    assert_eq!(
        fs::read(&record).unwrap(),
        record_before,
        "the record changed"
    );
}

/// A fake registry serving the blobs of `root` by digest, and `manifest` as itself.
fn registry_serving(root: &Path) -> FakeServer {
    let root = root.to_path_buf();
    FakeServer::start(move |req, out| {
        if req.target == "/v2/" {
            return respond(out, 200, &[], b"{}");
        }
        let digest = req.target.rsplit('/').next().unwrap_or("");
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        match fs::read(root.join("blobs/sha256").join(hex)) {
            Ok(bytes) if req.target.contains("/manifests/") => {
                let kind = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
                respond(out, 200, &kind, &bytes)
            }
            Ok(bytes) => respond(out, 200, &[], &bytes),
            Err(_) => respond(out, 404, &[], b"{}"),
        }
    })
}

#[test]
fn a_registry_base_that_lies_is_refused_before_the_index_changes() {
    for lie in [
        Lie::DiffId,
        Lie::TruncatedGzip,
        Lie::MediaTypeOtherThanBytes,
        Lie::NotALayerMediaType,
    ] {
        let ctx = Ctx::new();
        let (root, good) = good_base(&ctx);
        let bad = make_hostile(&root, &good, lie);
        let layer = Layout::new(&root).layer_digests(&bad)[0].clone();
        let registry = registry_serving(&root);
        let out = ctx.path().join("out");
        ctx.recipe_text(&recipe_on(&format!("{}/base@{good}", registry.host())));
        ctx.build_ok(&out, &[]);
        let index_before = fs::read(out.join("index.json")).unwrap();
        ctx.recipe_text(&recipe_on(&format!("{}/base@{bad}", registry.host())));
        let sbom = ctx.path().join("sbom.json");
        let o = ctx.build(&out, &["--sbom", sbom.to_str().unwrap()]);
        assert_refused(&o, lie, &layer);
        assert_eq!(
            fs::read(out.join("index.json")).unwrap(),
            index_before,
            "{lie:?}"
        );
        assert!(!sbom.exists(), "{lie:?}");
    }
}

#[test]
fn a_registry_manifest_that_lies_about_a_layer_size_gets_no_further_than_the_pull() {
    let ctx = Ctx::new();
    let (root, good) = good_base(&ctx);
    let bad = make_hostile(&root, &good, Lie::LayerSize);
    let registry = registry_serving(&root);
    let out = ctx.path().join("out");
    ctx.recipe_text(&recipe_on(&format!("{}/base@{bad}", registry.host())));
    let o = ctx.build(&out, &[]);
    let err = stderr(&o);
    // The blob arrives shorter than its descriptor: refused while streaming, never
    // stored, never passed on.
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("/base: blob sha256:")
            && err.contains(" bytes, but its descriptor says ")
            && err.contains("nothing was stored"),
        "{err}"
    );
    if let Ok(bytes) = fs::read(out.join("index.json")) {
        let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            index["manifests"].as_array().is_none_or(|m| m.is_empty()),
            "{index}"
        );
    }
}
