//! The recipe: `recipe.toml` parsed into typed structs (SPEC §2).
//!
//! This module owns syntax and per-key validation (types, ranges, absolute paths,
//! names); every error points at `file:line:col`. It never touches the build context:
//! resolving sources against the file system is the plan's job.

mod diagnostic;

pub use diagnostic::RecipeSource;

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::format::FormatVersion;
use crate::platform::Platform;
use crate::reference::{has_explicit_tag, Reference, RegistryRef};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// A parsed, validated recipe.
#[derive(Debug)]
pub struct Recipe {
    pub source: Arc<RecipeSource>,
    /// The directory holding the recipe: relative `src` paths resolve against it.
    pub context: PathBuf,
    pub image: ImageSection,
    pub base: BaseSection,
    pub config: ConfigSection,
    pub annotations: BTreeMap<String, String>,
    pub users: Vec<Spanned<User>>,
    pub groups: Vec<Spanned<Group>>,
    pub layers: Vec<Spanned<Layer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRecipe {
    #[serde(default)]
    image: ImageSection,
    #[serde(default)]
    base: BaseSection,
    #[serde(default)]
    config: ConfigSection,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    user: Vec<Spanned<User>>,
    #[serde(default)]
    group: Vec<Spanned<Group>>,
    #[serde(default)]
    layer: Vec<Spanned<Layer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSection {
    pub repository: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,
    pub source_date_epoch: Option<Spanned<EpochSetting>>,
    pub compression: Option<Spanned<String>>,
    /// The format version (docs/determinism.md); None: the lock's, else the newest.
    pub format: Option<Spanned<i64>>,
}

/// `source-date-epoch`: seconds, or `"git"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EpochSetting {
    Seconds(i64),
    Named(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BaseSection {
    pub image: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigSection {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub workdir: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub exposed_ports: Vec<Spanned<String>>,
    #[serde(default)]
    pub volumes: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    pub name: Spanned<String>,
    pub uid: u32,
    /// Primary group id; defaults to `uid`.
    pub gid: Option<u32>,
    pub home: Option<String>,
    pub shell: Option<String>,
    /// Supplementary groups, by name.
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Group {
    pub name: Spanned<String>,
    pub gid: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Layer {
    pub name: Spanned<String>,
    #[serde(default)]
    pub copy: Vec<Spanned<CopyItem>>,
    #[serde(default)]
    pub dir: Vec<Spanned<DirItem>>,
    #[serde(default)]
    pub symlink: Vec<Spanned<SymlinkItem>>,
    #[serde(default)]
    pub file: Vec<Spanned<FileItem>>,
    #[serde(default)]
    pub archive: Vec<Spanned<ArchiveItem>>,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CopyItem {
    pub src: Spanned<String>,
    pub dst: Spanned<String>,
    pub mode: Option<Spanned<u32>>,
    pub dir_mode: Option<Spanned<u32>>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirItem {
    pub path: Spanned<String>,
    pub mode: Option<Spanned<u32>>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SymlinkItem {
    pub path: Spanned<String>,
    pub target: Spanned<String>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileItem {
    pub path: Spanned<String>,
    pub content: String,
    pub mode: Option<Spanned<u32>>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArchiveItem {
    pub src: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub sha256: Option<Spanned<Sha256Pin>>,
    #[serde(default = "root")]
    pub dst: Spanned<String>,
    #[serde(default)]
    pub strip_components: u32,
}

/// `sha256` of a url archive: one hash, or one per platform when the url has
/// `{os}`/`{arch}`/`{variant}` placeholders and so names a different file per platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Sha256Pin {
    One(String),
    PerPlatform(BTreeMap<String, String>),
}

impl ArchiveItem {
    /// The sha256 (64 lowercase hex digits) that pins this item's download for
    /// `platform`; None when the table form has no entry for it.
    pub fn sha256_for(&self, platform: &Platform) -> Option<&str> {
        match self.sha256.as_ref()?.get_ref() {
            Sha256Pin::One(h) => Some(h.as_str()),
            Sha256Pin::PerPlatform(t) => t
                .iter()
                .find(|(k, _)| Platform::parse(k).is_ok_and(|p| p == *platform))
                .map(|(_, h)| h.as_str()),
        }
    }
}

fn root() -> Spanned<String> {
    Spanned::new(0..0, "/".to_string())
}

/// Names starting with this are whiteouts in an OCI layer (SPEC §3.2).
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// The largest mode a recipe may ask for: permission bits plus setuid, setgid, sticky.
pub const MAX_MODE: u32 = 0o7777;

impl Recipe {
    /// Reads and validates the recipe at `path`.
    pub fn load(path: &Path) -> Result<Recipe> {
        // A directory means its recipe.toml, as `docker build DIR` means DIR/Dockerfile.
        let joined;
        let path = if path.is_dir() {
            joined = path.join("recipe.toml");
            joined.as_path()
        } else {
            path
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            if !path.exists() {
                // A missing recipe is bad usage, not an I/O failure.
                Error::input(format!("recipe {} does not exist", path.display())).with_hint(
                    "pass the recipe's path (e.g. path/to/recipe.toml, or the directory holding it), or run in the directory that holds recipe.toml",
                )
            } else if e.kind() == std::io::ErrorKind::InvalidData {
                Error::input(format!("recipe {} is not UTF-8 text", path.display()))
                    .with_hint("a recipe is a TOML file, which must be UTF-8")
            } else {
                Error::io_path("cannot read recipe", path, e)
            }
        })?;
        let context = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .canonicalize()
            .map_err(|e| Error::io_path("cannot resolve the recipe's directory", path, e))?;
        Recipe::parse(
            RecipeSource {
                path: path.to_path_buf(),
                text,
            },
            context,
        )
    }

    /// Parses recipe text; `context` is the directory sources resolve against.
    pub fn parse(source: RecipeSource, context: PathBuf) -> Result<Recipe> {
        let raw: RawRecipe = match toml::from_str(&source.text) {
            Ok(raw) => raw,
            Err(e) => return Err(toml_error(&source, &e)),
        };
        let recipe = Recipe {
            source: Arc::new(source),
            context,
            image: raw.image,
            base: raw.base,
            config: raw.config,
            annotations: raw.annotations,
            users: raw.user,
            groups: raw.group,
            layers: raw.layer,
        };
        recipe.validate()?;
        Ok(recipe)
    }

    /// An input error pointing at `span` of this recipe.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        self.source.error_at(span, message)
    }

    /// An error when `text` (a reference at `span`) carries credentials: the message
    /// and the recipe excerpt show them as `<redacted>`.
    pub fn credentials_in_reference(
        &self,
        span: Range<usize>,
        text: &str,
        what: &str,
    ) -> Option<Error> {
        if !crate::reference::has_userinfo(text) {
            return None;
        }
        let shown = crate::reference::redact_userinfo(text);
        let snippet = self.source.snippet(span).replace(text, &shown);
        Some(
            Error::input(format!(
                "{what} {shown:?} carries credentials (user:password@)"
            ))
            .with_detail(snippet)
            .with_hint(crate::reference::CREDENTIALS_HINT),
        )
    }

    /// The platforms to build, from the recipe (default linux/amd64).
    pub fn platforms(&self) -> Result<Vec<Platform>> {
        let Some(list) = &self.image.platforms else {
            return Ok(vec![Platform::linux_amd64()]);
        };
        if list.get_ref().is_empty() {
            return Err(self.error_at(list.span(), "platforms is empty").with_hint(
                "list at least one platform, e.g. platforms = [\"linux/amd64\"], or remove the key",
            ));
        }
        let mut out: Vec<Platform> = Vec::new();
        for p in list.get_ref() {
            let platform = Platform::parse(p.get_ref()).map_err(|m| self.error_at(p.span(), m))?;
            if out.contains(&platform) {
                return Err(self.error_at(p.span(), format!("platform {platform} is listed twice")));
            }
            out.push(platform);
        }
        Ok(out)
    }

    pub fn compression(&self) -> Result<Compression> {
        match &self.image.compression {
            None => Ok(Compression::Gzip),
            Some(c) => Compression::parse(c.get_ref()).ok_or_else(|| {
                let mut err =
                    self.error_at(c.span(), format!("unknown compression {:?}", c.get_ref()));
                err = match crate::suggest::nearest(c.get_ref(), Compression::ALL) {
                    Some(n) => {
                        err.with_hint(format!("did you mean {n:?}? (one of gzip, zstd, none)"))
                    }
                    None => err.with_hint("use one of \"gzip\" (default), \"zstd\", \"none\""),
                };
                err
            }),
        }
    }

    /// `[image].format` as a known format version; None when the recipe names none.
    /// Exit 2 at the value for a version this imgbuild does not build.
    pub fn format(&self) -> Result<Option<FormatVersion>> {
        let Some(f) = &self.image.format else {
            return Ok(None);
        };
        let n = *f.get_ref();
        u64::try_from(n)
            .ok()
            .and_then(FormatVersion::from_number)
            .map(Some)
            .ok_or_else(|| {
                self.error_at(f.span(), format!("unknown format version {n}"))
                    .with_hint(format!(
                        "this imgbuild builds format versions {}; a newer imgbuild may know {n}",
                        FormatVersion::known()
                    ))
            })
    }

    /// `[image].repository` as a registry repository (no tag: the reference's default
    /// `latest` is dropped); None when the recipe names none. Exit 2 at the value
    /// when it is not `host[:port]/path` or carries a tag or digest.
    pub fn repository(&self) -> Result<Option<RegistryRef>> {
        let Some(repo) = &self.image.repository else {
            return Ok(None);
        };
        let text = repo.get_ref();
        if let Some(e) = self.credentials_in_reference(repo.span(), text, "[image].repository") {
            return Err(e);
        }
        let not_registry = |message: String| {
            self.error_at(repo.span(), message)
                .with_hint("write host[:port]/path, e.g. registry.example.com/acme/hello")
        };
        if text.starts_with("oci:") {
            return Err(not_registry(format!(
                "{text:?} is not a registry repository (it is a layout reference)"
            )));
        }
        if text.contains('@') || has_explicit_tag(text) {
            return Err(self
                .error_at(
                    repo.span(),
                    "[image].repository must not carry a tag or digest",
                )
                .with_hint("put tags in [image].tags; the build decides the digest"));
        }
        match Reference::parse(text) {
            Ok(Reference::Registry(mut r)) => {
                r.tag = None;
                Ok(Some(r))
            }
            Ok(Reference::Layout { .. }) => Err(not_registry(format!(
                "{text:?} is not a registry repository"
            ))),
            Err(m) => {
                // The parser's own "(in …; forms…)" tail: the hint says it better here.
                let why = m.split(" (in ").next().unwrap_or(&m);
                Err(not_registry(format!(
                    "{text:?} is not a registry repository: {why}"
                )))
            }
        }
    }

    fn validate(&self) -> Result<()> {
        self.platforms()?;
        self.compression()?;
        self.format()?;
        if self.annotations.contains_key(crate::format::ANNOTATION) {
            let key = crate::format::ANNOTATION;
            let at = self.source.text.find(key).unwrap_or(0);
            return Err(self
                .error_at(
                    at..at + key.len(),
                    format!("annotation {key:?} is imgbuild's own"),
                )
                .with_hint(
                    "imgbuild records the format version there (format 2 and later); remove the key",
                ));
        }
        self.repository()?;
        if let Some(e) = &self.image.source_date_epoch {
            match e.get_ref() {
                EpochSetting::Seconds(s) if *s < 0 || *s as u64 > crate::epoch::MAX_EPOCH => {
                    return Err(self.error_at(
                        e.span(),
                        format!(
                            "source-date-epoch {s} is out of range (0 to {})",
                            crate::epoch::MAX_EPOCH
                        ),
                    ));
                }
                EpochSetting::Named(n) if n != "git" => {
                    return Err(self
                        .error_at(
                            e.span(),
                            format!("source-date-epoch {n:?} is not understood"),
                        )
                        .with_hint("use an integer (seconds since 1970) or \"git\""));
                }
                _ => {}
            }
        }
        for t in &self.image.tags {
            if !valid_tag(t.get_ref()) {
                return Err(self
                    .error_at(t.span(), format!("{:?} is not a valid tag", t.get_ref()))
                    .with_hint(
                        "tags are 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'",
                    ));
            }
        }
        for key in self.config.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(Error::input(format!(
                    "[config] env has the key {key:?}; keys must be non-empty and contain no '='"
                ))
                .with_detail(format!("  --> {}", self.source.path.display()))
                .with_hint("write env = { NAME = \"value\" }"));
            }
        }
        if let Some(s) = &self.config.stop_signal {
            if s.get_ref().trim().is_empty() {
                return Err(self
                    .error_at(s.span(), "stop-signal is empty")
                    .with_hint("name a signal, e.g. \"SIGTERM\", or remove the key"));
            }
        }
        if let Some(w) = &self.config.workdir {
            self.absolute(w, "workdir")?;
        }
        for v in &self.config.volumes {
            self.absolute(v, "a volume")?;
        }
        for p in &self.config.exposed_ports {
            if !valid_port(p.get_ref()) {
                return Err(self
                    .error_at(p.span(), format!("{:?} is not a port", p.get_ref()))
                    .with_hint("write ports as \"8080\", \"8080/tcp\", \"53/udp\" or \"9/sctp\""));
            }
        }
        for u in &self.users {
            let u = u.get_ref();
            if !valid_account_name(u.name.get_ref()) {
                return Err(self
                    .error_at(
                        u.name.span(),
                        format!("{:?} is not a valid user name", u.name.get_ref()),
                    )
                    .with_hint(
                        "use letters, digits, '_', '-' and '.', not starting with '-' (at most 32)",
                    ));
            }
        }
        for g in &self.groups {
            let g = g.get_ref();
            if !valid_account_name(g.name.get_ref()) {
                return Err(self
                    .error_at(
                        g.name.span(),
                        format!("{:?} is not a valid group name", g.name.get_ref()),
                    )
                    .with_hint(
                        "use letters, digits, '_', '-' and '.', not starting with '-' (at most 32)",
                    ));
            }
        }
        let mut names: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for layer in &self.layers {
            let l = layer.get_ref();
            let name = l.name.get_ref();
            if name.is_empty() || name.chars().any(|c| c.is_control()) {
                return Err(self.error_at(
                    l.name.span(),
                    "a layer name must be non-empty text without control characters",
                ));
            }
            if names.insert(name, l.name.span()).is_some() {
                return Err(self
                    .error_at(l.name.span(), format!("two layers are named {name:?}"))
                    .with_hint("give every [[layer]] a distinct name"));
            }
            for c in &l.copy {
                let c = c.get_ref();
                self.absolute(&c.dst, "dst")?;
                self.mode(c.mode.as_ref())?;
                self.mode(c.dir_mode.as_ref())?;
                if c.src.get_ref().is_empty() {
                    return Err(self.error_at(c.src.span(), "src is empty").with_hint(
                        "name a file or directory inside the context, e.g. src = \"target/app\"",
                    ));
                }
            }
            for d in &l.dir {
                let d = d.get_ref();
                self.absolute(&d.path, "path")?;
                self.mode(d.mode.as_ref())?;
                if d.path.get_ref().trim_matches('/').is_empty() {
                    return Err(self
                        .error_at(
                            d.path.span(),
                            "path names the root directory, which no layer can hold",
                        )
                        .with_hint("name a directory below /"));
                }
            }
            for s in &l.symlink {
                let s = s.get_ref();
                self.entry_path(&s.path)?;
                if s.target.get_ref().is_empty() || s.target.get_ref().contains('\0') {
                    return Err(self.error_at(
                        s.target.span(),
                        "a symlink target must be non-empty and without NUL bytes",
                    ));
                }
            }
            for f in &l.file {
                let f = f.get_ref();
                self.entry_path(&f.path)?;
                self.mode(f.mode.as_ref())?;
            }
            for a in &l.archive {
                let span = a.span();
                let a = a.get_ref();
                if a.dst.span() != (0..0) {
                    self.absolute(&a.dst, "dst")?;
                }
                match (&a.src, &a.url) {
                    (Some(_), Some(u)) => {
                        return Err(
                            self.error_at(u.span(), "an archive takes src or url, not both")
                        );
                    }
                    (None, None) => {
                        return Err(self
                            .error_at(
                                span,
                                "an archive needs src (a tar in the context) or url with sha256",
                            )
                            .with_hint("add src = \"vendor/thing.tar.gz\""));
                    }
                    (None, Some(u)) => {
                        if a.sha256.is_none() {
                            return Err(self
                                .error_at(
                                    u.span(),
                                    "an archive with url needs sha256 = \"<64 hex digits>\"",
                                )
                                .with_hint(
                                    "pin the download: sha256sum the file and add its hash",
                                ));
                        }
                    }
                    (Some(_), None) => {}
                }
                if let Some(h) = &a.sha256 {
                    self.sha256_pin(h)?;
                }
            }
            for r in &l.remove {
                self.absolute(r, "a removed path")?;
                if r.get_ref().trim_matches('/').is_empty() {
                    return Err(self.error_at(r.span(), "the root directory cannot be removed"));
                }
            }
        }
        Ok(())
    }

    /// `sha256 = "…"` or `sha256 = { "linux/amd64" = "…", … }`: every hash is 64
    /// lowercase hex digits, every key a platform.
    fn sha256_pin(&self, pin: &Spanned<Sha256Pin>) -> Result<()> {
        let valid = |hex: &str| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        };
        let bad_hash = || {
            self.error_at(pin.span(), "sha256 must be 64 lowercase hex digits")
                .with_hint(
                    "write the hash sha256sum prints for the file, without a \"sha256:\" prefix",
                )
        };
        match pin.get_ref() {
            Sha256Pin::One(hex) if !valid(hex) => return Err(bad_hash()),
            Sha256Pin::One(_) => {}
            Sha256Pin::PerPlatform(table) => {
                if table.is_empty() {
                    return Err(self
                        .error_at(pin.span(), "the sha256 table is empty")
                        .with_hint("pin every platform built: sha256 = { \"linux/amd64\" = \"…\", \"linux/arm64\" = \"…\" }"));
                }
                for (key, hex) in table {
                    Platform::parse(key).map_err(|m| {
                        self.error_at(pin.span(), format!("sha256 table key {key:?}: {m}"))
                            .with_hint("key the table by platform: { \"linux/amd64\" = \"…\" }")
                    })?;
                    if !valid(hex) {
                        return Err(self
                            .error_at(
                                pin.span(),
                                format!("sha256 for {key} must be 64 lowercase hex digits"),
                            )
                            .with_hint("write the hash sha256sum prints for the file, without a \"sha256:\" prefix"));
                    }
                }
            }
        }
        Ok(())
    }

    fn absolute(&self, value: &Spanned<String>, what: &str) -> Result<()> {
        let v = value.get_ref();
        if !v.starts_with('/') {
            return Err(self
                .error_at(
                    value.span(),
                    format!("{what} {v:?} is not an absolute path"),
                )
                .with_hint(format!(
                    "write it from the image root: \"/{}\"",
                    v.trim_start_matches("./")
                )));
        }
        if v.split('/').any(|c| c == "..") {
            return Err(self
                .error_at(
                    value.span(),
                    format!("{what} {v:?} contains a '..' component"),
                )
                .with_hint("write the path without '..'"));
        }
        if v.split('/').any(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return Err(self
                .error_at(value.span(), format!("{what} {v:?} has a name starting with \".wh.\", which every image tool reads as a whiteout"))
                .with_hint("to hide a path of a lower layer use remove = [\"/path\"]; otherwise rename it"));
        }
        if v.contains('\0') {
            return Err(self.error_at(value.span(), format!("{what} contains a NUL byte")));
        }
        Ok(())
    }

    /// The path of a file or symlink item: absolute, not the root, no trailing '/'.
    fn entry_path(&self, value: &Spanned<String>) -> Result<()> {
        self.absolute(value, "path")?;
        let v = value.get_ref();
        if v.trim_matches('/').is_empty() {
            return Err(self
                .error_at(
                    value.span(),
                    "path names the root directory, which can only be a directory",
                )
                .with_hint("name a path below /"));
        }
        if v.ends_with('/') {
            return Err(self
                .error_at(
                    value.span(),
                    format!("path {v:?} ends in '/', which means a directory"),
                )
                .with_hint(format!(
                    "drop the trailing '/': \"{}\"",
                    v.trim_end_matches('/')
                )));
        }
        Ok(())
    }

    fn mode(&self, mode: Option<&Spanned<u32>>) -> Result<()> {
        if let Some(m) = mode {
            // Modes are octal: `mode = 755` (decimal, 0o1363) is a typo far more often
            // than a meant value, so every non-zero mode must be written with 0o.
            let text = self.source.text.get(m.span()).unwrap_or("").trim();
            if *m.get_ref() != 0 && !text.starts_with("0o") {
                let digits = text.replace('_', "");
                let octal = if digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    digits
                } else {
                    format!("{:o}", m.get_ref())
                };
                return Err(self
                    .error_at(m.span(), format!("mode {text} is not written in octal"))
                    .with_hint(format!("write modes with the 0o prefix: 0o{octal}")));
            }
            if *m.get_ref() > MAX_MODE {
                return Err(self
                    .error_at(m.span(), format!("mode {:#o} is out of range", m.get_ref()))
                    .with_hint(
                        "modes are at most 0o7777: write them in octal, e.g. mode = 0o755",
                    ));
            }
        }
        Ok(())
    }
}

/// A tag of the OCI distribution grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_port(p: &str) -> bool {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    matches!(proto, "tcp" | "udp" | "sctp") && num.parse::<u16>().is_ok_and(|n| n > 0)
}

fn valid_account_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Turns a TOML/serde error into a diagnostic, suggesting the nearest valid key.
fn toml_error(source: &RecipeSource, e: &toml::de::Error) -> Error {
    let message = e.message().trim().to_string();
    let span = e.span().unwrap_or(0..0);
    let mut err = source.error_at(span.clone(), format!("invalid recipe: {message}"));
    if message.contains("Sha256Pin") {
        err = source
            .error_at(span.clone(), "sha256 must be a string or a table of platform = string")
            .with_hint("write sha256 = \"<64 hex digits>\", or sha256 = { \"linux/amd64\" = \"…\", \"linux/arm64\" = \"…\" } when the url has {arch}");
    }
    if message.contains("EpochSetting") {
        err = source
            .error_at(
                span,
                "source-date-epoch must be a whole number of seconds or \"git\"",
            )
            .with_hint("e.g. source-date-epoch = 1700000000");
    }
    if let Some((unknown, expected)) = parse_unknown_field(&message) {
        let keys: Vec<&str> = expected.iter().map(String::as_str).collect();
        err = Error::input(format!("unknown key `{unknown}`"))
            .with_detail(source.snippet(e.span().unwrap_or(0..0)));
        err = match crate::suggest::nearest(&unknown, keys.iter().copied()) {
            Some(n) => err.with_hint(format!(
                "did you mean `{n}`? (valid keys here: {})",
                keys.join(", ")
            )),
            None => err.with_hint(format!("valid keys here: {}", keys.join(", "))),
        };
    }
    err
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`").
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((unknown.to_string(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe> {
        Recipe::parse(
            RecipeSource {
                path: "recipe.toml".into(),
                text: text.into(),
            },
            PathBuf::from("/nonexistent"),
        )
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_recipe_is_valid_and_defaults_to_linux_amd64_gzip() {
        let r = parse("").unwrap();
        assert_eq!(r.platforms().unwrap(), vec![Platform::linux_amd64()]);
        assert_eq!(r.compression().unwrap(), Compression::Gzip);
    }

    #[test]
    fn format_names_a_known_version_and_an_unknown_one_is_exit_2_at_its_value() {
        assert_eq!(parse("").unwrap().format().unwrap(), None);
        let r = parse("[image]\nformat = 1\n").unwrap();
        assert_eq!(r.format().unwrap(), Some(FormatVersion::V1));
        for bad in ["7", "0", "-1"] {
            let e = parse(&format!("[image]\nformat = {bad}\n")).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::ExitCode::BadInput);
            let e = e.to_string();
            assert!(e.contains(&format!("unknown format version {bad}")), "{e}");
            assert!(e.contains("recipe.toml:2:10"), "{e}");
            assert!(e.contains("1, 2 (the newest)"), "{e}");
        }
        let e = err("[image]\nformat = \"2\"\n");
        assert!(
            e.contains("recipe.toml:2:10") && e.contains("invalid type"),
            "{e}"
        );
    }

    #[test]
    fn the_format_annotation_is_reserved() {
        let e = err("[annotations]\n\"org.imgbuild.format-version\" = \"1\"\n");
        assert!(
            e.contains("imgbuild's own") && e.contains("recipe.toml:2:2"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named_with_nearest_suggestion_and_location() {
        let e = err("[[layer]]\nname = \"a\"\n  [[layer.copy]]\n  src = \"x\"\n  dts = \"/x\"\n");
        assert!(e.contains("unknown key `dts`"), "{e}");
        assert!(e.contains("did you mean `dst`?"), "{e}");
        assert!(e.contains("recipe.toml:5:3"), "{e}");
        assert!(e.contains("5 |   dts = \"/x\""), "{e}");
    }

    #[test]
    fn unknown_top_level_table_suggests_the_right_one() {
        let e = err("[imgae]\ntags = []\n");
        assert!(
            e.contains("unknown key `imgae`") && e.contains("did you mean `image`?"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_shows_line_and_column() {
        let e = err("[image]\ntags = [\"a\"\n");
        assert!(e.contains("recipe.toml:"), "{e}");
        assert!(e.starts_with("error: invalid recipe"), "{e}");
    }

    #[test]
    fn wrong_type_is_reported_at_the_value() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.dir]]\npath = \"/d\"\nmode = \"755\"\n");
        assert!(e.contains("recipe.toml:5:8"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn mode_out_of_range_is_rejected() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.dir]]\npath = \"/d\"\nmode = 0o17777\n");
        assert!(
            e.contains("mode 0o17777 is out of range") && e.contains("recipe.toml:5:8"),
            "{e}"
        );
    }

    #[test]
    fn relative_and_dotdot_destinations_are_rejected() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"etc/x\"\ncontent = \"\"\n");
        assert!(
            e.contains("not an absolute path") && e.contains("\"/etc/x\""),
            "{e}"
        );
        let e =
            err("[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"/etc/../x\"\ncontent = \"\"\n");
        assert!(e.contains("'..'"), "{e}");
    }

    #[test]
    fn unknown_platform_and_compression_are_rejected_with_hints() {
        let e = err("[image]\nplatforms = [\"linux/amd46\"]\n");
        assert!(
            e.contains("unknown architecture") && e.contains("recipe.toml:2:14"),
            "{e}"
        );
        let e = err("[image]\ncompression = \"zstandard\"\n");
        assert!(
            e.contains("unknown compression") && e.contains("help:"),
            "{e}"
        );
    }

    #[test]
    fn source_date_epoch_accepts_integer_or_git_only() {
        assert!(parse("[image]\nsource-date-epoch = 5\n").is_ok());
        assert!(parse("[image]\nsource-date-epoch = \"git\"\n").is_ok());
        assert!(err("[image]\nsource-date-epoch = \"now\"\n").contains("not understood"));
        assert!(err("[image]\nsource-date-epoch = -3\n").contains("out of range"));
    }

    #[test]
    fn url_archive_requires_sha256() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.archive]]\nurl = \"https://x/y.tar\"\n");
        assert!(e.contains("needs sha256"), "{e}");
    }

    const ARCHIVE: &str =
        "[[layer]]\nname = \"a\"\n[[layer.archive]]\nurl = \"https://x/{arch}.tar\"\n";

    #[test]
    fn url_archive_sha256_table_pins_each_platform() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let r = parse(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/amd64\" = \"{a}\", \"linux/arm64\" = \"{b}\" }}\n"
        ))
        .unwrap();
        let item = r.layers[0].get_ref().archive[0].get_ref();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let s390x = Platform::parse("linux/s390x").unwrap();
        assert_eq!(item.sha256_for(&Platform::linux_amd64()), Some(a.as_str()));
        assert_eq!(item.sha256_for(&arm64), Some(b.as_str()));
        assert_eq!(item.sha256_for(&s390x), None);
    }

    #[test]
    fn url_archive_sha256_string_pins_every_platform() {
        let a = "0".repeat(64);
        let r = parse(&format!("{ARCHIVE}sha256 = \"{a}\"\n")).unwrap();
        let item = r.layers[0].get_ref().archive[0].get_ref();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(item.sha256_for(&arm64), Some(a.as_str()));
    }

    #[test]
    fn url_archive_sha256_table_rejects_bad_keys_and_hashes() {
        let a = "a".repeat(64);
        let e = err(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/amd46\" = \"{a}\" }}\n"
        ));
        assert!(
            e.contains("sha256 table key \"linux/amd46\"") && e.contains("recipe.toml:5:10"),
            "{e}"
        );
        let e = err(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/amd64\" = \"ABC\" }}\n"
        ));
        assert!(
            e.contains("sha256 for linux/amd64 must be 64 lowercase hex digits"),
            "{e}"
        );
        let e = err(&format!("{ARCHIVE}sha256 = {{}}\n"));
        assert!(e.contains("the sha256 table is empty"), "{e}");
        let e = err(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/arm64\" = \"{a}\", \"linux/arm64/\" = \"{a}\" }}\n"
        ));
        assert!(e.contains("sha256 table key"), "{e}");
    }

    #[test]
    fn url_archive_sha256_of_another_type_says_what_is_expected() {
        let e = err(&format!("{ARCHIVE}sha256 = 5\n"));
        assert!(
            e.contains("sha256 must be a string or a table of platform = string")
                && e.contains("recipe.toml:5:"),
            "{e}"
        );
        let e = err(&format!(
            "{ARCHIVE}sha256 = \"sha256:{}\"\n",
            "a".repeat(64)
        ));
        assert!(e.contains("sha256 must be 64 lowercase hex digits"), "{e}");
    }

    #[test]
    fn duplicate_layer_names_are_rejected() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer]]\nname = \"a\"\n");
        assert!(e.contains("two layers are named \"a\""), "{e}");
    }
}
