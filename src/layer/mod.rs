//! Write: one layer plan → one compressed blob in the layout, in one streaming pass.
//!
//! tar bytes → sha256 (the diff_id) → compressor → sha256 (the digest) → temp file in
//! the layout → rename. Nothing is read or compressed twice, and memory is bounded by
//! the copy buffer and the compressor's in-flight blocks, whatever the layer's size.

pub(crate) mod pipe;
pub mod tar;

use crate::compress::{Compression, Encoder};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::format::FormatVersion;
use crate::layout::{BlobWriter, Layout};
use crate::plan::LayerPlan;
use std::io;
use std::io::Write;
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

/// Writes `layer` into `layout` with every timestamp set to `epoch`, compressed as
/// format version `format` says.
pub fn write_layer(
    layer: &LayerPlan,
    epoch: u64,
    compression: Compression,
    format: FormatVersion,
    threads: NonZeroUsize,
    layout: &Layout,
) -> Result<LayerBlob> {
    write_layer_reporting(layer, epoch, compression, format, threads, layout, &|_| {})
}

/// [`write_layer`], telling `progress` how many tar bytes have gone into the
/// compressor so far, once per chunk of the pipeline (every 256 KiB or so).
pub fn write_layer_reporting(
    layer: &LayerPlan,
    epoch: u64,
    compression: Compression,
    format: FormatVersion,
    threads: NonZeroUsize,
    layout: &Layout,
    progress: &(dyn Fn(u64) + Sync),
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
    let settings = (epoch, compression, format, threads);
    let (blob, diff_id) = pipeline(layer, settings, blob, progress).map_err(context)?;
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

/// Runs the three stages of a layer write on three threads, joined by bounded pipes:
///
/// 1. the calling thread produces the tar (reads the sources, writes the headers);
/// 2. a second thread hashes the tar (the diff_id) and feeds the compressor, whose
///    own workers (gzip) or libzstd's (zstd) compress;
/// 3. a third thread hashes the compressed bytes (the digest) and writes them to the
///    blob's temp file.
///
/// Every stage sees the bytes in order, and the compressor's output does not depend
/// on how its input is chunked, so the bytes do not depend on the scheduling. Memory
/// is bounded: two pipes of at most `(pipe::DEPTH + 2) × pipe::CHUNK` bytes each,
/// plus the compressor's bounded in-flight blocks.
///
/// Returns the blob (not yet committed) and the diff_id. On any failure the first
/// error is returned (not the echo of it that the other stages see) and the blob is
/// dropped uncommitted.
fn pipeline(
    layer: &LayerPlan,
    (epoch, compression, format, threads): (u64, Compression, FormatVersion, NonZeroUsize),
    mut blob: BlobWriter,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<(BlobWriter, Digest)> {
    let (tar_tx, tar_rx) = pipe::pipe();
    let (out_tx, out_rx) = pipe::pipe();
    std::thread::scope(|s| {
        let compressor = std::thread::Builder::new()
            .name("imgbuild-layer-compress".into())
            .spawn_scoped(s, move || -> io::Result<Digest> {
                let encoder = Encoder::new(compression, format, out_tx, threads)?;
                let mut hashing = HashingWriter::new(encoder);
                let mut done = 0u64;
                tar_rx.for_each(|chunk| {
                    hashing.write_all(chunk)?;
                    done += chunk.len() as u64;
                    progress(done);
                    Ok(())
                })?;
                let (encoder, diff_id, _) = hashing.finish();
                encoder.finish()?.finish()?;
                Ok(diff_id)
            })?;
        let writer = std::thread::Builder::new()
            .name("imgbuild-layer-write".into())
            .spawn_scoped(s, move || -> io::Result<BlobWriter> {
                out_rx.for_each(|chunk| blob.write_all(chunk))?;
                blob.flush()?;
                Ok(blob)
            })?;
        let produced = (|| {
            let mut tar = tar::TarWriter::new(tar_tx, epoch);
            for entry in &layer.entries {
                tar.append(entry)?;
            }
            tar.finish()?.finish().map(|_| ())
        })();
        let compressed = joined(compressor.join());
        let written = joined(writer.join());
        // The first real error, in pipeline order; the others are its echoes.
        match (produced, compressed, written) {
            (Ok(()), Ok(diff_id), Ok(blob)) => Ok((blob, diff_id)),
            (p, c, w) => Err([p.err(), c.err(), w.err()]
                .into_iter()
                .flatten()
                .min_by_key(pipe::is_broken)
                .unwrap_or_else(|| io::Error::other("layer pipeline failed"))),
        }
    })
}

fn joined<T>(r: std::thread::Result<io::Result<T>>) -> io::Result<T> {
    r.unwrap_or_else(|_| Err(io::Error::other("a layer writer thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::FileStamp;
    use crate::plan::{Content, Entry, EntryKind};
    use std::sync::Arc;

    fn file(path: &str, content: Content, size: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File { content, size },
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    /// Several MiB of inline files, so that every pipe and the compressor's
    /// in-flight blocks fill up many times over.
    fn big_layer() -> LayerPlan {
        let entries = (0..40)
            .map(|i| {
                let bytes: Vec<u8> = (0..200_000u32)
                    .map(|j| (j.wrapping_mul(2_654_435_761) >> (i % 24)) as u8)
                    .collect();
                let size = bytes.len() as u64;
                file(&format!("f{i:02}"), Content::Inline(Arc::new(bytes)), size)
            })
            .collect();
        LayerPlan {
            name: "big".into(),
            entries,
        }
    }

    fn blobs(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
            .expect("blobs dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn bytes_are_the_same_for_every_thread_count_kind_and_format() {
        let layer = big_layer();
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            for format in FormatVersion::ALL {
                let mut seen = Vec::new();
                for n in [1, 2, 7] {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let layout = Layout::create(dir.path()).expect("layout");
                    let threads = NonZeroUsize::new(n).expect("not zero");
                    let blob = write_layer(&layer, 0, compression, format, threads, &layout)
                        .expect("write");
                    let bytes = std::fs::read(layout.blob_path(&blob.digest)).expect("blob");
                    assert_eq!(
                        Digest::of(&bytes),
                        blob.digest,
                        "digest of the stored bytes"
                    );
                    assert_eq!(bytes.len() as u64, blob.size);
                    seen.push((blob.digest, blob.diff_id));
                }
                assert!(
                    seen.windows(2).all(|w| w[0] == w[1]),
                    "{compression} format {format}: {seen:?}"
                );
            }
        }
    }

    /// An error while producing the tar is the error reported (not the echo the
    /// other stages see), and nothing is committed.
    #[test]
    fn a_source_that_changed_fails_the_layer_and_commits_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.txt");
        std::fs::write(&src, b"short").expect("write source");
        let stamp = FileStamp::of(&std::fs::metadata(&src).expect("stat"));
        let mut layer = big_layer();
        // Planned at 10 bytes, now 5: the source changed after planning.
        layer.entries.push(file(
            "z-changed",
            Content::Path {
                context: std::sync::Arc::from(dir.path()),
                path: src.clone(),
                stamp,
            },
            10,
        ));
        let out = dir.path().join("out");
        let layout = Layout::create(&out).expect("layout");
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let threads = NonZeroUsize::new(2).expect("not zero");
            let err = write_layer(&layer, 0, compression, FormatVersion::V2, threads, &layout)
                .expect_err("the source changed");
            let text = format!("{err} {err:?}");
            assert!(text.contains("changed while it was being read"), "{text}");
            assert!(!text.contains("other end of the layer pipeline"), "{text}");
        }
        assert!(
            blobs(&out).is_empty(),
            "nothing committed: {:?}",
            blobs(&out)
        );
    }
}
