//! Every VirtualMachine of KubeVirt's own examples, checked against a cluster that has what it
//! names (the examples' instancetypes and PriorityClasses plus tests/fixtures), must get no
//! error and no finding of a cluster rule: a false error is a bug in a rule. The examples do
//! not start (`running: false`), which turns cluster findings into warnings, so those are
//! checked at any severity.

use std::path::PathBuf;
use std::sync::Arc;

use virt_preflight::check::{CheckOptions, Outcome, check_all};
use virt_preflight::cluster::{Kind, snapshot};
use virt_preflight::finding::Severity;
use virt_preflight::manifest::{self, ReadOptions};
use virt_preflight::rules::Scope;

#[path = "support/shared.rs"]
mod shared;

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
