//! The runbook's escalation: "Escalate to the cluster administrator if multiple VMs are affected
//! simultaneously (possible cluster-wide issue)." Several stuck VMs that share one cause, or
//! many stuck at once, raise `MultipleVirtualMachinesStuck`. The same decision as the second
//! alert of deploy/monitoring/prometheusrule.yaml, whose thresholds are these defaults. Pure:
//! groups in, escalations (and their alert labels and texts) out.

use std::collections::BTreeMap;

use crate::rules::RuleId;

use super::diagnose::RUNBOOK_URL;
use super::groups::Group;

/// The escalation alert's name.
pub const ALERT_NAME: &str = "MultipleVirtualMachinesStuck";

/// The runbook's words.
pub const ADVICE: &str = "Escalate to the cluster administrator if multiple VMs are affected simultaneously (possible cluster-wide issue).";

/// The `source` label of every alert of ours: KubeVirt's alert of the same name has none, which
/// is how Alertmanager tells the two apart (see the inhibition in README).
pub const SOURCE: &str = "virt-preflight";

/// Stuck VMs sharing one known cause that make it the cluster administrator's problem. Two
/// are often one user's pair of VMs built from one template (one manifest's mistake, not the
/// cluster's); a third VM with the same missing object or unsatisfiable selector points at what
/// they share: a node pool, a StorageClass, a Secret a platform team provides.
pub const DEFAULT_SHARED_CAUSE: usize = 3;

/// Stuck VMs at once, whatever their causes, that make it the administrator's problem. A
/// cluster carries one or two stuck VMs as everyday churn (a user's broken VM, a deleted
/// Secret); five at once, each stuck for KubeVirt's ten minutes, is beyond that churn and
/// points at the platform (virt-controller, storage, the network) even when no cause is shared.
pub const DEFAULT_STUCK: usize = 5;

/// When to escalate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub shared_cause: usize,
    pub stuck: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            shared_cause: DEFAULT_SHARED_CAUSE,
            stuck: DEFAULT_STUCK,
        }
    }
}

/// One reason to call the cluster administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escalation {
    /// `count` stuck VMs share one known cause.
    SharedCause {
        rule: Option<RuleId>,
        subject: String,
        count: usize,
        /// The next step of the group's VM stuck longest.
        next_step: String,
    },
    /// `count` VMs are stuck at once and no known cause is shared by enough of them.
    Several { count: usize },
}

/// What calls for the administrator among `groups` (only their stuck VMs count). Several at
/// once is said only when no shared cause is: the shared cause already says more.
pub fn escalations(groups: &[Group], thresholds: Thresholds) -> Vec<Escalation> {
    let shared: Vec<Escalation> = groups
        .iter()
        .filter_map(|group| {
            let subject = group.key.subject.clone()?;
            let count = group.stuck();
            (count >= thresholds.shared_cause).then(|| Escalation::SharedCause {
                rule: group.key.rule,
                subject,
                count,
                next_step: group
                    .members
                    .iter()
                    .find(|m| m.stuck)
                    .map(|m| m.diagnosis.next_step.clone())
                    .unwrap_or_default(),
            })
        })
        .collect();
    if !shared.is_empty() {
        return shared;
    }
    let count: usize = groups.iter().map(Group::stuck).sum();
    if count >= thresholds.stuck {
        vec![Escalation::Several { count }]
    } else {
        Vec::new()
    }
}

/// `[rule] subject`, or the subject alone when no rule found it.
fn cause_line(rule: Option<RuleId>, subject: &str) -> String {
    match rule {
        Some(rule) => format!("[{rule}] {subject}"),
        None => subject.to_string(),
    }
}

impl Escalation {
    /// How many stuck VMs.
    pub fn count(&self) -> usize {
        match self {
            Escalation::SharedCause { count, .. } | Escalation::Several { count } => *count,
        }
    }

    /// One line for a person: what is shared, how many.
    pub fn headline(&self) -> String {
        match self {
            Escalation::SharedCause {
                rule,
                subject,
                count,
                ..
            } => format!(
                "{count} stuck VMs share one cause: {}",
                cause_line(*rule, subject)
            ),
            Escalation::Several { count } => format!("{count} VMs stuck at once"),
        }
    }

    /// The alert's labels, as the PrometheusRule's `max by (rule, cause)` and its `labels` make
    /// them, so that both routes make one alert.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("alertname".to_string(), ALERT_NAME.to_string()),
            ("severity".to_string(), "warning".to_string()),
            ("source".to_string(), SOURCE.to_string()),
        ]);
        if let Escalation::SharedCause { rule, subject, .. } = self {
            labels.insert(
                "rule".to_string(),
                rule.map_or("none", RuleId::as_str).to_string(),
            );
            labels.insert("cause".to_string(), subject.clone());
        }
        labels
    }

    /// The alert's annotations: the shared cause, the count and the runbook's advice.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let count = self.count();
        let (summary, description, cause, next_step) = match self {
            Escalation::SharedCause {
                rule,
                subject,
                next_step,
                ..
            } => {
                let cause = cause_line(*rule, subject);
                (
                    format!("{count} virtual machines stuck with one cause"),
                    format!(
                        "{count} virtual machines are stuck in an unhealthy state with one cause: {cause}. {ADVICE}"
                    ),
                    cause,
                    next_step.clone(),
                )
            }
            Escalation::Several { .. } => (
                format!("{count} virtual machines stuck at once"),
                format!(
                    "{count} virtual machines are stuck in an unhealthy state at once. {ADVICE}"
                ),
                "no known cause shared by enough of them".to_string(),
                "list them by cause: virt-preflight diagnose --all --live".to_string(),
            ),
        };
        BTreeMap::from([
            ("summary".to_string(), summary),
            ("description".to_string(), description),
            ("cause".to_string(), cause),
            ("count".to_string(), count.to_string()),
            ("next_step".to_string(), next_step),
            ("runbook_url".to_string(), RUNBOOK_URL.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::groups::group;
    use crate::watcher::groups::tests::{at, diagnosis, members};
    use crate::watcher::state::VmStatus;

    /// `stuck` stuck VMs with the selector cause, and `others` stuck VMs with a cause each.
    fn decide(stuck: usize, not_yet: usize, others: usize) -> Vec<Escalation> {
        let selector = "nodeSelector gpu=a100 matches none of 3 nodes";
        let mut diagnoses = Vec::new();
        for i in 0..stuck + not_yet {
            diagnoses.push(diagnosis(
                &format!("gpu-{i}"),
                Some(RuleId::NodeSelectorUnsatisfiable),
                Some(selector),
            ));
        }
        for i in 0..others {
            diagnoses.push(diagnosis(
                &format!("other-{i}"),
                None,
                Some(&format!("cause {i}")),
            ));
        }
        let members = members(&diagnoses, |i| {
            let stuck = i < stuck || i >= stuck + not_yet;
            (VmStatus::ErrorUnschedulable, at(0), stuck)
        });
        escalations(&group(members), Thresholds::default())
    }

    #[test]
    fn a_shared_cause_escalates_at_the_threshold_not_below() {
        assert_eq!(decide(2, 3, 0), Vec::new(), "two stuck, three not yet");
        let at_three = decide(3, 0, 0);
        assert_eq!(at_three.len(), 1);
        let Escalation::SharedCause {
            count, next_step, ..
        } = &at_three[0]
        else {
            panic!("{at_three:?}")
        };
        assert_eq!(*count, 3);
        assert_eq!(next_step, "look at gpu-0");
        let labels = at_three[0].labels();
        assert_eq!(labels["alertname"], ALERT_NAME);
        assert_eq!(labels["rule"], "node-selector-unsatisfiable");
        assert_eq!(
            labels["cause"],
            "nodeSelector gpu=a100 matches none of 3 nodes"
        );
        assert_eq!(labels["source"], SOURCE);
        let annotations = at_three[0].annotations();
        assert_eq!(annotations["count"], "3");
        assert!(annotations["description"].ends_with(ADVICE));
        assert_eq!(
            annotations["cause"],
            "[node-selector-unsatisfiable] nodeSelector gpu=a100 matches none of 3 nodes"
        );
    }

    #[test]
    fn several_at_once_escalates_at_the_threshold_and_only_without_a_shared_cause() {
        assert_eq!(decide(2, 0, 2), Vec::new(), "four stuck");
        assert_eq!(decide(2, 0, 3), vec![Escalation::Several { count: 5 }]);
        let shared = decide(3, 0, 4);
        assert_eq!(shared.len(), 1, "the shared cause says more: {shared:?}");
        assert!(matches!(
            shared[0],
            Escalation::SharedCause { count: 3, .. }
        ));
        let several = &decide(0, 0, 5)[0];
        assert!(!several.labels().contains_key("cause"));
        assert!(several.annotations()["description"].ends_with(ADVICE));
    }

    #[test]
    fn no_cause_is_never_a_shared_cause() {
        let diagnoses: Vec<_> = (0..4)
            .map(|i| diagnosis(&format!("vm{i}"), None, None))
            .collect();
        let members = members(&diagnoses, |_| (VmStatus::Starting, at(0), true));
        assert_eq!(
            escalations(&group(members), Thresholds::default()),
            Vec::new()
        );
    }
}
