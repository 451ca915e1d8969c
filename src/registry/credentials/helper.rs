//! `docker-credential-*` helpers named by a credentials file: found on `PATH`, run
//! in their own process group, stopped after the environment's helper timeout.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};

use super::*;

/// The registry a helper is asked about: as the caller wrote it (for messages) and
/// the server URL the helper gets on stdin.
pub(super) struct Server<'a> {
    pub(super) written: &'a str,
    pub(super) url: &'a str,
}

/// A `docker-credential-*` program named by a credentials file.
pub(super) struct Helper<'a> {
    pub(super) program: String,
    /// "credHelpers" or "credsStore".
    pub(super) how: &'a str,
    pub(super) file: &'a Path,
}

impl Helper<'_> {
    pub(super) fn describe(&self) -> String {
        format!("{} ({} in {})", self.program, self.how, self.file.display())
    }

    /// Runs `<program> get` with the server URL on stdin. None when the helper has no
    /// credential for the registry.
    pub(super) fn get(&self, target: &Server<'_>, env: &Environment) -> Result<Option<Credential>> {
        let Some(executable) = find_on_path(&self.program, env.get("PATH")) else {
            return Err(Error::input(format!(
                "credential helper {} is not on PATH ({} in {} names it for {})",
                self.program,
                self.how,
                self.file.display(),
                target.written
            ))
            .with_hint(format!(
                "install {}, or remove the {} entry from {}",
                self.program,
                self.how,
                self.file.display()
            )));
        };
        let output = run_with_timeout(&executable, target.url, env).map_err(|e| {
            let message = format!(
                "credential helper {} failed for {}",
                self.describe(),
                target.written
            );
            match e {
                RunError::Io(e) => Error::io(message, e),
                RunError::TimedOut => Error::io(
                    message,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no answer within {} s; it was stopped",
                            env.helper_timeout.as_secs_f64()
                        ),
                    ),
                ),
            }
        })?;
        let says_not_found = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .to_ascii_lowercase()
                .contains("credentials not found")
        };
        if !output.status.success() {
            if says_not_found(&output.stdout) || says_not_found(&output.stderr) {
                return Ok(None);
            }
            let mut error = Error::io(
                format!(
                    "credential helper {} failed for {}",
                    self.describe(),
                    target.written
                ),
                io::Error::other(output.status.to_string()),
            )
            .with_hint(format!(
                "log in again (e.g. `docker login {}`), fix the helper, or set {USER_VAR} and {PASSWORD_VAR}",
                target.written
            ));
            if let Some(detail) = helper_diagnostics(&output) {
                error = error.with_detail(detail);
            }
            return Err(error);
        }
        self.parse_answer(&output.stdout, target)
    }

    /// The helper's JSON answer. Errors name the helper and what was wrong, never the
    /// answer's text (it holds the secret).
    pub(super) fn parse_answer(
        &self,
        stdout: &[u8],
        target: &Server<'_>,
    ) -> Result<Option<Credential>> {
        let bad = |what: String| {
            Error::io(
                format!(
                    "credential helper {} failed for {}",
                    self.describe(),
                    target.written
                ),
                io::Error::other(what),
            )
            .with_hint(format!(
                "check the helper by hand: `printf {} | {} get`",
                target.url, self.program
            ))
        };
        let value: Value = match serde_json::from_slice(stdout) {
            Ok(value) => value,
            Err(_)
                if String::from_utf8_lossy(stdout)
                    .to_ascii_lowercase()
                    .contains("credentials not found") =>
            {
                return Ok(None)
            }
            Err(e) => {
                return Err(bad(format!(
                    "its answer is not JSON (line {} column {})",
                    e.line(),
                    e.column()
                )))
            }
        };
        let field = |name: &str| -> Result<String> {
            match value.get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(bad(format!("its answer's {name:?} is not a string"))),
            }
        };
        if !value.is_object() {
            return Err(bad("its answer is not a JSON object".to_string()));
        }
        let username = field("Username")?;
        let secret = field("Secret")?;
        if secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if username == TOKEN_USERNAME {
            Credential::IdentityToken(Secret(secret))
        } else {
            Credential::Basic {
                username,
                password: Secret(secret),
            }
        }))
    }
}

/// A failing helper's stderr, and its stdout unless that looks like a JSON answer
/// (docker's helpers print their errors on stdout).
pub(super) fn helper_diagnostics(output: &Output) -> Option<String> {
    let clip = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        let mut clipped: String = text.chars().take(HELPER_DIAGNOSTIC_CHARS).collect();
        if clipped.len() < text.len() {
            clipped.push('…');
        }
        clipped
    };
    let mut lines = Vec::new();
    for (stream, bytes) in [("stderr", &output.stderr), ("stdout", &output.stdout)] {
        let text = clip(bytes);
        // A JSON object on stdout is a credential answer: never shown. ('\u{7b}' is
        // the opening brace, written so that brace-counting tools stay in step.)
        if text.is_empty() || (stream == "stdout" && text.starts_with('\u{7b}')) {
            continue;
        }
        for line in text.lines() {
            lines.push(format!("  {stream}: {line}"));
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The first executable file named `program` in the directories of `path`.
pub(super) fn find_on_path(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub(super) fn is_executable(path: &Path) -> bool {
    path.is_file()
}

pub(super) struct Output {
    pub(super) status: ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

pub(super) enum RunError {
    Io(io::Error),
    TimedOut,
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Io(e)
    }
}

/// Runs `executable get` with `input` on stdin; kills it after the environment's
/// helper timeout.
pub(super) fn run_with_timeout(
    executable: &Path,
    input: &str,
    env: &Environment,
) -> Result<Output, RunError> {
    let mut command = Command::new(executable);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !env.inherit {
        command.env_clear().envs(&env.vars);
    }
    // Its own process group, so that a hung helper is stopped with everything it
    // started (a shell script's `sleep`, a keyring daemon's client).
    command.process_group(0);
    let deadline = Instant::now() + env.helper_timeout;
    let mut child = spawn(&mut command)?;
    let result = drive(&mut child, input, deadline);
    if result.is_err() {
        // Best effort: the error being reported matters more than the cleanup's.
        kill_process_group(&child);
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// SIGKILL to the helper's process group: the helper and every process it started
/// that stayed in the group.
pub(super) fn kill_process_group(child: &Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes no pointers and touches no memory of this process. The
    // group id is the helper's pid (spawned with `process_group(0)`), and the helper
    // has not been waited for yet (the caller waits after this), so its pid — and
    // with it the group id — cannot have been reused by an unrelated process.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Spawns, retrying briefly while the executable is busy: a helper script written a
/// moment ago may still be open for writing in a child another thread just forked.
pub(super) fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

pub(super) fn drive(child: &mut Child, input: &str, deadline: Instant) -> Result<Output, RunError> {
    let stdout = collect(child.stdout.take())?;
    let stderr = collect(child.stderr.take())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading its input; that is its answer to judge.
        match stdin.write_all(input.as_bytes()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(RunError::TimedOut);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
    };
    // The helper is gone; its output follows at once unless a child of its own still
    // holds the pipes, which the deadline bounds.
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let stdout = stdout.recv_timeout(wait).unwrap_or_default();
    let stderr = stderr.recv_timeout(wait).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Reads a pipe to its end (at most [`HELPER_OUTPUT_LIMIT`]) on a thread.
pub(super) fn collect(
    stream: Option<impl Read + Send + 'static>,
) -> io::Result<mpsc::Receiver<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel();
    match stream {
        Some(stream) => {
            thread::Builder::new()
                .name("credential-helper-output".to_string())
                .spawn(move || {
                    let mut bytes = Vec::new();
                    // A read error leaves what was read: the answer is judged on that.
                    let _ = stream.take(HELPER_OUTPUT_LIMIT).read_to_end(&mut bytes);
                    let _ = sender.send(bytes);
                })?;
        }
        None => {
            let _ = sender.send(Vec::new());
        }
    }
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::registry::credentials::fixture::*;

    // ---- credential helpers ----

    #[test]
    fn cred_helpers_come_before_auths_and_get_the_registry_on_stdin() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        let config = fx.docker_config(&format!(
            r#"{{"credHelpers":{{"ghcr.io":"test"}},"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("file:f")
        ));
        let found = get("ghcr.io", "a/b", &fx.env(&[]));
        assert_eq!(basic(&found), ("helper-user", "helper:pass"));
        assert_eq!(
            found.source,
            format!(
                "docker-credential-test (credHelpers in {})",
                config.display()
            )
        );
        assert_eq!(fx.log(), "get ghcr.io\n");
    }

    #[test]
    fn helpers_get_docker_hubs_url_and_token_answers_are_identity_tokens() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        fx.docker_config(r#"{"credHelpers":{"index.docker.io":"test"}}"#);
        let found = get("docker.io", "library/busybox", &fx.env(&[]));
        assert_eq!(token(&found), "refresh-token");
        assert_eq!(fx.log(), "get https://index.docker.io/v1/\n");
    }

    #[test]
    fn helper_not_found_answers_try_the_next_source() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        let file = fx.write("auth.json", r#"{"credHelpers":{"quay.io":"test"}}"#);
        fx.docker_config(&auths("quay.io", "docker", "d"));
        let env = fx.env(&[("REGISTRY_AUTH_FILE", file.to_str().unwrap())]);
        assert_eq!(basic(&get("quay.io", "a/b", &env)), ("docker", "d"));
        assert_eq!(fx.log(), "get quay.io\n");
    }

    #[test]
    fn creds_store_is_asked_when_auths_has_no_usable_entry() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        let config = fx.docker_config(&format!(
            r#"{{"credsStore":"test","auths":{{"ghcr.io":{{}},"quay.io":{{"auth":"{}"}}}}}}"#,
            b64("file:f")
        ));
        let env = fx.env(&[]);
        // An auths entry comes before the store: the helper is not run.
        assert_eq!(basic(&get("quay.io", "a/b", &env)), ("file", "f"));
        assert_eq!(fx.log(), "");
        let found = get("ghcr.io", "a/b", &env);
        assert_eq!(basic(&found), ("helper-user", "helper:pass"));
        assert_eq!(
            found.source,
            format!(
                "docker-credential-test (credsStore in {})",
                config.display()
            )
        );
        // The store knows nothing of this one: anonymous.
        assert_eq!(find("127.0.0.1:5000", "a/b", &env).unwrap(), None);
        assert_eq!(fx.log(), "get ghcr.io\nget 127.0.0.1:5000\n");
    }

    #[test]
    fn variables_mean_no_helper_is_run() {
        let fx = Fixture::new();
        fx.helper("test", GOOD_HELPER);
        fx.docker_config(r#"{"credsStore":"test"}"#);
        let env = fx.env(&[(USER_VAR, "u"), (PASSWORD_VAR, "p")]);
        assert_eq!(basic(&get("ghcr.io", "a/b", &env)), ("u", "p"));
        assert_eq!(fx.log(), "");
    }

    #[test]
    fn a_failing_helper_is_an_io_error_with_its_stderr() {
        let fx = Fixture::new();
        fx.helper(
            "broken",
            "cat >/dev/null\necho 'gpg: decryption failed: No secret key' >&2\nexit 2",
        );
        let config = fx.docker_config(r#"{"credHelpers":{"ghcr.io":"broken"}}"#);
        let e = fails("ghcr.io", &fx.env(&[]));
        assert_eq!(e.exit_code(), ExitCode::Failure);
        let text = e.to_string();
        assert!(text.contains("docker-credential-broken"), "{text}");
        assert!(text.contains(config.to_str().unwrap()), "{text}");
        assert!(text.contains("exit status: 2"), "{text}");
        assert!(
            text.contains("stderr: gpg: decryption failed: No secret key"),
            "{text}"
        );
    }

    #[test]
    fn a_helper_answer_that_is_not_json_is_an_error_without_the_answer() {
        let fx = Fixture::new();
        let env = fx.env(&[]);
        fx.docker_config(r#"{"credsStore":"odd"}"#);
        for answer in [
            r#"Username=u Secret=hunter2"#,
            r#"{"Username":"u","Secret":["hunter2"]}"#,
            r#"["hunter2"]"#,
        ] {
            fx.helper("odd", &format!("cat >/dev/null\nprintf '%s' '{answer}'"));
            let e = fails("ghcr.io", &env);
            assert_eq!(e.exit_code(), ExitCode::Failure, "{answer}");
            let text = e.to_string();
            assert!(text.contains("docker-credential-odd"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn a_helper_not_on_path_is_named_with_a_hint() {
        let fx = Fixture::new();
        let config = fx.docker_config(r#"{"credHelpers":{"ghcr.io":"absent"}}"#);
        let e = fails("ghcr.io", &fx.env(&[]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert!(
            e.message()
                .contains("docker-credential-absent is not on PATH"),
            "{e}"
        );
        let hint = e.hint().unwrap();
        assert!(hint.contains("install docker-credential-absent"), "{hint}");
        assert!(
            hint.contains(&format!(
                "remove the credHelpers entry from {}",
                config.display()
            )),
            "{hint}"
        );
        // A file that is not executable does not count.
        fx.write("bin/docker-credential-absent", "#!/bin/sh\n");
        assert!(fails("ghcr.io", &fx.env(&[]))
            .message()
            .contains("not on PATH"));
    }

    #[test]
    fn a_slow_helper_is_stopped() {
        let fx = Fixture::new();
        fx.helper("slow", "exec sleep 20");
        fx.docker_config(r#"{"credsStore":"slow"}"#);
        let mut env = fx.env(&[]);
        env.helper_timeout = Duration::from_millis(300);
        let start = Instant::now();
        let e = fails("ghcr.io", &env);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(e.exit_code(), ExitCode::Failure);
        assert!(e.message().contains("docker-credential-slow"), "{e}");
        assert!(e.message().contains("no answer within 0.3 s"), "{e}");
    }

    #[test]
    fn a_hung_helper_is_stopped_with_the_processes_it_started() {
        let fx = Fixture::new();
        let pid_file = fx.s("child.pid");
        fx.helper(
            "hung",
            &format!("sleep 60 &\necho $! > '{pid_file}'\nwait\n"),
        );
        fx.docker_config(r#"{"credsStore":"hung"}"#);
        let mut env = fx.env(&[]);
        env.helper_timeout = Duration::from_millis(500);
        let e = fails("ghcr.io", &env);
        assert!(e.message().contains("no answer within 0.5 s"), "{e}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        // SIGKILL is delivered before kill(2) returns; give the reaper a bounded moment.
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']));
            if running {
                std::thread::sleep(Duration::from_millis(25));
            }
            !running
        });
        assert!(gone, "the helper's child {pid} still runs");
    }
}
