//! The change feed (issue 12; SPEC §10): what each workspace's writes did,
//! as Currents-style events, in log order, durable, kept for a bounded
//! size and age.
//!
//! This module owns the events' shapes ([`Event`]: stored compactly, its
//! own part and its `properties` (`persist::feed`, version 2), and
//! rendered as the JSON served when read) and the workspaces' feeds
//! ([`Feeds`]).
//! As each command applies, in log order (live or replayed), the engine's
//! `apply` takes its place in its workspace's feed ([`Feed::reserve`],
//! with the command's log position) and fills it with the command's
//! events, there or from the actor that makes them (a cohort delta's, once
//! its actor knows which memberships changed); events are written in log
//! order whatever order commands finish in. A position the feed already
//! covers is skipped, so replaying the log after a crash makes exactly
//! the events that were not yet on disk, with the same ids and seqs
//! (`persist::feed`).
//!
//! What makes events: partner deltas (`users.cohorts.Entered` /
//! `Exited`), `/users/track` (`users.behaviors.CustomEvent` and
//! `Purchase`, at the event's own time), `/users/identify` merges
//! (`users.UserOrphan`, then the cohort memberships the merge moved) and
//! `/users/delete` (`users.UserDeleteRequest`, then the memberships the
//! delete ended), and saved segments (`users.segments.Entered` /
//! `Exited`, from `engine::tracking`, after the rest of the command's).
//! Log records written before format version 8 carry no time for these
//! and make none of them on replay.
//!
//! Ids are stable: a UUID-shaped rendering of (workspace, log position,
//! index within the command), so the same write always has the same
//! event ids, whoever reads them and however often. Times are the
//! command's time (a tracked event's own), in whole seconds.
//!
//! A restore does not touch the feed: it is a record of what happened,
//! and a restore is one more thing that happened (it makes no events;
//! events of later writes continue from the next seq).
//!
//! Consumers must tolerate fields they do not know: new ones may appear in
//! events and in `properties`, as Braze says of Currents.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use compact_str::CompactString;
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::model::{BrazeId, CohortKey, Millis, Uid, WorkspaceId};
use crate::persist::feed::{FeedOptions, FeedStore, NewEvent, Read, Stored};
use crate::persist::Result;
use crate::varint::{self, put_str, put_varint, unzigzag, zigzag};

/// The event types, with their codes on disk (`persist::feed`'s `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    CustomEvent = 0,
    Purchase = 1,
    UserOrphan = 2,
    UserDeleteRequest = 3,
    CohortEntered = 4,
    CohortExited = 5,
    SegmentEntered = 6,
    SegmentExited = 7,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::CustomEvent,
        EventType::Purchase,
        EventType::UserOrphan,
        EventType::UserDeleteRequest,
        EventType::CohortEntered,
        EventType::CohortExited,
        EventType::SegmentEntered,
        EventType::SegmentExited,
    ];

    /// The name consumers see (`event_type`).
    pub fn name(self) -> &'static str {
        match self {
            EventType::CustomEvent => "users.behaviors.CustomEvent",
            EventType::Purchase => "users.behaviors.Purchase",
            EventType::UserOrphan => "users.UserOrphan",
            EventType::UserDeleteRequest => "users.UserDeleteRequest",
            EventType::CohortEntered => "users.cohorts.Entered",
            EventType::CohortExited => "users.cohorts.Exited",
            EventType::SegmentEntered => "users.segments.Entered",
            EventType::SegmentExited => "users.segments.Exited",
        }
    }

    pub fn from_name(name: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Its code on disk (the feed's records, connectors in the log).
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<EventType> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// Who an event is about, as of the command that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub uid: Uid,
    pub external_id: Option<CompactString>,
    pub device_id: Option<CompactString>,
}

/// One event, before it has its place in the feed.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_type: EventType,
    pub user: User,
    /// The type's `properties`: a JSON object, rendered once and shared
    /// by every event of a command that has the same ([`properties`]).
    pub properties: Arc<str>,
    /// When it happened, if not when its command was accepted (a tracked
    /// event's or purchase's own `time`).
    pub time: Option<Millis>,
}

impl Event {
    /// An event at its command's time.
    pub fn new(event_type: EventType, user: User, properties: Arc<str>) -> Event {
        Event {
            event_type,
            user,
            properties,
            time: None,
        }
    }
}

/// `properties` rendered for [`Event`].
pub fn properties(map: &Map<String, Value>) -> Arc<str> {
    serde_json::to_string(map)
        .expect("a JSON map renders")
        .into()
}

/// A custom event's `properties`: its `name` and the object's own
/// `properties` as `custom_properties` (`{}` when it had none).
pub fn custom_event_properties(name: &str, custom: Option<&str>) -> Arc<str> {
    let mut out = String::with_capacity(40 + name.len() + custom.map_or(2, str::len));
    out.push_str("{\"name\":");
    out.push_str(&Value::from(name).to_string());
    out.push_str(",\"custom_properties\":");
    out.push_str(custom.unwrap_or("{}"));
    out.push('}');
    out.into()
}

/// A purchase's `properties`: `product_id`, `currency` and `price` (each
/// left out when the purchase had none) and its own `properties` as
/// `purchase_properties` (`{}` when it had none).
pub fn purchase_properties(
    product_id: &str,
    currency: Option<&str>,
    price: Option<f64>,
    custom: Option<&str>,
) -> Arc<str> {
    let mut map = Map::new();
    map.insert("product_id".into(), product_id.into());
    if let Some(c) = currency {
        map.insert("currency".into(), c.into());
    }
    if let Some(p) = price {
        map.insert("price".into(), p.into());
    }
    let mut out = serde_json::to_string(&map).expect("a JSON map renders");
    out.pop();
    out.push_str(",\"purchase_properties\":");
    out.push_str(custom.unwrap_or("{}"));
    out.push('}');
    out.into()
}

/// `users.UserOrphan`'s `properties`: the braze_id it was merged into.
pub fn orphan_properties(ws: WorkspaceId, into: Uid) -> Arc<str> {
    let mut out = b"{\"orphaned_by_id\":\"".to_vec();
    out.extend_from_slice(&BrazeId(ws, into).digits());
    out.extend_from_slice(b"\"}");
    String::from_utf8(out).expect("digits").into()
}

/// The stable id of the `index`-th event of the command at log `position`
/// in workspace `ws` (see the module docs).
pub fn event_id(ws: WorkspaceId, position: u64, index: u32) -> String {
    let mut out = Vec::with_capacity(36);
    write_id(&mut out, ws, position, index);
    String::from_utf8(out).expect("hex digits and dashes")
}

/// Appends [`event_id`]: 8-4-4-4-12 hex digits of the workspace (32 bits),
/// the position (64 bits) and the index (32 bits).
fn write_id(out: &mut Vec<u8>, ws: WorkspaceId, position: u64, index: u32) {
    let p = position;
    hex(out, u64::from(ws.0), 8);
    out.push(b'-');
    hex(out, p >> 48, 4);
    out.push(b'-');
    hex(out, (p >> 32) & 0xffff, 4);
    out.push(b'-');
    hex(out, (p >> 16) & 0xffff, 4);
    out.push(b'-');
    hex(out, ((p & 0xffff) << 32) | u64::from(index), 12);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `digits` lowercase hex digits of `v`.
fn hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (4 * i)) & 0xf) as usize]);
    }
}

/// The own part of an event's record (`persist::feed`, version 2): what
/// is not its `properties` (the shared part). LEB128 varints:
///
/// ```text
/// index | uid | u8 has (1: external_id, 2: device_id, 4: own time)
///       | [len | external_id] | [len | device_id] | [zigzag time_ms]
/// ```
///
/// The JSON served is made from it and the frame (seq, position, time,
/// kind) when the event is read ([`render`]), so the same record always
/// reads as the same bytes.
fn encode_own(out: &mut Vec<u8>, e: &Event, index: u32) {
    put_varint(out, u64::from(index));
    put_varint(out, u64::from(e.user.uid));
    let has = u8::from(e.user.external_id.is_some())
        | (u8::from(e.user.device_id.is_some()) << 1)
        | (u8::from(e.time.is_some()) << 2);
    out.push(has);
    for s in [&e.user.external_id, &e.user.device_id]
        .into_iter()
        .flatten()
    {
        put_str(out, s);
    }
    if let Some(t) = e.time {
        put_varint(out, zigzag(t));
    }
}

/// The JSON of a stored event (SPEC §10), from its record: its own part
/// (`own`, [`encode_own`]) and `properties` (`shared`). `None` if the own
/// part does not decode.
fn render(out: &mut Vec<u8>, ws: WorkspaceId, s: &Stored, shared: &[u8]) -> Option<()> {
    let event_type = EventType::from_code(s.kind)?;
    let mut own = varint::Read(&s.payload);
    let index = u32::try_from(own.varint()?).ok()?;
    let uid = Uid::try_from(own.varint()?).ok()?;
    let has = own.byte()?;
    let external_id = if has & 1 != 0 { Some(own.str()?) } else { None };
    let device_id = if has & 2 != 0 { Some(own.str()?) } else { None };
    let at = if has & 4 != 0 {
        unzigzag(own.varint()?)
    } else {
        s.time_ms
    };
    if !own.done() {
        return None;
    }
    let string =
        |out: &mut Vec<u8>, s: &str| serde_json::to_writer(&mut *out, s).expect("a string renders");
    out.extend_from_slice(b"{\"id\":\"");
    write_id(out, ws, s.position, index);
    out.extend_from_slice(b"\",\"event_type\":\"");
    out.extend_from_slice(event_type.name().as_bytes());
    out.extend_from_slice(b"\",\"time\":");
    out.extend_from_slice(itoa::Buffer::new().format(at.div_euclid(1000)).as_bytes());
    out.extend_from_slice(b",\"user\":{\"user_id\":\"");
    out.extend_from_slice(&BrazeId(ws, uid).digits());
    out.push(b'"');
    if let Some(e) = external_id {
        out.extend_from_slice(b",\"external_user_id\":");
        string(out, e);
    }
    if let Some(d) = device_id {
        out.extend_from_slice(b",\"device_id\":");
        string(out, d);
    }
    out.extend_from_slice(b"},\"properties\":");
    out.extend_from_slice(shared);
    out.push(b'}');
    Some(())
}

/// Retention and layout of every workspace's feed (`[feed]` in
/// config.toml).
#[derive(Clone, Copy, Debug)]
pub struct FeedConfig {
    pub retention_bytes: u64,
    pub retention: Duration,
    pub segment_bytes: u64,
}

/// A command's time and events, once made.
type Made = (Millis, Vec<Event>);

/// One workspace's feed.
pub struct Feed {
    ws: WorkspaceId,
    cfg: FeedConfig,
    stats: Arc<Stats>,
    /// Commands applied whose events are not all made yet (a cohort delta
    /// waits for its actor), by log position, with their events once made:
    /// a command's events are written once every earlier one's are, so
    /// the feed is in log order. Locked before `store`.
    pending: Mutex<BTreeMap<u64, Option<Made>>>,
    store: Mutex<FeedStore>,
    /// The newest seq, for long polls.
    newest: tokio::sync::watch::Sender<u64>,
    /// The highest log position whose command's events are all written
    /// ([`Feed::settled`]).
    written: tokio::sync::watch::Sender<u64>,
    /// Wakes threads waiting for an event ([`Feed::wait_after_blocking`]:
    /// connectors); notified under `woken` after `newest` moves.
    woken: Mutex<()>,
    wake: parking_lot::Condvar,
    /// Who waits for the seq of the last event up to a log position
    /// ([`Feed::seq_through`]), by that position. Locked after `pending`.
    marks: Mutex<Vec<(u64, tokio::sync::oneshot::Sender<u64>)>>,
}

/// A command's place in its workspace's feed (see [`Feed::reserve`]).
/// Dropped without [`complete`](Ticket::complete), the command made no
/// event.
pub struct Ticket {
    feed: Arc<Feed>,
    position: u64,
    at: Millis,
    done: bool,
}

impl Ticket {
    /// The command's events, in order.
    pub fn complete(mut self, events: Vec<Event>) {
        self.done = true;
        self.feed.complete(self.position, self.at, events);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.feed.complete(self.position, self.at, Vec::new());
        }
    }
}

/// The events of a command, made in parts: its own (`head`), each
/// cohort's whose members it changed (a delta's cohort; every cohort an
/// identify merge or a delete touched, each on its own actor), and the
/// saved segments' (once all of that is done). It holds who the command's
/// profiles were; when the last holder lets go, the ticket completes with
/// `head`, then the parts in [`Part`] order, so the order (and so the ids)
/// is the same on every replay.
pub struct Gather {
    ticket: Option<Ticket>,
    head: Vec<Event>,
    users: HashMap<Uid, User>,
    parts: Mutex<Vec<(Part, Vec<Event>)>>,
}

/// Where a part of a command's events goes: the cohorts' in their order,
/// then the saved segments'.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Cohort(CohortKey),
    Segments,
}

impl Gather {
    pub fn new(ticket: Ticket, head: Vec<Event>, users: HashMap<Uid, User>) -> Arc<Gather> {
        Arc::new(Gather {
            ticket: Some(ticket),
            head,
            users,
            parts: Mutex::new(Vec::new()),
        })
    }

    /// Who `uid` was as the command applied.
    pub fn user(&self, uid: Uid) -> User {
        self.users.get(&uid).cloned().unwrap_or(User {
            uid,
            external_id: None,
            device_id: None,
        })
    }

    /// One part's events.
    pub fn add(&self, part: Part, events: Vec<Event>) {
        if !events.is_empty() {
            self.parts.lock().push((part, events));
        }
    }
}

impl Drop for Gather {
    fn drop(&mut self) {
        let mut parts = std::mem::take(self.parts.get_mut());
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        let mut events = std::mem::take(&mut self.head);
        events.reserve(parts.iter().map(|p| p.1.len()).sum());
        for (_, part) in parts {
            events.extend(part);
        }
        if let Some(ticket) = self.ticket.take() {
            ticket.complete(events);
        }
    }
}

impl Feed {
    /// Takes the place of the command at log `position` (time `at`) in the
    /// feed; commands must take theirs in log order. `None` if the feed
    /// holds its events already (a replay after a crash).
    pub fn reserve(self: &Arc<Self>, position: u64, at: Millis) -> Option<Ticket> {
        let mut pending = self.pending.lock();
        if position <= self.store.lock().covered() || pending.contains_key(&position) {
            return None;
        }
        pending.insert(position, None);
        Some(Ticket {
            feed: self.clone(),
            position,
            at,
            done: false,
        })
    }

    fn complete(&self, position: u64, at: Millis, events: Vec<Event>) {
        let mut pending = self.pending.lock();
        pending.insert(position, Some((at, events)));
        let mut store = self.store.lock();
        let mut wrote = false;
        while let Some(mut entry) = pending.first_entry() {
            let Some((at, events)) = entry.get_mut().take() else {
                break;
            };
            let position = *entry.key();
            entry.remove();
            // Every event's own part into one buffer, then slices of it;
            // `properties` are shared (stored once for a run of equal ones).
            let mut own = Vec::with_capacity(events.len() * 16);
            let mut ends = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                encode_own(&mut own, e, i as u32);
                ends.push(own.len());
            }
            let rendered: Vec<NewEvent> = events
                .iter()
                .zip(&ends)
                .scan(0, |start, (e, &end)| {
                    let part = &own[*start..end];
                    *start = end;
                    Some(NewEvent {
                        kind: e.event_type.code(),
                        shared: e.properties.as_bytes(),
                        own: part,
                    })
                })
                .collect();
            let oldest_ms = at.saturating_sub(self.cfg.retention.as_millis() as i64);
            let written = store
                .append(position, at, &rendered)
                .and_then(|_| store.retain(self.cfg.retention_bytes, oldest_ms));
            match written {
                Ok(_) => {
                    let n = rendered.len() as u64;
                    self.stats.events.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(workspace = %self.ws, position, error = %e,
                        "the change feed could not be written; these events are missing from it");
                }
            }
            wrote |= !rendered.is_empty();
            let mut marks = self.marks.lock();
            if !marks.is_empty() {
                let newest = store.bounds().1;
                for (_, tx) in marks.extract_if(.., |(at, _)| *at <= position) {
                    let _ = tx.send(newest);
                }
            }
        }
        self.written.send_replace(store.covered());
        if wrote {
            let newest = store.bounds().1;
            drop(store);
            self.newest.send_replace(newest);
            let _woken = self.woken.lock();
            self.wake.notify_all();
        }
    }

    /// The seq of the last event of the commands that have taken their
    /// place so far ([`reserve`](Self::reserve)), once they are written:
    /// called between two commands (a cluster snapshot's cut), it is the
    /// feed's seq at the cut, whatever later commands write meanwhile.
    pub fn seq_through(&self) -> tokio::sync::oneshot::Receiver<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pending = self.pending.lock();
        match pending.last_key_value() {
            Some((&position, _)) => self.marks.lock().push((position, tx)),
            None => {
                let _ = tx.send(self.store.lock().bounds().1);
            }
        }
        rx
    }

    /// Up to `limit` events after seq `after`, of the given types (`None`:
    /// all).
    pub fn read(&self, after: u64, limit: usize, types: Option<&[EventType]>) -> Result<Read> {
        let codes: Option<Vec<u8>> = types.map(|t| t.iter().map(|t| t.code()).collect());
        self.read_kinds(after, limit, codes.as_deref())
    }

    /// [`read`](Self::read) with the types as their codes (`None`: all).
    pub fn read_kinds(&self, after: u64, limit: usize, kinds: Option<&[u8]>) -> Result<Read> {
        // The store only while the segments are listed; the files are read
        // without it, so a read never holds up an append.
        let reader = self.store.lock().reader(after);
        let mut read = reader.read(after, limit, |k| kinds.is_none_or(|c| c.contains(&k)))?;
        if let Read::Events { events, .. } = &mut read {
            // Compact records become the JSON served (older ones are it),
            // rendered into one buffer that each event then shares.
            let size: usize = events
                .iter()
                .map(|e| {
                    e.shared
                        .as_ref()
                        .map_or(0, |s| 200 + s.len() + e.payload.len())
                })
                .sum();
            let mut out = Vec::with_capacity(size);
            let mut ends = Vec::with_capacity(events.len());
            for e in events.iter() {
                if let Some(shared) = &e.shared {
                    render(&mut out, self.ws, e, shared).ok_or_else(|| {
                        crate::persist::Error::Codec(format!(
                            "feed event {} of workspace {} does not decode",
                            e.seq, self.ws
                        ))
                    })?;
                }
                ends.push(out.len());
            }
            let out = bytes::Bytes::from(out);
            let mut start = 0;
            for (e, end) in events.iter_mut().zip(ends) {
                if e.shared.take().is_some() {
                    e.payload = out.slice(start..end);
                }
                start = end;
            }
        }
        Ok(read)
    }

    /// Waits (up to `timeout`) until every command applied so far has its
    /// events written: a read after a write was answered then sees its
    /// events, even those made after the answer (a delta's saved
    /// segments', `apply::After`).
    pub async fn settled(&self, timeout: Duration) {
        let Some(target) = self.pending.lock().keys().next_back().copied() else {
            return;
        };
        let mut rx = self.written.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|w| *w >= target)).await;
    }

    /// Waits until the feed has an event after seq `after`, or `timeout`.
    pub async fn wait_after(&self, after: u64, timeout: Duration) {
        let mut rx = self.newest.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|n| *n > after)).await;
    }

    /// [`wait_after`](Self::wait_after), blocking the calling thread (a
    /// connector's).
    pub fn wait_after_blocking(&self, after: u64, timeout: Duration) {
        let mut woken = self.woken.lock();
        if self.newest() <= after {
            self.wake.wait_for(&mut woken, timeout);
        }
    }

    /// The seq of the newest event (0: none yet).
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }
}

/// Every workspace's feed, under `<data_dir>/feed/<workspace id>/`.
pub struct Feeds {
    dir: PathBuf,
    cfg: FeedConfig,
    feeds: Mutex<HashMap<WorkspaceId, Arc<Feed>>>,
    stats: Arc<Stats>,
}

/// What every feed wrote since start (`/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events written.
    pub events: AtomicU64,
    /// Commands whose events could not be written (they are missing from
    /// their feed; the error is in the server's log).
    pub write_errors: AtomicU64,
}

impl Feeds {
    pub fn new(data_dir: &Path, cfg: FeedConfig) -> Feeds {
        Feeds {
            dir: data_dir.join("feed"),
            cfg,
            feeds: Mutex::new(HashMap::new()),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The feed of `ws`, opened on first use.
    pub fn feed(&self, ws: WorkspaceId) -> Result<Arc<Feed>> {
        let mut feeds = self.feeds.lock();
        if let Some(f) = feeds.get(&ws) {
            return Ok(f.clone());
        }
        let opts = FeedOptions {
            segment_bytes: self.cfg.segment_bytes,
        };
        let store = FeedStore::open(&self.dir.join(ws.to_string()), opts)?;
        let newest = store.bounds().1;
        let written = store.covered();
        let feed = Arc::new(Feed {
            ws,
            cfg: self.cfg,
            stats: self.stats.clone(),
            pending: Mutex::new(BTreeMap::new()),
            store: Mutex::new(store),
            newest: tokio::sync::watch::Sender::new(newest),
            written: tokio::sync::watch::Sender::new(written),
            woken: Mutex::new(()),
            wake: parking_lot::Condvar::new(),
            marks: Mutex::new(Vec::new()),
        });
        feeds.insert(ws, feed.clone());
        Ok(feed)
    }

    /// Every feed opened so far.
    pub fn all(&self) -> Vec<(WorkspaceId, Arc<Feed>)> {
        let mut all: Vec<_> = self
            .feeds
            .lock()
            .iter()
            .map(|(ws, f)| (*ws, f.clone()))
            .collect();
        all.sort_by_key(|(ws, _)| *ws);
        all
    }

    /// Makes workspace `ws`'s feed, which must not exist yet, go on after
    /// seq `after`, and opens it: a cluster node started from a snapshot
    /// set numbers its events as the nodes that made the ones before did
    /// (and, the feed being open, the next set it takes marks it even if
    /// it has no new event: [`all`](Self::all)).
    pub fn start_after(&self, ws: WorkspaceId, after: u64) -> Result<()> {
        let dir = self.dir.join(ws.to_string());
        if self.feeds.lock().contains_key(&ws) {
            return Err(crate::persist::Error::corrupt(
                &dir,
                format!("cannot start the feed after {after}: it is open"),
            ));
        }
        FeedStore::start_after(&dir, after)?;
        self.feed(ws).map(drop)
    }

    /// Makes every feed's events durable (before a snapshot is written:
    /// replay after it cannot make them again).
    pub fn sync(&self) -> Result<()> {
        let feeds: Vec<_> = self.feeds.lock().values().cloned().collect();
        for f in feeds {
            f.store.lock().sync()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_per_workspace_position_and_index() {
        let a = event_id(WorkspaceId(1), 7, 0);
        assert_eq!(a, "00000001-0000-0000-0000-000700000000");
        assert_eq!(a, event_id(WorkspaceId(1), 7, 0));
        assert_ne!(a, event_id(WorkspaceId(2), 7, 0));
        assert_ne!(a, event_id(WorkspaceId(1), 7, 1));
        assert_ne!(a, event_id(WorkspaceId(1), 8, 0));
        assert_eq!(
            event_id(WorkspaceId(u32::MAX), u64::MAX, u32::MAX),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
    }

    #[test]
    fn names_round_trip_and_codes_are_pinned() {
        for (i, t) in EventType::ALL.into_iter().enumerate() {
            assert_eq!(EventType::from_name(t.name()), Some(t));
            assert_eq!(t.code() as usize, i, "codes are on disk");
        }
        assert_eq!(EventType::from_name("users.Nope"), None);
    }

    /// A feed of workspace `ws` in `dir`, keeping everything.
    fn feed(dir: &Path, ws: u32) -> Arc<Feed> {
        let cfg = FeedConfig {
            retention_bytes: u64::MAX,
            retention: Duration::from_secs(3600),
            segment_bytes: 1 << 20,
        };
        Feeds::new(dir, cfg).feed(WorkspaceId(ws)).unwrap()
    }

    #[test]
    fn a_replayed_command_is_not_recorded_twice_and_reads_filter_by_type() {
        let d = tempfile::tempdir().unwrap();
        let f = feed(d.path(), 3);
        let user = User {
            uid: 5,
            external_id: Some("u\"5".into()),
            device_id: Some("d1".into()),
        };
        let gone = Event {
            time: None,
            event_type: EventType::UserDeleteRequest,
            user: user.clone(),
            properties: properties(&Map::new()),
        };
        f.reserve(9, 12_345).unwrap().complete(vec![gone]);
        assert!(
            f.reserve(9, 12_345).is_none(),
            "a replay of it makes nothing"
        );
        let Read::Events { events: all, .. } = f.read(0, 10, None).unwrap() else {
            panic!("expired")
        };
        assert_eq!(all.len(), 1);
        let v: Value = serde_json::from_slice(&all[0].payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": event_id(WorkspaceId(3), 9, 0), "event_type": "users.UserDeleteRequest",
                   "time": 12, "user": {"user_id": BrazeId(WorkspaceId(3), 5).to_string(),
                   "external_user_id": "u\"5", "device_id": "d1"}, "properties": {}})
        );
        let none = f.read(0, 10, Some(&[EventType::CustomEvent])).unwrap();
        assert_eq!(
            none,
            Read::Events {
                events: Vec::new(),
                through: 1
            }
        );
    }

    /// A cut's mark is the seq of the last event of the commands placed
    /// before it, however the commands around it finish; a feed started
    /// after a seq numbers on from it.
    #[test]
    fn a_cuts_mark_counts_the_commands_before_it_and_a_feed_goes_on_after_a_seq() {
        let d = tempfile::tempdir().unwrap();
        let f = feed(d.path(), 3);
        let ev = |uid| Event {
            time: None,
            event_type: EventType::UserDeleteRequest,
            user: User {
                uid,
                external_id: None,
                device_id: None,
            },
            properties: properties(&Map::new()),
        };
        let mut empty = f.seq_through();
        assert_eq!(empty.try_recv(), Ok(0), "nothing placed: known at once");
        let (t1, t2) = (f.reserve(10, 1000).unwrap(), f.reserve(20, 1000).unwrap());
        let mut mark = f.seq_through();
        let t3 = f.reserve(30, 1000).unwrap();
        t3.complete(vec![ev(1), ev(2), ev(3)]);
        t2.complete(vec![ev(4), ev(5)]);
        assert!(mark.try_recv().is_err(), "the first command is not written");
        t1.complete(vec![ev(6)]);
        assert_eq!(mark.try_recv(), Ok(3), "1 + 2 events, not the later 3");
        assert_eq!(f.newest(), 6);

        let d = tempfile::tempdir().unwrap();
        let cfg = FeedConfig {
            retention_bytes: u64::MAX,
            retention: Duration::from_secs(3600),
            segment_bytes: 1 << 20,
        };
        let feeds = Feeds::new(d.path(), cfg);
        feeds.start_after(WorkspaceId(3), 41).unwrap();
        assert_eq!(
            feeds.all().iter().map(|(ws, _)| *ws).collect::<Vec<_>>(),
            [WorkspaceId(3)],
            "open, so that the next cut marks it"
        );
        let f = feeds.feed(WorkspaceId(3)).unwrap();
        assert_eq!(f.newest(), 41);
        let mut mark = f.seq_through();
        assert_eq!(mark.try_recv(), Ok(41), "a cut with no new event marks 41");
        f.reserve(7, 1000).unwrap().complete(vec![ev(1)]);
        let Read::Events { events, through } = f.read(0, 10, None).unwrap() else {
            panic!("expired")
        };
        assert_eq!((events.len(), events[0].seq, through), (1, 42, 42));
        assert_eq!(f.read(5, 10, None).unwrap(), Read::Expired { oldest: 42 });
        assert!(
            feeds.start_after(WorkspaceId(3), 50).is_err(),
            "only a feed with no segment"
        );
    }

    /// The compact record reads back as the JSON served, byte for byte:
    /// identifiers present or not, an event's own time (before 1970 too),
    /// and runs of events sharing `properties`.
    #[test]
    fn compact_records_read_back_as_the_json_served() {
        let d = tempfile::tempdir().unwrap();
        let f = feed(d.path(), 2);
        let who = |uid, ext: Option<&str>, dev: Option<&str>| User {
            uid,
            external_id: ext.map(Into::into),
            device_id: dev.map(Into::into),
        };
        let cohort: Arc<str> = r#"{"partner":"heap","cohort_id":"c","name":"C\u00e9"}"#.into();
        let mut events = vec![
            Event {
                time: Some(-1500),
                ..Event::new(
                    EventType::CustomEvent,
                    who(0, None, None),
                    custom_event_properties("open", Some(r#"{"a":[1,2]}"#)),
                )
            },
            Event::new(
                EventType::Purchase,
                who(u32::MAX, Some("\u{1F600}\n"), None),
                purchase_properties("p1", Some("USD"), Some(9.5), None),
            ),
        ];
        events.extend((0..200).map(|i| {
            Event::new(
                EventType::CohortEntered,
                who(i, Some(&format!("u{i}")), Some("dev")),
                cohort.clone(),
            )
        }));
        f.reserve(300, 1_700_000_000_999).unwrap().complete(events);
        let Read::Events { events: all, .. } = f.read(0, 1000, None).unwrap() else {
            panic!("expired")
        };
        assert_eq!(all.len(), 202);
        let text = |i: usize| String::from_utf8(all[i].payload.to_vec()).unwrap();
        assert_eq!(
            text(0),
            format!(
                r#"{{"id":"{}","event_type":"users.behaviors.CustomEvent","time":-2,"user":{{"user_id":"{}"}},"properties":{{"name":"open","custom_properties":{{"a":[1,2]}}}}}}"#,
                event_id(WorkspaceId(2), 300, 0),
                BrazeId(WorkspaceId(2), 0)
            )
        );
        let purchase: Value = serde_json::from_slice(&all[1].payload).unwrap();
        assert_eq!(purchase["time"], 1_700_000_000);
        assert_eq!(
            purchase["user"],
            serde_json::json!({"user_id": BrazeId(WorkspaceId(2), u32::MAX).to_string(),
                               "external_user_id": "\u{1F600}\n"})
        );
        assert_eq!(purchase["properties"]["price"], 9.5);
        for (i, e) in all[2..].iter().enumerate() {
            let v: Value = serde_json::from_slice(&e.payload).unwrap();
            assert_eq!(v["id"], event_id(WorkspaceId(2), 300, i as u32 + 2));
            assert_eq!(v["user"]["external_user_id"], format!("u{i}"));
            assert_eq!(v["properties"]["name"], "Cé", "event {i}");
        }
        // A read from the middle of a run sees the same bytes.
        let Read::Events { events: tail, .. } = f.read(150, 1000, None).unwrap() else {
            panic!("expired")
        };
        assert_eq!(tail, all[150..]);
    }

    #[test]
    fn events_are_written_in_log_order_whatever_order_commands_finish_in() {
        let d = tempfile::tempdir().unwrap();
        let f = feed(d.path(), 1);
        let ev = |uid| Event {
            time: None,
            event_type: EventType::CohortEntered,
            user: User {
                uid,
                external_id: None,
                device_id: None,
            },
            properties: properties(&Map::new()),
        };
        let first = f.reserve(1, 0).unwrap();
        let second = f.reserve(2, 0).unwrap();
        let third = f.reserve(3, 0).unwrap();
        third.complete(vec![ev(3)]);
        drop(second);
        let nothing = Read::Events {
            events: Vec::new(),
            through: 0,
        };
        assert_eq!(f.read(0, 10, None).unwrap(), nothing);
        first.complete(vec![ev(1)]);
        let Read::Events { events: all, .. } = f.read(0, 10, None).unwrap() else {
            panic!("expired")
        };
        let users: Vec<Value> = all
            .iter()
            .map(|e| {
                serde_json::from_slice::<Value>(&e.payload).unwrap()["user"]["user_id"].clone()
            })
            .collect();
        assert_eq!(
            users,
            [1, 3].map(|u| Value::from(BrazeId(WorkspaceId(1), u).to_string()))
        );
        assert!(f.reserve(3, 0).is_none(), "written: a replay skips it");
    }
}
