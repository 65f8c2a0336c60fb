//! The dashboard (`/ui`).
//!
//! Without a browser: what `/ui` serves (HTML with the strict CSP and the
//! other headers, JavaScript modules as `text/javascript`, 404 for an
//! unknown asset) and what the files may not contain (inline script or
//! style, `innerHTML`, anything from another origin).
//!
//! In a browser: `tests/dashboard/run.js` drives the real dashboard in
//! headless Chromium (Debian's `/usr/bin/chromium`, or `CHROMIUM`) through
//! `playwright-core` (pinned in `tests/dashboard/package.json`, installed by
//! `.ci/run` with `npm ci`): sign in with a workspace key, generate a data
//! import key, see the cohort the partner's deltas fill, build and save a
//! segment whose live count follows a delta, look up a user, then as the
//! operator take a snapshot and restore it, at 1280×800 and 390×844, with
//! no console error or CSP violation. This file starts the server, makes
//! the profiles, pushes the partner's deltas when the script asks
//! (`{"need": …}` lines on its stdout, answered on its stdin) and checks
//! what the script reports against the server's state.
//!
//! Needs Node.js, the installed package and Chromium. With `CI=true` a
//! missing part fails the test; elsewhere the test says what to run and
//! passes. With `COHORTD_SCREENSHOTS=<dir>` the script saves a PNG of each
//! page there (how `docs/screenshots/` was made).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{delta, Server, Workspace, ADMIN, PARTNER_KEY};
use serde_json::{json, Value};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn ui_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/ui"))
}

fn ui_files(ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ui_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// GETs a path without a token; status, headers and body text.
fn fetch(s: &Server, path: &str) -> (u16, HashMap<String, String>, String) {
    let r = match ureq::get(&format!("{}{path}", s.url)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = r.header(&n).unwrap_or("").to_string();
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    (status, headers, r.into_string().unwrap())
}

#[test]
fn ui_serves_its_files_with_a_strict_policy() {
    let s = Server::start();
    for path in ["/ui", "/ui/", "/ui/index.html"] {
        let (status, headers, body) = fetch(&s, path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            headers["content-type"], "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(headers["content-security-policy"], CSP, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert!(body.contains(r#"<script type="module" src="/ui/main.js">"#));
    }
    // Every module and the stylesheet, with the type a browser runs them as.
    for file in ui_files("js") {
        let name = file.file_name().unwrap().to_str().unwrap();
        let (status, headers, body) = fetch(&s, &format!("/ui/{name}"));
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            headers["content-type"], "text/javascript; charset=utf-8",
            "{name}"
        );
        assert_eq!(headers["content-security-policy"], CSP);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(body, std::fs::read_to_string(&file).unwrap(), "{name}");
    }
    let (status, headers, _) = fetch(&s, "/ui/app.css");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    let (status, headers, _) = fetch(&s, "/ui/icon.svg");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/svg+xml");
    // Unknown assets, and nothing outside ui/.
    for path in [
        "/ui/nope.js",
        "/ui/nope",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
        "/ui/..%2fCargo.toml",
        "/ui/main.js/",
    ] {
        let (status, _, _) = fetch(&s, path);
        assert_eq!(status, 404, "{path}");
    }
}

#[test]
fn ui_files_hold_no_inline_code_and_load_nothing_from_elsewhere() {
    let html = ui_files("html");
    assert!(!html.is_empty());
    for file in html {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display();
        assert!(!text.contains("<style"), "{name}: inline <style>");
        assert!(!text.contains("style="), "{name}: a style attribute");
        for (i, _) in text.match_indices("<script") {
            let tag = &text[i..i + text[i..].find('>').unwrap()];
            assert!(tag.contains("src=\"/ui/"), "{name}: inline script {tag}");
        }
        let lower = text.to_ascii_lowercase();
        assert!(
            !lower.contains(" onclick=") && !lower.contains(" onload="),
            "{name}: an inline handler"
        );
        assert!(!lower.contains("http://") && !lower.contains("https://"));
    }
    for file in ui_files("js") {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display();
        assert!(
            text.starts_with("// "),
            "{name}: starts with a comment header"
        );
        for banned in [
            "innerHTML",
            "outerHTML =",
            "insertAdjacentHTML",
            "eval(",
            "new Function",
            "setAttribute('style'",
            "from 'http",
            "import('http",
            "fetch('http",
            "fetch(`http",
        ] {
            assert!(!text.contains(banned), "{name}: {banned}");
        }
    }
}

// ---- in a browser ----

fn client_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard"))
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether the browser test can run here; with `CI=true` it must.
fn browser_available() -> bool {
    let installed = client_dir().join("node_modules/playwright-core").exists();
    let node = Command::new("node").arg("--version").output().is_ok();
    if installed && node && chromium().exists() {
        return true;
    }
    let what = "Node.js, `npm ci` in tests/dashboard and Chromium (`apt-get install chromium`; .ci/run does all three)";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the dashboard test needs {what}"
    );
    eprintln!("skipping: the dashboard test needs {what}");
    false
}

/// The script's process, killed if the test fails before it ends.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Profiles the scenario needs: u1–u6, some on the gold plan, u1 with
/// an email, a name and events; an alias-only and an anonymous one.
fn profiles(ws: &Workspace) {
    let plan = |id: &str, gold: bool| json!({ "external_id": id, "plan": if gold { "gold" } else { "free" } });
    let mut attributes = vec![
        json!({ "external_id": "u1", "plan": "gold", "email": "u1@example.com",
                "first_name": "Ada", "address": { "city": "Lisbon" }, "tags": ["vip"] }),
        plan("u2", true),
        plan("u3", false),
        plan("u4", true),
        plan("u5", true),
    ];
    attributes.push(json!({ "external_id": "u6" }));
    // An alias-only and an anonymous profile, for the lookup by alias and
    // by device.
    attributes.push(json!({
        "user_alias": { "alias_name": "anon-1", "alias_label": "newsletter" },
        "_update_existing_only": false, "plan": "free",
    }));
    attributes.push(json!({ "device_id": "dev-1", "plan": "free" }));
    let r = ws.post(
        "/users/track",
        json!({
            "attributes": attributes,
            "events": [
                { "external_id": "u1", "name": "Viewed", "time": "2026-01-01T10:00:00Z" },
                { "external_id": "u1", "name": "Viewed", "time": "2026-01-02T10:00:00Z" },
            ],
            "purchases": [
                { "external_id": "u1", "product_id": "plan-gold", "currency": "EUR", "price": 9.5,
                  "time": "2026-01-02T11:00:00Z" },
            ],
        }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["errors"], json!([]), "{}", r.body);
}

/// The partner's calls: the cohort name call, then a delta.
fn push(s: &Server, secret: &str, cohort: &str, name: Option<&str>, changes: Value) -> Value {
    if let Some(name) = name {
        let r = s.call(
            "POST",
            "/partners/segment/cohorts",
            None,
            Some(&json!({
                "partner_api_key": PARTNER_KEY, "client_secret": secret, "cohort_id": cohort,
                "name": name, "created_at": "2026-01-01T00:00:00.000Z",
            })),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = s.call(
        "POST",
        "/partners/segment/cohorts/users",
        None,
        Some(&delta(secret, cohort, changes)),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// Answers one of the script's requests: the server-side part of a step.
fn serve_need(s: &Server, ws: &Workspace, need: &Value) -> Value {
    let key = need["key"].as_str().unwrap_or_default();
    match need["need"].as_str().unwrap() {
        "deltas" => {
            let first = push(
                s,
                key,
                "aud_1",
                Some("Big spenders"),
                json!([{ "user_ids": ["u1", "u2", "u3", "u4", "ghost"] }]),
            );
            assert_eq!(
                (&first["added"], &first["unmatched"]),
                (&json!(4), &json!(1))
            );
            let second = push(
                s,
                key,
                "aud_1",
                None,
                json!([{ "user_ids": ["u4"], "should_remove": true }]),
            );
            assert_eq!(second["cohort_size"], 3, "{second}");
            push(
                s,
                key,
                "aud_2",
                Some("Churn risk"),
                json!([{ "user_ids": ["u3", "u6"] }]),
            );
        }
        "another_delta" => {
            let r = push(s, key, "aud_1", None, json!([{ "user_ids": ["u5"] }]));
            assert_eq!(r["cohort_size"], 4, "{r}");
        }
        "after_snapshot" => {
            // A change the restore must undo: u1 leaves aud_1.
            let r = push(
                s,
                key,
                "aud_1",
                None,
                json!([{ "user_ids": ["u1"], "should_remove": true }]),
            );
            assert_eq!(r["cohort_size"], 3, "{r}");
        }
        "restored" => {
            assert_eq!(ws.size("segment", "aud_1"), Some(4), "the restore undid it");
            assert!(ws
                .member_ids("segment", "aud_1")
                .contains(&"u1".to_string()));
        }
        other => panic!("the script needs {other:?}"),
    }
    json!({ "ok": true })
}

/// Runs the scenario; the script's reports by step.
fn run_scenario(s: &Server, ws: &Workspace) -> HashMap<String, Value> {
    let mut cmd = Command::new("node");
    cmd.arg("run.js")
        .current_dir(client_dir())
        .env("COHORTD_URL", &s.url)
        .env("COHORTD_KEY", &ws.key)
        .env("COHORTD_ADMIN", ADMIN)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(dir) = std::env::var_os("COHORTD_SCREENSHOTS") {
        // Relative to where the test runs (the package root), not to the
        // script's directory.
        cmd.env("COHORTD_SCREENSHOTS", std::path::absolute(dir).unwrap());
    }
    let mut script = Script(cmd.spawn().expect("node starts"));
    let mut stdin = script.0.stdin.take().unwrap();
    let stdout = BufReader::new(script.0.stdout.take().unwrap());
    let mut steps = HashMap::new();
    for line in stdout.lines() {
        let line = line.expect("the script's output");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v.get("need").is_some() {
            let answer = serve_need(s, ws, &v);
            writeln!(stdin, "{answer}").expect("the script reads its answer");
            continue;
        }
        assert_eq!(v["ok"], true, "the browser scenario failed: {v:#}");
        steps.insert(v["step"].as_str().unwrap().to_string(), v);
    }
    let status = script.0.wait().unwrap();
    assert!(status.success(), "run.js exited with {status}");
    steps
}

#[test]
fn the_dashboard_in_chromium() {
    if !browser_available() {
        return;
    }
    let s = Server::start();
    let ws = s.workspace("dashboard");
    profiles(&ws);
    let steps = run_scenario(&s, &ws);
    let names = [
        "sign_in",
        "keyboard",
        "generate_key",
        "cohort",
        "segment_builder",
        "save",
        "builder_kinds",
        "lookup",
        "layout_workspace",
        "operator",
        "health",
        "layout_operator",
    ];
    for name in names {
        assert!(steps.contains_key(name), "step {name} reported: {steps:?}");
    }

    // The key shown once is live; the one invalidated in the dialog is not.
    let keys = &steps["generate_key"];
    let live = keys["key"].as_str().unwrap();
    let revoked = keys["revoked"].as_str().unwrap();
    let empty = |secret: &str| {
        s.call(
            "POST",
            "/partners/segment/cohorts/users",
            None,
            Some(&delta(secret, "aud_1", json!([]))),
        )
    };
    assert_eq!(empty(live).status, 201);
    let r = empty(revoked);
    assert_eq!((r.status, r.message()), (401, "Invalid client secret"));
    let listed = ws.get("/technology_partners").body;
    let segment = listed["technology_partners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partner"] == "segment")
        .unwrap();
    assert_eq!(segment["data_import_keys"].as_array().unwrap().len(), 1);
    assert_eq!(segment["data_import_keys"][0]["key_id"], keys["key_id"]);
    assert_eq!(segment["data_import_keys"][0]["masked_key"], keys["masked"]);

    // The builder sent exactly the filter it showed, and saved it.
    let filter = json!({ "and": [
        { "cohort": { "partner": "segment", "cohort_id": "aud_1" } },
        { "attribute": { "name": "plan", "op": "equals", "value": "gold" } },
    ]});
    assert_eq!(steps["segment_builder"]["filter"], filter);
    let id = steps["save"]["segment_id"].as_str().unwrap();
    let saved = ws.get(&format!("/segments/{id}"));
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_eq!(saved.body["name"], "Gold big spenders (aud_1)");
    assert_eq!(saved.body["filter"], filter);
    assert_eq!(ws.get(&format!("/segments/{id}/count")).body["count"], 3);
    assert_eq!(
        steps["segment_builder"]["everyone"], "8",
        "the empty builder counts every profile"
    );

    // Every kind of node, as the builder wrote it; its segment deleted.
    let kinds = &steps["builder_kinds"];
    let expected = json!({ "and": [
        { "not": { "cohort": { "partner": "segment", "cohort_id": "aud_2" } } },
        { "or": [
            { "event": { "name": "Viewed", "op": "more_than", "count": 1 } },
            { "attribute": { "name": "address.city", "op": "equals", "value": "Lisbon" } },
            { "attribute": { "name": "current_location", "op": "within_km",
                             "value": { "latitude": 38.7, "longitude": -9.1, "km": 20 } } },
            { "not": { "attribute": { "name": "plan", "op": "equals", "value": "free" } } },
        ]},
    ]});
    assert_eq!(kinds["filter"], expected);
    let preview = ws.post("/segments/preview", json!({ "filter": expected }));
    assert_eq!(preview.body["count"], 4, "{}", preview.body);
    let deleted = kinds["deleted"].as_str().unwrap();
    assert_eq!(ws.get(&format!("/segments/{deleted}")).status, 404);

    // The operator's restore is the server's.
    let op = &steps["operator"];
    assert_eq!(op["restored"], op["snapshot_id"]);
    let snaps = s.get("/admin/snapshots", ADMIN).body;
    assert!(snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["snapshot_id"] == op["snapshot_id"]));
    let second = op["rest_key"].as_str().unwrap();
    assert_eq!(
        s.get("/cohorts", second).status,
        200,
        "the new workspace's key works"
    );
}
