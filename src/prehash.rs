//! Context files hashed while the plan is still being made.
//!
//! The shared layer cache's content key (`cache::key`) hashes every source file's
//! bytes. Planning walks the context on one thread, so a build that needs the key
//! would leave the other cores idle during the walk and then read every file after
//! it. A [`Prehash`] takes each regular file as the walk finds it and hashes it on
//! worker threads at once; the content key then takes the hashes of the files whose
//! path and stamp are those of its plan entries, and hashes any other itself.
//!
//! A hash here is made exactly as the content key would make it: the file opened
//! beneath its context, checked against the stamp planned before and after the read,
//! and exactly the planned number of bytes read. A file that fails any of that is
//! simply not recorded; the content key then reads it again and reports the error.

use crate::stamp::FileStamp;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A context file the walk found: its context, path and stamp.
struct Job {
    context: Arc<Path>,
    path: PathBuf,
    stamp: FileStamp,
}

struct Shared {
    /// path → (the stamp it was hashed at, its BLAKE3 hash). Keyed by the path's
    /// bytes: hashing a `Path` walks its components, a cost per file here.
    done: Mutex<HashMap<OsString, (FileStamp, [u8; 32])>>,
    cancelled: AtomicBool,
}

/// Background hashing of the context files a plan reads.
pub struct Prehash {
    shared: Arc<Shared>,
    /// Paths offered so far: every platform's walk offers the same files.
    offered: Mutex<HashSet<OsString>>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Prehash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prehash")
    }
}

impl Prehash {
    /// Starts hashing files as they are offered, on `threads - 1` threads (the walk
    /// that offers them keeps one core busy); [`Prehash::finish`]'s caller then joins
    /// in for what is left.
    pub fn start(threads: usize) -> Arc<Prehash> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            done: Mutex::new(HashMap::new()),
            cancelled: AtomicBool::new(false),
        });
        let workers = (1..threads)
            .filter_map(|_| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name("prehash".to_string())
                    .spawn(move || work(&rx, &shared))
                    .ok()
            })
            .collect();
        Arc::new(Prehash {
            shared,
            offered: Mutex::new(HashSet::new()),
            rx,
            tx: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        })
    }

    /// Queues a regular file of `context` found by the walk, at `stamp`.
    pub fn offer(&self, context: &Arc<Path>, path: &Path, stamp: &FileStamp) {
        let first = self
            .offered
            .lock()
            .is_ok_and(|mut o| o.insert(path.as_os_str().to_os_string()));
        if !first {
            return;
        }
        if let Ok(tx) = self.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(Job {
                    context: context.clone(),
                    path: path.to_path_buf(),
                    stamp: *stamp,
                });
            }
        }
    }

    /// Hashes what is still queued, on this thread too, and waits until every file
    /// queued is hashed (or failed). Nothing can be queued after.
    pub fn finish(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        work(&self.rx, &self.shared);
        let workers = match self.workers.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(_) => return,
        };
        for w in workers {
            let _ = w.join();
        }
    }

    /// Stops hashing (the key is not needed): the files still queued are dropped.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
        self.finish();
    }

    /// The hash of `path`, if it was hashed at exactly `stamp`.
    pub fn get(&self, path: &Path, stamp: &FileStamp) -> Option<[u8; 32]> {
        let done = self.shared.done.lock().ok()?;
        done.get(path.as_os_str())
            .filter(|(at, _)| at == stamp)
            .map(|(_, hash)| *hash)
    }
}

impl Drop for Prehash {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn work(rx: &Mutex<mpsc::Receiver<Job>>, shared: &Shared) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut root = None;
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if shared.cancelled.load(Ordering::Relaxed) {
            return;
        }
        let hashed = hash_context_file(
            &mut root,
            &job.context,
            &job.path,
            &job.stamp,
            job.stamp.size,
            &mut buf,
        );
        if let (Ok(hash), Ok(mut done)) = (hashed, shared.done.lock()) {
            done.insert(job.path.into_os_string(), (job.stamp, hash));
        }
    }
}

/// The BLAKE3 hash of the context file `path`, as planned at `stamp` with `size`
/// bytes: opened beneath `context` (through `root`, which keeps the context last
/// opened), checked unchanged before and after the read. `buf` is the read buffer.
pub fn hash_context_file(
    root: &mut Option<(Arc<Path>, OwnedFd)>,
    context: &Arc<Path>,
    path: &Path,
    stamp: &FileStamp,
    size: u64,
    buf: &mut [u8],
) -> io::Result<[u8; 32]> {
    let fd = match root {
        Some((open, fd)) if Arc::ptr_eq(open, context) || **open == **context => fd,
        _ => {
            let fd = crate::beneath::open_root(context)?;
            &mut root.insert((context.clone(), fd)).1
        }
    };
    let file = crate::beneath::open_planned_at(fd.as_fd(), context, path, stamp)?;
    let hash = hash_exactly(&file, size, path, buf)?;
    crate::beneath::check_unchanged(&file, stamp, path)?;
    Ok(hash)
}

/// Hashes exactly `size` bytes of `reader`; fewer is an error (the source shrank).
pub fn hash_exactly(
    reader: impl Read,
    size: u64,
    what: &Path,
    buf: &mut [u8],
) -> io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    let mut reader = reader.take(size);
    let mut seen = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        seen += n as u64;
    }
    if seen != size {
        return Err(io::Error::other(format!(
            "{}: {seen} bytes read where {size} were planned",
            what.display()
        )));
    }
    Ok(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(path: &Path) -> FileStamp {
        FileStamp::of(&std::fs::symlink_metadata(path).expect("stat"))
    }

    #[test]
    fn a_file_is_hashed_at_its_stamp_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let context: Arc<Path> = Arc::from(dir.path());
        let a = dir.path().join("a");
        std::fs::write(&a, b"some bytes").expect("write");
        let stamp = stamp_of(&a);
        let p = Prehash::start(2);
        p.offer(&context, &a, &stamp);
        p.finish();
        assert_eq!(
            p.get(&a, &stamp),
            Some(*blake3::hash(b"some bytes").as_bytes())
        );
        let other = FileStamp {
            mtime_ns: stamp.mtime_ns + 1,
            ..stamp
        };
        assert_eq!(p.get(&a, &other), None, "another stamp is another file");
    }

    #[test]
    fn a_file_that_changed_since_planning_is_not_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let context: Arc<Path> = Arc::from(dir.path());
        let a = dir.path().join("a");
        std::fs::write(&a, b"planned").expect("write");
        let stamp = stamp_of(&a);
        std::fs::write(&a, b"rewritten, longer").expect("rewrite");
        let p = Prehash::start(1);
        p.offer(&context, &a, &stamp);
        p.finish();
        assert_eq!(p.get(&a, &stamp), None);
    }
}
