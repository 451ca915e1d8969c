//! `imgbuild inspect REF`: the index, manifests, configs and layers of an image, read
//! back as the exact bytes stored (each blob's digest checked on read), from a layout
//! or a registry.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::registry::client;
use crate::source::{self, ImageSource};
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
    read(&*source::open(reference, opts)?)
}

/// Reads an image's index, manifests and configs through its source.
pub fn read(source: &dyn ImageSource) -> Result<Inspected> {
    let (digest, bytes) = source.root()?;
    assemble(source.name(), digest, bytes, |d, is_manifest| {
        source.json_object(d, is_manifest)
    })
}

/// Reads the rest of the image below `top` through `fetch(digest, is_manifest)`.
fn assemble(
    name: String,
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
        reference: name,
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
    serde_json::from_slice(bytes)
        .map_err(|e| corrupt(digest, &format!("not JSON ({e})")).with_source(e))
}

fn corrupt(digest: &Digest, what: &str) -> Error {
    Error::input(format!("blob {digest} is not a valid OCI object: {what}"))
}
