//! Persistence: the on-disk formats of cohortd and nothing else.
//!
//! This module owns everything that is written to disk:
//!
//! - [`schema`]: the versioned types of log records and snapshot images,
//!   separate from the live domain types, with the conversions both ways and
//!   the migrations from every older version (see `docs/format.md`);
//! - [`codec`]: how a value becomes bytes (bincode, behind one seam);
//! - [`wal`]: the segmented write-ahead log of opaque records, with group
//!   commit, so that a 2xx can wait for durability without one fsync per
//!   request;
//! - [`snapshot`]: versioned, checksummed snapshot files, published atomically
//!   (temp file, fsync, rename, fsync the directory).
//!
//! The engine decides *what* a mutation or a state is; `schema` decides how
//! it is spelled on disk, and `wal`/`snapshot` how it survives a crash. The
//! containers know nothing of cohorts or profiles; they carry a format
//! version per log segment and per snapshot file, and refuse to hand back
//! anything they cannot vouch for, or a version newer than this build.
//!
//! # Start-up decision table
//!
//! The engine recovers in this order: [`snapshot::list`] (headers only), load
//! the newest snapshot that verifies ([`snapshot::load_newest`]), open the log
//! ([`wal::Wal::open`]) and replay every record after the snapshot's
//! `log_position` ([`wal::Recovered::replay`]).
//!
//! | snapshots on disk | log | outcome |
//! | --- | --- | --- |
//! | none | any | start empty, replay the log from position 1 |
//! | newest verifies | covers `log_position + 1 ..` | load it, replay the rest |
//! | newest corrupt (magic, version, checksum, length) | covers the previous one | warn naming the file, load the previous one, replay from its position |
//! | all corrupt | starts at position 1 | warn, start empty, replay the whole log |
//! | any | first record after the image is missing (segments deleted, or the log ends before the image) | [`Error::Gap`]: refuse to start |
//! | any | a damaged record with valid data after it, or in an older segment | [`Error::Corrupt`]: refuse to start |
//! | any | a torn record at the very end of the newest segment | truncated away with a warning (it was never acknowledged under `FsyncPolicy::Always`) |
//!
//! Refusing to start is deliberate: partners send each delta once, so serving
//! a state that silently lost an acknowledged delta is worse than not serving.
//! To make the "newest corrupt" row always reachable, the engine keeps log
//! segments back to the second-newest snapshot ([`snapshot::wal_keep_from`]).

pub mod codec;
pub mod feed;
pub mod schema;
pub mod snapshot;
pub mod wal;

use std::path::{Path, PathBuf};

/// Everything that can go wrong in persistence. One flat enum, so the engine
/// can map it to a start-up message or a 5xx without unpacking layers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system IO error, with what we were doing at the time.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A file is damaged in a way that is not a torn tail.
    #[error("corrupt file {}: {reason}", file.display())]
    Corrupt { file: PathBuf, reason: String },
    /// A value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The log cannot supply position `expected`, which recovery needs;
    /// `found` is what it has there instead (the next segment's first
    /// position, or the log's last position when it ends too early).
    #[error(
        "write-ahead log gap in {}: recovery needs position {expected}, the log has {found}; \
         acknowledged mutations would be lost, refusing to start",
        dir.display()
    )]
    Gap {
        dir: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The log was closed (or its writer thread is gone); nothing was queued.
    #[error("write-ahead log is closed")]
    Closed,
    /// A file written by a newer cohortd: never skipped as corrupt, since
    /// serving without it would lose what it holds.
    #[error(
        "{} is format version {found}, written by a newer cohortd; this build reads versions \
         1 to {newest}: upgrade cohortd to a build that reads it, refusing to start",
        file.display()
    )]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        newest: u32,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Build a mapper for `map_err` that records what we were doing to which
    /// file: a bare `io::Error` ("No space left on device") is useless in a
    /// start-up log.
    /// The context is only formatted on error: this sits on per-record paths.
    pub(crate) fn io<'a>(
        what: &'a str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }

    pub(crate) fn corrupt(file: &Path, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            file: file.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// fsync a directory so that a create, rename or unlink inside it survives a
/// crash (the file's own fsync does not cover its directory entry).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    //! The start-up decision table, row by row, with both halves together.
    use super::wal::{Wal, WalOptions};
    use super::*;

    /// What the engine does at start-up: the image it loaded (if any) and
    /// the positions it replayed on top.
    fn recover(snaps: &Path, log: &Path) -> Result<(Option<u64>, Vec<u64>)> {
        let image = snapshot::load_newest(snaps)?.map(|(info, _)| info.log_position);
        let (_wal, recovered) = Wal::open(log, small())?;
        let mut replayed = Vec::new();
        recovered.replay(image.unwrap_or(0), |p, _, _| {
            replayed.push(p);
            Ok(())
        })?;
        Ok((image, replayed))
    }

    fn small() -> WalOptions {
        WalOptions {
            segment_bytes: 64,
            ..WalOptions::default()
        }
    }

    fn log_records(log: &Path, n: u64) {
        let (wal, _) = Wal::open(log, small()).expect("open");
        for i in 0..n {
            let a = wal.append(i.to_le_bytes()).expect("append");
            a.wait_blocking().expect("durable");
        }
    }

    fn truncate_log_before(log: &Path, position: u64) -> usize {
        let (wal, _) = Wal::open(log, small()).expect("open");
        wal.truncate_before(position).expect("truncate")
    }

    #[test]
    fn start_up_follows_the_decision_table() {
        let d = tempfile::tempdir().expect("tempdir");
        let (snaps, log) = (d.path().join("snapshots"), d.path().join("wal"));
        log_records(&log, 12);

        // No snapshot: replay everything.
        let (image, replayed) = recover(&snaps, &log).expect("recover");
        assert_eq!((image, replayed), (None, (1..=12).collect()));

        // Newest valid: load it, replay the rest.
        snapshot::write(&snaps, 4, 1, 2, b"older").expect("write");
        let newest = snapshot::write(&snaps, 9, 2, 2, b"newest").expect("write");
        let (image, replayed) = recover(&snaps, &log).expect("recover");
        assert_eq!((image, replayed), (Some(9), vec![10, 11, 12]));

        // Keep the log back to the second-newest snapshot, as the engine does.
        let keep_from = snapshot::wal_keep_from(&snapshot::list(&snaps).expect("list"));
        assert_eq!(keep_from, 5);
        assert!(truncate_log_before(&log, keep_from) > 0);

        // Newest corrupt: the previous one plus the log.
        let mut bytes = std::fs::read(&newest.path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&newest.path, bytes).expect("write");
        let (image, replayed) = recover(&snaps, &log).expect("recover");
        assert_eq!((image, replayed), (Some(4), (5..=12).collect()));

        // The log cannot reach back to the image we can load: refuse.
        assert!(truncate_log_before(&log, 8) > 0);
        assert!(matches!(recover(&snaps, &log), Err(Error::Gap { .. })));
    }

    #[test]
    fn the_log_handle_is_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Wal>();
    }
}
