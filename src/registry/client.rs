//! One registry host, spoken to through oci-client, with the parts oci-client leaves
//! out wrapped around it:
//!
//! - **Transport choice.** HTTPS, verified against the system roots plus any
//!   `--registry-ca` file. Plain HTTP only for loopback hosts (`localhost`,
//!   `127.0.0.0/8`, `[::1]`) and hosts named with `--insecure-registry`, and only when
//!   HTTPS does not answer there (as Docker treats such hosts).
//! - **Credentials** from the sources of [`super::credentials`], handed to oci-client
//!   as Basic credentials, which it uses directly or trades for a Bearer token.
//! - **Retries** with exponential backoff and full jitter on connection errors, 408,
//!   429 and 5xx, for every step (they are all idempotent: blobs are content-addressed,
//!   a manifest PUT of the same bytes is a no-op).
//! - **Errors** that name the registry, the repository, the step and the HTTP status,
//!   with a hint; never a secret (oci-client's own messages carry upload URLs and
//!   bodies, so they are rewritten here).
//! - **Our own transfers.** Blob and manifest GETs and blob uploads are made here
//!   with reqwest, not by oci-client (which reads any manifest whole, follows any
//!   redirect and any upload `Location`): the rules of [`super::transport`], the 4 MiB
//!   cap on manifests and configs, the idle timeout and the retry budget.
//! - **Cross-repository mounts** with a token that also carries pull scope on the
//!   source repository (oci-client asks for the target's scope only, so a token
//!   registry would silently turn every mount into an upload), and a 202 answer
//!   treated as "not mounted" rather than as a failure.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::RegistryTokenType;
use oci_client::{Client, Reference as OciReference, RegistryOperation};
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

/// The largest manifest, index or config imgbuild reads from a registry. The
/// distribution spec asks every client to accept at least 4 MiB; real ones are a few
/// KiB. Reading stops as soon as a body is known to be larger.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

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
    client: Client,
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

/// A reqwest client builder with imgbuild's timeouts, user agent and redirect rules
/// ([`transport::redirect_policy`]), trusting the system roots plus every
/// `--registry-ca` file. Registries and url archives share it, so that one flag
/// covers both.
pub(crate) fn http_client_builder(opts: &Options) -> Result<reqwest::ClientBuilder> {
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
        let pems = load_certificates(&opts.ca_files)?;
        let http = http_client_builder(opts)?
            .build()
            .map_err(|e| Error::network(format!("cannot set up HTTPS: {}", error_chain(&e))))?;

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
        let (auth, cred_source, identity_token) = match found {
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
        };

        let plain_allowed = is_loopback(registry) || opts.insecure.iter().any(|h| h == registry);
        let retry = opts.retry;
        let https_url = format!("https://{}/v2/", api_host(registry));
        let ping = |url: String| {
            let http = http.clone();
            async move { http.get(&url).send().await }
        };
        // Loopback and --insecure-registry hosts: one HTTPS try, then plain HTTP
        // (with retries); other hosts: HTTPS only, with retries.
        let https_retry = if plain_allowed {
            Retry {
                attempts: 1,
                ..retry
            }
        } else {
            retry
        };
        let (scheme, response) = match retry::request(
            https_retry,
            &opts.events,
            "GET /v2/",
            registry,
            || ping(https_url.clone()),
        )
        .await
        {
            Ok(r) => ("https", r),
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

        let mut extra = Vec::new();
        for pem in pems {
            extra.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem,
            });
        }
        let config = ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::HttpsExcept(vec![registry.to_string()])
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: extra,
            use_monolithic_push: true,
            platform_resolver: None,
            max_concurrent_upload: CONCURRENCY,
            max_concurrent_download: CONCURRENCY,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(opts.idle_timeout),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| Error::network(format!("cannot set up a client for {registry}: {e}")))?;
        let this = RegistryClient {
            registry: registry.to_string(),
            scheme,
            client,
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
        let probe = this.reference(repository, None);
        this.client
            .store_auth_if_needed(probe.resolve_registry(), &this.auth.credentials)
            .await;
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

    fn reference(&self, repository: &str, tag_or_digest: Option<&str>) -> OciReference {
        match tag_or_digest {
            Some(d) if d.starts_with("sha256:") => OciReference::with_digest(
                self.registry.clone(),
                repository.to_string(),
                d.to_string(),
            ),
            Some(t) => {
                OciReference::with_tag(self.registry.clone(), repository.to_string(), t.to_string())
            }
            None => OciReference::with_tag(
                self.registry.clone(),
                repository.to_string(),
                "latest".to_string(),
            ),
        }
    }

    /// Gets a token for `operation` on `repository` now, so that refused credentials
    /// fail with a clear message before any work (oci-client would otherwise fall
    /// back to anonymous requests and report a bare 401 later).
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
            return Ok(());
        }
        let Challenge::Bearer { realm, service } = &self.auth.challenge else {
            // A registry whose /v2/ asked for nothing may still want credentials for a
            // push (open reads, authenticated writes): when there are some, every request
            // carries them — ours (`with_basic`) and oci-client's uploads (a Basic entry
            // in its token cache, which also spares its /v2/ probe before each).
            if let RegistryAuth::Basic(user, password) = &self.auth.credentials {
                let reference = self.reference(repository, None);
                self.client
                    .store_auth_if_needed(reference.resolve_registry(), &self.auth.credentials)
                    .await;
                for op in [RegistryOperation::Pull, RegistryOperation::Push] {
                    self.client
                        .tokens
                        .insert(
                            &reference,
                            op,
                            RegistryTokenType::Basic(user.clone(), password.clone()),
                        )
                        .await;
                }
            }
            return Ok(());
        };
        let reference = self.reference(repository, None);
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let what = if push { "push to" } else { "pull from" };
        if let Some(identity) = &self.auth.identity_token {
            // oci-client knows Basic credentials only: exchange the identity token for
            // an access token ourselves, and hand it over for every later request.
            return self
                .auth
                .grant(
                    &self.client,
                    identity,
                    realm,
                    service.as_deref(),
                    repository,
                    push,
                )
                .await
                .map_err(|e| self.error(&format!("cannot get a token to {what}"), repository, e));
        }
        self.with_retry(&format!("authorize {repository}"), || async {
            self.client
                .auth(&reference, &self.auth.credentials, op)
                .await
        })
        .await
        .map(|_| ())
        .map_err(|e| self.error(&format!("cannot get a token to {what}"), repository, e))
    }

    /// HEAD: does the repository hold the blob?
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let reference = self.reference(repository, None);
        let d = digest.to_string();
        self.with_retry(&format!("HEAD blob {d}"), || async {
            if self.is_open() {
                self.head_blob_open(repository, &d).await
            } else {
                self.client.blob_exists(&reference, &d).await
            }
        })
        .await
        .map_err(|e| self.error(&format!("cannot check for blob {d}"), repository, e))
    }

    /// Whether the registry asked for no credentials at all (its `/v2/` answered
    /// without a challenge). oci-client looks for a token before each operation and,
    /// finding none to cache on such a registry, asks `/v2/` again every time; the
    /// requests a re-push consists of (HEADs, the manifest PUT) go straight to the
    /// registry instead, so a re-push is one HEAD per blob plus the manifest.
    fn is_open(&self) -> bool {
        matches!(self.auth.challenge, Challenge::None) && self.registry != "docker.io"
    }

    /// Basic credentials on a request, when we have them (a registry that asks for none
    /// on `/v2/` may still want them for a push; `authorize` gives oci-client them too).
    fn with_basic(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth.credentials {
            RegistryAuth::Basic(user, password) => request.basic_auth(user, Some(password)),
            _ => request,
        }
    }

    fn api_url(&self, path: &str) -> String {
        format!("{}://{}/v2/{path}", self.scheme, api_host(&self.registry))
    }

    /// HEAD a blob on an open registry: Ok(true) for 2xx, Ok(false) for 404.
    async fn head_blob_open(
        &self,
        repository: &str,
        digest: &str,
    ) -> std::result::Result<bool, OciDistributionError> {
        let url = self.api_url(&format!("{repository}/blobs/{digest}"));
        let response = self.with_basic(self.http.head(&url)).send().await?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            code => Err(OciDistributionError::ServerError {
                code,
                url,
                message: String::new(),
            }),
        }
    }

    /// PUT a manifest's exact bytes on an open registry.
    async fn put_manifest_open(
        &self,
        repository: &str,
        tag_or_digest: &str,
        body: bytes::Bytes,
        content_type: HeaderValue,
    ) -> std::result::Result<(), OciDistributionError> {
        let url = self.api_url(&format!("{repository}/manifests/{tag_or_digest}"));
        let response = self
            .with_basic(self.http.put(&url))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        let code = response.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(());
        }
        let message = response.text().await.unwrap_or_default();
        Err(OciDistributionError::ServerError { code, url, message })
    }

    /// Asks the registry to mount a blob from `from` into `repository`. Ok(false) when
    /// the registry declined (202, 404 or a refusal): the caller uploads instead.
    ///
    /// The POST is ours, not oci-client's: a registry that declines by answering 202
    /// has opened an upload session (its `Location`), which we cancel with a DELETE
    /// rather than leave for the registry's purge.
    pub async fn mount_blob(&self, repository: &str, from: &str, digest: &Digest) -> Result<bool> {
        let bearer = match &self.auth.challenge {
            Challenge::Bearer { realm, service } => {
                // A token with pull scope on the source too; without it distribution
                // answers 202 (an upload session) instead of mounting.
                let scopes = [
                    format!("repository:{repository}:pull,push"),
                    format!("repository:{from}:pull"),
                ];
                match self
                    .auth
                    .fetch_token(realm, service.as_deref(), &scopes)
                    .await
                {
                    Some(token) => Some(token),
                    // No token for both scopes: upload instead.
                    None => return Ok(false),
                }
            }
            _ => None,
        };
        let authorize = |request: reqwest::RequestBuilder| match (&bearer, &self.auth.credentials) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        };
        let url = self.api_url(&format!("{repository}/blobs/uploads/"));
        let d = digest.to_string();
        let query = [("mount", d.as_str()), ("from", from)];
        let response = match self
            .with_retry(&format!("mount blob {d}"), || async {
                let response = authorize(self.http.post(&url).query(&query))
                    .header(reqwest::header::CONTENT_LENGTH, "0")
                    .send()
                    .await?;
                let code = response.status().as_u16();
                if retryable_status(code) {
                    return Err(OciDistributionError::ServerError {
                        code,
                        url: url.clone(),
                        message: String::new(),
                    });
                }
                Ok(response)
            })
            .await
        {
            Ok(response) => response,
            Err(e) if is_connection_error(&e) => {
                return Err(self.error(&format!("cannot mount blob {d}"), repository, e))
            }
            Err(_) => return Ok(false),
        };
        match response.status().as_u16() {
            201 => Ok(true),
            202 => {
                // Declined, with an upload session opened for us: cancel it (best
                // effort; the registry purges abandoned sessions eventually anyway).
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| reqwest::Url::parse(&url).ok()?.join(l).ok());
                // Credentials go to the registry's own host only.
                let same_host = |l: &reqwest::Url| {
                    reqwest::Url::parse(&url).is_ok_and(|u| u.origin() == l.origin())
                };
                if let Some(location) = location.filter(same_host) {
                    let _ = authorize(self.http.delete(location)).send().await;
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Uploads a blob from a file, streaming (bounded memory): `POST` an upload
    /// session, then one `PUT` of the whole blob to its `Location` — which must not
    /// downgrade to plain HTTP outside the allowance of [`transport`], and gets the
    /// credentials only when it is on the registry's own origin.
    pub async fn upload_blob(
        &self,
        repository: &str,
        digest: &Digest,
        path: &Path,
        size: u64,
    ) -> Result<()> {
        let d = digest.to_string();
        let what = format!("upload blob {d}");
        self.transfer(repository, &what, &what, || {
            self.upload_once(repository, &d, path, size)
        })
        .await
    }

    async fn upload_once(
        &self,
        repository: &str,
        digest: &str,
        path: &Path,
        size: u64,
    ) -> std::result::Result<(), Attempt> {
        let auth = self.auth.authorization(repository, true).await;
        let post_url = self.api_url(&format!("{repository}/blobs/uploads/"));
        let response = with_auth(self.http.post(&post_url), &auth)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| self.attempt_error(&e))?;
        let code = response.status().as_u16();
        if code != 202 {
            return Err(status_attempt(&response));
        }
        let base = reqwest::Url::parse(&post_url).map_err(|e| {
            Attempt::Fatal(Error::network(format!("bad registry url {post_url}: {e}")))
        })?;
        let mut target = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| base.join(l).ok())
            .ok_or_else(|| {
                Attempt::Fatal(Error::network(format!(
                    "{}/{repository}: the registry opened an upload session without a usable Location",
                    self.registry
                )))
            })?;
        if let Some(why) = transport::downgrade(&target, &self.insecure) {
            return Err(Attempt::Fatal(
                Error::network(format!(
                    "{}/{repository}: the registry asked for blob {digest} to be uploaded to {}; imgbuild refuses ({why})",
                    self.registry,
                    transport::without_secrets(&target)
                ))
                .with_hint("nothing was sent there; if that host is trusted on your network, name it with --insecure-registry HOST"),
            ));
        }
        target.query_pairs_mut().append_pair("digest", digest);
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Attempt::Fatal(Error::io_path("cannot open", path, e)))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            UPLOAD_CHUNK,
        ));
        let same_origin = target.origin() == base.origin();
        let mut request = self
            .http
            .put(target)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        if same_origin {
            request = with_auth(request, &auth);
        }
        let response = request.send().await.map_err(|e| self.attempt_error(&e))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(status_attempt(&response)),
        }
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
    }

    /// PUT a manifest or index, as these exact bytes, under a tag or its digest.
    pub async fn put_manifest(
        &self,
        repository: &str,
        tag_or_digest: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let reference = self.reference(repository, Some(tag_or_digest));
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            Error::input(format!(
                "media type {media_type:?} is not a valid header value"
            ))
        })?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        self.with_retry(&format!("PUT manifest {tag_or_digest}"), || async {
            if self.is_open() {
                self.put_manifest_open(
                    repository,
                    tag_or_digest,
                    body.clone(),
                    content_type.clone(),
                )
                .await
            } else {
                self.client
                    .push_manifest_raw(&reference, body.clone(), content_type.clone())
                    .await
                    .map(|_| ())
            }
        })
        .await
        .map_err(|e| {
            self.error(
                &format!("cannot push manifest {tag_or_digest}"),
                repository,
                e,
            )
        })
    }

    /// GET a manifest or index by tag or digest: its exact bytes and digest. When
    /// asked by digest, the bytes are verified against it.
    pub async fn get_manifest(
        &self,
        repository: &str,
        tag_or_digest: &str,
    ) -> Result<(Vec<u8>, Digest)> {
        let Some(bytes) = self.fetch_manifest(repository, tag_or_digest).await? else {
            let e = OciDistributionError::ServerError {
                code: 404,
                url: String::new(),
                message: String::new(),
            };
            return Err(self.error(
                &format!("cannot get manifest {tag_or_digest}"),
                repository,
                e,
            ));
        };
        let digest = Digest::of(&bytes);
        if let Some(expected) = Digest::parse(tag_or_digest) {
            if expected != digest {
                return Err(Error::network(format!(
                    "{}/{repository}: manifest {expected} arrived with digest {digest}",
                    self.registry
                ))
                .with_hint("the registry or something between it and imgbuild altered the manifest; do not trust this registry's answer"));
            }
        }
        Ok((bytes, digest))
    }

    /// GET a manifest or index by tag: None when the registry does not know the tag
    /// (404), its bytes otherwise.
    pub async fn get_manifest_if_any(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.fetch_manifest(repository, tag).await
    }

    /// GET `/v2/<repository>/manifests/<tag_or_digest>` ourselves (not through
    /// oci-client, which reads any body whole): at most [`MAX_MANIFEST_BYTES`], the
    /// idle timeout, retries within the budget. None for 404.
    async fn fetch_manifest(
        &self,
        repository: &str,
        tag_or_digest: &str,
    ) -> Result<Option<Vec<u8>>> {
        let url = self.api_url(&format!("{repository}/manifests/{tag_or_digest}"));
        let what = format!("manifest {tag_or_digest}");
        let mut sink = ManifestSink {
            what: &what,
            body: Vec::new(),
        };
        let found = self
            .download(repository, &url, &what, MANIFEST_TYPES, &mut sink)
            .await;
        match found {
            Ok(true) => Ok(Some(sink.body)),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The referrers API (OCI distribution 1.1): `GET /v2/<name>/referrers/<digest>`.
    /// Some(index bytes) when the registry answers 200 with an image index; None when
    /// it does not implement the API (404 or any other answer), which means the
    /// referrers tag schema. Failures to connect are errors.
    pub async fn referrers_api(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>> {
        let url = format!(
            "{}://{}/v2/{repository}/referrers/{digest}",
            self.scheme,
            api_host(&self.registry)
        );
        let token = match &self.auth.challenge {
            Challenge::Bearer { realm, service } => {
                let scopes = [format!("repository:{repository}:pull")];
                self.auth
                    .fetch_token(realm, service.as_deref(), &scopes)
                    .await
            }
            _ => None,
        };
        let response = retry::request(
            self.retry,
            &self.events,
            "GET referrers",
            &self.registry,
            || {
                let mut request = self
                    .http
                    .get(&url)
                    .header(reqwest::header::ACCEPT, crate::image::INDEX_V1);
                match (&token, &self.auth.credentials) {
                    (Some(t), _) => request = request.bearer_auth(t),
                    (None, RegistryAuth::Basic(user, password)) => {
                        request = request.basic_auth(user, Some(password))
                    }
                    _ => {}
                }
                request.send()
            },
        )
        .await
        .map_err(|e| connect_error(&self.registry, &e))?;
        match response.status().as_u16() {
            200 => {}
            // The spec's answer of a registry without the API is 404; older ones answer
            // an unknown route with 400, 405 or 501. Only these mean "use the tag schema".
            400 | 404 | 405 | 501 => return Ok(None),
            // Anything else (a refusal, a server still failing after the retries) is an
            // error, not a reason to write a fallback tag on a registry that may have
            // the API.
            code => {
                let e = OciDistributionError::ServerError {
                    code,
                    url: url.clone(),
                    message: String::new(),
                };
                return Err(self.error("cannot list the image's referrers", repository, e));
            }
        }
        let is_index = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(crate::image::INDEX_V1));
        if !is_index {
            return Ok(None);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| connect_error(&self.registry, &e))?;
        Ok(Some(body.to_vec()))
    }

    /// GET a config (or another small JSON blob), verified, at most
    /// [`MAX_MANIFEST_BYTES`].
    pub async fn get_config(&self, repository: &str, digest: &Digest) -> Result<Vec<u8>> {
        self.get_blob_within(repository, digest, None, Some(MAX_MANIFEST_BYTES), || {
            Ok(Vec::new())
        })
        .await
    }

    /// Streams a blob into `out`, verifying its digest and size as it arrives.
    /// Retries start over (the caller gives a fresh writer each time).
    pub async fn get_blob<W, F>(
        &self,
        repository: &str,
        digest: &Digest,
        size: Option<u64>,
        make_writer: F,
    ) -> Result<W>
    where
        W: std::io::Write + Send,
        F: FnMut() -> Result<W>,
    {
        self.get_blob_within(repository, digest, size, None, make_writer)
            .await
    }

    async fn get_blob_within<W, F>(
        &self,
        repository: &str,
        digest: &Digest,
        size: Option<u64>,
        limit: Option<u64>,
        mut make_writer: F,
    ) -> Result<W>
    where
        W: std::io::Write + Send,
        F: FnMut() -> Result<W>,
    {
        let d = digest.to_string();
        let url = self.api_url(&format!("{repository}/blobs/{d}"));
        let what = format!("blob {d}");
        let mut sink = BlobSink {
            registry: &self.registry,
            repository,
            digest: &d,
            size,
            limit,
            make_writer: &mut make_writer,
            slot: None,
        };
        let found = self
            .download(repository, &url, &what, &[], &mut sink)
            .await?;
        if !found {
            let e = OciDistributionError::ServerError {
                code: 404,
                url,
                message: String::new(),
            };
            return Err(self.error(&format!("cannot download blob {d}"), repository, e));
        }
        let Some((out, hasher)) = sink.slot else {
            return Err(Error::network(format!(
                "cannot download blob {d}: no answer"
            )));
        };
        let (_, got, received) = hasher.finish();
        if got != *digest || size.is_some_and(|s| s != received) {
            return Err(corrupt(
                &self.registry,
                repository,
                &format!("blob {d} arrived as {got} ({received} bytes)"),
            ));
        }
        Ok(out)
    }

    /// One GET of ours, streamed into `sink`: authorization for reading `repository`,
    /// the redirect rules of [`transport`], the idle timeout, retries within the
    /// budget (each starting the sink over). Ok(false) for 404.
    async fn download(
        &self,
        repository: &str,
        url: &str,
        what: &str,
        accept: &[&str],
        sink: &mut dyn DownloadSink,
    ) -> Result<bool> {
        // Attempts run one after another; the lock only lends the sink to each in turn.
        let sink = tokio::sync::Mutex::new(sink);
        self.transfer(
            repository,
            &format!("GET {what}"),
            &format!("get {what}"),
            || async {
                let mut sink = sink.lock().await;
                self.download_once(repository, url, accept, &mut **sink)
                    .await
            },
        )
        .await
    }

    /// Runs one of our transfers under the retry policy: a stall, a lost connection
    /// or a retryable status is tried again (noted as `note`); a status retrying will
    /// not change fails as "cannot `action`"; after the last attempt, the reason.
    async fn transfer<T, F, Fut>(
        &self,
        repository: &str,
        note: &str,
        action: &str,
        mut once: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Attempt>>,
    {
        let what = format!("{note} at {}", self.registry);
        retry::run(self.retry, &what, &self.events, |n| {
            let attempt = once();
            async move {
                let (why, after) = match attempt.await {
                    Ok(value) => return Try::Done(value),
                    Err(Attempt::Fatal(e)) => return Try::Fatal(e),
                    Err(Attempt::Status(code)) => {
                        let e = OciDistributionError::ServerError {
                            code,
                            url: String::new(),
                            message: String::new(),
                        };
                        return Try::Fatal(self.error(&format!("cannot {action}"), repository, e));
                    }
                    Err(Attempt::Stalled) => (self.stall_reason(), None),
                    Err(Attempt::Failed(why, after)) => (why, after),
                };
                let last = self.gave_up(action, repository, &why, n);
                Try::Retry { why, after, last }
            }
        })
        .await
    }

    async fn download_once(
        &self,
        repository: &str,
        url: &str,
        accept: &[&str],
        sink: &mut dyn DownloadSink,
    ) -> std::result::Result<bool, Attempt> {
        let mut request = self.http.get(url);
        if !accept.is_empty() {
            request = request.header(reqwest::header::ACCEPT, accept.join(", "));
        }
        let request = with_auth(request, &self.auth.authorization(repository, false).await);
        let response = request.send().await.map_err(|e| self.attempt_error(&e))?;
        let code = response.status().as_u16();
        if code == 404 {
            return Ok(false);
        }
        if !(200..300).contains(&code) {
            return Err(status_attempt(&response));
        }
        sink.start(response.content_length())
            .map_err(Attempt::Fatal)?;
        let mut stream = response.bytes_stream();
        let mut received = 0u64;
        loop {
            // reqwest's read timeout ends a silent body too; this bounds it the same way
            // whatever the layers underneath do.
            let next = tokio::time::timeout(self.idle_timeout, stream.next())
                .await
                .map_err(|_| Attempt::Stalled)?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| self.attempt_error(&e))?;
            received += chunk.len() as u64;
            sink.chunk(&chunk, received).map_err(Attempt::Fatal)?;
        }
        Ok(true)
    }

    /// What a failed request of ours means for its retries.
    fn attempt_error(&self, e: &reqwest::Error) -> Attempt {
        if e.is_redirect() {
            return Attempt::Fatal(
                Error::network(format!(
                    "{}: {}",
                    self.registry,
                    root_cause(e)
                ))
                .with_hint("the registry redirected to a place imgbuild does not send requests to; if that host is trusted on your network, name it with --insecure-registry HOST"),
            );
        }
        if e.is_timeout() {
            return Attempt::Stalled;
        }
        if is_tls_error(e) {
            return Attempt::Fatal(connect_error(&self.registry, e));
        }
        Attempt::Failed(format!("lost the connection: {}", root_cause(e)), None)
    }

    /// Runs an oci-client step under the retry policy, the identity token renewed
    /// before each attempt when due.
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
                if let Err(e) = self.auth.refresh_identity(&self.client).await {
                    return Try::Fatal(e);
                }
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
                    None => "no credentials were found for it".to_string(),
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
        err
    }
}

/// How one attempt of a GET of ours failed.
enum Attempt {
    /// No byte for the idle timeout.
    Stalled,
    /// A connection failure or a retryable status: worth another attempt (after the
    /// wait the server asked for, if it did).
    Failed(String, Option<Duration>),
    /// A status that retrying will not change.
    Status(u16),
    /// Refused, corrupt, or a local failure: no retry.
    Fatal(Error),
}

/// Where [`RegistryClient::download`] puts a body: `start` before each attempt (with
/// the announced length), then every chunk with the count received so far.
trait DownloadSink {
    fn start(&mut self, length: Option<u64>) -> Result<()>;
    fn chunk(&mut self, chunk: &[u8], received: u64) -> Result<()>;
}

/// A manifest, index or config in memory, at most [`MAX_MANIFEST_BYTES`].
struct ManifestSink<'a> {
    what: &'a str,
    body: Vec<u8>,
}

impl DownloadSink for ManifestSink<'_> {
    fn start(&mut self, length: Option<u64>) -> Result<()> {
        self.body.clear();
        if length.is_some_and(|n| n > MAX_MANIFEST_BYTES) {
            return Err(too_large(self.what));
        }
        Ok(())
    }

    fn chunk(&mut self, chunk: &[u8], received: u64) -> Result<()> {
        if received > MAX_MANIFEST_BYTES {
            return Err(too_large(self.what));
        }
        self.body.extend_from_slice(chunk);
        Ok(())
    }
}

/// A blob into a fresh writer per attempt, hashed as it arrives, never past `size`.
struct BlobSink<'a, W, F> {
    registry: &'a str,
    repository: &'a str,
    digest: &'a str,
    size: Option<u64>,
    /// Stop reading past this many bytes (configs: [`MAX_MANIFEST_BYTES`]).
    limit: Option<u64>,
    make_writer: &'a mut F,
    slot: Option<(W, crate::digest::HashingWriter<std::io::Sink>)>,
}

impl<W, F> DownloadSink for BlobSink<'_, W, F>
where
    W: std::io::Write,
    F: FnMut() -> Result<W>,
{
    fn start(&mut self, length: Option<u64>) -> Result<()> {
        if let (Some(limit), Some(length)) = (self.limit, length) {
            if length > limit {
                return Err(too_large(&format!("blob {}", self.digest)));
            }
        }
        self.slot = Some((
            (self.make_writer)()?,
            crate::digest::HashingWriter::new(std::io::sink()),
        ));
        Ok(())
    }

    fn chunk(&mut self, chunk: &[u8], received: u64) -> Result<()> {
        if self.limit.is_some_and(|limit| received > limit) {
            return Err(too_large(&format!("blob {}", self.digest)));
        }
        if let Some(size) = self.size.filter(|s| received > *s) {
            return Err(corrupt(
                self.registry,
                self.repository,
                &format!(
                    "blob {} is larger than its descriptor's {size} bytes",
                    self.digest
                ),
            ));
        }
        let Some((out, hasher)) = self.slot.as_mut() else {
            return Ok(());
        };
        std::io::Write::write_all(hasher, chunk)
            .and_then(|()| out.write_all(chunk))
            .map_err(|e| Error::io(format!("cannot store blob {}", self.digest), e))
    }
}

/// A non-2xx answer: worth another attempt (408, 429, 5xx; after its `Retry-After`)
/// or not.
fn status_attempt(response: &reqwest::Response) -> Attempt {
    let code = response.status().as_u16();
    if retryable_status(code) {
        Attempt::Failed(format!("HTTP {code}"), retry::retry_after(response))
    } else {
        Attempt::Status(code)
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
}

const USER_AGENT: &str = concat!("imgbuild/", env!("CARGO_PKG_VERSION"));

/// What `get_manifest` accepts: OCI and Docker v2 manifests and indexes.
const MANIFEST_TYPES: &[&str] = &[
    crate::image::MANIFEST_V1,
    crate::image::INDEX_V1,
    crate::image::DOCKER_MANIFEST_V2,
    crate::image::DOCKER_MANIFEST_LIST,
];

fn connect_error(registry: &str, e: &reqwest::Error) -> Error {
    Error::network(format!(
        "cannot reach registry {registry}: {}",
        root_cause(e)
    ))
    .with_hint(
        "check the host name and port, and that the registry is running and reachable from here",
    )
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
/// API answers at `index.docker.io` (where oci-client sends its own requests too).
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

/// One line for an oci-client error, without upload URLs (they carry session state)
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
