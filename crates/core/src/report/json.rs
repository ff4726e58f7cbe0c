//! `{"findings": [...], "summary": {...}}`, the shape scripts and the tests parse.

use serde_json::{Value, json};

use crate::check::CheckReport;

pub fn to_json(report: &CheckReport) -> Value {
    let findings: Vec<Value> = report
        .findings()
        .map(|(vm, finding)| {
            let mut value = serde_json::to_value(finding).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut value {
                map.insert("source".into(), json!(vm.source));
            }
            value
        })
        .collect();
    let skipped: Vec<Value> = report
        .vms()
        .flat_map(|vm| {
            vm.evaluation
                .skipped
                .iter()
                .map(move |rule| json!({"rule": rule, "object": vm.object, "source": vm.source}))
        })
        .collect();
    let errors: Vec<Value> = report
        .input_errors()
        .map(|err| {
            let mut value = serde_json::to_value(err).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut value {
                map.insert("error".into(), json!(err.to_string()));
            }
            value
        })
        .collect();
    json!({
        "findings": findings,
        "skippedRules": skipped,
        "inputErrors": errors,
        "cluster": report.coverage,
        "summary": report.summary(),
    })
}
