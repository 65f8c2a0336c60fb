//! Custom HTTP connectors through the HTTP API (SPEC §10, issue 12): their
//! management and bad input, delivery of the feed to a local receiver
//! through errors, timeouts and closed connections (nothing lost, order
//! kept, a retried batch with the same idempotency key), `kill -9` during
//! delivery, a restore, and the operator's view (`/metrics`, the CLI).

mod common;
// Shared with the delivery engine's unit tests, which use other parts.
#[allow(dead_code)]
#[path = "common/receiver.rs"]
mod receiver;

use std::collections::HashMap;
use std::time::Duration;

use common::process::{Daemon, Home};
use common::{delta, Server, ADMIN};
use receiver::{Behaviour, Receiver};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(60);

/// Quick retries, so that failures are retried within a test's patience.
fn fast(c: &mut cohortd::config::Config) {
    c.connectors.timeout_ms = 400;
    c.connectors.initial_backoff_ms = 10;
    c.connectors.max_backoff_ms = 100;
}

/// Every event of the workspace's feed, in order.
fn feed_events(get: impl Fn(&str) -> common::Resp) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = "0".to_string();
    loop {
        let r = get(&format!("/feed?after={after}&limit=1000"));
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.body["events"].as_array().unwrap().clone();
        let next = r.body["next_cursor"].as_str().unwrap().to_string();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
        after = next;
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// `/users/track` bodies of `n` custom events in all on `users`, in turn
/// (75 a request, Braze's most).
fn events_bodies(users: &[&str], n: usize, tag: &str) -> Vec<Value> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"external_id": users[i % users.len()], "name": format!("{tag}{i}"),
                   "time": "2024-05-01T10:00:00Z", "properties": {"i": i}})
        })
        .collect();
    events.chunks(75).map(|c| json!({ "events": c })).collect()
}

#[test]
fn connectors_are_created_listed_shown_and_deleted_and_bad_input_changes_nothing() {
    let server = Server::start_with(|c| c.connectors.max_per_workspace = 2);
    let ws = server.workspace("acme");
    let other = server.workspace("other");
    let rx = Receiver::start();
    let url = rx.url();
    for (body, says) in [
        (json!({"name": "h"}), "url"),
        (
            json!({"name": "h", "url": "ftp://x.test/in"}),
            "http or https",
        ),
        (json!({"name": "h", "url": "not a url"}), "url"),
        (json!({"name": "", "url": url}), "name"),
        (
            json!({"name": "h", "url": url, "event_types": []}),
            "event_types",
        ),
        (
            json!({"name": "h", "url": url, "event_types": ["users.Nope"]}),
            "unknown type",
        ),
        (
            json!({"name": "h", "url": url, "bearer_token": "a b"}),
            "bearer_token",
        ),
        (
            json!({"name": "h", "url": url, "secret": "x"}),
            "unknown field",
        ),
        (json!(["h"]), "invalid JSON"),
    ] {
        let r = ws.post("/connectors", body.clone());
        assert_eq!(r.status, 400, "{body} → {}", r.body);
        let message = r.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body} → {message}");
    }
    assert_eq!(ws.get("/connectors").body, json!({"connectors": []}));

    let r = ws.post(
        "/connectors",
        json!({"name": "heap", "url": url, "bearer_token": "s3cret-token",
               "event_types": ["users.cohorts.Entered", "users.behaviors.CustomEvent"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        !r.body.to_string().contains("s3cret"),
        "the token is never echoed"
    );
    let id = r.body["connector_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("conn_"), "{id}");
    assert_eq!(r.body["state"], "active");
    assert_eq!(r.body["url"], url.as_str());
    assert_eq!(
        r.body["event_types"],
        json!(["users.cohorts.Entered", "users.behaviors.CustomEvent"])
    );
    let list = ws.get("/connectors");
    assert_eq!(list.body["connectors"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["connectors"][0]["connector_id"], id.as_str());
    let one = ws.get(&format!("/connectors/{id}"));
    assert_eq!(one.status, 200, "{}", one.body);
    for field in ["sent", "failed", "lag_events", "lag_seconds"] {
        assert_eq!(one.body[field], 0, "{field}: {}", one.body);
    }
    assert_eq!(one.body["last_error"], Value::Null);
    assert!(!one.body.to_string().contains("s3cret"));
    // Another workspace sees none of it.
    assert_eq!(other.get(&format!("/connectors/{id}")).status, 404);
    assert_eq!(other.get("/connectors").body, json!({"connectors": []}));
    assert_eq!(other.delete(&format!("/connectors/{id}")).status, 404);

    // All types when none are named; the limit per workspace.
    let all = ws.post("/connectors", json!({"name": "all", "url": url}));
    assert_eq!(all.status, 201, "{}", all.body);
    assert_eq!(all.body["event_types"].as_array().unwrap().len(), 8);
    let over = ws.post("/connectors", json!({"name": "third", "url": url}));
    assert!(over.status >= 400, "{}", over.body);
    assert!(
        over.body["message"]
            .as_str()
            .unwrap()
            .contains("connectors.max_per_workspace"),
        "{}",
        over.body
    );
    assert_eq!(
        ws.get("/connectors").body["connectors"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    assert_eq!(ws.delete(&format!("/connectors/{id}")).status, 204);
    assert_eq!(ws.get(&format!("/connectors/{id}")).status, 404);
    assert_eq!(ws.delete(&format!("/connectors/{id}")).status, 404);
    assert_eq!(
        ws.get("/connectors").body["connectors"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The receiver answers 500 twice, hangs past the timeout, closes the
/// connection, then recovers: every event arrives once acknowledged, in
/// feed order, valid against the schema, with the bearer token, and the
/// failing batch is re-sent with the same idempotency key and body.
#[test]
fn a_connector_delivers_the_feed_in_order_through_failures() {
    let server = Server::start_with(fast);
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3"]);
    let secret = ws.import_key("segment");
    let rx = Receiver::start();
    rx.script([
        Behaviour::Status(500),
        Behaviour::Status(500),
        Behaviour::Hang(Duration::from_secs(2)),
        Behaviour::Close,
    ]);
    let r = ws.post(
        "/connectors",
        json!({"name": "heap", "url": rx.url(), "bearer_token": "tok"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["connector_id"].as_str().unwrap().to_string();

    for body in events_bodies(&["u1", "u2", "u3"], 230, "e") {
        let r = ws.post("/users/track", body);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = server.post_raw(
        "/partners/segment/cohorts/users",
        &serde_json::to_vec(&delta(
            &secret,
            "aud_1",
            json!([{"user_ids": ["u1", "u2"]}]),
        ))
        .unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let feed = feed_events(|p| ws.get(p));
    assert_eq!(feed.len(), 232);

    assert!(
        rx.wait_for_events(feed.len(), PATIENCE),
        "delivered {} of {}",
        rx.acknowledged_count(),
        feed.len()
    );
    let delivered = rx.acknowledged_events();
    assert_eq!(ids(&delivered), ids(&feed), "each once, in feed order");
    assert_eq!(delivered, feed, "as the feed serves them");
    common::check_event_shapes(&delivered);

    let requests = rx.requests();
    for q in &requests {
        assert_eq!(q.authorization(), Some("Bearer tok"));
        assert!(q.event_count() <= 100 && q.event_count() > 0);
        assert_eq!(q.header("content-type"), Some("application/json"));
    }
    // The first batch took five attempts, each with its key and events.
    let first = &requests[0];
    let key = first.idempotency_key().expect("a key").to_string();
    for q in &requests[..5] {
        assert_eq!(q.idempotency_key(), Some(key.as_str()));
        assert_eq!(q.events(), first.events());
    }
    assert!(requests[5..]
        .iter()
        .all(|q| q.idempotency_key() != Some(key.as_str())));
    let mut keys: Vec<&str> = requests[4..]
        .iter()
        .filter_map(|q| q.idempotency_key())
        .collect();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "one key per batch once it goes through");

    let status = ws.get(&format!("/connectors/{id}")).body;
    assert_eq!(status["sent"], feed.len() as u64, "{status}");
    assert!(status["failed"].as_u64().unwrap() >= 4, "{status}");
    assert_eq!(status["lag_events"], 0, "{status}");
    assert_eq!(status["state"], "active");
    let metrics = server.call("GET", "/metrics", None, None).body;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    let sent = format!(
        "cohortd_connector_sent_events{{workspace=\"{}\",connector=\"{id}\"}}",
        ws.id
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("{sent} {}", feed.len())),
        "{sent} in\n{metrics}"
    );
}

/// A connector that keeps failing past `disable_after_secs` is disabled,
/// says why, and stays disabled; its events stay in the feed.
#[test]
fn a_connector_failing_too_long_is_disabled_with_its_last_error() {
    let server = Server::start_with(|c| {
        fast(c);
        c.connectors.disable_after_secs = 1;
    });
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    let rx = Receiver::start();
    rx.script((0..1000).map(|_| Behaviour::Status(503)));
    let r = ws.post("/connectors", json!({"name": "down", "url": rx.url()}));
    let id = r.body["connector_id"].as_str().unwrap().to_string();
    for body in events_bodies(&["u1"], 3, "e") {
        let r = ws.post("/users/track", body);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        let s = ws.get(&format!("/connectors/{id}")).body;
        if s["state"] == "disabled" || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["state"], "disabled", "{status}");
    assert!(
        status["last_error"].as_str().unwrap().contains("503"),
        "{status}"
    );
    assert_eq!(status["sent"], 0);
    assert_eq!(status["lag_events"], 3);
    assert_eq!(
        ws.get("/connectors").body["connectors"][0]["state"],
        "disabled"
    );
    let tries = rx.requests().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rx.requests().len(),
        tries,
        "a disabled connector sends nothing"
    );
    assert_eq!(
        feed_events(|p| ws.get(p)).len(),
        3,
        "its events stay in the feed"
    );
}

fn track(d: &Daemon, key: &str, bodies: Vec<Value>) {
    for body in bodies {
        let r = d.post("/users/track", key, body);
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

/// `kill -9` while a batch is in flight: after the restart delivery goes
/// on from the last acknowledged batch, the one in flight is sent again
/// with the same key and events, and nothing else twice. The connector,
/// its progress and the CLI's view survive.
#[test]
fn kill_9_during_delivery_resumes_from_the_last_acknowledged_batch() {
    let home = Home::new();
    let d = home.start();
    let users: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
    let t = d.tenant("acme", &users);
    let rx = Receiver::start();
    // The first batch goes through; the second hangs until the kill.
    rx.script([Behaviour::Ok, Behaviour::Hang(Duration::from_secs(120))]);
    let r = d.post(
        "/connectors",
        &t.key,
        json!({"name": "heap", "url": rx.url(), "event_types": ["users.behaviors.CustomEvent"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["connector_id"].as_str().unwrap().to_string();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    track(&d, &t.key, events_bodies(&names, 250, "a"));
    assert!(
        rx.wait_for_requests(2, PATIENCE),
        "the second batch is in flight"
    );
    d.kill9();

    let d = home.start();
    track(&d, &t.key, events_bodies(&names, 30, "b"));
    let feed = feed_events(|p| d.get(p, &t.key));
    let custom: Vec<Value> = feed
        .into_iter()
        .filter(|e| e["event_type"] == "users.behaviors.CustomEvent")
        .collect();
    assert_eq!(custom.len(), 280);
    assert!(
        rx.wait_for_events(custom.len(), PATIENCE),
        "delivered {} of {}",
        rx.acknowledged_count(),
        custom.len()
    );
    assert_eq!(
        ids(&rx.acknowledged_events()),
        ids(&custom),
        "once each, in order"
    );
    common::check_event_shapes(&rx.acknowledged_events());
    let requests = rx.requests();
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, q) in requests.iter().enumerate() {
        seen.entry(q.idempotency_key().unwrap().to_string())
            .or_default()
            .push(i);
    }
    let again: Vec<&Vec<usize>> = seen.values().filter(|v| v.len() > 1).collect();
    assert_eq!(
        again,
        [&vec![1, 2]],
        "only the batch in flight was sent twice"
    );
    assert_eq!(requests[1].events(), requests[2].events(), "the same batch");

    let out = home.cli(&["connectors"], Some(d.addr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&id) && text.contains("active"), "{text}");
    let out = home.cli(&["connectors", "--json"], Some(d.addr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["connectors"][0]["connector_id"], id.as_str());
    assert_eq!(
        v["connectors"][0]["sent"],
        280 - requests[0].event_count(),
        "this process's"
    );
}

/// A restore brings back the connectors of its snapshot: one created after
/// it stops and is gone, one deleted after it comes back.
#[test]
fn a_restore_brings_back_the_snapshots_connectors() {
    let server = Server::start_with(fast);
    let ws = server.workspace("acme");
    let rx = Receiver::start();
    let kept = ws.post("/connectors", json!({"name": "kept", "url": rx.url()}));
    let kept = kept.body["connector_id"].as_str().unwrap().to_string();
    let snap = server.call("POST", "/admin/snapshots", Some(ADMIN), Some(&json!({})));
    assert!(snap.status < 300, "{}", snap.body);
    let snapshot_id = snap.body["snapshot_id"].as_str().unwrap().to_string();
    let later = ws.post("/connectors", json!({"name": "later", "url": rx.url()}));
    let later = later.body["connector_id"].as_str().unwrap().to_string();
    assert_eq!(ws.delete(&format!("/connectors/{kept}")).status, 204);
    let r = server.call(
        "POST",
        "/admin/restore",
        Some(ADMIN),
        Some(&json!({"snapshot_id": snapshot_id})),
    );
    assert!(r.status < 300, "{}", r.body);
    let list = ws.get("/connectors").body;
    let names: Vec<&str> = list["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connector_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, [kept.as_str()]);
    assert_eq!(ws.get(&format!("/connectors/{later}")).status, 404);
    assert_eq!(ws.get(&format!("/connectors/{kept}")).status, 200);
}
