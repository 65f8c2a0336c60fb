//! The Braze partner cohort import API, exactly: real partner traffic, every
//! error row of SPEC §2 with its status and text, the check order, the
//! ordering rule, limits and rate-limit headers.

mod common;

use common::{delta, Server, PARTNER_KEY};
use serde_json::{json, Value};

const CHANGES_MSG: &str = "cohort_changes must be an array of objects each with key user_ids and/or device_ids mapping to an array of strings, or an aliases object";

fn users_path(p: &str) -> String {
    format!("/partners/{p}/cohorts/users")
}

fn name_body(secret: &str, cohort: &str, name: &str, created_at: &str) -> Value {
    json!({
        "partner_api_key": PARTNER_KEY, "client_secret": secret,
        "cohort_id": cohort, "name": name, "created_at": created_at,
    })
}

/// Requests captured from Segment's real Braze Cohorts destination, with
/// the test client secret replaced by a live one.
fn fixture() -> Vec<(String, Value)> {
    let text = include_str!("../../shared/fixtures/segment-braze-cohorts-requests.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["method"], "POST");
            (v["path"].as_str().unwrap().to_string(), v["body"].clone())
        })
        .collect()
}

fn replay(server: &Server, secret: &str) -> Vec<Value> {
    fixture()
        .into_iter()
        .map(|(path, mut body)| {
            assert_eq!(body["partner_api_key"], PARTNER_KEY);
            body["client_secret"] = json!(secret);
            let r = server.call("POST", &path, None, Some(&body));
            assert_eq!(r.status, 201, "{path}: {}", r.body);
            assert_eq!(r.message(), "success");
            r.body
        })
        .collect()
}

#[test]
fn segments_real_client_traffic_lands_every_change() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3", "u4", "u5", "u6"]);
    let r = ws.post("/users/track", json!({"attributes": [
        {"device_id": "device-anon-1"},
        {"user_alias": {"alias_name": "email", "alias_label": "alias.user@example.com"}, "_update_existing_only": false}
    ]}));
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = ws.import_key("segment");

    let answers = replay(&server, &secret);
    assert!(answers
        .iter()
        .all(|a| a["unmatched"].as_u64().unwrap_or(0) == 0));

    let cohort = ws.get("/cohorts/segment/aud_1").body;
    assert_eq!(cohort["name"], "ceo_test_audience_renamed");
    assert_eq!(
        cohort["created_at"], "2024-01-01T00:00:00.000Z",
        "first name call's created_at is kept"
    );
    assert_eq!(cohort["size"], 5);
    let members = ws.members("segment", "aud_1");
    for expected in [
        json!({"external_id": "u1"}),
        json!({"external_id": "u4"}),
        json!({"external_id": "u6"}),
        json!({"device_id": "device-anon-1"}),
        json!({"user_alias": {"alias_name": "email", "alias_label": "alias.user@example.com"}}),
    ] {
        assert!(
            members.contains(&expected),
            "{expected} missing from {members:?}"
        );
    }
    assert_eq!(members.len(), 5);

    // Seven deltas carried identifiers: seven history entries, newest first.
    let imports = ws.get("/cohorts/segment/aud_1/imports").body["imports"].clone();
    let imports = imports.as_array().unwrap();
    assert_eq!(imports.len(), 7);
    assert_eq!(
        imports[0],
        json!({"at": imports[0]["at"], "added": 0, "removed": 0, "unmatched": 0, "size": 5})
    );
    assert_eq!(
        (imports[1]["added"].as_u64(), imports[1]["removed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(imports[6]["added"], 1);
}

#[test]
fn import_never_creates_profiles_and_counts_the_unmatched() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let secret = ws.import_key("segment");
    let answers = replay(&server, &secret);
    assert_eq!(answers[1]["unmatched"], 1);
    assert_eq!(answers[3]["unmatched"], 4);
    assert_eq!(answers[1]["cohort_size"], 0);
    assert_eq!(ws.size("segment", "aud_1"), Some(0));
    // The same ids tracked now are fresh profiles, matched from then on.
    ws.users(&["u1"]);
    let r = server.post_raw(
        &users_path("segment"),
        delta(&secret, "aud_1", json!([{"user_ids": ["u1", "u1", "zz"]}]))
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (r.body["added"].as_u64(), r.body["unmatched"].as_u64()),
        (Some(1), Some(1)),
        "unmatched counts distinct ids"
    );
}

#[test]
fn segments_connection_test_gets_201_with_valid_keys_and_401_otherwise() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let secret = ws.import_key("segment");
    let ok = server.post_raw(
        &users_path("segment"),
        delta(&secret, "will_add_in_constant", json!([]))
            .to_string()
            .as_bytes(),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.message(), "success");
    assert_eq!(
        ws.get("/cohorts/segment/will_add_in_constant").status,
        404,
        "an empty delta creates nothing"
    );
    let history = ws.get("/cohorts").body;
    assert_eq!(history["cohorts"], json!([]));

    let mut bad = delta(&secret, "will_add_in_constant", json!([]));
    bad["partner_api_key"] = json!("wrong");
    let r = server.post_raw(&users_path("segment"), bad.to_string().as_bytes());
    assert_eq!((r.status, r.message()), (401, "Invalid Partner API key"));
    let mut bad = delta("cdik_wrong", "will_add_in_constant", json!([]));
    bad["partner_api_key"] = json!(PARTNER_KEY);
    let r = server.post_raw(&users_path("segment"), bad.to_string().as_bytes());
    assert_eq!((r.status, r.message()), (401, "Invalid client secret"));
}

#[test]
fn checks_run_in_the_pinned_order() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let secret = ws.import_key("segment");
    let other_partners = ws.import_key("hightouch");
    let path = users_path("segment");

    // JSON first: a malformed body with a bad key is a 400.
    let r = server.post_raw(&path, b"{\"partner_api_key\": \"nope\", ");
    assert_eq!(r.status, 400, "{}", r.body);
    // Then the partner key, even when every field is wrong too.
    let r = server.post_raw(&path, json!({"partner_api_key": "nope", "client_secret": 3, "cohort_id": 5, "cohort_changes": "x"}).to_string().as_bytes());
    assert_eq!((r.status, r.message()), (401, "Invalid Partner API key"));
    let r = server.post_raw(
        &path,
        json!({"client_secret": secret, "cohort_id": "c"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (r.status, r.message()),
        (401, "Invalid Partner API key"),
        "missing partner_api_key"
    );
    // Heap's key is not Segment's.
    let r = server.post_raw(&path, json!({"partner_api_key": "heap-partner-key", "client_secret": secret, "cohort_id": "c", "cohort_changes": []}).to_string().as_bytes());
    assert_eq!((r.status, r.message()), (401, "Invalid Partner API key"));
    // Then the client secret.
    let r = server.post_raw(
        &path,
        json!({"partner_api_key": PARTNER_KEY, "cohort_id": 5})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (r.status, r.message()),
        (401, "Invalid client secret"),
        "missing client_secret"
    );
    // Then whether the secret belongs to this partner.
    let r = server.post_raw(
        &path,
        delta(&other_partners, "c", json!([]))
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.message(),
        format!("Partner not enabled for client with client secret: {other_partners}")
    );
    assert!(
        r.header("X-RateLimit-Limit").is_none(),
        "no rate headers before the workspace is known"
    );
    // Only then the fields.
    let r = server.post_raw(
        &path,
        json!({"partner_api_key": PARTNER_KEY, "client_secret": secret, "cohort_id": 5})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (r.status, r.message()),
        (400, "cohort_id must be a valid string")
    );
    assert!(
        r.header("X-RateLimit-Remaining").is_some(),
        "rate headers once the workspace is known"
    );
}

#[test]
fn every_field_error_has_its_braze_text_and_changes_nothing() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2"]);
    let secret = ws.import_key("segment");
    let path = users_path("segment");
    assert_eq!(
        server
            .post_raw(
                &path,
                delta(&secret, "c1", json!([{"user_ids": ["u1"]}]))
                    .to_string()
                    .as_bytes()
            )
            .status,
        201
    );

    let thousand_and_one: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"cohort_id": null, "cohort_changes": []}),
            "cohort_id must be a valid string",
        ),
        (
            json!({"cohort_id": "", "cohort_changes": []}),
            "cohort_id must be a valid string",
        ),
        (
            json!({"cohort_id": 17, "cohort_changes": []}),
            "cohort_id must be a valid string",
        ),
        (json!({"cohort_id": "c1"}), CHANGES_MSG),
        (
            json!({"cohort_id": "c1", "cohort_changes": "[]"}),
            CHANGES_MSG,
        ),
        (
            json!({"cohort_id": "c1", "cohort_changes": {"user_ids": ["u2"]}}),
            CHANGES_MSG,
        ),
        (
            json!({"cohort_id": "c1", "cohort_changes": [{"user_ids": ["u2"]}, {"user_ids": [7]}]}),
            CHANGES_MSG,
        ),
        (
            json!({"cohort_id": "c1", "cohort_changes": [{"user_ids": ["u2"]}, {"user_ids": [null]}]}),
            CHANGES_MSG,
        ),
        (
            json!({"cohort_id": "c1", "cohort_changes": [{"user_ids": ["u2"], "should_remove": "true"}]}),
            CHANGES_MSG,
        ),
        (
            json!({"cohort_id": "c1", "cohort_changes": [{"user_ids": ["u2"]}, {"aliases": [{"alias_name": "a"}]}]}),
            CHANGES_MSG,
        ),
        (
            json!({"cohort_id": "c1", "cohort_changes": [{"user_ids": ["u2"]}, {"user_ids": thousand_and_one}]}),
            "Only 1,000 user_ids, device_ids, and aliases are allowed per request",
        ),
    ];
    for (fields, message) in cases {
        let mut body = fields.clone();
        body["partner_api_key"] = json!(PARTNER_KEY);
        body["client_secret"] = json!(secret);
        let r = server.post_raw(&path, body.to_string().as_bytes());
        assert_eq!((r.status, r.message()), (400, message), "{fields}");
        assert_eq!(
            r.body.as_object().unwrap().len(),
            1,
            "errors are {{\"message\"}} only: {}",
            r.body
        );
    }
    assert_eq!(
        ws.member_ids("segment", "c1"),
        vec!["u1"],
        "no bad request changed anything"
    );
    assert_eq!(
        ws.get("/cohorts/segment/c1/imports").body["imports"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ws.get("/cohorts").body["cohorts"].as_array().unwrap().len(),
        1,
        "no cohort created"
    );

    // Exactly 1,000 raw identifiers, duplicates included, is fine.
    let thousand: Vec<&str> = std::iter::repeat_n("u2", 1000).collect();
    let r = server.post_raw(
        &path,
        delta(&secret, "c1", json!([{"user_ids": thousand}]))
            .to_string()
            .as_bytes(),
    );
    assert_eq!((r.status, r.body["added"].as_u64()), (201, Some(1)));
}

#[test]
fn the_name_endpoint_validates_creates_renames_and_keeps_the_first_created_at() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    let secret = ws.import_key("kubit");
    let path = "/partners/kubit/cohorts";
    for (body, message) in [
        (
            json!({"cohort_id": "", "name": "n", "created_at": "2024-01-01T00:00:00Z"}),
            "cohort_id must be a valid string",
        ),
        (
            json!({"cohort_id": "k1", "created_at": "2024-01-01T00:00:00Z"}),
            "name must be a non-empty string",
        ),
        (
            json!({"cohort_id": "k1", "name": "", "created_at": "2024-01-01T00:00:00Z"}),
            "name must be a non-empty string",
        ),
        (
            json!({"cohort_id": "k1", "name": "n"}),
            "created_at must be a valid time as an ISO-8601 string",
        ),
        (
            json!({"cohort_id": "k1", "name": "n", "created_at": "last tuesday"}),
            "created_at must be a valid time as an ISO-8601 string",
        ),
    ] {
        let mut b = body.clone();
        b["partner_api_key"] = json!(PARTNER_KEY);
        b["client_secret"] = json!(secret);
        let r = server.post_raw(path, b.to_string().as_bytes());
        assert_eq!((r.status, r.message()), (400, message), "{body}");
    }
    assert_eq!(ws.get("/cohorts/kubit/k1").status, 404);

    // Offset form accepted; stored and shown in UTC with milliseconds.
    let r = server.post_raw(
        path,
        name_body(&secret, "k1", "First", "2021-01-21T19:20:30+05:00")
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (r.status, r.body.clone()),
        (201, json!({"message": "success"}))
    );
    server.post_raw(
        &users_path("kubit"),
        delta(&secret, "k1", json!([{"user_ids": ["u1"]}]))
            .to_string()
            .as_bytes(),
    );
    let r = server.post_raw(
        path,
        name_body(&secret, "k1", "Renamed", "2022-12-01T17:40:04.055Z")
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 201);
    let c = ws.get("/cohorts/kubit/k1").body;
    assert_eq!(c["name"], "Renamed");
    assert_eq!(c["created_at"], "2021-01-21T14:20:30.000Z");
    assert_eq!(c["size"], 1, "renaming leaves members alone");
}

#[test]
fn a_delta_before_any_name_call_creates_the_cohort_named_after_its_id() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let secret = ws.import_key("heap");
    let mut body = delta(&secret, "h1", json!([{"user_ids": ["nobody"]}]));
    body["partner_api_key"] = json!("heap-partner-key");
    let r = server.post_raw(&users_path("heap"), body.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    let c = ws.get("/cohorts/heap/h1").body;
    assert_eq!(
        (c["name"].as_str(), c["size"].as_u64()),
        (Some("h1"), Some(0))
    );
    let created = c["created_at"].as_str().unwrap().to_string();
    assert!(created.starts_with("20") && created.ends_with('Z'));
    // The first name call then sets created_at.
    let mut name = name_body(&secret, "h1", "Heap cohort", "2020-02-02T00:00:00Z");
    name["partner_api_key"] = json!("heap-partner-key");
    assert_eq!(
        server
            .post_raw("/partners/heap/cohorts", name.to_string().as_bytes())
            .status,
        201
    );
    assert_eq!(
        ws.get("/cohorts/heap/h1").body["created_at"],
        "2020-02-02T00:00:00.000Z"
    );
}

#[test]
fn changes_apply_in_order_and_the_later_operation_wins() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["a", "b", "c"]);
    let secret = ws.import_key("segment");
    let send = |changes: Value| {
        let r = server.post_raw(
            &users_path("segment"),
            delta(&secret, "o", changes).to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.body["added"].as_u64().unwrap(),
            r.body["removed"].as_u64().unwrap(),
        )
    };
    assert_eq!(send(json!([{"user_ids": ["a", "b"]}])), (2, 0));
    // b removed then re-added: still a member, counts in neither.
    // c added then removed: never a member, counts in neither.
    // a removed last: removed.
    let r = send(json!([
        {"user_ids": ["b", "a"], "should_remove": true},
        {"user_ids": ["b", "c"]},
        {"user_ids": ["c"], "should_remove": true},
        {"user_ids": ["a"], "should_remove": false},
        {"user_ids": ["a"], "should_remove": true},
    ]));
    assert_eq!(r, (0, 1));
    assert_eq!(ws.member_ids("segment", "o"), vec!["b"]);
    // Adding a member twice, removing a non-member: no-ops.
    assert_eq!(
        send(json!([{"user_ids": ["b"]}, {"user_ids": ["c"], "should_remove": true}])),
        (0, 0)
    );
}

#[test]
fn unknown_partners_bad_bodies_and_oversized_bodies_are_refused() {
    let server = Server::start_with(|c| c.max_body_bytes = 4096);
    let ws = server.workspace("acme");
    let secret = ws.import_key("segment");
    let r = server.post_raw(
        &users_path("braze-rival"),
        delta(&secret, "c", json!([])).to_string().as_bytes(),
    );
    assert_eq!(r.status, 404);
    assert!(r.message().contains("braze-rival"), "{}", r.body);
    for body in [&b"[]"[..], b"\"hello\"", b"", b"{\"a\":1,}"] {
        let r = server.post_raw(&users_path("segment"), body);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert!(!r.message().is_empty());
    }
    let ids: Vec<String> = (0..900).map(|i| format!("user_{i:06}")).collect();
    let big = delta(&secret, "c", json!([{"user_ids": ids}])).to_string();
    assert!(big.len() > 4096);
    let r = server.post_raw(&users_path("segment"), big.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(ws.get("/cohorts/segment/c").status, 404);
}

#[test]
fn the_rate_limit_is_per_workspace_and_partner_with_headers_on_every_answer() {
    let server = Server::start_with(|c| c.rate_limit.requests = 3);
    let ws = server.workspace("acme");
    let other = server.workspace("globex");
    ws.users(&["u1"]);
    let secret = ws.import_key("segment");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = server.post_raw(
            &users_path("segment"),
            delta(&secret, "c", json!([{"user_ids": ["u1"]}]))
                .to_string()
                .as_bytes(),
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.header("X-RateLimit-Limit"), Some("3"));
        let reset: u64 = r.header("X-RateLimit-Reset").unwrap().parse().unwrap();
        assert!(reset > 1_700_000_000, "Unix seconds: {reset}");
        remaining.push(r.header("X-RateLimit-Remaining").unwrap().to_string());
    }
    assert_eq!(remaining, vec!["2", "1", "0"]);
    let r = server.post_raw(
        &users_path("segment"),
        delta(&secret, "c", json!([{"user_ids": ["u1"]}]))
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    let r = server.post_raw(
        "/partners/segment/cohorts",
        name_body(&secret, "c", "n", "2024-01-01T00:00:00Z")
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 429, "both endpoints share the window");
    // Another workspace, and another partner, have windows of their own.
    let other_secret = other.import_key("segment");
    assert_eq!(
        server
            .post_raw(
                &users_path("segment"),
                delta(&other_secret, "c", json!([])).to_string().as_bytes()
            )
            .status,
        201
    );
    let amp = ws.import_key("amplitude");
    assert_eq!(
        server
            .post_raw(
                &users_path("amplitude"),
                delta(&amp, "c", json!([])).to_string().as_bytes()
            )
            .status,
        201
    );
}

#[test]
fn partner_keys_come_from_the_environment_named_after_the_partner() {
    let mut config = cohortd::config::Config::default();
    let env = |k: &str| (k == "COHORTD_PARTNER_KEY_MIXPANEL").then(|| "mp-key".to_string());
    config.apply_env(env).unwrap();
    let server = Server::start_with(|c| c.partners = config.partners.clone());
    let ws = server.workspace("acme");
    let secret = ws.import_key("mixpanel");
    let mut body = delta(&secret, "m", json!([]));
    body["partner_api_key"] = json!("mp-key");
    assert_eq!(
        server
            .post_raw(&users_path("mixpanel"), body.to_string().as_bytes())
            .status,
        201
    );
}

fn wal_records(server: &Server) -> u64 {
    let text = server.call("GET", "/metrics", None, None).body;
    let text = text.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("cohortd_wal_records "))
        .and_then(|v| v.trim().parse().ok())
        .expect("cohortd_wal_records in /metrics")
}

#[test]
fn repeated_name_calls_and_empty_deltas_write_nothing_to_the_log() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let secret = ws.import_key("segment");
    let name = |n: &str, at: &str| {
        let r = server.post_raw(
            "/partners/segment/cohorts",
            name_body(&secret, "c", n, at).to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    };
    name("First", "2024-01-01T00:00:00Z");
    let before = wal_records(&server);
    // What Segment does before every batch: the same name, a fresh created_at.
    name("First", "2024-01-01T00:00:05Z");
    name("First", "2024-01-01T00:00:09Z");
    let r = server.post_raw(
        &users_path("segment"),
        delta(&secret, "c", json!([])).to_string().as_bytes(),
    );
    assert_eq!(r.status, 201);
    assert_eq!(wal_records(&server), before, "no-ops are not logged");
    // A rename is a change: logged, and visible.
    name("Second", "2024-01-01T00:00:10Z");
    assert_eq!(wal_records(&server), before + 1);
    let c = ws.get("/cohorts/segment/c").body;
    assert_eq!(
        (c["name"].as_str(), c["created_at"].as_str()),
        (Some("Second"), Some("2024-01-01T00:00:00.000Z"))
    );
}
