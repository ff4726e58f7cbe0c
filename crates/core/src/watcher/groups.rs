//! VMs stuck for one cause are one problem (the runbook: "escalate to the cluster administrator
//! if multiple VMs are affected simultaneously"). A group is the same rule and the same
//! subject: the object or selector the cause names. VMs with no cause found are grouped by
//! status, whose runbook step they share. Pure: diagnosed VMs in, groups out, largest first.

use jiff::Timestamp;

use crate::rules::RuleId;

use super::diagnose::{Cause, Diagnosis};
use super::state::{StuckAlert, VmKey, VmStatus};

/// What makes VMs one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub rule: Option<RuleId>,
    /// [`Cause::subject`]; `None` when no cause was found.
    pub subject: Option<String>,
    /// Set only when no cause was found.
    pub status: Option<VmStatus>,
}

impl GroupKey {
    pub fn of(status: VmStatus, cause: &Cause) -> Self {
        GroupKey {
            rule: cause.rule,
            subject: cause.subject.clone(),
            status: cause.subject.is_none().then_some(status),
        }
    }

    /// The `rule` label of `virt_preflight_vms_stuck`: the rule ID, or `none`.
    pub fn rule_label(&self) -> &'static str {
        self.rule.map_or("none", RuleId::as_str)
    }

    /// The `cause` label of `virt_preflight_vms_stuck`: the subject, empty when no cause was
    /// found (Prometheus reads an empty label as no label, so `cause!=""` selects the VMs
    /// whose cause is known).
    pub fn cause_label(&self) -> &str {
        self.subject.as_deref().unwrap_or_default()
    }
}

/// One unhealthy VM, diagnosed.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub key: &'a VmKey,
    pub alert: StuckAlert,
    /// The node of `VirtualMachineStuckOnNode`.
    pub node: Option<&'a str>,
    pub status: VmStatus,
    /// Since when it has been unhealthy (the tracker's date).
    pub since: Timestamp,
    pub stuck: bool,
    pub diagnosis: &'a Diagnosis,
}

/// VMs with one cause: the one unhealthy longest first.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub key: GroupKey,
    pub members: Vec<Member<'a>>,
}

impl Group<'_> {
    /// How many of its VMs are stuck.
    pub fn stuck(&self) -> usize {
        self.members.iter().filter(|m| m.stuck).count()
    }

    /// The cause they share: the subject, or (none found) the first VM's cause.
    pub fn cause(&self) -> &str {
        match &self.key.subject {
            Some(subject) => subject,
            None => self
                .members
                .first()
                .map_or("", |m| m.diagnosis.cause.text.as_str()),
        }
    }

    /// The next step of the VM unhealthy longest: the group's commands name that VM.
    pub fn next_step(&self) -> &str {
        self.members
            .first()
            .map_or("", |m| m.diagnosis.next_step.as_str())
    }
}

/// Groups `members` by cause: most VMs first, then most stuck, then by key (a stable order).
pub fn group<'a>(members: impl IntoIterator<Item = Member<'a>>) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for member in members {
        let key = GroupKey::of(member.status, &member.diagnosis.cause);
        match groups.iter_mut().find(|g| g.key == key) {
            Some(group) => group.members.push(member),
            None => groups.push(Group {
                key,
                members: vec![member],
            }),
        }
    }
    for group in &mut groups {
        group
            .members
            .sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.key.cmp(b.key)));
    }
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then_with(|| b.stuck().cmp(&a.stuck()))
            .then_with(|| a.key.cmp(&b.key))
    });
    groups
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::watcher::diagnose::NO_CAUSE;

    pub(crate) fn diagnosis(name: &str, rule: Option<RuleId>, subject: Option<&str>) -> Diagnosis {
        Diagnosis {
            key: VmKey::new("ns", name),
            printable_status: "ErrorUnschedulable".into(),
            cause: Cause {
                rule,
                text: subject.map_or(NO_CAUSE.to_string(), |s| format!("path: {s}")),
                subject: subject.map(String::from),
            },
            findings: Vec::new(),
            evidence: Vec::new(),
            kubevirt: None,
            next_step: format!("look at {name}"),
        }
    }

    pub(crate) fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + minutes * 60).unwrap()
    }

    /// A member per diagnosis; `facts(i)` gives the i-th one's status, since and stuck.
    pub(crate) fn members(
        diagnoses: &[Diagnosis],
        facts: impl Fn(usize) -> (VmStatus, Timestamp, bool),
    ) -> Vec<Member<'_>> {
        diagnoses
            .iter()
            .enumerate()
            .map(|(i, diagnosis)| {
                let (status, since, stuck) = facts(i);
                Member {
                    key: &diagnosis.key,
                    alert: StuckAlert::UnhealthyState,
                    node: None,
                    status,
                    since,
                    stuck,
                    diagnosis,
                }
            })
            .collect()
    }

    #[test]
    fn one_rule_and_one_subject_make_one_group_largest_first() {
        let selector = Some("nodeSelector gpu=a100 matches none of 3 nodes");
        let diagnoses = [
            diagnosis(
                "pvc",
                Some(RuleId::PvcNotFound),
                Some("PVC \"x\" does not exist"),
            ),
            diagnosis("gpu-3", Some(RuleId::NodeSelectorUnsatisfiable), selector),
            diagnosis("gpu-1", Some(RuleId::NodeSelectorUnsatisfiable), selector),
            diagnosis(
                "other-selector",
                Some(RuleId::NodeSelectorUnsatisfiable),
                Some("nodeSelector gpu=h100 matches none of 3 nodes"),
            ),
        ];
        let groups = group(members(&diagnoses, |i| {
            (VmStatus::ErrorUnschedulable, at(-(i as i64)), i != 2)
        }));
        let sizes: Vec<usize> = groups.iter().map(|g| g.members.len()).collect();
        assert_eq!(sizes, vec![2, 1, 1]);
        let first = &groups[0];
        assert_eq!(
            first.cause(),
            "nodeSelector gpu=a100 matches none of 3 nodes"
        );
        assert_eq!(first.stuck(), 1);
        assert_eq!(
            first.members[0].key.name, "gpu-1",
            "unhealthy longest first"
        );
        assert_eq!(first.next_step(), "look at gpu-1");
        assert_eq!(first.key.rule_label(), "node-selector-unsatisfiable");
    }

    #[test]
    fn no_cause_groups_by_status_and_exports_no_cause_label() {
        let diagnoses = [diagnosis("a", None, None), diagnosis("b", None, None)];
        let statuses = [VmStatus::Starting, VmStatus::CrashLoopBackOff];
        let groups = group(members(&diagnoses, |i| (statuses[i], at(0), true)));
        assert_eq!(groups.len(), 2, "one runbook step per status");
        assert_eq!(groups[0].cause(), NO_CAUSE);
        assert_eq!(groups[0].key.rule_label(), "none");
        assert_eq!(groups[0].key.cause_label(), "");
    }
}
