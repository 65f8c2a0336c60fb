//! A partner cohort: the actor that owns its membership set, and the pure
//! rules for changing that set.
//!
//! The actor is the only writer of its cohort's members, import history and
//! metadata (a rename travels through its mailbox like a delta, so the
//! `updated_at` a delta sets and a rename's never race).
//! It mutates the set copy-on-write inside `CohortCell`, so a reader (a
//! segment count, a member page, a snapshot) takes an `Arc` of the current
//! set in O(1) and never waits for ingest, and ingest never waits for a
//! reader longer than that clone of an `Arc`.
//!
//! Messages arrive only from its workspace's sequencer (`engine::apply`,
//! run by the workspace's lane, or by the router when it replays or cuts),
//! in that sequencer's order (`do_send`,
//! never dropped or reordered); each carries a oneshot for its reply, which
//! the HTTP handler awaits, so a 2xx is sent only after the change is
//! visible to every later read.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};
use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use tokio::sync::oneshot;

use crate::feed;
use crate::model::{CohortKey, Millis, Uid};

/// A cohort event's `properties` (SPEC §10): its partner, id and name as
/// of the change.
fn cohort_properties(key: &CohortKey, name: &str) -> Arc<str> {
    let mut p = serde_json::Map::new();
    p.insert("partner".into(), key.partner.as_str().into());
    p.insert("cohort_id".into(), key.cohort_id.as_str().into());
    p.insert("name".into(), name.into());
    feed::properties(&p)
}

/// What a cohort listing shows besides the size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CohortMeta {
    pub name: String,
    pub created_at: Millis,
    /// Whether a name call has set `created_at` (the first one's value is kept).
    pub named: bool,
    pub updated_at: Millis,
}

/// One entry of a cohort's import history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportRecord {
    pub at: Millis,
    pub added: u64,
    pub removed: u64,
    pub unmatched: u64,
    pub size: u64,
}

/// The shared, readable face of a cohort. Readers use the accessors; only
/// the cohort's actor writes (members, history, name).
#[derive(Debug)]
pub struct CohortCell {
    pub key: CohortKey,
    meta: RwLock<CohortMeta>,
    members: RwLock<Arc<RoaringBitmap>>,
    history: Mutex<VecDeque<ImportRecord>>,
    history_len: usize,
}

impl CohortCell {
    pub fn new(key: CohortKey, meta: CohortMeta, history_len: usize) -> Self {
        CohortCell::from_image(
            CohortImage {
                key,
                meta,
                members: Arc::new(RoaringBitmap::new()),
                history: Vec::new(),
            },
            history_len,
        )
    }

    /// The cell a snapshot image describes.
    pub fn from_image(image: CohortImage, history_len: usize) -> Self {
        CohortCell {
            key: image.key,
            meta: RwLock::new(image.meta),
            members: RwLock::new(image.members),
            history: Mutex::new(image.history.into_iter().collect()),
            history_len,
        }
    }

    pub fn meta(&self) -> CohortMeta {
        self.meta.read().clone()
    }

    /// The current member set, in O(1).
    pub fn members(&self) -> Arc<RoaringBitmap> {
        self.members.read().clone()
    }

    pub fn size(&self) -> u64 {
        self.members.read().len()
    }

    /// Import history, newest first, at most `limit` entries.
    pub fn history(&self, limit: usize) -> Vec<ImportRecord> {
        self.history.lock().iter().take(limit).copied().collect()
    }

    /// The name rule: rename; the first name call's `created_at` is kept.
    /// Only the cohort's actor calls it (see [`Rename`]), so the metadata
    /// has one writer, in the same order as the deltas.
    fn rename(&self, name: &str, created_at: Millis, at: Millis) {
        let mut m = self.meta.write();
        m.name = name.to_string();
        if !m.named {
            m.created_at = created_at;
            m.named = true;
        }
        m.updated_at = at;
    }

    fn write_members<R>(&self, f: impl FnOnce(&mut RoaringBitmap) -> R) -> R {
        let mut guard = self.members.write();
        f(Arc::make_mut(&mut guard))
    }
}

/// The ordering rule of a delta: operations apply in order, and when one
/// request names a profile more than once the later operation wins. Returns
/// the net `(added, removed)`: a profile added and removed again in one
/// request counts in neither.
pub fn apply_ops(set: &mut RoaringBitmap, ops: &[(Uid, bool)]) -> (u64, u64) {
    apply_ops_noting(set, ops, |_, _| {})
}

/// [`apply_ops`], telling `changed` of each profile that entered (`true`)
/// or left the set, by ascending id.
pub fn apply_ops_noting(
    set: &mut RoaringBitmap,
    ops: &[(Uid, bool)],
    mut changed: impl FnMut(Uid, bool),
) -> (u64, u64) {
    // Stable sort by uid keeps request order within one uid: the last of each
    // run is the operation that wins. Sorted ids also suit roaring.
    let mut sorted: Vec<(Uid, bool)> = ops.to_vec();
    sorted.sort_by_key(|&(uid, _)| uid);
    let (mut added, mut removed) = (0, 0);
    for (i, &(uid, add)) in sorted.iter().enumerate() {
        if sorted.get(i + 1).is_some_and(|next| next.0 == uid) {
            continue;
        }
        let moved = if add {
            set.insert(uid)
        } else {
            set.remove(uid)
        };
        if moved {
            changed(uid, add);
        }
        if add {
            added += u64::from(moved);
        } else {
            removed += u64::from(moved);
        }
    }
    (added, removed)
}

/// The merge rule for memberships: each `from` that is a member is replaced
/// by its `into` (membership is the union of both profiles'). In order, so
/// chains of merges compose.
pub fn move_members(set: &mut RoaringBitmap, pairs: &[(Uid, Uid)]) {
    move_members_noting(set, pairs, &[], |_, _| {});
}

/// Moves the members of merged profiles (`from` → `into`, in order) and
/// drops deleted ones, calling `note(uid, entered)` for each membership
/// that changed: the merged profile leaves, its target enters if it was
/// not a member yet, a deleted member leaves.
pub fn move_members_noting(
    set: &mut RoaringBitmap,
    pairs: &[(Uid, Uid)],
    deletes: &[Uid],
    mut note: impl FnMut(Uid, bool),
) {
    for &(from, into) in pairs {
        if set.remove(from) {
            note(from, false);
            if set.insert(into) {
                note(into, true);
            }
        }
    }
    for &uid in deletes {
        if set.remove(uid) {
            note(uid, false);
        }
    }
}

fn membership_type(entered: bool) -> feed::EventType {
    if entered {
        feed::EventType::CohortEntered
    } else {
        feed::EventType::CohortExited
    }
}

pub struct Cohort {
    cell: Arc<CohortCell>,
}

impl Cohort {
    pub fn new(cell: Arc<CohortCell>) -> Self {
        Cohort { cell }
    }
}

impl Actor for Cohort {
    type Context = Context<Self>;
}

/// What a snapshot keeps of a cohort.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortImage {
    pub key: CohortKey,
    pub meta: CohortMeta,
    pub members: Arc<RoaringBitmap>,
    /// Newest first.
    pub history: Vec<ImportRecord>,
}

/// A snapshot barrier: answered after every change dispatched before it,
/// and before any dispatched after it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeImage {
    pub reply: oneshot::Sender<CohortImage>,
}

impl Handler<TakeImage> for Cohort {
    type Result = ();

    fn handle(&mut self, msg: TakeImage, _: &mut Context<Self>) {
        let c = &self.cell;
        let _ = msg.reply.send(CohortImage {
            key: c.key.clone(),
            meta: c.meta(),
            members: c.members(),
            history: c.history.lock().iter().copied().collect(),
        });
    }
}

/// The outcome of one delta on this cohort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaOutcome {
    pub added: u64,
    pub removed: u64,
    pub unmatched: u64,
    pub size: u64,
}

/// The partner's name call, in the cohort's order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Rename {
    pub name: String,
    pub created_at: Millis,
    pub at: Millis,
    pub reply: oneshot::Sender<()>,
}

impl Handler<Rename> for Cohort {
    type Result = ();

    fn handle(&mut self, msg: Rename, _: &mut Context<Self>) {
        self.cell.rename(&msg.name, msg.created_at, msg.at);
        let _ = msg.reply.send(());
    }
}

/// A resolved delta: `(uid, add?)` in request order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyChanges {
    pub ops: Vec<(Uid, bool)>,
    pub unmatched: u64,
    pub at: Millis,
    /// Where the delta's `users.cohorts.Entered`/`Exited` events go, and
    /// who its profiles were when it applied (`None`: a command the feed
    /// has already, being replayed).
    pub feed: Option<FeedNote>,
    /// Whether to answer with the profiles whose membership changed (the
    /// saved segments need them).
    pub changed: bool,
    /// The outcome, and the profiles whose membership changed (if asked),
    /// in the order they changed.
    pub reply: oneshot::Sender<(DeltaOutcome, Vec<Uid>)>,
}

/// A delta's place in its workspace's feed, and its profiles' identifiers
/// as of its apply.
pub struct FeedNote {
    pub gather: Arc<feed::Gather>,
    /// By ascending id, one each (shared with the segments' tracking,
    /// which names the same profiles).
    pub users: Arc<Vec<feed::User>>,
}

/// Profiles merged (`from` → `into`) or deleted (`into` = `None`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MoveMembers {
    pub merges: Arc<Vec<(Uid, Uid)>>,
    pub deletes: Arc<Vec<Uid>>,
    /// Where the memberships that changed are reported, as
    /// `users.cohorts.Entered`/`Exited` (`None`: no events).
    pub feed: Option<Arc<feed::Gather>>,
    pub reply: oneshot::Sender<()>,
}

impl Handler<ApplyChanges> for Cohort {
    type Result = ();

    fn handle(&mut self, msg: ApplyChanges, _: &mut Context<Self>) {
        let mut changed = Vec::new();
        let noting = msg.feed.is_some() || msg.changed;
        let (added, removed, size) = self.cell.write_members(|set| {
            let (a, r) = apply_ops_noting(set, &msg.ops, |uid, entered| {
                if noting {
                    changed.push((uid, entered));
                }
            });
            (a, r, set.len())
        });
        if let Some(note) = msg.feed {
            let properties = cohort_properties(&self.cell.key, &self.cell.meta.read().name);
            // Both ascending: walk the users along the changes.
            let mut users = note.users.iter().peekable();
            let events = changed
                .iter()
                .map(|&(uid, entered)| {
                    while users.next_if(|u| u.uid < uid).is_some() {}
                    let user = users
                        .next_if(|u| u.uid == uid)
                        .cloned()
                        .unwrap_or(feed::User {
                            uid,
                            external_id: None,
                            device_id: None,
                        });
                    feed::Event::new(membership_type(entered), user, properties.clone())
                })
                .collect();
            note.gather
                .add(feed::Part::Cohort(self.cell.key.clone()), events);
        }
        let record = ImportRecord {
            at: msg.at,
            added,
            removed,
            unmatched: msg.unmatched,
            size,
        };
        {
            let mut h = self.cell.history.lock();
            h.push_front(record);
            h.truncate(self.cell.history_len);
        }
        self.cell.meta.write().updated_at = msg.at;
        let changed = if msg.changed {
            changed.into_iter().map(|(uid, _)| uid).collect()
        } else {
            Vec::new()
        };
        let outcome = DeltaOutcome {
            added,
            removed,
            unmatched: msg.unmatched,
            size,
        };
        let _ = msg.reply.send((outcome, changed));
    }
}

impl Handler<MoveMembers> for Cohort {
    type Result = ();

    fn handle(&mut self, msg: MoveMembers, _: &mut Context<Self>) {
        let touches = {
            let set = self.cell.members.read();
            msg.merges.iter().any(|&(from, _)| set.contains(from))
                || msg.deletes.iter().any(|&uid| set.contains(uid))
        };
        if touches {
            let mut changed = Vec::new();
            self.cell.write_members(|set| {
                move_members_noting(set, &msg.merges, &msg.deletes, |uid, entered| {
                    changed.push((uid, entered))
                });
            });
            if let Some(gather) = &msg.feed {
                let properties = cohort_properties(&self.cell.key, &self.cell.meta.read().name);
                let events = changed
                    .into_iter()
                    .map(|(uid, entered)| {
                        feed::Event::new(
                            membership_type(entered),
                            gather.user(uid),
                            properties.clone(),
                        )
                    })
                    .collect();
                gather.add(feed::Part::Cohort(self.cell.key.clone()), events);
            }
        }
        let _ = msg.reply.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> RoaringBitmap {
        ids.iter().copied().collect()
    }

    #[test]
    fn later_operation_wins_and_counts_are_net() {
        let mut s = set(&[1]);
        // 2 added then removed: neither; 1 removed then added: neither; 3 added.
        let (a, r) = apply_ops(
            &mut s,
            &[(2, true), (1, false), (2, false), (1, true), (3, true)],
        );
        assert_eq!((a, r), (1, 0));
        assert_eq!(s, set(&[1, 3]));
    }

    #[test]
    fn adding_a_member_twice_or_removing_a_stranger_is_a_no_op() {
        let mut s = set(&[1]);
        assert_eq!(
            apply_ops(&mut s, &[(1, true), (1, true), (9, false)]),
            (0, 0)
        );
        assert_eq!(s, set(&[1]));
    }

    #[test]
    fn merges_move_membership_and_compose() {
        let mut s = set(&[1, 5]);
        move_members(&mut s, &[(1, 2), (2, 3), (7, 8)]);
        assert_eq!(s, set(&[3, 5]));
    }

    #[test]
    fn rename_keeps_the_first_named_created_at() {
        let meta = CohortMeta {
            name: "c1".into(),
            created_at: 100,
            named: false,
            updated_at: 100,
        };
        let cell = CohortCell::new(CohortKey::new("segment", "c1"), meta, 10);
        cell.rename("First", 5, 200);
        cell.rename("Second", 7, 300);
        let m = cell.meta();
        assert_eq!(
            (m.name.as_str(), m.created_at, m.updated_at),
            ("Second", 5, 300)
        );
    }

    /// Deltas and renames go through the one mailbox: `updated_at` is set
    /// by whichever came last in the workspace's log order, never by a race.
    #[test]
    fn renames_and_deltas_apply_in_mailbox_order() {
        actix_rt::System::new().block_on(async {
            let meta = CohortMeta {
                name: "c".into(),
                created_at: 0,
                named: false,
                updated_at: 0,
            };
            let cell = Arc::new(CohortCell::new(CohortKey::new("p", "c"), meta, 10));
            let addr = Cohort::new(cell.clone()).start();
            let (delta, delta_rx) = oneshot::channel();
            addr.do_send(ApplyChanges {
                ops: vec![(1, true)],
                unmatched: 0,
                at: 100,
                feed: None,
                changed: true,
                reply: delta,
            });
            let (renamed, rename_rx) = oneshot::channel();
            addr.do_send(Rename {
                name: "Named".into(),
                created_at: 7,
                at: 50,
                reply: renamed,
            });
            let (_, changed) = delta_rx.await.expect("delta applied");
            assert_eq!(changed, vec![1], "the profiles whose membership changed");
            rename_rx.await.expect("renamed");
            let m = cell.meta();
            assert_eq!(
                (m.name.as_str(), m.created_at, m.updated_at),
                ("Named", 7, 50)
            );
            assert_eq!(cell.size(), 1);
        });
    }

    #[test]
    fn readers_keep_their_set_while_the_writer_moves_on() {
        let meta = CohortMeta {
            name: "c".into(),
            created_at: 0,
            named: false,
            updated_at: 0,
        };
        let cell = CohortCell::new(CohortKey::new("p", "c"), meta, 10);
        cell.write_members(|s| apply_ops(s, &[(1, true)]));
        let held = cell.members();
        cell.write_members(|s| apply_ops(s, &[(2, true)]));
        assert_eq!(*held, set(&[1]));
        assert_eq!(*cell.members(), set(&[1, 2]));
    }
}
