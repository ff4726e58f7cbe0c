//! KubeVirt itself is the judge: the same VMs go to the real KubeVirt v1.6.6 control plane
//! (../shared/kube-control-plane: virt-api, virt-controller, kube-scheduler,
//! kube-controller-manager) and to virt-preflight, and the two verdicts are compared.
//!
//! - **Admission** (`docs/differential/admission.md`): KubeVirt's examples, every rule fixture
//!   and a mutation generator of realistic mistakes go through `kubectl apply --dry-run=server`
//!   and through `check` offline. Every refusal must be an error of `check`; every VM KubeVirt
//!   admits must get no error, unless KubeVirt then fails it when it is created for real (the
//!   test creates it and reads the outcome).
//! - **Runtime** (`docs/differential/runtime.md`): for each cluster rule whose effect this
//!   control plane shows, a broken VM and its clean twin are created for real; the broken one
//!   must reach a KubeVirt error and `check --kubeconfig` must name the rule, the twin must get
//!   its launcher pod bound and no error.
//! - **Launcher** (`docs/differential/launcher.md`): the launcher pod's requests that
//!   virt-preflight computes equal the real pod's, to the byte.
//!
//! A difference that stays is a named exception in the table, with its reason; an exception
//! that no longer differs fails the test, so the list only shrinks. The tables are regenerated
//! on every run and compared with the committed files (`VIRT_PREFLIGHT_BLESS=1` rewrites them).
//!
//! Needs `VIRT_PREFLIGHT_APISERVER_DIR`, `VIRT_PREFLIGHT_CONTROL_PLANE_DIR` and
//! `VIRT_PREFLIGHT_KUBEVIRT_DIR`; skips, saying why, without them.

mod support;
use support::{apiserver, control_plane, judge, mutations, shared};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};
use virt_preflight::check::CheckOptions;

use control_plane::{ControlPlane, NodeSpec};
use judge::{Admission, Runtime, Verdict};

/// One comparison at a time: they share the Nodes (a VM one creates takes room another's
/// may need) and two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The control plane with this suite's Nodes, set up once per run.
fn plane() -> Option<&'static ControlPlane> {
    static READY: OnceLock<()> = OnceLock::new();
    let plane = ControlPlane::shared()?;
    READY.get_or_init(|| {
        plane.create_nodes(&nodes());
        // A default StorageClass, as a cluster with CDI has (no provisioner runs here).
        judge::create(
            plane,
            &[
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "judge-standard", "annotations": {
                    "storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "kubernetes.io/no-provisioner"}),
            ],
        );
        // A namespace of golden images, cloned from other namespaces.
        plane.namespace(IMAGES);
        let images: Vec<Value> = golden_image(IMAGES)
            .into_iter()
            .map(|mut object| {
                if object["kind"] != "PersistentVolume" {
                    object["metadata"]["namespace"] = json!(IMAGES);
                }
                object
            })
            .collect();
        judge::create(plane, &images);
        // One binding plugin, for the network-binding-not-found case.
        plane.configure_kubevirt(&json!({"network": {"binding": {
            "managedtap": {"domainAttachmentType": "managedTap"}}}}));
    });
    Some(plane)
}

/// Nodes for every case: two general ones (CPU manager, a CPU model, 2Mi hugepages), and one
/// per placement a runtime case needs: no CPU manager, a taint, no healthy KVM.
fn nodes() -> Vec<NodeSpec> {
    let general = |name: &str| {
        NodeSpec::new(name, "16", "32Gi")
            .label("pool", "general")
            .label("cpumanager", "true")
            .label("kubevirt.io/cpumanager", "true")
            .label("cpu-model.node.kubevirt.io/Haswell", "true")
            .resource("hugepages-2Mi", "4Gi", "4Gi")
    };
    // virt-handler labels a node without the CPU manager `false`.
    let without_cpu_manager = |node: NodeSpec| {
        node.label("cpumanager", "false")
            .label("kubevirt.io/cpumanager", "false")
    };
    vec![
        general("judge-general-1"),
        general("judge-general-2"),
        without_cpu_manager(NodeSpec::new("judge-plain", "4", "8Gi").label("pool", "plain")),
        without_cpu_manager(
            NodeSpec::new("judge-tainted", "16", "32Gi")
                .label("pool", "tainted")
                .taint("dedicated", "db", "NoSchedule"),
        ),
        without_cpu_manager(
            NodeSpec::new("judge-nokvm", "16", "32Gi")
                .label("pool", "nokvm")
                .resource("devices.kubevirt.io/kvm", "1k", "0"),
        ),
        // Two PCI devices' device plugins, of which the KubeVirt CR permits one
        // (host-device-not-permitted, device-unavailable).
        without_cpu_manager(
            NodeSpec::new("judge-devices", "16", "32Gi")
                .label("pool", "devices")
                .resource(PERMITTED_DEVICE, "2", "2")
                .resource(FORBIDDEN_DEVICE, "2", "2"),
        ),
    ]
}

/// A name the API server takes: lower case, `-` for anything else, at most 63 characters.
fn dns_label(text: &str) -> String {
    let mut name: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(63);
    name.trim_matches('-').to_string()
}

// ---------------------------------------------------------------------------------------------
// Admission

/// One manifest of the admission corpus.
struct Case {
    corpus: &'static str,
    case: String,
    vm: Value,
}

/// Differences kept on purpose, by case: each says why KubeVirt and virt-preflight differ.
const ADMISSION_EXCEPTIONS: &[(&str, &str)] = &[
    ("guest-memory-exceeds-limit/broken", KUBELET_OOM),
    ("quantities/guest-memory-above-limit", KUBELET_OOM),
    ("image-reference-invalid/broken", KUBELET_IMAGE),
    (
        "volume-sources/container-disk-image-uppercase",
        KUBELET_IMAGE,
    ),
];

/// Why an error stands where virt-api and the scheduler let the VM through.
const KUBELET_OOM: &str = "kubelet-only: the launcher's memory limit is below the guest's \
     memory; the kernel OOM-kills QEMU once the guest uses it (no kubelet runs here)";
const KUBELET_IMAGE: &str = "kubelet-only: the kubelet refuses the image reference \
     (InvalidImageName) and the VM never starts (no kubelet runs here)";

fn admission_corpus(kubevirt_examples: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let read = |path: &Path| {
        virt_preflight::manifest::read_path(path, virt_preflight::manifest::ReadOptions::default())
            .into_iter()
            .map(|parsed| parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .filter(|d| d.is_virtual_machine())
            .collect::<Vec<_>>()
    };
    for document in read(kubevirt_examples) {
        let file = document.source.file.to_string();
        let stem = Path::new(&file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        cases.push(Case {
            corpus: "example",
            case: stem,
            vm: document.value,
        });
    }
    let fixtures = apiserver::manifest_dir().join("tests/fixtures/rules");
    let mut rules: Vec<_> = std::fs::read_dir(&fixtures)
        .expect("tests/fixtures/rules")
        .flatten()
        .map(|e| e.path())
        .collect();
    rules.sort();
    for dir in rules {
        let rule = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for which in ["broken", "fixed"] {
            for document in read(&dir.join(format!("{which}.yaml"))) {
                cases.push(Case {
                    corpus: "fixture",
                    case: format!("{rule}/{which}"),
                    vm: document.value,
                });
            }
        }
    }
    for mutation in mutations::mutations() {
        let mut vm = mutations::base_vm(mutation.name);
        (mutation.apply)(&mut vm);
        cases.push(Case {
            corpus: "mutation",
            case: format!("{}/{}", mutation.family, mutation.name),
            vm,
        });
    }
    cases
}

#[test]
fn kubevirt_admission_and_check_agree() {
    let _serial = serial();
    let Some(examples) = shared::kubevirt_examples() else {
        return;
    };
    let Some(plane) = plane() else {
        return;
    };
    let namespace = "judge-admission";
    let run_namespace = "judge-admission-run";
    plane.namespace(namespace);
    plane.namespace(run_namespace);

    let mut cases = admission_corpus(&examples);
    for (i, case) in cases.iter_mut().enumerate() {
        let name = dns_label(&format!("a{i:03}-{}", case.case));
        case.vm["metadata"]["name"] = json!(name);
        case.vm["metadata"]["namespace"] = json!(namespace);
    }
    assert!(cases.iter().filter(|c| c.corpus == "example").count() >= 12);
    assert!(cases.iter().filter(|c| c.corpus == "mutation").count() >= 40);

    // KubeVirt's answer, four at a time (each kubectl call is a process and two round trips).
    let answers: Vec<Admission> = std::thread::scope(|scope| {
        let chunks: Vec<_> = cases
            .chunks(cases.len().div_ceil(4))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|case| judge::dry_run(plane, &case.vm))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks
            .into_iter()
            .flat_map(|handle| handle.join().expect("a dry-run thread"))
            .collect()
    });
    let options = CheckOptions::default();
    let verdicts: Vec<Verdict> = cases
        .iter()
        .map(|case| judge::check_offline(&case.case, &case.vm, &options))
        .collect();
    // What offline `check` cannot know (the release, the feature gates) it judges by
    // KubeVirt's defaults and warns. Against a snapshot of the cluster's KubeVirt CR alone
    // (`check --cluster-state kubevirt.yaml`) the same warnings must become errors.
    let kubevirt_cr = plane
        .kubectl(&[
            "-n", "kubevirt", "get", "kubevirt", "kubevirt", "-o", "json",
        ])
        .json();
    let with_cr = CheckOptions {
        cluster: Some(std::sync::Arc::new(judge::view_of(&[kubevirt_cr]))),
        ..CheckOptions::default()
    };
    let verdicts_with_cr: Vec<Verdict> = cases
        .iter()
        .zip(&answers)
        .zip(&verdicts)
        .map(|((case, answer), verdict)| match answer {
            Admission::Refused(_) if !verdict.refuses() => {
                judge::check_offline(&case.case, &case.vm, &with_cr)
            }
            _ => Verdict::default(),
        })
        .collect();

    // VMs KubeVirt admits and `check` calls errors: created for real, to see whether KubeVirt
    // fails them when they start.
    let mut escalated = Vec::new();
    for ((case, answer), verdict) in cases.iter().zip(&answers).zip(&verdicts) {
        if *answer == Admission::Admitted && verdict.refuses() {
            let mut vm = case.vm.clone();
            vm["metadata"]["namespace"] = json!(run_namespace);
            vm["spec"]
                .as_object_mut()
                .map(|spec| spec.remove("running"));
            vm["spec"]["runStrategy"] = json!("Always");
            escalated.push(vm);
        }
    }
    let mut runtime = BTreeMap::new();
    if !escalated.is_empty() {
        // One at a time: KubeVirt refusing one VM of a list must not hide the others.
        for vm in &escalated {
            let result = plane.kubectl_with_input(&["create", "-f", "-"], &vm.to_string());
            if !result.success {
                let name = vm["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                runtime.insert(name, Runtime::Failed(judge::reason(&result.stderr)));
            }
        }
        let names: Vec<String> = escalated
            .iter()
            .filter_map(|vm| vm["metadata"]["name"].as_str().map(str::to_string))
            .filter(|name| !runtime.contains_key(name))
            .collect();
        runtime.extend(judge::outcomes(plane, run_namespace, &names));
    }

    let exceptions: BTreeMap<&str, &str> = ADMISSION_EXCEPTIONS.iter().copied().collect();
    let mut table = String::from(
        "# Admission: KubeVirt v1.6.6 and `check` (offline) on the same manifests\n\n\
         Generated by `tests/differential.rs` (`kubevirt_admission_and_check_agree`); do not \
         edit. KubeVirt's answer is `kubectl apply --dry-run=server` on the real virt-api and \
         API server (strict field validation); a VM it admits but `check` calls an error is \
         created for real and KubeVirt's outcome is shown.\n\n\
         | corpus | case | KubeVirt | check | verdict |\n|---|---|---|---|---|\n",
    );
    let mut disagreements = Vec::new();
    let mut agreed = 0;
    for (((case, answer), verdict), with_cr) in cases
        .iter()
        .zip(&answers)
        .zip(&verdicts)
        .zip(&verdicts_with_cr)
    {
        let name = case.vm["metadata"]["name"].as_str().unwrap_or_default();
        let verdict_text = if verdict.refuses() || !with_cr.refuses() {
            verdict.to_string()
        } else {
            format!("{verdict}; with the cluster's KubeVirt CR: {with_cr}")
        };
        let (kubevirt, agree) = match answer {
            Admission::Refused(_) => (answer.to_string(), verdict.refuses() || with_cr.refuses()),
            Admission::Admitted if !verdict.refuses() => ("admitted".to_string(), true),
            Admission::Admitted => match runtime.get(name) {
                Some(outcome @ Runtime::Failed(_)) => {
                    (format!("admitted; at start: {outcome}"), true)
                }
                Some(outcome) => (format!("admitted; at start: {outcome}"), false),
                None => ("admitted".to_string(), false),
            },
        };
        let outcome_text = match (agree, exceptions.get(case.case.as_str())) {
            (true, None) => {
                agreed += 1;
                "agree".to_string()
            }
            (false, Some(reason)) => format!("exception: {reason}"),
            (false, None) => {
                disagreements.push(format!(
                    "{}: KubeVirt {kubevirt}; check {verdict_text}",
                    case.case
                ));
                "**DISAGREE**".to_string()
            }
            (true, Some(_)) => {
                disagreements.push(format!(
                    "{}: listed as an exception but agrees now: remove it",
                    case.case
                ));
                "agree (stale exception)".to_string()
            }
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            case.corpus,
            case.case,
            kubevirt.replace('|', "\\|"),
            verdict_text,
            outcome_text
        ));
    }
    table.push_str(&format!(
        "\n{agreed} of {} agree; {} named exceptions.\n",
        cases.len(),
        cases.len() - agreed - disagreements.len()
    ));
    let table_result =
        std::panic::catch_unwind(|| judge::check_table("docs/differential/admission.md", &table));
    assert!(
        disagreements.is_empty(),
        "{} disagreements between KubeVirt and check:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    if let Err(panic) = table_result {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime

/// A valid VM for the runtime cases: 1Gi, one vCPU, a containerDisk, the pod network.
fn runtime_vm(name: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": "Always",
            "template": {"spec": {
                "domain": {
                    "devices": {
                        "disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                        "interfaces": [{"name": "default", "masquerade": {}}]
                    },
                    "resources": {"requests": {"memory": "1Gi"}}
                },
                "networks": [{"name": "default", "pod": {}}],
                "volumes": [{"name": "root", "containerDisk": {
                    "image": "quay.io/containerdisks/fedora:41"}}]
            }}
        }
    })
}

/// The template's spec.
fn spec(vm: &mut Value) -> &mut Value {
    &mut vm["spec"]["template"]["spec"]
}

/// One side of a runtime case: the objects the VM's namespace holds, and the VM.
struct Side {
    objects: Vec<Value>,
    vm: Value,
}

/// A cluster rule, a VM that breaks it and its clean twin.
struct RuntimeCase {
    /// The case's name (the rule's, unless a rule has several cases).
    name: &'static str,
    rule: &'static str,
    what: &'static str,
    broken: Side,
    fixed: Side,
}

/// Rules whose broken VM KubeVirt runs here: what fails it is a component this control plane
/// does not have.
const RUNTIME_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "secret-not-found",
        "kubelet-only: the launcher pod is bound; the kubelet then fails the Secret volume \
         (FailedMount, the pod stays ContainerCreating) and the VM stays Starting",
    ),
    (
        "configmap-not-found",
        "kubelet-only: the launcher pod is bound; the kubelet then fails the ConfigMap volume \
         (FailedMount, the pod stays ContainerCreating) and the VM stays Starting",
    ),
];

fn case(
    rule: &'static str,
    what: &'static str,
    broken: impl FnOnce(&mut Value),
    fixed: impl FnOnce(&mut Value),
) -> RuntimeCase {
    let mut broken_vm = runtime_vm("broken");
    broken(&mut broken_vm);
    let mut fixed_vm = runtime_vm("fixed");
    fixed(&mut fixed_vm);
    RuntimeCase {
        name: rule,
        rule,
        what,
        broken: Side {
            objects: vec![],
            vm: broken_vm,
        },
        fixed: Side {
            objects: vec![],
            vm: fixed_vm,
        },
    }
}

impl RuntimeCase {
    fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    fn with_broken(mut self, objects: Vec<Value>) -> Self {
        self.broken.objects.extend(objects);
        self
    }

    fn with_fixed(mut self, objects: Vec<Value>) -> Self {
        self.fixed.objects.extend(objects);
        self
    }
}

fn select(vm: &mut Value, pool: &str) {
    spec(vm)["nodeSelector"] = json!({"pool": pool});
}

/// A PersistentVolume and a claim it binds to (the controller-manager binds them; there is
/// no provisioner).
fn bound_claim(name: &str, namespace: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("{namespace}-{name}")},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual", "hostPath": {"path": "/tmp/judge"},
                "claimRef": {"namespace": namespace, "name": name}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                "volumeName": format!("{namespace}-{name}"),
                "resources": {"requests": {"storage": "10Gi"}}}}),
    ]
}

/// A claim that was bound to a PersistentVolume since deleted: the controller-manager's
/// PersistentVolume controller marks it Lost.
fn lost_claim(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
            "volumeName": format!("gone-{name}"),
            "resources": {"requests": {"storage": "10Gi"}}}})
}

/// The VM sized by the namespaced instancetype `name` alone.
fn sized_by(vm: &mut Value, name: &str) {
    spec(vm)["domain"]["resources"] = json!({});
    vm["spec"]["instancetype"] = json!({"kind": "VirtualMachineInstancetype", "name": name});
}

/// A namespaced instancetype of one vCPU and `memory`.
fn sized_instancetype(name: &str, memory: &str) -> Value {
    json!({"apiVersion": "instancetype.kubevirt.io/v1beta1",
        "kind": "VirtualMachineInstancetype", "metadata": {"name": name},
        "spec": {"cpu": {"guest": 1}, "memory": {"guest": memory}}})
}

/// Halted, with a root disk cloned from the DataSource `source` by a dataVolumeTemplate: KubeVirt
/// creates the DataVolume whatever the run strategy.
fn halted_with_template(vm: &mut Value, source: &str) {
    vm["spec"]["runStrategy"] = json!("Halted");
    vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "root"},
        "spec": {"sourceRef": {"kind": "DataSource", "name": source},
            "storage": {"resources": {"requests": {"storage": "10Gi"}}}}}]);
    spec(vm)["volumes"] = json!([{"name": "root", "dataVolume": {"name": "root"}}]);
}

/// The device plugin resource the KubeVirt CR permits as a PCI host device, and one it does not.
const PERMITTED_DEVICE: &str = "example.com/nic-a";
const FORBIDDEN_DEVICE: &str = "example.com/nic-b";

/// The KubeVirt configuration of the host-device cases: the HostDevices gate and one
/// permitted device. Only while they run: the admission comparison judges by the defaults.
fn host_device_configuration(on: bool) -> Value {
    if on {
        json!({"developerConfiguration": {"featureGates": ["HostDevices"]},
            "permittedHostDevices": {"pciHostDevices": [
                {"pciVendorSelector": "8086:1572", "resourceName": PERMITTED_DEVICE}]}})
    } else {
        json!({"developerConfiguration": {"featureGates": []}, "permittedHostDevices": null})
    }
}

/// Sets the host-device configuration and waits until virt-api judges by it (a VM with a host
/// device is admitted with the gate on, refused without).
fn configure_host_devices(plane: &ControlPlane, on: bool) {
    plane.configure_kubevirt(&host_device_configuration(on));
    let mut probe = runtime_vm("host-device-probe");
    probe["metadata"]["namespace"] = json!("default");
    spec(&mut probe)["domain"]["devices"]["hostDevices"] =
        json!([{"name": "nic", "deviceName": PERMITTED_DEVICE}]);
    apiserver::eventually(
        "virt-api judges host devices by the new configuration",
        std::time::Duration::from_secs(60),
        || ((judge::dry_run(plane, &probe) == Admission::Admitted) == on).then_some(()),
    );
}

fn host_device(vm: &mut Value, device: &str) {
    spec(vm)["domain"]["devices"]["hostDevices"] = json!([{"name": "nic", "deviceName": device}]);
}

/// The namespace of the golden images other namespaces clone (clone-not-authorized).
const IMAGES: &str = "judge-images";

/// What lets `namespace`'s default ServiceAccount clone from [`IMAGES`]: CDI's
/// `datavolumes/source` there.
fn clone_permission(namespace: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": format!("clone-from-{namespace}"), "namespace": IMAGES},
            "rules": [{"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes/source"],
                "verbs": ["create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("clone-from-{namespace}"), "namespace": IMAGES},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                "name": format!("clone-from-{namespace}")},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]}),
    ]
}

/// A DataSource `fedora` on a bound golden-image claim of the same namespace (a clone within
/// a namespace needs no cross-namespace authorization).
fn golden_image(namespace: &str) -> Vec<Value> {
    let mut objects = bound_claim("fedora-golden", namespace);
    objects.push(
        json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": "fedora"},
        "spec": {"source": {"pvc": {"name": "fedora-golden", "namespace": namespace}}}}),
    );
    objects
}

fn runtime_cases() -> Vec<RuntimeCase> {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "userdata"},
        "stringData": {"userdata": "#cloud-config\n"}});
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-config"}, "data": {"a": "b"}});
    let add_volume = |vm: &mut Value, name: &str, source: Value| {
        let mut volume = json!({"name": name});
        if let (Some(volume), Some(source)) = (volume.as_object_mut(), source.as_object()) {
            volume.extend(source.clone());
        }
        if let Some(volumes) = spec(vm)["volumes"].as_array_mut() {
            volumes.push(volume);
        }
        if let Some(disks) = spec(vm)["domain"]["devices"]["disks"].as_array_mut() {
            disks.push(json!({"name": name, "disk": {"bus": "virtio"}}));
        }
    };
    // A `data` volume on the claim `data`.
    let claim_data = |vm: &mut Value| {
        add_volume(
            vm,
            "data",
            json!({"persistentVolumeClaim": {"claimName": "data"}}),
        )
    };
    let instancetype = json!({"apiVersion": "instancetype.kubevirt.io/v1beta1",
        "kind": "VirtualMachineInstancetype", "metadata": {"name": "small"},
        "spec": {"cpu": {"guest": 1}, "memory": {"guest": "1Gi"}}});
    let nad = json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "vlan10"},
        "spec": {"config": "{\"cniVersion\":\"0.3.1\",\"type\":\"bridge\",\"bridge\":\"br10\"}"}});
    let multus = |vm: &mut Value, network: &str| {
        if let Some(interfaces) = spec(vm)["domain"]["devices"]["interfaces"].as_array_mut() {
            interfaces.push(json!({"name": "vlan", "bridge": {}}));
        }
        if let Some(networks) = spec(vm)["networks"].as_array_mut() {
            networks.push(json!({"name": "vlan", "multus": {"networkName": network}}));
        }
    };
    let quota = |memory: &str| {
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "vms"},
            "spec": {"hard": {"requests.memory": memory}}})
    };
    let limit_range = |max: &str| {
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
            "spec": {"limits": [{"type": "Container", "max": {"memory": max}}]}})
    };
    vec![
        case(
            "node-selector-unsatisfiable",
            "nodeSelector pool=nowhere, which no Node has",
            |vm| select(vm, "nowhere"),
            |vm| select(vm, "general"),
        ),
        case(
            "taints-not-tolerated",
            "the only matching Node is tainted dedicated=db:NoSchedule",
            |vm| select(vm, "tainted"),
            |vm| {
                select(vm, "tainted");
                spec(vm)["tolerations"] = json!([{"key": "dedicated", "operator": "Equal",
                    "value": "db", "effect": "NoSchedule"}]);
            },
        ),
        case(
            "resources-exceed-capacity",
            "64Gi of memory; the Nodes have 32Gi",
            |vm| spec(vm)["domain"]["resources"]["requests"]["memory"] = json!("64Gi"),
            |vm| spec(vm)["domain"]["resources"]["requests"]["memory"] = json!("8Gi"),
        ),
        case(
            "kvm-unavailable",
            "the only matching Node's KVM device plugin has no healthy device",
            |vm| select(vm, "nokvm"),
            |vm| select(vm, "general"),
        ),
        case(
            "dedicated-cpu-unavailable",
            "dedicated CPUs on a pool without the CPU manager",
            |vm| {
                select(vm, "plain");
                spec(vm)["domain"]["cpu"] = json!({"cores": 2, "dedicatedCpuPlacement": true});
            },
            |vm| {
                select(vm, "general");
                spec(vm)["domain"]["cpu"] = json!({"cores": 2, "dedicatedCpuPlacement": true});
            },
        ),
        case(
            "hugepages-unavailable",
            "1Gi hugepages; the Nodes offer only 2Mi pages",
            |vm| spec(vm)["domain"]["memory"] = json!({"hugepages": {"pageSize": "1Gi"}}),
            |vm| spec(vm)["domain"]["memory"] = json!({"hugepages": {"pageSize": "2Mi"}}),
        ),
        case(
            "cpu-model-unavailable",
            "CPU model Skylake-Server; the Nodes offer Haswell",
            |vm| spec(vm)["domain"]["cpu"] = json!({"model": "Skylake-Server"}),
            |vm| spec(vm)["domain"]["cpu"] = json!({"model": "Haswell"}),
        ),
        case(
            "pvc-not-found",
            "a persistentVolumeClaim volume naming no claim",
            claim_data,
            claim_data,
        )
        .with_fixed(bound_claim("data", "judge-rt-pvc-not-found-f")),
        case(
            "pvc-lost",
            "a claim whose PersistentVolume is gone (the controller-manager marks it Lost)",
            claim_data,
            claim_data,
        )
        .with_broken(vec![lost_claim("data")])
        .with_fixed(bound_claim("data", "judge-rt-pvc-lost-f")),
        case(
            "datavolume-not-found",
            "a dataVolume volume naming neither a DataVolume nor a claim",
            |vm| add_volume(vm, "data", json!({"dataVolume": {"name": "data"}})),
            |vm| add_volume(vm, "data", json!({"dataVolume": {"name": "data"}})),
        )
        .with_fixed(bound_claim("data", "judge-rt-datavolume-not-found-f")),
        case(
            "secret-not-found",
            "cloud-init's secretRef names no Secret",
            |vm| {
                add_volume(
                    vm,
                    "ci",
                    json!({"cloudInitNoCloud": {"secretRef": {"name": "userdata"}}}),
                )
            },
            |vm| {
                add_volume(
                    vm,
                    "ci",
                    json!({"cloudInitNoCloud": {"secretRef": {"name": "userdata"}}}),
                )
            },
        )
        .with_fixed(vec![secret]),
        case(
            "configmap-not-found",
            "a configMap volume naming no ConfigMap",
            |vm| add_volume(vm, "cfg", json!({"configMap": {"name": "app-config"}})),
            |vm| add_volume(vm, "cfg", json!({"configMap": {"name": "app-config"}})),
        )
        .with_fixed(vec![configmap]),
        case(
            "instancetype-not-found",
            "spec.instancetype names no VirtualMachineInstancetype",
            |vm| sized_by(vm, "small"),
            |vm| sized_by(vm, "small"),
        )
        .with_fixed(vec![instancetype]),
        case(
            "priority-class-not-found",
            "priorityClassName names no PriorityClass",
            |vm| spec(vm)["priorityClassName"] = json!("judge-no-such-priority"),
            |vm| spec(vm)["priorityClassName"] = json!("system-cluster-critical"),
        ),
        case(
            "service-account-not-found",
            "a serviceAccount volume naming no ServiceAccount",
            |vm| {
                add_volume(
                    vm,
                    "sa",
                    json!({"serviceAccount": {"serviceAccountName": "builder"}}),
                )
            },
            |vm| {
                add_volume(
                    vm,
                    "sa",
                    json!({"serviceAccount": {"serviceAccountName": "builder"}}),
                )
            },
        )
        .with_fixed(vec![json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "builder"}})]),
        case(
            "network-attachment-not-found",
            "a multus network naming no NetworkAttachmentDefinition",
            |vm| multus(vm, "vlan10"),
            |vm| multus(vm, "vlan10"),
        )
        .with_fixed(vec![nad]),
        case(
            "resource-quota-exceeded",
            "a 1Gi VM in a namespace whose quota allows 1Gi of memory requests",
            |_| {},
            |_| {},
        )
        .with_broken(vec![quota("1Gi")])
        .with_fixed(vec![quota("4Gi")]),
        case(
            "limit-range-exceeded",
            "a 1Gi VM where a LimitRange allows containers 1Gi at most",
            |_| {},
            |_| {},
        )
        .with_broken(vec![limit_range("1Gi")])
        .with_fixed(vec![limit_range("4Gi")]),
        case(
            "network-binding-not-found",
            "an interface names a binding plugin the KubeVirt CR does not register",
            |vm| {
                spec(vm)["domain"]["devices"]["interfaces"] =
                    json!([{"name": "default", "binding": {"name": "managedtap-typo"}}]);
            },
            |vm| {
                spec(vm)["domain"]["devices"]["interfaces"] =
                    json!([{"name": "default", "binding": {"name": "managedtap"}}]);
            },
        ),
        case(
            "resources-exceed-capacity",
            "an instancetype of 64Gi; the Nodes have 32Gi",
            |vm| sized_by(vm, "huge"),
            |vm| sized_by(vm, "huge"),
        )
        .named("resources-exceed-capacity-instancetype")
        .with_broken(vec![sized_instancetype("huge", "64Gi")])
        .with_fixed(vec![sized_instancetype("huge", "4Gi")]),
        case(
            "datasource-not-found",
            "a halted VM whose dataVolumeTemplate clones a DataSource that does not exist",
            |vm| halted_with_template(vm, "fedora-missing"),
            |vm| halted_with_template(vm, "fedora"),
        )
        .with_fixed(golden_image("judge-rt-datasource-not-found-f")),
        case(
            "clone-not-authorized",
            "a halted VM cloning the golden image of another namespace, where its ServiceAccount may not clone",
            |vm| {
                halted_with_template(vm, "fedora");
                vm["spec"]["dataVolumeTemplates"][0]["spec"]["sourceRef"]["namespace"] =
                    json!(IMAGES);
            },
            |vm| {
                halted_with_template(vm, "fedora");
                vm["spec"]["dataVolumeTemplates"][0]["spec"]["sourceRef"]["namespace"] =
                    json!(IMAGES);
            },
        )
        .with_fixed(clone_permission("judge-rt-clone-not-authorized-f")),
        case(
            "host-device-not-permitted",
            "a host device the node offers but the KubeVirt CR does not permit",
            |vm| {
                select(vm, "devices");
                host_device(vm, FORBIDDEN_DEVICE);
            },
            |vm| {
                select(vm, "devices");
                host_device(vm, PERMITTED_DEVICE);
            },
        ),
        case(
            "device-unavailable",
            "a permitted host device on a pool whose nodes have none",
            |vm| {
                select(vm, "general");
                host_device(vm, PERMITTED_DEVICE);
            },
            |vm| {
                select(vm, "devices");
                host_device(vm, PERMITTED_DEVICE);
            },
        ),
        case(
            "memory-missing",
            "no memory anywhere (virt-api refuses the VMI virt-controller creates)",
            |vm| spec(vm)["domain"]["resources"] = json!({}),
            |_| {},
        ),
    ]
}

/// Waits until every object of `resource` in `namespace` is as `done` wants it.
fn settled(
    plane: &ControlPlane,
    namespace: &str,
    resource: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    apiserver::eventually(
        &format!("the {resource} of {namespace} {what}"),
        std::time::Duration::from_secs(60),
        || {
            let listed = plane
                .kubectl(&["-n", namespace, "get", resource, "-o", "json"])
                .json();
            listed["items"].as_array()?.iter().all(&done).then_some(())
        },
    );
}

#[test]
fn kubevirt_runtime_and_check_agree() {
    let _serial = serial();
    let Some(plane) = plane() else {
        return;
    };
    configure_host_devices(plane, true);
    let cases = runtime_cases();
    let namespace_of = |name: &str, side: &str| format!("judge-rt-{name}-{side}");
    let mut vms = Vec::new();
    for case in &cases {
        for (side, data) in [("b", &case.broken), ("f", &case.fixed)] {
            let namespace = namespace_of(case.name, side);
            plane.namespace(&namespace);
            let objects: Vec<Value> = data
                .objects
                .iter()
                .map(|object| {
                    let mut object = object.clone();
                    // Into the side's namespace, unless the object names its own (or is a
                    // PersistentVolume, which has none).
                    if object["kind"] != "PersistentVolume"
                        && object["metadata"]["namespace"].is_null()
                    {
                        object["metadata"]["namespace"] = json!(namespace);
                    }
                    object
                })
                .collect();
            if !objects.is_empty() {
                judge::create(plane, &objects);
            }
            let mut vm = data.vm.clone();
            vm["metadata"]["name"] = json!(case.name);
            vm["metadata"]["namespace"] = json!(namespace);
            vms.push(vm);
        }
    }
    // The controller-manager settles what the rules read: quotas get their status, claims on
    // pre-created volumes are bound. The table shows the cluster once it has, not a race.
    for case in &cases {
        for side in ["b", "f"] {
            let namespace = namespace_of(case.name, side);
            settled(
                plane,
                &namespace,
                "resourcequotas",
                "have a status",
                |quota| quota["status"]["hard"].is_object(),
            );
            settled(
                plane,
                &namespace,
                "persistentvolumeclaims",
                "are bound (or Lost, their volume gone)",
                |claim| matches!(claim["status"]["phase"].as_str(), Some("Bound" | "Lost")),
            );
        }
    }

    // The preflight a user runs before applying: `check --kubeconfig` on the live cluster.
    let verdicts: BTreeMap<String, Verdict> = judge::check_live(plane, &vms)
        .into_iter()
        .map(|((namespace, _), verdict)| (namespace, verdict))
        .collect();
    for vm in &vms {
        judge::create(plane, std::slice::from_ref(vm));
    }
    let mut outcomes = BTreeMap::new();
    for case in &cases {
        for side in ["b", "f"] {
            let namespace = namespace_of(case.name, side);
            let mut seen = judge::outcomes(plane, &namespace, &[case.name.to_string()]);
            if let Some(outcome) = seen.remove(case.name) {
                outcomes.insert(namespace, outcome);
            }
        }
    }

    // Once KubeVirt has spoken, `diagnose` must name the same rule as the cause.
    let diagnosed: BTreeMap<String, String> = cases
        .iter()
        .map(|case| {
            let namespace = namespace_of(case.name, "b");
            let cause = judge::diagnosed_cause(plane, &namespace, case.name);
            (namespace, cause)
        })
        .collect();
    configure_host_devices(plane, false);

    let exceptions: BTreeMap<&str, &str> = RUNTIME_EXCEPTIONS.iter().copied().collect();
    let mut table = String::from(
        "# Runtime: what KubeVirt v1.6.6 does with a VM created for real, and what \
         `check --kubeconfig` said before\n\n\
         Generated by `tests/differential.rs` (`kubevirt_runtime_and_check_agree`); do not \
         edit. Each rule's broken VM must reach a KubeVirt error and get an error of that rule; \
         its clean twin must get its launcher pod bound and no error. No kubelet, virt-handler \
         or CDI controller runs: what only they show is a named exception.\n\n\
         `diagnose` (broken) is the rule `virt-preflight diagnose NS/NAME --kubeconfig` names as \
         the broken VM's cause once KubeVirt has given its outcome.\n\n\
         | rule | broken VM | KubeVirt (broken) | check (broken) | diagnose (broken) | KubeVirt (twin) | check (twin) | verdict |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut disagreements = Vec::new();
    for case in &cases {
        let broken_ns = namespace_of(case.name, "b");
        let fixed_ns = namespace_of(case.name, "f");
        let missing = Runtime::Undecided("no outcome".into());
        let broken_outcome = outcomes.get(&broken_ns).unwrap_or(&missing);
        let fixed_outcome = outcomes.get(&fixed_ns).unwrap_or(&missing);
        let none = Verdict::default();
        let broken_verdict = verdicts.get(&broken_ns).unwrap_or(&none);
        let fixed_verdict = verdicts.get(&fixed_ns).unwrap_or(&none);
        let unknown = String::from("(not run)");
        let diagnosis = diagnosed.get(&broken_ns).unwrap_or(&unknown);
        let broken_agrees = matches!(broken_outcome, Runtime::Failed(_))
            && broken_verdict.has_error(case.rule)
            && diagnosis == case.rule;
        // A halted twin has no pod: KubeVirt leaving it without an error is its clean outcome.
        let fixed_runs = match case.fixed.vm["spec"]["runStrategy"].as_str() {
            Some("Halted") => matches!(fixed_outcome, Runtime::Stopped | Runtime::Provisioning),
            _ => *fixed_outcome == Runtime::Bound,
        };
        let fixed_agrees = fixed_runs && !fixed_verdict.refuses();
        let verdict = match (broken_agrees && fixed_agrees, exceptions.get(case.name)) {
            (true, None) => "agree".to_string(),
            (false, Some(reason))
                if fixed_agrees
                    && *broken_outcome == Runtime::Bound
                    && broken_verdict.has_error(case.rule) =>
            {
                format!("exception: {reason}")
            }
            (true, Some(_)) => {
                disagreements.push(format!("{}: agrees now: remove its exception", case.name));
                "agree (stale exception)".to_string()
            }
            (false, _) => {
                disagreements.push(format!(
                    "{}: broken: KubeVirt {broken_outcome}, check {broken_verdict}, \
                     diagnose {diagnosis}; twin: KubeVirt {fixed_outcome}, check {fixed_verdict}",
                    case.name
                ));
                "**DISAGREE**".to_string()
            }
        };
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |\n",
            case.name,
            case.what,
            broken_outcome,
            broken_verdict,
            diagnosis,
            fixed_outcome,
            fixed_verdict,
            verdict
        ));
    }
    let table_result =
        std::panic::catch_unwind(|| judge::check_table("docs/differential/runtime.md", &table));
    assert!(
        disagreements.is_empty(),
        "{} disagreements between KubeVirt and check:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    if let Err(panic) = table_result {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Launcher

/// Differences between the launcher pod virt-preflight computes and the real one, kept on
/// purpose, by case.
const LAUNCHER_EXCEPTIONS: &[(&str, &str)] = &[];

/// A VM for the launcher matrix: a containerDisk and what `edit` adds.
fn launcher_case(name: &'static str, edit: impl FnOnce(&mut Value)) -> (&'static str, Value) {
    let mut vm = runtime_vm(name);
    spec(&mut vm)["domain"]["resources"] = json!({});
    edit(&mut vm);
    (name, vm)
}

fn launcher_cases() -> Vec<(&'static str, Value)> {
    let memory = |vm: &mut Value, field: &str, value: &str| {
        let pointer = ["requests", "limits"]
            .into_iter()
            .find(|kind| *kind == field)
            .map(|kind| &mut spec(vm)["domain"]["resources"][kind]["memory"]);
        match pointer {
            Some(slot) => *slot = json!(value),
            None => spec(vm)["domain"]["memory"]["guest"] = json!(value),
        }
    };
    vec![
        launcher_case("guest-only", |vm| memory(vm, "guest", "1Gi")),
        launcher_case("guest-only-8gi", |vm| memory(vm, "guest", "8Gi")),
        launcher_case("request-only", |vm| memory(vm, "requests", "1Gi")),
        launcher_case("request-odd", |vm| memory(vm, "requests", "1500Mi")),
        launcher_case("limit-only", |vm| memory(vm, "limits", "2Gi")),
        launcher_case("request-and-limit", |vm| {
            memory(vm, "requests", "1Gi");
            memory(vm, "limits", "2Gi");
        }),
        launcher_case("guest-above-request", |vm| {
            memory(vm, "requests", "1Gi");
            memory(vm, "guest", "2Gi");
        }),
        launcher_case("cores-4", |vm| {
            memory(vm, "guest", "2Gi");
            spec(vm)["domain"]["cpu"] = json!({"cores": 4});
        }),
        launcher_case("topology-2x2x2", |vm| {
            memory(vm, "guest", "2Gi");
            spec(vm)["domain"]["cpu"] = json!({"sockets": 2, "cores": 2, "threads": 2});
        }),
        launcher_case("cpu-limit", |vm| {
            memory(vm, "requests", "1Gi");
            spec(vm)["domain"]["resources"]["limits"] = json!({"cpu": "2"});
        }),
        launcher_case("cpu-request", |vm| {
            memory(vm, "requests", "1Gi");
            spec(vm)["domain"]["resources"]["requests"]["cpu"] = json!("1500m");
        }),
        launcher_case("dedicated-cpus", |vm| {
            memory(vm, "guest", "2Gi");
            spec(vm)["domain"]["cpu"] = json!({"cores": 2, "dedicatedCpuPlacement": true});
        }),
        launcher_case("hugepages-2mi", |vm| {
            memory(vm, "guest", "1Gi");
            spec(vm)["domain"]["memory"]["hugepages"] = json!({"pageSize": "2Mi"});
        }),
        launcher_case("no-graphics", |vm| {
            memory(vm, "guest", "1Gi");
            spec(vm)["domain"]["devices"]["autoattachGraphicsDevice"] = json!(false);
        }),
        launcher_case("overcommit-guest-overhead", |vm| {
            memory(vm, "requests", "1Gi");
            spec(vm)["domain"]["resources"]["overcommitGuestOverhead"] = json!(true);
        }),
        launcher_case("two-container-disks", |vm| {
            memory(vm, "guest", "1Gi");
            if let Some(disks) = spec(vm)["domain"]["devices"]["disks"].as_array_mut() {
                disks.push(json!({"name": "tools", "disk": {"bus": "virtio"}}));
            }
            if let Some(volumes) = spec(vm)["volumes"].as_array_mut() {
                volumes.push(json!({"name": "tools", "containerDisk": {
                    "image": "quay.io/containerdisks/centos-stream:9"}}));
            }
        }),
        launcher_case("io-threads-auto", |vm| {
            memory(vm, "guest", "1Gi");
            spec(vm)["domain"]["ioThreadsPolicy"] = json!("auto");
            spec(vm)["domain"]["devices"]["disks"][0]["dedicatedIOThread"] = json!(true);
        }),
        launcher_case("instancetype-4gi", |vm| sized_by(vm, "medium")),
    ]
}

/// The whole pod's request of `resource` as the scheduler counts it (Kubernetes'
/// `PodRequests`): the containers and the native sidecars (init containers that restart
/// always) add up; a plain init container counts with the sidecars started before it, and the
/// largest of those wins if it is more.
fn pod_request(pod: &Value, resource: &str) -> u128 {
    let amount = |container: &Value| {
        container["resources"]["requests"][resource]
            .as_str()
            .and_then(|q| virt_preflight::model::ParsedQuantity::parse(q).ok())
            .and_then(|q| q.ceil_scaled(if resource == "cpu" { -3 } else { 0 }))
            .unwrap_or(0)
    };
    let mut total: u128 = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(amount)
        .sum();
    let mut sidecars = 0;
    let mut init = 0;
    for container in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if container["restartPolicy"] == "Always" {
            total += amount(container);
            sidecars += amount(container);
            init = init.max(sidecars);
        } else {
            init = init.max(amount(container) + sidecars);
        }
    }
    total.max(init)
}

/// The instancetypes of the launcher matrix: one plain, one that overcommits its memory.
fn launcher_instancetypes(namespace: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "instancetype.kubevirt.io/v1beta1",
            "kind": "VirtualMachineInstancetype",
            "metadata": {"name": "medium", "namespace": namespace},
            "spec": {"cpu": {"guest": 2}, "memory": {"guest": "4Gi"}}}),
        json!({"apiVersion": "instancetype.kubevirt.io/v1beta1",
            "kind": "VirtualMachineInstancetype",
            "metadata": {"name": "overcommitted", "namespace": namespace},
            "spec": {"cpu": {"guest": 2}, "memory": {"guest": "4Gi", "overcommitPercent": 25}}}),
    ]
}

/// The KubeVirt configuration of the matrix's second pass: memory overcommitted and more
/// vCPUs per requested CPU than KubeVirt's defaults.
const TUNED: (u64, u64) = (150, 5);

/// The VMs of the second pass, under the tuned configuration. Not hugepages: with
/// `memoryOvercommit` other than 100, v1.6.6 renders a hugepages request that is no multiple
/// of the page size, and the API server refuses the launcher pod.
fn tuned_cases() -> Vec<(&'static str, Value)> {
    launcher_cases()
        .into_iter()
        .filter(|(name, _)| ["guest-only", "request-only", "cores-4", "cpu-request"].contains(name))
        .collect()
}

#[test]
fn launcher_requests_equal_the_real_launcher_pods() {
    let _serial = serial();
    let Some(plane) = plane() else {
        return;
    };
    let exceptions: BTreeMap<&str, &str> = LAUNCHER_EXCEPTIONS.iter().copied().collect();
    let mut table = String::from(
        "# Launcher: the virt-launcher pod's requests, KubeVirt v1.6.6's and virt-preflight's\n\n\
         Generated by `tests/differential.rs` (`launcher_requests_equal_the_real_launcher_pods`); \
         do not edit. KubeVirt's figures are the real launcher pod's (compute container, and the \
         whole pod as the scheduler adds it up); virt-preflight's are `launcher::request` with \
         the control plane's KubeVirt CR. Memory in bytes, CPU in millicores. The `tuned/` cases \
         run with `memoryOvercommit: 150` and `cpuAllocationRatio: 5` in the KubeVirt CR.\n\n\
         | case | KubeVirt compute cpu / memory | ours | KubeVirt pod cpu / memory | ours | verdict |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut disagreements = Vec::new();
    let mut cases = launcher_cases();
    cases.push(launcher_case("instancetype-overcommit-25", |vm| {
        sized_by(vm, "overcommitted")
    }));
    measure_launchers(
        plane,
        "judge-launcher",
        "",
        &cases,
        &exceptions,
        &mut table,
        &mut disagreements,
    );

    // The same under another configuration: virt-controller reads the CR live; once a probe's
    // launcher pod shows the new ratio, it has.
    let (overcommit, ratio) = TUNED;
    plane.configure_kubevirt(&json!({"developerConfiguration": {
        "memoryOvercommit": overcommit, "cpuAllocationRatio": ratio}}));
    let probe_namespace = "judge-launcher-probe";
    plane.namespace(probe_namespace);
    let mut attempt = 0;
    apiserver::eventually(
        "virt-controller renders launcher pods with the tuned configuration",
        std::time::Duration::from_secs(90),
        || {
            attempt += 1;
            let name = format!("probe-{attempt}");
            let mut probe = runtime_vm(&name);
            probe["metadata"]["namespace"] = json!(probe_namespace);
            judge::create(plane, &[probe]);
            judge::outcomes(plane, probe_namespace, std::slice::from_ref(&name));
            let pods = plane
                .kubectl(&["-n", probe_namespace, "get", "pods", "-o", "json"])
                .json();
            let cpu = pods["items"].as_array()?.iter().find_map(|pod| {
                (pod["metadata"]["labels"]["vm.kubevirt.io/name"] == name.as_str())
                    .then(|| pod["spec"]["containers"][0]["resources"]["requests"]["cpu"].clone())
            })?;
            (cpu == json!(format!("{}m", 1000 / ratio))).then_some(())
        },
    );
    let tuned = measure_launchers(
        plane,
        "judge-launcher-tuned",
        "tuned/",
        &tuned_cases(),
        &exceptions,
        &mut table,
        &mut disagreements,
    );
    // Back to KubeVirt's defaults for whatever runs next.
    plane.configure_kubevirt(&json!({"developerConfiguration": {
        "memoryOvercommit": null, "cpuAllocationRatio": null}}));
    assert!(tuned > 0, "the tuned pass measured nothing");

    let table_result =
        std::panic::catch_unwind(|| judge::check_table("docs/differential/launcher.md", &table));
    assert!(
        disagreements.is_empty(),
        "{} differences between the real launcher pods and ours:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    if let Err(panic) = table_result {
        std::panic::resume_unwind(panic);
    }
}

/// Creates `cases` in `namespace`, reads their launcher pods, computes ours with the KubeVirt
/// CR as it is now, and adds a row per case; how many were measured.
fn measure_launchers(
    plane: &ControlPlane,
    namespace: &str,
    prefix: &str,
    cases: &[(&'static str, Value)],
    exceptions: &BTreeMap<&str, &str>,
    table: &mut String,
    disagreements: &mut Vec<String>,
) -> usize {
    use virt_preflight::cluster::kubevirt::KubeVirt;
    use virt_preflight::launcher::{self, InstancetypeSpec, LauncherInput, NamespaceFacts};
    use virt_preflight::model::{Labels, VirtualMachine};

    plane.namespace(namespace);
    let instancetypes = launcher_instancetypes(namespace);
    judge::create(plane, &instancetypes);
    let vms: Vec<Value> = cases
        .iter()
        .map(|(name, vm)| {
            let mut vm = vm.clone();
            vm["metadata"]["name"] = json!(name);
            vm["metadata"]["namespace"] = json!(namespace);
            vm
        })
        .collect();
    judge::create(plane, &vms);
    let names: Vec<String> = cases.iter().map(|(name, _)| name.to_string()).collect();
    let outcomes = judge::outcomes(plane, namespace, &names);
    let pods = plane
        .kubectl(&["-n", namespace, "get", "pods", "-o", "json"])
        .json();
    let kubevirt = plane
        .kubectl(&[
            "-n", "kubevirt", "get", "kubevirt", "kubevirt", "-o", "json",
        ])
        .json();
    let kubevirt = KubeVirt::from_value(&kubevirt).expect("the control plane's KubeVirt CR");
    let specs: BTreeMap<String, InstancetypeSpec> = instancetypes
        .iter()
        .map(|it| {
            let name = it["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let spec = InstancetypeSpec::from_object(it).expect("the matrix's instancetype");
            (name, spec)
        })
        .collect();
    let labels = Labels::new();
    let mut measured = 0;
    for ((name, _), vm_value) in cases.iter().zip(&vms) {
        let shown = format!("{prefix}{name}");
        let pod = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|pod| pod["metadata"]["labels"]["vm.kubevirt.io/name"] == *name);
        let Some(pod) = pod else {
            disagreements.push(format!(
                "{shown}: no launcher pod ({})",
                outcomes
                    .get(*name)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ));
            continue;
        };
        measured += 1;
        let compute = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "compute")
            .cloned()
            .unwrap_or_default();
        let compute_pod = json!({"spec": {"containers": [compute]}});
        let real = (
            pod_request(&compute_pod, "cpu"),
            pod_request(&compute_pod, "memory"),
        );
        let real_pod = (pod_request(pod, "cpu"), pod_request(pod, "memory"));
        let vm = VirtualMachine::from_value(vm_value).expect("a matrix VM");
        let instancetype = vm_value["spec"]["instancetype"]["name"]
            .as_str()
            .and_then(|name| specs.get(name));
        let input = LauncherInput {
            vm: &vm,
            kubevirt: Some(&kubevirt),
            instancetype,
            namespace: NamespaceFacts {
                quota_limits_cpu: Some(false),
                quota_limits_memory: Some(false),
                labels: Some(&labels),
            },
        };
        let exact = |bound: &launcher::Bound, exponent: i32| {
            bound
                .exact()
                .and_then(|q| q.ceil_scaled(exponent))
                .map_or_else(|| format!("{bound:?}"), |v| v.to_string())
        };
        let (ours_text, ours_pod_text, agree) = match launcher::request(&input) {
            Some(request) => {
                let (cpu, memory) = (
                    exact(&request.cpu.request, -3),
                    exact(&request.memory.request, 0),
                );
                let (pod_cpu, pod_memory) =
                    (exact(&request.pod.cpu, -3), exact(&request.pod.memory, 0));
                let agree = cpu == real.0.to_string()
                    && memory == real.1.to_string()
                    && pod_cpu == real_pod.0.to_string()
                    && pod_memory == real_pod.1.to_string();
                (
                    format!("{cpu} / {memory}"),
                    format!("{pod_cpu} / {pod_memory}"),
                    agree,
                )
            }
            None => ("none".to_string(), "-".to_string(), false),
        };
        let verdict = match (agree, exceptions.get(shown.as_str())) {
            (true, None) => "agree".to_string(),
            (false, Some(reason)) => format!("exception: {reason}"),
            (true, Some(_)) => {
                disagreements.push(format!("{shown}: agrees now: remove its exception"));
                "agree (stale exception)".to_string()
            }
            (false, None) => {
                disagreements.push(format!(
                    "{shown}: KubeVirt compute {} / {}, pod {} / {}; ours {ours_text}, pod {ours_pod_text}",
                    real.0, real.1, real_pod.0, real_pod.1
                ));
                "**DISAGREE**".to_string()
            }
        };
        table.push_str(&format!(
            "| {shown} | {} / {} | {ours_text} | {} / {} | {ours_pod_text} | {verdict} |\n",
            real.0, real.1, real_pod.0, real_pod.1
        ));
    }
    measured
}

/// `schemas/kubevirt.io_virtualmachines-v1.6.6.json` is the `openAPIV3Schema` of version `v1` of
/// the VirtualMachine CRD the control plane installs (KubeVirt v1.6.6's own), with every
/// `description` removed and nothing else changed: what `check` validates against is what the
/// API server validates against.
#[test]
fn the_shipped_schema_is_kubevirts_crd_schema() {
    let Some(dir) = std::env::var_os(control_plane::CONTROL_PLANE_DIR_VAR) else {
        eprintln!(
            "skipped: {} is not set (it names ../shared/kube-control-plane)",
            control_plane::CONTROL_PLANE_DIR_VAR
        );
        return;
    };
    let crds = Path::new(&dir).join("kubevirt-crds.yaml");
    let options = virt_preflight::manifest::ReadOptions {
        max_input_bytes: 64 << 20,
    };
    let crd = virt_preflight::manifest::read_file(&crds, options)
        .into_iter()
        .filter_map(Result::ok)
        .find(|d| d.value["metadata"]["name"] == "virtualmachines.kubevirt.io")
        .unwrap_or_else(|| panic!("{} has no VirtualMachine CRD", crds.display()));
    let version = crd.value["spec"]["versions"]
        .as_array()
        .and_then(|versions| versions.iter().find(|v| v["name"] == "v1"))
        .expect("the CRD serves v1");
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    strip_descriptions(&mut schema);
    let shipped: Value = serde_json::from_str(include_str!(
        "../schemas/kubevirt.io_virtualmachines-v1.6.6.json"
    ))
    .expect("the shipped schema is JSON");
    assert!(
        shipped == schema,
        "the shipped schema differs from the CRD's"
    );
}

/// Removes every `description` keyword (a property named `description` is kept: it sits under
/// `properties`, as a key of that map, not as a keyword of a schema).
fn strip_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("description");
            for (key, value) in map.iter_mut() {
                if key == "properties" {
                    if let Value::Object(properties) = value {
                        properties.values_mut().for_each(strip_descriptions);
                    }
                } else {
                    strip_descriptions(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}
