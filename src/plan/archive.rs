//! `[[layer.archive]]`: the entries of a `.tar`, `.tar.gz` or `.tar.zst` — a file in
//! the context (`src`) or a verified download (`url`, fetched by `crate::fetch`).
//!
//! The archive's modes and numeric owners are kept (masked to the permission and
//! setuid/setgid/sticky bits); its mtimes, user and group names, xattrs and PAX
//! records are not. A compressed archive is decompressed once into a temporary spool
//! file; entries point into it by offset, so memory stays bounded.

use super::{
    image_path, join, normalize_hardlinks, resolve_src, Content, EntryKind, Item, Meta,
    PlanOptions, Spool,
};
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::recipe::{ArchiveItem, Recipe};
use crate::tar_read::{Blob, Compression, Fault, ReadError};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

pub(crate) fn resolve(
    recipe: &Recipe,
    item: &Spanned<ArchiveItem>,
    platform: &Platform,
    options: &PlanOptions,
) -> Result<Vec<Item>> {
    let a = item.get_ref();
    let (src, spool) = match (&a.src, &a.url) {
        (Some(src), _) => (src, local(recipe, src)?),
        (None, Some(url)) => (url, downloaded(recipe, a, url, platform, options)?),
        (None, None) => {
            return Err(recipe.error_at(item.span(), "an archive needs src or url with sha256"))
        }
    };
    let archive_name = match &a.url {
        Some(url) if a.src.is_none() => format!("archive {}", platform.expand(url.get_ref())),
        _ => format!("archive {}", src.get_ref()),
    };
    let bad = Bad {
        recipe,
        at: src.span(),
        archive: &archive_name,
        hint: "repack the archive as a plain tar of files, directories, symlinks and hardlinks",
    };
    let dst = image_path(a.dst.get_ref());
    let (mut items, links) = read_members(&dst, a.strip_components as usize, &spool, &bad)?;
    let groups = hardlink_groups(&items, links, &bad)?;
    normalize_hardlinks(&mut items, groups);
    Ok(items)
}

/// An archive's hardlinks: (link path, target path), both in the image.
pub(super) type Links = Vec<(Vec<u8>, Vec<u8>)>;

/// Makes the errors about one archive's content: at its `src`/`url` (or the
/// `packages` of a layer), naming it.
pub(super) struct Bad<'a> {
    pub recipe: &'a Recipe,
    pub at: std::ops::Range<usize>,
    pub archive: &'a str,
    pub hint: &'a str,
}

impl Bad<'_> {
    pub fn err(&self, msg: String) -> Error {
        self.recipe
            .error_at(self.at.clone(), format!("{}: {msg}", self.archive))
            .with_hint(self.hint)
    }
}

/// The archive's members as items below `dst` (later entries with the same path
/// replacing earlier ones, as tar does), in path order, and its hardlinks (link path,
/// target path).
pub(super) fn read_members(
    dst: &[u8],
    strip: usize,
    spool: &Arc<Spool>,
    bad: &Bad<'_>,
) -> Result<(Vec<Item>, Links)> {
    let bad = |msg: String| bad.err(msg);
    let mut archive = tar::Archive::new(spool.reader_at(0));
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a readable tar ({e})")).with_source(e))?;
    let mut by_path: BTreeMap<Vec<u8>, Item> = BTreeMap::new();
    let mut links: Links = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("not a readable tar ({e})")).with_source(e))?;
        let name = entry.path_bytes().into_owned();
        let Some(rel) = member_path(&name, strip).map_err(bad)? else {
            continue;
        };
        let path = join(dst, &rel);
        let meta = member_meta(entry.header(), &name, &bad)?;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File {
                content: Content::Spool {
                    spool: spool.clone(),
                    offset: entry.raw_file_position(),
                },
                size: entry.size(),
            },
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad("a symlink without target".into()))?;
                EntryKind::Symlink {
                    target: target.into_owned(),
                }
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad("a hardlink without target".into()))?;
                let Some(t) = member_path(&target, strip).map_err(bad)? else {
                    return Err(bad(format!(
                        "hardlink {} points at a stripped path",
                        String::from_utf8_lossy(&name)
                    )));
                };
                let target = join(dst, &t);
                links.push((path.clone(), target.clone()));
                EntryKind::Hardlink { target }
            }
            other => {
                return Err(bad(format!(
                    "entry {} is of a kind imgbuild does not put in images ({other:?})",
                    String::from_utf8_lossy(&name)
                )))
            }
        };
        by_path.insert(path.clone(), Item { path, kind, meta });
    }
    Ok((by_path.into_values().collect(), links))
}

/// A member's mode (masked to the permission and special bits) and numeric owners.
fn member_meta(header: &tar::Header, name: &[u8], bad: &impl Fn(String) -> Error) -> Result<Meta> {
    let id = |v: io::Result<u64>, what: &str| -> Result<u32> {
        let v = v.map_err(|e| {
            bad(format!(
                "bad {what} in {}: {e}",
                String::from_utf8_lossy(name)
            ))
        })?;
        u32::try_from(v).map_err(|_| {
            bad(format!(
                "{what} {v} of {} is too large",
                String::from_utf8_lossy(name)
            ))
        })
    };
    // A hardlink shares its target's inode: its own mode field means nothing (some
    // writers leave it empty); it takes the target's metadata when normalized.
    let mode = match header.mode() {
        Ok(m) => m & crate::recipe::MAX_MODE,
        Err(_) if header.entry_type() == tar::EntryType::Link => 0,
        Err(e) => {
            let name = String::from_utf8_lossy(name);
            return Err(bad(format!("bad mode of {name}: {e}")));
        }
    };
    Ok(Meta {
        mode,
        uid: id(header.uid(), "uid")?,
        gid: id(header.gid(), "gid")?,
    })
}

/// Groups every hardlink with the file it names (by index into `items`), for
/// `normalize_hardlinks` (first path wins).
pub(super) fn hardlink_groups(
    items: &[Item],
    links: Links,
    bad: &Bad<'_>,
) -> Result<BTreeMap<u64, Vec<usize>>> {
    let index: BTreeMap<Vec<u8>, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.path.clone(), i))
        .collect();
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut group_of: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (link, target) in links {
        let Some(&t) = index.get(&target) else {
            return Err(bad.err(format!(
                "hardlink /{} names /{}, which the archive does not hold",
                String::from_utf8_lossy(&link),
                String::from_utf8_lossy(&target)
            )));
        };
        if !matches!(items[t].kind, EntryKind::File { .. }) {
            return Err(bad.err(format!(
                "hardlink /{} names a non-file",
                String::from_utf8_lossy(&link)
            )));
        }
        let next = group_of.len() as u64;
        let g = *group_of.entry(target).or_insert(next);
        let members = groups.entry(g).or_default();
        if members.is_empty() {
            members.push(t);
        }
        if let Some(&l) = index.get(&link) {
            members.push(l);
        }
    }
    Ok(groups)
}

/// A `src` archive: inside the context, a regular file, spooled.
fn local(recipe: &Recipe, src: &Spanned<String>) -> Result<Arc<Spool>> {
    let path = resolve_src(recipe, src, src.get_ref())?;
    let real = path
        .canonicalize()
        .map_err(|e| Error::io_path("cannot read archive", &path, e))?;
    if !real.starts_with(&recipe.context) {
        return Err(recipe.error_at(
            src.span(),
            format!(
                "archive {:?} is a symlink to {} outside the context",
                src.get_ref(),
                real.display()
            ),
        ));
    }
    if !real.is_file() {
        return Err(recipe.error_at(
            src.span(),
            format!("archive {:?} is not a regular file", src.get_ref()),
        ));
    }
    let rel = real.strip_prefix(&recipe.context).unwrap_or(&real);
    let file = crate::beneath::open_root(&recipe.context)
        .and_then(|root| crate::beneath::open_regular(std::os::fd::AsFd::as_fd(&root), rel))
        .map_err(|e| {
            Error::io_path("cannot read archive", &real, e)
                .with_detail(recipe.source.snippet(src.span()))
        })?;
    spool(&real, file).map_err(|e| e.into_error(recipe, src, src.get_ref(), &real))
}

/// A `url` archive: the verified download `fetch` left for this platform's sha256,
/// spooled like a local archive (compression told by magic bytes, as there).
fn downloaded(
    recipe: &Recipe,
    a: &ArchiveItem,
    url: &Spanned<String>,
    platform: &Platform,
    options: &PlanOptions,
) -> Result<Arc<Spool>> {
    let path = a
        .sha256_for(platform)
        .and_then(|hex| options.downloads.get(hex))
        .ok_or_else(|| {
            recipe.error_at(
                url.span(),
                format!(
                    "internal: {} was not downloaded before planning",
                    platform.expand(url.get_ref())
                ),
            )
        })?;
    let file = File::open(path).map_err(|e| {
        Error::io_path("cannot read downloaded archive", path, e)
            .with_detail(recipe.source.snippet(url.span()))
    })?;
    spool(path, file).map_err(|e| e.into_error(recipe, url, &platform.expand(url.get_ref()), path))
}

/// The member's path relative to `dst`: `./` and `/` prefixes dropped, then `strip`
/// leading components; `None` when nothing is left. `..` is an error.
fn member_path(name: &[u8], strip: usize) -> Result<Option<Vec<u8>>, String> {
    let parts: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if parts.iter().any(|c| *c == b"..") {
        return Err(format!(
            "member {} contains '..'",
            String::from_utf8_lossy(name)
        ));
    }
    if parts.iter().any(|c| c.starts_with(b".wh.")) {
        return Err(format!(
            "member {} is a whiteout (.wh.), which imgbuild does not take from archives; use remove = [...]",
            String::from_utf8_lossy(name)
        ));
    }
    if parts.len() <= strip {
        return Ok(None);
    }
    Ok(Some(parts[strip..].join(&b'/')))
}

/// Why an archive could not be spooled: its bytes (a corrupt or truncated compressed
/// stream: bad input, exit 2) or the machine (reading, writing the spool: exit 3).
enum SpoolError {
    Corrupt(io::Error),
    Io(io::Error),
}

impl From<io::Error> for SpoolError {
    fn from(e: io::Error) -> Self {
        SpoolError::Io(e)
    }
}

impl SpoolError {
    fn into_error(self, recipe: &Recipe, at: &Spanned<String>, name: &str, path: &Path) -> Error {
        match self {
            SpoolError::Corrupt(e) => recipe
                .error_at(
                    at.span(),
                    format!("archive {name}: the compressed stream is corrupt or truncated ({e})"),
                )
                .with_path(path)
                .with_source(e)
                .with_hint("the archive is damaged: download or pack it again"),
            SpoolError::Io(e) => Error::io_path("cannot read archive", path, e)
                .with_detail(recipe.source.snippet(at.span())),
        }
    }
}

/// Reads `file` by position from 0.
struct Positional<'a> {
    file: &'a File,
    offset: u64,
}

impl Read for Positional<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The archive `file` (opened at `path`) as an uncompressed tar on disk (the file
/// itself when it is not compressed), chosen by magic bytes, not by file name.
fn spool(path: &Path, file: File) -> Result<Arc<Spool>, SpoolError> {
    use std::os::unix::fs::FileExt;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(SpoolError::Io(io::Error::other("not a regular file")));
    }
    let source_stamp = crate::stamp::FileStamp::of(&meta);
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0)?;
    let magic = &magic[..n];
    let compression = Compression::sniff(magic);
    if compression == Compression::None {
        return Ok(Arc::new(Spool {
            path: path.to_path_buf(),
            source: path.to_path_buf(),
            source_stamp,
            file,
            _temp: None,
        }));
    }
    let source = Positional {
        file: &file,
        offset: 0,
    };
    let fault = |e: ReadError| match e.fault {
        Fault::Source => SpoolError::Io(e.error),
        Fault::Corrupt => SpoolError::Corrupt(e.error),
    };
    let mut reader = Blob::open(source, Some(compression), false).map_err(fault)?;
    let mut temp = tempfile::NamedTempFile::new()?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fault(reader.classify(e))),
        };
        io::Write::write_all(temp.as_file_mut(), &buf[..n])?;
    }
    drop(reader);
    // An archive rewritten while it was decompressed would give a spool matching
    // neither version.
    crate::beneath::check_unchanged(&file, &source_stamp, path)?;
    let temp = temp.into_temp_path();
    let spooled = File::open(&temp)?;
    Ok(Arc::new(Spool {
        path: temp.to_path_buf(),
        source: path.to_path_buf(),
        source_stamp,
        file: spooled,
        _temp: Some(temp),
    }))
}

#[cfg(test)]
mod tests {
    use super::member_path;

    #[test]
    fn member_paths_drop_prefixes_and_strip_components() {
        assert_eq!(member_path(b"./a/b/c", 0).unwrap(), Some(b"a/b/c".to_vec()));
        assert_eq!(member_path(b"/a/b/c", 1).unwrap(), Some(b"b/c".to_vec()));
        assert_eq!(member_path(b"a/", 1).unwrap(), None);
        assert!(member_path(b"a/../../etc/passwd", 0).is_err());
    }
}
