//! The engine: the one thing the HTTP layer calls, through a typed API.
//!
//! `Engine` is a cheap `Clone` handle over the shared state, the
//! sequencers every write passes through (one lane per workspace, and the
//! router for what spans workspaces; see `lane` and `router`), the secrets
//! in force and the rate limiter.
//!
//! Writes: one method per operation (`create_workspace`, `apply_delta`,
//! `track`, `put_segment`, …), each taking domain types and returning the
//! type its caller renders. Inside, each builds a `Command` —
//! taking the time and generating keys where the command needs them, so a
//! logged command replays the same — and submits it to its sequencer,
//! which answers with an `Outcome` enum; `submit_as` is the one place that turns it into
//! the method's type (the `TryFrom<Outcome>` impls below), so a mismatch is
//! one `Internal` error written once, not a check repeated per handler.
//! `Command`, `Outcome` and the sequencers are private to this module: the wire
//! layer cannot build a log record, and the log format can change without
//! touching it.
//!
//! Reads go through `read` (methods on `Workspace`, plus the listings that
//! need the whole state or the secrets on `Engine`); they take the short
//! locks themselves and answer with plain values. The reads that evaluate
//! filters are `Engine` methods that run on `readpool` with a time budget.
//! `Workspace`'s fields are private to this module.
//!
//! Limits (`[limits]`): what a request alone can be judged by is checked
//! in the write methods below before a command is built (through the
//! module that owns the rule); what depends on the state is checked by
//! `apply` as the command applies, in log order.
//!
//! Writes are admitted through a bounded number of in-flight slots: when
//! all are taken the engine is saturated and the write is refused with 503
//! before anything is applied; a workspace may hold at most its share of
//! them (`engine.max_inflight_writes_per_workspace`, 503
//! `workspace_saturated` past it), so one tenant cannot take them all.
//! (An actix `send` to a full mailbox would instead wait, and a `do_send`
//! is unbounded; the slot counts are the explicit bound, and `do_send`
//! keeps the sequencer → cohort order intact.)

mod apply;
pub mod clustered;
pub mod cohort;
mod command;
mod lane;
mod log;
pub mod query;
pub mod ratelimit;
pub mod read;
pub mod readpool;
mod recovery;
mod router;
pub mod sequencer;
pub mod shard_snapshots;
pub mod snapshotter;
pub mod state;
pub mod tracking;
mod walks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use actix::{Actor, Addr, Arbiter};
use parking_lot::RwLock;
use tokio::sync::{oneshot, Semaphore};

use crate::config::Config;
use crate::connector::manager::Connectors;
pub use crate::connector::manager::Report as ConnectorReport;
use crate::connector::shared::SharedProgress;
use crate::error::{Error, Result, StartError};
use crate::feed::{EventType, Feeds};
use crate::keys::{self, KeyHash};
use crate::limits::{Exceeded, Limit};
use crate::metrics::Metrics;
use crate::model::{Change, CohortKey, Identifier, Millis, WorkspaceId};
use crate::persist::snapshot::{self, SnapshotInfo};
use crate::persist::wal::Wal;
use crate::profiles::commands::{
    self, AliasReport, Batch, DeleteReport, Identify, IdentifyReport, NewAliases, Objects, Report,
    Track, TrackReport,
};
use crate::secrets::Secrets;
use crate::segment::Filter;
use crate::time::now_millis;
use cohort::DeltaOutcome;
/// The mutation vocabulary, for `persist::schema` to log and replay; the
/// rest of the crate uses the typed methods of [`Engine`].
pub(crate) use command::Command;
use command::{Outcome, Submit};
use lane::Lanes;
use ratelimit::{RateLimiter, RateStatus};
use readpool::ReadPool;
use router::Router;
use snapshotter::{Snapshotter, TakeSnapshot, Wanted};
use state::{Connector, ImportKey, State, StateCell, Workspace};

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    secrets: Secrets,
    state: StateCell,
    /// Set once recovery has finished; until then every operation that
    /// needs it answers 503 "recovering".
    core: OnceLock<Core>,
    slots: Arc<Semaphore>,
    rate: RateLimiter,
    /// Where filter evaluation runs (`read`), off the HTTP workers.
    reads: ReadPool,
    ready: AtomicBool,
    metrics: Metrics,
}

/// What recovery builds: the actors, the log and the data dir lock.
struct Core {
    router: Addr<Router>,
    lanes: Arc<Lanes>,
    /// `None` in cluster mode, which takes sets of shard snapshots
    /// instead (`shard_snapshots`).
    snapshotter: Option<Addr<Snapshotter>>,
    shard_snapshots: Option<Arc<shard_snapshots::ShardSnapshots>>,
    wal: Arc<Wal>,
    /// Cluster mode: this node's part (`clustered`).
    cluster: Option<Arc<clustered::Clustered>>,
    feeds: Arc<Feeds>,
    connectors: Arc<Connectors>,
    _lock: recovery::DirLock,
    _arbiters: Vec<Arbiter>,
}

impl Engine {
    /// An engine that has not recovered yet: it answers readiness and
    /// health, and 503 "recovering" to everything else, until [`recover`]
    /// has run.
    ///
    /// [`recover`]: Engine::recover
    pub fn new(config: Config, secrets: Secrets) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.engine.max_inflight_writes)),
                rate: RateLimiter::new(config.rate_limit.requests, config.rate_limit.window_secs),
                reads: ReadPool::new(&config.reads),
                config,
                secrets,
                state: Arc::new(RwLock::new(Arc::new(State::default()))),
                core: OnceLock::new(),
                ready: AtomicBool::new(false),
                metrics: Metrics::new(),
            }),
        }
    }

    /// Recovers the state from the data dir (newest valid snapshot, then the
    /// log after it), then starts the router, the lanes' and the cohorts'
    /// arbiters and the
    /// snapshotter. Must run inside an actix `System`, once. Refuses to
    /// start when recovery cannot reach every acknowledged mutation.
    pub async fn recover(&self) -> Result<(), StartError> {
        let config = &self.inner.config;
        let mut recovered = recovery::open(config)?;
        // Cluster mode: the state is the shard streams', applied from
        // the newest snapshot set in the object store, or from their
        // start (docs/cluster.md); the data dir holds the lock, the sets'
        // local copies and the feeds, which replay writes again.
        let mut feed_seqs = Vec::new();
        let cluster = match &config.cluster {
            None => None,
            Some(cfg) => {
                if recovered.snapshot_position > 0 || recovered.log.last_position() > 0 {
                    return Err(StartError::Config(format!(
                        "data dir {} holds a single-node log or snapshot; cluster mode starts \
                         from the shard streams and would ignore it: start it with an empty \
                         data dir",
                        config.data_dir.display()
                    )));
                }
                let feed_dir = config.data_dir.join("feed");
                if feed_dir.exists() {
                    std::fs::remove_dir_all(&feed_dir).map_err(|source| StartError::DataDir {
                        dir: feed_dir.clone(),
                        source,
                    })?;
                }
                let c = clustered::Clustered::connect(cfg).await.map_err(|e| {
                    StartError::Runtime(format!("cluster mode cannot reach JetStream: {e}"))
                })?;
                let boot = clustered::patiently("the snapshot bucket", || {
                    shard_snapshots::bootstrap(&c, &config.data_dir)
                })
                .await;
                if let Some(boot) = boot.map_err(|e| {
                    StartError::Runtime(format!("cluster mode cannot bootstrap: {e}"))
                })? {
                    recovered.image = boot.image;
                    c.start_from(&boot.sequences);
                    feed_seqs = boot.feeds;
                }
                Some(c)
            }
        };
        let log = match &cluster {
            Some(c) => log::Log::Cluster(c.clone()),
            None => log::Log::Local(recovered.wal.clone()),
        };
        let arbiters = named_arbiters("cohortd-cohort", config.engine.cohort_arbiters);
        let lane_arbiters = named_arbiters("cohortd-lane", config.engine.sequencer_arbiters.max(1));
        let router_arbiter = named_arbiters("cohortd-router", 1).remove(0);
        let cell: StateCell = self.inner.state.clone();
        let feeds = Arc::new(Feeds::new(&config.data_dir, config.feed.feed_config()));
        // A node started from a snapshot set numbers its feeds' events on
        // from the set's (its feed directory was emptied above).
        for (ws, seq) in feed_seqs {
            feeds
                .start_after(ws, seq)
                .map_err(|e| StartError::Runtime(format!("cannot start the feed of {ws}: {e}")))?;
        }
        let applier = Arc::new(apply::Applier::new(
            cell,
            feeds.clone(),
            arbiters.iter().map(Arbiter::handle).collect(),
            config.engine.import_history_len,
            config.limits.clone(),
            recovered.image.limits,
        ));
        if let Some(c) = &cluster {
            applier.set_cluster_shards(c.shard_count());
        }
        let lanes = Arc::new(Lanes::new(
            lane_arbiters.iter().map(Arbiter::handle).collect(),
            applier.clone(),
            log.clone(),
            config.engine.max_inflight_writes_per_workspace,
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
        ));
        let (image_tx, image_rx) = oneshot::channel();
        let router = {
            let (applier, lanes, wal) = (applier.clone(), lanes.clone(), recovered.wal.clone());
            let dir = config.data_dir.clone();
            let image = recovered.image;
            let log = log.clone();
            Router::start_in_arbiter(&router_arbiter.handle(), move |_| {
                applier.install(image);
                let _ = image_tx.send(());
                Router::new(applier, lanes, log, wal, dir)
            })
        };
        image_rx
            .await
            .map_err(|_| StartError::Runtime("the router failed to start".into()))?;
        #[cfg(debug_assertions)]
        recovery::test_hold().await;
        let limits = Command::SetLimits(crate::limits::StateLimits::from_config(&config.limits));
        match &cluster {
            Some(c) => {
                // The limits go into the control shard's stream whenever
                // this node starts leading it (no record when in force).
                let (to, limits) = (router.clone(), limits.clone());
                // A node delivers the connectors of the shards it leads.
                let engine = Arc::downgrade(&self.inner);
                c.on_side_change(move || {
                    if let Some(inner) = engine.upgrade() {
                        let engine = Engine { inner };
                        tokio::spawn(async move {
                            if let Err(e) = engine.reconcile_connectors().await {
                                tracing::debug!(error = %e, "connectors not reconciled");
                            }
                        });
                    }
                });
                c.on_control_lead(move || {
                    let (reply, _) = oneshot::channel();
                    to.do_send(Submit {
                        cmd: limits.clone(),
                        reply,
                        logged_at: None,
                    });
                });
                c.start(router.clone()).await.map_err(|e| {
                    StartError::Runtime(format!("cluster mode cannot follow the shards: {e}"))
                })?;
            }
            None => {
                recovery::replay(&router, recovered.log, recovered.snapshot_position).await?;
                // Bring the configured state-dependent limits into force
                // through the log (no record when they already are):
                // replay after a crash then judges every write by the
                // limits it was acknowledged under.
                let (reply, logged) = oneshot::channel();
                router.do_send(Submit {
                    cmd: limits,
                    reply,
                    logged_at: None,
                });
                let limits_failed =
                    |e: String| StartError::Runtime(format!("cannot log the limits: {e}"));
                logged
                    .await
                    .map_err(|_| limits_failed("the router stopped".into()))?
                    .await
                    .map_err(|e| limits_failed(e.to_string()))?;
            }
        }
        // In a cluster, connectors share their progress (and run where
        // their shard is led: `reconcile_connectors`).
        let shared = match &cluster {
            None => None,
            Some(c) => Some(
                clustered::patiently("the connectors' bucket", || SharedProgress::open(c.jet()))
                    .await
                    .map_err(|e| {
                        StartError::Runtime(format!(
                            "cluster mode cannot share connector progress: {e}"
                        ))
                    })?,
            ),
        };
        let connectors = Arc::new(Connectors::new(
            &config.data_dir,
            config.connectors.delivery(),
            feeds.clone(),
            shared,
        ));
        let shard_snapshots = match &cluster {
            None => None,
            Some(c) => {
                let sets = clustered::patiently("the snapshot bucket", || {
                    shard_snapshots::ShardSnapshots::open(
                        router.clone(),
                        c.clone(),
                        feeds.clone(),
                        &config.data_dir,
                        config.snapshot.retain,
                    )
                })
                .await
                .map_err(|e| {
                    StartError::Runtime(format!("cluster mode cannot open its snapshots: {e}"))
                })?;
                if config.snapshot.interval_secs > 0 {
                    sets.every(std::time::Duration::from_secs(
                        config.snapshot.interval_secs,
                    ));
                }
                Some(sets)
            }
        };
        let snapshotter = cluster.is_none().then(|| {
            Snapshotter::new(
                router.clone(),
                recovered.wal.clone(),
                feeds.clone(),
                config.data_dir.clone(),
                config.snapshot.retain,
                config.snapshot.interval_secs,
            )
            .start()
        });
        let mut all = arbiters;
        all.extend(lane_arbiters);
        all.push(router_arbiter);
        let core = Core {
            router,
            lanes,
            snapshotter,
            shard_snapshots,
            wal: recovered.wal,
            cluster,
            feeds,
            connectors,
            _lock: recovered.lock,
            _arbiters: all,
        };
        self.inner
            .core
            .set(core)
            .map_err(|_| StartError::Runtime("the engine recovered twice".into()))?;
        self.reconcile_connectors()
            .await
            .map_err(|e| StartError::Runtime(format!("cannot start the connectors: {e}")))
    }

    /// Up to `limit` events of workspace `ws`'s feed after seq `after`, of
    /// the given types (`None`: all), and the cursor to go on from; when
    /// there are none yet, waits up to `wait` for one (a long poll). A
    /// cursor older than retention is [`Error::CursorExpired`].
    pub async fn read_feed(
        &self,
        ws: WorkspaceId,
        after: u64,
        limit: usize,
        types: Option<Vec<EventType>>,
        wait: std::time::Duration,
    ) -> Result<(Vec<crate::persist::feed::Stored>, u64)> {
        use crate::persist::feed::Read;
        let feed = self
            .core()?
            .feeds
            .feed(ws)
            .map_err(|e| Error::Internal(format!("opening the feed of {ws}: {e}")))?;
        // What was answered before this read is in it (up to a bound: a
        // feed that cannot be written does not hold reads forever).
        feed.settled(std::time::Duration::from_secs(5)).await;
        let deadline = tokio::time::Instant::now() + wait;
        let mut after = after;
        loop {
            // The files are read on the read pool, within the workspace's
            // share of it, never on the async workers.
            let (f, t) = (feed.clone(), types.clone());
            let read = self
                .pooled(ws, move |_| {
                    f.read(after, limit, t.as_deref()).map_err(|e| {
                        readpool::Stop::Error(Error::Internal(format!(
                            "reading the feed of {ws}: {e}"
                        )))
                    })
                })
                .await?;
            let (events, through) = match read {
                Read::Expired { oldest } => return Err(Error::CursorExpired { oldest }),
                Read::Events { events, through } => (events, through),
            };
            let now = tokio::time::Instant::now();
            if !events.is_empty() || now >= deadline {
                return Ok((events, through));
            }
            // Nothing (the filter may have passed some by): wait for more.
            after = through;
            feed.wait_after(after, deadline - now).await;
        }
    }

    /// The recovered engine, or 503 while it recovers.
    fn core(&self) -> Result<&Core> {
        self.inner.core.get().ok_or_else(|| {
            Error::Unavailable(
                "cohortd is recovering its data; retry once /readyz answers 200".into(),
            )
        })
    }

    /// Takes a snapshot now (the operator's button; the timer uses the same
    /// path). Resolves once the file is durable. A call made while a
    /// snapshot is being taken shares that one (see `snapshotter`).
    pub async fn snapshot(&self) -> Result<SnapshotInfo> {
        self.take_snapshot(Wanted::Any).await
    }

    async fn take_snapshot(&self, wanted: Wanted) -> Result<SnapshotInfo> {
        let (reply, rx) = oneshot::channel();
        let core = self.core()?;
        if let (Some(c), Some(sets)) = (&core.cluster, &core.shard_snapshots) {
            // The control shard's leader takes the cluster's sets.
            c.wait_leads(None)
                .await
                .map_err(clustered::forward_to_leader)?;
            return sets.take().await;
        }
        let Some(snapshotter) = &core.snapshotter else {
            return Err(Error::Internal("no snapshotter".into()));
        };
        snapshotter.do_send(TakeSnapshot {
            wanted,
            reply: Some(reply),
        });
        rx.await
            .map_err(|_| Error::Internal("snapshotter stopped".into()))?
    }

    /// The snapshots a restore or a start can use, newest first: on
    /// disk, or in a cluster the complete sets in the object store.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        match &self.core()?.shard_snapshots {
            Some(sets) => sets.list().await,
            None => self.snapshots(),
        }
    }

    /// Snapshots on disk, newest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        snapshot::list(&self.inner.config.data_dir).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Replaces the live state with a snapshot's. The restore goes through
    /// the log like any write (so a crash after it does not bring the old
    /// state back), then a fresh snapshot makes it the new starting point.
    ///
    /// In a cluster, `shard_at_leader` restores one shard at the node
    /// leading it (`POST /cluster/restore-shard` there, with the
    /// operator's token): see [`restore_set`](Self::restore_set).
    pub async fn restore(
        &self,
        snapshot_id: &str,
        shard_at_leader: impl Fn(String, serde_json::Value) -> Result<()> + Send + Sync + 'static,
    ) -> Result<SnapshotInfo> {
        if self.core()?.cluster.is_some() {
            return self
                .restore_set(snapshot_id, Arc::new(shard_at_leader))
                .await;
        }
        if !self.snapshots()?.iter().any(|s| s.id == snapshot_id) {
            return Err(Error::NotFound("snapshot"));
        }
        self.submit_as::<()>(Command::Restore {
            snapshot_id: snapshot_id.to_string(),
            format: 0,
            image: Vec::new(),
            keep_counters: true,
        })
        .await?;
        // The restored state has its own connectors.
        self.reconcile_connectors().await?;
        // The new starting point must contain the restore itself.
        self.take_snapshot(Wanted::AfterRequest).await
    }

    /// Cluster mode's restore of a snapshot set, run by the node leading
    /// the control shard: each shard is restored by its own leader, as a
    /// record in its own stream (`router::RestoreShard`), the other shards
    /// first and the control shard last; then a new set is taken, the new
    /// starting point. Workspaces created once the restore began are left
    /// alone. Each workspace is restored at once, so no answer about one
    /// workspace mixes states; an answer about several (a list of
    /// workspaces) may, while the restore runs. A restore that fails part
    /// way says which shards it restored; restoring again is safe.
    async fn restore_set(
        &self,
        id: &str,
        shard_at_leader: Arc<dyn Fn(String, serde_json::Value) -> Result<()> + Send + Sync>,
    ) -> Result<SnapshotInfo> {
        let core = self.core()?;
        let (Some(c), Some(sets)) = (&core.cluster, &core.shard_snapshots) else {
            return Err(Error::Internal("not a cluster".into()));
        };
        c.wait_leads(None)
            .await
            .map_err(clustered::forward_to_leader)?;
        // Every file there and whole before any shard is touched.
        sets.local_files(id).await?;
        let cutoff = self.state().next_workspace();
        let control_sequence = c.applied(clustered::CONTROL);
        let shards = c.shard_count();
        let mut done = Vec::new();
        // A step that was not taken (the leader it went to is gone or no
        // longer leads: `NotLeader`) is tried again at the leader of the
        // moment, for a while; one whose outcome is unknown is not.
        let patience = 2 * c.lease_ttl();
        for shard in (1..shards).chain([clustered::CONTROL]) {
            let deadline = tokio::time::Instant::now() + patience;
            let step = loop {
                let step = match c.wait_leads_shard(shard).await {
                    Ok(()) => self
                        .restore_shard(id, shard, cutoff, control_sequence)
                        .await
                        .map(drop),
                    Err(Error::NotLeader {
                        leader: Some(url), ..
                    }) => {
                        let body = serde_json::json!({"snapshot_id": id, "shard": shard,
                            "cutoff": cutoff, "control_sequence": control_sequence});
                        let call = shard_at_leader.clone();
                        tokio::task::spawn_blocking(move || call(url, body))
                            .await
                            .map_err(|e| Error::Internal(format!("restore call: {e}")))?
                    }
                    Err(e) => Err(e),
                };
                match step {
                    Err(Error::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    step => break step,
                }
            };
            if let Err(e) = step {
                tracing::error!(set = %id, shard, restored = ?done, error = %e, "restore stopped part way");
                return Err(Error::Unavailable(format!(
                    "the restore of {id} stopped at shard {shard} ({e}); shards {done:?} are \
                     restored: restore it again"
                )));
            }
            done.push(shard);
        }
        // (Each shard's leader reconciled its connectors as it restored.)
        sets.take().await
    }

    /// Cluster mode: restores shard `shard` from set `id` on this node,
    /// which must lead it (else [`Error::NotLeader`], which the HTTP layer
    /// forwards), once it has applied the control shard up to
    /// `control_sequence` (where the restore began: every workspace up to
    /// `cutoff` exists here then). The restore record's position.
    pub async fn restore_shard(
        &self,
        id: &str,
        shard: u32,
        cutoff: u32,
        control_sequence: u64,
    ) -> Result<u64> {
        let core = self.core()?;
        let (Some(c), Some(sets)) = (&core.cluster, &core.shard_snapshots) else {
            return Err(Error::NotFound("cluster (this node runs alone)"));
        };
        c.wait_leads_shard(shard)
            .await
            .map_err(clustered::forward_to_leader)?;
        let at = clustered::position(clustered::CONTROL, control_sequence);
        if !c.wait_applied(at, std::time::Duration::from_secs(5)).await {
            return Err(Error::Unavailable(format!(
                "this node has not applied the control shard to sequence {control_sequence} \
                 yet; retry"
            )));
        }
        let mut paths = sets.local_files(id).await?;
        if shard as usize >= paths.len() {
            return Err(Error::NotFound("shard"));
        }
        let path = paths.swap_remove(shard as usize);
        let (reply, rx) = oneshot::channel();
        core.router.do_send(router::RestoreShard {
            shard,
            set: id.to_string(),
            path,
            cutoff,
            reply,
        });
        let position = rx
            .await
            .map_err(|_| Error::Internal("router stopped".into()))??;
        clustered::note(|r| r.written = Some(position));
        self.reconcile_connectors().await?;
        Ok(position)
    }

    /// Shutdown: a final snapshot, then every queued log record synced.
    pub async fn shutdown(&self) -> Result<(), String> {
        let Some(core) = self.inner.core.get() else {
            return Ok(());
        };
        match &core.cluster {
            // The streams hold every acknowledged write; the leases go
            // now rather than by their TTL.
            Some(c) => c.stop().await,
            // It must cover every write acknowledged before the stop.
            None => {
                self.take_snapshot(Wanted::AfterRequest)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let connectors = core.connectors.clone();
        tokio::task::spawn_blocking(move || connectors.stop_all())
            .await
            .map_err(|e| e.to_string())?;
        let wal = core.wal.clone();
        tokio::task::spawn_blocking(move || wal.close())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs a read of workspace `ws` on the read pool (`readpool`), within
    /// that workspace's share of it, counting the ones it refuses or stops
    /// in `cohortd_rejected_requests_total`.
    async fn pooled<T: Send + 'static>(
        &self,
        ws: WorkspaceId,
        read: impl FnOnce(&crate::segment::Deadline) -> Result<T, readpool::Stop> + Send + 'static,
    ) -> Result<T> {
        let r = self.inner.reads.run(ws, read).await;
        match &r {
            Err(Error::ReadPoolBusy) => self.inner.metrics.reject("read_pool_busy"),
            Err(Error::ReadShareBusy(_)) => self.inner.metrics.reject("read_share_busy"),
            Err(Error::ReadBudgetExceeded(_)) => self.inner.metrics.reject("read_budget_exceeded"),
            _ => {}
        }
        r
    }

    /// `limits.string_bytes` for a string the engine stores outside
    /// profiles (cohort ids and names, segment names).
    fn check_string(&self, s: &str, what: &str) -> Result<(), Exceeded> {
        Exceeded::check(
            Limit::StringBytes,
            self.inner.config.limits.string_bytes,
            s.len(),
            || what.to_string(),
        )
    }

    /// The filter limits of `[limits]`, for `segment::parse_limited`.
    pub fn filter_limits(&self) -> crate::segment::FilterLimits {
        let l = &self.inner.config.limits;
        crate::segment::FilterLimits {
            leaves: l.filter_leaves,
            regex_leaves: l.filter_regex_leaves,
            regex_bytes: l.filter_regex_bytes,
        }
    }

    /// The current state (a restore swaps it whole).
    fn state(&self) -> Arc<State> {
        self.inner.state.read().clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Marks the engine ready (`/readyz` 200): called once it serves.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
        self.inner.metrics.ready.set(1);
    }

    /// Applies one mutation and resolves once it is visible to every read.
    /// A workspace's command goes to its lane, within the workspace's
    /// share of the in-flight writes; the others to the router.
    async fn submit(&self, cmd: Command) -> Result<Outcome> {
        let core = self.core()?;
        // Before taking a slot: waiting out a hand-over holds none.
        if let Some(c) = &core.cluster {
            c.wait_leads(cmd.workspace())
                .await
                .map_err(clustered::forward_to_leader)?;
        }
        let Ok(_slot) = self.inner.slots.clone().try_acquire_owned() else {
            self.inner.metrics.reject("saturated");
            return Err(Error::Saturated);
        };
        let (reply, rx) = oneshot::channel();
        let logged_at = core
            .cluster
            .is_some()
            .then(|| Arc::new(std::sync::atomic::AtomicU64::new(0)));
        let submit = Submit {
            cmd,
            reply,
            logged_at: logged_at.clone(),
        };
        let _ws_slot = match submit.cmd.workspace() {
            Some(ws) => {
                let lane = core.lanes.lane(ws);
                let Ok(slot) = lane.slots.try_acquire_owned() else {
                    self.inner.metrics.reject("workspace_saturated");
                    return Err(Error::WorkspaceSaturated(
                        self.inner.config.engine.max_inflight_writes_per_workspace,
                    ));
                };
                lane.addr.do_send(submit);
                Some(slot)
            }
            None => {
                core.router.do_send(submit);
                None
            }
        };
        let pending = rx
            .await
            .map_err(|_| Error::Internal("router stopped before replying".into()))?;
        let outcome = pending.await;
        if let Some(at) = logged_at {
            let position = at.load(Ordering::Acquire);
            if position > 0 {
                clustered::note(|r| r.written = Some(r.written.unwrap_or(0).max(position)));
            }
        }
        outcome
    }

    /// Cluster mode: this node's part, if it runs in one.
    pub fn cluster(&self) -> Option<Arc<clustered::Clustered>> {
        self.inner.core.get().and_then(|c| c.cluster.clone())
    }

    /// Waits (up to `timeout`) until this node has applied the write that
    /// answered `position` (`X-Cohortd-Min-Sequence`); whether it has. A
    /// single node applies a write before answering it: always true.
    pub async fn wait_applied(&self, position: u64, timeout: std::time::Duration) -> bool {
        match self.cluster() {
            Some(c) => c.wait_applied(position, timeout).await,
            None => true,
        }
    }

    /// [`submit`](Self::submit), answered as the type the caller expects:
    /// the one place an `Outcome` is checked against its command.
    async fn submit_as<T: TryFrom<Outcome, Error = Outcome>>(&self, cmd: Command) -> Result<T> {
        let outcome = self.submit(cmd).await?;
        T::try_from(outcome).map_err(|other| {
            Error::Internal(format!(
                "the router answered {other:?} where {} was expected",
                std::any::type_name::<T>()
            ))
        })
    }

    // ---- writes: one method per operation ----

    /// Creates a workspace and generates its REST API key, which is
    /// returned once and stored only as a hash.
    pub async fn create_workspace(&self, name: String) -> Result<NewWorkspace> {
        let rest_key = keys::generate("crk_");
        let id = self
            .submit_as(Command::CreateWorkspace {
                name,
                rest_key: KeyHash::of(&rest_key),
                at: now_millis(),
            })
            .await?;
        Ok(NewWorkspace { id, rest_key })
    }

    /// Generates a data import key (client secret) for a configured
    /// partner; the secret is returned once and stored only as a hash.
    pub async fn create_import_key(&self, ws: &Workspace, partner: &str) -> Result<NewImportKey> {
        self.known_partner(partner)?;
        let secret = keys::generate("cdik_");
        let key = ImportKey {
            key_id: keys::short_id(),
            partner: partner.into(),
            hash: KeyHash::of(&secret),
            masked: keys::mask(&secret),
            created_at: now_millis(),
        };
        let key_id = key.key_id.clone();
        self.submit_as::<()>(Command::CreateImportKey { ws: ws.id, key })
            .await?;
        Ok(NewImportKey { key_id, secret })
    }

    /// Invalidates one of a partner's data import keys (404 if the
    /// partner is not configured or the workspace has no such key).
    pub async fn revoke_import_key(
        &self,
        ws: &Workspace,
        partner: &str,
        key_id: &str,
    ) -> Result<()> {
        self.known_partner(partner)?;
        self.submit_as(Command::RevokeImportKey {
            ws: ws.id,
            partner: partner.into(),
            key_id: key_id.to_string(),
        })
        .await
    }

    /// Creates or renames a cohort (the partner's name call).
    pub async fn name_cohort(
        &self,
        ws: &Workspace,
        key: CohortKey,
        name: String,
        created_at: Millis,
    ) -> Result<()> {
        self.check_string(&key.cohort_id, "cohort_id")?;
        self.check_string(&name, "name")?;
        self.submit_as(Command::NameCohort {
            ws: ws.id,
            key,
            name,
            created_at,
            at: now_millis(),
        })
        .await
    }

    /// Applies a partner's delta to a cohort, counting matched and
    /// unmatched identifiers in the metrics.
    pub async fn apply_delta(
        &self,
        ws: &Workspace,
        key: CohortKey,
        changes: Vec<Change>,
    ) -> Result<DeltaOutcome> {
        self.check_string(&key.cohort_id, "cohort_id")?;
        let given = changes.iter().map(Change::id_count).sum::<usize>();
        let d: DeltaOutcome = self
            .submit_as(Command::ApplyDelta {
                ws: ws.id,
                key,
                changes,
                at: now_millis(),
            })
            .await?;
        let m = &self.inner.metrics;
        m.identifiers_unmatched.inc_by(d.unmatched);
        m.identifiers_matched
            .inc_by((given as u64).saturating_sub(d.unmatched));
        Ok(d)
    }

    /// `/users/track`: attributes, events and purchases. An object over a
    /// request limit is refused (reported, not applied), like the objects
    /// the parser refused; the others apply.
    pub async fn track(&self, ws: &Workspace, mut batch: Batch<Track>) -> Result<TrackReport> {
        commands::check_track(&mut batch, &self.inner.config.limits);
        self.submit_batch(batch, |track| Command::Track {
            ws: ws.id,
            track,
            at: Some(now_millis()),
        })
        .await
    }

    /// `/users/identify`: aliases and devices to identify (may merge).
    pub async fn identify(
        &self,
        ws: &Workspace,
        mut batch: Batch<Identify>,
    ) -> Result<IdentifyReport> {
        commands::check_identify(&mut batch, &self.inner.config.limits);
        self.submit_batch(batch, |identify| Command::Identify {
            ws: ws.id,
            identify,
            at: Some(now_millis()),
        })
        .await
    }

    /// `/users/alias/new`.
    pub async fn new_aliases(
        &self,
        ws: &Workspace,
        mut batch: Batch<NewAliases>,
    ) -> Result<AliasReport> {
        commands::check_new_aliases(&mut batch, &self.inner.config.limits);
        self.submit_batch(batch, |aliases| Command::NewAliases { ws: ws.id, aliases })
            .await
    }

    /// `/users/delete`: how many profiles were deleted.
    pub async fn delete_users(
        &self,
        ws: &Workspace,
        batch: Batch<Vec<Identifier>>,
    ) -> Result<DeleteReport> {
        self.submit_batch(batch, |ids| Command::DeleteUsers {
            ws: ws.id,
            ids,
            at: Some(now_millis()),
        })
        .await
    }

    /// The users API's one rule for partial batches: the objects left in
    /// the command apply as one command (one log record), and the
    /// report's errors — the refused objects' and the apply's — are
    /// numbered by their place in the request. A command with nothing
    /// left is neither logged nor applied.
    async fn submit_batch<C: Objects, R>(
        &self,
        batch: Batch<C>,
        command: impl FnOnce(C) -> Command,
    ) -> Result<R>
    where
        R: Report + TryFrom<Outcome, Error = Outcome>,
    {
        let (c, origins) = batch.split();
        let mut report = if c.is_empty() {
            R::default()
        } else {
            self.submit_as::<R>(command(c)).await?
        };
        let applied = std::mem::take(report.errors_mut());
        *report.errors_mut() = origins.resolve(applied);
        Ok(report)
    }

    /// Creates (`id: None`) or replaces a saved segment; its id.
    pub async fn put_segment(
        &self,
        ws: &Workspace,
        id: Option<u64>,
        name: String,
        filter: Filter,
    ) -> Result<u64> {
        self.check_string(&name, "name")?;
        self.submit_as(Command::PutSegment {
            ws: ws.id,
            id,
            name,
            filter,
        })
        .await
    }

    pub async fn delete_segment(&self, ws: &Workspace, id: u64) -> Result<()> {
        self.submit_as(Command::DeleteSegment { ws: ws.id, id })
            .await
    }

    /// `POST /connectors`: a custom HTTP connector (its id is made here),
    /// delivering from the workspace's next feed event on. At most
    /// `connectors.max_per_workspace` per workspace (checked as the
    /// request comes: two at once may both pass, by one).
    pub async fn create_connector(
        &self,
        ws: &Workspace,
        new: NewConnector,
    ) -> Result<Arc<Connector>> {
        self.check_string(&new.name, "name")?;
        let max = self.inner.config.connectors.max_per_workspace;
        Exceeded::check(
            Limit::ConnectorsPerWorkspace,
            max,
            ws.connectors_sorted().len() + 1,
            || "creating a connector".to_string(),
        )?;
        let core = self.core()?;
        let start_after = core
            .feeds
            .feed(ws.id)
            .map_err(|e| Error::Internal(format!("opening the feed of {}: {e}", ws.id)))?
            .newest();
        let connector = Connector {
            id: format!("conn_{}", hex::encode(rand::random::<[u8; 16]>())),
            name: new.name,
            url: new.url,
            bearer_token: new.bearer_token,
            event_types: new.event_types,
            created_at: now_millis(),
            start_after,
        };
        let id = connector.id.clone();
        self.submit_as::<()>(Command::PutConnector {
            ws: ws.id,
            connector,
        })
        .await?;
        self.reconcile_connectors().await?;
        ws.connector(&id)
            .ok_or_else(|| Error::Internal("a created connector is missing".into()))
    }

    /// `DELETE /connectors/{id}`: stops its delivery and forgets it (its
    /// events stay in the feed).
    pub async fn delete_connector(&self, ws: &Workspace, id: &str) -> Result<()> {
        if ws.connector(id).is_none() {
            return Err(Error::NotFound("connector"));
        }
        self.submit_as::<()>(Command::DeleteConnector {
            ws: ws.id,
            id: id.to_string(),
        })
        .await?;
        self.reconcile_connectors().await
    }

    /// Runs and stops connectors to match the state
    /// (`connector::manager`), off the async workers: starting one writes
    /// its progress file.
    async fn reconcile_connectors(&self) -> Result<()> {
        let core = self.core()?;
        let connectors = core.connectors.clone();
        let engine = self.clone();
        let cluster = core.cluster.clone();
        tokio::task::spawn_blocking(move || match cluster {
            None => connectors.reconcile(|| engine.state()),
            Some(c) => connectors.reconcile_where(|| engine.state(), |ws| c.leads(ws)),
        })
        .await
        .map_err(|e| Error::Internal(format!("starting or stopping connectors: {e}")))
    }

    /// A connector's delivery figures (`None`: no such connector).
    pub fn connector_report(&self, ws: &Workspace, id: &str) -> Result<Option<ConnectorReport>> {
        let Some(c) = ws.connector(id) else {
            return Ok(None);
        };
        Ok(self.core()?.connectors.report(ws.id, &c))
    }

    /// Every connector's figures, by workspace and id (operators).
    pub fn connector_reports(&self) -> Result<Vec<ConnectorReport>> {
        Ok(self.core()?.connectors.reports(&self.state()))
    }

    /// Writes admitted and not yet answered.
    pub fn inflight_writes(&self) -> usize {
        self.inner.config.engine.max_inflight_writes - self.inner.slots.available_permits()
    }

    // ---- authentication: the one place that decides who may do what ----

    pub fn is_admin(&self, token: &str) -> bool {
        self.inner.secrets.admin.matches(token)
    }

    pub fn workspace_for_key(&self, rest_key: &str) -> Option<Arc<Workspace>> {
        self.state().workspace_by_rest_key(rest_key)
    }

    pub fn is_partner(&self, partner: &str) -> bool {
        self.inner.secrets.partners.contains_key(partner)
    }

    pub fn partners(&self) -> impl Iterator<Item = &str> {
        self.inner.secrets.partners.keys().map(String::as_str)
    }

    fn known_partner(&self, partner: &str) -> Result<()> {
        if self.is_partner(partner) {
            Ok(())
        } else {
            Err(Error::NotFound("partner"))
        }
    }

    /// The partner endpoints' checks, in SPEC order: partner API key, then
    /// client secret, then that the secret belongs to this partner.
    pub fn authorize_partner(
        &self,
        partner: &str,
        api_key: Option<&str>,
        client_secret: Option<&str>,
    ) -> Result<Arc<Workspace>> {
        let stored = self
            .inner
            .secrets
            .partners
            .get(partner)
            .ok_or_else(|| Error::UnknownPartner(partner.to_string()))?;
        if !api_key.is_some_and(|k| stored.matches(k)) {
            return Err(Error::InvalidPartnerKey);
        }
        let secret = client_secret.ok_or(Error::InvalidClientSecret)?;
        let state = self.state();
        let owner = state
            .import_key_owner(secret)
            .ok_or(Error::InvalidClientSecret)?;
        if owner.partner != partner {
            return Err(Error::PartnerNotEnabled(secret.to_string()));
        }
        state
            .workspace(owner.workspace)
            .ok_or(Error::InvalidClientSecret)
    }

    /// Counts one partner request against its (workspace, partner) window.
    /// In a cluster, the node leading the workspace's shard counts it; a
    /// node that will forward it only looks.
    pub fn rate_hit(&self, ws: &Workspace, partner: &str) -> RateStatus {
        let now = u64::try_from(crate::time::now_millis() / 1000).unwrap_or(0);
        let forwards = self
            .cluster()
            .is_some_and(|c| c.check_leads(Some(ws.id)).is_err());
        let status = if forwards {
            self.inner.rate.peek(ws.id, partner, now)
        } else {
            self.inner.rate.hit(ws.id, partner, now)
        };
        if !status.allowed {
            self.inner.metrics.reject("rate_limited");
        }
        status
    }

    /// Refreshes the scrape-time gauges and renders `/metrics`.
    pub fn render_metrics(&self) -> String {
        let m = &self.inner.metrics;
        let (workspaces, profiles, cohorts, memberships) = self.state().totals();
        m.workspaces.set(workspaces as i64);
        m.profiles.set(profiles as i64);
        m.cohorts.set(cohorts as i64);
        m.memberships.set(memberships as i64);
        m.inflight_writes.set(self.inflight_writes() as i64);
        m.read_pool_busy.set(self.inner.reads.busy() as i64);
        let wal = self
            .inner
            .core
            .get()
            .map(|c| c.wal.stats())
            .unwrap_or_default();
        m.wal_records.set(wal.records as i64);
        m.wal_fsyncs.set(wal.fsyncs as i64);
        m.wal_io_errors.set(wal.io_errors as i64);
        if let Some(c) = self.inner.core.get() {
            let feed = c.feeds.stats();
            m.feed_events
                .set(feed.events.load(std::sync::atomic::Ordering::Relaxed) as i64);
            m.feed_write_errors
                .set(feed.write_errors.load(std::sync::atomic::Ordering::Relaxed) as i64);
            m.connectors.clear();
            // Each node counts what it delivers.
            for r in c
                .connectors
                .reports(&self.state())
                .into_iter()
                .filter(|r| r.delivering)
            {
                let labels = crate::metrics::ConnectorLabels {
                    workspace: r.workspace.to_string(),
                    connector: r.connector.id.clone(),
                };
                m.connectors.set(
                    &labels,
                    crate::metrics::ConnectorFigures {
                        sent: r.status.sent,
                        failed: r.status.failed,
                        lag_events: r.lag_events,
                        lag_seconds: r.lag_seconds,
                        disabled: r.status.state == crate::connector::deliver::State::Disabled,
                    },
                );
            }
        }
        if let Some(cluster) = self.cluster() {
            for s in cluster.shards_now() {
                let leads = s.leader.as_deref() == Some(cluster.node_id());
                m.shards.set(s.shard, s.applied_sequence, s.lag, leads);
            }
        }
        m.render()
    }
}

/// `n` arbiters whose threads are named `{name}` (see `threads::name_current`).
fn named_arbiters(name: &'static str, n: usize) -> Vec<Arbiter> {
    (0..n)
        .map(|_| {
            let a = Arbiter::new();
            a.spawn_fn(move || crate::threads::name_current(name));
            a
        })
        .collect()
}

/// A new workspace and its REST API key (shown this once).
#[derive(Debug)]
pub struct NewWorkspace {
    pub id: WorkspaceId,
    pub rest_key: String,
}

/// A connector to create (`POST /connectors`), as the HTTP layer parsed
/// and checked it.
#[derive(Clone, Debug)]
pub struct NewConnector {
    pub name: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    pub bearer_token: Option<String>,
    /// `None`: every type.
    pub event_types: Option<Vec<EventType>>,
}

/// A new data import key and its secret (shown this once).
#[derive(Debug)]
pub struct NewImportKey {
    pub key_id: String,
    pub secret: String,
}

/// Each `Outcome` variant as the type the write methods return. The router
/// answers every command with one fixed variant; `submit_as` uses these to
/// check it, so a mismatch is reported once, here, as `Internal`.
macro_rules! typed_outcomes {
    ($($variant:ident => $ty:ty),* $(,)?) => {$(
        impl TryFrom<Outcome> for $ty {
            type Error = Outcome;

            fn try_from(outcome: Outcome) -> std::result::Result<Self, Outcome> {
                match outcome {
                    Outcome::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    )*};
}

typed_outcomes! {
    Workspace => WorkspaceId,
    Delta => DeltaOutcome,
    Tracked => TrackReport,
    Identified => IdentifyReport,
    Aliased => AliasReport,
    Segment => u64,
}

impl TryFrom<Outcome> for DeleteReport {
    type Error = Outcome;

    fn try_from(outcome: Outcome) -> std::result::Result<DeleteReport, Outcome> {
        match outcome {
            Outcome::Deleted(deleted) => Ok(DeleteReport {
                deleted,
                errors: Vec::new(),
            }),
            other => Err(other),
        }
    }
}

impl TryFrom<Outcome> for () {
    type Error = Outcome;

    fn try_from(outcome: Outcome) -> std::result::Result<(), Outcome> {
        match outcome {
            Outcome::Done => Ok(()),
            other => Err(other),
        }
    }
}
