//! What the rules share about one VM, computed once: name lookups and the effective disk list.

use std::collections::HashMap;

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

/// One VM, prepared for the rules.
pub struct VmContext<'a> {
    pub vm: &'a VirtualMachine,
    pub spec: &'a VmiSpec,
    /// Volumes by name (the first one of a name; duplicates are their own rule).
    pub volumes: HashMap<&'a str, (usize, &'a Volume)>,
    pub disks: Vec<EffectiveDisk<'a>>,
}

impl<'a> VmContext<'a> {
    pub fn new(vm: &'a VirtualMachine) -> Self {
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
            spec,
            volumes,
            disks,
        }
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
        let context = VmContext::new(&vm);
        let names: Vec<_> = context.disks.iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["rootdisk", "cloudinit", "extra"]);
        assert_eq!(
            context.disks[2].origin,
            DiskOrigin::Defaulted { volume_index: 2 }
        );
        assert_eq!(context.disks[2].path(), "spec.template.spec.volumes[2]");
    }
}
