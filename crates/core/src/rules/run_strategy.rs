//! `spec.running` and `spec.runStrategy`.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use serde_json::Value;

use super::{Emitter, VmContext};
use crate::model::RunStrategy;

/// Both set: KubeVirt rejects the VM ("Running and RunStrategy are mutually exclusive").
pub fn conflict(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let spec = &cx.vm.spec;
    let (Some(running), Some(strategy)) = (spec.running, spec.run_strategy.as_deref()) else {
        return;
    };
    let equivalent = RunStrategy::from_running(running);
    let finding = out.emit(
        "spec.running",
        format!(
            "spec.running and spec.runStrategy ({strategy}) are mutually exclusive: remove spec.running"
        ),
    );
    // Removing `running` is safe only where it said the same as runStrategy; otherwise the
    // author must choose.
    if RunStrategy::parse(strategy) == Some(equivalent) {
        finding.fix = Some(remove_running());
    }
}

pub fn invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(strategy) = cx.vm.spec.run_strategy.as_deref() else {
        return;
    };
    if RunStrategy::parse(strategy).is_none() {
        let valid: Vec<_> = RunStrategy::ALL.iter().map(|s| s.as_str()).collect();
        out.emit(
            "spec.runStrategy",
            format!(
                "runStrategy {strategy:?} is not one of {}",
                valid.join(", ")
            ),
        );
    }
}

/// Only where runStrategy is absent: with both set, `run-strategy-conflict` says it all.
pub fn running_deprecated(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let spec = &cx.vm.spec;
    let (Some(running), None) = (spec.running, spec.run_strategy.as_ref()) else {
        return;
    };
    let strategy = RunStrategy::from_running(running);
    let finding = out.emit(
        "spec.running",
        format!(
            "spec.running is deprecated: use spec.runStrategy: {}",
            strategy.as_str()
        ),
    );
    let mut patch = remove_running();
    patch.0.push(PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(["spec", "runStrategy"]),
        value: Value::String(strategy.as_str().to_string()),
    }));
    finding.fix = Some(patch);
}

fn remove_running() -> Patch {
    Patch(vec![PatchOperation::Remove(RemoveOperation {
        path: PointerBuf::from_tokens(["spec", "running"]),
    })])
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::json;

    fn without_strategy(running: Option<bool>, strategy: Option<&str>) -> serde_json::Value {
        valid_vm_with(|vm| {
            let spec = vm["spec"].as_object_mut().unwrap();
            spec.remove("runStrategy");
            if let Some(running) = running {
                spec.insert("running".into(), json!(running));
            }
            if let Some(strategy) = strategy {
                spec.insert("runStrategy".into(), json!(strategy));
            }
        })
    }

    #[test]
    fn conflict_fires_only_with_both() {
        assert_eq!(
            fired(without_strategy(Some(true), Some("Always"))),
            vec![(RunStrategyConflict, "spec.running".into())]
        );
        assert_eq!(fired(without_strategy(None, Some("Always"))), vec![]);
    }

    #[test]
    fn conflict_fix_only_when_both_agree() {
        let agree = findings(without_strategy(Some(false), Some("Halted")));
        assert!(agree[0].fix.is_some());
        let disagree = findings(without_strategy(Some(true), Some("Halted")));
        assert!(disagree[0].fix.is_none());
    }

    #[test]
    fn invalid_strategy() {
        assert_eq!(
            fired(without_strategy(None, Some("always"))),
            vec![(RunStrategyInvalid, "spec.runStrategy".into())]
        );
        for ok in [
            "Always",
            "RerunOnFailure",
            "Halted",
            "Manual",
            "Once",
            "WaitAsReceiver",
        ] {
            assert_eq!(fired(without_strategy(None, Some(ok))), vec![], "{ok}");
        }
    }

    #[test]
    fn running_is_deprecated_with_a_fix() {
        let found = findings(without_strategy(Some(true), None));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, RunningDeprecated);
        let fix = serde_json::to_value(found[0].fix.as_ref().unwrap()).unwrap();
        assert_eq!(
            fix,
            json!([
                {"op": "remove", "path": "/spec/running"},
                {"op": "add", "path": "/spec/runStrategy", "value": "Always"}
            ])
        );
        let halted = findings(without_strategy(Some(false), None));
        assert!(halted[0].message.contains("Halted"));
    }

    #[test]
    fn no_run_strategy_at_all_is_clean() {
        // KubeVirt defaults a VM with neither field to Halted.
        assert_eq!(fired(without_strategy(None, None)), vec![]);
    }
}
