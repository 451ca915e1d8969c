//! One file per subcommand: each turns its parsed flags into library options, calls
//! the library, and shows the result. stdout carries only results (a digest, a
//! report, JSON); progress and warnings reach stderr through [`crate::output`].
//!
//! This file holds what several commands share: flag parsing helpers and writing
//! the result to stdout.

mod build;
mod copy;
mod diff;
mod digest;
mod inspect;
mod lock;
mod push;
mod sign;
mod tags;
mod verify;
pub mod version;

use crate::cli::{Cli, Command, InputArgs, RegistryArgs};
use imgbuild::build::{BuildOptions, Platforms};
use imgbuild::compress::Compression;
use imgbuild::epoch;
use imgbuild::format::FormatVersion;
use imgbuild::platform::Platform;
use imgbuild::reference::{Reference, RegistryRef};
use imgbuild::registry::client;
use imgbuild::{Error, Result};
use std::io::Write;
use std::path::Path;

pub fn run(cli: Cli) -> Result<()> {
    let ctx = Context {
        quiet: cli.quiet,
        registry: cli.registry,
    };
    match cli.command {
        Command::Build(args) => build::run(args, &ctx),
        Command::Push(args) => push::run(args, &ctx),
        Command::Copy(args) => copy::run(args, &ctx),
        Command::Lock(args) => lock::run(args, &ctx),
        Command::Inspect(args) => inspect::run(args, &ctx),
        Command::Verify(args) => verify::run(args, &ctx),
        Command::Diff(args) => diff::run(args, &ctx),
        Command::Sign(args) => sign::run(args, &ctx),
        Command::VerifySignature(args) => sign::verify(args, &ctx),
        Command::Digest(args) => digest::run(args, &ctx),
        Command::Tags(args) => tags::run(args, &ctx),
        Command::Version(args) => version::run(args, &ctx),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            // Generated in memory: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "imgbuild", &mut script);
            write_stdout(&script)
        }
    }
}

/// The global flags every command sees.
struct Context {
    quiet: bool,
    registry: RegistryArgs,
}

impl Context {
    /// Where the library's progress and warnings go.
    fn events(&self) -> imgbuild::events::Events {
        crate::output::events(self.quiet)
    }

    /// How to reach registries: `--registry-ca`, `--insecure-registry`,
    /// `--registry-timeout`, and events.
    fn registry_options(&self) -> client::Options {
        client::Options {
            ca_files: self.registry.registry_ca.clone(),
            insecure: self.registry.insecure_registry.clone(),
            idle_timeout: self
                .registry
                .registry_timeout
                .map_or(client::IDLE_TIMEOUT, std::time::Duration::from_secs),
            events: self.events(),
            ..client::Options::default()
        }
    }

    /// The build options `build` and `verify` share: what decides the image besides
    /// the recipe must be read the same way by both.
    fn build_options(&self, recipe: &Path, out: &Path, inputs: &InputArgs) -> Result<BuildOptions> {
        Ok(BuildOptions {
            recipe: recipe.to_path_buf(),
            out: out.to_path_buf(),
            platforms: platform_flags(&inputs.platform)?,
            tags: None,
            epoch: inputs
                .source_date_epoch
                .as_ref()
                .map(|s| epoch::parse_epoch(s, "--source-date-epoch"))
                .transpose()?,
            env_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            threads: inputs
                .threads
                .or_else(|| std::thread::available_parallelism().ok())
                .unwrap_or(std::num::NonZeroUsize::MIN),
            events: self.events(),
            no_cache: false,
            shared_cache: Default::default(),
            registry: self.registry_options(),
            locked: inputs.locked,
            context_out: None,
            extra_outputs: Vec::new(),
            compression: inputs
                .compression
                .as_deref()
                .map(|c| {
                    Compression::parse(c).ok_or_else(|| {
                        Error::input(format!("--compression {c:?}: unknown compression"))
                            .with_hint("use gzip, zstd or none")
                    })
                })
                .transpose()?,
            format: format_flag(inputs.format_version)?,
            fallback_format: None,
        })
    }
}

/// `--format-version`, checked against the versions this imgbuild builds.
fn format_flag(flag: Option<u64>) -> Result<Option<FormatVersion>> {
    flag.map(|n| {
        FormatVersion::from_number(n).ok_or_else(|| {
            Error::input(format!("--format-version {n}: unknown format version")).with_hint(
                format!(
                    "this imgbuild builds format versions {}",
                    FormatVersion::known()
                ),
            )
        })
    })
    .transpose()
}

/// Whether the flag value `value` came from the environment variable `var` (clap
/// fills a flag from its variable when the command line has none): a variable set for
/// a whole CI job may then be meant for other commands than this one.
fn from_env(var: &str, value: &Path) -> bool {
    std::env::var_os(var).is_some_and(|v| Path::new(&v) == value)
}

/// A registry reference given on the command line (exit 2 when it is not one).
fn registry_ref(text: &str, what: &str) -> Result<RegistryRef> {
    match Reference::parse(text) {
        Ok(Reference::Registry(r)) => Ok(r),
        Ok(Reference::Layout { .. }) => Err(Error::input(format!(
            "{what} {text:?} is a layout reference; expected host[:port]/repository[:tag]"
        ))),
        Ok(Reference::Archive { .. }) => Err(Error::input(format!(
            "{what} {text:?} is an archive reference; expected host[:port]/repository[:tag]"
        ))),
        Err(m) => Err(Error::input(format!("{what}: {m}"))
            .with_hint("write host[:port]/repository[:tag], e.g. 127.0.0.1:5000/acme/hello:1.0")),
    }
}

/// Any image reference given on the command line: a layout or a registry image.
fn image_ref(text: &str, what: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|m| {
        Error::input(format!("{what}: {m}")).with_hint(
            "write oci:DIR, oci:DIR:TAG, oci:DIR@sha256:… or host[:port]/repository[:tag][@sha256:…]",
        )
    })
}

/// Writes a report to stdout, as one line or block ending in a newline.
fn write_report(text: &str) -> Result<()> {
    write_stdout(format!("{}\n", text.trim_end()).as_bytes())
}

/// Writes a command's result to stdout: every write to stdout goes through here. A
/// reader that stopped reading (`imgbuild diff A B | head`, a closed pipe: EPIPE) is
/// not an error: the command's result stands (exit 0 or 1), without a message about
/// the broken pipe. Every other write failure is exit 3.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write to stdout", e))
        }
        _ => Ok(()),
    }
}

/// Writes a line to stderr (what a command says besides its result). A closed stderr
/// is no reason to stop or fail the command, so nothing here can panic or fail.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `--platform` values, parsed, without duplicates: the recipe's platforms when none
/// was given, every platform with `all` (which stands alone: exit 2 beside others).
fn platform_flags(flags: &[String]) -> Result<Platforms> {
    let is_all = |p: &String| p.trim() == "all";
    if flags.iter().any(is_all) {
        if let Some(other) = flags.iter().find(|p| !is_all(p)) {
            return Err(Error::input(format!(
                "--platform all cannot be combined with other platforms (here {:?})",
                other.trim()
            ))
            .with_hint("give --platform all alone, or list the platforms you want: --platform linux/amd64,linux/arm64"));
        }
        return Ok(Platforms::All);
    }
    let mut v = Vec::new();
    for p in flags {
        let p = Platform::parse(p.trim()).map_err(|m| Error::input(format!("--platform: {m}")))?;
        if !v.contains(&p) {
            v.push(p);
        }
    }
    Ok(if v.is_empty() {
        Platforms::Recipe
    } else {
        Platforms::Only(v)
    })
}
