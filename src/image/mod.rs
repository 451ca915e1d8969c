//! Assemble: canonical OCI JSON — image config, manifest, index (docs/determinism.md, "Metadata").
//!
//! This is the one place where digested JSON bytes are made. Every object is a struct
//! whose field order is the serialization order, maps are `BTreeMap`s (sorted by key),
//! output is compact `serde_json` without a trailing newline. Never serialize an OCI
//! object anywhere else, and never re-serialize a blob read from elsewhere: keep its
//! raw bytes (a digest is the hash of the bytes you hold).

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const MANIFEST_V1: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_V1: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_V1: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformJson {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl From<&crate::platform::Platform> for PlatformJson {
    fn from(p: &crate::platform::Platform) -> Self {
        PlatformJson {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The OCI image config. Fields of a base image's config that imgbuild does not
/// model are carried in `extra` (sorted), so a base's settings survive.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<Value>,
    /// A base config's other top-level fields (`author`, `os.version`,
    /// `os.features`, …), carried over as they are, after the known fields, sorted.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// The canonical bytes of an OCI object: compact, fields in declaration order.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no
    // custom serializers that error.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A history entry written by imgbuild.
pub fn history_entry(created: &str, created_by: &str) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("created".into(), Value::String(created.into()));
    m.insert("created_by".into(), Value::String(created_by.into()));
    Value::Object(m)
}

/// Whether a media type names an index (OCI image index or Docker manifest list).
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == INDEX_V1 || media_type == DOCKER_MANIFEST_LIST
}

/// Whether a parsed manifest-or-index JSON value is an index: by its `mediaType`, or,
/// when it names none (the field is optional in OCI), by its shape (`manifests`).
/// The one place this question is answered.
pub fn is_index_value(value: &Value) -> bool {
    match value.get("mediaType").and_then(Value::as_str) {
        Some(t) if is_index_media_type(t) => true,
        Some(MANIFEST_V1 | DOCKER_MANIFEST_V2) => false,
        _ => value.get("manifests").is_some(),
    }
}

/// [`is_index_value`] on raw bytes; bytes that are not JSON are not an index.
pub fn is_index_bytes(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|v| is_index_value(&v))
}

/// The media type a manifest or index names itself with, or the one its shape implies.
pub fn media_type_of(value: &Value) -> Option<String> {
    if let Some(t) = value.get("mediaType").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    if value.get("manifests").is_some() {
        Some(INDEX_V1.to_string())
    } else if value.get("config").is_some() {
        Some(MANIFEST_V1.to_string())
    } else {
        None
    }
}

/// The manifest of `index` for `platform` (a platform without a variant matches any
/// variant); an error listing the index's platforms when there is none.
pub fn select_platform(
    index: &Index,
    platform: &crate::platform::Platform,
    name: &str,
) -> crate::error::Result<Digest> {
    let found = index.manifests.iter().find(|m| {
        m.platform.as_ref().is_some_and(|p| {
            p.os == platform.os
                && p.architecture == platform.architecture
                && (platform.variant.is_none() || p.variant == platform.variant)
        })
    });
    match found {
        Some(m) => Ok(m.digest.clone()),
        None => {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| {
                    format!(
                        "{}/{}{}",
                        p.os,
                        p.architecture,
                        p.variant
                            .as_ref()
                            .map(|v| format!("/{v}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            Err(crate::error::Error::input(format!(
                "base image {name} has no manifest for {platform}"
            ))
            .with_hint(format!("it has: {}", have.join(", "))))
        }
    }
}

/// The recipe name of each of `layers` layers that imgbuild built, in `rootfs` order,
/// read from the config's history (`imgbuild: layer NAME`, not counting
/// `empty_layer` entries); `None` for a layer another tool made. History and layers
/// are paired from the end: imgbuild's layers are always the last, and a base's
/// history may be missing or shorter than its layers.
pub fn layer_names(config: &Value, layers: usize) -> Vec<Option<String>> {
    let made: Vec<Option<String>> = config["history"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|h| h["empty_layer"].as_bool() != Some(true))
        .map(|h| {
            h["created_by"]
                .as_str()
                .and_then(|c| c.strip_prefix("imgbuild: layer "))
                .map(str::to_string)
        })
        .collect();
    let skip = made.len().saturating_sub(layers);
    let mut names = vec![None; layers.saturating_sub(made.len() - skip)];
    names.extend(made.into_iter().skip(skip));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_pair_history_and_layers_from_the_end() {
        let ours = |n: &str| serde_json::json!({"created_by": format!("imgbuild: layer {n}")});
        // A base with two layers and no history, then two of ours.
        let config = serde_json::json!({"history": [ours("app"), ours("cleanup")]});
        assert_eq!(
            layer_names(&config, 4),
            [
                None,
                None,
                Some("app".to_string()),
                Some("cleanup".to_string())
            ]
        );
        // More history than layers (entries not flagged empty): the last ones count.
        let config = serde_json::json!({"history": [{"created_by": "x"}, ours("a")]});
        assert_eq!(layer_names(&config, 1), [Some("a".to_string())]);
        assert!(layer_names(&serde_json::json!({}), 2)
            .iter()
            .all(Option::is_none));
    }

    #[test]
    fn index_is_told_by_media_type_then_by_shape() {
        assert!(is_index_value(&serde_json::json!({"mediaType": INDEX_V1})));
        assert!(is_index_value(
            &serde_json::json!({"mediaType": DOCKER_MANIFEST_LIST, "manifests": []})
        ));
        assert!(is_index_value(&serde_json::json!({"manifests": []})));
        assert!(!is_index_value(
            &serde_json::json!({"mediaType": MANIFEST_V1, "config": {}})
        ));
        assert!(!is_index_value(&serde_json::json!({"config": {}})));
        assert!(!is_index_bytes(b"not json"));
        assert!(is_index_bytes(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert_eq!(
            media_type_of(&serde_json::json!({"config": {}})).as_deref(),
            Some(MANIFEST_V1)
        );
        assert_eq!(media_type_of(&serde_json::json!({})), None);
    }

    #[test]
    fn json_maps_are_sorted_and_output_is_compact() {
        let mut c = ImageConfig::default();
        c.config.labels.insert("b".into(), "2".into());
        c.config.labels.insert("a".into(), "1".into());
        c.history.push(history_entry("1970-01-01T00:00:00Z", "x"));
        let s = String::from_utf8(canonical_json(&c)).unwrap();
        assert!(s.contains(r#""Labels":{"a":"1","b":"2"}"#), "{s}");
        assert!(
            s.contains(r#"{"created":"1970-01-01T00:00:00Z","created_by":"x"}"#),
            "{s}"
        );
        assert!(!s.contains(' ') && !s.ends_with('\n'));
    }

    #[test]
    fn serde_json_objects_stay_sorted() {
        // A dependency enabling serde_json's `preserve_order` would silently change
        // digests: this fails if that ever happens.
        let v: Value = serde_json::from_str(r#"{"z":1,"a":2}"#).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":2,"z":1}"#);
    }
}
