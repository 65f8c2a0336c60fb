//! `/connectors` (SPEC §10): a workspace's custom HTTP connectors, which
//! deliver its change feed to a URL (`crate::connector`), and
//! `/admin/connectors`, every workspace's, for operators and the CLI.
//!
//! A connector's bearer token is never shown again: responses say only
//! whether it has one (`"bearer_token": true`, an extension).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::read_json;
use super::{created, AdminAuth, WorkspaceAuth};
use crate::engine::state::Connector;
use crate::engine::{ConnectorReport, Engine, NewConnector};
use crate::error::{Error, Result};
use crate::feed::EventType;

/// The longest URL and bearer token accepted.
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A connector to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorBody {
    #[schema(min_length = 1)]
    name: String,
    /// An http or https URL with a host, at most 2,048 bytes: where the
    /// batches are POSTed.
    #[schema(max_length = 2048)]
    url: String,
    /// Sent as `Authorization: Bearer <token>`; never shown again.
    /// 1 to 4,096 visible ASCII characters.
    #[schema(min_length = 1, max_length = 4096)]
    bearer_token: Option<String>,
    /// Event types to send (at least one); absent: all.
    #[schema(min_items = 1)]
    event_types: Option<Vec<String>>,
}

fn invalid(message: String) -> Error {
    Error::bad_request("invalid_connector", message)
}

/// The body as a connector to create, or what is wrong with it.
fn parse(body: ConnectorBody) -> Result<NewConnector> {
    if body.name.trim().is_empty() {
        return Err(invalid("name: must be a non-empty string".into()));
    }
    if body.url.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "url: must be at most {MAX_URL_BYTES} bytes, not {}",
            body.url.len()
        )));
    }
    match url::Url::parse(&body.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => {
            return Err(invalid(
                "url: must be an http or https URL with a host".into(),
            ))
        }
        Err(e) => return Err(invalid(format!("url: {e}"))),
    }
    if let Some(t) = &body.bearer_token {
        // Sent as a header: visible ASCII only.
        if t.is_empty() || t.len() > MAX_TOKEN_BYTES || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "bearer_token: must be 1 to {MAX_TOKEN_BYTES} visible ASCII characters"
            )));
        }
    }
    let event_types = match body.event_types {
        None => None,
        Some(names) if names.is_empty() => {
            return Err(invalid(
                "event_types: must name at least one type (leave it out for all)".into(),
            ))
        }
        Some(names) => {
            let mut types: Vec<EventType> = Vec::with_capacity(names.len());
            for name in &names {
                let t = EventType::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
                    invalid(format!(
                        "event_types: unknown type {name:?}; known: {}",
                        known.join(", ")
                    ))
                })?;
                if !types.contains(&t) {
                    types.push(t);
                }
            }
            Some(types)
        }
    };
    Ok(NewConnector {
        name: body.name,
        url: body.url,
        bearer_token: body.bearer_token,
        event_types,
    })
}

/// What every answer says of a connector.
fn connector_json(c: &Connector, state: &str) -> Value {
    let types: Vec<&str> = match &c.event_types {
        Some(t) => t.iter().map(|t| t.name()).collect(),
        None => EventType::ALL.iter().map(|t| t.name()).collect(),
    };
    json!({
        "connector_id": c.id,
        "name": c.name,
        "url": c.url,
        "event_types": types,
        "bearer_token": c.bearer_token.is_some(),
        "state": state,
        "created_at": crate::time::format_millis(c.created_at),
    })
}

/// [`connector_json`] with its delivery figures.
fn status_json(r: &ConnectorReport) -> Value {
    let mut v = connector_json(&r.connector, r.status.state.as_str());
    let s = &r.status;
    let more = json!({
        "sent": s.sent,
        "failed": s.failed,
        "skipped": s.skipped,
        "lag_events": r.lag_events,
        "lag_seconds": r.lag_seconds,
        "last_error": (!s.last_error.is_empty()).then_some(&s.last_error),
        "acknowledged_cursor": s.acked.to_string(),
    });
    if let (Value::Object(v), Value::Object(more)) = (&mut v, more) {
        v.extend(more);
    }
    v
}

/// The state of a connector with no report (not started yet: a moment
/// after it was created, or while the server recovers).
fn state_of(engine: &Engine, ws: &crate::engine::state::Workspace, c: &Connector) -> String {
    match engine.connector_report(ws, &c.id) {
        Ok(Some(r)) => r.status.state.as_str().to_string(),
        _ => "active".to_string(),
    }
}

#[utoipa::path(
    post,
    path = "/connectors",
    tag = "Connectors",
    operation_id = "createConnector",
    summary = "Create a connector",
    description = "From its creation on, the connector POSTs `{\"events\": [≤ 100 events]}` \
        to `url`, in feed order, at least once, with an `Idempotency-Key` that is the same on \
        every retry of a batch; failures back off exponentially.",
    request_body(content = ConnectorBody, example = json!({
        "name": "heap",
        "url": "https://heap.example/braze/currents",
        "bearer_token": "token-heap-gave-you",
        "event_types": ["users.cohorts.Entered", "users.cohorts.Exited"]
    })),
    responses(
        (status = 201, description = "Created", body = super::openapi::shapes::Connector, example = json!({"connector_id": "conn_a15587489c71dd65db2971abd4c31af9", "name": "heap",
             "url": "https://heap.example/braze/currents", "event_types": ["users.cohorts.Entered", "users.cohorts.Exited"],
             "bearer_token": true, "state": "active", "created_at": "2026-12-03T14:01:45.210Z"})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn create(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let new = read_json(&engine, payload, parse).await?;
    let c = engine.create_connector(&auth.0, new).await?;
    Ok(created(connector_json(&c, "active")))
}

#[utoipa::path(
    get,
    path = "/connectors",
    tag = "Connectors",
    operation_id = "listConnectors",
    summary = "List the workspace's connectors",
    responses(
        (status = 200, description = "Its connectors", body = super::openapi::shapes::Connectors),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("workspace_key" = [])),
)]
pub async fn list(engine: web::Data<Engine>, auth: WorkspaceAuth) -> Result<HttpResponse> {
    let all: Vec<Value> = auth
        .0
        .connectors_sorted()
        .iter()
        .map(|c| connector_json(c, &state_of(&engine, &auth.0, c)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "connectors": all })))
}

#[utoipa::path(
    get,
    path = "/connectors/{id}",
    tag = "Connectors",
    operation_id = "getConnector",
    summary = "One connector, with its delivery figures",
    params(super::openapi::shapes::ConnectorPath),
    responses(
        (status = 200, description = "The connector and its figures", body = super::openapi::shapes::ConnectorStatus),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("workspace_key" = [])),
)]
pub async fn get(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let c = auth.0.connector(&id).ok_or(Error::NotFound("connector"))?;
    match engine.connector_report(&auth.0, &c.id)? {
        Some(r) => Ok(HttpResponse::Ok().json(status_json(&r))),
        None => Err(Error::NotFound("connector")),
    }
}

#[utoipa::path(
    delete,
    path = "/connectors/{id}",
    tag = "Connectors",
    operation_id = "deleteConnector",
    summary = "Delete a connector",
    params(super::openapi::shapes::ConnectorPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn delete(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    engine.delete_connector(&auth.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /admin/connectors`: every workspace's connectors with their
/// figures (`cohortd connectors`).
#[utoipa::path(
    get,
    path = "/admin/connectors",
    tag = "Operators",
    operation_id = "adminListConnectors",
    summary = "Every workspace's connectors, with their figures",
    responses(
        (status = 200, description = "Every connector", body = super::openapi::shapes::AdminConnectors),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("admin_token" = [])),
)]
pub async fn admin_list(engine: web::Data<Engine>, _: AdminAuth) -> Result<HttpResponse> {
    let all: Vec<Value> = engine
        .connector_reports()?
        .iter()
        .map(|r| {
            let mut v = status_json(r);
            if let Value::Object(m) = &mut v {
                m.insert("workspace_id".into(), r.workspace.to_string().into());
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "connectors": all })))
}
