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
    // A write whose answer was lost may have landed: the lease at the key then names us,
    // and leaving it there would make every later caller wait out its TTL.
    let landed_anyway = |error: StorageError| async move {
        if !matches!(error, StorageError::Unavailable { .. }) {
            return Err(error);
        }
        match store.get(key, None).await {
            Ok(current)
                if serde_json::from_slice::<LeaseBody>(&current.bytes)
                    .is_ok_and(|held| held.owner == owner && held.expires_at > now) =>
            {
                Ok(acquired(current.meta.etag.clone()))
            }
            _ => Err(error),
        }
    };
    match put(PutMode::IfAbsent).await {
        Ok(done) => return Ok(acquired(done.etag)),
        Err(StorageError::PreconditionFailed { .. }) => {}
        Err(e) => return landed_anyway(e).await,
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
        // Our own lease: an earlier put of ours landed but its answer was lost, and the
        // SDK's retry of it met our own lease (412). Waiting for it would wait out the TTL.
        if held.owner == owner {
            return Ok(acquired(current.meta.etag.clone()));
        }
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
        Err(e) => landed_anyway(e).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;

    const KEY: &str = "p/v1/_leases/x.parquet.lease";

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = LocalStore::new(dir.path()).expect("a local store");
        (dir, store)
    }

    async fn write(store: &LocalStore, owner: &str, expires_at: DateTime<Utc>) -> String {
        store
            .put(KEY, body(owner, expires_at), PutOptions::default())
            .await
            .expect("a put")
            .etag
    }

    #[tokio::test]
    async fn a_lease_whose_creation_answer_was_lost_is_ours() {
        // Our `If-None-Match: *` put landed, its answer was lost, its retry met a 412: the
        // lease at the key names us.
        let (_dir, store) = store();
        let now = Utc::now();
        let etag = write(&store, "me", now + Duration::seconds(960)).await;
        match try_acquire(&store, KEY, "me", Duration::seconds(960), now).await {
            Ok(Acquire::Acquired(lease)) => {
                assert_eq!(lease.owner, "me");
                assert_eq!(lease.etag, etag);
                release(&store, &lease, now).await.expect("a release");
            }
            other => panic!("not acquired: {other:?}"),
        }
        // Released, it is expired: a peer takes it over.
        assert!(matches!(
            try_acquire(&store, KEY, "peer", Duration::seconds(960), now).await,
            Ok(Acquire::Acquired(_))
        ));
    }

    #[tokio::test]
    async fn a_peers_live_lease_is_held_and_an_expired_one_taken_over() {
        let (_dir, store) = store();
        let now = Utc::now();
        write(&store, "peer", now + Duration::seconds(60)).await;
        match try_acquire(&store, KEY, "me", Duration::seconds(960), now).await {
            Ok(Acquire::Held { owner, .. }) => assert_eq!(owner, "peer"),
            other => panic!("not held: {other:?}"),
        }
        write(&store, "peer", now - Duration::seconds(1)).await;
        assert!(matches!(
            try_acquire(&store, KEY, "me", Duration::seconds(960), now).await,
            Ok(Acquire::Acquired(_))
        ));
    }
}
