//! A bounded, in-order byte pipe between two threads of the layer writer.
//!
//! [`PipeWriter`] cuts what is written into [`CHUNK`]-byte buffers and sends them
//! over a channel that holds at most [`DEPTH`] of them; [`PipeReader::for_each`]
//! hands them to a consumer in order and sends the buffers back for reuse. The bytes
//! that come out are exactly the bytes that went in, in the same order, whatever the
//! scheduling: only how they are chunked on the way varies, and every consumer of the
//! layer writer produces bytes that do not depend on chunking.
//!
//! The stream ends only when the writer calls [`PipeWriter::finish`]. A writer that
//! is dropped without it (its thread failed) makes the reader fail with [`Broken`],
//! so that a half-written layer is never committed; a reader that stops makes the
//! writer fail with [`Broken`] too. [`Broken`] is the secondary error: the thread
//! that failed first has the one to report.

use std::io::{self, Write};
use std::sync::mpsc;

/// Bytes per buffer sent through a pipe.
pub const CHUNK: usize = 256 * 1024;
/// Buffers in flight in one pipe (besides the one being filled and the one being
/// consumed): a pipe holds at most `(DEPTH + 2) × CHUNK` bytes.
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
    Data(Vec<u8>),
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
        },
        PipeReader { rx, back: back_tx },
    )
}

/// The sending end: a [`Write`] that must be [`finish`](PipeWriter::finish)ed.
pub struct PipeWriter {
    tx: mpsc::SyncSender<Msg>,
    back: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
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
        self.tx.send(Msg::Data(full)).map_err(|_| broken())
    }

    /// Sends what is buffered and the end of the stream.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send_buf()?;
        }
        self.tx.send(Msg::End).map_err(|_| broken())
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
                Ok(Msg::Data(b)) => {
                    f(&b)?;
                    // The writer may be gone already; then the buffer is just freed.
                    let _ = self.back.send(b);
                }
                Ok(Msg::End) => return Ok(()),
                Err(_) => return Err(broken()),
            }
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
}
