//! A VM and its VMI as the watcher keeps them: read once off the wire into types. Nothing is
//! kept as a JSON tree, and nothing is parsed again per tick or per diagnosis.
//!
//! - [`VmFacts`]: the few fields that decide whether a VM is stuck, kept for every VM that
//!   might be (its status, what it means to do, its telling conditions, their time);
//! - [`VmRecord`]: what a diagnosis reads (the VM's model, its conditions, what holds a deleted
//!   one), built only for those VMs;
//! - [`VmiFacts`]: the VMI's phase and node, kept for every VMI.

use std::fmt;

use jiff::Timestamp;
use serde::Deserialize;

use super::state::VmKey;
use crate::model::{ModelError, VirtualMachine};

/// KubeVirt's `status.printableStatus` (`VirtualMachinePrintableStatus`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
pub enum VmStatus {
    Stopped,
    Provisioning,
    Starting,
    Running,
    Paused,
    Stopping,
    Terminating,
    CrashLoopBackOff,
    Migrating,
    Unknown,
    ErrorUnschedulable,
    ErrImagePull,
    ImagePullBackOff,
    ErrorPvcNotFound,
    DataVolumeError,
    WaitingForVolumeBinding,
    WaitingForReceiver,
}

impl VmStatus {
    /// The status of a `printableStatus`; `None` for one KubeVirt v1.6 does not write.
    pub fn parse(printable: &str) -> Option<Self> {
        printable.parse().ok()
    }

    /// As KubeVirt prints it in `status.printableStatus`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The `status` label of KubeVirt's `kubevirt_vm_info`: the printable status lower-cased.
    pub fn label(self) -> String {
        self.as_str().to_ascii_lowercase()
    }

    /// KubeVirt's `status_group="error"` (`vmstats_collector.go`).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            VmStatus::CrashLoopBackOff
                | VmStatus::Unknown
                | VmStatus::ErrorUnschedulable
                | VmStatus::ErrImagePull
                | VmStatus::ImagePullBackOff
                | VmStatus::ErrorPvcNotFound
                | VmStatus::DataVolumeError
        )
    }

    /// On its way up or up: none of the stuck alerts concerns a VM in these.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            VmStatus::Running
                | VmStatus::Paused
                | VmStatus::Migrating
                | VmStatus::WaitingForReceiver
        )
    }
}

impl fmt::Display for VmStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    #[serde(other)]
    Unknown,
}

/// One of a VM's `status.conditions`, as KubeVirt writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub status: ConditionStatus,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, deserialize_with = "timestamp_or_none")]
    pub last_transition_time: Option<Timestamp>,
}

impl Condition {
    /// Whether this is a `kind` condition with `status`.
    pub fn is(&self, kind: &str, status: ConditionStatus) -> bool {
        self.kind == kind && self.status == status
    }
}

/// A time that does not read is no time (a status is KubeVirt's to write, not ours to refuse).
fn timestamp_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Timestamp>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer).unwrap_or_default();
    Ok(text.and_then(|t| t.parse().ok()))
}

/// What a VM means to do, from its spec and the start or stop it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// It should run: runStrategy Always, RerunOnFailure or Once, `running: true`, or Manual
    /// with a start pending.
    Run,
    /// runStrategy Manual with no start pending: it runs if it was started (it has a VMI).
    Manual,
    /// It should not run: Halted, `running: false`, a stop pending, or being deleted.
    Halt,
}

/// The spec and status fields that decide whether a VM is stuck.
#[derive(Debug, Clone, PartialEq)]
pub struct VmFacts {
    /// `None` when the VM has no printable status yet (or one this release does not know).
    pub status: Option<VmStatus>,
    pub intent: Intent,
    /// KubeVirt makes these DataVolumes whatever the run strategy.
    pub data_volume_templates: bool,
    /// `Failure=True`: virt-controller could not do what the VM asks.
    pub failure: bool,
    /// `Synchronized=False`: virt-controller could not create or update the VMI or its pod.
    pub not_synchronized: bool,
    /// Latest `lastTransitionTime` of the Ready, Failure and Paused conditions (KubeVirt's
    /// `getLastConditionDetails`, which dates the status in its metrics).
    pub since: Option<Timestamp>,
}

impl VmFacts {
    /// Whether some VMI state could make one of the stuck alerts hold for this VM: the rest
    /// (Running, Stopped without a failure, …) are not kept by the tracker.
    pub fn may_be_stuck(&self) -> bool {
        match self.status {
            None => false,
            Some(status) if status.is_up() => false,
            Some(VmStatus::Stopped) => self.failure || self.not_synchronized,
            Some(_) => true,
        }
    }
}

/// The condition types whose transition dates the VM's status.
const DATING_CONDITIONS: [&str; 3] = ["Ready", "Failure", "Paused"];

/// `spec` fields the facts read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SpecHead {
    running: Option<bool>,
    run_strategy: Option<String>,
    #[serde(default)]
    data_volume_templates: Vec<serde::de::IgnoredAny>,
}

/// `status` fields the facts and the record read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusHead {
    pub printable_status: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    state_change_requests: Vec<StateChangeRequest>,
}

#[derive(Debug, Default, Deserialize)]
struct StateChangeRequest {
    #[serde(default)]
    action: String,
}

impl VmFacts {
    pub(crate) fn read(spec: &SpecHead, status: &StatusHead, deleting: bool) -> Self {
        // virt-controller acts on the first pending request.
        let requested = status
            .state_change_requests
            .first()
            .map(|r| r.action.as_str());
        let intent = if deleting || requested == Some("Stop") {
            Intent::Halt
        } else if requested == Some("Start") {
            Intent::Run
        } else {
            match (spec.run_strategy.as_deref(), spec.running) {
                (Some("Always" | "RerunOnFailure" | "Once"), _) | (None, Some(true)) => Intent::Run,
                (Some("Manual"), _) => Intent::Manual,
                _ => Intent::Halt,
            }
        };
        let condition = |kind: &str, state: ConditionStatus| {
            status.conditions.iter().any(|c| c.is(kind, state))
        };
        VmFacts {
            status: status.printable_status.as_deref().and_then(VmStatus::parse),
            intent,
            data_volume_templates: !spec.data_volume_templates.is_empty(),
            failure: condition("Failure", ConditionStatus::True),
            not_synchronized: condition("Synchronized", ConditionStatus::False),
            since: status
                .conditions
                .iter()
                .filter(|c| DATING_CONDITIONS.contains(&c.kind.as_str()))
                .filter_map(|c| c.last_transition_time)
                .max(),
        }
    }
}

/// A VM as a diagnosis reads it: built once, when the VM may be stuck.
#[derive(Debug)]
pub struct VmRecord {
    pub key: VmKey,
    /// `status.printableStatus` as the VM says it (empty when it has none).
    pub printable_status: String,
    pub conditions: Vec<Condition>,
    /// `metadata.deletionTimestamp`, as the object writes it.
    pub deletion_timestamp: Option<String>,
    pub finalizers: Vec<String>,
    /// The VM's spec in the rules' model, or why it does not read as one.
    pub vm: Result<VirtualMachine, ModelError>,
}

impl VmRecord {
    /// Whether `kind` is `status` on the VM.
    pub fn condition(&self, kind: &str, status: ConditionStatus) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.is(kind, status))
    }
}

/// A VMI's `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, strum::IntoStaticStr)]
pub enum VmiPhase {
    /// No phase yet, as a VMI just created has none: virt-controller has not seen it.
    #[default]
    #[serde(rename = "")]
    Unset,
    Pending,
    Scheduling,
    Scheduled,
    Running,
    Succeeded,
    Failed,
    WaitingForSync,
    #[serde(other)]
    Unknown,
}

/// What the tracker keeps of a VMI: where it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmiFacts {
    pub phase: VmiPhase,
    /// `status.nodeName`, set once the VMI is scheduled.
    pub node: Option<String>,
}

impl VmiFacts {
    /// KubeVirt's `VirtualMachineStuckOnNode` reads `phase=~"scheduled|running"`.
    pub fn on_node(&self) -> bool {
        matches!(self.phase, VmiPhase::Scheduled | VmiPhase::Running)
    }

    /// Its launcher pod has not been scheduled, or has been and not started (Pending and
    /// Scheduling: virt-controller sets Scheduled once the pod runs).
    pub fn before_node(&self) -> bool {
        matches!(
            self.phase,
            VmiPhase::Unset | VmiPhase::Pending | VmiPhase::Scheduling
        )
    }

    /// The phase as KubeVirt writes it (`Scheduling`), empty when unset.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            VmiPhase::Unset => "",
            phase => phase.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use strum::IntoEnumIterator;

    fn facts(spec: serde_json::Value, status: serde_json::Value) -> VmFacts {
        let spec: SpecHead = serde_json::from_value(spec).unwrap();
        let status: StatusHead = serde_json::from_value(status).unwrap();
        VmFacts::read(&spec, &status, false)
    }

    #[test]
    fn every_printable_status_reads_and_labels_as_kubevirts_metric() {
        for status in VmStatus::iter() {
            assert_eq!(VmStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.label(), status.as_str().to_lowercase());
        }
        assert_eq!(VmStatus::parse("Halted"), None);
        let errors: Vec<VmStatus> = VmStatus::iter().filter(|s| s.is_error()).collect();
        assert_eq!(errors.len(), 7, "KubeVirt's error group");
    }

    #[test]
    fn intent_follows_the_run_strategy_and_pending_requests() {
        let intent = |spec, status| facts(spec, status).intent;
        let none = json!({});
        assert_eq!(
            intent(json!({"runStrategy": "Always"}), none.clone()),
            Intent::Run
        );
        assert_eq!(
            intent(json!({"runStrategy": "RerunOnFailure"}), none.clone()),
            Intent::Run
        );
        assert_eq!(
            intent(json!({"runStrategy": "Once"}), none.clone()),
            Intent::Run
        );
        assert_eq!(intent(json!({"running": true}), none.clone()), Intent::Run);
        assert_eq!(
            intent(json!({"running": false}), none.clone()),
            Intent::Halt
        );
        assert_eq!(
            intent(json!({"runStrategy": "Halted"}), none.clone()),
            Intent::Halt
        );
        assert_eq!(
            intent(json!({"runStrategy": "Manual"}), none.clone()),
            Intent::Manual
        );
        let start = json!({"stateChangeRequests": [{"action": "Start"}]});
        let stop = json!({"stateChangeRequests": [{"action": "Stop"}]});
        assert_eq!(intent(json!({"runStrategy": "Manual"}), start), Intent::Run);
        assert_eq!(intent(json!({"runStrategy": "Always"}), stop), Intent::Halt);
        let spec: SpecHead = serde_json::from_value(json!({"runStrategy": "Always"})).unwrap();
        assert_eq!(
            VmFacts::read(&spec, &StatusHead::default(), true).intent,
            Intent::Halt,
            "being deleted"
        );
    }

    #[test]
    fn telling_conditions_and_their_time_are_read() {
        let read = facts(
            json!({"runStrategy": "Halted", "dataVolumeTemplates": [{"metadata": {"name": "d"}}]}),
            json!({"printableStatus": "Stopped", "conditions": [
                {"type": "Failure", "status": "True", "reason": "FailedCreate",
                 "lastTransitionTime": "2026-11-25T10:05:00Z"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-25T10:00:00Z"},
                {"type": "Synchronized", "status": "Unknown"},
                {"type": "Paused", "lastTransitionTime": "not a time"},
                {"type": "PodScheduled", "status": "False", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}),
        );
        assert_eq!(read.status, Some(VmStatus::Stopped));
        assert!(read.failure && !read.not_synchronized && read.data_volume_templates);
        assert_eq!(read.since, Some("2026-11-25T10:05:00Z".parse().unwrap()));
        assert!(read.may_be_stuck(), "stopped with a failure");
        let clean = facts(json!({}), json!({"printableStatus": "Stopped"}));
        assert!(!clean.may_be_stuck());
        let running = facts(json!({}), json!({"printableStatus": "Running"}));
        assert!(!running.may_be_stuck());
    }

    #[test]
    fn vmi_phases_read_where_the_vmi_is() {
        let phase = |p: &str| serde_json::from_value::<VmiPhase>(json!(p)).unwrap();
        assert_eq!(phase("Scheduling"), VmiPhase::Scheduling);
        assert_eq!(phase(""), VmiPhase::Unset);
        assert_eq!(phase("SomethingNew"), VmiPhase::Unknown);
        let at = |phase| VmiFacts { phase, node: None };
        assert!(at(VmiPhase::Scheduled).on_node() && at(VmiPhase::Running).on_node());
        assert!(at(VmiPhase::Pending).before_node() && at(VmiPhase::Unset).before_node());
        assert!(!at(VmiPhase::Failed).on_node() && !at(VmiPhase::Failed).before_node());
        assert_eq!(at(VmiPhase::Scheduling).phase_name(), "Scheduling");
    }
}
