//! One function per subcommand: turns parsed flags into library calls and prints the
//! result. stdout carries only the result; everything else goes to stderr.

use crate::cli::{BuildArgs, Cli, Command};
use imgbuild::build::{self, BuildOptions, BuildResult};
use imgbuild::epoch;
use imgbuild::platform::Platform;
use imgbuild::{Error, Result};
use std::io::Write;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build(args, cli.quiet),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "imgbuild", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn build(args: BuildArgs, quiet: bool) -> Result<()> {
    let platforms = if args.platform.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for p in &args.platform {
            let p = Platform::parse(p).map_err(|m| Error::input(format!("--platform: {m}")))?;
            if !v.contains(&p) {
                v.push(p);
            }
        }
        Some(v)
    };
    let tags = if args.tag.is_empty() {
        None
    } else {
        Some(args.tag.clone())
    };
    let epoch = match &args.source_date_epoch {
        Some(s) => Some(epoch::parse_epoch(s, "--source-date-epoch")?),
        None => None,
    };
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(std::num::NonZeroUsize::MIN);
    let opts = BuildOptions {
        recipe: args.recipe.clone(),
        out: args.out.clone(),
        platforms,
        tags,
        epoch,
        env_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        threads,
        quiet,
        no_cache: args.no_cache,
    };
    let result = build::build(&opts)?;
    let text = if args.json {
        json(&result)
    } else {
        result.digest.to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| Error::io("cannot write to stdout", e))?;
    Ok(())
}

fn json(r: &BuildResult) -> String {
    let manifests: Vec<_> = r
        .manifests
        .iter()
        .map(|m| {
            serde_json::json!({
                "platform": m.platform.to_string(),
                "digest": m.digest,
                "size": m.size,
                "config": m.config,
                "layers": m.layers.iter().zip(&m.diff_ids).map(|(l, d)| serde_json::json!({
                    "mediaType": l.media_type, "digest": l.digest, "size": l.size, "diffId": d,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "digest": r.digest,
        "mediaType": r.media_type,
        "size": r.size,
        "tags": r.tags,
        "sourceDateEpoch": r.epoch.seconds,
        "manifests": manifests,
        "layout": r.layout.display().to_string(),
        "formatVersion": build::FORMAT_VERSION,
    })
    .to_string()
}
