//! One function per subcommand: turns parsed flags into library calls and prints the
//! result. stdout carries only the result; everything else goes to stderr.

use crate::cli::{BuildArgs, Cli, Command, InspectArgs};
use imgbuild::build::{self, BuildOptions, BuildResult};
use imgbuild::epoch;
use imgbuild::platform::Platform;
use imgbuild::reference::Reference;
use imgbuild::{Error, Result};
use std::io::Write;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build(args, cli.quiet),
        Command::Inspect(args) => inspect(args),
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
            let p =
                Platform::parse(p.trim()).map_err(|m| Error::input(format!("--platform: {m}")))?;
            if !v.contains(&p) {
                v.push(p);
            }
        }
        Some(v)
    };
    for t in &args.tag {
        if !imgbuild::recipe::valid_tag(t) {
            return Err(
                Error::input(format!("--tag {t:?} is not a valid tag")).with_hint(
                    "tags are 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'",
                ),
            );
        }
    }
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

fn inspect(args: InspectArgs) -> Result<()> {
    let reference = Reference::parse(&args.reference).map_err(Error::input)?;
    let i = imgbuild::inspect::inspect(&reference)?;
    let text = if args.json {
        serde_json::json!({
            "reference": i.reference,
            "digest": i.digest,
            "mediaType": i.media_type,
            "size": i.size,
            "index": i.index,
            "manifests": i.manifests.iter().map(|m| serde_json::json!({
                "platform": m.platform, "digest": m.digest, "size": m.size,
                "manifest": m.manifest, "config": m.config,
            })).collect::<Vec<_>>(),
        })
        .to_string()
    } else {
        inspect_text(&i)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.trim_end()).map_err(|e| Error::io("cannot write to stdout", e))
}

fn inspect_text(i: &imgbuild::inspect::Inspected) -> String {
    use serde_json::Value;
    let mut s = format!(
        "{}
  digest      {}
  media type  {} ({} bytes)
",
        i.reference, i.digest, i.media_type, i.size
    );
    for m in &i.manifests {
        let c = &m.config;
        let cc = &c["config"];
        s.push_str(&format!(
            "
{}  manifest {} ({} bytes)
",
            m.platform.as_deref().unwrap_or("(no platform)"),
            m.digest,
            m.size
        ));
        let field = |s: &mut String, name: &str, v: &Value| {
            if !v.is_null() {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                s.push_str(&format!(
                    "  {name:<11} {text}
"
                ));
            }
        };
        field(&mut s, "created", &c["created"]);
        field(&mut s, "config", &m.manifest["config"]["digest"]);
        for (name, key) in [
            ("user", "User"),
            ("entrypoint", "Entrypoint"),
            ("cmd", "Cmd"),
            ("workdir", "WorkingDir"),
            ("env", "Env"),
            ("ports", "ExposedPorts"),
            ("volumes", "Volumes"),
            ("labels", "Labels"),
            ("stop signal", "StopSignal"),
        ] {
            field(&mut s, name, &cc[key]);
        }
        if let Some(a) = m.manifest.get("annotations") {
            field(&mut s, "annotations", a);
        }
        s.push_str(
            "  layers
",
        );
        let layers = m.manifest["layers"].as_array().cloned().unwrap_or_default();
        let diff_ids = c["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let history: Vec<&Value> = c["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter(|e| e["empty_layer"] != Value::Bool(true))
                    .collect()
            })
            .unwrap_or_default();
        for (n, l) in layers.iter().enumerate() {
            let kind = l["mediaType"]
                .as_str()
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("?");
            s.push_str(&format!(
                "    {}  {:>10} bytes  {kind:<8}  diff_id {}  {}\n",
                l["digest"].as_str().unwrap_or("?"),
                l["size"],
                diff_ids.get(n).and_then(Value::as_str).unwrap_or("?"),
                history
                    .get(n)
                    .and_then(|h| h["created_by"].as_str())
                    .unwrap_or("")
            ));
        }
    }
    s
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
