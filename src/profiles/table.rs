//! The profile table: profiles by dense id, stored in fixed-size chunks
//! behind `Arc`s, and the list of chunks behind one more, so that a
//! snapshot or a read view takes the whole table in O(1) and keeps it while
//! writes go on: a write while one is held copies the list of chunks
//! (O(number of chunks), `Arc`s only) and the one chunk it changes
//! (copy-on-write).

use std::sync::Arc;

use super::Profile;
use crate::model::Uid;

const CHUNK: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct Table {
    chunks: Arc<Vec<Arc<Vec<Option<Profile>>>>>,
    len: u32,
}

impl Table {
    /// One past the highest id ever given out.
    pub fn len(&self) -> Uid {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, uid: Uid) -> Option<&Profile> {
        let (c, i) = (uid as usize / CHUNK, uid as usize % CHUNK);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    /// Where profile `uid` lives, without reading it (for prefetching).
    pub fn slot_addr(&self, uid: Uid) -> Option<*const u8> {
        let (c, i) = (uid as usize / CHUNK, uid as usize % CHUNK);
        self.chunks
            .get(c)
            .and_then(|chunk| chunk.get(i))
            .map(|slot| slot as *const Option<Profile> as *const u8)
    }

    pub fn get_mut(&mut self, uid: Uid) -> Option<&mut Profile> {
        let (c, i) = (uid as usize / CHUNK, uid as usize % CHUNK);
        Arc::make_mut(Arc::make_mut(&mut self.chunks).get_mut(c)?)
            .get_mut(i)?
            .as_mut()
    }

    /// Appends a profile under the next id.
    pub fn push(&mut self, p: Profile) -> Uid {
        let uid = self.len;
        self.push_slot(Some(p));
        uid
    }

    /// Removes and returns a profile; its id stays used.
    pub fn take(&mut self, uid: Uid) -> Option<Profile> {
        self.get(uid)?;
        let (c, i) = (uid as usize / CHUNK, uid as usize % CHUNK);
        Arc::make_mut(&mut Arc::make_mut(&mut self.chunks)[c])[i].take()
    }

    /// Puts `p` at id `uid`, leaving holes for the ids skipped since the
    /// last one (building a table from a snapshot, ids ascending).
    pub fn put(&mut self, uid: Uid, p: Profile) -> Result<(), String> {
        if uid < self.len {
            return Err(format!(
                "profile id {uid} out of order (the table already holds {} ids)",
                self.len
            ));
        }
        self.extend_to(uid);
        self.push_slot(Some(p));
        Ok(())
    }

    /// Makes ids up to `len` exist, as holes.
    pub fn extend_to(&mut self, len: Uid) {
        while self.len < len {
            self.push_slot(None);
        }
    }

    fn push_slot(&mut self, p: Option<Profile>) {
        let chunks = Arc::make_mut(&mut self.chunks);
        if (self.len as usize).is_multiple_of(CHUNK) {
            chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = chunks.last_mut().expect("a chunk was just ensured");
        Arc::make_mut(last).push(p);
        self.len += 1;
    }

    /// Live profiles in id order.
    pub fn iter(&self) -> impl Iterator<Item = (Uid, &Profile)> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter_map(move |(i, p)| p.as_ref().map(|p| ((c * CHUNK + i) as Uid, p)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_span_chunks_and_holes_stay_holes() {
        let mut t = Table::default();
        for _ in 0..(CHUNK * 2 + 5) {
            t.push(Profile::default());
        }
        assert_eq!(t.len() as usize, CHUNK * 2 + 5);
        assert!(t.take(CHUNK as Uid).is_some());
        assert!(t.take(CHUNK as Uid).is_none());
        assert!(t.get(CHUNK as Uid).is_none());
        assert_eq!(t.iter().count(), CHUNK * 2 + 4);
        assert!(t.get((CHUNK * 2 + 5) as Uid).is_none());
    }

    #[test]
    fn a_clone_keeps_its_chunks_while_the_original_changes() {
        let mut t = Table::default();
        let uid = t.push(Profile::default());
        let held = t.clone();
        t.get_mut(uid).unwrap().external_id = Some("x".into());
        assert_eq!(held.get(uid).unwrap().external_id, None);
        assert_eq!(t.get(uid).unwrap().external_id.as_deref(), Some("x"));
    }
}
