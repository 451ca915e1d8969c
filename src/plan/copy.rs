//! `[[layer.copy]]`: a file, symlink or whole directory tree from the context.

use super::{
    image_path, join, normalize_hardlinks, resolve_src, Content, EntryKind, Item, Meta,
    PlanOptions, DIR_MODE, SYMLINK_MODE,
};
use crate::beneath;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::recipe::{CopyItem, Recipe, WHITEOUT_PREFIX};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rustix::fs::OFlags;
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

pub(crate) fn resolve(
    recipe: &Recipe,
    item: &Spanned<CopyItem>,
    platform: &Platform,
    options: &PlanOptions,
    warnings: &mut Vec<String>,
) -> Result<Vec<Item>> {
    let c = item.get_ref();
    let expanded = platform.expand(c.src.get_ref());
    let src = resolve_src(recipe, &c.src, &expanded)?;
    // From here on the source is a handle, never a path looked up again: a directory
    // swapped for a symlink after `resolve_src` cannot lead outside the context.
    let rel = src.strip_prefix(&recipe.context).map_err(|_| {
        Error::input(format!(
            "internal: source {} is not inside the context {}",
            src.display(),
            recipe.context.display()
        ))
    })?;
    let handle = beneath::open_root(&recipe.context)
        .and_then(|root| beneath::open_beneath(root.as_fd(), rel, OFlags::PATH))
        .map(fs::File::from)
        .map_err(|e| Error::io_path("cannot read source", &src, e))?;
    let meta = handle
        .metadata()
        .map_err(|e| Error::io_path("cannot read source", &src, e))?;
    let dst = c.dst.get_ref();
    let dst_path = image_path(dst);
    let ft = meta.file_type();
    let mut walker = Walker {
        recipe,
        item: c,
        span: item.span(),
        outputs: &options.outputs,
        excludes: None,
        items: Vec::new(),
        warnings: Vec::new(),
        inodes: BTreeMap::new(),
        context: Arc::from(recipe.context.as_path()),
        prehash: options.prehash.as_deref(),
    };
    if ft.is_dir() {
        walker.excludes = Some(excludes(recipe, &c.exclude)?);
        let dir_meta = walker.dir_meta();
        walker.items.push(Item {
            path: dst_path.clone(),
            kind: EntryKind::Dir,
            meta: dir_meta,
        });
        walker.walk(&handle, &src, &dst_path, b"")?;
    } else {
        if expanded.ends_with('/') {
            return Err(recipe
                .error_at(
                    c.src.span(),
                    format!("src {expanded:?} ends in '/' but is not a directory"),
                )
                .with_hint("drop the trailing '/' to copy a single file"));
        }
        if let Some(first) = c.exclude.first() {
            return Err(recipe
                .error_at(first.span(), "exclude applies only when src is a directory")
                .with_hint("remove exclude from this item"));
        }
        let target = if dst.ends_with('/') {
            let name = src
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default();
            join(&dst_path, &name)
        } else {
            dst_path
        };
        walker.file_like(&handle, &src, &meta, target)?;
    }
    let Walker {
        mut items,
        inodes,
        warnings: found,
        ..
    } = walker;
    warnings.extend(found);
    let groups = inodes
        .into_values()
        .enumerate()
        .map(|(i, members)| (i as u64, members))
        .collect();
    normalize_hardlinks(&mut items, groups);
    Ok(items)
}

struct Walker<'a> {
    recipe: &'a Recipe,
    item: &'a CopyItem,
    span: std::ops::Range<usize>,
    outputs: &'a [std::path::PathBuf],
    excludes: Option<Excludes>,
    items: Vec<Item>,
    /// Things the user should know that do not stop the build.
    warnings: Vec<String>,
    /// (dev, ino) of multiply-linked regular files → indices into `items`.
    inodes: BTreeMap<(u64, u64), Vec<usize>>,
    context: Arc<Path>,
    prehash: Option<&'a crate::prehash::Prehash>,
}

impl Walker<'_> {
    fn dir_meta(&self) -> Meta {
        let mode = self
            .item
            .dir_mode
            .as_ref()
            .map_or(DIR_MODE, |m| *m.get_ref());
        Meta {
            mode,
            uid: self.item.uid,
            gid: self.item.gid,
        }
    }

    /// Walks the directory opened as `handle` (at `dir`) in byte order of names; `rel`
    /// is the path below the copied root. Every entry is opened from its directory's
    /// handle without following symlinks.
    fn walk(&mut self, handle: &fs::File, dir: &Path, dst: &[u8], rel: &[u8]) -> Result<()> {
        let mut names = beneath::list_dir(handle.as_fd())
            .map_err(|e| Error::io_path("cannot list directory", dir, e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let rel = join(rel, name.as_bytes());
            // Stated, not opened: only a directory (walked on from its handle) or a
            // symlink (read through its handle) is opened below.
            let (kind, mode, nlink, stamp) = beneath::stat_entry(handle.as_fd(), &name)
                .map_err(|e| Error::io_path("cannot read", &path, e))?;
            let is_dir = kind == rustix::fs::FileType::Directory;
            if self
                .excludes
                .as_ref()
                .is_some_and(|x| x.matches(&rel, is_dir))
            {
                continue;
            }
            // Compared by name first: a full path comparison for every entry of a
            // big tree costs more than the walk's own system calls.
            let is_output = self
                .outputs
                .iter()
                .any(|o| o.file_name() == Some(name.as_os_str()) && *o == path);
            if is_output {
                self.warnings.push(format!(
                    "not copying {}: it is {} (--out)",
                    path.display(),
                    if is_dir {
                        "the output directory"
                    } else {
                        "the output archive"
                    }
                ));
                continue;
            }
            if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(self
                    .recipe
                    .error_at(self.span.clone(), format!(
                        "source {} has a name starting with \".wh.\", which every image tool reads as a whiteout",
                        path.display()
                    ))
                    .with_hint("rename it, or add it to this item's exclude list"));
            }
            let target = join(dst, &rel);
            if kind == rustix::fs::FileType::RegularFile {
                self.regular(path, mode, nlink, stamp, target);
                continue;
            }
            let (entry, meta) = beneath::open_entry(handle.as_fd(), &name)
                .map_err(|e| Error::io_path("cannot read", &path, e))?;
            if (meta.dev(), meta.ino()) != (stamp.dev, stamp.ino) {
                return Err(Error::io_path(
                    "cannot read",
                    &path,
                    std::io::Error::other(beneath::SourceChanged(path.display().to_string())),
                ));
            }
            if is_dir {
                let m = self.dir_meta();
                self.items.push(Item {
                    path: target.clone(),
                    kind: EntryKind::Dir,
                    meta: m,
                });
                self.walk(&entry, &path, dst, &rel)?;
            } else {
                self.file_like(&entry, &path, &meta, target)?;
            }
        }
        Ok(())
    }

    /// A regular file or symlink; anything else is an error naming it.
    fn file_like(
        &mut self,
        handle: &fs::File,
        path: &Path,
        meta: &fs::Metadata,
        target: Vec<u8>,
    ) -> Result<()> {
        let ft = meta.file_type();
        let (uid, gid) = (self.item.uid, self.item.gid);
        if ft.is_symlink() {
            let link = beneath::read_link(handle)
                .map_err(|e| Error::io_path("cannot read symlink", path, e))?;
            self.items.push(Item {
                path: target,
                kind: EntryKind::Symlink { target: link },
                meta: Meta {
                    mode: SYMLINK_MODE,
                    uid,
                    gid,
                },
            });
        } else if ft.is_file() {
            let stamp = crate::stamp::FileStamp::of(meta);
            self.regular(path.to_path_buf(), meta.mode(), meta.nlink(), stamp, target);
        } else {
            let what = if ft.is_fifo() {
                "a FIFO (named pipe)"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device file"
            } else {
                "not a regular file, directory or symlink"
            };
            return Err(self
                .recipe
                .error_at(self.span.clone(), format!("source {} is {what}", path.display()))
                .with_hint("images hold only files, directories and symlinks: delete it, or add it to this item's exclude list"));
        }
        Ok(())
    }

    /// A regular file at `path`, with its mode on disk (only the executable bits
    /// count), link count and stamp.
    fn regular(
        &mut self,
        path: std::path::PathBuf,
        disk_mode: u32,
        nlink: u64,
        stamp: crate::stamp::FileStamp,
        target: Vec<u8>,
    ) {
        let default = if disk_mode & 0o111 != 0 { 0o755 } else { 0o644 };
        let mode = self.item.mode.as_ref().map_or(default, |m| *m.get_ref());
        if nlink > 1 {
            self.inodes
                .entry((stamp.dev, stamp.ino))
                .or_default()
                .push(self.items.len());
        }
        if let Some(p) = self.prehash {
            p.offer(&self.context, &path, &stamp);
        }
        self.items.push(Item {
            path: target,
            kind: EntryKind::File {
                content: Content::Path {
                    context: self.context.clone(),
                    path,
                    stamp,
                },
                size: stamp.size,
            },
            meta: Meta {
                mode,
                uid: self.item.uid,
                gid: self.item.gid,
            },
        });
    }
}

/// Compiled `exclude` patterns, with gitignore-like meaning (docs/recipe.md):
/// a trailing `/` matches directories only; a pattern without `/` matches a name at any
/// depth; a pattern with `/` is anchored at the copied directory.
struct Excludes {
    any: GlobSet,
    dirs_only: GlobSet,
}

impl Excludes {
    fn matches(&self, rel: &[u8], is_dir: bool) -> bool {
        let path = Path::new(std::ffi::OsStr::from_bytes(rel));
        self.any.is_match(path) || (is_dir && self.dirs_only.is_match(path))
    }
}

fn excludes(recipe: &Recipe, patterns: &[Spanned<String>]) -> Result<Excludes> {
    let mut any = GlobSetBuilder::new();
    let mut dirs_only = GlobSetBuilder::new();
    for p in patterns {
        let raw = p.get_ref();
        let dir_only = raw.ends_with('/');
        let body = raw.trim_end_matches('/').trim_start_matches('/');
        if body.is_empty() {
            return Err(recipe.error_at(p.span(), "an exclude pattern must name something"));
        }
        let pattern = if body.contains('/') {
            body.to_string()
        } else {
            format!("**/{body}")
        };
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                recipe.error_at(
                    p.span(),
                    format!("invalid exclude pattern {raw:?}: {}", e.kind()),
                )
            })?;
        if dir_only {
            dirs_only.add(glob);
        } else {
            any.add(glob);
        }
    }
    let build = |b: GlobSetBuilder| {
        b.build()
            .map_err(|e| Error::input(format!("invalid exclude patterns: {e}")))
    };
    Ok(Excludes {
        any: build(any)?,
        dirs_only: build(dirs_only)?,
    })
}
