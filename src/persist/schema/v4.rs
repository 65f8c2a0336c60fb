//! Format version 4.
//!
//! What changed from version 3: nested custom attributes and locations.
//! `AttrValue` gains `Object` (a nested object's members, by key),
//! `Objects` (an array of objects) and `Location` (`current_location`), and
//! `AttrCond` gains `WithinKm`, each appended as the *last* variants. The
//! types that hold them are declared again here, field for field as in
//! version 3: `AttrUpdate`, `AttributesObject`, `Track` and `Record` (a
//! logged track), `Filter` and `Segment` (a saved filter), `Details`,
//! `Profile`, `Profiles`, `WorkspaceImage` and `Image` (a snapshot).
//!
//! Every other type is version 3's. Because every new variant is last, a
//! version 3 record's or image's bytes decode as the same version 4 value
//! (old data holds no nested value); `migrate::record_v3_to_v4` and
//! `migrate::image_v3_to_v4` re-spell owned version 3 values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::v2::Gaps;
pub use super::v3::{
    Alias, Bound, Change, CohortImage, CohortKey, CohortMeta, EventCond, EventObject, EventStats,
    Identifier, Identify, ImportKey, ImportRecord, Instant, KeyHash, Millis, NewAliases, Scalar,
    StateLimits, Target, WorkspaceId,
};

/// A nested object's members.
pub type Object = BTreeMap<String, AttrValue>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Str(String),
    Num(f64),
    Bool(bool),
    Time { text: String, at: Millis },
    Array(Vec<String>),
    Object(Object),
    Objects(Vec<Object>),
    Location { latitude: f64, longitude: f64 },
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
pub struct AttributesObject {
    pub target: Target,
    pub changes: Vec<(String, AttrUpdate)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub attributes: Vec<AttributesObject>,
    pub events: Vec<EventObject>,
    pub purchases: Vec<EventObject>,
}

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
    WithinKm {
        latitude: f64,
        longitude: f64,
        km: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: u64,
    pub name: String,
    pub filter: Filter,
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

/// As version 2's `Profiles`, of version 4 profiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    pub id_bound: u32,
    pub list: Vec<(u32, Profile)>,
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
}

/// A log record of version 4: version 3's, spelled with version 4's
/// `Track` and `Filter`.
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

/// A snapshot payload of version 4. `P` is a workspace's profiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image<P = Profiles> {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage<P>>,
    pub limits: Option<StateLimits>,
}
