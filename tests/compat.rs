//! Old data dirs keep loading and answering the same.
//!
//! Every directory under `tests/fixtures/` that holds an `answers.json` and a
//! `data/` is a data dir written by an older cohortd, with the answers that
//! build gave for it (`tests/fixtures/README.md`). For each, the real binary
//! starts on a copy of `data/` and must:
//!
//! 1. give every recorded read again: the same status, and an answer that
//!    contains the recorded one (objects may gain fields, never lose or
//!    change one; arrays keep their length and order);
//! 2. take writes with the old keys: a partner delta with a data import key
//!    issued by the old build, a `/users/track` with an old REST key; every
//!    live import key is still accepted and every revoked one still refused;
//! 3. keep all of it across a `kill -9` and across a graceful stop: the
//!    recorded reads again (the few the writes changed, with the change
//!    spelled out), and the writes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::process::{Daemon, Home};
use serde::Deserialize;
use serde_json::{json, Value};

// ---- fixtures ----

/// `answers.json`, as `tests/fixtures/make_fixture.py` writes it (only the
/// fields this test uses).
#[derive(Deserialize)]
struct Answers {
    admin_token: String,
    /// Partner name → partner API key.
    partner_keys: BTreeMap<String, String>,
    /// Workspace label (`w1`) → its keys.
    workspaces: BTreeMap<String, WorkspaceKeys>,
    /// `"<ws>/<partner>"` → the live data import keys, oldest first.
    import_keys: BTreeMap<String, Vec<ImportKey>>,
    revoked_keys: Vec<RevokedKey>,
    reads: Vec<Read>,
}

#[derive(Deserialize)]
struct WorkspaceKeys {
    rest_key: String,
}

#[derive(Deserialize)]
struct ImportKey {
    client_secret: String,
}

#[derive(Deserialize)]
struct RevokedKey {
    ws: String,
    partner: String,
    client_secret: String,
}

/// One recorded request and the answer the old build gave.
#[derive(Deserialize)]
struct Read {
    /// A workspace label (its REST key is the bearer token) or `admin`.
    ws: String,
    method: String,
    path: String,
    body: Option<Value>,
    status: u16,
    answer: Value,
}

impl Read {
    fn describe(&self) -> String {
        let body = match &self.body {
            Some(b) => format!(" {}", short(b)),
            None => String::new(),
        };
        format!("{} {}{body} as {}", self.method, self.path, self.ws)
    }
}

struct Fixture {
    /// The path under `tests/fixtures/`, e.g. `v1-b09aa9e/rich`.
    name: String,
    dir: PathBuf,
    answers: Answers,
}

impl Fixture {
    fn token(&self, ws: &str) -> &str {
        if ws == "admin" {
            &self.answers.admin_token
        } else {
            &self.answers.workspaces[ws].rest_key
        }
    }

    /// The recorded answer to `GET /cohorts` for `ws`: its cohorts.
    fn cohorts(&self, ws: &str) -> Vec<Value> {
        let read = self
            .answers
            .reads
            .iter()
            .find(|r| r.ws == ws && r.method == "GET" && r.path == "/cohorts" && r.status == 200)
            .unwrap_or_else(|| panic!("{}: no recorded GET /cohorts for {ws}", self.name));
        read.answer["cohorts"].as_array().expect("cohorts").clone()
    }
}

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture dir under `root`: a dir with `answers.json` and `data/`.
fn discover(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if dir.join("answers.json").is_file() && dir.join("data").is_dir() {
            out.push(dir.to_path_buf());
            return;
        }
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

fn load(dir: &Path) -> Fixture {
    let name = dir
        .strip_prefix(fixtures_root())
        .expect("under tests/fixtures")
        .display()
        .to_string();
    let text = std::fs::read_to_string(dir.join("answers.json")).expect("read answers.json");
    let answers: Answers = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name}/answers.json does not parse: {e}"));
    assert!(!answers.reads.is_empty(), "{name}: no recorded reads");
    Fixture {
        name,
        dir: dir.to_path_buf(),
        answers,
    }
}

// ---- comparing answers ----

/// Whether `actual` gives everything `expected` does: an object may have
/// more fields but must have each expected one with a contained value; an
/// array must have the same length and contain the expected elements in
/// order; scalars must be equal (numbers by value). `Err` names the JSON
/// path of the first difference.
fn contains(expected: &Value, actual: &Value) -> Result<(), String> {
    contains_at(expected, actual, "$")
}

fn contains_at(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let at = format!("{path}.{key}");
                match a.get(key) {
                    Some(av) => contains_at(ev, av, &at)?,
                    None => return Err(format!("{at}: missing (expected {})", short(ev))),
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path}: expected {} elements, got {}: {}",
                    e.len(),
                    a.len(),
                    short(actual)
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                contains_at(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => Ok(()),
        _ if expected == actual => Ok(()),
        _ => Err(format!(
            "{path}: expected {}, got {}",
            short(expected),
            short(actual)
        )),
    }
}

/// `actual` is `base` plus one new element in the array at JSON pointer
/// `array`, anywhere in it (its place follows ids the test cannot know):
/// exactly one element contains `element`, and without it `actual`
/// contains `base`.
fn gains(base: &Value, actual: &Value, array: &str, element: &Value) -> Result<(), String> {
    let path = format!("${}", array.replace('/', "."));
    let items = actual
        .pointer(array)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path}: not an array in {}", short(actual)))?;
    let hits: Vec<usize> = (0..items.len())
        .filter(|&i| contains(element, &items[i]).is_ok())
        .collect();
    let [hit] = hits[..] else {
        return Err(format!(
            "{path}: expected exactly one new element containing {element}, found {}: {}",
            hits.len(),
            short(&Value::Array(items.clone()))
        ));
    };
    let mut rest = actual.clone();
    rest.pointer_mut(array)
        .and_then(Value::as_array_mut)
        .expect("checked above")
        .remove(hit);
    contains(base, &rest).map_err(|e| format!("{e} (with the new element {element} taken out)"))
}

/// The recorded answer as this server must give it. `rest_endpoint` is "the
/// scheme and host the caller used to reach cohortd" (docs/decisions.md):
/// the recording server's ephemeral address becomes `origin`.
fn expected_answer(recorded: &Value, origin: &str) -> Value {
    match recorded {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(_) if k == "rest_endpoint" => Value::from(origin),
                        _ => expected_answer(v, origin),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| expected_answer(v, origin)).collect()),
        other => other.clone(),
    }
}

/// A value for a message, cut to a readable length.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

// ---- the writes with old keys, and which recorded reads they change ----

/// The partner delta sent with an old data import key: `user`, an existing
/// profile, joins `cohort`, an existing cohort of `partner` in `ws` that
/// has `size` members in the recording.
#[derive(Clone, Debug)]
struct DeltaPlan {
    ws: String,
    partner: String,
    cohort: String,
    name: String,
    size: u64,
    user: String,
    secret: String,
}

impl DeltaPlan {
    fn cohort_path(&self) -> String {
        format!("/cohorts/{}/{}", self.partner, self.cohort)
    }
}

/// The writes done, as the server recorded them.
struct Writes {
    delta: DeltaPlan,
    /// The delta's time as the server stamped it (its import entry's `at`).
    at: String,
}

/// A page's size without `limit` (docs/decisions.md, "Queries").
const DEFAULT_LIMIT: usize = 100;

/// What a replayed read must answer.
enum Expect {
    /// An answer that contains this.
    Contains(Value),
    /// `base` plus one element containing `element` in the array `array`.
    Gains {
        base: Value,
        array: &'static str,
        element: Value,
    },
}

/// What `read` must answer after `w`, given what it answered before
/// (`expected`). `Err` for a read the delta changes in a way this test does
/// not work out (the plan avoids such cohorts).
fn after_writes(read: &Read, expected: Value, w: &Writes) -> Result<Expect, String> {
    let d = &w.delta;
    if read.ws != d.ws || read.status != 200 {
        return Ok(Expect::Contains(expected));
    }
    let grown = |c: &mut Value| {
        c["size"] = json!(d.size + 1);
        c["updated_at"] = json!(w.at);
    };
    let cohort_path = d.cohort_path();
    let (base, query) = read.path.split_once('?').unwrap_or((&read.path, ""));
    let limit = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .map(|l| l.parse::<usize>().expect("limit"));
    let unhandled = || Err(format!("the delta changes {}", read.describe()));
    match (read.method.as_str(), base) {
        ("GET", "/cohorts") => {
            let mut e = expected;
            let list = e["cohorts"].as_array_mut().expect("cohorts");
            let entry = list
                .iter_mut()
                .find(|c| c["partner"] == d.partner.as_str() && c["cohort_id"] == d.cohort.as_str())
                .expect("the cohort is listed");
            grown(entry);
            Ok(Expect::Contains(e))
        }
        ("GET", p) if p == cohort_path && query.is_empty() => {
            let mut e = expected;
            grown(&mut e);
            Ok(Expect::Contains(e))
        }
        ("GET", p) if p == format!("{cohort_path}/members") => {
            let whole = !query.contains("cursor=")
                && expected["next_cursor"].is_null()
                && limit.unwrap_or(DEFAULT_LIMIT) > d.size as usize;
            if !whole {
                return unhandled();
            }
            Ok(Expect::Gains {
                base: expected,
                array: "/members",
                element: json!({ "external_id": d.user }),
            })
        }
        ("GET", p) if p == format!("{cohort_path}/imports") => {
            let mut e = expected;
            let list = e["imports"].as_array_mut().expect("imports");
            list.insert(
                0,
                json!({ "added": 1, "removed": 0, "unmatched": 0, "size": d.size + 1, "at": w.at }),
            );
            // The shipped import history keeps 100 entries, as many as a
            // page without `limit` shows.
            list.truncate(limit.unwrap_or(DEFAULT_LIMIT).min(DEFAULT_LIMIT));
            Ok(Expect::Contains(e))
        }
        (_, p) if p.starts_with(&format!("{cohort_path}/")) || p == cohort_path => unhandled(),
        ("POST", "/users/memberships") if read.body == Some(json!({ "external_id": d.user })) => {
            Ok(Expect::Gains {
                base: expected,
                array: "/cohorts",
                element: json!({ "partner": d.partner, "cohort_id": d.cohort, "name": d.name }),
            })
        }
        _ => Ok(Expect::Contains(expected)),
    }
}

/// Whether `v` holds a segment filter node naming the cohort.
fn mentions_cohort(v: &Value, partner: &str, cohort: &str) -> bool {
    match v {
        Value::Object(m) => {
            let here = m
                .get("cohort")
                .is_some_and(|c| c["partner"] == partner && c["cohort_id"] == cohort);
            here || m.values().any(|v| mentions_cohort(v, partner, cohort))
        }
        Value::Array(a) => a.iter().any(|v| mentions_cohort(v, partner, cohort)),
        _ => false,
    }
}

/// Picks the delta: the first (workspace, partner) with a live import key
/// that has a cohort no saved segment or preview names (so that the
/// segments' recorded answers stay as they are) and whose changed reads
/// this test works out; the user is an existing profile (one with a
/// recorded `/users/memberships` answer, preferably in some cohort) that is
/// not in that cohort. The oldest live key of that partner sends it.
fn plan_delta(fx: &Fixture) -> DeltaPlan {
    let reads = &fx.answers.reads;
    for (ws_partner, keys) in &fx.answers.import_keys {
        let (ws, partner) = ws_partner.split_once('/').expect("<ws>/<partner>");
        let Some(key) = keys.first() else { continue };
        for c in fx.cohorts(ws) {
            if c["partner"] != partner {
                continue;
            }
            let cohort = c["cohort_id"].as_str().expect("cohort_id");
            let ws_reads = || reads.iter().filter(|r| r.ws == ws);
            if ws_reads().any(|r| {
                mentions_cohort(&r.answer, partner, cohort)
                    || r.body
                        .as_ref()
                        .is_some_and(|b| mentions_cohort(b, partner, cohort))
            }) {
                continue;
            }
            let mut users: Vec<(&str, bool)> = ws_reads()
                .filter(|r| r.method == "POST" && r.path == "/users/memberships" && r.status == 200)
                .filter(|r| !mentions_membership(&r.answer, partner, cohort))
                .filter_map(|r| {
                    let body = r.body.as_ref()?.as_object()?;
                    if body.len() != 1 {
                        return None;
                    }
                    let id = body.get("external_id")?.as_str()?;
                    let in_none = r.answer["cohorts"].as_array().is_none_or(Vec::is_empty);
                    Some((id, in_none))
                })
                .collect();
            users.sort_by_key(|&(_, in_none)| in_none);
            let Some(&(user, _)) = users.first() else {
                continue;
            };
            let plan = DeltaPlan {
                ws: ws.to_string(),
                partner: partner.to_string(),
                cohort: cohort.to_string(),
                name: c["name"].as_str().expect("name").to_string(),
                size: c["size"].as_u64().expect("size"),
                user: user.to_string(),
                secret: key.client_secret.clone(),
            };
            let dry = Writes {
                delta: plan.clone(),
                at: String::new(),
            };
            if reads
                .iter()
                .all(|r| after_writes(r, r.answer.clone(), &dry).is_ok())
            {
                return plan;
            }
        }
    }
    panic!(
        "{}: no cohort to send a delta to with an old key (a live import key whose partner has a \
         cohort that no segment names, and a recorded /users/memberships of a user not in it)",
        fx.name
    )
}

/// Whether a `/users/memberships` answer lists the cohort.
fn mentions_membership(answer: &Value, partner: &str, cohort: &str) -> bool {
    answer["cohorts"].as_array().is_some_and(|a| {
        a.iter()
            .any(|c| c["partner"] == partner && c["cohort_id"] == cohort)
    })
}

// ---- the checks against a running server ----

fn start(home: &Home, fx: &Fixture, phase: &str) -> Daemon {
    home.try_start().unwrap_or_else(|e| {
        panic!(
            "fixture {}, {phase}: cohortd did not start ({}):\n{}",
            fx.name, e.status, e.output
        )
    })
}

/// Replays every recorded read and compares (the ones `writes` changed
/// against the changed expectation).
fn replay(d: &Daemon, fx: &Fixture, phase: &str, writes: Option<&Writes>) {
    for (i, read) in fx.answers.reads.iter().enumerate() {
        let context = || {
            format!(
                "fixture {}, {phase}, read #{i} {}",
                fx.name,
                read.describe()
            )
        };
        let expected = expected_answer(&read.answer, &d.url);
        let expect = match writes {
            None => Expect::Contains(expected),
            Some(w) => {
                after_writes(read, expected, w).unwrap_or_else(|e| panic!("{}: {e}", context()))
            }
        };
        let r = d.must(
            &read.method,
            &read.path,
            fx.token(&read.ws),
            read.body.clone(),
        );
        // An empty body is recorded as null.
        let actual = match r.body {
            Value::String(s) if s.is_empty() => Value::Null,
            other => other,
        };
        assert_eq!(
            r.status,
            read.status,
            "{}: status differs; answer {}",
            context(),
            short(&actual)
        );
        let result = match &expect {
            Expect::Contains(e) => contains(e, &actual),
            Expect::Gains {
                base,
                array,
                element,
            } => gains(base, &actual, array, element),
        };
        if let Err(e) = result {
            panic!("{}: answer differs at {e}", context());
        }
    }
}

fn partner_post(d: &Daemon, partner: &str, body: &Value) -> common::Resp {
    let path = format!("/partners/{partner}/cohorts/users");
    d.call("POST", &path, None, Some(body))
        .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", d.output()))
}

/// Every live data import key the old build issued is still accepted (an
/// empty delta: a connection test that changes nothing), and every revoked
/// one is still refused with Braze's answer (with a delta that would change
/// something were it accepted).
fn check_keys(d: &Daemon, fx: &Fixture, phase: &str, plan: &DeltaPlan) {
    let a = &fx.answers;
    for (ws_partner, keys) in &a.import_keys {
        let (ws, partner) = ws_partner.split_once('/').expect("<ws>/<partner>");
        // An existing cohort of the partner if there is one (an empty delta
        // creates nothing either way).
        let cohort = fx
            .cohorts(ws)
            .into_iter()
            .find(|c| c["partner"] == partner)
            .map_or(json!("compat-probe"), |c| c["cohort_id"].clone());
        for (i, key) in keys.iter().enumerate() {
            let body = json!({
                "partner_api_key": a.partner_keys[partner],
                "client_secret": key.client_secret,
                "cohort_id": cohort,
                "cohort_changes": [],
            });
            let r = partner_post(d, partner, &body);
            let answer = json!({ "message": "success", "added": 0, "removed": 0, "unmatched": 0 });
            let result = match r.status {
                201 => contains(&answer, &r.body),
                other => Err(format!("status {other}")),
            };
            if let Err(e) = result {
                panic!(
                    "fixture {}, {phase}: live import key #{i} of {ws_partner} answered {} {}: {e}",
                    fx.name, r.status, r.body
                );
            }
        }
    }
    for k in &a.revoked_keys {
        let body = json!({
            "partner_api_key": a.partner_keys[&k.partner],
            "client_secret": k.client_secret,
            "cohort_id": plan.cohort,
            "cohort_changes": [{ "user_ids": [plan.user] }],
        });
        let r = partner_post(d, &k.partner, &body);
        assert_eq!(
            (r.status, &r.body),
            (401, &json!({ "message": "Invalid client secret" })),
            "fixture {}, {phase}: revoked import key of {}/{}",
            fx.name,
            k.ws,
            k.partner
        );
    }
}

/// The attribute and event the `/users/track` write sets.
const PROBE: &str = "compat_probe";

/// A segment preview that finds exactly the profiles the track write
/// touched.
fn probe_filter(fx: &Fixture) -> Value {
    json!({ "filter": { "and": [
        { "attribute": { "name": PROBE, "op": "equals", "value": fx.name } },
        { "event": { "name": PROBE, "op": "exactly", "count": 1 } },
    ] } })
}

/// The writes with old keys: the planned partner delta, and a
/// `/users/track` with the workspace's old REST key.
fn write_with_old_keys(d: &Daemon, fx: &Fixture, plan: DeltaPlan) -> Writes {
    let ctx = format!("fixture {}, writing with old keys ({plan:?})", fx.name);
    let body = json!({
        "partner_api_key": fx.answers.partner_keys[&plan.partner],
        "client_secret": plan.secret,
        "cohort_id": plan.cohort,
        "cohort_changes": [{ "user_ids": [plan.user] }],
    });
    let r = partner_post(d, &plan.partner, &body);
    assert_eq!(r.status, 201, "{ctx}: delta answered {}", r.body);
    let answer = json!({ "message": "success", "added": 1, "removed": 0, "unmatched": 0,
                         "cohort_size": plan.size + 1 });
    if let Err(e) = contains(&answer, &r.body) {
        panic!("{ctx}: delta answer differs at {e}");
    }

    let key = fx.token(&plan.ws);
    let r = d.get(&format!("{}/imports?limit=1", plan.cohort_path()), key);
    assert_eq!(r.status, 200, "{ctx}: imports {}", r.body);
    let at = r.body["imports"][0]["at"]
        .as_str()
        .unwrap_or_else(|| panic!("{ctx}: imports {}", r.body))
        .to_string();

    let track = json!({
        "attributes": [{ "external_id": plan.user, PROBE: fx.name }],
        "events": [{ "external_id": plan.user, "name": PROBE, "time": "2026-01-01T00:00:00Z" }],
    });
    let r = d.post("/users/track", key, track);
    assert_eq!(r.status, 201, "{ctx}: track answered {}", r.body);
    let answer = json!({ "message": "success", "attributes_processed": 1, "events_processed": 1,
                         "purchases_processed": 0, "errors": [] });
    if let Err(e) = contains(&answer, &r.body) {
        panic!("{ctx}: track answer differs at {e}");
    }
    Writes { delta: plan, at }
}

/// The writes are there: the user is in the cohort (walking its member
/// pages), the cohort has one more member, and the tracked attribute and
/// event find exactly that user.
fn check_writes(d: &Daemon, fx: &Fixture, phase: &str, w: &Writes) {
    let plan = &w.delta;
    let ctx = format!("fixture {}, {phase}, the writes ({plan:?})", fx.name);
    let key = fx.token(&plan.ws);
    let mut members = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("{}/members?limit=2&cursor={cursor}", plan.cohort_path());
        let r = d.get(&path, key);
        assert_eq!(r.status, 200, "{ctx}: {path}: {}", r.body);
        members.extend(
            r.body["members"]
                .as_array()
                .expect("members")
                .iter()
                .cloned(),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let user = json!({ "external_id": plan.user });
    assert_eq!(
        members
            .iter()
            .filter(|m| contains(&user, m).is_ok())
            .count(),
        1,
        "{ctx}: members {members:?}"
    );
    assert_eq!(
        members.len() as u64,
        plan.size + 1,
        "{ctx}: members {members:?}"
    );

    let r = d.get(&plan.cohort_path(), key);
    let cohort = json!({ "name": plan.name, "size": plan.size + 1, "updated_at": w.at });
    if let Err(e) = contains(&cohort, &r.body) {
        panic!("{ctx}: cohort answer differs at {e}");
    }

    let r = d.post("/segments/preview", key, probe_filter(fx));
    let found = json!({ "count": 1, "sample": [user] });
    if let Err(e) = contains(&found, &r.body) {
        panic!("{ctx}: the tracked attribute and event: preview differs at {e}");
    }
}

fn check_fixture(fx: &Fixture) {
    let plan = plan_delta(fx);
    eprintln!(
        "fixture {}: {} reads; the delta adds {} to {}/{} of {}",
        fx.name,
        fx.answers.reads.len(),
        plan.user,
        plan.partner,
        plan.cohort,
        plan.ws
    );
    let home = Home::with_data_copy(&fx.dir.join("data"));

    let phase = "first start on the old data dir";
    let d = start(&home, fx, phase);
    replay(&d, fx, phase, None);
    check_keys(&d, fx, phase, &plan);
    let writes = write_with_old_keys(&d, fx, plan);
    let phase = "after the writes with old keys";
    replay(&d, fx, phase, Some(&writes));
    check_writes(&d, fx, phase, &writes);
    d.kill9();

    let phase = "after kill -9 and a restart";
    let d = start(&home, fx, phase);
    replay(&d, fx, phase, Some(&writes));
    check_keys(&d, fx, phase, &writes.delta);
    check_writes(&d, fx, phase, &writes);
    d.stop();

    let phase = "after SIGTERM and a restart";
    let d = start(&home, fx, phase);
    replay(&d, fx, phase, Some(&writes));
    check_keys(&d, fx, phase, &writes.delta);
    check_writes(&d, fx, phase, &writes);
    d.stop();
}

#[test]
fn every_fixture_data_dir_loads_answers_as_recorded_and_takes_writes_with_old_keys() {
    let dirs = discover(&fixtures_root());
    assert!(
        !dirs.is_empty(),
        "no fixtures under {}",
        fixtures_root().display()
    );
    for dir in &dirs {
        let fx = load(dir);
        check_fixture(&fx);
    }
}

// ---- the comparison itself ----

#[test]
fn contains_accepts_the_same_answer_and_added_fields() {
    let recorded = json!({ "a": 1, "b": [{ "x": "y" }, { "x": "z" }], "c": null });
    assert_eq!(contains(&recorded, &recorded), Ok(()));
    let grown = json!({ "a": 1, "b": [{ "x": "y", "new": 1 }, { "x": "z" }], "c": null, "d": 2 });
    assert_eq!(contains(&recorded, &grown), Ok(()));
    assert_eq!(contains(&json!({ "n": 2 }), &json!({ "n": 2.0 })), Ok(()));
}

#[test]
fn contains_names_the_path_of_a_changed_value() {
    let recorded = json!({ "cohorts": [{ "size": 16 }, { "size": 4 }] });
    let actual = json!({ "cohorts": [{ "size": 16 }, { "size": 5 }] });
    let e = contains(&recorded, &actual).unwrap_err();
    assert!(e.starts_with("$.cohorts[1].size: expected 4, got 5"), "{e}");
    let e = contains(&json!({ "v": "1" }), &json!({ "v": 1 })).unwrap_err();
    assert!(e.starts_with("$.v:"), "{e}");
}

#[test]
fn contains_names_the_path_of_a_missing_field() {
    let recorded = json!({ "members": [{ "external_id": "u1" }], "next_cursor": null });
    let e = contains(&recorded, &json!({ "members": [{ "external_id": "u1" }] })).unwrap_err();
    assert!(e.starts_with("$.next_cursor: missing"), "{e}");
    let e = contains(
        &recorded,
        &json!({ "members": [{ "id": "u1" }], "next_cursor": null }),
    )
    .unwrap_err();
    assert!(e.starts_with("$.members[0].external_id: missing"), "{e}");
}

#[test]
fn contains_wants_arrays_of_the_same_length_in_the_same_order() {
    let recorded = json!({ "m": [1, 2, 3] });
    let e = contains(&recorded, &json!({ "m": [1, 2] })).unwrap_err();
    assert!(e.starts_with("$.m: expected 3 elements, got 2"), "{e}");
    let e = contains(&recorded, &json!({ "m": [1, 2, 3, 4] })).unwrap_err();
    assert!(e.starts_with("$.m: expected 3 elements, got 4"), "{e}");
    let e = contains(&recorded, &json!({ "m": [1, 3, 2] })).unwrap_err();
    assert!(e.starts_with("$.m[1]: expected 2, got 3"), "{e}");
    assert!(contains(&json!([]), &json!({})).is_err());
}

#[test]
fn gains_wants_exactly_one_new_element_and_the_rest_unchanged() {
    let base = json!({ "members": [{ "id": "a" }, { "id": "c" }], "next_cursor": null });
    let new = json!({ "id": "b" });
    let ok =
        json!({ "members": [{ "id": "a" }, { "id": "b" }, { "id": "c" }], "next_cursor": null });
    assert_eq!(gains(&base, &ok, "/members", &new), Ok(()));
    let missing = base.clone();
    assert!(gains(&base, &missing, "/members", &new).is_err());
    let twice = json!({ "members": [{ "id": "b" }, { "id": "a" }, { "id": "b" }, { "id": "c" }],
                        "next_cursor": null });
    assert!(gains(&base, &twice, "/members", &new).is_err());
    let lost_one = json!({ "members": [{ "id": "a" }, { "id": "b" }], "next_cursor": null });
    assert!(gains(&base, &lost_one, "/members", &new).is_err());
}

#[test]
fn the_recorded_rest_endpoint_becomes_this_servers_address() {
    let recorded = json!({ "technology_partners": [
        { "partner": "heap", "rest_endpoint": "http://127.0.0.1:38719", "data_import_keys": [] },
    ] });
    let e = expected_answer(&recorded, "http://127.0.0.1:5555");
    assert_eq!(
        e["technology_partners"][0],
        json!({ "partner": "heap", "rest_endpoint": "http://127.0.0.1:5555", "data_import_keys": [] })
    );
}

#[test]
fn fixtures_are_discovered_by_their_answers_and_data() {
    let root = tempfile::tempdir().unwrap();
    for dir in [
        "v1-x/rich/data",
        "v1-x/restore/data",
        "v2-y/rich/data",
        "v2-y/half",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    for f in ["v1-x/rich", "v1-x/restore", "v2-y/rich", "v2-y/half"] {
        std::fs::write(root.path().join(f).join("answers.json"), "{}").unwrap();
    }
    let found: Vec<_> = discover(root.path())
        .iter()
        .map(|p| p.strip_prefix(root.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(found, ["v1-x/restore", "v1-x/rich", "v2-y/rich"]);
}
