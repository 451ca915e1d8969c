//! deb822 control data: the paragraphs of `Packages` indexes, `Release` files and a
//! package's `control`, and the dependency fields (`Depends`, `Pre-Depends`,
//! `Provides`).

use super::version;
use std::cmp::Ordering;

/// One paragraph: its fields in order, values with continuation lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph {
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of `key` (field names are case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The paragraph as deb822 text, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            out.push_str(k);
            out.push(':');
            for (i, line) in v.split('\n').enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if i == 0 && line.is_empty() {
                    continue;
                }
                out.push(' ');
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }
}

/// Splits deb822 text into paragraphs (blank lines separate them; `#` lines are
/// comments). Lines that are neither a field nor a continuation are an error.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, String> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(Paragraph {
                    fields: std::mem::take(&mut current),
                });
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = current.last_mut() else {
                return Err(format!(
                    "line {}: a continuation line without a field",
                    n + 1
                ));
            };
            // The first blank is syntax; the rest is the value's own (a
            // Description's verbatim lines keep their indentation).
            value.push('\n');
            value.push_str(&line[1..]);
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("line {}: not a `Field: value` line", n + 1));
        };
        current.push((key.trim().to_string(), value.trim().to_string()));
    }
    if !current.is_empty() {
        out.push(Paragraph { fields: current });
    }
    Ok(out)
}

/// A version relation of a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Earlier,
    EarlierEqual,
    Equal,
    LaterEqual,
    Later,
}

impl Relation {
    fn parse(op: &str) -> Option<Relation> {
        Some(match op {
            "<<" => Relation::Earlier,
            "<=" | "<" => Relation::EarlierEqual,
            "=" => Relation::Equal,
            ">=" | ">" => Relation::LaterEqual,
            ">>" => Relation::Later,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Relation::Earlier => "<<",
            Relation::EarlierEqual => "<=",
            Relation::Equal => "=",
            Relation::LaterEqual => ">=",
            Relation::Later => ">>",
        }
    }

    /// Whether `have` stands in this relation to `want`.
    pub fn holds(self, have: &str, want: &str) -> bool {
        let o = version::compare(have, want);
        match self {
            Relation::Earlier => o == Ordering::Less,
            Relation::EarlierEqual => o != Ordering::Greater,
            Relation::Equal => o == Ordering::Equal,
            Relation::LaterEqual => o != Ordering::Less,
            Relation::Later => o == Ordering::Greater,
        }
    }
}

/// One alternative of a dependency: a name and an optional version relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub version: Option<(Relation, String)>,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some((r, v)) => write!(f, "{} ({} {v})", self.name, r.symbol()),
            None => write!(f, "{}", self.name),
        }
    }
}

/// A `Depends`-style field: groups of alternatives (`a | b, c (>= 1)`). Architecture
/// qualifiers (`:any`) and restriction lists (`[…]`, `<…>`) are dropped.
pub fn parse_relations(field: &str) -> Result<Vec<Vec<Dependency>>, String> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in group.split('|') {
            alternatives.push(parse_one(alt)?);
        }
        groups.push(alternatives);
    }
    Ok(groups)
}

fn parse_one(text: &str) -> Result<Dependency, String> {
    let mut s = strip_enclosed(text, '[', ']');
    s = strip_enclosed(&s, '<', '>');
    let s = s.trim();
    let (name, rest) = match s.find(|c: char| c == '(' || c.is_whitespace()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    let name = name.split(':').next().unwrap_or(name);
    if !crate::recipe::valid_package_name(name) {
        return Err(format!("{:?} is not a dependency", text.trim()));
    }
    let version = if rest.is_empty() {
        None
    } else {
        let inner = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("{:?}: bad version relation", text.trim()))?
            .trim();
        let op_len = inner
            .find(|c: char| !"<>=".contains(c))
            .unwrap_or(inner.len());
        let relation = Relation::parse(&inner[..op_len])
            .ok_or_else(|| format!("{:?}: bad version relation", text.trim()))?;
        let v = inner[op_len..].trim();
        if v.is_empty() {
            return Err(format!("{:?}: a relation without a version", text.trim()));
        }
        Some((relation, v.to_string()))
    };
    Ok(Dependency {
        name: name.to_string(),
        version,
    })
}

/// `text` without any `open … close` parts outside a version relation's parentheses
/// (whose `<<` and `>>` are not restriction lists).
fn strip_enclosed(text: &str, open: char, close: char) -> String {
    let mut out = String::new();
    let (mut depth, mut in_version) = (0u32, false);
    for c in text.chars() {
        if depth == 0 && c == '(' {
            in_version = true;
        } else if in_version && c == ')' {
            in_version = false;
        } else if !in_version && c == open {
            depth += 1;
            continue;
        } else if !in_version && c == close && depth > 0 {
            depth -= 1;
            continue;
        }
        if depth == 0 {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paragraphs_with_continuations() {
        let p = parse("Package: a\nDescription: x\n more\n\nPackage: b\n").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("description"), Some("x\nmore"));
        assert_eq!(p[1].get("Package"), Some("b"));
        assert_eq!(p[0].to_text(), "Package: a\nDescription: x\n more\n");
        let verbatim = "Package: a\nDescription: x\n text\n .\n   indented code\n";
        assert_eq!(parse(verbatim).unwrap()[0].to_text(), verbatim);
    }

    #[test]
    fn parses_alternatives_relations_and_qualifiers() {
        let g =
            parse_relations("libc6 (>= 2.34), awk | mawk:any (<< 2), python3 [amd64] <!nocheck>")
                .unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(
            g[0][0].version,
            Some((Relation::LaterEqual, "2.34".to_string()))
        );
        assert_eq!(g[1][1].name, "mawk");
        assert_eq!(g[1][1].version, Some((Relation::Earlier, "2".to_string())));
        assert_eq!(g[2][0].name, "python3");
        assert!(parse_relations("a (~ 1)").is_err());
        assert!(Relation::Earlier.holds("1.0", "1.1"));
        assert!(!Relation::Later.holds("1.0", "1.0"));
    }
}
