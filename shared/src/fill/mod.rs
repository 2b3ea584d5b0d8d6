//! The fill: from a miss-handler request to a parquet that covers it.

pub mod answer;
pub mod engine;
pub mod lease;
pub mod merge;
mod reference;
pub mod request;
mod trades;

pub use answer::{FillAnswer, FillError, FillStatus, PartAnswer};
pub use engine::{EngineConfig, FillEngine, Progress};
pub use request::{FillRequest, MissRequest};
