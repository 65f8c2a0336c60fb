//! The pool that CPU-heavy reads run on: filter evaluation for segment
//! counts, member pages, membership checks, previews and a user's
//! memberships.
//!
//! Those reads can take a long time on a large workspace or a pathological
//! filter. On the HTTP workers they would hold a worker for all of it, and
//! `/healthz`, `/readyz` and `/metrics` (and every other tenant's requests
//! on that worker) would wait. Here they run on `reads.threads` threads of
//! their own, and the HTTP worker only awaits the answer:
//!
//! - **Admission.** A read takes one of `threads` slots; when all are
//!   taken it waits at most `reads.queue_wait_millis` for one, then is
//!   refused with 503 `read_pool_busy` (nothing was evaluated).
//! - **A workspace's share.** One workspace's reads hold at most `share`
//!   slots at once (`reads.per_workspace_threads`; automatic: half the
//!   pool, at least one, see `ReadsConfig::workspace_share`), so one
//!   tenant's heavy reads never take every thread. A read whose workspace
//!   is at its share waits for one of that workspace's reads to end, within
//!   the same `queue_wait_millis`, and is refused with 503 `read_pool_busy`
//!   (`Error::ReadShareBusy`, its own message) when none does; it waits in
//!   its workspace's queue, not the pool's, so it takes no place ahead of
//!   another workspace's read. Only a read holding its workspace's permit
//!   queues for a slot: the pool's queue holds at most `share` reads of any
//!   one workspace. Both queues are FIFO (tokio's semaphore). When the
//!   share is the whole pool (one thread) there is nothing to leave to
//!   others, and admission is the pool's alone.
//! - **Budget.** From the moment it has a slot, a read has
//!   `reads.budget_millis`. Evaluation checks the deadline cooperatively
//!   (`segment::Deadline`: every few hundred profiles scanned, between the
//!   children of `and`/`or`, per segment and per user checked), so an
//!   overrun really stops the work, frees the thread, and answers 503
//!   `read_budget_exceeded`.
//! - A request whose client goes away keeps its slot (and its share) until
//!   its evaluation ends (at the latest at the deadline): the slot count
//!   bounds the CPU these reads use, whoever is still waiting for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::config::ReadsConfig;
use crate::error::{Error, Result};
use crate::model::WorkspaceId;
use crate::segment::{Deadline, OutOfTime};

pub struct ReadPool {
    threads: usize,
    slots: Arc<Semaphore>,
    /// `None` when a workspace's share is the whole pool.
    shares: Option<Arc<Shares>>,
    pool: crate::threads::Pool,
    queue_wait: Duration,
    budget: Duration,
}

impl ReadPool {
    /// Starts the pool's threads (they end when the pool is dropped).
    pub fn new(config: &ReadsConfig) -> ReadPool {
        let threads = config.pool_threads();
        let share = config.workspace_share();
        let pool = crate::threads::Pool::new("cohortd-read", threads);
        ReadPool {
            threads,
            slots: Arc::new(Semaphore::new(threads)),
            shares: (share < threads).then(|| {
                Arc::new(Shares {
                    share,
                    open: Mutex::new(HashMap::new()),
                })
            }),
            pool,
            queue_wait: Duration::from_millis(config.queue_wait_millis),
            budget: Duration::from_millis(config.budget_millis),
        }
    }

    /// Runs `read`, a read of workspace `ws`, on the pool with a fresh
    /// deadline, and answers what it returns: 503 `read_pool_busy` when
    /// neither a permit of the workspace's share nor then a thread frees
    /// up within the queue wait, 503 `read_budget_exceeded` when the read
    /// ran out of time.
    pub async fn run<T: Send + 'static>(
        &self,
        ws: WorkspaceId,
        read: impl FnOnce(&Deadline) -> Result<T, Stop> + Send + 'static,
    ) -> Result<T> {
        // One wait for both queues: the share's, then the pool's.
        let until = Instant::now() + self.queue_wait;
        let share = match &self.shares {
            Some(shares) => Some(shares.take(ws, until).await?),
            None => None,
        };
        let slot = match timeout_at(until, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(Error::ReadPoolBusy),
        };
        let budget = self.budget;
        let budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        let (reply, answer) = oneshot::channel();
        let job = move || {
            #[cfg(debug_assertions)]
            test_hold(ws);
            let deadline = Deadline::after(budget);
            let result = read(&deadline);
            drop(slot);
            drop(share);
            let _ = reply.send(result);
        };
        if !self.pool.spawn(job) {
            return Err(Error::Internal("the read pool has stopped".into()));
        }
        match answer.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Stop::OutOfTime)) => Err(Error::ReadBudgetExceeded(budget_ms)),
            Ok(Err(Stop::Error(e))) => Err(e),
            Err(_) => Err(Error::Internal("a read panicked on the read pool".into())),
        }
    }

    /// A read's time budget (`reads.budget_millis`).
    pub fn budget(&self) -> Duration {
        self.budget
    }

    pub fn budget_millis(&self) -> u64 {
        u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX)
    }

    /// Slots free right now.
    pub fn idle(&self) -> usize {
        self.slots.available_permits()
    }

    /// Reads holding a thread right now (`/metrics`).
    pub fn busy(&self) -> usize {
        self.threads - self.idle()
    }
}

/// Each workspace's share of the pool: a semaphore of `share` permits per
/// workspace with a read waiting or running. An entry exists only while
/// one does (`users` counts them), so the map is bounded by the reads in
/// flight, not by the number of workspaces ever seen.
struct Shares {
    share: usize,
    open: Mutex<HashMap<WorkspaceId, Open>>,
}

struct Open {
    permits: Arc<Semaphore>,
    users: usize,
}

/// A read's place in its workspace's share, from the moment it asks until
/// it ends (or gives up); it holds one permit once granted.
struct SharePlace {
    shares: Arc<Shares>,
    ws: WorkspaceId,
    permit: Option<OwnedSemaphorePermit>,
}

impl Shares {
    /// Waits until `until` for a permit of `ws`'s share.
    async fn take(self: &Arc<Self>, ws: WorkspaceId, until: Instant) -> Result<SharePlace> {
        let permits = {
            let mut open = self.open.lock();
            let entry = open.entry(ws).or_insert_with(|| Open {
                permits: Arc::new(Semaphore::new(self.share)),
                users: 0,
            });
            entry.users += 1;
            entry.permits.clone()
        };
        // From here the place is counted: dropping it (a refusal, or a
        // client that went away while this waited) gives it back.
        let mut place = SharePlace {
            shares: self.clone(),
            ws,
            permit: None,
        };
        match timeout_at(until, permits.acquire_owned()).await {
            Ok(Ok(permit)) => {
                place.permit = Some(permit);
                Ok(place)
            }
            _ => Err(Error::ReadShareBusy(self.share)),
        }
    }

    /// Workspaces with a read waiting or running.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.lock().len()
    }
}

impl Drop for SharePlace {
    fn drop(&mut self) {
        // The permit first, so that the entry is never removed while a
        // permit of it is out.
        drop(self.permit.take());
        let mut open = self.shares.open.lock();
        if let Some(entry) = open.get_mut(&self.ws) {
            entry.users -= 1;
            if entry.users == 0 {
                open.remove(&self.ws);
            }
        }
    }
}

/// Debug builds only: while the file named by `COHORTD_TEST_HOLD_READS`
/// exists and names this read's workspace (`ws_N`, one of its
/// whitespace-separated words), the read waits on its thread before it
/// starts, holding its slot and its share, so that tests can fill a
/// workspace's share and see what other reads get. Logs one line per held
/// read.
#[cfg(debug_assertions)]
fn test_hold(ws: WorkspaceId) {
    let Some(path) = std::env::var_os("COHORTD_TEST_HOLD_READS") else {
        return;
    };
    let name = ws.to_string();
    let held = || {
        std::fs::read_to_string(&path)
            .is_ok_and(|text| text.split_whitespace().any(|word| word == name))
    };
    if !held() {
        return;
    }
    tracing::info!(workspace = %ws, "pooled read held (COHORTD_TEST_HOLD_READS)");
    while held() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Why a pooled read ended without an answer.
#[derive(Debug)]
pub enum Stop {
    /// Its deadline passed.
    OutOfTime,
    /// Any other failure (an unknown user, a vanished cohort).
    Error(Error),
}

impl From<OutOfTime> for Stop {
    fn from(_: OutOfTime) -> Stop {
        Stop::OutOfTime
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: WorkspaceId = WorkspaceId(1);
    const B: WorkspaceId = WorkspaceId(2);

    fn pool(threads: usize, wait_ms: u64, budget_ms: u64) -> ReadPool {
        shared_pool(threads, 0, wait_ms, budget_ms)
    }

    fn shared_pool(threads: usize, share: usize, wait_ms: u64, budget_ms: u64) -> ReadPool {
        ReadPool::new(&ReadsConfig {
            threads,
            per_workspace_threads: share,
            queue_wait_millis: wait_ms,
            budget_millis: budget_ms,
        })
    }

    /// Workspaces with a read waiting or running.
    fn open(p: &ReadPool) -> usize {
        p.shares.as_ref().map_or(0, |s| s.open())
    }

    /// Starts a read of `ws` that runs until the returned sender is used
    /// (or dropped), and waits until it holds a thread.
    async fn hold(
        p: &Arc<ReadPool>,
        ws: WorkspaceId,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<()>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let idle = p.idle();
        let task = {
            let p = p.clone();
            tokio::spawn(async move {
                p.run(ws, move |_| {
                    let _ = held.recv();
                    Ok(())
                })
                .await
            })
        };
        while p.idle() == idle {
            tokio::task::yield_now().await;
        }
        (release, task)
    }

    #[tokio::test]
    async fn a_read_runs_and_answers() {
        let p = pool(1, 100, 1000);
        assert_eq!(p.run(A, |_| Ok(7)).await.unwrap(), 7);
        assert_eq!(p.idle(), 1);
    }

    #[tokio::test]
    async fn a_read_past_its_budget_is_stopped() {
        let p = pool(1, 100, 20);
        let r = p
            .run(A, |d: &Deadline| -> Result<(), Stop> {
                loop {
                    d.check()?;
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .await;
        assert_eq!(r.unwrap_err(), Error::ReadBudgetExceeded(20));
        assert_eq!(
            p.run(A, |_| Ok(1)).await.unwrap(),
            1,
            "the thread is free again"
        );
    }

    #[tokio::test]
    async fn a_full_pool_refuses_after_the_wait() {
        let p = Arc::new(pool(1, 10, 10_000));
        let (release, busy) = hold(&p, A).await;
        // Another workspace too: with one thread there is no share to keep.
        for ws in [A, B] {
            assert_eq!(
                p.run(ws, |_| Ok(())).await.unwrap_err(),
                Error::ReadPoolBusy
            );
        }
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_panicking_read_is_an_internal_error_and_the_thread_survives() {
        let p = pool(1, 100, 1000);
        let r: Result<()> = p.run(A, |_| panic!("boom")).await;
        assert!(matches!(r, Err(Error::Internal(_))));
        assert_eq!(p.run(A, |_| Ok(2)).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_workspace_at_its_share_is_refused_while_others_get_threads() {
        // Four threads, automatic share: two per workspace.
        let p = Arc::new(shared_pool(4, 0, 10, 10_000));
        let (a1, t1) = hold(&p, A).await;
        let (a2, t2) = hold(&p, A).await;
        assert_eq!(p.idle(), 2, "A holds its share");
        assert_eq!(
            p.run(A, |_| Ok(())).await.unwrap_err(),
            Error::ReadShareBusy(2),
            "A's third read, with two threads idle"
        );
        assert_eq!(p.idle(), 2, "the refused read took no thread");
        // B gets a thread; and its own share is two as well.
        assert_eq!(p.run(B, |_| Ok(5)).await.unwrap(), 5);
        let (b1, t3) = hold(&p, B).await;
        let (b2, t4) = hold(&p, B).await;
        assert_eq!(p.idle(), 0);
        assert_eq!(
            p.run(B, |_| Ok(())).await.unwrap_err(),
            Error::ReadShareBusy(2)
        );
        // A third workspace, under its share, finds the pool full.
        assert_eq!(
            p.run(WorkspaceId(3), |_| Ok(())).await.unwrap_err(),
            Error::ReadPoolBusy
        );
        for (release, task) in [(a1, t1), (a2, t2), (b1, t3), (b2, t4)] {
            release.send(()).unwrap();
            task.await.unwrap().unwrap();
        }
        assert_eq!((p.idle(), open(&p)), (4, 0), "every share given back");
        assert_eq!(p.run(A, |_| Ok(1)).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_read_waiting_for_its_share_gets_it_when_one_ends_and_takes_no_thread_meanwhile() {
        let p = Arc::new(shared_pool(2, 1, 60_000, 10_000));
        let (a1, t1) = hold(&p, A).await;
        let waiting = {
            let p = p.clone();
            tokio::spawn(async move { p.run(A, |_| Ok("second")).await })
        };
        // It is queued on A's share, not on the pool: B's read runs on the
        // thread A left.
        while p.shares.as_ref().unwrap().open.lock()[&A].users < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(p.idle(), 1);
        assert_eq!(p.run(B, |_| Ok(3)).await.unwrap(), 3);
        assert!(!waiting.is_finished());
        a1.send(()).unwrap();
        t1.await.unwrap().unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), "second");
        assert_eq!((p.idle(), open(&p)), (2, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_no_trace() {
        let p = Arc::new(shared_pool(2, 1, 60_000, 10_000));
        let (a1, t1) = hold(&p, A).await;
        let waiting = {
            let p = p.clone();
            tokio::spawn(async move { p.run(A, |_| Ok(())).await })
        };
        while p.shares.as_ref().unwrap().open.lock()[&A].users < 2 {
            tokio::task::yield_now().await;
        }
        // The client went away: its future is dropped while it waits.
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert_eq!(p.shares.as_ref().unwrap().open.lock()[&A].users, 1);
        a1.send(()).unwrap();
        t1.await.unwrap().unwrap();
        assert_eq!((p.idle(), open(&p)), (2, 0));
        // And the share is whole again.
        let (a2, t2) = hold(&p, A).await;
        a2.send(()).unwrap();
        t2.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn with_one_thread_a_lone_workspace_uses_it() {
        for share in [0, 1, 5] {
            let p = Arc::new(shared_pool(1, share, 10, 10_000));
            assert!(p.shares.is_none(), "the share is the whole pool");
            assert_eq!(p.run(A, |_| Ok(1)).await.unwrap(), 1);
            let (a1, t1) = hold(&p, A).await;
            assert_eq!(p.run(A, |_| Ok(())).await.unwrap_err(), Error::ReadPoolBusy);
            a1.send(()).unwrap();
            t1.await.unwrap().unwrap();
        }
    }
}
