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
    /// The second format (in development until it is released).
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
}

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
