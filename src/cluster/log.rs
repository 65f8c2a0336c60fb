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
//! Each record also carries `Nats-Msg-Id`, `<node>-<term>-<sequence>`:
//! a publish this writer retries after a lost ack is stored once, within
//! the stream's duplicate window. It must name the writer: the stream
//! checks duplicates *before* the expected sequence, so an id that another
//! leader's record already used would be acknowledged as that record.

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

    /// The stream's last sequence (0: empty), as its leader knows it now.
    pub async fn last_sequence(&self) -> Result<u64> {
        let info =
            self.stream.get_info().await.map_err(|e| {
                Error::Unavailable(format!("shard {} stream info: {e}", self.shard))
            })?;
        Ok(info.state.last_sequence)
    }

    /// Appends `payload` after sequence `expected_last`, as this node in
    /// lease term `term`; its sequence once a quorum has stored it.
    pub async fn append(&self, payload: Bytes, expected_last: u64, term: u64) -> Result<u64> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .expected_last_sequence(expected_last)
            .message_id(format!("{}-{term}-{}", self.jet.node_id, expected_last + 1));
        let refused = |e: jetstream::context::PublishError| match e.kind() {
            PublishErrorKind::WrongLastSequence => Error::Fenced {
                expected: expected_last,
            },
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                Error::Unavailable(format!("shard {} append not acknowledged: {e}", self.shard))
            }
            _ => Error::Unavailable(format!("shard {} append: {e}", self.shard)),
        };
        let ack = self
            .jet
            .js
            .send_publish(subject(self.shard), publish)
            .await
            .map_err(refused)?
            .await
            .map_err(refused)?;
        // A duplicate (our own retry, already stored) acks with the sequence
        // it was stored at: the same answer as then.
        Ok(ack.sequence)
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
