//! Signatures and signed attestations of pushed images, in cosign's key-based formats
//! (docs/signing.md), and checking them.
//!
//! - [`keys`]: reading private and public keys (PKCS#8, SEC1, cosign's encrypted
//!   keys, SubjectPublicKeyInfo); signing and verifying with RustCrypto's crates.
//! - [`cosign`]: the documents and images cosign reads: simple-signing payloads,
//!   `sha256-<hex>.sig` and `.att` images, DSSE envelopes.
//! - this module: putting them in a registry ([`sign_image`]) and reading them back
//!   ([`check_signatures`]).
//!
//! The signature image of a digest is read, extended and written again, so other
//! signatures already there stay (cosign does the same); signing the same digest with
//! the same key again changes nothing (both algorithms sign deterministically).

pub mod attestations;
pub mod cosign;
pub mod keys;

use serde::Serialize;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{is_index_media_type, Descriptor, Index, MANIFEST_V1};
use crate::reference::RegistryRef;
use crate::registry::client::{self, RegistryClient};

pub use keys::{PublicKey, SigningKey};

/// An in-toto statement to attach as a signed attestation.
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// The statement that carries an SPDX `sbom` about `subject` (`name`, `digest`).
pub fn spdx_statement(name: &str, digest: &Digest, sbom: &[u8]) -> Result<Statement> {
    let predicate: Value = serde_json::from_slice(sbom)
        .map_err(|e| Error::input(format!("internal: the SBOM is not JSON: {e}")))?;
    let statement = json!({
        "_type": crate::provenance::STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest.hex()}}],
        "predicateType": SPDX_PREDICATE,
        "predicate": predicate,
    });
    Ok(Statement {
        predicate_type: SPDX_PREDICATE.to_string(),
        bytes: statement.to_string().into_bytes(),
    })
}

/// The predicate type of an SPDX document in an in-toto statement.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";

/// One signature or attestation image written, for logs and `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signed {
    /// The digest signed (or attested).
    pub digest: String,
    /// `signature` or `attestation`.
    pub kind: String,
    /// The tag of the signature (`.sig`) or attestation (`.att`) image.
    pub tag: String,
    /// That image's manifest digest; empty when it already held this signature.
    pub manifest: String,
}

/// The manifests to sign for the image `root` in `repository`: the root, and for an
/// index each of its manifests (as `cosign sign --recursive` does).
pub async fn subjects(
    client: &RegistryClient,
    repository: &str,
    root: &Descriptor,
) -> Result<Vec<Descriptor>> {
    let mut out = vec![root.clone()];
    if is_index_media_type(&root.media_type) {
        let (bytes, _) = client
            .get_manifest(repository, &root.digest.to_string())
            .await?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            Error::input(format!(
                "{}/{repository}@{}: not a valid index: {e}",
                client.registry(),
                root.digest
            ))
        })?;
        out.extend(index.manifests);
    }
    Ok(out)
}

/// Signs each of `subjects` (the first is the image's root) with `key`, and attaches
/// `statements` to the root as attestations signed with the same key.
pub async fn sign_image(
    client: &RegistryClient,
    repository: &str,
    subjects: &[Descriptor],
    key: &SigningKey,
    statements: &[Statement],
) -> Result<Vec<Signed>> {
    let name = format!("{}/{repository}", client.registry());
    let mut signed = Vec::new();
    for subject in subjects {
        let payload = cosign::payload(&name, &subject.digest);
        let signature = key.sign(&payload);
        let layer = cosign::Layer::signature(payload, &signature);
        let tag = cosign::signature_tag(&subject.digest);
        let manifest = put_layers(client, repository, &tag, subject, &[&layer]).await?;
        signed.push(Signed {
            digest: subject.digest.to_string(),
            kind: "signature".into(),
            tag,
            manifest,
        });
    }
    if let (Some(root), false) = (subjects.first(), statements.is_empty()) {
        let layers: Vec<cosign::Layer> = statements
            .iter()
            .map(|s| {
                let envelope = cosign::envelope(&s.bytes, |m| key.sign(m));
                cosign::Layer::attestation(envelope, &s.predicate_type)
            })
            .collect();
        let refs: Vec<&cosign::Layer> = layers.iter().collect();
        let tag = cosign::attestation_tag(&root.digest);
        let manifest = put_layers(client, repository, &tag, root, &refs).await?;
        signed.push(Signed {
            digest: root.digest.to_string(),
            kind: "attestation".into(),
            tag,
            manifest,
        });
    }
    Ok(signed)
}

/// Adds `layers` to the image under `tag` (made when there is none): uploads what
/// the repository lacks, then the manifest. Returns its digest ("" when unchanged).
async fn put_layers(
    client: &RegistryClient,
    repository: &str,
    tag: &str,
    subject: &Descriptor,
    layers: &[&cosign::Layer],
) -> Result<String> {
    let existing = client.get_manifest_if_any(repository, tag).await?;
    let Some((config, manifest)) = cosign::image(
        cosign::existing_layers(existing.as_deref()),
        layers,
        subject,
    )?
    else {
        return Ok(String::new());
    };
    for layer in layers {
        upload_bytes(client, repository, &layer.bytes).await?;
    }
    upload_bytes(client, repository, &config).await?;
    client
        .put_manifest(repository, tag, &manifest, MANIFEST_V1)
        .await?;
    Ok(Digest::of(&manifest).to_string())
}

/// Uploads `bytes` as a blob unless the repository has it (through a temp file: the
/// client streams uploads from files).
async fn upload_bytes(client: &RegistryClient, repository: &str, bytes: &[u8]) -> Result<()> {
    let digest = Digest::of(bytes);
    if client.blob_exists(repository, &digest).await? {
        return Ok(());
    }
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| Error::io("cannot create a temporary file for a signature", e))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|e| Error::io("cannot write a temporary file for a signature", e))?;
    client
        .upload_blob(repository, &digest, file.path(), bytes.len() as u64)
        .await
}

/// One signature found beside an image, and what checking it showed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    /// The payload's digest (the signature layer's).
    pub payload: String,
    /// Why it does not verify; None: a valid signature of the image by the key.
    pub problem: Option<String>,
}

/// What [`check_signatures`] found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureCheck {
    pub digest: String,
    /// The signature image's tag.
    pub tag: String,
    pub signatures: Vec<Found>,
}

impl SignatureCheck {
    /// Whether at least one signature is valid.
    pub fn verified(&self) -> bool {
        self.signatures.iter().any(|f| f.problem.is_none())
    }
}

/// Checks the signatures cosign's layout stores beside `digest` in `repository`
/// against `key`: each must be the key's signature of its payload, and the payload
/// must name `digest`. Registry failures are errors (exit 3); signatures that do not
/// verify are reported, each with its reason.
pub async fn check_signatures(
    client: &RegistryClient,
    repository: &str,
    digest: &Digest,
    key: &PublicKey,
) -> Result<SignatureCheck> {
    let tag = cosign::signature_tag(digest);
    let existing = client.get_manifest_if_any(repository, &tag).await?;
    let mut signatures = Vec::new();
    // At most 64 looked at: a hostile registry could list thousands, each a download.
    for layer in cosign::existing_layers(existing.as_deref())
        .into_iter()
        .take(64)
    {
        let payload = layer["digest"].as_str().unwrap_or("").to_string();
        let problem = check_one(client, repository, digest, key, &layer).await?;
        signatures.push(Found { payload, problem });
    }
    Ok(SignatureCheck {
        digest: digest.to_string(),
        tag,
        signatures,
    })
}

async fn check_one(
    client: &RegistryClient,
    repository: &str,
    digest: &Digest,
    key: &PublicKey,
    layer: &Value,
) -> Result<Option<String>> {
    use base64::Engine as _;
    if layer["mediaType"] != cosign::SIMPLE_SIGNING {
        return Ok(Some(format!(
            "its layer's media type is {}, not a simple-signing payload",
            layer["mediaType"]
        )));
    }
    let Some(sig) = layer["annotations"][cosign::SIGNATURE_ANNOTATION].as_str() else {
        return Ok(Some(format!(
            "its layer has no {} annotation",
            cosign::SIGNATURE_ANNOTATION
        )));
    };
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else {
        return Ok(Some("its signature is not base64".into()));
    };
    let Some(payload_digest) = layer["digest"].as_str().and_then(Digest::parse) else {
        return Ok(Some("its layer names no valid digest".into()));
    };
    // Read like a config: verified against its digest, at most a few MB.
    let payload = match client.get_config(repository, &payload_digest).await {
        Ok(bytes) => bytes,
        Err(e) if e.class() == crate::error::Class::BadInput => {
            return Ok(Some(format!("its payload cannot be read: {}", e.message())))
        }
        Err(e) => return Err(e),
    };
    if !key.verify(&payload, &sig) {
        return Ok(Some(format!(
            "it is not a signature by this {} key (or its payload was altered)",
            key.algorithm()
        )));
    }
    match cosign::payload_digest(&payload) {
        Some(named) if named == digest.to_string() => Ok(None),
        Some(named) => Ok(Some(format!("it signs {named}, not {digest}"))),
        None => Ok(Some(
            "its payload is not a cosign simple-signing document".into(),
        )),
    }
}

/// `imgbuild verify-signature`: resolves `reference` (its digest, else its tag) and
/// checks the signatures stored beside that digest against `key`. Needs pull access
/// only.
pub fn verify_signature(
    reference: &RegistryRef,
    key: &PublicKey,
    opts: &client::Options,
) -> Result<SignatureCheck> {
    let runtime = client::runtime()?;
    runtime.block_on(async {
        let c = RegistryClient::connect(&reference.registry, &reference.repository, opts).await?;
        c.authorize(&reference.repository, false).await?;
        let digest = match &reference.digest {
            // The image must be there: a signature of a digest the repository does
            // not hold verifies nothing (a missing image is exit 2).
            Some(d) => {
                c.get_manifest(&reference.repository, &d.to_string())
                    .await?
                    .1
            }
            None => {
                let tag = reference.tag.as_deref().unwrap_or("latest");
                c.get_manifest(&reference.repository, tag).await?.1
            }
        };
        check_signatures(&c, &reference.repository, &digest, key).await
    })
}
