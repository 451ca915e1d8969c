//! Signing keys and public keys, read from PEM files.
//!
//! Private keys: Ed25519 or ECDSA P-256 in PKCS#8 PEM (`PRIVATE KEY`, what `openssl
//! genpkey` writes), P-256 in SEC1 PEM (`EC PRIVATE KEY`, what `openssl ecparam
//! -genkey` writes), and cosign's encrypted key files (`ENCRYPTED SIGSTORE PRIVATE
//! KEY` or the older `ENCRYPTED COSIGN PRIVATE KEY`, from `cosign generate-key-pair`):
//! a JSON document holding a PKCS#8 key sealed with NaCl secretbox under a key derived
//! from the passphrase by scrypt. Public keys: SubjectPublicKeyInfo PEM (`PUBLIC KEY`).
//!
//! The cryptography is RustCrypto's (`ed25519-dalek`, `p256`, `scrypt`,
//! `crypto_secretbox`); nothing here is a primitive of our own. Errors name the file
//! and what is wrong with it, never the key material or the passphrase.

use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;

use crate::error::{Error, Result};

/// A private key imgbuild signs with.
pub struct SigningKey {
    inner: Private,
}

enum Private {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A public key signatures are checked with.
#[derive(Clone)]
pub struct PublicKey {
    inner: Public,
}

#[derive(Clone)]
enum Public {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// The largest key file read (a PEM key is a few hundred bytes).
const MAX_KEY_FILE: u64 = 64 * 1024;

fn read_pem(path: &Path, what: &str) -> Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| Error::input(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(|_| not_a_key(path, what))?;
    Ok(text)
}

fn not_a_key(path: &Path, what: &str) -> Error {
    Error::input(format!("{} is not a PEM {what}", path.display())).with_hint(
        "give a PEM key: `openssl genpkey -algorithm ed25519 -out cosign.key` makes one (docs/signing.md)",
    )
}

/// The label of the first PEM block in `text` (`-----BEGIN LABEL-----`).
fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    Some(&rest[..rest.find("-----")?])
}

impl SigningKey {
    /// Reads the private key in `path`. `passphrase` is asked for only when the file
    /// is an encrypted cosign key (cosign's `COSIGN_PASSWORD`).
    pub fn load(path: &Path, passphrase: impl FnOnce() -> Option<String>) -> Result<SigningKey> {
        let text = read_pem(path, "private key")?;
        let inner = match pem_label(&text) {
            Some("PRIVATE KEY") => {
                let der = pem_body(&text).ok_or_else(|| not_a_key(path, "private key"))?;
                from_pkcs8(&der, path)?
            }
            Some("EC PRIVATE KEY") => p256::SecretKey::from_sec1_pem(&text)
                .map(|k| Private::P256(k.into()))
                .map_err(|_| {
                    Error::input(format!(
                        "{}: an EC private key, but not on the P-256 curve",
                        path.display()
                    ))
                    .with_hint("imgbuild signs with Ed25519 or ECDSA P-256 (prime256v1) keys")
                })?,
            Some("ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY") => {
                let sealed = pem_body(&text).ok_or_else(|| not_a_key(path, "private key"))?;
                let pass = passphrase().ok_or_else(|| {
                    Error::input(format!(
                        "{} is an encrypted cosign key, and COSIGN_PASSWORD is not set",
                        path.display()
                    ))
                    .with_hint("set COSIGN_PASSWORD to the key's passphrase (empty for none)")
                })?;
                let der = unseal(&sealed, pass.as_bytes(), path)?;
                from_pkcs8(&der, path)?
            }
            Some("ENCRYPTED PRIVATE KEY") => {
                return Err(Error::input(format!(
                    "{} is a passphrase-protected PKCS#8 key, which imgbuild does not read",
                    path.display()
                ))
                .with_hint(
                    "decrypt it (`openssl pkey -in KEY -out plain.key`), or use a cosign key with COSIGN_PASSWORD",
                ))
            }
            Some("PUBLIC KEY") => {
                return Err(Error::input(format!(
                    "{} is a public key; signing needs the private key",
                    path.display()
                ))
                .with_hint("give the private key file (cosign.key), and the public key to verify-signature"))
            }
            _ => return Err(not_a_key(path, "private key")),
        };
        Ok(SigningKey { inner })
    }

    /// The signature of `message`: Ed25519 over the bytes, or ECDSA P-256 over their
    /// SHA-256 (ASN.1 DER), as cosign makes them. Both are deterministic.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.inner {
            Private::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            Private::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
        }
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            inner: match &self.inner {
                Private::Ed25519(k) => Public::Ed25519(k.verifying_key()),
                Private::P256(k) => Public::P256(*k.verifying_key()),
            },
        }
    }
}

impl PublicKey {
    /// Reads a public key (`PUBLIC KEY` PEM) from `path`.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = read_pem(path, "public key")?;
        match pem_label(&text) {
            Some("PUBLIC KEY") => {}
            Some(label) if label.contains("PRIVATE KEY") => {
                return Err(Error::input(format!(
                    "{} is a private key; give its public key",
                    path.display()
                ))
                .with_hint("`openssl pkey -in KEY -pubout -out cosign.pub` writes it"))
            }
            _ => return Err(not_a_key(path, "public key")),
        }
        let inner = if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(&text) {
            Public::Ed25519(k)
        } else if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(&text) {
            Public::P256(k)
        } else {
            return Err(unsupported(path));
        };
        Ok(PublicKey { inner })
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            Public::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
            Public::P256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
        }
    }

    /// The key as `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        let pem = match &self.inner {
            Public::Ed25519(k) => k.to_public_key_pem(Default::default()),
            Public::P256(k) => {
                p256::pkcs8::EncodePublicKey::to_public_key_pem(k, Default::default())
            }
        };
        pem.unwrap_or_default()
    }

    /// `ed25519` or `ecdsa-p256`, as messages name the algorithm.
    pub fn algorithm(&self) -> &'static str {
        match &self.inner {
            Public::Ed25519(_) => "ed25519",
            Public::P256(_) => "ecdsa-p256",
        }
    }
}

fn unsupported(path: &Path) -> Error {
    Error::input(format!(
        "{}: the key's algorithm is not supported",
        path.display()
    ))
    .with_hint("imgbuild signs and verifies with Ed25519 and ECDSA P-256 keys (docs/signing.md)")
}

fn from_pkcs8(der: &[u8], path: &Path) -> Result<Private> {
    if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
        return Ok(Private::Ed25519(k));
    }
    if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
        return Ok(Private::P256(k));
    }
    Err(unsupported(path))
}

/// The base64 body of the first PEM block of `text`, decoded.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN ")?;
    let after = &text[start..];
    let body_start = after.find('\n')? + 1;
    let body_end = after.find("-----END ")?;
    let body: String = after
        .get(body_start..body_end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// cosign's sealed key: scrypt parameters, a secretbox nonce and the ciphertext.
#[derive(Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::Deserialize as _;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// The largest scrypt cost read: N up to 2^16 (cosign writes 2^15) with cosign's r = 8
/// and p = 1, so deriving a key takes at most 64 MiB and well under a second. Larger
/// ones are refused, so that a key file from a stranger cannot make imgbuild spend
/// minutes or gigabytes.
const MAX_SCRYPT_LOG_N: u8 = 16;

fn unseal(sealed: &[u8], passphrase: &[u8], path: &Path) -> Result<Vec<u8>> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let bad = |what: &str| {
        Error::input(format!(
            "{} is not a valid encrypted cosign key: {what}",
            path.display()
        ))
    };
    let s: Sealed = serde_json::from_slice(sealed).map_err(|_| bad("its JSON is malformed"))?;
    if s.kdf.name != "scrypt" || s.cipher.name != "nacl/secretbox" {
        return Err(bad(&format!(
            "kdf {:?} and cipher {:?} (expected scrypt and nacl/secretbox)",
            s.kdf.name, s.cipher.name
        )));
    }
    let log_n = match s.kdf.params.n {
        n if n.is_power_of_two() && n > 1 => n.trailing_zeros() as u8,
        _ => return Err(bad("scrypt N is not a power of two")),
    };
    if log_n > MAX_SCRYPT_LOG_N || s.kdf.params.r != 8 || s.kdf.params.p != 1 {
        return Err(bad("its scrypt parameters are larger than any cosign uses"));
    }
    let params = scrypt::Params::new(log_n, s.kdf.params.r, s.kdf.params.p, 32)
        .map_err(|_| bad("its scrypt parameters are invalid"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(passphrase, &s.kdf.salt, &params, &mut key)
        .map_err(|_| bad("its scrypt parameters are invalid"))?;
    if s.cipher.nonce.len() != 24 {
        return Err(bad("its nonce is not 24 bytes"));
    }
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    let nonce = crypto_secretbox::Nonce::from_slice(&s.cipher.nonce);
    cipher.decrypt(nonce, s.ciphertext.as_slice()).map_err(|_| {
        Error::input(format!(
            "cannot decrypt {}: wrong passphrase (COSIGN_PASSWORD)",
            path.display()
        ))
        .with_hint("set COSIGN_PASSWORD to the passphrase the key was made with")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_label_and_body() {
        let text = "junk\n-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n";
        assert_eq!(pem_label(text), Some("PUBLIC KEY"));
        assert_eq!(pem_body(text), Some(vec![0, 1, 2, 3]));
        assert_eq!(pem_label("no pem here"), None);
    }

    fn sealed(n: u64, r: u32, p: u32) -> Vec<u8> {
        format!(r#"{{"kdf":{{"name":"scrypt","params":{{"N":{n},"r":{r},"p":{p}}},"salt":"AA=="}},"cipher":{{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},"ciphertext":"AA=="}}"#).into_bytes()
    }

    #[test]
    fn a_sealed_key_costlier_than_cosigns_is_refused_before_deriving() {
        for (n, r, p) in [
            (1u64 << 40, 8, 1),
            (1 << 17, 8, 1),
            (1 << 15, 16, 1),
            (1 << 15, 8, 2),
        ] {
            let e = unseal(&sealed(n, r, p), b"pw", Path::new("k")).unwrap_err();
            assert!(
                e.to_string().contains("larger than any cosign uses"),
                "{n} {r} {p}: {e}"
            );
        }
        // cosign's own cost, and the largest read, are derived (and then fail to open
        // this dummy ciphertext: a wrong passphrase).
        for n in [1u64 << 15, 1 << 16] {
            let e = unseal(&sealed(n, 8, 1), b"pw", Path::new("k")).unwrap_err();
            assert!(e.to_string().contains("wrong passphrase"), "{n}: {e}");
        }
    }
}
