//! Authentication with a registry: the challenge its `/v2/` answers with
//! (`WWW-Authenticate`: none, Basic, or Bearer with a realm and service), the
//! credentials presented (Basic, or a Docker identity token), the tokens fetched for
//! our requests (only from the realm checked when connecting, with their renewal
//! before they expire), and the identity-token exchange (OAuth2 refresh-token grant). Where credentials may be sent is
//! [`super::transport`]'s rule, checked here before any leaves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::RegistryToken;
use reqwest::header::HeaderValue;

use super::credentials::Secret;
use super::retry::{self, Retry};
use super::transport::MAX_MANIFEST_BYTES;
use super::transport::{self, first_line};
use crate::error::{Error, Result};
use crate::events::{Event, Events};

/// The challenge a registry answered `GET /v2/` with.
#[derive(Clone, Debug)]
pub(super) enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// How one client authenticates with one registry, and the tokens it holds.
pub(super) struct Auth {
    pub(super) registry: String,
    pub(super) http: reqwest::Client,
    /// Basic credentials, or anonymous (also with an identity token).
    pub(super) credentials: RegistryAuth,
    /// Where the credentials came from, for error messages; None = anonymous.
    pub(super) cred_source: Option<String>,
    /// A Docker identity token (`docker login` with an OAuth refresh token, as Azure
    /// ACR gives): exchanged at the Bearer realm for access tokens.
    pub(super) identity_token: Option<Secret>,
    pub(super) challenge: Challenge,
    /// `--insecure-registry` hosts, for the credential rules.
    pub(super) insecure: Vec<String>,
    pub(super) retry: Retry,
    pub(super) events: Events,
    /// Tokens for our own requests, per repository and push-or-not, with when to
    /// stop using them.
    our_tokens: tokio::sync::Mutex<BTreeMap<(String, bool), (String, Instant)>>,
}

impl Auth {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        registry: &str,
        http: reqwest::Client,
        credentials: RegistryAuth,
        cred_source: Option<String>,
        identity_token: Option<Secret>,
        challenge: Challenge,
        insecure: Vec<String>,
        retry: Retry,
        events: Events,
    ) -> Self {
        Auth {
            registry: registry.to_string(),
            http,
            credentials,
            cred_source,
            identity_token,
            challenge,
            insecure,
            retry,
            events,
            our_tokens: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Gets a token for `repository` (reading, or pushing too) now, with imgbuild's own
    /// token request to the realm checked when connecting, and keeps it for our
    /// requests: refused credentials fail here, before any work.
    pub(super) async fn authorize(
        &self,
        repository: &str,
        push: bool,
    ) -> std::result::Result<(), OciDistributionError> {
        let Challenge::Bearer { realm, service } = &self.challenge else {
            return Ok(());
        };
        let mut tokens = self.our_tokens.lock().await;
        let token = self
            .request_token(realm, service.as_deref(), &scopes_for(repository, push))
            .await?;
        tokens.insert(
            (repository.to_string(), push),
            (token.clone(), until(&token)),
        );
        Ok(())
    }

    /// The OAuth2 refresh-token grant of Docker's token protocol: POST the identity
    /// token to the realm (form-encoded) and get an access token for `scopes`.
    async fn exchange_identity_token(
        &self,
        identity: &Secret,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> std::result::Result<String, OciDistributionError> {
        let mut form = reqwest::Url::parse("http://form.invalid/")
            .map_err(|e| OciDistributionError::GenericError(Some(format!("form encoding: {e}"))))?;
        {
            let mut pairs = form.query_pairs_mut();
            pairs.append_pair("grant_type", "refresh_token");
            pairs.append_pair("client_id", "imgbuild");
            if let Some(service) = service {
                pairs.append_pair("service", service);
            }
            // OAuth2 takes one `scope` field, its scopes separated by spaces.
            pairs.append_pair("scope", &scopes.join(" "));
            pairs.append_pair("refresh_token", identity.expose());
        }
        // `connect` refused such a realm already; checked again where the secret leaves.
        refuse_realm(realm, &self.insecure)?;
        let body = form.query().unwrap_or_default().to_string();
        let response = retry::request(
            self.retry,
            &self.events,
            "POST token (identity token)",
            &self.registry,
            || {
                self.http
                    .post(realm)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body.clone())
                    .send()
            },
        )
        .await?;
        let code = response.status().as_u16();
        if !response.status().is_success() {
            // An OAuth2 error answer names the problem (`invalid_grant`: the token
            // expired or was revoked); it holds no secret.
            let body: serde_json::Value =
                serde_json::from_str(&transport::error_body(response).await).unwrap_or_default();
            let error = body["error"].as_str().unwrap_or_default();
            let refused = matches!(code, 401 | 403)
                || (code == 400 && matches!(error, "invalid_grant" | "invalid_client"));
            if refused {
                return Err(OciDistributionError::UnauthorizedError {
                    url: realm.to_string(),
                });
            }
            let description = body["error_description"].as_str().unwrap_or_default();
            return Err(OciDistributionError::ServerError {
                code,
                url: realm.to_string(),
                message: format!("{error} {description}").trim().to_string(),
            });
        }
        read_token(response, realm).await
    }

    /// A token for `scopes`, asked of the realm with our credentials; None when the
    /// token server refuses (the caller goes on without one).
    pub(super) async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Option<String> {
        self.request_token(realm, service, scopes).await.ok()
    }

    /// A token for `scopes` from the realm: the identity token exchanged, or a GET
    /// with the Basic credentials (or none). Credentials go only where
    /// [`transport::credentials_may_go_to`] allows; the answer is read within
    /// [`MAX_MANIFEST_BYTES`].
    pub(super) async fn request_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> std::result::Result<String, OciDistributionError> {
        if let Some(identity) = &self.identity_token {
            return self
                .exchange_identity_token(identity, realm, service, scopes)
                .await;
        }
        if matches!(self.credentials, RegistryAuth::Basic(..)) {
            refuse_realm(realm, &self.insecure)?;
        }
        let mut query: Vec<(&str, &str)> = scopes.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(service) = service {
            query.push(("service", service));
        }
        let response = retry::request(self.retry, &self.events, "GET token", realm, || {
            let mut request = self.http.get(realm).query(&query);
            if let RegistryAuth::Basic(user, password) = &self.credentials {
                request = request.basic_auth(user, Some(password));
            }
            request.send()
        })
        .await?;
        let code = response.status().as_u16();
        if !response.status().is_success() {
            let body = first_line(&transport::error_body(response).await);
            let sep = if body.is_empty() { "" } else { ": " };
            return Err(OciDistributionError::AuthenticationFailure(format!(
                "{} answered HTTP {code}{sep}{body}",
                shown_realm(realm)
            )));
        }
        read_token(response, realm).await
    }

    /// Authorization for a request of ours on `repository` (reading, or pushing too):
    /// a Bearer token (cached until shortly before it expires), Basic credentials,
    /// or none.
    pub(super) async fn authorization(&self, repository: &str, push: bool) -> Option<ReadAuth> {
        match (&self.challenge, &self.credentials) {
            (Challenge::Bearer { realm, service }, _) => {
                let key = (repository.to_string(), push);
                let mut tokens = self.our_tokens.lock().await;
                if let Some((token, until)) = tokens.get(&key) {
                    if Instant::now() < *until {
                        return Some(ReadAuth::Bearer(token.clone()));
                    }
                    if self.identity_token.is_some() {
                        self.events.emit(Event::TokenRenewed {
                            registry: self.registry.clone(),
                            repository: repository.to_string(),
                        });
                    }
                }
                let scopes = scopes_for(repository, push);
                let token = self.fetch_token(realm, service.as_deref(), &scopes).await?;
                tokens.insert(key, (token.clone(), until(&token)));
                Some(ReadAuth::Bearer(token))
            }
            (_, RegistryAuth::Basic(user, password)) => {
                Some(ReadAuth::Basic(user.clone(), password.clone()))
            }
            _ => None,
        }
    }
}

/// The scope of a token for `repository`: pull, or pull and push.
fn scopes_for(repository: &str, push: bool) -> [String; 1] {
    let actions = if push { "pull,push" } else { "pull" };
    [format!("repository:{repository}:{actions}")]
}

/// When to stop using `token` and ask for another: a quarter of its lifetime early.
fn until(token: &str) -> Instant {
    let lifetime = token_lifetime(token);
    Instant::now() + lifetime - lifetime / 4
}

/// Err naming the realm when credentials may not be sent there.
fn refuse_realm(realm: &str, insecure: &[String]) -> std::result::Result<(), OciDistributionError> {
    transport::credentials_may_go_to(realm, insecure).map_err(|why| {
        OciDistributionError::GenericError(Some(format!(
            "imgbuild does not send credentials to the token realm {}: {why}",
            shown_realm(realm)
        )))
    })
}

/// A realm URL as shown in messages: without userinfo.
fn shown_realm(realm: &str) -> String {
    reqwest::Url::parse(realm)
        .map(|u| transport::without_secrets(&u))
        .unwrap_or_else(|_| first_line(realm))
}

/// A token server's answer: JSON with the token, at most [`MAX_MANIFEST_BYTES`].
async fn read_token(
    response: reqwest::Response,
    realm: &str,
) -> std::result::Result<String, OciDistributionError> {
    let body = transport::read_capped(response, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match e {
            transport::CappedRead::TooLarge => OciDistributionError::GenericError(Some(format!(
                "the answer of the token server {} is larger than the {} MiB imgbuild accepts; stopped reading",
                shown_realm(realm),
                MAX_MANIFEST_BYTES / (1024 * 1024)
            ))),
            transport::CappedRead::Failed(e) => OciDistributionError::RequestError(e),
        })?;
    let token: RegistryToken = serde_json::from_slice(&body)
        .map_err(|e| OciDistributionError::RegistryTokenDecodeError(e.to_string()))?;
    Ok(token.token().to_string())
}

/// What a GET of ours authenticates with.
pub(super) enum ReadAuth {
    Bearer(String),
    Basic(String, String),
}

pub(super) fn with_auth(
    request: reqwest::RequestBuilder,
    auth: &Option<ReadAuth>,
) -> reqwest::RequestBuilder {
    match auth {
        Some(ReadAuth::Bearer(token)) => request.bearer_auth(token),
        Some(ReadAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    }
}

pub(super) fn parse_challenge(header: Option<&HeaderValue>) -> Challenge {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return Challenge::None;
    };
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Challenge::Basic;
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::None;
    }
    let mut realm = None;
    let mut service = None;
    for (key, val) in challenge_params(params) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(val),
            "service" => service = Some(val),
            _ => {}
        }
    }
    match realm {
        Some(realm) => Challenge::Bearer { realm, service },
        None => Challenge::None,
    }
}

/// `key="value", key=value` pairs of a WWW-Authenticate header.
fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Refuses a Bearer realm that credentials may not be sent to
/// ([`transport::credentials_may_go_to`]), before anything is sent there.
pub(super) fn check_realm(
    registry: &str,
    realm: &str,
    cred_source: Option<&str>,
    insecure: &[String],
) -> Result<()> {
    transport::credentials_may_go_to(realm, insecure).map_err(|why| {
        let shown = shown_realm(realm);
        Error::network(format!(
            "registry {registry} asks for credentials to be sent to the token server {shown}; imgbuild refuses: {why}"
        ))
        .with_hint(format!(
            "nothing was sent there. If that token server is trusted on your network, name it with --insecure-registry HOST; otherwise ask the registry's operator to serve it over HTTPS, or go without the credentials{}",
            cred_source.map(|s| format!(" (from {s})")).unwrap_or_default()
        ))
        .with_registry(registry)
    })
}

/// How long an access token lasts: its JWT `exp` claim, else 60 s (what the Docker
/// token protocol assumes for a token without `expires_in`).
pub(super) fn token_lifetime(token: &str) -> Duration {
    const ASSUMED: Duration = Duration::from_secs(60);
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ASSUMED;
    };
    use base64::Engine as _;
    let exp = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .and_then(|claims| claims["exp"].as_u64());
    match exp {
        Some(exp) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Duration::from_secs(exp.saturating_sub(now))
        }
        None => ASSUMED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_is_parsed() {
        let h = HeaderValue::from_static(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg, x",scope="repository:a:pull""#,
        );
        match parse_challenge(Some(&h)) {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "http://127.0.0.1:1/token");
                assert_eq!(service.as_deref(), Some("reg, x"));
            }
            other => panic!("{other:?}"),
        }
        let basic = HeaderValue::from_static(r#"Basic realm="Registry Realm""#);
        assert!(matches!(parse_challenge(Some(&basic)), Challenge::Basic));
        assert!(matches!(parse_challenge(None), Challenge::None));
    }
}
