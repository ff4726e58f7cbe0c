//! Every unhealthy VM of a listed cluster, grouped by cause: `virt-preflight diagnose --all`.
//! What unhealthy, stuck and "since" mean is the watcher's: the VMs and VMIs go through a
//! [`Tracker`] as its first list and its clock is read at `as_of`. Pure: objects in, a
//! [`FleetReport`] out (JSON by serde, text by [`FleetReport::text`]).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{ClusterView, Kind};
use crate::rules::RuleId;

use super::diagnose::{Diagnosis, diagnose, human_duration, unknown_kinds};
use super::escalation::{ADVICE, Escalation, Thresholds, escalations};
use super::groups::{Member, group};
use super::health;
use super::launcher_pod::LauncherPod;
use super::record::{VmRecord, VmiFacts};
use super::state::{StuckAfter, StuckAlert, Tracker, VmKey, VmObservation, VmStatus};

/// One VM under a stuck alert, as the tracker sees it at `as_of`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    pub key: VmKey,
    pub alert: StuckAlert,
    pub status: VmStatus,
    /// The node of `VirtualMachineStuckOnNode`.
    pub node: Option<String>,
    pub since: Timestamp,
    pub stuck: bool,
    /// Whether a condition dates it; if not, the tracker counts from `as_of` (first sight).
    pub dated: bool,
}

/// The VMs among `vms` under a stuck alert, given their VMIs: the tracker's verdict on a first
/// list at `as_of`.
pub fn assess(
    vms: &[VmObservation],
    vmis: &[(VmKey, VmiFacts)],
    stuck_after: StuckAfter,
    as_of: Timestamp,
) -> Vec<Assessed> {
    let mut tracker = Tracker::new(stuck_after);
    tracker.begin_vm_relist();
    for vm in vms {
        tracker.apply_vm(vm.clone(), as_of);
    }
    tracker.end_vm_relist();
    tracker.begin_vmi_relist();
    for (key, vmi) in vmis {
        tracker.apply_vmi(key.clone(), vmi.clone(), as_of);
    }
    tracker.end_vmi_relist(as_of);
    tracker.tick(as_of);
    let stuck: HashSet<VmKey> = tracker.stuck().into_iter().map(|s| s.key).collect();
    let dated: HashSet<&VmKey> = vms
        .iter()
        .filter(|vm| vm.facts.since.is_some())
        .map(|vm| &vm.key)
        .collect();
    let mut assessed: Vec<Assessed> = tracker
        .unhealthy()
        .into_iter()
        .map(|u| Assessed {
            stuck: stuck.contains(&u.key),
            dated: dated.contains(&u.key),
            key: u.key,
            alert: u.alert,
            status: u.status,
            node: u.node,
            since: u.since,
        })
        .collect();
    assessed.sort_by(|a, b| a.key.cmp(&b.key));
    assessed
}

/// The settings of one report.
#[derive(Debug, Clone, Copy)]
pub struct FleetOptions {
    pub stuck_after: StuckAfter,
    pub thresholds: Thresholds,
    pub as_of: Timestamp,
}

/// `{"stuck", "unhealthy", "groups"}`: what `diagnose --all -o json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub stuck: usize,
    pub unhealthy: usize,
    /// What is wrong with KubeVirt itself, when something is (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubevirt: Option<String>,
    pub groups: Vec<GroupReport>,
    #[serde(skip)]
    pub listed: usize,
    #[serde(skip)]
    pub options: FleetOptions,
    /// The escalation that no group carries: several stuck at once.
    #[serde(skip)]
    pub several: Option<usize>,
    #[serde(skip)]
    pub unknown_kinds: Vec<Kind>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub rule: Option<RuleId>,
    pub cause: String,
    /// The runbook's escalation first when the group calls for it, then the step of its VM
    /// unhealthy longest.
    pub next: String,
    pub vms: Vec<VmReport>,
    #[serde(skip)]
    pub escalated: bool,
    /// `next` without the escalation (the text says that on a line of its own).
    #[serde(skip)]
    pub step: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmReport {
    pub namespace: String,
    pub name: String,
    /// The alert it is under: `VirtualMachineStuckInUnhealthyState`, …
    pub alert: AlertName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub status: VmStatusName,
    pub since: Timestamp,
    pub stuck: bool,
    #[serde(skip)]
    pub dated: bool,
}

/// An alert's name.
#[derive(Debug, Clone, Copy)]
pub struct AlertName(pub StuckAlert);

impl Serialize for AlertName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

/// A status as KubeVirt prints it (`ErrorUnschedulable`).
#[derive(Debug, Clone, Copy)]
pub struct VmStatusName(pub VmStatus);

impl Serialize for VmStatusName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

/// Diagnoses and groups every unhealthy VM of `vms` (whole objects; those without a name are
/// the caller's to report, and are skipped here).
pub fn report(
    vms: &[Value],
    vmis: &[(VmKey, VmiFacts)],
    launchers: &HashMap<VmKey, LauncherPod>,
    view: Option<&ClusterView>,
    options: FleetOptions,
) -> FleetReport {
    let observations: Vec<VmObservation> = vms
        .iter()
        .filter_map(|vm| VmObservation::from_object(vm).ok())
        .collect();
    let assessed = assess(&observations, vmis, options.stuck_after, options.as_of);
    let records: HashMap<&VmKey, &VmRecord> = observations
        .iter()
        .filter_map(|o| Some((&o.key, o.record.as_deref()?)))
        .collect();
    let vmi_of: HashMap<&VmKey, &VmiFacts> = vmis.iter().map(|(k, v)| (k, v)).collect();
    // Every assessed VM may be stuck, so it has a record.
    let diagnoses: Vec<Diagnosis> = assessed
        .iter()
        .filter_map(|a| {
            let record = records.get(&a.key)?;
            Some(diagnose(
                record,
                vmi_of.get(&a.key).copied(),
                launchers.get(&a.key),
                view,
            ))
        })
        .collect();
    let dated: HashSet<&VmKey> = assessed
        .iter()
        .filter(|a| a.dated)
        .map(|a| &a.key)
        .collect();
    let groups = group(
        assessed
            .iter()
            .zip(&diagnoses)
            .map(|(a, diagnosis)| Member {
                key: &a.key,
                alert: a.alert,
                node: a.node.as_deref(),
                status: a.status,
                since: a.since,
                stuck: a.stuck,
                diagnosis,
            }),
    );
    let escalated = escalations(&groups, options.thresholds);
    let several = escalated.iter().find_map(|e| match e {
        Escalation::Several { count } => Some(*count),
        Escalation::SharedCause { .. } => None,
    });
    let groups = groups
        .iter()
        .map(|group| {
            let shared = escalated.iter().find_map(|e| match e {
                Escalation::SharedCause {
                    rule,
                    subject,
                    count,
                    ..
                } if *rule == group.key.rule && Some(subject) == group.key.subject.as_ref() => {
                    Some(*count)
                }
                _ => None,
            });
            let next = match shared {
                Some(count) => format!(
                    "{count} stuck VMs share this cause: escalate to the cluster administrator (possible cluster-wide issue); then {}",
                    group.next_step()
                ),
                None => group.next_step().to_string(),
            };
            GroupReport {
                rule: group.key.rule,
                cause: group.cause().to_string(),
                next,
                step: group.next_step().to_string(),
                escalated: shared.is_some(),
                vms: group
                    .members
                    .iter()
                    .map(|m| VmReport {
                        namespace: m.key.namespace.clone(),
                        name: m.key.name.clone(),
                        alert: AlertName(m.alert),
                        node: m.node.map(String::from),
                        status: VmStatusName(m.status),
                        since: m.since,
                        stuck: m.stuck,
                        dated: dated.contains(m.key),
                    })
                    .collect(),
            }
        })
        .collect();
    FleetReport {
        stuck: assessed.iter().filter(|a| a.stuck).count(),
        unhealthy: assessed.len(),
        kubevirt: view.and_then(health::of).and_then(|h| h.subject()),
        groups,
        listed: observations.len(),
        options,
        several,
        unknown_kinds: view.map_or_else(Vec::new, unknown_kinds),
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

impl FleetReport {
    /// The report for a person paged at night: the largest problem first, what to do under it.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let after = |d: Duration| human_duration(d.try_into().unwrap_or_default());
        let threshold = format!(
            "{}, {} on a node",
            after(self.options.stuck_after.unhealthy),
            after(self.options.stuck_after.on_node)
        );
        let as_of = self.options.as_of;
        // Shown to the second: read by people.
        let shown = Timestamp::from_second(as_of.as_second()).unwrap_or(as_of);
        if self.groups.is_empty() {
            let _ = writeln!(
                text,
                "no unhealthy VM among {} listed; as of {shown}",
                plural(self.listed, "VirtualMachine", "VirtualMachines")
            );
        } else {
            let _ = writeln!(
                text,
                "{} under a stuck alert, {} stuck (thresholds {threshold}), {}; as of {shown}",
                plural(self.unhealthy, "VM", "VMs"),
                self.stuck,
                plural(self.groups.len(), "cause", "causes"),
            );
        }
        // KubeVirt's own trouble comes first, unless a group says it already.
        if let Some(kubevirt) = &self.kubevirt
            && !self.groups.iter().any(|g| g.cause == *kubevirt)
        {
            let _ = writeln!(text, "{kubevirt}");
        }
        if let Some(count) = self.several {
            let _ = writeln!(text, "ESCALATE: {count} VMs stuck at once. {ADVICE}");
        }
        for (index, group) in self.groups.iter().enumerate() {
            let _ = writeln!(text);
            let cause = match group.rule {
                Some(rule) => format!("[{rule}] {}", group.cause),
                None => group.cause.clone(),
            };
            let _ = writeln!(text, "{}. {cause}", index + 1);
            let stuck = group.vms.iter().filter(|vm| vm.stuck).count();
            let _ = writeln!(
                text,
                "   {}, {stuck} stuck",
                plural(group.vms.len(), "VM", "VMs")
            );
            if group.escalated {
                let _ = writeln!(
                    text,
                    "   ESCALATE: {stuck} stuck VMs share this cause. {ADVICE}"
                );
            }
            let width = group
                .vms
                .iter()
                .map(|vm| vm.namespace.len() + vm.name.len() + 1)
                .max()
                .unwrap_or(0);
            for vm in &group.vms {
                let how_long = if vm.dated {
                    format!("for {}", human_duration(as_of.duration_since(vm.since)))
                } else {
                    "undated (no Ready, Failure or Paused condition): counted from now".to_string()
                };
                let alert = match &vm.node {
                    Some(node) => format!("{} ({node})", vm.alert.0.name()),
                    None => vm.alert.0.name().to_string(),
                };
                let _ = writeln!(
                    text,
                    "     {:<7}  {:<width$}  {:<18}  {how_long}  under {alert}",
                    if vm.stuck { "STUCK" } else { "not yet" },
                    format!("{}/{}", vm.namespace, vm.name),
                    vm.status.0.as_str(),
                );
            }
            let _ = writeln!(text, "   next: {}", group.step);
        }
        if !self.unknown_kinds.is_empty() {
            let names: Vec<&str> = self.unknown_kinds.iter().map(|k| k.as_str()).collect();
            let _ = writeln!(text, "\nnot checked (kinds unknown): {}", names.join(", "));
        } else if !self.groups.is_empty() {
            let _ = writeln!(text);
        }
        // The runbook of each alert the VMs are under, in the alerts' order.
        let alerts: std::collections::BTreeSet<StuckAlert> = self
            .groups
            .iter()
            .flat_map(|g| g.vms.iter().map(|vm| vm.alert.0))
            .collect();
        for alert in alerts {
            let _ = writeln!(text, "runbook ({alert}): {}", alert.runbook_url());
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn now() -> Timestamp {
        "2026-11-26T03:00:00Z".parse().unwrap()
    }

    fn vm(name: &str, status: &str, since: Option<&str>) -> Value {
        let mut vm = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "prod"},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"devices": {}, "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]}}},
            "status": {"printableStatus": status}
        });
        if let Some(since) = since {
            vm["status"]["conditions"] =
                json!([{"type": "Ready", "status": "False", "lastTransitionTime": since}]);
        }
        vm
    }

    #[test]
    fn the_tracker_decides_unhealthy_stuck_and_since() {
        let vms: Vec<VmObservation> = [
            vm("old", "Starting", Some("2026-11-26T02:00:00Z")),
            vm("new", "Starting", Some("2026-11-26T02:58:00Z")),
            vm("undated", "Starting", None),
            vm("has-vmi", "Starting", Some("2026-11-26T02:00:00Z")),
            vm("fine", "Running", Some("2026-11-26T02:00:00Z")),
        ]
        .iter()
        .map(|v| VmObservation::from_object(v).unwrap())
        .collect();
        let vmi = VmiFacts {
            phase: crate::watcher::record::VmiPhase::Succeeded,
            node: None,
        };
        let assessed = assess(
            &vms,
            &[(VmKey::new("prod", "has-vmi"), vmi)],
            StuckAfter::all(TEN_MINUTES),
            now(),
        );
        let verdicts: Vec<(&str, bool, bool)> = assessed
            .iter()
            .map(|a| (a.key.name.as_str(), a.stuck, a.dated))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                ("new", false, true),
                ("old", true, true),
                ("undated", false, false)
            ]
        );
        assert_eq!(assessed[1].since, "2026-11-26T02:00:00Z".parse().unwrap());
        assert_eq!(assessed[2].since, now(), "first seen now");
    }

    #[test]
    fn json_has_exactly_the_documented_shape() {
        let vms = [vm("a", "CrashLoopBackOff", Some("2026-11-26T02:00:00Z"))];
        let options = FleetOptions {
            stuck_after: StuckAfter::all(TEN_MINUTES),
            thresholds: Thresholds::default(),
            as_of: now(),
        };
        let report = report(&vms, &[], &HashMap::new(), None, options);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            json!({"stuck": 1, "unhealthy": 1, "groups": [{
                "rule": null,
                "cause": crate::watcher::diagnose::NO_CAUSE,
                "next": "read the launcher's logs: kubectl -n prod logs -l vm.kubevirt.io/name=a -c compute --previous",
                "vms": [{"namespace": "prod", "name": "a",
                         "alert": "VirtualMachineStuckInUnhealthyState", "status": "CrashLoopBackOff",
                         "since": "2026-11-26T02:00:00Z", "stuck": true}]}]})
        );
        assert!(
            report.text().contains("STUCK    prod/a"),
            "{}",
            report.text()
        );
    }
}
