//! Disks, filesystems, volumes and dataVolumeTemplates: names that must meet, and sources.

use super::small_set::SmallSet;
use super::{Emitter, VmContext};
use crate::cluster::kubevirt::GateSetting;
use crate::model::TEMPLATE_SPEC;

pub fn disk_without_volume(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let devices = &cx.spec.domain.devices;
    for (index, disk) in devices.disks.iter().enumerate() {
        if !disk.is_cdrom() && cx.volume(&disk.name).is_none() {
            out.emit(
                format!("{TEMPLATE_SPEC}.domain.devices.disks[{index}].name"),
                format!(
                    "disk {:?} names no volume: add that volume or fix the name",
                    disk.name
                ),
            );
        }
    }
    for (index, filesystem) in devices.filesystems.iter().enumerate() {
        if cx.volume(&filesystem.name).is_none() {
            out.emit(
                format!("{TEMPLATE_SPEC}.domain.devices.filesystems[{index}].name"),
                format!(
                    "filesystem {:?} names no volume: add that volume or fix the name",
                    filesystem.name
                ),
            );
        }
    }
}

pub fn cdrom_without_volume(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    for (index, disk) in cx.spec.domain.devices.disks.iter().enumerate() {
        if disk.is_cdrom() && cx.volume(&disk.name).is_none() {
            let finding = out.emit(
                format!("{TEMPLATE_SPEC}.domain.devices.disks[{index}].name"),
                format!(
                    "cdrom {:?} names no volume: an empty CD-ROM needs the {HOTPLUG_GATE} gate",
                    disk.name
                ),
            );
            if hotplug_gate_off(cx) {
                finding.severity = crate::rules::finding::Severity::Error;
            }
        }
    }
}

/// Without the gate virt-api refuses an empty CD-ROM; only the cluster's KubeVirt CR (of the
/// release whose admission was checked) says whether it is on, so without one this warns.
fn hotplug_gate_off(cx: &VmContext<'_>) -> bool {
    cx.kubevirt()
        .filter(|kubevirt| super::kubevirt_admission::is_mirrored_release(kubevirt))
        .and_then(|kubevirt| kubevirt.configuration())
        .is_some_and(|config| config.feature_gate(HOTPLUG_GATE) != GateSetting::Enabled)
}

/// The feature gate that lets a VM declare an empty CD-ROM.
const HOTPLUG_GATE: &str = "DeclarativeHotplugVolumes";

/// KubeVirt matches a template by a `dataVolume` volume, or a `persistentVolumeClaim` volume
/// of the same claim name (its admitter accepts both).
pub fn datavolume_template_unused(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let used: SmallSet<&str> = cx
        .spec
        .volumes
        .iter()
        .flat_map(|v| {
            let data_volume = v.data_volume.as_ref().and_then(|d| d.name.as_deref());
            let claim = v
                .persistent_volume_claim
                .as_ref()
                .and_then(|c| c.claim_name.as_deref());
            data_volume.into_iter().chain(claim)
        })
        .collect();
    for (index, template) in cx.vm.spec.data_volume_templates.iter().enumerate() {
        match template.metadata.name.as_deref() {
            None | Some("") => {
                out.emit(
                    format!("spec.dataVolumeTemplates[{index}].metadata.name"),
                    "dataVolumeTemplate has no name, so no volume can use it: set metadata.name",
                );
            }
            Some(name) if !used.contains(name) => {
                out.emit(
                    format!("spec.dataVolumeTemplates[{index}].metadata.name"),
                    format!(
                        "dataVolumeTemplate {name:?} is used by no volume: add a volume with dataVolume.name {name:?}"
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

pub fn duplicate_name(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let devices = &cx.spec.domain.devices;
    report_repeats(
        "disk",
        "domain.devices.disks",
        &devices.disks,
        |d| &d.name,
        out,
    );
    report_repeats("volume", "volumes", &cx.spec.volumes, |v| &v.name, out);
    let interfaces = &devices.interfaces;
    report_repeats(
        "interface",
        "domain.devices.interfaces",
        interfaces,
        |i| &i.name,
        out,
    );
    report_repeats("network", "networks", &cx.spec.networks, |n| &n.name, out);
}

/// Reports every item of the template list `field` whose name an earlier item has.
fn report_repeats<'a, T>(
    what: &str,
    field: &str,
    items: &'a [T],
    name: impl Fn(&'a T) -> &'a str,
    out: &mut Emitter<'_>,
) {
    let mut seen = SmallSet::new();
    for (index, item) in items.iter().enumerate() {
        let item_name = name(item);
        if !seen.insert(item_name) {
            out.emit(
                format!("{TEMPLATE_SPEC}.{field}[{index}].name"),
                format!("{what} name {item_name:?} is used twice: {what} names must be unique"),
            );
        }
    }
}

pub fn volume_source_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    for (index, volume) in cx.spec.volumes.iter().enumerate() {
        let count = volume.sources().count() + volume.unknown_sources.len();
        let path = || format!("{TEMPLATE_SPEC}.volumes[{index}]");
        if count == 0 {
            out.emit(
                path(),
                format!(
                    "volume {:?} has no source: set one, e.g. containerDisk or dataVolume",
                    volume.name
                ),
            );
        } else if count > 1 {
            let mut names: Vec<&str> = volume.sources().collect();
            names.extend(volume.unknown_sources.iter().map(String::as_str));
            out.emit(
                path(),
                format!(
                    "volume {:?} has {count} sources ({}): keep exactly one",
                    volume.name,
                    names.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::small_set::SCAN_UP_TO;
    use crate::rules::testing::*;
    use serde_json::json;

    #[test]
    fn disk_without_volume() {
        let broken = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"][1]["name"] = json!("cloudinit-typo");
        });
        let fired = fired(broken);
        // The volume loses its disk too; KubeVirt then appends a default disk for it, which
        // is fine, so only the disk fires.
        assert_eq!(
            fired,
            vec![(
                DiskWithoutVolume,
                "spec.template.spec.domain.devices.disks[1].name".into()
            )]
        );
    }

    #[test]
    fn filesystem_without_volume() {
        let broken = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["filesystems"] =
                json!([{"name": "shared", "virtiofs": {}}]);
        });
        assert_eq!(
            fired(broken),
            vec![(
                DiskWithoutVolume,
                "spec.template.spec.domain.devices.filesystems[0].name".into()
            )]
        );
        let fixed = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["filesystems"] =
                json!([{"name": "shared", "virtiofs": {}}]);
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}));
        });
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn cdrom_without_volume_warns_instead() {
        let broken = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "installer", "cdrom": {"bus": "sata"}}));
        });
        assert_eq!(
            fired(broken),
            vec![(
                CdromWithoutVolume,
                "spec.template.spec.domain.devices.disks[2].name".into()
            )]
        );
        let fixed = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "installer", "cdrom": {"bus": "sata"}}));
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "installer", "containerDisk": {"image": "quay.io/x/iso:1"}}));
        });
        assert_eq!(fired(fixed), vec![]);
    }

    fn with_template(volume: serde_json::Value) -> serde_json::Value {
        valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{
                "metadata": {"name": "root-dv"},
                "spec": {"storage": {"resources": {"requests": {"storage": "10Gi"}}},
                         "source": {"registry": {"url": "docker://quay.io/x/y:1"}}}
            }]);
            spec(vm)["volumes"].as_array_mut().unwrap().push(volume);
            spec(vm)["domain"]["devices"]["disks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "data", "disk": {}}));
        })
    }

    #[test]
    fn datavolume_template_unused() {
        let broken = with_template(json!({"name": "data", "dataVolume": {"name": "other-dv"}}));
        assert_eq!(
            fired(broken),
            vec![(
                DatavolumeTemplateUnused,
                "spec.dataVolumeTemplates[0].metadata.name".into()
            )]
        );
        let fixed = with_template(json!({"name": "data", "dataVolume": {"name": "root-dv"}}));
        assert_eq!(fired(fixed), vec![]);
        let by_claim = with_template(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "root-dv"}}),
        );
        assert_eq!(fired(by_claim), vec![]);
    }

    #[test]
    fn duplicate_names() {
        let broken = valid_vm_with(|vm| {
            spec(vm)["networks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "default", "pod": {}}));
        });
        let fired = fired(broken);
        assert!(
            fired.contains(&(DuplicateName, "spec.template.spec.networks[1].name".into())),
            "{fired:?}"
        );
        assert!(fired.iter().all(|(rule, _)| *rule == DuplicateName));

        let disks = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["disks"][1]["name"] = json!("rootdisk");
            spec(vm)["volumes"][1]["name"] = json!("rootdisk2");
            spec(vm)["domain"]["devices"]["disks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "rootdisk2", "disk": {}}));
        });
        assert_eq!(
            super::super::testing::fired(disks),
            vec![(
                DuplicateName,
                "spec.template.spec.domain.devices.disks[1].name".into()
            )]
        );

        // Past SCAN_UP_TO items, names are checked through a set: the same findings.
        let base = spec(&mut valid_vm_with(|_| {}))["domain"]["devices"]["disks"]
            .as_array()
            .unwrap()
            .len();
        let many = valid_vm_with(|vm| {
            let disks = spec(vm)["domain"]["devices"]["disks"]
                .as_array_mut()
                .unwrap();
            for i in 0..=SCAN_UP_TO {
                disks.push(json!({"name": format!("extra-{}", i % SCAN_UP_TO), "disk": {}}));
            }
        });
        let repeats: Vec<_> = super::super::testing::fired(many)
            .into_iter()
            .filter(|(rule, _)| *rule == DuplicateName)
            .collect();
        let last = base + SCAN_UP_TO;
        assert_eq!(
            repeats,
            vec![(
                DuplicateName,
                format!("spec.template.spec.domain.devices.disks[{last}].name")
            )]
        );
    }

    #[test]
    fn volume_source_invalid() {
        let none = valid_vm_with(|vm| {
            spec(vm)["volumes"][1] = json!({"name": "cloudinit"});
        });
        let fired_none = fired(none);
        assert!(
            fired_none.contains(&(VolumeSourceInvalid, "spec.template.spec.volumes[1]".into()))
        );
        let two = valid_vm_with(|vm| {
            spec(vm)["volumes"][1]["secret"] = json!({"secretName": "s"});
        });
        assert_eq!(
            fired(two),
            vec![(VolumeSourceInvalid, "spec.template.spec.volumes[1]".into())]
        );
        // A source this build does not know counts as one source, not as none.
        let future = valid_vm_with(|vm| {
            spec(vm)["volumes"][1] = json!({"name": "cloudinit", "futureSource": {}});
        });
        assert_eq!(fired(future), vec![]);
    }
}
