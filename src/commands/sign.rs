//! `imgbuild sign REF --key FILE` and `imgbuild verify-signature REF --key PUB`:
//! cosign's key-based signatures, made and checked without cosign (docs/signing.md).

use super::{note, registry_ref, write_report, Context};
use crate::cli::{SignArgs, VerifySignatureArgs};
use imgbuild::publish::Publisher;
use imgbuild::sign::{PublicKey, SignatureCheck, SigningKey};
use imgbuild::{Error, Result};
use std::path::Path;

/// Reads the signing key in `path`; an encrypted cosign key takes its passphrase from
/// `COSIGN_PASSWORD`, as cosign does. Exit 2 for anything but a usable key.
pub(super) fn signing_key(path: &Path) -> Result<SigningKey> {
    SigningKey::load(path, || std::env::var("COSIGN_PASSWORD").ok())
}

pub(super) fn run(args: SignArgs, ctx: &Context) -> Result<()> {
    let target = registry_ref(&args.reference, "REF")?;
    // The key first: a bad key or passphrase is exit 2 before the registry is asked.
    let key = signing_key(&args.key)?;
    let publisher = Publisher::connect(&target, &ctx.registry_options())?;
    let wanted = match (&target.digest, &target.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let root = publisher.resolve(&wanted)?;
    let signed = publisher.sign(&root, &key, &[])?;
    if args.json {
        write_report(
            &serde_json::json!({
                "reference": format!("{}@{}", publisher.target(), root.digest),
                "digest": root.digest.to_string(),
                "signatures": signed,
            })
            .to_string(),
        )
    } else {
        write_report(&root.digest.to_string())
    }
}

pub(super) fn verify(args: VerifySignatureArgs, ctx: &Context) -> Result<()> {
    let reference = registry_ref(&args.reference, "REF")?;
    let key = PublicKey::load(&args.key)?;
    let check = imgbuild::sign::verify_signature(&reference, &key, &ctx.registry_options())?;
    if args.json {
        write_report(
            &serde_json::json!({
                "reference": args.reference,
                "verified": check.verified(),
                "check": check,
            })
            .to_string(),
        )?;
    } else if check.verified() {
        write_report(&check.digest)?;
    }
    if !ctx.quiet {
        for (i, found) in check.signatures.iter().enumerate() {
            match &found.problem {
                None => note(&format!(
                    "signature {} of {}: valid ({} key)",
                    i + 1,
                    check.digest,
                    key.algorithm()
                )),
                Some(why) => note(&format!(
                    "signature {} of {}: invalid: {why}",
                    i + 1,
                    check.digest
                )),
            }
        }
    }
    require_verified(&check, &args.reference)
}

/// Exit 1 unless `check` found a valid signature, saying what was found.
pub(super) fn require_verified(check: &SignatureCheck, reference: &str) -> Result<()> {
    if check.verified() {
        return Ok(());
    }
    let found = match check.signatures.len() {
        0 => format!("no signature (no {} image)", check.tag),
        1 => "1 signature, which is not valid".to_string(),
        n => format!("{n} signatures, none of them valid"),
    };
    let mut why: Vec<String> = check
        .signatures
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.problem
                .as_ref()
                .map(|p| format!("signature {}: {p}", i + 1))
        })
        .collect();
    why.truncate(5);
    let detail = if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join("; "))
    };
    Err(Error::differs(format!(
        "{reference} ({}) is not signed by this key: {found}{detail}",
        check.digest
    ))
    .with_hint("sign it with `imgbuild sign REF --key FILE` (or `build --push --sign-key FILE`), or give the public key it was signed with"))
}
