//! The Polygon key from a Secrets Manager secret (`CACHE_PROVIDER_SECRET_ID`), end to end: the
//! secret is created in moto's Secrets Manager with the AWS CLI as `docs/DEPLOY.md` says, the
//! real miss-handler binary starts under the emulator and reads it once, and a Polygon fill
//! against the replay server (which answers 401 to any other key) writes the file. The key
//! shows in no log line and no answer; a secret that is missing or badly shaped stops the
//! start with a message naming the secret (and the bad key), not the value.

use std::time::Duration;

use cachefill_core::fill::FillRequest;
use cachefill_core::keys::KeyLayout;
use cachefill_core::storage::ObjectStore;
use cachefill_e2e::{MISS_HANDLER, Seen, Stack, StackConfig, eventually};
use cachefill_testing::polygon::PolygonReplay;
use serde_json::{Value, json};

const KEY: &str = "pk-e2e-secret-3f9c1a7d";
const SECRET: &str = "cachefill/e2e/providers";
/// How long a start that must fail may take: a missing secret is answered at once, and the
/// function bounds its Secrets Manager call well within this.
const START_FAILS_WITHIN: Duration = Duration::from_secs(60);

fn request() -> Value {
    json!({
        "provider": "polygon", "asset_type": "stock", "symbol": "SPY",
        "timespan": "day", "datastyle": "ohlc",
        "start": "2024-01-02", "end": "2024-01-31",
    })
}

/// Everything every instance of the miss-handler wrote, in start order.
fn function_logs(stack: &Stack) -> anyhow::Result<String> {
    let mut logs: Vec<_> = std::fs::read_dir(stack.log_dir())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(MISS_HANDLER.bin))
        })
        .collect();
    logs.sort();
    let mut text = String::new();
    for path in logs {
        text.push_str(&std::fs::read_to_string(path)?);
    }
    Ok(text)
}

async fn create_secret(stack: &Stack, name: &str, value: &str) -> anyhow::Result<()> {
    stack
        .aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            name,
            "--secret-string",
            value,
        ])
        .await?;
    Ok(())
}

/// Start an instance with `env` and wait until it has exited; its log is the last one.
async fn start_must_fail(stack: &Stack, env: &[(&str, &str)]) -> anyhow::Result<String> {
    let before = function_logs(stack)?.len();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    stack.start_function_with(MISS_HANDLER, &env).await?;
    eventually("the miss-handler to stop", START_FAILS_WITHIN, || async {
        Ok::<_, String>(match stack.running_instances(MISS_HANDLER) {
            0 => Seen::Ready(()),
            running => Seen::NotYet(running),
        })
    })
    .await?;
    Ok(function_logs(stack)?[before..].to_string())
}

#[tokio::test]
async fn the_polygon_key_comes_from_the_secret_and_is_never_shown() -> anyhow::Result<()> {
    let replay = PolygonReplay::start(KEY).await?;
    let config = StackConfig {
        notifications: false,
        function_env: vec![
            ("CACHE_PROVIDERS".into(), "polygon".into()),
            ("POLYGON_BASE_URL".into(), replay.base_url()),
            ("CACHE_PROVIDER_SECRET_ID".into(), SECRET.into()),
            // The SDK's own debug lines too must not carry the secret.
            ("RUST_LOG".into(), "debug".into()),
        ],
        ..StackConfig::default()
    };
    let Some(stack) = Stack::start_or_skip("provider secret", config).await? else {
        return Ok(());
    };
    create_secret(&stack, SECRET, &format!(r#"{{"POLYGON_API_KEY":"{KEY}"}}"#)).await?;
    stack.start_function(MISS_HANDLER).await?;

    let filled = stack.invoke(MISS_HANDLER, &request()).await?;
    assert!(filled.succeeded(), "{filled:?}");
    let answer = &filled.payload;
    assert_eq!(answer["status"], "filled", "{answer}");
    // January 2024 has 21 NYSE sessions.
    assert_eq!(answer["rows"], 21, "{answer}");
    let dataset = FillRequest::from_json(&request().to_string())?.dataset;
    let config = stack.config();
    let key = KeyLayout::new(&config.prefix, &config.version).data_key(&dataset);
    assert_eq!(answer["key"], key.as_str(), "{answer}");
    let object = stack.store().get(&key, None).await?;
    assert_eq!(
        answer["version_id"],
        object.meta.version_id.as_deref().unwrap_or_default()
    );
    // Every request Polygon saw carried the secret's key, and only as the bearer header.
    let requests = replay.aggs_requests();
    assert!(!requests.is_empty());
    for request in &requests {
        let bearer = format!("Bearer {KEY}");
        assert!(
            request
                .headers
                .iter()
                .any(|(name, value)| name == "authorization" && *value == bearer),
            "{request:?}"
        );
        assert!(
            !request.raw_query.iter().any(|(_, v)| v.contains(KEY)),
            "{request:?}"
        );
    }

    // The environment wins over the secret: a wrong key set there is the one sent, and
    // Polygon refuses it; the error names no key either.
    stack.kill_function(MISS_HANDLER);
    stack
        .start_function_with(
            MISS_HANDLER,
            &[("POLYGON_API_KEY".into(), "pk-e2e-wrong".into())],
        )
        .await?;
    let mut other = request();
    other["symbol"] = json!("QQQ");
    let refused = stack.invoke(MISS_HANDLER, &other).await?;
    assert!(!refused.succeeded(), "{refused:?}");
    assert_eq!(
        refused.error_type(),
        Some("UpstreamNoPermission"),
        "{refused:?}"
    );

    let logs = function_logs(&stack)?;
    assert!(logs.contains("provider secret read"), "{logs}");
    assert!(logs.contains(SECRET), "{logs}");
    assert!(
        logs.contains("set in the environment too"),
        "the shadowed secret value is not reported:\n{logs}"
    );
    for (what, text) in [
        ("a log line", logs.as_str()),
        ("the answer", &answer.to_string()),
        ("the refusal", &format!("{refused:?}")),
    ] {
        assert!(!text.contains(KEY), "the key appears in {what}:\n{text}");
        assert!(!text.contains("pk-e2e-wrong"), "a key appears in {what}");
    }
    Ok(())
}

#[tokio::test]
async fn a_missing_or_malformed_secret_stops_the_start_naming_it() -> anyhow::Result<()> {
    let config = StackConfig {
        notifications: false,
        function_env: vec![
            ("CACHE_PROVIDERS".into(), "thetadata,polygon".into()),
            ("RUST_LOG".into(), "debug".into()),
        ],
        ..StackConfig::default()
    };
    let Some(stack) = Stack::start_or_skip("provider secret at start", config).await? else {
        return Ok(());
    };
    let missing = "cachefill/e2e/nowhere";
    let log = start_must_fail(&stack, &[("CACHE_PROVIDER_SECRET_ID", missing)]).await?;
    assert!(log.contains("miss-handler cannot start"), "{log}");
    assert!(
        log.contains(&format!(
            "cannot read provider secret {missing} (CACHE_PROVIDER_SECRET_ID): ResourceNotFoundException"
        )),
        "{log}"
    );

    let misnamed = "cachefill/e2e/misnamed";
    create_secret(&stack, misnamed, &format!(r#"{{"POLYGON_KEY":"{KEY}"}}"#)).await?;
    let log = start_must_fail(&stack, &[("CACHE_PROVIDER_SECRET_ID", misnamed)]).await?;
    assert!(
        log.contains(&format!(
            r#"provider secret {misnamed} (CACHE_PROVIDER_SECRET_ID): key \"POLYGON_KEY\" is not a provider credential"#
        )),
        "{log}"
    );
    assert!(!log.contains(KEY), "{log}");

    // A valid secret without the key a served provider needs says where it could be.
    let empty = "cachefill/e2e/empty";
    create_secret(&stack, empty, "{}").await?;
    let log = start_must_fail(&stack, &[("CACHE_PROVIDER_SECRET_ID", empty)]).await?;
    assert!(
        log.contains(&format!(
            "POLYGON_API_KEY must be set, in the environment or in provider secret {empty}"
        )),
        "{log}"
    );
    Ok(())
}
