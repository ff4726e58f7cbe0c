//! The watcher at work: kube-rs watches of VMs and VMIs feed the [`Tracker`]; its transitions
//! become Events, Alertmanager alerts and the stuck gauges, by the leader only.
//!
//! [`Watcher`] is the part that decides (synchronous, time passed in, tested without a
//! cluster); [`run`] wires it to the watch streams, the clock and the leader election.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::cluster::ClusterView;
use crate::cluster::live::LiveView;
use crate::events::{EventQueue, EventRequest};
use crate::metrics::{CauseLabels, Metrics, StuckLabels, VmStatusLabels};

use super::alertmanager::{Alert, AlertQueue};
use super::diagnose::{Diagnosis, diagnose};
use super::escalation::{self, Escalation, Thresholds, escalations};
use super::groups::{Group, Member, group};
use super::launcher_pod::LauncherPod;
use super::leader::Leadership;
use super::object::{WatchedVm, WatchedVmi};
use super::record::VmiFacts;
use super::state::{
    ResolveReason, StuckAfter, StuckAlert, StuckVm, Tracker, Transition, VmKey, VmObservation,
};

#[derive(Clone)]
pub struct WatcherOptions {
    /// How long each alert's condition must hold for a VM to be stuck (KubeVirt: 10 minutes,
    /// 5 on a node).
    pub stuck_after: StuckAfter,
    /// How often the clock is checked.
    pub tick: Duration,
    /// How often firing alerts are sent again to Alertmanager (they expire after 4×).
    pub resend: Duration,
    /// When stuck VMs call for the cluster administrator.
    pub thresholds: Thresholds,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        WatcherOptions {
            stuck_after: StuckAfter::default(),
            tick: Duration::from_secs(5),
            resend: Duration::from_secs(60),
            thresholds: Thresholds::default(),
        }
    }
}

/// Where the watcher's news goes.
#[derive(Clone, Default)]
pub struct Outputs {
    pub events: Option<EventQueue>,
    pub alerts: Option<AlertQueue>,
}

/// A VM raised and not resolved.
struct Raised {
    stuck: StuckVm,
    /// Its launcher pod as last read (a VM with a VMI only).
    launcher: Option<LauncherPod>,
    /// When its launcher pod was last read, or tried.
    launcher_read: Option<Timestamp>,
    diagnosis: Diagnosis,
    raised_at: Timestamp,
}

impl Raised {
    fn diagnose(&mut self, view: &ClusterView) {
        self.diagnosis = diagnose(
            &self.stuck.record,
            self.stuck.vmi.as_ref(),
            self.launcher.as_ref(),
            Some(view),
        );
    }
}

/// The deciding part of the watcher.
pub struct Watcher {
    tracker: Tracker,
    options: WatcherOptions,
    metrics: Arc<Metrics>,
    outputs: Outputs,
    raised: BTreeMap<VmKey, Raised>,
    leader: bool,
    last_resend: Option<Timestamp>,
    exported_stuck: HashMap<VmKey, StuckLabels>,
    exported_since: HashMap<VmKey, VmStatusLabels>,
    exported_causes: BTreeMap<CauseLabels, i64>,
    /// The escalation alerts firing, by their labels.
    escalated: BTreeMap<BTreeMap<String, String>, Alert>,
    /// Whether the cluster view has settled: until then nothing is raised, so that the first
    /// diagnosis (and the Event that carries it) sees the cluster.
    view_ready: bool,
    /// The generation of the view the raised VMs were last diagnosed with (not its address:
    /// a later view may be allocated where a dropped one was).
    diagnosed_with: u64,
    /// Resolved alerts, sent once more with the next resend in case the first POST was lost.
    recently_resolved: Vec<Alert>,
    /// VMs whose alert ended because their alert, status or node changed, with the alert
    /// they were under: the next one follows with an Event only if it is another alert.
    changed: HashMap<VmKey, StuckAlert>,
}

impl Watcher {
    pub fn new(options: WatcherOptions, metrics: Arc<Metrics>, outputs: Outputs) -> Self {
        Watcher {
            tracker: Tracker::new(options.stuck_after),
            options,
            metrics,
            outputs,
            raised: BTreeMap::new(),
            leader: false,
            last_resend: None,
            exported_stuck: HashMap::new(),
            exported_since: HashMap::new(),
            exported_causes: BTreeMap::new(),
            escalated: BTreeMap::new(),
            view_ready: true,
            diagnosed_with: 0,
            recently_resolved: Vec::new(),
            changed: HashMap::new(),
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The VMs raised now, with their diagnosis headline at `now`.
    pub fn stuck(&self, now: Timestamp) -> Vec<(VmKey, String)> {
        self.raised
            .iter()
            .map(|(key, raised)| {
                (
                    key.clone(),
                    raised
                        .diagnosis
                        .headline(now.duration_since(raised.stuck.since)),
                )
            })
            .collect()
    }

    /// A VM watch event.
    pub fn on_vm_event(&mut self, event: Event<VmObservation>, now: Timestamp, view: &ClusterView) {
        let transitions = match event {
            Event::Init => {
                self.tracker.begin_vm_relist();
                Vec::new()
            }
            Event::InitApply(observation) | Event::Apply(observation) => {
                self.tracker.apply_vm(observation, now)
            }
            Event::InitDone => {
                let transitions = self.tracker.end_vm_relist();
                self.after_sync(now, view);
                transitions
            }
            Event::Delete(observation) => self.tracker.delete_vm(&observation.key),
        };
        self.handle(transitions, now, view);
    }

    /// A VMI watch event: its name, phase and node.
    pub fn on_vmi_event(
        &mut self,
        event: Event<(VmKey, VmiFacts)>,
        now: Timestamp,
        view: &ClusterView,
    ) {
        let transitions = match event {
            Event::Init => {
                self.tracker.begin_vmi_relist();
                Vec::new()
            }
            Event::InitApply((key, facts)) | Event::Apply((key, facts)) => {
                self.tracker.apply_vmi(key, facts, now)
            }
            Event::InitDone => {
                let transitions = self.tracker.end_vmi_relist(now);
                self.after_sync(now, view);
                transitions
            }
            Event::Delete((key, _)) => self.tracker.delete_vmi(&key, now),
        };
        self.handle(transitions, now, view);
    }

    /// Holds raising until the cluster view has settled (`false`), or lets it go (`true`).
    pub fn set_view_ready(&mut self, ready: bool) {
        self.view_ready = ready;
    }

    fn after_sync(&mut self, now: Timestamp, view: &ClusterView) {
        if self.tracker.synced() {
            self.metrics.watcher.synced.set(1);
            if !self.view_ready {
                return;
            }
            let transitions = self.tracker.tick(now);
            self.handle(transitions, now, view);
            self.sync_metrics();
        }
    }

    /// The clock: raises what crossed the threshold, re-diagnoses and re-sends what is raised.
    pub fn on_tick(&mut self, now: Timestamp, view: &ClusterView) {
        tracing::debug!(
            ready = self.view_ready,
            synced = self.tracker.synced(),
            unhealthy = self.tracker.unhealthy_count(),
            vmis = self.tracker.vmi_count(),
            "tick"
        );
        if !self.view_ready {
            return;
        }
        let transitions = self.tracker.tick(now);
        self.handle(transitions, now, view);
        let resend = SignedDuration::try_from(self.options.resend).unwrap_or(SignedDuration::MAX);
        let due = self
            .last_resend
            .is_none_or(|last| now.duration_since(last) >= resend);
        if due || view.generation() != self.diagnosed_with {
            // The cause may have changed (a Secret created, a node added, the VM edited):
            // diagnose the VM as it is now, against the view as it is now.
            let current: HashMap<VmKey, StuckVm> = self
                .tracker
                .stuck()
                .into_iter()
                .map(|stuck| (stuck.key.clone(), stuck))
                .collect();
            for (key, raised) in self.raised.iter_mut() {
                if let Some(now_stuck) = current.get(key) {
                    raised.stuck = now_stuck.clone();
                }
                raised.diagnose(view);
            }
            self.diagnosed_with = view.generation();
            if !due {
                // A new cause may join or split a group: post what that changes now.
                let changed = self.escalate(now, false);
                self.offer(changed);
            }
        }
        if due {
            self.send_firing(now);
            self.last_resend = Some(now);
        }
        self.sync_metrics();
    }

    /// This replica gained or lost the lead. Gaining it exports and posts what is already
    /// raised, without Events (the former leader emitted them).
    pub fn set_leader(&mut self, leader: bool, now: Timestamp) {
        if leader == self.leader {
            return;
        }
        self.leader = leader;
        self.metrics.watcher.leader.set(i64::from(leader));
        info!(leader, "watcher leadership changed");
        if leader {
            self.send_firing(now);
        }
        self.sync_metrics();
    }

    fn handle(&mut self, transitions: Vec<Transition>, now: Timestamp, view: &ClusterView) {
        if transitions.is_empty() {
            return;
        }
        let mut resolved_alerts = Vec::new();
        let mut firing = Vec::new();
        for transition in transitions {
            match transition {
                Transition::Stuck(stuck) => {
                    let diagnosis = diagnose(&stuck.record, stuck.vmi.as_ref(), None, Some(view));
                    let headline = diagnosis.headline(now.duration_since(stuck.since));
                    warn!(vm = %stuck.key, alert = stuck.alert.name(), "{headline}");
                    // One Event per alert: a new status or node under the same alert gets none.
                    let new_alert = self.changed.remove(&stuck.key) != Some(stuck.alert);
                    let raised = Raised {
                        stuck,
                        launcher: None,
                        launcher_read: None,
                        diagnosis,
                        raised_at: now,
                    };
                    if self.leader {
                        if new_alert && let Some(events) = &self.outputs.events {
                            events.offer(EventRequest {
                                namespace: raised.stuck.key.namespace.clone(),
                                name: raised.stuck.key.name.clone(),
                                uid: raised.stuck.uid.clone(),
                                reason: raised.stuck.alert.name().to_string(),
                                action: "Diagnose".to_string(),
                                note: crate::rules::finding::one_line(&headline, 1000),
                            });
                        }
                        firing.push(self.alert(&raised, now));
                    }
                    self.raised.insert(raised.stuck.key.clone(), raised);
                }
                Transition::Resolved {
                    key, alert, reason, ..
                } => {
                    if reason == ResolveReason::Changed {
                        self.changed.insert(key.clone(), alert);
                    } else {
                        self.changed.remove(&key);
                    }
                    if let Some(raised) = self.raised.remove(&key) {
                        info!(vm = %key, ?reason, "no longer stuck");
                        if self.leader {
                            resolved_alerts.push(self.alert(&raised, now).resolved(now));
                        }
                    }
                }
            }
        }
        self.recently_resolved
            .extend(resolved_alerts.iter().cloned());
        resolved_alerts.extend(firing);
        resolved_alerts.extend(self.escalate(now, false));
        self.offer(resolved_alerts);
        self.sync_metrics();
    }

    /// Posts `alerts` if this replica leads and Alertmanager is configured.
    fn offer(&self, alerts: Vec<Alert>) {
        if self.leader
            && !alerts.is_empty()
            && let Some(queue) = &self.outputs.alerts
        {
            queue.offer(alerts);
        }
    }

    /// The raised VMs, grouped by cause.
    fn groups(&self) -> Vec<Group<'_>> {
        group(self.raised.iter().map(|(key, raised)| Member {
            key,
            alert: raised.stuck.alert,
            node: raised.stuck.node(),
            status: raised.stuck.status,
            since: raised.stuck.since,
            stuck: true,
            diagnosis: &raised.diagnosis,
        }))
    }

    /// Brings the escalation alerts in line with what is raised; returns the alerts to post:
    /// the new, the changed and the ended ones, and with `all` every firing one.
    fn escalate(&mut self, now: Timestamp, all: bool) -> Vec<Alert> {
        let current: Vec<Escalation> = escalations(&self.groups(), self.options.thresholds);
        let mut batch = Vec::new();
        let mut firing = BTreeMap::new();
        for escalation in current {
            let labels = escalation.labels();
            let previous = self.escalated.get(&labels);
            if previous.is_none() {
                warn!("{}; {}", escalation.headline(), escalation::ADVICE);
            }
            let starts_at = previous.map_or(now, |p| p.starts_at);
            let alert = Alert {
                labels: labels.clone(),
                annotations: escalation.annotations(),
                starts_at,
                ends_at: starts_at,
            }
            .firing(now, self.options.resend * 4);
            if all || previous.is_none_or(|p| p.annotations != alert.annotations) {
                batch.push(alert.clone());
            }
            firing.insert(labels, alert);
        }
        for (labels, alert) in &self.escalated {
            if !firing.contains_key(labels) {
                info!(
                    alert = escalation::ALERT_NAME,
                    ?labels,
                    "escalation resolved"
                );
                let resolved = alert.resolved(now);
                self.recently_resolved.push(resolved.clone());
                batch.push(resolved);
            }
        }
        self.escalated = firing;
        batch
    }

    /// Sends every raised alert again (the escalations too), and once more the ones resolved
    /// since the last time.
    fn send_firing(&mut self, now: Timestamp) {
        let resolved = std::mem::take(&mut self.recently_resolved);
        // Escalations that end now are in this batch, and once more in the next.
        let escalations = self.escalate(now, true);
        let mut batch: Vec<Alert> = self.raised.values().map(|r| self.alert(r, now)).collect();
        batch.extend(escalations);
        batch.extend(resolved);
        self.offer(batch);
    }

    /// The alert for a raised VM: KubeVirt's labels and texts (ours for the alert KubeVirt has
    /// not), with the cause.
    fn alert(&self, raised: &Raised, now: Timestamp) -> Alert {
        let stuck = &raised.stuck;
        let key = &stuck.key;
        let status = stuck.status.label();
        let threshold = threshold_text(self.options.stuck_after.of(stuck.alert));
        // The PrometheusRule's labels, so that both routes make one alert; `source` tells it
        // from KubeVirt's alert of the same name.
        let mut labels = BTreeMap::from([
            ("alertname".to_string(), stuck.alert.name().to_string()),
            ("severity".to_string(), "warning".to_string()),
            ("operator_health_impact".to_string(), "none".to_string()),
            ("source".to_string(), escalation::SOURCE.to_string()),
            ("namespace".to_string(), key.namespace.clone()),
            ("name".to_string(), key.name.clone()),
            ("status".to_string(), status.clone()),
        ]);
        if let (StuckAlert::OnNode, Some(node)) = (stuck.alert, stuck.node()) {
            labels.insert("node".to_string(), node.to_string());
        }
        let (summary, description) = alert_texts(stuck, &status, &threshold);
        let mut annotations = BTreeMap::from([
            ("summary".to_string(), summary),
            ("description".to_string(), description),
            (
                "cause".to_string(),
                raised.diagnosis.headline(now.duration_since(stuck.since)),
            ),
            // An annotation, not a label: a new diagnosis must not make a new alert.
            (
                "rule".to_string(),
                raised.diagnosis.cause.rule_label().to_string(),
            ),
            ("next_step".to_string(), raised.diagnosis.next_step.clone()),
            (
                "runbook_url".to_string(),
                stuck.alert.runbook_url().to_string(),
            ),
        ]);
        // KubeVirt's own trouble, whether or not it is this VM's cause.
        if let Some(kubevirt) = raised.diagnosis.kubevirt.as_ref().and_then(|h| h.subject()) {
            annotations.insert("kubevirt".to_string(), kubevirt);
        }
        Alert {
            labels,
            annotations,
            starts_at: raised.raised_at,
            ends_at: raised.raised_at,
        }
        .firing(now, self.options.resend * 4)
    }

    /// The raised VMs with a VMI whose launcher pod has not been read since the last resend:
    /// the pod tells what KubeVirt's conditions do not (a volume that does not mount, an image
    /// that does not pull).
    pub fn launchers_wanted(&self, now: Timestamp) -> Vec<VmKey> {
        let resend = SignedDuration::try_from(self.options.resend).unwrap_or(SignedDuration::MAX);
        self.raised
            .iter()
            .filter(|(_, raised)| raised.stuck.vmi.is_some())
            .filter(|(_, raised)| {
                raised
                    .launcher_read
                    .is_none_or(|read| now.duration_since(read) >= resend)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The launcher pod of a raised VM, read (`None`: it has none): diagnosed again with it.
    pub fn on_launcher(
        &mut self,
        key: &VmKey,
        pod: Option<LauncherPod>,
        now: Timestamp,
        view: &ClusterView,
    ) {
        let Some(raised) = self.raised.get_mut(key) else {
            return;
        };
        raised.launcher_read = Some(now);
        if raised.launcher != pod {
            raised.launcher = pod;
            raised.diagnose(view);
            let updated = self.alert(&self.raised[key], now);
            self.offer(vec![updated]);
            self.sync_metrics();
        }
    }

    /// The launcher pod of `key` could not be read: asked again after a resend interval.
    pub fn on_launcher_unread(&mut self, key: &VmKey, now: Timestamp) {
        if let Some(raised) = self.raised.get_mut(key) {
            raised.launcher_read = Some(now);
        }
    }

    /// Makes the exported series what the leader knows now: adds and changes, and removes
    /// only what ended (clearing all would blink every series for a scrape).
    fn sync_metrics(&mut self) {
        let mut stuck: HashMap<VmKey, StuckLabels> = HashMap::new();
        let mut since: HashMap<VmKey, (VmStatusLabels, i64)> = HashMap::new();
        if self.leader {
            for (key, raised) in &self.raised {
                stuck.insert(
                    key.clone(),
                    StuckLabels {
                        alert: raised.stuck.alert.name().to_string(),
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        status: raised.stuck.status.label(),
                        node: raised.stuck.node().unwrap_or_default().to_string(),
                        rule: raised.diagnosis.cause.rule_label().to_string(),
                        cause: raised.diagnosis.cause.text.clone(),
                    },
                );
            }
            for unhealthy in self.tracker.unhealthy() {
                let labels = VmStatusLabels {
                    alert: unhealthy.alert.name().to_string(),
                    namespace: unhealthy.key.namespace.clone(),
                    name: unhealthy.key.name.clone(),
                    status: unhealthy.status.label(),
                    node: unhealthy.node.unwrap_or_default(),
                };
                since.insert(unhealthy.key, (labels, unhealthy.since.as_second()));
            }
        }
        for (key, labels) in &self.exported_stuck {
            if stuck.get(key) != Some(labels) {
                self.metrics.watcher.vm_stuck.remove(labels);
            }
        }
        for labels in stuck.values() {
            self.metrics.watcher.vm_stuck.get_or_create(labels).set(1);
        }
        for (key, labels) in &self.exported_since {
            if since.get(key).map(|(l, _)| l) != Some(labels) {
                self.metrics.watcher.vm_unhealthy_since.remove(labels);
            }
        }
        for (labels, at) in since.values() {
            self.metrics
                .watcher
                .vm_unhealthy_since
                .get_or_create(labels)
                .set(*at);
        }
        self.exported_stuck = stuck;
        self.exported_since = since.into_iter().map(|(k, (l, _))| (k, l)).collect();
        let mut causes: BTreeMap<CauseLabels, i64> = BTreeMap::new();
        if self.leader {
            for group in self.groups() {
                let labels = CauseLabels {
                    rule: group.key.rule_label().to_string(),
                    cause: group.key.cause_label().to_string(),
                };
                *causes.entry(labels).or_default() += group.members.len() as i64;
            }
        }
        for labels in self.exported_causes.keys() {
            if !causes.contains_key(labels) {
                self.metrics.watcher.vms_stuck.remove(labels);
            }
        }
        for (labels, count) in &causes {
            self.metrics
                .watcher
                .vms_stuck
                .get_or_create(labels)
                .set(*count);
        }
        self.exported_causes = causes;
    }
}

/// The summary and description of a stuck VM's alert: KubeVirt's words for its two alerts.
fn alert_texts(stuck: &StuckVm, status: &str, threshold: &str) -> (String, String) {
    let StuckVm { key, .. } = stuck;
    match stuck.alert {
        StuckAlert::UnhealthyState => (
            format!("Virtual machine in {status} state for more than {threshold}"),
            format!(
                "Virtual machine {} in namespace {} has been in {status} state for more than {threshold}.",
                key.name, key.namespace
            ),
        ),
        StuckAlert::OnNode => (
            format!("Virtual machine stuck in unhealthy state for more than {threshold}"),
            format!(
                "Virtual machine {} in namespace {} on node {} has been in {status} state for more than {threshold}. This may indicate issues with the VM lifecycle on the target node.",
                key.name,
                key.namespace,
                stuck.node().unwrap_or_default()
            ),
        ),
        StuckAlert::BeforeNode => (
            format!(
                "Virtual machine that should run has not reached a node for more than {threshold}"
            ),
            format!(
                "Virtual machine {} in namespace {} should be running but has been in {status} state without reaching a node for more than {threshold}.",
                key.name, key.namespace
            ),
        ),
    }
}

/// `10 minutes`, as KubeVirt's alert text says it.
fn threshold_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds.is_multiple_of(60) {
        let minutes = seconds / 60;
        format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
    } else {
        format!("{seconds} seconds")
    }
}

/// The same event with each object mapped; objects that do not map (no name) are dropped,
/// and a lone Apply or Delete of one is no event at all.
fn map_event<K, T>(event: Event<K>, map: impl Fn(&K) -> Option<T>) -> Option<Event<T>> {
    Some(match event {
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(map(&o)?),
        Event::InitDone => Event::InitDone,
        Event::Apply(o) => Event::Apply(map(&o)?),
        Event::Delete(o) => Event::Delete(map(&o)?),
    })
}

/// The label virt-controller puts on a VM's launcher pods.
pub const LAUNCHER_LABEL: &str = "vm.kubevirt.io/name";

/// A VM's launcher pod (the newest, where a retried VM has several) and its Events; `None`
/// when it has none.
pub async fn read_launcher(
    client: &Client,
    key: &VmKey,
) -> Result<Option<LauncherPod>, kube::Error> {
    let pods = Api::<Pod>::namespaced(client.clone(), &key.namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{LAUNCHER_LABEL}={}", key.name)))
        .await?;
    let Some(pod) = listed
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
    else {
        return Ok(None);
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let events = Api::<CoreEvent>::namespaced(client.clone(), &key.namespace)
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=Pod,involvedObject.name={name}"
        )))
        .await?;
    Ok(Some(LauncherPod::read(&pod, &events.items)))
}

/// Reads the launcher pods asked for, one at a time (a thousand stuck VMs make a queue, not
/// a burst on the API server), off the watcher's loop.
async fn read_launchers(
    client: Client,
    mut wanted: mpsc::Receiver<VmKey>,
    read: mpsc::Sender<(VmKey, Option<Option<LauncherPod>>)>,
) {
    let mut reported = false;
    while let Some(key) = wanted.recv().await {
        let result = match read_launcher(&client, &key).await {
            Ok(pod) => {
                reported = false;
                Some(pod)
            }
            Err(err) => {
                if !reported {
                    warn!(%err, vm = %key, "launcher pod not read; diagnosing without it");
                    reported = true;
                }
                None
            }
        };
        if read.send((key, result)).await.is_err() {
            return;
        }
    }
}

/// Logs the first error of a streak, not every retry.
pub(crate) struct ErrorStreak {
    pub(crate) what: &'static str,
    pub(crate) reported: bool,
}

impl ErrorStreak {
    pub(crate) fn observe<K>(
        &mut self,
        item: Result<Event<K>, watcher::Error>,
    ) -> Option<Event<K>> {
        match item {
            Ok(event) => {
                if matches!(event, Event::InitDone) {
                    self.reported = false;
                }
                Some(event)
            }
            Err(err) => {
                if !self.reported {
                    warn!(%err, "{} watch failed; retrying with backoff", self.what);
                    self.reported = true;
                }
                None
            }
        }
    }
}

/// Launcher pods waiting to be read, at most.
const LAUNCHER_QUEUE: usize = 1024;

/// Watches VMs and VMIs until `shutdown`. Survives API server disconnects: kube-rs's watcher
/// relists with backoff, and the tracker does not raise again what a relist finds raised.
pub async fn run(
    client: Client,
    view: LiveView,
    mut watcher: Watcher,
    mut leadership: Leadership,
    shutdown: impl Future<Output = ()>,
) {
    let config = watcher::Config::default().page_size(500);
    let vms = Api::<WatchedVm>::all(client.clone());
    let vmis = Api::<WatchedVmi>::all(client.clone());
    let (want_launcher, wanted) = mpsc::channel(LAUNCHER_QUEUE);
    let (launcher_sender, mut launchers) = mpsc::channel(LAUNCHER_QUEUE);
    let reader = tokio::spawn(read_launchers(client, wanted, launcher_sender));
    let mut pending: HashSet<VmKey> = HashSet::new();
    let mut vm_stream = std::pin::pin!(watcher::watcher(vms, config.clone()).default_backoff());
    let mut vmi_stream = std::pin::pin!(watcher::watcher(vmis, config).default_backoff());
    let mut vm_errors = ErrorStreak {
        what: "VirtualMachine",
        reported: false,
    };
    let mut vmi_errors = ErrorStreak {
        what: "VirtualMachineInstance",
        reported: false,
    };
    let mut tick = tokio::time::interval(watcher.options.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    watcher.set_leader(leadership.is_leader(), Timestamp::now());
    info!(
        stuck_after = ?watcher.options.stuck_after.unhealthy,
        stuck_on_node_after = ?watcher.options.stuck_after.on_node,
        "watching VirtualMachines for VirtualMachineStuckInUnhealthyState, VirtualMachineStuckOnNode and VirtualMachineStuckBeforeNode"
    );
    loop {
        watcher.set_view_ready(view.settled());
        tokio::select! {
            () = &mut shutdown => break,
            Some(item) = vm_stream.next() => {
                if let Some(event) = vm_errors
                    .observe(item)
                    .and_then(|e| map_event(e, |vm| VmObservation::from_watched(vm).ok()))
                {
                    watcher.on_vm_event(event, Timestamp::now(), &view.current());
                }
            }
            Some(item) = vmi_stream.next() => {
                if let Some(event) = vmi_errors
                    .observe(item)
                    .and_then(|e| map_event(e, |vmi| Some((vmi.key()?, vmi.facts.clone()))))
                {
                    watcher.on_vmi_event(event, Timestamp::now(), &view.current());
                }
            }
            leading = leadership.changed() => watcher.set_leader(leading, Timestamp::now()),
            Some((key, read)) = launchers.recv() => {
                pending.remove(&key);
                match read {
                    Some(pod) => watcher.on_launcher(&key, pod, Timestamp::now(), &view.current()),
                    None => watcher.on_launcher_unread(&key, Timestamp::now()),
                }
            }
            _ = tick.tick() => {
                let now = Timestamp::now();
                watcher.on_tick(now, &view.current());
                for key in watcher.launchers_wanted(now) {
                    // Full: the next tick asks again.
                    if !pending.contains(&key) && want_launcher.try_send(key.clone()).is_ok() {
                        pending.insert(key);
                    }
                }
            }
        }
    }
    reader.abort();
    // Hand the Lease over now rather than after it expires.
    leadership.release().await;
    info!("watcher stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Kind, ViewBuilder};
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn stuck_vm() -> VmObservation {
        stuck_vm_named("a")
    }

    fn stuck_vm_named(name: &str) -> VmObservation {
        observe(name, "ErrorUnschedulable", true)
    }

    /// A VM that should run, in `status`, with or without a nodeSelector no node matches.
    fn observe(name: &str, status: &str, selector: bool) -> VmObservation {
        let mut object = json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "nodeSelector": {"gpu": "a100"},
                "domain": {"devices": {}, "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]}}},
            "status": {"printableStatus": status, "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}
        });
        if !selector {
            object["spec"]["template"]["spec"]
                .as_object_mut()
                .unwrap()
                .remove("nodeSelector");
        }
        VmObservation::from_object(&object).unwrap()
    }

    fn nodes() -> ClusterView {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::Node,
                &json!({"metadata": {"name": "n", "labels": {"kubevirt.io/schedulable": "true"}},
                    "status": {"allocatable": {"cpu": "8", "memory": "8Gi"},
                               "conditions": [{"type": "Ready", "status": "True"}]}}),
            )
            .unwrap();
        builder.build()
    }

    fn synced(watcher: &mut Watcher, view: &ClusterView) {
        watcher.on_vm_event(Event::Init, now(), view);
        watcher.on_vm_event(Event::InitApply(stuck_vm()), now(), view);
        watcher.on_vm_event(Event::InitDone, now(), view);
        watcher.on_vmi_event(Event::Init, now(), view);
        watcher.on_vmi_event(Event::InitDone, now(), view);
    }

    #[test]
    fn nothing_is_raised_before_the_view_settles() {
        let metrics = Arc::new(Metrics::new());
        let mut watcher = Watcher::new(WatcherOptions::default(), metrics, Outputs::default());
        watcher.set_leader(true, now());
        watcher.set_view_ready(false);
        let empty = ClusterView::default();
        synced(&mut watcher, &empty);
        watcher.on_tick(now(), &empty);
        assert!(watcher.stuck(now()).is_empty());
        watcher.set_view_ready(true);
        let view = nodes();
        watcher.on_tick(now(), &view);
        let stuck = watcher.stuck(now());
        assert_eq!(stuck.len(), 1);
        assert!(
            stuck[0].1.contains("[node-selector-unsatisfiable]"),
            "{}",
            stuck[0].1
        );
    }

    #[test]
    fn a_new_view_is_diagnosed_again() {
        let metrics = Arc::new(Metrics::new());
        let mut watcher = leading(&metrics);
        let empty = ClusterView::default();
        synced(&mut watcher, &empty);
        assert!(metrics.encode().contains("rule=\"none\""));
        // The Nodes arrive in a new view, before the resend is due.
        let view = nodes();
        watcher.on_tick(now(), &empty);
        watcher.on_tick(now(), &view);
        let text = metrics.encode();
        assert!(
            text.contains("rule=\"node-selector-unsatisfiable\""),
            "{text}"
        );
        assert!(
            !text.contains("rule=\"none\""),
            "the old series is gone: {text}"
        );
    }

    #[test]
    fn two_views_published_between_ticks_at_one_address_are_told_apart() {
        let metrics = Arc::new(Metrics::new());
        let mut watcher = leading(&metrics);
        // One place for the view, as a loop that reads the latest one into a variable has:
        // the second view sits where the first was.
        let mut view = ViewBuilder::new().view();
        synced(&mut watcher, &view);
        watcher.on_tick(now(), &view);
        assert!(metrics.encode().contains("rule=\"none\""));
        view = nodes();
        watcher.on_tick(now(), &view);
        let text = metrics.encode();
        assert!(
            text.contains("rule=\"node-selector-unsatisfiable\""),
            "the second view was diagnosed: {text}"
        );
    }

    #[test]
    fn a_new_status_of_the_same_spell_gets_no_second_event_and_edits_are_diagnosed() {
        let metrics = Arc::new(Metrics::new());
        let (events, mut queued) = crate::events::queue(&metrics, 8);
        let mut watcher = Watcher::new(
            WatcherOptions::default(),
            metrics.clone(),
            Outputs {
                events: Some(events),
                alerts: None,
            },
        );
        watcher.set_leader(true, now());
        let view = nodes();
        synced(&mut watcher, &view);
        assert!(queued.try_recv().is_ok(), "one Event when stuck");
        // Deleted while stuck: Terminating, still no VMI.
        let terminating = observe("a", "Terminating", true);
        watcher.on_vm_event(Event::Apply(terminating), now(), &view);
        watcher.on_tick(now(), &view);
        assert_eq!(watcher.stuck(now()).len(), 1);
        assert!(metrics.encode().contains("status=\"terminating\""));
        assert!(queued.try_recv().is_err(), "no second Event");

        // The user drops the nodeSelector; the VM is still stuck: the cause follows the edit.
        let edited = observe("a", "Terminating", false);
        watcher.on_vm_event(Event::Apply(edited), now(), &view);
        let later = now() + SignedDuration::from_mins(2);
        watcher.on_tick(later, &view);
        let text = metrics.encode();
        assert!(!text.contains("node-selector-unsatisfiable"), "{text}");
    }

    /// A watcher that leads, with no outputs but `metrics`.
    fn leading(metrics: &Arc<Metrics>) -> Watcher {
        let mut watcher = Watcher::new(
            WatcherOptions::default(),
            metrics.clone(),
            Outputs::default(),
        );
        watcher.set_leader(true, now());
        watcher
    }

    #[test]
    fn stuck_vms_are_counted_by_cause_and_escalated_at_the_threshold() {
        let metrics = Arc::new(Metrics::new());
        let mut watcher = leading(&metrics);
        let view = nodes();
        watcher.on_vm_event(Event::Init, now(), &view);
        for name in ["a", "b"] {
            watcher.on_vm_event(Event::InitApply(stuck_vm_named(name)), now(), &view);
        }
        watcher.on_vm_event(Event::InitDone, now(), &view);
        watcher.on_vmi_event(Event::Init, now(), &view);
        watcher.on_vmi_event(Event::InitDone, now(), &view);
        let count = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("virt_preflight_vms_stuck{"))
                .map(str::to_string)
                .unwrap_or_default()
        };
        let two = count(&metrics.encode());
        assert!(
            two.starts_with("virt_preflight_vms_stuck{rule=\"node-selector-unsatisfiable\",cause=\"nodeSelector gpu=a100 matches none of 1 nodes")
                && two.ends_with("} 2"),
            "{two}"
        );
        assert!(
            watcher.escalated.is_empty(),
            "two share a cause: below the threshold"
        );

        // Seen turning unhealthy now: stuck ten minutes later.
        watcher.on_vm_event(Event::Apply(stuck_vm_named("c")), now(), &view);
        watcher.on_tick(now(), &view);
        assert!(watcher.escalated.is_empty());
        let later = now() + SignedDuration::from_mins(10);
        watcher.on_tick(later, &view);
        assert!(count(&metrics.encode()).ends_with("} 3"));
        let escalated: Vec<&Alert> = watcher.escalated.values().collect();
        assert_eq!(escalated.len(), 1, "three share a cause: escalated");
        assert_eq!(escalated[0].labels["alertname"], escalation::ALERT_NAME);
        assert_eq!(escalated[0].labels["rule"], "node-selector-unsatisfiable");
        assert_eq!(escalated[0].annotations["count"], "3");
        assert!(escalated[0].annotations["description"].ends_with(escalation::ADVICE));

        // One starts: two left, the escalation ends (and is sent resolved).
        let running = observe("c", "Running", true);
        watcher.on_vm_event(Event::Apply(running), later, &view);
        assert!(watcher.escalated.is_empty());
        assert!(
            watcher
                .recently_resolved
                .iter()
                .any(|a| a.labels["alertname"] == escalation::ALERT_NAME && a.ends_at == later),
            "resolved"
        );
        assert!(count(&metrics.encode()).ends_with("} 2"));

        // A follower exports no count.
        watcher.set_leader(false, later);
        assert_eq!(count(&metrics.encode()), "");
    }

    #[test]
    fn the_per_vm_alert_carries_the_source_that_tells_it_from_kubevirts() {
        let mut watcher = leading(&Arc::new(Metrics::new()));
        let view = nodes();
        synced(&mut watcher, &view);
        let raised = watcher.raised.values().next().expect("raised");
        let alert = watcher.alert(raised, now());
        assert_eq!(alert.labels["source"], escalation::SOURCE);
        assert_eq!(alert.labels["operator_health_impact"], "none");
    }

    #[test]
    fn a_launcher_pod_read_later_is_diagnosed_and_posted_with_the_kubelets_words() {
        use crate::watcher::launcher_pod::LauncherPod;
        use crate::watcher::record::VmiPhase;
        let metrics = Arc::new(Metrics::new());
        let mut watcher = leading(&metrics);
        let view = nodes();
        // Runs anywhere: its VMI waits on a node, and nothing the view holds says why.
        let key = VmKey::new("ns", "a");
        watcher.on_vm_event(Event::Init, now(), &view);
        watcher.on_vm_event(
            Event::InitApply(observe("a", "Starting", false)),
            now(),
            &view,
        );
        watcher.on_vm_event(Event::InitDone, now(), &view);
        watcher.on_vmi_event(Event::Init, now(), &view);
        let scheduling = VmiFacts {
            phase: VmiPhase::Scheduling,
            node: None,
        };
        watcher.on_vmi_event(Event::InitApply((key.clone(), scheduling)), now(), &view);
        watcher.on_vmi_event(Event::InitDone, now(), &view);
        assert_eq!(watcher.launchers_wanted(now()), vec![key.clone()]);
        let pod = LauncherPod {
            name: "virt-launcher-a-x".into(),
            phase: "Pending".into(),
            node: Some("n".into()),
            waiting: Vec::new(),
            warnings: vec![(
                "FailedMount".into(),
                "MountVolume.SetUp failed for volume \"c\" : secret \"s\" not found".into(),
            )],
        };
        watcher.on_launcher(&key, Some(pod), now(), &view);
        assert!(
            watcher.launchers_wanted(now()).is_empty(),
            "read: not asked again"
        );
        let text = metrics.encode();
        assert!(
            text.contains("alert=\"VirtualMachineStuckBeforeNode\"")
                && text.contains("rule=\"secret-not-found\"")
                && text.contains("the kubelet: pod virt-launcher-a-x: FailedMount"),
            "{text}"
        );
        // Asked again after a resend interval.
        let later = now() + SignedDuration::from_mins(1);
        assert_eq!(watcher.launchers_wanted(later), vec![key]);
    }

    #[test]
    fn thresholds_read_as_kubevirt_writes_them() {
        assert_eq!(threshold_text(Duration::from_secs(600)), "10 minutes");
        assert_eq!(threshold_text(Duration::from_secs(60)), "1 minute");
        assert_eq!(threshold_text(Duration::from_secs(90)), "90 seconds");
    }
}
