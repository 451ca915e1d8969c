//! `[base]`: the image a build starts from. `scratch`, `oci:DIR[:TAG][@sha256:…]` (a
//! local OCI layout; DIR is relative to the context), or a registry reference
//! `host/repo[:tag][@sha256:…]`, pulled into the output layout ([`pull_base`]) and
//! then read from there like a layout base. A base without a digest is pinned by the
//! build (`build/lock_policy.rs`: the lock's pin, else its tag — or a layout's only
//! image — read now, with a warning), as `imgbuild lock` pins it. Either way the base
//! is read through an [`ImageSource`](crate::source::ImageSource), and its blobs
//! reach `--out` through [`copy_image`](crate::source::copy_image) or the source's
//! `copy_blobs`. Base layers and base history are used as they are: never
//! rewritten, never recompressed.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, ImageConfig, Index, Manifest};
use crate::layout::Layout;
use crate::platform::Platform;
use crate::recipe::Recipe;
use crate::reference::{Reference, RegistryRef};
use crate::source::{ImageSource, LayoutSource};
use crate::tar_read::Compression;

pub use crate::image::select_platform;

pub struct BaseImage {
    /// The reference as written in the recipe (recorded in the base.name annotation).
    pub name: String,
    /// Where it is read from: its own layout, or (a registry base, once pulled) `--out`.
    pub source: LayoutSource,
    pub digest: Digest,
}

impl std::fmt::Debug for BaseImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseImage")
            .field("name", &self.name)
            .field("layout", &self.source.layout().root())
            .field("digest", &self.digest)
            .finish()
    }
}

/// Makes `layout` hold the registry base `reference` pinned at `digest`, for
/// `platforms`: nothing is fetched that `layout` holds, and when it holds
/// everything the registry is not contacted at all. `name` is the reference as the
/// recipe writes it, for messages.
pub fn pull_base(
    layout: &Layout,
    name: &str,
    reference: &RegistryRef,
    digest: &Digest,
    platforms: &[Platform],
    opts: &crate::registry::client::Options,
) -> Result<()> {
    if crate::source::holds_image(layout, name, digest, platforms)? {
        return Ok(());
    }
    let pinned = RegistryRef {
        digest: Some(digest.clone()),
        ..reference.clone()
    };
    let source = crate::source::RegistrySource::open(&pinned, opts)?;
    crate::source::copy_image(&source, name, digest, platforms, layout, &opts.events)?;
    Ok(())
}

/// The base's manifest for one platform.
#[derive(Debug)]
pub struct BasePlatform {
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
}

/// Where the base comes from, as the recipe says.
#[derive(Debug)]
pub enum BaseSource {
    /// `oci:DIR[:TAG][@sha256:…]`: the layout opened and checked, its image not yet
    /// pinned.
    Layout(LayoutBase),
    /// `host/repo[:tag][@sha256:…]`: pulled into the output layout by the build.
    Registry {
        /// As written in the recipe (the base.name annotation).
        name: String,
        reference: RegistryRef,
        /// Where the recipe writes it, for errors about it.
        span: std::ops::Range<usize>,
    },
}

impl BaseSource {
    /// The reference as the recipe writes it.
    pub fn name(&self) -> &str {
        match self {
            BaseSource::Layout(l) => &l.name,
            BaseSource::Registry { name, .. } => name,
        }
    }

    /// The digest the recipe itself pins the base to (`@sha256:…`).
    pub fn written_digest(&self) -> Option<&Digest> {
        match self {
            BaseSource::Layout(l) => l.digest.as_ref(),
            BaseSource::Registry { reference, .. } => reference.digest.as_ref(),
        }
    }

    /// Where the recipe writes it, for errors about it.
    pub fn span(&self) -> std::ops::Range<usize> {
        match self {
            BaseSource::Layout(l) => l.span.clone(),
            BaseSource::Registry { span, .. } => span.clone(),
        }
    }
}

/// A base in a local OCI layout inside the context: `oci:DIR@sha256:…` (pinned by
/// the recipe), `oci:DIR:TAG` or `oci:DIR` (the layout's only image), which the
/// build pins as it pins a registry tag.
#[derive(Debug)]
pub struct LayoutBase {
    /// As written in the recipe (the base.name annotation, the lock's pin).
    pub name: String,
    /// DIR as the recipe writes it, for messages.
    pub dir: String,
    pub layout: Layout,
    pub tag: Option<String>,
    /// The recipe's own `@sha256:…`.
    pub digest: Option<Digest>,
    pub span: std::ops::Range<usize>,
}

impl LayoutBase {
    /// The image the tag (or, without one, the layout's only image) names now, read
    /// from the layout's `index.json`.
    pub fn resolve_now(&self) -> Result<Digest> {
        let source = LayoutSource::find(
            self.name.clone(),
            self.layout.clone(),
            self.tag.as_deref(),
            &self.dir,
        )
        .map_err(|e| {
            let err = Error::input(format!(
                "base image {:?}: {}",
                self.name,
                e.message().trim_start_matches(&format!("{}: ", self.name))
            ));
            match e.hint() {
                Some(h) => err.with_hint(h.to_string()),
                None => err,
            }
        })?;
        Ok(source.root()?.0)
    }

    /// The base at `digest`, which the layout must hold.
    pub fn pinned(&self, digest: &Digest) -> Result<BaseImage> {
        Ok(BaseImage {
            name: self.name.clone(),
            source: LayoutSource::new(self.name.clone(), self.layout.clone(), digest.clone())?,
            digest: digest.clone(),
        })
    }

    /// How the recipe would pin this base to `digest` itself.
    pub fn pinned_form(&self, digest: &Digest) -> String {
        format!("oci:{}@{digest}", self.dir)
    }
}

/// The platforms a base offers: those of its index (in the index's order, each
/// once; entries without a platform, or with one imgbuild does not build for, such
/// as attestation manifests' `unknown/unknown`, left out), or its config's platform
/// for a single manifest.
pub fn platforms_of(source: &dyn ImageSource, name: &str) -> Result<Vec<Platform>> {
    let bad = |what: String| {
        Error::input(format!(
            "base image {name} is not a valid OCI image: {what}"
        ))
    };
    let (_, bytes) = source.root()?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out: Vec<Platform> = Vec::new();
    if crate::image::is_index_value(&value) {
        let index: Index = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        for p in index.manifests.iter().filter_map(|m| m.platform.as_ref()) {
            let text = match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            };
            if let Ok(platform) = Platform::parse(&text) {
                if !out.contains(&platform) {
                    out.push(platform);
                }
            }
        }
    } else {
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let config: ImageConfig =
            serde_json::from_slice(&source.json_object(&manifest.config.digest, false)?)
                .map_err(|e| bad(format!("config {}: {e}", manifest.config.digest)))?;
        let text = match &config.variant {
            Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
            None => format!("{}/{}", config.os, config.architecture),
        };
        out.extend(Platform::parse(&text).ok());
    }
    if out.is_empty() {
        return Err(Error::input(format!(
            "--platform all: base image {name} names no platform imgbuild builds for"
        ))
        .with_hint("list the platforms in the recipe ([image] platforms = [\"linux/amd64\", …]) or name them with --platform"));
    }
    Ok(out)
}

/// Reads `[base] image` from the recipe; `None` for scratch.
pub fn resolve(recipe: &Recipe) -> Result<Option<BaseSource>> {
    let Some(spanned) = &recipe.base.image else {
        return Ok(None);
    };
    let name = spanned.get_ref();
    if name == "scratch" {
        return Ok(None);
    }
    if let Some(e) = recipe.credentials_in_reference(spanned.span(), name, "base image") {
        return Err(e);
    }
    let err = |m: String| recipe.error_at(spanned.span(), m);
    let Some(rest) = name.strip_prefix("oci:") else {
        return match Reference::parse(name) {
            Ok(Reference::Registry(reference)) => Ok(Some(BaseSource::Registry {
                name: name.clone(),
                reference,
                span: spanned.span(),
            })),
            Ok(Reference::Archive { .. }) => Err(err(format!(
                "base image {name:?} is an archive; a base is a registry image or an OCI layout"
            ))
            .with_hint("unpack it into a layout first (skopeo copy ARCHIVE oci:DIR:TAG), then write image = \"oci:DIR:TAG\"")),
            Ok(Reference::Layout { .. }) | Err(_) => {
                let why = Reference::parse(name).err().unwrap_or_default();
                Err(err(format!(
                    "base image {name:?} is not a valid reference: {why}"
                ))
                .with_hint("write \"scratch\", \"host/repo:tag[@sha256:…]\" or \"oci:DIR[:TAG][@sha256:…]\""))
            }
        };
    };
    // With a digest, DIR is everything before the last '@' (as it always was); without
    // one, a tag follows DIR as in any `oci:DIR:TAG` reference.
    let (dir, tag, digest) = match rest.rsplit_once('@') {
        Some((dir, digest)) => {
            let digest = Digest::parse(digest)
                .ok_or_else(|| err(format!("{digest:?} is not a sha256 digest")))?;
            (dir.to_string(), None, Some(digest))
        }
        None => match Reference::parse(name) {
            Ok(Reference::Layout { dir, tag, .. }) => {
                (dir.to_string_lossy().into_owned(), tag, None)
            }
            Ok(_) | Err(_) => {
                let why = Reference::parse(name).err().unwrap_or_default();
                return Err(err(format!(
                    "base image {name:?} is not a valid reference: {why}"
                ))
                .with_hint("write \"oci:DIR\", \"oci:DIR:TAG\" or \"oci:DIR@sha256:…\""));
            }
        },
    };
    let path = layout_dir(recipe, &dir).map_err(|why| {
        err(format!("base layout {dir:?} {why}")).with_hint(
            "a base layout must lie inside the recipe's directory (the context): write DIR relative to it, or copy the layout there (`skopeo copy … oci:DIR`)",
        )
    })?;
    let layout = Layout::open(&path).map_err(|e| {
        err(format!("base layout {dir:?}: {}", e.message())).with_hint(
            e.hint()
                .unwrap_or("check the path, which is relative to the recipe's directory")
                .to_string(),
        )
    })?;
    if let Some(digest) = &digest {
        if !layout.has_blob(digest) {
            return Err(err(format!("base layout {dir:?} holds no blob {digest}")));
        }
    }
    Ok(Some(BaseSource::Layout(LayoutBase {
        name: name.clone(),
        dir,
        layout,
        tag,
        digest,
        span: spanned.span(),
    })))
}

/// The directory of an `oci:DIR` base, held to the rules of `src`: relative, without
/// `..`, and inside the context once symlinks are resolved (the resolved path, so a
/// symlink changed later is not followed again). A directory that does not exist is
/// left for `Layout::open` to report.
fn layout_dir(recipe: &Recipe, dir: &str) -> std::result::Result<std::path::PathBuf, String> {
    let rel = std::path::Path::new(dir);
    if rel.is_absolute() {
        return Err("is absolute".into());
    }
    if rel
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("goes outside the context with '..'".into());
    }
    let path = recipe.context.join(rel);
    match path.canonicalize() {
        Ok(real) if real.starts_with(&recipe.context) => Ok(real),
        Ok(real) => Err(format!(
            "resolves, through a symlink, to {} outside the context",
            real.display()
        )),
        Err(_) => Ok(path),
    }
}

impl BaseImage {
    /// The base's manifest, config and layers for `platform`.
    pub fn for_platform(&self, platform: &Platform) -> Result<BasePlatform> {
        let (_, bytes) = self.source.root()?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("{e}")))?;
        let is_index = crate::image::is_index_value(&value);
        let manifest_digest = if is_index {
            let index: Index =
                serde_json::from_value(value).map_err(|e| self.bad(format!("{e}")))?;
            select_platform(&index, platform, &self.name)?
        } else {
            self.digest.clone()
        };
        let manifest: Manifest =
            serde_json::from_slice(&self.source.json_object(&manifest_digest, true)?)
                .map_err(|e| self.bad(format!("manifest {manifest_digest}: {e}")))?;
        let config: ImageConfig =
            serde_json::from_slice(&self.source.json_object(&manifest.config.digest, false)?)
                .map_err(|e| self.bad(format!("config {}: {e}", manifest.config.digest)))?;
        if config.os != platform.os || config.architecture != platform.architecture {
            return Err(Error::input(format!(
                "base image {} is for {}/{}, not {platform}",
                self.name, config.os, config.architecture
            ))
            .with_hint("pin the base by its index digest, or build for the base's platform"));
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(
                self.bad("its config lists a different number of layers than its manifest".into())
            );
        }
        for layer in &manifest.layers {
            if !self.source.layout().has_blob(&layer.digest) {
                return Err(self.bad(format!("layer {} is missing from the layout", layer.digest)));
            }
        }
        Ok(BasePlatform {
            manifest_digest,
            config,
            layers: manifest.layers,
        })
    }

    fn bad(&self, what: String) -> Error {
        Error::input(format!(
            "base image {} is not a valid OCI image: {what}",
            self.name
        ))
    }
}

/// Base layers whose diff_id was checked by decompressing them, recorded in
/// `<layout>/.imgbuild/verified-layers/<digest hex>` (holding the diff_id) so that a
/// layer is decompressed once, not on every build. A record is a fact about content
/// (this compressed blob decompresses to that diff_id), so it is keyed by the layer's
/// digest and shared by every base that has the layer. Recording is best-effort.
#[derive(Debug)]
pub struct VerifiedLayers {
    dir: std::path::PathBuf,
}

impl VerifiedLayers {
    /// The records of the layout at `out` (which need not exist yet).
    pub fn in_layout(out: &std::path::Path) -> Self {
        VerifiedLayers {
            dir: out.join(".imgbuild").join("verified-layers"),
        }
    }

    fn path(&self, digest: &Digest) -> std::path::PathBuf {
        self.dir.join(digest.hex())
    }

    fn contains(&self, digest: &Digest, diff_id: &Digest) -> bool {
        std::fs::read_to_string(self.path(digest)).is_ok_and(|s| s.trim() == diff_id.to_string())
    }

    /// Records that `digest` decompresses to `diff_id` (temp file + rename).
    pub fn record(&self, digest: &Digest, diff_id: &Digest) {
        if self.contains(digest, diff_id) || std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let Ok(mut file) = crate::layout::temp_in(&self.dir) else {
            return;
        };
        if std::io::Write::write_all(&mut file, format!("{diff_id}\n").as_bytes()).is_ok() {
            let _ = file.persist(&self.path(digest), crate::atomic::Durability::Unsynced);
        }
    }
}

impl BaseImage {
    /// Checks the base's layers for one platform before anything of the build is
    /// written: each blob's size against its manifest (always), and its diff_id
    /// against the config by decompressing it once (a truncated or corrupt stream is
    /// refused too), unless `verified` records it. Exit 2 naming the layer and the
    /// base. Returns the (digest, diff_id) pairs checked now, for the caller to
    /// record once the output layout exists.
    pub fn verify_layers(
        &self,
        bp: &BasePlatform,
        verified: &VerifiedLayers,
    ) -> Result<Vec<(Digest, Digest)>> {
        let mut checked = Vec::new();
        for (index, (layer, diff_id)) in
            bp.layers.iter().zip(&bp.config.rootfs.diff_ids).enumerate()
        {
            let what = format!("layer {index} ({})", layer.digest);
            let path = self.source.layout().blob_path(&layer.digest);
            let len = std::fs::metadata(&path)
                .map_err(|e| Error::io_path("cannot read", &path, e))?
                .len();
            if len != layer.size {
                return Err(self.bad_layer(
                    &what,
                    format!("it is {len} bytes, but the manifest says {}", layer.size),
                ));
            }
            // Readers after this one (the SBOM, diff) decode a layer as its media type
            // says: a type they cannot read, or bytes that are not what the type says,
            // must fail here, before anything is written.
            let Some(compression) = Compression::of_media_type(&layer.media_type) else {
                return Err(self.bad_layer(
                    &what,
                    format!("its media type {:?} is not a layer type", layer.media_type),
                ));
            };
            let sniffed = sniff_file(&path)?;
            if sniffed != compression {
                return Err(self.bad_layer(
                    &what,
                    format!(
                        "its media type {:?} says {}, but its bytes are {}",
                        layer.media_type,
                        compression.describe(),
                        sniffed.describe()
                    ),
                ));
            }
            if verified.contains(&layer.digest, diff_id) {
                continue;
            }
            let (compressed, got) =
                layer_digests(&path, compression).map_err(|e| match e.fault {
                    crate::tar_read::Fault::Source => Error::io_path("cannot read", &path, e.error),
                    crate::tar_read::Fault::Corrupt => self.bad_layer(
                        &what,
                        format!(
                            "it is not a valid layer ({}): a truncated or corrupt stream",
                            e.error
                        ),
                    ),
                })?;
            // The bytes checked must be the layer's own: the digest is what `--out`
            // stores them under (or already holds) and what the image names.
            if compressed != layer.digest {
                return Err(self.bad_layer(
                    &what,
                    format!("its blob's content has digest {compressed}, not the manifest's"),
                ));
            }
            if got != *diff_id {
                return Err(self.bad_layer(
                    &what,
                    format!("it decompresses to {got}, but the config's diff_id is {diff_id}"),
                ));
            }
            checked.push((layer.digest.clone(), diff_id.clone()));
        }
        Ok(checked)
    }

    fn bad_layer(&self, what: &str, why: String) -> Error {
        Error::input(format!("base image {}: {what}: {why}", self.name)).with_hint(
            "the base image is corrupt or was altered; pull or build it again, or pin another digest",
        )
    }
}

/// The sha256 of a layer blob's compressed bytes (the whole file) and of its
/// uncompressed bytes (gzip, zstd or plain tar, told by their magic bytes, read by
/// `crate::tar_read` as the diff and SBOM readers do), walking the tar too (headers;
/// contents skipped), so that a layer the SBOM or a diff would fail to read is refused
/// here, before anything is written.
fn layer_digests(
    path: &std::path::Path,
    compression: Compression,
) -> std::result::Result<(Digest, Digest), crate::tar_read::ReadError> {
    use crate::tar_read::{Blob, Fault, ReadError};
    use sha2::Digest as _;
    let source = |error| ReadError {
        fault: Fault::Source,
        entry: None,
        error,
    };
    let file = std::fs::File::open(path).map_err(source)?;
    let mut hashing = HashingReader {
        inner: file,
        hasher: sha2::Sha256::new(),
    };
    let got = Blob::open(&mut hashing, Some(compression), true)?.walk(|_, _| Ok(()))?;
    // What the decompressor did not read (bytes after the stream's end) is part of
    // the blob too.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(source)?;
    let compressed = Digest::from_bytes(hashing.hasher.finalize().into());
    let got = got.ok_or_else(|| ReadError {
        fault: Fault::Corrupt,
        entry: None,
        error: std::io::Error::other("the layer was not hashed"),
    })?;
    Ok((compressed, got))
}

/// The compression a blob file's first bytes show.
fn sniff_file(path: &std::path::Path) -> Result<Compression> {
    use std::io::Read as _;
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io_path("cannot read", path, e))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io_path("cannot read", path, e)),
        }
    }
    Ok(Compression::sniff(&head[..n]))
}

/// A reader hashing every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A file of a base image's file system, as its layers leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseFile {
    /// No layer has it, or a later layer removed it (a whiteout, an opaque
    /// directory, an ancestor replaced by a non-directory).
    Absent,
    /// A regular file: the layer that last wrote it (0-based) and its bytes.
    File { layer: usize, bytes: Vec<u8> },
    /// Something not read as a file: a symlink, a hard link, a directory, or a file
    /// larger than the limit asked for; `what` says which.
    Unreadable { layer: usize, what: String },
}

impl BaseImage {
    /// The files `paths` (relative, as `etc/passwd`) of the base's file system for one
    /// platform: each layer is walked in order (through `crate::tar_read`), a later
    /// layer's entry or whiteout replacing an earlier one's. A regular file of more
    /// than `limit` bytes is [`BaseFile::Unreadable`].
    pub fn read_files(
        &self,
        bp: &BasePlatform,
        paths: &[&str],
        limit: u64,
    ) -> Result<Vec<BaseFile>> {
        let mut found = vec![BaseFile::Absent; paths.len()];
        for (index, layer) in bp.layers.iter().enumerate() {
            let path = self.source.layout().blob_path(&layer.digest);
            let file =
                std::fs::File::open(&path).map_err(|e| Error::io_path("cannot read", &path, e))?;
            let compression = Compression::of_media_type(&layer.media_type);
            let mut removed = vec![false; paths.len()];
            let mut written: Vec<Option<BaseFile>> = vec![None; paths.len()];
            let walked = crate::tar_read::Blob::open(file, compression, false).and_then(|blob| {
                blob.walk(|_, entry| {
                    let name = normal_path(&entry.path_bytes());
                    let kind = entry.header().entry_type();
                    for (i, want) in paths.iter().enumerate() {
                        let want = want.as_bytes();
                        if name == want {
                            written[i] = Some(read_entry(index, entry, kind, limit)?);
                        } else if hides(&name, want, kind) {
                            removed[i] = true;
                        }
                    }
                    Ok(())
                })
            });
            walked.map_err(|e| match e.fault {
                crate::tar_read::Fault::Source => Error::io_path("cannot read", &path, e.error),
                crate::tar_read::Fault::Corrupt => self.bad_layer(
                    &format!("layer {index} ({})", layer.digest),
                    format!("it is not a valid layer ({})", e.error),
                ),
            })?;
            for (i, slot) in found.iter_mut().enumerate() {
                if let Some(w) = written[i].take() {
                    *slot = w;
                } else if removed[i] {
                    *slot = BaseFile::Absent;
                }
            }
        }
        Ok(found)
    }
}

/// A tar entry's path as the plan writes paths: no `./` or `/` before it, no `/`
/// after it.
fn normal_path(path: &[u8]) -> Vec<u8> {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix(b"./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix(b"/") {
            p = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = p.strip_suffix(b"/") {
        p = rest;
    }
    p.to_vec()
}

/// Whether the entry `name` (of type `kind`) removes `want` of the layers below: a
/// whiteout of it or of an ancestor, an opaque marker in an ancestor, or an ancestor
/// that is not a directory.
fn hides(name: &[u8], want: &[u8], kind: tar::EntryType) -> bool {
    let under = |dir: &[u8]| {
        dir.is_empty() || (want.starts_with(dir) && want.get(dir.len()) == Some(&b'/'))
    };
    let (parent, last) = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (&name[..0], name),
    };
    if last == b".wh..wh..opq" {
        return under(parent);
    }
    if let Some(hidden) = last.strip_prefix(b".wh.") {
        let target = crate::plan::join(parent, hidden);
        return want == target.as_slice() || under(&target);
    }
    !kind.is_dir() && !name.is_empty() && under(name)
}

/// What the base's file at `want` is, read from its tar entry.
fn read_entry<R: std::io::Read>(
    layer: usize,
    entry: &mut tar::Entry<'_, R>,
    kind: tar::EntryType,
    limit: u64,
) -> std::io::Result<BaseFile> {
    let what = if kind.is_file() || kind == tar::EntryType::Continuous {
        let size = entry.header().size()?;
        if size > limit {
            format!("a file of {size} bytes, more than the {limit} read")
        } else {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(entry, limit), &mut bytes)?;
            return Ok(BaseFile::File { layer, bytes });
        }
    } else if kind.is_symlink() {
        "a symbolic link".to_string()
    } else if kind.is_hard_link() {
        "a hard link".to_string()
    } else if kind.is_dir() {
        "a directory".to_string()
    } else {
        "not a regular file".to_string()
    };
    Ok(BaseFile::Unreadable { layer, what })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::EntryType;

    #[test]
    fn paths_lose_leading_dot_slash_and_trailing_slash() {
        assert_eq!(normal_path(b"./etc/passwd"), b"etc/passwd");
        assert_eq!(normal_path(b"/etc/"), b"etc");
        assert_eq!(normal_path(b"././etc/group"), b"etc/group");
    }

    #[test]
    fn whiteouts_opaque_markers_and_non_directory_ancestors_hide_a_file() {
        let want = b"etc/passwd";
        let file = EntryType::Regular;
        assert!(hides(b"etc/.wh.passwd", want, file));
        assert!(hides(b".wh.etc", want, file));
        assert!(hides(b"etc/.wh..wh..opq", want, file));
        assert!(hides(b".wh..wh..opq", want, file));
        assert!(hides(b"etc", want, EntryType::Symlink));
        assert!(!hides(b"etc", want, EntryType::Directory));
        assert!(!hides(b"etc/.wh.group", want, file));
        assert!(!hides(b"etc/.wh.passwd-", want, file));
        assert!(!hides(b"etcx/.wh..wh..opq", want, file));
        assert!(!hides(b"etc/passwd/x", want, file));
        assert!(!hides(b"et", want, file));
    }
}
