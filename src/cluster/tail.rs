//! A follower's tail of one shard: the shard's records in stream order,
//! from the one after the last this node applied, handed over in batches
//! to whatever applies them (the engine's `Replay`, docs/cluster.md), and
//! the sequence applied so far, for reads that must see a given write
//! (`X-Cohortd-Min-Sequence`: [`Tail::wait_applied`]).
//!
//! A batch is what the stream had ready, up to [`BATCH`] records: one
//! hand-over per batch keeps a busy shard's followers from paying a
//! message per record, and an idle one's from waiting for a batch to fill.
//! The applier says when a batch is applied ([`Apply`] resolves), and only
//! then does the applied sequence move on: a read that waits for sequence
//! `s` sees every record up to `s` applied.
//!
//! The reader is JetStream's ordered consumer, which re-creates itself
//! after a gap or a lost server and starts again after the last sequence
//! it delivered; a read that fails anyway (no server at all) is retried
//! after a pause from the last sequence applied, so nothing is skipped and
//! nothing is applied twice. A consumer that goes quiet while the stream
//! holds records after the last one applied (its server died and it did
//! not recover: seen with one of three servers killed) is replaced the
//! same way, after [`QUIET`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::log::{Record, ShardLog};

/// Records per hand-over, at most.
pub const BATCH: usize = 512;

/// How long a failed read waits before it starts again.
const RETRY: Duration = Duration::from_millis(500);

/// How long a read may deliver nothing before the tail checks that the
/// stream has nothing more for it.
const QUIET: Duration = Duration::from_secs(1);

/// Applies one batch of records, in order; resolves once they are applied.
pub type Apply = Box<dyn FnMut(Vec<Record>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One shard's tail, running on a task of its own until dropped.
pub struct Tail {
    applied: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Tail {
    /// Starts tailing `log` after sequence `after` (what this node has
    /// applied already), handing batches to `apply`.
    pub fn start(log: ShardLog, after: u64, apply: Apply) -> Tail {
        let (tx, applied) = watch::channel(after);
        let task = tokio::spawn(run(log, after, apply, tx));
        Tail { applied, task }
    }

    /// The last sequence applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until sequence `sequence` is applied, up to `timeout`; whether
    /// it was.
    pub async fn wait_applied(&self, sequence: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= sequence))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the tail and returns the last sequence applied: nothing after
    /// it was handed over, or will be (becoming leader starts the writer
    /// after it).
    pub async fn stop(self) -> u64 {
        self.task.abort();
        let _ = self.task.await;
        *self.applied.borrow()
    }
}

async fn run(log: ShardLog, mut after: u64, mut apply: Apply, applied: watch::Sender<u64>) {
    loop {
        let read = match log.read(after).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(shard = log.shard(), error = %e, "shard tail cannot read; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut read = Box::pin(read.ready_chunks(BATCH));
        loop {
            let chunk = match tokio::time::timeout(QUIET, read.next()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                // Quiet: fine if the stream has nothing after `after`; if it
                // has, the consumer lost its server and did not recover:
                // read again from `after`.
                Err(_) => match log.last_sequence().await {
                    Ok(last) if last > after => {
                        tracing::warn!(
                            shard = log.shard(),
                            after,
                            last,
                            "shard tail stalled behind the stream; reading again"
                        );
                        break;
                    }
                    _ => continue,
                },
            };
            let mut batch = Vec::with_capacity(chunk.len());
            let mut failed = None;
            for r in chunk {
                match r {
                    // Only what follows on: a re-created consumer may
                    // deliver again what was handed over already.
                    Ok(r) if r.sequence == after + 1 + batch.len() as u64 => batch.push(r),
                    Ok(r) if r.sequence <= after + batch.len() as u64 => {}
                    Ok(r) => {
                        failed = Some(format!(
                            "record {} after {}: a gap in the stream",
                            r.sequence,
                            after + batch.len() as u64
                        ));
                        break;
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(last) = batch.last().map(|r| r.sequence) {
                apply(batch).await;
                after = last;
                applied.send_replace(after);
            }
            if let Some(e) = failed {
                tracing::warn!(shard = log.shard(), error = %e, after, "shard tail restarts");
                tokio::time::sleep(RETRY).await;
                break;
            }
        }
    }
}
