//! The template's IAM, enforced rather than declared. `infra/template.yaml` is parsed at test
//! time and every principal's policies are resolved for a test deployment
//! (`cachefill_e2e::iam`): the backtest jobs' `BacktestReadOnlyPolicy`, the miss-handler's and
//! the object-validator's `Policies`. moto_server then authorizes every request against
//! those policies, each principal calling through assumed-role credentials with the real AWS
//! SDK and the project's own storage seam, and the product's code runs as each principal: the
//! miss-handler's fill engine, the object-validator's judge, a backtest job's reads.
//!
//! Every check is judged twice: by IAM's rules on the exact resolved policies (the verdict a
//! deployment would see), and by moto's real answer, which must be what moto's documented
//! model of authorization predicts. moto enforces S3 actions on their resources, and other
//! services' actions only; the `s3:prefix` conditions (and with them the 404 of a missing
//! key), a copy's read of its source, and the resources of Lambda and Secrets Manager
//! statements rest on the first verdict alone, and each check's line says which. A template
//! widened on purpose must fail exactly the checks it should, and constructs the resolver
//! does not model must be refused by name, so that a template change is never passed
//! unread.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use aws_sdk_s3::error::ProvideErrorMetadata;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::{ObjectStore, PutOptions, StorageError, Tags};
use cachefill_core::validate::{EventRecord, Outcome, Validator, ValidatorConfig};
use cachefill_e2e::iam::{
    Call, Conditions, Deployment, Grants, IamMoto, Keys, Policy, PolicyError, Resolver, S3Op,
    Verdict, decide_all, load_template, moto_dialect, storage_verdict, template_grants,
};
use cachefill_e2e::stack::REGION;
use cachefill_e2e::tools::{Tools, skipped};
use serde_json::{Value, json};

/// Everything one test does, moto's start included.
const BOUND: Duration = Duration::from_secs(50);

const BACKTEST: &str = "backtest";
const MISS_HANDLER: &str = "miss-handler";
const VALIDATOR: &str = "object-validator";
const SECRET: &str = "cachefill/e2e/providers";
const OTHER_SECRET: &str = "cachefill/e2e/other";
const OTHER_BUCKET: &str = "cachefill-e2e-iam-other";

/// The template's principals, and the names the functions are deployed under.
fn deployment(parameters: &[(&str, &str)]) -> Deployment {
    Deployment::new(REGION, parameters)
        .function("MissHandlerFunction", MISS_HANDLER)
        .function("ObjectValidatorFunction", VALIDATOR)
        .principal("BacktestReadOnlyPolicy", BACKTEST)
        .principal("MissHandlerFunction", MISS_HANDLER)
        .principal("ObjectValidatorFunction", VALIDATOR)
}

fn prefixed() -> Deployment {
    deployment(&[
        ("Environment", "e2e"),
        ("BucketName", "cachefill-e2e-iam"),
        ("CreateBucket", "false"),
        ("CachePrefix", "e2e/cache"),
        ("CacheVersion", "v1"),
        ("ProviderSecretId", SECRET),
        ("ServedProviders", "thetadata,polygon"),
    ])
}

/// No prefix, and the bucket name the template generates from the account and region.
fn unprefixed_generated_bucket() -> Deployment {
    deployment(&[
        ("Environment", "e2e"),
        ("BucketName", ""),
        ("CreateBucket", "true"),
        ("CachePrefix", ""),
        ("CacheVersion", "v7"),
        ("ProviderSecretId", SECRET),
    ])
}

async fn bounded(test: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(BOUND, test)
        .await
        .map_err(|_| anyhow!("not finished within {BOUND:?}"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_iam_is_enforced_for_a_prefixed_cache_in_a_named_bucket() -> anyhow::Result<()> {
    if skipped("template_iam_is_enforced_for_a_prefixed_cache_in_a_named_bucket") {
        return Ok(());
    }
    bounded(enforced(prefixed())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_iam_is_enforced_without_a_prefix_in_a_generated_bucket() -> anyhow::Result<()> {
    if skipped("template_iam_is_enforced_without_a_prefix_in_a_generated_bucket") {
        return Ok(());
    }
    bounded(enforced(unprefixed_generated_bucket())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_reads_the_template_and_refuses_what_it_cannot_model() -> anyhow::Result<()> {
    if skipped("the_resolver_reads_the_template_and_refuses_what_it_cannot_model") {
        return Ok(());
    }
    bounded(async {
        let template = load_template(&Tools::locate()?).await?;
        let grants = template_grants(&template, &prefixed())?;
        let backtest = grant(&grants, BACKTEST)?;
        let list = statement(backtest, "ListCache")?;
        ensure!(
            list.resources == ["arn:aws:s3:::cachefill-e2e-iam"]
                && list.conditions.len() == 1
                && list.conditions[0].key == "s3:prefix"
                && list.conditions[0].values == ["e2e/cache/v1/*"],
            "{list:?}"
        );
        ensure!(
            statement(backtest, "FillOnMiss")?.resources
                == ["arn:aws:lambda:us-east-1:123456789012:function:miss-handler"]
        );
        let secret = statement(grant(&grants, MISS_HANDLER)?, "ReadProviderSecret")?;
        ensure!(
            secret.resources
                == ["arn:aws:secretsmanager:us-east-1:123456789012:secret:cachefill/e2e/providers-??????"],
            "{secret:?}"
        );
        let audit = statement(grant(&grants, VALIDATOR)?, "WriteAuditRecords")?;
        ensure!(audit.resources == ["arn:aws:s3:::cachefill-e2e-iam/e2e/cache/_audit/*"], "{audit:?}");

        let generated = template_grants(&template, &unprefixed_generated_bucket())?;
        let read = statement(grant(&generated, BACKTEST)?, "ReadCache")?;
        ensure!(
            read.resources == ["arn:aws:s3:::cachefill-e2e-123456789012-us-east-1/v7/*"],
            "{read:?}"
        );

        // Without a secret the miss-handler may read none (the `!If` leaves AWS::NoValue).
        let mut no_secret = prefixed();
        no_secret.parameters.insert("ProviderSecretId".into(), String::new());
        no_secret.parameters.insert("ServedProviders".into(), "thetadata".into());
        let none = template_grants(&template, &no_secret)?;
        let handler = grant(&none, MISS_HANDLER)?;
        ensure!(
            handler.policies.iter().flat_map(|p| &p.statements).all(|s| s
                .actions
                .iter()
                .all(|a| a.starts_with("s3:"))),
            "{handler:?}"
        );

        // Each edit is a construct the model does not cover; each must fail, naming it:
        // (what the error names, where, the member to set or None to push, the value).
        let handler = "/Resources/MissHandlerFunction/Properties";
        let handler_statement = "/Resources/MissHandlerFunction/Properties/Policies/0/Statement/0";
        let backtest = "/Resources/BacktestReadOnlyPolicy/Properties";
        let backtest_statement = "/Resources/BacktestReadOnlyPolicy/Properties/PolicyDocument/Statement/0";
        let validator_policies = "/Resources/ObjectValidatorFunction/Properties/Policies";
        let bucket_policy = "/Resources/CacheBucketPolicy/Properties/PolicyDocument/Statement";
        let edits = [
            ("NotAction", backtest_statement, Some("NotAction"), json!("s3:PutObject")),
            ("Fn::ImportValue", backtest_statement, Some("Resource"), json!({"Fn::ImportValue": "cache-arn"})),
            ("ArnLike", handler_statement, Some("Condition"), json!({"ArnLike": {"aws:SourceArn": "*"}})),
            ("Principal", handler_statement, Some("Principal"), json!({"AWS": "*"})),
            ("SAM policy template", validator_policies, None, json!({"S3CrudPolicy": {"BucketName": "x"}})),
            ("managed policy", validator_policies, None, json!("AmazonS3ReadOnlyAccess")),
            ("Role", handler, Some("Role"), json!("arn:aws:iam::123456789012:role/elsewhere")),
            ("Roles", backtest, Some("Roles"), json!([{"Ref": "SomeRole"}])),
            ("AWS::IAM::Role", "/Resources", Some("ExtraRole"), json!({"Type": "AWS::IAM::Role"})),
            ("an Allow in a bucket policy", bucket_policy, None,
             json!({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"})),
        ];
        for (named, pointer, member, value) in edits {
            let mut edited = template.clone();
            match member {
                Some(member) => set(&mut edited, pointer, member, value),
                None => push(&mut edited, pointer, value),
            }
            // The bucket policy exists only when the stack creates the bucket.
            let error = template_grants(&edited, &unprefixed_generated_bucket())
                .err()
                .with_context(|| format!("the edit adding {named} was accepted"))?;
            ensure!(
                matches!(error, PolicyError::Unsupported { .. }) && error.to_string().contains(named),
                "the edit adding {named}: {error}"
            );
            println!("refused as it should be: {error}");
        }
        Ok(())
    })
    .await
}

/// The checks have teeth: a template that lets backtest jobs write and the validator invoke
/// the miss-handler fails exactly the checks of those calls, and moto, given the widened
/// policies, really lets the calls through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_granting_too_much_fails_the_checks() -> anyhow::Result<()> {
    if skipped("a_template_granting_too_much_fails_the_checks") {
        return Ok(());
    }
    bounded(async {
        let tools = Tools::locate()?;
        let mut template = load_template(&tools).await?;
        push(
            &mut template,
            "/Resources/BacktestReadOnlyPolicy/Properties/PolicyDocument/Statement/0/Action",
            json!("s3:PutObject"),
        );
        push(
            &mut template,
            "/Resources/ObjectValidatorFunction/Properties/Policies/0/Statement",
            json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
                   "Resource": {"Fn::GetAtt": ["MissHandlerFunction", "Arn"]}}),
        );
        let run = run_checks(&tools, &template, &prefixed()).await?;
        let wanted = [
            (BACKTEST, "s3 put e2e/cache/v1/iam/new.parquet "),
            (
                BACKTEST,
                "s3 copy e2e/cache/v1/iam/seed.parquet (a version) to ",
            ),
            (
                VALIDATOR,
                "invoke arn:aws:lambda:us-east-1:123456789012:function:miss-handler:",
            ),
        ];
        for (principal, call) in wanted {
            ensure!(
                run.failures.iter().any(|f| f.starts_with(principal)
                    && f.contains(call)
                    && f.contains("expected denied, template allowed, moto allowed")),
                "no failure of {principal} {call}: {:#?}",
                run.failures
            );
        }
        ensure!(run.failures.len() == wanted.len(), "{:#?}", run.failures);
        Ok(())
    })
    .await
}

fn set(template: &mut Value, pointer: &str, key: &str, value: Value) {
    template
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("the template has no {pointer}"))[key] = value;
}

fn push(template: &mut Value, pointer: &str, value: Value) {
    template
        .pointer_mut(pointer)
        .and_then(Value::as_array_mut)
        .unwrap_or_else(|| panic!("the template has no list at {pointer}"))
        .push(value);
}

fn grant<'g>(grants: &'g [Grants], principal: &str) -> anyhow::Result<&'g Grants> {
    grants
        .iter()
        .find(|g| g.principal == principal)
        .with_context(|| format!("the template grants {principal} nothing"))
}

fn statement<'g>(
    grants: &'g Grants,
    sid: &str,
) -> anyhow::Result<&'g cachefill_e2e::iam::Statement> {
    grants
        .policies
        .iter()
        .flat_map(|p| &p.statements)
        .find(|s| s.sid.as_deref() == Some(sid))
        .with_context(|| format!("{} has no statement {sid}", grants.principal))
}

/// One call of one principal, and what the template is meant to let it do.
struct Check {
    principal: &'static str,
    call: Call,
    expect: Verdict,
}

/// The keys the checks use, under one deployment's layout.
struct Seeded {
    bucket: String,
    /// `<prefix>/<version>/`.
    root: String,
    /// The same prefix, another version.
    other_version: String,
    /// `<prefix>/_audit/`.
    audit: String,
    seed: String,
    seed_version: String,
    deletable: String,
}

async fn enforced(deployment: Deployment) -> anyhow::Result<()> {
    let started = Instant::now();
    let tools = Tools::locate()?;
    let template = load_template(&tools).await?;
    let run = run_checks(&tools, &template, &deployment).await?;
    ensure!(
        run.failures.is_empty(),
        "{} of {} checks failed (a template verdict other than the expected one is the \
         template's doing; a moto answer other than the predicted one, the harness's model of \
         moto):\n{}",
        run.failures.len(),
        run.checks,
        run.failures.join("\n")
    );
    println!(
        "{} checks, {} of them enforced by moto",
        run.checks, run.enforced_by_moto
    );
    products_work_as_their_principals(&run.iam, &run.seeded, &run.layout).await?;
    println!("done in {:?}", started.elapsed());
    Ok(())
}

/// What [`run_checks`] found, and the moto it ran on.
struct Run {
    iam: IamMoto,
    seeded: Seeded,
    layout: KeyLayout,
    checks: usize,
    enforced_by_moto: usize,
    failures: Vec<String>,
}

/// Resolve `template` for `deployment`, start moto with its policies, seed the buckets and
/// make every call of [`matrix`] as its principal.
async fn run_checks(
    tools: &Tools,
    template: &Value,
    deployment: &Deployment,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let resolver = Resolver::new(template, deployment)?;
    let bucket = resolver.output("BucketName")?;
    let prefix = deployment.parameters["CachePrefix"].clone();
    let version = deployment.parameters["CacheVersion"].clone();
    let layout = KeyLayout::new(&prefix, &version);
    let grants = template_grants(template, deployment)?;
    for grant in &grants {
        let documents: Vec<Value> = grant.policies.iter().map(Policy::to_json).collect();
        println!(
            "{} ({}): {}",
            grant.principal,
            grant.logical_id,
            Value::Array(documents)
        );
    }
    let secrets = [
        (
            SECRET.to_string(),
            r#"{"POLYGON_API_KEY": "pk-iam-check"}"#.to_string(),
        ),
        (OTHER_SECRET.to_string(), "{}".to_string()),
    ];
    let iam = IamMoto::start(tools, REGION, &grants, &secrets).await?;
    println!(
        "moto up and set up in {:?} ({})",
        started.elapsed(),
        iam.log_dir().display()
    );
    authentication_is_enforced(&iam, &bucket).await?;

    iam.create_bucket(&bucket).await?;
    iam.create_bucket(OTHER_BUCKET).await?;
    let admin = iam.store(iam.admin(), &bucket).await;
    let root = format!("{}/", layout.root());
    let other_version = format!("{}/", KeyLayout::new(&prefix, "v-other").root());
    let audit = if prefix.is_empty() {
        "_audit/".to_string()
    } else {
        format!("{prefix}/_audit/")
    };
    let seed = format!("{root}iam/seed.parquet");
    let body = || bytes::Bytes::from_static(b"seed");
    let first = admin.put(&seed, body(), PutOptions::default()).await?;
    admin.put(&seed, body(), PutOptions::default()).await?;
    let deletable = format!("{root}iam/deletable.parquet");
    for key in [
        &deletable,
        &format!("{other_version}iam/seed.parquet"),
        &format!("{audit}seed.json"),
    ] {
        admin.put(key, body(), PutOptions::default()).await?;
    }
    iam.store(iam.admin(), OTHER_BUCKET)
        .await
        .put(&seed, body(), PutOptions::default())
        .await?;
    let seeded = Seeded {
        bucket,
        root,
        other_version,
        audit,
        seed,
        seed_version: first.version_id.context("the bucket is versioned")?,
        deletable,
    };

    let checks = matrix(deployment, &iam, &seeded);
    let mut failures = Vec::new();
    let mut enforced_by_moto = 0;
    for check in &checks {
        let grant = grant(&grants, check.principal)?;
        let exact = decide_all(
            &grant.policies,
            &check.call.iam_requests(),
            Conditions::Evaluated,
        );
        let moto_policies: Vec<Policy> = grant
            .policies
            .iter()
            .map(moto_dialect)
            .collect::<Result<_, _>>()?;
        let predicted = decide_all(
            &moto_policies,
            &check.call.moto_requests(),
            Conditions::Ignored,
        );
        let answered = perform(&iam, iam.keys(check.principal), &check.call).await;
        // moto judges a call when its model of the policies agrees with IAM's, and wholly
        // when it authorizes every request IAM does (not so for a copy's source, or the
        // listing that turns a missing key's 403 into a 404).
        let by_moto = predicted == exact;
        let wholly = check.call.moto_requests().len() == check.call.iam_requests().len();
        enforced_by_moto += usize::from(by_moto && wholly && answered == Ok(predicted));
        let line = format!(
            "{:<16} {}: expected {}, template {}, moto {} ({})",
            check.principal,
            check.call,
            check.expect,
            exact,
            answered
                .as_ref()
                .map_or_else(|e| e.clone(), Verdict::to_string),
            match (by_moto, wholly) {
                (true, true) => "enforced by moto",
                (true, false) => "enforced by moto in part, the rest judged on the template",
                (false, _) => "beyond moto: judged on the template",
            },
        );
        println!("{line}");
        if exact != check.expect || answered != Ok(predicted) {
            failures.push(line);
        }
    }
    Ok(Run {
        iam,
        seeded,
        layout,
        checks: checks.len(),
        enforced_by_moto,
        failures,
    })
}

/// A key moto does not know is refused: moto authenticates (and so authorizes) every request.
async fn authentication_is_enforced(iam: &IamMoto, bucket: &str) -> anyhow::Result<()> {
    let stranger = Keys {
        access_key_id: "AKIAIAMCHECKSTRANGER".to_string(),
        secret_access_key: "not-a-secret".to_string(),
        session_token: None,
    };
    let answer = iam
        .s3(&stranger)
        .await
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await;
    match answer {
        Err(e) if e.code() == Some("InvalidAccessKeyId") => Ok(()),
        other => bail!("moto does not authenticate requests: an unknown key got {other:?}"),
    }
}

fn matrix(deployment: &Deployment, iam: &IamMoto, k: &Seeded) -> Vec<Check> {
    use Verdict::{Allowed as A, Denied as D};
    let s3 = |bucket: &str, op: S3Op| Call::S3 {
        bucket: bucket.to_string(),
        op,
    };
    let main = |op: S3Op| s3(&k.bucket, op);
    let key = |k: &str| k.to_string();
    let v = || Some(k.seed_version.clone());
    let invoke = |name: &str| Call::Invoke {
        function_arn: deployment.function_arn(name),
    };
    let secret = |name: &str| Call::GetSecret {
        arn: iam.secret_arn(name).to_string(),
    };
    let in_root = |name: &str| format!("{}iam/{name}", k.root);
    let check = |principal, expect, call| Check {
        principal,
        call,
        expect,
    };
    vec![
        // Backtest jobs read the version root and invoke the miss-handler; nothing else.
        check(
            BACKTEST,
            A,
            main(S3Op::Get {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(
            BACKTEST,
            A,
            main(S3Op::Get {
                key: key(&k.seed),
                version: v(),
            }),
        ),
        check(BACKTEST, A, main(S3Op::Head { key: key(&k.seed) })),
        check(
            BACKTEST,
            A,
            main(S3Op::GetMissing {
                key: in_root("missing.parquet"),
            }),
        ),
        check(
            BACKTEST,
            A,
            main(S3Op::List {
                prefix: key(&k.root),
            }),
        ),
        check(BACKTEST, A, invoke(MISS_HANDLER)),
        check(
            BACKTEST,
            D,
            main(S3Op::Put {
                key: in_root("new.parquet"),
            }),
        ),
        check(
            BACKTEST,
            D,
            main(S3Op::Delete {
                key: key(&k.deletable),
            }),
        ),
        check(
            BACKTEST,
            D,
            main(S3Op::PutTags {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(
            BACKTEST,
            D,
            main(S3Op::PutTags {
                key: key(&k.seed),
                version: v(),
            }),
        ),
        check(
            BACKTEST,
            D,
            main(S3Op::GetTags {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(
            BACKTEST,
            D,
            main(S3Op::Copy {
                from: key(&k.seed),
                version: v(),
                to: in_root("copy.parquet"),
            }),
        ),
        check(BACKTEST, D, main(S3Op::ListVersions { key: key(&k.seed) })),
        check(
            BACKTEST,
            D,
            main(S3Op::Get {
                key: format!("{}iam/seed.parquet", k.other_version),
                version: None,
            }),
        ),
        check(
            BACKTEST,
            D,
            main(S3Op::List {
                prefix: key(&k.other_version),
            }),
        ),
        check(
            BACKTEST,
            D,
            main(S3Op::List {
                prefix: String::new(),
            }),
        ),
        check(
            BACKTEST,
            D,
            s3(
                OTHER_BUCKET,
                S3Op::Get {
                    key: key(&k.seed),
                    version: None,
                },
            ),
        ),
        check(BACKTEST, D, invoke(VALIDATOR)),
        check(BACKTEST, D, secret(SECRET)),
        // The miss-handler reads and writes its version root and reads its secret.
        check(
            MISS_HANDLER,
            A,
            main(S3Op::Get {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(MISS_HANDLER, A, main(S3Op::Head { key: key(&k.seed) })),
        check(
            MISS_HANDLER,
            A,
            main(S3Op::GetMissing {
                key: in_root("missing.parquet"),
            }),
        ),
        check(
            MISS_HANDLER,
            A,
            main(S3Op::Put {
                key: in_root("filled.parquet"),
            }),
        ),
        check(
            MISS_HANDLER,
            A,
            main(S3Op::List {
                prefix: key(&k.root),
            }),
        ),
        check(MISS_HANDLER, A, secret(SECRET)),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::Put {
                key: format!("{}iam/x.parquet", k.other_version),
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::Put {
                key: "outside/iam/x.parquet".to_string(),
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::Put {
                key: format!("{}x.json", k.audit),
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::Get {
                key: format!("{}iam/seed.parquet", k.other_version),
                version: None,
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::List {
                prefix: key(&k.other_version),
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::Delete {
                key: key(&k.deletable),
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::PutTags {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::Get {
                key: key(&k.seed),
                version: v(),
            }),
        ),
        check(
            MISS_HANDLER,
            D,
            main(S3Op::ListVersions { key: key(&k.seed) }),
        ),
        check(
            MISS_HANDLER,
            D,
            s3(
                OTHER_BUCKET,
                S3Op::Get {
                    key: key(&k.seed),
                    version: None,
                },
            ),
        ),
        check(
            MISS_HANDLER,
            D,
            s3(
                OTHER_BUCKET,
                S3Op::List {
                    prefix: key(&k.root),
                },
            ),
        ),
        check(MISS_HANDLER, D, secret(OTHER_SECRET)),
        check(MISS_HANDLER, D, invoke(MISS_HANDLER)),
        // The validator judges, tags, copies, restores and deletes in the version root and
        // writes audit records; it neither invokes the miss-handler nor reads the secret.
        check(
            VALIDATOR,
            A,
            main(S3Op::Get {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::Get {
                key: key(&k.seed),
                version: v(),
            }),
        ),
        check(VALIDATOR, A, main(S3Op::Head { key: key(&k.seed) })),
        check(
            VALIDATOR,
            A,
            main(S3Op::GetMissing {
                key: in_root("missing.parquet"),
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::GetTags {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::GetTags {
                key: key(&k.seed),
                version: v(),
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::PutTags {
                key: key(&k.seed),
                version: None,
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::PutTags {
                key: key(&k.seed),
                version: v(),
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::Put {
                key: in_root("restored.parquet"),
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::Copy {
                from: key(&k.seed),
                version: v(),
                to: format!("{}_quarantine/iam/seed.parquet", k.root),
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::Delete {
                key: key(&k.deletable),
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::Put {
                key: format!("{}x.json", k.audit),
            }),
        ),
        check(
            VALIDATOR,
            A,
            main(S3Op::List {
                prefix: key(&k.root),
            }),
        ),
        check(VALIDATOR, A, main(S3Op::ListVersions { key: key(&k.seed) })),
        check(
            VALIDATOR,
            D,
            main(S3Op::Get {
                key: format!("{}seed.json", k.audit),
                version: None,
            }),
        ),
        check(
            VALIDATOR,
            D,
            main(S3Op::Put {
                key: format!("{}iam/x.parquet", k.other_version),
            }),
        ),
        check(
            VALIDATOR,
            D,
            main(S3Op::Delete {
                key: format!("{}iam/seed.parquet", k.other_version),
            }),
        ),
        check(
            VALIDATOR,
            D,
            main(S3Op::ListVersions {
                key: format!("{}iam/seed.parquet", k.other_version),
            }),
        ),
        check(
            VALIDATOR,
            D,
            s3(
                OTHER_BUCKET,
                S3Op::Get {
                    key: key(&k.seed),
                    version: None,
                },
            ),
        ),
        check(VALIDATOR, D, invoke(MISS_HANDLER)),
        check(VALIDATOR, D, secret(SECRET)),
    ]
}

async fn perform(iam: &IamMoto, keys: &Keys, call: &Call) -> Result<Verdict, String> {
    match call {
        Call::S3 { bucket, op } => storage_verdict(op.run(&iam.store(keys, bucket).await).await),
        Call::Invoke { function_arn } => {
            let name = function_arn.rsplit(':').next().unwrap_or(function_arn);
            iam.invoke_verdict(keys, name).await
        }
        Call::GetSecret { arn } => secret_verdict(iam, keys, arn).await,
    }
}

async fn secret_verdict(iam: &IamMoto, keys: &Keys, secret_id: &str) -> Result<Verdict, String> {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
    use aws_sdk_secretsmanager::error::SdkError;
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(iam.endpoint())
        .region(Region::new(iam.region().to_string()))
        .credentials_provider(keys.credentials())
        .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    match client.get_secret_value().secret_id(secret_id).send().await {
        Ok(_) => Ok(Verdict::Allowed),
        Err(SdkError::ServiceError(e)) => match (e.raw().status().as_u16(), e.err().code()) {
            (_, Some("ResourceNotFoundException")) => Ok(Verdict::Allowed),
            (403, _) | (_, Some("AccessDeniedException")) => Ok(Verdict::Denied),
            (status, code) => Err(format!("answered {status} {code:?}")),
        },
        Err(other) => Err(aws_sdk_secretsmanager::error::DisplayErrorContext(other).to_string()),
    }
}

/// The product's own code under each principal's policy: the miss-handler's engine fills a
/// dataset, the object-validator judges what it wrote (tags, manifest, audit record), and a
/// backtest job reads the file but gets the storage seam's `AccessDenied` for every write.
async fn products_work_as_their_principals(
    iam: &IamMoto,
    k: &Seeded,
    layout: &KeyLayout,
) -> anyhow::Result<()> {
    let bucket = k.bucket.as_str();
    let engine = FillEngine::new(
        iam.store(iam.keys(MISS_HANDLER), bucket).await,
        SyntheticProvider::new(),
        EngineConfig::new(bucket, layout.clone()),
    );
    let request = FillRequest::from_json(
        &json!({"provider": "synthetic", "asset_type": "stock", "symbol": "SPY",
                "timespan": "day", "datastyle": "ohlc",
                "start": "2024-01-02", "end": "2024-01-31"})
        .to_string(),
    )
    .map_err(|e| anyhow!("{}", e.0))?;
    let answer = engine
        .fill(&request)
        .await
        .context("the miss-handler's fill under its own policy")?;
    ensure!(
        answer.status == FillStatus::Filled && answer.key.starts_with(&k.root),
        "{answer:?}"
    );
    println!("miss-handler filled {} ({} rows)", answer.key, answer.rows);

    let admin = iam.store(iam.admin(), bucket).await;
    let validator = Validator::new(
        iam.store(iam.keys(VALIDATOR), bucket).await,
        ValidatorConfig::new(bucket, layout.clone()),
    );
    let sidecar = format!("{}.meta.json", answer.key);
    for key in [&answer.key, &sidecar] {
        let head = admin.head(key, None).await?;
        let event = EventRecord::new(bucket, key.as_str())
            .with_version(head.version_id.clone(), Some(head.etag));
        let verdict = validator
            .judge(&event)
            .await
            .with_context(|| format!("the validator's judgement of {key} under its own policy"))?;
        ensure!(verdict.outcome == Outcome::Valid, "{key}: {verdict:?}");
        let tags = admin.get_tags(key, head.version_id.as_deref()).await?;
        ensure!(!tags.is_empty(), "the validator tagged no version of {key}");
    }
    let audit = admin.list(&k.audit).await?;
    let records = format!("{}dt=", k.audit);
    ensure!(
        audit.iter().any(|o| o.key.starts_with(&records)),
        "the validator wrote no audit record under {records}: {audit:?}"
    );
    println!(
        "object-validator judged {} and its sidecar valid",
        answer.key
    );

    let reader = iam.store(iam.keys(BACKTEST), bucket).await;
    let got = reader
        .get(&answer.key, answer.version_id.as_deref())
        .await?;
    ensure!(!got.bytes.is_empty());
    let tags = Tags::from([("tampered".to_string(), "yes".to_string())]);
    let writes = [
        (
            "put",
            reader
                .put(&answer.key, got.bytes.clone(), PutOptions::default())
                .await
                .map(drop),
        ),
        ("delete", reader.delete(&answer.key).await),
        ("put_tags", reader.put_tags(&answer.key, None, &tags).await),
        (
            "copy",
            reader
                .copy(&answer.key, None, &format!("{}iam/stolen.parquet", k.root))
                .await
                .map(drop),
        ),
    ];
    for (write, result) in writes {
        match result {
            Err(StorageError::AccessDenied { .. }) => {}
            other => bail!(
                "a backtest job's {write} of {} answered {other:?}",
                answer.key
            ),
        }
    }
    let still = admin.get(&answer.key, None).await?;
    ensure!(
        still.meta.version_id == answer.version_id,
        "the file changed: {:?}",
        still.meta
    );
    println!("backtest read {} and was refused every write", answer.key);
    Ok(())
}
