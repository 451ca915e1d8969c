//! The tar level of a diff: one streaming pass over a layer blob (gzip, zstd or plain
//! tar, told apart by its first bytes; read by `crate::tar_read`) that keeps, per entry, only its header fields
//! and the sha256 of its content — never the content. The uncompressed stream is
//! hashed on the way and checked against the layer's diff_id.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::tar_read::{Blob, Fault, ReadError};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};

/// Bytes from a tar (a path, link name, user name, PAX key or value), kept and
/// compared as they are. Shown as text when they are valid UTF-8, else as `hex:`
/// and their lowercase hex digits: a lossy conversion would make different bytes
/// (two `security.capability` values, two file names) look equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Bytes {
        Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Bytes {
    fn from(s: String) -> Bytes {
        Bytes(s.into_bytes())
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => f.write_str(text),
            Err(_) => {
                f.write_str("hex:")?;
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// What a diff keeps of one tar entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub kind: String,
    /// Octal, `0644`.
    pub mode: String,
    pub uid: String,
    pub gid: String,
    pub uname: Bytes,
    pub gname: Bytes,
    pub mtime: String,
    pub size: u64,
    pub linkname: Option<Bytes>,
    /// `major:minor`, for character and block devices.
    pub device: Option<String>,
    /// sha256 of a regular file's content.
    pub content: Option<Digest>,
    /// For a Debian package's record (`/var/lib/dpkg/status.d/NAME`, as distroless
    /// images and imgbuild keep them): `NAME VERSION ARCH`, so that a diff names a
    /// package's version change as such.
    pub package: Option<String>,
    /// PAX records other than those folded into the fields above (`path`,
    /// `linkpath`, `size`, `uid`, `gid`, `uname`, `gname`, `mtime`); xattrs are the
    /// `SCHILY.xattr.*` ones.
    pub pax: BTreeMap<Bytes, Bytes>,
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
    /// The compared fields, in a fixed order: package (a Debian package record's
    /// name, version and architecture), type, mode, uid, gid, uname, gname, mtime,
    /// size, linkname, device, content (the PAX records follow, by key).
    fn fixed_fields(&self) -> [(&'static str, Option<Bytes>); 12] {
        let text = |s: &str| Some(Bytes::from(s));
        [
            ("package", self.package.as_deref().and_then(text)),
            ("type", text(&self.kind)),
            ("mode", text(&self.mode)),
            ("uid", text(&self.uid)),
            ("gid", text(&self.gid)),
            ("uname", Some(self.uname.clone())),
            ("gname", Some(self.gname.clone())),
            ("mtime", text(&self.mtime)),
            ("size", Some(Bytes::from(self.size.to_string()))),
            ("linkname", self.linkname.clone()),
            ("device", self.device.as_deref().and_then(text)),
            (
                "content",
                self.content.as_ref().map(|d| Bytes::from(d.to_string())),
            ),
        ]
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
        if let Some(p) = &self.package {
            s.push_str(&format!(" (package {p})"));
        }
        s
    }
}

/// The fields of `new` that differ from `old` (compared as bytes), in the order of
/// the fixed fields, then `pax:KEY` by key.
pub fn field_changes(old: &EntryMeta, new: &EntryMeta) -> Vec<FieldChange> {
    let show = |b: Option<&Bytes>| b.map(Bytes::to_string);
    let mut out: Vec<FieldChange> = old
        .fixed_fields()
        .into_iter()
        .zip(new.fixed_fields())
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, y)| FieldChange {
            field: x.0.to_string(),
            old: show(x.1.as_ref()),
            new: show(y.1.as_ref()),
        })
        .collect();
    let mut keys: Vec<&Bytes> = old.pax.keys().chain(new.pax.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (o, n) = (old.pax.get(k), new.pax.get(k));
        if o != n {
            out.push(FieldChange {
                field: format!("pax:{k}"),
                old: show(o),
                new: show(n),
            });
        }
    }
    out
}

/// A walked layer: its entries by path (`/etc/passwd`; the root is `/`), as bytes.
/// When a path occurs twice, the later entry wins, as it would on extraction.
#[derive(Debug, Default)]
pub struct Walked {
    pub entries: BTreeMap<Bytes, EntryMeta>,
}

/// Walks one layer blob read from `blob`. `what` names it in errors (`layer 2 of
/// oci:out@sha256:…`); the uncompressed bytes must hash to `diff_id` when given.
pub fn walk_layer(blob: impl Read, diff_id: Option<&Digest>, what: &str) -> Result<Walked> {
    // Errors reading the blob itself are I/O failures (exit 3); anything the decoders
    // or the tar reader complain about is a corrupt layer (exit 2).
    let read_error = |e: ReadError| {
        let what = match e.entry {
            Some(index) => format!("{what}, entry {index}"),
            None => what.to_string(),
        };
        match e.fault {
            Fault::Source => Error::io(format!("cannot read {what}"), e.error),
            Fault::Corrupt => {
                Error::input(format!("{what} is not a valid layer: {}", e.error)).with_source(e)
            }
        }
    };
    let mut walked = Walked::default();
    // Positions count entries only: a PAX global header (skipped) is not one, so a tar
    // that differs by one does not look reordered.
    let mut position = 0;
    // Hashed (and so read to its end) even without a diff_id to check: a corrupt
    // stream after the tar's last entry is still a corrupt layer.
    let got = Blob::open(blob, None, true)
        .and_then(|b| {
            b.walk(|_, entry| {
                if let Some((path, meta)) = read_entry(entry, position)? {
                    walked.entries.insert(path, meta);
                    position += 1;
                }
                Ok(())
            })
        })
        .map_err(read_error)?;
    if let Some((expected, got)) = diff_id.zip(got).filter(|(d, got)| **d != *got) {
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
) -> io::Result<Option<(Bytes, EntryMeta)>> {
    let kind = entry.header().entry_type();
    if matches!(kind, tar::EntryType::XGlobalHeader) {
        return Ok(None);
    }
    let mut pax = BTreeMap::new();
    if let Some(records) = entry.pax_extensions()? {
        for r in records {
            let r = r?;
            pax.insert(
                Bytes(r.key_bytes().to_vec()),
                Bytes(r.value_bytes().to_vec()),
            );
        }
    }
    let path = normalize(&entry.path_bytes());
    let linkname = entry.link_name_bytes().map(|l| Bytes(l.into_owned()));
    let h = entry.header();
    let raw = |b: Option<&[u8]>| Bytes(b.unwrap_or_default().to_vec());
    let mut take = |key: &str, default: Bytes| pax.remove(&Bytes::from(key)).unwrap_or(default);
    let uid = take("uid", number(h.uid()).into()).to_string();
    let gid = take("gid", number(h.gid()).into()).to_string();
    let uname = take("uname", raw(h.username_bytes()));
    let gname = take("gname", raw(h.groupname_bytes()));
    let mtime = take("mtime", number(h.mtime()).into()).to_string();
    for folded in ["path", "linkpath", "size"] {
        pax.remove(&Bytes::from(folded));
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
    let record = kind_name == "file" && size <= MAX_PACKAGE_RECORD && is_package_record(&path);
    let mut package = None;
    let content = if record {
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        package = package_of(&bytes);
        Some(Digest::from_bytes(Sha256::digest(&bytes).into()))
    } else if kind_name == "file" {
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
            package,
            pax,
            position,
        },
    )))
}

/// The largest package record read for its version (they are a few KiB).
const MAX_PACKAGE_RECORD: u64 = 1 << 20;

/// `/var/lib/dpkg/status.d/NAME`, not its `.md5sums`.
fn is_package_record(path: &Bytes) -> bool {
    path.as_bytes()
        .strip_prefix(b"/var/lib/dpkg/status.d/")
        .is_some_and(|name| !name.contains(&b'/') && !name.ends_with(b".md5sums"))
}

/// `NAME VERSION ARCH` of a package record, when it reads as one.
fn package_of(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
    };
    Some(format!(
        "{} {} {}",
        field("Package")?,
        field("Version")?,
        field("Architecture").unwrap_or("?")
    ))
}

/// A numeric header field that does not parse is shown as such, not an error: a diff
/// should still say what differs in such a tar.
const UNREADABLE: &str = "(unreadable)";

fn number(field: io::Result<u64>) -> String {
    field.map_or_else(|_| UNREADABLE.to_string(), |n| n.to_string())
}

/// `./usr/bin/` → `/usr/bin`; `./` → `/`; bytes stay bytes.
pub fn normalize(raw: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(raw.len() + 1);
    for part in raw.split(|b| *b == b'/') {
        if !part.is_empty() && part != b"." {
            out.push(b'/');
            out.extend_from_slice(part);
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Bytes(out)
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
            let e = &w.entries[&Bytes::from("/etc/motd")];
            assert_eq!(
                (e.kind.as_str(), e.mode.as_str(), e.size),
                ("file", "0640", 5)
            );
            assert_eq!(e.content, Some(Digest::of(b"hello")));
        }
    }

    #[test]
    fn a_corrupt_gzip_trailer_is_an_error_even_without_a_diff_id() {
        let tar = tar_of(&[("a", b"x", 0o644)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).expect("gzip");
        let mut gz = gz.finish().expect("gzip");
        let crc = gz.len() - 8;
        gz[crc] ^= 0xff;
        let e = walk_layer(&gz[..], None, "layer 0").unwrap_err();
        assert_eq!(e.exit_code() as i32, 2, "{}", e.message());
        assert!(
            e.message().contains("is not a valid layer"),
            "{}",
            e.message()
        );
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
        let a = w.entries[&Bytes::from("/a")].clone();
        let mut b = a.clone();
        b.mode = "0755".into();
        b.pax
            .insert(Bytes::from("SCHILY.xattr.user.k"), Bytes::from("v"));
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
        assert_eq!(normalize(b"./usr/bin/"), Bytes::from("/usr/bin"));
        assert_eq!(normalize(b"./"), Bytes::from("/"));
        assert_eq!(normalize(b"etc//passwd"), Bytes::from("/etc/passwd"));
        assert_eq!(normalize(b"./caf\xe9/"), Bytes(b"/caf\xe9".to_vec()));
    }
}
