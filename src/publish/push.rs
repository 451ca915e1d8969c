//! Push: copy one image (a manifest, or an index and its manifests) from an OCI
//! layout to a registry repository, in the order of docs/registries.md ("Pushing").
//! The image is read as any image is read, through its
//! [`LayoutSource`](crate::source::LayoutSource); blobs are uploaded streaming from
//! the layout's files.
//!
//!
//! 1. every blob (configs and layers), in parallel: skipped when a HEAD says the
//!    repository has it; mounted from the base image's repository when that lives in
//!    the same registry, or from the repository of a shared layer cache the build
//!    took it from (`Publisher::mount_from`); else uploaded, streaming from the
//!    layout's file;
//! 2. the manifests of an index, by digest;
//! 3. the root (manifest or index) under each tag, or by digest when there is no tag.
//!
//! A tag is only written once everything it points at is in the registry, so a push
//! that fails before step 3 moves no tag. Manifests are pushed as the layout's exact
//! bytes, never re-serialized.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::image::{Descriptor, Index, Manifest, ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME};
use crate::layout::Layout;
use crate::reference::Reference;
use crate::registry::client::{RegistryClient, CONCURRENCY};
use crate::source::{ImageSource, LayoutSource};

/// What a push did, for logs and `--json` (camelCase keys, as all of imgbuild's own).
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushReport {
    /// `registry/repository`.
    pub repository: String,
    pub digest: String,
    /// `registry/repository@digest`: the image, ready to pull or sign.
    pub reference: String,
    pub tags: Vec<String>,
    pub blobs: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub mounted: usize,
    pub skipped: usize,
}

/// The image graph to push, read from the layout.
struct Graph {
    root: Descriptor,
    root_bytes: Vec<u8>,
    /// Child manifests of an index: (digest, media type, bytes).
    children: Vec<(Digest, String, Vec<u8>)>,
    /// Every config and layer, with its size.
    blobs: BTreeMap<Digest, u64>,
    /// The base image, as the manifests' annotations name it, and the base manifest
    /// (or index) digest each manifest names: one per platform.
    base_name: Option<String>,
    base_digests: BTreeSet<Digest>,
}

use crate::image::is_index_media_type as is_index;

fn parse<T: serde::de::DeserializeOwned>(layout: &Layout, d: &Digest, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::input(format!(
            "{}: blob {d} is not a valid manifest or index: {e}",
            layout.root().display()
        ))
    })
}

fn read_graph(
    source: &LayoutSource,
    root: &Descriptor,
    premounted: &BTreeSet<Digest>,
) -> Result<Graph> {
    let layout = source.layout();
    let root_bytes = source.json_object(&root.digest, true)?;
    let mut manifests = Vec::new();
    let mut children = Vec::new();
    if is_index(&root.media_type) {
        let index: Index = parse(layout, &root.digest, &root_bytes)?;
        for child in &index.manifests {
            if is_index(&child.media_type) {
                return Err(Error::input(format!(
                    "{}: nested index {} is not supported",
                    layout.root().display(),
                    child.digest
                )));
            }
            let bytes = source.json_object(&child.digest, true)?;
            let m: Manifest = parse(layout, &child.digest, &bytes)?;
            children.push((child.digest.clone(), child.media_type.clone(), bytes));
            manifests.push(m);
        }
    } else {
        manifests.push(parse(layout, &root.digest, &root_bytes)?);
    }
    let mut blobs = BTreeMap::new();
    let mut base_name = None;
    let mut base_digests = BTreeSet::new();
    for m in &manifests {
        blobs.insert(m.config.digest.clone(), m.config.size);
        for l in &m.layers {
            blobs.insert(l.digest.clone(), l.size);
        }
        if let Some(name) = m.annotations.get(ANNOTATION_BASE_NAME) {
            base_name = Some(name.clone());
        }
        if let Some(d) = m
            .annotations
            .get(ANNOTATION_BASE_DIGEST)
            .and_then(|d| Digest::parse(d))
        {
            base_digests.insert(d);
        }
    }
    for d in blobs.keys() {
        if !layout.has_blob(d) && !premounted.contains(d) {
            return Err(Error::input(format!(
                "{}: the image refers to blob {d}, which the layout does not hold",
                layout.root().display()
            ))
            .with_hint("rebuild the image into this layout, or copy the missing blob in"));
        }
    }
    Ok(Graph {
        root: root.clone(),
        root_bytes,
        children,
        blobs,
        base_name,
        base_digests,
    })
}

/// Blobs of the base image that the layout holds the manifests of: the candidates
/// for a cross-repository mount.
fn base_blobs(source: &LayoutSource, digest: &Digest) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    let Ok(bytes) = source.json_object(digest, true) else {
        return out;
    };
    let mut manifests = Vec::new();
    if let Ok(index) = serde_json::from_slice::<Index>(&bytes) {
        if !index.manifests.is_empty() {
            for child in index.manifests {
                if let Ok(b) = source.json_object(&child.digest, true) {
                    manifests.push(b);
                }
            }
        }
    }
    if manifests.is_empty() {
        manifests.push(bytes);
    }
    for b in manifests {
        if let Ok(m) = serde_json::from_slice::<Manifest>(&b) {
            out.insert(m.config.digest);
            out.extend(m.layers.into_iter().map(|l| l.digest));
        }
    }
    out
}

/// A base in another repository of the client's registry: that repository, and the
/// base's blobs (every platform's: each manifest of an index names its own), which
/// can be mounted from there.
fn base_mounts(
    client: &RegistryClient,
    source: &LayoutSource,
    graph: &Graph,
    repository: &str,
) -> (Option<String>, BTreeSet<Digest>) {
    let mount_from = graph
        .base_name
        .as_deref()
        .and_then(|name| match Reference::parse(name) {
            Ok(Reference::Registry(r))
                if r.registry == client.registry() && r.repository != repository =>
            {
                Some(r.repository)
            }
            _ => None,
        });
    // Every platform's base: each manifest of an index names its own.
    let mountable: BTreeSet<Digest> = match &mount_from {
        Some(_) => graph
            .base_digests
            .iter()
            .flat_map(|d| base_blobs(source, d))
            .collect(),
        None => BTreeSet::new(),
    };
    (mount_from, mountable)
}

/// Where blobs are besides the layout.
pub struct Elsewhere<'a> {
    /// Blobs in another repository of the target's registry (a shared layer cache's):
    /// mounted from there instead of uploaded.
    pub mount_sources: &'a BTreeMap<Digest, String>,
    /// Blobs already mounted into the target repository by this build, which the
    /// layout need not hold.
    pub premounted: &'a BTreeSet<Digest>,
}

/// How one blob got there.
enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

/// Pushes the image `root` of `layout` to `repository` on the client's registry,
/// then writes `tags` (by digest only when `tags` is empty). The client must already
/// be authorized to push there (the library's `Publisher` does it when it connects).
pub async fn push(
    client: &RegistryClient,
    layout: &Layout,
    root: &Descriptor,
    repository: &str,
    tags: &[String],
    elsewhere: Elsewhere<'_>,
) -> Result<PushReport> {
    let Elsewhere {
        mount_sources,
        premounted,
    } = elsewhere;
    let events = client.events();
    let source = LayoutSource::new(
        layout.root().display().to_string(),
        layout.clone(),
        root.digest.clone(),
    )?;
    let graph = read_graph(&source, root, premounted)?;

    let (mount_from, mountable) = base_mounts(client, &source, &graph, repository);
    let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(graph.blobs.iter())
        .map(|(digest, size)| {
            let mount_from = mount_from
                .as_deref()
                .filter(|_| mountable.contains(digest))
                .or_else(|| mount_sources.get(digest).map(String::as_str));
            async move {
                if premounted.contains(digest) {
                    return Ok::<_, Error>(BlobOutcome::Mounted);
                }
                if client.blob_exists(repository, digest).await? {
                    return Ok::<_, Error>(BlobOutcome::Skipped);
                }
                if let Some(from) = mount_from {
                    if client.mount_blob(repository, from, digest).await? {
                        events.emit(Event::BlobMounted {
                            digest: digest.clone(),
                            from: from.to_string(),
                        });
                        return Ok(BlobOutcome::Mounted);
                    }
                }
                client
                    .upload_blob(repository, digest, &layout.blob_path(digest), *size)
                    .await?;
                events.emit(Event::BlobUploaded {
                    digest: digest.clone(),
                    size: *size,
                });
                Ok(BlobOutcome::Uploaded(*size))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;

    let mut report = PushReport {
        repository: format!("{}/{repository}", client.registry()),
        digest: graph.root.digest.to_string(),
        reference: format!("{}/{repository}@{}", client.registry(), graph.root.digest),
        tags: tags.to_vec(),
        blobs: outcomes.len(),
        ..PushReport::default()
    };
    for o in &outcomes {
        match o {
            BlobOutcome::Skipped => report.skipped += 1,
            BlobOutcome::Mounted => report.mounted += 1,
            BlobOutcome::Uploaded(n) => {
                report.uploaded += 1;
                report.uploaded_bytes += n;
            }
        }
    }

    for (digest, media_type, bytes) in &graph.children {
        client
            .put_manifest(repository, &digest.to_string(), bytes, media_type)
            .await?;
    }
    if tags.is_empty() {
        client
            .put_manifest(
                repository,
                &graph.root.digest.to_string(),
                &graph.root_bytes,
                &graph.root.media_type,
            )
            .await?;
    }
    put_tags(client, repository, &graph, tags).await?;
    let target = if tags.is_empty() {
        format!("{}@{}", report.repository, report.digest)
    } else {
        format!("{} (tags {})", report.repository, tags.join(", "))
    };
    events.emit(Event::Pushed {
        target,
        blobs: report.blobs,
        uploaded: report.uploaded,
        uploaded_bytes: report.uploaded_bytes,
        mounted: report.mounted,
        skipped: report.skipped,
    });
    Ok(report)
}

/// Writes `tags` one after another, last of all; a failure names the tags already
/// moved to the new image.
async fn put_tags(
    client: &RegistryClient,
    repository: &str,
    graph: &Graph,
    tags: &[String],
) -> Result<()> {
    for tag in tags {
        client
            .put_manifest(repository, tag, &graph.root_bytes, &graph.root.media_type)
            .await
            .map_err(|e| {
                let done: Vec<&str> = tags
                    .iter()
                    .take_while(|t| *t != tag)
                    .map(String::as_str)
                    .collect();
                if done.is_empty() {
                    e
                } else {
                    let note = format!(
                        "tags already moved to {}: {}",
                        graph.root.digest,
                        done.join(", ")
                    );
                    let hint = e.hint().map(str::to_string);
                    let msg = format!("{} ({note})", e.message());
                    let err = Error::network(msg);
                    match hint {
                        Some(h) => err.with_hint(h),
                        None => err,
                    }
                }
            })?;
    }
    Ok(())
}
