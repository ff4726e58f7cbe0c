//! Boot order and bootable disks, reasoned on the effective disk list (KubeVirt appends a disk
//! for every volume that no disk or filesystem names).

use super::small_set::SmallSet;
use super::{EffectiveDisk, Emitter, VmContext};
use crate::model::{Bootability, TEMPLATE_SPEC};

/// A device that can carry a `bootOrder`: disks and interfaces share one order.
struct BootDevice<'a> {
    device: Device<'a>,
    name: &'a str,
    boot_order: i64,
}

enum Device<'a> {
    Disk(&'a EffectiveDisk<'a>),
    Interface { index: usize },
}

impl BootDevice<'_> {
    fn what(&self) -> &'static str {
        match self.device {
            Device::Disk(_) => "disk",
            Device::Interface { .. } => "interface",
        }
    }

    fn disk(&self) -> Option<&EffectiveDisk<'_>> {
        match self.device {
            Device::Disk(disk) => Some(disk),
            Device::Interface { .. } => None,
        }
    }

    /// The `bootOrder` field's path (built for a finding only: most VMs have none).
    fn path(&self) -> String {
        match self.device {
            Device::Disk(disk) => format!("{}.bootOrder", disk.path()),
            Device::Interface { index } => {
                format!("{TEMPLATE_SPEC}.domain.devices.interfaces[{index}].bootOrder")
            }
        }
    }
}

/// Every listed disk and interface with a `bootOrder`, in manifest order (disks first).
fn boot_devices<'c>(cx: &'c VmContext<'_>) -> impl Iterator<Item = BootDevice<'c>> {
    let disks = cx.disks.iter().filter_map(|disk| {
        disk.boot_order.map(|boot_order| BootDevice {
            device: Device::Disk(disk),
            name: disk.name,
            boot_order,
        })
    });
    let interfaces = cx
        .spec
        .domain
        .devices
        .interfaces
        .iter()
        .enumerate()
        .filter_map(|(index, interface)| {
            interface.boot_order.map(|boot_order| BootDevice {
                device: Device::Interface { index },
                name: &interface.name,
                boot_order,
            })
        });
    disks.chain(interfaces)
}

/// With `firmware.kernelBoot` the guest boots a kernel from a container, not from a disk.
fn boots_a_kernel(cx: &VmContext<'_>) -> bool {
    cx.spec
        .domain
        .firmware
        .as_ref()
        .is_some_and(|f| f.kernel_boot.is_some())
}

fn bootability(disk: &EffectiveDisk<'_>) -> Bootability {
    // A disk without a volume is `disk-without-volume`'s; do not judge it twice.
    disk.volume
        .map_or(Bootability::Unknown, |v| v.bootability())
}

pub fn boot_order_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    for device in boot_devices(cx) {
        if device.boot_order < 1 {
            out.emit(
                device.path(),
                format!(
                    "{} {:?} has bootOrder {}: boot orders start at 1",
                    device.what(),
                    device.name,
                    device.boot_order
                ),
            );
        }
    }
}

pub fn boot_order_duplicate(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let mut seen = SmallSet::new();
    for device in boot_devices(cx) {
        if device.boot_order >= 1 && !seen.insert(device.boot_order) {
            out.emit(
                device.path(),
                format!(
                    "bootOrder {} of {} {:?} is used by another device: give each device its own",
                    device.boot_order,
                    device.what(),
                    device.name
                ),
            );
        }
    }
}

pub fn boot_order_non_bootable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    if boots_a_kernel(cx) {
        return;
    }
    let Some(first) = boot_devices(cx)
        .filter(|d| d.boot_order >= 1)
        .min_by_key(|d| d.boot_order)
    else {
        return;
    };
    let Some(disk) = first.disk() else { return };
    if bootability(disk) == Bootability::NotBootable {
        let source = disk.volume.and_then(|v| v.single_source()).unwrap_or("?");
        out.emit(
            first.path(),
            format!(
                "disk {:?} boots first but its {source} volume has no OS: give the OS disk bootOrder 1",
                disk.name
            ),
        );
    }
}

/// Whether some disk may hold an OS (unknown sources count: never guess an error).
fn any_disk_may_boot(cx: &VmContext<'_>) -> bool {
    cx.disks
        .iter()
        .any(|disk| bootability(disk) != Bootability::NotBootable)
}

/// Only where another disk could boot: with none, `no-bootable-disk` is the finding.
pub fn boot_order_missing(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    if boots_a_kernel(cx) || boot_devices(cx).next().is_some() || !any_disk_may_boot(cx) {
        return;
    }
    let Some(first) = cx.disks.first() else {
        return;
    };
    if bootability(first) == Bootability::NotBootable {
        let source = first.volume.and_then(|v| v.single_source()).unwrap_or("?");
        out.emit(
            first.path(),
            format!(
                "first disk {:?} is {source} and no bootOrder is set: set bootOrder: 1 on the OS disk",
                first.name
            ),
        );
    }
}

pub fn no_bootable_disk(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    if boots_a_kernel(cx) {
        return;
    }
    let network_boot = cx
        .spec
        .domain
        .devices
        .interfaces
        .iter()
        .any(|i| i.boot_order.is_some());
    if network_boot || any_disk_may_boot(cx) {
        return;
    }
    let path = if cx.spec.domain.devices.disks.is_empty() && !cx.spec.volumes.is_empty() {
        format!("{TEMPLATE_SPEC}.volumes")
    } else {
        format!("{TEMPLATE_SPEC}.domain.devices.disks")
    };
    out.emit(
        path,
        "no disk can boot an OS: add a containerDisk, dataVolume or persistentVolumeClaim disk",
    );
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::json;

    fn disks(vm: &mut serde_json::Value) -> &mut serde_json::Value {
        &mut spec(vm)["domain"]["devices"]["disks"]
    }

    #[test]
    fn boot_order_invalid() {
        let broken = valid_vm_with(|vm| disks(vm)[0]["bootOrder"] = json!(0));
        assert_eq!(
            fired(broken),
            vec![(
                BootOrderInvalid,
                "spec.template.spec.domain.devices.disks[0].bootOrder".into()
            )]
        );
        let fixed = valid_vm_with(|vm| disks(vm)[0]["bootOrder"] = json!(1));
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn boot_order_duplicate_counts_disks_and_interfaces_together() {
        let broken = valid_vm_with(|vm| {
            disks(vm)[0]["bootOrder"] = json!(1);
            spec(vm)["domain"]["devices"]["interfaces"][0]["bootOrder"] = json!(1);
        });
        assert_eq!(
            fired(broken),
            vec![(
                BootOrderDuplicate,
                "spec.template.spec.domain.devices.interfaces[0].bootOrder".into()
            )]
        );
        let fixed = valid_vm_with(|vm| {
            disks(vm)[0]["bootOrder"] = json!(1);
            spec(vm)["domain"]["devices"]["interfaces"][0]["bootOrder"] = json!(2);
        });
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn boot_order_non_bootable() {
        let broken = valid_vm_with(|vm| {
            disks(vm)[0]["bootOrder"] = json!(2);
            disks(vm)[1]["bootOrder"] = json!(1);
        });
        assert_eq!(
            fired(broken),
            vec![(
                BootOrderNonBootable,
                "spec.template.spec.domain.devices.disks[1].bootOrder".into()
            )]
        );
        let fixed = valid_vm_with(|vm| {
            disks(vm)[0]["bootOrder"] = json!(1);
            disks(vm)[1]["bootOrder"] = json!(2);
        });
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn boot_order_missing_warns_when_cloud_init_comes_first() {
        let broken = valid_vm_with(|vm| {
            let list = disks(vm).as_array_mut().unwrap();
            list.swap(0, 1);
        });
        assert_eq!(
            fired(broken),
            vec![(
                BootOrderMissing,
                "spec.template.spec.domain.devices.disks[0]".into()
            )]
        );
        let fixed = valid_vm_with(|vm| {
            let list = disks(vm).as_array_mut().unwrap();
            list.swap(0, 1);
            list[1]["bootOrder"] = json!(1);
        });
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn boot_order_missing_sees_defaulted_disks() {
        // No disks listed: KubeVirt appends them in volume order, cloud-init first here.
        let broken = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"] = json!([]);
            spec(vm)["volumes"].as_array_mut().unwrap().swap(0, 1);
        });
        assert_eq!(
            fired(broken),
            vec![(BootOrderMissing, "spec.template.spec.volumes[0]".into())]
        );
    }

    #[test]
    fn no_bootable_disk() {
        let broken = valid_vm_with(|vm| {
            disks(vm).as_array_mut().unwrap().remove(0);
            spec(vm)["volumes"].as_array_mut().unwrap().remove(0);
        });
        assert_eq!(
            fired(broken),
            vec![(
                NoBootableDisk,
                "spec.template.spec.domain.devices.disks".into()
            )]
        );
        let only_volumes = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"] = json!([]);
            spec(vm)["volumes"].as_array_mut().unwrap().remove(0);
        });
        assert_eq!(
            fired(only_volumes),
            vec![(NoBootableDisk, "spec.template.spec.volumes".into())]
        );
        // A network boot is a way to boot.
        let pxe = valid_vm_with(|vm| {
            disks(vm).as_array_mut().unwrap().remove(0);
            spec(vm)["volumes"].as_array_mut().unwrap().remove(0);
            spec(vm)["domain"]["devices"]["interfaces"][0]["bootOrder"] = json!(1);
        });
        assert_eq!(fired(pxe), vec![]);
    }

    #[test]
    fn kernel_boot_needs_no_disk() {
        let value = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"] = json!([]);
            spec(vm)["volumes"] = json!([]);
            spec(vm)["domain"]["firmware"] =
                json!({"kernelBoot": {"container": {"image": "quay.io/x/k:1"}}});
        });
        assert_eq!(fired(value), vec![]);
    }
}
