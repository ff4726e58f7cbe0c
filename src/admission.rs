//! `admission.k8s.io/v1` AdmissionReview in, verdict out: a pure function of the request, the
//! cluster view and the policy. The server ([`crate::server`]) does the I/O around it.
//!
//! The review types are our own small serde structs rather than kube-core's
//! `AdmissionRequest<DynamicObject>`: the webhook reads only a handful of fields. The objects
//! are read straight into the model in the same pass as the review, with no JSON tree in
//! between: most of the webhook's own cost per request was building and walking that tree.

use std::borrow::Cow;
use std::cell::RefCell;

use compact_str::CompactString;
use foldhash::{HashSet, HashSetExt};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::check::object_ref;
use crate::cluster::ClusterView;
use crate::finding::{Finding, one_line};
use crate::model::{ModelError, ObjectMeta, VirtualMachine};
use crate::policy::{Action, Mode, Policy};
use crate::rules::{self, RuleId};

/// The API server's limits on warnings (apiserver `endpoints/filters/warning.go`).
pub const MAX_WARNING_CHARS: usize = 120;
pub const MAX_WARNINGS_TOTAL_CHARS: usize = 4096;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview<O = ReviewObject> {
    pub api_version: Option<CompactString>,
    pub kind: Option<CompactString>,
    pub request: Option<AdmissionRequest<O>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: CompactString,
    #[serde(default)]
    pub version: CompactString,
    #[serde(default)]
    pub kind: CompactString,
}

/// `AdmissionRequest.operation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
    /// Missing, or one a later API version adds.
    #[default]
    #[serde(other)]
    Other,
}

impl Operation {
    /// As the API server writes it (and as metrics label it); empty when unknown.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Other => "",
        }
    }
}

/// The request of a review. `O` is how its objects are held: [`ReviewObject`] once parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest<O = ReviewObject> {
    pub uid: String,
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub namespace: Option<CompactString>,
    #[serde(default)]
    pub name: Option<CompactString>,
    #[serde(default)]
    pub operation: Operation,
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// The object as sent (`null` reads as `None`).
    pub object: Option<O>,
    pub old_object: Option<O>,
}

impl<O> AdmissionRequest<O> {
    fn map_objects<P>(self, f: impl Fn(O) -> P) -> AdmissionRequest<P> {
        AdmissionRequest {
            uid: self.uid,
            kind: self.kind,
            namespace: self.namespace,
            name: self.name,
            operation: self.operation,
            dry_run: self.dry_run,
            object: self.object.map(&f),
            old_object: self.old_object.map(&f),
        }
    }
}

/// An object carried by a review.
#[derive(Debug, Clone)]
pub enum ReviewObject {
    /// Read into the model while the review was parsed: the common case, one pass over the text.
    Vm(Box<VirtualMachine>),
    /// Kept as text because an object of the review does not fit the model (or is not a VM);
    /// reading it again names the field where it stops.
    Raw(Box<RawValue>),
}

impl ReviewObject {
    /// The VM, as read with the review or read now from the text.
    pub fn vm(&self) -> Result<Cow<'_, VirtualMachine>, ModelError> {
        match self {
            ReviewObject::Vm(vm) => Ok(Cow::Borrowed(vm)),
            ReviewObject::Raw(text) => VirtualMachine::from_json(text.get()).map(Cow::Owned),
        }
    }

    /// The metadata the webhook needs whether or not the object fits the model.
    fn header(&self) -> ObjectHeader<'_> {
        match self {
            ReviewObject::Vm(vm) => ObjectHeader::from(&vm.metadata),
            ReviewObject::Raw(text) => {
                let RawHeader { metadata } = serde_json::from_str(text.get()).unwrap_or_default();
                ObjectHeader {
                    name: metadata.name.map(Cow::Owned),
                    namespace: metadata.namespace.map(Cow::Owned),
                    uid: metadata.uid.map(Cow::Owned),
                    deleting: metadata.deletion_timestamp.is_some(),
                }
            }
        }
    }
}

/// Name, namespace, uid and whether it is being deleted; empty for an object without
/// readable metadata. Borrowed from the model where the object fits it.
#[derive(Debug, Default)]
struct ObjectHeader<'a> {
    name: Option<Cow<'a, str>>,
    namespace: Option<Cow<'a, str>>,
    uid: Option<Cow<'a, str>>,
    deleting: bool,
}

impl<'a> From<&'a ObjectMeta> for ObjectHeader<'a> {
    fn from(metadata: &'a ObjectMeta) -> Self {
        ObjectHeader {
            name: metadata.name.as_deref().map(Cow::Borrowed),
            namespace: metadata.namespace.as_deref().map(Cow::Borrowed),
            uid: metadata.uid.as_deref().map(Cow::Borrowed),
            deleting: metadata.deletion_timestamp.is_some(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawHeader {
    #[serde(default)]
    metadata: RawHeaderMeta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    deletion_timestamp: Option<IgnoredAny>,
}

/// Why a request body is not a review we can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("not an AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not an AdmissionReview: the body is not UTF-8 ({0})")]
    Utf8(#[from] std::str::Utf8Error),
    #[error(
        "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {api_version}/{kind}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Parses a request body into the review's request.
///
/// The common case, a review whose objects fit the model, is read in one pass by simd-json,
/// straight into the model: under load that pass costs about half of serde_json's, and
/// reading the review is most of the webhook's own work. Whatever simd-json does not take is
/// read by serde_json, the reference: into the model again and, where an object does not fit,
/// a second time with the objects kept as text, so that the review can still tell a malformed
/// review from an unusual VM and say where the VM stops fitting. Every error is serde_json's.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest, ReviewError> {
    if let Some(request) = parse_fast(body) {
        return Ok(request.map_objects(ReviewObject::Vm));
    }
    // JSON is UTF-8 (RFC 8259); checked once here, not string by string while parsing.
    let body = std::str::from_utf8(body)?;
    match parse_holding::<Box<VirtualMachine>>(body) {
        Ok(request) => Ok(request.map_objects(ReviewObject::Vm)),
        Err(ReviewError::Json(_)) => {
            parse_holding::<Box<RawValue>>(body).map(|r| r.map_objects(ReviewObject::Raw))
        }
        Err(other) => Err(other),
    }
}

/// Reviews up to this size reuse their thread's simd-json buffers (which grow to the largest
/// review read, so a larger one gets its own).
const KEEP_BUFFERS_UP_TO: usize = 64 * 1024;

thread_local! {
    static BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
}

/// simd-json's reading of a review whose objects fit the model; `None` for anything else,
/// a panic inside the parser included (it is SIMD code on untrusted input, and the request
/// path must not panic): serde_json then reads the body.
fn parse_fast(body: &[u8]) -> Option<AdmissionRequest<Box<VirtualMachine>>> {
    std::panic::catch_unwind(|| read_with_simd_json(body))
        .ok()
        .flatten()
}

fn read_with_simd_json(body: &[u8]) -> Option<AdmissionRequest<Box<VirtualMachine>>> {
    if may_escape_a_surrogate(body) {
        return None;
    }
    // simd-json parses in place (strings are unescaped into the buffer).
    let mut buffer = body.to_vec();
    let tape = if body.len() <= KEEP_BUFFERS_UP_TO {
        BUFFERS.with_borrow_mut(|buffers| {
            simd_json::Deserializer::from_slice_with_buffers(&mut buffer, buffers)
        })
    } else {
        simd_json::Deserializer::from_slice(&mut buffer)
    };
    let mut tape = tape.ok()?;
    let review = AdmissionReview::deserialize(&mut tape).ok()?;
    // simd-json reads the review off a flat tape. A struct written as an array (`["name", x]`)
    // that is longer than the struct leaves elements behind, where serde_json fails; the rest
    // is then read out of step. Whatever is left on the tape means such a read: serde_json's turn.
    if IgnoredAny::deserialize(&mut tape).is_ok() {
        return None;
    }
    request_of(review).ok()
}

/// Whether the body may hold a `\uD800`–`\uDBFF` escape. simd-json reads a lone one as a NUL
/// where serde_json rejects it, so such bodies (which the API server, writing UTF-8, does not
/// send) are left to serde_json. An escaped backslash before `u` only costs the fast path.
fn may_escape_a_surrogate(body: &[u8]) -> bool {
    memchr::memmem::find_iter(body, b"\\u").any(|at| {
        matches!(
            body.get(at + 2..at + 4),
            Some([b'd' | b'D', b'8' | b'9' | b'a' | b'b' | b'A' | b'B'])
        )
    })
}

fn parse_holding<O: serde::de::DeserializeOwned>(
    body: &str,
) -> Result<AdmissionRequest<O>, ReviewError> {
    request_of(serde_json::from_str(body)?)
}

/// The request of a review of the one type the webhook serves.
fn request_of<O>(review: AdmissionReview<O>) -> Result<AdmissionRequest<O>, ReviewError> {
    let api_version = review.api_version.unwrap_or_default();
    let kind = review.kind.unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(ReviewError::WrongType {
            api_version: api_version.into(),
            kind: kind.into(),
        });
    }
    review.request.ok_or(ReviewError::NoRequest)
}

/// A finding and what the policy made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub finding: Finding,
    pub action: Action,
    /// The old object had it already (UPDATE): it may warn, never deny.
    pub pre_existing: bool,
}

/// The webhook's answer to one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub uid: String,
    pub allowed: bool,
    /// Denial message: every denying finding as `[rule-id] path: message`.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// What was found, for metrics and Events.
    pub judged: Vec<Judged>,
    pub mode: Option<Mode>,
    /// Whether the request was a VirtualMachine CREATE/UPDATE that the rules looked at.
    pub evaluated: bool,
    pub dry_run: bool,
    pub operation: Operation,
}

impl Verdict {
    fn allow(request: &AdmissionRequest) -> Verdict {
        Verdict {
            uid: request.uid.clone(),
            allowed: true,
            dry_run: request.dry_run.unwrap_or(false),
            operation: request.operation,
            ..Verdict::default()
        }
    }

    /// The findings that should become an Event: those that warn or are audited.
    pub fn event_findings(&self) -> impl Iterator<Item = &Judged> {
        self.judged
            .iter()
            .filter(|j| matches!(j.action, Action::Warn | Action::Audit))
    }

    /// The `AdmissionReview` response body.
    pub fn to_review(&self) -> ReviewResponse<'_> {
        ReviewResponse {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: ResponseBody {
                uid: &self.uid,
                allowed: self.allowed,
                status: self.message.as_deref().map(|message| DenialStatus {
                    code: 403,
                    reason: "Forbidden",
                    message,
                }),
                warnings: &self.warnings,
            },
        }
    }
}

/// An `AdmissionReview` carrying a response, ready to serialise.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseBody<'a>,
}

#[derive(Debug, Serialize)]
struct ResponseBody<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<DenialStatus<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Debug, Serialize)]
struct DenialStatus<'a> {
    code: u16,
    reason: &'static str,
    message: &'a str,
}

/// The VM-shaped request: group `kubevirt.io`, kind `VirtualMachine`, CREATE or UPDATE.
fn is_vm_write(request: &AdmissionRequest) -> bool {
    request.kind.group == "kubevirt.io"
        && request.kind.kind == "VirtualMachine"
        && matches!(request.operation, Operation::Create | Operation::Update)
}

fn evaluate(vm: &VirtualMachine, namespace: &str, cluster: Option<&ClusterView>) -> Vec<Finding> {
    let object = object_ref(vm, namespace);
    rules::evaluate(vm, &object, cluster).findings
}

/// The namespace a request writes into: the request's, else the object's, else `default`.
fn request_namespace<'a>(
    request: &'a AdmissionRequest,
    object_namespace: Option<&'a str>,
) -> &'a str {
    request
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or(object_namespace)
        .unwrap_or("default")
}

/// The policy mode that applies to a request; cheap, so a failed review can still honour it.
pub fn mode_for_request(
    request: &AdmissionRequest,
    cluster: Option<&ClusterView>,
    policy: &Policy,
) -> Mode {
    let header = request.object.as_ref().map(ReviewObject::header);
    let object_namespace = header.as_ref().and_then(|h| h.namespace.as_deref());
    let namespace = request_namespace(request, object_namespace);
    policy.mode_for(cluster.and_then(|c| c.namespace_mode(namespace)))
}

/// Decides one admission request.
pub fn review(
    request: &AdmissionRequest,
    cluster: Option<&ClusterView>,
    policy: &Policy,
) -> Verdict {
    let mut verdict = Verdict::allow(request);
    if !is_vm_write(request) {
        return verdict;
    }
    let Some(object) = &request.object else {
        return verdict;
    };
    let vm = object.vm();
    // A VM that does not fit the model still has metadata worth reading.
    let header = match &vm {
        Ok(vm) => ObjectHeader::from(&vm.metadata),
        Err(_) => object.header(),
    };
    if header.deleting {
        return verdict; // never stand in the way of a deletion's finalizer updates
    }
    let namespace = request_namespace(request, header.namespace.as_deref());
    let mode = policy.mode_for(cluster.and_then(|c| c.namespace_mode(namespace)));
    verdict.mode = Some(mode);
    let Ok(vm) = &vm else {
        // The API server validated the schema; a VM we cannot read is not ours to block.
        // Audit mode puts nothing in the response, not even this.
        if mode != Mode::Audit {
            verdict
                .warnings
                .push("[virt-preflight] the VirtualMachine could not be read; not checked".into());
        }
        return verdict;
    };
    let findings = evaluate(vm, namespace, cluster);
    verdict.evaluated = true;

    // UPDATE ratchets: what the old object already had may warn, never deny.
    let old: HashSet<(RuleId, String)> = match (request.operation, &request.old_object) {
        (Operation::Update, Some(old)) => old
            .vm()
            .map(|old| evaluate(&old, namespace, cluster))
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.rule, f.path))
            .collect(),
        _ => HashSet::new(),
    };

    for finding in findings {
        let mut action = policy.action(finding.rule, finding.severity, mode);
        let pre_existing = old.contains(&(finding.rule, finding.path.clone()));
        if pre_existing && action == Action::Deny {
            action = Action::Warn;
        }
        if action != Action::Off {
            verdict.judged.push(Judged {
                finding,
                action,
                pre_existing,
            });
        }
    }

    let line = |judged: &Judged| {
        format!(
            "[{}] {}: {}",
            judged.finding.rule, judged.finding.path, judged.finding.message
        )
    };
    let denials: Vec<String> = verdict
        .judged
        .iter()
        .filter(|j| j.action == Action::Deny)
        .map(line)
        .collect();
    if !denials.is_empty() {
        verdict.allowed = false;
        verdict.message = Some(format!(
            "virt-preflight denied this VirtualMachine ({} finding{}): {}",
            denials.len(),
            if denials.len() == 1 { "" } else { "s" },
            denials.join("; ")
        ));
    }
    let warnings: Vec<String> = verdict
        .judged
        .iter()
        .filter(|j| j.action == Action::Warn)
        .map(line)
        .collect();
    verdict.warnings = limit_warnings(warnings);
    verdict
}

/// Applies the API server's limits: one line each, at most [`MAX_WARNING_CHARS`] characters,
/// no duplicates, at most [`MAX_WARNINGS_TOTAL_CHARS`] in all, the rest counted in a last
/// `…and N more` warning.
pub fn limit_warnings(warnings: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    let unique: Vec<String> = warnings
        .into_iter()
        .map(|w| one_line(&w, MAX_WARNING_CHARS))
        .filter(|w| seen.insert(w.clone()))
        .collect();
    let total = unique.len();
    let mut kept = Vec::new();
    let mut used = 0;
    for (index, warning) in unique.into_iter().enumerate() {
        let remaining_after = total - index - 1;
        // Room for this one, plus a trailer if any would be left over.
        let trailer = if remaining_after > 0 {
            format!("…and {remaining_after} more").chars().count()
        } else {
            0
        };
        let length = warning.chars().count();
        if used + length + trailer > MAX_WARNINGS_TOTAL_CHARS {
            kept.push(format!("…and {} more", total - index));
            return kept;
        }
        used += length;
        kept.push(warning);
    }
    kept
}

/// A Kubernetes Event to emit about a VM, off the request path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRequest {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub reason: String,
    /// What was done or is failing: `Validate` for the webhook, `Start` for a stuck VM.
    pub action: String,
    pub note: String,
}

pub const PREFLIGHT_EVENT_REASON: &str = "PreflightFindings";

/// The Event for a verdict's warned or audited findings; none for dry runs.
pub fn event_for(verdict: &Verdict, request: &AdmissionRequest) -> Option<EventRequest> {
    // A denied VM is not stored (the user already reads why), and a dry run has no side effects.
    if verdict.dry_run || !verdict.allowed {
        return None;
    }
    let lines: Vec<String> = verdict
        .event_findings()
        .map(|j| {
            format!(
                "[{}] {}: {}",
                j.finding.rule, j.finding.path, j.finding.message
            )
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    let header = request.object.as_ref()?.header();
    let name = request
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or(header.name.map(Cow::into_owned))?;
    // Events carry a note of at most 1 KiB.
    let mut note = format!("{} finding(s): {}", lines.len(), lines.join("; "));
    if note.len() > 1024 {
        note = one_line(&note, 1000);
    }
    Some(EventRequest {
        namespace: request_namespace(request, header.namespace.as_deref()).to_string(),
        name,
        uid: header.uid.map(Cow::into_owned),
        reason: PREFLIGHT_EVENT_REASON.to_string(),
        action: "Validate".to_string(),
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The response as the API server reads it.
    fn sent(verdict: &Verdict) -> Value {
        serde_json::to_value(verdict.to_review()).unwrap()
    }

    fn vm(spec_edit: impl FnOnce(&mut Value)) -> Value {
        let mut vm = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "vm1", "namespace": "ns"},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"devices": {"disks": [{"name": "root", "disk": {}}]}, "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]
            }}}
        });
        spec_edit(&mut vm);
        vm
    }

    /// The request as the API server sends it, read the way the server reads it.
    fn request(operation: &str, object: Value, old: Option<Value>) -> AdmissionRequest {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "uid-1", "namespace": "ns", "name": "vm1", "operation": operation,
                "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
                "object": object, "oldObject": old}
        });
        parse_review(&serde_json::to_vec(&body).unwrap()).unwrap()
    }

    fn broken_disk(vm: &mut Value) {
        vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["name"] = json!("typo");
        vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "root", "disk": {}}));
    }

    #[test]
    fn valid_vm_is_allowed_without_warnings() {
        let verdict = review(
            &request("CREATE", vm(|_| {}), None),
            None,
            &Policy::default(),
        );
        assert!(verdict.allowed);
        assert!(verdict.warnings.is_empty());
        assert_eq!(
            sent(&verdict)["response"],
            json!({"uid": "uid-1", "allowed": true})
        );
    }

    #[test]
    fn errors_deny_with_every_finding_listed() {
        let verdict = review(
            &request("CREATE", vm(broken_disk), None),
            None,
            &Policy::default(),
        );
        assert!(!verdict.allowed);
        let review = sent(&verdict);
        assert_eq!(review["response"]["status"]["code"], 403);
        let message = review["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message
                .contains("[disk-without-volume] spec.template.spec.domain.devices.disks[1].name:"),
            "{message}"
        );
    }

    #[test]
    fn update_ratchets_and_deletion_is_never_denied() {
        let policy = Policy::default();
        let old = vm(broken_disk);
        let same = review(
            &request("UPDATE", old.clone(), Some(old.clone())),
            None,
            &policy,
        );
        assert!(same.allowed);
        assert!(
            same.warnings[0].starts_with("[disk-without-volume] "),
            "{:?}",
            same.warnings
        );
        assert!(same.judged[0].pre_existing);
        let newly = review(
            &request("UPDATE", vm(broken_disk), Some(vm(|_| {}))),
            None,
            &policy,
        );
        assert!(!newly.allowed);
        let mut deleting = vm(broken_disk);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-24T00:00:00Z");
        assert!(
            review(
                &request("UPDATE", deleting, Some(vm(|_| {}))),
                None,
                &policy
            )
            .allowed
        );
    }

    #[test]
    fn other_kinds_and_operations_pass_untouched() {
        let mut other = request("CREATE", vm(broken_disk), None);
        other.kind.kind = "VirtualMachineInstance".into();
        let verdict = review(&other, None, &Policy::default());
        assert!(verdict.allowed && verdict.warnings.is_empty() && !verdict.evaluated);
        let delete = request("DELETE", vm(broken_disk), None);
        assert!(review(&delete, None, &Policy::default()).allowed);
    }

    #[test]
    fn warnings_obey_the_api_server_limits() {
        let many: Vec<String> = (0..200)
            .map(|i| format!("[rule] path[{i}]: {}", "x".repeat(150)))
            .collect();
        let limited = limit_warnings(many);
        assert!(
            limited
                .iter()
                .all(|w| w.chars().count() <= MAX_WARNING_CHARS && !w.contains('\n'))
        );
        let total: usize = limited.iter().map(|w| w.chars().count()).sum();
        assert!(total <= MAX_WARNINGS_TOTAL_CHARS, "{total}");
        let last = limited.last().unwrap();
        assert!(
            last.starts_with("…and ") && last.ends_with(" more"),
            "{last}"
        );
        let shown = limited.len() - 1;
        assert_eq!(last, &format!("…and {} more", 200 - shown));
        let duplicates = limit_warnings(vec!["a".into(), "a".into(), "b".into()]);
        assert_eq!(duplicates, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn an_unreadable_vm_is_allowed_with_a_note_except_in_audit_mode() {
        let unreadable = vm(|vm| {
            vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"] = json!("root");
        });
        let request = request("CREATE", unreadable, None);
        let verdict = review(&request, None, &Policy::default());
        assert!(verdict.allowed && !verdict.evaluated);
        assert_eq!(
            verdict.warnings,
            vec!["[virt-preflight] the VirtualMachine could not be read; not checked".to_string()]
        );
        let audit = review(&request, None, &Policy::parse("mode: audit").unwrap());
        assert!(audit.allowed && !audit.evaluated);
        assert_eq!(
            sent(&audit)["response"],
            json!({"uid": "uid-1", "allowed": true})
        );
    }

    #[test]
    fn a_vm_being_deleted_passes_even_when_it_does_not_fit_the_model() {
        let deleting = vm(|vm| {
            vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"] = json!("root");
            vm["metadata"]["deletionTimestamp"] = json!("2026-11-24T00:00:00Z");
        });
        let verdict = review(
            &request("UPDATE", deleting.clone(), Some(deleting)),
            None,
            &Policy::default(),
        );
        assert!(verdict.allowed && verdict.warnings.is_empty() && !verdict.evaluated);
    }

    #[test]
    fn objects_are_read_with_the_review_unless_one_does_not_fit() {
        let fits = request("UPDATE", vm(broken_disk), Some(vm(|_| {})));
        assert!(matches!(fits.object, Some(ReviewObject::Vm(_))));
        assert!(matches!(fits.old_object, Some(ReviewObject::Vm(_))));
        let unreadable = vm(|vm| vm["spec"]["running"] = json!("yes"));
        // One object that does not fit keeps both as text; the one that fits still reads.
        let kept = request("UPDATE", vm(|_| {}), Some(unreadable.clone()));
        assert!(matches!(kept.object, Some(ReviewObject::Raw(_))));
        assert_eq!(
            kept.object.as_ref().unwrap().vm().unwrap().name(),
            Some("vm1")
        );
        let err = kept.old_object.as_ref().unwrap().vm().unwrap_err();
        assert_eq!(err.path, "spec.running");
        // The header of a text object is read from the text.
        let mut deleting = unreadable;
        deleting["metadata"]["uid"] = json!("u-9");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-24T00:00:00Z");
        let object = request("CREATE", deleting, None).object.unwrap();
        let header = object.header();
        assert_eq!(
            (
                header.name.as_deref(),
                header.uid.as_deref(),
                header.deleting
            ),
            (Some("vm1"), Some("u-9"), true)
        );
        // A malformed review is still one, whatever its object.
        assert!(matches!(
            parse_review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{}}}"#),
            Err(ReviewError::Json(_))
        ));
    }

    /// A review of the VM of `vm()` whose name is `name`, as raw JSON text.
    fn review_text(name: &str) -> Vec<u8> {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE", "object": vm(|_| {})}
        });
        body.to_string()
            .replace(r#""name":"vm1""#, &format!(r#""name":{name}"#))
            .into_bytes()
    }

    #[test]
    fn the_fast_reader_takes_only_what_serde_json_takes_and_reads_it_alike() {
        let reference = |body: &[u8]| {
            parse_holding::<Box<VirtualMachine>>(std::str::from_utf8(body).ok()?).ok()
        };
        // Valid reviews: read by the fast path, into the model serde_json reads.
        let mut valid: Vec<Vec<u8>> = [
            r#""vm1""#,
            r#""v\u0041m \"q\" \\ \/ \n""#,
            "\"v\u{e9}m-\u{1F600}\"",
        ]
        .iter()
        .map(|name| review_text(name))
        .collect();
        valid.push(
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "operation": "UPDATE", "object": vm(broken_disk),
                    "oldObject": vm(|vm| vm["spec"]["x"] = json!([[[{"deep": [1.5, -2e3, null]}]]]))}}))
            .unwrap(),
        );
        for body in &valid {
            let fast =
                parse_fast(body).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(body)));
            let slow = reference(body).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
        // Malformed reviews: left to serde_json.
        let mut refused: Vec<Vec<u8>> = [
            r#""v\ud800m""#,
            r#""v\uDBFFm""#,
            r#""v\udc00m""#,
            r#""v\qm""#,
            "\"v\nm\"",
            r#""vm" "x""#,
            r#""vm",,"#,
            "NaN",
            "01",
            r#""vm" /* c */"#,
        ]
        .iter()
        .map(|name| review_text(name))
        .collect();
        refused.push([review_text(r#""vm""#), b" {}".to_vec()].concat());
        // A struct written as an array longer than the struct: serde_json fails, while simd-json
        // would leave `"k", false` on its tape, read them as a field of `devices`, and lose
        // `disks` (then read as a field of `domain`) without an error.
        let devices = r#""devices":{"disks""#;
        let in_step = r#""devices":{"filesystems":[["fs"]],"disks""#;
        let too_long = r#""devices":{"filesystems":[["fs","k",false]],"disks""#;
        valid.push(
            String::from_utf8(review_text(r#""vm1""#))
                .unwrap()
                .replace(devices, in_step)
                .into_bytes(),
        );
        refused.push(
            String::from_utf8(review_text(r#""vm1""#))
                .unwrap()
                .replace(devices, too_long)
                .into_bytes(),
        );
        refused.push([b"\xef\xbb\xbf".to_vec(), review_text(r#""vm""#)].concat());
        for body in &refused {
            let text = String::from_utf8_lossy(body);
            assert!(reference(body).is_none(), "serde_json takes {text}");
            assert!(parse_fast(body).is_none(), "the fast path takes {text}");
            // serde_json then refuses the review, or keeps an object that does not read as text.
            if let Ok(request) = parse_review(body) {
                assert!(request.object.unwrap().vm().is_err(), "{text}");
            }
        }
        let in_step = valid.last().unwrap();
        assert_eq!(
            format!("{:?}", parse_fast(in_step).unwrap()),
            format!("{:?}", reference(in_step).unwrap())
        );
        // Left to serde_json, which takes them: a surrogate pair (which the API server writes
        // as UTF-8 anyway) and an integer beyond 64 bits.
        let pair = review_text(r#""v\ud83d\ude00m""#);
        assert!(parse_fast(&pair).is_none());
        let object = parse_review(&pair).unwrap().object.unwrap();
        assert_eq!(object.vm().unwrap().name(), Some("v\u{1F600}m"));
        let big = review_text(r#""vm1", "x": 123456789012345678901234567890"#);
        assert!(parse_fast(&big).is_none() && parse_review(&big).is_ok());
    }

    #[test]
    fn parse_review_rejects_what_is_not_a_v1_review() {
        assert!(matches!(parse_review(b"{"), Err(ReviewError::Json(_))));
        assert!(matches!(
            parse_review(b"{\"apiVersion\": \"\xff\"}"),
            Err(ReviewError::Utf8(_))
        ));
        assert!(matches!(
            parse_review(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#),
            Err(ReviewError::WrongType { .. })
        ));
        assert!(matches!(
            parse_review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(ReviewError::NoRequest)
        ));
    }

    #[test]
    fn events_only_for_warned_or_audited_and_never_for_dry_runs() {
        let policy = Policy::parse("mode: audit").unwrap();
        let mut request = request("CREATE", vm(broken_disk), None);
        let verdict = review(&request, None, &policy);
        assert!(verdict.allowed && verdict.warnings.is_empty());
        let event = event_for(&verdict, &request).unwrap();
        assert_eq!(event.reason, PREFLIGHT_EVENT_REASON);
        assert!(event.note.contains("[disk-without-volume]"));
        request.dry_run = Some(true);
        let verdict = review(&request, None, &policy);
        assert!(event_for(&verdict, &request).is_none());
    }

    #[test]
    fn no_event_for_a_denied_vm_that_is_never_stored() {
        let request = request("CREATE", vm(broken_disk), None);
        let verdict = review(&request, None, &Policy::default());
        assert!(!verdict.allowed);
        assert!(event_for(&verdict, &request).is_none());
    }
}
