//! The dependency closure of the packages a layer names, in one repository view
//! (one architecture plus `all`): `Depends` and `Pre-Depends` with alternatives,
//! version relations and `Provides`.
//!
//! The choice is deterministic and greedy, as simple as it can be while staying
//! predictable: a dependency already met by a chosen package needs nothing; otherwise
//! the first alternative that can be met is taken, by the highest version of a real
//! package that satisfies the relation, else by the first provider in name order.
//! Conflicts, Breaks and Recommends are not considered.

use super::control::Dependency;
use std::collections::{BTreeMap, VecDeque};

/// One package of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub filename: String,
    pub sha256: String,
    /// Which `[[apt-source]]` (by position in the recipe) serves it.
    pub source: usize,
    pub depends: Vec<Vec<Dependency>>,
    pub provides: Vec<Dependency>,
}

/// Why no closure exists.
#[derive(Debug, PartialEq, Eq)]
pub enum Unresolvable {
    /// A package the recipe names is not in the repository: its nearest names.
    Unknown { name: String, nearest: Vec<String> },
    /// A name the recipe lists is only provided by other packages (a virtual
    /// package): the packages that provide it.
    Virtual {
        name: String,
        providers: Vec<String>,
    },
    /// A dependency none of whose alternatives can be met; `root` is the name the
    /// recipe lists that needed it.
    Unmet {
        package: String,
        dependency: String,
        why: String,
        root: String,
    },
}

/// The view the closure is computed in: candidates by name (highest version first)
/// and by what they provide.
struct View<'a> {
    by_name: BTreeMap<&'a str, Vec<usize>>,
    providers: BTreeMap<&'a str, Vec<usize>>,
    all: &'a [Candidate],
}

impl<'a> View<'a> {
    fn new(all: &'a [Candidate]) -> View<'a> {
        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut providers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, c) in all.iter().enumerate() {
            by_name.entry(&c.name).or_default().push(i);
            for p in &c.provides {
                providers.entry(&p.name).or_default().push(i);
            }
        }
        for list in by_name.values_mut() {
            list.sort_by(|&a, &b| {
                super::version::compare(&all[b].version, &all[a].version)
                    .then_with(|| all[a].arch.cmp(&all[b].arch))
            });
        }
        for list in providers.values_mut() {
            list.sort_by(|&a, &b| {
                all[a]
                    .name
                    .cmp(&all[b].name)
                    .then_with(|| super::version::compare(&all[b].version, &all[a].version))
            });
        }
        View {
            by_name,
            providers,
            all,
        }
    }

    /// Whether candidate `i` meets `dep`, as the package itself or by a `Provides`.
    fn meets(&self, i: usize, dep: &Dependency) -> bool {
        let c = &self.all[i];
        let version_ok = |have: Option<&str>| match (&dep.version, have) {
            (None, _) => true,
            (Some((rel, want)), Some(have)) => rel.holds(have, want),
            (Some(_), None) => false,
        };
        (c.name == dep.name && version_ok(Some(&c.version)))
            || c.provides
                .iter()
                .any(|p| p.name == dep.name && version_ok(p.version.as_ref().map(|v| v.1.as_str())))
    }

    /// The candidate to take for `dep`: the highest real version that meets it, else
    /// the first provider; only candidates `free` allows.
    fn pick(&self, dep: &Dependency, free: impl Fn(usize) -> bool) -> Option<usize> {
        let real = self.by_name.get(dep.name.as_str()).into_iter().flatten();
        let provided = self.providers.get(dep.name.as_str()).into_iter().flatten();
        real.chain(provided)
            .copied()
            .find(|&i| free(i) && self.meets(i, dep))
    }

    /// Why `dep` cannot be met, for the message.
    fn why_not(&self, dep: &Dependency) -> String {
        match self.by_name.get(dep.name.as_str()) {
            Some(list) => {
                let versions: Vec<&str> =
                    list.iter().map(|&i| self.all[i].version.as_str()).collect();
                format!("the repository has {} {}", dep.name, versions.join(", "))
            }
            None => format!(
                "the repository has no package {} and none provides it",
                dep.name
            ),
        }
    }
}

/// The closure of `roots` in `candidates`: indexes into it, in name order.
pub fn closure(roots: &[String], candidates: &[Candidate]) -> Result<Vec<usize>, Unresolvable> {
    let view = View::new(candidates);
    let mut chosen: BTreeMap<&str, usize> = BTreeMap::new();
    // Which root each chosen package was taken for.
    let mut root_of: BTreeMap<usize, &str> = BTreeMap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    for root in roots {
        let dep = Dependency {
            name: root.clone(),
            version: None,
        };
        if !view.by_name.contains_key(root.as_str()) {
            if let Some(list) = view.providers.get(root.as_str()) {
                let mut providers: Vec<String> =
                    list.iter().map(|&i| candidates[i].name.clone()).collect();
                providers.dedup();
                return Err(Unresolvable::Virtual {
                    name: root.clone(),
                    providers,
                });
            }
        }
        let Some(i) = view.pick(&dep, |_| true) else {
            return Err(Unresolvable::Unknown {
                name: root.clone(),
                nearest: nearest_names(root, view.by_name.keys().copied()),
            });
        };
        if chosen.insert(&candidates[i].name, i).is_none() {
            root_of.insert(i, root);
            queue.push_back(i);
        }
    }
    while let Some(i) = queue.pop_front() {
        let root = root_of.get(&i).copied().unwrap_or_default();
        for group in &candidates[i].depends {
            if group
                .iter()
                .any(|d| chosen.values().any(|&c| view.meets(c, d)))
            {
                continue;
            }
            // A name already chosen (at a version that does not meet this dependency)
            // cannot be chosen twice: the next alternative is tried.
            let free = |c: usize| !chosen.contains_key(candidates[c].name.as_str());
            let Some(next) = group.iter().find_map(|d| view.pick(d, free)) else {
                let taken = group
                    .iter()
                    .find_map(|d| view.pick(d, |_| true))
                    .and_then(|c| chosen.get(candidates[c].name.as_str()));
                let why = match taken {
                    Some(&other) => format!(
                        "{} {} is already chosen",
                        candidates[other].name, candidates[other].version
                    ),
                    None => view.why_not(&group[0]),
                };
                let text: Vec<String> = group.iter().map(|d| d.to_string()).collect();
                return Err(Unresolvable::Unmet {
                    package: format!("{} {}", candidates[i].name, candidates[i].version),
                    dependency: text.join(" | "),
                    why,
                    root: root.to_string(),
                });
            };
            chosen.insert(&candidates[next].name, next);
            root_of.insert(next, root);
            queue.push_back(next);
        }
    }
    Ok(chosen.into_values().collect())
}

/// Up to three names nearest to `name`, nearest first.
fn nearest_names<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = names
        .map(|n| (strsim::damerau_levenshtein(name, n), n))
        .filter(|(d, n)| *d <= (n.len().max(name.len()) / 2).max(2) || n.contains(name))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::control::parse_relations;

    fn c(name: &str, version: &str, depends: &str, provides: &str) -> Candidate {
        Candidate {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            filename: format!("pool/{name}_{version}.deb"),
            sha256: String::new(),
            source: 0,
            depends: parse_relations(depends).unwrap(),
            provides: parse_relations(provides)
                .unwrap()
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    fn names(found: &[usize], all: &[Candidate]) -> Vec<String> {
        found
            .iter()
            .map(|&i| format!("{}={}", all[i].name, all[i].version))
            .collect()
    }

    #[test]
    fn takes_alternatives_provides_and_relations() {
        let all = vec![
            c(
                "app",
                "1",
                "libfoo (>= 2), awk | mawk, mail-transport-agent",
                "",
            ),
            c("libfoo", "1", "", ""),
            c("libfoo", "2", "", ""),
            c("mawk", "1.3", "", "awk"),
            c("exim", "4", "", "mail-transport-agent"),
            c("postfix", "3", "", "mail-transport-agent"),
        ];
        let got = closure(&["app".into()], &all).unwrap();
        assert_eq!(
            names(&got, &all),
            ["app=1", "exim=4", "libfoo=2", "mawk=1.3"]
        );
    }

    #[test]
    fn a_relation_rules_a_candidate_out() {
        let all = vec![c("app", "1", "libfoo (<< 2)", ""), c("libfoo", "2", "", "")];
        let err = closure(&["app".into()], &all).unwrap_err();
        assert!(matches!(err, Unresolvable::Unmet { ref why, .. } if why.contains("libfoo 2")));
    }

    #[test]
    fn the_next_alternative_is_taken_when_a_name_is_already_chosen_at_another_version() {
        let all = vec![
            c("app", "1", "libfoo (<< 2) | libbar", ""),
            c("libfoo", "1", "", ""),
            c("libfoo", "2", "", ""),
            c("libbar", "1", "", ""),
        ];
        let got = closure(&["libfoo".into(), "app".into()], &all).unwrap();
        assert_eq!(names(&got, &all), ["app=1", "libbar=1", "libfoo=2"]);
        // Without another alternative, the chosen version is named.
        let all = vec![
            c("app", "1", "libfoo (<< 2)", ""),
            c("libfoo", "1", "", ""),
            c("libfoo", "2", "", ""),
        ];
        let err = closure(&["libfoo".into(), "app".into()], &all).unwrap_err();
        assert!(
            matches!(err, Unresolvable::Unmet { ref why, .. } if why == "libfoo 2 is already chosen"),
            "{err:?}"
        );
    }

    #[test]
    fn a_virtual_name_in_the_recipe_is_refused_with_its_providers() {
        let all = vec![c("mawk", "1", "", "awk"), c("gawk", "5", "", "awk")];
        let err = closure(&["awk".into()], &all).unwrap_err();
        assert_eq!(
            err,
            Unresolvable::Virtual {
                name: "awk".into(),
                providers: vec!["gawk".into(), "mawk".into()]
            }
        );
    }

    #[test]
    fn an_unknown_name_gets_the_nearest() {
        let all = vec![c("ca-certificates", "1", "", ""), c("tzdata", "1", "", "")];
        let err = closure(&["ca-certificate".into()], &all).unwrap_err();
        assert_eq!(
            err,
            Unresolvable::Unknown {
                name: "ca-certificate".into(),
                nearest: vec!["ca-certificates".into()]
            }
        );
    }
}
