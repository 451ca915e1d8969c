//! Listing a repository's tags: `GET /v2/<name>/tags/list`, following the registry's
//! `Link: <…>; rel="next"` pages (on the registry's own origin only), each page a GET
//! of ours under the retry policy and capped at [`MAX_MANIFEST_BYTES`].

use oci_client::errors::OciDistributionError;

use super::transfer::DownloadSink;
use super::*;

/// Pages followed at most: a registry whose `Link`s never end is stopped.
const MAX_PAGES: usize = 10_000;

impl RegistryClient {
    /// Every tag of `repository`, in the registry's order. `page_size` asks for that
    /// many tags per request (`?n=`); None leaves it to the registry. A repository
    /// the registry does not know is an error with status 404.
    pub async fn list_tags(&self, repository: &str, page_size: Option<u32>) -> Result<Vec<String>> {
        let mut url = self.api_url(&format!("{repository}/tags/list"));
        if let Some(n) = page_size {
            url.push_str(&format!("?n={n}"));
        }
        let what = "the tag list";
        let mut tags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url.clone()) {
                return Err(self.tags_error(repository, "its next page is a page already read"));
            }
            let mut sink = TagsSink {
                body: Vec::new(),
                next: None,
            };
            if !self
                .download(repository, &url, what, &["application/json"], &mut sink)
                .await?
            {
                let e = OciDistributionError::ServerError {
                    code: 404,
                    url: String::new(),
                    message: String::new(),
                };
                // A repository the registry does not know is bad input, as a
                // missing image is.
                return Err(self
                    .error("cannot list the tags", repository, e)
                    .into_input());
            }
            let page: TagList = serde_json::from_slice(&sink.body).map_err(|e| {
                self.tags_error(repository, &format!("the answer is not a tag list: {e}"))
            })?;
            tags.extend(page.tags.unwrap_or_default());
            let Some(next) = sink.next else {
                return Ok(tags);
            };
            url = self.next_page(repository, &url, &next)?;
        }
        Err(self.tags_error(repository, &format!("more than {MAX_PAGES} pages")))
    }

    /// The absolute URL of a `Link` target, which must stay on this registry's origin.
    fn next_page(&self, repository: &str, current: &str, link: &str) -> Result<String> {
        let bad = |why: &str| self.tags_error(repository, &format!("its next-page link {why}"));
        let base = reqwest::Url::parse(current).map_err(|_| bad("cannot be resolved"))?;
        let next = base.join(link).map_err(|_| bad("is not a URL"))?;
        if next.origin() != base.origin() {
            return Err(bad("points at another host; imgbuild follows none"));
        }
        Ok(next.to_string())
    }

    fn tags_error(&self, repository: &str, why: &str) -> Error {
        Error::network(format!(
            "cannot list the tags at {}/{repository}: {why}",
            self.registry
        ))
        .with_hint("the registry does not answer the OCI tag list as it should; `skopeo list-tags` may show more")
        .with_registry(&self.registry)
    }
}

/// `{"name": "…", "tags": […]}`; `tags` may be null for a repository without tags.
#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// A tag-list page in memory, and its `rel="next"` link.
struct TagsSink {
    body: Vec<u8>,
    next: Option<String>,
}

impl DownloadSink for TagsSink {
    fn headers(&mut self, headers: &reqwest::header::HeaderMap) {
        self.next = headers
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link);
    }

    fn start(&mut self, length: Option<u64>) -> Result<()> {
        self.body.clear();
        if length.is_some_and(|n| n > MAX_MANIFEST_BYTES) {
            return Err(too_large("a tag-list page"));
        }
        Ok(())
    }

    fn chunk(&mut self, chunk: &[u8], received: u64) -> Result<()> {
        if received > MAX_MANIFEST_BYTES {
            return Err(too_large("a tag-list page"));
        }
        self.body.extend_from_slice(chunk);
        Ok(())
    }
}

/// The target of the `rel="next"` link in a `Link` header value
/// (`<url>; rel="next"`, possibly one of several links separated by commas).
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn next_links_are_found_among_others() {
        assert_eq!(
            next_link("</v2/a/tags/list?last=b&n=2>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link("<https://r.example/x>; rel=prev, </v2/a/tags/list?last=c>; rel=next")
                .as_deref(),
            Some("/v2/a/tags/list?last=c")
        );
        assert_eq!(next_link("</v2/a/tags/list?last=c>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
