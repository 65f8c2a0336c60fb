//! Operator races and hygiene (issue 9, "one tenant cannot hurt another"):
//! concurrent snapshot requests, metric label cardinality, and secrets that
//! are set but empty. Outcomes and order only, never wall-clock times.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Barrier;

use common::process::Home;
use common::{wait_for, Server, ADMIN};
use serde_json::json;

// ---- snapshots: one run at a time, one file per log position ----

/// Snapshot files in `dir` by log position (parsed from the file name).
fn snapshot_files(dir: &Path) -> BTreeMap<u64, Vec<String>> {
    let mut by_position: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".snap") {
            let position = id.split('-').nth(1).unwrap().parse().unwrap();
            by_position.entry(position).or_default().push(name);
        }
    }
    by_position
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// `n` snapshot requests released at once; their answers.
fn snapshot_burst(s: &Server, n: usize) -> Vec<common::Resp> {
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    s.post("/admin/snapshots", ADMIN, json!({}))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Every answer is a 201 naming a snapshot file that fully verifies and
/// holds the position the answer says.
fn assert_valid_snapshots(s: &Server, answers: &[common::Resp]) {
    for r in answers {
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["snapshot_id"].as_str().expect("snapshot_id");
        assert!(r.body["created_at"].is_string(), "{}", r.body);
        let path = s.data_dir.path().join(format!("{id}.snap"));
        let (info, _) = cohortd::persist::snapshot::load(&path)
            .unwrap_or_else(|e| panic!("{id} does not load: {e}"));
        assert_eq!(json!(info.log_position), r.body["log_position"]);
        assert_eq!(json!(info.bytes), r.body["bytes"]);
    }
}

#[test]
fn concurrent_snapshot_requests_write_one_file_per_position_and_keep_older_restore_points() {
    let s = Server::start(); // retain = 5
    let ws = s.workspace("acme");

    // Three restore points at three log positions.
    let mut older = Vec::new();
    for i in 0..3 {
        ws.users(&[&format!("before-{i}")]);
        let r = s.post("/admin/snapshots", ADMIN, json!({}));
        assert_eq!(r.status, 201, "{}", r.body);
        older.push(r.body["snapshot_id"].as_str().unwrap().to_string());
    }
    ws.users(&["after"]);

    // A burst at a new position, then a burst with nothing written since.
    for round in 0..2 {
        let answers = snapshot_burst(&s, 16);
        assert_valid_snapshots(&s, &answers);
        let ids: BTreeSet<&str> = answers
            .iter()
            .map(|r| r.body["snapshot_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: one state, one snapshot, shared by every request: {ids:?}"
        );

        let files = snapshot_files(s.data_dir.path());
        for (position, names) in &files {
            assert_eq!(names.len(), 1, "position {position} has {names:?}");
        }
        assert_eq!(files.len(), 4, "three older positions and the new one");
        let listed = s.get("/admin/snapshots", ADMIN).body["snapshots"].clone();
        for id in &older {
            assert!(
                listed
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["snapshot_id"] == id.as_str()),
                "round {round}: retention pruned the older restore point {id}: {listed}"
            );
        }
        assert!(temp_files(s.data_dir.path()).is_empty());
    }
}

/// Holds one run in flight (a debug-build hook, right after its cut), sends
/// more snapshot requests and a restore meanwhile, then lets it go.
#[test]
fn requests_during_a_run_share_it_and_a_restore_waits_for_a_cut_after_itself() {
    let mut home = Home::new();
    let hold = home.root().join("hold-snapshot");
    home.set_env("COHORTD_TEST_HOLD_SNAPSHOT", Some(hold.to_str().unwrap()));
    let d = home.start();
    let ids: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
    let t = d.tenant("acme", &ids);
    let add = |i: usize| {
        let r = d.delta(&t, "c", &ids[i..=i], false).unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    };
    add(0);
    let a = d.snapshot();
    add(1);
    let b = d.snapshot();
    add(2);

    std::fs::write(&hold, b"").unwrap();
    let (first, sharers, restore) = std::thread::scope(|scope| {
        let first = scope.spawn(|| d.post("/admin/snapshots", ADMIN, json!({})));
        wait_for("the first run to be held", || {
            d.output().contains("snapshot run held")
        });
        let sharers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| d.post("/admin/snapshots", ADMIN, json!({}))))
            .collect();
        let restore = scope.spawn(|| {
            d.post(
                "/admin/restore",
                ADMIN,
                json!({ "snapshot_id": a["snapshot_id"] }),
            )
        });
        // The restore is applied before it asks for its snapshot.
        wait_for("the restore to be applied", || {
            d.member_ids(&t, "c") == ["u0"]
        });
        std::fs::remove_file(&hold).unwrap();
        let sharers: Vec<_> = sharers.into_iter().map(|h| h.join().unwrap()).collect();
        (first.join().unwrap(), sharers, restore.join().unwrap())
    });

    // The held run wrote one snapshot, of the position after `b`, and
    // every request sent while it ran got it.
    assert_eq!(first.status, 201, "{}", first.body);
    let position = first.body["log_position"].as_u64().unwrap();
    assert!(
        position > b["log_position"].as_u64().unwrap(),
        "{}",
        first.body
    );
    for r in &sharers {
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(
            r.body["snapshot_id"], first.body["snapshot_id"],
            "{}",
            r.body
        );
    }
    assert_eq!(
        d.output().matches("snapshot run held").count(),
        1,
        "one run at a time:\n{}",
        d.output()
    );
    // The restore's snapshot was cut after the restore, not shared.
    assert_eq!(restore.status, 200, "{}", restore.body);
    assert!(
        restore.body["snapshot"]["log_position"].as_u64().unwrap() > position,
        "{} vs {}",
        restore.body,
        first.body
    );
    let files = snapshot_files(&home.data_dir());
    for (position, names) in &files {
        assert_eq!(names.len(), 1, "position {position} has {names:?}");
    }
    assert_eq!(
        files.len(),
        4,
        "a, b, the held run's, the restore's: {files:?}"
    );
}

// ---- metrics: labels from fixed sets only ----

/// The request-counter series in a `/metrics` text.
fn request_series(s: &Server) -> BTreeSet<String> {
    let r = s.call("GET", "/metrics", None, None);
    assert_eq!(r.status, 200);
    let text = r.body.as_str().expect("metrics text").to_string();
    text.lines()
        .filter(|l| {
            l.starts_with("cohortd_http_requests_total{")
                || l.starts_with("cohortd_http_request_duration_seconds_count{")
        })
        .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
        .collect()
}

#[test]
fn made_up_methods_and_paths_add_a_bounded_number_of_metric_series() {
    let s = Server::start();
    let before = request_series(&s);
    for i in 0..150 {
        let method = format!("MADEUP{i}");
        let _ = s.call(
            &method,
            &format!("/no/such/{i}/path-{}", i * 7919),
            None,
            None,
        );
        let _ = s.call(&method, "/cohorts", None, None);
        let _ = s.call("GET", &format!("/cohorts/p{i}/c{i}"), None, None);
        let _ = s.call("DELETE", &format!("/random-{i}"), None, None);
    }
    let after = request_series(&s);
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(
        added.len() <= 12,
        "{} new series from made-up requests: {added:#?}",
        added.len()
    );
    for series in &after {
        assert!(!series.contains("MADEUP"), "a raw method label: {series}");
        assert!(
            !series.contains("/no/such") && !series.contains("/random-"),
            "a raw path label: {series}"
        );
        assert!(
            !series.contains("/cohorts/p"),
            "a path, not its pattern: {series}"
        );
    }
    assert!(
        after
            .iter()
            .any(|l| l.contains("method=\"other\"") && l.contains("route=\"unmatched\"")),
        "{after:#?}"
    );
    assert!(
        after
            .iter()
            .any(|l| l.contains("route=\"/cohorts/{partner}/{cohort_id}\"")),
        "{after:#?}"
    );
}

// ---- start-up refuses secrets that are set but empty ----

/// Starts `home`'s server, which must refuse; its output.
fn refused(home: &Home) -> String {
    let e = home
        .try_start()
        .map(|d| d.kill9())
        .expect_err("the server must refuse to start");
    assert!(!e.status.success(), "{}", e.output);
    assert!(
        !home.data_dir().join("secrets.toml").exists(),
        "refused before generating secrets"
    );
    e.output
}

#[test]
fn an_empty_partner_key_or_admin_token_in_the_environment_refuses_start_naming_it() {
    for (var, value) in [
        ("COHORTD_PARTNER_KEY_SEGMENT", ""),
        ("COHORTD_PARTNER_KEY_HEAP", " \t "),
        ("COHORTD_ADMIN_TOKEN", ""),
        ("COHORTD_ADMIN_TOKEN", "   "),
    ] {
        let mut home = Home::new();
        home.set_env(var, Some(value));
        let out = refused(&home);
        assert!(
            out.contains(&format!("{var} is set but empty")),
            "{var}={value:?}:\n{out}"
        );
    }
}

#[test]
fn an_empty_partner_key_or_admin_token_in_config_toml_refuses_start_naming_it() {
    let cases: [(&str, &str, &str); 3] = [
        (
            "[partners.heap]",
            "[partners.heap]\napi_key = \"\"",
            "[partners.heap] api_key is empty",
        ),
        (
            "[partners.census]",
            "[partners.census]\napi_key = \"  \"",
            "[partners.census] api_key is empty",
        ),
        (
            "http_workers = 0",
            "http_workers = 0\nadmin_token = \" \"",
            "admin_token is empty",
        ),
    ];
    for (line, with, says) in cases {
        let out = refused(&Home::with_config(&[(line, with)]));
        assert!(out.contains(says), "{with:?}:\n{out}");
        assert!(out.contains("invalid configuration"), "{out}");
    }
}

/// A `[cluster]` node whose NATS servers do not answer stops start-up
/// with an error naming them: it never runs alone, which would look
/// clustered to its operator.
#[test]
fn a_cluster_node_without_jetstream_does_not_start_alone() {
    let nowhere = common::process::free_port();
    let cluster = format!(
        "[cluster]\nnode_id = \"n1\"\nadvertise_url = \"http://127.0.0.1:8081\"\n\
         nats_urls = [\"nats://{nowhere}\"]\nshards = 8\nreplicas = 3\n\
         lease_ttl_millis = 3000\n[partners.census]"
    );
    let home = Home::with_config(&[("[partners.census]", &cluster)]);
    let e = home
        .try_start()
        .map(|d| d.kill9())
        .expect_err("the server must refuse to start");
    assert!(!e.status.success(), "{}", e.output);
    assert!(e.output.contains("cannot reach JetStream"), "{}", e.output);
}

/// Cluster mode starts from the shard streams; a data dir that holds a
/// single node's writes is refused rather than silently ignored.
#[test]
fn a_single_node_data_dir_is_not_ignored_by_cluster_mode() {
    let home = Home::new();
    let d = home.start();
    let r = d.post("/admin/workspaces", ADMIN, json!({"name": "acme"}));
    assert_eq!(r.status, 201, "{}", r.body);
    d.stop();
    let cluster = "[cluster]\nnode_id = \"n1\"\nadvertise_url = \"http://127.0.0.1:8081\"\n\
                   nats_urls = [\"nats://127.0.0.1:4222\"]\nshards = 8\nreplicas = 3\n\
                   lease_ttl_millis = 3000\n";
    home.write_config(&format!("{}\n{cluster}", cohortd::config::SHIPPED));
    let e = home
        .try_start()
        .map(|d| d.kill9())
        .expect_err("the server must refuse to start");
    assert!(e.output.contains("holds a single-node log"), "{}", e.output);
}
