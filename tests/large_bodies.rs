//! Bodies over `http::body::INLINE_BYTES` (16 KiB) are parsed off the HTTP
//! worker: they must answer exactly as small ones do — the same results,
//! the same errors in the same order (partner keys before changes), the
//! same 413 past `max_body_bytes`.

mod common;

use common::{delta, Server, PARTNER_KEY};
use serde_json::{json, Value};

/// 1,000 external ids of ~200 bytes: a ~210 KiB partner body.
fn long_ids() -> Vec<String> {
    (0..1000).map(|i| format!("{i:0>200}")).collect()
}

#[test]
fn a_large_partner_delta_applies_like_a_small_one() {
    let s = Server::start();
    let ws = s.workspace("big");
    let ids = long_ids();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ws.users(&refs);
    let secret = ws.import_key("segment");
    let body = delta(&secret, "big", json!([{ "user_ids": ids }]));
    assert!(
        body.to_string().len() > 64 << 10,
        "the body is past the inline size"
    );

    // A bad partner key is refused before the changes are read.
    let mut bad = body.clone();
    bad["partner_api_key"] = json!("wrong");
    let r = s.call("POST", "/partners/segment/cohorts/users", None, Some(&bad));
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(ws.size("segment", "big"), None, "nothing was created");

    let r = s.call("POST", "/partners/segment/cohorts/users", None, Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["added"], 1000);
    assert_eq!(ws.size("segment", "big"), Some(1000));

    // Over 1,000 identifiers, large: Braze's text, nothing applied.
    let mut more = ids.clone();
    more.push("one-more".into());
    let body = delta(
        &secret,
        "big",
        json!([{ "user_ids": more, "should_remove": true }]),
    );
    let r = s.call("POST", "/partners/segment/cohorts/users", None, Some(&body));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Only 1,000 user_ids, device_ids, and aliases are allowed per request"
    );
    assert_eq!(ws.size("segment", "big"), Some(1000));
}

#[test]
fn large_malformed_bodies_get_the_same_errors() {
    let s = Server::start();
    let ws = s.workspace("broken");
    let filler = "x".repeat(200 << 10);
    // Partner: truncated JSON, then a large array that is not an object.
    let broken = format!(r#"{{"partner_api_key": "{PARTNER_KEY}", "pad": "{filler}""#);
    let r = s.post_raw("/partners/segment/cohorts/users", broken.as_bytes());
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON: "),
        "{}",
        r.body
    );
    let array = format!(r#"["{filler}"]"#);
    let r = s.post_raw("/partners/segment/cohorts/users", array.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(r.body["message"], "request body must be a JSON object");

    // Users API: a large valid track applies; a large broken one gets the
    // same 400 as a small one.
    let objects: Vec<Value> = (0..75)
        .map(|i| json!({ "external_id": format!("u{i}"), "pad": "y".repeat(4000) }))
        .collect();
    let r = s.call(
        "POST",
        "/users/track",
        Some(&ws.key),
        Some(&json!({ "attributes": objects })),
    );
    assert_eq!(r.status, 201, "a large valid track applies: {}", r.body);
    assert_eq!(r.body["attributes_processed"], 75);
    let small = ureq::post(&format!("{}/users/track", s.url))
        .set("Authorization", &format!("Bearer {}", ws.key))
        .send_bytes(b"{\"attributes\": [");
    let small = common::Resp::from(small);
    let large = ureq::post(&format!("{}/users/track", s.url))
        .set("Authorization", &format!("Bearer {}", ws.key))
        .send_bytes(format!("{{\"pad\": \"{filler}\", \"attributes\": [").as_bytes());
    let large = common::Resp::from(large);
    assert_eq!((small.status, large.status), (400, 400));
    assert_eq!(small.body["code"], "invalid_json");
    assert_eq!(large.body["code"], "invalid_json");
}

#[test]
fn a_large_filter_is_validated_off_the_worker_with_the_same_answers() {
    let s = Server::start();
    let ws = s.workspace("filters");
    ws.users(&["a", "b"]);
    // 900 attribute leaves with long names: ~100 KiB, within filter_leaves.
    let leaves: Vec<Value> = (0..900)
        .map(|i| json!({ "attribute": { "name": format!("{i:0>90}"), "op": "exists" } }))
        .collect();
    let filter = json!({ "or": leaves });
    let body = json!({ "name": "big", "filter": filter });
    assert!(body.to_string().len() > 64 << 10);
    let r = ws.post("/segments", body);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = ws.post("/segments/preview", json!({ "filter": filter }));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["count"], 0);
    // Over the leaf limit: the same 400 as ever, nothing created.
    let leaves: Vec<Value> = (0..1001).map(|_| json!({ "all": true })).collect();
    let r = ws.post(
        "/segments",
        json!({ "name": "too big", "filter": { "or": leaves } }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], "limit_exceeded");
    let list = ws.get("/segments");
    assert_eq!(list.body["segments"].as_array().unwrap().len(), 1);
}

#[test]
fn a_large_membership_check_answers_like_a_small_one() {
    let s = Server::start();
    let ws = s.workspace("checks");
    let ids = long_ids();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ws.users(&refs[..10]);
    let r = ws.post(
        "/segments",
        json!({ "name": "everyone", "filter": { "all": true } }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let seg = r.body["segment_id"].as_str().unwrap().to_string();
    let users: Vec<Value> = ids.iter().map(|id| json!({ "external_id": id })).collect();
    let body = json!({ "users": users });
    assert!(body.to_string().len() > 64 << 10);
    let r = ws.post(&format!("/segments/{seg}/membership"), body);
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    let members = results.iter().filter(|m| m["member"] == true).count();
    assert_eq!(members, 10, "exactly the ten existing users are members");

    // A broken entry deep in a large body is named, as in a small one.
    let mut users = users;
    users[700] = json!({ "external_id": 7 });
    let r = ws.post(
        &format!("/segments/{seg}/membership"),
        json!({ "users": users }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("users[700]"),
        "{}",
        r.body
    );
    // Not JSON at all: a 400, whatever the size.
    let broken = format!("{{\"users\": [\"{}", "x".repeat(100 << 10));
    let r = s.post_raw(&format!("/segments/{seg}/membership"), broken.as_bytes());
    assert_eq!(r.status, 401, "no key: refused before the body is read");
    let r = common::Resp::from(
        ureq::post(&format!("{}/segments/{seg}/membership", s.url))
            .set("Authorization", &format!("Bearer {}", ws.key))
            .send_bytes(broken.as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
}
