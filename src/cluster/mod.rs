//! A read-only, indexed picture of the cluster: what the cluster rules look up.
//!
//! The view is immutable once built and cheap to share (`Arc`). It is built from objects by a
//! [`ViewBuilder`], whatever their source: a snapshot file ([`snapshot`]), one list per kind
//! ([`live`]), or watchers that rebuild the part of a kind that changed. Each kind is either
//! **known** (listed or synced) or **unknown**; lookups on an unknown kind answer `None`, and
//! a rule that gets `None` reports nothing: never a finding on data we do not have.

pub mod kubevirt;
pub mod live;
pub mod nodes;
pub mod snapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use foldhash::{HashMap, HashSet};
use serde::Deserialize;
use serde_json::Value;

pub use nodes::{NodeIndex, NodeInfo, NodeSet};

/// Every kind of object the cluster rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    Node,
    StorageClass,
    StorageProfile,
    PriorityClass,
    Namespace,
    Secret,
    ConfigMap,
    ServiceAccount,
    PersistentVolumeClaim,
    DataVolume,
    NetworkAttachmentDefinition,
    VirtualMachineInstancetype,
    VirtualMachineClusterInstancetype,
    VirtualMachinePreference,
    VirtualMachineClusterPreference,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::Node,
        Kind::StorageClass,
        Kind::StorageProfile,
        Kind::PriorityClass,
        Kind::Namespace,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::ServiceAccount,
        Kind::PersistentVolumeClaim,
        Kind::DataVolume,
        Kind::NetworkAttachmentDefinition,
        Kind::VirtualMachineInstancetype,
        Kind::VirtualMachineClusterInstancetype,
        Kind::VirtualMachinePreference,
        Kind::VirtualMachineClusterPreference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::StorageClass => "StorageClass",
            Kind::StorageProfile => "StorageProfile",
            Kind::PriorityClass => "PriorityClass",
            Kind::Namespace => "Namespace",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::DataVolume => "DataVolume",
            Kind::NetworkAttachmentDefinition => "NetworkAttachmentDefinition",
            Kind::VirtualMachineInstancetype => "VirtualMachineInstancetype",
            Kind::VirtualMachineClusterInstancetype => "VirtualMachineClusterInstancetype",
            Kind::VirtualMachinePreference => "VirtualMachinePreference",
            Kind::VirtualMachineClusterPreference => "VirtualMachineClusterPreference",
        }
    }

    /// API group (empty for core) of the kind.
    pub fn group(self) -> &'static str {
        match self {
            Kind::Node
            | Kind::Namespace
            | Kind::Secret
            | Kind::ConfigMap
            | Kind::ServiceAccount
            | Kind::PersistentVolumeClaim => "",
            Kind::StorageClass => "storage.k8s.io",
            Kind::PriorityClass => "scheduling.k8s.io",
            Kind::StorageProfile | Kind::DataVolume => "cdi.kubevirt.io",
            Kind::NetworkAttachmentDefinition => "k8s.cni.cncf.io",
            Kind::VirtualMachineInstancetype
            | Kind::VirtualMachineClusterInstancetype
            | Kind::VirtualMachinePreference
            | Kind::VirtualMachineClusterPreference => "instancetype.kubevirt.io",
        }
    }

    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            Kind::Secret
                | Kind::ConfigMap
                | Kind::ServiceAccount
                | Kind::PersistentVolumeClaim
                | Kind::DataVolume
                | Kind::NetworkAttachmentDefinition
                | Kind::VirtualMachineInstancetype
                | Kind::VirtualMachinePreference
        )
    }

    /// The kind an object is, from its `apiVersion` and `kind` (any version of the group).
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind && k.group() == group)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of kinds, as a bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet(u32);

impl KindSet {
    pub fn insert(&mut self, kind: Kind) {
        self.0 |= 1 << kind as u32;
    }
    pub fn remove(&mut self, kind: Kind) {
        self.0 &= !(1 << kind as u32);
    }
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & (1 << kind as u32) != 0
    }
    pub fn contains_all(self, kinds: &[Kind]) -> bool {
        kinds.iter().all(|k| self.contains(*k))
    }
    pub fn all() -> KindSet {
        let mut set = KindSet::default();
        for kind in Kind::ALL {
            set.insert(kind);
        }
        set
    }
    pub fn bits(self) -> u32 {
        self.0
    }
    pub fn from_bits(bits: u32) -> KindSet {
        KindSet(bits)
    }
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// A PersistentVolumeClaim, as far as the rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvcInfo {
    pub phase: Option<String>,
    pub storage_class: Option<String>,
}

/// A CDI DataVolume's progress, as far as diagnosing a stuck VM cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataVolumeInfo {
    /// `status.phase`: Pending, ImportInProgress, Succeeded, Failed, …
    pub phase: Option<String>,
    /// Messages of its conditions whose status is not True ("Bound" False: "PVC x Pending").
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageClassInfo {
    /// `storageclass.kubernetes.io/is-default-class` is "true".
    pub default: bool,
    /// `storageclass.kubevirt.io/is-default-virt-class` is "true".
    pub virt_default: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageProfileInfo {
    /// `status.claimPropertySets` offers at least one access mode.
    pub has_access_modes: bool,
}

/// Names by namespace, for the kinds whose existence is all the rules need.
pub type NamesByNamespace = HashMap<String, HashSet<String>>;

/// Objects by namespace, then name: looked up by `&str` pairs, with no key built per lookup.
pub type ByNamespace<T> = HashMap<String, HashMap<String, T>>;

/// StorageClasses by name, and the one a claim without a class gets.
#[derive(Debug, Clone, Default)]
pub struct StorageClasses {
    by_name: HashMap<String, StorageClassInfo>,
    default: Option<String>,
}

impl StorageClasses {
    fn new(by_name: HashMap<String, StorageClassInfo>) -> Self {
        let default = default_class(&by_name).map(str::to_string);
        StorageClasses { by_name, default }
    }
}

/// The class CDI gives a DataVolume that names none: the KubeVirt default
/// (`storageclass.kubevirt.io/is-default-virt-class`) before the Kubernetes default; among
/// several of a kind, the first by name (the view does not keep creation times).
fn default_class(by_name: &HashMap<String, StorageClassInfo>) -> Option<&str> {
    let first_of = |wanted: fn(&StorageClassInfo) -> bool| {
        by_name
            .iter()
            .filter(|(_, info)| wanted(info))
            .map(|(name, _)| name.as_str())
            .min()
    };
    first_of(|info| info.virt_default).or_else(|| first_of(|info| info.default))
}

/// The indexed, immutable cluster picture. Each part is an `Arc` so that a watcher can rebuild
/// one kind without copying the others.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    known: KindSet,
    names: HashMap<Kind, Arc<NamesByNamespace>>,
    cluster_names: HashMap<Kind, Arc<HashSet<String>>>,
    pvcs: Arc<ByNamespace<PvcInfo>>,
    datavolumes: Arc<ByNamespace<DataVolumeInfo>>,
    storage_classes: Arc<StorageClasses>,
    storage_profiles: Arc<HashMap<String, StorageProfileInfo>>,
    namespace_labels: Arc<HashMap<String, BTreeMap<String, String>>>,
    nodes: Arc<NodeIndex>,
}

impl ClusterView {
    /// A namespace's labels; `None` when Namespaces are unknown or this one is not listed.
    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        if !self.is_known(Kind::Namespace) {
            return None;
        }
        self.namespace_labels.get(namespace)
    }

    pub fn known(&self) -> KindSet {
        self.known
    }

    pub fn is_known(&self, kind: Kind) -> bool {
        self.known.contains(kind)
    }

    /// Whether `namespace/name` of a namespaced `kind` exists; `None` when the kind is unknown.
    pub fn exists(&self, kind: Kind, namespace: &str, name: &str) -> Option<bool> {
        if !self.is_known(kind) {
            return None;
        }
        if kind == Kind::PersistentVolumeClaim {
            return Some(lookup(&self.pvcs, namespace, name).is_some());
        }
        if kind.is_namespaced() {
            Some(
                self.names
                    .get(&kind)
                    .and_then(|by_ns| by_ns.get(namespace))
                    .is_some_and(|names| names.contains(name)),
            )
        } else {
            Some(
                self.cluster_names
                    .get(&kind)
                    .is_some_and(|names| names.contains(name)),
            )
        }
    }

    pub fn pvc(&self, namespace: &str, name: &str) -> Option<Option<&PvcInfo>> {
        self.is_known(Kind::PersistentVolumeClaim)
            .then(|| lookup(&self.pvcs, namespace, name))
    }

    /// A DataVolume's phase and messages; `None` when DataVolumes are unknown.
    pub fn datavolume(&self, namespace: &str, name: &str) -> Option<Option<&DataVolumeInfo>> {
        self.is_known(Kind::DataVolume)
            .then(|| lookup(&self.datavolumes, namespace, name))
    }

    pub fn storage_class(&self, name: &str) -> Option<Option<&StorageClassInfo>> {
        self.is_known(Kind::StorageClass)
            .then(|| self.storage_classes.by_name.get(name))
    }

    /// Name of the default StorageClass (the virt default first), if known.
    pub fn default_storage_class(&self) -> Option<Option<&str>> {
        self.is_known(Kind::StorageClass)
            .then(|| self.storage_classes.default.as_deref())
    }

    pub fn storage_profile(&self, storage_class: &str) -> Option<Option<&StorageProfileInfo>> {
        self.is_known(Kind::StorageProfile)
            .then(|| self.storage_profiles.get(storage_class))
    }

    /// The node index; `None` when Nodes are unknown.
    pub fn nodes(&self) -> Option<&NodeIndex> {
        self.is_known(Kind::Node).then_some(self.nodes.as_ref())
    }

    /// Replaces one kind's data with a fresh build of it (used by the watchers).
    pub fn replace_kind(&mut self, kind: Kind, from: &ClusterView) {
        match kind {
            Kind::Node => self.nodes = from.nodes.clone(),
            Kind::PersistentVolumeClaim => self.pvcs = from.pvcs.clone(),
            Kind::StorageClass => self.storage_classes = from.storage_classes.clone(),
            Kind::StorageProfile => self.storage_profiles = from.storage_profiles.clone(),
            _ => {
                if kind == Kind::Namespace {
                    self.namespace_labels = from.namespace_labels.clone();
                }
                if kind == Kind::DataVolume {
                    self.datavolumes = from.datavolumes.clone();
                }
                if kind.is_namespaced() {
                    replace_entry(&mut self.names, &from.names, kind);
                } else {
                    replace_entry(&mut self.cluster_names, &from.cluster_names, kind);
                }
            }
        }
        if from.known.contains(kind) {
            self.known.insert(kind);
        } else {
            self.known.remove(kind);
        }
    }

    /// Rough bytes held, for the benchmark's memory figure.
    pub fn approximate_bytes(&self) -> usize {
        let set_bytes = |set: &HashSet<String>| {
            set.iter().map(|s| s.capacity() + 32).sum::<usize>() + set.capacity() * 8
        };
        let names: usize = self
            .names
            .values()
            .flat_map(|by_ns| by_ns.iter())
            .map(|(ns, set)| ns.capacity() + set_bytes(set))
            .sum();
        let cluster: usize = self.cluster_names.values().map(|s| set_bytes(s)).sum();
        let pvcs = self.pvcs.values().map(HashMap::len).sum::<usize>() * 160;
        names + cluster + pvcs + self.nodes.approximate_bytes()
    }
}

fn lookup<'v, T>(objects: &'v ByNamespace<T>, namespace: &str, name: &str) -> Option<&'v T> {
    objects.get(namespace).and_then(|names| names.get(name))
}

fn replace_entry<V: Clone>(mine: &mut HashMap<Kind, V>, theirs: &HashMap<Kind, V>, kind: Kind) {
    match theirs.get(&kind) {
        Some(value) => {
            mine.insert(kind, value.clone());
        }
        None => {
            mine.remove(&kind);
        }
    }
}

/// Why an object could not be added to the view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name}: {message}")]
pub struct ObjectError {
    pub kind: Kind,
    pub name: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct WithMeta {
    metadata: Meta,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PvcObject {
    metadata: Meta,
    #[serde(default)]
    spec: PvcSpec,
    #[serde(default)]
    status: PvcStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PvcSpec {
    storage_class_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct PvcStatus {
    phase: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StorageProfileObject {
    metadata: Meta,
    #[serde(default)]
    status: StorageProfileStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StorageProfileStatus {
    #[serde(default)]
    claim_property_sets: Vec<ClaimPropertySet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimPropertySet {
    #[serde(default)]
    access_modes: Vec<String>,
}

/// A namespaced object without a namespace (a manifest used as a snapshot) lands where
/// `kubectl apply` would put it.
fn namespace_or_default(namespace: String) -> String {
    if namespace.is_empty() {
        "default".to_string()
    } else {
        namespace
    }
}

/// A DataVolume's phase and the messages of its conditions that are not True. Tolerant: a
/// DataVolume read as metadata only (a snapshot without status) has no phase.
fn datavolume_info(object: &Value) -> DataVolumeInfo {
    let status = object.get("status");
    let phase = status
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .map(String::from);
    let messages = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("status").and_then(Value::as_str) != Some("True"))
        .filter_map(|c| {
            let message = c.get("message")?.as_str()?.trim();
            (!message.is_empty()).then(|| message.to_string())
        })
        .collect();
    DataVolumeInfo { phase, messages }
}

const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const VIRT_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubevirt.io/is-default-virt-class";

/// Collects objects, then builds a [`ClusterView`].
#[derive(Debug, Default)]
pub struct ViewBuilder {
    known: KindSet,
    names: HashMap<Kind, NamesByNamespace>,
    cluster_names: HashMap<Kind, HashSet<String>>,
    pvcs: ByNamespace<PvcInfo>,
    datavolumes: ByNamespace<DataVolumeInfo>,
    storage_classes: HashMap<String, StorageClassInfo>,
    storage_profiles: HashMap<String, StorageProfileInfo>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    nodes: Vec<NodeInfo>,
}

impl ViewBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a kind known (listed) even if it had no objects.
    pub fn mark_known(&mut self, kind: Kind) {
        self.known.insert(kind);
    }

    /// Adds one object of `kind`, given as its JSON (a full object or PartialObjectMetadata).
    pub fn add(&mut self, kind: Kind, object: &Value) -> Result<(), ObjectError> {
        self.known.insert(kind);
        let fail = |message: String| ObjectError {
            kind,
            name: object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
                .to_string(),
            message,
        };
        match kind {
            Kind::Node => {
                let node = NodeInfo::from_value(object).map_err(fail)?;
                self.nodes.push(node);
            }
            Kind::PersistentVolumeClaim => {
                let pvc = PvcObject::deserialize(object).map_err(|e| fail(e.to_string()))?;
                self.pvcs
                    .entry(namespace_or_default(pvc.metadata.namespace))
                    .or_default()
                    .insert(
                        pvc.metadata.name,
                        PvcInfo {
                            phase: pvc.status.phase,
                            storage_class: pvc.spec.storage_class_name,
                        },
                    );
            }
            Kind::StorageClass => {
                let meta = WithMeta::deserialize(object)
                    .map_err(|e| fail(e.to_string()))?
                    .metadata;
                let annotated =
                    |key: &str| meta.annotations.get(key).map(String::as_str) == Some("true");
                let info = StorageClassInfo {
                    default: annotated(DEFAULT_CLASS_ANNOTATION),
                    virt_default: annotated(VIRT_DEFAULT_CLASS_ANNOTATION),
                };
                self.storage_classes.insert(meta.name, info);
            }
            Kind::StorageProfile => {
                let profile =
                    StorageProfileObject::deserialize(object).map_err(|e| fail(e.to_string()))?;
                let has_access_modes = profile
                    .status
                    .claim_property_sets
                    .iter()
                    .any(|set| !set.access_modes.is_empty());
                self.storage_profiles.insert(
                    profile.metadata.name,
                    StorageProfileInfo { has_access_modes },
                );
            }
            _ => {
                let meta = WithMeta::deserialize(object)
                    .map_err(|e| fail(e.to_string()))?
                    .metadata;
                if kind == Kind::Namespace {
                    self.namespace_labels.insert(meta.name.clone(), meta.labels);
                }
                if kind == Kind::DataVolume {
                    self.datavolumes
                        .entry(namespace_or_default(meta.namespace.clone()))
                        .or_default()
                        .insert(meta.name.clone(), datavolume_info(object));
                }
                if kind.is_namespaced() {
                    self.names
                        .entry(kind)
                        .or_default()
                        .entry(namespace_or_default(meta.namespace))
                        .or_default()
                        .insert(meta.name);
                } else {
                    self.cluster_names
                        .entry(kind)
                        .or_default()
                        .insert(meta.name);
                }
            }
        }
        Ok(())
    }

    pub fn build(self) -> ClusterView {
        ClusterView {
            known: self.known,
            names: self
                .names
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            cluster_names: self
                .cluster_names
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            pvcs: Arc::new(self.pvcs),
            datavolumes: Arc::new(self.datavolumes),
            storage_classes: Arc::new(StorageClasses::new(self.storage_classes)),
            storage_profiles: Arc::new(self.storage_profiles),
            namespace_labels: Arc::new(self.namespace_labels),
            nodes: Arc::new(NodeIndex::new(self.nodes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_recognised_by_group_not_version() {
        assert_eq!(Kind::of("v1", "Secret"), Some(Kind::Secret));
        assert_eq!(
            Kind::of("cdi.kubevirt.io/v1beta1", "DataVolume"),
            Some(Kind::DataVolume)
        );
        assert_eq!(Kind::of("example.com/v1", "Secret"), None);
        assert_eq!(Kind::of("v1", "Pod"), None);
    }

    #[test]
    fn unknown_kinds_answer_none() {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::Secret,
                &json!({"metadata": {"name": "s", "namespace": "ns"}}),
            )
            .unwrap();
        builder.mark_known(Kind::ConfigMap);
        let view = builder.build();
        assert_eq!(view.exists(Kind::Secret, "ns", "s"), Some(true));
        assert_eq!(view.exists(Kind::Secret, "other", "s"), Some(false));
        assert_eq!(view.exists(Kind::ConfigMap, "ns", "c"), Some(false));
        assert_eq!(view.exists(Kind::ServiceAccount, "ns", "sa"), None);
        assert!(view.nodes().is_none());
    }

    #[test]
    fn storage_class_defaults_and_profiles() {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::StorageClass,
                &json!({"metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
            )
            .unwrap();
        builder
            .add(Kind::StorageClass, &json!({"metadata": {"name": "slow"}}))
            .unwrap();
        builder
            .add(
                Kind::StorageProfile,
                &json!({"metadata": {"name": "slow"}, "status": {"claimPropertySets": [{"volumeMode": "Block"}]}}),
            )
            .unwrap();
        let view = builder.build();
        assert_eq!(view.default_storage_class(), Some(Some("fast")));

        // CDI gives a claim without a class the KubeVirt default before the Kubernetes one.
        let mut builder = ViewBuilder::new();
        for (name, annotation) in [
            ("a-kube", "storageclass.kubernetes.io/is-default-class"),
            ("z-virt", "storageclass.kubevirt.io/is-default-virt-class"),
        ] {
            builder
                .add(
                    Kind::StorageClass,
                    &json!({"metadata": {"name": name, "annotations": {annotation: "true"}}}),
                )
                .unwrap();
        }
        assert_eq!(
            builder.build().default_storage_class(),
            Some(Some("z-virt"))
        );
        assert_eq!(
            view.storage_profile("slow"),
            Some(Some(&StorageProfileInfo {
                has_access_modes: false
            }))
        );
    }
}
