//! `admission.k8s.io/v1` AdmissionReview in, verdict out: a pure function of the request, the
//! cluster view and the policy. The server ([`crate::server`]) does the I/O around it.
//!
//! The envelope is kube-core's (`AdmissionReview`, `AdmissionRequest`, `AdmissionResponse`),
//! read by serde_json in one pass with its objects straight into the model ([`ReviewObject`]
//! implements `kube::Resource` for that): no JSON tree in between. A review whose object does
//! not fit the model is read a second time with its objects as `DynamicObject`s, so that it is
//! still answered and the model's error names the field; a body that is not a review is an
//! error naming where it stops being one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use foldhash::{HashSet, HashSetExt};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, NamespaceResourceScope, ObjectMeta, Resource};
use serde::{Deserialize, Deserializer};

use crate::cluster::{ClusterView, ObjectKey};
use crate::confirm::Confirmation;
use crate::events::EventRequest;
use crate::model::{self, ModelError, VirtualMachine};
use crate::policy::{Action, Mode, Policy};
use crate::rules::finding::{
    DEFAULT_NAMESPACE, Finding, ObjectRef, Severity, one_line, vm_namespace,
};
use crate::rules::{self, RuleId};

/// The API server's limits on the warnings of a response. Webhook warnings go to the request's
/// warning recorder unchanged (apiserver `admission/plugin/webhook/validating/dispatcher.go`),
/// which keeps every warning whole while they add up to at most 4,096 characters, and past
/// that cuts every one to 256 (`endpoints/filters/warning.go`, `truncateAtTotalRunes` and
/// `truncateItemRunes`, in runes: Rust `char`s). A warning with a control character is dropped
/// (`util/net.NewWarningHeader`). Within these limits the API server passes ours on as written.
pub const MAX_WARNING_CHARS: usize = 256;
pub const MAX_WARNINGS_TOTAL_CHARS: usize = 4096;

/// A request of a review, as the webhook reads it.
pub type Request = AdmissionRequest<ReviewObject>;

/// An object carried by a review.
#[derive(Debug, Clone)]
pub enum ReviewObject {
    /// Read into the model while the review was read: the common case, one pass.
    Vm(Box<FittedVm>),
    /// An object of a review whose objects did not all fit the model; reading it into the
    /// model again names the field where it stops fitting.
    Unfit(Box<DynamicObject>),
}

/// A VM read into the model with the review.
#[derive(Debug, Clone)]
pub struct FittedVm {
    pub vm: VirtualMachine,
    /// `kube::Resource`'s metadata, built from the model's only if asked for (nothing on the
    /// request path asks): the model keeps slimmer metadata of its own.
    meta: OnceLock<ObjectMeta>,
}

impl<'de> Deserialize<'de> for ReviewObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ReviewObject::Vm(Box::new(FittedVm {
            vm: VirtualMachine::deserialize(deserializer)?,
            meta: OnceLock::new(),
        })))
    }
}

/// The webhook reviews `kubevirt.io/v1` VirtualMachines.
impl Resource for ReviewObject {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        crate::model::VM_KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        crate::model::KUBEVIRT_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        crate::model::KUBEVIRT_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        crate::model::VM_PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            ReviewObject::Vm(fitted) => {
                fitted.meta.get_or_init(|| object_meta(&fitted.vm.metadata))
            }
            ReviewObject::Unfit(object) => &object.metadata,
        }
    }

    /// For a VM read into the model, a copy built from the model's metadata: the rules read
    /// the model's, so a change here does not reach them.
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            ReviewObject::Vm(fitted) => {
                fitted.meta.get_or_init(|| object_meta(&fitted.vm.metadata));
                match fitted.meta.get_mut() {
                    Some(meta) => meta,
                    None => unreachable!("initialised on the line above"),
                }
            }
            ReviewObject::Unfit(object) => &mut object.metadata,
        }
    }
}

/// The model's metadata as Kubernetes' `ObjectMeta` (the fields the model keeps).
fn object_meta(metadata: &model::ObjectMeta) -> ObjectMeta {
    let text = |field: &Option<compact_str::CompactString>| field.as_deref().map(str::to_string);
    ObjectMeta {
        name: text(&metadata.name),
        generate_name: text(&metadata.generate_name),
        namespace: text(&metadata.namespace),
        uid: text(&metadata.uid),
        annotations: (!metadata.annotations.is_empty()).then(|| {
            metadata
                .annotations
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        }),
        deletion_timestamp: metadata
            .deletion_timestamp
            .as_deref()
            .and_then(|time| time.parse().ok())
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
        ..ObjectMeta::default()
    }
}

impl ReviewObject {
    /// The VM, as read with the review or read now from the object.
    pub fn vm(&self) -> Result<Cow<'_, VirtualMachine>, ModelError> {
        match self {
            ReviewObject::Vm(fitted) => Ok(Cow::Borrowed(&fitted.vm)),
            ReviewObject::Unfit(object) => {
                let value = serde_json::to_value(object).map_err(|err| ModelError {
                    path: "(document)".to_string(),
                    message: err.to_string(),
                })?;
                VirtualMachine::from_value(&value).map(Cow::Owned)
            }
        }
    }

    /// The metadata the webhook needs whether or not the object fits the model.
    fn header(&self) -> ObjectHeader<'_> {
        match self {
            ReviewObject::Vm(fitted) => ObjectHeader {
                name: fitted.vm.metadata.name.as_deref(),
                namespace: fitted.vm.metadata.namespace.as_deref(),
                uid: fitted.vm.metadata.uid.as_deref(),
                deleting: fitted.vm.metadata.deletion_timestamp.is_some(),
            },
            ReviewObject::Unfit(object) => ObjectHeader {
                name: object.metadata.name.as_deref(),
                namespace: object.metadata.namespace.as_deref(),
                uid: object.metadata.uid.as_deref(),
                deleting: object.metadata.deletion_timestamp.is_some(),
            },
        }
    }
}

/// Name, namespace, uid and whether the object is being deleted.
#[derive(Debug, Default)]
struct ObjectHeader<'a> {
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    uid: Option<&'a str>,
    deleting: bool,
}

/// Why a request body is not a review we can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// serde_json's error, at the field where the body stops being a review.
    #[error("not an AdmissionReview: {0}")]
    Json(String),
    #[error("not an AdmissionReview: the body is not UTF-8 ({0})")]
    Utf8(#[from] std::str::Utf8Error),
    #[error(
        "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {api_version}/{kind}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Reads a request body into the review's request, with its objects in the model where they
/// fit it (see the module's documentation).
pub fn parse_review(body: &[u8]) -> Result<Request, ReviewError> {
    // JSON is UTF-8 (RFC 8259); checked once here, not string by string while parsing.
    let body = std::str::from_utf8(body)?;
    if let Ok(review) = serde_json::from_str::<AdmissionReview<ReviewObject>>(body) {
        return request_of(review);
    }
    // Off the common path: the same reading with the objects kept whole, tracking the path
    // so that a body that is no review says where.
    let mut reader = serde_json::Deserializer::from_str(body);
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(&mut reader)
        .map_err(|err| match err.path().to_string().as_str() {
            "." => ReviewError::Json(err.inner().to_string()),
            path => ReviewError::Json(format!("{path}: {}", err.inner())),
        })?;
    reader
        .end()
        .map_err(|err| ReviewError::Json(err.to_string()))?;
    request_of(review).map(unfit)
}

/// The request of a review of the one type the webhook serves.
fn request_of<O: Resource>(review: AdmissionReview<O>) -> Result<AdmissionRequest<O>, ReviewError> {
    if review.types.api_version != "admission.k8s.io/v1" || review.types.kind != "AdmissionReview" {
        return Err(ReviewError::WrongType {
            api_version: review.types.api_version,
            kind: review.types.kind,
        });
    }
    review.try_into().map_err(|_| ReviewError::NoRequest)
}

/// A request whose objects are kept whole.
fn unfit(request: AdmissionRequest<DynamicObject>) -> Request {
    let keep = |object: Option<DynamicObject>| object.map(|o| ReviewObject::Unfit(Box::new(o)));
    AdmissionRequest {
        types: request.types,
        uid: request.uid,
        kind: request.kind,
        resource: request.resource,
        sub_resource: request.sub_resource,
        request_kind: request.request_kind,
        request_resource: request.request_resource,
        request_sub_resource: request.request_sub_resource,
        name: request.name,
        namespace: request.namespace,
        operation: request.operation,
        user_info: request.user_info,
        object: keep(request.object),
        old_object: keep(request.old_object),
        dry_run: request.dry_run,
        options: request.options,
    }
}

/// A finding and what the policy made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub finding: Finding,
    pub action: Action,
    /// The old object had it already (UPDATE): it may warn, never deny.
    pub pre_existing: bool,
    /// A denial that rested on the cluster view and was turned into a warning: the data it
    /// rests on may be behind the API server (its watch is failing), or the API server could
    /// not confirm that the missing object is missing. Why, for the warning.
    pub softened: Option<String>,
}

/// The webhook's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// Denial message: every denying finding in its one-line form.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// What was found, for metrics and Events.
    pub judged: Vec<Judged>,
    pub mode: Option<Mode>,
    /// Whether the request was a VirtualMachine CREATE/UPDATE that the rules looked at.
    pub evaluated: bool,
}

impl Verdict {
    /// Allowed, with nothing to say.
    pub fn allow() -> Verdict {
        Verdict {
            allowed: true,
            message: None,
            warnings: Vec::new(),
            judged: Vec::new(),
            mode: None,
            evaluated: false,
        }
    }

    /// The findings that should become an Event: those that warn or are audited.
    pub fn event_findings(&self) -> impl Iterator<Item = &Judged> {
        self.judged
            .iter()
            .filter(|j| matches!(j.action, Action::Warn | Action::Audit))
    }

    /// The objects that denying findings say are missing: what to ask the API server about
    /// before the denial stands.
    pub fn to_confirm(&self) -> BTreeSet<ObjectKey> {
        self.judged
            .iter()
            .filter(|j| j.action == Action::Deny)
            .flat_map(|j| j.finding.missing.iter().cloned())
            .collect()
    }

    /// Applies what the API server said of the missing objects: a finding one of whose objects
    /// exists is dropped (the view was behind); one whose every object is confirmed absent
    /// keeps denying; one left unanswered warns instead. The answer is shaped again.
    pub fn confirm(&mut self, answers: &BTreeMap<ObjectKey, Confirmation>) {
        self.judged.retain_mut(|judged| {
            if judged.action != Action::Deny || judged.finding.missing.is_empty() {
                return true;
            }
            let answer = |key: &ObjectKey| answers.get(key).cloned();
            let said: Vec<Option<Confirmation>> =
                judged.finding.missing.iter().map(answer).collect();
            if said.contains(&Some(Confirmation::Present)) {
                return false;
            }
            let unanswered = said.iter().find_map(|answer| match answer {
                Some(Confirmation::Absent) => None,
                Some(Confirmation::Unanswered(why)) => Some(why.clone()),
                _ => Some("not asked".to_string()),
            });
            if let Some(why) = unanswered {
                judged.action = Action::Warn;
                judged.softened = Some(format!("not confirmed with the API server: {why}"));
            }
            true
        });
        self.shape();
    }

    /// The denial message and warnings from what is judged.
    fn shape(&mut self) {
        let lines = |action: Action| -> Vec<String> {
            self.judged
                .iter()
                .filter(|j| j.action == action)
                .map(|j| match &j.softened {
                    Some(why) => format!("{} ({why})", j.finding),
                    None => j.finding.to_string(),
                })
                .collect()
        };
        let denials = lines(Action::Deny);
        let warnings = lines(Action::Warn);
        self.allowed = denials.is_empty();
        self.message = (!denials.is_empty()).then(|| {
            format!(
                "virt-preflight denied this VirtualMachine ({} finding{}): {}",
                denials.len(),
                if denials.len() == 1 { "" } else { "s" },
                denials.join("; ")
            )
        });
        self.warnings = limit_warnings(warnings);
    }

    /// The response to `request`: a denial is 403 Forbidden with the message.
    pub fn response(&self, request: &Request) -> AdmissionResponse {
        let mut response = AdmissionResponse::from(request);
        if let Some(message) = &self.message {
            response = response.deny(message);
            response.result.code = 403;
            response.result.reason = "Forbidden".to_string();
        }
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings.clone());
        }
        response
    }
}

/// The VM-shaped request: group `kubevirt.io`, kind `VirtualMachine`, CREATE or UPDATE.
fn is_vm_write(request: &Request) -> bool {
    use kube::core::admission::Operation;
    request.kind.group == "kubevirt.io"
        && request.kind.kind == "VirtualMachine"
        && matches!(request.operation, Operation::Create | Operation::Update)
}

fn evaluate(vm: &VirtualMachine, request: &Request, cluster: Option<&ClusterView>) -> Vec<Finding> {
    let object = ObjectRef::virtual_machine(vm, request.namespace.as_deref(), DEFAULT_NAMESPACE);
    rules::evaluate(vm, &object, cluster).findings
}

/// What an UPDATE's old and new findings are matched by: the rule, how bad, what it is about
/// (the named items of its path: a disk inserted before another does not make the other's
/// problem look new) and the objects it found missing (naming another missing Secret is a new
/// problem). The severity is part of it: starting a Halted VM turns its cluster warnings into
/// errors, and that start is judged like a new VM.
type RatchetKey = (RuleId, Severity, String, Vec<ObjectKey>);

fn ratchet_key(vm: &VirtualMachine, finding: &Finding) -> RatchetKey {
    (
        finding.rule,
        finding.severity,
        vm.named_path(&finding.path),
        finding.missing.clone(),
    )
}

/// What the old object of an UPDATE already had.
enum OldFindings {
    /// Not an UPDATE (or no old object): nothing pre-exists.
    None,
    Keys(HashSet<RatchetKey>),
    /// The old object could not be read: every finding counts as pre-existing (fail open).
    Unreadable,
}

impl OldFindings {
    fn of(request: &Request, cluster: Option<&ClusterView>) -> OldFindings {
        let (kube::core::admission::Operation::Update, Some(old)) =
            (&request.operation, &request.old_object)
        else {
            return OldFindings::None;
        };
        match old.vm() {
            Ok(old) => OldFindings::Keys(
                evaluate(&old, request, cluster)
                    .iter()
                    .map(|f| ratchet_key(&old, f))
                    .collect(),
            ),
            Err(_) => OldFindings::Unreadable,
        }
    }

    fn contains(&self, key: &RatchetKey) -> bool {
        match self {
            OldFindings::None => false,
            OldFindings::Keys(keys) => keys.contains(key),
            OldFindings::Unreadable => true,
        }
    }
}

/// The policy mode that applies to a request; cheap, so a failed review can still honour it.
pub fn mode_for_request(request: &Request, cluster: Option<&ClusterView>, policy: &Policy) -> Mode {
    let header = request.object.as_ref().map(ReviewObject::header);
    let namespace = vm_namespace(
        request.namespace.as_deref(),
        header.and_then(|h| h.namespace),
        DEFAULT_NAMESPACE,
    );
    policy.mode_for(cluster.and_then(|c| c.namespace_mode(namespace)))
}

/// Decides one admission request against the view as it is. A denial for a missing object
/// stands only once the API server confirms it ([`Verdict::confirm`]); a denial that rests on a
/// kind whose watch is failing warns instead.
pub fn review(request: &Request, cluster: Option<&ClusterView>, policy: &Policy) -> Verdict {
    let mut verdict = Verdict::allow();
    if !is_vm_write(request) {
        return verdict;
    }
    let Some(object) = &request.object else {
        return verdict;
    };
    let header = object.header();
    if header.deleting {
        return verdict; // never stand in the way of a deletion's finalizer updates
    }
    let namespace = vm_namespace(
        request.namespace.as_deref(),
        header.namespace,
        DEFAULT_NAMESPACE,
    );
    let mode = policy.mode_for(cluster.and_then(|c| c.namespace_mode(namespace)));
    verdict.mode = Some(mode);
    let Ok(vm) = object.vm() else {
        // The API server validated the schema; a VM we cannot read is not ours to block.
        // Audit mode puts nothing in the response, not even this.
        if mode != Mode::Audit {
            verdict
                .warnings
                .push("[virt-preflight] the VirtualMachine could not be read; not checked".into());
        }
        return verdict;
    };
    let findings = evaluate(&vm, request, cluster);
    verdict.evaluated = true;
    let old = OldFindings::of(request, cluster);
    let stale = cluster.map(ClusterView::stale).unwrap_or_default();

    for finding in findings {
        let mut action = policy.action(finding.rule, finding.severity, mode);
        // UPDATE ratchets: what the old object already had may warn, never deny.
        let pre_existing = old.contains(&ratchet_key(&vm, &finding));
        if pre_existing && action == Action::Deny {
            action = Action::Warn;
        }
        // No fresh data, no denial: a kind whose watch is failing may be behind. A missing
        // object is asked for anyway (the API server is the fresh data); anything else warns.
        let mut softened = None;
        let behind: Vec<&str> = finding
            .rule
            .info()
            .needs
            .iter()
            .filter(|kind| stale.contains(**kind))
            .map(|kind| kind.as_str())
            .collect();
        if action == Action::Deny && !behind.is_empty() && finding.missing.is_empty() {
            action = Action::Warn;
            softened = Some(format!("the view of {} may be behind", behind.join(", ")));
        }
        if action != Action::Off {
            verdict.judged.push(Judged {
                finding,
                action,
                pre_existing,
                softened,
            });
        }
    }
    verdict.shape();
    verdict
}

/// Shapes warnings so that the API server passes them on as written ([`MAX_WARNING_CHARS`]):
/// one line each, at most 256 characters (a finding's line ends with its path, so a cut falls
/// there), no duplicates, at most 4,096 characters in all, the rest counted in a last
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

pub const PREFLIGHT_EVENT_REASON: &str = "PreflightFindings";

/// The Event for a verdict's warned or audited findings; none for dry runs.
pub fn event_for(verdict: &Verdict, request: &Request) -> Option<EventRequest> {
    // A denied VM is not stored (the user already reads why), and a dry run has no side effects.
    if request.dry_run || !verdict.allowed {
        return None;
    }
    let lines: Vec<String> = verdict
        .event_findings()
        .map(|j| j.finding.to_string())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let header = request.object.as_ref()?.header();
    let name = Some(request.name.as_str())
        .filter(|n| !n.is_empty())
        .or(header.name)
        .filter(|n| !n.is_empty())?;
    // Events carry a note of at most 1 KiB.
    let mut note = format!("{} finding(s): {}", lines.len(), lines.join("; "));
    if note.len() > 1024 {
        note = one_line(&note, 1000);
    }
    Some(EventRequest {
        namespace: vm_namespace(
            request.namespace.as_deref(),
            header.namespace,
            DEFAULT_NAMESPACE,
        )
        .to_string(),
        name: name.to_string(),
        uid: header.uid.map(str::to_string),
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
    fn sent(verdict: &Verdict, request: &Request) -> Value {
        serde_json::to_value(verdict.response(request).into_review()).unwrap()
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

    /// A review as the API server sends it.
    fn body(operation: &str, object: Value, old: Option<Value>) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "uid-1", "namespace": "ns", "name": "vm1", "operation": operation,
                "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
                "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
                "userInfo": {"username": "admin"},
                "object": object, "oldObject": old}
        })
    }

    /// The request of [`body`], read the way the server reads it.
    fn request(operation: &str, object: Value, old: Option<Value>) -> Request {
        parse_review(&serde_json::to_vec(&body(operation, object, old)).unwrap()).unwrap()
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
        let request = request("CREATE", vm(|_| {}), None);
        let verdict = review(&request, None, &Policy::default());
        assert!(verdict.allowed);
        assert!(verdict.warnings.is_empty());
        assert_eq!(
            sent(&verdict, &request),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": "uid-1", "allowed": true, "status": {}}})
        );
    }

    #[test]
    fn errors_deny_with_every_finding_listed() {
        let request = request("CREATE", vm(broken_disk), None);
        let verdict = review(&request, None, &Policy::default());
        assert!(!verdict.allowed);
        let review = sent(&verdict, &request);
        assert_eq!(review["response"]["status"]["code"], 403);
        assert_eq!(review["response"]["status"]["reason"], "Forbidden");
        let message = review["response"]["status"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            format!(
                "virt-preflight denied this VirtualMachine (1 finding): {}",
                verdict.judged[0].finding
            )
        );
        assert!(
            message.ends_with(" — spec.template.spec.domain.devices.disks[1].name"),
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

    /// A disk inserted before the broken one shifts its index: the old problem is still old.
    #[test]
    fn the_ratchet_matches_findings_by_what_they_are_about_not_by_index() {
        let policy = Policy::default();
        let old = vm(broken_disk);
        let mut shifted = old.clone();
        let spec = &mut shifted["spec"]["template"]["spec"];
        spec["domain"]["devices"]["disks"]
            .as_array_mut()
            .unwrap()
            .insert(1, json!({"name": "data", "disk": {}}));
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "data", "emptyDisk": {"capacity": "1Gi"}}));
        let verdict = review(&request("UPDATE", shifted, Some(old)), None, &policy);
        assert!(verdict.allowed, "{:?}", verdict.message);
        assert_eq!(
            verdict.judged[0].finding.path, "spec.template.spec.domain.devices.disks[2].name",
            "the broken disk moved"
        );
        assert!(
            verdict.judged.iter().all(|j| j.pre_existing),
            "{:?}",
            verdict.judged
        );
    }

    #[test]
    fn an_old_object_that_cannot_be_read_makes_every_finding_pre_existing() {
        let unreadable = vm(|vm| {
            vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"] = json!("root");
        });
        let verdict = review(
            &request("UPDATE", vm(broken_disk), Some(unreadable)),
            None,
            &Policy::default(),
        );
        assert!(verdict.allowed, "fail open: {:?}", verdict.message);
        assert!(verdict.judged[0].pre_existing);
    }

    /// A cluster where the VM's cloud-init Secret does not exist.
    fn no_secrets() -> ClusterView {
        let mut builder = crate::cluster::ViewBuilder::new();
        builder.mark_known(crate::cluster::Kind::Secret);
        builder.build()
    }

    fn naming_a_secret(strategy: &str) -> Value {
        vm(|vm| {
            vm["spec"]["runStrategy"] = json!(strategy);
            vm["spec"]["template"]["spec"]["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "ci", "cloudInitNoCloud": {"secretRef": {"name": "creds"}}}));
        })
    }

    #[test]
    fn starting_a_halted_vm_is_judged_like_a_new_one() {
        let policy = Policy::default();
        let view = no_secrets();
        let halted = naming_a_secret("Halted");
        let created = review(
            &request("CREATE", halted.clone(), None),
            Some(&view),
            &policy,
        );
        assert!(created.allowed, "a Halted VM cannot get stuck: it warns");
        assert_eq!(created.warnings.len(), 1, "{:?}", created.warnings);
        // `virtctl start`: virt-api patches runStrategy to Always.
        let started = review(
            &request("UPDATE", naming_a_secret("Always"), Some(halted)),
            Some(&view),
            &policy,
        );
        assert!(!started.allowed);
        assert!(!started.judged[0].pre_existing);
        let key = ObjectKey::new(crate::cluster::Kind::Secret, "ns", "creds");
        assert_eq!(started.to_confirm(), BTreeSet::from([key]));
    }

    #[test]
    fn only_a_confirmed_absence_denies() {
        let policy = Policy::default();
        let view = no_secrets();
        let request = request("CREATE", naming_a_secret("Always"), None);
        let key = ObjectKey::new(crate::cluster::Kind::Secret, "ns", "creds");
        let judged = review(&request, Some(&view), &policy);
        assert!(!judged.allowed);
        let answered = |answer: Confirmation| {
            let mut verdict = judged.clone();
            verdict.confirm(&BTreeMap::from([(key.clone(), answer)]));
            verdict
        };
        // Created a moment ago, in the same apply: the view had not heard of it yet.
        let present = answered(Confirmation::Present);
        assert!(present.allowed && present.warnings.is_empty() && present.judged.is_empty());
        let absent = answered(Confirmation::Absent);
        assert!(!absent.allowed);
        assert!(
            absent
                .message
                .as_deref()
                .unwrap()
                .contains("[secret-not-found]"),
            "{:?}",
            absent.message
        );
        let unanswered = answered(Confirmation::Unanswered("no answer in time".into()));
        assert!(unanswered.allowed);
        assert_eq!(unanswered.judged[0].action, Action::Warn);
        assert!(
            unanswered.warnings[0].contains("not confirmed with the API server: no answer in time"),
            "{:?}",
            unanswered.warnings
        );
        // Nothing asked: the same as no answer.
        let mut unasked = judged.clone();
        unasked.confirm(&BTreeMap::new());
        assert!(unasked.allowed);
    }

    #[test]
    fn a_denial_resting_on_a_kind_whose_watch_fails_warns() {
        let mut builder = crate::cluster::ViewBuilder::new();
        builder
            .add(
                crate::cluster::Kind::Node,
                &json!({"metadata": {"name": "n", "labels": {"kubevirt.io/schedulable": "true"}},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            )
            .unwrap();
        let pinned = vm(|vm| {
            vm["spec"]["template"]["spec"]["nodeSelector"] = json!({"gpu": "a100"});
        });
        let request = request("CREATE", pinned, None);
        let fresh = review(&request, Some(&builder.view()), &Policy::default());
        assert!(!fresh.allowed);
        builder.set_stale(crate::cluster::Kind::Node, true);
        let stale = review(&request, Some(&builder.view()), &Policy::default());
        assert!(stale.allowed);
        assert!(
            stale.warnings[0].contains("(the view of Node may be behind)"),
            "{:?}",
            stale.warnings
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
            .map(|i| format!("[rule] message {i} — {}", "x".repeat(300)))
            .collect();
        let limited = limit_warnings(many);
        assert!(
            limited
                .iter()
                .all(|w| w.chars().count() <= MAX_WARNING_CHARS && !w.contains('\n'))
        );
        assert!(limited[0].starts_with("[rule] message 0 — xxx") && limited[0].ends_with("x…"));
        let total: usize = limited.iter().map(|w| w.chars().count()).sum();
        assert!(total <= MAX_WARNINGS_TOTAL_CHARS, "{total}");
        let last = limited.last().unwrap();
        let shown = limited.len() - 1;
        assert_eq!(last, &format!("…and {} more", 200 - shown));
        // As many as fit: 16 of 256 characters would leave no room for the trailer.
        assert_eq!(shown, 15);
        let duplicates = limit_warnings(vec!["a".into(), "a".into(), "b".into()]);
        assert_eq!(duplicates, vec!["a".to_string(), "b".to_string()]);
        // A warning with a line break would be dropped by the API server: it becomes one line.
        assert_eq!(limit_warnings(vec!["a\nb".into()]), vec!["a b".to_string()]);
    }

    #[test]
    fn a_warning_keeps_its_message_and_loses_the_end_of_a_long_path() {
        let request = request("CREATE", vm(broken_disk), None);
        let mut finding = review(&request, None, &Policy::default()).judged[0]
            .finding
            .clone();
        finding.path = format!("spec.template.spec.{}", "x".repeat(300));
        let warned = limit_warnings(vec![finding.to_string()]);
        let kept = format!(
            "[disk-without-volume] {} — spec.template.spec.x",
            finding.message
        );
        assert!(warned[0].starts_with(&kept), "{warned:?}");
        assert_eq!(warned[0].chars().count(), MAX_WARNING_CHARS);
        assert!(warned[0].ends_with("x…"), "{warned:?}");
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
            sent(&audit, &request)["response"],
            json!({"uid": "uid-1", "allowed": true, "status": {}})
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
        // One object that does not fit keeps both whole; the one that fits still reads.
        let kept = request("UPDATE", vm(|_| {}), Some(unreadable.clone()));
        assert!(matches!(kept.object, Some(ReviewObject::Unfit(_))));
        assert_eq!(
            kept.object.as_ref().unwrap().vm().unwrap().name(),
            Some("vm1")
        );
        let err = kept.old_object.as_ref().unwrap().vm().unwrap_err();
        assert_eq!(err.path, "spec.running");
        // The header of an object kept whole is its metadata.
        let mut deleting = unreadable;
        deleting["metadata"]["uid"] = json!("u-9");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-24T00:00:00Z");
        let object = request("CREATE", deleting, None).object.unwrap();
        let header = object.header();
        assert_eq!(
            (header.name, header.namespace, header.uid, header.deleting),
            (Some("vm1"), Some("ns"), Some("u-9"), true)
        );
    }

    #[test]
    fn a_vm_read_into_the_model_is_a_kube_resource_with_its_metadata() {
        let mut object = vm(|vm| {
            vm["metadata"]["uid"] = json!("u-1");
            vm["metadata"]["annotations"] = json!({"a": "b"});
            vm["metadata"]["deletionTimestamp"] = json!("2026-11-24T00:00:00Z");
        });
        object["metadata"]["labels"] = json!({"app": "web"});
        let mut read = request("CREATE", object, None).object.unwrap();
        assert!(matches!(read, ReviewObject::Vm(_)));
        assert_eq!(
            ReviewObject::url_path(&(), Some("ns")),
            "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines"
        );
        let meta = read.meta();
        assert_eq!(
            (
                meta.name.as_deref(),
                meta.namespace.as_deref(),
                meta.uid.as_deref()
            ),
            (Some("vm1"), Some("ns"), Some("u-1"))
        );
        assert_eq!(meta.annotations.as_ref().unwrap()["a"], "b");
        assert_eq!(
            meta.deletion_timestamp.as_ref().unwrap().0.to_string(),
            "2026-11-24T00:00:00Z"
        );
        read.meta_mut().name = Some("renamed".into());
        assert_eq!(read.meta().name.as_deref(), Some("renamed"));
    }

    #[test]
    fn a_body_that_is_no_review_says_where() {
        let error = |body: Value| {
            parse_review(&serde_json::to_vec(&body).unwrap())
                .unwrap_err()
                .to_string()
        };
        let mut no_uid = body("CREATE", vm(|_| {}), None);
        no_uid["request"].as_object_mut().unwrap().remove("uid");
        let message = error(no_uid);
        assert!(
            message.starts_with("not an AdmissionReview: request: missing field `uid` at line 1"),
            "{message}"
        );
        // A name that is not a string fits neither the model nor Kubernetes' ObjectMeta.
        let mut bad_name = body("CREATE", vm(|_| {}), None);
        bad_name["request"]["object"]["metadata"]["name"] = json!(5);
        let message = error(bad_name);
        assert!(
            message
                .starts_with("not an AdmissionReview: request.object.metadata.name: invalid type"),
            "{message}"
        );
        let mut bad_operation = body("CREATE", vm(|_| {}), None);
        bad_operation["request"]["operation"] = json!("PATCH");
        let message = error(bad_operation);
        assert!(
            message
                .starts_with("not an AdmissionReview: request.operation: unknown variant `PATCH`"),
            "{message}"
        );
        // Trailing text after the review is not a review either.
        let mut text = serde_json::to_vec(&body("CREATE", vm(|_| {}), None)).unwrap();
        text.extend_from_slice(b" {}");
        assert!(matches!(parse_review(&text), Err(ReviewError::Json(_))));
    }

    /// A review of the VM of `vm()` whose `metadata.name` is written as `name`, as JSON text.
    fn review_text(name: &str) -> Vec<u8> {
        body("CREATE", vm(|_| {}), None)
            .to_string()
            .replace(r#""name":"vm1""#, &format!(r#""name":{name}"#))
            .into_bytes()
    }

    #[test]
    fn json_that_is_not_json_is_refused_and_json_reads_as_json_says() {
        // Not JSON (RFC 8259) at the object's name: the review is refused, or the object is
        // kept whole and does not read; never read as something else.
        let mut refused: Vec<Vec<u8>> = [
            r#""v\ud800m""#,
            r#""v\udc00m""#,
            r#""v\qm""#,
            "\"v\nm\"",
            r#""vm" "x""#,
            "NaN",
            "01",
            r#""vm" /* c */"#,
        ]
        .iter()
        .map(|name| review_text(name))
        .collect();
        refused.push([review_text(r#""vm""#), b" {}".to_vec()].concat());
        refused.push([b"\xef\xbb\xbf".to_vec(), review_text(r#""vm""#)].concat());
        for text in &refused {
            let shown = String::from_utf8_lossy(text);
            if let Ok(request) = parse_review(text) {
                assert!(request.object.unwrap().vm().is_err(), "{shown}");
            }
        }
        // JSON as it is written: escapes, a surrogate pair, UTF-8, and a number beyond 64 bits
        // in a field the model does not read.
        for (name, read) in [
            (r#""v\u0041m \"q\" \\ \/""#, "vAm \"q\" \\ /"),
            (r#""v\ud83d\ude00m""#, "v\u{1F600}m"),
            ("\"v\u{e9}m\"", "v\u{e9}m"),
            (r#""vm", "x": 123456789012345678901234567890"#, "vm"),
        ] {
            let request = parse_review(&review_text(name)).unwrap();
            assert!(
                matches!(request.object, Some(ReviewObject::Vm(_))),
                "{name}"
            );
            assert_eq!(request.object.unwrap().vm().unwrap().name(), Some(read));
        }
    }

    #[test]
    fn parse_review_rejects_what_is_not_a_v1_review() {
        assert!(matches!(parse_review(b"{"), Err(ReviewError::Json(_))));
        assert!(matches!(
            parse_review(b"{\"apiVersion\": \"\xff\"}"),
            Err(ReviewError::Utf8(_))
        ));
        let mut v1beta1 = body("CREATE", vm(|_| {}), None);
        v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
        assert!(matches!(
            parse_review(&serde_json::to_vec(&v1beta1).unwrap()),
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
        assert_eq!(
            (event.namespace.as_str(), event.name.as_str()),
            ("ns", "vm1")
        );
        assert_eq!(
            event.note,
            format!("1 finding(s): {}", verdict.judged[0].finding)
        );
        request.dry_run = true;
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
