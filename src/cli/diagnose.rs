//! `virt-preflight diagnose`: why one VM is stuck (`NAMESPACE/NAME`), or every unhealthy VM of
//! the cluster grouped by cause (`--all`). The VMs, their VMIs and the cluster view come from
//! `--cluster-state` files or the live cluster; what unhealthy, stuck and "since" mean is the
//! watcher's tracker ([`fleet::assess`]).

use std::collections::HashMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Pod};
use serde_json::Value;

use super::{ClusterArgs, EscalationArgs, StuckAfterArgs, kube_client};
use crate::cluster::{ClusterView, live, snapshot};
use crate::manifest::{self, Document, InputError, ReadOptions};
use crate::watcher::diagnose::{diagnose, human_duration, unknown_kinds};
use crate::watcher::fleet::{self, FleetOptions};
use crate::watcher::launcher_pod::LauncherPod;
use crate::watcher::object::{WatchedVm, WatchedVmi, kubevirt_resource};
use crate::watcher::run::read_launcher;
use crate::watcher::{StuckAlert, VmKey, VmObservation, VmiFacts};

/// Output formats of `diagnose --all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiagnoseFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseArgs {
    /// The VM, as NAMESPACE/NAME.
    #[arg(
        value_name = "NAMESPACE/NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub target: Option<String>,
    /// Every unhealthy VM of the cluster, grouped by cause (exit 1 if any is stuck).
    #[arg(long)]
    pub all: bool,
    /// With --all: only the VMs of this namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Output format of --all.
    #[arg(short, long, value_enum, default_value_t = DiagnoseFormat::Text)]
    pub output: DiagnoseFormat,
    #[command(flatten)]
    pub stuck_after: StuckAfterArgs,
    /// Diagnose as of this time (RFC 3339, e.g. when the --cluster-state files were taken)
    /// [default: now].
    #[arg(long, value_name = "TIMESTAMP")]
    pub as_of: Option<Timestamp>,
    #[command(flatten)]
    pub escalation: EscalationArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// What `diagnose` found, for its exit code: 0 nothing stuck, 1 stuck.
pub struct DiagnoseOutcome {
    pub stuck: bool,
    pub text: String,
}

/// The VMs (whole objects), their VMIs, the launcher pods of the VMs that have a VMI and the
/// cluster view.
pub(super) struct Listing {
    pub(super) vms: Vec<Value>,
    pub(super) vmis: Vec<(VmKey, VmiFacts)>,
    launchers: HashMap<VmKey, LauncherPod>,
    pub(super) view: ClusterView,
}

/// Which VMs to read: one, or every one (of a namespace).
pub(super) enum Wanted<'a> {
    One(&'a VmKey),
    All(Option<&'a str>),
}

impl Wanted<'_> {
    fn wants(&self, key: &VmKey) -> bool {
        match self {
            Wanted::One(one) => *one == key,
            Wanted::All(namespace) => namespace.is_none_or(|ns| ns == key.namespace),
        }
    }
}

fn is_vmi(document: &Document) -> bool {
    document.kind() == Some("VirtualMachineInstance")
        && document
            .api_version()
            .is_some_and(|v| v.starts_with("kubevirt.io/"))
}

/// A core/v1 object of a snapshot in its k8s-openapi type, or an error naming the document.
fn core_object<T: serde::de::DeserializeOwned>(document: &Document) -> anyhow::Result<T> {
    serde_json::from_value(document.value.clone()).map_err(|e| {
        let kind = document.kind().unwrap_or_default();
        InputError::in_document(
            &document.source,
            None,
            format!("a {kind} that does not read: {e}"),
        )
        .into()
    })
}

/// The launcher pods of a snapshot (`kubectl get pods -l kubevirt.io=virt-launcher`) with
/// their Events (`kubectl get events`), by VM: the newest pod of each.
fn launchers_of(
    documents: &[Document],
    wanted: &Wanted,
) -> anyhow::Result<HashMap<VmKey, LauncherPod>> {
    let core = |d: &&Document, kind: &str| d.kind() == Some(kind) && d.api_version() == Some("v1");
    let mut events: Vec<Event> = Vec::new();
    for document in documents.iter().filter(|d| core(d, "Event")) {
        events.push(core_object(document)?);
    }
    let mut pods: HashMap<VmKey, Pod> = HashMap::new();
    for document in documents.iter().filter(|d| core(d, "Pod")) {
        let pod: Pod = core_object(document)?;
        let Some(vm) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::watcher::run::LAUNCHER_LABEL))
        else {
            continue;
        };
        let key = VmKey::new(pod.metadata.namespace.as_deref().unwrap_or("default"), vm);
        if !wanted.wants(&key) {
            continue;
        }
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if pods
            .get(&key)
            .is_none_or(|other| created(other) <= created(&pod))
        {
            pods.insert(key, pod);
        }
    }
    Ok(pods
        .into_iter()
        .map(|(key, pod)| {
            let name = pod.metadata.name.as_deref();
            let own: Vec<Event> = events
                .iter()
                .filter(|e| {
                    e.involved_object.kind.as_deref() == Some("Pod")
                        && e.involved_object.name.as_deref() == name
                        && e.involved_object.namespace.as_deref() == Some(key.namespace.as_str())
                })
                .cloned()
                .collect();
            let launcher = LauncherPod::read(&pod, &own);
            (key, launcher)
        })
        .collect())
}

/// From `--cluster-state` files, read once: the VMs, their VMIs and the view.
fn from_files(args: &ClusterArgs, wanted: &Wanted) -> anyhow::Result<Listing> {
    let read = ReadOptions::default();
    let documents = args
        .cluster_state
        .iter()
        .flat_map(|path| manifest::read_path(path, read))
        .collect::<Result<Vec<Document>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut vms = Vec::new();
    let mut vmis = Vec::new();
    for document in &documents {
        let (vm, vmi) = (document.is_virtual_machine(), is_vmi(document));
        if !vm && !vmi {
            continue;
        }
        let Some(key) = VmKey::of(&document.value) else {
            let kind = document.kind().unwrap_or_default();
            return Err(InputError::in_document(
                &document.source,
                Some("metadata.name".into()),
                format!("a {kind} without a name"),
            )
            .into());
        };
        if !wanted.wants(&key) {
            continue;
        }
        if vm {
            vms.push(document.value.clone());
        } else {
            let vmi = WatchedVmi::from_value(&document.value).map_err(|e| {
                InputError::in_document(
                    &document.source,
                    Some("status".into()),
                    format!("a VirtualMachineInstance that does not read: {e}"),
                )
            })?;
            vmis.push((key, vmi.facts));
        }
    }
    let launchers = launchers_of(&documents, wanted)?;
    let snapshot = snapshot::from_documents(documents.into_iter().map(Ok));
    Ok(Listing {
        vms,
        vmis,
        launchers,
        view: snapshot.view,
    })
}

/// Every object of `api`, a page at a time.
async fn list_all<K>(api: kube::Api<K>) -> kube::Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// Whose launcher pods a live listing reads: the VMs under a stuck alert, with a VMI, by these
/// thresholds at this time (`diagnose`); `None` reads none (`audit` judges specs only).
pub(super) type LaunchersOf = Option<(crate::watcher::StuckAfter, Timestamp)>;

/// From the live cluster: the VMs wanted, their VMIs (name, phase and node), the launcher
/// pods `launchers_of` asks for, and one list of the view.
async fn from_cluster(
    args: &ClusterArgs,
    wanted: &Wanted<'_>,
    launchers_of: LaunchersOf,
) -> anyhow::Result<Listing> {
    use kube::api::{Api, DynamicObject};
    let client = kube_client(args).await?;
    let vm_resource = kubevirt_resource("VirtualMachine", "virtualmachines");
    let (vms, vmis) = match wanted {
        Wanted::One(key) => {
            let vms =
                Api::<DynamicObject>::namespaced_with(client.clone(), &key.namespace, &vm_resource);
            let vm = vms
                .get_opt(&key.name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("VirtualMachine {key} not found"))?;
            let vmi = Api::<WatchedVmi>::namespaced(client.clone(), &key.namespace)
                .get_opt(&key.name)
                .await?;
            (vec![serde_json::to_value(vm)?], vmi.into_iter().collect())
        }
        Wanted::All(namespace) => {
            let (vms, vmis) = match namespace {
                Some(ns) => (
                    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &vm_resource),
                    Api::<WatchedVmi>::namespaced(client.clone(), ns),
                ),
                None => (
                    Api::<DynamicObject>::all_with(client.clone(), &vm_resource),
                    Api::<WatchedVmi>::all(client.clone()),
                ),
            };
            let vms = list_all(vms)
                .await?
                .into_iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()?;
            (vms, list_all(vmis).await?)
        }
    };
    let vmis: Vec<(VmKey, VmiFacts)> = vmis
        .into_iter()
        .filter_map(|vmi| Some((vmi.key()?, vmi.facts)))
        .collect();
    // The pods of the VMs under an alert with a VMI, as the watcher reads them.
    let mut launchers = HashMap::new();
    let assessed = match launchers_of {
        Some((stuck_after, as_of)) => {
            let observations: Vec<VmObservation> = vms
                .iter()
                .filter_map(|vm| VmObservation::from_object(vm).ok())
                .collect();
            fleet::assess(&observations, &vmis, stuck_after, as_of)
        }
        None => Vec::new(),
    };
    let with_vmi: std::collections::HashSet<&VmKey> = vmis.iter().map(|(k, _)| k).collect();
    for assessed in assessed {
        if !with_vmi.contains(&assessed.key) {
            continue;
        }
        match read_launcher(&client, &assessed.key).await {
            Ok(Some(pod)) => {
                launchers.insert(assessed.key, pod);
            }
            Ok(None) => {}
            Err(err) => eprintln!(
                "note: the launcher pod of {} was not read: {err}",
                assessed.key
            ),
        }
    }
    let listed = live::list_once(client).await;
    for note in &listed.notes {
        eprintln!("note: {note}");
    }
    Ok(Listing {
        vms,
        vmis,
        launchers,
        view: listed.view,
    })
}

fn listing(args: &DiagnoseArgs, wanted: &Wanted, as_of: Timestamp) -> anyhow::Result<Listing> {
    list(
        "diagnose",
        &args.cluster,
        wanted,
        Some((args.stuck_after.thresholds(), as_of)),
    )
}

/// The VMs `wanted`, their VMIs and the view, from `--cluster-state` files or the live
/// cluster; `command` names who asks, for the error without either.
pub(super) fn list(
    command: &str,
    cluster: &ClusterArgs,
    wanted: &Wanted,
    launchers_of: LaunchersOf,
) -> anyhow::Result<Listing> {
    if !cluster.cluster_state.is_empty() {
        return from_files(cluster, wanted);
    }
    if !cluster.wants_live() {
        anyhow::bail!(
            "{command} needs the VMs: give --live (or --kubeconfig/--context), or --cluster-state FILE"
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(from_cluster(cluster, wanted, launchers_of))
}

/// Diagnoses one VM, or with `--all` every unhealthy one.
pub fn run_diagnose(args: &DiagnoseArgs) -> anyhow::Result<DiagnoseOutcome> {
    let as_of = args.as_of.unwrap_or_else(Timestamp::now);
    match &args.target {
        // (clap's `requires` cannot tell a flag given from a flag's default.)
        Some(_) if args.namespace.is_some() || args.output != DiagnoseFormat::Text => {
            anyhow::bail!("-n/--namespace and -o/--output go with --all")
        }
        Some(target) => diagnose_one(args, target, as_of),
        None => diagnose_all(args, as_of),
    }
}

fn diagnose_all(args: &DiagnoseArgs, as_of: Timestamp) -> anyhow::Result<DiagnoseOutcome> {
    let listing = listing(args, &Wanted::All(args.namespace.as_deref()), as_of)?;
    let options = FleetOptions {
        stuck_after: args.stuck_after.thresholds(),
        thresholds: args.escalation.thresholds(),
        as_of,
    };
    let report = fleet::report(
        &listing.vms,
        &listing.vmis,
        &listing.launchers,
        Some(&listing.view),
        options,
    );
    let text = match args.output {
        DiagnoseFormat::Text => report.text(),
        DiagnoseFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    Ok(DiagnoseOutcome {
        stuck: report.stuck > 0,
        text,
    })
}

fn diagnose_one(
    args: &DiagnoseArgs,
    target: &str,
    as_of: Timestamp,
) -> anyhow::Result<DiagnoseOutcome> {
    let key = match target.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            VmKey::new(namespace, name)
        }
        _ => anyhow::bail!("{target:?}: give the VM as NAMESPACE/NAME"),
    };
    let listing = listing(args, &Wanted::One(&key), as_of)?;
    let object = listing.vms.first().ok_or_else(|| {
        anyhow::anyhow!(
            "VirtualMachine {key} is not in the cluster state files (add `kubectl get vm,vmi -A -o yaml` to them)"
        )
    })?;
    let observation = VmObservation::from_object(object)?;
    let watched = WatchedVm::from_value(object)?;
    let record = watched.record(&observation.key);
    let vmi = listing.vmis.first().map(|(_, facts)| facts);
    let diagnosis = diagnose(
        &record,
        vmi,
        listing.launchers.get(&key),
        Some(&listing.view),
    );
    let stuck_after = args.stuck_after.thresholds();
    let assessed = fleet::assess(
        std::slice::from_ref(&observation),
        &listing.vmis,
        stuck_after,
        as_of,
    )
    .into_iter()
    .next();
    let status = if diagnosis.printable_status.is_empty() {
        "no printableStatus"
    } else {
        diagnosis.printable_status.as_str()
    };
    let dated_for = |since: Option<Timestamp>| {
        since.map_or_else(
            || " (no condition dates it)".to_string(),
            |since| format!(" for {}", human_duration(as_of.duration_since(since))),
        )
    };
    let where_ = match vmi {
        None => "no VMI".to_string(),
        Some(vmi) => match (vmi.phase_name(), &vmi.node) {
            ("", _) => "VMI without a phase".to_string(),
            (phase, Some(node)) => format!("VMI {phase} on node {node}"),
            (phase, None) => format!("VMI {phase}"),
        },
    };
    let (how_long, verdict) = match &assessed {
        Some(a) => {
            let threshold =
                human_duration(jiff::SignedDuration::try_from(stuck_after.of(a.alert))?);
            let whose = if a.alert.is_kubevirts() {
                "KubeVirt's"
            } else {
                "virt-preflight's"
            };
            (
                if a.dated {
                    dated_for(Some(a.since))
                } else {
                    " (no condition dates it: counted from now)".to_string()
                },
                if a.stuck {
                    format!(
                        "{where_}: STUCK under {whose} {} (threshold {threshold})",
                        a.alert
                    )
                } else {
                    format!(
                        "{where_}: under {whose} {}, not yet stuck (threshold {threshold})",
                        a.alert
                    )
                },
            )
        }
        None => (
            dated_for(observation.facts.since),
            format!("{where_}: no stuck alert holds"),
        ),
    };
    let mut text = String::new();
    let _ = writeln!(text, "VirtualMachine {key}: {status}{how_long}; {verdict}");
    if assessed.is_some() || observation.facts.failure || observation.facts.not_synchronized {
        let _ = writeln!(text, "cause: {}", diagnosis.cause.text);
    }
    if !diagnosis.findings.is_empty() {
        let _ = writeln!(text, "findings:");
        for finding in &diagnosis.findings {
            let _ = writeln!(text, "  {} {finding}", finding.severity);
        }
    }
    if !diagnosis.evidence.is_empty() {
        let _ = writeln!(text, "what KubeVirt and CDI say:");
        for line in &diagnosis.evidence {
            let _ = writeln!(text, "  {line}");
        }
    }
    // KubeVirt's health, unless it is the cause already said above.
    if let Some(health) = &diagnosis.kubevirt
        && health.subject().as_deref() != diagnosis.cause.subject.as_deref()
    {
        let _ = writeln!(text, "{}", health.summary());
    }
    let unknown: Vec<&str> = unknown_kinds(&listing.view)
        .into_iter()
        .map(|k| k.as_str())
        .collect();
    if !unknown.is_empty() {
        let _ = writeln!(text, "not checked (kinds unknown): {}", unknown.join(", "));
    }
    let _ = writeln!(text, "next: {}", diagnosis.next_step);
    let runbook = assessed
        .as_ref()
        .map_or(StuckAlert::UnhealthyState, |a| a.alert)
        .runbook_url();
    let _ = writeln!(text, "runbook: {runbook}");
    Ok(DiagnoseOutcome {
        stuck: assessed.is_some_and(|a| a.stuck),
        text,
    })
}
