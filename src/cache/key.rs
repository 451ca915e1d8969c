//! The content key of a layer: the same on every machine that has the same sources.
//!
//! The local layer cache keys on the sources' identity on disk, which costs no read
//! but means nothing on another machine. A cache shared between machines needs a key
//! made only of what decides the layer's bytes: the format version, the compression,
//! the epoch, and every entry of the layer's plan in normal form, with each regular
//! file counted by the BLAKE3 hash of its bytes. docs/cache.md lists every field in order.
//!
//! What the key leaves out is as important: mtimes, inode numbers, devices, owners on
//! disk and the context's location never reach a plan entry (the plan sets them from
//! the recipe), and a file's path in the context is not hashed either — only its path
//! in the image and its bytes. The layer's name is left out too: it names no byte of
//! the blob.

use crate::compress::Compression;
use crate::digest::Digest;
use crate::format::FormatVersion;
use crate::plan::{Content, EntryKind, LayerPlan};
use crate::prehash::{hash_context_file, hash_exactly, Prehash};
use sha2::{Digest as _, Sha256};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

/// The first bytes hashed: a new layout of the key is a new tag here, so that keys
/// of different layouts can never meet.
const DOMAIN: &[u8] = b"imgbuild layer content key v2\0";

/// The content key of `layer` written with these settings. Reads every source file of
/// the layer once (through the same checked opens as the writer), on up to `threads`
/// threads: an error means a source cannot be read, which writing the layer will
/// report properly.
///
/// Files `prehashed` already holds at their planned stamp are not read again.
pub fn content_key(
    layer: &LayerPlan,
    format: FormatVersion,
    compression: Compression,
    epoch: u64,
    threads: NonZeroUsize,
    prehashed: Option<&Prehash>,
) -> io::Result<Digest> {
    let mut hashes = file_hashes(layer, threads, prehashed)?.into_iter();
    let mut h = Sha256::new();
    super::hash_plan(
        &mut h,
        DOMAIN,
        layer,
        (format, compression, epoch),
        |h, _content| {
            let hash = hashes
                .next()
                .ok_or_else(|| io::Error::other("internal: a file entry was not hashed"))?;
            h.update(hash);
            Ok::<(), io::Error>(())
        },
    )?;
    Ok(Digest::from_bytes(h.finalize().into()))
}

/// The BLAKE3 hash of every regular file entry's bytes, in entry order, hashed on up to
/// `threads` threads (a layer is often one big tree: hashing it on one core would
/// cost more than the download the key saves).
fn file_hashes(
    layer: &LayerPlan,
    threads: NonZeroUsize,
    prehashed: Option<&Prehash>,
) -> io::Result<Vec<[u8; 32]>> {
    let files: Vec<(&Content, u64)> = layer
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File { content, size } => Some((content, *size)),
            _ => None,
        })
        .collect();
    if let Some(p) = prehashed {
        p.finish();
    }
    let known = |content: &Content| match (content, prehashed) {
        (Content::Path { path, stamp, .. }, Some(p)) => p.get(path, stamp),
        _ => None,
    };
    let slots: Vec<Mutex<Option<io::Result<[u8; 32]>>>> = files
        .iter()
        .map(|(content, _)| Mutex::new(known(content).map(Ok)))
        .collect();
    // Biggest first: a big file taken last would leave the other threads idle.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(files[i].1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = threads.get().min(files.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = vec![0u8; 256 * 1024];
                let mut root = None;
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (content, size) = files[i];
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    if slots[i].lock().is_ok_and(|slot| slot.is_some()) {
                        continue;
                    }
                    let r = content_hash(content, size, &mut buf, &mut root);
                    failed.fetch_or(r.is_err(), Ordering::Relaxed);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| match slot.into_inner() {
            Ok(Some(r)) => r,
            _ => Err(io::Error::other("a source file was not hashed")),
        })
        .collect()
}

/// The BLAKE3 hash of the `size` bytes a regular file entry will hold, wherever they come
/// from (a context file, the recipe, an archive's member): the same bytes give the
/// same hash whichever way they reach the layer.
/// `root` keeps the context last opened (a layer's files mostly share one).
fn content_hash(
    content: &Content,
    size: u64,
    buf: &mut [u8],
    root: &mut Option<(Arc<Path>, OwnedFd)>,
) -> io::Result<[u8; 32]> {
    match content {
        Content::Inline(data) => Ok(*blake3::hash(data.as_slice()).as_bytes()),
        Content::Path {
            context,
            path,
            stamp,
        } => hash_context_file(root, context, path, stamp, size, buf),
        Content::Spool { spool, offset } => {
            let hash = hash_exactly(spool.reader_at(*offset), size, &spool.source, buf)?;
            spool.check_unchanged()?;
            Ok(hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, PlanOptions};
    use crate::platform::Platform;
    use crate::recipe::{Recipe, RecipeSource};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    const THREADS: NonZeroUsize = NonZeroUsize::MIN.saturating_add(1);

    const RECIPE: &str = r#"
[[layer]]
name = "app"
  [[layer.copy]]
  src = "app"
  dst = "/app"
  [[layer.file]]
  path = "/etc/app.conf"
  content = "a = 1\n"
"#;

    fn context(root: &Path) {
        fs::create_dir_all(root.join("app/bin")).expect("mkdir");
        fs::write(root.join("app/bin/tool"), b"#!/bin/sh\necho tool\n").expect("write");
        fs::write(root.join("app/data.txt"), vec![7u8; 300_000]).expect("write");
        std::os::unix::fs::symlink("bin/tool", root.join("app/link")).expect("symlink");
    }

    /// The first layer of `recipe`'s plan in the context at `root`.
    fn layer_of(root: &Path, recipe: &str) -> LayerPlan {
        let source = RecipeSource {
            path: root.join("recipe.toml"),
            text: recipe.to_string(),
        };
        let recipe = Recipe::parse(source, root.to_path_buf()).expect("recipe");
        let mut plan = plan::resolve(&recipe, &Platform::linux_amd64(), &PlanOptions::default())
            .expect("plan");
        plan.layers.remove(0)
    }

    fn key_of(root: &Path, recipe: &str) -> Digest {
        let layer = layer_of(root, recipe);
        content_key(
            &layer,
            FormatVersion::V2,
            Compression::Gzip,
            0,
            THREADS,
            None,
        )
        .expect("key")
    }

    fn touch_all(root: &Path, when: SystemTime) {
        for rel in ["app/bin/tool", "app/data.txt"] {
            let f = fs::File::options()
                .append(true)
                .open(root.join(rel))
                .expect("open");
            f.set_modified(when).expect("set mtime");
        }
    }

    #[test]
    fn a_copied_context_with_other_mtimes_owners_and_location_has_the_same_key() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        let b_root = b.path().join("somewhere/else");
        context(a.path());
        context(&b_root);
        touch_all(
            a.path(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        );
        touch_all(&b_root, SystemTime::now());
        // Other owners on disk (possible when the tests run as root).
        for rel in ["app/bin/tool", "app/data.txt"] {
            let _ = std::os::unix::fs::chown(b_root.join(rel), Some(4321), Some(4321));
        }
        assert_eq!(key_of(a.path(), RECIPE), key_of(&b_root, RECIPE));
    }

    #[test]
    fn files_hashed_while_planning_give_the_key_read_afresh_and_are_used() {
        let a = tempfile::tempdir().expect("tmp");
        context(a.path());
        let source = RecipeSource {
            path: a.path().join("recipe.toml"),
            text: RECIPE.to_string(),
        };
        let recipe = Recipe::parse(source, a.path().to_path_buf()).expect("recipe");
        let prehash = Prehash::start(2);
        let options = PlanOptions {
            prehash: Some(prehash.clone()),
            ..PlanOptions::default()
        };
        let layer = plan::resolve(&recipe, &Platform::linux_amd64(), &options)
            .expect("plan")
            .layers
            .remove(0);
        let with = content_key(
            &layer,
            FormatVersion::V2,
            Compression::Gzip,
            0,
            THREADS,
            Some(&prehash),
        )
        .expect("key");
        assert_eq!(with, key_of(a.path(), RECIPE));
        let data = a.path().join("app/data.txt");
        let stamp = crate::stamp::FileStamp::of(&fs::symlink_metadata(&data).expect("stat"));
        assert_eq!(
            prehash.get(&data, &stamp),
            Some(*blake3::hash(&[7u8; 300_000]).as_bytes()),
            "the walk offered the file and it was hashed"
        );
    }

    #[test]
    fn one_byte_of_one_file_changes_the_key() {
        let a = tempfile::tempdir().expect("tmp");
        context(a.path());
        let before = key_of(a.path(), RECIPE);
        let mut bytes = vec![7u8; 300_000];
        bytes[299_999] = 8;
        fs::write(a.path().join("app/data.txt"), bytes).expect("write");
        assert_ne!(before, key_of(a.path(), RECIPE));
    }

    #[test]
    fn one_mode_changes_the_key() {
        let a = tempfile::tempdir().expect("tmp");
        context(a.path());
        let before = key_of(a.path(), RECIPE);
        fs::set_permissions(
            a.path().join("app/bin/tool"),
            fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        let after = key_of(a.path(), RECIPE);
        assert_ne!(before, after, "a copied file keeps its executable bit");
        let with_mode = RECIPE.replace("dst = \"/app\"", "dst = \"/app\"\n  mode = 0o700");
        assert_ne!(after, key_of(a.path(), &with_mode));
    }

    #[test]
    fn one_path_changes_the_key() {
        let a = tempfile::tempdir().expect("tmp");
        context(a.path());
        let before = key_of(a.path(), RECIPE);
        fs::rename(a.path().join("app/data.txt"), a.path().join("app/datb.txt")).expect("mv");
        assert_ne!(before, key_of(a.path(), RECIPE));
        let elsewhere = RECIPE.replace("/etc/app.conf", "/etc/app.cfg");
        assert_ne!(key_of(a.path(), RECIPE), key_of(a.path(), &elsewhere));
    }

    #[test]
    fn the_settings_change_the_key() {
        let a = tempfile::tempdir().expect("tmp");
        context(a.path());
        let layer = layer_of(a.path(), RECIPE);
        let key = |f, c, e| content_key(&layer, f, c, e, THREADS, None).expect("key");
        let base = key(FormatVersion::V2, Compression::Gzip, 0);
        assert_ne!(base, key(FormatVersion::V1, Compression::Gzip, 0));
        assert_ne!(base, key(FormatVersion::V2, Compression::Zstd, 0));
        assert_ne!(base, key(FormatVersion::V2, Compression::Gzip, 1));
    }

    #[test]
    fn a_source_that_shrank_since_planning_is_an_error_not_a_key() {
        let a = tempfile::tempdir().expect("tmp");
        context(a.path());
        let layer = layer_of(a.path(), RECIPE);
        fs::write(a.path().join("app/data.txt"), b"short").expect("write");
        assert!(content_key(
            &layer,
            FormatVersion::V2,
            Compression::Gzip,
            0,
            THREADS,
            None
        )
        .is_err());
    }
}
