//! Format version 7.
//!
//! What changed from version 6: a workspace image keeps its profiles'
//! column index (`profiles::columns`), so that a restart loads the index
//! instead of rebuilding it from every profile. It is the field `index`,
//! just before `profiles`: `None` means "not stored: rebuild it from the
//! profiles", which is what every older image migrates to
//! (`migrate::image_v6_to_v7`). `Some` holds [`IndexBytes`]: the bincode
//! of an [`Index`] as a byte string (a varint length, then the bytes), so
//! that a reader can hand it to another thread and decode the profiles
//! meanwhile.
//!
//! The index is stored as what it holds, not as the server lays it out
//! (dictionary shards, ordered buckets and spans are cut afresh at load):
//!
//! - per attribute path, in ascending byte order of paths: `multi` (a
//!   profile may hold several values here), `exists`, each distinct string
//!   and each distinct string-array item with its holders (in no
//!   particular order; a time's text is not among the strings), each
//!   number key and each time key with its holders, then the `false`,
//!   `true`, location and `dated` (holds a time) sets;
//! - per event name, in ascending byte order: `did`, then each count and
//!   each last-time key with its holders.
//!
//! Keys are the order-preserving `u64`s of `columns::num_key` (numbers:
//! the IEEE bits, sign bit flipped for positives and all bits flipped for
//! negatives, with -0 as 0) and `columns::time_key` (instants in ms with
//! the sign bit flipped); counts are themselves. They are stored strictly
//! ascending, each as its gap from the key before (the first from 0).
//!
//! Log records are unchanged: a version 6 record's bytes are the same
//! version 7 record.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

pub use super::v6::*;

/// Who holds one value or key: one profile id, or a set of at least two
/// (a roaring bitmap, in the portable Roaring format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Holders {
    One(u32),
    Many(RoaringBitmap),
}

/// `(gap from the previous key, holders)`, keys strictly ascending.
pub type Runs = Vec<(u64, Holders)>;

/// One attribute path's index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttrIndex {
    pub path: String,
    pub multi: bool,
    pub exists: RoaringBitmap,
    pub texts: Vec<(String, Holders)>,
    pub items: Vec<(String, Holders)>,
    pub numbers: Runs,
    pub times: Runs,
    pub falses: RoaringBitmap,
    pub trues: RoaringBitmap,
    pub locations: RoaringBitmap,
    pub dated: RoaringBitmap,
}

/// One custom event's index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventIndex {
    pub name: String,
    pub did: RoaringBitmap,
    pub counts: Runs,
    pub last: Runs,
}

/// A workspace's column index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub attributes: Vec<AttrIndex>,
    pub events: Vec<EventIndex>,
}

/// The bincode of an [`Index`], written as bytes (a varint length, then
/// the bytes).
pub type IndexBytes = Packed;

/// A workspace in a version 7 image: version 6's fields, with `index`
/// before `profiles`.
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
    /// As in version 5.
    pub recency: Vec<(u32, u64)>,
}

/// A snapshot payload of version 7.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image<P = Profiles, X = Option<IndexBytes>> {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage<P, X>>,
    pub limits: Option<StateLimits>,
}
