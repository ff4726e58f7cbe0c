//! Prometheus metrics of the webhook (and, where it runs inside `serve`, the watcher).

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use kube::core::admission::Operation;

use crate::cluster::{ClusterView, Kind};
use crate::policy::Action;
use crate::rules::RuleId;

// Label values as enums: counting a request allocates nothing.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub operation: OperationLabel,
    pub result: RequestResult,
}

/// The `operation` label: the AdmissionRequest's operation as the API server writes it, or
/// empty for a request that could not be read.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "UPPERCASE")]
pub enum OperationLabel {
    Create,
    Update,
    Delete,
    Connect,
    #[strum(serialize = "")]
    Unread,
}

impl OperationLabel {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl From<&Operation> for OperationLabel {
    fn from(operation: &Operation) -> Self {
        match operation {
            Operation::Create => OperationLabel::Create,
            Operation::Update => OperationLabel::Update,
            Operation::Delete => OperationLabel::Delete,
            Operation::Connect => OperationLabel::Connect,
        }
    }
}

/// What became of an admission request.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum RequestResult {
    Allowed,
    Warned,
    Denied,
    /// A request we could not read (400, 415).
    Error,
}

impl RequestResult {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the API server said when asked, before a denial, for an object the view did not find.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum ConfirmationResult {
    /// It exists: the view was behind, and the finding is dropped.
    Present,
    /// Confirmed missing: the denial stands.
    Absent,
    /// No answer in time, or an error: the denial becomes a warning.
    Unanswered,
}

impl ConfirmationResult {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl EncodeLabelValue for ConfirmationResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encode_str(self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfirmationLabels {
    pub result: ConfirmationResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub rule: Label<RuleId>,
    pub action: Label<Action>,
}

/// A label value of one of the core's enums (its own string, typed until it is encoded).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct Label<T>(pub T);

/// The core's enums that are label values.
pub trait LabelValue {
    fn label(&self) -> &'static str;
}

impl LabelValue for RuleId {
    fn label(&self) -> &'static str {
        self.as_str()
    }
}

impl LabelValue for Action {
    fn label(&self) -> &'static str {
        self.as_str()
    }
}

fn encode_str(text: &str, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
    std::fmt::Write::write_str(encoder, text)
}

impl EncodeLabelValue for OperationLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encode_str(self.as_str(), encoder)
    }
}

impl EncodeLabelValue for RequestResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encode_str(self.as_str(), encoder)
    }
}

impl<T: LabelValue> EncodeLabelValue for Label<T> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encode_str(self.0.label(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// A stuck VM, with the rule and the one-line cause of its diagnosis.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StuckLabels {
    /// The alert it is stuck under (`VirtualMachineStuckOnNode`, …).
    pub alert: String,
    pub namespace: String,
    pub name: String,
    /// KubeVirt's `status` label: the printable status lower-cased.
    pub status: String,
    /// The node of `VirtualMachineStuckOnNode`; empty (no label, to Prometheus) otherwise.
    pub node: String,
    /// The rule ID of the cause, or `none`.
    pub rule: String,
    pub cause: String,
}

/// One cause of stuck VMs: the rule ID (or `none`) and the subject the VMs share (empty when
/// no cause was found).
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct CauseLabels {
    pub rule: String,
    pub cause: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VmStatusLabels {
    pub alert: String,
    pub namespace: String,
    pub name: String,
    pub status: String,
    pub node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// The webhook's metrics.
pub struct AdmissionMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Histogram,
    pub findings: Family<FindingLabels, Counter>,
    pub confirmations: Family<ConfirmationLabels, Counter>,
    /// How long a review waited on the API server's answers: the part of a denial's latency
    /// that is not virt-preflight's own.
    pub confirmation_latency: Histogram,
    pub deadline_exceeded: Counter,
}

impl AdmissionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = AdmissionMetrics {
            requests: Family::default(),
            // 50 µs … ~1.6 s
            latency: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            findings: Family::default(),
            confirmations: Family::default(),
            confirmation_latency: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            deadline_exceeded: Counter::default(),
        };
        registry.register(
            "admission_requests",
            "Admission requests by operation and result",
            metrics.requests.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request, body read to response",
            metrics.latency.clone(),
        );
        registry.register(
            "admission_findings",
            "Findings in admission requests by rule and action",
            metrics.findings.clone(),
        );
        registry.register(
            "admission_confirmations",
            "Objects asked of the API server before a denial, by answer (present: the view was behind, the finding dropped; absent: the denial stands; unanswered: it warns instead)",
            metrics.confirmations.clone(),
        );
        registry.register(
            "admission_confirmation_duration_seconds",
            "Time a review waited on the API server's answers before a denial (all its objects asked at once)",
            metrics.confirmation_latency.clone(),
        );
        metrics
    }

    /// Registered after the Event counters, where it always was in the exposition.
    fn register_deadline(&self, registry: &mut Registry) {
        registry.register(
            "admission_deadline_exceeded",
            "Requests allowed unchecked because evaluation passed the internal deadline",
            self.deadline_exceeded.clone(),
        );
    }
}

/// The cluster view's metrics, per kind.
#[derive(Default)]
pub struct ViewMetrics {
    pub synced: Family<KindLabels, Gauge>,
    pub objects: Family<KindLabels, Gauge>,
    pub stale: Family<KindLabels, Gauge>,
}

impl ViewMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = ViewMetrics::default();
        registry.register(
            "cache_synced",
            "1 when the cluster view holds a synced list of this kind",
            metrics.synced.clone(),
        );
        registry.register(
            "cache_objects",
            "Objects of this kind in the cluster view",
            metrics.objects.clone(),
        );
        registry.register(
            "cache_stale",
            "1 while the watch of this kind is failing: its data may be behind the API server, and its findings do not deny",
            metrics.stale.clone(),
        );
        metrics
    }
}

/// Kubernetes Events, from the webhook and the watcher.
#[derive(Default)]
pub struct EventMetrics {
    pub sent: Counter,
    pub dropped: Counter,
}

impl EventMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = EventMetrics::default();
        registry.register(
            "events_sent",
            "Kubernetes Events emitted",
            metrics.sent.clone(),
        );
        registry.register(
            "events_dropped",
            "Events dropped because the queue was full or the API refused them",
            metrics.dropped.clone(),
        );
        metrics
    }
}

/// The stuck-VM watcher's series; the per-VM and per-cause ones are exported by the leader
/// only.
#[derive(Default)]
pub struct WatcherMetrics {
    /// 1 while a VM is stuck (absent otherwise).
    pub vm_stuck: Family<StuckLabels, Gauge>,
    /// How many VMs are stuck for one cause.
    pub vms_stuck: Family<CauseLabels, Gauge>,
    /// Since when a VM has been under a stuck alert's condition.
    pub vm_unhealthy_since: Family<VmStatusLabels, Gauge>,
    pub leader: Gauge,
    pub synced: Gauge,
    pub alertmanager_posts: Family<ResultLabels, Counter>,
}

impl WatcherMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = WatcherMetrics::default();
        registry.register(
            "vm_stuck",
            "1 while a VirtualMachine has been under a stuck alert for its threshold (--stuck-after, --stuck-on-node-after), with the alert and the diagnosed cause",
            metrics.vm_stuck.clone(),
        );
        registry.register(
            "vms_stuck",
            "Stuck VirtualMachines by cause: the rule (none when no rule found it) and the object or selector they share (empty when no cause was found)",
            metrics.vms_stuck.clone(),
        );
        registry.register(
            "vm_unhealthy_since_timestamp_seconds",
            "Unix time since which a VirtualMachine has been under a stuck alert's condition (stuck or not yet)",
            metrics.vm_unhealthy_since.clone(),
        );
        registry.register(
            "watcher_leader",
            "1 when this replica holds the watcher's Lease and exports the stuck-VM series",
            metrics.leader.clone(),
        );
        registry.register(
            "watcher_synced",
            "1 once the watcher has listed VirtualMachines and VirtualMachineInstances",
            metrics.synced.clone(),
        );
        registry.register(
            "alertmanager_posts",
            "POSTs of alerts to Alertmanager by result (ok, error, dropped)",
            metrics.alertmanager_posts.clone(),
        );
        metrics
    }
}

/// The policy-report writer's series, exported by the leader only.
#[derive(Default)]
pub struct ReportMetrics {
    /// VMs with an error by rule: they would not start (again) now.
    pub vms_would_not_start: Family<RuleLabels, Gauge>,
    pub writes: Family<ResultLabels, Counter>,
}

impl ReportMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = ReportMetrics::default();
        registry.register(
            "vms_would_not_start",
            "VirtualMachines that would not start (again) now, by rule: every stored VM judged as if started again, as `audit` does (the fail results of the policy reports)",
            metrics.vms_would_not_start.clone(),
        );
        registry.register(
            "policy_report_writes",
            "Writes (apply or delete) of policy reports by result (ok, error)",
            metrics.writes.clone(),
        );
        metrics
    }
}

/// Every metric the process exports, registered once, by the part that exports it.
pub struct Metrics {
    pub registry: Mutex<Registry>,
    pub admission: AdmissionMetrics,
    pub view: ViewMetrics,
    pub events: EventMetrics,
    pub watcher: WatcherMetrics,
    pub reports: ReportMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("virt_preflight");
        let admission = AdmissionMetrics::register(&mut registry);
        let view = ViewMetrics::register(&mut registry);
        let events = EventMetrics::register(&mut registry);
        admission.register_deadline(&mut registry);
        let watcher = WatcherMetrics::register(&mut registry);
        let reports = ReportMetrics::register(&mut registry);
        Metrics {
            registry: Mutex::new(registry),
            admission,
            view,
            events,
            watcher,
            reports,
        }
    }

    /// The cluster view's state, per kind, as of now.
    pub fn set_view(&self, view: &ClusterView) {
        let (synced, stale) = (view.known(), view.stale());
        for kind in Kind::ALL {
            let labels = KindLabels {
                kind: kind.as_str().to_string(),
            };
            self.view
                .synced
                .get_or_create(&labels)
                .set(i64::from(synced.contains(kind)));
            self.view
                .stale
                .get_or_create(&labels)
                .set(i64::from(stale.contains(kind)));
            self.view
                .objects
                .get_or_create(&labels)
                .set(i64::try_from(view.count(kind)).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        }
        text
    }
}
