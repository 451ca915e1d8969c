//! The normal form of a layer's tar stream (docs/determinism.md, "Layer tar"), written header by header.
//!
//! The `tar` crate supplies the header struct and checksum; every field is set here,
//! explicitly, so that nothing about the host (mtimes, owners, names, umask, readdir
//! order, sparse files, xattrs) can reach the bytes. Its conveniences that would leak
//! host state (`HeaderMode::Deterministic`, `append_dir_all`, symlink following,
//! sparse detection) are deliberately not used.
//!
//! Every entry is one ustar header. The path goes in `name` when it fits in 100 bytes,
//! else split at the first `/` that lets the head fit `prefix` (155) and the rest
//! `name` (100). Where ustar cannot express an entry (path or link target too long,
//! size ≥ 8 GiB, uid/gid ≥ 2^21), one PAX extended header precedes it: type `x`, name
//! `././@PaxHeader`, mode 0644, owner 0:0, mtime the epoch, records in the fixed order
//! path, linkpath, size, uid, gid. The ustar fields it overrides then hold the first
//! 100 bytes of the path (and link target), and 0 for size, uid and gid. No global
//! headers, no GNU extensions, no sparse entries. The stream ends with two zero blocks.
//! These rules are imgbuild's tar format, version 1: they fix every layer's diff_id.

use crate::beneath::ReadAt;
use crate::plan::{Content, Entry, EntryKind};
use std::io::{self, Read, Write};

const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
const MAX_OCTAL_ID: u64 = 0o7777777;
const MAX_OCTAL_SIZE: u64 = 0o77777777777;
pub const PAX_HEADER_NAME: &str = "././@PaxHeader";

/// Writes layer entries in normal form; reuses one copy buffer across files.
pub struct TarWriter<W: Write> {
    out: W,
    epoch: u64,
    buf: Vec<u8>,
}

/// The error raised when a source file changes while it is being read.
pub use crate::beneath::SourceChanged;

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, epoch: u64) -> Self {
        TarWriter {
            out,
            epoch,
            buf: vec![0; 256 * 1024],
        }
    }

    pub fn append(&mut self, entry: &Entry) -> io::Result<()> {
        let (typ, size, link): (tar::EntryType, u64, &[u8]) = match &entry.kind {
            EntryKind::Dir => (tar::EntryType::Directory, 0, b""),
            EntryKind::File { size, .. } => (tar::EntryType::Regular, *size, b""),
            EntryKind::Whiteout => (tar::EntryType::Regular, 0, b""),
            EntryKind::Symlink { target } => (tar::EntryType::Symlink, 0, target),
            EntryKind::Hardlink { target } => (tar::EntryType::Link, 0, target),
        };
        let uid = u64::from(entry.uid);
        let gid = u64::from(entry.gid);
        let split = split_path(&entry.path);
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        if split.is_none() {
            pax.push(("path", entry.path.clone()));
        }
        if link.len() > NAME_LEN {
            pax.push(("linkpath", link.to_vec()));
        }
        if size > MAX_OCTAL_SIZE {
            pax.push(("size", size.to_string().into_bytes()));
        }
        if uid > MAX_OCTAL_ID {
            pax.push(("uid", uid.to_string().into_bytes()));
        }
        if gid > MAX_OCTAL_ID {
            pax.push(("gid", gid.to_string().into_bytes()));
        }
        if !pax.is_empty() {
            let records = pax_records(&pax);
            let mut h = self.header(tar::EntryType::XHeader, 0o644, 0, 0, records.len() as u64)?;
            set_bytes(
                &mut h.as_ustar_mut().ok_or_else(not_ustar)?.name,
                PAX_HEADER_NAME.as_bytes(),
            );
            h.set_cksum();
            self.out.write_all(h.as_bytes())?;
            self.out.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }
        let mut h = self.header(
            typ,
            entry.mode,
            if uid > MAX_OCTAL_ID { 0 } else { uid },
            if gid > MAX_OCTAL_ID { 0 } else { gid },
            if size > MAX_OCTAL_SIZE { 0 } else { size },
        )?;
        {
            let u = h.as_ustar_mut().ok_or_else(not_ustar)?;
            match split {
                Some((prefix, name)) => {
                    set_bytes(&mut u.prefix, prefix);
                    set_bytes(&mut u.name, name);
                }
                None => set_bytes(&mut u.name, &entry.path[..NAME_LEN.min(entry.path.len())]),
            }
            set_bytes(&mut u.linkname, &link[..NAME_LEN.min(link.len())]);
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        if let EntryKind::File { content, size } = &entry.kind {
            self.content(content, *size)?;
            self.pad(*size)?;
        }
        Ok(())
    }

    /// Writes the two zero blocks that end the archive and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }

    fn header(
        &self,
        typ: tar::EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
    ) -> io::Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(typ);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(self.epoch);
        h.set_device_major(0)?;
        h.set_device_minor(0)?;
        Ok(h)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of the content; a source that was swapped, grew,
    /// shrank or was rewritten since it was planned is an error, never a silently
    /// different (or torn) layer. Timestamps alone cannot tell a rewrite in place
    /// (a write stamps the file before its bytes land, and within one clock tick), so
    /// a context file is read a second time and must checksum the same: the layer then
    /// holds what the file held, whole.
    fn content(&mut self, content: &Content, size: u64) -> io::Result<()> {
        match content {
            Content::Inline(bytes) => self.out.write_all(bytes),
            Content::Path {
                context,
                path,
                stamp,
            } => {
                let name = path.display().to_string();
                let file = crate::beneath::open_planned(context, path, stamp)?;
                let written =
                    self.copy_exact(ReadAt::new(&file, 0), size, &name, true, true, true)?;
                crate::beneath::check_unchanged(&file, stamp, path)?;
                let again =
                    self.copy_exact(ReadAt::new(&file, 0), size, &name, true, false, true)?;
                if written != again {
                    return Err(io::Error::other(SourceChanged(name)));
                }
                Ok(())
            }
            Content::Spool { spool, offset } => {
                let name = format!("{} (an archive member)", spool.source.display());
                let reader = spool.reader_at(*offset);
                // imgbuild's own decompressed copy needs no second look.
                let source = spool.is_source();
                let written = self.copy_exact(reader, size, &name, false, true, source)?;
                if source {
                    spool.check_unchanged()?;
                    let reader = spool.reader_at(*offset);
                    let again = self.copy_exact(reader, size, &name, false, false, true)?;
                    if written != again {
                        return Err(io::Error::other(SourceChanged(name)));
                    }
                }
                Ok(())
            }
        }
    }

    /// Reads exactly `size` bytes (and, with `check_end`, nothing after them), writing
    /// them out when `write`, and returns their CRC-32 when `hash`. The checksum only has
    /// to tell two reads of one file apart when the file changed between them (a
    /// torn read), not resist an attacker — whoever controls the context chooses its
    /// bytes anyway — so the fast CRC-32 serves, not a second sha256 of every byte.
    #[allow(clippy::too_many_arguments)]
    fn copy_exact<R: Read>(
        &mut self,
        mut file: R,
        size: u64,
        name: &str,
        check_end: bool,
        write: bool,
        hash: bool,
    ) -> io::Result<Option<u32>> {
        let mut hasher = hash.then(crc32fast::Hasher::new);
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => return Err(io::Error::other(SourceChanged(name.to_string()))),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(h) = hasher.as_mut() {
                h.update(&self.buf[..n]);
            }
            if write {
                self.out.write_all(&self.buf[..n])?;
            }
            left -= n as u64;
        }
        if check_end && file.read(&mut self.buf[..1])? != 0 {
            return Err(io::Error::other(SourceChanged(name.to_string())));
        }
        Ok(hasher.map(crc32fast::Hasher::finalize))
    }
}

fn not_ustar() -> io::Error {
    io::Error::other("internal error: header is not ustar")
}

fn set_bytes(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    field[..value.len()].copy_from_slice(value);
}

/// The ustar (prefix, name) split of `path`, if one exists.
fn split_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= NAME_LEN {
        return Some((b"", path));
    }
    // A directory's trailing '/' stays with the name; the split is at the first '/'
    // that leaves a non-empty name of at most 100 bytes.
    (0..path.len().saturating_sub(1))
        .filter(|&i| path[i] == b'/')
        .find(|&i| i <= PREFIX_LEN && path.len() - i - 1 <= NAME_LEN && i > 0)
        .map(|i| (&path[..i], &path[i + 1..]))
}

/// PAX records `"<len> <key>=<value>\n"`, where len counts the whole record.
fn pax_records(records: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let body = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    fn file(path: &str, bytes: &[u8]) -> Entry {
        entry(
            path,
            EntryKind::File {
                size: bytes.len() as u64,
                content: Content::Inline(Arc::new(bytes.to_vec())),
            },
        )
    }

    fn write(entries: &[Entry]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), 1_700_000_000);
        for e in entries {
            w.append(e).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_back(bytes: &[u8]) -> Vec<(String, tar::EntryType, u64, u32, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let h = e.header();
                let link = e
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                (
                    path,
                    h.entry_type(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                    if link.is_empty() { data } else { link },
                )
            })
            .collect()
    }

    #[test]
    fn short_entries_are_plain_ustar_with_epoch_and_no_names() {
        let bytes = write(&[file("a.txt", b"hi")]);
        assert_eq!(bytes.len(), 512 + 512 + 1024);
        let h = tar::Header::from_byte_slice(&bytes[..512]);
        assert_eq!(&h.as_bytes()[257..265], b"ustar\x0000");
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        assert_eq!(
            read_back(&bytes),
            vec![(
                "a.txt".into(),
                tar::EntryType::Regular,
                1_700_000_000,
                0o644,
                b"hi".to_vec()
            )]
        );
    }

    #[test]
    fn paths_up_to_255_bytes_use_the_ustar_prefix() {
        let path = format!("{}/{}", "p".repeat(150), "n".repeat(99));
        let bytes = write(&[file(&path, b"x")]);
        assert_eq!(bytes[156], b'0', "no PAX header expected");
        assert_eq!(read_back(&bytes)[0].0, path);
    }

    #[test]
    fn longer_paths_and_link_targets_use_one_pax_header() {
        let path = format!("{}/{}", "p".repeat(200), "é".repeat(60));
        let target = "t/".repeat(80);
        let bytes = write(&[entry(
            &path,
            EntryKind::Symlink {
                target: target.clone().into_bytes(),
            },
        )]);
        assert_eq!(bytes[156], b'x');
        assert_eq!(&bytes[..PAX_HEADER_NAME.len()], PAX_HEADER_NAME.as_bytes());
        let back = read_back(&bytes);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, path);
        assert_eq!(back[0].4, target.into_bytes());
    }

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        // "14 path=aaaaa\n" is 14 bytes, the two digits of "14" included.
        let r = pax_records(&[("path", vec![b'a'; 5])]);
        assert_eq!(r, b"14 path=aaaaa\n");
        // 97 bytes around the digits: "99" fits (and is the shortest that does).
        let r = pax_records(&[("path", vec![b'a'; 90])]);
        assert!(r.starts_with(b"99 path=") && r.len() == 99);
        // 98 bytes: "100" would make 101, so the length is 101.
        let r = pax_records(&[("path", vec![b'a'; 91])]);
        assert!(r.starts_with(b"101 path=") && r.len() == 101);
    }

    #[test]
    fn large_ids_go_to_pax_records() {
        let mut e = file("f", b"");
        e.uid = 5_000_000;
        let bytes = write(&[e]);
        assert_eq!(bytes[156], b'x');
        let records = String::from_utf8_lossy(&bytes[512..1024]).into_owned();
        assert!(records.starts_with("15 uid=5000000\n"), "{records:?}");
        let ustar = tar::Header::from_byte_slice(&bytes[1024..1536]);
        assert_eq!(ustar.uid().unwrap(), 0, "the ustar field holds 0");
        let mut a = tar::Archive::new(&bytes[..]);
        let mut got = a.entries().unwrap().next().unwrap().unwrap();
        // A PAX-aware reader sees the real id.
        assert_eq!(got.header().uid().unwrap(), 5_000_000);
        assert_eq!(got.pax_extensions().unwrap().unwrap().count(), 1);
    }

    #[test]
    fn setuid_and_sticky_bits_are_kept() {
        let mut e = file("s", b"");
        e.mode = 0o4755;
        let mut d = entry("d/", EntryKind::Dir);
        d.mode = 0o1777;
        let back = read_back(&write(&[d, e]));
        assert_eq!(back[0].3, 0o1777);
        assert_eq!(back[1].3, 0o4755);
    }
}
