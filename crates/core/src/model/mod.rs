//! Typed view of the parts of a `kubevirt.io/v1` `VirtualMachine` that the rules read.
//!
//! Unknown fields are ignored (KubeVirt adds fields every release); a known field of the wrong
//! type is an error carrying its path, via [`VirtualMachine::from_value`]. Every field is
//! optional here even where the schema requires it: a missing field is a finding or nothing,
//! never a parse failure, so the rules see as much of a half-written manifest as possible.

mod identity;
pub use identity::starts;
pub mod quantity;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

pub use quantity::{ParsedQuantity, QuantityError, QuantityText};

/// `spec.template.spec`, as written in paths.
pub const TEMPLATE_SPEC: &str = "spec.template.spec";

/// KubeVirt's API group and version, and the VirtualMachine's kind and resource in it: what
/// the webhook reviews and the watcher watches (kube-rs's `Resource` for both).
pub const KUBEVIRT_GROUP: &str = "kubevirt.io";
pub const KUBEVIRT_VERSION: &str = "v1";
pub const VM_KIND: &str = "VirtualMachine";
pub const VM_PLURAL: &str = "virtualmachines";

/// Labels as the model holds them (a nodeSelector): short strings are stored inline.
pub type Labels = BTreeMap<CompactString, CompactString>;

/// A field whose presence is all the rules read (`disk: {}`, `pod: {}`, `kernelBoot`): its
/// content is skipped, not stored, so reading a VM does not build a JSON tree for it. `null`
/// reads as absent, as for every `Option`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present)
    }
}

/// A field of a known name held a value of the wrong type.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ModelError {
    /// The field, as KubeVirt writes it (`spec.template.spec.domain.devices.disks[1].name`).
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VirtualMachineSpec,
}

impl VirtualMachine {
    /// Builds the typed view from a document already known to be a VirtualMachine.
    pub fn from_value(value: &Value) -> Result<Self, ModelError> {
        VirtualMachine::deserialize(value)
            .map_err(|err| locate(serde_path_to_error::deserialize(value), &err))
    }

    /// Builds the typed view straight from JSON text (the webhook's request object), without
    /// building a JSON tree first.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        serde_json::from_str(text).map_err(|err| {
            let mut tracked = serde_json::Deserializer::from_str(text);
            locate(serde_path_to_error::deserialize(&mut tracked), &err)
        })
    }

    /// The template's VMI spec, or an empty one when the template is missing.
    pub fn template_spec(&self) -> &VmiSpec {
        static EMPTY: std::sync::OnceLock<VmiSpec> = std::sync::OnceLock::new();
        self.spec
            .template
            .as_ref()
            .and_then(|t| t.spec.as_deref())
            .unwrap_or_else(|| EMPTY.get_or_init(VmiSpec::default))
    }

    pub fn name(&self) -> Option<&str> {
        self.metadata.name.as_deref()
    }
}

/// The error of a failed fast pass, with its field path from a second, path-tracking pass
/// (kept off the common path: tracking allocates a segment per key). serde_path_to_error
/// writes `a.b[1].c`, which is how KubeVirt writes paths already; only the root needs a name.
fn locate<E: std::fmt::Display>(
    tracked: Result<VirtualMachine, serde_path_to_error::Error<E>>,
    untracked: &impl std::fmt::Display,
) -> ModelError {
    match tracked {
        Err(err) => {
            let path = err.path().to_string();
            ModelError {
                path: if path == "." {
                    "(document)".to_string()
                } else {
                    path
                },
                message: err.inner().to_string(),
            }
        }
        // Not expected: both passes read the same document with the same types.
        Ok(_) => ModelError {
            path: "(document)".to_string(),
            message: untracked.to_string(),
        },
    }
}

/// `null` as an empty map, as Go's JSON decoding and the API server read it (`annotations:
/// null` is valid metadata: kubectl and the API server drop it; a review never carries it).
fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<CompactString, CompactString>, D::Error> {
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<CompactString>,
    pub generate_name: Option<CompactString>,
    pub namespace: Option<CompactString>,
    pub uid: Option<CompactString>,
    // No labels: no rule reads them, and each map read per request costs allocations.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub annotations: BTreeMap<CompactString, CompactString>,
    pub deletion_timestamp: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    pub running: Option<bool>,
    pub run_strategy: Option<CompactString>,
    pub template: Option<Box<VmiTemplate>>,
    #[serde(default)]
    pub data_volume_templates: Vec<DataVolumeTemplate>,
    pub instancetype: Option<Matcher>,
    pub preference: Option<Matcher>,
}

/// The run strategies KubeVirt accepts (`v1.VirtualMachineRunStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum RunStrategy {
    Always,
    RerunOnFailure,
    Halted,
    Manual,
    Once,
    WaitAsReceiver,
}

impl RunStrategy {
    pub const ALL: [RunStrategy; 6] = [
        RunStrategy::Always,
        RunStrategy::RerunOnFailure,
        RunStrategy::Halted,
        RunStrategy::Manual,
        RunStrategy::Once,
        RunStrategy::WaitAsReceiver,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Exact, case-sensitive, as the API server's enum validation is.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The strategy that means what the deprecated `spec.running` meant.
    pub fn from_running(running: bool) -> Self {
        if running {
            RunStrategy::Always
        } else {
            RunStrategy::Halted
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: Option<CompactString>,
    pub kind: Option<CompactString>,
    pub infer_from_volume: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiTemplate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<Box<VmiSpec>>,
}

/// `v1.VirtualMachineInstanceSpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiSpec {
    #[serde(default)]
    pub domain: DomainSpec,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub node_selector: Labels,
    pub affinity: Option<k8s_openapi::api::core::v1::Affinity>,
    #[serde(default)]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    #[serde(default)]
    pub access_credentials: Vec<AccessCredential>,
    pub priority_class_name: Option<CompactString>,
    /// The launcher's memory overhead depends on these (`launcher`): arm64 adds UEFI flash, an
    /// exec probe adds the probe binary.
    pub architecture: Option<CompactString>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    /// `evictionStrategy`: what a node drain does to the VM (else the KubeVirt CR's).
    pub eviction_strategy: Option<CompactString>,
}

/// A probe: only whether it runs a command in the launcher (`exec`) matters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub exec: Option<Present>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainSpec {
    #[serde(default)]
    pub devices: Devices,
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    #[serde(default)]
    pub resources: ResourceRequirements,
    pub firmware: Option<Firmware>,
    pub io_threads_policy: Option<CompactString>,
    pub io_threads: Option<IoThreads>,
    pub launch_security: Option<LaunchSecurity>,
}

/// `domain.ioThreads`: the supplemental pool's threads are CPUs the launcher asks for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IoThreads {
    pub supplemental_pool_thread_count: Option<u32>,
}

/// `domain.launchSecurity`: SEV and SEV-SNP guests cost the launcher more memory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchSecurity {
    pub sev: Option<Present>,
    pub snp: Option<Present>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub filesystems: Vec<Filesystem>,
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    #[serde(default)]
    pub host_devices: Vec<HostDevice>,
    pub autoattach_graphics_device: Option<bool>,
    /// `false` stops KubeVirt from adding its default pod interface to a VM that names none.
    pub autoattach_pod_interface: Option<bool>,
    /// `false`: no serial console, so no console log sidecar in the launcher pod.
    pub autoattach_serial_console: Option<bool>,
    /// Overrides the KubeVirt CR's `disableSerialConsoleLog` for this VM.
    pub log_serial_console: Option<bool>,
    pub tpm: Option<Tpm>,
}

/// `devices.tpm`: a TPM runs swtpm in the launcher unless `enabled: false`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tpm {
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    #[serde(default)]
    pub name: CompactString,
    /// Signed so that `0` and negative values reach the `boot-order-invalid` rule.
    pub boot_order: Option<i64>,
    pub disk: Option<Present>,
    pub cdrom: Option<Present>,
    pub lun: Option<Present>,
    /// Opened without QEMU's exclusive lock, so that two VMs may write to one claim.
    pub shareable: Option<bool>,
}

impl Disk {
    pub fn is_cdrom(&self) -> bool {
        self.cdrom.is_some()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    #[serde(default)]
    pub name: CompactString,
    pub boot_order: Option<i64>,
    /// Bindings that change what the launcher asks for (VFIO memory, passt's overhead, a
    /// binding plugin's declared overhead) or whether the VM can live-migrate.
    pub bridge: Option<Present>,
    pub masquerade: Option<Present>,
    pub sriov: Option<Present>,
    pub passt: Option<Present>,
    pub passt_binding: Option<Present>,
    pub binding: Option<PluginBinding>,
    #[serde(default)]
    pub ports: Vec<Present>,
}

/// `interfaces[].binding`: a network binding plugin registered in the KubeVirt CR.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginBinding {
    #[serde(default)]
    pub name: CompactString,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filesystem {
    #[serde(default)]
    pub name: CompactString,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    #[serde(default)]
    pub name: CompactString,
    pub device_name: Option<CompactString>,
    /// A DRA device: a ResourceClaim, not a device-plugin resource of the launcher.
    pub claim_request: Option<Present>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostDevice {
    #[serde(default)]
    pub name: CompactString,
    pub device_name: Option<CompactString>,
    pub claim_request: Option<Present>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    pub cores: Option<u32>,
    pub sockets: Option<u32>,
    pub threads: Option<u32>,
    pub model: Option<CompactString>,
    pub dedicated_cpu_placement: Option<bool>,
    pub isolate_emulator_thread: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub guest: Option<QuantityText>,
    pub max_guest: Option<QuantityText>,
    pub hugepages: Option<Hugepages>,
    pub reserved_overhead: Option<ReservedOverhead>,
}

/// `memory.reservedOverhead` (KubeVirt ≥ 1.8): memory added to the launcher's overhead.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservedOverhead {
    pub added_overhead: Option<QuantityText>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hugepages {
    pub page_size: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    #[serde(default)]
    pub requests: BTreeMap<CompactString, QuantityText>,
    #[serde(default)]
    pub limits: BTreeMap<CompactString, QuantityText>,
    /// VMI only: the launcher's overhead is not added to the memory request.
    pub overcommit_guest_overhead: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firmware {
    pub kernel_boot: Option<Present>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[serde(default)]
    pub name: CompactString,
    pub pod: Option<Present>,
    pub multus: Option<MultusNetwork>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultusNetwork {
    pub network_name: Option<CompactString>,
    pub default: Option<bool>,
}

/// Keys of `v1.Volume` other than `name`: each is one source kind.
pub const KNOWN_SOURCES: &[&str] = &[
    "cloudInitConfigDrive",
    "cloudInitNoCloud",
    "configMap",
    "containerDisk",
    "containerPath",
    "dataVolume",
    "downwardAPI",
    "downwardMetrics",
    "emptyDisk",
    "ephemeral",
    "hostDisk",
    "memoryDump",
    "persistentVolumeClaim",
    "secret",
    "serviceAccount",
    "sysprep",
];

/// `v1.Volume`: a name and (exactly one of) its sources.
#[derive(Debug, Clone, Default)]
pub struct Volume {
    pub name: CompactString,
    pub cloud_init_config_drive: Option<CloudInitSource>,
    pub cloud_init_no_cloud: Option<CloudInitSource>,
    pub config_map: Option<ConfigMapSource>,
    pub container_disk: Option<ContainerDiskSource>,
    pub container_path: Option<Present>,
    pub data_volume: Option<DataVolumeSource>,
    pub downward_api: Option<Present>,
    pub downward_metrics: Option<Present>,
    pub empty_disk: Option<EmptyDiskSource>,
    pub ephemeral: Option<EphemeralSource>,
    pub host_disk: Option<HostDiskSource>,
    pub memory_dump: Option<ClaimSource>,
    pub persistent_volume_claim: Option<ClaimSource>,
    pub secret: Option<SecretSource>,
    pub service_account: Option<ServiceAccountSource>,
    pub sysprep: Option<SysprepSource>,
    /// Non-null keys that are neither `name` nor a known source: a newer KubeVirt's source
    /// kinds, so that the rules treat such a volume as "has a source we cannot judge" rather
    /// than "no source".
    pub unknown_sources: Vec<String>,
}

/// As derived, except that the keys the model does not know are kept in `unknown_sources`
/// instead of dropped, in the same pass.
impl<'de> Deserialize<'de> for Volume {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(VolumeVisitor)
    }
}

struct VolumeVisitor;

impl<'de> Visitor<'de> for VolumeVisitor {
    type Value = Volume;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a volume: a map with a name and a source")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Volume, A::Error> {
        let mut volume = Volume::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "name" => volume.name = map.next_value()?,
                "cloudInitConfigDrive" => volume.cloud_init_config_drive = map.next_value()?,
                "cloudInitNoCloud" => volume.cloud_init_no_cloud = map.next_value()?,
                "configMap" => volume.config_map = map.next_value()?,
                "containerDisk" => volume.container_disk = map.next_value()?,
                "containerPath" => volume.container_path = map.next_value()?,
                "dataVolume" => volume.data_volume = map.next_value()?,
                "downwardAPI" => volume.downward_api = map.next_value()?,
                "downwardMetrics" => volume.downward_metrics = map.next_value()?,
                "emptyDisk" => volume.empty_disk = map.next_value()?,
                "ephemeral" => volume.ephemeral = map.next_value()?,
                "hostDisk" => volume.host_disk = map.next_value()?,
                "memoryDump" => volume.memory_dump = map.next_value()?,
                "persistentVolumeClaim" => volume.persistent_volume_claim = map.next_value()?,
                "secret" => volume.secret = map.next_value()?,
                "serviceAccount" => volume.service_account = map.next_value()?,
                "sysprep" => volume.sysprep = map.next_value()?,
                _ => {
                    if map.next_value::<Option<IgnoredAny>>()?.is_some() {
                        volume.unknown_sources.push(key.into_owned());
                    }
                }
            }
        }
        Ok(volume)
    }
}

/// A map key, borrowed from the input where it can be (no allocation per key).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a field name")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_string())))
            }

            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// What a volume's source says about booting from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootability {
    /// Can hold an operating system image.
    Bootable,
    /// Generated or blank content (cloud-init, secrets, an empty disk): never an OS.
    NotBootable,
    /// A source this tool cannot judge (no source, several, or one it does not know).
    Unknown,
}

impl Volume {
    /// The known source kinds that are set, by their JSON names.
    pub fn sources(&self) -> impl Iterator<Item = &'static str> + use<> {
        let present = [
            self.cloud_init_config_drive.is_some(),
            self.cloud_init_no_cloud.is_some(),
            self.config_map.is_some(),
            self.container_disk.is_some(),
            self.container_path.is_some(),
            self.data_volume.is_some(),
            self.downward_api.is_some(),
            self.downward_metrics.is_some(),
            self.empty_disk.is_some(),
            self.ephemeral.is_some(),
            self.host_disk.is_some(),
            self.memory_dump.is_some(),
            self.persistent_volume_claim.is_some(),
            self.secret.is_some(),
            self.service_account.is_some(),
            self.sysprep.is_some(),
        ];
        KNOWN_SOURCES
            .iter()
            .zip(present)
            .filter_map(|(name, set)| set.then_some(*name))
    }

    /// The single source kind, when there is exactly one known source and nothing unknown.
    pub fn single_source(&self) -> Option<&'static str> {
        let mut known = self.sources();
        match (known.next(), known.next(), self.unknown_sources.is_empty()) {
            (Some(one), None, true) => Some(one),
            _ => None,
        }
    }

    pub fn bootability(&self) -> Bootability {
        match self.single_source() {
            Some(
                "containerDisk" | "persistentVolumeClaim" | "dataVolume" | "ephemeral" | "hostDisk",
            ) => Bootability::Bootable,
            Some(
                "cloudInitNoCloud"
                | "cloudInitConfigDrive"
                | "secret"
                | "configMap"
                | "serviceAccount"
                | "downwardAPI"
                | "downwardMetrics"
                | "sysprep"
                | "emptyDisk",
            ) => Bootability::NotBootable,
            _ => Bootability::Unknown,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    pub name: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitSource {
    pub secret_ref: Option<LocalObjectReference>,
    pub network_data_secret_ref: Option<LocalObjectReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    pub name: Option<CompactString>,
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSource {
    pub secret_name: Option<CompactString>,
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSource {
    pub service_account_name: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SysprepSource {
    pub secret: Option<LocalObjectReference>,
    pub config_map: Option<LocalObjectReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDiskSource {
    pub image: Option<CompactString>,
    pub image_pull_policy: Option<CompactString>,
    pub image_pull_secret: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSource {
    pub name: Option<CompactString>,
    /// A hotplug volume: KubeVirt starts the VM without it and attaches it once it exists.
    pub hotpluggable: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSource {
    pub claim_name: Option<CompactString>,
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralSource {
    pub persistent_volume_claim: Option<ClaimSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDiskSource {
    pub capacity: Option<QuantityText>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostDiskSource {
    pub path: Option<CompactString>,
    pub capacity: Option<QuantityText>,
    /// Only a shared host disk lets the VM live-migrate.
    pub shared: Option<bool>,
}

/// `v1.AccessCredential`: the Secrets it names are what the cluster rules look up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessCredential {
    pub ssh_public_key: Option<CredentialSource>,
    pub user_password: Option<CredentialSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSource {
    pub source: Option<CredentialSecretSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSecretSource {
    pub secret: Option<CredentialSecret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSecret {
    pub secret_name: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeTemplate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DataVolumeSpec,
}

/// CDI `v1beta1.DataVolumeSpec`, the parts the rules read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSpec {
    pub pvc: Option<StorageSpec>,
    pub storage: Option<StorageSpec>,
    pub source: Option<DataVolumeSourceSpec>,
    pub source_ref: Option<SourceRef>,
}

/// `sourceRef`: where CDI takes the DataVolume's content from (only kind `DataSource`
/// exists); the namespace defaults to the DataVolume's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    pub kind: Option<CompactString>,
    pub name: Option<CompactString>,
    pub namespace: Option<CompactString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    #[serde(default)]
    pub access_modes: Vec<CompactString>,
    /// `Filesystem` or `Block`.
    pub volume_mode: Option<CompactString>,
    pub storage_class_name: Option<CompactString>,
    #[serde(default)]
    pub resources: ResourceRequirements,
}

/// CDI import sources; each may name a Secret and a ConfigMap.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceSpec {
    pub http: Option<ImportSource>,
    pub registry: Option<ImportSource>,
    pub s3: Option<ImportSource>,
    pub gcs: Option<ImportSource>,
    pub imageio: Option<ImportSource>,
    pub vddk: Option<ImportSource>,
    pub pvc: Option<Present>,
    pub blank: Option<Present>,
    pub upload: Option<Present>,
    pub snapshot: Option<Present>,
}

impl DataVolumeSourceSpec {
    /// Each import source that is set, with its JSON name.
    pub fn imports(&self) -> impl Iterator<Item = (&'static str, &ImportSource)> {
        [
            ("http", &self.http),
            ("registry", &self.registry),
            ("s3", &self.s3),
            ("gcs", &self.gcs),
            ("imageio", &self.imageio),
            ("vddk", &self.vddk),
        ]
        .into_iter()
        .filter_map(|(name, source)| source.as_ref().map(|s| (name, s)))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSource {
    pub secret_ref: Option<CompactString>,
    pub cert_config_map: Option<CompactString>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_type_names_the_field() {
        let doc = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "spec": {"template": {"spec": {"domain": {"devices": {"disks": [
                {"name": "a"}, {"name": "b", "bootOrder": "first"}
            ]}}}}}
        });
        let err = VirtualMachine::from_value(&doc).unwrap_err();
        assert_eq!(
            err.path,
            "spec.template.spec.domain.devices.disks[1].bootOrder"
        );
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn null_annotations_are_none_as_the_api_server_reads_them() {
        let doc = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "a", "annotations": null}});
        let vm = VirtualMachine::from_value(&doc).expect("null annotations are valid metadata");
        assert!(vm.metadata.annotations.is_empty());
        // A wrong type is still named.
        let doc = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "a", "annotations": ["x"]}});
        assert_eq!(
            VirtualMachine::from_value(&doc).unwrap_err().path,
            "metadata.annotations"
        );
    }

    #[test]
    fn unknown_fields_are_tolerated_and_unknown_sources_recorded() {
        let doc = json!({
            "metadata": {"name": "x", "somethingNew": 1},
            "spec": {"template": {"spec": {"volumes": [
                {"name": "a", "futureSource": {"x": 1}},
                {"name": "b", "containerDisk": {"image": "quay.io/x/y:1"}, "nothing": null}
            ]}}}
        });
        let vm = VirtualMachine::from_value(&doc).unwrap();
        let volumes = &vm.template_spec().volumes;
        assert_eq!(volumes[0].unknown_sources, vec!["futureSource".to_string()]);
        assert_eq!(volumes[0].bootability(), Bootability::Unknown);
        assert!(volumes[1].unknown_sources.is_empty());
        assert_eq!(volumes[1].bootability(), Bootability::Bootable);
    }

    #[test]
    fn json_text_reads_as_the_json_tree_does() {
        let doc = json!({
            "metadata": {"name": "x", "namespace": "ns"},
            "spec": {"runStrategy": "Always", "template": {"spec": {"volumes": [
                {"name": "a", "futureSource": {"x": 1}, "containerDisk": null},
                {"name": "b", "dataVolume": {"name": "b-dv"}}
            ]}}}
        });
        let from_text = VirtualMachine::from_json(&doc.to_string()).unwrap();
        let from_tree = VirtualMachine::from_value(&doc).unwrap();
        assert_eq!(format!("{from_text:?}"), format!("{from_tree:?}"));
        assert_eq!(
            from_text.template_spec().volumes[0].unknown_sources,
            vec!["futureSource".to_string()]
        );

        let wrong = r#"{"spec": {"template": {"spec": {"volumes": [{"name": 7}]}}}}"#;
        let err = VirtualMachine::from_json(wrong).unwrap_err();
        assert_eq!(err.path, "spec.template.spec.volumes[0].name");
        assert!(err.message.contains("invalid type"), "{}", err.message);
        assert_eq!(
            VirtualMachine::from_json("7").unwrap_err().path,
            "(document)"
        );
    }

    #[test]
    fn presence_fields_keep_only_whether_they_are_set() {
        let text = r#"{"spec": {"template": {"spec": {"domain": {
            "devices": {"disks": [{"name": "a", "cdrom": {"bus": "sata"}},
                                  {"name": "b", "cdrom": null, "disk": {"bus": "virtio"}}]},
            "firmware": {"kernelBoot": null}}}}}}"#;
        for vm in [
            VirtualMachine::from_json(text).unwrap(),
            VirtualMachine::from_value(&serde_json::from_str(text).unwrap()).unwrap(),
        ] {
            let domain = &vm.template_spec().domain;
            let disks = &domain.devices.disks;
            assert!(disks[0].is_cdrom() && disks[0].disk.is_none());
            assert!(!disks[1].is_cdrom() && disks[1].disk == Some(Present));
            assert!(domain.firmware.as_ref().unwrap().kernel_boot.is_none());
        }
    }

    #[test]
    fn every_known_source_is_read_as_itself() {
        for source in KNOWN_SOURCES {
            let doc = json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "v", *source: {}}
            ]}}}});
            let vm = VirtualMachine::from_json(&doc.to_string()).unwrap();
            let volume = &vm.template_spec().volumes[0];
            assert_eq!(volume.sources().collect::<Vec<_>>(), vec![*source]);
            assert!(volume.unknown_sources.is_empty(), "{source}");
        }
    }

    #[test]
    fn run_strategy_parse_is_exact() {
        assert_eq!(RunStrategy::parse("Always"), Some(RunStrategy::Always));
        assert_eq!(RunStrategy::parse("always"), None);
        assert_eq!(RunStrategy::from_running(false), RunStrategy::Halted);
    }
}
