//! Connectors (SPEC §10): the change feed pushed to a partner's HTTP
//! endpoint, Braze Currents custom HTTP connector style.
//!
//! - [`deliver`]: the delivery engine, one thread per connector that reads
//!   the feed from its acknowledged position and POSTs batches, in order,
//!   at least once, with the same `Idempotency-Key` on every retry of a
//!   batch;
//! - [`progress`]: each connector's durable progress (acknowledged seq,
//!   batch in flight, disabled and why), in one small file.
//!
//! - [`manager`]: which connectors run, following the state (one
//!   delivery per connector the workspaces hold; in a cluster, those of
//!   the workspaces whose shard this node leads);
//! - [`shared`]: cluster mode's copy of each connector's progress in
//!   JetStream, from which the next leader resumes.
//!
//! `deliver` and `progress` do not depend on the engine: the feed is
//! reached through [`deliver::Source`], which `manager` implements over
//! `feed::Feed`.

pub mod deliver;
pub mod manager;
pub mod progress;
pub mod shared;
