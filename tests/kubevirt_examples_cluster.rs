//! Every VirtualMachine of KubeVirt's own examples, checked against a cluster that has what it
//! names (the examples' instancetypes and PriorityClasses plus tests/fixtures), must get no
//! error and no finding of a cluster rule: a false error is a bug in a rule. The examples do
//! not start (`running: false`), which turns cluster findings into warnings, so those are
//! checked at any severity.

mod support;
use support::shared;

use std::path::PathBuf;
use std::sync::Arc;

use virt_preflight::check::{CheckOptions, Outcome, check_all};
use virt_preflight::cluster::{Kind, snapshot};
use virt_preflight::manifest::{self, ReadOptions};
use virt_preflight::rules::Scope;
use virt_preflight::rules::finding::Severity;

#[test]
fn kubevirt_examples_get_no_error_against_a_cluster_that_has_what_they_name() {
    let Some(examples) = shared::kubevirt_examples() else {
        return;
    };
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubevirt-examples-cluster.yaml");
    let snapshot = snapshot::read(&[fixture, examples.clone()], ReadOptions::default());
    let view = snapshot.view;
    for kind in Kind::ALL {
        assert!(view.is_known(kind), "the snapshot should know {kind}");
    }
    let options = CheckOptions {
        cluster: Some(Arc::new(view)),
        ..CheckOptions::default()
    };
    let report = check_all(
        manifest::read_path(&examples, ReadOptions::default()),
        &options,
    );
    assert!(
        report.coverage.skipped_rules.is_empty(),
        "{:?}",
        report.coverage.skipped_rules
    );
    let vms = report.vms().count();
    assert!(vms >= 12, "expected the 12 example VMs, found {vms}");
    let errors: Vec<String> = report
        .findings()
        .filter(|(_, f)| f.severity == Severity::Error || f.rule.info().scope == Scope::Cluster)
        .map(|(vm, f)| {
            format!(
                "{} {}: {} {}: {}",
                vm.source, vm.object, f.rule, f.path, f.message
            )
        })
        .collect();
    assert!(errors.is_empty(), "false findings:\n{}", errors.join("\n"));
    for document in &report.documents {
        if let Outcome::Invalid(err) = &document.outcome {
            panic!("example did not parse: {err}");
        }
    }
}

/// KubeVirt's examples ship Halted, so their cluster findings would only warn. Started all at
/// once (each in the view as running, and each checked as starting), they still get no error,
/// and no example is said to share a claim with another: none does.
#[test]
fn kubevirt_examples_started_together_get_no_error_and_share_no_claim() {
    let Some(examples) = shared::kubevirt_examples() else {
        return;
    };
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubevirt-examples-cluster.yaml");
    let started = || {
        manifest::read_path(&examples, ReadOptions::default())
            .into_iter()
            .map(|parsed| {
                parsed.map(|mut document| {
                    if document.is_virtual_machine() {
                        let spec = &mut document.value["spec"];
                        spec.as_object_mut().map(|s| s.remove("running"));
                        spec["runStrategy"] = serde_json::json!("Always");
                    }
                    document
                })
            })
            .collect::<Vec<_>>()
    };
    let snapshot = snapshot::from_documents(
        manifest::read_path(&fixture, ReadOptions::default())
            .into_iter()
            .chain(started()),
    );
    assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
    let running = snapshot.view.count(Kind::VirtualMachine);
    assert!(
        running >= 12,
        "the examples' VMs are in the view: {running}"
    );
    let options = CheckOptions {
        cluster: Some(Arc::new(snapshot.view)),
        ..CheckOptions::default()
    };
    let report = check_all(started(), &options);
    let wrong: Vec<String> = report
        .findings()
        .filter(|(_, f)| {
            f.severity == Severity::Error || f.rule == virt_preflight::rules::RuleId::PvcInUse
        })
        .map(|(vm, f)| format!("{} {}: {} {}", vm.source, vm.object, f.rule, f.message))
        .collect();
    assert!(wrong.is_empty(), "started examples:\n{}", wrong.join("\n"));
}
