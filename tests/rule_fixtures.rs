//! One broken and one fixed VirtualMachine per rule of the registry, checked through the same
//! code path as `virt-preflight check` (`manifest::read_path` → `check::check_all`, and for
//! cluster rules a view read by `cluster::snapshot::read`, as `--cluster-state` reads it).
//!
//! Layout: `tests/fixtures/rules/<rule-id>/` holds exactly
//! - `broken.yaml`: one VM that triggers that rule and no other. Its leading comment block
//!   names where, with one `# expect: <path>` line per expected finding (paths as KubeVirt
//!   writes them, e.g. `# expect: spec.template.spec.domain.devices.disks[1].name`);
//! - `fixed.yaml`: the same VM corrected: no finding at all, of any rule;
//! - `cluster.yaml`, for cluster rules only (and required for them): the snapshot both VMs are
//!   checked against, as `kubectl get ... -o yaml` prints it (a `List`, or several documents).
//!   A rule that needs a kind the registry does not list in `needs` (it looks the kind up itself)
//!   names it in the snapshot's leading comments: `# needs: <Kind>[, <Kind>...]`.
//!
//! The tests assert that the fixture directories are exactly the registry's rule IDs (a new
//! rule without fixtures fails), that each broken VM gets findings of its rule only, exactly at
//! the expected paths, with the registry's severity, that each fixed VM gets none, and that a
//! cluster rule reports nothing on its broken VM without a cluster, or with a snapshot from
//! which the objects of one kind it needs are removed (that kind is then unknown).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virt_preflight::check::{CheckOptions, Outcome, check_all};
use virt_preflight::cluster::{ClusterView, Kind, snapshot};
use virt_preflight::manifest::{self, ReadOptions};
use virt_preflight::rules::finding::Finding;
use virt_preflight::rules::{REGISTRY, RuleInfo, Scope};

const BROKEN: &str = "broken.yaml";
const FIXED: &str = "fixed.yaml";
const CLUSTER: &str = "cluster.yaml";

fn fixtures_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules")
}

fn fixture(rule: &RuleInfo, file: &str) -> PathBuf {
    fixtures_root().join(rule.name).join(file)
}

/// Values of `# <key>: value` lines in the file's leading comment block (before the first line
/// that is neither blank nor a comment).
fn header(path: &Path, key: &str) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let prefix = format!("{key}:");
    Ok(text
        .lines()
        .map(str::trim)
        .take_while(|line| line.is_empty() || line.starts_with('#'))
        .filter_map(|line| line.strip_prefix('#'))
        .filter_map(|comment| comment.trim().strip_prefix(prefix.as_str()))
        .map(|value| value.trim().to_string())
        .collect())
}

/// The snapshot view of a cluster rule's `cluster.yaml`, as `--cluster-state` reads it.
fn cluster_view(rule: &RuleInfo) -> Result<ClusterView, String> {
    let path = fixture(rule, CLUSTER);
    if !path.is_file() {
        return Err(format!("{} is missing", path.display()));
    }
    let snapshot = snapshot::read(&[&path], ReadOptions::default());
    clean_snapshot(&path, snapshot)
}

/// The same snapshot without the objects of `kind`, which the view then does not know.
fn cluster_view_without(rule: &RuleInfo, kind: Kind) -> Result<ClusterView, String> {
    let path = fixture(rule, CLUSTER);
    let documents: Vec<_> = manifest::read_path(&path, ReadOptions::default())
        .into_iter()
        .filter(|parsed| {
            parsed.as_ref().map_or(true, |document| {
                let of = document
                    .api_version()
                    .zip(document.kind())
                    .and_then(|(api_version, name)| Kind::of(api_version, name));
                of != Some(kind)
            })
        })
        .collect();
    let snapshot = snapshot::from_documents(documents);
    let view = clean_snapshot(&path, snapshot)?;
    if view.is_known(kind) {
        return Err(format!(
            "{}: {kind} is still known without its objects",
            path.display()
        ));
    }
    Ok(view)
}

/// A snapshot file must hold only objects the view indexes, all readable.
fn clean_snapshot(path: &Path, snapshot: snapshot::Snapshot) -> Result<ClusterView, String> {
    if let Some(err) = snapshot.errors.first() {
        return Err(format!("{}: {err}", path.display()));
    }
    if let Some(other) = snapshot.other.first() {
        return Err(format!(
            "{}: {:?} is no kind a cluster rule reads",
            other.source,
            other.kind()
        ));
    }
    Ok(snapshot.view)
}

/// Checks one fixture file as `virt-preflight check [--cluster-state cluster.yaml]` does;
/// the file must hold exactly one VirtualMachine.
fn check(path: &Path, cluster: Option<ClusterView>) -> Result<Vec<Finding>, String> {
    if !path.is_file() {
        return Err(format!("{} is missing", path.display()));
    }
    let options = CheckOptions {
        cluster: cluster.map(Arc::new),
        ..CheckOptions::default()
    };
    let report = check_all(manifest::read_path(path, ReadOptions::default()), &options);
    let mut findings = None;
    for document in report.documents {
        match document.outcome {
            Outcome::Vm(vm) if findings.is_none() => findings = Some(vm.evaluation.findings),
            Outcome::Vm(vm) => return Err(format!("{}: a second VM", vm.source)),
            Outcome::Skipped { source, kind } => {
                return Err(format!("{source}: {kind} is not a VirtualMachine"));
            }
            Outcome::Invalid(err) => return Err(format!("input error: {err}")),
        }
    }
    findings.ok_or_else(|| format!("{}: no VirtualMachine", path.display()))
}

fn describe(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return " no finding".to_string();
    }
    findings
        .iter()
        .map(|f| format!("\n    {} at {}: {}", f.rule, f.path, f.message))
        .collect()
}

/// The view a rule's fixtures are checked against: none for spec rules.
fn view_for(rule: &RuleInfo) -> Result<Option<ClusterView>, String> {
    match rule.scope {
        Scope::Spec => Ok(None),
        Scope::Cluster => cluster_view(rule).map(Some),
        // A manifest rule whose answer depends on the cluster's KubeVirt (its release, its
        // feature gates) is an error against a snapshot that has it, a warning without.
        Scope::Manifest if fixture(rule, CLUSTER).is_file() => cluster_view(rule).map(Some),
        Scope::Manifest => Ok(None),
    }
}

/// Runs `each` on every rule of the registry and fails once with every rule's problem.
fn for_every_rule(each: impl Fn(&RuleInfo) -> Result<(), String>) {
    let failures: Vec<String> = REGISTRY
        .iter()
        .filter_map(|rule| each(rule).err().map(|e| format!("{}: {e}", rule.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rules fail:\n{}",
        failures.len(),
        REGISTRY.len(),
        failures.join("\n")
    );
}

#[test]
fn fixture_directories_are_exactly_the_registry_rules() {
    let root = fixtures_root();
    let directories: BTreeSet<String> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.expect("readable fixture directory entry"))
        .map(|entry| {
            assert!(
                entry.path().is_dir(),
                "{} is not a rule directory",
                entry.path().display()
            );
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    let rules: BTreeSet<String> = REGISTRY.iter().map(|r| r.name.to_string()).collect();
    let missing: Vec<_> = rules.difference(&directories).collect();
    let unknown: Vec<_> = directories.difference(&rules).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "rules without fixtures: {missing:?}; fixture directories of no rule: {unknown:?}"
    );
    for_every_rule(|rule| {
        let dir = root.join(rule.name);
        let files: BTreeSet<String> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut expected: BTreeSet<String> = [BROKEN, FIXED].map(String::from).into();
        if rule.scope == Scope::Cluster
            || (rule.scope == Scope::Manifest && files.contains(CLUSTER))
        {
            expected.insert(CLUSTER.to_string());
        }
        if files != expected {
            return Err(format!("holds {files:?}, expected {expected:?}"));
        }
        Ok(())
    });
}

#[test]
fn each_broken_vm_gets_its_rule_only_at_the_expected_paths() {
    for_every_rule(|rule| {
        let path = fixture(rule, BROKEN);
        let mut expected = header(&path, "expect")?;
        if expected.is_empty() {
            return Err(format!("{} has no `# expect: <path>` line", path.display()));
        }
        let findings = check(&path, view_for(rule)?)?;
        let others: Vec<_> = findings
            .iter()
            .filter(|f| f.rule != rule.id)
            .cloned()
            .collect();
        if !others.is_empty() {
            return Err(format!("other rules fire too:{}", describe(&others)));
        }
        if let Some(wrong) = findings.iter().find(|f| f.severity != rule.severity) {
            return Err(format!(
                "severity {:?}, the registry says {:?}",
                wrong.severity, rule.severity
            ));
        }
        let mut actual: Vec<String> = findings.iter().map(|f| f.path.clone()).collect();
        actual.sort();
        expected.sort();
        if actual != expected {
            return Err(format!(
                "expected findings at {expected:?}, got:{}",
                describe(&findings)
            ));
        }
        Ok(())
    });
}

#[test]
fn each_fixed_vm_gets_no_finding() {
    for_every_rule(|rule| {
        let path = fixture(rule, FIXED);
        if !header(&path, "expect")?.is_empty() {
            return Err(format!("{} must not expect findings", path.display()));
        }
        let findings = check(&path, view_for(rule)?)?;
        if !findings.is_empty() {
            return Err(format!("fixed VM still gets:{}", describe(&findings)));
        }
        Ok(())
    });
}

#[test]
fn cluster_rules_report_nothing_on_what_the_cluster_view_does_not_know() {
    let cluster_rules = REGISTRY
        .iter()
        .filter(|r| r.scope == Scope::Cluster)
        .count();
    assert!(cluster_rules > 0, "the registry has cluster rules");
    for_every_rule(|rule| {
        if rule.scope != Scope::Cluster {
            return Ok(());
        }
        let broken = fixture(rule, BROKEN);
        // Sanity: with the full snapshot the rule does fire, so silence below means something.
        if !check(&broken, Some(cluster_view(rule)?))?
            .iter()
            .any(|f| f.rule == rule.id)
        {
            return Err("the broken VM does not fire with cluster.yaml".into());
        }
        let without_cluster = check(&broken, None)?;
        if !without_cluster.is_empty() {
            return Err(format!(
                "findings without a cluster view:{}",
                describe(&without_cluster)
            ));
        }
        let mut needs: BTreeSet<Kind> = rule.needs.iter().copied().collect();
        for names in header(&fixture(rule, CLUSTER), "needs")? {
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let kind = Kind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == name)
                    .ok_or_else(|| format!("cluster.yaml `# needs:` names no kind: {name:?}"))?;
                needs.insert(kind);
            }
        }
        if needs.is_empty() {
            return Err(
                "no kind to leave out: the registry lists none; name it in cluster.yaml `# needs:`"
                    .into(),
            );
        }
        for kind in needs {
            let view = cluster_view_without(rule, kind)?;
            let findings = check(&broken, Some(view))?;
            if !findings.is_empty() {
                return Err(format!(
                    "findings with {kind} unknown:{}",
                    describe(&findings)
                ));
            }
        }
        Ok(())
    });
}
