//! The parts of a `VirtualMachineInstancetype` / `VirtualMachineClusterInstancetype`
//! (`instancetype.kubevirt.io/v1beta1`) that decide the launcher's request. virt-controller
//! applies them to the VMI before creating it (`pkg/instancetype/apply/*.go`, v1.9).

use compact_str::CompactString;
use serde::Deserialize;
use serde_json::Value;

use crate::model::{Gpu, HostDevice, Hugepages, ModelError, Present, QuantityText};

/// An instancetype's `spec`, as far as the launcher's request goes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancetypeSpec {
    #[serde(default)]
    pub cpu: InstancetypeCpu,
    #[serde(default)]
    pub memory: InstancetypeMemory,
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    #[serde(default)]
    pub host_devices: Vec<HostDevice>,
    /// Fields that change the request in ways not modelled here: when set, the computed
    /// request is only a lower bound.
    pub io_threads_policy: Option<Present>,
    pub io_threads: Option<Present>,
    pub launch_security: Option<Present>,
    pub annotations: Option<Present>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancetypeCpu {
    /// vCPUs (the preference only chooses their topology).
    pub guest: Option<u32>,
    #[serde(rename = "dedicatedCPUPlacement")]
    pub dedicated_cpu_placement: Option<bool>,
    pub isolate_emulator_thread: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancetypeMemory {
    pub guest: Option<QuantityText>,
    /// Percent of guest memory not requested: `requests.memory = guest × (1 − pct/100)`.
    pub overcommit_percent: Option<i64>,
    pub hugepages: Option<Hugepages>,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    spec: InstancetypeSpec,
}

impl InstancetypeSpec {
    /// Reads the instancetype object (either kind); a wrong-typed field is an error with its
    /// path.
    pub fn from_object(value: &Value) -> Result<Self, ModelError> {
        serde_path_to_error::deserialize::<_, Object>(value)
            .map(|object| object.spec)
            .map_err(|err| ModelError {
                path: err.path().to_string(),
                message: err.inner().to_string(),
            })
    }

    /// Whether it sets something this module does not model.
    pub(super) fn has_unmodelled_fields(&self) -> bool {
        self.io_threads_policy.is_some()
            || self.io_threads.is_some()
            || self.launch_security.is_some()
            || self.annotations.is_some()
    }

    pub(super) fn hugepages_size(&self) -> Option<&CompactString> {
        self.memory.hugepages.as_ref()?.page_size.as_ref()
    }
}
