//! The vocabulary shared by every layer: ids, identifiers and the shapes of a
//! cohort delta once it has been parsed at the edge.
//!
//! Wire types (what a partner sends) live in `http::`; these are the domain
//! types the engine accepts. Nothing here knows about HTTP or actors.

use compact_str::CompactString;

/// Dense internal profile id, unique within a workspace and never reused.
/// Shown and accepted by the API only as a braze_id ([`braze_id`]).
pub type Uid = u32;

/// A workspace (Braze: app group). Nothing crosses workspaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceId(pub u32);

impl std::fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ws_{}", self.0)
    }
}

impl std::str::FromStr for WorkspaceId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix("ws_")
            .and_then(|n| n.parse().ok())
            .map(WorkspaceId)
            .ok_or(())
    }
}

/// `(partner, cohort_id)`: a cohort's key inside one workspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CohortKey {
    pub partner: CompactString,
    pub cohort_id: CompactString,
}

impl CohortKey {
    pub fn new(partner: &str, cohort_id: &str) -> Self {
        CohortKey {
            partner: partner.into(),
            cohort_id: cohort_id.into(),
        }
    }
}

/// A user alias: the exact `{alias_name, alias_label}` pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alias {
    pub alias_name: CompactString,
    pub alias_label: CompactString,
}

impl Alias {
    pub fn new(name: &str, label: &str) -> Self {
        Alias {
            alias_name: name.into(),
            alias_label: label.into(),
        }
    }
}

/// How a request names a profile. Matching rules live in `profiles::ProfileStore::resolve`.
///
/// `Email`, `Phone` and `BrazeId` are users API identifiers only (delete,
/// and how a profile with no other identifier is listed): cohort import and
/// membership checks never match them (`resolve` answers `None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identifier {
    External(CompactString),
    Alias(Alias),
    Device(CompactString),
    /// An email address as given (matched case-insensitively).
    Email(CompactString),
    /// An E.164 phone number.
    Phone(CompactString),
    /// A profile by its id (`braze_id`).
    BrazeId(Uid),
}

/// A profile's `braze_id`: 24 lowercase hex digits, the workspace id (8)
/// then the profile's id (16), the shape of Braze's own ids. Profile ids
/// are never reused in a workspace, so a braze_id names one profile for
/// ever (a merged-away or deleted profile's id names nobody after).
pub fn braze_id(ws: WorkspaceId, uid: Uid) -> String {
    BrazeId(ws, uid).to_string()
}

/// A profile's braze_id, formatted on demand: `Display` writes the 24 hex
/// digits (8 of the workspace, 16 of the profile id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrazeId(pub WorkspaceId, pub Uid);

impl BrazeId {
    /// The 24 digits, written without the formatting machinery (a member
    /// page writes thousands).
    pub fn digits(&self) -> [u8; 24] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 24];
        let value = (u128::from(self.0 .0) << 64) | u128::from(self.1);
        for (i, d) in out.iter_mut().rev().enumerate() {
            *d = HEX[((value >> (4 * i)) & 0xf) as usize];
        }
        out
    }
}

impl std::fmt::Display for BrazeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.digits();
        f.write_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }
}

/// The profile id a braze_id names in workspace `ws`: `None` if it is not
/// 24 hex digits (either case) or names another workspace.
pub fn parse_braze_id(ws: WorkspaceId, s: &str) -> Option<Uid> {
    if s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let w = u32::from_str_radix(&s[..8], 16).ok()?;
    let uid = u64::from_str_radix(&s[8..], 16).ok()?;
    (w == ws.0).then_some(())?;
    Uid::try_from(uid).ok()
}

/// Whether `s` is an email address as cohortd takes one for an identifier:
/// one `@` with something on both sides, no whitespace.
pub fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// The key an email is indexed and looked up by: lowercased.
pub fn email_key(s: &str) -> CompactString {
    s.to_lowercase().into()
}

/// Whether `s` is an E.164 phone number: `+`, then 8 to 15 digits, the
/// first not 0. Nothing is normalised.
pub fn is_phone(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// One object of `cohort_changes`, parsed: identifiers in the order the partner
/// listed them (user_ids, then device_ids, then aliases), and whether they leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub remove: bool,
    pub ids: Vec<Identifier>,
}

impl Change {
    pub fn id_count(&self) -> usize {
        self.ids.len()
    }
}

/// Milliseconds since the Unix epoch, UTC. All times in state are this.
pub type Millis = i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braze_id_digits_are_the_formatted_ids() {
        for (ws, uid) in [(0, 0), (1, 7), (0xdead_beef, u32::MAX), (u32::MAX, 0x1234)] {
            let id = BrazeId(WorkspaceId(ws), uid);
            assert_eq!(id.to_string(), format!("{ws:08x}{uid:016x}"));
            assert_eq!(parse_braze_id(WorkspaceId(ws), &id.to_string()), Some(uid));
        }
    }
}
