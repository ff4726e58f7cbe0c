//! The Grafana dashboard of deploy/monitoring: every PromQL expression in it parses (the real
//! `promtool check rules`, on a rule file made of them), reads only metrics the binary exports,
//! and uses only the Grafana variables that are replaced here; so a broken panel fails CI.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use virt_preflight::cluster::ClusterView;
use virt_preflight::metrics::{
    CauseLabels, FindingLabels, Label, Metrics, OperationLabel, RequestLabels, RequestResult,
    ResultLabels, StuckLabels, VmStatusLabels,
};
use virt_preflight::policy::Action;
use virt_preflight::rules::RuleId;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the dashboard is JSON")
}

/// Every panel, rows' panels included.
fn panels(value: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in value["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panels(panel));
    }
    all
}

/// Every `expr` of every target, with the panel's title.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_string())))
        })
        .collect()
}

/// Grafana's interval variables, as Prometheus would see them.
const VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "6h"),
];

fn substituted(expr: &str) -> String {
    let mut text = expr.to_string();
    for (variable, value) in VARIABLES {
        text = text.replace(variable, value);
    }
    text
}

#[test]
fn every_expression_parses_with_promtool() {
    let dashboard = dashboard();
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (title, expr))| {
            let expr = substituted(expr);
            assert!(
                !expr.contains('$'),
                "panel {title:?} uses a Grafana variable this test does not know: {expr}"
            );
            json!({"record": format!("dashboard:panel_{i}"), "expr": expr})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yaml");
    std::fs::write(
        &file,
        serde_json::to_string(&json!({"groups": [{"name": "dashboard", "rules": rules}]})).unwrap(),
    )
    .unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool is needed (Debian: apt-get install prometheus; .ci/run installs it)");
    assert!(
        output.status.success(),
        "promtool cannot parse a panel's expression:\n{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        exprs
            .iter()
            .enumerate()
            .map(|(i, (title, expr))| format!("dashboard:panel_{i} ({title}): {expr}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The series names the binary exports, every family given one child.
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::new();
    metrics
        .admission
        .requests
        .get_or_create(&RequestLabels {
            operation: OperationLabel::Create,
            result: RequestResult::Allowed,
        })
        .inc();
    metrics.admission.latency.observe(0.001);
    metrics
        .admission
        .findings
        .get_or_create(&FindingLabels {
            rule: Label(RuleId::PvcNotFound),
            action: Label(Action::Deny),
        })
        .inc();
    metrics.set_view(&ClusterView::default());
    let (ns, name, status) = ("ns".to_string(), "vm".to_string(), "starting".to_string());
    metrics
        .watcher
        .vm_stuck
        .get_or_create(&StuckLabels {
            alert: "VirtualMachineStuckInUnhealthyState".into(),
            namespace: ns.clone(),
            name: name.clone(),
            status: status.clone(),
            node: String::new(),
            rule: "none".into(),
            cause: String::new(),
        })
        .set(1);
    metrics
        .watcher
        .vms_stuck
        .get_or_create(&CauseLabels {
            rule: "none".into(),
            cause: String::new(),
        })
        .set(1);
    metrics
        .watcher
        .vm_unhealthy_since
        .get_or_create(&VmStatusLabels {
            alert: "VirtualMachineStuckInUnhealthyState".into(),
            namespace: ns,
            name,
            status,
            node: String::new(),
        })
        .set(0);
    metrics
        .watcher
        .alertmanager_posts
        .get_or_create(&ResultLabels {
            result: "ok".into(),
        })
        .inc();
    metrics
        .encode()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

#[test]
fn every_metric_a_panel_reads_is_exported() {
    let exported = exported();
    let dashboard = dashboard();
    let mut read = BTreeSet::new();
    for (title, expr) in expressions(&dashboard) {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("virt_preflight_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exported.contains(&name),
                "panel {title:?} reads {name}, which the binary does not export: {exported:?}"
            );
            read.insert(name.clone());
            rest = &rest[at + name.len()..];
        }
    }
    // What the issue asks the dashboard to show.
    for needed in [
        "virt_preflight_vms_stuck",
        "virt_preflight_admission_findings_total",
        "virt_preflight_admission_requests_total",
        "virt_preflight_admission_duration_seconds_bucket",
        "virt_preflight_cache_synced",
    ] {
        assert!(read.contains(needed), "no panel reads {needed}");
    }
}

#[test]
fn panels_use_the_dashboards_datasource_and_unique_ids() {
    let dashboard = dashboard();
    let variables = &dashboard["templating"]["list"];
    assert!(
        variables
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "a Prometheus datasource variable"
    );
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id {}",
            panel["id"]
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }
    // Shipped in deploy/monitoring as the sidecar's ConfigMap.
    let kustomization = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/kustomization.yaml"),
    )
    .unwrap();
    assert!(kustomization.contains("=dashboard.json"), "{kustomization}");
}
