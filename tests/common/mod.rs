//! Test harness: a real cohortd on an ephemeral loopback port with a temp
//! data dir, and a small blocking client that speaks to it as partners,
//! workspaces and operators do.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod process;

use std::path::PathBuf;

use cohortd::app::{self, Running};
use cohortd::config::Config;
use serde_json::{json, Value};

pub const ADMIN: &str = "test-admin-token";
pub const PARTNER_KEY: &str = "test-partner-key";

pub struct Server {
    pub running: Running,
    pub url: String,
    pub data_dir: tempfile::TempDir,
}

/// The shipped config with test secrets, a temp data dir and port 0.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        admin_token: Some(ADMIN.to_string()),
        http_workers: 2,
        ..Config::default()
    };
    for p in c.partners.values_mut() {
        p.api_key = Some(PARTNER_KEY.to_string());
    }
    // Heap gets its own key so tests can tell partner keys apart.
    c.partners.get_mut("heap").unwrap().api_key = Some("heap-partner-key".into());
    c
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path().to_path_buf());
        tweak(&mut config);
        let running = app::start(config).expect("server starts");
        let url = running.url();
        Server {
            running,
            url,
            data_dir,
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let req = ureq::request(method, &format!("{}{path}", self.url));
        send(req, token, body, Resp::from)
    }

    /// POSTs raw bytes (for malformed bodies).
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Resp {
        let req =
            ureq::post(&format!("{}{path}", self.url)).set("Content-Type", "application/json");
        Resp::from(req.send_bytes(body))
    }

    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("POST", path, Some(token), Some(&body))
    }

    /// A new workspace: its REST key.
    pub fn workspace(&self, name: &str) -> Workspace<'_> {
        let r = self.post("/admin/workspaces", ADMIN, json!({ "name": name }));
        assert_eq!(r.status, 201, "{}", r.body);
        Workspace {
            server: self,
            id: r.body["workspace_id"].as_str().unwrap().to_string(),
            key: r.body["rest_api_key"].as_str().unwrap().to_string(),
        }
    }
}

pub struct Workspace<'a> {
    pub server: &'a Server,
    pub id: String,
    pub key: String,
}

impl Workspace<'_> {
    pub fn get(&self, path: &str) -> Resp {
        self.server.get(path, &self.key)
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.server.post(path, &self.key, body)
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.server.call("DELETE", path, Some(&self.key), None)
    }

    /// A live data import key (client_secret) for `partner`.
    pub fn import_key(&self, partner: &str) -> String {
        let r = self.server.call(
            "POST",
            &format!("/technology_partners/{partner}/data_import_keys"),
            Some(&self.key),
            None,
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["data_import_key"].as_str().unwrap().to_string()
    }

    /// Creates identified profiles.
    pub fn users(&self, ids: &[&str]) {
        let attrs: Vec<Value> = ids.iter().map(|id| json!({ "external_id": id })).collect();
        for chunk in attrs.chunks(75) {
            let r = self.post("/users/track", json!({ "attributes": chunk }));
            assert_eq!(r.status, 201, "{}", r.body);
        }
    }

    /// Every member of a cohort, walking all pages, without its braze_id
    /// (checked here to be there; `braze_ids` and `users_api` test its value).
    pub fn members(&self, partner: &str, cohort: &str) -> Vec<Value> {
        self.members_with_braze_ids(partner, cohort)
            .into_iter()
            .map(without_braze_id)
            .collect()
    }

    /// Every member of a cohort as listed, braze_id included.
    pub fn members_with_braze_ids(&self, partner: &str, cohort: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = self.get(&format!(
                "/cohorts/{partner}/{cohort}/members?limit=1000&cursor={cursor}"
            ));
            assert_eq!(r.status, 200, "{}", r.body);
            out.extend(r.body["members"].as_array().unwrap().iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return out,
            }
        }
    }

    /// The external ids of a cohort's members, sorted.
    pub fn member_ids(&self, partner: &str, cohort: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .members(partner, cohort)
            .iter()
            .map(|m| match m.get("external_id") {
                Some(e) => e.as_str().unwrap().to_string(),
                None => m.to_string(),
            })
            .collect();
        ids.sort();
        ids
    }

    pub fn size(&self, partner: &str, cohort: &str) -> Option<u64> {
        let r = self.get(&format!("/cohorts/{partner}/{cohort}"));
        (r.status == 200).then(|| r.body["size"].as_u64().unwrap())
    }
}

/// A partner's users body.
pub fn delta(secret: &str, cohort: &str, changes: Value) -> Value {
    json!({
        "partner_api_key": PARTNER_KEY,
        "client_secret": secret,
        "cohort_id": cohort,
        "cohort_changes": changes,
    })
}

/// Sends `req` with an optional bearer token and JSON body, and hands
/// ureq's outcome to `read` (which decides what a transport error means).
pub fn send<T>(
    mut req: ureq::Request,
    token: Option<&str>,
    body: Option<&Value>,
    read: impl FnOnce(Result<ureq::Response, ureq::Error>) -> T,
) -> T {
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    read(match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    })
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

impl From<Result<ureq::Response, ureq::Error>> for Resp {
    fn from(r: Result<ureq::Response, ureq::Error>) -> Resp {
        Resp::try_from_ureq(r).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Resp {
    /// Any HTTP answer (2xx or not) is a `Resp`; a transport failure (refused,
    /// reset, timed out: no answer at all) is an `Err` naming it.
    pub fn try_from_ureq(r: Result<ureq::Response, ureq::Error>) -> Result<Resp, String> {
        let resp = match r {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(format!("transport error: {e}")),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .map(|n| {
                let v = resp.header(&n).unwrap_or("").to_string();
                (n, v)
            })
            .collect();
        let text = resp.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Resp {
            status,
            body,
            headers,
        })
    }
}

/// Polls `done` until it holds; gives up (panics) after a generous bound,
/// so a broken server fails the test instead of hanging it.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A listed member without its `braze_id`, which every listing carries
/// (24 hex digits; asserted here).
pub fn without_braze_id(mut m: Value) -> Value {
    let id = m
        .as_object_mut()
        .and_then(|o| o.remove("braze_id"))
        .unwrap_or_else(|| panic!("a member without braze_id: {m}"));
    let id = id.as_str().expect("braze_id is a string");
    assert!(
        id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "braze_id {id:?}"
    );
    m
}

/// The change feed's event schema kept in the repo
/// (`docs/schemas/currents-events.schema.json`).
pub fn event_schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(include_str!(
        "../../docs/schemas/currents-events.schema.json"
    ))
    .unwrap();
    jsonschema::validator_for(&schema).expect("a valid schema")
}

/// Checks every event against [`event_schema`], naming what is wrong.
pub fn check_event_shapes(events: &[Value]) {
    let validator = event_schema();
    for e in events {
        let errors: Vec<String> = validator.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{e}: {errors:?}");
    }
}
