//! Connectors (SPEC §10): the change feed pushed to a partner's HTTP
//! endpoint, Braze Currents custom HTTP connector style.
//!
//! - [`progress`]: each connector's durable progress (acknowledged seq,
//!   batch in flight, disabled and why), in one small file.

pub mod progress;
