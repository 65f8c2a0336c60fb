//! A shard's log as a JetStream stream: appends fenced by the sequence the
//! writer expects, and reads in order from any sequence.
//!
//! An append carries `Nats-Expected-Last-Sequence`: the stream stores it
//! only if its last sequence is the one the writer knows, so a leader that
//! was deposed while it slept cannot append after its successor — its
//! next append is refused ([`Error::Fenced`]) and it steps down. The
//! writer keeps its own count of what it appended (`next`), so it can
//! send the next record before the previous one's ack (the stream
//! processes one connection's publishes in order); once one is refused,
//! every later one is too.
//!
//! The sequence alone does not fence a *pipelining* writer: if its first
//! record in flight is refused because a newer leader appended one, its
//! second expects exactly the sequence the newer leader's record took, and
//! would be stored after it. So every record after a writer's first also
//! carries `Nats-Expected-Last-Msg-Id`, the id of the writer's own
//! previous record: once another writer's record is last, every record of
//! the old writer's pipeline is refused. (Found by
//! `a_writer_ends_at_its_first_refusal_and_fails_everything_after_it`.)
//!
//! Each record also carries `Nats-Msg-Id`, `<writer>-<sequence>`, where
//! `<writer>` names one writer ([`writer_id`]: node, lease term and a
//! random part): a publish this writer retries after a lost ack is stored
//! once, within the stream's duplicate window. The id must name the writer
//! and not only the sequence: the stream checks duplicates *before* the
//! expected sequence, so a record whose id another record already used
//! would be acknowledged as that record, whatever it holds. (Found twice:
//! a deposed leader's record at a sequence its successor had used, and a
//! new writer of the same node and term re-using a sequence whose earlier
//! append had timed out but was stored.)

use async_nats::jetstream::{self, consumer, context::PublishErrorKind};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::jet::{subject, Jet};
use super::{other, Error, Result};

/// One shard's stream, as its writer and its readers use it.
#[derive(Clone)]
pub struct ShardLog {
    jet: Jet,
    shard: u32,
    stream: jetstream::stream::Stream,
}

/// A record read back: its sequence in the shard and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub sequence: u64,
    pub payload: Bytes,
}

impl ShardLog {
    /// Shard `shard`'s log (its stream created if it is the first use).
    pub async fn open(jet: &Jet, shard: u32) -> Result<ShardLog> {
        Ok(ShardLog {
            stream: jet.shard_stream(shard).await?,
            jet: jet.clone(),
            shard,
        })
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The node this log's connection belongs to.
    pub fn node_id(&self) -> &str {
        &self.jet.node_id
    }

    /// The stream's last sequence (0: empty), as its leader knows it now.
    pub async fn last_sequence(&self) -> Result<u64> {
        Ok(self.state().await?.last_sequence)
    }

    /// The stream's first sequence still held (1 if nothing was trimmed;
    /// past the last when empty).
    pub async fn first_sequence(&self) -> Result<u64> {
        Ok(self.state().await?.first_sequence)
    }

    /// The first sequence still held and the last, in one read.
    pub async fn bounds(&self) -> Result<(u64, u64)> {
        let state = self.state().await?;
        Ok((state.first_sequence, state.last_sequence))
    }

    async fn state(&self) -> Result<jetstream::stream::State> {
        let info =
            self.stream.get_info().await.map_err(|e| {
                Error::Unavailable(format!("shard {} stream info: {e}", self.shard))
            })?;
        Ok(info.state)
    }

    /// Drops the records before sequence `keep_from` (the second-newest
    /// snapshot's: docs/cluster.md). Returns how many went.
    pub async fn trim_before(&self, keep_from: u64) -> Result<u64> {
        let purged = self
            .stream
            .purge()
            .sequence(keep_from)
            .await
            .map_err(|e| Error::Unavailable(format!("shard {} trim: {e}", self.shard)))?;
        Ok(purged.purged)
    }

    /// Appends `payload` after sequence `expected_last`, as a writer of
    /// its own (a one-off append: nothing to chain to); its sequence once
    /// a quorum has stored it.
    pub async fn append(&self, payload: Bytes, expected_last: u64, term: u64) -> Result<u64> {
        let writer = writer_id(&self.jet.node_id, term);
        self.send(payload, expected_last, &writer, false)
            .await?
            .await
    }

    /// Sends the append (in this connection's order) and returns the wait
    /// for its acknowledgement: a writer sends the next record before the
    /// previous one's ack comes back (`super::writer`). `writer`: its
    /// [`writer_id`]; `after_own`: the record at `expected_last` is this
    /// writer's own (module docs).
    pub async fn send(
        &self,
        payload: Bytes,
        expected_last: u64,
        writer: &str,
        after_own: bool,
    ) -> Result<impl std::future::Future<Output = Result<u64>> + Send + 'static> {
        let id = |seq: u64| format!("{writer}-{seq}");
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .expected_last_sequence(expected_last)
            .message_id(id(expected_last + 1));
        if after_own {
            publish = publish.expected_last_message_id(id(expected_last));
        }
        let shard = self.shard;
        let refused = move |e: jetstream::context::PublishError| match e.kind() {
            PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
                Error::Fenced {
                    expected: expected_last,
                }
            }
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                Error::Unavailable(format!("shard {shard} append not acknowledged: {e}"))
            }
            _ => Error::Unavailable(format!("shard {shard} append: {e}")),
        };
        let ack = self
            .jet
            .js
            .send_publish(subject(self.shard), publish)
            .await
            .map_err(refused)?;
        // A duplicate (our own retry, already stored) acks with the
        // sequence it was stored at: the same answer as then.
        Ok(async move { ack.await.map(|a| a.sequence).map_err(refused) })
    }

    /// Every record after `after`, in order, then each new one as it is
    /// stored (an ordered consumer: no acks, recreated by the client on a
    /// gap).
    pub async fn read(&self, after: u64) -> Result<impl Stream<Item = Result<Record>>> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Unavailable(format!("shard {} reader: {e}", self.shard)))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| Error::Unavailable(format!("shard {} reader: {e}", self.shard)))?;
        let shard = self.shard;
        Ok(messages.map(move |m| {
            let m = m.map_err(|e| Error::Unavailable(format!("shard {shard} read: {e}")))?;
            let sequence = m
                .info()
                .map_err(|e| other(&format!("shard {shard} record without info"), e))?
                .stream_sequence;
            Ok(Record {
                sequence,
                payload: m.message.payload.clone(),
            })
        }))
    }
}

/// A name for one writer, unique across nodes, terms and restarts: the
/// node, the lease term, and 64 random bits.
pub fn writer_id(node_id: &str, term: u64) -> String {
    format!("{node_id}-{term}-{:016x}", rand::random::<u64>())
}
