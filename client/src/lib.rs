//! The thin client of the cachefill cache.
//!
//! [`bucket`] opens the bucket a command works on: the embedded default (a local
//! directory, no AWS) or S3.

pub mod bucket;
