//! Layer compression (docs/determinism.md).
//!
//! The compressed bytes of a layer are part of its digest, so each compression kind
//! is pinned to exactly one implementation, with fixed parameters, called directly
//! (never through a crate whose backend a Cargo feature elsewhere in the graph could
//! swap). The output of [`Encoder`] is a pure function of the uncompressed bytes, the
//! [`Compression`] kind and the [`FormatVersion`]: it does not depend on the number of
//! threads, on how the input was split into `write` calls, on `flush` calls, or on
//! timing. docs/determinism.md documents every format version's bytes.
//!
//! # Format 1
//!
//! **gzip** (`gzip` submodule, the pigz scheme, pure Rust via `zlib-rs` 0.6.8):
//! - Header, 10 bytes: `1f 8b 08 00` (magic, deflate, no flags), mtime `00 00 00 00`,
//!   XFL `00`, OS `ff` ("unknown", so that the bytes do not name the host OS). No
//!   name, comment, extra field or header CRC.
//! - Body: one raw deflate stream, built from the input cut into fixed 128 KiB
//!   blocks (boundaries at byte offsets 0, 131072, 262144, …; the last block may be
//!   shorter; an empty input is one empty block). Each block is compressed on a
//!   freshly initialized deflate state (never a `deflateReset` one, whose leftover
//!   hash chains change the matches found): level 6, window bits −15 (raw),
//!   memLevel 8, default strategy, primed with `deflateSetDictionary` on the last
//!   32 KiB of the previous block's *uncompressed* bytes (the first block has no
//!   dictionary). Every block but the last ends with `Z_SYNC_FLUSH` (so ends
//!   byte-aligned with the empty stored block `00 00 ff ff`); the last ends with
//!   `Z_FINISH`. This is what lets the blocks be compressed in parallel and
//!   concatenated into one valid deflate stream.
//! - Trailer: CRC-32 of the whole input, then its length mod 2³², both little
//!   endian.
//! - zlib-rs is pure Rust and its output does not depend on the CPU: its hash
//!   function is the same on every target, and its SIMD paths (`compare256`,
//!   `slide_hash`) compute exactly what the scalar ones do.
//!
//! **zstd** (`zstd` submodule, libzstd 1.5.7 bundled by `zstd-sys`, one frame):
//! level 3, checksum flag on, no content size, no dictionary ID, and always the
//! multithreaded mode (`nbWorkers` = threads ≥ 1, never 0). libzstd's multithreaded
//! mode cuts the input into jobs whose size depends only on the compression
//! parameters (never on `nbWorkers`), so its bytes are the same for any worker
//! count; its single-threaded mode produces *different* bytes, which is why it is
//! never used (except by libzstd itself for an entirely empty input, which is still
//! deterministic). The tests prove the independence from the worker count.
//!
//! **none**: the bytes are passed through unchanged.
//!
//! # Format 2
//!
//! **gzip** (`gzip_members` submodule): one gzip member per 1 MiB block, each block
//! deflated on its own by libdeflate 1.26 at level 6; every member has the header of
//! format 1 (`1f 8b 08 00 00 00 00 00 00 ff`) and its block's CRC-32 and length.
//! About 2× faster than format 1 per core for about 0.4% more bytes; readers must
//! read every member of the stream (RFC 1952 allows several; see the submodule).
//!
//! **zstd**: as format 1 but at level 1 (libzstd's multithreaded mode still, so the
//! same bytes for any worker count).
//!
//! **none**: as format 1.
//!
//! Changing any of these parameters, or upgrading `zlib-rs` or libzstd in a way that
//! changes their output, changes the golden hashes in the tests: that is a format
//! change (bump the format version and say so in the changelog).

mod gzip;
mod gzip_members;
mod zstd;

use crate::format::FormatVersion;

use std::io::{self, Write};
use std::num::NonZeroUsize;

/// A layer compression kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, compressed in parallel with the pigz scheme (see the module docs).
    Gzip,
    /// zstd, level 3, libzstd's multithreaded mode.
    Zstd,
    /// No compression: the layer is a plain tar.
    None,
}

impl Compression {
    /// The names accepted by [`Compression::parse`], in a fixed order.
    pub const ALL: [&'static str; 3] = ["gzip", "zstd", "none"];

    /// Parses `"gzip"`, `"zstd"` or `"none"` (exactly, lowercase).
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "none" => Some(Compression::None),
            _ => None,
        }
    }

    /// The name of this kind, as accepted by [`Compression::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// OCI layer media type: `application/vnd.oci.image.layer.v1.tar+gzip`,
    /// `…tar+zstd`, or `…tar`.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A streaming compressor. Write the uncompressed bytes in; [`Encoder::finish`]
/// flushes everything and returns the inner writer.
///
/// Output bytes depend ONLY on the input bytes and the [`Compression`] kind — never
/// on `threads`, on how the input was split into `write` calls, or on timing.
///
/// `W` need not be `Send`: only the calling thread writes to it; worker threads see
/// owned buffers only. Memory is bounded whatever the stream length.
///
/// [`Write::flush`] writes out whatever is already compressed and flushes the inner
/// writer, but it never forces out a partial gzip block or zstd job (that would
/// change the bytes): up to one block (gzip, 128 KiB) or one job (zstd) of input
/// may remain buffered until more input arrives or [`Encoder::finish`].
///
/// Dropping an `Encoder` without calling `finish` (e.g. on an error path) stops and
/// joins its worker threads; the inner writer then holds an incomplete stream.
/// After an error from `write`, `flush` or the inner writer, the encoder is
/// poisoned: every later call fails.
pub struct Encoder<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Gzip(Box<gzip::GzipEncoder<W>>),
    GzipMembers(Box<gzip_members::MembersEncoder<W>>),
    Zstd(zstd::ZstdEncoder<W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Creates an encoder of `kind` in format version `format` writing into `inner`,
    /// compressing on `threads` threads (gzip: worker threads besides the caller, or
    /// inline when 1; zstd: libzstd's `nbWorkers`). Format 1's gzip header is written
    /// to `inner` right away. zstd and none are the same in every format version.
    pub fn new(
        kind: Compression,
        format: FormatVersion,
        inner: W,
        threads: NonZeroUsize,
    ) -> io::Result<Self> {
        let inner =
            match (kind, format) {
                (Compression::Gzip, FormatVersion::V1) => {
                    Inner::Gzip(Box::new(gzip::GzipEncoder::new(inner, threads)?))
                }
                (Compression::Gzip, FormatVersion::V2) => {
                    Inner::GzipMembers(Box::new(gzip_members::MembersEncoder::new(inner, threads)?))
                }
                (Compression::Zstd, FormatVersion::V1) => Inner::Zstd(
                    zstd::ZstdEncoder::with_level(inner, threads, zstd::LEVEL_V1)?,
                ),
                (Compression::Zstd, FormatVersion::V2) => Inner::Zstd(
                    zstd::ZstdEncoder::with_level(inner, threads, zstd::LEVEL_V2)?,
                ),
                (Compression::None, _) => Inner::None(inner),
            };
        Ok(Encoder { inner })
    }

    /// Compresses the rest of the input, writes the end of the stream (gzip
    /// trailer, zstd frame epilogue), flushes the inner writer and returns it.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::Gzip(e) => e.finish(),
            Inner::GzipMembers(e) => e.finish(),
            Inner::Zstd(e) => e.finish(),
            Inner::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Gzip(e) => e.write(buf),
            Inner::GzipMembers(e) => e.write(buf),
            Inner::Zstd(e) => e.write(buf),
            Inner::None(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Gzip(e) => e.write_all(buf),
            Inner::GzipMembers(e) => e.write_all(buf),
            Inner::Zstd(e) => e.write_all(buf),
            Inner::None(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Gzip(e) => e.flush(),
            Inner::GzipMembers(e) => e.flush(),
            Inner::Zstd(e) => e.flush(),
            Inner::None(w) => w.flush(),
        }
    }
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Gzip(_) | Inner::GzipMembers(_) => Compression::Gzip,
            Inner::Zstd(_) => Compression::Zstd,
            Inner::None(_) => Compression::None,
        };
        f.debug_struct("Encoder")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// Test helpers shared by the compressor tests.
#[cfg(test)]
pub(crate) mod testdata {
    use super::{Compression, Encoder};
    use crate::format::FormatVersion;
    use std::io::Write;
    use std::num::NonZeroUsize;

    pub(crate) fn threads(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).expect("thread count is not zero")
    }

    /// `data` compressed as `kind` in `format` on `n` threads, written in one piece.
    pub(crate) fn encode(
        kind: Compression,
        format: FormatVersion,
        data: &[u8],
        n: usize,
    ) -> Vec<u8> {
        encode_in_pieces(kind, format, data, n, &[data.len().max(1)])
    }

    /// The same, written in pieces whose sizes cycle through `sizes`.
    pub(crate) fn encode_in_pieces(
        kind: Compression,
        format: FormatVersion,
        data: &[u8],
        n: usize,
        sizes: &[usize],
    ) -> Vec<u8> {
        let mut enc = Encoder::new(kind, format, Vec::new(), threads(n)).expect("new");
        let mut rest = data;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let k = size.min(rest.len());
            enc.write_all(&rest[..k]).expect("write");
            rest = &rest[k..];
        }
        enc.finish().expect("finish")
    }

    /// Seed and length of the input of the golden-hash tests. Changing them changes
    /// the golden hashes (without being a format change).
    pub(crate) const GOLDEN_SEED: u64 = 0x1db_0001;
    pub(crate) const GOLDEN_LEN: usize = 1_500_000;

    /// A small deterministic PRNG (splitmix64), so the tests need no `rand` crate.
    pub(crate) struct SplitMix64(pub u64);

    impl SplitMix64 {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    const WORDS: &[&str] = &[
        "layer",
        "image",
        "the",
        "digest",
        "of",
        "a",
        "reproducible",
        "build",
        "is",
        "tar",
        "entry",
        "mode",
        "0644",
        "root",
        "usr/lib/",
        "bin/sh",
        "config",
        "manifest",
        "and",
        "compress",
        "{\"key\": ",
        "\"value\"}",
        "fn main() {",
        "}\n",
        "return",
        "0;",
        "\n",
        "#include <stdio.h>",
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "=",
        "::",
    ];

    /// Text-like data: words from a small vocabulary with spaces and newlines.
    pub(crate) fn text(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        while out.len() < len {
            let w = WORDS[rng.below(WORDS.len() as u64) as usize];
            out.extend_from_slice(w.as_bytes());
            out.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
        }
        out.truncate(len);
        out
    }

    /// Incompressible bytes.
    pub(crate) fn random(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A mix of text, random bytes, zero runs and repeats of earlier data, in
    /// pieces of irregular sizes, like a tar of a real file tree.
    pub(crate) fn mixed(seed: u64, len: usize) -> Vec<u8> {
        let mut rng = SplitMix64(seed);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let piece = 1 + rng.below(96 * 1024) as usize;
            let piece = piece.min(len - out.len());
            match rng.below(8) {
                0..=3 => {
                    let t = text(&mut rng, piece);
                    out.extend_from_slice(&t);
                }
                4 | 5 => {
                    let r = random(&mut rng, piece);
                    out.extend_from_slice(&r);
                }
                6 => out.resize(out.len() + piece, 0),
                _ => {
                    // Repeat an earlier stretch (long-distance redundancy).
                    if out.is_empty() {
                        out.resize(piece, b'x');
                    } else {
                        let start = rng.below(out.len() as u64) as usize;
                        let n = piece.min(out.len() - start);
                        out.extend_from_within(start..start + n);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_as_str_round_trip_for_every_name() {
        for name in Compression::ALL {
            let kind = Compression::parse(name).expect("every name in ALL parses");
            assert_eq!(kind.as_str(), name);
        }
        assert_eq!(Compression::parse("GZIP"), None);
        assert_eq!(Compression::parse("gz"), None);
        assert_eq!(Compression::parse(""), None);
    }

    #[test]
    fn layer_media_types_are_the_oci_ones() {
        assert_eq!(
            Compression::Gzip.layer_media_type(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            Compression::Zstd.layer_media_type(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(
            Compression::None.layer_media_type(),
            "application/vnd.oci.image.layer.v1.tar"
        );
    }

    #[test]
    fn serde_uses_the_lowercase_names() {
        #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
        struct T {
            c: Compression,
        }
        for name in Compression::ALL {
            let json = format!("{{\"c\":\"{name}\"}}");
            let t: T = serde_json::from_str(&json).expect("lowercase name deserializes");
            assert_eq!(t.c.as_str(), name);
            assert_eq!(serde_json::to_string(&t).expect("serializes"), json);
        }
        assert!(serde_json::from_str::<T>("{\"c\":\"Gzip\"}").is_err());
    }

    #[test]
    fn none_passes_bytes_through_unchanged() {
        let data = testdata::mixed(7, 300_000);
        let mut enc = Encoder::new(
            Compression::None,
            FormatVersion::V1,
            Vec::new(),
            NonZeroUsize::MIN,
        )
        .expect("new encoder");
        for chunk in data.chunks(4093) {
            enc.write_all(chunk).expect("write");
        }
        assert_eq!(enc.finish().expect("finish"), data);
    }

    #[test]
    fn encoder_is_send_when_the_writer_is() {
        fn assert_send<T: Send>() {}
        assert_send::<Encoder<Vec<u8>>>();
        assert_send::<Encoder<std::fs::File>>();
    }

    /// Every kind, through the public interface: the output decodes to the input.
    #[test]
    fn every_kind_round_trips_through_the_public_encoder() {
        let data = testdata::mixed(11, 1_000_000);
        for name in Compression::ALL {
            let kind = Compression::parse(name).expect("name parses");
            let threads = NonZeroUsize::new(2).expect("2 is not zero");
            let mut enc =
                Encoder::new(kind, FormatVersion::V1, Vec::new(), threads).expect("new encoder");
            enc.write_all(&data).expect("write");
            let out = enc.finish().expect("finish");
            let decoded = match kind {
                Compression::Gzip => {
                    let mut d = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut d)
                        .expect("gzip decodes");
                    d
                }
                Compression::Zstd => ::zstd::decode_all(&out[..]).expect("zstd decodes"),
                Compression::None => out,
            };
            assert!(decoded == data, "{name} round trip differs");
        }
    }

    /// Not a test: a throughput measurement to run by hand, in release mode:
    ///
    /// `cargo test --release --lib compress::tests::throughput -- --ignored --nocapture`
    ///
    /// Input: the file named by `IMGBUILD_BENCH_INPUT`, else 200 MiB of
    /// `testdata::mixed` (written to `IMGBUILD_BENCH_DUMP` if set, to feed the same
    /// bytes to pigz/zstd). Writes in 64 KiB pieces, like a tar builder.
    /// Counts and checksums the output (cheaply, so that the numbers are those of
    /// the compressor).
    struct Counter(usize, crc32fast::Hasher);

    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            self.1.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    #[ignore = "manual throughput measurement, no assertion"]
    fn throughput() {
        let data = match std::env::var_os("IMGBUILD_BENCH_INPUT") {
            Some(path) => std::fs::read(path).expect("read IMGBUILD_BENCH_INPUT"),
            None => testdata::mixed(42, 200 * 1024 * 1024),
        };
        if let Some(path) = std::env::var_os("IMGBUILD_BENCH_DUMP") {
            std::fs::write(path, &data).expect("write IMGBUILD_BENCH_DUMP");
        }
        for kind in [Compression::Gzip, Compression::Zstd] {
            for n in [1, 2, 3] {
                let threads = NonZeroUsize::new(n).expect("not zero");
                let start = std::time::Instant::now();
                let mut enc = Encoder::new(
                    kind,
                    FormatVersion::V1,
                    Counter(0, crc32fast::Hasher::new()),
                    threads,
                )
                .expect("new");
                for chunk in data.chunks(64 * 1024) {
                    enc.write_all(chunk).expect("write");
                }
                let Counter(out, crc) = enc.finish().expect("finish");
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "{kind} threads={n}: {:.1} MB/s of input, {:.2} s, {} -> {} bytes \
                     ({:.2}%), crc32 {:08x}",
                    data.len() as f64 / secs / 1e6,
                    secs,
                    data.len(),
                    out,
                    100.0 * out as f64 / data.len() as f64,
                    crc.finalize()
                );
            }
        }
    }
}
