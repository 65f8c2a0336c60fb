//! Who may call what: the admin token, workspace REST keys and partners'
//! data import keys (rotation, invalidation, listing), the operator
//! endpoints, and the cohort query endpoints (fields, times, pages, import
//! history).

mod common;

use std::collections::BTreeSet;

use common::{delta, Server, Workspace, ADMIN, PARTNER_KEY};
use regex::Regex;
use serde_json::{json, Value};

const RFC3339_MILLIS: &str = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$";

fn is_rfc3339_millis(v: &Value) -> bool {
    let re = Regex::new(RFC3339_MILLIS).unwrap();
    v.as_str().is_some_and(|s| re.is_match(s))
}

/// Pushes a delta for `partner` without a bearer token, as partners do.
fn push(
    server: &Server,
    partner: &str,
    secret: &str,
    cohort: &str,
    changes: Value,
) -> common::Resp {
    server.call(
        "POST",
        &format!("/partners/{partner}/cohorts/users"),
        None,
        Some(&delta(secret, cohort, changes)),
    )
}

fn name_cohort(server: &Server, secret: &str, cohort: &str, name: &str, created_at: &str) {
    let body = json!({
        "partner_api_key": PARTNER_KEY, "client_secret": secret,
        "cohort_id": cohort, "name": name, "created_at": created_at,
    });
    let r = server.call("POST", "/partners/hightouch/cohorts", None, Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

/// A workspace with `n` users in cohort `hightouch/big`.
fn cohort_of(server: &Server, n: usize) -> Workspace<'_> {
    let ws = server.workspace("acme");
    let users = ids("u", n);
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    ws.users(&refs);
    let secret = ws.import_key("hightouch");
    for chunk in users.chunks(1000) {
        let r = push(
            server,
            "hightouch",
            &secret,
            "big",
            json!([{ "user_ids": chunk }]),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(ws.size("hightouch", "big"), Some(n as u64));
    ws
}

// ---- tokens ----

#[test]
fn operator_calls_need_the_admin_token() {
    let server = Server::start();
    let ws = server.workspace("acme");
    for token in [None, Some("wrong"), Some(ws.key.as_str())] {
        let r = server.call("GET", "/admin/workspaces", token, None);
        assert_eq!(r.status, 401, "{token:?}: {}", r.body);
        let r = server.call(
            "POST",
            "/admin/workspaces",
            token,
            Some(&json!({"name": "evil"})),
        );
        assert_eq!(r.status, 401, "{token:?}: {}", r.body);
    }
    let r = server.get("/admin/workspaces", ADMIN);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["workspaces"].as_array().unwrap().len(),
        1,
        "the refused creations made nothing"
    );
}

#[test]
fn the_admin_token_is_not_a_workspace_key() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let secret = ws.import_key("hightouch");
    ws.users(&["u1"]);
    assert_eq!(
        push(
            &server,
            "hightouch",
            &secret,
            "c1",
            json!([{"user_ids": ["u1"]}])
        )
        .status,
        201
    );
    for token in [Some(ADMIN), None, Some("crk_nope")] {
        for path in [
            "/cohorts",
            "/cohorts/hightouch/c1",
            "/cohorts/hightouch/c1/members",
            "/technology_partners",
        ] {
            let r = server.call("GET", path, token, None);
            assert_eq!(r.status, 401, "{path} with {token:?}: {}", r.body);
        }
        let r = server.call(
            "POST",
            "/users/track",
            token,
            Some(&json!({"attributes": [{"external_id": "x"}]})),
        );
        assert_eq!(r.status, 401, "{token:?}");
        let r = server.call(
            "POST",
            "/technology_partners/hightouch/data_import_keys",
            token,
            None,
        );
        assert_eq!(r.status, 401, "{token:?}");
    }
    assert_eq!(ws.get("/cohorts/hightouch/c1").status, 200);
}

#[test]
fn a_workspace_key_never_reaches_another_workspaces_data() {
    let server = Server::start();
    let acme = server.workspace("acme");
    let globex = server.workspace("globex");
    acme.users(&["a1"]);
    globex.users(&["g1"]);
    let acme_secret = acme.import_key("hightouch");
    let globex_secret = globex.import_key("hightouch");
    // Globex's secret pushes into Globex, matching Globex's profiles only.
    let r = push(
        &server,
        "hightouch",
        &globex_secret,
        "shared-name",
        json!([{"user_ids": ["g1", "a1"]}]),
    );
    assert_eq!(
        (r.body["added"].as_u64(), r.body["unmatched"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(globex.member_ids("hightouch", "shared-name"), vec!["g1"]);
    for path in [
        "/cohorts/hightouch/shared-name",
        "/cohorts/hightouch/shared-name/members",
        "/cohorts/hightouch/shared-name/imports",
    ] {
        assert_eq!(acme.get(path).status, 404, "{path}");
    }
    assert_eq!(acme.get("/cohorts").body["cohorts"], json!([]));
    // Acme's cohort of the same id is its own.
    let r = push(
        &server,
        "hightouch",
        &acme_secret,
        "shared-name",
        json!([{"user_ids": ["a1", "g1"]}]),
    );
    assert_eq!(
        (r.body["added"].as_u64(), r.body["unmatched"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(acme.member_ids("hightouch", "shared-name"), vec!["a1"]);
    assert_eq!(globex.member_ids("hightouch", "shared-name"), vec!["g1"]);
    // Deleting through one workspace never touches the other's profiles.
    let r = acme.post("/users/delete", json!({"external_ids": ["g1"]}));
    assert_eq!(r.body["deleted"], 0);
    assert_eq!(globex.size("hightouch", "shared-name"), Some(1));
    // Nor may one workspace invalidate the other's key.
    let key_id = globex.get("/technology_partners").body["technology_partners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partner"] == "hightouch")
        .unwrap()["data_import_keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = server.call(
        "DELETE",
        &format!("/technology_partners/hightouch/data_import_keys/{key_id}"),
        Some(&acme.key),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        push(
            &server,
            "hightouch",
            &globex_secret,
            "shared-name",
            json!([])
        )
        .status,
        201
    );
}

// ---- data import keys ----

fn create_key(ws: &Workspace, partner: &str) -> (u16, Value) {
    let r = ws.server.call(
        "POST",
        &format!("/technology_partners/{partner}/data_import_keys"),
        Some(&ws.key),
        None,
    );
    (r.status, r.body)
}

#[test]
fn two_live_keys_both_work_and_invalidating_one_leaves_the_other() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2"]);
    let (status, old) = create_key(&ws, "hightouch");
    assert_eq!(status, 201);
    let (status, new) = create_key(&ws, "hightouch");
    assert_eq!(status, 201);
    assert_ne!(old["key_id"], new["key_id"]);
    assert_ne!(old["data_import_key"], new["data_import_key"]);
    let old_secret = old["data_import_key"].as_str().unwrap();
    let new_secret = new["data_import_key"].as_str().unwrap();
    assert_eq!(
        push(
            &server,
            "hightouch",
            old_secret,
            "c",
            json!([{"user_ids": ["u1"]}])
        )
        .status,
        201
    );
    assert_eq!(
        push(
            &server,
            "hightouch",
            new_secret,
            "c",
            json!([{"user_ids": ["u2"]}])
        )
        .status,
        201
    );
    assert_eq!(
        ws.member_ids("hightouch", "c"),
        vec!["u1", "u2"],
        "both keys write to the same workspace"
    );

    let old_id = old["key_id"].as_str().unwrap();
    let r = server.call(
        "DELETE",
        &format!("/technology_partners/hightouch/data_import_keys/{old_id}"),
        Some(&ws.key),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = push(
        &server,
        "hightouch",
        old_secret,
        "c",
        json!([{"user_ids": ["u1"], "should_remove": true}]),
    );
    assert_eq!(
        (r.status, r.body.clone()),
        (401, json!({"message": "Invalid client secret"}))
    );
    assert_eq!(
        ws.size("hightouch", "c"),
        Some(2),
        "the refused delta changed nothing"
    );
    let r = push(
        &server,
        "hightouch",
        new_secret,
        "c",
        json!([{"user_ids": ["u1"], "should_remove": true}]),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(ws.member_ids("hightouch", "c"), vec!["u2"]);
    // Invalidating it again, or a key of another partner, is a 404.
    let r = server.call(
        "DELETE",
        &format!("/technology_partners/hightouch/data_import_keys/{old_id}"),
        Some(&ws.key),
        None,
    );
    assert_eq!(r.status, 404);
    let new_id = new["key_id"].as_str().unwrap();
    let r = server.call(
        "DELETE",
        &format!("/technology_partners/segment/data_import_keys/{new_id}"),
        Some(&ws.key),
        None,
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        push(&server, "hightouch", new_secret, "c", json!([])).status,
        201
    );
}

#[test]
fn technology_partners_lists_every_partner_with_masked_keys() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let (_, k1) = create_key(&ws, "hightouch");
    let (_, k2) = create_key(&ws, "hightouch");
    let (_, k3) = create_key(&ws, "census");
    assert_eq!(k1["rest_endpoint"], server.url.as_str());
    let r = ws.get("/technology_partners");
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.body.to_string();
    for k in [&k1, &k2, &k3] {
        let full = k["data_import_key"].as_str().unwrap();
        assert!(!text.contains(full), "a listing shows the full key {full}");
        assert!(
            !text.contains(&full[6..]),
            "a listing shows most of the key {full}"
        );
    }
    let partners = r.body["technology_partners"].as_array().unwrap();
    let names: BTreeSet<&str> = partners
        .iter()
        .map(|p| p["partner"].as_str().unwrap())
        .collect();
    for p in [
        "hightouch",
        "segment",
        "heap",
        "kubit",
        "amplitude",
        "mixpanel",
        "census",
    ] {
        assert!(names.contains(p), "{p} missing from {names:?}");
    }
    for p in partners {
        assert_eq!(p["rest_endpoint"], server.url.as_str(), "{p}");
        let keys = p["data_import_keys"].as_array().unwrap();
        let expected: Vec<&Value> = match p["partner"].as_str().unwrap() {
            "hightouch" => vec![&k1, &k2],
            "census" => vec![&k3],
            _ => vec![],
        };
        let listed: BTreeSet<&str> = keys.iter().map(|k| k["key_id"].as_str().unwrap()).collect();
        let wanted: BTreeSet<&str> = expected
            .iter()
            .map(|k| k["key_id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, wanted, "{p}");
        for k in keys {
            assert!(is_rfc3339_millis(&k["created_at"]), "{k}");
            let masked = k["masked_key"].as_str().unwrap();
            let full = expected
                .iter()
                .find(|e| e["key_id"] == k["key_id"])
                .unwrap()["data_import_key"]
                .as_str()
                .unwrap();
            assert_ne!(masked, full);
            assert!(masked.contains('*'), "{masked}");
            assert_eq!(
                &masked[..4],
                &full[..4],
                "the mask keeps the start to tell keys apart"
            );
        }
    }
    // Another workspace sees none of these keys.
    let other = server.workspace("globex");
    let r = other.get("/technology_partners");
    assert!(r.body["technology_partners"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["data_import_keys"] == json!([])));
}

#[test]
fn creating_a_key_for_an_unknown_partner_is_a_404() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let (status, body) = create_key(&ws, "braze-rival");
    assert_eq!(status, 404, "{body}");
    let r = ws.get("/technology_partners");
    assert!(!r.body.to_string().contains("braze-rival"));
}

// ---- operator endpoints ----

#[test]
fn the_operator_lists_workspaces() {
    let server = Server::start();
    let a = server.workspace("acme");
    let b = server.workspace("globex");
    assert_ne!(a.id, b.id);
    assert_ne!(a.key, b.key);
    let r = server.get("/admin/workspaces", ADMIN);
    assert_eq!(r.status, 200);
    let listed: Vec<(String, String)> = r.body["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["workspace_id"].as_str().unwrap().into(),
                w["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (a.id.clone(), "acme".into()),
            (b.id.clone(), "globex".into())
        ]
    );
    let r = server.post("/admin/workspaces", ADMIN, json!({"name": ""}));
    assert_eq!(r.status, 400);
}

#[test]
fn health_and_readiness_answer_without_a_token() {
    let server = Server::start();
    assert_eq!(server.call("GET", "/healthz", None, None).status, 200);
    assert_eq!(server.call("GET", "/readyz", None, None).status, 200);
}

#[test]
fn metrics_are_prometheus_text_with_request_and_profile_counts() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3"]);
    let r = server.call("GET", "/metrics", None, None);
    assert_eq!(r.status, 200);
    let text = r.body.as_str().expect("plain text, not JSON");
    assert!(text.contains("# TYPE"), "{text}");
    assert!(text.contains("cohortd_http_requests_total"), "{text}");
    let profiles = text
        .lines()
        .find(|l| l.starts_with("cohortd_profiles "))
        .unwrap_or_else(|| panic!("no cohortd_profiles sample in {text}"));
    assert_eq!(profiles.split_whitespace().nth(1), Some("3"), "{profiles}");
}

// ---- cohort queries ----

#[test]
fn cohort_listings_show_every_field_with_times_in_rfc3339_millis() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2"]);
    let secret = ws.import_key("hightouch");
    name_cohort(
        &server,
        &secret,
        "named",
        "Big spenders",
        "2021-01-21T19:20:30+05:00",
    );
    let r = push(
        &server,
        "hightouch",
        &secret,
        "named",
        json!([{"user_ids": ["u1", "u2"]}]),
    );
    assert_eq!(r.status, 201);
    let r = push(
        &server,
        "hightouch",
        &secret,
        "anon",
        json!([{"user_ids": ["u1"]}]),
    );
    assert_eq!(r.status, 201);
    let all = ws.get("/cohorts");
    assert_eq!(all.status, 200);
    let cohorts = all.body["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), 2);
    for c in cohorts {
        for field in [
            "partner",
            "cohort_id",
            "name",
            "created_at",
            "updated_at",
            "size",
        ] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
        assert!(is_rfc3339_millis(&c["created_at"]), "{c}");
        assert!(is_rfc3339_millis(&c["updated_at"]), "{c}");
        assert_eq!(
            &ws.get(&format!(
                "/cohorts/hightouch/{}",
                c["cohort_id"].as_str().unwrap()
            ))
            .body,
            c
        );
    }
    let named = cohorts.iter().find(|c| c["cohort_id"] == "named").unwrap();
    assert_eq!(named["partner"], "hightouch");
    assert_eq!(named["name"], "Big spenders");
    assert_eq!(named["created_at"], "2021-01-21T14:20:30.000Z");
    assert_eq!(named["size"], 2);
    let anon = cohorts.iter().find(|c| c["cohort_id"] == "anon").unwrap();
    assert_eq!(
        anon["name"], "anon",
        "a never-named cohort is named after its id"
    );
    assert_eq!(anon["size"], 1);
    assert_eq!(ws.get("/cohorts/hightouch/nope").status, 404);
    assert_eq!(
        ws.get("/cohorts/segment/named").status,
        404,
        "cohorts are per partner"
    );
}

#[test]
fn member_pages_default_to_100_and_refuse_bad_limits_and_cursors() {
    let server = Server::start();
    let ws = cohort_of(&server, 250);
    let r = ws.get("/cohorts/hightouch/big/members");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 100);
    assert!(r.body["next_cursor"].is_string());
    let r = ws.get("/cohorts/hightouch/big/members?limit=10000");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 250);
    assert_eq!(r.body["next_cursor"], Value::Null);
    for bad in [
        "limit=10001",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "cursor=abc",
        "cursor=-5",
    ] {
        let r = ws.get(&format!("/cohorts/hightouch/big/members?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(!r.message().is_empty(), "{bad}");
    }
    assert_eq!(ws.get("/cohorts/hightouch/nope/members").status, 404);
}

#[test]
fn walking_250_members_seven_at_a_time_returns_each_exactly_once() {
    let server = Server::start();
    let ws = cohort_of(&server, 250);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let r = ws.get(&format!(
            "/cohorts/hightouch/big/members?limit=7&cursor={cursor}"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        let members = r.body["members"].as_array().unwrap();
        assert!(members.len() <= 7);
        seen.extend(
            members
                .iter()
                .map(|m| m["external_id"].as_str().unwrap().to_string()),
        );
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 36, "250 = 35 × 7 + 5");
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 250, "no member twice");
    assert_eq!(distinct.len(), 250);
    assert_eq!(
        distinct.into_iter().cloned().collect::<Vec<_>>(),
        ids("u", 250)
    );
}

#[test]
fn import_history_is_newest_first_with_its_counts_and_a_limit() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3"]);
    let secret = ws.import_key("hightouch");
    let send = |changes: Value| {
        let r = push(&server, "hightouch", &secret, "c", changes);
        assert_eq!(r.status, 201, "{}", r.body);
    };
    send(json!([{"user_ids": ["u1", "u2", "x1"]}]));
    send(json!([]));
    name_cohort(&server, &secret, "c", "Renamed", "2024-01-01T00:00:00Z");
    send(
        json!([{"user_ids": ["u2"], "should_remove": true}, {"user_ids": ["u3", "x1", "x2", "x2"]}]),
    );
    send(
        json!([{"user_ids": ["u3"]}, {"user_ids": ["u3"], "should_remove": true}, {"user_ids": ["u1"], "should_remove": true}]),
    );
    let r = ws.get("/cohorts/hightouch/c/imports");
    assert_eq!(r.status, 200);
    let imports = r.body["imports"].as_array().unwrap();
    let counts: Vec<[u64; 4]> = imports
        .iter()
        .map(|i| {
            assert!(is_rfc3339_millis(&i["at"]), "{i}");
            ["added", "removed", "unmatched", "size"].map(|k| i[k].as_u64().unwrap())
        })
        .collect();
    // Empty deltas and name calls add no entry.
    assert_eq!(counts, vec![[0, 2, 0, 0], [1, 1, 2, 2], [2, 0, 1, 2]]);
    let times: Vec<&str> = imports.iter().map(|i| i["at"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let r = ws.get("/cohorts/hightouch/c/imports?limit=2");
    assert_eq!(r.body["imports"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["imports"][0]["removed"], 2);
    assert_eq!(
        ws.get("/cohorts/hightouch/c/imports?limit=10001").status,
        400
    );
    assert_eq!(ws.get("/cohorts/hightouch/nope/imports").status, 404);
}

#[test]
fn a_walk_while_members_leave_and_join_repeats_none_and_skips_none_who_stayed() {
    let server = Server::start();
    let ws = cohort_of(&server, 100);
    let secret = ws.import_key("hightouch");
    let mut seen: Vec<String> = Vec::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    let mut cursor = String::new();
    for round in 0.. {
        let r = ws.get(&format!(
            "/cohorts/hightouch/big/members?limit=9&cursor={cursor}"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        let page: Vec<String> = r.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["external_id"].as_str().unwrap().to_string())
            .collect();
        seen.extend(page.iter().cloned());
        // Between pages, a member already returned leaves (an offset cursor
        // would now skip one) and a new user joins.
        if let Some(first) = page.first() {
            let joiner = format!("late{round}");
            ws.users(&[&joiner]);
            let changes = json!([
                {"user_ids": [first], "should_remove": true},
                {"user_ids": [joiner]},
            ]);
            assert_eq!(
                push(&server, "hightouch", &secret, "big", changes).status,
                201
            );
            removed.insert(first.clone());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "a member was listed twice");
    for u in ids("u", 100) {
        if !removed.contains(&u) {
            assert!(
                distinct.contains(&u),
                "{u} stayed a member throughout and was skipped"
            );
        }
    }
}

#[test]
fn metrics_need_the_admin_token_when_the_config_asks_for_it() {
    let server = Server::start_with(|c| c.metrics.require_admin_token = true);
    let ws = server.workspace("acme");
    for token in [None, Some(ws.key.as_str()), Some("wrong")] {
        assert_eq!(
            server.call("GET", "/metrics", token, None).status,
            401,
            "{token:?}"
        );
    }
    let r = server.get("/metrics", ADMIN);
    assert_eq!(r.status, 200);
    assert!(
        r.body.as_str().unwrap().contains("cohortd_workspaces 1"),
        "{}",
        r.body
    );
    assert_eq!(
        server.call("GET", "/healthz", None, None).status,
        200,
        "health stays open"
    );
}
