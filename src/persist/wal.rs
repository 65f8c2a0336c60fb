//! A segmented write-ahead log of opaque records, with group commit.
//!
//! # Format
//!
//! The log is a directory of segment files `wal-{first_position:020}.log`.
//! A segment starts with a header naming the format version of every record
//! in it, then holds whole records, back to back, little-endian:
//!
//! ```text
//! header: b"COHDWAL\0" | u32 version | u32 crc32(magic ‖ version)   (16 bytes)
//! record: u32 len | u32 crc32(position ‖ payload) | u64 position | payload (len bytes)
//! ```
//!
//! Version 1 segments (written before versions existed) have no header: a
//! segment that does not start with the magic is version 1. This module
//! does not interpret payloads; it hands each record to the caller with its
//! segment's version (`persist::schema` decodes them). The log refuses to
//! open a segment of a version newer than the one it writes, naming both,
//! and never appends to a segment of another version: at open it starts a
//! new segment (or gives an empty one its header) instead.
//!
//! Positions start at 1 and are consecutive across segments; a segment's name
//! is the position of its first record (an empty newest segment is fine: the
//! name still says where the log continues). The position is inside the
//! checksum so that a record copied or left over at the wrong place is caught.
//!
//! # Group commit
//!
//! [`Wal::append`] is synchronous and cheap: under one short lock it assigns
//! the next position and frames the record into a shared batch buffer, so
//! the caller's order *is* the log's order. A dedicated writer thread swaps
//! the whole buffer out, writes it with one `write` call, fsyncs once (under
//! [`FsyncPolicy::Always`]) and then completes every record of the batch.
//! While it is busy, the next batch accumulates: the more concurrent writers,
//! the more records share one fsync, which is what keeps throughput up with
//! fsync on.
//!
//! This module does not bound the queue: `append` is called by the engine's
//! sequencers (each workspace's lane, and the router), which must never
//! block. The bound is upstream, in `Engine::submit`: every write takes one
//! of `engine.max_inflight_writes` slots (a semaphore), and one of its
//! workspace's `engine.max_inflight_writes_per_workspace`, *before* it is
//! sent to a sequencer, and holds them until its command has been applied and
//! answered; with no slot free the write is refused with 503 (`Saturated`)
//! and never reaches the log. Every record is appended on behalf of such a
//! write, so at most `max_inflight_writes` records are queued — give or take
//! those of requests dropped while waiting (a client that went away): their
//! slot is freed at once, while their record is still written. (The sequencers'
//! and the cohorts' mailboxes are not what bounds it: the engine sends to
//! them with `do_send`, which never refuses.) Start-up replay does not append.
//!
//! # IO errors (disk full and friends)
//!
//! - A record is reported durable only after its bytes were written and, under
//!   `Always`, fdatasync'd. A record whose write or fsync fails gets the error
//!   and is **not** in the log: the writer cuts the segment back to the last
//!   whole record, so a half-written record is never left looking valid.
//! - Records queued behind a failed batch fail too (their positions would
//!   leave a hole), and the next append reuses the first failed position.
//!   So positions are consecutive in the log, but a *failed* `Appended`'s
//!   position will be handed out again: the engine must only treat a record
//!   as logged (e.g. count it in a snapshot's `log_position`) once its
//!   [`Appended::durable`] resolved `Ok`.
//! - The writer keeps going: later appends try again (a failed cut-back is
//!   retried first), so the server recovers once space is freed.
//! - Under `Interval` and `Off`, records are acknowledged on write; a failed
//!   background fsync is logged and counted in [`WalStats::io_errors`], and
//!   what it covered may be lost on power failure (that is the policy's
//!   trade-off). [`Wal::sync`] and [`Wal::close`] report fsync errors.
//!
//! # Recovery
//!
//! [`Wal::open`] reads only the newest segment. A damaged record at its very
//! end (short, or bad checksum with nothing valid after it) is a torn write
//! of a record that was never acknowledged: it is cut off with a warning. A
//! damaged record followed by any valid record is corruption of acknowledged
//! data and [`Error::Corrupt`]. (A crash that persisted a later page of an
//! unacknowledged batch before an earlier one looks the same; it is rare,
//! and we refuse rather than guess.) Damage in the very last record cannot
//! be told apart from a torn write and is cut. [`Recovered::replay`] then streams the
//! records after a snapshot's position, one reused buffer at a time, and
//! reports damage in older segments as `Corrupt` and missing positions as
//! [`Error::Gap`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::{sync_dir, Error, Result};

const FRAME_HEADER: usize = 16;

const SEGMENT_MAGIC: &[u8; 8] = b"COHDWAL\0";
const SEGMENT_HEADER: u64 = 16;
/// The version of segments that have no header.
pub const HEADERLESS_VERSION: u32 = 1;

/// When the log fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fdatasync every batch before acknowledging it (group commit).
    #[default]
    Always,
    /// Acknowledge on write; fsync at most every `millis` while dirty.
    Interval { millis: u64 },
    /// Acknowledge on write; leave flushing to the OS.
    Off,
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Start a new segment once the active one holds at least this many
    /// bytes (a segment may exceed it by one batch).
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Under `Always`, how long a batch may wait for concurrent writers to
    /// join it before its fsync (only when the previous batch had more than
    /// one record, so a lone writer never waits). `None`: never wait.
    pub commit_wait: Option<Duration>,
    /// The format version of the records this log appends, written in the
    /// header of every segment it starts. Segments of a newer version are
    /// refused at open. [`HEADERLESS_VERSION`] writes segments without a
    /// header, as versions before headers did (tests of old data dirs).
    pub version: u32,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
            commit_wait: None,
            version: super::schema::LOG_VERSION,
        }
    }
}

/// Resolves once the record is durable under the policy, or with the IO
/// error that kept it out of the log.
pub type Durable = oneshot::Receiver<std::result::Result<(), Arc<Error>>>;

/// A queued record: its position, and when it is safe to acknowledge.
#[derive(Debug)]
pub struct Appended {
    pub position: u64,
    pub durable: Durable,
}

impl Appended {
    /// Wait until durable; `Ok(position)` or the error shared by the batch.
    pub async fn wait(self) -> std::result::Result<u64, Arc<Error>> {
        finish(self.position, self.durable.await)
    }

    /// The same for plain threads (panics inside an async runtime).
    pub fn wait_blocking(self) -> std::result::Result<u64, Arc<Error>> {
        finish(self.position, self.durable.blocking_recv())
    }
}

fn finish(
    position: u64,
    got: std::result::Result<std::result::Result<(), Arc<Error>>, oneshot::error::RecvError>,
) -> std::result::Result<u64, Arc<Error>> {
    match got {
        Ok(Ok(())) => Ok(position),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Arc::new(Error::Closed)),
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written since open.
    pub records: u64,
    /// Bytes written since open, framing included.
    pub bytes: u64,
    /// fdatasync calls on segment files.
    pub fsyncs: u64,
    /// Batches written (one write call each).
    pub batches: u64,
    /// Failed writes, fsyncs and roll-overs.
    pub io_errors: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    batches: AtomicU64,
    io_errors: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
    /// Format version of its records.
    version: u32,
    /// Bytes before the first record (the header; 0 when headerless).
    header_len: u64,
}

/// What the first bytes of a segment file say about it.
enum HeaderRead {
    /// A version and where its records start.
    Valid { version: u32, header_len: u64 },
    /// An empty file, or the start of a header cut short by a crash while
    /// the segment was being created: it holds no record.
    Unwritten,
}

fn segment_header(version: u32) -> [u8; SEGMENT_HEADER as usize] {
    let mut b = [0u8; SEGMENT_HEADER as usize];
    b[0..8].copy_from_slice(SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&b[0..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

fn read_segment_header(path: &Path) -> Result<HeaderRead> {
    let mut file = File::open(path).map_err(Error::io("open log segment", path))?;
    let mut b = [0u8; SEGMENT_HEADER as usize];
    let mut got = 0;
    while got < b.len() {
        match file.read(&mut b[got..]).map_err(Error::io("read", path))? {
            0 => break,
            n => got += n,
        }
    }
    let magic = got.min(SEGMENT_MAGIC.len());
    if got == 0 || (got < b.len() && b[..magic] == SEGMENT_MAGIC[..magic]) {
        return Ok(HeaderRead::Unwritten);
    }
    if got < SEGMENT_MAGIC.len() || &b[0..8] != SEGMENT_MAGIC {
        return Ok(HeaderRead::Valid {
            version: HEADERLESS_VERSION,
            header_len: 0,
        });
    }
    if crc32fast::hash(&b[0..12]).to_le_bytes() != b[12..16] {
        return Err(Error::corrupt(path, "segment header checksum mismatch"));
    }
    let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if version <= HEADERLESS_VERSION {
        return Err(Error::corrupt(
            path,
            format!("segment header names version {version}, which never had a header"),
        ));
    }
    Ok(HeaderRead::Valid {
        version,
        header_len: SEGMENT_HEADER,
    })
}

/// Creates (or empties) a segment file and gives it the header of
/// `version`, durably, before any record goes in.
fn start_segment(dir: &Path, first: u64, version: u32) -> Result<(File, Segment)> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(Error::io("create log segment", &path))?;
    // A leftover of an earlier roll that failed before it was used.
    file.set_len(0).map_err(Error::io("reset", &path))?;
    let header_len = if version > HEADERLESS_VERSION {
        file.write_all(&segment_header(version))
            .and_then(|()| file.sync_data())
            .map_err(Error::io("write the header of", &path))?;
        SEGMENT_HEADER
    } else {
        0
    };
    sync_dir(dir)?;
    Ok((
        file,
        Segment {
            first,
            path,
            version,
            header_len,
        },
    ))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("wal-{first:020}.log"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments of the log, oldest first, with their versions. A segment of
/// a version newer than `newest_readable` is refused.
fn list_segments(dir: &Path, newest_readable: u32) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("read log directory", dir))? {
        let path = entry.map_err(Error::io("read log directory", dir))?.path();
        if let Some(first) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_name)
        {
            segments.push((first, path));
        }
    }
    segments.sort_by_key(|s| s.0);
    let newest = segments.len().saturating_sub(1);
    let mut out = Vec::with_capacity(segments.len());
    for (i, (first, path)) in segments.into_iter().enumerate() {
        let (version, header_len) = match read_segment_header(&path)? {
            HeaderRead::Valid {
                version,
                header_len,
            } => (version, header_len),
            // Only the newest segment can have been cut short while it
            // was created; `Wal::open` gives it a header.
            HeaderRead::Unwritten if i == newest => (0, 0),
            HeaderRead::Unwritten => (HEADERLESS_VERSION, 0),
        };
        if version > newest_readable {
            return Err(Error::UnsupportedVersion {
                file: path,
                found: version,
                newest: newest_readable,
            });
        }
        out.push(Segment {
            first,
            path,
            version,
            header_len,
        });
    }
    Ok(out)
}

fn frame_crc(position: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&position.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn encode_frame(out: &mut Vec<u8>, position: u64, len: u32, payload: &[u8]) {
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame_crc(position, payload).to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(payload);
}

/// (len, crc, position) of a frame header.
fn parse_frame_header(b: &[u8]) -> (usize, u32, u64) {
    let mut u32s = [0u8; 4];
    let mut pos = [0u8; 8];
    u32s.copy_from_slice(&b[0..4]);
    let len = u32::from_le_bytes(u32s) as usize;
    u32s.copy_from_slice(&b[4..8]);
    pos.copy_from_slice(&b[8..16]);
    (len, u32::from_le_bytes(u32s), u64::from_le_bytes(pos))
}

/// How a segment read ended: after `valid_len` bytes of whole records, with
/// `next_position` the position the next record would have, and the reason
/// the byte at `valid_len` does not start a valid record (if any).
struct Scanned {
    valid_len: u64,
    next_position: u64,
    damage: Option<String>,
}

/// Read a segment's records in order, stopping after position `stop_after`,
/// at the end of the file or at the first damaged record.
fn scan_segment(
    seg: &Segment,
    stop_after: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<Scanned> {
    let path = &seg.path;
    let file = File::open(path).map_err(Error::io("open log segment", path))?;
    let file_len = file.metadata().map_err(Error::io("stat", path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut payload = Vec::new();
    let mut offset = seg.header_len.min(file_len);
    reader
        .seek_relative(offset as i64)
        .map_err(Error::io("seek", path))?;
    let mut next = seg.first;
    let damage = loop {
        if next > stop_after || offset == file_len {
            break None;
        }
        if file_len - offset < FRAME_HEADER as u64 {
            break Some(format!("short record header ({} bytes)", file_len - offset));
        }
        let mut header = [0u8; FRAME_HEADER];
        reader
            .read_exact(&mut header)
            .map_err(Error::io("read", path))?;
        let (len, crc, position) = parse_frame_header(&header);
        let end = offset + (FRAME_HEADER + len) as u64;
        if end > file_len {
            break Some(format!(
                "record of {len} bytes runs past the end of the file"
            ));
        }
        payload.resize(len, 0);
        reader
            .read_exact(&mut payload)
            .map_err(Error::io("read", path))?;
        if frame_crc(position, &payload) != crc {
            break Some("record checksum mismatch".to_owned());
        }
        if position != next {
            return Err(Error::corrupt(
                path,
                format!("record at offset {offset} has position {position}, expected {next}"),
            ));
        }
        f(position, &payload)?;
        offset = end;
        next += 1;
    };
    Ok(Scanned {
        valid_len: offset,
        next_position: next,
        damage,
    })
}

/// The first valid record (offset, position) strictly after the damaged byte
/// at `offset`, with a position of at least `expected`. Finding one means the
/// damage is not a torn tail. Only runs on the recovery path after damage.
fn valid_record_after(path: &Path, offset: u64, expected: u64) -> Result<Option<(u64, u64)>> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|o| bytes.get(o..))
        .unwrap_or_default();
    // Each record takes at least a header, which bounds plausible positions.
    let max_position = expected.saturating_add((rest.len() / FRAME_HEADER) as u64);
    for start in 1..rest.len().saturating_sub(FRAME_HEADER - 1) {
        let (len, crc, position) = parse_frame_header(&rest[start..start + FRAME_HEADER]);
        if position < expected || position > max_position {
            continue;
        }
        let payload = rest.get(start + FRAME_HEADER..).and_then(|p| p.get(..len));
        if payload.is_some_and(|p| frame_crc(position, p) == crc) {
            return Ok(Some((offset + start as u64, position)));
        }
    }
    Ok(None)
}

/// What [`Wal::open`] found; replays the records a snapshot does not hold.
#[derive(Debug)]
pub struct Recovered {
    dir: PathBuf,
    segments: Vec<Segment>,
    last_position: u64,
}

impl Recovered {
    /// The last record in the log at open (0 if it never held one).
    pub fn last_position(&self) -> u64 {
        self.last_position
    }

    /// The oldest position the log can still replay (older segments may
    /// have been removed by [`Wal::truncate_before`]).
    pub fn first_position(&self) -> u64 {
        self.segments.first().map_or(1, |s| s.first)
    }

    /// Call `f` with every record after position `after`, in order, with the
    /// format version of its segment, reading segments lazily with one
    /// reused buffer. Returns the last position.
    ///
    /// [`Error::Gap`] if the log cannot supply `after + 1` onwards (older
    /// segments removed, or the log ends before `after`); [`Error::Corrupt`]
    /// for damage inside the part that is read.
    pub fn replay(
        &self,
        after: u64,
        mut f: impl FnMut(u64, u32, &[u8]) -> Result<()>,
    ) -> Result<u64> {
        let gap = |expected, found| Error::Gap {
            dir: self.dir.clone(),
            expected,
            found,
        };
        if after > self.last_position {
            return Err(gap(after, self.last_position));
        }
        let start = self
            .segments
            .iter()
            .rposition(|s| s.first <= after + 1)
            .ok_or_else(|| gap(after + 1, self.first_position()))?;
        let mut expected = self.segments[start].first;
        for seg in &self.segments[start..] {
            if seg.first != expected {
                return Err(gap(expected, seg.first));
            }
            let scanned = scan_segment(seg, self.last_position, |position, payload| {
                if position > after {
                    f(position, seg.version, payload)
                } else {
                    Ok(())
                }
            })?;
            if let Some(reason) = scanned.damage {
                return Err(Error::corrupt(
                    &seg.path,
                    format!("{reason} at offset {}", scanned.valid_len),
                ));
            }
            expected = scanned.next_position;
        }
        if expected != self.last_position + 1 {
            return Err(Error::corrupt(
                &self.dir,
                format!(
                    "log ends at position {} but held {} at open",
                    expected - 1,
                    self.last_position
                ),
            ));
        }
        Ok(self.last_position)
    }
}

struct Queue {
    next_position: u64,
    /// Framed records waiting for the writer, in position order.
    buf: Vec<u8>,
    /// One per record in `buf`.
    waiters: Vec<oneshot::Sender<std::result::Result<(), Arc<Error>>>>,
    syncs: Vec<mpsc::Sender<std::result::Result<(), Arc<Error>>>>,
    closing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    segments: Mutex<Vec<Segment>>,
    counters: Counters,
    #[cfg(test)]
    fail_next_write: std::sync::atomic::AtomicBool,
}

/// The write-ahead log handle. `Send + Sync`; share it by reference or `Arc`.
pub struct Wal {
    shared: Arc<Shared>,
    dir: PathBuf,
    writer: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl Wal {
    /// Open (or create) the log in `dir`, cut off a torn tail of the newest
    /// segment, and start the writer thread.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered)> {
        fs::create_dir_all(dir).map_err(Error::io("create log directory", dir))?;
        let mut segments = list_segments(dir, opts.version)?;
        // A new log, or a newest segment that was cut short while it was
        // created (it holds no record): start it with our header.
        match segments.last() {
            None => segments.push(start_segment(dir, 1, opts.version)?.1),
            Some(seg) if seg.version == 0 => {
                let first = seg.first;
                segments.pop();
                segments.push(start_segment(dir, first, opts.version)?.1);
            }
            Some(_) => {}
        }
        let mut active = segments.last().expect("ensured above").clone();

        let scanned = scan_segment(&active, u64::MAX, |_, _| Ok(()))?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&active.path)
            .map_err(Error::io("open", &active.path))?;
        if let Some(reason) = scanned.damage {
            let at = scanned.valid_len;
            if let Some((later, position)) =
                valid_record_after(&active.path, at, scanned.next_position)?
            {
                return Err(Error::corrupt(
                    &active.path,
                    format!(
                        "{reason} at offset {at}, but a valid record (position {position}) \
                         follows at offset {later}: refusing to drop acknowledged data"
                    ),
                ));
            }
            tracing::warn!(
                file = %active.path.display(),
                offset = at,
                reason,
                "truncating torn tail of the write-ahead log"
            );
            file.set_len(at)
                .and_then(|()| file.sync_data())
                .map_err(Error::io("truncate torn tail of", &active.path))?;
        }

        // Never append records of one version to a segment of another:
        // after an upgrade, the log continues in a new segment.
        let mut valid_len = scanned.valid_len;
        if active.version != opts.version {
            let (new_file, seg) = start_segment(dir, scanned.next_position, opts.version)?;
            tracing::info!(
                from = active.version,
                to = opts.version,
                segment = %seg.path.display(),
                "the log continues in a segment of the current format version"
            );
            file = new_file;
            valid_len = seg.header_len;
            segments.push(seg.clone());
            active = seg;
        }

        let last_position = scanned.next_position - 1;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                next_position: scanned.next_position,
                buf: Vec::new(),
                waiters: Vec::new(),
                syncs: Vec::new(),
                closing: false,
            }),
            wake: Condvar::new(),
            segments: Mutex::new(segments.clone()),
            counters: Counters::default(),
            #[cfg(test)]
            fail_next_write: Default::default(),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            policy: opts.fsync,
            segment_bytes: opts.segment_bytes,
            dir: dir.to_path_buf(),
            file,
            path: active.path,
            version: opts.version,
            header_len: active.header_len,
            len: valid_len,
            synced_len: valid_len,
            next_position: scanned.next_position,
            needs_cut: false,
            last_sync: Instant::now(),
            last_batch: 0,
            commit_wait: opts.commit_wait,
        };
        let handle = std::thread::Builder::new()
            .name("cohortd-wal".into())
            .spawn(move || writer.run())
            .map_err(Error::io("start writer thread for", dir))?;
        let wal = Wal {
            shared,
            dir: dir.to_path_buf(),
            writer: Mutex::new(Some(handle)),
        };
        let recovered = Recovered {
            dir: dir.to_path_buf(),
            segments,
            last_position,
        };
        Ok((wal, recovered))
    }

    /// Assign the next position and queue the record for the writer. Never
    /// blocks on IO; await [`Appended::durable`] before acknowledging.
    pub fn append(&self, payload: impl AsRef<[u8]>) -> Result<Appended> {
        let payload = payload.as_ref();
        let len = u32::try_from(payload.len()).map_err(|_| Error::Io {
            context: format!("append to {}", self.dir.display()),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("record of {} bytes exceeds 4 GiB", payload.len()),
            ),
        })?;
        let (tx, durable) = oneshot::channel();
        let mut q = self.shared.queue.lock();
        if q.closing {
            return Err(Error::Closed);
        }
        let position = q.next_position;
        q.next_position += 1;
        encode_frame(&mut q.buf, position, len, payload);
        q.waiters.push(tx);
        drop(q);
        self.shared.wake.notify_one();
        Ok(Appended { position, durable })
    }

    /// The last position handed out by [`Wal::append`] (0 for a new log).
    pub fn last_position(&self) -> u64 {
        self.shared.queue.lock().next_position - 1
    }

    pub fn stats(&self) -> WalStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WalStats {
            records: get(&c.records),
            bytes: get(&c.bytes),
            fsyncs: get(&c.fsyncs),
            batches: get(&c.batches),
            io_errors: get(&c.io_errors),
        }
    }

    /// Delete whole segments all of whose records are before `position`
    /// (never the active segment). Returns how many were removed.
    pub fn truncate_before(&self, position: u64) -> Result<usize> {
        let mut removed = 0;
        {
            let mut segments = self.shared.segments.lock();
            while segments.len() > 1 && segments[1].first <= position {
                let path = &segments[0].path;
                fs::remove_file(path).map_err(Error::io("remove log segment", path))?;
                segments.remove(0);
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Block until everything appended so far is written and fsynced,
    /// whatever the policy. Call it from a blocking context.
    pub fn sync(&self) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        {
            let mut q = self.shared.queue.lock();
            if q.closing {
                return Err(Error::Closed);
            }
            q.syncs.push(tx);
        }
        self.shared.wake.notify_one();
        rx.recv().map_err(|_| Error::Closed)?.map_err(unshare)
    }

    /// Write and fsync everything queued, then stop the writer thread.
    /// Appends after this are refused with [`Error::Closed`]; closing twice
    /// is a no-op. Takes `&self` so a shared (`Arc`) log can be closed at
    /// shutdown; blocking, like [`Wal::sync`].
    pub fn close(&self) -> Result<()> {
        let Some(handle) = self.writer.lock().take() else {
            return Ok(());
        };
        self.shared.queue.lock().closing = true;
        self.shared.wake.notify_one();
        handle.join().map_err(|_| Error::Closed)?
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the write-ahead log failed");
        }
    }
}

/// Turn a batch's shared error back into an owned one for a single caller
/// (the writer only produces `Io` errors; keep their kind).
fn unshare(e: Arc<Error>) -> Error {
    Arc::try_unwrap(e).unwrap_or_else(|shared| {
        let kind = match &*shared {
            Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        Error::Io {
            context: "write-ahead log".into(),
            source: io::Error::new(kind, shared.to_string()),
        }
    })
}

/// The writer thread's state: the only owner of the active segment file.
struct Writer {
    shared: Arc<Shared>,
    policy: FsyncPolicy,
    segment_bytes: u64,
    dir: PathBuf,
    file: File,
    path: PathBuf,
    /// The version in the header of every segment this writer starts.
    version: u32,
    /// The active segment's header length (records start after it).
    header_len: u64,
    /// Bytes of the header and of whole, successfully written records in
    /// the active segment.
    len: u64,
    /// Prefix of `len` known to be fsynced.
    synced_len: u64,
    /// Position of the next record to write.
    next_position: u64,
    /// A failed write may have left bytes past `len` that we could not cut.
    needs_cut: bool,
    last_sync: Instant,
    /// Records in the last batch written: when it was more than one,
    /// writers are concurrent and the next batch may wait briefly for as
    /// many (see `WalOptions::commit_wait`).
    last_batch: usize,
    commit_wait: Option<Duration>,
}

/// Marks the log closed when the writer thread ends, even by panic, so that
/// appends fail fast instead of queueing forever.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock();
        q.closing = true;
        q.waiters.clear();
        q.syncs.clear();
    }
}

impl Writer {
    fn run(mut self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let _guard = ExitGuard(Arc::clone(&shared));
        let mut buf = Vec::new();
        let mut waiters = Vec::new();
        let mut syncs = Vec::new();
        loop {
            let closing = {
                let mut q = shared.queue.lock();
                while q.waiters.is_empty() && q.syncs.is_empty() && !q.closing {
                    match self.sync_due() {
                        Some(due) if due <= Instant::now() => break,
                        Some(due) => {
                            shared.wake.wait_until(&mut q, due);
                        }
                        None => shared.wake.wait(&mut q),
                    }
                }
                // Group commit under concurrency: an fsync costs about the
                // same for one record as for many (on this VM ~0.25 ms and
                // ~0.15 ms of CPU), so when the last batch showed concurrent
                // writers, give them a moment to join this one. A lone
                // writer (last batch of one) never waits.
                if let (FsyncPolicy::Always, Some(wait)) = (self.policy, self.commit_wait) {
                    if self.last_batch > 1 && q.waiters.len() < self.last_batch {
                        let deadline = Instant::now() + wait;
                        while q.waiters.len() < self.last_batch && !q.closing {
                            if shared.wake.wait_until(&mut q, deadline).timed_out() {
                                break;
                            }
                        }
                    }
                }
                std::mem::swap(&mut q.buf, &mut buf);
                std::mem::swap(&mut q.waiters, &mut waiters);
                std::mem::swap(&mut q.syncs, &mut syncs);
                q.closing
            };

            if !waiters.is_empty() {
                let count = waiters.len() as u64;
                self.last_batch = waiters.len();
                match self.write_batch(&buf, count) {
                    Ok(()) => {
                        for w in waiters.drain(..) {
                            let _ = w.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        bump(&shared.counters.io_errors, 1);
                        tracing::error!(error = %e, records = count, "write-ahead log write failed");
                        let e = Arc::new(e);
                        // Records queued behind the failed batch would leave
                        // a hole in the positions: fail them as well and hand
                        // their positions out again.
                        let mut q = shared.queue.lock();
                        q.next_position = self.next_position;
                        q.buf.clear();
                        for w in waiters.drain(..).chain(q.waiters.drain(..)) {
                            let _ = w.send(Err(Arc::clone(&e)));
                        }
                    }
                }
            }
            buf.clear();
            buf.shrink_to(16 << 20);

            let due = self.sync_due().is_some_and(|due| due <= Instant::now());
            if !syncs.is_empty() || closing || due {
                let result = self.fsync().map_err(Arc::new);
                if let Err(e) = &result {
                    bump(&shared.counters.io_errors, 1);
                    tracing::error!(error = %e, "write-ahead log fsync failed");
                }
                for s in syncs.drain(..) {
                    let _ = s.send(result.clone());
                }
                if closing {
                    return result.map_err(unshare);
                }
            }
        }
    }

    /// When the `Interval` policy wants the next fsync, if anything is dirty.
    fn sync_due(&self) -> Option<Instant> {
        match self.policy {
            FsyncPolicy::Interval { millis } if self.synced_len < self.len => {
                Some(self.last_sync + Duration::from_millis(millis))
            }
            _ => None,
        }
    }

    fn write_batch(&mut self, bytes: &[u8], count: u64) -> Result<()> {
        if self.needs_cut {
            self.cut_back()?;
        }
        if self.len > self.header_len && self.len >= self.segment_bytes {
            self.roll()?;
        }
        let good = self.len;
        let mut result = self
            .write_bytes(bytes)
            .map_err(Error::io("append to", &self.path));
        if result.is_ok() {
            self.len += bytes.len() as u64;
            if self.policy == FsyncPolicy::Always {
                result = self.fsync();
            }
        }
        if let Err(e) = result {
            self.len = good;
            self.synced_len = self.synced_len.min(good);
            self.needs_cut = true;
            if let Err(cut) = self.cut_back() {
                tracing::error!(error = %cut, "cannot cut a failed write off the log; will retry");
            }
            return Err(e);
        }
        self.next_position += count;
        let c = &self.shared.counters;
        bump(&c.records, count);
        bump(&c.bytes, bytes.len() as u64);
        bump(&c.batches, 1);
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self.shared.fail_next_write.swap(false, Ordering::Relaxed) {
            self.file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ));
        }
        self.file.write_all(bytes)
    }

    /// Remove whatever a failed write left after the last whole record.
    fn cut_back(&mut self) -> Result<()> {
        self.file
            .set_len(self.len)
            .map_err(Error::io("cut a failed write off", &self.path))?;
        self.needs_cut = false;
        Ok(())
    }

    fn fsync(&mut self) -> Result<()> {
        if self.synced_len == self.len {
            return Ok(());
        }
        // Set before trying, so a failing fsync under `Interval` is retried
        // an interval later rather than in a busy loop.
        self.last_sync = Instant::now();
        self.file
            .sync_data()
            .map_err(Error::io("fsync", &self.path))?;
        bump(&self.shared.counters.fsyncs, 1);
        self.synced_len = self.len;
        Ok(())
    }

    /// Start a new segment named after the next position. The old one is
    /// fsynced first, so only the newest segment can ever have a torn tail.
    fn roll(&mut self) -> Result<()> {
        self.fsync()?;
        let (file, seg) = start_segment(&self.dir, self.next_position, self.version)?;
        self.file = file;
        self.path = seg.path.clone();
        self.header_len = seg.header_len;
        self.len = seg.header_len;
        self.synced_len = seg.header_len;
        self.shared.segments.lock().push(seg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts() -> WalOptions {
        WalOptions::default()
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i} {}", "x".repeat((i % 7) as usize)).into_bytes()
    }

    fn replay_all(r: &Recovered, after: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        r.replay(after, |p, _, b| {
            out.push((p, b.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    fn versions(r: &Recovered) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        r.replay(0, |p, v, _| {
            out.push((p, v));
            Ok(())
        })
        .expect("replay");
        out
    }

    fn with_version(version: u32) -> WalOptions {
        WalOptions { version, ..opts() }
    }

    #[test]
    fn a_headerless_log_continues_in_a_segment_of_the_current_version() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let (wal, _) = Wal::open(d.path(), with_version(HEADERLESS_VERSION)).expect("open");
            append_n(&wal, 1..=3);
        }
        let first = segment_path(d.path(), 1);
        assert_eq!(
            fs::read(&first).expect("read")[..4],
            (payload(1).len() as u32).to_le_bytes()[..],
            "a headerless segment starts with its first record"
        );
        {
            let (wal, r) = Wal::open(d.path(), with_version(2)).expect("open");
            assert_eq!(versions(&r), vec![(1, 1), (2, 1), (3, 1)]);
            append_n(&wal, 4..=5);
        }
        let second = segment_path(d.path(), 4);
        assert_eq!(&fs::read(&second).expect("read")[..8], SEGMENT_MAGIC);
        let (_wal, r) = Wal::open(d.path(), with_version(2)).expect("open");
        assert_eq!(
            versions(&r),
            vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)],
            "each record keeps the version of its segment"
        );
        assert_eq!(replay_all(&r, 0).expect("replay")[4].1, payload(5));
    }

    #[test]
    fn a_segment_of_a_newer_version_is_refused_by_name() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let (wal, _) = Wal::open(d.path(), with_version(3)).expect("open");
            append_n(&wal, 1..=2);
        }
        let Err(e) = Wal::open(d.path(), with_version(2)) else {
            panic!("a newer segment was opened");
        };
        match &e {
            Error::UnsupportedVersion {
                file,
                found: 3,
                newest: 2,
            } => assert_eq!(*file, segment_path(d.path(), 1)),
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
        let message = e.to_string();
        assert!(message.contains("format version 3"), "{message}");
        assert!(message.contains("versions 1 to 2"), "{message}");
    }

    #[test]
    fn an_unwritten_newest_segment_gets_its_header_and_a_damaged_one_is_corrupt() {
        for torn in [
            &b""[..],
            &b"COHD"[..],
            &SEGMENT_MAGIC[..],
            &segment_header(2)[..13],
        ] {
            let d = tempfile::tempdir().expect("tempdir");
            fs::write(segment_path(d.path(), 1), torn).expect("write");
            let (wal, r) = Wal::open(d.path(), opts()).expect("open");
            assert_eq!(r.last_position(), 0);
            append_n(&wal, 1..=2);
            drop(wal);
            let (_wal, r) = Wal::open(d.path(), opts()).expect("reopen");
            let v = opts().version;
            assert_eq!(versions(&r), vec![(1, v), (2, v)], "torn header {torn:?}");
        }
        let d = tempfile::tempdir().expect("tempdir");
        let mut header = segment_header(2);
        header[9] ^= 1;
        fs::write(segment_path(d.path(), 1), header).expect("write");
        assert!(matches!(
            Wal::open(d.path(), opts()),
            Err(Error::Corrupt { .. })
        ));
    }

    fn append_n(wal: &Wal, range: std::ops::RangeInclusive<u64>) {
        let pending: Vec<Appended> = range
            .map(|i| wal.append(payload(i)).expect("append"))
            .collect();
        for a in pending {
            a.wait_blocking().expect("durable");
        }
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segs = list_segments(dir, u32::MAX).expect("list");
        assert_eq!(segs.len(), 1);
        segs[0].path.clone()
    }

    #[test]
    fn records_round_trip_and_replay_from_a_position() {
        let d = tempfile::tempdir().expect("tempdir");
        let (wal, rec) = Wal::open(d.path(), opts()).expect("open");
        assert_eq!(rec.last_position(), 0);
        assert!(replay_all(&rec, 0).expect("replay").is_empty());
        let a = wal.append(b"").expect("append");
        assert_eq!(a.position, 1);
        a.wait_blocking().expect("durable");
        append_n(&wal, 2..=50);
        assert_eq!(wal.last_position(), 50);
        wal.close().expect("close");

        let (wal, rec) = Wal::open(d.path(), opts()).expect("reopen");
        assert_eq!(rec.last_position(), 50);
        let all = replay_all(&rec, 0).expect("replay");
        assert_eq!(all.len(), 50);
        assert_eq!(all[0], (1, Vec::new()));
        assert_eq!(all[49], (50, payload(50)));
        let tail = replay_all(&rec, 47).expect("replay");
        assert_eq!(
            tail.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![48, 49, 50]
        );
        assert!(replay_all(&rec, 50).expect("replay").is_empty());
        assert_eq!(wal.append(b"next").expect("append").position, 51);
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_offset_and_appends_continue() {
        let d = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(d.path(), opts()).expect("open");
        append_n(&wal, 1..=2);
        let two = fs::metadata(only_segment(d.path())).expect("stat").len();
        append_n(&wal, 3..=3);
        wal.close().expect("close");
        let full = fs::read(only_segment(d.path())).expect("read");

        for cut in two as usize..full.len() {
            let d = tempfile::tempdir().expect("tempdir");
            fs::write(segment_path(d.path(), 1), &full[..cut]).expect("write");
            let (wal, rec) = Wal::open(d.path(), opts()).expect("open torn");
            assert_eq!(rec.last_position(), 2, "cut at {cut}");
            assert_eq!(replay_all(&rec, 0).expect("replay").len(), 2);
            append_n(&wal, 3..=4);
            wal.close().expect("close");
            let (_wal, rec) = Wal::open(d.path(), opts()).expect("reopen");
            let got = replay_all(&rec, 0).expect("replay");
            assert_eq!(
                got.iter().map(|r| r.0).collect::<Vec<_>>(),
                vec![1, 2, 3, 4]
            );
            assert_eq!(got[2].1, payload(3));
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn_not_corrupt() {
        let d = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(d.path(), opts()).expect("open");
        append_n(&wal, 1..=3);
        wal.close().expect("close");
        let path = only_segment(d.path());
        let mut bytes = fs::read(&path).expect("read");
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 4096]);
        fs::write(&path, bytes).expect("write");
        let (_wal, rec) = Wal::open(d.path(), opts()).expect("open");
        assert_eq!(rec.last_position(), 3);
        assert_eq!(fs::metadata(&path).expect("stat").len(), good);
    }

    #[test]
    fn a_flipped_byte_before_valid_records_is_corrupt() {
        let d = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(d.path(), opts()).expect("open");
        append_n(&wal, 1..=5);
        wal.close().expect("close");
        let path = only_segment(d.path());
        let clean = fs::read(&path).expect("read");
        let second = FRAME_HEADER + payload(1).len();
        // In the payload, in the length field, in the position field.
        for offset in [second + FRAME_HEADER + 2, second + 1, second + 9] {
            let mut bytes = clean.clone();
            bytes[offset] ^= 0x10;
            fs::write(&path, bytes).expect("write");
            match Wal::open(d.path(), opts()) {
                Err(Error::Corrupt { file, .. }) => assert_eq!(file, path),
                Err(other) => panic!("offset {offset}: expected Corrupt, got {other}"),
                Ok(_) => panic!("offset {offset}: expected Corrupt, opened"),
            }
        }
    }

    #[test]
    fn segments_roll_and_truncate_before_removes_whole_old_ones() {
        let d = tempfile::tempdir().expect("tempdir");
        let small = WalOptions {
            segment_bytes: 100,
            ..opts()
        };
        let (wal, _) = Wal::open(d.path(), small.clone()).expect("open");
        for i in 1..=30 {
            // One at a time, so each batch is one record.
            append_n(&wal, i..=i);
        }
        let firsts: Vec<u64> = list_segments(d.path(), u32::MAX)
            .expect("list")
            .iter()
            .map(|s| s.first)
            .collect();
        assert!(firsts.len() > 5, "{firsts:?}");
        assert_eq!(firsts[0], 1);

        let removed = wal.truncate_before(12).expect("truncate");
        let left: Vec<u64> = list_segments(d.path(), u32::MAX)
            .expect("list")
            .iter()
            .map(|s| s.first)
            .collect();
        assert_eq!(removed, firsts.len() - left.len());
        assert!(
            left[0] <= 12 && left.get(1).is_none_or(|&f| f > 12),
            "{left:?}"
        );
        // Never the active segment, however far we truncate.
        wal.truncate_before(u64::MAX).expect("truncate");
        assert_eq!(list_segments(d.path(), u32::MAX).expect("list").len(), 1);
        append_n(&wal, 31..=31);
        wal.close().expect("close");

        let (_wal, rec) = Wal::open(d.path(), small).expect("reopen");
        assert_eq!(rec.last_position(), 31);
        assert!(matches!(
            replay_all(&rec, 0),
            Err(Error::Gap { expected: 1, .. })
        ));
        let tail = replay_all(&rec, rec.first_position() - 1).expect("replay");
        assert_eq!(tail.last().map(|r| r.0), Some(31));
    }

    #[test]
    fn a_zero_segment_size_gives_one_segment_per_batch() {
        let d = tempfile::tempdir().expect("tempdir");
        let o = WalOptions {
            segment_bytes: 0,
            ..opts()
        };
        let (wal, _) = Wal::open(d.path(), o.clone()).expect("open");
        for i in 1..=3 {
            append_n(&wal, i..=i);
        }
        assert_eq!(wal.truncate_before(2).expect("truncate"), 1);
        wal.close().expect("close");
        let firsts: Vec<u64> = list_segments(d.path(), u32::MAX)
            .expect("list")
            .iter()
            .map(|s| s.first)
            .collect();
        assert_eq!(firsts, vec![2, 3]);
        let (_wal, rec) = Wal::open(d.path(), o).expect("reopen");
        assert_eq!(replay_all(&rec, 1).expect("replay").len(), 2);
    }

    #[test]
    fn a_missing_middle_segment_is_a_gap_and_a_damaged_old_one_is_corrupt() {
        let d = tempfile::tempdir().expect("tempdir");
        let small = WalOptions {
            segment_bytes: 60,
            ..opts()
        };
        let (wal, _) = Wal::open(d.path(), small.clone()).expect("open");
        for i in 1..=12 {
            append_n(&wal, i..=i);
        }
        wal.close().expect("close");
        let segs = list_segments(d.path(), u32::MAX).expect("list");
        assert!(segs.len() >= 4);

        let bytes = fs::read(&segs[0].path).expect("read");
        fs::write(&segs[0].path, &bytes[..bytes.len() - 1]).expect("write");
        let (wal, rec) = Wal::open(d.path(), small.clone()).expect("open");
        assert!(matches!(replay_all(&rec, 0), Err(Error::Corrupt { .. })));
        // Replaying after the damaged segment does not need it.
        assert!(replay_all(&rec, segs[1].first - 1).is_ok());
        drop(wal);

        fs::remove_file(&segs[2].path).expect("remove");
        let (_wal, rec) = Wal::open(d.path(), small).expect("open");
        match replay_all(&rec, segs[1].first - 1) {
            Err(Error::Gap {
                expected, found, ..
            }) => {
                assert_eq!(expected, segs[2].first);
                assert_eq!(found, segs[3].first);
            }
            other => panic!("expected Gap, got {other:?}"),
        }
        // A snapshot newer than the whole log is a gap too.
        assert!(matches!(replay_all(&rec, 1000), Err(Error::Gap { .. })));
    }

    #[test]
    fn concurrent_appends_share_fsyncs() {
        let d = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(d.path(), opts()).expect("open");
        // Like request handlers: each thread waits for its record to be
        // durable before sending the next, so batching comes only from
        // concurrency.
        let (threads, per_thread) = (8, 200);
        let mut positions: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let wal = &wal;
                    s.spawn(move || {
                        (0..per_thread)
                            .map(|i| {
                                let a = wal.append(format!("{t}:{i}")).expect("append");
                                a.wait_blocking().expect("durable")
                            })
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let records = (threads * per_thread) as u64;
        positions.sort_unstable();
        assert_eq!(positions, (1..=records).collect::<Vec<_>>());
        let stats = wal.stats();
        println!("group commit: {stats:?}");
        assert_eq!(stats.records, records);
        assert!(stats.fsyncs < stats.records, "{stats:?}");
        wal.close().expect("close");

        let (_wal, rec) = Wal::open(d.path(), opts()).expect("reopen");
        let all = replay_all(&rec, 0).expect("replay");
        assert_eq!(all.len() as u64, records);
        assert!(all.iter().zip(1..).all(|(r, p)| r.0 == p));
        // Each thread's records appear in the order it appended them.
        for t in 0..threads {
            let mine: Vec<String> = all
                .iter()
                .map(|r| String::from_utf8_lossy(&r.1).into_owned())
                .filter(|s| s.starts_with(&format!("{t}:")))
                .collect();
            let expected: Vec<String> = (0..per_thread).map(|i| format!("{t}:{i}")).collect();
            assert_eq!(mine, expected);
        }
    }

    #[tokio::test]
    async fn interval_and_off_policies_acknowledge_and_sync_on_demand() {
        for policy in [FsyncPolicy::Interval { millis: 5 }, FsyncPolicy::Off] {
            let d = tempfile::tempdir().expect("tempdir");
            let o = WalOptions {
                fsync: policy,
                ..opts()
            };
            let (wal, _) = Wal::open(d.path(), o.clone()).expect("open");
            for i in 1..=10 {
                assert_eq!(
                    wal.append(payload(i)).expect("append").wait().await.ok(),
                    Some(i)
                );
            }
            if policy == FsyncPolicy::Off {
                assert_eq!(wal.stats().fsyncs, 0);
            } else {
                // The background timer syncs a dirty log without new writes.
                let deadline = Instant::now() + Duration::from_secs(10);
                while wal.stats().fsyncs == 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                assert!(wal.stats().fsyncs >= 1);
            }
            wal.sync().expect("sync");
            wal.close().expect("close");
            let (_wal, rec) = Wal::open(d.path(), o).expect("reopen");
            assert_eq!(rec.last_position(), 10);
        }
    }

    #[test]
    fn a_failed_write_is_cut_off_and_its_positions_are_reused() {
        let d = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(d.path(), opts()).expect("open");
        append_n(&wal, 1..=3);
        wal.shared.fail_next_write.store(true, Ordering::Relaxed);
        let failed = wal.append(b"lost").expect("append");
        assert_eq!(failed.position, 4);
        let err = failed.wait_blocking().expect_err("injected failure");
        assert!(err.to_string().contains("no space left"), "{err}");
        assert_eq!(wal.stats().io_errors, 1);

        // Space is back: the next append retries at the same position.
        assert_eq!(wal.last_position(), 3);
        let again = wal.append(payload(4)).expect("append");
        assert_eq!(again.position, 4);
        again.wait_blocking().expect("durable");
        wal.close().expect("close");

        let (_wal, rec) = Wal::open(d.path(), opts()).expect("reopen");
        let all = replay_all(&rec, 0).expect("replay");
        assert_eq!(
            all.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(all[3].1, payload(4));
    }

    #[test]
    fn appends_after_close_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(d.path(), opts()).expect("open");
        let queued = wal.append(b"last").expect("append");
        wal.close().expect("close");
        assert_eq!(queued.wait_blocking().ok(), Some(1));
        assert!(matches!(wal.append(b"x"), Err(Error::Closed)));
        assert!(matches!(wal.sync(), Err(Error::Closed)));
        wal.close().expect("closing twice");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_truncation_recovers_exactly_the_whole_records_before_it(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..12),
            cut_seed in any::<prop::sample::Index>(),
        ) {
            let mut file = Vec::new();
            let mut ends = vec![0usize];
            for (i, p) in payloads.iter().enumerate() {
                encode_frame(&mut file, i as u64 + 1, p.len() as u32, p);
                ends.push(file.len());
            }
            let cut = cut_seed.index(file.len() + 1);
            let d = tempfile::tempdir().expect("tempdir");
            fs::write(segment_path(d.path(), 1), &file[..cut]).expect("write");
            let (wal, rec) = Wal::open(d.path(), opts()).expect("open");
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            let got = replay_all(&rec, 0).expect("replay");
            prop_assert_eq!(got.len(), whole);
            for (i, (p, bytes)) in got.iter().enumerate() {
                prop_assert_eq!(*p, i as u64 + 1);
                prop_assert_eq!(bytes, &payloads[i]);
            }
            prop_assert_eq!(wal.append(b"next").expect("append").position, whole as u64 + 1);
        }
    }
}
