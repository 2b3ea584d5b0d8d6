//! A corrupt object written over a validated one by hand, with the AWS CLI, is quarantined and
//! the validated version restored, as `aws s3api list-object-versions` shows.

use cachefill_client::{DataRequest, Source};
use cachefill_core::codec;
use cachefill_core::keys::relative_path;
use cachefill_core::storage::ObjectStore;
use cachefill_e2e::thetadata::aapl_hour_quote;
use cachefill_e2e::{MISS_HANDLER, OBJECT_VALIDATOR, Seen, Terminal, eventually};
use serde_json::Value;

use crate::{PATIENCE, audited, layout, stack_for, validated};

#[tokio::test]
async fn a_corrupt_upload_is_quarantined_and_the_valid_version_restored() -> anyhow::Result<()> {
    let terminal = Terminal::start().await?;
    let Some(stack) = stack_for("quarantine end to end", &terminal, &[]).await? else {
        return Ok(());
    };
    stack.start_function(MISS_HANDLER).await?;
    stack.start_function(OBJECT_VALIDATOR).await?;
    let relay = stack.relay_to(OBJECT_VALIDATOR)?.spawn();
    let store = stack.store();
    let bucket = stack.config().bucket.clone();
    let dataset = aapl_hour_quote();
    let key = layout(&stack).data_key(&dataset);

    // A validated version, filled the way a job fills it.
    let request =
        DataRequest::parse(dataset.clone(), "2024-01-02", "2024-01-31")?.with_after_hours(false);
    let cache = tempfile::tempdir()?;
    let valid = stack
        .readonly_client(MISS_HANDLER, cache.path())
        .await?
        .get(&request)
        .await?;
    let valid_version = valid.version_id.clone().expect("a versioned bucket");
    validated(&stack, &dataset, &valid_version).await?;

    // Someone uploads a cut-off copy of it onto the key with the AWS CLI.
    let valid_bytes = std::fs::read(&valid.path)?;
    let corrupt = &valid_bytes[..valid_bytes.len() / 2];
    let corrupt_version = stack.aws_put_object(&key, corrupt).await?;

    // The validator tags it quarantined and puts the validated bytes back on the key.
    let tagging = eventually(
        "the corrupt version to be quarantined",
        PATIENCE,
        || async {
            let tags = stack
                .aws(&[
                    "s3api",
                    "get-object-tagging",
                    "--bucket",
                    &bucket,
                    "--key",
                    &key,
                    "--version-id",
                    &corrupt_version,
                ])
                .await?;
            let quarantined = tags["TagSet"].as_array().is_some_and(|set| {
                set.iter()
                    .any(|t| t["Key"] == "cachefill-status" && t["Value"] == "quarantined")
            });
            let current = store.head(&key, None).await?;
            Ok::<_, anyhow::Error>(
                if quarantined && current.version_id.as_deref() != Some(corrupt_version.as_str()) {
                    Seen::Ready(tags)
                } else {
                    Seen::NotYet((tags, current.version_id))
                },
            )
        },
    )
    .await?;
    assert_eq!(
        tagging["TagSet"].as_array().map(Vec::len),
        Some(1),
        "{tagging}"
    );

    // list-object-versions: the valid version, the corrupt one, and the restored copy, latest.
    let listing = stack
        .aws(&[
            "s3api",
            "list-object-versions",
            "--bucket",
            &bucket,
            "--prefix",
            &key,
        ])
        .await?;
    let versions: Vec<&Value> = listing["Versions"]
        .as_array()
        .expect("a version listing")
        .iter()
        .filter(|v| v["Key"] == key.as_str())
        .collect();
    assert_eq!(versions.len(), 3, "{listing}");
    let latest: Vec<&&Value> = versions.iter().filter(|v| v["IsLatest"] == true).collect();
    assert_eq!(latest.len(), 1, "{listing}");
    let restored_version = latest[0]["VersionId"]
        .as_str()
        .expect("a version id")
        .to_string();
    let ids: Vec<&str> = versions
        .iter()
        .filter_map(|v| v["VersionId"].as_str())
        .collect();
    assert!(ids.contains(&valid_version.as_str()), "{listing}");
    assert!(ids.contains(&corrupt_version.as_str()), "{listing}");
    assert!(restored_version != valid_version && restored_version != corrupt_version);
    let sizes: Vec<u64> = versions.iter().filter_map(|v| v["Size"].as_u64()).collect();
    assert_eq!(
        sizes.iter().filter(|s| **s == corrupt.len() as u64).count(),
        1,
        "{listing}"
    );
    assert!(
        listing["DeleteMarkers"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{listing}"
    );

    // The current bytes are the validated ones, and the manifest still names the valid version.
    let current = store.get(&key, None).await?;
    assert_eq!(
        current.meta.version_id.as_deref(),
        Some(restored_version.as_str())
    );
    assert_eq!(
        codec::sha256_hex(&current.bytes),
        codec::sha256_hex(&valid_bytes)
    );
    assert_eq!(codec::sha256_hex(&current.bytes), valid.sha256);

    // The rejected bytes are kept in quarantine with their reason.
    let folder = format!(
        "{}_quarantine/{}/",
        stack.config().version_root(),
        relative_path(&dataset)
    );
    let kept = eventually("the quarantined copy and its reason", PATIENCE, || async {
        let mut keys: Vec<String> = store
            .list(&folder)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        Ok::<_, anyhow::Error>(if keys.len() >= 2 {
            Seen::Ready(keys)
        } else {
            Seen::NotYet(keys)
        })
    })
    .await?;
    assert_eq!(
        kept,
        vec![
            format!("{folder}{corrupt_version}.parquet"),
            format!("{folder}{corrupt_version}.reason.json"),
        ]
    );
    let copy = store.get(&kept[0], None).await?;
    assert_eq!(copy.bytes.as_ref(), corrupt);
    let reason: Value = serde_json::from_slice(&store.get(&kept[1], None).await?.bytes)?;
    assert_eq!(reason["key"], key.as_str());
    assert_eq!(reason["version_id"], corrupt_version.as_str());
    assert_eq!(reason["sha256"], codec::sha256_hex(corrupt).as_str());
    assert!(
        reason["violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{reason}"
    );

    // The audit trail says what happened, and the manifest never took the corrupt version.
    let record = audited(&stack, &key, &corrupt_version, "quarantined").await?;
    assert_eq!(record["restore"]["action"], "restored");
    assert_eq!(record["restore"]["version_id"], valid_version.as_str());
    let manifest = crate::manifest(&stack, &dataset)
        .await?
        .expect("a manifest");
    assert_eq!(manifest["current"]["version_id"], valid_version.as_str());
    let listed = manifest.to_string();
    assert!(!listed.contains(&corrupt_version), "{manifest}");

    // A job that reads the key now gets the validated data.
    let fresh = tempfile::tempdir()?;
    let read = stack
        .readonly_client(MISS_HANDLER, fresh.path())
        .await?
        .get(&request)
        .await?;
    assert_eq!(read.source, Source::RemoteHit);
    assert_eq!(read.sha256, valid.sha256);

    let report = relay.stop().await;
    assert!(report.failed.is_empty(), "{report:?}");
    Ok(())
}
