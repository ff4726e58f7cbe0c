//! The rule registry: every rule's stable ID, default severity, scope and one-line description.
//! This table is the rule contract (README's rule table is generated from it and checked by
//! tests/readme.rs): an ID is never renamed, never reused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    CheckFn, access, boot, datasource, image, kubevirt, kubevirt_admission, limit_range, migration,
    network, node_features, quota, references, resources, run_strategy, scheduling, storage,
    volumes,
};
use crate::cluster::Kind;
use crate::rules::finding::Severity;

/// Every rule ID, as policies, skip annotations and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    RunStrategyConflict,
    RunStrategyInvalid,
    RunningDeprecated,
    DiskWithoutVolume,
    CdromWithoutVolume,
    DatavolumeTemplateUnused,
    DuplicateName,
    VolumeSourceInvalid,
    BootOrderInvalid,
    BootOrderDuplicate,
    BootOrderNonBootable,
    BootOrderMissing,
    NoBootableDisk,
    InterfaceWithoutNetwork,
    NetworkWithoutInterface,
    MemoryMissing,
    RequestsExceedLimits,
    GuestMemoryExceedsLimit,
    QuantityInvalid,
    ImageReferenceInvalid,
    ImageTagLatest,
    SchemaInvalid,
    RunStrategyMissing,
    FeatureGateDisabled,
    CloudInitInvalid,
    DeviceInvalid,
    FirmwareInvalid,
    NetworkInvalid,
    NameInvalid,
    SchedulingInvalid,
    CpuMemoryInvalid,
    SecretNotFound,
    ConfigmapNotFound,
    PvcNotFound,
    DatavolumeNotFound,
    StorageClassNotFound,
    NoDefaultStorageClass,
    StorageProfileIncomplete,
    PvcLost,
    NodeSelectorUnsatisfiable,
    TaintsNotTolerated,
    NoSchedulableNode,
    ResourcesExceedCapacity,
    CpuModelUnavailable,
    DeviceUnavailable,
    KvmUnavailable,
    DedicatedCpuUnavailable,
    HugepagesUnavailable,
    HostDeviceNotPermitted,
    EvictionNotMigratable,
    NetworkAttachmentNotFound,
    NetworkBindingNotFound,
    InstancetypeNotFound,
    PriorityClassNotFound,
    ServiceAccountNotFound,
    ResourceQuotaExceeded,
    ResourceQuotaNeedsLimits,
    LimitRangeExceeded,
    DatasourceNotFound,
    DatasourceNotReady,
    CloneNotAuthorized,
    AccessModeUnsupported,
    PvcInUse,
}

impl RuleId {
    pub fn info(self) -> &'static RuleInfo {
        REGISTRY
            .iter()
            .find(|rule| rule.id == self)
            .expect("every RuleId has a registry entry (tested)")
    }

    pub fn as_str(self) -> &'static str {
        self.info().name
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule ID {0:?} (see `virt-preflight rules`)")]
pub struct UnknownRuleId(pub String);

impl FromStr for RuleId {
    type Err = UnknownRuleId;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        REGISTRY
            .iter()
            .find(|rule| rule.name == text)
            .map(|rule| rule.id)
            .ok_or_else(|| UnknownRuleId(text.to_string()))
    }
}

/// What a rule needs to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Scope {
    /// The manifest alone.
    Spec,
    /// The manifest and a view of the cluster.
    Cluster,
    /// The manifest as written (`check`): what the API server's schema and virt-api refuse
    /// before a VM is stored. The webhook leaves these to them: they run in the same chain.
    Manifest,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What KubeVirt does with a VM that breaks a rule: the outcome the rule predicts, checked
/// against the real KubeVirt by `tests/differential.rs` where the test control plane shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `kubectl apply` fails: the API server's schema or virt-api refuses the VM.
    #[strum(serialize = "refused at apply")]
    Refused,
    /// `ErrorUnschedulable`: the scheduler finds no node (`PodScheduled=False`).
    #[strum(serialize = "ErrorUnschedulable")]
    Unschedulable,
    /// `ErrorPvcNotFound`: a claim the VM mounts does not exist.
    #[strum(serialize = "ErrorPvcNotFound")]
    PvcNotFound,
    /// `Starting` with `Synchronized=False FailedCreate`: the launcher pod cannot be rendered
    /// or is refused by the API server (quota, LimitRange, PriorityClass, ServiceAccount).
    #[strum(serialize = "Starting, Synchronized=False FailedCreate")]
    LauncherRefused,
    /// `Stopped` with `Failure=True FailedCreate`: virt-controller cannot create the VMI or
    /// the VM's DataVolumes.
    #[strum(serialize = "Stopped, Failure=True FailedCreate")]
    CreateFailed,
    /// `Stopped` with `Failure=True FailedFindInstancetype` (or `FailedFindPreference`).
    #[strum(serialize = "Stopped, Failure=True FailedFindInstancetype")]
    InstancetypeMissing,
    /// The launcher pod is bound; the kubelet then fails it (a mount, an image, OOM).
    #[strum(serialize = "pod bound; the kubelet fails it")]
    Kubelet,
    /// `Provisioning`: CDI cannot provision a DataVolume.
    #[strum(serialize = "Provisioning (CDI)")]
    Cdi,
    /// KubeVirt runs the VM; its guest finds nothing to boot.
    #[strum(serialize = "runs; the guest cannot boot")]
    Guest,
    /// KubeVirt runs the VM: the finding is advice (deprecated, fragile, blocks a drain).
    #[strum(serialize = "runs (advice)")]
    Advisory,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// What each rule predicts (exhaustive, so a new rule must say).
    pub fn of(rule: RuleId) -> Outcome {
        use Outcome::*;
        match rule {
            RuleId::RunStrategyConflict
            | RuleId::RunStrategyInvalid
            | RuleId::DiskWithoutVolume
            | RuleId::CdromWithoutVolume
            | RuleId::DatavolumeTemplateUnused
            | RuleId::DuplicateName
            | RuleId::VolumeSourceInvalid
            | RuleId::BootOrderInvalid
            | RuleId::BootOrderDuplicate
            | RuleId::InterfaceWithoutNetwork
            | RuleId::NetworkWithoutInterface
            | RuleId::RequestsExceedLimits
            | RuleId::QuantityInvalid
            | RuleId::SchemaInvalid
            | RuleId::RunStrategyMissing
            | RuleId::FeatureGateDisabled
            | RuleId::CloudInitInvalid
            | RuleId::DeviceInvalid
            | RuleId::FirmwareInvalid
            | RuleId::NetworkInvalid
            | RuleId::NameInvalid
            | RuleId::SchedulingInvalid
            | RuleId::CpuMemoryInvalid => Refused,
            RuleId::BootOrderNonBootable | RuleId::BootOrderMissing | RuleId::NoBootableDisk => {
                Guest
            }
            RuleId::RunningDeprecated | RuleId::ImageTagLatest | RuleId::EvictionNotMigratable => {
                Advisory
            }
            RuleId::MemoryMissing | RuleId::DatasourceNotFound | RuleId::CloneNotAuthorized => {
                CreateFailed
            }
            RuleId::GuestMemoryExceedsLimit
            | RuleId::ImageReferenceInvalid
            | RuleId::SecretNotFound
            | RuleId::ConfigmapNotFound
            | RuleId::PvcInUse => Kubelet,
            RuleId::PvcNotFound | RuleId::DatavolumeNotFound => PvcNotFound,
            RuleId::StorageClassNotFound
            | RuleId::NoDefaultStorageClass
            | RuleId::StorageProfileIncomplete
            | RuleId::DatasourceNotReady
            | RuleId::AccessModeUnsupported => Cdi,
            RuleId::NodeSelectorUnsatisfiable
            | RuleId::TaintsNotTolerated
            | RuleId::NoSchedulableNode
            | RuleId::ResourcesExceedCapacity
            | RuleId::CpuModelUnavailable
            | RuleId::DeviceUnavailable
            | RuleId::KvmUnavailable
            | RuleId::DedicatedCpuUnavailable
            | RuleId::HugepagesUnavailable
            // Volume binding refuses a Lost claim for every node.
            | RuleId::PvcLost => Unschedulable,
            RuleId::HostDeviceNotPermitted
            | RuleId::NetworkAttachmentNotFound
            | RuleId::NetworkBindingNotFound
            | RuleId::PriorityClassNotFound
            | RuleId::ServiceAccountNotFound
            | RuleId::ResourceQuotaExceeded
            | RuleId::ResourceQuotaNeedsLimits
            | RuleId::LimitRangeExceeded => LauncherRefused,
            RuleId::InstancetypeNotFound => InstancetypeMissing,
        }
    }
}

/// One registry entry.
#[derive(Serialize)]
pub struct RuleInfo {
    #[serde(skip)]
    pub id: RuleId,
    #[serde(rename = "id")]
    pub name: &'static str,
    pub severity: Severity,
    pub scope: Scope,
    pub description: &'static str,
    /// Kinds a cluster rule needs known; it is not run (reports nothing) otherwise.
    #[serde(skip_serializing_if = "<[Kind]>::is_empty")]
    pub needs: &'static [Kind],
    #[serde(skip)]
    pub check: CheckFn,
}

const fn spec_rule(
    id: RuleId,
    name: &'static str,
    severity: Severity,
    description: &'static str,
    check: CheckFn,
) -> RuleInfo {
    RuleInfo {
        id,
        name,
        severity,
        scope: Scope::Spec,
        description,
        needs: &[],
        check,
    }
}

const fn manifest_rule(
    id: RuleId,
    name: &'static str,
    description: &'static str,
    check: CheckFn,
) -> RuleInfo {
    RuleInfo {
        id,
        name,
        severity: Error,
        scope: Scope::Manifest,
        description,
        needs: &[],
        check,
    }
}

const fn cluster_rule(
    id: RuleId,
    name: &'static str,
    needs: &'static [Kind],
    description: &'static str,
    check: CheckFn,
) -> RuleInfo {
    RuleInfo {
        id,
        name,
        severity: Error,
        scope: Scope::Cluster,
        description,
        needs,
        check,
    }
}

use RuleId::*;
use Severity::{Error, Warning};

/// Every rule, in the order README's table lists them (and the order findings come out).
pub static REGISTRY: &[RuleInfo] = &[
    spec_rule(
        RunStrategyConflict,
        "run-strategy-conflict",
        Error,
        "spec.running and spec.runStrategy are both set",
        run_strategy::conflict,
    ),
    spec_rule(
        RunStrategyInvalid,
        "run-strategy-invalid",
        Error,
        "spec.runStrategy is not Always, RerunOnFailure, Halted, Manual, Once or WaitAsReceiver",
        run_strategy::invalid,
    ),
    spec_rule(
        RunningDeprecated,
        "running-deprecated",
        Warning,
        "spec.running is deprecated; the fix replaces it with spec.runStrategy",
        run_strategy::running_deprecated,
    ),
    spec_rule(
        DiskWithoutVolume,
        "disk-without-volume",
        Error,
        "a disk or filesystem names no volume",
        volumes::disk_without_volume,
    ),
    spec_rule(
        CdromWithoutVolume,
        "cdrom-without-volume",
        Warning,
        "a cdrom disk names no volume (an empty CD-ROM needs the DeclarativeHotplugVolumes gate)",
        volumes::cdrom_without_volume,
    ),
    spec_rule(
        DatavolumeTemplateUnused,
        "datavolume-template-unused",
        Error,
        "a dataVolumeTemplates entry is used by no volume (KubeVirt rejects it)",
        volumes::datavolume_template_unused,
    ),
    spec_rule(
        DuplicateName,
        "duplicate-name",
        Error,
        "two disks, volumes, interfaces or networks share a name",
        volumes::duplicate_name,
    ),
    spec_rule(
        VolumeSourceInvalid,
        "volume-source-invalid",
        Error,
        "a volume has no source or more than one",
        volumes::volume_source_invalid,
    ),
    spec_rule(
        BootOrderInvalid,
        "boot-order-invalid",
        Error,
        "a bootOrder is below 1",
        boot::boot_order_invalid,
    ),
    spec_rule(
        BootOrderDuplicate,
        "boot-order-duplicate",
        Error,
        "two devices (disks and interfaces) share a bootOrder",
        boot::boot_order_duplicate,
    ),
    spec_rule(
        BootOrderNonBootable,
        "boot-order-non-bootable",
        Warning,
        "the lowest bootOrder is on a disk whose volume cannot hold an OS (KubeVirt runs the VM; its guest finds nothing to boot)",
        boot::boot_order_non_bootable,
    ),
    spec_rule(
        BootOrderMissing,
        "boot-order-missing",
        Warning,
        "no bootOrder is set and the first disk cannot hold an OS",
        boot::boot_order_missing,
    ),
    spec_rule(
        NoBootableDisk,
        "no-bootable-disk",
        Warning,
        "no disk is backed by a bootable source and no interface has a bootOrder (KubeVirt runs the VM; its guest finds nothing to boot)",
        boot::no_bootable_disk,
    ),
    spec_rule(
        InterfaceWithoutNetwork,
        "interface-without-network",
        Error,
        "an interface names no network",
        network::interface_without_network,
    ),
    spec_rule(
        NetworkWithoutInterface,
        "network-without-interface",
        Error,
        "a network is used by no interface",
        network::network_without_interface,
    ),
    spec_rule(
        MemoryMissing,
        "memory-missing",
        Error,
        "no guest memory, hugepages, memory request or limit, and no instancetype",
        resources::memory_missing,
    ),
    spec_rule(
        RequestsExceedLimits,
        "requests-exceed-limits",
        Error,
        "a CPU or memory request is above its limit",
        resources::requests_exceed_limits,
    ),
    spec_rule(
        GuestMemoryExceedsLimit,
        "guest-memory-exceeds-limit",
        Error,
        "domain.memory.guest is above the memory limit",
        resources::guest_memory_exceeds_limit,
    ),
    spec_rule(
        QuantityInvalid,
        "quantity-invalid",
        Error,
        "a CPU, memory or storage quantity is not a Kubernetes quantity",
        resources::quantity_invalid,
    ),
    spec_rule(
        ImageReferenceInvalid,
        "image-reference-invalid",
        Error,
        "a containerDisk image is not a valid image reference",
        image::image_reference_invalid,
    ),
    spec_rule(
        ImageTagLatest,
        "image-tag-latest",
        Warning,
        "a containerDisk image is untagged or :latest and not pulled Always",
        image::image_tag_latest,
    ),
    manifest_rule(
        SchemaInvalid,
        "schema-invalid",
        "the manifest does not fit KubeVirt's CRD schema (unknown or misplaced field, wrong type, value outside an enum, missing required field)",
        kubevirt_admission::schema_invalid,
    ),
    manifest_rule(
        RunStrategyMissing,
        "run-strategy-missing",
        "neither spec.runStrategy nor spec.running is set (KubeVirt v1.6 refuses it; a warning where the release is not known to be v1.6)",
        kubevirt_admission::run_strategy_missing,
    ),
    manifest_rule(
        FeatureGateDisabled,
        "feature-gate-disabled",
        "a field needs a feature gate the KubeVirt CR does not turn on (video, VSOCK, hostDisk, host devices, ...); a warning without the CR",
        kubevirt_admission::feature_gate_disabled,
    ),
    manifest_rule(
        CloudInitInvalid,
        "cloud-init-invalid",
        "a cloud-init volume has more than one user-data or network-data source, none, inline user data over 2048 bytes, or invalid base64",
        kubevirt_admission::cloud_init_invalid,
    ),
    manifest_rule(
        DeviceInvalid,
        "device-invalid",
        "a disk, interface, input or sound device that virt-api refuses (several targets, a bus or model it does not support, a malformed MAC, ...)",
        kubevirt_admission::device_invalid,
    ),
    manifest_rule(
        FirmwareInvalid,
        "firmware-invalid",
        "firmware virt-api refuses: EFI secure boot without SMM, BIOS and EFI together, ACPI without a table, kernel boot without an image",
        kubevirt_admission::firmware_invalid,
    ),
    manifest_rule(
        NetworkInvalid,
        "network-invalid",
        "networks virt-api refuses: two interfaces on the pod network, masquerade off the pod network, an empty multus networkName, ...",
        kubevirt_admission::network_invalid,
    ),
    manifest_rule(
        NameInvalid,
        "name-invalid",
        "a disk name that is not an RFC 1123 label, or a hostname that is not a DNS label",
        kubevirt_admission::name_invalid,
    ),
    manifest_rule(
        SchedulingInvalid,
        "scheduling-invalid",
        "affinity, topology spread or eviction strategy that virt-api refuses (no node selector terms, In without values, maxSkew 0, ...)",
        kubevirt_admission::scheduling_invalid,
    ),
    manifest_rule(
        CpuMemoryInvalid,
        "cpu-memory-invalid",
        "a CPU or memory layout virt-api refuses: sockets above maxSockets, dedicated CPUs without equal whole requests and limits, hugepages that do not divide memory, ...",
        kubevirt_admission::cpu_memory_invalid,
    ),
    cluster_rule(
        SecretNotFound,
        "secret-not-found",
        &[Kind::Secret],
        "a Secret the VM names does not exist in its namespace",
        references::secret_not_found,
    ),
    cluster_rule(
        ConfigmapNotFound,
        "configmap-not-found",
        &[Kind::ConfigMap],
        "a ConfigMap the VM names does not exist in its namespace",
        references::configmap_not_found,
    ),
    cluster_rule(
        PvcNotFound,
        "pvc-not-found",
        &[Kind::PersistentVolumeClaim],
        "a claimed PVC does not exist and no dataVolumeTemplate creates it",
        storage::pvc_not_found,
    ),
    cluster_rule(
        DatavolumeNotFound,
        "datavolume-not-found",
        &[Kind::DataVolume, Kind::PersistentVolumeClaim],
        "a dataVolume volume names no template, DataVolume or PVC",
        storage::datavolume_not_found,
    ),
    cluster_rule(
        StorageClassNotFound,
        "storage-class-not-found",
        &[Kind::StorageClass],
        "a DataVolume template or pending PVC names a StorageClass that does not exist",
        storage::storage_class_not_found,
    ),
    cluster_rule(
        NoDefaultStorageClass,
        "no-default-storage-class",
        &[Kind::StorageClass],
        "a DataVolume template names no StorageClass and the cluster has no default one",
        storage::no_default_storage_class,
    ),
    RuleInfo {
        severity: Warning,
        ..cluster_rule(
            StorageProfileIncomplete,
            "storage-profile-incomplete",
            &[Kind::StorageClass, Kind::StorageProfile],
            "spec.storage without accessModes, and the StorageProfile gives none",
            storage::storage_profile_incomplete,
        )
    },
    cluster_rule(
        PvcLost,
        "pvc-lost",
        &[Kind::PersistentVolumeClaim],
        "a PVC the VM uses is in phase Lost",
        storage::pvc_lost,
    ),
    cluster_rule(
        NodeSelectorUnsatisfiable,
        "node-selector-unsatisfiable",
        &[Kind::Node],
        "no node matches the nodeSelector and required node affinity",
        scheduling::node_selector_unsatisfiable,
    ),
    cluster_rule(
        TaintsNotTolerated,
        "taints-not-tolerated",
        &[Kind::Node],
        "every matching node has a NoSchedule/NoExecute taint the VM does not tolerate",
        scheduling::taints_not_tolerated,
    ),
    cluster_rule(
        NoSchedulableNode,
        "no-schedulable-node",
        &[Kind::Node],
        "every matching node is cordoned, NotReady or not kubevirt.io/schedulable",
        scheduling::no_schedulable_node,
    ),
    cluster_rule(
        ResourcesExceedCapacity,
        "resources-exceed-capacity",
        &[Kind::Node],
        "the launcher pod's CPU or memory request, overhead included, is above every matching node's allocatable",
        scheduling::resources_exceed_capacity,
    ),
    cluster_rule(
        CpuModelUnavailable,
        "cpu-model-unavailable",
        &[Kind::Node],
        "domain.cpu.model is offered by no matching node",
        scheduling::cpu_model_unavailable,
    ),
    cluster_rule(
        DeviceUnavailable,
        "device-unavailable",
        &[Kind::Node],
        "a GPU or host device is allocatable on no matching node",
        scheduling::device_unavailable,
    ),
    cluster_rule(
        KvmUnavailable,
        "kvm-unavailable",
        &[Kind::Node, Kind::KubeVirt],
        "no matching node has devices.kubevirt.io/kvm and KubeVirt does not emulate",
        node_features::kvm_unavailable,
    ),
    cluster_rule(
        DedicatedCpuUnavailable,
        "dedicated-cpu-unavailable",
        &[Kind::Node, Kind::KubeVirt],
        "dedicatedCpuPlacement, and no matching node is labelled as a CPU-manager node",
        node_features::dedicated_cpu_unavailable,
    ),
    cluster_rule(
        HugepagesUnavailable,
        "hugepages-unavailable",
        &[Kind::Node],
        "no matching node has enough hugepages of the VM's pageSize allocatable",
        node_features::hugepages_unavailable,
    ),
    cluster_rule(
        HostDeviceNotPermitted,
        "host-device-not-permitted",
        &[Kind::KubeVirt],
        "a GPU or host device is not in the KubeVirt CR's permittedHostDevices",
        kubevirt::host_device_not_permitted,
    ),
    RuleInfo {
        severity: Warning,
        ..cluster_rule(
            EvictionNotMigratable,
            "eviction-not-migratable",
            &[Kind::KubeVirt],
            "evictionStrategy LiveMigrate on a VM that cannot live-migrate (node drains block)",
            migration::eviction_not_migratable,
        )
    },
    cluster_rule(
        NetworkAttachmentNotFound,
        "network-attachment-not-found",
        &[Kind::NetworkAttachmentDefinition],
        "a multus networkName names no NetworkAttachmentDefinition",
        references::network_attachment_not_found,
    ),
    cluster_rule(
        NetworkBindingNotFound,
        "network-binding-not-found",
        &[Kind::KubeVirt],
        "an interface's binding plugin is not registered in the KubeVirt CR (virt-controller cannot render the launcher pod)",
        network::network_binding_not_found,
    ),
    cluster_rule(
        InstancetypeNotFound,
        "instancetype-not-found",
        &[],
        "spec.instancetype or spec.preference names an object that does not exist",
        references::instancetype_not_found,
    ),
    cluster_rule(
        PriorityClassNotFound,
        "priority-class-not-found",
        &[Kind::PriorityClass],
        "priorityClassName names no PriorityClass (the launcher pod would be rejected)",
        references::priority_class_not_found,
    ),
    cluster_rule(
        ServiceAccountNotFound,
        "service-account-not-found",
        &[Kind::ServiceAccount],
        "a serviceAccount volume names no ServiceAccount",
        references::service_account_not_found,
    ),
    cluster_rule(
        ResourceQuotaExceeded,
        "resource-quota-exceeded",
        &[Kind::ResourceQuota],
        "the launcher pod (overhead included), its pod count or the VM exceeds a ResourceQuota",
        quota::resource_quota_exceeded,
    ),
    RuleInfo {
        severity: Warning,
        ..cluster_rule(
            ResourceQuotaNeedsLimits,
            "resource-quota-needs-limits",
            &[Kind::ResourceQuota, Kind::LimitRange, Kind::KubeVirt],
            "a ResourceQuota requires CPU or memory limits that neither the VM nor KubeVirt sets",
            quota::resource_quota_needs_limits,
        )
    },
    cluster_rule(
        LimitRangeExceeded,
        "limit-range-exceeded",
        &[Kind::LimitRange],
        "the launcher's request or limit is outside a LimitRange's max or min",
        limit_range::limit_range_exceeded,
    ),
    cluster_rule(
        DatasourceNotFound,
        "datasource-not-found",
        &[Kind::DataSource, Kind::DataVolume],
        "a DataVolume template's sourceRef names a DataSource that does not exist",
        datasource::datasource_not_found,
    ),
    RuleInfo {
        severity: Warning,
        ..cluster_rule(
            DatasourceNotReady,
            "datasource-not-ready",
            &[Kind::DataSource, Kind::DataVolume],
            "the DataSource a DataVolume template clones is not Ready",
            datasource::datasource_not_ready,
        )
    },
    cluster_rule(
        CloneNotAuthorized,
        "clone-not-authorized",
        &[Kind::DataSource, Kind::DataVolume],
        "a DataVolume template clones from another namespace where the VM's ServiceAccount may not create datavolumes/source (asked of the API server)",
        datasource::clone_not_authorized,
    ),
    RuleInfo {
        severity: Warning,
        ..cluster_rule(
            AccessModeUnsupported,
            "access-mode-unsupported",
            &[Kind::StorageClass, Kind::StorageProfile],
            "a DataVolume template asks for an access mode its StorageProfile does not list",
            access::access_mode_unsupported,
        )
    },
    RuleInfo {
        severity: Warning,
        ..cluster_rule(
            PvcInUse,
            "pvc-in-use",
            &[Kind::VirtualMachine, Kind::PersistentVolumeClaim],
            "a ReadWriteOnce PVC the VM mounts is mounted by another VM that runs",
            access::pvc_in_use,
        )
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde_and_round_trip() {
        for rule in REGISTRY {
            let serialized = serde_json::to_value(rule.id).unwrap();
            assert_eq!(serialized, serde_json::json!(rule.name));
            assert_eq!(rule.name.parse::<RuleId>().unwrap(), rule.id);
            assert_eq!(rule.id.info().name, rule.name);
        }
        assert!("no-such-rule".parse::<RuleId>().is_err());
    }

    #[test]
    fn ids_are_unique() {
        let mut names: Vec<_> = REGISTRY.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
    }
}
