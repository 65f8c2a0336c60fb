//! Filter evaluation runs on the read pool, with a time budget: a
//! pathological preview is stopped with 503 `read_budget_exceeded`, and
//! the probes answer while the pool's only thread is busy with it. One
//! workspace's reads hold at most its share of the pool, so another
//! workspace's reads still get a thread.

mod common;

use common::process::{Daemon, Home, Tenant};
use common::{wait_for, Resp, Server, Workspace};
use serde_json::{json, Value};

/// `n` profiles whose `bio` is a long text, each its own: what regexes
/// must scan (a regex runs once per distinct value).
fn profiles(ws: &Workspace, n: usize) {
    let bio = "lorem ipsum dolor sit amet ".repeat(40);
    let all: Vec<Value> = (0..n)
        .map(|i| json!({"external_id": format!("u{i}"), "bio": format!("{i} {bio}")}))
        .collect();
    for chunk in all.chunks(75) {
        let r = ws.post("/users/track", json!({ "attributes": chunk }));
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

/// An `or` of `n` regexes that match no profile (no word of the text has
/// six letters) and have no literal to search for first, so every one of
/// them scans every profile's text to its end.
fn pathological(n: usize) -> Value {
    let leaves: Vec<Value> = (0..n)
        .map(|i| json!({"attribute": {"name": "bio", "op": "matches_regex", "value": format!("[a-z]{{{}}}", i + 6)}}))
        .collect();
    json!({"filter": {"or": leaves}})
}

fn gauge(server: &Server, name: &str) -> Option<i64> {
    metric(&server.call("GET", "/metrics", None, None), name)
}

/// The value of the series `name` (labels included) in a `/metrics` answer.
fn metric(r: &Resp, name: &str) -> Option<i64> {
    r.body
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn assert_budget_error(r: &Resp) {
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["code"], "read_budget_exceeded", "{}", r.body);
    assert!(r.message().contains("reads.budget_millis"), "{}", r.body);
}

#[test]
fn a_read_past_its_budget_is_stopped_with_a_clear_error() {
    let server = Server::start_with(|c| {
        c.reads.threads = 1;
        c.reads.budget_millis = 1;
    });
    let ws = server.workspace("acme");
    profiles(&ws, 2_000);
    let r = ws.post("/segments/preview", pathological(100));
    assert_budget_error(&r);
    // Saved segments' reads too.
    let r = ws.post(
        "/segments",
        json!({"name": "slow", "filter": pathological(100)["filter"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["segment_id"].as_str().unwrap().to_string();
    assert_budget_error(&ws.get(&format!("/segments/{id}/count")));
    assert_budget_error(&ws.get(&format!("/segments/{id}/members")));
    // The thread is free again: a read that does not scan profiles answers.
    let r = ws.post("/segments/preview", json!({"filter": {"all": true}}));
    assert_eq!(
        (r.status, r.body["count"].as_u64()),
        (200, Some(2_000)),
        "{}",
        r.body
    );
    let metrics = server.call("GET", "/metrics", None, None).body.to_string();
    assert!(
        metrics.contains("cohortd_rejected_requests_total{reason=\\\"read_budget_exceeded\\\"} 3"),
        "{metrics}"
    );
}

#[test]
fn probes_answer_while_every_read_thread_is_busy() {
    let server = Server::start_with(|c| {
        c.http_workers = 2;
        c.reads.threads = 1;
        c.reads.queue_wait_millis = 50;
        c.reads.budget_millis = 3_000;
    });
    let ws = server.workspace("acme");
    profiles(&ws, 3_000);
    assert_eq!(gauge(&server, "cohortd_read_pool_busy"), Some(0));

    std::thread::scope(|s| {
        // More pathological previews than HTTP workers: on the workers
        // they would hold both, and the probes would wait behind them.
        let previews: Vec<_> = (0..3)
            .map(|_| s.spawn(|| ws.post("/segments/preview", pathological(100))))
            .collect();
        // Wait until the pool's only thread is evaluating one of them.
        let mut busy = false;
        for _ in 0..2_000 {
            if gauge(&server, "cohortd_read_pool_busy") == Some(1) {
                busy = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(busy, "a preview took the read thread");
        let health = server.call("GET", "/healthz", None, None);
        let ready = server.call("GET", "/readyz", None, None);
        // Still busy after both answered: they did not wait for it.
        let still = gauge(&server, "cohortd_read_pool_busy");
        assert_eq!((health.status, ready.status), (200, 200));
        assert_eq!(still, Some(1), "the probes answered while the preview ran");

        let outcomes: Vec<Resp> = previews.into_iter().map(|h| h.join().unwrap()).collect();
        for r in &outcomes {
            assert_eq!(r.status, 503, "{}", r.body);
            let code = r.body["code"].as_str().unwrap();
            assert!(
                ["read_budget_exceeded", "read_pool_busy"].contains(&code),
                "{}",
                r.body
            );
        }
        assert!(
            outcomes
                .iter()
                .any(|r| r.body["code"] == "read_budget_exceeded"),
            "the one that ran was stopped at its budget"
        );
        assert!(
            outcomes.iter().any(|r| r.body["code"] == "read_pool_busy"),
            "the others found the only thread busy past their wait"
        );
    });
    // And then the pool serves again.
    assert_eq!(gauge(&server, "cohortd_read_pool_busy"), Some(0));
    let r = ws.post("/segments/preview", json!({"filter": {"all": true}}));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A saved segment of every profile: its id.
/// A segment of every profile whose count goes through the read pool: an
/// `and`, which the engine never counts inline (a lone `{"all": true}` it
/// answers on the HTTP worker, `segment::counts_in_constant_time`).
fn segment_of_all(d: &Daemon, t: &Tenant) -> String {
    let r = d.post(
        "/segments",
        &t.key,
        json!({"name": "everyone", "filter": {"and": [{"all": true}, {"not": {"not": {"all": true}}}]}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["segment_id"].as_str().unwrap().to_string()
}

/// Two threads, so the automatic share is one per workspace. A debug-build
/// hook (`COHORTD_TEST_HOLD_READS`) holds workspace A's pooled reads on
/// their thread: A's next reads are refused although a thread is idle,
/// and B's reads keep answering on it.
#[test]
fn a_workspace_at_its_share_of_the_pool_leaves_threads_to_the_others() {
    let mut home = Home::with_config(&[
        ("\nthreads = 0", "\nthreads = 2"),
        ("queue_wait_millis = 200", "queue_wait_millis = 100"),
    ]);
    let hold = home.root().join("hold-reads");
    home.set_env("COHORTD_TEST_HOLD_READS", Some(hold.to_str().unwrap()));
    let d = home.start();
    let ids: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
    let (a, b) = (d.tenant("a", &ids), d.tenant("b", &ids[..3]));
    let (seg_a, seg_b) = (segment_of_all(&d, &a), segment_of_all(&d, &b));
    let r = d.post(
        "/segments",
        &a.key,
        json!({"name": "u3", "filter": {"not": {"attribute": {"name": "plan", "op": "exists"}}}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let seg_a_cheap = r.body["segment_id"].as_str().unwrap().to_string();
    let metrics = || d.call("GET", "/metrics", None, None).unwrap();

    std::fs::write(&hold, &a.id).unwrap();
    std::thread::scope(|scope| {
        let held = scope.spawn(|| d.get(&format!("/segments/{seg_a}/count"), &a.key));
        wait_for("A's read to be held on a read thread", || {
            d.output().contains("pooled read held")
        });
        assert_eq!(metric(&metrics(), "cohortd_read_pool_busy"), Some(1));

        // A is at its share: its reads wait out the queue wait and are
        // refused, although the other thread is idle.
        let refused = [
            d.get(&format!("/segments/{seg_a}/count"), &a.key),
            d.post(
                "/segments/preview",
                &a.key,
                json!({"filter": {"all": true}}),
            ),
        ];
        for r in &refused {
            assert_eq!(r.status, 503, "{}", r.body);
            assert_eq!(r.body["code"], "read_pool_busy", "{}", r.body);
            assert!(
                r.message().contains("reads.per_workspace_threads"),
                "{}",
                r.body
            );
        }
        // A count the index answers in constant time needs no thread.
        let r = d.get(&format!("/segments/{seg_a_cheap}/count"), &a.key);
        assert_eq!((r.status, &r.body), (200, &json!({"count": 5})));
        // B's reads get the other thread, one after another.
        for _ in 0..3 {
            let r = d.get(&format!("/segments/{seg_b}/count"), &b.key);
            assert_eq!((r.status, &r.body), (200, &json!({"count": 3})));
        }
        let r = d.get(&format!("/segments/{seg_b}/members"), &b.key);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["members"].as_array().unwrap().len(), 3);
        // A's first read was held all along.
        assert!(!held.is_finished());
        assert_eq!(metric(&metrics(), "cohortd_read_pool_busy"), Some(1));

        std::fs::remove_file(&hold).unwrap();
        let r = held.join().unwrap();
        assert_eq!((r.status, &r.body), (200, &json!({"count": 5})));
    });
    // A's share is back.
    let r = d.get(&format!("/segments/{seg_a}/count"), &a.key);
    assert_eq!((r.status, &r.body), (200, &json!({"count": 5})));
    let m = metrics();
    assert_eq!(
        metric(
            &m,
            "cohortd_rejected_requests_total{reason=\"read_share_busy\"}"
        ),
        Some(2),
        "{}",
        m.body
    );
    assert_eq!(
        metric(
            &m,
            "cohortd_rejected_requests_total{reason=\"read_pool_busy\"}"
        ),
        None,
        "the pool itself was never full"
    );
    assert_eq!(metric(&m, "cohortd_read_pool_busy"), Some(0));
}
