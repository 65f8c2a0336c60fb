//! cohortd: live cohort membership behind a Braze-compatible partner cohort
//! import API.
//!
//! Layout and request flow:
//!
//! - `http` parses and authenticates at the edge (wire types → domain
//!   types), then makes one call into the `engine`.
//! - `engine::Engine` is the handle, with a typed API: each write is one
//!   method (`apply_delta`, `track`, `put_segment`, …) that becomes a
//!   `Command` — private to the engine — sent to the workspace's lane
//!   (`engine::lane`, one sequencer actor per workspace, spread over an
//!   arbiter pool) or, for what spans workspaces, to the `Router` actor,
//!   which runs it as a barrier. Applying a command (`engine::apply`)
//!   resolves identifiers with the `profiles` store and dispatches resolved
//!   ids to one `cohort::Cohort` actor per partner cohort. Reads are `engine::read` methods over the
//!   shared `engine::state`, with no actor hop; those that evaluate
//!   filters run on `engine::readpool`, a bounded pool with a time budget
//!   per read, so the HTTP workers (and the probes) never wait for them.
//! - Durability: each lane (and the router) appends its commands to the one
//!   shared write-ahead log (`persist::wal`, group commit across lanes) and
//!   applies each only once it is durable, in log order per workspace.
//!   `engine::snapshotter` takes consistent cuts through the router (a
//!   barrier over every lane) and writes them with `persist::snapshot`;
//!   `engine::recovery` loads the newest valid snapshot and replays the log
//!   through the same `Applier` at start-up.
//! - `profiles` owns the identifier matching and merge rules; `segment` the
//!   filter language and its evaluation over bitmaps; `persist` the on-disk
//!   formats: `persist::schema` declares every persisted type by version
//!   and converts to and from the domain types, which carry no persistence
//!   derives (docs/format.md), and `persist::codec` is the only place that
//!   names bincode; `model` is the
//!   shared vocabulary; `feed` owns the change feed's events (made as
//!   commands apply, in log order; saved segments' entries and exits come
//!   from `engine::tracking`); `connector` pushes the feed to partners'
//!   HTTP endpoints (`connector::manager` runs one `connector::deliver`
//!   thread per connector the state holds, with its progress in
//!   `connector::progress`); `config`, `secrets`, `keys`,
//!   `metrics`, `time` are what their names say; `limits` names the
//!   `[limits]` a request can run into (each is checked by the module
//!   that owns what it bounds).
pub mod app;
pub mod cluster;
pub mod config;
pub mod connector;
pub mod engine;
pub mod error;
pub mod feed;
pub mod http;
pub mod import;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod persist;
pub mod profiles;
pub mod secrets;
pub mod segment;
pub mod threads;
pub mod time;
pub mod varint;
