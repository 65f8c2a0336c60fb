//! One workspace's slow command never holds another's writes: each
//! workspace has its own sequencer (lane), and a held command of A keeps
//! A's later commands behind it and nobody else's.
//!
//! "Slow" is made deterministic with a debug-build hook: while the file
//! named by `COHORTD_TEST_HOLD_TRACK` exists, a `/users/track` of the
//! workspace it names waits inside its apply (after touching
//! `<file>.reached`). The tests assert order — B acknowledged while A is
//! still held — never wall-clock time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::process::{Daemon, Home, Tenant};
use common::{wait_for, ADMIN};
use serde_json::json;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Waits (bounded) until `path` exists: the held command reached its hook.
fn wait_for_file(path: &Path) {
    wait_for(&path.display().to_string(), || path.exists());
}

fn reached(hold: &Path) -> PathBuf {
    let mut p = hold.as_os_str().to_owned();
    p.push(".reached");
    PathBuf::from(p)
}

fn track(d: &Daemon, t: &Tenant, external_id: &str, n: u64) -> u16 {
    d.call(
        "POST",
        "/users/track",
        Some(&t.key),
        Some(&json!({ "attributes": [{ "external_id": external_id, "n": n }] })),
    )
    .map(|r| r.status)
    .unwrap_or(0)
}

#[test]
fn a_held_command_in_a_holds_a_but_not_b() {
    let mut home = Home::new();
    let hold = home.root().join("hold-track");
    home.set_env("COHORTD_TEST_HOLD_TRACK", Some(hold.to_str().unwrap()));
    let d = home.start();
    let a = d.tenant("a", &ids("a", 10));
    let b = d.tenant("b", &ids("b", 10));
    std::fs::write(&hold, &a.id).unwrap();

    let (events, got) = mpsc::channel::<(&str, u16)>();
    std::thread::scope(|s| {
        // A's track is held inside its apply.
        let tx = events.clone();
        let (d_, a_) = (&d, &a);
        // It creates profile `anew`, which A's next delta then adds.
        s.spawn(move || tx.send(("a track", track(d_, a_, "anew", 1))).unwrap());
        wait_for_file(&reached(&hold));

        // A's next write is ordered behind it; send it, then B's writes.
        let tx = events.clone();
        s.spawn(move || {
            let r = d_.delta(a_, "ca", &["anew".to_string()], false);
            tx.send(("a delta", r.map(|r| r.status).unwrap_or(0)))
                .unwrap();
        });
        let r = d.delta(&b, "cb", &ids("b", 5), false).unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(track(&d, &b, "b9", 2), 201);
        assert_eq!(d.member_ids(&b, "cb").len(), 5, "B's delta is visible");
        let r = d.post("/admin/workspaces", ADMIN, json!({ "name": "c" }));
        assert_eq!(r.status, 201, "creating a workspace is not held by A");
        assert_eq!(d.get("/healthz", "").status, 200);

        // Nothing of A has been answered yet: both wait behind the hold.
        assert!(
            got.try_recv().is_err(),
            "A's commands were answered while A's track was held"
        );
        std::fs::remove_file(&hold).unwrap();
        // The two answers travel on two connections: which arrives first
        // says nothing of the order they applied in; what the delta found
        // does (below).
        let mut answers = [
            got.recv_timeout(Duration::from_secs(30)).unwrap(),
            got.recv_timeout(Duration::from_secs(30)).unwrap(),
        ];
        answers.sort();
        assert_eq!(answers, [("a delta", 201), ("a track", 201)]);
    });
    assert_eq!(
        d.member_ids(&a, "ca"),
        vec!["anew".to_string()],
        "A's delta applied after A's track created the profile it adds"
    );
}

#[test]
fn a_snapshot_waits_for_held_commands_and_holds_them_whole() {
    let mut home = Home::new();
    let hold = home.root().join("hold-track");
    home.set_env("COHORTD_TEST_HOLD_TRACK", Some(hold.to_str().unwrap()));
    let d = home.start();
    let a = d.tenant("a", &ids("a", 3));
    let b = d.tenant("b", &ids("b", 3));
    std::fs::write(&hold, &a.id).unwrap();

    std::thread::scope(|s| {
        let held = s.spawn(|| track(&d, &a, "a-new", 1));
        wait_for_file(&reached(&hold));
        // A cut needs every appended command applied: it waits for A's.
        let snap = s.spawn(|| d.post("/admin/snapshots", ADMIN, json!({})));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!snap.is_finished(), "the cut did not wait for A's track");
        std::fs::remove_file(&hold).unwrap();
        assert_eq!(held.join().unwrap(), 201);
        let snap = snap.join().unwrap();
        assert_eq!(snap.status, 201, "{}", snap.body);
    });
    // B writes after the cut, then a crash: the snapshot plus the log
    // tail give back exactly the acknowledged state.
    assert_eq!(d.delta(&b, "cb", &ids("b", 2), false).unwrap().status, 201);
    let before = (d.fingerprint(&a), d.fingerprint(&b));
    let user = json!({ "external_id": "a-new" });
    assert_eq!(
        d.post("/users/memberships", &a.key, user.clone()).status,
        200
    );
    d.kill9();
    let d = home.start();
    assert_eq!((d.fingerprint(&a), d.fingerprint(&b)), before);
    let r = d.post("/users/memberships", &a.key, user);
    assert_eq!(
        r.status, 200,
        "A's held track survived the crash: {}",
        r.body
    );
}

#[test]
fn one_workspace_cannot_take_every_write_slot() {
    let home = Home::with_config(&[(
        "max_inflight_writes_per_workspace = 1024",
        "max_inflight_writes_per_workspace = 1",
    )]);
    let mut home = home;
    let hold = home.root().join("hold-track");
    home.set_env("COHORTD_TEST_HOLD_TRACK", Some(hold.to_str().unwrap()));
    let d = home.start();
    let a = d.tenant("a", &ids("a", 2));
    let b = d.tenant("b", &ids("b", 2));
    std::fs::write(&hold, &a.id).unwrap();
    std::thread::scope(|s| {
        let held = s.spawn(|| track(&d, &a, "a0", 1));
        wait_for_file(&reached(&hold));
        // A's one slot is taken: its next write is refused, applied nowhere.
        let r = d.delta(&a, "ca", &["a1".to_string()], false).unwrap();
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(
            r.body["message"]
                .as_str()
                .map(|m| m.contains("max_inflight_writes_per_workspace")),
            Some(true),
            "{}",
            r.body
        );
        // B has its own share.
        assert_eq!(d.delta(&b, "cb", &ids("b", 2), false).unwrap().status, 201);
        std::fs::remove_file(&hold).unwrap();
        assert_eq!(held.join().unwrap(), 201);
    });
    assert!(
        d.member_ids(&a, "ca").is_empty(),
        "the refused delta applied nothing"
    );
    let metrics = d.get("/metrics", "").body.to_string();
    assert!(
        metrics.contains(r#"reason=\"workspace_saturated\""#),
        "refusals are counted: {metrics}"
    );
}

/// Four workspaces write at once (tracks, merges through identify, deltas,
/// deletes) while snapshots are cut; after kill -9 the snapshot plus the
/// log give back exactly what was acknowledged. Live, the lanes
/// interleave freely; replay runs the log in one order: the states agree
/// only if no workspace's commands depend on another's and every cut is
/// consistent across lanes.
#[test]
fn interleaved_workspaces_and_cuts_recover_to_the_acknowledged_state() {
    let home = Home::new();
    let d = home.start();
    let tenants: Vec<Tenant> = (0..4)
        .map(|w| d.tenant(&format!("w{w}"), &ids(&format!("w{w}-u"), 20)))
        .collect();
    std::thread::scope(|s| {
        for (w, t) in tenants.iter().enumerate() {
            let d = &d;
            s.spawn(move || {
                for round in 0..15u64 {
                    let u = |i: u64| format!("w{w}-u{}", (round * 7 + i) % 20);
                    let r = d.delta(t, "c", &[u(1), u(2), u(3)], false).unwrap();
                    assert_eq!(r.status, 201, "{}", r.body);
                    let r = d.delta(t, "c", &[u(2)], true).unwrap();
                    assert_eq!(r.status, 201, "{}", r.body);
                    let body = json!({ "attributes": [
                        { "external_id": u(4), "round": round },
                        { "user_alias": { "alias_name": "crm", "alias_label": format!("a{round}") },
                          "_update_existing_only": false, "round": round },
                    ]});
                    let r = d.post("/users/track", &t.key, body);
                    assert_eq!(r.status, 201, "{}", r.body);
                    let r = d.delta(t, "c", &[u(5)], false).unwrap();
                    assert_eq!(r.status, 201, "{}", r.body);
                    // The alias profile merges into an identified one.
                    let body = json!({ "aliases_to_identify": [{
                        "external_id": u(6),
                        "user_alias": { "alias_name": "crm", "alias_label": format!("a{round}") },
                    }]});
                    let r = d.post("/users/identify", &t.key, body);
                    assert_eq!(r.status, 201, "{}", r.body);
                    if round % 5 == 4 {
                        let body = json!({ "external_ids": [u(1)] });
                        let r = d.post("/users/delete", &t.key, body);
                        assert_eq!(r.status, 201, "{}", r.body);
                    }
                }
            });
        }
        let d = &d;
        s.spawn(move || {
            for _ in 0..5 {
                d.snapshot();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    });
    let before: Vec<_> = tenants.iter().map(|t| d.fingerprint(t)).collect();
    assert!(
        before.iter().all(|f| f["cohorts"][0]["members"]
            .as_array()
            .is_some_and(|m| !m.is_empty())),
        "every workspace has members to compare: {before:?}"
    );
    d.kill9();
    let d = home.start();
    let after: Vec<_> = tenants.iter().map(|t| d.fingerprint(t)).collect();
    assert_eq!(after, before);
}
