//! The users API against the real Segment "Braze Cloud Mode (Actions)"
//! destination: `@segment/action-destinations` (pinned in
//! `tests/segment_destination/package.json`, installed by `.ci/run` with
//! `npm ci`), unmodified, with its default mappings, driven by
//! `tests/segment_destination/run.js` against this server. Checked: what
//! the client marked delivered or failed (per event of a batch, from our
//! `errors[].index`), and the state read back through segment previews
//! and `/users/memberships`.
//!
//! Needs Node.js and the installed package. With `CI=true` a missing part
//! fails the test; elsewhere the test says what to run and passes.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::{Server, Workspace};
use serde_json::{json, Value};

fn client_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/segment_destination"
    ))
}

/// Whether the client can run here; with `CI=true` it must.
fn client_available() -> bool {
    let installed = client_dir()
        .join("node_modules/@segment/action-destinations")
        .exists();
    let node = Command::new("node").arg("--version").output().is_ok();
    if installed && node {
        return true;
    }
    let what = "Node.js and `npm ci` in tests/segment_destination (.ci/run does both)";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the Segment destination test needs {what}"
    );
    eprintln!("skipping: the Segment destination test needs {what}");
    false
}

/// Runs the client's scenario; its report by step.
fn run_client(s: &Server, ws: &Workspace) -> HashMap<String, Value> {
    let out = Command::new("node")
        .arg("run.js")
        .current_dir(client_dir())
        .env("COHORTD_URL", &s.url)
        .env("COHORTD_KEY", &ws.key)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run.js failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .map(|v| (v["step"].as_str().unwrap().to_string(), v))
        .collect()
}

fn preview(ws: &Workspace, filter: Value) -> Value {
    let r = ws.post("/segments/preview", json!({ "filter": filter }));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn external_ids(preview: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = preview["sample"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["external_id"].as_str())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn the_real_segment_destination_delivers_what_braze_would_keep() {
    if !client_available() {
        return;
    }
    let s = Server::start();
    let ws = s.workspace("segment");
    let steps = run_client(&s, &ws);
    for (name, step) in &steps {
        assert_eq!(step["ok"], true, "{name}: the client threw: {step}");
    }
    assert_eq!(steps.len(), 9, "every step reported: {steps:?}");

    // What the client marked delivered or failed.
    let u1 = &steps["identify_u1"];
    assert_eq!(u1["http"], json!([201]));
    assert_eq!(
        u1["bodies"][0]["errors"],
        json!([]),
        "nested traits and location are kept"
    );
    assert_eq!(
        steps["identify_email_only"]["bodies"][0]["attributes_processed"],
        1
    );
    let profiles = &steps["batch_profiles"];
    assert_eq!(profiles["headers"], json!(["true"]), "sent as a batch");
    assert_eq!(profiles["statuses"], json!([200, 200, 400]), "{profiles}");
    assert!(profiles["errors"][2]
        .as_str()
        .unwrap()
        .contains("limits.nesting_depth"));
    let existing = &steps["batch_events_existing_only"];
    assert_eq!(existing["statuses"], json!([200, 400]), "{existing}");
    assert!(existing["errors"][1]
        .as_str()
        .unwrap()
        .contains("_update_existing_only"));
    assert_eq!(steps["purchase_u1"]["bodies"][0]["purchases_processed"], 2);
    assert_eq!(steps["alias_anon"]["bodies"][0]["aliases_processed"], 1);
    assert_eq!(steps["identify_alias"]["bodies"][0]["aliases_processed"], 1);
    assert_eq!(
        steps["delete_u3"]["bodies"][0]["deleted"], 1,
        "{}",
        steps["delete_u3"]
    );

    // What cohortd holds, read back.
    let city =
        |c: &str| json!({ "attribute": { "name": "address.city", "op": "equals", "value": c } });
    assert_eq!(external_ids(&preview(&ws, city("Lisbon"))), ["u1"]);
    assert_eq!(external_ids(&preview(&ws, city("Porto"))), ["u4"]);
    let near = json!({ "attribute": { "name": "current_location", "op": "within_km",
        "value": { "latitude": 38.7, "longitude": -9.1, "km": 20 } } });
    assert_eq!(external_ids(&preview(&ws, near)), ["u1"]);
    let email = preview(
        &ws,
        json!({ "attribute": { "name": "email", "op": "equals", "value": "only@example.com" } }),
    );
    assert_eq!(email["count"], 1, "{email}");
    assert_eq!(email["sample"][0]["email"], "only@example.com");
    assert!(email["sample"][0]["braze_id"].is_string());
    let did = |e: &str| json!({ "event": { "name": e, "op": "more_than", "count": 0 } });
    assert_eq!(external_ids(&preview(&ws, did("Clicked"))), ["u1"]);
    assert_eq!(
        external_ids(&preview(&ws, did("Viewed"))),
        ["u1"],
        "the ghost was not created"
    );
    // u1, the email-only profile, u4 and the alias identified as u2; not
    // u3 (deleted), u5 (its object was refused) nor the ghost.
    let all = preview(&ws, json!({ "all": true }));
    assert_eq!(all["count"], 4, "{all}");
    assert_eq!(
        ws.post("/users/memberships", json!({ "external_id": "u3" }))
            .status,
        404
    );
    let alias = json!({ "user_alias": { "alias_name": "anon-1", "alias_label": "segment" } });
    let by_alias = ws.post("/users/memberships", alias);
    assert_eq!(by_alias.status, 200, "{}", by_alias.body);
    assert_eq!(
        ws.post("/users/memberships", json!({ "external_id": "u2" }))
            .status,
        200
    );
}
