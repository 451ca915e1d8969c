//! The layer cache: a rebuild whose inputs did not change skips compressing.
//!
//! A layer's *cache key* is a sha256 over everything that decides its bytes — the
//! format version, the compression, the epoch, and every entry of its plan — where a
//! source file counts by its identity on disk (device, inode, size, mtime and ctime to
//! the nanosecond), not by its content, so that computing the key reads no file. The
//! key maps to the layer's digest, diff_id and size, recorded in
//! `<layout>/.imgbuild/layers/<key>` after the layer was written. A hit is used only
//! when the blob is still in the layout; otherwise the layer is written as usual.
//!
//! The cache can never change a digest, only skip work: the recorded values are the
//! ones a fresh write produced for the same key. It trusts file identity the way
//! `make` and git's index do: a file rewritten in place with the same size, mtime *and*
//! ctime (which no ordinary tool can set) would be missed. `--no-cache` (and every
//! audit) bypasses it.
//!
//! `key.rs` holds the other key, the *content key*, which hashes the sources' bytes
//! instead of their identity: the one a cache shared between machines needs, which
//! `shared.rs` keeps in a registry repository or an OCI layout.

mod background;
pub mod key;
pub mod shared;

pub use key::content_key;

use crate::compress::Compression;
use crate::digest::Digest;
use crate::format::FormatVersion;
use crate::layer::LayerBlob;
use crate::layout::Layout;
use crate::plan::{Content, EntryKind, LayerPlan};
pub use crate::stamp::FileStamp;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::path::PathBuf;

pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    pub fn new(layout: &Layout) -> LayerCache {
        LayerCache {
            dir: layout.root().join(".imgbuild").join("layers"),
        }
    }

    /// The cache key of `layer` written with these settings.
    pub fn key(
        layer: &LayerPlan,
        format: FormatVersion,
        compression: Compression,
        epoch: u64,
    ) -> Digest {
        let mut h = Sha256::new();
        // The format number is a u32, as before format versions were a type:
        // format-1 keys written by earlier releases still hit.
        let hashed: Result<(), std::convert::Infallible> = hash_plan(
            &mut h,
            b"imgbuild layer cache key v1\0",
            layer,
            (format, compression, epoch),
            |h, content| {
                match content {
                    Content::Path { path, stamp, .. } => {
                        h.update([0]);
                        bytes(h, path.as_os_str().as_encoded_bytes());
                        stamp.hash_into(h);
                    }
                    Content::Inline(data) => {
                        h.update([1]);
                        h.update(Sha256::digest(data.as_slice()));
                    }
                    Content::Spool { spool, offset } => {
                        h.update([2]);
                        bytes(h, spool.source.as_os_str().as_encoded_bytes());
                        spool.source_stamp.hash_into(h);
                        h.update(offset.to_le_bytes());
                    }
                }
                Ok(())
            },
        );
        let Ok(()) = hashed;
        Digest::from_bytes(h.finalize().into())
    }

    /// The layer recorded under `key`, if its blob is still in `layout`.
    pub fn get(
        &self,
        key: &Digest,
        layout: &Layout,
        compression: Compression,
    ) -> Option<LayerBlob> {
        let text = fs::read_to_string(self.dir.join(key.hex())).ok()?;
        let mut parts = text.split_whitespace();
        let digest = Digest::parse(parts.next()?)?;
        let diff_id = Digest::parse(parts.next()?)?;
        let size: u64 = parts.next()?.parse().ok()?;
        let blob_ok =
            fs::metadata(layout.blob_path(&digest)).is_ok_and(|m| m.is_file() && m.len() == size);
        blob_ok.then_some(LayerBlob {
            digest,
            diff_id,
            size,
            media_type: compression.layer_media_type(),
        })
    }

    /// Records `blob` under `key`. Failing to record only costs a future rebuild.
    pub fn put(&self, key: &Digest, blob: &LayerBlob) {
        let record = || -> std::io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let mut temp = crate::layout::temp_in(&self.dir)?;
            std::io::Write::write_all(
                &mut temp,
                format!("{} {} {}\n", blob.digest, blob.diff_id, blob.size).as_bytes(),
            )?;
            temp.persist(
                &self.dir.join(key.hex()),
                crate::atomic::Durability::Unsynced,
            )?;
            Ok(())
        };
        let _ = record();
    }
}

fn bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}

/// Hashes what both layer keys share — `domain`, the format number (a u32), the
/// compression, the epoch and every entry of the plan in normal form — with `file`
/// hashing each regular file's content after its size. The local key hashes a
/// file's identity on disk there, the content key its bytes.
pub(crate) fn hash_plan<E>(
    h: &mut Sha256,
    domain: &[u8],
    layer: &LayerPlan,
    (format, compression, epoch): (FormatVersion, Compression, u64),
    mut file: impl FnMut(&mut Sha256, &Content) -> Result<(), E>,
) -> Result<(), E> {
    h.update(domain);
    h.update(format.number().to_le_bytes());
    bytes(h, compression.as_str().as_bytes());
    h.update(epoch.to_le_bytes());
    h.update((layer.entries.len() as u64).to_le_bytes());
    for e in &layer.entries {
        bytes(h, &e.path);
        for v in [e.mode, e.uid, e.gid] {
            h.update(v.to_le_bytes());
        }
        match &e.kind {
            EntryKind::Dir => h.update([0]),
            EntryKind::Whiteout => h.update([1]),
            EntryKind::Symlink { target } => {
                h.update([2]);
                bytes(h, target);
            }
            EntryKind::Hardlink { target } => {
                h.update([3]);
                bytes(h, target);
            }
            EntryKind::File { content, size } => {
                h.update([4]);
                h.update(size.to_le_bytes());
                file(h, content)?;
            }
        }
    }
    Ok(())
}
