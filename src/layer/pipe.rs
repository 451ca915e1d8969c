//! A bounded byte pipe between threads: in order between two threads of the layer
//! writer, or shared by several threads that write what they receive at its offset.
//!
//! [`PipeWriter`] cuts what is written into [`CHUNK`]-byte buffers and sends them
//! over a channel that holds at most [`DEPTH`] of them; [`PipeReader::for_each`]
//! hands them to a consumer in order and sends the buffers back for reuse. The bytes
//! that come out are exactly the bytes that went in, in the same order, whatever the
//! scheduling: only how they are chunked on the way varies, and every consumer of the
//! layer writer produces bytes that do not depend on chunking.
//!
//! Every buffer carries its offset in the stream, so that several threads can share
//! one reader ([`PipeReader::shared`]) when they put the bytes where the offsets say
//! (writes at offsets into one file): then each buffer goes to one of them, and they
//! consume the buffers in any order.
//!
//! The stream ends only when the writer calls [`PipeWriter::finish`]. A writer that
//! is dropped without it (its thread failed) makes the reader fail with [`Broken`],
//! so that a half-written layer is never committed; a reader that stops — for a
//! shared reader, any one of its threads that fails — makes the writer fail with
//! [`Broken`] too. [`Broken`] is the secondary error: the thread that failed first
//! has the one to report.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Bytes per buffer sent through a pipe.
pub const CHUNK: usize = 256 * 1024;
/// Buffers in flight in one pipe (besides the one being filled and those being
/// consumed): a pipe holds at most `(DEPTH + 1 + readers) × CHUNK` bytes.
pub const DEPTH: usize = 4;

/// The error of a pipe whose other end went away.
#[derive(Debug)]
pub struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the other end of the layer pipeline stopped")
    }
}

impl std::error::Error for Broken {}

fn broken() -> io::Error {
    io::Error::other(Broken)
}

/// Whether `e` is only the echo of a failure on the other side of a pipe.
pub fn is_broken(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<Broken>())
}

enum Msg {
    /// A buffer and the offset of its first byte in the stream.
    Data(u64, Vec<u8>),
    End,
}

/// Creates a pipe.
pub fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = mpsc::sync_channel(DEPTH);
    let (back_tx, back_rx) = mpsc::channel();
    (
        PipeWriter {
            tx,
            back: back_rx,
            buf: Vec::with_capacity(CHUNK),
            sent: 0,
        },
        PipeReader { rx, back: back_tx },
    )
}

/// The sending end: a [`Write`] that must be [`finish`](PipeWriter::finish)ed.
pub struct PipeWriter {
    tx: mpsc::SyncSender<Msg>,
    back: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    /// Bytes sent so far: the offset of the next buffer.
    sent: u64,
}

impl PipeWriter {
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
        self.tx
            .send(Msg::Data(self.sent, full))
            .map_err(|_| broken())?;
        self.sent += len;
        Ok(())
    }

    /// Sends what is buffered and the end of the stream; the stream's length.
    pub fn finish(mut self) -> io::Result<u64> {
        if !self.buf.is_empty() {
            self.send_buf()?;
        }
        self.tx.send(Msg::End).map_err(|_| broken())?;
        Ok(self.sent)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    /// Does nothing: the bytes go out as the buffers fill and at `finish`, so that
    /// the chunks stay full.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receiving end.
pub struct PipeReader {
    rx: mpsc::Receiver<Msg>,
    back: mpsc::Sender<Vec<u8>>,
}

impl PipeReader {
    /// Passes every chunk, in order, to `f` until the end of the stream. Fails with
    /// [`Broken`] if the writer went away without finishing, or with `f`'s error.
    pub fn for_each(self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        loop {
            match self.rx.recv() {
                Ok(Msg::Data(_, b)) => {
                    f(&b)?;
                    // The writer may be gone already; then the buffer is just freed.
                    let _ = self.back.send(b);
                }
                Ok(Msg::End) => return Ok(()),
                Err(_) => return Err(broken()),
            }
        }
    }

    /// This reader, for several threads to share with [`SharedReader::for_each_at`].
    pub fn shared(self) -> SharedReader {
        SharedReader(Arc::new(Shared {
            reader: Mutex::new(Some(self)),
            ended: AtomicBool::new(false),
        }))
    }
}

/// A receiving end that several threads share: each buffer goes to one of them.
#[derive(Clone)]
pub struct SharedReader(Arc<Shared>);

struct Shared {
    /// Taken (and so dropped, which the writer sees as a broken pipe) by a thread
    /// whose consumer failed.
    reader: Mutex<Option<PipeReader>>,
    /// Set by the thread that received the end, for the others.
    ended: AtomicBool,
}

impl SharedReader {
    /// Passes the buffers this thread receives to `f` with their offsets in the
    /// stream, until the end of the stream. Fails with [`Broken`] if the writer went
    /// away without finishing or another thread's `f` failed, or with `f`'s error
    /// (which breaks the pipe for the writer and the other threads).
    pub fn for_each_at(&self, mut f: impl FnMut(u64, &[u8]) -> io::Result<()>) -> io::Result<()> {
        loop {
            // The end is noted under the lock, so that a thread that then finds the
            // writer gone knows it finished.
            let (offset, b, back) = match self.0.reader.lock() {
                Ok(reader) => match reader.as_ref().map(|r| (r.rx.recv(), r)) {
                    None => return Err(broken()),
                    Some((msg, reader)) => match msg {
                        Ok(Msg::Data(offset, b)) => (offset, b, reader.back.clone()),
                        Ok(Msg::End) => {
                            self.0.ended.store(true, Ordering::Relaxed);
                            return Ok(());
                        }
                        Err(_) if self.0.ended.load(Ordering::Relaxed) => return Ok(()),
                        Err(_) => return Err(broken()),
                    },
                },
                Err(_) => return Err(io::Error::other("another reader of the pipe panicked")),
            };
            if let Err(e) = f(offset, &b) {
                if let Ok(mut reader) = self.0.reader.lock() {
                    reader.take();
                }
                return Err(e);
            }
            // The writer may be gone already; then the buffer is just freed.
            let _ = back.send(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_whatever_the_write_sizes() {
        let data: Vec<u8> = (0..3 * CHUNK + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (mut w, r) = pipe();
        let got = std::thread::scope(|s| {
            let reader = s.spawn(move || {
                let mut got = Vec::new();
                r.for_each(|b| {
                    got.extend_from_slice(b);
                    Ok(())
                })
                .map(|()| got)
            });
            let mut rest = &data[..];
            for size in [1, 7, 4093, 65_537, CHUNK, CHUNK + 1].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let k = (*size).min(rest.len());
                w.write_all(&rest[..k]).expect("write");
                rest = &rest[k..];
            }
            w.finish().expect("finish");
            reader.join().expect("reader thread")
        });
        assert!(got.expect("stream ends") == data);
    }

    #[test]
    fn a_writer_dropped_without_finish_makes_the_reader_fail() {
        let (mut w, r) = pipe();
        w.write_all(&[1; 1000]).expect("write");
        drop(w);
        let err = r.for_each(|_| Ok(())).expect_err("not a complete stream");
        assert!(is_broken(&err), "{err}");
    }

    #[test]
    fn a_reader_that_stops_makes_the_writer_fail() {
        let (mut w, r) = pipe();
        drop(r);
        let err = w.write_all(&vec![0; 2 * CHUNK]).expect_err("nobody reads");
        assert!(is_broken(&err), "{err}");
    }

    #[test]
    fn readers_sharing_a_pipe_get_every_buffer_once_at_its_offset() {
        let data: Vec<u8> = (0..5 * CHUNK + 777).map(|i| (i * 13 % 241) as u8).collect();
        let (mut w, r) = pipe();
        let r = r.shared();
        let out = Mutex::new(vec![0u8; data.len()]);
        let counts = std::thread::scope(|s| {
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    let (r, out) = (r.clone(), &out);
                    s.spawn(move || {
                        let mut n = 0;
                        r.for_each_at(|offset, b| {
                            let at = offset as usize;
                            out.lock().expect("lock")[at..at + b.len()].copy_from_slice(b);
                            n += b.len();
                            Ok(())
                        })
                        .map(|()| n)
                    })
                })
                .collect();
            w.write_all(&data).expect("write");
            assert_eq!(w.finish().expect("finish"), data.len() as u64);
            readers
                .into_iter()
                .map(|t| t.join().expect("reader thread").expect("stream ends"))
                .collect::<Vec<_>>()
        });
        assert_eq!(counts.iter().sum::<usize>(), data.len(), "each byte once");
        assert!(out.into_inner().expect("lock") == data);
    }

    #[test]
    fn shared_readers_all_fail_when_the_writer_is_dropped_unfinished() {
        let (mut w, r) = pipe();
        let r = r.shared();
        w.write_all(&[1; 1000]).expect("write");
        drop(w);
        for reader in [r.clone(), r] {
            let err = reader.for_each_at(|_, _| Ok(())).expect_err("not complete");
            assert!(is_broken(&err), "{err}");
        }
    }

    #[test]
    fn a_shared_reader_that_fails_breaks_the_pipe_for_the_writer_and_the_others() {
        let (mut w, r) = pipe();
        let r = r.shared();
        let (failing, other) = (r.clone(), r);
        let results = std::thread::scope(|s| {
            let failing =
                s.spawn(move || failing.for_each_at(|_, _| Err(io::Error::other("disk full"))));
            let other = s.spawn(move || {
                other.for_each_at(|_, _| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    Ok(())
                })
            });
            // Far more than the pipe holds: the writer must see it broken, not block.
            let written = w.write_all(&vec![0; 64 * CHUNK]);
            (written, failing.join(), other.join())
        });
        let (written, failing, other) = results;
        assert!(is_broken(
            &written.expect_err("the writer sees the failure")
        ));
        let failing = failing.expect("thread").expect_err("its own error");
        assert_eq!(failing.to_string(), "disk full");
        assert!(is_broken(&other.expect("thread").expect_err("broken")));
    }
}
