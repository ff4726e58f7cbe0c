//! What the KubeVirt CR's configuration allows a VM.

use super::{Emitter, VmContext};

/// `host-device-not-permitted`: when the CR sets `permittedHostDevices` (even empty), every GPU
/// and host device `deviceName` must be a `resourceName` under `pciHostDevices`,
/// `mediatedDevices` or `usb`. KubeVirt checks this in virt-controller, not at admission
/// (`validatePermittedHostDevices` in `renderresources.go`, every release v1.0–v1.9): virt-api
/// stores the VM, virt-controller refuses to render the launcher pod ("GPU X is not permitted
/// in permittedHostDevices configuration") and the VM stays stuck. DRA devices (`claimRequest`)
/// are checked by DRA instead and are exempt here, and so are all GPUs where v1.6–v1.8 skip
/// them (the GPUsWithDRA gate).
pub fn host_device_not_permitted(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(kubevirt) = cx.kubevirt() else {
        return;
    };
    let Some(permitted) = kubevirt
        .configuration()
        .and_then(|c| c.permitted_host_devices.as_ref())
    else {
        return;
    };
    let skip_gpus = kubevirt.may_skip_gpu_permission_check();
    for device in cx.plugin_devices() {
        if skip_gpus && device.list == "gpus" {
            continue;
        }
        if !permitted.permits(device.name) {
            out.emit(
                device.path(),
                format!(
                    "{:?} is not in the KubeVirt CR's permittedHostDevices, so no launcher pod is made: have it added",
                    device.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn view(permitted: Option<Value>) -> crate::cluster::ClusterView {
        base_cluster_with(|items| {
            let mut configuration = json!({});
            if let Some(permitted) = permitted {
                configuration["permittedHostDevices"] = permitted;
            }
            items.push(kubevirt_cr("v1.6.2", configuration));
        })
    }

    /// A VM with the A10 GPU, tolerating the GPU node's taint, and a host device.
    fn with_devices(host_device: Value) -> Value {
        valid_vm_with(|vm| {
            spec(vm)["tolerations"] =
                json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
            spec(vm)["domain"]["devices"]["gpus"] =
                json!([{"name": "gpu1", "deviceName": "nvidia.com/GA102GL_A10"}]);
            spec(vm)["domain"]["devices"]["hostDevices"] = json!([host_device]);
        })
    }

    fn dra_device() -> Value {
        json!({"name": "nic", "claimRequest": {"claimName": "nic", "requestName": "nic"}})
    }

    #[test]
    fn fires_for_each_device_the_cr_does_not_list() {
        let pci = json!({"pciHostDevices": [{"pciVendorSelector": "10DE:2236", "resourceName": "nvidia.com/GA102GL_A10"}]});
        assert_eq!(
            fired_in(with_devices(dra_device()), &view(Some(pci))),
            vec![]
        );
        // Present but empty refuses every device.
        assert_eq!(
            fired_in(with_devices(dra_device()), &view(Some(json!({})))),
            vec![(
                HostDeviceNotPermitted,
                "spec.template.spec.domain.devices.gpus[0].deviceName".into()
            )]
        );
        // Mediated and USB lists count as well.
        let mdev = json!({"mediatedDevices": [{"mdevNameSelector": "A10-4Q", "resourceName": "nvidia.com/GA102GL_A10"}],
                          "usb": [{"resourceName": "kubevirt.io/storage", "selectors": []}]});
        let usb = json!({"name": "stick", "deviceName": "kubevirt.io/storage"});
        let permitted = fired_in(with_devices(usb), &view(Some(mdev.clone())));
        assert!(
            !permitted
                .iter()
                .any(|(rule, _)| *rule == HostDeviceNotPermitted),
            "{permitted:?}"
        );
        let other = json!({"name": "qat", "deviceName": "intel.com/qat"});
        let found = findings_in(with_devices(other), &view(Some(mdev)));
        assert_eq!(
            found
                .iter()
                .map(|f| (f.rule, f.path.as_str()))
                .collect::<Vec<_>>(),
            vec![(
                HostDeviceNotPermitted,
                "spec.template.spec.domain.devices.hostDevices[0].deviceName"
            )]
        );
        assert!(found[0].message.contains("\"intel.com/qat\""));
        assert!(
            found[0].message.chars().count() <= 120,
            "{}",
            found[0].message
        );
    }

    #[test]
    fn gpus_go_unchecked_with_the_dra_gate_from_1_6_to_1_8() {
        // v1.6–v1.8 skip the GPU loop entirely when GPUsWithDRA is listed.
        let at = |version: &str| {
            base_cluster_with(|items| {
                items.push(kubevirt_cr(
                    version,
                    json!({"permittedHostDevices": {},
                           "developerConfiguration": {"featureGates": ["GPUsWithDRA"]}}),
                ));
            })
        };
        let gpu = vec![(
            HostDeviceNotPermitted,
            "spec.template.spec.domain.devices.gpus[0].deviceName".to_string(),
        )];
        for version in ["v1.6.2", "v1.8.4", "v1.9.0-rc.1"] {
            assert_eq!(
                fired_in(with_devices(dra_device()), &at(version)),
                vec![],
                "{version}"
            );
        }
        // Before 1.6 the gate does not exist; since 1.9 it skips only GPUs with a claimRequest.
        for version in ["v1.5.3", "v1.9.0"] {
            assert_eq!(
                fired_in(with_devices(dra_device()), &at(version)),
                gpu,
                "{version}"
            );
        }
        // Host devices are still checked.
        let qat = json!({"name": "qat", "deviceName": "intel.com/qat"});
        assert!(fired_in(with_devices(qat), &at("v1.6.2")).contains(&(
            HostDeviceNotPermitted,
            "spec.template.spec.domain.devices.hostDevices[0].deviceName".to_string()
        )));
    }

    #[test]
    fn an_absent_list_or_an_unknown_cr_checks_nothing() {
        let qat = json!({"name": "qat", "deviceName": "intel.com/qat"});
        // Absent: KubeVirt checks nothing (the device is device-unavailable's: no node has it).
        assert_eq!(
            fired_in(with_devices(qat.clone()), &view(None)),
            vec![(
                DeviceUnavailable,
                "spec.template.spec.domain.devices.hostDevices[0].deviceName".into()
            )]
        );
        assert_eq!(
            fired_in(with_devices(qat), &cluster(BASE_CLUSTER)),
            vec![(
                DeviceUnavailable,
                "spec.template.spec.domain.devices.hostDevices[0].deviceName".into()
            )]
        );
    }
}
