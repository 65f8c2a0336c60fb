//! `GET /feed` (SPEC §10): a workspace's change feed, after a cursor, with
//! a long poll while nothing is new. The events are stored as the JSON
//! served (`crate::feed`), so a page is their bytes joined.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::WorkspaceAuth;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::feed::EventType;

/// Events per page: default and most.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
/// The longest long poll.
pub const MAX_WAIT_MS: u64 = 30_000;

/// `GET /feed`'s query.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The `next_cursor` of the previous page; absent: from the oldest
    /// retained event.
    after: Option<String>,
    /// Events per page: 1 to 10,000, default 1,000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Long poll: wait up to this long (at most 30,000) while nothing is new.
    #[param(maximum = 30000)]
    wait_ms: Option<u64>,
    /// Only these types, comma-separated (e.g.
    /// `users.cohorts.Entered,users.cohorts.Exited`); default all.
    event_types: Option<String>,
}

/// A cursor is the number of the last event a page looked at, as given
/// out in `next_cursor` (opaque to clients).
fn cursor(after: Option<&str>) -> Result<u64> {
    match after {
        None => Ok(0),
        Some(c) => c.parse::<u64>().map_err(|_| {
            Error::bad_request(
                "invalid_cursor",
                format!("after: {c:?} is not a cursor this feed gave out (next_cursor)"),
            )
        }),
    }
}

fn event_types(list: Option<&str>) -> Result<Option<Vec<EventType>>> {
    let Some(list) = list else {
        return Ok(None);
    };
    list.split(',')
        .map(|name| {
            EventType::from_name(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
                Error::bad_request(
                    "invalid_event_types",
                    format!(
                        "event_types: unknown type {name:?}; known: {}",
                        known.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<_>>()
        .map(Some)
}

#[utoipa::path(
    get,
    path = "/feed",
    tag = "Change feed",
    operation_id = "readFeed",
    summary = "Read the change feed after a cursor",
    description = "Every write's events, in log order, Braze Currents style. Consumers must \
        tolerate fields they do not know.",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of events", body = super::openapi::shapes::FeedPage,
         example = json!({"events": [{"id": "00000001-0000-0000-0000-000600000000",
             "event_type": "users.cohorts.Entered", "time": 1796306504,
             "user": {"user_id": "000000010000000000000000", "external_user_id": "u1"},
             "properties": {"partner": "segment", "cohort_id": "aud_1", "name": "Big spenders"}}],
             "next_cursor": "3"})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 410, description = "The cursor is older than the feed's retention",
         body = super::openapi::shapes::ApiError,
         example = json!({"code": "cursor_expired", "message": "the cursor is older than the feed's retention (the oldest event kept is number 1200); start again without `after`, or from a newer cursor"})),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn read(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    q: web::Query<FeedQuery>,
) -> Result<HttpResponse> {
    let after = cursor(q.after.as_deref())?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_LIMIT}, got {limit}"),
        ));
    }
    let wait = q.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(Error::bad_request(
            "invalid_wait_ms",
            format!("wait_ms must be at most {MAX_WAIT_MS}, got {wait}"),
        ));
    }
    let types = event_types(q.event_types.as_deref())?;
    let (events, through) = engine
        .read_feed(
            auth.0.id(),
            after,
            limit,
            types,
            Duration::from_millis(wait),
        )
        .await?;
    let mut body =
        Vec::with_capacity(events.iter().map(|e| e.payload.len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.payload);
    }
    body.extend_from_slice(format!("],\"next_cursor\":\"{through}\"}}").as_bytes());
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
