//! What the rules share about one VM, computed once: name lookups and the effective disk list.

use std::borrow::Cow;
use std::cell::OnceCell;

use foldhash::{HashMap, HashMapExt};

use super::small_set::{SCAN_UP_TO, SmallSet};
use crate::cluster::{ClusterView, Kind, KubeVirt, NodeSet};
use crate::launcher::{self, InstancetypeSpec, LauncherInput, LauncherRequest, NamespaceFacts};
use crate::model::{TEMPLATE_SPEC, VirtualMachine, VmiSpec, Volume};

/// Where a disk of the effective list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskOrigin {
    /// `T.domain.devices.disks[index]`.
    Listed { index: usize },
    /// Appended by KubeVirt for `T.volumes[index]`, which no disk or filesystem names
    /// (`SetDefaultVolumeDisk`).
    Defaulted { volume_index: usize },
}

/// A disk as KubeVirt will run it.
#[derive(Debug, Clone)]
pub struct EffectiveDisk<'a> {
    pub name: &'a str,
    pub origin: DiskOrigin,
    pub boot_order: Option<i64>,
    pub cdrom: bool,
    pub volume: Option<&'a Volume>,
}

impl EffectiveDisk<'_> {
    /// The path of the disk (listed) or of the volume it was made for (defaulted).
    pub fn path(&self) -> String {
        match self.origin {
            DiskOrigin::Listed { index } => {
                format!("{TEMPLATE_SPEC}.domain.devices.disks[{index}]")
            }
            DiskOrigin::Defaulted { volume_index } => {
                format!("{TEMPLATE_SPEC}.volumes[{volume_index}]")
            }
        }
    }
}

/// A GPU or host device a device plugin serves: it names a `deviceName` and no DRA
/// `claimRequest` (DRA devices become ResourceClaims, not resources of the pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginDevice<'a> {
    /// `gpus` or `hostDevices`.
    pub list: &'static str,
    pub index: usize,
    pub name: &'a str,
}

impl PluginDevice<'_> {
    pub fn path(&self) -> String {
        format!(
            "{TEMPLATE_SPEC}.domain.devices.{}[{}].deviceName",
            self.list, self.index
        )
    }
}

/// The nodes a VM could land on, stage by stage, as the scheduler filters them. A stage that
/// filters nothing out is the set before it, and a set the index holds is borrowed from it:
/// for the usual VM (one nodeSelector label, tolerations of nothing, ready nodes) no set is
/// copied.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// Nodes matching nodeSelector and required node affinity.
    pub selected: Cow<'a, NodeSet>,
    /// ... whose NoSchedule/NoExecute taints the VM tolerates.
    pub tolerated: Cow<'a, NodeSet>,
    /// ... that are not cordoned, are Ready and carry `kubevirt.io/schedulable=true`.
    pub schedulable: Cow<'a, NodeSet>,
}

/// One VM, prepared for the rules.
pub struct VmContext<'a> {
    pub vm: &'a VirtualMachine,
    /// The namespace the VM lives in (its own, or the default given by the caller).
    pub namespace: &'a str,
    /// The cluster, when there is a view of it; cluster rules report nothing without one.
    pub cluster: Option<&'a ClusterView>,
    pub spec: &'a VmiSpec,
    /// Volumes by name (the first one of a name; duplicates are their own rule), when there
    /// are too many to scan.
    volumes_by_name: Option<HashMap<&'a str, &'a Volume>>,
    pub disks: Vec<EffectiveDisk<'a>>,
    /// The manifest as written, where the caller has it (`check`): what the manifest rules
    /// read, since the model keeps only the fields the other rules need. The webhook has
    /// none: there the API server and virt-api judge the same in the same admission chain.
    pub manifest: Option<&'a serde_json::Value>,
    placement: OnceCell<Option<Placement<'a>>>,
    launcher: OnceCell<Option<LauncherRequest>>,
    launcher_by_defaults: OnceCell<Option<LauncherRequest>>,
}

impl<'a> VmContext<'a> {
    pub fn new(
        vm: &'a VirtualMachine,
        namespace: &'a str,
        cluster: Option<&'a ClusterView>,
    ) -> Self {
        let spec = vm.template_spec();
        let volumes_by_name = (spec.volumes.len() > SCAN_UP_TO).then(|| {
            let mut by_name = HashMap::with_capacity(spec.volumes.len());
            for volume in &spec.volumes {
                by_name.entry(volume.name.as_str()).or_insert(volume);
            }
            by_name
        });
        let volume = |name: &str| find_volume(spec, volumes_by_name.as_ref(), name);
        let devices = &spec.domain.devices;
        let mut disks: Vec<EffectiveDisk<'a>> = devices
            .disks
            .iter()
            .enumerate()
            .map(|(index, disk)| EffectiveDisk {
                name: &disk.name,
                origin: DiskOrigin::Listed { index },
                boot_order: disk.boot_order,
                cdrom: disk.is_cdrom(),
                volume: volume(&disk.name),
            })
            .collect();
        let named: SmallSet<&str> = devices
            .disks
            .iter()
            .map(|d| d.name.as_str())
            .chain(devices.filesystems.iter().map(|f| f.name.as_str()))
            .collect();
        for (volume_index, volume) in spec.volumes.iter().enumerate() {
            if !named.contains(volume.name.as_str()) {
                disks.push(EffectiveDisk {
                    name: &volume.name,
                    origin: DiskOrigin::Defaulted { volume_index },
                    boot_order: None,
                    cdrom: false,
                    volume: Some(volume),
                });
            }
        }
        VmContext {
            vm,
            namespace,
            cluster,
            spec,
            volumes_by_name,
            disks,
            manifest: None,
            placement: OnceCell::new(),
            launcher: OnceCell::new(),
            launcher_by_defaults: OnceCell::new(),
        }
    }

    /// The same context with the manifest as written, for the manifest rules.
    pub fn with_manifest(mut self, manifest: &'a serde_json::Value) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// The VM's GPUs and host devices that a device plugin serves, in the order KubeVirt
    /// lists them (GPUs first).
    pub fn plugin_devices(&self) -> impl Iterator<Item = PluginDevice<'a>> + use<'a> {
        let devices = &self.spec.domain.devices;
        let gpus = devices.gpus.iter().enumerate().map(|(index, gpu)| {
            (
                "gpus",
                index,
                gpu.device_name.as_deref(),
                gpu.claim_request.is_some(),
            )
        });
        let host_devices = devices
            .host_devices
            .iter()
            .enumerate()
            .map(|(index, device)| {
                let claimed = device.claim_request.is_some();
                ("hostDevices", index, device.device_name.as_deref(), claimed)
            });
        gpus.chain(host_devices)
            .filter_map(|(list, index, name, claimed)| {
                let name = name.filter(|n| !n.is_empty() && !claimed)?;
                Some(PluginDevice { list, index, name })
            })
    }

    /// The cluster's KubeVirt CR, when the view has one.
    pub fn kubevirt(&self) -> Option<&'a KubeVirt> {
        self.cluster?.kubevirt().present()
    }

    /// Where the scheduler could put the VM; `None` when Nodes are unknown. Computed once and
    /// shared by the scheduling rules.
    pub fn placement(&self) -> Option<&Placement<'a>> {
        self.placement
            .get_or_init(|| {
                let nodes = self.cluster?.nodes()?;
                let mut selected = nodes.matching_selector(&self.spec.node_selector);
                if let Some(required) = self
                    .spec
                    .affinity
                    .as_ref()
                    .and_then(|a| a.node_affinity.as_ref())
                    .and_then(|n| {
                        n.required_during_scheduling_ignored_during_execution
                            .as_ref()
                    })
                {
                    selected
                        .to_mut()
                        .intersect_with(&nodes.matching_affinity(required));
                }
                let tolerated = nodes.tolerating(selected.clone(), &self.spec.tolerations);
                let schedulable = nodes.schedulable(tolerated.clone());
                Some(Placement {
                    selected,
                    tolerated,
                    schedulable,
                })
            })
            .as_ref()
    }

    /// The compute container of the VM's launcher pod, as KubeVirt would render it with what
    /// the view knows (see [`launcher`]); `None` when the VM cannot be judged. Computed once
    /// and shared by the capacity, quota and LimitRange rules.
    pub fn launcher(&self) -> Option<&LauncherRequest> {
        self.launcher
            .get_or_init(|| self.compute_launcher(self.kubevirt()))
            .as_ref()
    }

    /// The launcher pod as a KubeVirt with its default configuration would render it, for a
    /// view without a KubeVirt CR: what a rule that cannot decide judges by, and warns on,
    /// naming the assumption. `None` where the view has a CR ([`VmContext::launcher`] decides).
    pub fn launcher_by_defaults(&self) -> Option<&LauncherRequest> {
        if self.kubevirt().is_some() {
            return None;
        }
        self.launcher_by_defaults
            .get_or_init(|| self.compute_launcher(Some(KubeVirt::defaults())))
            .as_ref()
    }

    fn compute_launcher(&self, kubevirt: Option<&KubeVirt>) -> Option<LauncherRequest> {
        let view = self.cluster;
        // KubeVirt adds automatic limits when any quota of the namespace (scoped or not) sets
        // `limits.<resource>` in its spec (`doesVMIRequireAutoResourceLimits`); the view has
        // the status, the same once the quota controller has caught up.
        let quota_sets = |key: &str| {
            let quotas: Vec<_> = view?.resource_quotas(self.namespace)?.collect();
            if quotas.iter().any(|(_, quota)| !quota.settled) {
                return None;
            }
            Some(quotas.iter().any(|(_, quota)| quota.hard.contains_key(key)))
        };
        launcher::request(&LauncherInput {
            vm: self.vm,
            kubevirt,
            // Not in the view (or unreadable): the launcher widens its bounds.
            instancetype: self.instancetype(),
            namespace: NamespaceFacts {
                quota_limits_cpu: quota_sets("limits.cpu"),
                quota_limits_memory: quota_sets("limits.memory"),
                // The view keeps no namespace labels (the memory-limit ratio, the CPU limit
                // selector): unknown, so the bounds widen.
                labels: None,
            },
        })
    }

    /// The spec of the instancetype the VM names, where the view has it.
    pub fn instancetype(&self) -> Option<&'a InstancetypeSpec> {
        let view = self.cluster?;
        let matcher = self.vm.spec.instancetype.as_ref()?;
        let name = matcher.name.as_deref().filter(|n| !n.is_empty())?;
        let kind = super::references::matcher_kind(
            matcher.kind.as_deref(),
            Kind::VirtualMachineInstancetype,
            Kind::VirtualMachineClusterInstancetype,
        )?;
        view.instancetype(kind, self.namespace, name).present()?
    }

    /// The first volume of this name.
    pub fn volume(&self, name: &str) -> Option<&'a Volume> {
        find_volume(self.spec, self.volumes_by_name.as_ref(), name)
    }
}

fn find_volume<'a>(
    spec: &'a VmiSpec,
    by_name: Option<&HashMap<&'a str, &'a Volume>>,
    name: &str,
) -> Option<&'a Volume> {
    match by_name {
        Some(by_name) => by_name.get(name).copied(),
        None => spec.volumes.iter().find(|volume| volume.name == name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{spec, valid_vm_with, vm};
    use serde_json::json;

    #[test]
    fn volumes_without_a_disk_get_a_default_disk_appended() {
        let value = valid_vm_with(|vm| {
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "extra", "emptyDisk": {"capacity": "1Gi"}}));
            spec(vm)["domain"]["devices"]["filesystems"] =
                json!([{"name": "shared", "virtiofs": {}}]);
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "shared", "persistentVolumeClaim": {"claimName": "c"}}));
        });
        let vm = vm(value);
        let context = VmContext::new(&vm, "default", None);
        let names: Vec<_> = context.disks.iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["rootdisk", "cloudinit", "extra"]);
        assert_eq!(
            context.disks[2].origin,
            DiskOrigin::Defaulted { volume_index: 2 }
        );
        assert_eq!(context.disks[2].path(), "spec.template.spec.volumes[2]");
    }

    #[test]
    fn the_first_volume_of_a_name_is_found_whether_scanned_or_hashed() {
        for extra in [1, SCAN_UP_TO + 1] {
            let value = valid_vm_with(|vm| {
                let volumes = spec(vm)["volumes"].as_array_mut().unwrap();
                for i in 0..extra {
                    volumes.push(
                        json!({"name": format!("extra-{i}"), "emptyDisk": {"capacity": "1Gi"}}),
                    );
                }
                // A second `extra-0`: the first one is the volume of that name.
                volumes.push(json!({"name": "extra-0", "containerDisk": {"image": "x"}}));
            });
            let vm = vm(value);
            let context = VmContext::new(&vm, "default", None);
            assert_eq!(context.volumes_by_name.is_some(), extra > SCAN_UP_TO);
            let first = context.volume("extra-0").expect("extra-0");
            assert!(first.empty_disk.is_some(), "{extra} extra volumes");
            assert!(context.volume("rootdisk").is_some() && context.volume("nope").is_none());
            // Each volume no disk names gets a default disk, the repeated one too, as
            // KubeVirt's SetDefaultVolumeDisk does.
            assert_eq!(context.disks.len(), 2 + extra + 1);
        }
    }
}
