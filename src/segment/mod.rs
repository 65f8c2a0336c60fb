//! Segment filters: the filter language, its validation, and its evaluation
//! over roaring bitmaps of dense profile ids. Pure code: no actix, no HTTP.
//!
//! A segment is a saved filter; its membership is computed on demand from
//! the workspace's [`ProfileStore`](crate::profiles::ProfileStore) and the
//! current cohort sets, so it is always live.
//!
//! # Grammar
//!
//! Every node is a JSON object with **exactly one** key:
//!
//! ```text
//! F := {"and": [F, F, …]}                   non-empty array: every F holds
//!    | {"or":  [F, F, …]}                   non-empty array: some F holds
//!    | {"not": F}                           F does not hold
//!    | {"all": true}                        every live profile
//!    | {"cohort":    {"partner": S, "cohort_id": S}}
//!    | {"attribute": {"name": S, "op": AOP, "value": V}}   ("value" absent for exists/does_not_exist)
//!    | {"event":     {"name": S, "op": "more_than"|"less_than"|"exactly", "count": N}}
//!    | {"event":     {"name": S, "op": "last_performed_after"|"last_performed_before", "time": T}}
//!
//! AOP := equals | not_equals                 V: string, number or boolean
//!      | matches_regex | does_not_match_regex V: string (a regex)
//!      | exists | does_not_exist              no "value" key at all
//!      | greater_than | less_than             V: number, or T
//!      | includes_value                       V: string
//!      | within_km                            V: {"latitude": [-90, 90], "longitude": [-180, 180],
//!                                                 "km": (0, 20037.5]}
//! S   := non-empty string      N := non-negative integer (3.0 is accepted as 3)
//! T   := ISO-8601 string, as `time::parse_iso8601` reads it
//! ```
//!
//! Unknown keys anywhere are rejected, as are `null` values. Nesting is limited
//! to [`MAX_DEPTH`] levels (the root node is level 1): segments are written by
//! people in a builder, 32 levels is far beyond any real one, and the limit
//! bounds the recursion of parsing and evaluation.
//!
//! # Semantics (SPEC §4, pinned)
//!
//! * **Paths.** An attribute's `name` is a path: a top-level attribute, or
//!   names joined by `.` down through nested object values
//!   (`address.city`). The values at a path are what
//!   `profiles::paths::flatten` lists for it (one per element of an array
//!   of objects it goes through; a top-level name containing `.` is the
//!   same column). Every positive op holds when *some* value at the path
//!   satisfies it; `does_not_exist`, `not_equals` and
//!   `does_not_match_regex` are exactly the negation of `exists`, `equals`
//!   and `matches_regex`. A path naming an object or an array of objects
//!   exists (even empty) and satisfies no comparison. The rules below are
//!   stated for one value.
//! * **Universe.** Everything is evaluated against an explicit universe, the
//!   workspace's live profiles (`ProfileStore::live`). `not F` is
//!   `universe − F`. A cohort's set may still hold ids of profiles deleted
//!   since; they are never members of a segment.
//! * **Missing attribute**: every attribute comparison is false, except
//!   `does_not_exist`, `not_equals` and `does_not_match_regex`, which hold.
//! * `equals` / `not_equals` / `includes_value` are case-sensitive. Strings
//!   equal strings, and a string equals a time attribute whose text is exactly
//!   that string. Numbers compare numerically (`3` equals `3.0`). Booleans
//!   equal booleans. A value of another type than the attribute's never equals
//!   it, so `not_equals` holds. `not_equals` is exactly `not equals`.
//! * `matches_regex` searches (unanchored, case-insensitive) the attribute's
//!   text: a string attribute or the text of a time attribute. Numbers,
//!   booleans and arrays never match; `does_not_match_regex` is exactly
//!   `not matches_regex`.
//! * `greater_than` / `less_than` (strict) with a number compare against
//!   number attributes; with an ISO-8601 string they compare as instants
//!   against time attributes (`AttrValue::Time`). Anything else is false.
//! * `includes_value` holds when an array attribute contains the string.
//!   A non-array attribute never includes anything.
//! * `within_km` holds for a location (what `current_location` holds)
//!   whose haversine distance to the point, on the mean Earth radius, is at
//!   most `km`. Anything else is never within.
//! * Events: a profile that never did the event has count 0, so
//!   `less_than 1` and `exactly 0` hold for it. `last_performed_after` /
//!   `last_performed_before` compare the event's last time strictly and are
//!   false for a profile that never did it.
//! * `cohort`: member of that cohort's current set. A cohort that existed when
//!   the filter was parsed but is unknown at evaluation time has no members.
//!
//! # Choices where the spec is silent
//!
//! * An empty `and` / `or` array is an error (400), not "everyone" / "no one":
//!   a builder that saves an empty group almost certainly has a bug, and an
//!   empty `and` silently targeting the whole workspace is the costly failure.
//! * `{"all": false}` is an error; "no one" is written `{"not": {"all": true}}`.
//! * `exists` / `does_not_exist` with a `"value"` key (even `null`) is an error.
//! * An unknown cohort is an error at parse time (decided by the caller's
//!   `cohort_exists`), never silently an empty set.
//! * A filter from a request is parsed with [`parse_limited`], held to the
//!   `[limits]` `filter_leaves`, `filter_regex_leaves` (counted on the JSON
//!   before anything compiles) and `filter_regex_bytes` (the regexes'
//!   compiled sizes, summed as they compile). [`parse`] is the unlimited
//!   rule, for filters already accepted once (loaded from disk).
//!
//! # Evaluation
//!
//! [`evaluate`] walks the tree with a *candidate set* that starts as the
//! universe. `and` orders its children cheapest first (cohorts by size, then
//! other pure set algebra, then attribute/event leaves) and evaluates each
//! child only over the candidates left by the previous ones. `or` evaluates
//! costly children only over candidates not already in the result.
//!
//! Attribute and event leaves read the workspace's column index
//! (`profiles::columns`): a leaf is a bitmap of the profiles for which its
//! positive form holds (a dictionary value's holders, a range of an
//! ordered index, a regex's matching dictionary values OR-ed), intersected
//! with the candidates, or subtracted from them for the negated ops. Below
//! [`SCAN_BELOW`] candidates a leaf looks at each candidate's profile
//! instead (the rules above, one profile at a time, are the same code
//! [`contains`] uses); `within_km` always checks distances, over the
//! candidates that hold a location. `count` of a leaf over the universe
//! is the bitmap's length. [`count`] uses
//! fused `intersection_len` / `difference_len` for the last step of pure
//! cohort algebra, so `A and B and not C` materialises one intermediate set.
//! [`contains`] checks one profile without touching the others;
//! [`contains_many`] does it for a batch against one snapshot of the cohorts.
//!
//! Each has a `_within` form that takes a [`Deadline`] and gives up with
//! [`OutOfTime`] once it passes, checking it cooperatively (every
//! `CHECK_EVERY` profiles scanned or ids checked, and between the children
//! of `and`/`or`): the engine's read pool runs every request's evaluation
//! that way. Evaluation reads profiles through [`Profiles`], implemented by
//! the store and by a detached `ProfileView` of it.

mod eval;
mod parse;
mod pattern;

use compact_str::CompactString;

use crate::model::{CohortKey, Millis};

pub use eval::{
    contains, contains_many, contains_many_within, count, count_within, counts_in_constant_time,
    evaluate, evaluate_among, evaluate_within, CohortSets, Deadline, OutOfTime, Profiles,
    SCAN_BELOW,
};
pub use parse::{parse, parse_limited, FilterError, FilterLimits, ParseError, MAX_DEPTH};
pub use pattern::Pattern;

/// A parsed, validated segment filter. Build one with [`parse`]; render it
/// back with [`Filter::to_json`].
///
/// Not persisted as such: `persist::schema` declares how a saved filter is
/// written.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    All,
    Cohort(CohortKey),
    Attribute {
        name: CompactString,
        cond: AttrCond,
    },
    Event {
        name: CompactString,
        cond: EventCond,
    },
}

/// What a filter reads ([`Filter::reads`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reads {
    pub cohorts: std::collections::BTreeSet<CohortKey>,
    /// Top-level attribute names (`address` for `address.city`).
    pub attributes: std::collections::BTreeSet<CompactString>,
    pub events: std::collections::BTreeSet<CompactString>,
}

/// A condition on one custom attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrCond {
    Equals(Scalar),
    NotEquals(Scalar),
    MatchesRegex(Pattern),
    DoesNotMatchRegex(Pattern),
    Exists,
    DoesNotExist,
    GreaterThan(Bound),
    LessThan(Bound),
    IncludesValue(CompactString),
    /// A location within `km` of the point (haversine, mean Earth radius).
    WithinKm {
        latitude: f64,
        longitude: f64,
        km: f64,
    },
}

/// The value of `equals` / `not_equals`.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Str(CompactString),
    Num(f64),
    Bool(bool),
}

/// The value of `greater_than` / `less_than`.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    Num(f64),
    Time(Instant),
}

/// An ISO-8601 time from a filter: the text as given (rendered back
/// unchanged) and the instant it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instant {
    pub text: CompactString,
    pub at: Millis,
}

/// A condition on one custom event's stats.
#[derive(Clone, Debug, PartialEq)]
pub enum EventCond {
    MoreThan(u64),
    LessThan(u64),
    Exactly(u64),
    LastPerformedAfter(Instant),
    LastPerformedBefore(Instant),
}
