//! zstd through libzstd 1.5.7 (statically bundled by `zstd-sys`), driven directly
//! with `zstd_safe::CCtx`.
//!
//! Format (pinned; see the parent module docs and docs/determinism.md): one zstd frame,
//! compression level 3 (format 1) or 1 (format 2), checksum flag on, content size flag off, dictionary ID flag
//! off, no dictionary, and always libzstd's multithreaded mode (`nbWorkers` =
//! `threads` ≥ 1). In that mode libzstd cuts the input into jobs of a size derived
//! from the compression parameters alone (level 3: window log 21, 8 MiB jobs) and
//! compresses each with the overlap of the previous one, so the bytes do not depend
//! on `nbWorkers`; single-threaded mode (`nbWorkers` = 0) would produce different
//! bytes and is never requested. Level 3 uses the `dfast` strategy, which does not
//! use the row-based match finder whose selection can depend on the target CPU.
//!
//! Why the bytes do not depend on how the input is written:
//! - every non-empty `write` is passed to `ZSTD_compressStream2(ZSTD_e_continue)`,
//!   which only buffers input up to the next job boundary (no flush directive is
//!   ever issued before the end, and `Write::flush` does not issue one);
//! - empty writes are not passed on: the first call to libzstd decides the frame
//!   parameters, and only a first call with `ZSTD_e_end` (i.e. an entirely empty
//!   input) lets libzstd size them to the input (it then compresses the empty input
//!   single-threaded, which is still a fixed function of the empty input).

use std::io::{self, Write};
use std::num::NonZeroUsize;

use zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer};

/// Compression level of format 1. Part of the format.
pub(crate) const LEVEL_V1: i32 = 3;
/// Compression level of format 2. Part of the format: level 1 (the `fast` strategy,
/// 2 MiB jobs in multithreaded mode) costs about a third less CPU than level 3 for
/// about 1.4% more bytes on the benchmark corpus (docs/benchmarks.md).
pub(crate) const LEVEL_V2: i32 = 1;

/// More workers than this are never requested (the bytes do not depend on it).
const MAX_WORKERS: usize = 200;

fn zstd_error(what: &str, code: usize) -> io::Error {
    io::Error::other(format!("zstd: {what}: {}", zstd_safe::get_error_name(code)))
}

/// The zstd encoder behind [`super::Encoder`].
pub(crate) struct ZstdEncoder<W: Write> {
    inner: W,
    cctx: CCtx<'static>,
    /// Output staging buffer, capacity `CCtx::out_size()`.
    out: Vec<u8>,
    /// Set after any error: the stream is broken, every later call fails.
    poisoned: bool,
}

impl<W: Write> ZstdEncoder<W> {
    /// An encoder at `level` (format 1: [`LEVEL_V1`], format 2: [`LEVEL_V2`]); every
    /// other parameter is the same in both formats.
    pub(crate) fn with_level(inner: W, threads: NonZeroUsize, level: i32) -> io::Result<Self> {
        let mut cctx = CCtx::try_create()
            .ok_or_else(|| io::Error::other("zstd: cannot allocate a compression context"))?;
        let workers = u32::try_from(threads.get().min(MAX_WORKERS)).unwrap_or(1);
        for param in [
            CParameter::CompressionLevel(level),
            CParameter::ChecksumFlag(true),
            CParameter::ContentSizeFlag(false),
            CParameter::DictIdFlag(false),
            CParameter::NbWorkers(workers),
        ] {
            cctx.set_parameter(param)
                .map_err(|code| zstd_error(&format!("setting {param:?}"), code))?;
        }
        Ok(ZstdEncoder {
            inner,
            cctx,
            out: Vec::with_capacity(CCtx::out_size()),
            poisoned: false,
        })
    }

    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        if self.poisoned {
            return Err(io::Error::other(
                "zstd: encoder unusable after an earlier error",
            ));
        }
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// One `ZSTD_compressStream2` call; writes what it produced to `inner` and
    /// returns libzstd's "bytes left to flush" hint.
    fn step(&mut self, input: &mut InBuffer<'_>, op: ZSTD_EndDirective) -> io::Result<usize> {
        self.out.clear();
        let mut output = OutBuffer::around(&mut self.out);
        let left = self
            .cctx
            .compress_stream2(&mut output, input, op)
            .map_err(|code| zstd_error("compression failed", code))?;
        if !self.out.is_empty() {
            self.inner.write_all(&self.out)?;
        }
        Ok(left)
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            // Never pass an empty write on (see the module docs).
            return self.guard(|_| Ok(0));
        }
        self.guard(|this| {
            let mut input = InBuffer::around(buf);
            // In multithreaded mode libzstd may take only part of the input per
            // call; it blocks (waiting for a worker) when it can make no progress.
            while input.pos() < buf.len() {
                this.step(&mut input, ZSTD_EndDirective::ZSTD_e_continue)?;
            }
            Ok(buf.len())
        })
    }

    pub(crate) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }

    /// Flushes the inner writer only: asking libzstd to flush would end the
    /// current job early and change the bytes.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.guard(|this| this.inner.flush())
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.guard(|this| {
            let mut empty = InBuffer::around(&[]);
            while this.step(&mut empty, ZSTD_EndDirective::ZSTD_e_end)? != 0 {}
            this.inner.flush()
        })?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{mixed, text, SplitMix64, GOLDEN_SEED};
    use super::super::{Compression, Encoder, FormatVersion};
    use super::*;
    use sha2::{Digest, Sha256};

    use super::super::testdata::threads;

    fn zstd(data: &[u8], n: usize) -> Vec<u8> {
        super::super::testdata::encode(Compression::Zstd, FormatVersion::V1, data, n)
    }

    fn zstd_in_pieces(data: &[u8], n: usize, sizes: &[usize]) -> Vec<u8> {
        super::super::testdata::encode_in_pieces(
            Compression::Zstd,
            FormatVersion::V1,
            data,
            n,
            sizes,
        )
    }

    /// Frame header checks: magic, and a frame header descriptor with the checksum
    /// flag set, no content size, no dictionary ID.
    fn check_frame(z: &[u8]) {
        assert_eq!(z[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        let fhd = z[4];
        assert_eq!(fhd >> 6, 0, "no frame content size field");
        assert_eq!(fhd & 0b100, 0b100, "content checksum flag");
        assert_eq!(fhd & 0b11, 0, "no dictionary ID field");
        let size = zstd_safe::get_frame_content_size(z);
        assert!(matches!(size, Ok(None)), "content size unknown: {size:?}");
    }

    fn check_round_trip(data: &[u8]) {
        for n in [1, 2] {
            let z = zstd(data, n);
            check_frame(&z);
            let decoded = ::zstd::decode_all(&z[..]).expect("valid zstd");
            assert!(decoded == data, "round trip of {} bytes", data.len());
        }
    }

    #[test]
    fn empty_input_round_trips() {
        check_round_trip(&[]);
    }

    #[test]
    fn one_byte_round_trips() {
        check_round_trip(b"x");
    }

    #[test]
    fn exactly_128_kib_and_one_more_byte_round_trip() {
        let data = text(&mut SplitMix64(1), 128 * 1024 + 1);
        check_round_trip(&data[..128 * 1024]);
        check_round_trip(&data);
    }

    #[test]
    fn several_mib_of_mixed_data_round_trip() {
        check_round_trip(&mixed(3, 5 * 1024 * 1024 + 12_345));
    }

    /// Spans several 8 MiB jobs, so that the workers really run in parallel.
    #[test]
    fn output_is_identical_for_1_2_and_8_workers() {
        let data = mixed(4, 20 * 1024 * 1024 + 777);
        let one = zstd(&data, 1);
        assert!(zstd(&data, 2) == one, "2 workers differ from 1");
        assert!(zstd(&data, 8) == one, "8 workers differ from 1");
        assert!(::zstd::decode_all(&one[..]).expect("valid zstd") == data);
    }

    #[test]
    fn multithreaded_mode_is_used_even_with_one_thread() {
        // With nbWorkers = 0 libzstd produces other bytes; we must never get those.
        let data = mixed(13, 3 * 1024 * 1024);
        let mut single = CCtx::create();
        for param in [
            CParameter::CompressionLevel(LEVEL_V1),
            CParameter::ChecksumFlag(true),
            CParameter::ContentSizeFlag(false),
            CParameter::DictIdFlag(false),
            CParameter::NbWorkers(0),
        ] {
            single.set_parameter(param).expect("set parameter");
        }
        let mut st = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        let mut output = OutBuffer::around(&mut st);
        let mut input = InBuffer::around(&data);
        while input.pos() < data.len() {
            single
                .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_continue)
                .expect("compress");
        }
        while single.end_stream(&mut output).expect("end") != 0 {}
        assert!(::zstd::decode_all(&st[..]).expect("valid zstd") == data);
        assert!(st != zstd(&data, 1), "single-threaded bytes must differ");
    }

    #[test]
    fn output_is_identical_for_one_write_and_many_odd_sized_writes() {
        let data = mixed(5, 18 * 1024 * 1024 + 4321);
        let whole = zstd(&data, 2);
        let odd = [1, 7, 4093, 0, 65_537, 3, 131_071, 1 << 20, 9_000_001];
        assert!(
            zstd_in_pieces(&data, 1, &odd) == whole,
            "1 worker, odd writes"
        );
        assert!(
            zstd_in_pieces(&data, 2, &odd) == whole,
            "2 workers, odd writes"
        );
        assert!(
            zstd_in_pieces(&data, 8, &[1, 7, 4093]) == whole,
            "8 workers"
        );
        // Small input too (below one job), written with an empty write first.
        let small = &data[..1000];
        assert!(zstd_in_pieces(small, 2, &[0, 1, 7]) == zstd(small, 1));
    }

    #[test]
    fn flush_does_not_change_the_bytes() {
        let data = mixed(6, 1024 * 1024 + 99);
        let whole = zstd(&data, 2);
        let mut enc = Encoder::new(Compression::Zstd, FormatVersion::V1, Vec::new(), threads(2))
            .expect("new");
        for chunk in data.chunks(100_003) {
            enc.write_all(chunk).expect("write");
            enc.flush().expect("flush");
        }
        assert!(enc.finish().expect("finish") == whole);
    }

    #[test]
    fn dropping_without_finish_does_not_hang() {
        let data = mixed(10, 10 * 1024 * 1024);
        for _ in 0..3 {
            let mut enc =
                Encoder::new(Compression::Zstd, FormatVersion::V1, Vec::new(), threads(4))
                    .expect("new");
            enc.write_all(&data).expect("write");
            drop(enc);
        }
    }

    fn zstd2(data: &[u8], n: usize) -> Vec<u8> {
        let mut enc = Encoder::new(Compression::Zstd, FormatVersion::V2, Vec::new(), threads(n))
            .expect("new");
        let mut rest = data;
        // Odd write sizes: the bytes must not depend on them.
        for size in [1usize, 7, 4093, 65_537, 1 << 20, 3_000_001].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let k = (*size).min(rest.len());
            enc.write_all(&rest[..k]).expect("write");
            rest = &rest[k..];
        }
        enc.finish().expect("finish")
    }

    /// Format 2 (level 1, 2 MiB jobs): one frame with the same header flags, the
    /// same bytes for any worker count and write sizes, and other bytes than format 1.
    #[test]
    fn format_2_is_level_1_and_identical_for_1_2_and_8_workers() {
        let data = mixed(14, 9 * 1024 * 1024 + 321);
        let mut enc = Encoder::new(Compression::Zstd, FormatVersion::V2, Vec::new(), threads(1))
            .expect("new");
        enc.write_all(&data).expect("write");
        let one = enc.finish().expect("finish");
        check_frame(&one);
        assert!(zstd2(&data, 2) == one, "2 workers differ from 1");
        assert!(zstd2(&data, 8) == one, "8 workers differ from 1");
        assert!(one != zstd(&data, 2), "format 2 is not format 1's level");
        assert!(::zstd::decode_all(&one[..]).expect("valid zstd") == data);
        // An empty input is still one valid frame.
        assert!(::zstd::decode_all(&zstd2(&[], 2)[..])
            .expect("valid zstd")
            .is_empty());
    }

    /// Changing this hash changes format 2's bytes: a libzstd upgrade or a setting
    /// that changes them is a new format version, never a fix.
    #[test]
    fn golden_format_2_zstd_bytes_are_unchanged() {
        let data = mixed(GOLDEN_SEED, GOLDEN_ZSTD_LEN);
        let z = zstd2(&data, 2);
        let hex = format!("{:x}", Sha256::digest(&z));
        assert_eq!(
            hex,
            GOLDEN_ZSTD_V2_SHA256,
            "format 2 zstd output changed ({} bytes)",
            z.len()
        );
    }

    const GOLDEN_ZSTD_V2_SHA256: &str =
        "f537ba533026807f57611e5568bf4674687f2913eee117c175fee51eb7ebfcef";

    /// Large enough to span three 8 MiB jobs.
    const GOLDEN_ZSTD_LEN: usize = 20 * 1024 * 1024;

    /// Changing this hash is a format change (docs/determinism.md): it bumps imgbuild's
    /// format version and must be called out in the changelog.
    #[test]
    fn golden_zstd_bytes_are_unchanged() {
        let data = mixed(GOLDEN_SEED, GOLDEN_ZSTD_LEN);
        let z = zstd(&data, 2);
        let hex = format!("{:x}", Sha256::digest(&z));
        assert_eq!(
            hex,
            GOLDEN_ZSTD_SHA256,
            "zstd output changed ({} bytes)",
            z.len()
        );
    }

    /// sha256 of the compressed golden input. Pinned: a different value means the
    /// compressed bytes changed, which is a format change (docs/determinism.md).
    const GOLDEN_ZSTD_SHA256: &str =
        "ff9d709562cc41ee4a6fc7721cfcacae2a233f1d2dc3f71dc8dc76125f0702fc";
}
