//! Property test: `segment::{evaluate, evaluate_among, count, contains, contains_many}`
//! against a naive model — a `Vec` of plain profiles, a `BTreeSet` per cohort,
//! and the filter JSON interpreted directly by the rules of SPEC §4, one
//! profile at a time.
//!
//! Generated profiles draw their attributes from a few shared names with a
//! random type each (so every op meets missing attributes and attributes of
//! another type), and their events from a few times (so strict comparisons
//! meet equal times). Cohorts hold deleted profiles. Generated filters nest up
//! to 4 levels and every leaf form and op is one arm of the leaf strategy.
//!
//! Values nest: objects and arrays of objects (two levels deep) and
//! locations, under names that include a dotted one (`a.b`), and filters
//! ask dotted paths. The model finds the values at a path by walking the
//! nested values with string concatenation, independently of
//! `profiles::paths`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cohortd::model::{CohortKey, Uid};
use cohortd::profiles::{AttrObject, AttrUpdate, AttrValue, ProfileStore};
use cohortd::segment::{self, Filter};
use cohortd::time::parse_iso8601;
use proptest::prelude::*;
use proptest::sample::select;
use roaring::RoaringBitmap;
use serde_json::{json, Value};

/// Top-level attribute names (one with a dot: the same column as `a`'s
/// member `b`).
const ATTR_NAMES: [&str; 5] = ["a", "b", "c", "d", "a.b"];
/// Keys of nested objects.
const KEYS: [&str; 2] = ["b", "c"];
/// The paths filters ask.
const PATHS: [&str; 10] = [
    "a", "b", "c", "d", "a.b", "a.c", "b.b", "a.b.c", "a.b.b", "c.c.b",
];
/// Lisbon, Sintra (~23 km from Lisbon), Porto (~274 km from both).
const POINTS: [(f64, f64); 3] = [(38.72, -9.14), (38.80, -9.38), (41.16, -8.63)];
const KMS: [f64; 4] = [1.0, 30.0, 300.0, 3000.0];
const STRINGS: [&str; 6] = ["x", "X", "xy", "gold", "Gold", "2024-01-01"];
const NUMBERS: [f64; 5] = [-1.0, 0.0, 1.0, 2.5, 3.0];
const TIMES: [&str; 5] = [
    "2024-01-01T00:00:00Z",
    "2024-01-01",
    "2024-06-01T12:00:00+02:00",
    "2024-06-01T10:00:00Z",
    "2023-12-31T23:59:59.999Z",
];
const PATTERNS: [&str; 9] = ["x", "^x$", "GOLD", "^g", "y$", "2024", "01-01", "^$", ""];
const EVENTS: [&str; 2] = ["e1", "e2"];
const COHORTS: [&str; 3] = ["c1", "c2", "c3"];

#[derive(Clone, Debug)]
enum MVal {
    Str(String),
    Num(f64),
    Bool(bool),
    Time(String),
    Arr(Vec<String>),
    Obj(BTreeMap<String, MVal>),
    Objs(Vec<BTreeMap<String, MVal>>),
    Loc(f64, f64),
}

#[derive(Clone, Debug)]
struct MProfile {
    /// Set first, then overwritten by `attrs` or removed: the column
    /// index must follow every change, not only the first set.
    earlier: BTreeMap<String, MVal>,
    attrs: BTreeMap<String, MVal>,
    /// Every time the event was done.
    events: BTreeMap<String, Vec<i64>>,
    deleted: bool,
}

#[derive(Clone, Debug)]
struct Model {
    profiles: Vec<MProfile>,
    cohorts: BTreeMap<String, BTreeSet<Uid>>,
}

fn mval() -> impl Strategy<Value = MVal> {
    let obj = |inner: BoxedStrategy<MVal>| {
        proptest::collection::btree_map(select(&KEYS[..]), inner, 0..=2)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    prop_oneof![
        4 => scalar_mval(),
        1 => select(&POINTS[..]).prop_map(|(lat, lon)| MVal::Loc(lat, lon)),
    ]
    .prop_recursive(2, 12, 3, move |inner| {
        prop_oneof![
            obj(inner.clone().boxed()).prop_map(MVal::Obj),
            proptest::collection::vec(obj(inner.boxed()), 0..=2).prop_map(MVal::Objs),
        ]
    })
}

fn scalar_mval() -> impl Strategy<Value = MVal> {
    prop_oneof![
        select(&STRINGS[..]).prop_map(|s| MVal::Str(s.into())),
        select(&NUMBERS[..]).prop_map(MVal::Num),
        any::<bool>().prop_map(MVal::Bool),
        select(&TIMES[..]).prop_map(|s| MVal::Time(s.into())),
        proptest::sample::subsequence(&STRINGS[..4], 0..=3)
            .prop_map(|v| MVal::Arr(v.into_iter().map(String::from).collect())),
    ]
}

fn mprofile() -> impl Strategy<Value = MProfile> {
    (
        proptest::collection::btree_map(select(&ATTR_NAMES[..]), mval(), 0..=3),
        proptest::collection::btree_map(select(&ATTR_NAMES[..]), mval(), 0..=4),
        proptest::collection::btree_map(
            select(&EVENTS[..]),
            proptest::collection::vec(select(&TIMES[..]), 1..=3),
            0..=2,
        ),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(earlier, attrs, events, deleted)| MProfile {
            earlier: earlier.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            attrs: attrs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            events: events
                .into_iter()
                .map(|(k, ts)| {
                    let ts = ts.iter().map(|t| parse_iso8601(t).unwrap()).collect();
                    (k.into(), ts)
                })
                .collect(),
            deleted,
        })
}

/// Profiles with nothing, appended to half the models: enough that
/// evaluation reads leaves from the column index (`segment::SCAN_BELOW`)
/// rather than looking at each candidate, so both ways meet the model.
const PADDING: usize = segment::SCAN_BELOW as usize + 50;

fn model() -> impl Strategy<Value = Model> {
    (proptest::collection::vec(mprofile(), 0..40), any::<bool>()).prop_flat_map(
        |(mut profiles, pad)| {
            let n = profiles.len() as Uid;
            if pad {
                let empty = MProfile {
                    earlier: BTreeMap::new(),
                    attrs: BTreeMap::new(),
                    events: BTreeMap::new(),
                    deleted: false,
                };
                profiles.extend(std::iter::repeat_n(empty, PADDING));
            }
            let set = proptest::collection::btree_set(0..n.max(1), 0..=n as usize);
            (Just(profiles), set.clone(), set.clone(), set).prop_map(
                move |(profiles, c1, c2, c3)| {
                    let keep = |s: BTreeSet<Uid>| s.into_iter().filter(|&u| u < n).collect();
                    Model {
                        profiles,
                        cohorts: [("c1", keep(c1)), ("c2", keep(c2)), ("c3", keep(c3))]
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    }
                },
            )
        },
    )
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(&STRINGS[..]).prop_map(|s| json!(s)),
        select(&NUMBERS[..]).prop_map(|n| json!(n)),
        Just(json!(3)),
        any::<bool>().prop_map(|b| json!(b)),
        select(&TIMES[..]).prop_map(|s| json!(s)),
    ]
}

fn attr(op: &'static str, value: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    (select(&PATHS[..]), value)
        .prop_map(move |(name, v)| json!({"attribute": {"name": name, "op": op, "value": v}}))
}

fn leaf() -> impl Strategy<Value = Value> {
    let bound = || {
        prop_oneof![
            select(&NUMBERS[..]).prop_map(|n| json!(n)),
            select(&TIMES[..]).prop_map(|s| json!(s)),
        ]
    };
    let pattern = || select(&PATTERNS[..]).prop_map(|s| json!(s));
    let presence = |op: &'static str| {
        select(&PATHS[..]).prop_map(move |n| json!({"attribute": {"name": n, "op": op}}))
    };
    let count_op = select(&["more_than", "less_than", "exactly"][..]);
    let time_op = select(&["last_performed_after", "last_performed_before"][..]);
    prop_oneof![
        Just(json!({"all": true})),
        select(&COHORTS[..])
            .prop_map(|c| json!({"cohort": {"partner": "hightouch", "cohort_id": c}})),
        attr("equals", scalar()),
        attr("not_equals", scalar()),
        attr("matches_regex", pattern()),
        attr("does_not_match_regex", pattern()),
        presence("exists"),
        presence("does_not_exist"),
        attr("greater_than", bound()),
        attr("less_than", bound()),
        attr(
            "includes_value",
            select(&STRINGS[..]).prop_map(|s| json!(s))
        ),
        attr(
            "within_km",
            (select(&POINTS[..]), select(&KMS[..]))
                .prop_map(|((lat, lon), km)| json!({"latitude": lat, "longitude": lon, "km": km}))
        ),
        (select(&EVENTS[..]), count_op, 0u64..4)
            .prop_map(|(e, op, n)| json!({"event": {"name": e, "op": op, "count": n}})),
        (select(&EVENTS[..]), time_op, select(&TIMES[..]))
            .prop_map(|(e, op, t)| json!({"event": {"name": e, "op": op, "time": t}})),
    ]
}

/// Up to 4 levels: `and`/`or` of 1–3 children, `not`.
fn filter() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..=3).prop_map(|v| json!({ "and": v })),
            proptest::collection::vec(inner.clone(), 1..=3).prop_map(|v| json!({ "or": v })),
            inner.prop_map(|f| json!({ "not": f })),
        ]
    })
}

// ---- the naive model: the filter JSON interpreted directly ----

fn time(s: &str) -> i64 {
    parse_iso8601(s).unwrap()
}

fn model_equals(v: &Value, a: &MVal) -> bool {
    match (v, a) {
        (Value::String(s), MVal::Str(t)) | (Value::String(s), MVal::Time(t)) => s == t,
        (Value::Number(n), MVal::Num(x)) => n.as_f64() == Some(*x),
        (Value::Bool(b), MVal::Bool(c)) => b == c,
        _ => false,
    }
}

fn model_regex(pattern: &Value, a: Option<&MVal>) -> bool {
    let re = regex::Regex::new(&format!("(?i){}", pattern.as_str().unwrap())).unwrap();
    match a {
        Some(MVal::Str(s)) | Some(MVal::Time(s)) => re.is_match(s),
        _ => false,
    }
}

/// `Some(attribute value − bound)` sign when comparable.
fn model_cmp(v: &Value, a: &MVal) -> Option<std::cmp::Ordering> {
    match (v, a) {
        (Value::Number(n), MVal::Num(x)) => x.partial_cmp(&n.as_f64().unwrap()),
        (Value::String(s), MVal::Time(t)) => Some(time(t).cmp(&time(s))),
        _ => None,
    }
}

/// Every value at `path`: a naive walk of every (path, value) pair.
fn model_values<'a>(attrs: &'a BTreeMap<String, MVal>, path: &str) -> Vec<&'a MVal> {
    fn walk<'a>(map: &'a BTreeMap<String, MVal>, prefix: &str, out: &mut Vec<(String, &'a MVal)>) {
        for (k, v) in map {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.push((p.clone(), v));
            match v {
                MVal::Obj(m) => walk(m, &p, out),
                MVal::Objs(list) => list.iter().for_each(|m| walk(m, &p, out)),
                _ => {}
            }
        }
    }
    let mut all = Vec::new();
    walk(attrs, "", &mut all);
    all.into_iter()
        .filter(|(p, _)| p == path)
        .map(|(_, v)| v)
        .collect()
}

fn model_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (a, b) = (lat1.to_radians(), lat2.to_radians());
    let h = ((b - a) / 2.0).sin().powi(2)
        + a.cos() * b.cos() * ((lon2 - lon1).to_radians() / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().asin()
}

fn holds(f: &Value, uid: Uid, m: &Model) -> bool {
    let (key, body) = f.as_object().unwrap().iter().next().unwrap();
    let p = &m.profiles[uid as usize];
    match key.as_str() {
        "and" => body.as_array().unwrap().iter().all(|g| holds(g, uid, m)),
        "or" => body.as_array().unwrap().iter().any(|g| holds(g, uid, m)),
        "not" => !holds(body, uid, m),
        "all" => true,
        "cohort" => m.cohorts[body["cohort_id"].as_str().unwrap()].contains(&uid),
        "attribute" => {
            let values = model_values(&p.attrs, body["name"].as_str().unwrap());
            let v = &body["value"];
            let any = |pred: &dyn Fn(&MVal) -> bool| values.iter().any(|a| pred(a));
            match body["op"].as_str().unwrap() {
                "equals" => any(&|a| model_equals(v, a)),
                "not_equals" => !any(&|a| model_equals(v, a)),
                "matches_regex" => any(&|a| model_regex(v, Some(a))),
                "does_not_match_regex" => !any(&|a| model_regex(v, Some(a))),
                "exists" => !values.is_empty(),
                "does_not_exist" => values.is_empty(),
                "greater_than" => any(&|a| model_cmp(v, a) == Some(std::cmp::Ordering::Greater)),
                "less_than" => any(&|a| model_cmp(v, a) == Some(std::cmp::Ordering::Less)),
                "includes_value" => {
                    any(&|a| matches!(a, MVal::Arr(items) if items.iter().any(|i| v == i.as_str())))
                }
                "within_km" => any(&|a| match a {
                    MVal::Loc(lat, lon) => {
                        let f = |k: &str| v[k].as_f64().unwrap();
                        model_km(f("latitude"), f("longitude"), *lat, *lon) <= f("km")
                    }
                    _ => false,
                }),
                op => panic!("model lacks {op}"),
            }
        }
        "event" => {
            let done = p.events.get(body["name"].as_str().unwrap());
            let count = done.map_or(0, |ts| ts.len() as u64);
            let last = done.and_then(|ts| ts.iter().max().copied());
            match body["op"].as_str().unwrap() {
                "more_than" => count > body["count"].as_u64().unwrap(),
                "less_than" => count < body["count"].as_u64().unwrap(),
                "exactly" => count == body["count"].as_u64().unwrap(),
                "last_performed_after" => {
                    last.is_some_and(|l| l > time(body["time"].as_str().unwrap()))
                }
                "last_performed_before" => {
                    last.is_some_and(|l| l < time(body["time"].as_str().unwrap()))
                }
                op => panic!("model lacks {op}"),
            }
        }
        k => panic!("model lacks {k}"),
    }
}

fn model_members(f: &Value, m: &Model) -> Vec<Uid> {
    (0..m.profiles.len() as Uid)
        .filter(|&u| !m.profiles[u as usize].deleted && holds(f, u, m))
        .collect()
}

// ---- the real thing, built from the model ----

fn value(v: &MVal) -> AttrValue {
    let obj = |m: &BTreeMap<String, MVal>| -> AttrObject {
        m.iter()
            .map(|(k, v)| (k.as_str().into(), value(v)))
            .collect()
    };
    match v {
        MVal::Str(x) => AttrValue::Str(x.as_str().into()),
        MVal::Num(n) => AttrValue::Num(*n),
        MVal::Bool(b) => AttrValue::Bool(*b),
        MVal::Time(t) => {
            let v = AttrValue::from_text(t);
            assert!(matches!(v, AttrValue::Time { .. }), "{t} is a time");
            v
        }
        MVal::Arr(items) => AttrValue::Array(items.iter().map(|i| i.into()).collect()),
        MVal::Obj(m) => AttrValue::Object(obj(m)),
        MVal::Objs(list) => AttrValue::Objects(list.iter().map(obj).collect()),
        MVal::Loc(latitude, longitude) => AttrValue::Location {
            latitude: *latitude,
            longitude: *longitude,
        },
    }
}

fn build(m: &Model) -> (ProfileStore, BTreeMap<CohortKey, Arc<RoaringBitmap>>) {
    let mut s = ProfileStore::new();
    for (i, p) in m.profiles.iter().enumerate() {
        let uid = s.upsert_external(&format!("u{i}"), true).unwrap();
        assert_eq!(uid as usize, i);
        for (name, v) in &p.earlier {
            s.update_attribute(uid, name, AttrUpdate::Set(value(v)));
        }
        for name in p.earlier.keys().filter(|k| !p.attrs.contains_key(*k)) {
            s.update_attribute(uid, name, AttrUpdate::Remove);
        }
        for (name, v) in &p.attrs {
            s.update_attribute(uid, name, AttrUpdate::Set(value(v)));
        }
        for (name, ts) in &p.events {
            for &t in ts {
                s.record_event(uid, name, t);
            }
        }
    }
    for (i, p) in m.profiles.iter().enumerate() {
        if p.deleted {
            s.delete(i as Uid);
        }
    }
    let cohorts = m
        .cohorts
        .iter()
        .map(|(id, set)| {
            (
                CohortKey::new("hightouch", id),
                Arc::new(set.iter().copied().collect::<RoaringBitmap>()),
            )
        })
        .collect();
    (s, cohorts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn segment_matches_the_naive_model(m in model(), f in filter()) {
        let (store, cohorts) = build(&m);
        let parsed: Filter = segment::parse(&f, &|k| cohorts.contains_key(k))
            .map_err(|e| TestCaseError::fail(format!("{f}: {e}")))?;

        let expected = model_members(&f, &m);
        let got: Vec<Uid> = segment::evaluate(&parsed, &store, &cohorts).iter().collect();
        prop_assert_eq!(&got, &expected, "evaluate {}", f);
        prop_assert_eq!(
            segment::count(&parsed, &store, &cohorts),
            expected.len() as u64,
            "count {}", f
        );
        let uids: Vec<Uid> = (0..=m.profiles.len() as Uid).collect();
        let want: Vec<bool> = uids.iter().map(|u| expected.contains(u)).collect();
        let each: Vec<bool> = uids
            .iter()
            .map(|&u| segment::contains(&parsed, &store, &cohorts, u))
            .collect();
        prop_assert_eq!(&each, &want, "contains {}", f);
        prop_assert_eq!(
            segment::contains_many(&parsed, &store, &cohorts, &uids),
            want,
            "contains_many {}", f
        );
        // Among a part of the profiles (every other one, and one past the
        // last): the members of that part.
        let among: roaring::RoaringBitmap = uids.iter().copied().step_by(2).collect();
        let got: Vec<Uid> = segment::evaluate_among(&parsed, &store, &cohorts, &among)
            .iter()
            .collect();
        let part: Vec<Uid> = expected.iter().copied().filter(|u| among.contains(*u)).collect();
        prop_assert_eq!(&got, &part, "evaluate_among {}", f);

        // The canonical JSON parses back to the same filter (how a saved
        // filter is persisted is `persist::schema`'s, tested there).
        let again = segment::parse(&parsed.to_json(), &|k| cohorts.contains_key(k)).unwrap();
        prop_assert_eq!(&again, &parsed);
    }
}
