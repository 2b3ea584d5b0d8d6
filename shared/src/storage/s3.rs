//! [`ObjectStore`] on any S3 API (AWS S3, moto, MinIO), one S3 call per trait method.
//!
//! # How the client is configured
//!
//! [`build_client`] (and [`connect`], which wraps it) start from the standard AWS chain,
//! `aws_config::defaults(BehaviorVersion::latest())`, and override only what [`S3Config`] names:
//!
//! - **Credentials**: when both `access_key_id` and `secret_access_key` are given (with an
//!   optional `session_token`) they are used as static credentials; otherwise the standard
//!   chain applies (environment, shared profile files, web identity, ECS/IMDS — on Lambda, the
//!   function's role). A key id without a secret is ignored with a warning, never half-used.
//! - **Region**: `region` when given, else the chain's (`AWS_REGION`, profile, IMDS).
//! - **Endpoint**: `endpoint_url` when given (the settings fill it from `AWS_ENDPOINT_URL_S3`
//!   / `AWS_ENDPOINT_URL` as the SDKs do). A custom endpoint also switches to path-style addressing
//!   (`http://host/bucket/key`), which S3-compatible servers such as moto and MinIO need
//!   because they do not serve `bucket.host` names.
//!
//! Build the client once per process (Lambda init, client start) and clone the store: clones
//! share the connection pool and the credentials cache.
//!
//! # Errors
//!
//! S3 answers are mapped to [`StorageError`] by their HTTP status and error code, never by
//! message text; see [`S3Store`] for the table.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime as SdkDateTime};
use aws_sdk_s3::types::{MetadataDirective, Tag, Tagging};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use crate::settings::S3Config;
use crate::settings::Secret;

use super::{
    GetResult, Metadata, ObjectMeta, ObjectStore, PutMode, PutOptions, PutResult, Result,
    StorageError, Tags, VersionInfo, check_key,
};

/// Build an S3 client from the standard AWS chain plus the overrides in `config`.
pub async fn build_client(config: &S3Config) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = non_empty(config.region.as_deref()) {
        loader = loader.region(Region::new(region.to_string()));
    }
    match (
        non_empty(config.access_key_id.as_deref()),
        non_empty(config.secret_access_key.as_ref().map(Secret::expose)),
    ) {
        (Some(key_id), Some(secret)) => {
            let credentials = Credentials::new(
                key_id,
                secret,
                non_empty(config.session_token.as_ref().map(Secret::expose)).map(str::to_string),
                None,
                "cachefill-static",
            );
            loader = loader.credentials_provider(credentials);
        }
        (None, None) => {}
        _ => tracing::warn!(
            "only one of the S3 access key id and secret access key is set; \
             using the standard AWS credential chain instead"
        ),
    }
    let endpoint = non_empty(config.endpoint_url.as_deref());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk_config = loader.load().await;
    let mut s3_config = aws_sdk_s3::config::Builder::from(&sdk_config);
    // S3 stand-ins (moto, MinIO) answer path-style requests only.
    if endpoint.is_some() {
        s3_config = s3_config.force_path_style(true);
    }
    Client::from_conf(s3_config.build())
}

/// Build a client with [`build_client`] and wrap it for `bucket`.
pub async fn connect(bucket: impl Into<String>, config: &S3Config) -> S3Store {
    S3Store::new(build_client(config).await, bucket)
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// One bucket of an S3 API, as an [`ObjectStore`].
///
/// Errors map by meaning:
///
/// | S3 answer | [`StorageError`] |
/// |---|---|
/// | 404 `NoSuchKey` / `NotFound` / `NoSuchVersion` | `NotFound` |
/// | 400 `InvalidArgument` or 405 (delete marker) when a version id was named | `NotFound` |
/// | 412 `PreconditionFailed`, 409 `ConditionalRequestConflict` | `PreconditionFailed` |
/// | 404 on a PUT with `If-Match` (the object is gone) | `PreconditionFailed` |
/// | 403 / `AccessDenied` | `AccessDenied` |
/// | 5xx, 429, `SlowDown`, `RequestTimeout`, timeouts, connection failures | `Unavailable` |
/// | anything else, including 404 `NoSuchBucket` | `Other`, with the code and message |
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client's own Debug walks its whole config; the bucket and region say enough.
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("region", &self.client.config().region().map(|r| r.as_ref()))
            .finish_non_exhaustive()
    }
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        check_key(key)?;
        let call = Call::read("get", key, version);
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| call.error(e))?;
        let etag = call.required("ETag", out.e_tag())?;
        let last_modified = call.time(out.last_modified())?;
        let metadata = lower_case_keys(out.metadata());
        let version_id = out.version_id().or(version).map(str::to_string);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable {
                operation: call.operation,
                key: key.to_string(),
                message: format!("reading the body failed: {}", DisplayErrorContext(&e)),
            })?
            .into_bytes();
        Ok(GetResult {
            meta: ObjectMeta {
                key: key.to_string(),
                size: bytes.len() as u64,
                etag,
                version_id,
                last_modified,
                metadata,
            },
            bytes,
            sha256: None,
        })
    }

    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        check_key(key)?;
        let call = Call::read("head", key, version);
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| call.error(e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: size(out.content_length()),
            etag: call.required("ETag", out.e_tag())?,
            version_id: out.version_id().or(version).map(str::to_string),
            last_modified: call.time(out.last_modified())?,
            metadata: lower_case_keys(out.metadata()),
        })
    }

    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        check_key(key)?;
        let mut call = Call::new("put", key);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_content_type(options.content_type)
            .set_metadata(
                (!options.metadata.is_empty())
                    .then(|| options.metadata.into_iter().collect::<HashMap<_, _>>()),
            );
        match options.mode {
            PutMode::Overwrite => {}
            PutMode::IfAbsent => request = request.if_none_match("*"),
            PutMode::IfMatch(etag) => {
                call.if_match = true;
                request = request.if_match(etag);
            }
        }
        let out = request.send().await.map_err(|e| call.error(e))?;
        Ok(PutResult {
            etag: call.required("ETag", out.e_tag())?,
            version_id: out.version_id().map(str::to_string),
        })
    }

    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        check_key(from)?;
        check_key(to)?;
        // A missing source is the NotFound callers care about, so errors name `from`.
        let call = Call::read("copy", from, from_version);
        let out = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(copy_source(&self.bucket, from, from_version))
            .metadata_directive(MetadataDirective::Copy)
            .send()
            .await
            .map_err(|e| call.error(e))?;
        let etag = out.copy_object_result().and_then(|r| r.e_tag());
        Ok(PutResult {
            etag: call.required("ETag", etag)?,
            version_id: out.version_id().map(str::to_string),
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let call = Call::new("delete", key);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // S3 itself answers 204 for a missing key; some compatible servers say 404.
            Err(e) => match call.error(e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let call = Call::new("list", prefix);
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| call.error(e))?;
            for object in page.contents() {
                let key = call.required("Key", object.key())?;
                objects.push(ObjectMeta {
                    etag: call.required("ETag", object.e_tag())?,
                    size: size(object.size()),
                    version_id: None,
                    last_modified: call.time(object.last_modified())?,
                    metadata: Metadata::new(),
                    key,
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>> {
        check_key(key)?;
        let call = Call::new("list_versions", key);
        let mut versions = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| call.error(e))?;
            // Keys come sorted, so once a longer key sharing the prefix shows up (`x.parquet`
            // then `x.parquet.meta.json`), every version of `key` itself has been seen.
            let mut past_key = false;
            for m in page.delete_markers() {
                if m.key() != Some(key) {
                    past_key |= m.key() > Some(key);
                    continue;
                }
                versions.push(VersionInfo {
                    version_id: call.required("VersionId", m.version_id())?,
                    etag: String::new(),
                    size: 0,
                    last_modified: call.time(m.last_modified())?,
                    is_latest: m.is_latest() == Some(true),
                    is_delete_marker: true,
                });
            }
            for v in page.versions() {
                if v.key() != Some(key) {
                    past_key |= v.key() > Some(key);
                    continue;
                }
                versions.push(VersionInfo {
                    version_id: call.required("VersionId", v.version_id())?,
                    etag: call.required("ETag", v.e_tag())?,
                    size: size(v.size()),
                    last_modified: call.time(v.last_modified())?,
                    is_latest: v.is_latest() == Some(true),
                    is_delete_marker: false,
                });
            }
            if past_key || page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        // The SDK splits S3's single newest-first sequence into versions and delete markers;
        // the latest flag and the time put them back together. A stable sort keeps S3's order
        // within each list, and on a timestamp tie (servers such as moto list whole seconds)
        // the delete marker, pushed first, wins: a delete usually follows the write it hides.
        versions.sort_by(|a, b| {
            b.is_latest
                .cmp(&a.is_latest)
                .then(b.last_modified.cmp(&a.last_modified))
        });
        Ok(versions)
    }

    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags> {
        check_key(key)?;
        let call = Call::read("get_tags", key, version);
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| call.error(e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()> {
        check_key(key)?;
        let call = Call::read("put_tags", key, version);
        let tag_set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .and_then(|set| Tagging::builder().set_tag_set(Some(set)).build())
            .map_err(|e| call.other(format!("building the tag set failed: {e}")))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .tagging(tag_set)
            .send()
            .await
            .map_err(|e| call.error(e))?;
        Ok(())
    }
}

/// What a failed call was doing, so its error can be read in context.
#[derive(Debug, Clone, Copy)]
struct Call<'a> {
    operation: &'static str,
    key: &'a str,
    /// A version id was named, so "no such version" answers mean NotFound.
    by_version: bool,
    /// A PUT with `If-Match`, where a missing object means the condition failed.
    if_match: bool,
}

/// The meaning of an S3 error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    NotFound,
    PreconditionFailed,
    AccessDenied,
    Unavailable,
    Other,
}

impl<'a> Call<'a> {
    fn new(operation: &'static str, key: &'a str) -> Self {
        Call {
            operation,
            key,
            by_version: false,
            if_match: false,
        }
    }

    fn read(operation: &'static str, key: &'a str, version: Option<&str>) -> Self {
        Call {
            by_version: version.is_some(),
            ..Call::new(operation, key)
        }
    }

    fn error<E>(&self, err: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let meaning = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Meaning::Unavailable,
            SdkError::ConstructionFailure(_) => Meaning::Other,
            _ => self.classify(status, err.code()),
        };
        let message = match (err.code(), err.message()) {
            (Some(code), Some(text)) => format!("{code}: {text}"),
            (Some(code), None) => code.to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        let message = match status {
            Some(status) => format!("{message} (HTTP {status})"),
            None => message,
        };
        let key = self.key.to_string();
        match meaning {
            Meaning::NotFound => StorageError::NotFound { key },
            Meaning::PreconditionFailed => StorageError::PreconditionFailed { key },
            Meaning::AccessDenied => StorageError::AccessDenied { key, message },
            Meaning::Unavailable => StorageError::Unavailable {
                operation: self.operation,
                key,
                message,
            },
            Meaning::Other => self.other(message),
        }
    }

    /// Map an answer by status and code alone; HEAD answers carry no body, hence no code.
    fn classify(&self, status: Option<u16>, code: Option<&str>) -> Meaning {
        let code = code.unwrap_or_default();
        let status = status.unwrap_or_default();
        if status == 412 || code == "PreconditionFailed" || code == "ConditionalRequestConflict" {
            return Meaning::PreconditionFailed;
        }
        // A wrong bucket name is a configuration error, not a missing object.
        if code == "NoSuchBucket" {
            return Meaning::Other;
        }
        if status == 404 || matches!(code, "NoSuchKey" | "NotFound" | "NoSuchVersion") {
            return if self.if_match {
                Meaning::PreconditionFailed
            } else {
                Meaning::NotFound
            };
        }
        // S3 rejects a malformed version id with 400 and a delete-marker version with 405.
        if self.by_version
            && ((status == 400 && matches!(code, "" | "InvalidArgument"))
                || status == 405
                || code == "MethodNotAllowed")
        {
            return Meaning::NotFound;
        }
        if status == 403 || code == "AccessDenied" {
            return Meaning::AccessDenied;
        }
        if status >= 500
            || status == 429
            || matches!(
                code,
                "SlowDown"
                    | "ServiceUnavailable"
                    | "InternalError"
                    | "RequestTimeout"
                    | "Throttling"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
            )
        {
            return Meaning::Unavailable;
        }
        Meaning::Other
    }

    fn other(&self, message: String) -> StorageError {
        StorageError::Other {
            operation: self.operation,
            key: self.key.to_string(),
            message,
        }
    }

    /// A field S3 always sends; its absence means the server is not speaking S3.
    fn required(&self, field: &str, value: Option<&str>) -> Result<String> {
        value
            .map(str::to_string)
            .ok_or_else(|| self.other(format!("the answer has no {field}")))
    }

    fn time(&self, value: Option<&SdkDateTime>) -> Result<DateTime<Utc>> {
        value
            .and_then(to_chrono)
            .ok_or_else(|| self.other("the answer has no valid LastModified".to_string()))
    }
}

fn to_chrono(time: &SdkDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

fn size(length: Option<i64>) -> u64 {
    length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn lower_case_keys(metadata: Option<&HashMap<String, String>>) -> Metadata {
    metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// The `x-amz-copy-source` value: `bucket/key`, percent-encoded except `/`, plus the version.
fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut source = percent_encode(&format!("{bucket}/{key}"), true);
    if let Some(version) = version {
        source.push_str("?versionId=");
        source.push_str(&percent_encode(version, false));
    }
    source
}

/// RFC 3986: everything but unreserved characters becomes `%XX`.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// [`ENCODED`], keeping `/` (the separators of a key).
const ENCODED_KEEPING_SLASH: &AsciiSet = &ENCODED.remove(b'/');

fn percent_encode(text: &str, keep_slash: bool) -> String {
    let set = if keep_slash {
        ENCODED_KEEPING_SLASH
    } else {
        ENCODED
    };
    utf8_percent_encode(text, set).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(call: Call<'_>, status: u16, code: Option<&str>) -> Meaning {
        call.classify(Some(status), code)
    }

    #[test]
    fn copy_source_encodes_everything_but_slashes() {
        assert_eq!(
            copy_source("bkt", "a b/c+d/ü.parquet", None),
            "bkt/a%20b/c%2Bd/%C3%BC.parquet"
        );
        assert_eq!(
            copy_source("bkt", "k/x.tmp-1-ab", Some("3/L4kqtJl+cD=")),
            "bkt/k/x.tmp-1-ab?versionId=3%2FL4kqtJl%2BcD%3D"
        );
    }

    #[test]
    fn missing_objects_and_versions_are_not_found() {
        let get = Call::new("get", "k");
        assert_eq!(classify(get, 404, Some("NoSuchKey")), Meaning::NotFound);
        assert_eq!(classify(get, 404, None), Meaning::NotFound);
        let by_version = Call::read("head", "k", Some("v"));
        assert_eq!(
            classify(by_version, 404, Some("NoSuchVersion")),
            Meaning::NotFound
        );
        assert_eq!(
            classify(by_version, 400, Some("InvalidArgument")),
            Meaning::NotFound
        );
        assert_eq!(classify(by_version, 400, None), Meaning::NotFound);
        assert_eq!(classify(by_version, 405, None), Meaning::NotFound);
        // Without a version id a 400 is a real request error, not a missing object.
        assert_eq!(classify(get, 400, Some("InvalidArgument")), Meaning::Other);
    }

    #[test]
    fn lost_conditions_are_precondition_failures() {
        let put = Call::new("put", "k");
        assert_eq!(
            classify(put, 412, Some("PreconditionFailed")),
            Meaning::PreconditionFailed
        );
        assert_eq!(
            classify(put, 409, Some("ConditionalRequestConflict")),
            Meaning::PreconditionFailed
        );
        let put_if_match = Call {
            if_match: true,
            ..put
        };
        assert_eq!(
            classify(put_if_match, 404, Some("NoSuchKey")),
            Meaning::PreconditionFailed
        );
    }

    #[test]
    fn other_answers_map_by_meaning() {
        let call = Call::new("get", "k");
        assert_eq!(
            classify(call, 403, Some("AccessDenied")),
            Meaning::AccessDenied
        );
        assert_eq!(classify(call, 403, None), Meaning::AccessDenied);
        assert_eq!(classify(call, 503, Some("SlowDown")), Meaning::Unavailable);
        assert_eq!(
            classify(call, 500, Some("InternalError")),
            Meaning::Unavailable
        );
        assert_eq!(
            classify(call, 400, Some("RequestTimeout")),
            Meaning::Unavailable
        );
        assert_eq!(classify(call, 404, Some("NoSuchBucket")), Meaning::Other);
        assert_eq!(
            classify(call, 409, Some("OperationAborted")),
            Meaning::Other
        );
    }

    #[test]
    fn sdk_times_convert_to_chrono() {
        let time = SdkDateTime::from_secs_and_nanos(1_726_493_400, 123_000_000);
        assert_eq!(
            to_chrono(&time).unwrap().to_rfc3339(),
            "2024-09-16T13:30:00.123+00:00"
        );
    }

    #[test]
    fn debug_output_hides_credentials() {
        let config = S3Config {
            access_key_id: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some(Secret::new("very-secret")),
            session_token: Some(Secret::new("token-value")),
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("token-value"), "{shown}");
        assert_eq!(shown.matches("<redacted>").count(), 2, "{shown}");
    }
}
