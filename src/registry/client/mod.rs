//! One registry host. oci-client provides the protocol's types (errors, credentials,
//! token answers) and makes no request: every request is imgbuild's, on one reqwest
//! client with the rules of [`super::transport`].
//!
//! - **Transport choice.** HTTPS, verified against the system roots plus any
//!   `--registry-ca` file. Plain HTTP only for loopback hosts (`localhost`,
//!   `127.0.0.0/8`, `[::1]`) and hosts named with `--insecure-registry`, and only when
//!   HTTPS does not answer there (as Docker treats such hosts).
//! - **Credentials** from the sources of [`super::credentials`]; tokens are asked for
//!   by [`super::auth`] from the realm checked when connecting, never from a realm a
//!   later answer names (oci-client's `Client::auth` asked `/v2/` again and sent the
//!   credentials to whatever realm that second answer named).
//!
//! Split by concern: this file connects and renders errors; [`blobs`], [`manifests`],
//! [`referrers`], [`tags`] and [`transfer`] hold the requests.
//! - **Retries** on connection errors, 408, 429 and 5xx for every step, by the one
//!   policy of [`super::retry`] (the steps are all idempotent: blobs are
//!   content-addressed, a manifest PUT of the same bytes is a no-op).
//! - **Authentication** by [`super::auth`]: the registry's challenge, tokens for our
//!   own requests, the identity-token exchange.
//! - **Errors** that name the registry, the repository, the step and the HTTP status,
//!   with a hint; never a secret (oci-client's own messages carry upload URLs and
//!   bodies, so they are rewritten here).
//! - **Our own requests.** Blob HEADs, GETs and uploads, manifest GETs and PUTs, and
//!   token requests are made here with reqwest, not by oci-client (which reads any
//!   body whole, follows any redirect and any upload `Location`): the rules of
//!   [`super::transport`], the 4 MiB cap on manifests, configs, indexes and token
//!   answers (64 KiB, truncated, on error answers), the idle timeout and the retry
//!   budget.
//! - **Cross-repository mounts** with a token that also carries pull scope on the
//!   source repository (oci-client asks for the target's scope only, so a token
//!   registry would silently turn every mount into an upload), and a 202 answer
//!   treated as "not mounted" rather than as a failure.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::header::HeaderValue;

use super::auth::{check_realm, parse_challenge, with_auth, Auth, Challenge};
use super::credentials::{self, Credential, Environment};
use super::retry::{self, retryable_status, Attempt as Try};
pub use super::transport::is_loopback;
use super::transport::{self, first_line};
pub(crate) use super::transport::{error_chain, is_tls_error, root_cause};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::Events;

mod blobs;
mod manifests;
mod referrers;
mod tags;
mod transfer;

/// How a command reaches registries: set from `--registry-ca`, `--insecure-registry`,
/// `--registry-timeout`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Extra PEM CA certificates trusted besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// Hosts (`host[:port]`) that may be spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// A request that receives no byte for this long fails (and is retried).
    pub idle_timeout: Duration,
    pub retry: Retry,
    /// Where retries, renewed tokens and warnings are reported.
    pub events: Events,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ca_files: Vec::new(),
            insecure: Vec::new(),
            idle_timeout: IDLE_TIMEOUT,
            retry: Retry::default(),
            events: Events::default(),
        }
    }
}

/// The default idle timeout: no byte from the server for this long ends a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest manifest, index or config imgbuild reads from a registry (defined
/// with the capped reader in `transport`).
pub use super::transport::MAX_MANIFEST_BYTES;

pub use super::retry::Retry;

/// Blobs pushed or pulled at once per image.
pub const CONCURRENCY: usize = 4;

/// Timeout to connect to a registry; reads time out after `Options::idle_timeout` of
/// silence.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Body bytes read from a layout file per chunk when uploading.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// A connection to one registry host.
pub struct RegistryClient {
    /// The host as written in references (`127.0.0.1:5000`, `docker.io`).
    registry: String,
    scheme: &'static str,
    http: reqwest::Client,
    /// The registry's challenge, our credentials and tokens.
    auth: Auth,
    idle_timeout: Duration,
    /// `--insecure-registry` hosts, for the credential and redirect rules.
    insecure: Vec<String>,
    retry: Retry,
    events: Events,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.registry)
            .field("scheme", &self.scheme)
            .field("cred_source", &self.auth.cred_source)
            .finish_non_exhaustive()
    }
}

/// The tokio runtime the registry code runs on: two workers (the machines imgbuild
/// is designed for have two cores; network waits dominate anyway).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))
}

fn load_certificates(files: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for path in files {
        let pem = std::fs::read(path)
            .map_err(|e| Error::io_path("cannot read --registry-ca", path, e))
            .map_err(|e| {
                let m = e.message().to_string();
                Error::input(m).with_hint("--registry-ca takes a PEM file of CA certificates")
            })?;
        if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |c| c.is_empty()) {
            return Err(Error::input(format!(
                "--registry-ca {}: no PEM certificate in the file",
                path.display()
            ))
            .with_hint("the file must hold one or more -----BEGIN CERTIFICATE----- blocks"));
        }
        out.push(pem);
    }
    Ok(out)
}

/// The credentials for `repository` at `registry`: Basic ones (or anonymous), where
/// they came from, and an identity token (with anonymous as the Basic part).
async fn find_credentials(
    registry: &str,
    repository: &str,
) -> Result<(RegistryAuth, Option<String>, Option<credentials::Secret>)> {
    // Credential helpers are programs that may take seconds: run the lookup on a
    // blocking thread, not on one of the runtime's two workers.
    let found = {
        let (registry, repository) = (registry.to_string(), repository.to_string());
        tokio::task::spawn_blocking(move || {
            credentials::find(&registry, &repository, &Environment::from_process())
        })
        .await
        .map_err(|e| Error::network(format!("credential lookup stopped: {e}")))??
    };
    Ok(match found {
        Some(found) => match found.credential {
            Credential::Basic { username, password } => (
                RegistryAuth::Basic(username, password.expose().to_string()),
                Some(found.source),
                None,
            ),
            Credential::IdentityToken(token) => {
                (RegistryAuth::Anonymous, Some(found.source), Some(token))
            }
        },
        None => (RegistryAuth::Anonymous, None, None),
    })
}

/// Pings `/v2/` and chooses the scheme: loopback and --insecure-registry hosts get one
/// HTTPS try, then plain HTTP (with retries) — unless the HTTPS try met a certificate
/// it does not trust, which shows the registry speaks HTTPS: that is an error naming
/// the host and `--registry-ca`; other hosts HTTPS only, with retries.
async fn ping(
    http: &reqwest::Client,
    registry: &str,
    opts: &Options,
) -> Result<(&'static str, reqwest::Response)> {
    let retry = opts.retry;
    let plain_allowed = is_loopback(registry) || opts.insecure.iter().any(|h| h == registry);
    let https_url = format!("https://{}/v2/", api_host(registry));
    let ping = |url: String| {
        let http = http.clone();
        async move { http.get(&url).send().await }
    };
    let https_retry = if plain_allowed {
        Retry {
            attempts: 1,
            ..retry
        }
    } else {
        retry
    };
    let answer = match retry::request(https_retry, &opts.events, "GET /v2/", registry, || {
        ping(https_url.clone())
    })
    .await
    {
        Ok(r) => ("https", r),
        Err(e) if transport::is_certificate_error(&e) => {
            return Err(Error::network(format!(
                "cannot reach registry {registry}: it speaks HTTPS, but its certificate is not trusted ({})",
                root_cause(&e)
            ))
            .with_hint(
                "pass the certificate of the CA that signed it with --registry-ca FILE (PEM); imgbuild does not fall back to plain HTTP for a registry that speaks HTTPS",
            )
            .with_registry(registry));
        }
        Err(_) if plain_allowed => {
            let http_url = format!("http://{}/v2/", api_host(registry));
            match retry::request(retry, &opts.events, "GET /v2/", registry, || {
                ping(http_url.clone())
            })
            .await
            {
                Ok(r) => ("http", r),
                Err(e) => return Err(connect_error(registry, &e)),
            }
        }
        Err(e) => {
            let mut err = connect_error(registry, &e);
            if is_tls_error(&e) {
                err = err.with_hint(format!(
                            "if {registry} serves plain HTTP, name it with --insecure-registry {registry}; if its certificate is signed by a private CA, pass --registry-ca FILE"
                        ));
            }
            return Err(err);
        }
    };
    Ok(answer)
}

/// A reqwest client builder with imgbuild's timeouts, user agent and redirect rules
/// ([`transport::redirect_policy`]), trusting the system roots plus every
/// `--registry-ca` file. Registries and url archives share it, so that one flag
/// covers both.
pub(crate) fn http_client_builder(opts: &Options) -> Result<reqwest::ClientBuilder> {
    // ring as the TLS provider (Cargo.toml says why); reqwest takes the installed one.
    // A provider installed before (by a library caller) is kept.
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut certs = Vec::new();
    for pem in load_certificates(&opts.ca_files)? {
        certs.extend(reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default());
    }
    Ok(reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(opts.idle_timeout)
        .user_agent(USER_AGENT)
        .redirect(transport::redirect_policy(opts.insecure.clone()))
        .tls_certs_merge(certs))
}

impl RegistryClient {
    /// Connects to `registry` (pings `/v2/`, chooses HTTPS or HTTP, finds credentials
    /// for `repository`).
    pub async fn connect(registry: &str, repository: &str, opts: &Options) -> Result<Self> {
        let http = http_client_builder(opts)?
            .build()
            .map_err(|e| Error::network(format!("cannot set up HTTPS: {}", error_chain(&e))))?;

        let (auth, cred_source, identity_token) = find_credentials(registry, repository).await?;

        let retry = opts.retry;
        let (scheme, response) = ping(&http, registry, opts).await?;
        let challenge = parse_challenge(response.headers().get(reqwest::header::WWW_AUTHENTICATE));
        let has_credentials = matches!(auth, RegistryAuth::Basic(..)) || identity_token.is_some();
        if let (true, Challenge::Bearer { realm, .. }) = (has_credentials, &challenge) {
            check_realm(registry, realm, cred_source.as_deref(), &opts.insecure)?;
        }
        // An identity token is only good for the Bearer token flow.
        let (cred_source, identity_token) = match (identity_token, &challenge) {
            (token @ Some(_), Challenge::Bearer { .. }) => (cred_source, token),
            (None, _) => (cred_source, None),
            (Some(_), _) => {
                opts.events.warn(format!(
                    "{} holds an identity token for {registry}, which asks for no token auth; going on anonymously",
                    cred_source.as_deref().unwrap_or("the credentials file")
                ));
                (None, None)
            }
        };

        let this = RegistryClient {
            registry: registry.to_string(),
            scheme,
            http: http.clone(),
            auth: Auth::new(
                registry,
                http,
                auth,
                cred_source,
                identity_token,
                challenge,
                opts.insecure.clone(),
                retry,
                opts.events.clone(),
            ),
            idle_timeout: opts.idle_timeout,
            insecure: opts.insecure.clone(),
            retry,
            events: opts.events.clone(),
        };
        Ok(this)
    }

    /// Where this client reports what it does.
    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// "https" or "http".
    pub fn scheme(&self) -> &str {
        self.scheme
    }

    /// Gets a token for `repository` (reading, or pushing too) now, so that refused
    /// credentials fail with a clear message before any work (rather than as a bare
    /// 401 later).
    pub async fn authorize(&self, repository: &str, push: bool) -> Result<()> {
        if let Challenge::Basic = self.auth.challenge {
            // Basic: ask /v2/ again with the credentials (if any).
            let url = self.api_url("");
            let status = retry::request(
                self.retry,
                &self.events,
                "GET /v2/ (log in)",
                &self.registry,
                || {
                    let mut request = self.http.get(&url);
                    if let RegistryAuth::Basic(user, password) = &self.auth.credentials {
                        request = request.basic_auth(user, Some(password));
                    }
                    request.send()
                },
            )
            .await
            .map_err(|e| connect_error(&self.registry, &e))?
            .status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                let e = OciDistributionError::UnauthorizedError { url };
                return Err(self.error("cannot log in", repository, e));
            }
        }
        let Challenge::Bearer { .. } = &self.auth.challenge else {
            // Basic, or a registry whose /v2/ asked for nothing but that may still want
            // credentials for a push (open reads, authenticated writes): when there are
            // some, every request of ours carries them to the registry's own origin
            // (`auth::Auth::authorization`).
            return Ok(());
        };
        let what = if push { "push to" } else { "pull from" };
        // The token comes from imgbuild's own request to the realm `connect` checked
        // (an identity token exchanged, Basic credentials, or none). Never asking
        // `/v2/` again for it: a later answer may name another realm (oci-client's
        // `Client::auth` did, and sent the credentials there).
        self.auth
            .authorize(repository, push)
            .await
            .map_err(|e| self.error(&format!("cannot get a token to {what}"), repository, e))
    }

    fn api_url(&self, path: &str) -> String {
        format!("{}://{}/v2/{path}", self.scheme, api_host(&self.registry))
    }

    fn stall_reason(&self) -> String {
        format!(
            "timed out after {} s without data from {}",
            self.idle_timeout.as_secs(),
            self.registry,
        )
    }

    /// The error once retries are spent: what, where, the last reason and attempt.
    fn gave_up(&self, what: &str, repository: &str, why: &str, attempt: u32) -> Error {
        Error::network(format!(
            "cannot {what} at {}/{repository}: {why} (attempt {attempt} of {})",
            self.registry, self.retry.attempts
        ))
        .with_hint(
            "check that the registry is up and reachable (--registry-timeout SECONDS sets how long a silent connection is waited for), then run the command again",
        )
        .with_registry(&self.registry)
    }

    /// Runs a step of ours under the retry policy (tokens are renewed when due by
    /// [`Auth::authorization`], which each attempt asks).
    async fn with_retry<T, F, Fut>(
        &self,
        what: &str,
        mut f: F,
    ) -> std::result::Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let what = format!("{what} at {}", self.registry);
        retry::run(self.retry, &what, &self.events, |_| {
            let attempt = f();
            async move {
                match attempt.await {
                    Ok(v) => Try::Done(v),
                    Err(e) if is_retryable(&e) => Try::retry(describe(&e), e),
                    Err(e) => Try::Fatal(e),
                }
            }
        })
        .await
    }

    /// Our error for a failed step: what, where (registry/repository), the status,
    /// and how to fix it.
    fn error(&self, what: &str, repository: &str, e: OciDistributionError) -> Error {
        let place = format!("{}/{repository}", self.registry);
        let status = status_of(&e);
        let mut err = Error::network(format!("{what} at {place}: {}", describe(&e)));
        match status {
            Some(401) | Some(403) => {
                let creds = match &self.auth.cred_source {
                    Some(source) => format!("the credentials from {source} were refused"),
                    None => format!(
                        "no credentials were found for it (looked in: {})",
                        super::credentials::searched(
                            &super::credentials::Environment::from_process()
                        )
                        .join("; ")
                    ),
                };
                let verb = if status == Some(401) {
                    "authentication failed"
                } else {
                    "access denied"
                };
                err = Error::network(format!("{what} at {place}: {verb} (HTTP {}): {creds}", status.unwrap_or(401)))
                    .with_hint(format!(
                        "log in (docker login {0} / skopeo login {0}), or set IMGBUILD_REGISTRY_USER and IMGBUILD_REGISTRY_PASSWORD",
                        self.registry
                    ));
            }
            Some(404) => {
                err = err.with_hint("check the repository name and the tag or digest");
            }
            _ if is_connection_error(&e) => {
                err = Error::network(format!(
                    "{what} at {place}: lost the connection to {} after {} attempts: {}",
                    self.registry,
                    self.retry.attempts,
                    describe(&e)
                ))
                .with_hint(
                    "check that the registry is up and reachable, then run the command again",
                );
            }
            _ => {}
        }
        if let OciDistributionError::AuthenticationFailure(_) = e {
            err = err.with_hint(format!(
                "the token server refused the credentials{}; log in again or set IMGBUILD_REGISTRY_USER/_PASSWORD",
                self.auth.cred_source
                    .as_ref()
                    .map(|s| format!(" from {s}"))
                    .unwrap_or_default()
            ));
        }
        err = err.with_registry(&self.registry);
        if let Some(code) = status {
            err = err.with_status(code);
        }
        err.with_source(e)
    }
}

fn too_large(what: &str) -> Error {
    Error::network(format!(
        "{what} is larger than the {} MiB imgbuild accepts for a manifest, index or config; stopped reading",
        MAX_MANIFEST_BYTES / (1024 * 1024)
    ))
    .with_hint("real manifests are a few KiB: the registry is misbehaving, or this is not an image")
}

fn corrupt(registry: &str, repository: &str, message: &str) -> Error {
    Error::network(format!("{registry}/{repository}: {message}"))
        .with_hint("the registry served bytes that do not match the digest; nothing was stored")
        .with_registry(registry)
}

const USER_AGENT: &str = concat!("imgbuild/", env!("CARGO_PKG_VERSION"));

fn connect_error(registry: &str, e: &reqwest::Error) -> Error {
    Error::network(format!(
        "cannot reach registry {registry}: {}",
        root_cause(e)
    ))
    .with_hint(
        "check the host name and port, and that the registry is running and reachable from here",
    )
    .with_registry(registry)
}

fn status_of(e: &OciDistributionError) -> Option<u16> {
    match e {
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}", e.code))
                .collect();
            if codes.iter().any(|c| c.contains("Unauthorized")) {
                Some(401)
            } else if codes.iter().any(|c| c.contains("Denied")) {
                Some(403)
            } else if codes.iter().any(|c| c.contains("Unknown")) {
                Some(404)
            } else if codes.iter().any(|c| c.contains("Toomanyrequests")) {
                Some(429)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The host that serves the registry API: Docker Hub's references say `docker.io`, its
/// API answers at `index.docker.io`.
fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    }
}

fn is_connection_error(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.status().is_none()
                && (r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
        }
        OciDistributionError::IoError(_) => false,
        _ => false,
    }
}

fn is_retryable(e: &OciDistributionError) -> bool {
    if is_connection_error(e) {
        return true;
    }
    match status_of(e) {
        Some(code) => retryable_status(code),
        None => matches!(e, OciDistributionError::RequestError(r) if r.is_decode()),
    }
}

/// One line for an error of a step, without upload URLs (they carry session state)
/// and without long bodies.
fn describe(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::ServerError { code, message, .. } => {
            let reason = reqwest::StatusCode::from_u16(*code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let body = first_line(message);
            if body.is_empty() {
                format!("HTTP {code} {reason}")
            } else {
                format!("HTTP {code} {reason}: {body}")
            }
        }
        OciDistributionError::UnauthorizedError { .. } => "HTTP 401 Unauthorized".to_string(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let parts: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, first_line(&e.message)))
                .collect();
            format!("the registry answered {}", parts.join("; "))
        }
        OciDistributionError::RequestError(r) => {
            let mut text = error_chain(r);
            if let Some(url) = r.url() {
                text = text.replace(&format!(" for url ({url})"), "");
            }
            text
        }
        OciDistributionError::AuthenticationFailure(reason) => {
            format!("the token server refused: {}", first_line(reason))
        }
        OciDistributionError::GenericError(Some(message)) => first_line(message),
        other => first_line(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_api_is_index_docker_io() {
        assert_eq!(api_host("docker.io"), "index.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn retryable_oci_client_errors() {
        let e = OciDistributionError::ServerError {
            code: 503,
            url: "u".into(),
            message: String::new(),
        };
        assert!(is_retryable(&e));
        let e = OciDistributionError::ServerError {
            code: 400,
            url: "u".into(),
            message: String::new(),
        };
        assert!(!is_retryable(&e));
    }
}
