//! The tar level of a diff: one streaming pass over a layer blob (gzip, zstd or plain
//! tar, told apart by its first bytes) that keeps, per entry, only its header fields
//! and the sha256 of its content — never the content. The uncompressed stream is
//! hashed on the way and checked against the layer's diff_id.

use crate::digest::Digest;
use crate::error::{Error, Result};
use sha2::{Digest as _, Sha256};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

/// Bytes read from the compressed blob at a time.
const READ_BUFFER: usize = 256 * 1024;

/// What a diff keeps of one tar entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub kind: String,
    /// Octal, `0644`.
    pub mode: String,
    pub uid: String,
    pub gid: String,
    pub uname: String,
    pub gname: String,
    pub mtime: String,
    pub size: u64,
    pub linkname: Option<String>,
    /// `major:minor`, for character and block devices.
    pub device: Option<String>,
    /// sha256 of a regular file's content.
    pub content: Option<Digest>,
    /// PAX records other than those folded into the fields above (`path`,
    /// `linkpath`, `size`, `uid`, `gid`, `uname`, `gname`, `mtime`); xattrs are the
    /// `SCHILY.xattr.*` ones.
    pub pax: BTreeMap<String, String>,
    /// Position in the tar (0-based); compared only to tell an order change.
    pub position: usize,
}

/// One header field that differs; `None` when absent on that side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl EntryMeta {
    /// The compared fields, in a fixed order: type, mode, uid, gid, uname, gname,
    /// mtime, size, linkname, device, content, then `pax:KEY` records by key.
    pub fn fields(&self) -> Vec<(String, Option<String>)> {
        let mut f = vec![
            ("type".to_string(), Some(self.kind.clone())),
            ("mode".to_string(), Some(self.mode.clone())),
            ("uid".to_string(), Some(self.uid.clone())),
            ("gid".to_string(), Some(self.gid.clone())),
            ("uname".to_string(), Some(self.uname.clone())),
            ("gname".to_string(), Some(self.gname.clone())),
            ("mtime".to_string(), Some(self.mtime.clone())),
            ("size".to_string(), Some(self.size.to_string())),
            ("linkname".to_string(), self.linkname.clone()),
            ("device".to_string(), self.device.clone()),
            (
                "content".to_string(),
                self.content.as_ref().map(Digest::to_string),
            ),
        ];
        f.extend(
            self.pax
                .iter()
                .map(|(k, v)| (format!("pax:{k}"), Some(v.clone()))),
        );
        f
    }

    /// A one-line summary: `file 0644 0:0 12 bytes`, `symlink → target`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {} {}:{}", self.kind, self.mode, self.uid, self.gid);
        if self.kind == "file" {
            s.push_str(&format!(" {} bytes", self.size));
        }
        if let Some(l) = &self.linkname {
            s.push_str(&format!(" → {l}"));
        }
        s
    }
}

/// The fields of `new` that differ from `old`, in `fields()` order.
pub fn field_changes(old: &EntryMeta, new: &EntryMeta) -> Vec<FieldChange> {
    let a = old.fields();
    let b = new.fields();
    let fixed = a.len() - old.pax.len();
    let mut out: Vec<FieldChange> = a[..fixed]
        .iter()
        .zip(&b[..fixed])
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, y)| FieldChange {
            field: x.0.clone(),
            old: x.1.clone(),
            new: y.1.clone(),
        })
        .collect();
    let mut keys: Vec<&String> = old.pax.keys().chain(new.pax.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (o, n) = (old.pax.get(k), new.pax.get(k));
        if o != n {
            out.push(FieldChange {
                field: format!("pax:{k}"),
                old: o.cloned(),
                new: n.cloned(),
            });
        }
    }
    out
}

/// A walked layer: its entries by path (`/etc/passwd`; the root is `/`). When a path
/// occurs twice, the later entry wins, as it would on extraction.
#[derive(Debug, Default)]
pub struct Walked {
    pub entries: BTreeMap<String, EntryMeta>,
}

/// Walks one layer blob read from `blob`. `what` names it in errors (`layer 2 of
/// oci:out@sha256:…`); the uncompressed bytes must hash to `diff_id` when given.
pub fn walk_layer(blob: impl Read, diff_id: Option<&Digest>, what: &str) -> Result<Walked> {
    let source_failed = Rc::new(Cell::new(false));
    let blob = SourceReader {
        inner: blob,
        failed: source_failed.clone(),
    };
    // Errors reading the blob itself are I/O failures (exit 3); anything the decoders
    // or the tar reader complain about is a corrupt layer (exit 2).
    let read_error = |what: &str, e: io::Error| {
        if source_failed.get() {
            Error::io(format!("cannot read {what}"), e)
        } else {
            Error::input(format!("{what} is not a valid layer: {e}"))
        }
    };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, blob);
    let head = buffered
        .fill_buf()
        .map_err(|e| read_error(what, e))?
        .to_vec();
    let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| read_error(what, e))?,
        )
    } else {
        Box::new(buffered)
    };
    let mut hashing = HashingReader {
        inner: decoded,
        hasher: Sha256::new(),
    };
    let mut walked = Walked::default();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(|e| read_error(what, e))?;
        // Positions count entries only: a PAX global header (skipped) is not one, so
        // a tar that differs by one does not look reordered.
        let mut position = 0;
        for (index, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| read_error(what, e))?;
            if let Some((path, meta)) = read_entry(&mut entry, position)
                .map_err(|e| read_error(&format!("{what}, entry {index}"), e))?
            {
                walked.entries.insert(path, meta);
                position += 1;
            }
        }
    }
    // The tar ends with zero blocks the tar reader need not read: hash them too.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| read_error(what, e))?;
    let got = Digest::from_bytes(hashing.hasher.finalize().into());
    if let Some(expected) = diff_id.filter(|d| **d != got) {
        return Err(Error::input(format!(
            "{what}: its uncompressed bytes hash to {got}, but the config's diff_id is {expected}"
        ))
        .with_hint("the image is corrupt or its config does not belong to these layers"));
    }
    Ok(walked)
}

fn read_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    position: usize,
) -> io::Result<Option<(String, EntryMeta)>> {
    let kind = entry.header().entry_type();
    if matches!(kind, tar::EntryType::XGlobalHeader) {
        return Ok(None);
    }
    let mut pax = BTreeMap::new();
    if let Some(records) = entry.pax_extensions()? {
        for r in records {
            let r = r?;
            pax.insert(
                String::from_utf8_lossy(r.key_bytes()).into_owned(),
                String::from_utf8_lossy(r.value_bytes()).into_owned(),
            );
        }
    }
    let path = normalize(&entry.path_bytes());
    let linkname = entry
        .link_name_bytes()
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    let h = entry.header();
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    let mut take = |key: &str, default: String| pax.remove(key).unwrap_or(default);
    let uid = take("uid", number(h.uid()));
    let gid = take("gid", number(h.gid()));
    let uname = take("uname", text(h.username_bytes()));
    let gname = take("gname", text(h.groupname_bytes()));
    let mtime = take("mtime", number(h.mtime()));
    for folded in ["path", "linkpath", "size"] {
        pax.remove(folded);
    }
    let device = match kind {
        tar::EntryType::Char | tar::EntryType::Block => Some(format!(
            "{}:{}",
            number(h.device_major().map(|d| u64::from(d.unwrap_or(0)))),
            number(h.device_minor().map(|d| u64::from(d.unwrap_or(0))))
        )),
        _ => None,
    };
    let mode = match h.mode() {
        Ok(m) => format!("{m:04o}"),
        Err(_) => UNREADABLE.to_string(),
    };
    let kind_name = match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file".to_string(),
        tar::EntryType::Directory => "dir".to_string(),
        tar::EntryType::Symlink => "symlink".to_string(),
        tar::EntryType::Link => "hardlink".to_string(),
        tar::EntryType::Char => "char".to_string(),
        tar::EntryType::Block => "block".to_string(),
        tar::EntryType::Fifo => "fifo".to_string(),
        other => format!("type {:?}", other.as_byte() as char),
    };
    let size = entry.size();
    let content = if kind_name == "file" {
        let mut hasher = Sha256Writer(Sha256::new());
        io::copy(entry, &mut hasher)?;
        Some(Digest::from_bytes(hasher.0.finalize().into()))
    } else {
        None
    };
    Ok(Some((
        path,
        EntryMeta {
            kind: kind_name,
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            size,
            linkname,
            device,
            content,
            pax,
            position,
        },
    )))
}

/// A numeric header field that does not parse is shown as such, not an error: a diff
/// should still say what differs in such a tar.
const UNREADABLE: &str = "(unreadable)";

fn number(field: io::Result<u64>) -> String {
    field.map_or_else(|_| UNREADABLE.to_string(), |n| n.to_string())
}

/// `./usr/bin/` → `/usr/bin`; `./` → `/`.
pub fn normalize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let parts: Vec<&str> = text
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The blob as read from disk or a temporary file; remembers whether reading it failed.
struct SourceReader<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        })
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Sha256Writer(Sha256);

impl io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, mode) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, path, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn keeps_header_fields_and_content_digest_of_plain_and_gzip_layers() {
        let tar = tar_of(&[("./etc/motd", b"hello", 0o640)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        for blob in [tar.clone(), gz] {
            let w = walk_layer(&blob[..], Some(&Digest::of(&tar)), "test").expect("walk");
            let e = &w.entries["/etc/motd"];
            assert_eq!(
                (e.kind.as_str(), e.mode.as_str(), e.size),
                ("file", "0640", 5)
            );
            assert_eq!(e.content, Some(Digest::of(b"hello")));
        }
    }

    #[test]
    fn a_wrong_diff_id_is_an_error() {
        let tar = tar_of(&[("a", b"x", 0o644)]);
        let e = walk_layer(&tar[..], Some(&Digest::of(b"other")), "layer 0").unwrap_err();
        assert!(e.message().contains("diff_id"), "{}", e.message());
    }

    #[test]
    fn field_changes_name_each_differing_field_and_pax_record() {
        let tar = tar_of(&[("a", b"x", 0o644)]);
        let w = walk_layer(&tar[..], None, "t").expect("walk");
        let a = w.entries["/a"].clone();
        let mut b = a.clone();
        b.mode = "0755".into();
        b.pax.insert("SCHILY.xattr.user.k".into(), "v".into());
        let c = field_changes(&a, &b);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (
                c[0].field.as_str(),
                c[0].old.as_deref(),
                c[0].new.as_deref()
            ),
            ("mode", Some("0644"), Some("0755"))
        );
        assert_eq!(c[1].field, "pax:SCHILY.xattr.user.k");
        assert_eq!(c[1].old, None);
    }

    #[test]
    fn paths_are_normalized_to_absolute_without_trailing_slash() {
        assert_eq!(normalize(b"./usr/bin/"), "/usr/bin");
        assert_eq!(normalize(b"./"), "/");
        assert_eq!(normalize(b"etc//passwd"), "/etc/passwd");
    }
}
