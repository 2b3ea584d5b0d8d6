//! What each `LUMIBOT_CACHE_MODE` lets the client do.
//!
//! | mode | local files | download | invoke the miss-handler | write to the bucket |
//! |---|---|---|---|---|
//! | `disabled` | yes | no | no | no |
//! | `readwrite` | yes | yes | when a fill function is configured | lumibot's uploads ([`on_local_update`](crate::CacheClient::on_local_update)) |
//! | `readonly` | yes | yes | yes | never: the store is wrapped in [`ReadOnlyStore`](cachefill_core::storage::guard::ReadOnlyStore) |

pub use cachefill_core::settings::CacheMode;

/// Whether the mode reads the bucket at all.
pub fn reads_remote(mode: CacheMode) -> bool {
    mode != CacheMode::Disabled
}

/// Whether the mode may upload local writes (lumibot's readwrite uploads).
pub fn uploads(mode: CacheMode) -> bool {
    mode == CacheMode::ReadWrite
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_readwrite_uploads_and_disabled_stays_local() {
        assert!(!reads_remote(CacheMode::Disabled));
        assert!(!uploads(CacheMode::ReadOnly));
        assert!(uploads(CacheMode::ReadWrite));
        assert!(reads_remote(CacheMode::ReadOnly));
    }
}
