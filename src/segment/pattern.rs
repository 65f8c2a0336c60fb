//! A regex that keeps its source: compiled once; the source is what is
//! rendered back and what `persist::schema` stores (recompiled on load).

use std::fmt;

use regex::{Regex, RegexBuilder};

/// Compiled size limit: far above any pattern a person types in a segment
/// builder, low enough that a pathological one is a 400 rather than a stall.
const SIZE_LIMIT_BYTES: usize = 1 << 20;

/// A case-insensitive, unanchored (search) regex with its source text.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source` the way filters use it: case-insensitive, and it
    /// matches anywhere in the text unless anchored with `^…$`.
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        let regex = RegexBuilder::new(source)
            .case_insensitive(true)
            .size_limit(SIZE_LIMIT_BYTES)
            .build()?;
        Ok(Pattern {
            source: source.to_owned(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_anywhere_ignoring_case() {
        let p = Pattern::new("gold").unwrap();
        assert!(p.is_match("Rose GOLD plan"));
        assert!(!p.is_match("silver"));
        let anchored = Pattern::new("^gold$").unwrap();
        assert!(anchored.is_match("Gold"));
        assert!(!anchored.is_match("gold plan"));
    }

    #[test]
    fn pathological_patterns_are_refused() {
        assert!(Pattern::new("(a{1000}){1000}").is_err());
    }
}
