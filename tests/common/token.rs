//! A Docker token issuer for the registry harness's `Mode::Token`: the registry answers
//! `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, the client fetches a
//! JWT here (`GET /token?service=…&scope=repository:NAME:pull,push[&scope=…][&account=…]`
//! with Basic credentials) and retries with `Authorization: Bearer JWT`. This is the flow
//! Docker Hub, GHCR and most hosted registries use, which plain htpasswd does not cover.
//!
//! Why our own issuer: Debian has no token server package, and the protocol is small.
//! The tokens are what distribution 2.8 verifies: RS256 JWTs signed with a key made by
//! `openssl` (signing shells out to `openssl dgst -sha256 -sign`), whose self-signed
//! certificate is both the registry's `rootcertbundle` and the JWT header's `x5c[0]`.
//! distribution 2.8 takes `aud` as a single string (3.x also takes an array).
//!
//! It also takes Docker's OAuth2 form: `POST /token` with `grant_type=refresh_token` and
//! `refresh_token=…` (what `docker login` stores as an `identitytoken`, e.g. for Azure
//! ACR); the one refresh token it honours is [`TokenIssuer::identity_token`].
//!
//! Policy: the one user/password given gets every `pull`/`push` it asks for on every
//! `repository` scope; anyone else (anonymous, wrong password) gets `401` with a JSON
//! error body, so a client reports a clear failure. Every request is logged
//! ([`TokenRequest`]) so tests can assert which scopes a client asked for.
//!
//! Loopback only; HTTP/1.1, one request per connection (`Connection: close`); every
//! read has a timeout; the accept thread ends when the issuer is dropped.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::registry::{run, run_with_timeout};
use super::require_tool;

/// The registry's `auth.token.service`, and the tokens' `aud`.
pub const SERVICE: &str = "imgbuild-test-registry";
/// The registry's `auth.token.issuer`, and the tokens' `iss`.
pub const ISSUER: &str = "imgbuild-test-issuer";
/// Lifetime of a token, in seconds (`expires_in`).
const TOKEN_LIFETIME: u64 = 300;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head we read.
const MAX_HEAD: u64 = 64 * 1024;

/// One request to the issuer, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `scope` parameters, in order, percent-decoded
    /// (e.g. `"repository:imgbuild/hello:pull,push"`).
    pub scopes: Vec<String>,
    /// The Basic-auth user name sent, right or wrong; `None` for anonymous.
    pub user: Option<String>,
    /// `grant_type` of a `POST /token` (`refresh_token`); `None` for a `GET`.
    pub grant: Option<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// The `account` parameter.
    pub account: Option<String>,
    /// True when a token was issued (200), false when refused.
    pub granted: bool,
    /// The HTTP status the issuer answered.
    pub status: u16,
}

/// A running token issuer on 127.0.0.1; stops on drop.
pub struct TokenIssuer {
    addr: SocketAddr,
    cert: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    user: String,
    password: String,
    key: PathBuf,
    /// base64 (standard) DER of the signing certificate: the `x5c` header entry.
    x5c: String,
    stop: AtomicBool,
    serial: AtomicU64,
    /// Seconds a token is valid (its `exp`); [`TOKEN_LIFETIME`] unless a test shortens it.
    lifetime: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
}

impl TokenIssuer {
    /// Makes later tokens expire `secs` seconds after they are issued.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.shared.lifetime.store(secs, Ordering::SeqCst);
    }

    /// The refresh token (a Docker "identity token") this issuer honours.
    pub fn identity_token(&self) -> String {
        identity_token_for(&self.shared.password)
    }

    /// Makes a signing key and certificate in `dir` and starts serving on a free port.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenIssuer {
        require_tool("openssl");
        fs::create_dir_all(dir).expect("token issuer dir");
        let key = dir.join("token-signer.key");
        let cert = dir.join("token-signer.crt");
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-days", "3650", "-subj", "/CN=imgbuild test token signer"]));
        let der = run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert))
        .stdout;

        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .expect("bind the token issuer on 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("issuer address");
        let shared = Arc::new(Shared {
            user: user.into(),
            password: password.into(),
            key,
            x5c: STANDARD.encode(der),
            stop: AtomicBool::new(false),
            serial: AtomicU64::new(0),
            lifetime: AtomicU64::new(TOKEN_LIFETIME),
            log: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("token-issuer".into())
            .spawn(move || accept_loop(listener, s))
            .expect("spawn the token issuer thread");
        TokenIssuer {
            addr,
            cert,
            shared,
            thread: Some(thread),
        }
    }

    /// "http://127.0.0.1:PORT/token": the registry's `auth.token.realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The signing certificate (PEM): the registry's `auth.token.rootcertbundle`.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Every request served so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.log.lock().expect("token log").clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls the non-blocking listener (so that drop never waits on `accept`) and serves
/// each connection on its own thread.
fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(&shared);
                let _ = std::thread::Builder::new()
                    .name("token-issuer-conn".into())
                    .spawn(move || serve(stream, &s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn identity_token_for(password: &str) -> String {
    format!("imgbuild-test-identity-{password}")
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = stream;
    let Some((method, target, headers)) = read_request_head(&mut reader) else {
        return;
    };
    // The body: the form of a POST (and read in any case, so that closing does not
    // reset the connection under the client before it reads our answer).
    let mut body = Vec::new();
    if let Some(n) = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        let _ = (&mut reader).take(n.min(MAX_HEAD)).read_to_end(&mut body);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/token" {
        respond(
            &mut out,
            404,
            &error_body("NOT_FOUND", "only /token is served here"),
        );
        return;
    }
    if method != "GET" && method != "POST" {
        respond(
            &mut out,
            405,
            &error_body("UNSUPPORTED", "only GET and POST /token"),
        );
        return;
    }
    let form = if method == "POST" {
        body.as_str()
    } else {
        query
    };

    let params: Vec<(String, String)> = form
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    // GET repeats `scope`; the OAuth2 POST sends one, its scopes separated by spaces.
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_string))
        .collect();
    let creds = header(&headers, "authorization").and_then(basic_credentials);
    let user = creds.as_ref().map(|(u, _)| u.clone());
    let grant = (method == "POST").then(|| param("grant_type").unwrap_or_default());
    let ok = match &grant {
        Some(g) => {
            g == "refresh_token"
                && param("refresh_token") == Some(identity_token_for(&shared.password))
        }
        None => creds
            .as_ref()
            .is_some_and(|(u, p)| *u == shared.user && *p == shared.password),
    };

    // OAuth2 (RFC 6749 §3.1) forbids repeating a parameter: a strict server refuses.
    let repeated_scope =
        method == "POST" && params.iter().filter(|(k, _)| k == "scope").count() > 1;
    let (status, body) = if repeated_scope {
        (
            400,
            r#"{"error":"invalid_request","error_description":"scope given more than once"}"#
                .to_string(),
        )
    } else if ok {
        match issue(shared, user.as_deref().unwrap_or_default(), &scopes) {
            Ok(body) => (200, body),
            Err(e) => (500, error_body("UNKNOWN", &format!("signing failed: {e}"))),
        }
    } else if grant.is_some() {
        (401, error_body("UNAUTHORIZED", "invalid refresh token"))
    } else if user.is_some() {
        (
            401,
            error_body("UNAUTHORIZED", "invalid username or password"),
        )
    } else {
        (
            401,
            error_body(
                "UNAUTHORIZED",
                "authentication required: anonymous access is refused",
            ),
        )
    };
    shared.log.lock().expect("token log").push(TokenRequest {
        scopes,
        user,
        grant,
        service: param("service"),
        account: param("account"),
        granted: status == 200,
        status,
    });
    respond(&mut out, status, &body);
}

/// Builds and signs the token, and the JSON answer carrying it.
fn issue(shared: &Shared, user: &str, scopes: &[String]) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let access: Vec<serde_json::Value> = scopes.iter().filter_map(|s| grant(s)).collect();
    let serial = shared.serial.fetch_add(1, Ordering::SeqCst);
    let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [shared.x5c] });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user,
        "aud": SERVICE,
        "exp": now + shared.lifetime.load(Ordering::SeqCst),
        "nbf": now,
        "iat": now,
        "jti": format!("imgbuild-test-{}-{now}-{serial}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", "-sha256", "-sign"]).arg(&shared.key);
    let out = run_with_timeout(cmd, signing_input.as_bytes(), Duration::from_secs(10))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!(
            "openssl dgst: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&out.stdout));
    Ok(serde_json::json!({
        "token": jwt,
        "access_token": jwt,
        "expires_in": shared.lifetime.load(Ordering::SeqCst),
        "issued_at": rfc3339(now),
    })
    .to_string())
}

/// `repository:NAME:ACTIONS` → the access entry granting its `pull`/`push` actions;
/// other types (e.g. `registry:catalog:*`) get nothing.
fn grant(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind != "repository" || name.is_empty() {
        return None;
    }
    let actions: Vec<&str> = actions
        .split(',')
        .filter(|a| matches!(*a, "pull" | "push"))
        .collect();
    Some(serde_json::json!({ "type": "repository", "name": name, "actions": actions }))
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] })
        .to_string()
}

fn respond(out: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Basic realm=\"imgbuild-test-issuer\"\r\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{challenge}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = out.flush();
    let _ = out.shutdown(std::net::Shutdown::Write);
}

type Headers = Vec<(String, String)>;

/// The request line's method and target, and the headers (names lower-cased).
fn read_request_head(r: &mut impl BufRead) -> Option<(String, String, Headers)> {
    let mut limited = r.take(MAX_HEAD);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if limited.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut first = lines.first()?.split_whitespace();
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((method, target, headers))
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Query-string decoding: `%XX` escapes and `+` for space.
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match b.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from a day count (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
