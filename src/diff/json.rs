//! The JSON level of a diff: every leaf that differs between two JSON documents, named
//! by its path (`config.Env[1]`, `history[3].created`,
//! `config.Labels["org.opencontainers.image.source"]`), old → new.
//!
//! Objects are compared key by key (a key on one side only is added or removed);
//! arrays index by index (extra elements at the end are added or removed). A value
//! whose type differs is one change of the whole value.

use serde_json::Value;

/// One JSON value that differs. `None` means absent on that side.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonChange {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Every difference between `old` and `new`, in document order (object keys sorted,
/// as serde_json's maps are), below `prefix` (empty for the root).
pub fn changes(prefix: &str, old: &Value, new: &Value) -> Vec<JsonChange> {
    let mut out = Vec::new();
    walk(prefix, Some(old), Some(new), &mut out);
    out
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<JsonChange>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(&child_key(path, k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(JsonChange {
            path: if path.is_empty() {
                "(root)".to_string()
            } else {
                path.to_string()
            },
            old: a.cloned(),
            new: b.cloned(),
        }),
    }
}

/// `parent.key`, or `parent["key"]` when the key is not a plain identifier.
fn child_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

/// A value for a human: JSON text, or `(absent)`.
pub fn show(v: &Option<Value>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(absent)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_array_elements_and_nested_keys_by_path() {
        let a = json!({"config": {"Env": ["PATH=/bin", "A=1"]}, "history": [{"created": "x"}]});
        let b = json!({"config": {"Env": ["PATH=/bin", "A=2"]}, "history": [{"created": "y"}]});
        let c = changes("", &a, &b);
        assert_eq!(
            c.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(),
            ["config.Env[1]", "history[0].created"]
        );
        assert_eq!(c[0].old, Some(json!("A=1")));
        assert_eq!(c[0].new, Some(json!("A=2")));
    }

    #[test]
    fn keys_with_dots_are_quoted_and_absent_sides_are_none() {
        let a = json!({"Labels": {"org.x": "1"}, "Env": ["A=1"]});
        let b = json!({"Labels": {}, "Env": ["A=1", "B=2"]});
        let c = changes("config", &a, &b);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].path, "config.Env[1]");
        assert_eq!(
            (c[0].old.clone(), c[0].new.clone()),
            (None, Some(json!("B=2")))
        );
        assert_eq!(c[1].path, "config.Labels[\"org.x\"]");
        assert_eq!(c[1].new, None);
    }

    #[test]
    fn equal_documents_have_no_changes_and_a_type_change_is_one() {
        let a = json!({"a": [1, {"b": null}]});
        assert!(changes("", &a, &a.clone()).is_empty());
        let c = changes("", &json!({"a": [1]}), &json!({"a": {"0": 1}}));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "a");
    }
}
