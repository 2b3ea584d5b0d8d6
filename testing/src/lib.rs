//! Test support of cachefill, kept out of the crates that ship: nothing here is linked into
//! the Lambda functions or the `cachefill` command.
//!
//! | module | what lives there |
//! |---|---|
//! | [`fixtures`] | the recorded provider responses in `tests/fixtures/` |
//! | [`thetadata`] | a stand-in ThetaData terminal: replays recordings, injects faults |
//! | [`polygon`] | a stand-in Polygon REST API on the same server: recordings, generated aggregates, pages |
//! | [`conformance`] | the storage seam's conformance suite, run against every backend |
//! | [`doubles`] | wrappers around real components that count calls or fail on purpose |
//! | [`bad_requests`] | malformed invoke payloads for the miss-handler, generated and from the fuzz corpus |

pub mod bad_requests;
pub mod binance;
pub mod conformance;
pub mod doubles;
pub mod fixtures;
pub mod polygon;
pub mod thetadata;
pub mod thetadata_gen;
