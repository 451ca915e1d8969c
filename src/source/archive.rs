//! An image in an archive file (`oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`),
//! unpacked when opened into a temporary layout that lives as long as the source.
//!
//! An archive is untrusted input: only regular files are taken from it, each written
//! beneath the temporary directory (`tar`'s `unpack_in` refuses `..`, absolute paths
//! and paths through links), and every blob is checked against its digest when it is
//! read, as for any layout. Two shapes are read:
//!
//! - an OCI layout inside (`oci-layout`, `index.json`, `blobs/`): oci-archives, and
//!   docker archives written by imgbuild or Docker 25 and later;
//! - a legacy docker archive (`manifest.json` naming a config file and layer tars, as
//!   `docker save` before 25 and skopeo write): its config and layers become blobs of
//!   the temporary layout under a manifest made for them (OCI media types; each layer
//!   as stored, gzip, zstd or plain tar by its magic bytes), so its digest is that of
//!   this synthesized manifest, as skopeo's is of the one it makes.

use super::{ImageSource, LayoutSource};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{canonical_json, Descriptor, ANNOTATION_REF_NAME, CONFIG_V1, MANIFEST_V1};
use crate::layout::Layout;
use crate::reference::Reference;
use std::io::Read;
use std::path::{Component, Path};

/// An image of an archive, read from its unpacked copy.
pub struct ArchiveSource {
    inner: LayoutSource,
    /// Removed (with the unpacked copy) when the source is dropped.
    _dir: tempfile::TempDir,
}

impl ArchiveSource {
    /// Unpacks the archive `reference` names and finds its image: by tag, or the
    /// archive's only image. Exit 2 for a missing file, an archive that is neither
    /// shape, or a tag it lacks.
    pub fn open(reference: &Reference) -> Result<ArchiveSource> {
        let Reference::Archive { file, tag, .. } = reference else {
            return Err(Error::input(format!(
                "{reference} is not an archive reference"
            )));
        };
        let (dir, root) = unpacked(reference)?;
        if !root.join("index.json").is_file() {
            if !root.join("manifest.json").is_file() {
                return Err(Error::input(format!(
                    "{reference}: the archive holds neither an OCI layout (index.json) nor a docker manifest.json"
                ))
                .with_path(file));
            }
            from_docker_manifest(reference, &root, tag.as_deref())?;
        } else if let Some(t) = tag.as_deref().filter(|t| t.contains(':')) {
            // `repository:tag` names a docker archive's RepoTags entry, repository
            // included: the layout inside knows only the tag.
            let entries = match root.join("manifest.json").is_file() {
                true => docker_entries(reference, &root)?,
                false => Vec::new(),
            };
            if !entries
                .iter()
                .flat_map(repo_tags)
                .any(|rt| names_it(t, &rt))
            {
                let all: Vec<String> = entries.iter().flat_map(repo_tags).collect();
                return Err(
                    Error::input(format!("{reference}: no image is tagged {t:?}"))
                        .with_hint(format!("its tags: {}", all.join(", "))),
                );
            }
        }
        let layout = Layout::open(&root)?;
        let digest = find(reference, &layout, tag.as_deref())?;
        Ok(ArchiveSource {
            inner: LayoutSource::new(reference.to_string(), layout, digest)?,
            _dir: dir,
        })
    }

    /// Every tag of the archive `reference` names (its tag, if any, is not looked at).
    pub fn tags(reference: &Reference) -> Result<Vec<String>> {
        let (dir, root) = unpacked(reference)?;
        let tags = if root.join("index.json").is_file() {
            Layout::open(&root)?.tags()?
        } else {
            docker_entries(reference, &root)?
                .iter()
                .flat_map(repo_tags)
                .collect()
        };
        drop(dir);
        Ok(tags)
    }

    /// The unpacked copy, as a layout (for pushing from it).
    pub fn layout(&self) -> &Layout {
        self.inner.layout()
    }
}

impl ImageSource for ArchiveSource {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn root(&self) -> Result<(Digest, Vec<u8>)> {
        self.inner.root()
    }

    fn json_object(&self, digest: &Digest, is_manifest: bool) -> Result<Vec<u8>> {
        self.inner.json_object(digest, is_manifest)
    }

    fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + Send>> {
        self.inner.blob(digest, size)
    }
}

/// The archive `reference` names, unpacked into a new temporary directory: the
/// directory (removed when dropped) and the unpacked root in it.
fn unpacked(reference: &Reference) -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    let Reference::Archive { file, .. } = reference else {
        return Err(Error::input(format!(
            "{reference} is not an archive reference"
        )));
    };
    if !file.is_file() {
        return Err(Error::input(format!(
            "{reference}: {} does not exist or is not a file",
            file.display()
        ))
        .with_path(file)
        .with_hint("check the path: an archive is a tar file written by `imgbuild build --out oci-archive:FILE`, `docker save` or `skopeo copy … docker-archive:FILE`"));
    }
    let dir =
        tempfile::tempdir().map_err(|e| Error::io("cannot create a temporary directory", e))?;
    let root = dir.path().join("layout");
    unpack(file, &root)?;
    Ok((dir, root))
}

/// A legacy docker archive's `manifest.json`: its list of images.
fn docker_entries(reference: &Reference, root: &Path) -> Result<Vec<serde_json::Value>> {
    let manifest_path = root.join("manifest.json");
    let text = std::fs::read(&manifest_path)
        .map_err(|e| Error::io_path("cannot read", &manifest_path, e))?;
    serde_json::from_slice(&text).map_err(|e| {
        Error::input(format!(
            "{reference}: its manifest.json is not a list of images ({e})"
        ))
    })
}

/// An entry's `RepoTags`.
fn repo_tags(entry: &serde_json::Value) -> Vec<String> {
    entry["RepoTags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Unpacks the regular files of the tar `file` beneath `root`.
fn unpack(file: &Path, root: &Path) -> Result<()> {
    let bad = |why: String| {
        Error::input(format!("{}: {why}", file.display()))
            .with_path(file)
            .with_hint("the archive is damaged or is not an image archive")
    };
    std::fs::create_dir_all(root).map_err(|e| Error::io_path("cannot create", root, e))?;
    let f = std::fs::File::open(file).map_err(|e| Error::io_path("cannot read", file, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(f));
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a tar archive ({e})")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| bad(format!("an entry has an unreadable name ({e})")))?
            .into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(bad(format!(
                "the entry {} would be written outside the archive's directory",
                path.display()
            )));
        }
        let unpacked = entry
            .unpack_in(root)
            .map_err(|e| bad(format!("cannot unpack {} ({e})", path.display())))?;
        if !unpacked {
            return Err(bad(format!(
                "the entry {} would be written outside the archive's directory",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The image of `layout` named by `tag` (an `org.opencontainers.image.ref.name`, or
/// for a docker reference `repository:tag` its tag), or its only image.
fn find(reference: &Reference, layout: &Layout, tag: Option<&str>) -> Result<Digest> {
    let index = layout.read_index()?;
    let names = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
    let tags: Vec<String> = index.manifests.iter().filter_map(names).collect();
    let found = match tag {
        Some(t) => index.manifests.iter().find(|d| {
            names(d).is_some_and(|n| n == t || t.rsplit_once(':').is_some_and(|(_, x)| x == n))
        }),
        None => {
            let mut digests: Vec<&Digest> = index.manifests.iter().map(|d| &d.digest).collect();
            digests.sort();
            digests.dedup();
            match digests.as_slice() {
                [one] => index.manifests.iter().find(|d| d.digest == **one),
                _ => None,
            }
        }
    };
    found.map(|d| d.digest.clone()).ok_or_else(|| {
        let what = match tag {
            Some(t) => format!("no image is tagged {t:?}"),
            None if index.manifests.is_empty() => "the archive holds no image".to_string(),
            None => "the archive holds several images; say which with :TAG".to_string(),
        };
        Error::input(format!("{reference}: {what}")).with_hint(if tags.is_empty() {
            "the archive's images have no tags".to_string()
        } else {
            format!("its tags: {}", tags.join(", "))
        })
    })
}

/// Whether `wanted` (a tag, or a docker reference `[host/]repo:tag`) names the
/// `repo_tag` of a docker archive (skopeo writes them in full: `docker.io/library/x:1`).
fn names_it(wanted: &str, repo_tag: &str) -> bool {
    if wanted == repo_tag {
        return true;
    }
    if !wanted.contains(':') {
        return repo_tag.rsplit_once(':').is_some_and(|(_, t)| t == wanted);
    }
    match (Reference::parse(wanted), Reference::parse(repo_tag)) {
        (Ok(Reference::Registry(a)), Ok(Reference::Registry(b))) => {
            a.registry == b.registry && a.repository == b.repository && a.tag == b.tag
        }
        _ => false,
    }
}

/// A legacy docker archive's `manifest.json` entry for `tag` (or its only entry),
/// turned into an image of the layout at `root`: its config and layers as blobs, a
/// manifest for them, and an index entry named by the tag.
fn from_docker_manifest(reference: &Reference, root: &Path, tag: Option<&str>) -> Result<()> {
    let bad = |why: String| Error::input(format!("{reference}: {why}"));
    let entries = docker_entries(reference, root)?;
    let entry = match tag {
        Some(t) => entries
            .iter()
            .find(|e| repo_tags(e).iter().any(|rt| names_it(t, rt))),
        None if entries.len() == 1 => entries.first(),
        None => None,
    }
    .ok_or_else(|| {
        let all: Vec<String> = entries.iter().flat_map(repo_tags).collect();
        bad(match tag {
            Some(t) => format!("no image is tagged {t:?}"),
            None => "the archive holds several images; say which with :REF".to_string(),
        })
        .with_hint(format!("its tags: {}", all.join(", ")))
    })?;
    let layout = Layout::create(root)?;
    let file = |v: &serde_json::Value| -> Result<std::path::PathBuf> {
        let rel = v
            .as_str()
            .ok_or_else(|| bad("its manifest.json names a file that is not a string".into()))?;
        let rel = Path::new(rel);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!(
                "its manifest.json names {} outside the archive",
                rel.display()
            )));
        }
        Ok(root.join(rel))
    };
    let store = |path: &Path| -> Result<(Digest, u64, [u8; 4])> {
        let mut f = std::fs::File::open(path).map_err(|e| {
            bad(format!(
                "its manifest.json names {}, which it does not hold ({e})",
                path.display()
            ))
        })?;
        let mut magic = [0u8; 4];
        let n = f
            .read(&mut magic)
            .map_err(|e| Error::io_path("cannot read", path, e))?;
        let mut w = layout.blob_writer()?;
        std::io::Write::write_all(&mut w, &magic[..n])
            .and_then(|()| std::io::copy(&mut f, &mut w).map(|_| ()))
            .map_err(|e| Error::io_path("cannot copy", path, e))?;
        let (digest, size) = w.commit_sized(&layout)?;
        Ok((digest, size, magic))
    };
    let (config, config_size, _) = store(&file(&entry["Config"])?)?;
    let mut layers = Vec::new();
    for l in entry["Layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (digest, size, magic) = store(&file(l)?)?;
        let media_type = match magic {
            [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
            [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        layers.push(Descriptor::new(media_type, digest, size));
    }
    let manifest = canonical_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V1,
        "config": Descriptor::new(CONFIG_V1, config, config_size),
        "layers": layers,
    }));
    let digest = layout.write_blob(&manifest)?;
    let descriptor = Descriptor::new(MANIFEST_V1, digest, manifest.len() as u64);
    let tags: Vec<String> = match tag {
        Some(t) => vec![t.rsplit_once(':').map_or(t, |(_, x)| x).to_string()],
        None => repo_tags(entry)
            .iter()
            .filter_map(|rt| rt.rsplit_once(':').map(|(_, x)| x.to_string()))
            .collect(),
    };
    layout.add_to_index(&descriptor, &tags)
}
