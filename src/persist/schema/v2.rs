//! Format version 2: the first version owned by this module.
//!
//! What changed from version 1:
//! - log segments start with a header naming the version (`persist::wal`);
//! - a `Restore` record names the format version of the image it carries
//!   (a snapshot of any readable version can be restored, so the image is
//!   kept in the bytes its file had), and whether it keeps the id counters:
//!   restores logged by this version never rewind the workspace and segment
//!   id counters, so an id given out before a restore is never given out
//!   again (version 1 restores did rewind them, and replay keeps doing so
//!   for those records: ids handed out after them depended on it);
//! - a snapshot keeps profiles as a list of live profiles in id order, each
//!   with the number of ids skipped before it, plus the id bound, instead
//!   of the in-memory table's 4,096-slot chunks, so the store's layout can
//!   change without touching the format (a dense table costs one byte per
//!   profile for the gap, as the chunks' `Option` tags did).
//!
//! Every type whose shape did not change is version 1's, re-exported. Two
//! fields are generic so that the writer can encode straight from the live
//! state (a delta's changes, a workspace's profiles) without building an
//! owned copy first; the default type parameter is what the reader decodes.
//! Writer and reader produce the same bytes, which the round-trip tests pin.

use serde::{Deserialize, Serialize};

pub use super::v1::{
    Alias, AttrCond, AttrUpdate, AttrValue, AttributesObject, Bound, Change, CohortImage,
    CohortKey, CohortMeta, Details, EventCond, EventObject, EventStats, Filter, Identifier,
    Identify, ImportKey, ImportRecord, Instant, KeyHash, Millis, NewAliases, Profile, Scalar,
    Segment, Target, Track, WorkspaceId,
};

/// A log record of version 2. `C` is the changes of a delta.
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

/// A snapshot payload of version 2. `P` is a workspace's profiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image<P = Profiles> {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage<P>>,
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

/// A workspace's profiles: every live one in id order, each with the
/// number of ids skipped since the previous one (for the first, its id),
/// and one past the highest id ever given out (ids are never reused, so
/// the bound survives deletes at the end).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    pub id_bound: u32,
    pub list: Vec<(u32, Profile)>,
}

/// The one rule between profile ids and the gaps `Profiles::list` stores:
/// each entry's gap is the number of ids skipped since the previous entry
/// (for the first, its id). Writers call [`Gaps::gap`], readers
/// [`Gaps::id`], each once per profile in id order.
#[derive(Debug, Default)]
pub struct Gaps {
    next: u32,
}

impl Gaps {
    /// The gap to store before `id` (ids must ascend).
    pub fn gap(&mut self, id: u32) -> u32 {
        let gap = id - self.next;
        self.next = id + 1;
        gap
    }

    /// The id a stored `gap` stands for; an error if it leaves the id space.
    pub fn id(&mut self, gap: u32) -> Result<u32, String> {
        let id = self
            .next
            .checked_add(gap)
            .filter(|id| *id < u32::MAX)
            .ok_or_else(|| format!("profile id {} + gap {gap} overflows", self.next))?;
        self.next = id + 1;
        Ok(id)
    }
}

impl Default for Image {
    fn default() -> Self {
        Image {
            next_workspace: 0,
            workspaces: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Gaps;

    #[test]
    fn gaps_and_ids_are_inverse_and_overflow_is_refused() {
        let ids = [0u32, 1, 5, 6, 4_000_000];
        let mut w = Gaps::default();
        let gaps: Vec<u32> = ids.iter().map(|&id| w.gap(id)).collect();
        assert_eq!(gaps, vec![0, 0, 3, 0, 3_999_993]);
        let mut r = Gaps::default();
        let back: Vec<u32> = gaps.iter().map(|&g| r.id(g).expect("in range")).collect();
        assert_eq!(back, ids);
        assert!(r.id(u32::MAX).is_err());
    }
}
