//! Where a command's record goes before it applies: the one interface the
//! lanes and the router append through, so that the same sequencing code
//! runs on a single node and in a cluster.
//!
//! - [`Log::Local`]: the data dir's write-ahead log (`persist::wal`);
//!   positions are its record numbers.
//! - [`Log::Cluster`]: the workspace's shard stream on JetStream, through
//!   this node's writer for that shard (`clustered`); positions are
//!   `clustered::position(shard, sequence)`. Only a shard's leader
//!   appends; elsewhere the append is refused before anything is sent.
//!
//! Either way the contract is the local log's: `append` takes the next
//! position at once, in the callers' order, and `durable` resolves once
//! the record is safe (fsynced, or stored on a JetStream quorum). A caller
//! reports each position it was given back through [`Log::settled`] once
//! its command is applied (or failed), which is how a cluster node knows
//! how far its leader side has applied a shard.

use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};

use super::clustered::Clustered;
use super::command::Command;
use crate::error::Error;
use crate::persist::{schema, wal::Wal};

/// The 503 body of a write the log could not take; the cause (file, OS
/// error, JetStream's answer) goes to the server's log, never to the
/// client.
pub const LOG_FAILED: &str =
    "the write-ahead log could not be written; nothing was applied, retry later";

/// Why a record did not become durable (for the server's log).
#[derive(Clone, Debug)]
pub struct LogFailure(pub Arc<str>);

impl std::fmt::Display for LogFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record queued at `position`, durable once `durable` resolves `Ok`.
pub struct Appended {
    pub position: u64,
    pub durable: BoxFuture<'static, Result<(), LogFailure>>,
}

/// A log's own durability signal as [`Appended::durable`]; `closed`
/// names a log that went away before answering.
pub fn durable<E: std::fmt::Display + Send + Sync + 'static>(
    rx: tokio::sync::oneshot::Receiver<Result<(), Arc<E>>>,
    closed: &'static str,
) -> BoxFuture<'static, Result<(), LogFailure>> {
    rx.map(move |r| match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(LogFailure(e.to_string().into())),
        Err(_) => Err(LogFailure(closed.into())),
    })
    .boxed()
}

#[derive(Clone)]
pub enum Log {
    Local(Arc<Wal>),
    Cluster(Arc<Clustered>),
}

impl Log {
    /// Queues `cmd`'s record. Refused at once (nothing queued) when the
    /// log is closed or, in a cluster, when this node does not lead the
    /// command's shard right now.
    pub fn append(&self, cmd: &Command) -> Result<Appended, Error> {
        let bytes = schema::encode_record(cmd).map_err(|e| Error::Internal(e.to_string()))?;
        match self {
            Log::Local(wal) => {
                let appended = wal.append(&bytes).map_err(|e| {
                    tracing::error!(error = %e, "write-ahead log append refused; command not applied");
                    Error::Unavailable(LOG_FAILED.into())
                })?;
                Ok(Appended {
                    position: appended.position,
                    durable: durable(appended.durable, "the write-ahead log closed"),
                })
            }
            Log::Cluster(c) => c.append(cmd.workspace(), bytes),
        }
    }

    /// Cluster mode: appends `cmd` to shard `shard`'s stream, whatever its
    /// workspace (a shard's restore), and waits until it is durable.
    pub async fn append_to_shard_and_wait(&self, shard: u32, cmd: &Command) -> Result<u64, Error> {
        let Log::Cluster(c) = self else {
            return Err(Error::Internal("a shard append on a single node".into()));
        };
        let bytes = schema::encode_record(cmd).map_err(|e| Error::Internal(e.to_string()))?;
        self.durable_at(c.append_to(shard, bytes)?).await
    }

    /// The command at `position` is applied (`ok`) or was refused by the
    /// log: in a cluster, how far this node applied the shard it leads.
    pub fn settled(&self, position: u64, ok: bool) {
        if let Log::Cluster(c) = self {
            c.settled(position, ok);
        }
    }

    /// Appends one record and waits until it is durable (the router's
    /// commands, applied only then).
    pub async fn append_and_wait(&self, cmd: &Command) -> Result<u64, Error> {
        self.durable_at(self.append(cmd)?).await
    }

    /// Waits until `appended` is durable; its position, or (settled as
    /// refused) the 503 of a write the log could not take.
    async fn durable_at(&self, appended: Appended) -> Result<u64, Error> {
        let position = appended.position;
        match appended.durable.await {
            Ok(()) => Ok(position),
            Err(e) => {
                tracing::error!(error = %e, "log append failed; command not applied");
                self.settled(position, false);
                Err(Error::Unavailable(LOG_FAILED.into()))
            }
        }
    }
}
