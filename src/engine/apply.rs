//! What each command does to the state: the one place that says it.
//!
//! Both sequencers call [`Applier::apply`]: a workspace's lane (`lane`)
//! for that workspace's commands as they become durable, and the router
//! (`router`) for the commands that span workspaces and for every record
//! replayed at start-up, in log order. Because a command's effect depends
//! only on the state before it and the command itself (times and generated
//! ids travel inside it), and a workspace's commands touch nothing of
//! another's, applying each workspace's commands in log order — whatever
//! the interleaving between workspaces — rebuilds the same state.
//!
//! The few things shared by every workspace are each owned by one rule:
//! the limits in force change only through `SetLimits`, which the router
//! applies while every lane is held (so no workspace command is between
//! its log record and its apply); workspace ids are given out only by the
//! router; the cohort actors are spread over the arbiter pool by an atomic
//! round robin, which decides where an actor runs, never what it holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::{Actor, ArbiterHandle};
use futures_util::future::{self, BoxFuture, FutureExt};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use super::cohort::{
    ApplyChanges, Cohort, CohortCell, CohortImage, CohortMeta, DeltaOutcome, FeedNote, MoveMembers,
    Rename, TakeImage,
};
use super::command::{Command, Outcome, Pending};
use super::state::{CohortEntry, Image, Segment, State, StateCell, Workspace};
use super::tracking::{self, Touched};
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::feed::{self, Feeds};
use crate::limits::StateLimits;
use crate::model::{Change, CohortKey, Identifier, Millis, Uid, WorkspaceId};
use crate::persist::schema;
use crate::profiles::commands;

/// The limits commands are judged by as they apply.
struct InForce {
    /// The configured limits with the state-dependent ones replaced by
    /// those logged (`StateLimits::in_force`).
    effective: Arc<LimitsConfig>,
    /// The state-dependent limits the log put in force (`None`: data from
    /// before limits existed).
    logged: Option<StateLimits>,
}

pub struct Applier {
    cell: StateCell,
    /// Where commands' events go (`crate::feed`).
    feeds: Arc<Feeds>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    history_len: usize,
    configured: LimitsConfig,
    limits: RwLock<InForce>,
    /// Work a logged command leaves to do once it is answered, by log
    /// position ([`Applier::after`]).
    after: Arc<Mutex<HashMap<u64, After>>>,
    /// Cluster mode: the shard count ([`Applier::set_cluster_shards`]).
    cluster_shards: std::sync::OnceLock<u32>,
}

/// What a command leaves to do after its answer: a partner delta's saved
/// segments (`tracking`). The lane runs it right after the answer and
/// before the workspace's next command (which waits for quiet), replay
/// right after the command, so it sees exactly the state the command
/// left; the partner's answer does not wait for it.
pub type After = Box<dyn FnOnce() + Send>;

impl Applier {
    pub fn new(
        cell: StateCell,
        feeds: Arc<Feeds>,
        arbiters: Vec<ArbiterHandle>,
        history_len: usize,
        configured: LimitsConfig,
        logged: Option<StateLimits>,
    ) -> Self {
        assert!(
            !arbiters.is_empty(),
            "cohort actors need at least one arbiter"
        );
        Applier {
            cell,
            feeds,
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            history_len,
            limits: RwLock::new(InForce {
                effective: Arc::new(StateLimits::in_force(&configured, logged)),
                logged,
            }),
            configured,
            after: Arc::default(),
            cluster_shards: std::sync::OnceLock::new(),
        }
    }

    /// Takes what the command at log `position` left to do after its
    /// answer, if anything; the caller runs it before the workspace's next
    /// command (see [`After`]).
    pub fn after(&self, position: u64) -> Option<After> {
        self.after.lock().remove(&position)
    }

    pub fn state(&self) -> Arc<State> {
        self.cell.read().clone()
    }

    fn limits(&self) -> Arc<LimitsConfig> {
        self.limits.read().effective.clone()
    }

    /// Whether `cmd` may only apply once every earlier command of its
    /// workspace is done (its cohort actors and saved segments included):
    /// saving a segment evaluates it over the whole workspace, and while a
    /// workspace has saved segments each write brings them up to date
    /// after it (`tracking`); both must see exactly the state the earlier
    /// commands left. The lanes and replay both keep this rule.
    pub fn needs_quiet(&self, cmd: &Command) -> bool {
        matches!(cmd, Command::PutSegment { .. })
            || cmd.workspace().is_some_and(|ws| {
                self.state()
                    .workspace(ws)
                    .is_some_and(|w| w.tracks_segments())
            })
    }

    /// The state-dependent limits the log has put in force.
    pub fn logged_limits(&self) -> Option<StateLimits> {
        self.limits.read().logged
    }

    /// Starts a cohort's actor on the next arbiter of the pool.
    fn spawn_cohort(&self, image: CohortImage) -> CohortEntry {
        let cell = Arc::new(CohortCell::from_image(image, self.history_len));
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed);
        let arbiter = &self.arbiters[i % self.arbiters.len()];
        let actor_cell = cell.clone();
        let addr = Cohort::start_in_arbiter(arbiter, move |_| Cohort::new(actor_cell));
        CohortEntry { cell, addr }
    }

    /// Makes the state an image describes the live state, with fresh
    /// cohort actors.
    pub fn install(&self, image: Image) {
        let state = Arc::new(State::from_image(image, |c| self.spawn_cohort(c)));
        *self.cell.write() = state;
    }

    fn workspace(&self, id: WorkspaceId) -> Result<Arc<Workspace>> {
        self.state()
            .workspace(id)
            .ok_or(Error::NotFound("workspace"))
    }

    /// [`apply`](Self::apply), with a refusal as an answered future.
    pub fn apply_or_fail(&self, position: Option<u64>, cmd: Command) -> Pending {
        match self.apply(position, cmd) {
            Ok(p) => p,
            Err(e) => future::ready(Err(e)).boxed(),
        }
    }

    /// Applies one command (its record is durable at log `position`, or it
    /// is being replayed from there; `None`: a command that is not logged,
    /// which makes no event). The returned future resolves once its effect
    /// is visible to every reader (the cohorts it told have applied it).
    pub fn apply(&self, position: Option<u64>, cmd: Command) -> Result<Pending> {
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
                Ok(self.apply_delta(&ws, key, &changes, at, position))
            }
            Command::Track { ws, track, at } => {
                let ws = self.workspace(ws)?;
                let tracking = ws.tracks_segments();
                let mut profiles = ws.profiles.write();
                let new_from = profiles.id_bound();
                let report = commands::apply_track(&mut profiles, &track, &self.limits());
                let gather = at
                    .and_then(|at| self.ticket(ws.id, position, at))
                    .map(|ticket| {
                        let users: Vec<_> = (report.recorded.iter())
                            .map(|r| profiles.get(r.uid).map(|p| feed_user(r.uid, p)))
                            .collect();
                        let events = track_events(&track, &report.recorded, users);
                        feed::Gather::new(ticket, events, HashMap::new())
                    });
                drop(profiles);
                let touched = tracking.then(|| track_touched(&track, &report, new_from));
                Ok(track_segments(
                    &ws,
                    done(Outcome::Tracked(report)),
                    touched,
                    gather,
                ))
            }
            Command::Identify { ws, identify, at } => {
                let ws = self.workspace(ws)?;
                let mut profiles = ws.profiles.write();
                let report = commands::apply_identify(&mut profiles, &identify, &self.limits());
                let merges: Vec<(Uid, Uid)> =
                    report.merges.iter().map(|m| (m.from, m.into)).collect();
                let gather = at
                    .and_then(|at| self.ticket(ws.id, position, at))
                    .map(|ticket| {
                        let mut users = HashMap::new();
                        let mut head = Vec::with_capacity(report.merges.len());
                        for m in &report.merges {
                            let orphan = feed::User {
                                uid: m.from,
                                external_id: None,
                                device_id: m.from_device.clone(),
                            };
                            head.push(feed::Event::new(
                                feed::EventType::UserOrphan,
                                orphan.clone(),
                                feed::orphan_properties(ws.id, m.into),
                            ));
                            users.entry(m.from).or_insert(orphan);
                            if let Some(p) = profiles.get(m.into) {
                                users.entry(m.into).or_insert_with(|| feed_user(m.into, p));
                            }
                        }
                        feed::Gather::new(ticket, head, users)
                    });
                drop(profiles);
                let touched =
                    (ws.tracks_segments() && !merges.is_empty()).then(|| Touched::Anything {
                        uids: merges
                            .iter()
                            .flat_map(|&(from, into)| [from, into])
                            .collect(),
                    });
                let moved = tell_cohorts(&ws, merges, Vec::new(), gather.clone());
                let outcome = Outcome::Identified(report);
                let moved = moved.map(move |r| r.map(|_| outcome)).boxed();
                Ok(track_segments(&ws, moved, touched, gather))
            }
            Command::NewAliases { ws, aliases } => {
                let ws = self.workspace(ws)?;
                let mut profiles = ws.profiles.write();
                let new_from = profiles.id_bound();
                let report = commands::apply_new_aliases(&mut profiles, &aliases);
                // Alias-only profiles it created may match a segment.
                let touched = ws.tracks_segments().then(|| Touched::Anything {
                    uids: (new_from..profiles.id_bound())
                        .filter(|&u| profiles.get(u).is_some())
                        .collect(),
                });
                drop(profiles);
                Ok(track_segments(
                    &ws,
                    done(Outcome::Aliased(report)),
                    touched,
                    None,
                ))
            }
            Command::DeleteUsers { ws, ids, at } => {
                let ws = self.workspace(ws)?;
                let ticket = at.and_then(|at| self.ticket(ws.id, position, at));
                let mut users = HashMap::new();
                let mut head = Vec::new();
                let gone = commands::apply_delete(&mut ws.profiles.write(), &ids, |uid, p| {
                    if ticket.is_some() {
                        let user = feed_user(uid, p);
                        head.push(feed::Event::new(
                            feed::EventType::UserDeleteRequest,
                            user.clone(),
                            EMPTY.into(),
                        ));
                        users.insert(uid, user);
                    }
                });
                let n = gone.len() as u32;
                let gather = ticket.map(|t| feed::Gather::new(t, head, users));
                let touched = (ws.tracks_segments() && !gone.is_empty())
                    .then(|| Touched::Anything { uids: gone.clone() });
                let moved = tell_cohorts(&ws, Vec::new(), gone, gather.clone());
                let moved = moved.map(move |r| r.map(|_| Outcome::Deleted(n))).boxed();
                Ok(track_segments(&ws, moved, touched, gather))
            }
            Command::PutSegment {
                ws,
                id,
                name,
                filter,
            } => {
                let ws = self.workspace(ws)?;
                let id = {
                    let segments = ws.segments.read();
                    match id {
                        Some(id) if segments.contains_key(&id) => id,
                        Some(_) => return Err(Error::NotFound("segment")),
                        None => {
                            let max = self.limits().segments_per_workspace;
                            ws.check_new_segment(segments.len(), max)?;
                            ws.last_segment.fetch_add(1, Ordering::Relaxed) + 1
                        }
                    }
                };
                // Who matches it now (the lane applies this once every
                // earlier write of the workspace is done): its events start
                // from there.
                let members = tracking::baseline(&ws, &filter);
                let segment = Segment::new(id, name, filter, members);
                ws.segments.write().insert(id, Arc::new(segment));
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
                // In a cluster a restore record is one shard's part of a
                // set, found in that shard's stream.
                match (self.cluster_shards.get(), position) {
                    (Some(_), Some(position)) => {
                        let (shard, _) = super::clustered::split(position);
                        Ok(self.restore_shard(&snapshot_id, shard, image, keep_counters))
                    }
                    _ => Ok(self.restore(&snapshot_id, image, keep_counters)),
                }
            }
            Command::PutConnector { ws, connector } => {
                let ws = self.workspace(ws)?;
                let id = connector.id.clone();
                ws.connectors.write().insert(id, Arc::new(connector));
                Ok(done(Outcome::Done))
            }
            Command::DeleteConnector { ws, id } => {
                let ws = self.workspace(ws)?;
                if ws.connectors.write().remove(&id).is_none() {
                    return Err(Error::NotFound("connector"));
                }
                Ok(done(Outcome::Done))
            }
            Command::SetLimits(l) => {
                *self.limits.write() = InForce {
                    effective: Arc::new(StateLimits::in_force(&self.configured, Some(l))),
                    logged: Some(l),
                };
                Ok(done(Outcome::Done))
            }
        }
    }

    /// Replaces the state with `image`. With `keep_counters`, the id
    /// counters only ever go forward: the next workspace id and each
    /// workspace's last segment id and profile id bound are the larger of
    /// the live state's and the image's, so no id given out before the
    /// restore is given again.
    pub fn restore(&self, snapshot_id: &str, mut image: Image, keep_counters: bool) -> Pending {
        self.keep_counters(&mut image, keep_counters);
        self.install(image);
        tracing::info!(%snapshot_id, "state restored from snapshot");
        done(Outcome::Done)
    }

    /// Cluster mode: the shard count, set once at start. A restore record
    /// then restores its shard's part only ([`restore_shard`]).
    ///
    /// [`restore_shard`]: Self::restore_shard
    pub fn set_cluster_shards(&self, shards: u32) {
        let _ = self.cluster_shards.set(shards);
    }

    /// Cluster mode: replaces shard `shard`'s workspaces with those of
    /// `image` (one shard's file of a snapshot set), in place: the other
    /// shards' tails go on applying meanwhile, each to its own workspaces,
    /// and a reader sees each workspace wholly before or after. Only
    /// workspaces that existed when the restore began are replaced or
    /// removed: those up to the workspace counter then, which is the
    /// state's own on the control shard and, on the others, the image's
    /// `next_workspace` (the restore's leader writes it there: workspaces
    /// are created on the control shard's stream, so another shard's
    /// stream cannot say which exist). With `keep_counters`, as in
    /// [`restore`](Self::restore).
    pub fn restore_shard(
        &self,
        snapshot_id: &str,
        shard: u32,
        mut image: Image,
        keep_counters: bool,
    ) -> Pending {
        let shards = *self
            .cluster_shards
            .get()
            .expect("a shard's restore runs in cluster mode");
        let live = self.state();
        let control = shard == super::clustered::CONTROL;
        let cutoff = if control {
            live.next_workspace()
        } else {
            image.next_workspace
        };
        self.keep_counters(&mut image, keep_counters);
        let counter = if control { image.next_workspace } else { 0 };
        image.next_workspace = 0;
        let restored = State::from_image(image, |c| self.spawn_cohort(c));
        live.replace(
            |id| crate::cluster::shard_of(id, shards) == shard && id.0 <= cutoff,
            restored,
            counter,
        );
        tracing::info!(%snapshot_id, shard, "shard restored from snapshot set");
        done(Outcome::Done)
    }

    /// With `keep`, the image's id counters go no lower than the live
    /// state's (see [`restore`](Self::restore)).
    fn keep_counters(&self, image: &mut Image, keep: bool) {
        if keep {
            let live = self.state();
            image.next_workspace = image.next_workspace.max(live.next_workspace());
            for w in &mut image.workspaces {
                if let Some(now) = live.workspace(w.id) {
                    w.last_segment = w.last_segment.max(now.last_segment_id());
                    // Profile ids too: a braze_id given out since the
                    // snapshot never names another profile.
                    w.profiles.keep_ids_below(now.profiles.read().id_bound());
                }
            }
        }
    }

    /// The cohort, created (named after its id) if it does not exist yet
    /// and the workspace has room for it (`cohorts_per_workspace`).
    fn cohort(&self, ws: &Workspace, key: &CohortKey, at: Millis) -> Result<CohortEntry> {
        if let Some(e) = ws.cohorts.get(key) {
            return Ok(e.clone());
        }
        ws.check_new_cohort(key, self.limits().cohorts_per_workspace)?;
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

    /// Resolves a delta against the profile index and hands the cohort one
    /// ordered batch. A delta without identifiers changes nothing and
    /// creates nothing; one with identifiers creates a never-named cohort
    /// even if none of them matched.
    fn apply_delta(
        &self,
        ws: &Arc<Workspace>,
        key: CohortKey,
        changes: &[Change],
        at: Millis,
        position: Option<u64>,
    ) -> Pending {
        let key = &key;
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
        let profiles = ws.profiles.read();
        let resolved = profiles.resolve_many(changes.iter().flat_map(|c| &c.ids));
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
        // Who each profile is now: the actor makes the events later, and
        // they must not depend on writes applied meanwhile.
        let gather = self
            .ticket(ws.id, position, at)
            .map(|ticket| feed::Gather::new(ticket, Vec::new(), HashMap::new()));
        let feed = gather.as_ref().map(|gather| {
            let mut uids: Vec<Uid> = ops.iter().map(|op| op.0).collect();
            uids.sort_unstable();
            uids.dedup();
            // A thousand profiles at random: their details' cache misses
            // overlap when all are asked for first.
            let found: Vec<(Uid, &crate::profiles::Profile)> = uids
                .into_iter()
                .filter_map(|uid| Some((uid, profiles.get(uid)?)))
                .collect();
            for (_, p) in &found {
                p.prefetch_details();
            }
            let users = found
                .into_iter()
                .map(|(uid, p)| feed_user(uid, p))
                .collect();
            FeedNote {
                gather: gather.clone(),
                users: Arc::new(users),
            }
        });
        let known = feed.as_ref().map(|n| n.users.clone());
        drop(profiles);
        let tracking = ws.tracks_segments();
        let (reply, rx) = oneshot::channel();
        entry.addr.do_send(ApplyChanges {
            ops,
            unmatched,
            at,
            feed,
            changed: tracking,
            reply,
        });
        let (ws, key) = (ws.clone(), key.clone());
        let after = self.after.clone();
        rx.map(move |r| {
            let (outcome, changed) = r.map_err(|_| lost("cohort"))?;
            if tracking {
                let track = move || {
                    let touched = Touched::Cohort { key, uids: changed };
                    let known = known.as_deref().map_or(&[][..], Vec::as_slice);
                    segment_events(&ws, &touched, gather.as_deref(), known);
                };
                // A logged delta's segments are brought up to date once it
                // is answered (`After`); an unlogged one's (it changed
                // nothing) at once.
                match position {
                    Some(p) => {
                        after.lock().insert(p, Box::new(track));
                    }
                    None => track(),
                }
            }
            Ok(Outcome::Delta(outcome))
        })
        .boxed()
    }

    /// The image of the live state, taken between two commands of every
    /// workspace (the caller holds every lane). What needs no actor is
    /// copied now; each cohort is asked for its image, which its actor
    /// answers after every change already sent to it and before any sent
    /// later, so the caller may release the lanes as soon as this returns
    /// and await the future afterwards.
    pub fn image(&self) -> BoxFuture<'static, Result<Image>> {
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
        let limits = self.logged_limits();
        async move {
            let mut workspaces = Vec::with_capacity(parts.len());
            for (mut image, cohorts) in parts {
                for rx in cohorts {
                    image.cohorts.push(rx.await.map_err(|_| lost("cohort"))?);
                }
                image.cohorts.sort_by(|a, b| a.key.cmp(&b.key));
                workspaces.push(image);
            }
            Ok(Image {
                next_workspace,
                workspaces,
                limits,
            })
        }
        .boxed()
    }
}

impl Applier {
    /// The place in workspace `ws`'s feed of the command at `position`, if
    /// it is logged and the feed does not hold its events yet. A feed that
    /// cannot be opened loses its events (the error is logged), never the
    /// write.
    fn ticket(&self, ws: WorkspaceId, position: Option<u64>, at: Millis) -> Option<feed::Ticket> {
        let position = position?;
        match self.feeds.feed(ws) {
            Ok(f) => f.reserve(position, at),
            Err(e) => {
                tracing::error!(workspace = %ws, error = %e, "the change feed cannot be opened; this write's events are missing from it");
                None
            }
        }
    }
}

/// A profile as a feed event names it: its braze_id, external_id and
/// first device.
pub(super) fn feed_user(uid: Uid, p: &crate::profiles::Profile) -> feed::User {
    feed::User {
        uid,
        external_id: p.external_id.clone(),
        device_id: p.devices().first().cloned(),
    }
}

pub fn decode_image(id: &str, format: u32, bytes: &[u8]) -> Result<Image> {
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

/// The feed events of a track's recorded events and purchases (`users`:
/// who each was on, as the track applied; `None` for a profile gone
/// since, which cannot happen within one track).
fn track_events(
    track: &commands::Track,
    recorded: &[commands::Recorded],
    users: Vec<Option<feed::User>>,
) -> Vec<feed::Event> {
    recorded
        .iter()
        .zip(users)
        .filter_map(|(r, user)| {
            let user = user?;
            Some(if r.array == commands::InputArray::Purchases {
                let o = &track.purchases[r.index];
                feed::Event {
                    time: Some(o.time),
                    ..feed::Event::new(
                        feed::EventType::Purchase,
                        user,
                        feed::purchase_properties(
                            &o.name,
                            o.currency.as_deref(),
                            o.price,
                            o.properties.as_deref(),
                        ),
                    )
                }
            } else {
                let o = &track.events[r.index];
                feed::Event {
                    time: Some(o.time),
                    ..feed::Event::new(
                        feed::EventType::CustomEvent,
                        user,
                        feed::custom_event_properties(&o.name, o.properties.as_deref()),
                    )
                }
            })
        })
        .collect()
}

/// What a track wrote, for the saved segments: the profiles it wrote to,
/// the attribute names and events it wrote, and the first profile id it
/// may have created (`new_from`, the id bound before it).
fn track_touched(
    track: &commands::Track,
    report: &commands::TrackReport,
    new_from: Uid,
) -> Touched {
    let mut events: std::collections::BTreeSet<_> =
        track.events.iter().map(|e| e.name.clone()).collect();
    if !track.purchases.is_empty() {
        events.insert(commands::PURCHASE_EVENT.into());
    }
    Touched::Profiles {
        uids: report
            .updated
            .iter()
            .copied()
            .chain(report.recorded.iter().map(|r| r.uid))
            .collect(),
        paths: track
            .attributes
            .iter()
            .flat_map(|o| o.changes.iter().map(|(k, _)| k.clone()))
            .collect(),
        events,
        new_from,
    }
}

/// `pending`, then the saved segments brought up to date for what the
/// write touched (`None`: the workspace has none, or nothing a filter
/// reads changed), their events joining the command's.
fn track_segments(
    ws: &Arc<Workspace>,
    pending: Pending,
    touched: Option<Touched>,
    gather: Option<Arc<feed::Gather>>,
) -> Pending {
    let Some(touched) = touched else {
        return pending;
    };
    let ws = ws.clone();
    pending
        .map(move |r| {
            if r.is_ok() {
                segment_events(&ws, &touched, gather.as_deref(), &[]);
            }
            r
        })
        .boxed()
}

/// [`tracking::track`], its events added to the command's (if it makes
/// any). `known`: who the command's profiles are, by ascending id, when it
/// already looked them up (a delta's).
fn segment_events(
    ws: &Workspace,
    touched: &Touched,
    gather: Option<&feed::Gather>,
    known: &[feed::User],
) {
    let bare = |uid| feed::User {
        uid,
        external_id: None,
        device_id: None,
    };
    let events = tracking::track(ws, touched, known, &|uid| {
        gather.map_or_else(|| bare(uid), |g| g.user(uid))
    });
    if let Some(g) = gather {
        g.add(feed::Part::Segments, events);
    }
}

/// An event's empty `properties`.
const EMPTY: &str = "{}";

/// Tells every cohort of the workspace about merged and deleted profiles;
/// resolves when all of them have applied it. The memberships that changed
/// go to `gather`'s events; it completes once every cohort has added its
/// part (or at once, with no cohort to ask).
fn tell_cohorts(
    ws: &Workspace,
    merges: Vec<(Uid, Uid)>,
    deletes: Vec<Uid>,
    gather: Option<Arc<feed::Gather>>,
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
                feed: gather.clone(),
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

pub fn done(outcome: Outcome) -> Pending {
    future::ready(Ok(outcome)).boxed()
}

fn lost(who: &str) -> Error {
    Error::Internal(format!("{who} actor stopped before replying"))
}
