//! The durability contract (SPEC §6, §7) against the real binary: `kill -9`
//! mid-ingest, snapshots taken under load, a corrupt newest snapshot, a torn
//! log tail, restore through HTTP and the CLI, graceful shutdown on SIGTERM
//! and SIGINT, a full disk, and the data-dir lock.
//!
//! Every check compares what the server shows after a restart with a model
//! built from the answers the clients got: a 201 must survive, a request that
//! got no answer is applied whole or not at all, and nothing is applied
//! twice (import history counts one entry per applied delta).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::process::{cli_json, Daemon, Home, Tenant};
use common::ADMIN;
use serde_json::{json, Value};

/// Cohorts the writers spread over.
const COHORTS: usize = 3;
/// Users each writer thread owns (disjoint across threads).
const USERS_PER_WRITER: usize = 12;
const WRITERS: usize = 4;

/// Import history long enough to count every delta a test sends.
const LONG_HISTORY: (&str, &str) = ("import_history_len = 100", "import_history_len = 100000");

fn cohort(c: usize) -> String {
    format!("c{c}")
}

fn writer_users(w: usize) -> Vec<String> {
    (0..USERS_PER_WRITER)
        .map(|k| format!("w{w}-u{k}"))
        .collect()
}

fn all_writer_users() -> Vec<String> {
    (0..WRITERS).flat_map(writer_users).collect()
}

/// Polls `done` until it holds; panics after `within`.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- the writers and their model ----

/// One delta a writer sent.
#[derive(Clone, Debug)]
struct Op {
    cohort: usize,
    ids: Vec<String>,
    remove: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// 201: must survive anything.
    Acked,
    /// No HTTP answer (the server died or stopped): whole or nothing.
    Unanswered,
}

type Journal = Vec<(Op, Fate)>;

/// A tiny deterministic generator, so a failure can be replayed by eye.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

/// Writer `w` sends deltas over its own users until `stop` is set or the
/// server stops answering (then it stops: at most one unanswered request,
/// its last). Bounded by `max_ops`.
fn writer(d: &Daemon, t: &Tenant, w: usize, stop: &AtomicBool, acked: &AtomicUsize) -> Journal {
    let users = writer_users(w);
    let mut rng = Lcg(w as u64 + 1);
    let mut journal = Vec::new();
    for _ in 0..5_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let n = 1 + rng.next(4);
        let op = Op {
            cohort: rng.next(COHORTS),
            ids: (0..n)
                .map(|_| users[rng.next(users.len())].clone())
                .collect(),
            remove: rng.next(3) == 0,
        };
        match d.delta(t, &cohort(op.cohort), &op.ids, op.remove) {
            Ok(r) => {
                assert_eq!(r.status, 201, "{}", r.body);
                journal.push((op, Fate::Acked));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                journal.push((op, Fate::Unanswered));
                break;
            }
        }
    }
    journal
}

/// Runs `WRITERS` writers while `during` runs on this thread; `during` gets
/// the count of acknowledged deltas so far and must make the writers stop
/// (by setting the flag or stopping the server).
fn ingest(d: &Daemon, t: &Tenant, during: impl FnOnce(&AtomicUsize, &AtomicBool)) -> Vec<Journal> {
    let stop = AtomicBool::new(false);
    let acked = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (stop, acked) = (&stop, &acked);
                s.spawn(move || writer(d, t, w, stop, acked))
            })
            .collect();
        during(&acked, &stop);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Membership per cohort after applying `ops` in order.
fn apply(sets: &mut [BTreeSet<String>], op: &Op) {
    for id in &op.ids {
        if op.remove {
            sets[op.cohort].remove(id);
        } else {
            sets[op.cohort].insert(id.clone());
        }
    }
}

/// Checks the server's state against the writers' journals: every acked
/// delta in effect, each unanswered one whole or not at all, and one import
/// history entry per applied delta (none replayed twice).
fn verify(d: &Daemon, t: &Tenant, journals: &[Journal]) {
    let observed: Vec<BTreeSet<String>> = (0..COHORTS)
        .map(|c| d.member_ids(t, &cohort(c)).into_iter().collect())
        .collect();
    let mut min_entries = [0usize; COHORTS];
    let mut max_entries = [0usize; COHORTS];
    for (w, journal) in journals.iter().enumerate() {
        let mine: BTreeSet<String> = writer_users(w).into_iter().collect();
        let mut without = vec![BTreeSet::new(); COHORTS];
        let mut unanswered = None;
        for (op, fate) in journal {
            match fate {
                Fate::Acked => {
                    apply(&mut without, op);
                    min_entries[op.cohort] += 1;
                    max_entries[op.cohort] += 1;
                }
                Fate::Unanswered => unanswered = Some(op),
            }
        }
        let seen: Vec<BTreeSet<String>> = observed
            .iter()
            .map(|s| s.intersection(&mine).cloned().collect())
            .collect();
        let mut with = without.clone();
        if let Some(op) = unanswered {
            apply(&mut with, op);
            max_entries[op.cohort] += 1;
        }
        assert!(
            seen == without || seen == with,
            "writer {w}: the server holds {seen:?}\nacknowledged deltas give {without:?}\n\
             with the unanswered one applied whole {with:?}"
        );
    }
    for c in 0..COHORTS {
        let entries = d.imports(t, &cohort(c)).len();
        assert!(
            (min_entries[c]..=max_entries[c]).contains(&entries),
            "cohort {c}: {entries} import history entries, expected {}..={} \
             (fewer: an acknowledged delta was lost; more: one was applied twice)",
            min_entries[c],
            max_entries[c]
        );
    }
}

fn acked_count(journals: &[Journal]) -> usize {
    journals
        .iter()
        .flatten()
        .filter(|(_, f)| *f == Fate::Acked)
        .count()
}

// ---- a scripted, single-threaded history for the file-level tests ----

/// Sends `n` deltas (numbered from `from`) and asserts each got 201.
fn script(d: &Daemon, t: &Tenant, from: usize, n: usize) {
    let users = all_writer_users();
    for i in from..from + n {
        let ids = vec![
            users[i % users.len()].clone(),
            users[(i * 7 + 3) % users.len()].clone(),
        ];
        let r = d
            .delta(t, &cohort(i % COHORTS), &ids, i % 4 == 3)
            .unwrap_or_else(|e| panic!("delta {i}: {e}"));
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

// ---- the files on disk ----

/// Snapshot files in the data dir, newest (highest log position) first.
fn snapshot_files(data: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().to_string();
            let position = name.split('-').nth(1).unwrap().parse().unwrap();
            (position, p)
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found
}

fn wal_segments(wal: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    segs
}

/// The records of one segment: (offset, position, payload), after the
/// segment header (docs/format.md) if it has one. Stops at the first frame
/// that does not fit (a torn tail).
fn frames(segment: &Path) -> Vec<(usize, u64, Vec<u8>)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut out = Vec::new();
    let mut at = if bytes.starts_with(b"COHDWAL\0") {
        16
    } else {
        0
    };
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let position = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        if at + 16 + len > bytes.len() {
            break;
        }
        out.push((at, position, bytes[at + 16..at + 16 + len].to_vec()));
        at += 16 + len;
    }
    out
}

/// The position of the last whole record in the log.
fn last_wal_position(wal: &Path) -> u64 {
    wal_segments(wal)
        .iter()
        .rev()
        .find_map(|s| frames(s).last().map(|f| f.1))
        .expect("the log holds records")
}

fn flip_byte(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(file, bytes).unwrap();
}

fn append(file: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

// ---- 1. kill -9 during concurrent ingest ----

#[test]
fn kill_9_during_concurrent_ingest_loses_no_acknowledged_delta() {
    let home = Home::with_config(&[LONG_HISTORY]);
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    let journals = ingest(&d, &t, |acked, _| {
        wait_until("300 acknowledged deltas", Duration::from_secs(30), || {
            acked.load(Ordering::Relaxed) >= 300
        });
        d.signal("KILL");
    });
    drop(d);
    assert!(acked_count(&journals) >= 300);

    let d = home.start();
    verify(&d, &t, &journals);
    // The recovered server takes writes again.
    let r = d.delta(&t, "c0", &writer_users(0), false).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
}

// ---- 2. snapshot under load, then kill -9 ----

#[test]
fn a_snapshot_taken_during_ingest_combines_with_the_log_exactly() {
    let home = Home::with_config(&[LONG_HISTORY]);
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    let mut newest = Value::Null;
    let journals = ingest(&d, &t, |acked, _| {
        for round in 1..=2 {
            wait_until("acknowledged deltas", Duration::from_secs(30), || {
                acked.load(Ordering::Relaxed) >= round * 120
            });
            let snap = d.snapshot();
            assert!(snap["log_position"].as_u64().unwrap() > 0, "{snap}");
            newest = snap;
        }
        // Writes after the newest snapshot: the log has to supply them.
        let at_snapshot = acked.load(Ordering::Relaxed);
        wait_until("writes after the snapshot", Duration::from_secs(30), || {
            acked.load(Ordering::Relaxed) >= at_snapshot + 120
        });
        d.signal("KILL");
    });
    drop(d);

    let d = home.start();
    let log = d.output();
    let id = newest["snapshot_id"].as_str().unwrap();
    assert!(
        log.contains("loaded snapshot") && log.contains(id),
        "recovery must start from {id}:\n{log}"
    );
    assert!(log.contains("replayed the write-ahead log"), "{log}");
    verify(&d, &t, &journals);
}

// ---- 3. corrupt newest snapshot ----

#[test]
fn a_corrupt_newest_snapshot_is_skipped_for_the_previous_one_plus_the_log() {
    // Small segments, so that snapshots really drop old ones: the log must
    // still reach back to the second-newest snapshot.
    let home = Home::with_config(&[
        LONG_HISTORY,
        ("segment_bytes = 67108864", "segment_bytes = 2048"),
    ]);
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    script(&d, &t, 0, 60);
    let older = d.snapshot();
    script(&d, &t, 60, 60);
    let newer = d.snapshot();
    script(&d, &t, 120, 30);
    let before = d.fingerprint(&t);
    d.kill9();

    let segments = wal_segments(&home.wal_dir());
    let first_kept = frames(&segments[0])[0].1;
    assert!(
        first_kept > 1,
        "the snapshots dropped no log segment: the test would not exercise retention"
    );
    assert!(first_kept <= older["log_position"].as_u64().unwrap() + 1);

    let newest = snapshot_files(&home.data_dir())[0].1.clone();
    assert!(
        newest.ends_with(format!("{}.snap", newer["snapshot_id"].as_str().unwrap())),
        "{newest:?} is not {newer}"
    );
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    flip_byte(&newest, len / 2 + 22);

    let d = home.start();
    let log = d.output();
    let name = newest.file_name().unwrap().to_str().unwrap();
    let skip_line = log
        .lines()
        .find(|l| l.contains("skipping snapshot"))
        .unwrap_or_else(|| panic!("no line about the skipped snapshot:\n{log}"));
    assert!(skip_line.contains(name), "{skip_line}");
    assert!(
        log.contains(older["snapshot_id"].as_str().unwrap()),
        "recovery must load the previous snapshot:\n{log}"
    );
    assert_eq!(d.fingerprint(&t), before);
}

// ---- 4. torn log tail ----

#[test]
fn a_torn_log_tail_is_cut_and_acknowledged_writes_survive() {
    let home = Home::with_config(&[LONG_HISTORY]);
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    script(&d, &t, 0, 40);
    let before = d.fingerprint(&t);
    d.kill9();

    // Garbage after the last record: a write that never finished.
    let segment = wal_segments(&home.wal_dir()).pop().unwrap();
    append(&segment, &[0xab; 37]);
    let d = home.start();
    assert!(
        d.output().contains("truncating torn tail"),
        "{}",
        d.output()
    );
    assert_eq!(d.fingerprint(&t), before);
    script(&d, &t, 40, 5);
    let before = d.fingerprint(&t);
    d.kill9();

    // The next record, framed correctly but cut in the middle.
    let segment = wal_segments(&home.wal_dir()).pop().unwrap();
    let (_, position, payload) = frames(&segment).pop().unwrap();
    let mut torn = Vec::new();
    torn.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    torn.extend_from_slice(&0u32.to_le_bytes());
    torn.extend_from_slice(&(position + 1).to_le_bytes());
    torn.extend_from_slice(&payload[..payload.len() / 2]);
    append(&segment, &torn);
    let d = home.start();
    assert!(
        d.output().contains("truncating torn tail"),
        "{}",
        d.output()
    );
    assert_eq!(d.fingerprint(&t), before);

    // The log continues cleanly where the whole records end.
    script(&d, &t, 45, 5);
    let before = d.fingerprint(&t);
    d.kill9();
    let d = home.start();
    assert_eq!(d.fingerprint(&t), before);
}

// ---- 5. restore through HTTP ----

#[test]
fn a_restore_through_http_replaces_the_state_and_survives_a_crash() {
    let home = Home::with_config(&[LONG_HISTORY]);
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    script(&d, &t, 0, 20);
    let state_a = d.fingerprint(&t);
    let snap_a = d.snapshot();
    let id_a = snap_a["snapshot_id"].as_str().unwrap().to_string();
    for field in ["snapshot_id", "created_at", "bytes", "log_position"] {
        assert!(!snap_a[field].is_null(), "{field} missing from {snap_a}");
    }

    // State B: different members, one more cohort, and a second snapshot.
    script(&d, &t, 20, 20);
    let r = d.delta(&t, "only-in-b", &writer_users(1), false).unwrap();
    assert_eq!(r.status, 201);
    d.snapshot();
    assert_ne!(d.fingerprint(&t), state_a);

    let r = d.post("/admin/restore", ADMIN, json!({ "snapshot_id": id_a }));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(d.fingerprint(&t), state_a, "reads after a restore show A");
    assert_eq!(d.member_ids(&t, "only-in-b"), Vec::<String>::new());

    // A write after the restore applies to A.
    let late = vec!["w3-u11".to_string()];
    let r = d.delta(&t, "c0", &late, false).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let mut expected: BTreeSet<String> = state_a["cohorts"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(state_a["cohorts"][0]["cohort"]["cohort_id"], "c0");
    expected.insert(late[0].clone());
    let after_restore = d.fingerprint(&t);
    let members: BTreeSet<String> = d.member_ids(&t, "c0").into_iter().collect();
    assert_eq!(members, expected);

    // Listed newest first, with the pinned fields.
    let list = d.get("/admin/snapshots", ADMIN).body["snapshots"].clone();
    let list = list.as_array().unwrap();
    assert!(list.len() >= 3, "{list:?}");
    for s in list {
        assert!(s["snapshot_id"].is_string() && s["created_at"].is_string());
        assert!(s["bytes"].as_u64().unwrap() > 0);
        assert!(s["log_position"].is_u64());
    }
    let positions: Vec<u64> = list
        .iter()
        .map(|s| s["log_position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] >= w[1]), "{positions:?}");
    assert!(list.iter().any(|s| s["snapshot_id"] == id_a.as_str()));

    let r = d.post(
        "/admin/restore",
        ADMIN,
        json!({ "snapshot_id": "snap-00000000000000000042-1" }),
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // kill -9: still A plus the late write.
    d.kill9();
    let d = home.start();
    assert_eq!(d.fingerprint(&t), after_restore);
    d.kill9();

    // Even without the snapshot taken after the restore, the restore itself
    // is in the log: recovery from the snapshot before it replays it.
    let newest = snapshot_files(&home.data_dir())[0].1.clone();
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    flip_byte(&newest, len - 1);
    let d = home.start();
    assert!(d.output().contains("skipping snapshot"), "{}", d.output());
    assert_eq!(d.fingerprint(&t), after_restore);
}

// ---- 6. graceful shutdown ----

/// A delta sent by hand, in two halves, so it is provably in flight.
struct SlowDelta {
    stream: TcpStream,
    rest: Vec<u8>,
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; returns its
/// status line.
fn read_response(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
        assert!(head.len() < 16 * 1024, "no end of headers");
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    head.lines().next().unwrap_or("").to_string()
}

impl SlowDelta {
    fn start(d: &Daemon, t: &Tenant, cohort: &str, ids: &[String]) -> SlowDelta {
        let body = common::delta(&t.secret, cohort, json!([{ "user_ids": ids }])).to_string();
        let head = format!(
            "POST /partners/segment/cohorts/users HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\
             Expect: 100-continue\r\n\r\n",
            d.addr,
            body.len()
        );
        let mut stream = TcpStream::connect(d.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // A whole request and its answer first: only then has the server
        // surely accepted this connection (a connection still in the
        // listen backlog at the stop is never served, and that is right).
        let probe = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr);
        stream.write_all(probe.as_bytes()).unwrap();
        let status = read_response(&mut stream);
        assert!(status.contains(" 200 "), "{status}");
        let (first, rest) = body.as_bytes().split_at(body.len() / 2);
        stream.write_all(head.as_bytes()).unwrap();
        // `100 Continue` proves the server has decoded this request's head:
        // from then on it is in flight, and a drain must finish it (bytes
        // still in the socket buffer at the stop are, rightly, not served).
        let mut interim = Vec::new();
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            interim.push(byte[0]);
        }
        let interim = String::from_utf8_lossy(&interim).to_string();
        assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
        stream.write_all(first).unwrap();
        stream.flush().unwrap();
        SlowDelta {
            stream,
            rest: rest.to_vec(),
        }
    }

    /// Sends the rest and returns the status line.
    fn finish(mut self) -> String {
        self.stream.write_all(&self.rest).unwrap();
        let mut response = String::new();
        self.stream.read_to_string(&mut response).unwrap();
        response.lines().next().unwrap_or("").to_string()
    }
}

#[test]
fn sigterm_drains_in_flight_requests_takes_a_final_snapshot_and_exits_0() {
    let home = Home::with_config(&[LONG_HISTORY]);
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    let slow_ids = vec!["w0-u0".to_string(), "w2-u5".to_string()];
    let mut slow_status = String::new();
    let journals = ingest(&d, &t, |acked, _| {
        wait_until("acknowledged deltas", Duration::from_secs(30), || {
            acked.load(Ordering::Relaxed) >= 150
        });
        let slow = SlowDelta::start(&d, &t, "slow", &slow_ids);
        d.signal("TERM");
        wait_until(
            "the stop signal to be handled",
            Duration::from_secs(30),
            || d.output().contains("stop signal received"),
        );
        slow_status = slow.finish();
    });
    assert!(
        slow_status.contains(" 201 "),
        "a request in flight at SIGTERM must complete: {slow_status:?}\n{}",
        d.output()
    );
    let (status, log) = d.wait_exit();
    assert_eq!(status.code(), Some(0), "{log}");

    // The final snapshot covers every record in the log.
    let (position, file) = snapshot_files(&home.data_dir())
        .into_iter()
        .next()
        .expect("a final snapshot");
    assert!(
        log.contains(file.file_stem().unwrap().to_str().unwrap()),
        "{log}"
    );
    assert_eq!(position, last_wal_position(&home.wal_dir()));

    // Every unanswered request was never started: a drained server answers
    // everything it accepted. So the state is exactly the acknowledged one.
    let acked_only: Vec<Journal> = journals
        .iter()
        .map(|j| {
            j.iter()
                .filter(|(_, f)| *f == Fate::Acked)
                .cloned()
                .collect()
        })
        .collect();
    let d = home.start();
    assert!(
        !d.output().contains("replayed the write-ahead log"),
        "nothing after the final snapshot should need replay:\n{}",
        d.output()
    );
    verify(&d, &t, &acked_only);
    assert_eq!(d.member_ids(&t, "slow"), slow_ids);
}

#[test]
fn sigint_also_takes_a_final_snapshot_and_exits_0() {
    let home = Home::new();
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    script(&d, &t, 0, 10);
    let before = d.fingerprint(&t);
    d.signal("INT");
    let (status, log) = d.wait_exit();
    assert_eq!(status.code(), Some(0), "{log}");
    let (position, _) = snapshot_files(&home.data_dir())
        .into_iter()
        .next()
        .expect("a final snapshot");
    assert_eq!(position, last_wal_position(&home.wal_dir()));
    let d = home.start();
    assert_eq!(d.fingerprint(&t), before);
}

// ---- 7. the operator CLI ----

#[test]
fn the_cli_snapshots_inspects_and_restores_a_running_server() {
    let home = Home::new();
    let d = home.start();
    let users = all_writer_users();
    let t = d.tenant("acme", &users);
    script(&d, &t, 0, 30);
    let state = d.fingerprint(&t);

    let snap = cli_json(&home.cli(&["snapshot", "--json"], Some(d.addr)));
    let id = snap["snapshot_id"].as_str().unwrap().to_string();
    let file = home.data_dir().join(format!("{id}.snap"));
    assert!(file.exists(), "{file:?}");

    let inspected = cli_json(&home.cli(&["inspect", file.to_str().unwrap()], None));
    assert_eq!(inspected["snapshot_id"], id.as_str());
    assert_eq!(inspected["log_position"], snap["log_position"]);
    let ws = &inspected["workspaces"].as_array().unwrap()[0];
    assert_eq!(ws["workspace_id"], t.id.as_str());
    assert_eq!(ws["profiles"], users.len());
    assert_eq!(ws["cohorts"], COHORTS);
    assert_eq!(ws["data_import_keys"], 1);
    let memberships: usize = state["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["members"].as_array().unwrap().len())
        .sum();
    assert_eq!(ws["memberships"], memberships);

    // Change the state, then restore the snapshot from the command line.
    script(&d, &t, 30, 15);
    assert_ne!(d.fingerprint(&t), state);
    let out = home.cli(&["restore", &id], Some(d.addr));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.fingerprint(&t), state);

    let out = home.cli(&["restore", "snap-nope"], Some(d.addr));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    let created = cli_json(&home.cli(&["workspace", "create", "beta", "--json"], Some(d.addr)));
    let key = created["rest_api_key"].as_str().unwrap();
    assert_eq!(d.get("/cohorts", key).status, 200);

    // inspect verifies the file: a flipped byte is an error, not a summary.
    flip_byte(&file, 60);
    let out = home.cli(&["inspect", file.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- 8. a full disk ----

#[test]
fn a_full_disk_refuses_writes_with_503_applies_nothing_and_loses_nothing() {
    let mut home = Home::new();
    home.file_size_limit_bytes = Some(256 * 1024);
    let d = home.start();
    let users: Vec<String> = (0..200).map(|i| format!("u{i}")).collect();
    let t = d.tenant("acme", &users);

    // Big records (one real user, padded with unmatched ids) until the log
    // cannot grow any more.
    let mut acked = BTreeSet::new();
    let mut refused = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let mut ids = vec![user.clone()];
        ids.extend((0..900).map(|k| format!("padding-{i}-{k}")));
        let r = d.delta(&t, "c", &ids, false).unwrap();
        match r.status {
            201 => {
                acked.insert(user.clone());
            }
            503 => {
                assert!(r.message().contains("retry"), "{}", r.body);
                assert_no_internals(&r.body);
                refused.push(user.clone());
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("{other}: {}", r.body),
        }
    }
    assert!(
        refused.len() == 3,
        "the log never filled up; acked {}",
        acked.len()
    );
    assert!(!acked.is_empty());
    let members: BTreeSet<String> = d.member_ids(&t, "c").into_iter().collect();
    assert_eq!(members, acked, "a 503 applied nothing");
    assert!(d.output().contains("write-ahead log write failed"));
    d.kill9();

    // Space again: everything acknowledged is there, nothing refused is.
    home.file_size_limit_bytes = None;
    let d = home.start();
    let members: BTreeSet<String> = d.member_ids(&t, "c").into_iter().collect();
    assert_eq!(members, acked);
    let r = d.delta(&t, "c", &refused, false).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    d.kill9();
    let d = home.start();
    let members: BTreeSet<String> = d.member_ids(&t, "c").into_iter().collect();
    assert_eq!(members.len(), acked.len() + refused.len());

    // A snapshot on the full disk: a state larger than the file size cap
    // (written while there was room), then the cap again.
    let blob = "x".repeat(4000);
    for chunk in users.chunks(75) {
        let attrs: Vec<Value> = chunk
            .iter()
            .map(|u| json!({ "external_id": u, "blob": blob }))
            .collect();
        let r = d.post("/users/track", &t.key, json!({ "attributes": attrs }));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    d.kill9();
    home.file_size_limit_bytes = Some(256 * 1024);
    let d = home.start();
    for _ in 0..2 {
        let r = d.post("/admin/snapshots", ADMIN, json!({}));
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.message().contains("retry"), "{}", r.body);
        assert_no_internals(&r.body);
        assert_eq!(
            leftover_temp_files(&home.data_dir()),
            Vec::<String>::new(),
            "a failed snapshot keeps no temp file (it would hold the space)"
        );
    }
    assert!(
        d.output().contains("the snapshot could not be written"),
        "the cause goes to the log:\n{}",
        d.output()
    );
    d.kill9();

    // Room again: the next snapshot is written.
    home.file_size_limit_bytes = None;
    let d = home.start();
    let snap = d.snapshot();
    assert!(snap["bytes"].as_u64().unwrap() > 256 * 1024, "{snap}");
    assert!(leftover_temp_files(&home.data_dir()).is_empty());
}

/// An error body names no file and carries no OS error text: those are
/// for the server's log.
fn assert_no_internals(body: &Value) {
    let text = body.to_string();
    assert!(!text.contains('/'), "a path in an error body: {text}");
    assert!(
        !text.contains("wal-"),
        "a log file name in an error body: {text}"
    );
    assert!(
        !text.contains("os error") && !text.contains("File too large"),
        "OS error text in an error body: {text}"
    );
}

fn leftover_temp_files(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap.tmp"))
        .collect()
}

// ---- 9. one server per data dir ----

#[test]
fn a_second_server_on_a_data_dir_in_use_refuses_to_start_naming_the_lock() {
    let home = Home::new();
    let first = home.start();
    let t = first.tenant("acme", &all_writer_users());

    let refused = home
        .try_start()
        .map(|d| d.kill9())
        .expect_err("a second server on the same data dir must not start");
    assert!(!refused.status.success());
    assert!(
        refused.output.contains("LOCK") && refused.output.contains("in use"),
        "{}",
        refused.output
    );

    // The first one is unharmed.
    script(&first, &t, 0, 3);
    assert_eq!(first.get("/readyz", ADMIN).status, 200);
}

/// With `retain = 2`, the snapshot taken right after a restore prunes the
/// snapshot that was restored, while the kept log (back to the second-newest
/// snapshot) still holds the restore. If the newest snapshot is then found
/// corrupt, recovery replays the restore from the log: the record carries
/// the restored image, so it needs no snapshot file and the state comes
/// back exactly.
#[test]
fn a_logged_restore_replays_even_after_its_snapshot_file_was_pruned() {
    let home = Home::with_config(&[LONG_HISTORY, ("retain = 5", "retain = 2")]);
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    script(&d, &t, 0, 10);
    let id_a = d.snapshot()["snapshot_id"].as_str().unwrap().to_string();
    script(&d, &t, 10, 10);
    d.snapshot();
    let r = d.post("/admin/restore", ADMIN, json!({ "snapshot_id": id_a }));
    assert_eq!(r.status, 200, "{}", r.body);
    script(&d, &t, 20, 3);
    let before = d.fingerprint(&t);
    d.kill9();
    assert!(
        !home.data_dir().join(format!("{id_a}.snap")).exists(),
        "retain = 2 prunes the restored snapshot"
    );

    let newest = snapshot_files(&home.data_dir())[0].1.clone();
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    flip_byte(&newest, len - 1);
    let d = home.start();
    assert_eq!(
        d.fingerprint(&t),
        before,
        "the restore and the writes after it come back from the log"
    );
    d.kill9();
}

/// Data written by a newer cohortd is never skipped as corrupt: start-up
/// stops and names the file, the version found and the versions this build
/// reads. Checked for a snapshot and for a log segment.
#[test]
fn data_of_a_newer_format_version_stops_start_up_naming_it() {
    use cohortd::persist::{schema, snapshot, wal};

    let newer = schema::SNAPSHOT_VERSION.max(schema::LOG_VERSION) + 1;
    let supported = format!("versions 1 to {}", newer - 1);

    let home = Home::new();
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    script(&d, &t, 0, 5);
    d.snapshot();
    d.stop();
    let file = snapshot::write(&home.data_dir(), 1_000, 1, newer, b"from the future")
        .expect("write a newer snapshot");
    let refused = home
        .try_start()
        .map(|d| d.kill9())
        .expect_err("a newer snapshot must stop start-up");
    assert!(!refused.status.success());
    for part in [
        file.path.to_str().unwrap(),
        &format!("format version {newer}"),
        &supported,
    ] {
        assert!(
            refused.output.contains(part),
            "{part:?} in:\n{}",
            refused.output
        );
    }
    std::fs::remove_file(&file.path).unwrap();

    // A log segment of a newer version (what a newer build would append).
    let start = last_wal_position(&home.wal_dir()) + 1;
    {
        let opts = wal::WalOptions {
            version: newer,
            ..wal::WalOptions::default()
        };
        let seg = home.wal_dir().join(format!("wal-{start:020}.log"));
        let scratch = tempfile::tempdir().unwrap();
        let (w, _) = wal::Wal::open(scratch.path(), opts).unwrap();
        w.append(b"record").unwrap().wait_blocking().unwrap();
        w.close().unwrap();
        let written = std::fs::read_dir(scratch.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        std::fs::copy(written.path(), &seg).unwrap();
    }
    let refused = home
        .try_start()
        .map(|d| d.kill9())
        .expect_err("a newer log segment must stop start-up");
    assert!(
        refused.output.contains(&format!("format version {newer}"))
            && refused.output.contains(&supported)
            && refused.output.contains(&format!("wal-{start:020}.log")),
        "{}",
        refused.output
    );
}

/// The operator CLI gives up on a server that is not there, quickly and
/// saying where it looked, instead of hanging.
#[test]
fn the_cli_names_an_unreachable_server() {
    let home = Home::new();
    let nobody = common::process::free_port();
    let out = home.cli(&["snapshot"], Some(nobody));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach cohortd") && err.contains(&nobody.to_string()),
        "{err}"
    );
}

/// The listener is bound before recovery: while the engine recovers,
/// `/healthz` answers, `/readyz` says "recovering" and everything else is a
/// 503 to retry; once it has recovered, the same address serves the data.
/// (Recovery is held open by a debug-build hook, not by timing.)
#[test]
fn readyz_says_recovering_until_the_log_is_replayed() {
    let mut home = Home::new();
    let d = home.start();
    let t = d.tenant("acme", &all_writer_users());
    script(&d, &t, 0, 5);
    let before = d.fingerprint(&t);
    d.kill9();

    let hold = home.root().join("hold-recovery");
    std::fs::write(&hold, b"").unwrap();
    home.set_env("COHORTD_TEST_HOLD_RECOVERY", Some(hold.to_str().unwrap()));
    let d = home.spawn();
    wait_until("the listener answers", Duration::from_secs(40), || {
        d.call("GET", "/healthz", None, None).is_ok()
    });
    assert_eq!(d.get("/healthz", ADMIN).status, 200);
    let ready = d.get("/readyz", ADMIN);
    assert_eq!(
        (ready.status, ready.body["status"].clone()),
        (503, json!("recovering"))
    );
    let data = d.get("/cohorts", &t.key);
    assert_eq!(data.status, 503, "{:?}", data.body);
    assert!(data.body["message"]
        .as_str()
        .unwrap()
        .contains("recovering"));

    std::fs::remove_file(&hold).unwrap();
    wait_until("ready", Duration::from_secs(40), || {
        d.get("/readyz", ADMIN).status == 200
    });
    assert_eq!(d.fingerprint(&t), before);
}

/// A restore never rewinds the id counters: segment and workspace ids
/// given out before it are never given out again, live and after a crash
/// that replays the logged restore.
#[test]
fn a_restore_never_gives_out_an_id_again() {
    let home = Home::new();
    let d = home.start();
    let a = d.tenant("a", &all_writer_users());
    let segment = |d: &Daemon, n: &str| {
        let r = d.post(
            "/segments",
            &a.key,
            json!({"name": n, "filter": {"all": true}}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["segment_id"].as_str().unwrap().to_string()
    };
    assert_eq!(segment(&d, "one"), "seg_1");
    let snap = d.snapshot();
    assert_eq!(segment(&d, "two"), "seg_2");
    let b = d.tenant("b", &[]);
    assert_eq!(b.id, "ws_2");

    let r = d.post(
        "/admin/restore",
        ADMIN,
        json!({"snapshot_id": snap["snapshot_id"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        d.get("/segments/seg_2", &a.key).status,
        404,
        "restored away"
    );
    assert_eq!(segment(&d, "three"), "seg_3", "seg_2 was given out already");
    assert_eq!(d.tenant("c", &[]).id, "ws_3", "ws_2 was given out already");

    // The snapshot the restore took is the newest; drop it so that start-up
    // replays the logged restore and what followed.
    let files = snapshot_files(&home.data_dir());
    d.kill9();
    std::fs::remove_file(&files[0].1).unwrap();
    let d = home.start();
    assert_eq!(d.get("/segments/seg_3", &a.key).status, 200);
    assert_eq!(segment(&d, "four"), "seg_4");
    assert_eq!(d.tenant("d", &[]).id, "ws_4");
}

/// The state-dependent limits in force are part of the log: after a crash,
/// replay judges each write by the limits it was acknowledged under, even
/// when `config.toml` changed them meanwhile, in either direction.
#[test]
fn replay_judges_writes_by_the_limits_they_were_acknowledged_under() {
    let shipped = "segments_per_workspace = 2000";
    let home = Home::with_config(&[(shipped, "segments_per_workspace = 2")]);
    let set_limit = |n: u32| {
        let text =
            cohortd::config::SHIPPED.replace(shipped, &format!("segments_per_workspace = {n}"));
        std::fs::write(home.root().join("config.toml"), text).unwrap();
    };
    let create = |d: &Daemon, key: &str, n: &str| {
        d.post(
            "/segments",
            key,
            json!({"name": n, "filter": {"all": true}}),
        )
    };
    let names = |d: &Daemon, key: &str| -> Vec<String> {
        let r = d.get("/segments", key);
        r.body["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };

    // Limit 2: the third create is refused (and logged, as every write is).
    let d = home.start();
    let t = d.tenant("acme", &[]);
    assert_eq!(create(&d, &t.key, "a").status, 201);
    assert_eq!(create(&d, &t.key, "b").status, 201);
    let refused = create(&d, &t.key, "c");
    assert_eq!(refused.status, 400, "{}", refused.body);
    d.kill9();

    // Raised to 5 before the restart: the refused write stays refused.
    set_limit(5);
    let d = home.start();
    assert_eq!(names(&d, &t.key), ["a", "b"]);
    assert_eq!(create(&d, &t.key, "c").status, 201, "5 is in force now");
    assert_eq!(create(&d, &t.key, "d").status, 201);
    d.kill9();

    // Lowered to 2 before the restart: what was acknowledged stays applied.
    set_limit(2);
    let d = home.start();
    assert_eq!(names(&d, &t.key), ["a", "b", "c", "d"]);
    assert_eq!(create(&d, &t.key, "e").status, 400, "2 is in force now");
}

// ---- email and phone lookups and braze_ids across restarts and restores ----

/// The profiles whose attribute `name` equals `value`, as listed (with
/// their braze_ids).
fn listed_with(d: &Daemon, t: &Tenant, name: &str, value: Value) -> Vec<Value> {
    let r = d.post(
        "/segments/preview",
        &t.key,
        json!({"filter": {"attribute": {"name": name, "op": "equals", "value": value}},
               "sample_size": 100}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["sample"].as_array().unwrap().clone()
}

fn track(d: &Daemon, t: &Tenant, body: Value) {
    let r = d.post("/users/track", &t.key, body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["errors"], json!([]), "{}", r.body);
}

/// Which profile an email finds (the most recently updated holder) is the
/// same after a crash, whether the order was in the snapshot or the log
/// tail; the email index comes back from the attributes.
#[test]
fn email_lookups_and_braze_ids_survive_a_crash() {
    let home = Home::new();
    let d = home.start();
    let t = d.tenant("acme", &[]);
    track(
        &d,
        &t,
        json!({"attributes": [{"external_id": "u1", "email": "x@example.com"},
                              {"external_id": "u2", "email": "X@example.com"},
                              {"external_id": "u1", "seen": 1},
                              {"phone": "+4790000000", "plan": "lead"}]}),
    );
    d.snapshot();
    track(
        &d,
        &t,
        json!({"attributes": [{"email": "only@example.com", "plan": "lead"}]}),
    );
    let leads = listed_with(&d, &t, "plan", json!("lead"));
    drop(d.kill9());
    let d = home.start();
    assert_eq!(listed_with(&d, &t, "plan", json!("lead")), leads);
    track(
        &d,
        &t,
        json!({"attributes": [{"email": "X@EXAMPLE.COM", "hit": 1},
                              {"email": "ONLY@example.com", "hit": 2},
                              {"phone": "+4790000000", "hit": 3}]}),
    );
    assert_eq!(
        listed_with(&d, &t, "hit", json!(1))[0]["external_id"],
        "u1",
        "u1 was updated last before the snapshot"
    );
    assert_eq!(
        listed_with(&d, &t, "hit", json!(2))[0]["email"],
        "ONLY@example.com",
        "the email-only profile, its attribute as sent last"
    );
    assert_eq!(
        listed_with(&d, &t, "hit", json!(3))[0]["phone"],
        "+4790000000"
    );
    // Now u2 is updated last, in the log tail only.
    track(
        &d,
        &t,
        json!({"attributes": [{"external_id": "u2", "seen": 2}]}),
    );
    drop(d.kill9());
    let d = home.start();
    track(
        &d,
        &t,
        json!({"attributes": [{"email": "x@example.com", "hit": 4}]}),
    );
    assert_eq!(listed_with(&d, &t, "hit", json!(4))[0]["external_id"], "u2");
}

/// A profile created after a snapshot and dropped by restoring it leaves
/// its braze_id behind: the next profile gets a new one.
#[test]
fn a_restore_never_gives_a_braze_id_out_twice() {
    let home = Home::new();
    let d = home.start();
    let t = d.tenant("acme", &[]);
    track(
        &d,
        &t,
        json!({"attributes": [{"external_id": "u1", "plan": "a"}]}),
    );
    let snap = d.snapshot();
    track(
        &d,
        &t,
        json!({"attributes": [{"external_id": "u2", "plan": "b"}]}),
    );
    let dropped = listed_with(&d, &t, "plan", json!("b"))[0]["braze_id"].clone();
    let r = d.post(
        "/admin/restore",
        ADMIN,
        json!({ "snapshot_id": snap["snapshot_id"] }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(listed_with(&d, &t, "plan", json!("b")).is_empty());
    track(
        &d,
        &t,
        json!({"attributes": [{"external_id": "u3", "plan": "c"}]}),
    );
    let fresh = listed_with(&d, &t, "plan", json!("c"))[0]["braze_id"].clone();
    assert_ne!(fresh, dropped);
    // And the same after replaying the logged restore.
    drop(d.kill9());
    let d = home.start();
    assert_eq!(
        listed_with(&d, &t, "plan", json!("c"))[0]["braze_id"],
        fresh
    );
    let r = d.post(
        "/users/track",
        &t.key,
        json!({"attributes": [{"braze_id": dropped, "x": 1}]}),
    );
    assert_eq!(r.body["attributes_processed"], 0, "{}", r.body);
}
