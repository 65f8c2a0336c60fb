//! Cluster mode on NATS JetStream (issue 14, SPEC §11): the parts that
//! stand on JetStream, each tested against real `nats-server`s.
//!
//! The design, of which this module holds the first layer:
//!
//! - **Shards.** A workspace belongs to one of `cluster.shards` shards,
//!   by [`shard_of`]; the count is fixed for the life of a cluster.
//! - **The log.** Each shard's log is a JetStream stream of its own
//!   (`COHORTD_SHARD_<n>`, file storage, `cluster.replicas` replicas), so
//!   a shard's sequence is its stream's: the position a write answers
//!   with (`X-Cohortd-Sequence`) and feed event ids are built from
//!   (`log::ShardLog`).
//! - **One writer per shard.** The leader holds the shard's lease in the
//!   `COHORTD_LEASES` key-value bucket, taken and renewed by
//!   compare-and-set on the key's revision (`lease`). A lease expires by
//!   observation: a holder whose revision has not moved for the TTL is
//!   taken over, whatever the clocks say. A leader appends with
//!   `Nats-Expected-Last-Sequence`: a deposed leader that wakes up after a
//!   pause has its append refused by the stream itself ([`log::Append`]'s
//!   `Fenced`), whatever it believes about its lease.
//! - **Leadership.** One task per node steps every shard's lease and
//!   publishes each shard's role (`leadership::Leadership`).
//! - **The writer.** A leader appends through a `writer::ShardWriter`:
//!   the local log's contract (sequences taken in the callers' order at
//!   once, durability awaited after), pipelined, ended by its first
//!   refusal.
//! - **The tail.** A follower applies a shard's records in stream order
//!   from the last it applied (`tail::Tail`), and says how far it got.
//!
//! The engine stands on these parts in `engine::clustered` (positions,
//! sides, the control dependency), `engine::shard_snapshots` (snapshot
//! sets in the object store), `connector::shared` (connectors' progress)
//! and `http::cluster` (forwarding, the sequence headers).

pub mod jet;
pub mod leadership;
pub mod lease;
pub mod log;
pub mod snapshots;
pub mod tail;
pub mod writer;

use crate::model::WorkspaceId;

/// The shard a workspace belongs to: CRC-32 (IEEE) of the workspace id's
/// four bytes, little-endian, modulo `shards`. Written down in
/// docs/cluster.md; changing it moves workspaces between streams, so it
/// never changes.
pub fn shard_of(ws: WorkspaceId, shards: u32) -> u32 {
    crc32fast::hash(&ws.0.to_le_bytes()) % shards.max(1)
}

/// What went wrong talking to JetStream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// JetStream did not answer in time or has no quorum: nothing is known
    /// to be stored. (A write refused with this may still be in the stream
    /// if it reached a quorum after all: the stream, not the answer, is
    /// what every node applies.)
    #[error("JetStream unavailable: {0}")]
    Unavailable(String),
    /// The stream's last sequence is not the one this writer expected:
    /// another leader appended. Nothing was stored.
    #[error("fenced: the stream moved past sequence {expected} (another leader appended)")]
    Fenced { expected: u64 },
    /// The lease is held by another node (or was lost).
    #[error("lease of shard {shard} is held by {holder}")]
    NotLeader { shard: u32, holder: String },
    #[error("JetStream: {0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an async-nats error as [`Error::Other`] (callers map the kinds
/// they tell apart first).
pub(crate) fn other(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_rule_is_stable_and_spreads_workspaces() {
        // Pinned: these are what every node, of every version, computes.
        assert_eq!(
            shard_of(WorkspaceId(1), 8),
            crc32fast::hash(&[1, 0, 0, 0]) % 8
        );
        let pinned: Vec<u32> = (1..=8).map(|w| shard_of(WorkspaceId(w), 8)).collect();
        assert_eq!(pinned, [1, 7, 2, 3, 6, 0, 5, 3]);
        let mut per = [0u32; 8];
        for w in 0..8000 {
            per[shard_of(WorkspaceId(w), 8) as usize] += 1;
        }
        assert!(per.iter().all(|&n| (800..1200).contains(&n)), "{per:?}");
        assert_eq!(shard_of(WorkspaceId(7), 1), 0);
    }
}
