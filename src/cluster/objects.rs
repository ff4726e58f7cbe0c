//! What the view keeps of each kind, in one place: the wire form each kind is read into, and
//! the entry it leaves in the view.
//!
//! Every source (snapshot files, a one-shot list, watch events) reads objects into these
//! types, so they are the whole of what the process holds about the cluster. Fields not named
//! here are skipped by the parser without being copied: a Secret's `data`, its
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (which carries the data of a
//! Secret made by `kubectl apply`), `managedFields`. Secrets, ConfigMaps, ServiceAccounts and
//! the other kinds whose existence is all the rules need keep namespace and name only.
//!
//! | kind | kept |
//! |---|---|
//! | Secret, ConfigMap, ServiceAccount, PriorityClass, NetworkAttachmentDefinition, instancetypes and preferences | namespace, name |
//! | Namespace | the `virt-preflight.io/mode` label |
//! | Node | labels, NoSchedule/NoExecute taints, `spec.unschedulable`, Ready, allocatable ([`NodeInfo`]) |
//! | StorageClass | the two default-class annotations |
//! | StorageProfile | `status.claimPropertySets` (access and volume modes) |
//! | PersistentVolumeClaim | `spec.storageClassName`, `spec.accessModes`, `status.phase`, being deleted |
//! | DataVolume | `status.phase`, messages of conditions that are not True, being deleted |

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};

use super::Kind;
use super::nodes::NodeInfo;
use super::table::Name;

/// The metadata every kind keeps, as read off the wire. `L` and `A` are what is read of the
/// labels and annotations: by default nothing, skipped without being copied.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<L = Skipped, A = Skipped> {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Needed by the watch to resume where it left off; not stored in the view.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Set while finalizers hold an object that is being deleted.
    #[serde(default, deserialize_with = "present")]
    pub deletion_timestamp: bool,
    #[serde(default)]
    pub labels: L,
    #[serde(default)]
    pub annotations: A,
}

/// A field read past without keeping (or allocating) any of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Skipped)
    }
}

/// Name, namespace and resourceVersion of an object, whatever else its metadata kept.
#[derive(Debug, Clone, Copy)]
pub struct MetaRef<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub resource_version: Option<&'a str>,
}

impl<L, A> Meta<L, A> {
    pub fn as_ref(&self) -> MetaRef<'_> {
        MetaRef {
            name: &self.name,
            namespace: self.namespace.as_deref(),
            resource_version: self.resource_version.as_deref(),
        }
    }
}

/// Whether an optional field is there, its content skipped.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Option::<IgnoredAny>::deserialize(deserializer).map(|value| value.is_some())
}

/// One object as the view stores it.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Existence is all the rules need.
    Name,
    Namespace(NamespaceInfo),
    Node(Arc<NodeInfo>),
    StorageClass(StorageClassInfo),
    StorageProfile(StorageProfileInfo),
    Pvc(PvcInfo),
    DataVolume(DataVolumeInfo),
}

/// How a kind is read off the wire and what it leaves in the view.
pub trait Body: DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// The API server's metadata-only form (`PartialObjectMetadata`) holds all the view keeps:
    /// list and watch ask for it, so the server never sends the rest.
    const METADATA_ONLY: bool;
    fn meta(&self) -> MetaRef<'_>;
    fn into_entry(self) -> Entry;
}

/// Kinds whose existence is all the rules need.
#[derive(Debug, Clone, Deserialize)]
pub struct NameOnly {
    #[serde(default)]
    metadata: Meta,
}

impl Body for NameOnly {
    const METADATA_ONLY: bool = true;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::Name
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The `virt-preflight.io/mode` label: the policy mode for the namespace's VMs.
    pub mode: Option<Name>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamespaceBody {
    #[serde(default)]
    metadata: Meta<NamespaceLabels>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NamespaceLabels {
    #[serde(rename = "virt-preflight.io/mode")]
    mode: Option<String>,
}

impl Body for NamespaceBody {
    const METADATA_ONLY: bool = true;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::Namespace(NamespaceInfo {
            mode: self.metadata.labels.mode.map(Name::from),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageClassInfo {
    /// `storageclass.kubernetes.io/is-default-class` is "true".
    pub default: bool,
    /// `storageclass.kubevirt.io/is-default-virt-class` is "true".
    pub virt_default: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StorageClassBody {
    #[serde(default)]
    metadata: Meta<Skipped, DefaultClassAnnotations>,
}

/// The two annotations that make a class a default; the others are skipped unread.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DefaultClassAnnotations {
    #[serde(rename = "storageclass.kubernetes.io/is-default-class")]
    default: Option<String>,
    #[serde(rename = "storageclass.kubevirt.io/is-default-virt-class")]
    virt_default: Option<String>,
}

impl Body for StorageClassBody {
    const METADATA_ONLY: bool = true;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        let annotations = self.metadata.annotations;
        Entry::StorageClass(StorageClassInfo {
            default: annotations.default.as_deref() == Some("true"),
            virt_default: annotations.virt_default.as_deref() == Some("true"),
        })
    }
}

/// A CDI StorageProfile: the access and volume modes its class can give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageProfileInfo {
    pub claim_property_sets: Vec<ClaimPropertySet>,
}

impl StorageProfileInfo {
    /// Some set offers at least one access mode.
    pub fn has_access_modes(&self) -> bool {
        self.claim_property_sets
            .iter()
            .any(|set| !set.access_modes.is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPropertySet {
    #[serde(default)]
    pub access_modes: Vec<String>,
    #[serde(default)]
    pub volume_mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StorageProfileBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    status: StorageProfileStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StorageProfileStatus {
    #[serde(default)]
    claim_property_sets: Vec<ClaimPropertySet>,
}

impl Body for StorageProfileBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::StorageProfile(StorageProfileInfo {
            claim_property_sets: self.status.claim_property_sets,
        })
    }
}

/// A PersistentVolumeClaim, as far as the rules and the diagnosis care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvcInfo {
    pub phase: Option<String>,
    pub storage_class: Option<String>,
    pub access_modes: Vec<String>,
    /// It has a deletionTimestamp: finalizers hold it until its users are gone.
    pub deleting: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PvcBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: PvcSpec,
    #[serde(default)]
    status: PhaseStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PvcSpec {
    storage_class_name: Option<String>,
    #[serde(default)]
    access_modes: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PhaseStatus {
    phase: Option<String>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Condition {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
}

impl Body for PvcBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::Pvc(PvcInfo {
            phase: self.status.phase,
            storage_class: self.spec.storage_class_name,
            access_modes: self.spec.access_modes,
            deleting: self.metadata.deletion_timestamp,
        })
    }
}

/// A CDI DataVolume's progress, as far as diagnosing a stuck VM cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataVolumeInfo {
    /// `status.phase`: Pending, ImportInProgress, Succeeded, Failed, …
    pub phase: Option<String>,
    /// Messages of its conditions whose status is not True ("Bound" False: "PVC x Pending").
    pub messages: Vec<String>,
    /// It has a deletionTimestamp.
    pub deleting: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DataVolumeBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    status: PhaseStatus,
}

impl Body for DataVolumeBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        let messages = self
            .status
            .conditions
            .into_iter()
            .filter(|c| c.status != "True")
            .map(|c| c.message.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        Entry::DataVolume(DataVolumeInfo {
            phase: self.status.phase,
            messages,
            deleting: self.metadata.deletion_timestamp,
        })
    }
}

/// Does something with the wire type of a kind. The kind → type choice is made once, in
/// [`visit_kind`], for every source.
pub trait KindVisitor {
    type Output;
    fn visit<B: Body>(self, kind: Kind) -> Self::Output;
}

/// Calls the visitor with the wire type `kind` is read into.
pub fn visit_kind<V: KindVisitor>(kind: Kind, visitor: V) -> V::Output {
    match kind {
        Kind::Node => visitor.visit::<super::nodes::NodeBody>(kind),
        Kind::Namespace => visitor.visit::<NamespaceBody>(kind),
        Kind::StorageClass => visitor.visit::<StorageClassBody>(kind),
        Kind::StorageProfile => visitor.visit::<StorageProfileBody>(kind),
        Kind::PersistentVolumeClaim => visitor.visit::<PvcBody>(kind),
        Kind::DataVolume => visitor.visit::<DataVolumeBody>(kind),
        Kind::Secret
        | Kind::ConfigMap
        | Kind::ServiceAccount
        | Kind::PriorityClass
        | Kind::NetworkAttachmentDefinition
        | Kind::VirtualMachineInstancetype
        | Kind::VirtualMachineClusterInstancetype
        | Kind::VirtualMachinePreference
        | Kind::VirtualMachineClusterPreference => visitor.visit::<NameOnly>(kind),
    }
}

/// An object of kind body `B` as kube-rs lists and watches it: the body, and the little of the
/// metadata the watch itself needs (name, namespace, resourceVersion).
#[derive(Debug, Clone)]
pub struct Wire<B> {
    meta: ObjectMeta,
    pub body: B,
}

impl<'de, B: Body> Deserialize<'de> for Wire<B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let body = B::deserialize(deserializer)?;
        let meta = body.meta();
        let meta = ObjectMeta {
            name: Some(meta.name.to_string()),
            namespace: meta.namespace.map(str::to_string),
            resource_version: meta.resource_version.map(str::to_string),
            ..ObjectMeta::default()
        };
        Ok(Wire { meta, body })
    }
}

impl<B: Body> kube::Resource for Wire<B> {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.kind)
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.group)
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.version)
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.api_version)
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.plural)
    }
    fn metadata_api() -> bool {
        B::METADATA_ONLY
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
    fn names_only_kinds_keep_no_byte_of_data_or_annotations() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "prod", "resourceVersion": "7",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                    "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"},
                "managedFields": [{"manager": "kubectl"}]},
            "data": {"password": "aHVudGVyMg=="}
        });
        let wire: Wire<NameOnly> = serde_json::from_value(secret).unwrap();
        let kept = format!("{wire:?}");
        assert!(!kept.contains("aHVudGVyMg"), "{kept}");
        assert!(!kept.contains("last-applied"), "{kept}");
        assert_eq!(wire.body.meta().name, "db");
        assert_eq!(wire.meta.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn namespaces_keep_the_policy_mode_label() {
        assert_eq!(crate::policy::MODE_LABEL, "virt-preflight.io/mode");
        let namespace: NamespaceBody = serde_json::from_value(json!({
            "metadata": {"name": "ns", "labels": {"virt-preflight.io/mode": "warn", "team": "a"}}
        }))
        .unwrap();
        let Entry::Namespace(info) = namespace.into_entry() else {
            panic!("a Namespace entry");
        };
        assert_eq!(info.mode.as_deref(), Some("warn"));
    }

    #[test]
    fn storage_classes_keep_the_default_annotations_only() {
        let class: StorageClassBody = serde_json::from_value(json!({
            "metadata": {"name": "fast", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true", "other": "x"}}
        }))
        .unwrap();
        let Entry::StorageClass(info) = class.into_entry() else {
            panic!("a StorageClass entry");
        };
        assert!(info.default && !info.virt_default);
    }

    #[test]
    fn pvcs_and_datavolumes_say_when_they_are_being_deleted() {
        let pvc: PvcBody = serde_json::from_value(json!({
            "metadata": {"name": "disk", "namespace": "ns", "deletionTimestamp": "2026-11-29T00:00:00Z"},
            "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"]},
            "status": {"phase": "Bound"}
        }))
        .unwrap();
        let Entry::Pvc(info) = pvc.into_entry() else {
            panic!("a PVC entry");
        };
        assert!(info.deleting);
        assert_eq!(info.access_modes, vec!["ReadWriteOnce".to_string()]);
        let dv: DataVolumeBody = serde_json::from_value(json!({
            "metadata": {"name": "dv"},
            "status": {"phase": "Pending", "conditions": [
                {"type": "Bound", "status": "False", "message": " PVC dv Pending "},
                {"type": "Ready", "status": "True", "message": "fine"}]}
        }))
        .unwrap();
        let Entry::DataVolume(info) = dv.into_entry() else {
            panic!("a DataVolume entry");
        };
        assert_eq!(info.messages, vec!["PVC dv Pending".to_string()]);
        assert!(!info.deleting);
    }
}
