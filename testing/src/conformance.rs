//! The conformance suite of the storage seam: one set of test bodies every [`ObjectStore`]
//! backend must pass, so the local store and the S3 store are held to the same contract.
//!
//! Every function takes the store under test and a key prefix unique to the run (so runs
//! against a shared bucket do not interfere), and panics with a message naming the deviation.
//! Only S3 semantics of a versioned bucket are asserted, never behaviour of one backend.
//!
//! ```
//! # use cachefill_core::storage::local::LocalStore;
//! # use cachefill_testing::conformance;
//! # let dir = tempfile::tempdir().unwrap();
//! let store = LocalStore::new(dir.path()).unwrap();
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! conformance::run_all(&store, "conformance/run-1").await;
//! # });
//! ```

use std::fmt::Debug;

use bytes::Bytes;
use futures::future::join_all;

use cachefill_core::storage::{
    GetResult, Metadata, ObjectStore, PutMode, PutOptions, PutResult, Result, StorageError, Tags,
    etags_equal,
};

/// Runs every test of the suite, one after the other, each under its own part of `prefix`.
pub async fn run_all(store: &dyn ObjectStore, prefix: &str) {
    put_get_head_round_trip(store, prefix).await;
    user_metadata_round_trip(store, prefix).await;
    overwrite_creates_new_version(store, prefix).await;
    missing_objects_are_not_found(store, prefix).await;
    put_if_absent(store, prefix).await;
    put_if_match(store, prefix).await;
    concurrent_if_absent_has_one_winner(store, prefix).await;
    concurrent_increments_lose_nothing(store, prefix).await;
    copy_restores_versions_with_metadata(store, prefix).await;
    delete_leaves_history(store, prefix).await;
    list_by_prefix(store, prefix).await;
    tags_are_per_version(store, prefix).await;
    list_versions_newest_first(store, prefix).await;
}

/// Bytes, size, etag and version id agree between put, get and head, for the current
/// version and when it is named; an empty object round-trips too.
pub async fn put_get_head_round_trip(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "round-trip/object.bin");
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let options = PutOptions {
        content_type: Some("application/octet-stream".into()),
        ..Default::default()
    };
    let put = ok(
        store.put(&key, Bytes::from(body.clone()), options).await,
        "put",
    );
    let version = put
        .version_id
        .clone()
        .unwrap_or_else(|| panic!("put of {key}: no version id on a versioned store"));
    assert!(!put.etag.is_empty(), "put of {key}: empty etag");

    for (what, got) in [
        ("get", ok(store.get(&key, None).await, "get")),
        (
            "get by version",
            ok(store.get(&key, Some(&version)).await, "get by version"),
        ),
    ] {
        assert_eq!(
            got.bytes.as_ref(),
            body.as_slice(),
            "{what} of {key}: bytes"
        );
        assert_object(&got, &key, body.len(), &put, what);
    }
    for (what, meta) in [
        ("head", ok(store.head(&key, None).await, "head")),
        (
            "head by version",
            ok(store.head(&key, Some(&version)).await, "head by version"),
        ),
    ] {
        assert_eq!(meta.key, key, "{what}: key");
        assert_eq!(meta.size, body.len() as u64, "{what} of {key}: size");
        assert!(
            etags_equal(&meta.etag, &put.etag),
            "{what} of {key}: etag {} but put returned {}",
            meta.etag,
            put.etag
        );
        assert_eq!(
            meta.version_id, put.version_id,
            "{what} of {key}: version id"
        );
    }

    let empty_key = self::key(prefix, "round-trip/empty");
    let put = ok(
        store
            .put(&empty_key, Bytes::new(), PutOptions::default())
            .await,
        "put empty",
    );
    let got = ok(store.get(&empty_key, None).await, "get empty");
    assert!(
        got.bytes.is_empty(),
        "get of {empty_key}: expected no bytes"
    );
    assert_object(&got, &empty_key, 0, &put, "get empty");
}

/// User metadata comes back from get and head, and belongs to its version: a later put
/// without metadata does not inherit it.
pub async fn user_metadata_round_trip(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "metadata/object.bin");
    let metadata = metadata(&[("dataset", "stock_SPY_minute_ohlc"), ("rows", "42")]);
    let first = ok(
        store
            .put(&key, Bytes::from_static(b"with"), with_metadata(&metadata))
            .await,
        "put with metadata",
    );
    assert_eq!(
        ok(store.get(&key, None).await, "get").meta.metadata,
        metadata,
        "get of {key}: user metadata"
    );
    assert_eq!(
        ok(store.head(&key, None).await, "head").metadata,
        metadata,
        "head of {key}: user metadata"
    );

    ok(
        store
            .put(&key, Bytes::from_static(b"without"), PutOptions::default())
            .await,
        "put without metadata",
    );
    assert!(
        ok(store.head(&key, None).await, "head").metadata.is_empty(),
        "head of {key}: a put without metadata kept the previous version's metadata"
    );
    let old = ok(
        store.head(&key, first.version_id.as_deref()).await,
        "head of the first version",
    );
    assert_eq!(
        old.metadata, metadata,
        "head of {key} (first version): user metadata"
    );
}

/// Overwriting creates a new version; the older one stays readable by its id.
pub async fn overwrite_creates_new_version(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "overwrite/object.bin");
    let one = put_bytes(store, &key, b"one").await;
    let two = put_bytes(store, &key, b"two, longer").await;
    assert_ne!(
        one.version_id, two.version_id,
        "put of {key}: an overwrite reused the version id"
    );
    assert!(
        !etags_equal(&one.etag, &two.etag),
        "put of {key}: different bytes, same etag {}",
        one.etag
    );

    let current = ok(store.get(&key, None).await, "get");
    assert_eq!(
        current.bytes.as_ref(),
        b"two, longer",
        "get of {key}: bytes"
    );
    assert_object(&current, &key, 11, &two, "get");

    let older = ok(
        store.get(&key, one.version_id.as_deref()).await,
        "get older",
    );
    assert_eq!(
        older.bytes.as_ref(),
        b"one",
        "get of {key} older version: bytes"
    );
    assert_object(&older, &key, 3, &one, "get older");

    let again = put_bytes(store, &key, b"one").await;
    assert!(
        etags_equal(&again.etag, &one.etag),
        "put of {key}: same bytes, etag {} then {}",
        one.etag,
        again.etag
    );
    assert_ne!(
        again.version_id, one.version_id,
        "put of {key}: same bytes reused the version id"
    );
    let versions = ok(store.list_versions(&key).await, "list_versions");
    assert_eq!(versions.len(), 3, "list_versions of {key}: {versions:?}");
}

/// Missing keys, and versions that do not belong to a key, are `NotFound` for every read.
pub async fn missing_objects_are_not_found(store: &dyn ObjectStore, prefix: &str) {
    let missing = key(prefix, "missing/never-written.bin");
    let existing = key(prefix, "missing/existing.bin");
    let other = key(prefix, "missing/other.bin");
    put_bytes(store, &existing, b"here").await;
    let foreign = version_of(&put_bytes(store, &other, b"elsewhere").await, &other);

    expect_not_found(store.get(&missing, None).await, "get of a missing key");
    expect_not_found(store.head(&missing, None).await, "head of a missing key");
    expect_not_found(
        store.get_tags(&missing, None).await,
        "tags of a missing key",
    );
    expect_not_found(
        store.copy(&missing, None, &existing).await,
        "copy from a missing key",
    );
    expect_not_found(
        store.get(&missing, Some(&foreign)).await,
        "get of a missing key by another key's version id",
    );
    expect_not_found(
        store.get(&existing, Some(&foreign)).await,
        "get by another key's version id",
    );
    expect_not_found(
        store.head(&existing, Some(&foreign)).await,
        "head by another key's version id",
    );
    expect_not_found(
        store.copy(&existing, Some(&foreign), &missing).await,
        "copy by another key's version id",
    );
    let versions = ok(store.list_versions(&missing).await, "list_versions");
    assert!(
        versions.is_empty(),
        "list_versions of a missing key: {versions:?}"
    );
    assert_eq!(
        ok(store.get(&existing, None).await, "get").bytes.as_ref(),
        b"here",
        "get of {existing} after failed reads"
    );
}

/// `IfAbsent` writes a new key, refuses an existing one and leaves it untouched.
pub async fn put_if_absent(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "if-absent/object.bin");
    let first = ok(
        store
            .put(&key, Bytes::from_static(b"first"), if_absent())
            .await,
        "IfAbsent put of a new key",
    );
    expect_precondition_failed(
        store
            .put(&key, Bytes::from_static(b"second"), if_absent())
            .await,
        "IfAbsent put of an existing key",
    );
    let got = ok(store.get(&key, None).await, "get");
    assert_eq!(
        got.bytes.as_ref(),
        b"first",
        "get of {key}: a refused IfAbsent put changed the bytes"
    );
    assert_object(&got, &key, 5, &first, "get");
}

/// `IfMatch` writes when the etag is current and refuses a stale etag or a missing key.
pub async fn put_if_match(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "if-match/object.bin");
    let first = put_bytes(store, &key, b"first").await;
    let second = ok(
        store
            .put(&key, Bytes::from_static(b"second"), if_match(&first.etag))
            .await,
        "IfMatch put with the current etag",
    );
    expect_precondition_failed(
        store
            .put(&key, Bytes::from_static(b"third"), if_match(&first.etag))
            .await,
        "IfMatch put with a stale etag",
    );
    let got = ok(store.get(&key, None).await, "get");
    assert_eq!(
        got.bytes.as_ref(),
        b"second",
        "get of {key}: a refused IfMatch put changed the bytes"
    );
    assert_object(&got, &key, 6, &second, "get");

    let missing = self::key(prefix, "if-match/missing.bin");
    expect_precondition_failed(
        store
            .put(&missing, Bytes::from_static(b"x"), if_match(&first.etag))
            .await,
        "IfMatch put of a missing key",
    );
    expect_not_found(
        store.head(&missing, None).await,
        "head of a key after a refused IfMatch put",
    );
}

/// Eight writers race `IfAbsent` on one key: exactly one wins, and its bytes are the object.
pub async fn concurrent_if_absent_has_one_winner(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "race/if-absent.bin");
    let key = key.as_str();
    let results = join_all((0..8).map(|writer| async move {
        let body = format!("writer-{writer}");
        let result = store.put(key, Bytes::from(body.clone()), if_absent()).await;
        (body, result)
    }))
    .await;

    let mut winners = Vec::new();
    for (body, result) in results {
        match result {
            Ok(put) => winners.push((body, put)),
            Err(StorageError::PreconditionFailed { .. }) => {}
            Err(err) => panic!("concurrent IfAbsent put of {key} by {body}: {err}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "concurrent IfAbsent puts of {key}: {} winners",
        winners.len()
    );
    let (body, put) = &winners[0];
    let got = ok(store.get(key, None).await, "get");
    assert_eq!(
        got.bytes.as_ref(),
        body.as_bytes(),
        "get of {key}: not the winner's bytes"
    );
    assert_object(&got, key, body.len(), put, "get");
    let versions = ok(store.list_versions(key).await, "list_versions");
    assert_eq!(
        versions.len(),
        1,
        "list_versions of {key}: losers wrote versions: {versions:?}"
    );
}

/// Eight read–modify–write increments race with the `IfMatch` retry loop: none is lost.
pub async fn concurrent_increments_lose_nothing(store: &dyn ObjectStore, prefix: &str) {
    const WRITERS: u64 = 8;
    let key = key(prefix, "race/counter.txt");
    let key = key.as_str();
    join_all((0..WRITERS).map(|writer| async move {
        increment(store, key)
            .await
            .unwrap_or_else(|err| panic!("increment of {key} by writer {writer}: {err}"));
    }))
    .await;

    let got = ok(store.get(key, None).await, "get");
    let value = std::str::from_utf8(&got.bytes)
        .ok()
        .and_then(|text| text.parse::<u64>().ok());
    assert_eq!(
        value,
        Some(WRITERS),
        "counter {key} after {WRITERS} concurrent increments: {:?}",
        String::from_utf8_lossy(&got.bytes)
    );
    let versions = ok(store.list_versions(key).await, "list_versions");
    assert_eq!(
        versions.len() as u64,
        WRITERS,
        "list_versions of {key}: one version per successful increment expected"
    );
}

/// Adds one to the decimal counter at `key` (creating it at 1), retrying lost races.
async fn increment(store: &dyn ObjectStore, key: &str) -> Result<()> {
    for _ in 0..1_000 {
        let (value, mode) = match store.get(key, None).await {
            Ok(got) => {
                let value = std::str::from_utf8(&got.bytes)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("counter {key} holds {:?}", got.bytes));
                (value, PutMode::IfMatch(got.meta.etag))
            }
            Err(StorageError::NotFound { .. }) => (0, PutMode::IfAbsent),
            Err(err) => return Err(err),
        };
        let body = Bytes::from((value + 1).to_string());
        match store.put(key, body, PutOptions::with_mode(mode)).await {
            Ok(_) => return Ok(()),
            Err(StorageError::PreconditionFailed { .. }) => tokio::task::yield_now().await,
            Err(err) => return Err(err),
        }
    }
    panic!("counter {key}: no increment succeeded in 1000 attempts");
}

/// Server-side copy of the current version and of an older one by id carries the bytes,
/// etag and user metadata of that version; copying an old version onto its own key
/// restores it.
pub async fn copy_restores_versions_with_metadata(store: &dyn ObjectStore, prefix: &str) {
    let source = key(prefix, "copy/source.bin");
    let target = key(prefix, "copy/target.bin");
    let old_meta = metadata(&[("generation", "1")]);
    let new_meta = metadata(&[("generation", "2")]);
    let old = ok(
        store
            .put(
                &source,
                Bytes::from_static(b"old bytes"),
                with_metadata(&old_meta),
            )
            .await,
        "put old",
    );
    let new = ok(
        store
            .put(
                &source,
                Bytes::from_static(b"new bytes!"),
                with_metadata(&new_meta),
            )
            .await,
        "put new",
    );

    let copied = ok(store.copy(&source, None, &target).await, "copy current");
    let got = ok(store.get(&target, None).await, "get copy of current");
    assert_eq!(got.bytes.as_ref(), b"new bytes!", "copy of current: bytes");
    assert_eq!(
        got.meta.metadata, new_meta,
        "copy of current: user metadata"
    );
    assert_object(&got, &target, 10, &copied, "get copy of current");
    assert!(
        etags_equal(&copied.etag, &new.etag),
        "copy of current: etag {} but the source's is {}",
        copied.etag,
        new.etag
    );

    let restored = ok(
        store
            .copy(&source, old.version_id.as_deref(), &target)
            .await,
        "copy older version",
    );
    let got = ok(store.get(&target, None).await, "get copy of older version");
    assert_eq!(
        got.bytes.as_ref(),
        b"old bytes",
        "copy of older version: bytes"
    );
    assert_eq!(
        got.meta.metadata, old_meta,
        "copy of older version: user metadata"
    );
    assert_object(&got, &target, 9, &restored, "get copy of older version");
    assert!(
        etags_equal(&restored.etag, &old.etag),
        "copy of older version: etag {} but the source version's is {}",
        restored.etag,
        old.etag
    );
    let versions = ok(store.list_versions(&target).await, "list_versions");
    assert_eq!(versions.len(), 2, "list_versions of {target}: {versions:?}");

    let back = ok(
        store
            .copy(&source, old.version_id.as_deref(), &source)
            .await,
        "restore older version onto its own key",
    );
    let got = ok(store.get(&source, None).await, "get restored");
    assert_eq!(
        got.bytes.as_ref(),
        b"old bytes",
        "restore onto {source}: bytes"
    );
    assert_eq!(
        got.meta.metadata, old_meta,
        "restore onto {source}: metadata"
    );
    assert_object(&got, &source, 9, &back, "get restored");
    let newer = ok(store.get(&source, new.version_id.as_deref()).await, "get");
    assert_eq!(
        newer.bytes.as_ref(),
        b"new bytes!",
        "restore onto {source}: the replaced version must stay readable"
    );
}

/// Delete hides the key behind a delete marker; older versions stay readable by id, and the
/// key can be created again with `IfAbsent` (but not updated with `IfMatch`).
pub async fn delete_leaves_history(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "delete/object.bin");
    let put = put_bytes(store, &key, b"doomed").await;
    let version = version_of(&put, &key);
    ok(store.delete(&key).await, "delete");

    expect_not_found(store.get(&key, None).await, "get after delete");
    expect_not_found(store.head(&key, None).await, "head after delete");
    let old = ok(store.get(&key, Some(&version)).await, "get deleted version");
    assert_eq!(
        old.bytes.as_ref(),
        b"doomed",
        "get of {key} by id after delete"
    );

    let versions = ok(store.list_versions(&key).await, "list_versions");
    assert_eq!(versions.len(), 2, "list_versions of {key}: {versions:?}");
    assert!(
        versions[0].is_delete_marker && versions[0].is_latest,
        "list_versions of {key}: a delete marker must be on top: {versions:?}"
    );
    assert!(
        !versions[1].is_delete_marker && !versions[1].is_latest,
        "list_versions of {key}: {versions:?}"
    );
    assert_eq!(
        versions[1].version_id, version,
        "list_versions of {key}: the deleted version"
    );
    assert!(
        ok(store.list(&key).await, "list").is_empty(),
        "list of {key}: a deleted key is listed"
    );

    ok(
        store
            .delete(&self::key(prefix, "delete/never-written.bin"))
            .await,
        "delete of a missing key",
    );

    expect_precondition_failed(
        store
            .put(&key, Bytes::from_static(b"update"), if_match(&put.etag))
            .await,
        "IfMatch put of a deleted key",
    );
    let reborn = ok(
        store
            .put(&key, Bytes::from_static(b"reborn"), if_absent())
            .await,
        "IfAbsent put of a deleted key",
    );
    let got = ok(store.get(&key, None).await, "get after re-creation");
    assert_eq!(
        got.bytes.as_ref(),
        b"reborn",
        "get of re-created {key}: bytes"
    );
    assert_object(&got, &key, 6, &reborn, "get after re-creation");
}

/// `list` returns current objects under a prefix, sorted by key, including nested keys
/// and a key that is also a "directory" of another, excluding deleted keys, without metadata.
pub async fn list_by_prefix(store: &dyn ObjectStore, prefix: &str) {
    let base = key(prefix, "list");
    let name = |n: &str| format!("{base}/{n}");
    let tagged = metadata(&[("kind", "listed")]);
    // Written out of order, so sorting is the store's doing.
    put_bytes(store, &name("b.bin"), b"bee").await;
    let nested = put_bytes(store, &name("sub/deep/c.bin"), b"deep c").await;
    let a = ok(
        store
            .put(
                &name("a.bin"),
                Bytes::from_static(b"a"),
                with_metadata(&tagged),
            )
            .await,
        "put a.bin",
    );
    let a_child = put_bytes(store, &name("a.bin/child.bin"), b"child of a").await;
    put_bytes(store, &name("gone.bin"), b"deleted").await;
    ok(store.delete(&name("gone.bin")).await, "delete gone.bin");
    let b = put_bytes(store, &name("b.bin"), b"bee, again").await;
    let sibling_key = format!("{base}ing.bin");
    put_bytes(store, &sibling_key, b"sibling").await;

    let listed = ok(store.list(&format!("{base}/")).await, "list");
    let expected = [
        (name("a.bin"), 1, &a),
        (name("a.bin/child.bin"), 10, &a_child),
        (name("b.bin"), 10, &b),
        (name("sub/deep/c.bin"), 6, &nested),
    ];
    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    let expected_keys: Vec<&str> = expected.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, expected_keys, "list of {base}/");
    for (meta, (key, size, put)) in listed.iter().zip(&expected) {
        assert_eq!(meta.size, *size, "list of {base}/: size of {key}");
        assert!(
            etags_equal(&meta.etag, &put.etag),
            "list of {base}/: etag of {key} is {} but put returned {}",
            meta.etag,
            put.etag
        );
        assert!(
            meta.metadata.is_empty(),
            "list of {base}/: {key} carries metadata {:?}",
            meta.metadata
        );
    }

    let keys_under = |listed: Vec<cachefill_core::storage::ObjectMeta>| -> Vec<String> {
        listed.into_iter().map(|m| m.key).collect()
    };
    assert_eq!(
        keys_under(ok(store.list(&base).await, "list without slash")),
        [
            name("a.bin"),
            name("a.bin/child.bin"),
            name("b.bin"),
            name("sub/deep/c.bin"),
            sibling_key.clone()
        ],
        "list of {base} (a plain string prefix, not a directory)"
    );
    assert_eq!(
        keys_under(ok(store.list(&name("sub/")).await, "list nested")),
        [name("sub/deep/c.bin")],
        "list of {base}/sub/"
    );
    assert_eq!(
        keys_under(ok(store.list(&name("a.bin")).await, "list a.bin")),
        [name("a.bin"), name("a.bin/child.bin")],
        "list of {base}/a.bin"
    );
    assert!(
        ok(store.list(&name("nothing/")).await, "list empty").is_empty(),
        "list of {base}/nothing/ must be empty"
    );
}

/// Tags belong to one version: tagging the newest leaves older ones alone, `put_tags`
/// replaces the whole set, a new version starts untagged, unknown versions are `NotFound`.
pub async fn tags_are_per_version(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "tags/object.bin");
    let other = self::key(prefix, "tags/other.bin");
    let old = version_of(&put_bytes(store, &key, b"old").await, &key);
    let new = version_of(&put_bytes(store, &key, b"new").await, &key);
    let foreign = version_of(&put_bytes(store, &other, b"other").await, &other);

    assert!(
        ok(store.get_tags(&key, None).await, "get_tags").is_empty(),
        "tags of {key}: a new version has tags"
    );
    let valid = tags(&[("cachefill-status", "valid")]);
    ok(store.put_tags(&key, None, &valid).await, "put_tags current");
    assert_eq!(
        ok(store.get_tags(&key, None).await, "get_tags current"),
        valid,
        "tags of {key}"
    );
    assert_eq!(
        ok(
            store.get_tags(&key, Some(&new)).await,
            "get_tags newest by id"
        ),
        valid,
        "tags of {key} newest version by id"
    );
    assert!(
        ok(store.get_tags(&key, Some(&old)).await, "get_tags older").is_empty(),
        "tags of {key}: tagging the newest version tagged an older one"
    );

    let quarantined = tags(&[("cachefill-status", "quarantined"), ("reason", "schema")]);
    ok(
        store.put_tags(&key, Some(&old), &quarantined).await,
        "put_tags older",
    );
    assert_eq!(
        ok(store.get_tags(&key, Some(&old)).await, "get_tags older"),
        quarantined,
        "tags of {key} older version"
    );
    assert_eq!(
        ok(store.get_tags(&key, None).await, "get_tags current"),
        valid,
        "tags of {key}: tagging an older version changed the newest"
    );

    let replaced = tags(&[("cachefill-status", "valid")]);
    ok(
        store.put_tags(&key, Some(&old), &replaced).await,
        "put_tags replace",
    );
    assert_eq!(
        ok(store.get_tags(&key, Some(&old)).await, "get_tags replaced"),
        replaced,
        "tags of {key}: put_tags must replace the set, not merge"
    );

    put_bytes(store, &key, b"newest").await;
    assert!(
        ok(store.get_tags(&key, None).await, "get_tags after put").is_empty(),
        "tags of {key}: a new version inherited tags"
    );
    assert_eq!(
        ok(store.get_tags(&key, Some(&new)).await, "get_tags previous"),
        valid,
        "tags of {key}: a new put changed the previous version's tags"
    );

    expect_not_found(
        store.get_tags(&key, Some(&foreign)).await,
        "get_tags by another key's version id",
    );
    expect_not_found(
        store.put_tags(&key, Some(&foreign), &valid).await,
        "put_tags by another key's version id",
    );
    expect_not_found(
        store
            .put_tags(&self::key(prefix, "tags/missing.bin"), None, &valid)
            .await,
        "put_tags of a missing key",
    );
}

/// `list_versions` is newest first, delete markers included, `is_latest` only on the top.
pub async fn list_versions_newest_first(store: &dyn ObjectStore, prefix: &str) {
    let key = key(prefix, "versions/object.bin");
    let mut expected = Vec::new();
    for body in [&b"1"[..], b"22", b"333"] {
        let put = put_bytes(store, &key, body).await;
        expected.push((version_of(&put, &key), put.etag, body.len() as u64, false));
    }
    ok(store.delete(&key).await, "delete");
    let put = put_bytes(store, &key, b"4444").await;
    expected.push((version_of(&put, &key), put.etag, 4, false));

    let versions = ok(store.list_versions(&key).await, "list_versions");
    assert_eq!(versions.len(), 5, "list_versions of {key}: {versions:?}");
    assert!(
        versions[1].is_delete_marker,
        "list_versions of {key}: the delete marker must be second: {versions:?}"
    );
    let objects: Vec<_> = versions.iter().filter(|v| !v.is_delete_marker).collect();
    for (got, (version, etag, size, _)) in objects.iter().zip(expected.iter().rev()) {
        assert_eq!(&got.version_id, version, "list_versions of {key}: order");
        assert!(
            etags_equal(&got.etag, etag),
            "list_versions of {key}: etag of {version}"
        );
        assert_eq!(got.size, *size, "list_versions of {key}: size of {version}");
    }
    let latest: Vec<bool> = versions.iter().map(|v| v.is_latest).collect();
    assert_eq!(
        latest,
        [true, false, false, false, false],
        "list_versions of {key}: is_latest must be set on the newest only"
    );
    assert!(
        versions
            .windows(2)
            .all(|pair| pair[0].last_modified >= pair[1].last_modified),
        "list_versions of {key}: not newest first: {versions:?}"
    );
}

fn key(prefix: &str, name: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn metadata(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    metadata(pairs)
}

fn with_metadata(metadata: &Metadata) -> PutOptions {
    PutOptions {
        metadata: metadata.clone(),
        ..Default::default()
    }
}

fn if_absent() -> PutOptions {
    PutOptions::with_mode(PutMode::IfAbsent)
}

fn if_match(etag: &str) -> PutOptions {
    PutOptions::with_mode(PutMode::IfMatch(etag.to_string()))
}

async fn put_bytes(store: &dyn ObjectStore, key: &str, body: &[u8]) -> PutResult {
    let result = store
        .put(key, Bytes::copy_from_slice(body), PutOptions::default())
        .await;
    result.unwrap_or_else(|err| panic!("put of {key}: {err}"))
}

#[track_caller]
fn version_of(put: &PutResult, key: &str) -> String {
    put.version_id
        .clone()
        .unwrap_or_else(|| panic!("put of {key}: no version id on a versioned store"))
}

/// The facts of a read object agree with the put (or copy) that created it.
#[track_caller]
fn assert_object(got: &GetResult, key: &str, size: usize, put: &PutResult, what: &str) {
    assert_eq!(got.meta.key, key, "{what}: key");
    assert_eq!(got.meta.size, size as u64, "{what} of {key}: size");
    assert_eq!(got.bytes.len(), size, "{what} of {key}: byte count");
    assert!(
        etags_equal(&got.meta.etag, &put.etag),
        "{what} of {key}: etag {} but the write returned {}",
        got.meta.etag,
        put.etag
    );
    assert_eq!(
        got.meta.version_id, put.version_id,
        "{what} of {key}: version id"
    );
}

#[track_caller]
fn ok<T>(result: Result<T>, what: &str) -> T {
    result.unwrap_or_else(|err| panic!("{what}: unexpected error: {err}"))
}

#[track_caller]
fn expect_not_found<T: Debug>(result: Result<T>, what: &str) {
    match result {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

#[track_caller]
fn expect_precondition_failed<T: Debug>(result: Result<T>, what: &str) {
    match result {
        Err(StorageError::PreconditionFailed { .. }) => {}
        other => panic!("{what}: expected PreconditionFailed, got {other:?}"),
    }
}
