//! The profile store of one workspace: profiles by dense id, the identifier
//! indexes, and every rule about identifiers — which profile an identifier
//! matches (cohort import never creates one), how identify merges, what
//! delete removes.
//!
//! `ProfileStore` is plain data with no locking: the engine keeps one per
//! workspace behind a `RwLock`, written only by the router (the single
//! sequencer of mutations) and read by queries. Keeping the three indexes and
//! the table under one lock means a reader never sees an alias in two
//! profiles halfway through a merge.
//!
//! Cohort membership is not here: it belongs to the cohort actors. Operations
//! that move or end a profile (merge, delete) return what happened so that
//! the router can tell the cohorts.

pub mod commands;
mod index;
mod profile;
mod table;

pub use profile::{AttrValue, Details, EventStats, Profile};
pub use table::Table;

use compact_str::CompactString;
use foldhash::fast::RandomState;
use roaring::RoaringBitmap;

use crate::model::{Alias, Identifier, Millis, Uid};

type Map<K, V> = hashbrown::HashMap<K, V, RandomState>;
type Set<T> = hashbrown::HashSet<T, RandomState>;

/// A change to one custom attribute, as `/users/track` asks for it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrUpdate {
    Set(AttrValue),
    Remove,
    /// `{"inc": n}`: adds to a number (a missing or non-number attribute counts as 0).
    Increment(f64),
    /// `{"add": [..], "remove": [..]}` on an array attribute.
    ArrayEdit {
        add: Vec<CompactString>,
        remove: Vec<CompactString>,
    },
}

/// What an identify call did to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identified {
    /// `from` was folded into `into` and no longer exists: its cohort
    /// memberships must move to `into`.
    Merged { from: Uid, into: Uid },
    /// The anonymous or alias-only profile `uid` got the external_id.
    Became(Uid),
    /// The alias was unknown and was added to the identified profile `uid`.
    AliasAdded(Uid),
    /// Nothing to do: the identifier already belongs to that external_id.
    Unchanged(Uid),
}

/// Why an identify or alias entry was skipped (reported in `errors`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    #[error("alias is already held by another identified user")]
    AliasHeldByIdentified,
    #[error("device_id does not belong to an anonymous user")]
    DeviceNotAnonymous,
    #[error("alias already exists")]
    AliasTaken,
    #[error("no user with that external_id")]
    NoSuchUser,
}

/// A point-in-time image of a `ProfileStore`: what a snapshot stores (the
/// indexes are rebuilt from it).
#[derive(Clone, Debug, Default)]
pub struct ProfileImage {
    table: Table,
    live: RoaringBitmap,
}

impl ProfileImage {
    /// The image of `profiles` (ascending ids below `id_bound`).
    pub fn from_profiles(
        id_bound: Uid,
        profiles: impl IntoIterator<Item = (Uid, Profile)>,
    ) -> Result<ProfileImage, String> {
        let table = Table::from_sparse(id_bound, profiles)?;
        let live = table.iter().map(|(uid, _)| uid).collect();
        Ok(ProfileImage { table, live })
    }

    /// Every profile with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (Uid, &Profile)> {
        self.table.iter()
    }

    /// One past the highest id ever given out.
    pub fn id_bound(&self) -> Uid {
        self.table.len()
    }

    /// Live profiles in the image.
    pub fn len(&self) -> u64 {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct ProfileStore {
    /// Indexed by `Uid`; `None` for a deleted or merged-away profile (ids are
    /// never reused).
    table: Table,
    /// The live profiles: the universe that `not` is taken against.
    live: RoaringBitmap,
    by_external: index::ExternalIndex,
    by_alias: Map<Alias, Uid>,
    by_device: Map<CompactString, Uid>,
}

impl ProfileStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the indexes from the table (after loading a snapshot, which
    /// stores only the table).
    pub fn reindex(&mut self) {
        self.by_external = index::ExternalIndex::with_capacity(self.live.len() as usize);
        self.by_alias.clear();
        self.by_device.clear();
        for (uid, p) in self.table.iter() {
            if let Some(e) = &p.external_id {
                self.by_external.insert(e, uid, &self.table);
            }
            for a in p.aliases() {
                self.by_alias.insert(a.clone(), uid);
            }
            for d in p.devices() {
                self.by_device.insert(d.clone(), uid);
            }
        }
    }

    /// A point-in-time image of the profiles for a snapshot, in
    /// O(number of chunks): the table's chunks are shared copy-on-write, and
    /// the indexes are not part of it (`from_image` rebuilds them).
    pub fn image(&self) -> ProfileImage {
        ProfileImage {
            table: self.table.clone(),
            live: self.live.clone(),
        }
    }

    /// The store an image describes, with its indexes rebuilt.
    pub fn from_image(image: ProfileImage) -> ProfileStore {
        let mut store = ProfileStore {
            table: image.table,
            live: image.live,
            ..Default::default()
        };
        store.reindex();
        store
    }

    /// The live profiles.
    pub fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    pub fn len(&self) -> u64 {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// One past the highest id ever given out.
    pub fn id_bound(&self) -> u32 {
        self.table.len()
    }

    pub fn get(&self, uid: Uid) -> Option<&Profile> {
        self.table.get(uid)
    }

    /// Every live profile with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (Uid, &Profile)> {
        self.table.iter()
    }

    /// How `uid` is listed in member pages, or `None` if it no longer exists.
    pub fn listed_as(&self, uid: Uid) -> Option<Identifier> {
        self.get(uid).and_then(Profile::listed_as)
    }

    /// The matching rule for cohort import and membership checks:
    /// `External` matches the profile with that external_id, `Alias` the
    /// profile holding that exact pair, `Device` an *anonymous* profile holding
    /// that device (a profile that has logged in is no longer matched by its
    /// devices). Never creates anything.
    #[inline]
    pub fn resolve(&self, id: &Identifier) -> Option<Uid> {
        match id {
            Identifier::External(e) => self.by_external.get(e, &self.table),
            Identifier::Alias(a) => self.by_alias.get(a).copied(),
            Identifier::Device(d) => {
                let uid = *self.by_device.get(d.as_str())?;
                self.get(uid).filter(|p| p.is_anonymous()).map(|_| uid)
            }
        }
    }

    /// `resolve` for a batch, in order (what a delta needs): external ids
    /// are looked up together so their cache misses overlap.
    pub fn resolve_many<'a>(&self, ids: impl Iterator<Item = &'a Identifier>) -> Vec<Option<Uid>> {
        let ids: Vec<&Identifier> = ids.collect();
        let externals: Vec<&str> = ids
            .iter()
            .filter_map(|id| match id {
                Identifier::External(e) => Some(e.as_str()),
                _ => None,
            })
            .collect();
        let mut found = self
            .by_external
            .get_many(&externals, &self.table)
            .into_iter();
        ids.iter()
            .map(|id| match id {
                Identifier::External(_) => found.next().flatten(),
                other => self.resolve(other),
            })
            .collect()
    }

    /// The profile holding `external_id`, if any.
    pub fn by_external(&self, external_id: &str) -> Option<Uid> {
        self.by_external.get(external_id, &self.table)
    }

    /// The profile holding `alias`, identified or not.
    pub fn by_alias(&self, alias: &Alias) -> Option<Uid> {
        self.by_alias.get(alias).copied()
    }

    /// The profile holding `device`, identified or not.
    pub fn by_device(&self, device: &str) -> Option<Uid> {
        self.by_device.get(device).copied()
    }

    fn insert(&mut self, p: Profile) -> Uid {
        let uid = self.table.push(p);
        let p = self.table.get(uid).expect("just pushed");
        if let Some(e) = &p.external_id {
            self.by_external.insert(e, uid, &self.table);
        }
        for a in p.aliases() {
            self.by_alias.insert(a.clone(), uid);
        }
        for d in p.devices() {
            self.by_device.insert(d.clone(), uid);
        }
        self.live.insert(uid);
        uid
    }

    fn profile_mut(&mut self, uid: Uid) -> &mut Profile {
        self.table
            .get_mut(uid)
            .expect("uid handed out by this store is live")
    }

    /// The identified profile for `external_id`, created if `create`.
    pub fn upsert_external(&mut self, external_id: &str, create: bool) -> Option<Uid> {
        if let Some(uid) = self.by_external(external_id) {
            return Some(uid);
        }
        create.then(|| self.insert(Profile::identified(external_id)))
    }

    /// The profile holding `alias`, or a new alias-only profile if `create`.
    pub fn upsert_alias(&mut self, alias: &Alias, create: bool) -> Option<Uid> {
        if let Some(uid) = self.by_alias(alias) {
            return Some(uid);
        }
        create.then(|| self.insert(Profile::alias_only(alias.clone())))
    }

    /// The profile holding `device` (what an SDK on that device writes to),
    /// or a new anonymous profile.
    pub fn upsert_device(&mut self, device: &str) -> Uid {
        if let Some(uid) = self.by_device(device) {
            return uid;
        }
        self.insert(Profile::anonymous(device))
    }

    pub fn update_attribute(&mut self, uid: Uid, name: &str, update: AttrUpdate) {
        let attrs = &mut self.profile_mut(uid).details_mut().attributes;
        match update {
            AttrUpdate::Set(v) => {
                attrs.insert(name.into(), v);
            }
            AttrUpdate::Remove => {
                attrs.remove(name);
            }
            AttrUpdate::Increment(by) => {
                let base = match attrs.get(name) {
                    Some(AttrValue::Num(n)) => *n,
                    _ => 0.0,
                };
                attrs.insert(name.into(), AttrValue::Num(base + by));
            }
            AttrUpdate::ArrayEdit { add, remove } => {
                let items = match attrs.remove(name) {
                    Some(AttrValue::Array(items)) => items,
                    _ => Vec::new(),
                };
                attrs.insert(
                    name.into(),
                    AttrValue::Array(edit_array(items, &add, &remove)),
                );
            }
        }
    }

    pub fn record_event(&mut self, uid: Uid, name: &str, at: Millis) {
        let events = &mut self.profile_mut(uid).details_mut().events;
        match events.get_mut(name) {
            Some(s) => s.record(at),
            None => {
                events.insert(
                    name.into(),
                    EventStats {
                        count: 1,
                        first: at,
                        last: at,
                    },
                );
            }
        }
    }

    /// `/users/identify` for an alias: the alias-only profile becomes, or merges
    /// into, the identified profile with `external_id`. An alias nobody holds
    /// is added to that profile (created if needed).
    pub fn identify_alias(
        &mut self,
        external_id: &str,
        alias: &Alias,
    ) -> Result<Identified, IdentifyError> {
        let target = self.by_external(external_id);
        match self.by_alias(alias) {
            Some(holder) if Some(holder) == target => Ok(Identified::Unchanged(holder)),
            Some(holder) => {
                if !self.profile_mut(holder).is_anonymous() {
                    return Err(IdentifyError::AliasHeldByIdentified);
                }
                Ok(self.identify_holder(external_id, holder, target))
            }
            None => {
                let uid = match target {
                    Some(uid) => uid,
                    None => self
                        .upsert_external(external_id, true)
                        .expect("create = true"),
                };
                self.by_alias.insert(alias.clone(), uid);
                self.profile_mut(uid)
                    .details_mut()
                    .aliases
                    .push(alias.clone());
                Ok(Identified::AliasAdded(uid))
            }
        }
    }

    /// `devices_to_identify`: the anonymous profile holding `device` logs in as
    /// `external_id` (becomes it, or merges into it).
    pub fn identify_device(
        &mut self,
        external_id: &str,
        device: &str,
    ) -> Result<Identified, IdentifyError> {
        let target = self.by_external(external_id);
        match self.by_device(device) {
            Some(holder) if Some(holder) == target => Ok(Identified::Unchanged(holder)),
            Some(holder) if self.profile_mut(holder).is_anonymous() => {
                Ok(self.identify_holder(external_id, holder, target))
            }
            _ => Err(IdentifyError::DeviceNotAnonymous),
        }
    }

    /// `holder` is anonymous (no external_id). Either it takes the external_id,
    /// or it is merged into `target`.
    fn identify_holder(
        &mut self,
        external_id: &str,
        holder: Uid,
        target: Option<Uid>,
    ) -> Identified {
        match target {
            None => {
                self.profile_mut(holder).external_id = Some(external_id.into());
                self.by_external.insert(external_id, holder, &self.table);
                Identified::Became(holder)
            }
            Some(into) => {
                self.merge(holder, into);
                Identified::Merged { from: holder, into }
            }
        }
    }

    /// Folds profile `from` into `into` and ends `from`.
    fn merge(&mut self, from: Uid, into: Uid) {
        let gone = self.table.take(from).expect("merge source is live");
        self.live.remove(from);
        for a in gone.aliases() {
            self.by_alias.insert(a.clone(), into);
        }
        for d in gone.devices() {
            self.by_device.insert(d.clone(), into);
        }
        self.profile_mut(into).absorb(gone);
    }

    /// `/users/alias/new`: adds `alias` to the profile with `external_id`, or
    /// creates an alias-only profile when `external_id` is `None`.
    pub fn add_alias(
        &mut self,
        external_id: Option<&str>,
        alias: &Alias,
    ) -> Result<Uid, IdentifyError> {
        let owner = match external_id {
            Some(e) => Some(self.by_external(e).ok_or(IdentifyError::NoSuchUser)?),
            None => None,
        };
        match (self.by_alias(alias), owner) {
            (Some(holder), Some(uid)) if holder == uid => Ok(uid),
            (Some(_), _) => Err(IdentifyError::AliasTaken),
            (None, Some(uid)) => {
                self.by_alias.insert(alias.clone(), uid);
                self.profile_mut(uid)
                    .details_mut()
                    .aliases
                    .push(alias.clone());
                Ok(uid)
            }
            (None, None) => Ok(self.upsert_alias(alias, true).expect("create = true")),
        }
    }

    /// Deletes a profile: its identifiers are freed (a later track with the
    /// same external_id creates a new profile with a new id).
    pub fn delete(&mut self, uid: Uid) -> bool {
        let Some(p) = self.table.take(uid) else {
            return false;
        };
        self.live.remove(uid);
        if let Some(e) = &p.external_id {
            self.by_external.remove(e, uid);
        }
        for a in p.aliases() {
            self.by_alias.remove(a);
        }
        for d in p.devices() {
            self.by_device.remove(d.as_str());
        }
        true
    }
}

/// An array attribute edit, in linear time: `add` appends each item the
/// array does not hold yet (in `add`'s order, once), then every item in
/// `remove` goes. Items already in the array keep their places (and any
/// duplicates a whole-array set gave them).
pub fn edit_array(
    mut items: Vec<CompactString>,
    add: &[CompactString],
    remove: &[CompactString],
) -> Vec<CompactString> {
    let fresh: Vec<&CompactString> = {
        let mut seen: Set<&str> = items.iter().map(CompactString::as_str).collect();
        add.iter().filter(|a| seen.insert(a.as_str())).collect()
    };
    items.extend(fresh.into_iter().cloned());
    if !remove.is_empty() {
        let gone: Set<&str> = remove.iter().map(CompactString::as_str).collect();
        items.retain(|i| !gone.contains(i.as_str()));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> Identifier {
        Identifier::External(s.into())
    }
    fn dev(s: &str) -> Identifier {
        Identifier::Device(s.into())
    }

    #[test]
    fn resolve_matches_existing_profiles_only() {
        let mut s = ProfileStore::new();
        let u1 = s.upsert_external("u1", true).unwrap();
        let a = s.upsert_alias(&Alias::new("email", "a@x"), true).unwrap();
        assert_eq!(s.resolve(&ext("u1")), Some(u1));
        assert_eq!(
            s.resolve(&Identifier::Alias(Alias::new("email", "a@x"))),
            Some(a)
        );
        assert_eq!(
            s.resolve(&Identifier::Alias(Alias::new("email", "A@x"))),
            None
        );
        assert_eq!(s.resolve(&ext("nobody")), None);
        assert_eq!(s.len(), 2, "resolving never creates");
    }

    #[test]
    fn update_existing_only_does_not_create() {
        let mut s = ProfileStore::new();
        assert_eq!(s.upsert_external("u1", false), None);
        assert_eq!(s.upsert_alias(&Alias::new("n", "l"), false), None);
        assert!(s.is_empty());
    }

    #[test]
    fn devices_match_anonymous_profiles_only_until_login() {
        let mut s = ProfileStore::new();
        let anon = s.upsert_device("d1");
        assert_eq!(s.resolve(&dev("d1")), Some(anon));
        assert_eq!(s.identify_device("u9", "d1"), Ok(Identified::Became(anon)));
        assert_eq!(
            s.resolve(&dev("d1")),
            None,
            "logged in: no longer matched by device"
        );
        assert_eq!(s.resolve(&ext("u9")), Some(anon));
    }

    #[test]
    fn device_login_into_existing_user_merges() {
        let mut s = ProfileStore::new();
        let known = s.upsert_external("u1", true).unwrap();
        let anon = s.upsert_device("d1");
        s.record_event(anon, "open", 5);
        s.record_event(known, "open", 9);
        assert_eq!(
            s.identify_device("u1", "d1"),
            Ok(Identified::Merged {
                from: anon,
                into: known
            })
        );
        assert!(s.get(anon).is_none());
        assert!(!s.live().contains(anon));
        let p = s.get(known).unwrap();
        assert_eq!(
            p.events()["open"],
            EventStats {
                count: 2,
                first: 5,
                last: 9
            }
        );
        assert_eq!(s.resolve(&dev("d1")), None);
        assert_eq!(s.by_device("d1"), Some(known));
    }

    #[test]
    fn identify_alias_becomes_merges_or_refuses() {
        let mut s = ProfileStore::new();
        let al = Alias::new("email", "a@x");
        let alias_only = s.upsert_alias(&al, true).unwrap();
        assert_eq!(
            s.identify_alias("u1", &al),
            Ok(Identified::Became(alias_only))
        );
        assert_eq!(
            s.identify_alias("u1", &al),
            Ok(Identified::Unchanged(alias_only))
        );
        // Held by an identified profile: another external_id may not take it.
        assert_eq!(
            s.identify_alias("u2", &al),
            Err(IdentifyError::AliasHeldByIdentified)
        );
        let al2 = Alias::new("email", "b@x");
        let other = s.upsert_alias(&al2, true).unwrap();
        assert_eq!(
            s.identify_alias("u1", &al2),
            Ok(Identified::Merged {
                from: other,
                into: alias_only
            })
        );
        assert_eq!(s.resolve(&Identifier::Alias(al2)), Some(alias_only));
        let unknown = Alias::new("phone", "1");
        assert_eq!(
            s.identify_alias("u1", &unknown),
            Ok(Identified::AliasAdded(alias_only))
        );
    }

    #[test]
    fn delete_frees_identifiers_and_never_reuses_ids() {
        let mut s = ProfileStore::new();
        let u1 = s.upsert_external("u1", true).unwrap();
        s.add_alias(Some("u1"), &Alias::new("n", "l")).unwrap();
        assert!(s.delete(u1));
        assert!(!s.delete(u1));
        assert_eq!(s.resolve(&ext("u1")), None);
        assert_eq!(s.resolve(&Identifier::Alias(Alias::new("n", "l"))), None);
        let again = s.upsert_external("u1", true).unwrap();
        assert_ne!(again, u1);
    }

    #[test]
    fn alias_new_refuses_taken_aliases_and_unknown_users() {
        let mut s = ProfileStore::new();
        s.upsert_external("u1", true);
        s.upsert_external("u2", true);
        let al = Alias::new("n", "l");
        assert!(s.add_alias(Some("u1"), &al).is_ok());
        assert!(
            s.add_alias(Some("u1"), &al).is_ok(),
            "re-adding one's own alias is a no-op"
        );
        assert_eq!(s.add_alias(Some("u2"), &al), Err(IdentifyError::AliasTaken));
        assert_eq!(
            s.add_alias(Some("zz"), &Alias::new("x", "y")),
            Err(IdentifyError::NoSuchUser)
        );
    }

    #[test]
    fn attribute_updates() {
        let mut s = ProfileStore::new();
        let u = s.upsert_external("u", true).unwrap();
        s.update_attribute(u, "n", AttrUpdate::Increment(2.0));
        s.update_attribute(u, "n", AttrUpdate::Increment(3.0));
        s.update_attribute(
            u,
            "tags",
            AttrUpdate::ArrayEdit {
                add: vec!["a".into(), "b".into()],
                remove: vec![],
            },
        );
        s.update_attribute(
            u,
            "tags",
            AttrUpdate::ArrayEdit {
                add: vec!["c".into()],
                remove: vec!["a".into()],
            },
        );
        s.update_attribute(u, "gone", AttrUpdate::Set(AttrValue::Bool(true)));
        s.update_attribute(u, "gone", AttrUpdate::Remove);
        let p = s.get(u).unwrap();
        assert_eq!(p.attributes()["n"], AttrValue::Num(5.0));
        assert_eq!(
            p.attributes()["tags"],
            AttrValue::Array(vec!["b".into(), "c".into()])
        );
        assert!(!p.attributes().contains_key("gone"));
    }

    /// The edit as it was written before it was made linear: the order
    /// semantics every caller relies on.
    fn edit_array_reference(
        mut items: Vec<CompactString>,
        add: &[CompactString],
        remove: &[CompactString],
    ) -> Vec<CompactString> {
        for a in add {
            if !items.contains(a) {
                items.push(a.clone());
            }
        }
        items.retain(|i| !remove.contains(i));
        items
    }

    proptest::proptest! {
        #[test]
        fn edit_array_keeps_the_quadratic_versions_order(
            items in proptest::collection::vec("[a-e]", 0..12),
            add in proptest::collection::vec("[a-g]", 0..12),
            remove in proptest::collection::vec("[a-g]", 0..6),
        ) {
            let cs = |v: Vec<String>| -> Vec<CompactString> {
                v.into_iter().map(CompactString::from).collect()
            };
            let (items, add, remove) = (cs(items), cs(add), cs(remove));
            proptest::prop_assert_eq!(
                edit_array(items.clone(), &add, &remove),
                edit_array_reference(items, &add, &remove)
            );
        }
    }

    #[test]
    fn a_large_array_edit_is_correct_and_ordered() {
        let items: Vec<CompactString> = (0..50_000).map(|i| format!("i{i}").into()).collect();
        let add: Vec<CompactString> = (25_000..75_000).map(|i| format!("i{i}").into()).collect();
        let remove: Vec<CompactString> = (0..50_000)
            .filter(|i| i % 2 == 0)
            .map(|i| format!("i{i}").into())
            .collect();
        let out = edit_array(items, &add, &remove);
        let expected: Vec<CompactString> = (0..75_000)
            .filter(|i| *i >= 50_000 || i % 2 == 1)
            .map(|i| format!("i{i}").into())
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn an_image_restores_profiles_and_lookups() {
        let mut s = ProfileStore::new();
        s.upsert_external("u1", true);
        s.upsert_device("d1");
        let gone = s.upsert_external("gone", true).unwrap();
        s.delete(gone);
        let image = s.image();
        let copied = ProfileImage::from_profiles(
            image.id_bound(),
            image.iter().map(|(uid, p)| (uid, p.clone())),
        )
        .unwrap();
        let back = ProfileStore::from_image(copied);
        assert_eq!(back.resolve(&ext("u1")), Some(0));
        assert_eq!(back.resolve(&dev("d1")), Some(1));
        assert_eq!(back.resolve(&ext("gone")), None);
        assert_eq!(
            back.id_bound(),
            3,
            "ids are never reused, even after a restore"
        );
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn an_image_is_not_changed_by_later_writes() {
        let mut s = ProfileStore::new();
        let u = s.upsert_external("u1", true).unwrap();
        let image = s.image();
        s.record_event(u, "e", 1);
        s.upsert_external("u2", true);
        let back = ProfileStore::from_image(image);
        assert!(back.get(u).unwrap().events().is_empty());
        assert_eq!(back.len(), 1);
    }
}
