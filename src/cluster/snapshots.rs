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

use std::path::Path;

use async_nats::jetstream::{object_store, stream};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::jet::{Jet, SNAPSHOTS};
use super::{other, Error, Result};

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
        let info = self
            .store
            .put(id, &mut file)
            .await
            .map_err(|e| Error::Unavailable(format!("upload snapshot {id}: {e}")))?;
        Ok(info.size as u64)
    }

    /// The ids stored, oldest first.
    pub async fn ids(&self) -> Result<Vec<String>> {
        let mut list = self
            .store
            .list()
            .await
            .map_err(|e| Error::Unavailable(format!("list snapshots: {e}")))?;
        let mut ids = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| Error::Unavailable(format!("list snapshots: {e}")))?;
            if !info.deleted {
                ids.push(info.name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Downloads snapshot `id` to `path` (a temporary file beside it,
    /// synced, then renamed over it).
    pub async fn fetch(&self, id: &str, path: &Path) -> Result<u64> {
        let mut object = self
            .store
            .get(id)
            .await
            .map_err(|e| Error::Unavailable(format!("fetch snapshot {id}: {e}")))?;
        let tmp = path.with_extension("fetch.tmp");
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| other(&format!("create {}", tmp.display()), e))?;
        let bytes = tokio::io::copy(&mut object, &mut out)
            .await
            .map_err(|e| Error::Unavailable(format!("fetch snapshot {id}: {e}")))?;
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
            self.store
                .delete(id)
                .await
                .map_err(|e| Error::Unavailable(format!("delete snapshot {id}: {e}")))?;
        }
        Ok(drop)
    }
}
