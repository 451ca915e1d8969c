//! A downloaded blob written to its temp file by threads of its own, so that
//! receiving and hashing (on the network runtime) and writing to disk run side by
//! side.
//!
//! The bytes go through a [`pipe`](crate::layer::pipe) whose buffers carry their
//! offsets; the writer threads share its reader and write each buffer at its offset
//! (`pwrite`), so the file ends up with exactly the bytes that were written, whatever
//! order the threads finish in. Two threads rather than one because a write into page
//! cache the kernel has not used before costs a page fault per page, and on a virtual
//! machine whose host backs memory lazily that fault, not the copy, is most of the
//! cost of a large write; two threads take those faults on two cores.

use crate::error::{Error, Result};
use crate::layer::pipe::{self, PipeWriter};
use crate::layout::BlobWriter;
use std::io;
use std::os::unix::fs::FileExt;

/// Writer threads at most (fewer on a machine with fewer cores).
const WRITERS: usize = 2;

/// A blob being written by threads of its own: a [`io::Write`]; [`Background::finish`]
/// waits for every byte to reach the file. Dropped without `finish` (a failed
/// attempt), the temp file is deleted and the threads stop when they find the pipe
/// broken.
pub(super) struct Background {
    blob: BlobWriter,
    pipe: PipeWriter,
    threads: Vec<std::thread::JoinHandle<io::Result<()>>>,
}

impl Background {
    pub(super) fn start(blob: BlobWriter) -> Result<Background> {
        let writers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, WRITERS);
        let (pipe, reader) = pipe::pipe();
        let reader = reader.shared();
        let mut threads = Vec::with_capacity(writers);
        for _ in 0..writers {
            let file = blob
                .offsets_handle()
                .map_err(|e| Error::io("cannot store a blob", e))?;
            let reader = reader.clone();
            let thread = std::thread::Builder::new()
                .name("blob-writer".to_string())
                .spawn(move || reader.for_each_at(|offset, b| file.write_all_at(b, offset)))
                .map_err(|e| Error::io("cannot start a thread", e))?;
            threads.push(thread);
        }
        Ok(Background {
            blob,
            pipe,
            threads,
        })
    }

    /// Waits for every byte to be written; the blob, ready to commit.
    pub(super) fn finish(self) -> Result<BlobWriter> {
        let Background {
            mut blob,
            pipe,
            threads,
        } = self;
        let sent = pipe.finish();
        // A writer thread's own error is the one to report; a broken pipe only
        // echoes it.
        let len = joined(threads)
            .and(sent)
            .map_err(|e| Error::io("cannot write a blob", e))?;
        blob.wrote_at_offsets(len);
        Ok(blob)
    }
}

impl io::Write for Background {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.pipe.write(data) {
            // Every writer thread has stopped or is stopping: the first one's error
            // says why.
            Err(e) if pipe::is_broken(&e) => match joined(std::mem::take(&mut self.threads)) {
                Err(cause) => Err(cause),
                Ok(()) => Err(e),
            },
            other => other,
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.pipe.flush()
    }
}

/// Waits for the threads; the error that is not only a broken pipe, if any.
fn joined(threads: Vec<std::thread::JoinHandle<io::Result<()>>>) -> io::Result<()> {
    threads
        .into_iter()
        .filter_map(|t| {
            t.join()
                .unwrap_or_else(|_| Err(io::Error::other("a blob writer thread panicked")))
                .err()
        })
        .min_by_key(pipe::is_broken)
        .map_or(Ok(()), Err)
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
        let bytes = pattern(5 * pipe::CHUNK + 12_345);
        let mut bg = Background::start(layout.blob_writer_unhashed().unwrap()).unwrap();
        let mut rest = &bytes[..];
        for step in [1usize, 100, pipe::CHUNK - 3, 70_000, 3 * pipe::CHUNK]
            .iter()
            .cycle()
        {
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
        bg.write_all(&pattern(3 * pipe::CHUNK)).unwrap();
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

    #[test]
    fn a_writer_threads_own_error_is_reported_rather_than_the_broken_pipe() {
        let broken =
            std::thread::spawn(|| -> io::Result<()> { Err(io::Error::other(pipe::Broken)) });
        let cause = std::thread::spawn(|| -> io::Result<()> {
            Err(io::Error::other("No space left on device"))
        });
        let err = joined(vec![broken, cause]).expect_err("a thread failed");
        assert_eq!(err.to_string(), "No space left on device");
        let fine = std::thread::spawn(|| -> io::Result<()> { Ok(()) });
        assert!(joined(vec![fine]).is_ok());
    }
}
