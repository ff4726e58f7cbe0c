//! Where dashboards look: one policy report per namespace, with a result per VM and rule,
//! for every VM stored in the cluster judged as `audit` judges it (as if started again now).
//!
//! Written as `openreports.io/v1alpha1` Reports where that API is installed, else as
//! `wgpolicyk8s.io/v1alpha2` PolicyReports (what Kyverno and Kubewarden write, and Policy
//! Reporter, `kubectl get polr -A` and OpenShift's views read).
//!
//! This module is the pure part: what a namespace's report says ([`next`]), its object
//! ([`to_object`]), what an existing one said ([`from_object`]), and when a namespace is
//! written again ([`Debouncer`]). The runtime crate's `policy_report::writer` does the watching
//! and the writing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use kube_core::ApiResource;
use serde_json::{Value, json};

use crate::cluster::ClusterView;
use crate::model::VirtualMachine;
use crate::rules::finding::{DEFAULT_NAMESPACE, Finding, ObjectRef, Severity};
use crate::rules::{RuleId, evaluate};

/// The report's name in each namespace, and the `policy` of every result.
pub const POLICY: &str = "virt-preflight";
/// The label that marks the reports this tool owns (and lists them back).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "virt-preflight");

/// The two report APIs, in the order they are preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
pub enum ReportApi {
    /// `openreports.io/v1alpha1` Report: the successor API (Kyverno 1.15+, Policy Reporter 3).
    #[strum(to_string = "openreports.io/v1alpha1 Report")]
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport.
    #[strum(to_string = "wgpolicyk8s.io/v1alpha2 PolicyReport")]
    WgPolicy,
}

impl ReportApi {
    /// Preferred first.
    pub const ALL: [ReportApi; 2] = [ReportApi::OpenReports, ReportApi::WgPolicy];

    pub fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            ReportApi::OpenReports => ("openreports.io", "v1alpha1", "Report", "reports"),
            ReportApi::WgPolicy => (
                "wgpolicyk8s.io",
                "v1alpha2",
                "PolicyReport",
                "policyreports",
            ),
        };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    /// The first of `ALL` whose plural the API server serves, given the plurals each
    /// group-version serves.
    pub fn choose(served: impl Fn(&str) -> Vec<String>) -> Option<ReportApi> {
        ReportApi::ALL.into_iter().find(|api| {
            let resource = api.resource();
            served(&resource.api_version).contains(&resource.plural)
        })
    }
}

/// A result's verdict, as the report APIs spell it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "lowercase")]
pub enum Verdict {
    /// The rule found nothing any more (it did before, here or in the report as it was).
    Pass,
    /// An error: the VM would not start (again).
    Fail,
    /// A warning.
    Warn,
}

/// One VM's result for one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uid: String,
    pub verdict: Verdict,
    pub severity: Severity,
    pub message: String,
    /// When the result took this verdict (kept while it holds, so that a rewrite for another
    /// VM does not make every result look new).
    pub since: Timestamp,
}

/// What a namespace's report says: by VM name, a result per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceReport {
    pub results: BTreeMap<String, BTreeMap<RuleId, Entry>>,
}

/// A VM judged now: its name, uid and findings.
pub struct Judged<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    pub findings: &'a [Finding],
}

impl NamespaceReport {
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// How many VMs fail each rule.
    pub fn failing(&self) -> BTreeMap<RuleId, usize> {
        let mut counts = BTreeMap::new();
        for (rule, _) in self.entries().filter(|(_, e)| e.verdict == Verdict::Fail) {
            *counts.entry(rule).or_default() += 1;
        }
        counts
    }

    /// Every result, with its rule.
    fn entries(&self) -> impl Iterator<Item = (RuleId, &Entry)> {
        self.results
            .values()
            .flat_map(|rules| rules.iter().map(|(rule, entry)| (*rule, entry)))
    }
}

/// The report of a namespace whose VMs are now `judged`, after `previous`: each rule that
/// finds something about a VM is a `fail` (an error) or a `warn`; a rule that found something
/// before and finds nothing now is a `pass`, for as long as the VM lives. A VM no longer
/// judged (deleted) loses its results; a VM recreated under the same name starts afresh.
pub fn next(previous: &NamespaceReport, judged: &[Judged<'_>], now: Timestamp) -> NamespaceReport {
    let mut results = BTreeMap::new();
    for vm in judged {
        let mut found: BTreeMap<RuleId, (Severity, Vec<&str>)> = BTreeMap::new();
        for finding in vm.findings {
            let (severity, messages) = found
                .entry(finding.rule)
                .or_insert((finding.severity, Vec::new()));
            *severity = (*severity).max(finding.severity);
            messages.push(&finding.message);
        }
        // What the report said of this VM; nothing of an earlier VM of the same name.
        let before: Option<&BTreeMap<RuleId, Entry>> = previous
            .results
            .get(vm.name)
            .filter(|rules| rules.values().all(|entry| entry.uid == vm.uid));
        let mut rules = BTreeMap::new();
        for (rule, (severity, messages)) in &found {
            let verdict = match severity {
                Severity::Error => Verdict::Fail,
                Severity::Warning => Verdict::Warn,
            };
            let since = before
                .and_then(|rules| rules.get(rule))
                .filter(|entry| entry.verdict == verdict)
                .map_or(now, |entry| entry.since);
            rules.insert(
                *rule,
                Entry {
                    uid: vm.uid.to_string(),
                    verdict,
                    severity: *severity,
                    message: messages.join("; "),
                    since,
                },
            );
        }
        let fixed = before
            .into_iter()
            .flatten()
            .filter(|(rule, _)| !found.contains_key(rule));
        for (rule, entry) in fixed {
            let since = if entry.verdict == Verdict::Pass {
                entry.since
            } else {
                now
            };
            rules.insert(
                *rule,
                Entry {
                    verdict: Verdict::Pass,
                    message: format!("{rule}: nothing found"),
                    since,
                    ..entry.clone()
                },
            );
        }
        if !rules.is_empty() {
            results.insert(vm.name.to_string(), rules);
        }
    }
    NamespaceReport { results }
}

/// Judges the VMs of `namespace` as `audit` does (every rule the view can run, as if each VM
/// started again now), and gives the namespace's next report after `previous`.
pub fn judge<'a>(
    namespace: &str,
    vms: impl IntoIterator<Item = (&'a str, &'a str, &'a VirtualMachine)>,
    view: &ClusterView,
    previous: &NamespaceReport,
    now: Timestamp,
) -> NamespaceReport {
    let evaluations: Vec<(&str, &str, Vec<Finding>)> = vms
        .into_iter()
        .map(|(name, uid, vm)| {
            let object = ObjectRef::virtual_machine(vm, Some(namespace), DEFAULT_NAMESPACE);
            (name, uid, evaluate(vm, &object, Some(view)).findings)
        })
        .collect();
    let judged: Vec<Judged<'_>> = evaluations
        .iter()
        .map(|(name, uid, findings)| Judged {
            name,
            uid,
            findings,
        })
        .collect();
    next(previous, &judged, now)
}

fn report_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "high",
        Severity::Warning => "medium",
    }
}

/// Results a report holds at most: about 450 bytes each, so that a report stays well under
/// etcd's 1.5 MiB request limit (a write past it would fail every time, and the report go
/// stale).
pub const MAX_RESULTS: usize = 2_000;
/// The annotation that says how many results a report left out to stay under [`MAX_RESULTS`].
pub const LEFT_OUT: &str = "virt-preflight.io/results-left-out";

/// The whole report object of `namespace`, for a server-side apply. Past [`MAX_RESULTS`],
/// `pass` results go first, then warnings, and [`LEFT_OUT`] says how many are not shown.
pub fn to_object(api: ReportApi, namespace: &str, report: &NamespaceReport) -> Value {
    let resource = api.resource();
    let mut entries: Vec<(&String, &RuleId, &Entry)> = report
        .results
        .iter()
        .flat_map(|(name, rules)| rules.iter().map(move |(rule, entry)| (name, rule, entry)))
        .collect();
    let left_out = entries.len().saturating_sub(MAX_RESULTS);
    if left_out > 0 {
        // Fail before warn before pass (Verdict's order is Pass, Fail, Warn).
        let rank = |verdict: Verdict| match verdict {
            Verdict::Fail => 0,
            Verdict::Warn => 1,
            Verdict::Pass => 2,
        };
        entries.sort_by_key(|(name, rule, entry)| (rank(entry.verdict), *name, **rule));
        entries.truncate(MAX_RESULTS);
    }
    let count = |verdict: Verdict| {
        entries
            .iter()
            .filter(|(_, _, e)| e.verdict == verdict)
            .count()
    };
    let results: Vec<Value> = entries
        .iter()
        .map(|(name, rule, entry)| {
            json!({
                "policy": POLICY,
                "rule": rule.as_str(),
                "result": <&str>::from(entry.verdict),
                "severity": report_severity(entry.severity),
                "message": entry.message,
                "category": "KubeVirt",
                "source": POLICY,
                "scored": true,
                "timestamp": {"seconds": entry.since.as_second(), "nanos": 0},
                "resources": [{
                    "apiVersion": format!("{}/{}", crate::model::KUBEVIRT_GROUP, crate::model::KUBEVIRT_VERSION),
                    "kind": "VirtualMachine",
                    "namespace": namespace,
                    "name": name,
                    "uid": entry.uid,
                }],
            })
        })
        .collect();
    let mut object = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": POLICY,
            "namespace": namespace,
            "labels": {MANAGED_BY.0: MANAGED_BY.1},
        },
        "summary": {
            "pass": count(Verdict::Pass),
            "fail": count(Verdict::Fail),
            "warn": count(Verdict::Warn),
            "error": 0,
            "skip": 0,
        },
        "results": results,
    });
    if left_out > 0 {
        object["metadata"]["annotations"] = json!({LEFT_OUT: left_out.to_string()});
    }
    if api == ReportApi::OpenReports {
        object["source"] = json!(POLICY);
    }
    object
}

/// What a report this tool wrote says (read back when this replica takes the lead, so that a
/// `pass` and the times survive a restart). Results of other policies, unknown rules or
/// verdicts, or without a VM, are left out.
pub fn from_object(object: &Value) -> NamespaceReport {
    let mut results = BTreeMap::new();
    for result in object["results"].as_array().into_iter().flatten() {
        if result["policy"] != POLICY {
            continue;
        }
        let rule = result["rule"]
            .as_str()
            .and_then(|r| r.parse::<RuleId>().ok());
        let verdict = result["result"]
            .as_str()
            .and_then(|r| r.parse::<Verdict>().ok());
        let resource = &result["resources"][0];
        let (Some(rule), Some(verdict), Some(name)) = (rule, verdict, resource["name"].as_str())
        else {
            continue;
        };
        let since = result["timestamp"]["seconds"]
            .as_i64()
            .and_then(|s| Timestamp::from_second(s).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let severity = match result["severity"].as_str() {
            Some("high" | "critical") => Severity::Error,
            _ => Severity::Warning,
        };
        results
            .entry(name.to_string())
            .or_insert_with(BTreeMap::new)
            .insert(
                rule,
                Entry {
                    uid: resource["uid"].as_str().unwrap_or_default().to_string(),
                    verdict,
                    severity,
                    message: result["message"].as_str().unwrap_or_default().to_string(),
                    since,
                },
            );
    }
    NamespaceReport { results }
}

/// When each namespace's report is written again. A change marks its namespace; the
/// namespace is due once its changes have settled (no mark for a second, or the interval if
/// shorter: the view catches up with objects applied together with the VM), or have gone on
/// for four intervals (a namespace that never settles is still written), and not before the
/// interval has passed since its last write. So a namespace gets at most one write per
/// interval, however many changes.
#[derive(Debug)]
pub struct Debouncer {
    interval: Duration,
    /// The first and the last mark of each namespace waiting.
    marked: BTreeMap<String, (Timestamp, Timestamp)>,
    written: HashMap<String, Timestamp>,
}

/// How long a namespace's changes must pause to count as settled, at most.
const SETTLED: Duration = Duration::from_secs(1);
/// How many intervals a namespace whose changes never pause waits at most.
const PATIENCE: u32 = 4;

impl Debouncer {
    pub fn new(interval: Duration) -> Self {
        Debouncer {
            interval,
            marked: BTreeMap::new(),
            written: HashMap::new(),
        }
    }

    /// Something in `namespace` changed at `now`.
    pub fn mark(&mut self, namespace: &str, now: Timestamp) {
        match self.marked.get_mut(namespace) {
            Some((_, last)) => *last = now,
            None => {
                self.marked.insert(namespace.to_string(), (now, now));
            }
        }
    }

    /// The namespaces to judge and write now; they are unmarked and count as written.
    pub fn due(&mut self, now: Timestamp) -> BTreeSet<String> {
        let span = |d: Duration| jiff::SignedDuration::try_from(d).unwrap_or_default();
        let (interval, settled, patience) = (
            span(self.interval),
            span(self.interval.min(SETTLED)),
            span(self.interval * PATIENCE),
        );
        let since = |at: Timestamp| now.duration_since(at);
        let due: BTreeSet<String> = self
            .marked
            .iter()
            .filter(|(ns, (first, last))| {
                (since(*last) >= settled || since(*first) >= patience)
                    && self.written.get(*ns).is_none_or(|w| since(*w) >= interval)
            })
            .map(|(ns, _)| ns.clone())
            .collect();
        for namespace in &due {
            self.marked.remove(namespace);
            self.written.insert(namespace.clone(), now);
        }
        due
    }

    /// Whether any namespace waits.
    pub fn pending(&self) -> bool {
        !self.marked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn finding(rule: RuleId, severity: Severity, message: &str) -> Finding {
        Finding {
            rule,
            severity,
            object: ObjectRef {
                kind: "VirtualMachine".into(),
                namespace: "ns".into(),
                name: Some("vm".into()),
            },
            path: String::new(),
            message: message.into(),
            fix: None,
            missing: Vec::new(),
            assumption: None,
        }
    }

    #[test]
    fn an_error_fails_a_warning_warns_and_a_fixed_rule_passes_while_the_vm_lives() {
        let missing = [finding(
            RuleId::SecretNotFound,
            Severity::Error,
            "no Secret s",
        )];
        let vm = |findings| Judged {
            name: "vm",
            uid: "u1",
            findings,
        };
        let first = next(&NamespaceReport::default(), &[vm(&missing)], at(0));
        let entry =
            |report: &NamespaceReport| report.results["vm"][&RuleId::SecretNotFound].clone();
        assert_eq!(entry(&first).verdict, Verdict::Fail);
        assert_eq!(first.failing()[&RuleId::SecretNotFound], 1);

        // Unchanged: the time holds.
        let again = next(&first, &[vm(&missing)], at(10));
        assert_eq!(again, first);

        let fixed = next(&again, &[vm(&[])], at(20));
        assert_eq!(entry(&fixed).verdict, Verdict::Pass);
        assert_eq!(entry(&fixed).since, at(20));
        assert!(fixed.failing().is_empty());
        assert_eq!(next(&fixed, &[vm(&[])], at(30)), fixed);

        // Deleted: gone; recreated with another uid: starts afresh.
        assert!(next(&fixed, &[], at(40)).is_empty());
        let recreated = Judged {
            name: "vm",
            uid: "u2",
            findings: &[],
        };
        assert!(next(&fixed, &[recreated], at(40)).is_empty());

        let warned = [finding(
            RuleId::SecretNotFound,
            Severity::Warning,
            "no Secret s",
        )];
        let warn = next(&fixed, &[vm(&warned)], at(50));
        assert_eq!(entry(&warn).verdict, Verdict::Warn);
        assert_eq!(entry(&warn).since, at(50));
    }

    /// The report of one VM `vm` (uid `u`) with these findings, judged for the first time.
    fn first_report(findings: &[Finding]) -> NamespaceReport {
        let judged = Judged {
            name: "vm",
            uid: "u",
            findings,
        };
        next(&NamespaceReport::default(), &[judged], at(0))
    }

    #[test]
    fn two_findings_of_one_rule_are_one_result() {
        let findings = [
            finding(RuleId::SecretNotFound, Severity::Error, "no Secret a"),
            finding(RuleId::SecretNotFound, Severity::Error, "no Secret b"),
        ];
        let report = first_report(&findings);
        assert_eq!(report.results["vm"].len(), 1);
        let entry = &report.results["vm"][&RuleId::SecretNotFound];
        assert_eq!(entry.message, "no Secret a; no Secret b");
    }

    #[test]
    fn the_object_reads_back_as_it_was_written_for_both_apis() {
        let findings = [
            finding(RuleId::SecretNotFound, Severity::Error, "no Secret s"),
            finding(RuleId::PvcNotFound, Severity::Warning, "no PVC p"),
        ];
        let report = first_report(&findings);
        for api in ReportApi::ALL {
            let object = to_object(api, "ns", &report);
            assert_eq!(object["apiVersion"], api.resource().api_version);
            assert_eq!(object["summary"]["fail"], 1);
            assert_eq!(object["summary"]["warn"], 1);
            assert_eq!(
                object["results"][0]["resources"][0]["kind"],
                "VirtualMachine"
            );
            assert_eq!(from_object(&object), report, "{api}");
        }
        assert_eq!(
            to_object(ReportApi::OpenReports, "ns", &report)["source"],
            POLICY
        );
        assert!(
            to_object(ReportApi::WgPolicy, "ns", &report)
                .get("source")
                .is_none()
        );
    }

    #[test]
    fn a_report_past_its_size_leaves_out_passes_first_and_says_how_many() {
        let failing = [finding(
            RuleId::SecretNotFound,
            Severity::Error,
            "no Secret s",
        )];
        let names: Vec<String> = (0..MAX_RESULTS + 10)
            .map(|i| format!("vm-{i:05}"))
            .collect();
        let mut judged: Vec<Judged<'_>> = names
            .iter()
            .map(|name| Judged {
                name,
                uid: "u",
                findings: &[],
            })
            .collect();
        // Every VM failed once; all but the first five are fixed: passes.
        let all_fail: Vec<Judged<'_>> = names
            .iter()
            .map(|name| Judged {
                name,
                uid: "u",
                findings: &failing,
            })
            .collect();
        let first = next(&NamespaceReport::default(), &all_fail, at(0));
        for vm in judged.iter_mut().take(5) {
            vm.findings = &failing;
        }
        let report = next(&first, &judged, at(10));
        let object = to_object(ReportApi::WgPolicy, "ns", &report);
        assert_eq!(
            object["results"].as_array().map(Vec::len),
            Some(MAX_RESULTS)
        );
        assert_eq!(object["summary"]["fail"], 5);
        assert_eq!(object["summary"]["pass"], MAX_RESULTS - 5);
        assert_eq!(object["metadata"]["annotations"][LEFT_OUT], "10");
        assert!(
            to_object(ReportApi::WgPolicy, "ns", &first)["metadata"]["annotations"][LEFT_OUT]
                == "10"
        );
        let small = next(&NamespaceReport::default(), &all_fail[..3], at(0));
        assert!(
            to_object(ReportApi::WgPolicy, "ns", &small)["metadata"]
                .get("annotations")
                .is_none()
        );
    }

    #[test]
    fn results_of_other_policies_are_not_read_back() {
        let object = json!({"results": [
            {"policy": "kyverno", "rule": "secret-not-found", "result": "fail",
             "resources": [{"name": "vm"}]},
            {"policy": POLICY, "rule": "no-such-rule", "result": "fail", "resources": [{"name": "vm"}]},
        ]});
        assert!(from_object(&object).is_empty());
    }

    #[test]
    fn openreports_is_preferred_where_both_apis_are_served() {
        fn served(apis: &'static [&'static str]) -> impl Fn(&str) -> Vec<String> {
            move |group_version: &str| {
                apis.iter()
                    .filter(|a| a.starts_with(group_version))
                    .map(|a| a.rsplit('/').next().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            }
        }
        const BOTH: [&str; 2] = [
            "openreports.io/v1alpha1/reports",
            "wgpolicyk8s.io/v1alpha2/policyreports",
        ];
        assert_eq!(
            ReportApi::choose(served(&BOTH)),
            Some(ReportApi::OpenReports)
        );
        const WG: [&str; 1] = ["wgpolicyk8s.io/v1alpha2/policyreports"];
        assert_eq!(ReportApi::choose(served(&WG)), Some(ReportApi::WgPolicy));
        assert_eq!(ReportApi::choose(served(&[])), None);
    }

    #[test]
    fn a_namespace_is_written_once_it_settles_and_at_most_once_per_interval() {
        let ms = |ms: i64| at(0) + jiff::SignedDuration::from_millis(ms);
        let mut debouncer = Debouncer::new(Duration::from_secs(5));
        debouncer.mark("a", ms(0));
        debouncer.mark("a", ms(500));
        assert!(debouncer.due(ms(1_000)).is_empty(), "not settled yet");
        assert_eq!(debouncer.due(ms(1_500)), BTreeSet::from(["a".to_string()]));
        assert!(!debouncer.pending());
        // Marked right after a write: settled, but not before the interval since the write.
        debouncer.mark("a", ms(1_600));
        debouncer.mark("b", ms(1_600));
        assert_eq!(debouncer.due(ms(3_000)), BTreeSet::from(["b".to_string()]));
        assert!(debouncer.due(ms(6_000)).is_empty());
        assert_eq!(debouncer.due(ms(6_500)), BTreeSet::from(["a".to_string()]));
        // Changes that never pause: written after four intervals all the same.
        for tick in 0..=40 {
            debouncer.mark("c", ms(10_000 + tick * 500));
            let due = debouncer.due(ms(10_000 + tick * 500));
            assert_eq!(due.is_empty(), tick < 40, "at {tick}");
        }
    }
}
