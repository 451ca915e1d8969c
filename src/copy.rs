//! `imgbuild copy SRC DST`: one image from any place an image can be read (a registry,
//! a layout, an archive) to any place one can be written (a registry, a layout, an
//! archive), every platform, byte for byte — crane's `copy` and skopeo's `copy` for
//! the places imgbuild knows. `push` is its special case from a layout to a registry.
//!
//! The image is read through [`crate::source`] and copied with
//! [`copy_image`](crate::source::copy_image) into a layout: the destination's own, or a
//! temporary one that is then published ([`crate::publish`]) or archived
//! ([`crate::archive`]). Nothing is re-serialized: the digest is the source's.

use crate::archive::{self, ArchiveImage};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{media_type_of, Descriptor};
use crate::layout::Layout;
use crate::publish::Publisher;
use crate::reference::{Reference, DEFAULT_TAG};
use crate::registry::client::Options;
use crate::source;

/// What a copy did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Copied {
    /// The image's digest (the same on both sides).
    pub digest: String,
    pub media_type: String,
    /// The destination, as given.
    pub destination: String,
    /// The tags written at the destination.
    pub tags: Vec<String>,
    /// For a registry destination, the image as `registry/repository@digest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Copies the image `src` names to `dst`. Tags at the destination: `dst`'s tag, else
/// `src`'s, else `latest` (a destination naming a digest gets no tag, and must name
/// the source's digest).
pub fn copy(src: &Reference, dst: &Reference, opts: &Options) -> Result<Copied> {
    let source = source::open(src, opts)?;
    let (digest, bytes) = source.root()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(format!("{src}: {digest} is not a manifest or index: {e}")))?;
    let media_type = media_type_of(&value).ok_or_else(|| {
        Error::input(format!(
            "{src}: {digest} is neither a manifest nor an index"
        ))
    })?;
    let root = Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
    let tags = tags(src, dst, &digest)?;
    let name = src.to_string();
    let mut reference = None;
    match dst {
        Reference::Layout { dir, .. } => {
            Layout::check_target(dir, "the destination")?;
            let layout = Layout::create(dir)?;
            source::copy_image(&*source, &name, &digest, &[], &layout, &opts.events)?;
            layout.add_to_index(&root, &tags)?;
        }
        Reference::Archive { kind, file, .. } => {
            let temp = temp_layout()?;
            let layout = Layout::create(&temp.path().join("layout"))?;
            source::copy_image(&*source, &name, &digest, &[], &layout, &opts.events)?;
            let repository = dst_repository(dst);
            archive::write(
                *kind,
                &ArchiveImage {
                    layout: &layout,
                    root: &root,
                    tags: &tags,
                    repository: &repository,
                    mtime: 0,
                },
                file,
            )?;
        }
        Reference::Registry(target) => {
            let publisher = Publisher::connect(target, opts)?;
            let temp = temp_layout()?;
            let layout = Layout::create(&temp.path().join("layout"))?;
            source::copy_image(&*source, &name, &digest, &[], &layout, &opts.events)?;
            let report = publisher.publish(&layout, &root, &tags, &[])?.push;
            reference = Some(report.reference);
        }
    }
    Ok(Copied {
        digest: digest.to_string(),
        media_type,
        destination: dst.to_string(),
        tags,
        reference,
    })
}

fn temp_layout() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| Error::io("cannot create a temporary directory", e))
}

/// The tags to write at `dst`.
fn tags(src: &Reference, dst: &Reference, digest: &Digest) -> Result<Vec<String>> {
    let (dst_tag, dst_digest) = match dst {
        Reference::Registry(r) => (r.tag.clone(), r.digest.clone()),
        Reference::Layout { tag, digest, .. } => (tag.clone(), digest.clone()),
        Reference::Archive { tag, .. } => (tag.as_deref().map(tag_of), None),
    };
    if let Some(d) = dst_digest {
        if d != *digest {
            return Err(Error::input(format!(
                "the destination {dst} names {d}, but the source image is {digest}"
            )));
        }
        return Ok(Vec::new());
    }
    let src_tag = match src {
        Reference::Registry(r) => r.tag.clone(),
        Reference::Layout { tag, .. } => tag.clone(),
        Reference::Archive { tag, .. } => tag.as_deref().map(tag_of),
    };
    Ok(vec![dst_tag
        .or(src_tag)
        .unwrap_or_else(|| DEFAULT_TAG.to_string())])
}

/// The tag of a docker reference `repository:tag` (or a bare tag).
fn tag_of(reference: &str) -> String {
    reference
        .rsplit_once(':')
        .map_or(reference, |(_, t)| t)
        .to_string()
}

/// The repository a docker archive's `RepoTags` name: the destination's `REF`'s
/// repository part when it has one, else `image`.
fn dst_repository(dst: &Reference) -> String {
    match dst {
        Reference::Archive { tag: Some(t), .. } => match t.rsplit_once(':') {
            Some((repo, _)) => repo.to_string(),
            None => "image".to_string(),
        },
        _ => "image".to_string(),
    }
}
