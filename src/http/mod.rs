//! The thin HTTP layer: the route table, authentication extractors, and
//! the wire types of each resource (one file per resource). Handlers parse
//! into domain types, make one engine call, and render; no business rule
//! lives here.
//!
//! The engine call is typed both ways: a write is an `Engine` method per
//! operation (`engine.apply_delta(&ws, key, changes)`) that answers with
//! that operation's result, and a read is a method on the authenticated
//! `Workspace` (`engine::read`) that answers with plain values. So this
//! layer never builds a log command, never matches on a router outcome,
//! and never takes one of the engine's locks; `WorkspaceAuth` is only the
//! handle those calls take.

mod admin;
pub mod body;
mod cohorts;
mod connectors;
mod feed;
mod openapi;
mod ops;
mod partner;
mod segments;
mod technology_partners;
mod ui;
mod users;

/// Objects per `/users/track` array (Braze's limit; `cohortd import`
/// batches by it).
pub use users::MAX_TRACK_OBJECTS;

use std::future::{ready, Ready};
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::FutureExt;
use futures_util::StreamExt;

use crate::engine::state::Workspace;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Registers every route. The one place to read to see the API.
pub fn configure(engine: Engine) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(engine))
            .app_data(
                web::QueryConfig::default().error_handler(|e, _| {
                    Error::bad_request("invalid_query", e.to_string()).into()
                }),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| Error::bad_request("invalid_path", e.to_string()).into()),
            )
            // Partner cohort import API (Braze-compatible).
            .route(
                "/partners/{partner}/cohorts",
                web::post().to(partner::name_cohort),
            )
            .route(
                "/partners/{partner}/cohorts/users",
                web::post().to(partner::cohort_users),
            )
            // Users API.
            .route("/users/track", web::post().to(users::track))
            .route("/users/identify", web::post().to(users::identify))
            .route("/users/alias/new", web::post().to(users::alias_new))
            .route("/users/delete", web::post().to(users::delete))
            .route("/users/export/ids", web::post().to(users::export_ids))
            // Queries.
            .route("/cohorts", web::get().to(cohorts::list))
            .route(
                "/cohorts/{partner}/{cohort_id}",
                web::get().to(cohorts::one),
            )
            .route(
                "/cohorts/{partner}/{cohort_id}/members",
                web::get().to(cohorts::members),
            )
            .route(
                "/cohorts/{partner}/{cohort_id}/imports",
                web::get().to(cohorts::imports),
            )
            .route("/segments", web::post().to(segments::create))
            .route("/segments", web::get().to(segments::list))
            .route("/segments/preview", web::post().to(segments::preview))
            .route("/segments/{id}", web::get().to(segments::get))
            .route("/segments/{id}", web::put().to(segments::replace))
            .route("/segments/{id}", web::delete().to(segments::delete))
            .route("/segments/{id}/count", web::get().to(segments::count))
            .route("/segments/{id}/members", web::get().to(segments::members))
            .route(
                "/segments/{id}/membership",
                web::post().to(segments::membership),
            )
            .route(
                "/users/memberships",
                web::post().to(segments::user_memberships),
            )
            // Technology partners and data import keys.
            .route(
                "/technology_partners",
                web::get().to(technology_partners::list),
            )
            .route(
                "/technology_partners/{partner}/data_import_keys",
                web::post().to(technology_partners::create_key),
            )
            .route(
                "/technology_partners/{partner}/data_import_keys/{key_id}",
                web::delete().to(technology_partners::revoke_key),
            )
            // Operators.
            .route("/admin/workspaces", web::post().to(admin::create_workspace))
            .route("/admin/workspaces", web::get().to(admin::list_workspaces))
            .route("/admin/snapshots", web::post().to(admin::take_snapshot))
            .route("/admin/snapshots", web::get().to(admin::list_snapshots))
            .route("/admin/restore", web::post().to(admin::restore))
            .route("/feed", web::get().to(feed::read))
            .route("/connectors", web::post().to(connectors::create))
            .route("/connectors", web::get().to(connectors::list))
            .route("/connectors/{id}", web::get().to(connectors::get))
            .route("/connectors/{id}", web::delete().to(connectors::delete))
            .route("/admin/connectors", web::get().to(connectors::admin_list))
            .route("/healthz", web::get().to(ops::healthz))
            .route("/readyz", web::get().to(ops::readyz))
            .route("/metrics", web::get().to(ops::metrics))
            // The API's description and reference, and the dashboard.
            .configure(openapi::routes)
            .configure(ui::routes)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(Error::NotFound("route"))
            }));
    }
}

/// Wraps the app: counts and times every request by its route pattern.
pub fn observe<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let started = Instant::now();
    let engine = req.app_data::<web::Data<Engine>>().cloned();
    // Labels from fixed sets only (see `metrics`): the route's pattern,
    // never the path; the method as `metrics::method_label` folds it.
    let route = req.match_pattern();
    let method = req.method().clone();
    srv.call(req).map(move |res| {
        if let (Some(engine), Ok(res)) = (engine, &res) {
            engine.metrics().observe(
                method.as_str(),
                route.as_deref(),
                res.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
        }
        res
    })
}

/// What `until_ready` answers: the app's response, or its own 503.
type Gated<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

/// Paths that answer while the engine recovers: the probes and metrics.
const ALWAYS_SERVED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Wraps the app: until the engine has recovered, every request but the
/// probes and metrics is answered 503 "recovering" without reaching a
/// handler (nothing else could answer truthfully before the state exists).
pub fn until_ready<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> futures_util::future::Either<
    impl std::future::Future<Output = Gated<B>>,
    std::future::Ready<Gated<B>>,
>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    use futures_util::future::Either;
    let ready = req
        .app_data::<web::Data<Engine>>()
        .is_some_and(|e| e.is_ready());
    if ready || ALWAYS_SERVED.contains(&req.path()) {
        return Either::Left(
            srv.call(req)
                .map(|r| r.map(ServiceResponse::map_into_left_body)),
        );
    }
    let refused =
        Error::Unavailable("cohortd is recovering its data; retry once /readyz answers 200".into());
    let res = req.into_response(actix_web::ResponseError::error_response(&refused));
    Either::Right(std::future::ready(Ok(res.map_into_right_body())))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn engine(req: &HttpRequest) -> Engine {
    req.app_data::<web::Data<Engine>>()
        .expect("configure() registers the engine")
        .get_ref()
        .clone()
}

/// A request made with a workspace REST API key.
pub struct WorkspaceAuth(pub std::sync::Arc<Workspace>);

impl FromRequest for WorkspaceAuth {
    type Error = Error;
    type Future = Ready<Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let ws = bearer(req).and_then(|k| engine(req).workspace_for_key(k));
        ready(ws.map(WorkspaceAuth).ok_or(Error::Unauthorized))
    }
}

/// A request made with the admin token.
pub struct AdminAuth;

impl FromRequest for AdminAuth {
    type Error = Error;
    type Future = Ready<Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let ok = bearer(req).is_some_and(|t| engine(req).is_admin(t));
        ready(if ok {
            Ok(AdminAuth)
        } else {
            Err(Error::Unauthorized)
        })
    }
}

/// Reads a whole body, refusing (413) past `limit` bytes without reading on.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::bad_request("invalid_body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn created(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Created().json(body)
}
