//! `imgbuild push`: copy an image from a layout to a registry; print its digest.

use super::{registry_ref, write_report, Context};
use crate::cli::PushArgs;
use imgbuild::image::Descriptor;
use imgbuild::publish::Publisher;
use imgbuild::reference::Reference;
use imgbuild::source::{ArchiveSource, ImageSource, LayoutSource};
use imgbuild::{Error, Result};

pub(super) fn run(args: PushArgs, ctx: &Context) -> Result<()> {
    let source =
        Reference::parse(&args.source).map_err(|m| Error::input(format!("source: {m}")))?;
    let source_tag = match &source {
        Reference::Layout { tag, .. } => tag.clone(),
        // A docker reference's tag is what follows its last ':' (`repo:tag`).
        Reference::Archive { tag, .. } => tag
            .as_deref()
            .map(|t| t.rsplit_once(':').map_or(t, |(_, x)| x).to_string()),
        Reference::Registry(_) => {
            return Err(Error::input(format!(
                "source {:?} is a registry reference; imgbuild push copies from an OCI layout (oci:DIR[:TAG]) or an archive (oci-archive:FILE, docker-archive:FILE)",
                args.source
            )));
        }
    };
    let source_tag = &source_tag;
    let mut dest = registry_ref(&args.destination, "destination")?;
    if !imgbuild::reference::has_explicit_tag(&args.destination) {
        dest.tag = None;
    }
    // An archive is unpacked into a temporary layout, pushed from there.
    let (image, _archive): (LayoutSource, Option<ArchiveSource>) = match &source {
        Reference::Archive { .. } => {
            let archive = ArchiveSource::open(&source)?;
            let (digest, _) = archive.root()?;
            let image = LayoutSource::new(source.to_string(), archive.layout().clone(), digest)?;
            (image, Some(archive))
        }
        _ => (LayoutSource::open(&source)?, None),
    };
    let (digest, bytes) = image.root()?;
    let layout = image.layout();
    let media_type = media_type_of(&bytes).ok_or_else(|| {
        Error::input(format!(
            "{}: blob {digest} is neither a manifest nor an index",
            args.source
        ))
    })?;
    let root = Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
    let tags: Vec<String> = match (&dest.digest, &dest.tag, source_tag) {
        (Some(d), _, _) if *d != digest => {
            return Err(Error::input(format!(
                "destination names {d}, but the source image is {digest}"
            )))
        }
        (Some(_), _, _) => Vec::new(),
        (None, Some(t), _) => vec![t.clone()],
        (None, None, Some(t)) => vec![t.clone()],
        (None, None, None) => vec![imgbuild::reference::DEFAULT_TAG.to_string()],
    };
    let publisher = Publisher::connect(&dest, &ctx.registry_options())?;
    let report = publisher.publish(layout, &root, &tags, &[])?.push;
    let text = if args.json {
        serde_json::to_string(&report).map_err(|e| Error::input(e.to_string()))?
    } else {
        digest.to_string()
    };
    write_report(&text)
}

/// The media type a manifest or index names itself with (or its shape implies).
fn media_type_of(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    imgbuild::image::media_type_of(&v)
}
