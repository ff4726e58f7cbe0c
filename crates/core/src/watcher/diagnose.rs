//! Why a VM is stuck, in one line: what holds a deleted VM (its finalizers), what the rules
//! find on it (spec and cluster), its DataVolumes and PVCs being deleted, what KubeVirt and
//! CDI already say (the VM's conditions, its DataVolumes' phase, its PVCs' phase), and, when
//! the VM has no cause of its own, KubeVirt's health. Pure: the VM object and the cluster view
//! in, a [`Diagnosis`] out.

use jiff::SignedDuration;

use crate::cluster::{ClusterView, Kind};
use crate::rules::finding::{DEFAULT_NAMESPACE, Finding, ObjectRef, Severity, one_line};
use crate::rules::{Outcome, RuleId, evaluate};

use super::health::{self, Health};
use super::kubevirt_says;
use super::launcher_pod::LauncherPod;
use super::record::{Condition, ConditionStatus, VmRecord, VmiFacts, VmiPhase};
use super::state::{VmKey, VmStatus};
use super::storage::{self, Deleting};
use super::terminating;

/// KubeVirt's runbook for the alert.
pub const RUNBOOK_URL: &str =
    "https://kubevirt.io/monitoring/runbooks/VirtualMachineStuckInUnhealthyState.html";

/// The cause of a VM for which nothing was found.
pub const NO_CAUSE: &str =
    "no cause found by the rules or in the VM's conditions; follow the runbook";

/// The most likely cause: a rule's finding, or what the cluster says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The rule that found it; `None` when the cause comes from the VM's conditions, its
    /// DataVolumes or PVCs, or when nothing was found.
    pub rule: Option<RuleId>,
    /// One line, without the duration (stable while the VM stays stuck): a finding's one-line
    /// form, or what the cluster says.
    pub text: String,
    /// What the cause is about, alike for every VM it holds: the finding's message (which names
    /// the object or selector), KubeVirt's or CDI's words, the finalizers. VMs with the same
    /// rule and subject are one problem. `None` when no cause was found.
    pub subject: Option<String>,
}

impl Cause {
    fn of(finding: &Finding) -> Cause {
        Cause {
            rule: Some(finding.rule),
            text: finding.to_string(),
            subject: Some(finding.message.clone()),
        }
    }

    /// The `rule` label of the stuck gauge and the alert: the rule ID or `none`.
    pub fn rule_label(&self) -> &'static str {
        self.rule.map_or("none", RuleId::as_str)
    }
}

/// What diagnosis found for one VM.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub key: VmKey,
    /// `status.printableStatus` as the VM says it (empty when it has none).
    pub printable_status: String,
    pub cause: Cause,
    /// Every finding of the rules, errors first.
    pub findings: Vec<Finding>,
    /// What KubeVirt and CDI say: condition messages, DataVolume and PVC phases, claims being
    /// deleted.
    pub evidence: Vec<String>,
    /// KubeVirt's health, where the view knows it: shown whether or not it is the cause.
    pub kubevirt: Option<Health>,
    /// The runbook step to follow next.
    pub next_step: String,
}

impl Diagnosis {
    /// `ErrorUnschedulable for 14m: [node-selector-unsatisfiable] spec…: nodeSelector …`
    pub fn headline(&self, unhealthy_for: SignedDuration) -> String {
        format!(
            "{} for {}: {}",
            self.printable_status,
            human_duration(unhealthy_for),
            self.cause.text
        )
    }
}

/// `14m`, `2h5m`, `3d4h`: how long, as a person pages through it.
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs().max(0);
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// The kinds `view` does not know, whose rules did not run. KubeVirt's components (read by name,
/// for the diagnosis only) are not rules' kinds; their absence is said by the health line.
pub fn unknown_kinds(view: &ClusterView) -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| !view.is_known(*k))
        .filter(|k| k.only_named().is_none())
        .collect()
}

/// The rules whose findings explain a status best: those whose predicted [`Outcome`] is that
/// status (checked against KubeVirt by `tests/differential.rs`), so a new rule explains what
/// its outcome says with no list here to keep.
fn explains(status: Option<VmStatus>, rule: RuleId) -> bool {
    use RuleId::*;
    // The kubelet's outcome covers mounts and image pulls alike; these fail the pull (a pull
    // secret, a reference, a `latest` tag the registry does not have).
    const PULL: &[RuleId] = &[ImageReferenceInvalid, ImageTagLatest, SecretNotFound];
    let outcome = Outcome::of(rule);
    match status {
        Some(VmStatus::ErrorUnschedulable) => outcome == Outcome::Unschedulable,
        // CDI fails a DataVolume whose claim is Lost (`ErrClaimLost`), and KubeVirt reports
        // DataVolumeError before it looks at the pod: the one status a rule shows besides its
        // outcome's (no CDI controller runs in the test control plane to show it).
        Some(VmStatus::DataVolumeError) if rule == PvcLost => true,
        Some(VmStatus::ErrorPvcNotFound | VmStatus::DataVolumeError | VmStatus::Provisioning) => {
            matches!(outcome, Outcome::PvcNotFound | Outcome::Cdi)
        }
        Some(VmStatus::ErrImagePull | VmStatus::ImagePullBackOff) => PULL.contains(&rule),
        // Starting, CrashLoopBackOff, Unknown, Terminating: anything but advice may explain
        // them (a drain that waits on the VM, say, keeps it running).
        _ => outcome != Outcome::Advisory,
    }
}

/// The runbook step for a status, with the commands to run.
pub fn next_step(status: Option<VmStatus>, key: &VmKey) -> String {
    let (ns, name) = (&key.namespace, &key.name);
    let pods = format!("kubectl -n {ns} get pods -l vm.kubevirt.io/name={name}");
    match status {
        Some(VmStatus::Provisioning) => format!(
            "check the VM's DataVolumes and PVCs and the CDI importer pods: kubectl -n {ns} get dv,pvc; kubectl -n {ns} describe dv"
        ),
        Some(VmStatus::Starting) => format!(
            "check the virt-launcher pod and its events: {pods}; kubectl -n {ns} describe pod -l vm.kubevirt.io/name={name}"
        ),
        Some(VmStatus::Terminating) => format!(
            "check for finalizers and a launcher pod stuck terminating: kubectl -n {ns} get vm {name} -o jsonpath='{{.metadata.finalizers}}'; {pods}"
        ),
        Some(VmStatus::CrashLoopBackOff) => format!(
            "read the launcher's logs: kubectl -n {ns} logs -l vm.kubevirt.io/name={name} -c compute --previous"
        ),
        Some(VmStatus::Unknown) => format!(
            "check the node the VM ran on and virt-handler there: {pods} -o wide; kubectl -n kubevirt get pods -l kubevirt.io=virt-handler -o wide"
        ),
        Some(VmStatus::ErrorUnschedulable) => format!(
            "read the launcher pod's scheduling events: kubectl -n {ns} describe pod -l vm.kubevirt.io/name={name}; compare with kubectl get nodes --show-labels"
        ),
        Some(VmStatus::ErrImagePull | VmStatus::ImagePullBackOff) => format!(
            "check the containerDisk image name, tag and pull secret: kubectl -n {ns} describe pod -l vm.kubevirt.io/name={name}"
        ),
        Some(VmStatus::ErrorPvcNotFound) => {
            format!("create the missing PVC or correct claimName: kubectl -n {ns} get pvc")
        }
        Some(VmStatus::DataVolumeError) => format!(
            "read the DataVolume's conditions and the importer's logs: kubectl -n {ns} describe dv"
        ),
        Some(VmStatus::Stopped) => format!(
            "read why virt-controller cannot start it: kubectl -n {ns} describe vm {name} (its Failure condition and events)"
        ),
        Some(VmStatus::Stopping) => format!(
            "check the launcher pod and the node it runs on: {pods} -o wide; kubectl -n {ns} describe pod -l vm.kubevirt.io/name={name}"
        ),
        Some(VmStatus::WaitingForVolumeBinding) => format!(
            "check the VM's PVCs and their StorageClass's provisioner: kubectl -n {ns} get pvc; kubectl -n {ns} describe pvc"
        ),
        _ => format!("see the runbook: {RUNBOOK_URL}"),
    }
}

/// What the VM's conditions say went wrong: a True Failure, or a False Synchronized,
/// PodScheduled, DataVolumesReady or StorageReady, with its reason and message. (Ready=False
/// only repeats that the VM is not running.)
fn condition_evidence(conditions: &[Condition]) -> Vec<String> {
    conditions
        .iter()
        .filter(|c| {
            let telling = match c.kind.as_str() {
                "Failure" => c.status == ConditionStatus::True,
                "Synchronized" | "PodScheduled" | "DataVolumesReady" | "StorageReady" => {
                    c.status == ConditionStatus::False
                }
                _ => false,
            };
            telling && !c.message.trim().is_empty()
        })
        .map(kubevirt_says::words)
        .collect()
}

/// Where the VMI is, and what its node and launcher pod say.
fn placement_evidence(
    vmi: Option<&VmiFacts>,
    launcher: Option<&LauncherPod>,
    view: Option<&ClusterView>,
) -> (Vec<String>, Option<String>) {
    let mut evidence = Vec::new();
    let Some(vmi) = vmi else {
        return (evidence, None);
    };
    let phase = match vmi.phase_name() {
        "" => "no phase yet",
        phase => phase,
    };
    evidence.push(match &vmi.node {
        Some(node) => format!("VMI {phase} on node {node}"),
        None => format!("VMI {phase}"),
    });
    if let Some(pod) = launcher {
        evidence.push(pod.summary());
        evidence.extend(pod.said().map(|said| said.words));
    }
    // A VMI on a node that is not Ready: its kubelet and virt-handler cannot act.
    let node_down = vmi.node.as_deref().and_then(|node| {
        let info = view?.nodes()?.by_name(node)?;
        (!info.ready).then(|| {
            format!(
                "node {node} is not Ready: its kubelet and virt-handler cannot run or stop the VM"
            )
        })
    });
    (evidence, node_down)
}

/// The cause found first, with the step that goes with it.
type Found = (Cause, String);

fn found_by(finding: &Finding, status: Option<VmStatus>, key: &VmKey) -> Found {
    (Cause::of(finding), next_step(status, key))
}

/// A cause that is what the cluster says: its text is its subject.
fn said(text: String, next_step: String) -> Found {
    (
        Cause {
            rule: None,
            subject: Some(text.clone()),
            text,
        },
        next_step,
    )
}

/// Diagnoses one VM (as the watcher read it), with its VMI and launcher pod where known,
/// against the cluster view. The cause is the first of: what holds a deleted VM; a VM that
/// does not read; what KubeVirt says (its conditions), else what the launcher pod says (the
/// kubelet's reasons and Events), each confirmed by a rule's finding where one predicts it;
/// the VMI's node not Ready; an error finding that explains the status; a claim being deleted,
/// for a status that waits for it; what the VM's conditions and claims say; any other error
/// finding; KubeVirt not healthy; a warning that explains the status.
pub fn diagnose(
    record: &VmRecord,
    vmi: Option<&VmiFacts>,
    launcher: Option<&LauncherPod>,
    view: Option<&ClusterView>,
) -> Diagnosis {
    let printable_status = record.printable_status.clone();
    let status = VmStatus::parse(&printable_status);
    let key = record.key.clone();
    let mut evidence = condition_evidence(&record.conditions);
    // Where the VMI is tells the reader where to look; it is not a cause on its own.
    let (placed, node_down) = placement_evidence(vmi, launcher, view);
    let mut deleting: Vec<Deleting> = Vec::new();
    let (findings, unreadable) = match &record.vm {
        Err(error) => {
            let text = one_line(
                &format!("the VM does not read as kubevirt.io/v1: {error}"),
                200,
            );
            (Vec::new(), Some(said(text, next_step(status, &key))))
        }
        Ok(vm) => {
            let reference = ObjectRef::virtual_machine(vm, None, DEFAULT_NAMESPACE);
            let mut findings = evaluate(vm, &reference, view).findings;
            findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
            if let Some(view) = view {
                evidence.extend(storage::evidence(vm, &key.namespace, view));
                deleting = storage::deleting(vm, &key.namespace, view);
            }
            (findings, None)
        }
    };
    let kubevirt = view.and_then(health::of);
    let errors = || findings.iter().filter(|f| f.severity == Severity::Error);
    // A deleted VM is kept by its finalizers, whatever else is wrong with it (and whatever
    // status virt-controller last wrote).
    let held = terminating::held(record).map(|held| {
        let held = held.waiting_for(deleting.clone());
        let cause = Cause {
            rule: None,
            text: held.text(),
            subject: Some(held.subject()),
        };
        (cause, held.next_step(&key))
    });
    // KubeVirt's own words come first: they are its outcome. Where a rule predicts them and
    // found the VM, that finding is the cause (it says what to change); else KubeVirt is
    // quoted under the rule that predicts it, or under none.
    let kubevirt_said = kubevirt_says::said(&record.conditions)
        .or_else(|| launcher.and_then(LauncherPod::said))
        .map(|said| {
            let confirmed = said
                .rules
                .iter()
                .find_map(|rule| findings.iter().find(|f| f.rule == *rule));
            match confirmed {
                // KubeVirt's words stay in the evidence, beside it.
                Some(finding) => found_by(finding, status, &key),
                None => (
                    Cause {
                        rule: said.rules.first().copied(),
                        text: match said.rules.first() {
                            Some(rule) => format!("[{rule}] {}: {}", said.by, said.words),
                            None => said.words.clone(),
                        },
                        subject: Some(said.words.clone()),
                    },
                    next_step(status, &key),
                ),
            }
        });
    let node_down = node_down.map(|text| {
        let step = format!(
            "check the node and virt-handler there: kubectl describe node {}; kubectl -n kubevirt get pods -l kubevirt.io=virt-handler -o wide",
            vmi.and_then(|v| v.node.as_deref()).unwrap_or_default()
        );
        said(text, step)
    });
    let (cause, next_step) = held
        .or(unreadable)
        .or(kubevirt_said)
        .or(node_down)
        .or_else(|| {
            errors()
                .find(|f| explains(status, f.rule))
                .map(|f| found_by(f, status, &key))
        })
        .or_else(|| {
            (storage::deletion_explains(status) && !deleting.is_empty())
                .then(|| said(storage::describe(&deleting), storage::next_steps(&deleting)))
        })
        .or_else(|| {
            evidence
                .first()
                .map(|text| said(text.clone(), next_step(status, &key)))
        })
        .or_else(|| errors().next().map(|f| found_by(f, status, &key)))
        .or_else(|| {
            let health = kubevirt.as_ref()?;
            Some(said(health.subject()?, health.next_step()))
        })
        .or_else(|| {
            (vmi?.phase == VmiPhase::Unset).then(|| {
                said(
                    "its VMI has no phase: virt-controller has not acted on it".to_string(),
                    "check that virt-controller runs and what it logs about the VM: kubectl -n kubevirt get pods -l kubevirt.io=virt-controller; kubectl -n kubevirt logs -l kubevirt.io=virt-controller --tail=500 | grep "
                        .to_string()
                        + &key.name,
                )
            })
        })
        .or_else(|| {
            findings
                .iter()
                .find(|f| explains(status, f.rule))
                .map(|f| found_by(f, status, &key))
        })
        .unwrap_or_else(|| {
            (
                Cause {
                    rule: None,
                    text: NO_CAUSE.to_string(),
                    subject: None,
                },
                next_step(status, &key),
            )
        });
    evidence.extend(placed);
    Diagnosis {
        next_step,
        key,
        printable_status,
        cause,
        findings,
        evidence,
        kubevirt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Kind, ViewBuilder};
    use serde_json::{Value, json};

    /// A VM object diagnosed as the watcher would, with no VMI and no launcher pod.
    fn diagnose_object(object: &Value, view: Option<&ClusterView>) -> Diagnosis {
        let watched = crate::watcher::WatchedVm::from_value(object).unwrap();
        let key = VmKey::of(object).unwrap();
        diagnose(&watched.record(&key), None, None, view)
    }

    fn vm(status: &str, template_spec: Value, conditions: Value) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "vm1", "namespace": "ns"},
            "spec": {"runStrategy": "Always", "template": {"spec": template_spec}},
            "status": {"printableStatus": status, "conditions": conditions}
        })
    }

    fn bootable(extra: Value) -> Value {
        let mut spec = json!({
            "domain": {"devices": {}, "memory": {"guest": "1Gi"}},
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        spec
    }

    fn view_with_nodes(nodes: &[(&str, Value)]) -> ClusterView {
        let mut builder = ViewBuilder::new();
        builder.mark_known(Kind::Node);
        for (name, labels) in nodes {
            builder
                .add(
                    Kind::Node,
                    &json!({"metadata": {"name": name, "labels": labels},
                        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"},
                                   "conditions": [{"type": "Ready", "status": "True"}]}}),
                )
                .unwrap();
        }
        builder.build()
    }

    #[test]
    fn unschedulable_is_explained_by_the_node_selector_rule() {
        let view = view_with_nodes(&[(
            "worker-1",
            json!({"gpu": "t4", "kubevirt.io/schedulable": "true"}),
        )]);
        let object = vm(
            "ErrorUnschedulable",
            bootable(json!({"nodeSelector": {"gpu": "a100"}})),
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}]),
        );
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(
            diagnosis.cause.rule,
            Some(RuleId::NodeSelectorUnsatisfiable)
        );
        assert_eq!(
            diagnosis.cause.subject.as_deref(),
            Some("nodeSelector gpu=a100 matches none of 1 nodes (nearest: worker-1 has gpu=t4)"),
            "the message without the path"
        );
        let headline = diagnosis.headline(SignedDuration::from_mins(14));
        assert!(
            headline.starts_with("ErrorUnschedulable for 14m: [node-selector-unsatisfiable] "),
            "{headline}"
        );
        assert!(headline.contains("gpu=a100"), "{headline}");
        assert_eq!(diagnosis.evidence.len(), 1, "the scheduler's word is kept");
        assert!(diagnosis.next_step.contains("describe pod"));
    }

    /// One node with 1,000 `kvm` devices, `kvm` of them healthy, and a KubeVirt CR with
    /// `configuration`.
    fn kubevirt_view(kvm: &str, configuration: Value) -> ClusterView {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::Node,
                &json!({"metadata": {"name": "worker-1", "labels": {"kubevirt.io/schedulable": "true"}},
                    "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "devices.kubevirt.io/kvm": kvm},
                               "capacity": {"cpu": "8", "memory": "32Gi", "devices.kubevirt.io/kvm": "1k"},
                               "conditions": [{"type": "Ready", "status": "True"}]}}),
            )
            .unwrap();
        builder
            .add(
                Kind::KubeVirt,
                &json!({"metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                    "spec": {"configuration": configuration},
                    "status": {"observedKubeVirtVersion": "v1.6.2"}}),
            )
            .unwrap();
        builder.build()
    }

    #[test]
    fn unschedulable_is_explained_by_a_missing_hypervisor_device() {
        let object = vm("ErrorUnschedulable", bootable(json!({})), json!([]));
        let diagnosis = diagnose_object(&object, Some(&kubevirt_view("0", json!({}))));
        assert_eq!(diagnosis.cause.rule, Some(RuleId::KvmUnavailable));
    }

    #[test]
    fn advice_is_never_why_a_vm_is_stuck() {
        // No interface: KubeVirt's default pod interface is bridge, which cannot migrate, so a
        // drain would wait on the VM; it is still running.
        let drain = kubevirt_view("1k", json!({"evictionStrategy": "LiveMigrate"}));
        // `spec.running` is deprecated, and KubeVirt starts the VM all the same.
        let mut running = vm("Starting", bootable(json!({})), json!([]));
        running["spec"] = json!({"running": true, "template": running["spec"]["template"].take()});
        let cases = [
            (
                vm("Starting", bootable(json!({})), json!([])),
                Some(&drain),
                RuleId::EvictionNotMigratable,
            ),
            (running, None, RuleId::RunningDeprecated),
        ];
        for (mut object, view, advice) in cases {
            for status in ["Starting", "ErrorUnschedulable", "CrashLoopBackOff"] {
                object["status"]["printableStatus"] = json!(status);
                let diagnosis = diagnose_object(&object, view);
                assert!(
                    diagnosis.findings.iter().any(|f| f.rule == advice),
                    "the finding is listed: {:?}",
                    diagnosis.findings
                );
                assert_eq!(
                    diagnosis.cause.rule, None,
                    "{status}: {:?}",
                    diagnosis.cause
                );
            }
        }
    }

    /// A warning comes after what KubeVirt and CDI say (a DataVolume's phase): here the VM has
    /// no conditions and its DataVolume is not in the view yet, so the warning is the cause.
    #[test]
    fn a_provisioning_vm_is_explained_by_the_data_source_cdi_waits_for() {
        let mut builder = ViewBuilder::new();
        builder.mark_known(Kind::DataSource);
        builder.mark_known(Kind::DataVolume);
        let source = json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
            "metadata": {"name": "fedora", "namespace": "ns"},
            "spec": {"source": {"pvc": {"name": "fedora", "namespace": "ns"}}},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "NotFound"}]}});
        builder.add(Kind::DataSource, &source).unwrap();
        let view = builder.build();
        let mut object = vm(
            "Provisioning",
            bootable(json!({"volumes": [{"name": "root", "dataVolume": {"name": "root-dv"}}]})),
            json!([]),
        );
        object["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "root-dv"}, "spec": {
            "sourceRef": {"kind": "DataSource", "name": "fedora"},
            "storage": {"resources": {"requests": {"storage": "30Gi"}}}}}]);
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(
            diagnosis.cause.rule,
            Some(RuleId::DatasourceNotReady),
            "{:?}",
            diagnosis.findings
        );
    }

    #[test]
    fn a_lost_claim_explains_a_vm_that_is_unschedulable_or_whose_data_volume_failed() {
        let mut builder = ViewBuilder::new();
        builder.mark_known(Kind::PersistentVolumeClaim);
        builder.mark_known(Kind::DataVolume);
        let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "root-dv", "namespace": "ns"}, "status": {"phase": "Lost"}});
        builder.add(Kind::PersistentVolumeClaim, &claim).unwrap();
        let view = builder.build();
        let volumes = json!({"volumes": [{"name": "root", "dataVolume": {"name": "root-dv"}}]});
        for status in ["ErrorUnschedulable", "DataVolumeError"] {
            let object = vm(status, bootable(volumes.clone()), json!([]));
            let diagnosis = diagnose_object(&object, Some(&view));
            assert_eq!(
                diagnosis.cause.rule,
                Some(RuleId::PvcLost),
                "{status}: {:?}",
                diagnosis.findings
            );
        }
    }

    #[test]
    fn without_a_rule_the_conditions_say_why() {
        let object = vm(
            "ErrImagePull",
            bootable(json!({})),
            json!([
                {"type": "Ready", "status": "False", "reason": "PodNotReady", "message": "not running"},
                {"type": "Failure", "status": "True", "reason": "FailedCreate",
                 "message": "failed to pull image \"quay.io/x/y:1\": manifest unknown"}
            ]),
        );
        let diagnosis = diagnose_object(&object, None);
        assert_eq!(diagnosis.cause.rule, None);
        assert_eq!(diagnosis.cause.rule_label(), "none");
        assert!(
            diagnosis
                .cause
                .text
                .starts_with("Failure (FailedCreate): failed to pull image"),
            "{}",
            diagnosis.cause.text
        );
    }

    #[test]
    fn datavolume_phase_and_pvc_phase_are_evidence() {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::DataVolume,
                &json!({"metadata": {"name": "root-dv", "namespace": "ns"},
                    "status": {"phase": "ImportInProgress", "conditions": [
                        {"type": "Running", "status": "False", "message": "Import Failed: 404 Not Found"},
                        {"type": "Ready", "status": "True", "message": "ignored"}]}}),
            )
            .unwrap();
        builder
            .add(
                Kind::PersistentVolumeClaim,
                &json!({"metadata": {"name": "root-dv", "namespace": "ns"},
                    "status": {"phase": "Pending"}}),
            )
            .unwrap();
        let view = builder.build();
        let object = vm(
            "DataVolumeError",
            json!({"domain": {"devices": {}, "memory": {"guest": "1Gi"}},
                   "volumes": [{"name": "root", "dataVolume": {"name": "root-dv"}}]}),
            json!([]),
        );
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(
            diagnosis.evidence,
            vec![
                "DataVolume root-dv is ImportInProgress: Import Failed: 404 Not Found".to_string(),
                "PVC root-dv is Pending".to_string()
            ]
        );
        assert_eq!(diagnosis.cause.text, diagnosis.evidence[0]);
    }

    #[test]
    fn a_missing_secret_explains_a_starting_vm() {
        let mut builder = ViewBuilder::new();
        builder.mark_known(Kind::Secret);
        let view = builder.build();
        let object = vm(
            "Starting",
            bootable(json!({"volumes": [
                {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                {"name": "ci", "cloudInitNoCloud": {"secretRef": {"name": "gone"}}}
            ]})),
            json!([]),
        );
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(diagnosis.cause.rule, Some(RuleId::SecretNotFound));
    }

    #[test]
    fn a_deleted_vm_is_held_by_its_finalizers_before_any_rule() {
        let view = view_with_nodes(&[("worker-1", json!({"kubevirt.io/schedulable": "true"}))]);
        let mut object = vm(
            "Terminating",
            bootable(json!({"nodeSelector": {"gpu": "a100"}})),
            json!([]),
        );
        object["metadata"]["deletionTimestamp"] = json!("2026-11-25T10:00:00Z");
        object["metadata"]["finalizers"] = json!(["kubevirt.io/virtualMachineControllerFinalize"]);
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(diagnosis.cause.rule, None);
        assert!(
            diagnosis
                .cause
                .text
                .starts_with("deleted at 2026-11-25T10:00:00Z; held by finalizer kubevirt.io/virtualMachineControllerFinalize (virt-controller"),
            "{}",
            diagnosis.cause.text
        );
        assert!(
            diagnosis
                .cause
                .subject
                .as_deref()
                .is_some_and(|s| s.starts_with("held by finalizer")),
            "the subject has no time: {:?}",
            diagnosis.cause.subject
        );
        assert!(
            diagnosis.next_step.contains("virt-controller"),
            "{}",
            diagnosis.next_step
        );
        assert_eq!(
            diagnosis.findings[0].rule,
            RuleId::NodeSelectorUnsatisfiable,
            "the findings are still listed"
        );
        // Not deleted: the same finalizer holds nothing, and the rule explains it.
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("deletionTimestamp");
        assert_eq!(
            diagnose_object(&object, Some(&view)).cause.rule,
            Some(RuleId::NodeSelectorUnsatisfiable)
        );
    }

    /// A view whose KubeVirt CR is not Available and whose virt-controller has no ready
    /// replica; it knows Nodes (`worker-1`, schedulable).
    fn degraded_kubevirt() -> ViewBuilder {
        let mut builder = ViewBuilder::new();
        for (kind, object) in [
            (
                Kind::KubeVirt,
                json!({"metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                    "status": {"conditions": [
                        {"type": "Available", "status": "False", "reason": "DeploymentInProgress",
                         "message": "Deploying version v1.6.0 with registry quay.io/kubevirt"}]}}),
            ),
            (
                Kind::Deployment,
                json!({"metadata": {"name": "virt-controller", "namespace": "kubevirt"},
                    "spec": {"replicas": 2}, "status": {"replicas": 2}}),
            ),
            (
                Kind::Node,
                json!({"metadata": {"name": "worker-1", "labels": {"kubevirt.io/schedulable": "true"}},
                    "status": {"allocatable": {"cpu": "8", "memory": "32Gi"},
                               "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        ] {
            builder.add(kind, &object).unwrap();
        }
        builder
    }

    #[test]
    fn a_clean_vm_on_a_kubevirt_that_is_down_is_stuck_on_kubevirt() {
        let view = degraded_kubevirt().build();
        let object = vm("Starting", bootable(json!({})), json!([]));
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(diagnosis.cause.rule, None);
        assert_eq!(
            diagnosis.cause.text,
            "KubeVirt is not healthy: virt-controller has 0 of 2 replicas ready; the KubeVirt CR kubevirt/kubevirt is Available=False (DeploymentInProgress: Deploying version v1.6.0 with registry quay.io/kubevirt)"
        );
        assert_eq!(
            diagnosis.cause.subject.as_deref(),
            Some(diagnosis.cause.text.as_str())
        );
        assert!(
            diagnosis.next_step.contains("VirtControllerDown")
                && diagnosis.next_step.contains("kubectl -n kubevirt"),
            "{}",
            diagnosis.next_step
        );
        // Without the view's KubeVirt, nothing is found.
        assert_eq!(diagnose_object(&object, None).cause.text, NO_CAUSE);
    }

    #[test]
    fn a_vm_with_its_own_cause_keeps_it_and_kubevirt_is_still_shown() {
        let view = degraded_kubevirt().build();
        let object = vm(
            "ErrorUnschedulable",
            bootable(json!({"nodeSelector": {"gpu": "a100"}})),
            json!([]),
        );
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(
            diagnosis.cause.rule,
            Some(RuleId::NodeSelectorUnsatisfiable)
        );
        assert!(diagnosis.next_step.contains("describe pod"));
        let kubevirt = diagnosis.kubevirt.expect("KubeVirt's health is kept");
        assert!(
            kubevirt
                .subject()
                .is_some_and(|s| s.contains("virt-controller has 0 of 2")),
            "{kubevirt:?}"
        );
        // The VM's own conditions are its cause too, before KubeVirt.
        let object = vm(
            "Starting",
            bootable(json!({})),
            json!([{"type": "Failure", "status": "True", "reason": "FailedCreate",
                    "message": "pods \"virt-launcher-vm1-abcde\" is forbidden: exceeded quota"}]),
        );
        // KubeVirt's words name the rule that predicts them, and are quoted.
        let cause = diagnose_object(&object, Some(&view)).cause;
        assert_eq!(cause.rule, Some(RuleId::ResourceQuotaExceeded));
        assert!(
            cause
                .text
                .starts_with("[resource-quota-exceeded] KubeVirt: Failure (FailedCreate)"),
            "{cause:?}"
        );
    }

    #[test]
    fn a_claim_being_deleted_is_the_cause_of_a_vm_waiting_for_it() {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::PersistentVolumeClaim,
                &json!({"metadata": {"name": "db-data", "namespace": "ns",
                    "deletionTimestamp": "2026-11-26T02:00:00Z",
                    "finalizers": ["kubernetes.io/pvc-protection"]},
                    "status": {"phase": "Bound"}}),
            )
            .unwrap();
        let view = builder.build();
        let volumes = json!({"volumes": [
            {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}}]});
        let object = vm(
            "Provisioning",
            bootable(volumes.clone()),
            json!([{"type": "DataVolumesReady", "status": "False", "reason": "x",
                    "message": "not ready"}]),
        );
        let diagnosis = diagnose_object(&object, Some(&view));
        assert_eq!(diagnosis.cause.rule, None);
        assert_eq!(diagnosis.cause.text, "PVC ns/db-data is being deleted");
        assert!(
            diagnosis
                .next_step
                .starts_with("see what holds PVC db-data")
                && diagnosis.next_step.contains("does not come back"),
            "{}",
            diagnosis.next_step
        );
        assert!(
            diagnosis
                .evidence
                .contains(&"PVC ns/db-data is being deleted".to_string()),
            "{:?}",
            diagnosis.evidence
        );
        // A status that does not wait for claims keeps what its conditions say.
        let object = vm(
            "CrashLoopBackOff",
            bootable(volumes),
            json!([{"type": "Failure", "status": "True", "reason": "Crash", "message": "qemu died"}]),
        );
        assert!(
            diagnose_object(&object, Some(&view))
                .cause
                .text
                .starts_with("Failure (Crash)")
        );
    }

    #[test]
    fn a_vm_deleted_in_the_foreground_waits_for_its_datavolume_being_deleted() {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::DataVolume,
                &json!({"metadata": {"name": "root-dv", "namespace": "ns",
                    "deletionTimestamp": "2026-11-26T02:00:00Z"},
                    "status": {"phase": "Succeeded"}}),
            )
            .unwrap();
        let view = builder.build();
        let mut object = vm(
            "Terminating",
            json!({"domain": {"devices": {}, "memory": {"guest": "1Gi"}},
                   "volumes": [{"name": "root", "dataVolume": {"name": "root-dv"}}]}),
            json!([]),
        );
        object["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "root-dv"}}]);
        object["metadata"]["deletionTimestamp"] = json!("2026-11-26T02:00:00Z");
        object["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        let diagnosis = diagnose_object(&object, Some(&view));
        assert!(
            diagnosis
                .cause
                .text
                .ends_with("; DataVolume ns/root-dv is being deleted"),
            "{}",
            diagnosis.cause.text
        );
        assert!(
            diagnosis
                .next_step
                .starts_with("see what holds DataVolume root-dv"),
            "{}",
            diagnosis.next_step
        );
    }

    #[test]
    fn nothing_found_says_so_and_points_to_the_runbook() {
        let object = vm("CrashLoopBackOff", bootable(json!({})), json!([]));
        let diagnosis = diagnose_object(&object, None);
        assert_eq!(diagnosis.cause.rule, None);
        assert!(diagnosis.cause.text.starts_with("no cause found"));
        assert_eq!(
            diagnosis.cause.subject, None,
            "no cause, no subject to group by"
        );
        assert!(diagnosis.next_step.contains("--previous"));
    }

    #[test]
    fn a_vm_that_does_not_parse_says_where() {
        let object = json!({"metadata": {"name": "x", "namespace": "ns"},
            "spec": {"template": {"spec": {"domain": {"devices": {"disks": "oops"}}}}},
            "status": {"printableStatus": "Starting"}});
        let diagnosis = diagnose_object(&object, None);
        assert!(
            diagnosis
                .cause
                .text
                .contains("spec.template.spec.domain.devices.disks"),
            "{}",
            diagnosis.cause.text
        );
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human_duration(SignedDuration::from_secs(42)), "42s");
        assert_eq!(human_duration(SignedDuration::from_mins(14)), "14m");
        assert_eq!(human_duration(SignedDuration::from_mins(125)), "2h5m");
        assert_eq!(human_duration(SignedDuration::from_hours(3)), "3h");
        assert_eq!(human_duration(SignedDuration::from_hours(76)), "3d4h");
        assert_eq!(human_duration(SignedDuration::from_secs(-5)), "0s");
    }
}
