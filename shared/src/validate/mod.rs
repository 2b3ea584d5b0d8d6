//! Validation of cached objects: the rules (shared by the miss-handler's self-check, the
//! object-validator and `cachefill validate`).

pub mod rules;

pub use rules::{Report, Rule, Violation, check_batch, check_object, check_sidecar};
