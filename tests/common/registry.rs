//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) started on
//! 127.0.0.1 with a free port, its storage in a temp dir, in one of a few set-ups
//! (plain HTTP, htpasswd Basic auth, TLS with a CA made by openssl here, both, or
//! bearer tokens from the issuer in `token.rs`, the flow hosted registries use).
//! Loopback only; every wait is bounded; failures carry the registry's log.
//!
//! A registry can be killed and restarted on the same port and storage
//! ([`Registry::kill`], [`Registry::restart`], [`Registry::kill_switch`] for a fault
//! proxy's hook), so a test can check what an interrupted push left behind.
//!
//! ```ignore
//! let reg = Registry::start(Mode::htpasswd("alice", "s3cret"));
//! let dest = format!("docker://{}/imgbuild/hello:1.0.0", reg.host());
//! // skopeo flags matching the set-up (TLS or not, credentials):
//! let flags = reg.skopeo_flags("dest-");
//! ```
//!
//! Needs `docker-registry`, `openssl` (TLS, tokens) and `htpasswd` (apache2-utils) on PATH.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::require_tool;
use super::token::{TokenIssuer, TokenRequest, ISSUER, SERVICE};

/// How long a registry may take to answer `GET /v2/` after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports to try when the one we picked was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;

/// The registry's set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP, anonymous push and pull.
    Plain,
    /// Plain HTTP, Basic auth against a bcrypt htpasswd file.
    Htpasswd { user: String, password: String },
    /// HTTPS with a server certificate for 127.0.0.1/localhost signed by a test CA.
    Tls,
    /// HTTPS and Basic auth.
    TlsHtpasswd { user: String, password: String },
    /// Plain HTTP, `auth: token`: bearer tokens from a test issuer (plain HTTP too)
    /// that grants pull and push to this user and refuses everyone else.
    Token { user: String, password: String },
    /// HTTPS (the test CA) and `auth: token`, the set-up of hosted registries; the
    /// issuer stays plain HTTP on loopback.
    TlsToken { user: String, password: String },
}

impl Mode {
    pub fn htpasswd(user: &str, password: &str) -> Mode {
        Mode::Htpasswd {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn tls_htpasswd(user: &str, password: &str) -> Mode {
        Mode::TlsHtpasswd {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn token(user: &str, password: &str) -> Mode {
        Mode::Token {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn tls_token(user: &str, password: &str) -> Mode {
        Mode::TlsToken {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            Mode::Tls | Mode::TlsHtpasswd { .. } | Mode::TlsToken { .. }
        )
    }

    /// The (user, password) the registry accepts, when it requires any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Mode::Htpasswd { user, password }
            | Mode::TlsHtpasswd { user, password }
            | Mode::Token { user, password }
            | Mode::TlsToken { user, password } => Some((user, password)),
            Mode::Plain | Mode::Tls => None,
        }
    }
}

/// A running `docker-registry`; killed (and reaped) on drop.
pub struct Registry {
    mode: Mode,
    port: u16,
    /// Shared with [`Registry::kill_switch`] handles.
    child: Arc<Mutex<Option<Child>>>,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// One log per run: the first start, then each restart.
    logs: Vec<PathBuf>,
    cert_dir: Option<PathBuf>,
    /// `Mode::Token`'s issuer: runs for the registry's whole life, across restarts.
    issuer: Option<TokenIssuer>,
}

impl Registry {
    /// Starts a registry and waits until it answers `GET /v2/` (200, or 401 with auth),
    /// panicking with its log if it does not within 10 s.
    pub fn start(mode: Mode) -> Registry {
        require_tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-registry-")
            .tempdir()
            .expect("registry temp dir");
        let root = dir.path().to_path_buf();
        let storage = root.join("storage");
        fs::create_dir_all(&storage).expect("registry storage dir");

        let issuer = match &mode {
            Mode::Token { user, password } | Mode::TlsToken { user, password } => {
                Some(TokenIssuer::start(&root.join("token"), user, password))
            }
            _ => None,
        };
        let auth = match (&mode, &issuer) {
            (Mode::Htpasswd { user, password } | Mode::TlsHtpasswd { user, password }, _) => {
                Auth::Htpasswd(make_htpasswd(&root, user, password))
            }
            (_, Some(issuer)) => Auth::Token {
                realm: issuer.realm(),
                rootcertbundle: issuer.cert_path().to_path_buf(),
            },
            _ => Auth::None,
        };
        let tls = mode.is_tls().then(|| make_certs(&root));

        let cert_dir = tls.as_ref().map(|t| t.cert_dir.clone());
        let ca = cert_dir.as_ref().map(|d| d.join("ca.crt"));
        let config = root.join("config.yml");
        let mut last_log = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            fs::write(&config, config_yaml(port, &storage, &auth, tls.as_ref()))
                .expect("write registry config");
            let log_path = root.join(format!("registry-{attempt}.log"));
            let mut child = spawn(&config, &log_path, &root);
            match wait_ready(&mut child, port, &log_path, ca.as_deref()) {
                Ok(()) => {
                    return Registry {
                        mode,
                        port,
                        child: Arc::new(Mutex::new(Some(child))),
                        dir,
                        config,
                        logs: vec![log_path],
                        cert_dir,
                        issuer,
                    }
                }
                Err(Failure::PortTaken) => {
                    kill(&mut child);
                    last_log = read_log(&log_path);
                }
                Err(Failure::Fatal(why)) => {
                    kill(&mut child);
                    panic!(
                        "docker-registry ({mode:?}) on 127.0.0.1:{port} did not come up: {why}\n\
                         --- config ---\n{}\n--- registry log ---\n{}",
                        fs::read_to_string(&config).unwrap_or_default(),
                        read_log(&log_path)
                    );
                }
            }
        }
        panic!(
            "docker-registry: every one of {PORT_ATTEMPTS} free ports was taken by the time \
             it bound; last log:\n{last_log}"
        );
    }

    /// "127.0.0.1:PORT", as it appears in references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1:PORT as a socket address (e.g. a fault proxy's upstream).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
    pub fn base_url(&self) -> String {
        let scheme = if self.mode.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// "127.0.0.1:PORT/REPO_AND_TAG", e.g. `reference("imgbuild/hello:1.0.0")`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host())
    }

    /// The test CA's certificate (PEM), for TLS set-ups.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.cert_dir.as_ref().map(|d| d.join("ca.crt"))
    }

    /// A directory holding only `ca.crt`: what containers tools take as `--cert-dir`.
    pub fn cert_dir(&self) -> Option<&Path> {
        self.cert_dir.as_deref()
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.mode.credentials()
    }

    /// The registry's storage root (filesystem driver), to look at what was pushed.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Everything the registry wrote to stdout and stderr so far, over all its runs.
    pub fn log(&self) -> String {
        let runs: Vec<String> = self.logs.iter().map(|p| read_log(p)).collect();
        runs.join("\n--- registry restarted ---\n")
    }

    /// Every request the token issuer served so far (empty unless `Mode::Token`).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.issuer
            .as_ref()
            .map(TokenIssuer::requests)
            .unwrap_or_default()
    }

    /// Makes the issuer's later tokens expire after `secs` seconds (token modes).
    pub fn set_token_lifetime(&self, secs: u64) {
        if let Some(issuer) = &self.issuer {
            issuer.set_token_lifetime(secs);
        }
    }

    /// The refresh token (Docker "identity token") the issuer honours (`Mode::Token`).
    pub fn identity_token(&self) -> Option<String> {
        self.issuer.as_ref().map(TokenIssuer::identity_token)
    }

    /// The token issuer's realm URL (`Mode::Token` only).
    pub fn token_realm(&self) -> Option<String> {
        self.issuer.as_ref().map(TokenIssuer::realm)
    }

    /// skopeo flags that reach this registry as configured: `prefix` is `"dest-"` for
    /// the destination of `copy`, `"src-"` for its source, `""` for `inspect`.
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut f = Vec::new();
        match &self.cert_dir {
            Some(d) => {
                f.push(format!("--{prefix}cert-dir"));
                f.push(d.display().to_string());
            }
            None => f.push(format!("--{prefix}tls-verify=false")),
        }
        if let Some((u, p)) = self.credentials() {
            f.push(format!("--{prefix}creds"));
            f.push(format!("{u}:{p}"));
        }
        f
    }

    /// A `~/.docker/config.json` body with this registry's credentials (`auths`).
    pub fn docker_config_json(&self) -> serde_json::Value {
        let mut auths = serde_json::Map::new();
        if let Some((u, p)) = self.credentials() {
            auths.insert(
                self.host(),
                serde_json::json!({ "auth": base64(format!("{u}:{p}").as_bytes()) }),
            );
        }
        serde_json::json!({ "auths": auths })
    }

    /// Kills the registry now (for fault tests); idempotent. Drop does the same.
    /// The same as [`Registry::kill`].
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Kills the registry process (SIGKILL, reaped), keeping its storage, config and
    /// port for [`Registry::restart`]; idempotent. The token issuer keeps running.
    pub fn kill(&mut self) {
        kill_shared(&self.child);
    }

    /// A handle that kills this registry from anywhere (e.g. a fault proxy's
    /// `Action::Run`, on another thread); does nothing once it is dead.
    pub fn kill_switch(&self) -> impl Fn() + Send + Sync + 'static {
        let child = Arc::clone(&self.child);
        move || kill_shared(&child)
    }

    /// Starts the registry again with the same mode, port, config and storage (killing
    /// it first if it still runs), and waits until it answers as [`Registry::start`]
    /// does; panics with the log if it does not.
    pub fn restart(&mut self) {
        self.kill();
        let log_path = self
            .dir
            .path()
            .join(format!("registry-restart-{}.log", self.logs.len()));
        let mut child = spawn(&self.config, &log_path, self.dir.path());
        let ca = self.ca_cert_path();
        let ready = wait_ready(&mut child, self.port, &log_path, ca.as_deref());
        self.logs.push(log_path);
        match ready {
            Ok(()) => *lock_child(&self.child) = Some(child),
            Err(why) => {
                kill(&mut child);
                let why = match why {
                    Failure::PortTaken => format!(
                        "port {} was taken by another process while the registry was down",
                        self.port
                    ),
                    Failure::Fatal(why) => why,
                };
                panic!(
                    "docker-registry ({:?}) did not come back on {}: {why}\n\
                     --- registry log ---\n{}",
                    self.mode,
                    self.host(),
                    self.log()
                );
            }
        }
    }

    /// True while the registry process is alive.
    pub fn is_running(&mut self) -> bool {
        match lock_child(&self.child).as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Locks the shared child even when poisoned (a panic elsewhere while it was held):
/// that must not leave the process running.
fn lock_child(child: &Mutex<Option<Child>>) -> std::sync::MutexGuard<'_, Option<Child>> {
    child.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kills and reaps the shared child, if any.
fn kill_shared(child: &Mutex<Option<Child>>) {
    let taken = lock_child(child).take();
    if let Some(mut c) = taken {
        kill(&mut c);
    }
}

enum Failure {
    PortTaken,
    Fatal(String),
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"))
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `GET /v2/` until it answers 200 or 401, the process dies, or the timeout.
fn wait_ready(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    ca: Option<&Path>,
) -> Result<(), Failure> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            if read_log(log_path).contains("address already in use") {
                return Err(Failure::PortTaken);
            }
            return Err(Failure::Fatal(format!("the process exited ({status})")));
        }
        // Our own process must have bound the port (it logs this right after listen):
        // an answer alone could come from another test's registry that took the port.
        let listening = read_log(log_path).contains(&format!("listening on 127.0.0.1:{port}"));
        let probe = match ca {
            _ if !listening => Err("the log does not say \"listening on\" yet".to_string()),
            Some(ca) => probe_tls(port, ca),
            None => probe_plain(port),
        };
        let last = match probe {
            Ok(200 | 401) => return Ok(()),
            Ok(status) => format!("GET /v2/ answered HTTP {status}"),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Failure::Fatal(format!(
                "no 200/401 from GET /v2/ within {READY_TIMEOUT:?}; last probe: {last}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /v2/` over TLS with `openssl s_client`, verifying the chain against the test
/// CA and the IP SAN: proves the certificates work, not only the port.
fn probe_tls(port: u16, ca: &Path) -> Result<u16, String> {
    let host = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-connect", &host])
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1", "-CAfile"])
        .arg(ca);
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let out = run_with_timeout(cmd, request.as_bytes(), Duration::from_secs(5))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_status(&text).ok_or_else(|| {
        format!(
            "openssl s_client: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// A port that was free a moment ago (bound to port 0 and released).
fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn spawn(config: &Path, log_path: &Path, home: &Path) -> Child {
    let log = fs::File::create(log_path).expect("create registry log");
    let log2 = log.try_clone().expect("clone log handle");
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve")
        .arg(config)
        // Nothing from the environment (REGISTRY_* overrides, proxies) leaks in.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"))
}

pub struct Tls {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// Holds only ca.crt.
    pub cert_dir: PathBuf,
}

/// The registry's `auth` section.
enum Auth {
    None,
    Htpasswd(PathBuf),
    Token {
        realm: String,
        rootcertbundle: PathBuf,
    },
}

fn config_yaml(port: u16, storage: &Path, auth: &Auth, tls: Option<&Tls>) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage:?}\n  delete:\n    enabled: true\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
         health:\n  storagedriver:\n    enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: imgbuild-test-secret\n",
        storage = storage.display().to_string(),
    );
    if let Some(t) = tls {
        y += &format!(
            "  tls:\n    certificate: {:?}\n    key: {:?}\n",
            t.cert.display().to_string(),
            t.key.display().to_string()
        );
    }
    match auth {
        Auth::None => {}
        Auth::Htpasswd(h) => {
            y += &format!(
                "auth:\n  htpasswd:\n    realm: imgbuild-test\n    path: {:?}\n",
                h.display().to_string()
            )
        }
        Auth::Token {
            realm,
            rootcertbundle,
        } => {
            y += &format!(
                "auth:\n  token:\n    realm: {realm:?}\n    service: {SERVICE:?}\n\
                 \x20   issuer: {ISSUER:?}\n    rootcertbundle: {:?}\n",
                rootcertbundle.display().to_string()
            )
        }
    }
    y
}

fn make_htpasswd(root: &Path, user: &str, password: &str) -> PathBuf {
    require_tool("htpasswd");
    let out = run(Command::new("htpasswd").args(["-Bbn", user, password]));
    let path = root.join("htpasswd");
    fs::write(&path, &out.stdout).expect("write htpasswd");
    path
}

/// A CA and a server certificate for IP:127.0.0.1 and DNS:localhost signed by it
/// (P-256 keys: fast to make).
pub fn make_certs(root: &Path) -> Tls {
    require_tool("openssl");
    let tls = root.join("tls");
    let cert_dir = root.join("certs");
    fs::create_dir_all(&tls).expect("mkdir tls");
    fs::create_dir_all(&cert_dir).expect("mkdir certs");
    let ca_key = tls.join("ca.key");
    let ca_crt = cert_dir.join("ca.crt");
    let key = tls.join("server.key");
    let csr = tls.join("server.csr");
    let cert = tls.join("server.crt");
    let ext = tls.join("server.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca_crt)
        .args(["-days", "3650", "-subj", "/CN=imgbuild test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .args(["req", "-new"])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=localhost"]));
    fs::write(
        &ext,
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write ext file");
    run(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca_crt)
        .arg("-CAkey")
        .arg(&ca_key)
        .args(["-set_serial", "2", "-days", "3650", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    Tls {
        key,
        cert,
        cert_dir,
    }
}

pub(super) fn run(cmd: &mut Command) -> Output {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs `cmd` with `input` on stdin, killing it after `timeout`.
pub(super) fn run_with_timeout(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{:?} timed out after {timeout:?}",
                    cmd.get_program()
                ));
            }
        }
    }
}

/// `GET /v2/` over plain HTTP/1.1 on loopback; the status code.
fn probe_plain(port: u16) -> Result<u16, String> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.set_write_timeout(Some(Duration::from_secs(2))).ok();
    write!(
        s,
        "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    parse_status(&text).ok_or_else(|| format!("not an HTTP response: {text:?}"))
}

fn parse_status(response: &str) -> Option<u16> {
    let line = response.lines().find(|l| l.starts_with("HTTP/"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
