//! One line per finding, then a summary line:
//! `vm.yaml:2 default/my-vm error disk-without-volume spec...disks[1].name: message`.

use std::io::{self, Write};

use super::plural;
use crate::check::CheckReport;
use crate::rules::SKIP_ANNOTATION;

pub fn write(report: &CheckReport, out: &mut dyn Write) -> io::Result<()> {
    for vm in report.vms() {
        for finding in &vm.evaluation.findings {
            writeln!(
                out,
                "{} {} {} {} {}: {}",
                vm.source, vm.object, finding.severity, finding.rule, finding.path, finding.message
            )?;
        }
        for rule in &vm.evaluation.skipped {
            writeln!(
                out,
                "{} {} info {rule} skipped by the {SKIP_ANNOTATION} annotation",
                vm.source, vm.object
            )?;
        }
        for entry in &vm.evaluation.unknown_skips {
            writeln!(
                out,
                "{} {} info {SKIP_ANNOTATION} names no rule {entry:?} (ignored)",
                vm.source, vm.object
            )?;
        }
    }
    let coverage = &report.coverage;
    if coverage.view {
        let names = |kinds: &[crate::cluster::Kind]| {
            kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(out, "cluster kinds known: {}", names(&coverage.known))?;
        if !coverage.unknown.is_empty() {
            writeln!(out, "cluster kinds unknown: {}", names(&coverage.unknown))?;
        }
        if !coverage.skipped_rules.is_empty() {
            let rules: Vec<String> = coverage
                .skipped_rules
                .iter()
                .map(|r| r.to_string())
                .collect();
            writeln!(out, "rules not run for lack of data: {}", rules.join(", "))?;
        }
    } else {
        writeln!(
            out,
            "spec rules only: {} cluster rules need --cluster-state or --kubeconfig",
            coverage.skipped_rules.len()
        )?;
    }
    // Unknown is never silent: the rules that judged on an assumption say which.
    let mut assumed: Vec<String> = report
        .findings()
        .filter_map(|(_, f)| Some(format!("{} ({})", f.rule, f.assumption.as_deref()?)))
        .collect();
    assumed.sort();
    assumed.dedup();
    if !assumed.is_empty() {
        writeln!(
            out,
            "rules that judged on assumptions: {}",
            assumed.join("; ")
        )?;
    }
    let summary = report.summary();
    write!(
        out,
        "{} checked: {}, {}",
        plural(summary.objects, "VM", "VMs"),
        plural(summary.errors, "error", "errors"),
        plural(summary.warnings, "warning", "warnings"),
    )?;
    if summary.skipped > 0 {
        write!(
            out,
            "; {} skipped (not VirtualMachines)",
            plural(summary.skipped, "other document", "other documents")
        )?;
    }
    if summary.input_errors > 0 {
        write!(
            out,
            "; {}",
            plural(summary.input_errors, "input error", "input errors")
        )?;
    }
    writeln!(out)
}
