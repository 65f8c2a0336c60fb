//! SPEC §4 segments and memberships over HTTP against the real server:
//! segment CRUD, every filter op with real profiles and cohorts, invalid
//! filters, counts, member pages (also while other users churn), batch
//! membership checks, preview, a user's memberships, read-your-writes and
//! deletes.
//!
//! Each filter is checked through every read path at once (`members_of`):
//! the page walk, the count, the preview and a membership check of every
//! profile must all agree.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{delta, Resp, Server, Workspace};
use serde_json::{json, Value};

// ---- helpers ----------------------------------------------------------------

/// A partner with a live data import key in one workspace.
struct Partner<'a> {
    server: &'a Server,
    name: &'static str,
    secret: String,
}

impl<'a> Partner<'a> {
    fn of(ws: &Workspace<'a>, name: &'static str) -> Partner<'a> {
        Partner {
            server: ws.server,
            name,
            secret: ws.import_key(name),
        }
    }

    fn send(&self, cohort: &str, changes: Value) -> Resp {
        let path = format!("/partners/{}/cohorts/users", self.name);
        let body = delta(&self.secret, cohort, changes).to_string();
        self.server.post_raw(&path, body.as_bytes())
    }

    fn change(&self, cohort: &str, change: Value) {
        let r = self.send(cohort, json!([change]));
        assert_eq!(r.status, 201, "{}", r.body);
    }

    fn add(&self, cohort: &str, ids: &[&str]) {
        self.change(cohort, json!({ "user_ids": ids }));
    }

    fn remove(&self, cohort: &str, ids: &[&str]) {
        self.change(cohort, json!({ "user_ids": ids, "should_remove": true }));
    }

    fn name_cohort(&self, cohort: &str, name: &str) {
        let body = json!({
            "partner_api_key": common::PARTNER_KEY, "client_secret": self.secret,
            "cohort_id": cohort, "name": name, "created_at": "2024-01-01T00:00:00Z",
        });
        let path = format!("/partners/{}/cohorts", self.name);
        let r = self.server.post_raw(&path, body.to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

fn put(ws: &Workspace, path: &str, body: Value) -> Resp {
    ws.server.call("PUT", path, Some(&ws.key), Some(&body))
}

fn delete(ws: &Workspace, path: &str) -> Resp {
    ws.server.call("DELETE", path, Some(&ws.key), None)
}

fn track(ws: &Workspace, body: Value) {
    let r = ws.post("/users/track", body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["errors"], json!([]), "{}", r.body);
}

/// Sets attributes on identified profiles: `[("u1", {"plan": "gold"}), …]`.
fn set_attributes(ws: &Workspace, rows: &[(&str, Value)]) {
    let objects: Vec<Value> = rows
        .iter()
        .map(|(id, attrs)| {
            let mut o = attrs.clone();
            o["external_id"] = json!(id);
            o
        })
        .collect();
    track(ws, json!({ "attributes": objects }));
}

/// Records one event per `(user, time)`.
fn events(ws: &Workspace, name: &str, rows: &[(&str, &str)]) {
    let objects: Vec<Value> = rows
        .iter()
        .map(|(id, time)| json!({"external_id": id, "name": name, "time": time}))
        .collect();
    track(ws, json!({ "events": objects }));
}

fn alias(name: &str, label: &str) -> Value {
    json!({"alias_name": name, "alias_label": label})
}

fn alias_only_profile(ws: &Workspace, name: &str, label: &str) {
    track(
        ws,
        json!({"attributes": [{"user_alias": alias(name, label), "_update_existing_only": false}]}),
    );
}

fn anonymous_profile(ws: &Workspace, device: &str) {
    track(ws, json!({"attributes": [{"device_id": device}]}));
}

fn create(ws: &Workspace, name: &str, filter: Value) -> String {
    let r = ws.post("/segments", json!({"name": name, "filter": filter}));
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["segment_id"].as_str().unwrap().to_string()
}

fn count(ws: &Workspace, id: &str) -> u64 {
    let r = ws.get(&format!("/segments/{id}/count"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["count"].as_u64().unwrap()
}

/// A member as a short label: `u1`, `alias:name/label`, `device:d1`.
fn label(m: &Value) -> String {
    if let Some(e) = m.get("external_id") {
        return e.as_str().unwrap().to_string();
    }
    if let Some(a) = m.get("user_alias") {
        return format!(
            "alias:{}/{}",
            a["alias_name"].as_str().unwrap(),
            a["alias_label"].as_str().unwrap()
        );
    }
    format!("device:{}", m["device_id"].as_str().unwrap())
}

fn labels(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Every member of a saved segment, walking pages of `limit`.
fn walk(ws: &Workspace, id: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = ws.get(&format!(
            "/segments/{id}/members?limit={limit}&cursor={cursor}"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.body["members"].as_array().unwrap();
        assert!(page.len() <= limit, "{} > {limit}", page.len());
        out.extend(page.iter().cloned().map(common::without_braze_id));
        match &r.body["next_cursor"] {
            Value::String(c) => cursor = c.clone(),
            Value::Null => return out,
            other => panic!("next_cursor {other}"),
        }
    }
}

fn check(ws: &Workspace, id: &str, users: &[Value]) -> Vec<bool> {
    let r = ws.post(
        &format!("/segments/{id}/membership"),
        json!({ "users": users }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), users.len());
    results
        .iter()
        .map(|r| r["member"].as_bool().unwrap())
        .collect()
}

/// The members of `filter`, saved as a segment and read through every path:
/// the page walk (no repeats), the count, the preview count, and a
/// membership check of every profile in the workspace must all agree.
fn members_of(ws: &Workspace, filter: Value) -> BTreeSet<String> {
    let id = create(ws, "probe", filter.clone());
    let listed = walk(ws, &id, 3);
    let set: BTreeSet<String> = listed.iter().map(label).collect();
    assert_eq!(
        set.len(),
        listed.len(),
        "a walk repeated a member: {listed:?}"
    );
    assert_eq!(count(ws, &id), set.len() as u64, "count of {filter}");
    let preview = ws.post("/segments/preview", json!({ "filter": filter }));
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.body["count"], set.len(), "preview of {filter}");

    let everyone_id = create(ws, "everyone", json!({"all": true}));
    let everyone = walk(ws, &everyone_id, 1000);
    let answers = check(ws, &id, &everyone);
    for (m, member) in everyone.iter().zip(answers) {
        assert_eq!(
            member,
            set.contains(&label(m)),
            "membership of {m} in {filter} disagrees with the listing"
        );
    }
    for s in [&id, &everyone_id] {
        assert_eq!(delete(ws, &format!("/segments/{s}")).status, 200);
    }
    set
}

fn attr(name: &str, op: &str, value: Value) -> Value {
    json!({"attribute": {"name": name, "op": op, "value": value}})
}

fn attr_op(name: &str, op: &str) -> Value {
    json!({"attribute": {"name": name, "op": op}})
}

fn cohort(partner: &str, id: &str) -> Value {
    json!({"cohort": {"partner": partner, "cohort_id": id}})
}

/// `GET /segments` without parameters, which these tests' few segments
/// fit on one page of: the body without its `next_cursor` (null; paging is
/// tested in segment_pages.rs).
fn segments_listed(ws: &Workspace) -> Value {
    let r = ws.get("/segments");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut body = r.body;
    let next = body.as_object_mut().unwrap().remove("next_cursor");
    assert_eq!(next, Some(Value::Null), "one page");
    body
}

// ---- CRUD ---------------------------------------------------------------------

#[test]
fn segments_are_created_listed_read_replaced_and_deleted() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3"]);
    set_attributes(
        &ws,
        &[
            ("u1", json!({"plan": "gold"})),
            ("u2", json!({"plan": "free"})),
        ],
    );
    assert_eq!(segments_listed(&ws), json!({"segments": []}));

    let gold = attr("plan", "equals", json!("gold"));
    let r = ws.post("/segments", json!({"name": "Gold", "filter": gold}));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["segment_id"].as_str().unwrap().to_string();
    let everyone = create(&ws, "Everyone", json!({"all": true}));

    assert_eq!(
        segments_listed(&ws),
        json!({"segments": [
            {"segment_id": id, "name": "Gold", "filter": gold},
            {"segment_id": everyone, "name": "Everyone", "filter": {"all": true}},
        ]})
    );
    let one = ws.get(&format!("/segments/{id}"));
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        one.body,
        json!({"segment_id": id, "name": "Gold", "filter": gold})
    );
    assert_eq!(count(&ws, &id), 1);

    let paying = attr_op("plan", "exists");
    let r = put(
        &ws,
        &format!("/segments/{id}"),
        json!({"name": "Has a plan", "filter": paying}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let one = ws.get(&format!("/segments/{id}")).body;
    assert_eq!(
        one,
        json!({"segment_id": id, "name": "Has a plan", "filter": paying})
    );
    assert_eq!(count(&ws, &id), 2, "the count follows the new filter");
    assert_eq!(
        segments_listed(&ws)["segments"].as_array().unwrap().len(),
        2,
        "a replace is not a second segment"
    );

    let r = delete(&ws, &format!("/segments/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    for path in [
        format!("/segments/{id}"),
        format!("/segments/{id}/count"),
        format!("/segments/{id}/members"),
    ] {
        assert_eq!(ws.get(&path).status, 404, "{path}");
    }
    assert_eq!(delete(&ws, &format!("/segments/{id}")).status, 404);
    assert_eq!(
        put(
            &ws,
            &format!("/segments/{id}"),
            json!({"name": "back", "filter": {"all": true}})
        )
        .status,
        404,
        "a deleted segment cannot be revived by a PUT"
    );
    assert_eq!(
        segments_listed(&ws),
        json!({"segments": [{"segment_id": everyone, "name": "Everyone", "filter": {"all": true}}]})
    );
}

#[test]
fn segment_ids_are_never_reused_after_a_delete() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let mut seen = BTreeSet::new();
    for round in 0..5 {
        let id = create(&ws, &format!("s{round}"), json!({"all": true}));
        assert!(seen.insert(id.clone()), "{id} given out twice");
        assert_eq!(delete(&ws, &format!("/segments/{id}")).status, 200);
    }
    let kept = create(&ws, "kept", json!({"all": true}));
    assert!(!seen.contains(&kept));
    for old in &seen {
        assert_eq!(ws.get(&format!("/segments/{old}")).status, 404);
    }
}

#[test]
fn another_workspaces_segment_is_not_found() {
    let server = Server::start();
    let acme = server.workspace("acme");
    let other = server.workspace("globex");
    acme.users(&["u1"]);
    other.users(&["u1"]);
    let id = create(&acme, "mine", json!({"all": true}));

    assert_eq!(other.get(&format!("/segments/{id}")).status, 404);
    assert_eq!(other.get(&format!("/segments/{id}/count")).status, 404);
    assert_eq!(other.get(&format!("/segments/{id}/members")).status, 404);
    let r = other.post(
        &format!("/segments/{id}/membership"),
        json!({"users": [{"external_id": "u1"}]}),
    );
    assert_eq!(r.status, 404);
    let r = put(
        &other,
        &format!("/segments/{id}"),
        json!({"name": "stolen", "filter": {"all": true}}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(delete(&other, &format!("/segments/{id}")).status, 404);
    assert_eq!(segments_listed(&other), json!({"segments": []}));
    let r = other.post("/users/memberships", json!({"external_id": "u1"}));
    assert_eq!(r.body["segments"], json!([]), "{}", r.body);

    // Nothing the other workspace did touched it.
    assert_eq!(acme.get(&format!("/segments/{id}")).body["name"], "mine");
    assert_eq!(count(&acme, &id), 1);
}

#[test]
fn segment_calls_without_a_valid_bearer_are_unauthorized() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let id = create(&ws, "s", json!({"all": true}));
    let seg = json!({"name": "x", "filter": {"all": true}});
    let users = json!({"users": [{"external_id": "u1"}]});
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/segments".into(), Some(seg.clone())),
        ("GET", "/segments".into(), None),
        ("GET", format!("/segments/{id}"), None),
        ("PUT", format!("/segments/{id}"), Some(seg.clone())),
        ("DELETE", format!("/segments/{id}"), None),
        ("GET", format!("/segments/{id}/count"), None),
        ("GET", format!("/segments/{id}/members"), None),
        ("POST", format!("/segments/{id}/membership"), Some(users)),
        (
            "POST",
            "/segments/preview".into(),
            Some(json!({"filter": {"all": true}})),
        ),
        (
            "POST",
            "/users/memberships".into(),
            Some(json!({"external_id": "u1"})),
        ),
    ];
    for (method, path, body) in &calls {
        for token in [None, Some("crk_wrong"), Some(common::ADMIN)] {
            let r = server.call(method, path, token, body.as_ref());
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.body);
        }
    }
    assert_eq!(
        segments_listed(&ws)["segments"].as_array().unwrap().len(),
        1,
        "no unauthorized call changed anything"
    );
}

// ---- filters --------------------------------------------------------------------

#[test]
fn cohort_membership_combines_with_and_or_not_and_all() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3", "u4", "u5"]);
    let hightouch = Partner::of(&ws, "hightouch");
    let segment = Partner::of(&ws, "segment");
    hightouch.add("a", &["u1", "u2", "u3"]);
    hightouch.add("b", &["u3", "u4"]);
    // Same cohort id, another partner: another cohort.
    segment.add("a", &["u5"]);
    set_attributes(&ws, &[("u1", json!({"plan": "gold"}))]);

    let a = cohort("hightouch", "a");
    let b = cohort("hightouch", "b");
    let cases = [
        (a.clone(), vec!["u1", "u2", "u3"]),
        (cohort("segment", "a"), vec!["u5"]),
        (json!({"and": [a, b]}), vec!["u3"]),
        (json!({"or": [a, b]}), vec!["u1", "u2", "u3", "u4"]),
        (json!({"not": a}), vec!["u4", "u5"]),
        (json!({"and": [a, {"not": b}]}), vec!["u1", "u2"]),
        (json!({"all": true}), vec!["u1", "u2", "u3", "u4", "u5"]),
        (json!({"not": {"all": true}}), vec![]),
        (json!({"and": [{"all": true}, b]}), vec!["u3", "u4"]),
        (
            json!({"or": [{"all": true}, b]}),
            vec!["u1", "u2", "u3", "u4", "u5"],
        ),
        (
            json!({"or": [b, attr("plan", "equals", json!("gold"))]}),
            vec!["u1", "u3", "u4"],
        ),
        (
            json!({"and": [{"or": [a, b]}, {"not": {"and": [b, {"not": a}]}}]}),
            vec!["u1", "u2", "u3"],
        ),
        (
            json!({"not": {"or": [a, cohort("segment", "a")]}}),
            vec!["u4"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            members_of(&ws, filter.clone()),
            labels(&expected),
            "{filter}"
        );
    }
    // A removal shows at once.
    hightouch.remove("a", &["u2"]);
    assert_eq!(members_of(&ws, a.clone()), labels(&["u1", "u3"]));
}

#[test]
fn equals_is_case_sensitive_and_not_equals_matches_missing_and_mismatched_types() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["gold", "lower", "none", "num", "tags"]);
    set_attributes(
        &ws,
        &[
            ("gold", json!({"plan": "Gold"})),
            ("lower", json!({"plan": "gold"})),
            ("num", json!({"plan": 3})),
            ("tags", json!({"plan": ["Gold"]})),
        ],
    );
    let eq = |v: Value| members_of(&ws, attr("plan", "equals", v));
    let ne = |v: Value| members_of(&ws, attr("plan", "not_equals", v));
    assert_eq!(eq(json!("Gold")), labels(&["gold"]));
    assert_eq!(eq(json!("gold")), labels(&["lower"]));
    assert_eq!(eq(json!("GOLD")), labels(&[]));
    assert_eq!(
        ne(json!("Gold")),
        labels(&["lower", "none", "num", "tags"]),
        "missing and other types are not equal"
    );
    assert_eq!(eq(json!(3)), labels(&["num"]));
    assert_eq!(
        eq(json!("3")),
        labels(&[]),
        "a string never equals a number"
    );
    assert_eq!(
        ne(json!("3")),
        labels(&["gold", "lower", "none", "num", "tags"])
    );
    assert_eq!(eq(json!(true)), labels(&[]));
    assert_eq!(
        ne(json!(true)),
        labels(&["gold", "lower", "none", "num", "tags"])
    );
}

#[test]
fn numbers_compare_numerically_and_booleans_compare_with_equals() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["int", "float", "text", "yes", "no", "yes_text", "none"]);
    set_attributes(
        &ws,
        &[
            ("int", json!({"score": 3})),
            ("float", json!({"score": 3.0})),
            ("text", json!({"score": "3"})),
            ("yes", json!({"vip": true})),
            ("no", json!({"vip": false})),
            ("yes_text", json!({"vip": "true"})),
        ],
    );
    for three in [json!(3), json!(3.0)] {
        assert_eq!(
            members_of(&ws, attr("score", "equals", three.clone())),
            labels(&["int", "float"]),
            "{three}"
        );
        assert_eq!(
            members_of(&ws, attr("score", "not_equals", three.clone())),
            labels(&["text", "yes", "no", "yes_text", "none"]),
            "{three}"
        );
    }
    assert_eq!(
        members_of(&ws, attr("score", "equals", json!(3.5))),
        labels(&[])
    );
    assert_eq!(
        members_of(&ws, attr("vip", "equals", json!(true))),
        labels(&["yes"])
    );
    assert_eq!(
        members_of(&ws, attr("vip", "equals", json!(false))),
        labels(&["no"]),
        "false is a value, not a missing attribute"
    );
    assert_eq!(
        members_of(&ws, attr("vip", "not_equals", json!(true))),
        labels(&["int", "float", "text", "no", "yes_text", "none"])
    );
    assert_eq!(
        members_of(&ws, attr("vip", "equals", json!("true"))),
        labels(&["yes_text"])
    );
}

#[test]
fn regexes_are_case_insensitive_unanchored_and_miss_missing_attributes() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["full", "caps", "bob", "none", "num"]);
    set_attributes(
        &ws,
        &[
            ("full", json!({"name": "Alice Smith"})),
            ("caps", json!({"name": "ALICE"})),
            ("bob", json!({"name": "bob"})),
            ("num", json!({"name": 5})),
        ],
    );
    let m = |re: &str| members_of(&ws, attr("name", "matches_regex", json!(re)));
    let not_m = |re: &str| members_of(&ws, attr("name", "does_not_match_regex", json!(re)));
    assert_eq!(m("alice"), labels(&["full", "caps"]));
    assert_eq!(m("SMITH"), labels(&["full"]), "matches anywhere");
    assert_eq!(m("^alice$"), labels(&["caps"]), "anchors give a full match");
    assert_eq!(m("^b.b$|^x"), labels(&["bob"]));
    assert_eq!(m("5"), labels(&[]), "a number is not text");
    assert_eq!(
        not_m("alice"),
        labels(&["bob", "none", "num"]),
        "missing and non-strings do not match"
    );
    assert_eq!(not_m(""), labels(&["none", "num"]));
}

#[test]
fn exists_and_does_not_exist_follow_set_and_removed_attributes() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["set", "falsy", "removed", "never"]);
    set_attributes(
        &ws,
        &[
            ("set", json!({"plan": "gold"})),
            ("falsy", json!({"plan": false})),
            ("removed", json!({"plan": "gold"})),
        ],
    );
    set_attributes(&ws, &[("removed", json!({"plan": null}))]);
    assert_eq!(
        members_of(&ws, attr_op("plan", "exists")),
        labels(&["set", "falsy"])
    );
    assert_eq!(
        members_of(&ws, attr_op("plan", "does_not_exist")),
        labels(&["removed", "never"])
    );
}

#[test]
fn greater_than_and_less_than_are_strict_over_numbers() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["a17", "a18", "a30", "text", "none", "when"]);
    set_attributes(
        &ws,
        &[
            ("a17", json!({"age": 17})),
            ("a18", json!({"age": 18})),
            ("a30", json!({"age": 30.5})),
            ("text", json!({"age": "40"})),
            ("when", json!({"age": "2024-01-01T00:00:00Z"})),
        ],
    );
    let gt = |v: Value| members_of(&ws, attr("age", "greater_than", v));
    let lt = |v: Value| members_of(&ws, attr("age", "less_than", v));
    assert_eq!(gt(json!(18)), labels(&["a30"]));
    assert_eq!(gt(json!(17.5)), labels(&["a18", "a30"]));
    assert_eq!(gt(json!(-1)), labels(&["a17", "a18", "a30"]));
    assert_eq!(lt(json!(18)), labels(&["a17"]));
    assert_eq!(lt(json!(1000)), labels(&["a17", "a18", "a30"]));
    assert_eq!(
        gt(json!("2000-01-01T00:00:00Z")),
        labels(&["when"]),
        "a time bound only compares with time attributes"
    );
}

#[test]
fn greater_than_and_less_than_compare_iso_times_as_instants() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["new_year", "june", "eve", "day", "text", "num", "none"]);
    set_attributes(
        &ws,
        &[
            ("new_year", json!({"signup": "2024-01-01T00:00:00Z"})),
            // A bare date is midnight UTC.
            ("day", json!({"signup": "2024-03-01"})),
            // 10:00 UTC.
            ("june", json!({"signup": "2024-06-01T12:00:00+02:00"})),
            ("eve", json!({"signup": "2023-12-31T23:59:59.999Z"})),
            ("text", json!({"signup": "soon"})),
            ("num", json!({"signup": 1_700_000_000})),
        ],
    );
    let gt = |v: &str| members_of(&ws, attr("signup", "greater_than", json!(v)));
    let lt = |v: &str| members_of(&ws, attr("signup", "less_than", json!(v)));
    assert_eq!(
        gt("2024-01-01T00:00:00Z"),
        labels(&["day", "june"]),
        "strict"
    );
    assert_eq!(lt("2024-01-01T00:00:00Z"), labels(&["eve"]), "strict");
    assert_eq!(
        gt("2023-12-31T23:59:59.998Z"),
        labels(&["eve", "new_year", "day", "june"])
    );
    assert_eq!(gt("2024-02-29T23:59:59Z"), labels(&["day", "june"]));
    assert_eq!(
        lt("2024-03-01T00:00:00.001Z"),
        labels(&["eve", "new_year", "day"])
    );
    assert_eq!(
        gt("2024-06-01T10:00:00Z"),
        labels(&[]),
        "12:00+02:00 is 10:00Z, not after it"
    );
    assert_eq!(gt("2024-06-01T09:59:59Z"), labels(&["june"]));
    assert_eq!(
        lt("2024-06-01T11:00:00+01:00"),
        labels(&["eve", "new_year", "day"]),
        "offsets in the bound count too"
    );
    assert_eq!(
        members_of(&ws, attr("signup", "greater_than", json!(0))),
        labels(&["num"]),
        "a number bound never compares with times"
    );
}

#[test]
fn includes_value_looks_inside_array_attributes_only() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["ab", "b", "plain", "empty", "none"]);
    set_attributes(
        &ws,
        &[
            ("ab", json!({"tags": ["a", "B"]})),
            ("b", json!({"tags": ["b"]})),
            ("plain", json!({"tags": "a"})),
            ("empty", json!({"tags": []})),
        ],
    );
    let inc = |v: &str| members_of(&ws, attr("tags", "includes_value", json!(v)));
    assert_eq!(inc("a"), labels(&["ab"]), "a plain string is not an array");
    assert_eq!(inc("b"), labels(&["b"]), "case-sensitive");
    assert_eq!(inc("B"), labels(&["ab"]));
    assert_eq!(inc("c"), labels(&[]));
}

#[test]
fn event_counts_treat_never_done_as_zero() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["never", "once", "thrice", "other"]);
    events(
        &ws,
        "purchase",
        &[
            ("once", "2024-01-01T00:00:00Z"),
            ("thrice", "2024-01-01T00:00:00Z"),
            ("thrice", "2024-01-02T00:00:00Z"),
            ("thrice", "2024-01-03T00:00:00Z"),
        ],
    );
    events(&ws, "login", &[("other", "2024-01-01T00:00:00Z")]);
    let ev = |op: &str, n: u64| {
        members_of(
            &ws,
            json!({"event": {"name": "purchase", "op": op, "count": n}}),
        )
    };
    assert_eq!(ev("more_than", 0), labels(&["once", "thrice"]));
    assert_eq!(ev("more_than", 1), labels(&["thrice"]));
    assert_eq!(ev("more_than", 3), labels(&[]));
    assert_eq!(ev("less_than", 1), labels(&["never", "other"]));
    assert_eq!(ev("less_than", 3), labels(&["never", "once", "other"]));
    assert_eq!(ev("exactly", 0), labels(&["never", "other"]));
    assert_eq!(ev("exactly", 1), labels(&["once"]));
    assert_eq!(ev("exactly", 3), labels(&["thrice"]));
    // A purchase is recorded as the event `purchase` too.
    track(
        &ws,
        json!({"purchases": [{"external_id": "never", "product_id": "sku-1", "currency": "USD", "price": 2.5, "time": "2024-02-01T00:00:00Z"}]}),
    );
    assert_eq!(ev("exactly", 1), labels(&["once", "never"]));
}

#[test]
fn last_performed_is_strict_uses_the_latest_time_and_is_false_if_never_done() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["never", "at_t", "later"]);
    events(
        &ws,
        "login",
        &[
            ("at_t", "2024-03-01T12:00:00Z"),
            // The latest time counts, not the last one sent.
            ("later", "2024-03-01T13:00:00Z"),
            ("later", "2024-02-01T00:00:00Z"),
            ("later", "2024-01-01T00:00:00Z"),
        ],
    );
    let ev = |op: &str, t: &str| {
        members_of(
            &ws,
            json!({"event": {"name": "login", "op": op, "time": t}}),
        )
    };
    assert_eq!(
        ev("last_performed_after", "2024-03-01T12:00:00Z"),
        labels(&["later"])
    );
    assert_eq!(
        ev("last_performed_before", "2024-03-01T12:00:00Z"),
        labels(&[])
    );
    assert_eq!(
        ev("last_performed_before", "2024-03-01T13:00:00Z"),
        labels(&["at_t"])
    );
    assert_eq!(
        ev("last_performed_before", "2099-01-01T00:00:00Z"),
        labels(&["at_t", "later"]),
        "never done is neither before nor after"
    );
    assert_eq!(
        ev("last_performed_after", "2000-01-01T00:00:00+05:00"),
        labels(&["at_t", "later"])
    );
    assert_eq!(
        ev("last_performed_after", "2024-03-01T14:30:00+02:00"),
        labels(&["later"]),
        "12:30Z with an offset"
    );
}

// ---- invalid filters ------------------------------------------------------------

#[test]
fn invalid_filters_are_refused_with_what_and_where_and_nothing_is_saved() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    Partner::of(&ws, "hightouch").add("c1", &["u1"]);
    let other = server.workspace("globex");
    other.users(&["u1"]);
    Partner::of(&other, "hightouch").add("theirs", &["u1"]);

    let kept = create(&ws, "kept", cohort("hightouch", "c1"));
    let before = segments_listed(&ws);

    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"and": [{"all": true}, attr("plan", "contains", json!("x"))]}),
            "/and/1/attribute/op",
            "unknown attribute op \"contains\"",
        ),
        (
            json!({"event": {"name": "e", "op": "sometimes", "count": 1}}),
            "/event/op",
            "unknown event op \"sometimes\"",
        ),
        (
            json!({"not": attr("name", "matches_regex", json!("(unclosed"))}),
            "/not/attribute/value",
            "invalid regular expression",
        ),
        (
            json!({"or": [cohort("hightouch", "c1"), cohort("hightouch", "nope")]}),
            "/or/1/cohort",
            "unknown cohort \"nope\"",
        ),
        (
            cohort("segment", "c1"),
            "/cohort",
            "unknown cohort \"c1\" of partner \"segment\"",
        ),
        (
            cohort("hightouch", "theirs"),
            "/cohort",
            "unknown cohort \"theirs\"",
        ),
        (
            json!({"attribute": {"name": "plan", "op": "exists", "value": "x"}}),
            "/attribute/value",
            "exists takes no value",
        ),
        (
            json!({"attribute": {"name": "plan", "op": "does_not_exist", "value": null}}),
            "/attribute/value",
            "does_not_exist takes no value",
        ),
        (
            attr("age", "greater_than", json!(true)),
            "/attribute/value",
            "greater_than expects a number or an ISO-8601",
        ),
        (
            attr("age", "less_than", json!("next week")),
            "/attribute/value",
            "less_than expects a number or an ISO-8601",
        ),
        (
            attr("plan", "equals", json!(["gold"])),
            "/attribute/value",
            "equals expects a string, number or boolean",
        ),
        (
            attr("tags", "includes_value", json!(1)),
            "/attribute/value",
            "includes_value expects a string",
        ),
        (
            json!({"event": {"name": "e", "op": "exactly", "count": "3"}}),
            "/event/count",
            "non-negative integer",
        ),
        (
            json!({"event": {"name": "e", "op": "more_than", "count": -1}}),
            "/event/count",
            "non-negative integer",
        ),
        (
            json!({"event": {"name": "e", "op": "last_performed_after", "time": "yesterday"}}),
            "/event/time",
            "ISO-8601",
        ),
        (json!({"and": []}), "/and", "non-empty array"),
        (json!({"all": false}), "/all", "expected true"),
        (json!({"nor": []}), "/", "unknown filter key \"nor\""),
        (
            json!({"all": true, "not": {"all": true}}),
            "/",
            "exactly one of the keys",
        ),
        (json!("everyone"), "/", "expected a filter object"),
    ];
    let id_path = format!("/segments/{kept}");
    for (filter, at, says) in &cases {
        let check_400 = |r: Resp, what: &str| {
            assert_eq!(r.status, 400, "{what} {filter}: {}", r.body);
            assert_eq!(r.body["code"], "invalid_filter", "{}", r.body);
            let msg = r.message();
            assert!(
                msg.contains(says),
                "{what} {filter}: {msg:?} lacks {says:?}"
            );
            assert!(
                msg.ends_with(&format!(" at {at}")),
                "{what} {filter}: {msg:?} does not point at {at}"
            );
        };
        check_400(
            ws.post("/segments", json!({"name": "bad", "filter": filter})),
            "create",
        );
        check_400(
            put(&ws, &id_path, json!({"name": "renamed", "filter": filter})),
            "replace",
        );
        check_400(
            ws.post("/segments/preview", json!({ "filter": filter })),
            "preview",
        );
    }
    for bad in [
        json!({"name": "", "filter": {"all": true}}),
        json!({"name": "  ", "filter": {"all": true}}),
        json!({"filter": {"all": true}}),
        json!({"name": "no filter"}),
        json!({"name": 5, "filter": {"all": true}}),
    ] {
        let r = ws.post("/segments", bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(put(&ws, &id_path, bad.clone()).status, 400, "{bad}");
    }
    assert_eq!(segments_listed(&ws), before, "nothing was saved");
    assert_eq!(count(&ws, &kept), 1);
}

#[test]
fn filters_nest_up_to_the_depth_limit_and_no_deeper() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    let nested = |levels: usize| {
        // `levels` nodes in all: nots around one leaf.
        (1..levels).fold(json!({"all": true}), |f, _| json!({ "not": f }))
    };
    // 32 levels: 31 nots (odd) around everyone is no one.
    let id = create(&ws, "deep", nested(32));
    assert_eq!(count(&ws, &id), 0);
    let deep_and = (1..32).fold(json!({"all": true}), |f, _| json!({ "and": [f] }));
    let id = create(&ws, "deep and", deep_and);
    assert_eq!(count(&ws, &id), 1);

    let before = segments_listed(&ws);
    let r = ws.post(
        "/segments",
        json!({"name": "too deep", "filter": nested(33)}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("deeper than 32 levels"), "{}", r.body);
    let at = format!(" at /{}", vec!["not"; 32].join("/"));
    assert!(r.message().ends_with(&at), "{}", r.body);
    // A very deep one is refused too (by the JSON reader's own limit), and
    // the server lives on.
    let r = ws.post("/segments", json!({"name": "abyss", "filter": nested(500)}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(count(&ws, &id), 1);
    assert_eq!(segments_listed(&ws), before);
}

// ---- counts and member pages --------------------------------------------------------

#[test]
fn member_pages_list_each_kind_of_profile_by_its_pinned_shape() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    alias_only_profile(&ws, "email", "a@example.com");
    anonymous_profile(&ws, "d1");
    let id = create(&ws, "everyone", json!({"all": true}));
    let r = ws.get(&format!("/segments/{id}/members"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({
            "members": [
                {"external_id": "u1", "braze_id": "000000010000000000000000"},
                {"user_alias": {"alias_name": "email", "alias_label": "a@example.com"},
                 "braze_id": "000000010000000000000001"},
                {"device_id": "d1", "braze_id": "000000010000000000000002"},
            ],
            "next_cursor": null,
        })
    );
    // A profile that logs in is listed by its external_id from then on.
    let r = ws.post(
        "/users/identify",
        json!({"devices_to_identify": [{"external_id": "u2", "device_id": "d1"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let listed: Vec<String> = walk(&ws, &id, 10).iter().map(label).collect();
    assert_eq!(listed, ["u1", "alias:email/a@example.com", "u2"]);
}

#[test]
fn member_pages_default_to_100_and_refuse_a_limit_over_10000() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let ids: Vec<String> = (0..150).map(|i| format!("u{i:03}")).collect();
    ws.users(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let id = create(&ws, "everyone", json!({"all": true}));

    let first = ws.get(&format!("/segments/{id}/members"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["members"].as_array().unwrap().len(), 100);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let second = ws.get(&format!("/segments/{id}/members?cursor={cursor}"));
    assert_eq!(second.body["members"].as_array().unwrap().len(), 50);
    assert_eq!(second.body["next_cursor"], Value::Null);
    let all: Vec<String> = first.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["members"].as_array().unwrap())
        .map(label)
        .collect();
    assert_eq!(all, ids, "pages follow creation order without overlap");

    let r = ws.get(&format!("/segments/{id}/members?limit=10000"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 150);
    assert_eq!(r.body["next_cursor"], Value::Null);
    for bad in [
        "limit=10001",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "cursor=abc",
    ] {
        let r = ws.get(&format!("/segments/{id}/members?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = ws.get(&format!("/segments/{id}/members?limit=10001"));
    assert!(r.message().contains("10000"), "{}", r.body);
}

#[test]
fn a_full_page_walk_equals_the_count() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let ids: Vec<String> = (0..240).map(|i| format!("u{i}")).collect();
    ws.users(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let partner = Partner::of(&ws, "hightouch");
    let in_cohort: Vec<&str> = ids.iter().step_by(3).map(String::as_str).collect();
    partner.add("c", &in_cohort);
    let rows: Vec<(&str, Value)> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, id)| (id.as_str(), json!({ "n": i })))
        .collect();
    for chunk in rows.chunks(75) {
        set_attributes(&ws, chunk);
    }
    let id = create(
        &ws,
        "mixed",
        json!({"or": [cohort("hightouch", "c"), attr("n", "greater_than", json!(200))]}),
    );
    let n = count(&ws, &id);
    // Multiples of 3 (80), plus even numbers over 200 that are not (13).
    assert_eq!(n, 80 + 13);
    for limit in [1, 7, 100, 10_000] {
        let walked = walk(&ws, &id, limit);
        let distinct: BTreeSet<String> = walked.iter().map(label).collect();
        assert_eq!(walked.len() as u64, n, "limit {limit}");
        assert_eq!(distinct.len() as u64, n, "limit {limit}");
    }
}

#[test]
fn a_page_walk_during_churn_never_repeats_and_never_skips_a_stable_member() {
    let server = Server::start();
    let ws = server.workspace("acme");
    // Stable and churning users interleaved, so churn happens on both sides
    // of every cursor.
    let stable: Vec<String> = (0..150).map(|i| format!("s{i:03}")).collect();
    let churn: Vec<String> = (0..150).map(|i| format!("c{i:03}")).collect();
    let mut all = Vec::new();
    for (s, c) in stable.iter().zip(&churn) {
        all.push(s.as_str());
        all.push(c.as_str());
    }
    ws.users(&all);
    let partner = Partner::of(&ws, "hightouch");
    partner.add("c", &all);
    let id = create(
        &ws,
        "in c, not banned",
        json!({"and": [cohort("hightouch", "c"), {"not": attr_op("banned", "exists")}]}),
    );
    assert_eq!(count(&ws, &id), 300);

    let stop = AtomicBool::new(false);
    let rounds = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let walks = std::thread::scope(|scope| {
        // Cohort churn on the odd users.
        let cohort_churn = scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let some: Vec<&str> = churn
                    .iter()
                    .skip(i % 7)
                    .step_by(7)
                    .map(String::as_str)
                    .collect();
                partner.remove("c", &some);
                partner.add("c", &some);
                rounds[0].fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        // Attribute churn, deletes and brand-new members.
        let profile_churn = scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let c = churn[i % churn.len()].as_str();
                set_attributes(&ws, &[(c, json!({"banned": true}))]);
                set_attributes(&ws, &[(c, json!({"banned": null}))]);
                let fresh = format!("n{i}");
                ws.users(&[fresh.as_str()]);
                partner.add("c", &[fresh.as_str()]);
                if i % 3 == 0 {
                    let r = ws.post("/users/delete", json!({"external_ids": [fresh]}));
                    assert_eq!(r.status, 201, "{}", r.body);
                }
                rounds[1].fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        // Walk only once both churners are under way (or one has died,
        // which the scope then reports).
        while rounds.iter().any(|r| r.load(Ordering::Relaxed) == 0)
            && !cohort_churn.is_finished()
            && !profile_churn.is_finished()
        {
            std::thread::yield_now();
        }
        let walks: Vec<Vec<Value>> = (0..12).map(|k| walk(&ws, &id, 5 + k)).collect();
        stop.store(true, Ordering::Relaxed);
        walks
    });

    let allowed: BTreeSet<&str> = all.iter().copied().collect();
    for listed in walks {
        let names: Vec<String> = listed.iter().map(label).collect();
        let distinct: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), names.len(), "a member was repeated");
        for s in &stable {
            assert!(distinct.contains(s.as_str()), "{s} was skipped");
        }
        for n in &distinct {
            assert!(
                allowed.contains(n) || n.starts_with('n'),
                "{n} is no member"
            );
        }
    }
}

/// One page of a segment's members: the labels and the next cursor.
fn members_page(ws: &Workspace, id: &str, query: &str) -> (Vec<String>, Option<String>) {
    let r = ws.get(&format!("/segments/{id}/members?{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let labels = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(label)
        .collect();
    (labels, r.body["next_cursor"].as_str().map(String::from))
}

/// A walk's later pages read the member set its first page evaluated
/// (docs/decisions.md): writes landing during the walk do not move it,
/// except that deleted profiles are passed over. A cursor whose kept set
/// is gone, or of a segment whose filter was replaced since, continues
/// from its position on the segment as it is now.
#[test]
fn a_walk_reads_the_members_its_first_page_saw() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let gold: Vec<(String, Value)> = (0..30)
        .map(|i| (format!("u{i:02}"), json!({"plan": "gold"})))
        .collect();
    let rows: Vec<(&str, Value)> = gold.iter().map(|(u, a)| (u.as_str(), a.clone())).collect();
    set_attributes(&ws, &rows);
    let id = create(&ws, "gold", attr("plan", "equals", json!("gold")));

    let (first, cursor) = members_page(&ws, &id, "limit=10");
    let cursor = cursor.expect("more pages");
    assert_eq!(first.len(), 10);
    let (pos, walk) = cursor.split_once('.').expect("the cursor names the walk");
    assert_eq!(walk.len(), 16, "{cursor}");

    // During the walk: one member leaves, one is deleted, one joins.
    set_attributes(
        &ws,
        &[
            ("u15", json!({"plan": "silver"})),
            ("n1", json!({"plan": "gold"})),
        ],
    );
    let r = ws.post("/users/delete", json!({"external_ids": ["u20"]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(count(&ws, &id), 29, "counts see the writes at once");

    let mut rest = Vec::new();
    let mut next = Some(cursor.clone());
    while let Some(c) = next {
        let (page, n) = members_page(&ws, &id, &format!("limit=10&cursor={c}"));
        rest.extend(page);
        next = n;
    }
    let want: Vec<String> = (10..30)
        .filter(|i| *i != 20)
        .map(|i| format!("u{i:02}"))
        .collect();
    assert_eq!(
        rest, want,
        "u15 was a member when the walk began; n1 was not"
    );

    // The same position without the walk (or with one not kept): the
    // segment as it is now, from there on.
    let now: Vec<String> = (10..30)
        .filter(|i| *i != 20 && *i != 15)
        .map(|i| format!("u{i:02}"))
        .chain(["n1".to_string()])
        .collect();
    for c in [pos.to_string(), format!("{pos}.{}", "0".repeat(16))] {
        let (page, _) = members_page(&ws, &id, &format!("limit=100&cursor={c}"));
        assert_eq!(page, now, "cursor {c}");
    }

    // A walk of a segment whose filter was replaced since reads the new one.
    let (_, cursor) = members_page(&ws, &id, "limit=5");
    let r = ws.server.call(
        "PUT",
        &format!("/segments/{id}"),
        Some(&ws.key),
        Some(&json!({"name": "silver", "filter": attr("plan", "equals", json!("silver"))})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (page, next) = members_page(&ws, &id, &format!("limit=100&cursor={}", cursor.unwrap()));
    assert_eq!((page, next), (vec!["u15".to_string()], None));

    for bad in [
        "3.",
        "3.xyz",
        "3.0123",
        "3.0123456789abcdefff",
        ".0123456789abcdef",
        "x.0123456789abcdef",
    ] {
        let r = ws.get(&format!("/segments/{id}/members?cursor={bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.body["code"], "invalid_cursor", "{bad}: {}", r.body);
    }
}

// ---- membership checks ------------------------------------------------------------

#[test]
fn membership_checks_answer_in_request_order_for_every_identifier_kind() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2"]);
    alias_only_profile(&ws, "email", "in@example.com");
    alias_only_profile(&ws, "email", "out@example.com");
    anonymous_profile(&ws, "d-in");
    anonymous_profile(&ws, "d-out");
    let partner = Partner::of(&ws, "hightouch");
    partner.change(
        "c",
        json!({
            "user_ids": ["u2"],
            "aliases": [alias("email", "in@example.com")],
            "device_ids": ["d-in"],
        }),
    );
    let id = create(&ws, "c", cohort("hightouch", "c"));
    let users = json!([
        {"external_id": "u1"},
        {"external_id": "u2"},
        {"user_alias": alias("email", "out@example.com")},
        {"user_alias": alias("email", "in@example.com")},
        {"device_id": "d-in"},
        {"device_id": "d-out"},
        {"external_id": "nobody"},
        {"user_alias": alias("email", "nobody@example.com")},
        {"device_id": "no-device"},
        {"external_id": "u2"},
        {"user_alias": alias("EMAIL", "in@example.com")},
    ]);
    let r = ws.post(
        &format!("/segments/{id}/membership"),
        json!({ "users": users }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answers: Vec<Value> = [
        false, true, false, true, true, false, false, false, false, true, false,
    ]
    .iter()
    .map(|m| json!({ "member": m }))
    .collect();
    assert_eq!(r.body, json!({ "results": answers }));

    let r = ws.post(&format!("/segments/{id}/membership"), json!({"users": []}));
    assert_eq!((r.status, &r.body), (200, &json!({"results": []})));
}

#[test]
fn membership_checks_refuse_more_than_1000_users_and_malformed_identifiers() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    let id = create(&ws, "everyone", json!({"all": true}));
    let path = format!("/segments/{id}/membership");
    let many = |n: usize| -> Vec<Value> {
        (0..n)
            .map(
                |i| json!({"external_id": if i == 0 { "u1".to_string() } else { format!("x{i}") }}),
            )
            .collect()
    };
    let r = ws.post(&path, json!({"users": many(1000)}));
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    assert_eq!(results[0], json!({"member": true}));
    assert!(results[1..].iter().all(|r| r == &json!({"member": false})));

    let r = ws.post(&path, json!({"users": many(1001)}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("1000"), "{}", r.body);

    let malformed = [
        json!({"email": "a@example.com"}),
        json!({"external_id": 5}),
        json!({"external_id": ""}),
        json!({"external_id": null}),
        json!({"external_id": "u1", "device_id": "d1"}),
        json!({"user_alias": {"alias_name": "email"}}),
        json!({"user_alias": "email"}),
        json!({"braze_id": "b1"}),
        json!("u1"),
        json!({}),
    ];
    for bad in malformed {
        let r = ws.post(
            &path,
            json!({"users": [{"external_id": "u1"}, bad.clone()]}),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.message().contains("users[1]"), "{bad}: {}", r.body);
    }
    for body in [json!({}), json!({"users": "u1"}), json!([])] {
        let r = ws.post(&path, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
}

// ---- preview ---------------------------------------------------------------------------

#[test]
fn preview_counts_and_samples_without_saving() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let ids: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    ws.users(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    alias_only_profile(&ws, "email", "a@example.com");
    set_attributes(&ws, &[("u03", json!({"plan": "gold"}))]);
    let before = segments_listed(&ws);

    let r = ws.post("/segments/preview", json!({"filter": {"all": true}}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["count"], 26);
    let sample = r.body["sample"].as_array().unwrap();
    assert!(!sample.is_empty() && sample.len() <= 26);
    let sampled: BTreeSet<String> = sample.iter().map(label).collect();
    assert_eq!(sampled.len(), sample.len());
    for s in &sampled {
        assert!(ids.contains(s) || s == "alias:email/a@example.com", "{s}");
    }

    let r = ws.post(
        "/segments/preview",
        json!({"filter": attr("plan", "equals", json!("gold"))}),
    );
    assert_eq!(
        r.body,
        json!({"count": 1, "sample": [{"external_id": "u03", "braze_id": "000000010000000000000003"}]})
    );
    let r = ws.post(
        "/segments/preview",
        json!({"filter": {"not": {"all": true}}}),
    );
    assert_eq!(r.body, json!({"count": 0, "sample": []}));

    assert_eq!(segments_listed(&ws), before, "a preview saves nothing");
    let next = create(&ws, "after previews", json!({"all": true}));
    assert_eq!(
        segments_listed(&ws)["segments"][0]["segment_id"],
        json!(next)
    );
}

// ---- a user's memberships ---------------------------------------------------------------

#[test]
fn user_memberships_lists_cohorts_and_segments_and_404s_unknown_users() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2"]);
    alias_only_profile(&ws, "email", "a@example.com");
    let hightouch = Partner::of(&ws, "hightouch");
    let segment = Partner::of(&ws, "segment");
    hightouch.name_cohort("vip", "VIP customers");
    hightouch.add("vip", &["u1"]);
    segment.add("aud_1", &["u1", "u2"]);
    segment.change(
        "aud_2",
        json!({"aliases": [alias("email", "a@example.com")]}),
    );
    set_attributes(&ws, &[("u1", json!({"plan": "gold"}))]);
    let gold = create(&ws, "Gold", attr("plan", "equals", json!("gold")));
    let vip = create(&ws, "VIP", cohort("hightouch", "vip"));
    let no_vip = create(&ws, "Not VIP", json!({"not": cohort("hightouch", "vip")}));

    let r = ws.post("/users/memberships", json!({"external_id": "u1"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({
            "cohorts": [
                {"partner": "hightouch", "cohort_id": "vip", "name": "VIP customers"},
                {"partner": "segment", "cohort_id": "aud_1", "name": "aud_1"},
            ],
            "segments": [
                {"segment_id": gold, "name": "Gold"},
                {"segment_id": vip, "name": "VIP"},
            ],
        })
    );
    let r = ws.post(
        "/users/memberships",
        json!({"user_alias": alias("email", "a@example.com")}),
    );
    assert_eq!(
        r.body,
        json!({
            "cohorts": [{"partner": "segment", "cohort_id": "aud_2", "name": "aud_2"}],
            "segments": [{"segment_id": no_vip, "name": "Not VIP"}],
        })
    );

    for unknown in [
        json!({"external_id": "nobody"}),
        json!({"user_alias": alias("email", "b@example.com")}),
        json!({"device_id": "d-none"}),
    ] {
        let r = ws.post("/users/memberships", unknown.clone());
        assert_eq!(r.status, 404, "{unknown}: {}", r.body);
    }
    for bad in [json!({}), json!({"external_id": 1}), json!("u1")] {
        let r = ws.post("/users/memberships", bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}

// ---- read-your-writes and deletes --------------------------------------------------------

#[test]
fn reads_see_a_delta_track_identify_and_delete_right_after_the_201() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let partner = Partner::of(&ws, "hightouch");
    partner.name_cohort("c", "Campaign");
    let filter = json!({"and": [cohort("hightouch", "c"), attr("plan", "equals", json!("gold"))]});
    let id = create(&ws, "gold in c", filter);
    let is_member = |m: Value| check(&ws, &id, &[m])[0];
    let segments_of = |m: Value| {
        let r = ws.post("/users/memberships", m);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["segments"].as_array().unwrap().len()
    };

    for round in 0..15u64 {
        let user = format!("u{round}");
        let other = format!("v{round}");
        let u = json!({ "external_id": user });
        let base = round;
        assert_eq!(count(&ws, &id), base);

        // A track makes the profile; not in the cohort yet.
        set_attributes(&ws, &[(user.as_str(), json!({"plan": "gold"}))]);
        assert!(!is_member(u.clone()));
        // The delta's 201 is visible at once.
        partner.add("c", &[user.as_str()]);
        assert_eq!(count(&ws, &id), base + 1);
        assert!(is_member(u.clone()));
        assert_eq!(segments_of(u.clone()), 1);
        // So is a track that changes an attribute.
        set_attributes(&ws, &[(user.as_str(), json!({"plan": "free"}))]);
        assert_eq!(count(&ws, &id), base);
        assert!(!is_member(u.clone()));
        set_attributes(&ws, &[(user.as_str(), json!({"plan": "gold"}))]);
        assert_eq!(count(&ws, &id), base + 1);

        // An alias-only profile in the cohort merges into a gold profile.
        let email = alias("email", &format!("{other}@example.com"));
        track(
            &ws,
            json!({"attributes": [{"user_alias": email, "_update_existing_only": false, "plan": "free"}]}),
        );
        partner.change("c", json!({ "aliases": [email] }));
        set_attributes(&ws, &[(other.as_str(), json!({"plan": "gold"}))]);
        assert_eq!(count(&ws, &id), base + 1, "alias is free, other not in c");
        let r = ws.post(
            "/users/identify",
            json!({"aliases_to_identify": [{"external_id": other, "user_alias": email}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["merged"], 1, "{}", r.body);
        assert_eq!(count(&ws, &id), base + 2, "merge carried the membership");
        assert!(is_member(json!({ "external_id": other })));
        assert!(is_member(json!({ "user_alias": email })));

        // A delete leaves at once.
        let r = ws.post("/users/delete", json!({"external_ids": [other]}));
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(count(&ws, &id), base + 1);
        assert!(!is_member(json!({ "external_id": other })));
        assert!(!is_member(json!({ "user_alias": email })));

        // A device in the cohort logs in to a gold profile: a merge too.
        let device = format!("d{round}");
        let login = format!("w{round}");
        anonymous_profile(&ws, &device);
        partner.change("c", json!({ "device_ids": [device] }));
        set_attributes(&ws, &[(login.as_str(), json!({"plan": "gold"}))]);
        assert_eq!(count(&ws, &id), base + 1);
        let r = ws.post(
            "/users/identify",
            json!({"devices_to_identify": [{"external_id": login, "device_id": device}]}),
        );
        assert_eq!(
            (r.status, &r.body["merged"]),
            (201, &json!(1)),
            "{}",
            r.body
        );
        assert_eq!(count(&ws, &id), base + 2);
        assert!(is_member(json!({ "external_id": login })));
        let r = ws.post("/users/delete", json!({"external_ids": [login]}));
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(count(&ws, &id), base + 1);
    }
}

#[test]
fn a_deleted_profile_leaves_every_segment_at_once() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["victim", "bystander"]);
    anonymous_profile(&ws, "d-victim");
    let partner = Partner::of(&ws, "hightouch");
    partner.add("a", &["victim"]);
    partner.add("b", &["bystander"]);
    partner.change("a", json!({"device_ids": ["d-victim"]}));
    set_attributes(&ws, &[("victim", json!({"plan": "gold", "n": 5}))]);
    events(&ws, "login", &[("victim", "2024-01-01T00:00:00Z")]);

    let filters = [
        json!({"all": true}),
        cohort("hightouch", "a"),
        json!({"not": cohort("hightouch", "b")}),
        json!({"not": attr("plan", "equals", json!("free"))}),
        attr_op("plan", "exists"),
        attr_op("zzz", "does_not_exist"),
        attr("plan", "not_equals", json!("free")),
        attr("plan", "does_not_match_regex", json!("free")),
        attr("n", "greater_than", json!(1)),
        json!({"event": {"name": "login", "op": "less_than", "count": 5}}),
        json!({"event": {"name": "login", "op": "last_performed_after", "time": "2000-01-01T00:00:00Z"}}),
        json!({"not": {"not": {"all": true}}}),
        json!({"or": [cohort("hightouch", "b"), {"not": cohort("hightouch", "b")}]}),
    ];
    let ids: Vec<String> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| create(&ws, &format!("s{i}"), f.clone()))
        .collect();
    let victim = json!({"external_id": "victim"});
    let counts: Vec<u64> = ids.iter().map(|id| count(&ws, id)).collect();
    for (id, f) in ids.iter().zip(&filters) {
        assert!(
            check(&ws, id, std::slice::from_ref(&victim))[0],
            "victim in {f}"
        );
    }
    let r = ws.post("/users/memberships", victim.clone());
    assert_eq!(r.body["segments"].as_array().unwrap().len(), ids.len());

    let r = ws.post(
        "/users/delete",
        json!({"external_ids": ["victim"], "device_ids": ["d-victim"]}),
    );
    assert_eq!(
        (r.status, &r.body["deleted"]),
        (201, &json!(2)),
        "{}",
        r.body
    );

    for ((id, f), before) in ids.iter().zip(&filters).zip(&counts) {
        let after = count(&ws, id);
        let members: Vec<String> = walk(&ws, id, 2).iter().map(label).collect();
        // The victim left; its anonymous device profile too, where it was in.
        let left = before - after;
        assert!((1..=2).contains(&left), "{f}: count {before} → {after}");
        assert!(
            !members
                .iter()
                .any(|m| m == "victim" || m == "device:d-victim"),
            "{f}: {members:?}"
        );
        assert_eq!(members.len() as u64, after, "{f}");
        assert!(!check(&ws, id, std::slice::from_ref(&victim))[0], "{f}");
    }
    assert_eq!(ws.post("/users/memberships", victim.clone()).status, 404);
    assert_eq!(ws.size("hightouch", "a"), Some(0), "the cohort lost both");

    // The external_id is free again: a new profile, outside the old cohort.
    ws.users(&["victim"]);
    let r = ws.post("/users/memberships", victim.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["cohorts"], json!([]), "{}", r.body);
    let in_a = check(&ws, &ids[1], std::slice::from_ref(&victim))[0];
    let in_all = check(&ws, &ids[0], &[victim])[0];
    assert_eq!((in_a, in_all), (false, true));
}

#[test]
fn a_merge_sums_event_counts_keeps_the_latest_time_and_the_identified_attributes() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    let email = alias("email", "a@example.com");
    track(
        &ws,
        json!({"attributes": [{"user_alias": email, "_update_existing_only": false, "plan": "free", "city": "Oslo"}]}),
    );
    set_attributes(&ws, &[("u1", json!({"plan": "gold"}))]);
    track(
        &ws,
        json!({"events": [
            {"user_alias": email, "name": "login", "time": "2024-02-01T00:00:00Z"},
            {"user_alias": email, "name": "login", "time": "2024-01-01T00:00:00Z"},
            {"external_id": "u1", "name": "login", "time": "2024-01-15T00:00:00Z"},
        ]}),
    );
    let three = create(
        &ws,
        "three logins",
        json!({"event": {"name": "login", "op": "exactly", "count": 3}}),
    );
    let recent = create(
        &ws,
        "login after Jan 20",
        json!({"event": {"name": "login", "op": "last_performed_after", "time": "2024-01-20T00:00:00Z"}}),
    );
    let early = create(
        &ws,
        "login before Jan 20",
        json!({"event": {"name": "login", "op": "last_performed_before", "time": "2024-01-20T00:00:00Z"}}),
    );
    let gold_in_oslo = create(
        &ws,
        "gold in Oslo",
        json!({"and": [attr("plan", "equals", json!("gold")), attr("city", "equals", json!("Oslo"))]}),
    );
    assert_eq!(
        [&three, &recent, &early, &gold_in_oslo].map(|s| count(&ws, s)),
        [0, 1, 1, 0]
    );

    let r = ws.post(
        "/users/identify",
        json!({"aliases_to_identify": [{"external_id": "u1", "user_alias": email}]}),
    );
    assert_eq!(
        (r.status, &r.body["merged"]),
        (201, &json!(1)),
        "{}",
        r.body
    );
    assert_eq!(
        [&three, &recent, &early, &gold_in_oslo].map(|s| count(&ws, s)),
        [1, 1, 0, 1],
        "2 + 1 logins, last on Feb 1, u1's plan and the alias's city"
    );
    let all: Vec<String> = [&three, &recent, &gold_in_oslo]
        .iter()
        .flat_map(|s| walk(&ws, s, 10))
        .map(|m| label(&m))
        .collect();
    assert_eq!(all, ["u1", "u1", "u1"]);
}

#[test]
fn a_segment_is_found_only_by_the_id_it_was_given() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let id = create(&ws, "s", json!({"all": true}));
    assert_eq!(ws.get(&format!("/segments/{id}")).status, 200);
    let n = id.strip_prefix("seg_").expect("ids look like seg_N");
    for other in [
        format!("seg_0{n}"),
        format!("seg_+{n}"),
        format!("SEG_{n}"),
        n.to_string(),
        format!("seg_{n} "),
        "seg_".to_string(),
        "seg_18446744073709551616".to_string(),
    ] {
        let path = format!(
            "/segments/{}",
            other.replace('+', "%2B").replace(' ', "%20")
        );
        let r = ws.get(&path);
        assert_eq!(r.status, 404, "{other:?}: {}", r.body);
    }
}

// ---- nested custom attributes ---------------------------------------------------

#[test]
fn nested_paths_filter_like_top_level_attributes() {
    let server = Server::start();
    let ws = server.workspace("acme");
    set_attributes(
        &ws,
        &[
            (
                "u1",
                json!({"address": {"city": "Lisbon", "zip": 1000, "geo": {"since": "2024-05-01T10:00:00Z", "vip": true}}}),
            ),
            (
                "u2",
                json!({"address": {"city": "Porto", "zip": 4000, "geo": {}}, "company": {"name": "Acme", "tags": ["b2b"]}}),
            ),
            ("u3", json!({"address": "Lisbon", "address.city": "Lisbon"})),
            ("u4", json!({"plan": "gold"})),
        ],
    );
    let cases = [
        (
            attr("address.city", "equals", json!("Lisbon")),
            vec!["u1", "u3"],
        ),
        (
            attr("address.city", "not_equals", json!("Lisbon")),
            vec!["u2", "u4"],
        ),
        (attr_op("address.city", "exists"), vec!["u1", "u2", "u3"]),
        (attr_op("address.city", "does_not_exist"), vec!["u4"]),
        (
            attr("address.city", "matches_regex", json!("^lis")),
            vec!["u1", "u3"],
        ),
        (
            attr("address.city", "does_not_match_regex", json!("^lis")),
            vec!["u2", "u4"],
        ),
        (attr("address.zip", "greater_than", json!(1000)), vec!["u2"]),
        (attr("address.zip", "less_than", json!(4000)), vec!["u1"]),
        (attr("address.zip", "equals", json!(1000.0)), vec!["u1"]),
        (
            attr(
                "address.geo.since",
                "less_than",
                json!("2025-01-01T00:00:00Z"),
            ),
            vec!["u1"],
        ),
        (attr("address.geo.vip", "equals", json!(true)), vec!["u1"]),
        (
            attr("company.tags", "includes_value", json!("b2b")),
            vec!["u2"],
        ),
        // A path naming an object exists (even an empty one), and equals
        // nothing.
        (attr_op("address.geo", "exists"), vec!["u1", "u2"]),
        (attr_op("address", "exists"), vec!["u1", "u2", "u3"]),
        (attr("address", "equals", json!("Lisbon")), vec!["u3"]),
        (attr_op("company", "does_not_exist"), vec!["u1", "u3", "u4"]),
        (attr_op("address.nowhere", "exists"), vec![]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            members_of(&ws, filter.clone()),
            labels(&expected),
            "{filter}"
        );
    }
    // A new value replaces the whole object.
    set_attributes(&ws, &[("u1", json!({"address": {"country": "PT"}}))]);
    assert_eq!(
        members_of(&ws, attr_op("address.city", "exists")),
        labels(&["u2", "u3"])
    );
    assert_eq!(
        members_of(&ws, attr("address.country", "equals", json!("PT"))),
        labels(&["u1"])
    );
}

#[test]
fn a_path_through_an_array_of_objects_matches_if_any_element_does() {
    let server = Server::start();
    let ws = server.workspace("acme");
    set_attributes(
        &ws,
        &[
            (
                "u1",
                json!({"kids": [{"name": "Ana", "age": 4}, {"name": "Rui", "age": 9, "pets": [{"kind": "cat"}]}]}),
            ),
            ("u2", json!({"kids": [{"name": "Eva", "age": 2}, {}]})),
            ("u3", json!({"kids": []})),
        ],
    );
    let cases = [
        (attr("kids.age", "greater_than", json!(8)), vec!["u1"]),
        (attr("kids.age", "less_than", json!(3)), vec!["u2"]),
        (attr("kids.name", "equals", json!("Rui")), vec!["u1"]),
        // not_equals is exactly `not equals`: no element equals it.
        (
            attr("kids.name", "not_equals", json!("Rui")),
            vec!["u2", "u3"],
        ),
        (attr("kids.pets.kind", "equals", json!("cat")), vec!["u1"]),
        (attr_op("kids.name", "exists"), vec!["u1", "u2"]),
        (attr_op("kids", "exists"), vec!["u1", "u2", "u3"]),
        (
            json!({"and": [attr("kids.name", "equals", json!("Ana")), attr("kids.age", "greater_than", json!(5))]}),
            vec!["u1"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            members_of(&ws, filter.clone()),
            labels(&expected),
            "{filter}"
        );
    }
}

#[test]
fn current_location_is_a_location_and_within_km_measures_great_circles() {
    let server = Server::start();
    let ws = server.workspace("acme");
    set_attributes(
        &ws,
        &[
            // Lisbon, Sintra (~24 km away), Porto (~274 km away).
            (
                "u1",
                json!({"current_location": {"latitude": 38.7223, "longitude": -9.1393}}),
            ),
            (
                "u2",
                json!({"current_location": {"latitude": 38.8029, "longitude": -9.3817}}),
            ),
            (
                "u3",
                json!({"current_location": {"latitude": 41.1579, "longitude": -8.6291}}),
            ),
            ("u4", json!({"plan": "none"})),
        ],
    );
    let near = |km: f64| {
        attr(
            "current_location",
            "within_km",
            json!({"latitude": 38.72, "longitude": -9.14, "km": km}),
        )
    };
    assert_eq!(members_of(&ws, near(5.0)), labels(&["u1"]));
    assert_eq!(members_of(&ws, near(30.0)), labels(&["u1", "u2"]));
    assert_eq!(members_of(&ws, near(300.0)), labels(&["u1", "u2", "u3"]));
    assert_eq!(
        members_of(&ws, json!({"not": near(30.0)})),
        labels(&["u3", "u4"])
    );
    assert_eq!(
        members_of(&ws, attr_op("current_location", "exists")),
        labels(&["u1", "u2", "u3"])
    );
    // A bad location is that object's error; the rest applies.
    let r = ws.post(
        "/users/track",
        json!({"attributes": [
            {"external_id": "u4", "current_location": {"latitude": 38.72, "longitude": 190}},
            {"external_id": "u5", "current_location": {"latitude": 38.72, "longitude": -9.14}},
        ]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["attributes_processed"], 1);
    assert_eq!(
        r.body["errors"],
        json!([{"type": "current_location.longitude: must be a number from -180 to 180",
                "input_array": "attributes", "index": 0}])
    );
    assert_eq!(members_of(&ws, near(5.0)), labels(&["u1", "u5"]));
    // Removing it with null.
    set_attributes(&ws, &[("u5", json!({"current_location": null}))]);
    assert_eq!(members_of(&ws, near(5.0)), labels(&["u1"]));
    // within_km is validated when the filter is parsed.
    for (value, says) in [
        (
            json!({"latitude": 91, "longitude": 0, "km": 1}),
            "latitude must be a number from -90 to 90",
        ),
        (
            json!({"latitude": 0, "longitude": 0, "km": -1}),
            "km must be a number from 0 (exclusive)",
        ),
        (
            json!({"latitude": 0, "longitude": 0}),
            "missing field \"km\"",
        ),
        (json!([1, 2]), "within_km expects an object"),
    ] {
        let r = ws.post(
            "/segments/preview",
            json!({"filter": attr("current_location", "within_km", value)}),
        );
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.message().contains(says), "{} should say {says}", r.body);
    }
}

#[test]
fn operations_keep_their_meaning_and_an_over_deep_object_is_that_objects_error() {
    let server = Server::start();
    let ws = server.workspace("acme");
    set_attributes(&ws, &[("u1", json!({"n": 1, "tags": ["a"]}))]);
    let deep = json!({"a": {"b": {"c": {"d": {"e": 1}}}}});
    let ok_depth = json!({"a": {"b": {"c": {"d": 1}}}});
    let r = ws.post(
        "/users/track",
        json!({"attributes": [
            {"external_id": "u1", "n": {"inc": 2}, "tags": {"add": ["b"], "remove": ["a"]}},
            {"external_id": "u2", "deep": deep},
            {"external_id": "u3", "deep": ok_depth, "wide": (0..101).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()},
            {"external_id": "u4", "deep": ok_depth, "op_lookalike": {"inc": 1, "note": "x"}},
        ]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["attributes_processed"], 2, "{}", r.body);
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{}", r.body);
    assert_eq!(errors[0]["index"], 1);
    assert!(
        errors[0]["type"]
            .as_str()
            .unwrap()
            .contains("deep.a.b.c.d: 5 object levels, over the limit of 4 (limits.nesting_depth"),
        "{}",
        r.body
    );
    assert_eq!(errors[1]["index"], 2);
    assert!(
        errors[1]["type"]
            .as_str()
            .unwrap()
            .contains("wide: 101 keys, over the limit of 100 (limits.object_keys"),
        "{}",
        r.body
    );
    assert_eq!(
        members_of(&ws, attr("n", "equals", json!(3))),
        labels(&["u1"])
    );
    assert_eq!(
        members_of(&ws, attr("tags", "includes_value", json!("b"))),
        labels(&["u1"])
    );
    assert_eq!(
        members_of(&ws, attr("tags", "includes_value", json!("a"))),
        labels(&[])
    );
    assert_eq!(
        members_of(&ws, attr("deep.a.b.c.d", "equals", json!(1))),
        labels(&["u4"])
    );
    // An object with other keys than the operations' is a value.
    assert_eq!(
        members_of(&ws, attr("op_lookalike.inc", "equals", json!(1))),
        labels(&["u4"])
    );
    assert!(members_of(&ws, attr_op("deep", "exists")).contains("u4"));
    assert!(!members_of(&ws, attr_op("deep", "exists")).contains("u2"));
}
