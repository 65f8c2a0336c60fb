//! email, phone and braze_id as users API identifiers, over HTTP: which
//! profile an object finds or creates, how an external_id takes over an
//! email-only profile, braze_id round trips from member pages back into
//! the users API, and that cohort import still matches only external_id,
//! alias and device_id.
//!
//! Profiles are observed through segment previews: `{count, sample}` of
//! the profiles a filter matches, each listed with its braze_id.

mod common;

use common::{delta, Server, Workspace};
use serde_json::{json, Value};

fn track(ws: &Workspace, body: Value) -> Value {
    let r = ws.post("/users/track", body);
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// The profiles whose `name` attribute equals `value`, as listed.
fn with(ws: &Workspace, name: &str, value: Value) -> Vec<Value> {
    let r = ws.post(
        "/segments/preview",
        json!({"filter": {"attribute": {"name": name, "op": "equals", "value": value}},
               "sample_size": 100}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["sample"].as_array().unwrap().clone()
}

/// How many profiles there are.
fn everyone(ws: &Workspace) -> u64 {
    let r = ws.post("/segments/preview", json!({"filter": {"all": true}}));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["count"].as_u64().unwrap()
}

fn errors(body: &Value) -> Vec<(String, u64, String)> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["input_array"].as_str().unwrap().to_string(),
                e["index"].as_u64().unwrap(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_email_finds_its_holder_in_any_case_or_creates_an_email_only_profile() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let r = track(
        &ws,
        json!({"attributes": [{"email": "Ana@Example.com", "plan": "lead"}]}),
    );
    assert_eq!(r["attributes_processed"], 1);
    let leads = with(&ws, "plan", json!("lead"));
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["email"], "Ana@Example.com", "stored as given");
    let braze_id = leads[0]["braze_id"].clone();
    // Another case finds the same profile; an event by email too.
    track(
        &ws,
        json!({"attributes": [{"email": "ana@EXAMPLE.COM", "score": 3}],
               "events": [{"email": "ANA@example.com", "name": "open", "time": "2024-01-01T00:00:00Z"}]}),
    );
    assert_eq!(everyone(&ws), 1);
    let scored = with(&ws, "score", json!(3));
    assert_eq!(scored[0]["braze_id"], braze_id);
    assert_eq!(
        scored[0]["email"], "ana@EXAMPLE.COM",
        "the attribute took the value sent last"
    );
    // _update_existing_only skips an unknown email, and says so by index.
    let r = track(
        &ws,
        json!({"attributes": [{"email": "ana@example.com", "vip": true},
                              {"email": "nobody@example.com", "_update_existing_only": true}]}),
    );
    assert_eq!(r["attributes_processed"], 1);
    let e = errors(&r);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].0.as_str(), e[0].1), ("attributes", 1));
    assert!(e[0].2.contains("no user with email"), "{}", e[0].2);
    assert_eq!(everyone(&ws), 1);
}

#[test]
fn the_most_recently_updated_holder_of_an_email_wins() {
    let server = Server::start();
    let ws = server.workspace("acme");
    track(
        &ws,
        json!({"attributes": [{"external_id": "u1", "email": "x@example.com"},
                              {"external_id": "u2", "email": "X@example.com"}]}),
    );
    track(
        &ws,
        json!({"attributes": [{"email": "x@example.com", "hit": 1}]}),
    );
    assert_eq!(with(&ws, "hit", json!(1))[0]["external_id"], "u2");
    // u1 is updated later: it is found now.
    track(
        &ws,
        json!({"attributes": [{"external_id": "u1", "seen": true}]}),
    );
    track(
        &ws,
        json!({"attributes": [{"email": "x@example.com", "hit": 2}]}),
    );
    assert_eq!(with(&ws, "hit", json!(2))[0]["external_id"], "u1");
    // u1 changes its email: u2 is the only holder again.
    track(
        &ws,
        json!({"attributes": [{"external_id": "u1", "email": "new@example.com"}]}),
    );
    track(
        &ws,
        json!({"attributes": [{"email": "x@example.com", "hit": 3}]}),
    );
    assert_eq!(with(&ws, "hit", json!(3))[0]["external_id"], "u2");
    // Removing the attribute (null) removes it from the index.
    track(
        &ws,
        json!({"attributes": [{"external_id": "u2", "email": null}]}),
    );
    track(
        &ws,
        json!({"attributes": [{"email": "x@example.com", "hit": 4}]}),
    );
    let fresh = with(&ws, "hit", json!(4));
    assert_eq!(fresh.len(), 1);
    assert_eq!(
        fresh[0]["email"], "x@example.com",
        "a new email-only profile"
    );
    assert_eq!(everyone(&ws), 3);
}

#[test]
fn phones_are_e164_and_a_bad_one_is_that_objects_error() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let r = track(
        &ws,
        json!({"attributes": [
            {"phone": "+351912345678", "plan": "lead"},
            {"phone": "+351 912 345 678", "plan": "bad"},
            {"phone": "912345678", "plan": "bad"},
            {"phone": "+351912345678", "score": 1},
        ]}),
    );
    assert_eq!(r["attributes_processed"], 2);
    let e = errors(&r);
    assert_eq!(
        e.iter()
            .map(|(a, i, _)| (a.as_str(), *i))
            .collect::<Vec<_>>(),
        [("attributes", 1), ("attributes", 2)]
    );
    assert!(e[0].2.starts_with("phone: must be an E.164"), "{}", e[0].2);
    let leads = with(&ws, "plan", json!("lead"));
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["phone"], "+351912345678");
    assert_eq!(
        with(&ws, "score", json!(1))[0]["braze_id"],
        leads[0]["braze_id"]
    );
    // A phone attribute that is not E.164 is stored, just not an identifier.
    track(
        &ws,
        json!({"attributes": [{"external_id": "u1", "phone": "(555) 123-4567"}]}),
    );
    assert_eq!(with(&ws, "phone", json!("(555) 123-4567")).len(), 1);
    assert_eq!(everyone(&ws), 2);
}

#[test]
fn an_external_id_takes_over_an_email_only_profile_and_wins_over_another() {
    let server = Server::start();
    let ws = server.workspace("acme");
    track(
        &ws,
        json!({"attributes": [{"email": "anon@example.com", "plan": "lead"},
                              {"phone": "+4790000000", "plan": "lead"}]}),
    );
    let before = with(&ws, "plan", json!("lead"));
    // external_id nobody holds + the email-only profile's email: it becomes u1.
    track(
        &ws,
        json!({"attributes": [{"external_id": "u1", "email": "ANON@example.com", "plan": "gold"}],
               "events": [{"external_id": "u2", "phone": "+4790000000", "name": "login", "time": "2024-01-01T00:00:00Z"}]}),
    );
    assert_eq!(everyone(&ws), 2, "no profile created");
    let gold = with(&ws, "plan", json!("gold"));
    assert_eq!(gold[0]["external_id"], "u1");
    let anon_id = before.iter().find(|m| m.get("email").is_some()).unwrap()["braze_id"].clone();
    assert_eq!(gold[0]["braze_id"], anon_id, "the same profile, identified");
    let phone_id = before.iter().find(|m| m.get("phone").is_some()).unwrap()["braze_id"].clone();
    let u2 = with(&ws, "plan", json!("lead"));
    assert_eq!(u2.len(), 1);
    assert_eq!(
        (u2[0]["external_id"].clone(), u2[0]["braze_id"].clone()),
        (json!("u2"), phone_id)
    );
    // Both exist and differ: the external_id wins, and the email now finds
    // it (the most recently updated holder). Nothing is merged.
    track(
        &ws,
        json!({"attributes": [{"email": "other@example.com", "plan": "other"}]}),
    );
    track(
        &ws,
        json!({"attributes": [{"external_id": "u1", "email": "other@example.com", "tier": 1}]}),
    );
    assert_eq!(everyone(&ws), 3);
    track(
        &ws,
        json!({"attributes": [{"email": "other@example.com", "hit": true}]}),
    );
    assert_eq!(with(&ws, "hit", json!(true))[0]["external_id"], "u1");
    // An identified holder is never taken over: u3 is a new profile.
    track(
        &ws,
        json!({"attributes": [{"external_id": "u3", "email": "other@example.com"}]}),
    );
    assert_eq!(everyone(&ws), 4);
}

#[test]
fn a_braze_id_from_a_member_page_comes_back_into_track_and_delete() {
    let server = Server::start();
    let ws = server.workspace("acme");
    track(
        &ws,
        json!({"attributes": [{"external_id": "u1", "plan": "a"},
                              {"external_id": "u2", "plan": "b"},
                              {"email": "e@example.com", "plan": "c"}]}),
    );
    let id = |plan: &str| {
        with(&ws, "plan", json!(plan))[0]["braze_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (b1, b2, b3) = (id("a"), id("b"), id("c"));
    assert_eq!(b1.len(), 24);
    assert!(b1 != b2 && b2 != b3);
    let r = track(
        &ws,
        json!({"attributes": [
            {"braze_id": b1, "score": 1},
            {"braze_id": b1.to_uppercase(), "external_id": "u1", "score": 2},
            {"braze_id": b1, "external_id": "u2", "score": 3},
            {"braze_id": b2, "external_id": "nobody", "score": 4},
            {"braze_id": "ffffffffffffffffffffffff", "score": 5},
            {"braze_id": b3, "score": 6},
        ]}),
    );
    assert_eq!(r["attributes_processed"], 3);
    let e = errors(&r);
    assert_eq!(
        e.iter()
            .map(|(a, i, _)| (a.as_str(), *i))
            .collect::<Vec<_>>(),
        [("attributes", 2), ("attributes", 3), ("attributes", 4)]
    );
    assert!(e[0].2.contains("name different users"), "{}", e[0].2);
    assert!(e[2].2.contains("matches no user"), "{}", e[2].2);
    assert_eq!(with(&ws, "score", json!(2))[0]["external_id"], "u1");
    assert!(with(&ws, "score", json!(3)).is_empty());
    assert!(with(&ws, "score", json!(4)).is_empty());
    assert_eq!(with(&ws, "score", json!(6))[0]["email"], "e@example.com");
    assert_eq!(everyone(&ws), 3, "a braze_id never creates");
    // Delete by braze_id; the id names nobody afterwards, and is not reused.
    let r = ws.post(
        "/users/delete",
        json!({"braze_ids": [b2, "nothex"], "email_addresses": ["E@EXAMPLE.COM"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["deleted"], 2);
    assert_eq!(errors(&r.body).len(), 1);
    track(
        &ws,
        json!({"attributes": [{"external_id": "u2", "plan": "again"}]}),
    );
    let again = id("again");
    assert!(again != b2 && again != b3, "ids are never reused");
    let r = track(&ws, json!({"attributes": [{"braze_id": b2, "x": 1}]}));
    assert!(errors(&r)[0].2.contains("matches no user"));
    // Another workspace's braze_id names nobody here.
    let other = server.workspace("other");
    let r = track(&other, json!({"attributes": [{"braze_id": b1, "x": 1}]}));
    assert_eq!(r["attributes_processed"], 0);
}

#[test]
fn cohort_import_does_not_match_email_phone_or_braze_id() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let secret = ws.import_key("hightouch");
    track(
        &ws,
        json!({"attributes": [{"email": "e@example.com"}, {"phone": "+4790000000"},
                              {"external_id": "u1", "email": "u1@example.com"}]}),
    );
    let b1 = with(&ws, "email", json!("u1@example.com"))[0]["braze_id"].clone();
    let r = ws.server.call(
        "POST",
        "/partners/hightouch/cohorts/users",
        None,
        Some(&delta(
            &secret,
            "c",
            json!([{"user_ids": ["e@example.com", "+4790000000", b1, "u1@example.com", "u1"]}]),
        )),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.body["added"].as_u64(), r.body["unmatched"].as_u64()),
        (Some(1), Some(4))
    );
    let members = ws.members_with_braze_ids("hightouch", "c");
    assert_eq!(members, [json!({"external_id": "u1", "braze_id": b1})]);
}
