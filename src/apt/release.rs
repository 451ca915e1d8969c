//! A repository's `Release` file: its OpenPGP signature checked against the
//! `signed-by` keyring (rpgp), and the sha256 and size of every index it lists.
//!
//! Only the signed text is ever read: `InRelease` is parsed from what the signature
//! covers, not from the file around it.

use super::control;
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey, StandaloneSignature};
use pgp::packet::Signature;
use pgp::types::PublicKeyTrait;

/// The public keys of a `signed-by` file.
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads armored (`-----BEGIN PGP PUBLIC KEY BLOCK-----`) or binary keys. The
    /// keyring is what the recipe trusts: its primary keys are taken as they are
    /// (certifications by other keys, expiry and revocation are not looked at, so an
    /// old snapshot stays lockable); a subkey only when the primary key's binding
    /// signature on it verifies. A key this library cannot read is left out.
    pub fn parse(bytes: &[u8]) -> Result<Keyring, String> {
        let armored = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN"));
        let parsed: Vec<pgp::errors::Result<SignedPublicKey>> = if armored {
            let (keys, _) = SignedPublicKey::from_armor_many(bytes).map_err(|e| e.to_string())?;
            keys.collect()
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| e.to_string())?
                .collect()
        };
        let mut keys = Vec::new();
        for mut key in parsed.into_iter().flatten() {
            let primary = key.primary_key.clone();
            key.public_subkeys.retain(|s| s.verify(&primary).is_ok());
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("it holds no usable OpenPGP public key".to_string());
        }
        Ok(Keyring { keys })
    }

    /// Whether one of `signatures` over `data` verifies with a key of the ring (a
    /// primary key or a subkey).
    fn verifies(&self, signatures: &[&Signature], data: &[u8]) -> bool {
        fn with(key: &impl PublicKeyTrait, signatures: &[&Signature], data: &[u8]) -> bool {
            signatures.iter().any(|s| s.verify(key, data).is_ok())
        }
        self.keys.iter().any(|k| {
            with(&k.primary_key, signatures, data)
                || k.public_subkeys
                    .iter()
                    .any(|s| with(&s.key, signatures, data))
        })
    }
}

/// Verifies an `InRelease` file; returns the text its signature covers.
pub fn verify_inline(bytes: &[u8], keyring: &Keyring) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "InRelease is not UTF-8 text".to_string())?;
    let (message, _) = CleartextSignedMessage::from_string(text)
        .map_err(|e| format!("InRelease is not an OpenPGP signed message ({e})"))?;
    let text = message.signed_text();
    let signatures: Vec<&Signature> = message.signatures().iter().map(|s| &s.signature).collect();
    if !keyring.verifies(&signatures, text.as_bytes()) {
        return Err("InRelease's signature does not verify with any key of the keyring".into());
    }
    Ok(text.replace("\r\n", "\n"))
}

/// Verifies `Release` against its detached signature `Release.gpg`.
pub fn verify_detached(release: &[u8], signature: &[u8], keyring: &Keyring) -> Result<(), String> {
    let armored = signature.starts_with(b"-----BEGIN");
    let sigs: Vec<StandaloneSignature> = if armored {
        let (sigs, _) =
            StandaloneSignature::from_armor_many(signature).map_err(|e| e.to_string())?;
        sigs.filter_map(|s| s.ok()).collect()
    } else {
        StandaloneSignature::from_bytes_many(signature)
            .map_err(|e| e.to_string())?
            .filter_map(|s| s.ok())
            .collect()
    };
    if sigs.is_empty() {
        return Err("Release.gpg holds no OpenPGP signature".into());
    }
    let signatures: Vec<&Signature> = sigs.iter().map(|s| &s.signature).collect();
    if !keyring.verifies(&signatures, release) {
        return Err("Release.gpg's signature does not verify with any key of the keyring".into());
    }
    Ok(())
}

/// One index a Release file lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The `SHA256` list of a (verified) Release text, which must be the Release of
/// `suite` (its `Suite` or `Codename`): a validly signed Release of another suite is
/// refused, so that a mirror cannot answer with one.
pub fn index_files(text: &str, suite: &str) -> Result<Vec<IndexFile>, String> {
    let paragraphs = control::parse(text)?;
    let Some(release) = paragraphs.first() else {
        return Err("the Release file is empty".into());
    };
    let names = [release.get("Suite"), release.get("Codename")];
    if names.iter().all(Option::is_none) {
        // Such a Release could be replayed under any suite name.
        return Err(format!(
            "the signed Release names no Suite or Codename, so it cannot be shown to be {suite}'s"
        ));
    }
    if !names.contains(&Some(suite)) {
        return Err(format!(
            "the signed Release is for suite {} (codename {}), not {suite}",
            names[0].unwrap_or("-"),
            names[1].unwrap_or("-")
        ));
    }
    let Some(list) = release.get("SHA256") else {
        return Err("the Release file has no SHA256 list".into());
    };
    let mut out = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [sha256, size, path] = parts[..] else {
            return Err(format!("bad SHA256 line {line:?}"));
        };
        let size = size
            .parse()
            .map_err(|_| format!("bad size in SHA256 line {line:?}"))?;
        let sha256 = sha256.to_ascii_lowercase();
        if !crate::digest::is_sha256_hex(&sha256) {
            return Err(format!("bad sha256 in line {line:?}"));
        }
        out.push(IndexFile {
            path: path.to_string(),
            size,
            sha256,
        });
    }
    Ok(out)
}
