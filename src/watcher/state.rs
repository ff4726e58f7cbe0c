//! Which VMs are stuck: a pure state machine over watch events and the time, as KubeVirt's
//! alert defines it. No I/O and no clock of its own, so its tests never sleep.
//!
//! A VM is *unhealthy* when its `status.printableStatus` is in KubeVirt's alert set and no
//! VirtualMachineInstance of the same namespace/name exists; it is *stuck* once it has been
//! unhealthy for `stuck_after`. "Since when" is the object's own time where it carries one (the
//! latest `lastTransitionTime` of its Ready, Failure and Paused conditions, as KubeVirt's
//! collector reads it), else the time the tracker first saw it unhealthy, and never before its
//! VMI was last seen to go away.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::object::{StatusHead, WatchedVm};
use crate::finding::{DEFAULT_NAMESPACE, vm_namespace};

/// The `printableStatus` values of KubeVirt's `VirtualMachineStuckInUnhealthyState`:
/// Provisioning, Starting, Terminating and the error group. `WaitingForVolumeBinding` is in
/// KubeVirt's starting group but not in its alert, so it is not here either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnhealthyStatus {
    Provisioning,
    Starting,
    Terminating,
    CrashLoopBackOff,
    Unknown,
    ErrorUnschedulable,
    ErrImagePull,
    ImagePullBackOff,
    ErrorPvcNotFound,
    DataVolumeError,
}

impl UnhealthyStatus {
    pub const ALL: [UnhealthyStatus; 10] = [
        UnhealthyStatus::Provisioning,
        UnhealthyStatus::Starting,
        UnhealthyStatus::Terminating,
        UnhealthyStatus::CrashLoopBackOff,
        UnhealthyStatus::Unknown,
        UnhealthyStatus::ErrorUnschedulable,
        UnhealthyStatus::ErrImagePull,
        UnhealthyStatus::ImagePullBackOff,
        UnhealthyStatus::ErrorPvcNotFound,
        UnhealthyStatus::DataVolumeError,
    ];

    /// The status of a `printableStatus`; `None` for every status the alert ignores.
    pub fn parse(printable: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == printable)
    }

    /// As KubeVirt prints it in `status.printableStatus`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnhealthyStatus::Provisioning => "Provisioning",
            UnhealthyStatus::Starting => "Starting",
            UnhealthyStatus::Terminating => "Terminating",
            UnhealthyStatus::CrashLoopBackOff => "CrashLoopBackOff",
            UnhealthyStatus::Unknown => "Unknown",
            UnhealthyStatus::ErrorUnschedulable => "ErrorUnschedulable",
            UnhealthyStatus::ErrImagePull => "ErrImagePull",
            UnhealthyStatus::ImagePullBackOff => "ImagePullBackOff",
            UnhealthyStatus::ErrorPvcNotFound => "ErrorPvcNotFound",
            UnhealthyStatus::DataVolumeError => "DataVolumeError",
        }
    }

    /// The `status` label KubeVirt's metrics carry: the printable status lower-cased.
    pub fn label(self) -> &'static str {
        match self {
            UnhealthyStatus::Provisioning => "provisioning",
            UnhealthyStatus::Starting => "starting",
            UnhealthyStatus::Terminating => "terminating",
            UnhealthyStatus::CrashLoopBackOff => "crashloopbackoff",
            UnhealthyStatus::Unknown => "unknown",
            UnhealthyStatus::ErrorUnschedulable => "errorunschedulable",
            UnhealthyStatus::ErrImagePull => "errimagepull",
            UnhealthyStatus::ImagePullBackOff => "imagepullbackoff",
            UnhealthyStatus::ErrorPvcNotFound => "errorpvcnotfound",
            UnhealthyStatus::DataVolumeError => "datavolumeerror",
        }
    }
}

impl fmt::Display for UnhealthyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM (or its VMI, which shares the name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmKey {
    pub namespace: String,
    pub name: String,
}

impl VmKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        VmKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object's metadata; `None` without a name.
    pub fn of(object: &Value) -> Option<Self> {
        let meta = object.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = meta.get("namespace").and_then(Value::as_str);
        Some(VmKey::new(
            vm_namespace(None, namespace, DEFAULT_NAMESPACE),
            name,
        ))
    }
}

impl fmt::Display for VmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the tracker reads from one VirtualMachine object.
#[derive(Debug, Clone)]
pub struct VmObservation {
    pub key: VmKey,
    pub uid: Option<String>,
    /// `None` when the printable status is one the alert ignores (Running, Stopped, …).
    pub status: Option<UnhealthyStatus>,
    /// Latest `lastTransitionTime` of the Ready, Failure and Paused conditions.
    pub since: Option<Timestamp>,
    /// The object without managedFields, kept only while the VM is unhealthy (for diagnosis).
    pub object: Option<Arc<Value>>,
}

/// Why a VM object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VirtualMachine without metadata.name")]
pub struct NoName;

/// The condition types whose transition dates the VM's status (KubeVirt's
/// `getLastConditionDetails`).
const DATING_CONDITIONS: [&str; 3] = ["Ready", "Failure", "Paused"];

impl VmObservation {
    /// From a whole object (a snapshot, a test).
    pub fn from_object(object: &Value) -> Result<Self, NoName> {
        let key = VmKey::of(object).ok_or(NoName)?;
        let head = object
            .get("status")
            .and_then(|status| StatusHead::deserialize(status).ok())
            .unwrap_or_default();
        let uid = object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(String::from);
        Ok(Self::observe(key, uid, head, || Arc::new(prune(object))))
    }

    /// From the watch's slim object: the spec and status are parsed only if unhealthy.
    pub fn from_watched(vm: &WatchedVm) -> Result<Self, NoName> {
        let name = vm.name().ok_or(NoName)?;
        let key = VmKey::new(vm_namespace(None, vm.namespace(), DEFAULT_NAMESPACE), name);
        Ok(Self::observe(
            key,
            vm.uid().map(String::from),
            vm.status_head(),
            || vm.to_object(),
        ))
    }

    fn observe(
        key: VmKey,
        uid: Option<String>,
        head: StatusHead,
        object: impl FnOnce() -> Arc<Value>,
    ) -> Self {
        let status = head
            .printable_status
            .as_deref()
            .and_then(UnhealthyStatus::parse);
        let since = head
            .conditions
            .iter()
            .filter(|c| DATING_CONDITIONS.contains(&c.type_.as_str()))
            .filter_map(|c| c.last_transition_time.as_deref()?.parse::<Timestamp>().ok())
            .max();
        VmObservation {
            key,
            uid,
            status,
            since,
            object: status.map(|_| object()),
        }
    }
}

/// The object without what diagnosis never reads (managedFields is often most of it).
fn prune(object: &Value) -> Value {
    let Value::Object(map) = object else {
        return Value::Null;
    };
    let mut pruned = Map::new();
    for (key, value) in map {
        if key == "metadata" {
            let mut meta = value.clone();
            if let Some(meta) = meta.as_object_mut() {
                meta.remove("managedFields");
                meta.remove("ownerReferences");
            }
            pruned.insert(key.clone(), meta);
        } else {
            pruned.insert(key.clone(), value.clone());
        }
    }
    Value::Object(pruned)
}

/// A VM that has been unhealthy for `stuck_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckVm {
    pub key: VmKey,
    pub uid: Option<String>,
    pub status: UnhealthyStatus,
    /// When it became unhealthy, as far as anyone can tell.
    pub since: Timestamp,
    pub object: Arc<Value>,
}

/// Why a raised alert ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveReason {
    /// The printable status left the alert set (Running, Stopped, …).
    Healthy,
    /// A VirtualMachineInstance exists now.
    VmiAppeared,
    /// The VM was deleted (or did not come back in a relist).
    Deleted,
    /// Still unhealthy, in another status: a new alert with the new status follows.
    StatusChanged,
}

/// What the caller must act on: raise or end an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Stuck(StuckVm),
    Resolved {
        key: VmKey,
        uid: Option<String>,
        status: UnhealthyStatus,
        reason: ResolveReason,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    uid: Option<String>,
    status: UnhealthyStatus,
    object_since: Option<Timestamp>,
    /// When the tracker first saw this VM unhealthy (in this spell).
    first_seen: Timestamp,
    /// The spell began before the tracker looked (the VM came unhealthy in a list), so the
    /// object's own time dates it. A VM seen to turn unhealthy in a watch event is dated by
    /// that sight: its Ready condition may carry the time it stopped, days ago.
    dated_by_object: bool,
    object: Arc<Value>,
    /// A `Stuck` transition was given for this status and not resolved since.
    raised: bool,
}

/// The state of every unhealthy VM and the set of VMIs. Healthy VMs are not stored: with
/// 100,000 VMs of which 2 % are unhealthy, the tracker holds 2,000 entries and the VMI names.
#[derive(Debug)]
pub struct Tracker {
    stuck_after: SignedDuration,
    vms: HashMap<VmKey, Entry>,
    vmis: HashSet<VmKey>,
    /// When a VMI was last seen to go away: the VM's clock does not start before that.
    vmi_gone: HashMap<VmKey, Timestamp>,
    vms_synced: bool,
    vmis_synced: bool,
    vm_relist: Option<HashSet<VmKey>>,
    vmi_relist: Option<HashSet<VmKey>>,
}

impl Tracker {
    pub fn new(stuck_after: Duration) -> Self {
        Tracker {
            stuck_after: SignedDuration::try_from(stuck_after).unwrap_or(SignedDuration::MAX),
            vms: HashMap::new(),
            vmis: HashSet::new(),
            vmi_gone: HashMap::new(),
            vms_synced: false,
            vmis_synced: false,
            vm_relist: None,
            vmi_relist: None,
        }
    }

    /// Whether both the VMs and the VMIs have been listed: before that nothing is stuck, as a
    /// VMI not yet listed is not a VMI that does not exist.
    pub fn synced(&self) -> bool {
        self.vms_synced && self.vmis_synced
    }

    /// VMs currently unhealthy (with or without a VMI).
    pub fn unhealthy_count(&self) -> usize {
        self.vms.len()
    }

    pub fn vmi_count(&self) -> usize {
        self.vmis.len()
    }

    /// A VM was added or changed.
    pub fn apply_vm(&mut self, observation: VmObservation, now: Timestamp) -> Vec<Transition> {
        // A relist needs to know which tracked VMs it saw; healthy untracked ones (most of
        // them) need no record.
        if let Some(seen) = self.vm_relist.as_mut()
            && (observation.status.is_some() || self.vms.contains_key(&observation.key))
        {
            seen.insert(observation.key.clone());
        }
        let mut transitions = Vec::new();
        let key = observation.key;
        let (Some(status), Some(object)) = (observation.status, observation.object) else {
            if let Some(entry) = self.vms.remove(&key) {
                resolve(&mut transitions, &key, &entry, ResolveReason::Healthy);
            }
            return transitions;
        };
        if let Some(entry) = self.vms.get(&key)
            && entry.uid.is_some()
            && observation.uid.is_some()
            && entry.uid != observation.uid
        {
            // Deleted and created again under the same name while we were not looking.
            if let Some(old) = self.vms.remove(&key) {
                resolve(&mut transitions, &key, &old, ResolveReason::Deleted);
            }
        }
        match self.vms.get_mut(&key) {
            Some(entry) => {
                if entry.status != status && entry.raised {
                    resolve(&mut transitions, &key, entry, ResolveReason::StatusChanged);
                    entry.raised = false;
                }
                entry.status = status;
                entry.uid = observation.uid;
                entry.object_since = observation.since;
                entry.object = object;
            }
            None => {
                self.vms.insert(
                    key,
                    Entry {
                        uid: observation.uid,
                        status,
                        object_since: observation.since,
                        first_seen: now,
                        dated_by_object: self.vm_relist.is_some() || !self.vms_synced,
                        object,
                        raised: false,
                    },
                );
            }
        }
        transitions
    }

    /// A VM was deleted.
    pub fn delete_vm(&mut self, key: &VmKey) -> Vec<Transition> {
        let mut transitions = Vec::new();
        if let Some(entry) = self.vms.remove(key) {
            resolve(&mut transitions, key, &entry, ResolveReason::Deleted);
        }
        transitions
    }

    /// A VMI was added or changed: its VM is not stuck, whatever its status says.
    pub fn apply_vmi(&mut self, key: VmKey) -> Vec<Transition> {
        if let Some(seen) = self.vmi_relist.as_mut() {
            seen.insert(key);
            return Vec::new(); // applied as a whole at the end of the relist
        }
        let mut transitions = Vec::new();
        if let Some(entry) = self.vms.get_mut(&key)
            && entry.raised
        {
            resolve(&mut transitions, &key, entry, ResolveReason::VmiAppeared);
            entry.raised = false;
        }
        self.vmi_gone.remove(&key);
        self.vmis.insert(key);
        transitions
    }

    /// A VMI was deleted: its VM's clock (if it is unhealthy) starts no earlier than now.
    pub fn delete_vmi(&mut self, key: &VmKey, now: Timestamp) {
        if self.vmis.remove(key) {
            self.vmi_gone.insert(key.clone(), now);
        }
    }

    /// The VM watch starts a (re)list: VMs it does not list again are gone.
    pub fn begin_vm_relist(&mut self) {
        self.vm_relist = Some(HashSet::new());
    }

    /// The VM (re)list is complete. Alerts already raised stay raised (not raised again).
    pub fn end_vm_relist(&mut self) -> Vec<Transition> {
        let mut transitions = Vec::new();
        if let Some(seen) = self.vm_relist.take() {
            let gone: Vec<VmKey> = self
                .vms
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                transitions.extend(self.delete_vm(&key));
            }
        }
        self.vms_synced = true;
        transitions
    }

    pub fn begin_vmi_relist(&mut self) {
        self.vmi_relist = Some(HashSet::new());
    }

    /// The VMI (re)list is complete: the listed set replaces the old one.
    pub fn end_vmi_relist(&mut self, now: Timestamp) -> Vec<Transition> {
        let mut transitions = Vec::new();
        if let Some(listed) = self.vmi_relist.take() {
            let gone: Vec<VmKey> = self
                .vmis
                .iter()
                .filter(|k| !listed.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                self.delete_vmi(&key, now);
            }
            for key in listed {
                if !self.vmis.contains(&key) {
                    transitions.extend(self.apply_vmi(key));
                }
            }
        }
        self.vmis_synced = true;
        transitions
    }

    fn since(&self, key: &VmKey, entry: &Entry) -> Timestamp {
        let since = match (entry.dated_by_object, entry.object_since) {
            (true, Some(object)) => object,
            // Seen to turn unhealthy: not before that sight, nor before what the object says.
            (false, Some(object)) => object.max(entry.first_seen),
            (_, None) => entry.first_seen,
        };
        match self.vmi_gone.get(key) {
            Some(gone) if *gone > since => *gone,
            _ => since,
        }
    }

    /// Raises the VMs that crossed the threshold by `now`; each once.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Transition> {
        if !self.synced() {
            return Vec::new();
        }
        let threshold = self.stuck_after;
        let crossing: Vec<(VmKey, Timestamp)> = self
            .vms
            .iter()
            .filter(|(key, entry)| !entry.raised && !self.vmis.contains(*key))
            .map(|(key, entry)| (key, self.since(key, entry)))
            .filter(|(_, since)| now.duration_since(*since) >= threshold)
            .map(|(key, since)| (key.clone(), since))
            .collect();
        let mut transitions = Vec::with_capacity(crossing.len());
        for (key, since) in crossing {
            if let Some(entry) = self.vms.get_mut(&key) {
                entry.raised = true;
                transitions.push(Transition::Stuck(StuckVm {
                    key,
                    uid: entry.uid.clone(),
                    status: entry.status,
                    since,
                    object: entry.object.clone(),
                }));
            }
        }
        // A VMI that went away longer ago than the threshold no longer moves the clock of a
        // VM not tracked now; a tracked VM keeps its date.
        let vms = &self.vms;
        self.vmi_gone
            .retain(|key, gone| vms.contains_key(key) || now.duration_since(*gone) < threshold);
        transitions.sort_by(|a, b| match (a, b) {
            (Transition::Stuck(a), Transition::Stuck(b)) => a.key.cmp(&b.key),
            _ => std::cmp::Ordering::Equal,
        });
        transitions
    }

    /// The unhealthy VMs without a VMI, with their status and since when; none before the
    /// first lists completed.
    pub fn unhealthy(&self) -> Vec<(VmKey, UnhealthyStatus, Timestamp)> {
        if !self.synced() {
            return Vec::new();
        }
        self.vms
            .iter()
            .filter(|(key, _)| !self.vmis.contains(*key))
            .map(|(key, entry)| (key.clone(), entry.status, self.since(key, entry)))
            .collect()
    }

    /// Every VM raised and not resolved, sorted by key.
    pub fn stuck(&self) -> Vec<StuckVm> {
        let mut stuck: Vec<StuckVm> = self
            .vms
            .iter()
            .filter(|(_, entry)| entry.raised)
            .map(|(key, entry)| StuckVm {
                key: key.clone(),
                uid: entry.uid.clone(),
                status: entry.status,
                since: self.since(key, entry),
                object: entry.object.clone(),
            })
            .collect();
        stuck.sort_by(|a, b| a.key.cmp(&b.key));
        stuck
    }

    /// Approximate bytes held, for the benchmark's memory figure next to the measured RSS.
    pub fn approximate_bytes(&self) -> usize {
        let key = |k: &VmKey| 48 + k.namespace.capacity() + k.name.capacity();
        let vmis: usize = self.vmis.iter().map(key).sum::<usize>() + self.vmis.capacity() * 8;
        let vms: usize = self.vms.keys().map(|k| key(k) + 2048).sum::<usize>();
        vmis + vms
    }
}

fn resolve(transitions: &mut Vec<Transition>, key: &VmKey, entry: &Entry, reason: ResolveReason) {
    if entry.raised {
        transitions.push(Transition::Resolved {
            key: key.clone(),
            uid: entry.uid.clone(),
            status: entry.status,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + minutes * 60).unwrap()
    }

    fn vm(name: &str, printable: &str, condition_time: Option<Timestamp>) -> VmObservation {
        let mut object = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"runStrategy": "Always"},
            "status": {"printableStatus": printable}
        });
        if let Some(time) = condition_time {
            object["status"]["conditions"] = json!([
                {"type": "Ready", "status": "False", "lastTransitionTime": time.to_string()},
                {"type": "PodScheduled", "status": "False",
                 "lastTransitionTime": "2001-01-01T00:00:00Z"}
            ]);
        }
        VmObservation::from_object(&object).unwrap()
    }

    fn key(name: &str) -> VmKey {
        VmKey::new("ns", name)
    }

    /// A tracker whose VMs and VMIs have been listed (empty).
    fn synced() -> Tracker {
        let mut tracker = Tracker::new(TEN_MINUTES);
        tracker.begin_vm_relist();
        tracker.end_vm_relist();
        tracker.begin_vmi_relist();
        tracker.end_vmi_relist(t(0));
        tracker
    }

    fn stuck_names(transitions: &[Transition]) -> Vec<(String, UnhealthyStatus)> {
        transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Stuck(s) => Some((s.key.name.clone(), s.status)),
                _ => None,
            })
            .collect()
    }

    fn resolved(transitions: &[Transition]) -> Vec<(String, ResolveReason)> {
        transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Resolved { key, reason, .. } => Some((key.name.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_alert_status_parses_and_others_do_not() {
        for status in UnhealthyStatus::ALL {
            assert_eq!(UnhealthyStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.label(), status.as_str().to_lowercase());
        }
        for healthy in [
            "Running",
            "Stopped",
            "Paused",
            "Stopping",
            "Migrating",
            "WaitingForVolumeBinding",
            "WaitingForReceiver",
            "",
        ] {
            assert_eq!(UnhealthyStatus::parse(healthy), None, "{healthy}");
        }
    }

    #[test]
    fn observation_dates_by_the_latest_ready_failure_or_paused_condition() {
        let object = json!({
            "metadata": {"name": "a", "namespace": "ns", "managedFields": [1]},
            "status": {"printableStatus": "Starting", "conditions": [
                {"type": "Ready", "lastTransitionTime": "2026-11-25T10:00:00Z"},
                {"type": "Failure", "lastTransitionTime": "2026-11-25T10:05:00Z"},
                {"type": "Paused", "lastTransitionTime": "not a time"},
                {"type": "PodScheduled", "lastTransitionTime": "2026-11-25T11:00:00Z"}
            ]}
        });
        let observation = VmObservation::from_object(&object).unwrap();
        assert_eq!(observation.status, Some(UnhealthyStatus::Starting));
        assert_eq!(
            observation.since,
            Some("2026-11-25T10:05:00Z".parse().unwrap())
        );
        let kept = observation.object.unwrap();
        assert!(kept.pointer("/metadata/managedFields").is_none());
        assert!(VmObservation::from_object(&json!({"metadata": {}})).is_err());
        // A healthy VM keeps no object.
        assert!(vm("b", "Running", None).object.is_none());
    }

    #[test]
    fn unhealthy_becomes_stuck_at_the_threshold_and_only_once() {
        let mut tracker = synced();
        assert!(tracker.apply_vm(vm("a", "Starting", None), t(0)).is_empty());
        assert!(tracker.tick(t(9)).is_empty());
        let at_ten = tracker.tick(t(10));
        assert_eq!(
            stuck_names(&at_ten),
            vec![("a".to_string(), UnhealthyStatus::Starting)]
        );
        let Transition::Stuck(stuck) = &at_ten[0] else {
            unreachable!()
        };
        assert_eq!(stuck.since, t(0));
        assert_eq!(stuck.uid.as_deref(), Some("uid-a"));
        assert!(tracker.tick(t(11)).is_empty(), "raised once");
        // An update with the same status is not a new alert.
        assert!(
            tracker
                .apply_vm(vm("a", "Starting", None), t(12))
                .is_empty()
        );
        assert!(tracker.tick(t(13)).is_empty());
        assert_eq!(tracker.stuck().len(), 1);
    }

    #[test]
    fn every_status_of_the_alert_set_raises() {
        let mut tracker = synced();
        for (i, status) in UnhealthyStatus::ALL.into_iter().enumerate() {
            tracker.apply_vm(vm(&format!("vm{i}"), status.as_str(), None), t(0));
        }
        assert_eq!(tracker.tick(t(10)).len(), UnhealthyStatus::ALL.len());
    }

    #[test]
    fn a_vmi_appearing_clears_it() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        assert_eq!(tracker.tick(t(10)).len(), 1);
        let cleared = tracker.apply_vmi(key("a"));
        assert_eq!(
            resolved(&cleared),
            vec![("a".to_string(), ResolveReason::VmiAppeared)]
        );
        assert!(
            tracker.tick(t(30)).is_empty(),
            "not stuck while the VMI exists"
        );
        assert!(tracker.stuck().is_empty());
    }

    #[test]
    fn a_vm_with_a_vmi_never_alerts_and_its_clock_starts_when_the_vmi_goes() {
        let mut tracker = synced();
        tracker.apply_vmi(key("a"));
        // Terminating for an hour, but the VMI is still there: not KubeVirt's alert.
        tracker.apply_vm(vm("a", "Terminating", Some(t(-60))), t(0));
        assert!(tracker.tick(t(10)).is_empty());
        tracker.delete_vmi(&key("a"), t(20));
        assert!(
            tracker.tick(t(29)).is_empty(),
            "the clock restarts at the VMI's deletion"
        );
        assert_eq!(tracker.tick(t(30)).len(), 1);
    }

    #[test]
    fn deletion_clears_and_resolves() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "ErrorUnschedulable", None), t(0));
        tracker.tick(t(10));
        assert_eq!(
            resolved(&tracker.delete_vm(&key("a"))),
            vec![("a".to_string(), ResolveReason::Deleted)]
        );
        assert!(tracker.stuck().is_empty());
        // Deleting a VM that was never raised resolves nothing.
        tracker.apply_vm(vm("b", "Starting", None), t(10));
        assert!(tracker.delete_vm(&key("b")).is_empty());
    }

    #[test]
    fn healthy_resolves() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.tick(t(10));
        assert_eq!(
            resolved(&tracker.apply_vm(vm("a", "Running", None), t(11))),
            vec![("a".to_string(), ResolveReason::Healthy)]
        );
        assert_eq!(tracker.unhealthy_count(), 0);
    }

    #[test]
    fn running_never_alerts() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Running", Some(t(-600))), t(0));
        assert!(tracker.tick(t(0)).is_empty());
        assert!(tracker.tick(t(1000)).is_empty());
    }

    #[test]
    fn waiting_for_volume_binding_does_not_alert_as_kubevirt() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "WaitingForVolumeBinding", Some(t(-600))), t(0));
        assert!(tracker.tick(t(1000)).is_empty());
        assert_eq!(tracker.unhealthy_count(), 0);
    }

    #[test]
    fn flapping_restarts_the_clock() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.apply_vm(vm("a", "Running", None), t(6));
        tracker.apply_vm(vm("a", "Starting", None), t(8));
        assert!(
            tracker.tick(t(10)).is_empty(),
            "healthy at 6 restarted the clock"
        );
        assert!(tracker.tick(t(17)).is_empty());
        assert_eq!(tracker.tick(t(18)).len(), 1);
    }

    #[test]
    fn a_status_change_while_stuck_ends_one_alert_and_raises_the_next() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.tick(t(10));
        let changed = tracker.apply_vm(vm("a", "ErrorUnschedulable", None), t(11));
        assert_eq!(
            resolved(&changed),
            vec![("a".to_string(), ResolveReason::StatusChanged)]
        );
        // Unhealthy all along since 0: the new status is stuck at once.
        assert_eq!(
            stuck_names(&tracker.tick(t(11))),
            vec![("a".to_string(), UnhealthyStatus::ErrorUnschedulable)]
        );
    }

    #[test]
    fn restart_with_a_condition_time_keeps_the_clock() {
        // A new tracker (the watcher restarted) sees a VM whose Ready condition changed 14
        // minutes ago: it is stuck at the first tick, not ten minutes later.
        let mut tracker = Tracker::new(TEN_MINUTES);
        tracker.begin_vm_relist();
        tracker.apply_vm(vm("a", "Starting", Some(t(-14))), t(0));
        tracker.apply_vm(vm("b", "Starting", None), t(0));
        tracker.end_vm_relist();
        assert!(tracker.tick(t(0)).is_empty(), "VMIs not listed yet");
        tracker.begin_vmi_relist();
        tracker.end_vmi_relist(t(0));
        let first = tracker.tick(t(0));
        assert_eq!(
            stuck_names(&first),
            vec![("a".to_string(), UnhealthyStatus::Starting)]
        );
        let Transition::Stuck(stuck) = &first[0] else {
            unreachable!()
        };
        assert_eq!(stuck.since, t(-14));
        // Without a condition time the clock starts at first sight.
        assert_eq!(stuck_names(&tracker.tick(t(10))).len(), 1);
    }

    #[test]
    fn a_vm_seen_turning_unhealthy_is_dated_by_that_sight_not_an_old_condition() {
        // Stopped a week ago (Ready=False since then), started now: Provisioning for two
        // minutes is not stuck, whatever the old condition time says.
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Stopped", Some(t(-7 * 24 * 60))), t(0));
        tracker.apply_vm(vm("a", "Provisioning", Some(t(-7 * 24 * 60))), t(0));
        assert!(tracker.tick(t(2)).is_empty());
        assert_eq!(tracker.tick(t(10)).len(), 1);
        // A condition newer than the sight dates it later.
        tracker.apply_vm(vm("b", "Starting", Some(t(5))), t(3));
        assert!(tracker.tick(t(14)).is_empty());
        assert_eq!(tracker.tick(t(15)).len(), 1);
    }

    #[test]
    fn a_vmis_departure_keeps_dating_a_tracked_vm() {
        let mut tracker = synced();
        tracker.apply_vmi(key("a"));
        tracker.begin_vm_relist();
        tracker.apply_vm(vm("a", "Terminating", Some(t(-60))), t(0));
        tracker.end_vm_relist();
        tracker.delete_vmi(&key("a"), t(20));
        assert_eq!(tracker.tick(t(30)).len(), 1);
        tracker.tick(t(45));
        assert_eq!(
            tracker.stuck()[0].since,
            t(20),
            "still dated by the VMI's departure"
        );
    }

    #[test]
    fn a_relist_does_not_raise_again_and_resolves_what_is_gone() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.apply_vm(vm("b", "Starting", None), t(0));
        assert_eq!(tracker.tick(t(10)).len(), 2);
        // The watch reconnects and relists: a is listed again, b is gone.
        tracker.begin_vm_relist();
        assert!(
            tracker
                .apply_vm(vm("a", "Starting", None), t(12))
                .is_empty()
        );
        let ended = tracker.end_vm_relist();
        assert_eq!(
            resolved(&ended),
            vec![("b".to_string(), ResolveReason::Deleted)]
        );
        assert!(
            tracker.tick(t(13)).is_empty(),
            "a stays raised, not raised again"
        );
        assert_eq!(tracker.stuck().len(), 1);
    }

    #[test]
    fn a_vmi_relist_applies_the_difference() {
        let mut tracker = synced();
        tracker.apply_vmi(key("a"));
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.apply_vm(vm("b", "Starting", None), t(0));
        assert_eq!(stuck_names(&tracker.tick(t(10))).len(), 1, "only b");
        tracker.begin_vmi_relist();
        tracker.apply_vmi(key("b"));
        let ended = tracker.end_vmi_relist(t(11));
        assert_eq!(
            resolved(&ended),
            vec![("b".to_string(), ResolveReason::VmiAppeared)]
        );
        // a's VMI was not relisted: gone at 11, stuck at 21.
        assert!(tracker.tick(t(20)).is_empty());
        assert_eq!(
            stuck_names(&tracker.tick(t(21))),
            vec![("a".to_string(), UnhealthyStatus::Starting)]
        );
    }

    #[test]
    fn a_recreated_vm_starts_a_new_clock() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.tick(t(10));
        let mut again = vm("a", "Starting", None);
        again.uid = Some("another-uid".into());
        let transitions = tracker.apply_vm(again, t(11));
        assert_eq!(
            resolved(&transitions),
            vec![("a".to_string(), ResolveReason::Deleted)]
        );
        assert!(tracker.tick(t(20)).is_empty());
        assert_eq!(tracker.tick(t(21)).len(), 1);
    }
}
