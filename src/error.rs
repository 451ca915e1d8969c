//! The one error type every stage returns, and the exit codes of docs/cli.md
//! ("Output streams and exit codes").
//!
//! An error has a class (which decides the exit code), a one-line message (what is
//! wrong), an optional detail block (where: a recipe snippet, a path, a registry and
//! status) and an optional hint (how to fix it). The binary renders it once, on stderr.
//!
//! For library callers it is also structured: [`Error::class`], the location fields
//! [`Error::path`], [`Error::registry`] and [`Error::status`] where the stage that made
//! the error knew them, and the underlying error (`io::Error`, serde's, the HTTP
//! client's) through `std::error::Error::source`. None of these change the rendered
//! text, which is the message, detail and hint only.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Process exit codes, as documented in docs/cli.md.
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

/// What kind of failure an error is; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Bad usage, recipe or input, content not matching its pin (exit 2).
    BadInput,
    /// I/O, network or registry failure (exit 3).
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
    /// Boxed, so that `Result<T, Error>` stays small where nothing is known.
    context: Option<Box<Context>>,
}

/// Where an error happened, as far as the stage that made it knew, and its cause.
#[derive(Debug, Default)]
struct Context {
    path: Option<PathBuf>,
    registry: Option<String>,
    status: Option<u16>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
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
            context: None,
        }
    }

    /// An I/O failure while doing `what` (exit 3).
    pub fn io(what: impl fmt::Display, err: io::Error) -> Self {
        Error {
            class: Class::Io,
            message: format!("{what}: {}", describe_io(&err)),
            detail: None,
            hint: None,
            context: None,
        }
        .with_source(err)
    }

    /// A network or registry failure (exit 3). The message names the registry, the
    /// repository and the HTTP status where there is one; never a secret.
    pub fn network(message: impl Into<String>) -> Self {
        Error {
            class: Class::Io,
            message: message.into(),
            detail: None,
            hint: None,
            context: None,
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
            context: None,
        }
    }

    /// An I/O failure on `path` while doing `what` (exit 3).
    pub fn io_path(what: &str, path: &Path, err: io::Error) -> Self {
        Error::io(format!("{what} {}", path.display()), err).with_path(path)
    }

    /// The same error, keeping `source` as the underlying cause (shown by nothing;
    /// for callers, through `std::error::Error::source`).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.context_mut().source = Some(source.into());
        self
    }

    /// The same error, recording the file or directory it is about.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.context_mut().path = Some(path.into());
        self
    }

    /// The same error, recording the registry (`host[:port]`) it is about.
    pub fn with_registry(mut self, registry: impl Into<String>) -> Self {
        self.context_mut().registry = Some(registry.into());
        self
    }

    /// The same error, recording the HTTP status the registry answered.
    pub fn with_status(mut self, status: u16) -> Self {
        self.context_mut().status = Some(status);
        self
    }

    /// The same error, as bad input (exit 2): for a registry's definite answer that the
    /// image or blob asked for does not exist, which is the caller's reference, not a
    /// failure to reach it.
    pub fn into_input(mut self) -> Self {
        self.class = Class::BadInput;
        self
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

    fn context_mut(&mut self) -> &mut Context {
        self.context.get_or_insert_with(Box::default)
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// The file or directory the error is about, when known.
    pub fn path(&self) -> Option<&Path> {
        self.context.as_ref()?.path.as_deref()
    }

    /// The registry (`host[:port]`) the error is about, when known.
    pub fn registry(&self) -> Option<&str> {
        self.context.as_ref()?.registry.as_deref()
    }

    /// The HTTP status a registry answered, when the error is about one.
    pub fn status(&self) -> Option<u16> {
        self.context.as_ref()?.status
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.context
            .as_ref()?
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_io_error_keeps_its_cause_and_path_without_changing_the_text() {
        let path = Path::new("/nowhere/recipe.toml");
        let e = Error::io_path("cannot read", path, io::Error::from_raw_os_error(2));
        assert_eq!(
            e.to_string(),
            "error: cannot read /nowhere/recipe.toml: No such file or directory"
        );
        assert_eq!(e.path(), Some(path));
        assert_eq!(e.class(), Class::Io);
        let cause = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(cause.map(io::Error::kind), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn location_fields_are_not_rendered() {
        let plain = Error::network("registry r.example answered 500").with_hint("retry");
        let located = Error::network("registry r.example answered 500")
            .with_hint("retry")
            .with_registry("r.example")
            .with_status(500)
            .with_source(io::Error::other("x"));
        assert_eq!(plain.to_string(), located.to_string());
        assert_eq!(
            (located.registry(), located.status()),
            (Some("r.example"), Some(500))
        );
        assert!(plain.source().is_none() && located.source().is_some());
    }
}
