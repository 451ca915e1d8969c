//! Renders an error at a place in the recipe: `file:line:col`, the line, a caret.

use crate::error::Error;
use std::ops::Range;
use std::path::PathBuf;

/// The recipe's text and where it came from, so any later stage can point into it.
#[derive(Debug)]
pub struct RecipeSource {
    pub path: PathBuf,
    pub text: String,
}

impl RecipeSource {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// An input error (exit 2) pointing at `span` of the recipe.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        Error::input(message)
            .with_detail(self.snippet(span))
            .with_path(&self.path)
    }

    /// `  --> recipe.toml:12:3`, the line, and carets under the span.
    pub fn snippet(&self, span: Range<usize>) -> String {
        let (line, col) = self.line_col(span.start);
        let text_line = self.text.lines().nth(line - 1).unwrap_or("");
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        // The span may cover several lines (a whole table): underline its first line.
        let first_line_len = text_line.chars().count().saturating_sub(col - 1);
        let span_chars = self
            .text
            .get(span.clone())
            .map_or(1, |s| s.lines().next().map_or(1, |l| l.chars().count()));
        let carets = "^".repeat(span_chars.clamp(1, first_line_len.max(1)));
        format!(
            "{pad}--> {}:{line}:{col}\n{pad} |\n{line} | {text_line}\n{pad} | {}{carets}",
            self.path.display(),
            " ".repeat(col - 1),
        )
    }

    /// The excerpt of [`RecipeSource::snippet`] with the value at `span` (quotes and
    /// all) shown as `"<redacted>"`; None when `span` is not a range of the text.
    pub fn snippet_redacted(&self, span: Range<usize>) -> Option<String> {
        const REDACTED: &str = "\"<redacted>\"";
        if span.start > span.end {
            return None;
        }
        let before = self.text.get(..span.start)?;
        let after = self.text.get(span.end..)?;
        let blanked = RecipeSource {
            path: self.path.clone(),
            text: format!("{before}{REDACTED}{after}"),
        };
        Some(blanked.snippet(span.start..span.start + REDACTED.len()))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_names_line_and_column_and_underlines_the_span() {
        let src = RecipeSource {
            path: "r.toml".into(),
            text: "[image]\ntags = [\"x\"]\ncompression = \"gz\"\n".into(),
        };
        let start = src.text.find("\"gz\"").unwrap();
        let s = src.snippet(start..start + 4);
        assert!(s.contains("r.toml:3:15"), "{s}");
        assert!(s.contains("3 | compression = \"gz\""), "{s}");
        assert!(s.ends_with("|               ^^^^"), "{s}");
    }
}
