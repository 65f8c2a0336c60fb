//! One error type for the whole service and its two JSON shapes.
//!
//! Partner endpoints answer Braze's exact texts as `{"message": …}` (partner
//! clients and support staff key on them). Every other endpoint answers
//! `{"code": …, "message": …}` with a stable `code`. Internal causes go to the
//! log, never into a body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    // ---- partner cohort import API: texts are pinned by SPEC §2 ----
    #[error("Invalid Partner API key")]
    InvalidPartnerKey,
    #[error("Invalid client secret")]
    InvalidClientSecret,
    #[error("Partner not enabled for client with client secret: {0}")]
    PartnerNotEnabled(String),
    #[error("cohort_id must be a valid string")]
    InvalidCohortId,
    #[error("cohort_changes must be an array of objects each with key user_ids and/or device_ids mapping to an array of strings, or an aliases object")]
    InvalidCohortChanges,
    #[error("Only 1,000 user_ids, device_ids, and aliases are allowed per request")]
    TooManyIdentifiers,
    #[error("name must be a non-empty string")]
    InvalidName,
    #[error("created_at must be a valid time as an ISO-8601 string")]
    InvalidCreatedAt,
    #[error("unknown partner {0:?}")]
    UnknownPartner(String),

    // ---- everything else ----
    /// Malformed input: `code` is stable, `message` says what was expected.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Over one of the `[limits]` (a 400; on partner endpoints the text is
    /// the `message`).
    #[error("{0}")]
    LimitExceeded(crate::limits::Exceeded),
    #[error("rate limit exceeded")]
    RateLimited,
    #[error("the engine is saturated; retry later (nothing was applied)")]
    Saturated,
    /// The workspace has `engine.max_inflight_writes_per_workspace` writes
    /// admitted already: its share is used, the other workspaces' is not.
    #[error("this workspace has {0} writes in flight (engine.max_inflight_writes_per_workspace); retry later (nothing was applied)")]
    WorkspaceSaturated(usize),
    #[error("{0}")]
    Unavailable(String),
    /// Cluster mode: this node does not lead the write's shard. The HTTP
    /// layer forwards the request to `leader`; what reaches a client is a
    /// 503 (no leader known, or the request was forwarded already).
    #[error("this node does not lead shard {shard} and cannot forward the write (a leader is being chosen); retry shortly (nothing was applied)")]
    NotLeader { shard: u32, leader: Option<String> },
    /// Every thread of the read pool stayed busy for `reads.queue_wait_millis`.
    #[error("every read thread is busy (reads.threads); nothing was evaluated, retry shortly")]
    ReadPoolBusy,
    /// The workspace's reads held its share of the read pool (`.0`
    /// threads, `reads.per_workspace_threads`) for `reads.queue_wait_millis`.
    /// The same code as `ReadPoolBusy`: to the client both mean "retry
    /// shortly"; the message and the metric tell them apart.
    #[error("this workspace's reads already hold its share of the read threads ({0}, reads.per_workspace_threads); nothing was evaluated, retry shortly")]
    ReadShareBusy(usize),
    /// A read ran past `reads.budget_millis` and was stopped.
    #[error("the read was stopped at its time budget of {0} ms (reads.budget_millis in config.toml); narrow the filter, or retry when the server is less busy")]
    ReadBudgetExceeded(u64),
    /// A feed cursor older than what the feed retains (SPEC §10).
    #[error("the cursor is older than the feed's retention (the oldest event kept is number {oldest}); start again without `after`, or from a newer cursor")]
    CursorExpired { oldest: u64 },
    #[error("internal error")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::limits::Exceeded> for Error {
    fn from(e: crate::limits::Exceeded) -> Error {
        Error::LimitExceeded(e)
    }
}

/// Why the server did not start. Each cause keeps its own shape to the
/// end, so `main` can print it whole and tests can match on it; none is
/// ever reduced to a string on the way.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `config.toml` or an environment override is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The secrets could not be read, generated or stored.
    #[error("secrets: {0}")]
    Secrets(String),
    /// The data dir cannot be created or locked.
    #[error("data dir {}: {source}", dir.display())]
    DataDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data dir.
    #[error(
        "data dir {} is in use by another cohortd (lock {} is held)",
        dir.display(),
        lock.display()
    )]
    LockHeld {
        dir: std::path::PathBuf,
        lock: std::path::PathBuf,
    },
    /// Recovery cannot vouch for the data: a log gap or corruption, a file
    /// of a newer format version, an IO error (see `persist::Error`).
    #[error("cannot recover the data dir: {0}")]
    Persist(#[from] crate::persist::Error),
    /// A replayed record cannot be applied the way it was the first time.
    #[error("cannot replay the write-ahead log: {0}")]
    Replay(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An actor or thread the engine needs stopped during start-up.
    #[error("start-up failed: {0}")]
    Runtime(String),
}

impl Error {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Error {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidPartnerKey => "invalid_partner_api_key",
            Error::InvalidClientSecret => "invalid_client_secret",
            Error::PartnerNotEnabled(_) => "partner_not_enabled",
            Error::InvalidCohortId => "invalid_cohort_id",
            Error::InvalidCohortChanges => "invalid_cohort_changes",
            Error::TooManyIdentifiers => "too_many_identifiers",
            Error::InvalidName => "invalid_name",
            Error::InvalidCreatedAt => "invalid_created_at",
            Error::UnknownPartner(_) => "unknown_partner",
            Error::BadRequest { code, .. } => code,
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Unauthorized => "unauthorized",
            Error::NotFound(_) => "not_found",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::RateLimited => "rate_limited",
            Error::Saturated => "saturated",
            Error::WorkspaceSaturated(_) => "workspace_saturated",
            Error::Unavailable(_) => "unavailable",
            Error::NotLeader { .. } => "not_leader",
            Error::ReadPoolBusy | Error::ReadShareBusy(_) => "read_pool_busy",
            Error::ReadBudgetExceeded(_) => "read_budget_exceeded",
            Error::CursorExpired { .. } => "cursor_expired",
            Error::Internal(_) => "internal",
        }
    }

    /// The body a partner endpoint sends: `{"message": …}` only.
    pub fn partner_body(&self) -> serde_json::Value {
        json!({ "message": self.public_message() })
    }

    fn public_message(&self) -> String {
        match self {
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                self.to_string()
            }
            _ => self.to_string(),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::InvalidPartnerKey
            | Error::InvalidClientSecret
            | Error::PartnerNotEnabled(_)
            | Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::InvalidCohortId
            | Error::InvalidCohortChanges
            | Error::TooManyIdentifiers
            | Error::InvalidName
            | Error::InvalidCreatedAt
            | Error::BadRequest { .. }
            | Error::LimitExceeded(_) => StatusCode::BAD_REQUEST,
            Error::UnknownPartner(_) | Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Error::Saturated
            | Error::WorkspaceSaturated(_)
            | Error::Unavailable(_)
            | Error::NotLeader { .. }
            | Error::ReadPoolBusy
            | Error::ReadShareBusy(_)
            | Error::ReadBudgetExceeded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::CursorExpired { .. } => StatusCode::GONE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(json!({ "code": self.code(), "message": self.public_message() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_texts_are_braze_texts() {
        assert_eq!(
            Error::InvalidPartnerKey.to_string(),
            "Invalid Partner API key"
        );
        assert_eq!(
            Error::PartnerNotEnabled("abc".into()).to_string(),
            "Partner not enabled for client with client secret: abc"
        );
        assert_eq!(
            Error::TooManyIdentifiers.to_string(),
            "Only 1,000 user_ids, device_ids, and aliases are allowed per request"
        );
        assert_eq!(
            Error::InvalidCohortChanges.partner_body(),
            json!({"message": "cohort_changes must be an array of objects each with key user_ids and/or device_ids mapping to an array of strings, or an aliases object"})
        );
    }

    #[test]
    fn internal_causes_stay_out_of_bodies() {
        let e = Error::Internal("disk on fire at /secret/path".into());
        assert_eq!(e.partner_body(), json!({"message": "internal error"}));
    }
}
