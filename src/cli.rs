//! The command line: flags as typed (clap), turned into the options each command
//! needs. Every flag has an `IMGBUILD_*` environment variable, so CI can configure a
//! build without editing files.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "imgbuild",
    version = CLAP_VERSION.as_str(),
    about = "Reproducible OCI image builder: same recipe, same bytes, same digest",
    long_about = "imgbuild compiles a declarative recipe (recipe.toml) into an OCI image whose bytes depend only on the recipe and the files it names.\n\nExit codes: 0 success; 1 verify/diff found a difference; 2 bad usage, recipe or input (nothing written); 3 I/O, network or registry failure."
)]
pub struct Cli {
    /// Print nothing on stderr but errors.
    #[arg(short, long, global = true, env = "IMGBUILD_QUIET")]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach registries; shared by every command that talks to one.
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Trust the CA certificates in this PEM file too (besides the system roots); repeatable.
    #[arg(
        long,
        global = true,
        env = "IMGBUILD_REGISTRY_CA",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub registry_ca: Vec<PathBuf>,
    /// Allow plain HTTP to this registry host[:port] (loopback hosts always may); repeatable.
    #[arg(
        long,
        global = true,
        env = "IMGBUILD_INSECURE_REGISTRY",
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
    /// Give up on a registry or download request after this many seconds without a byte (then retry).
    #[arg(
        long,
        global = true,
        env = "IMGBUILD_REGISTRY_TIMEOUT",
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub registry_timeout: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the recipe into an OCI image layout; print the image digest on stdout.
    Build(BuildArgs),
    /// Pin the base tag, url archives, Debian packages and "git" epoch in recipe.lock.
    Lock(LockArgs),
    /// Copy an image from an OCI layout to a registry; print its digest on stdout.
    Push(PushArgs),
    /// Copy an image between registries, layouts and archives; print its digest.
    Copy(CopyArgs),
    /// Show an image's manifests, configs and layers (registry, layout or archive).
    Inspect(InspectArgs),
    /// Rebuild the recipe and compare it, bit for bit, with a published image.
    Verify(VerifyArgs),
    /// Explain how two images differ, down to their tar entries.
    Diff(DiffArgs),
    /// Sign an image in a registry with a key, in cosign's format.
    Sign(SignArgs),
    /// Check an image's cosign signature by a key (exit 1 without a valid one).
    VerifySignature(VerifySignatureArgs),
    /// Print the digest of an image (registry, layout or archive).
    Digest(DigestArgs),
    /// List the tags of a registry repository or of an OCI layout (oci:DIR).
    Tags(TagsArgs),
    /// Print imgbuild's version and the format versions it writes and rebuilds.
    Version(VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image: host[:port]/repository[:tag][@sha256:…] (or docker://…).
    pub reference: String,
    /// The private key: Ed25519 or ECDSA P-256 PEM (PKCS#8 or SEC1), or a cosign key (passphrase in COSIGN_PASSWORD).
    #[arg(long, env = "IMGBUILD_SIGN_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Print one JSON object (reference, digest, signatures) instead of the digest.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifySignatureArgs {
    /// The image: host[:port]/repository[:tag][@sha256:…] (or docker://…).
    pub reference: String,
    /// The public key (PEM `PUBLIC KEY`: Ed25519 or ECDSA P-256), e.g. cosign.pub.
    #[arg(long, env = "IMGBUILD_VERIFY_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Print one JSON object (digest, each signature and its problem) instead of text.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// host[:port]/repository[:tag][@sha256:…] (or docker://…), or oci:DIR[:TAG|@sha256:…].
    pub reference: String,
    /// Print one JSON object (reference, digest) instead of the digest.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// host[:port]/repository (or docker://…), or oci:DIR; without a tag or digest.
    pub repository: String,
    /// Ask the registry for N tags per request (default: as many as it gives), following its pages.
    #[arg(long, env = "IMGBUILD_PAGE_SIZE", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
    /// Print one JSON object (repository, tags) instead of one tag per line.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print one JSON object (version, newestFormatVersion, formatVersions).
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image: oci:DIR[:TAG|@sha256:…], or a registry reference host[:port]/repository[:tag][@sha256:…].
    pub reference: String,
    /// Print one JSON object holding the raw index, manifests and configs.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The recipe; the lock is written next to it (recipe.toml → recipe.lock).
    #[arg(default_value = "recipe.toml", env = "IMGBUILD_RECIPE")]
    pub recipe: PathBuf,
    /// The format version to pin (default: the recipe's, else the existing lock's, else the newest).
    #[arg(long, env = "IMGBUILD_FORMAT_VERSION", value_name = "N")]
    pub format_version: Option<u64>,
    /// Write nothing: exit 1, printing what differs, when recipe.lock is missing or not what `imgbuild lock` would write (for CI).
    #[arg(long, env = "IMGBUILD_LOCK_CHECK")]
    pub check: bool,
    /// Print one JSON object: what was pinned (or, with --check, whether the lock is current and what differs).
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push: oci:DIR, oci:DIR:TAG or oci:DIR@sha256:….
    pub source: String,
    /// Where to: host[:port]/repository[:tag]. Without a tag: the source's TAG, else `latest`.
    pub destination: String,
    /// Print one JSON object describing the push instead of the digest.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The image: host/repo[:tag][@digest], oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:REF].
    pub source: String,
    /// Where to: a registry reference, oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:REPO:TAG].
    pub destination: String,
    /// Print one JSON object describing the copy instead of the digest.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The recipe; relative `src` paths resolve against its directory.
    #[arg(default_value = "recipe.toml", env = "IMGBUILD_RECIPE")]
    pub recipe: PathBuf,
    /// Where to write: an OCI image layout DIR (or oci:DIR; created if missing, existing
    /// blobs kept), oci-archive:FILE (a tarred layout) or docker-archive:FILE (for docker load).
    #[arg(long, default_value = "out", env = "IMGBUILD_OUT", value_name = "DIR")]
    pub out: PathBuf,
    /// Also hand the image to the Docker daemon (`docker load`), with every tag.
    #[arg(long, env = "IMGBUILD_LOAD")]
    pub load: bool,
    /// With --push: keep no layout, the registry is the only copy. A layer a
    /// --cache-from repository of the push registry holds is mounted there, never
    /// downloaded.
    #[arg(
        long,
        env = "IMGBUILD_NO_OUT",
        requires = "push",
        conflicts_with = "out"
    )]
    pub no_out: bool,
    /// Print one JSON object describing the image instead of the digest.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
    /// Tags to give the image, replacing the recipe's; repeat or comma-separate.
    #[arg(long, value_delimiter = ',', env = "IMGBUILD_TAG", value_name = "TAG")]
    pub tag: Vec<String>,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Also push the image, with every tag, to [image].repository, or to REF (`--push=REF`).
    #[arg(
        long,
        env = "IMGBUILD_PUSH",
        value_name = "REF",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub push: Option<String>,
    /// Write every layer even when the layer cache in --out says it is unchanged.
    #[arg(long, env = "IMGBUILD_NO_CACHE")]
    pub no_cache: bool,
    /// Read layers from this shared cache (a registry repository, or oci:DIR) when their content key is there; repeat or comma-separate, first hit wins.
    #[arg(
        long,
        value_delimiter = ',',
        env = "IMGBUILD_CACHE_FROM",
        value_name = "REF"
    )]
    pub cache_from: Vec<String>,
    /// Store every layer of the build in this shared cache (a registry repository, or oci:DIR).
    #[arg(long, env = "IMGBUILD_CACHE_TO", value_name = "REF")]
    pub cache_to: Option<String>,
    /// Write an in-toto SLSA v1 provenance statement for the image to FILE (with --push: attach it too).
    #[arg(long, env = "IMGBUILD_PROVENANCE", value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Write an SPDX 2.3 JSON SBOM of every file of every layer to FILE (with --push: attach it too).
    #[arg(long, env = "IMGBUILD_SBOM", value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// With --push: sign the pushed image, and attach --provenance/--sbom as signed attestations, in cosign's format.
    #[arg(long, env = "IMGBUILD_SIGN_KEY", value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
}

/// What decides the image besides the recipe: shared by `build` and `verify`, which
/// must rebuild the same way.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Platforms to build (os/arch[/variant]), replacing the recipe's; repeat or comma-separate. `all`: the recipe's, or (when it lists none) every platform of its base.
    #[arg(
        long,
        value_delimiter = ',',
        env = "IMGBUILD_PLATFORM",
        value_name = "PLATFORM"
    )]
    pub platform: Vec<String>,
    /// Seconds since 1970 for every timestamp; overrides the recipe and SOURCE_DATE_EPOCH.
    #[arg(long, env = "IMGBUILD_SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<String>,
    /// Worker threads (default: the number of CPUs). Never changes the output.
    #[arg(long, env = "IMGBUILD_THREADS", value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Fail (exit 2) unless recipe.lock pins every floating input and is current.
    #[arg(long, env = "IMGBUILD_LOCKED")]
    pub locked: bool,
    /// Layer compression, replacing the recipe's [image] compression.
    #[arg(
        long,
        env = "IMGBUILD_COMPRESSION",
        value_name = "KIND",
        value_parser = ["gzip", "zstd", "none"]
    )]
    pub compression: Option<String>,
    /// The format version to build (default: the recipe's, else recipe.lock's, else the newest).
    #[arg(long, env = "IMGBUILD_FORMAT_VERSION", value_name = "N")]
    pub format_version: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first image: oci:DIR[:TAG|@sha256:…] or a registry reference.
    pub a: String,
    /// The second image, in the same forms.
    pub b: String,
    /// Print one JSON object (schema in docs/auditing.md) instead of text.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
    /// Accept differences in entries whose path matches GLOB (e.g. '/var/log/**'); repeatable.
    #[arg(long, value_name = "GLOB", env = "IMGBUILD_IGNORE")]
    pub ignore: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The recipe to rebuild.
    #[arg(default_value = "recipe.toml", env = "IMGBUILD_RECIPE")]
    pub recipe: PathBuf,
    /// The published image: a registry reference (tag or digest) or oci:DIR[:TAG|@sha256:…].
    #[arg(long, value_name = "REF", env = "IMGBUILD_AGAINST")]
    pub against: String,
    /// The --out the image was built with: left out of the context, as build does. Never written.
    #[arg(long, default_value = "out", env = "IMGBUILD_OUT", value_name = "DIR")]
    pub out: PathBuf,
    /// Print the diff's JSON object (schema in docs/auditing.md) instead of text.
    #[arg(long, env = "IMGBUILD_JSON")]
    pub json: bool,
    /// Before rebuilding, require a valid cosign signature of REF by this public key (exit 1 without one).
    #[arg(long, env = "IMGBUILD_VERIFY_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: InputArgs,
}

/// What `--version` prints after `imgbuild ` (clap adds the name): the same lines as
/// `imgbuild version`, which are made here so that `cli` imports no command.
static CLAP_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let list: Vec<String> = imgbuild::format::FormatVersion::ALL
        .iter()
        .map(|v| v.number().to_string())
        .collect();
    format!(
        "{}\nwrites format version {} (the newest)\nrebuilds format versions {}",
        imgbuild::VERSION,
        imgbuild::format::FormatVersion::NEWEST,
        list.join(", ")
    )
});
