//! The object-validator: judging "an object was written" events against the rules of
//! [`crate::rules`] (which the miss-handler's self-check and `cachefill validate` share), and
//! what it writes.
//!
//! | module | what lives there |
//! |---|---|
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
pub mod validator;

pub use embedded::ValidatingStore;
pub use event::EventRecord;
pub use validator::{
    Outcome, Restore, SkipReason, Validator, ValidatorConfig, ValidatorError, Verdict,
};
