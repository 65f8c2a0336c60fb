//! A shard leader's writer: the JetStream counterpart of `persist::wal`'s
//! append, with the same contract, so that the engine's lanes can append
//! to either.
//!
//! - [`ShardWriter::append`] is synchronous and cheap: under one short
//!   lock it takes the next sequence and queues the record, so the
//!   callers' order *is* the stream's order. It answers the sequence and
//!   a [`Durable`] that resolves once a JetStream quorum stored it.
//! - One task sends the queued records in order, each with the sequence it
//!   expects before it (`Nats-Expected-Last-Sequence`), without waiting
//!   for the previous one's ack (at most [`IN_FLIGHT`] unacknowledged),
//!   and resolves the acks in order.
//! - **A failure ends the writer.** Once one record is refused (fenced by
//!   a newer leader, or JetStream unavailable), it and every record queued
//!   after it fail with that error, later appends are refused, and the
//!   leader steps down: what the stream holds is decided by the stream,
//!   and a new writer starts from its last sequence. (The local log has
//!   the same rule for the same reason: a hole in the sequence is never
//!   filled by a later record.)
//!
//! A record whose ack was lost (a timeout) may still be in the stream. The
//! engine treats the stream, not the answers, as the truth: every node
//! applies what the stream holds, so a write answered 503 may turn out
//! applied, and is then applied everywhere alike.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::log::ShardLog;
use super::Error;

/// Records sent and not yet acknowledged, at most.
pub const IN_FLIGHT: usize = 256;

/// Resolves once the record is stored on a quorum, or with the error that
/// ended the writer.
pub type Durable = oneshot::Receiver<std::result::Result<(), Arc<Error>>>;

/// A queued record: its sequence in the shard, and when it is stored.
#[derive(Debug)]
pub struct Appended {
    pub sequence: u64,
    pub durable: Durable,
}

impl Appended {
    /// Waits until stored; the sequence, or the error that ended the writer.
    pub async fn wait(self) -> std::result::Result<u64, Arc<Error>> {
        match self.durable.await {
            Ok(Ok(())) => Ok(self.sequence),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Arc::new(Error::Unavailable("the writer stopped".into()))),
        }
    }
}

struct Queued {
    sequence: u64,
    payload: Bytes,
    done: oneshot::Sender<std::result::Result<(), Arc<Error>>>,
}

struct State {
    /// The sequence the next append takes.
    next: u64,
    /// Why the writer ended, once it has.
    ended: Option<Arc<Error>>,
    /// `None` once the writer is dropped: its task then ends.
    tx: Option<mpsc::UnboundedSender<Queued>>,
}

/// One shard's writer for one lease term.
pub struct ShardWriter {
    state: Arc<Mutex<State>>,
}

impl ShardWriter {
    /// A writer that appends after sequence `last` (the stream's last,
    /// once this leader has caught up to it), in lease term `term`. Its
    /// task runs on the current tokio runtime.
    pub fn start(log: ShardLog, last: u64, term: u64) -> ShardWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(State {
            next: last + 1,
            ended: None,
            tx: Some(tx),
        }));
        let writer = super::log::writer_id(log.node_id(), term);
        tokio::spawn(send_in_order(log, writer, last + 1, rx, state.clone()));
        ShardWriter { state }
    }

    /// Takes the next sequence and queues `payload` (module docs). Refused
    /// once the writer has ended.
    pub fn append(&self, payload: Bytes) -> std::result::Result<Appended, Arc<Error>> {
        let (done, durable) = oneshot::channel();
        let mut s = self.state.lock();
        if let Some(e) = &s.ended {
            return Err(e.clone());
        }
        let sequence = s.next;
        let Some(tx) = &s.tx else {
            return Err(Arc::new(Error::Unavailable("the writer stopped".into())));
        };
        tx.send(Queued {
            sequence,
            payload,
            done,
        })
        .map_err(|_| Arc::new(Error::Unavailable("the writer stopped".into())))?;
        s.next += 1;
        Ok(Appended { sequence, durable })
    }

    /// Why the writer ended (`None`: it goes on).
    ///
    /// (Dropping the writer ends its task; records still unanswered then
    /// fail, though they may be stored: the engine steps down only once
    /// its records in flight are answered.)
    pub fn ended(&self) -> Option<Arc<Error>> {
        self.state.lock().ended.clone()
    }

    /// The last sequence handed out.
    pub fn last_sequence(&self) -> u64 {
        self.state.lock().next - 1
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        self.state.lock().tx = None;
    }
}

/// The writer's task: sends in order, resolves acks in order, and on the
/// first failure fails everything after it (module docs). `first`: the
/// writer's first sequence, the only record not chained to its own
/// previous one (`ShardLog::send`).
async fn send_in_order(
    log: ShardLog,
    writer: String,
    first: u64,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    state: Arc<Mutex<State>>,
) {
    let mut acks = FuturesOrdered::new();
    let mut waiting: VecDeque<oneshot::Sender<std::result::Result<(), Arc<Error>>>> =
        VecDeque::new();
    let mut failure: Option<Arc<Error>> = None;
    loop {
        tokio::select! {
            // Acks first: they free room for more in flight.
            biased;
            Some(ack) = acks.next(), if !acks.is_empty() => {
                let done = waiting.pop_front().expect("one waiter per ack");
                match ack {
                    Ok(_) => {
                        let _ = done.send(Ok(()));
                    }
                    Err(e) => {
                        let e: Arc<Error> = Arc::new(e);
                        let _ = done.send(Err(e.clone()));
                        failure = Some(e);
                        break;
                    }
                }
            }
            queued = rx.recv(), if acks.len() < IN_FLIGHT => {
                let Some(q) = queued else { break };
                let after_own = q.sequence > first;
                match log.send(q.payload, q.sequence - 1, &writer, after_own).await {
                    Ok(ack) => {
                        acks.push_back(ack);
                        waiting.push_back(q.done);
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        let _ = q.done.send(Err(e.clone()));
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
    }
    let failure =
        failure.unwrap_or_else(|| Arc::new(Error::Unavailable("the writer stopped".into())));
    // Ended: no more appends; what was sent after the failure fails with
    // it (the stream refuses those anyway: they expect a sequence it will
    // not reach from this writer), and so does everything still queued.
    {
        let mut s = state.lock();
        s.ended = Some(failure.clone());
    }
    for done in waiting.drain(..) {
        let _ = done.send(Err(failure.clone()));
    }
    rx.close();
    while let Ok(q) = rx.try_recv() {
        let _ = q.done.send(Err(failure.clone()));
    }
}
