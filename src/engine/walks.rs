//! Segment member walks pinned to one evaluation: the first page of
//! `GET /segments/{id}/members` evaluates the filter once, and when more
//! pages follow, the member set is kept here under a walk id that the
//! cursor carries (`{last id}.{walk id}`). Later pages read the kept set,
//! so a page costs O(page), not a new evaluation.
//!
//! What a walk sees (docs/decisions.md): the members as of its first page.
//! A profile deleted since is passed over; one that joined since is not in
//! that walk. If the kept set is gone (evicted, expired, the segment's
//! filter replaced, the server restarted), the next page evaluates anew
//! and continues after the cursor's id, exactly as a walk without a kept
//! set does: still never a repeat, never a skip of a member that stayed a
//! member throughout.
//!
//! Bounded per workspace, so one tenant's walks never evict another's:
//! at most [`MAX_WALKS`] sets and [`MAX_BYTES`] of them, a set unused for
//! [`IDLE`] goes, and the least recently used goes first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use roaring::RoaringBitmap;

use super::state::Segment;

/// Kept sets per workspace.
pub const MAX_WALKS: usize = 64;
/// Bytes of kept sets per workspace (their serialized size).
pub const MAX_BYTES: u64 = 64 << 20;
/// A kept set unused this long is dropped.
pub const IDLE: Duration = Duration::from_secs(600);

pub struct Walks {
    kept: Mutex<Vec<Walk>>,
    max_bytes: u64,
}

impl Default for Walks {
    fn default() -> Self {
        Walks {
            kept: Mutex::default(),
            max_bytes: MAX_BYTES,
        }
    }
}

struct Walk {
    id: u64,
    /// The segment as evaluated: a filter replaced since is another `Arc`.
    segment: Arc<Segment>,
    set: Arc<RoaringBitmap>,
    bytes: u64,
    used: Instant,
}

impl Walks {
    /// Keeps `set`, the members of `segment` now, for the walk's later
    /// pages; returns the walk id for the cursor.
    pub fn keep(&self, segment: Arc<Segment>, set: Arc<RoaringBitmap>) -> u64 {
        let id = loop {
            let id: u64 = rand::random();
            if id != 0 {
                break id;
            }
        };
        let bytes = set.serialized_size() as u64;
        let now = Instant::now();
        let mut kept = self.kept.lock();
        kept.retain(|w| now.duration_since(w.used) < IDLE);
        kept.push(Walk {
            id,
            segment,
            set,
            bytes,
            used: now,
        });
        // Least recently used first out.
        while kept.len() > MAX_WALKS || kept.iter().map(|w| w.bytes).sum::<u64>() > self.max_bytes {
            let oldest = kept
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| w.used)
                .map(|(i, _)| i)
                .expect("not empty");
            kept.swap_remove(oldest);
        }
        id
    }

    /// The set walk `id` kept for `segment`, if it still is.
    pub fn get(&self, id: u64, segment: &Arc<Segment>) -> Option<Arc<RoaringBitmap>> {
        let now = Instant::now();
        let mut kept = self.kept.lock();
        let w = kept.iter_mut().find(|w| w.id == id)?;
        if !Arc::ptr_eq(&w.segment, segment) || now.duration_since(w.used) >= IDLE {
            return None;
        }
        w.used = now;
        Some(w.set.clone())
    }

    /// Drops walk `id` (its last page was read).
    pub fn end(&self, id: u64) {
        self.kept.lock().retain(|w| w.id != id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::Filter;

    fn segment(id: u64) -> Arc<Segment> {
        Arc::new(Segment::new(
            id,
            format!("s{id}"),
            Filter::All,
            Default::default(),
        ))
    }

    #[test]
    fn a_kept_set_is_found_for_its_segment_only() {
        let w = Walks::default();
        let (a, b) = (segment(1), segment(2));
        let set: Arc<RoaringBitmap> = Arc::new((0..10).collect());
        let id = w.keep(a.clone(), set.clone());
        assert_eq!(w.get(id, &a).as_deref(), Some(&*set));
        assert!(w.get(id, &b).is_none());
        // The same segment with its filter replaced is another Arc.
        assert!(w.get(id, &segment(1)).is_none());
        assert!(w.get(id.wrapping_add(1), &a).is_none());
        w.end(id);
        assert!(w.get(id, &a).is_none());
    }

    #[test]
    fn the_least_recently_used_goes_past_the_bound() {
        let w = Walks::default();
        let s = segment(1);
        let first = w.keep(s.clone(), Arc::new(RoaringBitmap::new()));
        let ids: Vec<u64> = (0..MAX_WALKS)
            .map(|_| w.keep(s.clone(), Arc::new(RoaringBitmap::new())))
            .collect();
        assert_eq!(w.len(), MAX_WALKS);
        assert!(w.get(first, &s).is_none());
        assert!(ids.iter().all(|id| w.get(*id, &s).is_some()));
    }

    #[test]
    fn the_least_recently_used_goes_past_the_byte_bound() {
        let set: Arc<RoaringBitmap> = Arc::new((0..100_000).collect());
        let size = set.serialized_size() as u64;
        let w = Walks {
            max_bytes: size * 2,
            ..Walks::default()
        };
        let s = segment(1);
        let a = w.keep(s.clone(), set.clone());
        let b = w.keep(s.clone(), set.clone());
        assert!(w.get(a, &s).is_some(), "a is now more recently used than b");
        let c = w.keep(s.clone(), set);
        assert_eq!(w.len(), 2);
        assert!(w.get(b, &s).is_none());
        assert!(w.get(a, &s).is_some() && w.get(c, &s).is_some());
    }
}
