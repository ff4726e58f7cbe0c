//! The rule engine: a registry of pure rules, each a function from a VM (and, for cluster
//! rules, a cluster view) to findings. No rule does I/O; callers bring the data.
//!
//! One file per rule family. Each rule is one function that can only report its own ID: the
//! engine hands it an [`Emitter`] bound to that ID and the registry's default severity.

mod access;
mod amounts;
mod boot;
mod context;
mod datasource;
mod image;
mod kubevirt;
mod kubevirt_admission;
mod limit_range;
mod migration;
mod network;
mod node_features;
mod quota;
mod references;
mod registry;
mod resources;
mod run_strategy;
mod scheduling;
mod small_set;
mod storage;
mod virt_api;
mod volumes;

use std::collections::BTreeSet;

pub mod finding;

pub use context::{DiskOrigin, EffectiveDisk, Placement, PluginDevice, VmContext};
pub use registry::{Outcome, REGISTRY, RuleId, RuleInfo, Scope, UnknownRuleId};

use crate::cluster::{ClusterView, ObjectKey};
use crate::model::VirtualMachine;
use crate::rules::finding::{Finding, MAX_MESSAGE_CHARS, ObjectRef, Severity, one_line};

/// Annotation that turns rules off for one VM: `virt-preflight.io/skip: rule-a,rule-b`.
pub const SKIP_ANNOTATION: &str = "virt-preflight.io/skip";

/// Signature every rule has.
pub type CheckFn = fn(&VmContext<'_>, &mut Emitter<'_>);

/// Collects one rule's findings.
pub struct Emitter<'a> {
    rule: RuleId,
    severity: Severity,
    object: &'a ObjectRef,
    findings: &'a mut Vec<Finding>,
}

impl Emitter<'_> {
    /// Reports a finding at `path`; returns it so that a fix can be attached.
    pub fn emit(&mut self, path: impl Into<String>, message: impl AsRef<str>) -> &mut Finding {
        self.findings.push(Finding {
            rule: self.rule,
            severity: self.severity,
            object: self.object.clone(),
            path: path.into(),
            message: one_line(message.as_ref(), MAX_MESSAGE_CHARS),
            fix: None,
            missing: Vec::new(),
            assumption: None,
        });
        self.findings.last_mut().expect("just pushed")
    }

    /// Reports that an object the VM names is not in the cluster view; `looked_for` is every
    /// object that would have done (checked again against the API server before a denial).
    pub fn emit_missing(
        &mut self,
        looked_for: Vec<ObjectKey>,
        path: impl Into<String>,
        message: impl AsRef<str>,
    ) -> &mut Finding {
        let finding = self.emit(path, message);
        finding.missing = looked_for;
        finding
    }
}

/// What the engine found for one VM.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    /// Rules the VM's skip annotation turned off (and which were not evaluated).
    pub skipped: Vec<RuleId>,
    /// Entries of the skip annotation that name no rule (reported, otherwise ignored).
    pub unknown_skips: Vec<String>,
}

/// The rules named by the VM's skip annotation, and the entries that name none.
pub fn skip_list(vm: &VirtualMachine) -> (BTreeSet<RuleId>, Vec<String>) {
    let mut skipped = BTreeSet::new();
    let mut unknown = Vec::new();
    if let Some(text) = vm.metadata.annotations.get(SKIP_ANNOTATION) {
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.parse::<RuleId>() {
                Ok(id) => {
                    skipped.insert(id);
                }
                Err(_) => unknown.push(entry.to_string()),
            }
        }
    }
    (skipped, unknown)
}

/// Runs every registered rule on one VM: the spec rules always, the cluster rules where the
/// view knows every kind they need.
pub fn evaluate(
    vm: &VirtualMachine,
    object: &ObjectRef,
    cluster: Option<&ClusterView>,
) -> Evaluation {
    let context = VmContext::new(vm, &object.namespace, cluster);
    evaluate_in(&context, object)
}

/// [`evaluate`] with the manifest as written, so that the manifest rules run too (`check`).
pub fn evaluate_manifest(
    vm: &VirtualMachine,
    manifest: &serde_json::Value,
    object: &ObjectRef,
    cluster: Option<&ClusterView>,
) -> Evaluation {
    let context = VmContext::new(vm, &object.namespace, cluster).with_manifest(manifest);
    evaluate_in(&context, object)
}

/// The questions about clone permissions the API server must answer before the
/// `clone-not-authorized` rule can judge this VM (a caller with a client asks them).
pub fn clone_questions(
    vm: &VirtualMachine,
    namespace: &str,
    cluster: &ClusterView,
) -> Vec<crate::cluster::CloneGrant> {
    datasource::clone_questions(&VmContext::new(vm, namespace, Some(cluster)))
}

/// Runs the rules once on a typical VM so that lazily built state (the image-reference
/// regex) is ready before the first real request: a webhook's first answer should be as fast
/// as its thousandth.
pub fn warm_up() {
    let vm = VirtualMachine::from_value(&serde_json::json!({
        "spec": {"template": {"spec": {"volumes": [
            {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}
        ]}}}
    }));
    if let Ok(vm) = vm {
        let object = ObjectRef {
            kind: "VirtualMachine".into(),
            namespace: "default".into(),
            name: None,
        };
        let _ = evaluate(&vm, &object, None);
    }
}

/// Whether a rule can run with this view (spec rules always can).
pub fn runnable(rule: &RuleInfo, cluster: Option<&ClusterView>) -> bool {
    match rule.scope {
        Scope::Spec | Scope::Manifest => true,
        Scope::Cluster => cluster.is_some_and(|view| view.known().contains_all(rule.needs)),
    }
}

/// Runs every registered rule on a prepared context.
pub fn evaluate_in(context: &VmContext<'_>, object: &ObjectRef) -> Evaluation {
    let (skipped, unknown_skips) = skip_list(context.vm);
    // A VM that will not start as written cannot get stuck until someone starts it: what the
    // cluster lacks warns. Starting it is an UPDATE, judged again (and then as errors).
    let starts = context.vm.will_start();
    let mut findings = Vec::new();
    for rule in REGISTRY {
        if skipped.contains(&rule.id)
            || !runnable(rule, context.cluster)
            || (rule.scope == Scope::Manifest && context.manifest.is_none())
        {
            continue;
        }
        let severity = match rule.scope {
            Scope::Cluster if !starts => Severity::Warning,
            _ => rule.severity,
        };
        let first = findings.len();
        let mut emitter = Emitter {
            rule: rule.id,
            severity,
            object,
            findings: &mut findings,
        };
        (rule.check)(context, &mut emitter);
        // KubeVirt creates a VM's DataVolumes whatever its run strategy: a stopped VM sits in
        // Provisioning on them, which is what KubeVirt's alert counts.
        if severity != rule.severity {
            for finding in &mut findings[first..] {
                if finding.path.starts_with("spec.dataVolumeTemplates") {
                    finding.severity = rule.severity;
                }
            }
        }
    }
    // One finding a field: where a rule of its own names what is wrong with it (a quantity,
    // a name), the schema's generic refusal of the same field is left out.
    if findings.iter().any(|f| f.rule == RuleId::SchemaInvalid) {
        let named: Vec<String> = findings
            .iter()
            .filter(|f| f.rule != RuleId::SchemaInvalid)
            .map(|f| f.path.clone())
            .collect();
        findings.retain(|f| f.rule != RuleId::SchemaInvalid || !named.contains(&f.path));
    }
    Evaluation {
        findings,
        skipped: skipped.into_iter().collect(),
        unknown_skips,
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn skip_annotation_turns_rules_off_and_reports_unknown_entries() {
        let value = valid_vm_with(|vm| {
            vm["spec"]["running"] = json!(true);
            vm["metadata"]["annotations"] =
                json!({SKIP_ANNOTATION: "run-strategy-conflict, no-such-rule"});
        });
        let vm = vm(value);
        let object = ObjectRef {
            kind: "VirtualMachine".into(),
            namespace: "default".into(),
            name: None,
        };
        let evaluation = evaluate(&vm, &object, None);
        assert!(evaluation.findings.is_empty(), "{:?}", evaluation.findings);
        assert_eq!(evaluation.skipped, vec![RuleId::RunStrategyConflict]);
        assert_eq!(evaluation.unknown_skips, vec!["no-such-rule".to_string()]);
    }

    #[test]
    fn a_vm_that_will_not_start_gets_its_cluster_findings_as_warnings() {
        let broken = |vm: &mut serde_json::Value| {
            spec(vm)["volumes"].as_array_mut().unwrap().push(
                json!({"name": "ci", "cloudInitNoCloud": {"secretRef": {"name": "missing"}}}),
            );
            spec(vm)["domain"]["devices"]["disks"][0]["name"] = json!("typo");
        };
        let severities = |strategy: serde_json::Value| {
            let value = valid_vm_with(|vm| {
                broken(vm);
                vm["spec"]["runStrategy"] = strategy;
            });
            let mut found: Vec<(RuleId, Severity)> = findings_in(value, &cluster(BASE_CLUSTER))
                .into_iter()
                .map(|f| (f.rule, f.severity))
                .collect();
            found.sort();
            found
        };
        assert_eq!(
            severities(json!("Always")),
            vec![
                (RuleId::DiskWithoutVolume, Severity::Error),
                (RuleId::SecretNotFound, Severity::Error)
            ]
        );
        // Spec findings keep their severity: KubeVirt rejects those whatever the strategy.
        assert_eq!(
            severities(json!("Halted")),
            vec![
                (RuleId::DiskWithoutVolume, Severity::Error),
                (RuleId::SecretNotFound, Severity::Warning)
            ]
        );
        assert_eq!(severities(json!("Manual")), severities(json!("Always")));
    }

    #[test]
    fn every_message_is_one_short_line() {
        let value = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"][0]["name"] = json!("x".repeat(300));
        });
        for finding in findings(value) {
            assert!(finding.message.chars().count() <= MAX_MESSAGE_CHARS);
            assert!(!finding.message.contains('\n'));
        }
    }
}
