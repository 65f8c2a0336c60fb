//! `GET /segments` pages by segment id exactly as `GET /cohorts` pages by
//! (partner, cohort_id): `cursor` and `limit` (default 100, at most
//! 10,000), `next_cursor` naming the last segment returned, never an
//! offset. A walk never repeats a segment and never skips one that existed
//! throughout, even while segments are created and deleted during it.

mod common;

use std::collections::BTreeSet;

use common::{Server, Workspace};
use serde_json::{json, Value};

fn create(ws: &Workspace, name: &str) -> u64 {
    let r = ws.post(
        "/segments",
        json!({"name": name, "filter": {"attribute": {"name": "plan", "op": "equals", "value": name}}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    id_number(r.body["segment_id"].as_str().unwrap())
}

fn delete(ws: &Workspace, id: u64) {
    let r = ws.server.call(
        "DELETE",
        &format!("/segments/seg_{id}"),
        Some(&ws.key),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

fn id_number(segment_id: &str) -> u64 {
    segment_id.strip_prefix("seg_").unwrap().parse().unwrap()
}

/// One page: the segment ids in it (checking each segment's shape), and
/// its next cursor.
fn page(ws: &Workspace, query: &str) -> (Vec<u64>, Option<String>) {
    let r = ws.get(&format!("/segments{query}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let keys: BTreeSet<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["segments", "next_cursor"]),
        "{}",
        r.body
    );
    let ids = r.body["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let id = s["segment_id"].as_str().unwrap();
            let name = s["name"].as_str().unwrap();
            assert_eq!(name, format!("s{}", id_number(id)), "{s}");
            assert_eq!(s["filter"]["attribute"]["value"], name, "{s}");
            id_number(id)
        })
        .collect();
    (ids, r.body["next_cursor"].as_str().map(str::to_string))
}

/// Creates segments named `s<id>` until one has id `last`.
fn fill(ws: &Workspace, last: u64) {
    let mut id = 0;
    while id < last {
        id = create(ws, &format!("s{}", id + 1));
    }
}

#[test]
fn a_walk_lists_every_segment_once_in_id_order_while_segments_come_and_go() {
    let server = Server::start();
    let ws = server.workspace("acme");
    // 101 segments: one more than the default limit, and ids that sort
    // differently as text and as numbers (seg_2 < seg_10 < seg_100).
    fill(&ws, 101);
    let all: Vec<u64> = (1..=101).collect();

    // No parameters: the first 100, the old shape plus next_cursor.
    let (first, next) = page(&ws, "");
    assert_eq!(first, all[..100]);
    assert_eq!(next.as_deref(), Some("seg_100"));
    let (rest, next) = page(&ws, "?cursor=seg_100");
    assert_eq!((rest, next), (vec![101], None));
    // `limit` takes the caller's page size; an exact last page has no next
    // cursor, and an empty cursor is the start.
    let (whole, next) = page(&ws, "?limit=101&cursor=");
    assert_eq!((whole, next), (all.clone(), None));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut created = None;
    let mut deleted_ahead = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=7&cursor={c}"),
            None => "?limit=7".to_string(),
        };
        let (ids, next) = page(&ws, &query);
        assert!(ids.len() <= 7, "{ids:?}");
        seen.extend(ids);
        pages += 1;
        if pages == 2 {
            // The segment the cursor names is deleted: the cursor is a
            // position, and the walk goes on after it.
            delete(&ws, *seen.last().unwrap());
            // One not listed yet is deleted (it did not exist throughout),
            // and a new one is created (ids only grow: listed once, last).
            deleted_ahead = Some(50);
            delete(&ws, 50);
            created = Some(create(&ws, "s102"));
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(created, Some(102));
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no segment twice: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, seen, "in id order");
    let expected: Vec<u64> = (1..=102).filter(|&i| Some(i) != deleted_ahead).collect();
    assert_eq!(
        seen, expected,
        "every segment that existed throughout, and the new one"
    );
    assert_eq!(pages, expected.len().div_ceil(7));
}

#[test]
fn limit_and_cursor_are_validated_as_for_cohorts() {
    let server = Server::start();
    let ws = server.workspace("acme");
    fill(&ws, 3);
    let before = ws.get("/segments").body;
    for bad in [
        "?limit=0",
        "?limit=10001",
        "?limit=x",
        "?limit=-1",
        "?cursor=zz",
        "?cursor=00",
        "?cursor=1",
        "?cursor=seg_01",
        "?cursor=seg_x",
        "?limit=5&cursor=seg_",
    ] {
        let r = ws.get(&format!("/segments{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        let code = r.body["code"].as_str().unwrap();
        assert!(
            ["invalid_limit", "invalid_cursor", "invalid_query"].contains(&code),
            "{bad}: {}",
            r.body
        );
        match code {
            "invalid_limit" => assert!(
                r.message().contains("limit must be between 1 and 10000"),
                "{bad}: {}",
                r.body
            ),
            "invalid_cursor" => assert!(
                r.message()
                    .contains("is not one this server issued; pass next_cursor"),
                "{bad}: {}",
                r.body
            ),
            _ => {}
        }
        // The same answer, word for word, as GET /cohorts gives.
        assert_eq!(r.body, ws.get(&format!("/cohorts{bad}")).body, "{bad}");
    }
    // Nothing changed.
    assert_eq!(ws.get("/segments").body, before);
    assert_eq!(before["segments"].as_array().unwrap().len(), 3);

    // The largest limit is fine; a cursor past the end is an empty last page.
    let r = ws.get("/segments?limit=10000&cursor=seg_3");
    assert_eq!(r.body, json!({"segments": [], "next_cursor": null}));
    // Another workspace's segments are not in this one's pages.
    let other = server.workspace("other");
    assert_eq!(
        other.get("/segments?limit=10000").body,
        json!({"segments": [], "next_cursor": null})
    );
    let r: Value = ws.get("/segments?limit=2").body;
    assert_eq!(r["next_cursor"], "seg_2");
    assert_eq!(r["segments"].as_array().unwrap().len(), 2);
}
