//! The one reader of layer tars and archives: a blob stream (gzip — every member —,
//! zstd or plain tar, told apart by its first bytes or by the caller), decompressed,
//! optionally hashed (the layer's diff_id), and walked entry by entry.
//!
//! Every failure is classified once: a failure of the blob stream itself (the file,
//! the network) is [`Fault::Source`] (I/O, exit 3); anything a decoder or the tar
//! reader rejects is [`Fault::Corrupt`] (bad input, exit 2). An `InvalidData` error
//! from the stream is not a read failure: it is how an image source
//! (`crate::source::VerifyingReader`) says the bytes do not match their digest, which
//! makes the blob corrupt, as a bad tar does. Each caller words its own messages
//! (`diff`, the SBOM, base-layer verification, `[[layer.archive]]`).

use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

/// Bytes read from the compressed blob at a time.
const READ_BUFFER: usize = 256 * 1024;

/// How a blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip, possibly several members (read as one stream, as `gzip -d` does).
    Gzip,
    Zstd,
    /// A plain tar.
    None,
}

impl Compression {
    /// The compression `head` (a blob's first bytes) starts with; anything that is
    /// neither gzip nor zstd is taken as a plain tar.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The word for it in messages: `gzip`, `zstd`, `a plain tar`.
    pub fn describe(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "a plain tar",
        }
    }

    /// The compression an OCI/Docker layer media type names (`…tar+gzip`,
    /// `…tar+zstd`, `…tar`, Docker's `…tar.gzip`); `None` for any other type.
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }
}

/// Whose fault a read error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Reading the blob stream failed (exit 3).
    Source,
    /// The bytes are not a valid stream or tar (exit 2).
    Corrupt,
}

/// A classified read error; `entry` is the index of the tar entry whose handling
/// failed (the caller's `each`), `None` for the stream or the tar framing.
#[derive(Debug)]
pub struct ReadError {
    pub fault: Fault,
    pub entry: Option<usize>,
    pub error: io::Error,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A blob opened for reading: reads give its uncompressed bytes.
pub struct Blob<'a> {
    decoded: Box<dyn Read + 'a>,
    failed: Rc<Cell<bool>>,
    hasher: Option<Sha256>,
}

impl<'a> Blob<'a> {
    /// Opens `source`, decompressing it as `compression` says, or as its first bytes
    /// say when `None`. With `hash`, the uncompressed bytes are hashed as they are read
    /// (see [`Blob::walk`]).
    pub fn open(
        source: impl Read + 'a,
        compression: Option<Compression>,
        hash: bool,
    ) -> Result<Blob<'a>, ReadError> {
        let failed = Rc::new(Cell::new(false));
        let source = SourceReader {
            inner: source,
            failed: failed.clone(),
        };
        let classify = |error| classify(&failed, None, error);
        let mut buffered = BufReader::with_capacity(READ_BUFFER, source);
        let compression = match compression {
            Some(c) => c,
            None => Compression::sniff(buffered.fill_buf().map_err(classify)?),
        };
        let decoded: Box<dyn Read + 'a> = match compression {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(classify)?)
            }
            Compression::None => Box::new(buffered),
        };
        Ok(Blob {
            decoded,
            failed,
            hasher: hash.then(Sha256::new),
        })
    }

    /// Classifies an error met reading this blob (or an entry of it).
    pub fn classify(&self, error: io::Error) -> ReadError {
        classify(&self.failed, None, error)
    }

    /// Walks the tar, calling `each` with every entry and its index (PAX global
    /// headers included); an entry's content not read by `each` is skipped. When the
    /// blob was opened with `hash`, the rest of the stream (the end-of-archive blocks
    /// the tar reader need not read) is read too, and the sha256 of all the
    /// uncompressed bytes returned.
    pub fn walk(
        self,
        mut each: impl FnMut(usize, &mut tar::Entry<'_, Blob<'a>>) -> io::Result<()>,
    ) -> Result<Option<Digest>, ReadError> {
        let failed = self.failed.clone();
        let mut archive = tar::Archive::new(self);
        for (index, entry) in archive
            .entries()
            .map_err(|e| classify(&failed, None, e))?
            .enumerate()
        {
            let mut entry = entry.map_err(|e| classify(&failed, None, e))?;
            each(index, &mut entry).map_err(|e| classify(&failed, Some(index), e))?;
        }
        let mut blob = archive.into_inner();
        if blob.hasher.is_none() {
            return Ok(None);
        }
        io::copy(&mut blob, &mut io::sink()).map_err(|e| classify(&failed, None, e))?;
        Ok(blob.hasher.map(|h| Digest::from_bytes(h.finalize().into())))
    }
}

impl Read for Blob<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.decoded.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

fn classify(failed: &Cell<bool>, entry: Option<usize>, error: io::Error) -> ReadError {
    let fault = if failed.get() {
        Fault::Source
    } else {
        Fault::Corrupt
    };
    ReadError {
        fault,
        entry,
        error,
    }
}

/// The blob stream; remembers whether reading it failed (`InvalidData` and
/// `Interrupted` aside: see the module comment).
struct SourceReader<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if !matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::InvalidData
            ) {
                self.failed.set(true);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, path, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, bytes).expect("gzip");
        gz.finish().expect("gzip")
    }

    fn names(blob: &[u8], c: Option<Compression>) -> (Vec<String>, Option<Digest>) {
        let mut out = Vec::new();
        let digest = Blob::open(blob, c, true)
            .expect("open")
            .walk(|_, e| {
                out.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
                Ok(())
            })
            .expect("walk");
        (out, digest)
    }

    #[test]
    fn plain_gzip_multi_member_and_zstd_give_the_same_entries_and_diff_id() {
        let tar = tar_of(&[("a", b"1"), ("b", b"22")]);
        let zst = zstd::stream::encode_all(&tar[..], 3).expect("zstd");
        // Two gzip members, split inside the tar: one stream once decompressed.
        let mut two = gzip(&tar[..700]);
        two.extend(gzip(&tar[700..]));
        let want = (
            vec!["a".to_string(), "b".to_string()],
            Some(Digest::of(&tar)),
        );
        for blob in [tar.clone(), gzip(&tar), two, zst] {
            assert_eq!(names(&blob, None), want);
        }
        assert_eq!(names(&gzip(&tar), Some(Compression::Gzip)), want);
    }

    #[test]
    fn a_corrupt_stream_is_corrupt_and_a_failing_source_is_source() {
        let mut bad = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        bad.extend([0xffu8; 64]);
        let e = Blob::open(&bad[..], None, false)
            .expect("open")
            .walk(|_, _| Ok(()))
            .unwrap_err();
        assert_eq!(e.fault, Fault::Corrupt);

        struct Failing(io::ErrorKind);
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(self.0, "boom"))
            }
        }
        let e = Blob::open(Failing(io::ErrorKind::Other), None, false)
            .err()
            .expect("error");
        assert_eq!(e.fault, Fault::Source);
        // An image source's digest mismatch is corrupt content, not I/O.
        let e = Blob::open(Failing(io::ErrorKind::InvalidData), None, false)
            .err()
            .expect("error");
        assert_eq!(e.fault, Fault::Corrupt);
    }

    #[test]
    fn an_error_of_each_names_its_entry() {
        let tar = tar_of(&[("a", b"1"), ("b", b"2")]);
        let e = Blob::open(&tar[..], None, false)
            .expect("open")
            .walk(|i, _| {
                if i == 1 {
                    Err(io::Error::other("no"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert_eq!((e.fault, e.entry), (Fault::Corrupt, Some(1)));
    }

    #[test]
    fn media_types_name_their_compression() {
        let oci = "application/vnd.oci.image.layer.v1.tar";
        assert_eq!(Compression::of_media_type(oci), Some(Compression::None));
        assert_eq!(
            Compression::of_media_type(&format!("{oci}+gzip")),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::of_media_type("application/json"), None);
    }
}
