//! The recipe's types: what `recipe.toml` deserializes into, table by table.

use super::RecipeSource;
use crate::platform::Platform;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    pub apt_sources: Vec<Spanned<AptSource>>,
    pub layers: Vec<Spanned<Layer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRecipe {
    #[serde(default)]
    pub(super) image: ImageSection,
    #[serde(default)]
    pub(super) base: BaseSection,
    #[serde(default)]
    pub(super) config: ConfigSection,
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) user: Vec<Spanned<User>>,
    #[serde(default)]
    pub(super) group: Vec<Spanned<Group>>,
    #[serde(default)]
    pub(super) apt_source: Vec<Spanned<AptSource>>,
    #[serde(default)]
    pub(super) layer: Vec<Spanned<Layer>>,
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
    /// Debian packages from the `[[apt-source]]`s, with their dependencies (pinned by
    /// `imgbuild lock`).
    #[serde(default)]
    pub packages: Vec<Spanned<String>>,
}

/// `[[apt-source]]`: a signed Debian repository that `packages` come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AptSource {
    pub url: Spanned<String>,
    pub suite: Spanned<String>,
    #[serde(default = "main_component")]
    pub components: Vec<Spanned<String>>,
    /// A keyring in the context (armored or binary OpenPGP public keys).
    pub signed_by: Spanned<String>,
}

fn main_component() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "main".to_string())]
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

/// Names starting with this are whiteouts in an OCI layer (docs/determinism.md).
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// The largest mode a recipe may ask for: permission bits plus setuid, setgid, sticky.
pub const MAX_MODE: u32 = 0o7777;
