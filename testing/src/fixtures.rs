//! The recorded provider responses the tests replay: `tests/fixtures/` of the repository
//! (its README says where each came from).

use std::path::{Path, PathBuf};

/// The fixtures folder is part of the repository; it is missing only from a partial checkout.
#[derive(Debug, thiserror::Error)]
#[error("recorded fixtures not found at {}: the repository's tests/fixtures folder is missing", .0.display())]
pub struct FixturesMissing(pub PathBuf);

/// `<repository>/tests/fixtures`.
pub fn root() -> Result<PathBuf, FixturesMissing> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let path = path.canonicalize().unwrap_or(path);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(FixturesMissing(path))
    }
}

/// One folder of recordings (`thetadata-v3`, `polygon`, …).
pub fn dir(name: &str) -> Result<PathBuf, FixturesMissing> {
    let path = root()?.join(name);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(FixturesMissing(path))
    }
}
