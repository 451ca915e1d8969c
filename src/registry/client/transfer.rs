//! Our own GETs under the retry policy: streamed into a sink, the idle timeout, the
//! redirect rules, and how a failed attempt is judged.

use oci_client::errors::OciDistributionError;

use super::*;

impl RegistryClient {
    /// One GET of ours, streamed into `sink`: authorization for reading `repository`,
    /// the redirect rules of [`transport`], the idle timeout, retries within the
    /// budget (each starting the sink over). Ok(false) for 404.
    pub(super) async fn download(
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
    pub(super) async fn transfer<T, F, Fut>(
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
                    Err(Attempt::Fatal(e)) => return Try::Fatal(e.with_registry(&self.registry)),
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

    pub(super) async fn download_once(
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
        sink.headers(response.headers());
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
    pub(super) fn attempt_error(&self, e: &reqwest::Error) -> Attempt {
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
}

/// How one attempt of a GET of ours failed.
pub(super) enum Attempt {
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
pub(super) trait DownloadSink {
    /// The answer's headers, before `start` (most sinks need none).
    fn headers(&mut self, _headers: &reqwest::header::HeaderMap) {}
    fn start(&mut self, length: Option<u64>) -> Result<()>;
    fn chunk(&mut self, chunk: &[u8], received: u64) -> Result<()>;
}

/// A non-2xx answer: worth another attempt (408, 429, 5xx; after its `Retry-After`)
/// or not.
pub(super) fn status_attempt(response: &reqwest::Response) -> Attempt {
    let code = response.status().as_u16();
    if retryable_status(code) {
        Attempt::Failed(format!("HTTP {code}"), retry::retry_after(response))
    } else {
        Attempt::Status(code)
    }
}
