//! The policy-report writer of the watcher process: while this replica leads, it watches every
//! VM, judges the namespaces a change touched once the change has settled ([`Debouncer`]),
//! and server-side applies each namespace's report when what it says has changed (deletes it
//! once the namespace has no result). A VM's spec, or an object of the cluster view, changing
//! marks the namespaces it may touch: its own for a namespaced object, every one for a
//! cluster-scoped one ([`ClusterView::changed_since`]).
//!
//! Where neither report API is installed, the VMs are still judged for the gauge of VMs that
//! would not start again; that the reports are not written is logged once, and the API server
//! is asked again every [`REDISCOVER`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tracing::{debug, info, warn};

use super::{
    Debouncer, MANAGED_BY, NamespaceReport, POLICY, ReportApi, from_object, judge, to_object,
};
use crate::cluster::live::LiveView;
use crate::cluster::{Changed, ClusterView};
use crate::metrics::{Metrics, RuleLabels};
use crate::rules::RuleId;
use crate::watcher::WatchedVm;
use crate::watcher::leader::Leadership;
use crate::watcher::run::ErrorStreak;

/// What the writer does to reports (deploy/base/clusterrole.yaml grants exactly these, on
/// [`ReportApi::ALL`]'s resources).
pub const VERBS: [&str; 4] = ["list", "create", "patch", "delete"];

/// How often the reports on the API server are read back and put right where they differ
/// from what was written (someone deleted or edited one).
pub const RESYNC: Duration = Duration::from_secs(300);

/// How often the API server is asked again for a report API it did not serve.
pub const REDISCOVER: Duration = Duration::from_secs(60);
/// The default of `--report-debounce`.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// A namespace is written at most once per this long (see [`Debouncer`]).
    pub debounce: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// Why a term of leadership ended.
enum Ended {
    Shutdown,
    LostLead,
}

/// Writes the reports while this replica leads, until `shutdown`.
pub async fn run(
    client: Client,
    view: LiveView,
    mut leadership: Leadership,
    metrics: Arc<Metrics>,
    options: WriterOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        if !leadership.is_leader() {
            tokio::select! {
                () = &mut shutdown => return,
                _ = leadership.changed() => continue,
            }
        }
        let mut term = Term::new(client.clone(), view.clone(), metrics.clone(), &options);
        let ended = term.lead(&mut leadership, shutdown.as_mut()).await;
        // A follower exports none of the per-rule series (the leader does).
        metrics.reports.vms_would_not_start.clear();
        match ended {
            Ended::Shutdown => return,
            Ended::LostLead => info!("policy reports: no longer leading"),
        }
    }
}

/// One term of leadership: the VMs, what was judged and what is on the API server.
struct Term {
    client: Client,
    view: LiveView,
    metrics: Arc<Metrics>,
    debounce: Duration,
    /// Where reports go; `None` while neither API is served.
    api: Option<ReportApi>,
    /// When the APIs were last asked for.
    discovered: Option<tokio::time::Instant>,
    /// Whether "no report API" was logged (once per process would hide a CRD removed later;
    /// once per term is once in practice).
    said_absent: bool,
    vms: BTreeMap<String, BTreeMap<String, WatchedVm>>,
    /// The VMs listed so far in a relist.
    relist: Option<BTreeMap<String, BTreeMap<String, WatchedVm>>>,
    vms_listed: bool,
    /// What each namespace's report says, as last judged.
    judged: BTreeMap<String, NamespaceReport>,
    /// What each namespace's report says on the API server, as last written or read.
    written: BTreeMap<String, NamespaceReport>,
    debouncer: Debouncer,
    /// The view the namespaces were last marked against.
    seen_view: Option<Arc<ClusterView>>,
    /// Whether the reports already on the API server were read (or none can be): until then
    /// nothing is judged, so that no `pass` or time is forgotten.
    history_read: bool,
    /// When the reports were last read back.
    resynced: Option<tokio::time::Instant>,
    /// Whether "waiting for a failing watch" was logged.
    said_stale: bool,
    /// The rules `virt_preflight_vms_would_not_start` has a series for.
    exported: BTreeSet<RuleId>,
    /// Writes failed since the last that succeeded.
    write_errors: usize,
}

impl Term {
    fn new(client: Client, view: LiveView, metrics: Arc<Metrics>, options: &WriterOptions) -> Self {
        Term {
            client,
            view,
            metrics,
            debounce: options.debounce,
            api: None,
            discovered: None,
            said_absent: false,
            vms: BTreeMap::new(),
            relist: None,
            vms_listed: false,
            judged: BTreeMap::new(),
            written: BTreeMap::new(),
            debouncer: Debouncer::new(options.debounce),
            seen_view: None,
            history_read: false,
            resynced: None,
            said_stale: false,
            exported: BTreeSet::new(),
            write_errors: 0,
        }
    }

    async fn lead(
        &mut self,
        leadership: &mut Leadership,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Ended {
        let config = watcher::Config::default().page_size(500);
        let vms = Api::<WatchedVm>::all(self.client.clone());
        let mut stream = std::pin::pin!(watcher::watcher(vms, config).default_backoff());
        let mut errors = ErrorStreak {
            what: "VirtualMachine (policy reports)",
            reported: false,
        };
        let mut tick = tokio::time::interval(
            (self.debounce / 5).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ended::Shutdown,
                leading = leadership.changed() => if !leading { return Ended::LostLead },
                Some(item) = stream.next() => {
                    if let Some(event) = errors.observe(item) {
                        self.on_vm_event(event, Timestamp::now());
                    }
                }
                _ = tick.tick() => {
                    // A tick's writes stop at shutdown or when the lead is lost (checked
                    // before each write).
                    tokio::select! {
                        () = &mut shutdown => return Ended::Shutdown,
                        () = self.on_tick(leadership) => {}
                    }
                }
            }
        }
    }

    fn on_vm_event(&mut self, event: Event<WatchedVm>, now: Timestamp) {
        let keyed = |vm: &WatchedVm| Some((vm.namespace()?.to_string(), vm.name()?.to_string()));
        match event {
            Event::Init => self.relist = Some(BTreeMap::new()),
            Event::InitApply(vm) => {
                if let (Some(relist), Some((ns, name))) = (&mut self.relist, keyed(&vm)) {
                    relist
                        .entry(ns)
                        .or_default()
                        .insert(name, vm.without_status());
                }
            }
            Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let before = std::mem::replace(&mut self.vms, listed);
                for namespace in before.keys().chain(self.vms.keys()) {
                    self.debouncer.mark(namespace, now);
                }
                self.vms_listed = true;
            }
            Event::Apply(vm) => {
                if let Some((ns, name)) = keyed(&vm) {
                    let vm = vm.without_status();
                    let names = self.vms.entry(ns.clone()).or_default();
                    // A status change (most of a running cluster's events) judges nothing anew.
                    if names.get(&name).is_none_or(|was| !was.same_spec(&vm)) {
                        self.debouncer.mark(&ns, now);
                    }
                    names.insert(name, vm);
                }
            }
            Event::Delete(vm) => {
                if let Some((ns, name)) = keyed(&vm) {
                    self.debouncer.mark(&ns, now);
                    if let Some(names) = self.vms.get_mut(&ns) {
                        names.remove(&name);
                        if names.is_empty() {
                            self.vms.remove(&ns);
                        }
                    }
                }
            }
        }
    }

    async fn on_tick(&mut self, leadership: &Leadership) {
        self.discover().await;
        self.resync().await;
        // No judgement before the VMs, the view and the reports already written are read (no
        // result from a half view, no `pass` forgotten), nor while a watch of the view is
        // failing (its data may be behind: no fresh data, no `fail`); the marked namespaces
        // wait, and are judged once the view is whole again.
        if !self.vms_listed || !self.view.settled() || !self.history_read {
            return;
        }
        let view = self.view.current();
        let stale: Vec<&str> = view.stale().iter().map(|kind| kind.as_str()).collect();
        if !stale.is_empty() {
            if !self.said_stale {
                info!(kinds = ?stale, "policy reports wait: the cluster view's watch of these kinds is failing, and its data may be behind");
                self.said_stale = true;
            }
            return;
        }
        self.said_stale = false;
        // Whole seconds: what the reports can say (their timestamps have no fraction here).
        let now = Timestamp::from_second(Timestamp::now().as_second())
            .unwrap_or_else(|_| Timestamp::now());
        self.mark_view_changes(&view, now);
        let due = self.debouncer.due(now);
        if due.is_empty() {
            return;
        }
        for namespace in &due {
            // Judging a namespace is CPU work: let the other tasks of the process run between.
            tokio::task::yield_now().await;
            let previous = self
                .judged
                .get(namespace)
                .or_else(|| self.written.get(namespace))
                .cloned()
                .unwrap_or_default();
            let models: Vec<(&str, &str, crate::model::VirtualMachine)> = self
                .vms
                .get(namespace)
                .into_iter()
                .flatten()
                .filter_map(|(name, vm)| match vm.model() {
                    Ok(model) => Some((name.as_str(), vm.uid().unwrap_or_default(), model)),
                    Err(err) => {
                        debug!(vm = %format!("{namespace}/{name}"), %err, "not judged: its spec does not read");
                        None
                    }
                })
                .collect();
            let report = judge(
                namespace,
                models.iter().map(|(name, uid, vm)| (*name, *uid, vm)),
                &view,
                &previous,
                now,
            );
            if report.is_empty() {
                self.judged.remove(namespace);
            } else {
                self.judged.insert(namespace.clone(), report);
            }
        }
        self.export_gauge();
        if let Some(api) = self.api {
            for namespace in &due {
                if !leadership.is_leader() {
                    // The next leader writes; these namespaces are its.
                    return;
                }
                self.write(api, namespace).await;
            }
        }
    }

    /// Marks the namespaces where the view now reads otherwise than when last looked at: the
    /// ones whose objects changed, or every one for a change of anything cluster-scoped.
    fn mark_view_changes(&mut self, view: &Arc<ClusterView>, now: Timestamp) {
        let changed = match &self.seen_view {
            Some(seen) if seen.generation() == view.generation() => return,
            Some(seen) => view.changed_since(seen),
            None => Changed::Everywhere,
        };
        self.seen_view = Some(view.clone());
        let namespaces: BTreeSet<String> = match changed {
            Changed::In(namespaces) => namespaces,
            Changed::Everywhere => self
                .vms
                .keys()
                .chain(self.judged.keys())
                .chain(self.written.keys())
                .cloned()
                .collect(),
        };
        for namespace in namespaces {
            self.debouncer.mark(&namespace, now);
        }
    }

    /// Every [`RESYNC`], reads back the reports on the API server, so that one deleted or
    /// edited by someone else is put right.
    async fn resync(&mut self) {
        let Some(api) = self.api else {
            return;
        };
        if self.resynced.is_some_and(|at| at.elapsed() < RESYNC) {
            return;
        }
        self.resynced = Some(tokio::time::Instant::now());
        if let Some(written) = self.list_written(api).await {
            let now = Timestamp::now();
            for namespace in written.keys().chain(self.written.keys()) {
                if written.get(namespace) != self.written.get(namespace) {
                    self.debouncer.mark(namespace, now);
                }
            }
            self.written = written;
        }
    }

    /// The reports this tool wrote, as the API server has them now, by namespace.
    async fn list_written(&self, api: ReportApi) -> Option<BTreeMap<String, NamespaceReport>> {
        let reports: Api<DynamicObject> = Api::all_with(self.client.clone(), &api.resource());
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        match reports.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => Some(
                list.items
                    .iter()
                    .filter_map(|report| {
                        let namespace = report.metadata.namespace.clone()?;
                        let object = serde_json::to_value(report).ok()?;
                        Some((namespace, from_object(&object)))
                    })
                    .collect(),
            ),
            Err(err) => {
                warn!(%err, report = %api, "cannot list the policy reports already written; asking again later");
                None
            }
        }
    }

    /// Brings the namespace's report on the API server in line with what was judged.
    async fn write(&mut self, api: ReportApi, namespace: &str) {
        let empty = NamespaceReport::default();
        let wanted = self.judged.get(namespace).unwrap_or(&empty);
        let on_server = self.written.get(namespace);
        // An empty report is no report: deleted, not written.
        let unchanged = match on_server {
            Some(written) => written == wanted && !wanted.is_empty(),
            None => wanted.is_empty(),
        };
        if unchanged {
            return;
        }
        let reports: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &api.resource());
        let result = if wanted.is_empty() {
            match reports.delete(POLICY, &DeleteParams::default()).await {
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                other => other.map(|_| ()),
            }
        } else {
            let object = to_object(api, namespace, wanted);
            reports
                .patch(
                    POLICY,
                    &PatchParams::apply(POLICY).force(),
                    &Patch::Apply(&object),
                )
                .await
                .map(|_| ())
        };
        let outcome = match result {
            Ok(()) => {
                if self.write_errors > 0 {
                    info!(
                        failed = self.write_errors,
                        "policy reports are written again"
                    );
                    self.write_errors = 0;
                }
                if wanted.is_empty() {
                    self.written.remove(namespace);
                } else {
                    self.written.insert(namespace.to_string(), wanted.clone());
                }
                "ok"
            }
            Err(err) => {
                if self.write_errors == 0 {
                    warn!(%err, namespace, report = %api, "cannot write the policy report; trying again (further failures are logged at debug until one succeeds)");
                } else {
                    debug!(%err, namespace, report = %api, "cannot write the policy report");
                }
                self.write_errors += 1;
                if let kube::Error::Api(status) = &err
                    && status.code == 404
                {
                    if status
                        .message
                        .contains("could not find the requested resource")
                    {
                        // The CRD went away: ask which API is served.
                        self.api = None;
                        self.discovered = None;
                    } else {
                        // The namespace went away, and its report with it.
                        self.written.remove(namespace);
                    }
                }
                // Again after the interval, with whatever changed by then.
                self.debouncer.mark(namespace, Timestamp::now());
                "error"
            }
        };
        self.metrics
            .reports
            .writes
            .get_or_create(&crate::metrics::ResultLabels {
                result: outcome.to_string(),
            })
            .inc();
    }

    /// Asks which report API is served, when it is not known and was last asked long enough
    /// ago; on finding one, reads back the reports already there.
    async fn discover(&mut self) {
        if self.api.is_some() || self.discovered.is_some_and(|at| at.elapsed() < REDISCOVER) {
            return;
        }
        self.discovered = Some(tokio::time::Instant::now());
        let mut served: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for api in ReportApi::ALL {
            let group_version = api.resource().api_version;
            match self.client.list_api_group_resources(&group_version).await {
                Ok(list) => {
                    served.insert(
                        group_version,
                        list.resources.into_iter().map(|r| r.name).collect(),
                    );
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => {
                    warn!(%err, group_version, "cannot ask whether the report API is served; asking again later");
                    return;
                }
            }
        }
        let Some(api) = ReportApi::choose(|gv| served.get(gv).cloned().unwrap_or_default()) else {
            // Nothing to read back: judging may begin (for the gauge).
            self.history_read = true;
            if !self.said_absent {
                info!(
                    "neither {} nor {} is installed: no policy reports are written (the VMs are still judged for virt_preflight_vms_would_not_start); asked again every {}s",
                    ReportApi::OpenReports,
                    ReportApi::WgPolicy,
                    REDISCOVER.as_secs()
                );
                self.said_absent = true;
            }
            return;
        };
        let Some(written) = self.list_written(api).await else {
            return;
        };
        self.written = written;
        self.history_read = true;
        self.resynced = Some(tokio::time::Instant::now());
        info!(report = %api, existing = self.written.len(), "writing policy reports, one per namespace");
        self.api = Some(api);
        let now = Timestamp::now();
        let namespaces: Vec<String> = self
            .written
            .keys()
            .chain(self.judged.keys())
            .cloned()
            .collect();
        for namespace in namespaces {
            self.debouncer.mark(&namespace, now);
        }
    }

    /// `virt_preflight_vms_would_not_start{rule}` from every namespace as last judged.
    fn export_gauge(&mut self) {
        let mut failing: BTreeMap<RuleId, usize> = BTreeMap::new();
        for report in self.judged.values() {
            for (rule, count) in report.failing() {
                *failing.entry(rule).or_default() += count;
            }
        }
        let gauge = &self.metrics.reports.vms_would_not_start;
        let labels = |rule: RuleId| RuleLabels {
            rule: rule.as_str().to_string(),
        };
        // Removed one by one, not cleared: a scrape in between sees no rule vanish and return.
        for rule in self.exported.difference(&failing.keys().copied().collect()) {
            gauge.remove(&labels(*rule));
        }
        for (rule, count) in &failing {
            gauge
                .get_or_create(&labels(*rule))
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.exported = failing.into_keys().collect();
    }
}
