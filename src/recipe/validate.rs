//! Per-key validation of a parsed recipe, table by table: types, ranges, absolute
//! paths, names. Every error points at the value in the recipe.

use super::{ArchiveItem, EpochSetting, Recipe, Sha256Pin, MAX_MODE, WHITEOUT_PREFIX};
use crate::error::{Error, Result};
use crate::platform::Platform;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

impl Recipe {
    pub(super) fn validate(&self) -> Result<()> {
        self.validate_image()?;
        self.validate_config()?;
        self.validate_accounts()?;
        self.validate_layers()?;
        self.validate_apt()
    }

    /// `[image]` and `[annotations]`.
    fn validate_image(&self) -> Result<()> {
        self.platforms()?;
        self.compression()?;
        self.format()?;
        if self.annotations.contains_key(crate::format::ANNOTATION) {
            let key = crate::format::ANNOTATION;
            let at = self.source.text.find(key).unwrap_or(0);
            return Err(self
                .error_at(
                    at..at + key.len(),
                    format!("annotation {key:?} is imgbuild's own"),
                )
                .with_hint(
                    "imgbuild records the format version there (format 2 and later); remove the key",
                ));
        }
        self.repository()?;
        if let Some(e) = &self.image.source_date_epoch {
            match e.get_ref() {
                EpochSetting::Seconds(s) if *s < 0 || *s as u64 > crate::epoch::MAX_EPOCH => {
                    return Err(self.error_at(
                        e.span(),
                        format!(
                            "source-date-epoch {s} is out of range (0 to {})",
                            crate::epoch::MAX_EPOCH
                        ),
                    ));
                }
                EpochSetting::Named(n) if n != "git" => {
                    return Err(self
                        .error_at(
                            e.span(),
                            format!("source-date-epoch {n:?} is not understood"),
                        )
                        .with_hint("use an integer (seconds since 1970) or \"git\""));
                }
                _ => {}
            }
        }
        for t in &self.image.tags {
            if !valid_tag(t.get_ref()) {
                return Err(self
                    .error_at(t.span(), format!("{:?} is not a valid tag", t.get_ref()))
                    .with_hint(
                        "tags are 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'",
                    ));
            }
        }
        Ok(())
    }

    /// `[config]`.
    fn validate_config(&self) -> Result<()> {
        for key in self.config.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(Error::input(format!(
                    "[config] env has the key {key:?}; keys must be non-empty and contain no '='"
                ))
                .with_detail(format!("  --> {}", self.source.path.display()))
                .with_hint("write env = { NAME = \"value\" }"));
            }
        }
        if let Some(s) = &self.config.stop_signal {
            if s.get_ref().trim().is_empty() {
                return Err(self
                    .error_at(s.span(), "stop-signal is empty")
                    .with_hint("name a signal, e.g. \"SIGTERM\", or remove the key"));
            }
        }
        if let Some(w) = &self.config.workdir {
            self.absolute(w, "workdir")?;
        }
        for v in &self.config.volumes {
            self.absolute(v, "a volume")?;
        }
        for p in &self.config.exposed_ports {
            if !valid_port(p.get_ref()) {
                return Err(self
                    .error_at(p.span(), format!("{:?} is not a port", p.get_ref()))
                    .with_hint("write ports as \"8080\", \"8080/tcp\", \"53/udp\" or \"9/sctp\""));
            }
        }
        Ok(())
    }

    /// `[[user]]` and `[[group]]`.
    fn validate_accounts(&self) -> Result<()> {
        for u in &self.users {
            let u = u.get_ref();
            if !valid_account_name(u.name.get_ref()) {
                return Err(self
                    .error_at(
                        u.name.span(),
                        format!("{:?} is not a valid user name", u.name.get_ref()),
                    )
                    .with_hint(
                        "use letters, digits, '_', '-' and '.', not starting with '-' (at most 32)",
                    ));
            }
        }
        for g in &self.groups {
            let g = g.get_ref();
            if !valid_account_name(g.name.get_ref()) {
                return Err(self
                    .error_at(
                        g.name.span(),
                        format!("{:?} is not a valid group name", g.name.get_ref()),
                    )
                    .with_hint(
                        "use letters, digits, '_', '-' and '.', not starting with '-' (at most 32)",
                    ));
            }
        }
        Ok(())
    }

    /// Every `[[layer]]` and its items.
    fn validate_layers(&self) -> Result<()> {
        let mut names: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for layer in &self.layers {
            let l = layer.get_ref();
            let name = l.name.get_ref();
            if name.is_empty() || name.chars().any(|c| c.is_control()) {
                return Err(self.error_at(
                    l.name.span(),
                    "a layer name must be non-empty text without control characters",
                ));
            }
            if names.insert(name, l.name.span()).is_some() {
                return Err(self
                    .error_at(l.name.span(), format!("two layers are named {name:?}"))
                    .with_hint("give every [[layer]] a distinct name"));
            }
            for c in &l.copy {
                let c = c.get_ref();
                self.absolute(&c.dst, "dst")?;
                self.mode(c.mode.as_ref())?;
                self.mode(c.dir_mode.as_ref())?;
                if c.src.get_ref().is_empty() {
                    return Err(self.error_at(c.src.span(), "src is empty").with_hint(
                        "name a file or directory inside the context, e.g. src = \"target/app\"",
                    ));
                }
            }
            for d in &l.dir {
                let d = d.get_ref();
                self.absolute(&d.path, "path")?;
                self.mode(d.mode.as_ref())?;
                if d.path.get_ref().trim_matches('/').is_empty() {
                    return Err(self
                        .error_at(
                            d.path.span(),
                            "path names the root directory, which no layer can hold",
                        )
                        .with_hint("name a directory below /"));
                }
            }
            for s in &l.symlink {
                let s = s.get_ref();
                self.entry_path(&s.path)?;
                if s.target.get_ref().is_empty() || s.target.get_ref().contains('\0') {
                    return Err(self.error_at(
                        s.target.span(),
                        "a symlink target must be non-empty and without NUL bytes",
                    ));
                }
            }
            for f in &l.file {
                let f = f.get_ref();
                self.entry_path(&f.path)?;
                self.mode(f.mode.as_ref())?;
            }
            for a in &l.archive {
                self.validate_archive(a)?;
            }
            for r in &l.remove {
                self.absolute(r, "a removed path")?;
                if r.get_ref().trim_matches('/').is_empty() {
                    return Err(self.error_at(r.span(), "the root directory cannot be removed"));
                }
            }
        }
        Ok(())
    }

    /// One `[[layer.archive]]`: src or url (with its sha256 pin), dst.
    fn validate_archive(&self, a: &Spanned<ArchiveItem>) -> Result<()> {
        let span = a.span();
        let a = a.get_ref();
        if a.dst.span() != (0..0) {
            self.absolute(&a.dst, "dst")?;
        }
        match (&a.src, &a.url) {
            (Some(_), Some(u)) => {
                return Err(self.error_at(u.span(), "an archive takes src or url, not both"));
            }
            (None, None) => {
                return Err(self
                    .error_at(
                        span,
                        "an archive needs src (a tar in the context) or url with sha256",
                    )
                    .with_hint("add src = \"vendor/thing.tar.gz\""));
            }
            (None, Some(u)) => {
                if a.sha256.is_none() {
                    return Err(self
                        .error_at(
                            u.span(),
                            "an archive with url needs sha256 = \"<64 hex digits>\"",
                        )
                        .with_hint("pin the download: sha256sum the file and add its hash"));
                }
            }
            (Some(_), None) => {}
        }
        if let Some(h) = &a.sha256 {
            self.sha256_pin(h)?;
        }
        Ok(())
    }

    /// `sha256 = "…"` or `sha256 = { "linux/amd64" = "…", … }`: every hash is 64
    /// lowercase hex digits, every key a platform.
    fn sha256_pin(&self, pin: &Spanned<Sha256Pin>) -> Result<()> {
        let valid = crate::digest::is_sha256_hex;
        let bad_hash = || {
            self.error_at(pin.span(), "sha256 must be 64 lowercase hex digits")
                .with_hint(
                    "write the hash sha256sum prints for the file, without a \"sha256:\" prefix",
                )
        };
        match pin.get_ref() {
            Sha256Pin::One(hex) if !valid(hex) => return Err(bad_hash()),
            Sha256Pin::One(_) => {}
            Sha256Pin::PerPlatform(table) => {
                if table.is_empty() {
                    return Err(self
                        .error_at(pin.span(), "the sha256 table is empty")
                        .with_hint("pin every platform built: sha256 = { \"linux/amd64\" = \"…\", \"linux/arm64\" = \"…\" }"));
                }
                for (key, hex) in table {
                    Platform::parse(key).map_err(|m| {
                        self.error_at(pin.span(), format!("sha256 table key {key:?}: {m}"))
                            .with_hint("key the table by platform: { \"linux/amd64\" = \"…\" }")
                    })?;
                    if !valid(hex) {
                        return Err(self
                            .error_at(
                                pin.span(),
                                format!("sha256 for {key} must be 64 lowercase hex digits"),
                            )
                            .with_hint("write the hash sha256sum prints for the file, without a \"sha256:\" prefix"));
                    }
                }
            }
        }
        Ok(())
    }

    fn absolute(&self, value: &Spanned<String>, what: &str) -> Result<()> {
        let v = value.get_ref();
        if !v.starts_with('/') {
            return Err(self
                .error_at(
                    value.span(),
                    format!("{what} {v:?} is not an absolute path"),
                )
                .with_hint(format!(
                    "write it from the image root: \"/{}\"",
                    v.trim_start_matches("./")
                )));
        }
        if v.split('/').any(|c| c == "..") {
            return Err(self
                .error_at(
                    value.span(),
                    format!("{what} {v:?} contains a '..' component"),
                )
                .with_hint("write the path without '..'"));
        }
        if v.split('/').any(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return Err(self
                .error_at(value.span(), format!("{what} {v:?} has a name starting with \".wh.\", which every image tool reads as a whiteout"))
                .with_hint("to hide a path of a lower layer use remove = [\"/path\"]; otherwise rename it"));
        }
        if v.contains('\0') {
            return Err(self.error_at(value.span(), format!("{what} contains a NUL byte")));
        }
        Ok(())
    }

    /// The path of a file or symlink item: absolute, not the root, no trailing '/'.
    fn entry_path(&self, value: &Spanned<String>) -> Result<()> {
        self.absolute(value, "path")?;
        let v = value.get_ref();
        if v.trim_matches('/').is_empty() {
            return Err(self
                .error_at(
                    value.span(),
                    "path names the root directory, which can only be a directory",
                )
                .with_hint("name a path below /"));
        }
        if v.ends_with('/') {
            return Err(self
                .error_at(
                    value.span(),
                    format!("path {v:?} ends in '/', which means a directory"),
                )
                .with_hint(format!(
                    "drop the trailing '/': \"{}\"",
                    v.trim_end_matches('/')
                )));
        }
        Ok(())
    }

    fn mode(&self, mode: Option<&Spanned<u32>>) -> Result<()> {
        if let Some(m) = mode {
            // Modes are octal: `mode = 755` (decimal, 0o1363) is a typo far more often
            // than a meant value, so every non-zero mode must be written with 0o.
            let text = self.source.text.get(m.span()).unwrap_or("").trim();
            if *m.get_ref() != 0 && !text.starts_with("0o") {
                let digits = text.replace('_', "");
                let octal = if digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    digits
                } else {
                    format!("{:o}", m.get_ref())
                };
                return Err(self
                    .error_at(m.span(), format!("mode {text} is not written in octal"))
                    .with_hint(format!("write modes with the 0o prefix: 0o{octal}")));
            }
            if *m.get_ref() > MAX_MODE {
                return Err(self
                    .error_at(m.span(), format!("mode {:#o} is out of range", m.get_ref()))
                    .with_hint(
                        "modes are at most 0o7777: write them in octal, e.g. mode = 0o755",
                    ));
            }
        }
        Ok(())
    }
}

/// A tag of the OCI distribution grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_port(p: &str) -> bool {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    matches!(proto, "tcp" | "udp" | "sctp") && num.parse::<u16>().is_ok_and(|n| n > 0)
}

fn valid_account_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
