//! Secrets: generating them, storing only their SHA-256, comparing in
//! constant time, and masking them for display.
//!
//! Lookups by secret (a client_secret, a workspace REST key) go through the
//! hash, so a map lookup never compares attacker-chosen bytes against a
//! stored secret; direct comparisons use `subtle`.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({}…)", hex::encode(&self.0[..4]))
    }
}

impl KeyHash {
    pub fn of(secret: &str) -> KeyHash {
        KeyHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Constant-time: does `secret` hash to this?
    pub fn matches(&self, secret: &str) -> bool {
        KeyHash::of(secret).0.ct_eq(&self.0).into()
    }
}

/// A fresh random secret: `prefix` followed by 32 random bytes in hex.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A short random id (16 hex chars) for keys and snapshots.
pub fn short_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What a listing shows of a secret: its first and last four characters.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n <= 8 {
        return "*".repeat(n);
    }
    let head: String = secret.chars().take(4).collect();
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("{head}{}{tail}", "*".repeat(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_only_their_secret() {
        let k = generate("cdik_");
        assert!(k.starts_with("cdik_") && k.len() == 5 + 64);
        let h = KeyHash::of(&k);
        assert!(h.matches(&k));
        assert!(!h.matches(&generate("cdik_")));
        assert_ne!(generate(""), generate(""));
    }

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask("abcd1234efgh"), "abcd********efgh");
        assert_eq!(mask("short"), "*****");
    }
}
