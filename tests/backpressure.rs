//! A saturated engine answers 503 and applies nothing; everything it
//! acknowledged is applied.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::{delta, Server};
use serde_json::json;

#[test]
fn a_saturated_engine_refuses_with_503_and_applies_nothing_of_it() {
    let server = Server::start_with(|c| {
        c.engine.max_inflight_writes = 1;
        c.http_workers = 4;
    });
    let ws = server.workspace("acme");
    let ids: Vec<String> = (0..640).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ws.users(&refs);
    let secret = ws.import_key("segment");

    let accepted = Mutex::new(BTreeSet::new());
    let refused = Mutex::new(BTreeSet::new());
    std::thread::scope(|s| {
        for t in 0..16 {
            let (server, secret, accepted, refused) = (&server, &secret, &accepted, &refused);
            s.spawn(move || {
                for i in 0..40 {
                    let user = format!("u{}", t * 40 + i);
                    let body = delta(secret, "c", json!([{ "user_ids": [user] }]));
                    let r = server.post_raw(
                        "/partners/segment/cohorts/users",
                        body.to_string().as_bytes(),
                    );
                    match r.status {
                        201 => accepted.lock().unwrap().insert(user),
                        503 => {
                            assert!(r.message().contains("retry"), "{}", r.body);
                            refused.lock().unwrap().insert(user)
                        }
                        other => panic!("unexpected {other}: {}", r.body),
                    };
                }
            });
        }
    });
    let accepted = accepted.into_inner().unwrap();
    let refused = refused.into_inner().unwrap();
    assert_eq!(accepted.len() + refused.len(), 640);
    assert!(
        !refused.is_empty(),
        "16 writers through one slot must saturate it"
    );
    let members: BTreeSet<String> = ws.member_ids("segment", "c").into_iter().collect();
    assert_eq!(
        members, accepted,
        "exactly the acknowledged writes are applied"
    );
    let metrics = server.call("GET", "/metrics", None, None).body.to_string();
    assert!(
        metrics.contains("cohortd_rejected_requests_total{reason=\\\"saturated\\\"}"),
        "{metrics}"
    );
}
