//! Format version 3.
//!
//! What changed from version 2: the state-dependent limits in force are
//! part of the log. A `SetLimits` record (appended as the last variant)
//! changes them; an image carries the ones in force at its cut (`None` for
//! data written before limits existed: no limit). Replay judges each write
//! by the limits it was judged by when it was acknowledged.
//!
//! Every other type is version 2's. Because `SetLimits` is a new *last*
//! variant, a version 2 record's bytes decode as the same version 3 record;
//! an image gains a trailing field, so version 2 images are migrated
//! (`migrate::image_v2_to_v3`).

use serde::{Deserialize, Serialize};

pub use super::v2::{
    Alias, AttrCond, AttrUpdate, AttrValue, AttributesObject, Bound, Change, CohortImage,
    CohortKey, CohortMeta, Details, EventCond, EventObject, EventStats, Filter, Gaps, Identifier,
    Identify, ImportKey, ImportRecord, Instant, KeyHash, Millis, NewAliases, Profile, Profiles,
    Scalar, Segment, Target, Track, WorkspaceId, WorkspaceImage,
};

/// The limits that depend on the state (`limits::StateLimits`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateLimits {
    pub array_items: u64,
    pub attributes_per_profile: u64,
    pub cohorts_per_workspace: u64,
    pub segments_per_workspace: u64,
}

/// A log record of version 3: version 2's, plus `SetLimits` at the end.
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
    Restore {
        snapshot_id: String,
        format: u32,
        image: Vec<u8>,
        keep_counters: bool,
    },
    /// From here on, these state-dependent limits are in force.
    SetLimits(StateLimits),
}

/// A snapshot payload of version 3. `P` is a workspace's profiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image<P = Profiles> {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage<P>>,
    /// The state-dependent limits in force at the cut; `None`: no limit.
    pub limits: Option<StateLimits>,
}
