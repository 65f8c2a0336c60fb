//! cohortd: live cohort membership behind a Braze-compatible partner cohort
//! import API.
pub mod model;
pub mod persist;
pub mod profiles;
pub mod time;
