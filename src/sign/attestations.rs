//! Reading an image's provenance back from its registry, for `verify`: from the
//! attestation image (`sha256-<hex>.att`, its DSSE signature checked when a key is
//! given), else — without a key — from the unsigned referrer that `--provenance`
//! attaches (the referrers API, or the `sha256-<hex>` tag schema). Either way the
//! statement must be a SLSA provenance whose subject names the image: one about
//! another image, replayed under this image's tag, does not count.

use base64::Engine as _;
use serde_json::Value;

use super::{cosign, PublicKey};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::RegistryRef;
use crate::registry::client::{self, RegistryClient};

/// An image's SLSA provenance statement, and where it was found.
#[derive(Debug, Clone)]
pub struct FoundProvenance {
    /// The in-toto statement.
    pub statement: Value,
    /// `attestation signed by the key`, `attestation, signature not checked` or
    /// `unsigned referrer`.
    pub from: &'static str,
}

/// At most this many layers or referrers are looked at: a hostile registry could list
/// thousands, each a download.
const MAX_ENTRIES: usize = 64;

/// Whether `statement` is an SLSA provenance about `digest` (its subject names it).
fn is_provenance_of(statement: &Value, digest: &Digest) -> bool {
    statement["predicateType"] == crate::provenance::PREDICATE_TYPE
        && statement["subject"].as_array().is_some_and(|subjects| {
            subjects
                .iter()
                .any(|s| s["digest"]["sha256"].as_str() == Some(digest.hex().as_str()))
        })
}

/// A small blob of `repository`, or None when the registry does not have it or it is
/// not what its digest says (a damaged entry is skipped, not fatal).
async fn small_blob(
    c: &RegistryClient,
    repository: &str,
    blob: &Digest,
) -> Result<Option<Vec<u8>>> {
    match c.get_config(repository, blob).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.class() == crate::error::Class::BadInput => Ok(None),
        Err(e) => Err(e),
    }
}

/// The provenance of the image `reference` resolves to (its digest `digest`). With
/// `key`, only a provenance in an attestation whose DSSE signature verifies with
/// the key counts: one that does not is an error (exit 1); none at all is None.
pub fn find_provenance(
    reference: &RegistryRef,
    digest: &Digest,
    key: Option<&PublicKey>,
    opts: &client::Options,
) -> Result<Option<FoundProvenance>> {
    let runtime = client::runtime()?;
    runtime.block_on(async {
        let c = RegistryClient::connect(&reference.registry, &reference.repository, opts).await?;
        c.authorize(&reference.repository, false).await?;
        let repo = &reference.repository;
        if let Some(found) = from_attestations(&c, repo, digest, key).await? {
            return Ok(Some(found));
        }
        if key.is_some() {
            return Ok(None);
        }
        from_referrers(&c, repo, digest).await
    })
}

async fn from_attestations(
    c: &RegistryClient,
    repository: &str,
    digest: &Digest,
    key: Option<&PublicKey>,
) -> Result<Option<FoundProvenance>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let existing = c
        .get_manifest_if_any(repository, &cosign::attestation_tag(digest))
        .await?;
    let mut unsigned = false;
    let mut other_image = false;
    for layer in cosign::existing_layers(existing.as_deref())
        .into_iter()
        .take(MAX_ENTRIES)
    {
        if layer["annotations"][cosign::PREDICATE_TYPE_ANNOTATION]
            != crate::provenance::PREDICATE_TYPE
        {
            continue;
        }
        let Some(blob) = layer["digest"].as_str().and_then(Digest::parse) else {
            continue;
        };
        let Some(bytes) = small_blob(c, repository, &blob).await? else {
            continue;
        };
        let Ok(envelope) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let Some(statement) = envelope["payload"]
            .as_str()
            .and_then(|p| b64.decode(p).ok())
        else {
            continue;
        };
        if let Some(key) = key {
            let pae = cosign::pae(cosign::IN_TOTO, &statement);
            let signed = envelope["signatures"].as_array().is_some_and(|sigs| {
                sigs.iter().any(|s| {
                    s["sig"]
                        .as_str()
                        .and_then(|x| b64.decode(x).ok())
                        .is_some_and(|sig| key.verify(&pae, &sig))
                })
            });
            if !signed {
                unsigned = true;
                continue;
            }
        }
        let Ok(statement) = serde_json::from_slice::<Value>(&statement) else {
            continue;
        };
        // A statement about another image (replayed from another tag) is not this
        // image's provenance, however well signed.
        if !is_provenance_of(&statement, digest) {
            other_image = true;
            continue;
        }
        return Ok(Some(FoundProvenance {
            statement,
            from: if key.is_some() {
                "attestation signed by the key"
            } else {
                "attestation, signature not checked"
            },
        }));
    }
    if other_image && key.is_some() {
        return Err(Error::differs(format!(
            "the provenance attested for {digest} is about another image (its subject does not name {digest})"
        ))
        .with_hint("the registry holds an attestation of another image under this image's tag; do not trust it"));
    }
    if unsigned {
        return Err(Error::differs(format!(
            "the provenance attested for {digest} is not signed by this {} key",
            key.map_or("", |k| k.algorithm())
        ))
        .with_hint("give the public key of the builder that pushed the image, or leave out --key to rebuild without trusting the provenance"));
    }
    Ok(None)
}

async fn from_referrers(
    c: &RegistryClient,
    repository: &str,
    digest: &Digest,
) -> Result<Option<FoundProvenance>> {
    let index = match c.referrers_api(repository, digest).await? {
        Some(index) => Some(index),
        None => {
            c.get_manifest_if_any(
                repository,
                &crate::registry::referrers::fallback_tag(digest),
            )
            .await?
        }
    };
    let Some(index) = index.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
        return Ok(None);
    };
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    for entry in entries.into_iter().take(MAX_ENTRIES) {
        if entry["artifactType"] != crate::provenance::INTOTO_MEDIA_TYPE {
            continue;
        }
        let Some(d) = entry["digest"].as_str().and_then(Digest::parse) else {
            continue;
        };
        let bytes = match c.get_manifest(repository, &d.to_string()).await {
            Ok((bytes, _)) => bytes,
            Err(e) if e.class() == crate::error::Class::BadInput => continue,
            Err(e) => return Err(e),
        };
        let Ok(manifest) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let Some(blob) = manifest["layers"][0]["digest"]
            .as_str()
            .and_then(Digest::parse)
        else {
            continue;
        };
        let Some(doc) = small_blob(c, repository, &blob).await? else {
            continue;
        };
        if let Ok(statement) = serde_json::from_slice::<Value>(&doc) {
            if is_provenance_of(&statement, digest) {
                return Ok(Some(FoundProvenance {
                    statement,
                    from: "unsigned referrer",
                }));
            }
        }
    }
    Ok(None)
}
