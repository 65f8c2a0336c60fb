//! `GET /cohorts` pages by (partner, cohort_id) with a cursor that names
//! the last cohort returned, never an offset: a walk never repeats a
//! cohort and never skips one that existed throughout, even while cohorts
//! are created during it.

mod common;

use std::collections::BTreeSet;

use common::{delta, Server, Workspace, PARTNER_KEY};
use serde_json::{json, Value};

/// Creates (or renames) a cohort through the partner's name call.
fn name(server: &Server, secret: &str, partner: &str, cohort_id: &str) {
    let r = server.post_raw(
        &format!("/partners/{partner}/cohorts"),
        json!({
            "partner_api_key": PARTNER_KEY,
            "client_secret": secret,
            "cohort_id": cohort_id,
            "name": format!("Cohort {cohort_id}"),
            "created_at": "2024-01-01T00:00:00Z"
        })
        .to_string()
        .as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

fn page(ws: &Workspace, query: &str) -> (Vec<(String, String)>, Option<String>) {
    let r = ws.get(&format!("/cohorts{query}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let keys = r.body["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["partner"].as_str().unwrap().to_string(),
                c["cohort_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(r.body.get("next_cursor").is_some(), "{}", r.body);
    (keys, r.body["next_cursor"].as_str().map(str::to_string))
}

/// Percent-encodes a cursor for a query string (ours are hex, so this is
/// the identity, but a client must not rely on that).
fn q(cursor: &str) -> String {
    cursor
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn a_walk_lists_every_cohort_once_in_order_while_cohorts_are_created() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let (ht, seg) = (ws.import_key("hightouch"), ws.import_key("segment"));
    // Ids that sort differently as text and as numbers, with characters a
    // cursor must carry: ':' and non-ASCII.
    let ids: Vec<String> = (0..23)
        .map(|i| match i % 4 {
            0 => format!("c{i}"),
            1 => format!("c:{i}"),
            2 => format!("ç{i}"),
            _ => format!("{i}"),
        })
        .collect();
    for id in &ids {
        name(&server, &ht, "hightouch", id);
        name(&server, &seg, "segment", id);
    }
    let mut expected: Vec<(String, String)> = ids
        .iter()
        .flat_map(|id| {
            [
                ("hightouch".to_string(), id.clone()),
                ("segment".to_string(), id.clone()),
            ]
        })
        .collect();
    expected.sort();

    // Default limit: everything on one page, no next cursor.
    let (all, next) = page(&ws, "");
    assert_eq!((all.clone(), next), (expected.clone(), None));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut created = Vec::new();
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=7&cursor={}", q(c)),
            None => "?limit=7".to_string(),
        };
        let (keys, next) = page(&ws, &query);
        assert!(keys.len() <= 7);
        seen.extend(keys);
        pages += 1;
        // Cohorts created mid-walk: one behind the cursor (this walk never
        // lists it), one ahead of it (listed once).
        if pages == 2 {
            for (partner, secret, id) in [("hightouch", &ht, "!first"), ("segment", &seg, "~last")]
            {
                name(&server, secret, partner, id);
                created.push((partner.to_string(), id.to_string()));
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no cohort twice: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "in (partner, cohort_id) order");
    for key in &expected {
        assert!(
            unique.contains(key),
            "{key:?} existed throughout and was skipped"
        );
    }
    assert!(unique.contains(&("segment".to_string(), "~last".to_string())));
    assert!(!unique.contains(&("hightouch".to_string(), "!first".to_string())));
    assert_eq!(seen.len(), expected.len() + 1);

    // An exact last page has no next cursor.
    let (first, next) = page(&ws, &format!("?limit={}", expected.len() + created.len()));
    assert_eq!((first.len(), next), (expected.len() + created.len(), None));
}

#[test]
fn limit_and_cursor_are_validated() {
    let server = Server::start();
    let ws = server.workspace("acme");
    for bad in [
        "?limit=0",
        "?limit=10001",
        "?limit=x",
        "?cursor=zz",
        "?cursor=00",
    ] {
        let r = ws.get(&format!("/cohorts{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(
            ["invalid_limit", "invalid_cursor", "invalid_query"]
                .contains(&r.body["code"].as_str().unwrap()),
            "{bad}: {}",
            r.body
        );
    }
    let r = ws.get("/cohorts?limit=10000");
    assert_eq!(r.body, json!({"cohorts": [], "next_cursor": null}));
    // Another workspace's cohorts are not in this one's pages.
    let other = server.workspace("other");
    let secret = other.import_key("heap");
    let r = server.post_raw(
        "/partners/heap/cohorts/users",
        {
            let mut d: Value = delta(&secret, "theirs", json!([{"user_ids": ["x"]}]));
            d["partner_api_key"] = json!("heap-partner-key");
            d
        }
        .to_string()
        .as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(ws.get("/cohorts").body["cohorts"], json!([]));
    assert_eq!(
        other.get("/cohorts").body["cohorts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
