//! Blobs: HEAD, cross-repository mount, streaming upload, verified download.

use oci_client::errors::OciDistributionError;

use super::transfer::{status_attempt, Attempt, DownloadSink};
use super::*;
use crate::events::Event;

impl RegistryClient {
    /// HEAD: does the repository hold the blob?
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        Ok(self.blob_size(repository, digest).await?.is_some())
    }

    /// The size of a blob the repository holds (its HEAD's `Content-Length`), or
    /// None when it holds no such blob. A registry that answers without a length is
    /// taken at `Some(u64::MAX)`: present, of no size a descriptor can name.
    pub async fn blob_size(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        let d = digest.to_string();
        self.with_retry(&format!("HEAD blob {d}"), || self.head_blob(repository, &d))
            .await
            .map_err(|e| self.error(&format!("cannot check for blob {d}"), repository, e))
    }

    /// HEAD a blob, with our authorization: its length for 2xx, None for 404.
    pub(super) async fn head_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> std::result::Result<Option<u64>, OciDistributionError> {
        let url = self.api_url(&format!("{repository}/blobs/{digest}"));
        let auth = self.auth.authorization(repository, false).await;
        let response = with_auth(self.http.head(&url), &auth).send().await?;
        match response.status().as_u16() {
            200..=299 => Ok(Some(
                response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(u64::MAX),
            )),
            404 => Ok(None),
            code => Err(OciDistributionError::ServerError {
                code,
                url,
                message: String::new(),
            }),
        }
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
            self.upload_once(repository, digest, path, size)
        })
        .await
    }

    pub(super) async fn upload_once(
        &self,
        repository: &str,
        blob: &Digest,
        path: &Path,
        size: u64,
    ) -> std::result::Result<(), Attempt> {
        let digest = &blob.to_string();
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
        let mut sent = 0u64;
        let events = self.events.clone();
        let progress = blob.clone();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK).inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    sent += chunk.len() as u64;
                    events.emit(Event::BlobProgress {
                        digest: progress.clone(),
                        done: sent,
                        size: Some(size),
                    });
                }
            });
        let body = reqwest::Body::wrap_stream(stream);
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

    pub(super) async fn get_blob_within<W, F>(
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
            blob: digest,
            // Configs and other small JSON blobs (a `limit`) are not worth a bar.
            events: limit.is_none().then_some(&self.events),
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
            // A definite "blob unknown" (exit 2), as a blob missing from a layout is.
            return Err(self
                .error(&format!("cannot download blob {d}"), repository, e)
                .into_input());
        }
        let Some((out, hasher)) = sink.slot else {
            return Err(Error::network(format!(
                "cannot download blob {d}: no answer"
            )));
        };
        let (_, got, received) = hasher.finish();
        if let Some(size) = size.filter(|s| *s != received) {
            return Err(corrupt(
                &self.registry,
                repository,
                &format!("blob {d} is {received} bytes, but its descriptor says {size} bytes"),
            ));
        }
        if got != *digest {
            return Err(corrupt(
                &self.registry,
                repository,
                &format!("blob {d} arrived as {got} ({received} bytes)"),
            ));
        }
        Ok(out)
    }
}

/// A blob into a fresh writer per attempt, hashed as it arrives, never past `size`.
pub(super) struct BlobSink<'a, W, F> {
    registry: &'a str,
    repository: &'a str,
    blob: &'a Digest,
    events: Option<&'a crate::events::Events>,
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
            .map_err(|e| Error::io(format!("cannot store blob {}", self.digest), e))?;
        if let Some(events) = self.events {
            events.emit(Event::BlobProgress {
                digest: self.blob.clone(),
                done: received,
                size: self.size,
            });
        }
        Ok(())
    }
}
