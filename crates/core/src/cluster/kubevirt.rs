//! The `KubeVirt` custom resource (`kubevirt.io/v1`, one per cluster) as the rules read it: the
//! version KubeVirt runs, the parts of `spec.configuration` that change what a VM needs, and
//! KubeVirt's own health conditions.
//!
//! Only those fields are kept. KubeVirt reads its configuration by unmarshalling the CR's
//! `spec.configuration` over its defaults (`pkg/virt-config/configuration.go`,
//! `setConfigFromKubeVirt`), so a field the CR leaves out (or sets to its zero value, which
//! `omitempty` drops) keeps KubeVirt's default; [`Configuration`] applies those defaults. A
//! configuration KubeVirt would refuse (`validateConfig`) makes it keep its last valid one, which
//! we cannot see: [`KubeVirt::configuration`] then answers `None`.

pub mod version;

use std::collections::BTreeMap;

use compact_str::CompactString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use super::wire::Meta;
use crate::model::{ParsedQuantity, Present, QuantityText};
pub use version::KubeVirtVersion;

/// A field of the KubeVirt CR held a value of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KubeVirtError {
    /// As the API server writes it: `spec.configuration.developerConfiguration.memoryOvercommit`.
    pub path: String,
    pub message: String,
}

/// The KubeVirt CR, reduced to what the rules read.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeVirt {
    pub name: CompactString,
    pub namespace: CompactString,
    /// `status.observedKubeVirtVersion`; `None` when absent or not a version (`latest`).
    pub version: Option<KubeVirtVersion>,
    /// `status.defaultArchitecture`: what KubeVirt writes into VMIs that name none.
    pub default_architecture: Option<CompactString>,
    configuration: Option<Configuration>,
    pub conditions: Conditions,
}

/// `spec.configuration`, with KubeVirt's defaults where the CR is silent.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    feature_gates: Vec<CompactString>,
    disabled_feature_gates: Vec<CompactString>,
    /// `developerConfiguration.memoryOvercommit`, percent (default 100): the launcher asks for
    /// guest × 100 ÷ this.
    pub memory_overcommit: u64,
    /// `developerConfiguration.cpuAllocationRatio` (default 10): vCPUs per requested CPU.
    pub cpu_allocation_ratio: u64,
    /// `cpuRequest` when it differs from KubeVirt's default `100m`: only then does virt-api write
    /// it into VMIs (`setDefaultResourceRequests`); at the default the ratio decides.
    pub cpu_request: Option<ParsedQuantity>,
    /// `developerConfiguration.useEmulation`: no `/dev/kvm` needed.
    pub use_emulation: bool,
    /// `additionalGuestMemoryOverheadRatio`; `None` when unset or not a number (KubeVirt then
    /// leaves the overhead as it is).
    pub overhead_ratio: Option<f64>,
    /// `hypervisors[0].name`, as written; it takes effect only with the ConfigurableHypervisor
    /// gate ([`Configuration::hypervisor`]).
    hypervisor_name: Option<CompactString>,
    /// `permittedHostDevices`: `None` when absent (no check); `Some` with empty lists when
    /// present but empty (every device refused).
    pub permitted_host_devices: Option<PermittedHostDevices>,
    /// `evictionStrategy` (default None).
    pub eviction_strategy: EvictionStrategy,
    /// `autoCPULimitNamespaceLabelSelector`.
    auto_cpu_limit_selector: Option<LabelSelector>,
    /// `network.binding`: the binding plugins, by name.
    pub network_bindings: BTreeMap<CompactString, NetworkBinding>,
    /// `network.defaultNetworkInterface` (default bridge).
    pub default_network_interface: DefaultNetworkInterface,
    /// `virtualMachineOptions.disableSerialConsoleLog` is set: launcher pods get no
    /// guest-console-log sidecar unless the VM asks for one.
    pub serial_console_log_disabled: bool,
}

/// The binding of the pod interface KubeVirt adds to a VM that names no interface and no
/// network (`SetDefaultNetworkInterface`, all releases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultNetworkInterface {
    Bridge,
    Masquerade,
    Slirp,
}

/// `permittedHostDevices`: the resource names each list allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermittedHostDevices {
    pub pci: Vec<CompactString>,
    pub mediated: Vec<CompactString>,
    pub usb: Vec<CompactString>,
}

impl PermittedHostDevices {
    /// Whether a GPU or host device `deviceName` is listed (virt-controller's
    /// `validatePermittedHostDevices` looks in all three lists).
    pub fn permits(&self, resource_name: &str) -> bool {
        [&self.pci, &self.mediated, &self.usb]
            .into_iter()
            .flatten()
            .any(|name| name == resource_name)
    }
}

/// `network.binding.<name>`: what a binding plugin adds to the launcher and whether VMs using
/// it can migrate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkBinding {
    /// `computeResourceOverhead.requests.memory`.
    pub memory_overhead: Option<ParsedQuantity>,
    /// `migration` is set: the plugin supports live migration.
    pub migratable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionStrategy {
    None,
    LiveMigrate,
    LiveMigrateIfPossible,
    External,
    /// A value this tool does not know: rules that depend on it report nothing.
    Other(CompactString),
}

impl EvictionStrategy {
    pub fn parse(text: &str) -> Self {
        match text {
            "None" => EvictionStrategy::None,
            "LiveMigrate" => EvictionStrategy::LiveMigrate,
            "LiveMigrateIfPossible" => EvictionStrategy::LiveMigrateIfPossible,
            "External" => EvictionStrategy::External,
            other => EvictionStrategy::Other(other.into()),
        }
    }
}

/// How the CR lists a feature gate. Whether the gate is on also depends on its maturity in the
/// running release (GA gates are always on, Beta ones on unless disabled), which callers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateSetting {
    /// In `featureGates` (wins over `disabledFeatureGates`, as in KubeVirt's `IsEnabled`).
    Enabled,
    /// In `disabledFeatureGates` only.
    Disabled,
    Unset,
}

/// The hypervisor KubeVirt runs VMs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hypervisor {
    Kvm,
    /// `hyperv-direct` (KubeVirt ≥ 1.8): Microsoft Hypervisor through `/dev/mshv`.
    HypervDirect,
    Other(CompactString),
}

impl Hypervisor {
    /// The device-plugin resource a launcher asks for: `None` for a hypervisor this tool does
    /// not know.
    pub fn device_resource(&self) -> Option<&'static str> {
        match self {
            Hypervisor::Kvm => Some("devices.kubevirt.io/kvm"),
            Hypervisor::HypervDirect => Some("devices.kubevirt.io/mshv"),
            Hypervisor::Other(_) => None,
        }
    }
}

pub const CONFIGURABLE_HYPERVISOR_GATE: &str = "ConfigurableHypervisor";
pub const AUTO_RESOURCE_LIMITS_GATE: &str = "AutoResourceLimitsGate";
pub const CPU_MANAGER_GATE: &str = "CPUManager";
pub const GPUS_WITH_DRA_GATE: &str = "GPUsWithDRA";

impl Configuration {
    pub fn feature_gate(&self, name: &str) -> GateSetting {
        if self.feature_gates.iter().any(|g| g == name) {
            GateSetting::Enabled
        } else if self.disabled_feature_gates.iter().any(|g| g == name) {
            GateSetting::Disabled
        } else {
            GateSetting::Unset
        }
    }

    /// The hypervisor in effect: `hypervisors[0]` only when the ConfigurableHypervisor gate
    /// (Alpha since 1.8, so it must be listed) is on; KVM otherwise
    /// (`GetHypervisorFromKvConfig`, v1.8). A CR from before 1.8 cannot hold the field: the API
    /// server prunes fields its CRD schema does not know.
    pub fn hypervisor(&self) -> Hypervisor {
        if self.feature_gate(CONFIGURABLE_HYPERVISOR_GATE) != GateSetting::Enabled {
            return Hypervisor::Kvm;
        }
        match self.hypervisor_name.as_deref() {
            None | Some("" | "kvm") => Hypervisor::Kvm,
            Some("hyperv-direct") => Hypervisor::HypervDirect,
            Some(other) => Hypervisor::Other(other.into()),
        }
    }

    /// Whether a namespace with these labels gets automatic CPU limits
    /// (`autoCPULimitNamespaceLabelSelector`, all releases since 1.0, not gated). A selector
    /// KubeVirt cannot convert (an unknown operator) counts as none, as KubeVirt does.
    pub fn auto_cpu_limit_applies<'l>(&self, label: impl Fn(&str) -> Option<&'l str>) -> bool {
        self.auto_cpu_limit_selector
            .as_ref()
            .is_some_and(|selector| selector_matches(selector, label))
    }

    /// Whether `autoCPULimitNamespaceLabelSelector` is set at all.
    pub fn has_auto_cpu_limit_selector(&self) -> bool {
        self.auto_cpu_limit_selector.is_some()
    }
}

/// `metav1.LabelSelectorAsSelector` then `Matches`: every matchLabels pair and every expression
/// must hold; an empty selector matches everything.
fn selector_matches<'l>(selector: &LabelSelector, label: impl Fn(&str) -> Option<&'l str>) -> bool {
    let labels_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| label(key) == Some(value.as_str()));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let present = label(&req.key);
        match req.operator.as_str() {
            "In" => present.is_some_and(|v| values.iter().any(|x| x == v)),
            "NotIn" => present.is_none_or(|v| !values.iter().any(|x| x == v)),
            "Exists" => present.is_some(),
            "DoesNotExist" => present.is_none(),
            // LabelSelectorAsSelector fails; KubeVirt then assumes no selector.
            _ => false,
        }
    });
    labels_hold && expressions_hold
}

/// KubeVirt's health as its operator reports it (`status.conditions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub available: Option<Condition>,
    pub progressing: Option<Condition>,
    pub degraded: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub status: ConditionStatus,
    pub reason: Option<CompactString>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// The release whose launcher selects `kubevirt.io/cpumanager` instead of `cpumanager`.
const NAMESPACED_CPU_MANAGER_LABEL: KubeVirtVersion = KubeVirtVersion::release(1, 8, 0);
/// The releases whose virt-controller checks no GPU against `permittedHostDevices` while the
/// GPUsWithDRA gate is on (from its first release to the one before 1.9).
const GPUS_WITH_DRA_INTRODUCED: KubeVirtVersion = KubeVirtVersion::release(1, 6, 0);
const GPUS_WITH_DRA_CLAIMS_ONLY: KubeVirtVersion = KubeVirtVersion::release(1, 9, 0);

impl KubeVirt {
    /// A KubeVirt of unknown release with its default configuration: what a rule assumes,
    /// and says it assumes, where the view has no CR.
    pub fn defaults() -> &'static KubeVirt {
        static DEFAULTS: std::sync::OnceLock<KubeVirt> = std::sync::OnceLock::new();
        DEFAULTS.get_or_init(|| {
            // A fixed, valid document: reading it cannot fail; were it to, no CR is no worse.
            RawKubeVirt::deserialize(serde_json::json!({"spec": {"configuration": {}}}))
                .unwrap_or_default()
                .into()
        })
    }

    /// Reads the CR from its JSON object.
    pub fn from_value(value: &Value) -> Result<Self, KubeVirtError> {
        let raw: RawKubeVirt = serde_path_to_error::deserialize(value).map_err(located)?;
        Ok(raw.into())
    }

    /// Reads the CR from JSON text.
    pub fn from_json(text: &str) -> Result<Self, KubeVirtError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let raw: RawKubeVirt =
            serde_path_to_error::deserialize(&mut deserializer).map_err(located)?;
        Ok(raw.into())
    }

    /// The configuration KubeVirt runs with, or `None` when the CR's would be refused and
    /// KubeVirt keeps an earlier one we cannot see.
    pub fn configuration(&self) -> Option<&Configuration> {
        self.configuration.as_ref()
    }

    /// Whether virt-controller may skip every GPU when it checks `permittedHostDevices`:
    /// v1.6–v1.8 do while the GPUsWithDRA gate (Alpha) is listed (`if
    /// !config.GPUsWithDRAGateEnabled()` around the GPU loop of `validatePermittedHostDevices`);
    /// v1.9 skips only GPUs with a `claimRequest`, and before 1.6 there is no gate. True when
    /// the gate is listed and the version is unknown.
    pub fn may_skip_gpu_permission_check(&self) -> bool {
        let listed = self
            .configuration()
            .is_some_and(|c| c.feature_gate(GPUS_WITH_DRA_GATE) == GateSetting::Enabled);
        let Some(version) = self.version.as_ref() else {
            return listed;
        };
        listed
            && version.at_least(&GPUS_WITH_DRA_INTRODUCED) != Some(false)
            && version.at_least(&GPUS_WITH_DRA_CLAIMS_ONLY) != Some(true)
    }

    /// The node label the launcher of a dedicated-CPU VM selects on (`=true`): virt-handler
    /// writes both labels since 1.8, only `cpumanager` before. `None` when the version is
    /// unknown.
    pub fn cpu_manager_label(&self) -> Option<&'static str> {
        let namespaced = self
            .version
            .as_ref()?
            .at_least(&NAMESPACED_CPU_MANAGER_LABEL)?;
        Some(if namespaced {
            "kubevirt.io/cpumanager"
        } else {
            "cpumanager"
        })
    }
}

/// serde_path_to_error writes `a.b[1].c`, as the API server does; only the root needs a name.
fn located<E: std::fmt::Display>(err: serde_path_to_error::Error<E>) -> KubeVirtError {
    let path = err.path().to_string();
    KubeVirtError {
        path: if path == "." {
            "(document)".to_string()
        } else {
            path
        },
        message: err.inner().to_string(),
    }
}

// The CR as written. Only the fields above are read; everything else is skipped.

/// The CR as the cluster view reads it off the wire (see [`super::objects`]).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawKubeVirt {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    spec: RawSpec,
    #[serde(default)]
    status: RawStatus,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(default)]
    configuration: Option<RawConfiguration>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConfiguration {
    developer_configuration: Option<RawDeveloper>,
    cpu_request: Option<QuantityText>,
    eviction_strategy: Option<CompactString>,
    additional_guest_memory_overhead_ratio: Option<CompactString>,
    permitted_host_devices: Option<RawPermitted>,
    #[serde(default)]
    hypervisors: Vec<RawHypervisor>,
    #[serde(rename = "autoCPULimitNamespaceLabelSelector")]
    auto_cpu_limit_namespace_label_selector: Option<LabelSelector>,
    network: Option<RawNetwork>,
    virtual_machine_options: Option<RawVmOptions>,
    /// Read only to tell whether KubeVirt accepts the configuration.
    image_pull_policy: Option<CompactString>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawVmOptions {
    disable_serial_console_log: Option<Present>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawDeveloper {
    #[serde(default)]
    feature_gates: Vec<CompactString>,
    #[serde(default)]
    disabled_feature_gates: Vec<CompactString>,
    memory_overcommit: Option<i64>,
    cpu_allocation_ratio: Option<i64>,
    use_emulation: Option<bool>,
    #[serde(rename = "lessPVCSpaceToleration")]
    less_pvc_space_toleration: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPermitted {
    #[serde(default)]
    pci_host_devices: Vec<RawPermittedDevice>,
    #[serde(default)]
    mediated_devices: Vec<RawPermittedDevice>,
    #[serde(default)]
    usb: Vec<RawPermittedDevice>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPermittedDevice {
    #[serde(default)]
    resource_name: CompactString,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct RawHypervisor {
    name: Option<CompactString>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawNetwork {
    #[serde(default)]
    binding: BTreeMap<CompactString, RawBinding>,
    default_network_interface: Option<CompactString>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawBinding {
    compute_resource_overhead: Option<RawRequirements>,
    migration: Option<Present>,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct RawRequirements {
    #[serde(default)]
    requests: BTreeMap<CompactString, QuantityText>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    observed_kube_virt_version: Option<CompactString>,
    default_architecture: Option<CompactString>,
    #[serde(default)]
    conditions: Vec<RawCondition>,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct RawCondition {
    #[serde(rename = "type", default)]
    type_: CompactString,
    #[serde(default)]
    status: CompactString,
    reason: Option<CompactString>,
    message: Option<String>,
}

impl From<RawKubeVirt> for KubeVirt {
    fn from(raw: RawKubeVirt) -> Self {
        let mut conditions = Conditions::default();
        for condition in raw.status.conditions {
            let slot = match condition.type_.as_str() {
                "Available" => &mut conditions.available,
                "Progressing" => &mut conditions.progressing,
                "Degraded" => &mut conditions.degraded,
                _ => continue,
            };
            *slot = Some(Condition {
                status: match condition.status.as_str() {
                    "True" => ConditionStatus::True,
                    "False" => ConditionStatus::False,
                    _ => ConditionStatus::Unknown,
                },
                reason: condition.reason.filter(|r| !r.is_empty()),
                message: condition.message.filter(|m| !m.is_empty()),
            });
        }
        KubeVirt {
            name: raw.metadata.name.into(),
            namespace: raw.metadata.namespace.unwrap_or_default().into(),
            version: raw
                .status
                .observed_kube_virt_version
                .as_deref()
                .and_then(KubeVirtVersion::parse),
            default_architecture: raw.status.default_architecture.filter(|a| !a.is_empty()),
            configuration: Configuration::from_raw(raw.spec.configuration.unwrap_or_default()),
            conditions,
        }
    }
}

impl Configuration {
    /// Applies KubeVirt's defaults; `None` where `validateConfig` (or unmarshalling) would
    /// refuse the configuration.
    fn from_raw(raw: RawConfiguration) -> Option<Self> {
        let developer = raw.developer_configuration.unwrap_or_default();
        // Zero is `omitempty`'s "unset": the default stays. Negative is refused.
        let positive_or = |value: Option<i64>, default: u64| match value {
            None | Some(0) => Some(default),
            Some(v) => u64::try_from(v).ok(),
        };
        let memory_overcommit = positive_or(developer.memory_overcommit, 100)?;
        let cpu_allocation_ratio = positive_or(developer.cpu_allocation_ratio, 10)?;
        if developer
            .less_pvc_space_toleration
            .is_some_and(|t| !(0..=100).contains(&t))
        {
            return None;
        }
        if !matches!(
            raw.image_pull_policy.as_deref(),
            None | Some("" | "Always" | "Never" | "IfNotPresent")
        ) {
            return None;
        }
        let network = raw.network.unwrap_or_default();
        let default_network_interface = match network.default_network_interface.as_deref() {
            None | Some("" | "bridge") => DefaultNetworkInterface::Bridge,
            Some("masquerade") => DefaultNetworkInterface::Masquerade,
            Some("slirp") => DefaultNetworkInterface::Slirp,
            Some(_) => return None,
        };
        let default_cpu_request = ParsedQuantity::parse("100m").ok()?;
        let cpu_request = match raw.cpu_request {
            None => None,
            Some(text) => Some(text.parse().ok()?).filter(|q| *q != default_cpu_request),
        };
        let overhead_ratio = match raw.additional_guest_memory_overhead_ratio {
            // Unparsable: KubeVirt logs and leaves the overhead unchanged.
            Some(text) => match text.trim().parse::<f64>() {
                Ok(ratio) if !ratio.is_finite() => return None,
                Ok(ratio) => Some(ratio),
                Err(_) => None,
            },
            None => None,
        };
        let mut network_bindings = BTreeMap::new();
        for (name, binding) in network.binding {
            let memory_overhead = match binding
                .compute_resource_overhead
                .and_then(|o| o.requests.get("memory").cloned())
            {
                Some(text) => Some(text.parse().ok()?),
                None => None,
            };
            network_bindings.insert(
                name,
                NetworkBinding {
                    memory_overhead,
                    migratable: binding.migration.is_some(),
                },
            );
        }
        let names = |devices: Vec<RawPermittedDevice>| {
            devices
                .into_iter()
                .map(|d| d.resource_name)
                .filter(|n| !n.is_empty())
                .collect()
        };
        Some(Configuration {
            feature_gates: developer.feature_gates,
            disabled_feature_gates: developer.disabled_feature_gates,
            memory_overcommit,
            cpu_allocation_ratio,
            cpu_request,
            use_emulation: developer.use_emulation.unwrap_or(false),
            overhead_ratio,
            hypervisor_name: raw.hypervisors.into_iter().next().and_then(|h| h.name),
            permitted_host_devices: raw.permitted_host_devices.map(|p| PermittedHostDevices {
                pci: names(p.pci_host_devices),
                mediated: names(p.mediated_devices),
                usb: names(p.usb),
            }),
            eviction_strategy: raw
                .eviction_strategy
                .as_deref()
                .map_or(EvictionStrategy::None, EvictionStrategy::parse),
            auto_cpu_limit_selector: raw.auto_cpu_limit_namespace_label_selector,
            network_bindings,
            default_network_interface,
            serial_console_log_disabled: raw
                .virtual_machine_options
                .is_some_and(|o| o.disable_serial_console_log.is_some()),
        })
    }
}

#[cfg(test)]
mod tests;
