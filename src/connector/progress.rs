//! A connector's durable progress: how far the receiver has acknowledged,
//! which batch is in flight, whether the connector is disabled and why,
//! in one small file `<dir>/<connector_id>.progress`.
//!
//! This module owns that file and nothing else; the deliverer
//! (`connector::deliver`) decides what goes in it.
//!
//! # Format
//!
//! Two fixed-size slots, back to back, little-endian:
//!
//! ```text
//! slot: b"COHCONP\0" | u32 version (1) | u64 generation | u64 acked
//!       | u64 inflight_through | u8 flags (bit 0: disabled) | u8 0
//!       | u16 error_len | error (error_len bytes of UTF-8, zero-padded to
//!       1024) | u32 crc32(everything before it)                (1068 bytes)
//! ```
//!
//! Each [`ProgressFile::write`] is one `pwrite` of a whole slot, the one
//! the newest slot is not in, with the next generation; a read takes the
//! checked slot with the highest generation. There is no fsync per write:
//! a process crash keeps what the page cache holds, and a power loss can
//! lose the last writes or tear the slot being written, which leaves the
//! other slot, an older state whose batches are delivered again, which
//! at-least-once delivery allows. [`ProgressFile::sync`] makes the
//! newest durable (at shutdown). A file created here is written whole
//! (temporary file, fsync, rename, directory fsync), so it is never
//! short; a short file or one with no valid slot is refused with an
//! error naming it, never read as zero.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::persist::{sync_dir, Error, Result};

const MAGIC: &[u8; 8] = b"COHCONP\0";
const VERSION: u32 = 1;
/// The longest error text kept, in bytes.
pub const MAX_ERROR_BYTES: usize = 1024;
/// magic, version, generation, acked, inflight, flags, pad, error_len.
const FIXED: usize = 8 + 4 + 8 + 8 + 8 + 1 + 1 + 2;
const SLOT: usize = FIXED + MAX_ERROR_BYTES + 4;
const DISABLED: u8 = 1;

/// What a connector's progress file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every event up to this seq is acknowledged (or was skipped).
    pub acked: u64,
    /// The last seq of the batch being sent (0: none); a batch in flight
    /// when the process stopped is sent again, the same, first.
    pub inflight_through: u64,
    /// Disabled connectors deliver nothing until re-enabled.
    pub disabled: bool,
    /// What failed last (empty: nothing yet), at most
    /// [`MAX_ERROR_BYTES`].
    pub last_error: String,
}

/// An open progress file (see the module docs).
#[derive(Debug)]
pub struct ProgressFile {
    path: PathBuf,
    file: File,
    /// The generation of the newest slot.
    generation: u64,
}

/// The path of connector `id`'s progress file in `dir`.
pub fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.progress"))
}

/// Connector ids name files: letters, digits, `-` and `_` only.
fn check_id(dir: &Path, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Io {
            context: format!("connector progress in {}", dir.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("connector id {id:?} is not 1 to 128 of [A-Za-z0-9_-]"),
            ),
        })
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn encode(generation: u64, p: &Progress) -> [u8; SLOT] {
    let mut b = [0u8; SLOT];
    let error = bounded(&p.last_error, MAX_ERROR_BYTES).as_bytes();
    b[0..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..20].copy_from_slice(&generation.to_le_bytes());
    b[20..28].copy_from_slice(&p.acked.to_le_bytes());
    b[28..36].copy_from_slice(&p.inflight_through.to_le_bytes());
    b[36] = if p.disabled { DISABLED } else { 0 };
    b[38..40].copy_from_slice(&(error.len() as u16).to_le_bytes());
    b[FIXED..FIXED + error.len()].copy_from_slice(error);
    let crc = crc32fast::hash(&b[..SLOT - 4]);
    b[SLOT - 4..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A slot's generation and progress, or why it is not valid.
fn decode(b: &[u8]) -> std::result::Result<(u64, Progress), String> {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    if &b[0..8] != MAGIC {
        return Err("not a connector progress slot".into());
    }
    let crc = u32::from_le_bytes(b[SLOT - 4..].try_into().expect("4 bytes"));
    if crc32fast::hash(&b[..SLOT - 4]) != crc {
        return Err("checksum mismatch".into());
    }
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    let len = u16::from_le_bytes(b[38..40].try_into().expect("2 bytes")) as usize;
    if len > MAX_ERROR_BYTES {
        return Err(format!("error text of {len} bytes"));
    }
    let last_error = String::from_utf8(b[FIXED..FIXED + len].to_vec())
        .map_err(|_| "error text is not UTF-8".to_string())?;
    Ok((
        u64_at(12),
        Progress {
            acked: u64_at(20),
            inflight_through: u64_at(28),
            disabled: b[36] & DISABLED != 0,
            last_error,
        },
    ))
}

impl ProgressFile {
    /// Opens connector `id`'s progress file in `dir`, creating it (with no
    /// progress) if there is none, and returns what it holds.
    pub fn open(dir: &Path, id: &str) -> Result<(ProgressFile, Progress)> {
        check_id(dir, id)?;
        let path = path(dir, id);
        if !path.exists() {
            create(dir, &path)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io("open connector progress", &path))?;
        let (generation, progress) = read_slots(&file, &path)?;
        Ok((
            ProgressFile {
                path,
                file,
                generation,
            },
            progress,
        ))
    }

    /// Replaces the progress (one `pwrite`, no fsync; see the module docs).
    pub fn write(&mut self, p: &Progress) -> Result<()> {
        let generation = self.generation + 1;
        let slot = (generation % 2) * SLOT as u64;
        self.file
            .write_all_at(&encode(generation, p), slot)
            .map_err(Error::io("write connector progress", &self.path))?;
        self.generation = generation;
        Ok(())
    }

    /// Makes the last write durable.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(Error::io("fsync connector progress", &self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads connector `id`'s progress, `None` if it has no file.
pub fn read(dir: &Path, id: &str) -> Result<Option<Progress>> {
    check_id(dir, id)?;
    let path = path(dir, id);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open connector progress", &path)(e)),
    };
    read_slots(&file, &path).map(|(_, p)| Some(p))
}

/// Deletes connector `id`'s progress file (when the connector is
/// deleted); no file is not an error.
pub fn remove(dir: &Path, id: &str) -> Result<()> {
    check_id(dir, id)?;
    let path = path(dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove connector progress", &path)(e)),
    }
}

/// A new file with no progress in both slots, written whole before it
/// takes its name.
fn create(dir: &Path, path: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io("create connector directory", dir))?;
    let tmp = path.with_extension("progress.tmp");
    let mut bytes = Vec::with_capacity(2 * SLOT);
    bytes.extend_from_slice(&encode(0, &Progress::default()));
    bytes.extend_from_slice(&encode(0, &Progress::default()));
    let mut f = File::create(&tmp).map_err(Error::io("create connector progress", &tmp))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(Error::io("write connector progress", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("rename connector progress", &tmp))?;
    sync_dir(dir)
}

/// The newest valid slot, or an error naming the file.
fn read_slots(file: &File, path: &Path) -> Result<(u64, Progress)> {
    let mut bytes = vec![0u8; 2 * SLOT];
    let len = file
        .metadata()
        .map_err(Error::io("stat connector progress", path))?
        .len();
    if len != bytes.len() as u64 {
        return Err(Error::corrupt(
            path,
            format!("connector progress is {len} bytes, not {}", bytes.len()),
        ));
    }
    file.read_exact_at(&mut bytes, 0)
        .map_err(Error::io("read connector progress", path))?;
    let a = decode(&bytes[..SLOT]);
    let b = decode(&bytes[SLOT..]);
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(if b.0 > a.0 { b } else { a }),
        (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok(x),
        (Err(a), Err(b)) => Err(Error::corrupt(
            path,
            format!("no valid connector progress slot (first: {a}; second: {b})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_through_the_file_and_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let (mut f, p) = ProgressFile::open(d.path(), "c1").unwrap();
        assert_eq!(p, Progress::default());
        // The format in the module docs: two slots of 1068 bytes.
        assert_eq!(std::fs::metadata(f.path()).unwrap().len(), 2 * 1068);
        let long = "é".repeat(700); // 1400 bytes: cut at a character boundary
        for i in 1..=5u64 {
            let p = Progress {
                acked: i * 100,
                inflight_through: i * 100 + 7,
                disabled: i == 5,
                last_error: if i == 5 {
                    long.clone()
                } else {
                    format!("HTTP 50{i}")
                },
            };
            f.write(&p).unwrap();
            let back = read(d.path(), "c1").unwrap().unwrap();
            assert_eq!((back.acked, back.inflight_through), (i * 100, i * 100 + 7));
            assert_eq!(back.disabled, i == 5);
        }
        f.sync().unwrap();
        drop(f);
        let (mut f, p) = ProgressFile::open(d.path(), "c1").unwrap();
        assert_eq!((p.acked, p.inflight_through, p.disabled), (500, 507, true));
        assert_eq!(p.last_error.len(), 1024);
        assert!(long.starts_with(&p.last_error));
        // Writes go on from the newest generation after a reopen.
        f.write(&Progress {
            acked: 600,
            ..Progress::default()
        })
        .unwrap();
        assert_eq!(read(d.path(), "c1").unwrap().unwrap().acked, 600);
        remove(d.path(), "c1").unwrap();
        assert_eq!(read(d.path(), "c1").unwrap(), None);
        remove(d.path(), "c1").unwrap();
    }

    #[test]
    fn a_damaged_or_short_file_is_refused_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let (mut f, _) = ProgressFile::open(d.path(), "c2").unwrap();
        f.write(&Progress {
            acked: 41,
            ..Progress::default()
        })
        .unwrap();
        f.write(&Progress {
            acked: 42,
            ..Progress::default()
        })
        .unwrap();
        drop(f);
        let file = path(d.path(), "c2");
        let good = std::fs::read(&file).unwrap();

        // One slot torn (a power loss mid-write): the other one, older.
        let mut torn = good.clone();
        let newest = if decode(&good[..SLOT]).unwrap().1.acked == 42 {
            0
        } else {
            SLOT
        };
        torn[newest + 25] ^= 0xff;
        std::fs::write(&file, &torn).unwrap();
        assert_eq!(read(d.path(), "c2").unwrap().unwrap().acked, 41);

        // Both damaged: an error naming the file, not zero.
        let mut bad = torn;
        bad[(SLOT - newest) + 25] ^= 0xff;
        std::fs::write(&file, &bad).unwrap();
        let e = ProgressFile::open(d.path(), "c2").unwrap_err().to_string();
        assert!(e.contains("c2.progress"), "{e}");
        assert!(e.contains("no valid"), "{e}");

        // Short: refused too.
        std::fs::write(&file, &good[..SLOT + 10]).unwrap();
        let e = read(d.path(), "c2").unwrap_err().to_string();
        assert!(e.contains("c2.progress") && e.contains("bytes"), "{e}");
        std::fs::write(&file, b"").unwrap();
        assert!(ProgressFile::open(d.path(), "c2").is_err());

        // Ids that are not file names are refused.
        assert!(ProgressFile::open(d.path(), "../x").is_err());
        assert!(ProgressFile::open(d.path(), "").is_err());
    }
}
