//! The one error type every stage returns, and the exit codes of SPEC §1.
//!
//! An error has a class (which decides the exit code), a one-line message (what is
//! wrong), an optional detail block (where: a recipe snippet, a path, a registry and
//! status) and an optional hint (how to fix it). The binary renders it once, on stderr.

use std::fmt;
use std::io;
use std::path::Path;

/// Process exit codes, as documented in SPEC §1 and docs/cli.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// `verify`/`diff` found a difference.
    Different = 1,
    /// Bad usage, bad recipe or bad input: nothing was written.
    BadInput = 2,
    /// I/O, network or registry failure.
    Failure = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    BadInput,
    Io,
    /// `verify`/`diff` found a difference (exit 1).
    Different,
}

#[derive(Debug)]
pub struct Error {
    class: Class,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Bad recipe or bad input (exit 2).
    pub fn input(message: impl Into<String>) -> Self {
        Error {
            class: Class::BadInput,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// An I/O failure while doing `what` (exit 3).
    pub fn io(what: impl fmt::Display, err: io::Error) -> Self {
        Error {
            class: Class::Io,
            message: format!("{what}: {}", describe_io(&err)),
            detail: None,
            hint: None,
        }
    }

    /// A network or registry failure (exit 3). The message names the registry, the
    /// repository and the HTTP status where there is one; never a secret.
    pub fn network(message: impl Into<String>) -> Self {
        Error {
            class: Class::Io,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// `verify`/`diff` found a difference (exit 1). The explanation is the command's
    /// result, on stdout; `message` (may be empty) is a line for stderr.
    pub fn differs(message: impl Into<String>) -> Self {
        Error {
            class: Class::Different,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// An I/O failure on `path` while doing `what` (exit 3).
    pub fn io_path(what: &str, path: &Path, err: io::Error) -> Self {
        Error::io(format!("{what} {}", path.display()), err)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error, its message followed by `(context)`: what was being done.
    pub fn in_context(mut self, context: &str) -> Self {
        self.message = format!("{} ({context})", self.message);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub fn exit_code(&self) -> ExitCode {
        match self.class {
            Class::BadInput => ExitCode::BadInput,
            Class::Io => ExitCode::Failure,
            Class::Different => ExitCode::Different,
        }
    }
}

/// `io::Error`'s Display carries "(os error N)"; keep the words users need.
fn describe_io(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, "\n{}", detail.trim_end())?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = help: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
