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
use crate::cache::shared::SharedCache;
use crate::cache::{self, LayerCache};
use crate::compress::Compression;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::{Event, Events, LayerSource};
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
        prehash,
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
    // A temporary layout (an archive's, `--no-out`'s, `verify`'s) starts empty and is
    // removed after: its layer cache could never hit, nor serve a later build.
    let cache = (!opts.no_cache && opts.context_out.is_none()).then(|| LayerCache::new(&layout));
    let shared = (!opts.shared_cache.is_empty()).then(|| {
        let mut options = opts.shared_cache.clone();
        if opts.no_cache {
            // --no-cache writes every layer; --cache-to is still filled.
            options.from.clear();
        }
        SharedCache::open(&options, &opts.registry)
    });
    let settings = LayerSettings {
        epoch: epoch.seconds,
        compression,
        format,
        threads: opts.threads,
    };
    let plans: Vec<&Plan> = targets.iter().map(|t| &t.plan).collect();
    let caches = Caches {
        local: cache.as_ref(),
        shared: shared.as_ref(),
        prehash: prehash.as_deref(),
    };
    let blobs = write_layers(&plans, &settings, caches, &layout, &opts.events);
    // Every key is made: files still being hashed are not needed.
    if let Some(p) = &prehash {
        p.cancel();
    }
    let blobs = blobs?;
    let mut manifests = Vec::new();
    for (t, written) in targets.iter().zip(blobs) {
        let (layer_blobs, sources): (Vec<LayerBlob>, Vec<LayerSource>) =
            written.into_iter().unzip();
        let image = assemble::Image {
            recipe: &recipe,
            base: base.as_ref(),
            epoch: &epoch,
            user: user.as_deref(),
            format,
        };
        let mut manifest =
            assemble::assemble(&image, &t.plan, t.base.as_ref(), &layer_blobs, &layout)?;
        manifest.layer_sources = sources;
        manifests.push(manifest);
    }
    let (digest, media_type, size) = assemble::write_root(&recipe, &manifests, &layout)?;
    layout.add_to_index(
        &crate::image::Descriptor::new(media_type, digest.clone(), size),
        &tags,
    )?;
    opts.events.emit(Event::ImageWritten {
        digest: digest.clone(),
        layout: opts.context_out.is_none().then(|| opts.out.clone()),
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
        shared_layers: shared.map(|s| s.found_in()).unwrap_or_default(),
    })
}

/// What every layer of a build is written with.
pub struct LayerSettings {
    pub epoch: u64,
    pub compression: Compression,
    pub format: FormatVersion,
    pub threads: NonZeroUsize,
}

/// The layer caches a build reads and fills: `--out`'s own, and the shared caches
/// of `--cache-from`/`--cache-to`.
#[derive(Default, Clone, Copy)]
pub struct Caches<'a> {
    pub local: Option<&'a LayerCache>,
    pub shared: Option<&'a SharedCache>,
    /// Context files hashed while planning, for the content keys.
    pub prehash: Option<&'a crate::prehash::Prehash>,
}

/// A layer of the build: its blob, where it came from, and its content key when a
/// shared cache asked for it.
struct Produced {
    blob: LayerBlob,
    source: LayerSource,
    key: Option<Digest>,
}

/// The layer scheduler: writes every distinct layer of every platform, several at a
/// time, each looked up in the caches first. A layer whose plan is identical on two
/// platforms (no `{arch}` in it) is written once. Returns each platform's layer
/// blobs, in plan order, with where each came from. With `--cache-to`, every layer
/// is then stored in the shared cache.
pub fn write_layers(
    targets: &[&Plan],
    settings: &LayerSettings,
    caches: Caches<'_>,
    layout: &Layout,
    events: &Events,
) -> Result<Vec<Vec<(LayerBlob, LayerSource)>>> {
    let Jobs {
        jobs,
        job_of,
        platforms_of,
    } = Jobs::of(targets);
    let results: Mutex<BTreeMap<usize, Result<Produced>>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    let workers = settings.threads.get().min(jobs.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let platforms = &platforms_of[i];
                let r = produce(job, platforms, settings, caches, layout, events);
                if let Ok(p) = &r {
                    events.emit(Event::LayerWritten {
                        name: job.name.clone(),
                        platforms: platforms.clone(),
                        digest: p.blob.digest.clone(),
                        size: p.blob.size,
                        source: p.source.clone(),
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
    let mut done: BTreeMap<usize, Produced> = BTreeMap::new();
    for i in 0..jobs.len() {
        match results.remove(&i) {
            Some(Ok(p)) => {
                done.insert(i, p);
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if let Some(shared) = caches.shared {
        let entries: Vec<(Digest, LayerBlob)> = done
            .values()
            .filter_map(|p| Some((p.key.clone()?, p.blob.clone())))
            .collect();
        if !entries.is_empty() {
            shared.store(&entries, layout);
        }
    }
    job_of
        .into_iter()
        .map(|ids| {
            ids.into_iter()
                .map(|i| {
                    done.get(&i)
                        .map(|p| (p.blob.clone(), p.source.clone()))
                        .ok_or_else(|| {
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

/// One layer job: from `--out`'s layer cache, else from a shared cache (its content
/// key computed, which reads the sources once), else written now. The content key is
/// kept for `--cache-to`.
fn produce(
    job: &LayerPlan,
    platforms: &[String],
    settings: &LayerSettings,
    caches: Caches<'_>,
    layout: &Layout,
    events: &Events,
) -> Result<Produced> {
    let LayerSettings {
        epoch,
        compression,
        format,
        threads,
    } = *settings;
    let local_key = caches
        .local
        .map(|_| LayerCache::key(job, format, compression, epoch));
    let local_hit = caches
        .local
        .zip(local_key.as_ref())
        .and_then(|(c, k)| c.get(k, layout, compression));
    // A source that cannot be read gives no key: writing the layer reports it.
    let needs_key = caches
        .shared
        .is_some_and(|s| s.writes() || (local_hit.is_none() && s.reads()));
    let key = needs_key
        .then(|| cache::content_key(job, format, compression, epoch, threads, caches.prehash).ok())
        .flatten();
    if let Some(blob) = local_hit {
        return Ok(Produced {
            blob,
            source: LayerSource::LocalCache,
            key,
        });
    }
    let remember = |blob: &LayerBlob| {
        if let (Some(c), Some(k)) = (caches.local, &local_key) {
            c.put(k, blob);
        }
    };
    if let (Some(shared), Some(k)) = (caches.shared, &key) {
        if let Some((blob, from)) = shared.lookup(k, &job.name, layout, compression) {
            remember(&blob);
            return Ok(Produced {
                blob,
                source: LayerSource::RegistryCache(from),
                key,
            });
        }
    }
    events.emit(Event::LayerStarted {
        name: job.name.clone(),
        platforms: platforms.to_vec(),
        bytes: tar_bytes(job),
    });
    let progress = |done| {
        events.emit(Event::LayerProgress {
            name: job.name.clone(),
            platforms: platforms.to_vec(),
            done,
        })
    };
    let blob =
        layer::write_layer_reporting(job, epoch, compression, format, threads, layout, &progress)?;
    remember(&blob);
    Ok(Produced {
        blob,
        source: LayerSource::Built,
        key,
    })
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
