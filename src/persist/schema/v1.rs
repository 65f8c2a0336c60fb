//! Format version 1: what cohortd wrote up to commit b09aa9e, when the log
//! and snapshots were bincode of the live types themselves.
//!
//! These declarations are a frozen copy of the serde shape of those types
//! (`router::Command`, `state::Image` and everything they held), field for
//! field and variant for variant, in the same order: bincode's serde mode is
//! not self-describing, so the order *is* the format. Never edit a type
//! here; a change is a new version (see `docs/format.md`).
//!
//! Encoding notes that make these equal to the originals on disk: a
//! newtype struct (`WorkspaceId(u32)`, `KeyHash([u8; 32])`) is encoded as
//! its field, `Arc<T>` and `Box<T>` as `T`, `CompactString` as a string, a
//! `Pattern` as its source string. Version 1 log segments have no header.

use std::collections::BTreeMap;
use std::sync::Arc;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

pub type Millis = i64;
pub type WorkspaceId = u32;
pub type KeyHash = [u8; 32];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CohortKey {
    pub partner: String,
    pub cohort_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub alias_name: String,
    pub alias_label: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Identifier {
    External(String),
    Alias(Alias),
    Device(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub remove: bool,
    pub ids: Vec<Identifier>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportKey {
    pub key_id: String,
    pub partner: String,
    pub hash: KeyHash,
    pub masked: String,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Str(String),
    Num(f64),
    Bool(bool),
    Time { text: String, at: Millis },
    Array(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrUpdate {
    Set(AttrValue),
    Remove,
    Increment(f64),
    ArrayEdit {
        add: Vec<String>,
        remove: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Target {
    External { id: String, create: bool },
    Alias { alias: Alias, create: bool },
    Device(String),
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
pub struct Identify {
    pub aliases: Vec<(String, Alias)>,
    pub devices: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAliases(pub Vec<(Option<String>, Alias)>);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    All,
    Cohort(CohortKey),
    Attribute { name: String, cond: AttrCond },
    Event { name: String, cond: EventCond },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrCond {
    Equals(Scalar),
    NotEquals(Scalar),
    /// The regex source.
    MatchesRegex(String),
    DoesNotMatchRegex(String),
    Exists,
    DoesNotExist,
    GreaterThan(Bound),
    LessThan(Bound),
    IncludesValue(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Bound {
    Num(f64),
    Time(Instant),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instant {
    pub text: String,
    pub at: Millis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventCond {
    MoreThan(u64),
    LessThan(u64),
    Exactly(u64),
    LastPerformedAfter(Instant),
    LastPerformedBefore(Instant),
}

/// A log record of version 1: the router's command as it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        changes: Vec<Change>,
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
    /// `image` is a version 1 snapshot payload.
    Restore {
        snapshot_id: String,
        image: Vec<u8>,
    },
}

/// A snapshot payload of version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceImage {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Millis,
    pub rest_key: KeyHash,
    pub profiles: ProfileImage,
    pub import_keys: Vec<ImportKey>,
    pub segments: Vec<Segment>,
    pub last_segment: u64,
    pub cohorts: Vec<CohortImage>,
}

/// The profile table as it lay in memory: chunks of 4,096 slots, `None`
/// for a deleted or merged-away id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileImage {
    pub table: Table,
    pub live: RoaringBitmap,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub chunks: Vec<Vec<Option<Profile>>>,
    pub len: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub external_id: Option<String>,
    pub details: Option<Details>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    pub aliases: Vec<Alias>,
    pub devices: Vec<String>,
    pub attributes: BTreeMap<String, AttrValue>,
    pub events: BTreeMap<String, EventStats>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventStats {
    pub count: u64,
    pub first: Millis,
    pub last: Millis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: u64,
    pub name: String,
    pub filter: Filter,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CohortImage {
    pub key: CohortKey,
    pub meta: CohortMeta,
    /// Shared with the live cohort when writing (an `Arc` encodes as its
    /// content).
    pub members: Arc<RoaringBitmap>,
    /// Newest first.
    pub history: Vec<ImportRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CohortMeta {
    pub name: String,
    pub created_at: Millis,
    pub named: bool,
    pub updated_at: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    pub at: Millis,
    pub added: u64,
    pub removed: u64,
    pub unmatched: u64,
    pub size: u64,
}
