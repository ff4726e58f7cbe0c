//! `virt-preflight audit`: every VM stored in the cluster judged as if it were started again
//! now, against the cluster as it is. The webhook judges a VM when it is written and the
//! watcher once it is stuck; in between a Secret is deleted, a node pool relabelled, a quota
//! lowered, and a VM that runs fine will not start again after its next restart, eviction or
//! migration. The VMs, their VMIs and the view come from the live cluster or `--cluster-state`
//! files, as `diagnose` reads them.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::Arc;

use jiff::Timestamp;

use super::diagnose::{Wanted, list};
use super::{ClusterArgs, Exit, FailOn, exit_for};
use crate::check::{CheckReport, CheckedDocument, ClusterCoverage, Outcome, VmReport};
use crate::manifest::Source;
use crate::model::VirtualMachine;
use crate::report::{self, Format};
use crate::rules::finding::{DEFAULT_NAMESPACE, ObjectRef, Severity};
use crate::rules::{RuleId, evaluate};
use crate::watcher::{StuckAfter, VmKey};

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
        StuckAfter::default(),
        Timestamp::now(),
    )?;
    // A VM whose VMI is on a node runs now: what is wrong shows at its next start.
    let running: HashSet<&VmKey> = listing
        .vmis
        .iter()
        .filter(|(_, vmi)| vmi.on_node())
        .map(|(key, _)| key)
        .collect();
    let mut documents = Vec::new();
    for (index, value) in listing.vms.iter().enumerate() {
        let Some(key) = VmKey::of(value) else {
            continue;
        };
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
        let mut evaluation = evaluate(&vm, &object, Some(&listing.view));
        if running.contains(&key) {
            for finding in &mut evaluation.findings {
                if finding.severity == Severity::Error {
                    finding.message.insert_str(0, WOULD_NOT_START);
                }
            }
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
    let report = CheckReport {
        documents,
        coverage: ClusterCoverage::of(Some(&listing.view)),
    };
    let fail_on = args.fail_on.severity();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match args.output {
        AuditFormat::Json => report::render(&report, Format::Json, fail_on, &mut out)?,
        AuditFormat::Text => out.write_all(text(&report, running.len()).as_bytes())?,
    }
    Ok(exit_for(&report, fail_on))
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
