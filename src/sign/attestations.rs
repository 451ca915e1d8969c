//! Reading an image's provenance back from its registry, for `verify`: from the
//! signed attestation image (`sha256-<hex>.att`, its DSSE signature checked when a
//! key is given), else — without a key — from the unsigned referrer that
//! `--provenance` attaches (the referrers API, or the `sha256-<hex>` tag schema).

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
    /// `signed attestation` or `unsigned referrer`.
    pub from: &'static str,
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
    for layer in cosign::existing_layers(existing.as_deref()) {
        if layer["annotations"][cosign::PREDICATE_TYPE_ANNOTATION]
            != crate::provenance::PREDICATE_TYPE
        {
            continue;
        }
        let Some(blob) = layer["digest"].as_str().and_then(Digest::parse) else {
            continue;
        };
        let bytes = c.get_config(repository, &blob).await?;
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
        if let Ok(statement) = serde_json::from_slice(&statement) {
            return Ok(Some(FoundProvenance {
                statement,
                from: "signed attestation",
            }));
        }
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
    for entry in entries {
        if entry["artifactType"] != crate::provenance::INTOTO_MEDIA_TYPE {
            continue;
        }
        let Some(d) = entry["digest"].as_str() else {
            continue;
        };
        let (bytes, _) = c.get_manifest(repository, d).await?;
        let Ok(manifest) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let Some(blob) = manifest["layers"][0]["digest"]
            .as_str()
            .and_then(Digest::parse)
        else {
            continue;
        };
        let doc = c.get_config(repository, &blob).await?;
        if let Ok(statement) = serde_json::from_slice::<Value>(&doc) {
            if statement["predicateType"] == crate::provenance::PREDICATE_TYPE {
                return Ok(Some(FoundProvenance {
                    statement,
                    from: "unsigned referrer",
                }));
            }
        }
    }
    Ok(None)
}
