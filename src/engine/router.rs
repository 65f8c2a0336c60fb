//! The router: the single sequencer of every mutation.
//!
//! All writes — workspaces, keys, cohort names, deltas, profile writes,
//! merges and deletes — arrive here as `Command`s and are applied in one
//! total order. For a delta the router resolves identifiers against the
//! profile index *as of that order* and dispatches the resolved ids to the
//! cohort's actor as one ordered batch; for a merge or delete it tells every
//! cohort of the workspace. The router never waits: it answers each command
//! with a `Pending` future (the cohorts' replies) that the HTTP worker
//! awaits, so ingest of different cohorts proceeds in parallel on the
//! cohort arbiters while the order stays the router's.
//!
//! Because a command's effect depends only on the state before it and the
//! command itself (times and generated ids travel inside it), replaying the
//! same commands in the same order rebuilds the same state.
//!
//! The ordering rules themselves (settle in log order, the checkpoint, the
//! no-op rules) are plain data in `sequencer`, unit-tested without actix;
//! this actor feeds them and applies what they say is due.
//!
//! Durability: the router appends each command to the write-ahead log as it
//! arrives and applies it only once the log says it is durable (group
//! commit makes one fsync cover every command queued meanwhile). Commands
//! are applied in log order, so the state never holds a mutation the log
//! does not, a failed log write applies nothing (503), and `last_applied`
//! names exactly the cut a snapshot taken between two commands contains.
//!
//! A restore is the one command whose effect depends on something outside
//! the log: the snapshot file it names. So the router loads and verifies
//! that file *before* logging the restore (a restore that cannot load is
//! refused and never logged), and a logged restore that cannot be replayed
//! at start-up — its file was pruned or damaged since — stops recovery
//! instead of being skipped: skipping it would serve the state from before
//! the restore with every later acknowledged write applied on top of it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::fut::wrap_future;
use actix::{Actor, ActorFutureExt, ArbiterHandle, AsyncContext, Context, Handler, Message};
use compact_str::CompactString;
use futures_util::future::{self, BoxFuture, FutureExt};
use tokio::sync::oneshot;

use super::cohort::{
    ApplyChanges, Cohort, CohortCell, CohortImage, CohortMeta, DeltaOutcome, MoveMembers, Rename,
    TakeImage,
};
use super::sequencer::{self, Admission, Sequencer, Settled};
use super::state::{CohortEntry, Image, ImportKey, Segment, State, StateCell, Workspace};
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::keys::KeyHash;
use crate::limits::StateLimits;
use crate::model::{Change, CohortKey, Identifier, Millis, Uid, WorkspaceId};
use crate::persist::{self, schema, wal::Wal};
use crate::profiles::commands::{
    self, AliasReport, Identify, IdentifyReport, NewAliases, Track, TrackReport,
};
use crate::segment::Filter;

/// Every mutation cohortd accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    CreateWorkspace {
        name: String,
        rest_key: KeyHash,
        at: Millis,
    },
    CreateImportKey {
        ws: WorkspaceId,
        key: ImportKey,
    },
    RevokeImportKey {
        ws: WorkspaceId,
        partner: CompactString,
        key_id: String,
    },
    NameCohort {
        ws: WorkspaceId,
        key: CohortKey,
        name: String,
        created_at: Millis,
        at: Millis,
    },
    ApplyDelta {
        ws: WorkspaceId,
        key: CohortKey,
        changes: Vec<Change>,
        at: Millis,
    },
    Track {
        ws: WorkspaceId,
        track: Track,
    },
    Identify {
        ws: WorkspaceId,
        identify: Identify,
    },
    NewAliases {
        ws: WorkspaceId,
        aliases: NewAliases,
    },
    DeleteUsers {
        ws: WorkspaceId,
        ids: Vec<Identifier>,
    },
    /// Creates (`id: None`) or replaces a saved segment.
    PutSegment {
        ws: WorkspaceId,
        id: Option<u64>,
        name: String,
        filter: Filter,
    },
    DeleteSegment {
        ws: WorkspaceId,
        id: u64,
    },
    /// Replaces the whole state with a snapshot's. The router fills
    /// `image` with the snapshot's verified payload (and `format` with its
    /// format version) before logging it, so the record is self-contained:
    /// replaying it never depends on the snapshot file still existing
    /// (retention may have pruned it). With `keep_counters` (every restore
    /// since format version 3), workspace and segment ids given out before
    /// the restore are never given out again.
    Restore {
        snapshot_id: String,
        format: u32,
        image: Vec<u8>,
        keep_counters: bool,
    },
    /// From here on, these state-dependent limits are in force (logged at
    /// start-up when `config.toml` changed them; see `limits::StateLimits`).
    SetLimits(StateLimits),
}

/// What a command did, for the response.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Workspace(WorkspaceId),
    Done,
    Delta(DeltaOutcome),
    Tracked(TrackReport),
    Identified(IdentifyReport),
    Aliased(AliasReport),
    Deleted(u32),
    Segment(u64),
}

/// A command's completion: resolves once its effect is visible to readers.
pub type Pending = BoxFuture<'static, Result<Outcome>>;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    pub cmd: Command,
    pub reply: oneshot::Sender<Pending>,
}

/// Replays recovered log records (start-up): applied without logging.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replay {
    pub records: Vec<(u64, Command)>,
    pub reply: oneshot::Sender<Pending>,
}

/// A consistent cut for a snapshot: the image of every command applied so
/// far and of none after, with its log position.
pub type Cut = BoxFuture<'static, Result<(u64, Image)>>;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint {
    pub reply: oneshot::Sender<Cut>,
}

/// A command in the log, waiting for its record to be durable.
struct Waiting {
    cmd: Command,
    /// A restore's image, loaded and verified before it was logged.
    image: Option<Image>,
    reply: oneshot::Sender<Pending>,
}

type LogError = Arc<persist::Error>;

pub struct Router {
    cell: StateCell,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    history_len: usize,
    wal: Arc<Wal>,
    snapshot_dir: PathBuf,
    /// The ordering rules; this actor is the shell that feeds them.
    seq: Sequencer<Waiting, LogError>,
    /// The configured limits, with the state-dependent ones replaced by
    /// those in force in the log (`in_force`), which is what commands are
    /// checked against as they apply (in log order, so concurrent requests
    /// cannot race past them, and replay judges as live did).
    limits: LimitsConfig,
    configured: LimitsConfig,
    in_force: Option<StateLimits>,
}

impl Router {
    pub fn new(
        cell: StateCell,
        arbiters: Vec<ArbiterHandle>,
        history_len: usize,
        wal: Arc<Wal>,
        snapshot_dir: PathBuf,
        last_applied: u64,
        (configured, in_force): (LimitsConfig, Option<StateLimits>),
    ) -> Self {
        assert!(
            !arbiters.is_empty(),
            "cohort actors need at least one arbiter"
        );
        Router {
            cell,
            arbiters,
            next_arbiter: 0,
            history_len,
            wal,
            snapshot_dir,
            seq: Sequencer::new(last_applied),
            limits: StateLimits::in_force(&configured, in_force),
            configured,
            in_force,
        }
    }

    fn state(&self) -> Arc<State> {
        self.cell.read().clone()
    }

    /// Starts a cohort's actor on the next arbiter of the pool.
    fn spawn_cohort(&mut self, image: CohortImage) -> CohortEntry {
        let cell = Arc::new(CohortCell::from_image(image, self.history_len));
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let actor_cell = cell.clone();
        let addr = Cohort::start_in_arbiter(arbiter, move |_| Cohort::new(actor_cell));
        CohortEntry { cell, addr }
    }

    /// Builds the state an image describes, with fresh cohort actors.
    pub fn install(&mut self, image: Image) -> Arc<State> {
        Arc::new(State::from_image(image, |c| self.spawn_cohort(c)))
    }

    /// A record's durability is known: apply every command at the front of
    /// the queue whose record is settled, in log order.
    fn logged(&mut self, seq: u64, result: std::result::Result<(), LogError>) {
        for settled in self.seq.settle(seq, result) {
            let (pending, reply) = match settled {
                Settled::Apply { item, .. } => {
                    let pending = match (item.cmd, item.image) {
                        (
                            Command::Restore {
                                snapshot_id,
                                keep_counters,
                                ..
                            },
                            Some(image),
                        ) => self.restore(&snapshot_id, image, keep_counters),
                        (cmd, _) => self.apply_or_fail(cmd),
                    };
                    (pending, item.reply)
                }
                Settled::Failed { item, error } => {
                    tracing::error!(error = %error, "write-ahead log append failed; command not applied");
                    // The cause (file, OS error) is in the line above, never in the body.
                    let failed = future::ready(Err(Error::Unavailable(
                        "the write-ahead log could not be written; nothing was applied, retry later"
                            .into(),
                    )))
                    .boxed();
                    (failed, item.reply)
                }
            };
            let _ = reply.send(pending);
        }
    }

    fn apply_or_fail(&mut self, cmd: Command) -> Pending {
        match self.apply(cmd) {
            Ok(p) => p,
            Err(e) => future::ready(Err(e)).boxed(),
        }
    }

    fn workspace(&self, id: WorkspaceId) -> Result<Arc<Workspace>> {
        self.state()
            .workspace(id)
            .ok_or(Error::NotFound("workspace"))
    }

    /// The cohort, created (named after its id) if it does not exist yet
    /// and the workspace has room for it (`cohorts_per_workspace`).
    fn cohort(&mut self, ws: &Workspace, key: &CohortKey, at: Millis) -> Result<CohortEntry> {
        if let Some(e) = ws.cohorts.get(key) {
            return Ok(e.clone());
        }
        ws.check_new_cohort(key, self.limits.cohorts_per_workspace)?;
        let entry = self.spawn_cohort(CohortImage {
            key: key.clone(),
            meta: CohortMeta {
                name: key.cohort_id.to_string(),
                created_at: at,
                named: false,
                updated_at: at,
            },
            members: Arc::new(roaring::RoaringBitmap::new()),
            history: Vec::new(),
        });
        ws.cohorts.insert(key.clone(), entry.clone());
        Ok(entry)
    }

    /// The cut for a snapshot, taken between two commands.
    fn checkpoint(&self) -> Cut {
        let position = self.seq.last_applied();
        let state = self.state();
        let mut parts = Vec::new();
        for ws in state.workspaces_sorted() {
            let image = ws.image_without_cohorts();
            let cohorts: Vec<_> = ws
                .cohorts
                .iter()
                .map(|e| {
                    let (reply, rx) = oneshot::channel();
                    e.addr.do_send(TakeImage { reply });
                    rx
                })
                .collect();
            parts.push((image, cohorts));
        }
        let next_workspace = state.next_workspace();
        let limits = self.in_force;
        async move {
            let mut workspaces = Vec::with_capacity(parts.len());
            for (mut image, cohorts) in parts {
                for rx in cohorts {
                    image.cohorts.push(rx.await.map_err(|_| lost("cohort"))?);
                }
                image.cohorts.sort_by(|a, b| a.key.cmp(&b.key));
                workspaces.push(image);
            }
            Ok((
                position,
                Image {
                    next_workspace,
                    workspaces,
                    limits,
                },
            ))
        }
        .boxed()
    }

    /// Loads a snapshot file (blocking: a restore stops the sequencer, so
    /// every command after it sees the restored state).
    fn load_snapshot(&self, id: &str) -> Result<(u32, Vec<u8>, Image)> {
        let info = persist::snapshot::list(&self.snapshot_dir)
            .map_err(|e| Error::Internal(e.to_string()))?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(Error::NotFound("snapshot"))?;
        let (_, bytes) = persist::snapshot::load(&info.path).map_err(|e| {
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

    fn apply(&mut self, cmd: Command) -> Result<Pending> {
        match cmd {
            Command::CreateWorkspace { name, rest_key, at } => {
                let state = self.state();
                let id = state.next_workspace_id();
                state.insert_workspace(Workspace::new(id, name, rest_key, at));
                Ok(done(Outcome::Workspace(id)))
            }
            Command::CreateImportKey { ws, key } => {
                let ws = self.workspace(ws)?;
                self.state().insert_import_key(&ws, key);
                Ok(done(Outcome::Done))
            }
            Command::RevokeImportKey {
                ws,
                partner,
                key_id,
            } => {
                let ws = self.workspace(ws)?;
                if !self.state().remove_import_key(&ws, &partner, &key_id) {
                    return Err(Error::NotFound("data import key"));
                }
                Ok(done(Outcome::Done))
            }
            Command::NameCohort {
                ws,
                key,
                name,
                created_at,
                at,
            } => {
                let ws = self.workspace(ws)?;
                let (reply, rx) = oneshot::channel();
                self.cohort(&ws, &key, at)?.addr.do_send(Rename {
                    name,
                    created_at,
                    at,
                    reply,
                });
                Ok(rx
                    .map(|r| r.map(|()| Outcome::Done).map_err(|_| lost("cohort")))
                    .boxed())
            }
            Command::ApplyDelta {
                ws,
                key,
                changes,
                at,
            } => {
                let ws = self.workspace(ws)?;
                Ok(self.apply_delta(&ws, &key, &changes, at))
            }
            Command::Track { ws, track } => {
                let ws = self.workspace(ws)?;
                let report = commands::apply_track(&mut ws.profiles.write(), &track, &self.limits);
                Ok(done(Outcome::Tracked(report)))
            }
            Command::Identify { ws, identify } => {
                let ws = self.workspace(ws)?;
                let report =
                    commands::apply_identify(&mut ws.profiles.write(), &identify, &self.limits);
                let moved = tell_cohorts(&ws, report.merges.clone(), Vec::new());
                let outcome = Outcome::Identified(report);
                Ok(moved.map(move |r| r.map(|_| outcome)).boxed())
            }
            Command::NewAliases { ws, aliases } => {
                let ws = self.workspace(ws)?;
                let report = commands::apply_new_aliases(&mut ws.profiles.write(), &aliases);
                Ok(done(Outcome::Aliased(report)))
            }
            Command::DeleteUsers { ws, ids } => {
                let ws = self.workspace(ws)?;
                let gone = commands::apply_delete(&mut ws.profiles.write(), &ids);
                let n = gone.len() as u32;
                let moved = tell_cohorts(&ws, Vec::new(), gone);
                Ok(moved.map(move |r| r.map(|_| Outcome::Deleted(n))).boxed())
            }
            Command::PutSegment {
                ws,
                id,
                name,
                filter,
            } => {
                let ws = self.workspace(ws)?;
                let mut segments = ws.segments.write();
                let id = match id {
                    Some(id) if segments.contains_key(&id) => id,
                    Some(_) => return Err(Error::NotFound("segment")),
                    None => {
                        ws.check_new_segment(segments.len(), self.limits.segments_per_workspace)?;
                        ws.last_segment.fetch_add(1, Ordering::Relaxed) + 1
                    }
                };
                segments.insert(id, Arc::new(Segment { id, name, filter }));
                Ok(done(Outcome::Segment(id)))
            }
            Command::DeleteSegment { ws, id } => {
                let ws = self.workspace(ws)?;
                if ws.segments.write().remove(&id).is_none() {
                    return Err(Error::NotFound("segment"));
                }
                Ok(done(Outcome::Done))
            }
            Command::Restore {
                snapshot_id,
                format,
                image,
                keep_counters,
            } => {
                let image = decode_image(&snapshot_id, format, &image)?;
                Ok(self.restore(&snapshot_id, image, keep_counters))
            }
            Command::SetLimits(l) => {
                self.in_force = Some(l);
                self.limits = StateLimits::in_force(&self.configured, self.in_force);
                Ok(done(Outcome::Done))
            }
        }
    }

    /// Replaces the state with `image`. With `keep_counters`, the id
    /// counters only ever go forward: the next workspace id and each
    /// workspace's last segment id are the larger of the live state's and
    /// the image's, so no id given out before the restore is given again.
    fn restore(&mut self, snapshot_id: &str, mut image: Image, keep_counters: bool) -> Pending {
        if keep_counters {
            let live = self.state();
            image.next_workspace = image.next_workspace.max(live.next_workspace());
            for w in &mut image.workspaces {
                if let Some(now) = live.workspace(w.id) {
                    w.last_segment = w.last_segment.max(now.last_segment_id());
                }
            }
        }
        let state = self.install(image);
        *self.cell.write() = state;
        tracing::info!(%snapshot_id, "state restored from snapshot");
        done(Outcome::Done)
    }

    /// Resolves a delta against the profile index and hands the cohort one
    /// ordered batch. A delta without identifiers changes nothing and
    /// creates nothing; one with identifiers creates a never-named cohort
    /// even if none of them matched.
    fn apply_delta(
        &mut self,
        ws: &Workspace,
        key: &CohortKey,
        changes: &[Change],
        at: Millis,
    ) -> Pending {
        let total: usize = changes.iter().map(Change::id_count).sum();
        if total == 0 {
            let size = ws.cohort(key).map_or(0, |c| c.size());
            return done(Outcome::Delta(DeltaOutcome {
                added: 0,
                removed: 0,
                unmatched: 0,
                size,
            }));
        }
        let mut ops: Vec<(Uid, bool)> = Vec::with_capacity(total);
        let mut unmatched: Vec<&Identifier> = Vec::new();
        let resolved = ws
            .profiles
            .read()
            .resolve_many(changes.iter().flat_map(|c| &c.ids));
        let mut resolved = resolved.into_iter();
        for change in changes {
            for id in &change.ids {
                match resolved.next().flatten() {
                    Some(uid) => ops.push((uid, !change.remove)),
                    None => unmatched.push(id),
                }
            }
        }
        let unmatched = count_distinct(unmatched);
        let entry = match self.cohort(ws, key, at) {
            Ok(entry) => entry,
            Err(e) => return future::ready(Err(e)).boxed(),
        };
        let (reply, rx) = oneshot::channel();
        entry.addr.do_send(ApplyChanges {
            ops,
            unmatched,
            at,
            reply,
        });
        rx.map(|r| r.map(Outcome::Delta).map_err(|_| lost("cohort")))
            .boxed()
    }
}

impl Router {
    /// Commands answered without a log record (and so without an fsync),
    /// by the rules of `sequencer::admit_*`.
    fn no_op(&mut self, cmd: &Command) -> Option<Pending> {
        let admission = match cmd {
            Command::ApplyDelta { changes, .. } => sequencer::admit_delta(changes),
            Command::NameCohort { ws, key, name, .. } => {
                let meta = self
                    .state()
                    .workspace(*ws)
                    .and_then(|w| w.cohort(key))
                    .map(|c| c.meta());
                let current = meta.as_ref().map(|m| (m.named, m.name.as_str()));
                sequencer::admit_name(name, self.seq.is_idle(), current)
            }
            Command::SetLimits(l) if self.seq.is_idle() && self.in_force == Some(*l) => {
                Admission::AlreadyDone
            }
            _ => Admission::Log,
        };
        match admission {
            Admission::Log => None,
            Admission::ApplyUnlogged => Some(self.apply_or_fail(cmd.clone())),
            Admission::AlreadyDone => Some(done(Outcome::Done)),
        }
    }
}

fn decode_image(id: &str, format: u32, bytes: &[u8]) -> Result<Image> {
    schema::decode_image(format, bytes).map_err(|e| {
        tracing::error!(snapshot = %id, format, error = %e, "snapshot image cannot be decoded");
        Error::bad_request(
            "corrupt_snapshot",
            format!("snapshot {id} cannot be decoded (format version {format})"),
        )
    })
}

fn count_distinct(mut ids: Vec<&Identifier>) -> u64 {
    if ids.len() < 2 {
        return ids.len() as u64;
    }
    let mut seen = hashbrown::HashSet::with_capacity_and_hasher(
        ids.len(),
        foldhash::fast::RandomState::default(),
    );
    ids.retain(|id| seen.insert(*id));
    ids.len() as u64
}

/// Tells every cohort of the workspace about merged and deleted profiles;
/// resolves when all of them have applied it.
fn tell_cohorts(
    ws: &Workspace,
    merges: Vec<(Uid, Uid)>,
    deletes: Vec<Uid>,
) -> BoxFuture<'static, Result<()>> {
    if merges.is_empty() && deletes.is_empty() {
        return future::ready(Ok(())).boxed();
    }
    let (merges, deletes) = (Arc::new(merges), Arc::new(deletes));
    let replies: Vec<_> = ws
        .cohort_addrs()
        .into_iter()
        .map(|addr| {
            let (reply, rx) = oneshot::channel();
            addr.do_send(MoveMembers {
                merges: merges.clone(),
                deletes: deletes.clone(),
                reply,
            });
            rx
        })
        .collect();
    future::join_all(replies)
        .map(|all| {
            all.into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
                .map_err(|_| lost("cohort"))
        })
        .boxed()
}

fn done(outcome: Outcome) -> Pending {
    future::ready(Ok(outcome)).boxed()
}

fn lost(who: &str) -> Error {
    Error::Internal(format!("{who} actor stopped before replying"))
}

impl Actor for Router {
    type Context = Context<Self>;
}

impl Handler<Submit> for Router {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if let Some(answer) = self.no_op(&msg.cmd) {
            let _ = msg.reply.send(answer);
            return;
        }
        // Only a restore that can be applied goes into the log, and it goes
        // in with the snapshot's payload.
        let mut msg = msg;
        let image = match &mut msg.cmd {
            Command::Restore {
                snapshot_id,
                format,
                image,
                ..
            } => match self.load_snapshot(snapshot_id) {
                Ok((version, bytes, decoded)) => {
                    *format = version;
                    *image = bytes;
                    Some(decoded)
                }
                Err(e) => {
                    let _ = msg.reply.send(future::ready(Err(e)).boxed());
                    return;
                }
            },
            _ => None,
        };
        let appended = schema::encode_record(&msg.cmd)
            .map_err(|e| Error::Internal(e.to_string()))
            .and_then(|bytes| {
                self.wal.append(&bytes).map_err(|e| {
                    tracing::error!(error = %e, "write-ahead log append refused; command not applied");
                    Error::Unavailable(
                        "the write-ahead log could not be written; nothing was applied, retry later"
                            .into(),
                    )
                })
            });
        let appended = match appended {
            Ok(a) => a,
            Err(e) => {
                let _ = msg.reply.send(future::ready(Err(e)).boxed());
                return;
            }
        };
        let seq = self.seq.push(
            appended.position,
            Waiting {
                cmd: msg.cmd,
                image,
                reply: msg.reply,
            },
        );
        ctx.spawn(
            wrap_future(appended.durable).map(move |r, act: &mut Router, _| {
                let r = r.unwrap_or_else(|_| Err(Arc::new(persist::Error::Closed)));
                act.logged(seq, r);
            }),
        );
    }
}

impl Handler<Replay> for Router {
    type Result = ();

    fn handle(&mut self, msg: Replay, _: &mut Context<Self>) {
        let mut all = Vec::with_capacity(msg.records.len());
        for (position, cmd) in msg.records {
            self.seq.replayed(position);
            let restore = match &cmd {
                Command::Restore { snapshot_id, .. } => Some(snapshot_id.clone()),
                _ => None,
            };
            match (self.apply(cmd), restore) {
                (Ok(pending), _) => all.push(pending),
                // Logged restores all succeeded once (see `Submit`): one
                // that fails now cannot be skipped without losing state.
                (Err(e), Some(id)) => {
                    let refused = Error::Internal(format!(
                        "the log restores snapshot {id} at position {position}, and the image \
                         it carries cannot be decoded ({e}); the acknowledged state after it \
                         cannot be rebuilt, refusing to start"
                    ));
                    let _ = msg.reply.send(future::ready(Err(refused)).boxed());
                    return;
                }
                (Err(e), None) => all.push(future::ready(Err(e)).boxed()),
            }
        }
        let joined = future::join_all(all)
            .map(|results| {
                let failed = results.iter().filter(|r| r.is_err()).count();
                if failed > 0 {
                    tracing::debug!(failed, "replayed commands that failed then too");
                }
                Ok(Outcome::Done)
            })
            .boxed();
        let _ = msg.reply.send(joined);
    }
}

impl Handler<Checkpoint> for Router {
    type Result = ();

    fn handle(&mut self, msg: Checkpoint, _: &mut Context<Self>) {
        let _ = msg.reply.send(self.checkpoint());
    }
}
