//! Loading a recipe: reading the file, parsing the TOML, and turning serde's errors
//! into diagnostics at `file:line:col`.

use super::types::RawRecipe;
use super::{Recipe, RecipeSource};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
                Error::input(format!("recipe {} does not exist", path.display()))
                    .with_path(path)
                    .with_source(e)
                    .with_hint(
                    "pass the recipe's path (e.g. path/to/recipe.toml, or the directory holding it), or run in the directory that holds recipe.toml",
                )
            } else if e.kind() == std::io::ErrorKind::InvalidData {
                Error::input(format!("recipe {} is not UTF-8 text", path.display()))
                    .with_path(path)
                    .with_source(e)
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
            apt_sources: raw.apt_source,
            layers: raw.layer,
        };
        recipe.validate()?;
        Ok(recipe)
    }
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
                span.clone(),
                "source-date-epoch must be a whole number of seconds or \"git\"",
            )
            .with_hint("e.g. source-date-epoch = 1700000000");
    }
    if let Some(words) = type_error_in_words(source, &span, &message) {
        let (message, hint) = words;
        err = source.error_at(span.clone(), message).with_hint(hint);
    }
    if let Some((unknown, expected)) = parse_unknown_field(&message) {
        let keys: Vec<&str> = expected.iter().map(String::as_str).collect();
        err = Error::input(format!("unknown key `{unknown}`"))
            .with_detail(source.snippet(e.span().unwrap_or(0..0)))
            .with_path(&source.path);
        err = match crate::suggest::nearest(&unknown, keys.iter().copied()) {
            Some(n) => err.with_hint(format!(
                "did you mean `{n}`? (valid keys here: {})",
                keys.join(", ")
            )),
            None => err.with_hint(format!("valid keys here: {}", keys.join(", "))),
        };
    }
    err.with_source(e.clone())
}

/// serde's "invalid type: integer `5`, expected a string" in words: which key, what it
/// must be, what it is, and an example. `None` for other messages (or a type serde
/// names in a way not listed here, left as serde says it).
fn type_error_in_words(
    source: &RecipeSource,
    span: &std::ops::Range<usize>,
    message: &str,
) -> Option<(String, String)> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    let key = key_at(&source.text, span.start)?;
    let found = match found.split_once(' ') {
        Some((kind, value)) => format!("{} ({})", kind_in_words(kind)?, value.trim_matches('`')),
        None => kind_in_words(found)?.to_string(),
    };
    let (must, example) = match expected {
        "a string" => ("a string", format!("{key} = \"…\" (in double quotes)")),
        "a sequence" => (
            "an array",
            format!("{key} = [\"…\"] (an array, even for one value)"),
        ),
        "u8" | "u16" | "u32" | "u64" | "i32" | "i64" | "an integer" => (
            "a whole number",
            if key == "mode" {
                "mode = 0o644 (a number without quotes; 0o for octal)".to_string()
            } else {
                format!("{key} = 1000 (a number without quotes)")
            },
        ),
        "a boolean" => ("true or false", format!("{key} = true (without quotes)")),
        _ if expected.starts_with("struct ") || expected == "a map" => (
            "a table",
            format!("[{key}] on its own line, or {key} = {{ … }}"),
        ),
        _ => return None,
    };
    Some((
        format!("`{key}` must be {must}, not {found}"),
        format!("write {example}"),
    ))
}

/// serde's name of a TOML value's kind, in words.
fn kind_in_words(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "integer" => "a number",
        "string" => "a string",
        "sequence" => "an array",
        "boolean" => "a boolean",
        "map" => "a table",
        "floating" | "float" => "a decimal number",
        _ => return None,
    })
}

/// The key whose value starts at `offset`: the text before `=` on its line;
/// `None` when the value is an element of an array or inline table (the key's own
/// type is not what is wrong then) or the line is not `key = value`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let (key, value_so_far) = line.split_once('=')?;
    if value_so_far.contains(['[', '{']) {
        return None;
    }
    let key = key.trim();
    // A quoted key is whole ("org.opencontainers.image.title"); a dotted one's last part.
    let key = match key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
        Some(quoted) => quoted,
        None => key.rsplit('.').next()?.trim(),
    };
    (!key.is_empty()).then(|| key.to_string())
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
mod key_tests {
    use super::key_at;

    fn at(text: &str, value: &str) -> Option<String> {
        key_at(text, text.find(value).expect("value in text"))
    }

    #[test]
    fn the_key_of_a_value_in_words_only_where_the_key_is_at_fault() {
        assert_eq!(at("compression = 5\n", "5").as_deref(), Some("compression"));
        assert_eq!(at("a.b.mode = \"x\"\n", "\"x\"").as_deref(), Some("mode"));
        assert_eq!(
            at("\"org.opencontainers.image.title\" = 5\n", "5").as_deref(),
            Some("org.opencontainers.image.title")
        );
        // An element of an array or inline table: not the key's type.
        assert_eq!(at("platforms = [\"linux/amd64\", 5]\n", "5"), None);
        assert_eq!(at("env = { A = 5 }\n", "5"), None);
    }
}
