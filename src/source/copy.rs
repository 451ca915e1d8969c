//! Copying an image from any [`ImageSource`] into a layout, for some of its
//! platforms: the root (a manifest, or an index), the manifests of those platforms,
//! their configs and their layers. Nothing is re-serialized or recompressed: the
//! layout ends up holding the source's exact bytes, each checked against its digest
//! before it is named.

use super::ImageSource;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::image::{is_index_bytes, select_platform, Index, Manifest};
use crate::layout::Layout;
use crate::platform::Platform;
use crate::registry::transport::MAX_MANIFEST_BYTES as MAX_JSON_BYTES;

/// Makes `into` hold the image `root` of `source` for `platforms` (every platform
/// when empty). `name` is how
/// messages and events name the image (for a base: as the recipe writes it). Blobs
/// `into` holds already are neither read nor fetched again. Returns how many blobs
/// were copied.
pub fn copy_image(
    source: &dyn ImageSource,
    name: &str,
    root: &Digest,
    platforms: &[Platform],
    into: &Layout,
    events: &Events,
) -> Result<usize> {
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for digest in manifests_for(name, root, platforms, |d| object(source, into, d))? {
        let bytes = object(source, into, &digest)?;
        let manifest: Manifest = parse(name, &digest, &bytes)?;
        if manifest.config.size > MAX_JSON_BYTES {
            return Err(Error::network(format!(
                "base image {name}: its config {} is {} bytes, more than the {} MiB imgbuild accepts",
                manifest.config.digest,
                manifest.config.size,
                MAX_JSON_BYTES / (1024 * 1024)
            )));
        }
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if !into.has_blob(&desc.digest) && !blobs.iter().any(|(b, _)| *b == desc.digest) {
                blobs.push((desc.digest.clone(), desc.size));
            }
        }
    }
    source.copy_blobs(&blobs, into, &|digest, size| {
        events.emit(Event::BlobPulled {
            digest: digest.clone(),
            size,
            image: name.to_string(),
        })
    })?;
    if !blobs.is_empty() {
        events.emit(Event::BasePulled {
            image: name.to_string(),
            blobs: blobs.len(),
        });
    }
    Ok(blobs.len())
}

/// Whether `layout` holds every blob of the image `root` for `platforms` already, so
/// that copying it would read nothing from its source (which then need not be
/// reached at all).
pub fn holds_image(
    layout: &Layout,
    name: &str,
    root: &Digest,
    platforms: &[Platform],
) -> Result<bool> {
    if !layout.has_blob(root) {
        return Ok(false);
    }
    for digest in manifests_for(name, root, platforms, |d| layout.read_blob(d))? {
        if !layout.has_blob(&digest) {
            return Ok(false);
        }
        let manifest: Manifest = parse(name, &digest, &layout.read_blob(&digest)?)?;
        if !std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .all(|l| layout.has_blob(&l.digest))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The manifests of the image `root` for `platforms`: the root itself when it is a
/// manifest, else the index's manifest for each platform (each once) — or every
/// manifest of the index when `platforms` is empty.
fn manifests_for(
    name: &str,
    root: &Digest,
    platforms: &[Platform],
    read: impl Fn(&Digest) -> Result<Vec<u8>>,
) -> Result<Vec<Digest>> {
    let bytes = read(root)?;
    if !is_index_bytes(&bytes) {
        return Ok(vec![root.clone()]);
    }
    let index: Index = parse(name, root, &bytes)?;
    if platforms.is_empty() {
        return Ok(index.manifests.into_iter().map(|m| m.digest).collect());
    }
    let mut out = Vec::new();
    for p in platforms {
        let d = select_platform(&index, p, name)?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// A manifest or index from `into` when it holds it, else from the source (verified
/// there) and stored in `into`.
fn object(source: &dyn ImageSource, into: &Layout, digest: &Digest) -> Result<Vec<u8>> {
    if into.has_blob(digest) {
        return into.read_blob(digest);
    }
    let bytes = source.json_object(digest, true)?;
    into.write_blob(&bytes)?;
    Ok(bytes)
}

fn parse<T: serde::de::DeserializeOwned>(name: &str, digest: &Digest, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::input(format!(
            "base image {name}: {digest} is not a valid manifest or index: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Recorder;
    use crate::image::{canonical_json, CONFIG_V1, INDEX_V1, MANIFEST_V1};
    use crate::source::LayoutSource;
    use std::io::Read;
    use std::sync::Arc;

    /// A two-platform image written by hand: per platform a layer (any bytes: copying
    /// does not decode layers), a config and a manifest, under one index.
    fn two_platforms(layout: &Layout) -> (Digest, Vec<(Digest, Digest, Digest)>) {
        let mut entries = Vec::new();
        let mut parts = Vec::new();
        for arch in ["amd64", "arm64"] {
            let layer = layout
                .write_blob(format!("layer of {arch}").as_bytes())
                .expect("layer");
            let config = canonical_json(&serde_json::json!({
                "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]},
            }));
            let config_digest = layout.write_blob(&config).expect("config");
            let manifest = canonical_json(&serde_json::json!({
                "schemaVersion": 2, "mediaType": MANIFEST_V1,
                "config": {"mediaType": CONFIG_V1, "digest": config_digest.to_string(), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer.to_string(), "size": format!("layer of {arch}").len()}],
            }));
            let manifest_digest = layout.write_blob(&manifest).expect("manifest");
            entries.push(serde_json::json!({
                "mediaType": MANIFEST_V1, "digest": manifest_digest.to_string(),
                "size": manifest.len(), "platform": {"os": "linux", "architecture": arch},
            }));
            parts.push((manifest_digest, config_digest, layer));
        }
        let index = canonical_json(&serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX_V1, "manifests": entries,
        }));
        (layout.write_blob(&index).expect("index"), parts)
    }

    fn arm64() -> Platform {
        Platform::parse("linux/arm64").expect("platform")
    }

    #[test]
    fn copying_one_platform_of_an_index_copies_just_its_blobs_and_reports_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let from = Layout::create(&dir.path().join("from")).expect("from");
        let into = Layout::create(&dir.path().join("into")).expect("into");
        let (root, parts) = two_platforms(&from);
        let source = LayoutSource::new("hand-made", from.clone(), root.clone()).expect("source");
        assert!(!holds_image(&into, "hand-made", &root, &[arm64()]).expect("holds"));

        let recorder = Arc::new(Recorder::default());
        let events = Events::new(recorder.clone());
        let copied =
            copy_image(&source, "hand-made", &root, &[arm64()], &into, &events).expect("copy");
        assert_eq!(copied, 2, "the arm64 config and layer");
        let (amd, arm) = (&parts[0], &parts[1]);
        for d in [&root, &arm.0, &arm.1, &arm.2] {
            assert_eq!(
                into.read_blob(d).expect("copied"),
                from.read_blob(d).expect("source")
            );
        }
        for d in [&amd.0, &amd.1, &amd.2] {
            assert!(!into.has_blob(d), "{d} belongs to amd64 only");
        }
        let pulled: Vec<Digest> = recorder
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::BlobPulled { digest, .. } => Some(digest),
                _ => None,
            })
            .collect();
        assert_eq!(pulled.len(), 2);
        assert!(pulled.contains(&arm.1) && pulled.contains(&arm.2));

        assert!(holds_image(&into, "hand-made", &root, &[arm64()]).expect("holds"));
        let amd64 = Platform::parse("linux/amd64").expect("platform");
        assert!(!holds_image(&into, "hand-made", &root, &[amd64]).expect("holds"));
        let again = copy_image(
            &source,
            "hand-made",
            &root,
            &[arm64()],
            &into,
            &Events::silent(),
        )
        .expect("copy again");
        assert_eq!(again, 0, "nothing is copied twice");
    }

    /// A source that only has the required accessors, so that copying goes through
    /// the trait's own `copy_blobs` (reading each blob through `blob`).
    struct Plain(LayoutSource);

    impl ImageSource for Plain {
        fn name(&self) -> String {
            self.0.name()
        }
        fn root(&self) -> Result<(Digest, Vec<u8>)> {
            self.0.root()
        }
        fn json_object(&self, digest: &Digest, is_manifest: bool) -> Result<Vec<u8>> {
            self.0.json_object(digest, is_manifest)
        }
        fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + Send>> {
            self.0.blob(digest, size)
        }
    }

    #[test]
    fn a_blob_whose_bytes_do_not_match_its_digest_is_not_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let from = Layout::create(&dir.path().join("from")).expect("from");
        let into = Layout::create(&dir.path().join("into")).expect("into");
        let (root, parts) = two_platforms(&from);
        let layer = &parts[1].2;
        let path = from.blob_path(layer);
        let mut perms = std::fs::metadata(&path).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
        std::fs::set_permissions(&path, perms).expect("chmod");
        std::fs::write(&path, b"layer of arm65").expect("tamper");

        let source = Plain(LayoutSource::new("hand-made", from, root.clone()).expect("source"));
        let err = copy_image(
            &source,
            "hand-made",
            &root,
            &[arm64()],
            &into,
            &Events::silent(),
        )
        .expect_err("the layer's bytes changed");
        assert!(
            err.message().contains(&layer.to_string()),
            "{}",
            err.message()
        );
        assert_eq!(err.exit_code(), crate::ExitCode::BadInput);
        assert!(!into.has_blob(layer));
    }
}
