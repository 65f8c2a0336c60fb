//! Persistence: the on-disk formats of cohortd and nothing else.
//!
//! This module owns three things, and knows nothing about cohorts, profiles or
//! actix:
//!
//! - [`codec`]: how a value becomes bytes (bincode, behind one seam);
//! - [`wal`]: the segmented write-ahead log of opaque records, with group
//!   commit, so that a 2xx can wait for durability without one fsync per
//!   request;
//! - [`snapshot`]: versioned, checksummed snapshot files, published atomically
//!   (temp file, fsync, rename, fsync the directory).
//!
//! The engine decides *what* goes into a record or a snapshot; this module
//! decides how it survives a crash, and refuses to hand back anything it
//! cannot vouch for.
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
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Build a mapper for `map_err` that records what we were doing to which
    /// file: a bare `io::Error` ("No space left on device") is useless in a
    /// start-up log.
    pub(crate) fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let context = format!("{what} {}", path.display());
        move |source| Error::Io { context, source }
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
