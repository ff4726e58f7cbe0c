//! KubeVirt's own manifests (every file of its `examples/`, found through
//! `VIRT_PREFLIGHT_KUBEVIRT_DIR`, read in place and never copied) must get no error from the
//! spec rules alone (no cluster view):
//!
//! - every `VirtualMachine` document, read and checked as `virt-preflight check` does;
//! - every `VirtualMachineInstance`, whose `spec` is wrapped as a VM's `spec.template.spec` with
//!   `runStrategy: Always` (what a VM running that VMI would say).
//!
//! Those manifests run on KubeVirt, so an error on one is a false positive: a bug in a rule.
//! Warnings are allowed (the examples use `:devel` tags, cloud-init disks first, ...). The test
//! counts what it checked so that it cannot pass on an empty or unreadable directory.

mod support;
use support::shared;

use serde_json::{Value, json};
use virt_preflight::check::{CheckOptions, CheckReport, Outcome, check_all, check_document};
use virt_preflight::manifest::{self, Document, ReadOptions, Source};
use virt_preflight::rules::finding::Severity;

/// The 12 VirtualMachines of the examples at the pinned commit (SOURCES.md).
const MIN_VMS: usize = 12;
/// The 22 VirtualMachineInstances of the examples at the pinned commit.
const MIN_VMIS: usize = 22;

/// Every document of KubeVirt's examples (walked as `virt-preflight check <dir>` walks it);
/// `None` when they are not available (the test then skips, saying why); fails on a document
/// that does not parse.
fn example_documents() -> Option<Vec<Document>> {
    let dir = shared::kubevirt_examples()?;
    Some(
        manifest::read_path(&dir, ReadOptions::default())
            .into_iter()
            .map(|parsed| parsed.unwrap_or_else(|err| panic!("example did not parse: {err}")))
            .collect(),
    )
}

/// One line per error-severity finding of the report, empty when there is none.
fn errors(report: &CheckReport) -> Vec<String> {
    report
        .findings()
        .filter(|(_, f)| f.severity == Severity::Error)
        .map(|(vm, f)| {
            format!(
                "{} {}: {} {}: {}",
                vm.source, vm.object, f.rule, f.path, f.message
            )
        })
        .collect()
}

/// Panics on any document that was not read as a checked VirtualMachine.
fn assert_all_checked(report: &CheckReport) {
    for document in &report.documents {
        match &document.outcome {
            Outcome::Vm(_) => {}
            Outcome::Invalid(err) => panic!("not a valid VirtualMachine: {err}"),
            Outcome::Skipped { source, kind } => {
                panic!("{source}: expected a VirtualMachine, got {kind}")
            }
        }
    }
}

#[test]
fn example_vms_get_no_error_from_the_spec_rules() {
    let Some(documents) = example_documents() else {
        return;
    };
    let vms: Vec<_> = documents
        .into_iter()
        .filter(|d| d.kind() == Some("VirtualMachine"))
        .collect();
    for vm in &vms {
        assert!(
            vm.is_virtual_machine(),
            "{}: kind VirtualMachine of an apiVersion the checker does not read ({:?})",
            vm.source,
            vm.api_version()
        );
    }
    let report = check_all(vms.into_iter().map(Ok), &CheckOptions::default());
    assert!(!report.coverage.view, "spec rules only: no cluster view");
    assert_all_checked(&report);
    let checked = report.vms().count();
    assert!(
        checked >= MIN_VMS,
        "expected at least {MIN_VMS} example VMs, checked {checked}"
    );
    let errors = errors(&report);
    assert!(errors.is_empty(), "false errors:\n{}", errors.join("\n"));
}

/// A VM that runs the VMI: its spec as the template spec, its labels on the template.
fn vm_for_vmi(vmi: &Value) -> Value {
    let metadata = &vmi["metadata"];
    let mut vm_metadata = json!({"name": metadata["name"]});
    if let Some(namespace) = metadata.get("namespace") {
        vm_metadata["namespace"] = namespace.clone();
    }
    let mut template = json!({"spec": vmi["spec"]});
    if let Some(labels) = metadata.get("labels") {
        template["metadata"] = json!({"labels": labels});
    }
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": vm_metadata,
        "spec": {"runStrategy": "Always", "template": template}
    })
}

#[test]
fn example_vmis_wrapped_as_vm_templates_get_no_error_from_the_spec_rules() {
    let options = CheckOptions::default();
    let Some(examples) = example_documents() else {
        return;
    };
    let mut documents = Vec::new();
    for vmi in examples
        .into_iter()
        .filter(|d| d.kind() == Some("VirtualMachineInstance"))
    {
        assert!(
            vmi.value["spec"].is_object(),
            "{}: VirtualMachineInstance without a spec",
            vmi.source
        );
        let source: Source = vmi.source.clone();
        documents.push(check_document(
            Document {
                source,
                value: vm_for_vmi(&vmi.value),
            },
            &options,
        ));
    }
    let report = CheckReport {
        documents,
        ..CheckReport::default()
    };
    assert_all_checked(&report);
    let checked = report.vms().count();
    assert!(
        checked >= MIN_VMIS,
        "expected at least {MIN_VMIS} example VMIs, checked {checked}"
    );
    let errors = errors(&report);
    assert!(errors.is_empty(), "false errors:\n{}", errors.join("\n"));
}
