//! The first stage of a build: read every input and raise every input error, producing
//! a [`ResolvedBuild`] that the execute stage (`execute.rs`) only has to write out.
//!
//! Resolving loads the recipe and `recipe.lock`, applies the lock policy
//! (`lock_policy.rs`), picks the format, epoch, tags and user, plans every
//! platform (`crate::plan`), and opens and verifies the base image. Every exit-2 error
//! of a build is raised here.
//!
//! Order against `--out`: nothing of the image is written before this stage returns.
//! Two kinds of input are stored in `--out`'s content-addressed store *during* it,
//! because they are verified while they stream in and only verified bytes land there:
//! url archives (downloaded before planning, into `.imgbuild/downloads`), and a
//! registry base (pulled into `blobs/` once planning is done, then checked against the
//! lock's platform pins and its layers' diff_ids). Both come after `--out` was checked
//! to be empty or an OCI layout, and neither touches `index.json`.

use super::lock_policy::{
    check_locked, check_locked_urls, check_platform_pin, lock_disagrees, open_layout_base,
    pin_base, resolve_epoch, resolve_format, warn_stale, BasePin,
};
use super::{BuildInputs, BuildOptions, Platforms};
use crate::base::{self, BaseImage, BasePlatform, BaseSource, VerifiedLayers};
use crate::compress::Compression;
use crate::digest::Digest;
use crate::epoch::SourceDateEpoch;
use crate::error::{Error, Result};
use crate::fetch;
use crate::format::{FormatSource, FormatVersion};
use crate::layout::Layout;
use crate::lock::{self, Lock};
use crate::plan::{self, Plan, PlanOptions};
use crate::platform::Platform;
use crate::recipe::Recipe;
use crate::reference::RegistryRef;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A build with all reading done: what the execute stage writes.
#[derive(Debug)]
pub struct ResolvedBuild<'a> {
    pub opts: &'a BuildOptions,
    pub recipe: Recipe,
    pub lock: Option<Lock>,
    pub platforms: Vec<Platform>,
    pub compression: Compression,
    pub format: FormatVersion,
    pub format_source: FormatSource,
    pub epoch: SourceDateEpoch,
    pub tags: Vec<String>,
    /// `[config] user`, resolved to what the image config says.
    pub user: Option<String>,
    pub url_pins: Vec<fetch::UrlPin>,
    /// The base image (a layout, or the output layout a registry base was pulled into).
    pub base: Option<BaseImage>,
    /// One plan per platform, in the order of `platforms`.
    pub targets: Vec<PlatformPlan>,
    /// Base layers whose diff_id was checked now: recorded in the output layout.
    pub verified: VerifiedLayers,
    pub newly_verified: Vec<VerifiedLayer>,
    /// The output layout, when resolving already had to create it (a registry base).
    pub layout: Option<Layout>,
    pub inputs: BuildInputs,
    /// The context files hashed while planning, for the content keys.
    pub prehash: Option<std::sync::Arc<crate::prehash::Prehash>>,
}

/// A base layer checked now: its digest and the diff_id it decompresses to.
pub type VerifiedLayer = (Digest, Digest);

/// One platform's plan and, with a base image, its base manifest.
#[derive(Debug)]
pub struct PlatformPlan {
    pub plan: Plan,
    pub base: Option<BasePlatform>,
}

pub fn resolve(opts: &BuildOptions) -> Result<ResolvedBuild<'_>> {
    let recipe = Recipe::load(&opts.recipe)?;
    let compression = match opts.compression {
        Some(c) => c,
        None => recipe.compression()?,
    };
    let lock = Lock::load(&opts.recipe)?;
    if opts.locked {
        check_locked(&recipe, &opts.recipe, lock.as_ref())?;
    } else {
        warn_stale(&recipe, opts, lock.as_ref());
    }
    let (format, format_source) = resolve_format(&recipe, opts, lock.as_ref())?;
    let epoch = resolve_epoch(&recipe, opts, lock.as_ref())?;
    let tags = opts.tags.clone().unwrap_or_else(|| recipe_tags(&recipe));
    let user = resolve_user(&recipe)?;
    let base_source = base::resolve(&recipe)?;
    let (platforms, base_pin) =
        choose_platforms(&recipe, opts, lock.as_ref(), base_source.as_ref())?;
    let url_pins = fetch::pins(&recipe, &platforms)?;
    if opts.locked {
        check_locked_urls(&opts.recipe, lock.as_ref(), &url_pins)?;
    }
    let base_pin = match (base_pin, &base_source) {
        (Some(pin), _) => Some(pin),
        (None, Some(b)) => Some(pin_base(&recipe, opts, lock.as_ref(), b)?),
        (None, None) => None,
    };
    let layout_base = match (&base_source, &base_pin) {
        (Some(BaseSource::Layout(l)), Some((digest, from))) => {
            Some(open_layout_base(opts, l, (digest, *from))?)
        }
        _ => None,
    };
    // Url archives are input too: fetched (and verified) before planning. Their cache
    // in `--out` is content-addressed and only ever holds verified files.
    let (packages, package_files) = super::packages::pins(
        &recipe,
        lock.as_ref(),
        &platforms,
        (&opts.recipe, opts.locked),
    )?;
    let downloads = fetch_all(&recipe, opts, [&url_pins, &package_files])?;
    // The downloads are inputs by url, not files of the context.
    let download_paths: BTreeSet<PathBuf> = downloads.values().cloned().collect();
    let prehash = start_prehash(opts);
    let plan_options = PlanOptions {
        outputs: outputs(opts),
        downloads,
        packages: packages.clone(),
        prehash: prehash.clone(),
    };
    // Base layers are checked (sizes, diff_ids) before anything is written; what was
    // decompressed now is recorded in the output layout once it exists.
    let verified = VerifiedLayers::in_layout(&opts.out);
    let (mut targets, mut newly_verified) = plan_platforms(
        &recipe,
        &platforms,
        layout_base.as_ref().map(|b| (b, lock.as_ref(), opts)),
        &plan_options,
        &verified,
    )?;
    warn_once(opts, &targets);
    Layout::check_target(&opts.out, "--out")?;
    let (base, layout) = match (base_source, base_pin) {
        (Some(BaseSource::Layout(_)), _) => (layout_base, None),
        (
            Some(BaseSource::Registry {
                name, reference, ..
            }),
            Some((digest, from)),
        ) => {
            let pulled = PulledBase {
                pin: (name, reference, digest),
                from,
                platforms: &platforms,
                lock: lock.as_ref(),
                verified: &verified,
            };
            let (b, layout) = pull_registry_base(opts, pulled, &mut targets, &mut newly_verified)?;
            (Some(b), Some(layout))
        }
        (Some(BaseSource::Registry { .. }), None) => {
            return Err(Error::input("internal: registry base without a pin"))
        }
        (None, _) => (None, None),
    };
    // The base's /etc/passwd and /etc/group, under the recipe's accounts.
    let plans = targets.iter_mut().map(|t| (&mut t.plan, t.base.as_ref()));
    super::accounts::on_base(opts, &recipe, format, base.as_ref(), plans)?;
    let inputs = build_inputs(
        &recipe,
        compression,
        &targets,
        &download_paths,
        (&url_pins, &packages),
        base.as_ref(),
    );
    Ok(ResolvedBuild {
        opts,
        recipe,
        lock,
        platforms,
        compression,
        format,
        format_source,
        epoch,
        tags,
        user,
        url_pins,
        base,
        targets,
        verified,
        newly_verified,
        layout,
        inputs,
        prehash,
    })
}

/// Every url archive and pinned package, verified into `--out`'s download cache.
fn fetch_all(
    recipe: &Recipe,
    opts: &BuildOptions,
    pin_lists: [&[fetch::UrlPin]; 2],
) -> Result<fetch::Downloads> {
    let mut downloads = fetch::Downloads::new();
    for pins in pin_lists {
        if !pins.is_empty() {
            Layout::check_target(&opts.out, "--out")?;
            downloads.extend(fetch::fetch(recipe, pins, &opts.out, &opts.registry)?);
        }
    }
    Ok(downloads)
}

/// Plans every platform; with a layout base, opens its manifest for each platform,
/// checks it against the lock's platform pin and verifies its layers. Returns the
/// plans and the base layers verified now.
fn plan_platforms(
    recipe: &Recipe,
    platforms: &[Platform],
    layout_base: Option<(&BaseImage, Option<&Lock>, &BuildOptions)>,
    plan_options: &PlanOptions,
    verified: &VerifiedLayers,
) -> Result<(Vec<PlatformPlan>, Vec<VerifiedLayer>)> {
    let mut newly_verified = Vec::new();
    let mut targets = Vec::new();
    for platform in platforms {
        let base_platform = match layout_base {
            Some((b, lock, opts)) => {
                let bp = b.for_platform(platform)?;
                check_platform_pin(
                    &opts.recipe,
                    lock,
                    opts.locked,
                    (&b.name, &b.digest),
                    platform,
                    &bp,
                )?;
                newly_verified.extend(b.verify_layers(&bp, verified)?);
                Some(bp)
            }
            None => None,
        };
        let plan = plan::resolve(recipe, platform, plan_options)?;
        targets.push(PlatformPlan {
            plan,
            base: base_platform,
        });
    }
    Ok((targets, newly_verified))
}

/// A base's digest and where it came from.
type Pin = (Digest, BasePin);

/// The platforms to build (`BuildOptions::platforms`). `--platform all` on a recipe
/// that lists no platforms builds every platform of its base, which is pinned first
/// (and returned); otherwise the base is pinned later, once the url pins (bad input,
/// found without the network) are checked.
fn choose_platforms(
    recipe: &Recipe,
    opts: &BuildOptions,
    lock: Option<&Lock>,
    base: Option<&BaseSource>,
) -> Result<(Vec<Platform>, Option<Pin>)> {
    Ok(match (&opts.platforms, base) {
        (Platforms::Only(p), _) => (p.clone(), None),
        (Platforms::All, Some(b)) if recipe.image.platforms.is_none() => {
            let pin = pin_base(recipe, opts, lock, b)?;
            (base_platforms(opts, b, &pin.0)?, Some(pin))
        }
        (Platforms::Recipe | Platforms::All, _) => (recipe.platforms()?, None),
    })
}

/// `--platform all` on a recipe without platforms: every platform of the base pinned
/// at `digest` (a registry base's root read from `--out` when it holds it, else from
/// the registry).
fn base_platforms(
    opts: &BuildOptions,
    base: &BaseSource,
    digest: &Digest,
) -> Result<Vec<Platform>> {
    match base {
        BaseSource::Layout(l) => base::platforms_of(&l.pinned(digest)?.source, &l.name),
        BaseSource::Registry {
            name, reference, ..
        } => {
            if let Ok(out) = Layout::open(&opts.out) {
                if out.has_blob(digest) {
                    let source =
                        crate::source::LayoutSource::new(name.clone(), out, digest.clone())?;
                    return base::platforms_of(&source, name);
                }
            }
            let pinned = RegistryRef {
                digest: Some(digest.clone()),
                ..reference.clone()
            };
            let source = crate::source::RegistrySource::open(&pinned, &opts.registry)?;
            base::platforms_of(&source, name)
        }
    }
}

/// What provenance and the SBOM record about the inputs read.
fn build_inputs(
    recipe: &Recipe,
    compression: Compression,
    targets: &[PlatformPlan],
    download_paths: &BTreeSet<PathBuf>,
    (url_pins, packages): (&[fetch::UrlPin], &[crate::apt::LockedPackage]),
    base: Option<&BaseImage>,
) -> BuildInputs {
    let mut packages = packages.to_vec();
    packages.sort_by(|a, b| {
        (&a.name, &a.version, &a.architecture).cmp(&(&b.name, &b.version, &b.architecture))
    });
    packages.dedup_by(|a, b| {
        (&a.name, &a.version, &a.architecture) == (&b.name, &b.version, &b.architecture)
    });
    BuildInputs {
        recipe: recipe.source.path.clone(),
        context: recipe.context.clone(),
        lock: Some(lock::path_for(&recipe.source.path)).filter(|p| p.is_file()),
        repository: recipe
            .image
            .repository
            .as_ref()
            .map(|r| r.get_ref().clone()),
        compression: compression.as_str(),
        files: input_files(targets.iter().map(|t| &t.plan))
            .into_iter()
            .filter(|(f, _)| !download_paths.contains(f))
            .collect(),
        urls: url_pins
            .iter()
            .map(|p| (p.url.clone(), p.sha256.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        packages,
        base: base.map(|b| (b.name.clone(), b.digest.clone())),
    }
}

/// `[config] user`: a `[[user]]` of the recipe or a numeric `uid[:gid]`.
fn resolve_user(recipe: &Recipe) -> Result<Option<String>> {
    let Some(u) = &recipe.config.user else {
        return Ok(None);
    };
    plan::resolve_user(recipe, u.get_ref())
        .ok_or_else(|| {
            recipe
                .error_at(
                    u.span(),
                    format!(
                        "user {:?} is neither a [[user]] of this recipe nor uid[:gid]",
                        u.get_ref()
                    ),
                )
                .with_hint("add a [[user]] with that name, or write a numeric \"uid:gid\"")
        })
        .map(Some)
}

/// Reports each empty layer and each plan warning once, however many platforms
/// share it.
fn warn_once(opts: &BuildOptions, targets: &[PlatformPlan]) {
    let mut empty_layers: Vec<String> = Vec::new();
    for layer in targets.iter().flat_map(|t| &t.plan.layers) {
        let note = format!(
            "layer {:?} is empty: it adds nothing to the image",
            layer.name
        );
        if layer.entries.is_empty() && !empty_layers.contains(&note) {
            empty_layers.push(note);
        }
    }
    let mut warned: Vec<&String> = empty_layers.iter().collect();
    for w in &warned {
        opts.events.warn(w.as_str());
    }
    for w in targets.iter().flat_map(|t| &t.plan.warnings) {
        if !warned.contains(&w) {
            opts.events.warn(w.as_str());
            warned.push(w);
        }
    }
}

/// A registry base to pull: its name, reference and pinned digest, and what checks it.
struct PulledBase<'a> {
    pin: (String, RegistryRef, Digest),
    /// Where the digest came from: a lock's pin that the registry lacks is the lock's
    /// disagreement with the registry.
    from: BasePin,
    platforms: &'a [Platform],
    lock: Option<&'a Lock>,
    verified: &'a VerifiedLayers,
}

/// Pulls a registry base into the output layout (a content-addressed store; its blobs
/// are verified while they stream in), then checks each platform's manifest against
/// the lock and its layers against their diff_ids.
fn pull_registry_base(
    opts: &BuildOptions,
    pulled: PulledBase<'_>,
    targets: &mut [PlatformPlan],
    newly_verified: &mut Vec<VerifiedLayer>,
) -> Result<(BaseImage, Layout)> {
    let (name, reference, digest) = pulled.pin;
    let layout = Layout::create(&opts.out)?;
    layout.remove_stale_temps();
    base::pull_base(
        &layout,
        &name,
        &reference,
        &digest,
        pulled.platforms,
        &opts.registry,
    )
    .map_err(|e| match pulled.from {
        BasePin::Lock => lock_disagrees(opts, &name, &reference, &digest, e),
        BasePin::Recipe | BasePin::Tag => e,
    })?;
    let b = BaseImage {
        source: crate::source::LayoutSource::new(name.clone(), layout.clone(), digest.clone())?,
        name,
        digest,
    };
    for target in targets.iter_mut() {
        let bp = b.for_platform(&target.plan.platform)?;
        newly_verified.extend(b.verify_layers(&bp, pulled.verified)?);
        check_platform_pin(
            &opts.recipe,
            pulled.lock,
            opts.locked,
            (&b.name, &b.digest),
            &target.plan.platform,
            &bp,
        )?;
        target.base = Some(bp);
    }
    Ok((b, layout))
}

/// The build's outputs, which a context walk leaves out: `--out` (or the temporary
/// layout), an archive FILE, and every layout used as a shared cache (no input either,
/// wherever it lies).
fn outputs(opts: &BuildOptions) -> Vec<PathBuf> {
    let mut outputs = vec![absolute(opts.context_out.as_ref().unwrap_or(&opts.out))];
    outputs.extend(opts.extra_outputs.iter().map(|p| absolute(p)));
    outputs.extend(opts.shared_cache.layout_dirs().map(|p| absolute(p)));
    outputs
}

/// With a shared cache, the background hashing of context files for the content keys,
/// while the plan is made (the other cores are idle then): when keys are needed
/// (`--cache-to`, or `--cache-from` without `--no-cache`) and `--out`'s own layer
/// cache cannot serve instead (a temporary or fresh layout: a CI machine's). A build
/// into a layout that has a layer cache reads sources only for the layers it misses.
fn start_prehash(opts: &BuildOptions) -> Option<std::sync::Arc<crate::prehash::Prehash>> {
    let needs_keys =
        opts.shared_cache.to.is_some() || (!opts.no_cache && !opts.shared_cache.from.is_empty());
    let local_cache = opts.context_out.is_none()
        && !opts.no_cache
        && opts.out.join(".imgbuild").join("layers").is_dir();
    (needs_keys && (opts.shared_cache.to.is_some() || !local_cache))
        .then(|| crate::prehash::Prehash::start(opts.threads.get()))
}

/// The context files whose bytes the plans read: copy sources and local archives,
/// each once, in path order.
fn input_files<'a>(
    plans: impl Iterator<Item = &'a Plan>,
) -> Vec<(PathBuf, crate::stamp::FileStamp)> {
    // Keyed by the path's bytes: hashing a Path walks its components, slow on a big tree.
    let mut files = std::collections::HashMap::new();
    for entry in plans.flat_map(|p| &p.layers).flat_map(|l| &l.entries) {
        if let plan::EntryKind::File { content, .. } = &entry.kind {
            let (path, stamp) = match content {
                plan::Content::Path { path, stamp, .. } => (path, *stamp),
                plan::Content::Spool { spool, .. } => (&spool.source, spool.source_stamp),
                plan::Content::Inline(_) => continue,
            };
            files
                .entry(path.as_os_str().as_encoded_bytes())
                .or_insert((path, stamp));
        }
    }
    let mut files: Vec<(PathBuf, crate::stamp::FileStamp)> = files
        .into_values()
        .map(|(path, stamp)| (path.clone(), stamp))
        .collect();
    // Path order (component by component): for these paths (absolute, no `.`, `..`
    // or doubled `/`, as the walk joins them) the byte order with each `/` read as the
    // lowest byte, many times faster on a big tree than comparing paths.
    files.sort_by_cached_key(|(path, _)| {
        path.as_os_str()
            .as_encoded_bytes()
            .iter()
            .map(|&b| if b == b'/' { 0 } else { b })
            .collect::<Vec<u8>>()
    });
    files
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// The recipe's `[image] tags`.
fn recipe_tags(recipe: &Recipe) -> Vec<String> {
    recipe
        .image
        .tags
        .iter()
        .map(|t| t.get_ref().clone())
        .collect()
}
