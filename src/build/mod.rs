//! The build pipeline, end to end: recipe → plans → layer blobs → config, manifest,
//! index → layout, in two stages with a value between them.
//!
//! - [`resolve`] (`resolve.rs`) reads every input — recipe, lock, base image, url
//!   archives, the context — and raises every exit-2 error, producing a
//!   [`ResolvedBuild`]. The lock rules it applies live in `lock_policy.rs`.
//! - [`execute`] (`execute.rs`) only writes: the base's blobs, the layers (the
//!   scheduler and the layer cache), then config, manifests and index
//!   (`assemble.rs`), and the tags last.
//!
//! Nothing of the image is written to `--out` before every input error could be
//! raised. Url archives and a registry base are stored in `--out`'s content-addressed
//! store while resolving (verified as they stream in); `resolve.rs` says when.

mod accounts;
mod assemble;
mod execute;
mod lock_policy;
mod packages;
mod resolve;

pub use execute::{execute, write_layers, Caches, LayerSettings};
pub use resolve::{resolve, PlatformPlan, ResolvedBuild, VerifiedLayer};

use crate::digest::Digest;
use crate::epoch::SourceDateEpoch;
use crate::error::Result;
use crate::events::Events;
use crate::format::{FormatSource, FormatVersion};
use crate::image::Descriptor;
use crate::platform::Platform;
use std::num::NonZeroUsize;
use std::path::PathBuf;

/// Which platforms a build builds (`--platform`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Platforms {
    /// The recipe's `[image] platforms` (linux/amd64 when it lists none).
    #[default]
    Recipe,
    /// `--platform LIST`: these, replacing the recipe's.
    Only(Vec<Platform>),
    /// `--platform all`: the recipe's `platforms` when it lists them; else, with a
    /// base image, every platform of the base (its index's, or its one manifest's);
    /// else linux/amd64.
    All,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub recipe: PathBuf,
    pub out: PathBuf,
    /// The platforms to build: the recipe's, a list replacing them, or `all`.
    pub platforms: Platforms,
    /// Overrides the recipe's tags.
    pub tags: Option<Vec<String>>,
    /// `--source-date-epoch` (highest precedence).
    pub epoch: Option<u64>,
    /// `SOURCE_DATE_EPOCH` from the environment (lowest precedence but 0).
    pub env_epoch: Option<String>,
    pub threads: NonZeroUsize,
    /// Where progress and warnings are reported (the registry options carry their own
    /// handle, normally the same one).
    pub events: Events,
    /// Write every layer, ignoring the layer caches (`--out`'s and `--cache-from`;
    /// both are still filled).
    pub no_cache: bool,
    /// `--cache-from` / `--cache-to`: layer caches shared through registries or
    /// layouts, keyed on the layers' content.
    pub shared_cache: crate::cache::shared::SharedCacheOptions,
    /// How to reach registries (base images, url archives).
    pub registry: crate::registry::client::Options,
    /// `--locked`: every floating input must be pinned by a current recipe.lock.
    pub locked: bool,
    /// The directory context walks leave out, when it is not `out` (`verify` writes
    /// to a temporary layout but must see the context as `build --out` would).
    pub context_out: Option<PathBuf>,
    /// Other outputs of this build that context walks leave out too: an archive FILE
    /// (`--out docker-archive:FILE`), whose last version must not feed the next build.
    pub extra_outputs: Vec<PathBuf>,
    /// `--compression`: overrides the recipe's `[image] compression`.
    pub compression: Option<crate::compress::Compression>,
    /// `--format-version` (highest precedence: over the recipe and the lock).
    pub format: Option<FormatVersion>,
    /// The format when neither the flag, the recipe nor the lock names one; None: the
    /// newest (`verify` passes the one the image it verifies was built with).
    pub fallback_format: Option<FormatVersion>,
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
    /// The format version the image was built with, and what chose it.
    pub format: FormatVersion,
    pub format_source: FormatSource,
    /// What provenance and SBOM need to know about the inputs.
    pub inputs: BuildInputs,
    /// Layers taken from a registry cache: digest → (registry, repository), where a
    /// push to the same registry can mount them from.
    pub shared_layers: std::collections::BTreeMap<Digest, (String, String)>,
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
    /// local archives), with its identity on disk when planned, sorted by path and
    /// without duplicates. Url archives are in `urls`.
    pub files: Vec<(PathBuf, crate::stamp::FileStamp)>,
    /// Every url archive, as `(url, sha256 hex)`, sorted and without duplicates (a
    /// url with `{arch}` appears once per distinct expansion).
    pub urls: Vec<(String, String)>,
    /// Every Debian package installed (for any platform built), as recipe.lock pins
    /// it, sorted by name, version and architecture, without duplicates.
    pub packages: Vec<crate::apt::LockedPackage>,
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
    /// Where each recipe layer (`layers[base_layers..]`) came from.
    pub layer_sources: Vec<crate::events::LayerSource>,
}

/// Builds the image `opts` describe: [`resolve`] (all reading, every input error),
/// then [`execute`] (only writing).
pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    execute(resolve(opts)?)
}
