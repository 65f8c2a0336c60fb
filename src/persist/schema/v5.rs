//! Format version 5.
//!
//! What changed from version 4: `email`, `phone` and `braze_id` as users
//! API identifiers. `Identifier` gains `Email`, `Phone` and `BrazeId` (a
//! profile id) as its last variants (logged `DeleteUsers` records; cohort
//! deltas never hold them); `Target` gains `Email`, `Phone`, `BrazeId` and
//! `ExternalWith` (an external_id with a braze_id and/or an email or phone)
//! as its last variants (logged `Track` records). A workspace image gains,
//! as its last field, `recency`: for each profile holding an email or
//! phone, how recently it was updated (a lookup by email or phone finds the
//! most recently updated holder). The email and phone indexes themselves
//! are not stored: they are rebuilt from the `email` and `phone`
//! attributes at load.
//!
//! The types that hold the new variants are declared again here, field for
//! field as in version 4: `Change`, `AttributesObject`, `EventObject`,
//! `Track`, `Record`, `WorkspaceImage` and `Image`. Every other type is
//! version 4's.
//!
//! Because every new variant is last, a version 4 record's bytes decode as
//! the same version 5 record. An image's new field is not last in the
//! payload (workspaces come before `limits`), so version 4 images are
//! migrated (`migrate::image_v4_to_v5`: `recency` empty; ties between
//! holders go to the highest profile id).

use serde::{Deserialize, Serialize};

pub use super::v4::{
    Alias, AttrCond, AttrUpdate, AttrValue, Bound, CohortImage, CohortKey, CohortMeta, Details,
    EventCond, EventStats, Filter, Gaps, Identify, ImportKey, ImportRecord, Instant, KeyHash,
    Millis, NewAliases, Object, Profile, Profiles, Scalar, Segment, StateLimits, WorkspaceId,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Identifier {
    External(String),
    Alias(Alias),
    Device(String),
    Email(String),
    Phone(String),
    BrazeId(u32),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub remove: bool,
    pub ids: Vec<Identifier>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Contact {
    Email(String),
    Phone(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Target {
    External {
        id: String,
        create: bool,
    },
    Alias {
        alias: Alias,
        create: bool,
    },
    Device(String),
    Email {
        email: String,
        create: bool,
    },
    Phone {
        phone: String,
        create: bool,
    },
    BrazeId(u32),
    ExternalWith {
        id: String,
        create: bool,
        braze_id: Option<u32>,
        contact: Option<Contact>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributesObject {
    pub target: Target,
    pub changes: Vec<(String, AttrUpdate)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventObject {
    pub target: Target,
    pub name: String,
    pub time: Millis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub attributes: Vec<AttributesObject>,
    pub events: Vec<EventObject>,
    pub purchases: Vec<EventObject>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceImage<P = Profiles> {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Millis,
    pub rest_key: KeyHash,
    pub profiles: P,
    pub import_keys: Vec<ImportKey>,
    pub segments: Vec<Segment>,
    pub last_segment: u64,
    pub cohorts: Vec<CohortImage>,
    /// `(profile id, n)`, ascending ids: the larger `n`, the more recently
    /// that email or phone holder was updated.
    pub recency: Vec<(u32, u64)>,
}

/// A log record of version 5: version 4's, spelled with version 5's
/// `Change`, `Track` and `Identifier`.
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
    SetLimits(StateLimits),
}

/// A snapshot payload of version 5. `P` is a workspace's profiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image<P = Profiles> {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage<P>>,
    pub limits: Option<StateLimits>,
}
