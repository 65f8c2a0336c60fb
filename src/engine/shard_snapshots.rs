//! Cluster mode's snapshots (issue 14, docs/cluster.md "Snapshots"): one
//! snapshot file per shard, all from one cut, kept in the JetStream object
//! store (`cluster::snapshots`) as well as locally; the bootstrap of a new
//! or wiped node from them plus the streams' tails; and the trimming of
//! the streams to what the second-newest set still needs.
//!
//! # Sets
//!
//! A shard's records depend on the control shard's (a workspace exists
//! before its first write: `clustered`'s control dependency), so shard
//! snapshots are taken together, from one cut across every shard (the
//! tails held, then the router's cut with every lane drained), and a node
//! starts from one *set*: shard `k`'s file holds the workspaces of shard
//! `k` (and shard 0's also what spans workspaces: the workspace counter
//! and the limits in force), and its header's log position is
//! `clustered::position(k, sequence)`, the last record of the shard it
//! contains. The files are ordinary snapshot files (`persist::snapshot`:
//! checksummed, versioned, verified on load with the same code).
//!
//! Objects are named `set-<created ms:016>.shard-<k:04>.seq-<sequence:020>`:
//! a listing says which sets are complete and what each shard's sequence
//! is, without downloading anything.
//!
//! # Who takes them
//!
//! The node leading the control shard, on its timer
//! (`[snapshot] interval_secs`) and on `POST /admin/snapshots` (forwarded
//! to it by any node). It uploads the set, prunes the bucket to the
//! newest `[snapshot] retain` sets, then trims each shard's stream to the
//! second-newest set's sequence: the newest set may turn out unreadable,
//! and the one before it plus the stream still reach every record.
//!
//! # Bootstrap
//!
//! A starting node takes the newest complete set whose every shard it can
//! follow on from (the stream still holds the record after the set's
//! sequence), loads its files (from the data dir if it holds them and
//! they verify, else downloaded), and starts each shard's tail after the
//! set's sequence. A set that does not load is skipped for the one
//! before it, with a log line. With no set and untrimmed streams a node
//! starts from the streams' beginning; streams trimmed past every usable
//! set stop start-up with the reason.
//!
//! Restoring a set is not built: it needs a barrier across every shard's
//! stream (docs/cluster.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::sync::oneshot;

use super::clustered::{position, Clustered, CONTROL};
use super::router::{Checkpoint, CutAt, Router};
use super::state::Image;
use crate::cluster::shard_of;
use crate::cluster::snapshots::SnapshotStore;
use crate::error::{Error, Result};
use crate::feed::Feeds;
use crate::model::WorkspaceId;
use crate::persist::schema;
use crate::persist::snapshot::{self, SnapshotInfo};

/// What a client is told when a set could not be taken.
pub const SET_FAILED: &str = "the snapshot could not be written or uploaded; the earlier \
                              snapshots and the streams are untouched, retry later";

/// The local directory of the sets, under the data dir.
pub const DIR: &str = "shard-snapshots";

/// A set's feeds' seqs, in its local directory.
const FEEDS_FILE: &str = "feeds.json";

/// How long a set waits for the feeds to write the events of the
/// commands before its cut (a cohort's actor makes a delta's).
const FEED_PATIENCE: Duration = Duration::from_secs(60);

/// One object of a set, as its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Part {
    set: String,
    shard: u32,
    sequence: u64,
}

fn set_id(created_at_millis: i64) -> String {
    format!("set-{created_at_millis:016}")
}

fn object_name(set: &str, shard: u32, sequence: u64) -> String {
    format!("{set}.shard-{shard:04}.seq-{sequence:020}")
}

/// The object holding a set's feeds' seqs at its cut.
fn feeds_name(set: &str) -> String {
    format!("{set}.feeds")
}

/// The feeds' seqs at a set's cut, as stored beside its shard files:
/// JSON `{"version": 1, "feeds": [[workspace, seq], …]}` (a workspace
/// whose feed had no event is left out).
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FeedSeqs {
    version: u32,
    feeds: Vec<(u32, u64)>,
}

const FEED_SEQS_VERSION: u32 = 1;

fn parse(name: &str) -> Option<Part> {
    let mut it = name.split('.');
    let set = it.next()?;
    let shard = it.next()?.strip_prefix("shard-")?.parse().ok()?;
    let sequence = it.next()?.strip_prefix("seq-")?.parse().ok()?;
    let created: i64 = set.strip_prefix("set-")?.parse().ok()?;
    (it.next().is_none() && set == set_id(created)).then(|| Part {
        set: set.to_string(),
        shard,
        sequence,
    })
}

/// A complete set in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub id: String,
    pub created_at_millis: i64,
    /// Each shard's sequence, by shard.
    pub sequences: Vec<u64>,
    pub bytes: u64,
}

impl Set {
    fn info(&self, dir: &Path) -> SnapshotInfo {
        SnapshotInfo {
            id: self.id.clone(),
            created_at_millis: self.created_at_millis,
            bytes: self.bytes,
            log_position: position(CONTROL, self.sequences[CONTROL as usize]),
            format_version: schema::SNAPSHOT_VERSION,
            path: dir.join(&self.id),
        }
    }

    fn objects(&self) -> impl Iterator<Item = (u32, String)> + '_ {
        self.sequences
            .iter()
            .enumerate()
            .map(|(k, &seq)| (k as u32, object_name(&self.id, k as u32, seq)))
    }
}

/// The complete sets among `objects` (name, size), oldest first: those
/// with exactly one object for each of `shards` shards, and their feeds'
/// seqs (uploaded last).
fn complete_sets(objects: &[(String, u64)], shards: u32) -> Vec<Set> {
    let mut by_set: BTreeMap<String, BTreeMap<u32, (u64, u64)>> = BTreeMap::new();
    for (name, size) in objects {
        if let Some(p) = parse(name) {
            by_set
                .entry(p.set)
                .or_default()
                .insert(p.shard, (p.sequence, *size));
        }
    }
    let names: std::collections::HashSet<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
    by_set
        .into_iter()
        .filter(|(id, parts)| {
            parts.len() == shards as usize
                && parts.keys().copied().eq(0..shards)
                && names.contains(feeds_name(id).as_str())
        })
        .map(|(id, parts)| Set {
            created_at_millis: id["set-".len()..].parse().unwrap_or(0),
            sequences: parts.values().map(|(seq, _)| *seq).collect(),
            bytes: parts.values().map(|(_, size)| size).sum(),
            id,
        })
        .collect()
}

/// Splits a cut's image by shard: shard 0's part also carries what spans
/// workspaces.
fn split(image: Image, shards: u32) -> Vec<Image> {
    let mut parts: Vec<Image> = (0..shards).map(|_| Image::default()).collect();
    parts[CONTROL as usize].next_workspace = image.next_workspace;
    parts[CONTROL as usize].limits = image.limits;
    for w in image.workspaces {
        parts[shard_of(w.id, shards) as usize].workspaces.push(w);
    }
    parts
}

/// A set's shard images as one (the inverse of [`split`]).
fn merge(parts: Vec<Image>) -> Image {
    let mut whole = Image::default();
    for (k, part) in parts.into_iter().enumerate() {
        if k == CONTROL as usize {
            whole.next_workspace = part.next_workspace;
            whole.limits = part.limits;
        }
        whole.workspaces.extend(part.workspaces);
    }
    whole.workspaces.sort_by_key(|w| w.id);
    whole
}

/// Whether a node can follow shard records on from `sequence`: the
/// stream (holding `first..=last`) still has the record after it.
fn reachable(sequence: u64, first: u64, last: u64) -> bool {
    sequence <= last && sequence + 1 >= first
}

/// Takes and lists the cluster's snapshot sets (on every node; only the
/// control shard's leader takes them).
pub struct ShardSnapshots {
    router: Addr<Router>,
    cluster: Arc<Clustered>,
    store: SnapshotStore,
    feeds: Arc<Feeds>,
    dir: PathBuf,
    retain: usize,
    /// One set at a time on this node.
    running: tokio::sync::Mutex<()>,
}

impl ShardSnapshots {
    pub async fn open(
        router: Addr<Router>,
        cluster: Arc<Clustered>,
        feeds: Arc<Feeds>,
        data_dir: &Path,
        retain: usize,
    ) -> std::result::Result<Arc<ShardSnapshots>, String> {
        let store = SnapshotStore::open(cluster.jet())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(ShardSnapshots {
            router,
            cluster,
            store,
            feeds,
            dir: data_dir.join(DIR),
            // The newest can be unreadable: keep one before it.
            retain: retain.max(2),
            running: tokio::sync::Mutex::new(()),
        }))
    }

    /// Takes a set on this node's timer, while it leads the control
    /// shard.
    pub fn every(self: &Arc<Self>, interval: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(me) = me.upgrade() else { return };
                if me.cluster.leads_control() {
                    // Logged by `take`.
                    let _ = me.take().await;
                }
            }
        });
    }

    /// The complete sets in the bucket, newest first.
    pub async fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let objects = self.store.objects().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot list the snapshot bucket");
            Error::Unavailable("the snapshot bucket cannot be read now; retry later".into())
        })?;
        let mut sets = complete_sets(&objects, self.cluster.shard_count());
        sets.reverse();
        Ok(sets.iter().map(|s| s.info(&self.dir)).collect())
    }

    /// Set `id`'s shard files in the data dir, each verified (the header;
    /// the restore reads the whole file), downloaded when missing or
    /// damaged; by shard.
    pub async fn local_files(&self, id: &str) -> Result<Vec<PathBuf>> {
        let objects = self.store.objects().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot list the snapshot bucket");
            Error::Unavailable("the snapshot bucket cannot be read now; retry later".into())
        })?;
        let set = complete_sets(&objects, self.cluster.shard_count())
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(Error::NotFound("snapshot"))?;
        ensure_files(&self.store, &self.dir.join(&set.id), &set)
            .await
            .map_err(|e| {
                tracing::warn!(set = %set.id, error = %e, "cannot fetch a snapshot set");
                Error::Unavailable("the snapshot bucket cannot be read now; retry later".into())
            })
    }

    /// Takes a set now: cut, write each shard's file, upload, prune,
    /// trim. Only on the control shard's leader (the caller checks).
    pub async fn take(&self) -> Result<SnapshotInfo> {
        let _one = self.running.lock().await;
        let result = self.run().await;
        match &result {
            Ok(info) => tracing::info!(
                id = %info.id,
                bytes = info.bytes,
                "snapshot set uploaded to the object store"
            ),
            Err(e) => tracing::error!(error = ?e, "snapshot set failed"),
        }
        result
    }

    async fn run(&self) -> Result<SnapshotInfo> {
        let shards = self.cluster.shard_count();
        // Each feed's seq at the cut: marked while nothing applies, known
        // once the events of the commands before it are written.
        let marks = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let at_cut: Box<dyn FnOnce() + Send> = {
            let (feeds, marks) = (self.feeds.clone(), marks.clone());
            Box::new(move || {
                *marks.lock() = feeds
                    .all()
                    .into_iter()
                    .map(|(ws, f)| (ws, f.seq_through()))
                    .collect();
            })
        };
        let (sequences, image) = {
            let held = self.cluster.hold_tails().await;
            let (tx, rx) = oneshot::channel();
            self.router.do_send(Checkpoint {
                reply: tx,
                at_cut: Some(at_cut),
            });
            let cut = rx
                .await
                .map_err(|_| Error::Internal("router stopped".into()))?;
            // The cut's position is taken; the cohorts image in their
            // mailbox order, so the tails may go on.
            drop(held);
            match cut.await? {
                (CutAt::Shards(sequences), image) => (sequences, image),
                (CutAt::Log(_), _) => {
                    return Err(Error::Internal("a single node's cut in a cluster".into()))
                }
            }
        };
        let mut feeds = Vec::new();
        let taken = std::mem::take(&mut *marks.lock());
        for (ws, seq) in taken {
            let seq = tokio::time::timeout(FEED_PATIENCE, seq)
                .await
                .map_err(|_| {
                    tracing::error!(workspace = %ws, "a feed did not write its events up to the cut");
                    Error::Unavailable(SET_FAILED.into())
                })?
                .map_err(|_| Error::Internal("a feed dropped its mark".into()))?;
            if seq > 0 {
                feeds.push((ws.0, seq));
            }
        }
        let feeds = serde_json::to_vec(&FeedSeqs {
            version: FEED_SEQS_VERSION,
            feeds,
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        let created = crate::time::now_millis();
        let set = Set {
            id: set_id(created),
            created_at_millis: created,
            sequences,
            bytes: 0,
        };
        let dir = self.dir.join(&set.id);
        let written = {
            let (dir, sequences) = (dir.clone(), set.sequences.clone());
            tokio::task::spawn_blocking(move || {
                write_set(&dir, created, &sequences, image, shards, &feeds)
            })
            .await
            .map_err(|e| Error::Internal(format!("snapshot task: {e}")))?
        }
        .map_err(|e| {
            tracing::error!(error = %e, "a shard snapshot could not be written");
            Error::Unavailable(SET_FAILED.into())
        })?;
        let mut bytes = 0;
        // The feeds' seqs last: a set is complete once they are there.
        let uploads = set
            .objects()
            .map(|(_, name)| name)
            .zip(written)
            .chain([(feeds_name(&set.id), dir.join(FEEDS_FILE))]);
        for (name, path) in uploads {
            bytes += self.store.put(&name, &path).await.map_err(|e| {
                tracing::error!(object = %name, error = %e, "a snapshot set's object could not be uploaded");
                Error::Unavailable(SET_FAILED.into())
            })?;
        }
        // Housekeeping from here: a failure leaves more kept, never less.
        if let Err(e) = self.prune_and_trim(shards).await {
            tracing::warn!(error = %e, "pruning snapshot sets or trimming streams failed");
        }
        Ok(Set { bytes, ..set }.info(&self.dir))
    }

    /// Keeps the newest `retain` sets (bucket and data dir), then trims
    /// each shard's stream to the second-newest set's sequence.
    async fn prune_and_trim(&self, shards: u32) -> std::result::Result<(), String> {
        let objects = self.store.objects().await.map_err(|e| e.to_string())?;
        let sets = complete_sets(&objects, shards);
        let keep = &sets[sets.len().saturating_sub(self.retain)..];
        let kept: std::collections::HashSet<&str> = keep.iter().map(|s| s.id.as_str()).collect();
        // Objects of older sets, and of sets left incomplete by a failed
        // run older than the oldest kept.
        let oldest_kept = keep.first().map(|s| s.id.as_str()).unwrap_or("");
        for (name, _) in &objects {
            let set = parse(name)
                .map(|p| p.set)
                .or_else(|| name.strip_suffix(".feeds").map(str::to_string));
            if let Some(set) = set {
                if !kept.contains(set.as_str()) && set.as_str() < oldest_kept {
                    self.store.delete(name).await.map_err(|e| e.to_string())?;
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if parse(&format!("{name}.shard-0000.seq-0")).is_some()
                    && !kept.contains(name.as_str())
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let Some(second) = keep.len().checked_sub(2).map(|i| &keep[i]) else {
            return Ok(());
        };
        for (shard, &sequence) in second.sequences.iter().enumerate() {
            if sequence > 0 {
                self.cluster
                    .shard_log(shard as u32)
                    .trim_before(sequence + 1)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// Writes one snapshot file per shard under `dir` (blocking); their paths
/// by shard.
fn write_set(
    dir: &Path,
    created: i64,
    sequences: &[u64],
    image: Image,
    shards: u32,
    feeds: &[u8],
) -> std::result::Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let path = dir.join(FEEDS_FILE);
    std::fs::write(&path, feeds)
        .and_then(|()| std::fs::File::open(&path)?.sync_all())
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let mut paths = Vec::with_capacity(shards as usize);
    for (k, part) in split(image, shards).into_iter().enumerate() {
        let info = snapshot::write_streamed(
            dir,
            position(k as u32, sequences[k]),
            created,
            schema::SNAPSHOT_VERSION,
            |w| schema::encode_image_into(&part, w).map_err(std::io::Error::other),
        )
        .map_err(|e| e.to_string())?;
        paths.push(info.path);
    }
    Ok(paths)
}

/// Where a bootstrapping node starts.
pub struct Bootstrapped {
    pub set: String,
    pub image: Image,
    pub sequences: Vec<u64>,
    /// Each workspace feed's seq at the set's cut: the node's feeds go on
    /// after them (`Feeds::start_after`).
    pub feeds: Vec<(WorkspaceId, u64)>,
}

/// The newest set this node can start from, loaded (module doc); `None`
/// when there is none and the streams hold every record.
pub async fn bootstrap(
    cluster: &Clustered,
    data_dir: &Path,
) -> std::result::Result<Option<Bootstrapped>, String> {
    let shards = cluster.shard_count();
    let store = SnapshotStore::open(cluster.jet())
        .await
        .map_err(|e| e.to_string())?;
    let mut bounds = Vec::with_capacity(shards as usize);
    for k in 0..shards {
        let log = cluster.shard_log(k);
        let first = log.first_sequence().await.map_err(|e| e.to_string())?;
        let last = log.last_sequence().await.map_err(|e| e.to_string())?;
        bounds.push((first, last));
    }
    let objects = store.objects().await.map_err(|e| e.to_string())?;
    let dir = data_dir.join(DIR);
    for set in complete_sets(&objects, shards).into_iter().rev() {
        let behind = set
            .sequences
            .iter()
            .zip(&bounds)
            .position(|(&seq, &(first, last))| !reachable(seq, first, last));
        if let Some(k) = behind {
            tracing::warn!(
                set = %set.id,
                shard = k,
                sequence = set.sequences[k],
                stream = ?bounds[k],
                "snapshot set does not meet its shard's stream; trying an older one"
            );
            continue;
        }
        match load_set(&store, &dir.join(&set.id), &set).await {
            Ok((image, feeds)) => {
                tracing::info!(set = %set.id, sequences = ?set.sequences, "bootstrapped from snapshot set");
                return Ok(Some(Bootstrapped {
                    set: set.id.clone(),
                    image,
                    sequences: set.sequences,
                    feeds,
                }));
            }
            Err(e) => {
                tracing::warn!(set = %set.id, error = %e, "snapshot set cannot be loaded; trying an older one")
            }
        }
    }
    if let Some(k) = bounds
        .iter()
        .position(|&(first, last)| !reachable(0, first, last))
    {
        return Err(format!(
            "shard {k}'s stream was trimmed (it starts at sequence {}) and no snapshot set in the \
             object store can be loaded and followed on from: this node cannot reach every \
             acknowledged write",
            bounds[k].0
        ));
    }
    Ok(None)
}

/// A set's shard files in `dir`, by shard: those there whose header
/// verifies and names the set's position, the others downloaded.
async fn ensure_files(
    store: &SnapshotStore,
    dir: &Path,
    set: &Set,
) -> std::result::Result<Vec<PathBuf>, String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut paths = Vec::with_capacity(set.sequences.len());
    for (shard, name) in set.objects() {
        let path = dir.join(format!("{name}.snap"));
        let want = position(shard, set.sequences[shard as usize]);
        let there = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                snapshot::inspect(&path).is_ok_and(|i| i.log_position == want)
            })
            .await
            .unwrap_or(false)
        };
        if !there {
            store.fetch(&name, &path).await.map_err(|e| e.to_string())?;
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Loads a set's files, from `dir` when they are there and verify, else
/// downloaded into it; the merged image and the feeds' seqs.
async fn load_set(
    store: &SnapshotStore,
    dir: &Path,
    set: &Set,
) -> std::result::Result<(Image, Vec<(WorkspaceId, u64)>), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let feeds_path = dir.join(FEEDS_FILE);
    let read_feeds = |bytes: &[u8]| -> std::result::Result<Vec<(WorkspaceId, u64)>, String> {
        let f: FeedSeqs = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if f.version != FEED_SEQS_VERSION {
            return Err(format!("feeds' seqs of version {}", f.version));
        }
        Ok(f.feeds
            .into_iter()
            .map(|(ws, seq)| (WorkspaceId(ws), seq))
            .collect())
    };
    let local = tokio::fs::read(&feeds_path).await.ok();
    let feeds = match local.as_deref().map(read_feeds) {
        Some(Ok(feeds)) => feeds,
        _ => {
            store
                .fetch(&feeds_name(&set.id), &feeds_path)
                .await
                .map_err(|e| e.to_string())?;
            let bytes = tokio::fs::read(&feeds_path)
                .await
                .map_err(|e| format!("read {}: {e}", feeds_path.display()))?;
            read_feeds(&bytes)?
        }
    };
    let paths = ensure_files(store, dir, set).await?;
    let mut parts = Vec::with_capacity(paths.len());
    for ((shard, name), path) in set.objects().zip(paths) {
        let want = position(shard, set.sequences[shard as usize]);
        let load = {
            let (path, name) = (path.clone(), name.clone());
            move || -> std::result::Result<Image, String> {
                let (info, bytes) = snapshot::load(&path).map_err(|e| e.to_string())?;
                if info.log_position != want {
                    return Err(format!(
                        "{name} holds log position {}, not {want}",
                        info.log_position
                    ));
                }
                schema::decode_image(info.format_version, &bytes).map_err(|e| e.to_string())
            }
        };
        let image = match tokio::task::spawn_blocking(load.clone())
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(image) => image,
            // Its header was whole, its payload is not: once more from
            // the bucket.
            Err(_) => {
                store.fetch(&name, &path).await.map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(load)
                    .await
                    .map_err(|e| e.to_string())??
            }
        };
        parts.push(image);
    }
    Ok((merge(parts), feeds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_say_their_set_shard_and_sequence() {
        let name = object_name(&set_id(1_700_000_000_123), 3, 42);
        assert_eq!(
            name,
            "set-0001700000000123.shard-0003.seq-00000000000000000042"
        );
        assert_eq!(
            parse(&name),
            Some(Part {
                set: "set-0001700000000123".into(),
                shard: 3,
                sequence: 42
            })
        );
        for bad in [
            "snap-00000000000000000040-1700000000000",
            "set-1.shard-0003.seq-00000000000000000042",
            "set-0001700000000123.shard-x.seq-1",
            "set-0001700000000123.shard-0003.seq-1.extra",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_sets_with_every_shard_are_complete() {
        let objects: Vec<(String, u64)> = [
            (set_id(1), 0, 5),
            (set_id(1), 1, 7),
            (set_id(2), 0, 9),
            (set_id(3), 1, 8),
            (set_id(3), 0, 12),
        ]
        .iter()
        .map(|(s, k, q)| (object_name(s, *k, *q), 100))
        .chain([
            ("stray".to_string(), 1),
            (feeds_name(&set_id(1)), 10),
            (feeds_name(&set_id(2)), 10),
            (feeds_name(&set_id(3)), 10),
            // Shards of set 4, whose feeds' seqs never arrived.
            (object_name(&set_id(4), 0, 13), 100),
            (object_name(&set_id(4), 1, 9), 100),
        ])
        .collect();
        let sets = complete_sets(&objects, 2);
        assert_eq!(
            sets.iter()
                .map(|s| (s.id.clone(), s.sequences.clone(), s.bytes))
                .collect::<Vec<_>>(),
            vec![(set_id(1), vec![5, 7], 200), (set_id(3), vec![12, 8], 200)],
            "set 2 lacks a shard, set 4 its feeds' seqs"
        );
    }

    #[test]
    fn a_set_is_followed_on_only_where_the_stream_holds_the_next_record() {
        // Untouched stream 1..=10.
        assert!(reachable(0, 1, 10) && reachable(4, 1, 10) && reachable(10, 1, 10));
        // Trimmed before 6: from 5 on.
        assert!(!reachable(4, 6, 10) && reachable(5, 6, 10));
        // Everything trimmed (first = last + 1).
        assert!(reachable(10, 11, 10) && !reachable(9, 11, 10));
        // A set from ahead of the stream (another history).
        assert!(!reachable(11, 1, 10));
        // Empty stream.
        assert!(reachable(0, 0, 0));
    }
}
