//! `[[user]]` and `[[group]]`: the generated `/etc/passwd` and `/etc/group`.
//!
//! They form their own layer, named "accounts", placed before the recipe's layers, so
//! that a recipe layer may still replace either file. `root` (uid and gid 0) is always
//! present, first; users follow in recipe order; a user whose primary gid names no
//! `[[group]]` gets a group of its own name with that gid.

use super::{Content, EntryKind, LayerPlan, Meta};
use crate::error::Result;
use crate::recipe::Recipe;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const LAYER_NAME: &str = "accounts";

pub(crate) fn layer(recipe: &Recipe) -> Result<Option<LayerPlan>> {
    if recipe.users.is_empty() && recipe.groups.is_empty() {
        return Ok(None);
    }
    let (passwd, group) = files(recipe)?;
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

/// The text of `/etc/passwd` and `/etc/group`.
fn files(recipe: &Recipe) -> Result<(String, String)> {
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
    let mut passwd = String::from("root:x:0:0:root:/root:/sbin/nologin\n");
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
    let group = groups
        .iter()
        .map(|(n, gid, members)| format!("{n}:x:{gid}:{}\n", members.join(",")))
        .collect();
    Ok((passwd, group))
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
