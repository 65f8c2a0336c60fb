//! The snapshot actor: takes snapshots on a timer, on the operator's
//! button, after a restore and at shutdown, all through the same path.
//!
//! A *run* asks the router for a cut (the image of every command applied
//! so far, with its log position, taken while every workspace's lane is
//! held between two commands; see `router`), then, on a blocking thread — never on an
//! actor thread — writes it with `persist::snapshot`, and finally prunes old
//! snapshots and the log segments no snapshot needs (the log is kept back
//! to the second-newest snapshot, so a corrupt newest one is recoverable).
//!
//! # One run at a time
//!
//! An actix handler that returns a future does *not* hold the mailbox: the
//! actor takes the next message while the future runs, so such handlers run
//! concurrently. This actor therefore spawns each run on its context and
//! keeps the bookkeeping itself: at most one run is in flight, and requests
//! that arrive meanwhile are parked and answered when a run ends. What a
//! parked request gets depends on what it asked for ([`Wanted`]):
//!
//! - [`Wanted::Any`] (the operator's `POST /admin/snapshots`, the timer)
//!   shares the run in flight and gets its result, success or error: a
//!   burst of N requests costs one snapshot, not N. Its cut may have been
//!   taken a moment before the request arrived (never more than one run
//!   earlier), so a write acknowledged during that moment may be missing
//!   from it; the answer's `log_position` says exactly what it holds.
//! - [`Wanted::AfterRequest`] (restore, shutdown) needs a cut taken after
//!   it asked — the restore's own record, or every write acknowledged
//!   before the server stopped, must be in it — so it waits for the next
//!   run, which starts as soon as the current one ends and serves every
//!   such request parked in the meantime.
//!
//! # One file per log position
//!
//! A log position is one state (the log is the only input), so a run whose
//! cut is at a position that already has a snapshot answers with that file
//! instead of writing a second one (`snapshot::find_at`; the file this
//! process wrote last is known without reading it). Retention counts
//! positions too (`snapshot::prune`): repeated snapshots of an idle server
//! never push an older restore point out.
//!
//! # Errors
//!
//! A snapshot that cannot be written is a 503 with a fixed message; the
//! cause (which file, which OS error) goes to the log, never to the client.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use tokio::sync::oneshot;

use crate::feed::Feeds;

use super::router::{Checkpoint, CutAt, Router};
use crate::error::{Error, Result};
use crate::persist::snapshot::{self, SnapshotInfo};
use crate::persist::{schema, wal::Wal};

/// What a client is told when a snapshot could not be written.
pub const WRITE_FAILED: &str = "the snapshot could not be written; the earlier snapshots and the \
                                write-ahead log are untouched, retry later";

/// Who waits for a run's result.
type Reply = oneshot::Sender<Result<SnapshotInfo>>;

pub struct Snapshotter {
    router: Addr<Router>,
    wal: Arc<Wal>,
    /// Synced before a snapshot is written: replay after it cannot make
    /// their events again (`persist::feed`).
    feeds: Arc<Feeds>,
    dir: PathBuf,
    retain: usize,
    interval: Option<Duration>,
    /// The last snapshot this process wrote or reused: a cut at the same
    /// log position returns it without reading the directory.
    last: Option<SnapshotInfo>,
    /// `Some` while a run is in flight: who gets its result.
    running: Option<Vec<Reply>>,
    /// `Some` when another run must follow the one in flight: who gets
    /// that run's result.
    next: Option<Vec<Reply>>,
}

impl Snapshotter {
    pub fn new(
        router: Addr<Router>,
        wal: Arc<Wal>,
        feeds: Arc<Feeds>,
        dir: PathBuf,
        retain: usize,
        interval_secs: u64,
    ) -> Self {
        Snapshotter {
            router,
            wal,
            feeds,
            dir,
            retain: retain.max(1),
            interval: (interval_secs > 0).then(|| Duration::from_secs(interval_secs)),
            last: None,
            running: None,
            next: None,
        }
    }

    /// Starts a run for `waiters`; only when none is in flight.
    fn start(&mut self, waiters: Vec<Reply>, ctx: &mut Context<Self>) {
        debug_assert!(self.running.is_none(), "one run at a time");
        self.running = Some(waiters);
        let run = self.run();
        ctx.spawn(
            run.into_actor(self)
                .map(|result, act, ctx| act.finished(result, ctx)),
        );
    }

    /// Cut, then reuse or write, then prune.
    fn run(&self) -> impl Future<Output = Result<SnapshotInfo>> + 'static {
        let router = self.router.clone();
        let (wal, dir, retain) = (self.wal.clone(), self.dir.clone(), self.retain);
        let feeds = self.feeds.clone();
        let last = self.last.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            router.do_send(Checkpoint {
                reply: tx,
                at_cut: None,
            });
            let cut = rx
                .await
                .map_err(|_| Error::Internal("router stopped".into()))?;
            let (position, image) = match cut.await? {
                (CutAt::Log(position), image) => (position, image),
                (CutAt::Shards(_), _) => {
                    return Err(Error::Internal(
                        "a cluster's cut reached the single-node snapshotter".into(),
                    ))
                }
            };
            #[cfg(debug_assertions)]
            test_hold().await;
            if let Some(last) = last.filter(|l| l.log_position == position && l.path.exists()) {
                return Ok(last);
            }
            tokio::task::spawn_blocking(move || write(&dir, &wal, &feeds, retain, position, &image))
                .await
                .map_err(|e| Error::Internal(format!("snapshot task: {e}")))?
        }
    }

    /// A run ended: answer everyone who shared it, then start the next run
    /// if one is due.
    fn finished(&mut self, result: Result<SnapshotInfo>, ctx: &mut Context<Self>) {
        match &result {
            Ok(info) => {
                tracing::info!(id = %info.id, bytes = info.bytes, log_position = info.log_position, "snapshot durable");
                self.last = Some(info.clone());
            }
            Err(e) => tracing::error!(error = ?e, "snapshot failed"),
        }
        for reply in self.running.take().unwrap_or_default() {
            let _ = reply.send(result.clone());
        }
        if let Some(next) = self.next.take() {
            self.start(next, ctx);
        }
    }
}

impl Actor for Snapshotter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(every) = self.interval {
            ctx.run_interval(every, |_, ctx| {
                // The timer presses the same button as the operator (and
                // so is a no-op while a run is in flight).
                ctx.address().do_send(TakeSnapshot {
                    wanted: Wanted::Any,
                    reply: None,
                });
            });
        }
    }
}

/// Which run a request may be answered by (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The run in flight, if there is one; else a new run.
    Any,
    /// A run whose cut is taken after the request arrived.
    AfterRequest,
}

/// Take a snapshot; the reply comes once the file is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot {
    pub wanted: Wanted,
    pub reply: Option<Reply>,
}

impl Handler<TakeSnapshot> for Snapshotter {
    type Result = ();

    fn handle(&mut self, msg: TakeSnapshot, ctx: &mut Context<Self>) {
        let waiter = msg.reply.into_iter();
        match (&mut self.running, msg.wanted) {
            (None, _) => self.start(waiter.collect(), ctx),
            (Some(sharing), Wanted::Any) => sharing.extend(waiter),
            (Some(_), Wanted::AfterRequest) => {
                self.next.get_or_insert_with(Vec::new).extend(waiter);
            }
        }
    }
}

/// Debug builds only: while the file named by `COHORTD_TEST_HOLD_SNAPSHOT`
/// exists, a run waits right after its cut, so that tests can hold a run in
/// flight and see what requests arriving meanwhile get. Logs one line per
/// held run.
#[cfg(debug_assertions)]
async fn test_hold() {
    let Some(path) = std::env::var_os("COHORTD_TEST_HOLD_SNAPSHOT").map(PathBuf::from) else {
        return;
    };
    if !path.exists() {
        return;
    }
    tracing::info!("snapshot run held after its cut (COHORTD_TEST_HOLD_SNAPSHOT)");
    while path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reuses the snapshot of `position` if one is on disk and verifies; else
/// encodes, writes and publishes a new one, then prunes.
fn write(
    dir: &std::path::Path,
    wal: &Wal,
    feeds: &Feeds,
    retain: usize,
    position: u64,
    image: &super::state::Image,
) -> Result<SnapshotInfo> {
    match snapshot::find_at(dir, position) {
        Ok(Some(existing)) => {
            tracing::info!(id = %existing.id, log_position = position, "a snapshot of this log position exists; reusing it");
            return Ok(existing);
        }
        Ok(None) => {}
        // Only a chance to save work was lost: write a new one.
        Err(e) => tracing::warn!(error = %e, "cannot look for an existing snapshot"),
    }
    // The feeds hold every event up to the cut (it was taken between
    // commands); on disk before the snapshot that replay would start from.
    feeds.sync().map_err(|e| {
        tracing::error!(error = %e, "the change feed could not be synced; no snapshot written");
        Error::Unavailable(WRITE_FAILED.into())
    })?;
    let info = snapshot::write_streamed(
        dir,
        position,
        crate::time::now_millis(),
        schema::SNAPSHOT_VERSION,
        |w| schema::encode_image_into(image, w).map_err(std::io::Error::other),
    )
    .map_err(|e| {
        tracing::error!(error = %e, log_position = position, "the snapshot could not be written");
        Error::Unavailable(WRITE_FAILED.into())
    })?;
    // Pruning is housekeeping: a failure leaves extra files, never less data.
    match snapshot::prune(dir, retain) {
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning old snapshots failed"),
    }
    match snapshot::list(dir) {
        Ok(kept) => {
            if let Err(e) = wal.truncate_before(snapshot::wal_keep_from(&kept)) {
                tracing::warn!(error = %e, "dropping old log segments failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing snapshots failed"),
    }
    Ok(info)
}
