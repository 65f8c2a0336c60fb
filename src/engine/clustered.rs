//! Cluster mode's engine side (issue 14, docs/cluster.md): the engine's
//! log is one JetStream stream per shard, and every node applies every
//! shard, as its leader (lanes appending through the shard's writer) or
//! as a follower (a tail replaying the stream through the router).
//!
//! What this module owns:
//!
//! - **Positions.** A record's position is `(sequence << 10) | shard`
//!   ([`position`]): the same on every node, increasing within a shard,
//!   unique across shards. It is what feed event ids, `apply::After` and
//!   `X-Cohortd-Sequence` are made of, and a read's
//!   `X-Cohortd-Min-Sequence` names its shard by itself.
//! - **The record framing** in a stream ([`frame`]): the log format
//!   version, the control dependency, then the `persist::schema` record,
//!   so a node of a later version reads records of an earlier one.
//! - **Commands that span workspaces** (creating one, the limits in force)
//!   go to shard 0's stream, led like any shard. A record of another shard
//!   carries the shard-0 sequence its leader had applied when it appended
//!   it (the *control dependency*); a follower applies it only once it has
//!   applied shard 0 that far, so a workspace's first write never applies
//!   before the workspace exists, on any node.
//! - **Sides.** Each shard's role (`cluster::leadership`) decides its
//!   side, one task per shard ([`Clustered::run_shard`]):
//!   - becoming leader: the tail stops, the node catches up to the
//!     stream's last sequence, and a writer starts after what it applied;
//!   - leading: the lanes append through the writer and report each
//!     position back once applied ([`Clustered::settled`]);
//!   - losing the lease, or the writer ending (fenced, or JetStream
//!     without quorum): appends are refused at once, the records in
//!     flight settle, and a tail starts after the last one stored and
//!     applied, so a record whose answer was lost but which was stored
//!     after all is applied here too, as everywhere.
//! - **Applied sequences** per shard, which `X-Cohortd-Min-Sequence`
//!   waits on and `GET /cluster` reports.
//!
//! Built on these: snapshot sets, their bootstrap and restore
//! (`shard_snapshots`, `router::RestoreShard`), and connectors delivered
//! by their shard's leader (`connector::shared`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::Addr;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use super::log::Appended;
use super::router::{Replay, Router};
use crate::cluster::jet::Jet;
use crate::cluster::leadership::{Leadership, Role};
use crate::cluster::log::{Record, ShardLog};
use crate::cluster::tail::{Apply, Tail};
use crate::cluster::writer::ShardWriter;
use crate::cluster::{self, shard_of};
use crate::config::ClusterConfig;
use crate::error::Error;
use crate::model::WorkspaceId;
use crate::persist::schema;

/// What one HTTP request learned from the engine about its writes, for
/// the HTTP layer (`http::cluster`): the position of its last write
/// (`X-Cohortd-Sequence`), and the leader to forward it to when this node
/// does not lead its shard.
#[derive(Clone, Debug, Default)]
pub struct Routed {
    pub written: Option<u64>,
    pub leader: Option<String>,
}

tokio::task_local! {
    /// Set by the HTTP layer around a request in cluster mode.
    pub static ROUTED: std::cell::RefCell<Routed>;
}

/// Records, for the request being served (if any), a write's position or
/// the leader its write must go to.
pub fn note(f: impl FnOnce(&mut Routed)) {
    let _ = ROUTED.try_with(|r| f(&mut r.borrow_mut()));
}

/// Passes `e` on, noting first, when it is [`Error::NotLeader`] naming a
/// leader, that the request is to be forwarded there (`http::cluster`).
pub fn forward_to_leader(e: Error) -> Error {
    if let Error::NotLeader {
        leader: Some(url), ..
    } = &e
    {
        note(|r| r.leader = Some(url.clone()));
    }
    e
}

/// Bits of a position that name the shard (so at most 1024 shards).
pub const SHARD_BITS: u32 = 10;

/// The shard whose stream takes the commands that span workspaces.
pub const CONTROL: u32 = 0;

/// How long a node waits for JetStream when it starts.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// How often a shard's task looks at its writer between role changes.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// How often a shard's task reads its stream's last sequence (the lag
/// `/metrics` reports).
const LAG_EVERY: Duration = Duration::from_secs(1);

/// How long stepping down waits for the records in flight to settle (a
/// writer resolves each within JetStream's request timeout).
const SETTLE_PATIENCE: Duration = Duration::from_secs(15);

/// Runs `f` until it succeeds or [`CONNECT_PATIENCE`] is spent (a
/// JetStream cluster that is starting, or busy placing replicas, times
/// out for a while): what a node does at start-up.
pub async fn patiently<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "{what} not ready; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The position of shard `shard`'s record `sequence`.
pub fn position(shard: u32, sequence: u64) -> u64 {
    (sequence << SHARD_BITS) | u64::from(shard)
}

/// A position's shard and sequence.
pub fn split(position: u64) -> (u32, u64) {
    (
        (position & ((1 << SHARD_BITS) - 1)) as u32,
        position >> SHARD_BITS,
    )
}

/// Bytes before the schema record in a stream record.
const HEADER: usize = 12;

/// A stream record: format version (u32 LE), control dependency (u64 LE),
/// then the `persist::schema` record of that version.
pub fn frame(version: u32, control: u64, record: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER + record.len());
    b.put_u32_le(version);
    b.put_u64_le(control);
    b.put_slice(record);
    b.freeze()
}

/// [`frame`]'s parts, or why the bytes are not a record.
pub fn unframe(payload: &[u8]) -> Result<(u32, u64, &[u8]), String> {
    if payload.len() < HEADER {
        return Err(format!("a record of {} bytes has no header", payload.len()));
    }
    let version = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
    let control = u64::from_le_bytes(payload[4..HEADER].try_into().expect("8 bytes"));
    Ok((version, control, &payload[HEADER..]))
}

/// Which records of a shard this node has applied.
#[derive(Default)]
struct Progress {
    /// Every record up to here is applied, or failed and was not stored.
    settled: u64,
    /// Settled records after a gap (a leader's lanes finish out of order
    /// across workspaces).
    ahead: BTreeSet<u64>,
    /// The last record known stored and applied.
    last_ok: u64,
}

enum Side {
    Leading { writer: ShardWriter, term: u64 },
    Other,
}

struct Shard {
    index: u32,
    log: ShardLog,
    side: Mutex<Side>,
    progress: Mutex<Progress>,
    /// `progress.settled`, for waiters.
    applied: watch::Sender<u64>,
    /// The leader's URL as last seen (this node's own when it leads).
    leader: Mutex<Option<(String, String)>>,
    /// The stream's last sequence, as last read (for the lag).
    stream_last: AtomicU64,
    /// The stream's first sequence still held, as last read (trimmed up
    /// to the second-newest snapshot set: `shard_snapshots`).
    stream_first: AtomicU64,
    /// Held while a batch of the tail applies, from before its task is
    /// spawned: stopping a tail waits for it, so no batch is left half
    /// applied or applied after the node started leading.
    applying: Arc<tokio::sync::Mutex<()>>,
}

impl Shard {
    fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Reads the stream's last sequence (kept as it was if JetStream does
    /// not answer within two seconds).
    async fn refresh_stream_last(&self) {
        if let Ok(Ok((first, last))) =
            tokio::time::timeout(Duration::from_secs(2), self.log.bounds()).await
        {
            self.stream_first.store(first, Ordering::Relaxed);
            self.stream_last.store(last, Ordering::Relaxed);
        }
    }

    /// Everything up to `sequence` is applied (a tail's batch, or a
    /// leader caught up).
    fn applied_through(&self, sequence: u64) {
        let mut p = self.progress.lock();
        p.settled = sequence;
        p.last_ok = sequence;
        p.ahead.clear();
        self.applied.send_replace(sequence);
    }
}

/// This node's part of the cluster.
pub struct Clustered {
    config: ClusterConfig,
    jet: Jet,
    shards: Vec<Shard>,
    router: OnceLock<Addr<Router>>,
    leadership: Mutex<Option<Leadership>>,
    /// Run each time this node starts leading the control shard.
    on_control_lead: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Run each time this node starts or stops leading a shard.
    on_side_change: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// One shard as `GET /cluster` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ShardStatus {
    pub shard: u32,
    /// The node leading it (`null`: none right now).
    pub leader: Option<String>,
    /// The last sequence this node applied.
    pub applied_sequence: u64,
    /// Records stored in the stream that this node has not applied yet.
    pub lag: u64,
    /// The first record the stream still holds: the ones before it were
    /// trimmed, being in the second-newest snapshot set.
    pub first_sequence: u64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub node_id: String,
    pub shards: Vec<ShardStatus>,
}

impl Clustered {
    /// Connects to JetStream and opens every shard's stream (creating
    /// them on a new cluster).
    pub async fn connect(config: &ClusterConfig) -> Result<Arc<Clustered>, cluster::Error> {
        let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
        let jet = Jet::connect(config, CONNECT_PATIENCE).await?;
        let mut shards = Vec::with_capacity(config.shards as usize);
        for index in 0..config.shards {
            // A JetStream cluster that is still electing its leaders (all
            // servers starting together) times out: try again until the
            // patience is spent.
            let log = loop {
                match ShardLog::open(&jet, index).await {
                    Ok(log) => break log,
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::info!(shard = index, error = %e, "shard stream not ready; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            shards.push(Shard {
                index,
                log,
                side: Mutex::new(Side::Other),
                progress: Mutex::new(Progress::default()),
                applied: watch::channel(0).0,
                leader: Mutex::new(None),
                stream_last: AtomicU64::new(0),
                stream_first: AtomicU64::new(0),
                applying: Arc::default(),
            });
        }
        Ok(Arc::new(Clustered {
            config: config.clone(),
            jet,
            shards,
            router: OnceLock::new(),
            leadership: Mutex::new(None),
            on_control_lead: OnceLock::new(),
            on_side_change: OnceLock::new(),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// The shard a command belongs to (`None`: one that spans workspaces).
    pub fn shard_of(&self, ws: Option<WorkspaceId>) -> u32 {
        ws.map_or(CONTROL, |ws| shard_of(ws, self.config.shards))
    }

    /// What to run each time this node starts leading the control shard
    /// (set once, before [`start`](Self::start)).
    pub fn on_control_lead(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_control_lead.set(Box::new(f));
    }

    /// What to run each time this node starts or stops leading a shard
    /// (set once, before [`start`](Self::start)): its connectors follow.
    pub fn on_side_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_side_change.set(Box::new(f));
    }

    fn side_changed(&self) {
        if let Some(f) = self.on_side_change.get() {
            f();
        }
    }

    /// [`wait_leads`](Self::wait_leads) for shard `index`.
    pub async fn wait_leads_shard(&self, index: u32) -> Result<(), Error> {
        let shard = self
            .shards
            .get(index as usize)
            .ok_or(Error::NotFound("shard"))?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.lease_ttl_millis);
        loop {
            if matches!(*shard.side.lock(), Side::Leading { .. }) {
                return Ok(());
            }
            match self.not_leader(shard) {
                Error::NotLeader { leader: None, .. } if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                e => return Err(e),
            }
        }
    }

    /// The sequence of shard `index` this node has applied.
    pub fn applied(&self, index: u32) -> u64 {
        self.shards.get(index as usize).map_or(0, Shard::applied)
    }

    /// Whether this node leads workspace `ws`'s shard now.
    pub fn leads(&self, ws: WorkspaceId) -> bool {
        self.check_leads(Some(ws)).is_ok()
    }

    /// Follows every shard from the start of its stream, takes part in
    /// leadership, and resolves once every shard is applied up to the
    /// last sequence its stream had when this was called.
    pub async fn start(self: &Arc<Self>, router: Addr<Router>) -> Result<(), cluster::Error> {
        let _ = self.router.set(router);
        let mut lasts = Vec::with_capacity(self.shards.len());
        for s in &self.shards {
            lasts.push(s.log.last_sequence().await?);
        }
        let leadership = Leadership::start(
            &self.jet,
            self.config.shards,
            &self.config.node_id,
            &self.config.advertise_url,
            Duration::from_millis(self.config.lease_ttl_millis),
        )
        .await?;
        let roles: Vec<_> = (0..self.config.shards)
            .map(|i| leadership.watch(i))
            .collect();
        *self.leadership.lock() = Some(leadership);
        for (index, roles) in roles.into_iter().enumerate() {
            tokio::spawn(self.clone().run_shard(index as u32, roles));
        }
        for (s, last) in self.shards.iter().zip(lasts) {
            let mut applied = s.applied.subscribe();
            let _ = applied.wait_for(|a| *a >= last).await;
        }
        tracing::info!(
            node = %self.config.node_id,
            shards = self.config.shards,
            "caught up with every shard's stream"
        );
        Ok(())
    }

    /// Gives up this node's leases (a clean stop).
    pub async fn stop(&self) {
        let leadership = self.leadership.lock().take();
        if let Some(l) = leadership {
            l.stop().await;
        }
    }

    /// Refuses, before anything is done, a write this node cannot append:
    /// [`Error::NotLeader`] names the leader to forward it to.
    pub fn check_leads(&self, ws: Option<WorkspaceId>) -> Result<(), Error> {
        let shard = &self.shards[self.shard_of(ws) as usize];
        if matches!(*shard.side.lock(), Side::Leading { .. }) {
            return Ok(());
        }
        Err(self.not_leader(shard))
    }

    /// [`check_leads`](Self::check_leads), waiting up to a lease TTL
    /// while no node is known to lead the shard (an election, or this
    /// node catching up before it leads), so a write during a hand-over
    /// is taken or forwarded rather than refused.
    pub async fn wait_leads(&self, ws: Option<WorkspaceId>) -> Result<(), Error> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.lease_ttl_millis);
        loop {
            match self.check_leads(ws) {
                Err(Error::NotLeader { leader: None, .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    fn not_leader(&self, shard: &Shard) -> Error {
        let leader = shard.leader.lock().clone();
        Error::NotLeader {
            shard: shard.index,
            leader: leader
                .filter(|(node, _)| *node != self.config.node_id)
                .map(|(_, url)| url),
        }
    }

    /// Queues `record` (a `persist::schema` record of the current version)
    /// on the command's shard, through this node's writer.
    pub fn append(&self, ws: Option<WorkspaceId>, record: Vec<u8>) -> Result<Appended, Error> {
        self.append_to(self.shard_of(ws), record)
    }

    /// [`append`](Self::append) to shard `index`'s stream (a shard's
    /// restore: `router::RestoreShard`).
    pub fn append_to(&self, index: u32, record: Vec<u8>) -> Result<Appended, Error> {
        let shard = &self.shards[index as usize];
        let control = if index == CONTROL {
            0
        } else {
            self.shards[CONTROL as usize].applied()
        };
        let side = shard.side.lock();
        let Side::Leading { writer, .. } = &*side else {
            return Err(self.not_leader(shard));
        };
        let appended = writer
            .append(frame(schema::LOG_VERSION, control, &record))
            .map_err(|e| {
                tracing::warn!(shard = index, error = %e, "shard append refused");
                Error::Unavailable(super::log::LOG_FAILED.into())
            })?;
        Ok(Appended {
            position: position(index, appended.sequence),
            durable: super::log::durable(appended.durable, "the shard writer stopped"),
        })
    }

    /// The leader side's report: the record at `position` is applied
    /// (`ok`) or was not stored.
    pub fn settled(&self, position: u64, ok: bool) {
        let (index, sequence) = split(position);
        let Some(shard) = self.shards.get(index as usize) else {
            return;
        };
        let mut p = shard.progress.lock();
        if sequence <= p.settled {
            return;
        }
        if ok {
            p.last_ok = p.last_ok.max(sequence);
        }
        p.ahead.insert(sequence);
        while p.ahead.first() == Some(&(p.settled + 1)) {
            p.ahead.pop_first();
            p.settled += 1;
        }
        shard.applied.send_replace(p.settled);
    }

    /// Waits until this node has applied the record at `position`, up to
    /// `timeout`; whether it has.
    pub async fn wait_applied(&self, position: u64, timeout: Duration) -> bool {
        let (index, sequence) = split(position);
        let Some(shard) = self.shards.get(index as usize) else {
            return false;
        };
        let mut rx = shard.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= sequence))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Every shard: its leader, what this node applied, and its lag
    /// behind the stream (read now; the last known value if JetStream does
    /// not answer).
    pub async fn status(&self) -> ClusterStatus {
        for s in &self.shards {
            s.refresh_stream_last().await;
        }
        ClusterStatus {
            node_id: self.config.node_id.clone(),
            shards: self.shards_now(),
        }
    }

    /// Whether this node's reads may be stale: a shard has no leader it
    /// knows of. Leases live in JetStream, so that is what a node sees
    /// when JetStream has no quorum or cannot be reached (its streams may
    /// hold writes it has not applied), and, for a moment, during an
    /// election.
    pub fn may_be_stale(&self) -> bool {
        self.shards.iter().any(|s| s.leader.lock().is_none())
    }

    /// Every shard as last seen, without asking JetStream (`/metrics`:
    /// the streams' last sequences are read about once a second).
    pub fn shards_now(&self) -> Vec<ShardStatus> {
        self.shards
            .iter()
            .map(|s| {
                let applied = s.applied();
                ShardStatus {
                    shard: s.index,
                    leader: s.leader.lock().as_ref().map(|(node, _)| node.clone()),
                    applied_sequence: applied,
                    lag: s
                        .stream_last
                        .load(Ordering::Relaxed)
                        .saturating_sub(applied),
                    first_sequence: s.stream_first.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Holds every shard's tail between two batches, for a snapshot's
    /// cut (`shard_snapshots`): while the guards live, no follower side
    /// applies anything. Taken from the last shard down to the control
    /// shard: a batch of shard `k` may wait for shard 0 to apply further
    /// (its control dependency), which shard 0's tail can do until its
    /// own guard is taken, last, once no other shard's batch runs.
    pub async fn hold_tails(&self) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut held = Vec::with_capacity(self.shards.len());
        for s in self.shards.iter().rev() {
            held.push(s.applying.clone().lock_owned().await);
        }
        held
    }

    /// Every shard's sequence such that this node's state is exactly the
    /// streams' records up to them: a snapshot's cut. Called with the
    /// tails held ([`hold_tails`](Self::hold_tails)) and every lane
    /// drained, so nothing is being applied; a leader's records after
    /// the last stored one failed and were not applied (a writer ends at
    /// its first refusal), so the cut is the last record stored and
    /// applied.
    pub fn cut_sequences(&self) -> Result<Vec<u64>, Error> {
        self.shards
            .iter()
            .map(|s| {
                let p = s.progress.lock();
                if p.ahead.is_empty() && p.last_ok <= p.settled {
                    Ok(p.last_ok)
                } else {
                    Err(Error::Unavailable(format!(
                        "shard {} is applying out of order; no consistent cut now, retry",
                        s.index
                    )))
                }
            })
            .collect()
    }

    /// Starts every shard from a snapshot's sequences (before
    /// [`start`](Self::start): the tails then read after them).
    pub fn start_from(&self, sequences: &[u64]) {
        for (s, &sequence) in self.shards.iter().zip(sequences) {
            s.applied_through(sequence);
        }
    }

    /// Whether this node leads the control shard now (it takes the
    /// cluster's snapshots).
    pub fn leads_control(&self) -> bool {
        self.check_leads(None).is_ok()
    }

    /// The shard's stream (snapshots read its bounds and trim it).
    pub fn shard_log(&self, shard: u32) -> &ShardLog {
        &self.shards[shard as usize].log
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.config.lease_ttl_millis)
    }

    pub fn shard_count(&self) -> u32 {
        self.config.shards
    }

    pub fn jet(&self) -> &Jet {
        &self.jet
    }

    /// One shard's side, following its role until the node stops.
    async fn run_shard(self: Arc<Self>, index: u32, mut roles: watch::Receiver<Role>) {
        let shard = &self.shards[index as usize];
        let mut tail = Some(self.start_tail(index, shard.applied()));
        let mut last_read = std::time::Instant::now();
        loop {
            if last_read.elapsed() >= LAG_EVERY {
                shard.refresh_stream_last().await;
                last_read = std::time::Instant::now();
            }
            let role = roles.borrow_and_update().clone();
            let (leading, ended) = match &*shard.side.lock() {
                Side::Leading { writer, term } => (Some(*term), writer.ended()),
                Side::Other => (None, None),
            };
            match (&role, leading) {
                (Role::Leader { term }, None) => {
                    if let Some(t) = tail.take() {
                        self.stop_tail(index, t).await;
                    }
                    match self.lead(index, *term).await {
                        Ok(()) if index == CONTROL => {
                            if let Some(f) = self.on_control_lead.get() {
                                f();
                            }
                            self.side_changed();
                        }
                        Ok(()) => self.side_changed(),
                        Err(e) => {
                            tracing::warn!(shard = index, error = %e, "cannot take the lead yet");
                            tail = Some(self.start_tail(index, shard.applied()));
                        }
                    }
                }
                (Role::Leader { term }, Some(led)) if ended.is_some() || *term != led => {
                    tracing::warn!(
                        shard = index,
                        error = ?ended,
                        "the shard's writer ended; stepping down to catch up"
                    );
                    tail = Some(self.step_down(index).await);
                }
                (Role::Follower { .. } | Role::Unknown, Some(_)) => {
                    tracing::info!(shard = index, role = ?role, "no longer leading the shard");
                    tail = Some(self.step_down(index).await);
                }
                _ => {}
            }
            // Who to send writes to: this node only once its writer runs
            // (not while it catches up), another as its lease says.
            let leads = matches!(*shard.side.lock(), Side::Leading { .. });
            *shard.leader.lock() = match &role {
                Role::Leader { .. } if leads => Some((
                    self.config.node_id.clone(),
                    self.config.advertise_url.clone(),
                )),
                Role::Follower { holder } => Some((holder.node_id.clone(), holder.url.clone())),
                _ => None,
            };
            tokio::select! {
                changed = roles.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
        if let Some(t) = tail {
            self.stop_tail(index, t).await;
        }
    }

    /// Catches up with the shard's stream, then starts its writer.
    async fn lead(self: &Arc<Self>, index: u32, term: u64) -> Result<(), cluster::Error> {
        let shard = &self.shards[index as usize];
        let last = shard.log.last_sequence().await?;
        if last > shard.applied() {
            let t = self.start_tail(index, shard.applied());
            let mut rx = shard.applied.subscribe();
            let caught = tokio::time::timeout(SETTLE_PATIENCE, rx.wait_for(|a| *a >= last))
                .await
                .is_ok_and(|r| r.is_ok());
            self.stop_tail(index, t).await;
            if !caught {
                return Err(cluster::Error::Unavailable(format!(
                    "shard {index}: could not catch up to sequence {last}"
                )));
            }
        }
        let after = shard.applied();
        shard.applied_through(after);
        *shard.side.lock() = Side::Leading {
            writer: ShardWriter::start(shard.log.clone(), after, term),
            term,
        };
        tracing::info!(shard = index, term, after, "leading the shard");
        Ok(())
    }

    /// Stops appending, lets the records in flight settle, and follows
    /// the stream from the last record stored and applied.
    async fn step_down(self: &Arc<Self>, index: u32) -> Tail {
        let shard = &self.shards[index as usize];
        let writer = match std::mem::replace(&mut *shard.side.lock(), Side::Other) {
            Side::Leading { writer, .. } => writer,
            Side::Other => return self.start_tail(index, shard.applied()),
        };
        // Its connectors stop now, not once the records in flight settle.
        self.side_changed();
        let last = writer.last_sequence();
        let mut rx = shard.applied.subscribe();
        if tokio::time::timeout(SETTLE_PATIENCE, rx.wait_for(|a| *a >= last))
            .await
            .is_err()
        {
            tracing::warn!(
                shard = index,
                last,
                "records in flight did not settle in time"
            );
        }
        drop(writer);
        let after = shard.progress.lock().last_ok;
        shard.applied_through(after);
        self.start_tail(index, after)
    }

    fn start_tail(self: &Arc<Self>, index: u32, after: u64) -> Tail {
        let me = self.clone();
        let apply: Apply = Box::new(move |records: Vec<Record>| {
            let me = me.clone();
            Box::pin(async move {
                let guard = me.shards[index as usize]
                    .applying
                    .clone()
                    .lock_owned()
                    .await;
                // Its own task, holding the guard: stopping the tail never
                // cuts a batch short.
                let applying =
                    tokio::spawn(async move { me.apply_records(index, records, guard).await });
                let _ = applying.await;
            })
        });
        Tail::start(self.shards[index as usize].log.clone(), after, apply)
    }

    async fn stop_tail(&self, index: u32, tail: Tail) {
        tail.stop().await;
        // A batch handed over before the stop finishes applying.
        let _ = self.shards[index as usize].applying.lock().await;
    }

    /// Applies a tail's batch through the router's replay (the path
    /// start-up uses), after shard 0's records it depends on.
    async fn apply_records(
        &self,
        index: u32,
        records: Vec<Record>,
        _applying: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let shard = &self.shards[index as usize];
        let Some(last) = records.last().map(|r| r.sequence) else {
            return;
        };
        if last <= shard.applied() {
            return;
        }
        let mut batch = Vec::with_capacity(records.len());
        let mut control = 0;
        for r in records.iter().filter(|r| r.sequence > shard.applied()) {
            let decoded = unframe(&r.payload).and_then(|(version, dep, body)| {
                schema::decode_record(version, body)
                    .map(|cmd| (dep, cmd))
                    .map_err(|e| e.to_string())
            });
            match decoded {
                Ok((dep, cmd)) => {
                    control = control.max(dep);
                    batch.push((position(index, r.sequence), cmd));
                }
                Err(e) => {
                    // Never skipped: what follows may depend on it. The
                    // shard stops here, and its lag says so.
                    tracing::error!(
                        shard = index,
                        sequence = r.sequence,
                        error = %e,
                        "a shard record cannot be decoded by this build; the shard stops here"
                    );
                    std::future::pending::<()>().await;
                }
            }
        }
        if index != CONTROL && control > 0 {
            let mut rx = self.shards[CONTROL as usize].applied.subscribe();
            let _ = rx.wait_for(|a| *a >= control).await;
        }
        let Some(router) = self.router.get() else {
            return;
        };
        let (reply, answered) = oneshot::channel();
        router.do_send(Replay {
            records: batch,
            reply,
        });
        match answered.await {
            Ok(pending) => {
                if let Err(e) = pending.await {
                    tracing::error!(shard = index, error = %e, "a shard batch failed to apply");
                }
            }
            Err(_) => return,
        }
        shard.applied_through(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_name_their_shard_and_sequence() {
        assert_eq!(position(3, 7), (7 << 10) | 3);
        assert_eq!(split(position(3, 7)), (3, 7));
        assert_eq!(
            split(position(1023, u64::MAX >> 10)),
            (1023, u64::MAX >> 10)
        );
        // Within a shard, positions grow with the sequence.
        assert!(position(5, 2) > position(5, 1));
    }

    #[test]
    fn records_are_framed_with_their_version_and_dependency() {
        let f = frame(8, 42, b"abc");
        assert_eq!(unframe(&f).unwrap(), (8, 42, &b"abc"[..]));
        assert!(unframe(b"short").is_err());
    }
}
