//! A source file's identity on disk (device, inode, size, mtime and ctime to the
//! nanosecond), read from its metadata without reading its bytes.
//!
//! The plan records it for every context file it will read (`plan`), the layer
//! cache keys on it (`cache`), and the layer writer checks a file against it
//! before and after reading (`beneath`). It depends on nothing of the crate, so
//! those three depend on it and not on each other.

use sha2::{Digest as _, Sha256};
use std::fs;

/// Everything that identifies a file on disk without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileStamp {
    pub fn of(meta: &fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// Feeds the identity into a cache key (`cache`).
    pub fn hash_into(&self, h: &mut Sha256) {
        for v in [self.dev, self.ino, self.size] {
            h.update(v.to_le_bytes());
        }
        h.update(self.mtime_ns.to_le_bytes());
        h.update(self.ctime_ns.to_le_bytes());
    }
}
