//! Format version 8.
//!
//! What changed from version 7: the log carries what the change feed
//! reports (issue 12), and workspaces keep their export connectors.
//!
//! - `EventObject` (`/users/track` events and purchases) gains
//!   `properties` (the object's `properties` as JSON text, `None` when it
//!   had none) and, for purchases, `currency` and `price`.
//! - `Track`, `Identify` and `DeleteUsers` records gain `at`, the time the
//!   write was accepted (the time of its feed events). `None` is a record
//!   migrated from an older version: it makes no feed events, as it made
//!   none when it was written.
//! - Two record kinds, last: `PutConnector` (creates a connector; its id
//!   travels inside, so replays and restores never reuse one) and
//!   `DeleteConnector`.
//! - A workspace image gains `connectors`, as its last field, and each
//!   saved segment its members (who matched it at the cut: the base the
//!   feed's `users.segments.Entered`/`Exited` events are computed from).
//!
//! Every other type is version 7's. A version 7 record whose variant
//! changed is migrated (`migrate::record_v5_to_v8`); images migrate with
//! no connectors (`migrate::image_v7_to_v8`). A connector's delivery
//! progress is not in the image or the log: it is in the connector's own
//! file (`connector::progress`), next to the feed it reads.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

pub use super::v7::*;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventObject {
    pub target: Target,
    /// An event's name, or a purchase's product_id.
    pub name: String,
    pub time: Millis,
    /// A JSON object, as text.
    pub properties: Option<String>,
    pub currency: Option<String>,
    pub price: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub attributes: Vec<AttributesObject>,
    pub events: Vec<EventObject>,
    pub purchases: Vec<EventObject>,
}

/// A custom HTTP connector (SPEC §10).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connector {
    pub id: String,
    pub name: String,
    pub url: String,
    pub bearer_token: Option<String>,
    /// Feed event type codes (`feed::EventType::code`); `None`: all.
    pub event_types: Option<Vec<u8>>,
    pub created_at: Millis,
    /// It delivers the workspace's feed events after this seq (the newest
    /// when it was created).
    pub start_after: u64,
}

/// A saved segment in a version 8 image: version 4's fields, then who
/// matched it at the cut (`None` only in images migrated from older
/// versions: evaluated at load).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: u64,
    pub name: String,
    pub filter: Filter,
    pub members: Option<RoaringBitmap>,
}

/// A log record of version 8.
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
    PutConnector {
        ws: WorkspaceId,
        connector: Connector,
    },
    DeleteConnector {
        ws: WorkspaceId,
        id: String,
    },
}

/// A workspace in a version 8 image: version 7's fields, then
/// `connectors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceImage<P = Profiles, X = Option<IndexBytes>> {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Millis,
    pub rest_key: KeyHash,
    pub index: X,
    pub profiles: P,
    pub import_keys: Vec<ImportKey>,
    pub segments: Vec<Segment>,
    pub last_segment: u64,
    pub cohorts: Vec<CohortImage>,
    pub recency: Vec<(u32, u64)>,
    /// By id.
    pub connectors: Vec<Connector>,
}

/// A snapshot payload of version 8.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image<P = Profiles, X = Option<IndexBytes>> {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage<P, X>>,
    pub limits: Option<StateLimits>,
}
