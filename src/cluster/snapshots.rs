//! Snapshot files in the JetStream object store (`COHORTD_SNAPSHOTS`), so
//! that a new or wiped node can start from the newest one plus the
//! streams' tails (docs/cluster.md, plan step 5).
//!
//! Objects are named by the snapshot's id (`snap-<position:020>-<ms>`,
//! `persist::snapshot`), so the newest is the greatest name. A file is
//! uploaded as it is on disk (header, checksums and all): whoever fetches
//! it verifies it as a local snapshot, with the same code. A fetch writes
//! a temporary file, syncs it and renames it into place, as local
//! snapshots are written, so a torn download never looks like a snapshot.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{object_store, stream};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::jet::{Jet, SNAPSHOTS};
use super::{other, Error, Result};

/// How long a listing or a delete may take before it counts as
/// JetStream being unavailable.
const SMALL_OP: Duration = Duration::from_secs(30);

/// How long an upload or download may take: this, plus a second per MiB
/// (far below what loopback or a LAN moves, so only a stuck transfer
/// hits it).
const TRANSFER_BASE: Duration = Duration::from_secs(30);

fn transfer_limit(bytes: u64) -> Duration {
    TRANSFER_BASE + Duration::from_secs(bytes >> 20)
}

async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| Error::Unavailable(format!("{what}: no answer within {limit:?}")))?
}

/// The snapshot bucket.
#[derive(Clone)]
pub struct SnapshotStore {
    store: object_store::ObjectStore,
}

impl SnapshotStore {
    /// The bucket, created if it does not exist.
    pub async fn open(jet: &Jet) -> Result<SnapshotStore> {
        let store = match jet.js.get_object_store(SNAPSHOTS).await {
            Ok(store) => store,
            Err(_) => jet
                .js
                .create_object_store(object_store::Config {
                    bucket: SNAPSHOTS.into(),
                    description: Some("cohortd snapshots, by snapshot id".into()),
                    storage: stream::StorageType::File,
                    num_replicas: jet.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::Unavailable(format!("bucket {SNAPSHOTS}: {e}")))?,
        };
        Ok(SnapshotStore { store })
    }

    /// Uploads the snapshot file `path` under `id`.
    pub async fn put(&self, id: &str, path: &Path) -> Result<u64> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| other(&format!("open {}", path.display()), e))?;
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let info = within(
            transfer_limit(size),
            &format!("upload snapshot {id}"),
            async {
                self.store
                    .put(id, &mut file)
                    .await
                    .map_err(|e| Error::Unavailable(format!("upload snapshot {id}: {e}")))
            },
        )
        .await?;
        Ok(info.size as u64)
    }

    /// Every object stored: its name and size, by name.
    pub async fn objects(&self) -> Result<Vec<(String, u64)>> {
        let listed = async {
            let mut list = self
                .store
                .list()
                .await
                .map_err(|e| Error::Unavailable(format!("list snapshots: {e}")))?;
            let mut all = Vec::new();
            while let Some(info) = list.next().await {
                let info = info.map_err(|e| Error::Unavailable(format!("list snapshots: {e}")))?;
                if !info.deleted {
                    all.push((info.name, info.size as u64));
                }
            }
            all.sort();
            Ok(all)
        };
        within(SMALL_OP, "list snapshots", listed).await
    }

    /// Deletes one object.
    pub async fn delete(&self, name: &str) -> Result<()> {
        within(SMALL_OP, "delete a snapshot", async {
            self.store
                .delete(name)
                .await
                .map_err(|e| Error::Unavailable(format!("delete snapshot {name}: {e}")))
        })
        .await
    }

    /// The ids stored, oldest first.
    pub async fn ids(&self) -> Result<Vec<String>> {
        Ok(self
            .objects()
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Downloads snapshot `id` to `path` (a temporary file beside it,
    /// synced, then renamed over it).
    pub async fn fetch(&self, id: &str, path: &Path) -> Result<u64> {
        let mut object = within(SMALL_OP, &format!("fetch snapshot {id}"), async {
            self.store
                .get(id)
                .await
                .map_err(|e| Error::Unavailable(format!("fetch snapshot {id}: {e}")))
        })
        .await?;
        let size = object.info().size as u64;
        let tmp = path.with_extension("fetch.tmp");
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| other(&format!("create {}", tmp.display()), e))?;
        let copied = within(
            transfer_limit(size),
            &format!("fetch snapshot {id}"),
            async {
                tokio::io::copy(&mut object, &mut out)
                    .await
                    .map_err(|e| Error::Unavailable(format!("fetch snapshot {id}: {e}")))
            },
        )
        .await;
        let bytes = match copied {
            Ok(bytes) => bytes,
            Err(e) => {
                drop(out);
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        out.flush()
            .await
            .and(out.sync_all().await)
            .map_err(|e| other(&format!("sync {}", tmp.display()), e))?;
        drop(out);
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| other(&format!("rename {}", tmp.display()), e))?;
        if let Some(dir) = path.parent() {
            let dir = tokio::fs::File::open(dir)
                .await
                .map_err(|e| other(&format!("open {}", dir.display()), e))?;
            dir.sync_all()
                .await
                .map_err(|e| other("sync the snapshot directory", e))?;
        }
        Ok(bytes)
    }

    /// Deletes every snapshot but the newest `keep`.
    pub async fn prune(&self, keep: usize) -> Result<usize> {
        let ids = self.ids().await?;
        let drop = ids.len().saturating_sub(keep);
        for id in &ids[..drop] {
            self.delete(id).await?;
        }
        Ok(drop)
    }
}
