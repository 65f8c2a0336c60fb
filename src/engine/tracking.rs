//! Saved segments' members, kept up to date as writes apply, and the
//! `users.segments.Entered` / `Exited` events of the change feed (issue
//! 12).
//!
//! Each saved segment keeps the set of profiles that matched it after the
//! last write ([`Members`]): computed whole once, when the segment is saved
//! (or loaded without it), then only ever updated for the profiles a write
//! touched, in the segments that write can affect ([`Touched`]): a partner
//! delta affects the segments that read its cohort; a track, those that
//! read an attribute or event it wrote, plus every segment for the
//! profiles it created; merges, deletes and new alias profiles, every
//! segment, for those profiles. A filter cannot change its answer for a
//! profile unless something it reads changed for that profile
//! (`segment::Filter::reads`), so nothing else is evaluated.
//!
//! Evaluating after a write must see exactly the state that write left:
//! the workspace's lane applies the next command only once the previous
//! one (its cohort actors included) is done, whenever the workspace has a
//! saved segment (`lane`), and replay does the same (`router`). A partner
//! delta's update runs after its answer (`apply::After`), still before the
//! workspace's next command. Filters hold no relative times, so an
//! evaluation depends on the state alone and a replay makes the same
//! events.
//!
//! Saving a segment (or replacing its filter) sets its members without
//! events: a new segment starts from who matches it. Deleting one ends its
//! events. Snapshots store the members (format 8), so a restart does not
//! evaluate every segment again.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use compact_str::CompactString;
use parking_lot::Mutex;
use roaring::RoaringBitmap;

use super::state::{Segment, Workspace};
use crate::feed;
use crate::model::{CohortKey, Uid};
use crate::segment::{self, Filter};

/// The profiles a saved segment matched after the last write. Cloning
/// copies the set as it is (a snapshot's image); the live set is shared
/// with such copies until it changes (copy on write).
pub struct Members(Mutex<Arc<RoaringBitmap>>);

impl Members {
    pub fn new(set: RoaringBitmap) -> Members {
        Members::shared(Arc::new(set))
    }

    pub fn shared(set: Arc<RoaringBitmap>) -> Members {
        Members(Mutex::new(set))
    }

    pub fn current(&self) -> Arc<RoaringBitmap> {
        self.0.lock().clone()
    }
}

impl Clone for Members {
    fn clone(&self) -> Members {
        Members(Mutex::new(self.current()))
    }
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Members({} profiles)", self.0.lock().len())
    }
}

/// What a write touched, for [`track`].
#[derive(Clone, Debug)]
pub enum Touched {
    /// A partner delta: the profiles whose membership of `key` changed.
    Cohort { key: CohortKey, uids: Vec<Uid> },
    /// A track: the profiles it wrote (attribute names `paths`, events
    /// `events`), of which those from `new_from` on are profiles it
    /// created.
    Profiles {
        uids: Vec<Uid>,
        paths: BTreeSet<CompactString>,
        events: BTreeSet<CompactString>,
        new_from: Uid,
    },
    /// Anything about these profiles may have changed (merged, deleted,
    /// created by a new alias).
    Anything { uids: Vec<Uid> },
}

impl Touched {
    /// Every profile the write touched.
    fn all(&self) -> RoaringBitmap {
        match self {
            Touched::Cohort { uids, .. }
            | Touched::Profiles { uids, .. }
            | Touched::Anything { uids } => uids.iter().copied().collect(),
        }
    }

    /// The profiles among the touched ones (`all`, made only if needed)
    /// whose membership of a segment reading `reads` may have changed.
    fn candidates<'a>(
        &self,
        reads: &segment::Reads,
        all: impl FnOnce() -> &'a RoaringBitmap,
    ) -> Cow<'a, RoaringBitmap> {
        match self {
            Touched::Cohort { key, .. } if reads.cohorts.contains(key) => Cow::Borrowed(all()),
            Touched::Cohort { .. } => Cow::Owned(RoaringBitmap::new()),
            Touched::Profiles {
                paths,
                events,
                new_from,
                ..
            } => {
                let wrote = paths.iter().any(|p| reads.attributes.contains(p))
                    || events.iter().any(|e| reads.events.contains(e));
                if wrote {
                    Cow::Borrowed(all())
                } else {
                    let mut created = all().clone();
                    created.remove_range(..*new_from);
                    Cow::Owned(created)
                }
            }
            Touched::Anything { .. } => Cow::Borrowed(all()),
        }
    }
}

/// Who matches `filter` now: a segment's members when it is saved.
pub fn baseline(ws: &Workspace, filter: &Filter) -> RoaringBitmap {
    segment::evaluate(filter, &*ws.profiles.read(), ws)
}

/// Brings every saved segment of `ws` that the write can affect up to date
/// for the profiles it touched, and returns the events of the changes:
/// by segment id, then profile id. `known` names profiles as the write
/// found them, by ascending id (a delta's, which it looked up already: a
/// busy delta's segment events then read no profile); `user` names a
/// profile that is gone (merged or deleted) as it was.
pub fn track(
    ws: &Workspace,
    touched: &Touched,
    known: &[feed::User],
    user: &dyn Fn(Uid) -> feed::User,
) -> Vec<feed::Event> {
    let segments: Vec<Arc<Segment>> = ws.segments_sorted();
    if segments.is_empty() {
        return Vec::new();
    }
    let profiles = ws.profiles.read();
    let all = std::cell::OnceCell::new();
    let mut events = Vec::new();
    for s in segments {
        let among = touched.candidates(&s.reads, || all.get_or_init(|| touched.all()));
        if among.is_empty() {
            continue;
        }
        let now = segment::evaluate_among(&s.filter, &*profiles, ws, &among);
        let mut members = s.members.0.lock();
        // Who entered (matches now, was not a member) and who left (was a
        // member among the candidates, matches no longer).
        let entered = &now - &**members;
        let exited = (&*among & &**members) - &now;
        if entered.is_empty() && exited.is_empty() {
            continue;
        }
        let set = Arc::make_mut(&mut members);
        *set |= &entered;
        *set -= &exited;
        let properties = &s.properties;
        events.reserve((entered.len() + exited.len()) as usize);
        // By profile id, entered and exited interleaved (the two are
        // disjoint), walking `known` along (all three ascend).
        let (mut ins, mut outs) = (entered.iter(), exited.iter());
        let (mut next_in, mut next_out) = (ins.next(), outs.next());
        let mut k = 0;
        loop {
            let (uid, kind) = match (next_in, next_out) {
                (Some(a), b) if b.is_none_or(|b| a < b) => {
                    next_in = ins.next();
                    (a, feed::EventType::SegmentEntered)
                }
                (_, Some(b)) => {
                    next_out = outs.next();
                    (b, feed::EventType::SegmentExited)
                }
                _ => break,
            };
            while known.get(k).is_some_and(|u| u.uid < uid) {
                k += 1;
            }
            let who = match known.get(k) {
                Some(u) if u.uid == uid => u.clone(),
                _ => match profiles.get(uid) {
                    Some(p) => super::apply::feed_user(uid, p),
                    None => user(uid),
                },
            };
            events.push(feed::Event::new(kind, who, properties.clone()));
        }
    }
    events
}

/// A segment event's `properties`: `{segment_id, name}` (kept by each
/// [`Segment`]).
pub(super) fn segment_properties(id: u64, name: &str) -> Arc<str> {
    let mut p = serde_json::Map::new();
    p.insert("segment_id".into(), Segment::format_id(id).into());
    p.insert("name".into(), name.into());
    feed::properties(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(json: serde_json::Value) -> segment::Reads {
        segment::parse(&json, &|_: &CohortKey| true)
            .expect("valid")
            .reads()
    }

    #[test]
    fn a_write_touches_only_the_segments_that_read_what_it_wrote() {
        let key = CohortKey::new("heap", "c1");
        let on_cohort =
            reads(serde_json::json!({"cohort": {"partner": "heap", "cohort_id": "c1"}}));
        let on_plan = reads(
            serde_json::json!({"attribute": {"name": "plan.tier", "op": "equals", "value": "gold"}}),
        );
        let on_open =
            reads(serde_json::json!({"event": {"name": "open", "op": "more_than", "count": 1}}));
        let cands = |t: &Touched, r: &segment::Reads| -> Vec<Uid> {
            let all = t.all();
            t.candidates(r, || &all).iter().collect()
        };
        let delta = Touched::Cohort {
            key: key.clone(),
            uids: vec![3, 1, 3],
        };
        assert_eq!(cands(&delta, &on_cohort), vec![1, 3]);
        assert!(cands(&delta, &on_plan).is_empty());
        let track = Touched::Profiles {
            uids: vec![1, 2, 7, 9],
            paths: ["plan".into()].into(),
            events: ["click".into()].into(),
            new_from: 7,
        };
        assert_eq!(cands(&track, &on_plan), vec![1, 2, 7, 9], "reads plan");
        assert_eq!(cands(&track, &on_open), vec![7, 9], "only the new profiles");
        assert_eq!(cands(&track, &on_cohort), vec![7, 9]);
        let merge = Touched::Anything { uids: vec![5, 4] };
        assert_eq!(cands(&merge, &on_open), vec![4, 5]);
    }
}
