//! What KubeVirt does with a VM, seen on the real control plane (`control_plane.rs`), and what
//! virt-preflight says of it: the two sides of the differential suite (`tests/differential.rs`).
//!
//! KubeVirt's side is only ever read from KubeVirt: the API server's and virt-api's answer to a
//! server-side dry run, and the status virt-controller, the scheduler and the API server's pod
//! admission give a VM created for real.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use virt_preflight::check::{CheckOptions, Outcome, check_document};
use virt_preflight::manifest;
use virt_preflight::rules::finding::Severity;

use super::control_plane::ControlPlane;

/// What `kubectl apply --dry-run=server` (strict field validation, kubectl's default) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Refused, with the API server's or virt-api's reason.
    Refused(String),
}

impl fmt::Display for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Admission::Admitted => f.write_str("admitted"),
            Admission::Refused(reason) => write!(f, "refused: {reason}"),
        }
    }
}

/// `kubectl apply --dry-run=server` of `vm`.
pub fn dry_run(plane: &ControlPlane, vm: &Value) -> Admission {
    let result = plane.kubectl_with_input(
        &["apply", "--dry-run=server", "-o", "name", "-f", "-"],
        &vm.to_string(),
    );
    if result.success {
        Admission::Admitted
    } else {
        Admission::Refused(reason(&result.stderr))
    }
}

/// KubeVirt's reason out of kubectl's error text: the webhook's or the API server's words,
/// without kubectl's framing, on one line.
pub fn reason(stderr: &str) -> String {
    let text = stderr.trim();
    let text = text
        .split_once("denied the request: ")
        .map_or(text, |(_, rest)| rest);
    let text = text
        .strip_prefix("Error from server (BadRequest): ")
        .or_else(|| text.strip_prefix("Error from server (Invalid): "))
        .or_else(|| text.strip_prefix("Error from server: "))
        .unwrap_or(text);
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one.replace('|', "\\|")
}

/// What `check` (offline, or with a view) said of one VM: its findings by severity, or the
/// input error that stopped it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The manifest could not be read as a VM (exit 2): a refusal too, naming the field.
    pub input_error: Option<String>,
}

impl Verdict {
    /// Refuses the VM: an error finding or an input error.
    pub fn refuses(&self) -> bool {
        !self.errors.is_empty() || self.input_error.is_some()
    }

    pub fn has_error(&self, rule: &str) -> bool {
        self.errors.iter().any(|e| e == rule)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(err) = &self.input_error {
            parts.push(format!("input error: {}", err.replace('|', "\\|")));
        }
        if !self.errors.is_empty() {
            parts.push(format!("error {}", self.errors.join(", ")));
        }
        if !self.warnings.is_empty() {
            parts.push(format!("warning {}", self.warnings.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("clean")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// `check` on one VM in process, exactly as the CLI checks a document.
pub fn check_offline(name: &str, vm: &Value, options: &CheckOptions) -> Verdict {
    let file: Arc<str> = Arc::from(name);
    let mut verdict = Verdict::default();
    for parsed in manifest::parse_text(&file, &vm.to_string()) {
        let document = match parsed {
            Ok(document) => document,
            Err(err) => {
                verdict.input_error = Some(err.to_string());
                continue;
            }
        };
        match check_document(document, options).outcome {
            Outcome::Vm(report) => {
                for finding in &report.evaluation.findings {
                    let rule = finding.rule.to_string();
                    let list = match finding.severity {
                        Severity::Error => &mut verdict.errors,
                        Severity::Warning => &mut verdict.warnings,
                    };
                    if !list.contains(&rule) {
                        list.push(rule);
                    }
                }
            }
            Outcome::Invalid(err) => verdict.input_error = Some(err.to_string()),
            Outcome::Skipped { kind, .. } => {
                verdict.input_error = Some(format!("not checked: kind {kind}"))
            }
        }
    }
    verdict
}

/// A cluster view of these objects, as `check --cluster-state` reads a snapshot of them.
pub fn view_of(objects: &[Value]) -> virt_preflight::cluster::ClusterView {
    let file: Arc<str> = Arc::from("snapshot.json");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let snapshot = virt_preflight::cluster::snapshot::from_documents(manifest::parse_text(
        &file,
        &list.to_string(),
    ));
    assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
    snapshot.view
}

/// `virt-preflight check --kubeconfig` (the binary, against the live control plane) on VMs;
/// the verdict of each, by namespace and name.
pub fn check_live(plane: &ControlPlane, vms: &[Value]) -> BTreeMap<(String, String), Verdict> {
    let dir = plane.api.run_dir.join(format!(
        "check-live-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("a directory for check's input");
    let mut names = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        let path = dir.join(format!("{i:03}.json"));
        std::fs::write(&path, vm.to_string()).expect("write a VM for check");
        names.push((
            vm["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            vm["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_virt-preflight"))
        .args(["check", "-o", "json", "--kubeconfig"])
        .arg(&plane.api.kubeconfig)
        .arg(&dir)
        .output()
        .expect("run virt-preflight check");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let mut verdicts: BTreeMap<(String, String), Verdict> = names
        .into_iter()
        .map(|name| (name, Verdict::default()))
        .collect();
    for finding in report["findings"].as_array().into_iter().flatten() {
        let key = (
            finding["object"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            finding["object"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let rule = finding["rule"].as_str().unwrap_or_default().to_string();
        let verdict = verdicts.entry(key).or_default();
        let list = if finding["severity"] == "error" {
            &mut verdict.errors
        } else {
            &mut verdict.warnings
        };
        if !list.contains(&rule) {
            list.push(rule);
        }
    }
    verdicts
}

/// The rule `virt-preflight diagnose NAMESPACE/NAME --kubeconfig` names as the VM's cause
/// (`cause: [rule-id] ...`), or its cause line when it names none.
pub fn diagnosed_cause(plane: &ControlPlane, namespace: &str, name: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_virt-preflight"))
        .args(["diagnose", &format!("{namespace}/{name}"), "--kubeconfig"])
        .arg(&plane.api.kubeconfig)
        .output()
        .expect("run virt-preflight diagnose");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(cause) = stdout.lines().find_map(|l| l.strip_prefix("cause: ")) else {
        return format!(
            "no cause line: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    };
    match cause.strip_prefix('[').and_then(|c| c.split_once(']')) {
        Some((rule, _)) => rule.to_string(),
        None => "(no rule)".to_string(),
    }
}

/// Where KubeVirt got with a VM created for real.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// Its virt-launcher pod was bound to a Node: KubeVirt runs it (what is left is the
    /// kubelet's and virt-handler's, absent here).
    Bound,
    /// KubeVirt gave it an error: printableStatus, a `Failure` or `Synchronized=False`
    /// condition, or the scheduler's `PodScheduled=False`; with KubeVirt's words.
    Failed(String),
    /// A DataVolume is waiting for CDI (absent here): printableStatus `Provisioning`.
    Provisioning,
    /// A halted VM KubeVirt left stopped without an error (after a grace period).
    Stopped,
    /// Neither, within the time allowed: the printableStatus last seen.
    Undecided(String),
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runtime::Bound => f.write_str("launcher pod bound"),
            Runtime::Failed(why) => write!(f, "{}", why.replace('|', "\\|")),
            Runtime::Provisioning => f.write_str("Provisioning (DataVolume waits for CDI)"),
            Runtime::Stopped => f.write_str("Stopped, no error"),
            Runtime::Undecided(status) => write!(f, "undecided ({status})"),
        }
    }
}

/// How long KubeVirt gets to show an outcome (about a second on an idle machine).
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(60);

/// Watches the VMs `names` of `namespace` (already created) until KubeVirt has decided each.
pub fn outcomes(
    plane: &ControlPlane,
    namespace: &str,
    names: &[String],
) -> BTreeMap<String, Runtime> {
    let started = Instant::now();
    let mut decided: BTreeMap<String, Runtime> = BTreeMap::new();
    loop {
        let vms = plane
            .kubectl(&["-n", namespace, "get", "virtualmachines", "-o", "json"])
            .json();
        let pods = plane
            .kubectl(&["-n", namespace, "get", "pods", "-o", "json"])
            .json();
        let mut undecided = BTreeMap::new();
        for name in names {
            if decided.contains_key(name) {
                continue;
            }
            let vm = vms["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|vm| vm["metadata"]["name"] == name.as_str());
            let Some(vm) = vm else {
                undecided.insert(name.clone(), "not found".to_string());
                continue;
            };
            match outcome_of(vm, &pods, started.elapsed() > HALTED_GRACE) {
                Ok(runtime) => {
                    decided.insert(name.clone(), runtime);
                }
                Err(status) => {
                    undecided.insert(name.clone(), status);
                }
            }
        }
        if undecided.is_empty() {
            return decided;
        }
        if started.elapsed() > OUTCOME_TIMEOUT {
            for (name, status) in undecided {
                decided.insert(name, Runtime::Undecided(status));
            }
            return decided;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How long a halted VM must stay Stopped without an error to count as left alone.
const HALTED_GRACE: Duration = Duration::from_secs(5);

/// The outcome KubeVirt has given `vm` so far, or its printableStatus while it has none.
fn outcome_of(vm: &Value, pods: &Value, grace_over: bool) -> Result<Runtime, String> {
    let name = vm["metadata"]["name"].as_str().unwrap_or_default();
    let bound = pods["items"].as_array().into_iter().flatten().any(|pod| {
        pod["metadata"]["labels"]["vm.kubevirt.io/name"] == name
            && pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
    });
    if bound {
        return Ok(Runtime::Bound);
    }
    let status = vm["status"]["printableStatus"]
        .as_str()
        .unwrap_or("(none)")
        .to_string();
    let conditions = vm["status"]["conditions"].as_array();
    let condition = |kind: &str, status: &str| {
        conditions
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind && c["status"] == status)
    };
    let words = |c: &Value| {
        let reason = c["reason"].as_str().unwrap_or_default();
        let message = c["message"].as_str().unwrap_or_default();
        let message: String = message
            .split_whitespace()
            .map(stable_word)
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "{status}: {}={} {reason}: {message}",
            c["type"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or("")
        )
    };
    if let Some(c) = condition("Failure", "True") {
        return Ok(Runtime::Failed(words(c)));
    }
    if let Some(c) = condition("Synchronized", "False") {
        return Ok(Runtime::Failed(words(c)));
    }
    if let Some(c) = condition("PodScheduled", "False") {
        return Ok(Runtime::Failed(words(c)));
    }
    if status.starts_with("Error") || status == "ErrImagePull" || status == "CrashLoopBackOff" {
        return Ok(Runtime::Failed(status));
    }
    if status == "Provisioning" {
        return Ok(Runtime::Provisioning);
    }
    if status == "Stopped" && grace_over && vm["spec"]["runStrategy"] == "Halted" {
        return Ok(Runtime::Stopped);
    }
    Err(status)
}

/// A word of KubeVirt's message with the random suffix of a generated pod name
/// (`virt-launcher-vm-x7k2q`) made stable, so that the tables do not change from run to run.
fn stable_word(word: &str) -> String {
    let Some(start) = word.find("virt-launcher-") else {
        return word.to_string();
    };
    let name_end = word[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map_or(word.len(), |end| start + end);
    let name = &word[start..name_end];
    // generateName keeps at most 58 characters of the stem and appends 5 random ones.
    let stem = match name.rsplit_once('-') {
        _ if name.len() == 63 => &name[..58],
        Some((stem, suffix))
            if suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            stem
        }
        _ => return word.to_string(),
    };
    let separator = if name.len() == 63 { "" } else { "-" };
    format!(
        "{}{stem}{separator}XXXXX{}",
        &word[..start],
        &word[name_end..]
    )
}

/// Creates `objects` (a VM and what it needs) for real.
pub fn create(plane: &ControlPlane, objects: &[Value]) {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    plane
        .kubectl_with_input(&["create", "-f", "-"], &list.to_string())
        .ok();
}

/// The table a comparison writes to `docs/`: regenerated by every run, compared with the
/// committed file (so a change in KubeVirt's answers or ours shows in review), and rewritten
/// where `VIRT_PREFLIGHT_BLESS=1`.
pub fn check_table(relative: &str, text: &str) {
    let path = super::apiserver::manifest_dir().join(relative);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == text {
        return;
    }
    if std::env::var_os("VIRT_PREFLIGHT_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let fresh = path.with_extension("md.new");
    let _ = std::fs::write(&fresh, text);
    panic!(
        "{relative} is not what this run found (written to {}); review the difference and \
         rerun with VIRT_PREFLIGHT_BLESS=1 to accept it",
        fresh.display()
    );
}
