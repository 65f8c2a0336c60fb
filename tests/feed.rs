//! The change feed through the HTTP API (SPEC §10, issue 12): cohort
//! membership changes as `users.cohorts.Entered` / `Exited` events, in
//! order, with stable ids and cursors, a long poll, bad input refused,
//! retention's 410, and the same feed after `kill -9` and a restore.

mod common;

use std::time::{Duration, Instant};

use common::process::Home;
use common::{delta, Server, ADMIN, PARTNER_KEY};
use serde_json::{json, Value};

fn push(server: &Server, secret: &str, cohort: &str, add: &[&str], remove: &[&str]) {
    let mut changes = Vec::new();
    if !add.is_empty() {
        changes.push(json!({"user_ids": add}));
    }
    if !remove.is_empty() {
        changes.push(json!({"user_ids": remove, "should_remove": true}));
    }
    let r = server.post_raw(
        "/partners/segment/cohorts/users",
        &serde_json::to_vec(&delta(secret, cohort, Value::Array(changes))).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Checks every event against the event schema kept in the repo
/// (`docs/schemas/currents-events.schema.json`).
fn check_shapes(events: &Value) {
    common::check_event_shapes(events.as_array().unwrap());
}

/// A `/metrics` gauge's value.
fn metric(server: &Server, name: &str) -> u64 {
    let text = server.call("GET", "/metrics", None, None).body;
    let text = text.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

/// `(event_type, external_user_id, cohort_id)` of each event.
fn summary(events: &Value) -> Vec<(String, String, String)> {
    triples(events, "", "cohort_id")
}

/// `(event_type, external_user_id, properties[property])` of each event
/// whose type starts with `types`.
fn triples(events: &Value, types: &str, property: &str) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"].as_str().unwrap().starts_with(types))
        .map(|e| {
            (
                text(&e["event_type"]),
                text(&e["user"]["external_user_id"]),
                text(&e["properties"][property]),
            )
        })
        .collect()
}

fn s(t: &str, u: &str, c: &str) -> (String, String, String) {
    (t.into(), u.into(), c.into())
}

#[test]
fn cohort_changes_come_out_in_order_with_stable_ids_and_cursors() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3"]);
    let secret = ws.import_key("segment");
    assert_eq!(server.get("/feed", "nope").status, 401);
    let empty = ws.get("/feed");
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body, json!({"events": [], "next_cursor": "0"}));

    push(&server, &secret, "aud_1", &["u1", "u2", "ghost"], &[]);
    // Renamed between two deltas: each event has the name as of its change.
    let name = json!({"partner_api_key": PARTNER_KEY, "client_secret": secret,
                      "cohort_id": "aud_1", "name": "Big spenders",
                      "created_at": "2024-01-01T00:00:00Z"});
    let r = server.post_raw(
        "/partners/segment/cohorts",
        &serde_json::to_vec(&name).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    push(&server, &secret, "aud_1", &["u3"], &["u1"]);
    // Adding a member twice, or removing a stranger, changes nothing.
    push(&server, &secret, "aud_1", &["u2"], &["u1"]);

    let all = ws.get("/feed");
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        summary(&all.body["events"]),
        [
            s("users.cohorts.Entered", "u1", "aud_1"),
            s("users.cohorts.Entered", "u2", "aud_1"),
            s("users.cohorts.Exited", "u1", "aud_1"),
            s("users.cohorts.Entered", "u3", "aud_1"),
        ]
    );
    let first = &all.body["events"][0];
    assert_eq!(first["properties"]["partner"], "segment");
    assert_eq!(first["properties"]["name"], "aud_1", "not named yet");
    assert_eq!(all.body["events"][3]["properties"]["name"], "Big spenders");
    assert!(first["time"].as_i64().unwrap() > 1_700_000_000);
    let braze = first["user"]["user_id"].as_str().unwrap();
    assert_eq!(braze.len(), 24, "a braze_id: {braze}");
    let ids: Vec<&str> = all.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "ids are unique: {ids:?}");
    assert_eq!(all.body["next_cursor"], "4");
    check_shapes(&all.body["events"]);
    assert_eq!(metric(&server, "cohortd_feed_events"), 4);
    assert_eq!(metric(&server, "cohortd_feed_write_errors"), 0);

    // Pages: a limit and a cursor; the same cursor gives the same events.
    let p1 = ws.get("/feed?limit=3");
    assert_eq!(p1.body["events"].as_array().unwrap().len(), 3);
    let next = p1.body["next_cursor"].as_str().unwrap().to_string();
    let p2 = ws.get(&format!("/feed?after={next}&limit=3"));
    assert_eq!(p2.body["events"][0], all.body["events"][3]);
    assert_eq!(ws.get(&format!("/feed?after={next}&limit=3")).body, p2.body);
    // A type filter, and a cursor that moves past what it skipped.
    let exits = ws.get("/feed?event_types=users.cohorts.Exited");
    assert_eq!(
        summary(&exits.body["events"]),
        [s("users.cohorts.Exited", "u1", "aud_1")]
    );
    assert_eq!(exits.body["next_cursor"], "4");
    // Nothing new: an empty page at the same cursor.
    let none = ws.get("/feed?after=4&wait_ms=50");
    assert_eq!(none.body, json!({"events": [], "next_cursor": "4"}));
}

/// `/users/track` events and purchases, an identify that merges, and a
/// delete come out as Currents events, with the cohort memberships the
/// merge and the delete changed, in the order the writes applied.
#[test]
fn users_api_writes_come_out_as_currents_events() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2"]);
    let secret = ws.import_key("segment");
    let anon = ws.post(
        "/users/track",
        json!({"attributes": [{"device_id": "d1", "plan": "x"}]}),
    );
    assert_eq!(anon.status, 201, "{}", anon.body);
    push(&server, &secret, "aud_1", &["u1"], &[]);
    let r = server.post_raw(
        "/partners/segment/cohorts/users",
        &serde_json::to_vec(&delta(&secret, "aud_1", json!([{"device_ids": ["d1"]}]))).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let before = ws.get("/feed?limit=10000").body["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();

    let r = ws.post(
        "/users/track",
        json!({
            "events": [{"external_id": "u1", "name": "open", "time": "2024-05-01T10:00:00Z",
                        "properties": {"k": [1, {"x": null}]}}],
            "purchases": [{"external_id": "u2", "product_id": "sku", "currency": "USD",
                           "price": 9.5, "time": "2024-05-02T00:00:00Z",
                           "properties": {"color": "red"}},
                          {"external_id": "ghost", "_update_existing_only": true,
                           "product_id": "sku", "currency": "USD", "price": 1,
                           "time": "2024-05-02T00:00:00Z"}],
        }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = ws.post(
        "/users/identify",
        json!({"devices_to_identify": [{"external_id": "u2", "device_id": "d1"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = ws.post("/users/delete", json!({"external_ids": ["u1"]}));
    assert!(r.status < 300, "{}", r.body);

    let page = ws.get(&format!("/feed?after={before}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let events = &page.body["events"];
    check_shapes(events);
    let e = events.as_array().unwrap();
    let types: Vec<&str> = e
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "users.behaviors.CustomEvent",
            "users.behaviors.Purchase",
            "users.UserOrphan",
            "users.cohorts.Exited",
            "users.cohorts.Entered",
            "users.UserDeleteRequest",
            "users.cohorts.Exited",
        ],
        "{events}"
    );
    // The event's own time, its name and properties.
    assert_eq!(e[0]["time"], 1714557600);
    assert_eq!(e[0]["user"]["external_user_id"], "u1");
    assert_eq!(
        e[0]["properties"],
        json!({"name": "open", "custom_properties": {"k": [1, {"x": null}]}})
    );
    assert_eq!(e[1]["time"], 1714608000);
    assert_eq!(
        e[1]["properties"],
        json!({"product_id": "sku", "currency": "USD", "price": 9.5,
               "purchase_properties": {"color": "red"}})
    );
    let u2 = e[1]["user"]["user_id"].clone();
    // The anonymous profile, as it was, merged into u2; it leaves the
    // cohort and u2 enters it.
    let orphan = &e[2]["user"];
    assert_eq!(orphan["device_id"], "d1");
    assert!(orphan.get("external_user_id").is_none(), "{orphan}");
    assert_ne!(orphan["user_id"], u2);
    assert_eq!(e[2]["properties"], json!({"orphaned_by_id": u2}));
    assert_eq!(e[3]["user"], *orphan);
    assert_eq!(e[3]["properties"]["cohort_id"], "aud_1");
    assert_eq!(e[4]["user"]["user_id"], u2);
    assert_eq!(e[4]["user"]["external_user_id"], "u2");
    // The deleted profile, as it was, and its membership.
    assert_eq!(e[5]["user"]["external_user_id"], "u1");
    assert_eq!(e[5]["properties"], json!({}));
    assert_eq!(e[6]["user"], e[5]["user"]);
    let ids: std::collections::HashSet<&str> =
        e.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), e.len(), "ids are unique");
    // Read again: the same events.
    assert_eq!(ws.get(&format!("/feed?after={before}")).body, page.body);
}

/// `(event_type, external_user_id, segment_id)` of each segment event.
fn segment_summary(events: &Value) -> Vec<(String, String, String)> {
    triples(events, "users.segments.", "segment_id")
}

fn save_segment(post: impl Fn(&str, Value) -> common::Resp, name: &str, filter: Value) -> String {
    let r = post("/segments", json!({"name": name, "filter": filter}));
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["segment_id"].as_str().unwrap().to_string()
}

/// Saved segments report who enters and leaves them, whatever write
/// moved them (a delta, a track of an attribute or an event, a delete),
/// only for the segments that read what changed; saving a segment makes
/// no events.
#[test]
fn saved_segments_report_who_enters_and_exits() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2", "u3", "u4"]);
    let secret = ws.import_key("segment");
    let track = |body: Value| {
        let r = ws.post("/users/track", body);
        assert_eq!(r.status, 201, "{}", r.body);
    };
    track(json!({"attributes": [{"external_id": "u4", "plan": "gold"}]}));
    // Segments name cohorts that exist: a delta naming nobody known makes
    // them.
    push(&server, &secret, "aud_1", &["ghost"], &[]);
    push(&server, &secret, "aud_2", &["ghost"], &[]);
    let gold = save_segment(
        |p, b| ws.post(p, b),
        "gold members",
        json!({"and": [{"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
                       {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}]}),
    );
    let openers = save_segment(
        |p, b| ws.post(p, b),
        "openers",
        json!({"event": {"name": "open", "op": "more_than", "count": 0}}),
    );
    let anyone = save_segment(
        |p, b| ws.post(p, b),
        "not in aud_2",
        json!({"not": {"cohort": {"partner": "segment", "cohort_id": "aud_2"}}}),
    );
    let start = ws.get("/feed?limit=10000").body["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();

    track(json!({"attributes": [{"external_id": "u1", "plan": "gold"}]}));
    push(&server, &secret, "aud_1", &["u1", "u2"], &[]);
    track(json!({"attributes": [{"external_id": "u2", "plan": "gold"}]}));
    track(
        json!({"events": [{"external_id": "u3", "name": "open", "time": "2024-05-01T10:00:00Z"}]}),
    );
    push(&server, &secret, "aud_1", &[], &["u1"]);
    // A new profile matches "not in aud_2" at once.
    track(json!({"attributes": [{"external_id": "u5", "city": "Lisbon"}]}));
    push(&server, &secret, "aud_2", &["u3"], &[]);
    let r = ws.post("/users/delete", json!({"external_ids": ["u2"]}));
    assert!(r.status < 300, "{}", r.body);
    // Saved now: no events for who matches it already.
    save_segment(
        |p, b| ws.post(p, b),
        "late",
        json!({"attribute": {"name": "plan", "op": "exists"}}),
    );

    let page = ws.get(&format!("/feed?after={start}&limit=10000"));
    check_shapes(&page.body["events"]);
    let seg =
        |t: &str, u: &str, id: &str| (format!("users.segments.{t}"), u.to_string(), id.to_string());
    assert_eq!(
        segment_summary(&page.body["events"]),
        [
            seg("Entered", "u1", &gold),
            seg("Entered", "u2", &gold),
            seg("Entered", "u3", &openers),
            seg("Exited", "u1", &gold),
            seg("Entered", "u5", &anyone),
            seg("Exited", "u3", &anyone),
            seg("Exited", "u2", &gold),
            seg("Exited", "u2", &anyone),
        ]
    );
    let e = page.body["events"].as_array().unwrap();
    let first = e
        .iter()
        .find(|e| e["event_type"] == "users.segments.Entered")
        .unwrap();
    assert_eq!(
        first["properties"],
        json!({"segment_id": gold, "name": "gold members"})
    );
    // The segments' own answers agree with the events.
    let count = |id: &str| {
        ws.get(&format!("/segments/{id}/count")).body["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count(&gold), 0);
    assert_eq!(count(&openers), 1);
    // u1, u4 and u5 (u2 deleted, u3 in aud_2).
    assert_eq!(count(&anyone), 3);
    // With the event type filter, only these.
    let only = ws.get(&format!(
        "/feed?after={start}&limit=10000&event_types=users.segments.Entered,users.segments.Exited"
    ));
    assert_eq!(only.body["events"].as_array().unwrap().len(), 8);
}

/// Concurrent deltas and tracks on one workspace with saved segments: for
/// each profile, its segment events alternate (entered, exited, …), and
/// the last one says whether it is a member now. Nothing is missed or
/// said twice, whatever order the writes raced in.
#[test]
fn segment_events_stay_exact_under_concurrent_writes() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let ids: Vec<String> = (0..60).map(|i| format!("u{i}")).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    ws.users(&names);
    let secret = ws.import_key("segment");
    push(&server, &secret, "aud_1", &["ghost"], &[]);
    let gold = save_segment(
        |p, b| ws.post(p, b),
        "gold in aud_1",
        json!({"and": [{"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
                       {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}]}),
    );
    let outside = save_segment(
        |p, b| ws.post(p, b),
        "not in aud_1",
        json!({"not": {"cohort": {"partner": "segment", "cohort_id": "aud_1"}}}),
    );
    let members = |segment: &str| {
        let r = ws.get(&format!("/segments/{segment}/members?limit=1000"));
        assert_eq!(r.status, 200, "{}", r.body);
        let mut m: Vec<String> = r.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["external_id"].as_str().unwrap().to_string())
            .collect();
        m.sort();
        m
    };
    // Saved: everyone is outside aud_1, nobody is gold in it.
    let at_start = [
        (gold.clone(), members(&gold)),
        (outside.clone(), members(&outside)),
    ];
    assert_eq!((at_start[0].1.len(), at_start[1].1.len()), (0, 60));
    std::thread::scope(|s| {
        for t in 0..4usize {
            let (server, secret, names, ws) = (&server, &secret, &names, &ws);
            s.spawn(move || {
                for round in 0..12usize {
                    let pick: Vec<&str> = (0..names.len())
                        .filter(|i| (i * 7 + t * 3 + round) % 5 == 0)
                        .map(|i| names[i])
                        .collect();
                    if (round + t) % 3 == 0 {
                        let plan = if round % 2 == 0 { "gold" } else { "free" };
                        let attrs: Vec<Value> = pick
                            .iter()
                            .map(|u| json!({"external_id": u, "plan": plan}))
                            .collect();
                        let r = ws.post("/users/track", json!({ "attributes": attrs }));
                        assert_eq!(r.status, 201, "{}", r.body);
                    } else if round % 2 == 0 {
                        push(server, secret, "aud_1", &pick, &[]);
                    } else {
                        push(server, secret, "aud_1", &[], &pick);
                    }
                }
            });
        }
    });
    let events = ws.get("/feed?limit=10000").body["events"].clone();
    check_shapes(&events);
    let mut moved = 0;
    for (segment, initial) in &at_start {
        // Whether each profile is in, from the start through its events.
        let mut inside: std::collections::BTreeMap<String, bool> = names
            .iter()
            .map(|u| (u.to_string(), initial.iter().any(|m| m == u)))
            .collect();
        for (kind, user, id) in segment_summary(&events) {
            if &id != segment {
                continue;
            }
            let was = inside.insert(user.clone(), kind == "users.segments.Entered");
            assert_eq!(
                was,
                Some(kind == "users.segments.Exited"),
                "{segment}: {kind} for {user}, who was in: {was:?}"
            );
            moved += 1;
        }
        let now: Vec<String> = inside
            .into_iter()
            .filter(|(_, i)| *i)
            .map(|(u, _)| u)
            .collect();
        assert_eq!(
            now,
            members(segment),
            "{segment}: the events end where the members are"
        );
    }
    assert!(
        moved > 50,
        "the writes moved profiles in and out ({moved} events)"
    );
}

/// The feed is a function of the log: with saved segments and writes
/// racing in from several clients, a server that lost its feed files
/// makes exactly the same events again (same ids, order and content) by
/// replaying the log. This holds only because each write's segments are
/// brought up to date before the next applies (`Applier::needs_quiet`).
#[test]
fn a_lost_feed_is_made_again_the_same_from_the_log() {
    let home = Home::new();
    let d = home.start();
    let ids: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let t = d.tenant("acme", &ids);
    let r = d.delta(&t, "aud_1", &ids[39..], true).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    save_segment(
        |p, b| d.post(p, &t.key, b),
        "gold in aud_1",
        json!({"and": [{"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
                       {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}]}),
    );
    save_segment(
        |p, b| d.post(p, &t.key, b),
        "not in aud_1",
        json!({"not": {"cohort": {"partner": "segment", "cohort_id": "aud_1"}}}),
    );
    std::thread::scope(|s| {
        for k in 0..4usize {
            let (d, t, ids) = (&d, &t, &ids);
            s.spawn(move || {
                for round in 0..10usize {
                    let pick: Vec<String> = (0..ids.len())
                        .filter(|i| (i * 3 + k + round) % 4 == 0)
                        .map(|i| ids[i].clone())
                        .collect();
                    if (round + k) % 3 == 0 {
                        let attrs: Vec<Value> = pick
                            .iter()
                            .map(|u| json!({"external_id": u, "plan": if round % 2 == 0 { "gold" } else { "free" }}))
                            .collect();
                        let r = d.post("/users/track", &t.key, json!({ "attributes": attrs }));
                        assert_eq!(r.status, 201, "{}", r.body);
                    } else {
                        let r = d.delta(t, "aud_1", &pick, round % 2 == 1).unwrap();
                        assert_eq!(r.status, 201, "{}", r.body);
                    }
                }
            });
        }
    });
    let before = d.get("/feed?limit=10000", &t.key).body;
    assert!(segment_summary(&before["events"]).len() > 20, "{before}");
    d.kill9();
    // No snapshot was taken: replay starts at the log's first record.
    let snapshots = std::fs::read_dir(home.data_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "snap")
        })
        .count();
    assert_eq!(snapshots, 0);
    std::fs::remove_dir_all(home.data_dir().join("feed")).expect("remove the feed");
    let d = home.start();
    assert_eq!(d.get("/feed?limit=10000", &t.key).body, before);
}

/// Segment events after `kill -9`: the members the segment had are
/// rebuilt with the rest (snapshot, then replay), so the next writes make
/// exactly the events they should, none twice.
#[test]
fn segment_events_go_on_right_after_kill_9() {
    let home = Home::new();
    let d = home.start();
    let ids: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    let t = d.tenant("acme", &ids);
    let gold: Vec<Value> = ids
        .iter()
        .step_by(2)
        .map(|id| json!({"external_id": id, "plan": "gold"}))
        .collect();
    let r = d.post("/users/track", &t.key, json!({ "attributes": gold }));
    assert_eq!(r.status, 201, "{}", r.body);
    // Removing a stranger makes the cohort, with no member.
    let r = d.delta(&t, "aud_1", &ids[11..], true).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let segment = save_segment(
        |p, b| d.post(p, &t.key, b),
        "gold members",
        json!({"and": [{"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
                       {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}]}),
    );
    for i in 0..3 {
        let r = d.delta(&t, "aud_1", &ids[i * 4..i * 4 + 4], false).unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        if i == 1 {
            let r = d.post("/admin/snapshots", ADMIN, json!({}));
            assert_eq!(r.status, 201, "{}", r.body);
        }
    }
    let feed = |d: &common::process::Daemon| d.get("/feed?limit=10000", &t.key).body;
    let before = feed(&d);
    assert_eq!(segment_summary(&before["events"]).len(), 6, "u0, u2, … u10");
    d.kill9();

    let d = home.start();
    assert_eq!(feed(&d), before);
    let r = d.delta(&t, "aud_1", &ids[..6], true).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let after = feed(&d);
    let exits: Vec<_> = segment_summary(&after["events"])
        .into_iter()
        .filter(|e| e.0 == "users.segments.Exited")
        .collect();
    let exit = |u: &str| {
        (
            "users.segments.Exited".to_string(),
            u.to_string(),
            segment.clone(),
        )
    };
    assert_eq!(exits, [exit("u0"), exit("u2"), exit("u4")]);
    assert_eq!(segment_summary(&after["events"]).len(), 9);
}

/// The schema is strict enough to catch a wrong shape.
#[test]
fn the_event_schema_refuses_what_spec_does_not_allow() {
    let v = common::event_schema();
    let good = json!({"id": "x", "event_type": "users.cohorts.Entered", "time": 1,
                      "user": {"user_id": "000000010000000000000002", "new_field": 1},
                      "properties": {"partner": "heap", "cohort_id": "c", "name": "C"},
                      "also_new": true});
    assert!(v.is_valid(&good), "unknown fields are allowed");
    for bad in [
        json!({"event_type": "users.cohorts.Entered"}),
        json!({"id": "x", "event_type": "users.Nope", "time": 1,
               "user": {"user_id": "000000010000000000000002"}, "properties": {}}),
        json!({"id": "x", "event_type": "users.cohorts.Exited", "time": 1.5,
               "user": {"user_id": "000000010000000000000002"},
               "properties": {"partner": "heap", "cohort_id": "c", "name": "C"}}),
        json!({"id": "x", "event_type": "users.cohorts.Exited", "time": 1,
               "user": {"user_id": "u1"},
               "properties": {"partner": "heap", "cohort_id": "c", "name": "C"}}),
        json!({"id": "x", "event_type": "users.cohorts.Exited", "time": 1,
               "user": {"user_id": "000000010000000000000002"}, "properties": {"partner": "heap"}}),
        json!({"id": "x", "event_type": "users.behaviors.Purchase", "time": 1,
               "user": {"user_id": "000000010000000000000002"},
               "properties": {"product_id": "p", "currency": "USD", "price": "9"}}),
    ] {
        assert!(!v.is_valid(&bad), "{bad}");
    }
}

#[test]
fn bad_feed_requests_get_a_clear_400_and_change_nothing() {
    let server = Server::start();
    let ws = server.workspace("acme");
    for (query, code) in [
        ("after=abc", "invalid_cursor"),
        ("limit=0", "invalid_limit"),
        ("limit=10001", "invalid_limit"),
        ("wait_ms=30001", "invalid_wait_ms"),
        ("event_types=users.Nope", "invalid_event_types"),
    ] {
        let r = ws.get(&format!("/feed?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.body["code"], code, "{query}");
        assert!(!r.message().is_empty());
    }
    let r = ws.get("/feed?unknown=1");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(ws.get("/feed").body["events"], json!([]));
}

#[test]
fn a_long_poll_returns_as_soon_as_an_event_comes() {
    let server = Server::start();
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    let secret = ws.import_key("segment");
    let (url, key) = (server.url.clone(), ws.key.clone());
    let started = Instant::now();
    let poll = std::thread::spawn(move || {
        let r = ureq::get(&format!("{url}/feed?after=0&wait_ms=30000"))
            .set("Authorization", &format!("Bearer {key}"))
            .call()
            .unwrap();
        r.into_json::<Value>().unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    push(&server, &secret, "aud_1", &["u1"], &[]);
    let got = poll.join().unwrap();
    assert_eq!(
        summary(&got["events"]),
        [s("users.cohorts.Entered", "u1", "aud_1")]
    );
    // Woken by the event, not by the end of its 30 s wait.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_cursor_older_than_retention_gets_410() {
    let server = Server::start_with(|c| {
        c.feed.retention_bytes = 1;
        c.feed.segment_bytes = 4096;
    });
    let ws = server.workspace("acme");
    let ids: Vec<String> = (0..200)
        .map(|i| format!("user-with-a-longish-id-{i}"))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ws.users(&refs);
    let secret = ws.import_key("segment");
    for chunk in refs.chunks(50) {
        push(&server, &secret, "aud_1", chunk, &[]);
    }
    let r = ws.get("/feed?after=1");
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.body["code"], "cursor_expired");
    // From the oldest kept: the newest events are all there.
    let kept = ws.get("/feed?limit=10000");
    assert_eq!(kept.status, 200);
    assert_eq!(kept.body["next_cursor"], "200");
    let n = kept.body["events"].as_array().unwrap().len();
    assert!(n > 0 && n < 200, "{n} events kept");
}

/// `kill -9` at any moment: after the restart, the feed has every event of
/// every acknowledged write once, with the ids it had; a snapshot in the
/// middle and a restore change nothing of it.
#[test]
fn the_feed_survives_kill_9_snapshots_and_restores_unchanged() {
    let home = Home::new();
    let d = home.start();
    let ids: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let t = d.tenant("acme", &ids);
    let feed = |d: &common::process::Daemon| {
        let r = d.get("/feed?limit=10000", &t.key);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };
    let mut midway = String::new();
    for i in 0..10 {
        let r = d.delta(&t, "aud_1", &ids[i * 4..i * 4 + 4], false).unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        if i == 4 {
            let r = d.post("/admin/snapshots", ADMIN, json!({}));
            assert_eq!(r.status, 201, "{}", r.body);
            midway = r.body["snapshot_id"].as_str().unwrap().to_string();
        }
    }
    let r = d.delta(&t, "aud_1", &ids[..10], true).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let before = feed(&d);
    assert_eq!(before["events"].as_array().unwrap().len(), 50);
    check_shapes(&before["events"]);
    d.kill9();

    let d = home.start();
    assert_eq!(
        feed(&d),
        before,
        "same events, ids and cursor after kill -9"
    );
    // A restore of the snapshot taken midway: the feed is history, it
    // stays; later writes go on after it.
    let r = d.post("/admin/restore", ADMIN, json!({"snapshot_id": midway}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(feed(&d), before);
    let r = d.delta(&t, "aud_1", &ids[..1], true).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let after = feed(&d);
    let events = after["events"].as_array().unwrap();
    assert_eq!(events.len(), 51);
    assert_eq!(events[50]["event_type"], "users.cohorts.Exited");
    assert_eq!(after["next_cursor"], "51");
    d.stop();
    let d = home.start();
    assert_eq!(feed(&d), after, "and after a graceful restart");
}
