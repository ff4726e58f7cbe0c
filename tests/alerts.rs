//! The PrometheusRule of deploy/monitoring, tested by the real `promtool test rules`
//! (Debian's `prometheus` package): fires for a stuck VM, not for one whose VMI exists, not
//! before 10 minutes, and resolves when the VM is healthy.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn promtool_tests_of_the_stuck_vm_alert_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let text = std::fs::read_to_string(root.join("prometheusrule.yaml")).unwrap();
    let rule: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    // promtool reads the rule groups of a plain rules file: the PrometheusRule's spec.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        root.join("alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    let output = Command::new("promtool")
        .current_dir(dir.path())
        .args(["test", "rules", "alerts_test.yaml"])
        .output()
        .expect("promtool is needed (Debian: apt-get install prometheus; .ci/run installs it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{report}"
    );
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn the_rule_is_in_the_monitoring_kustomization_and_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let kustomization = std::fs::read_to_string(root.join("kustomization.yaml")).unwrap();
    assert!(kustomization.contains("prometheusrule.yaml"));
    let text = std::fs::read_to_string(root.join("prometheusrule.yaml")).unwrap();
    let rule: Value = serde_saphyr::from_str(&text).unwrap();
    let alert = &rule["spec"]["groups"][0]["rules"][0];
    assert_eq!(alert["alert"], "VirtualMachineStuckInUnhealthyState");
    assert_eq!(alert["labels"]["severity"], "warning");
    for annotation in ["summary", "description", "cause", "runbook_url"] {
        assert!(alert["annotations"][annotation].is_string(), "{annotation}");
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool is needed");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
