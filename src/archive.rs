//! Image archives: one image of a layout as a single tar file, a sink beside the
//! layout itself.
//!
//! - **oci-archive** (`--out oci-archive:FILE`): the OCI image layout, tarred —
//!   `oci-layout`, an `index.json` naming just this image (once per tag), and the
//!   image's blobs. What `skopeo copy oci-archive:FILE …` and `podman load` read.
//! - **docker-archive** (`--out docker-archive:FILE`): what `docker load` reads — a
//!   `manifest.json` listing the config, the `RepoTags` and the layers, beside the same
//!   OCI layout (as Docker 25 and later save images), so that older engines read the
//!   `manifest.json` and newer ones the layout. One platform only: a docker archive
//!   holds one image per tag.
//!
//! Both are written the way layers are: entries in a fixed order, owned by 0:0, with
//! fixed modes and every mtime at the image's source date epoch, so the same image
//! gives the same archive bytes. The blobs are streamed from the layout (never held in
//! memory), into a temp file beside FILE that is renamed onto it only when complete.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{canonical_json, is_index_media_type, Descriptor, Index, Manifest};
use crate::layout::Layout;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The kinds of archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    Oci,
    Docker,
}

impl ArchiveKind {
    /// The transport prefix naming it, as skopeo spells it.
    pub fn prefix(self) -> &'static str {
        match self {
            ArchiveKind::Oci => "oci-archive:",
            ArchiveKind::Docker => "docker-archive:",
        }
    }
}

/// `oci-archive:FILE` or `docker-archive:FILE`: the kind and the file; `None` for
/// anything else (a layout directory).
pub fn parse_target(text: &str) -> Option<(ArchiveKind, PathBuf)> {
    [ArchiveKind::Oci, ArchiveKind::Docker]
        .into_iter()
        .find_map(|kind| {
            text.strip_prefix(kind.prefix())
                .map(|file| (kind, PathBuf::from(file)))
        })
}

/// What goes into an archive: the image `root` of `layout`, its tags, and for a
/// docker archive the repository its tags belong to (`RepoTags` are
/// `repository:tag`).
pub struct ArchiveImage<'a> {
    pub layout: &'a Layout,
    pub root: &'a Descriptor,
    pub tags: &'a [String],
    pub repository: &'a str,
    /// Every entry's mtime (the image's source date epoch).
    pub mtime: u64,
}

/// Writes `image` as an archive of `kind` at `file`, atomically.
pub fn write(kind: ArchiveKind, image: &ArchiveImage<'_>, file: &Path) -> Result<()> {
    let blobs = closure(image.layout, &image.root.digest)?;
    let docker_manifest = match kind {
        ArchiveKind::Oci => None,
        ArchiveKind::Docker => Some(docker_manifest_json(image)?),
    };
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = crate::atomic::TempFile::new_in(&dir, 0o644)
        .map_err(|e| Error::io_path("cannot create a file in", &dir, e))?;
    let fail = |e: std::io::Error| Error::io_path("cannot write", file, e);
    {
        let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, &mut temp));
        let mut add = |path: &str, size: u64, data: &mut dyn std::io::Read| {
            let mut header = tar::Header::new_ustar();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(image.mtime);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, data)
        };
        let layout_file = br#"{"imageLayoutVersion":"1.0.0"}"#;
        add(
            "oci-layout",
            layout_file.len() as u64,
            &mut &layout_file[..],
        )
        .map_err(fail)?;
        let index = canonical_json(&index_json(image));
        add("index.json", index.len() as u64, &mut &index[..]).map_err(fail)?;
        if let Some(manifest) = &docker_manifest {
            add("manifest.json", manifest.len() as u64, &mut &manifest[..]).map_err(fail)?;
        }
        for digest in &blobs {
            let path = image.layout.blob_path(digest);
            let mut f = std::fs::File::open(&path)
                .map_err(|e| Error::io_path("cannot read blob", &path, e))?;
            let size = f
                .metadata()
                .map_err(|e| Error::io_path("cannot read blob", &path, e))?
                .len();
            add(&format!("blobs/sha256/{}", digest.hex()), size, &mut f).map_err(fail)?;
        }
        tar.into_inner().and_then(|mut w| w.flush()).map_err(fail)?;
    }
    temp.persist(file, crate::atomic::Durability::Synced)
        .map_err(fail)
}

/// `index.json` of the archive: the image once per tag (once, unnamed, without tags).
fn index_json(image: &ArchiveImage<'_>) -> Index {
    let named = |tag: Option<&String>| {
        let mut d = image.root.clone();
        d.annotations.clear();
        if let Some(tag) = tag {
            d.annotations
                .insert(crate::image::ANNOTATION_REF_NAME.to_string(), tag.clone());
        }
        d
    };
    let manifests = if image.tags.is_empty() {
        vec![named(None)]
    } else {
        image.tags.iter().map(|t| named(Some(t))).collect()
    };
    Index {
        schema_version: 2,
        media_type: Some(crate::image::INDEX_V1.to_string()),
        manifests,
        annotations: Default::default(),
    }
}

/// Docker's `manifest.json`: one entry, the image's config, tags and layers (paths in
/// the archive).
fn docker_manifest_json(image: &ArchiveImage<'_>) -> Result<Vec<u8>> {
    let manifest_digest = single_manifest(image.layout, image.root)?;
    let manifest: Manifest = serde_json::from_slice(&image.layout.read_blob(&manifest_digest)?)
        .map_err(|e| Error::input(format!("manifest {manifest_digest}: {e}")))?;
    let path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let repo_tags: Vec<String> = image
        .tags
        .iter()
        .map(|t| format!("{}:{t}", image.repository))
        .collect();
    Ok(canonical_json(&serde_json::json!([{
        "Config": path(&manifest.config.digest),
        "RepoTags": repo_tags,
        "Layers": manifest.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
    }])))
}

/// The one manifest of `root`: itself, or an index's only manifest. A docker archive
/// holds one image per tag, so an index of several platforms is bad input.
fn single_manifest(layout: &Layout, root: &Descriptor) -> Result<Digest> {
    if !is_index_media_type(&root.media_type) {
        return Ok(root.digest.clone());
    }
    let index: Index = serde_json::from_slice(&layout.read_blob(&root.digest)?)
        .map_err(|e| Error::input(format!("index {}: {e}", root.digest)))?;
    match index.manifests.as_slice() {
        [one] => Ok(one.digest.clone()),
        many => Err(Error::input(format!(
            "a docker archive holds one platform, and this image has {}",
            many.len()
        ))
        .with_hint(
            "build one platform (--platform linux/amd64), or write --out oci-archive:FILE, which holds them all",
        )),
    }
}

/// Every blob of the image `root` in `layout`, each once, in a fixed order: the root,
/// then per manifest the manifest, its config and its layers.
fn closure(layout: &Layout, root: &Digest) -> Result<Vec<Digest>> {
    let mut out: Vec<Digest> = Vec::new();
    let push = |d: &Digest, out: &mut Vec<Digest>| {
        if !out.contains(d) {
            out.push(d.clone());
        }
    };
    push(root, &mut out);
    let bytes = layout.read_blob(root)?;
    let manifests = if crate::image::is_index_bytes(&bytes) {
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("index {root}: {e}")))?;
        index.manifests.into_iter().map(|m| m.digest).collect()
    } else {
        vec![root.clone()]
    };
    for digest in manifests {
        push(&digest, &mut out);
        let m: Manifest = serde_json::from_slice(&layout.read_blob(&digest)?)
            .map_err(|e| Error::input(format!("manifest {digest}: {e}")))?;
        push(&m.config.digest, &mut out);
        for l in &m.layers {
            push(&l.digest, &mut out);
        }
    }
    Ok(out)
}
