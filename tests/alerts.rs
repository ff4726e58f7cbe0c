//! The PrometheusRule of deploy/monitoring, tested by the real `promtool test rules`
//! (Debian's `prometheus` package): each of the three stuck-VM alerts fires for a VM the
//! watcher's series of its `alert` label mark stuck, not before its threshold (10 minutes; 5 for
//! VirtualMachineStuckOnNode), and ends when the series go; VirtualMachineStuckInUnhealthyState
//! not for a VM whose VMI exists.

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
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(rules[0]["alert"], "VirtualMachineStuckInUnhealthyState");
    // The three stuck-VM alerts, each over the series of its own `alert` label, with the
    // labels and annotations the watcher posts to Alertmanager.
    for (name, runbook) in [
        (
            "VirtualMachineStuckInUnhealthyState",
            "https://kubevirt.io/monitoring/runbooks/VirtualMachineStuckInUnhealthyState.html",
        ),
        (
            "VirtualMachineStuckOnNode",
            "https://kubevirt.io/monitoring/runbooks/VirtualMachineStuckOnNode.html",
        ),
        (
            "VirtualMachineStuckBeforeNode",
            "https://github.com/virt-preflight/virt-preflight/blob/main/README.md#virtualmachinestuckbeforenode",
        ),
    ] {
        let matching: Vec<&Value> = rules.iter().filter(|r| r["alert"] == name).collect();
        assert_eq!(matching.len(), 1, "one rule for {name}");
        let alert = matching[0];
        assert_eq!(alert["labels"]["severity"], "warning", "{name}");
        assert_eq!(alert["labels"]["operator_health_impact"], "none", "{name}");
        assert_eq!(alert["labels"]["source"], "virt-preflight", "{name}");
        assert_eq!(alert["keep_firing_for"], "2m", "{name}");
        for annotation in ["summary", "description", "cause", "rule", "runbook_url"] {
            assert!(
                alert["annotations"][annotation].is_string(),
                "{name}: {annotation}"
            );
        }
        assert_eq!(alert["annotations"]["runbook_url"], runbook, "{name}");
        let selector = format!(r#"{{alert="{name}"}}"#);
        let expr = alert["expr"].as_str().unwrap();
        assert_eq!(
            expr.matches(&selector).count(),
            2,
            "{name} reads its own stuck and since series: {expr}"
        );
        for annotation in ["rule", "cause"] {
            let template = alert["annotations"][annotation].as_str().unwrap();
            assert!(
                template.contains(&format!(r#"virt_preflight_vm_stuck{{alert="{name}","#)),
                "{name}: {annotation} is read from the VM's own stuck series: {template}"
            );
        }
        // KubeVirt's alert has the node as a label; so does ours, and its description says it.
        let by_node = expr.contains("by (namespace, name, status, node)");
        assert_eq!(
            by_node,
            name == "VirtualMachineStuckOnNode",
            "{name}: {expr}"
        );
        if by_node {
            assert!(
                alert["annotations"]["description"]
                    .as_str()
                    .unwrap()
                    .contains("{{ $labels.node }}"),
                "{name}"
            );
        }
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

/// The escalation the watcher posts is the PrometheusRule's: the same thresholds by default,
/// and the labels and texts promtool expects (all but the next step, which the watcher takes
/// from the group's VM).
#[test]
fn the_watchers_escalation_is_the_rules() {
    use virt_preflight::rules::RuleId;
    use virt_preflight::watcher::escalation::{
        ALERT_NAME, DEFAULT_SHARED_CAUSE, DEFAULT_STUCK, Escalation,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let rule: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("prometheusrule.yaml")).unwrap())
            .unwrap();
    let exprs: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alert"] == ALERT_NAME)
        .filter_map(|r| r["expr"].as_str())
        .collect();
    assert_eq!(exprs.len(), 2, "a shared cause, and several at once");
    let shared = format!(r#"(virt_preflight_vms_stuck{{cause!=""}}) >= {DEFAULT_SHARED_CAUSE}"#);
    assert!(exprs[0].trim_end().ends_with(&shared), "{}", exprs[0]);
    assert!(
        exprs[1].contains(&format!(">= {DEFAULT_STUCK}\n")),
        "{}",
        exprs[1]
    );
    assert!(exprs[1].contains(&shared), "{}", exprs[1]);

    let tests: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("alerts_test.yaml")).unwrap())
            .unwrap();
    let expected: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|t| t["alertname"] == ALERT_NAME)
        .flat_map(|t| t["exp_alerts"].as_array().unwrap())
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    for alert in expected {
        let labels = &alert["exp_labels"];
        let count: usize = alert["exp_annotations"]["count"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let escalation = match labels["cause"].as_str() {
            Some(cause) => Escalation::SharedCause {
                rule: labels["rule"].as_str().unwrap().parse::<RuleId>().ok(),
                subject: cause.to_string(),
                count,
                next_step: String::new(),
            },
            None => Escalation::Several { count },
        };
        let mut ours: serde_json::Map<String, Value> = escalation
            .labels()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        ours.remove("alertname");
        assert_eq!(Value::Object(ours), *labels, "labels of {escalation:?}");
        for (name, text) in escalation.annotations() {
            if name != "next_step" || matches!(escalation, Escalation::Several { .. }) {
                assert_eq!(
                    alert["exp_annotations"][&name], text,
                    "annotation {name} of {escalation:?}"
                );
            }
        }
    }
}
