//! `build --provenance FILE`: an in-toto Statement v1 whose predicate is SLSA
//! Provenance v1, saying which image was built (the subject) from which recipe, lock,
//! source files and base image (the resolved dependencies), by which imgbuild.
//!
//! Nothing in it depends on the time, host or path of the build: no timestamps (the
//! epoch is recorded as a parameter), paths relative to the context, lists sorted,
//! keys sorted. The same inputs give the same bytes (docs/provenance.md).

use crate::build::BuildResult;
use crate::digest::HashingWriter;
use crate::epoch::EpochSource;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// Our build type: what `externalParameters` and `internalParameters` mean is
/// described in docs/provenance.md under this name.
pub const BUILD_TYPE: &str = "https://imgbuild.invalid/provenance/build-type/recipe/v1";
/// The builder: imgbuild run by whoever ran it (it attests to no platform).
pub const BUILDER_ID: &str = "https://imgbuild.invalid/provenance/builder/local/v1";
pub const INTOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// What the user asked for that changes the output, as given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Parameters {
    /// `--platform` as resolved (None: the recipe's).
    pub platforms: Option<Vec<String>>,
    /// `--tag` (None: the recipe's).
    pub tags: Option<Vec<String>>,
    /// `--compression` (None: the recipe's).
    pub compression: Option<String>,
    pub locked: bool,
}

/// The statement for `result`, named `name` in its subject.
pub fn statement(result: &BuildResult, name: &str, params: &Parameters) -> Result<Vec<u8>> {
    let inputs = &result.inputs;
    let mut subject = vec![json!({"name": name, "digest": {"sha256": result.digest.hex()}})];
    if result.manifests.len() > 1 {
        for m in &result.manifests {
            subject.push(json!({
                "name": format!("{name}@{}", m.platform),
                "digest": {"sha256": m.digest.hex()},
            }));
        }
    }

    let mut deps = vec![file_descriptor(&inputs.recipe, &inputs.context, "recipe")?];
    if let Some(lock) = &inputs.lock {
        deps.push(file_descriptor(lock, &inputs.context, "lock")?);
    }
    for (f, stamp) in &inputs.files {
        deps.push(source_descriptor(f, stamp, &inputs.context)?);
    }
    for (url, sha256) in &inputs.urls {
        deps.push(json!({
            "uri": url,
            "digest": {"sha256": sha256},
            "annotations": {"imgbuild.role": "archive"},
        }));
    }
    for p in &inputs.packages {
        deps.push(json!({
            "name": p.purl(),
            "uri": p.url(),
            "digest": {"sha256": p.sha256},
            "annotations": {"imgbuild.role": "package", "imgbuild.apt-source": p.source},
        }));
    }
    if let Some((base, digest)) = &inputs.base {
        let uri = if base.starts_with("oci:") || base.starts_with("docker://") {
            base.clone()
        } else {
            format!("docker://{base}")
        };
        deps.push(json!({
            "name": "base",
            "uri": uri,
            "digest": {"sha256": digest.hex()},
            "annotations": {"imgbuild.role": "base"},
        }));
    }

    let mut external = serde_json::Map::new();
    external.insert(
        "recipe".into(),
        json!(relative(&inputs.recipe, &inputs.context)),
    );
    let platforms: Vec<String> = result
        .manifests
        .iter()
        .map(|m| m.platform.to_string())
        .collect();
    external.insert("platforms".into(), json!(platforms));
    external.insert("tags".into(), json!(result.tags));
    if params.locked {
        external.insert("locked".into(), json!(true));
    }
    let mut flags = serde_json::Map::new();
    if let Some(p) = &params.platforms {
        flags.insert("platform".into(), json!(p));
    }
    if let Some(t) = &params.tags {
        flags.insert("tag".into(), json!(t));
    }
    if let Some(c) = &params.compression {
        flags.insert("compression".into(), json!(c));
    }
    if matches!(result.epoch.source, EpochSource::Flag) {
        flags.insert("sourceDateEpoch".into(), json!(result.epoch.seconds));
    }
    if !flags.is_empty() {
        external.insert("flags".into(), Value::Object(flags));
    }

    let doc = json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {
                    "sourceDateEpoch": {
                        "seconds": result.epoch.seconds,
                        "source": epoch_source(result.epoch.source),
                    },
                    "compression": inputs.compression,
                    "formatVersion": result.format.number(),
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {
                        "imgbuild": env!("CARGO_PKG_VERSION"),
                        "format": result.format.to_string(),
                    },
                },
            },
        },
    });
    let mut bytes = serde_json::to_vec_pretty(&doc)
        .map_err(|e| Error::io("cannot encode the provenance", io::Error::other(e)))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn epoch_source(s: EpochSource) -> &'static str {
    match s {
        EpochSource::Flag => "flag",
        EpochSource::Recipe => "recipe",
        EpochSource::RecipeGit => "git",
        EpochSource::Environment => "environment",
        EpochSource::Default => "default",
    }
}

/// `path` relative to the context, with `/` separators. The path is taken as given
/// (a symlink is not followed: a recipe linked from elsewhere is named where it was
/// found); only its directory is resolved, as the context itself was. A path that is
/// still outside the context is named by its file name alone: the document never
/// holds an absolute host path.
fn relative(path: &Path, context: &Path) -> String {
    let join = |rel: &Path| {
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    let inside = |rel: &Path| {
        !rel.as_os_str().is_empty()
            && rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    if let Ok(rel) = path.strip_prefix(context) {
        if inside(rel) {
            return join(rel);
        }
    }
    let real_context = context
        .canonicalize()
        .unwrap_or_else(|_| context.to_path_buf());
    if let Some(name) = path.file_name() {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(dir) = dir.canonicalize() {
            let resolved = dir.join(name);
            if let Ok(rel) = resolved.strip_prefix(&real_context) {
                if inside(rel) {
                    return join(rel);
                }
            }
        }
        return name.to_string_lossy().into_owned();
    }
    // No file name (`..`, `/`): no name that is not a host path.
    String::from("(outside the context)")
}

/// A ResourceDescriptor for a context file: its relative path and sha256, read now
/// (streaming). For the recipe and the lock (named on the command line, trusted).
fn file_descriptor(path: &Path, context: &Path, role: &str) -> Result<Value> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io_path("cannot read (for the provenance)", path, e))?;
    descriptor(file, path, context, role)
}

/// A ResourceDescriptor for a source the layers read: opened as the layers opened it,
/// below the context without following any symlink, and only if it is still the file
/// planned (`crate::beneath`), before and after it is hashed.
fn source_descriptor(
    path: &Path,
    stamp: &crate::stamp::FileStamp,
    context: &Path,
) -> Result<Value> {
    let unreadable = |e| Error::io_path("cannot read (for the provenance)", path, e);
    let file = crate::beneath::open_planned(context, path, stamp).map_err(unreadable)?;
    let d = descriptor(&file, path, context, "source")?;
    crate::beneath::check_unchanged(&file, stamp, path).map_err(unreadable)?;
    Ok(d)
}

fn descriptor(mut file: impl io::Read, path: &Path, context: &Path, role: &str) -> Result<Value> {
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut w)
        .map_err(|e| Error::io_path("cannot read (for the provenance)", path, e))?;
    let (_, digest, _) = w.finish();
    Ok(json!({
        "name": relative(path, context),
        "digest": {"sha256": digest.hex()},
        "annotations": {"imgbuild.role": role},
    }))
}

/// Writes `bytes` to `path` atomically: a temp file beside it, then a rename, so the
/// path holds the old file or the whole new one, never a part. A symlink (to a
/// regular file) is written through: the rename lands on its target, in the target's
/// directory, and the link stays. The new file gets mode 0666 less the umask, as any
/// file the user creates would. Anything else that is not a regular file is refused
/// (exit 2): [`check_output_path`] says so before the build.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| {
        w.write_all(bytes)
            .map_err(|e| Error::io_path("cannot write", path, e))
    })
}

/// `write_atomic` for a document written piece by piece by `write` (a large SBOM):
/// the file appears complete or not at all.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let target = output_target(path, "--provenance/--sbom")?;
    let dir = crate::atomic::dir_of(&target);
    // The kernel masks the mode with the umask, as for any new file.
    let mut tmp = crate::atomic::TempFile::new_in(&dir, 0o666)
        .map_err(|e| Error::io_path("cannot create a temporary file in", &dir, e))?;
    {
        let mut w = io::BufWriter::new(tmp.as_file_mut());
        write(&mut w)?;
        w.flush()
            .map_err(|e| Error::io_path("cannot write", path, e))?;
    }
    tmp.persist(&target, crate::atomic::Durability::Synced)
        .map_err(|e| Error::io_path("cannot write", &target, e))?;
    Ok(())
}

/// Where a document for `path` lands: `path` itself when it does not exist or is a
/// regular file; a symlink's resolved target when that is a regular file. Anything
/// else (a FIFO, a device such as /dev/null, a socket, a directory, a dangling
/// symlink) is bad input: replacing it with a regular file is never what was meant.
fn output_target(path: &Path, flag: &str) -> Result<PathBuf> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(Error::io_path("cannot examine", path, e)),
    };
    let (meta, target) = if meta.file_type().is_symlink() {
        match path
            .canonicalize()
            .and_then(|t| Ok((std::fs::metadata(&t)?, t)))
        {
            Ok((m, t)) => (m, t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::input(format!(
                    "{flag} {shown}: is a symlink to nothing (its target does not exist)"
                ))
                .with_hint("remove the dangling symlink, or point it at a file"))
            }
            Err(e) => return Err(Error::io_path("cannot resolve", path, e)),
        }
    } else {
        (meta, path.to_path_buf())
    };
    if meta.is_file() {
        return Ok(target);
    }
    let what = {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        }
    };
    Err(Error::input(format!("{flag} {shown}: is {what}, not a regular file"))
        .with_hint(format!(
            "give {flag} the name of a regular file (it is replaced whole), e.g. {flag} out/{}.json",
            flag.trim_start_matches('-')
        )))
}

/// Checks, before the build, that `path` can be written: it names a file (not
/// `dir/`), its directory exists, and it is absent, a regular file or a symlink to
/// one (exit 2 otherwise; nothing is built).
pub fn check_output_path(path: &Path, flag: &str) -> Result<()> {
    let example = format!("{flag} out/{}.json", flag.trim_start_matches('-'));
    let text = path.as_os_str().as_encoded_bytes();
    let names_a_dir =
        path.file_name().is_none() || text.ends_with(b"/") || text.ends_with(b"/.") || text == b".";
    if names_a_dir || path.is_dir() {
        return Err(
            Error::input(format!("{flag} {}: is a directory", path.display()))
                .with_hint(format!("give {flag} a file name, e.g. {example}")),
        );
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        ))
        .with_hint("create the directory first, or write the file elsewhere"));
    }
    output_target(path, flag)?;
    Ok(())
}

/// Whether two output paths name the same file however they are spelled
/// (`p.json`, `./p.json`, `dir/../p.json`, a symlink or hard link to it): the same
/// resolved directory and file name, or, for files that exist, the same device and
/// inode.
pub fn same_output(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fn resolved(p: &Path) -> Option<PathBuf> {
        if let Ok(real) = p.canonicalize() {
            return Some(real);
        }
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(dir.canonicalize().ok()?.join(p.file_name()?))
    }
    if a == b {
        return true;
    }
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
            return true;
        }
    }
    matches!((resolved(a), resolved(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_use_slashes_and_stay_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/c.txt"), "x").unwrap();
        assert_eq!(
            relative(&dir.path().join("a/b/c.txt"), dir.path()),
            "a/b/c.txt"
        );
    }

    #[test]
    fn file_descriptor_digests_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "abc").unwrap();
        let d = file_descriptor(&dir.path().join("f"), dir.path(), "source").unwrap();
        assert_eq!(
            d["digest"]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d["name"], "f");
    }

    #[test]
    fn a_source_swapped_for_a_symlink_after_the_layers_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(ctx.join("d")).unwrap();
        std::fs::write(ctx.join("d/f"), "abc").unwrap();
        std::fs::write(dir.path().join("secret"), "abc").unwrap();
        let ctx = ctx.canonicalize().unwrap();
        let path = ctx.join("d/f");
        let stamp = crate::stamp::FileStamp::of(&std::fs::metadata(&path).unwrap());
        let d = source_descriptor(&path, &stamp, &ctx).unwrap();
        assert_eq!(
            d["digest"]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d["name"], "d/f");
        // The file, then its directory, replaced by symlinks to outside: refused,
        // never read through the link.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), &path).unwrap();
        assert!(source_descriptor(&path, &stamp, &ctx).is_err());
        std::fs::remove_dir_all(ctx.join("d")).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        std::fs::rename(dir.path().join("secret"), dir.path().join("out/f")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("out"), ctx.join("d")).unwrap();
        let planned = crate::stamp::FileStamp::of(&std::fs::metadata(&path).unwrap());
        assert!(source_descriptor(&path, &planned, &ctx).is_err());
    }

    #[test]
    fn a_symlinked_file_is_named_where_it_was_found_and_never_absolutely() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("svc");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::create_dir_all(dir.path().join("common")).unwrap();
        std::fs::write(dir.path().join("common/recipe.toml"), "x").unwrap();
        std::os::unix::fs::symlink("../common/recipe.toml", ctx.join("recipe.toml")).unwrap();
        assert_eq!(relative(&ctx.join("recipe.toml"), &ctx), "recipe.toml");
        // Outside the context: the file name alone.
        assert_eq!(
            relative(&dir.path().join("common/recipe.toml"), &ctx),
            "recipe.toml"
        );
        assert_eq!(
            relative(&ctx.join("../common/recipe.toml"), &ctx),
            "recipe.toml"
        );
    }

    #[test]
    fn output_paths_ending_in_a_slash_are_bad_input() {
        for p in ["newdir/", "a/b/", ".", "x/."] {
            let e = check_output_path(Path::new(p), "--sbom").unwrap_err();
            assert_eq!(e.exit_code() as i32, 2, "{p}");
            assert!(
                e.message().contains("is a directory"),
                "{p}: {}",
                e.message()
            );
        }
    }

    #[test]
    fn same_output_sees_through_spelling_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        assert!(same_output(&d.join("p.json"), &d.join("sub/../p.json")));
        assert!(same_output(&d.join("p.json"), &d.join("./p.json")));
        assert!(!same_output(&d.join("p.json"), &d.join("q.json")));
        std::fs::write(d.join("p.json"), "x").unwrap();
        std::fs::hard_link(d.join("p.json"), d.join("h.json")).unwrap();
        std::os::unix::fs::symlink("p.json", d.join("l.json")).unwrap();
        assert!(same_output(&d.join("p.json"), &d.join("h.json")));
        assert!(same_output(&d.join("l.json"), &d.join("p.json")));
    }

    #[test]
    fn output_path_in_a_missing_directory_is_bad_input() {
        let e =
            check_output_path(Path::new("/nonexistent-dir/p.json"), "--provenance").unwrap_err();
        assert_eq!(e.exit_code() as i32, 2);
        assert!(e.message().contains("/nonexistent-dir"), "{}", e.message());
    }
}
