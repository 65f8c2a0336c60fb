//! The profile store's indexes rebuilt in process, without HTTP or disk:
//! what a restart spends after decoding a snapshot (`ProfileStore::
//! from_image`: the id indexes and the column index, built in parts on
//! every core), then counts on the rebuilt store, each checked against a
//! naive count over the same rows.
//!
//! Then a snapshot, both ways a restart can meet it, side by side on the
//! same store: format 7 with the column index stored, and the same image
//! with the index left out (what a snapshot of format 6 or older gives:
//! loading rebuilds it). Each is written as the server writes one
//! (`snapshot::write_streamed` into a temp dir: encoded as it goes,
//! fsynced) and loaded as a restart does (`snapshot::load`, then
//! `schema::decode_image` and `ProfileStore::from_image`), each step
//! timed; the counts are asked again of the store loaded with the stored
//! index.
//!
//! ```sh
//! cargo bench --bench columns                                # 1M profiles, ~20 s
//! cargo bench --bench columns -- --profiles 10000000         # ~3 min, ~8 GiB
//! ```
//!
//! The profiles are the segments bench's (`common/dataset.rs`): 20
//! attributes and 5 event names. Times are wall-clock on this machine's
//! cores; the rebuild is timed once (it is seconds long), each count
//! `--reps` times.

#[path = "common/dataset.rs"]
mod dataset;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohortd::engine::state::{Image, WorkspaceImage};
use cohortd::keys::KeyHash;
use cohortd::model::{Uid, WorkspaceId};
use cohortd::persist::schema;
use cohortd::persist::snapshot::{self, SnapshotInfo};
use cohortd::profiles::{
    AttrObject, AttrValue, Attrs, Details, EventStats, Events, Profile, ProfileImage, ProfileStore,
};
use cohortd::segment;
use compact_str::CompactString;
use serde_json::{json, Map, Value};

use dataset::profile;

/// The server's allocator (`src/main.rs`), so the rebuild costs what a
/// restart's does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    profiles: u32,
    reps: usize,
    seed: u64,
}

fn args() -> Args {
    let mut a = Args {
        profiles: 1_000_000,
        reps: 20,
        // The segments bench's default: the same profiles and counts.
        seed: 11,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--profiles" => a.profiles = value().parse().expect("--profiles N"),
            "--reps" => a.reps = value().parse().expect("--reps N"),
            "--seed" => a.seed = value().parse().expect("--seed N"),
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A `/users/track` attribute value as the store holds it.
fn attr_value(v: &Value) -> AttrValue {
    match v {
        Value::String(s) => AttrValue::from_text(s),
        Value::Number(n) => AttrValue::Num(n.as_f64().expect("a finite number")),
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Array(items) => AttrValue::Array(
            items
                .iter()
                .map(|i| i.as_str().expect("string items").into())
                .collect(),
        ),
        other => panic!("the dataset has no {other}"),
    }
}

/// The dataset's profile `i` as the store holds it.
fn stored(seed: u64, n: u32, i: u32) -> (Profile, Map<String, Value>) {
    let p = profile(seed, n, i);
    let attrs: AttrObject = p
        .attrs
        .iter()
        .filter(|(k, _)| *k != "external_id")
        .map(|(k, v)| (CompactString::from(k.as_str()), attr_value(v)))
        .collect();
    let mut events: BTreeMap<CompactString, EventStats> = BTreeMap::new();
    for (name, at) in &p.events {
        events
            .entry((*name).into())
            .and_modify(|s| s.record(*at))
            .or_insert(EventStats {
                count: 1,
                first: *at,
                last: *at,
            });
    }
    let details = Details {
        aliases: Vec::new(),
        devices: Vec::new(),
        attributes: Attrs::from_map(&attrs),
        events: Events::from_map(&events),
    };
    let external_id = p.attrs["external_id"].as_str().map(CompactString::from);
    (Profile::from_parts(external_id, Some(details)), p.row)
}

/// A filter, and the same predicate over a dataset row.
struct Case {
    name: &'static str,
    filter: Value,
    naive: fn(&Map<String, Value>) -> bool,
}

fn text_is(row: &Map<String, Value>, k: &str, v: &str) -> bool {
    row.get(k).and_then(Value::as_str) == Some(v)
}

fn num(row: &Map<String, Value>, k: &str) -> Option<f64> {
    row.get(k).and_then(Value::as_f64)
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "equals, string (card. 5)",
            filter: json!({"attribute": {"name": "plan", "op": "equals", "value": "gold"}}),
            naive: |r| text_is(r, "plan", "gold"),
        },
        Case {
            name: "less_than, number (float)",
            filter: json!({"attribute": {"name": "score", "op": "less_than", "value": 250.5}}),
            naive: |r| num(r, "score").is_some_and(|s| s < 250.5),
        },
        Case {
            name: "greater_than, time",
            filter: json!({"attribute": {"name": "signed_up_at", "op": "greater_than",
                                         "value": "2025-06-01T00:00:00Z"}}),
            // 2025-06-01T00:00:00Z in epoch ms.
            naive: |r| num(r, "signed_up_at").is_some_and(|t| t > 1_748_736_000_000.0),
        },
        Case {
            name: "6-leaf and/or/not mix",
            filter: json!({"and": [
                {"or": [{"attribute": {"name": "plan", "op": "equals", "value": "gold"}},
                        {"attribute": {"name": "is_premium", "op": "equals", "value": true}}]},
                {"not": {"attribute": {"name": "country", "op": "equals", "value": "C03"}}},
                {"event": {"name": "open", "op": "more_than", "count": 1}},
                {"or": [{"attribute": {"name": "tags", "op": "includes_value", "value": "t3"}},
                        {"attribute": {"name": "age", "op": "less_than", "value": 30}}]}]}),
            naive: |r| {
                (text_is(r, "plan", "gold") || r.get("is_premium") == Some(&json!(true)))
                    && !text_is(r, "country", "C03")
                    && num(r, "ev_open_n").is_some_and(|n| n > 1.0)
                    && (r
                        .get("tags")
                        .and_then(Value::as_array)
                        .is_some_and(|t| t.contains(&json!("t3")))
                        || num(r, "age").is_some_and(|a| a < 30.0))
            },
        },
    ]
}

fn main() {
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        eprintln!("CI=true: the columns bench does not run in CI");
        return;
    }
    let a = args();
    let n = a.profiles;
    let cases = cases();

    let started = Instant::now();
    let mut expected = vec![0u64; cases.len()];
    let image = ProfileImage::from_profiles(
        n,
        (0..n).map(|i| {
            let (p, row) = stored(a.seed, n, i);
            for (c, e) in cases.iter().zip(expected.iter_mut()) {
                *e += u64::from((c.naive)(&row));
            }
            (i as Uid, p)
        }),
    )
    .expect("ascending ids below the bound");
    eprintln!(
        "generated and packed {n} profiles in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let store = ProfileStore::from_image(image);
    let rebuild = t.elapsed();

    println!(
        "\n## The profile store's indexes in process, {n} profiles, {} reps\n",
        a.reps
    );
    println!(
        "Rebuilding every index (`ProfileStore::from_image`, {} threads): {:.2} s.\n",
        std::thread::available_parallelism().map_or(1, |c| c.get().min(8)),
        rebuild.as_secs_f64()
    );
    counts(&store, &cases, &expected, a.reps);

    // A snapshot with the index stored, written and read back as the
    // server does (streamed to a file in a temp dir, fsynced; read whole,
    // checksummed, decoded); the store goes before it is loaded again, so
    // that two stores are never held at once.
    let dir = tempfile::tempdir().expect("a temp dir");
    let (with, write_with) = write(store.image(), dir.path(), 1);
    drop(store);
    let (loaded, load_with) = load(&with.path);
    std::fs::remove_file(&with.path).expect("remove");
    println!("\nThe same counts, on the store loaded with its stored index:\n");
    counts(&loaded, &cases, &expected, a.reps);
    let (without, write_without) = write(loaded.image().without_columns(), dir.path(), 2);
    drop(loaded);
    let (_, load_without) = load(&without.path);
    println!(
        "\n| snapshot | bytes | write s (encode, disk, fsync) | read s | decode s | build the store s | read + decode + build s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (what, len, w, [r, dec, build]) in [
        (
            "format 7, column index stored",
            with.bytes,
            write_with,
            load_with,
        ),
        (
            "format 7, index left out (as format 6 and older load)",
            without.bytes,
            write_without,
            load_without,
        ),
    ] {
        println!(
            "| {what} | {len} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            w.as_secs_f64(),
            r.as_secs_f64(),
            dec.as_secs_f64(),
            build.as_secs_f64(),
            (r + dec + build).as_secs_f64()
        );
    }
}

/// A one-workspace snapshot of `profiles` written to `dir` as the server
/// writes one, and the time it took.
fn write(profiles: ProfileImage, dir: &std::path::Path, position: u64) -> (SnapshotInfo, Duration) {
    let image = Image {
        next_workspace: 2,
        workspaces: vec![WorkspaceImage {
            id: WorkspaceId(1),
            name: "bench".into(),
            created_at: 0,
            rest_key: KeyHash::of("bench"),
            profiles,
            import_keys: Vec::new(),
            segments: Vec::new(),
            last_segment: 0,
            cohorts: Vec::new(),
            connectors: Vec::new(),
        }],
        limits: None,
    };
    let t = Instant::now();
    let info = snapshot::write_streamed(dir, position, 0, schema::SNAPSHOT_VERSION, |w| {
        schema::encode_image_into(&image, w).map_err(std::io::Error::other)
    })
    .expect("write");
    (info, t.elapsed())
}

/// The store a snapshot file describes, and the times reading it,
/// decoding it and then building the store took.
fn load(path: &std::path::Path) -> (ProfileStore, [Duration; 3]) {
    let t = Instant::now();
    let (_, bytes) = snapshot::load(path).expect("read");
    let read = t.elapsed();
    let mut image = schema::decode_image(schema::SNAPSHOT_VERSION, &bytes).expect("decode");
    drop(bytes);
    let decoded = t.elapsed() - read;
    let store = ProfileStore::from_image(image.workspaces.remove(0).profiles);
    (store, [read, decoded, t.elapsed() - read - decoded])
}

/// Asks every case `reps` times, prints a table, and fails on a count
/// that differs from the naive one.
fn counts(store: &ProfileStore, cases: &[Case], expected: &[u64], reps: usize) {
    let cohorts: BTreeMap<cohortd::model::CohortKey, _> = BTreeMap::new();
    println!("| filter | count | naive count | p50 µs | min µs |");
    println!("| --- | --- | --- | --- | --- |");
    let mut mismatches = 0;
    for (c, want) in cases.iter().zip(expected) {
        let f = segment::parse(&c.filter, &|_| true).expect("a valid filter");
        let mut us = Vec::new();
        let mut got = 0;
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            got = segment::count(&f, store, &cohorts);
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        us.sort_by(f64::total_cmp);
        if got != *want {
            mismatches += 1;
        }
        println!(
            "| {} | {got} | {want} | {:.1} | {:.1} |",
            c.name,
            us[us.len() / 2],
            us[0]
        );
    }
    assert_eq!(mismatches, 0, "counts disagree with the naive ones");
}
