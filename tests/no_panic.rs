//! No input makes the check pipeline panic: arbitrary JSON placed anywhere in a VirtualMachine,
//! well-typed VMs with extreme values, odd cluster snapshots, and arbitrary bytes as manifest
//! text all go through reading, the model, every rule (with and without a cluster view), every
//! report format and `--fix`, and come out as findings or input errors. The webhook reads each
//! VM from JSON text, as the API server sends it, and must read it as `check` does.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use virt_preflight::admission;
use virt_preflight::check::{CheckOptions, CheckReport, Outcome, check_all};
use virt_preflight::cluster::{ClusterView, snapshot};
use virt_preflight::fix;
use virt_preflight::manifest::{self, Document, Source};
use virt_preflight::model::VirtualMachine;
use virt_preflight::policy::Policy;
use virt_preflight::report::{self, Format};
use virt_preflight::rules::finding::Severity;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A VM that KubeVirt runs, with every part the rules read present once.
fn base_vm() -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "fuzz", "namespace": "default", "labels": {"app": "x"}},
        "spec": {
            "runStrategy": "Always",
            "instancetype": {"name": "u1.medium", "kind": "VirtualMachineClusterInstancetype"},
            "preference": {"name": "fedora"},
            "dataVolumeTemplates": [{
                "metadata": {"name": "root-dv"},
                "spec": {
                    "storage": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "standard",
                        "resources": {"requests": {"storage": "10Gi"}}
                    },
                    "source": {"http": {"url": "https://example.com/disk.img", "secretRef": "user-data"}}
                }
            }],
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": "fuzz"}},
                "spec": {
                    "domain": {
                        "cpu": {"cores": 2, "sockets": 1, "threads": 1, "model": "Haswell"},
                        "memory": {"guest": "1Gi"},
                        "resources": {
                            "requests": {"memory": "1Gi", "cpu": "1"},
                            "limits": {"memory": "2Gi", "cpu": "2"}
                        },
                        "devices": {
                            "disks": [
                                {"name": "rootdisk", "bootOrder": 1, "disk": {"bus": "virtio"}},
                                {"name": "data", "disk": {"bus": "virtio"}},
                                {"name": "cloudinit", "cdrom": {"bus": "sata"}}
                            ],
                            "interfaces": [
                                {"name": "default", "masquerade": {}},
                                {"name": "storage", "bridge": {}}
                            ],
                            "gpus": [{"name": "gpu1", "deviceName": "nvidia.com/GA102GL_A10"}],
                            "hostDevices": [{"name": "hd1", "deviceName": "example.com/dev"}],
                            "filesystems": [{"name": "shared", "virtiofs": {}}]
                        },
                        "firmware": {"bootloader": {"efi": {}}}
                    },
                    "networks": [
                        {"name": "default", "pod": {}},
                        {"name": "storage", "multus": {"networkName": "storage-net"}}
                    ],
                    "volumes": [
                        {"name": "rootdisk", "dataVolume": {"name": "root-dv"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}},
                        {"name": "cloudinit", "cloudInitNoCloud": {"secretRef": {"name": "user-data"}}},
                        {"name": "shared", "configMap": {"name": "sysprep-config"}}
                    ],
                    "nodeSelector": {"zone": "a"},
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "zone", "operator": "In", "values": ["a", "b"]}
                        ]}]
                    }}},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "accessCredentials": [{"sshPublicKey": {"source": {"secret": {"secretName": "user-data"}},
                        "propagationMethod": {"qemuGuestAgent": {"users": ["fedora"]}}}}],
                    "priorityClassName": "vm-high"
                }
            }
        }
    })
}

/// A cluster in which every kind is known, so that every cluster rule runs.
const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: worker-1
    labels: {kubevirt.io/schedulable: "true", zone: a, cpu-model.node.kubevirt.io/Haswell: "true"}
  status:
    allocatable: {cpu: "16", memory: 64Gi, nvidia.com/GA102GL_A10: "2", example.com/dev: "1", devices.kubevirt.io/kvm: 1k}
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata:
    name: worker-2
    labels: {kubevirt.io/schedulable: "true", zone: b, gpu: a10}
  spec:
    taints: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]
  status:
    allocatable: {cpu: "32", memory: 128Gi, nvidia.com/GA102GL_A10: "1", example.com/dev: "2", devices.kubevirt.io/kvm: 1k}
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: cordoned, labels: {kubevirt.io/schedulable: "true"}}
  spec: {unschedulable: true}
  status: {allocatable: {cpu: 1e3, memory: "1e2147483647"}}
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata:
    name: standard
    annotations: {storageclass.kubernetes.io/is-default-class: "true"}
- apiVersion: cdi.kubevirt.io/v1beta1
  kind: StorageProfile
  metadata: {name: standard}
  status:
    claimPropertySets: [{accessModes: [ReadWriteOnce], volumeMode: Filesystem}]
- {apiVersion: scheduling.k8s.io/v1, kind: PriorityClass, metadata: {name: vm-high}}
- {apiVersion: v1, kind: Namespace, metadata: {name: default}}
- {apiVersion: v1, kind: Secret, metadata: {name: user-data, namespace: default}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: sysprep-config, namespace: default}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: vm-sa, namespace: default}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: data-pvc, namespace: default}
  spec: {storageClassName: standard}
  status: {phase: Bound}
- {apiVersion: cdi.kubevirt.io/v1beta1, kind: DataVolume, metadata: {name: existing-dv, namespace: default}}
- {apiVersion: k8s.cni.cncf.io/v1, kind: NetworkAttachmentDefinition, metadata: {name: storage-net, namespace: default}}
- {apiVersion: instancetype.kubevirt.io/v1beta1, kind: VirtualMachineInstancetype, metadata: {name: small, namespace: default}}
- {apiVersion: instancetype.kubevirt.io/v1beta1, kind: VirtualMachineClusterInstancetype, metadata: {name: u1.medium}}
- {apiVersion: instancetype.kubevirt.io/v1beta1, kind: VirtualMachinePreference, metadata: {name: mine, namespace: default}}
- {apiVersion: instancetype.kubevirt.io/v1beta1, kind: VirtualMachineClusterPreference, metadata: {name: fedora}}
- apiVersion: kubevirt.io/v1
  kind: KubeVirt
  metadata: {name: kubevirt, namespace: kubevirt}
  spec:
    configuration:
      developerConfiguration:
        featureGates: [HostDevices, EnableVirtioFsConfigVolumes]
      permittedHostDevices:
        pciHostDevices:
        - {pciVendorSelector: "10DE:2236", resourceName: nvidia.com/GA102GL_A10}
        - {pciVendorSelector: "1AF4:1041", resourceName: example.com/dev}
  status:
    observedKubeVirtVersion: v1.6.2
    conditions: [{type: Available, status: "True"}]
- apiVersion: v1
  kind: ResourceQuota
  metadata: {name: compute, namespace: default}
  spec:
    hard: {requests.cpu: "64", requests.memory: 256Gi, limits.memory: 512Gi, pods: "100"}
  status:
    hard: {requests.cpu: "64", requests.memory: 256Gi, limits.memory: 512Gi, pods: "100"}
    used: {requests.cpu: "4", requests.memory: 8Gi, limits.memory: 16Gi, pods: "3"}
- apiVersion: v1
  kind: LimitRange
  metadata: {name: limits, namespace: default}
  spec:
    limits: [{type: Container, max: {cpu: "16", memory: 64Gi}}]
- apiVersion: cdi.kubevirt.io/v1beta1
  kind: DataSource
  metadata: {name: fedora, namespace: default}
  status: {conditions: [{type: Ready, status: "True"}]}
- apiVersion: kubevirt.io/v1
  kind: VirtualMachine
  metadata: {name: other, namespace: default}
  spec:
    runStrategy: Always
    template: {spec: {volumes: [{name: data, persistentVolumeClaim: {claimName: other-pvc}}]}}
"#;

fn parse_cluster(text: &str) -> snapshot::Snapshot {
    snapshot::from_documents(manifest::parse_text(&Arc::from("cluster.yaml"), text))
}

fn cluster() -> Arc<ClusterView> {
    static VIEW: std::sync::OnceLock<Arc<ClusterView>> = std::sync::OnceLock::new();
    VIEW.get_or_init(|| {
        let snapshot = parse_cluster(CLUSTER);
        assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
        Arc::new(snapshot.view)
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// The pipeline under test

/// Everything `check` does with one document: model, rules (spec only and against the
/// cluster), all four report formats, and `--fix` with a re-check of its output.
fn run_pipeline(document: &Value, view: Option<Arc<ClusterView>>) {
    let parsed = vec![Ok(Document {
        source: Source {
            file: Arc::from("fuzz.yaml"),
            document: 1,
            item: None,
            line: 1,
        },
        value: document.clone(),
    })];
    for cluster in [None, view] {
        let options = CheckOptions {
            default_namespace: "default".to_string(),
            cluster,
            ..CheckOptions::default()
        };
        let report = check_all(parsed.clone(), &options);
        assert_eq!(report.documents.len(), 1);
        render_all(&report);
        fix_and_recheck(&report, &options);
        through_the_webhook(document, options.cluster.as_deref());
    }
}

/// The webhook's path: the model read with the review (one pass) and from JSON text must be the
/// one `check` reads from the tree (or fail at the same field), and a whole UPDATE review must
/// come back as a response, or be refused naming the field of the object's metadata that
/// Kubernetes' `ObjectMeta` does not take (the API server never sends such an object).
fn through_the_webhook(document: &Value, cluster: Option<&ClusterView>) {
    // Both read the same text (a tree re-read from text may round a float differently).
    let text = document.to_string();
    let tree: Value = serde_json::from_str(&text).unwrap();
    let from_tree = VirtualMachine::from_value(&tree);
    let from_text = VirtualMachine::from_json(&text);
    match (&from_tree, &from_text) {
        (Ok(tree), Ok(text)) => assert_eq!(format!("{tree:?}"), format!("{text:?}")),
        (Err(tree), Err(text)) => assert_eq!(tree.path, text.path),
        _ => panic!("tree: {from_tree:?}\ntext: {from_text:?}\n{document:#}"),
    }
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "operation": "UPDATE", "namespace": "default",
            "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
            "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
            "userInfo": {"username": "fuzz"},
            "object": document, "oldObject": document}
    });
    let request = match admission::parse_review(&serde_json::to_vec(&body).unwrap()) {
        Ok(request) => request,
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.starts_with("not an AdmissionReview: request.object.metadata"),
                "{message}\n{document:#}"
            );
            return;
        }
    };
    // Read with the review in one pass, or kept whole: the same model either way.
    let with_review = request.object.as_ref().unwrap().vm();
    match (&with_review, &from_text) {
        (Ok(review), Ok(text)) => assert_eq!(format!("{review:?}"), format!("{text:?}")),
        (Err(review), Err(text)) => assert_eq!(review.path, text.path),
        _ => panic!("review: {with_review:?}\ntext: {from_text:?}\n{document:#}"),
    }
    let verdict = admission::review(&request, cluster, &Policy::default());
    // The same document before and after: nothing new, so nothing denied.
    assert!(verdict.allowed, "{verdict:?}");
    serde_json::to_vec(&verdict.response(&request).into_review()).unwrap();
}

fn render_all(report: &CheckReport) {
    for format in [Format::Text, Format::Json, Format::Junit, Format::Sarif] {
        for fail_on in [Severity::Error, Severity::Warning] {
            let mut out = Vec::new();
            report::render(report, format, fail_on, &mut out).expect("rendering to memory");
            assert!(!out.is_empty());
        }
    }
    // Every input error is one line naming its file.
    for error in report.input_errors() {
        let line = error.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with(&*error.file), "{line}");
    }
}

/// `--fix`: apply the patches, print YAML, read it back and check it again. The YAML must
/// read back as the same documents: `--fix` must not change what it does not fix.
fn fix_and_recheck(report: &CheckReport, options: &CheckOptions) {
    let (documents, count) = fix::fixed_documents(report);
    let fixes: usize = report
        .findings()
        .filter(|(_, finding)| finding.fix.is_some())
        .count();
    assert_eq!(count.applied + count.failed, fixes);
    if documents.is_empty() {
        return; // nothing printed, nothing to read back
    }
    let yaml = match fix::to_yaml(&documents) {
        Ok(yaml) => yaml,
        Err(_) => return, // a clear error is fine; a panic is not
    };
    let reread = manifest::parse_text(&Arc::from("<fixed>"), &yaml);
    let values: Vec<Value> = reread
        .iter()
        .map(|parsed| match parsed {
            Ok(document) => document.value.clone(),
            Err(err) => panic!("--fix printed YAML that does not read back: {err}\n{yaml}"),
        })
        .collect();
    assert_eq!(values.len(), documents.len(), "{yaml}");
    for (read, written) in values.iter().zip(&documents) {
        assert!(
            same_json(read, written),
            "--fix output reads back differently:\nwritten {written}\nread    {read}\nyaml:\n{yaml}"
        );
    }
    let recheck = check_all(reread, options);
    render_all(&recheck);
    // After every fix applied, no finding that carries a fix is left... unless two fixes of
    // one document collided (counted as failed).
    if count.failed == 0 {
        for document in &recheck.documents {
            if let Outcome::Vm(vm) = &document.outcome {
                for finding in &vm.evaluation.findings {
                    assert!(
                        finding.fix.is_none(),
                        "fixable finding left after --fix: {finding:?}"
                    );
                }
            }
        }
    }
}

/// JSON equality where numbers compare by value (YAML may print `1.0` as `1`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Sets `value` at a JSON pointer, creating (or replacing with) objects and arrays on the way.
fn set_at(document: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<&str> = pointer.split('/').skip(1).collect();
    let mut current = document;
    for (depth, token) in tokens.iter().enumerate() {
        let last = depth + 1 == tokens.len();
        let index = token.parse::<usize>().ok();
        current = match (index, current) {
            (Some(index), Value::Array(items)) => {
                if index >= items.len() {
                    items.resize(index + 1, Value::Null);
                }
                &mut items[index]
            }
            (_, Value::Object(map)) => map.entry(token.to_string()).or_insert(Value::Null),
            (Some(index), slot) => {
                *slot = Value::Array(vec![Value::Null; index + 1]);
                &mut slot[index]
            }
            (None, slot) => {
                *slot = Value::Object(Map::new());
                slot.as_object_mut()
                    .expect("just made")
                    .entry(token.to_string())
                    .or_insert(Value::Null)
            }
        };
        if last {
            *current = value;
            return;
        }
    }
    *current = value;
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Field names of the VM schema and of the objects it names, so that arbitrary objects often
/// look like the real thing.
const KEYS: &[&str] = &[
    "name",
    "namespace",
    "kind",
    "apiVersion",
    "metadata",
    "spec",
    "template",
    "domain",
    "devices",
    "disks",
    "disk",
    "cdrom",
    "lun",
    "bus",
    "bootOrder",
    "interfaces",
    "networks",
    "pod",
    "multus",
    "networkName",
    "default",
    "volumes",
    "containerDisk",
    "image",
    "dataVolume",
    "persistentVolumeClaim",
    "claimName",
    "cloudInitNoCloud",
    "secretRef",
    "secret",
    "secretName",
    "configMap",
    "emptyDisk",
    "capacity",
    "hostDisk",
    "path",
    "ephemeral",
    "serviceAccount",
    "serviceAccountName",
    "memory",
    "guest",
    "maxGuest",
    "hugepages",
    "pageSize",
    "cpu",
    "cores",
    "sockets",
    "threads",
    "model",
    "dedicatedCpuPlacement",
    "resources",
    "requests",
    "limits",
    "storage",
    "accessModes",
    "storageClassName",
    "source",
    "sourceRef",
    "http",
    "registry",
    "blank",
    "url",
    "nodeSelector",
    "affinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
    "matchExpressions",
    "matchFields",
    "key",
    "operator",
    "values",
    "tolerations",
    "effect",
    "value",
    "tolerationSeconds",
    "gpus",
    "hostDevices",
    "deviceName",
    "runStrategy",
    "running",
    "instancetype",
    "preference",
    "dataVolumeTemplates",
    "annotations",
    "labels",
    "firmware",
    "kernelBoot",
    "accessCredentials",
    "sshPublicKey",
    "priorityClassName",
    "status",
    "items",
];

/// Strings that quantities, names and enums are made of, and that break naive parsers.
const STRINGS: &[&str] = &[
    "",
    " ",
    "2Gi",
    "500m",
    "1e400",
    "-1",
    "0",
    "1",
    "+1",
    ".5",
    "5.",
    "1.2.3",
    "1e",
    "1e+",
    "1e2147483647",
    "1e-2147483648",
    "10e2147483647",
    "1e99999999999",
    "99999999999999999999999999999999999999999999999Ei",
    "0.000000000000000000000000000000000000000001",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "1Ei",
    "8Ei",
    "1Ki",
    "1K",
    "2GB",
    "NaN",
    "inf",
    "-",
    "0x10",
    "Always",
    "Halted",
    "RerunOnFailure",
    "Manual",
    "Once",
    "WaitAsReceiver",
    "always",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "Gt",
    "Lt",
    "Equal",
    "NoSchedule",
    "NoExecute",
    "PreferNoSchedule",
    "rootdisk",
    "data",
    "cloudinit",
    "default",
    "storage",
    "root-dv",
    "user-data",
    "data-pvc",
    "standard",
    "zone",
    "a",
    "nvidia.com/gpu",
    "nvidia.com/GA102GL_A10",
    "quay.io/containerdisks/fedora:41",
    "quay.io/x/y:latest",
    "docker://quay.io/x",
    "UPPER/case:tag",
    "a@sha256:0000",
    "VirtualMachineInstancetype",
    "VirtualMachineClusterInstancetype",
    "run-strategy-conflict, no-such-rule,,",
    "yes",
    "no",
    "on",
    "off",
    "true",
    "null",
    "~",
    "- a",
    "a: b",
    "#x",
    "&a",
    "*a",
    "!!binary x",
    "---",
    "...",
    "\t",
    "a\nb",
    "é",
    "😀",
    "\u{0}",
    "\u{feff}",
    "'",
    "\"",
    "[",
    "{",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(STRINGS).prop_map(str::to_string),
        2 => "[+-]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][+-]?[0-9]{1,12}|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?",
        1 => any::<String>(),
        1 => "[a-z0-9./-]{0,300}",
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => arb_string(),
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(1.5),
            json!(-0.0),
            json!(1e300),
            json!(-1e300),
            json!(5e-324),
        ]),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => arb_number(),
        4 => arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Where arbitrary JSON goes in the base VM.
const POSITIONS: &[&str] = &[
    "/metadata",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/annotations",
    "/metadata/annotations/virt-preflight.io~1skip",
    "/metadata/labels",
    "/spec",
    "/spec/runStrategy",
    "/spec/running",
    "/spec/instancetype",
    "/spec/instancetype/kind",
    "/spec/preference",
    "/spec/dataVolumeTemplates",
    "/spec/dataVolumeTemplates/0",
    "/spec/dataVolumeTemplates/0/metadata/name",
    "/spec/dataVolumeTemplates/0/spec/storage",
    "/spec/dataVolumeTemplates/0/spec/storage/resources/requests/storage",
    "/spec/dataVolumeTemplates/0/spec/pvc",
    "/spec/dataVolumeTemplates/0/spec/source",
    "/spec/template",
    "/spec/template/metadata",
    "/spec/template/spec",
    "/spec/template/spec/domain",
    "/spec/template/spec/domain/cpu",
    "/spec/template/spec/domain/cpu/cores",
    "/spec/template/spec/domain/cpu/model",
    "/spec/template/spec/domain/cpu/dedicatedCpuPlacement",
    "/spec/template/spec/domain/memory",
    "/spec/template/spec/domain/memory/guest",
    "/spec/template/spec/domain/memory/hugepages",
    "/spec/template/spec/domain/resources",
    "/spec/template/spec/domain/resources/requests",
    "/spec/template/spec/domain/resources/requests/memory",
    "/spec/template/spec/domain/resources/requests/cpu",
    "/spec/template/spec/domain/resources/limits/memory",
    "/spec/template/spec/domain/resources/limits/cpu",
    "/spec/template/spec/domain/firmware",
    "/spec/template/spec/domain/devices",
    "/spec/template/spec/domain/devices/disks",
    "/spec/template/spec/domain/devices/disks/0",
    "/spec/template/spec/domain/devices/disks/0/name",
    "/spec/template/spec/domain/devices/disks/0/bootOrder",
    "/spec/template/spec/domain/devices/disks/1/bootOrder",
    "/spec/template/spec/domain/devices/disks/3",
    "/spec/template/spec/domain/devices/interfaces",
    "/spec/template/spec/domain/devices/interfaces/0",
    "/spec/template/spec/domain/devices/interfaces/0/bootOrder",
    "/spec/template/spec/domain/devices/gpus/0",
    "/spec/template/spec/domain/devices/hostDevices",
    "/spec/template/spec/domain/devices/filesystems/0",
    "/spec/template/spec/networks",
    "/spec/template/spec/networks/1",
    "/spec/template/spec/volumes",
    "/spec/template/spec/volumes/0",
    "/spec/template/spec/volumes/0/dataVolume",
    "/spec/template/spec/volumes/1",
    "/spec/template/spec/volumes/2/cloudInitNoCloud",
    "/spec/template/spec/volumes/4",
    "/spec/template/spec/nodeSelector",
    "/spec/template/spec/nodeSelector/zone",
    "/spec/template/spec/affinity",
    "/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0",
    "/spec/template/spec/tolerations",
    "/spec/template/spec/tolerations/0",
    "/spec/template/spec/accessCredentials",
    "/spec/template/spec/priorityClassName",
    "/status",
];

fn arb_edits() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    prop::collection::vec((prop::sample::select(POSITIONS), arb_json()), 1..4)
}

/// A quantity as a manifest writes it: mostly strings, sometimes JSON numbers.
fn arb_quantity() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => arb_string().prop_map(Value::String),
        1 => arb_number(),
    ]
}

fn arb_name() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::sample::select(&[
            "rootdisk", "data", "cloudinit", "default", "storage", "shared", "", "x",
        ][..])
        .prop_map(Value::from),
        1 => arb_string().prop_map(Value::String),
    ]
}

fn arb_boot_order() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        4 => (-2i64..5).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
    ])
}

fn arb_disk() -> impl Strategy<Value = Value> {
    (
        arb_name(),
        arb_boot_order(),
        prop::sample::select(&["disk", "cdrom", "lun", "none", "disk+cdrom"][..]),
    )
        .prop_map(|(name, boot_order, kind)| {
            let mut disk = json!({"name": name});
            if let Some(order) = boot_order {
                disk["bootOrder"] = order;
            }
            match kind {
                "none" => {}
                "disk+cdrom" => {
                    disk["disk"] = json!({});
                    disk["cdrom"] = json!({});
                }
                other => disk[other] = json!({"bus": "virtio"}),
            }
            disk
        })
}

fn arb_volume() -> impl Strategy<Value = Value> {
    (
        arb_name(),
        prop::sample::select(
            &[
                "containerDisk",
                "dataVolume",
                "persistentVolumeClaim",
                "cloudInitNoCloud",
                "cloudInitConfigDrive",
                "secret",
                "configMap",
                "emptyDisk",
                "hostDisk",
                "serviceAccount",
                "ephemeral",
                "sysprep",
                "memoryDump",
                "downwardAPI",
                "futureSource",
                "none",
                "two",
            ][..],
        ),
        arb_string(),
        arb_quantity(),
    )
        .prop_map(|(name, source, text, quantity)| {
            let mut volume = json!({"name": name});
            let body = match source {
                "containerDisk" => json!({"image": text}),
                "dataVolume" => json!({"name": text}),
                "persistentVolumeClaim" | "memoryDump" => json!({"claimName": text}),
                "cloudInitNoCloud" | "cloudInitConfigDrive" => {
                    json!({"secretRef": {"name": text}, "networkDataSecretRef": {"name": "x"}})
                }
                "secret" => json!({"secretName": text}),
                "configMap" => json!({"name": text}),
                "emptyDisk" => json!({"capacity": quantity}),
                "hostDisk" => json!({"path": text, "capacity": quantity, "type": "DiskOrCreate"}),
                "serviceAccount" => json!({"serviceAccountName": text}),
                "ephemeral" => json!({"persistentVolumeClaim": {"claimName": text}}),
                "sysprep" => json!({"secret": {"name": text}, "configMap": {"name": text}}),
                "none" => return volume,
                "two" => {
                    volume["containerDisk"] = json!({"image": text});
                    json!({"claimName": text})
                }
                other => json!({"x": other}),
            };
            let key = if source == "two" {
                "persistentVolumeClaim"
            } else {
                source
            };
            volume[key] = body;
            volume
        })
}

fn arb_resources() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(
        &[
            "memory",
            "cpu",
            "nvidia.com/gpu",
            "hugepages-2Mi",
            "ephemeral-storage",
            "storage",
        ][..],
    );
    (
        prop::collection::btree_map(keys.clone(), arb_quantity(), 0..4),
        prop::collection::btree_map(keys, arb_quantity(), 0..4),
    )
        .prop_map(|(requests, limits)| json!({"requests": requests, "limits": limits}))
}

fn arb_selector_requirement() -> impl Strategy<Value = Value> {
    (
        arb_name(),
        prop::sample::select(&["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Bogus"][..]),
        prop::collection::vec(arb_string(), 0..3),
    )
        .prop_map(
            |(key, operator, values)| json!({"key": key, "operator": operator, "values": values}),
        )
}

fn arb_affinity() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop::collection::vec(arb_selector_requirement(), 0..3),
            prop::collection::vec(arb_selector_requirement(), 0..2),
        ),
        0..3,
    )
    .prop_map(|terms| {
        let terms: Vec<Value> = terms
            .into_iter()
            .map(|(expressions, fields)| {
                json!({"matchExpressions": expressions, "matchFields": fields})
            })
            .collect();
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms
        }}})
    })
}

fn arb_toleration() -> impl Strategy<Value = Value> {
    (
        prop::option::of(arb_name()),
        prop::sample::select(&["Exists", "Equal", "", "Bogus"][..]),
        prop::option::of(arb_string()),
        prop::sample::select(&["NoSchedule", "NoExecute", "PreferNoSchedule", "", "Bogus"][..]),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(key, operator, value, effect, seconds)| {
            json!({"key": key, "operator": operator, "value": value, "effect": effect,
                   "tolerationSeconds": seconds})
        })
}

fn arb_data_volume_template() -> impl Strategy<Value = Value> {
    (
        arb_name(),
        prop::sample::select(&["storage", "pvc"][..]),
        prop::collection::vec(
            prop::sample::select(&["ReadWriteOnce", "ReadWriteMany", "Bogus"][..]),
            0..3,
        ),
        prop::option::of(arb_string()),
        prop::option::of(arb_quantity()),
        prop::sample::select(&["http", "registry", "pvc", "blank", "none"][..]),
    )
        .prop_map(|(name, field, modes, class, size, source)| {
            let mut storage = json!({"accessModes": modes});
            if let Some(class) = class {
                storage["storageClassName"] = json!(class);
            }
            if let Some(size) = size {
                storage["resources"] = json!({"requests": {"storage": size}});
            }
            let mut template = json!({"metadata": {"name": name}, "spec": {}});
            template["spec"][field] = storage;
            if source != "none" {
                template["spec"]["source"] =
                    json!({source: {"url": "https://x", "secretRef": "user-data", "certConfigMap": "c"}});
            }
            template
        })
}

fn arb_cpu() -> impl Strategy<Value = Value> {
    let count = prop_oneof![
        3 => (0u32..4).prop_map(Some),
        1 => any::<u32>().prop_map(Some),
        1 => Just(None),
    ];
    (
        count.clone(),
        count.clone(),
        count,
        prop::option::of(arb_string()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(cores, sockets, threads, model, dedicated)| {
            json!({"cores": cores, "sockets": sockets, "threads": threads, "model": model,
                   "dedicatedCpuPlacement": dedicated})
        })
}

/// A VM in which every field has the right type but any value.
fn arb_typed_vm() -> impl Strategy<Value = Value> {
    let devices = (
        prop::collection::vec(arb_disk(), 0..5),
        prop::collection::vec((arb_name(), arb_boot_order()), 0..3),
        prop::collection::vec(arb_volume(), 0..5),
        prop::collection::vec(
            (arb_name(), prop::option::of(arb_string()), any::<bool>()),
            0..3,
        ),
    );
    let domain = (
        arb_cpu(),
        prop::option::of(arb_quantity()),
        prop::option::of(arb_quantity()),
        arb_resources(),
        prop::collection::vec((arb_name(), arb_string()), 0..3),
    );
    let scheduling = (
        prop::collection::btree_map(arb_string(), arb_string(), 0..3),
        prop::option::of(arb_affinity()),
        prop::collection::vec(arb_toleration(), 0..3),
        prop::option::of(arb_string()),
    );
    let top = (
        prop::option::of(prop::sample::select(STRINGS).prop_map(str::to_string)),
        prop::option::of(any::<bool>()),
        prop::collection::vec(arb_data_volume_template(), 0..3),
        prop::option::of((arb_string(), prop::option::of(arb_string()))),
        prop::option::of(arb_string()),
        prop::option::of(arb_string()),
    );
    (devices, domain, scheduling, top).prop_map(
        |(
            (disks, interfaces, volumes, networks),
            (cpu, guest, max_guest, resources, gpus),
            (node_selector, affinity, tolerations, priority),
            (strategy, running, templates, instancetype, skip, namespace),
        )| {
            let interfaces: Vec<Value> = interfaces
                .into_iter()
                .map(|(name, order)| match order {
                    Some(order) => json!({"name": name, "masquerade": {}, "bootOrder": order}),
                    None => json!({"name": name, "masquerade": {}}),
                })
                .collect();
            let networks: Vec<Value> = networks
                .into_iter()
                .map(|(name, multus, default)| match multus {
                    Some(network) => {
                        json!({"name": name, "multus": {"networkName": network, "default": default}})
                    }
                    None => json!({"name": name, "pod": {}}),
                })
                .collect();
            let gpus: Vec<Value> = gpus
                .into_iter()
                .map(|(name, device)| json!({"name": name, "deviceName": device}))
                .collect();
            let mut vm = json!({
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "metadata": {"name": "typed"},
                "spec": {
                    "dataVolumeTemplates": templates,
                    "template": {"spec": {
                        "domain": {
                            "cpu": cpu,
                            "resources": resources,
                            "devices": {"disks": disks, "interfaces": interfaces, "gpus": gpus,
                                        "hostDevices": gpus.clone()},
                        },
                        "networks": networks,
                        "volumes": volumes,
                        "nodeSelector": node_selector,
                        "tolerations": tolerations,
                    }}
                }
            });
            let spec = &mut vm["spec"];
            if let Some(strategy) = strategy {
                spec["runStrategy"] = json!(strategy);
            }
            if let Some(running) = running {
                spec["running"] = json!(running);
            }
            if let Some((name, kind)) = instancetype {
                spec["instancetype"] = json!({"name": name, "kind": kind});
                spec["preference"] = json!({"name": "fedora", "kind": kind});
            }
            let template = &mut spec["template"]["spec"];
            if guest.is_some() || max_guest.is_some() {
                template["domain"]["memory"] = json!({"guest": guest, "maxGuest": max_guest});
            }
            if let Some(affinity) = affinity {
                template["affinity"] = affinity;
            }
            if let Some(priority) = priority {
                template["priorityClassName"] = json!(priority);
            }
            if let Some(skip) = skip {
                vm["metadata"]["annotations"] = json!({"virt-preflight.io/skip": skip});
            }
            if let Some(namespace) = namespace {
                vm["metadata"]["namespace"] = json!(namespace);
            }
            vm
        },
    )
}

/// Where arbitrary JSON goes in the cluster snapshot (a `List`).
const CLUSTER_POSITIONS: &[&str] = &[
    "/items/0/metadata/labels",
    "/items/0/metadata/labels/zone",
    "/items/0/status/allocatable",
    "/items/0/status/allocatable/memory",
    "/items/0/status/allocatable/cpu",
    "/items/0/status/conditions",
    "/items/1/spec/taints",
    "/items/1/spec/taints/0",
    "/items/1/spec",
    "/items/2",
    "/items/3/metadata/annotations",
    "/items/4/status",
    "/items/4/status/claimPropertySets/0",
    "/items/5/metadata",
    "/items/10/status/phase",
    "/items/10/spec",
    "/items/6/metadata/labels",
];

fn cluster_with(edits: &[(&str, Value)]) -> snapshot::Snapshot {
    let mut list: Value = serde_saphyr::from_str(CLUSTER).expect("cluster parses");
    for (pointer, value) in edits {
        set_at(&mut list, pointer, value.clone());
    }
    let text = serde_json::to_string(&list).expect("serialises");
    snapshot::from_documents(manifest::parse_text(&Arc::from("cluster.json"), &text))
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Shrinking a failure is worth the time; a run without failure does not shrink.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

#[test]
fn base_vm_is_clean_in_the_cluster() {
    // The fixtures are meant as "valid": if they were not, the fuzzing would start from noise.
    let options = CheckOptions {
        default_namespace: "default".to_string(),
        cluster: Some(cluster()),
        ..CheckOptions::default()
    };
    let report = check_all(
        vec![Ok(Document {
            source: Source {
                file: Arc::from("base.yaml"),
                document: 1,
                item: None,
                line: 1,
            },
            value: base_vm(),
        })],
        &options,
    );
    let findings: Vec<_> = report
        .findings()
        .map(|(_, f)| (f.rule, f.path.clone()))
        .collect();
    assert!(findings.is_empty(), "{findings:?}");
    assert!(
        report.coverage.skipped_rules.is_empty(),
        "{:?}",
        report.coverage.skipped_rules
    );
}

proptest! {
    #![proptest_config(config(300))]

    /// Arbitrary JSON (any type) at one to three places of a valid VM.
    #[test]
    fn arbitrary_json_anywhere_in_a_vm(edits in arb_edits()) {
        let mut vm = base_vm();
        for (pointer, value) in edits {
            set_at(&mut vm, pointer, value);
        }
        run_pipeline(&vm, Some(cluster()));
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// Well-typed VMs with any values: these get past the model and through every rule.
    #[test]
    fn well_typed_vms_with_any_values(vm in arb_typed_vm()) {
        // A well-typed VM must parse: that is what makes this strategy reach the rules.
        let parsed = virt_preflight::model::VirtualMachine::from_value(&vm);
        prop_assert!(parsed.is_ok(), "generator made an ill-typed VM: {:?}\n{:#}", parsed.err(), vm);
        run_pipeline(&vm, Some(cluster()));
    }
}

proptest! {
    #![proptest_config(config(80))]

    /// Odd cluster snapshots: errors for the broken objects, and a usable view all the same.
    #[test]
    fn arbitrary_json_in_the_cluster_snapshot(
        edits in prop::collection::vec((prop::sample::select(CLUSTER_POSITIONS), arb_json()), 1..3),
        vm in arb_typed_vm(),
    ) {
        let snapshot = cluster_with(&edits);
        for error in &snapshot.errors {
            let line = error.to_string();
            prop_assert!(!line.contains('\n'), "{}", line);
        }
        let view = Some(Arc::new(snapshot.view));
        run_pipeline(&base_vm(), view.clone());
        run_pipeline(&vm, view);
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Any bytes as a manifest file: documents or input errors that name the file.
    #[test]
    fn arbitrary_bytes_as_a_manifest(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_bytes(&bytes);
    }

    /// Text that looks like YAML or JSON manifests: separators, flow and block collections,
    /// anchors, tags, a VM header now and then.
    #[test]
    fn manifest_like_text(pieces in prop::collection::vec(prop::sample::select(&[
        "---\n", "--- # c\n", "...\n", "\n", "# comment\n", "apiVersion: kubevirt.io/v1\n",
        "kind: VirtualMachine\n", "kind: List\n", "items:\n", "- ", "  ", "metadata: {name: x}\n",
        "spec:\n", "  running: true\n", "  runStrategy: Always\n", "  template: ", "{", "}", "[",
        "]", ",", ":", "&a ", "*a", "!!str ", "!!binary ", "? ", "| \n", "> \n", "\"", "'",
        "\t", "\u{0}", "\u{feff}", "é", "1e400", "~", "null", "{\"kind\": \"VirtualMachine\"}",
        "{\"apiVersion\": \"kubevirt.io/v1\", \"kind\": \"VirtualMachine\", \"spec\": 3}\n",
        "\r\n", "%YAML 1.2\n", "<<: *a\n",
    ][..]), 0..40)) {
        let text: String = pieces.concat();
        check_bytes(text.as_bytes());
    }
}

fn check_bytes(bytes: &[u8]) {
    let file: Arc<str> = Arc::from("fuzz.yaml");
    let parsed = manifest::parse_bytes(&file, bytes);
    assert_parsed_names_file(&parsed, &file);
    for options in [
        CheckOptions::default(),
        CheckOptions {
            default_namespace: "default".to_string(),
            cluster: Some(cluster()),
            ..CheckOptions::default()
        },
    ] {
        let report = check_all(parsed.clone(), &options);
        render_all(&report);
        fix_and_recheck(&report, &options);
    }
    // The same bytes as a cluster snapshot.
    let snapshot = snapshot::from_documents(parsed);
    for error in &snapshot.errors {
        assert!(!error.to_string().contains('\n'));
    }
}

fn assert_parsed_names_file(parsed: &[manifest::Parsed], file: &Arc<str>) {
    for item in parsed {
        match item {
            Ok(document) => {
                assert!(document.source.document >= 1);
                assert!(document.source.line >= 1);
                assert!(document.value.is_object());
            }
            Err(err) => {
                assert_eq!(&err.file, file);
                let line = err.to_string();
                assert!(line.starts_with(&**file), "{line}");
                assert!(!line.contains('\n'), "{line}");
            }
        }
    }
}
