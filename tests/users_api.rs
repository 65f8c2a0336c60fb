//! The users API and what it does to cohort membership: which profiles
//! `/users/track` creates, the matching rules of cohort import, identify
//! merges, new aliases, deletes and how members are listed.
//!
//! "Does this profile exist?" is mostly asked the way a partner would: push
//! a delta naming it and look at `unmatched`. `/users/export/ids` reads
//! profiles back (its own test, at the end).

mod common;

use common::{delta, Server, Workspace};
use serde_json::{json, Value};

const PARTNER: &str = "hightouch";

/// A workspace with a live data import key for `PARTNER`.
struct Setup<'a> {
    ws: Workspace<'a>,
    secret: String,
}

fn setup(server: &Server) -> Setup<'_> {
    let ws = server.workspace("acme");
    let secret = ws.import_key(PARTNER);
    Setup { ws, secret }
}

/// What a delta did: `(added, removed, unmatched)`.
type Counts = (u64, u64, u64);

impl Setup<'_> {
    /// Pushes a delta as the partner does; it must be accepted.
    fn push(&self, cohort: &str, changes: Value) -> Counts {
        let r = self.ws.server.call(
            "POST",
            &format!("/partners/{PARTNER}/cohorts/users"),
            None,
            Some(&delta(&self.secret, cohort, changes)),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let n = |k: &str| r.body[k].as_u64().unwrap();
        (n("added"), n("removed"), n("unmatched"))
    }

    /// How many of `ids` (external ids) match a profile: adds them to a
    /// scratch cohort and reads `unmatched`.
    fn unmatched_users(&self, ids: &[&str]) -> u64 {
        self.push("probe", json!([{ "user_ids": ids }])).2
    }

    fn track(&self, body: Value) -> Value {
        let r = self.ws.post("/users/track", body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }

    fn identify(&self, body: Value) -> Value {
        let r = self.ws.post("/users/identify", body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }

    fn delete(&self, body: Value) -> u64 {
        let r = self.ws.post("/users/delete", body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["deleted"].as_u64().unwrap()
    }

    fn size(&self, cohort: &str) -> u64 {
        self.ws.size(PARTNER, cohort).expect("cohort exists")
    }

    /// Members as listed, sorted by their JSON text.
    fn members(&self, cohort: &str) -> Vec<Value> {
        let mut m = self.ws.members(PARTNER, cohort);
        m.sort_by_key(|v| v.to_string());
        m
    }

    fn member_ids(&self, cohort: &str) -> Vec<String> {
        self.ws.member_ids(PARTNER, cohort)
    }
}

fn alias(name: &str, label: &str) -> Value {
    json!({ "alias_name": name, "alias_label": label })
}

fn listed_alias(name: &str, label: &str) -> Value {
    json!({ "user_alias": alias(name, label) })
}

// ---- /users/track ----

#[test]
fn tracking_an_external_id_creates_a_profile_that_deltas_then_match() {
    let server = Server::start();
    let s = setup(&server);
    assert_eq!(s.unmatched_users(&["u1", "u2"]), 2);
    let r = s.track(json!({"attributes": [
        {"external_id": "u1", "plan": "gold"},
        {"external_id": "u2"},
    ]}));
    assert_eq!(r["message"], "success");
    assert_eq!(r["attributes_processed"], 2);
    assert_eq!(s.push("c1", json!([{"user_ids": ["u1", "u2"]}])), (2, 0, 0));
    assert_eq!(s.member_ids("c1"), vec!["u1", "u2"]);
}

#[test]
fn events_and_purchases_create_an_external_id_profile_too() {
    let server = Server::start();
    let s = setup(&server);
    let r = s.track(json!({
        "events": [{"external_id": "e1", "name": "open", "time": "2024-01-01T00:00:00Z"}],
        "purchases": [{"external_id": "p1", "product_id": "sku", "currency": "USD", "price": 1, "time": "2024-01-01T00:00:00Z"}],
    }));
    assert_eq!(
        (
            r["events_processed"].as_u64(),
            r["purchases_processed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(s.unmatched_users(&["e1", "p1"]), 0);
}

#[test]
fn an_alias_object_creates_a_profile_only_with_update_existing_only_false() {
    let server = Server::start();
    let s = setup(&server);
    let r = s.track(json!({"attributes": [
        {"user_alias": alias("email", "a@x"), "plan": "gold"},
        {"user_alias": alias("email", "b@x"), "_update_existing_only": true},
        {"user_alias": alias("email", "c@x"), "_update_existing_only": false},
    ]}));
    assert_eq!(r["attributes_processed"], 1);
    let skipped: Vec<(&str, u64)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["input_array"].as_str().unwrap(),
                e["index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(skipped, [("attributes", 0), ("attributes", 1)], "{r}");
    let changes =
        json!([{"aliases": [alias("email", "a@x"), alias("email", "b@x"), alias("email", "c@x")]}]);
    assert_eq!(s.push("c1", changes), (1, 0, 2));
    assert_eq!(s.members("c1"), vec![listed_alias("email", "c@x")]);
    // Once it exists, the default (update existing only) writes to it.
    let r = s.track(json!({"attributes": [{"user_alias": alias("email", "c@x"), "plan": "x"}]}));
    assert_eq!(r["attributes_processed"], 1);
    assert_eq!(r["errors"], json!([]));
}

#[test]
fn an_external_id_object_with_update_existing_only_true_does_not_create() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["known"]);
    let r = s.track(json!({"attributes": [
        {"external_id": "ghost", "_update_existing_only": true, "plan": "gold"},
        {"external_id": "known", "_update_existing_only": true, "plan": "gold"},
    ]}));
    assert_eq!(r["attributes_processed"], 1);
    assert_eq!(
        r["errors"],
        json!([{"type": "no user with external_id \"ghost\" (_update_existing_only)",
                "input_array": "attributes", "index": 0}])
    );
    assert_eq!(s.unmatched_users(&["ghost", "known"]), 1);
}

#[test]
fn a_device_id_object_creates_an_anonymous_profile_that_device_ids_match() {
    let server = Server::start();
    let s = setup(&server);
    assert_eq!(s.push("c1", json!([{"device_ids": ["dev-1"]}])), (0, 0, 1));
    let r = s.track(json!({"attributes": [{"device_id": "dev-1", "plan": "free"}]}));
    assert_eq!(r["attributes_processed"], 1);
    assert_eq!(s.push("c1", json!([{"device_ids": ["dev-1"]}])), (1, 0, 0));
    assert_eq!(s.members("c1"), vec![json!({"device_id": "dev-1"})]);
    // Tracking the same device again writes to that profile, not a new one.
    s.track(json!({"attributes": [{"device_id": "dev-1", "plan": "paid"}]}));
    assert_eq!(s.push("c1", json!([{"device_ids": ["dev-1"]}])), (0, 0, 0));
    assert_eq!(s.size("c1"), 1);
}

#[test]
fn a_track_request_over_75_objects_is_refused_whole() {
    let server = Server::start();
    let s = setup(&server);
    let objects: Vec<Value> = (0..76)
        .map(|i| json!({"external_id": format!("u{i}")}))
        .collect();
    let r = s.ws.post("/users/track", json!({ "attributes": objects }));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.message(),
        "attributes: at most 75 objects per request, got 76"
    );
    let events: Vec<Value> = (0..76)
        .map(|i| json!({"external_id": format!("e{i}"), "name": "x", "time": "2024-01-01T00:00:00Z"}))
        .collect();
    let r = s.ws.post(
        "/users/track",
        json!({ "attributes": [{"external_id": "ok"}], "events": events }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("events"), "{}", r.body);
    // Nothing of either request was applied.
    assert_eq!(s.unmatched_users(&["u0", "u75", "ok", "e0"]), 4);
    // 75 is allowed.
    let objects: Vec<Value> = (0..75)
        .map(|i| json!({"external_id": format!("u{i}")}))
        .collect();
    assert_eq!(
        s.track(json!({ "attributes": objects }))["attributes_processed"],
        75
    );
    assert_eq!(s.unmatched_users(&["u0", "u74"]), 0);
}

/// `(input_array, index)` of each error, in the order listed.
fn skipped(r: &Value) -> Vec<(String, u64)> {
    r["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors in {r}"))
        .iter()
        .map(|e| {
            assert!(e["type"].as_str().is_some_and(|t| !t.is_empty()), "{e}");
            (
                e["input_array"].as_str().unwrap().to_string(),
                e["index"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn at(array: &str, index: u64) -> (String, u64) {
    (array.to_string(), index)
}

#[test]
fn a_malformed_object_is_skipped_and_reported_by_index_and_the_others_apply() {
    let server = Server::start();
    let s = setup(&server);
    let cases = [
        (
            json!({"attributes": [{"external_id": "a1"}, {"external_id": 5}]}),
            "attributes",
            "external_id: must be a non-empty string",
        ),
        (
            json!({"attributes": [{"external_id": "a1"}, {"plan": "gold"}]}),
            "attributes",
            "needs one of external_id, user_alias, device_id, braze_id, email or phone",
        ),
        (
            json!({"attributes": [{"external_id": "a1"}, {"external_id": "a2", "device_id": "d"}]}),
            "attributes",
            "give exactly one identifier (braze_id may come with external_id), got external_id, device_id",
        ),
        (
            json!({"attributes": [{"external_id": "a1"}, {"external_id": "a2", "braze_id": "b"}]}),
            "attributes",
            "braze_id: matches no user",
        ),
        (
            json!({"attributes": [{"external_id": "a1"}, {"external_id": "a2", "nested": {"inc": "1"}}]}),
            "attributes",
            "nested: inc must be a number",
        ),
        (
            json!({"attributes": [{"external_id": "a1"}, {"external_id": "a2", "_update_existing_only": "no"}]}),
            "attributes",
            "_update_existing_only: must be a boolean",
        ),
        (
            json!({"attributes": [{"external_id": "a1"}, {"user_alias": {"alias_name": "email"}, "_update_existing_only": false}]}),
            "attributes",
            "user_alias.alias_label: must be a non-empty string",
        ),
        (
            json!({"attributes": [{"external_id": "a1"}, "a2"]}),
            "attributes",
            "must be an object",
        ),
        (
            json!({"events": [{"external_id": "a1", "name": "open", "time": "2024-01-01T00:00:00Z"},
                              {"external_id": "a2", "name": "open"}]}),
            "events",
            "time: is required, as an ISO-8601 string",
        ),
        (
            json!({"purchases": [{"external_id": "a1", "product_id": "p", "currency": "USD", "price": 1, "time": "2024-01-01T00:00:00Z"},
                                 {"external_id": "a2", "time": "2024-01-01T00:00:00Z"}]}),
            "purchases",
            "product_id: must be a non-empty string",
        ),
        (
            json!({"purchases": [{"external_id": "a1", "product_id": "p", "currency": "USD", "price": 1, "time": "2024-01-01T00:00:00Z"},
                                 {"external_id": "a2", "product_id": "p", "price": 1, "time": "2024-01-01T00:00:00Z"}]}),
            "purchases",
            "currency: is required, as a three-letter ISO 4217 code",
        ),
        (
            json!({"purchases": [{"external_id": "a1", "product_id": "p", "currency": "USD", "price": 1, "time": "2024-01-01T00:00:00Z"},
                                 {"external_id": "a2", "product_id": "p", "currency": "USD", "price": "9", "time": "2024-01-01T00:00:00Z"}]}),
            "purchases",
            "price: is required, as a number",
        ),
        (
            json!({"events": [{"external_id": "a1", "name": "open", "time": "2024-01-01T00:00:00Z", "properties": {"k": 1}},
                              {"external_id": "a2", "name": "open", "time": "2024-01-01T00:00:00Z", "properties": [1]}]}),
            "events",
            "properties: must be an object",
        ),
        (
            json!({"events": [{"external_id": "a1", "name": "open", "time": "2024-01-01T00:00:00Z"},
                              {"external_id": "a2", "name": "open", "time": "2024-01-01T00:00:00Z",
                               "properties": {"k": "x".repeat(51 * 1024)}}]}),
            "events",
            "properties: must be at most 51200 bytes of JSON",
        ),
    ];
    for (body, array, says) in cases {
        let r = s.track(body.clone());
        assert_eq!(r["message"], "success", "{body} → {r}");
        assert_eq!(r[format!("{array}_processed")], 1, "{body} → {r}");
        assert_eq!(skipped(&r), [at(array, 1)], "{body} → {r}");
        let t = r["errors"][0]["type"].as_str().unwrap();
        assert!(t.starts_with(says), "{body} → {t}");
    }
    assert_eq!(s.unmatched_users(&["a1", "a2"]), 1, "a1 applied, a2 never");
    assert_eq!(s.push("c", json!([{"device_ids": ["d"]}])), (0, 0, 1));
}

/// How many profiles match `filter`.
fn count(s: &Setup, filter: Value) -> u64 {
    let r = s.ws.post("/segments/preview", json!({ "filter": filter }));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["count"].as_u64().unwrap()
}

#[test]
fn a_partial_batch_applies_exactly_the_valid_objects_in_order() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["known"]);
    let t = |day: u32| format!("2024-01-{day:02}T00:00:00Z");
    let r = s.track(json!({
        "attributes": [
            {"external_id": "u1", "plan": "first"},
            {"external_id": "u1", "plan": {"add": "x"}},
            {"external_id": "ghost", "_update_existing_only": true, "plan": "x"},
            {"external_id": "u1", "plan": "second"},
            {"plan": "nobody"},
            {"external_id": "known", "plan": "third"},
        ],
        "events": [
            {"external_id": "u1", "name": "open", "time": t(1)},
            {"external_id": "u1", "name": "open", "time": "yesterday"},
            {"external_id": "u1", "name": "open", "time": t(3)},
            {"external_id": "ghost2", "_update_existing_only": true, "name": "open", "time": t(4)},
        ],
        "purchases": [
            {"external_id": "u1", "time": t(5)},
            {"external_id": "u2", "product_id": "sku", "currency": "USD", "price": 1, "time": t(6)},
        ],
    }));
    assert_eq!(
        r,
        json!({
            "message": "success",
            "attributes_processed": 3,
            "events_processed": 2,
            "purchases_processed": 1,
            "errors": [
                {"type": "plan: add must be an array of strings",
                 "input_array": "attributes", "index": 1},
                {"type": "no user with external_id \"ghost\" (_update_existing_only)",
                 "input_array": "attributes", "index": 2},
                {"type": "needs one of external_id, user_alias, device_id, braze_id, email or phone",
                 "input_array": "attributes", "index": 4},
                {"type": "time: must be an ISO-8601 time", "input_array": "events", "index": 1},
                {"type": "no user with external_id \"ghost2\" (_update_existing_only)",
                 "input_array": "events", "index": 3},
                {"type": "product_id: must be a non-empty string", "input_array": "purchases", "index": 0},
            ],
        })
    );
    // In order: u1's later object won; only the valid events counted.
    let plan = |v: &str| {
        count(
            &s,
            json!({"attribute": {"name": "plan", "op": "equals", "value": v}}),
        )
    };
    assert_eq!((plan("first"), plan("second"), plan("third")), (0, 1, 1));
    assert_eq!(
        count(
            &s,
            json!({"event": {"name": "open", "op": "exactly", "count": 2}})
        ),
        1
    );
    assert_eq!(
        count(
            &s,
            json!({"event": {"name": "open", "op": "last_performed_after", "time": t(2)}})
        ),
        1,
        "the event of the 3rd was recorded"
    );
    assert_eq!(
        count(
            &s,
            json!({"event": {"name": "purchase", "op": "exactly", "count": 1}})
        ),
        1,
        "only u2's purchase"
    );
    assert_eq!(
        s.unmatched_users(&["u1", "u2", "known", "ghost", "ghost2"]),
        2
    );
    assert_eq!(count(&s, json!({"all": true})), 3);
}

/// `cohortd_wal_records` from `/metrics`: log records written since start.
fn wal_records(server: &Server) -> u64 {
    metric(server, "cohortd_wal_records ").unwrap_or(0)
}

fn metric(server: &Server, line_start: &str) -> Option<u64> {
    let r = ureq::get(&format!("{}/metrics", server.url))
        .call()
        .unwrap();
    let text = r.into_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn a_batch_with_no_valid_object_answers_201_and_logs_nothing() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["known"]);
    let before = wal_records(&server);
    assert!(before > 0, "the users above were logged");
    let r = s.track(json!({
        "attributes": [{"plan": "x"}, {"external_id": "ghost-free", "device_id": "d"}],
        "events": [{"external_id": "e1", "name": "open"}],
    }));
    assert_eq!(
        (
            r["attributes_processed"].as_u64(),
            r["events_processed"].as_u64(),
            r["purchases_processed"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(
        skipped(&r),
        [at("attributes", 0), at("attributes", 1), at("events", 0)]
    );
    let r = s.identify(json!({"aliases_to_identify": [{"external_id": "known"}]}));
    assert_eq!(skipped(&r), [at("aliases_to_identify", 0)]);
    let r = s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"alias_name": "n"}]}),
    );
    assert_eq!(
        (r.status, skipped(&r.body)),
        (201, vec![at("user_aliases", 0)])
    );
    let r = s.ws.post("/users/delete", json!({"external_ids": [5, ""]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["deleted"], 0);
    assert_eq!(
        skipped(&r.body),
        [at("external_ids", 0), at("external_ids", 1)]
    );
    assert_eq!(wal_records(&server), before, "nothing was logged");
    // An object refused by the state (not by its shape) is a real write
    // that changes nothing; it is logged like any other.
    let r =
        s.track(json!({"attributes": [{"external_id": "ghost", "_update_existing_only": true}]}));
    assert_eq!(skipped(&r), [at("attributes", 0)]);
    assert_eq!(s.unmatched_users(&["e1", "ghost", "known"]), 2);
}

#[test]
fn what_is_wrong_with_the_request_as_a_whole_is_fatal_and_applies_nothing() {
    let server = Server::start();
    let s = setup(&server);
    let valid = json!({"external_id": "v1"});
    for (path, body, says) in [
        ("/users/track", "{\"attributes\": [".to_string(), "invalid JSON body"),
        ("/users/track", "[{\"external_id\": \"v1\"}]".to_string(), "request body must be a JSON object"),
        ("/users/track", "{}".to_string(), "give at least one of attributes, events or purchases"),
        ("/users/track", json!({"attributes": [], "events": []}).to_string(), "give at least one of"),
        ("/users/track", json!({"attributes": [valid], "events": {"name": "x"}}).to_string(), "events: must be an array"),
        ("/users/identify", json!({"aliases_to_identify": []}).to_string(), "give aliases_to_identify and/or devices_to_identify"),
        ("/users/identify", json!({"devices_to_identify": vec![json!({"external_id": "v1", "device_id": "d"}); 51]}).to_string(),
         "devices_to_identify: at most 50 objects per request, got 51"),
        ("/users/alias/new", json!({"user_aliases": "x"}).to_string(), "user_aliases: must be an array"),
        ("/users/alias/new", json!({}).to_string(), "user_aliases: give at least one alias"),
        ("/users/delete", json!({"external_ids": ["v1"], "device_ids": "d"}).to_string(), "device_ids: must be an array"),
        ("/users/delete", json!({"external_ids": vec!["v1"; 51]}).to_string(), "external_ids: at most 50 objects per request, got 51"),
    ] {
        let r = ureq::post(&format!("{}{path}", server.url))
            .set("Authorization", &format!("Bearer {}", s.ws.key))
            .send_bytes(body.as_bytes());
        let r = common::Resp::from(r);
        assert_eq!(r.status, 400, "{path} {body} → {}", r.body);
        assert!(r.message().contains(says), "{path} {body} → {}", r.body);
    }
    assert_eq!(s.unmatched_users(&["v1"]), 1, "nothing applied");
    assert_eq!(s.push("c", json!([{"device_ids": ["d"]}])), (0, 0, 1));
}

#[test]
fn x_braze_batch_is_accepted_and_counted() {
    let server = Server::start();
    let s = setup(&server);
    let series = |route: &str| {
        metric(
            &server,
            &format!("cohortd_users_batched_requests_total{{route=\"{route}\"}} "),
        )
    };
    assert_eq!(series("/users/track"), None);
    let send = |path: &str, batch: &str, body: Value| {
        let r = ureq::post(&format!("{}{path}", server.url))
            .set("Authorization", &format!("Bearer {}", s.ws.key))
            .set("X-Braze-Batch", batch)
            .send_json(body);
        common::Resp::from(r)
    };
    let users: Vec<Value> = (0..75)
        .map(|i| json!({"external_id": format!("b{i}"), "plan": "gold"}))
        .collect();
    let r = send("/users/track", "true", json!({ "attributes": users }));
    assert_eq!(
        (r.status, r.body["attributes_processed"].as_u64()),
        (201, Some(75)),
        "{}",
        r.body
    );
    let r = send(
        "/users/track",
        "TRUE",
        json!({"attributes": [{"external_id": "b0"}, {"plan": "x"}]}),
    );
    assert_eq!(
        (r.status, skipped(&r.body)),
        (201, vec![at("attributes", 1)])
    );
    let r = send(
        "/users/track",
        "false",
        json!({"attributes": [{"external_id": "b1"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(
        "/users/identify",
        "true",
        json!({"aliases_to_identify": [{"external_id": "b0", "user_alias": alias("email", "b0@x")}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(series("/users/track"), Some(2), "false is not a batch");
    assert_eq!(series("/users/identify"), Some(1));
    assert_eq!(s.unmatched_users(&["b0", "b74"]), 0);
}

// ---- matching rules ----

#[test]
fn user_ids_match_external_ids_and_nothing_else() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1"]);
    s.track(json!({"attributes": [
        {"device_id": "d1"},
        {"user_alias": alias("email", "e1"), "_update_existing_only": false},
    ]}));
    // A user_id equal to a device id or an alias part is not that profile.
    assert_eq!(
        s.push("c1", json!([{"user_ids": ["u1", "d1", "e1", "email"]}])),
        (1, 0, 3)
    );
    assert_eq!(s.member_ids("c1"), vec!["u1"]);
}

#[test]
fn aliases_match_the_exact_pair_and_the_label_case_matters() {
    let server = Server::start();
    let s = setup(&server);
    s.track(json!({"attributes": [
        {"user_alias": alias("email", "Ann@x.io"), "_update_existing_only": false},
    ]}));
    let changes = json!([{"aliases": [
        alias("email", "ann@x.io"),
        alias("Email", "Ann@x.io"),
        alias("phone", "Ann@x.io"),
        alias("email", "Ann@x.io"),
    ]}]);
    assert_eq!(s.push("c1", changes), (1, 0, 3));
    assert_eq!(s.members("c1"), vec![listed_alias("email", "Ann@x.io")]);
}

#[test]
fn device_ids_match_anonymous_profiles_only_and_stop_matching_after_login() {
    let server = Server::start();
    let s = setup(&server);
    s.track(json!({"attributes": [{"device_id": "d1"}, {"device_id": "d2"}]}));
    assert_eq!(s.push("c1", json!([{"device_ids": ["d1"]}])), (1, 0, 0));
    let r = s.identify(json!({"devices_to_identify": [{"external_id": "u9", "device_id": "d1"}]}));
    assert_eq!(r["devices_processed"], 1);
    // The same profile, now identified: listed by external_id, no longer
    // matched by its device.
    assert_eq!(s.member_ids("c1"), vec!["u9"]);
    assert_eq!(s.push("c1", json!([{"device_ids": ["d1"]}])), (0, 0, 1));
    assert_eq!(
        s.push("c1", json!([{"device_ids": ["d1"], "should_remove": true}])),
        (0, 0, 1)
    );
    assert_eq!(s.size("c1"), 1, "an unmatched remove leaves the member");
    assert_eq!(s.push("c1", json!([{"user_ids": ["u9"]}])), (0, 0, 0));
    // The other anonymous device still matches.
    assert_eq!(s.push("c1", json!([{"device_ids": ["d2"]}])), (1, 0, 0));
    // A device logging into an existing user merges into it.
    s.ws.users(&["u5"]);
    s.push("c2", json!([{"user_ids": ["u5"]}]));
    s.identify(json!({"devices_to_identify": [{"external_id": "u5", "device_id": "d2"}]}));
    assert_eq!(s.member_ids("c1"), vec!["u5", "u9"]);
    assert_eq!(s.size("c1"), 2);
    assert_eq!(s.push("c2", json!([{"device_ids": ["d2"]}])), (0, 0, 1));
}

#[test]
fn cohort_import_never_creates_a_profile() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["known"]);
    let changes = json!([
        {"user_ids": ["nobody", "known"]},
        {"device_ids": ["nodevice"]},
        {"aliases": [alias("email", "nobody@x")]},
    ]);
    assert_eq!(s.push("c1", changes.clone()), (1, 0, 3));
    assert_eq!(s.size("c1"), 1);
    // The unmatched identifiers were not created by the first push.
    assert_eq!(s.push("c1", changes), (0, 0, 3));
    assert_eq!(s.size("c1"), 1);
    // Tracked later, it is a fresh user like any other.
    s.ws.users(&["nobody"]);
    assert_eq!(s.push("c1", json!([{"user_ids": ["nobody"]}])), (1, 0, 0));
    assert_eq!(s.member_ids("c1"), vec!["known", "nobody"]);
}

// ---- /users/identify ----

#[test]
fn identifying_an_alias_into_a_user_in_another_cohort_unions_their_memberships() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1"]);
    s.track(json!({"attributes": [
        {"user_alias": alias("email", "a@x"), "_update_existing_only": false},
    ]}));
    assert_eq!(
        s.push("by-alias", json!([{"aliases": [alias("email", "a@x")]}])),
        (1, 0, 0)
    );
    assert_eq!(s.push("by-id", json!([{"user_ids": ["u1"]}])), (1, 0, 0));
    assert_eq!(
        s.push(
            "both",
            json!([{"user_ids": ["u1"], "aliases": [alias("email", "a@x")]}])
        ),
        (2, 0, 0)
    );
    let r = s.identify(json!({"aliases_to_identify": [
        {"external_id": "u1", "user_alias": alias("email", "a@x")},
    ]}));
    assert_eq!(r["aliases_processed"], 1);
    assert_eq!(r["errors"], json!([]));
    for cohort in ["by-alias", "by-id", "both"] {
        assert_eq!(s.member_ids(cohort), vec!["u1"], "{cohort}");
        assert_eq!(s.size(cohort), 1, "{cohort}");
    }
    // The alias now resolves to the merged profile.
    assert_eq!(
        s.push("by-id", json!([{"aliases": [alias("email", "a@x")]}])),
        (0, 0, 0)
    );
    assert_eq!(
        s.push(
            "by-alias",
            json!([{"aliases": [alias("email", "a@x")], "should_remove": true}])
        ),
        (0, 1, 0)
    );
    assert_eq!(s.size("by-alias"), 0);
    assert_eq!(s.member_ids("by-id"), vec!["u1"]);
}

#[test]
fn identifying_an_alias_only_profile_with_a_new_external_id_keeps_its_memberships() {
    let server = Server::start();
    let s = setup(&server);
    s.track(json!({"attributes": [
        {"user_alias": alias("email", "a@x"), "_update_existing_only": false},
    ]}));
    s.push("c1", json!([{"aliases": [alias("email", "a@x")]}]));
    assert_eq!(s.members("c1"), vec![listed_alias("email", "a@x")]);
    s.identify(json!({"aliases_to_identify": [
        {"external_id": "fresh", "user_alias": alias("email", "a@x")},
    ]}));
    assert_eq!(s.member_ids("c1"), vec!["fresh"]);
    assert_eq!(
        s.push(
            "c1",
            json!([{"user_ids": ["fresh"], "aliases": [alias("email", "a@x")]}])
        ),
        (0, 0, 0)
    );
}

#[test]
fn an_alias_held_by_another_identified_user_is_skipped_and_reported() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["owner", "thief"]);
    let r = s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"external_id": "owner", "alias_name": "email", "alias_label": "o@x"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    s.push("c-owner", json!([{"user_ids": ["owner"]}]));
    s.push("c-thief", json!([{"user_ids": ["thief"]}]));
    let r = s.identify(json!({"aliases_to_identify": [
        {"external_id": "thief", "user_alias": alias("email", "o@x")},
    ]}));
    assert_eq!(r["aliases_processed"], 0);
    assert_eq!(r["merged"], 0);
    assert_eq!(
        r["errors"],
        json!([{"type": "alias is already held by another identified user",
                "input_array": "aliases_to_identify", "index": 0}])
    );
    // Nothing changed: the alias still names the owner, each keeps its cohort.
    assert_eq!(
        s.push("c-thief", json!([{"aliases": [alias("email", "o@x")]}])),
        (1, 0, 0)
    );
    assert_eq!(s.member_ids("c-thief"), vec!["owner", "thief"]);
    assert_eq!(s.member_ids("c-owner"), vec!["owner"]);
    assert_eq!(s.unmatched_users(&["owner", "thief"]), 0);
}

#[test]
fn identify_entries_are_refused_one_by_one_and_reported_by_request_index() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["owner", "u1", "u2"]);
    s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"external_id": "owner", "alias_name": "email", "alias_label": "o@x"}]}),
    );
    s.track(json!({"attributes": [
        {"user_alias": alias("email", "a@x"), "_update_existing_only": false},
        {"device_id": "d1"},
    ]}));
    s.push("by-alias", json!([{"aliases": [alias("email", "a@x")]}]));
    let r = s.identify(json!({
        "aliases_to_identify": [
            {"external_id": "u1", "user_alias": {"alias_name": "email"}},
            {"external_id": "u2", "user_alias": alias("email", "o@x")},
            {"external_id": "u1", "user_alias": alias("email", "a@x")},
            {"user_alias": alias("email", "z@x")},
        ],
        "devices_to_identify": [
            {"external_id": "u2", "device_id": ""},
            {"external_id": "u9", "device_id": "d1"},
            {"external_id": "u2", "device_id": "nope"},
        ],
    }));
    assert_eq!(
        (
            r["aliases_processed"].as_u64(),
            r["devices_processed"].as_u64(),
            r["merged"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        r["errors"],
        json!([
            {"type": "user_alias.alias_label: must be a non-empty string", "input_array": "aliases_to_identify", "index": 0},
            {"type": "alias is already held by another identified user", "input_array": "aliases_to_identify", "index": 1},
            {"type": "external_id: must be a non-empty string", "input_array": "aliases_to_identify", "index": 3},
            {"type": "device_id: must be a non-empty string", "input_array": "devices_to_identify", "index": 0},
            {"type": "device_id does not belong to an anonymous user", "input_array": "devices_to_identify", "index": 2},
        ])
    );
    assert_eq!(
        s.member_ids("by-alias"),
        vec!["u1"],
        "the valid merge applied"
    );
    assert_eq!(
        s.push("c", json!([{"device_ids": ["d1"]}])),
        (0, 0, 1),
        "d1 logged in"
    );
}

#[test]
fn alias_and_delete_entries_are_refused_one_by_one() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1", "u2", "u3"]);
    let r = s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [
            {"external_id": "u1", "alias_name": "crm"},
            {"external_id": "u1", "alias_name": "crm", "alias_label": "1"},
            {"external_id": "u2", "alias_name": "crm", "alias_label": "1"},
            {"external_id": "nobody", "alias_name": "crm", "alias_label": "9"},
            {"external_id": "u2", "alias_name": "crm", "alias_label": "2"},
        ]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["aliases_processed"], 2);
    assert_eq!(
        r.body["errors"],
        json!([
            {"type": "alias_label: must be a non-empty string", "input_array": "user_aliases", "index": 0},
            {"type": "alias already exists", "input_array": "user_aliases", "index": 2},
            {"type": "no user with that external_id", "input_array": "user_aliases", "index": 3},
        ])
    );
    assert_eq!(
        s.push(
            "c",
            json!([{"aliases": [alias("crm", "1"), alias("crm", "2")]}])
        ),
        (2, 0, 0)
    );
    assert_eq!(s.member_ids("c"), vec!["u1", "u2"]);
    let r = s.ws.post(
        "/users/delete",
        json!({
            "external_ids": ["u3", 5, "nobody"],
            "user_aliases": [{"alias_name": "crm"}, alias("crm", "2")],
            "device_ids": [null],
            "braze_ids": ["b1"],
        }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["deleted"], 2, "u3 and u2 (by its alias)");
    assert_eq!(
        skipped(&r.body),
        [
            at("external_ids", 1),
            at("user_aliases", 0),
            at("device_ids", 0),
            at("braze_ids", 0)
        ]
    );
    assert_eq!(s.unmatched_users(&["u1", "u2", "u3"]), 2);
}

// ---- /users/alias/new ----

#[test]
fn a_new_alias_lets_a_delta_name_the_identified_user() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1"]);
    assert_eq!(
        s.push("c1", json!([{"aliases": [alias("crm", "42")]}])),
        (0, 0, 1)
    );
    let r = s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"external_id": "u1", "alias_name": "crm", "alias_label": "42"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["aliases_processed"], 1);
    assert_eq!(
        s.push("c1", json!([{"aliases": [alias("crm", "42")]}])),
        (1, 0, 0)
    );
    assert_eq!(s.member_ids("c1"), vec!["u1"]);
    // Adding the same pair to another user is refused; it still names u1.
    s.ws.users(&["u2"]);
    let r = s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"external_id": "u2", "alias_name": "crm", "alias_label": "42"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["aliases_processed"], 0);
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.push("c2", json!([{"aliases": [alias("crm", "42")]}])),
        (1, 0, 0)
    );
    assert_eq!(s.member_ids("c2"), vec!["u1"]);
}

// ---- /users/delete ----

#[test]
fn deleting_a_user_by_external_id_removes_it_from_every_cohort_at_once() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1", "u2"]);
    for c in ["c1", "c2", "c3"] {
        s.push(c, json!([{"user_ids": ["u1", "u2"]}]));
    }
    s.push("only-u1", json!([{"user_ids": ["u1"]}]));
    assert_eq!(s.delete(json!({"external_ids": ["u1"]})), 1);
    for c in ["c1", "c2", "c3"] {
        assert_eq!(s.size(c), 1, "{c}");
        assert_eq!(s.member_ids(c), vec!["u2"], "{c}");
    }
    assert_eq!(s.size("only-u1"), 0);
    assert!(s.members("only-u1").is_empty());
    // Naming it afterwards is unmatched, and removes nothing.
    assert_eq!(s.push("c1", json!([{"user_ids": ["u1"]}])), (0, 0, 1));
    assert_eq!(
        s.push("c2", json!([{"user_ids": ["u1"], "should_remove": true}])),
        (0, 0, 1)
    );
    assert_eq!(s.size("c1"), 1);
    // The external id is free again: tracking it makes a new, memberless profile.
    s.ws.users(&["u1"]);
    assert_eq!(s.member_ids("c3"), vec!["u2"]);
    assert_eq!(s.push("c3", json!([{"user_ids": ["u1"]}])), (1, 0, 0));
}

#[test]
fn deleting_a_user_by_alias_removes_it_from_every_cohort() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1", "u2"]);
    s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"external_id": "u1", "alias_name": "email", "alias_label": "u1@x"}]}),
    );
    s.track(json!({"attributes": [
        {"user_alias": alias("email", "anon@x"), "_update_existing_only": false},
    ]}));
    for c in ["c1", "c2"] {
        s.push(
            c,
            json!([{"user_ids": ["u2"], "aliases": [alias("email", "u1@x"), alias("email", "anon@x")]}]),
        );
        assert_eq!(s.size(c), 3);
    }
    let deleted =
        s.delete(json!({"user_aliases": [alias("email", "u1@x"), alias("email", "anon@x")]}));
    assert_eq!(deleted, 2);
    for c in ["c1", "c2"] {
        assert_eq!(s.size(c), 1, "{c}");
        assert_eq!(s.members(c), vec![json!({"external_id": "u2"})], "{c}");
    }
    // Every identifier of a deleted profile is gone with it.
    let changes = json!([{"user_ids": ["u1"], "aliases": [alias("email", "u1@x"), alias("email", "anon@x")]}]);
    assert_eq!(s.push("c1", changes), (0, 0, 3));
}

#[test]
fn deleting_an_unknown_user_deletes_nothing() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1"]);
    s.push("c1", json!([{"user_ids": ["u1"]}]));
    let deleted = s.delete(json!({
        "external_ids": ["nobody"],
        "user_aliases": [alias("email", "nobody@x")],
    }));
    assert_eq!(deleted, 0);
    assert_eq!(s.member_ids("c1"), vec!["u1"]);
    // Naming one user twice deletes it once.
    assert_eq!(s.delete(json!({"external_ids": ["u1", "u1"]})), 1);
    assert_eq!(s.size("c1"), 0);
}

// ---- listing ----

#[test]
fn members_are_listed_by_external_id_else_alias_else_device_id() {
    let server = Server::start();
    let s = setup(&server);
    s.ws.users(&["u1"]);
    s.ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"external_id": "u1", "alias_name": "email", "alias_label": "u1@x"}]}),
    );
    s.track(json!({"attributes": [
        {"user_alias": alias("email", "a@x"), "_update_existing_only": false},
        {"device_id": "d1"},
    ]}));
    let changes = json!([{
        "aliases": [alias("email", "u1@x"), alias("email", "a@x")],
        "device_ids": ["d1"],
    }]);
    assert_eq!(s.push("c1", changes), (3, 0, 0));
    let mut expected = vec![
        json!({"external_id": "u1"}),
        json!({"user_alias": {"alias_name": "email", "alias_label": "a@x"}}),
        json!({"device_id": "d1"}),
    ];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(s.members("c1"), expected);
    let page = s.ws.get(&format!("/cohorts/{PARTNER}/c1/members"));
    assert_eq!(page.status, 200);
    assert_eq!(page.body["next_cursor"], Value::Null);
    assert_eq!(page.body["members"].as_array().unwrap().len(), 3);
}

/// `/users/export/ids` reads profiles back as Braze's export does: standard
/// attributes top-level, the rest under `custom_attributes`, event stats,
/// and identifiers that name nobody in `invalid_user_ids`; merges show.
#[test]
fn export_by_ids_reads_profiles_back_as_braze_lists_them() {
    let server = Server::start();
    let s = setup(&server);
    s.track(json!({
        "attributes": [
            {"external_id": "u1", "first_name": "Ada", "email": "ada@example.com", "plan": "gold",
             "address": {"city": "Paris"}, "current_location": {"latitude": 48.85, "longitude": 2.35}},
            {"user_alias": alias("anon", "crm"), "_update_existing_only": false, "visits": 3}
        ],
        "events": [
            {"external_id": "u1", "name": "open", "time": "2024-01-01T00:00:00Z"},
            {"external_id": "u1", "name": "open", "time": "2024-02-01T00:00:00Z"}
        ]
    }));
    let r = s.ws.post(
        "/users/export/ids",
        json!({"external_ids": ["u1", "nobody", "u1"], "user_aliases": [alias("anon", "crm")]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["message"], "success");
    let users = r.body["users"].as_array().unwrap();
    assert_eq!(
        users.len(),
        2,
        "each profile once, in request order: {}",
        r.body
    );
    let u1 = &users[0];
    assert_eq!(u1["external_id"], "u1");
    assert_eq!(u1["first_name"], "Ada");
    assert_eq!(u1["email"], "ada@example.com");
    assert_eq!(
        u1["custom_attributes"],
        json!({"plan": "gold", "address": {"city": "Paris"}})
    );
    assert_eq!(u1["last_coordinates"], json!([2.35, 48.85]));
    assert_eq!(
        u1["custom_events"],
        json!([{"name": "open", "first": "2024-01-01T00:00:00.000Z",
                "last": "2024-02-01T00:00:00.000Z", "count": 2}])
    );
    assert_eq!(u1["braze_id"].as_str().unwrap().len(), 24);
    assert_eq!(users[1]["user_aliases"], json!([alias("anon", "crm")]));
    assert_eq!(users[1]["custom_attributes"], json!({"visits": 3}));
    assert!(users[1].get("external_id").is_none());
    assert_eq!(r.body["invalid_user_ids"], json!(["nobody"]));

    // By braze_id and email, with fields_to_export.
    let braze = u1["braze_id"].as_str().unwrap();
    let r = s.ws.post(
        "/users/export/ids",
        json!({"braze_id": braze, "fields_to_export": ["external_id", "custom_events"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["users"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    assert_eq!(
        r.body["users"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["custom_events", "external_id"]
    );
    let r = s.ws.post(
        "/users/export/ids",
        json!({"email_address": "ada@example.com"}),
    );
    assert_eq!(r.body["users"][0]["external_id"], "u1", "{}", r.body);

    // An identify merges the alias profile into u1: its attributes join.
    s.identify(
        json!({"aliases_to_identify": [{"external_id": "u1", "user_alias": alias("anon", "crm")}]}),
    );
    let r =
        s.ws.post("/users/export/ids", json!({"external_ids": ["u1"]}));
    assert_eq!(
        r.body["users"][0]["custom_attributes"]["visits"], 3,
        "{}",
        r.body
    );

    // Bad input: a clear 400.
    for (body, says) in [
        (json!({}), "give external_ids"),
        (json!({"external_ids": [1]}), "external_ids[0]"),
        (
            json!({"external_ids": ["u1"], "fields_to_export": ["nope"]}),
            "nope",
        ),
    ] {
        let r = s.ws.post("/users/export/ids", body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(says), "{body}: {}", r.body);
    }
    // Another workspace's key sees nobody.
    let other = server.workspace("other");
    let r = other.post("/users/export/ids", json!({"external_ids": ["u1"]}));
    assert_eq!((r.status, r.body["users"].clone()), (201, json!([])));
}
