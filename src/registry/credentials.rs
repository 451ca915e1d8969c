//! Where registry credentials come from (SPEC §4).
//!
//! [`find`] answers one question — which credential, if any, to present to a registry
//! for a repository — from what a user of docker, podman, skopeo or crane has already
//! set up. Sources, first match wins:
//!
//! 1. `IMGBUILD_REGISTRY_USER` + `IMGBUILD_REGISTRY_PASSWORD`, for every registry. Both
//!    must be set; only one of them is an input error.
//! 2. `REGISTRY_AUTH_FILE` (the containers `auth.json` format), when set. A missing file
//!    named by it is an input error.
//! 3. The containers defaults: `$XDG_RUNTIME_DIR/containers/auth.json`, then
//!    `$HOME/.config/containers/auth.json`.
//! 4. The Docker config: `$DOCKER_CONFIG/config.json` when `DOCKER_CONFIG` is set, else
//!    `$HOME/.docker/config.json`.
//!
//! Missing files in 3 and 4 are skipped; an empty (or whitespace-only) file is too. A
//! variable set to the empty string counts as unset.
//!
//! Within one file: a `credHelpers` entry for the registry runs
//! `docker-credential-<name> get`; else an `auths` entry is used; else a `credsStore`
//! runs `docker-credential-<store> get`. A file with none of these for the registry —
//! or whose helper answers "credentials not found" — gives nothing, and the next
//! source is tried. No source at all means anonymous access (`Ok(None)`).
//!
//! Matching `auths` keys: a key's `https://`/`http://` scheme and, with a scheme, its
//! path are dropped (`https://index.docker.io/v1/` → `index.docker.io`), and
//! `index.docker.io` and `registry-1.docker.io` mean `docker.io`. Docker's config
//! matches on the host alone (like docker); the containers files also take namespaced
//! keys `host/ns/repo`, and the most specific key that is a prefix of
//! `host/repository` at a `/` boundary wins. An entry holds `identitytoken` (an OAuth2
//! refresh token, used first), `auth` (base64 of `user:password`, split at the first
//! `:`) or `username` + `password`; an entry with none of them (`{}`, an empty `auth`)
//! counts as no entry.
//!
//! Credential helpers are found on the environment's `PATH`, get the server URL on
//! stdin (`https://index.docker.io/v1/` for Docker Hub, else the registry as written)
//! and answer `{"ServerURL","Username","Secret"}`; a Username of `<token>` makes the
//! Secret an identity token. A helper gets [`HELPER_TIMEOUT`] to answer and is killed
//! after it together with its process group (everything it started), so [`find`]
//! blocks for at most that long per helper: async callers should
//! run it on a blocking thread.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `<redacted>`. No error
//! of this module quotes a credentials file's values or a helper's answer, only keys,
//! positions, paths and a failing helper's own diagnostics.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

const USER_VAR: &str = "IMGBUILD_REGISTRY_USER";
const PASSWORD_VAR: &str = "IMGBUILD_REGISTRY_PASSWORD";
const DOCKER_HUB: &str = "docker.io";
/// The server URL Docker stores Docker Hub's credentials under.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";
/// The Username a credential helper answers for an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// How long a credential helper may take before it is killed.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// Read at most this much of a helper's stdout or stderr.
const HELPER_OUTPUT_LIMIT: u64 = 1 << 20;
/// Show at most this much of a failing helper's diagnostics.
const HELPER_DIAGNOSTIC_CHARS: usize = 2000;

/// A secret string: `Debug` and `Display` print `<redacted>`; never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it to the registry.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A credential to present to a registry. `Debug` shows the username, never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// user + password (or a registry token used as a password).
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token ("identitytoken" in a docker config, or a helper
    /// answering Username "<token>").
    IdentityToken(Secret),
}

/// A credential and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub credential: Credential,
    /// Where it came from, for messages: e.g. "IMGBUILD_REGISTRY_USER/_PASSWORD",
    /// "/home/u/.docker/config.json (auths \"ghcr.io\")",
    /// "docker-credential-pass (credHelpers in /home/u/.docker/config.json)".
    /// Never contains the secret.
    pub source: String,
}

/// The process environment the lookup reads (variables, including `HOME` and `PATH`),
/// injectable for tests. `Debug` lists the variables' names only.
#[derive(Clone)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
    /// Credential helpers inherit the process environment (true) or get exactly `vars`.
    inherit: bool,
    helper_timeout: Duration,
}

impl Environment {
    /// The environment of this process; credential helpers inherit it.
    pub fn from_process() -> Self {
        Environment {
            vars: std::env::vars_os().collect(),
            inherit: true,
            helper_timeout: HELPER_TIMEOUT,
        }
    }

    /// For tests: only these variables exist, for the lookup and for credential helpers.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Environment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            inherit: false,
            helper_timeout: HELPER_TIMEOUT,
        }
    }

    /// A variable's value; set to the empty string counts as unset.
    fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .get(OsStr::new(name))
            .map(OsString::as_os_str)
            .filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("inherit", &self.inherit)
            .field("helper_timeout", &self.helper_timeout)
            .finish()
    }
}

/// The credential for `registry` (host[:port] as in a reference, e.g. "127.0.0.1:5000",
/// "docker.io", "ghcr.io") and `repository` ("acme/hello"), or None for anonymous
/// access. See the module documentation for the sources and their order.
pub fn find(registry: &str, repository: &str, env: &Environment) -> Result<Option<Found>> {
    if let Some(found) = from_variables(env)? {
        return Ok(Some(found));
    }
    let target = Target::new(registry, repository);
    for source in file_sources(env) {
        let Some(bytes) = read_source(&source)? else {
            continue;
        };
        let Some(file) = AuthFile::parse(&source.path, source.kind, &bytes)? else {
            continue;
        };
        if let Some(found) = file.lookup(&target, env)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Source 1: `IMGBUILD_REGISTRY_USER` + `IMGBUILD_REGISTRY_PASSWORD`.
fn from_variables(env: &Environment) -> Result<Option<Found>> {
    let text = |name: &str, value: &OsStr| -> Result<String> {
        value
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| Error::input(format!("{name} is not valid UTF-8")))
    };
    let hint = format!("set both {USER_VAR} and {PASSWORD_VAR} to log in with them, or neither to use the credential files");
    match (env.get(USER_VAR), env.get(PASSWORD_VAR)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::input(format!(
            "{USER_VAR} is set but {PASSWORD_VAR} is not"
        ))
        .with_hint(hint)),
        (None, Some(_)) => Err(Error::input(format!(
            "{PASSWORD_VAR} is set but {USER_VAR} is not"
        ))
        .with_hint(hint)),
        (Some(user), Some(password)) => Ok(Some(Found {
            credential: Credential::Basic {
                username: text(USER_VAR, user)?,
                password: Secret(text(PASSWORD_VAR, password)?),
            },
            source: format!("{USER_VAR}/_PASSWORD"),
        })),
    }
}

/// Which format a file is in: containers `auth.json` (namespaced keys) or Docker's
/// `config.json` (keys are hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Containers,
    Docker,
}

struct FileSource {
    path: PathBuf,
    kind: Kind,
    /// Named by `REGISTRY_AUTH_FILE`: missing is an error rather than skipped.
    required: bool,
}

/// Sources 2–4, in order.
fn file_sources(env: &Environment) -> Vec<FileSource> {
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

fn read_source(source: &FileSource) -> Result<Option<Vec<u8>>> {
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

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The registry and repository being looked up, normalized for matching.
struct Target<'a> {
    /// As the caller wrote it: what a credential helper gets (outside Docker Hub).
    written: &'a str,
    /// Canonical host: lower case, Docker Hub's aliases as `docker.io`.
    host: String,
    /// `host/repository`, for namespaced keys.
    name: String,
}

impl<'a> Target<'a> {
    fn new(registry: &'a str, repository: &str) -> Self {
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
    fn server_url(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_SERVER_URL
        } else {
            self.written
        }
    }

    /// How well a normalized key matches: its length when it is the host or a prefix
    /// of `host/repository` at a `/` boundary (longer is more specific), else None.
    fn specificity(&self, normalized_key: &str) -> Option<usize> {
        let matches = normalized_key == self.host
            || self
                .name
                .strip_prefix(normalized_key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        matches.then_some(normalized_key.len())
    }

    /// Breaks a tie between keys that normalize alike: the server URL docker stores
    /// this registry under first, then the registry as written, then the rest.
    fn spelling_rank(&self, key: &str) -> u8 {
        if key == self.server_url() {
            0
        } else if key == self.written {
            1
        } else {
            2
        }
    }
}

fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// A key of `auths` or `credHelpers` in the form it is matched in: scheme dropped, a
/// path dropped when there was a scheme or namespaces are not allowed, Docker Hub's
/// aliases as `docker.io`, trailing slashes gone.
fn normalize_key(key: &str, namespaced: bool) -> String {
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
struct Entry {
    key: String,
    normalized: String,
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identity_token: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl Entry {
    /// Whether the entry holds anything: Docker writes `{}` when a credsStore has the
    /// secret, and an entry may carry only a legacy `email`.
    fn is_usable(&self) -> bool {
        non_empty(&self.identity_token).is_some()
            || non_empty(&self.auth).is_some()
            || non_empty(&self.username).is_some()
            || non_empty(&self.password).is_some()
    }

    fn credential(&self, path: &Path) -> Result<Credential> {
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
fn auth_engine() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// What one credentials file says, its structure checked.
struct AuthFile<'a> {
    path: &'a Path,
    auths: Vec<Entry>,
    /// (raw key, normalized host, helper name)
    cred_helpers: Vec<(String, String, String)>,
    creds_store: Option<String>,
}

/// A structural error in a credentials file, naming the key path but never a value.
fn malformed(path: &Path, location: &str, expected: &str) -> Error {
    Error::input(format!(
        "{} is not a valid credentials file: {location} must be {expected}",
        path.display()
    ))
    .with_detail(format!("  --> {}", path.display()))
    .with_hint("fix the file by hand, or log in again to rewrite it")
}

/// A string field, or None when absent or null.
fn string_field(
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
fn object_field<'v>(
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
fn check_helper_name(name: &str, location: &str, path: &Path) -> Result<()> {
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
    fn parse(path: &'a Path, kind: Kind, bytes: &[u8]) -> Result<Option<Self>> {
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
    fn lookup(&self, target: &Target, env: &Environment) -> Result<Option<Found>> {
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

    fn ask_helper(
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
        Ok(helper.get(target, env)?.map(|credential| Found {
            credential,
            source: helper.describe(),
        }))
    }
}

/// A `docker-credential-*` program named by a credentials file.
struct Helper<'a> {
    program: String,
    /// "credHelpers" or "credsStore".
    how: &'a str,
    file: &'a Path,
}

impl Helper<'_> {
    fn describe(&self) -> String {
        format!("{} ({} in {})", self.program, self.how, self.file.display())
    }

    /// Runs `<program> get` with the server URL on stdin. None when the helper has no
    /// credential for the registry.
    fn get(&self, target: &Target, env: &Environment) -> Result<Option<Credential>> {
        let Some(executable) = find_on_path(&self.program, env.get("PATH")) else {
            return Err(Error::input(format!(
                "credential helper {} is not on PATH ({} in {} names it for {})",
                self.program,
                self.how,
                self.file.display(),
                target.written
            ))
            .with_hint(format!(
                "install {}, or remove the {} entry from {}",
                self.program,
                self.how,
                self.file.display()
            )));
        };
        let output = run_with_timeout(&executable, target.server_url(), env).map_err(|e| {
            let message = format!(
                "credential helper {} failed for {}",
                self.describe(),
                target.written
            );
            match e {
                RunError::Io(e) => Error::io(message, e),
                RunError::TimedOut => Error::io(
                    message,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no answer within {} s; it was stopped",
                            env.helper_timeout.as_secs_f64()
                        ),
                    ),
                ),
            }
        })?;
        let says_not_found = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .to_ascii_lowercase()
                .contains("credentials not found")
        };
        if !output.status.success() {
            if says_not_found(&output.stdout) || says_not_found(&output.stderr) {
                return Ok(None);
            }
            let mut error = Error::io(
                format!(
                    "credential helper {} failed for {}",
                    self.describe(),
                    target.written
                ),
                io::Error::other(output.status.to_string()),
            )
            .with_hint(format!(
                "log in again (e.g. `docker login {}`), fix the helper, or set {USER_VAR} and {PASSWORD_VAR}",
                target.written
            ));
            if let Some(detail) = helper_diagnostics(&output) {
                error = error.with_detail(detail);
            }
            return Err(error);
        }
        self.parse_answer(&output.stdout, target)
    }

    /// The helper's JSON answer. Errors name the helper and what was wrong, never the
    /// answer's text (it holds the secret).
    fn parse_answer(&self, stdout: &[u8], target: &Target) -> Result<Option<Credential>> {
        let bad = |what: String| {
            Error::io(
                format!(
                    "credential helper {} failed for {}",
                    self.describe(),
                    target.written
                ),
                io::Error::other(what),
            )
            .with_hint(format!(
                "check the helper by hand: `printf {} | {} get`",
                target.server_url(),
                self.program
            ))
        };
        let value: Value = match serde_json::from_slice(stdout) {
            Ok(value) => value,
            Err(_)
                if String::from_utf8_lossy(stdout)
                    .to_ascii_lowercase()
                    .contains("credentials not found") =>
            {
                return Ok(None)
            }
            Err(e) => {
                return Err(bad(format!(
                    "its answer is not JSON (line {} column {})",
                    e.line(),
                    e.column()
                )))
            }
        };
        let field = |name: &str| -> Result<String> {
            match value.get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(bad(format!("its answer's {name:?} is not a string"))),
            }
        };
        if !value.is_object() {
            return Err(bad("its answer is not a JSON object".to_string()));
        }
        let username = field("Username")?;
        let secret = field("Secret")?;
        if secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if username == TOKEN_USERNAME {
            Credential::IdentityToken(Secret(secret))
        } else {
            Credential::Basic {
                username,
                password: Secret(secret),
            }
        }))
    }
}

/// A failing helper's stderr, and its stdout unless that looks like a JSON answer
/// (docker's helpers print their errors on stdout).
fn helper_diagnostics(output: &Output) -> Option<String> {
    let clip = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        let mut clipped: String = text.chars().take(HELPER_DIAGNOSTIC_CHARS).collect();
        if clipped.len() < text.len() {
            clipped.push('…');
        }
        clipped
    };
    let mut lines = Vec::new();
    for (stream, bytes) in [("stderr", &output.stderr), ("stdout", &output.stdout)] {
        let text = clip(bytes);
        if text.is_empty() || (stream == "stdout" && text.starts_with('{')) {
            continue;
        }
        for line in text.lines() {
            lines.push(format!("  {stream}: {line}"));
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The first executable file named `program` in the directories of `path`.
fn find_on_path(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum RunError {
    Io(io::Error),
    TimedOut,
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Io(e)
    }
}

/// Runs `executable get` with `input` on stdin; kills it after the environment's
/// helper timeout.
fn run_with_timeout(executable: &Path, input: &str, env: &Environment) -> Result<Output, RunError> {
    let mut command = Command::new(executable);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !env.inherit {
        command.env_clear().envs(&env.vars);
    }
    // Its own process group, so that a hung helper is stopped with everything it
    // started (a shell script's `sleep`, a keyring daemon's client).
    command.process_group(0);
    let deadline = Instant::now() + env.helper_timeout;
    let mut child = spawn(&mut command)?;
    let result = drive(&mut child, input, deadline);
    if result.is_err() {
        // Best effort: the error being reported matters more than the cleanup's.
        kill_process_group(&child);
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// SIGKILL to the helper's process group: the helper and every process it started
/// that stayed in the group.
fn kill_process_group(child: &Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes no pointers and touches no memory of this process. The
    // group id is the helper's pid (spawned with `process_group(0)`), and the helper
    // has not been waited for yet (the caller waits after this), so its pid — and
    // with it the group id — cannot have been reused by an unrelated process.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Spawns, retrying briefly while the executable is busy: a helper script written a
/// moment ago may still be open for writing in a child another thread just forked.
fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

fn drive(child: &mut Child, input: &str, deadline: Instant) -> Result<Output, RunError> {
    let stdout = collect(child.stdout.take())?;
    let stderr = collect(child.stderr.take())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading its input; that is its answer to judge.
        match stdin.write_all(input.as_bytes()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(RunError::TimedOut);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
    };
    // The helper is gone; its output follows at once unless a child of its own still
    // holds the pipes, which the deadline bounds.
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let stdout = stdout.recv_timeout(wait).unwrap_or_default();
    let stderr = stderr.recv_timeout(wait).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Reads a pipe to its end (at most [`HELPER_OUTPUT_LIMIT`]) on a thread.
fn collect(stream: Option<impl Read + Send + 'static>) -> io::Result<mpsc::Receiver<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel();
    match stream {
        Some(stream) => {
            thread::Builder::new()
                .name("credential-helper-output".to_string())
                .spawn(move || {
                    let mut bytes = Vec::new();
                    // A read error leaves what was read: the answer is judged on that.
                    let _ = stream.take(HELPER_OUTPUT_LIMIT).read_to_end(&mut bytes);
                    let _ = sender.send(bytes);
                })?;
        }
        None => {
            let _ = sender.send(Vec::new());
        }
    }
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use std::fs;
    use tempfile::TempDir;

    /// A temp directory to hold credentials files and helper scripts.
    struct Fixture {
        dir: TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: TempDir::new().unwrap(),
            }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn s(&self, rel: &str) -> String {
            self.path(rel).to_str().unwrap().to_string()
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.path(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }

        /// Writes `bin/docker-credential-<name>` as an executable shell script.
        fn helper(&self, name: &str, body: &str) {
            use std::os::unix::fs::PermissionsExt;
            let path = self.write(
                &format!("bin/docker-credential-{name}"),
                &format!("#!/bin/sh\n{body}\n"),
            );
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }

        /// An environment with HOME in the fixture, PATH = its bin + the system's, the
        /// log file for helpers, and `extra`.
        fn env(&self, extra: &[(&str, &str)]) -> Environment {
            let mut vars = vec![
                ("HOME".to_string(), self.s("home")),
                (
                    "PATH".to_string(),
                    format!("{}:/usr/bin:/bin", self.s("bin")),
                ),
                ("HELPER_LOG".to_string(), self.s("helper.log")),
            ];
            for (k, v) in extra {
                vars.retain(|(name, _)| name != k);
                vars.push((k.to_string(), v.to_string()));
            }
            Environment::from_vars(vars)
        }

        /// What the helpers logged: one "ARG URL" line per call.
        fn log(&self) -> String {
            fs::read_to_string(self.path("helper.log")).unwrap_or_default()
        }

        fn docker_config(&self, json: &str) -> PathBuf {
            self.write("home/.docker/config.json", json)
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn auths(key: &str, user: &str, password: &str) -> String {
        format!(
            r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("{user}:{password}"))
        )
    }

    fn basic(found: &Found) -> (&str, &str) {
        match &found.credential {
            Credential::Basic { username, password } => (username.as_str(), password.expose()),
            other => panic!("expected Basic, got {other:?}"),
        }
    }

    fn token(found: &Found) -> &str {
        match &found.credential {
            Credential::IdentityToken(t) => t.expose(),
            other => panic!("expected IdentityToken, got {other:?}"),
        }
    }

    fn get(registry: &str, repository: &str, env: &Environment) -> Found {
        find(registry, repository, env)
            .unwrap()
            .expect("a credential")
    }

    fn fails(registry: &str, env: &Environment) -> Error {
        find(registry, "acme/app", env).expect_err("an error")
    }

    /// A helper that logs its call and answers for ghcr.io and Docker Hub only.
    const GOOD_HELPER: &str = r#"
url=$(cat)
echo "$1 $url" >> "$HELPER_LOG"
[ "$1" = get ] || { echo "unexpected argument $1" >&2; exit 2; }
case "$url" in
  ghcr.io) printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper:pass"}' "$url" ;;
  https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"<token>","Secret":"refresh-token"}' "$url" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#;

    // ---- sources and precedence ----

    #[test]
    fn nothing_configured_means_anonymous() {
        let fx = Fixture::new();
        assert_eq!(find("ghcr.io", "acme/app", &fx.env(&[])).unwrap(), None);
        assert_eq!(
            find("ghcr.io", "acme/app", &Environment::from_vars([])).unwrap(),
            None
        );
    }

    #[test]
    fn variables_apply_to_every_registry_and_come_first() {
        let fx = Fixture::new();
        fx.docker_config(&auths("ghcr.io", "file-user", "file-pass"));
        let env = fx.env(&[(USER_VAR, "env-user"), (PASSWORD_VAR, "env:pass")]);
        for registry in ["ghcr.io", "127.0.0.1:5000", "docker.io"] {
            let found = get(registry, "acme/app", &env);
            assert_eq!(basic(&found), ("env-user", "env:pass"));
            assert_eq!(found.source, "IMGBUILD_REGISTRY_USER/_PASSWORD");
        }
    }

    #[test]
    fn only_one_variable_is_an_input_error_naming_the_missing_one() {
        let fx = Fixture::new();
        let e = fails("ghcr.io", &fx.env(&[(USER_VAR, "u")]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert_eq!(
            e.message(),
            "IMGBUILD_REGISTRY_USER is set but IMGBUILD_REGISTRY_PASSWORD is not"
        );
        let e = fails("ghcr.io", &fx.env(&[(PASSWORD_VAR, "p4ss")]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert_eq!(
            e.message(),
            "IMGBUILD_REGISTRY_PASSWORD is set but IMGBUILD_REGISTRY_USER is not"
        );
        assert!(!e.to_string().contains("p4ss"));
        // Empty counts as unset.
        let e = fails("ghcr.io", &fx.env(&[(USER_VAR, "u"), (PASSWORD_VAR, "")]));
        assert!(e.message().contains("PASSWORD is not"), "{e}");
    }

    #[test]
    fn registry_auth_file_wins_over_the_defaults() {
        let fx = Fixture::new();
        let file = fx.write("elsewhere/auth.json", &auths("ghcr.io", "authfile", "a"));
        fx.write("run/containers/auth.json", &auths("ghcr.io", "xdg", "x"));
        fx.docker_config(&auths("ghcr.io", "docker", "d"));
        let env = fx.env(&[
            ("REGISTRY_AUTH_FILE", file.to_str().unwrap()),
            ("XDG_RUNTIME_DIR", &fx.s("run")),
        ]);
        let found = get("ghcr.io", "acme/app", &env);
        assert_eq!(basic(&found), ("authfile", "a"));
        assert_eq!(
            found.source,
            format!("{} (auths \"ghcr.io\")", file.display())
        );
    }

    #[test]
    fn a_missing_registry_auth_file_is_an_input_error_naming_it() {
        let fx = Fixture::new();
        fx.docker_config(&auths("ghcr.io", "docker", "d"));
        let missing = fx.s("nope/auth.json");
        let e = fails("ghcr.io", &fx.env(&[("REGISTRY_AUTH_FILE", &missing)]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert!(e.message().contains(&missing), "{e}");
        assert!(e.message().contains("REGISTRY_AUTH_FILE"), "{e}");
        assert!(e.hint().unwrap().contains("unset REGISTRY_AUTH_FILE"));
    }

    #[test]
    fn a_registry_auth_file_without_an_entry_falls_through() {
        let fx = Fixture::new();
        let file = fx.write("auth.json", &auths("quay.io", "quay", "q"));
        fx.docker_config(&auths("ghcr.io", "docker", "d"));
        let env = fx.env(&[("REGISTRY_AUTH_FILE", file.to_str().unwrap())]);
        assert_eq!(basic(&get("ghcr.io", "acme/app", &env)), ("docker", "d"));
        assert_eq!(basic(&get("quay.io", "acme/app", &env)), ("quay", "q"));
    }

    #[test]
    fn containers_defaults_come_in_order_before_docker() {
        let fx = Fixture::new();
        let env = fx.env(&[("XDG_RUNTIME_DIR", &fx.s("run"))]);
        fx.docker_config(&auths("ghcr.io", "docker", "d"));
        assert_eq!(basic(&get("ghcr.io", "a/b", &env)), ("docker", "d"));
        let home = fx.write(
            "home/.config/containers/auth.json",
            &auths("ghcr.io", "home", "h"),
        );
        let found = get("ghcr.io", "a/b", &env);
        assert_eq!(basic(&found), ("home", "h"));
        assert!(found.source.starts_with(home.to_str().unwrap()));
        fx.write("run/containers/auth.json", &auths("ghcr.io", "xdg", "x"));
        assert_eq!(basic(&get("ghcr.io", "a/b", &env)), ("xdg", "x"));
        // Without XDG_RUNTIME_DIR that file is not looked at.
        assert_eq!(basic(&get("ghcr.io", "a/b", &fx.env(&[]))), ("home", "h"));
    }

    #[test]
    fn docker_config_replaces_home_docker() {
        let fx = Fixture::new();
        fx.docker_config(&auths("ghcr.io", "home", "h"));
        let env = fx.env(&[("DOCKER_CONFIG", &fx.s("dc"))]);
        // DOCKER_CONFIG set but its file missing: ~/.docker is not a fallback.
        assert_eq!(find("ghcr.io", "a/b", &env).unwrap(), None);
        let file = fx.write("dc/config.json", &auths("ghcr.io", "dc", "x"));
        let found = get("ghcr.io", "a/b", &env);
        assert_eq!(basic(&found), ("dc", "x"));
        assert!(found.source.starts_with(file.to_str().unwrap()));
        assert_eq!(basic(&get("ghcr.io", "a/b", &fx.env(&[]))), ("home", "h"));
    }

    #[test]
    fn empty_and_unrelated_files_are_skipped() {
        let fx = Fixture::new();
        fx.write("run/containers/auth.json", " \n");
        fx.write("home/.config/containers/auth.json", r#"{"auths":{}}"#);
        fx.docker_config(&auths("ghcr.io", "docker", "d"));
        let env = fx.env(&[("XDG_RUNTIME_DIR", &fx.s("run"))]);
        assert_eq!(basic(&get("ghcr.io", "a/b", &env)), ("docker", "d"));
        assert_eq!(find("quay.io", "a/b", &env).unwrap(), None);
    }

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

    // ---- credential helpers ----

    #[test]
    fn cred_helpers_come_before_auths_and_get_the_registry_on_stdin() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        let config = fx.docker_config(&format!(
            r#"{{"credHelpers":{{"ghcr.io":"test"}},"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("file:f")
        ));
        let found = get("ghcr.io", "a/b", &fx.env(&[]));
        assert_eq!(basic(&found), ("helper-user", "helper:pass"));
        assert_eq!(
            found.source,
            format!(
                "docker-credential-test (credHelpers in {})",
                config.display()
            )
        );
        assert_eq!(fx.log(), "get ghcr.io\n");
    }

    #[test]
    fn helpers_get_docker_hubs_url_and_token_answers_are_identity_tokens() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        fx.docker_config(r#"{"credHelpers":{"index.docker.io":"test"}}"#);
        let found = get("docker.io", "library/busybox", &fx.env(&[]));
        assert_eq!(token(&found), "refresh-token");
        assert_eq!(fx.log(), "get https://index.docker.io/v1/\n");
    }

    #[test]
    fn helper_not_found_answers_try_the_next_source() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        let file = fx.write("auth.json", r#"{"credHelpers":{"quay.io":"test"}}"#);
        fx.docker_config(&auths("quay.io", "docker", "d"));
        let env = fx.env(&[("REGISTRY_AUTH_FILE", file.to_str().unwrap())]);
        assert_eq!(basic(&get("quay.io", "a/b", &env)), ("docker", "d"));
        assert_eq!(fx.log(), "get quay.io\n");
    }

    #[test]
    fn creds_store_is_asked_when_auths_has_no_usable_entry() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        let config = fx.docker_config(&format!(
            r#"{{"credsStore":"test","auths":{{"ghcr.io":{{}},"quay.io":{{"auth":"{}"}}}}}}"#,
            b64("file:f")
        ));
        let env = fx.env(&[]);
        // An auths entry comes before the store: the helper is not run.
        assert_eq!(basic(&get("quay.io", "a/b", &env)), ("file", "f"));
        assert_eq!(fx.log(), "");
        let found = get("ghcr.io", "a/b", &env);
        assert_eq!(basic(&found), ("helper-user", "helper:pass"));
        assert_eq!(
            found.source,
            format!(
                "docker-credential-test (credsStore in {})",
                config.display()
            )
        );
        // The store knows nothing of this one: anonymous.
        assert_eq!(find("127.0.0.1:5000", "a/b", &env).unwrap(), None);
        assert_eq!(fx.log(), "get ghcr.io\nget 127.0.0.1:5000\n");
    }

    #[test]
    fn variables_mean_no_helper_is_run() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        fx.docker_config(r#"{"credsStore":"test"}"#);
        let env = fx.env(&[(USER_VAR, "u"), (PASSWORD_VAR, "p")]);
        assert_eq!(basic(&get("ghcr.io", "a/b", &env)), ("u", "p"));
        assert_eq!(fx.log(), "");
    }

    #[test]
    fn a_failing_helper_is_an_io_error_with_its_stderr() {
        let fx = Fixture::new();
        fx.helper(
            "broken",
            "cat >/dev/null\necho 'gpg: decryption failed: No secret key' >&2\nexit 2",
        );
        let config = fx.docker_config(r#"{"credHelpers":{"ghcr.io":"broken"}}"#);
        let e = fails("ghcr.io", &fx.env(&[]));
        assert_eq!(e.exit_code(), ExitCode::Failure);
        let text = e.to_string();
        assert!(text.contains("docker-credential-broken"), "{text}");
        assert!(text.contains(config.to_str().unwrap()), "{text}");
        assert!(text.contains("exit status: 2"), "{text}");
        assert!(
            text.contains("stderr: gpg: decryption failed: No secret key"),
            "{text}"
        );
    }

    #[test]
    fn a_helper_answer_that_is_not_json_is_an_error_without_the_answer() {
        let fx = Fixture::new();
        let env = fx.env(&[]);
        fx.docker_config(r#"{"credsStore":"odd"}"#);
        for answer in [
            r#"Username=u Secret=hunter2"#,
            r#"{"Username":"u","Secret":["hunter2"]}"#,
            r#"["hunter2"]"#,
        ] {
            fx.helper("odd", &format!("cat >/dev/null\nprintf '%s' '{answer}'"));
            let e = fails("ghcr.io", &env);
            assert_eq!(e.exit_code(), ExitCode::Failure, "{answer}");
            let text = e.to_string();
            assert!(text.contains("docker-credential-odd"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn a_helper_not_on_path_is_named_with_a_hint() {
        let fx = Fixture::new();
        let config = fx.docker_config(r#"{"credHelpers":{"ghcr.io":"absent"}}"#);
        let e = fails("ghcr.io", &fx.env(&[]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert!(
            e.message()
                .contains("docker-credential-absent is not on PATH"),
            "{e}"
        );
        let hint = e.hint().unwrap();
        assert!(hint.contains("install docker-credential-absent"), "{hint}");
        assert!(
            hint.contains(&format!(
                "remove the credHelpers entry from {}",
                config.display()
            )),
            "{hint}"
        );
        // A file that is not executable does not count.
        fx.write("bin/docker-credential-absent", "#!/bin/sh\n");
        assert!(fails("ghcr.io", &fx.env(&[]))
            .message()
            .contains("not on PATH"));
    }

    #[test]
    fn a_slow_helper_is_stopped() {
        let fx = Fixture::new();
        fx.helper("slow", "exec sleep 20");
        fx.docker_config(r#"{"credsStore":"slow"}"#);
        let mut env = fx.env(&[]);
        env.helper_timeout = Duration::from_millis(300);
        let start = Instant::now();
        let e = fails("ghcr.io", &env);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(e.exit_code(), ExitCode::Failure);
        assert!(e.message().contains("docker-credential-slow"), "{e}");
        assert!(e.message().contains("no answer within 0.3 s"), "{e}");
    }

    #[test]
    fn a_hung_helper_is_stopped_with_the_processes_it_started() {
        let fx = Fixture::new();
        let pid_file = fx.s("child.pid");
        fx.helper(
            "hung",
            &format!("sleep 60 &\necho $! > '{pid_file}'\nwait\n"),
        );
        fx.docker_config(r#"{"credsStore":"hung"}"#);
        let mut env = fx.env(&[]);
        env.helper_timeout = Duration::from_millis(500);
        let e = fails("ghcr.io", &env);
        assert!(e.message().contains("no answer within 0.5 s"), "{e}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        // SIGKILL is delivered before kill(2) returns; give the reaper a bounded moment.
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']));
            if running {
                std::thread::sleep(Duration::from_millis(25));
            }
            !running
        });
        assert!(gone, "the helper's child {pid} still runs");
    }

    // ---- secrets stay secret ----

    #[test]
    fn debug_and_display_never_show_a_secret() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.to_string(), "<redacted>");
        assert_eq!(secret.expose(), "hunter2");

        let fx = Fixture::new();
        fx.docker_config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"quay.io":{{"identitytoken":"hunter2"}}}}}}"#,
            b64("alice:hunter2")
        ));
        let env = fx.env(&[]);
        for registry in ["ghcr.io", "quay.io"] {
            let found = get(registry, "a/b", &env);
            let debug = format!("{found:?} {:?} {found:#?}", found.credential);
            assert!(debug.contains("<redacted>"), "{debug}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(!found.source.contains("hunter2"));
        }
        assert!(format!("{:?}", get("ghcr.io", "a/b", &env)).contains("alice"));

        let env = Environment::from_vars([(PASSWORD_VAR.to_string(), "hunter2".to_string())]);
        let debug = format!("{env:?}");
        assert!(
            debug.contains(PASSWORD_VAR) && !debug.contains("hunter2"),
            "{debug}"
        );
        let e = fails("ghcr.io", &env);
        assert!(!e.to_string().contains("hunter2"));
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
