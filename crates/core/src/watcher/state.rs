//! Which VMs are stuck, and under which alert: a pure state machine over watch events and the
//! time. No I/O and no clock of its own, so its tests never sleep.
//!
//! Three alerts, each a [`StuckAlert`], cover a VM that does not get where it should:
//! - KubeVirt's `VirtualMachineStuckInUnhealthyState`: Provisioning, Starting, Terminating or
//!   an error status, with no VMI, for 10 minutes;
//! - KubeVirt's `VirtualMachineStuckOnNode`: Starting, Stopping, Terminating or an error
//!   status, with a VMI Scheduled or Running (on a node), for 5 minutes;
//! - ours, `VirtualMachineStuckBeforeNode`, the hole between them: a VM that should run whose
//!   VMI never got to a node (Pending, Scheduling), or that virt-controller cannot start
//!   (`Synchronized=False`; `Stopped` with `Failure=True` and no VMI), for 10 minutes.
//!
//! A spell starts when an alert begins to hold for a VM. "Since when" is the object's own time
//! where the spell began before the tracker looked (a list: the latest `lastTransitionTime` of
//! its Ready, Failure and Paused conditions, as KubeVirt's collector dates it), else the time
//! the tracker saw it begin, as Prometheus's `for:` counts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::object::WatchedVm;
pub use super::record::VmStatus;
use super::record::{Intent, VmFacts, VmRecord, VmiFacts};
use crate::rules::finding::{DEFAULT_NAMESPACE, vm_namespace};

/// The alerts a stuck VM is raised under.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumIter, strum::IntoStaticStr,
)]
pub enum StuckAlert {
    /// KubeVirt's: unhealthy with no VMI.
    #[strum(serialize = "VirtualMachineStuckInUnhealthyState")]
    UnhealthyState,
    /// KubeVirt's: unhealthy with its VMI on a node.
    #[strum(serialize = "VirtualMachineStuckOnNode")]
    OnNode,
    /// Ours: should run, and its VMI never got to a node (or was never made).
    #[strum(serialize = "VirtualMachineStuckBeforeNode")]
    BeforeNode,
}

impl StuckAlert {
    /// The `alertname`.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether KubeVirt defines it (its copy may fire beside ours and is inhibited by it).
    pub fn is_kubevirts(self) -> bool {
        !matches!(self, StuckAlert::BeforeNode)
    }

    /// The runbook a person paged for it reads.
    pub fn runbook_url(self) -> &'static str {
        match self {
            StuckAlert::UnhealthyState => {
                "https://kubevirt.io/monitoring/runbooks/VirtualMachineStuckInUnhealthyState.html"
            }
            StuckAlert::OnNode => {
                "https://kubevirt.io/monitoring/runbooks/VirtualMachineStuckOnNode.html"
            }
            StuckAlert::BeforeNode => {
                "https://github.com/virt-preflight/virt-preflight/blob/main/README.md#virtualmachinestuckbeforenode"
            }
        }
    }
}

impl fmt::Display for StuckAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long each alert's condition must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckAfter {
    /// `VirtualMachineStuckInUnhealthyState` and `VirtualMachineStuckBeforeNode` (KubeVirt: 10m).
    pub unhealthy: Duration,
    /// `VirtualMachineStuckOnNode` (KubeVirt: 5m).
    pub on_node: Duration,
}

impl Default for StuckAfter {
    fn default() -> Self {
        StuckAfter {
            unhealthy: Duration::from_secs(600),
            on_node: Duration::from_secs(300),
        }
    }
}

impl StuckAfter {
    /// The same threshold for every alert (`--stuck-after 0s` in a test).
    pub fn all(after: Duration) -> Self {
        StuckAfter {
            unhealthy: after,
            on_node: after,
        }
    }

    pub fn of(self, alert: StuckAlert) -> Duration {
        match alert {
            StuckAlert::OnNode => self.on_node,
            StuckAlert::UnhealthyState | StuckAlert::BeforeNode => self.unhealthy,
        }
    }
}

/// Which alert holds for a VM with `vm`'s facts and its VMI (`None`: it has none), and its
/// status: the three alerts' expressions in one place.
pub fn classify(vm: &VmFacts, vmi: Option<&VmiFacts>) -> Option<(StuckAlert, VmStatus)> {
    let status = vm.status?;
    let unhealthy_state = matches!(
        status,
        VmStatus::Provisioning | VmStatus::Starting | VmStatus::Terminating
    ) || status.is_error();
    let on_node = matches!(
        status,
        VmStatus::Starting | VmStatus::Stopping | VmStatus::Terminating
    ) || status.is_error();
    match vmi {
        None if unhealthy_state => return Some((StuckAlert::UnhealthyState, status)),
        Some(vmi) if vmi.on_node() && on_node => return Some((StuckAlert::OnNode, status)),
        _ => {}
    }
    if status.is_up() || status == VmStatus::Stopping {
        return None;
    }
    let runs = match vm.intent {
        Intent::Run => true,
        Intent::Manual => vmi.is_some(),
        Intent::Halt => false,
    };
    let before_node = match vmi {
        Some(vmi) => runs && (vmi.before_node() || vm.not_synchronized),
        // KubeVirt makes a VM's DataVolumes whatever its run strategy, and fails it when it
        // cannot.
        None => {
            (runs || vm.data_volume_templates)
                && (vm.not_synchronized || (status == VmStatus::Stopped && vm.failure))
        }
    };
    before_node.then_some((StuckAlert::BeforeNode, status))
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
    pub facts: VmFacts,
    /// Read only when the facts say the VM may be stuck.
    pub record: Option<Arc<VmRecord>>,
}

/// Why a VM object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VirtualMachine without metadata.name")]
pub struct NoName;

impl VmObservation {
    /// From a whole object (a snapshot, a test).
    pub fn from_object(object: &Value) -> Result<Self, NoName> {
        let watched = WatchedVm::from_value(object).map_err(|_| NoName)?;
        Self::from_watched(&watched)
    }

    /// From the watch's slim object: the record is read only if the VM may be stuck.
    pub fn from_watched(vm: &WatchedVm) -> Result<Self, NoName> {
        let name = vm.name().ok_or(NoName)?;
        let key = VmKey::new(vm_namespace(None, vm.namespace(), DEFAULT_NAMESPACE), name);
        let (facts, record) = vm.read(&key);
        Ok(VmObservation {
            uid: vm.uid().map(String::from),
            facts,
            record: record.map(Arc::new),
            key,
        })
    }
}

/// A VM that has been under an alert for the alert's threshold.
#[derive(Debug, Clone)]
pub struct StuckVm {
    pub key: VmKey,
    pub uid: Option<String>,
    pub alert: StuckAlert,
    pub status: VmStatus,
    /// The VMI, where there is one.
    pub vmi: Option<VmiFacts>,
    /// Since when the alert holds, as far as anyone can tell.
    pub since: Timestamp,
    pub record: Arc<VmRecord>,
}

impl StuckVm {
    /// The node of `VirtualMachineStuckOnNode`.
    pub fn node(&self) -> Option<&str> {
        self.vmi.as_ref()?.node.as_deref()
    }
}

/// Why a raised alert ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveReason {
    /// No stuck alert holds for the VM any more (it runs, it was stopped, …).
    Healthy,
    /// The VM was deleted (or did not come back in a relist).
    Deleted,
    /// Still stuck, under another alert, status or node: a new alert follows.
    Changed,
}

/// What the caller must act on: raise or end an alert.
#[derive(Debug, Clone)]
pub enum Transition {
    Stuck(StuckVm),
    Resolved {
        key: VmKey,
        uid: Option<String>,
        alert: StuckAlert,
        status: VmStatus,
        reason: ResolveReason,
    },
}

/// An alert holding for a VM, and since when.
#[derive(Debug, Clone, PartialEq)]
struct Spell {
    alert: StuckAlert,
    status: VmStatus,
    node: Option<String>,
    since: Timestamp,
}

#[derive(Debug, Clone)]
struct Entry {
    uid: Option<String>,
    facts: VmFacts,
    record: Arc<VmRecord>,
    spell: Option<Spell>,
    /// A `Stuck` transition was given for this spell and not resolved since.
    raised: bool,
}

/// The VMs that may be stuck and every VMI's whereabouts. Healthy VMs are not stored: with
/// 100,000 VMs of which 2 % are unhealthy, the tracker holds 2,000 VM entries and the VMIs'
/// phases and nodes.
#[derive(Debug)]
pub struct Tracker {
    stuck_after: StuckAfter,
    vms: HashMap<VmKey, Entry>,
    vmis: HashMap<VmKey, VmiFacts>,
    vms_synced: bool,
    vmis_synced: bool,
    vm_relist: Option<HashSet<VmKey>>,
    vmi_relist: Option<HashSet<VmKey>>,
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

impl Tracker {
    pub fn new(stuck_after: StuckAfter) -> Self {
        Tracker {
            stuck_after,
            vms: HashMap::new(),
            vmis: HashMap::new(),
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

    /// Whether what the tracker learns now may have happened before it looked.
    fn listing(&self) -> bool {
        !self.synced() || self.vm_relist.is_some() || self.vmi_relist.is_some()
    }

    /// VMs currently under one of the alerts (stuck or not yet).
    pub fn unhealthy_count(&self) -> usize {
        self.vms.values().filter(|e| e.spell.is_some()).count()
    }

    pub fn vmi_count(&self) -> usize {
        self.vmis.len()
    }

    /// The VMI of `key`, where there is one.
    pub fn vmi(&self, key: &VmKey) -> Option<&VmiFacts> {
        self.vmis.get(key)
    }

    /// A VM was added or changed.
    pub fn apply_vm(&mut self, observation: VmObservation, now: Timestamp) -> Vec<Transition> {
        let key = observation.key;
        // A relist needs to know which tracked VMs it saw; healthy untracked ones (most of
        // them) need no record.
        if let Some(seen) = self.vm_relist.as_mut()
            && (observation.record.is_some() || self.vms.contains_key(&key))
        {
            seen.insert(key.clone());
        }
        let mut transitions = Vec::new();
        let Some(record) = observation.record else {
            if let Some(entry) = self.vms.remove(&key) {
                resolve(&mut transitions, &key, &entry, ResolveReason::Healthy);
            }
            return transitions;
        };
        if let Some(entry) = self.vms.get(&key)
            && entry.uid.is_some()
            && observation.uid.is_some()
            && entry.uid != observation.uid
            && let Some(old) = self.vms.remove(&key)
        {
            // Deleted and created again under the same name while we were not looking.
            resolve(&mut transitions, &key, &old, ResolveReason::Deleted);
        }
        match self.vms.get_mut(&key) {
            Some(entry) => {
                entry.uid = observation.uid;
                entry.facts = observation.facts;
                entry.record = record;
            }
            None => {
                self.vms.insert(
                    key.clone(),
                    Entry {
                        uid: observation.uid,
                        facts: observation.facts,
                        record,
                        spell: None,
                        raised: false,
                    },
                );
            }
        }
        self.reclassify(&key, now, self.listing(), &mut transitions);
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

    /// A VMI was added or changed.
    pub fn apply_vmi(&mut self, key: VmKey, facts: VmiFacts, now: Timestamp) -> Vec<Transition> {
        if let Some(seen) = self.vmi_relist.as_mut() {
            seen.insert(key.clone());
        }
        self.vmis.insert(key.clone(), facts);
        let mut transitions = Vec::new();
        self.reclassify(&key, now, self.listing(), &mut transitions);
        transitions
    }

    /// A VMI was deleted.
    pub fn delete_vmi(&mut self, key: &VmKey, now: Timestamp) -> Vec<Transition> {
        let mut transitions = Vec::new();
        if self.vmis.remove(key).is_some() {
            self.reclassify(key, now, self.listing(), &mut transitions);
        }
        transitions
    }

    /// Which alert holds for `key` now; a change ends the raised alert (if any) and starts
    /// a new spell. A new status under the same alert keeps the spell's time: the VM has been
    /// stuck all along.
    fn reclassify(
        &mut self,
        key: &VmKey,
        now: Timestamp,
        listing: bool,
        transitions: &mut Vec<Transition>,
    ) {
        let vmi = self.vmis.get(key);
        let Some(entry) = self.vms.get_mut(key) else {
            return;
        };
        let holds = classify(&entry.facts, vmi).map(|(alert, status)| {
            let node = match alert {
                StuckAlert::OnNode => vmi.and_then(|v| v.node.clone()),
                _ => None,
            };
            (alert, status, node)
        });
        let current = entry
            .spell
            .as_ref()
            .map(|s| (s.alert, s.status, s.node.clone()));
        if holds == current {
            return;
        }
        let since = match (&entry.spell, &holds) {
            (Some(spell), Some((alert, _, _))) if spell.alert == *alert => spell.since,
            // It began before we looked: the object's own time dates it.
            _ if listing => entry.facts.since.unwrap_or(now),
            // Seen to begin: not before that sight, nor before what the object says.
            _ => entry.facts.since.map_or(now, |object| object.max(now)),
        };
        let reason = if holds.is_some() {
            ResolveReason::Changed
        } else {
            ResolveReason::Healthy
        };
        resolve(transitions, key, entry, reason);
        entry.raised = false;
        entry.spell = holds.map(|(alert, status, node)| Spell {
            alert,
            status,
            node,
            since,
        });
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

    /// The VMI (re)list is complete: VMIs it did not list are gone.
    pub fn end_vmi_relist(&mut self, now: Timestamp) -> Vec<Transition> {
        if let Some(listed) = self.vmi_relist.take() {
            self.vmis.retain(|key, _| listed.contains(key));
        }
        self.vmis_synced = true;
        // What a relist changed began before we looked, and is dated so.
        let keys: Vec<VmKey> = self.vms.keys().cloned().collect();
        let mut transitions = Vec::new();
        for key in keys {
            self.reclassify(&key, now, true, &mut transitions);
        }
        transitions
    }

    /// Raises the VMs whose alert has held for its threshold by `now`; each once per spell.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Transition> {
        if !self.synced() {
            return Vec::new();
        }
        let stuck_after = self.stuck_after;
        let mut transitions = Vec::new();
        for (key, entry) in self.vms.iter_mut() {
            let Some(spell) = &entry.spell else { continue };
            if entry.raised || now.duration_since(spell.since) < signed(stuck_after.of(spell.alert))
            {
                continue;
            }
            entry.raised = true;
            transitions.push(Transition::Stuck(stuck_vm(
                key,
                entry,
                spell,
                self.vmis.get(key),
            )));
        }
        transitions.sort_by(|a, b| match (a, b) {
            (Transition::Stuck(a), Transition::Stuck(b)) => a.key.cmp(&b.key),
            _ => std::cmp::Ordering::Equal,
        });
        transitions
    }

    /// The VMs under an alert (stuck or not yet), with the alert, status and since when; none
    /// before the first lists completed.
    pub fn unhealthy(&self) -> Vec<Unhealthy> {
        if !self.synced() {
            return Vec::new();
        }
        self.vms
            .iter()
            .filter_map(|(key, entry)| {
                let spell = entry.spell.as_ref()?;
                Some(Unhealthy {
                    key: key.clone(),
                    alert: spell.alert,
                    status: spell.status,
                    node: spell.node.clone(),
                    since: spell.since,
                })
            })
            .collect()
    }

    /// Every VM raised and not resolved, sorted by key.
    pub fn stuck(&self) -> Vec<StuckVm> {
        let mut stuck: Vec<StuckVm> = self
            .vms
            .iter()
            .filter(|(_, entry)| entry.raised)
            .filter_map(|(key, entry)| {
                Some(stuck_vm(
                    key,
                    entry,
                    entry.spell.as_ref()?,
                    self.vmis.get(key),
                ))
            })
            .collect();
        stuck.sort_by(|a, b| a.key.cmp(&b.key));
        stuck
    }

    /// Approximate bytes held, for the benchmark's memory figure next to the measured RSS.
    pub fn approximate_bytes(&self) -> usize {
        let key = |k: &VmKey| 48 + k.namespace.capacity() + k.name.capacity();
        let vmis: usize = self
            .vmis
            .iter()
            .map(|(k, v)| key(k) + 40 + v.node.as_ref().map_or(0, String::capacity))
            .sum::<usize>()
            + self.vmis.capacity() * 8;
        let vms: usize = self.vms.keys().map(|k| key(k) + 2048).sum::<usize>();
        vmis + vms
    }
}

/// A VM under an alert, stuck or not yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Unhealthy {
    pub key: VmKey,
    pub alert: StuckAlert,
    pub status: VmStatus,
    pub node: Option<String>,
    pub since: Timestamp,
}

fn stuck_vm(key: &VmKey, entry: &Entry, spell: &Spell, vmi: Option<&VmiFacts>) -> StuckVm {
    StuckVm {
        key: key.clone(),
        uid: entry.uid.clone(),
        alert: spell.alert,
        status: spell.status,
        vmi: vmi.cloned(),
        since: spell.since,
        record: entry.record.clone(),
    }
}

fn resolve(transitions: &mut Vec<Transition>, key: &VmKey, entry: &Entry, reason: ResolveReason) {
    if let (true, Some(spell)) = (entry.raised, &entry.spell) {
        transitions.push(Transition::Resolved {
            key: key.clone(),
            uid: entry.uid.clone(),
            alert: spell.alert,
            status: spell.status,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::record::VmiPhase;
    use serde_json::json;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + minutes * 60).unwrap()
    }

    fn object(name: &str, printable: &str, condition_time: Option<Timestamp>) -> Value {
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
        object
    }

    fn vm(name: &str, printable: &str, condition_time: Option<Timestamp>) -> VmObservation {
        VmObservation::from_object(&object(name, printable, condition_time)).unwrap()
    }

    fn key(name: &str) -> VmKey {
        VmKey::new("ns", name)
    }

    fn vmi(phase: VmiPhase) -> VmiFacts {
        VmiFacts {
            phase,
            node: matches!(phase, VmiPhase::Scheduled | VmiPhase::Running)
                .then(|| "node-1".to_string()),
        }
    }

    /// A tracker whose VMs and VMIs have been listed (empty), with KubeVirt's thresholds.
    fn synced() -> Tracker {
        let mut tracker = Tracker::new(StuckAfter::default());
        tracker.begin_vm_relist();
        tracker.end_vm_relist();
        tracker.begin_vmi_relist();
        tracker.end_vmi_relist(t(0));
        tracker
    }

    fn stuck_names(transitions: &[Transition]) -> Vec<(String, StuckAlert, VmStatus)> {
        transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Stuck(s) => Some((s.key.name.clone(), s.alert, s.status)),
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

    fn facts(spec: Value, status: Value) -> VmFacts {
        let object = json!({"metadata": {"name": "a"}, "spec": spec, "status": status});
        VmObservation::from_object(&object).unwrap().facts
    }

    #[test]
    fn kubevirts_alerts_hold_exactly_as_its_expressions_say() {
        use StuckAlert::*;
        let always = json!({"runStrategy": "Always"});
        let halted = json!({"runStrategy": "Halted"});
        let status = |s: &str| json!({"printableStatus": s});
        let class = |spec: &Value, printable: &str, at: Option<VmiPhase>| {
            classify(
                &facts(spec.clone(), status(printable)),
                at.map(vmi).as_ref(),
            )
            .map(|(alert, _)| alert)
        };
        // No VMI: Provisioning, Starting, Terminating and the error group, whatever the
        // run strategy; not Stopping nor WaitingForVolumeBinding.
        for printable in [
            "Provisioning",
            "Starting",
            "Terminating",
            "CrashLoopBackOff",
            "Unknown",
            "ErrorUnschedulable",
            "ErrImagePull",
            "ImagePullBackOff",
            "ErrorPvcNotFound",
            "DataVolumeError",
        ] {
            assert_eq!(
                class(&halted, printable, None),
                Some(UnhealthyState),
                "{printable}"
            );
        }
        assert_eq!(class(&always, "Stopping", None), None);
        assert_eq!(class(&always, "WaitingForVolumeBinding", None), None);
        // On a node: Starting, Stopping, Terminating and the error group; not Provisioning.
        for printable in [
            "Starting",
            "Stopping",
            "Terminating",
            "ErrImagePull",
            "Unknown",
        ] {
            for phase in [VmiPhase::Scheduled, VmiPhase::Running] {
                assert_eq!(
                    class(&halted, printable, Some(phase)),
                    Some(OnNode),
                    "{printable}"
                );
            }
        }
        assert_eq!(class(&always, "Running", Some(VmiPhase::Running)), None);
        assert_eq!(class(&always, "Paused", Some(VmiPhase::Running)), None);
        assert_eq!(class(&always, "Migrating", Some(VmiPhase::Running)), None);
    }

    #[test]
    fn the_hole_between_them_is_a_vm_that_should_run_and_never_got_to_a_node() {
        use StuckAlert::*;
        let class = |spec: Value, status: Value, at: Option<VmiPhase>| {
            classify(&facts(spec, status), at.map(vmi).as_ref()).map(|(alert, _)| alert)
        };
        let always = || json!({"runStrategy": "Always"});
        let unschedulable = || json!({"printableStatus": "ErrorUnschedulable"});
        // KubeVirt v1.6 creates the VMI first: an unschedulable VM has one, Scheduling.
        for phase in [VmiPhase::Unset, VmiPhase::Pending, VmiPhase::Scheduling] {
            assert_eq!(
                class(always(), unschedulable(), Some(phase)),
                Some(BeforeNode)
            );
        }
        // A launcher pod that cannot be created: Starting, Synchronized=False.
        let refused = json!({"printableStatus": "Starting", "conditions": [
            {"type": "Synchronized", "status": "False", "reason": "FailedCreate"}]});
        assert_eq!(
            class(always(), refused.clone(), Some(VmiPhase::Pending)),
            Some(BeforeNode)
        );
        // A VM virt-controller cannot start: Stopped, Failure=True, no VMI.
        let failed = || {
            json!({"printableStatus": "Stopped", "conditions": [
                {"type": "Failure", "status": "True", "reason": "FailedCreate"}]})
        };
        assert_eq!(class(always(), failed(), None), Some(BeforeNode));
        assert_eq!(
            class(json!({"running": true}), failed(), None),
            Some(BeforeNode)
        );
        // Halted: it should not run, unless KubeVirt makes its DataVolumes.
        assert_eq!(
            class(json!({"runStrategy": "Halted"}), failed(), None),
            None
        );
        let halted_with_templates =
            json!({"runStrategy": "Halted", "dataVolumeTemplates": [{"metadata": {"name": "d"}}]});
        assert_eq!(
            class(halted_with_templates, failed(), None),
            Some(BeforeNode)
        );
        // Manual: only after a start (a pending request, or a VMI made).
        let manual = || json!({"runStrategy": "Manual"});
        assert_eq!(class(manual(), failed(), None), None);
        let mut started = failed();
        started["stateChangeRequests"] = json!([{"action": "Start"}]);
        assert_eq!(class(manual(), started, None), Some(BeforeNode));
        assert_eq!(
            class(manual(), unschedulable(), Some(VmiPhase::Scheduling)),
            Some(BeforeNode)
        );
        // Being stopped, or stopped cleanly: nothing.
        let mut stopping = refused;
        stopping["stateChangeRequests"] = json!([{"action": "Stop"}]);
        assert_eq!(class(always(), stopping, Some(VmiPhase::Pending)), None);
        assert_eq!(
            class(always(), json!({"printableStatus": "Stopped"}), None),
            None
        );
        // A VMI that ended is not "before a node".
        assert_eq!(
            class(always(), unschedulable(), Some(VmiPhase::Failed)),
            None
        );
    }

    #[test]
    fn unhealthy_becomes_stuck_at_the_threshold_and_only_once() {
        let mut tracker = synced();
        assert!(tracker.apply_vm(vm("a", "Starting", None), t(0)).is_empty());
        assert!(tracker.tick(t(9)).is_empty());
        let at_ten = tracker.tick(t(10));
        assert_eq!(
            stuck_names(&at_ten),
            vec![(
                "a".to_string(),
                StuckAlert::UnhealthyState,
                VmStatus::Starting
            )]
        );
        let Transition::Stuck(stuck) = &at_ten[0] else {
            unreachable!()
        };
        assert_eq!(stuck.since, t(0));
        assert_eq!(stuck.uid.as_deref(), Some("uid-a"));
        assert!(tracker.tick(t(11)).is_empty(), "raised once");
        assert!(
            tracker
                .apply_vm(vm("a", "Starting", None), t(12))
                .is_empty()
        );
        assert!(tracker.tick(t(13)).is_empty());
        assert_eq!(tracker.stuck().len(), 1);
    }

    #[test]
    fn stuck_on_node_is_raised_at_five_minutes_with_the_node() {
        let mut tracker = synced();
        tracker.apply_vmi(key("a"), vmi(VmiPhase::Scheduled), t(0));
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        assert!(tracker.tick(t(4)).is_empty());
        let raised = tracker.tick(t(5));
        let Some(Transition::Stuck(stuck)) = raised.first() else {
            panic!("{raised:?}")
        };
        assert_eq!(stuck.alert, StuckAlert::OnNode);
        assert_eq!(stuck.node(), Some("node-1"));
        // It runs: resolved.
        let ran = tracker.apply_vm(vm("a", "Running", None), t(6));
        assert_eq!(
            resolved(&ran),
            vec![("a".to_string(), ResolveReason::Healthy)]
        );
    }

    #[test]
    fn a_vmi_that_never_reaches_a_node_moves_the_vm_into_the_hole_and_out_when_it_runs() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "ErrorUnschedulable", None), t(0));
        assert_eq!(tracker.tick(t(10)).len(), 1, "no VMI yet: KubeVirt's alert");
        // virt-controller makes the VMI: KubeVirt's alert ends, ours holds from now.
        let made = tracker.apply_vmi(key("a"), vmi(VmiPhase::Scheduling), t(11));
        assert_eq!(
            resolved(&made),
            vec![("a".to_string(), ResolveReason::Changed)]
        );
        assert!(tracker.tick(t(20)).is_empty());
        assert_eq!(
            stuck_names(&tracker.tick(t(21))),
            vec![(
                "a".to_string(),
                StuckAlert::BeforeNode,
                VmStatus::ErrorUnschedulable
            )]
        );
        // Scheduled at last, and running: nothing holds.
        tracker.apply_vmi(key("a"), vmi(VmiPhase::Running), t(22));
        let ran = tracker.apply_vm(vm("a", "Running", None), t(22));
        assert!(tracker.stuck().is_empty(), "{ran:?}");
    }

    #[test]
    fn every_status_of_the_alert_set_raises() {
        let mut tracker = synced();
        let statuses: Vec<VmStatus> = <VmStatus as strum::IntoEnumIterator>::iter()
            .filter(|s: &VmStatus| classify(&vm("x", s.as_str(), None).facts, None).is_some())
            .collect();
        assert_eq!(statuses.len(), 10, "{statuses:?}");
        for (i, status) in statuses.iter().enumerate() {
            tracker.apply_vm(vm(&format!("vm{i}"), status.as_str(), None), t(0));
        }
        assert_eq!(tracker.tick(t(10)).len(), statuses.len());
    }

    #[test]
    fn a_vm_with_a_vmi_is_not_kubevirts_first_alert_and_its_clock_starts_when_the_vmi_goes() {
        let mut tracker = synced();
        tracker.apply_vmi(key("a"), vmi(VmiPhase::Succeeded), t(0));
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
    fn waiting_for_volume_binding_without_a_vmi_does_not_alert_as_kubevirt() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "WaitingForVolumeBinding", Some(t(-600))), t(0));
        assert!(tracker.tick(t(1000)).is_empty());
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
            vec![("a".to_string(), ResolveReason::Changed)]
        );
        // Under the same alert all along since 0: the new status is stuck at once.
        assert_eq!(
            stuck_names(&tracker.tick(t(11))),
            vec![(
                "a".to_string(),
                StuckAlert::UnhealthyState,
                VmStatus::ErrorUnschedulable
            )]
        );
    }

    #[test]
    fn restart_with_a_condition_time_keeps_the_clock() {
        // A new tracker (the watcher restarted) sees a VM whose Ready condition changed 14
        // minutes ago: it is stuck at the first tick, not ten minutes later.
        let mut tracker = Tracker::new(StuckAfter::all(TEN_MINUTES));
        tracker.begin_vm_relist();
        tracker.apply_vm(vm("a", "Starting", Some(t(-14))), t(0));
        tracker.apply_vm(vm("b", "Starting", None), t(0));
        tracker.end_vm_relist();
        assert!(tracker.tick(t(0)).is_empty(), "VMIs not listed yet");
        tracker.begin_vmi_relist();
        tracker.end_vmi_relist(t(0));
        let first = tracker.tick(t(0));
        assert_eq!(stuck_names(&first).len(), 1);
        let Transition::Stuck(stuck) = &first[0] else {
            unreachable!()
        };
        assert_eq!((stuck.key.name.as_str(), stuck.since), ("a", t(-14)));
        // Without a condition time the clock starts at first sight.
        assert_eq!(stuck_names(&tracker.tick(t(10))).len(), 1);
    }

    #[test]
    fn a_vmi_listed_after_the_vms_dates_the_hole_by_the_object() {
        let mut tracker = Tracker::new(StuckAfter::default());
        tracker.begin_vm_relist();
        tracker.apply_vm(vm("a", "ErrorUnschedulable", Some(t(-30))), t(0));
        tracker.end_vm_relist();
        tracker.begin_vmi_relist();
        tracker.apply_vmi(key("a"), vmi(VmiPhase::Scheduling), t(0));
        tracker.end_vmi_relist(t(0));
        let first = tracker.tick(t(0));
        assert_eq!(
            stuck_names(&first),
            vec![(
                "a".to_string(),
                StuckAlert::BeforeNode,
                VmStatus::ErrorUnschedulable
            )]
        );
    }

    #[test]
    fn a_vm_seen_turning_unhealthy_is_dated_by_that_sight_not_an_old_condition() {
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
    fn a_relist_does_not_raise_again_and_resolves_what_is_gone() {
        let mut tracker = synced();
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.apply_vm(vm("b", "Starting", None), t(0));
        assert_eq!(tracker.tick(t(10)).len(), 2);
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
        tracker.apply_vmi(key("a"), vmi(VmiPhase::Succeeded), t(0));
        tracker.apply_vm(vm("a", "Starting", None), t(0));
        tracker.apply_vm(vm("b", "Starting", None), t(0));
        assert_eq!(stuck_names(&tracker.tick(t(10))).len(), 1, "only b");
        tracker.begin_vmi_relist();
        let mut ended = tracker.apply_vmi(key("b"), vmi(VmiPhase::Running), t(11));
        ended.extend(tracker.end_vmi_relist(t(11)));
        assert_eq!(
            resolved(&ended),
            vec![("b".to_string(), ResolveReason::Changed)],
            "b's VMI is on a node: KubeVirt's other alert"
        );
        // a's VMI was not relisted: gone; dated by the object (no time: first sight, 11).
        // b is on a node from 11: five minutes.
        assert_eq!(
            stuck_names(&tracker.tick(t(16))),
            vec![("b".to_string(), StuckAlert::OnNode, VmStatus::Starting)]
        );
        assert!(tracker.tick(t(20)).is_empty());
        assert_eq!(
            stuck_names(&tracker.tick(t(21))),
            vec![(
                "a".to_string(),
                StuckAlert::UnhealthyState,
                VmStatus::Starting
            )]
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
