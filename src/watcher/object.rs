//! The VirtualMachine as the watcher reads it off the wire: the few fields the tracker needs,
//! parsed; `spec`, `status` and the annotations kept as raw JSON text, parsed again only for
//! the unhealthy few that are diagnosed. A relist of 100,000 VMs then costs a scan of the
//! bytes, not 100,000 JSON trees.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::ApiResource;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

/// The status fields the tracker reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusHead {
    pub printable_status: Option<String>,
    #[serde(default)]
    pub conditions: Vec<ConditionHead>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConditionHead {
    #[serde(rename = "type", default)]
    pub type_: String,
    pub last_transition_time: Option<String>,
}

fn parse_raw(raw: &Option<Box<RawValue>>) -> Option<Value> {
    raw.as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
}

impl WatchedVm {
    pub fn name(&self) -> Option<&str> {
        self.meta.name.as_deref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.meta.namespace.as_deref()
    }

    pub fn uid(&self) -> Option<&str> {
        self.meta.uid.as_deref()
    }

    /// The status fields the tracker reads; an unreadable status reads as none.
    pub(crate) fn status_head(&self) -> StatusHead {
        self.status
            .as_ref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default()
    }

    /// The object for diagnosis: metadata (name, namespace, uid, annotations, deletionTimestamp,
    /// finalizers), spec and status.
    pub fn to_object(&self) -> Arc<Value> {
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
        if let Some(finalizers) = &self.meta.finalizers {
            metadata.insert("finalizers".into(), finalizers.clone().into());
        }
        let mut object = Map::new();
        object.insert("apiVersion".into(), "kubevirt.io/v1".into());
        object.insert("kind".into(), "VirtualMachine".into());
        object.insert("metadata".into(), Value::Object(metadata));
        for (key, raw) in [("spec", &self.spec), ("status", &self.status)] {
            if let Some(value) = parse_raw(raw) {
                object.insert(key.into(), value);
            }
        }
        Arc::new(Value::Object(object))
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
        let head = vm.status_head();
        assert_eq!(head.printable_status.as_deref(), Some("Starting"));
        assert_eq!(head.conditions[0].type_, "Ready");
        let object = vm.to_object();
        assert_eq!(object["spec"], wire["spec"]);
        assert_eq!(object["status"], wire["status"]);
        assert_eq!(
            object["metadata"]["annotations"],
            wire["metadata"]["annotations"]
        );
        assert!(object.pointer("/metadata/managedFields").is_none());
        for kept in ["deletionTimestamp", "finalizers"] {
            assert_eq!(object["metadata"][kept], wire["metadata"][kept], "{kept}");
        }
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
        assert_eq!(vm.status_head().printable_status, None);
    }
}
