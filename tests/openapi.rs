//! The OpenAPI document (`/openapi.json`, issue 13) against the code:
//!
//! - it describes exactly the routes the server registers
//!   (`cohortd::http::ROUTES`, the one route table), with unique operation
//!   ids, declared path parameters, the security each route really needs,
//!   and every `$ref` resolving;
//! - every example it holds, wherever it is (schemas, properties, request
//!   bodies, responses, parameters), validates against its schema;
//! - its examples are what a client may send: each route is called on a
//!   real server, with the documented request example where there is one,
//!   and the real answer must have a documented status and validate
//!   against the documented schema (and, where the answer is
//!   deterministic, equal the documented response example);
//! - `/docs` serves the reference from the embedded assets under a strict
//!   Content-Security-Policy.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cohortd::http::ROUTES;
use common::{Resp, Server, ADMIN, PARTNER_KEY};
use serde_json::{json, Value};

/// Documented but not in the route table, and why.
const OUTSIDE_THE_TABLE: &[(&str, &str, &str)] = &[(
    "GET",
    "/openapi.json",
    "the document describes itself; `openapi::routes` registers it with /docs",
)];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn document(server: &Server) -> Value {
    let r = server.call("GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body.is_object(), "{}", r.body);
    r.body
}

/// Every `(METHOD, path)` the document describes, with its operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            out.insert((method.to_uppercase(), path.clone()), op.clone());
        }
    }
    out
}

/// What a JSON pointer (`#/components/...`) names in the document.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("{reference}: only local refs"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} resolves to nothing"))
}

/// A response object, its `$ref` (to `components/responses`) followed.
fn response_object<'a>(doc: &'a Value, r: &'a Value) -> &'a Value {
    match r.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(doc, reference),
        None => r,
    }
}

fn every_ref(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    // Examples are data, not document.
                    ("example" | "examples" | "default" | "enum" | "const", _) => {}
                    _ => every_ref(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| every_ref(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_describes_exactly_the_route_table() {
    let server = Server::start();
    let doc = document(&server);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let documented = operations(&doc);

    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "a route is listed twice");
    for route in &table {
        assert!(
            documented.contains_key(route),
            "{route:?} is served but not in /openapi.json"
        );
    }
    for route in documented.keys() {
        let outside = OUTSIDE_THE_TABLE
            .iter()
            .any(|(m, p, _)| (*m, *p) == (route.0.as_str(), route.1.as_str()));
        assert!(
            table.contains(route) || outside,
            "{route:?} is in /openapi.json but not in the route table"
        );
    }
    for (method, path, why) in OUTSIDE_THE_TABLE {
        assert!(!table.contains(&(method.to_string(), path.to_string())));
        let r = server.call(method, path, None, None);
        assert_eq!(r.status, 200, "{method} {path} ({why})");
    }

    let mut ids = BTreeSet::new();
    for ((method, path), op) in &documented {
        let at = format!("{method} {path}");
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{at}"));
        assert!(ids.insert(id.to_string()), "{at}: operationId {id} twice");
        assert!(op["summary"].is_string(), "{at}: a summary");
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{at}");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{at}: a success response"
        );

        // Path parameters: exactly the template's.
        let template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(template, declared, "{at}: path parameters");

        // Security: what the route really takes.
        let schemes: BTreeSet<String> = op["security"]
            .as_array()
            .map(|reqs| {
                reqs.iter()
                    .flat_map(|r| r.as_object().unwrap().keys().cloned())
                    .collect()
            })
            .unwrap_or_default();
        let expected: &[&str] = match path.as_str() {
            p if p.starts_with("/partners/") => &[], // body fields, see the info
            "/healthz" | "/readyz" | "/openapi.json" => &[],
            "/metrics" => &["admin_token"], // optional: `security: [{}, {admin_token}]`
            p if p.starts_with("/admin/") => &["admin_token"],
            // SPEC §11 pins the path; the shard restore is its
            // companion (a step of `POST /admin/restore`).
            "/cluster" | "/cluster/restore-shard" => &["admin_token"],
            _ => &["workspace_key"],
        };
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(schemes, expected, "{at}: security");
        if !expected.is_empty() {
            assert!(responses.contains_key("401"), "{at}: its 401");
        }
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for name in ["workspace_key", "admin_token"] {
        assert_eq!(schemes[name]["type"], "http", "{name}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }
    let info = doc["info"]["description"].as_str().unwrap();
    assert!(
        info.contains("partner_api_key") && info.contains("client_secret"),
        "the partner API's authentication is described"
    );

    let mut refs = Vec::new();
    every_ref(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        resolve(&doc, &r);
    }
}

// ---- examples against their schemas --------------------------------------

/// An example in the document, and the schema it must satisfy.
struct Example {
    at: String,
    value: Value,
    schema: Value,
}

/// A validator for `schema`, with `#/components/...` resolved against
/// the whole document, and formats (`date-time`) checked.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = match schema {
        Value::Object(o) => o.clone(),
        other => panic!("a schema that is not an object: {other}"),
    };
    root.insert("components".into(), doc["components"].clone());
    jsonschema::options()
        .should_validate_formats(true)
        .build(&Value::Object(root))
        .unwrap_or_else(|e| panic!("an invalid schema {schema}: {e}"))
}

fn violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let v = validator(doc, schema);
    v.iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The examples of a schema and of every schema inside it.
fn schema_examples(s: &Value, at: &str, out: &mut Vec<Example>) {
    let Some(o) = s.as_object() else { return };
    if let Some(e) = o.get("example") {
        out.push(Example {
            at: format!("{at} (schema example)"),
            value: e.clone(),
            schema: s.clone(),
        });
    }
    if let Some(Value::Array(es)) = o.get("examples") {
        for (i, e) in es.iter().enumerate() {
            out.push(Example {
                at: format!("{at} (schema examples[{i}])"),
                value: e.clone(),
                schema: s.clone(),
            });
        }
    }
    for (k, v) in o {
        match k.as_str() {
            "properties" | "patternProperties" | "$defs" | "dependentSchemas" => {
                for (name, sub) in v.as_object().into_iter().flatten() {
                    schema_examples(sub, &format!("{at}.{k}.{name}"), out);
                }
            }
            "allOf" | "oneOf" | "anyOf" | "prefixItems" => {
                for (i, sub) in v.as_array().into_iter().flatten().enumerate() {
                    schema_examples(sub, &format!("{at}.{k}[{i}]"), out);
                }
            }
            "items"
            | "not"
            | "additionalProperties"
            | "contains"
            | "if"
            | "then"
            | "else"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties" => schema_examples(v, &format!("{at}.{k}"), out),
            _ => {}
        }
    }
}

/// The examples of a media type or parameter (`example`, `examples`)
/// against its `schema`, and those of the schema itself.
fn media_examples(m: &Value, at: &str, out: &mut Vec<Example>) {
    let schema = m.get("schema").cloned().unwrap_or(json!({}));
    if let Some(e) = m.get("example") {
        out.push(Example {
            at: format!("{at} (example)"),
            value: e.clone(),
            schema: schema.clone(),
        });
    }
    for (name, e) in m
        .get("examples")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let e = match e.get("$ref").and_then(Value::as_str) {
            Some(_) => panic!("{at}: examples by $ref are not followed here"),
            None => e,
        };
        out.push(Example {
            at: format!("{at} (examples.{name})"),
            value: e["value"].clone(),
            schema: schema.clone(),
        });
    }
    schema_examples(&schema, &format!("{at}.schema"), out);
}

fn response_examples(r: &Value, at: &str, out: &mut Vec<Example>) {
    for (ct, m) in r
        .get("content")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        media_examples(m, &format!("{at} {ct}"), out);
    }
    for (h, header) in r
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        media_examples(header, &format!("{at} header {h}"), out);
    }
}

/// Every example of the document, each with the schema it must satisfy.
fn examples(doc: &Value) -> Vec<Example> {
    let mut out = Vec::new();
    let components = &doc["components"];
    for (name, s) in components["schemas"].as_object().into_iter().flatten() {
        schema_examples(s, &format!("schemas.{name}"), &mut out);
    }
    for (name, r) in components["responses"].as_object().into_iter().flatten() {
        response_examples(r, &format!("responses.{name}"), &mut out);
    }
    for ((method, path), op) in operations(doc) {
        let at = format!("{method} {path}");
        for p in op["parameters"].as_array().into_iter().flatten() {
            media_examples(p, &format!("{at} parameter {}", p["name"]), &mut out);
        }
        for (ct, m) in op["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flatten()
        {
            media_examples(m, &format!("{at} request {ct}"), &mut out);
        }
        for (status, r) in op["responses"].as_object().into_iter().flatten() {
            // A `$ref`'d response is checked once, under components.
            if r.get("$ref").is_none() {
                response_examples(r, &format!("{at} {status}"), &mut out);
            }
        }
    }
    out
}

/// How many examples the document holds, wherever they are: what
/// [`examples`] must have found, all of them.
fn count_examples(v: &Value) -> usize {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("example", _) => 1,
                ("examples", Value::Array(es)) => es.len(),
                ("examples", Value::Object(es)) => es.len(),
                ("default" | "enum" | "const", _) => 0,
                _ => count_examples(v),
            })
            .sum(),
        Value::Array(items) => items.iter().map(count_examples).sum(),
        _ => 0,
    }
}

/// The calls whose request and success answer must have an example.
const EXAMPLES_REQUIRED: &[(&str, &str, bool)] = &[
    // (method, path, has a request body)
    ("POST", "/partners/{partner}/cohorts", true),
    ("POST", "/partners/{partner}/cohorts/users", true),
    ("POST", "/users/track", true),
    ("POST", "/segments", true),
    ("POST", "/segments/preview", true),
    ("GET", "/segments/{id}/count", false),
    ("GET", "/segments/{id}/members", false),
    ("GET", "/cohorts", false),
    ("GET", "/feed", false),
    ("POST", "/connectors", true),
    ("POST", "/admin/workspaces", true),
    ("POST", "/admin/snapshots", false),
    ("GET", "/admin/snapshots", false),
];

#[test]
fn every_example_validates_against_its_schema() {
    let server = Server::start();
    let doc = document(&server);
    let found = examples(&doc);
    assert_eq!(
        found.len(),
        count_examples(&doc),
        "an example somewhere the walk does not look"
    );
    assert!(found.len() > 50, "only {} examples", found.len());
    let mut failures = Vec::new();
    for e in &found {
        let errors = violations(&doc, &e.schema, &e.value);
        if !errors.is_empty() {
            failures.push(format!("{}: {} → {errors:?}", e.at, e.value));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let ops = operations(&doc);
    for (method, path, has_body) in EXAMPLES_REQUIRED {
        let op = &ops[&(method.to_string(), path.to_string())];
        if *has_body {
            assert!(
                op["requestBody"]["content"]["application/json"]["example"].is_object(),
                "{method} {path}: a request example"
            );
        }
        let success = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(s, _)| s.starts_with('2'))
            .map(|(_, r)| r)
            .unwrap();
        assert!(
            !success["content"]["application/json"]["example"].is_null(),
            "{method} {path}: a response example"
        );
    }
}

// ---- the documented examples against the real server --------------------

/// Calls the server as the document says, and checks each answer
/// against it; remembers which routes answered.
struct Client<'a> {
    server: &'a Server,
    doc: Value,
    ops: BTreeMap<(String, String), Value>,
    exercised: BTreeSet<(String, String)>,
}

impl<'a> Client<'a> {
    fn new(server: &'a Server) -> Client<'a> {
        let doc = document(server);
        let ops = operations(&doc);
        Client {
            server,
            doc,
            ops,
            exercised: BTreeSet::new(),
        }
    }

    fn op(&self, method: &str, template: &str) -> &Value {
        self.ops
            .get(&(method.to_string(), template.to_string()))
            .unwrap_or_else(|| panic!("{method} {template} is not documented"))
    }

    /// The documented request example of an operation.
    fn request_example(&self, method: &str, template: &str) -> Value {
        let e = &self.op(method, template)["requestBody"]["content"]["application/json"]["example"];
        assert!(!e.is_null(), "{method} {template}: no request example");
        e.clone()
    }

    /// The documented response example for a status.
    fn response_example(&self, method: &str, template: &str, status: u16) -> Value {
        let r = &self.op(method, template)["responses"][status.to_string()];
        response_object(&self.doc, r)["content"]["application/json"]["example"].clone()
    }

    /// The path: each `{param}` from `values`, else its documented example.
    fn path(&self, method: &str, template: &str, values: &[(&str, &str)]) -> String {
        let op = self.op(method, template);
        let mut path = template.to_string();
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] != "path" {
                continue;
            }
            let name = p["name"].as_str().unwrap();
            let value = match values.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => v.to_string(),
                None => p["example"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{template}: {name} has no example"))
                    .to_string(),
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
        assert!(!path.contains('{'), "{path}");
        path
    }

    /// Sends a request and checks its answer against the document: a
    /// documented status, the documented content type and headers, a
    /// body valid against the documented schema.
    fn call(
        &mut self,
        method: &str,
        template: &str,
        params: &[(&str, &str)],
        query: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let path = self.path(method, template, params);
        let r = self
            .server
            .call(method, &format!("{path}{query}"), token, body);
        let at = format!("{method} {path}{query} → {}", r.status);
        let documented = &self.op(method, template)["responses"][r.status.to_string()];
        assert!(
            !documented.is_null(),
            "{at}: an undocumented status: {}",
            r.body
        );
        let documented = response_object(&self.doc, documented);
        match documented.get("content").and_then(Value::as_object) {
            None => assert!(
                r.body.as_str().is_some_and(str::is_empty),
                "{at}: a body where none is documented: {}",
                r.body
            ),
            Some(content) => {
                let (ct, media) = content.iter().next().unwrap();
                let got = r.header("content-type").unwrap_or("");
                assert!(
                    got.split(';').next() == ct.split(';').next(),
                    "{at}: content type {got}, documented {ct}"
                );
                let errors = violations(&self.doc, &media["schema"], &r.body);
                assert!(
                    errors.is_empty(),
                    "{at}: the answer does not match the document: {}\n{errors:#?}",
                    r.body
                );
            }
        }
        for name in documented
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(n, _)| n)
        {
            assert!(
                r.header(name).is_some(),
                "{at}: header {name} is documented"
            );
        }
        self.exercised
            .insert((method.to_string(), template.to_string()));
        r
    }

    /// Sends the documented request example (adjusted by `with`) and
    /// checks the answer; returns it.
    fn example(
        &mut self,
        method: &str,
        template: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
        with: impl FnOnce(&mut Value),
    ) -> Resp {
        let mut body = self.request_example(method, template);
        with(&mut body);
        self.call(method, template, params, "", token, Some(&body))
    }

    /// A body the server refuses with a 400 is refused by the documented
    /// request schema too.
    fn refused(
        &mut self,
        method: &str,
        template: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
        body: Value,
    ) {
        let r = self.call(method, template, params, "", token, Some(&body));
        assert_eq!(r.status, 400, "{method} {template} {body}: {}", r.body);
        let schema =
            &self.op(method, template)["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            !violations(&self.doc, schema, &body).is_empty(),
            "{method} {template}: the document accepts {body}, which the server refuses ({})",
            r.body
        );
    }

    /// The answer is the documented response example, exactly.
    fn same_as_documented(&self, method: &str, template: &str, r: &Resp) {
        let documented = self.response_example(method, template, r.status);
        assert_eq!(
            r.body, documented,
            "{method} {template}: the documented example is not what the server answers"
        );
    }
}

#[test]
fn the_documented_examples_are_what_the_server_answers() {
    let server = Server::start();
    let mut c = Client::new(&server);
    let none = |_: &mut Value| {};

    // Operators: a workspace.
    let r = c.example("POST", "/admin/workspaces", &[], Some(ADMIN), none);
    assert_eq!(r.status, 201);
    let rest_key = r.body["rest_api_key"].as_str().unwrap().to_string();
    let key = Some(rest_key.as_str());

    // Profiles, and every object of the example applies.
    let r = c.example("POST", "/users/track", &[], key, none);
    assert_eq!(r.status, 201);
    c.same_as_documented("POST", "/users/track", &r);

    // A data import key, and the partner's two calls with it.
    let r = c.call(
        "POST",
        "/technology_partners/{partner}/data_import_keys",
        &[],
        "",
        key,
        None,
    );
    assert_eq!(r.status, 201);
    let secret = r.body["data_import_key"].as_str().unwrap().to_string();
    let key_id = r.body["key_id"].as_str().unwrap().to_string();
    let credentials = |b: &mut Value| {
        b["partner_api_key"] = json!(PARTNER_KEY);
        b["client_secret"] = json!(secret);
    };
    for template in [
        "/partners/{partner}/cohorts",
        "/partners/{partner}/cohorts/users",
    ] {
        let r = c.example("POST", template, &[], None, credentials);
        assert_eq!(r.status, 201, "{template}");
        c.same_as_documented("POST", template, &r);
    }
    // Braze's error texts, in the documented shape.
    let r = c.example(
        "POST",
        "/partners/{partner}/cohorts/users",
        &[],
        None,
        |b| {
            b["client_secret"] = json!(secret);
        },
    );
    assert_eq!((r.status, r.message()), (401, "Invalid Partner API key"));
    c.same_as_documented("POST", "/partners/{partner}/cohorts/users", &r);
    let r = c.example("POST", "/partners/{partner}/cohorts", &[], None, |b| {
        credentials(b);
        b["name"] = json!("");
    });
    assert_eq!(r.status, 400);
    c.same_as_documented("POST", "/partners/{partner}/cohorts", &r);
    let r = c.example(
        "POST",
        "/partners/{partner}/cohorts",
        &[("partner", "acme")],
        None,
        credentials,
    );
    assert_eq!(r.status, 404);
    c.same_as_documented("POST", "/partners/{partner}/cohorts", &r);

    // Cohorts read back.
    for template in [
        "/cohorts",
        "/cohorts/{partner}/{cohort_id}",
        "/cohorts/{partner}/{cohort_id}/members",
        "/cohorts/{partner}/{cohort_id}/imports",
    ] {
        let r = c.call("GET", template, &[], "", key, None);
        assert_eq!(r.status, 200, "{template}");
    }
    let r = c.call(
        "GET",
        "/cohorts/{partner}/{cohort_id}/members",
        &[],
        "",
        key,
        None,
    );
    c.same_as_documented("GET", "/cohorts/{partner}/{cohort_id}/members", &r);
    let r = c.call("GET", "/cohorts", &[], "?limit=0", key, None);
    assert_eq!(r.status, 400);
    c.refused(
        "POST",
        "/admin/workspaces",
        &[],
        Some(ADMIN),
        json!({"name": "acme", "x": 1}),
    );
    c.refused(
        "POST",
        "/admin/workspaces",
        &[],
        Some(ADMIN),
        json!({"name": ""}),
    );
    let r = c.call("GET", "/cohorts", &[], "", Some(ADMIN), None);
    assert_eq!(r.status, 401, "the admin token is not a workspace key");
    c.same_as_documented("GET", "/cohorts", &r);

    // Segments.
    let r = c.example("POST", "/segments", &[], key, none);
    assert_eq!(r.status, 201);
    c.same_as_documented("POST", "/segments", &r);
    let seg = r.body["segment_id"].as_str().unwrap().to_string();
    let id = [("id", seg.as_str())];
    for (method, template, exact) in [
        ("GET", "/segments", true),
        ("GET", "/segments/{id}", false),
        ("GET", "/segments/{id}/count", true),
        ("GET", "/segments/{id}/members", true),
    ] {
        let r = c.call(method, template, &id, "", key, None);
        assert_eq!(r.status, 200, "{template}");
        if exact {
            c.same_as_documented(method, template, &r);
        }
    }
    for (template, exact) in [
        ("/segments/preview", true),
        ("/segments/{id}/membership", true),
        ("/users/memberships", true),
    ] {
        let r = c.example("POST", template, &id, key, none);
        assert_eq!(r.status, 200, "{template}: {}", r.body);
        if exact {
            c.same_as_documented("POST", template, &r);
        }
    }
    let r = c.call("GET", "/segments/{id}", &[("id", "seg_99")], "", key, None);
    assert_eq!(r.status, 404);
    // What the server refuses, the document does not allow either.
    let bad_filters = [
        json!({"attribute": {"name": "plan", "op": "sounds_like", "value": "x"}}),
        json!({"attribute": {"name": "plan", "op": "exists", "value": "x"}}),
        json!({"cohort": {"partner": "segment"}}),
        json!({"event": {"name": "e", "op": "more_than"}}),
        json!({"and": [{"all": true}], "or": [{"all": true}]}),
        json!({"everyone": true}),
        json!({"and": []}),
        json!({"cohort": {"partner": "segment", "cohort_id": "aud_1", "x": 1}}),
    ];
    for filter in bad_filters {
        c.refused(
            "POST",
            "/segments",
            &[],
            key,
            json!({"name": "x", "filter": filter}),
        );
    }
    c.refused(
        "POST",
        "/segments/preview",
        &[],
        key,
        json!({"filter": {"all": true}, "x": 1}),
    );
    for member in [
        json!({}),
        json!({"external_id": "u1", "device_id": "d1"}),
        json!({"email": "a@b.c"}),
    ] {
        c.refused("POST", "/users/memberships", &[], key, member);
    }
    c.refused("POST", "/connectors", &[], key, json!({"name": "no url"}));
    c.refused(
        "POST",
        "/users/export/ids",
        &[],
        key,
        json!({"external_id": "u1"}),
    );
    let r = c.example("PUT", "/segments/{id}", &id, key, none);
    assert_eq!(r.status, 200);

    // The other users calls: every entry of each example applies.
    for template in [
        "/users/alias/new",
        "/users/identify",
        "/users/export/ids",
        "/users/delete",
    ] {
        let r = c.example("POST", template, &[], key, none);
        assert_eq!(r.status, 201, "{template}");
        if template == "/users/export/ids" {
            assert_eq!(r.body["invalid_user_ids"], json!(["nobody"]));
        } else {
            assert_eq!(r.body["errors"], json!([]), "{template}");
            c.same_as_documented("POST", template, &r);
        }
    }
    let r = c.example("POST", "/users/track", &[], key, |b| {
        b["attributes"][0]["external_id"] = json!("");
    });
    assert_eq!(r.status, 201, "one bad object is not fatal");
    assert_eq!(r.body["errors"][0]["index"], 0);
    let r = c.call("POST", "/users/track", &[], "", key, Some(&json!({})));
    assert_eq!(r.status, 400);

    // The change feed.
    let r = c.call("GET", "/feed", &[], "?limit=1000", key, None);
    assert_eq!(r.status, 200);
    let events = r.body["events"].as_array().unwrap();
    let types: BTreeSet<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for t in [
        "users.behaviors.CustomEvent",
        "users.behaviors.Purchase",
        "users.cohorts.Entered",
        "users.UserOrphan",
        "users.UserDeleteRequest",
    ] {
        assert!(types.contains(t), "{t} in the feed: {types:?}");
    }
    common::check_event_shapes(events);

    // Connectors: the example, delivering to a closed local port instead
    // of the documented host, so that nothing leaves this machine.
    let r = c.example("POST", "/connectors", &[], key, |b| {
        b["url"] = json!("http://127.0.0.1:9/currents");
    });
    assert_eq!(r.status, 201);
    let conn = r.body["connector_id"].as_str().unwrap().to_string();
    let conn = [("id", conn.as_str())];
    let r = c.call("GET", "/connectors", &[], "", key, None);
    assert_eq!(r.status, 200);
    common::wait_for("the connector's report", || {
        server
            .get(&format!("/connectors/{}", conn[0].1), &rest_key)
            .status
            == 200
    });
    let r = c.call("GET", "/connectors/{id}", &conn, "", key, None);
    assert_eq!(r.status, 200);
    let r = c.call("GET", "/admin/connectors", &[], "", Some(ADMIN), None);
    assert_eq!(r.status, 200);
    let r = c.call("DELETE", "/connectors/{id}", &conn, "", key, None);
    assert_eq!(r.status, 204);

    // Keys.
    let r = c.call("GET", "/technology_partners", &[], "", key, None);
    assert_eq!(r.status, 200);
    let r = c.call(
        "DELETE",
        "/technology_partners/{partner}/data_import_keys/{key_id}",
        &[("key_id", &key_id)],
        "",
        key,
        None,
    );
    assert_eq!(r.status, 200);

    // Operators: snapshots and a restore.
    let r = c.call("POST", "/admin/snapshots", &[], "", Some(ADMIN), None);
    assert_eq!(r.status, 201);
    let snapshot = r.body["snapshot_id"].as_str().unwrap().to_string();
    for template in ["/admin/snapshots", "/admin/workspaces"] {
        let r = c.call("GET", template, &[], "", Some(ADMIN), None);
        assert_eq!(r.status, 200, "{template}");
    }
    let r = c.example("POST", "/admin/restore", &[], Some(ADMIN), |b| {
        b["snapshot_id"] = json!(snapshot);
    });
    assert_eq!(r.status, 200);
    let r = c.call("DELETE", "/segments/{id}", &id, "", key, None);
    assert_eq!(r.status, 200);
    c.same_as_documented("DELETE", "/segments/{id}", &r);
    // A single node is not a cluster (tests/cluster_nodes.rs reads the
    // 200 from three nodes).
    let r = c.call("GET", "/cluster", &[], "", Some(ADMIN), None);
    assert_eq!(r.status, 404);
    // Nor does it restore one shard of a set (tests/cluster_nodes.rs does).
    let body = json!({"snapshot_id": "set-0001796306505313", "shard": 3, "cutoff": 12,
                      "control_sequence": 40});
    let r = c.call(
        "POST",
        "/cluster/restore-shard",
        &[],
        "",
        Some(ADMIN),
        Some(&body),
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // Probes, metrics, the document.
    for template in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = c.call("GET", template, &[], "", None, None);
        assert_eq!(r.status, 200, "{template}");
    }

    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missed: Vec<_> = table.difference(&c.exercised).collect();
    assert!(
        missed.is_empty(),
        "routes whose answers were not checked against the document: {missed:?}"
    );
}

// ---- /docs -----------------------------------------------------------------

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// ` onload=`, ` onclick=`, …: an inline event handler attribute.
fn has_event_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        name_end > 0 && rest[name_end..].starts_with('=')
    })
}

fn raw_get(server: &Server, path: &str) -> (u16, String, ureq::Response) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let resp = match agent.get(&format!("{}{path}", server.url)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = resp.status();
    let ct = resp.content_type().to_string();
    (status, ct, resp)
}

#[test]
fn docs_serve_the_embedded_reference_under_a_strict_policy() {
    let server = Server::start();

    let (status, _, resp) = raw_get(&server, "/docs");
    assert!(matches!(status, 301 | 308), "{status}");
    assert_eq!(resp.header("location"), Some("/docs/"));

    let (status, ct, resp) = raw_get(&server, "/docs/");
    assert_eq!((status, ct.as_str()), (200, "text/html"));
    let csp = resp.header("content-security-policy").unwrap().to_string();
    let normalized = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(normalized(&csp), normalized(CSP));
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap();
    assert!(
        !script_src.contains("unsafe-inline") && !script_src.contains("unsafe-eval"),
        "{script_src}"
    );
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    let html = resp.into_string().unwrap();

    // The page: no inline script, nothing from another origin, and each
    // asset it names is served with its type, under the same policy.
    assert!(html.contains("<div id=\"swagger-ui\">"), "{html}");
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            assets.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    for tag in html.split("<script").skip(1) {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(open.contains("src="), "an inline script: <script{tag}");
        assert!(
            tag[tag.find('>').unwrap() + 1..].starts_with("</script>"),
            "a script with a body"
        );
    }
    assert!(!html.contains(" style=\""), "an inline style");
    assert!(!has_event_handler(&html), "an inline event handler");
    let mut types = BTreeSet::new();
    for asset in &assets {
        assert!(
            !asset.contains("//") || asset == "/openapi.json",
            "{asset} is not from this server"
        );
        let path = if asset.starts_with('/') {
            asset.clone()
        } else {
            format!("/docs/{asset}")
        };
        let (status, ct, resp) = raw_get(&server, &path);
        assert_eq!(status, 200, "{path}");
        if path.starts_with("/docs/") {
            assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
            assert!(resp.header("content-security-policy").is_some(), "{path}");
        }
        let expected = match path.rsplit_once('.').unwrap().1 {
            "js" => "text/javascript",
            "css" => "text/css",
            "json" => "application/json",
            other => panic!("{path}: an asset of type {other}"),
        };
        assert_eq!(ct, expected, "{path}");
        types.insert(expected);
        let body = resp.into_string().unwrap();
        assert!(!body.is_empty(), "{path}");
        if path.ends_with("init.js") {
            assert!(
                body.contains("\"/openapi.json\""),
                "init.js loads the document"
            );
            assert!(body.contains("validatorUrl: null"), "no validator badge");
        }
    }
    assert!(types.contains("text/javascript") && types.contains("text/css"));
    assert!(assets.iter().any(|a| a.ends_with("init.js")), "{assets:?}");

    // The vendored files carry their licence.
    let (status, _, _) = raw_get(&server, "/docs/vendor/swagger-ui-dist/LICENSE");
    assert_eq!(status, 200);

    // An ETag, and a 304 for it.
    let (_, _, resp) = raw_get(&server, "/docs/init.js");
    let etag = resp.header("etag").unwrap().to_string();
    let again = ureq::get(&format!("{}/docs/init.js", server.url))
        .set("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(again.status(), 304);

    for missing in ["/docs/nope", "/docs/vendor/nope.js", "/docs/../Cargo.toml"] {
        let (status, _, _) = raw_get(&server, missing);
        assert_eq!(status, 404, "{missing}");
    }
}
