//! Background threads: the pools that run one request's CPU-heavy work
//! (filter evaluation, parsing large bodies), at a lower scheduling
//! priority than the threads every request needs.
//!
//! On a machine with few cores, two threads parsing 8 MiB bodies keep both
//! cores busy; the HTTP workers, the lanes, the log writer — and the
//! kernel threads that complete its fsync — then wait their turn behind
//! them, and every workspace's writes slow down with the heavy one. A
//! [`Pool`]'s threads run under Linux's `SCHED_IDLE` policy (elsewhere, or
//! where the kernel refuses it, at `nice` +[`BACKGROUND_NICE`]): they get
//! a core only when no normal thread wants it, and a normal thread that
//! wakes takes the core from them at once. At `nice` +10 a waking thread
//! could still wait out part of a pool thread's slice: another
//! workspace's 100-id delta had a p99 of 2.6–3.5 ms beside a workspace
//! tracking and counting at full speed, against 1.4–2.0 ms under
//! `SCHED_IDLE` (`benches/isolation --only 8`, docs/decisions.md).
//!
//! The price: while normal threads keep every core busy, pool work waits
//! (at `nice` +10 it got ~10 % of a core per thread). Those threads are
//! the HTTP workers, lanes and log writer, whose work per request is small
//! and bounded (`[limits]`); a flood of small requests that saturates them
//! already delays every workspace's requests on the same workers, and now
//! also delays every workspace's tracks, large bodies and filter
//! evaluations until it eases.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;

/// How much lower than normal a background thread runs.
pub const BACKGROUND_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of background threads taking jobs in order. Admission
/// (how many jobs may wait, for how long) is the caller's: the pool only
/// runs what it is given.
pub struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts `threads` threads named `{name}-{i}`; they end when the pool
    /// is dropped.
    pub fn new(name: &str, threads: usize) -> Pool {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = rx.lock().recv();
                        match job {
                            // A panicking job drops its reply (its caller
                            // sees an internal error); the thread goes on.
                            Ok(job) => {
                                let _ = catch_unwind(AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("background threads start");
        }
        Pool { jobs }
    }

    /// Queues `job`; false if the pool has stopped.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.jobs.send(Box::new(job)).is_ok()
    }

    /// Runs `work` on the pool and waits for its result (`None`: it
    /// panicked, or the pool has stopped).
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.spawn(move || {
            let _ = tx.send(work());
        }) {
            return None;
        }
        rx.await.ok()
    }
}

/// Names the calling thread as `ps`, `top -H` and `/proc/<pid>/task/*/comm`
/// show it (at most 15 bytes; Linux only). For threads started by others
/// (actix arbiters are all "actix-rt|system…"), so an operator can tell the
/// lanes, the router and the cohort arbiters apart.
pub fn name_current(name: &str) {
    #[cfg(target_os = "linux")]
    {
        let short = &name.as_bytes()[..name.len().min(15)];
        if let Err(e) = std::fs::write("/proc/thread-self/comm", short) {
            tracing::debug!(error = %e, name, "cannot name a thread");
        }
    }
}

/// Lowers the calling thread's nice value by [`BACKGROUND_NICE`], and no
/// more: for work that must not take cores from requests but must not
/// stop either while they keep every core busy (a connector's delivery:
/// under `SCHED_IDLE` a saturated server would never export; at +10 it
/// gets about a tenth of a contended core and all of an idle one).
pub fn lower_nice() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory-safety preconditions; it only
        // reads its integer arguments. `who = 0` names the calling thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower a thread's nice value; it runs at normal priority"
            );
        }
    }
}

/// Puts the calling thread under `SCHED_IDLE`, or lowers its nice value by
/// [`BACKGROUND_NICE`] where that is refused. On Linux both are the
/// thread's own (`who = 0` / `pid = 0` name the calling thread), so the
/// rest of the process keeps its priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param that outlives the call,
        // which only reads it.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot run a background thread under SCHED_IDLE; lowering its nice value instead"
        );
        // SAFETY: setpriority has no memory-safety preconditions; it only
        // reads its integer arguments.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower a background thread's priority; it runs at normal priority"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_panic_does_not_stop_the_pool() {
        let pool = Pool::new("test-bg", 1);
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
        let panicked: Option<()> = pool.run(|| panic!("boom")).await;
        assert_eq!(panicked, None);
        assert_eq!(pool.run(|| 1).await, Some(1), "the thread goes on");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lower_nice_lowers_only_the_calling_thread() {
        // SAFETY: getpriority only reads its integer arguments.
        let own = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = own();
        let lowered = std::thread::spawn(move || {
            lower_nice();
            own()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + BACKGROUND_NICE).min(19));
        assert_eq!(own(), before, "the calling thread only");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_can_be_named() {
        let comm = std::thread::spawn(|| {
            name_current("cohortd-test-name-long");
            std::fs::read_to_string("/proc/thread-self/comm").unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(comm.trim_end(), "cohortd-test-na");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_threads_run_at_a_lower_priority() {
        let pool = Pool::new("test-nice", 1);
        // SAFETY: sched_getscheduler only reads its integer argument.
        let policy = pool
            .run(|| unsafe { libc::sched_getscheduler(0) })
            .await
            .unwrap();
        assert_eq!(
            policy,
            libc::SCHED_IDLE,
            "pool threads run under SCHED_IDLE"
        );
        // SAFETY: as above.
        let ours = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(ours, libc::SCHED_OTHER, "the caller keeps its policy");
    }
}
