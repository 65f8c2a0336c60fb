//! Cluster mode end to end (issue 14, SPEC §11): three real `cohortd`
//! processes, configured by `deploy/cluster/cohortd-n*.toml`, on three
//! real `nats-server`s (`common/nats.rs`), all on loopback.
//!
//! What holds through any node: writes are forwarded to their shard's
//! leader and answer `X-Cohortd-Sequence`; a read carrying it as
//! `X-Cohortd-Min-Sequence` sees the write on every node; `GET /cluster`
//! agrees on who leads what.

mod common;
#[allow(dead_code)]
#[path = "common/nats.rs"]
mod nats;

use std::net::SocketAddr;
use std::time::Duration;

use common::process::{free_port, Daemon, Home};
use common::{delta, Resp, ADMIN};
use nats::NatsCluster;
#[allow(dead_code)]
#[path = "common/receiver.rs"]
mod receiver;
use receiver::Receiver;
use serde_json::{json, Value};

struct Node {
    home: Home,
    addr: SocketAddr,
    daemon: Daemon,
}

/// Node `i` (1-based) from its deploy file, on a port of its own.
fn start_node(i: usize, nats: &NatsCluster) -> Node {
    let mut home = Home::new();
    let section = std::fs::read_to_string(format!(
        "{}/deploy/cluster/cohortd-n{i}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the deploy example");
    home.write_config(&format!("{}\n{section}", cohortd::config::SHIPPED));
    home.set_env("COHORTD_NATS_URLS", Some(&nats.urls().join(",")));
    let (addr, daemon) = launch(&mut home, i);
    Node { home, addr, daemon }
}

/// Starts node `i` in `home` (again, after a crash or a wipe).
fn launch(home: &mut Home, i: usize) -> (SocketAddr, Daemon) {
    // The port is advertised, so it is chosen first; another process may
    // take it before the node binds it (then a new one is picked).
    let mut attempt = 0;
    loop {
        attempt += 1;
        let addr: SocketAddr = free_port();
        home.set_env("COHORTD_ADVERTISE_URL", Some(&format!("http://{addr}")));
        match home.try_start_on(addr) {
            Ok(d) => return (addr, d),
            Err(e) if attempt < 5 && e.output.contains("cannot listen on") => continue,
            Err(e) => panic!("node n{i} did not start ({}):\n{}", e.status, e.output),
        }
    }
}

/// Starts the three nodes at once (each waits for JetStream and the
/// others' leases as it starts).
fn start_cluster(nats: &NatsCluster) -> Vec<Node> {
    std::thread::scope(|s| {
        let started: Vec<_> = (1..=3)
            .map(|i| s.spawn(move || start_node(i, nats)))
            .collect();
        started
            .into_iter()
            .map(|h| h.join().expect("a node started"))
            .collect()
    })
}

/// Three NATS servers and three nodes, every shard led; `None` (the test
/// returns) where nats-server is missing outside CI.
fn led_cluster() -> Option<(NatsCluster, Vec<Node>, Vec<String>)> {
    if !nats::available() {
        return None;
    }
    let nats = NatsCluster::start(3);
    let nodes = start_cluster(&nats);
    let urls: Vec<String> = nodes.iter().map(|n| n.daemon.url.clone()).collect();
    wait_led(&urls);
    Some((nats, nodes, urls))
}

/// One request with extra headers, which must be answered.
fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> Resp {
    try_call(&d.url, method, path, token, body, headers)
        .unwrap_or_else(|| panic!("{method} {path}: no answer\n{}", d.output()))
}

/// Waits until every node sees every shard led, all by the same nodes.
fn wait_led(urls: &[String]) {
    common::wait_for("every shard led, every node agreeing", || {
        let views: Vec<Value> = urls
            .iter()
            .map(|u| {
                try_call(u, "GET", "/cluster", Some(ADMIN), None, &[])
                    .map_or(Value::Null, |r| r.body)
            })
            .collect();
        let leaders = |v: &Value| -> Vec<Value> {
            v["shards"]
                .as_array()
                .map(|s| s.iter().map(|s| s["leader"].clone()).collect())
                .unwrap_or_default()
        };
        let first = leaders(&views[0]);
        first.len() == 8
            && first.iter().all(Value::is_string)
            && views.iter().all(|v| leaders(v) == first)
    });
}

fn sequence(r: &Resp) -> u64 {
    r.header("x-cohortd-sequence")
        .unwrap_or_else(|| panic!("a write answers X-Cohortd-Sequence: {:?}", r.headers))
        .parse()
        .expect("a number")
}

fn at_least(seq: u64) -> Vec<(&'static str, String)> {
    vec![("X-Cohortd-Min-Sequence", seq.to_string())]
}

#[test]
fn writes_through_any_node_are_read_on_every_node() {
    if !nats::available() {
        return;
    }
    let nats = NatsCluster::start(3);
    let nodes = start_cluster(&nats);
    let d = |i: usize| &nodes[i % 3].daemon;

    // Every node sees every shard led, by the same node.
    wait_led(
        &nodes
            .iter()
            .map(|n| n.daemon.url.clone())
            .collect::<Vec<_>>(),
    );

    // A workspace created through node 2 exists on every node once each
    // has applied the sequence the write answered with.
    let (key, _, created) = create_workspace(&d(1).url, "acme");
    for i in 0..3 {
        let r = call(
            d(i),
            "GET",
            "/admin/workspaces",
            Some(ADMIN),
            None,
            &at_least(created),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["workspaces"][0]["name"], "acme", "node {}", i + 1);
    }

    // Profiles through node 3, an import key through node 1: each needs
    // the workspace, which the read barrier waits for.
    let ids: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    let attributes: Vec<Value> = ids
        .iter()
        .map(|id| json!({"external_id": id, "plan": "gold"}))
        .collect();
    let tracked = track(&d(2).url, &key, &attributes, created);
    let (secret, mut last) = import_key(&d(0).url, &key, tracked);

    // Deltas through each node in turn: every one is forwarded to the
    // shard's leader (or applied there), and answered in Braze's shape;
    // the partner's rate window counts each once, wherever it came in.
    let mut remaining = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let body = delta(&secret, "aud", json!([{"user_ids": [id]}]));
        let r = call(
            d(n),
            "POST",
            "/partners/segment/cohorts/users",
            None,
            Some(&body),
            &at_least(last),
        );
        assert_eq!(
            r.status,
            201,
            "delta {n} through node {}: {}",
            n % 3 + 1,
            r.body
        );
        last = sequence(&r);
        let left: u64 = r.header("x-ratelimit-remaining").unwrap().parse().unwrap();
        remaining.push(left);
    }
    assert!(
        remaining.windows(2).all(|w| w[1] + 1 == w[0]),
        "one count per delta: {remaining:?}"
    );

    // Every node, once at the last sequence, holds all 30 members.
    for i in 0..3 {
        let r = call(
            d(i),
            "GET",
            "/cohorts/segment/aud/members?limit=1000",
            Some(&key),
            None,
            &at_least(last),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let mut got: Vec<String> = r.body["members"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.body))
            .iter()
            .map(|m| m["external_id"].as_str().unwrap_or_default().to_string())
            .collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "node {}", i + 1);
    }

    // A sequence nobody wrote yet is waited for, then refused (503).
    let r = call(
        d(0),
        "GET",
        "/cohorts",
        Some(&key),
        None,
        &at_least(last + (1 << 30)),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    let r = call(
        d(0),
        "GET",
        "/cohorts",
        Some(&key),
        None,
        &[("X-Cohortd-Min-Sequence", "soon".into())],
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // A restore of a set that does not exist changes nothing.
    let r = call(
        d(1),
        "POST",
        "/admin/restore",
        Some(ADMIN),
        Some(&json!({"snapshot_id": "set-0001700000000000"})),
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // And in /metrics: every shard's applied sequence, lag and leadership,
    // each shard led by exactly one node.
    let mut leading = vec![0; 8];
    for i in 0..3 {
        let text = call(d(i), "GET", "/metrics", Some(ADMIN), None, &[]).body;
        let text = text.as_str().unwrap_or_default().to_string();
        for (shard, leaders) in leading.iter_mut().enumerate() {
            for name in ["applied_sequence", "lag"] {
                let series = format!("cohortd_cluster_shard_{name}{{shard=\"{shard}\"}}");
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
            if text.contains(&format!(
                "cohortd_cluster_shard_leader{{shard=\"{shard}\"}} 1"
            )) {
                *leaders += 1;
            }
        }
    }
    assert_eq!(leading, vec![1; 8], "leaders per shard in /metrics");

    // The operator's view of the same, from the CLI.
    let out = nodes[2]
        .home
        .cli(&["cluster", "status"], Some(nodes[2].addr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("node n3\nSHARD  LEADER  APPLIED_SEQUENCE  LAG"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2 + 8, "{text}");
    let out = nodes[2]
        .home
        .cli(&["cluster", "status", "--json"], Some(nodes[2].addr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["shards"].as_array().map(Vec::len), Some(8), "{v}");

    // Each node has applied everything: no lag anywhere.
    common::wait_for("no node lags", || {
        (0..3).all(|i| {
            let v = call(d(i), "GET", "/cluster", Some(ADMIN), None, &[]).body;
            v["shards"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["lag"] == 0))
        })
    });
}

/// One request to the node at `url`; `None` when no answer came back
/// (the node is down).
fn try_call(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> Option<Resp> {
    let mut req = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
        .request(method, &format!("{url}{path}"));
    for (n, v) in headers {
        req = req.set(n, v);
    }
    common::send(req, token, body, Resp::try_from_ureq).ok()
}

/// Which node (by id, "n1"…) leads `shard`, as the node at `url` sees it.
fn leader_of(url: &str, shard: u32) -> Option<String> {
    let v = try_call(url, "GET", "/cluster", Some(ADMIN), None, &[])?.body;
    v["shards"][shard as usize]["leader"]
        .as_str()
        .map(str::to_string)
}

/// A request that must be answered.
fn must(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> Resp {
    try_call(url, method, path, token, body, headers)
        .unwrap_or_else(|| panic!("{method} {path}: no answer from {url}"))
}

/// A new workspace, created through the node at `url`: its REST key, id
/// and the sequence of the write.
fn create_workspace(url: &str, name: &str) -> (String, u32, u64) {
    let r = must(
        url,
        "POST",
        "/admin/workspaces",
        Some(ADMIN),
        Some(&json!({ "name": name })),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.body["rest_api_key"].as_str().unwrap().to_string();
    let id = r.body["workspace_id"].as_str().unwrap()[3..]
        .parse()
        .unwrap();
    (key, id, sequence(&r))
}

/// `/users/track` with these attributes objects through the node at
/// `url`, once it applied `after` (75 a request); the last sequence.
fn track(url: &str, key: &str, attributes: &[Value], after: u64) -> u64 {
    let mut seq = after;
    for chunk in attributes.chunks(75) {
        let r = must(
            url,
            "POST",
            "/users/track",
            Some(key),
            Some(&json!({ "attributes": chunk })),
            &at_least(seq),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        seq = sequence(&r);
    }
    seq
}

/// A Segment data import key through the node at `url`, once it applied
/// `after`: the key and the sequence of the write.
fn import_key(url: &str, key: &str, after: u64) -> (String, u64) {
    let r = must(
        url,
        "POST",
        "/technology_partners/segment/data_import_keys",
        Some(key),
        None,
        &at_least(after),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.body["data_import_key"].as_str().unwrap().to_string();
    (secret, sequence(&r))
}

/// A workspace with `profiles` profiles (`u0`…) and a Segment import key,
/// made through the first node, and its shard's leader (0-based).
struct Busy {
    key: String,
    secret: String,
    shard: u32,
    /// The sequence of the last setup write.
    start: u64,
    leader: usize,
}

fn busy_workspace(urls: &[String], profiles: usize) -> Busy {
    let (key, ws, created) = create_workspace(&urls[0], "busy");
    let shard = cohortd::cluster::shard_of(cohortd::model::WorkspaceId(ws), 8);
    let attributes: Vec<Value> = (0..profiles)
        .map(|i| json!({"external_id": format!("u{i}")}))
        .collect();
    let tracked = track(&urls[0], &key, &attributes, created);
    let (secret, start) = import_key(&urls[0], &key, tracked);
    let mut leader = None;
    common::wait_for("the workspace's shard has a leader", || {
        leader = leader_of(&urls[0], shard);
        leader.is_some()
    });
    Busy {
        key,
        secret,
        shard,
        start,
        leader: leader.unwrap()[1..].parse::<usize>().unwrap() - 1,
    }
}

/// Waits (retrying past `X-Cohortd-Min-Sequence`'s 5 s) until the node at
/// `url` has applied `at` and holds cohort `aud`.
fn caught_up(url: &str, key: &str, at: u64) {
    common::wait_for("every node applies what was written", || {
        try_call(
            url,
            "GET",
            "/cohorts/segment/aud",
            Some(key),
            None,
            &at_least(at),
        )
        .is_some_and(|r| r.status == 200)
    });
}

/// A cohort's members on the node at `url`, once it applied `at`.
fn members(url: &str, key: &str, at: u64) -> std::collections::BTreeSet<String> {
    let r = must(
        url,
        "GET",
        "/cohorts/segment/aud/members?limit=10000",
        Some(key),
        None,
        &at_least(at),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["external_id"].as_str().unwrap().to_string())
        .collect()
}

/// kill -9 the leader of a busy shard under concurrent ingest through the
/// other two nodes: another node takes over, every acknowledged delta is
/// on both survivors, and each delta in flight at the kill is applied
/// whole or not at all.
#[test]
fn a_killed_leader_is_replaced_and_nothing_acknowledged_is_lost() {
    if !nats::available() {
        return;
    }
    let nats = NatsCluster::start(3);
    let mut nodes: Vec<Option<Node>> = start_cluster(&nats).into_iter().map(Some).collect();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().daemon.url.clone())
        .collect();
    let Busy {
        key,
        secret,
        shard,
        start,
        leader,
    } = busy_workspace(&urls, 2000);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // Two clients, each through one of the other nodes, each delta adding
    // five profiles of its own; a refused or unanswered delta is retried
    // until acknowledged (the clients a partner runs do the same).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::Mutex::new(Vec::<(Vec<String>, u64)>::new());
    let sent = std::sync::Mutex::new(Vec::<Vec<String>>::new());
    let after_kill = std::sync::atomic::AtomicUsize::new(0);
    let killed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for (c, &through) in others.iter().enumerate() {
            let (urls, secret, acked, sent, stop) = (&urls, &secret, &acked, &sent, &stop);
            let (after_kill, killed) = (&after_kill, &killed);
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch: Vec<String> = (0..5)
                        .map(|k| format!("u{}", (c * 1000 + n * 5 + k) % 2000))
                        .collect();
                    n += 1;
                    if n * 5 > 1000 {
                        break;
                    }
                    sent.lock().unwrap().push(batch.clone());
                    let body = delta(secret, "aud", json!([{"user_ids": batch}]));
                    let deadline = std::time::Instant::now() + Duration::from_secs(60);
                    loop {
                        let r = try_call(
                            &urls[through],
                            "POST",
                            "/partners/segment/cohorts/users",
                            None,
                            Some(&body),
                            &at_least(start),
                        );
                        if let Some(r) = r.filter(|r| r.status == 201) {
                            acked.lock().unwrap().push((batch, sequence(&r)));
                            if killed.load(std::sync::atomic::Ordering::Relaxed) {
                                after_kill.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            break;
                        }
                        assert!(
                            std::time::Instant::now() < deadline,
                            "no node took the delta within 60 s of the leader's death"
                        );
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
        // Let ingest run, kill the leader, and let it run on the new one.
        common::wait_for("ingest under way", || acked.lock().unwrap().len() >= 20);
        nodes[leader].take().unwrap().daemon.kill9();
        killed.store(true, std::sync::atomic::Ordering::Relaxed);
        common::wait_for("writes acknowledged by a new leader", || {
            after_kill.load(std::sync::atomic::Ordering::Relaxed) >= 20
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });

    // A new leader, agreed on by both survivors.
    let new_leader = leader_of(&urls[others[0]], shard).expect("a new leader");
    assert_ne!(new_leader, format!("n{}", leader + 1));
    assert_eq!(leader_of(&urls[others[1]], shard), Some(new_leader));

    let acked = acked.into_inner().unwrap();
    let last = acked.iter().map(|(_, s)| *s).max().unwrap();
    for &i in &others {
        let members = members(&urls[i], &key, last);
        for (batch, _) in &acked {
            for id in batch {
                assert!(
                    members.contains(id),
                    "acknowledged {id} missing on node {}",
                    i + 1
                );
            }
        }
        // Whole or nothing: a delta's five profiles are all members or
        // none is.
        for batch in sent.lock().unwrap().iter() {
            let present = batch.iter().filter(|id| members.contains(*id)).count();
            assert!(
                present == 0 || present == batch.len(),
                "delta {batch:?} applied in part ({present} of 5) on node {}",
                i + 1
            );
        }
    }
}

/// SIGSTOP a shard's leader past its lease: another node takes over and
/// takes writes; on SIGCONT the paused node's write is refused by the
/// stream or forwarded, it rejoins as a follower, and every node ends with
/// the same imports: nothing applied twice.
#[test]
fn a_paused_leader_is_fenced_and_rejoins_as_a_follower() {
    let Some((_nats, nodes, urls)) = led_cluster() else {
        return;
    };
    let Busy {
        key,
        secret,
        shard,
        start,
        leader,
    } = busy_workspace(&urls, 100);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let delta_of = |i: usize| delta(&secret, "aud", json!([{"user_ids": [format!("u{i}")]}]));
    let post = |url: &str, i: usize, after: u64| {
        try_call(
            url,
            "POST",
            "/partners/segment/cohorts/users",
            None,
            Some(&delta_of(i)),
            &at_least(after),
        )
    };
    // Through the leader itself first.
    let mut acked = Vec::new();
    let mut last = start;
    for i in 0..5 {
        let r = post(&urls[leader], i, last).expect("answered");
        assert_eq!(r.status, 201, "{}", r.body);
        last = sequence(&r);
        acked.push(i);
    }

    nodes[leader].daemon.signal("STOP");
    let old = format!("n{}", leader + 1);
    common::wait_for("another node leads the shard", || {
        leader_of(&urls[others[0]], shard).is_some_and(|l| l != old)
    });
    // The new leader takes writes through either other node.
    for i in 5..15 {
        let through = &urls[others[i % 2]];
        let mut answered = None;
        common::wait_for("a write taken by the new leader", || {
            answered = post(through, i, start).filter(|r| r.status == 201);
            answered.is_some()
        });
        last = last.max(sequence(&answered.unwrap()));
        acked.push(i);
    }
    // A write sent to the paused node waits in its socket; it wakes up
    // still believing it leads, and its append must not land after the
    // new leader's records unless it was really taken (then exactly once).
    let paused = std::thread::scope(|s| {
        let pending = s.spawn(|| post(&urls[leader], 99, 0));
        std::thread::sleep(Duration::from_millis(300));
        nodes[leader].daemon.signal("CONT");
        pending.join().expect("the client thread")
    });
    let paused_took = paused.as_ref().is_some_and(|r| r.status == 201);
    if let Some(r) = &paused {
        assert!(
            r.status == 201 || r.status == 503,
            "the paused node answered {}: {}",
            r.status,
            r.body
        );
        if r.status == 201 {
            last = last.max(sequence(r));
        }
    }

    // It rejoins as a follower and catches up.
    common::wait_for("the paused node follows the new leader", || {
        leader_of(&urls[leader], shard).is_some_and(|l| l != old)
    });
    let want: std::collections::BTreeSet<String> = acked
        .iter()
        .map(|i| format!("u{i}"))
        .chain(paused_took.then(|| "u99".to_string()))
        .collect();
    let mut histories = Vec::new();
    for url in &urls {
        let got = members(url, &key, last);
        for id in &want {
            assert!(got.contains(id), "acknowledged {id} missing at {url}");
        }
        let r = must(
            url,
            "GET",
            "/cohorts/segment/aud/imports",
            Some(&key),
            None,
            &at_least(last),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        histories.push(r.body["imports"].clone());
    }
    // One import per delta applied, the same on every node: the paused
    // node's delta at most once.
    let n = histories[0].as_array().map_or(0, Vec::len);
    assert!(
        n == acked.len() || n == acked.len() + 1,
        "{n} imports for {} acknowledged deltas: {}",
        acked.len(),
        histories[0]
    );
    assert!(paused_took <= (n == acked.len() + 1));
    assert!(
        histories.iter().all(|h| *h == histories[0]),
        "{histories:?}"
    );
}

/// JetStream failures under cohortd: with one NATS server of three down,
/// writes go on; with two down (no quorum), writes get 503 and reads go
/// on, saying they may be stale; with the servers back, writes resume and
/// every acknowledged delta is on every node.
#[test]
fn writes_follow_jetstreams_quorum_and_reads_go_on_without_it() {
    let Some((mut nats, _nodes, urls)) = led_cluster() else {
        return;
    };
    let Busy {
        key, secret, start, ..
    } = busy_workspace(&urls, 100);
    let post = |url: &str, i: usize| {
        let body = delta(&secret, "aud", json!([{"user_ids": [format!("u{i}")]}]));
        try_call(
            url,
            "POST",
            "/partners/segment/cohorts/users",
            None,
            Some(&body),
            &at_least(start),
        )
    };
    // Taken, retrying through the moments a stream's leader moves.
    let taken = |url: &str, i: usize| -> u64 {
        let mut answered = None;
        common::wait_for("a write taken", || {
            answered = post(url, i).filter(|r| r.status == 201);
            answered.is_some()
        });
        sequence(&answered.unwrap())
    };
    let mut last = start;
    let mut acked = Vec::new();

    nats.kill(2);
    for i in 0..10 {
        last = last.max(taken(&urls[i % 3], i));
        acked.push(i);
    }

    // Followers go on too: every node reaches the last write (a tail
    // whose server went away reads again from another).
    for url in &urls {
        caught_up(url, &key, last);
    }

    nats.kill(1);
    // No quorum: a write is refused (503), never left hanging or taken.
    let mut refused = None;
    common::wait_for("a write refused without a quorum", || {
        refused = post(&urls[0], 50).filter(|r| r.status == 503);
        refused.is_some()
    });
    // Reads go on, and say they may be stale.
    for url in &urls {
        common::wait_for("a read that says it may be stale", || {
            let r = try_call(url, "GET", "/cohorts/segment/aud", Some(&key), None, &[]);
            r.is_some_and(|r| r.status == 200 && r.header("x-cohortd-may-be-stale") == Some("true"))
        });
    }

    nats.start_node(1);
    nats.start_node(2);
    nats.wait_ready();
    for i in 10..20 {
        last = last.max(taken(&urls[i % 3], i));
        acked.push(i);
    }
    for url in &urls {
        caught_up(url, &key, last);
        let got = members(url, &key, last);
        for i in &acked {
            assert!(
                got.contains(&format!("u{i}")),
                "acknowledged u{i} missing at {url}"
            );
        }
        // Fresh again: no stale mark once JetStream answers.
        common::wait_for("reads no longer marked stale", || {
            try_call(url, "GET", "/cohorts/segment/aud", Some(&key), None, &[])
                .is_some_and(|r| r.status == 200 && r.header("x-cohortd-may-be-stale").is_none())
        });
    }
}

/// The partner conformance replay through a cluster: Segment's captured
/// requests, each sent to the next node in turn, land exactly as on one
/// node (tests/partner_api.rs), and every node answers the same for the
/// cohort, its members and imports, the users API and a saved segment.
#[test]
fn segments_real_client_traffic_through_any_node_lands_on_every_node() {
    let Some((_nats, _nodes, urls)) = led_cluster() else {
        return;
    };
    let (key, _, created) = create_workspace(&urls[1], "acme");
    // Profiles through node 3: identified users, an anonymous device, an
    // alias-only profile.
    let mut attributes: Vec<Value> = (1..=6)
        .map(|i| {
            let plan = if i % 3 == 1 { "gold" } else { "free" };
            json!({"external_id": format!("u{i}"), "plan": plan})
        })
        .collect();
    attributes.push(json!({"device_id": "device-anon-1"}));
    attributes.push(json!({"user_alias": {"alias_name": "email",
        "alias_label": "alias.user@example.com"}, "_update_existing_only": false}));
    let tracked = track(&urls[2], &key, &attributes, created);
    let (secret, mut last) = import_key(&urls[0], &key, tracked);

    let fixture = include_str!("../../shared/fixtures/segment-braze-cohorts-requests.jsonl");
    for (n, line) in fixture.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let mut body = v["body"].clone();
        assert_eq!(body["partner_api_key"], common::PARTNER_KEY);
        body["client_secret"] = json!(secret);
        let path = v["path"].as_str().unwrap();
        let r = must(
            &urls[n % 3],
            "POST",
            path,
            None,
            Some(&body),
            &at_least(last),
        );
        assert_eq!(
            r.status,
            201,
            "{path} through node {}: {}",
            n % 3 + 1,
            r.body
        );
        assert_eq!(r.message(), "success");
        if let Some(s) = r.header("x-cohortd-sequence") {
            last = last.max(s.parse().unwrap());
        }
    }

    // A saved segment through node 2: the cohort narrowed to gold plans
    // (u1 and u4 of its members).
    let r = must(
        &urls[1],
        "POST",
        "/segments",
        Some(&key),
        Some(&json!({"name": "known", "filter": {"and": [
            {"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
            {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}]}})),
        &at_least(last),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let segment = r.body["segment_id"].as_str().unwrap().to_string();
    last = sequence(&r);

    let mut answers = Vec::new();
    for url in &urls {
        let get = |path: &str| {
            let r = must(url, "GET", path, Some(&key), None, &at_least(last));
            assert_eq!(r.status, 200, "{path} at {url}: {}", r.body);
            r.body
        };
        let cohort = get("/cohorts/segment/aud_1");
        assert_eq!(cohort["name"], "ceo_test_audience_renamed", "{url}");
        assert_eq!(cohort["created_at"], "2024-01-01T00:00:00.000Z", "{url}");
        assert_eq!(cohort["size"], 5, "{url}");
        let members: Vec<Value> = get("/cohorts/segment/aud_1/members?limit=1000")["members"]
            .as_array()
            .unwrap()
            .iter()
            .cloned()
            .map(common::without_braze_id)
            .collect();
        for expected in [
            json!({"external_id": "u1"}),
            json!({"external_id": "u4"}),
            json!({"external_id": "u6"}),
            json!({"device_id": "device-anon-1"}),
            json!({"user_alias": {"alias_name": "email", "alias_label": "alias.user@example.com"}}),
        ] {
            assert!(
                members.contains(&expected),
                "{expected} missing at {url}: {members:?}"
            );
        }
        assert_eq!(members.len(), 5, "{url}");
        let imports = get("/cohorts/segment/aud_1/imports")["imports"].clone();
        assert_eq!(
            imports.as_array().map(Vec::len),
            Some(7),
            "{url}: {imports}"
        );
        let count = get(&format!("/segments/{segment}/count"));
        assert_eq!(count["count"], 2, "{url}: {count}");
        // Imports carry times of their own: compare everything else.
        answers.push((cohort["size"].clone(), members, imports, count));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
}

/// A node killed (`kill -9`) and started again on its data dir, then
/// killed, wiped and started again: each time it applies the streams from
/// their start (writes taken while it was down included) and answers
/// exactly as the nodes that stayed up.
#[test]
fn a_restarted_or_wiped_node_answers_like_the_others() {
    let Some((_nats, mut nodes, mut urls)) = led_cluster() else {
        return;
    };
    let Busy {
        key,
        secret,
        start,
        shard,
        ..
    } = busy_workspace(&urls, 60);
    let mut last = start;
    let mut send = |urls: &[String], ids: std::ops::Range<usize>, through: &[usize]| {
        for i in ids {
            let body = delta(&secret, "aud", json!([{"user_ids": [format!("u{i}")]}]));
            let url = &urls[through[i % through.len()]];
            last = last.max(delta_taken(url, &body, start));
        }
        last
    };
    send(&urls, 0..10, &[0, 1, 2]);
    // What each node answers once it applied `at`: members and imports.
    let view = |url: &str, at: u64| {
        caught_up(url, &key, at);
        let imports = must(
            url,
            "GET",
            "/cohorts/segment/aud/imports",
            Some(&key),
            None,
            &at_least(at),
        );
        (members(url, &key, at), imports.body["imports"].clone())
    };
    for wipe in [false, true] {
        if wipe {
            snapshot_sets_trim_the_streams(&urls, shard, &secret, &mut send);
        }
        let Node {
            mut home, daemon, ..
        } = nodes.remove(2);
        daemon.kill9();
        if wipe {
            std::fs::remove_dir_all(home.data_dir()).expect("wipe the data dir");
        }
        // Writes go on through the others meanwhile.
        let at = send(
            &urls,
            10 * (1 + usize::from(wipe))..10 * (2 + usize::from(wipe)),
            &[0, 1],
        );
        let (addr, daemon) = launch(&mut home, 3);
        urls[2] = daemon.url.clone();
        nodes.push(Node { home, addr, daemon });
        wait_led(&urls);
        let expected = view(&urls[0], at);
        assert_eq!(
            expected.0.len(),
            10 * (2 + usize::from(wipe)),
            "{:?}",
            expected.0
        );
        assert_eq!(view(&urls[2], at), expected, "wiped: {wipe}");
        assert_eq!(view(&urls[1], at), expected);
        if wipe {
            // Its first records are gone from the stream: what it holds of
            // them came from the object store.
            let out = nodes[2].daemon.output();
            assert!(out.contains("bootstrapped from snapshot set"), "{out}");
            // Its change feed holds the events after the set, numbered as
            // the other nodes number them: the same cursor, the same
            // events after it.
            let (all, through) = feed(&urls[0], &key, at);
            let (since, through_there) = feed(&urls[2], &key, at);
            assert_eq!(through_there, through);
            assert!(
                !since.is_empty() && since.len() < all.len(),
                "{} of {}",
                since.len(),
                all.len()
            );
            assert_eq!(since[..], all[all.len() - since.len()..]);
        }
    }
    // A restore through any node takes every node back to a set: the
    // writes and the workspace made after it are gone, everywhere, and
    // writes go on after it.
    let set = must(&urls[0], "POST", "/admin/snapshots", Some(ADMIN), None, &[]);
    assert_eq!(set.status, 201, "{}", set.body);
    let set = set.body["snapshot_id"].as_str().unwrap().to_string();
    let at_set = view(&urls[0], send(&urls, 0..0, &[0]));
    send(&urls, 30..40, &[0, 1, 2]);
    let (later_key, _, _) = create_workspace(&urls[1], "made after the set");
    let r = must(
        &urls[2],
        "POST",
        "/admin/restore",
        Some(ADMIN),
        Some(&json!({ "snapshot_id": set })),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["restored"], set.as_str());
    assert_ne!(
        r.body["snapshot"]["snapshot_id"],
        set.as_str(),
        "a new starting point"
    );
    let after = send(&urls, 40..41, &[0]);
    let restored = view(&urls[0], after);
    let mut want = at_set.0.clone();
    want.insert("u40".to_string());
    assert_eq!(restored.0, want);
    // The set's import history, then the one after (the history keeps
    // the newest 100).
    let (was, now) = (at_set.1.as_array().unwrap(), restored.1.as_array().unwrap());
    assert_eq!(now.len(), (was.len() + 1).min(100), "{now:?}");
    assert_eq!(
        now.iter().filter(|e| was.contains(e)).count(),
        now.len() - 1,
        "the set's imports, then the one after: {now:?}"
    );
    for url in &urls[1..] {
        assert_eq!(view(url, after), restored);
    }
    common::wait_for("the workspace made after the set gone everywhere", || {
        urls.iter().all(|u| {
            try_call(u, "GET", "/cohorts", Some(&later_key), None, &[])
                .is_some_and(|r| r.status == 401)
        })
    });
}

/// Sends `body` as a partner delta through the node at `url`, once it
/// applied `after`, until it is answered 201 (during a hand-over a write
/// may get 503 for a moment); the write's sequence.
fn delta_taken(url: &str, body: &Value, after: u64) -> u64 {
    let mut answered = None;
    common::wait_for("a delta taken", || {
        answered = try_call(
            url,
            "POST",
            "/partners/segment/cohorts/users",
            None,
            Some(body),
            &at_least(after),
        )
        .filter(|r| r.status == 201);
        answered.is_some()
    });
    sequence(&answered.unwrap())
}

/// A workspace's whole change feed on the node at `url`, once it applied
/// `at`: the events' ids, and the cursor after the last.
fn feed(url: &str, key: &str, at: u64) -> (Vec<String>, String) {
    let (mut ids, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/feed?limit=1000&after={c}"),
            None => "/feed?limit=1000".to_string(),
        };
        let r = must(url, "GET", &path, Some(key), None, &at_least(at));
        assert_eq!(r.status, 200, "{}", r.body);
        let events = r.body["events"].as_array().unwrap();
        ids.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        let next = r.body["next_cursor"].as_str().unwrap().to_string();
        if events.is_empty() {
            return (ids, next);
        }
        cursor = Some(next);
    }
}

/// Two snapshot sets taken through different nodes (each forwarded to the
/// control shard's leader) while members are removed and added back
/// through every node: every node lists both, newest first, and the busy
/// shard's stream is trimmed to what the older one holds. (The wiped node
/// then starts from the newer set, cut in the middle of that traffic.)
fn snapshot_sets_trim_the_streams(
    urls: &[String],
    shard: u32,
    secret: &str,
    send: &mut impl FnMut(&[String], std::ops::Range<usize>, &[usize]) -> u64,
) {
    let take = |url: &str| {
        let r = must(url, "POST", "/admin/snapshots", Some(ADMIN), None, &[]);
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.body["bytes"].as_u64() > Some(0), "{}", r.body);
        r.body["snapshot_id"].as_str().unwrap().to_string()
    };
    let flips = std::sync::atomic::AtomicBool::new(true);
    let (older, newer) = std::thread::scope(|s| {
        // u0…u4 out and back in, over and over, each answered 201 before
        // the next: whatever a cut holds of it, they end in.
        let flipping = s.spawn(|| {
            let mut round = 0;
            while flips.load(std::sync::atomic::Ordering::Relaxed) || round < 2 {
                for (k, remove) in [(0, true), (1, false)] {
                    let changes: Vec<Value> = (0..5)
                        .map(|i| json!({"user_ids": [format!("u{i}")], "should_remove": remove}))
                        .collect();
                    let body = delta(secret, "aud", Value::Array(changes));
                    let url = &urls[(round + k) % urls.len()];
                    delta_taken(url, &body, 0);
                }
                round += 1;
            }
            round
        });
        let older = take(&urls[1]);
        std::thread::sleep(Duration::from_millis(200));
        let newer = take(&urls[2]);
        flips.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(flipping.join().unwrap() >= 2);
        (older, newer)
    });
    // Members again (already in): the stream's last writes.
    send(urls, 0..5, &[0, 1, 2]);
    assert!(newer > older, "{older} then {newer}");
    for url in urls {
        let listed = must(url, "GET", "/admin/snapshots", Some(ADMIN), None, &[]);
        let ids: Vec<&str> = listed.body["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["snapshot_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [newer.as_str(), older.as_str()], "{}", listed.body);
    }
    common::wait_for("the busy shard's stream trimmed", || {
        let v = must(&urls[0], "GET", "/cluster", Some(ADMIN), None, &[]).body;
        v["shards"][shard as usize]["first_sequence"].as_u64() > Some(20)
    });
}

/// A connector created through a node that does not lead its workspace's
/// shard is delivered by the leader alone (each event once); killed with
/// `kill -9`, the leader's successor resumes after the last batch the old
/// one had acknowledged, in feed order, and every node reports the same
/// progress.
#[test]
fn a_connector_is_delivered_by_its_shards_leader_and_resumes_on_the_next() {
    let Some((_nats, mut nodes, urls)) = led_cluster() else {
        return;
    };
    let Busy {
        key,
        secret,
        start,
        leader,
        ..
    } = busy_workspace(&urls, 60);
    let rx = Receiver::start();
    let r = must(
        &urls[(leader + 1) % 3],
        "POST",
        "/connectors",
        Some(&key),
        Some(&json!({"name": "heap", "url": rx.url(),
                     "event_types": ["users.cohorts.Entered"]})),
        &at_least(start),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["connector_id"].as_str().unwrap().to_string();
    let mut last = sequence(&r);
    let mut enter = |urls: &[String], ids: std::ops::Range<usize>| {
        for i in ids {
            let body = delta(&secret, "aud", json!([{"user_ids": [format!("u{i}")]}]));
            let url = &urls[i % urls.len()];
            last = last.max(delta_taken(url, &body, start));
        }
        last
    };
    let delivered = |rx: &Receiver| -> Vec<String> {
        rx.acknowledged_events()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let at = enter(&urls, 0..20);
    assert!(
        rx.wait_for_events(20, Duration::from_secs(30)),
        "{:?}",
        rx.requests().len()
    );
    // Every node shows the same progress: all 20 acknowledged.
    let (feed_ids, cursor) = feed(&urls[0], &key, at);
    assert_eq!(feed_ids.len(), 20);
    // The connector as the node at `url` reports it.
    let shown = |url: &str| {
        must(
            url,
            "GET",
            &format!("/connectors/{id}"),
            Some(&key),
            None,
            &[],
        )
    };
    common::wait_for("every node reports the connector caught up", || {
        urls.iter().all(|u| {
            let r = shown(u);
            r.status == 200
                && r.body["acknowledged_cursor"] == cursor.as_str()
                && r.body["state"] == "active"
                && r.body["sent"] == 20
                && r.body["lag_seconds"] == 0
        })
    });
    // One node delivered: each event once, in feed order.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(delivered(&rx), feed_ids);

    nodes.remove(leader).daemon.kill9();
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| urls[i].clone())
        .collect();
    let at = enter(&survivors, 20..40);
    let (feed_ids, cursor) = feed(&survivors[0], &key, at);
    assert_eq!(feed_ids.len(), 40);
    assert!(
        rx.wait_until(Duration::from_secs(60), |requests| {
            // (The receiver is locked here: its requests, not `delivered`.)
            let got: Vec<String> = requests
                .iter()
                .filter(|r| r.acknowledged())
                .flat_map(|r| r.events())
                .filter_map(|e| e["id"].as_str().map(str::to_string))
                .collect();
            feed_ids.iter().all(|id| got.contains(id))
        }),
        "delivered {} of 40",
        delivered(&rx).len()
    );
    // The successor went on after the acknowledged 20, whose progress it
    // had: nothing again, nothing skipped, in order.
    assert_eq!(delivered(&rx), feed_ids);
    common::wait_for("the survivors report the new progress", || {
        survivors.iter().all(|u| {
            let r = shown(u);
            r.body["acknowledged_cursor"] == cursor.as_str() && r.body["lag_events"] == 0
        })
    });
    // The same figures for operators, with each connector once.
    let r = must(
        &survivors[1],
        "GET",
        "/admin/connectors",
        Some(ADMIN),
        None,
        &[],
    );
    assert_eq!(
        r.body["connectors"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
}
