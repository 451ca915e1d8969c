//! An image in a registry repository, read over one connection.

use super::ImageSource;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::reference::{RegistryRef, DEFAULT_TAG};
use crate::registry::client::{self, RegistryClient};
use std::io::{Read, Seek, SeekFrom};

/// An image of a registry repository, named by digest, by tag, or `latest`.
pub struct RegistrySource {
    name: String,
    runtime: tokio::runtime::Runtime,
    client: RegistryClient,
    repository: String,
    /// What the reference asks the registry for: its digest, else its tag.
    wanted: String,
}

impl RegistrySource {
    /// Connects to the registry and obtains pull access to the repository.
    pub fn open(reference: &RegistryRef, opts: &client::Options) -> Result<RegistrySource> {
        let runtime = client::runtime()?;
        let client = runtime.block_on(async {
            let c =
                RegistryClient::connect(&reference.registry, &reference.repository, opts).await?;
            c.authorize(&reference.repository, false).await?;
            Ok::<_, Error>(c)
        })?;
        let wanted = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        };
        Ok(RegistrySource {
            name: reference.to_string(),
            runtime,
            client,
            repository: reference.repository.clone(),
            wanted,
        })
    }
}

impl RegistrySource {
    /// Every tag of the repository, in the registry's order (`GET
    /// /v2/<name>/tags/list`, following its pages; `page_size` tags per request, or
    /// as many as the registry gives).
    pub fn tags(&self, page_size: Option<u32>) -> Result<Vec<String>> {
        self.runtime
            .block_on(self.client.list_tags(&self.repository, page_size))
    }
}

impl ImageSource for RegistrySource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn root(&self) -> Result<(Digest, Vec<u8>)> {
        let (bytes, digest) = self
            .runtime
            .block_on(self.client.get_manifest(&self.repository, &self.wanted))?;
        Ok((digest, bytes))
    }

    fn json_object(&self, digest: &Digest, is_manifest: bool) -> Result<Vec<u8>> {
        if is_manifest {
            let (bytes, _) = self.runtime.block_on(
                self.client
                    .get_manifest(&self.repository, &digest.to_string()),
            )?;
            Ok(bytes)
        } else {
            self.runtime
                .block_on(self.client.get_config(&self.repository, digest))
        }
    }

    /// The blob is downloaded, verified, into an anonymous temporary file and read
    /// from there: disk use is one blob at a time, memory stays bounded, and nothing
    /// unverified is ever handed out.
    fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + Send>> {
        let mut file =
            self.runtime
                .block_on(self.client.get_blob(&self.repository, digest, size, || {
                    tempfile::tempfile().map_err(|e| Error::io("cannot create a temporary file", e))
                }))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("cannot read a temporary file", e))?;
        Ok(Box::new(file))
    }

    /// Several downloads at once ([`client::CONCURRENCY`]), each streaming straight
    /// into a temp file of `into`, verified as it arrives, named once it matches.
    fn copy_blobs(
        &self,
        wanted: &[(Digest, u64)],
        into: &Layout,
        stored: &(dyn Fn(&Digest, u64) + Sync),
    ) -> Result<()> {
        use futures_util::{StreamExt, TryStreamExt};
        let missing = wanted.iter().filter(|(d, _)| !into.has_blob(d));
        self.runtime.block_on(
            futures_util::stream::iter(missing)
                .map(|(digest, size)| async move {
                    let writer = self
                        .client
                        .get_blob(&self.repository, digest, Some(*size), || into.blob_writer())
                        .await?;
                    // get_blob checked the bytes against the digest as they arrived.
                    writer.commit_as(into, digest)?;
                    stored(digest, *size);
                    Ok::<_, Error>(())
                })
                .buffer_unordered(client::CONCURRENCY)
                .try_collect::<Vec<()>>(),
        )?;
        Ok(())
    }
}
