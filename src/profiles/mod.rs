//! The profile store of one workspace: profiles by dense id, the identifier
//! indexes, and every rule about identifiers — which profile an identifier
//! matches (cohort import never creates one), how identify merges, what
//! delete removes.
//!
//! `ProfileStore` is plain data with no locking: the engine keeps one per
//! workspace behind a `RwLock`, written only by that workspace's lane (the
//! single sequencer of its mutations, `engine::lane`) and read by queries. Keeping the three indexes and
//! the table under one lock means a reader never sees an alias in two
//! profiles halfway through a merge.
//!
//! Every attribute and event value is also filed in the column index
//! (`columns`), kept in step here by each method that changes a profile.
//!
//! Filter evaluation does not read under that lock: it takes a
//! `ProfileView` (the table's chunks, the live set and the column index,
//! all shared copy-on-write) and lets the lock go.
//!
//! The per-profile limits (`attributes_per_profile`, `array_items`) are
//! checked here, against the profile as it is when a write applies
//! (`check_attribute_changes`, and the merge check of identify).
//!
//! Cohort membership is not here: it belongs to the cohort actors. Operations
//! that move or end a profile (merge, delete) return what happened so that
//! the router can tell the cohorts.

pub mod columns;
pub mod commands;
mod index;
mod packed;
mod profile;
mod table;

pub mod paths;
pub use columns::Columns;
pub use packed::{Attrs, Events};
pub use profile::{AttrObject, AttrValue, Details, EventStats, Profile, EMAIL, PHONE};
pub use table::Table;

use std::sync::Arc;

use compact_str::CompactString;
use foldhash::fast::RandomState;
use roaring::RoaringBitmap;

use crate::config::LimitsConfig;
use crate::limits::{Exceeded, Limit};
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
    /// The merge would leave the identified profile over a limit.
    #[error("{0}")]
    Limit(Exceeded),
}

/// A point-in-time image of a `ProfileStore`: what a snapshot stores. The
/// identifier indexes are rebuilt from it; the column index is kept in it
/// (from format 7), or rebuilt when an older snapshot did not store it.
#[derive(Clone, Debug, Default)]
pub struct ProfileImage {
    table: Table,
    live: RoaringBitmap,
    /// `(id, n)` for each profile holding an email or phone: the larger
    /// `n`, the more recently it was updated (see `ProfileStore::touch`).
    recency: Vec<(Uid, u64)>,
    /// The column index of exactly these profiles, if the image has it.
    columns: Option<Columns>,
}

impl ProfileImage {
    /// The image of `profiles` (ascending ids below `id_bound`).
    pub fn from_profiles(
        id_bound: Uid,
        profiles: impl IntoIterator<Item = (Uid, Profile)>,
    ) -> Result<ProfileImage, String> {
        let mut b = ProfileImage::builder(id_bound);
        for (uid, p) in profiles {
            b.push(uid, p)?;
        }
        b.finish()
    }

    /// Builds an image one profile at a time (a snapshot being decoded).
    pub fn builder(id_bound: Uid) -> ProfileImageBuilder {
        ProfileImageBuilder {
            id_bound,
            table: Table::default(),
            live: RoaringBitmap::new(),
        }
    }

    /// Every profile with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (Uid, &Profile)> {
        self.table.iter()
    }

    /// One past the highest id ever given out.
    pub fn id_bound(&self) -> Uid {
        self.table.len()
    }

    /// How recently each profile holding an email or phone was updated,
    /// ascending ids.
    pub fn recency(&self) -> &[(Uid, u64)] {
        &self.recency
    }

    /// The image with `recency` (as a snapshot stored it).
    pub fn with_recency(mut self, recency: Vec<(Uid, u64)>) -> ProfileImage {
        self.recency = recency;
        self
    }

    /// The column index of these profiles, if the image has it.
    pub fn columns(&self) -> Option<&Columns> {
        self.columns.as_ref()
    }

    /// The image with the column index a snapshot stored, which must hold
    /// live profiles only (the rest was checked as it loaded).
    pub fn with_columns(mut self, columns: Columns) -> Result<ProfileImage, String> {
        columns.check_live(&self.live)?;
        self.columns = Some(columns);
        Ok(self)
    }

    /// The image without its column index: what a snapshot older than
    /// format 7 gives, whose loading rebuilds the index.
    pub fn without_columns(mut self) -> ProfileImage {
        self.columns = None;
        self
    }

    /// The live profiles.
    pub fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    /// Makes ids below `bound` count as given out (a restore keeps the
    /// ids given out since the snapshot from being given again).
    pub fn keep_ids_below(&mut self, bound: Uid) {
        self.table.extend_to(bound);
    }

    /// Live profiles in the image.
    pub fn len(&self) -> u64 {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// See [`ProfileImage::builder`].
pub struct ProfileImageBuilder {
    id_bound: Uid,
    table: Table,
    live: RoaringBitmap,
}

impl ProfileImageBuilder {
    /// Adds the profile with id `uid`: ids ascend and stay below the bound.
    pub fn push(&mut self, uid: Uid, p: Profile) -> Result<(), String> {
        if uid >= self.id_bound {
            return Err(format!(
                "profile id {uid} is not below the id bound {}",
                self.id_bound
            ));
        }
        self.table.put(uid, p)?;
        // `insert`, not `push`: roaring 0.10's `push` finds the maximum of a
        // dense container by scanning it, which made loading a snapshot
        // quadratic per container (callgrind: 45 % of decoding).
        self.live.insert(uid);
        Ok(())
    }

    pub fn finish(mut self) -> Result<ProfileImage, String> {
        self.table.extend_to(self.id_bound);
        Ok(ProfileImage {
            table: self.table,
            live: self.live,
            recency: Vec::new(),
            columns: None,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct ProfileStore {
    /// Indexed by `Uid`; `None` for a deleted or merged-away profile (ids are
    /// never reused).
    table: Table,
    /// The live profiles: the universe that `not` is taken against. Shared
    /// copy-on-write with read views (`view`).
    live: Arc<RoaringBitmap>,
    by_external: index::ExternalIndex,
    by_alias: Map<Alias, Uid>,
    by_device: Map<CompactString, Uid>,
    /// Lowercased email → the profiles whose `email` attribute is that
    /// address (rebuilt from the attributes at load).
    by_email: Map<CompactString, Vec<Uid>>,
    /// E.164 phone → the profiles whose `phone` attribute is that number.
    by_phone: Map<CompactString, Vec<Uid>>,
    /// How recently each profile holding an email or phone was updated:
    /// a lookup by email or phone finds the holder with the largest value
    /// (then the largest id). Kept in images.
    recency: Map<Uid, u64>,
    /// The last value given out in `recency`.
    seq: u64,
    /// Attribute and event values → profiles, kept in step with the table
    /// by every method here that changes a profile (rebuilt at load).
    columns: Columns,
}

impl ProfileStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the indexes from the table (after loading a snapshot, which
    /// stores only the table, or one of format 7 that stores the column
    /// index too: then `columns` is it, and only the identifiers are
    /// indexed here).
    fn reindex(&mut self, columns: Option<Columns>) {
        self.by_external = index::ExternalIndex::with_capacity(self.live.len() as usize);
        self.by_alias.clear();
        self.by_device.clear();
        self.by_email.clear();
        self.by_phone.clear();
        // Unless the image has it, the column index is built in parts on
        // as many threads as there are cores, this one included (loading
        // is all the process does).
        let stored = columns.is_some();
        let parts = if stored {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        };
        let mut building = columns::ColumnsBuilder::part(0, parts);
        let table = &self.table;
        let others: Vec<_> = (1..parts)
            .map(|i| {
                let table = table.clone();
                std::thread::spawn(move || {
                    let mut b = columns::ColumnsBuilder::part(i, parts);
                    for (uid, p) in table.iter() {
                        b.add(uid, p.attributes(), p.events());
                    }
                    b.finish()
                })
            })
            .collect();
        let mut contacts = Vec::new();
        for (uid, p) in self.table.iter() {
            if !stored {
                building.add(uid, p.attributes(), p.events());
            }
            if p.contact(EMAIL).is_some() || p.contact(PHONE).is_some() {
                contacts.push(uid);
            }
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
        self.columns = match columns {
            Some(columns) => columns,
            None => {
                let mut built = vec![building.finish()];
                built.extend(
                    others
                        .into_iter()
                        .map(|h| h.join().expect("a column builder thread")),
                );
                Columns::merge(built)
            }
        };
        for uid in contacts {
            self.index_contacts(uid);
        }
        self.seq = self.recency.values().copied().max().unwrap_or(0);
    }

    /// A point-in-time image of the profiles for a snapshot, in
    /// O(number of chunks): the table's chunks and the column index are
    /// shared copy-on-write; the identifier indexes are not part of it
    /// (`from_image` rebuilds them).
    pub fn image(&self) -> ProfileImage {
        let mut recency: Vec<(Uid, u64)> = self.recency.iter().map(|(u, n)| (*u, *n)).collect();
        recency.sort_unstable();
        ProfileImage {
            table: self.table.clone(),
            live: (*self.live).clone(),
            recency,
            columns: Some(self.columns.clone()),
        }
    }

    /// What filter evaluation and member pages read (profiles by id and the
    /// live set), detached from the store in O(number of chunks): a long
    /// evaluation holds no lock, so the router never waits for it. Writes
    /// after it copy the chunks they touch (copy-on-write), and the view
    /// keeps answering as of the moment it was taken.
    pub fn view(&self) -> ProfileView {
        ProfileView {
            table: self.table.clone(),
            live: self.live.clone(),
            columns: self.columns.clone(),
        }
    }

    /// The store an image describes, with its indexes rebuilt.
    pub fn from_image(image: ProfileImage) -> ProfileStore {
        let mut store = ProfileStore {
            recency: image
                .recency
                .into_iter()
                .filter(|(uid, _)| image.live.contains(*uid))
                .collect(),
            table: image.table,
            live: Arc::new(image.live),
            ..Default::default()
        };
        store.reindex(image.columns);
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

    /// The attribute and event index.
    pub fn columns(&self) -> &Columns {
        &self.columns
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
            // Never for cohort import or membership checks (SPEC).
            Identifier::Email(_) | Identifier::Phone(_) | Identifier::BrazeId(_) => None,
        }
    }

    /// The most recently updated profile whose email is `email` (any case).
    pub fn by_email(&self, email: &str) -> Option<Uid> {
        self.most_recent(self.by_email.get(&crate::model::email_key(email))?)
    }

    /// The most recently updated profile whose phone is `phone`.
    pub fn by_phone(&self, phone: &str) -> Option<Uid> {
        self.most_recent(self.by_phone.get(phone)?)
    }

    /// Every profile `id` names, as delete and the users export address
    /// them: `resolve`'s one profile, every holder of an email or phone,
    /// and the live profile a braze_id names.
    pub fn named(&self, id: &Identifier) -> Vec<Uid> {
        match id {
            Identifier::BrazeId(uid) => self.get(*uid).map(|_| *uid).into_iter().collect(),
            Identifier::Email(_) | Identifier::Phone(_) => self.holders(id),
            other => self.resolve(other).into_iter().collect(),
        }
    }

    /// Every profile holding the email (any case) or phone `id` names.
    pub fn holders(&self, id: &Identifier) -> Vec<Uid> {
        let list = match id {
            Identifier::Email(e) => self.by_email.get(&crate::model::email_key(e)),
            Identifier::Phone(p) => self.by_phone.get(p.as_str()),
            _ => None,
        };
        list.cloned().unwrap_or_default()
    }

    fn most_recent(&self, holders: &[Uid]) -> Option<Uid> {
        holders
            .iter()
            .copied()
            .max_by_key(|u| (self.recency.get(u).copied().unwrap_or(0), *u))
    }

    /// Records that `uid` was just updated: a profile holding an email or
    /// phone becomes the most recently updated holder of it.
    pub fn touch(&mut self, uid: Uid) {
        let holds = self
            .get(uid)
            .is_some_and(|p| p.contact(EMAIL).is_some() || p.contact(PHONE).is_some());
        if holds {
            self.seq += 1;
            self.recency.insert(uid, self.seq);
        } else {
            self.recency.remove(&uid);
        }
    }

    fn index_contacts(&mut self, uid: Uid) {
        let Some(p) = self.table.get(uid) else {
            return;
        };
        let email = p.contact(EMAIL).map(|e| crate::model::email_key(&e));
        let phone = p.contact(PHONE);
        if let Some(e) = email {
            let list = self.by_email.entry(e).or_default();
            if !list.contains(&uid) {
                list.push(uid);
            }
        }
        if let Some(ph) = phone {
            let list = self.by_phone.entry(ph).or_default();
            if !list.contains(&uid) {
                list.push(uid);
            }
        }
    }

    fn unindex_contacts(&mut self, uid: Uid) {
        let Some(p) = self.table.get(uid) else {
            return;
        };
        let email = p.contact(EMAIL).map(|e| crate::model::email_key(&e));
        let phone = p.contact(PHONE);
        fn drop_from(index: &mut Map<CompactString, Vec<Uid>>, key: CompactString, uid: Uid) {
            if let Some(list) = index.get_mut(&key) {
                list.retain(|u| *u != uid);
                if list.is_empty() {
                    index.remove(&key);
                }
            }
        }
        if let Some(e) = email {
            drop_from(&mut self.by_email, e, uid);
        }
        if let Some(ph) = phone {
            drop_from(&mut self.by_phone, ph, uid);
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
        self.columns.add_profile(uid, p.attributes(), p.events());
        if let Some(e) = &p.external_id {
            self.by_external.insert(e, uid, &self.table);
        }
        for a in p.aliases() {
            self.by_alias.insert(a.clone(), uid);
        }
        for d in p.devices() {
            self.by_device.insert(d.clone(), uid);
        }
        Arc::make_mut(&mut self.live).insert(uid);
        self.index_contacts(uid);
        uid
    }

    /// A new profile holding only the email or phone `contact` (an email-only
    /// or phone-only profile, anonymous).
    pub fn insert_contact(&mut self, contact: &Identifier) -> Uid {
        let (name, value) = match contact {
            Identifier::Email(e) => (EMAIL, e),
            Identifier::Phone(p) => (PHONE, p),
            other => unreachable!("not a contact: {other:?}"),
        };
        let mut p = Profile::default();
        p.details_mut()
            .attributes
            .insert(name, AttrValue::Str(value.clone()));
        let uid = self.insert(p);
        self.touch(uid);
        uid
    }

    /// The anonymous profile `holder` takes `external_id` (nobody holds it).
    pub fn become_identified(&mut self, holder: Uid, external_id: &str) {
        self.profile_mut(holder).external_id = Some(external_id.into());
        self.by_external.insert(external_id, holder, &self.table);
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
        self.update_attributes(uid, &[(name.into(), update)]);
    }

    /// Applies `changes` to profile `uid` in order (one `/users/track`
    /// attributes object): the packed attributes are decoded and encoded
    /// once, and each attribute touched is refiled in the columns once,
    /// from the value it had before the first change to the one it has
    /// after the last.
    pub fn update_attributes(&mut self, uid: Uid, changes: &[(CompactString, AttrUpdate)]) {
        let contact = changes
            .iter()
            .any(|(name, _)| name == EMAIL || name == PHONE);
        if contact {
            self.unindex_contacts(uid);
        }
        let mut before: Vec<(&str, Option<AttrValue>)> = Vec::with_capacity(changes.len());
        let packed = &mut self.profile_mut(uid).details_mut().attributes;
        let mut now = packed.to_map();
        for (name, update) in changes {
            let old = change_attribute(&mut now, name, update);
            if !before.iter().any(|(n, _)| *n == name.as_str()) {
                before.push((name, old));
            }
        }
        *packed = Attrs::from_map(&now);
        for (name, old) in &before {
            self.columns
                .attribute_changed(uid, name, old.as_ref(), &now);
        }
        if contact {
            self.index_contacts(uid);
        }
    }

    pub fn record_event(&mut self, uid: Uid, name: &str, at: Millis) {
        let events = &mut self.profile_mut(uid).details_mut().events;
        let old = events.get(name);
        let mut new = old.unwrap_or(EventStats {
            count: 0,
            first: at,
            last: at,
        });
        new.record(at);
        events.set(name, new);
        self.columns
            .event_changed(uid, name, old.as_ref(), Some(&new));
    }

    /// `/users/identify` for an alias: the alias-only profile becomes, or merges
    /// into, the identified profile with `external_id`. An alias nobody holds
    /// is added to that profile (created if needed).
    pub fn identify_alias(
        &mut self,
        external_id: &str,
        alias: &Alias,
        limits: &LimitsConfig,
    ) -> Result<Identified, IdentifyError> {
        let target = self.by_external(external_id);
        match self.by_alias(alias) {
            Some(holder) if Some(holder) == target => Ok(Identified::Unchanged(holder)),
            Some(holder) => {
                if !self.profile_mut(holder).is_anonymous() {
                    return Err(IdentifyError::AliasHeldByIdentified);
                }
                self.check_merge(holder, target, limits)?;
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
        limits: &LimitsConfig,
    ) -> Result<Identified, IdentifyError> {
        let target = self.by_external(external_id);
        match self.by_device(device) {
            Some(holder) if Some(holder) == target => Ok(Identified::Unchanged(holder)),
            Some(holder) if self.profile_mut(holder).is_anonymous() => {
                self.check_merge(holder, target, limits)?;
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
                self.become_identified(holder, external_id);
                Identified::Became(holder)
            }
            Some(into) => {
                self.merge(holder, into);
                Identified::Merged { from: holder, into }
            }
        }
    }

    /// A merge of `holder` into `target` (if any) that would leave the
    /// identified profile with more attributes than the limit (and more
    /// than it has) is refused: merges union attributes, so repeated ones
    /// could otherwise grow a profile past any bound.
    fn check_merge(
        &self,
        holder: Uid,
        target: Option<Uid>,
        limits: &LimitsConfig,
    ) -> Result<(), IdentifyError> {
        let (Some(into), Some(from)) = (target.and_then(|t| self.get(t)), self.get(holder)) else {
            return Ok(());
        };
        let mine: Set<&str> = into.attributes().keys().collect();
        let after = mine.len()
            + from
                .attributes()
                .keys()
                .filter(|k| !mine.contains(k))
                .count();
        if after > limits.attributes_per_profile && after > mine.len() {
            return Err(IdentifyError::Limit(Exceeded::new(
                Limit::AttributesPerProfile,
                limits.attributes_per_profile,
                after,
                "the merged profile",
            )));
        }
        Ok(())
    }

    /// Whether applying `changes` (one `/users/track` attributes object, in
    /// order) to profile `uid` — `None`: a profile about to be created —
    /// keeps it within the limits: at most `attributes_per_profile`
    /// attributes, and each array it edits at most `array_items` items.
    /// A change that does not grow a count past its limit is always
    /// allowed, so a profile already over a lowered limit can still be
    /// updated and shrunk. Reads only the attributes the changes touch.
    pub fn check_attribute_changes(
        &self,
        uid: Option<Uid>,
        changes: &[(CompactString, AttrUpdate)],
        limits: &LimitsConfig,
    ) -> Result<(), Exceeded> {
        /// A touched attribute after the changes so far.
        enum After {
            Gone,
            Array(Vec<CompactString>),
            Other,
        }
        let empty = Attrs::default();
        let attrs = uid
            .and_then(|u| self.get(u))
            .map_or(&empty, |p| p.attributes());
        let mut touched: Map<&str, After> = Map::default();
        for (name, change) in changes {
            let after = match change {
                AttrUpdate::Remove => After::Gone,
                AttrUpdate::Set(AttrValue::Array(items)) => After::Array(items.clone()),
                AttrUpdate::Set(_) | AttrUpdate::Increment(_) => After::Other,
                AttrUpdate::ArrayEdit { add, remove } => {
                    let current = match touched.remove(name.as_str()) {
                        Some(After::Array(items)) => items,
                        Some(_) => Vec::new(),
                        None => match attrs.get(name.as_str()) {
                            Some(AttrValue::Array(items)) => items,
                            _ => Vec::new(),
                        },
                    };
                    let before = current.len();
                    let edited = edit_array(current, add, remove);
                    if edited.len() > limits.array_items && edited.len() > before {
                        return Err(Exceeded::new(
                            Limit::ArrayItems,
                            limits.array_items,
                            edited.len(),
                            format!("array attribute {} after this edit", quoted(name)),
                        ));
                    }
                    After::Array(edited)
                }
            };
            touched.insert(name.as_str(), after);
        }
        let held = attrs.len();
        let mut count = held;
        for (name, after) in &touched {
            match (attrs.contains_key(name), after) {
                (true, After::Gone) => count -= 1,
                (false, After::Array(_) | After::Other) => count += 1,
                _ => {}
            }
        }
        if count > limits.attributes_per_profile && count > held {
            return Err(Exceeded::new(
                Limit::AttributesPerProfile,
                limits.attributes_per_profile,
                count,
                "the profile after this object",
            ));
        }
        Ok(())
    }

    /// Folds profile `from` into `into` and ends `from`.
    fn merge(&mut self, from: Uid, into: Uid) {
        self.unindex_contacts(from);
        self.unindex_contacts(into);
        self.recency.remove(&from);
        let gone = self.table.take(from).expect("merge source is live");
        Arc::make_mut(&mut self.live).remove(from);
        // The merged profile's values are rewritten whole.
        self.columns
            .remove_profile(from, gone.attributes(), gone.events());
        let target = self.table.get(into).expect("merge target is live");
        self.columns
            .remove_profile(into, target.attributes(), target.events());
        for a in gone.aliases() {
            self.by_alias.insert(a.clone(), into);
        }
        for d in gone.devices() {
            self.by_device.insert(d.clone(), into);
        }
        self.profile_mut(into).absorb(gone);
        let merged = self.table.get(into).expect("merge target is live");
        self.columns
            .add_profile(into, merged.attributes(), merged.events());
        self.index_contacts(into);
        self.touch(into);
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
        self.unindex_contacts(uid);
        self.recency.remove(&uid);
        let Some(p) = self.table.take(uid) else {
            return false;
        };
        Arc::make_mut(&mut self.live).remove(uid);
        self.columns.remove_profile(uid, p.attributes(), p.events());
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

/// Applies `update` to attribute `name` of `attrs`; returns the value it had.
fn change_attribute(attrs: &mut AttrObject, name: &str, update: &AttrUpdate) -> Option<AttrValue> {
    match update {
        AttrUpdate::Set(v) => attrs.insert(name.into(), v.clone()),
        AttrUpdate::Remove => attrs.remove(name),
        AttrUpdate::Increment(by) => {
            let base = match attrs.get(name) {
                Some(AttrValue::Num(n)) => *n,
                _ => 0.0,
            };
            attrs.insert(name.into(), AttrValue::Num(base + by))
        }
        AttrUpdate::ArrayEdit { add, remove } => {
            let old = attrs.remove(name);
            let items = match &old {
                Some(AttrValue::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            attrs.insert(
                name.into(),
                AttrValue::Array(edit_array(items, add, remove)),
            );
            old
        }
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

/// A name for a message, cut short if long.
fn short(name: &str) -> String {
    if name.chars().count() > 40 {
        let head: String = name.chars().take(40).collect();
        format!("{head}…")
    } else {
        name.to_string()
    }
}

/// [`short`], quoted.
fn quoted(name: &str) -> String {
    format!("{:?}", short(name))
}

/// What evaluation and member pages read of a workspace's profiles: the
/// table and the live set, detached from the store (`ProfileStore::view`).
#[derive(Clone, Debug)]
pub struct ProfileView {
    table: Table,
    live: Arc<RoaringBitmap>,
    columns: Columns,
}

impl ProfileView {
    pub fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    pub fn get(&self, uid: Uid) -> Option<&Profile> {
        self.table.get(uid)
    }

    /// The attribute and event index, as of the view.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// How `uid` is listed in member pages, or `None` if it no longer exists.
    pub fn listed_as(&self, uid: Uid) -> Option<Identifier> {
        self.get(uid).and_then(Profile::listed_as)
    }
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
        assert_eq!(
            s.identify_device("u9", "d1", &LimitsConfig::default()),
            Ok(Identified::Became(anon))
        );
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
            s.identify_device("u1", "d1", &LimitsConfig::default()),
            Ok(Identified::Merged {
                from: anon,
                into: known
            })
        );
        assert!(s.get(anon).is_none());
        assert!(!s.live().contains(anon));
        let p = s.get(known).unwrap();
        assert_eq!(
            p.events().get("open").unwrap(),
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
            s.identify_alias("u1", &al, &LimitsConfig::default()),
            Ok(Identified::Became(alias_only))
        );
        assert_eq!(
            s.identify_alias("u1", &al, &LimitsConfig::default()),
            Ok(Identified::Unchanged(alias_only))
        );
        // Held by an identified profile: another external_id may not take it.
        assert_eq!(
            s.identify_alias("u2", &al, &LimitsConfig::default()),
            Err(IdentifyError::AliasHeldByIdentified)
        );
        let al2 = Alias::new("email", "b@x");
        let other = s.upsert_alias(&al2, true).unwrap();
        assert_eq!(
            s.identify_alias("u1", &al2, &LimitsConfig::default()),
            Ok(Identified::Merged {
                from: other,
                into: alias_only
            })
        );
        assert_eq!(s.resolve(&Identifier::Alias(al2)), Some(alias_only));
        let unknown = Alias::new("phone", "1");
        assert_eq!(
            s.identify_alias("u1", &unknown, &LimitsConfig::default()),
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
        assert_eq!(p.attributes().get("n").unwrap(), AttrValue::Num(5.0));
        assert_eq!(
            p.attributes().get("tags").unwrap(),
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

    /// One step of the random history below.
    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, u8, AttrValue),
        Remove(u8, u8),
        Inc(u8, u8),
        Edit(u8, u8, Vec<CompactString>, Vec<CompactString>),
        Event(u8, u8, Millis),
        Identify(u8, u8),
        Delete(u8),
        /// Several changes in one object (`update_attributes`), names may repeat.
        Batch(u8, Vec<(u8, AttrUpdate)>),
    }

    const NAMES: [&str; 4] = ["a", "b", "a.b", "c"];

    fn value() -> impl proptest::strategy::Strategy<Value = AttrValue> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            "[xy]{0,2}".prop_map(|s| AttrValue::Str(s.into())),
            (-2i32..3).prop_map(|n| AttrValue::Num(f64::from(n) / 2.0)),
            any::<bool>().prop_map(AttrValue::Bool),
            (0i64..4).prop_map(|d| AttrValue::from_text(&format!("2024-01-0{}", d + 1))),
            proptest::collection::vec("[xy]", 0..3)
                .prop_map(|v| AttrValue::Array(v.into_iter().map(Into::into).collect())),
            Just(AttrValue::Location {
                latitude: 1.0,
                longitude: 2.0
            }),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            let obj = proptest::collection::btree_map(
                proptest::sample::select(&["b", "c"][..]).prop_map(CompactString::from),
                inner,
                0..3,
            );
            prop_oneof![
                obj.clone().prop_map(AttrValue::Object),
                proptest::collection::vec(obj, 0..3).prop_map(AttrValue::Objects),
            ]
        })
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let who = 0u8..6;
        let name = 0u8..NAMES.len() as u8;
        prop_oneof![
            4 => (who.clone(), name.clone(), value()).prop_map(|(w, n, v)| Op::Set(w, n, v)),
            1 => (who.clone(), name.clone()).prop_map(|(w, n)| Op::Remove(w, n)),
            1 => (who.clone(), name.clone()).prop_map(|(w, n)| Op::Inc(w, n)),
            1 => (who.clone(), name.clone(), proptest::collection::vec("[xyz]", 0..3), proptest::collection::vec("[xyz]", 0..2))
                .prop_map(|(w, n, a, r)| Op::Edit(w, n, a.into_iter().map(Into::into).collect(), r.into_iter().map(Into::into).collect())),
            2 => (who.clone(), 0u8..2, 0i64..5).prop_map(|(w, e, t)| Op::Event(w, e, t * 1000)),
            1 => (who.clone(), 0u8..6).prop_map(|(w, d)| Op::Identify(w, d)),
            1 => who.clone().prop_map(Op::Delete),
            2 => (who, proptest::collection::vec((name, prop_oneof![
                value().prop_map(AttrUpdate::Set),
                Just(AttrUpdate::Remove),
                Just(AttrUpdate::Increment(1.0)),
                "[xyz]".prop_map(|a| AttrUpdate::ArrayEdit { add: vec![a.into()], remove: vec![] }),
            ]), 1..5)).prop_map(|(w, list)| Op::Batch(w, list)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever happens to profiles (sets, edits, events, merges,
        /// deletes), the column index kept up to date is the one rebuilt
        /// from the profiles, and a view taken midway keeps its triples.
        #[test]
        fn the_columns_kept_up_to_date_are_the_columns_rebuilt(
            ops in proptest::collection::vec(op(), 0..60),
        ) {
            let mut s = ProfileStore::new();
            let limits = LimitsConfig::default();
            let mut midway = None;
            for (i, op) in ops.iter().enumerate() {
                if i == ops.len() / 2 {
                    let view = s.view();
                    midway = Some((view.columns().triples(), view));
                }
                let user = |s: &mut ProfileStore, w: u8| {
                    s.upsert_external(&format!("u{w}"), true).expect("create")
                };
                match op.clone() {
                    Op::Set(w, n, v) => {
                        let uid = user(&mut s, w);
                        s.update_attribute(uid, NAMES[n as usize], AttrUpdate::Set(v));
                    }
                    Op::Remove(w, n) => {
                        let uid = user(&mut s, w);
                        s.update_attribute(uid, NAMES[n as usize], AttrUpdate::Remove);
                    }
                    Op::Inc(w, n) => {
                        let uid = user(&mut s, w);
                        s.update_attribute(uid, NAMES[n as usize], AttrUpdate::Increment(1.0));
                    }
                    Op::Edit(w, n, add, remove) => {
                        let uid = user(&mut s, w);
                        s.update_attribute(uid, NAMES[n as usize], AttrUpdate::ArrayEdit { add, remove });
                    }
                    Op::Event(w, e, at) => {
                        let uid = user(&mut s, w);
                        s.record_event(uid, ["e1", "e2"][e as usize], at);
                    }
                    Op::Identify(w, d) => {
                        // An anonymous device profile with a value logs in.
                        let dev = format!("d{d}");
                        let uid = s.upsert_device(&dev);
                        s.update_attribute(uid, "a", AttrUpdate::Set(AttrValue::Num(f64::from(d))));
                        s.record_event(uid, "e1", i64::from(d));
                        let _ = s.identify_device(&format!("u{w}"), &dev, &limits);
                    }
                    Op::Delete(w) => {
                        if let Some(uid) = s.by_external(&format!("u{w}")) {
                            s.delete(uid);
                        }
                    }
                    Op::Batch(w, list) => {
                        let uid = user(&mut s, w);
                        let mut one_by_one = s.clone();
                        let changes: Vec<(CompactString, AttrUpdate)> = list
                            .into_iter()
                            .map(|(n, u)| (NAMES[n as usize].into(), u))
                            .collect();
                        for (name, u) in &changes {
                            one_by_one.update_attribute(uid, name, u.clone());
                        }
                        s.update_attributes(uid, &changes);
                        proptest::prop_assert_eq!(s.get(uid), one_by_one.get(uid));
                        proptest::prop_assert_eq!(s.columns().triples(), one_by_one.columns().triples());
                    }
                }
            }
            let mut rebuilt = s.clone();
            rebuilt.reindex(None);
            proptest::prop_assert_eq!(s.columns().triples(), rebuilt.columns().triples());
            if let Some((before, view)) = midway {
                proptest::prop_assert_eq!(view.columns().triples(), before);
            }
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

    fn limits(array_items: usize, attributes_per_profile: usize) -> LimitsConfig {
        LimitsConfig {
            array_items,
            attributes_per_profile,
            ..LimitsConfig::default()
        }
    }

    fn set(v: &str) -> AttrUpdate {
        AttrUpdate::Set(AttrValue::Str(v.into()))
    }

    fn edit(add: &[&str], remove: &[&str]) -> AttrUpdate {
        AttrUpdate::ArrayEdit {
            add: add.iter().map(|s| CompactString::from(*s)).collect(),
            remove: remove.iter().map(|s| CompactString::from(*s)).collect(),
        }
    }

    fn changes(list: &[(&str, AttrUpdate)]) -> Vec<(CompactString, AttrUpdate)> {
        list.iter().map(|(n, c)| ((*n).into(), c.clone())).collect()
    }

    #[test]
    fn attribute_count_after_an_object_is_what_is_checked() {
        let mut s = ProfileStore::new();
        let u = s.upsert_external("u", true).unwrap();
        for n in ["a", "b"] {
            s.update_attribute(u, n, set("x"));
        }
        let l = limits(10, 3);
        let check = |s: &ProfileStore, uid, list: &[(&str, AttrUpdate)]| {
            s.check_attribute_changes(uid, &changes(list), &l)
        };
        // Updating existing ones, adding up to the limit: fine.
        assert!(check(&s, Some(u), &[("a", set("y")), ("c", set("z"))]).is_ok());
        // One more is over; removing one in the same object makes room.
        let e = check(&s, Some(u), &[("c", set("z")), ("d", set("z"))]).unwrap_err();
        assert_eq!((e.limit, e.got, e.max), (Limit::AttributesPerProfile, 4, 3));
        assert!(check(
            &s,
            Some(u),
            &[("c", set("z")), ("d", set("z")), ("a", AttrUpdate::Remove)]
        )
        .is_ok());
        // Removing one that is not there makes no room.
        assert!(check(
            &s,
            Some(u),
            &[("c", set("z")), ("d", set("z")), ("q", AttrUpdate::Remove)]
        )
        .is_err());
        // A new profile starts empty.
        assert!(check(
            &s,
            None,
            &[("a", set("1")), ("b", set("1")), ("c", set("1"))]
        )
        .is_ok());
        assert!(check(
            &s,
            None,
            &[
                ("a", set("1")),
                ("b", set("1")),
                ("c", set("1")),
                ("d", set("1"))
            ]
        )
        .is_err());
    }

    #[test]
    fn array_length_after_an_edit_is_what_is_checked() {
        let mut s = ProfileStore::new();
        let u = s.upsert_external("u", true).unwrap();
        s.update_attribute(u, "tags", edit(&["a", "b"], &[]));
        let l = limits(3, 10);
        let check =
            |list: &[(&str, AttrUpdate)]| s.check_attribute_changes(Some(u), &changes(list), &l);
        assert!(check(&[("tags", edit(&["c", "a", "b"], &[]))]).is_ok());
        let e = check(&[("tags", edit(&["c", "d"], &[]))]).unwrap_err();
        assert_eq!((e.limit, e.got, e.max), (Limit::ArrayItems, 4, 3));
        assert!(e.to_string().contains("\"tags\""), "{e}");
        assert!(check(&[("tags", edit(&["c", "d"], &["a"]))]).is_ok());
        // A whole-array set replaces: its length alone counts (and the
        // request check holds it to the limit).
        assert!(check(&[(
            "tags",
            AttrUpdate::Set(AttrValue::Array(vec!["x".into(); 3]))
        )])
        .is_ok());
    }

    #[test]
    fn a_profile_over_a_lowered_limit_can_still_be_changed_and_shrunk() {
        let mut s = ProfileStore::new();
        let u = s.upsert_external("u", true).unwrap();
        for n in ["a", "b", "c"] {
            s.update_attribute(u, n, set("x"));
        }
        s.update_attribute(u, "tags", edit(&["1", "2", "3", "4"], &[]));
        let l = limits(2, 2);
        let check =
            |list: &[(&str, AttrUpdate)]| s.check_attribute_changes(Some(u), &changes(list), &l);
        assert!(check(&[("a", set("y"))]).is_ok(), "no growth");
        assert!(check(&[("tags", edit(&["1"], &["2"]))]).is_ok(), "shrinks");
        assert!(check(&[("d", set("y"))]).is_err(), "grows");
        assert!(check(&[("tags", edit(&["5"], &[]))]).is_err(), "grows");
    }

    #[test]
    fn a_merge_over_the_attribute_limit_is_refused_and_changes_nothing() {
        let mut s = ProfileStore::new();
        let u1 = s.upsert_external("u1", true).unwrap();
        s.update_attribute(u1, "a", set("1"));
        s.update_attribute(u1, "b", set("1"));
        let al = Alias::new("e", "x");
        let anon = s.upsert_alias(&al, true).unwrap();
        s.update_attribute(anon, "b", set("2"));
        s.update_attribute(anon, "c", set("2"));
        let e = s
            .identify_alias("u1", &al, &limits(10, 2))
            .expect_err("a, b and c make three");
        assert!(
            matches!(e, IdentifyError::Limit(ref x) if x.got == 3),
            "{e:?}"
        );
        assert!(s.get(anon).is_some(), "nothing merged");
        assert_eq!(s.resolve(&Identifier::Alias(al.clone())), Some(anon));
        assert_eq!(
            s.identify_alias("u1", &al, &limits(10, 3)),
            Ok(Identified::Merged {
                from: anon,
                into: u1
            })
        );
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

    fn email(s: &str) -> AttrUpdate {
        AttrUpdate::Set(AttrValue::Str(s.into()))
    }

    #[test]
    fn the_email_index_follows_sets_changes_removals_merges_and_deletes() {
        let mut s = ProfileStore::new();
        let l = LimitsConfig::default();
        let known = s.upsert_external("u1", true).unwrap();
        let anon = s.upsert_device("d1");
        s.update_attribute(anon, EMAIL, email("A@x.io"));
        s.touch(anon);
        assert_eq!(s.by_email("a@X.IO"), Some(anon));
        assert_eq!(
            s.resolve(&Identifier::Email("a@x.io".into())),
            None,
            "not for cohorts"
        );
        // A merge: the identified side had no email, so it takes the other's.
        assert_eq!(
            s.identify_device("u1", "d1", &l),
            Ok(Identified::Merged {
                from: anon,
                into: known
            })
        );
        assert_eq!(s.by_email("a@x.io"), Some(known));
        assert_eq!(s.holders(&Identifier::Email("A@X.IO".into())), vec![known]);
        // Changing, then removing it.
        s.update_attribute(known, EMAIL, email("b@x.io"));
        assert_eq!(
            (s.by_email("a@x.io"), s.by_email("b@x.io")),
            (None, Some(known))
        );
        s.update_attribute(known, EMAIL, AttrUpdate::Increment(1.0));
        assert_eq!(s.by_email("b@x.io"), None, "a number is not an email");
        s.update_attribute(known, EMAIL, email("b@x.io"));
        s.update_attribute(known, EMAIL, AttrUpdate::Remove);
        assert_eq!(s.by_email("b@x.io"), None);
        // Phones: E.164 only; a delete frees it.
        s.update_attribute(known, PHONE, email("+4790000000"));
        assert_eq!(s.by_phone("+4790000000"), Some(known));
        s.update_attribute(known, PHONE, email("555 1234"));
        assert_eq!(s.by_phone("555 1234"), None);
        let p = s.insert_contact(&Identifier::Phone("+4790000001".into()));
        assert_eq!(s.by_phone("+4790000001"), Some(p));
        assert_eq!(
            s.get(p).unwrap().listed_as(),
            Some(Identifier::Phone("+4790000001".into()))
        );
        assert!(s.delete(p));
        assert_eq!(s.by_phone("+4790000001"), None);
        // The image keeps who was updated last; the index comes back.
        let a = s.insert_contact(&Identifier::Email("c@x.io".into()));
        s.update_attribute(known, EMAIL, email("C@x.io"));
        s.touch(known);
        assert_eq!(s.by_email("c@x.io"), Some(known));
        s.touch(a);
        let back = ProfileStore::from_image(s.image());
        assert_eq!(back.by_email("c@x.io"), Some(a));
        assert_eq!(back.holders(&Identifier::Email("c@x.io".into())).len(), 2);
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
