//! Merging account databases: `/etc/passwd` and `/etc/group` texts, a base's and
//! ours, into one. Pure (text in, text out), so that every writer of accounts — the
//! recipe's `[[user]]`/`[[group]]` on a base image today, Debian packages later —
//! merges the same way.
//!
//! The rules (docs/recipe.md, "[[user]] and [[group]]"):
//! - every line of the base is kept, in its order; lines that are not entries (empty
//!   ones, `#` comments, NIS `+`/`-` lines) are kept as they are;
//! - an entry of ours whose name the base also has replaces the base's first entry of
//!   that name, in its place (ours wins; a group keeps the base's members too, ours
//!   appended); a [`Note::Replaced`] says so when the ids differ;
//! - ours' other entries follow, in their order; a [`Note::SharedId`] says when one
//!   takes an id a base entry of another name has;
//! - a default (root) is used only when neither the base nor ours has its name, and
//!   then comes first.
//!
//! Only these two files are merged: `/etc/shadow` and `/etc/gshadow` are never
//! written, so a password field is kept as its line has it.

/// Which database a text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`.
    Passwd,
    /// `/etc/group`: `name:password:gid:member,member…`.
    Group,
}

impl Db {
    /// The file's path in an image, as a user reads it.
    pub fn path(self) -> &'static str {
        match self {
            Db::Passwd => "/etc/passwd",
            Db::Group => "/etc/group",
        }
    }

    /// What one entry is: `user`, `group`.
    pub fn what(self) -> &'static str {
        match self {
            Db::Passwd => "user",
            Db::Group => "group",
        }
    }

    fn fields(self) -> usize {
        match self {
            Db::Passwd => 7,
            Db::Group => 4,
        }
    }

    /// An entry's fields, as a user reads them.
    pub fn layout(self) -> &'static str {
        match self {
            Db::Passwd => "name:password:uid:gid:gecos:home:shell",
            Db::Group => "name:password:gid:members",
        }
    }
}

/// Something a merge did that the user may want to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// Ours replaced the base's entry `name`, whose ids differ: `base` and `ours` are
    /// the ids as a user reads them (`uid 10, gid 50`; `gid 50`).
    Replaced {
        name: String,
        base: String,
        ours: String,
    },
    /// Ours added `name`, whose id (`uid 1000`) a base entry `base_name` has too.
    SharedId {
        name: String,
        id: String,
        base_name: String,
    },
}

/// A line of a database that is not a valid entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based.
    pub line: usize,
    pub why: String,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// Which input a malformed line is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Base,
    Ours,
    Defaults,
}

/// The merged text (each line ending in a newline) and what the merge noted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    pub text: String,
    pub notes: Vec<Note>,
}

/// Merges `ours` into `base` (module docs); `defaults` are entries used only when
/// neither has their name. Every entry of the three must be valid.
pub fn merge(db: Db, base: &str, ours: &str, defaults: &str) -> Result<Merged, (Input, Malformed)> {
    let base = parse(db, base).map_err(|m| (Input::Base, m))?;
    let ours = parse(db, ours).map_err(|m| (Input::Ours, m))?;
    let defaults = parse(db, defaults).map_err(|m| (Input::Defaults, m))?;
    let base_has = |name: &str| {
        base.iter()
            .any(|l| l.entry().is_some_and(|e| e.name == name))
    };
    let ours_has = |name: &str| {
        ours.iter()
            .any(|l| l.entry().is_some_and(|e| e.name == name))
    };
    let mut out: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    for d in defaults.iter().filter_map(Line::entry) {
        if !base_has(d.name) && !ours_has(d.name) {
            out.push(d.line.to_string());
        }
    }
    let mut used = vec![false; ours.len()];
    for line in &base {
        let Some(b) = line.entry() else {
            out.push(line.text().to_string());
            continue;
        };
        let replacement = ours
            .iter()
            .enumerate()
            .find(|(i, l)| !used[*i] && l.entry().is_some_and(|o| o.name == b.name));
        let Some((i, o)) = replacement.and_then(|(i, l)| l.entry().map(|o| (i, o))) else {
            out.push(b.line.to_string());
            continue;
        };
        used[i] = true;
        if b.ids != o.ids {
            notes.push(Note::Replaced {
                name: o.name.to_string(),
                base: ids(db, &b.ids),
                ours: ids(db, &o.ids),
            });
        }
        out.push(match db {
            Db::Passwd => o.line.to_string(),
            Db::Group => with_members(o, &b.members),
        });
    }
    for (i, line) in ours.iter().enumerate() {
        let Some(o) = line.entry() else { continue };
        if used[i] {
            continue;
        }
        let shared = base
            .iter()
            .filter_map(Line::entry)
            .find(|b| b.name != o.name && b.ids[0] == o.ids[0]);
        if let Some(b) = shared {
            notes.push(Note::SharedId {
                name: o.name.to_string(),
                id: format!("{} {}", id_names(db)[0], o.ids[0]),
                base_name: b.name.to_string(),
            });
        }
        out.push(o.line.to_string());
    }
    let text = out.iter().map(|l| format!("{l}\n")).collect();
    Ok(Merged { text, notes })
}

/// `uid 10, gid 50` or `gid 50`.
fn ids(db: Db, ids: &[u32]) -> String {
    id_names(db)
        .iter()
        .zip(ids)
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn id_names(db: Db) -> &'static [&'static str] {
    match db {
        Db::Passwd => &["uid", "gid"],
        Db::Group => &["gid"],
    }
}

/// Ours' group line with the base's members first, then ours' not already among them.
fn with_members(ours: &Entry<'_>, base_members: &[&str]) -> String {
    let mut members: Vec<&str> = base_members.to_vec();
    for m in &ours.members {
        if !members.contains(m) {
            members.push(m);
        }
    }
    let head: Vec<&str> = ours.line.splitn(4, ':').take(3).collect();
    format!("{}:{}", head.join(":"), members.join(","))
}

enum Line<'a> {
    /// Kept as it is: empty, a comment, a NIS line.
    Other(&'a str),
    Entry(Entry<'a>),
}

impl<'a> Line<'a> {
    fn entry(&self) -> Option<&Entry<'a>> {
        match self {
            Line::Entry(e) => Some(e),
            Line::Other(_) => None,
        }
    }

    fn text(&self) -> &'a str {
        match self {
            Line::Other(t) => t,
            Line::Entry(e) => e.line,
        }
    }
}

struct Entry<'a> {
    line: &'a str,
    name: &'a str,
    /// uid and gid (passwd), gid (group).
    ids: Vec<u32>,
    /// A group's members; empty for passwd.
    members: Vec<&'a str>,
}

fn parse(db: Db, text: &str) -> Result<Vec<Line<'_>>, Malformed> {
    // Lines end at '\n' only: a '\r' stays part of its line, as written.
    text.split_terminator('\n')
        .enumerate()
        .map(|(i, line)| parse_line(db, line).map_err(|why| Malformed { line: i + 1, why }))
        .collect()
}

fn parse_line(db: Db, line: &str) -> Result<Line<'_>, String> {
    if line.trim().is_empty() || line.starts_with(['#', '+', '-']) {
        return Ok(Line::Other(line));
    }
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() != db.fields() {
        return Err(format!(
            "{} field{}, where a {} entry has {} ({})",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" },
            db.what(),
            db.fields(),
            db.layout()
        ));
    }
    let name = fields[0];
    if name.is_empty() {
        return Err(format!("a {} entry without a name", db.what()));
    }
    let id_fields: &[usize] = match db {
        Db::Passwd => &[2, 3],
        Db::Group => &[2],
    };
    let mut ids = Vec::new();
    for (&f, what) in id_fields.iter().zip(id_names(db)) {
        let v = fields[f];
        let id = v
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| v.parse::<u32>().ok())
            .flatten()
            .ok_or_else(|| format!("{} {name:?} has {what} {v:?}, not a number", db.what()))?;
        ids.push(id);
    }
    let members = match db {
        Db::Group => fields[3].split(',').filter(|m| !m.is_empty()).collect(),
        Db::Passwd => Vec::new(),
    };
    Ok(Line::Entry(Entry {
        line,
        name,
        ids,
        members,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n";
    const ROOT_GROUP: &str = "root:x:0:\n";

    fn ok(db: Db, base: &str, ours: &str, defaults: &str) -> Merged {
        merge(db, base, ours, defaults).expect("valid inputs")
    }

    #[test]
    fn base_entries_stay_in_order_and_new_ones_follow_in_ours_order() {
        let base = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        let ours = "zed:x:1001:1001:zed:/:/sbin/nologin\napp:x:1000:1000:app:/home/app:/bin/sh\n";
        let m = ok(Db::Passwd, base, ours, ROOT_PASSWD);
        assert_eq!(m.text, format!("{base}{ours}"));
        assert_eq!(m.notes, vec![]);
    }

    #[test]
    fn ours_replaces_a_base_entry_of_its_name_in_place_and_notes_changed_ids() {
        let base = "root:x:0:0:root:/root:/bin/sh\napp:x:999:999:old:/old:/bin/sh\nbin:x:2:2:bin:/bin:/sbin/nologin\n";
        let ours = "app:x:1000:999:app:/home/app:/bin/sh\n";
        let m = ok(Db::Passwd, base, ours, "");
        assert_eq!(
            m.text,
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:999:app:/home/app:/bin/sh\nbin:x:2:2:bin:/bin:/sbin/nologin\n"
        );
        assert_eq!(
            m.notes,
            vec![Note::Replaced {
                name: "app".into(),
                base: "uid 999, gid 999".into(),
                ours: "uid 1000, gid 999".into(),
            }]
        );
        // The same ids: replaced silently.
        let same = ok(Db::Passwd, base, "app:x:999:999:app:/:/bin/false\n", "");
        assert_eq!(same.notes, vec![]);
        assert!(same.text.contains("\napp:x:999:999:app:/:/bin/false\n"));
    }

    #[test]
    fn a_default_is_used_only_when_neither_side_has_its_name_and_comes_first() {
        // The base's root wins over the default (its shell, its home).
        let base = "root:x:0:0:root:/root:/bin/bash\n";
        let ours = "app:x:1000:1000:app:/:/sbin/nologin\n";
        assert_eq!(
            ok(Db::Passwd, base, ours, ROOT_PASSWD).text,
            format!("{base}{ours}")
        );
        // No root anywhere: the default, first.
        let base = "daemon:x:1:1:daemon:/:/sbin/nologin\n";
        assert_eq!(
            ok(Db::Passwd, base, ours, ROOT_PASSWD).text,
            format!("{ROOT_PASSWD}{base}{ours}")
        );
        // An empty base: the generated file as it was without a base.
        assert_eq!(
            ok(Db::Group, "", "app:x:1000:\n", ROOT_GROUP).text,
            "root:x:0:\napp:x:1000:\n"
        );
    }

    #[test]
    fn a_replaced_group_keeps_the_base_members_and_adds_ours() {
        let base = "root:x:0:\nstaff:x:50:op,backup\nnogroup:x:65534:\n";
        let ours = "staff:x:50:app,op\napp:x:1000:\n";
        let m = ok(Db::Group, base, ours, ROOT_GROUP);
        assert_eq!(
            m.text,
            "root:x:0:\nstaff:x:50:op,backup,app\nnogroup:x:65534:\napp:x:1000:\n"
        );
        assert_eq!(m.notes, vec![]);
        let m = ok(Db::Group, base, "staff:x:60:\n", "");
        assert_eq!(
            m.text,
            "root:x:0:\nstaff:x:60:op,backup\nnogroup:x:65534:\n"
        );
        assert_eq!(
            m.notes,
            vec![Note::Replaced {
                name: "staff".into(),
                base: "gid 50".into(),
                ours: "gid 60".into(),
            }]
        );
    }

    #[test]
    fn a_new_entry_sharing_a_base_id_is_noted() {
        let base = "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n";
        let m = ok(Db::Passwd, base, "app:x:33:33:app:/:/sbin/nologin\n", "");
        assert_eq!(
            m.notes,
            vec![Note::SharedId {
                name: "app".into(),
                id: "uid 33".into(),
                base_name: "www-data".into(),
            }]
        );
        let m = ok(Db::Group, "www-data:x:33:\n", "app:x:33:\n", "");
        assert_eq!(
            m.notes,
            vec![Note::SharedId {
                name: "app".into(),
                id: "gid 33".into(),
                base_name: "www-data".into(),
            }]
        );
    }

    #[test]
    fn lines_that_are_not_entries_are_kept_and_a_missing_final_newline_is_added() {
        let base = "# accounts\nroot:x:0:0:root:/root:/bin/sh\n\n+@netgroup::::::\nbin:x:2:2:bin:/bin:/sbin/nologin";
        let m = ok(Db::Passwd, base, "app:x:1000:1000:app:/:/bin/sh\n", "");
        assert_eq!(m.text, format!("{base}\napp:x:1000:1000:app:/:/bin/sh\n"));
    }

    #[test]
    fn only_the_first_base_entry_of_a_name_is_replaced() {
        let base = "app:x:1:1:a:/:/bin/sh\napp:x:2:2:b:/:/bin/sh\n";
        let m = ok(Db::Passwd, base, "app:x:1:1:app:/:/bin/false\n", "");
        assert_eq!(
            m.text,
            "app:x:1:1:app:/:/bin/false\napp:x:2:2:b:/:/bin/sh\n"
        );
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number_and_input() {
        let cases = [
            (
                Db::Passwd,
                "root:x:0:0:root:/root:/bin/sh\nbad:x:1:1\n",
                2,
                "4 fields",
            ),
            (
                Db::Passwd,
                "root:x:zero:0:root:/root:/bin/sh\n",
                1,
                "uid \"zero\"",
            ),
            (
                Db::Passwd,
                "root:x:0:-1:root:/root:/bin/sh\n",
                1,
                "gid \"-1\"",
            ),
            (
                Db::Passwd,
                ":x:0:0:root:/root:/bin/sh\n",
                1,
                "without a name",
            ),
            (Db::Group, "root:x:0:\nstaff:x:99999999999:\n", 2, "gid"),
            (Db::Group, "root:x:0\n", 1, "3 fields"),
        ];
        for (db, base, line, why) in cases {
            let (input, m) = merge(db, base, "", "").expect_err(base);
            assert_eq!(input, Input::Base, "{base}");
            assert_eq!(m.line, line, "{base}");
            assert!(m.to_string().contains(why), "{base}: {m}");
        }
        let (input, _) = merge(Db::Group, "", "oops\n", "").expect_err("ours");
        assert_eq!(input, Input::Ours);
    }
}
