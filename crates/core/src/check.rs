//! `check`: parsed documents in, a report out. Pure apart from what the caller reads.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cluster::{ClusterView, Kind};
use crate::manifest::{Document, InputError, Parsed, Source};
use crate::model::VirtualMachine;
use crate::policy::RuleSetting;
use crate::rules::finding::{DEFAULT_NAMESPACE, Finding, ObjectRef, Severity};
use crate::rules::{self, Evaluation, REGISTRY, RuleId, Scope};

/// Settings that change how objects are read, not which rules run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Namespace of a VM whose manifest names none (kubectl's context namespace).
    pub default_namespace: String,
    /// The cluster to check against; without it only the spec rules run.
    pub cluster: Option<std::sync::Arc<crate::cluster::ClusterView>>,
    /// The webhook's per-rule settings (`check --config`): `off` drops a rule's findings,
    /// `deny` reports them as errors, `warn` as warnings, as the webhook would act on them in
    /// an enforcing namespace.
    pub rules: BTreeMap<RuleId, RuleSetting>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            default_namespace: DEFAULT_NAMESPACE.to_string(),
            cluster: None,
            rules: BTreeMap::new(),
        }
    }
}

/// `findings` as the policy's per-rule settings leave them.
fn apply_rule_settings(findings: &mut Vec<Finding>, settings: &BTreeMap<RuleId, RuleSetting>) {
    if settings.is_empty() {
        return;
    }
    findings.retain_mut(|finding| match settings.get(&finding.rule) {
        Some(RuleSetting::Off) => false,
        Some(RuleSetting::Deny) => {
            finding.severity = Severity::Error;
            true
        }
        Some(RuleSetting::Warn) => {
            finding.severity = Severity::Warning;
            true
        }
        None => true,
    });
}

/// A checked VirtualMachine.
#[derive(Debug, Clone)]
pub struct VmReport {
    pub source: Source,
    pub object: ObjectRef,
    pub evaluation: Evaluation,
}

/// What became of one document of the input.
#[derive(Debug, Clone)]
pub enum Outcome {
    Vm(Box<VmReport>),
    /// Not a VirtualMachine: counted, not checked.
    Skipped {
        source: Source,
        kind: String,
    },
    Invalid(InputError),
}

/// One document, kept whole so that `--fix` can print it again.
#[derive(Debug, Clone)]
pub struct CheckedDocument {
    pub value: Option<Value>,
    pub outcome: Outcome,
}

/// Counts for the summary line and the JSON `summary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// VirtualMachines checked.
    pub objects: usize,
    pub errors: usize,
    pub warnings: usize,
    /// Documents that are not VirtualMachines.
    pub skipped: usize,
    pub input_errors: usize,
}

/// What the cluster view knew, for the report: which kinds, and which rules could not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCoverage {
    /// `false` when no cluster view was given: only the spec rules ran.
    pub view: bool,
    pub known: Vec<Kind>,
    pub unknown: Vec<Kind>,
    /// Cluster rules not run because a kind they need is unknown.
    pub skipped_rules: Vec<RuleId>,
}

impl ClusterCoverage {
    pub fn of(cluster: Option<&ClusterView>) -> Self {
        let skipped_rules = REGISTRY
            .iter()
            .filter(|rule| rule.scope == Scope::Cluster && !rules::runnable(rule, cluster))
            .map(|rule| rule.id)
            .collect();
        let known = cluster.map(ClusterView::known).unwrap_or_default();
        ClusterCoverage {
            view: cluster.is_some(),
            known: known.iter().collect(),
            unknown: Kind::ALL
                .into_iter()
                .filter(|k| !known.contains(*k) && k.only_named().is_none())
                .collect(),
            skipped_rules,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub documents: Vec<CheckedDocument>,
    pub coverage: ClusterCoverage,
}

impl CheckReport {
    pub fn vms(&self) -> impl Iterator<Item = &VmReport> {
        self.documents.iter().filter_map(|d| match &d.outcome {
            Outcome::Vm(vm) => Some(vm.as_ref()),
            _ => None,
        })
    }

    pub fn findings(&self) -> impl Iterator<Item = (&VmReport, &Finding)> {
        self.vms()
            .flat_map(|vm| vm.evaluation.findings.iter().map(move |f| (vm, f)))
    }

    pub fn input_errors(&self) -> impl Iterator<Item = &InputError> {
        self.documents.iter().filter_map(|d| match &d.outcome {
            Outcome::Invalid(err) => Some(err),
            _ => None,
        })
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for document in &self.documents {
            match &document.outcome {
                Outcome::Vm(vm) => {
                    summary.objects += 1;
                    for finding in &vm.evaluation.findings {
                        match finding.severity {
                            Severity::Error => summary.errors += 1,
                            Severity::Warning => summary.warnings += 1,
                        }
                    }
                }
                Outcome::Skipped { .. } => summary.skipped += 1,
                Outcome::Invalid(_) => summary.input_errors += 1,
            }
        }
        summary
    }
}

/// Checks every parsed document.
pub fn check_all(parsed: impl IntoIterator<Item = Parsed>, options: &CheckOptions) -> CheckReport {
    CheckReport {
        coverage: ClusterCoverage::of(options.cluster.as_deref()),
        documents: parsed
            .into_iter()
            .map(|document| match document {
                Ok(document) => check_document(document, options),
                Err(err) => CheckedDocument {
                    value: None,
                    outcome: Outcome::Invalid(err),
                },
            })
            .collect(),
    }
}

pub fn check_document(document: Document, options: &CheckOptions) -> CheckedDocument {
    if !document.is_virtual_machine() {
        let kind = document.kind().unwrap_or("(no kind)").to_string();
        return CheckedDocument {
            outcome: Outcome::Skipped {
                source: document.source,
                kind,
            },
            value: Some(document.value),
        };
    }
    let outcome = match VirtualMachine::from_value(&document.value) {
        Ok(vm) => {
            let object = ObjectRef::virtual_machine(&vm, None, &options.default_namespace);
            let mut evaluation =
                rules::evaluate_manifest(&vm, &document.value, &object, options.cluster.as_deref());
            apply_rule_settings(&mut evaluation.findings, &options.rules);
            Outcome::Vm(Box::new(VmReport {
                source: document.source,
                object,
                evaluation,
            }))
        }
        Err(err) => Outcome::Invalid(InputError::in_document(
            &document.source,
            Some(err.path),
            err.message,
        )),
    };
    CheckedDocument {
        value: Some(document.value),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_text;
    use std::sync::Arc;

    #[test]
    fn counts_vms_others_and_errors() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: vm1}
spec:
  running: true
  template:
    spec:
      domain: {devices: {}, memory: {guest: 1Gi}}
      volumes: [{name: root, containerDisk: {image: quay.io/x/y:1}}]
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: vm2}
spec: {running: maybe}
";
        let report = check_all(
            parse_text(&Arc::from("t.yaml"), text),
            &CheckOptions::default(),
        );
        let summary = report.summary();
        assert_eq!(
            summary,
            Summary {
                objects: 1,
                errors: 0,
                warnings: 1,
                skipped: 1,
                input_errors: 1
            }
        );
        let err = report.input_errors().next().unwrap();
        assert_eq!(err.field.as_deref(), Some("spec.running"));
        assert_eq!(err.document, Some(3));
        let (vm, _) = report.findings().next().unwrap();
        assert_eq!(vm.object.to_string(), "default/vm1");
    }

    #[test]
    fn coverage_serializes_in_camel_case_like_the_rest_of_the_json() {
        let value = serde_json::to_value(ClusterCoverage::of(None)).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["view", "known", "unknown", "skippedRules"]);
    }
}
