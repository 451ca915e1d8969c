//! Attaching documents (provenance, SBOM) to a pushed image as OCI artifacts
//! (image-spec 1.1, distribution-spec 1.1 "referrers"):
//!
//! - each document becomes an image manifest with `artifactType`, the empty config
//!   (`application/vnd.oci.empty.v1+json`, `{}`), one layer (the document), and
//!   `subject` = the pushed image's root (its manifest, or its index);
//! - when the registry implements the referrers API (`GET /v2/<name>/referrers/<digest>`
//!   answers 200 with an index) pushing the manifest is all it takes;
//! - otherwise the tag schema: the tag `sha256-<hex of the subject>` holds an image
//!   index listing the referrers. It is read first and the new manifests added to it,
//!   so other artifacts already attached stay listed and a re-push adds no duplicate.
//!
//! The artifact blobs and manifests are also written into the build's layout (a
//! content-addressed store; index.json does not name them), and uploaded from there.

use serde::Serialize;
use serde_json::{json, Value};

use super::client::RegistryClient;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::image::{Descriptor, INDEX_V1, MANIFEST_V1};
use crate::layout::Layout;

pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_JSON: &[u8] = b"{}";

/// One document to attach.
pub struct Artifact<'a> {
    /// Both the manifest's `artifactType` and the layer's media type.
    pub artifact_type: &'a str,
    /// The layer's `org.opencontainers.image.title`.
    pub title: &'a str,
    pub bytes: &'a [u8],
}

/// What attaching did, for logs and `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    pub artifact_type: String,
    /// The artifact manifest's digest.
    pub digest: String,
    /// "referrers-api", or the fallback tag that lists it.
    pub listed_by: String,
}

/// The artifact manifest for `blob` (already in `layout`) referring to `subject`.
fn artifact_manifest(artifact: &Artifact, blob: &Digest, subject: &Descriptor) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V1,
        "artifactType": artifact.artifact_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": Digest::of(EMPTY_JSON),
            "size": EMPTY_JSON.len(),
        },
        "layers": [{
            "mediaType": artifact.artifact_type,
            "digest": blob,
            "size": artifact.bytes.len(),
            "annotations": {"org.opencontainers.image.title": artifact.title},
        }],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
    });
    // serde_json's maps are sorted: the same document always gives the same bytes.
    manifest.to_string().into_bytes()
}

/// The tag the referrers tag schema uses for `subject`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// Adds `entries` to the fallback index `existing` (None: a new one). Entries whose
/// digest is already listed are not added again. Returns None when nothing changed.
pub fn merge_index(existing: Option<&[u8]>, entries: &[Value]) -> Result<Option<Vec<u8>>> {
    let mut index = match existing {
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(v) if v.get("manifests").is_some_and(Value::is_array) => v,
            // Not an index: the spec says to replace it with one.
            _ => json!({"schemaVersion": 2, "mediaType": INDEX_V1, "manifests": []}),
        },
        None => json!({"schemaVersion": 2, "mediaType": INDEX_V1, "manifests": []}),
    };
    let Some(manifests) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
        return Err(Error::input("internal: fallback index without manifests"));
    };
    let mut changed = existing.is_none();
    for e in entries {
        if !manifests.iter().any(|m| m.get("digest") == e.get("digest")) {
            manifests.push(e.clone());
            changed = true;
        }
    }
    Ok(changed.then(|| index.to_string().into_bytes()))
}

/// Attaches `artifacts` to `subject` in `repository` (already pushed there).
pub async fn attach(
    client: &RegistryClient,
    layout: &Layout,
    repository: &str,
    subject: &Descriptor,
    artifacts: &[Artifact<'_>],
) -> Result<Vec<Attached>> {
    let empty = layout.write_blob(EMPTY_JSON)?;
    let mut manifests = Vec::new();
    for a in artifacts {
        let blob = layout.write_blob(a.bytes)?;
        for (d, size) in [(&empty, EMPTY_JSON.len()), (&blob, a.bytes.len())] {
            if !client.blob_exists(repository, d).await? {
                client
                    .upload_blob(repository, d, &layout.blob_path(d), size as u64)
                    .await?;
            }
        }
        let bytes = artifact_manifest(a, &blob, subject);
        let digest = layout.write_blob(&bytes)?;
        client
            .put_manifest(repository, &digest.to_string(), &bytes, MANIFEST_V1)
            .await?;
        manifests.push((a.artifact_type, digest, bytes.len()));
    }

    let api = client
        .referrers_api(repository, &subject.digest)
        .await?
        .is_some();
    let listed_by = if api {
        "referrers-api".to_string()
    } else {
        let tag = fallback_tag(&subject.digest);
        let existing = client.get_manifest_if_any(repository, &tag).await?;
        let entries: Vec<Value> = manifests
            .iter()
            .map(|(t, d, size)| {
                json!({"mediaType": MANIFEST_V1, "digest": d, "size": size, "artifactType": t})
            })
            .collect();
        if let Some(index) = merge_index(existing.as_deref(), &entries)? {
            layout.write_blob(&index)?;
            client
                .put_manifest(repository, &tag, &index, INDEX_V1)
                .await?;
        }
        tag
    };
    let attached: Vec<Attached> = manifests
        .into_iter()
        .map(|(t, d, _)| {
            client.events().emit(Event::Attached {
                artifact_type: t.to_string(),
                digest: d.clone(),
                subject: subject.digest.clone(),
                listed_by: listed_by.clone(),
            });
            Attached {
                artifact_type: t.to_string(),
                digest: d.to_string(),
                listed_by: listed_by.clone(),
            }
        })
        .collect();
    Ok(attached)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(d: &str) -> Value {
        json!({"mediaType": MANIFEST_V1, "digest": d, "size": 1, "artifactType": "x"})
    }

    #[test]
    fn merge_keeps_other_referrers_and_adds_no_duplicate() {
        let first = merge_index(None, &[entry("sha256:aa")]).unwrap().unwrap();
        let second = merge_index(Some(&first), &[entry("sha256:bb")])
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&second).unwrap();
        let digests: Vec<&str> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(digests, ["sha256:aa", "sha256:bb"]);
        assert_eq!(
            merge_index(Some(&second), &[entry("sha256:aa"), entry("sha256:bb")]).unwrap(),
            None,
            "re-adding listed referrers must change nothing"
        );
    }

    #[test]
    fn merge_replaces_something_that_is_not_an_index() {
        let out = merge_index(Some(b"not json"), &[entry("sha256:aa")])
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["mediaType"], INDEX_V1);
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn artifact_manifest_has_subject_empty_config_and_one_layer() {
        let subject = Descriptor::new(MANIFEST_V1, Digest::of(b"image"), 5);
        let a = Artifact {
            artifact_type: "application/spdx+json",
            title: "sbom.spdx.json",
            bytes: b"{}",
        };
        let bytes = artifact_manifest(&a, &Digest::of(b"{}"), &subject);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["artifactType"], "application/spdx+json");
        assert_eq!(v["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(v["config"]["size"], 2);
        assert_eq!(v["subject"]["digest"], Digest::of(b"image").to_string());
        assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    }
}
