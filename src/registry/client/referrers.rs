//! The referrers API (OCI distribution 1.1).

use oci_client::errors::OciDistributionError;

use super::*;

impl RegistryClient {
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
        // An index like any other: at most MAX_MANIFEST_BYTES, the rest never read.
        match transport::read_capped(response, MAX_MANIFEST_BYTES).await {
            Ok(body) => Ok(Some(body)),
            Err(transport::CappedRead::TooLarge) => Err(too_large(&format!(
                "the referrers index of {}/{repository}@{digest}",
                self.registry
            ))),
            Err(transport::CappedRead::Failed(e)) => Err(connect_error(&self.registry, &e)),
        }
    }
}
