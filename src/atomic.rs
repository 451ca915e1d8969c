//! Atomic file writes, the one way imgbuild replaces or creates a file that someone
//! may read: a temp file beside the target, written, flushed to disk, then renamed
//! over the target. A reader sees the old file or the new one complete, never a part.
//!
//! Temp files are named `.tmp-<pid>-…` and held locked (an advisory `flock`) from
//! before they have that name for as long as they are open, so that a later run can tell a killed writer's leftover from a live
//! one's (`Layout::remove_stale_temps`). An uncommitted temp file is deleted when
//! dropped.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

/// Whether [`TempFile::persist`] flushes the bytes to disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` the file, then rename: after a crash the target is the old or the new
    /// file, complete.
    Synced,
    /// Rename only (content-addressed blobs and cache records: large, rewritten by the
    /// next build, and not worth an `fsync` each on the build's hot path).
    Unsynced,
}

/// A temp file beside its future target.
#[derive(Debug)]
pub struct TempFile {
    inner: tempfile::NamedTempFile,
}

impl TempFile {
    /// A new temp file in `dir`, created with `mode` (masked by the umask, as for any
    /// new file), named `.tmp-<pid>-…` and locked.
    ///
    /// The file is locked before it has that name: it is created as `.tmpnew-…`
    /// (a name no cleanup touches), locked, then renamed without replacing anything.
    /// A cleanup that sees a `.tmp-<pid>-…` file unlocked therefore knows its writer
    /// is gone — even a writer in another pid namespace that has just created it.
    pub fn new_in(dir: &Path, mode: u32) -> io::Result<TempFile> {
        use std::os::unix::fs::PermissionsExt;
        let pending = tempfile::Builder::new()
            .prefix(PENDING_PREFIX)
            .permissions(std::fs::Permissions::from_mode(mode))
            .tempfile_in(dir)?;
        pending.as_file().lock()?;
        let (file, pending) = pending.into_parts();
        let suffix = pending
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PENDING_PREFIX))
            .ok_or_else(|| io::Error::other("internal: a temp file name without its prefix"))?
            .to_string();
        let named = dir_of(&pending).join(format!(".tmp-{}-{suffix}", std::process::id()));
        rename_new(&pending, &named)?; // on failure, `pending` is deleted when dropped
                                       // The pending name is gone: only the new name is to be deleted on drop.
        let _ = pending.keep();
        let path = tempfile::TempPath::try_from_path(&named).inspect_err(|_| {
            let _ = std::fs::remove_file(&named);
        })?;
        Ok(TempFile {
            inner: tempfile::NamedTempFile::from_parts(file, path),
        })
    }

    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    pub fn as_file(&self) -> &File {
        self.inner.as_file()
    }

    pub fn as_file_mut(&mut self) -> &mut File {
        self.inner.as_file_mut()
    }

    /// Opens the temp file again (its own offset), to read back what was written.
    pub fn reopen(&self) -> io::Result<File> {
        self.inner.reopen()
    }

    /// Renames the temp file to `target` (replacing it), after an `fsync` if asked.
    pub fn persist(self, target: &Path, durability: Durability) -> io::Result<()> {
        if durability == Durability::Synced {
            self.inner.as_file().sync_all()?;
        }
        self.inner.persist(target).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for TempFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The name a temp file has from its creation until it is locked (`TempFile::new_in`).
pub(crate) const PENDING_PREFIX: &str = ".tmpnew-";

/// Renames `from` to `to`, failing if `to` exists (never replacing another file).
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // A file system without RENAME_NOREPLACE: a link fails on an existing name too.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// The directory a file at `path` lives in (`.` for a bare file name).
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` atomically and durably, creating it with `mode`.
pub fn write(path: &Path, mode: u32, bytes: &[u8]) -> io::Result<()> {
    write_with(path, mode, |w| w.write_all(bytes))
}

/// [`write`] for a file produced piece by piece by `fill` (buffered): the file
/// appears complete or not at all. `fill`'s error is returned as it is.
pub fn write_with<E: From<io::Error>>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), E> {
    let mut temp = TempFile::new_in(&dir_of(path), mode)?;
    {
        let mut w = BufWriter::new(&mut temp);
        fill(&mut w)?;
        w.flush()?;
    }
    temp.persist(path, Durability::Synced)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_target_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, b"old").unwrap();
        write(&target, 0o644, b"new contents").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn a_failed_fill_leaves_the_target_as_it_was_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, b"old").unwrap();
        let r: io::Result<()> = write_with(&target, 0o644, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("stop"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_temp_file_is_never_seen_unlocked_under_its_pid_name() {
        // What `Layout::remove_stale_temps` of a build in another pid namespace does:
        // any `.tmp-` file it can lock, it deletes. It must never win against a temp
        // file being created.
        let dir = tempfile::tempdir().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let mut unlocked = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                        if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
                            continue;
                        }
                        if let Ok(f) = File::open(entry.path()) {
                            // Locked after its writer closed it, a temp file is
                            // already unlinked (deleted, then closed): not a miss.
                            if f.try_lock().is_ok()
                                && f.metadata()
                                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) > 0)
                            {
                                unlocked += 1;
                            }
                        }
                    }
                }
                unlocked
            })
        };
        let mut temps = Vec::new();
        for round in 0..40 {
            for _ in 0..50 {
                temps.push(TempFile::new_in(dir.path(), 0o644).unwrap());
            }
            if round % 4 == 3 {
                temps.clear();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(temps);
        assert_eq!(watcher.join().unwrap(), 0, "a temp file was seen unlocked");
    }

    #[test]
    fn a_temp_file_is_named_for_its_pid_and_held_locked() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempFile::new_in(dir.path(), 0o644).unwrap();
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!(".tmp-{}-", std::process::id())),
            "{name}"
        );
        let other = File::open(temp.path()).unwrap();
        assert!(other.try_lock().is_err(), "the temp file is not locked");
    }
}
