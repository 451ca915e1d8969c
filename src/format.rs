//! imgbuild's format versions.
//!
//! The bytes of an image depend on the recipe, its inputs and the *format version*:
//! the exact compressor, its settings and every rule of the layer normal form. A
//! released format version never changes its bytes, so that an image built with it
//! can be rebuilt and verified by every later imgbuild. A change to any digested byte
//! is a new format version. docs/determinism.md documents each version's bytes.

use std::fmt;

/// A format version imgbuild can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FormatVersion {
    /// The first released format: gzip as one pigz-style deflate stream on zlib-rs.
    V1,
    /// The second format: gzip as libdeflate members of 1 MiB blocks, zstd at level
    /// 1, and a format annotation on each manifest.
    V2,
}

impl FormatVersion {
    /// Every version this imgbuild builds, oldest first.
    pub const ALL: [FormatVersion; 2] = [FormatVersion::V1, FormatVersion::V2];

    /// The newest version: what a recipe that names none gets.
    pub const NEWEST: FormatVersion = FormatVersion::V2;

    /// The version's number, as written in recipes, locks and provenance.
    pub fn number(self) -> u32 {
        match self {
            FormatVersion::V1 => 1,
            FormatVersion::V2 => 2,
        }
    }

    /// The version with that number, if this imgbuild knows it.
    pub fn from_number(n: u64) -> Option<FormatVersion> {
        FormatVersion::ALL
            .into_iter()
            .find(|v| u64::from(v.number()) == n)
    }

    /// The known versions as a user reads them: `1, 2 (the newest)`.
    pub fn known() -> String {
        let list: Vec<String> = FormatVersion::ALL.iter().map(|v| v.to_string()).collect();
        format!("{} (the newest)", list.join(", "))
    }

    /// Whether images of this version carry [`ANNOTATION`] in each manifest. Format 1
    /// predates it, and its bytes never change.
    pub fn annotates(self) -> bool {
        self != FormatVersion::V1
    }
}

/// Where a build's format version came from, in precedence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatSource {
    /// `--format-version` (or `IMGBUILD_FORMAT_VERSION`).
    Flag,
    /// The recipe's `[image] format`.
    Recipe,
    /// `recipe.lock` (a lock without a `format` field means format 1).
    Lock,
    /// The caller's fallback: `verify` reads it from the image it verifies.
    Fallback,
    /// Nothing named one: the newest.
    Newest,
}

impl FormatSource {
    /// How a user reads it after "format N": `from recipe.lock`.
    pub fn describe(self) -> &'static str {
        match self {
            FormatSource::Flag => "from --format-version",
            FormatSource::Recipe => "from the recipe's [image] format",
            FormatSource::Lock => "from recipe.lock",
            FormatSource::Fallback => "from the image",
            FormatSource::Newest => "the newest; neither the recipe nor a lock names one",
        }
    }
}

/// The manifest annotation naming the format version an image was built with (format 2
/// and later; a format-1 image has none). `verify` and `diff` read it.
pub const ANNOTATION: &str = "org.imgbuild.format-version";

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_numbers_are_none() {
        for v in FormatVersion::ALL {
            assert_eq!(FormatVersion::from_number(u64::from(v.number())), Some(v));
        }
        assert_eq!(FormatVersion::from_number(0), None);
        assert_eq!(FormatVersion::from_number(3), None);
    }

    #[test]
    fn newest_is_the_last_of_all() {
        assert_eq!(Some(&FormatVersion::NEWEST), FormatVersion::ALL.last());
    }
}
