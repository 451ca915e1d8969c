//! The source date epoch: the one timestamp imgbuild writes (docs/determinism.md, "Time").

use crate::error::{Error, Result};
use std::path::Path;
use std::process::Command;

/// Largest epoch a ustar header's 11 octal digits can hold (year 2242).
pub const MAX_EPOCH: u64 = 0o77777777777;

/// Where the epoch came from, for logs and provenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochSource {
    Flag,
    Recipe,
    RecipeGit,
    Environment,
    Default,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceDateEpoch {
    pub seconds: u64,
    pub source: EpochSource,
}

impl SourceDateEpoch {
    /// RFC 3339 UTC, whole seconds: the form written in `created` fields.
    pub fn rfc3339(&self) -> String {
        rfc3339(self.seconds)
    }
}

/// Parses an epoch given as text (flag or environment), naming where it came from.
pub fn parse_epoch(text: &str, origin: &str) -> Result<u64> {
    let t = text.trim();
    let value: u64 = t.parse().map_err(|_| {
        Error::input(format!(
            "{origin} is {text:?}, which is not a whole number of seconds since 1970"
        ))
        .with_hint("use a non-negative integer such as 1700000000, e.g. $(git log -1 --format=%ct)")
    })?;
    check_range(value, origin)
}

pub fn check_range(value: u64, origin: &str) -> Result<u64> {
    if value > MAX_EPOCH {
        return Err(Error::input(format!(
            "{origin} is {value}, beyond the largest time a tar header can hold ({MAX_EPOCH})"
        )));
    }
    Ok(value)
}

/// The committer time of the last commit of the git repository holding `context`.
pub fn git_commit_time(context: &Path) -> Result<u64> {
    let out = Command::new("git")
        .arg("-C")
        .arg(context)
        .args(["log", "-1", "--format=%ct"])
        .env("TZ", "UTC")
        .output()
        .map_err(|e| {
            Error::io("running git to resolve source-date-epoch = \"git\"", e)
                .with_hint("install git, or set source-date-epoch to an integer")
        })?;
    if !out.status.success() {
        return Err(Error::input(format!(
            "source-date-epoch = \"git\", but {} is not inside a git repository with a commit",
            context.display()
        ))
        .with_detail(String::from_utf8_lossy(&out.stderr).trim().to_string())
        .with_hint("commit the context, or set source-date-epoch to an integer"));
    }
    parse_epoch(
        String::from_utf8_lossy(&out.stdout).trim(),
        "the last git commit time",
    )
}

/// Formats seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_zero_and_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(MAX_EPOCH), "2242-03-16T12:56:31Z");
    }

    #[test]
    fn rejects_non_numeric_and_too_large_epochs() {
        assert!(parse_epoch("yesterday", "SOURCE_DATE_EPOCH").is_err());
        assert!(parse_epoch("-1", "SOURCE_DATE_EPOCH").is_err());
        assert!(parse_epoch("99999999999", "SOURCE_DATE_EPOCH").is_err());
        assert_eq!(parse_epoch(" 42\n", "x").unwrap(), 42);
    }
}
