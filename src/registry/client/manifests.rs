//! Manifests and indexes: PUT as exact bytes, GET capped at [`MAX_MANIFEST_BYTES`]
//! and verified when asked by digest.

use oci_client::errors::OciDistributionError;

use super::transfer::DownloadSink;
use super::*;

/// What `get_manifest` accepts: OCI and Docker v2 manifests and indexes.
pub(super) const MANIFEST_TYPES: &[&str] = &[
    crate::image::MANIFEST_V1,
    crate::image::INDEX_V1,
    crate::image::DOCKER_MANIFEST_V2,
    crate::image::DOCKER_MANIFEST_LIST,
];

impl RegistryClient {
    /// PUT a manifest's exact bytes, with our authorization (an error answer's body
    /// is read up to [`transport::MAX_ERROR_BODY_BYTES`]).
    pub(super) async fn put_manifest_once(
        &self,
        repository: &str,
        tag_or_digest: &str,
        body: bytes::Bytes,
        content_type: HeaderValue,
    ) -> std::result::Result<(), OciDistributionError> {
        let url = self.api_url(&format!("{repository}/manifests/{tag_or_digest}"));
        let auth = self.auth.authorization(repository, true).await;
        let response = with_auth(self.http.put(&url), &auth)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        let code = response.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(());
        }
        let message = transport::error_body(response).await;
        Err(OciDistributionError::ServerError { code, url, message })
    }

    /// PUT a manifest or index, as these exact bytes, under a tag or its digest.
    pub async fn put_manifest(
        &self,
        repository: &str,
        tag_or_digest: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            Error::input(format!(
                "media type {media_type:?} is not a valid header value"
            ))
        })?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        self.with_retry(&format!("PUT manifest {tag_or_digest}"), || {
            self.put_manifest_once(
                repository,
                tag_or_digest,
                body.clone(),
                content_type.clone(),
            )
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
            // A definite "manifest unknown": the reference names nothing (exit 2).
            return Err(self
                .error(
                    &format!("cannot get manifest {tag_or_digest}"),
                    repository,
                    e,
                )
                .into_input());
        };
        let digest = Digest::of(&bytes);
        if let Some(expected) = Digest::parse(tag_or_digest) {
            if expected != digest {
                return Err(Error::network(format!(
                    "{}/{repository}: manifest {expected} arrived with digest {digest}",
                    self.registry
                ))
                .with_hint("the registry or something between it and imgbuild altered the manifest; do not trust this registry's answer")
                .with_registry(&self.registry));
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
    pub(super) async fn fetch_manifest(
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
}

/// A manifest, index or config in memory, at most [`MAX_MANIFEST_BYTES`].
pub(super) struct ManifestSink<'a> {
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
