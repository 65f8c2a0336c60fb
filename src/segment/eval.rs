//! Evaluating a [`Filter`] over roaring bitmaps, with the workspace's live
//! profiles as the explicit universe.

use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roaring::RoaringBitmap;

use super::{AttrCond, Bound, EventCond, Filter, Scalar};
use crate::model::{CohortKey, Uid};
use crate::profiles::columns::{above, below, num_key, time_key};
use crate::profiles::paths;
use crate::profiles::{
    AttrObject, AttrValue, Columns, EventStats, Profile, ProfileStore, ProfileView,
};

/// What evaluation reads of a workspace's profiles: the live set (the
/// universe), each profile by id, and the column index of their attribute
/// and event values. The store itself, or a detached [`ProfileView`] of it
/// (what the engine evaluates on, holding no lock).
pub trait Profiles {
    fn live(&self) -> &RoaringBitmap;
    fn get(&self, uid: Uid) -> Option<&Profile>;
    fn columns(&self) -> &Columns;
}

impl Profiles for ProfileStore {
    fn live(&self) -> &RoaringBitmap {
        ProfileStore::live(self)
    }

    fn get(&self, uid: Uid) -> Option<&Profile> {
        ProfileStore::get(self, uid)
    }

    fn columns(&self) -> &Columns {
        ProfileStore::columns(self)
    }
}

impl Profiles for ProfileView {
    fn live(&self) -> &RoaringBitmap {
        ProfileView::live(self)
    }

    fn get(&self, uid: Uid) -> Option<&Profile> {
        ProfileView::get(self, uid)
    }

    fn columns(&self) -> &Columns {
        ProfileView::columns(self)
    }
}

/// Below this many candidates, an attribute or event leaf checks each
/// candidate's profile instead of reading the index: building a range or
/// a regex's union over the whole workspace costs more than that.
pub const SCAN_BELOW: u64 = 1024;

/// When an evaluation must give up. Evaluation checks it cooperatively:
/// every [`CHECK_EVERY`] profiles it scans, before each child of an
/// `and`/`or`, and every [`CHECK_EVERY`] ids of a batch check.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Option<Instant>,
}

/// How many profiles (or ids) evaluation handles between two looks at the
/// clock: a few microseconds of work, against ~25 ns for the look.
pub const CHECK_EVERY: u32 = 256;

impl Deadline {
    /// No deadline: what the plain [`evaluate`], [`count`] and
    /// [`contains_many`] use.
    pub fn never() -> Deadline {
        Deadline { at: None }
    }

    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(budget),
        }
    }

    pub fn passed(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    pub fn check(&self) -> Result<(), OutOfTime> {
        if self.passed() {
            Err(OutOfTime)
        } else {
            Ok(())
        }
    }
}

/// An evaluation stopped at its deadline; its partial result is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfTime;

/// Where cohort sets come from. The engine passes `Arc` snapshots of each
/// cohort's current bitmap; `None` is a cohort that does not exist (no
/// members). A set may hold ids of profiles deleted since: evaluation always
/// intersects with the universe.
pub trait CohortSets {
    fn members(&self, key: &CohortKey) -> Option<Arc<RoaringBitmap>>;
}

impl<S: BuildHasher> CohortSets for HashMap<CohortKey, Arc<RoaringBitmap>, S> {
    fn members(&self, key: &CohortKey) -> Option<Arc<RoaringBitmap>> {
        self.get(key).cloned()
    }
}

impl CohortSets for BTreeMap<CohortKey, Arc<RoaringBitmap>> {
    fn members(&self, key: &CohortKey) -> Option<Arc<RoaringBitmap>> {
        self.get(key).cloned()
    }
}

/// The segment's members: the live profiles that satisfy `f`.
pub fn evaluate<P: Profiles + ?Sized>(
    f: &Filter,
    profiles: &P,
    cohorts: &dyn CohortSets,
) -> RoaringBitmap {
    evaluate_within(f, profiles, cohorts, &Deadline::never()).expect("no deadline")
}

/// [`evaluate`], stopped once `deadline` passes.
pub fn evaluate_within<P: Profiles + ?Sized>(
    f: &Filter,
    profiles: &P,
    cohorts: &dyn CohortSets,
    deadline: &Deadline,
) -> Result<RoaringBitmap, OutOfTime> {
    let e = Eval::new(profiles, cohorts, deadline);
    let set = e.eval(f, profiles.live());
    e.finish(set)
}

/// The members among `among`: [`evaluate`] with `among`'s live profiles
/// as the universe. Each cohort leaf is one bitmap intersection for all
/// of them, and an `and` narrows the candidates before its costlier
/// children; for checking many profiles at once after a write
/// (`engine::tracking`).
pub fn evaluate_among<P: Profiles + ?Sized>(
    f: &Filter,
    profiles: &P,
    cohorts: &dyn CohortSets,
    among: &RoaringBitmap,
) -> RoaringBitmap {
    let never = Deadline::never();
    let e = Eval::new(profiles, cohorts, &never);
    let set = e.eval(f, &(among & profiles.live()));
    e.finish(set).expect("no deadline")
}

/// `evaluate(..).len()`, materialising as little as possible: pure cohort
/// algebra (`A and B and not C`) intersects the smallest sets first and
/// counts the last step without building it.
pub fn count<P: Profiles + ?Sized>(f: &Filter, profiles: &P, cohorts: &dyn CohortSets) -> u64 {
    count_within(f, profiles, cohorts, &Deadline::never()).expect("no deadline")
}

/// [`count`], stopped once `deadline` passes.
pub fn count_within<P: Profiles + ?Sized>(
    f: &Filter,
    profiles: &P,
    cohorts: &dyn CohortSets,
    deadline: &Deadline,
) -> Result<u64, OutOfTime> {
    let e = Eval::new(profiles, cohorts, deadline);
    let n = e.count(f, profiles.live());
    e.finish(n)
}

/// Whether the live profile `uid` is in the segment, looking at that profile
/// only (one bitmap probe per cohort leaf, one map lookup per attribute or
/// event leaf). A deleted or unknown `uid` is never a member.
pub fn contains<P: Profiles + ?Sized>(
    f: &Filter,
    profiles: &P,
    cohorts: &dyn CohortSets,
    uid: Uid,
) -> bool {
    // `get` is `None` exactly for ids outside the universe (deleted, merged
    // away, never given out).
    profiles.get(uid).is_some_and(|p| holds(f, uid, p, cohorts))
}

/// [`contains`] for a batch (the membership check endpoint): takes one
/// snapshot of the filter's cohorts, then checks each id against it, so the
/// answers are consistent with each other. Faster than [`evaluate`] for any
/// batch much smaller than the segment; `O(ids × filter size)`.
pub fn contains_many<P: Profiles + ?Sized>(
    f: &Filter,
    profiles: &P,
    cohorts: &dyn CohortSets,
    uids: &[Uid],
) -> Vec<bool> {
    contains_many_within(f, profiles, cohorts, uids, &Deadline::never()).expect("no deadline")
}

/// [`contains_many`], stopped once `deadline` passes.
pub fn contains_many_within<P: Profiles + ?Sized>(
    f: &Filter,
    profiles: &P,
    cohorts: &dyn CohortSets,
    uids: &[Uid],
    deadline: &Deadline,
) -> Result<Vec<bool>, OutOfTime> {
    let pinned: BTreeMap<CohortKey, Arc<RoaringBitmap>> = f
        .cohorts()
        .into_iter()
        .filter_map(|k| cohorts.members(k).map(|m| (k.clone(), m)))
        .collect();
    let mut out = Vec::with_capacity(uids.len());
    for (i, &uid) in uids.iter().enumerate() {
        if i % CHECK_EVERY as usize == CHECK_EVERY as usize - 1 {
            deadline.check()?;
        }
        out.push(contains(f, profiles, &pinned, uid));
    }
    Ok(out)
}

/// Does `f` hold for one live profile?
fn holds(f: &Filter, uid: Uid, p: &Profile, cohorts: &dyn CohortSets) -> bool {
    match f {
        Filter::All => true,
        Filter::Cohort(k) => cohorts.members(k).is_some_and(|m| m.contains(uid)),
        Filter::Not(g) => !holds(g, uid, p, cohorts),
        Filter::And(fs) => fs.iter().all(|g| holds(g, uid, p, cohorts)),
        Filter::Or(fs) => fs.iter().any(|g| holds(g, uid, p, cohorts)),
        Filter::Attribute { name, cond } => attr_holds(cond, &p.attributes().at_path(name), name),
        Filter::Event { name, cond } => event_holds(cond, p.events().get(name.as_str()).as_ref()),
    }
}

/// The attribute rules of SPEC §4, over the values at the path `name`
/// (`paths::any_at`; a top-level name is one value or none). Every
/// positive op holds when *some* value at the path satisfies it (an array
/// of objects has one value per element); `does_not_exist`, `not_equals`
/// and `does_not_match_regex` are exactly the negation of their positive
/// op. An object or array of objects at the path exists, and satisfies no
/// comparison.
fn attr_holds(cond: &AttrCond, attrs: &AttrObject, name: &str) -> bool {
    let any = |pred: &mut dyn FnMut(&AttrValue) -> bool| paths::any_at(attrs, name, pred);
    match cond {
        AttrCond::Exists => any(&mut |_| true),
        AttrCond::DoesNotExist => !any(&mut |_| true),
        AttrCond::Equals(s) => any(&mut |v| equals(s, v)),
        AttrCond::NotEquals(s) => !any(&mut |v| equals(s, v)),
        AttrCond::MatchesRegex(p) => any(&mut |v| text(v).is_some_and(|t| p.is_match(t))),
        AttrCond::DoesNotMatchRegex(p) => !any(&mut |v| text(v).is_some_and(|t| p.is_match(t))),
        AttrCond::GreaterThan(b) => any(&mut |v| compare(b, v) == Some(Ordering::Greater)),
        AttrCond::LessThan(b) => any(&mut |v| compare(b, v) == Some(Ordering::Less)),
        AttrCond::IncludesValue(s) => {
            any(&mut |v| matches!(v, AttrValue::Array(items) if items.iter().any(|i| i == s)))
        }
        AttrCond::WithinKm {
            latitude,
            longitude,
            km,
        } => any(&mut |v| match v {
            AttrValue::Location {
                latitude: lat,
                longitude: lon,
            } => haversine_km(*latitude, *longitude, *lat, *lon) <= *km,
            _ => false,
        }),
    }
}

/// The mean Earth radius (IUGG), in km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Great-circle distance between two points given in degrees.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Same type and equal; a string also equals a time attribute's text.
fn equals(s: &Scalar, v: &AttrValue) -> bool {
    match (s, v) {
        (Scalar::Str(a), AttrValue::Str(b)) => a == b,
        (Scalar::Str(a), AttrValue::Time { text, .. }) => a == text,
        (Scalar::Num(a), AttrValue::Num(b)) => a == b,
        (Scalar::Bool(a), AttrValue::Bool(b)) => a == b,
        _ => false,
    }
}

/// The text a regex searches: strings, and times as they were sent.
fn text(v: &AttrValue) -> Option<&str> {
    match v {
        AttrValue::Str(s) => Some(s),
        AttrValue::Time { text, .. } => Some(text),
        _ => None,
    }
}

/// How the attribute value compares to the bound, if they are comparable
/// (numbers with numbers, times with times).
fn compare(b: &Bound, v: &AttrValue) -> Option<Ordering> {
    match (b, v) {
        (Bound::Num(b), AttrValue::Num(n)) => n.partial_cmp(b),
        (Bound::Time(b), AttrValue::Time { at, .. }) => Some(at.cmp(&b.at)),
        _ => None,
    }
}

/// The event rules: never done is count 0 and no last time.
fn event_holds(cond: &EventCond, stats: Option<&EventStats>) -> bool {
    let count = stats.map_or(0, |s| s.count);
    match cond {
        EventCond::MoreThan(n) => count > *n,
        EventCond::LessThan(n) => count < *n,
        EventCond::Exactly(n) => count == *n,
        EventCond::LastPerformedAfter(t) => stats.is_some_and(|s| s.last > t.at),
        EventCond::LastPerformedBefore(t) => stats.is_some_and(|s| s.last < t.at),
    }
}

/// An attribute or event leaf as the column index answers it: the set of
/// live profiles for which the leaf's *positive* form holds, and whether
/// the leaf is its negation (then its members are the universe minus the
/// set). `None` for `within_km`, which the index narrows
/// ([`Columns`]' locations) but each candidate's distance decides.
///
/// A regex stops early when `stop` says so (the deadline passed): the set
/// is then empty, and the caller drops the result.
fn indexed<'c, P: Profiles + ?Sized>(
    profiles: &'c P,
    f: &Filter,
    among: Option<&RoaringBitmap>,
    stop: &dyn Fn() -> bool,
) -> Option<(Cow<'c, RoaringBitmap>, bool)> {
    let cols = profiles.columns();
    let none = || Cow::Owned(RoaringBitmap::new());
    let set =
        |r: Option<std::ops::RangeInclusive<u64>>,
         get: &dyn Fn(std::ops::RangeInclusive<u64>) -> Cow<'c, RoaringBitmap>| {
            r.map_or_else(none, get)
        };
    match f {
        Filter::Attribute { name, cond } => {
            let Some(col) = cols.attribute(name) else {
                let negated = matches!(
                    cond,
                    AttrCond::DoesNotExist
                        | AttrCond::NotEquals(_)
                        | AttrCond::DoesNotMatchRegex(_)
                );
                return (!matches!(cond, AttrCond::WithinKm { .. })).then(|| (none(), negated));
            };
            // Times' texts are not in the dictionary: the profiles among
            // `among` whose values at the path satisfy the positive `cond`
            // (by the one rule, `attr_holds`) join the set.
            let with_times =
                |set: Cow<'c, RoaringBitmap>, among: &RoaringBitmap, cond: &AttrCond| {
                    if among.is_empty() {
                        return set;
                    }
                    let mut seen = 0u32;
                    let hits: Vec<Uid> = among
                        .iter()
                        .take_while(|_| {
                            seen = seen.wrapping_add(1);
                            !(seen.is_multiple_of(CHECK_EVERY) && stop())
                        })
                        .filter(|&u| {
                            profiles.get(u).is_some_and(|p| {
                                attr_holds(cond, &p.attributes().at_path(name), name)
                            })
                        })
                        .collect();
                    if hits.is_empty() {
                        return set;
                    }
                    let hits =
                        RoaringBitmap::from_sorted_iter(hits).expect("a bitmap iterates in order");
                    Cow::Owned(set.into_owned() | hits)
                };
            let equals = |s: &Scalar| match s {
                Scalar::Str(t) => {
                    let strings = col.text(t);
                    match AttrValue::from_text(t) {
                        AttrValue::Time { at, .. } => {
                            let k = time_key(at);
                            let same_instant = col.times(k..=k);
                            with_times(strings, &same_instant, &AttrCond::Equals(s.clone()))
                        }
                        _ => strings,
                    }
                }
                Scalar::Num(n) => col.nums(num_key(*n)..=num_key(*n)),
                Scalar::Bool(b) => Cow::Borrowed(col.bools(*b)),
            };
            let regex = |p: &super::Pattern| {
                let strings = Cow::Owned(
                    col.text_matching(|t| p.is_match(t), stop)
                        .unwrap_or_default(),
                );
                with_times(strings, col.dated(), &AttrCond::MatchesRegex(p.clone()))
            };
            let range =
                |b: &Bound, r: fn(u64) -> Option<std::ops::RangeInclusive<u64>>| match (b, among) {
                    (Bound::Num(n), None) => set(r(num_key(*n)), &|k| col.nums(k)),
                    (Bound::Time(t), None) => set(r(time_key(t.at)), &|k| col.times(k)),
                    (Bound::Num(n), Some(a)) => {
                        set(r(num_key(*n)), &|k| Cow::Owned(col.nums_among(k, a)))
                    }
                    (Bound::Time(t), Some(a)) => {
                        set(r(time_key(t.at)), &|k| Cow::Owned(col.times_among(k, a)))
                    }
                };
            Some(match cond {
                AttrCond::Exists => (Cow::Borrowed(col.exists()), false),
                AttrCond::DoesNotExist => (Cow::Borrowed(col.exists()), true),
                AttrCond::Equals(s) => (equals(s), false),
                AttrCond::NotEquals(s) => (equals(s), true),
                AttrCond::MatchesRegex(p) => (regex(p), false),
                AttrCond::DoesNotMatchRegex(p) => (regex(p), true),
                AttrCond::GreaterThan(b) => (range(b, above), false),
                AttrCond::LessThan(b) => (range(b, below), false),
                AttrCond::IncludesValue(i) => (col.item(i), false),
                AttrCond::WithinKm { .. } => return None,
            })
        }
        Filter::Event { name, cond } => {
            let Some(col) = cols.event(name) else {
                // Nobody did it: every count is 0 and there is no last time.
                let negated = matches!(cond, EventCond::LessThan(n) if *n > 0)
                    || matches!(cond, EventCond::Exactly(0));
                return Some((none(), negated));
            };
            let counts = |r: std::ops::RangeInclusive<u64>| match among {
                Some(a) => Cow::Owned(col.counts_among(r, a)),
                None => col.counts(r),
            };
            let last = |r: std::ops::RangeInclusive<u64>| match among {
                Some(a) => Cow::Owned(col.last_among(r, a)),
                None => col.last(r),
            };
            Some(match cond {
                // Did it at all: one set rather than a union of counts.
                EventCond::MoreThan(0) => (Cow::Borrowed(col.did()), false),
                EventCond::LessThan(1) => (Cow::Borrowed(col.did()), true),
                EventCond::MoreThan(n) => (set(above(*n), &counts), false),
                EventCond::LessThan(0) => (none(), false),
                EventCond::LessThan(n) => (counts(*n..=u64::MAX), true),
                EventCond::Exactly(0) => (Cow::Borrowed(col.did()), true),
                EventCond::Exactly(n) => (counts(*n..=*n), false),
                EventCond::LastPerformedAfter(t) => (set(above(time_key(t.at)), &last), false),
                EventCond::LastPerformedBefore(t) => (set(below(time_key(t.at)), &last), false),
            })
        }
        _ => None,
    }
}

/// Whether the index answers a leaf among a few candidates for less than
/// looking at their profiles (a saved segment's update after a write
/// evaluates a few hundred: `engine::tracking`): one stored set (`exists`,
/// `includes_value`, `equals` of [`one_set`], their negations), or a range
/// of keys (`greater_than`, `less_than`, event counts and last times),
/// taken among the candidates with a probe per span and bucket
/// (`Column::nums_among` and the like).
fn cheap_among_few(f: &Filter) -> bool {
    match f {
        Filter::Attribute { cond, .. } => match cond {
            AttrCond::Exists
            | AttrCond::DoesNotExist
            | AttrCond::IncludesValue(_)
            | AttrCond::GreaterThan(_)
            | AttrCond::LessThan(_) => true,
            AttrCond::Equals(s) | AttrCond::NotEquals(s) => one_set(s),
            _ => false,
        },
        Filter::Event { .. } => true,
        _ => false,
    }
}

/// Whether `equals` of `s` is one stored set of the index: a string that
/// names no instant (an instant's texts are not in the dictionary) or a
/// boolean. A number is a range of one key, which a bucket may share.
fn one_set(s: &Scalar) -> bool {
    match s {
        Scalar::Str(t) => !matches!(AttrValue::from_text(t), AttrValue::Time { .. }),
        Scalar::Bool(_) => true,
        Scalar::Num(_) => false,
    }
}

/// Whether [`count`] of `f` over a workspace is answered from index sizes
/// alone: `all`, cohorts (one `intersection_len` with the live set), and
/// the attribute and event leaves whose count is a bitmap's length or a
/// sum over buckets (`exists`, `equals` of a string that names no
/// instant, of a number or a boolean, their negations, `includes_value`,
/// event counts: as many buckets as the range holds distinct counts, a
/// handful in practice), under `not`. Microseconds whatever the
/// workspace's size; the engine answers those without the read pool's
/// thread hop.
pub fn counts_in_constant_time(f: &Filter) -> bool {
    match f {
        Filter::All | Filter::Cohort(_) => true,
        Filter::Not(g) => counts_in_constant_time(g),
        Filter::And(_) | Filter::Or(_) => false,
        Filter::Attribute { cond, .. } => match cond {
            AttrCond::Exists | AttrCond::DoesNotExist | AttrCond::IncludesValue(_) => true,
            AttrCond::Equals(s) | AttrCond::NotEquals(s) => {
                one_set(s) || matches!(s, Scalar::Num(_))
            }
            _ => false,
        },
        Filter::Event { cond, .. } => matches!(
            cond,
            EventCond::MoreThan(_) | EventCond::LessThan(_) | EventCond::Exactly(_)
        ),
    }
}

/// How many of the `everyone` live profiles a range or regex leaf holds
/// for, from bucket and dictionary sizes, when the column has one value
/// per profile (`None`: build the set instead).
fn attribute_count(
    col: &crate::profiles::columns::Column,
    cond: &AttrCond,
    everyone: u64,
    stop: &dyn Fn() -> bool,
) -> Option<u64> {
    let range = |b: &Bound, r: fn(u64) -> Option<std::ops::RangeInclusive<u64>>| match b {
        Bound::Num(n) => r(num_key(*n)).map_or(Some(0), |k| col.nums_len(k)),
        Bound::Time(t) => r(time_key(t.at)).map_or(Some(0), |k| col.times_len(k)),
    };
    match cond {
        AttrCond::GreaterThan(b) => range(b, above),
        AttrCond::LessThan(b) => range(b, below),
        AttrCond::MatchesRegex(p) => col.text_matching_len(|t| p.is_match(t), stop),
        AttrCond::DoesNotMatchRegex(p) => col
            .text_matching_len(|t| p.is_match(t), stop)
            .map(|n| everyone - n),
        _ => None,
    }
}

/// How many of the `everyone` live profiles an event leaf holds for,
/// from bucket sizes alone: each profile has one count and one last time
/// per event, so no set is built.
fn event_count(cols: &Columns, name: &str, cond: &EventCond, everyone: u64) -> u64 {
    let Some(col) = cols.event(name) else {
        return match cond {
            EventCond::LessThan(n) if *n > 0 => everyone,
            EventCond::Exactly(0) => everyone,
            _ => 0,
        };
    };
    let len = |r: Option<std::ops::RangeInclusive<u64>>,
               f: &dyn Fn(std::ops::RangeInclusive<u64>) -> u64| { r.map_or(0, f) };
    match cond {
        EventCond::MoreThan(n) => len(above(*n), &|r| col.counts_len(r)),
        EventCond::LessThan(0) => 0,
        EventCond::LessThan(n) => everyone - col.counts_len(*n..=u64::MAX),
        EventCond::Exactly(0) => everyone - col.did().len(),
        EventCond::Exactly(n) => col.counts_len(*n..=*n),
        EventCond::LastPerformedAfter(t) => len(above(time_key(t.at)), &|r| col.last_len(r)),
        EventCond::LastPerformedBefore(t) => len(below(time_key(t.at)), &|r| col.last_len(r)),
    }
}

/// How a child of `and`/`or` is handled, cheapest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cost {
    /// `cohort` (ordered by size) and `all`: one bitmap operation.
    Set,
    /// `not cohort`, `not all`: one bitmap operation.
    NotSet,
    /// Nested set algebra with no attribute or event leaf.
    Algebra,
    /// Anything that scans profiles.
    Scan,
}

fn cost(f: &Filter) -> Cost {
    fn scans(f: &Filter) -> bool {
        match f {
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(scans),
            Filter::Not(g) => scans(g),
            Filter::All | Filter::Cohort(_) => false,
            Filter::Attribute { .. } | Filter::Event { .. } => true,
        }
    }
    match f {
        Filter::All | Filter::Cohort(_) => Cost::Set,
        Filter::Not(g) if matches!(**g, Filter::All | Filter::Cohort(_)) => Cost::NotSet,
        f if scans(f) => Cost::Scan,
        _ => Cost::Algebra,
    }
}

struct Eval<'a, P: ?Sized> {
    profiles: &'a P,
    cohorts: &'a dyn CohortSets,
    deadline: &'a Deadline,
    /// Leaves scan candidates' profiles below this many ([`SCAN_BELOW`]).
    scan_below: u64,
    /// Set once the deadline has been seen passed: from then on every step
    /// returns at once, and the result is dropped (`finish`).
    stopped: Cell<bool>,
}

/// A child of `and`/`or`, with its cohort set fetched once.
struct Part<'f> {
    filter: &'f Filter,
    cost: Cost,
    set: Option<Arc<RoaringBitmap>>,
}

impl<'f> Part<'f> {
    fn size(&self) -> u64 {
        self.set.as_ref().map_or(0, |s| s.len())
    }
}

impl<'a, P: Profiles + ?Sized> Eval<'a, P> {
    fn new(profiles: &'a P, cohorts: &'a dyn CohortSets, deadline: &'a Deadline) -> Self {
        Eval {
            profiles,
            cohorts,
            deadline,
            scan_below: SCAN_BELOW,
            stopped: Cell::new(false),
        }
    }

    /// Whether to stop now: the deadline passed (looked at here, or
    /// earlier).
    fn out_of_time(&self) -> bool {
        if !self.stopped.get() && self.deadline.passed() {
            self.stopped.set(true);
        }
        self.stopped.get()
    }

    fn finish<T>(&self, result: T) -> Result<T, OutOfTime> {
        if self.stopped.get() {
            Err(OutOfTime)
        } else {
            Ok(result)
        }
    }

    /// The members of `f` among `cand` (always a subset of `cand`, and
    /// `cand` is always a subset of the universe).
    fn eval(&self, f: &Filter, cand: &RoaringBitmap) -> RoaringBitmap {
        if self.stopped.get() {
            return RoaringBitmap::new();
        }
        match f {
            Filter::All => cand.clone(),
            Filter::Cohort(k) => match self.cohorts.members(k) {
                Some(m) => cand & &*m,
                None => RoaringBitmap::new(),
            },
            Filter::Not(g) => cand - &self.eval(g, cand),
            Filter::And(fs) => self.and(fs, cand),
            Filter::Or(fs) => self.or(fs, cand),
            Filter::Attribute { .. } | Filter::Event { .. } => self.leaf(f, cand),
        }
    }

    /// An attribute or event leaf's members among `cand`: from the index,
    /// or by looking at each candidate when they are few.
    fn leaf(&self, f: &Filter, cand: &RoaringBitmap) -> RoaringBitmap {
        if self.out_of_time() {
            return RoaringBitmap::new();
        }
        let cols = self.profiles.columns();
        // Few candidates: a range is taken among them only (`*_among`).
        let few = cand.len() < self.scan_below;
        let by_index = !few || cheap_among_few(f);
        if by_index && !self.regex_cheaper_by_scan(f, cand) {
            let among = few.then_some(cand);
            match indexed(self.profiles, f, among, &|| self.out_of_time()) {
                Some((set, false)) => return cand & &*set,
                Some((set, true)) => return cand - &*set,
                None => {}
            }
        }
        let cand = match f {
            // Only profiles holding a location can be within.
            Filter::Attribute { name, .. } => match cols.attribute(name) {
                Some(col) if cand.len() >= self.scan_below => Cow::Owned(cand & col.locations()),
                _ => Cow::Borrowed(cand),
            },
            _ => Cow::Borrowed(cand),
        };
        self.scan(&cand, |p| match f {
            Filter::Attribute { name, cond } => {
                attr_holds(cond, &p.attributes().at_path(name), name)
            }
            Filter::Event { name, cond } => {
                event_holds(cond, p.events().get(name.as_str()).as_ref())
            }
            _ => unreachable!("a leaf"),
        })
    }

    /// A regex over the index runs once per distinct string of the column
    /// and once per profile holding a time there; over the candidates,
    /// once per candidate's value. Fewer candidates
    /// than distinct texts (an `and` narrowed them first): scan them.
    fn regex_cheaper_by_scan(&self, f: &Filter, cand: &RoaringBitmap) -> bool {
        match f {
            Filter::Attribute {
                name,
                cond: AttrCond::MatchesRegex(_) | AttrCond::DoesNotMatchRegex(_),
            } => self
                .profiles
                .columns()
                .attribute(name)
                .is_some_and(|c| cand.len() < c.distinct_texts() as u64 + c.dated().len()),
            _ => false,
        }
    }

    /// How many of `cand` a leaf holds for, from the index.
    fn leaf_count(&self, f: &Filter, cand: &RoaringBitmap) -> Option<u64> {
        if cand.len() < self.scan_below || self.out_of_time() {
            return None;
        }
        let everyone = std::ptr::eq(cand, self.profiles.live());
        if let (true, Filter::Event { name, cond }) = (everyone, f) {
            return Some(event_count(self.profiles.columns(), name, cond, cand.len()));
        }
        if let (true, Filter::Attribute { name, cond }) = (everyone, f) {
            if let Some(col) = self.profiles.columns().attribute(name) {
                if let Some(n) = attribute_count(col, cond, cand.len(), &|| self.out_of_time()) {
                    return (!self.stopped.get()).then_some(n);
                }
            }
        }
        let (set, negated) = indexed(self.profiles, f, None, &|| self.out_of_time())?;
        if self.stopped.get() {
            return None;
        }
        let hits = if everyone {
            // Index sets hold live profiles only.
            set.len()
        } else {
            cand.intersection_len(&set)
        };
        Some(if negated { cand.len() - hits } else { hits })
    }

    /// The candidates whose profile satisfies `pred`: the only place that
    /// looks at profiles, and only at the candidates.
    fn scan(&self, cand: &RoaringBitmap, pred: impl Fn(&Profile) -> bool) -> RoaringBitmap {
        let mut seen: u32 = 0;
        let hits = cand
            .iter()
            .take_while(|_| {
                seen = seen.wrapping_add(1);
                !(seen.is_multiple_of(CHECK_EVERY) && self.out_of_time())
            })
            .filter(|&uid| self.profiles.get(uid).is_some_and(&pred));
        RoaringBitmap::from_sorted_iter(hits).expect("a bitmap iterates in order")
    }

    /// The children with their cohort sets, cheapest first; smaller cohorts
    /// before larger ones.
    fn parts<'f>(&self, fs: &'f [Filter]) -> Vec<Part<'f>> {
        let mut parts: Vec<Part<'f>> = fs
            .iter()
            .map(|f| {
                let set = match f {
                    Filter::Cohort(k) => self.cohorts.members(k),
                    Filter::Not(g) => match &**g {
                        Filter::Cohort(k) => self.cohorts.members(k),
                        _ => None,
                    },
                    _ => None,
                };
                Part {
                    filter: f,
                    cost: cost(f),
                    set,
                }
            })
            .collect();
        parts.sort_by_key(|p| (p.cost, p.size()));
        parts
    }

    /// `and` narrows: each child sees only what the previous ones left.
    fn and(&self, fs: &[Filter], cand: &RoaringBitmap) -> RoaringBitmap {
        // `None`: still all of `cand` (not copied yet).
        let mut cur: Option<RoaringBitmap> = None;
        for part in self.parts(fs) {
            if cur.as_ref().is_some_and(RoaringBitmap::is_empty) || self.out_of_time() {
                break;
            }
            let next = match (part.filter, &part.set) {
                (Filter::All, _) => continue,
                (Filter::Cohort(_), None) => return RoaringBitmap::new(),
                (Filter::Cohort(_), Some(m)) => match cur {
                    Some(mut c) => {
                        c &= &**m;
                        c
                    }
                    None => cand & &**m,
                },
                (Filter::Not(g), _) if matches!(**g, Filter::All) => return RoaringBitmap::new(),
                (Filter::Not(g), None) if matches!(**g, Filter::Cohort(_)) => continue,
                (Filter::Not(_), Some(m)) => match cur {
                    Some(mut c) => {
                        c -= &**m;
                        c
                    }
                    None => cand - &**m,
                },
                (f, _) => self.eval(f, cur.as_ref().unwrap_or(cand)),
            };
            cur = Some(next);
        }
        cur.unwrap_or_else(|| cand.clone())
    }

    /// `or` unions; a child that scans profiles only scans the candidates
    /// not already in.
    fn or(&self, fs: &[Filter], cand: &RoaringBitmap) -> RoaringBitmap {
        let mut acc = RoaringBitmap::new();
        for part in self.parts(fs) {
            if self.out_of_time() {
                break;
            }
            match (part.filter, &part.set) {
                (Filter::All, _) => return cand.clone(),
                (Filter::Cohort(_), None) => {}
                (Filter::Cohort(_), Some(m)) => acc |= cand & &**m,
                (f, _) if part.cost == Cost::Scan => {
                    let rest = cand - &acc;
                    if rest.is_empty() {
                        break;
                    }
                    acc |= self.eval(f, &rest);
                }
                (f, _) => acc |= self.eval(f, cand),
            }
        }
        acc
    }

    fn count(&self, f: &Filter, cand: &RoaringBitmap) -> u64 {
        match f {
            Filter::All => cand.len(),
            Filter::Cohort(k) => self
                .cohorts
                .members(k)
                .map_or(0, |m| m.intersection_len(cand)),
            // eval(g) ⊆ cand, so this is |cand − g|.
            Filter::Not(g) => cand.len() - self.count(g, cand),
            Filter::And(fs) if fs.iter().all(|f| cost(f) <= Cost::NotSet) => {
                self.count_set_and(fs, cand)
            }
            Filter::Attribute { .. } | Filter::Event { .. } => match self.leaf_count(f, cand) {
                Some(n) => n,
                None => self.eval(f, cand).len(),
            },
            _ => self.eval(f, cand).len(),
        }
    }

    /// `and` of cohorts, `not cohort`s and `all`s, counted with one
    /// materialised intermediate at most.
    ///
    /// The order is chosen for roaring's costs, not for the size of the
    /// intermediate: starting from the smallest cohort, the steps that keep
    /// most of it (the universe, the negations, then the larger cohorts) come
    /// first and the most selective one (the second-smallest cohort) is
    /// counted last with `intersection_len`, never built. A dense
    /// intermediate stays in bitmap containers, where `&=`/`-=` are word
    /// operations; building a sparse one out of bitmap containers means
    /// extracting every bit into arrays, which costs several times more than
    /// all the rest (measured: `A and B and not C`, three cohorts of 1M in
    /// 10M profiles, ~0.85 ms smallest-first against ~0.2 ms this way).
    fn count_set_and(&self, fs: &[Filter], cand: &RoaringBitmap) -> u64 {
        let mut pos = Vec::new();
        let mut neg = Vec::new();
        for f in fs {
            match f {
                Filter::All => {}
                Filter::Cohort(k) => match self.cohorts.members(k) {
                    Some(m) => pos.push(m),
                    None => return 0,
                },
                Filter::Not(g) => match &**g {
                    Filter::All => return 0,
                    Filter::Cohort(k) => neg.extend(self.cohorts.members(k)),
                    _ => unreachable!("cost() admits only not all / not cohort"),
                },
                _ => unreachable!("cost() admits only cohort, all and their negation"),
            }
        }
        pos.sort_by_key(|m| m.len());

        enum Step<'b> {
            Keep(&'b RoaringBitmap),
            Drop(&'b RoaringBitmap),
        }
        // Steps in order; the last one is counted, not built.
        let (base, mut steps): (&RoaringBitmap, Vec<Step>) = match pos.split_first() {
            Some((smallest, rest)) => (
                smallest,
                [Step::Keep(cand)]
                    .into_iter()
                    .chain(neg.iter().map(|m| Step::Drop(m)))
                    .chain(rest.iter().rev().map(|m| Step::Keep(m)))
                    .collect(),
            ),
            None => (cand, neg.iter().map(|m| Step::Drop(m)).collect()),
        };
        let Some(last) = steps.pop() else {
            return base.len();
        };
        let mut acc: Option<RoaringBitmap> = None;
        for step in steps {
            let next = match (acc, step) {
                (Some(mut a), Step::Keep(m)) => {
                    a &= m;
                    a
                }
                (Some(mut a), Step::Drop(m)) => {
                    a -= m;
                    a
                }
                (None, Step::Keep(m)) => base & m,
                (None, Step::Drop(m)) => base - m,
            };
            if next.is_empty() {
                return 0;
            }
            acc = Some(next);
        }
        let acc = acc.as_ref().unwrap_or(base);
        match last {
            Step::Keep(m) => acc.intersection_len(m),
            Step::Drop(m) => acc.difference_len(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::profiles::AttrUpdate;
    use crate::segment::parse;
    use crate::time::parse_iso8601;

    struct World {
        profiles: ProfileStore,
        cohorts: BTreeMap<CohortKey, Arc<RoaringBitmap>>,
    }

    fn t(s: &str) -> i64 {
        parse_iso8601(s).unwrap()
    }

    /// u0 has one attribute of every type and bought twice; u1 differs in
    /// every attribute; u2 has nothing; u3 was deleted (but stays in cohort
    /// `hightouch/c1`).
    fn world() -> World {
        let mut s = ProfileStore::new();
        let ids: Vec<Uid> = ["u0", "u1", "u2", "u3"]
            .iter()
            .map(|e| s.upsert_external(e, true).unwrap())
            .collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        let set = |s: &mut ProfileStore, uid, name: &str, v: AttrValue| {
            s.update_attribute(uid, name, AttrUpdate::Set(v))
        };
        set(&mut s, 0, "plan", AttrValue::Str("gold".into()));
        set(&mut s, 0, "score", AttrValue::Num(3.0));
        set(&mut s, 0, "vip", AttrValue::Bool(true));
        set(
            &mut s,
            0,
            "signup",
            AttrValue::from_text("2024-05-01T10:00:00Z"),
        );
        set(
            &mut s,
            0,
            "tags",
            AttrValue::Array(vec!["a".into(), "b".into()]),
        );
        s.record_event(0, "buy", t("2024-01-01T00:00:00Z"));
        s.record_event(0, "buy", t("2024-03-01T00:00:00Z"));
        set(&mut s, 1, "plan", AttrValue::Str("Silver".into()));
        set(&mut s, 1, "score", AttrValue::Num(10.5));
        set(&mut s, 1, "vip", AttrValue::Bool(false));
        set(&mut s, 1, "signup", AttrValue::from_text("2025-01-01"));
        set(&mut s, 1, "tags", AttrValue::Array(vec!["A".into()]));
        s.record_event(1, "buy", t("2024-06-01T00:00:00Z"));
        set(&mut s, 3, "plan", AttrValue::Str("gold".into()));
        s.delete(3);
        let mut cohorts = BTreeMap::new();
        for (id, members) in [("c1", vec![0, 1, 3]), ("c2", vec![1, 2]), ("c3", vec![1])] {
            cohorts.insert(
                CohortKey::new("hightouch", id),
                Arc::new(members.into_iter().collect::<RoaringBitmap>()),
            );
        }
        World {
            profiles: s,
            cohorts,
        }
    }

    impl World {
        /// Members by `evaluate`, checked against `count`, `contains` and
        /// `contains_many` for every id (including the deleted one).
        fn members(&self, filter: serde_json::Value) -> Vec<Uid> {
            let f = parse(&filter, &|k| self.cohorts.contains_key(k)).unwrap();
            let set = evaluate(&f, &self.profiles, &self.cohorts);
            assert_eq!(
                count(&f, &self.profiles, &self.cohorts),
                set.len(),
                "{filter}"
            );
            let all: Vec<Uid> = (0..6).collect();
            let each: Vec<bool> = all
                .iter()
                .map(|&u| contains(&f, &self.profiles, &self.cohorts, u))
                .collect();
            let expected: Vec<bool> = all.iter().map(|&u| set.contains(u)).collect();
            assert_eq!(each, expected, "contains disagrees for {filter}");
            assert_eq!(
                contains_many(&f, &self.profiles, &self.cohorts, &all),
                expected
            );
            set.iter().collect()
        }

        fn attr(&self, name: &str, op: &str, value: serde_json::Value) -> Vec<Uid> {
            self.members(json!({"attribute": {"name": name, "op": op, "value": value}}))
        }
    }

    fn cohort(id: &str) -> serde_json::Value {
        json!({"cohort": {"partner": "hightouch", "cohort_id": id}})
    }

    #[test]
    fn all_is_the_live_profiles() {
        assert_eq!(world().members(json!({"all": true})), [0, 1, 2]);
    }

    #[test]
    fn a_cohort_never_yields_deleted_profiles() {
        let w = world();
        assert_eq!(w.members(cohort("c1")), [0, 1]);
    }

    #[test]
    fn not_is_taken_against_the_live_profiles() {
        let w = world();
        assert_eq!(w.members(json!({"not": cohort("c1")})), [2]);
        assert_eq!(w.members(json!({"not": {"all": true}})), Vec::<Uid>::new());
        assert_eq!(w.members(json!({"not": {"not": cohort("c1")}})), [0, 1]);
    }

    #[test]
    fn and_or_combine() {
        let w = world();
        assert_eq!(w.members(json!({"and": [cohort("c1"), cohort("c2")]})), [1]);
        assert_eq!(
            w.members(json!({"and": [cohort("c1"), {"not": cohort("c3")}]})),
            [0]
        );
        assert_eq!(
            w.members(json!({"or": [cohort("c3"), cohort("c1")]})),
            [0, 1]
        );
        assert_eq!(
            w.members(json!({"and": [{"all": true}, {"not": cohort("c2")}]})),
            [0]
        );
        assert_eq!(
            w.members(json!({"and": [cohort("c2"), {"not": {"all": true}}]})),
            Vec::<Uid>::new()
        );
        assert_eq!(
            w.members(json!({"or": [
                {"attribute": {"name": "plan", "op": "equals", "value": "gold"}},
                cohort("c2"),
                {"all": true}
            ]})),
            [0, 1, 2]
        );
        assert_eq!(
            w.members(json!({"and": [
                {"attribute": {"name": "plan", "op": "exists"}},
                {"or": [cohort("c3"), {"event": {"name": "buy", "op": "exactly", "count": 2}}]},
                {"not": {"and": [cohort("c1"), cohort("c3")]}}
            ]})),
            [0]
        );
    }

    #[test]
    fn a_cohort_gone_since_parsing_has_no_members() {
        let mut w = world();
        let f = parse(
            &json!({"and": [cohort("c1"), {"not": cohort("c3")}]}),
            &|_| true,
        )
        .unwrap();
        w.cohorts.remove(&CohortKey::new("hightouch", "c3"));
        assert_eq!(count(&f, &w.profiles, &w.cohorts), 2);
        assert_eq!(evaluate(&f, &w.profiles, &w.cohorts).len(), 2);
        assert!(contains(&f, &w.profiles, &w.cohorts, 1));
        w.cohorts.remove(&CohortKey::new("hightouch", "c1"));
        assert_eq!(count(&f, &w.profiles, &w.cohorts), 0);
        assert!(evaluate(&f, &w.profiles, &w.cohorts).is_empty());
        assert!(!contains(&f, &w.profiles, &w.cohorts, 0));
    }

    #[test]
    fn equals_is_case_sensitive_and_typed() {
        let w = world();
        assert_eq!(w.attr("plan", "equals", json!("gold")), [0]);
        assert_eq!(w.attr("plan", "equals", json!("Gold")), Vec::<Uid>::new());
        assert_eq!(w.attr("score", "equals", json!("3")), Vec::<Uid>::new());
        assert_eq!(w.attr("plan", "equals", json!(3)), Vec::<Uid>::new());
    }

    #[test]
    fn numbers_compare_numerically() {
        let w = world();
        assert_eq!(w.attr("score", "equals", json!(3)), [0]);
        assert_eq!(w.attr("score", "equals", json!(3.0)), [0]);
        assert_eq!(w.attr("score", "greater_than", json!(3)), [1]);
        assert_eq!(w.attr("score", "greater_than", json!(2.99)), [0, 1]);
        assert_eq!(w.attr("score", "less_than", json!(10.5)), [0]);
        assert_eq!(w.attr("score", "less_than", json!(-1)), Vec::<Uid>::new());
    }

    #[test]
    fn booleans_compare_with_equals() {
        let w = world();
        assert_eq!(w.attr("vip", "equals", json!(true)), [0]);
        assert_eq!(w.attr("vip", "equals", json!(false)), [1]);
        assert_eq!(w.attr("vip", "not_equals", json!(true)), [1, 2]);
        assert_eq!(w.attr("plan", "equals", json!(true)), Vec::<Uid>::new());
    }

    #[test]
    fn not_equals_matches_missing_and_other_types() {
        let w = world();
        assert_eq!(w.attr("plan", "not_equals", json!("gold")), [1, 2]);
        assert_eq!(w.attr("plan", "not_equals", json!(1)), [0, 1, 2]);
        assert_eq!(w.attr("nope", "not_equals", json!("x")), [0, 1, 2]);
    }

    #[test]
    fn regexes_are_case_insensitive_and_match_anywhere() {
        let w = world();
        assert_eq!(w.attr("plan", "matches_regex", json!("OL")), [0]);
        assert_eq!(w.attr("plan", "matches_regex", json!("^s.*r$")), [1]);
        assert_eq!(
            w.attr("plan", "matches_regex", json!("^ol")),
            Vec::<Uid>::new()
        );
        // Times are searched as the text they were sent as.
        assert_eq!(w.attr("signup", "matches_regex", json!("^2024-05")), [0]);
        // Numbers, booleans and arrays are not text.
        assert_eq!(
            w.attr("score", "matches_regex", json!("3")),
            Vec::<Uid>::new()
        );
        assert_eq!(
            w.attr("vip", "matches_regex", json!("true")),
            Vec::<Uid>::new()
        );
        assert_eq!(
            w.attr("tags", "matches_regex", json!("a")),
            Vec::<Uid>::new()
        );
    }

    #[test]
    fn does_not_match_regex_matches_missing_and_non_text() {
        let w = world();
        assert_eq!(
            w.attr("plan", "does_not_match_regex", json!("GOLD")),
            [1, 2]
        );
        assert_eq!(
            w.attr("score", "does_not_match_regex", json!("3")),
            [0, 1, 2]
        );
    }

    #[test]
    fn exists_and_does_not_exist() {
        let w = world();
        let m = |op| w.members(json!({"attribute": {"name": "tags", "op": op}}));
        assert_eq!(m("exists"), [0, 1]);
        assert_eq!(m("does_not_exist"), [2]);
    }

    #[test]
    fn comparisons_on_missing_attributes_are_false() {
        let w = world();
        assert_eq!(w.attr("nope", "equals", json!("x")), Vec::<Uid>::new());
        assert_eq!(
            w.attr("nope", "matches_regex", json!("")),
            Vec::<Uid>::new()
        );
        assert_eq!(
            w.attr("nope", "greater_than", json!(-1e9)),
            Vec::<Uid>::new()
        );
        assert_eq!(w.attr("nope", "less_than", json!(1e9)), Vec::<Uid>::new());
        assert_eq!(
            w.attr("nope", "includes_value", json!("a")),
            Vec::<Uid>::new()
        );
        assert_eq!(w.attr("nope", "does_not_match_regex", json!("")), [0, 1, 2]);
    }

    #[test]
    fn times_compare_as_instants_against_time_attributes() {
        let w = world();
        assert_eq!(
            w.attr("signup", "greater_than", json!("2024-05-01T10:00:00Z")),
            [1]
        );
        // Same instant in another zone: strict, so neither side.
        assert_eq!(
            w.attr("signup", "less_than", json!("2024-05-01T12:00:00+02:00")),
            Vec::<Uid>::new()
        );
        assert_eq!(
            w.attr("signup", "less_than", json!("2024-05-01T10:00:01Z")),
            [0]
        );
        assert_eq!(
            w.attr("signup", "greater_than", json!(0)),
            Vec::<Uid>::new()
        );
        assert_eq!(
            w.attr("score", "greater_than", json!("1970-01-01")),
            Vec::<Uid>::new()
        );
    }

    #[test]
    fn equals_with_a_string_compares_a_time_attribute_text() {
        let w = world();
        assert_eq!(w.attr("signup", "equals", json!("2025-01-01")), [1]);
        assert_eq!(
            w.attr("signup", "equals", json!("2025-01-01T00:00:00Z")),
            Vec::<Uid>::new()
        );
    }

    #[test]
    fn includes_value_is_case_sensitive_on_arrays_only() {
        let w = world();
        assert_eq!(w.attr("tags", "includes_value", json!("a")), [0]);
        assert_eq!(w.attr("tags", "includes_value", json!("A")), [1]);
        assert_eq!(
            w.attr("tags", "includes_value", json!("c")),
            Vec::<Uid>::new()
        );
        assert_eq!(
            w.attr("plan", "includes_value", json!("gold")),
            Vec::<Uid>::new()
        );
    }

    #[test]
    fn event_counts_treat_never_done_as_zero() {
        let w = world();
        let m = |op, n| w.members(json!({"event": {"name": "buy", "op": op, "count": n}}));
        assert_eq!(m("more_than", 0), [0, 1]);
        assert_eq!(m("more_than", 1), [0]);
        assert_eq!(m("less_than", 1), [2]);
        assert_eq!(m("less_than", 2), [1, 2]);
        assert_eq!(m("exactly", 0), [2]);
        assert_eq!(m("exactly", 2), [0]);
    }

    #[test]
    fn last_performed_is_strict_and_false_when_never_done() {
        let w = world();
        let m = |op, time| w.members(json!({"event": {"name": "buy", "op": op, "time": time}}));
        assert_eq!(m("last_performed_after", "2024-03-01T00:00:00Z"), [1]);
        assert_eq!(m("last_performed_after", "2024-02-29"), [0, 1]);
        assert_eq!(m("last_performed_before", "2024-06-01T00:00:00Z"), [0]);
        assert_eq!(m("last_performed_before", "2030-01-01"), [0, 1]);
        assert_eq!(
            w.members(json!({"event": {"name": "never", "op": "last_performed_before", "time": "2100-01-01"}})),
            Vec::<Uid>::new()
        );
    }

    #[test]
    fn a_passed_deadline_stops_every_kind_of_evaluation() {
        let w = world();
        let f = parse(
            &json!({"or": [
                {"attribute": {"name": "plan", "op": "matches_regex", "value": "o"}},
                cohort("c1")
            ]}),
            &|k| w.cohorts.contains_key(k),
        )
        .unwrap();
        let passed = Deadline::after(Duration::ZERO);
        assert_eq!(
            evaluate_within(&f, &w.profiles, &w.cohorts, &passed),
            Err(OutOfTime)
        );
        assert_eq!(
            count_within(&f, &w.profiles, &w.cohorts, &passed),
            Err(OutOfTime)
        );
        let many: Vec<Uid> = (0..CHECK_EVERY).collect();
        assert_eq!(
            contains_many_within(&f, &w.profiles, &w.cohorts, &many, &passed),
            Err(OutOfTime)
        );
        let later = Deadline::after(Duration::from_secs(3600));
        assert_eq!(
            evaluate_within(&f, &w.profiles, &w.cohorts, &later).unwrap(),
            evaluate(&f, &w.profiles, &w.cohorts)
        );
        let view = w.profiles.view();
        assert_eq!(
            count_within(&f, &view, &w.cohorts, &later),
            Ok(count(&f, &w.profiles, &w.cohorts))
        );
    }

    #[test]
    fn a_long_scan_stops_within_a_few_profiles_of_the_deadline() {
        let mut s = ProfileStore::new();
        for i in 0..10_000u32 {
            let uid = s.upsert_external(&format!("u{i}"), true).unwrap();
            s.update_attribute(uid, "plan", AttrUpdate::Set(AttrValue::Str("gold".into())));
        }
        // A leaf that scans its candidates (an `equals` is one index set).
        let f = parse(
            &json!({"attribute": {"name": "plan", "op": "matches_regex", "value": "^g"}}),
            &|_| true,
        )
        .unwrap();
        let cohorts: BTreeMap<CohortKey, Arc<RoaringBitmap>> = BTreeMap::new();
        let passed = Deadline::after(Duration::ZERO);
        let mut e = Eval::new(&s, &cohorts, &passed);
        e.scan_below = u64::MAX;
        let partial = e.eval(&f, s.live());
        assert!(partial.len() < u64::from(CHECK_EVERY), "{}", partial.len());
        assert_eq!(e.finish(()), Err(OutOfTime));
    }

    /// Counts over the whole workspace add up index sizes only while each
    /// profile has one value at the path: a profile with two values in
    /// range (an array of objects) still counts once.
    #[test]
    fn index_counts_count_a_profile_with_two_values_once() {
        let mut s = ProfileStore::new();
        for i in 0..(SCAN_BELOW as u32 + 10) {
            s.upsert_external(&format!("u{i}"), true);
        }
        let kid = |age: f64, name: &str, born: &str| {
            let mut o = AttrObject::new();
            o.insert("age".into(), AttrValue::Num(age));
            o.insert("name".into(), AttrValue::Str(name.into()));
            o.insert("born".into(), AttrValue::from_text(born));
            o
        };
        let kids = AttrValue::Objects(vec![
            kid(5.0, "ann", "2020-01-01"),
            kid(7.0, "anna", "2018-01-01"),
        ]);
        s.update_attribute(3, "kids", AttrUpdate::Set(kids.clone()));
        s.update_attribute(4, "kids", AttrUpdate::Set(kids));
        let cohorts: BTreeMap<CohortKey, Arc<RoaringBitmap>> = BTreeMap::new();
        for (path, op, value) in [
            ("kids.age", "greater_than", json!(1)),
            ("kids.age", "less_than", json!(10)),
            ("kids.born", "greater_than", json!("2000-01-01")),
            ("kids.name", "matches_regex", json!("^ann")),
        ] {
            let f = parse(
                &json!({"attribute": {"name": path, "op": op, "value": value}}),
                &|_| true,
            )
            .unwrap();
            assert_eq!(count(&f, &s, &cohorts), 2, "{path} {op}");
            assert_eq!(evaluate(&f, &s, &cohorts).len(), 2, "{path} {op}");
        }
        let f = parse(
            &json!({"attribute": {"name": "kids.name", "op": "does_not_match_regex", "value": "^ann"}}),
            &|_| true,
        )
        .unwrap();
        assert_eq!(count(&f, &s, &cohorts), s.len() - 2);
    }

    #[test]
    fn count_of_cohort_algebra_is_fused_and_exact() {
        // Large enough for bitmap containers; cohorts hold deleted ids.
        let mut s = ProfileStore::new();
        for i in 0..200_000u32 {
            s.upsert_external(&format!("u{i}"), true);
        }
        for uid in (0..200_000).step_by(7) {
            s.delete(uid);
        }
        let a: RoaringBitmap = (0..200_000).filter(|i| i % 2 == 0).collect();
        let b: RoaringBitmap = (0..200_000).filter(|i| i % 3 == 0).collect();
        let c: RoaringBitmap = (50_000..150_000).collect();
        let mut cohorts = BTreeMap::new();
        for (id, set) in [("a", a.clone()), ("b", b.clone()), ("c", c.clone())] {
            cohorts.insert(CohortKey::new("p", id), Arc::new(set));
        }
        let k = |id| json!({"cohort": {"partner": "p", "cohort_id": id}});
        let live = s.live().clone();
        for (filter, expected) in [
            (
                json!({"and": [k("a"), k("b"), {"not": k("c")}]}),
                &(&(&a & &b) - &c) & &live,
            ),
            (
                json!({"and": [{"not": k("a")}, {"not": k("c")}]}),
                &(&live - &a) - &c,
            ),
            (json!({"and": [k("c"), {"all": true}]}), &c & &live),
            (
                json!({"and": [k("c"), k("a"), k("b")]}),
                &(&(&a & &b) & &c) & &live,
            ),
            (
                json!({"and": [k("c"), k("a"), k("b"), {"not": k("b")}]}),
                RoaringBitmap::new(),
            ),
            (json!({"and": [{"all": true}]}), live.clone()),
            (
                json!({"not": {"and": [k("a"), k("b")]}}),
                &live - &(&a & &b),
            ),
        ] {
            let f = parse(&filter, &|_| true).unwrap();
            assert_eq!(count(&f, &s, &cohorts), expected.len(), "{filter}");
            assert_eq!(evaluate(&f, &s, &cohorts), expected, "{filter}");
        }
    }
}
