//! `virt-preflight audit`: every VM stored in the cluster judged as if it were started again
//! now, against the cluster as it is. The webhook judges a VM when it is written and the
//! watcher once it is stuck; in between a Secret is deleted, a node pool relabelled, a quota
//! lowered, and a VM that runs fine will not start again after its next restart, eviction or
//! migration. The VMs, their VMIs and the view come from the live cluster or `--cluster-state`
//! files, as `diagnose` reads them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::Arc;

use super::diagnose::{Listing, Wanted, list};
use super::{ClusterArgs, Exit, FailOn, exit_for};
use crate::check::{CheckReport, CheckedDocument, ClusterCoverage, Outcome, VmReport};
use crate::cluster::ClusterView;
use crate::cluster::nodes::NodeInfo;
use crate::manifest::Source;
use crate::model::{ParsedQuantity, VirtualMachine};
use crate::report::{self, Format};
use crate::rules::finding::{DEFAULT_NAMESPACE, ObjectRef, Severity};
use crate::rules::{RuleId, VmContext, evaluate};
use crate::watcher::VmKey;

/// Output formats of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// Grouped by cause, the largest group first.
    Text,
    /// `check`'s JSON.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Only the VMs of this namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[arg(short, long, value_enum, default_value_t = AuditFormat::Text)]
    pub output: AuditFormat,
    /// Exit 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// As if these nodes were drained: only the VMs running there are judged, each as if it
    /// started again on the other nodes, and all of them together against the room left.
    #[arg(long, value_delimiter = ',', value_name = "NODE")]
    pub drain: Vec<String>,
    /// As if these nodes were cordoned: no VM may start on them.
    #[arg(long, value_delimiter = ',', value_name = "NODE")]
    pub cordon: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// What a finding about a running VM means: it runs now, and will not start again.
pub const WOULD_NOT_START: &str = "would not start again: ";

/// Audits every VM listed; prints the report and returns the exit code.
pub fn run_audit(args: &AuditArgs) -> anyhow::Result<Exit> {
    let listing = list(
        "audit",
        &args.cluster,
        &Wanted::All(args.namespace.as_deref()),
        // A spec's judgement needs no launcher pod.
        None,
    )?;
    // A VM whose VMI is on a node runs now: what is wrong shows at its next start.
    let running: HashMap<&VmKey, &str> = listing
        .vmis
        .iter()
        .filter(|(_, vmi)| vmi.on_node())
        .map(|(key, vmi)| (key, vmi.node.as_deref().unwrap_or_default()))
        .collect();
    let drained: BTreeSet<String> = args.drain.iter().cloned().collect();
    let away: BTreeSet<String> = drained.iter().chain(&args.cordon).cloned().collect();
    if let Some(nodes) = listing.view.nodes() {
        if let Some(unknown) = away.iter().find(|name| nodes.by_name(name).is_none()) {
            anyhow::bail!("node {unknown:?} is not in the cluster (--drain, --cordon)");
        }
    } else if !away.is_empty() {
        anyhow::bail!("--drain and --cordon need the cluster's Nodes, and they were not read");
    }
    // The scheduler's cluster once those nodes take no new pod.
    let view = if away.is_empty() {
        listing.view.clone()
    } else {
        listing.view.clone().without_nodes(&away)
    };
    let (documents, evicted) = judge(&listing.vms, &running, &drained, &view)?;
    let report = CheckReport {
        documents,
        coverage: ClusterCoverage::of(Some(&listing.view)),
    };
    let room =
        (!drained.is_empty()).then(|| room_left(&listing, &view, &running, &drained, &evicted));
    let fail_on = args.fail_on.severity();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match args.output {
        AuditFormat::Json => report::render(&report, Format::Json, fail_on, &mut out)?,
        AuditFormat::Text => {
            // Of the VMs judged (with a drain, the ones it evicts), how many run.
            let judged_running = report
                .documents
                .iter()
                .filter_map(|document| match &document.outcome {
                    Outcome::Vm(vm) => vm
                        .object
                        .name
                        .as_deref()
                        .map(|name| VmKey::new(vm.object.namespace.clone(), name.to_string())),
                    _ => None,
                })
                .filter(|key| running.contains_key(key))
                .count();
            out.write_all(text(&report, judged_running).as_bytes())?;
            if let Some(room) = &room {
                writeln!(out, "\n{}", room.text())?;
            }
        }
    }
    if let (AuditFormat::Json, Some(room)) = (args.output, &room) {
        eprintln!("note: {}", room.text());
    }
    let exit = exit_for(&report, fail_on);
    Ok(match &room {
        Some(room) if !room.fits() => Exit::Findings,
        _ => exit,
    })
}

/// A VM a drain evicts, and its namespace.
pub type Evicted = (VirtualMachine, String);

/// Judges the VMs (whole objects) against `view`: each running one (its node in `running`)
/// as if it started again, and with a drain only the ones on the `drained` nodes. Returns the
/// documents of the report, and the VMs the drain evicts with their namespaces. The pure core
/// of `audit` (`cargo bench --bench cluster -- audit`).
pub fn judge(
    vms: &[serde_json::Value],
    running: &HashMap<&VmKey, &str>,
    drained: &BTreeSet<String>,
    view: &ClusterView,
) -> anyhow::Result<(Vec<CheckedDocument>, Vec<Evicted>)> {
    let mut evicted = Vec::new();
    let mut documents = Vec::new();
    for (index, value) in vms.iter().enumerate() {
        let Some(key) = VmKey::of(value) else {
            continue;
        };
        let node = running.get(&key).copied();
        let leaves = node.filter(|n| drained.contains(*n));
        // A drain moves only the VMs on the drained nodes; the others stay where they run.
        if !drained.is_empty() && leaves.is_none() {
            continue;
        }
        let source = Source {
            file: Arc::from(format!("VirtualMachine {key}")),
            document: index + 1,
            item: None,
            line: 1,
        };
        let vm = VirtualMachine::from_value(value)
            .map_err(|e| anyhow::anyhow!("{source}: does not read as kubevirt.io/v1: {e}"))?;
        let object = ObjectRef::virtual_machine(&vm, None, DEFAULT_NAMESPACE);
        // The rules the webhook runs (the manifest ones are virt-api's, and it admitted it).
        let mut evaluation = evaluate(&vm, &object, Some(view));
        let phrase = match leaves {
            Some(node) => format!("would not come back after draining {node}: "),
            None if node.is_some() => WOULD_NOT_START.to_string(),
            None => String::new(),
        };
        for finding in &mut evaluation.findings {
            if finding.severity == Severity::Error {
                finding.message.insert_str(0, &phrase);
            }
        }
        if leaves.is_some() {
            evicted.push((vm.clone(), object.namespace.clone()));
        }
        documents.push(CheckedDocument {
            value: None,
            outcome: Outcome::Vm(Box::new(VmReport {
                source,
                object,
                evaluation,
            })),
        });
    }
    Ok((documents, evicted))
}

/// Whether the VMs a drain evicts fit, together, in the memory the other nodes have left.
struct Room {
    drained: Vec<String>,
    evicted: usize,
    /// What their launcher pods ask for at least, in bytes.
    needed: u128,
    /// Allocatable memory of the nodes left (schedulable, Ready), less what the launcher pods
    /// of the VMs running there ask for at least, in bytes.
    free: u128,
}

impl Room {
    fn fits(&self) -> bool {
        self.needed <= self.free
    }

    fn text(&self) -> String {
        let gib = |bytes: u128| format!("{:.1}Gi", bytes as f64 / f64::from(1u32 << 30));
        format!(
            "together: the {} VM{} evicted from {} ask for at least {} of memory; the other nodes have {} free: {} (free = allocatable of the schedulable, Ready nodes left, less the launcher pods of the VMs running there; other pods are not read, so the real room is smaller)",
            self.evicted,
            if self.evicted == 1 { "" } else { "s" },
            self.drained.join(", "),
            gib(self.needed),
            gib(self.free),
            if self.fits() {
                "they fit"
            } else {
                "THEY DO NOT FIT"
            }
        )
    }
}

/// The memory the evicted VMs need and what the nodes left have free, each launcher pod
/// counted at the least KubeVirt would ask (so that a "does not fit" is certain).
fn room_left(
    listing: &Listing,
    view: &ClusterView,
    running: &HashMap<&VmKey, &str>,
    drained: &BTreeSet<String>,
    evicted: &[Evicted],
) -> Room {
    let bytes = |q: ParsedQuantity| q.ceil_scaled(0).unwrap_or(0);
    let request = |vm: &VirtualMachine, namespace: &str| {
        VmContext::new(vm, namespace, Some(view))
            .launcher()
            .map_or(0, |launcher| bytes(launcher.pod.memory.at_least))
    };
    let needed = evicted.iter().map(|(vm, ns)| request(vm, ns)).sum();
    let left: Vec<&NodeInfo> = view
        .nodes()
        .into_iter()
        .flat_map(|nodes| nodes.nodes())
        .filter(|node| node.ready && !node.unschedulable)
        .map(|node| node.as_ref())
        .collect();
    let allocatable: u128 = left
        .iter()
        .filter_map(|node| node.allocatable.get("memory").copied())
        .map(bytes)
        .sum();
    let used: u128 = listing
        .vms
        .iter()
        .filter_map(|value| {
            let key = VmKey::of(value)?;
            let node = running.get(&key)?;
            if drained.contains(*node) || !left.iter().any(|n| n.name == *node) {
                return None;
            }
            let vm = VirtualMachine::from_value(value).ok()?;
            Some(request(&vm, &key.namespace))
        })
        .sum();
    Room {
        drained: drained.iter().cloned().collect(),
        evicted: evicted.len(),
        needed,
        free: allocatable.saturating_sub(used),
    }
}

/// The report grouped by cause: the same rule and the same words are one problem, whatever
/// number of VMs it stops.
fn text(report: &CheckReport, running: usize) -> String {
    let mut groups: BTreeMap<(std::cmp::Reverse<Severity>, RuleId, String), Vec<String>> =
        BTreeMap::new();
    for (vm, finding) in report.findings() {
        let words = finding
            .message
            .strip_prefix(WOULD_NOT_START)
            .unwrap_or(&finding.message)
            .to_string();
        let state = if finding.message.starts_with(WOULD_NOT_START) {
            " (running: would not start again)"
        } else {
            ""
        };
        groups
            .entry((std::cmp::Reverse(finding.severity), finding.rule, words))
            .or_default()
            .push(format!(
                "{}/{}{state}",
                vm.object.namespace,
                vm.object.name.as_deref().unwrap_or_default()
            ));
    }
    let summary = report.summary();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} VirtualMachines audited ({running} running): {} errors, {} warnings, {} causes",
        summary.objects,
        summary.errors,
        summary.warnings,
        groups.len()
    );
    let mut ordered: Vec<_> = groups.into_iter().collect();
    // Errors first, then the cause that stops the most VMs.
    ordered.sort_by_key(|((severity, _, _), vms)| (*severity, std::cmp::Reverse(vms.len())));
    for (index, ((severity, rule, words), vms)) in ordered.iter().enumerate() {
        let _ = writeln!(
            text,
            "\n{}. {} [{rule}] {words}\n   {} VM{}: {}",
            index + 1,
            severity.0,
            vms.len(),
            if vms.len() == 1 { "" } else { "s" },
            vms.join(", ")
        );
    }
    if !report.coverage.skipped_rules.is_empty() {
        let rules: Vec<&str> = report
            .coverage
            .skipped_rules
            .iter()
            .map(|r| r.as_str())
            .collect();
        let kinds: Vec<&str> = report.coverage.unknown.iter().map(|k| k.as_str()).collect();
        let _ = writeln!(
            text,
            "\nnot run (kinds unknown: {}): {}",
            kinds.join(", "),
            rules.join(", ")
        );
    }
    text
}
