//! The recipe: `recipe.toml` parsed into typed structs (docs/recipe.md).
//!
//! This module owns syntax and per-key validation (types, ranges, absolute paths,
//! names); every error points at `file:line:col`. It never touches the build context:
//! resolving sources against the file system is the plan's job.
//!
//! `types` holds the structs, `load` reading and parsing (with serde's errors turned
//! into diagnostics), `validate` the per-table checks, `diagnostic` the rendering of
//! an error at a place in the recipe; here are the typed accessors of `[image]`.

mod apt;
mod diagnostic;
mod load;
mod types;
mod validate;

pub use apt::valid_package_name;
pub use diagnostic::RecipeSource;
pub use types::*;
pub use validate::valid_tag;

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::format::FormatVersion;
use crate::platform::Platform;
use crate::reference::{has_explicit_tag, Reference, RegistryRef};
use std::ops::Range;

impl Recipe {
    /// An input error pointing at `span` of this recipe.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        self.source.error_at(span, message)
    }

    /// An error when `text` (a reference at `span`) carries credentials: the message
    /// and the recipe excerpt show them as `<redacted>`.
    pub fn credentials_in_reference(
        &self,
        span: Range<usize>,
        text: &str,
        what: &str,
    ) -> Option<Error> {
        if !crate::reference::has_userinfo(text) {
            return None;
        }
        let shown = crate::reference::redact_userinfo(text);
        let mut err = Error::input(format!(
            "{what} {shown:?} carries credentials (user:password@)"
        ))
        .with_hint(crate::reference::CREDENTIALS_HINT);
        // The excerpt blanks the value's whole span: its source may spell the secret
        // with escapes (`\\`, `\u0040`) or as a literal string, so no text replace of
        // the decoded value is safe.
        if let Some(snippet) = self.source.snippet_redacted(span) {
            err = err.with_detail(snippet);
        }
        Some(err)
    }

    /// The platforms to build, from the recipe (default linux/amd64).
    pub fn platforms(&self) -> Result<Vec<Platform>> {
        let Some(list) = &self.image.platforms else {
            return Ok(vec![Platform::linux_amd64()]);
        };
        if list.get_ref().is_empty() {
            return Err(self.error_at(list.span(), "platforms is empty").with_hint(
                "list at least one platform, e.g. platforms = [\"linux/amd64\"], or remove the key",
            ));
        }
        let mut out: Vec<Platform> = Vec::new();
        for p in list.get_ref() {
            let platform = Platform::parse(p.get_ref()).map_err(|m| self.error_at(p.span(), m))?;
            if out.contains(&platform) {
                return Err(self.error_at(p.span(), format!("platform {platform} is listed twice")));
            }
            out.push(platform);
        }
        Ok(out)
    }

    pub fn compression(&self) -> Result<Compression> {
        match &self.image.compression {
            None => Ok(Compression::Gzip),
            Some(c) => Compression::parse(c.get_ref()).ok_or_else(|| {
                let mut err =
                    self.error_at(c.span(), format!("unknown compression {:?}", c.get_ref()));
                err = match crate::suggest::nearest(c.get_ref(), Compression::ALL) {
                    Some(n) => {
                        err.with_hint(format!("did you mean {n:?}? (one of gzip, zstd, none)"))
                    }
                    None => err.with_hint("use one of \"gzip\" (default), \"zstd\", \"none\""),
                };
                err
            }),
        }
    }

    /// `[image].format` as a known format version; None when the recipe names none.
    /// Exit 2 at the value for a version this imgbuild does not build.
    pub fn format(&self) -> Result<Option<FormatVersion>> {
        let Some(f) = &self.image.format else {
            return Ok(None);
        };
        let n = *f.get_ref();
        u64::try_from(n)
            .ok()
            .and_then(FormatVersion::from_number)
            .map(Some)
            .ok_or_else(|| {
                self.error_at(f.span(), format!("unknown format version {n}"))
                    .with_hint(format!(
                        "this imgbuild builds format versions {}; a newer imgbuild may know {n}",
                        FormatVersion::known()
                    ))
            })
    }

    /// `[image].repository` as a registry repository (no tag: the reference's default
    /// `latest` is dropped); None when the recipe names none. Exit 2 at the value
    /// when it is not `host[:port]/path` or carries a tag or digest.
    pub fn repository(&self) -> Result<Option<RegistryRef>> {
        let Some(repo) = &self.image.repository else {
            return Ok(None);
        };
        let text = repo.get_ref();
        if let Some(e) = self.credentials_in_reference(repo.span(), text, "[image].repository") {
            return Err(e);
        }
        let not_registry = |message: String| {
            self.error_at(repo.span(), message)
                .with_hint("write host[:port]/path, e.g. registry.example.com/acme/hello")
        };
        if text.starts_with("oci:") {
            return Err(not_registry(format!(
                "{text:?} is not a registry repository (it is a layout reference)"
            )));
        }
        if text.contains('@') || has_explicit_tag(text) {
            return Err(self
                .error_at(
                    repo.span(),
                    "[image].repository must not carry a tag or digest",
                )
                .with_hint("put tags in [image].tags; the build decides the digest"));
        }
        match Reference::parse(text) {
            Ok(Reference::Registry(mut r)) => {
                r.tag = None;
                Ok(Some(r))
            }
            Ok(Reference::Layout { .. } | Reference::Archive { .. }) => Err(not_registry(format!(
                "{text:?} is not a registry repository"
            ))),
            Err(m) => {
                // The parser's own "(in …; forms…)" tail: the hint says it better here.
                let why = m.split(" (in ").next().unwrap_or(&m);
                Err(not_registry(format!(
                    "{text:?} is not a registry repository: {why}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse(text: &str) -> Result<Recipe> {
        Recipe::parse(
            RecipeSource {
                path: "recipe.toml".into(),
                text: text.into(),
            },
            PathBuf::from("/nonexistent"),
        )
    }

    #[test]
    fn recipe_errors_carry_the_recipe_path_and_the_toml_cause() {
        let e = parse("[image]\nplatforms = 3\n").unwrap_err();
        assert_eq!(e.path(), Some(std::path::Path::new("recipe.toml")));
        let cause = std::error::Error::source(&e);
        assert!(
            cause.is_some_and(|c| c.downcast_ref::<toml::de::Error>().is_some()),
            "{cause:?}"
        );
        let e = parse("[[layer]]\nname = \"l\"\n[[layer.dir]]\npath = \"rel\"\n").unwrap_err();
        assert_eq!(e.path(), Some(std::path::Path::new("recipe.toml")));
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_recipe_is_valid_and_defaults_to_linux_amd64_gzip() {
        let r = parse("").unwrap();
        assert_eq!(r.platforms().unwrap(), vec![Platform::linux_amd64()]);
        assert_eq!(r.compression().unwrap(), Compression::Gzip);
    }

    #[test]
    fn format_names_a_known_version_and_an_unknown_one_is_exit_2_at_its_value() {
        assert_eq!(parse("").unwrap().format().unwrap(), None);
        let r = parse("[image]\nformat = 1\n").unwrap();
        assert_eq!(r.format().unwrap(), Some(FormatVersion::V1));
        for bad in ["7", "0", "-1"] {
            let e = parse(&format!("[image]\nformat = {bad}\n")).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::ExitCode::BadInput);
            let e = e.to_string();
            assert!(e.contains(&format!("unknown format version {bad}")), "{e}");
            assert!(e.contains("recipe.toml:2:10"), "{e}");
            assert!(e.contains("1, 2 (the newest)"), "{e}");
        }
        let e = err("[image]\nformat = \"2\"\n");
        assert!(
            e.contains("recipe.toml:2:10")
                && e.contains("`format` must be a whole number, not a string (\"2\")"),
            "{e}"
        );
    }

    #[test]
    fn the_format_annotation_is_reserved() {
        let e = err("[annotations]\n\"org.imgbuild.format-version\" = \"1\"\n");
        assert!(
            e.contains("imgbuild's own") && e.contains("recipe.toml:2:2"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named_with_nearest_suggestion_and_location() {
        let e = err("[[layer]]\nname = \"a\"\n  [[layer.copy]]\n  src = \"x\"\n  dts = \"/x\"\n");
        assert!(e.contains("unknown key `dts`"), "{e}");
        assert!(e.contains("did you mean `dst`?"), "{e}");
        assert!(e.contains("recipe.toml:5:3"), "{e}");
        assert!(e.contains("5 |   dts = \"/x\""), "{e}");
    }

    #[test]
    fn unknown_top_level_table_suggests_the_right_one() {
        let e = err("[imgae]\ntags = []\n");
        assert!(
            e.contains("unknown key `imgae`") && e.contains("did you mean `image`?"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_shows_line_and_column() {
        let e = err("[image]\ntags = [\"a\"\n");
        assert!(e.contains("recipe.toml:"), "{e}");
        assert!(e.starts_with("error: invalid recipe"), "{e}");
    }

    #[test]
    fn wrong_type_is_reported_at_the_value() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.dir]]\npath = \"/d\"\nmode = \"755\"\n");
        assert!(e.contains("recipe.toml:5:8"), "{e}");
        assert!(
            e.contains("`mode` must be a whole number, not a string (\"755\")"),
            "{e}"
        );
        assert!(e.contains("help: write mode = 0o644"), "{e}");
    }

    #[test]
    fn mode_out_of_range_is_rejected() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.dir]]\npath = \"/d\"\nmode = 0o17777\n");
        assert!(
            e.contains("mode 0o17777 is out of range") && e.contains("recipe.toml:5:8"),
            "{e}"
        );
    }

    #[test]
    fn relative_and_dotdot_destinations_are_rejected() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"etc/x\"\ncontent = \"\"\n");
        assert!(
            e.contains("not an absolute path") && e.contains("\"/etc/x\""),
            "{e}"
        );
        let e =
            err("[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"/etc/../x\"\ncontent = \"\"\n");
        assert!(e.contains("'..'"), "{e}");
    }

    #[test]
    fn unknown_platform_and_compression_are_rejected_with_hints() {
        let e = err("[image]\nplatforms = [\"linux/amd46\"]\n");
        assert!(
            e.contains("unknown architecture") && e.contains("recipe.toml:2:14"),
            "{e}"
        );
        let e = err("[image]\ncompression = \"zstandard\"\n");
        assert!(
            e.contains("unknown compression") && e.contains("help:"),
            "{e}"
        );
    }

    #[test]
    fn source_date_epoch_accepts_integer_or_git_only() {
        assert!(parse("[image]\nsource-date-epoch = 5\n").is_ok());
        assert!(parse("[image]\nsource-date-epoch = \"git\"\n").is_ok());
        assert!(err("[image]\nsource-date-epoch = \"now\"\n").contains("not understood"));
        assert!(err("[image]\nsource-date-epoch = -3\n").contains("out of range"));
    }

    #[test]
    fn url_archive_requires_sha256() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer.archive]]\nurl = \"https://x/y.tar\"\n");
        assert!(e.contains("needs sha256"), "{e}");
    }

    const ARCHIVE: &str =
        "[[layer]]\nname = \"a\"\n[[layer.archive]]\nurl = \"https://x/{arch}.tar\"\n";

    #[test]
    fn url_archive_sha256_table_pins_each_platform() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let r = parse(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/amd64\" = \"{a}\", \"linux/arm64\" = \"{b}\" }}\n"
        ))
        .unwrap();
        let item = r.layers[0].get_ref().archive[0].get_ref();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let s390x = Platform::parse("linux/s390x").unwrap();
        assert_eq!(item.sha256_for(&Platform::linux_amd64()), Some(a.as_str()));
        assert_eq!(item.sha256_for(&arm64), Some(b.as_str()));
        assert_eq!(item.sha256_for(&s390x), None);
    }

    #[test]
    fn url_archive_sha256_string_pins_every_platform() {
        let a = "0".repeat(64);
        let r = parse(&format!("{ARCHIVE}sha256 = \"{a}\"\n")).unwrap();
        let item = r.layers[0].get_ref().archive[0].get_ref();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(item.sha256_for(&arm64), Some(a.as_str()));
    }

    #[test]
    fn url_archive_sha256_table_rejects_bad_keys_and_hashes() {
        let a = "a".repeat(64);
        let e = err(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/amd46\" = \"{a}\" }}\n"
        ));
        assert!(
            e.contains("sha256 table key \"linux/amd46\"") && e.contains("recipe.toml:5:10"),
            "{e}"
        );
        let e = err(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/amd64\" = \"ABC\" }}\n"
        ));
        assert!(
            e.contains("sha256 for linux/amd64 must be 64 lowercase hex digits"),
            "{e}"
        );
        let e = err(&format!("{ARCHIVE}sha256 = {{}}\n"));
        assert!(e.contains("the sha256 table is empty"), "{e}");
        let e = err(&format!(
            "{ARCHIVE}sha256 = {{ \"linux/arm64\" = \"{a}\", \"linux/arm64/\" = \"{a}\" }}\n"
        ));
        assert!(e.contains("sha256 table key"), "{e}");
    }

    #[test]
    fn url_archive_sha256_of_another_type_says_what_is_expected() {
        let e = err(&format!("{ARCHIVE}sha256 = 5\n"));
        assert!(
            e.contains("sha256 must be a string or a table of platform = string")
                && e.contains("recipe.toml:5:"),
            "{e}"
        );
        let e = err(&format!(
            "{ARCHIVE}sha256 = \"sha256:{}\"\n",
            "a".repeat(64)
        ));
        assert!(e.contains("sha256 must be 64 lowercase hex digits"), "{e}");
    }

    /// TOML spellings of a reference whose userinfo holds `SEK…RIT`: escapes, a
    /// unicode escape (one for the `@` itself), a literal string, a multi-line string.
    const SPELLED_SECRETS: [&str; 6] = [
        r#""bob:SEK\\RIT@host.example/repo""#,
        r#""bob:SEK\u0052IT@host.example/repo""#,
        r#""bob:SEK/RIT\u0040host.example/repo""#,
        r#"'bob:SEK/R\IT@host.example/repo'"#,
        r#""https://bob:SEK%2FRIT@host.example/repo""#,
        "\"\"\"\nbob:SEK\\\\RIT@host.example/repo\"\"\"",
    ];

    fn assert_redacted(e: &Error, value: &str) {
        let shown = e.to_string();
        assert_eq!(e.exit_code(), crate::error::ExitCode::BadInput, "{shown}");
        assert!(
            !shown.contains("SEK") && !shown.contains("bob"),
            "{value} is shown: {shown}"
        );
        assert!(shown.contains("\"<redacted>\""), "{shown}");
        assert!(shown.contains("recipe.toml:"), "{shown}");
        assert!(shown.contains("docker login"), "{shown}");
    }

    #[test]
    fn a_repository_spelled_with_escapes_is_redacted_in_message_and_excerpt() {
        for value in SPELLED_SECRETS {
            let e = parse(&format!("[image]\nrepository = {value}\n")).unwrap_err();
            assert_redacted(&e, value);
        }
    }

    #[test]
    fn a_base_image_spelled_with_escapes_is_redacted_in_message_and_excerpt() {
        for value in SPELLED_SECRETS {
            let r = parse(&format!("[base]\nimage = {value}\n")).unwrap();
            let image = r.base.image.as_ref().unwrap();
            let e = r
                .credentials_in_reference(image.span(), image.get_ref(), "base image")
                .unwrap();
            assert_redacted(&e, value);
        }
    }

    #[test]
    fn duplicate_layer_names_are_rejected() {
        let e = err("[[layer]]\nname = \"a\"\n[[layer]]\nname = \"a\"\n");
        assert!(e.contains("two layers are named \"a\""), "{e}");
    }
}
