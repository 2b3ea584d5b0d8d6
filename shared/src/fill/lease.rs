//! The lease that lets one invocation fetch a missing range while its peers wait
//! (`docs/ARCHITECTURE.md` §7): an object created with `If-None-Match: *`, taken over with
//! `If-Match` once expired, and released by expiring it (the miss-handler may not delete).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::{ObjectStore, PutMode, PutOptions, StorageError};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    expires_at: DateTime<Utc>,
}

/// A lease we hold.
#[derive(Debug, Clone)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    etag: String,
}

#[derive(Debug, Clone)]
pub enum Acquire {
    Acquired(Lease),
    /// Someone else holds it until `expires_at`.
    Held {
        owner: String,
        expires_at: DateTime<Utc>,
    },
}

fn body(owner: &str, expires_at: DateTime<Utc>) -> bytes::Bytes {
    serde_json::to_vec(&LeaseBody {
        owner: owner.to_string(),
        expires_at,
    })
    .expect("lease body serializes")
    .into()
}

/// Try once to take the lease at `key` for `ttl`.
pub async fn try_acquire(
    store: &dyn ObjectStore,
    key: &str,
    owner: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Acquire, StorageError> {
    let put = |mode: PutMode| {
        store.put(
            key,
            body(owner, now + ttl),
            PutOptions {
                mode,
                content_type: Some(crate::format::JSON_CONTENT_TYPE.into()),
                ..Default::default()
            },
        )
    };
    let acquired = |etag: String| {
        Acquire::Acquired(Lease {
            key: key.to_string(),
            owner: owner.to_string(),
            etag,
        })
    };
    match put(PutMode::IfAbsent).await {
        Ok(done) => return Ok(acquired(done.etag)),
        Err(StorageError::PreconditionFailed { .. }) => {}
        Err(e) => return Err(e),
    }
    let current = match store.get(key, None).await {
        Ok(current) => current,
        // Gone between our two calls: the next attempt creates it.
        Err(StorageError::NotFound { .. }) => {
            return Ok(Acquire::Held {
                owner: String::new(),
                expires_at: now,
            });
        }
        Err(e) => return Err(e),
    };
    // An unreadable lease body counts as expired: it cannot name a live owner.
    let held = serde_json::from_slice::<LeaseBody>(&current.bytes).ok();
    if let Some(held) = held.as_ref().filter(|h| h.expires_at > now) {
        return Ok(Acquire::Held {
            owner: held.owner.clone(),
            expires_at: held.expires_at,
        });
    }
    match put(PutMode::IfMatch(current.meta.etag.clone())).await {
        Ok(done) => Ok(acquired(done.etag)),
        Err(StorageError::PreconditionFailed { .. }) => Ok(Acquire::Held {
            owner: String::new(),
            expires_at: now,
        }),
        Err(e) => Err(e),
    }
}

/// Give the lease up by expiring it, unless someone already took it over.
pub async fn release(
    store: &dyn ObjectStore,
    lease: &Lease,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    let expired = now - Duration::seconds(1);
    match store
        .put(
            &lease.key,
            body(&lease.owner, expired),
            PutOptions {
                mode: PutMode::IfMatch(lease.etag.clone()),
                content_type: Some(crate::format::JSON_CONTENT_TYPE.into()),
                ..Default::default()
            },
        )
        .await
    {
        Ok(_) | Err(StorageError::PreconditionFailed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
