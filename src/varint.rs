//! LEB128 varints, zigzag for signed ones, and length-prefixed strings:
//! the integers of the packed profiles (`profiles::packed`) and of the
//! change feed's compact records (`feed`). Writers here; each format keeps
//! its own readers (the packed profiles' are on the hot path and trust
//! what they read once checked, the feed's check as they go: [`Read`]).

pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

pub fn unzigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
}

/// A varint length, then the bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads what the writers above wrote, in order; `None` when the bytes do
/// not hold it (cut short, a varint over 64 bits, text not UTF-8).
pub struct Read<'a>(pub &'a [u8]);

impl<'a> Read<'a> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    pub fn str(&mut self) -> Option<&'a str> {
        let n = usize::try_from(self.varint()?).ok()?;
        let s = self.0.get(..n)?;
        self.0 = &self.0[n..];
        std::str::from_utf8(s).ok()
    }

    /// Whether everything was read.
    pub fn done(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let mut out = Vec::new();
        for n in [0, 1, 127, 128, u64::MAX] {
            put_varint(&mut out, n);
        }
        put_varint(&mut out, zigzag(-1500));
        put_str(&mut out, "é\n");
        let mut r = Read(&out);
        for n in [0, 1, 127, 128, u64::MAX] {
            assert_eq!(r.varint(), Some(n));
        }
        assert_eq!(r.varint().map(unzigzag), Some(-1500));
        assert_eq!(r.str(), Some("é\n"));
        assert!(r.done());
        assert_eq!(r.byte(), None, "cut short");
        assert_eq!(Read(&[0x80; 11]).varint(), None, "over 64 bits");
    }
}
