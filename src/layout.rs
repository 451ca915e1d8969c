//! Store: an OCI image layout on disk — content-addressed blobs and `index.json`.
//!
//! Invariants: a blob file only ever appears under its final name complete and with
//! the right digest (temp file in the same directory, then rename); `index.json` is
//! replaced atomically, last, under an exclusive lock, so two builds may share one
//! layout. The store deletes nothing but the temp files of builds that were killed
//! (`remove_stale_temps`).

use crate::atomic::{Durability, TempFile};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::image::{canonical_json, Descriptor, Index, ANNOTATION_REF_NAME, INDEX_V1};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens the layout at `root`, creating the directory structure if needed.
    pub fn create(root: &Path) -> Result<Layout> {
        let lock = root.join(INDEX_LOCK);
        if fs::symlink_metadata(&lock).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(symlinked_lock(&lock));
        }
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs)
            .map_err(|e| Error::io_path("cannot create output layout", root, e))?;
        let layout = Layout {
            root: root.to_path_buf(),
        };
        let marker = root.join("oci-layout");
        if !marker.exists() {
            layout.replace_file(&marker, OCI_LAYOUT.as_bytes())?;
        }
        Ok(layout)
    }

    /// `out` (named `what` in messages: `--out`, a `copy` destination) must be
    /// missing, empty, or an OCI layout: imgbuild never scatters blobs into a
    /// directory that holds something else. Entries of another imgbuild writing the
    /// layout right now are not something else.
    pub fn check_target(out: &Path, what: &str) -> Result<()> {
        if !out.exists() || out.join("oci-layout").is_file() {
            return Ok(());
        }
        if !out.is_dir() {
            return Err(Error::input(format!(
                "{what} {} exists and is not a directory",
                out.display()
            ))
            .with_hint("name a new or empty directory, or an existing OCI image layout"));
        }
        // Another build may be creating the layout right now: its first entries (before
        // oci-layout lands) are ones only imgbuild writes.
        let ours = |name: &std::ffi::OsStr| {
            let n = name.to_string_lossy();
            matches!(
                n.as_ref(),
                "blobs" | "oci-layout" | "index.json" | ".index.json.lock" | ".imgbuild"
            ) || n.starts_with(".tmp-")
                || n.starts_with(crate::atomic::PENDING_PREFIX)
        };
        let mut foreign = false;
        for entry in std::fs::read_dir(out).map_err(|e| Error::io_path("cannot read", out, e))? {
            let entry = entry.map_err(|e| Error::io_path("cannot read", out, e))?;
            foreign |= !ours(&entry.file_name());
        }
        if !foreign {
            return Ok(());
        }
        Err(Error::input(format!(
            "{what} {} is a non-empty directory that is not an OCI image layout (it has no oci-layout file)",
            out.display()
        ))
        .with_hint("name a new or empty directory, or an existing OCI image layout"))
    }

    /// Opens an existing layout for reading.
    pub fn open(root: &Path) -> Result<Layout> {
        if !root.exists() {
            return Err(Error::input(format!("{} does not exist", root.display()))
                .with_hint("check the path: an OCI layout is a directory written by `imgbuild build --out DIR`, `skopeo copy … oci:DIR` or `umoci`"));
        }
        if !root.join("oci-layout").is_file() {
            return Err(Error::input(format!("{} is not an OCI image layout (no oci-layout file)", root.display()))
                .with_hint("point at a directory written by `imgbuild build --out DIR`, `skopeo copy … oci:DIR` or `umoci`"));
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A writer for a new blob; `commit` names it by the digest of what was written.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        Ok(BlobWriter {
            inner: Sink::Hashing(HashingWriter::new(self.blob_temp()?)),
        })
    }

    /// A blob writer for bytes whose digest the caller computes anyway (an
    /// uncompressed layer: its digest is its diff_id), so they are not hashed twice.
    /// Commit it with [`BlobWriter::commit_as`].
    pub fn blob_writer_unhashed(&self) -> Result<BlobWriter> {
        Ok(BlobWriter {
            inner: Sink::Plain(self.blob_temp()?, 0),
        })
    }

    /// A buffered temp file among the blobs, renamed to its digest when committed.
    fn blob_temp(&self) -> Result<BufWriter<TempFile>> {
        let dir = self.root.join("blobs").join("sha256");
        let temp = temp_in(&dir).map_err(|e| Error::io_path("cannot create a blob in", &dir, e))?;
        Ok(BufWriter::with_capacity(1 << 20, temp))
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let mut w = self.blob_writer()?;
            w.write_all(bytes)
                .map_err(|e| Error::io_path("cannot write blob to", &self.root, e))?;
            w.commit(self)?;
        }
        Ok(digest)
    }

    /// Reads a blob whole, checking its digest (for JSON blobs: small).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|e| Error::io_path("cannot read blob", &path, e))?;
        if Digest::of(&bytes) != *digest {
            return Err(Error::io(
                format!("blob {} in {}", digest, self.root.display()),
                io::Error::other("its content does not match its digest (the layout is corrupt)"),
            ));
        }
        Ok(bytes)
    }

    /// Copies a blob from another layout, verifying its digest while streaming.
    pub fn import_blob(&self, from: &Layout, digest: &Digest) -> Result<()> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let src = from.blob_path(digest);
        let mut file = File::open(&src).map_err(|e| Error::io_path("cannot read blob", &src, e))?;
        let mut w = self.blob_writer()?;
        io::copy(&mut file, &mut w).map_err(|e| Error::io_path("cannot copy blob", &src, e))?;
        // Stored only under `digest`, and only when the bytes hash to it: a wrong blob
        // stays in its temp file (deleted when dropped), and nothing already in this
        // layout is touched, whatever digest the wrong bytes have.
        w.commit_as(self, digest).map_err(|_| {
            Error::io(
                format!("blob {} of {}", digest, from.root.display()),
                io::Error::other("its content has another digest: the layout is corrupt"),
            )
        })?;
        Ok(())
    }

    /// Reads `index.json` (an empty index when there is none yet).
    pub fn read_index(&self) -> Result<Index> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::input(format!("{} is not a valid OCI index: {e}", path.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(empty_index()),
            Err(e) => Err(Error::io_path("cannot read", &path, e)),
        }
    }

    /// Records `descriptor` in `index.json`: once per tag (moving that tag here), or
    /// once without a name when there are no tags. Entries are kept sorted by name and
    /// digest, so the file does not depend on the order of builds.
    pub fn add_to_index(&self, descriptor: &Descriptor, tags: &[String]) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let lock_path = self.root.join(INDEX_LOCK);
        // Never through a symlink: that would create or truncate a file outside --out.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock_path)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    symlinked_lock(&lock_path)
                } else {
                    Error::io_path("cannot lock", &lock_path, e)
                }
            })?;
        lock.lock()
            .map_err(|e| Error::io_path("cannot lock", &lock_path, e))?;
        let mut index = self.read_index()?;
        let name_of = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
        let mut add = Vec::new();
        if tags.is_empty() {
            add.push(descriptor.clone());
        }
        for tag in tags {
            let mut d = descriptor.clone();
            d.annotations
                .insert(ANNOTATION_REF_NAME.into(), tag.clone());
            add.push(d);
        }
        for d in add {
            let name = name_of(&d);
            index.manifests.retain(|m| match &name {
                Some(n) => name_of(m).as_ref() != Some(n),
                None => !(name_of(m).is_none() && m.digest == d.digest),
            });
            index.manifests.push(d);
        }
        index
            .manifests
            .sort_by(|a, b| (name_of(a), &a.digest).cmp(&(name_of(b), &b.digest)));
        self.replace_file(&self.root.join("index.json"), &canonical_json(&index))?;
        drop(lock);
        Ok(())
    }

    /// Every tag (`org.opencontainers.image.ref.name`) in `index.json`, in its order.
    pub fn tags(&self) -> Result<Vec<String>> {
        let mut tags: Vec<String> = Vec::new();
        for m in self.read_index()?.manifests {
            if let Some(t) = m.annotations.get(ANNOTATION_REF_NAME) {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        Ok(tags)
    }

    /// Resolves a tag (`org.opencontainers.image.ref.name`) in `index.json`.
    pub fn resolve_tag(&self, tag: &str) -> Result<Option<Descriptor>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .find(|m| m.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(tag)))
    }

    /// Removes the temp files that builds killed mid-write left in this layout: those
    /// whose process no longer runs and that no one holds locked (see `temp_in`), and
    /// those a build was killed creating (`.tmpnew-…`, unlocked for a minute).
    /// Best-effort: a file it cannot judge or remove stays.
    pub fn remove_stale_temps(&self) {
        let dirs = [
            self.root.clone(),
            self.root.join("blobs").join("sha256"),
            self.root.join(".imgbuild").join("layers"),
            self.root.join(".imgbuild").join("downloads").join("sha256"),
            self.root.join(".imgbuild").join("verified-layers"),
        ];
        for dir in dirs {
            let Ok(list) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in list.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                // A temp file not yet locked and named (`crate::atomic`): its writer
                // renames it at once, so only one left for a minute is a leftover.
                let pending = name.starts_with(crate::atomic::PENDING_PREFIX);
                if !pending {
                    let Some(pid) = temp_pid(&name) else {
                        continue;
                    };
                    if process_runs(pid) {
                        continue;
                    }
                }
                let path = entry.path();
                let opened = {
                    use std::os::unix::fs::OpenOptionsExt;
                    OpenOptions::new()
                        .read(true)
                        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                        .open(&path)
                };
                let Ok(file) = opened else { continue };
                let Ok(meta) = file.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= std::time::Duration::from_secs(60));
                if pending && !old {
                    continue;
                }
                // A writer holds its temp file locked as long as it runs (in any pid
                // namespace): only an unlocked file is stale.
                if file.try_lock().is_ok() {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Replaces `oci-layout` or `index.json` atomically (`crate::atomic`), synced:
    /// the index is the layout's root of trust.
    fn replace_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut temp =
            temp_in(&self.root).map_err(|e| Error::io_path("cannot write to", &self.root, e))?;
        temp.write_all(bytes)
            .map_err(|e| Error::io_path("cannot write", path, e))?;
        temp.persist(path, Durability::Synced)
            .map_err(|e| Error::io_path("cannot replace", path, e))?;
        Ok(())
    }
}

/// The layout's lock file (`add_to_index`).
const INDEX_LOCK: &str = ".index.json.lock";

fn symlinked_lock(path: &Path) -> Error {
    Error::input(format!(
        "{} is a symlink; imgbuild does not follow it (it would write outside --out)",
        path.display()
    ))
    .with_hint("delete the symlink: imgbuild creates the lock file itself")
}

/// A temp file in the layout directory `dir` (`crate::atomic`), world-readable as
/// other OCI tools write layout files (the umask still applies), named `.tmp-<pid>-…`
/// and held locked while it is open, so that a later build can tell a killed build's
/// leftover (`remove_stale_temps`) from a live one's.
pub(crate) fn temp_in(dir: &Path) -> io::Result<TempFile> {
    TempFile::new_in(dir, 0o644)
}

/// The pid in a temp file name written by `temp_in`.
fn temp_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(".tmp-")?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok().filter(|&p| p > 0)
}

/// True unless the process `pid` certainly does not run (no such process).
fn process_runs(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => true,
    }
}

fn empty_index() -> Index {
    Index {
        schema_version: 2,
        media_type: Some(INDEX_V1.into()),
        manifests: Vec::new(),
        annotations: Default::default(),
    }
}

/// A blob being written: hashed as it streams into a temp file in the layout.
pub struct BlobWriter {
    inner: Sink,
}

enum Sink {
    Hashing(HashingWriter<BufWriter<TempFile>>),
    /// Bytes whose digest the caller knows; the count of bytes written.
    Plain(BufWriter<TempFile>, u64),
}

impl BlobWriter {
    /// Renames the temp file to its digest; returns the digest.
    pub fn commit(self, layout: &Layout) -> Result<Digest> {
        self.commit_sized(layout).map(|(d, _)| d)
    }

    /// As `commit`, also returning the size.
    pub fn commit_sized(self, layout: &Layout) -> Result<(Digest, u64)> {
        match self.inner {
            Sink::Hashing(inner) => {
                let (buf, digest, size) = inner.finish();
                Self::persist(buf, layout, &digest)?;
                Ok((digest, size))
            }
            // Not hashed: the digest must come from the caller.
            Sink::Plain(buf, size) => {
                let mut hashing = HashingWriter::new(io::sink());
                let temp = buf.into_inner().map_err(|e| {
                    Error::io_path("cannot write blob to", layout.root(), e.into_error())
                })?;
                io::copy(
                    &mut temp.reopen().map_err(|e| {
                        Error::io_path("cannot read back blob in", layout.root(), e)
                    })?,
                    &mut hashing,
                )
                .map_err(|e| Error::io_path("cannot read back blob in", layout.root(), e))?;
                let (_, digest, _) = hashing.finish();
                Self::persist(BufWriter::new(temp), layout, &digest)?;
                Ok((digest, size))
            }
        }
    }

    /// Commits a blob from [`Layout::blob_writer_unhashed`] under `digest`, which the
    /// caller computed over the very bytes written; returns the size.
    pub fn commit_as(self, layout: &Layout, digest: &Digest) -> Result<u64> {
        match self.inner {
            Sink::Plain(buf, size) => {
                Self::persist(buf, layout, digest)?;
                Ok(size)
            }
            Sink::Hashing(inner) => {
                let (buf, got, size) = inner.finish();
                if got != *digest {
                    // The temp file is deleted when dropped; nothing is stored.
                    return Err(Error::io(
                        "cannot store blob",
                        io::Error::other(format!("its bytes hash to {got}, not {digest}")),
                    ));
                }
                Self::persist(buf, layout, digest)?;
                Ok(size)
            }
        }
    }

    /// Another handle on the temp file of a writer from [`Layout::blob_writer_unhashed`]
    /// to which nothing was written, for writing the blob's bytes at their offsets
    /// from other threads (`FileExt::write_all_at`). Before committing, say how many
    /// bytes went through such handles with [`BlobWriter::wrote_at_offsets`].
    pub(crate) fn offsets_handle(&self) -> io::Result<std::fs::File> {
        match &self.inner {
            Sink::Plain(buf, 0) if buf.buffer().is_empty() => buf.get_ref().as_file().try_clone(),
            _ => Err(io::Error::other(
                "only an unhashed blob writer with nothing written takes writes at offsets",
            )),
        }
    }

    /// Records that `len` bytes were written through [`BlobWriter::offsets_handle`].
    pub(crate) fn wrote_at_offsets(&mut self, len: u64) {
        debug_assert!(matches!(self.inner, Sink::Plain(..)), "a hashing writer");
        if let Sink::Plain(_, size) = &mut self.inner {
            *size += len;
        }
    }

    fn persist(buf: BufWriter<TempFile>, layout: &Layout, digest: &Digest) -> Result<()> {
        let temp = buf
            .into_inner()
            .map_err(|e| Error::io_path("cannot write blob to", layout.root(), e.into_error()))?;
        let path = layout.blob_path(digest);
        // Unsynced: blobs are content-addressed and large; a blob lost to a crash is
        // written again by the next build.
        temp.persist(&path, Durability::Unsynced)
            .map_err(|e| Error::io_path("cannot store blob", &path, e))?;
        Ok(())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Sink::Hashing(w) => w.write(buf),
            Sink::Plain(w, len) => {
                let n = w.write(buf)?;
                *len += n as u64;
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Sink::Hashing(w) => w.flush(),
            Sink::Plain(w, _) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unhashed_blob_is_stored_under_the_digest_its_writer_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("l")).unwrap();
        let bytes = b"uncompressed layer bytes";
        let digest = Digest::of(bytes);
        let mut w = layout.blob_writer_unhashed().unwrap();
        w.write_all(bytes).unwrap();
        assert_eq!(w.commit_as(&layout, &digest).unwrap(), bytes.len() as u64);
        assert_eq!(layout.read_blob(&digest).unwrap(), bytes);
        // Committed without the digest, it is hashed from what was written.
        let mut w = layout.blob_writer_unhashed().unwrap();
        w.write_all(b"other").unwrap();
        assert_eq!(w.commit_sized(&layout).unwrap(), (Digest::of(b"other"), 5));
        // A hashing writer checks a digest it is given.
        let mut w = layout.blob_writer().unwrap();
        w.write_all(b"x").unwrap();
        assert!(w.commit_as(&layout, &digest).is_err());
    }

    #[test]
    fn a_blob_imported_under_a_wrong_name_removes_nothing_already_stored() {
        let dir = tempfile::tempdir().unwrap();
        let out = Layout::create(&dir.path().join("out")).unwrap();
        let kept = out.write_blob(b"a layer of another image").unwrap();
        // A hostile layout holds those very bytes under another name.
        let hostile = Layout::create(&dir.path().join("hostile")).unwrap();
        let claimed = Digest::of(b"what the manifest claims");
        fs::write(hostile.blob_path(&claimed), b"a layer of another image").unwrap();
        assert!(out.import_blob(&hostile, &claimed).is_err());
        assert_eq!(out.read_blob(&kept).unwrap(), b"a layer of another image");
        assert!(!out.has_blob(&claimed));
        let names: Vec<_> = fs::read_dir(dir.path().join("out/blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(kept.hex())]);
    }

    #[test]
    fn blobs_are_named_by_digest_and_no_temp_files_remain() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let d = l.write_blob(b"hello").unwrap();
        assert_eq!(fs::read(l.blob_path(&d)).unwrap(), b"hello");
        let names: Vec<_> = fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(
            fs::read_to_string(dir.path().join("oci-layout")).unwrap(),
            OCI_LAYOUT
        );
    }

    #[test]
    fn an_abandoned_blob_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let mut w = l.blob_writer().unwrap();
        w.write_all(b"half a layer").unwrap();
        drop(w); // an error path: never committed
        let left = fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_tag_moves_and_untagged_entries_are_not_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let a = Descriptor::new(crate::image::MANIFEST_V1, Digest::of(b"a"), 1);
        let b = Descriptor::new(crate::image::MANIFEST_V1, Digest::of(b"b"), 1);
        l.add_to_index(&a, &["latest".into()]).unwrap();
        l.add_to_index(&b, &["latest".into(), "v1".into()]).unwrap();
        l.add_to_index(&a, &[]).unwrap();
        l.add_to_index(&a, &[]).unwrap();
        let idx = l.read_index().unwrap();
        assert_eq!(idx.manifests.len(), 3);
        assert_eq!(l.resolve_tag("latest").unwrap().unwrap().digest, b.digest);
    }
}
