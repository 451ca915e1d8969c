//! `build --sbom FILE`: an SPDX 2.3 JSON document listing every regular file of every
//! layer of the image — the base image's layers included — with its SHA-1 (which
//! SPDX 2.3 requires for files) and SHA-256 checksums.
//!
//! The layers are read back from the output layout after the build, each decompressed
//! and hashed in one streaming pass: memory holds one copy buffer and the list of
//! file names and checksums, never a layer or a file. Every field depends only on the
//! image's bytes, its name and the source date epoch, so the same build gives the
//! same document byte for byte (docs/provenance.md).

use crate::build::BuildResult;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Descriptor;
use crate::layout::Layout;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::rc::Rc;

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// The namespace every imgbuild SBOM lives under; `.invalid` (RFC 2606) because it
/// names documents, it does not locate them.
const NAMESPACE_PREFIX: &str = "https://imgbuild.invalid/spdx/";

/// One regular file (or hardlink to one) of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// The path in the layer, without `./` or `/` prefix.
    pub path: String,
    pub sha1: String,
    pub sha256: String,
}

/// The SPDX document for the image `result` built into `layout`.
pub fn sbom(
    layout: &Layout,
    result: &BuildResult,
    name: &str,
    epoch_rfc3339: &str,
) -> Result<Vec<u8>> {
    // Each distinct layer once (platforms often share layers), in image order.
    let mut seen = BTreeSet::new();
    let mut layers: Vec<(&Descriptor, bool, Vec<String>)> = Vec::new();
    for m in &result.manifests {
        for (i, l) in m.layers.iter().enumerate() {
            let platform = m.platform.to_string();
            if seen.insert(l.digest.clone()) {
                layers.push((l, i < m.base_layers, vec![platform]));
            } else if let Some(entry) = layers.iter_mut().find(|(d, _, _)| d.digest == l.digest) {
                if !entry.2.contains(&platform) {
                    entry.2.push(platform);
                }
            }
        }
    }

    let image_id = "SPDXRef-Image";
    let base_id = "SPDXRef-BaseImage";
    let mut files = Vec::new();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    let mut image_sha1s = Vec::new();
    let mut base_sha1s = Vec::new();
    for (layer, from_base, platforms) in &layers {
        let listed = layer_files(layout, layer)?;
        let short = &layer.digest.hex()[..16];
        for (n, f) in listed.into_iter().enumerate() {
            let id = format!("SPDXRef-File-{short}-{}", n + 1);
            let origin = if *from_base {
                "the base image's layer"
            } else {
                "layer"
            };
            files.push(json!({
                "SPDXID": id,
                "fileName": format!("./{}", f.path),
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
                "comment": format!("in {origin} {} ({})", layer.digest, platforms.join(", ")),
            }));
            relationships.push(json!({
                "spdxElementId": if *from_base { base_id } else { image_id },
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": id,
            }));
            if *from_base {
                base_sha1s.push(f.sha1);
            } else {
                image_sha1s.push(f.sha1);
            }
        }
    }

    let mut image = package(
        image_id,
        name,
        &result.digest,
        purl(result.inputs.repository.as_deref(), &result.digest),
        &image_sha1s,
    );
    image["primaryPackagePurpose"] = json!("CONTAINER");
    let mut packages = vec![image];
    if let Some((base_name, base_digest)) = &result.inputs.base {
        let registry = (!base_name.starts_with("oci:")).then_some(base_name.as_str());
        let mut base = package(
            base_id,
            base_name,
            base_digest,
            purl(registry, base_digest),
            &base_sha1s,
        );
        base["primaryPackagePurpose"] = json!("CONTAINER");
        packages.push(base);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "DESCENDANT_OF",
            "relatedSpdxElement": base_id,
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": base_id,
        }));
    }

    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{name}@{}", result.digest),
        "documentNamespace": format!("{NAMESPACE_PREFIX}sha256/{}", result.digest.hex()),
        "creationInfo": {
            "created": epoch_rfc3339,
            "creators": [format!("Tool: imgbuild-{}", env!("CARGO_PKG_VERSION"))],
            "comment": "created is the image's source date epoch, not the time of the build",
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc)
        .map_err(|e| Error::io("cannot encode the SBOM", io::Error::other(e)))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// An SPDX package for an image: its digest as a SHA-256 checksum, a purl when it has
/// a registry name, and the verification code over the files it contains.
fn package(id: &str, name: &str, digest: &Digest, purl: Option<String>, sha1s: &[String]) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": digest.to_string(),
        "downloadLocation": "NOASSERTION",
        "checksums": [{"algorithm": "SHA256", "checksumValue": digest.hex()}],
        "filesAnalyzed": !sha1s.is_empty(),
    });
    if !sha1s.is_empty() {
        p["packageVerificationCode"] =
            json!({"packageVerificationCodeValue": verification_code(sha1s)});
    }
    if let Some(purl) = purl {
        p["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }]);
    }
    p
}

/// SPDX 2.3 §7.9: SHA-1 over the files' sorted SHA-1 hex values, concatenated.
pub fn verification_code(sha1s: &[String]) -> String {
    let mut sorted: Vec<&String> = sha1s.iter().collect();
    sorted.sort();
    let mut h = Sha1::new();
    for s in sorted {
        h.update(s.as_bytes());
    }
    hex(&h.finalize())
}

/// `pkg:oci/NAME@sha256%3AHEX?repository_url=HOST/PATH` for a registry name
/// (host/path[:tag][@digest]); None for anything else.
fn purl(registry_name: Option<&str>, digest: &Digest) -> Option<String> {
    let name = registry_name?;
    let repo = match crate::reference::Reference::parse(name) {
        Ok(crate::reference::Reference::Registry(r)) => format!("{}/{}", r.registry, r.repository),
        _ => return None,
    };
    let last = repo
        .rsplit('/')
        .next()
        .unwrap_or(&repo)
        .to_ascii_lowercase();
    Some(format!(
        "pkg:oci/{last}@sha256%3A{}?repository_url={repo}",
        digest.hex()
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every regular file of one layer blob (hardlinks listed with their target's
/// checksums), in the layer's order; whiteouts, directories, symlinks and devices
/// are not files in SPDX's sense and are left out.
pub fn layer_files(layout: &Layout, layer: &Descriptor) -> Result<Vec<LayerFile>> {
    let path = layout.blob_path(&layer.digest);
    let failed = Rc::new(Cell::new(false));
    // Failing to read the blob file is an I/O error (exit 3); a blob the decoder or
    // the tar reader rejects is a corrupt layer, bad input (exit 2), as in `diff`.
    let bad = |e: io::Error| {
        if failed.get() {
            Error::io(
                format!(
                    "cannot read layer {} ({}) for the SBOM",
                    layer.digest,
                    path.display()
                ),
                e,
            )
        } else {
            Error::input(format!(
                "layer {} ({}) is not a valid {} layer: {e}",
                layer.digest,
                path.display(),
                layer.media_type
            ))
            .with_hint("the layout is corrupt: build into a fresh --out, or re-pull the base image")
        }
    };
    let file = std::fs::File::open(&path).map_err(|e| {
        failed.set(true);
        bad(e)
    })?;
    let file = FailureFlag {
        inner: file,
        failed: failed.clone(),
    };
    let reader = io::BufReader::new(file);
    let mt = layer.media_type.as_str();
    let decoded: Box<dyn Read> = if mt.ends_with("gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if mt.ends_with("zstd") {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(bad)?)
    } else if mt.ends_with(".tar") {
        Box::new(reader)
    } else {
        return Err(Error::input(format!(
            "layer {} has media type {mt:?}, which imgbuild cannot read to list its files",
            layer.digest
        ))
        .with_hint("build without --sbom, or use a base image with tar, gzip or zstd layers"));
    };
    let mut archive = tar::Archive::new(decoded);
    let mut files: Vec<LayerFile> = Vec::new();
    let mut by_path: BTreeMap<String, usize> = BTreeMap::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path_bytes().into_owned();
        let path = normalize(&String::from_utf8_lossy(&raw));
        let kind = entry.header().entry_type();
        let base_name = path.rsplit('/').next().unwrap_or("");
        if base_name.starts_with(crate::recipe::WHITEOUT_PREFIX) {
            continue;
        }
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut w = DualHasher::default();
            io::copy(&mut entry, &mut w).map_err(bad)?;
            let (sha1, sha256) = w.finish();
            by_path.insert(path.clone(), files.len());
            files.push(LayerFile { path, sha1, sha256 });
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| normalize(&String::from_utf8_lossy(&t)))
                .unwrap_or_default();
            if let Some(&i) = by_path.get(&target) {
                let f = files[i].clone();
                by_path.insert(path.clone(), files.len());
                files.push(LayerFile { path, ..f });
            }
        }
    }
    Ok(files)
}

/// A reader that remembers whether its source (the blob file) failed, so that an
/// error surfacing through the decoder can be told apart from a corrupt blob.
struct FailureFlag<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for FailureFlag<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed.set(true))
    }
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// SHA-1 and SHA-256 in one pass.
#[derive(Default)]
struct DualHasher {
    sha1: Sha1,
    sha256: Sha256,
}

impl DualHasher {
    fn finish(self) -> (String, String) {
        (hex(&self.sha1.finalize()), hex(&self.sha256.finalize()))
    }
}

impl Write for DualHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha1.update(buf);
        self.sha256.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_layer_is_bad_input_naming_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        // A gzip header, then bytes that are not deflate data.
        let mut blob = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        blob.extend(std::iter::repeat_n(0xffu8, 64));
        let digest = layout.write_blob(&blob).unwrap();
        let layer = Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            digest.clone(),
            blob.len() as u64,
        );
        let e = layer_files(&layout, &layer).unwrap_err();
        assert_eq!(e.exit_code() as i32, 2, "{}", e.message());
        assert!(e.message().contains(&digest.to_string()), "{}", e.message());
        // A missing blob is still an I/O failure.
        std::fs::remove_file(layout.blob_path(&digest)).unwrap();
        let e = layer_files(&layout, &layer).unwrap_err();
        assert_eq!(e.exit_code() as i32, 3, "{}", e.message());
    }

    #[test]
    fn verification_code_sorts_before_hashing() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let one = verification_code(&[a.clone(), b.clone()]);
        assert_eq!(one, verification_code(&[b.clone(), a.clone()]));
        let mut h = Sha1::new();
        h.update(format!("{a}{b}").as_bytes());
        assert_eq!(one, hex(&h.finalize()));
    }

    #[test]
    fn purl_names_the_repository_and_escapes_the_digest_colon() {
        let d = Digest::of(b"x");
        assert_eq!(
            purl(Some("127.0.0.1:5000/acme/base:1.0"), &d).as_deref(),
            Some(
                format!(
                    "pkg:oci/base@sha256%3A{}?repository_url=127.0.0.1:5000/acme/base",
                    d.hex()
                )
                .as_str()
            )
        );
        assert_eq!(purl(None, &d), None);
    }

    #[test]
    fn dual_hasher_matches_known_digests() {
        let mut w = DualHasher::default();
        w.write_all(b"abc").unwrap();
        let (sha1, sha256) = w.finish();
        assert_eq!(sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
