//! Many clients at once: parallel deltas to one cohort, and deltas racing
//! identify and delete calls. Every request is built so that its final effect
//! does not depend on the order the engine happens to apply them in, so the
//! final state is exact whatever the interleaving; a lost or half-applied
//! update shows as a wrong member set. No timing is asserted.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{delta, Server, Workspace};
use serde_json::{json, Value};

const PARTNER: &str = "hightouch";

fn push(server: &Server, secret: &str, cohort: &str, changes: Value) -> Value {
    let r = server.call(
        "POST",
        &format!("/partners/{PARTNER}/cohorts/users"),
        None,
        Some(&delta(secret, cohort, changes)),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

fn create(ws: &Workspace, ids: &[String]) {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ws.users(&refs);
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn alias(label: &str) -> Value {
    json!({"alias_name": "email", "alias_label": label})
}

const THREADS: usize = 8;
const DELTAS: usize = 50;

#[test]
fn parallel_deltas_to_one_cohort_lose_no_update() {
    let server = Server::start_with(|c| c.http_workers = 4);
    let ws = server.workspace("acme");
    let secret = ws.import_key(PARTNER);
    // Each thread owns 2 × DELTAS users; all threads share the rest.
    let own: Vec<Vec<String>> = (0..THREADS)
        .map(|t| names(&format!("t{t}-"), 2 * DELTAS))
        .collect();
    let leaving = names("leaving-", 20);
    let joining = names("joining-", 20);
    for ids in own.iter().chain([&leaving, &joining]) {
        create(&ws, ids);
    }
    ws.users(&["flicker-in", "flicker-out"]);
    push(&server, &secret, "hot", json!([{ "user_ids": leaving }]));
    push(
        &server,
        &secret,
        "hot",
        json!([{ "user_ids": ["flicker-out"] }]),
    );
    let initial = ws.size(PARTNER, "hot").unwrap();
    assert_eq!(initial, 21);

    let (added, removed) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for mine in &own {
            let (server, secret, leaving, joining) = (&server, &secret, &leaving, &joining);
            let (added, removed) = (&added, &removed);
            s.spawn(move || {
                for i in 0..DELTAS {
                    // Round i adds own users 2i and 2i+1 and takes back 2i-2:
                    // in the end the odd ones and the last even one stay.
                    let mut changes = vec![json!({"user_ids": [mine[2 * i], mine[2 * i + 1]]})];
                    if i > 0 {
                        changes.push(json!({"user_ids": [mine[2 * i - 2]], "should_remove": true}));
                    }
                    // Shared users get the same operation from every thread,
                    // or an add and a remove whose later one wins.
                    changes.extend([
                        json!({"user_ids": leaving, "should_remove": true}),
                        json!({"user_ids": joining}),
                        json!({"user_ids": ["flicker-in"], "should_remove": true}),
                        json!({"user_ids": ["flicker-in", "flicker-out"]}),
                        json!({"user_ids": ["flicker-out"], "should_remove": true}),
                    ]);
                    let r = push(server, secret, "hot", Value::Array(changes));
                    assert_eq!(r["unmatched"], 0);
                    added.fetch_add(r["added"].as_u64().unwrap(), Ordering::Relaxed);
                    removed.fetch_add(r["removed"].as_u64().unwrap(), Ordering::Relaxed);
                }
            });
        }
    });

    let mut expected: BTreeSet<String> = joining.iter().cloned().collect();
    expected.insert("flicker-in".into());
    for mine in &own {
        expected.extend(mine.iter().skip(1).step_by(2).cloned());
        expected.insert(mine[2 * DELTAS - 2].clone());
    }
    assert_eq!(expected.len(), 20 + 1 + THREADS * (DELTAS + 1));
    let members: BTreeSet<String> = ws.member_ids(PARTNER, "hot").into_iter().collect();
    assert_eq!(members.len(), expected.len());
    assert_eq!(members, expected);
    let size = ws.size(PARTNER, "hot").unwrap();
    assert_eq!(size, expected.len() as u64);
    // Each delta was applied whole, one after another: their net counts add
    // up to the change in size.
    let (added, removed) = (added.into_inner(), removed.into_inner());
    assert_eq!(
        initial + added - removed,
        size,
        "added {added}, removed {removed}"
    );
}

#[test]
fn deltas_to_many_cohorts_racing_identifies_and_deletes_lose_no_update() {
    const COHORTS: usize = 4;
    const PER_COHORT: usize = 40;
    const RACED: usize = 20;
    let server = Server::start_with(|c| c.http_workers = 4);
    let ws = server.workspace("acme");
    let secret = ws.import_key(PARTNER);
    let own: Vec<Vec<String>> = (0..COHORTS)
        .map(|c| names(&format!("c{c}-"), PER_COHORT))
        .collect();
    let doomed = names("doomed-", RACED);
    let identified = names("ident-", RACED);
    for ids in own.iter().chain([&doomed, &identified]) {
        create(&ws, ids);
    }
    // Alias-only profiles that will be identified into `identified` while
    // deltas name them by alias.
    let labels = names("anon", RACED);
    for chunk in labels.chunks(75) {
        let objects: Vec<Value> = chunk
            .iter()
            .map(|l| json!({"user_alias": alias(l), "_update_existing_only": false}))
            .collect();
        let r = ws.post("/users/track", json!({ "attributes": objects }));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    push(
        &server,
        &secret,
        "base",
        json!([{ "user_ids": identified }]),
    );

    let deleted = AtomicU64::new(0);
    let merged = AtomicU64::new(0);
    std::thread::scope(|s| {
        for (c, mine) in own.iter().enumerate() {
            let (server, secret, doomed, labels) = (&server, &secret, &doomed, &labels);
            s.spawn(move || {
                let cohort = format!("c{c}");
                for (i, user) in mine.iter().enumerate() {
                    let k = i % RACED;
                    let changes = json!([{
                        "user_ids": [user, doomed[k]],
                        "aliases": [alias(&labels[k])],
                    }]);
                    push(server, secret, &cohort, changes);
                }
            });
        }
        let (acme, labels, identified, merged) = (&ws, &labels, &identified, &merged);
        s.spawn(move || {
            for (label, external_id) in labels.iter().zip(identified) {
                let r = acme.post(
                    "/users/identify",
                    json!({"aliases_to_identify": [{"external_id": external_id, "user_alias": alias(label)}]}),
                );
                assert_eq!(r.status, 201, "{}", r.body);
                assert_eq!(r.body["errors"], json!([]), "{}", r.body);
                merged.fetch_add(r.body["merged"].as_u64().unwrap(), Ordering::Relaxed);
            }
        });
        let (acme, doomed, deleted) = (&ws, &doomed, &deleted);
        s.spawn(move || {
            for user in doomed {
                let r = acme.post("/users/delete", json!({ "external_ids": [user] }));
                assert_eq!(r.status, 201, "{}", r.body);
                deleted.fetch_add(r.body["deleted"].as_u64().unwrap(), Ordering::Relaxed);
            }
        });
    });
    assert_eq!(deleted.into_inner(), RACED as u64);
    assert_eq!(merged.into_inner(), RACED as u64);

    // Whether a delta came before or after the merge, the identified profile
    // is the member; whether before or after the delete, the deleted one is not.
    for (c, mine) in own.iter().enumerate() {
        let cohort = format!("c{c}");
        let mut expected: Vec<String> = mine.iter().chain(&identified).cloned().collect();
        expected.sort();
        assert_eq!(ws.member_ids(PARTNER, &cohort), expected, "{cohort}");
        assert_eq!(
            ws.size(PARTNER, &cohort),
            Some(expected.len() as u64),
            "{cohort}"
        );
    }
    let mut base = identified.clone();
    base.sort();
    assert_eq!(ws.member_ids(PARTNER, "base"), base);
    // The deleted are gone for good, the aliases name the merged profiles.
    let r = push(&server, &secret, "after", json!([{ "user_ids": doomed }]));
    assert_eq!(
        (r["added"].as_u64(), r["unmatched"].as_u64()),
        (Some(0), Some(RACED as u64))
    );
    let aliases: Vec<Value> = labels.iter().map(|l| alias(l)).collect();
    let r = push(&server, &secret, "base", json!([{ "aliases": aliases }]));
    assert_eq!(
        (r["added"].as_u64(), r["unmatched"].as_u64()),
        (Some(0), Some(0))
    );
}
