//! Segments at scale (issue 11): attribute and event filters on cohortd,
//! measured beside DuckDB on the same data and filters, in the same run.
//!
//! ```sh
//! cargo bench --bench segments                                # 200,000 profiles
//! cargo bench --bench segments -- --profiles 1000000 --reps 10
//! cargo bench --bench segments -- --profiles 10000000 --reps 5   # ~40 min, ~11 GiB RSS
//! ```
//!
//! A seeded generator makes `--profiles` profiles with 20 attributes of
//! mixed types (strings of cardinality 2 to N/2, numbers, booleans, ISO
//! times, arrays of strings; presence 20–100 %) and 5 event names with
//! per-profile counts and times. They go to cohortd through `/users/track`
//! (75 objects per request, `--connections` keep-alive connections), and the
//! same data to a newline-delimited JSON file that DuckDB (PyPI `duckdb`,
//! installed with pip if missing) loads in a Python subprocess with
//! `SET threads=2`.
//!
//! Each filter is written once as a tree and rendered both as a cohortd
//! filter and as SQL implementing SPEC §4's semantics. The bench asserts
//! that the counts agree (a mismatch fails the bench, after printing every
//! filter with both numbers), then times `--reps` counts on each side:
//! cohortd as the client's round trip of `GET /segments/{id}/count` on
//! loopback, DuckDB as its own `execute` + `fetch` time. One filter's
//! members are walked in pages of 1,000. Then cohortd's RSS per profile, a
//! snapshot, and the restart time after `kill -9`. Last, with cohortd
//! stopped, the memory peer: the same profiles as Redis hashes (Debian's
//! `redis-server`, installed with apt-get if missing), one field per
//! attribute and three per event done.

mod common;
#[path = "common/dataset.rs"]
mod dataset;
#[path = "common/redis.rs"]
mod redis;

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use common::{pct, start_server, Conn, ADMIN};
use dataset::{iso, profile, uid_name, EVENTS};

struct Args {
    profiles: u32,
    reps: usize,
    connections: usize,
    fsync: String,
    seed: u64,
}

fn args() -> Args {
    let mut a = Args {
        profiles: 200_000,
        reps: 30,
        connections: 4,
        fsync: "always".into(),
        seed: 11,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--profiles" => a.profiles = val().parse().expect("--profiles N"),
            "--reps" => a.reps = val().parse().expect("--reps N"),
            "--connections" => a.connections = val().parse().expect("--connections N"),
            "--fsync" => a.fsync = val(),
            "--seed" => a.seed = val().parse().expect("--seed N"),
            _ => {} // cargo passes --bench
        }
    }
    a.reps = a.reps.max(1);
    a
}

// ---- the generator ----

fn iso_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("an RFC 3339 time")
        .timestamp_millis()
}

/// The Redis peer for memory: each profile as a hash `user:<external_id>`,
/// one field per attribute holding the value as sent (arrays as JSON
/// text), then each event it did as three more fields (count, first and
/// last time in epoch ms), which is what cohortd holds of it. Returns
/// Redis's `used_memory` growth per profile after the attributes, and
/// after the events too, and its RSS growth per profile at the end (what
/// cohortd's own figure is).
fn redis_hashes(a: &Args) -> Result<(f64, f64, f64), String> {
    let r = redis::start_redis()?;
    let mut c = redis::Resp::open(r.addr).map_err(|e| e.to_string())?;
    let base = redis::used_memory(r.addr);
    let base_rss = redis::memory_info(r.addr, "used_memory_rss");
    let n = a.profiles;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut per_profile = Vec::new();
    for pass in 0..2 {
        // Fields sent, and the new fields Redis says it stored.
        let (mut fields, mut stored) = (0i64, 0i64);
        let mut i = 0;
        while i < n {
            let (mut pipeline, mut replies) = (Vec::new(), 0);
            for j in i..(i + 1000).min(n) {
                let p = profile(a.seed, n, j);
                let mut args: Vec<String> = vec!["HSET".into(), format!("user:{}", uid_name(j))];
                if pass == 0 {
                    for (k, v) in p.attrs.iter().filter(|(k, _)| *k != "external_id") {
                        args.push(k.clone());
                        args.push(text(v));
                    }
                } else {
                    let mut stats: Vec<(&str, u64, i64, i64)> = Vec::new();
                    for (name, ms) in &p.events {
                        match stats.iter_mut().find(|s| s.0 == *name) {
                            Some(s) => *s = (s.0, s.1 + 1, s.2.min(*ms), s.3.max(*ms)),
                            None => stats.push((name, 1, *ms, *ms)),
                        }
                    }
                    for (name, count, first, last) in stats {
                        args.push(format!("ev_{name}_n"));
                        args.push(count.to_string());
                        args.push(format!("ev_{name}_first"));
                        args.push(first.to_string());
                        args.push(format!("ev_{name}_last"));
                        args.push(last.to_string());
                    }
                }
                if args.len() > 2 {
                    let args: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
                    pipeline.extend(redis::resp(&args));
                    replies += 1;
                    fields += (args.len() as i64 - 2) / 2;
                }
            }
            for reply in c.roundtrip(&pipeline, replies)? {
                match reply {
                    redis::Reply::Int(added) => stored += added,
                    other => return Err(format!("HSET answered {other:?}")),
                }
            }
            i = (i + 1000).min(n);
        }
        if stored != fields {
            return Err(format!("Redis stored {stored} of {fields} fields"));
        }
        let used = redis::used_memory(r.addr).saturating_sub(base);
        per_profile.push(used as f64 / f64::from(n));
        if pass == 0 {
            // The peer holds what was sent: profile 0's hash, field by field.
            let mut want: Vec<(String, String)> = profile(a.seed, n, 0)
                .attrs
                .iter()
                .filter(|(k, _)| *k != "external_id")
                .map(|(k, v)| (k.clone(), text(v)))
                .collect();
            let key = format!("user:{}", uid_name(0));
            let got = match c
                .roundtrip(&redis::resp(&[b"HGETALL", key.as_bytes()]), 1)?
                .pop()
            {
                Some(redis::Reply::Array(items)) => items,
                other => return Err(format!("HGETALL answered {other:?}")),
            };
            let mut got: Vec<(String, String)> = got
                .chunks(2)
                .map(|kv| match kv {
                    [redis::Reply::Text(k), redis::Reply::Text(v)] => Ok((k.clone(), v.clone())),
                    other => Err(format!("HGETALL pair {other:?}")),
                })
                .collect::<Result<_, _>>()?;
            want.sort();
            got.sort();
            if got != want {
                return Err(format!("Redis holds {got:?} for profile 0, sent {want:?}"));
            }
        }
    }
    let rss = redis::memory_info(r.addr, "used_memory_rss").saturating_sub(base_rss);
    Ok((per_profile[0], per_profile[1], rss as f64 / f64::from(n)))
}

/// DuckDB's column types for the rows.
fn duckdb_columns() -> Value {
    let mut c = Map::new();
    for (k, t) in [
        ("id", "VARCHAR"),
        ("plan", "VARCHAR"),
        ("country", "VARCHAR"),
        ("city", "VARCHAR"),
        ("email_domain", "VARCHAR"),
        ("ref_code", "VARCHAR"),
        ("device", "VARCHAR"),
        ("language", "VARCHAR"),
        ("age", "DOUBLE"),
        ("score", "DOUBLE"),
        ("purchases_total", "DOUBLE"),
        ("visits", "DOUBLE"),
        ("nps", "DOUBLE"),
        ("is_premium", "BOOLEAN"),
        ("opted_in", "BOOLEAN"),
        ("beta", "BOOLEAN"),
        ("signed_up_at", "BIGINT"),
        ("last_login_at", "BIGINT"),
        ("trial_end_at", "BIGINT"),
        ("tags", "VARCHAR[]"),
        ("interests", "VARCHAR[]"),
    ] {
        c.insert(k.into(), json!(t));
    }
    for (name, _) in EVENTS {
        c.insert(format!("ev_{name}_n"), json!("BIGINT"));
        c.insert(format!("ev_{name}_last"), json!("BIGINT"));
    }
    Value::Object(c)
}

// ---- filters, rendered for cohortd and as SQL ----

enum F {
    And(Vec<F>),
    Or(Vec<F>),
    Not(Box<F>),
    /// Attribute leaf: name, op, value (None for exists/does_not_exist).
    A(&'static str, &'static str, Option<Value>),
    /// Event count leaf: name, op, count.
    Ec(&'static str, &'static str, u64),
    /// Event time leaf: name, op, ISO time.
    Et(&'static str, &'static str, &'static str),
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl F {
    fn to_json(&self) -> Value {
        match self {
            F::And(v) => json!({"and": v.iter().map(F::to_json).collect::<Vec<_>>()}),
            F::Or(v) => json!({"or": v.iter().map(F::to_json).collect::<Vec<_>>()}),
            F::Not(f) => json!({"not": f.to_json()}),
            F::A(name, op, None) => json!({"attribute": {"name": name, "op": op}}),
            F::A(name, op, Some(v)) => {
                json!({"attribute": {"name": name, "op": op, "value": v}})
            }
            F::Ec(name, op, n) => json!({"event": {"name": name, "op": op, "count": n}}),
            F::Et(name, op, t) => json!({"event": {"name": name, "op": op, "time": t}}),
        }
    }

    /// SQL with SPEC §4's two-valued semantics: every leaf is a plain
    /// boolean (never NULL), so `NOT` is the universe minus the leaf, as in
    /// cohortd, not SQL's three-valued NOT (which would drop profiles
    /// without the attribute). A missing attribute makes a comparison false,
    /// except `does_not_exist`, `not_equals` and `does_not_match_regex`,
    /// which are exactly the negations of their positive ops and so hold.
    fn to_sql(&self) -> String {
        match self {
            F::And(v) => format!(
                "({})",
                v.iter().map(F::to_sql).collect::<Vec<_>>().join(" AND ")
            ),
            F::Or(v) => format!(
                "({})",
                v.iter().map(F::to_sql).collect::<Vec<_>>().join(" OR ")
            ),
            F::Not(f) => format!("(NOT {})", f.to_sql()),
            F::A(name, op, v) => {
                let positive = |op: &str| -> String {
                    let v = v.as_ref();
                    match op {
                        "exists" => format!("({name} IS NOT NULL)"),
                        // Numbers compare numerically (the columns are
                        // DOUBLE, so 9 equals 9.0), strings and booleans
                        // by value. The generator keeps one type per
                        // attribute, so no cross-type case arises.
                        "equals" => format!("coalesce({name} = {}, false)", lit(v.unwrap())),
                        // Unanchored, case-insensitive search of a string
                        // attribute (the regexes here are RE2/Rust-common).
                        "matches_regex" => format!(
                            "coalesce(regexp_matches({name}, {}, 'i'), false)",
                            lit(v.unwrap())
                        ),
                        "includes_value" => {
                            format!(
                                "coalesce(list_contains({name}, {}), false)",
                                lit(v.unwrap())
                            )
                        }
                        // Times are epoch ms in the rows; an ISO value
                        // compares as an instant.
                        "greater_than" | "less_than" => {
                            let cmp = if op == "greater_than" { ">" } else { "<" };
                            let rhs = match v.unwrap() {
                                Value::String(s) => iso_ms(s).to_string(),
                                other => other.to_string(),
                            };
                            format!("coalesce({name} {cmp} {rhs}, false)")
                        }
                        other => panic!("no SQL for attribute op {other}"),
                    }
                };
                match *op {
                    "not_equals" => format!("(NOT {})", positive("equals")),
                    "does_not_exist" => format!("(NOT {})", positive("exists")),
                    "does_not_match_regex" => format!("(NOT {})", positive("matches_regex")),
                    op => positive(op),
                }
            }
            // A profile that never did the event has count 0 (the column
            // holds 0 for it).
            F::Ec(name, op, n) => {
                let cmp = match *op {
                    "more_than" => ">",
                    "less_than" => "<",
                    "exactly" => "=",
                    other => panic!("no SQL for event op {other}"),
                };
                format!("(ev_{name}_n {cmp} {n})")
            }
            // Strict, and false for a profile that never did the event.
            F::Et(name, op, t) => {
                let cmp = if *op == "last_performed_after" {
                    ">"
                } else {
                    "<"
                };
                format!("coalesce(ev_{name}_last {cmp} {}, false)", iso_ms(t))
            }
        }
    }
}

fn lit(v: &Value) -> String {
    match v {
        Value::String(s) => sql_str(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("no SQL literal for {other}"),
    }
}

fn a(name: &'static str, op: &'static str, v: Value) -> F {
    F::A(name, op, Some(v))
}

/// The fixed set: one leaf of each kind, a regex, event counts and times,
/// time comparisons, and a 6-leaf and/or/not mix.
fn filters() -> Vec<(&'static str, F)> {
    vec![
        (
            "equals, string (card. 5)",
            a("plan", "equals", json!("gold")),
        ),
        (
            "equals, string (card. N/2)",
            a("ref_code", "equals", json!("r123")),
        ),
        (
            "not_equals, string (95 % present)",
            a("country", "not_equals", json!("C07")),
        ),
        (
            "equals, number 9.0 (20 % present)",
            a("nps", "equals", json!(9.0)),
        ),
        ("equals, boolean", a("is_premium", "equals", json!(true))),
        ("exists (70 %)", F::A("last_login_at", "exists", None)),
        (
            "does_not_exist (25 % present)",
            F::A("trial_end_at", "does_not_exist", None),
        ),
        ("greater_than, number", a("age", "greater_than", json!(40))),
        (
            "less_than, number (float)",
            a("score", "less_than", json!(250.5)),
        ),
        (
            "includes_value, array",
            a("tags", "includes_value", json!("t7")),
        ),
        (
            "matches_regex (case-insensitive)",
            a("city", "matches_regex", json!("^CITY_1[0-4]")),
        ),
        (
            "does_not_match_regex",
            a("plan", "does_not_match_regex", json!("^(gold|silver)$")),
        ),
        (
            "greater_than, time",
            a(
                "signed_up_at",
                "greater_than",
                json!("2025-06-01T00:00:00Z"),
            ),
        ),
        ("event more_than 2", F::Ec("open", "more_than", 2)),
        ("event exactly 0", F::Ec("purchase", "exactly", 0)),
        (
            "event last_performed_after",
            F::Et("login", "last_performed_after", "2025-09-01T00:00:00Z"),
        ),
        (
            "6-leaf and/or/not mix",
            F::And(vec![
                F::Or(vec![
                    a("plan", "equals", json!("gold")),
                    a("is_premium", "equals", json!(true)),
                ]),
                F::Not(Box::new(a("country", "equals", json!("C03")))),
                F::Ec("open", "more_than", 1),
                F::Or(vec![
                    a("tags", "includes_value", json!("t3")),
                    a("age", "less_than", json!(30)),
                ]),
            ]),
        ),
    ]
}

// ---- DuckDB, in a Python subprocess ----

const DUCKDB_PY: &str = r#"
import json, sys, time, duckdb
job = json.load(open(sys.argv[1]))
con = duckdb.connect()
con.execute("SET threads=2")
t0 = time.perf_counter()
con.execute("CREATE TABLE p AS SELECT * FROM read_json(?, format='newline_delimited', columns=" + job["columns"] + ")", [job["data"]])
load_s = time.perf_counter() - t0
out = {"load_s": load_s, "rows": con.execute("SELECT count(*) FROM p").fetchone()[0], "queries": []}
for q in job["queries"]:
    sql = "SELECT count(*) FROM p WHERE " + q
    count = con.execute(sql).fetchone()[0]
    times = []
    for _ in range(job["reps"]):
        t = time.perf_counter()
        con.execute(sql).fetchone()
        times.append((time.perf_counter() - t) * 1000.0)
    out["queries"].append({"count": count, "ms": times})
t = time.perf_counter()
rows = con.execute("SELECT id FROM p WHERE " + job["walk"] + " ORDER BY id").fetchall()
out["walk"] = {"rows": len(rows), "s": time.perf_counter() - t}
print(json.dumps(out))
"#;

struct Duck {
    load_s: f64,
    rows: u64,
    counts: Vec<u64>,
    ms: Vec<Vec<f64>>,
    walk_rows: u64,
    walk_s: f64,
}

fn ensure_duckdb() -> Result<(), String> {
    let ok = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok("python3 -c 'import duckdb'") {
        return Ok(());
    }
    eprintln!("python3 -c 'import duckdb' failed: pip install duckdb");
    if !ok("pip install -q duckdb || pip install -q --break-system-packages duckdb")
        || !ok("python3 -c 'import duckdb'")
    {
        return Err("the duckdb Python package is missing and could not be installed".into());
    }
    Ok(())
}

fn run_duckdb(
    dir: &std::path::Path,
    data: &std::path::Path,
    sqls: &[String],
    walk: &str,
    reps: usize,
) -> Duck {
    let job = json!({
        "data": data.to_str().unwrap(),
        "columns": duckdb_columns().to_string(),
        "queries": sqls,
        "walk": walk,
        "reps": reps,
    });
    let job_path = dir.join("job.json");
    let py_path = dir.join("duck.py");
    std::fs::write(&job_path, job.to_string()).unwrap();
    std::fs::write(&py_path, DUCKDB_PY).unwrap();
    let out = Command::new("python3")
        .arg(&py_path)
        .arg(&job_path)
        .stderr(Stdio::inherit())
        .output()
        .expect("run python3");
    assert!(out.status.success(), "the DuckDB script failed");
    let v: Value = serde_json::from_slice(&out.stdout).expect("the DuckDB script's JSON");
    let qs = v["queries"].as_array().unwrap();
    Duck {
        load_s: v["load_s"].as_f64().unwrap(),
        rows: v["rows"].as_u64().unwrap(),
        counts: qs.iter().map(|q| q["count"].as_u64().unwrap()).collect(),
        ms: qs
            .iter()
            .map(|q| {
                let mut m: Vec<f64> = q["ms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                m.sort_by(f64::total_cmp);
                m
            })
            .collect(),
        walk_rows: v["walk"]["rows"].as_u64().unwrap(),
        walk_s: v["walk"]["s"].as_f64().unwrap(),
    }
}

/// The server's own account of a route: requests handled and seconds
/// spent on them (`cohortd_http_request_duration_seconds`, from the
/// request reaching the app to its response being ready).
struct Handled {
    count: f64,
    seconds: f64,
}

impl Handled {
    /// Mean milliseconds per request handled since `before`.
    fn mean_ms_since(&self, before: &Handled) -> f64 {
        (self.seconds - before.seconds) / (self.count - before.count).max(1.0) * 1000.0
    }
}

fn handled(c: &mut Conn, route: &str) -> Handled {
    let (status, body) = c.call("GET", "/metrics", None, b"");
    assert_eq!(status, 200, "GET /metrics");
    let text = String::from_utf8_lossy(&body);
    let value = |series: &str| -> f64 {
        let head = format!("cohortd_http_request_duration_seconds_{series}{{route=\"{route}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&head))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Handled {
        count: value("count"),
        seconds: value("sum"),
    }
}

fn fpct(sorted: &[f64], p: f64) -> String {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    format!("{:.3}", sorted[i])
}

// ---- cohortd ----

/// Loads every profile through `/users/track`: attributes first, then
/// events (with `time`), 75 objects per request. Returns (attributes
/// phase, events phase, events sent).
fn load(addr: SocketAddr, key: &str, a: &Args) -> (Duration, Duration, u64) {
    let conns = a.connections.max(1) as u32;
    let n = a.profiles;
    let (seed, key) = (a.seed, key);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..conns {
            s.spawn(move || {
                let mut c = Conn::open(addr);
                let mut i = t * 75;
                while i < n {
                    let batch: Vec<Value> = (i..(i + 75).min(n))
                        .map(|u| Value::Object(profile(seed, n, u).attrs))
                        .collect();
                    c.json(
                        "POST",
                        "/users/track",
                        Some(key),
                        &json!({ "attributes": batch }),
                    );
                    i += 75 * conns;
                }
            });
        }
    });
    let attrs = started.elapsed();
    let started = Instant::now();
    let sent: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..conns)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Conn::open(addr);
                    let mut batch: Vec<Value> = Vec::with_capacity(75);
                    let mut sent = 0u64;
                    let mut flush = |c: &mut Conn, batch: &mut Vec<Value>| {
                        if !batch.is_empty() {
                            c.json(
                                "POST",
                                "/users/track",
                                Some(key),
                                &json!({ "events": batch }),
                            );
                            sent += batch.len() as u64;
                            batch.clear();
                        }
                    };
                    // Profiles are dealt to connections round-robin.
                    let mut u = t;
                    while u < n {
                        for (name, ms) in profile(seed, n, u).events {
                            batch.push(
                                json!({"external_id": uid_name(u), "name": name, "time": iso(ms)}),
                            );
                            if batch.len() == 75 {
                                flush(&mut c, &mut batch);
                            }
                        }
                        u += conns;
                    }
                    flush(&mut c, &mut batch);
                    sent
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("loader")).sum()
    });
    (attrs, started.elapsed(), sent)
}

fn main() {
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        eprintln!("CI=true: the segments bench does not run in CI");
        return;
    }
    let a = args();
    let n = a.profiles;
    if let Err(e) = ensure_duckdb() {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let tmp = tempfile::tempdir().expect("tempdir");

    // The same rows for DuckDB, written first (single thread, off any clock).
    let started = Instant::now();
    let data = tmp.path().join("profiles.jsonl");
    {
        let mut w = BufWriter::new(std::fs::File::create(&data).unwrap());
        for i in 0..n {
            serde_json::to_writer(&mut w, &Value::Object(profile(a.seed, n, i).row)).unwrap();
            w.write_all(b"\n").unwrap();
        }
        w.flush().unwrap();
    }
    eprintln!(
        "generated {n} rows in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut server = start_server(&a.fsync, 0);
    let addr = server.addr;
    // (The data import key goes unused: the profiles come through the
    // users API.)
    let (key, _) = Conn::open(addr).workspace("segbench", "segment");
    let (t_attrs, t_events, events) = load(addr, &key, &a);
    let rss_loaded = server.rss_kib().unwrap_or(0);
    eprintln!(
        "loaded {n} profiles in {:.1}s + {events} events in {:.1}s",
        t_attrs.as_secs_f64(),
        t_events.as_secs_f64()
    );

    let fs = filters();
    let sqls: Vec<String> = fs.iter().map(|(_, f)| f.to_sql()).collect();
    // The walk: a time comparison holding for ~29 % of the profiles.
    let walk_i = fs
        .iter()
        .position(|(name, _)| *name == "greater_than, time")
        .expect("the walked filter");
    let duck = run_duckdb(tmp.path(), &data, &sqls, &sqls[walk_i], a.reps);
    assert_eq!(duck.rows, u64::from(n), "DuckDB's row count");

    // cohortd: save each filter, check its count against DuckDB's.
    let mut c = Conn::open(addr);
    let mut ids = Vec::new();
    let mut mismatches = Vec::new();
    for (i, (name, f)) in fs.iter().enumerate() {
        let seg = c.json(
            "POST",
            "/segments",
            Some(&key),
            &json!({"name": name, "filter": f.to_json()}),
        );
        let id = seg["segment_id"].as_str().unwrap().to_string();
        let got = c.json(
            "GET",
            &format!("/segments/{id}/count"),
            Some(&key),
            &Value::Null,
        )["count"]
            .as_u64()
            .unwrap();
        if got != duck.counts[i] {
            mismatches.push(format!(
                "MISMATCH {name}: cohortd {got}, DuckDB {}\n  filter {}\n  sql    {}",
                duck.counts[i],
                f.to_json(),
                sqls[i]
            ));
        }
        ids.push((id, got));
    }

    // cohortd: time the counts.
    let mut lat: Vec<Vec<Duration>> = Vec::new();
    let mut server_ms: Vec<f64> = Vec::new();
    for (id, _) in &ids {
        let path = format!("/segments/{id}/count");
        let before = handled(&mut c, "/segments/{id}/count");
        let mut l: Vec<Duration> = (0..a.reps)
            .map(|_| {
                let t = Instant::now();
                let (status, _) = c.call("GET", &path, Some(&key), b"");
                assert_eq!(status, 200, "GET {path}");
                t.elapsed()
            })
            .collect();
        server_ms.push(handled(&mut c, "/segments/{id}/count").mean_ms_since(&before));
        l.sort_unstable();
        lat.push(l);
    }

    // The HTTP round trip alone, on the same connection: what a count's
    // time holds besides the evaluation.
    let mut floor: Vec<Duration> = (0..a.reps)
        .map(|_| {
            let t = Instant::now();
            let (status, _) = c.call("GET", "/healthz", None, b"");
            assert_eq!(status, 200, "GET /healthz");
            t.elapsed()
        })
        .collect();
    floor.sort_unstable();

    // cohortd: walk one filter's members in pages of 1,000.
    let (walk_id, walk_count) = &ids[walk_i];
    let mut pages_handled = None;
    let before_walk = handled(&mut c, "/segments/{id}/members");
    let mut first_page_ms = 0.0;
    let started = Instant::now();
    let (mut walked, mut pages, mut cursor) = (0u64, 0u64, None::<String>);
    let mut first_page = Duration::ZERO;
    loop {
        let path = match &cursor {
            None => format!("/segments/{walk_id}/members?limit=1000"),
            Some(cur) => format!("/segments/{walk_id}/members?limit=1000&cursor={cur}"),
        };
        let page = c.json("GET", &path, Some(&key), &Value::Null);
        if pages == 0 {
            first_page = started.elapsed();
            let h = handled(&mut c, "/segments/{id}/members");
            first_page_ms = h.mean_ms_since(&before_walk);
            pages_handled = Some(h);
        }
        pages += 1;
        walked += page["members"].as_array().map_or(0, |m| m.len() as u64);
        match page["next_cursor"].as_str() {
            Some(cur) => cursor = Some(cur.to_string()),
            None => break,
        }
    }
    let walk = started.elapsed();
    let page_ms = pages_handled.map_or(0.0, |b| {
        handled(&mut c, "/segments/{id}/members").mean_ms_since(&b)
    });
    if walked != *walk_count || walked != duck.walk_rows {
        mismatches.push(format!(
            "MISMATCH member walk of {:?}: cohortd walked {walked}, its count {walk_count}, DuckDB {}",
            fs[walk_i].0, duck.walk_rows
        ));
    }

    // Snapshot, then kill -9 and restart.
    let t0 = Instant::now();
    let snap = c.json("POST", "/admin/snapshots", Some(ADMIN), &json!({}));
    let snap_s = t0.elapsed().as_secs_f64();
    drop(c);
    let restart = server.crash_and_restart();
    let rss_restart = server.rss_kib().unwrap_or(0);
    drop(server);

    // The memory peer: the same profiles as Redis hashes (cohortd is
    // stopped first, so both never share the machine's memory).
    let hashes = redis_hashes(&a);

    // The report.
    println!(
        "\n## Segments: cohortd vs DuckDB, {n} profiles, {} reps\n",
        a.reps
    );
    println!("| filter | count | cohortd p50 ms | cohortd p99 ms | cohortd server mean ms | DuckDB p50 ms | DuckDB p99 ms | cohortd faster × (p50) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, (name, _)) in fs.iter().enumerate() {
        let count = if ids[i].1 == duck.counts[i] {
            ids[i].1.to_string()
        } else {
            format!("**{} vs {}**", ids[i].1, duck.counts[i])
        };
        let p50 = lat[i][lat[i].len() / 2].as_secs_f64() * 1000.0;
        let d50 = duck.ms[i][duck.ms[i].len() / 2];
        println!(
            "| {name} | {count} | {} | {} | {:.3} | {} | {} | {:.1} |",
            pct(&lat[i], 0.50),
            pct(&lat[i], 0.99),
            server_ms[i],
            fpct(&duck.ms[i], 0.50),
            fpct(&duck.ms[i], 0.99),
            d50 / p50
        );
    }
    println!(
        "\nThe HTTP round trip alone (`GET /healthz`, same connection): p50 {} ms, p99 {} ms.",
        pct(&floor, 0.50),
        pct(&floor, 0.99)
    );
    println!("\n| measure | cohortd | DuckDB |\n| --- | --- | --- |");
    println!(
        "| load | {:.0} profiles/s (attributes, {:.1} s) + {:.0} events/s ({events} events, {:.1} s); {:.0} profiles/s overall, over HTTP | {:.1} s from the JSON file |",
        f64::from(n) / t_attrs.as_secs_f64(),
        t_attrs.as_secs_f64(),
        events as f64 / t_events.as_secs_f64(),
        t_events.as_secs_f64(),
        f64::from(n) / (t_attrs + t_events).as_secs_f64(),
        duck.load_s
    );
    println!(
        "| member walk of `{}` ({walked} members, {pages} pages of 1,000) | {:.2} s, {:.0} members/s (first page {:.1} ms, {:.1} ms of it server-side; later pages {:.3} ms each server-side) | {:.3} s, {:.0} members/s (one `SELECT id … ORDER BY id`) |",
        fs[walk_i].0,
        walk.as_secs_f64(),
        walked as f64 / walk.as_secs_f64(),
        first_page.as_secs_f64() * 1000.0,
        first_page_ms,
        page_ms,
        duck.walk_s,
        duck.walk_rows as f64 / duck.walk_s
    );
    println!(
        "| RSS per profile | {:.0} B after loading ({:.1} MiB); {:.0} B after restart ({:.1} MiB) | – |",
        rss_loaded as f64 * 1024.0 / f64::from(n),
        rss_loaded as f64 / 1024.0,
        rss_restart as f64 * 1024.0 / f64::from(n),
        rss_restart as f64 / 1024.0
    );
    println!(
        "| snapshot, then restart after kill -9 to /readyz | snapshot {snap_s:.2} s ({:.1} MiB); restart {:.2} s | – |",
        snap["bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
        restart.as_secs_f64()
    );
    let per = |kib: u64| kib as f64 * 1024.0 / f64::from(n);
    match hashes {
        Ok((attrs, all, rss)) => {
            println!("\n| memory per profile | cohortd (RSS after restart, with its column index) | Redis hashes: `used_memory` growth | Redis hashes: RSS growth | cohortd ÷ Redis (`used_memory`) |");
            println!("| --- | --- | --- | --- | --- |");
            println!(
                "| the attributes alone | – | {attrs:.0} B | – | – |\n| the attributes, and each event's count, first and last time | {:.0} B | {all:.0} B | {rss:.0} B | {:.2} |",
                per(rss_restart),
                per(rss_restart) / all
            );
        }
        Err(e) => println!("\nRedis peer skipped: {e}"),
    }
    if mismatches.is_empty() {
        println!(
            "\nEvery count matched DuckDB's ({} filters, and the walk).",
            fs.len()
        );
    } else {
        for m in &mismatches {
            println!("\n{m}");
        }
        panic!(
            "{} count mismatch(es) between cohortd and DuckDB",
            mismatches.len()
        );
    }
}
