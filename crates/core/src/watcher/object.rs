//! VirtualMachines and their VMIs as the watcher reads them off the wire. A VM keeps its
//! metadata, and `spec`, `status` and the annotations as raw JSON text, read into types
//! ([`super::record`]) once per change: a relist of 100,000 VMs costs a scan of the bytes, not
//! 100,000 JSON trees. A VMI keeps its name, phase and node.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::ApiResource;
use kube_core::Resource;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::record::{SpecHead, StatusHead, VmFacts, VmRecord, VmiFacts, VmiPhase};
use super::state::VmKey;
use crate::model::{ModelError, VirtualMachine};
use crate::rules::finding::{DEFAULT_NAMESPACE, vm_namespace};

/// A `kubevirt.io/v1` kind for kube-rs's dynamic APIs.
pub fn kubevirt_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: crate::model::KUBEVIRT_GROUP.into(),
        version: crate::model::KUBEVIRT_VERSION.into(),
        api_version: format!(
            "{}/{}",
            crate::model::KUBEVIRT_GROUP,
            crate::model::KUBEVIRT_VERSION
        ),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// `metadata`, without managedFields, labels and the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    annotations: Option<Box<RawValue>>,
    /// What holds a VM stuck Terminating: kept for its diagnosis.
    deletion_timestamp: Option<String>,
    finalizers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
struct WireVm {
    #[serde(default)]
    metadata: WireMeta,
    spec: Option<Box<RawValue>>,
    status: Option<Box<RawValue>>,
}

/// A `kubevirt.io/v1` VirtualMachine as the watch delivers it.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "WireVm")]
pub struct WatchedVm {
    /// Name, namespace, uid and resourceVersion (what kube-rs's watcher and the tracker read).
    meta: ObjectMeta,
    annotations: Option<Box<RawValue>>,
    deletion_timestamp: Option<String>,
    spec: Option<Box<RawValue>>,
    status: Option<Box<RawValue>>,
}

impl From<WireVm> for WatchedVm {
    fn from(wire: WireVm) -> Self {
        WatchedVm {
            meta: ObjectMeta {
                name: wire.metadata.name,
                namespace: wire.metadata.namespace,
                uid: wire.metadata.uid,
                resource_version: wire.metadata.resource_version,
                finalizers: wire.metadata.finalizers.filter(|f| !f.is_empty()),
                ..ObjectMeta::default()
            },
            annotations: wire.metadata.annotations,
            deletion_timestamp: wire.metadata.deletion_timestamp,
            spec: wire.spec,
            status: wire.status,
        }
    }
}

fn parse_raw(raw: &Option<Box<RawValue>>) -> Option<Value> {
    raw.as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
}

fn parse_raw_as<T: serde::de::DeserializeOwned + Default>(raw: &Option<Box<RawValue>>) -> T {
    raw.as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}

impl WatchedVm {
    /// A whole object (a file, a list): read as the watch reads it.
    pub fn from_value(object: &Value) -> Result<Self, serde_json::Error> {
        serde_json::from_str(&object.to_string())
    }

    pub fn name(&self) -> Option<&str> {
        self.meta.name.as_deref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.meta.namespace.as_deref()
    }

    pub fn uid(&self) -> Option<&str> {
        self.meta.uid.as_deref()
    }

    /// The facts that decide whether the VM is stuck, and, when it may be, the record a
    /// diagnosis reads. A spec or status of the wrong shape reads as none: they are KubeVirt's
    /// to validate, and a VM is not dropped from the watch for them.
    pub fn read(&self, key: &VmKey) -> (VmFacts, Option<VmRecord>) {
        let spec: SpecHead = parse_raw_as(&self.spec);
        let status: StatusHead = parse_raw_as(&self.status);
        let facts = VmFacts::read(&spec, &status, self.deletion_timestamp.is_some());
        let record = facts.may_be_stuck().then(|| self.record_with(key, status));
        (facts, record)
    }

    /// The record a diagnosis reads, whether or not the VM may be stuck (`diagnose` of one VM).
    pub fn record(&self, key: &VmKey) -> VmRecord {
        self.record_with(key, parse_raw_as(&self.status))
    }

    fn record_with(&self, key: &VmKey, status: StatusHead) -> VmRecord {
        VmRecord {
            key: key.clone(),
            printable_status: status.printable_status.unwrap_or_default(),
            conditions: status.conditions,
            deletion_timestamp: self.deletion_timestamp.clone(),
            finalizers: self.meta.finalizers.clone().unwrap_or_default(),
            vm: self.model(),
        }
    }

    /// The VM less its status: what judging its spec needs (the policy reports keep every VM
    /// of the cluster so).
    pub fn without_status(mut self) -> Self {
        self.status = None;
        self
    }

    /// Whether `other` reads the same to the rules: the same object (uid), spec, annotations
    /// and deletion.
    pub fn same_spec(&self, other: &WatchedVm) -> bool {
        fn text(raw: &Option<Box<RawValue>>) -> Option<&str> {
            raw.as_deref().map(RawValue::get)
        }
        self.meta.uid == other.meta.uid
            && self.deletion_timestamp == other.deletion_timestamp
            && text(&self.spec) == text(&other.spec)
            && text(&self.annotations) == text(&other.annotations)
    }

    /// The VM in the rules' model: its metadata (name, namespace, uid, annotations,
    /// deletionTimestamp) and spec, read from the kept text.
    pub fn model(&self) -> Result<VirtualMachine, ModelError> {
        let mut metadata = Map::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                metadata.insert(key.to_string(), Value::String(value.clone()));
            }
        };
        put("name", &self.meta.name);
        put("namespace", &self.meta.namespace);
        put("uid", &self.meta.uid);
        put("deletionTimestamp", &self.deletion_timestamp);
        if let Some(annotations) = parse_raw(&self.annotations) {
            metadata.insert("annotations".into(), annotations);
        }
        let spec = self.spec.as_ref().map_or("{}", |raw| raw.get());
        let text = format!(
            r#"{{"metadata":{},"spec":{spec}}}"#,
            Value::Object(metadata)
        );
        VirtualMachine::from_json(&text)
    }
}

/// `status` of a VMI: where it is.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireVmiStatus {
    phase: Option<VmiPhase>,
    node_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireVmi {
    #[serde(default)]
    metadata: WireMeta,
    #[serde(default)]
    status: Option<WireVmiStatus>,
}

/// A `kubevirt.io/v1` VirtualMachineInstance as the watch delivers it: its name and where it
/// is, nothing else kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "WireVmi")]
pub struct WatchedVmi {
    meta: ObjectMeta,
    pub facts: VmiFacts,
}

impl From<WireVmi> for WatchedVmi {
    fn from(wire: WireVmi) -> Self {
        let status = wire.status.unwrap_or_default();
        WatchedVmi {
            meta: ObjectMeta {
                name: wire.metadata.name,
                namespace: wire.metadata.namespace,
                uid: wire.metadata.uid,
                resource_version: wire.metadata.resource_version,
                ..ObjectMeta::default()
            },
            facts: VmiFacts {
                phase: status.phase.unwrap_or_default(),
                node: status.node_name.filter(|n| !n.is_empty()),
            },
        }
    }
}

impl WatchedVmi {
    /// A whole object (a file, a list).
    pub fn from_value(object: &Value) -> Result<Self, serde_json::Error> {
        serde_json::from_str(&object.to_string())
    }

    /// Its key: a VMI has its VM's namespace and name.
    pub fn key(&self) -> Option<VmKey> {
        Some(VmKey::new(
            vm_namespace(None, self.meta.namespace.as_deref(), DEFAULT_NAMESPACE),
            self.meta.name.clone()?,
        ))
    }
}

impl Resource for WatchedVmi {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "VirtualMachineInstance".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        crate::model::KUBEVIRT_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        crate::model::KUBEVIRT_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "virtualmachineinstances".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

impl Resource for WatchedVm {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        crate::model::VM_KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        crate::model::KUBEVIRT_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        crate::model::KUBEVIRT_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        crate::model::VM_PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_the_tracker_needs_and_keeps_the_rest_raw() {
        let wire = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                         "annotations": {"virt-preflight.io/skip": "image-tag-latest"},
                         "deletionTimestamp": "2026-11-25T10:01:00Z",
                         "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"runStrategy": "Always"},
            "status": {"printableStatus": "Starting", "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-25T10:00:00Z",
                 "message": "kept for diagnosis"}]}
        });
        let vm: WatchedVm = serde_json::from_str(&wire.to_string()).unwrap();
        assert_eq!(vm.meta().resource_version.as_deref(), Some("7"));
        let key = VmKey::new("ns", "a");
        let (facts, record) = vm.read(&key);
        assert_eq!(facts.status, Some(crate::watcher::VmStatus::Starting));
        let record = record.expect("a Starting VM may be stuck: its record is read");
        assert_eq!(record.printable_status, "Starting");
        assert_eq!(record.conditions[0].kind, "Ready");
        assert_eq!(record.conditions[0].message, "kept for diagnosis");
        assert_eq!(
            record.deletion_timestamp.as_deref(),
            Some("2026-11-25T10:01:00Z")
        );
        assert_eq!(
            record.finalizers,
            ["kubevirt.io/virtualMachineControllerFinalize"]
        );
        let model = record.vm.expect("the spec reads as the model");
        let annotations = model.metadata.annotations;
        assert_eq!(
            annotations
                .get("virt-preflight.io/skip")
                .map(|v| v.as_str()),
            Some("image-tag-latest")
        );
        assert_eq!(
            WatchedVm::url_path(&(), None),
            "/apis/kubevirt.io/v1/virtualmachines"
        );
    }

    #[test]
    fn a_status_of_the_wrong_shape_reads_as_none() {
        let vm: WatchedVm = serde_json::from_str(
            r#"{"metadata": {"name": "a"}, "status": {"printableStatus": 3}}"#,
        )
        .unwrap();
        let (facts, record) = vm.read(&VmKey::new("default", "a"));
        assert_eq!(facts.status, None);
        assert!(record.is_none(), "no status: not a VM that may be stuck");
    }
}
