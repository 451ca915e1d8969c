//! Image references (docs/cli.md): `oci:DIR`, `oci:DIR:TAG`, `oci:DIR@sha256:…`, and
//! registry references in Docker's grammar, `host[:port]/path[:tag][@sha256:…]`, with
//! Docker's defaults (`docker.io`, `library/`, tag `latest`), optionally after
//! skopeo's `docker://` transport prefix.

use crate::digest::Digest;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
/// The prefix skopeo writes before a registry reference (`docker://host/repo:tag`),
/// accepted wherever a registry reference is.
pub const DOCKER_TRANSPORT: &str = "docker://";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// An image in a local OCI image layout.
    Layout {
        dir: PathBuf,
        tag: Option<String>,
        digest: Option<Digest>,
    },
    Registry(RegistryRef),
    /// An image in an archive file: `oci-archive:FILE[:TAG]` or
    /// `docker-archive:FILE[:REF]` (a `.tar` FILE's tag or `repository:tag` follows it).
    Archive {
        kind: crate::archive::ArchiveKind,
        file: PathBuf,
        tag: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`, normalized (`index.docker.io` → `docker.io`).
    pub registry: String,
    /// The repository path, with `library/` added for single-name Docker Hub images.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; the error says what is wrong and gives the valid forms.
    /// A reference carrying credentials (`user:password@host/…`, `https://…@…`) is
    /// refused, and the error shows it with the credentials replaced by `<redacted>`.
    pub fn parse(s: &str) -> Result<Reference, String> {
        if let Some(why) = credentials_or_scheme(s) {
            return Err(why);
        }
        // skopeo's transport prefix, as its users type it: a registry reference follows.
        if let Some(rest) = s.strip_prefix(DOCKER_TRANSPORT) {
            return parse_registry(rest)
                .map(Reference::Registry)
                .map_err(|m| format!("{m} (in {s:?}; docker://REF names a registry image, host[:port]/path[:tag][@sha256:…])"));
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            return parse_layout(rest).map_err(|m| format!("{m} (in {s:?}; layout references are oci:DIR, oci:DIR:TAG or oci:DIR@sha256:…)"));
        }
        if let Some((kind, rest)) = crate::archive::parse_target(s) {
            return parse_archive(kind, &rest.to_string_lossy()).map_err(|m| {
                format!("{m} (in {s:?}; archive references are oci-archive:FILE[:TAG] or docker-archive:FILE[:REF])")
            });
        }
        parse_registry(s)
            .map(Reference::Registry)
            .map_err(|m| format!("{m} (in {s:?}; registry references look like host[:port]/path[:tag][@sha256:…], or use oci:DIR for a layout)"))
    }
}

/// Where to put registry credentials instead of a reference, for error hints.
pub const CREDENTIALS_HINT: &str = "credentials belong in the Docker config (docker login HOST), a containers auth.json (REGISTRY_AUTH_FILE) or IMGBUILD_REGISTRY_USER and IMGBUILD_REGISTRY_PASSWORD, never in a reference";

/// The byte range of the userinfo (`user[:password]`) in a reference as typed —
/// `bob:pw@host/repo`, `https://bob:pw@host/repo` — if it has one.
///
/// A reference has exactly one legitimate `@`: the digest separator, the last `@`,
/// followed by `sha256:` and no `/`. Every other `@` ends userinfo, and the userinfo
/// runs from the start (after a URL scheme) to the last such `@` — so a password may
/// hold `/`, `@`, `:` or anything else and is still all inside the range.
fn userinfo_range(s: &str) -> Option<Range<usize>> {
    let start = scheme_end(s).unwrap_or(0);
    let rest = &s[start..];
    let mut ats: Vec<usize> = rest.match_indices('@').map(|(i, _)| i).collect();
    if let Some(&last) = ats.last() {
        let after = &rest[last + 1..];
        if after.starts_with("sha256:") && !after.contains('/') {
            ats.pop();
        }
    }
    let at = *ats.last()?;
    Some(start..start + at)
}

/// The offset just past `scheme://` when `s` starts with a URL scheme (ASCII letters,
/// digits and `+`).
fn scheme_end(s: &str) -> Option<usize> {
    let (scheme, _) = s.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+');
    valid.then(|| scheme.len() + 3)
}

/// `s` with any userinfo replaced by `<redacted>`: safe to show in errors and logs.
pub fn redact_userinfo(s: &str) -> String {
    match userinfo_range(s) {
        Some(r) => format!("{}<redacted>{}", &s[..r.start], &s[r.end..]),
        None => s.to_string(),
    }
}

/// Whether `s` carries credentials.
pub fn has_userinfo(s: &str) -> bool {
    userinfo_range(s).is_some()
}

/// Why `s` is refused before parsing: credentials in it, or a URL scheme other than
/// [`DOCKER_TRANSPORT`].
fn credentials_or_scheme(s: &str) -> Option<String> {
    if has_userinfo(s) {
        return Some(format!(
            "{:?} carries credentials (user:password@); {CREDENTIALS_HINT}",
            redact_userinfo(s)
        ));
    }
    if let Some(end) = scheme_end(s).filter(|_| !s.starts_with(DOCKER_TRANSPORT)) {
        let scheme = &s[..end - 3];
        let rest = &s[end..];
        return Some(format!(
            "{s:?} has a URL scheme ({scheme}://); write the reference without it, e.g. {rest:?} (plain HTTP is chosen with --insecure-registry)"
        ));
    }
    None
}

/// Whether a registry reference as typed names a tag (`host/repo:tag`), rather than
/// getting Docker's default `latest` from [`Reference::parse`].
pub fn has_explicit_tag(s: &str) -> bool {
    let s = s.strip_prefix(DOCKER_TRANSPORT).unwrap_or(s);
    let name = s.split_once('@').map_or(s, |(n, _)| n);
    let last = name.rsplit_once('/').map_or(name, |(_, l)| l);
    last.contains(':')
}

/// `FILE[:TAG]` of an archive reference. The tag is what follows `.tar:` (FILE's own
/// name may hold `:`), or, for a FILE not ending in `.tar`, the part after the last
/// `:` when it has no `/`.
fn parse_archive(kind: crate::archive::ArchiveKind, rest: &str) -> Result<Reference, String> {
    let (file, tag) = match rest.find(".tar:") {
        Some(i) => (&rest[..i + 4], Some(&rest[i + 5..])),
        None => match rest.rsplit_once(':') {
            Some((f, t)) if !f.is_empty() && !t.contains('/') && !rest.ends_with(".tar") => {
                (f, Some(t))
            }
            _ => (rest, None),
        },
    };
    if file.is_empty() {
        return Err("no archive file is named".into());
    }
    Ok(Reference::Archive {
        kind,
        file: PathBuf::from(file),
        tag: tag.filter(|t| !t.is_empty()).map(str::to_string),
    })
}

fn parse_layout(rest: &str) -> Result<Reference, String> {
    let (path, digest) = match rest.rsplit_once('@') {
        Some((p, d)) => (
            p,
            Some(Digest::parse(d).ok_or_else(|| format!("{d:?} is not a sha256 digest"))?),
        ),
        None => (rest, None),
    };
    // A tag follows the last ':' when what follows has no '/': DIR may not end in a tag-like part.
    let (dir, tag) = match path.rsplit_once(':') {
        Some((d, t)) if !t.contains('/') && !d.is_empty() => {
            if !valid_tag(t) {
                return Err(format!("{t:?} is not a valid tag"));
            }
            (d, Some(t.to_string()))
        }
        _ => (path, None),
    };
    if dir.is_empty() {
        return Err("the layout directory is missing".into());
    }
    Ok(Reference::Layout {
        dir: PathBuf::from(dir),
        tag,
        digest,
    })
}

fn parse_registry(s: &str) -> Result<RegistryRef, String> {
    if s.is_empty() {
        return Err("the reference is empty".into());
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (
            n,
            Some(Digest::parse(d).ok_or_else(|| format!("{d:?} is not a sha256 digest"))?),
        ),
        None => (s, None),
    };
    // The tag is after the last ':' that comes after the last '/' (a port's ':' is before it).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => {
            let t = &name_tag[last_slash + i + 1..];
            if !valid_tag(t) {
                return Err(format!("{t:?} is not a valid tag"));
            }
            (&name_tag[..last_slash + i], Some(t.to_string()))
        }
        None => (name_tag, None),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    if !valid_host(&registry) {
        return Err(format!("{registry:?} is not a valid registry host"));
    }
    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if repository.len() > 255 || !repository.split('/').all(valid_component) {
        return Err(format!(
            "{repository:?} is not a valid repository: components are lowercase letters and digits, separated by '.', '_', '__' or '-'"
        ));
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some(DEFAULT_TAG.to_string())
    } else {
        tag
    };
    Ok(RegistryRef {
        registry,
        repository,
        tag,
        digest,
    })
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.as_bytes()[0] != b'.'
        && t.as_bytes()[0] != b'-'
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (h, None),
    };
    let host_ok = if host.starts_with('[') {
        host.ends_with(']')
            && host[1..host.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Layout { dir, tag, digest } => {
                write!(f, "oci:{}", dir.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            Reference::Registry(r) => write!(f, "{r}"),
            Reference::Archive { kind, file, tag } => {
                write!(f, "{}{}", kind.prefix(), file.display())?;
                match tag {
                    Some(t) => write!(f, ":{t}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_a_reference_are_refused_and_never_shown() {
        for (typed, shown) in [
            (
                "bob:s3cr3t@host.example/repo",
                "<redacted>@host.example/repo",
            ),
            (
                "bob:s3cr3t@127.0.0.1:5000/repo:1.0",
                "<redacted>@127.0.0.1:5000/repo:1.0",
            ),
            (
                "https://bob:s3cr3t@host.example/repo",
                "https://<redacted>@host.example/repo",
            ),
            ("bob:s3cr3t@host.example", "<redacted>@host.example"),
            ("bob:p@ss@host.example/repo", "<redacted>@host.example/repo"),
        ] {
            assert_eq!(super::redact_userinfo(typed), shown);
            let e = super::Reference::parse(typed).unwrap_err();
            assert!(!e.contains("s3cr3t") && !e.contains("p@ss"), "{e}");
            assert!(e.contains(shown), "{e}");
            assert!(e.contains("docker login"), "{e}");
        }
    }

    #[test]
    fn a_password_holding_any_character_is_all_redacted() {
        const DIGEST: &str =
            "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        for password in [
            "S3CR/ET+x",
            "pa/ss",
            "p@ss/w@rd",
            "pa:ss:wd",
            "pa\\ss",
            "pa%2Fss",
            "x@sha256:ab",
            "x@sha256:ab/cd",
            "sec://ret",
        ] {
            for prefix in ["", "https://"] {
                for rest in [
                    "127.0.0.1:5000/repo:1".to_string(),
                    "host.example/repo".to_string(),
                    format!("host.example/repo@{DIGEST}"),
                    "sha256:5000/repo".to_string(),
                ] {
                    let typed = format!("{prefix}bob:{password}@{rest}");
                    let shown = super::redact_userinfo(&typed);
                    assert_eq!(shown, format!("{prefix}<redacted>@{rest}"), "{typed}");
                    let e = super::Reference::parse(&typed).unwrap_err();
                    assert!(!e.contains(password) && !e.contains("bob"), "{e}");
                    assert!(e.contains(&shown), "{e}");
                    assert!(e.contains("docker login"), "{e}");
                }
            }
        }
    }

    #[test]
    fn a_digest_is_not_userinfo() {
        for typed in [
            "alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "host.example/repo@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(!super::has_userinfo(typed), "{typed}");
            assert!(super::Reference::parse(typed).is_ok(), "{typed}");
        }
    }

    #[test]
    fn docker_transport_prefix_names_a_registry_image() {
        for (typed, plain) in [
            ("docker://127.0.0.1:5000/acme/app:1", "127.0.0.1:5000/acme/app:1"),
            ("docker://busybox", "busybox"),
            ("docker://ghcr.io/o/r@sha256:0000000000000000000000000000000000000000000000000000000000000000", "ghcr.io/o/r@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        ] {
            assert_eq!(
                super::Reference::parse(typed),
                super::Reference::parse(plain),
                "{typed}"
            );
        }
        assert!(super::has_explicit_tag("docker://host.example/repo:1"));
        assert!(!super::has_explicit_tag("docker://host.example/repo"));
        // Credentials are still refused, and redacted.
        let e = super::Reference::parse("docker://bob:s3cr3t@host.example/repo").unwrap_err();
        assert!(
            e.contains("docker://<redacted>@host.example/repo") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn a_url_scheme_is_refused_with_the_reference_to_write() {
        let e = super::Reference::parse("https://host.example/repo:1").unwrap_err();
        assert!(e.contains("\"host.example/repo:1\""), "{e}");
    }

    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match Reference::parse(s).unwrap() {
            Reference::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_defaults_apply_to_short_names() {
        let r = reg("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(reg("acme/app:1.2").to_string(), "docker.io/acme/app:1.2");
        assert_eq!(
            reg("index.docker.io/library/alpine:3").to_string(),
            "docker.io/library/alpine:3"
        );
    }

    #[test]
    fn a_host_with_port_is_not_mistaken_for_a_tag() {
        let r = reg("127.0.0.1:5000/team/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("latest"))
        );
        let r = reg("localhost:5000/app:v2");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost:5000", Some("v2"))
        );
        assert_eq!(reg("localhost/app").registry, "localhost");
        assert_eq!(reg("[::1]:5000/app").registry, "[::1]:5000");
    }

    #[test]
    fn a_digest_alone_means_no_default_tag() {
        let d = Digest::of(b"x");
        let r = reg(&format!("ghcr.io/o/r@{d}"));
        assert_eq!((r.tag, r.digest), (None, Some(d.clone())));
        let r = reg(&format!("ghcr.io/o/r:t@{d}"));
        assert_eq!((r.tag.as_deref(), r.digest), (Some("t"), Some(d)));
    }

    #[test]
    fn invalid_registry_references_are_rejected_with_the_reason() {
        let bad_host = |r: &str| Reference::parse(r).unwrap_err().contains("registry host");
        assert!(bad_host("registry.local:99999/x"));
        assert!(bad_host("bad_host.io/x"));
        assert!(Reference::parse("docker.io/Acme/app")
            .unwrap_err()
            .contains("not a valid repository"));
        assert!(Reference::parse("app:bad tag")
            .unwrap_err()
            .contains("not a valid tag"));
        assert!(Reference::parse("app@sha256:123")
            .unwrap_err()
            .contains("not a sha256 digest"));
        assert!(Reference::parse("a//b").is_err());
        assert!(Reference::parse("").is_err());
    }

    #[test]
    fn layout_references_take_a_tag_or_a_digest() {
        assert_eq!(
            Reference::parse("oci:out").unwrap(),
            Reference::Layout {
                dir: "out".into(),
                tag: None,
                digest: None
            }
        );
        assert_eq!(
            Reference::parse("oci:../x/out:v1").unwrap(),
            Reference::Layout {
                dir: "../x/out".into(),
                tag: Some("v1".into()),
                digest: None
            }
        );
        let d = Digest::of(b"y");
        assert_eq!(
            Reference::parse(&format!("oci:/abs/out@{d}")).unwrap(),
            Reference::Layout {
                dir: "/abs/out".into(),
                tag: None,
                digest: Some(d)
            }
        );
        assert!(Reference::parse("oci:").is_err());
        assert!(Reference::parse("oci:out:bad!tag").is_err());
    }
}
