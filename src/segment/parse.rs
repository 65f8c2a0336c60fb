//! JSON → [`Filter`] (validating everything, so evaluation never fails) and
//! back ([`Filter::to_json`]).

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Number, Value};

use super::{AttrCond, Bound, EventCond, Filter, Instant, Pattern, Scalar};
use crate::limits::{Exceeded, Limit};
use crate::model::CohortKey;
use crate::time::parse_iso8601;

/// How deep filters may nest; the root node is level 1. Far beyond what a
/// person builds, and it bounds the recursion of parsing and evaluation.
pub const MAX_DEPTH: usize = 32;

const NODE_KEYS: &str = "and, or, not, all, cohort, attribute, event";
const ATTRIBUTE_OPS: &str = "equals, not_equals, matches_regex, does_not_match_regex, exists, \
     does_not_exist, greater_than, less_than, includes_value, within_km";
const EVENT_OPS: &str =
    "more_than, less_than, exactly, last_performed_after, last_performed_before";

/// An invalid filter: what is wrong and where. `path` is a JSON pointer into
/// the filter as sent (`"/and/1/attribute/op"`), `"/"` for the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.message, self.path)
    }
}

impl std::error::Error for FilterError {}

type Result<T> = std::result::Result<T, FilterError>;

fn fail<T>(path: &str, message: impl Into<String>) -> Result<T> {
    Err(FilterError {
        path: path.to_owned(),
        message: message.into(),
    })
}

fn child(path: &str, segment: impl fmt::Display) -> String {
    if path == "/" {
        format!("/{segment}")
    } else {
        format!("{path}/{segment}")
    }
}

/// A JSON value described for an error message: `found …`.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!("the string \"{head}…\"")
        }
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Parses and validates a filter. `cohort_exists` decides whether a cohort
/// named in the filter is known; an unknown one is an error (a 400), never
/// an empty set.
pub fn parse(
    value: &Value,
    cohort_exists: &dyn Fn(&CohortKey) -> bool,
) -> std::result::Result<Filter, FilterError> {
    Parser {
        cohort_exists,
        regex_budget: None,
    }
    .node(value, "/", 1)
}

/// The `[limits]` a filter sent in a request is held to (saved filters
/// loaded from disk are not: they were accepted once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterLimits {
    /// `limits.filter_leaves`: cohort, attribute, event and all nodes.
    pub leaves: usize,
    /// `limits.filter_regex_leaves`: matches_regex / does_not_match_regex.
    pub regex_leaves: usize,
    /// `limits.filter_regex_bytes`: the regexes' compiled sizes, summed.
    pub regex_bytes: usize,
}

/// Why a filter from a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Invalid(FilterError),
    Limit(Exceeded),
}

/// [`parse`], held to `limits`. The leaf counts are taken first, on the
/// JSON as sent (an oversized filter costs no regex compilation); the
/// compiled sizes add up as the regexes compile, and the first one that
/// takes the sum over the limit stops the parse.
pub fn parse_limited(
    value: &Value,
    cohort_exists: &dyn Fn(&CohortKey) -> bool,
    limits: &FilterLimits,
) -> std::result::Result<Filter, ParseError> {
    let mut counts = LeafCounts::default();
    counts.walk(value, 1);
    Exceeded::check(Limit::FilterLeaves, limits.leaves, counts.leaves, || {
        "filter".into()
    })
    .and_then(|()| {
        Exceeded::check(
            Limit::FilterRegexLeaves,
            limits.regex_leaves,
            counts.regexes,
            || "filter".into(),
        )
    })
    .map_err(ParseError::Limit)?;
    let budget = RegexBudget {
        max: limits.regex_bytes,
        used: Cell::new(0),
        over: Cell::new(false),
    };
    let parsed = Parser {
        cohort_exists,
        regex_budget: Some(&budget),
    }
    .node(value, "/", 1);
    if budget.over.get() {
        return Err(ParseError::Limit(Exceeded {
            at_least: true,
            ..Exceeded::new(
                Limit::FilterRegexBytes,
                budget.max,
                budget.used.get(),
                "filter",
            )
        }));
    }
    parsed.map_err(ParseError::Invalid)
}

/// Leaves and regex leaves of a filter as sent, counted down to
/// `MAX_DEPTH` (deeper is a parse error anyway). Malformed nodes count as
/// leaves or not at all; `parse` reports them.
#[derive(Default)]
struct LeafCounts {
    leaves: usize,
    regexes: usize,
}

impl LeafCounts {
    fn walk(&mut self, v: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let Some((key, body)) = v.as_object().and_then(|o| {
            let mut entries = o.iter();
            match (entries.next(), entries.next()) {
                (Some(entry), None) => Some(entry),
                _ => None,
            }
        }) else {
            return;
        };
        match key.as_str() {
            "and" | "or" => {
                for item in body.as_array().into_iter().flatten() {
                    self.walk(item, depth + 1);
                }
            }
            "not" => self.walk(body, depth + 1),
            "attribute" => {
                self.leaves += 1;
                if matches!(
                    body.get("op").and_then(Value::as_str),
                    Some("matches_regex" | "does_not_match_regex")
                ) {
                    self.regexes += 1;
                }
            }
            _ => self.leaves += 1,
        }
    }
}

/// The compiled regex bytes a filter may still use.
struct RegexBudget {
    max: usize,
    used: Cell<usize>,
    over: Cell<bool>,
}

struct Parser<'a> {
    cohort_exists: &'a dyn Fn(&CohortKey) -> bool,
    regex_budget: Option<&'a RegexBudget>,
}

impl Parser<'_> {
    fn node(&self, v: &Value, path: &str, depth: usize) -> Result<Filter> {
        if depth > MAX_DEPTH {
            return fail(
                path,
                format!(
                    "filter nests deeper than {MAX_DEPTH} levels; flatten it \
                     (and/or take any number of children)"
                ),
            );
        }
        let Some(obj) = v.as_object() else {
            return fail(
                path,
                format!(
                    "expected a filter object with one of the keys {NODE_KEYS}, found {}",
                    describe(v)
                ),
            );
        };
        let mut entries = obj.iter();
        let (key, body) = match (entries.next(), obj.len()) {
            (Some(entry), 1) => entry,
            (_, n) => {
                let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                return fail(
                    path,
                    format!(
                        "expected a filter object with exactly one of the keys {NODE_KEYS}, \
                         found {n} keys ({}); combine filters with \"and\" or \"or\"",
                        keys.join(", ")
                    ),
                );
            }
        };
        let here = child(path, key);
        match key.as_str() {
            "and" => Ok(Filter::And(self.children(body, &here, depth)?)),
            "or" => Ok(Filter::Or(self.children(body, &here, depth)?)),
            "not" => Ok(Filter::Not(Box::new(self.node(body, &here, depth + 1)?))),
            "all" => match body {
                Value::Bool(true) => Ok(Filter::All),
                other => fail(
                    &here,
                    format!(
                        "expected true (everyone; write {{\"not\": {{\"all\": true}}}} \
                         for no one), found {}",
                        describe(other)
                    ),
                ),
            },
            "cohort" => self.cohort(body, &here),
            "attribute" => {
                let f = attribute(body, &here)?;
                self.spend_regex_budget(&f, &here)?;
                Ok(f)
            }
            "event" => event(body, &here),
            other => fail(
                path,
                format!("unknown filter key {other:?}; expected one of {NODE_KEYS}"),
            ),
        }
    }

    /// Adds a regex leaf's compiled size to the budget; past it, the parse
    /// stops (`parse_limited` reports the limit, not this error).
    fn spend_regex_budget(&self, f: &Filter, path: &str) -> Result<()> {
        let (
            Some(budget),
            Filter::Attribute {
                cond: AttrCond::MatchesRegex(p) | AttrCond::DoesNotMatchRegex(p),
                ..
            },
        ) = (self.regex_budget, f)
        else {
            return Ok(());
        };
        let used = budget.used.get() + p.compiled_bytes();
        budget.used.set(used);
        if used > budget.max {
            budget.over.set(true);
            return fail(path, "the filter's regexes are too large together");
        }
        Ok(())
    }

    fn children(&self, v: &Value, path: &str, depth: usize) -> Result<Vec<Filter>> {
        match v {
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.node(item, &child(path, i), depth + 1))
                .collect(),
            Value::Array(_) => fail(
                path,
                "expected a non-empty array of filters (an empty group is refused: \
                 use {\"all\": true} for everyone)",
            ),
            other => fail(
                path,
                format!("expected an array of filters, found {}", describe(other)),
            ),
        }
    }

    fn cohort(&self, v: &Value, path: &str) -> Result<Filter> {
        let fields = Fields::new(v, path, "cohort", &["partner", "cohort_id"])?;
        let key = CohortKey::new(fields.name("partner")?, fields.name("cohort_id")?);
        if !(self.cohort_exists)(&key) {
            return fail(
                path,
                format!(
                    "unknown cohort {:?} of partner {:?}; expected a cohort that exists \
                     in this workspace (see GET /cohorts)",
                    key.cohort_id.as_str(),
                    key.partner.as_str()
                ),
            );
        }
        Ok(Filter::Cohort(key))
    }
}

fn attribute(v: &Value, path: &str) -> Result<Filter> {
    let fields = Fields::new(v, path, "attribute", &["name", "op", "value"])?;
    let name = fields.name("name")?.into();
    let op = fields.str("op")?;
    let cond = match op {
        "exists" | "does_not_exist" => {
            if fields.obj.contains_key("value") {
                return fail(
                    &child(path, "value"),
                    format!("{op} takes no value; remove \"value\""),
                );
            }
            if op == "exists" {
                AttrCond::Exists
            } else {
                AttrCond::DoesNotExist
            }
        }
        "equals" | "not_equals" => {
            let (v, vpath) = fields.required("value")?;
            let s = match v {
                Value::String(s) => Scalar::Str(s.into()),
                Value::Number(n) => Scalar::Num(number(n)),
                Value::Bool(b) => Scalar::Bool(*b),
                other => {
                    return fail(
                        &vpath,
                        format!(
                            "{op} expects a string, number or boolean value, found {}",
                            describe(other)
                        ),
                    )
                }
            };
            if op == "equals" {
                AttrCond::Equals(s)
            } else {
                AttrCond::NotEquals(s)
            }
        }
        "matches_regex" | "does_not_match_regex" => {
            let (v, vpath) = fields.required("value")?;
            let Value::String(src) = v else {
                return fail(
                    &vpath,
                    format!(
                        "{op} expects a regular expression as a string, found {}",
                        describe(v)
                    ),
                );
            };
            let p = Pattern::new(src).or_else(|e| {
                fail(
                    &vpath,
                    format!("invalid regular expression {src:?}: {}", one_line(&e)),
                )
            })?;
            if op == "matches_regex" {
                AttrCond::MatchesRegex(p)
            } else {
                AttrCond::DoesNotMatchRegex(p)
            }
        }
        "greater_than" | "less_than" => {
            let (v, vpath) = fields.required("value")?;
            let b = match v {
                Value::Number(n) => Bound::Num(number(n)),
                Value::String(s) => match parse_iso8601(s) {
                    Some(at) => Bound::Time(Instant { text: s.into(), at }),
                    None => {
                        return fail(
                            &vpath,
                            format!(
                                "{op} expects a number or an ISO-8601 time \
                                 (e.g. \"2024-05-01T10:00:00Z\"), found {}",
                                describe(v)
                            ),
                        )
                    }
                },
                other => {
                    return fail(
                        &vpath,
                        format!(
                            "{op} expects a number or an ISO-8601 time string, found {}",
                            describe(other)
                        ),
                    )
                }
            };
            if op == "greater_than" {
                AttrCond::GreaterThan(b)
            } else {
                AttrCond::LessThan(b)
            }
        }
        "includes_value" => {
            let (v, vpath) = fields.required("value")?;
            let Value::String(s) = v else {
                return fail(
                    &vpath,
                    format!(
                        "includes_value expects a string (an item of an array attribute), \
                         found {}",
                        describe(v)
                    ),
                );
            };
            AttrCond::IncludesValue(s.into())
        }
        "within_km" => {
            let (v, vpath) = fields.required("value")?;
            within_km(v, &vpath)?
        }
        other => {
            return fail(
                &child(path, "op"),
                format!("unknown attribute op {other:?}; expected one of {ATTRIBUTE_OPS}"),
            )
        }
    };
    Ok(Filter::Attribute { name, cond })
}

/// The largest distance `within_km` takes: half the Earth's circumference,
/// beyond which every point is within.
pub const MAX_KM: f64 = 20_037.5;

/// `{"latitude": [-90, 90], "longitude": [-180, 180], "km": (0, MAX_KM]}`.
fn within_km(v: &Value, path: &str) -> Result<AttrCond> {
    const KEYS: [&str; 3] = ["latitude", "longitude", "km"];
    let Some(obj) = v.as_object() else {
        return fail(
            path,
            format!(
                "within_km expects an object {{\"latitude\", \"longitude\", \"km\"}}, found {}",
                describe(v)
            ),
        );
    };
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return fail(
            path,
            format!(
                "unknown key {k:?} in within_km's value; expected only latitude, longitude, km"
            ),
        );
    }
    let num = |key: &str, lo: f64, hi: f64, lo_open: bool| -> Result<f64> {
        let kpath = child(path, key);
        let Some(x) = obj.get(key) else {
            return fail(path, format!("missing field \"{key}\""));
        };
        match x.as_f64() {
            Some(n) if (if lo_open { n > lo } else { n >= lo }) && n <= hi => Ok(n),
            _ => fail(
                &kpath,
                format!(
                    "{key} must be a number from {lo} {} {hi}, found {}",
                    if lo_open { "(exclusive) to" } else { "to" },
                    describe(x)
                ),
            ),
        }
    };
    Ok(AttrCond::WithinKm {
        latitude: num("latitude", -90.0, 90.0, false)?,
        longitude: num("longitude", -180.0, 180.0, false)?,
        km: num("km", 0.0, MAX_KM, true)?,
    })
}

fn event(v: &Value, path: &str) -> Result<Filter> {
    let fields = Fields::new(v, path, "event", &["name", "op", "count", "time"])?;
    let name = fields.name("name")?.into();
    let op = fields.str("op")?;
    let (wants, refuses) = match op {
        "more_than" | "less_than" | "exactly" => ("count", "time"),
        "last_performed_after" | "last_performed_before" => ("time", "count"),
        other => {
            return fail(
                &child(path, "op"),
                format!("unknown event op {other:?}; expected one of {EVENT_OPS}"),
            )
        }
    };
    if fields.obj.contains_key(refuses) {
        return fail(
            &child(path, refuses),
            format!("{op} takes \"{wants}\", not \"{refuses}\"; remove \"{refuses}\""),
        );
    }
    let (v, vpath) = fields.required(wants)?;
    let cond = if wants == "count" {
        let Some(n) = count(v) else {
            return fail(
                &vpath,
                format!(
                    "{op} expects a non-negative integer count, found {}",
                    describe(v)
                ),
            );
        };
        match op {
            "more_than" => EventCond::MoreThan(n),
            "less_than" => EventCond::LessThan(n),
            _ => EventCond::Exactly(n),
        }
    } else {
        let t = match v {
            Value::String(s) => parse_iso8601(s).map(|at| Instant { text: s.into(), at }),
            _ => None,
        };
        let Some(t) = t else {
            return fail(
                &vpath,
                format!(
                    "{op} expects an ISO-8601 time string (e.g. \"2024-05-01T10:00:00Z\"), \
                     found {}",
                    describe(v)
                ),
            );
        };
        if op == "last_performed_after" {
            EventCond::LastPerformedAfter(t)
        } else {
            EventCond::LastPerformedBefore(t)
        }
    };
    Ok(Filter::Event { name, cond })
}

/// JSON numbers are finite, so this is never NaN.
fn number(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

/// The largest integer an `f64` holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A non-negative integer; a whole float (`3.0`) counts.
fn count(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f <= MAX_SAFE_INTEGER).then_some(f as u64)
    })
}

/// regex's syntax errors are multi-line drawings; an error body wants one line.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

/// The body object of a leaf, with its allowed keys checked.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, path: &'a str, what: &str, allowed: &[&str]) -> Result<Self> {
        let Some(obj) = v.as_object() else {
            return fail(
                path,
                format!(
                    "expected an object with the keys {}, found {}",
                    allowed.join(", "),
                    describe(v)
                ),
            );
        };
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return fail(
                path,
                format!(
                    "unknown key {k:?} in {what}; expected only {}",
                    allowed.join(", ")
                ),
            );
        }
        Ok(Fields { obj, path })
    }

    fn required(&self, key: &str) -> Result<(&'a Value, String)> {
        match self.obj.get(key) {
            Some(v) => Ok((v, child(self.path, key))),
            None => fail(self.path, format!("missing field \"{key}\"")),
        }
    }

    fn str(&self, key: &str) -> Result<&'a str> {
        let (v, path) = self.required(key)?;
        v.as_str().map_or_else(
            || fail(&path, format!("expected a string, found {}", describe(v))),
            Ok,
        )
    }

    /// A non-empty string.
    fn name(&self, key: &str) -> Result<&'a str> {
        match self.str(key)? {
            "" => fail(
                &child(self.path, key),
                "expected a non-empty string, found the string \"\"",
            ),
            s => Ok(s),
        }
    }
}

impl Filter {
    /// The filter in the input language, canonical: `parse(f.to_json())`
    /// gives `f` back, and so does rendering it again. Times keep the text
    /// they were given; whole numbers render as integers (`3.0` → `3`).
    pub fn to_json(&self) -> Value {
        use serde_json::json;
        match self {
            Filter::And(fs) => json!({"and": fs.iter().map(Filter::to_json).collect::<Vec<_>>()}),
            Filter::Or(fs) => json!({"or": fs.iter().map(Filter::to_json).collect::<Vec<_>>()}),
            Filter::Not(f) => json!({"not": f.to_json()}),
            Filter::All => json!({"all": true}),
            Filter::Cohort(k) => json!({"cohort": {
                "partner": k.partner.as_str(),
                "cohort_id": k.cohort_id.as_str(),
            }}),
            Filter::Attribute { name, cond } => {
                let (op, value) = match cond {
                    AttrCond::Equals(s) => ("equals", Some(scalar_json(s))),
                    AttrCond::NotEquals(s) => ("not_equals", Some(scalar_json(s))),
                    AttrCond::MatchesRegex(p) => ("matches_regex", Some(json!(p.as_str()))),
                    AttrCond::DoesNotMatchRegex(p) => {
                        ("does_not_match_regex", Some(json!(p.as_str())))
                    }
                    AttrCond::Exists => ("exists", None),
                    AttrCond::DoesNotExist => ("does_not_exist", None),
                    AttrCond::GreaterThan(b) => ("greater_than", Some(bound_json(b))),
                    AttrCond::LessThan(b) => ("less_than", Some(bound_json(b))),
                    AttrCond::IncludesValue(s) => ("includes_value", Some(json!(s.as_str()))),
                    AttrCond::WithinKm {
                        latitude,
                        longitude,
                        km,
                    } => (
                        "within_km",
                        Some(json!({
                            "latitude": num_json(*latitude),
                            "longitude": num_json(*longitude),
                            "km": num_json(*km),
                        })),
                    ),
                };
                let mut body = json!({"name": name.as_str(), "op": op});
                if let Some(v) = value {
                    body["value"] = v;
                }
                json!({ "attribute": body })
            }
            Filter::Event { name, cond } => {
                let body = match cond {
                    EventCond::MoreThan(n) => json!({"op": "more_than", "count": n}),
                    EventCond::LessThan(n) => json!({"op": "less_than", "count": n}),
                    EventCond::Exactly(n) => json!({"op": "exactly", "count": n}),
                    EventCond::LastPerformedAfter(t) => {
                        json!({"op": "last_performed_after", "time": t.text.as_str()})
                    }
                    EventCond::LastPerformedBefore(t) => {
                        json!({"op": "last_performed_before", "time": t.text.as_str()})
                    }
                };
                let mut body = body;
                body["name"] = json!(name.as_str());
                json!({ "event": body })
            }
        }
    }

    /// The cohorts this filter reads, each once.
    pub fn cohorts(&self) -> BTreeSet<&CohortKey> {
        fn walk<'f>(f: &'f Filter, out: &mut BTreeSet<&'f CohortKey>) {
            match f {
                Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| walk(f, out)),
                Filter::Not(f) => walk(f, out),
                Filter::Cohort(k) => {
                    out.insert(k);
                }
                Filter::All | Filter::Attribute { .. } | Filter::Event { .. } => {}
            }
        }
        let mut out = BTreeSet::new();
        walk(self, &mut out);
        out
    }

    /// What the filter reads (its cohorts, the top-level attribute names
    /// of its paths, its event names): a write that changes none of them
    /// for a profile cannot change whether that profile matches
    /// (`engine::tracking` relies on it).
    pub fn reads(&self) -> super::Reads {
        fn walk(f: &Filter, out: &mut super::Reads) {
            match f {
                Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| walk(f, out)),
                Filter::Not(f) => walk(f, out),
                Filter::Cohort(k) => {
                    out.cohorts.insert(k.clone());
                }
                Filter::Attribute { name, .. } => {
                    let top = name.split('.').next().unwrap_or(name);
                    out.attributes.insert(top.into());
                }
                Filter::Event { name, .. } => {
                    out.events.insert(name.clone());
                }
                Filter::All => {}
            }
        }
        let mut out = super::Reads::default();
        walk(self, &mut out);
        out
    }
}

fn num_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        Value::from(n as i64)
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

fn scalar_json(s: &Scalar) -> Value {
    match s {
        Scalar::Str(s) => Value::from(s.as_str()),
        Scalar::Num(n) => num_json(*n),
        Scalar::Bool(b) => Value::Bool(*b),
    }
}

fn bound_json(b: &Bound) -> Value {
    match b {
        Bound::Num(n) => num_json(*n),
        Bound::Time(t) => Value::from(t.text.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn known(k: &CohortKey) -> bool {
        k.partner == "hightouch" && k.cohort_id == "c1"
    }

    fn ok(v: Value) -> Filter {
        parse(&v, &known).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    /// The error for `v`: its path, and a fragment its message must contain.
    fn err(v: Value, path: &str, says: &str) {
        let e = parse(&v, &known).expect_err(&v.to_string());
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(says), "{e:?} should say {says:?}");
    }

    fn attr(op: &str, value: Value) -> Value {
        json!({"attribute": {"name": "plan", "op": op, "value": value}})
    }

    const C1: &str = r#"{"cohort": {"partner": "hightouch", "cohort_id": "c1"}}"#;

    fn c1() -> Value {
        serde_json::from_str(C1).unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(ok(json!({"all": true})), Filter::All);
        assert_eq!(
            ok(json!({"not": c1()})),
            Filter::Not(Box::new(Filter::Cohort(CohortKey::new("hightouch", "c1"))))
        );
        assert_eq!(
            ok(attr("equals", json!(3))),
            Filter::Attribute {
                name: "plan".into(),
                cond: AttrCond::Equals(Scalar::Num(3.0))
            }
        );
        assert_eq!(
            ok(json!({"event": {"name": "buy", "op": "exactly", "count": 2.0}})),
            Filter::Event {
                name: "buy".into(),
                cond: EventCond::Exactly(2)
            }
        );
        let t = ok(
            json!({"event": {"name": "buy", "op": "last_performed_after",
                                    "time": "2021-01-21T19:20:30+05:00"}}),
        );
        let Filter::Event {
            cond: EventCond::LastPerformedAfter(i),
            ..
        } = t
        else {
            panic!("{t:?}")
        };
        assert_eq!(i.at, parse_iso8601("2021-01-21T14:20:30Z").unwrap());
    }

    #[test]
    fn to_json_is_canonical_and_round_trips() {
        let input = json!({"or": [
            {"and": [c1(), {"not": {"all": true}}]},
            attr("equals", json!("gold")),
            attr("not_equals", json!(3.0)),
            attr("equals", json!(2.5)),
            attr("not_equals", json!(false)),
            attr("matches_regex", json!("^g")),
            attr("does_not_match_regex", json!("x|y")),
            {"attribute": {"name": "plan", "op": "exists"}},
            {"attribute": {"name": "plan", "op": "does_not_exist"}},
            attr("greater_than", json!(-1)),
            attr("less_than", json!("2024-05-01T10:00:00+02:00")),
            attr("includes_value", json!("a")),
            {"attribute": {"name": "address.city", "op": "equals", "value": "Lisbon"}},
            attr("within_km", json!({"km": 10, "latitude": 38.72, "longitude": -9.14})),
            {"event": {"name": "e", "op": "more_than", "count": 0}},
            {"event": {"name": "e", "op": "less_than", "count": 5}},
            {"event": {"name": "e", "op": "exactly", "count": 1}},
            {"event": {"name": "e", "op": "last_performed_after", "time": "2024-01-01"}},
            {"event": {"name": "e", "op": "last_performed_before", "time": "2024-01-01T00:00:00Z"}},
        ]});
        let f = ok(input.clone());
        let out = f.to_json();
        // Whole numbers render as integers; everything else as sent.
        let expected = serde_json::to_string(&input)
            .unwrap()
            .replace("\"value\":3.0", "\"value\":3");
        assert_eq!(serde_json::to_string(&out).unwrap(), expected);
        assert_eq!(ok(out.clone()), f);
        assert_eq!(ok(out.clone()).to_json(), out);
    }

    #[test]
    fn cohorts_lists_each_cohort_once() {
        let f = ok(json!({"and": [c1(), {"not": c1()}, {"all": true}]}));
        assert_eq!(
            f.cohorts().into_iter().collect::<Vec<_>>(),
            [&CohortKey::new("hightouch", "c1")]
        );
    }

    #[test]
    fn nodes_must_be_objects_with_one_known_key() {
        err(json!([]), "/", "expected a filter object");
        err(json!("all"), "/", "found the string \"all\"");
        err(json!({}), "/", "found 0 keys");
        err(
            json!({"all": true, "not": c1()}),
            "/",
            "found 2 keys (all, not)",
        );
        err(json!({"nand": []}), "/", "unknown filter key \"nand\"");
        err(
            json!({"and": [c1(), {"xor": 1}]}),
            "/and/1",
            "unknown filter key \"xor\"",
        );
    }

    #[test]
    fn and_or_take_non_empty_arrays() {
        err(json!({"and": []}), "/and", "non-empty array");
        err(json!({"or": []}), "/or", "non-empty array");
        err(
            json!({"or": c1()}),
            "/or",
            "expected an array of filters, found an object",
        );
    }

    #[test]
    fn all_must_be_true() {
        err(json!({"all": false}), "/all", "expected true");
        err(json!({"all": 1}), "/all", "found the number 1");
    }

    #[test]
    fn unknown_cohorts_are_refused() {
        err(
            json!({"cohort": {"partner": "hightouch", "cohort_id": "c2"}}),
            "/cohort",
            "unknown cohort \"c2\" of partner \"hightouch\"",
        );
        err(
            json!({"cohort": {"partner": "hightouch"}}),
            "/cohort",
            "missing field \"cohort_id\"",
        );
        err(
            json!({"cohort": {"partner": "", "cohort_id": "c1"}}),
            "/cohort/partner",
            "non-empty string",
        );
        err(
            json!({"cohort": {"partner": "hightouch", "cohort_id": 1}}),
            "/cohort/cohort_id",
            "expected a string, found the number 1",
        );
        err(
            json!({"cohort": {"partner": "hightouch", "cohort_id": "c1", "name": "x"}}),
            "/cohort",
            "unknown key \"name\" in cohort",
        );
    }

    #[test]
    fn attribute_errors_point_at_the_field() {
        err(
            json!({"attribute": {"name": "plan", "op": "like", "value": "x"}}),
            "/attribute/op",
            "unknown attribute op \"like\"; expected one of equals",
        );
        err(
            json!({"attribute": {"op": "exists"}}),
            "/attribute",
            "missing field \"name\"",
        );
        err(
            json!({"attribute": {"name": "plan"}}),
            "/attribute",
            "missing field \"op\"",
        );
        err(
            json!({"attribute": {"name": "plan", "op": "equals"}}),
            "/attribute",
            "missing field \"value\"",
        );
        err(
            json!({"attribute": {"name": "plan", "op": "exists", "valu": 1}}),
            "/attribute",
            "unknown key \"valu\" in attribute",
        );
        err(json!({"attribute": []}), "/attribute", "expected an object");
    }

    #[test]
    fn attribute_values_must_fit_the_op() {
        err(
            attr("equals", json!(null)),
            "/attribute/value",
            "string, number or boolean",
        );
        err(
            attr("not_equals", json!(["a"])),
            "/attribute/value",
            "found an array",
        );
        err(
            attr("matches_regex", json!(1)),
            "/attribute/value",
            "regular expression as a string",
        );
        err(
            attr("does_not_match_regex", json!("(")),
            "/attribute/value",
            "invalid regular expression \"(\"",
        );
        err(
            attr("greater_than", json!(true)),
            "/attribute/value",
            "number or an ISO-8601 time",
        );
        err(
            attr("less_than", json!("soon")),
            "/attribute/value",
            "found the string \"soon\"",
        );
        err(
            attr("includes_value", json!(1)),
            "/attribute/value",
            "includes_value expects a string",
        );
        err(
            attr("exists", json!("x")),
            "/attribute/value",
            "exists takes no value",
        );
        err(
            attr("does_not_exist", json!(null)),
            "/attribute/value",
            "takes no value",
        );
    }

    #[test]
    fn within_km_values_are_validated() {
        let w = |v: Value| attr("within_km", v);
        assert_eq!(
            ok(w(json!({"latitude": 38.72, "longitude": -9.14, "km": 10}))),
            Filter::Attribute {
                name: "plan".into(),
                cond: AttrCond::WithinKm {
                    latitude: 38.72,
                    longitude: -9.14,
                    km: 10.0
                }
            }
        );
        err(
            w(json!("x")),
            "/attribute/value",
            "within_km expects an object",
        );
        err(
            w(json!({"latitude": 1, "longitude": 1})),
            "/attribute/value",
            "missing field \"km\"",
        );
        err(
            w(json!({"latitude": 91, "longitude": 1, "km": 1})),
            "/attribute/value/latitude",
            "latitude must be a number from -90 to 90, found the number 91",
        );
        err(
            w(json!({"latitude": 1, "longitude": "1", "km": 1})),
            "/attribute/value/longitude",
            "found the string \"1\"",
        );
        err(
            w(json!({"latitude": 1, "longitude": 1, "km": 0})),
            "/attribute/value/km",
            "km must be a number from 0 (exclusive) to 20037.5",
        );
        err(
            w(json!({"latitude": 1, "longitude": 1, "km": 1, "miles": 1})),
            "/attribute/value",
            "unknown key \"miles\"",
        );
    }

    #[test]
    fn regex_errors_are_one_line() {
        let e = parse(&attr("matches_regex", json!("a(b")), &known).unwrap_err();
        assert!(!e.message.contains('\n'), "{e}");
        assert!(e.message.contains("unclosed group"), "{e}");
    }

    #[test]
    fn event_errors_point_at_the_field() {
        let ev = |body: Value| json!({ "event": body });
        err(
            ev(json!({"name": "e", "op": "most"})),
            "/event/op",
            "unknown event op \"most\"",
        );
        err(
            ev(json!({"name": "e", "op": "exactly"})),
            "/event",
            "missing field \"count\"",
        );
        for bad in [json!(-1), json!(1.5), json!("3"), json!(null)] {
            err(
                ev(json!({"name": "e", "op": "more_than", "count": bad})),
                "/event/count",
                "non-negative integer count",
            );
        }
        err(
            ev(json!({"name": "e", "op": "last_performed_after", "time": "yesterday"})),
            "/event/time",
            "ISO-8601 time",
        );
        err(
            ev(json!({"name": "e", "op": "last_performed_after", "time": 17})),
            "/event/time",
            "found the number 17",
        );
        err(
            ev(json!({"name": "e", "op": "exactly", "count": 1, "time": "2024-01-01"})),
            "/event/time",
            "exactly takes \"count\", not \"time\"",
        );
        err(
            ev(json!({"name": "e", "op": "last_performed_before", "count": 1})),
            "/event/count",
            "takes \"time\", not \"count\"",
        );
        err(
            ev(json!({"name": "", "op": "exactly", "count": 1})),
            "/event/name",
            "non-empty",
        );
        err(
            ev(json!({"name": "e", "op": "exactly", "count": 1, "x": 1})),
            "/event",
            "unknown key \"x\"",
        );
    }

    #[test]
    fn nesting_is_limited_to_max_depth() {
        let nest = |levels: usize| {
            // `levels` nodes deep: (levels - 1) nots around a leaf.
            (1..levels).fold(json!({"all": true}), |f, _| json!({ "not": f }))
        };
        assert!(parse(&nest(MAX_DEPTH), &known).is_ok());
        let e = parse(&nest(MAX_DEPTH + 1), &known).unwrap_err();
        assert!(e.message.contains("deeper than 32 levels"), "{e}");
        assert_eq!(e.path.matches("/not").count(), MAX_DEPTH);
    }

    const LIMITS: FilterLimits = FilterLimits {
        leaves: 4,
        regex_leaves: 2,
        regex_bytes: 1 << 20,
    };

    fn limited(v: Value, limits: &FilterLimits) -> std::result::Result<Filter, ParseError> {
        parse_limited(&v, &known, limits)
    }

    fn or_of(n: usize, leaf: impl Fn(usize) -> Value) -> Value {
        json!({ "or": (0..n).map(leaf).collect::<Vec<_>>() })
    }

    #[test]
    fn leaves_are_counted_through_every_kind_of_node() {
        let four = json!({"and": [c1(), {"not": {"all": true}},
            {"or": [attr("equals", json!(1)), {"event": {"name": "e", "op": "exactly", "count": 1}}]}]});
        assert!(limited(four.clone(), &LIMITS).is_ok());
        let five = json!({"or": [four, c1()]});
        let Err(ParseError::Limit(e)) = limited(five, &LIMITS) else {
            panic!("five leaves pass a limit of four")
        };
        assert_eq!((e.limit, e.got, e.max), (Limit::FilterLeaves, 5, 4));
        assert!(e.to_string().contains("limits.filter_leaves"), "{e}");
    }

    #[test]
    fn regex_leaves_are_limited_before_anything_compiles() {
        let regex = |i: usize| attr("matches_regex", json!(format!("^a{i}")));
        assert!(limited(or_of(2, regex), &LIMITS).is_ok());
        // The third pattern does not even compile: the count refuses first.
        let three = json!({"or": [regex(0), regex(1), attr("does_not_match_regex", json!("("))]});
        let Err(ParseError::Limit(e)) = limited(three, &LIMITS) else {
            panic!("three regexes pass a limit of two")
        };
        assert_eq!((e.limit, e.got), (Limit::FilterRegexLeaves, 3));
    }

    #[test]
    fn compiled_regex_sizes_add_up_to_the_limit() {
        let one = Pattern::new("^a0").unwrap().compiled_bytes();
        let regex = |i: usize| attr("matches_regex", json!(format!("^a{i}")));
        let fits = FilterLimits {
            regex_bytes: 2 * one,
            ..LIMITS
        };
        assert!(limited(or_of(2, regex), &fits).is_ok());
        let tight = FilterLimits {
            regex_bytes: 2 * one - 1,
            ..LIMITS
        };
        let Err(ParseError::Limit(e)) = limited(or_of(2, regex), &tight) else {
            panic!("two patterns fit one byte short of their size")
        };
        assert_eq!(
            (e.limit, e.got, e.at_least),
            (Limit::FilterRegexBytes, 2 * one, true)
        );
    }

    #[test]
    fn an_invalid_filter_within_the_limits_is_invalid() {
        assert!(matches!(
            limited(json!({"nand": []}), &LIMITS),
            Err(ParseError::Invalid(e)) if e.message.contains("unknown filter key")
        ));
    }

    #[test]
    fn errors_display_message_then_path() {
        let e = parse(&json!({"and": [c1(), {"all": false}]}), &known).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected true (everyone; write {\"not\": {\"all\": true}} for no one), \
             found the boolean false at /and/1/all"
        );
    }
}
