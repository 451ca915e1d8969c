//! Reading images: one way for every kind of place an image can be.
//!
//! An [`ImageSource`] is "an image I can read", in the spirit of
//! go-containerregistry's `v1.Image`: small accessors that hand out the exact bytes
//! stored (never re-serialized), each checked against its digest. `inspect`, `diff`
//! and `verify` read through it; a new kind of place (a docker archive, a cache) is a
//! new implementation here, and every reader gets it.
//!
//! - [`LayoutSource`]: an OCI image layout on disk (`oci:DIR[:TAG|@digest]`).
//! - [`RegistrySource`]: a registry repository (`host/repo[:tag][@digest]`), over one
//!   connection made when it is opened.
//! - [`ArchiveSource`]: an `oci-archive:FILE` or `docker-archive:FILE` (imgbuild's,
//!   skopeo's or `docker save`'s), unpacked into a temporary layout when opened.
//!
//! [`copy_image`] copies an image (for some of its platforms) from any source into a
//! layout: that is how a registry base is pulled, and how a layout base's layers reach
//! `--out`.

mod archive;
mod copy;
mod layout;
mod registry;

pub use archive::ArchiveSource;
pub use copy::{copy_image, holds_image};
pub use layout::LayoutSource;
pub use registry::RegistrySource;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::reference::Reference;
use crate::registry::client;
use std::io::Read;

/// An image that can be read: its root object, the JSON objects below it, and its
/// blobs, each verified against its digest.
pub trait ImageSource: Send + Sync {
    /// How messages name the image: the reference as the user wrote it.
    fn name(&self) -> String;

    /// The object the reference names (a manifest or an index): its digest and its
    /// exact bytes.
    fn root(&self) -> Result<(Digest, Vec<u8>)>;

    /// A manifest or index (`is_manifest`) or a config blob, by digest: its exact
    /// bytes, checked against the digest.
    fn json_object(&self, digest: &Digest, is_manifest: bool) -> Result<Vec<u8>>;

    /// A blob's bytes as a stream. The bytes are checked against `digest` (and `size`,
    /// when given): a source that cannot check them before handing them out fails the
    /// read that ends the stream instead.
    fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + Send>>;

    /// Stores the blobs `wanted` (digest and size) in `into`, each named only once its
    /// bytes are checked against its digest; blobs `into` holds already are skipped.
    /// `stored` is told of each blob stored. This default reads them one by one
    /// through [`ImageSource::blob`]; a source that can do better (several
    /// downloads at once, a local copy) overrides it.
    fn copy_blobs(
        &self,
        wanted: &[(Digest, u64)],
        into: &Layout,
        stored: &(dyn Fn(&Digest, u64) + Sync),
    ) -> Result<()> {
        for (digest, size) in wanted {
            if into.has_blob(digest) {
                continue;
            }
            let mut reader = self.blob(digest, Some(*size))?;
            let mut writer = into.blob_writer()?;
            std::io::copy(&mut reader, &mut writer).map_err(|e| {
                let what = format!("cannot copy blob {digest} of {}", self.name());
                if e.kind() == std::io::ErrorKind::InvalidData {
                    Error::input(format!("{what}: {e}"))
                } else {
                    Error::io(what, e)
                }
            })?;
            writer.commit_as(into, digest)?;
            stored(digest, *size);
        }
        Ok(())
    }
}

/// Opens the image `reference` names. A registry is reached (TLS, credentials) with
/// `opts` now; a layout is opened and its reference resolved now, so that a missing
/// image is reported before any work.
pub fn open(reference: &Reference, opts: &client::Options) -> Result<Box<dyn ImageSource>> {
    Ok(match reference {
        Reference::Layout { .. } => Box::new(LayoutSource::open(reference)?),
        Reference::Registry(r) => Box::new(RegistrySource::open(r, opts)?),
        Reference::Archive { .. } => Box::new(ArchiveSource::open(reference)?),
    })
}

/// The tags of the repository `reference` names: a registry repository's, in the
/// registry's order (every page; `page_size` tags per request, or the registry's
/// choice), or a layout's (`oci:DIR`: the `org.opencontainers.image.ref.name`s of its
/// `index.json`), or an archive's (those of its layout, or a legacy docker archive's
/// `RepoTags`). The reference's tag or digest, if any, is not looked at.
pub fn tags(
    reference: &Reference,
    opts: &client::Options,
    page_size: Option<u32>,
) -> Result<Vec<String>> {
    match reference {
        Reference::Layout { dir, .. } => Layout::open(dir)?.tags(),
        Reference::Registry(r) => RegistrySource::open(r, opts)?.tags(page_size),
        Reference::Archive { .. } => ArchiveSource::tags(reference),
    }
}

/// Hands out a stream's bytes while hashing them; the read that reaches the end fails
/// (`InvalidData`) when the bytes are not the digest's, or not `size` long.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    read: u64,
    digest: Digest,
    size: Option<u64>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, digest: Digest, size: Option<u64>) -> Self {
        use sha2::Digest as _;
        VerifyingReader {
            inner,
            hasher: sha2::Sha256::new(),
            read: 0,
            digest,
            size,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if n == 0 && !buf.is_empty() {
            let got = Digest::from_bytes(self.hasher.clone().finalize().into());
            if got != self.digest || self.size.is_some_and(|s| s != self.read) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "blob {} holds {got} ({} bytes): the store is corrupt",
                        self.digest, self.read
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{canonical_json, MANIFEST_V1};
    use crate::layout::Layout;

    /// A layout with one image written by hand: a config and a manifest, tagged.
    fn hand_made(dir: &std::path::Path) -> (Layout, Digest, Digest) {
        let layout = Layout::create(dir).expect("layout");
        let config =
            br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = layout.write_blob(config).expect("config");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_V1,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": [],
        });
        let bytes = canonical_json(&manifest);
        let digest = layout.write_blob(&bytes).expect("manifest");
        layout
            .add_to_index(
                &crate::image::Descriptor::new(MANIFEST_V1, digest.clone(), bytes.len() as u64),
                &["v1".to_string()],
            )
            .expect("index");
        (layout, digest, config_digest)
    }

    fn reference(text: &str) -> Reference {
        Reference::parse(text).expect("reference")
    }

    #[test]
    fn a_hand_made_layout_is_read_by_tag_with_its_exact_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (layout, digest, config) = hand_made(dir.path());
        let source = open(
            &reference(&format!("oci:{}:v1", dir.path().display())),
            &client::Options::default(),
        )
        .expect("open");
        let (root, bytes) = source.root().expect("root");
        assert_eq!(root, digest);
        assert_eq!(bytes, layout.read_blob(&digest).expect("manifest"));
        let config_bytes = source.json_object(&config, false).expect("config");
        assert_eq!(Digest::of(&config_bytes), config);
        let mut streamed = Vec::new();
        source
            .blob(&config, Some(config_bytes.len() as u64))
            .expect("blob")
            .read_to_end(&mut streamed)
            .expect("read");
        assert_eq!(streamed, config_bytes);
    }

    #[test]
    fn a_tag_the_layout_lacks_is_bad_input() {
        let dir = tempfile::tempdir().expect("temp dir");
        hand_made(dir.path());
        let err = open(
            &reference(&format!("oci:{}:v2", dir.path().display())),
            &client::Options::default(),
        )
        .err()
        .expect("no image is tagged v2");
        assert_eq!(err.exit_code(), crate::ExitCode::BadInput);
    }

    #[test]
    fn a_blob_whose_bytes_changed_fails_at_the_end_of_its_stream() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (layout, _, config) = hand_made(dir.path());
        let path = layout.blob_path(&config);
        let mut perms = std::fs::metadata(&path).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
        std::fs::set_permissions(&path, perms).expect("chmod");
        std::fs::write(&path, b"{\"tampered\":true}").expect("tamper");
        let source = LayoutSource::open(&reference(&format!("oci:{}:v1", dir.path().display())))
            .expect("open");
        let mut out = Vec::new();
        let err = source
            .blob(&config, None)
            .expect("blob")
            .read_to_end(&mut out)
            .expect_err("the digest does not match");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
