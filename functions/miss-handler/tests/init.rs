//! The function as Lambda starts it: settings read once at init through the composition root.
//! A setting (or provider secret) that cannot be used stops the process before it asks for
//! its first event, with a message naming the variable (or the secret); a deployment that
//! does not serve a provider answers a request for it with `InvalidRequest`, naming the
//! setting.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cachefill_core::errors::ErrorType;
use cachefill_core::runtime;
use cachefill_core::settings::MissHandlerSettings;
use cachefill_core::storage::local::LocalStore;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::value::RawValue;

/// Run the miss-handler binary with exactly `env` and return its exit status and output.
/// Bounded: a process still running after 60 s is killed and the test fails.
fn start_with(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_miss-handler"))
        .env_clear()
        .envs(env.iter().copied())
        // Where the runtime API would be; init must fail before anything connects to it.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the miss-handler binary");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the miss-handler") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the miss-handler did not exit within 60 s of a failed init");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("collect output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status, text)
}

#[test]
fn a_broken_setting_fails_init_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "CACHE_BUCKET"),
        (
            &[
                ("CACHE_BUCKET", "b"),
                ("THETADATA_BASE_URL", "https://theta.example"),
            ],
            "THETADATA_BASE_URL",
        ),
        (
            &[("CACHE_BUCKET", "b"), ("THETADATA_BASE_URL", "theta:25503")],
            "THETADATA_BASE_URL",
        ),
        (
            &[
                ("CACHE_BUCKET", "b"),
                ("CACHE_PROVIDERS", "thetadata,nobody"),
            ],
            "CACHE_PROVIDERS",
        ),
    ];
    for (env, variable) in cases {
        let (status, output) = start_with(env);
        assert!(!status.success(), "{env:?} started: {output}");
        assert!(
            output.contains(variable) && output.contains("cannot start"),
            "{env:?}: the init error does not name {variable}:\n{output}"
        );
    }
}

#[test]
fn an_unreadable_provider_secret_fails_init_naming_the_secret() {
    let (status, output) = start_with(&[
        ("CACHE_BUCKET", "b"),
        ("CACHE_PROVIDERS", "thetadata,polygon"),
        ("CACHE_PROVIDER_SECRET_ID", "cachefill/prod/providers"),
        // Nothing listens on the discard port: Secrets Manager is unreachable.
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9"),
        // Static credentials, so the SDK never looks for an instance metadata service.
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);
    assert!(!status.success(), "started: {output}");
    assert!(
        output.contains("miss-handler cannot start")
            && output.contains(
                "cannot read provider secret cachefill/prod/providers (CACHE_PROVIDER_SECRET_ID)"
            ),
        "the init error does not name the secret:\n{output}"
    );
}

fn event(json: &str) -> LambdaEvent<Box<RawValue>> {
    LambdaEvent::new(
        RawValue::from_string(json.to_string()).expect("JSON"),
        Context::default(),
    )
}

const SYNTHETIC_DAY: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc","start":"2024-01-02","end":"2024-01-31"}"#;

/// The wiring `main.rs` does, on the local directory store: settings → composition root →
/// handler.
#[tokio::test]
async fn the_composition_root_serves_what_the_settings_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lookup = |served: &'static str| {
        move |name: &str| match name {
            "CACHE_BUCKET" => Some("b".to_string()),
            "CACHE_PREFIX" => Some("stage".to_string()),
            "CACHE_PROVIDERS" => Some(served.to_string()),
            _ => None,
        }
    };

    let settings = MissHandlerSettings::from_lookup(lookup("synthetic,thetadata")).unwrap();
    let engine = runtime::engine(LocalStore::new(dir.path()).unwrap(), &settings).unwrap();
    let answer = miss_handler::handle(&engine, event(SYNTHETIC_DAY))
        .await
        .expect("a served provider fills");
    assert_eq!(answer.status.as_str(), "filled");
    assert!(
        answer.key.starts_with("stage/v1/synthetic/"),
        "{}",
        answer.key
    );

    let settings = MissHandlerSettings::from_lookup(lookup("thetadata")).unwrap();
    let engine = runtime::engine(LocalStore::new(dir.path()).unwrap(), &settings).unwrap();
    let error = miss_handler::handle(&engine, event(SYNTHETIC_DAY))
        .await
        .expect_err("synthetic is not served");
    assert_eq!(error.error_type, ErrorType::InvalidRequest);
    assert!(
        error.message.contains("CACHE_PROVIDERS"),
        "{}",
        error.message
    );
}
