//! The shared layer cache: content keys mapped to layer blobs, kept as ordinary OCI
//! objects in a registry repository or an OCI layout (`build --cache-from` /
//! `--cache-to`), so that another machine with the same sources skips compressing.
//!
//! One *entry* per content key (`key.rs`): a small OCI artifact manifest, tagged
//! `imgbuild-cache-<key hex>`, whose one layer descriptor is the layer blob itself
//! (digest, size, media type; the diff_id in an annotation) and whose config is the
//! OCI empty descriptor. The blob is the image's own layer blob, so a cache in the
//! image's repository costs no extra blob. An entry's bytes depend only on the key
//! and the layer, so two writers of one key write the same bytes: concurrent writers
//! never rewrite a shared object with other content.
//!
//! Nothing read from a cache is trusted: an entry must parse, name this key and the
//! build's media type, and its blob reaches the output layout only through a verified
//! download or copy (its bytes must hash to the digest). Anything else is a miss and
//! a warning. A cache that cannot be reached or read is a warning and a build without
//! it; failing to store an entry is a warning. The cache can cost a build time, never
//! its result.

use crate::cache::background::Background;
use crate::compress::Compression;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::image::{Descriptor, MANIFEST_V1};
use crate::layer::LayerBlob;
use crate::layout::Layout;
use crate::reference::Reference;
use crate::registry::client::{self, RegistryClient, CONCURRENCY};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

/// The tag of an entry is this followed by the key's hex.
pub const TAG_PREFIX: &str = "imgbuild-cache-";
/// The entry manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.imgbuild.layer-cache.v1";
/// On the entry manifest: the content key it maps.
pub const ANNOTATION_KEY: &str = "org.imgbuild.cache.key";
/// On the entry's layer descriptor: the layer's diff_id.
pub const ANNOTATION_DIFF_ID: &str = "org.imgbuild.cache.diff-id";
/// The OCI empty descriptor's media type and bytes: the entry's config.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_JSON: &[u8] = b"{}";

/// The tag an entry for `key` is stored under.
pub fn tag_of(key: &Digest) -> String {
    format!("{TAG_PREFIX}{}", key.hex())
}

/// Where a shared cache lives: a registry repository or an OCI layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRef {
    Registry {
        registry: String,
        repository: String,
    },
    Layout(PathBuf),
}

impl CacheRef {
    /// Parses `--cache-from`/`--cache-to`'s REF: `host/repository` or `oci:DIR`,
    /// without a tag or digest (the cache chooses its own tags).
    pub fn parse(s: &str, flag: &str) -> Result<CacheRef> {
        let hint = "a cache is a registry repository (host/path) or an OCI layout (oci:DIR)";
        let reference = Reference::parse(s)
            .map_err(|why| Error::input(format!("{flag} {s}: {why}")).with_hint(hint))?;
        match reference {
            Reference::Registry(r)
                if r.digest.is_none() && !crate::reference::has_explicit_tag(s) =>
            {
                Ok(CacheRef::Registry {
                    registry: r.registry,
                    repository: r.repository,
                })
            }
            Reference::Layout {
                dir,
                tag: None,
                digest: None,
            } => Ok(CacheRef::Layout(dir)),
            Reference::Archive { .. } => Err(Error::input(format!(
                "{flag} {s}: an archive cannot hold a cache"
            ))
            .with_hint(hint)),
            _ => Err(Error::input(format!(
                "{flag} {s}: a cache names a repository, not an image (no tag or digest)"
            ))
            .with_hint(hint)),
        }
    }
}

impl fmt::Display for CacheRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheRef::Registry {
                registry,
                repository,
            } => write!(f, "{registry}/{repository}"),
            CacheRef::Layout(dir) => write!(f, "oci:{}", dir.display()),
        }
    }
}

/// `--cache-from` (read in order, first hit wins) and `--cache-to`.
#[derive(Debug, Clone, Default)]
pub struct SharedCacheOptions {
    pub from: Vec<CacheRef>,
    pub to: Option<CacheRef>,
    /// Where the image goes when it is kept nowhere else (`build --push --no-out`):
    /// a layer found in a registry cache on that same registry is mounted there, not
    /// downloaded.
    pub mount_into: Option<MountInto>,
}

/// The push target of a build that keeps no layout (`build --push --no-out`). A
/// layer found in a registry cache of the same registry needs no bytes on this
/// machine: the target mounts it from the cache's repository, and the build records
/// its descriptor only.
pub trait MountTarget: Send + Sync {
    /// The target's registry, as references name it (`host[:port]`).
    fn registry(&self) -> &str;
    /// Makes the target repository hold `digest`, mounted from `repository` of the
    /// same registry; its size there when it does, None when it cannot (the caller
    /// downloads the layer instead).
    fn mount(&self, repository: &str, digest: &Digest) -> Option<u64>;
}

/// A shared [`MountTarget`].
#[derive(Clone)]
pub struct MountInto(pub std::sync::Arc<dyn MountTarget>);

impl fmt::Debug for MountInto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MountInto({})", self.0.registry())
    }
}

impl SharedCacheOptions {
    pub fn is_empty(&self) -> bool {
        self.from.is_empty() && self.to.is_none()
    }

    /// The `oci:DIR` caches' directories: outputs of the build, never its input.
    pub fn layout_dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.from.iter().chain(&self.to).filter_map(|r| match r {
            CacheRef::Layout(dir) => Some(dir),
            CacheRef::Registry { .. } => None,
        })
    }
}

/// An entry: an OCI image manifest with an `artifactType`, in this field order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryManifest {
    schema_version: u32,
    media_type: String,
    artifact_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
}

/// The bytes of the entry mapping `key` to `blob`: the same on every machine.
pub fn entry_bytes(key: &Digest, blob: &LayerBlob) -> Vec<u8> {
    let mut layer = Descriptor::new(blob.media_type, blob.digest.clone(), blob.size);
    layer
        .annotations
        .insert(ANNOTATION_DIFF_ID.to_string(), blob.diff_id.to_string());
    let entry = EntryManifest {
        schema_version: 2,
        media_type: MANIFEST_V1.to_string(),
        artifact_type: ARTIFACT_TYPE.to_string(),
        config: Descriptor::new(
            EMPTY_MEDIA_TYPE,
            Digest::of(EMPTY_JSON),
            EMPTY_JSON.len() as u64,
        ),
        layers: vec![layer],
        annotations: BTreeMap::from([(ANNOTATION_KEY.to_string(), key.hex())]),
    };
    crate::image::canonical_json(&entry)
}

/// Reads an entry: the layer it maps `key` to, if it is a well-formed entry for that
/// key with the build's layer media type; else why not.
pub fn parse_entry(
    bytes: &[u8],
    key: &Digest,
    compression: Compression,
) -> std::result::Result<LayerBlob, String> {
    let entry: EntryManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not a cache entry: {e}"))?;
    if entry.artifact_type != ARTIFACT_TYPE {
        return Err(format!("artifactType is {:?}", entry.artifact_type));
    }
    if entry.annotations.get(ANNOTATION_KEY) != Some(&key.hex()) {
        return Err("it names another key".to_string());
    }
    let [layer] = entry.layers.as_slice() else {
        return Err(format!("{} layers instead of one", entry.layers.len()));
    };
    let media_type = compression.layer_media_type();
    if layer.media_type != media_type {
        return Err(format!(
            "its layer is {}, not {media_type}",
            layer.media_type
        ));
    }
    let diff_id = layer
        .annotations
        .get(ANNOTATION_DIFF_ID)
        .and_then(|d| Digest::parse(d))
        .ok_or_else(|| format!("no valid {ANNOTATION_DIFF_ID} annotation"))?;
    Ok(LayerBlob {
        digest: layer.digest.clone(),
        diff_id,
        size: layer.size,
        media_type,
    })
}

/// One place entries are read from or written to.
enum Store {
    Registry {
        client: Box<RegistryClient>,
        registry: String,
        repository: String,
    },
    Layout(Layout),
}

/// The caches of one build, reached once at its start.
pub struct SharedCache {
    runtime: Option<tokio::runtime::Runtime>,
    from: Vec<(String, Store)>,
    to: Option<(String, Store)>,
    events: Events,
    /// Layers found in a registry cache: digest → (registry, repository), where a
    /// push to that registry can mount them from.
    found_in: Mutex<BTreeMap<Digest, (String, String)>>,
    mount_into: Option<MountInto>,
}

impl SharedCache {
    /// Reaches every cache of `options`. One that cannot be reached or read (or, for
    /// `--cache-to`, written) is a warning and is left out: never an error.
    pub fn open(options: &SharedCacheOptions, registry: &client::Options) -> SharedCache {
        let events = registry.events.clone();
        let needs_runtime = options
            .from
            .iter()
            .chain(&options.to)
            .any(|r| matches!(r, CacheRef::Registry { .. }));
        let runtime = match needs_runtime.then(client::runtime).transpose() {
            Ok(r) => r,
            Err(e) => {
                events.warn(format!(
                    "the build goes on without its registry caches: {}",
                    e.message()
                ));
                None
            }
        };
        let mut cache = SharedCache {
            runtime,
            from: Vec::new(),
            to: None,
            events,
            found_in: Mutex::new(BTreeMap::new()),
            mount_into: options.mount_into.clone(),
        };
        for r in &options.from {
            if let Some(store) = cache.connect(r, false, registry) {
                cache.from.push((r.to_string(), store));
            }
        }
        if let Some(r) = &options.to {
            cache.to = cache.connect(r, true, registry).map(|s| (r.to_string(), s));
        }
        cache
    }

    fn connect(&self, r: &CacheRef, write: bool, opts: &client::Options) -> Option<Store> {
        let flag = if write { "--cache-to" } else { "--cache-from" };
        let reached = match r {
            CacheRef::Layout(dir) if write => Layout::create(dir).map(Store::Layout),
            CacheRef::Layout(dir) => Layout::open(dir).map(Store::Layout),
            CacheRef::Registry {
                registry,
                repository,
            } => match &self.runtime {
                Some(runtime) => runtime
                    .block_on(async {
                        let c = RegistryClient::connect(registry, repository, opts).await?;
                        c.authorize(repository, write).await?;
                        Ok::<_, Error>(c)
                    })
                    .map(|client| Store::Registry {
                        client: Box::new(client),
                        registry: registry.clone(),
                        repository: repository.clone(),
                    }),
                None => return None,
            },
        };
        match reached {
            Ok(store) => Some(store),
            Err(e) => {
                let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
                self.events.warn(format!(
                    "{flag} {r}: {}{hint}; the build goes on without this cache",
                    e.message()
                ));
                None
            }
        }
    }

    /// True when no cache could be reached.
    pub fn is_empty(&self) -> bool {
        self.from.is_empty() && self.to.is_none()
    }

    /// True when entries are written (`--cache-to` reached).
    pub fn writes(&self) -> bool {
        self.to.is_some()
    }

    /// True when entries are read (`--cache-from` reached).
    pub fn reads(&self) -> bool {
        !self.from.is_empty()
    }

    /// Looks `key` up in each `--cache-from` in turn. On a hit the layer's blob is in
    /// `layout` (downloaded or copied, verified against its digest), and the name of
    /// the cache it came from is returned with it. A damaged entry or blob is a
    /// warning and a miss.
    pub fn lookup(
        &self,
        key: &Digest,
        layer: &str,
        layout: &Layout,
        compression: Compression,
    ) -> Option<(LayerBlob, String)> {
        for (name, store) in &self.from {
            match self.lookup_in(store, key, layout, compression) {
                Ok(Some(blob)) => {
                    if let Store::Registry {
                        registry,
                        repository,
                        ..
                    } = store
                    {
                        if let Ok(mut m) = self.found_in.lock() {
                            m.insert(blob.digest.clone(), (registry.clone(), repository.clone()));
                        }
                    }
                    return Some((blob, name.clone()));
                }
                Ok(None) => {}
                Err(why) => self.events.warn(format!(
                    "cache {name}: the entry for layer {layer:?} ({}) is not usable: {why}; the layer is built instead",
                    tag_of(key)
                )),
            }
        }
        None
    }

    fn lookup_in(
        &self,
        store: &Store,
        key: &Digest,
        layout: &Layout,
        compression: Compression,
    ) -> std::result::Result<Option<LayerBlob>, String> {
        let tag = tag_of(key);
        let bytes = match store {
            Store::Registry {
                client, repository, ..
            } => {
                let runtime = self.runtime.as_ref().ok_or("no runtime")?;
                match runtime.block_on(client.get_manifest_if_any(repository, &tag)) {
                    Ok(Some(b)) => b,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(e.message().to_string()),
                }
            }
            Store::Layout(cache) => match cache.resolve_tag(&tag) {
                Ok(Some(d)) => cache
                    .read_blob(&d.digest)
                    .map_err(|e| e.message().to_string())?,
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.message().to_string()),
            },
        };
        let blob = parse_entry(&bytes, key, compression)?;
        if blob_in(layout, &blob) {
            return Ok(Some(blob));
        }
        if self.mounted(store, &blob)? {
            return Ok(Some(blob));
        }
        match store {
            Store::Registry {
                client, repository, ..
            } => {
                let runtime = self.runtime.as_ref().ok_or("no runtime")?;
                let writer = runtime
                    .block_on(
                        client.get_blob(repository, &blob.digest, Some(blob.size), || {
                            Background::start(layout.blob_writer_unhashed()?)
                        }),
                    )
                    .map_err(|e| e.message().to_string())?;
                // get_blob hashed the bytes as they arrived and returns the writer only
                // when they are the digest's (else the temp file is dropped, unnamed).
                writer
                    .finish()
                    .and_then(|w| w.commit_as(layout, &blob.digest))
                    .map_err(|e| e.message().to_string())?;
            }
            Store::Layout(cache) => {
                layout
                    .import_blob(cache, &blob.digest)
                    .map_err(|e| e.message().to_string())?;
            }
        }
        if blob_in(layout, &blob) {
            Ok(Some(blob))
        } else {
            Err(format!("blob {} is not {} bytes", blob.digest, blob.size))
        }
    }

    /// For a build that keeps no layout: true when the push target (on the cache's
    /// registry) now holds `blob`, mounted from the cache's repository. The registry
    /// checked the blob's digest when it was stored; its size is checked here, against
    /// the entry's.
    fn mounted(&self, store: &Store, blob: &LayerBlob) -> std::result::Result<bool, String> {
        let (
            Some(target),
            Store::Registry {
                registry,
                repository,
                ..
            },
        ) = (&self.mount_into, store)
        else {
            return Ok(false);
        };
        if target.0.registry() != registry {
            return Ok(false);
        }
        match target.0.mount(repository, &blob.digest) {
            Some(size) if size == blob.size => Ok(true),
            Some(size) => Err(format!(
                "blob {} is {size} bytes in the registry, and the entry says {}",
                blob.digest, blob.size
            )),
            None => Ok(false),
        }
    }

    /// Where a push to `registry` can mount `digest` from: the repository of that
    /// registry whose cache it came from in this build, if any.
    pub fn mount_source(&self, registry: &str, digest: &Digest) -> Option<String> {
        let m = self.found_in.lock().ok()?;
        m.get(digest)
            .filter(|(r, _)| r == registry)
            .map(|(_, repo)| repo.clone())
    }

    /// Every layer found in a registry cache: digest → (registry, repository).
    pub fn found_in(&self) -> BTreeMap<Digest, (String, String)> {
        self.found_in.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Stores an entry per `(key, layer)` in `--cache-to`, the layers' blobs read from
    /// `layout`. Entries already there are left alone; blobs the cache already holds
    /// are not sent again. A failure is a warning.
    pub fn store(&self, layers: &[(Digest, LayerBlob)], layout: &Layout) {
        let Some((name, store)) = &self.to else {
            return;
        };
        let outcome = match store {
            Store::Layout(cache) => store_in_layout(cache, layers, layout),
            Store::Registry {
                client, repository, ..
            } => match &self.runtime {
                Some(runtime) => runtime.block_on(store_in_registry(
                    client,
                    repository,
                    layers,
                    layout,
                    &self.found_in(),
                )),
                None => return,
            },
        };
        match outcome {
            Ok((stored, present)) => self.events.emit(Event::CacheStored {
                cache: name.clone(),
                stored,
                present,
            }),
            Err(e) => {
                let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
                self.events.warn(format!(
                    "--cache-to {name}: cannot store the layers: {}{hint}; the image is built all the same",
                    e.message()
                ));
            }
        }
    }
}

/// True when `layout` holds `blob` at its size.
fn blob_in(layout: &Layout, blob: &LayerBlob) -> bool {
    std::fs::metadata(layout.blob_path(&blob.digest))
        .is_ok_and(|m| m.is_file() && m.len() == blob.size)
}

/// Stores entries in a layout cache: blob, empty config, entry, then its tag (under
/// the index's lock). Returns (stored, already there).
fn store_in_layout(
    cache: &Layout,
    layers: &[(Digest, LayerBlob)],
    layout: &Layout,
) -> Result<(usize, usize)> {
    let (mut stored, mut present) = (0, 0);
    for (key, blob) in layers {
        let bytes = entry_bytes(key, blob);
        let tag = tag_of(key);
        if let Some(d) = cache.resolve_tag(&tag)? {
            if d.digest == Digest::of(&bytes) && cache.has_blob(&blob.digest) {
                present += 1;
                continue;
            }
        }
        cache.import_blob(layout, &blob.digest)?;
        cache.write_blob(EMPTY_JSON)?;
        let digest = cache.write_blob(&bytes)?;
        let descriptor = Descriptor::new(MANIFEST_V1, digest, bytes.len() as u64);
        cache.add_to_index(&descriptor, &[tag])?;
        stored += 1;
    }
    Ok((stored, present))
}

/// Stores entries in a registry repository, several at once: an entry already
/// there (the same bytes under its tag) is left alone; a blob is HEADed first, then
/// mounted from the repository it was found in (same registry), else uploaded from
/// the layout; the entry is PUT last, so a tag never names a missing blob.
async fn store_in_registry(
    client: &RegistryClient,
    repository: &str,
    layers: &[(Digest, LayerBlob)],
    layout: &Layout,
    found_in: &BTreeMap<Digest, (String, String)>,
) -> Result<(usize, usize)> {
    use futures_util::{StreamExt, TryStreamExt};
    let empty = Digest::of(EMPTY_JSON);
    if !client.blob_exists(repository, &empty).await? {
        let dir =
            tempfile::tempdir().map_err(|e| Error::io("cannot create a temporary directory", e))?;
        let path = dir.path().join("empty.json");
        std::fs::write(&path, EMPTY_JSON).map_err(|e| Error::io_path("cannot write", &path, e))?;
        client
            .upload_blob(repository, &empty, &path, EMPTY_JSON.len() as u64)
            .await?;
    }
    let outcomes: Vec<bool> = futures_util::stream::iter(layers)
        .map(|(key, blob)| async move {
            let bytes = entry_bytes(key, blob);
            let tag = tag_of(key);
            if client
                .get_manifest_if_any(repository, &tag)
                .await?
                .as_deref()
                == Some(&bytes)
            {
                return Ok::<_, Error>(false);
            }
            if !client.blob_exists(repository, &blob.digest).await? {
                let from = found_in
                    .get(&blob.digest)
                    .filter(|(r, repo)| r == client.registry() && repo != repository);
                let mounted = match from {
                    Some((_, from)) => client.mount_blob(repository, from, &blob.digest).await?,
                    None => false,
                };
                if !mounted {
                    client
                        .upload_blob(
                            repository,
                            &blob.digest,
                            &layout.blob_path(&blob.digest),
                            blob.size,
                        )
                        .await?;
                }
            }
            client
                .put_manifest(repository, &tag, &bytes, MANIFEST_V1)
                .await?;
            Ok(true)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let stored = outcomes.iter().filter(|s| **s).count();
    Ok((stored, outcomes.len() - stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> LayerBlob {
        LayerBlob {
            digest: Digest::of(b"blob"),
            diff_id: Digest::of(b"tar"),
            size: 4,
            media_type: Compression::Gzip.layer_media_type(),
        }
    }

    #[test]
    fn an_entry_reads_back_as_the_layer_it_maps() {
        let key = Digest::of(b"key");
        let bytes = entry_bytes(&key, &blob());
        assert_eq!(parse_entry(&bytes, &key, Compression::Gzip), Ok(blob()));
        assert_eq!(
            bytes,
            entry_bytes(&key, &blob()),
            "the same bytes every time"
        );
    }

    #[test]
    fn an_entry_for_another_key_or_compression_or_truncated_is_refused() {
        let key = Digest::of(b"key");
        let bytes = entry_bytes(&key, &blob());
        assert!(parse_entry(&bytes, &Digest::of(b"other"), Compression::Gzip).is_err());
        assert!(parse_entry(&bytes, &key, Compression::Zstd).is_err());
        assert!(parse_entry(&bytes[..bytes.len() / 2], &key, Compression::Gzip).is_err());
    }

    #[test]
    fn a_cache_ref_is_a_repository_or_a_layout() {
        assert_eq!(
            CacheRef::parse("127.0.0.1:5000/team/cache", "--cache-to").ok(),
            Some(CacheRef::Registry {
                registry: "127.0.0.1:5000".into(),
                repository: "team/cache".into()
            })
        );
        assert_eq!(
            CacheRef::parse("oci:/tmp/cache", "--cache-to").ok(),
            Some(CacheRef::Layout("/tmp/cache".into()))
        );
        for bad in [
            "127.0.0.1:5000/team/cache:v1",
            "oci:/tmp/cache:v1",
            "oci-archive:/tmp/c.tar",
        ] {
            assert!(CacheRef::parse(bad, "--cache-to").is_err(), "{bad}");
        }
    }
}
