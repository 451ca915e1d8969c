//! cosign's key-based formats, byte for byte what `cosign verify --key` and
//! `cosign verify-attestation --key` read (docs/signing.md):
//!
//! - a **signature** is a "simple signing" JSON payload naming the image's manifest
//!   digest and repository, stored as a layer (`application/vnd.dev.cosign.simplesigning.v1+json`)
//!   of an image tagged `sha256-<hex>.sig` in the image's repository, with the
//!   signature (base64) in the layer's `dev.cosignproject.cosign/signature`
//!   annotation. Several signatures are several layers of that one image.
//! - an **attestation** is an in-toto statement in a DSSE envelope
//!   (`application/vnd.dsse.envelope.v1+json`) whose signature covers the envelope's
//!   pre-authentication encoding, stored as a layer of the image tagged
//!   `sha256-<hex>.att`, annotated with the statement's `predicateType`.
//!
//! Both images also carry a `subject` naming the signed manifest, so that a registry
//! with the referrers API lists them as its referrers.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, MANIFEST_V1};

pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
const CONFIG_V1: &str = "application/vnd.oci.image.config.v1+json";
/// cosign's signature and attestation images carry no dates: Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The tag cosign stores `digest`'s signatures under.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tag cosign stores `digest`'s attestations under.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// The simple-signing payload for the image `digest` in `repository`
/// (`registry/repository`): what a signature signs.
pub fn payload(repository: &str, digest: &Digest) -> Vec<u8> {
    json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// The manifest digest a simple-signing payload names (None: not such a payload).
pub fn payload_digest(payload: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    if v["critical"]["type"] != "cosign container image signature" {
        return None;
    }
    v["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .map(str::to_string)
}

/// DSSE's pre-authentication encoding: what an envelope's signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope of the in-toto `statement`, signed with `sign`.
pub fn envelope(statement: &[u8], sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let signature = sign(&pae(IN_TOTO, statement));
    json!({
        "payloadType": IN_TOTO,
        "payload": b64.encode(statement),
        "signatures": [{"keyid": "", "sig": b64.encode(signature)}],
    })
    .to_string()
    .into_bytes()
}

/// A layer of a signature or attestation image: its bytes and descriptor.
pub struct Layer {
    pub bytes: Vec<u8>,
    pub descriptor: Value,
}

impl Layer {
    /// A signature layer: `payload` with its base64 `signature`.
    pub fn signature(payload: Vec<u8>, signature: &[u8]) -> Layer {
        let sig = base64::engine::general_purpose::STANDARD.encode(signature);
        let descriptor = json!({
            "mediaType": SIMPLE_SIGNING,
            "digest": Digest::of(&payload).to_string(),
            "size": payload.len(),
            "annotations": {SIGNATURE_ANNOTATION: sig},
        });
        Layer {
            bytes: payload,
            descriptor,
        }
    }

    /// An attestation layer: a DSSE `envelope` of a statement of `predicate_type`.
    pub fn attestation(envelope: Vec<u8>, predicate_type: &str) -> Layer {
        let descriptor = json!({
            "mediaType": DSSE_ENVELOPE,
            "digest": Digest::of(&envelope).to_string(),
            "size": envelope.len(),
            "annotations": {PREDICATE_TYPE_ANNOTATION: predicate_type, SIGNATURE_ANNOTATION: ""},
        });
        Layer {
            bytes: envelope,
            descriptor,
        }
    }
}

/// The layers of the signature (or attestation) image already stored (`existing`,
/// None when there is none): descriptors, in their order. An image that does not
/// parse counts as none (cosign replaces it too).
pub fn existing_layers(existing: Option<&[u8]>) -> Vec<Value> {
    existing
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .and_then(|v| v.get("layers").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// The signature (or attestation) image holding `layers` (existing ones first, new
/// ones appended unless a layer with the same digest and annotations is there):
/// (config bytes, manifest bytes), or None when `new` adds nothing.
pub fn image(
    existing: Vec<Value>,
    new: &[&Layer],
    subject: &Descriptor,
) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut layers = existing;
    let mut changed = false;
    for layer in new {
        if !layers.iter().any(|l| {
            l.get("digest") == layer.descriptor.get("digest")
                && l.get("annotations") == layer.descriptor.get("annotations")
        }) {
            layers.push(layer.descriptor.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    let diff_ids: Vec<&Value> = layers.iter().filter_map(|l| l.get("digest")).collect();
    if diff_ids.len() != layers.len() {
        return Err(Error::input(
            "the stored signature image has a layer without a digest",
        ));
    }
    let config = json!({
        "architecture": "",
        "config": {},
        "created": ZERO_TIME,
        "history": layers.iter().map(|_| json!({"created": ZERO_TIME})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V1,
        "config": {
            "mediaType": CONFIG_V1,
            "digest": Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": layers,
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest.to_string(),
            "size": subject.size,
        },
    })
    .to_string()
    .into_bytes();
    Ok(Some((config, manifest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_names_the_digest_and_reads_back() {
        let d = Digest::of(b"image");
        let p = payload("127.0.0.1:5000/app", &d);
        assert_eq!(payload_digest(&p), Some(d.to_string()));
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(
            v["critical"]["identity"]["docker-reference"],
            "127.0.0.1:5000/app"
        );
        assert_eq!(payload_digest(b"{\"critical\":{}}"), None);
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"hello"),
            b"DSSEv1 28 application/vnd.in-toto+json 5 hello"
        );
    }

    #[test]
    fn a_second_signature_is_appended_and_a_repeated_one_changes_nothing() {
        let subject = Descriptor::new(MANIFEST_V1, Digest::of(b"image"), 5);
        let a = Layer::signature(b"payload".to_vec(), b"sig-a");
        let b = Layer::signature(b"payload".to_vec(), b"sig-b");
        let (_, first) = image(Vec::new(), &[&a], &subject).unwrap().unwrap();
        let layers = existing_layers(Some(&first));
        assert_eq!(layers.len(), 1);
        assert!(image(layers.clone(), &[&a], &subject).unwrap().is_none());
        let (config, second) = image(layers, &[&b], &subject).unwrap().unwrap();
        assert_eq!(existing_layers(Some(&second)).len(), 2);
        let c: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    }
}
