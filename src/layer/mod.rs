//! Write: one layer plan → one compressed blob in the layout, in one streaming pass.
//!
//! tar bytes → sha256 (the diff_id) → compressor → sha256 (the digest) → temp file in
//! the layout → rename. Nothing is read or compressed twice, and memory is bounded by
//! the copy buffer and the compressor's in-flight blocks, whatever the layer's size.

pub mod tar;

use crate::compress::{Compression, Encoder};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::format::FormatVersion;
use crate::layout::Layout;
use crate::plan::LayerPlan;
use std::io;
use std::num::NonZeroUsize;

/// A written layer: its two identities kept apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// sha256 of the compressed bytes: the blob's name.
    pub digest: Digest,
    /// sha256 of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: Digest,
    /// Compressed size in bytes.
    pub size: u64,
    pub media_type: &'static str,
}

/// Writes `layer` into `layout` with every timestamp set to `epoch`, in the bytes of
/// format version `format`.
pub fn write_layer(
    layer: &LayerPlan,
    epoch: u64,
    compression: Compression,
    format: FormatVersion,
    threads: NonZeroUsize,
    layout: &Layout,
) -> Result<LayerBlob> {
    let context = |e: io::Error| {
        let what = format!("cannot write layer {:?}", layer.name);
        let changed = e.get_ref().and_then(|i| {
            i.downcast_ref::<tar::SourceChanged>()
                .map(ToString::to_string)
                .or_else(|| {
                    i.downcast_ref::<crate::beneath::SymlinkInTheWay>()
                        .map(ToString::to_string)
                })
        });
        match changed {
            Some(changed) => Error::io(what, io::Error::other(changed))
                .with_hint("keep the context unchanged while imgbuild builds from it"),
            None => Error::io(what, e),
        }
    };
    // Uncompressed, the blob is the tar: its digest is the diff_id, hashed once.
    let blob = match compression {
        Compression::None => layout.blob_writer_unhashed()?,
        _ => layout.blob_writer()?,
    };
    // Formats 1 and 2 compress alike until format 2's encoder lands in compress::.
    let _ = format;
    let encoder = Encoder::new(compression, blob, threads).map_err(context)?;
    let mut tar = tar::TarWriter::new(HashingWriter::new(encoder), epoch);
    for entry in &layer.entries {
        tar.append(entry).map_err(context)?;
    }
    let (encoder, diff_id, _) = tar.finish().map_err(context)?.finish();
    let blob = encoder.finish().map_err(context)?;
    let (digest, size) = match compression {
        Compression::None => (diff_id.clone(), blob.commit_as(layout, &diff_id)?),
        _ => blob.commit_sized(layout)?,
    };
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
        media_type: compression.layer_media_type(),
    })
}
