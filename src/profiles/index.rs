//! The external_id index without a second copy of each key.
//!
//! At 10M profiles a `HashMap<CompactString, u32>` costs ~33 bytes a slot
//! (550 MB after growth), more than the profile table itself. This index
//! keeps only profile ids (4 bytes a slot plus hashbrown's control byte) and
//! compares candidates against the external_id the table already holds.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::Table;
use crate::model::Uid;

#[derive(Clone, Default)]
pub struct ExternalIndex {
    ids: HashTable<Uid>,
    hasher: RandomState,
}

impl std::fmt::Debug for ExternalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExternalIndex({} ids)", self.ids.len())
    }
}

fn key_of(table: &Table, uid: Uid) -> Option<&str> {
    table.get(uid)?.external_id.as_deref()
}

impl ExternalIndex {
    pub fn with_capacity(n: usize) -> Self {
        ExternalIndex {
            ids: HashTable::with_capacity(n),
            hasher: RandomState::default(),
        }
    }

    pub fn get(&self, key: &str, table: &Table) -> Option<Uid> {
        let hash = self.hasher.hash_one(key);
        self.ids
            .find(hash, |&uid| key_of(table, uid) == Some(key))
            .copied()
    }

    /// Indexes `uid`, whose profile in `table` already holds `key`.
    pub fn insert(&mut self, key: &str, uid: Uid, table: &Table) {
        debug_assert_eq!(key_of(table, uid), Some(key));
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        self.ids.insert_unique(hash, uid, |&other| {
            hasher.hash_one(key_of(table, other).expect("indexed profiles hold their key"))
        });
    }

    pub fn remove(&mut self, key: &str, uid: Uid) {
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.ids.find_entry(hash, |&other| other == uid) {
            entry.remove();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::Profile;

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
    }
}
