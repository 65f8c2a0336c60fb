//! The vocabulary shared by every layer: ids, identifiers and the shapes of a
//! cohort delta once it has been parsed at the edge.
//!
//! Wire types (what a partner sends) live in `http::`; these are the domain
//! types the engine accepts. Nothing here knows about HTTP or actors.

use compact_str::CompactString;

/// Dense internal profile id, unique within a workspace and never reused.
/// Never accepted as API input.
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identifier {
    External(CompactString),
    Alias(Alias),
    Device(CompactString),
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
