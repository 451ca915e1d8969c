//! `imgbuild inspect REF`: the index, manifests, configs and layers of an image, read
//! back as the exact bytes stored (each blob's digest checked on read).

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{ANNOTATION_REF_NAME, DOCKER_MANIFEST_LIST, INDEX_V1};
use crate::layout::Layout;
use crate::reference::Reference;
use serde_json::Value;

#[derive(Debug)]
pub struct Inspected {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The image index, when the reference names one.
    pub index: Option<Value>,
    pub manifests: Vec<InspectedManifest>,
}

#[derive(Debug)]
pub struct InspectedManifest {
    pub platform: Option<String>,
    pub digest: Digest,
    pub size: u64,
    pub manifest: Value,
    pub config: Value,
}

pub fn inspect(reference: &Reference) -> Result<Inspected> {
    let (dir, tag, digest) = match reference {
        Reference::Layout { dir, tag, digest } => (dir, tag, digest),
        Reference::Registry(r) => {
            return Err(Error::input(format!("cannot inspect {r}: registry references are not supported yet"))
                .with_hint("copy the image into a layout first (skopeo copy docker://… oci:DIR:TAG) and inspect oci:DIR:TAG"))
        }
    };
    let layout = Layout::open(dir)?;
    let digest = match (digest, tag) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => match layout.resolve_tag(t)? {
            Some(d) => d.digest,
            None => {
                return Err(
                    Error::input(format!("{reference}: no image is tagged {t:?}"))
                        .with_hint(tags_hint(&layout)?),
                )
            }
        },
        (None, None) => {
            let index = layout.read_index()?;
            let mut digests: Vec<&Digest> = index.manifests.iter().map(|m| &m.digest).collect();
            digests.sort();
            digests.dedup();
            match digests.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(Error::input(format!(
                        "{reference}: the layout holds no image"
                    )))
                }
                _ => {
                    return Err(Error::input(format!(
                        "{reference}: the layout holds several images; say which"
                    ))
                    .with_hint(tags_hint(&layout)?))
                }
            }
        }
    };
    if !layout.has_blob(&digest) {
        return Err(Error::input(format!(
            "{reference}: the layout holds no blob {digest}"
        )));
    }
    let bytes = layout.read_blob(&digest)?;
    let top: Value = json(&bytes, &digest)?;
    let media_type = top
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_index = top.get("manifests").is_some()
        || matches!(media_type.as_str(), INDEX_V1 | DOCKER_MANIFEST_LIST);
    let mut manifests = Vec::new();
    if is_index {
        for m in top["manifests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let d = m["digest"]
                .as_str()
                .and_then(Digest::parse)
                .ok_or_else(|| corrupt(&digest, "a manifest descriptor has no valid digest"))?;
            let p = &m["platform"];
            let platform = p["os"].as_str().map(|os| {
                let mut s = format!("{os}/{}", p["architecture"].as_str().unwrap_or("?"));
                if let Some(v) = p["variant"].as_str() {
                    s.push_str(&format!("/{v}"));
                }
                s
            });
            manifests.push(read_manifest(&layout, d, platform)?);
        }
    } else {
        let mut m = read_manifest(&layout, digest.clone(), None)?;
        let c = &m.config;
        m.platform = c["os"]
            .as_str()
            .map(|os| format!("{os}/{}", c["architecture"].as_str().unwrap_or("?")));
        manifests.push(m);
    }
    Ok(Inspected {
        reference: reference.to_string(),
        digest,
        media_type,
        size: bytes.len() as u64,
        index: is_index.then_some(top),
        manifests,
    })
}

fn read_manifest(
    layout: &Layout,
    digest: Digest,
    platform: Option<String>,
) -> Result<InspectedManifest> {
    let bytes = layout.read_blob(&digest)?;
    let manifest: Value = json(&bytes, &digest)?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .and_then(Digest::parse)
        .ok_or_else(|| corrupt(&digest, "the manifest has no valid config digest"))?;
    let config = json(&layout.read_blob(&config_digest)?, &config_digest)?;
    Ok(InspectedManifest {
        platform,
        digest,
        size: bytes.len() as u64,
        manifest,
        config,
    })
}

fn json(bytes: &[u8], digest: &Digest) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(digest, &format!("not JSON ({e})")))
}

fn corrupt(digest: &Digest, what: &str) -> Error {
    Error::input(format!("blob {digest} is not a valid OCI object: {what}"))
}

fn tags_hint(layout: &Layout) -> Result<String> {
    let tags: Vec<String> = layout
        .read_index()?
        .manifests
        .iter()
        .filter_map(|m| m.annotations.get(ANNOTATION_REF_NAME).cloned())
        .collect();
    Ok(if tags.is_empty() {
        "name the image by digest: oci:DIR@sha256:…".to_string()
    } else {
        format!("tags in this layout: {}", tags.join(", "))
    })
}
