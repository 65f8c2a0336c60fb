//! Read-side rules shared by every listing: the page cursor and how a set
//! of profile ids becomes a page of members. The HTTP layer validates
//! `limit` and `cursor` with these; the paging itself runs inside the
//! engine (`read`), under the profile lock.
//!
//! A cursor names a position — the last profile id returned — never an
//! offset, so walking pages while members come and go never repeats a
//! member and never skips one that stayed a member throughout (ids only
//! ever grow, and the set is read in id order).
//!
//! `GET /cohorts` pages the same way by (partner, cohort_id): its cursor is
//! the last key returned, hex-encoded (`hex(partner ":" cohort_id)`; a
//! partner name has no `:`), so it is opaque and URL-safe, and a cohort
//! created behind the cursor during a walk is simply not in it.
//!
//! `GET /segments` pages by segment id: its cursor is the `segment_id` of
//! the last segment returned (`seg_N`; ids only ever grow and are never
//! reused), so a segment created during a walk is always after the cursor
//! and is listed once, and one deleted is passed over.

use roaring::RoaringBitmap;

use super::state::Segment;
use crate::error::{Error, Result};
use crate::model::{BrazeId, CohortKey, Identifier, Uid, WorkspaceId};
use crate::profiles::Profile;
use crate::segment::Profiles;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

/// A member as listings show it: its braze_id, and how it is listed
/// (`Profile::listed_as`; `None` for a profile with no other identifier).
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Formatted when written out (a page of 10,000 does not format
    /// 10,000 strings first).
    pub braze_id: BrazeId,
    pub listed: Option<Identifier>,
}

/// A page of members and where the next one starts.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub members: Vec<Member>,
    pub next_cursor: Option<String>,
}

/// Validates `limit` (default 100, 1..=10,000).
pub fn limit(raw: Option<usize>) -> Result<usize> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Error::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}, got {n}"),
        )),
    }
}

/// The answer to a cursor this server did not issue (every listing).
fn bad_cursor(s: &str) -> Error {
    Error::bad_request(
        "invalid_cursor",
        format!(
            "cursor {s:?} is not one this server issued; pass next_cursor from the previous page"
        ),
    )
}

/// Parses a cursor this server issued: empty or absent means the start.
pub fn cursor(raw: Option<&str>) -> Result<Option<Uid>> {
    match raw {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<Uid>().map(Some).map_err(|_| bad_cursor(s)),
    }
}

/// The cursor that names `key` as the last cohort of a page.
pub fn cohort_cursor(key: &CohortKey) -> String {
    hex::encode(format!("{}:{}", key.partner, key.cohort_id))
}

/// Parses a `GET /cohorts` cursor this server issued: empty or absent
/// means the start.
pub fn parse_cohort_cursor(raw: Option<&str>) -> Result<Option<CohortKey>> {
    match raw {
        None | Some("") => Ok(None),
        Some(s) => {
            let text = hex::decode(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| bad_cursor(s))?;
            let (partner, cohort_id) = text.split_once(':').ok_or_else(|| bad_cursor(s))?;
            Ok(Some(CohortKey::new(partner, cohort_id)))
        }
    }
}

/// The cursor that names segment `id` as the last of a page.
pub fn segment_cursor(id: u64) -> String {
    Segment::format_id(id)
}

/// Where a segment member page starts: after the profile id, and the walk
/// whose kept member set to read, if the cursor names one (`engine::walks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberCursor {
    pub after: Uid,
    pub walk: Option<u64>,
}

/// Parses a segment member cursor this server issued: `{id}` or
/// `{id}.{walk}` (16 hex digits); empty or absent means the start.
pub fn parse_member_cursor(raw: Option<&str>) -> Result<Option<MemberCursor>> {
    let Some(s) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let (id, walk) = match s.split_once('.') {
        None => (s, None),
        Some((id, w)) if w.len() == 16 => {
            let walk = u64::from_str_radix(w, 16).map_err(|_| bad_cursor(s))?;
            (id, Some(walk))
        }
        Some(_) => return Err(bad_cursor(s)),
    };
    let after = cursor(Some(id))?.ok_or_else(|| bad_cursor(s))?;
    Ok(Some(MemberCursor { after, walk }))
}

/// The cursor after `last` in walk `walk`.
pub fn member_cursor(last: &str, walk: u64) -> String {
    format!("{last}.{walk:016x}")
}

/// Parses a `GET /segments` cursor this server issued (a segment id in
/// exactly the form given out, whether or not that segment still exists):
/// empty or absent means the start.
pub fn parse_segment_cursor(raw: Option<&str>) -> Result<Option<u64>> {
    match raw {
        None | Some("") => Ok(None),
        Some(s) => Segment::parse_id(s).map(Some).ok_or_else(|| bad_cursor(s)),
    }
}

/// The page of `set` after `after`, `limit` members long, listing each
/// profile as SPEC says (external_id, else first alias, else first device;
/// then email, then phone), with its braze_id.
/// Ids whose profile no longer exists are passed over.
pub(super) fn page<P: Profiles + ?Sized>(
    ws: WorkspaceId,
    set: &RoaringBitmap,
    profiles: &P,
    after: Option<Uid>,
    limit: usize,
) -> Page {
    let start = after.map_or(0, |a| a.saturating_add(1));
    let mut members = Vec::with_capacity(limit.min(set.len() as usize));
    let mut last = None;
    let mut more = false;
    if after != Some(Uid::MAX) {
        for uid in set.range(start..) {
            let Some(p) = profiles.get(uid) else {
                continue;
            };
            let m = Member {
                braze_id: BrazeId(ws, uid),
                listed: Profile::listed_as(p),
            };
            if members.len() == limit {
                // Another live member exists: only then is there a next page.
                more = true;
                break;
            }
            members.push(m);
            last = Some(uid);
        }
    }
    Page {
        members,
        next_cursor: if more {
            last.map(|u| u.to_string())
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::ProfileStore;

    fn store(n: u32) -> ProfileStore {
        let mut s = ProfileStore::new();
        for i in 0..n {
            s.upsert_external(&format!("u{i}"), true);
        }
        s
    }

    #[test]
    fn pages_walk_the_set_once() {
        let s = store(10);
        let set: RoaringBitmap = (0..10).collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let p = page(WorkspaceId(1), &set, &s, after, 3);
            seen.extend(p.members);
            match p.next_cursor {
                Some(c) => after = cursor(Some(&c)).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[9].listed, Some(Identifier::External("u9".into())));
        assert_eq!(seen[9].braze_id.to_string(), "000000010000000000000009");
    }

    #[test]
    fn an_exact_last_page_has_no_next_cursor() {
        let s = store(4);
        let set: RoaringBitmap = (0..4).collect();
        assert_eq!(page(WorkspaceId(1), &set, &s, None, 4).next_cursor, None);
        assert_eq!(
            page(WorkspaceId(1), &set, &s, None, 3)
                .next_cursor
                .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn cohort_cursors_round_trip_any_cohort_id() {
        for id in ["c1", "with:colons:", "ünï cødé/?&=", ""] {
            let key = CohortKey::new("hightouch", id);
            let c = cohort_cursor(&key);
            assert!(c.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
            assert_eq!(parse_cohort_cursor(Some(&c)).unwrap(), Some(key));
        }
        assert_eq!(parse_cohort_cursor(None).unwrap(), None);
        assert_eq!(parse_cohort_cursor(Some("")).unwrap(), None);
        for bad in [
            "zz",
            "abc",
            &hex::encode("no-colon"),
            &hex::encode([0xff, b':']),
        ] {
            assert!(parse_cohort_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_cursors_are_segment_ids_in_the_form_given_out() {
        for id in [0, 1, 42, u64::MAX] {
            let c = segment_cursor(id);
            assert_eq!(c, format!("seg_{id}"));
            assert_eq!(parse_segment_cursor(Some(&c)).unwrap(), Some(id));
        }
        assert_eq!(parse_segment_cursor(None).unwrap(), None);
        assert_eq!(parse_segment_cursor(Some("")).unwrap(), None);
        for bad in [
            "zz", "00", "7", "seg_", "seg_01", "seg_+1", "seg_x", "SEG_1",
        ] {
            let e = parse_segment_cursor(Some(bad)).unwrap_err();
            assert_eq!(e, bad_cursor(bad), "{bad}");
        }
    }

    #[test]
    fn limits_and_cursors_are_validated() {
        assert_eq!(limit(None).unwrap(), 100);
        assert!(limit(Some(10_001)).is_err());
        assert!(limit(Some(0)).is_err());
        assert!(cursor(Some("abc")).is_err());
        assert_eq!(cursor(Some("")).unwrap(), None);
    }
}
