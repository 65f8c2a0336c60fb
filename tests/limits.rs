//! `[limits]`: for each limit, a request over it is refused with a 400 that
//! names the limit and the value sent, and nothing of it is applied; a
//! request exactly at it is accepted. In the users API a limit is about one
//! object (a string, an array, the attributes of one profile): an object
//! over it is skipped and reported in `errors` of a 201 by its index, the
//! others applied, like Braze's other per-object problems.
//!
//! Each test runs a server with small limits so that the edges are cheap to
//! reach; the rules are the same at the shipped values.

mod common;

use common::{delta, Resp, Server, Workspace, PARTNER_KEY};
use serde_json::{json, Value};

const PARTNER: &str = "hightouch";

fn users_path() -> String {
    format!("/partners/{PARTNER}/cohorts/users")
}

/// A workspace endpoint's 400 for `key`: code `limit_exceeded` and a
/// message naming the limit and what was sent.
fn assert_limit(r: &Resp, key: &str, says: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], "limit_exceeded", "{}", r.body);
    let m = r.message();
    assert!(m.contains(&format!("(limits.{key} in config.toml)")), "{m}");
    assert!(m.contains(says), "{m} should say {says:?}");
}

/// A partner endpoint's 400: Braze's shape, `{"message": …}` only.
fn assert_partner_limit(r: &Resp, key: &str, says: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body.as_object().unwrap().len(), 1, "{}", r.body);
    let m = r.message();
    assert!(m.contains(&format!("(limits.{key} in config.toml)")), "{m}");
    assert!(m.contains(says), "{m} should say {says:?}");
}

/// How many profiles `filter` matches (the API has no profile read, so
/// "what changed" is asked through previews).
fn count(ws: &Workspace, filter: Value) -> u64 {
    let r = ws.post("/segments/preview", json!({ "filter": filter }));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["count"].as_u64().unwrap()
}

fn everyone(ws: &Workspace) -> u64 {
    count(ws, json!({"all": true}))
}

fn includes(ws: &Workspace, attr: &str, value: &str) -> u64 {
    count(
        ws,
        json!({"attribute": {"name": attr, "op": "includes_value", "value": value}}),
    )
}

fn exists(ws: &Workspace, attr: &str) -> u64 {
    count(ws, json!({"attribute": {"name": attr, "op": "exists"}}))
}

fn track(ws: &Workspace, attributes: Value) -> Resp {
    ws.post("/users/track", json!({ "attributes": attributes }))
}

fn tracked(ws: &Workspace, attributes: Value) -> Value {
    let r = track(ws, attributes);
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// A users API 201 that skipped exactly one object, `input_array[index]`,
/// for `key`, with a message that starts with `says` and names the limit.
fn assert_object_limit(r: &Resp, input_array: &str, index: u64, key: &str, says: &str) {
    assert_eq!(r.status, 201, "{}", r.body);
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", r.body);
    let e = &errors[0];
    assert_eq!(
        (e["input_array"].as_str(), e["index"].as_u64()),
        (Some(input_array), Some(index)),
        "{e}"
    );
    let m = e["type"].as_str().unwrap();
    assert!(m.starts_with(says), "{m} should start with {says:?}");
    assert!(
        m.ends_with(&format!("(limits.{key} in config.toml)")),
        "{m}"
    );
}

#[test]
fn array_items_bound_each_array_sent_and_each_array_after_an_edit() {
    let server = Server::start_with(|c| c.limits.array_items = 3);
    let ws = server.workspace("acme");

    // Per object: a value, an add list, a remove list; the object is
    // skipped, the one next to it applies.
    for (value, says) in [
        (
            json!(["a", "b", "c", "d"]),
            "tags: 4 items, over the limit of 3",
        ),
        (json!({"add": ["a", "b", "c", "d"]}), "tags.add: 4 items"),
        (
            json!({"remove": ["a", "b", "c", "d"]}),
            "tags.remove: 4 items",
        ),
    ] {
        let r = track(
            &ws,
            json!([{"external_id": "ok", "n": 1}, {"external_id": "u1", "tags": value}]),
        );
        assert_object_limit(&r, "attributes", 1, "array_items", says);
        assert_eq!(r.body["attributes_processed"], 1);
    }
    assert_eq!(everyone(&ws), 1, "an object over the limit creates nothing");

    // At the limit.
    let b = tracked(&ws, json!([{"external_id": "u1", "tags": ["a", "b", "c"]}]));
    assert_eq!(b["errors"], json!([]));

    // After an edit: the object is skipped and reported, the others apply.
    let b = tracked(
        &ws,
        json!([
            {"external_id": "u1", "tags": {"add": ["d"]}},
            {"external_id": "u2", "tags": {"add": ["x"]}}
        ]),
    );
    assert_eq!(b["attributes_processed"], 1, "{b}");
    assert_eq!(
        b["errors"],
        json!([{"type": "array attribute \"tags\" after this edit: 4 items, over the limit of 3 (limits.array_items in config.toml)",
                "input_array": "attributes", "index": 0}])
    );
    assert_eq!(includes(&ws, "tags", "d"), 0, "nothing of it applied");
    assert_eq!(includes(&ws, "tags", "x"), 1);
    // Items it already holds do not count twice; a removal makes room.
    let b = tracked(
        &ws,
        json!([{"external_id": "u1", "tags": {"add": ["c", "a"]}}]),
    );
    assert_eq!(b["errors"], json!([]));
    let b = tracked(
        &ws,
        json!([{"external_id": "u1", "tags": {"add": ["d"], "remove": ["a"]}}]),
    );
    assert_eq!(b["errors"], json!([]));
    assert_eq!(includes(&ws, "tags", "d"), 1);
    assert_eq!(includes(&ws, "tags", "a"), 0);
}

#[test]
fn a_large_array_edit_stays_correct() {
    // The edit is set-based: 50,000 items in and out in linear time. The
    // limit doubles as the probe of the array's exact length.
    const N: usize = 50_000;
    let server = Server::start_with(|c| {
        c.limits.array_items = N;
        c.max_body_bytes = 16 << 20;
    });
    let ws = server.workspace("acme");
    let items =
        |from: usize, to: usize| -> Vec<String> { (from..to).map(|i| format!("i{i}")).collect() };

    let b = tracked(
        &ws,
        json!([{"external_id": "u1", "big": {"add": items(0, N)}}]),
    );
    assert_eq!(b["errors"], json!([]), "exactly at the limit");
    // Adding what it holds, in another order, changes nothing.
    let mut again = items(0, N);
    again.reverse();
    let b = tracked(&ws, json!([{"external_id": "u1", "big": {"add": again}}]));
    assert_eq!(b["errors"], json!([]));
    // One more is one too many: the array holds exactly N items.
    let b = tracked(
        &ws,
        json!([{"external_id": "u1", "big": {"add": ["one-more"]}}]),
    );
    assert!(
        b["errors"][0]["type"]
            .as_str()
            .unwrap()
            .contains(&format!("{} items", N + 1)),
        "{b}"
    );

    // Remove the even half, add as many new ones: at the limit again.
    let evens: Vec<String> = (0..N).step_by(2).map(|i| format!("i{i}")).collect();
    let b = tracked(
        &ws,
        json!([{"external_id": "u1", "big": {"add": items(N, N + N / 2), "remove": evens}}]),
    );
    assert_eq!(b["errors"], json!([]));
    for (item, held) in [
        ("i0", 0),
        ("i1", 1),
        ("i49998", 0),
        ("i49999", 1),
        ("i50000", 1),
        ("i74999", 1),
        ("i75000", 0),
    ] {
        assert_eq!(includes(&ws, "big", item), held, "{item}");
    }
    let b = tracked(&ws, json!([{"external_id": "u1", "big": {"add": ["i0"]}}]));
    assert!(
        b["errors"][0]["type"]
            .as_str()
            .unwrap()
            .contains(&format!("{} items", N + 1)),
        "{b}"
    );
}

#[test]
fn attributes_per_profile_bound_each_object_each_profile_and_each_merge() {
    let server = Server::start_with(|c| c.limits.attributes_per_profile = 2);
    let ws = server.workspace("acme");

    let r = track(
        &ws,
        json!([{"external_id": "u1", "a": 1, "b": 1, "c": 1}, {"external_id": "u0"}]),
    );
    assert_object_limit(
        &r,
        "attributes",
        0,
        "attributes_per_profile",
        "this object: 3 attributes, over the limit of 2",
    );
    assert_eq!(everyone(&ws), 1, "the refused object creates nothing");

    let b = tracked(&ws, json!([{"external_id": "u1", "a": 1, "b": 1}]));
    assert_eq!(b["errors"], json!([]), "at the limit");

    // A third attribute: skipped and reported; the object for u2 applies.
    let b = tracked(
        &ws,
        json!([{"external_id": "u1", "c": 1}, {"external_id": "u2", "c": 1}]),
    );
    assert_eq!(b["attributes_processed"], 1, "{b}");
    assert_eq!(
        b["errors"],
        json!([{"type": "the profile after this object: 3 attributes, over the limit of 2 (limits.attributes_per_profile in config.toml)",
                "input_array": "attributes", "index": 0}])
    );
    assert_eq!(exists(&ws, "c"), 1, "only u2 has c");
    // Replacing one in the same object keeps it at the limit.
    let b = tracked(&ws, json!([{"external_id": "u1", "a": null, "c": 1}]));
    assert_eq!(b["errors"], json!([]));
    assert_eq!(exists(&ws, "c"), 2);

    // A merge that would union past the limit is skipped like any entry
    // that cannot be identified, and nothing changes.
    let b = tracked(
        &ws,
        json!([{"user_alias": {"alias_name": "email", "alias_label": "x@y"}, "_update_existing_only": false, "d": 1, "e": 1}]),
    );
    assert_eq!(b["errors"], json!([]));
    assert_eq!(everyone(&ws), 4);
    let r = ws.post(
        "/users/identify",
        json!({"aliases_to_identify": [{"external_id": "u1", "user_alias": {"alias_name": "email", "alias_label": "x@y"}}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (
            r.body["aliases_processed"].as_u64(),
            r.body["merged"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        r.body["errors"],
        json!([{"type": "the merged profile: 4 attributes, over the limit of 2 (limits.attributes_per_profile in config.toml)",
                "input_array": "aliases_to_identify", "index": 0}])
    );
    assert_eq!(everyone(&ws), 4, "nothing merged");
    assert_eq!(exists(&ws, "d"), 1);
}

#[test]
fn string_bytes_bound_every_string_written() {
    let server = Server::start_with(|c| c.limits.string_bytes = 8);
    let ws = server.workspace("acme");
    let nine = "123456789";
    let eight = "12345678";

    // Each object over the limit is skipped; the valid one before it in
    // the same array applies.
    let at = "2024-01-01T00:00:00Z";
    for (array, valid, over, says) in [
        (
            "attributes",
            json!({"external_id": "ok"}),
            json!({"external_id": "u1", "plan": nine}),
            "plan: 9 bytes, over the limit of 8",
        ),
        (
            "attributes",
            json!({"external_id": "ok"}),
            json!({"external_id": nine}),
            "external_id: 9 bytes",
        ),
        (
            "attributes",
            json!({"external_id": "ok"}),
            json!({"user_alias": {"alias_name": "n", "alias_label": nine}, "_update_existing_only": false}),
            "user_alias.alias_label: 9 bytes",
        ),
        (
            "attributes",
            json!({"external_id": "ok"}),
            json!({"external_id": "u1", "tags": ["ok", nine]}),
            "tags[1]: 9 bytes",
        ),
        (
            "attributes",
            json!({"external_id": "ok"}),
            json!({"external_id": "u1", "attribute9": 1}),
            "an attribute name: 10 bytes",
        ),
        (
            "events",
            json!({"external_id": "ok", "name": "e", "time": at}),
            json!({"external_id": "u1", "name": nine, "time": at}),
            "name: 9 bytes",
        ),
        (
            "purchases",
            json!({"external_id": "ok", "product_id": "p", "currency": "USD", "price": 1, "time": at}),
            json!({"device_id": nine, "product_id": "p", "currency": "USD", "price": 1, "time": at}),
            "device_id: 9 bytes",
        ),
    ] {
        let r = ws.post("/users/track", json!({ array: [valid, over] }));
        assert_object_limit(&r, array, 1, "string_bytes", says);
        assert_eq!(r.body[format!("{array}_processed")], 1, "{}", r.body);
    }
    let r = ws.post(
        "/users/alias/new",
        json!({"user_aliases": [{"alias_name": nine, "alias_label": "l"}, {"external_id": "ok", "alias_name": "n", "alias_label": "l"}]}),
    );
    assert_object_limit(&r, "user_aliases", 0, "string_bytes", "alias_name: 9 bytes");
    assert_eq!(r.body["aliases_processed"], 1);
    let r = ws.post(
        "/users/identify",
        json!({"devices_to_identify": [{"external_id": "u1", "device_id": nine}]}),
    );
    assert_object_limit(
        &r,
        "devices_to_identify",
        0,
        "string_bytes",
        "device_id: 9 bytes",
    );
    let r = ws.post(
        "/users/identify",
        json!({"aliases_to_identify": [{"external_id": nine, "user_alias": {"alias_name": "a", "alias_label": "b"}}]}),
    );
    assert_object_limit(
        &r,
        "aliases_to_identify",
        0,
        "string_bytes",
        "external_id: 9 bytes",
    );
    assert_eq!(everyone(&ws), 1, "only \"ok\" was created");

    let b = tracked(
        &ws,
        json!([{"external_id": eight, "plan": eight, "tags": [eight]}]),
    );
    assert_eq!(b["errors"], json!([]), "at the limit");
    assert_eq!(everyone(&ws), 2);

    // Cohort ids and names (partner endpoints: Braze's shape).
    let secret = ws.import_key(PARTNER);
    let name_call = |cohort_id: &str, name: &str| {
        server.post_raw(
            &format!("/partners/{PARTNER}/cohorts"),
            json!({
                "partner_api_key": PARTNER_KEY,
                "client_secret": secret,
                "cohort_id": cohort_id,
                "name": name,
                "created_at": "2024-01-01T00:00:00Z"
            })
            .to_string()
            .as_bytes(),
        )
    };
    assert_partner_limit(&name_call(nine, "n"), "string_bytes", "cohort_id: 9 bytes");
    assert_partner_limit(&name_call("c1", nine), "string_bytes", "name: 9 bytes");
    let r = server.post_raw(
        &users_path(),
        delta(&secret, nine, json!([{"user_ids": [eight]}]))
            .to_string()
            .as_bytes(),
    );
    assert_partner_limit(&r, "string_bytes", "cohort_id: 9 bytes");
    assert_eq!(ws.get(&format!("/cohorts/{PARTNER}/{nine}")).status, 404);
    assert_eq!(ws.get(&format!("/cohorts/{PARTNER}/c1")).status, 404);
    assert_eq!(name_call(eight, eight).status, 201);

    // Segment names.
    let r = ws.post("/segments", json!({"name": nine, "filter": {"all": true}}));
    assert_limit(&r, "string_bytes", "name: 9 bytes");
    assert_eq!(ws.get("/segments").body["segments"], json!([]));
    assert_eq!(
        ws.post("/segments", json!({"name": eight, "filter": {"all": true}}))
            .status,
        201
    );
}

fn exists_leaf(i: usize) -> Value {
    json!({"attribute": {"name": format!("a{i}"), "op": "exists"}})
}

fn regex_leaf(i: usize) -> Value {
    json!({"attribute": {"name": "plan", "op": "matches_regex", "value": format!("^a{i}")}})
}

fn or_of(n: usize, leaf: impl Fn(usize) -> Value) -> Value {
    json!({ "or": (0..n).map(leaf).collect::<Vec<_>>() })
}

#[test]
fn filter_leaves_bound_previews_and_saved_segments() {
    let server = Server::start_with(|c| c.limits.filter_leaves = 3);
    let ws = server.workspace("acme");
    let four = json!({"and": [exists_leaf(0), {"not": or_of(3, exists_leaf)}]});
    let r = ws.post("/segments/preview", json!({ "filter": four }));
    assert_limit(&r, "filter_leaves", "filter: 4 leaves, over the limit of 3");
    let r = ws.post("/segments", json!({"name": "big", "filter": four}));
    assert_limit(&r, "filter_leaves", "4 leaves");
    assert_eq!(ws.get("/segments").body["segments"], json!([]));

    let three = or_of(3, exists_leaf);
    let r = ws.post("/segments/preview", json!({ "filter": three }));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = ws.post("/segments", json!({"name": "ok", "filter": three}));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["segment_id"].as_str().unwrap().to_string();
    let r = ws.server.call(
        "PUT",
        &format!("/segments/{id}"),
        Some(&ws.key),
        Some(&json!({"name": "ok", "filter": four})),
    );
    assert_limit(&r, "filter_leaves", "4 leaves");
    assert_eq!(ws.get(&format!("/segments/{id}")).body["filter"], three);
}

#[test]
fn filter_regex_leaves_bound_the_regexes_of_a_filter() {
    let server = Server::start_with(|c| c.limits.filter_regex_leaves = 2);
    let ws = server.workspace("acme");
    let r = ws.post(
        "/segments/preview",
        json!({ "filter": or_of(3, regex_leaf) }),
    );
    assert_limit(
        &r,
        "filter_regex_leaves",
        "filter: 3 regex leaves, over the limit of 2",
    );
    let mixed = json!({"or": [regex_leaf(0), exists_leaf(0), {"not": regex_leaf(1)}]});
    let r = ws.post("/segments/preview", json!({ "filter": mixed }));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn filter_regex_bytes_bound_the_compiled_size_of_a_filters_regexes() {
    let one = cohortd::segment::Pattern::new("^a0")
        .unwrap()
        .compiled_bytes();
    assert_eq!(
        cohortd::segment::Pattern::new("^a1")
            .unwrap()
            .compiled_bytes(),
        one,
        "the leaves below compile to the same size"
    );
    let server = Server::start_with(|c| c.limits.filter_regex_bytes = 2 * one);
    let ws = server.workspace("acme");
    let r = ws.post(
        "/segments",
        json!({"name": "r", "filter": or_of(3, regex_leaf)}),
    );
    assert_limit(
        &r,
        "filter_regex_bytes",
        "bytes of compiled regex, over the limit of",
    );
    assert_eq!(ws.get("/segments").body["segments"], json!([]));
    let r = ws.post(
        "/segments",
        json!({"name": "r", "filter": or_of(2, regex_leaf)}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn partner_change_objects_bound_a_delta_and_keep_the_identifier_rule() {
    let server = Server::start_with(|c| c.limits.partner_change_objects = 3);
    let ws = server.workspace("acme");
    ws.users(&["u1", "u2"]);
    let secret = ws.import_key(PARTNER);
    let push = |changes: Value| {
        server.post_raw(
            &users_path(),
            delta(&secret, "c1", changes).to_string().as_bytes(),
        )
    };
    let four: Vec<Value> = (0..4).map(|_| json!({"user_ids": ["u1"]})).collect();
    let r = push(json!(four));
    assert_eq!(
        r.body,
        json!({"message": "cohort_changes: 4 change objects, over the limit of 3 (limits.partner_change_objects in config.toml)"})
    );
    assert_eq!(r.status, 400);
    // Empty objects count too (they are what made bodies expensive).
    let r = push(json!(vec![json!({}); 100]));
    assert_partner_limit(&r, "partner_change_objects", "100 change objects");
    assert_eq!(
        ws.get(&format!("/cohorts/{PARTNER}/c1")).status,
        404,
        "nothing applied"
    );

    let three = json!([{"user_ids": ["u1"]}, {}, {"user_ids": ["u2"], "should_remove": false}]);
    let r = push(three);
    assert_eq!(
        (r.status, r.body["added"].as_u64()),
        (201, Some(2)),
        "{}",
        r.body
    );

    // The 1,000-identifier rule and its pinned text are unchanged.
    let ids: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
    let r = push(json!([{ "user_ids": ids }]));
    assert_eq!(
        (r.status, r.body.clone()),
        (
            400,
            json!({"message": "Only 1,000 user_ids, device_ids, and aliases are allowed per request"})
        )
    );
}

#[test]
fn cohorts_per_workspace_bound_name_calls_and_deltas_that_would_create_one() {
    let server = Server::start_with(|c| c.limits.cohorts_per_workspace = 2);
    let ws = server.workspace("acme");
    ws.users(&["u1"]);
    let secret = ws.import_key(PARTNER);
    let name_call = |cohort_id: &str, name: &str| {
        server.post_raw(
            &format!("/partners/{PARTNER}/cohorts"),
            json!({
                "partner_api_key": PARTNER_KEY,
                "client_secret": secret,
                "cohort_id": cohort_id,
                "name": name,
                "created_at": "2024-01-01T00:00:00Z"
            })
            .to_string()
            .as_bytes(),
        )
    };
    let push = |cohort: &str, changes: Value| {
        server.post_raw(
            &users_path(),
            delta(&secret, cohort, changes).to_string().as_bytes(),
        )
    };
    assert_eq!(name_call("c1", "One").status, 201);
    assert_eq!(
        push("c2", json!([{"user_ids": ["u1"]}])).status,
        201,
        "at the limit"
    );

    let r = name_call("c3", "Three");
    assert_partner_limit(
        &r,
        "cohorts_per_workspace",
        "creating cohort \"c3\" of partner \"hightouch\": 3 cohorts, over the limit of 2",
    );
    let r = push("c3", json!([{"user_ids": ["u1"]}]));
    assert_partner_limit(&r, "cohorts_per_workspace", "3 cohorts");
    assert_eq!(
        ws.get(&format!("/cohorts/{PARTNER}/c3")).status,
        404,
        "nothing created"
    );
    assert_eq!(
        ws.get("/cohorts").body["cohorts"].as_array().unwrap().len(),
        2
    );

    // What creates nothing still works: the connection test, renames,
    // deltas to existing cohorts.
    assert_eq!(push("c3", json!([])).status, 201);
    assert_eq!(name_call("c1", "Renamed").status, 201);
    let r = push("c1", json!([{"user_ids": ["u1"]}]));
    assert_eq!(
        (r.status, r.body["cohort_size"].as_u64()),
        (201, Some(1)),
        "{}",
        r.body
    );

    // The limit is per workspace.
    let other = server.workspace("other");
    let other_secret = other.import_key(PARTNER);
    for c in ["c1", "c2"] {
        let r = server.post_raw(
            &users_path(),
            delta(&other_secret, c, json!([{"user_ids": ["nobody"]}]))
                .to_string()
                .as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

#[test]
fn segments_per_workspace_bound_creation_only() {
    let server = Server::start_with(|c| c.limits.segments_per_workspace = 2);
    let ws = server.workspace("acme");
    let create = |name: &str| ws.post("/segments", json!({"name": name, "filter": {"all": true}}));
    assert_eq!(create("one").status, 201);
    let second = create("two");
    assert_eq!(second.status, 201, "at the limit");
    let r = create("three");
    assert_limit(
        &r,
        "segments_per_workspace",
        "creating a segment: 3 segments, over the limit of 2",
    );
    assert_eq!(
        ws.get("/segments").body["segments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Replacing one is not creating one; deleting one makes room.
    let id = second.body["segment_id"].as_str().unwrap().to_string();
    let r = ws.server.call(
        "PUT",
        &format!("/segments/{id}"),
        Some(&ws.key),
        Some(&json!({"name": "two again", "filter": {"all": true}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = ws
        .server
        .call("DELETE", &format!("/segments/{id}"), Some(&ws.key), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(create("three").status, 201);
}

#[test]
fn the_shipped_limits_are_in_force_by_default() {
    let server = Server::start();
    let ws = server.workspace("acme");
    let items: Vec<String> = (0..1001).map(|i| format!("i{i}")).collect();
    let r = track(&ws, json!([{"external_id": "u1", "tags": items}]));
    assert_object_limit(
        &r,
        "attributes",
        0,
        "array_items",
        "tags: 1001 items, over the limit of 1000",
    );
    let r = track(&ws, json!([{"external_id": "u1", "tags": &items[..1000]}]));
    assert_eq!(r.status, 201, "{}", r.body);
}
