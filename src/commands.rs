//! One function per subcommand: turns parsed flags into library calls and prints the
//! result. stdout carries only the result; everything else goes to stderr.

use crate::cli::{BuildArgs, Cli, Command, InspectArgs, LockArgs, PushArgs, RegistryArgs};
use imgbuild::build::{self, BuildOptions, BuildResult};
use imgbuild::epoch;
use imgbuild::platform::Platform;
use imgbuild::reference::{Reference, RegistryRef};
use imgbuild::registry::client::{self, RegistryClient};
use imgbuild::registry::push;
use imgbuild::registry::referrers;
use imgbuild::{Error, Result};
use std::io::Write;

mod audit;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build(args, cli.quiet, &cli.registry),
        Command::Push(args) => push(args, cli.quiet, &cli.registry),
        Command::Lock(args) => lock(args, cli.quiet, &cli.registry),
        Command::Inspect(args) => inspect(args, cli.quiet, &cli.registry),
        Command::Verify(args) => audit::verify(args, cli.quiet, &cli.registry),
        Command::Diff(args) => audit::diff(args, cli.quiet, &cli.registry),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "imgbuild", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn registry_options(args: &RegistryArgs, quiet: bool) -> client::Options {
    client::Options {
        ca_files: args.registry_ca.clone(),
        insecure: args.insecure_registry.clone(),
        idle_timeout: args
            .registry_timeout
            .map_or(client::IDLE_TIMEOUT, std::time::Duration::from_secs),
        verbose: !quiet,
        ..client::Options::default()
    }
}

/// A registry reference given on the command line (exit 2 when it is not one).
fn registry_ref(text: &str, what: &str) -> Result<RegistryRef> {
    match Reference::parse(text) {
        Ok(Reference::Registry(r)) => Ok(r),
        Ok(Reference::Layout { .. }) => Err(Error::input(format!(
            "{what} {text:?} is a layout reference; expected host[:port]/repository[:tag]"
        ))),
        Err(m) => Err(Error::input(format!("{what}: {m}"))
            .with_hint("write host[:port]/repository[:tag], e.g. 127.0.0.1:5000/acme/hello:1.0")),
    }
}

/// Where `build --push` goes: `--push=REF`, else the recipe's `[image].repository`.
fn push_target(args: &BuildArgs) -> Result<Option<RegistryRef>> {
    let Some(push) = &args.push else {
        return Ok(None);
    };
    if !push.is_empty() {
        let mut r = registry_ref(push, "--push")?;
        if !imgbuild::reference::has_explicit_tag(push) {
            r.tag = None;
        }
        if r.digest.is_some() {
            return Err(Error::input(format!(
                "--push={push}: a push target cannot name a digest (the build decides it)"
            )));
        }
        return Ok(Some(r));
    }
    let recipe = imgbuild::recipe::Recipe::load(&args.recipe)?;
    if recipe.image.repository.is_none() {
        let message = "--push: the recipe names no [image].repository to push to";
        let hint = "add repository = \"host/path\" under [image], or give --push=host/path[:tag]";
        // Point at the [image] table when there is one; else name the recipe file.
        let text = &recipe.source.text;
        let table = text
            .split_inclusive('\n')
            .scan(0, |offset, line| {
                let start = *offset;
                *offset += line.len();
                Some((start, line))
            })
            .find(|(_, line)| line.trim() == "[image]")
            .map(|(start, line)| start..start + line.trim_end().len());
        return Err(match table {
            Some(span) => recipe.error_at(span, message),
            None => Error::input(format!("{}: {message}", recipe.source.path.display())),
        }
        .with_hint(hint));
    }
    // Recipe::load validated it (the same checks, at the value's line:col).
    recipe.repository()
}

/// Writes a report to stdout. A reader that stopped reading (`imgbuild diff A B | head`)
/// is not an error: the command's result stands (exit 0 or 1), without a message about
/// the broken pipe. Every other write failure is exit 3.
fn write_report(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write to stdout", e))
        }
        _ => Ok(()),
    }
}

/// `--platform` values, parsed, without duplicates; None when none was given.
fn platform_flags(flags: &[String]) -> Result<Option<Vec<Platform>>> {
    let mut v = Vec::new();
    for p in flags {
        let p = Platform::parse(p.trim()).map_err(|m| Error::input(format!("--platform: {m}")))?;
        if !v.contains(&p) {
            v.push(p);
        }
    }
    Ok((!v.is_empty()).then_some(v))
}

/// `--source-date-epoch`, parsed.
fn epoch_flag(flag: Option<&String>) -> Result<Option<u64>> {
    flag.map(|s| epoch::parse_epoch(s, "--source-date-epoch"))
        .transpose()
}

/// `--threads`, else every core the system gives us.
fn threads_flag(flag: Option<std::num::NonZeroUsize>) -> std::num::NonZeroUsize {
    flag.or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(std::num::NonZeroUsize::MIN)
}

fn build(args: BuildArgs, quiet: bool, registry: &RegistryArgs) -> Result<()> {
    let platforms = platform_flags(&args.inputs.platform)?;
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
    let epoch = epoch_flag(args.inputs.source_date_epoch.as_ref())?;
    let threads = threads_flag(args.inputs.threads);
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
        registry: registry_options(registry, quiet),
        locked: args.inputs.locked,
        context_out: None,
    };
    if let Some(p) = &args.provenance {
        imgbuild::provenance::check_output_path(p, "--provenance")?;
    }
    if let Some(p) = &args.sbom {
        imgbuild::provenance::check_output_path(p, "--sbom")?;
        if let Some(q) = &args.provenance {
            if imgbuild::provenance::same_output(q, p) {
                return Err(Error::input(format!(
                    "--provenance {} and --sbom {} name the same file",
                    q.display(),
                    p.display()
                ))
                .with_hint("give each document its own file"));
            }
        }
    }
    let params = imgbuild::provenance::Parameters {
        platforms: opts
            .platforms
            .as_ref()
            .map(|v| v.iter().map(|p| p.to_string()).collect()),
        tags: opts.tags.clone(),
        locked: opts.locked,
    };
    // Check the push target and reach the registry (credentials, TLS) before
    // building, so that a CI step fails in seconds rather than after the build.
    let target = push_target(&args)?;
    let reg_opts = registry_options(registry, quiet);
    let connection = match &target {
        Some(t) => {
            let rt = client::runtime()?;
            let c = rt.block_on(async {
                let c = RegistryClient::connect(&t.registry, &t.repository, &reg_opts).await?;
                c.authorize(&t.repository, true).await?;
                Ok::<_, Error>(c)
            })?;
            Some((rt, c))
        }
        None => None,
    };
    let result = build::build(&opts)?;
    // The documents name the image where it goes: the push target's repository, else
    // the recipe's [image].repository, else "image".
    let pushed_to = target
        .as_ref()
        .map(|t| format!("{}/{}", t.registry, t.repository));
    let documents = write_documents(&args, &result, &params, pushed_to.as_deref())?;
    if !quiet {
        for (kind, path, _) in &documents {
            eprintln!("wrote {} to {}", kind.json_key(), path.display());
        }
    }
    let mut pushed = None;
    let mut attached = Vec::new();
    if let (Some(t), Some((rt, c))) = (&target, &connection) {
        let mut tags = result.tags.clone();
        if let Some(tag) = &t.tag {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let layout = imgbuild::layout::Layout::open(&result.layout)?;
        let root =
            imgbuild::image::Descriptor::new(result.media_type, result.digest.clone(), result.size);
        pushed = Some(rt.block_on(push::push(c, &layout, &root, &t.repository, &tags, !quiet))?);
        let artifacts: Vec<referrers::Artifact> = documents
            .iter()
            .map(|(kind, _, bytes)| referrers::Artifact {
                artifact_type: kind.media_type(),
                title: kind.title(),
                bytes,
            })
            .collect();
        if !artifacts.is_empty() {
            attached = rt.block_on(referrers::attach(
                c,
                &layout,
                &t.repository,
                &root,
                &artifacts,
                !quiet,
            ))?;
        }
    }
    let text = if args.json {
        let mut v = json(&result, pushed.as_ref());
        for (kind, path, _) in &documents {
            v[kind.json_key()] = serde_json::json!(path.display().to_string());
        }
        if target.is_some() {
            v["attached"] = serde_json::json!(attached);
        }
        v.to_string()
    } else {
        result.digest.to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| Error::io("cannot write to stdout", e))?;
    Ok(())
}

fn inspect(args: InspectArgs, quiet: bool, registry: &RegistryArgs) -> Result<()> {
    let reference = Reference::parse(&args.reference).map_err(Error::input)?;
    let i = imgbuild::inspect::inspect(&reference, &registry_options(registry, quiet))?;
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
    write_report(&text)
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

fn lock(args: LockArgs, quiet: bool, registry: &RegistryArgs) -> Result<()> {
    let (path, lock) = imgbuild::lock::lock(&args.recipe, &registry_options(registry, quiet))?;
    if !quiet {
        let mut pinned = Vec::new();
        if let Some(b) = &lock.base {
            pinned.push(format!("base {} → {}", b.image, b.digest));
        }
        if !lock.url.is_empty() {
            pinned.push(format!("{} url archive(s)", lock.url.len()));
        }
        if let Some(e) = &lock.source_date_epoch {
            pinned.push(format!("source-date-epoch {}", e.git));
        }
        if pinned.is_empty() {
            pinned.push("nothing floating".to_string());
        }
        eprintln!("wrote {} ({})", path.display(), pinned.join("; "));
    }
    Ok(())
}

fn push(args: PushArgs, quiet: bool, registry: &RegistryArgs) -> Result<()> {
    let source =
        Reference::parse(&args.source).map_err(|m| Error::input(format!("source: {m}")))?;
    let Reference::Layout {
        tag: source_tag, ..
    } = &source
    else {
        return Err(Error::input(format!(
            "source {:?} is a registry reference; imgbuild push copies from an OCI layout (oci:DIR[:TAG])",
            args.source
        )));
    };
    let mut dest = registry_ref(&args.destination, "destination")?;
    if !imgbuild::reference::has_explicit_tag(&args.destination) {
        dest.tag = None;
    }
    let (layout, digest) = imgbuild::inspect::resolve_layout_image(&source)?;
    let bytes = layout.read_blob(&digest)?;
    let media_type = media_type_of(&bytes).ok_or_else(|| {
        Error::input(format!(
            "{}: blob {digest} is neither a manifest nor an index",
            args.source
        ))
    })?;
    let root = imgbuild::image::Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
    let tags: Vec<String> = match (&dest.digest, &dest.tag, source_tag) {
        (Some(d), _, _) if *d != digest => {
            return Err(Error::input(format!(
                "destination names {d}, but the source image is {digest}"
            )))
        }
        (Some(_), _, _) => Vec::new(),
        (None, Some(t), _) => vec![t.clone()],
        (None, None, Some(t)) => vec![t.clone()],
        (None, None, None) => vec![imgbuild::reference::DEFAULT_TAG.to_string()],
    };
    let reg_opts = registry_options(registry, quiet);
    let rt = client::runtime()?;
    let report = rt.block_on(async {
        let c = RegistryClient::connect(&dest.registry, &dest.repository, &reg_opts).await?;
        push::push(&c, &layout, &root, &dest.repository, &tags, !quiet).await
    })?;
    let text = if args.json {
        serde_json::to_string(&report).map_err(|e| Error::input(e.to_string()))?
    } else {
        digest.to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| Error::io("cannot write to stdout", e))
}

/// The media type a manifest or index names itself with (or its shape implies).
fn media_type_of(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    imgbuild::image::media_type_of(&v)
}

/// A document `build` writes next to the image.
#[derive(Clone, Copy)]
enum Document {
    Provenance,
    Sbom,
}

impl Document {
    fn media_type(self) -> &'static str {
        match self {
            Document::Provenance => imgbuild::provenance::INTOTO_MEDIA_TYPE,
            Document::Sbom => imgbuild::sbom::SPDX_MEDIA_TYPE,
        }
    }
    fn title(self) -> &'static str {
        match self {
            Document::Provenance => "provenance.intoto.json",
            Document::Sbom => "sbom.spdx.json",
        }
    }
    fn json_key(self) -> &'static str {
        match self {
            Document::Provenance => "provenance",
            Document::Sbom => "sbom",
        }
    }
}

/// `--provenance` and `--sbom`: made from the finished build and written atomically.
fn write_documents(
    args: &BuildArgs,
    result: &BuildResult,
    params: &imgbuild::provenance::Parameters,
    pushed_to: Option<&str>,
) -> Result<Vec<(Document, std::path::PathBuf, Vec<u8>)>> {
    let name = pushed_to
        .or(result.inputs.repository.as_deref())
        .unwrap_or("image");
    let mut docs = Vec::new();
    if let Some(path) = &args.provenance {
        let bytes = imgbuild::provenance::statement(result, name, params)?;
        docs.push((Document::Provenance, path.clone(), bytes));
    }
    if let Some(path) = &args.sbom {
        let layout = imgbuild::layout::Layout::open(&result.layout)?;
        let bytes = imgbuild::sbom::sbom(&layout, result, name, &result.epoch.rfc3339())?;
        docs.push((Document::Sbom, path.clone(), bytes));
    }
    for (_, path, bytes) in &docs {
        imgbuild::provenance::write_atomic(path, bytes)?;
    }
    Ok(docs)
}

fn json(r: &BuildResult, pushed: Option<&push::PushReport>) -> serde_json::Value {
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
        "pushed": pushed,
    })
}
