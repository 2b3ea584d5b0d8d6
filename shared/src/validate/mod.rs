//! Validation of cached objects: the rules (shared by the miss-handler's self-check, the
//! object-validator and `cachefill validate`), and the object-validator itself.
//!
//! | module | what lives there |
//! |---|---|
//! | [`rules`] | the pure rules: one function returning every violation |
//! | [`event`] | "an object was written" records and S3 key decoding |
//! | [`validator`] | judging an event: manifest, quarantine, restore, the sidecar pair rule |
//! | [`manifest`], [`quarantine`], [`audit`] | what the validator writes, and where |
//! | [`embedded`] | a store that validates every write in-process (the embedded default) |
//! | [`files`] | judging a lumibot cache folder on disk or a key in a bucket |

pub mod audit;
pub mod embedded;
pub mod event;
pub mod files;
pub mod manifest;
pub mod quarantine;
pub mod rules;
pub mod validator;

pub use embedded::ValidatingStore;
pub use event::EventRecord;
pub use rules::{
    Report, Rule, SidecarStanding, Violation, check_batch, check_object, check_sidecar,
    sidecar_standing,
};
pub use validator::{
    Outcome, Restore, SkipReason, Validator, ValidatorConfig, ValidatorError, Verdict,
};
