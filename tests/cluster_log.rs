//! Cluster mode's footing (issue 14), against a real 3-server JetStream
//! cluster on loopback (`common/nats.rs`): shard leases taken, renewed and
//! taken over by compare-and-set; a deposed leader's appends refused by
//! the stream; appends going on with one NATS server down, refused
//! without a quorum, and going on again when it is back; reads in order.

#[allow(dead_code)]
#[path = "common/nats.rs"]
mod nats;

use std::time::Duration;

use bytes::Bytes;
use cohortd::cluster::jet::Jet;
use cohortd::cluster::leadership::{Leadership, Role};
use cohortd::cluster::lease::{Lease, State};
use cohortd::cluster::log::Record;
use cohortd::cluster::log::ShardLog;
use cohortd::cluster::snapshots::SnapshotStore;
use cohortd::cluster::tail::{Apply, Tail};
use cohortd::cluster::writer::ShardWriter;
use cohortd::cluster::Error;
use cohortd::config::ClusterConfig;
use futures_util::StreamExt;
use nats::NatsCluster;

fn config(urls: Vec<String>, node: &str) -> ClusterConfig {
    ClusterConfig {
        node_id: node.into(),
        advertise_url: format!("http://127.0.0.1/{node}"),
        nats_urls: urls,
        shards: 4,
        replicas: 3,
        lease_ttl_millis: 1000,
    }
}

async fn connect(c: &NatsCluster, node: &str) -> Jet {
    Jet::connect(&config(c.urls(), node), Duration::from_secs(10))
        .await
        .expect("connects")
}

/// Every record of `log` after `after`, up to sequence `through`.
async fn records(log: &ShardLog, after: u64, through: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    if through <= after {
        return out;
    }
    let mut read = Box::pin(log.read(after).await.expect("reader"));
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(10), read.next()).await {
        let r = r.expect("record");
        out.push((r.sequence, r.payload.to_vec()));
        if r.sequence >= through {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_taken_once_renewed_and_taken_over_only_after_its_ttl() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let (a, b) = (connect(&cluster, "a").await, connect(&cluster, "b").await);
    let ttl = Duration::from_millis(1000);
    let mut la = Lease::new(a.leases().await.unwrap(), 0, "a", "http://a", ttl);
    let mut lb = Lease::new(b.leases().await.unwrap(), 0, "b", "http://b", ttl);

    assert_eq!(la.step().await.unwrap(), State::Leader { term: 1 });
    assert!(la.is_leader());
    let State::Follower { holder } = lb.step().await.unwrap() else {
        panic!("b must follow a")
    };
    assert_eq!((holder.node_id.as_str(), holder.term), ("a", 1));

    // While a renews, b never takes over, however long it watches.
    for _ in 0..8 {
        tokio::time::sleep(la.interval()).await;
        assert_eq!(la.step().await.unwrap(), State::Leader { term: 1 });
        assert!(matches!(lb.step().await.unwrap(), State::Follower { .. }));
    }

    // a stops renewing (paused): it stops counting itself leader after the
    // TTL, and b takes over only once a's revision stood still that long.
    let paused = std::time::Instant::now();
    let mut took = None;
    while took.is_none() {
        match lb.step().await.unwrap() {
            State::Leader { term } => took = Some(term),
            State::Follower { .. } => tokio::time::sleep(lb.interval()).await,
            other => panic!("b: {other:?}"),
        }
    }
    assert!(paused.elapsed() >= ttl, "taken over before the TTL");
    assert_eq!(took, Some(2));
    assert!(!la.is_leader(), "a's last renewal is older than the TTL");

    // a wakes up: its renewal is refused, and it learns who holds it.
    let State::Deposed { holder } = la.step().await.unwrap() else {
        panic!("a must be deposed")
    };
    assert_eq!(holder.map(|h| (h.node_id, h.term)), Some(("b".into(), 2)));
    assert!(matches!(la.step().await.unwrap(), State::Follower { .. }));

    // A clean release hands it over at once, as the next term.
    lb.release().await.unwrap();
    assert!(matches!(lb.step_with(false).await.unwrap(), State::Vacant));
    assert_eq!(la.step().await.unwrap(), State::Leader { term: 3 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_append_is_refused_by_the_stream() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let (a, b) = (connect(&cluster, "a").await, connect(&cluster, "b").await);
    let la = ShardLog::open(&a, 1).await.unwrap();
    let lb = ShardLog::open(&b, 1).await.unwrap();
    assert_eq!(la.last_sequence().await.unwrap(), 0);

    // a leads: three appends, pipelined (each expects the one before).
    let sent = futures_util::future::join_all(
        (0..3u64).map(|i| la.append(Bytes::from(format!("a{i}")), i, 1)),
    )
    .await;
    let seqs: Vec<u64> = sent.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);

    // b takes over: it catches up to the stream's last sequence, appends.
    let last = lb.last_sequence().await.unwrap();
    assert_eq!(last, 3);
    assert_eq!(
        lb.append(Bytes::from_static(b"b0"), last, 2).await.unwrap(),
        4
    );

    // a, deposed but unaware, appends after what it knows: refused.
    match la.append(Bytes::from_static(b"a3"), 3, 1).await {
        Err(Error::Fenced { expected: 3 }) => {}
        other => panic!("a's stale append: {other:?}"),
    }
    let got = records(&lb, 0, 4).await;
    let want: Vec<(u64, Vec<u8>)> = [(1, "a0"), (2, "a1"), (3, "a2"), (4, "b0")]
        .into_iter()
        .map(|(s, p)| (s, p.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want, "in order, nothing of a's after b's");
    // A reader from the middle starts there.
    assert_eq!(records(&la, 2, 4).await, want[2..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_one_nats_server_down_and_stop_without_a_quorum() {
    if !nats::available() {
        return;
    }
    let mut cluster = NatsCluster::start(3);
    let jet = connect(&cluster, "a").await;
    let log = ShardLog::open(&jet, 2).await.unwrap();
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut last = 0;
    // Appends until one is acknowledged (a stream re-electing its leader
    // may refuse a few meanwhile); returns how many were refused.
    async fn append_until_acked(
        log: &ShardLog,
        last: &mut u64,
        acked: &mut Vec<(u64, Vec<u8>)>,
        tag: &str,
    ) -> usize {
        let mut refused = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let payload = format!("{tag}-{}", acked.len()).into_bytes();
            match log.append(Bytes::from(payload.clone()), *last, 1).await {
                Ok(seq) => {
                    *last = seq;
                    acked.push((seq, payload));
                    return refused;
                }
                Err(Error::Unavailable(_)) | Err(Error::Fenced { .. }) => {
                    refused += 1;
                    // What the stream has now: a refused append may have
                    // been stored after all (its ack lost).
                    if let Ok(l) = log.last_sequence().await {
                        *last = l;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{tag}: never acknowledged"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{tag}: {e}"),
            }
        }
    }
    for _ in 0..5 {
        append_until_acked(&log, &mut last, &mut acked, "all up").await;
    }
    cluster.kill(0);
    for _ in 0..5 {
        append_until_acked(&log, &mut last, &mut acked, "one down").await;
    }
    cluster.kill(1);
    // No quorum: refused, as unavailable, within the request timeout.
    let started = std::time::Instant::now();
    match log.append(Bytes::from_static(b"no quorum"), last, 1).await {
        Err(Error::Unavailable(_)) => {}
        other => panic!("without a quorum: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    cluster.start_node(0);
    cluster.start_node(1);
    cluster.wait_ready();
    for _ in 0..5 {
        append_until_acked(&log, &mut last, &mut acked, "back").await;
    }
    // Every acknowledged append is there, at its sequence, in order; the
    // only others are appends whose ack was lost (none of ours was both
    // acknowledged and lost).
    let stored = records(&log, 0, last).await;
    assert_eq!(stored.last().map(|r| r.0), Some(last));
    for (seq, payload) in &acked {
        assert!(
            stored.iter().any(|(s, p)| s == seq && p == payload),
            "acknowledged {seq} missing"
        );
    }
    let seqs: Vec<u64> = stored.iter().map(|r| r.0).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stores_records_in_the_order_it_handed_out_sequences() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let jet = connect(&cluster, "a").await;
    let log = ShardLog::open(&jet, 3).await.unwrap();
    let writer = std::sync::Arc::new(ShardWriter::start(log.clone(), 0, 1));
    // Four tasks appending at once: each record's sequence is the one
    // `append` handed out, and the stream holds it there.
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let w = writer.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..250 {
                    let payload = format!("t{t}-{i}");
                    let a = w.append(Bytes::from(payload.clone())).expect("append");
                    mine.push((a.sequence, payload, a));
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                let mut out = Vec::new();
                for (seq, payload, a) in mine {
                    assert_eq!(a.wait().await.expect("stored"), seq);
                    out.push((seq, payload.into_bytes()));
                }
                out
            })
        })
        .collect();
    let mut handed: Vec<(u64, Vec<u8>)> = Vec::new();
    for t in tasks {
        handed.extend(t.await.unwrap());
    }
    handed.sort();
    assert_eq!(handed.len(), 1000);
    assert!(handed
        .iter()
        .enumerate()
        .all(|(i, (s, _))| *s == i as u64 + 1));
    assert_eq!(records(&log, 0, 1000).await, handed);
    assert_eq!(writer.last_sequence(), 1000);
    assert!(writer.ended().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_ends_at_its_first_refusal_and_fails_everything_after_it() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let (a, b) = (connect(&cluster, "a").await, connect(&cluster, "b").await);
    let (la, lb) = (
        ShardLog::open(&a, 0).await.unwrap(),
        ShardLog::open(&b, 0).await.unwrap(),
    );
    let wa = ShardWriter::start(la.clone(), 0, 1);
    for i in 0..10 {
        let seq = wa
            .append(Bytes::from(format!("a{i}")))
            .unwrap()
            .wait()
            .await;
        assert_eq!(seq.unwrap(), i + 1);
    }
    // b takes over after the stream's last sequence and appends.
    let wb = ShardWriter::start(lb.clone(), lb.last_sequence().await.unwrap(), 2);
    assert_eq!(
        wb.append(Bytes::from_static(b"b0"))
            .unwrap()
            .wait()
            .await
            .unwrap(),
        11
    );
    // a, unaware, appends five more: the first is fenced, and so is every
    // one after it; then a's writer refuses appends at once.
    let pending: Vec<_> = (0..5)
        .map(|i| wa.append(Bytes::from(format!("late{i}"))).expect("queued"))
        .collect();
    for p in pending {
        match p.wait().await {
            Err(e) if matches!(*e, Error::Fenced { .. }) => {}
            other => panic!("a's late append: {other:?}"),
        }
    }
    assert!(matches!(wa.ended().as_deref(), Some(Error::Fenced { .. })));
    assert!(wa.append(Bytes::from_static(b"after")).is_err());
    // The stream: a's ten, then b's, and nothing of a's after.
    let stored = records(&lb, 0, 11).await;
    assert_eq!(stored.len(), 11);
    assert_eq!(stored[10], (11, b"b0".to_vec()));
    assert_eq!(lb.last_sequence().await.unwrap(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_applies_in_order_from_where_it_left_and_says_how_far_it_got() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let (a, b) = (connect(&cluster, "a").await, connect(&cluster, "b").await);
    let writer = ShardWriter::start(ShardLog::open(&a, 1).await.unwrap(), 0, 1);
    let append_all = |from: u64, to: u64| {
        let pending: Vec<_> = (from..to)
            .map(|i| writer.append(Bytes::from(format!("r{i}"))).unwrap())
            .collect();
        async move {
            for p in pending {
                p.wait().await.expect("stored");
            }
        }
    };
    append_all(1, 301).await;

    // A follower on another connection applies in batches, slowly.
    type Seen = std::sync::Arc<parking_lot::Mutex<Vec<(u64, Vec<u8>)>>>;
    let seen = Seen::default();
    let apply = |seen: Seen| -> Apply {
        Box::new(move |batch: Vec<Record>| {
            let seen = seen.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                seen.lock()
                    .extend(batch.into_iter().map(|r| (r.sequence, r.payload.to_vec())));
            })
        })
    };
    let log_b = ShardLog::open(&b, 1).await.unwrap();
    let tail = Tail::start(log_b.clone(), 0, apply(seen.clone()));
    assert!(tail.wait_applied(300, Duration::from_secs(20)).await);
    {
        // Applied means handed over and done: every record up to it is in.
        let seen = seen.lock();
        assert!(seen.len() >= 300);
        let want: Vec<(u64, Vec<u8>)> = (1..=300)
            .map(|i| (i, format!("r{i}").into_bytes()))
            .collect();
        assert_eq!(seen[..300], want[..]);
    }
    // New records reach it as they are stored.
    append_all(301, 401).await;
    assert!(tail.wait_applied(400, Duration::from_secs(20)).await);
    assert!(!tail.wait_applied(401, Duration::from_millis(300)).await);
    assert_eq!(tail.stop().await, 400);
    assert_eq!(seen.lock().len(), 400, "each record once");

    // Started again after 150: it hands over 151 on, nothing before.
    let again = Seen::default();
    let tail = Tail::start(log_b, 150, apply(again.clone()));
    assert!(tail.wait_applied(400, Duration::from_secs(20)).await);
    let again = again.lock();
    assert_eq!(again.first().map(|r| r.0), Some(151));
    assert_eq!(again.len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_go_to_the_object_store_and_come_back_verifiable() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let (a, b) = (connect(&cluster, "a").await, connect(&cluster, "b").await);
    let (sa, sb) = (
        SnapshotStore::open(&a).await.unwrap(),
        SnapshotStore::open(&b).await.unwrap(),
    );
    let here = tempfile::tempdir().unwrap();
    // Real snapshot files (several object chunks each), at four positions.
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut ids = Vec::new();
    for position in [10u64, 20, 30, 40] {
        let info = cohortd::persist::snapshot::write(
            here.path(),
            position,
            1_700_000_000_000,
            cohortd::persist::schema::SNAPSHOT_VERSION,
            &payload,
        )
        .unwrap();
        assert_eq!(sa.put(&info.id, &info.path).await.unwrap(), info.bytes);
        ids.push(info.id);
    }
    assert_eq!(
        sb.ids().await.unwrap(),
        ids,
        "the other node sees them, oldest first"
    );
    // A wiped node fetches the newest and loads it as a local snapshot.
    let there = tempfile::tempdir().unwrap();
    let newest = ids.last().unwrap();
    let path = there.path().join(format!("{newest}.snap"));
    sb.fetch(newest, &path).await.unwrap();
    let (info, bytes) = cohortd::persist::snapshot::load(&path).expect("verifies");
    assert_eq!((info.log_position, bytes), (40, payload));
    assert_eq!(
        std::fs::read_dir(there.path()).unwrap().count(),
        1,
        "no temp file left"
    );
    // Pruned to the newest two.
    assert_eq!(sa.prune(2).await.unwrap(), 2);
    assert_eq!(sb.ids().await.unwrap(), ids[2..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_trimmed_before_a_sequence_keeps_the_rest_in_order() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let jet = connect(&cluster, "a").await;
    let log = ShardLog::open(&jet, 2).await.unwrap();
    let writer = ShardWriter::start(log.clone(), 0, 1);
    let pending: Vec<_> = (1..=10)
        .map(|i| writer.append(Bytes::from(format!("r{i}"))).unwrap())
        .collect();
    for p in pending {
        p.wait().await.unwrap();
    }
    assert_eq!(log.trim_before(6).await.unwrap(), 5);
    assert_eq!(log.first_sequence().await.unwrap(), 6);
    assert_eq!(log.last_sequence().await.unwrap(), 10);
    let kept = records(&log, 5, 10).await;
    let want: Vec<(u64, Vec<u8>)> = (6..=10)
        .map(|i| (i, format!("r{i}").into_bytes()))
        .collect();
    assert_eq!(kept, want);
    // Appends go on after the trim.
    assert_eq!(
        writer
            .append(Bytes::from_static(b"r11"))
            .unwrap()
            .wait()
            .await
            .unwrap(),
        11
    );
}

/// Waits until `done` holds, checking every 100 ms, for up to `within`.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// How many of `shards` shards `l` leads.
fn leads(l: &Leadership, shards: u32) -> usize {
    (0..shards)
        .filter(|&s| matches!(l.role(s), Role::Leader { .. }))
        .count()
}

/// Every shard has exactly one leader among `nodes` (named), and every
/// other node follows that one.
fn one_leader_each(nodes: &[(&str, &Leadership)], shards: u32) -> bool {
    (0..shards).all(|s| {
        let leaders: Vec<&str> = nodes
            .iter()
            .filter(|(_, l)| matches!(l.role(s), Role::Leader { .. }))
            .map(|(n, _)| *n)
            .collect();
        leaders.len() == 1
            && nodes.iter().all(|(n, l)| match l.role(s) {
                Role::Leader { .. } => true,
                Role::Follower { holder } => holder.node_id == leaders[0] && *n != leaders[0],
                Role::Unknown => false,
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_led_once_spread_over_the_nodes_and_taken_over_when_one_goes() {
    if !nats::available() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let (a, b, c) = (
        connect(&cluster, "a").await,
        connect(&cluster, "b").await,
        connect(&cluster, "c").await,
    );
    let ttl = Duration::from_millis(1000);
    let long = Duration::from_secs(15);
    let la = Leadership::start(&a, 4, "a", "http://a", ttl)
        .await
        .unwrap();
    let lb = Leadership::start(&b, 4, "b", "http://b", ttl)
        .await
        .unwrap();
    // One leader per shard, two shards each.
    assert!(
        eventually(long, || one_leader_each(&[("a", &la), ("b", &lb)], 4)
            && leads(&la, 4) == 2
            && leads(&lb, 4) == 2)
        .await,
        "a leads {}, b leads {}",
        leads(&la, 4),
        leads(&lb, 4)
    );

    // A clean stop releases: b leads every shard within a TTL.
    let stopped = std::time::Instant::now();
    la.stop().await;
    assert!(eventually(long, || leads(&lb, 4) == 4).await);
    assert!(
        stopped.elapsed() < ttl * 2,
        "released shards are taken at once"
    );

    // c joins: b hands two shards over.
    let lc = Leadership::start(&c, 4, "c", "http://c", ttl)
        .await
        .unwrap();
    assert!(
        eventually(long, || one_leader_each(&[("b", &lb), ("c", &lc)], 4)
            && leads(&lb, 4) == 2
            && leads(&lc, 4) == 2)
        .await
    );
    let before: Vec<(bool, u64)> = (0..4)
        .map(|s| match (lb.role(s), lc.role(s)) {
            (Role::Leader { term }, _) => (true, term),
            (_, Role::Leader { term }) => (false, term),
            other => panic!("shard {s}: {other:?}"),
        })
        .collect();
    // b crashes (nothing released): c leads every shard once b's leases
    // expire, b's former shards with a higher term.
    let crashed = std::time::Instant::now();
    drop(lb);
    assert!(eventually(long, || leads(&lc, 4) == 4).await);
    assert!(crashed.elapsed() >= ttl - ttl / 3, "not before the TTL");
    for (s, (was_b, term)) in before.into_iter().enumerate() {
        match lc.role(s as u32) {
            Role::Leader { term: now } if was_b => assert!(now > term, "shard {s}"),
            Role::Leader { term: now } => assert_eq!(now, term, "shard {s}"),
            other => panic!("c, shard {s}: {other:?}"),
        }
    }
}
