//! Tenant isolation benchmark: starts the real server (this build's
//! `cohortd` binary, or the one `COHORTD_BENCH_BIN` names) as its own
//! process on a free loopback port with a temp data dir, and while
//! workspace A sends hostile and careless requests back to back, times
//! workspace B's partner deltas (100 ids, in and out by turns) and
//! `GET /healthz`, each from its own connection, one request after another.
//!
//! ```sh
//! cargo bench --bench isolation                      # all phases, 3 s each
//! cargo bench --bench isolation -- --only 5a,7 --seconds 5 --a-conns 1 --http-workers 8
//! ```
//!
//! Phase 0 is a baseline (B alone); then one phase per kind of A request
//! (limits at and over `[limits]`, oversized filters, huge partner bodies,
//! broken JSON just under `max_body_bytes`, concurrent snapshots, many
//! large tracks, and tracks of 20-attribute users beside a loop of
//! segment counts). Prints a markdown table: what A got (status × count, p50
//! and max ms) and B's delta and `/healthz` p50/p99/max during that phase;
//! then where the CPU went per phase (the server's threads by part, this
//! client, every other process on the machine — the figures are only as
//! quiet as the machine) and the worst B latency of the run.
//!
//! It asserts no latency. It exits non-zero only if the server misbehaves
//! functionally: a request without an answer within `--timeout` seconds
//! (default 30), a non-2xx for B, an A answer outside what that kind of
//! request must get, or B's cohort or profiles changed by the run.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{pct, start_server, Conn, ADMIN, PARTNER_KEY};

const PARTNER: &str = "segment";
const DELTA_PATH: &str = "/partners/segment/cohorts/users";

struct Args {
    /// Seconds each phase runs.
    seconds: f64,
    /// Connections A sends from in the single-kind phases (1–5).
    a_conns: usize,
    a_profiles: u32,
    b_profiles: u32,
    /// Client read timeout: a request without an answer by then is a
    /// failure.
    timeout: Duration,
    /// Pause between two of B's requests on one connection.
    b_gap: Duration,
    /// Phases to run (all when empty); the baseline always runs.
    only: Vec<String>,
    /// The server's `http_workers` (0: one per core, as shipped).
    http_workers: usize,
    /// The server's `wal.fsync` ("always", as shipped).
    fsync: String,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 3.0,
        a_conns: 2,
        a_profiles: 20_000,
        b_profiles: 3_000,
        timeout: Duration::from_secs(30),
        b_gap: Duration::from_millis(2),
        only: Vec::new(),
        http_workers: 0,
        fsync: "always".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--a-conns" => a.a_conns = val().parse().expect("--a-conns N"),
            "--a-profiles" => a.a_profiles = val().parse().expect("--a-profiles N"),
            "--b-profiles" => a.b_profiles = val().parse().expect("--b-profiles N"),
            "--timeout" => a.timeout = Duration::from_secs(val().parse().expect("--timeout S")),
            "--b-gap-ms" => a.b_gap = Duration::from_millis(val().parse().expect("--b-gap-ms N")),
            "--only" => a.only = val().split(',').map(str::to_string).collect(),
            "--http-workers" => a.http_workers = val().parse().expect("--http-workers N"),
            "--fsync" => a.fsync = val(),
            _ => {} // cargo passes --bench
        }
    }
    a
}

impl Conn {
    /// A connection whose reads and writes give up after `timeout`.
    fn with_timeout(addr: SocketAddr, timeout: Duration) -> Conn {
        let c = Conn::open(addr);
        c.writer.set_read_timeout(Some(timeout)).expect("timeout");
        c.writer.set_write_timeout(Some(timeout)).expect("timeout");
        c
    }
}

/// A workspace as the bench uses it.
struct Tenant {
    key: String,
    secret: String,
    /// A saved segment of attribute leaves (A's; phase 8 counts it).
    segment: String,
}

fn tenant(c: &mut Conn, name: &str) -> Tenant {
    let (key, secret) = c.workspace(name, PARTNER);
    Tenant {
        key,
        secret,
        segment: String::new(),
    }
}

fn delta_body(secret: &str, cohort: &str, changes: Value) -> Vec<u8> {
    json!({"partner_api_key": PARTNER_KEY, "client_secret": secret,
           "cohort_id": cohort, "cohort_changes": changes})
    .to_string()
    .into_bytes()
}

fn a_user(i: u32) -> String {
    format!("a_{i:07}")
}

fn b_user(i: u32) -> String {
    format!("b_{i:07}")
}

/// B's cohort: the first half of B's profiles, and the last 100 go in and
/// out of it with each delta.
const B_COHORT: &str = "b_cohort";

fn setup(c: &mut Conn, a: &Args) -> (Tenant, Tenant) {
    let started = Instant::now();
    let mut ta = tenant(c, "tenant-a");
    let tb = tenant(c, "tenant-b");
    // A: profiles with a string to run regexes over, and one whose array
    // attribute the track phases edit.
    for from in (0..a.a_profiles).step_by(75) {
        let batch: Vec<Value> = (from..(from + 75).min(a.a_profiles))
            .map(|i| {
                json!({"external_id": a_user(i), "plan": format!("plan-{}", i % 7),
                       "bio": format!("user {i} of tenant a, signed up on day {} with plan {}", i % 365, i % 7)})
            })
            .collect();
        c.json(
            "POST",
            "/users/track",
            Some(&ta.key),
            &json!({ "attributes": batch }),
        );
    }
    c.json(
        "POST",
        "/users/track",
        Some(&ta.key),
        &json!({"attributes": [{"external_id": "a_target", "plan": "target"}]}),
    );
    ta.segment = c.json(
        "POST",
        "/segments",
        Some(&ta.key),
        &json!({"name": "plans", "filter": {"and": [
            {"attribute": {"name": "plan", "op": "equals", "value": "plan-3"}},
            {"not": {"attribute": {"name": "bio", "op": "matches_regex", "value": "day 1[0-9]+ "}}},
            {"or": [
                {"attribute": {"name": "score", "op": "greater_than", "value": 500}},
                {"attribute": {"name": "plan", "op": "does_not_exist"}}
            ]}
        ]}}),
    )["segment_id"]
        .as_str()
        .expect("segment created")
        .to_string();
    // B: profiles, a named cohort holding half of them.
    for from in (0..a.b_profiles).step_by(75) {
        let batch: Vec<Value> = (from..(from + 75).min(a.b_profiles))
            .map(|i| json!({"external_id": b_user(i), "plan": "gold"}))
            .collect();
        c.json(
            "POST",
            "/users/track",
            Some(&tb.key),
            &json!({ "attributes": batch }),
        );
    }
    c.json(
        "POST",
        "/partners/segment/cohorts",
        None,
        &json!({"partner_api_key": PARTNER_KEY, "client_secret": tb.secret, "cohort_id": B_COHORT,
                "name": "B's cohort", "created_at": "2024-01-01T00:00:00Z"}),
    );
    for from in (0..a.b_profiles / 2).step_by(1000) {
        let ids: Vec<String> = (from..(from + 1000).min(a.b_profiles / 2))
            .map(b_user)
            .collect();
        let body = delta_body(&tb.secret, B_COHORT, json!([{ "user_ids": ids }]));
        let (status, out) = c.call("POST", DELTA_PATH, None, &body);
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&out));
    }
    eprintln!(
        "setup: A {} profiles, B {} profiles and a cohort of {}, in {:.1}s",
        a.a_profiles,
        a.b_profiles,
        a.b_profiles / 2,
        started.elapsed().as_secs_f64()
    );
    (ta, tb)
}

/// One kind of request A sends, back to back, for a phase.
struct Kind {
    name: &'static str,
    label: String,
    conns: usize,
    method: &'static str,
    path: String,
    token: Option<String>,
    /// Bodies each connection cycles through (built before the clock).
    bodies: Vec<Arc<Vec<u8>>>,
    /// Another request that every other connection (the odd ones) sends
    /// instead, back to back too: `(method, path)`, no body.
    alternate: Option<(&'static str, String)>,
    /// What this kind of request must get; anything else is a failure.
    expect: &'static [u16],
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    label: String,
    conns: usize,
    /// Status → (count, latencies of those answers, first message seen).
    a: BTreeMap<u16, (usize, Vec<Duration>, String)>,
    delta: Vec<Duration>,
    health: Vec<Duration>,
    /// % of one core per part (`PARTS`, then client, other processes).
    cpu: Vec<f64>,
    /// The server's peak RSS so far (VmHWM), MiB, at the end of the phase.
    peak_mib: f64,
    /// Whether B's last acknowledged delta was an add (to check its
    /// cohort's size after the run).
    b_last_add: Option<bool>,
}

/// What a failed request looks like, for the report.
fn short(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut text = match (&v["code"], &v["message"]) {
        (Value::String(c), Value::String(m)) => format!("{c}: {m}"),
        (_, Value::String(m)) => m.clone(),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    if let Some(Value::String(e)) = v["errors"].get(0).map(|e| &e["type"]) {
        text = format!("{text}; errors[0]: {e}");
    }
    text.chars().take(110).collect()
}

/// B's two deltas: the same 100 ids in, then out.
struct B {
    adds: Vec<u8>,
    removes: Vec<u8>,
}

/// Runs one phase: A's `kind` (or nothing, for the baseline) on its own
/// connections while B's delta and `/healthz` are timed on theirs.
fn run_phase(
    addr: SocketAddr,
    pid: u32,
    a: &Args,
    name: &'static str,
    kind: Option<&Kind>,
    b: &B,
    failures: &mut Vec<String>,
) -> Phase {
    let stop = AtomicBool::new(false);
    let timeout = a.timeout;
    let mut phase = Phase {
        name,
        label: kind.map_or("(none: baseline)".into(), |k| k.label.clone()),
        conns: kind.map_or(0, |k| k.conns),
        a: BTreeMap::new(),
        delta: Vec::new(),
        health: Vec::new(),
        b_last_add: None,
        cpu: Vec::new(),
        peak_mib: 0.0,
    };
    let mut errors: Vec<String> = Vec::new();
    let (cpu0, t0) = (sample(pid), Instant::now());
    // Connections are opened one after another, A's first, so that each
    // phase places them on the server's HTTP workers the same way: actix
    // hands accepted connections to its workers round robin, so with 2
    // workers and 2 A connections each of B's shares a worker with one of
    // A's (as any client's would among many).
    let a_conns: Vec<(usize, Conn)> = (0..kind.map_or(0, |k| k.conns))
        .map(|t| (t, Conn::with_timeout(addr, timeout)))
        .collect();
    let delta_conn = Conn::with_timeout(addr, timeout);
    let health_conn = Conn::with_timeout(addr, timeout);
    std::thread::scope(|s| {
        let stop = &stop;
        let a_threads: Vec<_> = a_conns
            .into_iter()
            .filter_map(|(t, c)| Some((kind?, t, c)))
            .map(|(k, t, mut c)| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let body = &k.bodies[i % k.bodies.len()];
                        i += 1;
                        let (method, path, body) = match &k.alternate {
                            Some((m, p)) if t % 2 == 1 => (*m, p.as_str(), &[][..]),
                            _ => (k.method, k.path.as_str(), &body[..]),
                        };
                        let t0 = Instant::now();
                        let r = c.try_call(method, path, k.token.as_deref(), body);
                        out.push((t0.elapsed(), r.map(|(status, b)| (status, short(&b)))));
                    }
                    out
                })
            })
            .collect();
        let delta = s.spawn(move || {
            let mut c = delta_conn;
            let (mut lat, mut errs, mut add) = (Vec::new(), Vec::new(), true);
            let mut last_add = None;
            while !stop.load(Ordering::Relaxed) {
                let body = if add { &b.adds } else { &b.removes };
                let t0 = Instant::now();
                let r = c.try_call("POST", DELTA_PATH, None, body);
                lat.push(t0.elapsed());
                match r {
                    Ok((status, _)) if (200..300).contains(&status) => last_add = Some(add),
                    Ok((status, b)) => errs.push(format!("B delta → {status}: {}", short(&b))),
                    Err(e) => errs.push(format!("B delta: {e} after {:?}", t0.elapsed())),
                }
                add = !add;
                std::thread::sleep(a.b_gap);
            }
            (lat, errs, last_add)
        });
        let health = s.spawn(move || {
            let mut c = health_conn;
            let (mut lat, mut errs) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = c.try_call("GET", "/healthz", None, b"");
                lat.push(t0.elapsed());
                match r {
                    Ok((status, _)) if (200..300).contains(&status) => {}
                    Ok((status, b)) => errs.push(format!("B /healthz → {status}: {}", short(&b))),
                    Err(e) => errs.push(format!("B /healthz: {e} after {:?}", t0.elapsed())),
                }
                std::thread::sleep(a.b_gap);
            }
            (lat, errs)
        });
        std::thread::sleep(Duration::from_secs_f64(a.seconds));
        stop.store(true, Ordering::Relaxed);
        let cpu1 = sample(pid);
        phase.cpu = cpu_use(&cpu0, &cpu1, t0.elapsed());
        phase.peak_mib = peak_rss_mib(pid);
        for h in a_threads {
            for (lat, r) in h.join().expect("A thread") {
                match r {
                    Ok((status, msg)) => {
                        let e = phase.a.entry(status).or_insert((0, Vec::new(), msg));
                        e.0 += 1;
                        e.1.push(lat);
                    }
                    Err(e) => errors.push(format!("A {}: {e} after {lat:?}", phase.label)),
                }
            }
        }
        let (lat, errs, last_add) = delta.join().expect("B delta thread");
        phase.delta = lat;
        phase.b_last_add = last_add;
        errors.extend(errs);
        let (lat, errs) = health.join().expect("B healthz thread");
        phase.health = lat;
        errors.extend(errs);
    });
    if let Some(k) = kind {
        for (status, (n, _, msg)) in &phase.a {
            if !k.expect.contains(status) {
                errors.push(format!(
                    "A {}: {n}× {status} ({msg}), expected one of {:?}",
                    k.label, k.expect
                ));
            }
        }
    }
    phase.delta.sort_unstable();
    phase.health.sort_unstable();
    for e in errors.iter().take(5) {
        eprintln!("  FAILURE in phase {name}: {e}");
    }
    failures.extend(errors.into_iter().map(|e| format!("phase {name}: {e}")));
    phase
}

/// Where CPU time went, in clock ticks (USER_HZ, 100 a second on Linux):
/// the server's threads by part, this process (the load generator shares
/// the server's cores), and the whole machine.
#[derive(Default)]
struct Cpu {
    parts: BTreeMap<&'static str, u64>,
    client: u64,
    machine: u64,
}

/// The server's parts in the CPU table, in order, and the thread names
/// (`comm`, a prefix) that make them; `other server` is what no live thread
/// of a known kind accounts for (the main thread, the acceptor, the
/// blocking pool where snapshots are written, and threads gone since).
const PARTS: [(&str, &str); 9] = [
    ("HTTP workers", "actix-rt"),
    ("lanes", "cohortd-lane"),
    ("router", "cohortd-router"),
    ("cohort arbiters", "cohortd-cohort"),
    ("WAL writer", "cohortd-wal"),
    ("read pool", "cohortd-read"),
    ("parse pool", "cohortd-parse"),
    ("apply pool", "cohortd-apply"),
    ("other server", ""),
];

/// utime + stime of a `/proc/.../stat` line.
fn ticks(stat: &str) -> u64 {
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

fn read(path: impl AsRef<std::path::Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Samples the server's threads, each counted by its name (the engine
/// names its arbiters; actix-web's workers keep actix's own name).
fn sample(pid: u32) -> Cpu {
    let threads: Vec<(String, u64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let comm = read(e.path().join("comm")).trim().to_string();
            (comm, ticks(&read(e.path().join("stat"))))
        })
        .collect();
    let mut cpu = Cpu::default();
    let mut known = 0;
    for (comm, t) in &threads {
        let Some((part, _)) = PARTS
            .iter()
            .find(|(_, prefix)| !prefix.is_empty() && comm.starts_with(prefix))
        else {
            continue;
        };
        *cpu.parts.entry(part).or_default() += t;
        known += t;
    }
    // The process's line counts every thread, live or gone.
    let total = ticks(&read(format!("/proc/{pid}/stat")));
    cpu.parts
        .insert("other server", total.saturating_sub(known));
    cpu.client = ticks(&read("/proc/self/stat"));
    // The first line of /proc/stat, all cores: busy is all but idle and
    // iowait (the 4th and 5th numbers).
    cpu.machine = read("/proc/stat")
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse::<u64>().ok())
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    cpu
}

/// The peak resident set of `pid` since it started (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    read(format!("/proc/{pid}/status"))
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Percent of one core each part of the server used between two
/// samples, then the bench client's and the machine's other processes'.
fn cpu_use(before: &Cpu, after: &Cpu, wall: Duration) -> Vec<f64> {
    let pct = |t: u64| t as f64 / wall.as_secs_f64(); // 100 ticks = 1 core-second
    let d = |p: &str| {
        let get = |c: &Cpu| c.parts.get(p).copied().unwrap_or(0);
        get(after).saturating_sub(get(before))
    };
    let server: u64 = PARTS.iter().map(|(p, _)| d(p)).sum();
    let client = after.client.saturating_sub(before.client);
    let others = after
        .machine
        .saturating_sub(before.machine)
        .saturating_sub(server + client);
    PARTS
        .iter()
        .map(|(p, _)| pct(d(p)))
        .chain([pct(client), pct(others)])
        .collect()
}

fn max(l: &[Duration]) -> Duration {
    l.last().copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// `201×37 (p50 12.3, max 40.1)` for each status A got.
fn answers(p: &Phase) -> String {
    if p.a.is_empty() {
        return "-".into();
    }
    p.a.iter()
        .map(|(status, (n, lat, _))| {
            let mut lat = lat.clone();
            lat.sort_unstable();
            format!(
                "{status}×{n} (p50 {}, max {})",
                pct(&lat, 0.5),
                ms(max(&lat))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every kind of A request, in phase order.
fn kinds(a: &Args, ta: &Tenant, max_body: usize) -> Vec<Kind> {
    let track = |attributes: Value| -> Arc<Vec<u8>> {
        Arc::new(json!({ "attributes": attributes }).to_string().into_bytes())
    };
    let items =
        |n: usize, tag: &str| -> Vec<String> { (0..n).map(|i| format!("{tag}{i}")).collect() };
    let one = |body: Arc<Vec<u8>>| vec![body];
    let users = |name, label: &str, conns, bodies, expect| Kind {
        name,
        label: label.into(),
        conns,
        method: "POST",
        path: "/users/track".into(),
        token: Some(ta.key.clone()),
        bodies,
        alternate: None,
        expect,
    };
    let preview = |name, label: &str, filter: Value, expect| Kind {
        name,
        label: label.into(),
        conns: a.a_conns,
        method: "POST",
        path: "/segments/preview".into(),
        token: Some(ta.key.clone()),
        bodies: one(Arc::new(
            json!({ "filter": filter }).to_string().into_bytes(),
        )),
        alternate: None,
        expect,
    };
    let partner = |name, label: &str, body: Vec<u8>, expect| Kind {
        name,
        label: label.into(),
        conns: a.a_conns,
        method: "POST",
        path: DELTA_PATH.into(),
        token: None,
        bodies: one(Arc::new(body)),
        alternate: None,
        expect,
    };
    // Regexes that match no profile, so every leaf runs on every profile.
    let regex = |i: usize| {
        json!({"attribute": {"name": "bio", "op": "matches_regex",
                                                "value": format!("signed up on day {i}[a-z]+ with")}})
    };

    // 2.5M empty change objects: 3 bytes each, just under 8 MiB.
    let mut empties = format!(
        "{{\"partner_api_key\":\"{PARTNER_KEY}\",\"client_secret\":\"{}\",\"cohort_id\":\"a_cohort\",\"cohort_changes\":[",
        ta.secret
    )
    .into_bytes();
    for i in 0..2_500_000 {
        empties.extend_from_slice(if i == 0 { b"{}" } else { b",{}" });
    }
    empties.extend_from_slice(b"]}");
    assert!(empties.len() < max_body, "under max_body_bytes");
    let singles: Vec<Value> = (0..10_000u32)
        .map(|i| json!({ "user_ids": [a_user(i)] }))
        .collect();

    // Just under max_body_bytes: a large valid-looking document whose last
    // byte breaks it, so the parser does all the work before it fails.
    let garbage = |prefix: &str, object: &str| -> Vec<u8> {
        let mut b = prefix.as_bytes().to_vec();
        while b.len() + object.len() + 2 < max_body - 1024 {
            b.extend_from_slice(object.as_bytes());
            b.push(b',');
        }
        b.extend_from_slice(b"@}");
        b
    };
    let users_garbage = garbage(
        "{\"attributes\":[",
        "{\"external_id\":\"garbage\",\"plan\":\"x\",\"n\":[1,2,3]}",
    );
    let partner_garbage = garbage(
        &format!(
            "{{\"partner_api_key\":\"{PARTNER_KEY}\",\"client_secret\":\"{}\",\"cohort_id\":\"a_cohort\",\"junk\":[",
            ta.secret
        ),
        "{\"user_ids\":[\"garbage\"],\"n\":[1,2,3]}",
    );

    // Phase 7: 8 connections, each cycling through 4 bodies of 75 users
    // with a 1000-item array each (its own users, so every request writes).
    let big_tracks = (0..32u32)
        .map(|b| {
            let objs: Vec<Value> = (0..75u32)
                .map(|u| json!({"external_id": a_user(b * 75 + u), "tags": items(1000, &format!("t{b}_"))}))
                .collect();
            track(json!(objs))
        })
        .collect();

    // Phase 8: new profiles with 20 attributes each, 75 a request, on 4
    // connections, while 4 more count A's segment of attribute leaves.
    let wide_tracks = (0..64u32)
        .map(|b| {
            let objs: Vec<Value> = (0..75u32)
                .map(|u| {
                    let i = b * 75 + u;
                    let mut o = json!({"external_id": format!("a_wide_{i}"), "plan": format!("plan-{}", i % 7),
                                       "score": i % 1000, "vip": i % 2 == 0,
                                       "signed_up_at": format!("2024-{:02}-{:02}T10:00:00Z", i % 12 + 1, i % 28 + 1),
                                       "tags": [format!("t{}", i % 10), format!("u{}", i % 13)]});
                    for k in 0..15 {
                        o[format!("attr_{k}")] = json!(format!("v{}", (i + k) % 50));
                    }
                    o
                })
                .collect();
            track(json!(objs))
        })
        .collect();

    vec![
        users(
            "1a",
            "track: add 1,000 items to one array (at array_items)",
            a.a_conns,
            one(track(
                json!([{"external_id": "a_target", "tags": {"add": items(1000, "x")}}]),
            )),
            &[201],
        ),
        users(
            "1b",
            "track: add 50,000 items to one array",
            a.a_conns,
            one(track(
                json!([{"external_id": "a_target", "tags": {"add": items(50_000, "y")}}]),
            )),
            &[400],
        ),
        users(
            "2a",
            "track: remove 50,000 items",
            a.a_conns,
            one(track(
                json!([{"external_id": "a_target", "tags": {"remove": items(50_000, "y")}}]),
            )),
            &[400],
        ),
        users(
            "2b",
            "track: remove 1,000 items",
            a.a_conns,
            one(track(
                json!([{"external_id": "a_target", "tags": {"remove": items(1000, "x")}}]),
            )),
            &[201],
        ),
        preview(
            "3a",
            "preview: or of 20,000 regex leaves",
            json!({"or": (0..20_000).map(regex).collect::<Vec<_>>()}),
            &[400],
        ),
        preview(
            "3b",
            &format!(
                "preview: or of 100 regex leaves over {} profiles",
                a.a_profiles
            ),
            json!({"or": (0..100).map(regex).collect::<Vec<_>>()}),
            &[200, 503],
        ),
        partner(
            "4a",
            &format!(
                "delta: 2.5M empty change objects ({:.2} MiB)",
                empties.len() as f64 / (1 << 20) as f64
            ),
            empties,
            &[400, 413],
        ),
        partner(
            "4b",
            "delta: 10,000 change objects of 1 id",
            delta_body(&ta.secret, "a_cohort", json!(singles)),
            &[400],
        ),
        users(
            "5a",
            &format!(
                "track: broken JSON, {:.2} MiB",
                users_garbage.len() as f64 / (1 << 20) as f64
            ),
            a.a_conns,
            one(Arc::new(users_garbage)),
            &[400],
        ),
        partner(
            "5b",
            &format!(
                "delta: broken JSON, {:.2} MiB",
                partner_garbage.len() as f64 / (1 << 20) as f64
            ),
            partner_garbage,
            &[400],
        ),
        Kind {
            name: "6",
            label: "POST /admin/snapshots".into(),
            conns: 10,
            method: "POST",
            path: "/admin/snapshots".into(),
            token: Some(ADMIN.into()),
            bodies: one(Arc::new(b"{}".to_vec())),
            alternate: None,
            expect: &[201],
        },
        users(
            "7",
            "track: 75 users × 1,000-item arrays",
            8,
            big_tracks,
            &[201, 503],
        ),
        Kind {
            alternate: Some(("GET", format!("/segments/{}/count", ta.segment))),
            ..users(
                "8",
                "track: 75 new users × 20 attributes (4 conns), and segment counts (4 conns)",
                8,
                wide_tracks,
                &[200, 201, 503],
            )
        },
    ]
}

fn main() {
    let a = args();
    let server = start_server(&a.fsync, a.http_workers);
    let (addr, pid) = (server.addr, server.child.id());
    let mut c = Conn::open(addr);
    let (ta, tb) = setup(&mut c, &a);
    let max_body = 8 << 20; // max_body_bytes in the shipped config.toml
    let all = kinds(&a, &ta, max_body);
    drop(c);

    let half = a.b_profiles / 2;
    let toggled: Vec<String> = (a.b_profiles - 100..a.b_profiles).map(b_user).collect();
    let b = B {
        adds: delta_body(&tb.secret, B_COHORT, json!([{ "user_ids": toggled }])),
        removes: delta_body(
            &tb.secret,
            B_COHORT,
            json!([{ "user_ids": toggled, "should_remove": true }]),
        ),
    };

    println!(
        "\ncohortd tenant isolation: A has {} profiles, B {} (a cohort of {half}); {} s per phase; \
         A on {} connection(s) unless said; B: a 100-id delta and GET /healthz, each on its own \
         connection, one after another ({} ms apart); client timeout {} s; fsync = {}\n",
        a.a_profiles,
        a.b_profiles,
        a.seconds,
        a.a_conns,
        a.b_gap.as_millis(),
        a.timeout.as_secs(),
        a.fsync
    );
    let mut failures = Vec::new();
    let mut phases = vec![run_phase(addr, pid, &a, "0", None, &b, &mut failures)];
    for kind in all
        .iter()
        .filter(|k| a.only.is_empty() || a.only.iter().any(|o| o == k.name))
    {
        eprintln!("phase {}: {}", kind.name, kind.label);
        phases.push(run_phase(
            addr,
            pid,
            &a,
            kind.name,
            Some(kind),
            &b,
            &mut failures,
        ));
    }

    println!("| phase | A sends (connections) | A answers: status×count (p50, max ms) | B deltas | B delta p50 / p99 / max ms | B /healthz p50 / p99 / max ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for p in &phases {
        println!(
            "| {} | {} ({}) | {} | {} | {} / {} / {} | {} / {} / {} |",
            p.name,
            p.label,
            p.conns,
            answers(p),
            p.delta.len(),
            pct(&p.delta, 0.5),
            pct(&p.delta, 0.99),
            ms(max(&p.delta)),
            pct(&p.health, 0.5),
            pct(&p.health, 0.99),
            ms(max(&p.health)),
        );
    }
    println!(
        "\nWhere the CPU went during each phase, % of one core (the machine has {}; \
         the server's threads by part, then this bench's own client threads, then every other process):\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| phase | {} | bench client | other processes | server peak RSS so far, MiB |",
        PARTS.map(|(p, _)| p).join(" | ")
    );
    println!("|{}", " --- |".repeat(PARTS.len() + 4));
    for p in &phases {
        let cells: Vec<String> = p.cpu.iter().map(|c| format!("{c:.0}")).collect();
        println!("| {} | {} | {:.0} |", p.name, cells.join(" | "), p.peak_mib);
    }
    println!();
    for p in &phases {
        for (status, (n, _, msg)) in &p.a {
            if !(200..300).contains(status) {
                println!("    {} A {status}×{n}: {msg}", p.name);
            }
        }
    }
    let worst = |f: fn(&Phase) -> &Vec<Duration>| {
        phases
            .iter()
            .map(|p| (max(f(p)), p.name))
            .max()
            .unwrap_or_default()
    };
    let (wd, wdp) = worst(|p| &p.delta);
    let (wh, whp) = worst(|p| &p.health);
    println!(
        "\nworst B latency over all phases: delta {} ms (phase {wdp}), /healthz {} ms (phase {whp})",
        ms(wd),
        ms(wh)
    );
    for p in &phases {
        let slow: usize =
            p.a.iter()
                .filter(|(s, _)| (200..300).contains(*s))
                .map(|(_, (_, l, _))| l.iter().filter(|d| d.as_millis() > 100).count())
                .sum();
        let b_max = max(&p.delta).max(max(&p.health));
        if slow > 0 || b_max > Duration::from_millis(100) {
            println!(
                "    note: phase {}: B max {} ms; A 2xx over 100 ms: {slow}",
                p.name,
                ms(b_max)
            );
        }
    }

    // Functional checks after the run: B's data is B's alone.
    let mut c = Conn::with_timeout(addr, a.timeout);
    let last_add = phases.iter().rev().find_map(|p| p.b_last_add);
    let (_, body) = c.call(
        "GET",
        &format!("/cohorts/{PARTNER}/{B_COHORT}"),
        Some(&tb.key),
        b"",
    );
    let size = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["size"].as_u64());
    let want = u64::from(half) + if last_add == Some(true) { 100 } else { 0 };
    if size != Some(want) {
        failures.push(format!(
            "B's cohort holds {size:?} members, expected {want}"
        ));
    }
    let count = c.json(
        "POST",
        "/segments/preview",
        Some(&tb.key),
        &json!({"filter": {"all": true}}),
    )["count"]
        .as_u64();
    if count != Some(u64::from(a.b_profiles)) {
        failures.push(format!(
            "B has {count:?} profiles, expected {}",
            a.b_profiles
        ));
    }
    drop(server);
    if !failures.is_empty() {
        eprintln!("\n{} functional failure(s):", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
}
