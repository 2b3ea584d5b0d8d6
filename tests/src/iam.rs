//! The SAM template's IAM policies, resolved for one test deployment and enforced by moto.
//!
//! [`load_template`] reads `infra/template.yaml` with cfn-lint's own parser (the one
//! `scripts/check-infra` runs), which turns short tags such as `!Sub` into `Fn::Sub` objects.
//! [`Resolver`] evaluates the intrinsic functions for a [`Deployment`] and refuses every
//! construct it does not know, so a template change can never pass as an unresolved value;
//! [`template_grants`] collects what each principal is granted and refuses grants it cannot
//! attribute (a function `Role`, a managed policy attached by the template, an `Allow` in a
//! bucket policy, any other IAM resource).
//!
//! [`decide`] judges a [`Request`] by IAM's rules for the subset [`Policy::parse`] accepts:
//! an explicit deny wins, else any allow; `*` and `?` wildcards; `StringEquals` and
//! `StringLike` conditions. It is the reference where moto cannot judge, because moto 5
//! (`moto/iam/access_control.py`) authorizes S3 calls against the object or bucket ARN but
//! every other service's calls against the resource `*`, names actions after API operations
//! (`lambda:Invoke`, not `lambda:InvokeFunction`), reads `?` in a resource as a regular
//! expression (a 500 for `-??????`), and evaluates no condition of an identity policy.
//! [`moto_dialect`] rewrites a policy into what moto can enforce, and [`Call::moto_requests`]
//! says what moto authorizes for a call, so a test predicts moto's answer exactly and knows
//! which of its checks moto enforces.
//!
//! [`IamMoto`] starts moto with `INITIAL_NO_AUTH_ACTION_COUNT`: the first three requests make
//! an administrator and its access key, and every request after them is authenticated and
//! authorized against the policies of its access key. Each principal is a role holding its
//! policies, used through credentials from `sts:AssumeRole`, as a Lambda function's role is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use cachefill_core::settings::Secret;
use cachefill_core::storage::s3::{S3Config, S3Store, build_client};
use cachefill_core::storage::{ObjectStore, PutOptions, StorageError, Tags};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{Result, StackError};
use crate::moto::Moto;
use crate::python::run_python;
use crate::tools::{Tools, workspace_root};

/// moto's default account, which its ARNs carry.
pub const ACCOUNT_ID: &str = "123456789012";
pub const PARTITION: &str = "aws";
/// The only policy language version whose semantics [`decide`] implements.
pub const POLICY_VERSION: &str = "2012-10-17";
/// Requests moto serves before it authorizes any: the administrator's user, its policy and
/// its access key ([`IamMoto::start`]).
pub const UNAUTHENTICATED_SETUP_CALLS: u32 = 3;
/// Action names moto checks in place of IAM's: moto names an action after the API operation.
const MOTO_ACTION_NAMES: &[(&str, &str)] = &[("lambda:InvokeFunction", "lambda:Invoke")];

/// The template's parameters as one deployment sets them, and the names the stack would give
/// what the template leaves to CloudFormation.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Parameter overrides; the rest take the template's defaults.
    pub parameters: BTreeMap<String, String>,
    pub stack_name: String,
    pub region: String,
    /// The physical name of each function, by logical id (`Ref`, `Fn::GetAtt …Arn`).
    pub function_names: BTreeMap<String, String>,
    /// The principal each granting resource stands for, by logical id.
    pub principals: BTreeMap<String, String>,
}

impl Deployment {
    pub fn new(region: &str, parameters: &[(&str, &str)]) -> Deployment {
        Deployment {
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            stack_name: "cachefill-e2e".to_string(),
            region: region.to_string(),
            function_names: BTreeMap::new(),
            principals: BTreeMap::new(),
        }
    }

    /// Name the function `logical_id` deploys as `name`.
    pub fn function(mut self, logical_id: &str, name: &str) -> Deployment {
        self.function_names
            .insert(logical_id.to_string(), name.to_string());
        self
    }

    /// Name the principal whose grants resource `logical_id` holds.
    pub fn principal(mut self, logical_id: &str, principal: &str) -> Deployment {
        self.principals
            .insert(logical_id.to_string(), principal.to_string());
        self
    }

    /// `arn:aws:lambda:<region>:<account>:function:<name>`.
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:{PARTITION}:lambda:{}:{ACCOUNT_ID}:function:{name}",
            self.region
        )
    }
}

/// Why a template or policy could not be turned into grants.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A construct the resolver or the evaluator does not model: extend `tests/src/iam.rs`
    /// before trusting a test of it.
    #[error("{path}: {what} is not understood by tests/src/iam.rs; teach it what this means")]
    Unsupported { path: String, what: String },
    /// A value of the wrong shape, or a reference to nothing.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn unsupported(path: &str, what: impl Into<String>) -> PolicyError {
    PolicyError::Unsupported {
        path: path.to_string(),
        what: what.into(),
    }
}

fn invalid(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

/// `infra/template.yaml` as JSON, parsed by cfn-lint from the project venv.
pub async fn load_template(tools: &Tools) -> Result<Value> {
    load_template_from(tools, &workspace_root().join("infra/template.yaml")).await
}

/// A SAM or CloudFormation template at `path` as JSON, short tags in their long form.
pub async fn load_template_from(tools: &Tools, path: &Path) -> Result<Value> {
    const SCRIPT: &str = r#"
import json, sys
from cfnlint.decode import decode
template, problems = decode(sys.argv[1])
if problems:
    sys.exit("\n".join(str(p) for p in problems))
print(json.dumps(template))
"#;
    let out = run_python(tools, SCRIPT, &[path]).await?;
    serde_json::from_str(&out).map_err(|e| {
        StackError::service(
            format!("reading {}", path.display()),
            format!("cfn-lint's JSON: {e}"),
        )
    })
}

/// The intrinsic functions of a template, evaluated for one [`Deployment`].
#[derive(Debug)]
pub struct Resolver<'a> {
    template: &'a Value,
    deployment: &'a Deployment,
    parameters: BTreeMap<String, Value>,
}

impl<'a> Resolver<'a> {
    /// Every parameter takes the deployment's value or the template's default; a value the
    /// template's `AllowedValues` excludes, or an override of an undeclared parameter, is an
    /// error.
    pub fn new(template: &'a Value, deployment: &'a Deployment) -> Result<Self, PolicyError> {
        let declared = template
            .get("Parameters")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("Parameters", "the template declares no parameters"))?;
        if let Some(name) = deployment
            .parameters
            .keys()
            .find(|name| !declared.contains_key(*name))
        {
            return Err(invalid(
                "Parameters",
                format!("the deployment sets {name}, which the template does not declare"),
            ));
        }
        let mut parameters = BTreeMap::new();
        for (name, declaration) in declared {
            let path = format!("Parameters.{name}");
            let given = match deployment.parameters.get(name) {
                Some(value) => Some(value.clone()),
                None => declaration.get("Default").map(scalar_text).transpose()?,
            };
            let Some(given) = given else { continue };
            if let Some(allowed) = declaration.get("AllowedValues").and_then(Value::as_array) {
                let allowed: Vec<String> =
                    allowed.iter().map(scalar_text).collect::<Result<_, _>>()?;
                if !allowed.contains(&given) {
                    return Err(invalid(&path, format!("{given:?} is not in {allowed:?}")));
                }
            }
            let value = match declaration.get("Type").and_then(Value::as_str) {
                Some("String" | "Number") => Value::String(given),
                Some("CommaDelimitedList") => Value::Array(
                    given
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ),
                other => return Err(unsupported(&path, format!("a parameter of type {other:?}"))),
            };
            parameters.insert(name.clone(), value);
        }
        Ok(Resolver {
            template,
            deployment,
            parameters,
        })
    }

    /// `value` with every intrinsic function evaluated; `None` for `AWS::NoValue`, which also
    /// removes the list item or object member it stands in.
    pub fn resolve(&self, value: &Value, path: &str) -> Result<Option<Value>, PolicyError> {
        match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(item) = self.resolve(item, &format!("{path}[{i}]"))? {
                        out.push(item);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(map) => {
                if let Some((name, argument)) = single_entry(map)
                    && (name == "Ref" || name.starts_with("Fn::"))
                {
                    return self.intrinsic(name, argument, &format!("{path}.{name}"));
                }
                let mut out = Map::new();
                for (key, member) in map {
                    if let Some(member) = self.resolve(member, &format!("{path}.{key}"))? {
                        out.insert(key.clone(), member);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// [`Resolver::resolve`] of something that must be a string.
    pub fn resolve_string(&self, value: &Value, path: &str) -> Result<String, PolicyError> {
        match self.resolve(value, path)? {
            Some(Value::String(s)) => Ok(s),
            Some(Value::Number(n)) => Ok(n.to_string()),
            other => Err(invalid(path, format!("expected a string, found {other:?}"))),
        }
    }

    /// The value of the template's output `name`.
    pub fn output(&self, name: &str) -> Result<String, PolicyError> {
        let path = format!("Outputs.{name}.Value");
        let value = self
            .template
            .pointer(&format!("/Outputs/{name}/Value"))
            .ok_or_else(|| invalid(&path, "no such output"))?;
        self.resolve_string(value, &path)
    }

    /// Whether the resource is created: it has no `Condition`, or its condition holds.
    pub fn present(&self, resource: &Value, path: &str) -> Result<bool, PolicyError> {
        match resource.get("Condition") {
            None => Ok(true),
            Some(Value::String(name)) => self.condition(name, &format!("{path}.Condition")),
            Some(other) => Err(invalid(path, format!("Condition {other} is not a name"))),
        }
    }

    /// The template condition `name`.
    pub fn condition(&self, name: &str, path: &str) -> Result<bool, PolicyError> {
        let definition = self
            .template
            .pointer(&format!("/Conditions/{name}"))
            .ok_or_else(|| invalid(path, format!("no condition {name}")))?;
        self.truth(definition, &format!("Conditions.{name}"))
    }

    fn truth(&self, value: &Value, path: &str) -> Result<bool, PolicyError> {
        let (function, argument) = value
            .as_object()
            .and_then(single_entry)
            .ok_or_else(|| invalid(path, "a condition is one condition function"))?;
        let path = format!("{path}.{function}");
        match function.as_str() {
            "Fn::Equals" => {
                let [a, b] = arguments::<2>(argument, &path)?;
                let a = self.resolve(a, &path)?;
                let b = self.resolve(b, &path)?;
                match (a, b) {
                    (Some(a), Some(b)) => Ok(comparable(&a) == comparable(&b)),
                    _ => Err(invalid(&path, "AWS::NoValue in Fn::Equals")),
                }
            }
            "Fn::Not" => {
                let [inner] = arguments::<1>(argument, &path)?;
                Ok(!self.truth(inner, &path)?)
            }
            "Fn::And" | "Fn::Or" => {
                let items = argument
                    .as_array()
                    .ok_or_else(|| invalid(&path, "expected a list of conditions"))?;
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(self.truth(item, &path)?);
                }
                Ok(if function == "Fn::And" {
                    values.iter().all(|v| *v)
                } else {
                    values.iter().any(|v| *v)
                })
            }
            "Condition" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| invalid(&path, "expected a condition's name"))?;
                self.condition(name, &path)
            }
            other => Err(unsupported(
                &path,
                format!("the condition function {other}"),
            )),
        }
    }

    fn intrinsic(
        &self,
        name: &str,
        argument: &Value,
        path: &str,
    ) -> Result<Option<Value>, PolicyError> {
        match name {
            "Ref" => {
                let target = argument
                    .as_str()
                    .ok_or_else(|| invalid(path, "Ref takes a name"))?;
                self.reference(target, path)
            }
            "Fn::If" => {
                let [condition, yes, no] = arguments::<3>(argument, path)?;
                let condition = condition
                    .as_str()
                    .ok_or_else(|| invalid(path, "Fn::If takes a condition's name first"))?;
                if self.condition(condition, path)? {
                    self.resolve(yes, &format!("{path}[1]"))
                } else {
                    self.resolve(no, &format!("{path}[2]"))
                }
            }
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Value::String(text) => (text.as_str(), None),
                    Value::Array(items) if items.len() == 2 => (
                        items[0]
                            .as_str()
                            .ok_or_else(|| invalid(path, "Fn::Sub takes a string first"))?,
                        Some(items[1].as_object().ok_or_else(|| {
                            invalid(path, "Fn::Sub takes a map of variables second")
                        })?),
                    ),
                    _ => return Err(invalid(path, "Fn::Sub takes a string or [string, map]")),
                };
                let mut values = BTreeMap::new();
                for (variable, value) in variables.into_iter().flatten() {
                    values.insert(
                        variable.clone(),
                        self.resolve_string(value, &format!("{path}.{variable}"))?,
                    );
                }
                self.substitute(text, &values, path)
                    .map(|s| Some(Value::String(s)))
            }
            "Fn::GetAtt" => {
                let (resource, attribute) = match argument {
                    Value::String(dotted) => dotted
                        .split_once('.')
                        .ok_or_else(|| invalid(path, "Fn::GetAtt takes Resource.Attribute"))?,
                    Value::Array(items) if items.len() == 2 => (
                        items[0].as_str().unwrap_or_default(),
                        items[1].as_str().unwrap_or_default(),
                    ),
                    _ => return Err(invalid(path, "Fn::GetAtt takes [resource, attribute]")),
                };
                self.attribute(resource, attribute, path).map(Some)
            }
            "Fn::Join" => {
                let [delimiter, items] = arguments::<2>(argument, path)?;
                let delimiter = delimiter
                    .as_str()
                    .ok_or_else(|| invalid(path, "Fn::Join takes a delimiter first"))?;
                let items = match self.resolve(items, path)? {
                    Some(Value::Array(items)) => items,
                    other => return Err(invalid(path, format!("Fn::Join of {other:?}"))),
                };
                let parts: Vec<String> = items.iter().map(scalar_text).collect::<Result<_, _>>()?;
                Ok(Some(Value::String(parts.join(delimiter))))
            }
            other => Err(unsupported(path, format!("the intrinsic function {other}"))),
        }
    }

    fn reference(&self, target: &str, path: &str) -> Result<Option<Value>, PolicyError> {
        let pseudo = |value: &str| Ok(Some(Value::String(value.to_string())));
        match target {
            "AWS::NoValue" => Ok(None),
            "AWS::Partition" => pseudo(PARTITION),
            "AWS::Region" => pseudo(&self.deployment.region),
            "AWS::AccountId" => pseudo(ACCOUNT_ID),
            "AWS::StackName" => pseudo(&self.deployment.stack_name),
            "AWS::URLSuffix" => pseudo("amazonaws.com"),
            pseudo if pseudo.starts_with("AWS::") => {
                Err(unsupported(path, format!("the pseudo parameter {pseudo}")))
            }
            name => {
                if let Some(value) = self.parameters.get(name) {
                    return Ok(Some(value.clone()));
                }
                let resource = self.resource(name, path)?;
                match resource_type(resource) {
                    "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
                        Ok(Some(Value::String(self.function_name(name, path)?)))
                    }
                    "AWS::S3::Bucket" => {
                        let bucket = resource
                            .pointer("/Properties/BucketName")
                            .ok_or_else(|| unsupported(path, "a bucket without BucketName"))?;
                        self.resolve_string(bucket, &format!("Resources.{name}.BucketName"))
                            .map(|s| Some(Value::String(s)))
                    }
                    other => Err(unsupported(
                        path,
                        format!("a Ref to a resource of type {other}"),
                    )),
                }
            }
        }
    }

    fn attribute(
        &self,
        logical_id: &str,
        attribute: &str,
        path: &str,
    ) -> Result<Value, PolicyError> {
        let resource = self.resource(logical_id, path)?;
        match (resource_type(resource), attribute) {
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => Ok(Value::String(
                self.deployment
                    .function_arn(&self.function_name(logical_id, path)?),
            )),
            (kind, attribute) => Err(unsupported(
                path,
                format!("Fn::GetAtt {logical_id}.{attribute} of a {kind}"),
            )),
        }
    }

    fn resource(&self, logical_id: &str, path: &str) -> Result<&'a Value, PolicyError> {
        self.template
            .pointer(&format!("/Resources/{logical_id}"))
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("{logical_id} is neither a parameter nor a resource"),
                )
            })
    }

    fn function_name(&self, logical_id: &str, path: &str) -> Result<String, PolicyError> {
        self.deployment
            .function_names
            .get(logical_id)
            .cloned()
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("the deployment names no function for {logical_id}"),
                )
            })
    }

    fn substitute(
        &self,
        text: &str,
        variables: &BTreeMap<String, String>,
        path: &str,
    ) -> Result<String, PolicyError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            // `${!Literal}` is the text `${Literal}`.
            if let Some(literal) = after.strip_prefix('!') {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| invalid(path, format!("unclosed ${{ in {text:?}")))?;
            let name = &after[..end];
            let value = if let Some(value) = variables.get(name) {
                value.clone()
            } else if let Some((resource, attribute)) = name.split_once('.') {
                scalar_text(&self.attribute(resource, attribute, path)?)?
            } else {
                match self.reference(name, path)? {
                    Some(value) => scalar_text(&value)
                        .map_err(|_| invalid(path, format!("${{{name}}} is not a string")))?,
                    None => return Err(invalid(path, format!("${{{name}}} is AWS::NoValue"))),
                }
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn single_entry(map: &Map<String, Value>) -> Option<(&String, &Value)> {
    (map.len() == 1).then(|| map.iter().next()).flatten()
}

fn arguments<'v, const N: usize>(
    value: &'v Value,
    path: &str,
) -> Result<[&'v Value; N], PolicyError> {
    let items = value
        .as_array()
        .filter(|items| items.len() == N)
        .ok_or_else(|| invalid(path, format!("expected a list of {N}")))?;
    Ok(std::array::from_fn(|i| &items[i]))
}

fn scalar_text(value: &Value) -> Result<String, PolicyError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(invalid("value", format!("{other} is not a scalar"))),
    }
}

/// CloudFormation compares parameters as strings: `"0"` equals `0`.
fn comparable(value: &Value) -> Value {
    scalar_text(value).map_or_else(|_| value.clone(), Value::String)
}

fn resource_type(resource: &Value) -> &str {
    resource
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// What the template grants one principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub principal: String,
    pub logical_id: String,
    /// A customer managed policy (attached to the principal's role), else the function
    /// role's inline policies.
    pub managed: bool,
    pub policies: Vec<Policy>,
}

/// The grants of every principal the deployment names, resolved from `template`. Refuses
/// what would grant these (or other) principals anything it cannot attribute.
pub fn template_grants(
    template: &Value,
    deployment: &Deployment,
) -> Result<Vec<Grants>, PolicyError> {
    let resolver = Resolver::new(template, deployment)?;
    if let Some(globals) = template.pointer("/Globals/Function") {
        for key in ["Policies", "Role", "PermissionsBoundary"] {
            if globals.get(key).is_some() {
                return Err(unsupported(
                    &format!("Globals.Function.{key}"),
                    "IAM settings in Globals",
                ));
            }
        }
    }
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("Resources", "the template has no resources"))?;
    let mut grants = Vec::new();
    for (logical_id, resource) in resources {
        let path = format!("Resources.{logical_id}");
        if !resolver.present(resource, &path)? {
            continue;
        }
        let principal = || {
            deployment
                .principals
                .get(logical_id)
                .cloned()
                .ok_or_else(|| {
                    invalid(
                        &path,
                        "grants a principal the tests do not know: name it in the Deployment",
                    )
                })
        };
        let properties = resource.get("Properties").unwrap_or(&Value::Null);
        match resource_type(resource) {
            "AWS::Serverless::Function" => {
                for key in ["Role", "PermissionsBoundary"] {
                    if properties.get(key).is_some() {
                        return Err(unsupported(
                            &format!("{path}.Properties.{key}"),
                            "a function's Role or PermissionsBoundary",
                        ));
                    }
                }
                let items = match properties.get("Policies") {
                    None => Vec::new(),
                    Some(Value::Array(items)) => items.iter().collect(),
                    Some(single) => vec![single],
                };
                let mut policies = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let item_path = format!("{path}.Properties.Policies[{i}]");
                    match resolver.resolve(item, &item_path)? {
                        None => {}
                        Some(document @ Value::Object(_))
                            if document.get("Statement").is_some() =>
                        {
                            policies.push(Policy::parse(&document, &item_path)?);
                        }
                        Some(Value::String(name)) => {
                            return Err(unsupported(
                                &item_path,
                                format!("the managed policy {name}"),
                            ));
                        }
                        Some(other) => {
                            return Err(unsupported(
                                &item_path,
                                format!("the SAM policy template {other}"),
                            ));
                        }
                    }
                }
                grants.push(Grants {
                    principal: principal()?,
                    logical_id: logical_id.clone(),
                    managed: false,
                    policies,
                });
            }
            "AWS::IAM::ManagedPolicy" => {
                for key in ["Roles", "Users", "Groups"] {
                    if properties.get(key).is_some() {
                        return Err(unsupported(
                            &format!("{path}.Properties.{key}"),
                            "a managed policy the template attaches itself",
                        ));
                    }
                }
                let document_path = format!("{path}.Properties.PolicyDocument");
                let document = properties
                    .get("PolicyDocument")
                    .ok_or_else(|| invalid(&document_path, "missing"))?;
                let document = resolver
                    .resolve(document, &document_path)?
                    .ok_or_else(|| invalid(&document_path, "AWS::NoValue"))?;
                grants.push(Grants {
                    principal: principal()?,
                    logical_id: logical_id.clone(),
                    managed: true,
                    policies: vec![Policy::parse(&document, &document_path)?],
                });
            }
            "AWS::S3::BucketPolicy" => {
                let document_path = format!("{path}.Properties.PolicyDocument");
                let document = properties
                    .get("PolicyDocument")
                    .map(|d| resolver.resolve(d, &document_path))
                    .transpose()?
                    .flatten()
                    .ok_or_else(|| invalid(&document_path, "missing"))?;
                let statements = match document.get("Statement") {
                    Some(Value::Array(items)) => items.clone(),
                    Some(single) => vec![single.clone()],
                    None => Vec::new(),
                };
                // A deny can only take away what the identity policies grant.
                if statements
                    .iter()
                    .any(|s| s.get("Effect") != Some(&json!("Deny")))
                {
                    return Err(unsupported(
                        &document_path,
                        "an Allow in a bucket policy (resource policies are not modelled)",
                    ));
                }
            }
            "AWS::Lambda::Permission" => {
                let principal = resolver.resolve_string(
                    properties.get("Principal").unwrap_or(&Value::Null),
                    &format!("{path}.Properties.Principal"),
                )?;
                if !principal.ends_with(".amazonaws.com") {
                    return Err(unsupported(
                        &path,
                        format!("a function permission for {principal}"),
                    ));
                }
            }
            kind if kind.starts_with("AWS::IAM::") || kind == "AWS::Lambda::Function" => {
                return Err(unsupported(&path, format!("a {kind} resource")));
            }
            _ => {}
        }
    }
    if let Some((logical_id, principal)) = deployment
        .principals
        .iter()
        .find(|(id, _)| !grants.iter().any(|g| &g.logical_id == *id))
    {
        return Err(invalid(
            &format!("Resources.{logical_id}"),
            format!("no grants for {principal}: the template has no such resource"),
        ));
    }
    Ok(grants)
}

/// An identity policy in the subset [`decide`] models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One key of one condition operator: the request's value of `key` must match one of
/// `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: Operator,
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringLike,
}

impl Operator {
    fn name(self) -> &'static str {
        match self {
            Operator::StringEquals => "StringEquals",
            Operator::StringLike => "StringLike",
        }
    }
}

impl Policy {
    /// A resolved policy document; every element, operator or value outside the modelled
    /// subset is [`PolicyError::Unsupported`].
    pub fn parse(document: &Value, path: &str) -> Result<Policy, PolicyError> {
        let map = document
            .as_object()
            .ok_or_else(|| invalid(path, "a policy document is an object"))?;
        for key in map.keys() {
            if !["Version", "Id", "Statement"].contains(&key.as_str()) {
                return Err(unsupported(
                    &format!("{path}.{key}"),
                    format!("the policy element {key}"),
                ));
            }
        }
        match map.get("Version").and_then(Value::as_str) {
            Some(POLICY_VERSION) => {}
            other => {
                return Err(unsupported(
                    &format!("{path}.Version"),
                    format!("policy version {other:?}"),
                ));
            }
        }
        let statements: Vec<&Value> = match map.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(single @ Value::Object(_)) => vec![single],
            _ => return Err(invalid(path, "Statement is an object or a list of them")),
        };
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| Statement::parse(s, &format!("{path}.Statement[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    /// The policy as a document IAM (and moto) reads.
    pub fn to_json(&self) -> Value {
        let statements: Vec<Value> = self
            .statements
            .iter()
            .map(|s| {
                let mut statement = Map::new();
                if let Some(sid) = &s.sid {
                    statement.insert("Sid".into(), json!(sid));
                }
                let effect = match s.effect {
                    Effect::Allow => "Allow",
                    Effect::Deny => "Deny",
                };
                statement.insert("Effect".into(), json!(effect));
                statement.insert("Action".into(), json!(s.actions));
                statement.insert("Resource".into(), json!(s.resources));
                if !s.conditions.is_empty() {
                    let mut operators = Map::new();
                    for c in &s.conditions {
                        operators
                            .entry(c.operator.name())
                            .or_insert_with(|| Value::Object(Map::new()))
                            .as_object_mut()
                            .expect("inserted as an object")
                            .insert(c.key.clone(), json!(c.values));
                    }
                    statement.insert("Condition".into(), Value::Object(operators));
                }
                Value::Object(statement)
            })
            .collect();
        json!({"Version": POLICY_VERSION, "Statement": statements})
    }
}

impl Statement {
    fn parse(value: &Value, path: &str) -> Result<Statement, PolicyError> {
        let map = value
            .as_object()
            .ok_or_else(|| invalid(path, "a statement is an object"))?;
        for key in map.keys() {
            if !["Sid", "Effect", "Action", "Resource", "Condition"].contains(&key.as_str()) {
                return Err(unsupported(
                    &format!("{path}.{key}"),
                    format!("the statement element {key}"),
                ));
            }
        }
        let effect = match map.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => return Err(invalid(&format!("{path}.Effect"), format!("{other:?}"))),
        };
        let list = |key: &str| -> Result<Vec<String>, PolicyError> {
            let element_path = format!("{path}.{key}");
            let values = strings(
                map.get(key)
                    .ok_or_else(|| invalid(&element_path, "missing"))?,
                &element_path,
            )?;
            if values.is_empty() {
                return Err(invalid(&element_path, "empty"));
            }
            Ok(values)
        };
        let mut conditions = Vec::new();
        if let Some(block) = map.get("Condition") {
            let condition_path = format!("{path}.Condition");
            let block = block
                .as_object()
                .ok_or_else(|| invalid(&condition_path, "an object of operators"))?;
            for (operator, keys) in block {
                let operator_path = format!("{condition_path}.{operator}");
                let operator = match operator.as_str() {
                    "StringEquals" => Operator::StringEquals,
                    "StringLike" => Operator::StringLike,
                    other => {
                        return Err(unsupported(
                            &operator_path,
                            format!("the condition operator {other}"),
                        ));
                    }
                };
                let keys = keys
                    .as_object()
                    .ok_or_else(|| invalid(&operator_path, "an object of condition keys"))?;
                for (key, values) in keys {
                    conditions.push(Condition {
                        operator,
                        key: key.clone(),
                        values: strings(values, &format!("{operator_path}.{key}"))?,
                    });
                }
            }
        }
        Ok(Statement {
            sid: map.get("Sid").and_then(Value::as_str).map(str::to_string),
            effect,
            actions: list("Action")?,
            resources: list("Resource")?,
            conditions,
        })
    }

    fn applies(&self, request: &Request, conditions: Conditions) -> bool {
        self.actions.iter().any(|a| {
            wildcard_match(
                &a.to_ascii_lowercase(),
                &request.action.to_ascii_lowercase(),
            )
        }) && self
            .resources
            .iter()
            .any(|r| wildcard_match(r, &request.resource))
            && (conditions == Conditions::Ignored
                || self.conditions.iter().all(|c| c.holds(request)))
    }
}

impl Condition {
    /// IAM's rule for a key the request does not carry: the condition does not hold.
    fn holds(&self, request: &Request) -> bool {
        let Some(actual) = request.context.get(&self.key) else {
            return false;
        };
        self.values.iter().any(|expected| match self.operator {
            Operator::StringEquals => expected == actual,
            Operator::StringLike => wildcard_match(expected, actual),
        })
    }
}

fn strings(value: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    let values: Vec<String> = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(path, format!("{i} is not a string")))
            })
            .collect::<Result<_, _>>()?,
        other => return Err(invalid(path, format!("{other} is not a string or list"))),
    };
    if let Some(variable) = values.iter().find(|v| v.contains("${")) {
        return Err(unsupported(
            path,
            format!("the policy variable in {variable:?}"),
        ));
    }
    Ok(values)
}

/// IAM's wildcards: `*` any run of characters, `?` any one.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One authorization IAM makes: an action on a resource, with the request's condition keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, String>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Request {
        Request {
            action: action.to_string(),
            resource: resource.to_string(),
            context: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Request {
        self.context.insert(key.to_string(), value.to_string());
        self
    }
}

/// Whether statements' conditions are evaluated ([`decide`] as IAM) or not (as moto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditions {
    Evaluated,
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        })
    }
}

/// IAM's evaluation of identity policies: an explicit deny wins, else an allow, else deny.
pub fn decide(policies: &[Policy], request: &Request, conditions: Conditions) -> Verdict {
    let applying = || {
        policies
            .iter()
            .flat_map(|p| &p.statements)
            .filter(|s| s.applies(request, conditions))
    };
    if applying().any(|s| s.effect == Effect::Deny) {
        Verdict::Denied
    } else if applying().any(|s| s.effect == Effect::Allow) {
        Verdict::Allowed
    } else {
        Verdict::Denied
    }
}

/// A call allowed only when every one of its authorizations is.
pub fn decide_all(policies: &[Policy], requests: &[Request], conditions: Conditions) -> Verdict {
    if requests
        .iter()
        .all(|r| decide(policies, r, conditions) == Verdict::Allowed)
    {
        Verdict::Allowed
    } else {
        Verdict::Denied
    }
}

/// `policy` as moto 5 can enforce it: statements of other services than S3 are widened to
/// the resource `*` (the only resource moto authorizes them against) and their actions take
/// moto's names. The result grants at least what the template does, so moto's denials of
/// such actions are real denials; what the resources take away is judged by [`decide`].
pub fn moto_dialect(policy: &Policy) -> Result<Policy, PolicyError> {
    let mut statements = Vec::with_capacity(policy.statements.len());
    for (i, statement) in policy.statements.iter().enumerate() {
        let path = format!("Statement[{i}]");
        let services: BTreeSet<String> = statement
            .actions
            .iter()
            .map(|a| a.split(':').next().unwrap_or_default().to_ascii_lowercase())
            .collect();
        let mut statement = statement.clone();
        if services.iter().all(|s| s == "s3") {
            if let Some(resource) = statement.resources.iter().find(|r| r.contains('?')) {
                return Err(unsupported(
                    &path,
                    format!(
                        "the '?' in the S3 resource {resource}, which moto reads as a regular expression"
                    ),
                ));
            }
        } else if services.iter().any(|s| s == "s3") {
            return Err(unsupported(
                &path,
                "a statement mixing S3 and other services' actions",
            ));
        } else {
            if statement.effect == Effect::Deny {
                return Err(unsupported(
                    &path,
                    "a Deny of another service than S3, which moto would widen",
                ));
            }
            statement.resources = vec!["*".to_string()];
            statement.actions = statement.actions.iter().map(|a| moto_action(a)).collect();
        }
        statements.push(statement);
    }
    Ok(Policy { statements })
}

fn moto_action(action: &str) -> String {
    MOTO_ACTION_NAMES
        .iter()
        .find(|(iam, _)| iam.eq_ignore_ascii_case(action))
        .map_or_else(|| action.to_string(), |(_, moto)| (*moto).to_string())
}

/// One S3 call, made through the project's storage seam.
#[derive(Debug, Clone)]
pub enum S3Op {
    Get {
        key: String,
        version: Option<String>,
    },
    Head {
        key: String,
    },
    /// A read of a key that does not exist: S3 answers 404 rather than 403 only to a caller
    /// also allowed `s3:ListBucket` on the bucket with the key as `s3:prefix`.
    GetMissing {
        key: String,
    },
    Put {
        key: String,
    },
    Delete {
        key: String,
    },
    List {
        prefix: String,
    },
    ListVersions {
        key: String,
    },
    GetTags {
        key: String,
        version: Option<String>,
    },
    PutTags {
        key: String,
        version: Option<String>,
    },
    Copy {
        from: String,
        version: Option<String>,
        to: String,
    },
}

impl S3Op {
    fn iam_requests(&self, bucket: &str) -> Vec<Request> {
        let object = |key: &str| format!("arn:{PARTITION}:s3:::{bucket}/{key}");
        let bucket_arn = format!("arn:{PARTITION}:s3:::{bucket}");
        let versioned = |version: &Option<String>, plain: &str, of_version: &str| {
            if version.is_some() { of_version } else { plain }.to_string()
        };
        match self {
            S3Op::Get { key, version } => vec![Request::new(
                &versioned(version, "s3:GetObject", "s3:GetObjectVersion"),
                &object(key),
            )],
            S3Op::Head { key } => vec![Request::new("s3:GetObject", &object(key))],
            S3Op::GetMissing { key } => vec![
                Request::new("s3:GetObject", &object(key)),
                Request::new("s3:ListBucket", &bucket_arn).with("s3:prefix", key),
            ],
            S3Op::Put { key } => vec![Request::new("s3:PutObject", &object(key))],
            S3Op::Delete { key } => vec![Request::new("s3:DeleteObject", &object(key))],
            S3Op::List { prefix } => {
                vec![Request::new("s3:ListBucket", &bucket_arn).with("s3:prefix", prefix)]
            }
            S3Op::ListVersions { key } => {
                vec![Request::new("s3:ListBucketVersions", &bucket_arn).with("s3:prefix", key)]
            }
            S3Op::GetTags { key, version } => vec![Request::new(
                &versioned(version, "s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
                &object(key),
            )],
            S3Op::PutTags { key, version } => vec![Request::new(
                &versioned(version, "s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
                &object(key),
            )],
            S3Op::Copy { from, version, to } => vec![
                Request::new(
                    &versioned(version, "s3:GetObject", "s3:GetObjectVersion"),
                    &object(from),
                ),
                Request::new("s3:PutObject", &object(to)),
            ],
        }
    }

    /// moto's `ACTION_MAP` (`moto/s3/responses.py`): of several query parameters the last
    /// listed wins (`?tagging&versionId` is `GetObjectVersion`), PUT knows no version
    /// tagging, a copy is authorized as its destination's `PutObject` only, and a missing
    /// key is a 404 to whoever may get it.
    fn moto_requests(&self, bucket: &str) -> Vec<Request> {
        let object = |key: &str| format!("arn:{PARTITION}:s3:::{bucket}/{key}");
        match self {
            S3Op::GetTags {
                key,
                version: Some(_),
            } => vec![Request::new("s3:GetObjectVersion", &object(key))],
            S3Op::PutTags {
                key,
                version: Some(_),
            } => vec![Request::new("s3:PutObjectTagging", &object(key))],
            S3Op::Copy { to, .. } => vec![Request::new("s3:PutObject", &object(to))],
            S3Op::GetMissing { key } => vec![Request::new("s3:GetObject", &object(key))],
            other => other.iam_requests(bucket),
        }
    }

    /// Make the call; `Ok` or `NotFound` is an authorized call, `AccessDenied` a refused one.
    pub async fn run(&self, store: &S3Store) -> Result<(), StorageError> {
        match self {
            S3Op::Get { key, version } => store.get(key, version.as_deref()).await.map(drop),
            S3Op::Head { key } => store.head(key, None).await.map(drop),
            S3Op::GetMissing { key } => match store.get(key, None).await {
                Ok(_) => Err(StorageError::Other {
                    operation: "get",
                    key: key.clone(),
                    message: "the key a check expects missing exists".to_string(),
                }),
                Err(e) => Err(e),
            },
            S3Op::Put { key } => store
                .put(
                    key,
                    Bytes::from_static(b"written by an IAM check"),
                    PutOptions::default(),
                )
                .await
                .map(drop),
            S3Op::Delete { key } => store.delete(key).await,
            S3Op::List { prefix } => store.list(prefix).await.map(drop),
            S3Op::ListVersions { key } => store.list_versions(key).await.map(drop),
            S3Op::GetTags { key, version } => {
                store.get_tags(key, version.as_deref()).await.map(drop)
            }
            S3Op::PutTags { key, version } => {
                let tags = Tags::from([("iam-check".to_string(), "1".to_string())]);
                store.put_tags(key, version.as_deref(), &tags).await
            }
            S3Op::Copy { from, version, to } => {
                store.copy(from, version.as_deref(), to).await.map(drop)
            }
        }
    }
}

impl fmt::Display for S3Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = |v: &Option<String>| if v.is_some() { " (a version)" } else { "" };
        match self {
            S3Op::Get { key, version: v } => write!(f, "get {key}{}", version(v)),
            S3Op::Head { key } => write!(f, "head {key}"),
            S3Op::GetMissing { key } => write!(f, "get missing {key} (a 404, not a 403)"),
            S3Op::Put { key } => write!(f, "put {key}"),
            S3Op::Delete { key } => write!(f, "delete {key}"),
            S3Op::List { prefix } => write!(f, "list {prefix:?}"),
            S3Op::ListVersions { key } => write!(f, "list versions of {key}"),
            S3Op::GetTags { key, version: v } => write!(f, "get tags of {key}{}", version(v)),
            S3Op::PutTags { key, version: v } => write!(f, "put tags on {key}{}", version(v)),
            S3Op::Copy {
                from,
                version: v,
                to,
            } => write!(f, "copy {from}{} to {to}", version(v)),
        }
    }
}

/// A call a principal makes, in any of the services the template grants.
#[derive(Debug, Clone)]
pub enum Call {
    S3 {
        bucket: String,
        op: S3Op,
    },
    /// `lambda:InvokeFunction` of the function with this ARN.
    Invoke {
        function_arn: String,
    },
    /// `secretsmanager:GetSecretValue` of the secret with this ARN.
    GetSecret {
        arn: String,
    },
}

impl Call {
    /// What IAM authorizes for this call on AWS.
    pub fn iam_requests(&self) -> Vec<Request> {
        match self {
            Call::S3 { bucket, op } => op.iam_requests(bucket),
            Call::Invoke { function_arn } => {
                vec![Request::new("lambda:InvokeFunction", function_arn)]
            }
            Call::GetSecret { arn } => vec![Request::new("secretsmanager:GetSecretValue", arn)],
        }
    }

    /// What moto 5 authorizes for the same call.
    pub fn moto_requests(&self) -> Vec<Request> {
        match self {
            Call::S3 { bucket, op } => op.moto_requests(bucket),
            other => other
                .iam_requests()
                .into_iter()
                .map(|r| Request::new(&moto_action(&r.action), "*"))
                .collect(),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::S3 { bucket, op } => write!(f, "s3 {op} in {bucket}"),
            Call::Invoke { function_arn } => write!(f, "invoke {function_arn}"),
            Call::GetSecret { arn } => write!(f, "read secret {arn}"),
        }
    }
}

/// How an S3 call through the storage seam was answered: a `NotFound` was authorized (for
/// [`S3Op::GetMissing`], the 404 a caller allowed to list gets).
pub fn storage_verdict(answer: Result<(), StorageError>) -> Result<Verdict, String> {
    match answer {
        Ok(()) | Err(StorageError::NotFound { .. }) => Ok(Verdict::Allowed),
        Err(StorageError::AccessDenied { .. }) => Ok(Verdict::Denied),
        Err(other) => Err(format!("neither allowed nor denied: {other}")),
    }
}

/// Temporary credentials of one principal.
#[derive(Clone, Deserialize)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The SDKs' static credentials.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "cachefill-e2e-iam",
        )
    }
}

#[derive(Debug, Deserialize)]
struct SetupAnswer {
    admin: Keys,
    principals: BTreeMap<String, Keys>,
    secrets: BTreeMap<String, String>,
}

/// Makes the administrator with the only unauthenticated calls, then, as the administrator,
/// one role per principal with its policies, assumed once, and the secrets.
const SETUP_SCRIPT: &str = r#"
import json, sys
import boto3
from botocore.config import Config

spec = json.load(open(sys.argv[1]))
config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20)

def client(service, keys):
    return boto3.client(
        service, endpoint_url=spec["endpoint"], region_name=spec["region"], config=config,
        aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"],
        aws_session_token=keys.get("session_token"))

anonymous = {"access_key_id": "bootstrap", "secret_access_key": "bootstrap"}
iam = client("iam", anonymous)
iam.create_user(UserName="cachefill-e2e-admin")
iam.put_user_policy(UserName="cachefill-e2e-admin", PolicyName="everything", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="cachefill-e2e-admin")["AccessKey"]
admin = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}

iam = client("iam", admin)
sts = client("sts", admin)
admin_arn = iam.get_user(UserName="cachefill-e2e-admin")["User"]["Arn"]
trust = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}]})
principals = {}
for principal in spec["principals"]:
    name = principal["name"]
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]
    for i, document in enumerate(principal["inline"]):
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-{i}", PolicyDocument=json.dumps(document))
    for i, document in enumerate(principal["managed"]):
        arn = iam.create_policy(PolicyName=f"{name}-managed-{i}", PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    credentials = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=name)["Credentials"]
    principals[name] = {"access_key_id": credentials["AccessKeyId"],
                        "secret_access_key": credentials["SecretAccessKey"],
                        "session_token": credentials["SessionToken"]}

secretsmanager = client("secretsmanager", admin)
secrets = {s["name"]: secretsmanager.create_secret(Name=s["name"], SecretString=s["value"])["ARN"]
           for s in spec["secrets"]}
print(json.dumps({"admin": admin, "principals": principals, "secrets": secrets}))
"#;

/// moto authorizing every request against IAM, with one role per principal.
pub struct IamMoto {
    // Fields drop in order: moto stops before its log folder goes.
    moto: Moto,
    region: String,
    admin: Keys,
    principals: BTreeMap<String, Keys>,
    secrets: BTreeMap<String, String>,
    logs: Option<tempfile::TempDir>,
}

impl fmt::Debug for IamMoto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamMoto")
            .field("endpoint", &self.moto.endpoint())
            .field("principals", &self.principals.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl IamMoto {
    /// Start moto with IAM enforcement after [`UNAUTHENTICATED_SETUP_CALLS`], give each of
    /// `grants` a role with its policies in [`moto_dialect`], and create `secrets` (name,
    /// value).
    pub async fn start(
        tools: &Tools,
        region: &str,
        grants: &[Grants],
        secrets: &[(String, String)],
    ) -> Result<IamMoto> {
        let logs = tempfile::Builder::new()
            .prefix("cachefill-e2e-iam-")
            .tempdir()
            .map_err(|e| StackError::io("creating the log folder", e))?;
        let env = [(
            "INITIAL_NO_AUTH_ACTION_COUNT".to_string(),
            UNAUTHENTICATED_SETUP_CALLS.to_string(),
        )];
        let moto = Moto::start_with_env(tools, logs.path(), &env).await?;
        let mut principals = Vec::new();
        for grant in grants {
            let documents = grant
                .policies
                .iter()
                .map(|p| moto_dialect(p).map(|p| p.to_json()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| StackError::service("moto_dialect", e))?;
            let (managed, inline) = if grant.managed {
                (documents, Vec::new())
            } else {
                (Vec::new(), documents)
            };
            principals.push(json!({"name": grant.principal, "managed": managed, "inline": inline}));
        }
        let secrets: Vec<Value> = secrets
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        let spec = json!({
            "endpoint": moto.endpoint(),
            "region": region,
            "principals": principals,
            "secrets": secrets,
        });
        let spec_path = logs.path().join("iam-setup.json");
        std::fs::write(
            &spec_path,
            serde_json::to_vec_pretty(&spec).expect("JSON serializes"),
        )
        .map_err(|e| StackError::io("writing the IAM setup", e))?;
        let out = run_python(tools, SETUP_SCRIPT, &[&spec_path]).await?;
        let answer: SetupAnswer = serde_json::from_str(&out)
            .map_err(|e| StackError::service("IAM setup", format!("{e}: {out}")))?;
        Ok(IamMoto {
            moto,
            region: region.to_string(),
            admin: answer.admin,
            principals: answer.principals,
            secrets: answer.secrets,
            logs: Some(logs),
        })
    }

    pub fn endpoint(&self) -> String {
        self.moto.endpoint()
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn admin(&self) -> &Keys {
        &self.admin
    }

    /// The assumed-role credentials of `principal`.
    pub fn keys(&self, principal: &str) -> &Keys {
        self.principals
            .get(principal)
            .unwrap_or_else(|| panic!("no principal {principal} was set up"))
    }

    /// The ARN moto gave the secret `name` (with its six random characters).
    pub fn secret_arn(&self, name: &str) -> &str {
        self.secrets
            .get(name)
            .unwrap_or_else(|| panic!("no secret {name} was created"))
    }

    pub fn log_dir(&self) -> &Path {
        self.logs
            .as_ref()
            .map(tempfile::TempDir::path)
            .expect("the log folder lives as long as moto")
    }

    /// The product's S3 client (`build_client`) with `keys`.
    pub async fn s3(&self, keys: &Keys) -> aws_sdk_s3::Client {
        build_client(&S3Config {
            region: Some(self.region.clone()),
            endpoint_url: Some(self.endpoint()),
            access_key_id: Some(keys.access_key_id.clone()),
            secret_access_key: Some(Secret::new(keys.secret_access_key.clone())),
            session_token: keys.session_token.clone().map(Secret::new),
        })
        .await
    }

    /// The storage seam on `bucket` with `keys`.
    pub async fn store(&self, keys: &Keys, bucket: &str) -> S3Store {
        S3Store::new(self.s3(keys).await, bucket)
    }

    /// A Lambda client on moto's own Lambda API with `keys`, retries off.
    pub fn lambda(&self, keys: &Keys) -> aws_sdk_lambda::Client {
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(self.region.clone()))
            .credentials_provider(keys.credentials())
            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .build();
        aws_sdk_lambda::Client::from_conf(config)
    }

    /// Create `bucket` with versioning on, as the administrator.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        crate::stack::create_versioned_bucket(&self.s3(&self.admin).await, bucket).await
    }

    /// Invoke `function` on moto's Lambda API: moto answers an authorized invoke of a
    /// function it does not have with `ResourceNotFoundException` (404), an unauthorized one
    /// with `AccessDenied` (403).
    pub async fn invoke_verdict(
        &self,
        keys: &Keys,
        function: &str,
    ) -> std::result::Result<Verdict, String> {
        use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
        let answer = self
            .lambda(keys)
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(b"{}".to_vec()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(Verdict::Allowed),
            Err(SdkError::ServiceError(e)) => {
                let status = e.raw().status().as_u16();
                match (status, e.err().code()) {
                    (_, Some("ResourceNotFoundException")) | (404, _) => Ok(Verdict::Allowed),
                    (403, _) | (_, Some("AccessDenied" | "AccessDeniedException")) => {
                        Ok(Verdict::Denied)
                    }
                    _ => Err(format!(
                        "answered {status}: {}",
                        aws_sdk_lambda::error::DisplayErrorContext(&e.into_err())
                    )),
                }
            }
            Err(other) => Err(aws_sdk_lambda::error::DisplayErrorContext(other).to_string()),
        }
    }
}

impl Drop for IamMoto {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(logs) = self.logs.take()
        {
            eprintln!("IAM test logs kept in {}", logs.keep().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        json!({
            "Parameters": {
                "Bucket": {"Type": "String", "Default": "b"},
                "Prefix": {"Type": "String", "Default": ""},
                "Mode": {"Type": "String", "Default": "a", "AllowedValues": ["a", "b"]},
            },
            "Conditions": {
                "HasPrefix": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Prefix"}, ""]}]},
                "Both": {"Fn::And": [{"Condition": "HasPrefix"}, {"Fn::Equals": ["a", {"Ref": "Mode"}]}]},
            },
            "Resources": {
                "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Policies": [{
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "s3:GetObject",
                         "Resource": {"Fn::If": ["HasPrefix",
                            {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${B}/${Prefix}/*", {"B": {"Ref": "Bucket"}}]},
                            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/*"}]}},
                        {"Fn::If": ["Both",
                            {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": {"Fn::GetAtt": ["Fn", "Arn"]}},
                            {"Ref": "AWS::NoValue"}]},
                    ],
                }]}},
            },
        })
    }

    fn deployment(parameters: &[(&str, &str)]) -> Deployment {
        Deployment::new("us-east-1", parameters)
            .function("Fn", "fn")
            .principal("Fn", "function")
    }

    #[test]
    fn conditions_substitutions_and_no_value_resolve_as_cloudformation_does() {
        let grants = template_grants(&template(), &deployment(&[("Prefix", "p/q")])).unwrap();
        let statements = &grants[0].policies[0].statements;
        assert_eq!(statements[0].resources, ["arn:aws:s3:::b/p/q/*"]);
        assert_eq!(
            statements[1].resources,
            ["arn:aws:lambda:us-east-1:123456789012:function:fn"]
        );

        let grants = template_grants(&template(), &deployment(&[("Mode", "b")])).unwrap();
        let statements = &grants[0].policies[0].statements;
        assert_eq!(statements.len(), 1, "AWS::NoValue removes the statement");
        assert_eq!(statements[0].resources, ["arn:aws:s3:::b/*"]);
    }

    #[test]
    fn constructs_outside_the_model_are_refused_by_name() {
        let statement = "/Resources/Fn/Properties/Policies/0/Statement/0";
        let policies = "/Resources/Fn/Properties/Policies";
        // (what the error must name, where, the member to set or None to push, the value)
        let cases = [
            (
                "Fn::ImportValue",
                statement,
                Some("Resource"),
                json!({"Fn::ImportValue": "x"}),
            ),
            ("NotResource", statement, Some("NotResource"), json!("*")),
            (
                "ArnLike",
                statement,
                Some("Condition"),
                json!({"ArnLike": {"aws:SourceArn": "x"}}),
            ),
            (
                "policy variable",
                statement,
                Some("Resource"),
                json!("arn:aws:s3:::${aws:username}/*"),
            ),
            (
                "Fn.RoleArn",
                statement,
                Some("Resource"),
                json!({"Fn::GetAtt": ["Fn", "RoleArn"]}),
            ),
            (
                "AWS::NotificationARNs",
                statement,
                Some("Resource"),
                json!({"Fn::Sub": "${AWS::NotificationARNs}"}),
            ),
            (
                "managed policy",
                policies,
                None,
                json!("AmazonS3FullAccess"),
            ),
            (
                "SAM policy template",
                policies,
                None,
                json!({"S3CrudPolicy": {"BucketName": "b"}}),
            ),
            (
                "Role",
                "/Resources/Fn/Properties",
                Some("Role"),
                json!("arn:aws:iam::1:role/x"),
            ),
            (
                "AWS::IAM::Policy",
                "/Resources",
                Some("Extra"),
                json!({"Type": "AWS::IAM::Policy"}),
            ),
            (
                "Fn::Contains",
                "/Conditions",
                Some("HasPrefix"),
                json!({"Fn::Contains": [["a"], "a"]}),
            ),
        ];
        for (named, pointer, member, value) in cases {
            let mut t = template();
            let target = t.pointer_mut(pointer).unwrap();
            match member {
                Some(member) => target[member] = value,
                None => target.as_array_mut().unwrap().push(value),
            }
            let error = template_grants(&t, &deployment(&[])).unwrap_err();
            assert!(
                matches!(error, PolicyError::Unsupported { .. })
                    && error.to_string().contains(named),
                "expected an Unsupported naming {named}, got {error}"
            );
        }
        // Mistakes, not gaps in the model, are refused too.
        let mut t = template();
        t.pointer_mut(statement).unwrap()["Resource"] = json!({"Ref": "Nothing"});
        assert!(template_grants(&t, &deployment(&[])).is_err());
        assert!(template_grants(&template(), &deployment(&[("Mode", "c")])).is_err());
        assert!(template_grants(&template(), &deployment(&[("Undeclared", "x")])).is_err());
    }

    #[test]
    fn evaluation_follows_iam_rules() {
        let policy = Policy::parse(
            &json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:List*"], "Resource": ["arn:aws:s3:::b/p/*", "arn:aws:s3:::b"],
                 "Condition": {"StringLike": {"s3:prefix": "p/*"}}},
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/*"},
                {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/secret-??"},
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "arn:aws:secretsmanager:r:1:secret:s-??????"},
            ]}),
            "policy",
        )
        .unwrap();
        let policies = [policy];
        let judge = |r: Request| decide(&policies, &r, Conditions::Evaluated);
        assert_eq!(
            judge(Request::new("s3:GetObject", "arn:aws:s3:::b/p/x")),
            Verdict::Allowed
        );
        assert_eq!(
            judge(Request::new("S3:getobject", "arn:aws:s3:::b/p/x")),
            Verdict::Allowed,
            "actions ignore case"
        );
        assert_eq!(
            judge(Request::new("s3:GetObject", "arn:aws:s3:::b/q/x")),
            Verdict::Denied
        );
        assert_eq!(
            judge(Request::new("s3:GetObject", "arn:aws:s3:::b/p/secret-01")),
            Verdict::Denied,
            "a deny wins"
        );
        assert_eq!(
            judge(Request::new("s3:PutObject", "arn:aws:s3:::b/p/x")),
            Verdict::Denied
        );
        assert_eq!(
            judge(Request::new("s3:ListBucket", "arn:aws:s3:::b").with("s3:prefix", "p/")),
            Verdict::Allowed
        );
        assert_eq!(
            judge(Request::new("s3:ListBucket", "arn:aws:s3:::b").with("s3:prefix", "q/")),
            Verdict::Denied
        );
        assert_eq!(
            judge(Request::new("s3:ListBucket", "arn:aws:s3:::b")),
            Verdict::Denied,
            "a missing key fails"
        );
        assert_eq!(
            decide(
                &policies,
                &Request::new("s3:ListBucket", "arn:aws:s3:::b"),
                Conditions::Ignored
            ),
            Verdict::Allowed
        );
        assert_eq!(
            judge(Request::new(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:r:1:secret:s-AbC123"
            )),
            Verdict::Allowed
        );
        assert_eq!(
            judge(Request::new(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:r:1:secret:s-AbC12"
            )),
            Verdict::Denied
        );
        assert_eq!(
            judge(Request::new(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:r:1:secret:s-x-AbC123"
            )),
            Verdict::Denied
        );
    }

    #[test]
    fn the_moto_dialect_widens_other_services_only() {
        let policy = Policy::parse(
            &json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
                {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "arn:aws:lambda:r:1:function:f"},
            ]}),
            "policy",
        )
        .unwrap();
        let moto = moto_dialect(&policy).unwrap();
        assert_eq!(moto.statements[0], policy.statements[0]);
        assert_eq!(moto.statements[1].actions, ["lambda:Invoke"]);
        assert_eq!(moto.statements[1].resources, ["*"]);
        let mixed = Policy::parse(
            &json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "lambda:InvokeFunction"], "Resource": "*"}]}),
            "policy",
        )
        .unwrap();
        assert!(moto_dialect(&mixed).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("a*c", "abbc"));
        assert!(wildcard_match("a*", "a"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(!wildcard_match("a*c", "abcd"));
        assert!(wildcard_match("p/v1/*", "p/v1/"));
        assert!(!wildcard_match("p/v1/*", "p/v1"));
    }
}
