//! A workspace's lane: the actor that sequences that workspace's writes.
//!
//! Every workspace has its own lane, started on first use and spread
//! round-robin over the `engine.sequencer_arbiters` pool. A lane appends
//! its workspace's commands to the log (`log`: the shared write-ahead log,
//! whose group commit covers every lane's records at once, or in a
//! cluster the workspace's shard stream) and applies each once the log says
//! it is durable, in log order (`sequencer::Sequencer`), through the one
//! `Applier`. Lanes never wait for each other: a slow command in workspace
//! A delays A's later commands and nobody else's.
//!
//! Two more rules keep one workspace's work off the others' threads:
//!
//! - **Profile commands apply on a background pool.** A `/users/track`,
//!   `/users/identify` or `/users/delete` may touch many profiles (within
//!   `[limits]`, and each value into the column index); the lane hands
//!   its apply to the apply pool (`cohortd-apply`, one thread per core,
//!   under `SCHED_IDLE` like the parse and read pools: `threads::Pool`) and
//!   waits for it without taking its arbiter thread, so the other lanes on
//!   that arbiter go on. Its own later commands wait (`ctx.wait`), so the
//!   order is kept, and a workspace has at most one apply on the pool at
//!   a time. When the cores are short, another workspace's cohort deltas,
//!   probes and small requests run first (measured: `benches/isolation`
//!   phase 8). Deltas, names, keys and segments are cheap and apply
//!   inline.
//! - **A share of the in-flight writes.** A workspace may have at most
//!   `engine.max_inflight_writes_per_workspace` writes admitted at once
//!   ([`LaneHandle::slots`]); past that its writes get 503 while the
//!   others still have the rest of `engine.max_inflight_writes`.
//!
//! # Barriers
//!
//! The router runs the commands that span workspaces (a restore, the
//! limits in force) and snapshot cuts as barriers: [`Lanes::hold`] stops
//! every lane from appending (submits that arrive meanwhile wait in the
//! lane, in order) and resolves once every lane has applied every command
//! it appended; then no workspace command is between its log record and
//! its apply, and the log's last position is exactly what the state holds.
//! [`Lanes::release`] lets them go on, buffered submits first. A lane
//! started during a hold starts held.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::fut::wrap_future;
use actix::{Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message};
use futures_util::future::{self, FutureExt};
use hashbrown::HashMap;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Semaphore};

use super::apply::{done, Applier};
use super::command::{Command, Pending, Submit};
use super::log::{Log, LogFailure, LOG_FAILED};
use super::sequencer::{self, Admission, Sequencer, Settled};
use crate::error::Error;
use crate::model::WorkspaceId;
use crate::threads::Pool;

/// Stop appending; the reply comes once every appended command is applied.
#[derive(Message)]
#[rtype(result = "()")]
struct Hold {
    drained: oneshot::Sender<()>,
}

/// Go on appending, submits that waited first.
#[derive(Message)]
#[rtype(result = "()")]
struct Release;

/// What the engine holds of a lane.
#[derive(Clone)]
pub struct LaneHandle {
    pub addr: Addr<Lane>,
    /// This workspace's share of the in-flight writes.
    pub slots: Arc<Semaphore>,
}

/// Every workspace's lane, started on first use.
pub struct Lanes {
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    applier: Arc<Applier>,
    /// Where profile commands apply.
    apply_pool: Arc<Pool>,
    log: Log,
    per_workspace: usize,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    lanes: HashMap<WorkspaceId, LaneHandle>,
    held: bool,
}

impl Lanes {
    pub fn new(
        arbiters: Vec<ArbiterHandle>,
        applier: Arc<Applier>,
        log: Log,
        per_workspace: usize,
        apply_threads: usize,
    ) -> Lanes {
        assert!(!arbiters.is_empty(), "lanes need at least one arbiter");
        Lanes {
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            applier,
            apply_pool: Arc::new(Pool::new("cohortd-apply", apply_threads)),
            log,
            per_workspace: per_workspace.max(1),
            registry: Mutex::new(Registry::default()),
        }
    }

    /// The workspace's lane, started now if it has none (held, if a
    /// barrier is under way).
    pub fn lane(&self, ws: WorkspaceId) -> LaneHandle {
        let mut r = self.registry.lock();
        if let Some(l) = r.lanes.get(&ws) {
            return l.clone();
        }
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed);
        let arbiter = &self.arbiters[i % self.arbiters.len()];
        let (applier, log, held) = (self.applier.clone(), self.log.clone(), r.held);
        let apply_pool = self.apply_pool.clone();
        let addr = Lane::start_in_arbiter(arbiter, move |_| Lane {
            applier,
            apply_pool,
            log,
            seq: Sequencer::new(),
            due: VecDeque::new(),
            held: held.then(Held::default),
            outstanding: 0,
        });
        let handle = LaneHandle {
            addr,
            slots: Arc::new(Semaphore::new(self.per_workspace)),
        };
        r.lanes.insert(ws, handle.clone());
        handle
    }

    /// Holds every lane; resolves once each has applied everything it
    /// appended. One hold at a time (the router's barriers are sequential).
    pub fn hold(&self) -> impl std::future::Future<Output = ()> + 'static {
        let drained: Vec<_> = {
            let mut r = self.registry.lock();
            debug_assert!(!r.held, "one barrier at a time");
            r.held = true;
            r.lanes
                .values()
                .map(|l| {
                    let (tx, rx) = oneshot::channel();
                    l.addr.do_send(Hold { drained: tx });
                    rx
                })
                .collect()
        };
        // A lane that stopped has nothing left to apply.
        future::join_all(drained).map(|_| ())
    }

    /// Ends the hold.
    pub fn release(&self) {
        let mut r = self.registry.lock();
        r.held = false;
        for l in r.lanes.values() {
            l.addr.do_send(Release);
        }
    }
}

/// A command in the log, waiting for its record to be durable.
struct Waiting {
    position: u64,
    cmd: Command,
    reply: oneshot::Sender<Pending>,
}

/// While held: who waits for the lane to drain, and the submits that
/// arrived meanwhile.
#[derive(Default)]
struct Held {
    drained: Vec<oneshot::Sender<()>>,
    buffered: VecDeque<Submit>,
}

type LogError = LogFailure;

pub struct Lane {
    applier: Arc<Applier>,
    apply_pool: Arc<Pool>,
    log: Log,
    /// Appended, not yet durable (the ordering rules).
    seq: Sequencer<Waiting, LogError>,
    /// Durable, not yet applied: what waits behind a profile command
    /// applying on the blocking pool.
    due: VecDeque<Settled<Waiting, LogError>>,
    held: Option<Held>,
    /// Commands applied whose effects are not all done yet (their cohort
    /// actors, the saved segments after them).
    outstanding: usize,
}

impl Lane {
    /// Nothing appended is unapplied or unfinished: the workspace's state
    /// is the log's.
    fn is_idle(&self) -> bool {
        self.seq.is_idle() && self.due.is_empty() && self.outstanding == 0
    }

    /// Answers `reply` with `pending`'s outcome, polling it here: the lane
    /// knows when each command is done, whether or not its client waits.
    /// The command is done once what it left to do after its answer
    /// (`apply::After`, by its log `position`) has run too: after the
    /// answer is sent, here.
    fn finish(
        &mut self,
        position: u64,
        pending: Pending,
        reply: oneshot::Sender<Pending>,
        ctx: &mut Context<Self>,
    ) {
        let (tx, rx) = oneshot::channel();
        let answer =
            rx.map(|r| r.unwrap_or_else(|_| Err(Error::Internal("the lane stopped".into()))));
        let _ = reply.send(answer.boxed());
        self.outstanding += 1;
        ctx.spawn(wrap_future(pending).map(move |r, act: &mut Lane, ctx| {
            let _ = tx.send(r);
            if let Some(after) = act.applier.after(position) {
                after();
            }
            act.log.settled(position, true);
            act.outstanding -= 1;
            if act.outstanding == 0 {
                act.apply_due(ctx);
            }
        }));
    }

    /// Commands answered without a log record (and so without an fsync),
    /// by the rules of `sequencer::admit_*`.
    fn no_op(&self, cmd: &Command) -> Option<Pending> {
        let admission = match cmd {
            Command::ApplyDelta { changes, .. } => sequencer::admit_delta(changes),
            Command::NameCohort { ws, key, name, .. } => {
                let meta = self
                    .applier
                    .state()
                    .workspace(*ws)
                    .and_then(|w| w.cohort(key))
                    .map(|c| c.meta());
                let current = meta.as_ref().map(|m| (m.named, m.name.as_str()));
                sequencer::admit_name(name, self.is_idle(), current)
            }
            _ => Admission::Log,
        };
        match admission {
            Admission::Log => None,
            Admission::ApplyUnlogged => Some(self.applier.apply_or_fail(None, cmd.clone())),
            Admission::AlreadyDone => Some(done(super::command::Outcome::Done)),
        }
    }

    fn submit(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if let Some(answer) = self.no_op(&msg.cmd) {
            let _ = msg.reply.send(answer);
            return;
        }
        let appended = match self.log.append(&msg.cmd) {
            Ok(a) => a,
            Err(e) => {
                let _ = msg.reply.send(future::ready(Err(e)).boxed());
                return;
            }
        };
        if let Some(at) = &msg.logged_at {
            at.store(appended.position, std::sync::atomic::Ordering::Release);
        }
        let ticket = self.seq.push(
            appended.position,
            Waiting {
                position: appended.position,
                cmd: msg.cmd,
                reply: msg.reply,
            },
        );
        ctx.spawn(
            wrap_future(appended.durable).map(move |r, act: &mut Lane, ctx| {
                act.due.extend(act.seq.settle(ticket, r));
                act.apply_due(ctx);
            }),
        );
    }

    /// Applies the durable commands in order. A profile command goes to
    /// the blocking pool; the lane waits for it (and only it) before the
    /// next one.
    fn apply_due(&mut self, ctx: &mut Context<Self>) {
        while let Some(settled) = self.due.pop_front() {
            let (position, item) = match settled {
                Settled::Apply { position, item } => (position, item),
                Settled::Failed { item, error } => {
                    tracing::error!(error = %error, "log append failed; command not applied");
                    self.log.settled(item.position, false);
                    let failed = future::ready(Err(Error::Unavailable(LOG_FAILED.into())));
                    let _ = item.reply.send(failed.boxed());
                    continue;
                }
            };
            if self.outstanding > 0 && self.applier.needs_quiet(&item.cmd) {
                // Resumed once the last outstanding command is done.
                self.due.push_front(Settled::Apply { position, item });
                return;
            }
            if !is_profile_command(&item.cmd) {
                let pending = self.applier.apply_or_fail(Some(position), item.cmd);
                self.finish(position, pending, item.reply, ctx);
                continue;
            }
            let applier = self.applier.clone();
            let Waiting { cmd, reply, .. } = item;
            let pool = self.apply_pool.clone();
            let applied = async move {
                pool.run(move || {
                    #[cfg(debug_assertions)]
                    test_hold(&cmd);
                    applier.apply_or_fail(Some(position), cmd)
                })
                .await
            };
            ctx.wait(wrap_future(applied).map(move |r, act: &mut Lane, ctx| {
                let pending = r.unwrap_or_else(|| {
                    future::ready(Err(Error::Internal("a profile write failed".into()))).boxed()
                });
                act.finish(position, pending, reply, ctx);
                act.apply_due(ctx);
            }));
            return;
        }
        self.answer_drained();
    }

    /// While held and idle: tell the barrier.
    fn answer_drained(&mut self) {
        if !self.is_idle() {
            return;
        }
        if let Some(h) = &mut self.held {
            for tx in h.drained.drain(..) {
                let _ = tx.send(());
            }
        }
    }
}

/// The commands whose apply may touch many profiles (saving a segment
/// evaluates it over all of them).
fn is_profile_command(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Track { .. }
            | Command::Identify { .. }
            | Command::DeleteUsers { .. }
            | Command::PutSegment { .. }
    )
}

impl Actor for Lane {
    type Context = Context<Self>;
}

impl Handler<Submit> for Lane {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        match &mut self.held {
            Some(h) => h.buffered.push_back(msg),
            None => self.submit(msg, ctx),
        }
    }
}

impl Handler<Hold> for Lane {
    type Result = ();

    fn handle(&mut self, msg: Hold, _: &mut Context<Self>) {
        self.held
            .get_or_insert_with(Held::default)
            .drained
            .push(msg.drained);
        self.answer_drained();
    }
}

impl Handler<Release> for Lane {
    type Result = ();

    fn handle(&mut self, _: Release, ctx: &mut Context<Self>) {
        let Some(held) = self.held.take() else {
            return;
        };
        for msg in held.buffered {
            self.submit(msg, ctx);
        }
    }
}

/// Debug builds only: while the file named by `COHORTD_TEST_HOLD_TRACK`
/// exists, a `/users/track` apply of the workspace the file names (its
/// content, e.g. `ws_1`) waits on its blocking thread, after writing
/// `<file>.reached`; so tests can hold one workspace's command open and
/// watch another's go through.
#[cfg(debug_assertions)]
fn test_hold(cmd: &Command) {
    let Command::Track { ws, .. } = cmd else {
        return;
    };
    let Some(path) = std::env::var_os("COHORTD_TEST_HOLD_TRACK").map(std::path::PathBuf::from)
    else {
        return;
    };
    match std::fs::read_to_string(&path) {
        Ok(named) if named.trim() == ws.to_string() => {}
        _ => return,
    }
    let mut reached = path.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(&reached, b"");
    tracing::info!(workspace = %ws, "track apply held (COHORTD_TEST_HOLD_TRACK)");
    while path.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
