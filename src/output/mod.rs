//! How the binary shows the library's events: progress bars when stderr is a
//! terminal, one plain line each otherwise, nothing at all with `-q`. stdout is never
//! touched here: it carries only results.

use imgbuild::events::{human_size, Event, Events, LayerSource, Reporter};
use std::io::{IsTerminal, Write};

mod bars;

/// The events handle for a command: bars on a terminal, lines on stderr otherwise,
/// or silence when `quiet`.
pub fn events(quiet: bool) -> Events {
    if quiet {
        Events::silent()
    } else if std::io::stderr().is_terminal() {
        Events::new(bars::Bars::new())
    } else {
        Events::new(Lines)
    }
}

/// Writes each event as one line on stderr.
struct Lines;

impl Reporter for Lines {
    fn report(&self, event: Event) {
        if let Some(line) = line(&event) {
            // A closed stderr is no reason to stop the work.
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
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
            let on = platforms.join(",");
            format!(
                "layer {name:<16} {on} {digest} ({}, {})",
                human_size(*size),
                source_text(source)
            )
        }
        Event::CacheStored {
            cache,
            stored,
            present,
        } => format!("cache {cache}: {stored} layers stored, {present} already there"),
        Event::ImageWritten { digest, layout } => {
            format!("wrote {digest} to {}", layout.display())
        }
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
