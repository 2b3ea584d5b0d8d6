//! The functions on a misbehaving S3: a fault proxy (`cachefill_e2e::fault_proxy`) between
//! them and moto answers about one S3 request in ten with 503 SlowDown, 500 InternalError, a
//! connection reset mid-answer, added latency, or (on a conditional PUT) a 412 lost to a
//! competing write.
//!
//! First, each fault is seen by an S3 client as that fault. Then the campaign: hundreds of
//! fills over two dozen datasets, every S3 event relayed to the validator, and at the end
//! every fill succeeded (after bounded retries of retryable errors only), every parquet
//! decodes and matches its sidecar, every manifest entry names an existing valid version,
//! and the validator quarantined nothing valid and left nothing invalid current.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use bytes::Bytes;
use cachefill_core::calendar;
use cachefill_core::dataset::Dataset;
use cachefill_core::errors::ErrorType;
use cachefill_core::keys::KeyLayout;
use cachefill_core::rules;
use cachefill_core::settings::Secret;
use cachefill_core::storage::s3::{S3Config, S3Store, build_client};
use cachefill_core::storage::{ObjectStore, PutMode, PutOptions, StorageError, etags_equal};
use cachefill_core::validate::{files, manifest};
use cachefill_e2e::fault_proxy::{Fault, FaultPlan, FaultProxy, FaultStats, RequestKind};
use cachefill_e2e::sqs::SqsQueue;
use cachefill_e2e::stack::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use cachefill_e2e::{MISS_HANDLER, OBJECT_VALIDATOR, Seen, Stack, StackConfig, eventually};
use chrono::NaiveDate;
use serde_json::{Value, json};

/// An S3 client through `endpoint` that never retries, so a fault reaches the caller.
async fn client_without_retries(endpoint: &str) -> aws_sdk_s3::Client {
    let client = build_client(&S3Config {
        region: Some(REGION.to_string()),
        endpoint_url: Some(endpoint.to_string()),
        access_key_id: Some(ACCESS_KEY_ID.to_string()),
        secret_access_key: Some(Secret::new(SECRET_ACCESS_KEY)),
        session_token: None,
    })
    .await;
    let config = client
        .config()
        .to_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A proxy with `plan` in front of the stack's moto, and the store through it.
async fn through(stack: &Stack, plan: FaultPlan) -> anyhow::Result<(FaultProxy, S3Store)> {
    let proxy = FaultProxy::start(&stack.s3_endpoint(), plan).await?;
    let client = client_without_retries(&proxy.endpoint()).await;
    Ok((proxy, S3Store::new(client, stack.config().bucket.clone())))
}

fn json_put(mode: PutMode) -> PutOptions {
    PutOptions {
        mode,
        content_type: Some("application/json".to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_fault_reaches_an_s3_client_as_that_fault() -> anyhow::Result<()> {
    let config = StackConfig {
        notifications: false,
        ..StackConfig::default()
    };
    let Some(stack) = Stack::start_or_skip("fault proxy", config).await? else {
        return Ok(());
    };
    let direct = stack.store();
    let bucket = stack.config().bucket.clone();
    let body = Bytes::from(vec![b'x'; 4096]);
    let first = direct
        .put("k/object", body.clone(), PutOptions::default())
        .await?;

    // 503 SlowDown, with S3's XML error body: the SDK reads its code, the store calls it
    // transient.
    let (proxy, store) = through(
        &stack,
        FaultPlan::always(RequestKind::GetObject, Fault::SlowDown),
    )
    .await?;
    let raw = client_without_retries(&proxy.endpoint()).await;
    let error = raw
        .get_object()
        .bucket(&bucket)
        .key("k/object")
        .send()
        .await
        .expect_err("a 503");
    assert_eq!(error.code(), Some("SlowDown"), "{error:?}");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(503));
    let error = store.get("k/object", None).await.expect_err("a 503");
    assert!(
        matches!(error, StorageError::Unavailable { .. }) && error.is_transient(),
        "{error:?}"
    );
    assert_eq!(
        proxy
            .stats()
            .faults_on(RequestKind::GetObject, Fault::SlowDown),
        2
    );
    // Other kinds pass.
    assert_eq!(store.head("k/object", None).await?.etag, first.etag);

    // 500 InternalError on a PUT: refused before moto saw it.
    let (proxy, store) = through(
        &stack,
        FaultPlan::always(RequestKind::PutObject, Fault::InternalError),
    )
    .await?;
    let raw = client_without_retries(&proxy.endpoint()).await;
    let error = raw
        .put_object()
        .bucket(&bucket)
        .key("k/never")
        .body(body.clone().into())
        .send()
        .await
        .expect_err("a 500");
    assert_eq!(error.code(), Some("InternalError"), "{error:?}");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(500));
    let error = store
        .put("k/never", body.clone(), PutOptions::default())
        .await
        .expect_err("a 500");
    assert!(
        matches!(error, StorageError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(matches!(
        direct.head("k/never", None).await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(proxy.stats().faults_of(Fault::InternalError), 2);

    // A reset mid-body: the status line and headers arrive, then half the body, then the
    // connection is gone.
    let (proxy, store) = through(
        &stack,
        FaultPlan::always(RequestKind::GetObject, Fault::ResetMidBody),
    )
    .await?;
    let raw = client_without_retries(&proxy.endpoint()).await;
    let answer = raw
        .get_object()
        .bucket(&bucket)
        .key("k/object")
        .send()
        .await?;
    assert_eq!(answer.content_length(), Some(body.len() as i64));
    assert!(
        answer.body.collect().await.is_err(),
        "the body is cut short"
    );
    let error = store.get("k/object", None).await.expect_err("a cut body");
    assert!(
        matches!(error, StorageError::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(proxy.stats().faults_of(Fault::ResetMidBody), 2);

    // A reset on a PUT: the write lands, its answer is lost.
    let (proxy, store) = through(
        &stack,
        FaultPlan::always(RequestKind::PutObject, Fault::ResetMidBody),
    )
    .await?;
    let error = store
        .put("k/landed", body.clone(), PutOptions::default())
        .await
        .expect_err("a lost answer");
    assert!(
        matches!(error, StorageError::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(direct.get("k/landed", None).await?.bytes, body);
    assert_eq!(proxy.stats().faults_of(Fault::ResetMidBody), 1);

    // Latency: the answer is right, and late.
    let (proxy, store) = through(
        &stack,
        FaultPlan::always(RequestKind::HeadObject, Fault::Latency),
    )
    .await?;
    let started = Instant::now();
    assert_eq!(store.head("k/object", None).await?.etag, first.etag);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proxy.stats().faults_of(Fault::Latency), 1);

    // A 412 race: the competing write lands first, and moto itself refuses the condition.
    let (proxy, store) = through(
        &stack,
        FaultPlan::always(RequestKind::ConditionalPut, Fault::Race412),
    )
    .await?;
    let mine = Bytes::from_static(br#"{"mine":true}"#);
    let error = store
        .put(
            "k/object",
            mine.clone(),
            json_put(PutMode::IfMatch(first.etag.clone())),
        )
        .await
        .expect_err("a lost race");
    assert!(
        matches!(error, StorageError::PreconditionFailed { .. }),
        "{error:?}"
    );
    assert_eq!(direct.list_versions("k/object").await?.len(), 2);
    assert_eq!(
        direct.get("k/object", None).await?.bytes,
        mine,
        "the peer wrote the same"
    );
    let error = store
        .put("k/fresh", mine.clone(), json_put(PutMode::IfAbsent))
        .await
        .expect_err("a lost race");
    assert!(
        matches!(error, StorageError::PreconditionFailed { .. }),
        "{error:?}"
    );
    // A lease is raced by a peer whose lease has already expired.
    let lease = "e2e/cache/v1/_leases/x.lease";
    let error = store
        .put(lease, mine.clone(), json_put(PutMode::IfAbsent))
        .await
        .expect_err("a lost race");
    assert!(
        matches!(error, StorageError::PreconditionFailed { .. }),
        "{error:?}"
    );
    let held: Value = serde_json::from_slice(&direct.get(lease, None).await?.bytes)?;
    assert_eq!(held["owner"], "fault-proxy-peer");
    assert_eq!(proxy.stats().faults_of(Fault::Race412), 3);
    // An unconditional PUT is not raced.
    store
        .put("k/plain", mine.clone(), PutOptions::default())
        .await?;

    // Every object request faulted, and SQS on the same endpoint untouched.
    let (proxy, store) = through(&stack, FaultPlan::campaign(1, 1.0)).await?;
    let queue = SqsQueue::create(
        &proxy.endpoint(),
        REGION,
        "through-the-proxy",
        Duration::from_secs(5),
    )
    .await?;
    assert!(queue.receive(1, Duration::ZERO).await?.is_empty());
    assert_eq!(queue.backlog().await?, 0);
    let _ = store.head("k/object", None).await;
    let stats = proxy.stats();
    assert!(stats.requests_of(RequestKind::NotS3) >= 3, "{stats:?}");
    assert_eq!(stats.s3_requests(), 1, "{stats:?}");
    assert_eq!(stats.total_faults(), 1, "{stats:?}");
    Ok(())
}

/// Datasets of the campaign, filled side by side.
const DATASETS: usize = 24;
/// Fills per dataset: each extends the file by ten sessions, the last asks again (a hit).
const STEPS: usize = 10;
const FAULT_RATE: f64 = 0.10;
const SEED: u64 = 0x5EED_F417;
const MISS_HANDLERS: usize = 6;
const VALIDATORS: usize = 3;
/// Invocations of one fill at most, the first included.
const ATTEMPTS: usize = 6;
/// Bound on one invocation: far above a fill's time, far below the test's.
const FILL_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound on the validator's backlog not shrinking once the fills are done.
const STALL: Duration = Duration::from_secs(60);
/// Bound on the validator catching up once the fills are done, however steadily.
const PATIENCE: Duration = Duration::from_secs(600);

fn symbol(i: usize) -> String {
    let letter = |n: usize| char::from(b'A' + u8::try_from(n % 26).expect("a letter"));
    format!("FZ{}{}", letter(i / 26), letter(i))
}

fn dataset_of(symbol: &str) -> Dataset {
    Dataset::from_json(
        &json!({"provider": "synthetic", "asset_type": "stock", "symbol": symbol,
                "timespan": "day", "datastyle": "ohlc"})
        .to_string(),
    )
    .expect("a dataset")
}

/// What one fill came to.
struct Fill {
    symbol: String,
    end: NaiveDate,
    /// `filled`, `hit`, or why it never succeeded.
    outcome: Result<String, String>,
    /// `errorType`s of the failed invocations retried.
    retried: Vec<String>,
}

/// Invoke the miss-handler until it answers, retrying (a bounded number of times) only what
/// its `errorType` says a retry may mend.
async fn fill(stack: &Stack, symbol: &str, end: NaiveDate) -> Fill {
    let payload = json!({"provider": "synthetic", "asset_type": "stock", "symbol": symbol,
        "timespan": "day", "datastyle": "ohlc", "start": "2024-01-02", "end": end.to_string()});
    let mut retried = Vec::new();
    let mut outcome = Err("not invoked".to_string());
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
        }
        let invocation =
            match tokio::time::timeout(FILL_TIMEOUT, stack.invoke(MISS_HANDLER, &payload)).await {
                Err(_) => {
                    outcome = Err(format!("no answer within {FILL_TIMEOUT:?}"));
                    break;
                }
                Ok(Err(e)) => {
                    outcome = Err(format!("invoke failed: {e}"));
                    break;
                }
                Ok(Ok(invocation)) => invocation,
            };
        if invocation.succeeded() {
            outcome = Ok(invocation.payload["status"]
                .as_str()
                .unwrap_or("?")
                .to_string());
            break;
        }
        let error_type = invocation.error_type().unwrap_or("?").to_string();
        let message = invocation.error_message().unwrap_or_default().to_string();
        outcome = Err(format!("{error_type}: {message}"));
        if !ErrorType::parse(&error_type).is_some_and(ErrorType::is_retryable) {
            break;
        }
        retried.push(error_type);
    }
    Fill {
        symbol: symbol.to_string(),
        end,
        outcome,
        retried,
    }
}

/// Whether the validator has caught up: no event queued, and every dataset's current bytes
/// recorded as its manifest's current and the current version tagged valid. Not yet is reported with the events still queued.
async fn converged(
    stack: &Stack,
    layout: &KeyLayout,
    datasets: &[Dataset],
) -> anyhow::Result<Seen<(), (u64, String)>> {
    let store = stack.store();
    let backlog = stack
        .queue()
        .expect("notifications are on")
        .backlog()
        .await?;
    if backlog > 0 {
        return Ok(Seen::NotYet((backlog, format!("{backlog} events queued"))));
    }
    for dataset in datasets {
        let key = layout.data_key(dataset);
        let current = store.head(&key, None).await?;
        // The manifest records contents: its current entry may name an earlier version of
        // the same bytes (a write whose answer was lost, put again), so etags are compared.
        let recorded = manifest::read(&store, &layout.manifest_key(dataset))
            .await?
            .and_then(|(m, _)| m.current);
        if !recorded
            .as_ref()
            .is_some_and(|r| etags_equal(&r.etag, &current.etag))
        {
            return Ok(Seen::NotYet((
                0,
                format!(
                    "{key}: current {:?} {}, manifest {:?}",
                    current.version_id,
                    current.etag,
                    recorded.map(|r| (r.version_id, r.etag))
                ),
            )));
        }
        let tags = store.get_tags(&key, current.version_id.as_deref()).await?;
        if tags.get("cachefill-status").map(String::as_str) != Some("valid") {
            return Ok(Seen::NotYet((0, format!("{key}: tags {tags:?}"))));
        }
    }
    Ok(Seen::Ready(()))
}

/// What the bucket says about one dataset once the validator is done; every entry a problem.
async fn problems_of(
    stack: &Stack,
    layout: &KeyLayout,
    dataset: &Dataset,
) -> anyhow::Result<Vec<String>> {
    let store = stack.store();
    let key = layout.data_key(dataset);
    let mut problems = Vec::new();
    // The parquet at the canonical key decodes, passes the rules and matches its sidecar.
    let report = files::check_key(&store, layout, &key).await?;
    if !report.valid || report.sidecar.is_none() {
        problems.push(format!(
            "{key}: current object invalid or without sidecar: {:?}",
            report.violations
        ));
    }
    // Every manifest entry names an existing version with its bytes, valid and tagged so.
    let (recorded, _) = manifest::read(&store, &layout.manifest_key(dataset))
        .await?
        .ok_or_else(|| anyhow::anyhow!("{key}: no manifest"))?;
    for entry in recorded.current.iter().chain(&recorded.history) {
        let version = entry.version_id.as_deref();
        let got = match store.get(&key, version).await {
            Ok(got) => got,
            Err(e) => {
                problems.push(format!(
                    "{key}: manifest names {version:?}, which is gone: {e}"
                ));
                continue;
            }
        };
        let verdict = rules::check_object(dataset, &got.bytes, None, chrono::Utc::now());
        if verdict.sha256 != entry.sha256 || !verdict.is_valid() {
            problems.push(format!(
                "{key}: manifest entry {version:?} (sha256 {}) is not that valid version: {} {:?}",
                entry.sha256, verdict.sha256, verdict.violations
            ));
        }
    }
    // No valid version quarantined, and the current one tagged valid.
    for version in store.list_versions(&key).await? {
        if version.is_delete_marker {
            problems.push(format!("{key}: delete marker {}", version.version_id));
            continue;
        }
        let tags = store.get_tags(&key, Some(&version.version_id)).await?;
        let status = tags.get("cachefill-status").map(String::as_str);
        if status == Some("quarantined") {
            let got = store.get(&key, Some(&version.version_id)).await?;
            if rules::check_object(dataset, &got.bytes, None, chrono::Utc::now()).is_valid() {
                problems.push(format!(
                    "{key}: valid version {} quarantined",
                    version.version_id
                ));
            }
        }
        if version.is_latest && status != Some("valid") {
            problems.push(format!(
                "{key}: current version {} tagged {status:?}",
                version.version_id
            ));
        }
    }
    Ok(problems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_and_validations_converge_on_a_misbehaving_s3() -> anyhow::Result<()> {
    let started = Instant::now();
    let config = StackConfig {
        events_visibility: Duration::from_secs(2),
        ..StackConfig::default()
    };
    let Some(stack) =
        Stack::start_or_skip("fills and validations on a misbehaving S3", config).await?
    else {
        return Ok(());
    };
    let proxy =
        FaultProxy::start(&stack.s3_endpoint(), FaultPlan::campaign(SEED, FAULT_RATE)).await?;
    let through_proxy = [("AWS_ENDPOINT_URL".to_string(), proxy.endpoint())];
    for _ in 0..MISS_HANDLERS {
        stack
            .start_function_with(MISS_HANDLER, &through_proxy)
            .await?;
    }
    for _ in 0..VALIDATORS {
        stack
            .start_function_with(OBJECT_VALIDATOR, &through_proxy)
            .await?;
    }
    let relays = (0..VALIDATORS)
        .map(|_| stack.relay_to(OBJECT_VALIDATOR).map(|r| r.spawn()))
        .collect::<Result<Vec<_>, _>>()?;
    let layout = KeyLayout::new(&stack.config().prefix, &stack.config().version);
    let symbols: Vec<String> = (0..DATASETS).map(symbol).collect();
    let datasets: Vec<Dataset> = symbols.iter().map(|s| dataset_of(s)).collect();
    let sessions = calendar::sessions_between(
        NaiveDate::from_ymd_opt(2024, 1, 2).expect("a date"),
        NaiveDate::from_ymd_opt(2024, 6, 28).expect("a date"),
    )?;
    let ends: Vec<NaiveDate> = (1..STEPS)
        .map(|step| sessions[step * 10 - 1])
        .chain([sessions[(STEPS - 1) * 10 - 1]])
        .collect();

    // Each dataset's fills in order, the datasets side by side.
    let fills: Vec<Fill> = futures::future::join_all(symbols.iter().map(|symbol| {
        let (stack, ends) = (&stack, &ends);
        async move {
            let mut done = Vec::new();
            for end in ends {
                done.push(fill(stack, symbol, *end).await);
            }
            done
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    let fills_done = started.elapsed();

    // However long the validator takes on a slow machine, its backlog keeps shrinking; a
    // backlog that stops shrinking for STALL ends the wait.
    let fewest = std::cell::Cell::new((u64::MAX, Instant::now()));
    let waited = eventually("the validator to converge", PATIENCE, || {
        let (stack, layout, datasets, fewest) = (&stack, &layout, &datasets, &fewest);
        async move {
            let seen = converged(stack, layout, datasets).await?;
            if let Seen::NotYet((backlog, _)) = &seen {
                let (least, since) = fewest.get();
                if *backlog < least {
                    fewest.set((*backlog, Instant::now()));
                } else if since.elapsed() > STALL {
                    anyhow::bail!("the backlog stayed at {least} or more for {STALL:?}: {seen:?}");
                }
            }
            anyhow::Ok(seen)
        }
    })
    .await;
    let mut events = 0;
    let mut event_failures: BTreeMap<String, usize> = BTreeMap::new();
    for relay in relays {
        let report = relay.stop().await;
        events += report
            .delivered
            .iter()
            .map(|e| e.records.len())
            .sum::<usize>();
        for failed in &report.failed {
            *event_failures
                .entry(failed.error_type().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    proxy.set_active(false);
    let mut problems = Vec::new();
    for dataset in &datasets {
        problems.extend(problems_of(&stack, &layout, dataset).await?);
    }
    let quarantined = stack
        .store()
        .list(&format!("{}/_quarantine/", layout.root()))
        .await?;

    let stats: FaultStats = proxy.stats();
    let statuses: BTreeMap<String, usize> = fills.iter().fold(BTreeMap::new(), |mut counts, f| {
        let status = f.outcome.clone().unwrap_or_else(|_| "failed".to_string());
        *counts.entry(status).or_default() += 1;
        counts
    });
    let mut retried: BTreeMap<&str, usize> = BTreeMap::new();
    for error_type in fills.iter().flat_map(|f| &f.retried) {
        *retried.entry(error_type).or_default() += 1;
    }
    let faults_by_kind: Vec<String> = Fault::ALL
        .iter()
        .map(|f| format!("{f} {}", stats.faults_of(*f)))
        .collect();
    println!(
        "S3 fault campaign: {} fills ({statuses:?}) over {DATASETS} datasets, {events} validator \
         events, {} S3 requests, {} faults ({:.1}%: {}), fill retries {retried:?}, failed \
         validator deliveries retried {event_failures:?}, fills {fills_done:.1?}, total {:.1?}",
        fills.len(),
        stats.s3_requests(),
        stats.total_faults(),
        100.0 * stats.total_faults() as f64 / stats.s3_requests().max(1) as f64,
        faults_by_kind.join(", "),
        started.elapsed()
    );
    println!("{}", stats.table());

    let failed: Vec<String> = fills
        .iter()
        .filter_map(|f| {
            let error = f.outcome.as_ref().err()?;
            Some(format!(
                "{} to {} (retried {:?}): {error}",
                f.symbol, f.end, f.retried
            ))
        })
        .collect();
    assert!(failed.is_empty(), "fills that never succeeded: {failed:#?}");
    assert!(
        fills
            .iter()
            .all(|f| matches!(f.outcome.as_deref(), Ok("filled" | "hit"))),
        "{statuses:?}"
    );
    waited?;
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(quarantined.is_empty(), "quarantined: {quarantined:#?}");
    assert!(fills.len() >= 200 && events >= 200 && DATASETS >= 20);
    for fault in Fault::ALL {
        assert!(
            stats.faults_of(fault) > 0,
            "no {fault} was injected: {stats:?}"
        );
    }
    let rate = stats.total_faults() as f64 / stats.s3_requests() as f64;
    assert!((0.05..0.15).contains(&rate), "fault rate {rate}");
    Ok(())
}
