//! Target platforms (`os/arch[/variant]`), as in the OCI image index.

use std::fmt;

/// Operating systems and architectures that OCI registries and runtimes know (Go's
/// GOOS/GOARCH names, as used by the OCI image spec).
pub const KNOWN_OS: &[&str] = &["linux", "windows", "freebsd", "darwin"];
pub const KNOWN_ARCH: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64",
];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses `os/arch` or `os/arch/variant`; the error says what is wrong and what
    /// would be valid.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "platform {s:?} is not of the form os/arch or os/arch/variant (e.g. \"linux/amd64\", \"linux/arm/v7\")"
            ));
        }
        if !KNOWN_OS.contains(&parts[0]) {
            return Err(unknown("operating system", parts[0], KNOWN_OS));
        }
        if !KNOWN_ARCH.contains(&parts[1]) {
            return Err(unknown("architecture", parts[1], KNOWN_ARCH));
        }
        let variant = parts.get(2).map(|v| v.to_string());
        if let Some(v) = &variant {
            let ok =
                v.len() >= 2 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit());
            if !ok {
                return Err(format!(
                    "platform variant {v:?} in {s:?} is not valid: variants look like \"v7\" or \"v8\""
                ));
            }
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant,
        })
    }

    /// Expands `{os}`, `{arch}` and `{variant}` in a recipe `src`.
    pub fn expand(&self, template: &str) -> String {
        template
            .replace("{os}", &self.os)
            .replace("{arch}", &self.architecture)
            .replace("{variant}", self.variant.as_deref().unwrap_or(""))
    }
}

fn unknown(what: &str, got: &str, known: &[&str]) -> String {
    let mut msg = format!("unknown {what} {got:?}; known: {}", known.join(", "));
    if let Some(near) = crate::suggest::nearest(got, known.iter().copied()) {
        msg.push_str(&format!(" (did you mean {near:?}?)"));
    }
    msg
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_arch_and_variant() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm"));
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(p.to_string(), "linux/arm/v7");
    }

    #[test]
    fn rejects_unknown_architecture_with_suggestion() {
        let err = Platform::parse("linux/amd46").unwrap_err();
        assert!(err.contains("\"amd64\""), "{err}");
    }

    #[test]
    fn rejects_malformed_platform() {
        assert!(Platform::parse("amd64").is_err());
        assert!(Platform::parse("linux//").is_err());
        assert!(Platform::parse("linux/arm/7").is_err());
    }

    #[test]
    fn expands_placeholders() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.expand("t/{os}-{arch}{variant}/x"), "t/linux-arm64v8/x");
    }
}
