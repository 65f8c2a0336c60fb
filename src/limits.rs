//! The vocabulary of the `[limits]` section: which limit a request ran
//! into, and the one message every refusal uses.
//!
//! The values live in `config::LimitsConfig`; each rule lives in the module
//! that owns what it bounds:
//!
//! | limit | checked in |
//! | --- | --- |
//! | `array_items`, `attributes_per_profile`, `string_bytes`, `nesting_depth`, `object_keys` | `profiles::commands` (`check_*` on the request; `apply_*` against the profile) |
//! | `filter_leaves`, `filter_regex_leaves`, `filter_regex_bytes` | `segment::parse` |
//! | `partner_change_objects` | `http::partner` (while `cohort_changes` is parsed) |
//! | `cohorts_per_workspace`, `segments_per_workspace` | the engine's router, where a cohort or segment is created |
//!
//! A refusal is an [`Exceeded`]: it names the limit (its config key), the
//! limit's value and the value sent (or the value the state would reach).

use std::fmt;

/// One of the `[limits]` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    ArrayItems,
    NestingDepth,
    ObjectKeys,
    AttributesPerProfile,
    StringBytes,
    FilterLeaves,
    FilterRegexLeaves,
    FilterRegexBytes,
    PartnerChangeObjects,
    CohortsPerWorkspace,
    SegmentsPerWorkspace,
    ConnectorsPerWorkspace,
}

impl Limit {
    /// The key in `config.toml` (in `[limits]`, but for connectors).
    pub fn key(self) -> &'static str {
        match self {
            Limit::ConnectorsPerWorkspace => "connectors.max_per_workspace",
            Limit::ArrayItems => "limits.array_items",
            Limit::NestingDepth => "limits.nesting_depth",
            Limit::ObjectKeys => "limits.object_keys",
            Limit::AttributesPerProfile => "limits.attributes_per_profile",
            Limit::StringBytes => "limits.string_bytes",
            Limit::FilterLeaves => "limits.filter_leaves",
            Limit::FilterRegexLeaves => "limits.filter_regex_leaves",
            Limit::FilterRegexBytes => "limits.filter_regex_bytes",
            Limit::PartnerChangeObjects => "limits.partner_change_objects",
            Limit::CohortsPerWorkspace => "limits.cohorts_per_workspace",
            Limit::SegmentsPerWorkspace => "limits.segments_per_workspace",
        }
    }

    /// What the limit counts.
    fn unit(self) -> &'static str {
        match self {
            Limit::ArrayItems => "items",
            Limit::NestingDepth => "object levels",
            Limit::ObjectKeys => "keys",
            Limit::AttributesPerProfile => "attributes",
            Limit::StringBytes => "bytes",
            Limit::FilterLeaves => "leaves",
            Limit::FilterRegexLeaves => "regex leaves",
            Limit::FilterRegexBytes => "bytes of compiled regex",
            Limit::PartnerChangeObjects => "change objects",
            Limit::CohortsPerWorkspace => "cohorts",
            Limit::SegmentsPerWorkspace => "segments",
            Limit::ConnectorsPerWorkspace => "connectors",
        }
    }
}

/// A request over a limit: `what` (where in the request, or what the
/// state would become) reached `got`, over `max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: Limit,
    pub max: usize,
    pub got: usize,
    /// `got` is a lower bound: counting stopped once the limit was passed.
    pub at_least: bool,
    pub what: String,
}

impl Exceeded {
    pub fn new(limit: Limit, max: usize, got: usize, what: impl Into<String>) -> Exceeded {
        Exceeded {
            limit,
            max,
            got,
            at_least: false,
            what: what.into(),
        }
    }

    /// `Err` when `got` is over `max`.
    pub fn check(
        limit: Limit,
        max: usize,
        got: usize,
        what: impl FnOnce() -> String,
    ) -> Result<(), Exceeded> {
        if got > max {
            Err(Exceeded::new(limit, max, got, what()))
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}{} {}, over the limit of {} ({} in config.toml)",
            self.what,
            if self.at_least { "at least " } else { "" },
            self.got,
            self.limit.unit(),
            self.max,
            self.limit.key()
        )
    }
}

impl std::error::Error for Exceeded {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_limit_the_value_and_the_key() {
        let e = Exceeded::new(Limit::ArrayItems, 1000, 1001, "attributes[0].tags");
        assert_eq!(
            e.to_string(),
            "attributes[0].tags: 1001 items, over the limit of 1000 (limits.array_items in config.toml)"
        );
        let e = Exceeded {
            at_least: true,
            ..Exceeded::new(Limit::FilterRegexBytes, 10, 11, "filter")
        };
        assert!(e
            .to_string()
            .contains("at least 11 bytes of compiled regex"));
        assert!(Exceeded::check(Limit::StringBytes, 3, 3, String::new).is_ok());
        assert!(Exceeded::check(Limit::StringBytes, 3, 4, String::new).is_err());
    }
}

/// The limits that depend on the state, as the log applies them. They are
/// part of the log, not read from the config at replay: a write is judged
/// on replay by the limits it was judged by when it was acknowledged, so
/// changing `config.toml` between a crash and the restart never turns an
/// applied write into a refused one or the reverse. The engine logs a
/// `SetLimits` when the configured values differ from the ones in force.
/// `None` in force (data written before limits existed) means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLimits {
    pub array_items: u64,
    pub attributes_per_profile: u64,
    pub cohorts_per_workspace: u64,
    pub segments_per_workspace: u64,
}

impl StateLimits {
    pub fn from_config(l: &crate::config::LimitsConfig) -> StateLimits {
        let n = |v: usize| v as u64;
        StateLimits {
            array_items: n(l.array_items),
            attributes_per_profile: n(l.attributes_per_profile),
            cohorts_per_workspace: n(l.cohorts_per_workspace),
            segments_per_workspace: n(l.segments_per_workspace),
        }
    }

    /// `config` with its state-dependent limits replaced by those in force
    /// (all unlimited for `None`). The request limits stay the config's.
    pub fn in_force(
        config: &crate::config::LimitsConfig,
        state: Option<StateLimits>,
    ) -> crate::config::LimitsConfig {
        let v = |x: Option<u64>| x.map_or(usize::MAX, |x| usize::try_from(x).unwrap_or(usize::MAX));
        crate::config::LimitsConfig {
            array_items: v(state.map(|s| s.array_items)),
            attributes_per_profile: v(state.map(|s| s.attributes_per_profile)),
            cohorts_per_workspace: v(state.map(|s| s.cohorts_per_workspace)),
            segments_per_workspace: v(state.map(|s| s.segments_per_workspace)),
            ..config.clone()
        }
    }
}
