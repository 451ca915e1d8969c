//! `imgbuild build`: build the recipe into a layout; with `--push`, publish it; with
//! `--provenance`/`--sbom`, write (and attach) the documents about it.

mod archive;

use super::{note, registry_ref, write_report, Context};
use crate::cli::BuildArgs;
use imgbuild::build::{self, BuildResult, Platforms};
use imgbuild::cache::shared::{CacheRef, MountInto, SharedCacheOptions};
use imgbuild::format::FormatSource;
use imgbuild::image::Descriptor;
use imgbuild::layout::Layout;
use imgbuild::publish::{Published, Publisher};
use imgbuild::reference::RegistryRef;
use imgbuild::registry::referrers::Artifact;
use imgbuild::{provenance, sbom, Error, Result};
use std::path::PathBuf;
use std::sync::Arc;

pub(super) fn run(args: BuildArgs, ctx: &Context) -> Result<()> {
    push_with_a_space(&args)?;
    for t in &args.tag {
        if !imgbuild::recipe::valid_tag(t) {
            return Err(
                Error::input(format!("--tag {t:?} is not a valid tag")).with_hint(
                    "tags are 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'",
                ),
            );
        }
    }
    let sink = if args.no_out {
        archive::Sink::nowhere()?
    } else {
        archive::Sink::plan(&args.out)?
    };
    let mut opts = ctx.build_options(&args.recipe, sink.layout_dir(), &args.inputs)?;
    sink.leave_out_of_context(&mut opts);
    opts.tags = (!args.tag.is_empty()).then(|| args.tag.clone());
    opts.no_cache = args.no_cache;
    opts.shared_cache = shared_cache(&args)?;
    check_document_paths(&args)?;
    let params = provenance::Parameters {
        platforms: match &opts.platforms {
            Platforms::Recipe => None,
            Platforms::Only(v) => Some(v.iter().map(|p| p.to_string()).collect()),
            Platforms::All => Some(vec!["all".to_string()]),
        },
        tags: opts.tags.clone(),
        compression: opts.compression.map(|c| c.as_str().to_string()),
        locked: opts.locked,
    };
    // Check the push target and reach the registry (credentials, TLS) before
    // building, so that a CI step fails in seconds rather than after the build.
    let target = push_target(&args)?;
    // The signing key too: a bad key or passphrase is exit 2 before anything is built.
    let sign_key = match (&args.sign_key, &target) {
        (Some(path), Some(_)) => Some(super::sign::signing_key(path)?),
        // IMGBUILD_SIGN_KEY set for a CI job signs its pushes; its other builds,
        // which push nothing, go on unsigned.
        (Some(path), None) if super::from_env("IMGBUILD_SIGN_KEY", path) => None,
        (Some(_), None) => {
            return Err(Error::input("--sign-key signs what --push pushes, and there is no --push")
                .with_hint("add --push (or --push=REF), or sign an image already pushed with `imgbuild sign REF --key FILE`"))
        }
        (None, _) => None,
    };
    let publisher = match &target {
        Some(t) => Some(Arc::new(Publisher::connect(t, &ctx.registry_options())?)),
        None => None,
    };
    if let (Some(p), Some(t)) = (&publisher, &target) {
        if mounts_cached_layers(&args, &opts.shared_cache, t) {
            opts.shared_cache.mount_into = Some(MountInto(p.clone()));
        }
    }
    // Everything read and checked (exit 2) before anything is written: a docker
    // archive or `docker load` takes one platform, known once the recipe is resolved.
    let resolved = build::resolve(&opts)?;
    sink.check_platforms(&resolved.platforms, args.load)?;
    let result = build::execute(resolved)?;
    if !ctx.quiet && result.format_source == FormatSource::Newest {
        note(&format!(
            "note: built with format {} (the newest): neither the recipe nor a recipe.lock names a format version. Run `imgbuild lock` to pin it, so that later releases rebuild these bytes",
            result.format
        ));
    }
    // The documents name the image where it goes: the push target's repository, else
    // the recipe's [image].repository, else "image".
    let pushed_to = publisher.as_ref().map(|p| p.target());
    let documents = write_documents(&args, &result, &params, pushed_to.as_deref())?;
    if !ctx.quiet {
        for (kind, path, _) in &documents {
            note(&format!("wrote {} to {}", kind.json_key(), path.display()));
        }
    }
    let mut published = None;
    if let (Some(t), Some(publisher)) = (&target, &publisher) {
        publisher.mount_from(&result.shared_layers);
        let mut tags = result.tags.clone();
        if let Some(tag) = &t.tag {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let layout = Layout::open(&result.layout)?;
        let root = Descriptor::new(result.media_type, result.digest.clone(), result.size);
        let artifacts: Vec<Artifact> = documents
            .iter()
            .map(|(kind, _, bytes)| Artifact {
                artifact_type: kind.media_type(),
                title: kind.title(),
                bytes,
            })
            .collect();
        let mut done = publisher.publish(&layout, &root, &tags, &artifacts)?;
        if let Some(key) = &sign_key {
            let statements = statements(&documents, &publisher.target(), &result)?;
            done.signed = publisher.sign(&root, key, &statements)?;
        }
        published = Some(done);
    }
    sink.finish(&result, ctx)?;
    if args.load {
        archive::load(&result, ctx)?;
    }
    let text = if args.json {
        let mut v = json(&result, published.as_ref());
        sink.describe(&mut v);
        for (kind, path, _) in &documents {
            v[kind.json_key()] = serde_json::json!(path.display().to_string());
        }
        v.to_string()
    } else {
        result.digest.to_string()
    };
    write_report(&text)
}

/// The documents as in-toto statements, to attach as signed attestations: the
/// provenance is one already; the SBOM is wrapped in one naming the image.
fn statements(
    documents: &[(Document, PathBuf, Vec<u8>)],
    name: &str,
    result: &BuildResult,
) -> Result<Vec<imgbuild::sign::Statement>> {
    documents
        .iter()
        .map(|(kind, _, bytes)| match kind {
            Document::Provenance => Ok(imgbuild::sign::Statement {
                predicate_type: provenance::PREDICATE_TYPE.to_string(),
                bytes: bytes.clone(),
            }),
            Document::Sbom => imgbuild::sign::spdx_statement(name, &result.digest, bytes),
        })
        .collect()
}

/// `--cache-from` and `--cache-to`, parsed (a malformed REF is exit 2, before the
/// build; an unreachable cache is only a warning, during it). An empty value is no
/// cache, so that CI can switch one off by its variable.
fn shared_cache(args: &BuildArgs) -> Result<SharedCacheOptions> {
    Ok(SharedCacheOptions {
        from: args
            .cache_from
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| CacheRef::parse(r, "--cache-from"))
            .collect::<Result<_>>()?,
        to: args
            .cache_to
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| CacheRef::parse(r, "--cache-to"))
            .transpose()?,
        mount_into: None,
    })
}

/// `--no-out`: the image is kept nowhere but in the registry, so cached layers are
/// mounted there, not fetched — unless the SBOM or `docker load` needs their bytes
/// here, or a `--cache-to` elsewhere than the push registry, which cannot mount them,
/// must copy them.
fn mounts_cached_layers(
    args: &BuildArgs,
    cache: &SharedCacheOptions,
    target: &RegistryRef,
) -> bool {
    let store_mounts = match &cache.to {
        None => true,
        Some(CacheRef::Registry { registry, .. }) => *registry == target.registry,
        Some(CacheRef::Layout(_)) => false,
    };
    args.no_out && !args.load && args.sbom.is_none() && store_mounts
}

/// `--provenance` and `--sbom` must name writable files, and not the same one: checked
/// before the build.
fn check_document_paths(args: &BuildArgs) -> Result<()> {
    if let Some(p) = &args.provenance {
        provenance::check_output_path(p, "--provenance")?;
    }
    if let Some(p) = &args.sbom {
        provenance::check_output_path(p, "--sbom")?;
        if let Some(q) = &args.provenance {
            if provenance::same_output(q, p) {
                return Err(Error::input(format!(
                    "--provenance {} and --sbom {} name the same file",
                    q.display(),
                    p.display()
                ))
                .with_hint("give each document its own file"));
            }
        }
    }
    Ok(())
}

/// `build --push REF` (a space, not `=`): clap reads REF as the recipe's path. When
/// that path does not exist, say what happened and how to write it.
fn push_with_a_space(args: &BuildArgs) -> Result<()> {
    let written = args.recipe.to_string_lossy();
    // A recipe path that merely does not exist (`app/recipe.toml`) is not this.
    let looks_like_a_target =
        (written.contains('/') || written.contains(':')) && !written.ends_with(".toml");
    if args.push.as_deref() != Some("") || args.recipe.exists() || !looks_like_a_target {
        return Ok(());
    }
    if !matches!(
        imgbuild::reference::Reference::parse(&written),
        Ok(imgbuild::reference::Reference::Registry(_))
    ) {
        return Ok(());
    }
    Err(Error::input(format!(
        "recipe {written} does not exist: with a space after --push, {written} was read as the recipe's path"
    ))
    .with_hint(format!(
        "write --push={written} (--push takes its value after '='; alone, it pushes to the recipe's [image].repository)"
    )))
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

/// A document `build` writes next to the image.
#[derive(Clone, Copy)]
enum Document {
    Provenance,
    Sbom,
}

impl Document {
    fn media_type(self) -> &'static str {
        match self {
            Document::Provenance => provenance::INTOTO_MEDIA_TYPE,
            Document::Sbom => sbom::SPDX_MEDIA_TYPE,
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
    params: &provenance::Parameters,
    pushed_to: Option<&str>,
) -> Result<Vec<(Document, PathBuf, Vec<u8>)>> {
    let name = pushed_to
        .or(result.inputs.repository.as_deref())
        .unwrap_or("image");
    let mut docs = Vec::new();
    let provenance = match &args.provenance {
        Some(path) => Some((path, provenance::statement(result, name, params)?)),
        None => None,
    };
    let mut sbom = None;
    if let Some(path) = &args.sbom {
        // Streamed to the file: its size grows with the image's file count, the
        // memory used to write it does not. Written first, so that a layer it cannot
        // read leaves neither document behind.
        let layout = Layout::open(&result.layout)?;
        let epoch = result.epoch.rfc3339();
        provenance::write_atomic_with(path, |w| {
            sbom::write_sbom(&layout, result, name, &epoch, w)
        })?;
        // Attaching it to a pushed image takes its bytes (read back only then).
        let bytes = if pushed_to.is_some() {
            std::fs::read(path).map_err(|e| Error::io_path("cannot read", path, e))?
        } else {
            Vec::new()
        };
        sbom = Some((Document::Sbom, path.clone(), bytes));
    }
    if let Some((path, bytes)) = provenance {
        provenance::write_atomic(path, &bytes)?;
        docs.push((Document::Provenance, path.clone(), bytes));
    }
    docs.extend(sbom);
    Ok(docs)
}

/// `build --json`: the image, its manifests and layers, and what the push did.
fn json(r: &BuildResult, published: Option<&Published>) -> serde_json::Value {
    let manifests: Vec<_> = r
        .manifests
        .iter()
        .map(|m| {
            serde_json::json!({
                "platform": m.platform.to_string(),
                "digest": m.digest,
                "size": m.size,
                "config": m.config,
                "layers": m.layers.iter().zip(&m.diff_ids).enumerate().map(|(i, (l, d))| {
                    // Base layers are the base's; each recipe layer says where it came from.
                    let source = i
                        .checked_sub(m.base_layers)
                        .and_then(|j| m.layer_sources.get(j))
                        .map_or("base", |s| s.as_str());
                    serde_json::json!({
                        "mediaType": l.media_type, "digest": l.digest, "size": l.size, "diffId": d,
                        "source": source,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "digest": r.digest,
        "mediaType": r.media_type,
        "size": r.size,
        "tags": r.tags,
        "sourceDateEpoch": r.epoch.seconds,
        "manifests": manifests,
        "layout": r.layout.display().to_string(),
        "formatVersion": r.format.number(),
        "pushed": published.map(|p| &p.push),
    });
    if let Some(p) = published {
        v["attached"] = serde_json::json!(p.attached);
        if !p.signed.is_empty() {
            v["signed"] = serde_json::json!(p.signed);
        }
    }
    v
}
