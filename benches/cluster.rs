//! Cluster rules on synthetic views of 10, 500 and 5,000 nodes with 100,000 Secrets: the time
//! to check one VM with every cluster rule, and the memory the view holds; and the cost of one
//! Secret watch event to the view at 1,000 and 100,000 Secrets. The VM uses what each rule
//! looks at (a GPU, dedicated CPUs, hugepages, LiveMigrate eviction, …) and the view has it, so
//! every rule does its whole work and the VM stays clean.
//!
//! `cargo bench --bench cluster` (prints the view's resident memory before criterion's figures).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use virt_preflight::cluster::{ClusterView, Kind, ViewBuilder};
use virt_preflight::model::VirtualMachine;
use virt_preflight::rules::finding::ObjectRef;
use virt_preflight::rules::{self, REGISTRY, Scope};

const SECRETS: usize = 100_000;
const NAMESPACES: usize = 100;

fn node(i: usize) -> Value {
    let zone = ["a", "b", "c"][i % 3];
    let mut labels = json!({
        "kubernetes.io/hostname": format!("worker-{i}"),
        "topology.kubernetes.io/zone": zone,
        "kubevirt.io/schedulable": "true",
        "cpu-model.node.kubevirt.io/Haswell": "true",
        "node.kubernetes.io/instance-type": format!("m{}.large", i % 7),
        "kubevirt.io/cpumanager": "true",
        "cpumanager": "true",
    });
    let gpu = i % 10 == 1;
    if gpu {
        labels["gpu"] = json!("a10");
    }
    json!({
        "metadata": {"name": format!("worker-{i}"), "labels": labels},
        "spec": {"taints": if gpu { json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]) } else { json!([]) }},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "nvidia.com/GA102GL_A10": if gpu { "2" } else { "0" },
                            "devices.kubevirt.io/kvm": "1k", "hugepages-2Mi": "8Gi"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

fn view(nodes: usize) -> ClusterView {
    let mut builder = ViewBuilder::new();
    for i in 0..nodes {
        builder.add(Kind::Node, &node(i)).unwrap();
    }
    for i in 0..SECRETS {
        let meta = json!({"metadata": {"name": format!("secret-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)}});
        builder.add(Kind::Secret, &meta).unwrap();
    }
    for (kind, name) in [
        (Kind::ConfigMap, "sysprep"),
        (Kind::ServiceAccount, "vm-sa"),
        (Kind::DataVolume, "data-dv"),
        (Kind::NetworkAttachmentDefinition, "storage-net"),
    ] {
        builder
            .add(
                kind,
                &json!({"metadata": {"name": name, "namespace": "ns-7"}}),
            )
            .unwrap();
    }
    for claim in ["data-pvc", "data-dv"] {
        builder
            .add(
                Kind::PersistentVolumeClaim,
                &json!({"metadata": {"name": claim, "namespace": "ns-7"},
                "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteMany"]},
                "status": {"phase": "Bound"}}),
            )
            .unwrap();
    }
    builder
        .add(
            Kind::KubeVirt,
            &json!({"metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {"configuration": {
                "developerConfiguration": {"featureGates": ["CPUManager", "VGPULiveMigration"]},
                "evictionStrategy": "LiveMigrate",
                "permittedHostDevices": {"mediatedDevices": [
                    {"mdevNameSelector": "NVIDIA A10-4Q", "resourceName": "nvidia.com/GA102GL_A10"}]}}},
            "status": {"observedKubeVirtVersion": "v1.9.0", "defaultArchitecture": "amd64"}}),
        )
        .unwrap();
    builder
        .add(
            Kind::StorageClass,
            &json!({"metadata": {"name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
        )
        .unwrap();
    builder
        .add(
            Kind::StorageProfile,
            &json!({"metadata": {"name": "standard"},
            "status": {"claimPropertySets": [{"accessModes": ["ReadWriteMany"], "volumeMode": "Block"},
                {"accessModes": ["ReadWriteMany"], "volumeMode": "Filesystem"}, {"accessModes": ["ReadWriteOnce"]}]}}),
        )
        .unwrap();
    builder
        .add(
            Kind::PriorityClass,
            &json!({"metadata": {"name": "vm-high"}}),
        )
        .unwrap();
    builder
        .add(Kind::Namespace, &json!({"metadata": {"name": "ns-7"}}))
        .unwrap();
    builder
        .add(
            Kind::VirtualMachineClusterInstancetype,
            &json!({"metadata": {"name": "u1.large"}}),
        )
        .unwrap();
    builder
        .add(
            Kind::VirtualMachineClusterPreference,
            &json!({"metadata": {"name": "fedora"}}),
        )
        .unwrap();
    // The namespace's quota, LimitRange, golden image and the other VMs (a halted one holds the
    // RWO claim the bench VM mounts), for the quota, LimitRange, DataSource and pvc-in-use rules.
    for (kind, object) in [
        (
            Kind::ResourceQuota,
            json!({"metadata": {"name": "compute", "namespace": "ns-7"},
                "spec": {"hard": {"requests.cpu": "64", "requests.memory": "256Gi", "limits.memory": "512Gi", "pods": "100",
                    "count/virtualmachines.kubevirt.io": "50", "requests.nvidia.com/GA102GL_A10": "4"}},
                "status": {"hard": {"requests.cpu": "64", "requests.memory": "256Gi", "limits.memory": "512Gi", "pods": "100",
                    "count/virtualmachines.kubevirt.io": "50", "requests.nvidia.com/GA102GL_A10": "4"},
                "used": {"requests.cpu": "8", "requests.memory": "32Gi", "limits.memory": "64Gi", "pods": "9",
                    "count/virtualmachines.kubevirt.io": "9", "requests.nvidia.com/GA102GL_A10": "1"}}}),
        ),
        (
            Kind::LimitRange,
            json!({"metadata": {"name": "limits", "namespace": "ns-7"}, "spec": {"limits": [
                {"type": "Container", "max": {"cpu": "16", "memory": "64Gi"}, "min": {"memory": "1Mi"},
                    "default": {"cpu": "1", "memory": "1Gi"}},
                {"type": "Pod", "max": {"memory": "128Gi"}}]}}),
        ),
        (
            Kind::DataSource,
            json!({"metadata": {"name": "fedora", "namespace": "os-images"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        ),
        (
            Kind::PersistentVolumeClaim,
            json!({"metadata": {"name": "shared-pvc", "namespace": "ns-7"},
                "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Bound"}}),
        ),
    ] {
        builder.add(kind, &object).unwrap();
    }
    for i in 0..10 {
        let (claim, strategy) = if i == 0 {
            ("shared-pvc".to_string(), "Halted")
        } else {
            (format!("disk-{i}"), "Always")
        };
        builder
            .add(
                Kind::VirtualMachine,
                &json!({"metadata": {"name": format!("vm-{i}"), "namespace": "ns-7"},
                    "spec": {"runStrategy": strategy, "template": {"spec": {"volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}}),
            )
            .unwrap();
    }
    builder.mark_known(Kind::VirtualMachineInstancetype);
    builder.mark_known(Kind::VirtualMachinePreference);
    builder.build()
}

/// A VM that every cluster rule has something to look at in.
fn vm() -> VirtualMachine {
    VirtualMachine::from_value(&vm_json()).expect("bench VM fits the model")
}

/// [`vm`] as the API server sends it.
fn vm_json() -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "bench", "namespace": "ns-7"},
        "spec": {
            "runStrategy": "Always",
            "instancetype": {"name": "u1.large"},
            "preference": {"name": "fedora"},
            "dataVolumeTemplates": [{"metadata": {"name": "root-dv"}, "spec": {
                "storage": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "30Gi"}}},
                "source": {"registry": {"url": "docker://quay.io/containerdisks/fedora:41", "secretRef": "secret-7", "certConfigMap": "sysprep"}}}},
                {"metadata": {"name": "golden-dv"}, "spec": {
                "storage": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "30Gi"}}},
                "sourceRef": {"kind": "DataSource", "name": "fedora", "namespace": "os-images"}}}],
            "template": {"spec": {
                "priorityClassName": "vm-high",
                "nodeSelector": {"topology.kubernetes.io/zone": "b", "gpu": "a10"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "NotIn", "values": ["m3.large"]}]}]}}},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "accessCredentials": [{"sshPublicKey": {"source": {"secret": {"secretName": "secret-107"}}, "propagationMethod": {"noCloud": {}}}}],
                "domain": {
                    "cpu": {"model": "Haswell", "dedicatedCpuPlacement": true},
                    "memory": {"hugepages": {"pageSize": "2Mi"}},
                    "devices": {
                        "disks": [{"name": "root", "disk": {}, "bootOrder": 1}, {"name": "data", "disk": {}}, {"name": "dv", "disk": {}}, {"name": "ci", "disk": {}},
                            {"name": "golden", "disk": {}}, {"name": "shared", "disk": {}}],
                        "interfaces": [{"name": "default", "masquerade": {}}, {"name": "storage", "bridge": {}}],
                        "gpus": [{"name": "gpu1", "deviceName": "nvidia.com/GA102GL_A10"}]
                    }
                },
                "networks": [{"name": "default", "pod": {}}, {"name": "storage", "multus": {"networkName": "storage-net"}}],
                "volumes": [
                    {"name": "root", "dataVolume": {"name": "root-dv"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}},
                    {"name": "dv", "dataVolume": {"name": "data-dv"}},
                    {"name": "ci", "cloudInitNoCloud": {"secretRef": {"name": "secret-207"}}},
                    {"name": "sa", "serviceAccount": {"serviceAccountName": "vm-sa"}},
                    {"name": "cfg", "configMap": {"name": "sysprep"}},
                    {"name": "golden", "dataVolume": {"name": "golden-dv"}},
                    {"name": "shared", "persistentVolumeClaim": {"claimName": "shared-pvc"}}
                ]
            }}
        }
    })
}

fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn cluster_rules(c: &mut Criterion) {
    let vm = vm();
    let object = ObjectRef::virtual_machine(&vm, None, "default");
    let mut group = c.benchmark_group("cluster-rules-one-vm");
    for nodes in [10, 500, 5_000] {
        let before = resident_bytes();
        let view = view(nodes);
        let after = resident_bytes();
        let evaluation = rules::evaluate(&vm, &object, Some(&view));
        // Clean but for one warning: the RWO claim it shares with a halted VM (for pvc-in-use
        // to look at the other VMs) keeps LiveMigrate from migrating it.
        let fired: Vec<_> = evaluation
            .findings
            .iter()
            .map(|f| (f.rule, f.path.as_str()))
            .collect();
        assert_eq!(
            fired,
            [(
                rules::RuleId::EvictionNotMigratable,
                "spec.template.spec.volumes[7].persistentVolumeClaim.claimName"
            )],
            "bench VM findings: {:?}",
            evaluation.findings
        );
        assert!(
            REGISTRY
                .iter()
                .filter(|r| r.scope == Scope::Cluster)
                .all(|r| rules::runnable(r, Some(&view))),
            "every cluster rule must run"
        );
        eprintln!(
            "view of {nodes} nodes + {SECRETS} secrets: resident +{:.1} MiB",
            after.saturating_sub(before) as f64 / 1048576.0,
        );
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &view, |b, view| {
            b.iter(|| black_box(rules::evaluate(black_box(&vm), &object, Some(view))))
        });
    }
    group.finish();
}

/// One Secret watch event, from the line the API server sends to the view readers get: read
/// into the wire type (metadata only, its last-applied annotation skipped), applied to the
/// builder, and the new view taken, at 1,000 and at 100,000 Secrets.
fn secret_events(c: &mut Criterion) {
    use kube::core::WatchEvent;
    use virt_preflight::cluster::objects::{NameOnly, Wire};

    let line = |i: usize| {
        let meta = json!({"name": format!("secret-{i}"), "namespace": format!("ns-{}", i % NAMESPACES),
            "resourceVersion": "12345", "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
            "{\"apiVersion\":\"v1\",\"data\":{\"password\":\"aHVudGVyMg==\"},\"kind\":\"Secret\"}"}});
        serde_json::to_vec(&json!({"type": "MODIFIED", "object":
            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": meta}}))
        .expect("serialises")
    };
    let mut group = c.benchmark_group("view-secret-event");
    for secrets in [1_000, 100_000] {
        let mut builder = ViewBuilder::new();
        for i in 0..secrets {
            let meta = json!({"metadata": {"name": format!("secret-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)}});
            builder.add(Kind::Secret, &meta).expect("a Secret");
        }
        let lines: Vec<Vec<u8>> = (0..1_000).map(|i| line(i * secrets / 1_000)).collect();
        let mut next = 0;
        group.bench_function(BenchmarkId::from_parameter(secrets), |b| {
            b.iter(|| {
                next = (next + 1) % lines.len();
                let event: WatchEvent<Wire<NameOnly>> =
                    serde_json::from_slice(&lines[next]).expect("a watch event");
                if let WatchEvent::Modified(object) = event {
                    builder.apply_body(Kind::Secret, object.body);
                }
                black_box(std::sync::Arc::new(builder.view()))
            })
        });
    }
    group.finish();
}

/// `audit` of 10,000 stored VMs on 5,000 nodes from a warm view: each read into the model and
/// judged with every rule the webhook runs, half of them running (goal: under 1 s).
fn audit(c: &mut Criterion) {
    use std::collections::{BTreeSet, HashMap};
    use virt_preflight::cli::audit::judge;
    use virt_preflight::watcher::VmKey;
    const VMS: usize = 10_000;
    let view = view(5_000);
    let vms: Vec<Value> = (0..VMS)
        .map(|i| {
            let mut vm = vm_json();
            vm["metadata"]["name"] = json!(format!("vm-{i}"));
            vm
        })
        .collect();
    let keys: Vec<VmKey> = vms.iter().filter_map(VmKey::of).collect();
    let running: HashMap<&VmKey, &str> = keys.iter().step_by(2).map(|k| (k, "node-0")).collect();
    let (documents, _) = judge(&vms, &running, &BTreeSet::new(), &view).expect("judged");
    assert_eq!(documents.len(), VMS);
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.bench_function("10000-vms-5000-nodes", |b| {
        b.iter(|| black_box(judge(&vms, &running, &BTreeSet::new(), &view)))
    });
    group.finish();
}

criterion_group!(benches, cluster_rules, secret_events, audit);
criterion_main!(benches);
