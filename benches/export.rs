//! Export benchmark (issue 12's targets): starts the real server (this
//! build's `cohortd` binary) as its own process on a loopback port, drives
//! it over HTTP from this process, and delivers its connectors to a
//! scriptable receiver in this process (`tests/common/receiver.rs`).
//!
//! ```sh
//! cargo bench --bench export                                # defaults below
//! cargo bench --bench export -- --profiles 200000 --seconds 10 --connections 4 \
//!     --fsync always --events 1000000 --deltas 400
//! cargo bench --bench export -- --only 3                    # one scenario (1, 2 or 3)
//! cargo bench --bench export -- --only 3 --phases d         # scenario 3's phase (d) alone
//! cargo bench --bench export -- --only 1 --rounds 3         # scenario 1's phases, 3 rounds
//! ```
//!
//! Each target is measured next to its baseline, in the same run, on the
//! same data:
//!
//! 1. Ingest (1000-id deltas, 75 % adds, 25 % removes, over
//!    `--connections` keep-alive connections for `--seconds`) with no
//!    connector, then with one connector (every event type) delivering to
//!    the test receiver (answering 200), then to a minimal sink (`Sink`,
//!    which parses nothing). Each phase runs on a fresh server given
//!    exactly the same profiles, so none inherits another's feed, cohorts
//!    or warm caches; the requests are the same too (same seeds). The
//!    three run in `--rounds` rounds, their order turning by one each
//!    round. Then how far behind the connector was, and how long it took
//!    to catch up.
//! 2. Delivery: two connectors created before `--events` cohort events
//!    are written are held (their receivers answer 503 meanwhile), then
//!    released one after the other; events/s from a release until every
//!    event is acknowledged. One delivers to the test receiver, one to the
//!    sink. Peers: a bare client POSTing the same batch bodies to each
//!    (the receivers' own ceilings), and the same events pulled through
//!    `GET /feed?limit=10000` pages.
//! 3. Segment tracking: one delta at a time (1000 ids, adds and removes of
//!    the same ids in turn on a cohort) with no saved segment, with 50
//!    saved segments of which 25 read the cohort, with only the 25 that do
//!    not, and with 50 of which 5 read it, each narrowed by an attribute
//!    or event: p50/p99, and how many `users.segments.*` events the
//!    segments made. The phases take turns, a slice of the same deltas
//!    each, round after round, so that the machine's drift over the run
//!    falls on all of them alike.
//!
//! The servers run the shipped `config.toml` with `fsync` as asked, no
//! periodic snapshots, connector retries backing off from 5 ms to at most
//! 20 ms (so that a held connector notices its release at once), and a
//! feed retention far above what the bench writes (so nothing expires).

mod common;
// The receiver is shared with the tests and the delivery engine's unit
// tests; this bench uses only part of it (no `Close`, no header lookups).
#[allow(dead_code)]
#[path = "../tests/common/receiver.rs"]
mod receiver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use common::{cpu_seconds, pct, start_server, Conn, Server, PARTNER_KEY};
use receiver::{Behaviour, Receiver};

struct Args {
    profiles: u32,
    seconds: u64,
    connections: usize,
    fsync: String,
    events: u64,
    deltas: usize,
    /// Only this scenario (1, 2 or 3); `None`: all.
    only: Option<u32>,
    /// Scenario 1's rounds of its three phases.
    rounds: usize,
    /// Scenario 3's phases to time (`a`, `b`, `c`, `A` for (a'), `d`):
    /// fewer for profiling one.
    phases: String,
}

fn args() -> Args {
    let mut a = Args {
        profiles: 200_000,
        seconds: 10,
        connections: 4,
        fsync: "always".into(),
        events: 1_000_000,
        deltas: 400,
        only: None,
        phases: "abcAd".into(),
        rounds: 2,
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
            "--events" => a.events = val().parse().expect("--events N"),
            "--deltas" => a.deltas = val().parse().expect("--deltas N"),
            "--only" => a.only = Some(val().parse().expect("--only 1|2|3")),
            "--phases" => a.phases = val(),
            "--rounds" => a.rounds = val().parse().expect("--rounds N"),
            _ => {} // cargo passes --bench
        }
    }
    assert!(a.profiles >= 10_000, "--profiles must be at least 10000");
    a.connections = a.connections.max(1);
    a.rounds = a.rounds.max(1);
    a.deltas = a.deltas.max(2) / 2 * 2; // whole add/remove pairs
    a
}

// ---- the server -------------------------------------------------------------

/// The config the servers run: the shipped `config.toml` (or
/// `COHORTD_BENCH_CONFIG`'s) with this bench's changes (module docs),
/// written to a temp file that `COHORTD_BENCH_CONFIG` then names, so that
/// `common::start_server` starts from it (and sets `fsync` and the
/// snapshot interval as for every bench). Each replaced line is checked to
/// be there, so that a change to the shipped config cannot silently void
/// one. Called once, before any thread is started.
fn bench_config() -> tempfile::NamedTempFile {
    let mut config = match std::env::var_os("COHORTD_BENCH_CONFIG") {
        Some(path) => std::fs::read_to_string(&path).expect("COHORTD_BENCH_CONFIG is readable"),
        None => include_str!("../config.toml").to_string(),
    };
    for (from, to) in [
        (
            "initial_backoff_ms = 500",
            "initial_backoff_ms = 5".to_string(),
        ),
        ("max_backoff_ms = 60000", "max_backoff_ms = 20".into()),
        (
            "retention_bytes = 268435456",
            format!("retention_bytes = {}", 64u64 << 30),
        ),
    ] {
        assert!(config.contains(from), "config.toml has no {from:?}");
        config = config.replace(from, &to);
    }
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), config).expect("write the bench config");
    std::env::set_var("COHORTD_BENCH_CONFIG", file.path());
    file
}

fn start(fsync: &str) -> Server {
    start_server(fsync, 0)
}

/// CPU seconds of the server and of this process (the client threads and,
/// when one runs, the receiver).
fn cpu(server: &Server) -> (f64, f64) {
    (
        cpu_seconds(&server.child.id().to_string()),
        cpu_seconds("self"),
    )
}

// ---- the data ---------------------------------------------------------------

fn uid_name(i: u32) -> String {
    format!("user_{i:09}")
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

/// splitmix64 of `i`: a profile's own draws.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const PLANS: [&str; 5] = ["free", "basic", "gold", "silver", "platinum"];
const COUNTRIES: [&str; 10] = ["US", "FR", "DE", "BR", "IN", "JP", "GB", "ES", "IT", "MX"];

/// Profile `i`'s attributes: plan, score 0–99, vip (10 %), country.
fn attributes(i: u32) -> Value {
    let h = mix(u64::from(i));
    json!({
        "external_id": uid_name(i),
        "plan": PLANS[(h % 5) as usize],
        "score": (h >> 8) % 100,
        "vip": (h >> 16).is_multiple_of(10),
        "country": COUNTRIES[((h >> 24) % 10) as usize],
    })
}

/// Profile `i`'s events (with `events`): `open` for one in three, a
/// `purchase` for one in seven.
fn events_of(i: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let day = 1 + i % 28;
    if i.is_multiple_of(3) {
        out.push(json!({"external_id": uid_name(i), "name": "open",
                        "time": format!("2024-05-{day:02}T10:00:00Z")}));
    }
    if i.is_multiple_of(7) {
        out.push(json!({"external_id": uid_name(i), "name": "purchase",
                        "time": format!("2024-06-{day:02}T12:00:00Z")}));
    }
    out
}

struct Ws {
    key: String,
    secret: String,
}

/// A workspace, a data import key for partner `segment`, and `profiles`
/// profiles through `/users/track` in batches of 75 (their events too
/// with `events`), over `conns` connections.
fn setup(addr: SocketAddr, profiles: u32, conns: usize, events: bool) -> Ws {
    let (key, secret) = Conn::open(addr).workspace("bench", "segment");
    let started = Instant::now();
    let conns = conns as u32;
    std::thread::scope(|s| {
        for t in 0..conns {
            let key = key.clone();
            s.spawn(move || {
                let mut c = Conn::open(addr);
                let mut i = t * 75;
                while i < profiles {
                    let range = i..(i + 75).min(profiles);
                    let attrs: Vec<Value> = range.clone().map(attributes).collect();
                    let mut body = json!({ "attributes": attrs });
                    if events {
                        body["events"] = range.flat_map(events_of).collect();
                    }
                    c.json("POST", "/users/track", Some(&key), &body);
                    i += 75 * conns;
                }
            });
        }
    });
    eprintln!(
        "setup: {profiles} profiles in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ws { key, secret }
}

fn delta_body(secret: &str, cohort: &str, adds: &[String], removes: &[String]) -> Vec<u8> {
    let mut changes = Vec::new();
    if !adds.is_empty() {
        changes.push(json!({ "user_ids": adds }));
    }
    if !removes.is_empty() {
        changes.push(json!({"user_ids": removes, "should_remove": true}));
    }
    json!({"partner_api_key": PARTNER_KEY, "client_secret": secret, "cohort_id": cohort,
           "cohort_changes": changes})
    .to_string()
    .into_bytes()
}

const DELTA_PATH: &str = "/partners/segment/cohorts/users";

fn post_delta(c: &mut Conn, body: &[u8]) {
    let (status, answer) = c.call("POST", DELTA_PATH, None, body);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
}

/// A counter or gauge of `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = Conn::open(addr).call("GET", "/metrics", None, b"");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics")) as u64
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    next_cursor: String,
}

/// The feed's cursor past its newest event (of `types`, if given, which
/// moves the cursor past the rest too), and how many events it went past.
fn feed_end(c: &mut Conn, key: &str, after: &str, types: Option<&str>) -> (String, u64) {
    let filter = types
        .map(|t| format!("&event_types={t}"))
        .unwrap_or_default();
    let (mut cursor, mut seen) = (after.to_string(), 0);
    loop {
        let (status, body) = c.call(
            "GET",
            &format!("/feed?after={cursor}&limit=10000{filter}"),
            Some(key),
            b"",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let page: Page = serde_json::from_slice(&body).expect("a feed page");
        seen += page.events.len() as u64;
        if page.events.is_empty() && page.next_cursor == cursor {
            return (cursor, seen);
        }
        cursor = page.next_cursor;
    }
}

/// `GET /connectors/{id}`.
fn connector(c: &mut Conn, key: &str, id: &str) -> Value {
    c.json("GET", &format!("/connectors/{id}"), Some(key), &Value::Null)
}

fn create_connector(c: &mut Conn, key: &str, url: &str) -> String {
    let r = c.json(
        "POST",
        "/connectors",
        Some(key),
        &json!({"name": "bench", "url": url}),
    );
    r["connector_id"].as_str().unwrap().to_string()
}

// ---- driving ----------------------------------------------------------------

struct Outcome {
    requests: u64,
    seconds: f64,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn per_second(&self, per_request: u64) -> f64 {
        (self.requests * per_request) as f64 / self.seconds
    }
}

/// Requests each connection prebuilds (off the clock) and cycles through.
const POOL: usize = 64;

/// `conns` connections send `prepare`d `POST`s to `path` for `seconds`
/// (each expecting `expect`): the same requests for the same arguments.
fn drive(
    addr: SocketAddr,
    conns: usize,
    seconds: u64,
    path: &str,
    expect: u16,
    prepare: impl Fn(&mut Lcg) -> Vec<u8>,
) -> Outcome {
    let stop = AtomicBool::new(false);
    let pools: Vec<Vec<Vec<u8>>> = (0..conns)
        .map(|t| {
            let mut rng = Lcg(1000 + t as u64);
            (0..POOL).map(|_| prepare(&mut rng)).collect()
        })
        .collect();
    let started = Instant::now();
    let results: Vec<(u64, Vec<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = pools
            .into_iter()
            .map(|pool| {
                let stop = &stop;
                s.spawn(move || {
                    let mut c = Conn::open(addr);
                    let (mut reqs, mut lat) = (0u64, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        let (status, body) =
                            c.call("POST", path, None, &pool[reqs as usize % POOL]);
                        lat.push(t0.elapsed());
                        assert_eq!(status, expect, "{}", String::from_utf8_lossy(&body));
                        reqs += 1;
                    }
                    (reqs, lat)
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
    let mut out = Outcome {
        requests: 0,
        seconds,
        latencies: Vec::new(),
    };
    for (r, l) in results {
        out.requests += r;
        out.latencies.extend(l);
    }
    out.latencies.sort_unstable();
    out
}

/// The `p` quantile of sorted latencies, in ms.
fn quantile_ms(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return f64::NAN;
    }
    l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0
}

/// Polls `GET /connectors/{id}` until `lag_events` is 0; the time it took
/// and the last status.
fn catch_up(c: &mut Conn, key: &str, id: &str, patience: Duration) -> (Duration, Value) {
    let started = Instant::now();
    loop {
        let s = connector(c, key, id);
        if s["lag_events"] == 0 || started.elapsed() > patience {
            return (started.elapsed(), s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- a minimal receiver ----------------------------------------------------

/// The least a receiver can do, to tell the connector's own ceiling from
/// the test receiver's: it reads each request (head and `Content-Length`
/// body) and answers 200 `{}` (503 while held), with keep-alive; it parses
/// no JSON and keeps nothing. A thread per connection, as the receiver.
struct Sink {
    addr: SocketAddr,
    hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Requests answered 200.
    ok: Arc<AtomicU64>,
}

impl Sink {
    fn start(held: bool) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        let sink = Sink {
            addr: listener.local_addr().expect("the sink's address"),
            hold: Arc::new(AtomicBool::new(held)),
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
        };
        let (hold, stop, ok) = (sink.hold.clone(), sink.stop.clone(), sink.ok.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (hold, ok) = (hold.clone(), ok.clone());
                std::thread::spawn(move || Sink::serve(conn, &hold, &ok));
            }
        });
        sink
    }

    fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    fn serve(conn: TcpStream, hold: &AtomicBool, ok: &AtomicU64) {
        let _ = conn.set_nodelay(true);
        let Ok(mut out) = conn.try_clone() else {
            return;
        };
        let mut input = BufReader::new(conn);
        let (mut line, mut body) = (String::new(), Vec::new());
        loop {
            let mut len = 0usize;
            let mut first = true;
            loop {
                line.clear();
                match input.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let l = line.trim_end();
                if l.is_empty() {
                    if first {
                        continue; // blank lines before a request
                    }
                    break;
                }
                first = false;
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            body.resize(len, 0);
            if input.read_exact(&mut body).is_err() {
                return;
            }
            let answer: &[u8] = if hold.load(Ordering::SeqCst) {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}"
            } else {
                ok.fetch_add(1, Ordering::Relaxed);
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            };
            if out.write_all(answer).is_err() {
                return;
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

// ---- 1. ingest with and without a connector ---------------------------------

/// What one ingest phase measured.
struct Phase {
    name: &'static str,
    load: Outcome,
    feed_events: u64,
    server_cpu: f64,
    bench_cpu: f64,
}

/// Where phase (b)'s connector delivers.
#[derive(Clone, Copy)]
enum Target {
    None,
    TestReceiver,
    Sink,
}

fn ingest_phase(a: &Args, name: &'static str, target: Target) -> (Phase, Option<String>) {
    let n = a.profiles;
    eprintln!("1 {name}: fresh server");
    let server = start(&a.fsync);
    let ws = setup(server.addr, n, a.connections, false);
    let rx = Receiver::start();
    let sink = Sink::start(false);
    let mut c = Conn::open(server.addr);
    let id = match target {
        Target::None => None,
        Target::TestReceiver => Some(create_connector(&mut c, &ws.key, &rx.url())),
        Target::Sink => Some(create_connector(&mut c, &ws.key, &sink.url())),
    };
    // One delta of load.rs's shape: 750 random adds, 250 random removes,
    // on one of 8 cohorts; the same requests in every phase.
    let secret = ws.secret.clone();
    let delta = move |rng: &mut Lcg| {
        let adds: Vec<String> = (0..750).map(|_| uid_name(rng.below(n))).collect();
        let removes: Vec<String> = (0..250).map(|_| uid_name(rng.below(n))).collect();
        delta_body(
            &secret,
            &format!("ingest_{}", rng.below(8)),
            &adds,
            &removes,
        )
    };
    let (s0, b0) = cpu(&server);
    let load = drive(
        server.addr,
        a.connections,
        a.seconds,
        DELTA_PATH,
        201,
        delta,
    );
    let (s1, b1) = cpu(&server);
    let feed_events = metric(server.addr, "cohortd_feed_events");
    let note = id.map(|id| {
        let mut c = Conn::open(server.addr); // idle through the drive: closed
        let at_end = connector(&mut c, &ws.key, &id);
        let (took, caught) = catch_up(&mut c, &ws.key, &id, Duration::from_secs(900));
        format!(
            "- {name}: when the load stopped the connector had sent {} events, lag_events {}, \
             lag_seconds {}; it caught up (lag_events {}) {:.2} s later, at {:.0} events/s: \
             sent {}, failed {}",
            at_end["sent"],
            at_end["lag_events"],
            at_end["lag_seconds"],
            caught["lag_events"],
            took.as_secs_f64(),
            at_end["lag_events"].as_f64().unwrap_or(0.0) / took.as_secs_f64(),
            caught["sent"],
            caught["failed"],
        )
    });
    let phase = Phase {
        name,
        load,
        feed_events,
        server_cpu: s1 - s0,
        bench_cpu: b1 - b0,
    };
    (phase, note)
}

fn ingest(a: &Args) {
    let targets = [
        ("(a) no connector", Target::None),
        ("(b) one connector → test receiver", Target::TestReceiver),
        ("(b') one connector → minimal sink", Target::Sink),
    ];
    // Rounds of the three phases, their order turning by one each round,
    // so that the machine's drift falls on each alike.
    let mut runs: Vec<Vec<(Phase, Option<String>)>> = targets.iter().map(|_| Vec::new()).collect();
    for r in 0..a.rounds {
        for i in 0..targets.len() {
            let t = (i + r) % targets.len();
            let (name, target) = targets[t];
            runs[t].push(ingest_phase(a, name, target));
        }
    }
    println!(
        "\n### 1. Ingest with one connector (target: loses at most 15 %)\n\n\
         {} profiles; 1000-id deltas (750 random adds, 250 random removes, 8 cohorts), \
         {} connections, {} s, fsync = {}. Each phase on a fresh server given the same \
         profiles, then the same requests, one phase after the other (so that no phase \
         inherits another's feed, cohorts or page cache, and none shares the cores with \
         another); {} rounds of the three, their order turning by one each round. The \
         connector takes every event type; its receiver runs in the bench process, sharing \
         the 2 cores with the server and the client: the test receiver (parses and keeps \
         every body), or a minimal sink (parses and keeps nothing).\n",
        a.profiles, a.connections, a.seconds, a.fsync, a.rounds
    );
    println!("| phase | round | deltas | ids/s | ÷ (a) of the round | p50 ms | p99 ms | feed events | server CPU s | bench process CPU s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mean = |t: usize| {
        runs[t]
            .iter()
            .map(|(p, _)| p.load.per_second(1000))
            .sum::<f64>()
            / runs[t].len() as f64
    };
    for (t, phases) in runs.iter().enumerate() {
        for (r, (p, _)) in phases.iter().enumerate() {
            let base = runs[0][r].0.load.per_second(1000);
            let ratio = p.load.per_second(1000) / base;
            println!(
                "| {} | {} | {} | {:.0} | {ratio:.3} | {} | {} | {} | {:.1} | {:.1} |",
                p.name,
                r + 1,
                p.load.requests,
                p.load.per_second(1000),
                pct(&p.load.latencies, 0.50),
                pct(&p.load.latencies, 0.99),
                p.feed_events,
                p.server_cpu,
                p.bench_cpu,
            );
        }
        let r = mean(t) / mean(0);
        println!(
            "| **{}, mean of the rounds** | | | {:.0} | **{r:.3}** ({:+.1} %) | | | | | |",
            targets[t].0,
            mean(t),
            (r - 1.0) * 100.0
        );
    }
    println!();
    for (_, note) in runs.iter().flatten() {
        if let Some(note) = note {
            println!("{note}");
        }
    }
}

// ---- 2. delivery rate ---------------------------------------------------------

fn delivery(a: &Args) {
    let n = a.profiles;
    let server = start(&a.fsync);
    let addr = server.addr;
    let ws = setup(addr, n, a.connections, false);
    let mut c = Conn::open(addr);
    let (start, _) = feed_end(&mut c, &ws.key, "0", None);
    // Two connectors, both created before the events and both held while
    // they are written, then released one after the other: `to_rx`
    // delivers to the test receiver, `to_sink` to the minimal sink.
    //
    // The test receiver holds by answering 503: its script is kept one or
    // two answers ahead of the requests, so that at the release at most
    // two more are refused (each followed by a backoff of at most 20 ms,
    // inside the measured time). The sink answers 503 until released.
    let rx = Receiver::start();
    rx.script([Behaviour::Status(503), Behaviour::Status(503)]);
    let holding = AtomicBool::new(true);
    let sink = Sink::start(true);
    let to_rx = create_connector(&mut c, &ws.key, &rx.url());
    let to_sink = create_connector(&mut c, &ws.key, &sink.url());

    let blocks = u64::from(n / 1000);
    let deltas = a.events.div_ceil(1000);
    let expected = deltas * 1000;
    let conns = a.connections as u64;
    let secret = ws.secret.as_str();
    let (fill, refused, backlog, leaked, rx_took, all_in) = std::thread::scope(|s| {
        let holder = s.spawn(|| {
            let mut scripted = 2;
            while holding.load(Ordering::SeqCst) {
                if rx.wait_for_requests(scripted - 1, Duration::from_millis(20))
                    && holding.load(Ordering::SeqCst)
                {
                    rx.script([Behaviour::Status(503)]);
                    scripted += 1;
                }
            }
            scripted
        });
        // Delta k adds block k % blocks (1000 consecutive profiles) to
        // cohort fill_{k / blocks}: each makes exactly 1000 Entered events.
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..conns {
                s.spawn(move || {
                    let mut c = Conn::open(addr);
                    let mut k = t;
                    while k < deltas {
                        let block = (k % blocks) as u32;
                        let ids: Vec<String> =
                            (block * 1000..block * 1000 + 1000).map(uid_name).collect();
                        let cohort = format!("fill_{}", k / blocks);
                        post_delta(&mut c, &delta_body(secret, &cohort, &ids, &[]));
                        k += conns;
                    }
                });
            }
        });
        let fill = started.elapsed();
        let mut c = Conn::open(addr);
        let backlog = connector(&mut c, &ws.key, &to_rx)["lag_events"]
            .as_u64()
            .unwrap();
        let leaked = rx.acknowledged_count();
        // Release, and time until the receiver acknowledged every event.
        let t0 = Instant::now();
        holding.store(false, Ordering::SeqCst);
        let all_in = rx.wait_for_events(backlog as usize + leaked, Duration::from_secs(900));
        let took = t0.elapsed();
        let refused = holder.join().expect("the holder");
        (fill, refused, backlog, leaked, took, all_in)
    });
    let mut c = Conn::open(addr);
    let rx_status = connector(&mut c, &ws.key, &to_rx);

    // The second connector, to the sink: from its release until its
    // status says nothing is left (polled every 10 ms).
    let sink_backlog = connector(&mut c, &ws.key, &to_sink)["lag_events"]
        .as_u64()
        .unwrap();
    let sink_ok_before = sink.ok.load(Ordering::SeqCst);
    let t0 = Instant::now();
    sink.hold.store(false, Ordering::SeqCst);
    let sink_status = loop {
        let s = connector(&mut c, &ws.key, &to_sink);
        if s["lag_events"] == 0 || t0.elapsed() > Duration::from_secs(900) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let sink_took = t0.elapsed();
    let sink_requests = sink.ok.load(Ordering::SeqCst) - sink_ok_before;

    // Peer: the same events through GET /feed pages, one client, as fast
    // as it reads them. Each page is parsed (to find its events and the
    // next cursor) as any client must; the raw pages are kept for the next
    // peers, which costs a move.
    let mut pages: Vec<Vec<u8>> = Vec::new();
    let (mut cursor, mut pulled) = (start.clone(), 0u64);
    let t0 = Instant::now();
    while pulled < backlog {
        let (st, body) = c.call(
            "GET",
            &format!("/feed?after={cursor}&limit=10000"),
            Some(&ws.key),
            b"",
        );
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let page: Page = serde_json::from_slice(&body).expect("a feed page");
        if page.events.is_empty() {
            break;
        }
        pulled += page.events.len() as u64;
        cursor = page.next_cursor;
        pages.push(body);
    }
    let feed_took = t0.elapsed();

    // Peers: a bare client POSTing the same batch bodies (the same 100
    // events, byte for byte, as the connectors send from the same start)
    // to the same receiver, then to the sink, over one keep-alive
    // connection as a connector does: no feed read, no progress file, no
    // ureq, no idempotency key.
    let mut bodies: Vec<(Vec<u8>, u64)> = Vec::new();
    for p in &pages {
        let page: Page = serde_json::from_slice(p).expect("a feed page");
        for chunk in page.events.chunks(100) {
            let mut b = b"{\"events\":[".to_vec();
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(e.get().as_bytes());
            }
            b.extend_from_slice(b"]}");
            bodies.push((b, chunk.len() as u64));
        }
    }
    drop(pages);
    let bare = |to: SocketAddr| {
        let mut c = Conn::open(to);
        let (mut events, t0) = (0, Instant::now());
        for (b, k) in &bodies {
            let (st, _) = c.call("POST", "/ingest", None, b);
            assert_eq!(st, 200);
            events += k;
        }
        (events, t0.elapsed())
    };
    let before = rx.acknowledged_count();
    let (_, bare_rx_took) = bare(rx.addr());
    let bare_rx_events = (rx.acknowledged_count() - before) as u64;
    let (bare_sink_events, bare_sink_took) = bare(sink.addr);

    let rate = |events: u64, d: Duration| events as f64 / d.as_secs_f64();
    let conn_rate = rate(backlog, rx_took);
    println!(
        "\n### 2. Connector delivery rate (target: ≥ 100,000 events/s)\n\n\
         {deltas} deltas of 1000 new members each written in {:.1} s ({:.0} events/s) over {} \
         connections while two connectors (every event type) were held: one to the test \
         receiver (`tests/common/receiver.rs`, which answered 503 to {} attempts; events \
         acknowledged during the hold: {leaked}), one to a minimal sink that parses and keeps \
         nothing (answering 503 until its release). Released one after the other. The feed \
         peer reads from the cursor the connectors started at; the bare client sends the same \
         {} batch bodies of ≤ 100 events.\n",
        fill.as_secs_f64(),
        rate(expected, fill),
        a.connections,
        refused - 2,
        bodies.len()
    );
    println!("| path | events | seconds | events/s | ÷ connector → receiver |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| connector → test receiver, release to last acknowledgement{} | {backlog} | {:.2} | **{conn_rate:.0}** | 1.00 |",
        if all_in { "" } else { " (NOT ALL ARRIVED)" },
        rx_took.as_secs_f64()
    );
    for (name, events, d) in [
        (
            "bare client → test receiver, same bodies, one connection",
            bare_rx_events,
            bare_rx_took,
        ),
        (
            "connector → minimal sink, release to lag_events 0",
            sink_backlog,
            sink_took,
        ),
        (
            "bare client → minimal sink, same bodies, one connection",
            bare_sink_events,
            bare_sink_took,
        ),
        ("GET /feed?limit=10000 pages, one client", pulled, feed_took),
    ] {
        println!(
            "| {name} | {events} | {:.2} | {:.0} | {:.2} |",
            d.as_secs_f64(),
            rate(events, d),
            rate(events, d) / conn_rate
        );
    }
    println!(
        "\nfill events expected {expected}; connector → receiver after: sent {}, failed {}, \
         lag_events {}, state {}; connector → sink after: sent {}, failed {}, lag_events {} \
         ({sink_requests} requests answered 200)",
        rx_status["sent"],
        rx_status["failed"],
        rx_status["lag_events"],
        rx_status["state"],
        sink_status["sent"],
        sink_status["failed"],
        sink_status["lag_events"],
    );
    drop(server);
}

// ---- 3. segment tracking ----------------------------------------------------

fn attr(name: &str, op: &str, value: Value) -> Value {
    json!({"attribute": {"name": name, "op": op, "value": value}})
}

fn and(fs: &[Value]) -> Value {
    json!({ "and": fs })
}

fn or(fs: &[Value]) -> Value {
    json!({ "or": fs })
}

fn not(f: &Value) -> Value {
    json!({ "not": f })
}

/// 50 saved segments: 25 that read the cohort the deltas push (`pushed`),
/// alone and with the other cohort, attributes and events; 25 on
/// attributes and events only, which a delta cannot affect.
fn segment_filters() -> Vec<Value> {
    let x = json!({"cohort": {"partner": "segment", "cohort_id": "pushed"}});
    let y = json!({"cohort": {"partner": "segment", "cohort_id": "loyal"}});
    let plan = |p: &str| attr("plan", "equals", json!(p));
    let score_gt = |n: u32| attr("score", "greater_than", json!(n));
    let country = |c: &str| attr("country", "equals", json!(c));
    let vip = attr("vip", "equals", json!(true));
    let opened = json!({"event": {"name": "open", "op": "more_than", "count": 0}});
    let bought = json!({"event": {"name": "purchase", "op": "last_performed_after",
                                  "time": "2024-06-15T00:00:00Z"}});
    let mut on_x = vec![
        x.clone(),
        not(&x),
        and(&[x.clone(), y.clone()]),
        and(&[x.clone(), not(&y)]),
        or(&[x.clone(), y.clone()]),
    ];
    on_x.extend(PLANS.iter().map(|p| and(&[x.clone(), plan(p)])));
    on_x.extend([25, 50, 75].map(|n| and(&[x.clone(), score_gt(n)])));
    on_x.extend([
        and(&[x.clone(), vip.clone()]),
        or(&[x.clone(), vip.clone()]),
    ]);
    on_x.extend(["US", "FR", "DE"].map(|c| and(&[x.clone(), country(c)])));
    on_x.extend([
        and(&[x.clone(), opened.clone()]),
        and(&[x.clone(), bought.clone()]),
        and(&[x.clone(), plan("gold"), score_gt(50)]),
        and(&[or(&[x.clone(), y.clone()]), country("JP")]),
        and(&[x.clone(), not(&opened)]),
        or(&[
            and(&[x.clone(), vip.clone()]),
            and(&[y.clone(), plan("platinum")]),
        ]),
        not(&or(&[x.clone(), y.clone()])),
    ]);
    let mut others: Vec<Value> = PLANS.iter().map(|p| plan(p)).collect();
    others.extend([25, 50, 75].map(score_gt));
    others.push(vip.clone());
    others.extend(["US", "FR", "DE"].map(country));
    others.extend([
        opened.clone(),
        bought.clone(),
        and(&[plan("gold"), vip.clone()]),
        or(&[score_gt(90), vip.clone()]),
        and(&[opened.clone(), not(&bought)]),
        and(&[country("BR"), attr("score", "less_than", json!(20))]),
        attr("plan", "not_equals", json!("free")),
        json!({"attribute": {"name": "country", "op": "exists"}}),
        and(&[bought.clone(), vip.clone()]),
        and(&[opened.clone(), plan("basic")]),
        and(&[score_gt(50), country("IN")]),
        and(&[not(&vip), plan("platinum")]),
        attr("plan", "matches_regex", json!("^s")),
    ]);
    assert_eq!((on_x.len(), others.len()), (25, 25));
    on_x.extend(others);
    on_x
}

/// Phase (d)'s 50 filters: 5 read `pushed`, each with a selective
/// attribute or event (the way a campaign narrows a partner cohort); 45
/// read attributes and events only (the 25 of [`segment_filters`], and 20
/// score thresholds).
fn few_on_pushed() -> Vec<Value> {
    let x = json!({"cohort": {"partner": "segment", "cohort_id": "pushed"}});
    let opened = json!({"event": {"name": "open", "op": "more_than", "count": 0}});
    let mut out = vec![
        and(&[x.clone(), attr("plan", "equals", json!("gold"))]),
        and(&[x.clone(), attr("country", "equals", json!("US"))]),
        and(&[x.clone(), attr("vip", "equals", json!(true))]),
        and(&[x.clone(), attr("score", "greater_than", json!(75))]),
        and(&[x, opened]),
    ];
    out.extend(segment_filters().split_off(25));
    out.extend((1..=20).map(|i| attr("score", "greater_than", json!(i * 5 - 1))));
    assert_eq!(out.len(), 50);
    out
}

/// Sends `bodies` one at a time, each after the previous answer; the
/// latencies of all but the first `warm`, sorted.
fn one_at_a_time(addr: SocketAddr, bodies: &[Vec<u8>], warm: usize) -> Vec<Duration> {
    let mut c = Conn::open(addr);
    for b in &bodies[..warm] {
        post_delta(&mut c, b);
    }
    let mut lat: Vec<Duration> = bodies[warm..]
        .iter()
        .map(|b| {
            let t0 = Instant::now();
            post_delta(&mut c, b);
            t0.elapsed()
        })
        .collect();
    lat.sort_unstable();
    lat
}

fn tracking(a: &Args) {
    let n = a.profiles;
    let server = start(&a.fsync);
    let addr = server.addr;
    let ws = setup(addr, n, a.connections, true);
    // `pushed`: 30 % of the profiles (i % 10 < 3) to begin with; `loyal`:
    // one in five.
    let started = Instant::now();
    let mut c = Conn::open(addr);
    for (cohort, pick) in [
        ("pushed", (|i: u32| i % 10 < 3) as fn(u32) -> bool),
        ("loyal", |i: u32| i.is_multiple_of(5)),
    ] {
        let ids: Vec<String> = (0..n).filter(|&i| pick(i)).map(uid_name).collect();
        for chunk in ids.chunks(1000) {
            post_delta(&mut c, &delta_body(&ws.secret, cohort, chunk, &[]));
        }
    }
    eprintln!(
        "setup: cohorts pushed and loyal in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The deltas: adds, then removes, of the same 1000 profiles that are
    // not members (i % 10 ≥ 3), a block after another: each delta changes
    // 1000 memberships, and each pair leaves the cohort as it found it, so
    // every phase starts from the same state and sends the same deltas.
    let outside: Vec<String> = (0..n).filter(|i| i % 10 >= 3).map(uid_name).collect();
    let blocks: Vec<&[String]> = outside.chunks_exact(1000).collect();
    // The phases take turns in rounds (below), each phase's slice of a
    // round starting with two untimed deltas.
    const ROUNDS: usize = 10;
    const WARM: usize = 2 * ROUNDS;
    let bodies: Vec<Vec<u8>> = (0..(WARM + a.deltas) / 2)
        .flat_map(|p| {
            let ids = blocks[p % blocks.len()];
            [
                delta_body(&ws.secret, "pushed", ids, &[]),
                delta_body(&ws.secret, "pushed", &[], ids),
            ]
        })
        .collect();
    // The phases run in turn, a slice of the deltas each, round after
    // round: the machine's drift (the same build's p50 moves by a third
    // over a minute here) falls on every phase alike. Each phase's slice
    // starts with two untimed deltas (after its segments were saved).
    let per = (bodies.len() / ROUNDS) & !1;
    let mut c = Conn::open(addr);
    let save = |c: &mut Conn, filters: &[Value], name: &str| -> Vec<String> {
        filters
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let r = c.json(
                    "POST",
                    "/segments",
                    Some(&ws.key),
                    &json!({"name": format!("{name} {i}"), "filter": f}),
                );
                r["segment_id"].as_str().expect("saved").to_string()
            })
            .collect()
    };
    let delete = |c: &mut Conn, ids: &[String]| {
        for id in ids {
            let (st, body) = c.call("DELETE", &format!("/segments/{id}"), Some(&ws.key), b"");
            assert!(st < 300, "{}", String::from_utf8_lossy(&body));
        }
    };
    #[derive(Default)]
    struct Timed {
        lat: Vec<Duration>,
        events: u64,
        entered: u64,
        exited: u64,
    }
    let mut saving = Duration::ZERO;
    // The end of the feed, so that each phase counts only its own events.
    let mut cursor = feed_end(&mut c, &ws.key, "0", None).0;
    let mut run = |c: &mut Conn, phase: char, slice: &[Vec<u8>], into: &mut Timed| {
        if !a.phases.contains(phase) {
            return;
        }
        into.lat.extend(one_at_a_time(addr, slice, 2));
        // Reading the feed waits for every answered command's events (a
        // delta's segments are brought up to date after its answer).
        let (end, events) = feed_end(c, &ws.key, &cursor, None);
        into.events += events;
        into.entered += feed_end(c, &ws.key, &cursor, Some("users.segments.Entered")).1;
        into.exited += feed_end(c, &ws.key, &cursor, Some("users.segments.Exited")).1;
        cursor = end;
    };
    // Each phase saves its own segments and deletes them after, and the
    // order of the phases turns by one each round, so that every phase
    // follows each other (and the writeback of (b)'s ten times larger
    // feed) as often.
    let filters: [Vec<Value>; 4] = [
        Vec::new(),
        segment_filters(),
        segment_filters().split_off(25),
        few_on_pushed(),
    ];
    let mut timed: [Timed; 4] = [(); 4].map(|_| Timed::default());
    for r in 0..ROUNDS {
        let slice = &bodies[r * per..(r + 1) * per];
        for i in 0..4 {
            let p = (i + r) % 4;
            let t0 = Instant::now();
            let ids = save(&mut c, &filters[p], "segment");
            if p == 1 {
                saving += t0.elapsed();
            }
            run(&mut c, ['a', 'b', 'c', 'd'][p], slice, &mut timed[p]);
            delete(&mut c, &ids);
        }
    }
    let [bare, tracked, unaffected, narrow] = timed;

    println!(
        "\n### 3. Segment entered/exited tracking (target: p50 at most +20 % with 50 saved segments)\n\n\
         {n} profiles (plan, score, vip, country; `open` events for one in three, `purchase` for \
         one in seven); cohort `pushed` starts with 30 % of them, `loyal` with 20 %. One delta at \
         a time on one connection, fsync = {}, alternately adding and removing the same 1000 \
         non-members of `pushed`. The phases take turns, {ROUNDS} rounds, their order turning by \
         one each round; each saves its segments, sends the round's same {per} deltas (the first \
         2 untimed) and deletes them: (a) no saved segment, (b) 50 saved segments (25 reading \
         `pushed`, 25 on attributes and events only; saving all 50 took {:.3} s on average), (c) \
         only the 25 not reading `pushed`, (d) 50 saved segments, only 5 of them reading \
         `pushed`, each narrowed by an attribute or event (plan, country, vip, score, `open`), \
         45 on attributes and events only.\n",
        a.fsync,
        saving.as_secs_f64() / ROUNDS as f64
    );
    println!("| phase | deltas | p50 ms | p99 ms | mean ms | feed events a delta | of which segment events |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mean = |l: &[Duration]| {
        l.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / l.len().max(1) as f64
    };
    for (name, t) in [
        ("(a) no saved segment", &bare),
        ("(b) 50 saved segments", &tracked),
        ("(c) only the 25 segments not reading `pushed`", &unaffected),
        ("(d) 50 saved segments, 5 narrow ones on `pushed`", &narrow),
    ] {
        let sent = (t.lat.len() + 2 * ROUNDS).max(1) as f64;
        let mut l = t.lat.clone();
        l.sort_unstable();
        println!(
            "| {name} | {} | {} | {} | {:.3} | {:.0} | {:.0} |",
            l.len(),
            pct(&l, 0.50),
            pct(&l, 0.99),
            mean(&l),
            t.events as f64 / sent,
            (t.entered + t.exited) as f64 / sent
        );
    }
    let sorted = |t: &Timed| {
        let mut l = t.lat.clone();
        l.sort_unstable();
        l
    };
    let base = sorted(&bare);
    for (name, t) in [
        ("**(b)", &tracked),
        ("(c)", &unaffected),
        ("**(d)", &narrow),
    ] {
        let l = sorted(t);
        let r50 = quantile_ms(&l, 0.5) / quantile_ms(&base, 0.5);
        let bold = if name.starts_with("**") { "**" } else { "" };
        println!(
            "| {name} ÷ (a){bold} | | {bold}{r50:.3}{bold} ({:+.1} %) | {:.3} | {:.3} | | |",
            (r50 - 1.0) * 100.0,
            quantile_ms(&l, 0.99) / quantile_ms(&base, 0.99),
            mean(&l) / mean(&base)
        );
    }
    drop(server);
}

fn main() {
    let a = args();
    let _config = bench_config();
    println!(
        "\ncohortd export bench: `cargo bench --bench export -- --profiles {} --seconds {} \
         --connections {} --fsync {} --events {} --deltas {}`",
        a.profiles, a.seconds, a.connections, a.fsync, a.events, a.deltas
    );
    let run = |n: u32| a.only.is_none_or(|o| o == n);
    if run(1) {
        ingest(&a);
    }
    if run(2) {
        delivery(&a);
    }
    if run(3) {
        tracking(&a);
    }
}
