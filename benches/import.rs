//! `cohortd import profiles` beside the peers a user would pick instead,
//! on the same profiles, in one run (issue 13):
//!
//! - **the CLI**: `cohortd import profiles FILE --concurrency C` into a
//!   fresh workspace of a running server (fsync always, the shipped
//!   config);
//! - **a script**: what an integrator writes without the CLI: Python's
//!   standard library posting the same `/users/track` batches of 75 on
//!   `C` threads, one keep-alive connection each;
//! - **Redis**: the same profiles as one `HSET user:<id> …` each, loaded
//!   with `redis-cli --pipe` (Redis's own bulk loader) into a
//!   `redis-server` with an append-only file fsynced always, cohortd's
//!   durability.
//!
//! Each phase loads all `--profiles` into an empty store (a new workspace;
//! a new Redis). Phases take turns over `--rounds` rounds whose order
//! turns by one each round, so the machine's drift falls on each alike.
//! Every phase's result is checked: the workspace holds every profile,
//! the script saw only 201s, Redis's DBSIZE is the count.
//!
//! `cargo bench --bench import -- --profiles 1000000 --rounds 2`

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "common/redis.rs"]
mod redis;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{start_server, Conn, Server, ADMIN};

struct Args {
    profiles: u32,
    rounds: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        profiles: 1_000_000,
        rounds: 2,
        concurrency: 4,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--profiles" => a.profiles = val().parse().expect("--profiles N"),
            "--rounds" => a.rounds = val().parse().expect("--rounds N"),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            _ => {} // cargo passes --bench
        }
    }
    a.rounds = a.rounds.max(1);
    a
}

const PLANS: [&str; 4] = ["free", "basic", "gold", "platinum"];
const COUNTRIES: [&str; 4] = ["US", "FR", "DE", "JP"];

/// The profiles as NDJSON (what the CLI and the script read) and as RESP
/// `HSET`s (what `redis-cli --pipe` reads): the same five attributes.
fn write_data(dir: &Path, n: u32) -> (std::path::PathBuf, std::path::PathBuf, u64) {
    let ndjson = dir.join("profiles.ndjson");
    let resp = dir.join("profiles.resp");
    let mut j = BufWriter::new(std::fs::File::create(&ndjson).unwrap());
    let mut r = BufWriter::new(std::fs::File::create(&resp).unwrap());
    for i in 0..n {
        let (plan, country) = (PLANS[i as usize % 4], COUNTRIES[i as usize % 4]);
        let (score, vip) = (i % 100, i % 7 == 0);
        writeln!(
            j,
            r#"{{"external_id":"user{i}","plan":"{plan}","score":{score},"vip":{vip},"country":"{country}"}}"#
        )
        .unwrap();
        let key = format!("user:user{i}");
        let (score, vip) = (score.to_string(), vip.to_string());
        r.write_all(&redis::resp(&[
            b"HSET",
            key.as_bytes(),
            b"plan",
            plan.as_bytes(),
            b"score",
            score.as_bytes(),
            b"vip",
            vip.as_bytes(),
            b"country",
            country.as_bytes(),
        ]))
        .unwrap();
    }
    j.flush().unwrap();
    r.flush().unwrap();
    let bytes = std::fs::metadata(&ndjson).unwrap().len();
    (ndjson, resp, bytes)
}

/// The script a user would write: stdlib only, `C` threads, batches of 75.
const SCRIPT: &str = r#"
import http.client, json, sys, threading
host, port, key, path, conc = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
with open(path) as f:
    lines = [json.loads(l) for l in f if l.strip()]
batches = [lines[i:i + 75] for i in range(0, len(lines), 75)]
lock, next_batch, done, bad = threading.Lock(), [0], [0], []
def work():
    c = http.client.HTTPConnection(host, port)
    while True:
        with lock:
            i = next_batch[0]; next_batch[0] += 1
        if i >= len(batches):
            return
        body = json.dumps({"attributes": batches[i]})
        c.request("POST", "/users/track", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        r = c.getresponse(); answer = r.read()
        if r.status != 201 or json.loads(answer).get("errors"):
            bad.append((r.status, answer[:200]))
        else:
            with lock:
                done[0] += len(batches[i])
threads = [threading.Thread(target=work) for _ in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"imported": done[0], "bad": len(bad), "first_bad": str(bad[:1])}))
"#;

/// Profiles in the workspace named `name`, from the operator listing (on
/// a connection of its own: the phase's sat idle past the keep-alive).
fn profiles_in(server: &Server, name: &str) -> u64 {
    let mut c = Conn::open(server.addr);
    let list = c.json(
        "GET",
        "/admin/workspaces",
        Some(ADMIN),
        &serde_json::json!({}),
    );
    list["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .and_then(|w| w["profiles"].as_u64())
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Cli,
    Script,
    Redis,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Cli => "`cohortd import profiles`",
            Phase::Script => "a Python script posting the same batches",
            Phase::Redis => "Redis: `redis-cli --pipe` of HSETs, appendfsync always",
        }
    }
}

/// Runs one phase; seconds from start to every profile stored.
fn run(phase: Phase, a: &Args, server: &Server, data: &Data, tag: &str) -> f64 {
    let n = u64::from(a.profiles);
    match phase {
        Phase::Cli | Phase::Script => {
            let (key, _) = Conn::open(server.addr).workspace(tag, "segment");
            let started = Instant::now();
            let out = if phase == Phase::Cli {
                Command::new(env!("CARGO_BIN_EXE_cohortd"))
                    .args(["import", "profiles"])
                    .arg(&data.ndjson)
                    .args(["--concurrency", &a.concurrency.to_string(), "--json"])
                    .env("COHORTD_LISTEN", server.addr.to_string())
                    .env("COHORTD_REST_KEY", &key)
                    .env("RUST_LOG", "warn")
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("cohortd import runs")
            } else {
                Command::new("python3")
                    .args(["-c", SCRIPT, "127.0.0.1"])
                    .arg(server.addr.port().to_string())
                    .arg(&key)
                    .arg(&data.ndjson)
                    .arg(a.concurrency.to_string())
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("python3 runs")
            };
            let took = started.elapsed().as_secs_f64();
            let summary: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            assert!(out.status.success(), "{phase:?}: {summary}");
            assert_eq!(
                summary["imported"].as_u64(),
                Some(n),
                "{phase:?}: {summary}"
            );
            assert_eq!(profiles_in(server, tag), n, "{phase:?}: profiles stored");
            took
        }
        Phase::Redis => {
            let dir = tempfile::tempdir().expect("tempdir");
            let dir_arg = dir.path().to_str().expect("utf-8 path").to_string();
            let r = redis::start_redis_with(&[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &dir_arg,
            ])
            .expect("redis-server");
            let started = Instant::now();
            let status = Command::new("redis-cli")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &r.addr.port().to_string(),
                    "--pipe",
                ])
                .stdin(std::fs::File::open(&data.resp).unwrap())
                .stdout(Stdio::null())
                .status()
                .expect("redis-cli runs");
            let took = started.elapsed().as_secs_f64();
            assert!(status.success(), "redis-cli --pipe failed");
            let mut rc = redis::Resp::open(r.addr).unwrap();
            match rc.roundtrip(&redis::resp(&[b"DBSIZE"]), 1).unwrap().pop() {
                Some(redis::Reply::Int(size)) => assert_eq!(size as u64, n, "Redis DBSIZE"),
                other => panic!("DBSIZE: {other:?}"),
            }
            took
        }
    }
}

struct Data {
    ndjson: std::path::PathBuf,
    resp: std::path::PathBuf,
}

fn main() {
    let a = args();
    assert!(
        redis::have("python3"),
        "the script peer needs python3 (Debian's python3)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (ndjson, resp, bytes) = write_data(dir.path(), a.profiles);
    let data = Data { ndjson, resp };
    // redis-cli comes with redis-server; start one now so a missing one is
    // installed before anything is timed.
    drop(redis::start_redis().expect("redis-server"));
    let server = start_server("always", 0);
    println!(
        "cohortd import bench: `cargo bench --bench import -- --profiles {} --rounds {} \
         --concurrency {}`\n{} profiles, {:.1} MB of NDJSON; one server (fsync always) for \
         both cohortd phases, a new workspace each; a new Redis each time\n",
        a.profiles,
        a.rounds,
        a.concurrency,
        a.profiles,
        bytes as f64 / 1e6
    );
    let phases = [Phase::Cli, Phase::Script, Phase::Redis];
    let mut results: Vec<(Phase, usize, f64)> = Vec::new();
    for round in 0..a.rounds {
        for k in 0..phases.len() {
            let phase = phases[(k + round) % phases.len()];
            let tag = format!("import-{round}-{k}");
            let took = run(phase, &a, &server, &data, &tag);
            eprintln!("round {} {:?}: {took:.2} s", round + 1, phase);
            results.push((phase, round + 1, took));
        }
    }
    println!("| phase | round | seconds | profiles/s | ÷ the CLI's rate (same round) |");
    println!("| --- | --- | --- | --- | --- |");
    for &(phase, round, took) in &results {
        let cli = results
            .iter()
            .find(|r| r.0 == Phase::Cli && r.1 == round)
            .map(|r| r.2)
            .unwrap_or(took);
        println!(
            "| {} | {round} | {took:.2} | {:.0} | {:.2} |",
            phase.name(),
            f64::from(a.profiles) / took,
            cli / took
        );
    }
    for phase in phases {
        let mean: f64 = results
            .iter()
            .filter(|r| r.0 == phase)
            .map(|r| f64::from(a.profiles) / r.2)
            .sum::<f64>()
            / a.rounds as f64;
        println!("| **{}, mean** | | | **{mean:.0}** | |", phase.name());
    }
}
