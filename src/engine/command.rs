//! The mutation vocabulary: every write cohortd accepts is one `Command`,
//! answered with one `Outcome`.
//!
//! A command names its workspace (`Command::workspace`) unless it spans
//! workspaces; that is what routes it: a workspace's commands to its lane
//! (`lane`), the rest to the router (`router`), which runs them as
//! barriers. `persist::schema` logs and replays these values; the rest of
//! the crate only sees `Engine`'s typed methods.

use actix::Message;
use compact_str::CompactString;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::cohort::DeltaOutcome;
use super::state::{Connector, ImportKey};
use crate::error::Result;
use crate::keys::KeyHash;
use crate::limits::StateLimits;
use crate::model::{Change, CohortKey, Identifier, Millis, WorkspaceId};
use crate::profiles::commands::{
    AliasReport, Identify, IdentifyReport, NewAliases, Track, TrackReport,
};
use crate::segment::Filter;

/// Every mutation cohortd accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    CreateWorkspace {
        name: String,
        rest_key: KeyHash,
        at: Millis,
    },
    CreateImportKey {
        ws: WorkspaceId,
        key: ImportKey,
    },
    RevokeImportKey {
        ws: WorkspaceId,
        partner: CompactString,
        key_id: String,
    },
    NameCohort {
        ws: WorkspaceId,
        key: CohortKey,
        name: String,
        created_at: Millis,
        at: Millis,
    },
    ApplyDelta {
        ws: WorkspaceId,
        key: CohortKey,
        changes: Vec<Change>,
        at: Millis,
    },
    /// `at`, here and in `Identify` and `DeleteUsers`: when the write was
    /// accepted, the time of its feed events; `None` only in records
    /// written before the feed reported them, which make no events.
    Track {
        ws: WorkspaceId,
        track: Track,
        at: Option<Millis>,
    },
    Identify {
        ws: WorkspaceId,
        identify: Identify,
        at: Option<Millis>,
    },
    NewAliases {
        ws: WorkspaceId,
        aliases: NewAliases,
    },
    DeleteUsers {
        ws: WorkspaceId,
        ids: Vec<Identifier>,
        at: Option<Millis>,
    },
    /// Creates (`id: None`) or replaces a saved segment.
    PutSegment {
        ws: WorkspaceId,
        id: Option<u64>,
        name: String,
        filter: Filter,
    },
    DeleteSegment {
        ws: WorkspaceId,
        id: u64,
    },
    /// Replaces the whole state with a snapshot's. The router fills
    /// `image` with the snapshot's verified payload (and `format` with its
    /// format version) before logging it, so the record is self-contained:
    /// replaying it never depends on the snapshot file still existing
    /// (retention may have pruned it). With `keep_counters` (every restore
    /// since format version 3), workspace and segment ids given out before
    /// the restore are never given out again.
    Restore {
        snapshot_id: String,
        format: u32,
        image: Vec<u8>,
        keep_counters: bool,
    },
    /// From here on, these state-dependent limits are in force (logged at
    /// start-up when `config.toml` changed them; see `limits::StateLimits`).
    SetLimits(StateLimits),
    /// Creates a connector (its id is made before it is logged).
    PutConnector {
        ws: WorkspaceId,
        connector: Connector,
    },
    DeleteConnector {
        ws: WorkspaceId,
        id: String,
    },
}

/// What a command did, for the response.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Workspace(WorkspaceId),
    Done,
    Delta(DeltaOutcome),
    Tracked(TrackReport),
    Identified(IdentifyReport),
    Aliased(AliasReport),
    Deleted(u32),
    Segment(u64),
}

/// A command's completion: resolves once its effect is visible to readers.
pub type Pending = BoxFuture<'static, Result<Outcome>>;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    pub cmd: Command,
    pub reply: oneshot::Sender<Pending>,
    /// Set to the command's log position when it is appended (the
    /// `X-Cohortd-Sequence` a cluster node answers with); untouched when
    /// it needs no record.
    pub logged_at: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Command {
    /// The workspace this command changes, or `None` for the commands that
    /// span workspaces (creating one, restoring, the limits in force).
    pub fn workspace(&self) -> Option<WorkspaceId> {
        match self {
            Command::CreateImportKey { ws, .. }
            | Command::RevokeImportKey { ws, .. }
            | Command::NameCohort { ws, .. }
            | Command::ApplyDelta { ws, .. }
            | Command::Track { ws, .. }
            | Command::Identify { ws, .. }
            | Command::NewAliases { ws, .. }
            | Command::DeleteUsers { ws, .. }
            | Command::PutSegment { ws, .. }
            | Command::DeleteSegment { ws, .. }
            | Command::PutConnector { ws, .. }
            | Command::DeleteConnector { ws, .. } => Some(*ws),
            Command::CreateWorkspace { .. } | Command::Restore { .. } | Command::SetLimits(_) => {
                None
            }
        }
    }
}
