//! The router: sequencer of what spans workspaces, and of replay.
//!
//! A workspace's writes go to its lane (`lane`), which orders them on its
//! own. The router takes the rest, one at a time (each runs under
//! `ctx.wait`, so the next message waits for it):
//!
//! - **Commands that span workspaces.** `CreateWorkspace` touches no
//!   existing workspace and needs nothing from the lanes: it is logged and
//!   applied here, in turn with the other router work. `Restore` and
//!   `SetLimits` change what every workspace sees, so they are barriers:
//!   the router holds every lane (`Lanes::hold`: no lane appends, and each
//!   has applied all it appended), logs the command, applies it once
//!   durable, then releases the lanes. Every workspace command is thus
//!   wholly before or wholly after the barrier, in the log and in the state.
//! - **Snapshot cuts** (`Checkpoint`). Under the same hold, the log's last
//!   position is exactly what the state holds; the router images the state
//!   and releases the lanes before the cohorts' images arrive (each cohort
//!   answers in its mailbox order, so later changes are not in its image).
//! - **Replay** at start-up, before any lane runs: every recovered record,
//!   in log order, through the same `Applier` live writes use.
//!
//! A restore is the one command whose effect depends on something outside
//! the log: the snapshot file it names. So the router loads and verifies
//! that file *before* logging the restore (a restore that cannot load is
//! refused and never logged), and the record carries the snapshot's
//! payload; a logged restore that cannot be replayed at start-up stops
//! recovery instead of being skipped: skipping it would serve the state
//! from before the restore with every later acknowledged write on top.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::fut::wrap_future;
use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, Message};
use futures_util::future::{self, BoxFuture, FutureExt};
use tokio::sync::oneshot;

use super::apply::{decode_image, done, Applier};
use super::command::{Command, Outcome, Pending, Submit};
use super::lane::Lanes;
use super::log::Log;
use super::state::Image;
use crate::error::{Error, Result};
use crate::persist::{self, wal::Wal};

/// Replays recovered log records (start-up): applied without logging.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replay {
    pub records: Vec<(u64, Command)>,
    pub reply: oneshot::Sender<Pending>,
}

/// A consistent cut for a snapshot: the image of every command applied so
/// far and of none after, with where in the log it is.
pub type Cut = BoxFuture<'static, Result<(CutAt, Image)>>;

/// Where a cut is in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CutAt {
    /// The local log's last position.
    Log(u64),
    /// Cluster mode: each shard's last sequence applied. The caller holds
    /// the shards' tails (`Clustered::hold_tails`) while the cut is taken,
    /// outside the router (a tail's batch waits for the router's replay).
    Shards(Vec<u64>),
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint {
    pub reply: oneshot::Sender<Cut>,
    /// Run at the cut, while nothing applies (a cluster set marks the
    /// feeds' seqs there).
    pub at_cut: Option<Box<dyn FnOnce() + Send>>,
}

/// Cluster mode: restores shard `shard` from its file of a snapshot set
/// (`shard_snapshots`), on the node leading the shard: a barrier like a
/// single node's restore, whose record goes to that shard's stream with
/// the image it restores (carrying in `next_workspace` which workspaces
/// existed when the restore began: `Applier::restore_shard`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreShard {
    pub shard: u32,
    pub set: String,
    /// The shard's file, verified when read here.
    pub path: PathBuf,
    /// The workspace counter when the restore began.
    pub cutoff: u32,
    pub reply: oneshot::Sender<Result<u64>>,
}

pub struct Router {
    applier: Arc<Applier>,
    lanes: Arc<Lanes>,
    /// Where its own commands go.
    log: Log,
    /// The local log, whose last position a snapshot cut records.
    wal: Arc<Wal>,
    snapshot_dir: PathBuf,
}

impl Router {
    pub fn new(
        applier: Arc<Applier>,
        lanes: Arc<Lanes>,
        log: Log,
        wal: Arc<Wal>,
        snapshot_dir: PathBuf,
    ) -> Self {
        Router {
            applier,
            lanes,
            log,
            wal,
            snapshot_dir,
        }
    }

    /// Logs one command that spans workspaces and applies it once durable;
    /// a barrier holds every lane meanwhile.
    /// The commands it applies take effect at once (no cohort is told), so
    /// the router waits for their outcome too.
    fn run(
        &self,
        mut cmd: Command,
        logged_at: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> impl std::future::Future<Output = Result<Outcome>> + 'static {
        let (applier, lanes, log) = (self.applier.clone(), self.lanes.clone(), self.log.clone());
        let dir = self.snapshot_dir.clone();
        async move {
            // Only a restore that can be applied goes into the log, and it
            // goes in with the snapshot's payload (read before any hold).
            let image = match &mut cmd {
                Command::Restore {
                    snapshot_id,
                    format,
                    image,
                    ..
                } => {
                    let id = snapshot_id.clone();
                    let loaded = tokio::task::spawn_blocking(move || load_snapshot(&dir, &id))
                        .await
                        .map_err(|e| Error::Internal(format!("loading the snapshot: {e}")))
                        .and_then(|r| r);
                    match loaded {
                        Ok((version, bytes, decoded)) => {
                            *format = version;
                            *image = bytes;
                            Some(decoded)
                        }
                        Err(e) => return Err(e),
                    }
                }
                _ => None,
            };
            let barrier = matches!(cmd, Command::Restore { .. } | Command::SetLimits(_));
            if barrier {
                lanes.hold().await;
            }
            let logged = log.append_and_wait(&cmd).await;
            if let (Ok(position), Some(at)) = (&logged, &logged_at) {
                at.store(*position, std::sync::atomic::Ordering::Release);
            }
            let pending = match logged {
                Err(e) => future::ready(Err(e)).boxed(),
                Ok(position) => match (cmd, image) {
                    (
                        Command::Restore {
                            snapshot_id,
                            keep_counters,
                            ..
                        },
                        Some(image),
                    ) => applier.restore(&snapshot_id, image, keep_counters),
                    // Router commands make no feed event.
                    (cmd, _) => applier.apply_or_fail(None, cmd),
                }
                .map(move |r| {
                    log.settled(position, true);
                    r
                })
                .boxed(),
            };
            if barrier {
                lanes.release();
            }
            pending.await
        }
    }

    /// Commands answered without a log record: limits already in force.
    fn no_op(&self, cmd: &Command) -> Option<Pending> {
        match cmd {
            Command::SetLimits(l) if self.applier.logged_limits() == Some(*l) => {
                Some(done(Outcome::Done))
            }
            _ => None,
        }
    }
}

/// Loads and verifies a snapshot file (blocking).
fn load_snapshot(dir: &Path, id: &str) -> Result<(u32, Vec<u8>, Image)> {
    let info = persist::snapshot::list(dir)
        .map_err(|e| Error::Internal(e.to_string()))?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or(Error::NotFound("snapshot"))?;
    load_file(&info.path, id)
}

/// Loads, verifies and decodes the snapshot file at `path`, named `id` to
/// the client (blocking): its format version, payload and image.
fn load_file(path: &Path, id: &str) -> Result<(u32, Vec<u8>, Image)> {
    let (info, bytes) = persist::snapshot::load(path).map_err(|e| {
        // The cause names files: it goes to the log, not the body.
        tracing::error!(snapshot = %id, error = %e, "snapshot cannot be restored");
        Error::bad_request(
            "corrupt_snapshot",
            format!("snapshot {id} is damaged and cannot be restored"),
        )
    })?;
    let image = decode_image(id, info.format_version, &bytes)?;
    Ok((info.format_version, bytes, image))
}

impl Actor for Router {
    type Context = Context<Self>;
}

impl Handler<Submit> for Router {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if let Some(ws) = msg.cmd.workspace() {
            // Not the router's: its workspace's lane orders it.
            self.lanes.lane(ws).addr.do_send(msg);
            return;
        }
        if let Some(answer) = self.no_op(&msg.cmd) {
            let _ = msg.reply.send(answer);
            return;
        }
        let reply = msg.reply;
        ctx.wait(
            wrap_future(self.run(msg.cmd, msg.logged_at)).map(move |outcome, _, _| {
                let _ = reply.send(future::ready(outcome).boxed());
            }),
        );
    }
}

impl Handler<RestoreShard> for Router {
    type Result = ();

    fn handle(&mut self, msg: RestoreShard, ctx: &mut Context<Self>) {
        let (applier, lanes, log) = (self.applier.clone(), self.lanes.clone(), self.log.clone());
        let RestoreShard {
            shard,
            set,
            path,
            cutoff,
            reply,
        } = msg;
        let run = async move {
            let id = set.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let (_, _, mut image) = load_file(&path, &id)?;
                if shard != super::clustered::CONTROL {
                    image.next_workspace = cutoff;
                }
                let bytes = persist::schema::encode_image(&image)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Ok::<_, Error>((image, bytes))
            })
            .await
            .map_err(|e| Error::Internal(format!("loading the snapshot: {e}")))??;
            let (image, bytes) = loaded;
            let cmd = Command::Restore {
                snapshot_id: set.clone(),
                format: persist::schema::SNAPSHOT_VERSION,
                image: bytes,
                keep_counters: true,
            };
            lanes.hold().await;
            let logged = log.append_to_shard_and_wait(shard, &cmd).await;
            let result = match logged {
                Err(e) => Err(e),
                Ok(position) => {
                    let r = applier.restore_shard(&set, shard, image, true).await;
                    log.settled(position, true);
                    r.map(|_| position)
                }
            };
            lanes.release();
            result
        };
        ctx.wait(wrap_future(run).map(move |result, _, _| {
            let _ = reply.send(result);
        }));
    }
}

impl Handler<Checkpoint> for Router {
    type Result = ();

    fn handle(&mut self, msg: Checkpoint, ctx: &mut Context<Self>) {
        let (applier, lanes, wal) = (self.applier.clone(), self.lanes.clone(), self.wal.clone());
        let log = self.log.clone();
        let at_cut = msg.at_cut;
        let cut = async move {
            lanes.hold().await;
            // Every lane has applied all it appended and appends nothing
            // now, and the router's own commands are applied before it
            // takes the next message: the log's last position is the cut
            // (in a cluster, each shard's, the tails being held).
            let at = match &log {
                Log::Local(_) => Ok(CutAt::Log(wal.last_position())),
                Log::Cluster(c) => c.cut_sequences().map(CutAt::Shards),
            };
            let image = at.is_ok().then(|| applier.image());
            if let (Ok(_), Some(f)) = (&at, at_cut) {
                f();
            }
            lanes.release();
            (at, image)
        };
        ctx.wait(wrap_future(cut).map(move |(at, image), _, _| {
            let cut = async move {
                let at = at?;
                let image = image.expect("imaged with its cut").await?;
                Ok((at, image))
            }
            .boxed();
            let _ = msg.reply.send(cut);
        }));
    }
}

impl Handler<Replay> for Router {
    type Result = ();

    fn handle(&mut self, msg: Replay, _: &mut Context<Self>) {
        // Applied in order as the returned future runs (recovery awaits it
        // before the next batch); a command that needs its workspace quiet
        // (`Applier::needs_quiet`) waits for every earlier one, as in the
        // lanes.
        let applier = self.applier.clone();
        let run = async move {
            let mut all = Vec::with_capacity(msg.records.len());
            let mut failed = 0usize;
            let count = |r: Result<Outcome>, failed: &mut usize| *failed += usize::from(r.is_err());
            // What a command left to do after its answer runs as soon as
            // it is done (`apply::After`).
            let done = |r: Result<Outcome>, position: u64, failed: &mut usize| {
                count(r, failed);
                if let Some(after) = applier.after(position) {
                    after();
                }
            };
            for (position, cmd) in msg.records {
                let quiet = applier.needs_quiet(&cmd);
                if quiet {
                    for (p, r) in future::join_all(all.drain(..)).await {
                        done(r, p, &mut failed);
                    }
                }
                let restore = match &cmd {
                    Command::Restore { snapshot_id, .. } => Some(snapshot_id.clone()),
                    _ => None,
                };
                match (applier.apply(Some(position), cmd), restore) {
                    (Ok(pending), _) if quiet => done(pending.await, position, &mut failed),
                    (Ok(pending), _) => all.push(pending.map(move |r| (position, r))),
                    // Logged restores all succeeded once (see `run`): one
                    // that fails now cannot be skipped without losing state.
                    (Err(e), Some(id)) => {
                        return Err(Error::Internal(format!(
                            "the log restores snapshot {id} at position {position}, and the \
                             image it carries cannot be decoded ({e}); the acknowledged state \
                             after it cannot be rebuilt, refusing to start"
                        )));
                    }
                    (Err(_), None) => failed += 1,
                }
            }
            for (p, r) in future::join_all(all).await {
                done(r, p, &mut failed);
            }
            if failed > 0 {
                tracing::debug!(failed, "replayed commands that failed then too");
            }
            Ok(Outcome::Done)
        };
        let _ = msg.reply.send(run.boxed());
    }
}
