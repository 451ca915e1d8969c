//! Format 2 gzip: one gzip member per fixed-size block, each block deflated on its
//! own by libdeflate 1.26 (C, statically bundled by `libdeflate-sys` 1.26.1 and
//! called through `libdeflater` 1.26.1, both pinned exactly).
//!
//! Format (pinned; see the parent module docs and docs/determinism.md):
//! - the input is cut into [`BLOCK_SIZE`] blocks by byte offset (the last block may
//!   be shorter; an empty input is one empty block, never zero members, and an input
//!   of exactly k blocks is k members, with no empty member after them);
//! - each block is one gzip member (RFC 1952): the 10-byte header
//!   `1f 8b 08 00 00 00 00 00 00 ff` (no flags, mtime 0, XFL 0, OS 255), the block as
//!   raw deflate from `libdeflate_deflate_compress` at level [`LEVEL`] with no
//!   dictionary, then the block's CRC-32 and length, little endian;
//! - the members are concatenated in order, nothing before, between or after them.
//!
//! libdeflate keeps no state between calls of `libdeflate_deflate_compress` (every
//! call re-initializes its match finder), so a block's member depends only on the
//! block's bytes: the members can be compressed by any worker in any order. The
//! compressor has no runtime CPU dispatch (only its checksums and decompressor do;
//! the CRC-32 here comes from `crc32fast`, whose result is the CRC whatever its
//! code path), and its compile-time SIMD (the match finder's table initialization)
//! computes exactly what the scalar code does.
//!
//! A reader that stops after the first member (such as `flate2`'s `GzDecoder`) sees
//! only the first block; readers that follow RFC 1952 (GNU gzip, Go's
//! `compress/gzip`, Python's `gzip`, `flate2`'s `MultiGzDecoder`) read the whole
//! stream.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libdeflater::{CompressionLvl, Compressor};

/// Uncompressed bytes per member. Part of the format.
pub(crate) const BLOCK_SIZE: usize = 1024 * 1024;
/// libdeflate compression level. Part of the format.
pub(crate) const LEVEL: i32 = 6;
/// Every member's header: magic, CM = deflate, FLG = 0, MTIME = 0, XFL = 0, OS = 255.
pub(crate) const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];

/// More worker threads than this are never started (the bytes do not depend on it).
const MAX_THREADS: usize = 256;

/// A libdeflate compressor at [`LEVEL`].
pub(crate) fn compressor() -> io::Result<Compressor> {
    compressor_at(LEVEL)
}

/// A libdeflate compressor at `level` (1–12).
pub(crate) fn compressor_at(level: i32) -> io::Result<Compressor> {
    let lvl = CompressionLvl::new(level)
        .map_err(|e| io::Error::other(format!("gzip: bad libdeflate level {level}: {e:?}")))?;
    Ok(Compressor::new(lvl))
}

/// Appends one complete gzip member holding `block` to `out`.
#[cfg(test)]
pub(crate) fn member(c: &mut Compressor, block: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = Vec::new();
    let n = member_into(c, block, &mut buf)?;
    out.extend_from_slice(&buf[..n]);
    Ok(())
}

/// Writes one complete gzip member holding `block` at the start of `buf` and returns
/// its length. `buf` only ever grows (a recycled buffer is not zeroed again); its
/// bytes beyond the returned length are garbage.
fn member_into(c: &mut Compressor, block: &[u8], buf: &mut Vec<u8>) -> io::Result<usize> {
    let bound = c.deflate_compress_bound(block.len());
    let need = HEADER.len() + bound + 8;
    if buf.len() < need {
        buf.resize(need, 0);
    }
    buf[..HEADER.len()].copy_from_slice(&HEADER);
    let n = c
        .deflate_compress(block, &mut buf[HEADER.len()..HEADER.len() + bound])
        .map_err(|e| io::Error::other(format!("gzip: libdeflate failed: {e:?}")))?;
    let end = HEADER.len() + n;
    buf[end..end + 4].copy_from_slice(&crc32fast::hash(block).to_le_bytes());
    // ISIZE is the length modulo 2^32; a block is far smaller than that.
    buf[end + 4..end + 8].copy_from_slice(&(block.len() as u32).to_le_bytes());
    Ok(end + 8)
}

/// One block to compress, and then its member.
struct Job {
    seq: u64,
    input: Vec<u8>,
    /// The member, in `out[..out_len]` (a recycled buffer on the way in).
    out: Vec<u8>,
    out_len: usize,
}

fn run_job(c: &mut Compressor, mut job: Job) -> io::Result<Job> {
    job.out_len = member_into(c, &job.input, &mut job.out)?;
    Ok(job)
}

/// Worker threads and the channels to them. Dropping it stops and joins them.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<io::Result<Job>>,
    abort: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> io::Result<Pool> {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (res_tx, res_rx) = mpsc::channel::<io::Result<Job>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut pool = Pool {
            jobs: Some(job_tx),
            results: res_rx,
            abort: Arc::new(AtomicBool::new(false)),
            workers: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            let abort = Arc::clone(&pool.abort);
            // On error, `pool` is dropped, which stops the workers already started.
            let handle = std::thread::Builder::new()
                .name(format!("imgbuild-gzip2-{i}"))
                .spawn(move || worker(&job_rx, &res_tx, &abort))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        self.jobs = None;
        for handle in self.workers.drain(..) {
            // A worker never panics out (compression runs under catch_unwind).
            let _ = handle.join();
        }
    }
}

fn worker(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    results: &mpsc::Sender<io::Result<Job>>,
    abort: &AtomicBool,
) {
    let mut c: Option<Compressor> = None;
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // the encoder is gone
            }
        };
        if abort.load(Ordering::Relaxed) {
            return;
        }
        // A panic (allocation failure in libdeflater, a bug) becomes an error for
        // the caller instead of a result that never arrives.
        let result = catch_unwind(AssertUnwindSafe(|| {
            let c = match &mut c {
                Some(c) => c,
                None => c.insert(compressor()?),
            };
            run_job(c, job)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("gzip: compression worker panicked")));
        if results.send(result).is_err() {
            return;
        }
    }
}

enum Backend {
    /// threads == 1: compress on the calling thread.
    Inline(Compressor),
    Pool(Pool),
}

/// The format 2 gzip encoder behind [`super::Encoder`].
pub(crate) struct MembersEncoder<W: Write> {
    inner: W,
    backend: Backend,
    /// The block being filled (capacity `BLOCK_SIZE`).
    block: Vec<u8>,
    /// Sequence number of the next block handed out.
    next_seq: u64,
    /// Sequence number of the next member to write to `inner`.
    next_write: u64,
    /// Members that arrived before their predecessors.
    ready: BTreeMap<u64, Job>,
    max_in_flight: u64,
    /// Recycled buffers.
    free: Vec<(Vec<u8>, Vec<u8>)>,
    /// Set after any error: the stream is broken, every later call fails.
    poisoned: bool,
}

impl<W: Write> MembersEncoder<W> {
    pub(crate) fn new(inner: W, threads: NonZeroUsize) -> io::Result<Self> {
        let threads = threads.get().min(MAX_THREADS);
        let backend = if threads == 1 {
            Backend::Inline(compressor()?)
        } else {
            Backend::Pool(Pool::new(threads)?)
        };
        Ok(MembersEncoder {
            inner,
            backend,
            block: Vec::with_capacity(BLOCK_SIZE),
            next_seq: 0,
            next_write: 0,
            ready: BTreeMap::new(),
            max_in_flight: 2 * threads as u64,
            free: Vec::new(),
            poisoned: false,
        })
    }

    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        if self.poisoned {
            return Err(io::Error::other(
                "gzip: encoder unusable after an earlier error",
            ));
        }
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Hands the current block to the compressor and starts a new one.
    fn dispatch(&mut self) -> io::Result<()> {
        let (mut fresh, out) = self
            .free
            .pop()
            .unwrap_or_else(|| (Vec::with_capacity(BLOCK_SIZE), Vec::new()));
        fresh.clear();
        let input = std::mem::replace(&mut self.block, fresh);
        let job = Job {
            seq: self.next_seq,
            input,
            out,
            out_len: 0,
        };
        self.next_seq += 1;
        match &mut self.backend {
            Backend::Inline(c) => {
                let done = catch_unwind(AssertUnwindSafe(|| run_job(c, job)))
                    .unwrap_or_else(|_| Err(io::Error::other("gzip: libdeflate panicked")))?;
                self.ready.insert(done.seq, done);
                self.write_ready()
            }
            Backend::Pool(_) => {
                while self.next_seq - 1 - self.next_write >= self.max_in_flight {
                    self.receive(true)?;
                }
                if let Backend::Pool(pool) = &self.backend {
                    pool.jobs
                        .as_ref()
                        .ok_or_else(|| io::Error::other("gzip: worker pool already closed"))?
                        .send(job)
                        .map_err(|_| io::Error::other("gzip: compression worker threads exited"))?;
                }
                while self.receive(false)? {}
                Ok(())
            }
        }
    }

    /// Takes one result from the workers (waiting for it if `wait`) and writes every
    /// member that is now next in order. Returns whether a result was taken.
    fn receive(&mut self, wait: bool) -> io::Result<bool> {
        let Backend::Pool(pool) = &self.backend else {
            return Ok(false);
        };
        let result = if wait {
            pool.results
                .recv()
                .map_err(|_| io::Error::other("gzip: compression worker threads exited"))?
        } else {
            match pool.results.try_recv() {
                Ok(result) => result,
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(io::Error::other("gzip: compression worker threads exited"))
                }
            }
        };
        let done = result?;
        self.ready.insert(done.seq, done);
        self.write_ready()?;
        Ok(true)
    }

    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(done) = self.ready.remove(&self.next_write) {
            self.inner.write_all(&done.out[..done.out_len])?;
            self.next_write += 1;
            self.free.push((done.input, done.out));
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        while self.next_write < self.next_seq {
            self.receive(true)?;
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.guard(|this| {
            let mut rest = buf;
            while !rest.is_empty() {
                let n = rest.len().min(BLOCK_SIZE - this.block.len());
                this.block.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if this.block.len() == BLOCK_SIZE {
                    this.dispatch()?;
                }
            }
            Ok(buf.len())
        })
    }

    pub(crate) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.guard(|this| {
            this.drain()?;
            this.inner.flush()
        })
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.guard(|this| {
            // The partial last block; or, for an empty input, one empty member.
            if !this.block.is_empty() || this.next_seq == 0 {
                this.dispatch()?;
            }
            this.drain()?;
            this.inner.flush()
        })?;
        drop(self.backend);
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{mixed, random, text, SplitMix64, GOLDEN_LEN, GOLDEN_SEED};
    use super::super::{Compression, Encoder, FormatVersion};
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Read;

    use super::super::testdata::threads;

    fn gzip2(data: &[u8], n: usize) -> Vec<u8> {
        super::super::testdata::encode(Compression::Gzip, FormatVersion::V2, data, n)
    }

    fn gzip2_in_pieces(data: &[u8], n: usize, sizes: &[usize]) -> Vec<u8> {
        super::super::testdata::encode_in_pieces(
            Compression::Gzip,
            FormatVersion::V2,
            data,
            n,
            sizes,
        )
    }

    fn gunzip_multi(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .expect("valid multi-member gzip");
        out
    }

    /// The stream the format prescribes, built independently of the encoder: the
    /// members of the blocks, each compressed on a fresh libdeflate compressor.
    fn reference(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if data.is_empty() {
            member(&mut compressor().expect("compressor"), &[], &mut out).expect("member");
        }
        for block in data.chunks(BLOCK_SIZE) {
            let mut c = compressor().expect("compressor");
            let start = out.len();
            member(&mut c, block, &mut out).expect("member");
            assert_eq!(out[start..start + 10], HEADER, "member header");
        }
        out
    }

    /// Splits a stream into its members, checking each one's header and trailer, by
    /// decoding them one at a time with a single-member decoder.
    fn members(gz: &[u8]) -> Vec<Vec<u8>> {
        let mut blocks = Vec::new();
        let mut rest = gz;
        while !rest.is_empty() {
            assert_eq!(rest[..10], HEADER, "member {} header", blocks.len());
            let mut d = flate2::bufread::GzDecoder::new(rest);
            let mut block = Vec::new();
            d.read_to_end(&mut block).expect("valid member");
            rest = d.into_inner();
            blocks.push(block);
        }
        blocks
    }

    #[test]
    fn empty_input_is_one_empty_member() {
        let gz = gzip2(&[], 2);
        assert_eq!(gz, reference(&[]));
        assert_eq!(members(&gz), vec![Vec::<u8>::new()]);
        assert_eq!(gz[gz.len() - 8..], [0; 8], "CRC 0, ISIZE 0");
    }

    #[test]
    fn blocks_become_members_at_fixed_offsets() {
        let mut rng = SplitMix64(21);
        for len in [
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE,
        ] {
            let data = text(&mut rng, len);
            let gz = gzip2(&data, 2);
            let blocks = members(&gz);
            assert_eq!(
                blocks.len(),
                len.div_ceil(BLOCK_SIZE),
                "{len} bytes: members"
            );
            assert!(blocks.concat() == data, "{len} bytes: round trip");
            for (i, b) in blocks.iter().enumerate() {
                let want = BLOCK_SIZE.min(len - i * BLOCK_SIZE);
                assert_eq!(b.len(), want, "{len} bytes: member {i} holds one block");
            }
        }
    }

    #[test]
    fn output_is_the_reference_for_1_2_and_8_threads_and_any_write_sizes() {
        let data = mixed(31, 5 * BLOCK_SIZE + 4321);
        let want = reference(&data);
        for n in [1, 2, 8] {
            assert!(gzip2(&data, n) == want, "{n} threads");
        }
        let odd = [
            1,
            7,
            4093,
            0,
            65_537,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
        ];
        assert!(
            gzip2_in_pieces(&data, 1, &odd) == want,
            "inline, odd writes"
        );
        assert!(
            gzip2_in_pieces(&data, 3, &odd) == want,
            "3 threads, odd writes"
        );
        assert!(gunzip_multi(&want) == data, "MultiGzDecoder round trip");
    }

    #[test]
    fn flush_does_not_change_the_bytes() {
        let data = mixed(32, 3 * BLOCK_SIZE + 99);
        let want = gzip2(&data, 2);
        let mut enc = Encoder::new(Compression::Gzip, FormatVersion::V2, Vec::new(), threads(2))
            .expect("new");
        for chunk in data.chunks(300_007) {
            enc.write_all(chunk).expect("write");
            enc.flush().expect("flush");
        }
        assert!(enc.finish().expect("finish") == want);
    }

    /// What docs/determinism.md tells users of single-member readers.
    #[test]
    fn a_single_member_reader_sees_only_the_first_block() {
        let data = text(&mut SplitMix64(33), 2 * BLOCK_SIZE + 10);
        let gz = gzip2(&data, 2);
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut first)
            .expect("first member");
        assert!(
            first == data[..BLOCK_SIZE],
            "GzDecoder stops after member 1"
        );
        assert!(gunzip_multi(&gz) == data);
    }

    #[test]
    fn format_1_and_format_2_differ_and_both_decode() {
        let data = mixed(34, BLOCK_SIZE + 5);
        let mut enc = Encoder::new(Compression::Gzip, FormatVersion::V1, Vec::new(), threads(2))
            .expect("new");
        enc.write_all(&data).expect("write");
        let v1 = enc.finish().expect("finish");
        let v2 = gzip2(&data, 2);
        assert!(v1 != v2);
        assert!(gunzip_multi(&v1) == data && gunzip_multi(&v2) == data);
    }

    #[test]
    fn an_inner_write_error_is_returned_and_poisons_the_encoder() {
        struct Failing(usize);
        impl Write for Failing {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = mixed(35, 4 * BLOCK_SIZE);
        for n in [1, 3] {
            let mut enc = Encoder::new(
                Compression::Gzip,
                FormatVersion::V2,
                Failing(100_000),
                threads(n),
            )
            .expect("new");
            let err = enc.write_all(&data).and_then(|()| enc.flush());
            assert!(err.is_err(), "the sink's error surfaces ({n} threads)");
            assert!(enc.write_all(b"more").is_err(), "poisoned");
            assert!(enc.finish().is_err(), "finish fails too");
        }
    }

    #[test]
    fn dropping_without_finish_joins_the_workers() {
        let data = mixed(36, 3 * BLOCK_SIZE);
        for _ in 0..10 {
            let mut enc =
                Encoder::new(Compression::Gzip, FormatVersion::V2, Vec::new(), threads(4))
                    .expect("new");
            enc.write_all(&data).expect("write");
            drop(enc);
        }
    }

    /// Changing any of these hashes changes format 2's bytes: a libdeflate upgrade
    /// or a setting that changes them is a new format version, never a fix.
    #[test]
    fn golden_format_2_gzip_bytes_are_unchanged() {
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("empty", Vec::new(), GOLDEN_EMPTY),
            ("mixed", mixed(GOLDEN_SEED, GOLDEN_LEN), GOLDEN_MIXED),
            (
                "text",
                text(&mut SplitMix64(GOLDEN_SEED), 3 * BLOCK_SIZE + 17),
                GOLDEN_TEXT,
            ),
            (
                "random",
                random(&mut SplitMix64(GOLDEN_SEED), BLOCK_SIZE + 1),
                GOLDEN_RANDOM,
            ),
        ];
        let mut failures = Vec::new();
        for (name, data, want) in cases {
            let gz = gzip2(&data, 2);
            let got = format!("{:x}", Sha256::digest(&gz));
            if got != want {
                failures.push(format!("{name}: {got} ({} bytes)", gz.len()));
            }
        }
        assert!(
            failures.is_empty(),
            "format 2 gzip output changed: {failures:#?}"
        );
    }

    const GOLDEN_EMPTY: &str = "30e6fa98fb48c2b132824d1ac5e2243c0be9e9082ff32598d34d7687ca7f6c7f";
    const GOLDEN_MIXED: &str = "2990783940f7c9202e86f984e2aec7bd4d9dc7a311cb0cade0f1fd59437c81f4";
    const GOLDEN_TEXT: &str = "4e1cb9e8f5d57f737e42e14ff070d272c7292c678ae8680a0bbb2ed67b7f6120";
    const GOLDEN_RANDOM: &str = "18e05bdaf9cf33c784f1582960159f1e06ce4b63484bb853d2e4c76b0c821b00";

    /// Not a test: the measurement behind the choice of format 2's core, level and
    /// block size (docs/benchmarks.md), to run by hand in release mode:
    ///
    /// `IMGBUILD_BENCH_INPUT=layer.tar cargo test --release --lib \
    ///  compress::gzip_members::tests::candidates -- --ignored --nocapture`
    ///
    /// One thread, whole input in memory: CPU seconds and compressed size of each
    /// candidate (libdeflate at several levels and block sizes, zlib-rs independent
    /// members, and format 1's pigz-style stream).
    #[test]
    #[ignore = "manual measurement, no assertion"]
    fn candidates() {
        let Some(path) = std::env::var_os("IMGBUILD_BENCH_INPUT") else {
            println!("set IMGBUILD_BENCH_INPUT to a tar file");
            return;
        };
        let data = std::fs::read(path).expect("read IMGBUILD_BENCH_INPUT");
        let report = |name: &str, secs: f64, size: usize| {
            println!(
                "{name:<36} {secs:>7.2} s {size:>11} bytes ({:.3}% of input)",
                100.0 * size as f64 / data.len() as f64
            );
        };
        let only = std::env::var("IMGBUILD_CANDIDATES").unwrap_or_default();
        let wanted = |name: &str| only.is_empty() || only.split(',').any(|w| name.contains(w));
        for level in [4, 5, 6, 7, 8] {
            for block in [256 << 10, 1 << 20, 4 << 20] {
                let name = format!("libdeflate-{level} {} KiB members", block >> 10);
                if !wanted(&name) {
                    continue;
                }
                let mut c = compressor_at(level).expect("compressor");
                let mut out = Vec::with_capacity(data.len());
                let start = std::time::Instant::now();
                for b in data.chunks(block) {
                    member(&mut c, b, &mut out).expect("member");
                }
                report(&name, start.elapsed().as_secs_f64(), out.len());
            }
        }
        for level in [4, 5, 6] {
            let name = format!("zlib-rs-{level} 1024 KiB members");
            if !wanted(&name) {
                continue;
            }
            let start = std::time::Instant::now();
            let mut total = 0;
            let mut out = vec![0u8; (1 << 20) + (1 << 16)];
            for b in data.chunks(1 << 20) {
                let config = zlib_rs::DeflateConfig {
                    level,
                    ..Default::default()
                };
                let (o, _) = zlib_rs::compress_slice(&mut out, b, config);
                total += o.len() + 18;
            }
            report(&name, start.elapsed().as_secs_f64(), total);
        }
        let name = "format 1 (zlib-rs-6 pigz-style)";
        if wanted(name) {
            let start = std::time::Instant::now();
            let mut enc = super::super::Encoder::new(
                super::super::Compression::Gzip,
                crate::format::FormatVersion::V1,
                Vec::new(),
                NonZeroUsize::MIN,
            )
            .expect("encoder");
            enc.write_all(&data).expect("write");
            let out = enc.finish().expect("finish");
            report(name, start.elapsed().as_secs_f64(), out.len());
        }
    }
}
