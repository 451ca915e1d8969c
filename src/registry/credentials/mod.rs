//! Where registry credentials come from (docs/registries.md, "Credentials").
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

mod env;
mod files;
mod helper;

use env::from_variables;
use files::{file_sources, read_source, AuthFile, Target};

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::time::Duration;

use crate::error::Result;

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

/// Where [`find`] looks, in its order, for messages about credentials that were not
/// found: the variables, then each credentials file (said to be missing when it is).
/// Credential helpers are named by those files, so they are not listed apart.
pub fn searched(env: &Environment) -> Vec<String> {
    let mut places = vec![
        "the IMGBUILD_REGISTRY_USER and IMGBUILD_REGISTRY_PASSWORD variables (unset)".to_string(),
    ];
    for source in files::file_sources(env) {
        let missing = if source.path.exists() {
            ""
        } else {
            " (missing)"
        };
        places.push(format!("{}{missing}", source.path.display()));
    }
    places
}

/// The fixture every credentials test uses: a temp HOME, credentials files and
/// helper scripts.
#[cfg(test)]
pub(super) mod fixture {
    use base64::Engine as _;
    use std::path::PathBuf;

    use super::*;
    use crate::error::Error;

    use std::fs;
    use tempfile::TempDir;

    /// A temp directory to hold credentials files and helper scripts.
    pub(crate) struct Fixture {
        dir: TempDir,
    }

    impl Fixture {
        pub(crate) fn new() -> Self {
            Fixture {
                dir: TempDir::new().unwrap(),
            }
        }

        pub(crate) fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        pub(crate) fn s(&self, rel: &str) -> String {
            self.path(rel).to_str().unwrap().to_string()
        }

        pub(crate) fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.path(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }

        /// Writes `bin/docker-credential-<name>` as an executable shell script.
        pub(crate) fn helper(&self, name: &str, body: &str) {
            use std::os::unix::fs::PermissionsExt;
            let path = self.write(
                &format!("bin/docker-credential-{name}"),
                &format!("#!/bin/sh\n{body}\n"),
            );
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }

        /// An environment with HOME in the fixture, PATH = its bin + the system's, the
        /// log file for helpers, and `extra`.
        pub(crate) fn env(&self, extra: &[(&str, &str)]) -> Environment {
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
        pub(crate) fn log(&self) -> String {
            fs::read_to_string(self.path("helper.log")).unwrap_or_default()
        }

        pub(crate) fn docker_config(&self, json: &str) -> PathBuf {
            self.write("home/.docker/config.json", json)
        }
    }

    pub(crate) fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    pub(crate) fn auths(key: &str, user: &str, password: &str) -> String {
        format!(
            r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("{user}:{password}"))
        )
    }

    pub(crate) fn basic(found: &Found) -> (&str, &str) {
        match &found.credential {
            Credential::Basic { username, password } => (username.as_str(), password.expose()),
            other => panic!("expected Basic, got {other:?}"),
        }
    }

    pub(crate) fn token(found: &Found) -> &str {
        match &found.credential {
            Credential::IdentityToken(t) => t.expose(),
            other => panic!("expected IdentityToken, got {other:?}"),
        }
    }

    pub(crate) fn get(registry: &str, repository: &str, env: &Environment) -> Found {
        find(registry, repository, env)
            .unwrap()
            .expect("a credential")
    }

    pub(crate) fn fails(registry: &str, env: &Environment) -> Error {
        find(registry, "acme/app", env).expect_err("an error")
    }

    /// A helper that logs its call and answers for ghcr.io and Docker Hub only.
    pub(crate) const GOOD_HELPER: &str = r#"
url=$(cat)
echo "$1 $url" >> "$HELPER_LOG"
[ "$1" = get ] || { echo "unexpected argument $1" >&2; exit 2; }
case "$url" in
  ghcr.io) printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper:pass"}' "$url" ;;
  https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"<token>","Secret":"refresh-token"}' "$url" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::registry::credentials::fixture::*;

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
}
