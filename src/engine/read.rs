//! Every read the HTTP layer makes, answered as plain values.
//!
//! Reads never go through an actor: they take the workspace's short locks
//! (the profile store's read lock, a cohort's `Arc` of its current set) and
//! see every acknowledged write. Keeping them here, as methods on
//! `Workspace` (and on `Engine` where they need the whole state or the
//! secrets), is what lets the workspace's fields stay private to the
//! engine: the wire layer names no lock and no `ProfileStore`, and which
//! lock a read takes, and for how long, is decided in one file.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use compact_str::CompactString;

use super::cohort::{CohortCell, ImportRecord};
use super::query::{self, MemberCursor, Page};
use super::readpool::Stop;
use super::state::{ImportKey, Segment, Workspace};
use super::Engine;
use crate::error::{Error, Result};
use crate::model::{CohortKey, Identifier, Millis, Uid, WorkspaceId};
use crate::profiles::{Profile, ProfileView};
use crate::segment::{self, Deadline, Filter, OutOfTime};

/// One row of the operator's workspace listing.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkspaceSummary {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Millis,
    pub profiles: u64,
    pub cohorts: usize,
}

/// A cohort as listings show it.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortSummary {
    pub key: CohortKey,
    pub name: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub size: u64,
}

impl CohortSummary {
    fn of(c: &CohortCell) -> Self {
        let meta = c.meta();
        CohortSummary {
            key: c.key.clone(),
            name: meta.name,
            created_at: meta.created_at,
            updated_at: meta.updated_at,
            size: c.size(),
        }
    }
}

/// A page of `GET /cohorts` and where the next one starts.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortPage {
    pub cohorts: Vec<CohortSummary>,
    pub next_cursor: Option<String>,
}

/// A page of `GET /segments` and where the next one starts.
#[derive(Clone, Debug)]
pub struct SegmentPage {
    pub segments: Vec<Arc<Segment>>,
    pub next_cursor: Option<String>,
}

/// A segment preview: how many profiles match, and the first few.
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    pub count: u64,
    pub sample: Vec<query::Member>,
}

/// A cohort a user is a member of.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortMembership {
    pub key: CohortKey,
    pub name: String,
}

/// Everything one user belongs to, cohorts by (partner, cohort_id) and
/// saved segments by id.
#[derive(Clone, Debug)]
pub struct UserMemberships {
    pub cohorts: Vec<CohortMembership>,
    pub segments: Vec<Arc<Segment>>,
}

/// A data import key as listings show it (never its hash).
#[derive(Clone, Debug, PartialEq)]
pub struct ImportKeyInfo {
    pub key_id: String,
    pub masked: String,
    pub created_at: Millis,
}

/// A configured technology partner and this workspace's keys for it.
#[derive(Clone, Debug, PartialEq)]
pub struct PartnerKeys<'a> {
    pub partner: &'a str,
    pub keys: Vec<ImportKeyInfo>,
}

impl Engine {
    /// Every workspace, by id, with its profile and cohort counts.
    pub fn workspaces(&self) -> Vec<WorkspaceSummary> {
        self.state()
            .workspaces_sorted()
            .iter()
            .map(|w| WorkspaceSummary {
                id: w.id,
                name: w.name.clone(),
                created_at: w.created_at,
                profiles: w.profiles.read().len(),
                cohorts: w.cohorts.len(),
            })
            .collect()
    }

    /// Every configured partner, by name, with the keys
    /// `ws` holds for it. Keys of a partner no longer configured are not
    /// listed.
    pub fn technology_partners(&self, ws: &Workspace) -> Vec<PartnerKeys<'_>> {
        let mut keys = ws.keys_by_partner();
        self.partners()
            .map(|partner| PartnerKeys {
                partner,
                keys: keys
                    .remove(partner)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|k| ImportKeyInfo {
                        key_id: k.key_id,
                        masked: k.masked,
                        created_at: k.created_at,
                    })
                    .collect(),
            })
            .collect()
    }
}

impl Workspace {
    /// Import keys grouped by partner.
    fn keys_by_partner(&self) -> BTreeMap<CompactString, Vec<ImportKey>> {
        let mut out: BTreeMap<CompactString, Vec<ImportKey>> = BTreeMap::new();
        for k in self.import_keys.read().iter() {
            out.entry(k.partner.clone()).or_default().push(k.clone());
        }
        out
    }

    fn find_cohort(&self, key: &CohortKey) -> Result<Arc<CohortCell>> {
        self.cohort(key).ok_or(Error::NotFound("cohort"))
    }

    /// Whether the workspace has this cohort (filters may only name these).
    pub fn has_cohort(&self, key: &CohortKey) -> bool {
        self.cohorts.contains_key(key)
    }

    /// A page of the cohorts, ordered by (partner, cohort_id): the first
    /// `limit` after the cursor position `after`. Costs O(cohorts) for the
    /// scan plus O(limit log limit) for the order, never a sort of all.
    pub fn cohort_summaries(&self, after: Option<&CohortKey>, limit: usize) -> CohortPage {
        let mut keys: Vec<CohortKey> = self
            .cohorts
            .iter()
            .map(|e| e.key().clone())
            .filter(|k| after.is_none_or(|a| k > a))
            .collect();
        let more = keys.len() > limit;
        if more {
            // The `limit` smallest, in O(cohorts); only they are sorted.
            keys.select_nth_unstable(limit);
            keys.truncate(limit);
        }
        keys.sort_unstable();
        let cohorts: Vec<CohortSummary> = keys
            .iter()
            .filter_map(|k| self.cohort(k))
            .map(|c| CohortSummary::of(&c))
            .collect();
        let next_cursor = if more {
            keys.last().map(query::cohort_cursor)
        } else {
            None
        };
        CohortPage {
            cohorts,
            next_cursor,
        }
    }

    /// A page of the saved segments, ordered by id: the first `limit`
    /// after the cursor position `after`. Costs O(log segments + limit)
    /// under the segments' read lock (a range of the ordered map), never a
    /// copy of all.
    pub fn segment_page(&self, after: Option<u64>, limit: usize) -> SegmentPage {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut segments: Vec<Arc<Segment>> = self
            .segments
            .read()
            .range((start, Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|(_, s)| s.clone())
            .collect();
        let more = segments.len() > limit;
        segments.truncate(limit);
        let next_cursor = if more {
            segments.last().map(|s| query::segment_cursor(s.id))
        } else {
            None
        };
        SegmentPage {
            segments,
            next_cursor,
        }
    }

    pub fn cohort_summary(&self, key: &CohortKey) -> Result<CohortSummary> {
        self.find_cohort(key).map(|c| CohortSummary::of(&c))
    }

    /// A page of the cohort's current members.
    pub fn cohort_members(
        &self,
        key: &CohortKey,
        after: Option<Uid>,
        limit: usize,
    ) -> Result<Page> {
        let set = self.find_cohort(key)?.members();
        Ok(query::page(
            self.id,
            &set,
            &*self.profiles.read(),
            after,
            limit,
        ))
    }

    /// The cohort's import history, newest first, at most `limit` entries.
    pub fn cohort_imports(&self, key: &CohortKey, limit: usize) -> Result<Vec<ImportRecord>> {
        Ok(self.find_cohort(key)?.history(limit))
    }

    /// The profiles each of `ids` names (`ProfileStore::named`: an email
    /// or phone may name several, anything else one or none), in order,
    /// as they are now. Copies under one short hold of the read lock:
    /// callers bound `ids` (the users export takes 50).
    pub fn profiles_named(&self, ids: &[Identifier]) -> Vec<Vec<(Uid, Profile)>> {
        let store = self.profiles.read();
        ids.iter()
            .map(|id| {
                store
                    .named(id)
                    .into_iter()
                    .filter_map(|uid| Some((uid, store.get(uid)?.clone())))
                    .collect()
            })
            .collect()
    }

    // ---- filter evaluation: run on the read pool (`Engine` below) ----

    /// The profiles as evaluation reads them, detached from the store: the
    /// lock is held only to take the view, so a long evaluation never
    /// holds up the router's writes to this workspace.
    fn profile_view(&self) -> ProfileView {
        self.profiles.read().view()
    }

    /// How many profiles `filter` matches now.
    fn count_matching(&self, filter: &Filter, deadline: &Deadline) -> Result<u64, OutOfTime> {
        segment::count_within(filter, &self.profile_view(), self, deadline)
    }

    /// A page of the segment's members: from the set the walk in `from`
    /// kept, or evaluated now (and kept when more pages follow).
    fn matching_page(
        &self,
        seg: &Arc<Segment>,
        from: Option<MemberCursor>,
        limit: usize,
        deadline: &Deadline,
    ) -> Result<Page, OutOfTime> {
        if let Some(page) = self.kept_page(seg, from, limit) {
            return Ok(page);
        }
        let profiles = self.profile_view();
        let after = from.map(|c| c.after);
        let set = segment::evaluate_within(&seg.filter, &profiles, self, deadline)?;
        let mut page = query::page(self.id, &set, &profiles, after, limit);
        if let Some(c) = &mut page.next_cursor {
            let walk = self.walks.keep(seg.clone(), Arc::new(set));
            *c = query::member_cursor(c, walk);
        }
        Ok(page)
    }

    /// The next page of a walk whose member set is still kept: O(page),
    /// no evaluation. `None` when `from` names no kept walk of `seg`.
    fn kept_page(
        &self,
        seg: &Arc<Segment>,
        from: Option<MemberCursor>,
        limit: usize,
    ) -> Option<Page> {
        let from = from?;
        let walk = from.walk?;
        let set = self.walks.get(walk, seg)?;
        let mut page = query::page(self.id, &set, &self.profile_view(), Some(from.after), limit);
        match &mut page.next_cursor {
            Some(c) => *c = query::member_cursor(c, walk),
            None => self.walks.end(walk),
        }
        Some(page)
    }

    /// For each identifier, whether the profile it names matches `filter`
    /// (an unknown identifier never does). The identifiers resolve and the
    /// view is taken under one hold of the lock; the cohort sets are pinned
    /// once for the whole batch.
    fn matches_many(
        &self,
        filter: &Filter,
        ids: &[Identifier],
        deadline: &Deadline,
    ) -> Result<Vec<bool>, OutOfTime> {
        let (uids, profiles) = {
            let store = self.profiles.read();
            (store.resolve_many(ids.iter()), store.view())
        };
        let known: Vec<Uid> = uids.iter().flatten().copied().collect();
        let mut answers =
            segment::contains_many_within(filter, &profiles, self, &known, deadline)?.into_iter();
        Ok(uids
            .iter()
            .map(|u| u.is_some() && answers.next().unwrap_or(false))
            .collect())
    }

    /// How many profiles `filter` matches, and the first `sample` of them.
    fn preview(
        &self,
        filter: &Filter,
        sample: usize,
        deadline: &Deadline,
    ) -> Result<Preview, OutOfTime> {
        let profiles = self.profile_view();
        let set = segment::evaluate_within(filter, &profiles, self, deadline)?;
        let sample = if sample == 0 {
            Vec::new()
        } else {
            query::page(self.id, &set, &profiles, None, sample).members
        };
        Ok(Preview {
            count: set.len(),
            sample,
        })
    }

    /// The cohorts and saved segments the profile `id` names is in (404
    /// if no profile has that identifier).
    fn memberships(&self, id: &Identifier, deadline: &Deadline) -> Result<UserMemberships, Stop> {
        let (uid, profiles) = {
            let store = self.profiles.read();
            let uid = store.resolve(id).ok_or(Error::NotFound("user"))?;
            (uid, store.view())
        };
        let cohorts = self
            .cohorts_sorted()
            .iter()
            .filter(|c| c.members().contains(uid))
            .map(|c| CohortMembership {
                key: c.key.clone(),
                name: c.meta().name,
            })
            .collect();
        let mut segments = Vec::new();
        for s in self.segments_sorted() {
            deadline.check()?;
            if segment::contains(&s.filter, &profiles, self, uid) {
                segments.push(s);
            }
        }
        Ok(UserMemberships { cohorts, segments })
    }
}

/// The reads that evaluate filters, each on the read pool with its time
/// budget (`readpool`): the HTTP worker that asked only awaits the answer.
impl Engine {
    /// How many profiles the saved segment matches now.
    /// A count the index answers in constant time runs here, on the
    /// HTTP worker: microseconds, less than the pool's two thread hops.
    pub async fn count_matching(&self, ws: &Arc<Workspace>, seg: Arc<Segment>) -> Result<u64> {
        if segment::counts_in_constant_time(&seg.filter) {
            let deadline = Deadline::after(self.inner.reads.budget());
            return ws.count_matching(&seg.filter, &deadline).map_err(|_| {
                self.inner.metrics.reject("read_budget_exceeded");
                Error::ReadBudgetExceeded(self.inner.reads.budget_millis())
            });
        }
        let ws = ws.clone();
        self.pooled(ws.id, move |d| Ok(ws.count_matching(&seg.filter, d)?))
            .await
    }

    /// A page of the saved segment's members (`walks`: what a walk sees).
    pub async fn matching_page(
        &self,
        ws: &Arc<Workspace>,
        seg: Arc<Segment>,
        from: Option<MemberCursor>,
        limit: usize,
    ) -> Result<Page> {
        // A later page of a kept walk is O(page), like a cohort's member
        // page, and is served here on the HTTP worker: no thread hops.
        if let Some(page) = ws.kept_page(&seg, from, limit) {
            return Ok(page);
        }
        let ws = ws.clone();
        self.pooled(ws.id, move |d| Ok(ws.matching_page(&seg, from, limit, d)?))
            .await
    }

    /// The batch membership check: one answer per identifier, in order.
    pub async fn matches_many(
        &self,
        ws: &Arc<Workspace>,
        seg: Arc<Segment>,
        ids: Vec<Identifier>,
    ) -> Result<Vec<bool>> {
        let ws = ws.clone();
        self.pooled(ws.id, move |d| Ok(ws.matches_many(&seg.filter, &ids, d)?))
            .await
    }

    /// A filter's count and first `sample` members, without saving it.
    pub async fn preview(
        &self,
        ws: &Arc<Workspace>,
        filter: Filter,
        sample: usize,
    ) -> Result<Preview> {
        let ws = ws.clone();
        self.pooled(ws.id, move |d| Ok(ws.preview(&filter, sample, d)?))
            .await
    }

    /// One user's cohorts and saved segments (404 for an unknown user).
    pub async fn memberships(
        &self,
        ws: &Arc<Workspace>,
        id: Identifier,
    ) -> Result<UserMemberships> {
        let ws = ws.clone();
        self.pooled(ws.id, move |d| ws.memberships(&id, d)).await
    }
}
