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
//! - **Budget.** From the moment it has a slot, a read has
//!   `reads.budget_millis`. Evaluation checks the deadline cooperatively
//!   (`segment::Deadline`: every few hundred profiles scanned, between the
//!   children of `and`/`or`, per segment and per user checked), so an
//!   overrun really stops the work, frees the thread, and answers 503
//!   `read_budget_exceeded`.
//! - A request whose client goes away keeps its slot until its evaluation
//!   ends (at the latest at the deadline): the slot count bounds the CPU
//!   these reads use, whoever is still waiting for them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Semaphore};

use crate::config::ReadsConfig;
use crate::error::{Error, Result};
use crate::segment::{Deadline, OutOfTime};

type Job = Box<dyn FnOnce() + Send>;

pub struct ReadPool {
    threads: usize,
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    queue_wait: Duration,
    budget: Duration,
}

impl ReadPool {
    /// Starts the pool's threads (they end when the pool is dropped).
    pub fn new(config: &ReadsConfig) -> ReadPool {
        let threads = config.pool_threads();
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("cohortd-read-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().recv();
                    match job {
                        // A panicking read drops its reply (the caller
                        // answers 500); the thread goes on.
                        Ok(job) => {
                            let _ = catch_unwind(AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                })
                .expect("the read pool's threads start");
        }
        ReadPool {
            threads,
            slots: Arc::new(Semaphore::new(threads)),
            jobs,
            queue_wait: Duration::from_millis(config.queue_wait_millis),
            budget: Duration::from_millis(config.budget_millis),
        }
    }

    /// Runs `read` on the pool with a fresh deadline, and answers what it
    /// returns: 503 `read_pool_busy` when no thread frees up in time, 503
    /// `read_budget_exceeded` when the read ran out of time.
    pub async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Deadline) -> Result<T, Stop> + Send + 'static,
    ) -> Result<T> {
        let slot =
            match tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => return Err(Error::ReadPoolBusy),
            };
        let deadline = Deadline::after(self.budget);
        let budget_ms = u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX);
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = read(&deadline);
            drop(slot);
            let _ = reply.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::Internal("the read pool has stopped".into()))?;
        match answer.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Stop::OutOfTime)) => Err(Error::ReadBudgetExceeded(budget_ms)),
            Ok(Err(Stop::Error(e))) => Err(e),
            Err(_) => Err(Error::Internal("a read panicked on the read pool".into())),
        }
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

    fn pool(threads: usize, wait_ms: u64, budget_ms: u64) -> ReadPool {
        ReadPool::new(&ReadsConfig {
            threads,
            queue_wait_millis: wait_ms,
            budget_millis: budget_ms,
        })
    }

    #[tokio::test]
    async fn a_read_runs_and_answers() {
        let p = pool(1, 100, 1000);
        assert_eq!(p.run(|_| Ok(7)).await.unwrap(), 7);
        assert_eq!(p.idle(), 1);
    }

    #[tokio::test]
    async fn a_read_past_its_budget_is_stopped() {
        let p = pool(1, 100, 20);
        let r = p
            .run(|d: &Deadline| -> Result<(), Stop> {
                loop {
                    d.check()?;
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .await;
        assert_eq!(r.unwrap_err(), Error::ReadBudgetExceeded(20));
        assert_eq!(
            p.run(|_| Ok(1)).await.unwrap(),
            1,
            "the thread is free again"
        );
    }

    #[tokio::test]
    async fn a_full_pool_refuses_after_the_wait() {
        let p = Arc::new(pool(1, 10, 10_000));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = {
            let p = p.clone();
            tokio::spawn(async move {
                p.run(move |_| {
                    let _ = held.recv();
                    Ok(())
                })
                .await
            })
        };
        while p.idle() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(p.run(|_| Ok(())).await.unwrap_err(), Error::ReadPoolBusy);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_panicking_read_is_an_internal_error_and_the_thread_survives() {
        let p = pool(1, 100, 1000);
        let r: Result<()> = p.run(|_| panic!("boom")).await;
        assert!(matches!(r, Err(Error::Internal(_))));
        assert_eq!(p.run(|_| Ok(2)).await.unwrap(), 2);
    }
}
