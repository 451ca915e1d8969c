//! A tiny scripted HTTP/1.1 server on 127.0.0.1 for hostile-registry tests: each
//! request's head is parsed and logged, then a handler writes whatever it likes to the
//! socket — a lie, a stall, a redirect, an endless body. One thread per connection,
//! one request per connection (`Connection: close`), read/write timeouts on every
//! socket, and the listener stops on drop.
//!
//! ```ignore
//! let server = FakeServer::start(|req, out| {
//!     respond(out, 401, &[("WWW-Authenticate", "Bearer realm=\"http://x/\"")], b"");
//! });
//! // … run imgbuild against server.host() …
//! assert!(server.requests().iter().all(|r| r.header("authorization").is_none()));
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a socket may sit without progress before the server gives up on it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(60);

/// A request as received: method, target (path and query, or an absolute URL when
/// the client took the server for a proxy) and headers (names lowercased).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Seen, &mut TcpStream) + Send + Sync;

pub struct FakeServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Seen, &mut TcpStream) + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let (log, handler) = (log.clone(), handler.clone());
                    std::thread::spawn(move || {
                        let _ = conn.set_read_timeout(Some(SOCKET_TIMEOUT));
                        let _ = conn.set_write_timeout(Some(SOCKET_TIMEOUT));
                        if let Some(seen) = read_head(&mut conn) {
                            log.lock().unwrap().push(seen.clone());
                            handler(&seen, &mut conn);
                        }
                        let _ = conn.flush();
                    });
                }
            });
        }
        FakeServer { addr, log, stop }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Reads a request head (and drops any body the head announces, up to 1 MiB).
fn read_head(conn: &mut TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let seen = Seen {
        method,
        target,
        headers,
    };
    if let Some(len) = seen
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        let _ = std::io::copy(
            &mut reader.by_ref().take(len.min(1 << 20)),
            &mut std::io::sink(),
        );
    }
    Some(seen)
}

/// Writes a whole response with a body and `Connection: close`.
pub fn respond(out: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
}

/// Writes a response head announcing `length` body bytes, without the body.
pub fn respond_head(out: &mut TcpStream, status: u16, headers: &[(&str, &str)], length: u64) {
    let mut head =
        format!("HTTP/1.1 {status} X\r\nContent-Length: {length}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
}
