//! What the rules share about one VM, computed once: name lookups and the effective disk list.

use std::cell::OnceCell;

use foldhash::{HashMap, HashMapExt};

use crate::cluster::{ClusterView, NodeSet};
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

/// The nodes a VM could land on, stage by stage, as the scheduler filters them.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Nodes matching nodeSelector and required node affinity.
    pub selected: NodeSet,
    /// ... whose NoSchedule/NoExecute taints the VM tolerates.
    pub tolerated: NodeSet,
    /// ... that are not cordoned, are Ready and carry `kubevirt.io/schedulable=true`.
    pub schedulable: NodeSet,
}

/// One VM, prepared for the rules.
pub struct VmContext<'a> {
    pub vm: &'a VirtualMachine,
    /// The namespace the VM lives in (its own, or the default given by the caller).
    pub namespace: &'a str,
    /// The cluster, when there is a view of it; cluster rules report nothing without one.
    pub cluster: Option<&'a ClusterView>,
    pub spec: &'a VmiSpec,
    /// Volumes by name (the first one of a name; duplicates are their own rule).
    pub volumes: HashMap<&'a str, (usize, &'a Volume)>,
    pub disks: Vec<EffectiveDisk<'a>>,
    placement: OnceCell<Option<Placement>>,
}

impl<'a> VmContext<'a> {
    pub fn new(
        vm: &'a VirtualMachine,
        namespace: &'a str,
        cluster: Option<&'a ClusterView>,
    ) -> Self {
        let spec = vm.template_spec();
        let mut volumes = HashMap::with_capacity(spec.volumes.len());
        for (index, volume) in spec.volumes.iter().enumerate() {
            volumes
                .entry(volume.name.as_str())
                .or_insert((index, volume));
        }
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
                volume: volumes.get(disk.name.as_str()).map(|(_, v)| *v),
            })
            .collect();
        for (volume_index, volume) in spec.volumes.iter().enumerate() {
            let named = devices.disks.iter().any(|d| d.name == volume.name)
                || devices.filesystems.iter().any(|f| f.name == volume.name);
            if !named {
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
            volumes,
            disks,
            placement: OnceCell::new(),
        }
    }

    /// Where the scheduler could put the VM; `None` when Nodes are unknown. Computed once and
    /// shared by the scheduling rules.
    pub fn placement(&self) -> Option<&Placement> {
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
                    selected.intersect_with(&nodes.matching_affinity(required));
                }
                let tolerated = nodes.tolerating(&selected, &self.spec.tolerations);
                let schedulable = nodes.schedulable(&tolerated);
                Some(Placement {
                    selected,
                    tolerated,
                    schedulable,
                })
            })
            .as_ref()
    }

    pub fn volume(&self, name: &str) -> Option<&'a Volume> {
        self.volumes.get(name).map(|(_, v)| *v)
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
}
