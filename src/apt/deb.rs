//! Reading a `.deb`: an `ar` archive of `debian-binary`, `control.tar[.gz|.xz|.zst]`
//! and `data.tar[.gz|.xz|.zst]`. Members are found by reading headers at offsets
//! (never the whole file in memory), and decompressed into a writer with a size limit,
//! so a hostile package cannot exhaust memory or disk unnoticed.

use super::control::{self, Paragraph};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// The most a `control.tar` may decompress to (it is read into memory).
const MAX_CONTROL: u64 = 64 << 20;
/// The most a `data.tar` may decompress to.
pub const MAX_DATA: u64 = 16 << 30;

/// One member of the ar archive: where its bytes are and how they are compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// The two members that matter.
#[derive(Debug)]
pub struct Members {
    pub control: Member,
    pub data: Member,
}

/// Finds `control.tar*` and `data.tar*` in the ar archive `file`.
pub fn members(file: &File) -> Result<Members, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0)
        .map_err(|_| "not a Debian package (too short)".to_string())?;
    if &magic != b"!<arch>\n" {
        return Err("not a Debian package (no ar header)".into());
    }
    let (mut control, mut data) = (None, None);
    let mut offset = 8u64;
    while offset + 60 <= len {
        let mut header = [0u8; 60];
        file.read_exact_at(&mut header, offset)
            .map_err(|e| e.to_string())?;
        if &header[58..60] != b"`\n" {
            return Err(format!("a damaged ar header at byte {offset}"));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("a bad member size at byte {offset}"))?;
        let start = offset + 60;
        if start.checked_add(size).is_none_or(|end| end > len) {
            return Err(format!("member {name} runs past the end of the file"));
        }
        let member = Member {
            name: name.clone(),
            offset: start,
            size,
        };
        // As dpkg reads it: debian-binary (format 2.x) first, then one control.tar,
        // then one data.tar; a package that hides a second one is refused.
        if offset == 8 {
            let mut version = [0u8; 2];
            if name != "debian-binary"
                || size < 2
                || file.read_exact_at(&mut version, start).is_err()
                || &version != b"2."
            {
                return Err(
                    "not a Debian package (the first member is not debian-binary 2.x)".into(),
                );
            }
        } else if name.starts_with("control.tar") {
            if control.is_some() || data.is_some() {
                return Err(format!(
                    "member {name} is out of place (a second control.tar, or after data.tar)"
                ));
            }
            control = Some(member);
        } else if name.starts_with("data.tar") {
            if control.is_none() || data.is_some() {
                return Err(format!(
                    "member {name} is out of place (before control.tar, or a second data.tar)"
                ));
            }
            data = Some(member);
        }
        offset = start + size + (size % 2);
    }
    match (control, data) {
        (Some(control), Some(data)) => Ok(Members { control, data }),
        _ => Err("not a Debian package (no control.tar or data.tar member)".into()),
    }
}

/// Decompresses `member` of `file` into `out` (at most `limit` bytes), by the
/// member's name: `.gz`, `.xz`, `.zst` or none.
pub fn unpack(file: &File, member: &Member, out: &mut dyn Write, limit: u64) -> Result<(), String> {
    let raw = io::BufReader::new(Positional {
        file,
        offset: member.offset,
        end: member.offset + member.size,
    });
    let mut out = Limited { out, left: limit };
    let what = &member.name;
    let result = match what.rsplit_once('.').map(|(_, ext)| ext) {
        Some("tar") => io::copy(&mut { raw }, &mut out).map(|_| ()),
        Some("gz") => io::copy(&mut flate2::read::GzDecoder::new(raw), &mut out).map(|_| ()),
        Some("zst") => zstd::stream::read::Decoder::new(raw)
            .and_then(|mut d| io::copy(&mut d, &mut out))
            .map(|_| ()),
        Some("xz") => xz_reader(raw).and_then(|mut d| io::copy(&mut d, &mut out).map(|_| ())),
        _ => {
            return Err(format!(
                "member {what} has a compression imgbuild does not read"
            ))
        }
    };
    result.map_err(|e| format!("member {what} cannot be decompressed ({e})"))
}

/// The most memory an xz decoder may take: xz's largest preset (`-9`, a 64 MiB
/// dictionary) needs about 65 MiB to decode; a stream that asks for more is refused
/// rather than decoded.
pub const XZ_MEMORY_LIMIT: u64 = 128 << 20;

/// A streaming xz decoder of one .xz stream from `r`, within `XZ_MEMORY_LIMIT`: the
/// output is produced as it is decoded, never held whole in memory.
pub fn xz_reader<R: io::Read>(r: R) -> io::Result<liblzma::read::XzDecoder<R>> {
    let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMORY_LIMIT, 0)
        .map_err(io::Error::other)?;
    Ok(liblzma::read::XzDecoder::new_stream(r, stream))
}

/// What imgbuild takes from `control.tar`: the control paragraph, `md5sums`, and
/// whether there is a `postinst` (which is never run).
#[derive(Debug)]
pub struct Control {
    pub paragraph: Paragraph,
    pub md5sums: Option<Vec<u8>>,
    pub has_postinst: bool,
}

pub fn read_control(file: &File, member: &Member) -> Result<Control, String> {
    let mut tar_bytes = Vec::new();
    unpack(file, member, &mut tar_bytes, MAX_CONTROL)?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let (mut control, mut md5sums, mut has_postinst) = (None, None, false);
    let entries = archive.entries().map_err(|e| format!("control.tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("control.tar: {e}"))?;
        let path = entry.path_bytes().into_owned();
        let name = path.strip_prefix(b"./").unwrap_or(&path).to_vec();
        let mut bytes = Vec::new();
        match name.as_slice() {
            b"control" | b"md5sums" => {
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("control.tar: {e}"))?;
            }
            b"postinst" => has_postinst = true,
            _ => {}
        }
        match name.as_slice() {
            b"control" => control = Some(bytes),
            b"md5sums" => md5sums = Some(bytes),
            _ => {}
        }
    }
    let control = control.ok_or("control.tar has no control file")?;
    let text = String::from_utf8(control).map_err(|_| "the control file is not UTF-8")?;
    let paragraph = control::parse(&text)?
        .into_iter()
        .next()
        .ok_or("the control file is empty")?;
    Ok(Control {
        paragraph,
        md5sums,
        has_postinst,
    })
}

/// Reads `file` by position, from `offset` up to `end`.
struct Positional<'a> {
    file: &'a File,
    offset: u64,
    end: u64,
}

impl Read for Positional<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.end - self.offset).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// A writer that fails past `left` bytes.
struct Limited<'a> {
    out: &'a mut dyn Write,
    left: u64,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other(
                "it decompresses to more than imgbuild accepts",
            ));
        }
        self.left -= buf.len() as u64;
        self.out.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ar(members: &[(&str, &[u8])]) -> File {
        let mut bytes = b"!<arch>\n".to_vec();
        for (name, data) in members {
            let header = format!(
                "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                0,
                0,
                0,
                "100644",
                data.len()
            );
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(data);
            if data.len() % 2 == 1 {
                bytes.push(b'\n');
            }
        }
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        f
    }

    #[test]
    fn members_are_found_in_dpkg_order_only() {
        let ok = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", b"c"),
            ("data.tar.xz", b"d"),
        ]);
        let m = members(&ok).unwrap();
        assert_eq!(
            (m.control.name.as_str(), m.data.name.as_str()),
            ("control.tar", "data.tar.xz")
        );
        for (bad, why) in [
            (
                ar(&[("control.tar", b"c"), ("data.tar", b"d")]),
                "debian-binary",
            ),
            (
                ar(&[
                    ("debian-binary", b"3.0\n"),
                    ("control.tar", b"c"),
                    ("data.tar", b"d"),
                ]),
                "debian-binary",
            ),
            (
                ar(&[
                    ("debian-binary", b"2.0\n"),
                    ("data.tar", b"d"),
                    ("control.tar", b"c"),
                ]),
                "out of place",
            ),
            (
                ar(&[
                    ("debian-binary", b"2.0\n"),
                    ("control.tar", b"c"),
                    ("data.tar", b"d"),
                    ("data.tar.gz", b"e"),
                ]),
                "out of place",
            ),
        ] {
            let err = members(&bad).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }
}
