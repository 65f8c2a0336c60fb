//! Start-up recovery: lock the data dir, load the newest snapshot that
//! verifies and decodes, open the write-ahead log, and replay every record
//! after the snapshot through the router, in log order — through the same
//! `Applier` live writes take, so a replayed command does exactly what it did the first time.
//!
//! The decision table (no snapshot, newest valid, newest corrupt, log gap)
//! is in `crate::persist`; this module adds two rules: a snapshot whose
//! payload does not decode is skipped like a corrupt one, and a snapshot or
//! log segment of a format version newer than this build stops start-up
//! with an error naming it (skipping it would serve a state that lost what
//! it holds).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use actix::Addr;
use tokio::sync::oneshot;

use super::command::Command;
use super::router::{Replay, Router};
use super::state::Image;
use crate::config::{Config, Fsync};
use crate::error::StartError;
use crate::persist::wal::{self, FsyncPolicy, Wal, WalOptions};
use crate::persist::{schema, snapshot};

/// Records replayed per router message, at most.
const REPLAY_BATCH: usize = 10_000;
/// Payload bytes per replay batch, at most (one record may exceed it).
const REPLAY_BATCH_BYTES: usize = 32 << 20;
/// Decoded batches waiting for the router while the next one is read.
const REPLAY_QUEUE: usize = 1;

/// Holds an exclusive lock on the data dir for the life of the engine, so
/// two servers never write one log.
pub struct DirLock {
    _file: File,
}

pub struct Recovered {
    pub image: Image,
    pub snapshot_position: u64,
    pub wal: Arc<Wal>,
    pub log: wal::Recovered,
    pub lock: DirLock,
}

fn lock(dir: &Path) -> Result<DirLock, StartError> {
    let data_dir = |source| StartError::DataDir {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(data_dir)?;
    let path = dir.join("LOCK");
    let file = File::create(&path).map_err(data_dir)?;
    file.try_lock().map_err(|_| StartError::LockHeld {
        dir: dir.to_path_buf(),
        lock: path,
    })?;
    Ok(DirLock { _file: file })
}

/// The newest snapshot that verifies and decodes, or an empty image.
fn newest_image(dir: &Path) -> Result<(Image, u64), StartError> {
    snapshot::remove_leftovers(dir)?;
    let all = snapshot::list(dir)?;
    if let Some(newer) = all
        .iter()
        .find(|s| s.format_version > schema::SNAPSHOT_VERSION)
    {
        return Err(crate::persist::Error::UnsupportedVersion {
            file: newer.path.clone(),
            found: newer.format_version,
            newest: schema::SNAPSHOT_VERSION,
        }
        .into());
    }
    for info in all {
        let decoded = snapshot::load(&info.path)
            .and_then(|(info, bytes)| schema::decode_image(info.format_version, &bytes));
        match decoded {
            Ok(image) => {
                tracing::info!(id = %info.id, log_position = info.log_position, "loaded snapshot");
                return Ok((image, info.log_position));
            }
            Err(e) => tracing::warn!(
                file = %info.path.display(),
                error = %e,
                "skipping snapshot that cannot be loaded; trying the previous one"
            ),
        }
    }
    Ok((Image::default(), 0))
}

pub fn open(config: &Config) -> Result<Recovered, StartError> {
    let dir = &config.data_dir;
    let lock = lock(dir)?;
    let (image, snapshot_position) = newest_image(dir)?;
    let fsync = match config.wal.fsync {
        Fsync::Always => FsyncPolicy::Always,
        Fsync::Interval => FsyncPolicy::Interval {
            millis: config.wal.fsync_interval_millis,
        },
        Fsync::Off => FsyncPolicy::Off,
    };
    let opts = WalOptions {
        segment_bytes: config.wal.segment_bytes,
        fsync,
        commit_wait: (config.wal.commit_wait_micros > 0)
            .then(|| std::time::Duration::from_micros(config.wal.commit_wait_micros)),
        version: schema::LOG_VERSION,
    };
    let (wal, log) = Wal::open(&dir.join("wal"), opts)?;
    Ok(Recovered {
        image,
        snapshot_position,
        wal: Arc::new(wal),
        log,
        lock,
    })
}

/// Replays the log after `after` through the router, in order, and waits
/// until every replayed command is applied.
pub async fn replay(
    router: &Addr<Router>,
    log: wal::Recovered,
    after: u64,
) -> Result<(), StartError> {
    // The log is read and decoded on a blocking thread, a bounded batch at
    // a time, while the router applies the previous one: memory holds at
    // most `REPLAY_QUEUE + 2` batches, however long the log (a logged
    // restore carries a whole image, hence the byte bound too).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(u64, Command)>>(REPLAY_QUEUE);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let closed = || crate::persist::Error::Closed;
        let last = log.replay(after, |position, version, payload| {
            let cmd = schema::decode_record(version, payload).map_err(|e| {
                crate::persist::Error::Codec(format!(
                    "log record at position {position} (format version {version}): {e}"
                ))
            })?;
            batch.push((position, cmd));
            bytes += payload.len();
            if batch.len() >= REPLAY_BATCH || bytes >= REPLAY_BATCH_BYTES {
                bytes = 0;
                tx.blocking_send(std::mem::take(&mut batch))
                    .map_err(|_| closed())?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            tx.blocking_send(batch).map_err(|_| closed())?;
        }
        Ok::<u64, crate::persist::Error>(last)
    });
    let mut count = 0;
    while let Some(batch) = rx.recv().await {
        count += batch.len();
        let (reply, answered) = oneshot::channel();
        router.do_send(Replay {
            records: batch,
            reply,
        });
        let pending = answered
            .await
            .map_err(|_| StartError::Runtime("the router stopped during replay".into()))?;
        pending.await.map_err(|e| match e {
            // Start-up prints the cause; only HTTP bodies hide it.
            crate::error::Error::Internal(cause) => StartError::Replay(cause),
            e => StartError::Replay(e.to_string()),
        })?;
    }
    let last = reader
        .await
        .map_err(|e| StartError::Runtime(format!("the log reader failed: {e}")))??;
    if count > 0 {
        tracing::info!(
            records = count,
            from = after + 1,
            to = last,
            "replayed the write-ahead log"
        );
    }
    Ok(())
}

/// Test hook (debug builds only): while the file named by
/// `COHORTD_TEST_HOLD_RECOVERY` exists, recovery waits before replaying, so
/// a test can observe what the server answers while it recovers.
#[cfg(debug_assertions)]
pub async fn test_hold() {
    let Some(path) = std::env::var_os("COHORTD_TEST_HOLD_RECOVERY") else {
        return;
    };
    while std::path::Path::new(&path).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
