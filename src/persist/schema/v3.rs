//! Format version 3.
//!
//! What changed from version 2: a `Restore` record says whether the restore
//! keeps the id counters (`keep_counters`). Restores logged by this version
//! never rewind the workspace and segment id counters, so an id given out
//! before a restore is never given out again; restores logged by versions
//! 1 and 2 did rewind them, and replay keeps doing so for those records
//! (ids handed out after such a restore depended on it).
//!
//! Snapshot payloads did not change: a version 3 image is a version 2 image
//! (the snapshot header says 3 so that one number names the format of a
//! data dir).

use serde::{Deserialize, Serialize};

pub use super::v2::{
    Alias, AttrCond, AttrUpdate, AttrValue, AttributesObject, Bound, Change, CohortImage,
    CohortKey, CohortMeta, Details, EventCond, EventObject, EventStats, Filter, Identifier,
    Identify, Image, ImportKey, ImportRecord, Instant, KeyHash, Millis, NewAliases, Profile,
    Profiles, Scalar, Segment, Target, Track, WorkspaceId, WorkspaceImage,
};

/// A log record of version 3. `C` is the changes of a delta.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record<C = Vec<Change>> {
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
        partner: String,
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
        changes: C,
        at: Millis,
    },
    Track {
        ws: WorkspaceId,
        track: Track,
    },
    Identify {
        ws: WorkspaceId,
        identify: Identify,
    },
    NewAliases {
        ws: WorkspaceId,
        aliases: NewAliases,
    },
    DeleteUsers {
        ws: WorkspaceId,
        ids: Vec<Identifier>,
    },
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
    /// Replaces the whole state with `image`, a snapshot payload of format
    /// version `format` exactly as its file held it. With `keep_counters`,
    /// the workspace and segment id counters never go back.
    Restore {
        snapshot_id: String,
        format: u32,
        image: Vec<u8>,
        keep_counters: bool,
    },
}
