//! An image in an OCI image layout on disk.

use super::{ImageSource, VerifyingReader};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ANNOTATION_REF_NAME;
use crate::layout::Layout;
use crate::reference::Reference;
use std::io::Read;

/// An image of a layout, resolved from `oci:DIR`, `oci:DIR:TAG` or `oci:DIR@digest`.
pub struct LayoutSource {
    name: String,
    layout: Layout,
    digest: Digest,
}

impl LayoutSource {
    /// Opens the layout and finds the image the reference names (by digest, by tag,
    /// or the layout's only image); exit 2 when there is none.
    pub fn open(reference: &Reference) -> Result<LayoutSource> {
        let (layout, digest) = resolve_layout_image(reference)?;
        Ok(LayoutSource {
            name: reference.to_string(),
            layout,
            digest,
        })
    }

    /// The image `digest` of `layout`, which must hold it; `name` is how messages
    /// name it.
    pub fn new(name: impl Into<String>, layout: Layout, digest: Digest) -> Result<LayoutSource> {
        let name = name.into();
        if !layout.has_blob(&digest) {
            return Err(Error::input(format!(
                "{name}: the layout {} holds no blob {digest}",
                layout.root().display()
            )));
        }
        Ok(LayoutSource {
            name,
            layout,
            digest,
        })
    }

    /// The image of the opened `layout` that `tag` names, or without a tag the
    /// layout's only image; exit 2 when there is none. `name` is how messages name
    /// it, `shown` how the hint names the layout's directory.
    pub fn find(
        name: impl Into<String>,
        layout: Layout,
        tag: Option<&str>,
        shown: &str,
    ) -> Result<LayoutSource> {
        let name = name.into();
        let digest = find_image(&layout, &name, tag, shown)?;
        LayoutSource::new(name, layout, digest)
    }

    /// The layout the image is in.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

impl ImageSource for LayoutSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn root(&self) -> Result<(Digest, Vec<u8>)> {
        Ok((self.digest.clone(), self.layout.read_blob(&self.digest)?))
    }

    fn json_object(&self, digest: &Digest, _is_manifest: bool) -> Result<Vec<u8>> {
        self.layout.read_blob(digest)
    }

    fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + Send>> {
        if !self.layout.has_blob(digest) {
            return Err(Error::input(format!(
                "{}: the layout holds no blob {digest}",
                self.name
            )));
        }
        let path = self.layout.blob_path(digest);
        let file =
            std::fs::File::open(&path).map_err(|e| Error::io_path("cannot open", &path, e))?;
        Ok(Box::new(VerifyingReader::new(file, digest.clone(), size)))
    }

    /// A copy between layouts, each blob verified as it streams
    /// ([`Layout::import_blob`]).
    fn copy_blobs(
        &self,
        wanted: &[(Digest, u64)],
        into: &Layout,
        stored: &(dyn Fn(&Digest, u64) + Sync),
    ) -> Result<()> {
        for (digest, size) in wanted {
            if !into.has_blob(digest) {
                into.import_blob(&self.layout, digest)?;
                stored(digest, *size);
            }
        }
        Ok(())
    }
}

/// The image a layout reference names: by digest, by tag, or the layout's only image.
fn resolve_layout_image(reference: &Reference) -> Result<(Layout, Digest)> {
    let (dir, tag, digest) = match reference {
        Reference::Layout { dir, tag, digest } => (dir, tag, digest),
        Reference::Registry(_) | Reference::Archive { .. } => {
            return Err(Error::input(format!(
                "{reference} is not a layout reference; expected oci:DIR[:TAG]"
            )))
        }
    };
    let layout = Layout::open(dir)?;
    let digest = match digest {
        Some(d) => d.clone(),
        None => find_image(
            &layout,
            &reference.to_string(),
            tag.as_deref(),
            &layout.root().display().to_string(),
        )?,
    };
    if !layout.has_blob(&digest) {
        return Err(
            Error::input(format!("{reference}: the layout holds no blob {digest}")).with_hint(
                "check the digest: `imgbuild inspect oci:DIR:TAG` shows the digests a tag leads to",
            ),
        );
    }
    Ok((layout, digest))
}

/// The image of `layout` that `tag` names, or without a tag its only image; `name`
/// names it in messages, `shown` is the layout's directory as the hint shows it.
fn find_image(layout: &Layout, name: &str, tag: Option<&str>, shown: &str) -> Result<Digest> {
    match tag {
        Some(t) => match layout.resolve_tag(t)? {
            Some(d) => Ok(d.digest),
            None => Err(Error::input(format!("{name}: no image is tagged {t:?}"))
                .with_hint(tags_hint(layout, shown)?)),
        },
        None => {
            let index = layout.read_index()?;
            let mut digests: Vec<&Digest> = index.manifests.iter().map(|m| &m.digest).collect();
            digests.sort();
            digests.dedup();
            match digests.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(Error::input(format!("{name}: the layout holds no image"))),
                _ => Err(Error::input(format!(
                    "{name}: the layout holds several images; say which"
                ))
                .with_hint(tags_hint(layout, shown)?)),
            }
        }
    }
}

fn tags_hint(layout: &Layout, shown: &str) -> Result<String> {
    let tags: Vec<String> = layout
        .read_index()?
        .manifests
        .iter()
        .filter_map(|m| m.annotations.get(ANNOTATION_REF_NAME).cloned())
        .collect();
    let by_digest = format!("oci:{shown}@sha256:…");
    Ok(if tags.is_empty() {
        format!("name the image by digest: {by_digest}")
    } else {
        format!(
            "tags in this layout: {}; or name the image by digest: {by_digest}",
            tags.join(", ")
        )
    })
}
