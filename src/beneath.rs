//! Opening context files without following symlinks: the one way imgbuild reads the
//! context (docs/security.md).
//!
//! Checking a path (canonicalizing it, reading its metadata) and opening it later are
//! two steps; between them, someone who can write to the context could replace a
//! directory by a symlink to anywhere. So the only path followed is the context's own
//! (the trusted root); everything below it is opened from a directory handle, one
//! component at a time, refusing every symlink on the way: `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it, else an `openat`
//! walk with `O_NOFOLLOW`. A file opened for its bytes is then checked against the
//! identity it had when planned (device, inode, size, mtime, ctime), before and after
//! it is read, so that neither a swapped file nor one rewritten in place can reach a
//! layer.

use crate::stamp::FileStamp;
use rustix::fs::{openat, openat2, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

/// A file or directory opened below the context changed, or turned into something
/// else, between planning and reading.
#[derive(Debug)]
pub struct SourceChanged(pub String);

impl std::fmt::Display for SourceChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} changed while it was being read", self.0)
    }
}
impl std::error::Error for SourceChanged {}

/// A symlink (or a non-directory) stands where the plan had a directory or file.
#[derive(Debug)]
pub struct SymlinkInTheWay(pub String);

impl std::fmt::Display for SymlinkInTheWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (or a directory above it, inside the context) is now a symlink or not what was planned; imgbuild never follows a symlink below the context",
            self.0
        )
    }
}
impl std::error::Error for SymlinkInTheWay {}

/// Opens the context directory itself (as a handle for `*at` calls, not for reading).
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(openat(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `rel` below the directory `root` with `flags`, following no symlink on the
/// way nor at the end (with `O_PATH`, a final symlink is opened as itself, as
/// `O_PATH | O_NOFOLLOW` does). `rel` must be relative and without `..`.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match openat2(root, rel, flags, Mode::empty(), how) {
        Ok(fd) => Ok(fd),
        // No openat2 (Linux before 5.6, or a seccomp filter that refuses it).
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_walk(root, rel, flags),
        Err(e) => Err(in_the_way(e, rel)),
    }
}

/// The fallback of `open_beneath`: one `openat(O_NOFOLLOW)` per component, each from
/// the directory handle the previous one gave.
pub fn open_walk(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut names: Vec<&OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ))
            }
        }
    }
    let Some((last, dirs)) = names.split_last() else {
        return Ok(openat(root, ".", flags, Mode::empty())?);
    };
    let mut dir: Option<OwnedFd> = None;
    let step = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for name in dirs {
        let at = dir.as_ref().map_or(root, |d| d.as_fd());
        dir = Some(openat(at, *name, step, Mode::empty()).map_err(|e| in_the_way(e, rel))?);
    }
    let at = dir.as_ref().map_or(root, |d| d.as_fd());
    openat(at, *last, flags, Mode::empty()).map_err(|e| in_the_way(e, rel))
}

fn in_the_way(e: Errno, rel: &Path) -> io::Error {
    match e {
        Errno::LOOP | Errno::NOTDIR | Errno::XDEV => {
            io::Error::other(SymlinkInTheWay(rel.display().to_string()))
        }
        e => e.into(),
    }
}

/// Opens the context file `path` (below `context`) for reading, and checks that it is
/// the file planned, unchanged: same device, inode, size, mtime and ctime.
pub fn open_planned(context: &Path, path: &Path, planned: &FileStamp) -> io::Result<File> {
    let root = open_root(context)?;
    open_planned_at(root.as_fd(), context, path, planned)
}

/// [`open_planned`] with the context already opened as `root` (by [`open_root`]),
/// for callers that open many files of one context.
pub fn open_planned_at(
    root: BorrowedFd<'_>,
    context: &Path,
    path: &Path,
    planned: &FileStamp,
) -> io::Result<File> {
    let rel = path.strip_prefix(context).map_err(|_| {
        io::Error::other(format!(
            "internal: {} is not inside the context {}",
            path.display(),
            context.display()
        ))
    })?;
    let (file, opened) = open_regular_stat(root, rel).map_err(|e| {
        match e
            .get_ref()
            .and_then(|i| i.downcast_ref::<SymlinkInTheWay>())
        {
            Some(_) => io::Error::other(SymlinkInTheWay(path.display().to_string())),
            None if e.get_ref().is_some_and(|i| i.is::<NotRegular>()) => {
                io::Error::other(SourceChanged(path.display().to_string()))
            }
            None => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
        }
    })?;
    wait_for_writes_under_way(&file);
    // The stamp as the file was opened: a write begun since then changes it again,
    // which the check after reading sees.
    if FileStamp::of(&opened) != *planned {
        return Err(io::Error::other(SourceChanged(path.display().to_string())));
    }
    wait_out_racy_stamp(&file, planned, path)?;
    Ok(file)
}

/// A write stamps the file (mtime, ctime) as it starts, then copies its bytes in:
/// one under way when the stamp was read goes on changing the bytes with no later
/// stamp to show it. Linux filesystems hold the file's inode lock for the whole of a
/// write, and take it (shared) to answer `lseek(SEEK_DATA)` (ext4, btrfs, tmpfs,
/// overlayfs; xfs its own equivalent): once that returns, every write begun before it
/// has finished, and every later one changes the stamp the check after reading
/// compares. The answer itself is not used; a filesystem that cannot answer is no
/// error.
fn wait_for_writes_under_way(file: &File) {
    // Back to the start when SEEK_DATA moved the offset past a leading hole (or
    // failed, leaving it unknown); a file whose data starts at 0 is there already.
    if rustix::fs::seek(file, rustix::fs::SeekFrom::Data(0)) != Ok(0) {
        let _ = rustix::fs::seek(file, rustix::fs::SeekFrom::Start(0));
    }
}

/// The kernel stamps a write with its coarse clock (one tick: 1 to 10 ms), so two
/// writes within one tick leave the same mtime and ctime. A file whose stamp is as new
/// as the clock could be rewritten now without its stamp changing, and a read torn by
/// that rewrite would pass the check after reading (git's "racily clean" files).
/// So before such a file is read, wait until the clock is past its stamp and check it
/// again: from then on every write changes the stamp. (Kernels since 6.13 give a
/// fine-grained stamp to a write after the stamp was read, on ext4, xfs, btrfs and
/// tmpfs; older ones and other filesystems need this.) The wait is at most a tick
/// (a second on filesystems that keep whole seconds), and only for files written a
/// moment ago.
fn wait_out_racy_stamp(file: &File, planned: &FileStamp, path: &Path) -> io::Result<()> {
    const SECOND: i128 = 1_000_000_000;
    let newest = planned.mtime_ns.max(planned.ctime_ns);
    // No nanoseconds in either stamp: a filesystem that keeps whole seconds.
    let grain = if planned.mtime_ns % SECOND == 0 && planned.ctime_ns % SECOND == 0 {
        SECOND
    } else {
        1
    };
    let mut waited = false;
    for _ in 0..100 {
        let now = coarse_now_ns();
        // Stamps ahead of the clock by more than a tick were set by hand (`touch`, an
        // archive's dates): a write now gets the clock's time, never theirs.
        // A millisecond past the tick, for clocks that disagree by a little.
        let safe = newest + grain + 1_000_000;
        if now >= safe || newest > now + 50_000_000 {
            break;
        }
        let wait = (safe - now).clamp(100_000, 2 * SECOND);
        std::thread::sleep(std::time::Duration::from_nanos(wait as u64));
        waited = true;
    }
    if waited {
        check_unchanged(file, planned, path)?;
    }
    Ok(())
}

/// The kernel's coarse wall clock, the one file timestamps are taken from, in ns.
fn coarse_now_ns() -> i128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

/// What stands at a path opened for its bytes is not a regular file (a FIFO, a
/// device, a directory, a socket).
#[derive(Debug)]
pub struct NotRegular(pub String);

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a regular file", self.0)
    }
}
impl std::error::Error for NotRegular {}

/// Opens the regular file `rel` below `root` for reading, as `open_beneath` does, but
/// never opens anything else: opening a FIFO for reading blocks until a writer comes,
/// and opening a device may act on it. So the path is first opened with `O_PATH`
/// (which opens nothing), checked to be a regular file, and only then is that very
/// inode opened for reading, through `/proc/self/fd` — or, without `/proc`, by
/// opening the path again with `O_NONBLOCK` (which cannot block) and checking that
/// it is the same regular file.
pub fn open_regular(root: BorrowedFd<'_>, rel: &Path) -> io::Result<File> {
    open_regular_stat(root, rel).map(|(file, _)| file)
}

/// [`open_regular`], with the metadata of the file opened (taken once it was open).
pub fn open_regular_stat(
    root: BorrowedFd<'_>,
    rel: &Path,
) -> io::Result<(File, std::fs::Metadata)> {
    let not_regular = || io::Error::other(NotRegular(rel.display().to_string()));
    let handle = File::from(open_beneath(root, rel, OFlags::PATH)?);
    let meta = handle.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    // The metadata of `f` when it is the regular file `handle` is.
    let same = |f: &File| -> io::Result<Option<std::fs::Metadata>> {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata()?;
        Ok((m.is_file() && m.dev() == meta.dev() && m.ino() == meta.ino()).then_some(m))
    };
    let fd_name = std::os::fd::AsRawFd::as_raw_fd(&handle).to_string();
    let reopened = match proc_self_fd() {
        Some(dir) => openat(
            dir,
            fd_name.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ),
        None => Err(Errno::NOENT),
    };
    let file = match reopened {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => {
            let file = File::from(open_beneath(root, rel, OFlags::RDONLY | OFlags::NONBLOCK)?);
            if same(&file)?.is_none() {
                return Err(not_regular());
            }
            rustix::fs::fcntl_setfl(&file, rustix::fs::fcntl_getfl(&file)? - OFlags::NONBLOCK)?;
            file
        }
        Err(e) => return Err(e.into()),
    };
    match same(&file)? {
        Some(m) => Ok((file, m)),
        None => Err(not_regular()),
    }
}

/// `/proc/self/fd`, opened once for the process (every thread shares its file
/// descriptors): reopening a handle through it looks up one name, not four. None
/// without `/proc`.
fn proc_self_fd() -> Option<BorrowedFd<'static>> {
    static DIR: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        openat(
            CWD,
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    })
    .as_ref()
    .map(|fd| fd.as_fd())
}

/// Fails with `SourceChanged` unless `file` still has the identity it had when planned.
pub fn check_unchanged(file: &File, planned: &FileStamp, path: &Path) -> io::Result<()> {
    if FileStamp::of(&file.metadata()?) != *planned {
        return Err(io::Error::other(SourceChanged(path.display().to_string())));
    }
    Ok(())
}

/// Reads a file by position (`pread`) from `offset` on, leaving the file's shared
/// offset alone: several readers of one handle never disturb each other.
pub struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl<'a> ReadAt<'a> {
    pub fn new(file: &'a File, offset: u64) -> ReadAt<'a> {
        ReadAt { file, offset }
    }
}

impl io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The names in the directory `dir` (any order; without `.` and `..`).
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStringExt;
    let fd = openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::new(fd)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsString::from_vec(name));
        }
    }
    Ok(names)
}

/// Opens the entry `name` of the directory `dir` as itself (`O_PATH`, never following
/// a symlink), with its metadata: a handle to walk on from, stat or read a link of.
pub fn open_entry(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(File, std::fs::Metadata)> {
    let fd = openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// What [`stat_entry`] tells of an entry: its file type, permission bits, link count
/// and stamp.
pub type EntryStat = (rustix::fs::FileType, u32, u64, FileStamp);

/// The file type, permission bits, link count and stamp of the entry `name` of the
/// directory `dir`, as itself (never following a symlink), without opening it: for a
/// walk that needs no handle to a regular file. The stamp is the one `FileStamp::of`
/// gives for the same file (the same `statx` fields, the device number made alike).
pub fn stat_entry(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<EntryStat> {
    match statx_entry(dir, name) {
        // No statx (Linux before 4.11, or a seccomp filter that refuses it).
        Err(Errno::NOSYS) | Err(Errno::PERM) => Ok(fstatat_entry(dir, name)?),
        other => Ok(other?),
    }
}

fn statx_entry(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<EntryStat> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let st = statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )?;
    let ns = |t: rustix::fs::StatxTimestamp| {
        i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
    };
    let mode = u32::from(st.stx_mode);
    let stamp = FileStamp {
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        size: st.stx_size,
        mtime_ns: ns(st.stx_mtime),
        ctime_ns: ns(st.stx_ctime),
    };
    Ok((
        rustix::fs::FileType::from_raw_mode(mode),
        mode,
        u64::from(st.stx_nlink),
        stamp,
    ))
}

/// [`stat_entry`] by `fstatat`, where `statx` is refused.
// The `stat` fields' types differ between architectures (`st_nlink` is a u32 on some).
#[allow(clippy::useless_conversion)]
fn fstatat_entry(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<EntryStat> {
    let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    let ns = |sec: i128, nsec: i128| sec * 1_000_000_000 + nsec;
    let mode = u32::from(st.st_mode);
    let stamp = FileStamp {
        dev: u64::from(st.st_dev),
        ino: u64::from(st.st_ino),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_ns: ns(i128::from(st.st_mtime), i128::from(st.st_mtime_nsec)),
        ctime_ns: ns(i128::from(st.st_ctime), i128::from(st.st_ctime_nsec)),
    };
    Ok((
        rustix::fs::FileType::from_raw_mode(mode),
        mode,
        u64::from(st.st_nlink),
        stamp,
    ))
}

/// The target of the symlink opened (`O_PATH`) as `link`.
pub fn read_link(link: &File) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(link, "", Vec::new())?.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"inside").unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/f"), b"secret").unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::rename(dir.path().join("d"), ctx.join("d")).unwrap();
        symlink(dir.path().join("outside"), ctx.join("link")).unwrap();
        symlink("d/f", ctx.join("flink")).unwrap();
        let root = open_root(&ctx).unwrap();
        (dir, root)
    }

    fn is_in_the_way(e: &io::Error) -> bool {
        e.get_ref()
            .is_some_and(|i| i.downcast_ref::<SymlinkInTheWay>().is_some())
    }

    #[test]
    fn both_ways_open_plain_paths_and_refuse_symlinks_on_the_way() {
        let (_dir, root) = setup();
        for open in [open_beneath, open_walk] {
            let f = open(root.as_fd(), Path::new("d/f"), OFlags::RDONLY).unwrap();
            assert_eq!(std::io::read_to_string(File::from(f)).unwrap(), "inside");
            let e = open(root.as_fd(), Path::new("link/f"), OFlags::RDONLY).unwrap_err();
            assert!(is_in_the_way(&e), "{e}");
            let e = open(root.as_fd(), Path::new("flink"), OFlags::RDONLY).unwrap_err();
            assert!(is_in_the_way(&e), "{e}");
            // With O_PATH, a final symlink is the symlink itself, never its target.
            let l = open(root.as_fd(), Path::new("flink"), OFlags::PATH).unwrap();
            assert!(File::from(l).metadata().unwrap().file_type().is_symlink());
        }
    }

    #[test]
    fn a_fifo_in_place_of_a_planned_file_is_refused_without_blocking() {
        let (dir, _root) = setup();
        let ctx = dir.path().join("ctx");
        let planned = FileStamp::of(&std::fs::metadata(ctx.join("d/f")).unwrap());
        std::fs::remove_file(ctx.join("d/f")).unwrap();
        rustix::fs::mknodat(
            CWD,
            ctx.join("d/f"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = ctx.join("d/f");
        let ctx2 = ctx.clone();
        std::thread::spawn(move || {
            let r = open_planned(&ctx2, &path, &planned).map(|_| ());
            let _ = tx.send(r);
        });
        // Bounded: a blocking open never answers. Then unblock it with a writer so
        // the thread ends either way.
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        if got.is_err() {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(ctx.join("d/f"));
        }
        let e = got.expect("open_planned blocked on a FIFO").unwrap_err();
        assert!(
            e.get_ref()
                .is_some_and(|i| i.downcast_ref::<SourceChanged>().is_some()),
            "{e}"
        );
        // open_regular refuses it by itself too.
        let root = open_root(&ctx).unwrap();
        let e = open_regular(root.as_fd(), Path::new("d/f")).unwrap_err();
        assert!(e.get_ref().is_some_and(|i| i.is::<NotRegular>()), "{e}");
    }

    #[test]
    fn a_swapped_file_is_not_the_planned_one() {
        let (dir, _root) = setup();
        let ctx = dir.path().join("ctx");
        let planned = FileStamp::of(&std::fs::metadata(ctx.join("d/f")).unwrap());
        open_planned(&ctx, &ctx.join("d/f"), &planned).unwrap();
        std::fs::write(ctx.join("g"), b"swappd").unwrap();
        std::fs::rename(ctx.join("g"), ctx.join("d/f")).unwrap();
        let e = open_planned(&ctx, &ctx.join("d/f"), &planned).unwrap_err();
        assert!(
            e.get_ref()
                .is_some_and(|i| i.downcast_ref::<SourceChanged>().is_some()),
            "{e}"
        );
    }

    /// A file written a moment before it is planned, rewritten (same size) right
    /// after it is opened: the rewrite must change its stamp, however quickly it
    /// follows. Without waiting out the clock tick, most rewrites land in the tick
    /// of the stamp and leave it as it was.
    #[test]
    fn a_rewrite_right_after_opening_a_fresh_file_always_changes_its_stamp() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        let path = ctx.join("f");
        for round in 0..50 {
            std::fs::write(&path, b"aaaa").unwrap();
            let planned = FileStamp::of(&std::fs::metadata(&path).unwrap());
            let file = open_planned(&ctx, &path, &planned).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .write_all_at(b"bbbb", 0)
                .unwrap();
            assert!(
                check_unchanged(&file, &planned, &path).is_err(),
                "round {round}: rewritten without its stamp changing"
            );
        }
    }

    #[test]
    fn an_entry_is_stated_as_itself_with_the_stamp_an_open_file_has() {
        use rustix::fs::FileType;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"bytes").expect("write");
        std::fs::create_dir(dir.path().join("d")).expect("mkdir");
        std::os::unix::fs::symlink("f", dir.path().join("l")).expect("symlink");
        let root = open_root(dir.path()).expect("root");
        for (name, kind) in [
            ("f", FileType::RegularFile),
            ("d", FileType::Directory),
            ("l", FileType::Symlink),
        ] {
            let meta = std::fs::symlink_metadata(dir.path().join(name)).expect("stat");
            let name = OsStr::new(name);
            let want = (kind, meta.mode(), meta.nlink(), FileStamp::of(&meta));
            assert_eq!(stat_entry(root.as_fd(), name).expect("stat_entry"), want);
            // The fallback where statx is refused says the same.
            assert_eq!(fstatat_entry(root.as_fd(), name).expect("fstatat"), want);
        }
    }
}
