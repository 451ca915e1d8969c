//! "Did you mean …?" for keys and names a user mistyped.

/// The candidate nearest to `got`, if it is near enough to be a plausible typo.
pub fn nearest<'a>(got: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(got, c), c))
        .filter(|(d, c)| {
            *d <= (c.len().max(got.len()) / 3).max(1) + 1 && *d < c.len().max(got.len())
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(super::nearest("dts", ["dst", "src", "mode"]), Some("dst"));
        assert_eq!(
            super::nearest("entrypiont", ["entrypoint", "cmd"]),
            Some("entrypoint")
        );
        assert_eq!(super::nearest("zzzzzz", ["dst", "src"]), None);
    }
}
