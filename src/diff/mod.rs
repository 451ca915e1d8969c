//! `imgbuild diff A B`: how two images differ, level by level — index, platforms,
//! manifests, configs (JSON paths), layers (digest and diff_id), tar entries (header
//! fields and content sha256) — read from layouts or registries through the same
//! types as `inspect`.
//!
//! The algorithm (docs/auditing.md says it for users):
//! 1. Equal root digests: identical, nothing else is read.
//! 2. Index: its JSON without the manifest descriptors' digests and sizes (so their
//!    order, platforms and annotations are compared by position); one side an index
//!    and the other a single manifest is a `mediaType` difference.
//! 3. Manifests are matched by platform (`os/arch[/variant]`); a platform on one side
//!    only is reported and not descended into. Equal manifest digests end there.
//! 4. Manifest JSON without the config and layer digests and sizes; config JSON
//!    without `rootfs.diff_ids` (the layers carry those, but for a diff_id changed
//!    under an unchanged blob).
//! 5. Layer i is compared with layer i. Equal digests: the same layer (only its
//!    descriptor's other fields are compared). Equal diff_ids: a recompression, the
//!    tars are not read. Else both tars are walked (in parallel, streaming) and their
//!    entries compared by path. Layers past the shorter list are added or removed.
//!
//! 6. When every layer pair left differs only as a recompression (equal diff_ids, equal
//!    media types, other digests), the report says so once: the same contents,
//!    compressed differently — what another compressor or format version does. Each
//!    side's format version is read from its `org.imgbuild.format-version` manifest
//!    annotation (format 2 and later; a format-1 image has none).
//!
//! Every difference is one record; `--ignore` globs drop entry records whose path
//! they match (counted as ignored), and a layer whose every entry difference is
//! ignored is not reported either.

pub mod json;
mod render;
pub mod tar;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::inspect::{self, Inspected, InspectedManifest};
use crate::reference::Reference;
use crate::registry::client;
use crate::source::{self, ImageSource};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use json::JsonChange;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tar::{EntryMeta, FieldChange, Walked};

#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// Entry path globs (`/var/log/**`) whose differences are accepted.
    pub ignore: Vec<String>,
    pub registry: client::Options,
}

/// One side of a diff.
#[derive(Clone, Debug)]
pub struct Side {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    /// The imgbuild format version the image was built with, as far as it is known.
    pub format: SideFormat,
}

/// What is known of one side's format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideFormat {
    /// Its manifest annotation says so (or `verify` built it with this one).
    Known(u32),
    /// No format annotation: format 1, or not built by imgbuild.
    Unmarked,
}

impl SideFormat {
    /// The format its manifests' `org.imgbuild.format-version` annotation names (the
    /// first manifest that carries one); `Unmarked` when none does or it is no number.
    pub fn of(image: &Inspected) -> SideFormat {
        image
            .manifests
            .iter()
            .find_map(|m| {
                m.manifest["annotations"][crate::format::ANNOTATION]
                    .as_str()
                    .and_then(|v| v.parse::<u32>().ok())
            })
            .map_or(SideFormat::Unmarked, SideFormat::Known)
    }

    /// The version number, when known.
    pub fn number(self) -> Option<u32> {
        match self {
            SideFormat::Known(n) => Some(n),
            SideFormat::Unmarked => None,
        }
    }

    /// For a person: `format 2`, or what an unmarked image may be.
    pub fn describe(self) -> String {
        match self {
            SideFormat::Known(n) => format!("format {n}"),
            SideFormat::Unmarked => format!(
                "format 1 or another builder (no {} annotation)",
                crate::format::ANNOTATION
            ),
        }
    }
}

/// The level a difference is found at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Index,
    Platform,
    Manifest,
    Config,
    Layer,
    Entry,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Index,
        Level::Platform,
        Level::Manifest,
        Level::Config,
        Level::Layer,
        Level::Entry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Index => "index",
            Level::Platform => "platform",
            Level::Manifest => "manifest",
            Level::Config => "config",
            Level::Layer => "layer",
            Level::Entry => "entry",
        }
    }

    /// The level's name after a count in the summary: `1 layer`, `2 layers`,
    /// `3 entries`; `index` and `config` (differences within one document) stay.
    pub fn counted(self, n: usize) -> &'static str {
        match (self, n) {
            (_, 1) | (Level::Index | Level::Config, _) => self.as_str(),
            (Level::Platform, _) => "platforms",
            (Level::Manifest, _) => "manifests",
            (Level::Layer, _) => "layers",
            (Level::Entry, _) => "entries",
        }
    }
}

/// What happened to a thing present on one side or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    fn of<T>(old: &Option<T>, new: &Option<T>) -> Change {
        match (old, new) {
            (None, _) => Change::Added,
            (_, None) => Change::Removed,
            _ => Change::Changed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// A layer as its manifest and config describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub digest: Digest,
    pub diff_id: Option<Digest>,
    pub media_type: String,
    pub size: u64,
    /// The recipe's name of the layer, for a layer imgbuild built (its config's
    /// history says `imgbuild: layer NAME`).
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerChange {
    /// Same diff_id, other digest: the same tar, compressed differently.
    Recompressed,
    /// Other diff_id: the entries below say how.
    Changed,
    Added,
    Removed,
}

impl LayerChange {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerChange::Recompressed => "recompressed",
            LayerChange::Changed => "changed",
            LayerChange::Added => "added",
            LayerChange::Removed => "removed",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Difference {
    /// Index, manifest or config JSON (`platform` is None at the index level).
    Json {
        level: Level,
        platform: Option<String>,
        change: JsonChange,
    },
    /// A platform whose manifest only one side has.
    Platform {
        platform: String,
        change: Change,
        digest: Digest,
    },
    Layer {
        platform: String,
        layer: usize,
        change: LayerChange,
        old: Option<LayerInfo>,
        new: Option<LayerInfo>,
        /// Why a changed layer has no entry differences (order, tar encoding).
        note: Option<String>,
    },
    Entry {
        platform: String,
        layer: usize,
        path: String,
        change: Change,
        fields: Vec<FieldChange>,
        old: Option<Box<EntryMeta>>,
        new: Option<Box<EntryMeta>>,
    },
}

impl Difference {
    pub fn level(&self) -> Level {
        match self {
            Difference::Json { level, .. } => *level,
            Difference::Platform { .. } => Level::Platform,
            Difference::Layer { .. } => Level::Layer,
            Difference::Entry { .. } => Level::Entry,
        }
    }

    fn platform(&self) -> Option<&str> {
        match self {
            Difference::Json { platform, .. } => platform.as_deref(),
            Difference::Platform { platform, .. }
            | Difference::Layer { platform, .. }
            | Difference::Entry { platform, .. } => Some(platform),
        }
    }
}

#[derive(Debug)]
pub struct Report {
    pub a: Side,
    pub b: Side,
    pub differences: Vec<Difference>,
    /// Entry differences an `--ignore` glob matched.
    pub ignored: usize,
    /// Every layer difference is a recompression with the same media type (the same
    /// uncompressed contents, other compressed bytes), and there is at least one.
    pub recompressed_only: bool,
}

/// Compares two images. Bad references and invalid globs are exit-2 errors; a
/// difference is not an error (see [`Report::identical`]).
pub fn diff(a: &Reference, b: &Reference, opts: &DiffOptions) -> Result<Report> {
    let ignore = ignore_set(&opts.ignore)?;
    for r in [a, b] {
        if let Reference::Layout { dir, .. } = r {
            if !dir.exists() {
                return Err(Error::input(format!(
                    "{r}: the directory {} does not exist",
                    dir.display()
                ))
                .with_hint("check the path; a layout is a directory written by `imgbuild build --out DIR`, `skopeo copy … oci:DIR` or `umoci`"));
            }
        }
    }
    let sources = (
        source::open(a, &opts.registry)?,
        source::open(b, &opts.registry)?,
    );
    let ia = inspect::read(&*sources.0)?;
    let ib = inspect::read(&*sources.1)?;
    let mut report = Report {
        a: side(&ia),
        b: side(&ib),
        differences: Vec::new(),
        ignored: 0,
        recompressed_only: false,
    };
    if ia.digest == ib.digest {
        return Ok(report);
    }
    let mut d = Differ {
        sources: &sources,
        ignore: &ignore,
        a_name: &ia.reference,
        b_name: &ib.reference,
        out: Vec::new(),
        ignored: 0,
        walked: HashMap::new(),
    };
    d.compare(&ia, &ib)?;
    report.differences = d.out;
    report.ignored = d.ignored;
    report.recompressed_only = recompressed_only(&report.differences);
    if report.differences.is_empty() && report.ignored == 0 {
        report
            .differences
            .push(bytes_only(Level::Index, None, &ia.digest, &ib.digest));
    }
    Ok(report)
}

fn side(i: &Inspected) -> Side {
    Side {
        reference: i.reference.clone(),
        digest: i.digest.clone(),
        media_type: i.media_type.clone(),
        format: SideFormat::of(i),
    }
}

/// Whether the layer records are all recompressions that kept their media type, and
/// nothing below a layer or beside a platform differs.
fn recompressed_only(differences: &[Difference]) -> bool {
    let mut any = false;
    for d in differences {
        match d {
            Difference::Layer {
                change: LayerChange::Recompressed,
                old: Some(x),
                new: Some(y),
                ..
            } if x.media_type == y.media_type => any = true,
            Difference::Layer { .. } | Difference::Entry { .. } | Difference::Platform { .. } => {
                return false
            }
            Difference::Json { .. } => {}
        }
    }
    any
}

fn ignore_set(globs: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        let pattern = if g.starts_with('/') {
            g.clone()
        } else {
            format!("/{g}")
        };
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                Error::input(format!("--ignore {g:?} is not a valid glob: {}", e.kind()))
                    .with_source(e)
                    .with_hint("globs match entry paths like /var/log/app.log: `*` stays within one directory, `**` crosses them")
            })?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| Error::input(format!("--ignore: {e}")).with_source(e))
}

/// "The two documents are equal as JSON, but not byte for byte."
fn bytes_only(level: Level, platform: Option<String>, old: &Digest, new: &Digest) -> Difference {
    Difference::Json {
        level,
        platform,
        change: JsonChange {
            path: "(bytes)".to_string(),
            old: Some(Value::String(old.to_string())),
            new: Some(Value::String(new.to_string())),
        },
    }
}

struct Differ<'a> {
    sources: &'a (Box<dyn ImageSource>, Box<dyn ImageSource>),
    ignore: &'a GlobSet,
    a_name: &'a str,
    b_name: &'a str,
    out: Vec<Difference>,
    ignored: usize,
    /// Layer pairs already walked (by digests): their records and ignored count.
    walked: HashMap<(Digest, Digest), (Vec<Difference>, usize)>,
}

impl Differ<'_> {
    fn compare(&mut self, a: &Inspected, b: &Inspected) -> Result<()> {
        match (&a.index, &b.index) {
            (Some(x), Some(y)) => {
                self.json(Level::Index, None, "", &index_shell(x), &index_shell(y))
            }
            (None, None) => {}
            _ => self.out.push(Difference::Json {
                level: Level::Index,
                platform: None,
                change: JsonChange {
                    path: "mediaType".to_string(),
                    old: Some(Value::String(a.media_type.clone())),
                    new: Some(Value::String(b.media_type.clone())),
                },
            }),
        }
        let pa = by_platform(&a.manifests);
        let pb = by_platform(&b.manifests);
        for (p, m) in &pa {
            if !pb.contains_key(p) {
                self.out.push(Difference::Platform {
                    platform: p.clone(),
                    change: Change::Removed,
                    digest: m.digest.clone(),
                });
            }
        }
        for (p, m) in &pb {
            if !pa.contains_key(p) {
                self.out.push(Difference::Platform {
                    platform: p.clone(),
                    change: Change::Added,
                    digest: m.digest.clone(),
                });
            }
        }
        for (p, ma) in &pa {
            if let Some(mb) = pb.get(p) {
                self.platform(p, ma, mb)?;
            }
        }
        Ok(())
    }

    fn json(&mut self, level: Level, platform: Option<&str>, prefix: &str, a: &Value, b: &Value) {
        for change in json::changes(prefix, a, b) {
            self.out.push(Difference::Json {
                level,
                platform: platform.map(str::to_string),
                change,
            });
        }
    }

    fn platform(&mut self, p: &str, a: &InspectedManifest, b: &InspectedManifest) -> Result<()> {
        if a.digest == b.digest {
            return Ok(());
        }
        let (before, ignored_before) = (self.out.len(), self.ignored);
        self.json(
            Level::Manifest,
            Some(p),
            "",
            &manifest_shell(&a.manifest),
            &manifest_shell(&b.manifest),
        );
        let la = layers(a, &format!("{} ({p})", self.a_name))?;
        let lb = layers(b, &format!("{} ({p})", self.b_name))?;
        let common = la.len().min(lb.len());
        for (i, ((x, dx), (y, dy))) in la.iter().zip(&lb).enumerate() {
            let digests_differ = x.digest != y.digest;
            self.json(
                Level::Manifest,
                Some(p),
                &format!("layers[{i}]"),
                &descriptor_rest(dx, digests_differ),
                &descriptor_rest(dy, digests_differ),
            );
        }
        let config_digest = |m: &Value| m["config"]["digest"].clone();
        if config_digest(&a.manifest) != config_digest(&b.manifest) {
            let n = self.out.len();
            self.json(
                Level::Config,
                Some(p),
                "",
                &without_diff_ids(&a.config),
                &without_diff_ids(&b.config),
            );
            // diff_ids are the layer level's, but one that changed under the same
            // layer blob can only be told here.
            for (i, ((x, _), (y, _))) in la.iter().zip(&lb).enumerate() {
                if x.digest == y.digest && x.diff_id != y.diff_id {
                    let id =
                        |l: &LayerInfo| l.diff_id.as_ref().map(|d| Value::String(d.to_string()));
                    self.out.push(Difference::Json {
                        level: Level::Config,
                        platform: Some(p.to_string()),
                        change: JsonChange {
                            path: format!("rootfs.diff_ids[{i}]"),
                            old: id(x),
                            new: id(y),
                        },
                    });
                }
            }
            if self.out.len() == n
                && a.config["rootfs"]["diff_ids"] == b.config["rootfs"]["diff_ids"]
            {
                let d = |m: &Value| m["config"]["digest"].as_str().and_then(Digest::parse);
                if let (Some(x), Some(y)) = (d(&a.manifest), d(&b.manifest)) {
                    self.out
                        .push(bytes_only(Level::Config, Some(p.to_string()), &x, &y));
                }
            }
        }
        for (i, ((x, _), (y, _))) in la.iter().zip(&lb).enumerate() {
            if x.digest != y.digest {
                self.layer(p, i, x, y)?;
            }
        }
        for i in common..la.len().max(lb.len()) {
            let (x, y) = (la.get(i), lb.get(i));
            self.out.push(Difference::Layer {
                platform: p.to_string(),
                layer: i,
                change: if x.is_some() {
                    LayerChange::Removed
                } else {
                    LayerChange::Added
                },
                old: x.map(|l| l.0.clone()),
                new: y.map(|l| l.0.clone()),
                note: None,
            });
        }
        if self.out.len() == before && self.ignored == ignored_before {
            self.out.push(bytes_only(
                Level::Manifest,
                Some(p.to_string()),
                &a.digest,
                &b.digest,
            ));
        }
        Ok(())
    }

    fn layer(&mut self, p: &str, i: usize, a: &LayerInfo, b: &LayerInfo) -> Result<()> {
        if a.diff_id.is_some() && a.diff_id == b.diff_id {
            self.out.push(Difference::Layer {
                platform: p.to_string(),
                layer: i,
                change: LayerChange::Recompressed,
                old: Some(a.clone()),
                new: Some(b.clone()),
                note: None,
            });
            return Ok(());
        }
        // Platforms often share layers: a pair of blobs is walked once.
        let key = (a.digest.clone(), b.digest.clone());
        let (records, ignored) = match self.walked.get(&key) {
            Some((records, ignored)) => {
                (records.iter().map(|d| relabel(d, p, i)).collect(), *ignored)
            }
            None => {
                let found = self.walk_pair(p, i, a, b)?;
                self.walked.insert(key, found.clone());
                found
            }
        };
        self.ignored += ignored;
        self.out.extend(records);
        Ok(())
    }

    /// Walks two layers with different diff_ids: the records to report (the layer
    /// and its shown entries, or nothing when every entry difference is ignored) and
    /// how many entry differences were ignored.
    fn walk_pair(
        &self,
        p: &str,
        i: usize,
        a: &LayerInfo,
        b: &LayerInfo,
    ) -> Result<(Vec<Difference>, usize)> {
        let what_a = format!("layer {i} of {} ({p})", self.a_name);
        let what_b = format!("layer {i} of {} ({p})", self.b_name);
        let (sa, sb) = self.sources;
        let (wa, wb) = std::thread::scope(|s| {
            let ha = s.spawn(|| walk(&**sa, a, &what_a));
            let wb = walk(&**sb, b, &what_b);
            let wa = ha
                .join()
                .unwrap_or_else(|_| Err(Error::input(format!("{what_a}: the reader panicked"))));
            (wa, wb)
        });
        let (wa, wb) = (wa?, wb?);
        let (shown, ignored) = entry_differences(p, i, &wa, &wb, self.ignore);
        if shown.is_empty() && ignored > 0 {
            return Ok((Vec::new(), ignored));
        }
        let note = shown.is_empty().then(|| {
            let reordered = wa
                .entries
                .iter()
                .zip(&wb.entries)
                .any(|((_, x), (_, y))| x.position != y.position);
            if reordered {
                "the same entries in another order".to_string()
            } else {
                "the same entries, encoded differently in the tar (header format, padding or duplicates)"
                    .to_string()
            }
        });
        let mut records = vec![Difference::Layer {
            platform: p.to_string(),
            layer: i,
            change: LayerChange::Changed,
            old: Some(a.clone()),
            new: Some(b.clone()),
            note,
        }];
        records.extend(shown);
        Ok((records, ignored))
    }
}

/// A layer or entry record found for one platform and position, for another.
fn relabel(d: &Difference, p: &str, i: usize) -> Difference {
    let mut d = d.clone();
    match &mut d {
        Difference::Layer {
            platform, layer, ..
        }
        | Difference::Entry {
            platform, layer, ..
        } => {
            *platform = p.to_string();
            *layer = i;
        }
        Difference::Json { .. } | Difference::Platform { .. } => {}
    }
    d
}

/// Entry differences between two walked layers, in path order (paths compared as
/// bytes), but for those an `--ignore` glob matches: only counted.
fn entry_differences(
    p: &str,
    layer: usize,
    a: &Walked,
    b: &Walked,
    ignore: &GlobSet,
) -> (Vec<Difference>, usize) {
    let mut paths: Vec<&tar::Bytes> = a.entries.keys().chain(b.entries.keys()).collect();
    paths.sort();
    paths.dedup();
    let mut out = Vec::new();
    let mut ignored = 0;
    for path in paths {
        let (old, new) = (a.entries.get(path), b.entries.get(path));
        let fields = match (old, new) {
            (Some(x), Some(y)) => {
                let f = tar::field_changes(x, y);
                if f.is_empty() {
                    continue;
                }
                f
            }
            _ => Vec::new(),
        };
        if ignore.is_match(Path::new(OsStr::from_bytes(path.as_bytes()))) {
            ignored += 1;
            continue;
        }
        let (old, new) = (old.cloned().map(Box::new), new.cloned().map(Box::new));
        out.push(Difference::Entry {
            platform: p.to_string(),
            layer,
            path: path.to_string(),
            change: Change::of(&old, &new),
            fields,
            old,
            new,
        });
    }
    (out, ignored)
}

/// Manifests by platform; a second manifest of the same platform is `PLATFORM #2`.
fn by_platform(manifests: &[InspectedManifest]) -> BTreeMap<String, &InspectedManifest> {
    let mut out = BTreeMap::new();
    for m in manifests {
        let base = m
            .platform
            .clone()
            .unwrap_or_else(|| "(no platform)".to_string());
        let mut key = base.clone();
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = format!("{base} #{n}");
        }
        out.insert(key, m);
    }
    out
}

/// An index without what the platform level compares: each manifest descriptor's
/// digest and size. The descriptors' order, platforms, annotations and other fields
/// stay, compared position by position (`manifests[1].platform.architecture`).
fn index_shell(index: &Value) -> Value {
    let mut v = index.clone();
    if let Some(list) = v.get_mut("manifests").and_then(Value::as_array_mut) {
        for d in list.iter_mut().filter_map(Value::as_object_mut) {
            d.remove("digest");
            d.remove("size");
        }
    }
    v
}

/// A manifest without what the config and layer levels compare.
fn manifest_shell(manifest: &Value) -> Value {
    let mut v = manifest.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("layers");
        if let Some(c) = o.get_mut("config").and_then(Value::as_object_mut) {
            c.remove("digest");
            c.remove("size");
        }
    }
    v
}

/// A layer descriptor's fields besides digest and size (and mediaType, which a
/// layer record shows, when the digests differ).
fn descriptor_rest(descriptor: &Value, digests_differ: bool) -> Value {
    let mut v = descriptor.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("digest");
        o.remove("size");
        if digests_differ {
            o.remove("mediaType");
        }
    }
    v
}

fn without_diff_ids(config: &Value) -> Value {
    let mut v = config.clone();
    if let Some(r) = v.get_mut("rootfs").and_then(Value::as_object_mut) {
        r.remove("diff_ids");
    }
    v
}

/// The manifest's layers with their diff_ids; `what` names the manifest in the error
/// for a layer digest that is not a sha256 one (bad input: the layers after it would
/// otherwise be compared with the wrong ones).
fn layers(m: &InspectedManifest, what: &str) -> Result<Vec<(LayerInfo, Value)>> {
    let diff_ids = m.config["rootfs"]["diff_ids"].as_array();
    let count = m.manifest["layers"].as_array().map_or(0, Vec::len);
    let names = crate::image::layer_names(&m.config, count);
    m.manifest["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let digest = l["digest"]
                .as_str()
                .and_then(Digest::parse)
                .ok_or_else(|| {
                    Error::input(format!(
                        "layer {i} of {what}: its digest {} is not a sha256 digest",
                        l["digest"]
                    ))
                    .with_hint("imgbuild reads sha256 images only (sha256:<64 hex digits>)")
                })?;
            Ok((
                LayerInfo {
                    digest,
                    diff_id: diff_ids
                        .and_then(|d| d.get(i))
                        .and_then(Value::as_str)
                        .and_then(Digest::parse),
                    media_type: l["mediaType"].as_str().unwrap_or_default().to_string(),
                    size: l["size"].as_u64().unwrap_or_default(),
                    name: names.get(i).cloned().flatten(),
                },
                l.clone(),
            ))
        })
        .collect()
}

/// Walks one layer blob of `source`: streamed from a layout, or downloaded (verified)
/// into an anonymous temporary file by a registry source. Disk use is one layer per
/// side at a time; memory stays bounded.
fn walk(source: &dyn ImageSource, layer: &LayerInfo, what: &str) -> Result<Walked> {
    let blob = source
        .blob(&layer.digest, Some(layer.size))
        .map_err(|e| e.in_context(what))?;
    tar::walk_layer(blob, layer.diff_id.as_ref(), what)
}
