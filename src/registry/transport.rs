//! The transport rules every registry and url-archive request obeys, in one place:
//!
//! - **Plain HTTP** only to loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`) and
//!   hosts named with `--insecure-registry` ([`plain_http_allowed`]).
//! - **Credentials** (Basic, identity tokens) only over HTTPS, or to a host that is
//!   itself allowed plain HTTP ([`credentials_may_go_to`]) — a registry's Bearer
//!   `realm` may name any URL, and must not get them in clear text elsewhere.
//! - **Redirects** never leave HTTPS for plain HTTP outside that allowance, nor go to
//!   another scheme ([`redirect_policy`]); an upload `Location` is held to the same
//!   rule ([`downgrade`]).
//!
//! "Allowed plain HTTP" is a property of the *target host*, not of where a request
//! started: a redirect from an HTTPS registry to `http://127.0.0.1/…` is allowed (the
//! bytes stay on this machine), one to `http://cdn.example/…` is not, whatever the
//! registry.

/// How many redirects a request may follow.
pub const MAX_REDIRECTS: usize = 10;

/// The largest manifest, index or config imgbuild reads from a registry. The
/// distribution spec asks every client to accept at least 4 MiB; real ones are a few
/// KiB. Reading stops as soon as a body is known to be larger.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// `host[:port]` as written in the url (the port only when the url has one).
pub fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Whether plain HTTP may be spoken to `url`'s host: loopback, or named (with or
/// without its port) in `insecure`.
pub fn plain_http_allowed(url: &reqwest::Url, insecure: &[String]) -> bool {
    let host = url.host_str().unwrap_or("");
    let with_port = host_port(url);
    is_loopback(host)
        || insecure
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(&with_port))
}

/// Whether credentials may be sent to `url` (a token realm): Ok over HTTPS, or over
/// plain HTTP to a host allowed plain HTTP; otherwise Err(why).
pub fn credentials_may_go_to(url: &str, insecure: &[String]) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "it is not a valid URL".to_string())?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if plain_http_allowed(&parsed, insecure) => Ok(()),
        "http" => Err(format!(
            "it is plain HTTP to {}, which is neither a loopback host nor named with --insecure-registry, so the credentials would cross the network unencrypted",
            host_port(&parsed)
        )),
        other => Err(format!(
            "its scheme {other:?} is neither https nor http"
        )),
    }
}

/// Why a request may not go to `to` (a redirect, an upload `Location`): it leaves
/// https/http, or is plain HTTP to a host not allowed it. None when it may.
pub fn downgrade(to: &reqwest::Url, insecure: &[String]) -> Option<String> {
    match to.scheme() {
        "https" => None,
        "http" if plain_http_allowed(to, insecure) => None,
        "http" => Some(format!(
            "plain HTTP to {}, which is neither a loopback host nor named with --insecure-registry",
            host_port(to)
        )),
        other => Some(format!("scheme {other:?}")),
    }
}

/// The redirect policy of every client imgbuild makes: at most [`MAX_REDIRECTS`], and
/// none that [`downgrade`] refuses (reqwest would follow an HTTPS → HTTP redirect).
pub fn redirect_policy(insecure: Vec<String>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if let Some(why) = downgrade(attempt.url(), &insecure) {
            let to = without_secrets(attempt.url());
            let kind = if attempt.url().scheme() == "http" {
                "plain HTTP"
            } else {
                "another scheme"
            };
            attempt.error(format!("redirected to {kind} ({to}), refused: {why}"))
        } else {
            attempt.follow()
        }
    })
}

/// A url for messages: no userinfo, no query (either may carry a secret).
pub fn without_secrets(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(None);
        format!("{shown}?…")
    } else {
        shown.to_string()
    }
}

/// Whether plain HTTP may be used for `registry` without `--insecure-registry`.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_part(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// `host` of `host[:port]` (IPv6 literals keep their brackets).
fn host_part(registry: &str) -> &str {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

/// Whether a failed request failed in the TLS handshake (a plain-HTTP server, an
/// unknown CA, a wrong host name).
pub fn is_tls_error(e: &reqwest::Error) -> bool {
    let chain = error_chain(e).to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "invalidcontenttype",
        "corrupt message",
        "unknownissuer",
    ]
    .iter()
    .any(|w| chain.contains(w))
}

/// Whether `e` is a TLS server's certificate refused (untrusted issuer, wrong name,
/// expired…): the server does speak HTTPS, so plain HTTP is no alternative. A plain
/// HTTP server answering a TLS hello fails differently (a corrupt message), never here.
pub fn is_certificate_error(e: &reqwest::Error) -> bool {
    let chain = error_chain(e).to_ascii_lowercase();
    ["certificate", "unknownissuer", "notvalidforname", "expired"]
        .iter()
        .any(|w| chain.contains(w))
}

/// The innermost cause, without "(os error N)": "Connection refused".
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    let text = last.to_string();
    let text = match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    // rustls' messages are terse; keep the layer above when it says more.
    if text.len() < 12 {
        error_chain(e)
    } else {
        text
    }
}

/// The error and its sources, joined: reqwest's own Display says only "error
/// sending request for url (…)".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The most of an error answer's body imgbuild reads (it only shows its first line).
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A body longer than the cap it was read under; reading stopped there.
#[derive(Debug)]
pub enum CappedRead {
    TooLarge,
    Failed(reqwest::Error),
}

/// Reads a response's body, at most `cap` bytes: refused as soon as its announced
/// length or what has arrived is larger (the rest is never read).
pub async fn read_capped(mut response: reqwest::Response, cap: u64) -> Result<Vec<u8>, CappedRead> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(CappedRead::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(CappedRead::Failed)? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(CappedRead::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error answer's body as text, its first [`MAX_ERROR_BODY_BYTES`] only (the rest
/// is not read); empty when it cannot be read.
pub async fn error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY_BYTES);
    String::from_utf8_lossy(&body).into_owned()
}

/// The first line of `s`, at most 200 bytes: for messages quoting a server.
pub fn first_line(s: &str) -> String {
    let line = s.trim().lines().next().unwrap_or("").trim();
    if line.len() > 200 {
        let mut end = 200;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn credentials_go_over_https_to_any_host() {
        assert!(credentials_may_go_to("https://auth.example.com/token", &[]).is_ok());
        assert!(credentials_may_go_to("https://127.0.0.1:5001/token", &[]).is_ok());
        assert!(credentials_may_go_to("HTTPS://Auth.Example.com/token", &[]).is_ok());
    }

    #[test]
    fn credentials_never_go_over_plain_http_to_another_host() {
        let why = credentials_may_go_to("http://auth.example.com/token", &[]).unwrap_err();
        assert!(why.contains("plain HTTP to auth.example.com"), "{why}");
        assert!(why.contains("unencrypted"), "{why}");
        // Naming the registry insecure does not make another host insecure.
        assert!(credentials_may_go_to(
            "http://auth.example.com:5001/token",
            &insecure(&["registry.lan:5000"])
        )
        .is_err());
        // Nor does the same host name on another port named insecure.
        assert!(credentials_may_go_to(
            "http://registry.lan:5001/token",
            &insecure(&["registry.lan:5000"])
        )
        .is_err());
        // Addresses that only look local are not loopback.
        for url in [
            "http://10.0.0.1/token",
            "http://192.168.1.1/token",
            "http://[fe80::1]/token",
            "http://0.0.0.0/token",
            "http://localhost.example.com/token",
            "http://127.0.0.1.nip.io/token",
        ] {
            assert!(credentials_may_go_to(url, &[]).is_err(), "{url}");
        }
    }

    #[test]
    fn credentials_go_over_plain_http_to_loopback() {
        for url in [
            "http://127.0.0.1:5001/token",
            "http://127.1.2.3/token",
            "http://localhost:8080/token",
            "http://LOCALHOST/token",
            "http://[::1]:9/token",
        ] {
            assert!(credentials_may_go_to(url, &[]).is_ok(), "{url}");
        }
    }

    #[test]
    fn credentials_go_over_plain_http_to_an_insecure_registry_host() {
        let lan = insecure(&["registry.lan:5000", "auth.lan"]);
        // The same host as the (insecure) registry.
        assert!(credentials_may_go_to("http://registry.lan:5000/token", &lan).is_ok());
        // A realm host named insecure without a port: any port.
        assert!(credentials_may_go_to("http://auth.lan:8443/token", &lan).is_ok());
        assert!(credentials_may_go_to("http://AUTH.LAN/token", &lan).is_ok());
    }

    #[test]
    fn credentials_never_go_to_odd_schemes_or_non_urls() {
        for url in [
            "ftp://auth.example.com/token",
            "file:///etc/passwd",
            "ws://127.0.0.1/token",
            "javascript:alert(1)",
            "//auth.example.com/token",
            "auth.example.com/token",
            "",
        ] {
            assert!(credentials_may_go_to(url, &[]).is_err(), "{url}");
        }
    }

    #[test]
    fn downgrades_outside_the_plain_http_allowance_are_refused() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert_eq!(downgrade(&url("https://cdn.example/blob"), &[]), None);
        assert_eq!(downgrade(&url("http://127.0.0.1:9/blob"), &[]), None);
        assert_eq!(
            downgrade(&url("http://cdn.lan/blob"), &insecure(&["cdn.lan"])),
            None
        );
        let why = downgrade(&url("http://cdn.example/blob"), &[]).unwrap();
        assert!(why.contains("plain HTTP to cdn.example"), "{why}");
        assert!(downgrade(&url("ftp://cdn.example/blob"), &[]).is_some());
    }

    #[test]
    fn urls_for_messages_carry_no_secrets() {
        let url = reqwest::Url::parse("https://bob:hunter2@cdn.example/blob?sig=abc").unwrap();
        let shown = without_secrets(&url);
        assert_eq!(shown, "https://cdn.example/blob?…");
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:80",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    /// A server on 127.0.0.1 answering one request with `head` then `body`; returns
    /// the URL and how many body bytes it managed to write.
    fn serve_once(
        head: String,
        body: Vec<u8>,
        repeat: usize,
    ) -> (String, std::thread::JoinHandle<usize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_write_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(head.as_bytes());
            let mut written = 0;
            for _ in 0..repeat {
                if conn.write_all(&body).is_err() {
                    break;
                }
                written += body.len();
            }
            written
        });
        (url, server)
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_body_past_the_cap_is_refused_and_not_read_to_the_end() {
        const CHUNK: usize = 1 << 20;
        const CHUNKS: usize = 200;
        // No Content-Length: the body ends when the connection closes.
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
        let (url, server) = serve_once(head, vec![b'x'; CHUNK], CHUNKS);
        let got = block_on(async {
            let response = get_async(&url).await;
            read_capped(response, 64 * 1024).await
        });
        assert!(matches!(got, Err(CappedRead::TooLarge)), "{got:?}");
        // The server saw the client hang up long before the end.
        let written = server.join().unwrap();
        assert!(
            written < CHUNK * CHUNKS / 4,
            "the server wrote {written} bytes"
        );
    }

    #[test]
    fn an_announced_length_past_the_cap_is_refused_before_reading() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\nConnection: close\r\n\r\n";
        let (url, server) = serve_once(head.to_string(), Vec::new(), 0);
        let got = block_on(async {
            let response = get_async(&url).await;
            read_capped(response, 1024).await
        });
        assert!(matches!(got, Err(CappedRead::TooLarge)), "{got:?}");
        server.join().unwrap();
    }

    #[test]
    fn an_error_body_is_truncated_not_refused() {
        let len = 3 * MAX_ERROR_BODY_BYTES;
        let head = format!("HTTP/1.1 500 X\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
        let (url, server) = serve_once(head, vec![b'e'; len], 1);
        let body = block_on(async { error_body(get_async(&url).await).await });
        assert_eq!(body.len(), MAX_ERROR_BODY_BYTES);
        assert!(body.bytes().all(|b| b == b'e'));
        let _ = server.join();
    }

    async fn get_async(url: &str) -> reqwest::Response {
        reqwest::Client::new().get(url).send().await.unwrap()
    }
}
