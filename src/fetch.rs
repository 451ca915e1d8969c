//! Url archives (`[[layer.archive]] url = …, sha256 = …`): downloads pinned by their
//! sha256, kept in a content-addressed cache inside the output layout.
//!
//! A download streams into a temporary file next to its final place while it is
//! hashed; it is renamed to `<out>/.imgbuild/downloads/sha256/<hex>` only when the
//! hash is the one the recipe pins, so the cache holds nothing unverified. A cached
//! file is hashed again before each use (cheap insurance against a damaged cache) and
//! fetched anew when it no longer matches. Because a file is found by the hash the
//! recipe pins, `--no-cache` (which is about the layer cache) still reuses it.
//!
//! Transport follows the registry rules of [`crate::registry::client`]: HTTPS
//! verified against the system roots plus `--registry-ca`; plain HTTP only to
//! loopback hosts and hosts named with `--insecure-registry`; retries with the same
//! jittered backoff on connection errors, 408, 429 and 5xx. This module owns every
//! byte of HTTP the build speaks outside registries.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::events::Event;
use crate::platform::Platform;
use crate::recipe::{Recipe, Sha256Pin};
use crate::registry::client::{self, Options};
use crate::registry::retry::{self, Attempt};
use crate::registry::transport;

/// Where downloads live inside a layout.
const DOWNLOADS: &str = ".imgbuild/downloads/sha256";

/// One url archive for one platform: its url with placeholders expanded, and the
/// sha256 that pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPin {
    pub url: String,
    /// 64 lowercase hex digits.
    pub sha256: String,
    pub platform: Platform,
    /// Where the recipe writes the url and the sha256 (for error messages).
    pub url_span: Range<usize>,
    pub sha256_span: Range<usize>,
    /// The Debian package the file is, when it is one (for messages).
    pub package: Option<String>,
}

/// Every url archive of `recipe` for every platform in `platforms`, in recipe order,
/// then platform order. A url with `{os}`, `{arch}` or `{variant}` that names several
/// files needs one sha256 per platform (the table form); a table must pin every
/// platform built.
pub fn pins(recipe: &Recipe, platforms: &[Platform]) -> Result<Vec<UrlPin>> {
    let mut out = Vec::new();
    for layer in &recipe.layers {
        for item in &layer.get_ref().archive {
            let a = item.get_ref();
            let (Some(url), Some(sha)) = (&a.url, &a.sha256) else {
                continue;
            };
            if let Sha256Pin::One(_) = sha.get_ref() {
                let expanded: Vec<String> =
                    platforms.iter().map(|p| p.expand(url.get_ref())).collect();
                if let Some(other) = expanded.iter().find(|u| **u != expanded[0]) {
                    let table: Vec<String> = platforms
                        .iter()
                        .map(|p| format!("\"{p}\" = \"…\""))
                        .collect();
                    return Err(recipe
                        .error_at(
                            sha.span(),
                            format!(
                                "one sha256 cannot pin {} and {other}: the url names a different file per platform",
                                expanded[0]
                            ),
                        )
                        .with_hint(format!(
                            "give one hash per platform: sha256 = {{ {} }}",
                            table.join(", ")
                        )));
                }
            }
            let first_pin = out.len();
            for platform in platforms {
                let expanded = platform.expand(url.get_ref());
                url_shape(recipe, &expanded, url.span())?;
                let hex = a.sha256_for(platform).ok_or_else(|| {
                    recipe
                        .error_at(
                            sha.span(),
                            format!("the sha256 table has no hash for platform {platform}"),
                        )
                        .with_hint(format!(
                            "add \"{platform}\" = \"<sha256 of {}>\" to the table",
                            platform.expand(url.get_ref())
                        ))
                })?;
                // One file, one hash: a table that pins the same url differently for
                // two platforms cannot be satisfied (nor recorded in recipe.lock).
                if let Some(other) = out[first_pin..]
                    .iter()
                    .find(|p: &&UrlPin| p.url == expanded && p.sha256 != hex)
                {
                    return Err(recipe
                        .error_at(
                            sha.span(),
                            format!(
                                "the sha256 table gives {} and {platform} different hashes for the same url {expanded}",
                                other.platform
                            ),
                        )
                        .with_hint(
                            "one file has one hash: give one sha256 = \"…\", or put {arch} in the url if the platforms get different files",
                        ));
                }
                out.push(UrlPin {
                    url: expanded,
                    sha256: hex.to_string(),
                    platform: platform.clone(),
                    url_span: url.span(),
                    sha256_span: sha.span(),
                    package: None,
                });
            }
        }
    }
    Ok(out)
}

/// The verified downloads of a build, by sha256 hex.
pub type Downloads = BTreeMap<String, PathBuf>;

/// Makes every pinned download available in `<out>/.imgbuild/downloads`, fetching
/// what is not cached (or no longer matches). Every url is checked before the first
/// request, so a url that may not be fetched fails without touching the network.
pub fn fetch(recipe: &Recipe, pins: &[UrlPin], out: &Path, opts: &Options) -> Result<Downloads> {
    let mut wanted: Vec<(&UrlPin, reqwest::Url)> = Vec::new();
    for pin in pins {
        // The sha256 names a file of the download cache: never a path.
        if !crate::digest::is_sha256_hex(&pin.sha256) {
            return Err(Error::input(format!(
                "sha256 {:?} of {} is not 64 lowercase hex digits",
                pin.sha256,
                for_log(&pin.url)
            )));
        }
        let url = allowed_url(recipe, pin, opts)?;
        if !wanted.iter().any(|(p, _)| p.sha256 == pin.sha256) {
            wanted.push((pin, url));
        }
    }
    let mut downloads = Downloads::new();
    if wanted.is_empty() {
        return Ok(downloads);
    }
    let dir = out.join(DOWNLOADS);
    let mut network: Option<(tokio::runtime::Runtime, reqwest::Client)> = None;
    for (pin, url) in wanted {
        let path = dir.join(&pin.sha256);
        if path.is_file() {
            match hash_file(&path) {
                Ok(hex) if hex == pin.sha256 => {
                    opts.events.emit(Event::UrlReady {
                        url: for_log(&pin.url),
                        size: None,
                    });
                    downloads.insert(pin.sha256.clone(), path);
                    continue;
                }
                Ok(hex) => {
                    opts.events.warn(format!(
                        "cached download {} has sha256 {hex}, not its name; fetching {} again",
                        path.display(),
                        for_log(&pin.url)
                    ));
                    std::fs::remove_file(&path)
                        .map_err(|e| Error::io_path("cannot remove damaged download", &path, e))?;
                }
                Err(e) => return Err(Error::io_path("cannot read cached download", &path, e)),
            }
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io_path("cannot create the download cache", &dir, e))?;
        if network.is_none() {
            network = Some((client::runtime()?, http_client(opts)?));
        }
        let Some((runtime, http)) = network.as_ref() else {
            return Err(Error::network("cannot start the network runtime"));
        };
        let size = runtime.block_on(download(recipe, http, pin, url, &dir, opts))?;
        opts.events.emit(Event::UrlReady {
            url: for_log(&pin.url),
            size: Some(size),
        });
        downloads.insert(pin.sha256.clone(), path);
    }
    Ok(downloads)
}

/// Plain GETs into memory under the download transport rules, for indexes that are
/// checked by what they say (a signature, a hash from a signed file) rather than by a
/// pin: `imgbuild lock` reading an apt repository.
pub struct Getter<'a> {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    opts: &'a Options,
}

impl<'a> Getter<'a> {
    pub fn new(opts: &'a Options) -> Result<Getter<'a>> {
        Ok(Getter {
            runtime: client::runtime()?,
            http: http_client(opts)?,
            opts,
        })
    }

    /// The body of `url` (at most `limit` bytes), or None when the server says it has
    /// no such file (404, 410). Other failures are retried, then exit 3.
    pub fn get(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::input(format!("url {url:?} is not a valid url: {e}")))?;
        if parsed.scheme() == "http" && !plain_http_allowed(&parsed, self.opts) {
            let host = host_port(&parsed);
            return Err(Error::input(format!(
                "{} uses plain HTTP to {host}, which imgbuild allows only for loopback hosts and hosts named with --insecure-registry",
                for_log(url)
            ))
            .with_hint(format!("use https://, or if {host} is a trusted mirror on your network, pass --insecure-registry {host}")));
        }
        let gave_up = |why: &str| {
            Error::network(format!("cannot download {}: {why}", for_log(url))).with_hint(format!(
                "gave up after {} attempts; check that the server is up and reachable from here",
                self.opts.retry.attempts
            ))
        };
        let attempt = |_| async {
            match get_once(&self.http, &parsed, limit).await {
                Ok(body) => Attempt::Done(body),
                Err(Failure::Fatal(e)) => Attempt::Fatal(e),
                Err(Failure::Retry(why, after)) => {
                    let last = gave_up(&why);
                    Attempt::Retry { why, after, last }
                }
            }
        };
        self.runtime.block_on(retry::run(
            self.opts.retry,
            &for_log(url),
            &self.opts.events,
            attempt,
        ))
    }
}

async fn get_once(
    http: &reqwest::Client,
    url: &reqwest::Url,
    limit: u64,
) -> std::result::Result<Option<Vec<u8>>, Failure> {
    let shown = for_log(url.as_str());
    let mut response = match http.get(url.clone()).send().await {
        Ok(r) => r,
        Err(e) if client::is_tls_error(&e) || e.is_redirect() => {
            return Err(Failure::Fatal(Error::network(format!(
                "cannot download {shown}: {}",
                client::error_chain(&e)
            ))))
        }
        Err(e) => return Err(Failure::Retry(client::root_cause(&e), None)),
    };
    let status = response.status();
    if status.as_u16() == 404 || status.as_u16() == 410 {
        return Ok(None);
    }
    if !status.is_success() {
        let text = format!("HTTP {}", status.as_u16());
        if retry::retryable_status(status.as_u16()) {
            return Err(Failure::Retry(text, retry::retry_after(&response)));
        }
        return Err(Failure::Fatal(Error::network(format!(
            "cannot download {shown}: {text}"
        ))));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                if body.len() as u64 + bytes.len() as u64 > limit {
                    return Err(Failure::Fatal(Error::input(format!(
                        "{shown} is larger than {limit} bytes, more than imgbuild reads of an index"
                    ))));
                }
                body.extend_from_slice(&bytes);
            }
            Ok(None) => return Ok(Some(body)),
            Err(e) => return Err(Failure::Retry(client::root_cause(&e), None)),
        }
    }
}

/// Checks what can be checked of a url without the network, for `build`, `verify` and
/// `lock` alike: it parses, carries no credentials, and is https or http.
fn url_shape(recipe: &Recipe, text: &str, span: Range<usize>) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text).map_err(|e| {
        recipe
            .error_at(
                span.clone(),
                format!("url {text:?} is not a valid url: {e}"),
            )
            .with_hint("write a full url: url = \"https://host/path/file.tar.gz\"")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        // The recipe line is shown too, with the secret blanked out.
        let mut snippet = recipe.source.snippet(span);
        for secret in [url.password().unwrap_or(""), url.username()] {
            if !secret.is_empty() {
                snippet = snippet.replace(secret, "<redacted>");
            }
        }
        return Err(Error::input(format!(
            "url {shown} carries credentials (user:password@), which would end up in recipe.lock, the provenance and logs"
        ))
        .with_detail(snippet)
        .with_hint("serve the file without authentication, or download it into the context and use src = \"…\""));
    }
    match url.scheme() {
        "https" | "http" => Ok(url),
        other => Err(recipe
            .error_at(
                span,
                format!("url {text} has scheme {other:?}; imgbuild downloads over https (or http to loopback hosts)"),
            )
            .with_hint("for a file on this machine, copy it into the context and use src = \"…\"")),
    }
}

/// The url for logs: without its query, which may carry a token.
fn for_log(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// Parses the url and applies the transport rules: https always; http only to
/// loopback hosts and `--insecure-registry` hosts.
fn allowed_url(recipe: &Recipe, pin: &UrlPin, opts: &Options) -> Result<reqwest::Url> {
    let url = url_shape(recipe, &pin.url, pin.url_span.clone())?;
    match url.scheme() {
        "http" if !plain_http_allowed(&url, opts) => {
            let host = host_port(&url);
            Err(recipe
                .error_at(
                    pin.url_span.clone(),
                    format!(
                        "url {} uses plain HTTP to {host}, which imgbuild allows only for loopback hosts and hosts named with --insecure-registry",
                        for_log(&pin.url)
                    ),
                )
                .with_hint(format!(
                    "use https://, or if {host} is a trusted mirror on your network, pass --insecure-registry {host}"
                )))
        }
        _ => Ok(url),
    }
}

fn host_port(url: &reqwest::Url) -> String {
    transport::host_port(url)
}

fn plain_http_allowed(url: &reqwest::Url, opts: &Options) -> bool {
    transport::plain_http_allowed(url, &opts.insecure)
}

/// The client for downloads: the registry TLS set-up and redirect rules.
fn http_client(opts: &Options) -> Result<reqwest::Client> {
    client::http_client_builder(opts)?
        .build()
        .map_err(|e| Error::network(format!("cannot set up HTTPS: {}", client::error_chain(&e))))
}

/// Why one attempt failed, and whether another may help (after the wait the server
/// asked for, if it did).
enum Failure {
    Retry(String, Option<std::time::Duration>),
    Fatal(Error),
}

/// Downloads `url` into `dir` (temp file, hashed while written, renamed to its sha256
/// when it matches the pin); returns its size.
async fn download(
    recipe: &Recipe,
    http: &reqwest::Client,
    pin: &UrlPin,
    url: reqwest::Url,
    dir: &Path,
    opts: &Options,
) -> Result<u64> {
    let gave_up = |why: &str| {
        Error::network(format!("cannot download {}: {why}", for_log(&pin.url)))
            .with_detail(recipe.source.snippet(pin.url_span.clone()))
            .with_hint(format!(
                "gave up after {} attempts; check that the server is up and reachable from here",
                opts.retry.attempts
            ))
    };
    retry::run(opts.retry, &for_log(&pin.url), &opts.events, |_| async {
        let mut temp = match crate::layout::temp_in(dir) {
            Ok(temp) => temp,
            Err(e) => return Attempt::Fatal(Error::io_path("cannot write to", dir, e)),
        };
        let (hex, size) = match attempt_download(recipe, http, pin, &url, temp.as_file_mut()).await {
            Ok(done) => done,
            Err(Failure::Fatal(e)) => return Attempt::Fatal(e),
            Err(Failure::Retry(why, after)) => {
                let last = gave_up(&why);
                return Attempt::Retry { why, after, last };
            }
        };
        if hex != pin.sha256 {
            // The temp file is deleted when dropped: nothing unverified stays.
            drop(temp);
            if let Some(package) = &pin.package {
                return Attempt::Fatal(recipe
                    .error_at(
                        pin.sha256_span.clone(),
                        format!(
                            "package {package}: {} has sha256 {hex}, but recipe.lock pins {}",
                            for_log(&pin.url), pin.sha256
                        ),
                    )
                    .with_hint("the repository serves a different file than when recipe.lock was written; if the repository is trusted, run `imgbuild lock` again"));
            }
            return Attempt::Fatal(recipe
                .error_at(
                    pin.sha256_span.clone(),
                    format!(
                        "the download of {} has sha256 {hex}, but the recipe pins {}",
                        for_log(&pin.url), pin.sha256
                    ),
                )
                .with_hint(
                    "the pin is wrong or the server changed the file; if the new file is trusted, update sha256 (and run imgbuild lock)",
                ));
        }
        let path = dir.join(&pin.sha256);
        match temp.persist(&path, crate::atomic::Durability::Unsynced) {
            Ok(_) => Attempt::Done(size),
            Err(e) => Attempt::Fatal(Error::io_path("cannot store download", &path, e)),
        }
    })
    .await
}

/// One GET, streamed into `file` while hashed: the sha256 hex and the size.
async fn attempt_download(
    recipe: &Recipe,
    http: &reqwest::Client,
    pin: &UrlPin,
    url: &reqwest::Url,
    file: &mut std::fs::File,
) -> std::result::Result<(String, u64), Failure> {
    let mut response = match http.get(url.clone()).send().await {
        Ok(r) => r,
        Err(e) if client::is_tls_error(&e) => {
            return Err(Failure::Fatal(
                Error::network(format!(
                    "cannot download {}: {}",
                    for_log(&pin.url),
                    client::root_cause(&e)
                ))
                .with_detail(recipe.source.snippet(pin.url_span.clone()))
                .with_hint(
                    "the TLS handshake failed: if the server's certificate is signed by a private CA, pass --registry-ca FILE",
                ),
            ))
        }
        Err(e) if e.is_redirect() => {
            return Err(Failure::Fatal(
                Error::network(format!(
                    "cannot download {}: {}",
                    for_log(&pin.url),
                    client::error_chain(&e)
                ))
                .with_detail(recipe.source.snippet(pin.url_span.clone()))
                .with_hint("point the url at the file itself, over https"),
            ))
        }
        Err(e) => return Err(Failure::Retry(client::root_cause(&e), None)),
    };
    let status = response.status();
    if !status.is_success() {
        let text = format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let text = text.trim_end().to_string();
        if retry::retryable_status(status.as_u16()) {
            return Err(Failure::Retry(text, retry::retry_after(&response)));
        }
        if let Some(package) = &pin.package {
            return Err(Failure::Fatal(
                Error::network(format!(
                    "cannot download Debian package {package} ({}): {text}",
                    for_log(&pin.url)
                ))
                .with_detail(recipe.source.snippet(pin.url_span.clone()))
                .with_hint("a mirror keeps only the newest version of a package: run `imgbuild lock` to pin the current ones (or point the [[apt-source]] at a snapshot that keeps them)"),
            ));
        }
        return Err(Failure::Fatal(
            Error::network(format!("cannot download {}: {text}", for_log(&pin.url)))
                .with_detail(recipe.source.snippet(pin.url_span.clone()))
                .with_hint("check the url (and any {os}/{arch}/{variant} in it) and that the server serves the file"),
        ));
    }
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                hasher.update(&bytes);
                size += bytes.len() as u64;
                file.write_all(&bytes).map_err(|e| {
                    Failure::Fatal(Error::io(
                        format!("cannot store the download of {}", for_log(&pin.url)),
                        e,
                    ))
                })?;
            }
            Ok(None) => break,
            Err(e) => return Err(Failure::Retry(client::root_cause(&e), None)),
        }
    }
    file.flush().map_err(|e| {
        Failure::Fatal(Error::io(
            format!("cannot store the download of {}", for_log(&pin.url)),
            e,
        ))
    })?;
    Ok((hex(&hasher.finalize()), size))
}

/// The sha256 hex of a file, read in a bounded buffer.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::RecipeSource;

    fn recipe(text: &str) -> Recipe {
        Recipe::parse(
            RecipeSource {
                path: "recipe.toml".into(),
                text: text.into(),
            },
            PathBuf::from("/nonexistent"),
        )
        .unwrap()
    }

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|p| Platform::parse(p).unwrap()).collect()
    }

    const ITEM: &str = "[[layer]]\nname = \"a\"\n[[layer.archive]]\n";

    #[test]
    fn placeholders_expand_per_platform_with_the_table_form() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let r = recipe(&format!(
            "{ITEM}url = \"https://h/x-{{os}}-{{arch}}{{variant}}.tar\"\nsha256 = {{ \"linux/amd64\" = \"{a}\", \"linux/arm/v7\" = \"{b}\" }}\n"
        ));
        let p = pins(&r, &platforms(&["linux/amd64", "linux/arm/v7"])).unwrap();
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.url.as_str(), p.sha256.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("https://h/x-linux-amd64.tar", a.as_str()),
                ("https://h/x-linux-armv7.tar", b.as_str())
            ]
        );
    }

    #[test]
    fn a_table_without_the_platform_built_is_an_error_at_sha256() {
        let a = "a".repeat(64);
        let r = recipe(&format!(
            "{ITEM}url = \"https://h/{{arch}}.tar\"\nsha256 = {{ \"linux/amd64\" = \"{a}\" }}\n"
        ));
        let e = pins(&r, &platforms(&["linux/amd64", "linux/arm64"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no hash for platform linux/arm64") && e.contains("recipe.toml:5:10"),
            "{e}"
        );
    }

    #[test]
    fn one_sha256_for_a_url_that_differs_per_platform_asks_for_the_table() {
        let a = "a".repeat(64);
        let text = format!("{ITEM}url = \"https://h/{{arch}}.tar\"\nsha256 = \"{a}\"\n");
        let r = recipe(&text);
        let e = pins(&r, &platforms(&["linux/amd64", "linux/arm64"])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("one sha256 cannot pin https://h/amd64.tar and https://h/arm64.tar")
                && msg.contains("\"linux/arm64\" = \"…\""),
            "{msg}"
        );
        assert_eq!(e.exit_code(), crate::error::ExitCode::BadInput);
        // One platform: the one hash pins the one file.
        assert_eq!(pins(&r, &platforms(&["linux/arm64"])).unwrap().len(), 1);
    }

    #[test]
    fn plain_http_is_for_loopback_and_insecure_hosts_only() {
        let allowed = |u: &str, insecure: &[&str]| {
            let opts = Options {
                insecure: insecure.iter().map(|s| s.to_string()).collect(),
                ..Options::default()
            };
            plain_http_allowed(&reqwest::Url::parse(u).unwrap(), &opts)
        };
        assert!(allowed("http://127.0.0.1:8080/x.tar", &[]));
        assert!(allowed("http://localhost/x.tar", &[]));
        assert!(allowed("http://[::1]:9/x.tar", &[]));
        assert!(!allowed("http://example.invalid/x.tar", &[]));
        assert!(allowed(
            "http://mirror.lan:8080/x.tar",
            &["mirror.lan:8080"]
        ));
        assert!(allowed("http://mirror.lan:8080/x.tar", &["mirror.lan"]));
        assert!(!allowed(
            "http://mirror.lan:8080/x.tar",
            &["mirror.lan:9090"]
        ));
    }
}
