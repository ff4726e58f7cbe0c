//! Helpers for the rule families' tests: build a VM from JSON, run the engine, and
//! check which rules fired where.

use super::*;
use serde_json::Value;

pub fn vm(value: Value) -> VirtualMachine {
    VirtualMachine::from_value(&value).expect("test VM must fit the model")
}

/// Every finding of the engine as (rule, path).
pub fn fired(value: Value) -> Vec<(RuleId, String)> {
    findings(value)
        .into_iter()
        .map(|f| (f.rule, f.path))
        .collect()
}

pub fn findings(value: Value) -> Vec<Finding> {
    run(value, None)
}

/// The engine on `value` as a VM of namespace `default`, with or without a cluster view.
fn run(value: Value, view: Option<&crate::cluster::ClusterView>) -> Vec<Finding> {
    let vm = vm(value);
    let object = ObjectRef {
        kind: "VirtualMachine".into(),
        namespace: "default".into(),
        name: vm.metadata.name.as_deref().map(str::to_string),
    };
    evaluate(&vm, &object, view).findings
}

/// A VM that KubeVirt runs: container disk, cloud-init, pod network, memory.
pub fn valid_vm() -> Value {
    serde_json::json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "testvm", "namespace": "default"},
        "spec": {
            "runStrategy": "Always",
            "template": {"spec": {
                "domain": {
                    "devices": {
                        "disks": [
                            {"name": "rootdisk", "disk": {"bus": "virtio"}},
                            {"name": "cloudinit", "disk": {"bus": "virtio"}}
                        ],
                        "interfaces": [{"name": "default", "masquerade": {}}]
                    },
                    "memory": {"guest": "1Gi"},
                    "resources": {"requests": {"memory": "1Gi", "cpu": "1"}, "limits": {"memory": "2Gi", "cpu": "2"}}
                },
                "networks": [{"name": "default", "pod": {}}],
                "volumes": [
                    {"name": "rootdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                    {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config"}}
                ]
            }}
        }
    })
}

/// Applies a JSON merge-style edit to the valid VM: `edit(&mut value)`.
pub fn valid_vm_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut value = valid_vm();
    edit(&mut value);
    value
}

pub fn spec(value: &mut Value) -> &mut Value {
    &mut value["spec"]["template"]["spec"]
}

#[test]
fn valid_vm_is_clean() {
    assert_eq!(fired(valid_vm()), vec![]);
}

/// A small cluster in which `valid_vm()` (and the references the cluster tests add) is fine.
pub const BASE_CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: worker-1
    labels: {kubevirt.io/schedulable: "true", zone: a, cpu-model.node.kubevirt.io/Haswell: "true"}
  status:
    allocatable: {cpu: "16", memory: 64Gi}
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata:
    name: worker-2
    labels: {kubevirt.io/schedulable: "true", zone: b, gpu: a10, cpu-model.node.kubevirt.io/Haswell: "true"}
  spec:
    taints: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]
  status:
    allocatable: {cpu: "32", memory: 128Gi, nvidia.com/GA102GL_A10: "1"}
    conditions: [{type: Ready, status: "True"}]
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
- apiVersion: scheduling.k8s.io/v1
  kind: PriorityClass
  metadata: {name: vm-high}
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
- {apiVersion: instancetype.kubevirt.io/v1beta1, kind: VirtualMachineClusterInstancetype, metadata: {name: u1.medium}}
- {apiVersion: instancetype.kubevirt.io/v1beta1, kind: VirtualMachineClusterPreference, metadata: {name: fedora}}
"#;

/// The KubeVirt CR as a snapshot item: `status.observedKubeVirtVersion` = `version`, amd64,
/// `spec.configuration` = `configuration`.
pub fn kubevirt_cr(version: &str, configuration: Value) -> Value {
    serde_json::json!({
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": configuration},
        "status": {"observedKubeVirtVersion": version, "defaultArchitecture": "amd64"}
    })
}

/// A view built from snapshot YAML.
pub fn cluster(yaml: &str) -> crate::cluster::ClusterView {
    let snapshot = crate::cluster::snapshot::from_documents(crate::manifest::parse_text(
        &std::sync::Arc::from("cluster.yaml"),
        yaml,
    ));
    assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
    snapshot.view
}

/// [`BASE_CLUSTER`] with `edit` applied to its items.
pub fn base_cluster_with(edit: impl FnOnce(&mut Vec<Value>)) -> crate::cluster::ClusterView {
    let mut list: Value = serde_saphyr::from_str(BASE_CLUSTER).expect("base cluster parses");
    edit(list["items"].as_array_mut().expect("items"));
    cluster(&serde_json::to_string(&list).expect("serialises"))
}

/// Every finding of the engine against a cluster view, as (rule, path).
pub fn fired_in(value: Value, view: &crate::cluster::ClusterView) -> Vec<(RuleId, String)> {
    findings_in(value, view)
        .into_iter()
        .map(|f| (f.rule, f.path))
        .collect()
}

/// Removes the items of one kind from a snapshot's items.
pub fn without_kind(items: &mut Vec<Value>, kind: &str) {
    items.retain(|item| item["kind"] != kind);
}

#[test]
fn valid_vm_is_clean_in_the_base_cluster() {
    assert_eq!(fired_in(valid_vm(), &cluster(BASE_CLUSTER)), vec![]);
}

/// Every finding of the engine against a cluster view.
pub fn findings_in(value: Value, view: &crate::cluster::ClusterView) -> Vec<Finding> {
    run(value, Some(view))
}
