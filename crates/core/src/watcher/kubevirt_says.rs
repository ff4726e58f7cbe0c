//! What KubeVirt itself says is wrong with a VM, read from its conditions and mapped to the
//! rule that predicts it: the scheduler's `PodScheduled=False` message, virt-controller's
//! `Synchronized=False` and `Failure=True` reasons. The diagnosis puts this first: it is
//! KubeVirt's outcome, not our reading of it; the rules then add what KubeVirt does not say
//! (which label is missing, which object to create).
//!
//! The words matched are KubeVirt's and Kubernetes' own, as the real v1.6.6 control plane wrote
//! them (`docs/differential/runtime.md`).

use super::record::{Condition, ConditionStatus};
use crate::rules::RuleId;
use crate::rules::finding::one_line;

/// One thing KubeVirt says: the rules that predict it (the first is the default when none of
/// them found anything) and KubeVirt's words, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub rules: Vec<RuleId>,
    /// Who says it: `KubeVirt`, `the kubelet`.
    pub by: &'static str,
    /// `Failure (FailedCreate): ...`, as the condition says it.
    pub words: String,
}

/// The scheduler's per-node reasons, and the rules that predict each.
const SCHEDULER_REASONS: &[(&str, &[RuleId])] = &[
    (
        "Insufficient devices.kubevirt.io/kvm",
        &[RuleId::KvmUnavailable],
    ),
    (
        "Insufficient devices.kubevirt.io/mshv",
        &[RuleId::KvmUnavailable],
    ),
    ("Insufficient hugepages-", &[RuleId::HugepagesUnavailable]),
    ("Insufficient memory", &[RuleId::ResourcesExceedCapacity]),
    ("Insufficient cpu", &[RuleId::ResourcesExceedCapacity]),
    ("Insufficient ", &[RuleId::DeviceUnavailable]),
    ("untolerated taint", &[RuleId::TaintsNotTolerated]),
    ("were unschedulable", &[RuleId::NoSchedulableNode]),
    // Volume binding's, said once for the pod rather than per node.
    ("bound to non-existent persistentvolume", &[RuleId::PvcLost]),
    // KubeVirt's own selectors (CPU model, CPU manager, schedulable) fail the same way as the
    // VM's: which one, the rules say.
    (
        "didn't match Pod's node affinity/selector",
        &[
            RuleId::NodeSelectorUnsatisfiable,
            RuleId::CpuModelUnavailable,
            RuleId::DedicatedCpuUnavailable,
            RuleId::NoSchedulableNode,
        ],
    ),
];

/// virt-controller's and the API server's words in a `Synchronized=False` or `Failure=True`
/// message, and the rules that predict them.
const CONTROLLER_WORDS: &[(&str, &[RuleId])] = &[
    ("exceeded quota", &[RuleId::ResourceQuotaExceeded]),
    ("must specify limits", &[RuleId::ResourceQuotaNeedsLimits]),
    (
        "must be less than or equal to",
        &[RuleId::LimitRangeExceeded],
    ),
    ("maximum memory usage per", &[RuleId::LimitRangeExceeded]),
    ("maximum cpu usage per", &[RuleId::LimitRangeExceeded]),
    ("minimum memory usage per", &[RuleId::LimitRangeExceeded]),
    (
        "no PriorityClass with name",
        &[RuleId::PriorityClassNotFound],
    ),
    (
        "error looking up service account",
        &[RuleId::ServiceAccountNotFound],
    ),
    (
        "failed to locate network attachment definition",
        &[RuleId::NetworkAttachmentNotFound],
    ),
    (
        "couldn't find configuration for network bind",
        &[RuleId::NetworkBindingNotFound],
    ),
    ("datasources.cdi.kubevirt.io", &[RuleId::DatasourceNotFound]),
    (
        "not authorized to create DataVolume",
        &[RuleId::CloneNotAuthorized],
    ),
    ("no memory requested", &[RuleId::MemoryMissing]),
    ("is not permitted", &[RuleId::HostDeviceNotPermitted]),
];

/// What the VM's conditions say, most telling first: `Failure=True`, then
/// `Synchronized=False`, then `PodScheduled=False`. `None` when they say nothing is wrong.
pub fn said(conditions: &[Condition]) -> Option<Said> {
    let find = |kind: &str, status: ConditionStatus| conditions.iter().find(|c| c.is(kind, status));
    let (condition, rules) = if let Some(c) = find("Failure", ConditionStatus::True) {
        let rules = match c.reason.as_str() {
            "FailedFindInstancetype" | "FailedFindPreference" => {
                vec![RuleId::InstancetypeNotFound]
            }
            _ => by_words(&c.message, CONTROLLER_WORDS),
        };
        (c, rules)
    } else if let Some(c) = find("Synchronized", ConditionStatus::False) {
        let rules = match c.reason.as_str() {
            "FailedPvcNotFound" => vec![RuleId::PvcNotFound, RuleId::DatavolumeNotFound],
            _ => by_words(&c.message, CONTROLLER_WORDS),
        };
        (c, rules)
    } else if let Some(c) = find("PodScheduled", ConditionStatus::False) {
        (c, scheduler_rules(&c.message))
    } else {
        return None;
    };
    Some(Said {
        rules,
        by: "KubeVirt",
        words: words(condition),
    })
}

/// `Kind (Reason): message`, on one line.
pub fn words(condition: &Condition) -> String {
    let (kind, reason, message) = (
        condition.kind.trim(),
        condition.reason.trim(),
        condition.message.trim(),
    );
    let words = if reason.is_empty() {
        format!("{kind}: {message}")
    } else {
        format!("{kind} ({reason}): {message}")
    };
    one_line(&words, 200)
}

/// The rules of every phrase `message` contains, in the table's order, each once.
fn by_words(message: &str, table: &[(&str, &[RuleId])]) -> Vec<RuleId> {
    let mut rules = Vec::new();
    for (words, predicted) in table {
        if message.contains(words) {
            for rule in *predicted {
                if !rules.contains(rule) {
                    rules.push(*rule);
                }
            }
        }
    }
    rules
}

/// The scheduler's message, `0/5 nodes are available: 1 Insufficient memory, 4 node(s) ...`,
/// read reason by reason, the reason of the most nodes first. Preemption's own sentence is
/// not a reason.
fn scheduler_rules(message: &str) -> Vec<RuleId> {
    let body = message.split(" preemption:").next().unwrap_or(message);
    let Some((_, reasons)) = body.split_once("are available: ") else {
        return Vec::new();
    };
    let mut counted: Vec<(u64, &str)> = reasons
        .trim_end_matches('.')
        .split(", ")
        .map(|reason| {
            let reason = reason.trim();
            let counted = reason
                .split_once(' ')
                .and_then(|(count, text)| Some((count.parse().ok()?, text)));
            // A reason with no count is the pod's own (a Lost claim): it holds on every node.
            counted.unwrap_or((u64::MAX, reason))
        })
        .collect();
    counted.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
    let mut rules = Vec::new();
    for (_, text) in counted {
        // A reason is the first row that applies ("Insufficient memory" is no device).
        let row = SCHEDULER_REASONS
            .iter()
            .find(|(words, _)| text.contains(words));
        for rule in row.map(|(_, predicted)| *predicted).unwrap_or_default() {
            if !rules.contains(rule) {
                rules.push(*rule);
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn vm(conditions: Value) -> Vec<Condition> {
        serde_json::from_value(conditions).unwrap()
    }

    /// Messages as the real KubeVirt v1.6.6 control plane wrote them.
    #[test]
    fn scheduler_reasons_map_to_the_rules_that_predict_them() {
        let unschedulable = |message: &str| {
            said(&vm(json!([{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": message}])))
            .map(|s| s.rules)
        };
        assert_eq!(
            unschedulable(
                "0/6 nodes are available: persistentvolumeclaim \"data\" bound to non-existent \
                 persistentvolume \"gone-data\". preemption: 0/6 nodes are available: 6 \
                 Preemption is not helpful for scheduling."
            ),
            Some(vec![RuleId::PvcLost])
        );
        assert_eq!(
            unschedulable(
                "0/5 nodes are available: 1 Insufficient devices.kubevirt.io/kvm, 1 node(s) had \
                 untolerated taint {dedicated: db}, 4 Insufficient memory. preemption: 0/5 nodes \
                 are available: 1 Preemption is not helpful for scheduling, 4 No preemption \
                 victims found for incoming pod."
            ),
            Some(vec![
                RuleId::ResourcesExceedCapacity,
                RuleId::KvmUnavailable,
                RuleId::TaintsNotTolerated
            ])
        );
        assert_eq!(
            unschedulable(
                "0/5 nodes are available: 1 Insufficient devices.kubevirt.io/kvm, 1 node(s) had \
                 untolerated taint {dedicated: db}, 4 Insufficient hugepages-1Gi."
            )
            .and_then(|r| r.first().copied()),
            Some(RuleId::HugepagesUnavailable)
        );
        assert_eq!(
            unschedulable(
                "0/5 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 4 \
                 node(s) didn't match Pod's node affinity/selector."
            )
            .and_then(|r| r.first().copied()),
            Some(RuleId::NodeSelectorUnsatisfiable)
        );
    }

    #[test]
    fn controller_reasons_map_to_the_rules_that_predict_them() {
        let synchronized = |reason: &str, message: &str| {
            said(&vm(json!([{"type": "Synchronized", "status": "False",
                "reason": reason, "message": message}])))
            .and_then(|s| s.rules.first().copied())
        };
        assert_eq!(
            synchronized(
                "FailedCreate",
                "failed to create virtual machine pod: pods \"virt-launcher-x-abcde\" is \
                 forbidden: exceeded quota: vms, requested: requests.memory=1392857344"
            ),
            Some(RuleId::ResourceQuotaExceeded)
        );
        assert_eq!(
            synchronized(
                "FailedCreate",
                "failed to create virtual machine pod: Pod \"virt-launcher-x\" is invalid: \
                 spec.containers[0].resources.requests: Invalid value: \"1294Mi\": must be less \
                 than or equal to memory limit of 1Gi"
            ),
            Some(RuleId::LimitRangeExceeded)
        );
        assert_eq!(
            synchronized("FailedPvcNotFound", "PVC ns/data does not exist"),
            Some(RuleId::PvcNotFound)
        );
        assert_eq!(
            synchronized(
                "FailedCreate",
                "failed to render launch manifest: couldn't find configuration for network \
                 bindining: managedtap-typo"
            ),
            Some(RuleId::NetworkBindingNotFound)
        );
        let failure = said(&vm(json!([{"type": "Failure", "status": "True",
            "reason": "FailedFindInstancetype",
            "message": "virtualmachineinstancetypes.instancetype.kubevirt.io \"small\" not found"}])))
        .unwrap();
        assert_eq!(failure.rules, vec![RuleId::InstancetypeNotFound]);
        assert!(
            failure
                .words
                .starts_with("Failure (FailedFindInstancetype): ")
        );
    }

    #[test]
    fn words_no_rule_predicts_are_quoted_without_one() {
        let found = said(&vm(json!([{"type": "Failure", "status": "True",
            "reason": "FailedCreate",
            "message": "Failure while starting VMI: virt-launcher crashed"}])))
        .unwrap();
        assert_eq!(found.rules, vec![]);
        assert!(found.words.contains("virt-launcher crashed"));
        assert_eq!(
            said(&vm(json!([{"type": "Ready", "status": "False"}]))),
            None
        );
        assert_eq!(said(&[]), None);
    }
}
