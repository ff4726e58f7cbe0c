//! `eviction-not-migratable`: a VM whose eviction strategy is `LiveMigrate` and that cannot
//! live-migrate blocks every drain of its node (messages say "blocks drains"). virt-api's eviction webhook refuses to evict its
//! launcher pod ("is configured with an eviction strategy but is not live-migratable",
//! `pod-eviction-admitter.go`) and KubeVirt raises `VMCannotBeEvicted`. KubeVirt's admission
//! accepts such a VM: whether it can migrate is a runtime condition (`LiveMigratable`, virt-handler's
//! `calculateLiveMigrationCondition`), so nothing tells the owner before the first drain.
//!
//! The reasons are virt-handler's (v1.0–v1.9), where the manifest and the view make them
//! certain; whatever is unknown (an unbound claim, a binding this tool does not read, an
//! instancetype's devices) is no reason:
//! - the pod network's interface binds by bridge without the template annotation
//!   `kubevirt.io/allow-pod-bridge-network-live-migration`, or by a binding plugin whose CR
//!   entry has no `migration` (masquerade and passtBinding migrate); a VM with no interface and
//!   no network gets KubeVirt's default pod interface (`network.defaultNetworkInterface`,
//!   default bridge) unless `autoattachPodInterface: false`;
//! - any host device; more than one GPU; one GPU before v1.9 (from v1.9 it migrates as a
//!   permitted mediated device with the VGPULiveMigration gate);
//! - SEV or SEV-SNP;
//! - a PVC or DataVolume volume whose claim is not ReadWriteMany (KubeVirt reads the claim's
//!   `spec.accessModes`; a DataVolume template not yet created counts with its own access
//!   modes, when it writes them); a hostDisk that is not `shared`.
//!
//! No `--fix`: `LiveMigrateIfPossible` makes a drain shut the VM down instead of waiting for it,
//! which is the owner's trade, not a mechanical correction.

use super::{Emitter, VmContext};
use crate::cluster::kubevirt::{
    Configuration, DefaultNetworkInterface, EvictionStrategy, GateSetting, KubeVirtVersion,
};
use crate::cluster::{KubeVirt, Lookup};
use crate::model::{TEMPLATE_SPEC, Volume};

/// The template annotation that lets a bridge-bound pod interface migrate.
const ALLOW_BRIDGE_MIGRATION: &str = "kubevirt.io/allow-pod-bridge-network-live-migration";
/// The gate that lets one mediated-device GPU migrate (Alpha in v1.9).
const VGPU_LIVE_MIGRATION_GATE: &str = "VGPULiveMigration";
/// The first release in which a GPU can migrate, and the first one not studied.
const GPU_MIGRATION: KubeVirtVersion = KubeVirtVersion::release(1, 9, 0);
const NOT_STUDIED: KubeVirtVersion = KubeVirtVersion::release(1, 10, 0);
const READ_WRITE_MANY: &str = "ReadWriteMany";

pub fn eviction_not_migratable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(kubevirt) = cx.kubevirt() else {
        return;
    };
    let Some(config) = kubevirt.configuration() else {
        return;
    };
    let strategy = match cx.spec.eviction_strategy.as_deref() {
        Some(written) => EvictionStrategy::parse(written),
        None => config.eviction_strategy.clone(),
    };
    if strategy != EvictionStrategy::LiveMigrate {
        return;
    }
    let mut report = |path: String, reason: &str, remedy: &str| {
        out.emit(
            path,
            format!("{reason}, so LiveMigrate blocks drains: {remedy} or LiveMigrateIfPossible"),
        );
    };
    if let Some((path, reason)) = pod_interface(cx, config) {
        report(path, &reason, "use masquerade");
    }
    device_reasons(cx, kubevirt, config, &mut report);
    if let Some(security) = &cx.spec.domain.launch_security
        && (security.sev.is_some() || security.snp.is_some())
    {
        report(
            format!("{TEMPLATE_SPEC}.domain.launchSecurity"),
            "SEV guests cannot live-migrate",
            "drop SEV",
        );
    }
    for (index, volume) in cx.spec.volumes.iter().enumerate() {
        if let Some((field, reason, remedy)) = volume_reason(cx, volume) {
            report(
                format!("{TEMPLATE_SPEC}.volumes[{index}].{field}"),
                &reason,
                remedy,
            );
        }
    }
}

/// Why the pod network's interface keeps the VM from migrating (`VerifyVMIMigratable`).
fn pod_interface(cx: &VmContext<'_>, config: &Configuration) -> Option<(String, String)> {
    let spec = cx.spec;
    let devices = &spec.domain.devices;
    let annotated = || {
        cx.vm
            .spec
            .template
            .as_ref()
            .is_some_and(|t| t.metadata.annotations.contains_key(ALLOW_BRIDGE_MIGRATION))
    };
    if spec.networks.is_empty() && devices.interfaces.is_empty() {
        // KubeVirt adds its default pod interface (`SetDefaultNetworkInterface`).
        let bridge = devices.autoattach_pod_interface != Some(false)
            && config.default_network_interface == DefaultNetworkInterface::Bridge;
        return (bridge && !annotated()).then(|| {
            (
                format!("{TEMPLATE_SPEC}.domain.devices.interfaces"),
                "KubeVirt's default pod interface is bridge".to_string(),
            )
        });
    }
    let pod = spec.networks.iter().find(|n| n.pod.is_some())?;
    // No interface for the pod network is network-without-interface's finding.
    let (index, interface) = devices
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == pod.name)?;
    let path = format!("{TEMPLATE_SPEC}.domain.devices.interfaces[{index}]");
    if interface.masquerade.is_some() || interface.passt_binding.is_some() {
        return None;
    }
    if interface.bridge.is_some() {
        return (!annotated()).then(|| {
            (
                path,
                format!("pod interface {} binds by bridge", interface.name),
            )
        });
    }
    let plugin = interface.binding.as_ref()?;
    // A plugin the CR does not register is rejected by KubeVirt's admission: not this rule's.
    let registered = config.network_bindings.get(&plugin.name)?;
    (!registered.migratable).then(|| {
        (
            path,
            format!("binding plugin {} does not migrate", plugin.name),
        )
    })
}

/// Host devices and GPUs (`vmiContainsNonMigratablePCIHostDevices`, v1.9; any GPU or host device
/// before).
fn device_reasons(
    cx: &VmContext<'_>,
    kubevirt: &KubeVirt,
    config: &Configuration,
    report: &mut impl FnMut(String, &str, &str),
) {
    let devices = &cx.spec.domain.devices;
    if !devices.host_devices.is_empty() {
        report(
            format!("{TEMPLATE_SPEC}.domain.devices.hostDevices"),
            "host devices cannot live-migrate",
            "remove them",
        );
    }
    let path = format!("{TEMPLATE_SPEC}.domain.devices.gpus");
    match devices.gpus.as_slice() {
        [] => {}
        [gpu] => {
            let Some(version) = &kubevirt.version else {
                return;
            };
            let reason = match (
                version.at_least(&GPU_MIGRATION),
                version.at_least(&NOT_STUDIED),
            ) {
                (Some(false), _) => "a GPU cannot live-migrate before KubeVirt 1.9",
                (Some(true), Some(false)) => {
                    let gate =
                        config.feature_gate(VGPU_LIVE_MIGRATION_GATE) == GateSetting::Enabled;
                    let mediated = config.permitted_host_devices.as_ref().is_some_and(|p| {
                        gpu.device_name
                            .as_deref()
                            .is_some_and(|name| p.mediated.iter().any(|m| m == name))
                    });
                    if gate && mediated {
                        return;
                    }
                    "GPU not a permitted mdev with VGPULiveMigration"
                }
                _ => return,
            };
            report(path, reason, "remove it");
        }
        _ => report(path, "more than one GPU cannot live-migrate", "remove them"),
    }
}

/// Why a volume keeps the VM from migrating (`checkVolumesForMigration`): its field, the
/// reason and what to do.
fn volume_reason(
    cx: &VmContext<'_>,
    volume: &Volume,
) -> Option<(&'static str, String, &'static str)> {
    if let Some(host_disk) = &volume.host_disk {
        return (host_disk.shared != Some(true)).then(|| {
            (
                "hostDisk",
                format!("hostDisk {} is not shared", volume.name),
                "set shared: true",
            )
        });
    }
    let (field, claim) = if let Some(pvc) = &volume.persistent_volume_claim {
        (
            "persistentVolumeClaim.claimName",
            pvc.claim_name.as_deref()?,
        )
    } else if let Some(dv) = &volume.data_volume {
        ("dataVolume.name", dv.name.as_deref()?)
    } else {
        return None; // containerDisk, cloud-init, …: copied by a block migration
    };
    let shared = |modes: &mut dyn Iterator<Item = &str>| {
        let mut any = false;
        for mode in modes {
            if mode == READ_WRITE_MANY {
                return Some(true);
            }
            any = true;
        }
        // No access mode known is no answer (the API server requires one).
        any.then_some(false)
    };
    let view = cx.cluster?;
    let rwx = match view.pvc(cx.namespace, claim) {
        Lookup::Present(pvc) => shared(&mut pvc.access_modes.iter().map(String::as_str)),
        // A DataVolume template not created yet: CDI gives the claim the template's modes.
        Lookup::Absent | Lookup::Unknown => {
            let template = cx
                .vm
                .spec
                .data_volume_templates
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(claim))?;
            let storage = template
                .spec
                .pvc
                .as_ref()
                .or(template.spec.storage.as_ref())?;
            shared(&mut storage.access_modes.iter().map(|m| m.as_str()))
        }
    }?;
    (!rwx).then(|| {
        (
            field,
            format!("claim {claim} is not ReadWriteMany"),
            "use RWX storage",
        )
    })
}

#[cfg(test)]
mod tests;
