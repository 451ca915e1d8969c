//! The two forms of a diff report: text for people (summary first, then the
//! differences grouped by platform) and the JSON object of docs/auditing.md, whose
//! schema is stable.

use super::json::show;
use super::tar::EntryMeta;
use super::{Change, Difference, LayerChange, LayerInfo, Level, Report, Side};
use crate::digest::Digest;
use serde_json::{json, Value};

impl Report {
    /// The two images are the same image: equal root digests (nothing differs, and
    /// nothing was ignored). The only report a diff exits 0 for.
    pub fn identical(&self) -> bool {
        self.differences.is_empty() && self.ignored == 0
    }

    /// The digests differ, but every difference is an entry `--ignore` accepted.
    pub fn equal_apart_from_ignored(&self) -> bool {
        self.differences.is_empty() && self.ignored > 0
    }

    /// What the summary says when every difference was ignored.
    pub const EQUAL_APART_FROM_IGNORED: &'static str = "equal apart from the ignored fields";

    /// Records per level, in [`Level::ALL`] order.
    pub fn counts(&self) -> Vec<(Level, usize)> {
        Level::ALL
            .iter()
            .map(|l| {
                (
                    *l,
                    self.differences.iter().filter(|d| d.level() == *l).count(),
                )
            })
            .collect()
    }

    /// The first line of the text form: `identical`, `equal apart from the ignored
    /// fields (N ignored)` or `N differences: …`.
    pub fn summary(&self) -> String {
        let ignored = match self.ignored {
            0 => String::new(),
            n => format!(" ({n} ignored)"),
        };
        if self.identical() {
            return "identical".to_string();
        }
        if self.equal_apart_from_ignored() {
            return format!("{}{ignored}", Report::EQUAL_APART_FROM_IGNORED);
        }
        let n = self.differences.len();
        let by_level: Vec<String> = self
            .counts()
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|(l, c)| format!("{c} {}", l.counted(c)))
            .collect();
        format!(
            "{n} difference{}: {}{ignored}",
            if n == 1 { "" } else { "s" },
            by_level.join(", ")
        )
    }

    /// What the layers' differences come to when they are all recompressions.
    pub const RECOMPRESSED_ONLY: &'static str = "the layers' uncompressed contents are identical; only their compressed bytes differ (a different compressor or format version)";

    /// The human form: the summary, both sides, the format versions when they differ,
    /// then every difference grouped by platform. When the layers differ only by
    /// recompression, each platform's layers are one line rather than one per layer.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\nA  {}  {}\nB  {}  {}\n",
            self.summary(),
            self.a.reference,
            self.a.digest,
            self.b.reference,
            self.b.digest
        );
        if !self.identical() && self.a.format != self.b.format {
            s.push_str(&format!(
                "format  A: {}; B: {}\n",
                self.a.format.describe(),
                self.b.format.describe()
            ));
        }
        if self.recompressed_only {
            s.push_str(&format!("layers  {}\n", Report::RECOMPRESSED_ONLY));
        }
        let mut heading = None;
        for d in &self.differences {
            let h = match d {
                Difference::Platform { .. } => "platforms",
                _ => d.platform().unwrap_or("index"),
            };
            if heading != Some(h) {
                s.push_str(&format!("\n{h}\n"));
                heading = Some(h);
                if self.recompressed_only {
                    let n = self
                        .differences
                        .iter()
                        .filter(|d| {
                            matches!(d, Difference::Layer { .. }) && d.platform() == Some(h)
                        })
                        .count();
                    if n > 0 {
                        s.push_str(&format!(
                            "  layers    {n} recompressed: the same diff_ids and media types, other digests\n"
                        ));
                    }
                }
            }
            if self.recompressed_only && matches!(d, Difference::Layer { .. }) {
                continue;
            }
            s.push_str(&text_line(d));
        }
        s
    }

    /// The machine form; its schema is documented in docs/auditing.md and stable.
    pub fn to_json(&self) -> Value {
        let side = |s: &Side| json!({"reference": s.reference, "digest": s.digest, "mediaType": s.media_type, "formatVersion": s.format.number()});
        let mut summary = serde_json::Map::new();
        summary.insert("differences".into(), json!(self.differences.len()));
        summary.insert("ignored".into(), json!(self.ignored));
        for (l, c) in self.counts() {
            summary.insert(l.as_str().into(), json!(c));
        }
        json!({
            "identical": self.identical(),
            "equalApartFromIgnored": self.equal_apart_from_ignored(),
            "a": side(&self.a),
            "b": side(&self.b),
            "summary": summary,
            "recompressedOnly": self.recompressed_only,
            "differences": self.differences.iter().map(difference_json).collect::<Vec<_>>(),
        })
    }
}

fn text_line(d: &Difference) -> String {
    match d {
        Difference::Json { level, change, .. } => format!(
            "  {:<9} {}: {} → {}\n",
            level.as_str(),
            change.path,
            show(&change.old),
            show(&change.new)
        ),
        Difference::Platform {
            platform,
            change,
            digest,
        } => format!(
            "  {platform}  only in {} ({digest})\n",
            if *change == Change::Removed { "A" } else { "B" }
        ),
        Difference::Layer {
            layer,
            change,
            old,
            new,
            note,
            ..
        } => {
            // The recipe's name where imgbuild built it (the rebuilt side first).
            let name = new
                .as_ref()
                .and_then(|l| l.name.as_deref())
                .or_else(|| old.as_ref().and_then(|l| l.name.as_deref()));
            let head = match name {
                Some(name) => format!("  layer {layer} ({name})"),
                None => format!("  layer {layer:<3}"),
            };
            let mut s = match (change, old, new) {
                (LayerChange::Recompressed, Some(x), Some(y)) => format!(
                    "{head} recompressed: same diff_id {}; digest {} → {}; {} → {}; {} → {} bytes\n",
                    opt_digest(&x.diff_id),
                    x.digest,
                    y.digest,
                    x.media_type,
                    y.media_type,
                    x.size,
                    y.size
                ),
                (LayerChange::Changed, Some(x), Some(y)) => format!(
                    "{head} changed: diff_id {} → {}; digest {} → {}\n",
                    opt_digest(&x.diff_id),
                    opt_digest(&y.diff_id),
                    x.digest,
                    y.digest
                ),
                (_, x, y) => {
                    let l = x.as_ref().or(y.as_ref());
                    format!(
                        "{head} {}: {} (diff_id {})\n",
                        if x.is_some() { "only in A" } else { "only in B" },
                        l.map(|l| l.digest.to_string()).unwrap_or_default(),
                        l.map(|l| opt_digest(&l.diff_id)).unwrap_or_default()
                    )
                }
            };
            if let Some(n) = note {
                s.push_str(&format!("      {n}\n"));
            }
            s
        }
        Difference::Entry {
            path,
            change,
            fields,
            old,
            new,
            ..
        } => match change {
            Change::Changed => format!(
                "    ~ {path}  {}\n",
                fields
                    .iter()
                    .map(|f| format!(
                        "{} {} → {}",
                        f.field,
                        f.old.as_deref().unwrap_or("(absent)"),
                        f.new.as_deref().unwrap_or("(absent)")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Change::Added => format!(
                "    + {path}  {}\n",
                new.as_deref().map(EntryMeta::summary).unwrap_or_default()
            ),
            Change::Removed => format!(
                "    - {path}  {}\n",
                old.as_deref().map(EntryMeta::summary).unwrap_or_default()
            ),
        },
    }
}

fn opt_digest(d: &Option<Digest>) -> String {
    d.as_ref()
        .map(Digest::to_string)
        .unwrap_or_else(|| "(none)".to_string())
}

fn difference_json(d: &Difference) -> Value {
    let level = d.level().as_str();
    match d {
        Difference::Json {
            platform, change, ..
        } => json!({
            "level": level,
            "platform": platform,
            "path": change.path,
            "change": Change::of(&change.old, &change.new).as_str(),
            "old": change.old,
            "new": change.new,
        }),
        Difference::Platform {
            platform,
            change,
            digest,
        } => json!({
            "level": level, "platform": platform, "change": change.as_str(), "digest": digest,
        }),
        Difference::Layer {
            platform,
            layer,
            change,
            old,
            new,
            note,
        } => {
            let info = |l: &Option<LayerInfo>| {
                l.as_ref().map(|l| {
                    json!({"digest": l.digest, "diffId": l.diff_id, "mediaType": l.media_type, "size": l.size, "name": l.name})
                })
            };
            json!({
                "level": level, "platform": platform, "layer": layer, "change": change.as_str(),
                "old": info(old), "new": info(new), "note": note,
            })
        }
        Difference::Entry {
            platform,
            layer,
            path,
            change,
            fields,
            old,
            new,
        } => {
            let entry = |e: &Option<Box<EntryMeta>>| {
                e.as_ref().map(|e| {
                    let pax: serde_json::Map<String, Value> = e
                        .pax
                        .iter()
                        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                        .collect();
                    json!({
                        "type": e.kind, "mode": e.mode, "uid": e.uid,
                        "gid": e.gid, "uname": e.uname.to_string(),
                        "gname": e.gname.to_string(), "mtime": e.mtime, "size": e.size,
                        "linkname": e.linkname.as_ref().map(ToString::to_string),
                        "device": e.device, "content": e.content, "package": e.package,
                        "pax": pax,
                    })
                })
            };
            json!({
                "level": level, "platform": platform, "layer": layer, "path": path,
                "change": change.as_str(),
                "fields": fields.iter().map(|f| json!({"field": f.field, "old": f.old, "new": f.new})).collect::<Vec<_>>(),
                "old": entry(old), "new": entry(new),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::json::JsonChange;
    use crate::diff::SideFormat;

    fn side() -> Side {
        Side {
            reference: "oci:x".into(),
            digest: Digest::of(b"x"),
            media_type: String::new(),
            format: SideFormat::Unmarked,
        }
    }

    fn layer(i: usize) -> Difference {
        Difference::Layer {
            platform: "linux/amd64".into(),
            layer: i,
            change: LayerChange::Added,
            old: None,
            new: None,
            note: None,
        }
    }

    fn entry(path: &str) -> Difference {
        Difference::Entry {
            platform: "linux/amd64".into(),
            layer: 0,
            path: path.into(),
            change: Change::Added,
            fields: Vec::new(),
            old: None,
            new: None,
        }
    }

    fn config(path: &str) -> Difference {
        Difference::Json {
            level: Level::Config,
            platform: Some("linux/amd64".into()),
            change: JsonChange {
                path: path.into(),
                old: None,
                new: None,
            },
        }
    }

    fn summary(differences: Vec<Difference>) -> String {
        Report {
            a: side(),
            b: side(),
            differences,
            ignored: 0,
            recompressed_only: false,
        }
        .summary()
    }

    #[test]
    fn the_summary_counts_in_the_plural_except_index_and_config() {
        assert_eq!(
            summary(vec![layer(0), entry("/a")]),
            "2 differences: 1 layer, 1 entry"
        );
        assert_eq!(
            summary(vec![
                config("a"),
                config("b"),
                layer(0),
                layer(1),
                entry("/a"),
                entry("/b"),
                entry("/c")
            ]),
            "7 differences: 2 config, 2 layers, 3 entries"
        );
    }
}
