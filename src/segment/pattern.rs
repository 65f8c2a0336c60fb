//! A regex that keeps its source: compiled once; the source is what is
//! rendered back and what `persist::schema` stores (recompiled on load).

use std::fmt;

use regex::{Regex, RegexBuilder};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;

/// Compiled size limit: far above any pattern a person types in a segment
/// builder, low enough that a pathological one is a 400 rather than a stall.
/// A filter's regexes together are held to `limits.filter_regex_bytes`.
pub const SIZE_LIMIT_BYTES: usize = 1 << 20;

/// A case-insensitive, unanchored (search) regex with its source text.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
    compiled_bytes: usize,
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
            compiled_bytes: compiled_bytes(source),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The heap size of the pattern's compiled automaton (the Thompson NFA
    /// that `SIZE_LIMIT_BYTES` bounds), in bytes: what
    /// `limits.filter_regex_bytes` adds up.
    pub fn compiled_bytes(&self) -> usize {
        self.compiled_bytes
    }
}

/// The size of `source`'s NFA, compiled the way `regex` compiles it for
/// `Pattern` (same syntax options, same limit). `regex` does not expose it,
/// so it is measured on a second compilation; patterns are few per filter
/// and each is bounded by `SIZE_LIMIT_BYTES`. A pattern that `regex`
/// accepted always compiles here too; should it not, it counts as the
/// whole per-pattern limit.
fn compiled_bytes(source: &str) -> usize {
    thompson::NFA::compiler()
        .syntax(syntax::Config::new().case_insensitive(true))
        .configure(
            thompson::Config::new()
                .nfa_size_limit(Some(SIZE_LIMIT_BYTES))
                .shrink(false),
        )
        .build(source)
        .map_or(SIZE_LIMIT_BYTES, |nfa| nfa.memory_usage())
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

    #[test]
    fn compiled_size_grows_with_the_pattern_and_stays_under_the_limit() {
        let small = Pattern::new("gold").unwrap().compiled_bytes();
        let large = Pattern::new("(gold|silver|bronze){20}")
            .unwrap()
            .compiled_bytes();
        let unicode = Pattern::new(r"\w{5}").unwrap().compiled_bytes();
        assert!(small > 0);
        assert!(large > small, "{large} > {small}");
        assert!(unicode > small && unicode <= SIZE_LIMIT_BYTES, "{unicode}");
    }
}
