//! `[[user]]` and `[[group]]`: the generated `/etc/passwd` and `/etc/group`.
//!
//! They form their own layer, named "accounts", placed before the recipe's layers, so
//! that a recipe layer may still replace either file. `root` (uid and gid 0) is always
//! present, first; users follow in recipe order; a user whose primary gid names no
//! `[[group]]` gets a group of its own name with that gid.
//!
//! That is the layer a plan gets. On a base image that has either file, format 2 and
//! later merge the recipe's entries into the base's instead ([`merged`],
//! [`replace_file`]; the rules are `super::passwd`'s): the build does it once the
//! base is read (`crate::build`), since a registry base is pulled after planning.

use super::passwd::{self, Db};
use super::{Content, EntryKind, LayerPlan, Meta, Plan};
use crate::error::Result;
use crate::recipe::Recipe;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const LAYER_NAME: &str = "accounts";

/// The implicit `root` user: a default, never replacing a base's root.
const ROOT_PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n";
/// The implicit `root` group, without members.
const ROOT_GROUP: &str = "root:x:0:\n";

pub(crate) fn layer(recipe: &Recipe) -> Result<Option<LayerPlan>> {
    if !has_accounts(recipe) {
        return Ok(None);
    }
    let accounts = files(recipe)?;
    let (passwd, group) = (accounts.passwd_file(), accounts.group_file());
    let file = |path: &str, bytes: String| super::Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::File {
            size: bytes.len() as u64,
            content: Content::Inline(Arc::new(bytes.into_bytes())),
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let dir = Meta {
        mode: super::DIR_MODE,
        uid: 0,
        gid: 0,
    };
    Ok(Some(LayerPlan {
        name: LAYER_NAME.to_string(),
        entries: vec![
            super::Entry {
                path: b"etc/".to_vec(),
                kind: EntryKind::Dir,
                mode: dir.mode,
                uid: dir.uid,
                gid: dir.gid,
            },
            file("etc/group", group),
            file("etc/passwd", passwd),
        ],
    }))
}

fn has_accounts(recipe: &Recipe) -> bool {
    !recipe.users.is_empty() || !recipe.groups.is_empty()
}

/// The plan's accounts layer: its first, when the recipe has accounts.
pub fn layer_mut<'p>(recipe: &Recipe, plan: &'p mut Plan) -> Option<&'p mut LayerPlan> {
    if !has_accounts(recipe) {
        return None;
    }
    plan.layers.first_mut().filter(|l| l.name == LAYER_NAME)
}

/// The recipe's entries: passwd lines after root's, and every group in order (root
/// first, with the members the recipe gives it).
struct Accounts {
    passwd: String,
    groups: Vec<(String, u32, Vec<String>)>,
}

impl Accounts {
    /// `/etc/passwd` as a plan writes it (and format 1 on any base).
    fn passwd_file(&self) -> String {
        format!("{ROOT_PASSWD}{}", self.passwd)
    }

    /// `/etc/group` as a plan writes it.
    fn group_file(&self) -> String {
        self.group_lines(true)
    }

    fn group_lines(&self, with_bare_root: bool) -> String {
        self.groups
            .iter()
            .filter(|(n, gid, members)| {
                with_bare_root || !(n == "root" && *gid == 0 && members.is_empty())
            })
            .map(|(n, gid, members)| format!("{n}:x:{gid}:{}\n", members.join(",")))
            .collect()
    }
}

/// The base's `db` file (`base`) with the recipe's entries merged in
/// (`super::passwd::merge`): root is the recipe's only where the base has none, and
/// the root group is the recipe's only when the recipe adds members to it.
pub fn merged(
    recipe: &Recipe,
    db: Db,
    base: &str,
) -> Result<std::result::Result<passwd::Merged, (passwd::Input, passwd::Malformed)>> {
    let accounts = files(recipe)?;
    Ok(match db {
        Db::Passwd => passwd::merge(db, base, &accounts.passwd, ROOT_PASSWD),
        Db::Group => passwd::merge(db, base, &accounts.group_lines(false), ROOT_GROUP),
    })
}

/// Puts `text` in the accounts layer as `db`'s file, in place of what it held.
pub fn replace_file(layer: &mut LayerPlan, db: Db, text: String) {
    let path = &db.path().as_bytes()[1..];
    for entry in layer.entries.iter_mut().filter(|e| e.path == path) {
        entry.kind = EntryKind::File {
            size: text.len() as u64,
            content: Content::Inline(Arc::new(text.clone().into_bytes())),
        };
    }
}

/// The recipe's accounts.
fn files(recipe: &Recipe) -> Result<Accounts> {
    // name -> (gid, members), in order of first appearance.
    let mut groups: Vec<(String, u32, Vec<String>)> = vec![("root".into(), 0, Vec::new())];
    let mut seen_gid: BTreeSet<u32> = BTreeSet::from([0]);
    for g in &recipe.groups {
        let span = g.span();
        let g = g.get_ref();
        let name = g.name.get_ref();
        if groups.iter().any(|(n, _, _)| n == name) || seen_gid.contains(&g.gid) {
            if name == "root" && g.gid == 0 {
                continue;
            }
            return Err(recipe.error_at(
                span,
                format!(
                    "group {name:?} (gid {}) clashes with an earlier group's name or gid",
                    g.gid
                ),
            ));
        }
        seen_gid.insert(g.gid);
        groups.push((name.clone(), g.gid, Vec::new()));
    }
    let mut passwd = String::new();
    let mut users_seen: BTreeMap<String, u32> = BTreeMap::from([("root".to_string(), 0)]);
    for u in &recipe.users {
        let span = u.span();
        let u = u.get_ref();
        let name = u.name.get_ref();
        if name == "root" && u.uid == 0 {
            continue;
        }
        if users_seen.contains_key(name) || users_seen.values().any(|&id| id == u.uid) {
            return Err(recipe
                .error_at(
                    span,
                    format!(
                        "user {name:?} (uid {}) clashes with an earlier user's name or uid",
                        u.uid
                    ),
                )
                .with_hint(
                    "every [[user]] needs its own name and uid (root, uid 0, is always present)",
                ));
        }
        users_seen.insert(name.clone(), u.uid);
        let gid = u.gid.unwrap_or(u.uid);
        if seen_gid.insert(gid) {
            if groups.iter().any(|(n, _, _)| n == name) {
                return Err(recipe.error_at(span, format!("user {name:?} needs a group of its own name with gid {gid}, but group {name:?} has another gid")));
            }
            groups.push((name.clone(), gid, Vec::new()));
        }
        let home = u.home.as_deref().unwrap_or("/");
        let shell = u.shell.as_deref().unwrap_or("/sbin/nologin");
        for field in [home, shell] {
            if field.contains([':', '\n']) {
                return Err(recipe.error_at(
                    span.clone(),
                    format!("{field:?} may not contain ':' or a newline"),
                ));
            }
        }
        passwd.push_str(&format!("{name}:x:{}:{gid}:{name}:{home}:{shell}\n", u.uid));
        for sg in &u.groups {
            match groups.iter_mut().find(|(n, _, _)| n == sg.get_ref()) {
                Some((_, _, members)) => members.push(name.clone()),
                None => {
                    return Err(recipe
                        .error_at(
                            sg.span(),
                            format!(
                                "user {name:?} joins group {:?}, which no [[group]] defines",
                                sg.get_ref()
                            ),
                        )
                        .with_hint("add a [[group]] with that name and a gid"))
                }
            }
        }
    }
    Ok(Accounts { passwd, groups })
}

/// Resolves `config.user` — a `[[user]]` name, `uid` or `uid:gid` — to `uid:gid` or `uid`.
pub fn resolve_user(recipe: &Recipe, user: &str) -> Option<String> {
    if user
        .split(':')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && user.split(':').count() <= 2
    {
        return Some(user.to_string());
    }
    if user == "root" {
        return Some("0:0".into());
    }
    recipe
        .users
        .iter()
        .map(|u| u.get_ref())
        .find(|u| u.name.get_ref() == user)
        .map(|u| format!("{}:{}", u.uid, u.gid.unwrap_or(u.uid)))
}
