//! `virt-preflight diagnose`: why one VM is stuck (`NAMESPACE/NAME`), or every unhealthy VM of
//! the cluster grouped by cause (`--all`). The VMs, their VMIs and the cluster view come from
//! `--cluster-state` files or the live cluster; what unhealthy, stuck and "since" mean is the
//! watcher's tracker ([`fleet::assess`]).

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::{ClusterArgs, EscalationArgs, kube_client, parse_duration};
use crate::cluster::{ClusterView, live, snapshot};
use crate::manifest::{self, Document, InputError, ReadOptions};
use crate::watcher::diagnose::{RUNBOOK_URL, diagnose, human_duration, unknown_kinds};
use crate::watcher::fleet::{self, FleetOptions};
use crate::watcher::object::kubevirt_resource;
use crate::watcher::{VmKey, VmObservation, kubevirt_says};

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
    /// Unhealthy for this long with no VMI is stuck.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub stuck_after: Duration,
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

/// The VMs (whole objects), the names of the VMIs that exist and the cluster view.
struct Listing {
    vms: Vec<Value>,
    vmis: Vec<VmKey>,
    view: ClusterView,
}

/// Which VMs to read: one, or every one (of a namespace).
enum Wanted<'a> {
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
            vmis.push(key);
        }
    }
    let snapshot = snapshot::from_documents(documents.into_iter().map(Ok));
    Ok(Listing {
        vms,
        vmis,
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

/// From the live cluster: the VMs wanted, their VMIs (metadata only) and one list of the view.
async fn from_cluster(args: &ClusterArgs, wanted: &Wanted<'_>) -> anyhow::Result<Listing> {
    use kube::api::{Api, DynamicObject};
    use kube::core::PartialObjectMeta;
    let client = kube_client(args).await?;
    let vm_resource = kubevirt_resource("VirtualMachine", "virtualmachines");
    let vmi_resource = kubevirt_resource("VirtualMachineInstance", "virtualmachineinstances");
    let (vms, vmis) = match wanted {
        Wanted::One(key) => {
            let vms =
                Api::<DynamicObject>::namespaced_with(client.clone(), &key.namespace, &vm_resource);
            let vm = vms
                .get_opt(&key.name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("VirtualMachine {key} not found"))?;
            let vmis = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                &key.namespace,
                &vmi_resource,
            );
            let vmi = vmis
                .get_metadata_opt(&key.name)
                .await?
                .map(|_| (*key).clone());
            (vec![serde_json::to_value(vm)?], vmi.into_iter().collect())
        }
        Wanted::All(namespace) => {
            let (vms, vmis) = match namespace {
                Some(ns) => (
                    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &vm_resource),
                    Api::<PartialObjectMeta<DynamicObject>>::namespaced_with(
                        client.clone(),
                        ns,
                        &vmi_resource,
                    ),
                ),
                None => (
                    Api::<DynamicObject>::all_with(client.clone(), &vm_resource),
                    Api::<PartialObjectMeta<DynamicObject>>::all_with(
                        client.clone(),
                        &vmi_resource,
                    ),
                ),
            };
            let vms = list_all(vms)
                .await?
                .into_iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()?;
            // Only the VMIs' names matter: their metadata is enough.
            let vmis = list_all(vmis)
                .await?
                .iter()
                .filter_map(|vmi| {
                    let meta = &vmi.metadata;
                    Some(VmKey::new(
                        meta.namespace.as_deref().unwrap_or("default"),
                        meta.name.as_deref()?,
                    ))
                })
                .collect();
            (vms, vmis)
        }
    };
    let listed = live::list_once(client).await;
    for note in &listed.notes {
        eprintln!("note: {note}");
    }
    Ok(Listing {
        vms,
        vmis,
        view: listed.view,
    })
}

fn listing(args: &DiagnoseArgs, wanted: &Wanted) -> anyhow::Result<Listing> {
    if !args.cluster.cluster_state.is_empty() {
        return from_files(&args.cluster, wanted);
    }
    if !args.cluster.wants_live() {
        anyhow::bail!(
            "diagnose needs the VMs: give --live (or --kubeconfig/--context), or --cluster-state FILE"
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(from_cluster(&args.cluster, wanted))
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
    let listing = listing(args, &Wanted::All(args.namespace.as_deref()))?;
    let options = FleetOptions {
        stuck_after: args.stuck_after,
        thresholds: args.escalation.thresholds(),
        as_of,
    };
    let report = fleet::report(&listing.vms, &listing.vmis, Some(&listing.view), options);
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
    let listing = listing(args, &Wanted::One(&key))?;
    let object = listing.vms.first().ok_or_else(|| {
        anyhow::anyhow!(
            "VirtualMachine {key} is not in the cluster state files (add `kubectl get vm,vmi -A -o yaml` to them)"
        )
    })?;
    let observation = VmObservation::from_object(object)?;
    let diagnosis = diagnose(object, Some(&listing.view));
    let vmi = !listing.vmis.is_empty();
    let assessed = fleet::assess(
        std::slice::from_ref(&observation),
        &listing.vmis,
        args.stuck_after,
        as_of,
    )
    .into_iter()
    .next();
    let threshold = human_duration(jiff::SignedDuration::try_from(args.stuck_after)?);
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
    let kubevirt_failed = kubevirt_says::said(object).is_some();
    let (how_long, verdict) = match (&assessed, observation.status, vmi) {
        (Some(a), _, _) => (
            if a.dated {
                dated_for(Some(a.since))
            } else {
                " (no condition dates it: counted from now)".to_string()
            },
            if a.stuck {
                format!("no VMI: STUCK (threshold {threshold})")
            } else {
                format!("no VMI: unhealthy, not yet stuck (threshold {threshold})")
            },
        ),
        // `Stopped` with `Failure=True`: virt-controller cannot start it, and no alert of
        // KubeVirt's counts the status.
        (None, None, _) if kubevirt_failed => (
            dated_for(observation.since),
            "KubeVirt reports a failure to start it, in a status no KubeVirt alert counts"
                .to_string(),
        ),
        (None, None, _) => (
            dated_for(observation.since),
            "not an unhealthy status: not stuck".to_string(),
        ),
        (None, Some(_), _) => (
            dated_for(observation.since),
            "its VMI exists: not stuck (KubeVirt's alert ignores it)".to_string(),
        ),
    };
    let mut text = String::new();
    let _ = writeln!(text, "VirtualMachine {key}: {status}{how_long}; {verdict}");
    if observation.status.is_some() || kubevirt_failed {
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
    let _ = writeln!(text, "runbook: {RUNBOOK_URL}");
    Ok(DiagnoseOutcome {
        stuck: assessed.is_some_and(|a| a.stuck),
        text,
    })
}
