//! The operator command line against a real server (issue 13): readable
//! summaries and tables by default, the server's JSON with `--json`, and a
//! reader that goes away ending a command quietly.

mod common;

use std::process::Stdio;

use common::process::{cli_json, cli_text, Home};
use serde_json::Value;

#[test]
fn workspace_list_and_status_show_the_server_as_a_table_or_json() {
    let home = Home::new();
    let d = home.start();
    let ids: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
    let acme = d.tenant("acme", &ids);
    let beta = d.tenant("beta", &ids[..3]);

    // The table: a header, then one line a workspace with its counts.
    let table = cli_text(&home.cli(&["workspace", "list"], Some(d.addr)));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("WORKSPACE_ID") && lines[0].contains("PROFILES"));
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} in {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let a = row(&acme.id);
    assert_eq!((a[1], a[a.len() - 2]), ("acme", "7"), "{table}");
    assert_eq!(row(&beta.id)[a.len() - 2], "3", "{table}");
    // --json is the server's own answer.
    let json = cli_json(&home.cli(&["workspace", "list", "--json"], Some(d.addr)));
    assert_eq!(json, d.get("/admin/workspaces", common::ADMIN).body);

    // Status: ready, the counts summed, no snapshot yet; then the one taken.
    let status = cli_json(&home.cli(&["status", "--json"], Some(d.addr)));
    assert_eq!(status["ready"], true);
    assert_eq!(status["address"], d.addr.to_string().as_str());
    assert_eq!(
        (status["workspaces"].as_u64(), status["profiles"].as_u64()),
        (Some(2), Some(10))
    );
    let before = status["snapshots"].as_u64().unwrap();
    let taken = cli_text(&home.cli(&["snapshot"], Some(d.addr)));
    assert!(taken.starts_with("snapshot snap-"), "{taken}");
    let id = taken.split_whitespace().nth(1).unwrap().to_string();
    let status = cli_json(&home.cli(&["status", "--json"], Some(d.addr)));
    assert_eq!(status["snapshots"].as_u64(), Some(before + 1));
    assert_eq!(status["last_snapshot"]["snapshot_id"], id.as_str());
    let text = cli_text(&home.cli(&["status"], Some(d.addr)));
    assert!(text.contains("ready") && text.contains(&id), "{text}");
    assert!(text.contains("2 (10 profiles"), "{text}");

    // Create and restore read as sentences by default.
    let created = cli_text(&home.cli(&["workspace", "create", "gamma"], Some(d.addr)));
    assert!(
        created.contains("created") && created.contains("REST API key (shown once): "),
        "{created}"
    );
    let restored = cli_text(&home.cli(&["restore", &id], Some(d.addr)));
    assert!(
        restored.starts_with(&format!("restored {id}")),
        "{restored}"
    );
    let listed = cli_json(&home.cli(&["workspace", "list", "--json"], Some(d.addr)));
    assert_eq!(
        listed["workspaces"].as_array().unwrap().len(),
        2,
        "the restore took gamma away"
    );
}

/// `cohortd inspect FILE | head` and the like: a reader that is gone ends
/// the command quietly, with success, instead of a panic about a broken
/// pipe.
#[test]
fn a_closed_reader_ends_a_command_quietly() {
    let home = Home::new();
    let d = home.start();
    d.tenant("acme", &["u1".to_string()]);
    let snap = cli_json(&home.cli(&["snapshot", "--json"], Some(d.addr)));
    let file = home
        .data_dir()
        .join(format!("{}.snap", snap["snapshot_id"].as_str().unwrap()));
    for args in [
        vec!["inspect", file.to_str().unwrap()],
        vec!["workspace", "list"],
        vec!["status", "--json"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = home.cli_to(&args, Some(d.addr), Stdio::from(writer));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(err.trim().is_empty(), "{args:?} said: {err}");
    }
}

/// `cohortd import profiles`: NDJSON and CSV files into a running server,
/// the lines the parser or the server refuse in the rejected file with
/// their numbers and why, and a summary that adds up.
#[test]
fn import_profiles_loads_ndjson_and_csv_and_names_every_refused_line() {
    let home = Home::new();
    let d = home.start();
    let t = d.tenant("acme", &["seed".to_string()]);
    let import = |file: &std::path::Path, key: &str, more: &[&str]| {
        let mut args = vec!["import", "profiles", file.to_str().unwrap(), "--key", key];
        args.extend(more);
        home.cli(&args, Some(d.addr))
    };
    let count = |filter: Value| -> u64 {
        let r = d.post(
            "/segments/preview",
            &t.key,
            serde_json::json!({ "filter": filter }),
        );
        r.body["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}", r.body))
    };

    // NDJSON: 300 profiles, and among them a line that is not JSON, one
    // that is not an object, one with no identifier, and a blank one.
    let mut lines: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"external_id":"p{i}","score":{i},"plan":"gold"}}"#))
        .collect();
    lines.insert(10, "this is not json".into());
    lines.insert(50, "[1, 2]".into());
    lines.insert(120, r#"{"score": 5}"#.into());
    lines.insert(200, String::new());
    let file = home.root().join("profiles.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let summary = cli_json(&import(&file, &t.key, &["--json"]));
    assert_eq!(summary["lines"], 303, "{summary}");
    assert_eq!(summary["imported"], 300, "{summary}");
    assert_eq!(summary["rejected"], 3, "{summary}");
    assert_eq!(summary["rejected_by_reason"]["not JSON"], 1, "{summary}");
    assert_eq!(summary["rejected_by_reason"]["not a JSON object"], 1);
    let rejected = std::fs::read_to_string(home.root().join("profiles.ndjson.rejected")).unwrap();
    let mut numbers: Vec<&str> = rejected
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["line 11", "line 121", "line 51"], "{rejected}");
    assert!(rejected.contains(r#"line 121: "#) && rejected.contains(r#"{"score": 5}"#));
    assert_eq!(
        count(serde_json::json!({"attribute": {"name": "plan", "op": "equals", "value": "gold"}})),
        300
    );
    assert_eq!(
        count(
            serde_json::json!({"attribute": {"name": "score", "op": "greater_than", "value": 249}})
        ),
        50
    );

    // CSV: typed cells, a quoted comma, an empty cell left out, and a row
    // with a cell too few; the readable summary by default.
    let csv = "external_id,score,vip,city\n\
               c1,7,true,\"Paris, FR\"\n\
               c2,2.5,false,Lyon\n\
               c3,,true,\n\
               c4,9\n";
    let file = home.root().join("more.csv");
    std::fs::write(&file, csv).unwrap();
    let rejected_path = home.root().join("refused.txt");
    let text = cli_text(&import(
        &file,
        &t.key,
        &["--rejected", rejected_path.to_str().unwrap()],
    ));
    assert!(
        text.starts_with("4 lines: 3 profiles imported, 1 lines rejected"),
        "{text}"
    );
    let rejected = std::fs::read_to_string(&rejected_path).unwrap();
    assert!(
        rejected.starts_with("line 5: 2 cells, the header has 4: c4,9"),
        "{rejected}"
    );
    let is = |name: &str, value: Value| {
        count(serde_json::json!({"attribute": {"name": name, "op": "equals", "value": value}}))
    };
    assert_eq!(is("city", "Paris, FR".into()), 1);
    assert_eq!(is("vip", true.into()), 2);
    assert_eq!(
        count(serde_json::json!({"and": [
            {"attribute": {"name": "score", "op": "greater_than", "value": 2}},
            {"attribute": {"name": "score", "op": "less_than", "value": 3}}
        ]})),
        1,
        "2.5 is a number"
    );
    assert_eq!(
        count(serde_json::json!({"attribute": {"name": "city", "op": "exists"}})),
        2,
        "c3's empty city is left out"
    );
    let listed = cli_json(&home.cli(&["workspace", "list", "--json"], Some(d.addr)));
    assert_eq!(listed["workspaces"][0]["profiles"], 1 + 300 + 3);

    // A wrong key refuses every line, saying why, and the command says so.
    let summary = cli_json(&import(&file, "nope", &["--json"]));
    assert_eq!(
        (summary["imported"].as_u64(), summary["rejected"].as_u64()),
        (Some(0), Some(4))
    );
    let reasons = summary["rejected_by_reason"].to_string();
    assert!(reasons.contains("401"), "{reasons}");
}
