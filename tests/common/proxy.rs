//! A fault-injecting HTTP/1.1 reverse proxy for registry tests: clients use
//! `proxy.host()` as if it were the registry, the proxy forwards to the real one, and
//! chosen requests fail the way networks and registries fail (a dropped connection, a
//! 500 or 429, the registry dying at an exact point), so tests can check how a client
//! retries, what it reports and what it leaves behind. A request log lets tests assert
//! what the client did (e.g. how many `HEAD`s a re-push made).
//!
//! ```ignore
//! let reg = Registry::start(Mode::Plain);
//! let proxy = FaultProxy::start(
//!     reg.addr(),
//!     vec![
//!         Fault::new(Action::Status(500)).method("PUT").path("/manifests/"),
//!         Fault::new(Action::Run(Box::new(reg.kill_switch()))).path("/blobs/uploads/"),
//!     ],
//! );
//! // push to docker://{proxy.host()}/repo:tag …
//! for (method, path, status) in proxy.requests() { … }
//! ```
//!
//! What it does and does not do:
//! - It is not a CONNECT proxy and speaks plain HTTP only (no TLS).
//! - Requests and responses are relayed byte for byte, heads included: the client's
//!   `Host` reaches the registry unchanged, so the absolute `Location` URLs it returns
//!   point back at the proxy. Bodies (Content-Length, chunked, or until close) stream
//!   through a fixed buffer, never held whole in memory.
//! - Each forwarded request gets a fresh upstream connection, so a restarted registry
//!   is picked up at once; client connections are kept alive as the client asks.
//! - `Expect: 100-continue` is honoured: the body is sent on once the registry says 100.
//! - An unreachable upstream answers `502` (logged as 502).
//! - Faults match on method (exact) and a substring of the request target (path and
//!   query), first matching fault wins, each fires `times` times, then passes through.
//!
//! Loopback only; every socket has read and write timeouts; on drop the listener stops
//! and open connections are shut down (their threads then end by themselves).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a client connection may sit idle (between or inside requests).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the registry may take to answer or to accept more bytes.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to the registry may take (loopback: refused at once if down).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request or response head, and the largest chunk-size line.
const MAX_HEAD: u64 = 64 * 1024;
/// The relay buffer.
const BUFFER: usize = 64 * 1024;

/// What a matching fault does to the request.
pub enum Action {
    /// Close the client connection without answering, once the request head is read.
    Drop,
    /// Answer this status (small JSON error body, `Connection: close`) without
    /// forwarding; the request body, if any, is read and discarded first.
    Status(u16),
    /// Call the function (e.g. [`super::registry::Registry::kill_switch`]), then drop
    /// the connection as [`Action::Drop`] does. The request is not forwarded.
    Run(Box<dyn Fn() + Send + Sync>),
    /// Answer 200 with these extra headers and this JSON body (`Connection: close`)
    /// without forwarding: an answer the registry under test cannot give (a paged
    /// tag list: Debian's registry 2.8 ignores `?n=`).
    Respond(Vec<(String, String)>, String),
}

/// A fault: which requests it matches, what it does, how many times.
pub struct Fault {
    /// Exact method (`"PUT"`); `None` matches any.
    pub method: Option<String>,
    /// Substring of the request target (path and query); `None` matches any.
    pub path: Option<String>,
    pub action: Action,
    /// How many matching requests it applies to before letting them pass.
    pub times: usize,
}

impl Fault {
    /// A fault on every request, once; narrow it with [`Fault::method`], [`Fault::path`].
    pub fn new(action: Action) -> Fault {
        Fault {
            method: None,
            path: None,
            action,
            times: 1,
        }
    }

    pub fn method(mut self, method: &str) -> Fault {
        self.method = Some(method.into());
        self
    }

    /// Matches targets containing `substring`, e.g. `"/manifests/"`.
    pub fn path(mut self, substring: &str) -> Fault {
        self.path = Some(substring.into());
        self
    }

    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }
}

/// One logged request: method, target (path and query), and the status the client
/// got (0 when the connection was dropped without an answer).
pub type LoggedRequest = (String, String, u16);

/// A running proxy; stops on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A fault's action as the connection threads share it.
#[derive(Clone)]
enum Act {
    Drop,
    Status(u16),
    Run(Arc<dyn Fn() + Send + Sync>),
    Respond(Arc<(Vec<(String, String)>, String)>),
}

struct Armed {
    method: Option<String>,
    path: Option<String>,
    act: Act,
    left: usize,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Vec<Armed>>,
    log: Mutex<Vec<LoggedRequest>>,
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Requests read but not yet logged: a client may have its answer (and exit)
    /// before the request is logged, so `requests()` waits for these.
    in_flight: AtomicUsize,
    /// A clone of every open socket (client and upstream), to shut down on drop.
    open: Mutex<HashMap<u64, TcpStream>>,
}

/// A socket's entry in `Shared::open`, removed when this drops (so the clone does not
/// keep the connection open after its owner closed it).
struct Tracked<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        lock(&self.shared.open).remove(&self.id);
    }
}

/// Locks even a poisoned mutex: a panicking test thread must not wedge the proxy.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (free port) and forwards to `upstream` (a loopback address).
    pub fn start(upstream: SocketAddr, faults: Vec<Fault>) -> FaultProxy {
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy forwards to loopback only, not {upstream}"
        );
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .expect("bind the proxy on 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, s))
            .expect("spawn the proxy thread");
        let proxy = FaultProxy {
            addr,
            shared,
            thread: Some(thread),
        };
        for f in faults {
            proxy.add_fault(f);
        }
        proxy
    }

    /// "127.0.0.1:PORT": use it in references instead of the registry's host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Arms one more fault (after those already armed) while the proxy runs.
    pub fn add_fault(&self, fault: Fault) {
        let act = match fault.action {
            Action::Drop => Act::Drop,
            Action::Status(s) => Act::Status(s),
            Action::Run(f) => Act::Run(Arc::from(f)),
            Action::Respond(headers, body) => Act::Respond(Arc::new((headers, body))),
        };
        lock(&self.shared.faults).push(Armed {
            method: fault.method,
            path: fault.path,
            act,
            left: fault.times,
        });
    }

    /// Every request so far, in the order they finished (or were dropped). Waits
    /// (at most 5 s) for requests still being answered to be logged.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        let start = std::time::Instant::now();
        while self.shared.in_flight.load(Ordering::SeqCst) > 0
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        lock(&self.shared.log).clone()
    }

    /// How many faults have not fired yet (summing the `times` left).
    pub fn faults_left(&self) -> usize {
        lock(&self.shared.faults).iter().map(|f| f.left).sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let open = std::mem::take(&mut *lock(&self.shared.open));
        for s in open.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Shared {
    /// The first armed fault matching the request, used up by one.
    fn take_fault(&self, method: &str, target: &str) -> Option<Act> {
        let mut faults = lock(&self.faults);
        let f = faults.iter_mut().find(|f| {
            f.left > 0
                && f.method.as_deref().is_none_or(|m| m == method)
                && f.path.as_deref().is_none_or(|p| target.contains(p))
        })?;
        f.left -= 1;
        Some(f.act.clone())
    }

    fn record(&self, method: &str, target: &str, status: u16) {
        lock(&self.log).push((method.into(), target.into(), status));
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Remembers a socket for shutdown on drop, until the guard drops; `None` when the
    /// proxy is already stopping (the caller then gives up).
    fn track(&self, s: &TcpStream) -> Option<Tracked<'_>> {
        let clone = s.try_clone().ok()?;
        let mut open = lock(&self.open);
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        open.insert(id, clone);
        Some(Tracked { shared: self, id })
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(&shared);
                let _ = std::thread::Builder::new()
                    .name("fault-proxy-conn".into())
                    .spawn(move || {
                        if let Some(_tracked) = s.track(&stream) {
                            serve(stream, &s);
                        }
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// A parsed message head, with its raw bytes to relay unchanged.
struct Head {
    raw: Vec<u8>,
    /// Request: method, target, version; response: version, status, reason.
    start: [String; 3],
    /// Names lower-cased.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Body framing by Transfer-Encoding / Content-Length (RFC 9112 §6.3).
    fn framing(&self) -> io::Result<Option<Body>> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Some(Body::Chunked));
        }
        match self.header("content-length") {
            Some(v) => v
                .trim()
                .parse()
                .map(|n| Some(Body::Length(n)))
                .map_err(|_| bad(format!("bad Content-Length {v:?}"))),
            None => Ok(None),
        }
    }

    fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }

    /// Keep-alive by HTTP/1.1 default, unless `Connection: close` (or HTTP/1.0
    /// without `Connection: keep-alive`).
    fn keep_alive(&self) -> bool {
        let version = if self.start[0].starts_with("HTTP/") {
            &self.start[0]
        } else {
            &self.start[2]
        };
        if self.has_token("connection", "close") {
            return false;
        }
        version != "HTTP/1.0" || self.has_token("connection", "keep-alive")
    }
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Reads a head up to the empty line; `None` at a clean EOF before any byte.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut limited = r.take(MAX_HEAD);
    loop {
        let mut line = Vec::new();
        if limited.read_until(b'\n', &mut line)? == 0 {
            if raw.is_empty() && lines.is_empty() {
                return Ok(None);
            }
            return Err(bad("the connection closed inside a message head".into()));
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // stray CRLF between messages (RFC 9112 §2.2)
            }
            raw.extend_from_slice(&line);
            break;
        }
        if !line.ends_with(b"\n") {
            return Err(bad("message head too large".into()));
        }
        raw.extend_from_slice(&line);
        lines.push(text);
    }
    let mut parts = lines[0].splitn(3, ' ').map(str::to_string);
    let start = [
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    ];
    if start[1].is_empty() {
        return Err(bad(format!("bad start line {:?}", lines[0])));
    }
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Some(Head {
        raw,
        start,
        headers,
    }))
}

/// Copies exactly `n` bytes through a fixed buffer.
fn copy_exact(from: &mut impl Read, to: &mut impl Write, mut n: u64) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    while n > 0 {
        let want = n.min(BUFFER as u64) as usize;
        let got = from.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        to.write_all(&buf[..got])?;
        n -= got as u64;
    }
    Ok(())
}

/// Relays a chunked body as it is (chunk-size lines, data, trailers).
fn copy_chunked(from: &mut impl BufRead, to: &mut impl Write) -> io::Result<()> {
    loop {
        let line = read_line(from)?;
        to.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| bad(format!("bad chunk size line {text:?}")))?;
        if size == 0 {
            // Trailer fields, up to the empty line.
            loop {
                let line = read_line(from)?;
                to.write_all(&line)?;
                if line == b"\r\n" || line == b"\n" {
                    return Ok(());
                }
            }
        }
        copy_exact(from, to, size + 2)?; // data and its CRLF
    }
}

fn read_line(from: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    from.take(MAX_HEAD).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(bad("truncated or oversized line in a chunked body".into()));
    }
    Ok(line)
}

fn copy_body(body: Body, from: &mut impl BufRead, to: &mut impl Write) -> io::Result<()> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => copy_exact(from, to, n),
        Body::Chunked => copy_chunked(from, to),
        Body::UntilClose => {
            let mut buf = vec![0u8; BUFFER];
            loop {
                let got = from.read(&mut buf)?;
                if got == 0 {
                    return Ok(());
                }
                to.write_all(&buf[..got])?;
            }
        }
    }
}

/// Serves one client connection: requests one after another until either side closes.
fn serve(client: TcpStream, shared: &Shared) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = client.set_write_timeout(Some(CLIENT_TIMEOUT));
    let _ = client.set_nodelay(true);
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut from_client = BufReader::with_capacity(BUFFER, read_half);
    let mut to_client = client;
    loop {
        let req = match read_head(&mut from_client) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = answer(&mut to_client, 400, &e.to_string());
                }
                return;
            }
        };
        let (method, target) = (req.start[0].clone(), req.start[1].clone());
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let body = match req.framing() {
            Ok(b) => b.unwrap_or(Body::None),
            Err(e) => {
                let _ = answer(&mut to_client, 400, &e.to_string());
                shared.record(&method, &target, 400);
                return;
            }
        };
        let expects_continue = req.has_token("expect", "100-continue") && body != Body::None;
        match shared.take_fault(&method, &target) {
            Some(Act::Drop) => {
                shared.record(&method, &target, 0);
                let _ = to_client.shutdown(Shutdown::Both);
                return;
            }
            Some(Act::Run(f)) => {
                f();
                shared.record(&method, &target, 0);
                let _ = to_client.shutdown(Shutdown::Both);
                return;
            }
            Some(Act::Respond(answer)) => {
                if !expects_continue {
                    let _ = copy_body(body, &mut from_client, &mut io::sink());
                }
                let (headers, body) = &*answer;
                let mut head =
                    String::from("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ));
                let _ = to_client
                    .write_all(head.as_bytes())
                    .and_then(|()| to_client.write_all(body.as_bytes()))
                    .and_then(|()| to_client.flush());
                let _ = to_client.shutdown(Shutdown::Write);
                shared.record(&method, &target, 200);
                return;
            }
            Some(Act::Status(status)) => {
                // Read the body first: closing with unread input would reset the
                // connection, and the client might never see the status.
                if !expects_continue {
                    let _ = copy_body(body, &mut from_client, &mut io::sink());
                }
                let why = format!("fault injected by the test proxy: HTTP {status}");
                let _ = answer(&mut to_client, status, &why);
                shared.record(&method, &target, status);
                return;
            }
            None => {}
        }
        let mut status = 0;
        let keep_alive = forward(
            &req,
            body,
            expects_continue,
            &mut from_client,
            &mut to_client,
            shared,
            &mut status,
        );
        shared.record(&method, &target, status);
        match keep_alive {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = to_client.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Forwards one request and relays the answer; `status` is set once a final response
/// head went to the client. Ok(true) when the client connection may serve another.
fn forward(
    req: &Head,
    body: Body,
    expects_continue: bool,
    from_client: &mut BufReader<TcpStream>,
    to_client: &mut TcpStream,
    shared: &Shared,
    status: &mut u16,
) -> io::Result<bool> {
    let upstream = match TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            if !expects_continue {
                let _ = copy_body(body, from_client, &mut io::sink());
            }
            answer(
                to_client,
                502,
                &format!("the test proxy cannot reach {}: {e}", shared.upstream),
            )?;
            *status = 502;
            return Ok(false);
        }
    };
    let Some(_tracked) = shared.track(&upstream) else {
        return Ok(false);
    };
    upstream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    upstream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    let _ = upstream.set_nodelay(true);
    let mut from_upstream = BufReader::with_capacity(BUFFER, upstream.try_clone()?);
    let mut to_upstream = upstream;
    to_upstream.write_all(&req.raw)?;

    // With `Expect: 100-continue` the client waits for 100 before it sends the body,
    // and so does the registry's answer: relay its 100, or take its final answer
    // (then the body was never sent, and the connection cannot be reused).
    let mut early = None;
    if expects_continue {
        let h = read_head(&mut from_upstream)?.ok_or_else(upstream_closed)?;
        if h.status() == 100 {
            to_client.write_all(&h.raw)?;
        } else {
            early = Some(h);
        }
    }
    // Whether the client's request was read to its end (else the connection is done).
    let mut body_read = early.is_none();
    if body_read {
        if let Err(e) = copy_body(body, from_client, &mut to_upstream) {
            // The registry may have answered early (and closed); relay that answer if
            // it comes at once, otherwise give up on the connection.
            body_read = false;
            let _ = from_upstream
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(2)));
            match read_head(&mut from_upstream) {
                Ok(Some(h)) if h.status() >= 200 => early = Some(h),
                _ => return Err(e),
            }
        }
    }
    let resp = match early {
        Some(h) => h,
        None => loop {
            let h = read_head(&mut from_upstream)?.ok_or_else(upstream_closed)?;
            if (100..200).contains(&h.status()) && h.status() != 101 {
                to_client.write_all(&h.raw)?; // informational: relay, read on
                continue;
            }
            break h;
        },
    };
    to_client.write_all(&resp.raw)?;
    *status = resp.status();
    let no_body = req.start[0] == "HEAD"
        || (100..200).contains(&resp.status())
        || resp.status() == 204
        || resp.status() == 304;
    let resp_body = if no_body {
        Body::None
    } else {
        resp.framing()?.unwrap_or(Body::UntilClose)
    };
    copy_body(resp_body, &mut from_upstream, to_client)?;
    to_client.flush()?;
    Ok(body_read
        && resp_body != Body::UntilClose
        && req.keep_alive()
        && resp.keep_alive()
        && resp.status() != 101)
}

fn upstream_closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the registry closed the connection without an answer",
    )
}

/// A proxy-made answer: `status`, a distribution-style JSON error, `Connection: close`.
fn answer(to: &mut TcpStream, status: u16, message: &str) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected Fault",
    };
    let body = serde_json::json!({
        "errors": [{ "code": "UNKNOWN", "message": message, "detail": null }]
    })
    .to_string();
    write!(
        to,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    to.flush()?;
    to.shutdown(Shutdown::Write)
}
