//! SARIF 2.1.0: one run, the rule registry as the tool's rules, one result per finding
//! (its file and line, and the field as a logical location). Input errors become
//! tool execution notifications, so a code-scanning upload still shows them.

use serde_json::{Value, json};

use crate::check::CheckReport;
use crate::rules::REGISTRY;
use crate::rules::finding::Severity;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

pub fn to_sarif(report: &CheckReport) -> Value {
    let rules: Vec<Value> = REGISTRY
        .iter()
        .map(|rule| {
            json!({
                "id": rule.name,
                "shortDescription": {"text": rule.description},
                "defaultConfiguration": {"level": level(rule.severity)},
                "properties": {"scope": rule.scope.as_str()},
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings()
        .map(|(vm, finding)| {
            let rule_index = REGISTRY.iter().position(|r| r.id == finding.rule);
            let mut result = json!({
                "ruleId": finding.rule,
                "ruleIndex": rule_index,
                "level": level(finding.severity),
                "message": {"text": format!("{}: {}", finding.path, finding.message)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&vm.source.file)},
                        "region": {"startLine": vm.source.line},
                    },
                    "logicalLocations": [{
                        "fullyQualifiedName": format!("{}/{}", vm.object, finding.path),
                        "kind": "member",
                    }],
                }],
                "properties": {"object": vm.object},
            });
            if let Some(fix) = &finding.fix {
                result["properties"]["jsonPatch"] = json!(fix);
            }
            result
        })
        .collect();
    let notifications: Vec<Value> = report
        .input_errors()
        .map(|err| {
            json!({
                "level": "error",
                "message": {"text": err.to_string()},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&err.file)},
                        "region": {"startLine": err.line.unwrap_or(1)},
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "virt-preflight",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://kubevirt.io/monitoring/runbooks/VirtualMachineStuckInUnhealthyState",
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": notifications.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    })
}

/// SARIF wants URIs: relative paths with forward slashes pass as they are.
fn uri(file: &str) -> String {
    file.replace('\\', "/")
}
