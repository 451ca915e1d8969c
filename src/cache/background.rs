//! A downloaded blob written to its temp file by threads of its own, so that
//! receiving and hashing (on the network runtime) and writing to disk run side by
//! side.
//!
//! The bytes are cut into [`CHUNK`]-byte buffers, each tagged with its offset in the
//! blob, and the writer threads take them in turn and write each at its offset
//! (`pwrite`): the file ends up with exactly the bytes that were written, whatever
//! the order the threads finish in. Two threads rather than one because a write into
//! page cache the kernel has not used before costs a page fault per page, and on a
//! virtual machine whose host backs memory lazily that fault, not the copy, is most
//! of the cost of a large write; two threads take those faults on two cores.

use crate::error::{Error, Result};
use crate::layout::BlobWriter;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Bytes per buffer handed to a writer thread.
const CHUNK: usize = 256 * 1024;
/// Buffers waiting for a writer thread (besides those being filled and written).
const DEPTH: usize = 8;
/// Writer threads at most (fewer on a machine with fewer cores).
const WRITERS: usize = 2;

/// A blob being written by threads of its own: a [`io::Write`]; [`Background::finish`]
/// waits for every byte to reach the file. Dropped without `finish` (a failed
/// attempt), the temp file is deleted and the threads stop when they find the
/// channel closed.
pub(super) struct Background {
    blob: BlobWriter,
    tx: Option<mpsc::SyncSender<(u64, Vec<u8>)>>,
    back: mpsc::Receiver<Vec<u8>>,
    failed: Arc<AtomicBool>,
    buf: Vec<u8>,
    /// Bytes handed to the threads so far.
    offset: u64,
    threads: Vec<std::thread::JoinHandle<io::Result<()>>>,
}

impl Background {
    pub(super) fn start(blob: BlobWriter) -> Result<Background> {
        let writers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, WRITERS);
        let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(DEPTH);
        let (back_tx, back) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let failed = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(writers);
        for _ in 0..writers {
            let file = blob
                .offsets_handle()
                .map_err(|e| Error::io("cannot store a blob", e))?;
            let (rx, back_tx, failed) = (rx.clone(), back_tx.clone(), failed.clone());
            let thread = std::thread::Builder::new()
                .name("blob-writer".to_string())
                .spawn(move || {
                    let written = write_chunks(&file, &rx, &back_tx);
                    if written.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    written
                })
                .map_err(|e| Error::io("cannot start a thread", e))?;
            threads.push(thread);
        }
        Ok(Background {
            blob,
            tx: Some(tx),
            back,
            failed,
            buf: Vec::with_capacity(CHUNK),
            offset: 0,
            threads,
        })
    }

    fn send_buf(&mut self) -> io::Result<()> {
        let fresh = match self.back.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(CHUNK),
        };
        let full = std::mem::replace(&mut self.buf, fresh);
        let len = full.len() as u64;
        let sent = match &self.tx {
            Some(tx) if !self.failed.load(Ordering::Relaxed) => tx.send((self.offset, full)),
            _ => return Err(stopped()),
        };
        sent.map_err(|_| stopped())?;
        self.offset += len;
        Ok(())
    }

    /// Waits for every byte to be written; the blob, ready to commit.
    pub(super) fn finish(mut self) -> Result<BlobWriter> {
        let sent = if self.buf.is_empty() {
            Ok(())
        } else {
            self.send_buf()
        };
        self.tx = None;
        // A writer's own error is the one to report; `sent` only echoes it.
        for thread in std::mem::take(&mut self.threads) {
            let written = thread.join().map_err(|_| {
                Error::io("writing a blob", io::Error::other("its thread panicked"))
            })?;
            written.map_err(|e| Error::io("cannot store a blob", e))?;
        }
        sent.map_err(|e| Error::io("cannot store a blob", e))?;
        self.blob.wrote_at_offsets(self.offset);
        let Background { blob, .. } = self;
        Ok(blob)
    }
}

impl io::Write for Background {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn stopped() -> io::Error {
    io::Error::other("the blob's writer threads stopped")
}

/// One writer thread: takes chunks until the channel closes.
fn write_chunks(
    file: &std::fs::File,
    rx: &Mutex<mpsc::Receiver<(u64, Vec<u8>)>>,
    back: &mpsc::Sender<Vec<u8>>,
) -> io::Result<()> {
    loop {
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return Err(io::Error::other("another blob writer thread panicked")),
        };
        let Ok((offset, chunk)) = next else {
            return Ok(());
        };
        file.write_all_at(&chunk, offset)?;
        // The other end may be gone already; the buffer is then simply dropped.
        let _ = back.send(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::layout::Layout;
    use std::io::Write;

    /// Bytes that differ at every offset, so a chunk at the wrong place shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn temps(layout: &Layout) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(layout.root().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn every_byte_lands_at_its_offset_whatever_the_write_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("l")).unwrap();
        // Several chunks and a partial last one, written in uneven pieces.
        let bytes = pattern(5 * CHUNK + 12_345);
        let mut bg = Background::start(layout.blob_writer_unhashed().unwrap()).unwrap();
        let mut rest = &bytes[..];
        for step in [1usize, 100, CHUNK - 3, 70_000, 3 * CHUNK].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*step).min(rest.len());
            bg.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
        let digest = Digest::of(&bytes);
        let size = bg.finish().unwrap().commit_as(&layout, &digest).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(std::fs::read(layout.blob_path(&digest)).unwrap(), bytes);
    }

    #[test]
    fn an_empty_blob_is_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("l")).unwrap();
        let bg = Background::start(layout.blob_writer_unhashed().unwrap()).unwrap();
        let digest = Digest::of(b"");
        assert_eq!(bg.finish().unwrap().commit_as(&layout, &digest).unwrap(), 0);
        assert!(std::fs::read(layout.blob_path(&digest)).unwrap().is_empty());
    }

    #[test]
    fn a_blob_dropped_unfinished_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("l")).unwrap();
        let mut bg = Background::start(layout.blob_writer_unhashed().unwrap()).unwrap();
        bg.write_all(&pattern(3 * CHUNK)).unwrap();
        assert_eq!(
            temps(&layout).len(),
            1,
            "the temp file exists while writing"
        );
        drop(bg);
        assert_eq!(temps(&layout), Vec::<std::path::PathBuf>::new());
    }

    #[test]
    fn only_a_fresh_unhashed_writer_takes_writes_at_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("l")).unwrap();
        assert!(Background::start(layout.blob_writer().unwrap()).is_err());
        let mut used = layout.blob_writer_unhashed().unwrap();
        used.write_all(b"x").unwrap();
        assert!(Background::start(used).is_err());
    }
}
