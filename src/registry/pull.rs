//! Pull a base image, pinned by digest, into the output layout: the index (when the
//! digest names one), the manifest of each platform being built, their configs and
//! layers. Every blob is verified against its digest while it streams to a temp file
//! in the layout, and only renamed into place once it matches; nothing is
//! re-serialized or recompressed. Blobs the layout already holds are not fetched, and
//! when it holds everything the registry is not contacted at all.

use futures_util::{StreamExt, TryStreamExt};

use super::client::{Options, RegistryClient, CONCURRENCY};
use crate::base::select_platform;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::image::{Index, Manifest};
use crate::layout::Layout;
use crate::platform::Platform;
use crate::reference::RegistryRef;

/// Makes `layout` hold the base image `reference` pinned at `digest`, for `platforms`.
/// `name` is the reference as the recipe writes it, for messages.
pub fn pull_base(
    layout: &Layout,
    name: &str,
    reference: &RegistryRef,
    digest: &Digest,
    platforms: &[Platform],
    opts: &Options,
) -> Result<()> {
    if holds_everything(layout, name, digest, platforms)? {
        return Ok(());
    }
    let rt = super::client::runtime()?;
    rt.block_on(async {
        let client =
            RegistryClient::connect(&reference.registry, &reference.repository, opts).await?;
        client.authorize(&reference.repository, false).await?;
        let repo = &reference.repository;
        let manifest_digests = {
            let bytes = manifest(&client, layout, repo, digest).await?;
            if is_index(&bytes) {
                let index: Index = parse(name, digest, &bytes)?;
                let mut out = Vec::new();
                for p in platforms {
                    let d = select_platform(&index, p, name)?;
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
                out
            } else {
                vec![digest.clone()]
            }
        };
        let mut blobs = Vec::new();
        for d in &manifest_digests {
            let bytes = manifest(&client, layout, repo, d).await?;
            let m: Manifest = parse(name, d, &bytes)?;
            if m.config.size > super::client::MAX_MANIFEST_BYTES {
                return Err(Error::network(format!(
                    "base image {name}: its config {} is {} bytes, more than the {} MiB imgbuild accepts",
                    m.config.digest,
                    m.config.size,
                    super::client::MAX_MANIFEST_BYTES / (1024 * 1024)
                )));
            }
            for desc in std::iter::once(&m.config).chain(&m.layers) {
                if !layout.has_blob(&desc.digest) && !blobs.iter().any(|(b, _)| *b == desc.digest) {
                    blobs.push((desc.digest.clone(), desc.size));
                }
            }
        }
        let total = blobs.len();
        futures_util::stream::iter(blobs)
            .map(|(d, size)| {
                let client = &client;
                async move {
                    let writer = client
                        .get_blob(repo, &d, Some(size), || layout.blob_writer())
                        .await?;
                    let got = writer.commit(layout)?;
                    if got != d {
                        // get_blob verified the bytes; a difference here is a local fault.
                        return Err(Error::network(format!(
                            "blob {d} of {name} was stored as {got}"
                        )));
                    }
                    opts.events.emit(Event::BlobPulled {
                        digest: d.clone(),
                        size,
                        image: name.to_string(),
                    });
                    Ok(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        if total > 0 {
            opts.events.emit(Event::BasePulled {
                image: name.to_string(),
                blobs: total,
            });
        }
        Ok(())
    })
}

/// GETs a manifest or index by digest (verified) into the layout, unless it is there.
async fn manifest(
    client: &RegistryClient,
    layout: &Layout,
    repository: &str,
    digest: &Digest,
) -> Result<Vec<u8>> {
    if layout.has_blob(digest) {
        return layout.read_blob(digest);
    }
    let (bytes, _) = client.get_manifest(repository, &digest.to_string()).await?;
    layout.write_blob(&bytes)?;
    Ok(bytes)
}

/// Whether the layout already holds every blob of the base for `platforms`.
fn holds_everything(
    layout: &Layout,
    name: &str,
    digest: &Digest,
    platforms: &[Platform],
) -> Result<bool> {
    if !layout.has_blob(digest) {
        return Ok(false);
    }
    let bytes = layout.read_blob(digest)?;
    let manifests = if is_index(&bytes) {
        let index: Index = parse(name, digest, &bytes)?;
        let mut out = Vec::new();
        for p in platforms {
            out.push(select_platform(&index, p, name)?);
        }
        out
    } else {
        vec![digest.clone()]
    };
    for d in manifests {
        if !layout.has_blob(&d) {
            return Ok(false);
        }
        let m: Manifest = parse(name, &d, &layout.read_blob(&d)?)?;
        if !std::iter::once(&m.config)
            .chain(&m.layers)
            .all(|l| layout.has_blob(&l.digest))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

use crate::image::is_index_bytes as is_index;

fn parse<T: serde::de::DeserializeOwned>(name: &str, digest: &Digest, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::input(format!(
            "base image {name}: {digest} is not a valid manifest or index: {e}"
        ))
    })
}
