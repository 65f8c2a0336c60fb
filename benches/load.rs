//! Load benchmark: starts the real server (this build's `cohortd` binary) as
//! its own process on a loopback port and drives it over HTTP from this
//! process, then stops it and removes its data dir.
//!
//! ```sh
//! cargo bench --bench load                                  # defaults below
//! cargo bench --bench load -- --profiles 1000000 --seconds 10 --connections 4 --fsync always
//! ```
//!
//! Scenarios (each runs `--seconds`, over `--connections` keep-alive
//! connections): 1000-id deltas (75 % adds, 25 % removes), one delta at a
//! time unloaded (latency), 1000-user batch membership checks, segment
//! counts (`A and B and not C`), member paging. Prints throughput and
//! p50/p99/p999 latency as a markdown table.

mod common;
#[path = "common/redis.rs"]
mod redis;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{pct, start_server, Conn, ADMIN, PARTNER_KEY};
use redis::{resp, start_redis, Reply, Resp};

struct Args {
    profiles: u32,
    seconds: u64,
    connections: usize,
    fsync: String,
    cohort_size: u32,
    extra_cohorts: u32,
    no_peer: bool,
}

fn args() -> Args {
    let mut a = Args {
        profiles: 1_000_000,
        seconds: 8,
        connections: 4,
        fsync: "always".into(),
        cohort_size: 100_000,
        extra_cohorts: 0,
        no_peer: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--profiles" => a.profiles = val().parse().expect("--profiles N"),
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--connections" => a.connections = val().parse().expect("--connections N"),
            "--fsync" => a.fsync = val(),
            "--cohort-size" => a.cohort_size = val().parse().expect("--cohort-size N"),
            "--extra-cohorts" => a.extra_cohorts = val().parse().expect("--extra-cohorts N"),
            "--no-peer" => a.no_peer = true,
            _ => {} // cargo passes --bench
        }
    }
    a
}

fn uid_name(i: u32) -> String {
    format!("user_{i:09}")
}

/// The draws of cohort `i` (A = 0, B = 1, C = 2, then the extra ones): the
/// Redis peer loads exactly the same members.
fn cohort_rng(i: usize) -> Lcg {
    Lcg(3 + i as u64 * 7919)
}

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

struct Setup {
    key: String,
    secret: String,
    segment: String,
}

/// Profiles through /users/track, three cohorts A, B, C through deltas, and
/// the segment `A and B and not C`.
fn setup(addr: SocketAddr, a: &Args) -> Setup {
    let mut c = Conn::open(addr);
    let (key, secret) = c.workspace("bench", "segment");
    let started = Instant::now();
    let n = a.profiles;
    let conns = a.connections.max(1) as u32;
    std::thread::scope(|s| {
        for t in 0..conns {
            let key = key.clone();
            s.spawn(move || {
                let mut c = Conn::open(addr);
                let mut i = t * 75;
                while i < n {
                    let batch: Vec<Value> = (i..(i + 75).min(n))
                        .map(|u| json!({"external_id": uid_name(u)}))
                        .collect();
                    c.json(
                        "POST",
                        "/users/track",
                        Some(&key),
                        &json!({ "attributes": batch }),
                    );
                    i += 75 * conns;
                }
            });
        }
    });
    eprintln!(
        "setup: {n} profiles in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut cohorts: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
    cohorts.extend((0..a.extra_cohorts).map(|i| format!("extra_{i}")));
    std::thread::scope(|s| {
        for (t, chunk) in cohorts
            .chunks(cohorts.len().div_ceil(conns as usize))
            .enumerate()
        {
            let secret = secret.clone();
            let first = t * cohorts.len().div_ceil(conns as usize);
            s.spawn(move || {
                let mut c = Conn::open(addr);
                for (i, cohort) in chunk.iter().enumerate() {
                    let mut rng = cohort_rng(first + i);
                    let mut left = a.cohort_size;
                    while left > 0 {
                        let k = left.min(1000);
                        let ids: Vec<String> = (0..k).map(|_| uid_name(rng.below(n))).collect();
                        c.json(
                            "POST",
                            "/partners/segment/cohorts/users",
                            None,
                            &json!({"partner_api_key": PARTNER_KEY, "client_secret": secret,
                                    "cohort_id": cohort, "cohort_changes": [{"user_ids": ids}]}),
                        );
                        left -= k;
                    }
                }
            });
        }
    });
    eprintln!(
        "setup: {} cohorts in {:.1}s",
        cohorts.len(),
        started.elapsed().as_secs_f64()
    );
    // The first connection sat idle through the setup: the server has
    // closed it (keep-alive timeout).
    let mut c = Conn::open(addr);
    let seg = c.json(
        "POST",
        "/segments",
        Some(&key),
        &json!({"name": "a and b and not c", "filter": {"and": [
            {"cohort": {"partner": "segment", "cohort_id": "A"}},
            {"cohort": {"partner": "segment", "cohort_id": "B"}},
            {"not": {"cohort": {"partner": "segment", "cohort_id": "C"}}}]}}),
    );
    Setup {
        key,
        secret,
        segment: seg["segment_id"].as_str().unwrap().to_string(),
    }
}

struct Outcome {
    requests: u64,
    units: u64,
    seconds: f64,
    latencies: Vec<Duration>,
}

/// One request to send. Each connection builds `POOL` of them before the
/// clock starts and then cycles through them, so the figures are the
/// server's work and the round trip, not the client's JSON building (the
/// load generator shares the server's two cores).
struct Request {
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Vec<u8>,
    expect: u16,
}

const POOL: usize = 64;

/// Runs `conns` client threads for `seconds`. Each prebuilds `POOL`
/// requests with `prepare` (off the clock), opens its connection with
/// `open`, and then cycles through its requests with `send`, which returns
/// the units of work a request stood for. Only `send` is timed.
fn drive<R: Send, C>(
    conns: usize,
    seconds: u64,
    prepare: impl Fn(&mut Lcg) -> R,
    open: impl Fn() -> C + Sync,
    send: impl Fn(&mut C, &R) -> u64 + Sync,
) -> Outcome {
    let stop = AtomicBool::new(false);
    let pools: Vec<Vec<R>> = (0..conns)
        .map(|t| {
            let mut rng = Lcg(1000 + t as u64);
            (0..POOL).map(|_| prepare(&mut rng)).collect()
        })
        .collect();
    let started = Instant::now();
    let results: Vec<(u64, u64, Vec<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = pools
            .into_iter()
            .map(|pool| {
                let (stop, open, send) = (&stop, &open, &send);
                s.spawn(move || {
                    let mut c = open();
                    let (mut reqs, mut done, mut lat) = (0u64, 0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let r = &pool[reqs as usize % POOL];
                        let t0 = Instant::now();
                        done += send(&mut c, r);
                        lat.push(t0.elapsed());
                        reqs += 1;
                    }
                    (reqs, done, lat)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let (mut requests, mut done) = (0, 0);
    for (r, u, l) in results {
        requests += r;
        done += u;
        latencies.extend(l);
    }
    latencies.sort_unstable();
    Outcome {
        requests,
        units: done,
        seconds,
        latencies,
    }
}

/// `drive` over HTTP to cohortd; `units` reads a response's work.
fn drive_http(
    addr: SocketAddr,
    conns: usize,
    seconds: u64,
    prepare: impl Fn(&mut Lcg) -> Request,
    units: impl Fn(&[u8]) -> u64 + Sync,
) -> Outcome {
    drive(
        conns,
        seconds,
        prepare,
        || Conn::open(addr),
        |c: &mut Conn, r: &Request| {
            let (status, body) = c.call(r.method, &r.path, r.token.as_deref(), &r.body);
            assert_eq!(status, r.expect, "{} {}", r.method, r.path);
            units(&body)
        },
    )
}

fn row(name: &str, unit: &str, o: &Outcome) {
    println!(
        "| {name} | {:.0} req/s | {:.0} {unit}/s | {} | {} | {} |",
        o.requests as f64 / o.seconds,
        o.units as f64 / o.seconds,
        pct(&o.latencies, 0.50),
        pct(&o.latencies, 0.99),
        pct(&o.latencies, 0.999),
    );
}

// ---- the peer: Redis (`redis.rs`), and what only this bench sends it ----

fn resp_with(cmd: &[&[u8]], ids: &[String]) -> Vec<u8> {
    let mut args: Vec<&[u8]> = cmd.to_vec();
    args.extend(ids.iter().map(|s| s.as_bytes()));
    resp(&args)
}

/// A pipeline to send and how many replies it gets.
struct Pipeline {
    bytes: Vec<u8>,
    replies: usize,
}

fn drive_redis(
    addr: SocketAddr,
    conns: usize,
    seconds: u64,
    prepare: impl Fn(&mut Lcg) -> Pipeline,
    units: u64,
) -> Outcome {
    drive(
        conns,
        seconds,
        prepare,
        || Resp::open(addr).expect("connect to redis"),
        |c: &mut Resp, p: &Pipeline| {
            for r in c.roundtrip(&p.bytes, p.replies).expect("redis roundtrip") {
                if let Reply::Array(v) = r {
                    assert!(
                        v.iter().all(|x| matches!(x, Reply::Int(0 | 1))),
                        "SMISMEMBER answers 0 or 1"
                    );
                }
            }
            units
        },
    )
}

/// Loads cohorts A, B, C with exactly the members cohortd got.
fn load_redis(addr: SocketAddr, a: &Args) {
    let mut c = Resp::open(addr).expect("connect to redis");
    for (i, key) in ["A", "B", "C"].iter().enumerate() {
        let mut rng = cohort_rng(i);
        let mut left = a.cohort_size;
        while left > 0 {
            let k = left.min(1000);
            let ids: Vec<String> = (0..k).map(|_| uid_name(rng.below(a.profiles))).collect();
            c.roundtrip(&resp_with(&[b"SADD", key.as_bytes()], &ids), 1)
                .expect("SADD");
            left -= k;
        }
    }
}

fn redis_count(addr: SocketAddr) -> i64 {
    let mut c = Resp::open(addr).expect("connect to redis");
    let r = c
        .roundtrip(
            &[
                resp(&[b"SINTERCARD", b"2", b"A", b"B"]),
                resp(&[b"SINTERCARD", b"3", b"A", b"B", b"C"]),
            ]
            .concat(),
            2,
        )
        .expect("SINTERCARD");
    match (&r[0], &r[1]) {
        (Reply::Int(ab), Reply::Int(abc)) => ab - abc,
        other => panic!("unexpected {other:?}"),
    }
}

fn ratio(ours: &Outcome, peer: &Outcome) -> String {
    let (a, b) = (
        ours.units as f64 / ours.seconds,
        peer.units as f64 / peer.seconds,
    );
    if b == 0.0 {
        return "-".into();
    }
    format!("{:.2}×", a / b)
}

fn main() {
    let a = args();
    let mut server = start_server(&a.fsync, 0);
    let addr = server.addr;
    let s = setup(addr, &a);
    let n = a.profiles;
    println!(
        "\ncohortd load: {} profiles, cohorts A/B/C of ~{} draws, {} connections, {} s each, fsync = {}\n",
        n, a.cohort_size, a.connections, a.seconds, a.fsync
    );
    println!("| scenario | requests | throughput | p50 ms | p99 ms | p999 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");

    let delta = |rng: &mut Lcg| {
        let adds: Vec<String> = (0..750).map(|_| uid_name(rng.below(n))).collect();
        let removes: Vec<String> = (0..250).map(|_| uid_name(rng.below(n))).collect();
        let cohort = format!("ingest_{}", rng.below(8));
        let body = json!({"partner_api_key": PARTNER_KEY, "client_secret": s.secret, "cohort_id": cohort,
            "cohort_changes": [{"user_ids": adds}, {"user_ids": removes, "should_remove": true}]});
        Request {
            method: "POST",
            path: "/partners/segment/cohorts/users".into(),
            token: None,
            body: body.to_string().into_bytes(),
            expect: 201,
        }
    };
    let thousand = |_: &[u8]| 1000;
    let ingest = drive_http(addr, a.connections, a.seconds, delta, thousand);
    row("ingest: 1000-id deltas", "ids", &ingest);
    row(
        "one delta at a time (unloaded)",
        "ids",
        &drive_http(addr, 1, a.seconds.min(5), delta, thousand),
    );

    let check = |rng: &mut Lcg| {
        let users: Vec<Value> = (0..1000)
            .map(|_| json!({"external_id": uid_name(rng.below(n))}))
            .collect();
        Request {
            method: "POST",
            path: format!("/segments/{}/membership", s.segment),
            token: Some(s.key.clone()),
            body: json!({ "users": users }).to_string().into_bytes(),
            expect: 200,
        }
    };
    let checks = drive_http(addr, a.connections, a.seconds, check, thousand);
    row("batch membership: 1000 users", "checks", &checks);

    let count = |_: &mut Lcg| Request {
        method: "GET",
        path: format!("/segments/{}/count", s.segment),
        token: Some(s.key.clone()),
        body: Vec::new(),
        expect: 200,
    };
    let counts = drive_http(addr, a.connections, a.seconds, count, |_| 1);
    row("segment count: A and B and not C", "counts", &counts);

    let page = |rng: &mut Lcg| Request {
        method: "GET",
        path: format!(
            "/segments/{}/members?limit=1000&cursor={}",
            s.segment,
            rng.below(n)
        ),
        token: Some(s.key.clone()),
        body: Vec::new(),
        expect: 200,
    };
    let members = |body: &[u8]| {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        v["members"].as_array().map_or(0, |m| m.len() as u64)
    };
    row(
        "member pages: limit 1000",
        "members",
        &drive_http(addr, a.connections, a.seconds, page, members),
    );

    let mut c = Conn::open(addr);
    let (_, body) = c.call(
        "GET",
        &format!("/segments/{}/count", s.segment),
        Some(&s.key),
        b"",
    );
    let our_count =
        serde_json::from_slice::<Value>(&body).map_or(-1, |v| v["count"].as_i64().unwrap_or(-1));
    let metrics = c.call("GET", "/metrics", None, b"").1;
    let text = String::from_utf8_lossy(&metrics);
    for line in text
        .lines()
        .filter(|l| l.starts_with("cohortd_wal_") || l.starts_with("cohortd_profiles "))
    {
        println!("    {line}");
    }
    let rss = server.rss_kib().unwrap_or(0);
    println!("    server RSS: {:.1} MiB", rss as f64 / 1024.0);

    let t0 = Instant::now();
    let snap = c.json("POST", "/admin/snapshots", Some(ADMIN), &json!({}));
    println!(
        "    snapshot: {:.2} s, {:.1} MiB",
        t0.elapsed().as_secs_f64(),
        snap["bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
    );
    drop(c);
    let restart = server.crash_and_restart();
    println!(
        "    restart after kill -9 (snapshot load + log replay) to /readyz: {:.2} s; RSS after restart {:.1} MiB",
        restart.as_secs_f64(),
        server.rss_kib().unwrap_or(0) as f64 / 1024.0
    );

    if a.no_peer {
        return;
    }
    let redis = match start_redis() {
        Ok(r) => r,
        Err(e) => {
            println!("\nRedis peer skipped: {e}");
            return;
        }
    };
    let raddr = redis.addr;
    load_redis(raddr, &a);
    let redis_sets = redis::used_memory(raddr);
    let theirs = redis_count(raddr);
    assert_eq!(
        our_count, theirs,
        "cohortd and Redis disagree on |A and B and not C|"
    );
    let r_ingest = drive_redis(
        raddr,
        a.connections,
        a.seconds,
        |rng| {
            let adds: Vec<String> = (0..750).map(|_| uid_name(rng.below(n))).collect();
            let removes: Vec<String> = (0..250).map(|_| uid_name(rng.below(n))).collect();
            let key = format!("ingest_{}", rng.below(8));
            Pipeline {
                bytes: [
                    resp_with(&[b"SADD", key.as_bytes()], &adds),
                    resp_with(&[b"SREM", key.as_bytes()], &removes),
                ]
                .concat(),
                replies: 2,
            }
        },
        1000,
    );
    let r_checks = drive_redis(
        raddr,
        a.connections,
        a.seconds,
        |rng| {
            let ids: Vec<String> = (0..1000).map(|_| uid_name(rng.below(n))).collect();
            Pipeline {
                bytes: [
                    resp_with(&[b"SMISMEMBER", b"A"], &ids),
                    resp_with(&[b"SMISMEMBER", b"B"], &ids),
                    resp_with(&[b"SMISMEMBER", b"C"], &ids),
                ]
                .concat(),
                replies: 3,
            }
        },
        1000,
    );
    let r_counts = drive_redis(
        raddr,
        a.connections,
        a.seconds,
        |_| Pipeline {
            bytes: [
                resp(&[b"SINTERCARD", b"2", b"A", b"B"]),
                resp(&[b"SINTERCARD", b"3", b"A", b"B", b"C"]),
            ]
            .concat(),
            replies: 2,
        },
        1,
    );
    println!(
        "\nRedis peer (redis-server, persistence off, same {} connections; pipelined SADD+SREM, \
         3× SMISMEMBER, SINTERCARD(A,B) − SINTERCARD(A,B,C)):\n",
        a.connections
    );
    println!("| scenario | requests | throughput | p50 ms | p99 ms | p999 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    row("ingest: 1000 ids (SADD 750 + SREM 250)", "ids", &r_ingest);
    row("batch membership: 1000 users", "checks", &r_checks);
    row("segment count: A and B and not C", "counts", &r_counts);
    println!("\n| cohortd ÷ Redis | ratio |");
    println!("| --- | --- |");
    println!(
        "| ingest ids/s (cohortd fsync = {}; Redis no persistence) | {} |",
        a.fsync,
        ratio(&ingest, &r_ingest)
    );
    println!(
        "| batch membership checks/s | {} |",
        ratio(&checks, &r_checks)
    );
    println!("| segment counts/s | {} |", ratio(&counts, &r_counts));
    println!(
        "    both count |A and B and not C| = {our_count}; Redis used_memory with A, B, C loaded: {:.1} MiB",
        redis_sets as f64 / (1 << 20) as f64
    );
}
