//! `build --out oci-archive:FILE` / `--out docker-archive:FILE` and `build --load`:
//! the image is built into a layout first — a temporary one beside FILE, removed
//! afterwards on success and on every error (not when the process is killed) — and
//! then written as the archive, or handed to the Docker daemon with `docker load`.
//! The temporary layout and FILE are left out of the context walk, like `--out DIR`.

use super::{note, Context};
use imgbuild::archive::{self, ArchiveImage, ArchiveKind};
use imgbuild::build::BuildResult;
use imgbuild::image::Descriptor;
use imgbuild::layout::Layout;
use imgbuild::platform::Platform;
use imgbuild::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `--out` sends the image.
pub(super) struct Sink {
    /// The layout the build writes.
    dir: PathBuf,
    /// For an archive: its kind, its file, and the temporary layout (removed on drop).
    archive: Option<(ArchiveKind, PathBuf, tempfile::TempDir)>,
    /// For `--no-out`: the temporary layout the push reads (removed on drop).
    scratch: Option<tempfile::TempDir>,
}

impl Sink {
    /// Reads `--out`: `DIR` or `oci:DIR` (a layout), `oci-archive:FILE` or
    /// `docker-archive:FILE`. For an archive, checks FILE's directory and makes the
    /// temporary layout in it (on the same file system, so the archive is renamed
    /// into place).
    pub(super) fn plan(out: &Path) -> Result<Sink> {
        let text = out.to_string_lossy();
        let Some((kind, file)) = archive::parse_target(&text) else {
            let dir = text
                .strip_prefix("oci:")
                .map(PathBuf::from)
                .unwrap_or_else(|| out.to_path_buf());
            return Ok(Sink {
                dir,
                archive: None,
                scratch: None,
            });
        };
        let how = "name a file, e.g. --out docker-archive:image.tar";
        if file.as_os_str().is_empty() {
            return Err(Error::input(format!("--out {text} names no file")).with_hint(how));
        }
        if file.is_dir() {
            return Err(Error::input(format!(
                "--out {text}: {} is a directory, not an archive file",
                file.display()
            ))
            .with_hint(how));
        }
        let parent = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::input(format!(
                "--out {text}: the directory {} does not exist",
                parent.display()
            ))
            .with_hint("create it first, or name a file in an existing directory"));
        }
        let temp = tempfile::Builder::new()
            .prefix(".imgbuild-layout-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io_path("cannot create a temporary layout in", &parent, e))?;
        Ok(Sink {
            dir: temp.path().join("layout"),
            archive: Some((kind, file, temp)),
            scratch: None,
        })
    }

    /// `--no-out`: a temporary layout in the system's temp directory, for the layers
    /// the push uploads (the built ones, and cached ones it cannot mount), removed
    /// afterwards.
    pub(super) fn nowhere() -> Result<Sink> {
        let temp = tempfile::Builder::new()
            .prefix(".imgbuild-layout-")
            .tempdir()
            .map_err(|e| Error::io("cannot create a temporary layout", e))?;
        Ok(Sink {
            dir: temp.path().join("layout"),
            archive: None,
            scratch: Some(temp),
        })
    }

    /// An archive build's temporary layout and FILE are outputs: a context walk that
    /// meets them leaves them out (they must not change the image).
    pub(super) fn leave_out_of_context(&self, opts: &mut imgbuild::build::BuildOptions) {
        if let Some((_, file, temp)) = &self.archive {
            opts.context_out = Some(temp.path().to_path_buf());
            opts.extra_outputs = vec![file.clone()];
        }
        if let Some(temp) = &self.scratch {
            opts.context_out = Some(temp.path().to_path_buf());
        }
    }

    /// The layout directory the build writes into.
    pub(super) fn layout_dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the archive, when `--out` names one.
    pub(super) fn finish(&self, result: &BuildResult, ctx: &Context) -> Result<()> {
        let Some((kind, file, _)) = &self.archive else {
            return Ok(());
        };
        write_archive(*kind, result, file)?;
        if !ctx.quiet {
            note(&format!(
                "wrote {} to {}{}",
                result.digest,
                kind.prefix(),
                file.display()
            ));
        }
        Ok(())
    }

    /// A docker archive (`--out docker-archive:`, `--load`) holds one image per tag:
    /// a build of several platforms is refused before it starts.
    pub(super) fn check_platforms(&self, platforms: &[Platform], load: bool) -> Result<()> {
        let docker_out = matches!(&self.archive, Some((ArchiveKind::Docker, _, _)));
        if platforms.len() < 2 || !(docker_out || load) {
            return Ok(());
        }
        let what = if docker_out {
            "--out docker-archive:"
        } else {
            "--load"
        };
        let names: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
        Err(Error::input(format!(
            "{what} takes one platform, and this build has {}: {}",
            names.len(),
            names.join(", ")
        ))
        .with_hint(format!(
            "build one platform (--platform {}), or write --out oci-archive:FILE, which holds them all",
            names[0]
        )))
    }

    /// `--json`: where the image went.
    pub(super) fn describe(&self, v: &mut serde_json::Value) {
        if let Some((kind, file, _)) = &self.archive {
            v["archive"] = serde_json::json!(format!("{}{}", kind.prefix(), file.display()));
            v["layout"] = serde_json::Value::Null;
        }
        if self.scratch.is_some() {
            v["layout"] = serde_json::Value::Null;
        }
    }
}

fn write_archive(kind: ArchiveKind, result: &BuildResult, file: &Path) -> Result<()> {
    let layout = Layout::open(&result.layout)?;
    let root = Descriptor::new(result.media_type, result.digest.clone(), result.size);
    let tags = tags(result);
    let repository = repository(result);
    archive::write(
        kind,
        &ArchiveImage {
            layout: &layout,
            root: &root,
            tags: &tags,
            repository: &repository,
            mtime: result.epoch.seconds,
        },
        file,
    )
}

/// The tags an archive or `docker load` gives the image: the build's, else `latest`.
fn tags(result: &BuildResult) -> Vec<String> {
    if result.tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        result.tags.clone()
    }
}

/// The repository the image's tags belong to in Docker: the recipe's
/// `[image].repository`, else the recipe directory's name (lowercased, as Docker
/// wants), else `image`.
pub(super) fn repository(result: &BuildResult) -> String {
    if let Some(r) = &result.inputs.repository {
        return r.clone();
    }
    let name: String = result
        .inputs
        .context
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() {
        "image".to_string()
    } else {
        name.to_string()
    }
}

/// `build --load`: the image as a docker archive into `docker load`.
pub(super) fn load(result: &BuildResult, ctx: &Context) -> Result<()> {
    let no_daemon = |why: String| {
        Error::network(format!("--load: cannot hand the image to Docker: {why}")).with_hint(
            "start the Docker daemon (docker info must answer), or leave out --load and write --out docker-archive:FILE",
        )
    };
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map_err(|e| no_daemon(format!("docker cannot be run ({e})")))?;
    if !version.status.success() {
        return Err(no_daemon(
            String::from_utf8_lossy(&version.stderr).trim().to_string(),
        ));
    }
    let engine = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let zstd = result
        .manifests
        .iter()
        .flat_map(|m| &m.layers)
        .any(|l| l.media_type.ends_with("+zstd"));
    let dir = tempfile::tempdir().map_err(|e| Error::io("cannot create a temporary file", e))?;
    let file = dir.path().join("image.tar");
    write_archive(ArchiveKind::Docker, result, &file)?;
    let o = Command::new("docker")
        .arg("load")
        .arg("--input")
        .arg(&file)
        .output()
        .map_err(|e| no_daemon(format!("docker cannot be run ({e})")))?;
    if !o.status.success() {
        let err = Error::network(format!(
            "docker load failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
        return Err(if zstd && !reads_zstd(&engine) {
            err.with_hint(format!(
                "the image has zstd layers, which Docker Engine {engine} may not read (Docker 23.0 and later do); rebuild with --compression gzip"
            ))
        } else {
            err
        });
    }
    if zstd && !reads_zstd(&engine) && !ctx.quiet {
        note(&format!(
            "warning: Docker Engine {engine} loaded this image, but pulls zstd layers from a registry only from Docker 23.0 on; push it with --compression gzip for such engines"
        ));
    }
    if !ctx.quiet {
        let repository = repository(result);
        let names: Vec<String> = tags(result)
            .iter()
            .map(|t| format!("{repository}:{t}"))
            .collect();
        note(&format!(
            "loaded {} into Docker {engine} as {}",
            result.digest,
            names.join(", ")
        ));
    }
    Ok(())
}

/// Whether a Docker Engine of `version` reads zstd layers (23.0 and later).
fn reads_zstd(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 23)
}

#[cfg(test)]
mod tests {
    #[test]
    fn zstd_needs_docker_23() {
        assert!(!super::reads_zstd("20.10.24+dfsg1"));
        assert!(super::reads_zstd("23.0.1"));
        assert!(super::reads_zstd("28.3.0"));
        assert!(!super::reads_zstd("unknown"));
    }
}
