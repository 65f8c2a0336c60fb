//! Cluster mode: each connector's delivery progress, shared through the
//! JetStream key-value bucket `COHORTD_CONNECTORS` (docs/cluster.md,
//! "Connectors").
//!
//! In a cluster only the node leading a workspace's shard delivers its
//! connectors (`manager`). That node keeps its progress file as a single
//! node does, and every write of it (`deliver`'s save: a batch sent, one
//! acknowledged, a failure) is also queued here and put into the bucket
//! under `ws-<workspace>.<connector id>`, the newest value per key, by
//! one task. Every node watches the bucket into a cache, which serves two
//! things:
//!
//! - **Hand-over:** a node that starts delivering a connector first
//!   brings its own progress file up to the shared one when that is
//!   further on (`seed`), so the new leader resumes after the last batch
//!   the old one had acknowledged, and re-sends a batch that was in
//!   flight with the same events and idempotency key. Feed seqs are the
//!   same on every node (`feed`, `shard_snapshots`), so a seq means the
//!   same event everywhere. What the cache had not seen yet when it took
//!   over is sent again: at least once, as on a single node.
//! - **Reports** on the nodes that do not deliver it: the figures the
//!   delivering node last shared, so `GET /connectors/{id}` answers the
//!   same on any node.
//!
//! The value is JSON (`Shared`, with a version): a later build reads an
//! earlier one's, and unknown fields are ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::deliver::{State, StatusSnapshot};
use super::progress::{self, Progress, ProgressFile};
use crate::cluster::jet::Jet;
use crate::model::WorkspaceId;

/// The version of the shared value this build writes.
const VERSION: u32 = 1;

/// How long a watch that ended waits before it starts again.
const REWATCH: Duration = Duration::from_millis(500);

/// What the bucket holds for one connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    pub version: u32,
    /// The node that delivered it when this was written.
    pub node: String,
    pub acked: u64,
    pub inflight_through: u64,
    pub disabled: bool,
    pub last_error: String,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    pub oldest_unacked_ms: Option<i64>,
}

impl Shared {
    /// The figures a report shows (those of the node that shared them).
    pub fn status(&self) -> StatusSnapshot {
        StatusSnapshot {
            state: if self.disabled {
                State::Disabled
            } else {
                State::Active
            },
            sent: self.sent,
            failed: self.failed,
            skipped: self.skipped,
            acked: self.acked,
            oldest_unacked_ms: self.oldest_unacked_ms,
            last_error: self.last_error.clone(),
        }
    }
}

fn key(ws: WorkspaceId, id: &str) -> String {
    format!("ws-{}.{id}", ws.0)
}

/// What a delivery calls at each save of its progress.
pub type OnSave = Arc<dyn Fn(&Progress, &StatusSnapshot) + Send + Sync>;

/// This node's view of the bucket, and its queue of puts.
pub struct SharedProgress {
    node: String,
    cache: Arc<Mutex<HashMap<String, Shared>>>,
    /// `None`: the key is deleted (the connector is gone).
    tx: mpsc::UnboundedSender<(String, Option<Shared>)>,
}

impl SharedProgress {
    /// Opens the bucket, starts the watch and the put task (on the
    /// current runtime).
    pub async fn open(jet: &Jet) -> crate::cluster::Result<Arc<SharedProgress>> {
        let store = jet.connectors().await?;
        let cache: Arc<Mutex<HashMap<String, Shared>>> = Arc::default();
        tokio::spawn(watch(store.clone(), cache.clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(put(store, rx));
        Ok(Arc::new(SharedProgress {
            node: jet.node_id.clone(),
            cache,
            tx,
        }))
    }

    /// The last shared value of a connector, as this node has seen it.
    pub fn get(&self, ws: WorkspaceId, id: &str) -> Option<Shared> {
        self.cache.lock().get(&key(ws, id)).cloned()
    }

    /// What a delivery of connector `id` calls at each save.
    pub fn on_save(self: &Arc<Self>, ws: WorkspaceId, id: &str) -> OnSave {
        let (me, key) = (self.clone(), key(ws, id));
        Arc::new(move |p: &Progress, s: &StatusSnapshot| {
            let shared = Shared {
                version: VERSION,
                node: me.node.clone(),
                acked: p.acked,
                inflight_through: p.inflight_through,
                disabled: p.disabled,
                last_error: p.last_error.clone(),
                sent: s.sent,
                failed: s.failed,
                skipped: s.skipped,
                oldest_unacked_ms: s.oldest_unacked_ms,
            };
            // Seen here at once: this node's own reports need no round
            // trip.
            me.cache.lock().insert(key.clone(), shared.clone());
            let _ = me.tx.send((key.clone(), Some(shared)));
        })
    }

    /// Forgets a deleted connector.
    pub fn remove(&self, ws: WorkspaceId, id: &str) {
        let key = key(ws, id);
        self.cache.lock().remove(&key);
        let _ = self.tx.send((key, None));
    }

    /// Brings connector `id`'s progress file in `dir` up to the shared
    /// progress when that is further on (or the file does not exist):
    /// called before this node starts delivering it.
    pub fn seed(
        &self,
        dir: &std::path::Path,
        ws: WorkspaceId,
        id: &str,
    ) -> crate::persist::Result<()> {
        let Some(shared) = self.get(ws, id) else {
            return Ok(());
        };
        let local = progress::read(dir, id)?;
        if local.as_ref().is_some_and(|l| l.acked >= shared.acked) {
            return Ok(());
        }
        let (mut file, _) = ProgressFile::open(dir, id)?;
        file.write(&Progress {
            acked: shared.acked,
            inflight_through: shared.inflight_through,
            disabled: shared.disabled,
            last_error: shared.last_error,
        })
    }
}

/// Puts the newest value of each key, coalescing what queued meanwhile.
async fn put(store: kv::Store, mut rx: mpsc::UnboundedReceiver<(String, Option<Shared>)>) {
    while let Some(first) = rx.recv().await {
        let mut newest: HashMap<String, Option<Shared>> = HashMap::new();
        newest.insert(first.0, first.1);
        while let Ok((k, v)) = rx.try_recv() {
            newest.insert(k, v);
        }
        for (k, v) in newest {
            let done = match v {
                Some(v) => match serde_json::to_vec(&v) {
                    Ok(bytes) => store
                        .put(&k, bytes.into())
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                None => store.delete(&k).await.map_err(|e| e.to_string()),
            };
            if let Err(e) = done {
                // The next save puts the whole state again.
                tracing::warn!(key = %k, error = %e, "connector progress not shared");
            }
        }
    }
}

/// Keeps `cache` equal to the bucket: its last value per key, then every
/// change; started again after a pause when the watch ends.
async fn watch(store: kv::Store, cache: Arc<Mutex<HashMap<String, Shared>>>) {
    loop {
        match store.watch_with_history(">").await {
            Ok(mut entries) => {
                while let Some(entry) = entries.next().await {
                    let Ok(entry) = entry else { break };
                    let mut cache = cache.lock();
                    match entry.operation {
                        kv::Operation::Put => {
                            match serde_json::from_slice::<Shared>(&entry.value) {
                                Ok(v) => {
                                    cache.insert(entry.key, v);
                                }
                                Err(e) => {
                                    tracing::warn!(key = %entry.key, error = %e, "unreadable shared connector progress");
                                }
                            }
                        }
                        kv::Operation::Delete | kv::Operation::Purge => {
                            cache.remove(&entry.key);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the connectors' progress"),
        }
        tokio::time::sleep(REWATCH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_value_reads_back_and_tolerates_unknown_fields() {
        let v = Shared {
            version: VERSION,
            node: "n2".into(),
            acked: 40,
            inflight_through: 45,
            disabled: false,
            last_error: "HTTP 500".into(),
            sent: 40,
            failed: 1,
            skipped: 0,
            oldest_unacked_ms: Some(1_700_000_000_000),
        };
        let mut json: serde_json::Value = serde_json::to_value(&v).unwrap();
        json["added_later"] = serde_json::json!(true);
        let back: Shared = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.status().acked, 40);
        assert_eq!(key(WorkspaceId(7), "conn_ab"), "ws-7.conn_ab");
    }
}
