//! Cluster mode's HTTP side (SPEC §11): any node serves any request.
//!
//! [`Routing`] wraps the app. On a single node it passes every request
//! through untouched. On a cluster node, around each request:
//!
//! - **`X-Cohortd-Min-Sequence`**: the request waits (up to
//!   [`MIN_SEQUENCE_WAIT`], then 503) until this node has applied the
//!   write that answered with that sequence, so a client reads its own
//!   writes on any node.
//! - **Forwarding.** A write body is kept (bounded by `max_body_bytes`)
//!   while the handler runs. When the engine refuses the write because
//!   another node leads its shard (`Error::NotLeader`, noted in
//!   `engine::clustered::ROUTED` before anything was applied), the same
//!   request (method, path, query, headers, body) is sent to that leader,
//!   and its answer is the answer. A forwarded request carries
//!   `X-Cohortd-Forwarded` and is never forwarded again: a node that does
//!   not lead it answers 503 and the client retries.
//! - **`X-Cohortd-Sequence`** on a write's answer: the position of the
//!   last record the request appended.
//! - **`X-Cohortd-May-Be-Stale: true`** on an answer while a shard has no
//!   leader this node knows of (JetStream without a quorum or unreachable,
//!   or an election under way): reads go on from what the node applied,
//!   and say they may miss newer writes.
//!
//! `GET /cluster` is here too.

use std::cell::RefCell;
use std::future::{ready, Ready};
use std::io::Read;
use std::rc::Rc;
use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpMessage, HttpResponse};
use futures_util::future::LocalBoxFuture;

use serde_json::json;

use super::AdminAuth;
use crate::engine::clustered::{Routed, ROUTED};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// How long a read waits for `X-Cohortd-Min-Sequence` (SPEC §11).
pub const MIN_SEQUENCE_WAIT: Duration = Duration::from_secs(5);

/// How long a forwarded write may take at its leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

pub const MIN_SEQUENCE: &str = "x-cohortd-min-sequence";
pub const SEQUENCE: &str = "x-cohortd-sequence";
pub const FORWARDED: &str = "x-cohortd-forwarded";
pub const MAY_BE_STALE: &str = "x-cohortd-may-be-stale";

/// Request headers that belong to one connection, not to the request.
const HOP_BY_HOP: [&str; 8] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "expect",
];

/// The middleware (module docs).
pub struct Routing;

impl<S, B> Transform<S, ServiceRequest> for Routing
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RoutingService<S>;
    type InitError = ();
    type Future = Ready<std::result::Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RoutingService {
            service: Rc::new(service),
        }))
    }
}

pub struct RoutingService<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for RoutingService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, std::result::Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let engine = req.app_data::<web::Data<Engine>>().cloned();
        let cluster = engine.as_ref().and_then(|e| e.cluster());
        let (Some(engine), Some(cluster)) = (engine, cluster) else {
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        };
        Box::pin(async move {
            if let Some(wanted) = header_u64(&req, MIN_SEQUENCE) {
                match wanted {
                    Ok(p) if engine.wait_applied(p, MIN_SEQUENCE_WAIT).await => {}
                    Ok(p) => {
                        let e = Error::Unavailable(format!(
                            "this node ({}) has not applied sequence {p} within {} s; it may \
                             lag behind: retry, or read without {MIN_SEQUENCE} (may be stale)",
                            cluster.node_id(),
                            MIN_SEQUENCE_WAIT.as_secs()
                        ));
                        return Ok(refuse(req, e));
                    }
                    Err(e) => return Ok(refuse(req, e)),
                }
            }
            let forwarded = req.headers().contains_key(FORWARDED);
            // A write's body is kept, to send it on if another node leads.
            let body = if is_write(req.method()) && !forwarded {
                let limit = engine.config().max_body_bytes;
                match take_body(&mut req, limit).await {
                    Ok(b) => Some(b),
                    Err(e) => return Ok(refuse(req, e)),
                }
            } else {
                None
            };
            let head = body.as_ref().map(|_| Head::of(&req));
            let routed = RefCell::new(Routed::default());
            let (res, routed) = ROUTED
                .scope(routed, async move {
                    let res = service.call(req).await;
                    (res, ROUTED.with(|r| r.borrow().clone()))
                })
                .await;
            let mut res = res?;
            if let (Some(url), Some(head), Some(body)) = (routed.leader, head, body) {
                let node = cluster.node_id().to_string();
                let answer = web::block(move || forward(&url, &head, body, &node)).await;
                let response = match answer {
                    Ok(Ok(r)) => r.into_response(),
                    Ok(Err(e)) => actix_web::ResponseError::error_response(&e),
                    Err(e) => actix_web::ResponseError::error_response(&Error::Internal(format!(
                        "forwarding thread: {e}"
                    ))),
                };
                return Ok(res.into_response(response).map_into_right_body());
            }
            if let Some(p) = routed.written {
                if let Ok(v) = header::HeaderValue::from_str(&p.to_string()) {
                    res.headers_mut()
                        .insert(header::HeaderName::from_static(SEQUENCE), v);
                }
            } else if cluster.may_be_stale() {
                res.headers_mut().insert(
                    header::HeaderName::from_static(MAY_BE_STALE),
                    header::HeaderValue::from_static("true"),
                );
            }
            Ok(res.map_into_left_body())
        })
    }
}

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn header_u64(req: &ServiceRequest, name: &str) -> Option<Result<u64>> {
    let v = req.headers().get(name)?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_header",
                    format!("{name} must be a sequence a write answered with (an integer)"),
                )
            }),
    )
}

fn refuse<B>(req: ServiceRequest, e: Error) -> ServiceResponse<EitherBody<B>> {
    req.into_response(actix_web::ResponseError::error_response(&e))
        .map_into_right_body()
}

/// Reads the whole body (up to `limit`) and puts it back for the handler.
async fn take_body(req: &mut ServiceRequest, limit: usize) -> Result<web::Bytes> {
    let body = super::collect_body(req.take_payload(), limit)
        .await?
        .freeze();
    req.set_payload(Payload::from(body.clone()));
    Ok(body)
}

/// What is sent on of a request: method, path and query, headers.
struct Head {
    method: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn of(req: &ServiceRequest) -> Head {
        Head {
            method: req.method().to_string(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.path().to_string(), |p| p.to_string()),
            headers: req
                .headers()
                .iter()
                .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()))
                .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
                .collect(),
        }
    }
}

/// The leader's answer to a forwarded request.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut out = HttpResponse::build(status);
        for (n, v) in self.headers {
            out.append_header((n, v));
        }
        out.body(BoxBody::new(self.body))
    }
}

/// Sends the request to the leader at `url` (blocking) and answers with
/// its answer.
fn forward(url: &str, head: &Head, body: web::Bytes, node: &str) -> Result<Answer> {
    // One agent for every forward: its connections to the leaders are
    // kept alive and reused.
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout(FORWARD_TIMEOUT)
            .redirects(0)
            .max_idle_connections_per_host(64)
            .build()
    });
    let target = format!("{}{}", url.trim_end_matches('/'), head.path_and_query);
    let mut request = agent.request(&head.method, &target);
    for (n, v) in &head.headers {
        request = request.set(n, v);
    }
    request = request.set(FORWARDED, node);
    let response = match request.send_bytes(&body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            tracing::warn!(leader = %url, error = %e, "forwarding a write to its shard's leader failed");
            return Err(Error::Unavailable(format!(
                "the shard's leader ({url}) did not answer the forwarded write; retry shortly \
                 (it may or may not have been applied: a retry of a delta or track is safe)"
            )));
        }
    };
    let mut headers = Vec::new();
    for name in response.headers_names() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        for v in response.all(&name) {
            headers.push((name.clone(), v.to_string()));
        }
    }
    let status = response.status();
    let mut body = Vec::new();
    response
        .into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .map_err(|e| Error::Unavailable(format!("reading the leader's answer: {e}")))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

#[utoipa::path(
    get,
    path = "/cluster",
    tag = "Operators",
    operation_id = "clusterStatus",
    summary = "Cluster status",
    description = "Cluster mode only (SPEC §11): every shard, the node leading it, the last \
        sequence this node applied, and how far it lags behind the shard's stream. A single \
        node answers 404.",
    responses(
        (status = 200, description = "This node's view of the cluster",
         body = crate::engine::clustered::ClusterStatus,
         example = json!({"node_id": "n1", "shards": [
             {"shard": 0, "leader": "n1", "applied_sequence": 12, "lag": 0, "first_sequence": 1},
             {"shard": 1, "leader": "n2", "applied_sequence": 7, "lag": 1, "first_sequence": 1}]})),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("admin_token" = [])),
)]
pub async fn status(_: AdminAuth, engine: web::Data<Engine>) -> Result<HttpResponse> {
    let Some(cluster) = engine.cluster() else {
        return Err(Error::NotFound("cluster (this node runs alone)"));
    };
    Ok(HttpResponse::Ok().json(cluster.status().await))
}

/// One shard of a cluster restore (`Engine::restore_set`), sent by the
/// node running the restore to the shard's leader.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreShardBody {
    /// The snapshot set.
    snapshot_id: String,
    shard: u32,
    /// The workspace counter when the restore began.
    cutoff: u32,
    /// The control shard's sequence when the restore began.
    control_sequence: u64,
}

#[utoipa::path(
    post,
    path = "/cluster/restore-shard",
    tag = "Operators",
    operation_id = "clusterRestoreShard",
    summary = "Restore one shard of a snapshot set (a step of a cluster restore)",
    description = "Cluster mode only: sent by the node running `POST /admin/restore` to each \
        shard's leader, with the operator's token. Restores the shard's workspaces that existed \
        when the restore began (up to `cutoff`) from the set's file for the shard, as a record \
        in the shard's stream. A single node answers 404.",
    request_body(content = RestoreShardBody, example = json!({
        "snapshot_id": "set-0001796306505313", "shard": 3, "cutoff": 12,
        "control_sequence": 40})),
    responses(
        (status = 200, description = "Restored", example = json!({"shard": 3, "sequence": 57})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("admin_token" = [])),
)]
pub async fn restore_shard(
    _: AdminAuth,
    engine: web::Data<Engine>,
    body: super::body::Json<RestoreShardBody>,
) -> Result<HttpResponse> {
    let position = engine
        .restore_shard(
            &body.snapshot_id,
            body.shard,
            body.cutoff,
            body.control_sequence,
        )
        .await?;
    let (_, sequence) = crate::engine::clustered::split(position);
    Ok(HttpResponse::Ok().json(json!({"shard": body.shard, "sequence": sequence})))
}

/// A restore's step at another node (`Engine::restore`'s
/// `shard_at_leader`): `POST {url}/cluster/restore-shard` with the
/// operator's `authorization`, blocking. A step that was surely not taken
/// (the node could not be reached, or answered that it does not lead
/// the shard) is [`Error::NotLeader`], which the restore tries again.
pub fn restore_shard_at(
    authorization: Option<String>,
) -> impl Fn(String, serde_json::Value) -> Result<()> + Send + Sync + 'static {
    move |url: String, body: serde_json::Value| {
        let target = format!("{}/cluster/restore-shard", url.trim_end_matches('/'));
        let mut request = ureq::AgentBuilder::new()
            .timeout(RESTORE_SHARD_TIMEOUT)
            .redirects(0)
            .build()
            .post(&target)
            .set(FORWARDED, "restore");
        if let Some(a) = &authorization {
            request = request.set("authorization", a);
        }
        let shard = body["shard"].as_u64().unwrap_or(0) as u32;
        let not_taken = || Error::NotLeader {
            shard,
            leader: None,
        };
        match request.send_json(body) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                if code == 503 && text.contains("\"not_leader\"") {
                    return Err(not_taken());
                }
                Err(Error::Unavailable(format!(
                    "the shard's leader ({url}) answered {code}: {text}"
                )))
            }
            Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => {
                tracing::warn!(node = %url, error = %t, "a restore step could not reach the shard's leader");
                Err(not_taken())
            }
            Err(e) => Err(Error::Unavailable(format!(
                "the shard's leader ({url}) did not answer: {e}"
            ))),
        }
    }
}

/// How long one shard's restore may take at its leader (it loads the
/// shard's file and appends it to the stream).
const RESTORE_SHARD_TIMEOUT: Duration = Duration::from_secs(120);
