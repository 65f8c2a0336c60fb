//! Everything the engine holds, as readers see it.
//!
//! `State` is shared by `Arc` between the sequencers (each workspace's lane
//! writes that workspace, the router creates workspaces and swaps the
//! whole state on a restore; each cohort actor writes its own members) and the HTTP workers
//! (readers). Readers never go through an actor: they take short locks or
//! `Arc`s of immutable sets, which is what makes reads fast and
//! read-your-writes (a write is acknowledged only once it is visible here).
//! Those reads live in `read`; outside the engine a `Workspace` is an
//! opaque handle whose locks nobody else takes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use actix::Addr;
use compact_str::CompactString;
use dashmap::DashMap;
use parking_lot::RwLock;

use roaring::RoaringBitmap;

use super::cohort::{Cohort, CohortCell, CohortImage};
use super::tracking::Members;
use crate::keys::KeyHash;
use crate::limits::{Exceeded, Limit};
use crate::model::{CohortKey, Millis, WorkspaceId};
use crate::profiles::{ProfileImage, ProfileStore};
use crate::segment::{CohortSets, Filter};

/// A saved segment: a name and a validated filter, what the filter reads,
/// and who matched it after the last write (`tracking`).
#[derive(Clone, Debug)]
pub struct Segment {
    pub id: u64,
    pub name: String,
    pub filter: Filter,
    pub reads: crate::segment::Reads,
    pub members: Members,
    /// Its events' `properties` (`{segment_id, name}`), rendered once.
    pub properties: Arc<str>,
}

/// A saved segment as a snapshot keeps it: `members` is `None` in data
/// written before segments kept them (they are evaluated at load).
#[derive(Clone, Debug)]
pub struct SegmentImage {
    pub id: u64,
    pub name: String,
    pub filter: Filter,
    pub members: Option<Arc<roaring::RoaringBitmap>>,
}

impl Segment {
    pub fn new(id: u64, name: String, filter: Filter, members: RoaringBitmap) -> Segment {
        Segment {
            properties: super::tracking::segment_properties(id, &name),
            id,
            name,
            reads: filter.reads(),
            filter,
            members: Members::new(members),
        }
    }

    pub fn format_id(id: u64) -> String {
        format!("seg_{id}")
    }

    pub fn id_string(&self) -> String {
        Segment::format_id(self.id)
    }

    /// The id `s` names, if it is exactly one we give out: `seg_01` and
    /// `seg_+1` are not `seg_1` (`u64::from_str` would accept both).
    pub fn parse_id(s: &str) -> Option<u64> {
        let id = s.strip_prefix("seg_")?.parse().ok()?;
        (Segment::format_id(id) == s).then_some(id)
    }
}

/// A data import key (`client_secret`) as stored: hash only.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportKey {
    pub key_id: String,
    pub partner: CompactString,
    pub hash: KeyHash,
    pub masked: String,
    pub created_at: Millis,
}

/// A custom HTTP connector (SPEC §10): where the workspace's feed events
/// are delivered (`crate::connector`). The token is kept to send, and
/// never shown.
#[derive(Clone, Debug, PartialEq)]
pub struct Connector {
    /// `conn_` and 32 hex digits, made when it is created.
    pub id: String,
    pub name: String,
    pub url: String,
    pub bearer_token: Option<String>,
    /// `None`: every type.
    pub event_types: Option<Vec<crate::feed::EventType>>,
    pub created_at: Millis,
    /// It delivers the feed's events after this seq: the newest when it
    /// was created, so a new connector starts with what happens next.
    pub start_after: u64,
}

/// A cohort as the workspace holds it: its readable cell and its actor.
#[derive(Clone)]
pub struct CohortEntry {
    pub cell: Arc<CohortCell>,
    pub addr: Addr<Cohort>,
}

/// One workspace's live data. Its fields (and the locks in them) are the
/// engine's: its lane writes them (`engine::apply`), and everything outside the engine
/// reads through the methods in `read`.
pub struct Workspace {
    pub(super) id: WorkspaceId,
    pub(super) name: String,
    pub(super) created_at: Millis,
    pub(super) rest_key: KeyHash,
    pub(super) profiles: RwLock<ProfileStore>,
    pub(super) cohorts: DashMap<CohortKey, CohortEntry>,
    pub(super) import_keys: RwLock<Vec<ImportKey>>,
    pub(super) segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// The last segment id given out (ids are never reused).
    pub(super) last_segment: AtomicU64,
    /// Member sets kept for segment walks in progress (`walks`).
    pub(super) walks: super::walks::Walks,
    /// By id.
    pub(super) connectors: RwLock<BTreeMap<String, Arc<Connector>>>,
}

impl Workspace {
    pub fn new(id: WorkspaceId, name: String, rest_key: KeyHash, created_at: Millis) -> Self {
        Workspace {
            id,
            name,
            created_at,
            rest_key,
            profiles: RwLock::new(ProfileStore::new()),
            cohorts: DashMap::new(),
            import_keys: RwLock::new(Vec::new()),
            segments: RwLock::new(BTreeMap::new()),
            last_segment: AtomicU64::new(0),
            walks: Default::default(),
            connectors: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn id(&self) -> WorkspaceId {
        self.id
    }

    /// The last segment id given out in this workspace.
    pub(super) fn last_segment_id(&self) -> u64 {
        self.last_segment.load(Ordering::Relaxed)
    }

    pub(super) fn cohort(&self, key: &CohortKey) -> Option<Arc<CohortCell>> {
        self.cohorts.get(key).map(|e| e.cell.clone())
    }

    /// Every cohort, ordered by (partner, cohort_id).
    pub(super) fn cohorts_sorted(&self) -> Vec<Arc<CohortCell>> {
        let mut all: Vec<_> = self.cohorts.iter().map(|e| e.cell.clone()).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// `cohorts_per_workspace`: whether one more cohort (`key`) fits.
    pub(super) fn check_new_cohort(&self, key: &CohortKey, max: usize) -> Result<(), Exceeded> {
        Exceeded::check(
            Limit::CohortsPerWorkspace,
            max,
            self.cohorts.len() + 1,
            || {
                format!(
                    "creating cohort {:?} of partner {:?}",
                    key.cohort_id.as_str(),
                    key.partner.as_str()
                )
            },
        )
    }

    /// `segments_per_workspace`: whether one more segment fits next to
    /// `existing` ones.
    pub(super) fn check_new_segment(&self, existing: usize, max: usize) -> Result<(), Exceeded> {
        Exceeded::check(Limit::SegmentsPerWorkspace, max, existing + 1, || {
            "creating a segment".to_string()
        })
    }

    pub fn segment(&self, id: u64) -> Option<Arc<Segment>> {
        self.segments.read().get(&id).cloned()
    }

    /// Every saved segment, by id.
    pub fn segments_sorted(&self) -> Vec<Arc<Segment>> {
        self.segments.read().values().cloned().collect()
    }

    /// Whether its writes keep saved segments' members (it has one; see
    /// `tracking`).
    pub(super) fn tracks_segments(&self) -> bool {
        !self.segments.read().is_empty()
    }

    /// Every connector, by id.
    pub fn connectors_sorted(&self) -> Vec<Arc<Connector>> {
        self.connectors.read().values().cloned().collect()
    }

    pub fn connector(&self, id: &str) -> Option<Arc<Connector>> {
        self.connectors.read().get(id).cloned()
    }

    pub(super) fn cohort_addrs(&self) -> Vec<Addr<Cohort>> {
        self.cohorts.iter().map(|e| e.addr.clone()).collect()
    }
}

/// Segment evaluation reads each cohort's current set in O(1).
impl CohortSets for Workspace {
    fn members(&self, key: &CohortKey) -> Option<Arc<roaring::RoaringBitmap>> {
        self.cohort(key).map(|c| c.members())
    }
}

/// A snapshot's content: the whole state at one log position.
#[derive(Debug, Default)]
pub struct Image {
    pub next_workspace: u32,
    pub workspaces: Vec<WorkspaceImage>,
    /// The state-dependent limits in force at the cut (`None`: data from
    /// before limits existed, no limit). See `limits::StateLimits`.
    pub limits: Option<crate::limits::StateLimits>,
}

#[derive(Debug)]
pub struct WorkspaceImage {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Millis,
    pub rest_key: KeyHash,
    pub profiles: ProfileImage,
    pub import_keys: Vec<ImportKey>,
    pub segments: Vec<SegmentImage>,
    pub last_segment: u64,
    pub cohorts: Vec<CohortImage>,
    /// By id.
    pub connectors: Vec<Connector>,
}

impl Workspace {
    /// Everything but the cohorts, which their actors image (see
    /// `cohort::TakeImage`). Called by the router between two commands (every lane held).
    pub fn image_without_cohorts(&self) -> WorkspaceImage {
        WorkspaceImage {
            id: self.id,
            name: self.name.clone(),
            created_at: self.created_at,
            rest_key: self.rest_key,
            profiles: self.profiles.read().image(),
            import_keys: self.import_keys.read().clone(),
            segments: self
                .segments
                .read()
                .values()
                .map(|s| SegmentImage {
                    id: s.id,
                    name: s.name.clone(),
                    filter: s.filter.clone(),
                    members: Some(s.members.current()),
                })
                .collect(),
            last_segment: self.last_segment.load(Ordering::Relaxed),
            cohorts: Vec::new(),
            connectors: self
                .connectors
                .read()
                .values()
                .map(|c| (**c).clone())
                .collect(),
        }
    }
}

/// Where a live client secret points.
#[derive(Clone, Debug)]
pub struct ImportKeyOwner {
    pub workspace: WorkspaceId,
    pub partner: CompactString,
}

/// The current state, swapped whole by a restore: a reader takes the `Arc`
/// once per request and so never mixes state from before and after.
pub type StateCell = Arc<RwLock<Arc<State>>>;

#[derive(Default)]
pub struct State {
    workspaces: DashMap<WorkspaceId, Arc<Workspace>>,
    by_rest_key: DashMap<KeyHash, WorkspaceId>,
    by_import_key: DashMap<KeyHash, ImportKeyOwner>,
    next_workspace: AtomicU32,
}

impl State {
    /// The state an image describes; `spawn` starts each cohort's actor.
    pub fn from_image(image: Image, mut spawn: impl FnMut(CohortImage) -> CohortEntry) -> State {
        let state = State {
            next_workspace: AtomicU32::new(image.next_workspace),
            ..State::default()
        };
        for w in image.workspaces {
            let ws = Workspace {
                profiles: RwLock::new(ProfileStore::from_image(w.profiles)),
                last_segment: AtomicU64::new(w.last_segment),
                connectors: RwLock::new(
                    w.connectors
                        .into_iter()
                        .map(|c| (c.id.clone(), Arc::new(c)))
                        .collect(),
                ),
                ..Workspace::new(w.id, w.name, w.rest_key, w.created_at)
            };
            for c in w.cohorts {
                let key = c.key.clone();
                ws.cohorts.insert(key, spawn(c));
            }
            // Members not stored (older data) are evaluated now, once the
            // profiles and cohorts are in place.
            let segments = w
                .segments
                .into_iter()
                .map(|s| {
                    let members = s
                        .members
                        .unwrap_or_else(|| Arc::new(super::tracking::baseline(&ws, &s.filter)));
                    let mut segment = Segment::new(s.id, s.name, s.filter, RoaringBitmap::new());
                    segment.members = Members::shared(members);
                    (segment.id, Arc::new(segment))
                })
                .collect();
            *ws.segments.write() = segments;
            for k in w.import_keys {
                state.insert_import_key(&ws, k);
            }
            state.insert_workspace(ws);
        }
        state
    }

    pub fn next_workspace(&self) -> u32 {
        self.next_workspace.load(Ordering::Relaxed)
    }

    pub fn workspace(&self, id: WorkspaceId) -> Option<Arc<Workspace>> {
        self.workspaces.get(&id).map(|w| w.clone())
    }

    pub fn workspace_by_rest_key(&self, key: &str) -> Option<Arc<Workspace>> {
        let id = *self.by_rest_key.get(&KeyHash::of(key))?;
        self.workspace(id)
    }

    pub fn import_key_owner(&self, secret: &str) -> Option<ImportKeyOwner> {
        self.by_import_key
            .get(&KeyHash::of(secret))
            .map(|o| o.clone())
    }

    /// Workspaces by id.
    pub fn workspaces_sorted(&self) -> Vec<Arc<Workspace>> {
        let mut all: Vec<_> = self.workspaces.iter().map(|w| w.clone()).collect();
        all.sort_by_key(|w| w.id);
        all
    }

    // ---- writes: called through `engine::apply` only ----

    pub(super) fn next_workspace_id(&self) -> WorkspaceId {
        WorkspaceId(self.next_workspace.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub(super) fn insert_workspace(&self, ws: Workspace) {
        self.by_rest_key.insert(ws.rest_key, ws.id);
        self.workspaces.insert(ws.id, Arc::new(ws));
    }

    /// A shard's restore, in place (`Applier::restore_shard`): removes
    /// the workspaces `replaced` names, takes in `restored`'s, and moves
    /// the workspace counter up to `counter` if it is lower.
    pub(super) fn replace(
        &self,
        replaced: impl Fn(WorkspaceId) -> bool,
        restored: State,
        counter: u32,
    ) {
        let gone: Vec<WorkspaceId> = self
            .workspaces
            .iter()
            .map(|w| w.id)
            .filter(|id| replaced(*id))
            .collect();
        for id in gone {
            if let Some((_, ws)) = self.workspaces.remove(&id) {
                self.by_rest_key.remove(&ws.rest_key);
                for k in ws.import_keys.read().iter() {
                    self.by_import_key.remove(&k.hash);
                }
            }
        }
        for ws in restored.workspaces_sorted() {
            self.adopt(ws);
        }
        self.next_workspace.fetch_max(counter, Ordering::Relaxed);
    }

    /// Takes in a live workspace as it is.
    fn adopt(&self, ws: Arc<Workspace>) {
        for k in ws.import_keys.read().iter() {
            self.by_import_key.insert(
                k.hash,
                ImportKeyOwner {
                    workspace: ws.id,
                    partner: k.partner.clone(),
                },
            );
        }
        self.by_rest_key.insert(ws.rest_key, ws.id);
        self.workspaces.insert(ws.id, ws);
    }

    pub(super) fn insert_import_key(&self, ws: &Workspace, key: ImportKey) {
        self.by_import_key.insert(
            key.hash,
            ImportKeyOwner {
                workspace: ws.id,
                partner: key.partner.clone(),
            },
        );
        ws.import_keys.write().push(key);
    }

    /// Invalidates a key; false if the workspace has no such key for `partner`.
    pub(super) fn remove_import_key(&self, ws: &Workspace, partner: &str, key_id: &str) -> bool {
        let mut keys = ws.import_keys.write();
        let Some(pos) = keys
            .iter()
            .position(|k| k.key_id == key_id && k.partner == partner)
        else {
            return false;
        };
        let key = keys.remove(pos);
        self.by_import_key.remove(&key.hash);
        true
    }

    /// Counts for `/metrics`: (workspaces, profiles, cohorts, memberships).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let (mut profiles, mut cohorts, mut members) = (0, 0, 0);
        for ws in self.workspaces.iter() {
            profiles += ws.profiles.read().len();
            cohorts += ws.cohorts.len() as u64;
            members += ws.cohorts.iter().map(|c| c.cell.size()).sum::<u64>();
        }
        (self.workspaces.len() as u64, profiles, cohorts, members)
    }
}
