//! The external_id index: open addressing over 8-byte slots, without a
//! second copy of each key, and a batch lookup that prefetches.
//!
//! At 10M profiles a `HashMap<CompactString, u32>` costs ~33 bytes a slot
//! (550 MB after growth), more than the profile table itself. Here a slot is
//! `(low 32 bits of the key's hash) << 32 | (uid + 1)`, 0 meaning empty; a
//! candidate whose hash bits match is confirmed against the external_id the
//! table already holds. Linear probing with backward-shift deletion (no
//! tombstones); the stored hash bits give each entry's home slot, so growing
//! never touches the profiles.
//!
//! Resolving a delta's ids is the write path's hottest loop (perf: a third of
//! ingest time, three dependent cache misses per id). `get_many` hashes the
//! whole batch and prefetches every home slot, then every candidate
//! profile, then confirms: the misses overlap instead of queueing.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::Table;
use crate::model::Uid;

#[derive(Clone)]
pub struct ExternalIndex {
    slots: Vec<u64>,
    len: usize,
    hasher: RandomState,
}

impl Default for ExternalIndex {
    fn default() -> Self {
        ExternalIndex::with_capacity(0)
    }
}

impl std::fmt::Debug for ExternalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExternalIndex({} ids in {} slots)",
            self.len,
            self.slots.len()
        )
    }
}

fn key_of(table: &Table, uid: Uid) -> Option<&str> {
    table.get(uid)?.external_id.as_deref()
}

/// Asks the CPU to bring `addr`'s cache line in (a hint: never faults).
#[inline(always)]
pub(crate) fn prefetch(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, even on a bad address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(addr as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

const fn slot(tag: u32, uid: Uid) -> u64 {
    ((tag as u64) << 32) | (uid as u64 + 1)
}

const fn tag_of(s: u64) -> u32 {
    (s >> 32) as u32
}

const fn uid_of(s: u64) -> Uid {
    ((s & 0xffff_ffff) - 1) as Uid
}

impl ExternalIndex {
    pub fn with_capacity(n: usize) -> Self {
        // Load factor at most 0.7.
        let slots = (n * 10 / 7 + 1).next_power_of_two().max(16);
        ExternalIndex {
            slots: vec![0; slots],
            len: 0,
            hasher: RandomState::default(),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn tag(&self, key: &str) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    pub fn get(&self, key: &str, table: &Table) -> Option<Uid> {
        self.find(key, self.tag(key), table)
    }

    fn find(&self, key: &str, tag: u32, table: &Table) -> Option<Uid> {
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if tag_of(s) == tag && key_of(table, uid_of(s)) == Some(key) {
                return Some(uid_of(s));
            }
            i = (i + 1) & mask;
        }
    }

    /// `get` for a batch, in order: `out[i]` answers `keys[i]`.
    pub fn get_many(&self, keys: &[&str], table: &Table) -> Vec<Option<Uid>> {
        let mask = self.mask();
        let tags: Vec<u32> = keys.iter().map(|k| self.tag(k)).collect();
        for &t in &tags {
            prefetch(&self.slots[t as usize & mask] as *const u64 as *const u8);
        }
        // The first slot whose hash bits match is almost always the key.
        let first: Vec<Option<Uid>> = tags
            .iter()
            .map(|&t| {
                let mut i = t as usize & mask;
                loop {
                    let s = self.slots[i];
                    if s == 0 {
                        return None;
                    }
                    if tag_of(s) == t {
                        return Some(uid_of(s));
                    }
                    i = (i + 1) & mask;
                }
            })
            .collect();
        for uid in first.iter().flatten() {
            if let Some(addr) = table.slot_addr(*uid) {
                prefetch(addr);
            }
        }
        keys.iter()
            .zip(&tags)
            .zip(first)
            .map(|((key, &tag), candidate)| match candidate {
                None => None,
                Some(uid) if key_of(table, uid) == Some(key) => Some(uid),
                // Same hash bits, another key: probe the rest properly.
                Some(_) => self.find(key, tag, table),
            })
            .collect()
    }

    /// Indexes `uid`, whose profile in `table` already holds `key`.
    pub fn insert(&mut self, key: &str, uid: Uid, table: &Table) {
        debug_assert_eq!(key_of(table, uid), Some(key));
        if (self.len + 1) * 10 > self.slots.len() * 7 {
            self.grow();
        }
        let tag = self.tag(key);
        self.place(slot(tag, uid));
        self.len += 1;
    }

    fn place(&mut self, s: u64) {
        let mask = self.mask();
        let mut i = tag_of(s) as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = s;
    }

    fn grow(&mut self) {
        let doubled = vec![0; (self.slots.len() * 2).max(16)];
        let old = std::mem::replace(&mut self.slots, doubled);
        for s in old.into_iter().filter(|&s| s != 0) {
            self.place(s);
        }
    }

    pub fn remove(&mut self, key: &str, uid: Uid) {
        let mask = self.mask();
        let target = slot(self.tag(key), uid);
        let mut i = tag_of(target) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return,
                s if s == target => break,
                _ => i = (i + 1) & mask,
            }
        }
        // Backward-shift deletion: pull later entries of the run into the
        // hole when their home slot allows it.
        self.slots[i] = 0;
        self.len -= 1;
        let mut hole = i;
        let mut j = (i + 1) & mask;
        while self.slots[j] != 0 {
            let home = tag_of(self.slots[j]) as usize & mask;
            // Move j into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                self.slots[j] = 0;
                hole = j;
            }
            j = (j + 1) & mask;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::Profile;
    use proptest::prelude::*;

    #[test]
    fn finds_inserts_and_removes_through_the_table() {
        let mut table = Table::default();
        let mut index = ExternalIndex::default();
        let mut uids = Vec::new();
        for i in 0..10_000 {
            let key = format!("user_{i}");
            let uid = table.push(Profile::identified(&key));
            index.insert(&key, uid, &table);
            uids.push(uid);
        }
        assert_eq!(index.get("user_4242", &table), Some(uids[4242]));
        assert_eq!(index.get("user_10000", &table), None);
        index.remove("user_4242", uids[4242]);
        assert_eq!(index.get("user_4242", &table), None);
        assert_eq!(index.get("user_4243", &table), Some(uids[4243]));
        assert_eq!(index.len(), 9_999);
        let keys = ["user_1", "user_4242", "nobody", "user_9999"];
        assert_eq!(
            index.get_many(&keys, &table),
            vec![Some(uids[1]), None, None, Some(uids[9999])]
        );
    }

    proptest! {
        /// Against a HashMap over random inserts and removes of a small key
        /// space (so probe runs, collisions and backward shifts all happen).
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u8..3, 0u16..300), 1..600)) {
            let mut table = Table::default();
            let mut index = ExternalIndex::with_capacity(0);
            let mut model: std::collections::HashMap<String, Uid> = Default::default();
            for (op, k) in ops {
                let key = format!("k{k}");
                match op {
                    0 if !model.contains_key(&key) => {
                        let uid = table.push(Profile::identified(&key));
                        index.insert(&key, uid, &table);
                        model.insert(key, uid);
                    }
                    1 => {
                        if let Some(uid) = model.remove(&key) {
                            index.remove(&key, uid);
                            table.take(uid);
                        }
                    }
                    _ => prop_assert_eq!(index.get(&key, &table), model.get(&key).copied()),
                }
            }
            prop_assert_eq!(index.len(), model.len());
            let keys: Vec<String> = (0..300).map(|k| format!("k{k}")).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let batch = index.get_many(&refs, &table);
            for (k, got) in keys.iter().zip(batch) {
                prop_assert_eq!(got, model.get(k).copied(), "{}", k);
            }
        }
    }
}
