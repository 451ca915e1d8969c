//! `build --sbom FILE`: an SPDX 2.3 JSON document listing every regular file of every
//! layer of the image — the base image's layers included — with its SHA-1 (which
//! SPDX 2.3 requires for files) and SHA-256 checksums.
//!
//! The layers are read back from the output layout after the build, each decompressed
//! and hashed in one streaming pass, and the document is streamed (`write_sbom`):
//! memory holds one copy buffer, each file's SHA-1 (for the verification code) and
//! one layer's hardlink index — never a layer, a file, or the document. Every field depends only on the
//! image's bytes, its name and the source date epoch, so the same build gives the
//! same document byte for byte (docs/provenance.md).

use crate::build::BuildResult;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Descriptor;
use crate::layout::Layout;
use crate::tar_read::{Blob, Compression, Fault, ReadError};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

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

/// The SPDX document for the image `result` built into `layout`, in memory. For a
/// large image prefer `write_sbom`, whose memory does not grow with the document.
pub fn sbom(
    layout: &Layout,
    result: &BuildResult,
    name: &str,
    epoch_rfc3339: &str,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    write_sbom(layout, result, name, epoch_rfc3339, &mut bytes)?;
    Ok(bytes)
}

/// Placeholders the streamed arrays replace in the document's skeleton.
const FILES_HERE: &str = "\u{1}imgbuild-sbom-files";
const RELATIONSHIPS_HERE: &str = "\u{1}imgbuild-sbom-relationships";

/// Streams the SPDX document for the image `result` built into `layout` to `out`.
///
/// The per-file parts (`files`, and the `CONTAINS` relationships) are streamed: the
/// files are written to a temporary file as the layers are read (the skeleton around
/// them can only be printed once the packages' verification codes, over every file,
/// are known), and the relationships are generated from per-layer counts. Memory
/// holds, per file, only its SHA-1 (20 bytes, for the verification code) and, within
/// one layer, a path index for hardlinks. The bytes are exactly those of the whole
/// document pretty-printed by serde_json: the skeleton (everything but the per-file
/// arrays) is printed by serde_json with placeholders, and each streamed item is
/// printed by serde_json at the placeholder's indentation.
pub fn write_sbom(
    layout: &Layout,
    result: &BuildResult,
    name: &str,
    epoch_rfc3339: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let layers = distinct_layers(result);
    let spilled = spill_files(layout, &layers)?;
    let skeleton = skeleton(result, name, epoch_rfc3339, &spilled)?;
    write_document(&skeleton, spilled, out)
}

const IMAGE_ID: &str = "SPDXRef-Image";
const BASE_ID: &str = "SPDXRef-BaseImage";

/// Each distinct layer once (platforms often share layers), in image order: the
/// layer, whether it comes from the base image, and the platforms that use it.
fn distinct_layers(result: &BuildResult) -> Vec<(&Descriptor, bool, Vec<String>)> {
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
    layers
}

/// The `files` items, written unindented to a temporary file, and what the rest of
/// the document needs of them.
struct Spilled {
    file: std::fs::File,
    files_written: u64,
    /// Per layer: the short digest its file ids use, its file count, whether from the base.
    counts: Vec<(String, usize, bool)>,
    image_sha1s: Vec<[u8; 20]>,
    base_sha1s: Vec<[u8; 20]>,
}

fn spill_err(e: io::Error) -> Error {
    Error::io("cannot write the SBOM's temporary file", e)
}

/// Reads every layer's files, spilling their `files` items.
fn spill_files(layout: &Layout, layers: &[(&Descriptor, bool, Vec<String>)]) -> Result<Spilled> {
    let mut spill = io::BufWriter::new(tempfile::tempfile().map_err(spill_err)?);
    let mut files_written = 0u64;
    let mut counts: Vec<(String, usize, bool)> = Vec::new();
    let mut image_sha1s: Vec<[u8; 20]> = Vec::new();
    let mut base_sha1s: Vec<[u8; 20]> = Vec::new();
    for (layer, from_base, platforms) in layers {
        let short = layer.digest.hex()[..16].to_string();
        let origin = if *from_base {
            "the base image's layer"
        } else {
            "layer"
        };
        let comment = format!("in {origin} {} ({})", layer.digest, platforms.join(", "));
        let mut n = 0usize;
        let mut failed = None;
        for_each_layer_file(layout, layer, |f| {
            n += 1;
            let item = json!({
                "SPDXID": format!("SPDXRef-File-{short}-{n}"),
                "fileName": format!("./{}", f.path),
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
                "comment": comment,
            });
            let sha1 = sha1_bytes(&f.sha1);
            if *from_base {
                base_sha1s.push(sha1);
            } else {
                image_sha1s.push(sha1);
            }
            // The indentation is known once the skeleton is printed; items are
            // spilled unindented, one per line group, and indented when copied.
            let written = (|| -> io::Result<()> {
                if files_written > 0 {
                    spill.write_all(b",\n")?;
                }
                serde_json::to_writer_pretty(&mut spill, &item).map_err(io::Error::other)?;
                Ok(())
            })();
            files_written += 1;
            if let Err(e) = written {
                failed.get_or_insert(e);
            }
        })?;
        if let Some(e) = failed {
            return Err(spill_err(e));
        }
        counts.push((short, n, *from_base));
    }
    let file = spill.into_inner().map_err(|e| spill_err(e.into_error()))?;
    Ok(Spilled {
        file,
        files_written,
        counts,
        image_sha1s,
        base_sha1s,
    })
}

/// The document pretty-printed by serde_json, with placeholders for the streamed
/// arrays.
fn skeleton(
    result: &BuildResult,
    name: &str,
    epoch_rfc3339: &str,
    spilled: &Spilled,
) -> Result<String> {
    let mut image = package(
        IMAGE_ID,
        name,
        &result.digest,
        purl(result.inputs.repository.as_deref(), &result.digest),
        &spilled.image_sha1s,
    );
    image["primaryPackagePurpose"] = json!("CONTAINER");
    let mut packages = vec![image];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": IMAGE_ID,
    })];
    if spilled.files_written > 0 {
        relationships.push(json!(RELATIONSHIPS_HERE));
    }
    if let Some((base_name, base_digest)) = &result.inputs.base {
        let registry = (!base_name.starts_with("oci:")).then_some(base_name.as_str());
        let mut base = package(
            BASE_ID,
            base_name,
            base_digest,
            purl(registry, base_digest),
            &spilled.base_sha1s,
        );
        base["primaryPackagePurpose"] = json!("CONTAINER");
        packages.push(base);
        relationships.push(json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "DESCENDANT_OF",
            "relatedSpdxElement": BASE_ID,
        }));
        relationships.push(json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": BASE_ID,
        }));
    }
    for (i, p) in result.inputs.packages.iter().enumerate() {
        let id = format!("SPDXRef-DebianPackage-{}", i + 1);
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            // The url is in sourceInfo: SPDX validators refuse some valid urls (an
            // address with a port) as a download location.
            "downloadLocation": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256}],
            "filesAnalyzed": false,
            "sourceInfo": format!("{} from the apt source {}", p.url(), p.source),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl(),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let files: Vec<Value> = if spilled.files_written > 0 {
        vec![json!(FILES_HERE)]
    } else {
        Vec::new()
    };

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
    serde_json::to_string_pretty(&doc)
        .map_err(|e| Error::io("cannot encode the SBOM", io::Error::other(e)))
}

fn write_err(e: io::Error) -> Error {
    Error::io("cannot write the SBOM", e)
}

/// Prints `skeleton` to `out`, each placeholder line replaced by its streamed items
/// at the placeholder's indentation.
fn write_document(skeleton: &str, mut spilled: Spilled, out: &mut dyn Write) -> Result<()> {
    let files_line = placeholder_line(FILES_HERE);
    let rels_line = placeholder_line(RELATIONSHIPS_HERE);
    for line in skeleton.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let trimmed = body.trim_start();
        let indent = &body[..body.len() - trimmed.len()];
        let rest = |placeholder: &str| {
            trimmed
                .strip_prefix(placeholder)
                .filter(|r| r.is_empty() || *r == ",")
                .is_some()
        };
        let placeholder = if rest(&files_line) {
            io::Seek::rewind(&mut spilled.file).map_err(spill_err)?;
            copy_indented(io::BufReader::new(&mut spilled.file), indent, out).map_err(write_err)?;
            &files_line
        } else if rest(&rels_line) {
            write_relationships(&spilled.counts, indent, out)?;
            &rels_line
        } else {
            out.write_all(line.as_bytes()).map_err(write_err)?;
            continue;
        };
        // The placeholder line's own ending (",\n" or "\n") follows the items.
        out.write_all(&body.as_bytes()[indent.len() + placeholder.len()..])
            .map_err(write_err)?;
        out.write_all(&line.as_bytes()[body.len()..])
            .map_err(write_err)?;
    }
    out.write_all(b"\n").map_err(write_err)?;
    Ok(())
}

/// The `CONTAINS` relationship of every file, generated from the per-layer counts.
fn write_relationships(
    counts: &[(String, usize, bool)],
    indent: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let mut first = true;
    for (short, n, from_base) in counts {
        for i in 1..=*n {
            let item = json!({
                "spdxElementId": if *from_base { BASE_ID } else { IMAGE_ID },
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": format!("SPDXRef-File-{short}-{i}"),
            });
            let text =
                serde_json::to_string_pretty(&item).map_err(|e| write_err(io::Error::other(e)))?;
            if !first {
                out.write_all(b",\n").map_err(write_err)?;
            }
            first = false;
            copy_indented(text.as_bytes(), indent, out).map_err(write_err)?;
        }
    }
    Ok(())
}

/// How serde_json prints a placeholder string as an array item (without the comma
/// that follows it when it is not last).
fn placeholder_line(placeholder: &str) -> String {
    serde_json::to_string(placeholder).unwrap_or_default()
}

/// Copies pretty-printed JSON from `from` to `out` with `indent` before every line.
fn copy_indented(from: impl io::BufRead, indent: &str, out: &mut dyn Write) -> io::Result<()> {
    let mut first = true;
    for line in from.split(b'\n') {
        let line = line?;
        if !first {
            out.write_all(b"\n")?;
        }
        first = false;
        out.write_all(indent.as_bytes())?;
        out.write_all(&line)?;
    }
    Ok(())
}

fn sha1_bytes(hex: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    out
}

/// An SPDX package for an image: its digest as a SHA-256 checksum, a purl when it has
/// a registry name, and the verification code over the files it contains.
fn package(
    id: &str,
    name: &str,
    digest: &Digest,
    purl: Option<String>,
    sha1s: &[[u8; 20]],
) -> Value {
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

/// SPDX 2.3 §7.9: SHA-1 over the files' sorted SHA-1 hex values, concatenated
/// (sorting the raw bytes gives the order of their lowercase hex).
pub fn verification_code(sha1s: &[[u8; 20]]) -> String {
    let mut sorted: Vec<&[u8; 20]> = sha1s.iter().collect();
    sorted.sort();
    let mut h = Sha1::new();
    for s in sorted {
        h.update(hex(s).as_bytes());
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
    let mut files = Vec::new();
    for_each_layer_file(layout, layer, |f| files.push(f))?;
    Ok(files)
}

/// Calls `each` with every file `layer_files` lists, in order, holding none of them:
/// only, for hardlinks, the checksums of the layer's files by path.
pub fn for_each_layer_file(
    layout: &Layout,
    layer: &Descriptor,
    mut each: impl FnMut(LayerFile),
) -> Result<()> {
    let path = layout.blob_path(&layer.digest);
    // Failing to read the blob file is an I/O error (exit 3); a blob the decoder or
    // the tar reader rejects is a corrupt layer, bad input (exit 2), as in `diff`.
    let bad = |e: ReadError| match e.fault {
        Fault::Source => Error::io(
            format!(
                "cannot read layer {} ({}) for the SBOM",
                layer.digest,
                path.display()
            ),
            e.error,
        )
        .with_path(&path),
        Fault::Corrupt => Error::input(format!(
            "layer {} ({}) is not a valid {} layer: {}",
            layer.digest,
            path.display(),
            layer.media_type,
            e.error
        ))
        .with_path(&path)
        .with_source(e)
        .with_hint("the layout is corrupt: build into a fresh --out, or re-pull the base image"),
    };
    let mt = layer.media_type.as_str();
    let Some(compression) = Compression::of_media_type(mt) else {
        return Err(Error::input(format!(
            "layer {} has media type {mt:?}, which imgbuild cannot read to list its files",
            layer.digest
        ))
        .with_hint("build without --sbom, or use a base image with tar, gzip or zstd layers"));
    };
    let file = std::fs::File::open(&path).map_err(|error| {
        bad(ReadError {
            fault: Fault::Source,
            entry: None,
            error,
        })
    })?;
    let mut by_path: BTreeMap<String, (String, String)> = BTreeMap::new();
    Blob::open(file, Some(compression), false)
        .and_then(|blob| {
            blob.walk(|_, entry| {
                let raw = entry.path_bytes().into_owned();
                let path = normalize(&String::from_utf8_lossy(&raw));
                let kind = entry.header().entry_type();
                let base_name = path.rsplit('/').next().unwrap_or("");
                if base_name.starts_with(crate::recipe::WHITEOUT_PREFIX) {
                    return Ok(());
                }
                if kind.is_file() || kind == tar::EntryType::Continuous {
                    let mut w = DualHasher::default();
                    io::copy(entry, &mut w)?;
                    let (sha1, sha256) = w.finish();
                    by_path.insert(path.clone(), (sha1.clone(), sha256.clone()));
                    each(LayerFile { path, sha1, sha256 });
                } else if kind.is_hard_link() {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| normalize(&String::from_utf8_lossy(&t)))
                        .unwrap_or_default();
                    if let Some((sha1, sha256)) = by_path.get(&target).cloned() {
                        by_path.insert(path.clone(), (sha1.clone(), sha256.clone()));
                        each(LayerFile { path, sha1, sha256 });
                    }
                }
                Ok(())
            })
        })
        .map_err(bad)?;
    Ok(())
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
        let one = verification_code(&[sha1_bytes(&a), sha1_bytes(&b)]);
        assert_eq!(one, verification_code(&[sha1_bytes(&b), sha1_bytes(&a)]));
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
