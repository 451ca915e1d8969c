//! The build pipeline, end to end: recipe → plans → layer blobs → config, manifest,
//! index → layout. Everything that can be wrong with the input is found before the
//! first byte is written to `--out`.

use crate::base::{self, BaseImage, BasePlatform, BaseSource};
use crate::cache::LayerCache;
use crate::compress::Compression;
use crate::digest::Digest;
use crate::epoch::{self, EpochSource, SourceDateEpoch};
use crate::error::{Error, Result};
use crate::fetch;
use crate::image::{self, canonical_json, Descriptor, ImageConfig, Index, Manifest, PlatformJson};
use crate::layer::{self, LayerBlob};
use crate::layout::Layout;
use crate::lock::{self, Lock};
use crate::plan::{self, LayerPlan, Plan, PlanOptions};
use crate::platform::Platform;
use crate::recipe::{EpochSetting, Recipe};
use crate::reference::{RegistryRef, DEFAULT_TAG};
use crate::registry::client::RegistryClient;
use crate::registry::pull;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// imgbuild's output format version: bumped whenever any golden digest changes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub recipe: PathBuf,
    pub out: PathBuf,
    /// Overrides the recipe's platforms.
    pub platforms: Option<Vec<Platform>>,
    /// Overrides the recipe's tags.
    pub tags: Option<Vec<String>>,
    /// `--source-date-epoch` (highest precedence).
    pub epoch: Option<u64>,
    /// `SOURCE_DATE_EPOCH` from the environment (lowest precedence but 0).
    pub env_epoch: Option<String>,
    pub threads: NonZeroUsize,
    pub quiet: bool,
    /// Write every layer, ignoring the layer cache (it is still updated).
    pub no_cache: bool,
    /// How to reach registries (base images, url archives).
    pub registry: crate::registry::client::Options,
    /// `--locked`: every floating input must be pinned by a current recipe.lock.
    pub locked: bool,
    /// The directory context walks leave out, when it is not `out` (`verify` writes
    /// to a temporary layout but must see the context as `build --out` would).
    pub context_out: Option<PathBuf>,
}

#[derive(Debug)]
pub struct BuildResult {
    /// The manifest (one platform) or index (several) digest.
    pub digest: Digest,
    pub media_type: &'static str,
    pub size: u64,
    pub tags: Vec<String>,
    pub epoch: SourceDateEpoch,
    pub manifests: Vec<PlatformImage>,
    pub layout: PathBuf,
    /// What provenance and SBOM need to know about the inputs.
    pub inputs: BuildInputs,
}

/// The inputs a build read, for provenance (`provenance.rs`) and the SBOM.
#[derive(Debug, Default)]
pub struct BuildInputs {
    /// The recipe file as loaded, and its context directory.
    pub recipe: PathBuf,
    pub context: PathBuf,
    /// `recipe.lock`, when there is one.
    pub lock: Option<PathBuf>,
    /// `[image].repository`, when the recipe names one.
    pub repository: Option<String>,
    pub compression: &'static str,
    /// Every file of the context whose bytes went into a layer (copy sources and
    /// local archives), sorted and without duplicates. Url archives are in `urls`.
    pub files: Vec<PathBuf>,
    /// Every url archive, as `(url, sha256 hex)`, sorted and without duplicates (a
    /// url with `{arch}` appears once per distinct expansion).
    pub urls: Vec<(String, String)>,
    /// The base image: its name as written in the recipe and its root digest.
    pub base: Option<(String, Digest)>,
}

#[derive(Debug)]
pub struct PlatformImage {
    pub platform: Platform,
    pub digest: Digest,
    pub size: u64,
    pub config: Digest,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
    /// How many of `layers` (the first ones) are the base image's.
    pub base_layers: usize,
}

pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    let recipe = Recipe::load(&opts.recipe)?;
    let platforms = match &opts.platforms {
        Some(p) => p.clone(),
        None => recipe.platforms()?,
    };
    let compression = recipe.compression()?;
    let lock = Lock::load(&opts.recipe)?;
    let url_pins = fetch::pins(&recipe, &platforms)?;
    if opts.locked {
        check_locked(&recipe, &opts.recipe, lock.as_ref(), &url_pins)?;
    }
    let epoch = resolve_epoch(&recipe, opts, lock.as_ref())?;
    let tags = match &opts.tags {
        Some(t) => t.clone(),
        None => recipe
            .image
            .tags
            .iter()
            .map(|t| t.get_ref().clone())
            .collect(),
    };
    let user = match &recipe.config.user {
        Some(u) => Some(plan::resolve_user(&recipe, u.get_ref()).ok_or_else(|| {
            recipe
                .error_at(
                    u.span(),
                    format!(
                        "user {:?} is neither a [[user]] of this recipe nor uid[:gid]",
                        u.get_ref()
                    ),
                )
                .with_hint("add a [[user]] with that name, or write a numeric \"uid:gid\"")
        })?),
        None => None,
    };

    // Resolve everything that reads the input before writing anything.
    let base_source = base::resolve(&recipe)?;
    let registry_base = match &base_source {
        Some(BaseSource::Registry {
            name,
            reference,
            span,
        }) => {
            let digest = pin_base(&recipe, opts, lock.as_ref(), name, reference, span.clone())?;
            Some((name.clone(), reference.clone(), digest))
        }
        _ => None,
    };
    let out_dir = absolute(opts.context_out.as_ref().unwrap_or(&opts.out));
    // Url archives are input too: fetched (and verified) before planning. Their cache
    // in `--out` is content-addressed and only ever holds verified files.
    let downloads = if url_pins.is_empty() {
        fetch::Downloads::new()
    } else {
        check_out_dir(&opts.out)?;
        fetch::fetch(&recipe, &url_pins, &opts.out, &opts.registry)?
    };
    // The downloads are inputs by url, not files of the context.
    let download_paths: std::collections::BTreeSet<PathBuf> = downloads.values().cloned().collect();
    let plan_options = PlanOptions {
        out_dir: Some(out_dir.clone()),
        downloads,
    };
    let mut targets = Vec::new();
    for platform in &platforms {
        let base_platform = match &base_source {
            Some(BaseSource::Layout(b)) => Some(b.for_platform(platform)?),
            _ => None,
        };
        let plan = plan::resolve(&recipe, platform, &plan_options)?;
        targets.push((plan, base_platform));
    }

    let mut empty_layers: Vec<String> = Vec::new();
    for layer in targets.iter().flat_map(|(plan, _)| &plan.layers) {
        let note = format!(
            "layer {:?} is empty: it adds nothing to the image",
            layer.name
        );
        if layer.entries.is_empty() && !empty_layers.contains(&note) {
            empty_layers.push(note);
        }
    }
    let mut warned: Vec<&String> = empty_layers.iter().collect();
    if !opts.quiet {
        for w in &warned {
            eprintln!("warning: {w}");
        }
    }
    for w in targets.iter().flat_map(|(plan, _)| &plan.warnings) {
        if !opts.quiet && !warned.contains(&w) {
            eprintln!("warning: {w}");
            warned.push(w);
        }
    }
    check_out_dir(&opts.out)?;
    let layout = Layout::create(&opts.out)?;
    let base = match base_source {
        Some(BaseSource::Layout(b)) => Some(b),
        Some(BaseSource::Registry { .. }) => {
            let Some((name, reference, digest)) = registry_base else {
                return Err(Error::input("internal: registry base without a pin"));
            };
            // Pulled into the output layout (a content-addressed store) and read from
            // there; the base's blobs are verified while they stream in.
            pull::pull_base(
                &layout,
                &name,
                &reference,
                &digest,
                &platforms,
                &opts.registry,
            )?;
            let b = BaseImage {
                name,
                layout: layout.clone(),
                digest,
            };
            for (plan, base_platform) in targets.iter_mut() {
                let bp = b.for_platform(&plan.platform)?;
                check_platform_pin(
                    &opts.recipe,
                    lock.as_ref(),
                    opts.locked,
                    &plan.platform,
                    &bp,
                )?;
                *base_platform = Some(bp);
            }
            Some(b)
        }
        None => None,
    };
    let log = |msg: String| {
        if !opts.quiet {
            eprintln!("{msg}");
        }
    };
    if let Some(b) = &base {
        for (_, bp) in &targets {
            for l in bp.iter().flat_map(|bp| &bp.layers) {
                layout.import_blob(&b.layout, &l.digest)?;
            }
        }
    }
    let cache = (!opts.no_cache).then(|| LayerCache::new(&layout));
    let settings = LayerSettings {
        epoch: epoch.seconds,
        compression,
        threads: opts.threads,
    };
    let blobs = write_layers(&targets, &settings, cache.as_ref(), &layout, &log)?;
    let inputs = BuildInputs {
        recipe: recipe.source.path.clone(),
        context: recipe.context.clone(),
        lock: Some(lock::path_for(&recipe.source.path)).filter(|p| p.is_file()),
        repository: recipe
            .image
            .repository
            .as_ref()
            .map(|r| r.get_ref().clone()),
        compression: compression.as_str(),
        files: input_files(targets.iter().map(|(plan, _)| plan))
            .into_iter()
            .filter(|f| !download_paths.contains(f))
            .collect(),
        urls: url_pins
            .iter()
            .map(|p| (p.url.clone(), p.sha256.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        base: base.as_ref().map(|b| (b.name.clone(), b.digest.clone())),
    };

    let mut manifests = Vec::new();
    for ((plan, base_platform), layer_blobs) in targets.iter().zip(blobs) {
        manifests.push(assemble(
            &recipe,
            plan,
            base.as_ref(),
            base_platform.as_ref(),
            &layer_blobs,
            &epoch,
            user.as_deref(),
            &layout,
        )?);
    }
    let (digest, media_type, size) = if manifests.len() == 1 {
        (
            manifests[0].digest.clone(),
            image::MANIFEST_V1,
            manifests[0].size,
        )
    } else {
        let index = Index {
            schema_version: 2,
            media_type: Some(image::INDEX_V1.into()),
            manifests: manifests
                .iter()
                .map(|m| Descriptor {
                    platform: Some(PlatformJson::from(&m.platform)),
                    ..Descriptor::new(image::MANIFEST_V1, m.digest.clone(), m.size)
                })
                .collect(),
            annotations: recipe.annotations.clone(),
        };
        let bytes = canonical_json(&index);
        (
            layout.write_blob(&bytes)?,
            image::INDEX_V1,
            bytes.len() as u64,
        )
    };
    layout.add_to_index(&Descriptor::new(media_type, digest.clone(), size), &tags)?;
    log(format!("wrote {digest} to {}", opts.out.display()));
    Ok(BuildResult {
        digest,
        media_type,
        size,
        tags,
        epoch,
        manifests,
        layout: opts.out.clone(),
        inputs,
    })
}

/// The context files whose bytes the plans read: copy sources and local archives.
fn input_files<'a>(plans: impl Iterator<Item = &'a Plan>) -> Vec<PathBuf> {
    let mut files = std::collections::BTreeSet::new();
    for entry in plans.flat_map(|p| &p.layers).flat_map(|l| &l.entries) {
        if let plan::EntryKind::File { content, .. } = &entry.kind {
            match content {
                plan::Content::Path { path, .. } => {
                    files.insert(path.clone());
                }
                plan::Content::Spool { spool, .. } => {
                    files.insert(spool.source.clone());
                }
                plan::Content::Inline(_) => {}
            }
        }
    }
    files.into_iter().collect()
}

/// The digest a registry base is pinned to: the recipe's own `@sha256:…`, else the
/// lock's, else (without `--locked`) its tag resolved now, with a warning.
fn pin_base(
    recipe: &Recipe,
    opts: &BuildOptions,
    lock: Option<&Lock>,
    name: &str,
    reference: &RegistryRef,
    span: std::ops::Range<usize>,
) -> Result<Digest> {
    let locked = lock
        .and_then(|l| l.base.as_ref())
        .filter(|b| b.image == name)
        .map(|b| {
            Digest::parse(&b.digest).ok_or_else(|| {
                lock::stale(
                    &opts.recipe,
                    format!(
                        "pins base {name} to {:?}, which is not a sha256 digest",
                        b.digest
                    ),
                )
            })
        })
        .transpose()?;
    if let Some(d) = &reference.digest {
        if let Some(l) = locked.as_ref().filter(|l| *l != d) {
            return Err(lock::stale(
                &opts.recipe,
                format!("pins base {name} to {l}, but the recipe says {d}"),
            ));
        }
        return Ok(d.clone());
    }
    if let Some(d) = locked {
        return Ok(d);
    }
    if opts.locked {
        return Err(recipe
            .error_at(span, format!("--locked: base image {name:?} is not pinned"))
            .with_hint("run `imgbuild lock` to pin it in recipe.lock, or write the digest: image = \"host/repo:tag@sha256:…\""));
    }
    let tag = reference
        .tag
        .clone()
        .unwrap_or_else(|| DEFAULT_TAG.to_string());
    let rt = crate::registry::client::runtime()?;
    let (_, digest) = rt.block_on(async {
        let c = RegistryClient::connect(&reference.registry, &reference.repository, &opts.registry)
            .await?;
        c.authorize(&reference.repository, false).await?;
        c.get_manifest(&reference.repository, &tag).await
    })?;
    if !opts.quiet {
        eprintln!(
            "warning: base image {name} is not pinned; its tag resolved to {digest} today. Pin it with `imgbuild lock` (or write {name}@{digest}) so that the build is reproducible"
        );
    }
    Ok(digest)
}

/// The platform manifest a base index gave must be the one the lock pinned.
fn check_platform_pin(
    recipe: &Path,
    lock: Option<&Lock>,
    locked: bool,
    platform: &Platform,
    bp: &BasePlatform,
) -> Result<()> {
    let Some(base) = lock.and_then(|l| l.base.as_ref()) else {
        return Ok(());
    };
    match base.platforms.get(&platform.to_string()) {
        Some(d) if *d != bp.manifest_digest.to_string() => Err(lock::stale(
            recipe,
            format!(
                "pins the {platform} manifest of base {} to {d}, but its index gives {}",
                base.image, bp.manifest_digest
            ),
        )),
        None if locked => Err(lock::stale(
            recipe,
            format!("pins no {platform} manifest of base {}", base.image),
        )),
        _ => Ok(()),
    }
}

/// `--locked`: a lock must exist and agree with the recipe's floating inputs.
fn check_locked(
    recipe: &Recipe,
    recipe_path: &Path,
    lock: Option<&Lock>,
    url_pins: &[fetch::UrlPin],
) -> Result<()> {
    let Some(lock) = lock else {
        return Err(Error::input(format!(
            "--locked: there is no {}",
            lock::path_for(recipe_path).display()
        ))
        .with_hint("run `imgbuild lock` and commit the file it writes"));
    };
    let base_name = recipe
        .base
        .image
        .as_ref()
        .map(|s| s.get_ref().as_str())
        .filter(|n| *n != "scratch" && !n.starts_with("oci:"));
    match (&lock.base, base_name) {
        (Some(b), Some(n)) if b.image != n => {
            return Err(lock::stale(
                recipe_path,
                format!("pins base {}, but the recipe's base is {n}", b.image),
            ))
        }
        (Some(b), None) => {
            return Err(lock::stale(
                recipe_path,
                format!("pins base {}, which the recipe no longer names", b.image),
            ))
        }
        _ => {}
    }
    for pin in url_pins {
        match lock.url.iter().find(|u| u.url == pin.url) {
            Some(u) if u.sha256.trim_start_matches("sha256:") == pin.sha256 => {}
            Some(u) => {
                return Err(lock::stale(
                    recipe_path,
                    format!(
                        "pins {} to sha256 {}, but the recipe says {}",
                        pin.url, u.sha256, pin.sha256
                    ),
                ))
            }
            None => {
                return Err(lock::stale(
                    recipe_path,
                    format!("does not pin {} ({})", pin.url, pin.platform),
                ))
            }
        }
    }
    Ok(())
}

/// SPEC §3.1: flag, else recipe, else `SOURCE_DATE_EPOCH`, else 0. A `"git"` epoch
/// comes from the lock when it pins one.
fn resolve_epoch(
    recipe: &Recipe,
    opts: &BuildOptions,
    lock: Option<&Lock>,
) -> Result<SourceDateEpoch> {
    if let Some(s) = opts.epoch {
        return Ok(SourceDateEpoch {
            seconds: epoch::check_range(s, "--source-date-epoch")?,
            source: EpochSource::Flag,
        });
    }
    if let Some(e) = &recipe.image.source_date_epoch {
        return match e.get_ref() {
            EpochSetting::Seconds(s) => Ok(SourceDateEpoch {
                seconds: *s as u64,
                source: EpochSource::Recipe,
            }),
            EpochSetting::Named(_) => {
                if let Some(pinned) = lock.and_then(|l| l.source_date_epoch.as_ref()) {
                    return Ok(SourceDateEpoch {
                        seconds: epoch::check_range(pinned.git, "recipe.lock source-date-epoch")?,
                        source: EpochSource::RecipeGit,
                    });
                }
                if opts.locked {
                    return Err(recipe
                        .error_at(
                            e.span(),
                            "--locked: source-date-epoch = \"git\" is not pinned",
                        )
                        .with_hint(
                            "run `imgbuild lock` to record the commit time in recipe.lock",
                        ));
                }
                Ok(SourceDateEpoch {
                    seconds: epoch::git_commit_time(&recipe.context)?,
                    source: EpochSource::RecipeGit,
                })
            }
        };
    }
    if let Some(v) = opts.env_epoch.as_deref().filter(|v| !v.is_empty()) {
        return Ok(SourceDateEpoch {
            seconds: epoch::parse_epoch(v, "SOURCE_DATE_EPOCH")?,
            source: EpochSource::Environment,
        });
    }
    Ok(SourceDateEpoch {
        seconds: 0,
        source: EpochSource::Default,
    })
}

/// Writes every distinct layer of every platform, several at a time. A layer whose
/// plan is identical on two platforms (no `{arch}` in it) is written once.
struct LayerSettings {
    epoch: u64,
    compression: Compression,
    threads: NonZeroUsize,
}

fn write_layers(
    targets: &[(Plan, Option<BasePlatform>)],
    settings: &LayerSettings,
    cache: Option<&LayerCache>,
    layout: &Layout,
    log: &(dyn Fn(String) + Sync),
) -> Result<Vec<Vec<LayerBlob>>> {
    let LayerSettings {
        epoch,
        compression,
        threads,
    } = *settings;
    let mut jobs: Vec<&LayerPlan> = Vec::new();
    let mut job_of: Vec<Vec<usize>> = Vec::new();
    for (plan, _) in targets {
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
    let results: Mutex<BTreeMap<usize, Result<LayerBlob>>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    let workers = threads.get().min(jobs.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let key = cache.map(|_| LayerCache::key(job, FORMAT_VERSION, compression, epoch));
                let hit = cache
                    .zip(key.as_ref())
                    .and_then(|(c, k)| c.get(k, layout, compression));
                let cached = hit.is_some();
                let r = match hit {
                    Some(b) => Ok(b),
                    None => layer::write_layer(
                        job,
                        epoch,
                        compression,
                        crate::format::FormatVersion::V1,
                        threads,
                        layout,
                    ),
                };
                if let Ok(b) = &r {
                    if let (Some(c), Some(k), false) = (cache, &key, cached) {
                        c.put(k, b);
                    }
                    let how = if cached { ", unchanged" } else { "" };
                    log(format!(
                        "layer {:<16} {} ({} bytes{how})",
                        job.name, b.digest, b.size
                    ));
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

#[allow(clippy::too_many_arguments)]
fn assemble(
    recipe: &Recipe,
    plan: &Plan,
    base: Option<&BaseImage>,
    base_platform: Option<&BasePlatform>,
    blobs: &[LayerBlob],
    epoch: &SourceDateEpoch,
    user: Option<&str>,
    layout: &Layout,
) -> Result<PlatformImage> {
    let created = epoch.rfc3339();
    let mut config = ImageConfig::default();
    let mut layers: Vec<Descriptor> = Vec::new();
    let base_layers = base_platform.map_or(0, |bp| bp.layers.len());
    if let Some(bp) = base_platform {
        let b = &bp.config;
        config.config = b.config.clone();
        config.rootfs.diff_ids = b.rootfs.diff_ids.clone();
        config.history = b.history.clone();
        config.extra = b.extra.clone();
        layers = bp.layers.clone();
    }
    let c = &recipe.config;
    let cc = &mut config.config;
    if let Some(e) = &c.entrypoint {
        cc.entrypoint = Some(e.clone());
        // As in a Dockerfile: a new entrypoint drops the base's cmd.
        cc.cmd = None;
    }
    if let Some(cmd) = &c.cmd {
        cc.cmd = Some(cmd.clone());
    }
    merge_env(&mut cc.env, &c.env);
    if let Some(w) = &c.workdir {
        cc.working_dir = Some(w.get_ref().clone());
    }
    if let Some(u) = user {
        cc.user = Some(u.to_string());
    }
    for p in &c.exposed_ports {
        let p = p.get_ref();
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        cc.exposed_ports.insert(key, serde_json::json!({}));
    }
    for v in &c.volumes {
        cc.volumes
            .insert(v.get_ref().clone(), serde_json::json!({}));
    }
    cc.labels
        .extend(c.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(s) = &c.stop_signal {
        cc.stop_signal = Some(s.get_ref().clone());
    }
    config.created = Some(created.clone());
    config.architecture = plan.platform.architecture.clone();
    config.os = plan.platform.os.clone();
    config.variant = plan.platform.variant.clone();
    let mut diff_ids = Vec::new();
    for (l, b) in plan.layers.iter().zip(blobs) {
        config.rootfs.diff_ids.push(b.diff_id.clone());
        config.history.push(image::history_entry(
            &created,
            &format!("imgbuild: layer {}", l.name),
        ));
        layers.push(Descriptor::new(b.media_type, b.digest.clone(), b.size));
        diff_ids.push(b.diff_id.clone());
    }
    let config_bytes = canonical_json(&config);
    let config_digest = layout.write_blob(&config_bytes)?;
    let mut annotations = recipe.annotations.clone();
    if let (Some(b), Some(bp)) = (base, base_platform) {
        annotations.insert(image::ANNOTATION_BASE_NAME.into(), b.name.clone());
        annotations.insert(
            image::ANNOTATION_BASE_DIGEST.into(),
            bp.manifest_digest.to_string(),
        );
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(image::MANIFEST_V1.into()),
        config: Descriptor::new(
            image::CONFIG_V1,
            config_digest.clone(),
            config_bytes.len() as u64,
        ),
        layers: layers.clone(),
        annotations,
    };
    let bytes = canonical_json(&manifest);
    let digest = layout.write_blob(&bytes)?;
    Ok(PlatformImage {
        platform: plan.platform.clone(),
        digest,
        size: bytes.len() as u64,
        config: config_digest,
        layers,
        diff_ids: config.rootfs.diff_ids.clone(),
        base_layers,
    })
}

/// Recipe env overrides the base's by key; the base's order is kept, new keys follow
/// sorted.
fn merge_env(env: &mut Vec<String>, recipe: &BTreeMap<String, String>) {
    let mut rest = recipe.clone();
    for kv in env.iter_mut() {
        let key = kv
            .split_once('=')
            .map_or(kv.as_str(), |(k, _)| k)
            .to_string();
        if let Some(v) = rest.remove(&key) {
            *kv = format!("{key}={v}");
        }
    }
    env.extend(rest.into_iter().map(|(k, v)| format!("{k}={v}")));
}

/// `--out` must be missing, empty, or an OCI layout: imgbuild never scatters blobs
/// into a directory that holds something else.
fn check_out_dir(out: &Path) -> Result<()> {
    if !out.exists() || out.join("oci-layout").is_file() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(Error::input(format!(
            "--out {} exists and is not a directory",
            out.display()
        ))
        .with_hint("name a new or empty directory, or an existing OCI image layout"));
    }
    // Another build may be creating the layout right now: its first entries (before
    // oci-layout lands) are ones only imgbuild writes.
    let ours = |name: &std::ffi::OsStr| {
        let n = name.to_string_lossy();
        matches!(
            n.as_ref(),
            "blobs" | "oci-layout" | "index.json" | ".index.json.lock" | ".imgbuild"
        ) || n.starts_with(".tmp-")
    };
    let mut foreign = false;
    for entry in std::fs::read_dir(out).map_err(|e| Error::io_path("cannot read", out, e))? {
        let entry = entry.map_err(|e| Error::io_path("cannot read", out, e))?;
        foreign |= !ours(&entry.file_name());
    }
    if !foreign {
        return Ok(());
    }
    Err(Error::input(format!(
        "--out {} is a non-empty directory that is not an OCI image layout (it has no oci-layout file)",
        out.display()
    ))
    .with_hint("name a new or empty directory, or an existing OCI image layout"))
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::merge_env;
    use std::collections::BTreeMap;

    #[test]
    fn recipe_env_overrides_base_env_and_appends_sorted() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let recipe = BTreeMap::from([
            ("Z".to_string(), "z".to_string()),
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("B".to_string(), "b".to_string()),
        ]);
        merge_env(&mut env, &recipe);
        assert_eq!(env, vec!["PATH=/usr/bin", "A=1", "B=b", "Z=z"]);
    }
}
