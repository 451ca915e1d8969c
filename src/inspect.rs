//! `imgbuild inspect REF`: the index, manifests, configs and layers of an image, read
//! back as the exact bytes stored (each blob's digest checked on read), from a layout
//! or a registry.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ANNOTATION_REF_NAME;
use crate::layout::Layout;
use crate::reference::Reference;
use crate::registry::client::{self, RegistryClient};
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

/// Inspects a layout or registry image. Registry images are read with `opts`
/// (CA files, insecure hosts); every manifest and config is checked against its digest.
pub fn inspect(reference: &Reference, opts: &client::Options) -> Result<Inspected> {
    match reference {
        Reference::Layout { .. } => {
            let (layout, digest) = resolve_layout_image(reference)?;
            let bytes = layout.read_blob(&digest)?;
            assemble(reference, digest, bytes, |d, _| layout.read_blob(d))
        }
        Reference::Registry(r) => {
            let rt = client::runtime()?;
            let c = rt.block_on(async {
                let c = RegistryClient::connect(&r.registry, &r.repository, opts).await?;
                c.authorize(&r.repository, false).await?;
                Ok::<_, Error>(c)
            })?;
            let wanted = match (&r.digest, &r.tag) {
                (Some(d), _) => d.to_string(),
                (None, Some(t)) => t.clone(),
                (None, None) => crate::reference::DEFAULT_TAG.to_string(),
            };
            let (bytes, digest) = rt.block_on(c.get_manifest(&r.repository, &wanted))?;
            assemble(reference, digest, bytes, |d, is_manifest| {
                if is_manifest {
                    rt.block_on(c.get_manifest(&r.repository, &d.to_string()))
                        .map(|(b, _)| b)
                } else {
                    rt.block_on(c.get_config(&r.repository, d))
                }
            })
        }
    }
}

/// The image a layout reference names: by digest, by tag, or the layout's only image.
pub fn resolve_layout_image(reference: &Reference) -> Result<(Layout, Digest)> {
    let (dir, tag, digest) = match reference {
        Reference::Layout { dir, tag, digest } => (dir, tag, digest),
        Reference::Registry(r) => {
            return Err(Error::input(format!(
                "{r} is a registry reference; expected oci:DIR[:TAG]"
            )))
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
        return Err(
            Error::input(format!("{reference}: the layout holds no blob {digest}")).with_hint(
                "check the digest: `imgbuild inspect oci:DIR:TAG` shows the digests a tag leads to",
            ),
        );
    }
    Ok((layout, digest))
}

/// Reads the rest of the image below `top` through `fetch(digest, is_manifest)`.
fn assemble(
    reference: &Reference,
    digest: Digest,
    bytes: Vec<u8>,
    mut fetch: impl FnMut(&Digest, bool) -> Result<Vec<u8>>,
) -> Result<Inspected> {
    let top: Value = json(&bytes, &digest)?;
    let media_type = top
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_index = crate::image::is_index_value(&top);
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
            manifests.push(read_manifest(&mut fetch, d, platform)?);
        }
    } else {
        let mut m = read_manifest(&mut fetch, digest.clone(), None)?;
        let c = &m.config;
        m.platform = c["os"].as_str().map(|os| {
            let mut s = format!("{os}/{}", c["architecture"].as_str().unwrap_or("?"));
            if let Some(v) = c["variant"].as_str() {
                s.push_str(&format!("/{v}"));
            }
            s
        });
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
    fetch: &mut impl FnMut(&Digest, bool) -> Result<Vec<u8>>,
    digest: Digest,
    platform: Option<String>,
) -> Result<InspectedManifest> {
    let bytes = fetch(&digest, true)?;
    let manifest: Value = json(&bytes, &digest)?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .and_then(Digest::parse)
        .ok_or_else(|| corrupt(&digest, "the manifest has no valid config digest"))?;
    let config = json(&fetch(&config_digest, false)?, &config_digest)?;
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
    let by_digest = format!("oci:{}@sha256:…", layout.root().display());
    Ok(if tags.is_empty() {
        format!("name the image by digest: {by_digest}")
    } else {
        format!(
            "tags in this layout: {}; or name the image by digest: {by_digest}",
            tags.join(", ")
        )
    })
}
