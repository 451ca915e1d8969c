//! Progress bars on a terminal (indicatif): one bar per layer being written (bytes,
//! rate, time left), replaced by a line with the layer's digest and size when it is
//! done; every other event as its plain line, printed above the bars; and one
//! summary line at the end.

use super::line;
use imgbuild::digest::Digest;
use imgbuild::events::{human_size, Event, LayerSource, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;

/// Renders events as bars on stderr, which must be a terminal.
pub struct Bars {
    multi: MultiProgress,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The bar of each layer being written, by name and platforms.
    layers: HashMap<(String, Vec<String>), ProgressBar>,
    /// The bar of each blob being uploaded or downloaded.
    blobs: HashMap<Digest, ProgressBar>,
    written: usize,
    unchanged: usize,
    /// Layers taken from a shared cache (`--cache-from`).
    shared: usize,
    bytes: u64,
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            state: Mutex::new(State::default()),
        }
    }

    fn print(&self, text: &str) {
        // A terminal that went away is no reason to stop the work.
        let _ = self.multi.println(text);
    }

    fn bar(&self, prefix: String, bytes: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(bytes));
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta} {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(prefix);
        // Drawn at once: a short transfer may end before the first timed redraw.
        bar.force_draw();
        bar
    }

    /// Removes a finished bar; the line that replaces it is printed by the caller.
    fn done(&self, bar: Option<ProgressBar>) {
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

impl Reporter for Bars {
    fn report(&self, event: Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match &event {
            Event::LayerStarted {
                name,
                platforms,
                bytes,
            } => {
                let bar = self.bar(format!("layer {name} ({})", platforms.join(",")), *bytes);
                state.layers.insert((name.clone(), platforms.clone()), bar);
            }
            Event::LayerProgress {
                name,
                platforms,
                done,
            } => {
                if let Some(bar) = state.layers.get(&(name.clone(), platforms.clone())) {
                    // The total is an estimate: never let the bar run past it.
                    if *done > bar.length().unwrap_or(0) {
                        bar.set_length(*done);
                    }
                    bar.set_position(*done);
                }
            }
            Event::LayerWritten {
                name,
                platforms,
                digest,
                size,
                source,
            } => {
                match source {
                    LayerSource::Built => {
                        state.written += 1;
                        state.bytes += size;
                    }
                    LayerSource::LocalCache => state.unchanged += 1,
                    LayerSource::RegistryCache(_) => state.shared += 1,
                }
                // The finished bar gives way to the layer's line, which stays.
                self.done(state.layers.remove(&(name.clone(), platforms.clone())));
                self.print(&format!(
                    "layer {name} ({}) {digest} ({}, {})",
                    platforms.join(","),
                    human_size(*size),
                    super::source_text(source)
                ));
            }
            Event::BlobProgress { digest, done, size } => {
                let bar = state.blobs.entry(digest.clone()).or_insert_with(|| {
                    let short = digest.hex().get(..12).unwrap_or_default().to_string();
                    self.bar(format!("blob {short}"), size.unwrap_or(0))
                });
                if *done > bar.length().unwrap_or(0) {
                    bar.set_length(*done);
                }
                bar.set_position(*done);
                // A complete blob's bar goes now: reading one (diff, inspect) reports
                // no event after its last byte.
                if *size == Some(*done) {
                    self.done(state.blobs.remove(digest));
                }
            }
            Event::BlobUploaded { digest, .. } | Event::BlobPulled { digest, .. } => {
                self.done(state.blobs.remove(digest));
                if let Some(l) = line(&event) {
                    self.print(&l);
                }
            }
            Event::Pushed { .. } | Event::BasePulled { .. } => {
                // Whatever is left (a blob that another path finished) goes now.
                for (_, bar) in state.blobs.drain() {
                    self.done(Some(bar));
                }
                if let Some(l) = line(&event) {
                    self.print(&l);
                }
            }
            Event::ImageWritten { digest, layout } => {
                let shared = match state.shared {
                    0 => String::new(),
                    n => format!("; {n} from shared caches"),
                };
                self.print(&format!(
                    "wrote {digest} to {} ({} layers written, {}; {} unchanged{shared})",
                    layout.display(),
                    state.written,
                    human_size(state.bytes),
                    state.unchanged
                ));
            }
            _ => {
                if let Some(l) = line(&event) {
                    self.print(&l);
                }
            }
        }
    }
}
