//! A read-only, indexed picture of the cluster: what the cluster rules look up.
//!
//! The view is immutable once built and cheap to share (`Arc`). One [`ViewBuilder`] makes it
//! from objects, whatever their source: snapshot files ([`snapshot`]), one list per kind or
//! watch events (the runtime crate's `cluster::live`). Each object is applied or deleted on its own, in persistent
//! indexes ([`table`]), so a Secret event costs the same with 1,000 or 100,000 Secrets; only
//! the node index is rebuilt as a whole (its bit sets), and the live view debounces that.
//!
//! Each kind is **known** (listed or synced) or **unknown**. A lookup answers [`Lookup`]:
//! present, absent, or unknown, and a rule reports nothing on unknown: never a finding on data
//! we do not have. What the view keeps of each kind is listed in [`objects`].

pub mod kubevirt;
pub mod nodes;
pub mod objects;
pub mod snapshot;
pub mod table;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::launcher::InstancetypeSpec;

pub use kubevirt::KubeVirt;
pub use nodes::{NodeIndex, NodeInfo, NodeSet};
use objects::{Body, KindVisitor, Stored, visit_kind};
pub use objects::{
    ClaimPropertySet, ClaimUse, DataSourceInfo, DataVolumeInfo, Entry, LimitItem, LimitRangeInfo,
    MetaRef, NamespaceInfo, PvcInfo, Quantities, QuotaInfo, Readiness, ReadyCounts,
    StorageClassInfo, StorageProfileInfo, VmClaims,
};
use table::{Name, Table};

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
    /// The KubeVirt CR: its configuration, version and health.
    KubeVirt,
    ResourceQuota,
    LimitRange,
    /// CDI's golden-image pointers.
    DataSource,
    /// The other VMs, for the claims they hold.
    VirtualMachine,
    /// KubeVirt's `virt-controller` only (see [`Kind::only_named`]): the diagnosis reads its
    /// readiness; no rule does.
    Deployment,
    /// KubeVirt's `virt-handler` only, as [`Kind::Deployment`].
    DaemonSet,
}

impl Kind {
    pub const COUNT: usize = 22;
    pub const ALL: [Kind; Kind::COUNT] = [
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
        Kind::KubeVirt,
        Kind::ResourceQuota,
        Kind::LimitRange,
        Kind::DataSource,
        Kind::VirtualMachine,
        Kind::Deployment,
        Kind::DaemonSet,
    ];

    /// Its row of [`KINDS`].
    pub fn facts(self) -> &'static KindFacts {
        &KINDS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.facts().name
    }

    /// API group (empty for core) of the kind.
    pub fn group(self) -> &'static str {
        self.facts().group
    }

    pub fn is_namespaced(self) -> bool {
        self.facts().namespaced
    }

    /// The one object name the view reads of a kind, where it reads one only: KubeVirt's
    /// components, whose readiness is the diagnosis's, not every workload of the cluster. The
    /// live view lists and watches them with the field selector `metadata.name=NAME`, which is
    /// what lets deploy/'s ClusterRole grant them by `resourceNames`; a snapshot's other
    /// objects of the kind are skipped.
    pub fn only_named(self) -> Option<&'static str> {
        self.facts().only_named
    }

    /// Whether a rule reads this kind from namespaces other than the VM's.
    pub fn read_across_namespaces(self) -> bool {
        self.facts().read_across_namespaces
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

/// What the API server says of a kind, in one row: its name, where it is served, whether it
/// is namespaced, and whether the view reads one object of it only. The view, the live lists
/// (`live::api_resource`) and deploy/'s RBAC test read it; a kind added is a row here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindFacts {
    pub kind: Kind,
    pub name: &'static str,
    /// Empty for the core group.
    pub group: &'static str,
    /// The version the live view lists (any version of the group reads in a snapshot).
    pub version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    pub only_named: Option<&'static str>,
    /// Whether a rule reads it from namespaces other than the VM's (a DataSource's
    /// `sourceRef.namespace`, a Multus `namespace/name`, KubeVirt's own namespace): a change
    /// to one may concern VMs anywhere.
    pub read_across_namespaces: bool,
}

const fn row(
    kind: Kind,
    name: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> KindFacts {
    KindFacts {
        kind,
        name,
        group,
        version,
        plural,
        namespaced,
        only_named: None,
        read_across_namespaces: false,
    }
}

const fn by_name(facts: KindFacts, name: &'static str) -> KindFacts {
    KindFacts {
        only_named: Some(name),
        ..facts
    }
}

const fn across_namespaces(facts: KindFacts) -> KindFacts {
    KindFacts {
        read_across_namespaces: true,
        ..facts
    }
}

const CDI: &str = "cdi.kubevirt.io";
const INSTANCETYPE: &str = "instancetype.kubevirt.io";

/// Every kind the view reads, in [`Kind`]'s order (a test holds it to that).
pub const KINDS: [KindFacts; Kind::COUNT] = [
    row(Kind::Node, "Node", "", "v1", "nodes", false),
    row(
        Kind::StorageClass,
        "StorageClass",
        "storage.k8s.io",
        "v1",
        "storageclasses",
        false,
    ),
    row(
        Kind::StorageProfile,
        "StorageProfile",
        CDI,
        "v1beta1",
        "storageprofiles",
        false,
    ),
    row(
        Kind::PriorityClass,
        "PriorityClass",
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        false,
    ),
    row(Kind::Namespace, "Namespace", "", "v1", "namespaces", false),
    row(Kind::Secret, "Secret", "", "v1", "secrets", true),
    row(Kind::ConfigMap, "ConfigMap", "", "v1", "configmaps", true),
    row(
        Kind::ServiceAccount,
        "ServiceAccount",
        "",
        "v1",
        "serviceaccounts",
        true,
    ),
    row(
        Kind::PersistentVolumeClaim,
        "PersistentVolumeClaim",
        "",
        "v1",
        "persistentvolumeclaims",
        true,
    ),
    row(
        Kind::DataVolume,
        "DataVolume",
        CDI,
        "v1beta1",
        "datavolumes",
        true,
    ),
    across_namespaces(row(
        Kind::NetworkAttachmentDefinition,
        "NetworkAttachmentDefinition",
        "k8s.cni.cncf.io",
        "v1",
        "network-attachment-definitions",
        true,
    )),
    row(
        Kind::VirtualMachineInstancetype,
        "VirtualMachineInstancetype",
        INSTANCETYPE,
        "v1beta1",
        "virtualmachineinstancetypes",
        true,
    ),
    row(
        Kind::VirtualMachineClusterInstancetype,
        "VirtualMachineClusterInstancetype",
        INSTANCETYPE,
        "v1beta1",
        "virtualmachineclusterinstancetypes",
        false,
    ),
    row(
        Kind::VirtualMachinePreference,
        "VirtualMachinePreference",
        INSTANCETYPE,
        "v1beta1",
        "virtualmachinepreferences",
        true,
    ),
    row(
        Kind::VirtualMachineClusterPreference,
        "VirtualMachineClusterPreference",
        INSTANCETYPE,
        "v1beta1",
        "virtualmachineclusterpreferences",
        false,
    ),
    across_namespaces(row(
        Kind::KubeVirt,
        "KubeVirt",
        "kubevirt.io",
        "v1",
        "kubevirts",
        true,
    )),
    row(
        Kind::ResourceQuota,
        "ResourceQuota",
        "",
        "v1",
        "resourcequotas",
        true,
    ),
    row(
        Kind::LimitRange,
        "LimitRange",
        "",
        "v1",
        "limitranges",
        true,
    ),
    across_namespaces(row(
        Kind::DataSource,
        "DataSource",
        CDI,
        "v1beta1",
        "datasources",
        true,
    )),
    row(
        Kind::VirtualMachine,
        "VirtualMachine",
        "kubevirt.io",
        "v1",
        "virtualmachines",
        true,
    ),
    across_namespaces(by_name(
        row(
            Kind::Deployment,
            "Deployment",
            "apps",
            "v1",
            "deployments",
            true,
        ),
        VIRT_CONTROLLER,
    )),
    across_namespaces(by_name(
        row(
            Kind::DaemonSet,
            "DaemonSet",
            "apps",
            "v1",
            "daemonsets",
            true,
        ),
        VIRT_HANDLER,
    )),
];

/// KubeVirt's controller Deployment, in the KubeVirt CR's namespace.
pub const VIRT_CONTROLLER: &str = "virt-controller";
/// KubeVirt's node agent DaemonSet, in the KubeVirt CR's namespace.
pub const VIRT_HANDLER: &str = "virt-handler";

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

/// What a lookup found. A rule acts on `Absent` only: `Unknown` (the kind is not listed, not
/// synced yet, or not served) is never a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<T> {
    Present(T),
    Absent,
    Unknown,
}

impl<T> Lookup<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Lookup::Absent)
    }

    pub fn present(self) -> Option<T> {
        match self {
            Lookup::Present(value) => Some(value),
            _ => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Present(value) => Lookup::Present(f(value)),
            Lookup::Absent => Lookup::Absent,
            Lookup::Unknown => Lookup::Unknown,
        }
    }

    fn known(known: bool, found: Option<T>) -> Lookup<T> {
        match (known, found) {
            (false, _) => Lookup::Unknown,
            (true, Some(value)) => Lookup::Present(value),
            (true, None) => Lookup::Absent,
        }
    }
}

/// An object the view can be asked about: what a finding about a missing object looked for,
/// so that the webhook can ask the API server before it denies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ObjectKey {
    pub kind: Kind,
    /// Empty for a cluster-scoped kind.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind,
            namespace: if kind.is_namespaced() {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The indexed, immutable cluster picture the rules read. Every part is persistent or behind
/// an `Arc`, so a clone is cheap and a changed object copies only its own path.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Which picture this is: every view a builder hands out (and every view derived from
    /// one) gets a number never given before, so a consumer can tell "changed" without
    /// comparing contents or addresses (an address is reused once a view is dropped).
    generation: u64,
    known: KindSet,
    /// Kinds whose watch failed since its last good event: their data may be behind.
    stale: KindSet,
    /// Every kind's objects, by `Kind as usize`: a kind added is a table here, with nothing
    /// to declare (Nodes are the index below; their table stays empty).
    tables: [Table<Entry>; Kind::COUNT],
    /// The class CDI gives a DataVolume that names none.
    default_class: Option<Name>,
    /// Answers to "may this ServiceAccount clone from that namespace" (CDI's
    /// `datavolumes/source`), where someone asked the API server: no watch can say it.
    clone_grants: Arc<BTreeMap<CloneGrant, bool>>,
    nodes: Arc<NodeIndex>,
}

/// Where a view may read otherwise than an earlier one ([`ClusterView::changed_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Everywhere,
    In(BTreeSet<String>),
}

/// A ServiceAccount (namespace, name) cloning from a source namespace: what CDI authorizes
/// with a SubjectAccessReview for `create datavolumes/source` there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloneGrant {
    pub account_namespace: String,
    pub account: String,
    pub source_namespace: String,
}

/// The namespace an object of `kind` is filed under: cluster-scoped kinds under `""`, and a
/// namespaced object without one (a manifest used as a snapshot) where `kubectl apply` would
/// put it.
fn namespace_of(kind: Kind, namespace: Option<&str>) -> &str {
    if !kind.is_namespaced() {
        return "";
    }
    namespace.filter(|ns| !ns.is_empty()).unwrap_or("default")
}

/// The next [`ClusterView::generation`]: process-wide, so that no two views share one.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl ClusterView {
    /// Which picture this is: equal for clones of one view, different for any two views built
    /// or derived apart (0 only for `ClusterView::default()`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn known(&self) -> KindSet {
        self.known
    }

    pub fn is_known(&self, kind: Kind) -> bool {
        self.known.contains(kind)
    }

    /// Kinds whose data may be behind the API server (their watch is failing).
    pub fn stale(&self) -> KindSet {
        self.stale
    }

    /// Whether `namespace/name` of `kind` exists (the namespace is ignored for a
    /// cluster-scoped kind).
    pub fn exists(&self, kind: Kind, namespace: &str, name: &str) -> Lookup<()> {
        let found = match kind {
            Kind::Node => self.nodes.by_name(name).is_some(),
            _ => self.entry(kind, namespace, name).is_some(),
        };
        Lookup::known(self.is_known(kind), found.then_some(()))
    }

    /// The object `namespace/name` of `kind` (the namespace is ignored for a cluster-scoped
    /// kind), whether or not the kind is known.
    fn entry(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Entry> {
        self.tables[kind as usize].get(namespace_of(kind, Some(namespace)), name)
    }

    /// What `namespace/name` of `kind` holds, typed, as a [`Lookup`].
    fn lookup<T: Stored + ?Sized>(&self, kind: Kind, namespace: &str, name: &str) -> Lookup<&T> {
        Lookup::known(
            self.is_known(kind),
            self.entry(kind, namespace, name).and_then(T::of),
        )
    }

    /// The objects of `kind` in `namespace`, typed; `None` when the kind is unknown.
    fn in_namespace<'a, T: Stored + ?Sized + 'a>(
        &'a self,
        kind: Kind,
        namespace: &str,
    ) -> Option<impl Iterator<Item = (&'a str, &'a T)>> {
        self.is_known(kind).then(|| {
            self.tables[kind as usize]
                .in_namespace(namespace)
                .filter_map(|(name, entry)| Some((name, T::of(entry)?)))
        })
    }

    /// The policy mode label of a namespace; `None` when Namespaces are unknown, the namespace
    /// is not listed or has no such label.
    pub fn namespace_mode(&self, namespace: &str) -> Option<&str> {
        NamespaceInfo::of(self.entry(Kind::Namespace, "", namespace)?)?
            .mode
            .as_deref()
    }

    pub fn pvc(&self, namespace: &str, name: &str) -> Lookup<&PvcInfo> {
        self.lookup(Kind::PersistentVolumeClaim, namespace, name)
    }

    /// A DataVolume's phase and messages.
    pub fn datavolume(&self, namespace: &str, name: &str) -> Lookup<&DataVolumeInfo> {
        self.lookup(Kind::DataVolume, namespace, name)
    }

    pub fn storage_class(&self, name: &str) -> Lookup<&StorageClassInfo> {
        self.lookup(Kind::StorageClass, "", name)
    }

    /// Name of the default StorageClass (the KubeVirt default first); `Absent` when the
    /// cluster has none.
    pub fn default_storage_class(&self) -> Lookup<&str> {
        Lookup::known(
            self.is_known(Kind::StorageClass),
            self.default_class.as_deref(),
        )
    }

    pub fn storage_profile(&self, storage_class: &str) -> Lookup<&StorageProfileInfo> {
        self.lookup(Kind::StorageProfile, "", storage_class)
    }

    /// An instancetype's spec: `Present(None)` when it exists but its spec does not read.
    pub fn instancetype(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Lookup<Option<&InstancetypeSpec>> {
        if !matches!(
            kind,
            Kind::VirtualMachineInstancetype | Kind::VirtualMachineClusterInstancetype
        ) {
            return Lookup::Unknown;
        }
        self.lookup::<Option<Arc<InstancetypeSpec>>>(kind, namespace, name)
            .map(|spec| spec.as_deref())
    }

    /// Whether the ServiceAccount may clone from the source namespace; `None` when nobody
    /// asked the API server (a watch cannot tell).
    pub fn clone_allowed(&self, grant: &CloneGrant) -> Option<bool> {
        self.clone_grants.get(grant).copied()
    }

    /// The same view with these answers about clone permissions added.
    pub fn with_clone_grants(
        mut self,
        grants: impl IntoIterator<Item = (CloneGrant, bool)>,
    ) -> Self {
        let mut all = (*self.clone_grants).clone();
        all.extend(grants);
        self.clone_grants = Arc::new(all);
        self.generation = next_generation();
        self
    }

    /// The KubeVirt CR (one per cluster, in whatever namespace KubeVirt was installed).
    pub fn kubevirt(&self) -> Lookup<&KubeVirt> {
        let first = self.tables[Kind::KubeVirt as usize]
            .iter()
            .filter_map(|(namespace, name, entry)| Some((namespace, name, KubeVirt::of(entry)?)))
            .min_by_key(|(namespace, name, _)| (*namespace, *name))
            .map(|(_, _, kubevirt)| kubevirt);
        Lookup::known(self.is_known(Kind::KubeVirt), first)
    }

    /// The ResourceQuotas of a namespace, by name; `None` when ResourceQuotas are unknown.
    pub fn resource_quotas(
        &self,
        namespace: &str,
    ) -> Option<impl Iterator<Item = (&str, &QuotaInfo)>> {
        self.in_namespace(Kind::ResourceQuota, namespace)
    }

    /// The LimitRanges of a namespace, by name; `None` when LimitRanges are unknown.
    pub fn limit_ranges(
        &self,
        namespace: &str,
    ) -> Option<impl Iterator<Item = (&str, &LimitRangeInfo)>> {
        self.in_namespace(Kind::LimitRange, namespace)
    }

    pub fn datasource(&self, namespace: &str, name: &str) -> Lookup<&DataSourceInfo> {
        self.lookup(Kind::DataSource, namespace, name)
    }

    /// The VirtualMachines of a namespace, by name, with the claims they mount; `None` when
    /// VirtualMachines are unknown.
    pub fn virtual_machines(
        &self,
        namespace: &str,
    ) -> Option<impl Iterator<Item = (&str, &VmClaims)>> {
        self.in_namespace(Kind::VirtualMachine, namespace)
    }

    /// The readiness of KubeVirt's component of `kind` ([`Kind::only_named`]) in `namespace`;
    /// `Unknown` for a kind the view does not read that way.
    pub fn readiness(&self, kind: Kind, namespace: &str) -> Lookup<Readiness> {
        let Some(name) = kind.only_named() else {
            return Lookup::Unknown;
        };
        self.lookup::<Readiness>(kind, namespace, name).map(|r| *r)
    }

    /// The node index; `None` when Nodes are unknown.
    pub fn nodes(&self) -> Option<&NodeIndex> {
        self.is_known(Kind::Node).then_some(self.nodes.as_ref())
    }

    /// This view with the nodes an autoscaler can add counted as nodes (a snapshot or a
    /// one-shot list; a live view gets them from its builder).
    pub fn with_node_templates(mut self, templates: &[nodes::NodeTemplate]) -> ClusterView {
        if !templates.is_empty() {
            let listed = self.nodes.nodes().cloned();
            let added = templates.iter().map(|t| Arc::new(NodeInfo::from(t)));
            self.nodes = Arc::new(NodeIndex::new(listed.chain(added)));
            self.generation = next_generation();
        }
        self
    }

    /// The view as the scheduler sees the cluster once the nodes `names` are drained or
    /// cordoned: they take no new pod (`audit --drain`, `--cordon`).
    pub fn without_nodes(mut self, names: &std::collections::BTreeSet<String>) -> ClusterView {
        let kept = self
            .nodes
            .nodes()
            .filter(|node| !names.contains(&node.name))
            .cloned();
        self.nodes = Arc::new(NodeIndex::new(kept));
        self.generation = next_generation();
        self
    }

    /// Where this view may read otherwise than `before`: the namespaces whose namespaced
    /// objects changed, or everywhere when anything cluster-scoped did (a Node, a
    /// StorageClass, the KubeVirt CR...) or a kind became known, unknown or stale.
    pub fn changed_since(&self, before: &ClusterView) -> Changed {
        if self.known != before.known
            || self.stale != before.stale
            || !Arc::ptr_eq(&self.nodes, &before.nodes)
            || !Arc::ptr_eq(&self.clone_grants, &before.clone_grants)
        {
            return Changed::Everywhere;
        }
        let mut namespaces = BTreeSet::new();
        for kind in Kind::ALL {
            let (now, was) = (&self.tables[kind as usize], &before.tables[kind as usize]);
            let changed = now.namespaces_changed_since(was);
            if !changed.is_empty() && (!kind.is_namespaced() || kind.read_across_namespaces()) {
                return Changed::Everywhere;
            }
            namespaces.extend(changed.into_iter().map(str::to_string));
        }
        Changed::In(namespaces)
    }

    /// How many objects of `kind` the view holds.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Node => self.nodes.len(),
            _ => self.tables[kind as usize].len(),
        }
    }
}

/// The class CDI gives a DataVolume that names none: the KubeVirt default
/// (`storageclass.kubevirt.io/is-default-virt-class`) before the Kubernetes default; among
/// several of a kind, the first by name (the view does not keep creation times).
fn default_class(classes: &Table<Entry>) -> Option<Name> {
    let first_of = |wanted: fn(&StorageClassInfo) -> bool| {
        classes
            .iter()
            .filter(|(_, _, entry)| StorageClassInfo::of(entry).is_some_and(wanted))
            .map(|(_, name, _)| name)
            .min()
    };
    first_of(|info| info.virt_default)
        .or_else(|| first_of(|info| info.default))
        .map(Name::from)
}

/// Why an object could not be added to the view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name}: {message}")]
pub struct ObjectError {
    pub kind: Kind,
    pub name: String,
    pub message: String,
}

/// Makes and keeps a [`ClusterView`] from objects, one at a time: the one path for snapshot
/// files, one-shot lists and watch events.
#[derive(Debug, Clone, Default)]
pub struct ViewBuilder {
    view: ClusterView,
    /// The nodes themselves; the view holds only their index, rebuilt from these.
    nodes: Table<Arc<NodeInfo>>,
    /// Nodes an autoscaler can add: indexed with the nodes, once Nodes are known.
    templates: Vec<Arc<NodeInfo>>,
    /// Nodes the index must be rebuilt for.
    nodes_changed: bool,
}

impl ViewBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the nodes an autoscaler can add as nodes (see [`nodes::NodeTemplate`]).
    pub fn set_node_templates(&mut self, templates: &[nodes::NodeTemplate]) {
        self.templates = templates
            .iter()
            .map(|t| Arc::new(NodeInfo::from(t)))
            .collect();
        self.nodes_changed = true;
    }

    /// Marks a kind known (listed) even if it had no objects.
    pub fn mark_known(&mut self, kind: Kind) {
        self.view.known.insert(kind);
    }

    /// Marks a kind's data as possibly behind the API server, or current again.
    pub fn set_stale(&mut self, kind: Kind, stale: bool) {
        if stale {
            self.view.stale.insert(kind);
        } else {
            self.view.stale.remove(kind);
        }
    }

    /// Adds or replaces one object of `kind`.
    pub fn apply(&mut self, kind: Kind, meta: MetaRef<'_>, entry: Entry) {
        self.view.known.insert(kind);
        if kind.only_named().is_some_and(|only| only != meta.name) {
            return;
        }
        let namespace = namespace_of(kind, meta.namespace);
        let name = meta.name;
        let view = &mut self.view;
        match entry {
            Entry::Node(node) => {
                self.nodes.insert("", name, node);
                self.nodes_changed = true;
            }
            entry => {
                view.tables[kind as usize].insert(namespace, name, entry);
                if kind == Kind::StorageClass {
                    view.default_class = default_class(&view.tables[kind as usize]);
                }
            }
        }
    }

    /// Removes one object of `kind`.
    pub fn delete(&mut self, kind: Kind, meta: MetaRef<'_>) {
        let namespace = namespace_of(kind, meta.namespace);
        let name = meta.name;
        let view = &mut self.view;
        if kind == Kind::Node {
            self.nodes_changed |= self.nodes.remove("", name).is_some();
            return;
        }
        view.tables[kind as usize].remove(namespace, name);
        if kind == Kind::StorageClass {
            view.default_class = default_class(&view.tables[kind as usize]);
        }
    }

    /// Takes `kind` whole from `fresh` (a relist built on the side), known or not as there.
    pub fn replace_kind(&mut self, kind: Kind, fresh: &ViewBuilder) {
        let (view, from) = (&mut self.view, &fresh.view);
        if kind == Kind::Node {
            self.nodes = fresh.nodes.clone();
            self.nodes_changed = true;
        }
        view.tables[kind as usize] = from.tables[kind as usize].clone();
        if kind == Kind::StorageClass {
            view.default_class = from.default_class.clone();
        }
        if from.known.contains(kind) {
            view.known.insert(kind);
        } else {
            view.known.remove(kind);
        }
    }

    /// Adds one object of `kind` given as JSON (a snapshot document or a listed object),
    /// through the same wire type a watch reads it into.
    pub fn add(&mut self, kind: Kind, object: &Value) -> Result<(), ObjectError> {
        struct Add<'a> {
            builder: &'a mut ViewBuilder,
            object: &'a Value,
        }
        impl KindVisitor for Add<'_> {
            type Output = Result<(), ObjectError>;
            fn visit<B: Body>(self, kind: Kind) -> Self::Output {
                let body =
                    serde_path_to_error::deserialize::<_, B>(self.object).map_err(|err| {
                        let path = err.path().to_string();
                        ObjectError {
                            kind,
                            name: self
                                .object
                                .pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or("<unnamed>")
                                .to_string(),
                            message: format!("{path}: {}", err.into_inner()),
                        }
                    })?;
                self.builder.apply_body(kind, body);
                Ok(())
            }
        }
        visit_kind(
            kind,
            Add {
                builder: self,
                object,
            },
        )
    }

    /// Adds one object read off the wire.
    pub fn apply_body<B: Body>(&mut self, kind: Kind, body: B) {
        let meta = body.meta();
        let (namespace, name) = (meta.namespace.map(str::to_string), meta.name.to_string());
        let entry = body.into_entry();
        self.apply(
            kind,
            MetaRef {
                name: &name,
                namespace: namespace.as_deref(),
                resource_version: None,
            },
            entry,
        );
    }

    /// How many objects of `kind` the builder holds.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Node => self.nodes.len(),
            _ => self.view.count(kind),
        }
    }

    /// Whether nodes changed since the last [`ViewBuilder::view`].
    pub fn nodes_changed(&self) -> bool {
        self.nodes_changed
    }

    /// The view as it is now; rebuilds the node index if nodes changed.
    pub fn view(&mut self) -> ClusterView {
        if self.nodes_changed {
            let nodes = self.nodes.iter().map(|(_, _, node)| node.clone());
            self.view.nodes = Arc::new(NodeIndex::new(nodes.chain(self.templates.clone())));
            self.nodes_changed = false;
        }
        let mut view = self.view.clone();
        view.generation = next_generation();
        view
    }

    /// The view, for a builder that is done.
    pub fn build(mut self) -> ClusterView {
        self.view()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kind_table_is_in_kinds_order_and_names_each_once() {
        for (index, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(KINDS[index].kind, kind, "row {index}");
            assert_eq!(kind as usize, index);
            assert_eq!(
                Kind::of(&format!("{}/{}", kind.group(), "v9"), kind.as_str())
                    .filter(|_| !kind.group().is_empty()),
                (!kind.group().is_empty()).then_some(kind)
            );
        }
        let mut names: Vec<&str> = KINDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::COUNT);
        assert_eq!(Kind::of("v1", "Secret"), Some(Kind::Secret));
        assert_eq!(Kind::Deployment.only_named(), Some(VIRT_CONTROLLER));
        assert_eq!(Kind::Secret.only_named(), None);
    }

    #[test]
    fn every_view_handed_out_has_a_generation_of_its_own() {
        let mut builder = ViewBuilder::new();
        let first = builder.view();
        let again = builder.view();
        assert_ne!(first.generation(), again.generation());
        assert_eq!(first.clone().generation(), first.generation());
        let derived = first.clone().with_clone_grants([]);
        assert_ne!(derived.generation(), first.generation());
        assert_eq!(ClusterView::default().generation(), 0);
    }

    #[test]
    fn a_change_concerns_its_namespace_or_every_one() {
        let object = |api_version: &str, kind: &str, namespace: &str, name: &str| {
            json!({"apiVersion": api_version, "kind": kind,
                   "metadata": {"name": name, "namespace": namespace}})
        };
        let mut builder = ViewBuilder::new();
        for kind in Kind::ALL {
            builder.mark_known(kind);
        }
        builder
            .add(Kind::Secret, &object("v1", "Secret", "a", "s"))
            .unwrap();
        let before = builder.view();
        assert_eq!(
            builder.view().changed_since(&before),
            Changed::In(BTreeSet::new())
        );

        // A Secret is read from its VM's namespace only.
        builder
            .add(Kind::Secret, &object("v1", "Secret", "b", "s"))
            .unwrap();
        let after = builder.view();
        assert_eq!(
            after.changed_since(&before),
            Changed::In(BTreeSet::from(["b".to_string()]))
        );
        builder.delete(
            Kind::Secret,
            MetaRef {
                name: "s",
                namespace: Some("a"),
                resource_version: None,
            },
        );
        assert_eq!(
            builder.view().changed_since(&after),
            Changed::In(BTreeSet::from(["a".to_string()]))
        );

        // A golden image's DataSource is read from every namespace that clones it.
        let before = builder.view();
        let source = object("cdi.kubevirt.io/v1beta1", "DataSource", "images", "fedora");
        builder.add(Kind::DataSource, &source).unwrap();
        assert_eq!(builder.view().changed_since(&before), Changed::Everywhere);

        // Cluster-scoped: a StorageClass.
        let before = builder.view();
        let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                           "metadata": {"name": "fast"}, "provisioner": "x"});
        builder.add(Kind::StorageClass, &class).unwrap();
        assert_eq!(builder.view().changed_since(&before), Changed::Everywhere);

        // A kind that turns stale.
        let before = builder.view();
        builder.set_stale(Kind::Secret, true);
        assert_eq!(builder.view().changed_since(&before), Changed::Everywhere);
    }

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
    fn unknown_kinds_answer_unknown() {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::Secret,
                &json!({"metadata": {"name": "s", "namespace": "ns"}}),
            )
            .unwrap();
        builder.mark_known(Kind::ConfigMap);
        let view = builder.build();
        assert_eq!(view.exists(Kind::Secret, "ns", "s"), Lookup::Present(()));
        assert_eq!(view.exists(Kind::Secret, "other", "s"), Lookup::Absent);
        assert_eq!(view.exists(Kind::ConfigMap, "ns", "c"), Lookup::Absent);
        assert_eq!(
            view.exists(Kind::ServiceAccount, "ns", "sa"),
            Lookup::Unknown
        );
        assert!(view.nodes().is_none());
    }

    fn meta<'a>(namespace: &'a str, name: &'a str) -> MetaRef<'a> {
        MetaRef {
            name,
            namespace: Some(namespace),
            resource_version: None,
        }
    }

    #[test]
    fn events_apply_and_delete_one_object_and_earlier_views_stay_as_they_were() {
        let mut builder = ViewBuilder::new();
        builder.mark_known(Kind::Secret);
        builder.apply(Kind::Secret, meta("ns", "a"), Entry::Name);
        let before = builder.view();
        builder.apply(Kind::Secret, meta("ns", "b"), Entry::Name);
        builder.delete(Kind::Secret, meta("ns", "a"));
        let after = builder.view();
        assert_eq!(after.exists(Kind::Secret, "ns", "a"), Lookup::Absent);
        assert_eq!(after.exists(Kind::Secret, "ns", "b"), Lookup::Present(()));
        assert_eq!(after.count(Kind::Secret), 1);
        assert_eq!(before.exists(Kind::Secret, "ns", "a"), Lookup::Present(()));
        assert_eq!(before.exists(Kind::Secret, "ns", "b"), Lookup::Absent);
        // Cluster-scoped kinds ignore the namespace they are asked with.
        builder.apply(Kind::PriorityClass, meta("", "high"), Entry::Name);
        assert_eq!(
            builder
                .view()
                .exists(Kind::PriorityClass, "anywhere", "high"),
            Lookup::Present(())
        );
    }

    #[test]
    fn nodes_are_indexed_when_the_view_is_taken() {
        let mut builder = ViewBuilder::new();
        let node = |name: &str| {
            json!({"metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        };
        builder.add(Kind::Node, &node("n1")).unwrap();
        builder.add(Kind::Node, &node("n0")).unwrap();
        assert!(builder.nodes_changed());
        let view = builder.view();
        assert!(!builder.nodes_changed());
        let nodes = view.nodes().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.node(0).name, "n0", "indexed in name order");
        builder.delete(Kind::Node, meta("", "n1"));
        assert_eq!(builder.view().nodes().unwrap().len(), 1);
        assert_eq!(view.nodes().unwrap().len(), 2);
    }

    #[test]
    fn node_templates_count_as_ready_nodes_once_nodes_are_known() {
        let policy = crate::policy::Policy::parse(
            "nodeTemplates:\n- name: gpu-pool\n  labels: {gpu: a100}\n  allocatable: {cpu: '32', memory: 256Gi}\n",
        )
        .unwrap();
        let mut builder = ViewBuilder::new();
        builder.set_node_templates(&policy.node_templates);
        assert!(builder.view().nodes().is_none(), "no node data, no nodes");
        builder.mark_known(Kind::Node);
        let view = builder.view();
        let nodes = view.nodes().unwrap();
        assert_eq!(nodes.len(), 1);
        let template = nodes.node(0);
        assert_eq!(template.name, "gpu-pool (node template)");
        assert!(template.ready && template.kubevirt_schedulable());
        assert!(crate::policy::Policy::parse("nodeTemplates: [{name: x, tains: []}]").is_err());
    }

    /// kube-state-metrics' CVE-2019-17110 in this tool would be a Secret's value kept in the
    /// view: `kubectl apply` leaves the data in the last-applied annotation too.
    #[test]
    fn a_secret_leaves_no_byte_of_its_data_in_the_view() {
        let value = "aHVudGVyMi1zM2NyM3Q="; // base64("hunter2-s3cr3t")
        let applied = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "prod"}, "data": {"password": value}});
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::Secret,
                &json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "db", "namespace": "prod", "annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": applied.to_string()}},
                    "data": {"password": value}, "stringData": {"plain": "hunter2"}}),
            )
            .unwrap();
        let view = builder.build();
        assert_eq!(view.exists(Kind::Secret, "prod", "db"), Lookup::Present(()));
        let held = format!("{view:?}");
        for secret in [value, "hunter2", "last-applied"] {
            assert!(!held.contains(secret), "{secret} in {held}");
        }
    }

    #[test]
    fn kubevirts_components_are_read_by_name_only() {
        let mut builder = ViewBuilder::new();
        builder
            .add(
                Kind::Deployment,
                &json!({"metadata": {"name": "virt-controller", "namespace": "kubevirt"},
                    "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}),
            )
            .unwrap();
        builder
            .add(
                Kind::Deployment,
                &json!({"metadata": {"name": "web", "namespace": "kubevirt"}, "status": {}}),
            )
            .unwrap();
        builder
            .add(
                Kind::DaemonSet,
                &json!({"metadata": {"name": "virt-handler", "namespace": "kubevirt"}}),
            )
            .unwrap();
        let view = builder.build();
        assert_eq!(
            view.count(Kind::Deployment),
            1,
            "other Deployments are not kept"
        );
        assert_eq!(
            view.readiness(Kind::Deployment, "kubevirt"),
            Lookup::Present(Readiness {
                counts: Some(ReadyCounts {
                    ready: 1,
                    desired: 2
                })
            })
        );
        assert_eq!(
            view.readiness(Kind::DaemonSet, "kubevirt"),
            Lookup::Present(Readiness { counts: None }),
            "no status written yet: nothing known"
        );
        assert_eq!(view.readiness(Kind::Deployment, "other"), Lookup::Absent);
        assert_eq!(view.readiness(Kind::Secret, "kubevirt"), Lookup::Unknown);
        assert_eq!(
            ViewBuilder::new()
                .build()
                .readiness(Kind::DaemonSet, "kubevirt"),
            Lookup::Unknown
        );
    }

    #[test]
    fn a_relist_replaces_the_kind_whole() {
        let mut builder = ViewBuilder::new();
        builder.apply(Kind::ConfigMap, meta("ns", "old"), Entry::Name);
        builder.apply(Kind::Secret, meta("ns", "kept"), Entry::Name);
        let mut fresh = ViewBuilder::new();
        fresh.mark_known(Kind::ConfigMap);
        fresh.apply(Kind::ConfigMap, meta("ns", "new"), Entry::Name);
        builder.replace_kind(Kind::ConfigMap, &fresh);
        let view = builder.view();
        assert_eq!(view.exists(Kind::ConfigMap, "ns", "old"), Lookup::Absent);
        assert_eq!(
            view.exists(Kind::ConfigMap, "ns", "new"),
            Lookup::Present(())
        );
        assert_eq!(view.exists(Kind::Secret, "ns", "kept"), Lookup::Present(()));
    }

    #[test]
    fn a_wrong_typed_field_is_an_error_naming_it() {
        let err = ViewBuilder::new()
            .add(
                Kind::PersistentVolumeClaim,
                &json!({"metadata": {"name": "p"}, "spec": {"accessModes": "ReadWriteOnce"}}),
            )
            .unwrap_err();
        assert_eq!(err.name, "p");
        assert!(err.message.starts_with("spec.accessModes"), "{err}");
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
        let view = builder.view();
        assert_eq!(view.default_storage_class(), Lookup::Present("fast"));
        assert!(
            !view
                .storage_profile("slow")
                .present()
                .unwrap()
                .has_access_modes()
        );
        builder.delete(Kind::StorageClass, meta("", "fast"));
        assert_eq!(builder.view().default_storage_class(), Lookup::Absent);

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
            Lookup::Present("z-virt")
        );
    }
}
