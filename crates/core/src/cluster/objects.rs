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
//! | Secret, ConfigMap, ServiceAccount, PriorityClass, NetworkAttachmentDefinition, preferences | namespace, name |
//! | VirtualMachineInstancetype, VirtualMachineClusterInstancetype | the spec the launcher's figures read ([`InstancetypeSpec`]) |
//! | Namespace | the `virt-preflight.io/mode` label |
//! | Node | labels, NoSchedule/NoExecute taints, `spec.unschedulable`, Ready, allocatable, device resources with no healthy device ([`NodeInfo`]) |
//! | StorageClass | the two default-class annotations |
//! | StorageProfile | `status.claimPropertySets` (access and volume modes) |
//! | PersistentVolumeClaim | `spec.storageClassName`, `spec.accessModes`, `status.phase`, being deleted |
//! | DataVolume | `status.phase`, messages of conditions that are not True, being deleted |
//! | KubeVirt | the version it runs, the configuration that changes what a VM needs, its conditions ([`super::kubevirt`]) |
//! | ResourceQuota | `status.hard`, `status.used`, whether it is scoped, whether `spec.hard` is `status.hard` |
//! | LimitRange | `spec.limits`: type, max, min, default, defaultRequest |
//! | DataSource | its Ready condition |
//! | VirtualMachine | the claims it mounts (and whether shareable), whether it starts |
//! | Deployment `virt-controller`, DaemonSet `virt-handler` (no other name is read) | how many pods are ready of how many wanted ([`Readiness`]) |

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::ApiResource;
use kube_core::DynamicResourceScope;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::Kind;
use super::kubevirt::{KubeVirt, RawKubeVirt};
use super::nodes::{NodeBody, NodeInfo};
use super::table::Name;
use super::wire::present;
pub use super::wire::{Meta, MetaRef, Skipped};
use crate::launcher::InstancetypeSpec;
use crate::model::{ParsedQuantity, QuantityText};

/// One object as the view stores it, in its kind's table. The larger payloads are shared
/// (`Arc`), so that an entry is two words: the view holds 100,000 Secrets as names.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Existence is all the rules need.
    Name,
    Namespace(Arc<NamespaceInfo>),
    Node(Arc<NodeInfo>),
    StorageClass(StorageClassInfo),
    StorageProfile(Arc<StorageProfileInfo>),
    Pvc(Arc<PvcInfo>),
    DataVolume(Arc<DataVolumeInfo>),
    KubeVirt(Arc<KubeVirt>),
    ResourceQuota(Arc<QuotaInfo>),
    LimitRange(Arc<LimitRangeInfo>),
    DataSource(Arc<DataSourceInfo>),
    /// An instancetype's spec; `None` when it does not read as one (its figures are unknown).
    Instancetype(Option<Arc<InstancetypeSpec>>),
    VirtualMachine(Arc<VmClaims>),
    /// A KubeVirt component's Deployment or DaemonSet.
    Readiness(Arc<Readiness>),
}

/// What an entry holds, typed: the view's accessors read a kind's table through it.
pub trait Stored {
    fn of(entry: &Entry) -> Option<&Self>;
}

/// `Stored` for the payload of one `Entry` variant (through its `Arc`, if shared).
macro_rules! stored {
    ($type:ty, $variant:ident) => {
        impl Stored for $type {
            fn of(entry: &Entry) -> Option<&Self> {
                match entry {
                    Entry::$variant(payload) => Some(payload),
                    _ => None,
                }
            }
        }
    };
}

stored!(NamespaceInfo, Namespace);
stored!(NodeInfo, Node);
stored!(StorageClassInfo, StorageClass);
stored!(StorageProfileInfo, StorageProfile);
stored!(PvcInfo, Pvc);
stored!(DataVolumeInfo, DataVolume);
stored!(KubeVirt, KubeVirt);
stored!(QuotaInfo, ResourceQuota);
stored!(LimitRangeInfo, LimitRange);
stored!(DataSourceInfo, DataSource);
stored!(Option<Arc<InstancetypeSpec>>, Instancetype);
stored!(VmClaims, VirtualMachine);
stored!(Readiness, Readiness);

/// How a kind is read off the wire and what it leaves in the view.
pub trait Body: DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// The API server's metadata-only form (`PartialObjectMetadata`) holds all the view keeps:
    /// list and watch ask for it, so the server never sends the rest.
    const METADATA_ONLY: bool;
    fn meta(&self) -> MetaRef<'_>;
    fn into_entry(self) -> Entry;
}

/// An instancetype (either kind): the launcher's memory and CPUs come from its spec.
#[derive(Debug, Clone, Deserialize)]
pub struct InstancetypeBody {
    #[serde(default)]
    metadata: Meta,
    /// Read as a tree and typed in [`Body::into_entry`], so that a spec this version does not
    /// read leaves the instancetype known to exist, with unknown figures.
    #[serde(default)]
    spec: serde_json::Value,
}

impl Body for InstancetypeBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        let spec = InstancetypeSpec::from_object(&serde_json::json!({"spec": self.spec}));
        Entry::Instancetype(spec.ok().map(Arc::new))
    }
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
        Entry::Namespace(Arc::new(NamespaceInfo {
            mode: self.metadata.labels.mode.map(Name::from),
        }))
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
        Entry::StorageProfile(Arc::new(StorageProfileInfo {
            claim_property_sets: self.status.claim_property_sets,
        }))
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
        Entry::Pvc(Arc::new(PvcInfo {
            phase: self.status.phase,
            storage_class: self.spec.storage_class_name,
            access_modes: self.spec.access_modes,
            deleting: self.metadata.deletion_timestamp,
        }))
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
        Entry::DataVolume(Arc::new(DataVolumeInfo {
            phase: self.status.phase,
            messages,
            deleting: self.metadata.deletion_timestamp,
        }))
    }
}

/// Quantities by resource name; one that does not parse is left out (its rule then has
/// nothing to compare, and reports nothing).
pub type Quantities = BTreeMap<String, ParsedQuantity>;

fn parsed(texts: BTreeMap<String, QuantityText>) -> Quantities {
    texts
        .into_iter()
        .filter_map(|(name, text)| Some((name, text.parse().ok()?)))
        .collect()
}

/// A ResourceQuota: what it allows and what is used of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaInfo {
    pub hard: Quantities,
    pub used: Quantities,
    /// It has `scopes` or a `scopeSelector`: it counts only some pods, and which ones the view
    /// cannot always tell, so rules leave it out.
    pub scoped: bool,
    /// `status.hard` is `spec.hard`: the quota controller has caught up with the last edit. Until
    /// it has (a quota raised in the same sync as the VM, a new quota), what the API server will
    /// enforce by the time the VM's pod is created is not known, so rules leave it out.
    pub settled: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuotaBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: QuotaSpec,
    #[serde(default)]
    status: QuotaStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuotaSpec {
    #[serde(default)]
    hard: BTreeMap<String, QuantityText>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    scope_selector: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct QuotaStatus {
    #[serde(default)]
    hard: BTreeMap<String, QuantityText>,
    #[serde(default)]
    used: BTreeMap<String, QuantityText>,
}

impl Body for QuotaBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        let hard = parsed(self.status.hard);
        Entry::ResourceQuota(Arc::new(QuotaInfo {
            settled: parsed(self.spec.hard) == hard,
            hard,
            used: parsed(self.status.used),
            scoped: !self.spec.scopes.is_empty() || self.spec.scope_selector,
        }))
    }
}

/// One item of a LimitRange's `spec.limits`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitItem {
    /// `Container`, `Pod` or `PersistentVolumeClaim`.
    pub type_: String,
    pub max: Quantities,
    pub min: Quantities,
    pub default: Quantities,
    pub default_request: Quantities,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitRangeInfo {
    pub limits: Vec<LimitItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitRangeBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: LimitRangeSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct LimitRangeSpec {
    #[serde(default)]
    limits: Vec<RawLimitItem>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLimitItem {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    max: BTreeMap<String, QuantityText>,
    #[serde(default)]
    min: BTreeMap<String, QuantityText>,
    #[serde(default)]
    default: BTreeMap<String, QuantityText>,
    #[serde(default)]
    default_request: BTreeMap<String, QuantityText>,
}

impl Body for LimitRangeBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::LimitRange(Arc::new(LimitRangeInfo {
            limits: self
                .spec
                .limits
                .into_iter()
                .map(|item| LimitItem {
                    type_: item.type_,
                    max: parsed(item.max),
                    min: parsed(item.min),
                    default: parsed(item.default),
                    default_request: parsed(item.default_request),
                })
                .collect(),
        }))
    }
}

/// A CDI DataSource: a name for a golden image, ready once its source is imported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSourceInfo {
    /// The `Ready` condition's status: `None` when it has none yet.
    pub ready: Option<bool>,
    /// Its reason or message, for what a finding says.
    pub reason: Option<String>,
    /// The namespace of the PVC it points at (`spec.source.pvc`; `None` for another kind of
    /// source): cloning from another namespace needs CDI's clone permission there.
    pub source_namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DataSourceBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: DataSourceSpec,
    #[serde(default)]
    status: DataSourceStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DataSourceSpec {
    #[serde(default)]
    source: DataSourceSource,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DataSourceSource {
    pvc: Option<DataSourcePvc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DataSourcePvc {
    namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DataSourceStatus {
    #[serde(default)]
    conditions: Vec<TypedCondition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TypedCondition {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

impl Body for DataSourceBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        // A PVC source without a namespace is in the DataSource's own.
        let own = self.metadata.namespace.clone();
        let source_namespace = self
            .spec
            .source
            .pvc
            .and_then(|pvc| pvc.namespace.filter(|ns| !ns.is_empty()).or(own));
        let ready = self
            .status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready");
        Entry::DataSource(Arc::new(DataSourceInfo {
            ready: ready.as_ref().and_then(|c| match c.status.as_str() {
                "True" => Some(true),
                "False" => Some(false),
                _ => None,
            }),
            reason: ready.and_then(|c| {
                [c.message, c.reason]
                    .into_iter()
                    .map(|text| text.trim().to_string())
                    .find(|text| !text.is_empty())
            }),
            source_namespace,
        }))
    }
}

/// A claim another VM mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimUse {
    /// The PVC's name (a dataVolume volume mounts the PVC of the DataVolume's name).
    pub claim: Name,
    /// Its disk is `shareable: true`.
    pub shareable: bool,
}

/// Another VM of the namespace, as far as the claims it holds go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmClaims {
    pub claims: Vec<ClaimUse>,
    /// It runs, or will, as written (not Halted; see `VirtualMachine::will_start`).
    pub starts: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VirtualMachineBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: SlimVmSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimVmSpec {
    running: Option<bool>,
    run_strategy: Option<String>,
    #[serde(default)]
    template: SlimTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SlimTemplate {
    #[serde(default)]
    spec: SlimVmiSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SlimVmiSpec {
    #[serde(default)]
    domain: SlimDomain,
    #[serde(default)]
    volumes: Vec<SlimVolume>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SlimDomain {
    #[serde(default)]
    devices: SlimDevices,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SlimDevices {
    #[serde(default)]
    disks: Vec<SlimDisk>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SlimDisk {
    #[serde(default)]
    name: String,
    #[serde(default)]
    shareable: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimVolume {
    #[serde(default)]
    name: String,
    persistent_volume_claim: Option<ClaimName>,
    data_volume: Option<DataVolumeName>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimName {
    #[serde(default)]
    claim_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DataVolumeName {
    #[serde(default)]
    name: String,
}

impl Body for VirtualMachineBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        let spec = self.spec.template.spec;
        let shareable = |volume: &str| {
            spec.domain
                .devices
                .disks
                .iter()
                .any(|d| d.name == volume && d.shareable == Some(true))
        };
        let claims = spec
            .volumes
            .iter()
            .filter_map(|volume| {
                let claim = match (&volume.persistent_volume_claim, &volume.data_volume) {
                    (Some(pvc), _) => pvc.claim_name.as_str(),
                    (None, Some(dv)) => dv.name.as_str(),
                    (None, None) => return None,
                };
                (!claim.is_empty()).then(|| ClaimUse {
                    claim: Name::from(claim),
                    shareable: shareable(&volume.name),
                })
            })
            .collect();
        Entry::VirtualMachine(Arc::new(VmClaims {
            claims,
            starts: crate::model::starts(self.spec.running, self.spec.run_strategy.as_deref()),
        }))
    }
}

/// How many of a KubeVirt component's pods are ready, of how many its controller wants: the
/// Deployment `virt-controller` (`spec.replicas`, `status.readyReplicas`) or the DaemonSet
/// `virt-handler` (`status.desiredNumberScheduled`, `status.numberReady`). `None` before the
/// workload's controller has written a status: nothing is known yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    pub counts: Option<ReadyCounts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyCounts {
    pub ready: u32,
    pub desired: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentBody {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: DeploymentSpec,
    status: Option<DeploymentStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DeploymentSpec {
    replicas: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentStatus {
    /// `omitempty`: absent is zero.
    ready_replicas: Option<u32>,
}

impl Body for DeploymentBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::Readiness(Arc::new(Readiness {
            counts: self.status.map(|status| ReadyCounts {
                ready: status.ready_replicas.unwrap_or(0),
                // The API server defaults an unset `replicas` to 1.
                desired: self.spec.replicas.unwrap_or(1),
            }),
        }))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DaemonSetBody {
    #[serde(default)]
    metadata: Meta,
    status: Option<DaemonSetStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DaemonSetStatus {
    desired_number_scheduled: Option<u32>,
    number_ready: Option<u32>,
}

impl Body for DaemonSetBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::Readiness(Arc::new(Readiness {
            counts: self.status.and_then(|status| {
                Some(ReadyCounts {
                    ready: status.number_ready.unwrap_or(0),
                    desired: status.desired_number_scheduled?,
                })
            }),
        }))
    }
}

// The wire types of nodes.rs and kubevirt.rs leave their entries here, so that those modules
// need only the metadata of `wire.rs`, not this one.
impl Body for NodeBody {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::Node(Arc::new(NodeInfo::from(self)))
    }
}

impl Body for RawKubeVirt {
    const METADATA_ONLY: bool = false;
    fn meta(&self) -> MetaRef<'_> {
        self.metadata.as_ref()
    }
    fn into_entry(self) -> Entry {
        Entry::KubeVirt(Arc::new(KubeVirt::from(self)))
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
        Kind::Node => visitor.visit::<NodeBody>(kind),
        Kind::Namespace => visitor.visit::<NamespaceBody>(kind),
        Kind::StorageClass => visitor.visit::<StorageClassBody>(kind),
        Kind::StorageProfile => visitor.visit::<StorageProfileBody>(kind),
        Kind::PersistentVolumeClaim => visitor.visit::<PvcBody>(kind),
        Kind::DataVolume => visitor.visit::<DataVolumeBody>(kind),
        Kind::KubeVirt => visitor.visit::<RawKubeVirt>(kind),
        Kind::ResourceQuota => visitor.visit::<QuotaBody>(kind),
        Kind::LimitRange => visitor.visit::<LimitRangeBody>(kind),
        Kind::DataSource => visitor.visit::<DataSourceBody>(kind),
        Kind::VirtualMachineInstancetype | Kind::VirtualMachineClusterInstancetype => {
            visitor.visit::<InstancetypeBody>(kind)
        }
        Kind::VirtualMachine => visitor.visit::<VirtualMachineBody>(kind),
        Kind::Deployment => visitor.visit::<DeploymentBody>(kind),
        Kind::DaemonSet => visitor.visit::<DaemonSetBody>(kind),
        Kind::Secret
        | Kind::ConfigMap
        | Kind::ServiceAccount
        | Kind::PriorityClass
        | Kind::NetworkAttachmentDefinition
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

impl<B: Body> kube_core::Resource for Wire<B> {
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

    #[test]
    fn an_entry_is_two_words() {
        // The view holds every Secret, ConfigMap and ServiceAccount as one: 100,000 of them
        // cost a megabyte more per word.
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }
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

    #[test]
    fn kubevirts_components_keep_their_ready_counts() {
        let counts = |kind: Kind, object: serde_json::Value| match entry_of(kind, object) {
            Entry::Readiness(readiness) => readiness.counts.map(|c| (c.ready, c.desired)),
            other => panic!("{other:?}"),
        };
        // readyReplicas is omitted when zero; replicas defaults to 1.
        assert_eq!(
            counts(
                Kind::Deployment,
                json!({"metadata": {"name": "virt-controller"}, "status": {"replicas": 1}})
            ),
            Some((0, 1))
        );
        assert_eq!(
            counts(
                Kind::Deployment,
                json!({"metadata": {"name": "virt-controller"}, "spec": {"replicas": 2},
                    "status": {"readyReplicas": 2}})
            ),
            Some((2, 2))
        );
        assert_eq!(
            counts(
                Kind::DaemonSet,
                json!({"metadata": {"name": "virt-handler"},
                    "status": {"desiredNumberScheduled": 3, "numberReady": 1}})
            ),
            Some((1, 3))
        );
        assert_eq!(
            counts(
                Kind::DaemonSet,
                json!({"metadata": {"name": "virt-handler"}})
            ),
            None,
            "no status: nothing known"
        );
    }

    fn entry_of(kind: Kind, object: serde_json::Value) -> Entry {
        struct Read(serde_json::Value);
        impl KindVisitor for Read {
            type Output = Entry;
            fn visit<B: Body>(self, _: Kind) -> Entry {
                B::deserialize(&self.0).unwrap().into_entry()
            }
        }
        visit_kind(kind, Read(object))
    }

    #[test]
    fn quotas_keep_hard_and_used_and_say_when_they_are_scoped() {
        let Entry::ResourceQuota(quota) = entry_of(
            Kind::ResourceQuota,
            json!({"metadata": {"name": "q", "namespace": "ns"},
                "spec": {"hard": {"requests.memory": "8Gi"}},
                "status": {"hard": {"requests.memory": "8Gi", "pods": "x"}, "used": {"requests.memory": "7Gi"}}}),
        ) else {
            panic!("a ResourceQuota entry");
        };
        assert_eq!(quota.hard.len(), 1, "an unreadable quantity is left out");
        assert_eq!(
            quota.used["requests.memory"],
            ParsedQuantity::parse("7Gi").unwrap()
        );
        assert!(!quota.scoped);
        let Entry::ResourceQuota(scoped) = entry_of(
            Kind::ResourceQuota,
            json!({"metadata": {"name": "q"}, "spec": {"scopeSelector": {"matchExpressions": []}}}),
        ) else {
            panic!("a ResourceQuota entry");
        };
        assert!(scoped.scoped);
    }

    #[test]
    fn limit_ranges_data_sources_and_vms_keep_what_their_rules_read() {
        let Entry::LimitRange(range) = entry_of(
            Kind::LimitRange,
            json!({"metadata": {"name": "l"}, "spec": {"limits": [
                {"type": "Container", "max": {"memory": "4Gi"}, "defaultRequest": {"cpu": "100m"}}]}}),
        ) else {
            panic!("a LimitRange entry");
        };
        assert_eq!(range.limits[0].type_, "Container");
        assert_eq!(range.limits[0].max.len(), 1);
        assert_eq!(range.limits[0].default_request.len(), 1);
        let Entry::DataSource(source) = entry_of(
            Kind::DataSource,
            json!({"metadata": {"name": "fedora"}, "status": {"conditions": [
                {"type": "Ready", "status": "False", "reason": "NotFound", "message": ""}]}}),
        ) else {
            panic!("a DataSource entry");
        };
        assert_eq!(source.ready, Some(false));
        assert_eq!(source.reason.as_deref(), Some("NotFound"));
        let Entry::VirtualMachine(vm) = entry_of(
            Kind::VirtualMachine,
            json!({"metadata": {"name": "vm"}, "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"devices": {"disks": [{"name": "data", "shareable": true}]}},
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
                    {"name": "root", "dataVolume": {"name": "root-dv"}},
                    {"name": "ci", "cloudInitNoCloud": {"userData": "x"}}]}}}}),
        ) else {
            panic!("a VirtualMachine entry");
        };
        assert!(vm.starts);
        assert_eq!(
            vm.claims,
            vec![
                ClaimUse {
                    claim: Name::from("shared"),
                    shareable: true
                },
                ClaimUse {
                    claim: Name::from("root-dv"),
                    shareable: false
                }
            ]
        );
    }
}
