//! cohortd: live cohort membership behind a Braze-compatible partner cohort
//! import API.
pub mod model;
pub mod profiles;
pub mod segment;
pub mod time;
