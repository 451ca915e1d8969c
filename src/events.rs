//! Progress and warnings, reported as events.
//!
//! The library never writes to stdout or stderr. Each stage says what happens — a
//! layer written, a blob uploaded, a request retried, a warning — by handing an
//! [`Event`] to the [`Reporter`] it was given in its options; the binary decides how
//! to show it (plain lines on stderr, progress bars on a terminal, nothing with
//! `-q`). A library caller that wants nothing passes [`Events::silent`].
//!
//! Events are facts, not text: they carry digests, sizes and names, so that a
//! renderer can format, count or aggregate them.

use crate::digest::Digest;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Something that happened while imgbuild worked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Something the user should know, and may want to fix; the work goes on.
    Warning(String),
    /// A recipe layer is being written for `platforms` (one layer job serves every
    /// platform whose plan of it is the same). `bytes` is about how many tar bytes it
    /// will be (contents, headers, padding): a total for a progress display.
    LayerStarted {
        name: String,
        platforms: Vec<String>,
        bytes: u64,
    },
    /// `done` tar bytes of a layer being written have gone into its compressor.
    LayerProgress {
        name: String,
        platforms: Vec<String>,
        done: u64,
    },
    /// A recipe layer is in the layout: written now, or found in a layer cache
    /// (`source` says which).
    LayerWritten {
        name: String,
        platforms: Vec<String>,
        digest: Digest,
        size: u64,
        source: LayerSource,
    },
    /// `--cache-to`: entries for the build's layers are in the shared cache `cache`:
    /// `stored` now, `present` already there.
    CacheStored {
        cache: String,
        stored: usize,
        present: usize,
    },
    /// The image (its root manifest or index) is in the layout.
    ImageWritten {
        digest: Digest,
        /// None when the layout is a temporary one (an archive's, `verify`'s,
        /// `build --no-out`'s), removed once the command is done with it.
        layout: Option<PathBuf>,
    },
    /// A url archive is in the download cache: fetched now (`size` bytes), or found
    /// there and verified (`size` is `None`).
    UrlReady { url: String, size: Option<u64> },
    /// A request failed in a way that may heal; it is tried again after a pause.
    /// `what` names the request and where it went (secrets and query strings left
    /// out); `attempt` counts from 1 and is the attempt about to be made.
    Retrying {
        what: String,
        why: String,
        attempt: u32,
        attempts: u32,
    },
    /// An identity-token access token was exchanged again before it expired.
    TokenRenewed {
        registry: String,
        repository: String,
    },
    /// One blob of a base image was pulled into the layout.
    BlobPulled {
        digest: Digest,
        size: u64,
        image: String,
    },
    /// A base image is complete in the layout; `blobs` were pulled now.
    BasePulled { image: String, blobs: usize },
    /// A blob was mounted from another repository of the same registry.
    BlobMounted { digest: Digest, from: String },
    /// A blob was uploaded.
    BlobUploaded { digest: Digest, size: u64 },
    /// A blob upload or download is under way: `done` of its `size` bytes (`None`
    /// when the size is not known yet) have gone out or come in. An attempt that
    /// is retried starts again from 0. `BlobUploaded`, `BlobPulled` or the
    /// command's end follows.
    BlobProgress {
        digest: Digest,
        done: u64,
        size: Option<u64>,
    },
    /// An image was pushed: its manifests, index and tags are in place.
    Pushed {
        /// `registry/repository`, with the tags when there are any.
        target: String,
        blobs: usize,
        uploaded: usize,
        uploaded_bytes: u64,
        mounted: usize,
        skipped: usize,
    },
    /// A document (provenance, SBOM) was attached to a pushed image.
    Attached {
        artifact_type: String,
        digest: Digest,
        subject: Digest,
        listed_by: String,
    },
    /// A signature (or signed attestation) of a pushed image was stored, under `tag`.
    Signed {
        /// `signature` or `attestation`.
        kind: String,
        digest: String,
        tag: String,
    },
}

/// Where a recipe layer of a build came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// Written now: tarred and compressed.
    Built,
    /// Found in `--out`'s own layer cache.
    LocalCache,
    /// Taken from a shared cache (`--cache-from`), named here, its blob verified.
    RegistryCache(String),
}

impl LayerSource {
    /// The name `--json` reports: `built`, `local-cache` or `registry-cache`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LayerSource::Built => "built",
            LayerSource::LocalCache => "local-cache",
            LayerSource::RegistryCache(_) => "registry-cache",
        }
    }
}

/// Receives events. Called from any thread, possibly from several at once.
pub trait Reporter: Send + Sync {
    fn report(&self, event: Event);
}

/// A cheap, cloneable handle on a [`Reporter`]: what options structs carry.
#[derive(Clone)]
pub struct Events(Arc<dyn Reporter>);

impl Events {
    pub fn new(reporter: impl Reporter + 'static) -> Events {
        Events(Arc::new(reporter))
    }

    /// A handle that drops every event.
    pub fn silent() -> Events {
        Events::new(Silent)
    }

    pub fn emit(&self, event: Event) {
        self.0.report(event);
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.emit(Event::Warning(message.into()));
    }
}

impl Default for Events {
    fn default() -> Events {
        Events::silent()
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Events")
    }
}

/// Drops every event.
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: Event) {}
}

/// Keeps every event, in order: for tests, and for callers that look at them after.
#[derive(Default)]
pub struct Recorder(std::sync::Mutex<Vec<Event>>);

impl Recorder {
    /// Every event so far, in the order they were reported.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Reporter for Recorder {
    fn report(&self, event: Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event);
        }
    }
}

impl<R: Reporter> Reporter for Arc<R> {
    fn report(&self, event: Event) {
        (**self).report(event);
    }
}

/// Human-readable sizes for logs: `512 B`, `12.3 KiB`, `1.5 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorder_behind_events_keeps_them_in_order() {
        let recorder = Arc::new(Recorder::default());
        let events = Events::new(recorder.clone());
        events.warn("one");
        events.clone().warn("two");
        assert_eq!(
            recorder.events(),
            vec![Event::Warning("one".into()), Event::Warning("two".into())]
        );
    }

    #[test]
    fn silent_events_drop_everything() {
        Events::silent().warn("nobody hears this");
        Events::default().warn("nor this");
    }
}
