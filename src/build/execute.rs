//! The second stage of a build: write what the resolve stage decided, and nothing
//! else. No input is read here that could raise an exit-2 error.
//!
//! In order: the output layout (created if resolving did not already), the base's
//! blobs imported into it, the layers (the scheduler below, with the layer cache),
//! then config, manifests and index (`assemble.rs`), and the index entry with
//! the tags last.

use super::assemble;
use super::resolve::ResolvedBuild;
use super::BuildResult;
use crate::cache::LayerCache;
use crate::compress::Compression;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::format::FormatVersion;
use crate::layer::{self, LayerBlob};
use crate::layout::Layout;
use crate::plan::{LayerPlan, Plan};
use crate::source::ImageSource;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub fn execute(resolved: ResolvedBuild<'_>) -> Result<BuildResult> {
    let ResolvedBuild {
        opts,
        recipe,
        format,
        format_source,
        compression,
        epoch,
        tags,
        user,
        base,
        targets,
        verified,
        newly_verified,
        layout,
        inputs,
        ..
    } = resolved;
    let layout = match layout {
        Some(l) => l,
        None => {
            let l = Layout::create(&opts.out)?;
            l.remove_stale_temps();
            l
        }
    };
    if let Some(b) = &base {
        let layers: Vec<(Digest, u64)> = targets
            .iter()
            .flat_map(|t| t.base.iter().flat_map(|bp| &bp.layers))
            .map(|l| (l.digest.clone(), l.size))
            .collect();
        b.source.copy_blobs(&layers, &layout, &|_, _| {})?;
    }
    // Recorded only now that `--out` holds each layer under its digest: the bytes
    // checked hashed to that digest, so they are the bytes `--out` holds.
    for (digest, diff_id) in &newly_verified {
        verified.record(digest, diff_id);
    }
    let cache = (!opts.no_cache).then(|| LayerCache::new(&layout));
    let settings = LayerSettings {
        epoch: epoch.seconds,
        compression,
        format,
        threads: opts.threads,
    };
    let plans: Vec<&Plan> = targets.iter().map(|t| &t.plan).collect();
    let blobs = write_layers(&plans, &settings, cache.as_ref(), &layout, &opts.events)?;
    let mut manifests = Vec::new();
    for (t, layer_blobs) in targets.iter().zip(blobs) {
        let image = assemble::Image {
            recipe: &recipe,
            base: base.as_ref(),
            epoch: &epoch,
            user: user.as_deref(),
            format,
        };
        manifests.push(assemble::assemble(
            &image,
            &t.plan,
            t.base.as_ref(),
            &layer_blobs,
            &layout,
        )?);
    }
    let (digest, media_type, size) = assemble::write_root(&recipe, &manifests, &layout)?;
    layout.add_to_index(
        &crate::image::Descriptor::new(media_type, digest.clone(), size),
        &tags,
    )?;
    opts.events.emit(Event::ImageWritten {
        digest: digest.clone(),
        layout: opts.out.clone(),
    });
    Ok(BuildResult {
        digest,
        media_type,
        size,
        tags,
        epoch,
        manifests,
        layout: opts.out.clone(),
        format,
        format_source,
        inputs,
    })
}

/// What every layer of a build is written with.
pub struct LayerSettings {
    pub epoch: u64,
    pub compression: Compression,
    pub format: FormatVersion,
    pub threads: NonZeroUsize,
}

/// The layer scheduler: writes every distinct layer of every platform, several at a
/// time. A layer whose plan is identical on two platforms (no `{arch}` in it) is
/// written once. Returns each platform's layer blobs, in plan order.
pub fn write_layers(
    targets: &[&Plan],
    settings: &LayerSettings,
    cache: Option<&LayerCache>,
    layout: &Layout,
    events: &Events,
) -> Result<Vec<Vec<LayerBlob>>> {
    let LayerSettings {
        epoch,
        compression,
        format,
        threads,
    } = *settings;
    let Jobs {
        jobs,
        job_of,
        platforms_of,
    } = Jobs::of(targets);
    let results: Mutex<BTreeMap<usize, Result<LayerBlob>>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    let workers = threads.get().min(jobs.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let key = cache.map(|_| LayerCache::key(job, format, compression, epoch));
                let hit = cache
                    .zip(key.as_ref())
                    .and_then(|(c, k)| c.get(k, layout, compression));
                let cached = hit.is_some();
                let platforms = &platforms_of[i];
                let r = match hit {
                    Some(b) => Ok(b),
                    None => {
                        events.emit(Event::LayerStarted {
                            name: job.name.clone(),
                            platforms: platforms.clone(),
                            bytes: tar_bytes(job),
                        });
                        let progress = |done| {
                            events.emit(Event::LayerProgress {
                                name: job.name.clone(),
                                platforms: platforms.clone(),
                                done,
                            })
                        };
                        layer::write_layer_reporting(
                            job,
                            epoch,
                            compression,
                            format,
                            threads,
                            layout,
                            &progress,
                        )
                    }
                };
                if let Ok(b) = &r {
                    if let (Some(c), Some(k), false) = (cache, &key, cached) {
                        c.put(k, b);
                    }
                    events.emit(Event::LayerWritten {
                        name: job.name.clone(),
                        platforms: platforms.clone(),
                        digest: b.digest.clone(),
                        size: b.size,
                        unchanged: cached,
                    });
                }
                let failed = r.is_err();
                if let Ok(mut m) = results.lock() {
                    m.insert(i, r);
                }
                if failed {
                    // Stop handing out work; the first error is reported.
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                }
            });
        }
    });
    let mut results = results.into_inner().map_err(|_| {
        Error::io(
            "building layers",
            std::io::Error::other("a worker panicked"),
        )
    })?;
    let mut done: BTreeMap<usize, LayerBlob> = BTreeMap::new();
    for i in 0..jobs.len() {
        match results.remove(&i) {
            Some(Ok(b)) => {
                done.insert(i, b);
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    job_of
        .into_iter()
        .map(|ids| {
            ids.into_iter()
                .map(|i| {
                    done.get(&i).cloned().ok_or_else(|| {
                        Error::io(
                            "building layers",
                            std::io::Error::other("a layer was not built"),
                        )
                    })
                })
                .collect()
        })
        .collect()
}

/// About how many tar bytes `layer` will be: a 512-byte header per entry, contents
/// padded to 512 bytes, the two end blocks (long names' extra headers left out). A
/// total for progress displays, not a promise.
fn tar_bytes(layer: &LayerPlan) -> u64 {
    let content: u64 = layer
        .entries
        .iter()
        .map(|e| match &e.kind {
            crate::plan::EntryKind::File { size, .. } => size.div_ceil(512) * 512,
            _ => 0,
        })
        .sum();
    content + 512 * layer.entries.len() as u64 + 1024
}

/// The distinct layer jobs of a build: a layer whose plan is identical on several
/// platforms is one job.
struct Jobs<'a> {
    jobs: Vec<&'a LayerPlan>,
    /// Per platform, the job of each of its layers, in plan order.
    job_of: Vec<Vec<usize>>,
    /// The platforms each job serves, for progress and messages.
    platforms_of: Vec<Vec<String>>,
}

impl<'a> Jobs<'a> {
    fn of(targets: &[&'a Plan]) -> Self {
        let mut jobs: Vec<&LayerPlan> = Vec::new();
        let mut job_of: Vec<Vec<usize>> = Vec::new();
        for plan in targets {
            let mut ids = Vec::new();
            for l in &plan.layers {
                let id = match jobs
                    .iter()
                    .position(|j| j.name == l.name && j.entries == l.entries)
                {
                    Some(i) => i,
                    None => {
                        jobs.push(l);
                        jobs.len() - 1
                    }
                };
                ids.push(id);
            }
            job_of.push(ids);
        }
        // The platforms each job serves, for progress and messages.
        let mut platforms_of: Vec<Vec<String>> = vec![Vec::new(); jobs.len()];
        for (plan, ids) in targets.iter().zip(&job_of) {
            for &i in ids {
                let p = plan.platform.to_string();
                if !platforms_of[i].contains(&p) {
                    platforms_of[i].push(p);
                }
            }
        }
        Jobs {
            jobs,
            job_of,
            platforms_of,
        }
    }
}
