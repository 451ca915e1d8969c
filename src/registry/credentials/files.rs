//! Sources 2–4: the containers `auth.json` files and Docker's `config.json` — where
//! they are, how they are parsed, and how their keys match a registry.

use std::io::{self};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

use super::helper::{Helper, Server};
use super::*;

/// `config.json` (keys are hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Containers,
    Docker,
}

pub(super) struct FileSource {
    pub(super) path: PathBuf,
    pub(super) kind: Kind,
    /// Named by `REGISTRY_AUTH_FILE`: missing is an error rather than skipped.
    pub(super) required: bool,
}

/// Sources 2–4, in order.
pub(super) fn file_sources(env: &Environment) -> Vec<FileSource> {
    let mut sources = Vec::new();
    let mut add = |path: PathBuf, kind: Kind, required: bool| {
        sources.push(FileSource {
            path,
            kind,
            required,
        })
    };
    if let Some(file) = env.get("REGISTRY_AUTH_FILE") {
        add(PathBuf::from(file), Kind::Containers, true);
    }
    if let Some(dir) = env.get("XDG_RUNTIME_DIR") {
        add(
            Path::new(dir).join("containers/auth.json"),
            Kind::Containers,
            false,
        );
    }
    let home = env.get("HOME").map(Path::new);
    if let Some(home) = home {
        add(
            home.join(".config/containers/auth.json"),
            Kind::Containers,
            false,
        );
    }
    if let Some(dir) = env.get("DOCKER_CONFIG") {
        add(Path::new(dir).join("config.json"), Kind::Docker, false);
    } else if let Some(home) = home {
        add(home.join(".docker/config.json"), Kind::Docker, false);
    }
    sources
}

pub(super) fn read_source(source: &FileSource) -> Result<Option<Vec<u8>>> {
    match std::fs::read(&source.path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if is_missing(&e) && !source.required => Ok(None),
        Err(e) if is_missing(&e) => Err(Error::input(format!(
            "REGISTRY_AUTH_FILE names {}, which does not exist",
            source.path.display()
        ))
        .with_hint(
            "log in to create it (`podman login`, `skopeo login --authfile FILE`), \
             or unset REGISTRY_AUTH_FILE",
        )),
        Err(e) => Err(Error::io_path(
            "cannot read credentials file",
            &source.path,
            e,
        )),
    }
}

pub(super) fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The registry and repository being looked up, normalized for matching.
pub(super) struct Target<'a> {
    /// As the caller wrote it: what a credential helper gets (outside Docker Hub).
    pub(super) written: &'a str,
    /// Canonical host: lower case, Docker Hub's aliases as `docker.io`.
    pub(super) host: String,
    /// `host/repository`, for namespaced keys.
    pub(super) name: String,
}

impl<'a> Target<'a> {
    pub(super) fn new(registry: &'a str, repository: &str) -> Self {
        let host = canonical_host(registry.trim());
        let repository = repository.trim_matches('/');
        let name = if repository.is_empty() {
            host.clone()
        } else {
            format!("{host}/{repository}")
        };
        Target {
            written: registry,
            host,
            name,
        }
    }

    /// The server URL credential helpers store this registry under.
    pub(super) fn server_url(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_SERVER_URL
        } else {
            self.written
        }
    }

    /// How well a normalized key matches: its length when it is the host or a prefix
    /// of `host/repository` at a `/` boundary (longer is more specific), else None.
    pub(super) fn specificity(&self, normalized_key: &str) -> Option<usize> {
        let matches = normalized_key == self.host
            || self
                .name
                .strip_prefix(normalized_key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        matches.then_some(normalized_key.len())
    }

    /// Breaks a tie between keys that normalize alike: the server URL docker stores
    /// this registry under first, then the registry as written, then the rest.
    pub(super) fn spelling_rank(&self, key: &str) -> u8 {
        if key == self.server_url() {
            0
        } else if key == self.written {
            1
        } else {
            2
        }
    }
}

pub(super) fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// A key of `auths` or `credHelpers` in the form it is matched in: scheme dropped, a
/// path dropped when there was a scheme or namespaces are not allowed, Docker Hub's
/// aliases as `docker.io`, trailing slashes gone.
pub(super) fn normalize_key(key: &str, namespaced: bool) -> String {
    let key = key.trim();
    let mut rest = key;
    let mut had_scheme = false;
    for scheme in ["https://", "http://"] {
        if rest.len() >= scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
            rest = &rest[scheme.len()..];
            had_scheme = true;
            break;
        }
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = canonical_host(host);
    let path = path.trim_matches('/');
    if had_scheme || !namespaced || path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    }
}

/// One `auths` entry, its fields checked to be strings (or absent/null).
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) normalized: String,
    pub(super) auth: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) identity_token: Option<String>,
}

pub(super) fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl Entry {
    /// Whether the entry holds anything: Docker writes `{}` when a credsStore has the
    /// secret, and an entry may carry only a legacy `email`.
    pub(super) fn is_usable(&self) -> bool {
        non_empty(&self.identity_token).is_some()
            || non_empty(&self.auth).is_some()
            || non_empty(&self.username).is_some()
            || non_empty(&self.password).is_some()
    }

    pub(super) fn credential(&self, path: &Path) -> Result<Credential> {
        if let Some(token) = non_empty(&self.identity_token) {
            return Ok(Credential::IdentityToken(Secret::new(token)));
        }
        let bad = |what: &str| {
            Error::input(format!(
                "the auths entry {:?} in {} {what}",
                self.key,
                path.display()
            ))
            .with_detail(format!("  --> {}", path.display()))
            .with_hint("log in again to rewrite the entry, or remove it from the file")
        };
        if let Some(auth) = non_empty(&self.auth) {
            let decoded = auth_engine()
                .decode(auth.trim())
                .map_err(|_| bad("has an \"auth\" that is not valid base64"))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| bad("has an \"auth\" that does not decode to UTF-8 text"))?;
            let Some((username, password)) = decoded.split_once(':') else {
                return Err(bad(
                    "has an \"auth\" that does not decode to \"user:password\"",
                ));
            };
            return Ok(Credential::Basic {
                username: username.to_string(),
                password: Secret::new(password),
            });
        }
        match (non_empty(&self.username), &self.password) {
            (Some(username), Some(password)) => Ok(Credential::Basic {
                username: username.to_string(),
                password: Secret::new(password.as_str()),
            }),
            (Some(_), None) => Err(bad("has a \"username\" but no \"password\"")),
            _ => Err(bad("has a \"password\" but no \"username\"")),
        }
    }
}

/// Standard base64, padded or not (tools differ).
pub(super) fn auth_engine() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// What one credentials file says, its structure checked.
pub(super) struct AuthFile<'a> {
    pub(super) path: &'a Path,
    pub(super) auths: Vec<Entry>,
    /// (raw key, normalized host, helper name)
    pub(super) cred_helpers: Vec<(String, String, String)>,
    pub(super) creds_store: Option<String>,
}

/// A structural error in a credentials file, naming the key path but never a value.
pub(super) fn malformed(path: &Path, location: &str, expected: &str) -> Error {
    Error::input(format!(
        "{} is not a valid credentials file: {location} must be {expected}",
        path.display()
    ))
    .with_detail(format!("  --> {}", path.display()))
    .with_hint("fix the file by hand, or log in again to rewrite it")
}

/// A string field, or None when absent or null.
pub(super) fn string_field(
    object: &Map<String, Value>,
    field: &str,
    path: &Path,
    location: impl Fn() -> String,
) -> Result<Option<String>> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed(
            path,
            &format!("{}.{field}", location()),
            "a string",
        )),
    }
}

/// An object field, or None when absent or null.
pub(super) fn object_field<'v>(
    object: &'v Map<String, Value>,
    field: &str,
    path: &Path,
) -> Result<Option<&'v Map<String, Value>>> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(malformed(path, field, "an object")),
    }
}

/// A helper name becomes part of a program name: it must not be a path.
pub(super) fn check_helper_name(name: &str, location: &str, path: &Path) -> Result<()> {
    if name.contains(['/', '\\', '\0']) || name.trim() != name {
        return Err(malformed(
            path,
            location,
            "a credential helper name (the part after docker-credential-), not a path",
        ));
    }
    Ok(())
}

impl<'a> AuthFile<'a> {
    /// Parses and checks a file; None when it is empty.
    pub(super) fn parse(path: &'a Path, kind: Kind, bytes: &[u8]) -> Result<Option<Self>> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        // Parse to a Value first: serde_json's syntax errors name a position, never
        // the text, while typed deserialization errors would quote values (secrets).
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::input(format!(
                "cannot parse credentials file {}: {e}",
                path.display()
            ))
            .with_detail(format!(
                "  --> {}:{}:{}",
                path.display(),
                e.line(),
                e.column()
            ))
            .with_hint(format!(
                "fix the JSON (`jq . {}` shows where it breaks), or log in again to rewrite the file",
                path.display()
            ))
        })?;
        let Value::Object(top) = &value else {
            return Err(malformed(path, "the file", "a JSON object"));
        };

        let mut auths = Vec::new();
        if let Some(map) = object_field(top, "auths", path)? {
            for (key, entry) in map {
                let location = || format!("auths.{key:?}");
                let Value::Object(fields) = entry else {
                    if entry.is_null() {
                        continue;
                    }
                    return Err(malformed(path, &location(), "an object"));
                };
                auths.push(Entry {
                    key: key.clone(),
                    normalized: normalize_key(key, kind == Kind::Containers),
                    auth: string_field(fields, "auth", path, location)?,
                    username: string_field(fields, "username", path, location)?,
                    password: string_field(fields, "password", path, location)?,
                    identity_token: string_field(fields, "identitytoken", path, location)?,
                });
            }
        }

        let mut cred_helpers = Vec::new();
        if let Some(map) = object_field(top, "credHelpers", path)? {
            for (key, helper) in map {
                let location = format!("credHelpers.{key:?}");
                match helper {
                    Value::Null => {}
                    Value::String(name) if name.is_empty() => {}
                    Value::String(name) => {
                        check_helper_name(name, &location, path)?;
                        cred_helpers.push((key.clone(), normalize_key(key, false), name.clone()));
                    }
                    _ => return Err(malformed(path, &location, "a string")),
                }
            }
        }

        let creds_store = match top.get("credsStore") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if name.is_empty() => None,
            Some(Value::String(name)) => {
                check_helper_name(name, "credsStore", path)?;
                Some(name.clone())
            }
            Some(_) => return Err(malformed(path, "credsStore", "a string")),
        };

        Ok(Some(AuthFile {
            path,
            auths,
            cred_helpers,
            creds_store,
        }))
    }

    /// This file's credential for `target`: credHelpers, then auths, then credsStore.
    pub(super) fn lookup(&self, target: &Target, env: &Environment) -> Result<Option<Found>> {
        let helper = self
            .cred_helpers
            .iter()
            .filter(|(_, host, _)| *host == target.host)
            .min_by(|a, b| {
                let rank = |key: &str| (target.spelling_rank(key), key.to_string());
                rank(&a.0).cmp(&rank(&b.0))
            });
        if let Some((_, _, name)) = helper {
            return self.ask_helper(name, "credHelpers", target, env);
        }

        let entry = self
            .auths
            .iter()
            .filter(|e| e.is_usable())
            .filter_map(|e| target.specificity(&e.normalized).map(|s| (s, e)))
            .min_by(|(sa, a), (sb, b)| {
                let rank = |s: usize, e: &Entry| {
                    (
                        std::cmp::Reverse(s),
                        target.spelling_rank(&e.key),
                        e.key.clone(),
                    )
                };
                rank(*sa, a).cmp(&rank(*sb, b))
            });
        if let Some((_, entry)) = entry {
            return Ok(Some(Found {
                credential: entry.credential(self.path)?,
                source: format!("{} (auths {:?})", self.path.display(), entry.key),
            }));
        }

        if let Some(store) = &self.creds_store {
            return self.ask_helper(store, "credsStore", target, env);
        }
        Ok(None)
    }

    pub(super) fn ask_helper(
        &self,
        name: &str,
        how: &str,
        target: &Target,
        env: &Environment,
    ) -> Result<Option<Found>> {
        let helper = Helper {
            program: format!("docker-credential-{name}"),
            how,
            file: self.path,
        };
        let server = Server {
            written: target.written,
            url: target.server_url(),
        };
        Ok(helper.get(&server, env)?.map(|credential| Found {
            credential,
            source: helper.describe(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::registry::credentials::fixture::*;

    // ---- matching keys ----

    #[test]
    fn docker_hub_spellings_are_one_registry() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
            "docker.io",
            "https://registry-1.docker.io/v2/",
        ] {
            let fx = Fixture::new();
            fx.docker_config(&auths(key, "hub", "h"));
            let env = fx.env(&[]);
            for registry in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
                let found = get(registry, "library/busybox", &env);
                assert_eq!(basic(&found), ("hub", "h"), "{key} for {registry}");
                assert!(found.source.ends_with(&format!("(auths {key:?})")));
            }
            assert_eq!(find("ghcr.io", "a/b", &env).unwrap(), None, "{key}");
        }
    }

    #[test]
    fn schemes_and_paths_are_stripped() {
        let fx = Fixture::new();
        fx.docker_config(
            &format!(
                r#"{{"auths":{{"https://ghcr.io/v2/":{{"auth":"{}"}},"http://127.0.0.1:5000":{{"auth":"{}"}},"HTTPS://Quay.IO/":{{"auth":"{}"}}}}}}"#,
                b64("g:1"),
                b64("l:2"),
                b64("q:3")
            ),
        );
        let env = fx.env(&[]);
        assert_eq!(basic(&get("ghcr.io", "a/b", &env)), ("g", "1"));
        assert_eq!(basic(&get("127.0.0.1:5000", "a/b", &env)), ("l", "2"));
        assert_eq!(basic(&get("quay.io", "a/b", &env)), ("q", "3"));
        assert_eq!(find("127.0.0.1:5001", "a/b", &env).unwrap(), None);
        assert_eq!(find("127.0.0.1", "a/b", &env).unwrap(), None);
        assert_eq!(find("ghcr.io.evil", "a/b", &env).unwrap(), None);
    }

    #[test]
    fn the_most_specific_namespaced_key_wins_in_containers_files() {
        let fx = Fixture::new();
        let json = format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/acme":{{"auth":"{}"}},"quay.io/acme/app":{{"auth":"{}"}},"docker.io/library":{{"auth":"{}"}}}}}}"#,
            b64("host:0"),
            b64("ns:1"),
            b64("repo:2"),
            b64("lib:3")
        );
        let file = fx.write("auth.json", &json);
        let env = fx.env(&[("REGISTRY_AUTH_FILE", file.to_str().unwrap())]);
        assert_eq!(basic(&get("quay.io", "acme/app", &env)), ("repo", "2"));
        assert_eq!(basic(&get("quay.io", "acme/app/sub", &env)), ("repo", "2"));
        assert_eq!(basic(&get("quay.io", "acme/other", &env)), ("ns", "1"));
        // A prefix only counts at a '/' boundary.
        assert_eq!(
            basic(&get("quay.io", "acme/application", &env)),
            ("ns", "1")
        );
        assert_eq!(basic(&get("quay.io", "acmecorp/app", &env)), ("host", "0"));
        assert_eq!(
            basic(&get("docker.io", "library/busybox", &env)),
            ("lib", "3")
        );
        assert_eq!(
            basic(&get("index.docker.io", "library/busybox", &env)),
            ("lib", "3")
        );
        assert_eq!(find("docker.io", "acme/app", &env).unwrap(), None);
    }

    #[test]
    fn docker_config_keys_match_on_the_host_like_docker() {
        let fx = Fixture::new();
        fx.docker_config(&auths("quay.io/acme", "ns", "1"));
        assert_eq!(
            basic(&get("quay.io", "other/app", &fx.env(&[]))),
            ("ns", "1")
        );
    }

    #[test]
    fn the_canonical_spelling_wins_between_equal_keys() {
        let fx = Fixture::new();
        fx.docker_config(&format!(
            r#"{{"auths":{{"docker.io":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}},"registry-1.docker.io":{{"auth":"{}"}}}}}}"#,
            b64("a:1"),
            b64("canonical:2"),
            b64("c:3")
        ));
        assert_eq!(
            basic(&get("docker.io", "library/x", &fx.env(&[]))),
            ("canonical", "2")
        );
    }

    // ---- auths entries ----

    #[test]
    fn auth_is_split_at_the_first_colon() {
        let fx = Fixture::new();
        fx.docker_config(&auths("ghcr.io", "user", "pa:ss:word"));
        assert_eq!(
            basic(&get("ghcr.io", "a/b", &fx.env(&[]))),
            ("user", "pa:ss:word")
        );
        // Unpadded base64 is accepted too ("user:pw" → 10 chars with "==" padding).
        fx.docker_config(r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpwdw"}}}"#);
        assert_eq!(basic(&get("ghcr.io", "a/b", &fx.env(&[]))), ("user", "pw"));
    }

    #[test]
    fn username_and_password_fields_are_used() {
        let fx = Fixture::new();
        fx.docker_config(r#"{"auths":{"ghcr.io":{"username":"u","password":"p:w"}}}"#);
        assert_eq!(basic(&get("ghcr.io", "a/b", &fx.env(&[]))), ("u", "p:w"));
        fx.docker_config(r#"{"auths":{"ghcr.io":{"username":"u"}}}"#);
        let e = fails("ghcr.io", &fx.env(&[]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert!(e.message().contains("no \"password\""), "{e}");
    }

    #[test]
    fn identitytoken_becomes_an_identity_token_and_wins_over_auth() {
        let fx = Fixture::new();
        fx.docker_config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}","identitytoken":"refresh-me"}}}}}}"#,
            b64("u:p")
        ));
        assert_eq!(token(&get("ghcr.io", "a/b", &fx.env(&[]))), "refresh-me");
    }

    #[test]
    fn empty_entries_count_as_no_entry() {
        let fx = Fixture::new();
        fx.write(
            "home/.config/containers/auth.json",
            r#"{"auths":{"ghcr.io":{},"quay.io":{"auth":""},"docker.io":{"email":"a@b.c"}}}"#,
        );
        fx.docker_config(&auths("ghcr.io", "docker", "d"));
        let env = fx.env(&[]);
        assert_eq!(basic(&get("ghcr.io", "a/b", &env)), ("docker", "d"));
        assert_eq!(find("quay.io", "a/b", &env).unwrap(), None);
        assert_eq!(find("docker.io", "a/b", &env).unwrap(), None);
    }

    #[test]
    fn bad_auth_values_are_input_errors_that_do_not_quote_them() {
        let fx = Fixture::new();
        let env = fx.env(&[]);
        for (auth, what) in [
            ("not base64 s3cr3t!", "not valid base64"),
            (&b64("nocolons3cr3t"), "user:password"),
        ] {
            fx.docker_config(&format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}"}}}}}}"#));
            let e = fails("ghcr.io", &env);
            assert_eq!(e.exit_code(), ExitCode::BadInput);
            let text = e.to_string();
            assert!(text.contains(what), "{text}");
            assert!(text.contains("\"ghcr.io\""), "{text}");
            assert!(!text.contains("s3cr3t") && !text.contains(auth), "{text}");
        }
    }

    // ---- malformed files ----

    #[test]
    fn malformed_json_names_the_file_line_and_column() {
        let fx = Fixture::new();
        let path = fx.docker_config(
            "{\n  \"auths\": {\n    \"ghcr.io\": {\"password\": \"hunter2\" \"x\": 1}\n  }\n}\n",
        );
        let e = fails("ghcr.io", &fx.env(&[]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        let text = e.to_string();
        assert!(
            text.contains(&format!("{}:3:", path.display())),
            "no path:line:col in {text}"
        );
        assert!(text.contains("expected `,` or `}`"), "{text}");
        assert!(e.hint().unwrap().contains("jq"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn wrong_types_name_the_key_but_not_the_value() {
        let fx = Fixture::new();
        let env = fx.env(&[]);
        for (json, location) in [
            (r#"{"auths":{"ghcr.io":"hunter2"}}"#, r#"auths."ghcr.io""#),
            (
                r#"{"auths":{"ghcr.io":{"password":["hunter2"]}}}"#,
                r#"auths."ghcr.io".password"#,
            ),
            (r#"{"auths":["hunter2"]}"#, "auths"),
            (
                r#"{"credHelpers":{"ghcr.io":7}}"#,
                r#"credHelpers."ghcr.io""#,
            ),
            (r#"{"credsStore":"../../bin/hunter2"}"#, "credsStore"),
            (r#"["hunter2"]"#, "the file"),
        ] {
            let path = fx.docker_config(json);
            let e = fails("ghcr.io", &env);
            assert_eq!(e.exit_code(), ExitCode::BadInput, "{json}");
            let text = e.to_string();
            assert!(text.contains(location), "{json}: {text}");
            assert!(text.contains(path.to_str().unwrap()), "{json}: {text}");
            assert!(!text.contains("hunter2"), "{json}: {text}");
        }
    }

    #[test]
    fn keys_normalize() {
        assert_eq!(
            normalize_key("https://index.docker.io/v1/", false),
            "docker.io"
        );
        assert_eq!(
            normalize_key("https://index.docker.io/v1/", true),
            "docker.io"
        );
        assert_eq!(
            normalize_key("http://localhost:5000/", true),
            "localhost:5000"
        );
        assert_eq!(normalize_key("quay.io/acme/", true), "quay.io/acme");
        assert_eq!(normalize_key("quay.io/acme/", false), "quay.io");
        assert_eq!(
            normalize_key("registry-1.docker.io/library", true),
            "docker.io/library"
        );
        assert_eq!(normalize_key("GHCR.io", false), "ghcr.io");
    }
}
