//! Snapshot files: a fixed, checksummed header and an opaque payload.
//!
//! ```text
//! offset size
//!      0    8  magic b"COHORTD\0"
//!      8    4  format_version (u32 LE: the `persist::schema` version of the payload)
//!     12    8  log_position   (u64 LE, last WAL position the image contains)
//!     20    8  created_at_millis (i64 LE)
//!     28    8  payload_len    (u64 LE)
//!     36    4  crc32(payload)
//!     40    4  crc32(bytes 0..40)
//!     44    …  payload (produced by the caller with `codec::encode`)
//! ```
//!
//! The header has its own checksum so that [`list`] and [`inspect`] can trust
//! the position and size without reading a gigabyte of payload; [`load`]
//! verifies everything. A file is published by writing a temp file
//! `{id}.{pid}-{n}.snap.tmp` (unique per process and write, so two writes of
//! the same id never share one), fsyncing it, renaming it to `{id}.snap` and
//! fsyncing the directory, so a crash leaves either the old set of snapshots
//! or the new one, plus at most a `.tmp` file that start-up ([`load_newest`])
//! removes. A write that *fails* removes its temp file itself: on a full disk
//! a leftover would keep the space, and the next write would fail too.
//!
//! Retention ([`prune`]) counts log positions, not files: one log position is
//! one state, so a second file of a position would only push an older
//! restore point out. [`find_at`] lets a writer reuse the file it has.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{sync_dir, Error, Result};

const MAGIC: &[u8; 8] = b"COHORTD\0";
const HEADER_LEN: usize = 44;
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// What the header says about one snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `snap-{log_position:020}-{created_at_millis}`; the file is `{id}.snap`.
    pub id: String,
    pub created_at_millis: i64,
    /// Size of the whole file, header included.
    pub bytes: u64,
    pub log_position: u64,
    /// The schema version of the payload (`persist::schema`).
    pub format_version: u32,
    pub path: PathBuf,
}

struct Header {
    format_version: u32,
    log_position: u64,
    created_at_millis: i64,
    payload_len: u64,
    payload_crc: u32,
}

impl Header {
    fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        b[12..20].copy_from_slice(&self.log_position.to_le_bytes());
        b[20..28].copy_from_slice(&self.created_at_millis.to_le_bytes());
        b[28..36].copy_from_slice(&self.payload_len.to_le_bytes());
        b[36..40].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parse and verify a header; the error is the reason, for `Corrupt`.
    fn parse(b: &[u8; HEADER_LEN]) -> std::result::Result<Header, String> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if &b[0..8] != MAGIC {
            return Err("bad magic: not a cohortd snapshot".into());
        }
        if crc32fast::hash(&b[0..40]) != u32_at(40) {
            return Err("header checksum mismatch".into());
        }
        Ok(Header {
            format_version: u32_at(8),
            log_position: u64_at(12),
            created_at_millis: u64_at(20) as i64,
            payload_len: u64_at(28),
            payload_crc: u32_at(36),
        })
    }
}

fn snapshot_id(log_position: u64, created_at_millis: i64) -> String {
    format!("snap-{log_position:020}-{created_at_millis}")
}

/// Write a snapshot durably and return its info once it is published
/// ([`write_streamed`] of a payload already in memory).
pub fn write(
    dir: &Path,
    log_position: u64,
    created_at_millis: i64,
    format_version: u32,
    payload: &[u8],
) -> Result<SnapshotInfo> {
    write_streamed(dir, log_position, created_at_millis, format_version, |w| {
        w.write_all(payload)
    })
}

/// Write a snapshot whose payload `encode` writes as it goes, durably, and
/// return its info once it is published: the payload is never held in
/// memory whole (a snapshot of 10M profiles is 4 GB). The header's length
/// and checksum are filled in after the payload, at the start of the file,
/// before the fsync and the rename; on failure nothing new is left in
/// `dir` (see [`publish`]).
pub fn write_streamed(
    dir: &Path,
    log_position: u64,
    created_at_millis: i64,
    format_version: u32,
    encode: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<SnapshotInfo> {
    let id = snapshot_id(log_position, created_at_millis);
    let mut payload_len = 0;
    let path = publish(dir, &id, |out| {
        out.write_all(&[0; HEADER_LEN])?;
        let mut counted = Counted {
            inner: &mut *out,
            len: 0,
            crc: crc32fast::Hasher::new(),
        };
        encode(&mut counted)?;
        let (len, crc) = (counted.len, counted.crc.finalize());
        payload_len = len;
        let header = Header {
            format_version,
            log_position,
            created_at_millis,
            payload_len: len,
            payload_crc: crc,
        }
        .to_bytes();
        out.seek(io::SeekFrom::Start(0))?;
        out.write_all(&header)
    })?;
    Ok(SnapshotInfo {
        id,
        created_at_millis,
        bytes: HEADER_LEN as u64 + payload_len,
        log_position,
        format_version,
        path,
    })
}

/// Passes bytes on, counting them and checksumming them.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    len: u64,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Temp files written by this process so far: with the process id, makes
/// every temp file name unique, even for two writes of one id.
static TEMP_FILES: AtomicU64 = AtomicU64::new(0);

fn temp_path(dir: &Path, id: &str) -> PathBuf {
    let n = TEMP_FILES.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{id}.{}-{n}{TMP_SUFFIX}", std::process::id()))
}

/// Publishes `{id}.snap` in `dir` atomically: `fill` writes the contents
/// into a fresh temp file, which is fsynced, renamed into place, and the
/// directory fsynced. If anything before the rename fails, the temp file
/// is removed before the error is returned. (If only the final directory
/// fsync fails, the complete file is in place but may not survive a power
/// cut; the error says so and the file is left: it is a valid snapshot.)
fn publish(
    dir: &Path,
    id: &str,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(Error::io("create snapshot directory", dir))?;
    let tmp = temp_path(dir, id);
    let path = dir.join(format!("{id}{SUFFIX}"));
    let written = write_temp(&tmp, fill)
        .and_then(|()| fs::rename(&tmp, &path).map_err(Error::io("rename into place", &tmp)));
    if let Err(e) = written {
        discard(&tmp);
        return Err(e);
    }
    sync_dir(dir)?;
    Ok(path)
}

/// Creates `tmp`, fills it and fsyncs it; the file is closed on return,
/// whatever the outcome.
fn write_temp(tmp: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> Result<()> {
    let file = File::create(tmp).map_err(Error::io("create", tmp))?;
    let mut out = BufWriter::new(file);
    fill(&mut out).map_err(Error::io("write", tmp))?;
    let file = out
        .into_inner()
        .map_err(|e| Error::io("flush", tmp)(e.into_error()))?;
    file.sync_all().map_err(Error::io("fsync", tmp))
}

/// Removes the temp file of a failed write (best effort: the failure
/// itself is what the caller reports; start-up removes any leftover).
fn discard(tmp: &Path) {
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            file = %tmp.display(),
            error = %e,
            "cannot remove the temp file of a failed snapshot; start-up will"
        ),
    }
}

/// Open a snapshot file and verify its header and length, without reading
/// the payload.
fn open_verified(path: &Path) -> Result<(File, Header, SnapshotInfo)> {
    let mut file = File::open(path).map_err(Error::io("open", path))?;
    let bytes = file.metadata().map_err(Error::io("stat", path))?.len();
    let mut raw = [0u8; HEADER_LEN];
    if bytes < HEADER_LEN as u64 {
        return Err(Error::corrupt(
            path,
            format!("truncated: {bytes} bytes, shorter than the {HEADER_LEN}-byte header"),
        ));
    }
    file.read_exact(&mut raw)
        .map_err(Error::io("read header of", path))?;
    let header = Header::parse(&raw).map_err(|reason| Error::corrupt(path, reason))?;
    let expected = HEADER_LEN as u64 + header.payload_len;
    if bytes != expected {
        return Err(Error::corrupt(
            path,
            format!("length {bytes} bytes, header promises {expected} (truncated or padded)"),
        ));
    }
    let info = SnapshotInfo {
        id: snapshot_id(header.log_position, header.created_at_millis),
        created_at_millis: header.created_at_millis,
        bytes,
        log_position: header.log_position,
        format_version: header.format_version,
        path: path.to_path_buf(),
    };
    Ok((file, header, info))
}

/// Header and length only: what `cohortd inspect FILE` prints.
pub fn inspect(path: &Path) -> Result<SnapshotInfo> {
    open_verified(path).map(|(_, _, info)| info)
}

/// Read and fully verify a snapshot: magic, version, header checksum, length
/// and payload checksum. Anything wrong is [`Error::Corrupt`].
pub fn load(path: &Path) -> Result<(SnapshotInfo, Vec<u8>)> {
    load_with(path, &mut |_, _| {})
}

/// [`load`], telling `read` the payload bytes read so far and in all as it
/// goes (`cohortd inspect`'s progress bar).
pub fn load_with(path: &Path, read: &mut dyn FnMut(u64, u64)) -> Result<(SnapshotInfo, Vec<u8>)> {
    /// Bytes per read between two reports.
    const STEP: usize = 16 << 20;
    let (mut file, header, info) = open_verified(path)?;
    let len = usize::try_from(header.payload_len)
        .map_err(|_| Error::corrupt(path, "payload larger than this platform's memory"))?;
    let mut payload = vec![0u8; len];
    for (i, chunk) in payload.chunks_mut(STEP).enumerate() {
        file.read_exact(chunk)
            .map_err(Error::io("read payload of", path))?;
        read((i * STEP + chunk.len()) as u64, len as u64);
    }
    if crc32fast::hash(&payload) != header.payload_crc {
        return Err(Error::corrupt(path, "payload checksum mismatch"));
    }
    Ok((info, payload))
}

/// All snapshots in `dir` whose header verifies, newest first (by
/// `log_position`, then `created_at_millis`). Reads headers only. Files with
/// a bad header are logged and skipped (left in place for a human to look
/// at). `.snap.tmp` files are ignored: one may be a write in progress.
pub fn list(dir: &Path) -> Result<Vec<SnapshotInfo>> {
    let mut found = Vec::new();
    for path in files(dir)? {
        if path.to_str().is_some_and(|p| p.ends_with(SUFFIX)) {
            match inspect(&path) {
                Ok(info) => found.push(info),
                Err(e) => tracing::warn!(error = %e, "skipping unreadable snapshot"),
            }
        }
    }
    found.sort_by(|a, b| {
        (b.log_position, b.created_at_millis).cmp(&(a.log_position, a.created_at_millis))
    });
    Ok(found)
}

/// Remove `.snap.tmp` files left by a write that was interrupted. Only safe
/// when no snapshot is being written, so [`load_newest`] (start-up) calls it
/// and [`list`] does not. Returns how many were removed.
pub fn remove_leftovers(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for path in files(dir)? {
        if path.to_str().is_some_and(|p| p.ends_with(TMP_SUFFIX)) {
            tracing::info!(file = %path.display(), "removing leftover snapshot temp file");
            fs::remove_file(&path).map_err(Error::io("remove", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Paths in `dir`; a missing directory is empty (nothing written yet).
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read snapshot directory", dir)(e)),
    };
    entries
        .map(|e| {
            e.map(|e| e.path())
                .map_err(Error::io("read snapshot directory", dir))
        })
        .collect()
}

/// The newest snapshot that fully verifies, with its payload; corrupt ones
/// are logged and skipped. `None` when there is no usable snapshot.
/// Also removes leftover temp files: call it at start-up.
pub fn load_newest(dir: &Path) -> Result<Option<(SnapshotInfo, Vec<u8>)>> {
    remove_leftovers(dir)?;
    for info in list(dir)? {
        match load(&info.path) {
            Ok(loaded) => return Ok(Some(loaded)),
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(error = %e, "skipping corrupt snapshot, trying the previous one");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The newest snapshot of exactly `log_position` whose payload verifies,
/// if there is one: a writer about to snapshot that position can answer
/// with it instead of writing a second file of the same state. Reads the
/// candidate's whole payload (still far cheaper than encoding and writing
/// a new one); a candidate that fails verification is logged and passed.
pub fn find_at(dir: &Path, log_position: u64) -> Result<Option<SnapshotInfo>> {
    for info in list(dir)?
        .into_iter()
        .filter(|s| s.log_position == log_position)
    {
        match load(&info.path) {
            Ok((info, _)) => return Ok(Some(info)),
            Err(e) => tracing::warn!(error = %e, "not reusing a damaged snapshot"),
        }
    }
    Ok(None)
}

/// Keep the snapshots of the newest `keep` log positions and delete the
/// rest; returns what was removed. Of several files of one position (one
/// state), only the newest is kept: a duplicate never counts as a restore
/// point, so it never pushes an older position out.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<SnapshotInfo>> {
    let mut positions = 0;
    let mut previous = None;
    let removed: Vec<SnapshotInfo> = list(dir)?
        .into_iter()
        .filter(|s| {
            if previous == Some(s.log_position) {
                return true;
            }
            previous = Some(s.log_position);
            positions += 1;
            positions > keep
        })
        .collect();
    for info in &removed {
        fs::remove_file(&info.path).map_err(Error::io("remove snapshot", &info.path))?;
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// The first WAL position the engine must keep, given `list(dir)`: records
/// from the second-newest snapshot position on, so that a newest snapshot
/// found corrupt at start-up can be replaced by the one before it plus the
/// log. With fewer than two positions, everything is kept (returns 1).
pub fn wal_keep_from(snapshots: &[SnapshotInfo]) -> u64 {
    let newest = snapshots.first().map(|s| s.log_position);
    snapshots
        .iter()
        .map(|s| s.log_position)
        .find(|&p| Some(p) != newest)
        .map_or(1, |p| p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn flip(path: &Path, offset: usize) {
        let mut bytes = fs::read(path).expect("read");
        bytes[offset] ^= 0x40;
        fs::write(path, bytes).expect("write");
    }

    #[test]
    fn write_then_load_round_trips() {
        let d = dir();
        let info = write(d.path(), 42, 1_700_000_000_123, 2, b"image").expect("write");
        assert_eq!(info.id, "snap-00000000000000000042-1700000000123");
        assert_eq!(info.path, d.path().join(format!("{}.snap", info.id)));
        assert_eq!(info.bytes, 44 + 5);
        let (loaded, payload) = load(&info.path).expect("load");
        assert_eq!(loaded, info);
        assert_eq!(payload, b"image");
        assert_eq!(inspect(&info.path).expect("inspect"), info);
    }

    #[test]
    fn a_streamed_payload_writes_the_same_file_and_a_failed_one_leaves_nothing() {
        let (a, b) = (dir(), dir());
        let payload: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let whole = write(a.path(), 7, 5, 7, &payload).expect("write");
        let streamed = write_streamed(b.path(), 7, 5, 7, |w| {
            for chunk in payload.chunks(333) {
                w.write_all(chunk)?;
            }
            Ok(())
        })
        .expect("write");
        assert_eq!(streamed.bytes, whole.bytes);
        assert_eq!(
            fs::read(&streamed.path).unwrap(),
            fs::read(&whole.path).unwrap()
        );
        let (_, loaded) = load(&streamed.path).expect("load");
        assert_eq!(loaded, payload);
        let c = dir();
        let failed = write_streamed(c.path(), 8, 5, 7, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("the encoder failed"))
        });
        assert!(failed.is_err());
        assert_eq!(
            fs::read_dir(c.path()).unwrap().count(),
            0,
            "no temp file left"
        );
    }

    #[test]
    fn list_is_newest_first_and_prune_keeps_the_newest() {
        let d = dir();
        let a = write(d.path(), 10, 5, 2, b"a").expect("write");
        let c = write(d.path(), 30, 1, 2, b"c").expect("write");
        let b2 = write(d.path(), 20, 9, 2, b"b2").expect("write");
        let b1 = write(d.path(), 20, 3, 2, b"b1").expect("write");
        let listed = list(d.path()).expect("list");
        assert_eq!(listed, vec![c.clone(), b2.clone(), b1.clone(), a.clone()]);
        assert_eq!(wal_keep_from(&listed), 21);
        assert_eq!(wal_keep_from(&listed[..1]), 1);

        let removed = prune(d.path(), 2).expect("prune");
        assert_eq!(removed, vec![b1, a]);
        assert_eq!(list(d.path()).expect("list"), vec![c, b2]);
    }

    #[test]
    fn a_missing_directory_lists_nothing() {
        let d = dir();
        assert!(list(&d.path().join("nope")).expect("list").is_empty());
        assert!(load_newest(&d.path().join("nope")).expect("load").is_none());
    }

    #[test]
    fn corrupt_snapshots_are_rejected_by_load_and_skipped() {
        let d = dir();
        let good = write(d.path(), 1, 0, 2, b"older image").expect("write");
        let magic = write(d.path(), 2, 0, 2, b"x").expect("write");
        flip(&magic.path, 0);
        let header = write(d.path(), 3, 0, 2, b"x").expect("write");
        flip(&header.path, 14);
        let truncated = write(d.path(), 4, 0, 2, b"0123456789").expect("write");
        let bytes = fs::read(&truncated.path).expect("read");
        fs::write(&truncated.path, &bytes[..bytes.len() - 3]).expect("write");
        let payload = write(d.path(), 5, 0, 2, b"newest image").expect("write");
        flip(&payload.path, HEADER_LEN + 3);

        let reason = |p: &Path| match load(p) {
            Err(Error::Corrupt { reason, .. }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        };
        assert!(reason(&magic.path).contains("magic"));
        assert!(reason(&header.path).contains("header checksum"));
        assert!(reason(&truncated.path).contains("truncated"));
        assert!(reason(&payload.path).contains("payload checksum"));

        // Header checks are cheap, so `list` skips the first three; the
        // payload checksum is only seen by `load`, so `load_newest` falls
        // back past it to the older good image.
        let ids: Vec<u64> = list(d.path())
            .expect("list")
            .iter()
            .map(|s| s.log_position)
            .collect();
        assert_eq!(ids, vec![5, 1]);
        let (info, image) = load_newest(d.path()).expect("load").expect("some");
        assert_eq!(info, good);
        assert_eq!(image, b"older image");
    }

    #[test]
    fn a_leftover_temp_file_is_ignored_and_removed_at_start_up() {
        let d = dir();
        let good = write(d.path(), 7, 0, 2, b"ok").expect("write");
        let tmp = d.path().join("snap-00000000000000000009-0.snap.tmp");
        fs::write(&tmp, b"half a snapsh").expect("write");
        assert_eq!(list(d.path()).expect("list"), vec![good.clone()]);
        assert!(tmp.exists(), "list must not race a write in progress");
        let (info, _) = load_newest(d.path()).expect("load").expect("some");
        assert_eq!(info, good);
        assert!(!tmp.exists());
    }

    /// Every file in `dir`, by name, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = files(dir)
            .expect("files")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_that_fails_midway_removes_its_temp_file() {
        let d = dir();
        let kept = write(d.path(), 1, 0, 2, b"older").expect("write");
        // A disk that fills up after part of the file was written.
        let failed = publish(d.path(), "snap-00000000000000000002-0", |out| {
            out.write_all(b"half a snapshot")?;
            out.flush()?;
            Err(io::Error::other("no space left on device (injected)"))
        });
        match failed {
            Err(Error::Io { context, source }) => {
                assert!(context.starts_with("write "), "{context}");
                assert!(source.to_string().contains("injected"));
            }
            other => panic!("expected the injected IO error, got {other:?}"),
        }
        assert_eq!(names(d.path()), vec![format!("{}.snap", kept.id)]);
    }

    #[test]
    fn a_write_that_cannot_be_renamed_into_place_removes_its_temp_file() {
        let d = dir();
        // Something that is not a snapshot file sits at the final name.
        let id = snapshot_id(3, 7);
        fs::create_dir(d.path().join(format!("{id}.snap"))).expect("mkdir");
        let e = write(d.path(), 3, 7, 2, b"image").expect_err("rename onto a directory fails");
        assert!(e.to_string().contains("rename into place"), "{e}");
        assert_eq!(names(d.path()), vec![format!("{id}.snap")]);
    }

    #[test]
    fn temp_file_names_are_unique_even_for_one_id() {
        let d = dir();
        let (a, b) = (
            temp_path(d.path(), "snap-1-1"),
            temp_path(d.path(), "snap-1-1"),
        );
        assert_ne!(a, b);
        for p in [a, b] {
            assert!(p.to_str().unwrap().ends_with(TMP_SUFFIX), "{}", p.display());
        }
    }

    #[test]
    fn retention_counts_log_positions_not_files() {
        let d = dir();
        let oldest = write(d.path(), 10, 1, 2, b"a").expect("write");
        let dup_old = write(d.path(), 20, 2, 2, b"b").expect("write");
        let dup_new = write(d.path(), 20, 3, 2, b"b").expect("write");
        let newest = write(d.path(), 30, 4, 2, b"c").expect("write");
        // Three positions, four files: keeping three positions drops only
        // the older file of position 20, never the restore point at 10.
        let removed = prune(d.path(), 3).expect("prune");
        assert_eq!(removed, vec![dup_old]);
        assert_eq!(
            list(d.path()).expect("list"),
            vec![newest.clone(), dup_new.clone(), oldest]
        );
        // A duplicate of the newest position does not count as the
        // second-newest restore point for the log either.
        let again = write(d.path(), 30, 5, 2, b"c").expect("write");
        let listed = list(d.path()).expect("list");
        assert_eq!(listed[..2], [again, newest]);
        assert_eq!(wal_keep_from(&listed), 21);
    }

    #[test]
    fn find_at_returns_only_a_verified_snapshot_of_that_position() {
        let d = dir();
        let good = write(d.path(), 5, 1, 2, b"five").expect("write");
        assert_eq!(find_at(d.path(), 5).expect("find"), Some(good.clone()));
        assert_eq!(find_at(d.path(), 6).expect("find"), None);
        flip(&good.path, HEADER_LEN + 1);
        assert_eq!(find_at(d.path(), 5).expect("find"), None);
    }
}
