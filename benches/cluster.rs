//! Cluster mode against a single node, in the same run, on the same data
//! (issue 14). Every process shares this machine: three `nats-server`s
//! (JetStream, R3, file storage), three `cohortd` nodes, the single node
//! and this client.
//!
//! ```sh
//! cargo bench --bench cluster                               # all three
//! cargo bench --bench cluster -- --seconds 10 --connections 4 --rounds 3
//! cargo bench --bench cluster -- --only 2                   # one scenario
//! ```
//!
//! 1. **Ingest**: 1000-id partner deltas (adds and removes of the same
//!    blocks, so the cohort stays the same size) over `--connections`
//!    keep-alive connections for `--seconds`: (a) one node with
//!    `fsync = always` (durable ingest), (b) the 3-node cluster, the
//!    connections spread over its nodes (writes to a shard another node
//!    leads are forwarded). Rounds alternate (a) and (b).
//! 2. **Failover**: the same ingest through the two nodes that do not lead
//!    the workspace's shard; its leader is killed (`kill -9`); the time
//!    from the kill to the first delta acknowledged after it (the new
//!    leader took the lease, caught up, and appended). The killed node is
//!    started again between rounds.
//! 3. **Follower lag**: steady ingest through the shard's leader (one
//!    delta at a time); after each acknowledged delta, a read on a follower
//!    with `X-Cohortd-Min-Sequence` set to its sequence: how long until
//!    the follower has applied it, against the same read without the
//!    header (the read's own cost).

mod common;
#[allow(dead_code)]
#[path = "../tests/common/nats.rs"]
mod nats;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{cpu_seconds, pct, start_server, Conn, Server, ADMIN, PARTNER_KEY};
use nats::NatsCluster;

struct Args {
    seconds: u64,
    connections: usize,
    rounds: usize,
    only: Option<u32>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        connections: 4,
        rounds: 3,
        only: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--connections" => a.connections = val().parse().expect("--connections N"),
            "--rounds" => a.rounds = val().parse().expect("--rounds N"),
            "--only" => a.only = Some(val().parse().expect("--only 1|2|3")),
            // cargo bench passes --bench
            _ => {}
        }
    }
    a
}

const PROFILES: u32 = 100_000;
const SHARDS: u32 = 8;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A cluster node: the shipped config with a `[cluster]` section.
fn start_node(i: usize, urls: &[String]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let config = format!(
        "{}\n[cluster]\nnode_id = \"n{i}\"\nadvertise_url = \"http://{addr}\"\n\
         nats_urls = {urls:?}\nshards = {SHARDS}\nreplicas = 3\nlease_ttl_millis = 3000\n",
        include_str!("../config.toml").replace("interval_secs = 300", "interval_secs = 0")
    );
    std::fs::write(dir.path().join("bench-config.toml"), config).unwrap();
    let server = Server {
        child: common::spawn(dir.path(), addr),
        addr,
        _dir: dir,
    };
    server.wait_ready();
    server
}

struct Cluster {
    nats: NatsCluster,
    nodes: Vec<Option<Server>>,
}

impl Cluster {
    fn start() -> Cluster {
        assert!(nats::available(), "the cluster bench needs nats-server");
        let nats = NatsCluster::start(3);
        let urls = nats.urls();
        let nodes = std::thread::scope(|s| {
            let started: Vec<_> = (1..=3)
                .map(|i| {
                    let urls = &urls;
                    s.spawn(move || start_node(i, urls))
                })
                .collect();
            started
                .into_iter()
                .map(|h| Some(h.join().unwrap()))
                .collect()
        });
        let c = Cluster { nats, nodes };
        c.wait_led();
        c
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].as_ref().expect("running").addr
    }

    fn status(&self, i: usize) -> Value {
        let mut c = Conn::open(self.addr(i));
        let (_, body) = c.call("GET", "/cluster", Some(ADMIN), b"");
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    /// Waits until every running node sees every shard led.
    fn wait_led(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let led = (0..3).filter(|&i| self.nodes[i].is_some()).all(|i| {
                self.status(i)["shards"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["leader"].is_string()))
            });
            if led {
                return;
            }
            assert!(Instant::now() < deadline, "shards without a leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node (0-based) leading `shard`, as node `from` sees it.
    fn leader(&self, from: usize, shard: u32) -> Option<usize> {
        let v = self.status(from);
        let id = v["shards"][shard as usize]["leader"].as_str()?;
        Some(id[1..].parse::<usize>().ok()? - 1)
    }
}

/// A workspace with `PROFILES` profiles and a Segment key, made through
/// `addr` (read back on other nodes with `X-Cohortd-Min-Sequence`).
struct Ws {
    id: u32,
    secret: String,
}

fn setup(addr: SocketAddr) -> Ws {
    let mut c = Conn::open(addr);
    let ws = c.json(
        "POST",
        "/admin/workspaces",
        Some(ADMIN),
        &json!({"name": "bench"}),
    );
    let key = ws["rest_api_key"].as_str().unwrap().to_string();
    let id = ws["workspace_id"].as_str().unwrap()[3..].parse().unwrap();
    for chunk in (0..PROFILES).collect::<Vec<_>>().chunks(75) {
        let attributes: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"external_id": format!("u{i}")}))
            .collect();
        c.json(
            "POST",
            "/users/track",
            Some(&key),
            &json!({ "attributes": attributes }),
        );
    }
    let secret = c.json(
        "POST",
        "/technology_partners/segment/data_import_keys",
        Some(&key),
        &json!({}),
    )["data_import_key"]
        .as_str()
        .unwrap()
        .to_string();
    Ws { id, secret }
}

/// Deltas of 1000 ids: each block added, then removed.
fn bodies(secret: &str) -> Vec<Vec<u8>> {
    (0..PROFILES / 1000)
        .flat_map(|b| {
            let ids: Vec<String> = (b * 1000..(b + 1) * 1000)
                .map(|i| format!("u{i}"))
                .collect();
            [false, true].map(|remove| {
                let change = if remove {
                    json!({"user_ids": ids, "should_remove": true})
                } else {
                    json!({"user_ids": ids})
                };
                json!({
                    "partner_api_key": PARTNER_KEY,
                    "client_secret": secret,
                    "cohort_id": "bench",
                    "cohort_changes": [change],
                })
                .to_string()
                .into_bytes()
            })
        })
        .collect()
}

const DELTA: &str = "/partners/segment/cohorts/users";

/// Connection `k` of `conns`, at its `step`th acknowledged delta: the
/// index in [`bodies`] of its next one. Each connection adds and removes
/// blocks of its own, so every add changes 1000 memberships and the
/// cohort returns to empty.
fn pick(k: usize, conns: usize, step: usize, len: usize) -> usize {
    let blocks = len / 2;
    2 * ((k + conns * (step / 2)) % blocks) + step % 2
}

/// Sends deltas over `conns` connections (connection `k` to `addrs[k %
/// len]`) for `seconds`; acknowledged ids per second. Refused deltas are
/// retried (a failover) and not counted.
fn ingest(addrs: &[SocketAddr], conns: usize, seconds: u64, bodies: &[Vec<u8>]) -> f64 {
    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for k in 0..conns {
            let (stop, acked) = (&stop, &acked);
            let addr = addrs[k % addrs.len()];
            s.spawn(move || {
                let mut c = Conn::open(addr);
                let mut step = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = &bodies[pick(k, conns, step, bodies.len())];
                    if c.call("POST", DELTA, None, body).0 == 201 {
                        acked.fetch_add(1000, Ordering::Relaxed);
                        step += 1;
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    acked.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn scenario_ingest(a: &Args, cluster: &Cluster, single: &Server) {
    let ws_single = setup(single.addr);
    let ws_cluster = setup(cluster.addr(0));
    let (bs, bc) = (bodies(&ws_single.secret), bodies(&ws_cluster.secret));
    let addrs: Vec<SocketAddr> = (0..3).map(|i| cluster.addr(i)).collect();
    let shard = cohortd::cluster::shard_of(cohortd::model::WorkspaceId(ws_cluster.id), SHARDS);
    let leader = [cluster.addr(cluster.leader(0, shard).expect("a leader"))];
    println!(
        "\n### 1. Ingest: 3-node cluster against one node (target: ≥ 40 %)\n\n\
         1000-id deltas over {} connections, {} s a phase, {} rounds, the phases' order \
         turning each round; one node: fsync = always; cluster: JetStream R3, file storage, \
         (b) connections spread over the three nodes (two in three forwarded to the \
         workspace's shard's leader), (c) every connection to that leader.\n\n\
         | round | (a) one node ids/s | (b) cluster, any node | (c) cluster, the leader | (b) ÷ (a) | (c) ÷ (a) |\n\
         | --- | --- | --- | --- | --- | --- |",
        a.connections, a.seconds, a.rounds
    );
    // CPU seconds per phase: the single node, the cluster's nodes, the
    // NATS servers, this client.
    let groups: [Vec<String>; 4] = [
        vec![single.child.id().to_string()],
        (0..3)
            .map(|i| cluster.nodes[i].as_ref().unwrap().child.id().to_string())
            .collect(),
        cluster.nats.pids().iter().map(u32::to_string).collect(),
        vec!["self".to_string()],
    ];
    let cpu = || -> [f64; 4] {
        groups
            .each_ref()
            .map(|g| g.iter().map(|p| cpu_seconds(p)).sum::<f64>())
    };
    let mut sums = [0.0; 3];
    let mut used = [[0.0f64; 4]; 3];
    for r in 0..a.rounds {
        let mut got = [0.0; 3];
        for k in 0..3 {
            let p = (k + r) % 3;
            let before = cpu();
            got[p] = match p {
                0 => ingest(&[single.addr], a.connections, a.seconds, &bs),
                1 => ingest(&addrs, a.connections, a.seconds, &bc),
                _ => ingest(&leader, a.connections, a.seconds, &bc),
            };
            let after = cpu();
            for g in 0..4 {
                used[p][g] += after[g] - before[g];
            }
        }
        for p in 0..3 {
            sums[p] += got[p];
        }
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} |",
            r + 1,
            got[0],
            got[1],
            got[2],
            got[1] / got[0],
            got[2] / got[0]
        );
    }
    let n = a.rounds as f64;
    println!(
        "| **mean** | {:.0} | {:.0} | {:.0} | **{:.3}** | {:.3} |",
        sums[0] / n,
        sums[1] / n,
        sums[2] / n,
        sums[1] / sums[0],
        sums[2] / sums[0]
    );
    println!(
        "\nCPU seconds a phase (mean of the rounds; {} s phases, 2 cores):\n\n\
         | phase | ids/s | one node | cluster nodes | NATS servers | client | µs CPU per 1000 ids |\n\
         | --- | --- | --- | --- | --- | --- | --- |",
        a.seconds
    );
    for (p, name) in [
        "(a) one node",
        "(b) cluster, any node",
        "(c) cluster, the leader",
    ]
    .iter()
    .enumerate()
    {
        let u = used[p].map(|x| x / n);
        let ids = sums[p] / n * a.seconds as f64;
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            sums[p] / n,
            u[0],
            u[1],
            u[2],
            u[3],
            u.iter().sum::<f64>() / (ids / 1000.0) * 1e6
        );
    }
}

fn scenario_failover(a: &Args, cluster: &mut Cluster) {
    let ws = setup(cluster.addr(0));
    let bc = bodies(&ws.secret);
    let shard = cohortd::cluster::shard_of(cohortd::model::WorkspaceId(ws.id), SHARDS);
    println!(
        "\n### 2. Failover under load (target: ≤ 5 s from the leader's kill to the first \
         acknowledged write on the new leader)\n\n{} connections through the two other nodes; \
         lease TTL 3 s.\n\n| round | kill → first ack (s) |\n| --- | --- |",
        a.connections
    );
    let mut all = Vec::new();
    for r in 0..a.rounds {
        cluster.wait_led();
        let leader = cluster.leader(0, shard).expect("a leader");
        let through: Vec<SocketAddr> = (0..3)
            .filter(|&i| i != leader)
            .map(|i| cluster.addr(i))
            .collect();
        let killed_at = std::sync::Mutex::new(None::<Instant>);
        let first = std::sync::Mutex::new(None::<Instant>);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let conns = a.connections;
            for k in 0..conns {
                let (stop, killed_at, first, bc) = (&stop, &killed_at, &first, &bc);
                let addr = through[k % through.len()];
                s.spawn(move || {
                    let mut c = Conn::open(addr);
                    c.writer
                        .set_read_timeout(Some(Duration::from_secs(20)))
                        .ok();
                    let mut step = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let body = &bc[pick(k, conns, step, bc.len())];
                        let ok = matches!(c.try_call("POST", DELTA, None, body), Ok((201, _)));
                        if ok {
                            step += 1;
                            let killed = *killed_at.lock().unwrap();
                            if killed.is_some_and(|t| sent > t) {
                                let mut f = first.lock().unwrap();
                                if f.is_none() {
                                    *f = Some(Instant::now());
                                }
                            }
                        } else {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_secs(2));
            let mut node = cluster.nodes[leader].take().expect("the leader runs");
            *killed_at.lock().unwrap() = Some(Instant::now());
            let _ = node.child.kill();
            let _ = node.child.wait();
            let deadline = Instant::now() + Duration::from_secs(60);
            while first.lock().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, Ordering::Relaxed);
        });
        let took = first
            .into_inner()
            .unwrap()
            .zip(killed_at.into_inner().unwrap())
            .map(|(f, k)| f.duration_since(k).as_secs_f64());
        match took {
            Some(t) => {
                println!("| {} | {t:.2} |", r + 1);
                all.push(t);
            }
            None => println!("| {} | no write acknowledged within 60 s |", r + 1),
        }
        // The killed node comes back, empty, as a new follower.
        cluster.nodes[leader] = Some(start_node(leader + 1, &cluster.nats.urls()));
    }
    if !all.is_empty() {
        all.sort_by(f64::total_cmp);
        println!(
            "| **worst** | **{:.2}** |",
            all.last().copied().unwrap_or_default()
        );
    }
}

fn scenario_lag(a: &Args, cluster: &Cluster) {
    let ws = setup(cluster.addr(0));
    let bc = bodies(&ws.secret);
    let shard = cohortd::cluster::shard_of(cohortd::model::WorkspaceId(ws.id), SHARDS);
    cluster.wait_led();
    let leader = cluster.leader(0, shard).expect("a leader");
    let follower = (leader + 1) % 3;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let url = |i: usize| format!("http://{}", cluster.addr(i));
    let (mut waited, mut plain) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut n = 0;
    while Instant::now() < deadline {
        let r = agent
            .post(&format!("{}{DELTA}", url(leader)))
            .set("Content-Type", "application/json")
            .send_bytes(&bc[pick(0, 1, n, bc.len())])
            .expect("a delta through the leader");
        n += 1;
        let seq = r
            .header("x-cohortd-sequence")
            .expect("a sequence")
            .to_string();
        let read = |min: Option<&str>| {
            let mut req = agent.get(&format!("{}/healthz", url(follower)));
            if let Some(s) = min {
                req = req.set("X-Cohortd-Min-Sequence", s);
            }
            let t0 = Instant::now();
            let r = req.call().expect("a read on the follower");
            assert_eq!(r.status(), 200);
            t0.elapsed()
        };
        waited.push(read(Some(&seq)));
        plain.push(read(None));
    }
    waited.sort();
    plain.sort();
    println!(
        "\n### 3. Follower lag at steady ingest (target: p99 ≤ 50 ms)\n\n\
         {n} deltas of 1000 ids through the shard's leader, one at a time; after each, a \
         read on a follower waiting for its sequence, and the same read without waiting.\n\n\
         | read on the follower | p50 ms | p99 ms | p999 ms |\n| --- | --- | --- | --- |\n\
         | waiting for the delta (`X-Cohortd-Min-Sequence`) | {} | {} | {} |\n\
         | not waiting (the read's own cost) | {} | {} | {} |",
        pct(&waited, 0.5),
        pct(&waited, 0.99),
        pct(&waited, 0.999),
        pct(&plain, 0.5),
        pct(&plain, 0.99),
        pct(&plain, 0.999),
    );
}

fn main() {
    let a = args();
    println!(
        "cohortd cluster bench: `cargo bench --bench cluster -- --seconds {} --connections {} \
         --rounds {}`; {PROFILES} profiles a workspace, {SHARDS} shards",
        a.seconds, a.connections, a.rounds
    );
    let wants = |n: u32| a.only.is_none_or(|o| o == n);
    let mut cluster = Cluster::start();
    if wants(1) {
        let single = start_server("always", 0);
        scenario_ingest(&a, &cluster, &single);
    }
    if wants(3) {
        scenario_lag(&a, &cluster);
    }
    if wants(2) {
        scenario_failover(&a, &mut cluster);
    }
}
