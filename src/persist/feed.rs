//! One workspace's change feed on disk: events in feed order, each with
//! the log position of the command that made it, kept for a bounded size
//! and age (issue 12; SPEC §10).
//!
//! # Format
//!
//! A directory of segment files `feed-{first_seq:020}.log`, each a header
//! and then whole records, back to back, little-endian:
//!
//! ```text
//! header: b"COHFEED\0" | u32 version (1 or 2) | u32 crc32(magic ‖ version)   (16 bytes)
//! record: u32 len | u32 crc32(rest) | u64 seq | u64 position | i64 time_ms
//!         | u8 kind | u8 flags | payload (len bytes)
//! ```
//!
//! `seq` numbers the workspace's events from 1, consecutive across
//! segments; a segment's name is its first record's `seq`. `position` is
//! the write-ahead log position of the command the event came from, and
//! `time_ms` the command's time. `kind` is the caller's event type code
//! (filters read it without parsing the payload). `flags` bit 0 marks the
//! last event of its command.
//!
//! The payload is opaque here, in two forms:
//! - **Version 1** segments (written before the compact form): the
//!   payload is one thing, the event's JSON as served.
//! - **Version 2**: an event is a part it shares with its neighbours (its
//!   `properties`: every event of a cohort delta or of one segment's
//!   changes has the same) and a part of its own (who, which event of its
//!   command). A record whose flags bit 1 is clear holds `u32 shared_len
//!   | shared | own`; one whose bit 1 is set holds `own` only, and shares
//!   the record before it. The first record of each append and every
//!   record a read may start from (each `SPARSE_EVERY`-th of a segment)
//!   hold their shared part, so a read starting at any of those knows
//!   every record's. A busy delta's thousands of events are then tens of
//!   bytes each rather than a few hundred (issue 12: the page-cache copy
//!   of the rendered JSON was a third of a tracked delta's time).
//!
//! Opening a feed whose newest segment is version 1 starts a version 2
//! segment at the next append; older segments are read as they are.
//!
//! # What a crash leaves, and replay
//!
//! A command's events are appended with one `write` and no fsync: the feed
//! is rebuilt from the write-ahead log, which is the durable record. At
//! open, the newest segment is cut back to the end of the last record that
//! closes a command (flag bit 0), so a torn record or a command whose
//! events were only partly written leaves nothing. [`FeedStore::covered`]
//! then says up to which log position the feed holds every event, and
//! start-up replay regenerates the events of every later command (the
//! caller skips the commands at or below it). Since the snapshot a replay
//! starts from must not be ahead of the feed, the caller [`sync`]s the
//! feed before it writes a snapshot.
//!
//! [`sync`]: FeedStore::sync
//!
//! # Retention
//!
//! [`FeedStore::retain`] drops whole segments from the oldest, never the
//! one being written: while the feed is over its size bound, or while the
//! oldest segment's newest event is older than the age bound. A read
//! after a cursor that retention dropped is [`Read::Expired`].

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{sync_dir, Error, Result};

const MAGIC: &[u8; 8] = b"COHFEED\0";
/// The version new segments are written in (1 is still read).
const VERSION: u32 = 2;
const HEADER: u64 = 16;
/// `len`, `crc`, `seq`, `position`, `time_ms`, `kind`, `flags`.
const FRAME: usize = 4 + 4 + 8 + 8 + 8 + 1 + 1;
/// The last event of its command.
const LAST: u8 = 1;
/// Version 2: the payload is the own part only; the shared part is the
/// record before's.
const SAME_SHARED: u8 = 2;
/// Every how many records a segment keeps its offset in memory.
const SPARSE_EVERY: u64 = 64;
/// The largest payload a record may hold (an event's JSON).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One event to append: its kind, the part it shares with the events
/// around it (stored once for a run of equal ones), and its own part.
#[derive(Clone, Copy, Debug)]
pub struct NewEvent<'a> {
    pub kind: u8,
    pub shared: &'a [u8],
    pub own: &'a [u8],
}

/// One event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub seq: u64,
    pub position: u64,
    pub time_ms: i64,
    pub kind: u8,
    /// The own part (version 2), or the whole payload (version 1): a
    /// slice of the chunk of the file it was read with.
    pub payload: Bytes,
    /// The shared part (version 2); `None` for a version 1 record.
    pub shared: Option<Bytes>,
}

/// What a read after a cursor found.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// The events after the cursor that the filter kept (possibly none
    /// yet), in order, and the seq the read looked at last (the cursor to
    /// go on from; the cursor itself when there was nothing after it).
    Events { events: Vec<Stored>, through: u64 },
    /// Events after the cursor were dropped by retention: the oldest
    /// retained is `oldest`.
    Expired { oldest: u64 },
}

#[derive(Clone, Copy, Debug)]
pub struct FeedOptions {
    /// A segment past this many bytes is closed and a new one started.
    pub segment_bytes: u64,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            segment_bytes: 8 << 20,
        }
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// The form of its payloads (see the module docs).
    version: u32,
    first_seq: u64,
    /// Seq of its last record (`first_seq - 1` when empty).
    last_seq: u64,
    bytes: u64,
    /// Time of its newest event.
    newest_ms: i64,
    /// `(seq, offset)` of every `SPARSE_EVERY`-th record.
    sparse: Vec<(u64, u64)>,
}

/// The segments a read needs, taken from the store (see
/// [`FeedStore::reader`]).
#[derive(Debug)]
pub struct Reader {
    oldest: u64,
    /// From the one holding the read's first seq; each with at most the
    /// one sparse offset the read starts from.
    segments: Vec<Segment>,
}

impl Reader {
    /// Up to `limit` events after seq `after` whose kind `keep` accepts.
    /// A segment dropped by retention since the reader was taken reads as
    /// expired.
    pub fn read(&self, after: u64, limit: usize, keep: impl Fn(u8) -> bool) -> Result<Read> {
        let oldest = self.oldest;
        // 0 is no cursor: from the oldest retained.
        if after > 0 && after + 1 < oldest {
            return Ok(Read::Expired { oldest });
        }
        let mut out = Vec::new();
        let mut through = after;
        let from = (after + 1).max(oldest);
        for seg in &self.segments {
            if out.len() >= limit {
                break;
            }
            if seg.last_seq < from {
                continue;
            }
            let file = match File::open(&seg.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Read::Expired {
                        oldest: seg.last_seq + 1,
                    })
                }
                Err(e) => return Err(Error::io("open feed segment", &seg.path)(e)),
            };
            let start = seg
                .sparse
                .iter()
                .rev()
                .find(|(seq, _)| *seq <= from)
                .map_or(HEADER, |(_, off)| *off);
            let mut offset = start;
            let mut records = Records::new(&file, seg.bytes, seg.version);
            while out.len() < limit && offset < seg.bytes {
                let Some((f, payload, shared)) = records.at(offset) else {
                    return Err(Error::corrupt(
                        &seg.path,
                        format!("feed record at byte {offset} is not whole"),
                    ));
                };
                offset += (FRAME + f.len) as u64;
                if f.seq >= from {
                    through = f.seq;
                    if keep(f.kind) {
                        out.push(Stored {
                            seq: f.seq,
                            position: f.position,
                            time_ms: f.time_ms,
                            kind: f.kind,
                            payload,
                            shared,
                        });
                    }
                }
            }
        }
        Ok(Read::Events {
            events: out,
            through,
        })
    }
}

/// A workspace's feed (see the module docs). Not synchronised: the
/// engine holds it behind its own lock.
#[derive(Debug)]
pub struct FeedStore {
    dir: PathBuf,
    opts: FeedOptions,
    segments: BTreeMap<u64, Segment>,
    /// The newest segment, open for appending.
    file: File,
    /// The highest log position whose command's events are all here.
    covered: u64,
}

impl Segment {
    /// A segment with its header and no record yet.
    fn empty(path: PathBuf, version: u32, first_seq: u64) -> Segment {
        Segment {
            path,
            version,
            first_seq,
            last_seq: first_seq - 1,
            bytes: HEADER,
            newest_ms: i64::MIN,
            sparse: Vec::new(),
        }
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("feed-{first_seq:020}.log"))
}

fn header(version: u32) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A record read back: its frame, its payload (own part) and shared part.
type Record = (Frame, Bytes, Option<Bytes>);

/// A record's fixed part, decoded.
struct Frame {
    len: usize,
    crc: u32,
    seq: u64,
    position: u64,
    time_ms: i64,
    kind: u8,
    flags: u8,
}

fn frame(b: &[u8; FRAME]) -> Frame {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Frame {
        len: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")) as usize,
        crc: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
        seq: u64_at(8),
        position: u64_at(16),
        time_ms: u64_at(24) as i64,
        kind: b[32],
        flags: b[33],
    }
}

/// Appends a version 2 record; its shared part is written unless `flags`
/// has [`SAME_SHARED`]. `crc` is a fresh hasher to clone (making one
/// looks up the CPU's features: a busy delta writes thousands of records).
fn encode(
    out: &mut Vec<u8>,
    crc: &crc32fast::Hasher,
    seq: u64,
    position: u64,
    time_ms: i64,
    e: NewEvent,
    flags: u8,
) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.push(e.kind);
    out.push(flags);
    if flags & SAME_SHARED == 0 {
        out.extend_from_slice(&(e.shared.len() as u32).to_le_bytes());
        out.extend_from_slice(e.shared);
    }
    out.extend_from_slice(e.own);
    let len = (out.len() - start - FRAME) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc.clone();
    crc.update(&out[start + 8..]);
    let crc = crc.finalize();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads one whole, checked record at `offset`, or `None` at the end of
/// what is whole (a torn or damaged tail).
/// Reads a segment's records in order from an offset, a chunk of the file
/// at a time: one `pread` per [`CHUNK`] bytes, not two per record.
struct Records<'a> {
    file: &'a File,
    /// The segment's length (records past it are not read).
    len: u64,
    /// The segment's version: how payloads are split (module docs).
    version: u32,
    /// The chunk in hand; records' payloads are slices of it.
    buf: Bytes,
    /// The file offset of `buf[0]`.
    at: u64,
    /// The shared part of the record read last (version 2).
    shared: Option<Bytes>,
    /// A fresh hasher, cloned for each record (see [`encode`]).
    crc: crc32fast::Hasher,
}

/// Bytes a [`Records`] reads at a time (more for a larger record).
const CHUNK: usize = 256 << 10;

impl<'a> Records<'a> {
    /// Reads from the start of a segment or a sparse offset (where a
    /// version 2 record holds its shared part).
    fn new(file: &'a File, len: u64, version: u32) -> Records<'a> {
        Records {
            file,
            len,
            version,
            buf: Bytes::new(),
            at: 0,
            shared: None,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// `n` bytes at `offset`, read from the file if the chunk in hand does
    /// not hold them (a new chunk: slices of the old one stay valid).
    fn bytes(&mut self, offset: u64, n: usize) -> Option<Bytes> {
        if offset + n as u64 > self.len {
            return None;
        }
        let held = offset >= self.at && offset + n as u64 <= self.at + self.buf.len() as u64;
        if !held {
            let want = (self.len - offset).min(CHUNK.max(n) as u64) as usize;
            let mut buf = vec![0; want];
            self.file.read_exact_at(&mut buf, offset).ok()?;
            self.buf = Bytes::from(buf);
            self.at = offset;
        }
        let from = (offset - self.at) as usize;
        Some(self.buf.slice(from..from + n))
    }

    /// The record at `offset`, its payload (the own part, in version 2)
    /// and its shared part (version 2), if it is whole, its checksum holds
    /// and its shared part is known. Records must be read in order from
    /// where [`new`](Records::new) says.
    fn at(&mut self, offset: u64) -> Option<Record> {
        let fixed: [u8; FRAME] = self.bytes(offset, FRAME)?[..].try_into().ok()?;
        let f = frame(&fixed);
        if f.len > MAX_EVENT_BYTES + 4 + MAX_EVENT_BYTES {
            return None;
        }
        let payload = self.bytes(offset + FRAME as u64, f.len)?;
        let mut h = self.crc.clone();
        h.update(&fixed[8..]);
        h.update(&payload);
        if h.finalize() != f.crc {
            return None;
        }
        if self.version == 1 {
            return Some((f, payload, None));
        }
        let own = if f.flags & SAME_SHARED != 0 {
            payload
        } else {
            let n = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
            if payload.len() < 4 + n {
                return None;
            }
            self.shared = Some(payload.slice(4..4 + n));
            payload.slice(4 + n..)
        };
        let shared = self.shared.clone()?;
        Some((f, own, Some(shared)))
    }
}

impl FeedStore {
    /// Opens (or creates) the feed in `dir`, cutting the newest segment
    /// back to its last whole command (see the module docs).
    pub fn open(dir: &Path, opts: FeedOptions) -> Result<FeedStore> {
        std::fs::create_dir_all(dir).map_err(Error::io("create feed directory", dir))?;
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(Error::io("list feed directory", dir))? {
            let name = entry
                .map_err(Error::io("list feed directory", dir))?
                .file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("feed-")
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(n);
            }
        }
        firsts.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut covered = 0;
        let newest = firsts.last().copied();
        let mut expected: Option<u64> = None;
        for first in firsts {
            if expected.is_some_and(|e| e != first) {
                return Err(Error::corrupt(
                    &segment_path(dir, first),
                    format!(
                        "feed segment starts at {first}, the one before ends before {}",
                        expected.unwrap_or(0)
                    ),
                ));
            }
            let seg = Self::scan(dir, first, Some(first) == newest, &mut covered)?;
            expected = Some(seg.last_seq + 1);
            segments.insert(first, seg);
        }
        if segments.is_empty() {
            let seg = Self::create(dir, 1)?;
            segments.insert(1, seg);
        }
        let newest = segments.values().next_back().expect("one at least");
        let file = OpenOptions::new()
            .append(true)
            .open(&newest.path)
            .map_err(Error::io("open feed segment", &newest.path))?;
        Ok(FeedStore {
            dir: dir.to_path_buf(),
            opts,
            segments,
            file,
            covered,
        })
    }

    /// Makes the feed in `dir`, which holds no segment yet, start after
    /// seq `after` (an empty segment named by `after + 1`): reads of a
    /// cursor before it are [`Read::Expired`].
    pub fn start_after(dir: &Path, after: u64) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io("create feed directory", dir))?;
        let any = std::fs::read_dir(dir)
            .map_err(Error::io("list feed directory", dir))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("feed-"));
        if any {
            return Err(Error::corrupt(
                dir,
                format!("cannot start the feed after {after}: it holds segments"),
            ));
        }
        Self::create(dir, after + 1).map(drop)
    }

    fn create(dir: &Path, first_seq: u64) -> Result<Segment> {
        let path = segment_path(dir, first_seq);
        let mut f = File::create(&path).map_err(Error::io("create feed segment", &path))?;
        f.write_all(&header(VERSION))
            .map_err(Error::io("write feed segment header", &path))?;
        sync_dir(dir)?;
        Ok(Segment::empty(path, VERSION, first_seq))
    }

    /// Reads a segment's records; the newest is cut back to its last
    /// whole command, an older one must be whole.
    fn scan(dir: &Path, first: u64, newest: bool, covered: &mut u64) -> Result<Segment> {
        let path = segment_path(dir, first);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io("open feed segment", &path))?;
        let len = file
            .metadata()
            .map_err(Error::io("stat feed segment", &path))?
            .len();
        let mut head = [0u8; HEADER as usize];
        let read = len >= HEADER && file.read_exact(&mut head).is_ok();
        let version = [1, VERSION]
            .into_iter()
            .find(|&v| read && head == header(v));
        let version = match version {
            // Empty, of the old version, and the one appends go to: start it
            // again in the current one.
            Some(1) if newest && len == HEADER => None,
            Some(v) => Some(v),
            None if newest && len < HEADER => None,
            None => {
                return Err(Error::corrupt(
                    &path,
                    format!("not a feed segment of version 1 to {VERSION}"),
                ))
            }
        };
        let Some(version) = version else {
            // Cut short while it was being created: give it its header.
            file.set_len(0)
                .map_err(Error::io("truncate feed segment", &path))?;
            file.seek(SeekFrom::Start(0))
                .map_err(Error::io("seek feed segment", &path))?;
            file.write_all(&header(VERSION))
                .map_err(Error::io("write feed segment header", &path))?;
            return Ok(Segment::empty(path, VERSION, first));
        };
        let mut seg = Segment::empty(path.clone(), version, first);
        // The end of the last record that closes a command, and what the
        // segment holds up to there.
        let mut whole = (HEADER, first - 1, i64::MIN, seg.sparse.len());
        let mut offset = HEADER;
        let mut records = Records::new(&file, len, version);
        while let Some((f, _, _)) = records.at(offset) {
            if f.seq != seg.last_seq + 1 {
                break;
            }
            if (f.seq - first).is_multiple_of(SPARSE_EVERY) {
                seg.sparse.push((f.seq, offset));
            }
            seg.last_seq = f.seq;
            seg.newest_ms = seg.newest_ms.max(f.time_ms);
            offset += (FRAME + f.len) as u64;
            if f.flags & LAST != 0 {
                whole = (offset, f.seq, seg.newest_ms, seg.sparse.len());
                *covered = (*covered).max(f.position);
            }
        }
        if whole.0 != len {
            if !newest {
                return Err(Error::corrupt(
                    &path,
                    format!("feed record at byte {} is not whole", whole.0),
                ));
            }
            file.set_len(whole.0)
                .map_err(Error::io("truncate feed segment", &path))?;
        }
        (seg.bytes, seg.last_seq, seg.newest_ms) = (whole.0, whole.1, whole.2);
        seg.sparse.truncate(whole.3);
        file.seek(SeekFrom::End(0))
            .map_err(Error::io("seek feed segment", &path))?;
        Ok(seg)
    }

    /// The highest log position whose command's events are all in the
    /// feed (0: none): replay regenerates the events of later commands.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// The seq of the oldest retained event, and of the newest (0 when the
    /// feed has none yet).
    pub fn bounds(&self) -> (u64, u64) {
        let oldest = self.segments.values().next().expect("one at least");
        let newest = self.segments.values().next_back().expect("one at least");
        (oldest.first_seq, newest.last_seq)
    }

    /// Appends the events of the command at log `position` (with one
    /// write); returns the seq of the first. A command with no events
    /// still moves [`covered`](Self::covered).
    pub fn append(&mut self, position: u64, time_ms: i64, events: &[NewEvent<'_>]) -> Result<u64> {
        let first = self.bounds().1 + 1;
        if events.is_empty() {
            self.covered = self.covered.max(position);
            return Ok(first);
        }
        if let Some(big) = events
            .iter()
            .find(|e| e.shared.len().max(e.own.len()) > MAX_EVENT_BYTES)
        {
            return Err(Error::Codec(format!(
                "a feed event of {} bytes is over {MAX_EVENT_BYTES}",
                big.shared.len().max(big.own.len())
            )));
        }
        let old = self.newest().version != VERSION;
        if old || self.newest().bytes >= self.opts.segment_bytes {
            let seg = Self::create(&self.dir, first)?;
            self.file = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .map_err(Error::io("open feed segment", &seg.path))?;
            self.segments.insert(first, seg);
        }
        let seg_first = self.newest().first_seq;
        let crc = crc32fast::Hasher::new();
        let size: usize = events.iter().map(|e| FRAME + e.own.len()).sum();
        let mut buf = Vec::with_capacity(size);
        let mut offsets = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            offsets.push(buf.len() as u64);
            let seq = first + i as u64;
            let mut flags = if i + 1 == events.len() { LAST } else { 0 };
            // A read may start at the first of an append or at a sparse
            // offset: those hold their shared part (module docs).
            if i > 0 && !(seq - seg_first).is_multiple_of(SPARSE_EVERY) && {
                let before = events[i - 1].shared;
                std::ptr::eq(before, e.shared) || before == e.shared
            } {
                flags |= SAME_SHARED;
            }
            encode(&mut buf, &crc, seq, position, time_ms, *e, flags);
        }
        let seg = self
            .segments
            .values_mut()
            .next_back()
            .expect("one at least");
        if let Err(e) = self.file.write_all(&buf) {
            // Leave no part of it behind to be read as whole.
            let _ = self.file.set_len(seg.bytes);
            return Err(Error::io("append to feed segment", &seg.path)(e));
        }
        for (i, at) in offsets.into_iter().enumerate() {
            let seq = first + i as u64;
            if (seq - seg.first_seq).is_multiple_of(SPARSE_EVERY) {
                seg.sparse.push((seq, seg.bytes + at));
            }
        }
        seg.bytes += buf.len() as u64;
        seg.last_seq = first + events.len() as u64 - 1;
        seg.newest_ms = seg.newest_ms.max(time_ms);
        self.covered = self.covered.max(position);
        Ok(first)
    }

    fn newest(&self) -> &Segment {
        self.segments.values().next_back().expect("one at least")
    }

    /// Makes every appended event durable (before a snapshot is written).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(Error::io("fsync feed segment", &self.newest().path))
    }

    /// Up to `limit` events after seq `after` (0: from the oldest retained,
    /// never expired) whose kind `keep` accepts.
    pub fn read(&self, after: u64, limit: usize, keep: impl Fn(u8) -> bool) -> Result<Read> {
        self.reader(after).read(after, limit, keep)
    }

    /// What a read after seq `after` needs of the segments, so that the
    /// files are read without holding the store (appends go on meanwhile;
    /// the read sees the records up to this moment).
    pub fn reader(&self, after: u64) -> Reader {
        let (oldest, _) = self.bounds();
        let from = (after + 1).max(oldest);
        let start = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(oldest, |(k, _)| *k);
        Reader {
            oldest,
            segments: self
                .segments
                .range(start..)
                .map(|(_, s)| Segment {
                    path: s.path.clone(),
                    version: s.version,
                    first_seq: s.first_seq,
                    last_seq: s.last_seq,
                    bytes: s.bytes,
                    newest_ms: s.newest_ms,
                    sparse: s
                        .sparse
                        .iter()
                        .rev()
                        .find(|(seq, _)| *seq <= from)
                        .copied()
                        .into_iter()
                        .collect(),
                })
                .collect(),
        }
    }

    /// Drops the oldest segments (never the newest) while the feed holds
    /// more than `max_bytes`, or while the oldest one's newest event is
    /// before `oldest_ms`. Returns how many events went.
    pub fn retain(&mut self, max_bytes: u64, oldest_ms: i64) -> Result<u64> {
        let mut dropped = 0;
        while self.segments.len() > 1 {
            let total: u64 = self.segments.values().map(|s| s.bytes).sum();
            let oldest = self.segments.values().next().expect("two at least");
            if total <= max_bytes && oldest.newest_ms >= oldest_ms {
                break;
            }
            std::fs::remove_file(&oldest.path)
                .map_err(Error::io("remove feed segment", &oldest.path))?;
            dropped += oldest.last_seq + 1 - oldest.first_seq;
            let first = oldest.first_seq;
            self.segments.remove(&first);
        }
        if dropped > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ev(kind: u8, text: &str) -> (u8, String) {
        (kind, text.to_string())
    }

    /// Appends owned test events (all sharing one empty part).
    fn put(f: &mut FeedStore, position: u64, time_ms: i64, events: &[(u8, String)]) -> u64 {
        let events: Vec<NewEvent> = events
            .iter()
            .map(|(k, t)| NewEvent {
                kind: *k,
                shared: b"",
                own: t.as_bytes(),
            })
            .collect();
        f.append(position, time_ms, &events).unwrap()
    }

    fn small() -> FeedOptions {
        FeedOptions { segment_bytes: 300 }
    }

    fn texts(r: Read) -> Vec<(u64, String)> {
        match r {
            Read::Events { events, .. } => events
                .into_iter()
                .map(|s| (s.seq, String::from_utf8(s.payload.to_vec()).unwrap()))
                .collect(),
            Read::Expired { oldest } => panic!("expired, oldest {oldest}"),
        }
    }

    #[test]
    fn events_read_back_in_order_across_segments_and_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let mut f = FeedStore::open(d.path(), small()).unwrap();
        for p in 1..=40u64 {
            let events: Vec<_> = (0..p % 3)
                .map(|i| ev(i as u8, &format!("e{p}.{i}")))
                .collect();
            put(&mut f, p, p as i64 * 1000, &events);
        }
        assert_eq!(f.covered(), 40);
        let all = texts(f.read(0, 1000, |_| true).unwrap());
        assert_eq!(all.len(), 40);
        assert!(f.segments.len() > 3, "{} segments", f.segments.len());
        assert_eq!(all[0], (1, "e1.0".into()));
        let kind1 = f.read(0, 1000, |k| k == 1).unwrap();
        let Read::Events { through, .. } = kind1 else {
            panic!("expired")
        };
        assert_eq!(
            through, 40,
            "the filter skipped the last events, the read did not"
        );
        let kind1 = texts(kind1);
        assert!(!kind1.is_empty() && kind1.iter().all(|(_, t)| t.ends_with(".1")));
        // A cursor in the middle, a limit, and the same answer after reopening.
        let page = texts(f.read(17, 5, |_| true).unwrap());
        assert_eq!(
            page.iter().map(|p| p.0).collect::<Vec<_>>(),
            [18, 19, 20, 21, 22]
        );
        drop(f);
        let f = FeedStore::open(d.path(), small()).unwrap();
        assert_eq!(texts(f.read(17, 5, |_| true).unwrap()), page);
        assert_eq!(f.covered(), 40);
        assert_eq!(texts(f.read(40, 5, |_| true).unwrap()), []);
    }

    #[test]
    fn a_torn_or_partial_command_is_cut_away_at_open() {
        let d = tempfile::tempdir().unwrap();
        let mut f = FeedStore::open(d.path(), FeedOptions::default()).unwrap();
        put(&mut f, 1, 1, &[ev(0, "a")]);
        put(&mut f, 2, 2, &[ev(0, "b"), ev(0, "c")]);
        let path = f.newest().path.clone();
        let whole = f.newest().bytes;
        drop(f);
        // The second command's last record torn: the whole command goes.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(whole - 1).unwrap();
        let mut f = FeedStore::open(d.path(), FeedOptions::default()).unwrap();
        assert_eq!(f.covered(), 1);
        assert_eq!(texts(f.read(0, 10, |_| true).unwrap()), [(1, "a".into())]);
        // Replay makes them again, with the same seqs.
        assert_eq!(put(&mut f, 2, 2, &[ev(0, "b"), ev(0, "c")]), 2);
        assert_eq!(texts(f.read(1, 10, |_| true).unwrap()).len(), 2);
        // Garbage after the end is cut too.
        drop(f);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[7; 50]).unwrap();
        let f = FeedStore::open(d.path(), FeedOptions::default()).unwrap();
        assert_eq!(f.bounds(), (1, 3));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), f.newest().bytes);
    }

    #[test]
    fn retention_drops_old_segments_and_old_cursors_expire() {
        let d = tempfile::tempdir().unwrap();
        let mut f = FeedStore::open(d.path(), small()).unwrap();
        for p in 1..=60u64 {
            put(&mut f, p, p as i64, &[ev(0, &format!("event number {p}"))]);
        }
        let segments = f.segments.len();
        // By age: everything before time 30 goes, whole segments only.
        let gone = f.retain(u64::MAX, 30).unwrap();
        let (oldest, newest) = f.bounds();
        assert_eq!(gone, oldest - 1);
        assert!(oldest > 1 && oldest <= 30, "oldest {oldest}");
        assert_eq!(newest, 60);
        assert_eq!(
            f.read(0, 1, |_| true).unwrap(),
            f.read(oldest - 1, 1, |_| true).unwrap()
        );
        assert_eq!(
            f.read(oldest - 2, 1, |_| true).unwrap(),
            Read::Expired { oldest }
        );
        // By size: down to the newest segment at most.
        f.retain(0, i64::MIN).unwrap();
        assert_eq!(f.segments.len(), 1);
        assert!(segments > 2);
        assert_eq!(f.bounds().1, 60);
        // What is left still opens, and appends go on after it.
        drop(f);
        let mut f = FeedStore::open(d.path(), small()).unwrap();
        assert_eq!(put(&mut f, 61, 61, &[ev(0, "after")]), 61);
    }

    /// Each event's shared part, read from every cursor: runs of equal
    /// ones across sparse offsets, appends and segments.
    #[test]
    fn shared_parts_read_back_from_any_cursor() {
        let d = tempfile::tempdir().unwrap();
        let opts = FeedOptions {
            segment_bytes: 4000,
        };
        let mut f = FeedStore::open(d.path(), opts).unwrap();
        let mut want = Vec::new();
        for p in 1..=30u64 {
            // Runs of 1 to 90 events sharing a part, several runs a command.
            let texts: Vec<(Vec<u8>, Vec<u8>)> = (0..(p * 7 % 150))
                .map(|i| {
                    let run = i / (1 + p % 90);
                    (
                        format!("props {p}.{run}").into_bytes(),
                        format!("{p}.{i}").into_bytes(),
                    )
                })
                .collect();
            let events: Vec<NewEvent> = texts
                .iter()
                .map(|(s, o)| NewEvent {
                    kind: 0,
                    shared: s,
                    own: o,
                })
                .collect();
            f.append(p, 0, &events).unwrap();
            want.extend(texts);
        }
        assert!(f.segments.len() > 3, "{} segments", f.segments.len());
        let read = |f: &FeedStore, after: u64| -> Vec<(Vec<u8>, Vec<u8>)> {
            let Read::Events { events, .. } = f.read(after, usize::MAX, |_| true).unwrap() else {
                panic!("expired")
            };
            events
                .into_iter()
                .map(|s| (s.shared.expect("version 2").to_vec(), s.payload.to_vec()))
                .collect()
        };
        for after in 0..want.len() as u64 {
            assert_eq!(read(&f, after), want[after as usize..], "after {after}");
        }
        drop(f);
        let f = FeedStore::open(d.path(), opts).unwrap();
        assert_eq!(read(&f, 0), want);
        assert_eq!(read(&f, 100), want[100..]);
    }

    /// A feed written before the compact form: its records read as they
    /// were (one payload, no shared part), and appends go to a new
    /// segment of the current version.
    #[test]
    fn version_1_segments_read_as_written_and_appends_start_a_new_one() {
        let d = tempfile::tempdir().unwrap();
        let path = segment_path(d.path(), 1);
        let mut bytes = header(1).to_vec();
        for seq in 1..=3u64 {
            // Version 1 frames are version 2's, and never share.
            let text = format!("{{\"seq\":{seq}}}");
            let e = NewEvent {
                kind: 4,
                shared: b"",
                own: text.as_bytes(),
            };
            let mut rec = Vec::new();
            encode(&mut rec, &crc32fast::Hasher::new(), seq, seq, 1000, e, LAST);
            // Without the shared part's length.
            rec.drain(FRAME..FRAME + 4);
            let len = (rec.len() - FRAME) as u32;
            rec[..4].copy_from_slice(&len.to_le_bytes());
            let crc = crc32fast::hash(&rec[8..]);
            rec[4..8].copy_from_slice(&crc.to_le_bytes());
            bytes.extend(rec);
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut f = FeedStore::open(d.path(), FeedOptions::default()).unwrap();
        assert_eq!((f.covered(), f.bounds()), (3, (1, 3)));
        let Read::Events { events, .. } = f.read(1, 10, |_| true).unwrap() else {
            panic!("expired")
        };
        assert_eq!(
            events
                .iter()
                .map(|e| (e.seq, &e.payload[..], e.shared.is_none()))
                .collect::<Vec<_>>(),
            [
                (2, &b"{\"seq\":2}"[..], true),
                (3, &b"{\"seq\":3}"[..], true)
            ]
        );
        put(&mut f, 4, 2000, &[ev(0, "new")]);
        assert_eq!(f.segments.len(), 2, "a new segment for the new form");
        assert_eq!(f.newest().version, VERSION);
        drop(f);
        let f = FeedStore::open(d.path(), FeedOptions::default()).unwrap();
        assert_eq!(
            texts(f.read(2, 10, |_| true).unwrap()),
            [(3, "{\"seq\":3}".into()), (4, "new".into())]
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the old segment as it was"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any appends, reopened after any cut of the newest segment, read
        /// back as the commands kept whole, and replaying the rest gives
        /// the same feed as never crashing.
        #[test]
        fn a_crash_anywhere_then_replay_gives_the_same_feed(
            commands in proptest::collection::vec(proptest::collection::vec((0u8..4, 0usize..40), 0..4), 1..40),
            cut in any::<proptest::sample::Index>(),
        ) {
            let made = |p: usize| -> Vec<(u8, String)> {
                commands[p].iter().map(|(k, n)| ev(*k, &"x".repeat(*n))).collect()
            };
            let d = tempfile::tempdir().unwrap();
            let clean = tempfile::tempdir().unwrap();
            let mut f = FeedStore::open(d.path(), small()).unwrap();
            let mut g = FeedStore::open(clean.path(), small()).unwrap();
            for p in 0..commands.len() {
                put(&mut f, p as u64 + 1, p as i64, &made(p));
                put(&mut g, p as u64 + 1, p as i64, &made(p));
            }
            let path = f.newest().path.clone();
            drop(f);
            let len = std::fs::metadata(&path).unwrap().len();
            OpenOptions::new().write(true).open(&path).unwrap()
                .set_len(cut.index(len as usize + 1) as u64).unwrap();
            let mut f = FeedStore::open(d.path(), small()).unwrap();
            for p in f.covered() as usize..commands.len() {
                put(&mut f, p as u64 + 1, p as i64, &made(p));
            }
            prop_assert_eq!(f.read(0, usize::MAX, |_| true).unwrap(), g.read(0, usize::MAX, |_| true).unwrap());
        }
    }
}
