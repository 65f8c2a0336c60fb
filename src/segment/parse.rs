//! JSON → [`Filter`] (validating everything, so evaluation never fails) and
//! back ([`Filter::to_json`]).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Number, Value};

use super::{AttrCond, Bound, EventCond, Filter, Instant, Pattern, Scalar};
use crate::model::CohortKey;
use crate::time::parse_iso8601;

/// How deep filters may nest; the root node is level 1. Far beyond what a
/// person builds, and it bounds the recursion of parsing and evaluation.
pub const MAX_DEPTH: usize = 32;

const NODE_KEYS: &str = "and, or, not, all, cohort, attribute, event";
const ATTRIBUTE_OPS: &str = "equals, not_equals, matches_regex, does_not_match_regex, exists, \
     does_not_exist, greater_than, less_than, includes_value";
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
    Parser { cohort_exists }.node(value, "/", 1)
}

struct Parser<'a> {
    cohort_exists: &'a dyn Fn(&CohortKey) -> bool,
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
            "attribute" => attribute(body, &here),
            "event" => event(body, &here),
            other => fail(
                path,
                format!("unknown filter key {other:?}; expected one of {NODE_KEYS}"),
            ),
        }
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
        other => {
            return fail(
                &child(path, "op"),
                format!("unknown attribute op {other:?}; expected one of {ATTRIBUTE_OPS}"),
            )
        }
    };
    Ok(Filter::Attribute { name, cond })
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
