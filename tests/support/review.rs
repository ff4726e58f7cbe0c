//! AdmissionReviews as the API server sends them, the VMs the webhook tests send, what the
//! rules say about them, and how a response must look: shared by the in-process tests
//! (tests/admission.rs) and the tests of the binary over HTTPS (tests/webhook.rs).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};
use virt_preflight::cluster::ClusterView;
use virt_preflight::manifest::{self, ReadOptions};
use virt_preflight::model::VirtualMachine;
use virt_preflight::rules::finding::{DEFAULT_NAMESPACE, Finding, ObjectRef};
use virt_preflight::rules::{self, REGISTRY, RuleInfo, Scope};

/// What the webhook answered to one HTTP request, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    /// The `response` of the AdmissionReview this reply holds, after checking the envelope
    /// and that the request's uid came back.
    pub fn review_response(&self, request: &ReviewRequest, uid: &str) -> Value {
        let reply = self;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{request:?}: {}",
            reply.text()
        );
        assert!(
            reply.content_type.starts_with("application/json"),
            "content type {:?}",
            reply.content_type
        );
        let review = reply.json();
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
        assert_eq!(review["kind"], "AdmissionReview", "{review}");
        let response = review["response"].clone();
        assert_eq!(response["uid"], uid, "the request uid is echoed: {review}");
        assert!(response["allowed"].is_boolean(), "{review}");
        response
    }
}

/// The API server's limits on warnings (apiserver `endpoints/filters/warning.go`): past 4,096
/// characters in all, each is cut to 256.
pub const MAX_WARNING_CHARS: usize = 256;
pub const MAX_WARNINGS_TOTAL_CHARS: usize = 4096;
/// The webhook's request body limit.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
pub const DENIAL_PREFIX: &str = "virt-preflight denied this VirtualMachine";
pub const NOT_CHECKED: &str = "[virt-preflight] the VirtualMachine could not be read; not checked";

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/webhook").join(name)
}

/// The one document of a YAML file, read as `check` reads it.
pub fn load_yaml(path: &Path) -> Value {
    let mut parsed = manifest::read_path(path, ReadOptions::default());
    assert_eq!(parsed.len(), 1, "{}: expected one document", path.display());
    match parsed.remove(0) {
        Ok(document) => document.value,
        Err(err) => panic!("{}: {err}", path.display()),
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("virt-preflight-webhook-")
        .tempdir()
        .expect("create a temporary directory")
}

pub fn write_file(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// AdmissionReviews, as the API server sends them
// ---------------------------------------------------------------------------------------

pub fn new_uid() -> String {
    format!("5f0c2a8e-7b1d-4e3a-9c6f-{:012x}", next_id())
}

#[derive(Debug, Clone)]
pub struct ReviewRequest {
    operation: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    resource: &'static str,
    namespace: String,
    name: String,
    object: Option<Value>,
    old_object: Option<Value>,
    dry_run: bool,
}

pub fn metadata_str(object: &Value, field: &str) -> String {
    object["metadata"][field]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl ReviewRequest {
    pub fn vm(operation: &'static str, object: Option<&Value>, old: Option<&Value>) -> Self {
        let named = object.or(old).expect("an object or an old object");
        ReviewRequest {
            operation,
            group: "kubevirt.io",
            version: "v1",
            kind: "VirtualMachine",
            resource: "virtualmachines",
            namespace: metadata_str(named, "namespace"),
            name: metadata_str(named, "name"),
            object: object.cloned(),
            old_object: old.cloned(),
            dry_run: false,
        }
    }

    pub fn create(vm: &Value) -> Self {
        ReviewRequest::vm("CREATE", Some(vm), None)
    }

    pub fn update(old: &Value, new: &Value) -> Self {
        ReviewRequest::vm("UPDATE", Some(new), Some(old))
    }

    pub fn delete(old: &Value) -> Self {
        ReviewRequest::vm("DELETE", None, Some(old))
    }

    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    pub fn of_kind(
        mut self,
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        resource: &'static str,
    ) -> Self {
        self.group = group;
        self.version = version;
        self.kind = kind;
        self.resource = resource;
        self
    }

    /// The `admission.k8s.io/v1` AdmissionReview the API server would send.
    pub fn to_json(&self, uid: &str) -> Value {
        let gvk = json!({"group": self.group, "version": self.version, "kind": self.kind});
        let gvr = json!({"group": self.group, "version": self.version, "resource": self.resource});
        let options_kind = match self.operation {
            "CREATE" => "CreateOptions",
            "UPDATE" => "UpdateOptions",
            _ => "DeleteOptions",
        };
        let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": options_kind});
        if self.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": gvk,
                "resource": gvr,
                "requestKind": gvk,
                "requestResource": gvr,
                "name": self.name,
                "namespace": self.namespace,
                "operation": self.operation,
                "userInfo": {
                    "username": "kubernetes-admin",
                    "uid": "aws-iam-authenticator:1234",
                    "groups": ["system:masters", "system:authenticated"]
                },
                "object": self.object,
                "oldObject": self.old_object,
                "dryRun": self.dry_run,
                "options": options,
            }
        })
    }
}

/// The response of a request allowed with nothing to say: its uid, `allowed: true` and an
/// empty status (kube-core's `AdmissionResponse` always writes one) only.
pub fn assert_clean_allow(response: &Value, what: &str) {
    let mut rest = response.clone();
    rest.as_object_mut()
        .expect("response is an object")
        .remove("uid");
    assert_eq!(
        rest,
        json!({"allowed": true, "status": {}}),
        "{what}: {response}"
    );
}

/// The denial message of a denied response (403 Forbidden).
pub fn denial(response: &Value, what: &str) -> String {
    assert_eq!(response["allowed"], false, "{what}: {response}");
    assert_eq!(response["status"]["code"], 403, "{what}: {response}");
    assert_eq!(
        response["status"]["reason"], "Forbidden",
        "{what}: {response}"
    );
    response["status"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no status.message: {response}"))
        .to_string()
}

pub fn assert_allowed(response: &Value, what: &str) {
    assert_eq!(response["allowed"], true, "{what}: {response}");
    assert_eq!(
        response["status"],
        json!({}),
        "{what}: an allowed response carries an empty status: {response}"
    );
}

/// The warnings of a response; an absent field is none, an empty list is not allowed.
pub fn warnings(response: &Value) -> Vec<String> {
    match response.get("warnings") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            assert!(!items.is_empty(), "empty warnings list: {response}");
            items
                .iter()
                .map(|w| w.as_str().expect("a warning is a string").to_string())
                .collect()
        }
        Some(other) => panic!("warnings is not a list: {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// VirtualMachines and what the rules say about them
// ---------------------------------------------------------------------------------------

pub fn valid_vm() -> Value {
    load_yaml(&fixture("vm-valid.yaml"))
}

pub fn devices(vm: &mut Value) -> &mut Value {
    &mut vm["spec"]["template"]["spec"]["domain"]["devices"]
}

pub fn push(array: &mut Value, item: Value) {
    array.as_array_mut().expect("an array").push(item);
}

/// Adds disk `name` with no volume: a `disk-without-volume` error.
pub fn with_disk_without_volume(mut vm: Value, name: &str) -> Value {
    push(
        &mut devices(&mut vm)["disks"],
        json!({"name": name, "disk": {"bus": "virtio"}}),
    );
    vm
}

/// Pulls the root disk's image by `:latest` without `Always`: an `image-tag-latest` warning.
pub fn with_latest_image(mut vm: Value) -> Value {
    let disk = &mut vm["spec"]["template"]["spec"]["volumes"][0]["containerDisk"];
    disk["image"] = json!("quay.io/containerdisks/fedora:latest");
    disk["imagePullPolicy"] = json!("IfNotPresent");
    vm
}

/// An unknown run strategy: a `run-strategy-invalid` error.
pub fn with_bad_run_strategy(mut vm: Value) -> Value {
    vm["spec"]["runStrategy"] = json!("Sometimes");
    vm
}

/// A VM the model cannot read (disks is not a list): the webhook lets it through unchecked.
pub fn unreadable_vm() -> Value {
    let mut vm = valid_vm();
    devices(&mut vm)["disks"] = json!("root");
    assert!(
        VirtualMachine::from_value(&vm).is_err(),
        "the VM is readable"
    );
    vm
}

/// Cloud-init user data from Secret `secret` instead of inline.
pub fn with_cloud_init_secret(mut vm: Value, secret: &str) -> Value {
    vm["spec"]["template"]["spec"]["volumes"][1]["cloudInitNoCloud"] =
        json!({"secretRef": {"name": secret}});
    vm
}

pub fn named(mut vm: Value, name: &str) -> Value {
    vm["metadata"]["name"] = json!(name);
    vm["metadata"]["uid"] = json!(format!("0d3e2b1a-0000-4000-8000-{:012x}", next_id()));
    vm
}

pub fn in_namespace(mut vm: Value, namespace: &str) -> Value {
    vm["metadata"]["namespace"] = json!(namespace);
    vm
}

/// What the rules find in `vm` (the library's view, which the webhook must pass on).
pub fn findings_of(vm: &Value, cluster: Option<&ClusterView>) -> Vec<Finding> {
    let typed = VirtualMachine::from_value(vm).expect("a readable VirtualMachine");
    let object = ObjectRef::virtual_machine(&typed, None, DEFAULT_NAMESPACE);
    rules::evaluate(&typed, &object, cluster).findings
}

/// A finding as the webhook writes it: `[rule-id] message — path`, what is wrong and what to
/// do first.
pub fn line(finding: &Finding) -> String {
    format!("[{}] {} — {}", finding.rule, finding.message, finding.path)
}

/// `text` cut to the API server's limit: at most 256 characters, `…` where cut.
pub fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_WARNING_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX_WARNING_CHARS - 1).collect();
    short.push('…');
    short
}

/// The exact denial message for `lines`.
pub fn denial_message(lines: &[String]) -> String {
    format!(
        "{DENIAL_PREFIX} ({} finding{}): {}",
        lines.len(),
        if lines.len() == 1 { "" } else { "s" },
        lines.join("; ")
    )
}

pub fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

/// Checks a response against the findings of `vm` and which of them the policy denies.
pub fn assert_verdict(
    response: &Value,
    vm: &Value,
    cluster: Option<&ClusterView>,
    denies: impl Fn(&Finding) -> bool,
    what: &str,
) {
    let findings = findings_of(vm, cluster);
    let denied: Vec<String> = findings.iter().filter(|f| denies(f)).map(line).collect();
    let warned: Vec<String> = findings
        .iter()
        .filter(|f| !denies(f))
        .map(|f| cut(&line(f)))
        .collect();
    if denied.is_empty() {
        assert_allowed(response, what);
    } else {
        assert_eq!(denial(response, what), denial_message(&denied), "{what}");
    }
    assert_eq!(
        sorted(warnings(response)),
        sorted(warned),
        "{what}: {response}"
    );
}

// ---------------------------------------------------------------------------------------
// The rules' own verdict on a VM, which the webhook must pass on
// ---------------------------------------------------------------------------------------

/// The VM of `tests/fixtures/rules/<id>/broken.yaml`, which triggers that rule (the fixtures
/// of tests/rule_fixtures.rs).
pub fn broken_fixture(rule: &RuleInfo) -> (PathBuf, Value) {
    let path = manifest_dir()
        .join("tests/fixtures/rules")
        .join(rule.name)
        .join("broken.yaml");
    let vm = load_yaml(&path);
    (path, vm)
}

pub fn spec_rules() -> impl Iterator<Item = &'static RuleInfo> {
    REGISTRY.iter().filter(|r| r.scope == Scope::Spec)
}

// ---------------------------------------------------------------------------------------
// Metrics in the text exposition format
// ---------------------------------------------------------------------------------------

pub struct Metrics {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name_and_labels, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("metrics line without a value: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("metrics line with a bad value: {line}"));
            let (name, labels) = match name_and_labels.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels end with }");
                    let labels = labels
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                            (key.to_string(), value.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (name_and_labels.to_string(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Metrics {
            series,
            text: text.to_string(),
        }
    }

    /// The sum of the series named `name` that carry all of `labels` (0 if none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    pub fn requests(&self, operation: &str, result: &str) -> f64 {
        self.value(
            "virt_preflight_admission_requests_total",
            &[("operation", operation), ("result", result)],
        )
    }

    pub fn findings(&self, rule: &str, action: &str) -> f64 {
        self.value(
            "virt_preflight_admission_findings_total",
            &[("rule", rule), ("action", action)],
        )
    }
}
