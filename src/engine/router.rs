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

use std::sync::Arc;

use actix::{Actor, ArbiterHandle, Context, Handler, Message};
use compact_str::CompactString;
use futures_util::future::{self, BoxFuture, FutureExt};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::cohort::{ApplyChanges, Cohort, CohortCell, CohortMeta, DeltaOutcome, MoveMembers};
use super::state::{CohortEntry, ImportKey, State, Workspace};
use crate::error::{Error, Result};
use crate::keys::KeyHash;
use crate::model::{Change, CohortKey, Identifier, Millis, Uid, WorkspaceId};
use crate::profiles::commands::{
    self, AliasReport, Identify, IdentifyReport, NewAliases, Track, TrackReport,
};

/// Every mutation cohortd accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

/// A command's completion: resolves once its effect is visible to readers.
pub type Pending = BoxFuture<'static, Result<Outcome>>;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    pub cmd: Command,
    pub reply: oneshot::Sender<Pending>,
}

pub struct Router {
    state: Arc<State>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    history_len: usize,
}

impl Router {
    pub fn new(state: Arc<State>, arbiters: Vec<ArbiterHandle>, history_len: usize) -> Self {
        assert!(
            !arbiters.is_empty(),
            "cohort actors need at least one arbiter"
        );
        Router {
            state,
            arbiters,
            next_arbiter: 0,
            history_len,
        }
    }

    fn workspace(&self, id: WorkspaceId) -> Result<Arc<Workspace>> {
        self.state.workspace(id).ok_or(Error::NotFound("workspace"))
    }

    /// The cohort, created (named after its id) if it does not exist yet.
    /// Cohort actors are placed round-robin over the arbiter pool.
    fn cohort(&mut self, ws: &Workspace, key: &CohortKey, at: Millis) -> CohortEntry {
        if let Some(e) = ws.cohorts.get(key) {
            return e.clone();
        }
        let meta = CohortMeta {
            name: key.cohort_id.to_string(),
            created_at: at,
            named: false,
            updated_at: at,
        };
        let cell = Arc::new(CohortCell::new(key.clone(), meta, self.history_len));
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let actor_cell = cell.clone();
        let addr = Cohort::start_in_arbiter(arbiter, move |_| Cohort::new(actor_cell));
        let entry = CohortEntry { cell, addr };
        ws.cohorts.insert(key.clone(), entry.clone());
        entry
    }

    fn apply(&mut self, cmd: Command) -> Result<Pending> {
        match cmd {
            Command::CreateWorkspace { name, rest_key, at } => {
                let id = self.state.next_workspace_id();
                self.state
                    .insert_workspace(Workspace::new(id, name, rest_key, at));
                Ok(done(Outcome::Workspace(id)))
            }
            Command::CreateImportKey { ws, key } => {
                let ws = self.workspace(ws)?;
                self.state.insert_import_key(&ws, key);
                Ok(done(Outcome::Done))
            }
            Command::RevokeImportKey {
                ws,
                partner,
                key_id,
            } => {
                let ws = self.workspace(ws)?;
                if !self.state.remove_import_key(&ws, &partner, &key_id) {
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
                self.cohort(&ws, &key, at)
                    .cell
                    .rename(&name, created_at, at);
                Ok(done(Outcome::Done))
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
                let report = commands::apply_track(&mut ws.profiles.write(), &track);
                Ok(done(Outcome::Tracked(report)))
            }
            Command::Identify { ws, identify } => {
                let ws = self.workspace(ws)?;
                let report = commands::apply_identify(&mut ws.profiles.write(), &identify);
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
        }
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
        {
            let profiles = ws.profiles.read();
            for change in changes {
                for id in &change.ids {
                    match profiles.resolve(id) {
                        Some(uid) => ops.push((uid, !change.remove)),
                        None => unmatched.push(id),
                    }
                }
            }
        }
        let unmatched = count_distinct(unmatched);
        let entry = self.cohort(ws, key, at);
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

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) {
        let pending = match self.apply(msg.cmd) {
            Ok(p) => p,
            Err(e) => future::ready(Err(e)).boxed(),
        };
        let _ = msg.reply.send(pending);
    }
}
