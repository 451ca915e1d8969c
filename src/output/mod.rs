//! How the binary shows the library's events: progress bars when stderr is a
//! terminal, one plain line each otherwise, nothing at all with `-q`. stdout is never
//! touched here: it carries only results.

use imgbuild::events::{human_size, Event, Events, LayerSource, Reporter};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

mod bars;

/// The events handle for a command: bars on a terminal, lines on stderr otherwise,
/// or silence when `quiet`.
pub fn events(quiet: bool) -> Events {
    if quiet {
        Events::silent()
    } else if std::io::stderr().is_terminal() {
        Events::new(bars::Bars::new())
    } else {
        Events::new(Lines::default())
    }
}

/// Writes each event as one line on stderr; the image's line ends the build with
/// the summary.
#[derive(Default)]
struct Lines {
    summary: Mutex<Summary>,
}

impl Reporter for Lines {
    fn report(&self, event: Event) {
        let text = match self.summary.lock() {
            Ok(mut summary) => summary.line(&event),
            Err(_) => line(&event),
        };
        if let Some(text) = text {
            // A closed stderr is no reason to stop the work.
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
}

/// What a build wrote, counted from its events, for the summary line that ends it.
#[derive(Default)]
struct Summary {
    written: usize,
    unchanged: usize,
    /// Taken from a shared cache (`--cache-from`).
    shared: usize,
    bytes: u64,
}

impl Summary {
    /// Counts `event` and gives its line: [`line`], but for the image written, the
    /// summary line `wrote DIGEST to DIR (N layers written, SIZE; M unchanged[; K from
    /// shared caches])`.
    fn line(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::LayerWritten { size, source, .. } => {
                match source {
                    LayerSource::Built => {
                        self.written += 1;
                        self.bytes += size;
                    }
                    LayerSource::LocalCache => self.unchanged += 1,
                    LayerSource::RegistryCache(_) => self.shared += 1,
                }
                line(event)
            }
            Event::ImageWritten { digest, layout } => {
                let shared = if self.shared > 0 {
                    format!("; {} from shared caches", self.shared)
                } else {
                    String::new()
                };
                let place = match layout {
                    Some(dir) => format!("wrote {digest} to {}", dir.display()),
                    None => format!("built {digest}"),
                };
                Some(format!(
                    "{place} ({} layers written, {}; {} unchanged{shared})",
                    self.written,
                    human_size(self.bytes),
                    self.unchanged
                ))
            }
            _ => line(event),
        }
    }
}

/// How a layer is named on stderr, as a bar's label and in its line:
/// `layer NAME (PLATFORM,…)`.
pub fn layer_label(name: &str, platforms: &[String]) -> String {
    format!("layer {name} ({})", platforms.join(","))
}

/// The line an event is shown as; `None` for events not shown as lines.
pub fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Warning(w) => format!("warning: {w}"),
        Event::LayerWritten {
            name,
            platforms,
            digest,
            size,
            source,
        } => {
            format!(
                "{} {digest} ({}, {})",
                layer_label(name, platforms),
                human_size(*size),
                source_text(source)
            )
        }
        Event::CacheStored {
            cache,
            stored,
            present,
        } => format!("cache {cache}: {stored} layers stored, {present} already there"),
        Event::ImageWritten {
            digest,
            layout: Some(dir),
        } => format!("wrote {digest} to {}", dir.display()),
        Event::ImageWritten {
            digest,
            layout: None,
        } => format!("built {digest}"),
        Event::UrlReady { url, size: None } => format!("url {url} (cached)"),
        Event::UrlReady {
            url,
            size: Some(size),
        } => format!("url {url} fetched ({})", human_size(*size)),
        Event::Retrying {
            what,
            why,
            attempt,
            attempts,
        } => format!("retrying {what} ({why}; attempt {attempt} of {attempts})"),
        Event::TokenRenewed {
            registry,
            repository,
        } => format!("renewing the access token for {registry}/{repository}"),
        Event::BlobPulled {
            digest,
            size,
            image,
        } => format!("pulled {digest} ({}) of {image}", human_size(*size)),
        Event::BasePulled { image, blobs } => format!("pulled {image}: {blobs} blobs"),
        Event::BlobMounted { digest, from } => format!("mounted {digest} from {from}"),
        Event::BlobUploaded { digest, size } => {
            format!("uploaded {digest} ({})", human_size(*size))
        }
        Event::Pushed {
            target,
            blobs,
            uploaded,
            uploaded_bytes,
            mounted,
            skipped,
        } => format!(
            "pushed {target} ({blobs} blobs: {uploaded} uploaded, {}; {mounted} mounted; {skipped} already there)",
            human_size(*uploaded_bytes)
        ),
        Event::Attached {
            artifact_type,
            digest,
            subject,
            listed_by,
        } => format!("attached {artifact_type} {digest} to {subject} ({listed_by})"),
        Event::Signed { kind, digest, tag } => format!("signed {digest} ({kind}, tag {tag})"),
        _ => return None,
    })
}

/// How a layer line says where the layer came from.
fn source_text(source: &LayerSource) -> String {
    match source {
        LayerSource::Built => "built".to_string(),
        LayerSource::LocalCache => "local cache".to_string(),
        LayerSource::RegistryCache(from) => format!("registry cache {from}"),
    }
}
