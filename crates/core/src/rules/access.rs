//! Access modes: whether the storage can give what a DataVolume template asks for, and whether
//! a single-writer claim is already another VM's.

use super::storage::{claims, data_volumes, existing_data_volume, template_storage};
use super::{Emitter, VmContext};
use crate::cluster::{ClaimPropertySet, ClusterView, Lookup};

const FILESYSTEM: &str = "Filesystem";

/// A DataVolume template asks for an access mode that its StorageClass's CDI StorageProfile
/// lists in no `claimPropertySets` entry with the volume mode the claim will have (when the
/// profile lists any access mode). The volume mode is the template's, else for the storage
/// API the one CDI takes from the first set holding a requested mode (`getDefaultVolumeMode`),
/// else Kubernetes' default, Filesystem. The class is the template's, else for the storage API
/// CDI's default (the KubeVirt default class first), and for the `pvc` API the cluster default
/// only when that is the same class. CDI passes explicit modes to the provisioner unchecked
/// and the sets are recommendations: a warning. KubeVirt's admission does not check this.
pub fn access_mode_unsupported(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for storage in template_storage(cx) {
        let modes = &storage.spec.access_modes;
        if modes.is_empty()
            || existing_data_volume(cx, view, storage.template)
                .present()
                .is_some()
        {
            continue;
        }
        let Some(class) = class_of(
            view,
            storage.storage_api,
            storage.spec.storage_class_name.as_deref(),
        ) else {
            continue;
        };
        let Lookup::Present(profile) = view.storage_profile(class) else {
            continue;
        };
        if !profile.has_access_modes() {
            continue;
        }
        let sets = &profile.claim_property_sets;
        let volume_mode = match storage
            .spec
            .volume_mode
            .as_deref()
            .filter(|m| !m.is_empty())
        {
            Some(mode) => Some(mode),
            None if storage.storage_api => sets
                .iter()
                .find(|set| {
                    set.access_modes
                        .iter()
                        .any(|m| modes.iter().any(|w| w == m))
                })
                .map_or(Some(FILESYSTEM), |set| set.volume_mode.as_deref()),
            None => Some(FILESYSTEM),
        };
        // Each mode on its own: profiles list one set per mode and volume mode.
        let Some(missing) = modes.iter().find(|mode| {
            !sets.iter().any(|set| {
                set.access_modes.iter().any(|m| m == mode.as_str())
                    && modes_match(set.volume_mode.as_deref(), volume_mode)
            })
        }) else {
            continue;
        };
        out.emit(
            storage.path(".accessModes"),
            format!(
                "StorageProfile {class:?} has no {missing} {} claims (only {}): pick one it has",
                volume_mode.unwrap_or(FILESYSTEM),
                offers(sets)
            ),
        );
    }
}

/// The StorageClass a template's claim gets; `None` when it cannot be told.
fn class_of<'a>(
    view: &'a ClusterView,
    storage_api: bool,
    written: Option<&'a str>,
) -> Option<&'a str> {
    match written {
        // "" asks for no class (static binding).
        Some("") => None,
        Some(class) => Some(class),
        None => {
            let default = view.default_storage_class().present()?;
            let kubernetes_default = view
                .storage_class(default)
                .present()
                .is_some_and(|info| info.default);
            (storage_api || kubernetes_default).then_some(default)
        }
    }
}

/// An unset volume mode on either side matches: the set does not say, or CDI took it from a
/// set that does not say.
fn modes_match(offered: Option<&str>, wanted: Option<&str>) -> bool {
    match (offered, wanted) {
        (Some(offered), Some(wanted)) => offered == wanted,
        _ => true,
    }
}

/// "ReadWriteOnce/Filesystem, ReadWriteMany/Block", shortened to fit a message.
fn offers(sets: &[ClaimPropertySet]) -> String {
    let mut text = String::new();
    for set in sets {
        for mode in &set.access_modes {
            let item = format!("{mode}/{}", set.volume_mode.as_deref().unwrap_or("any"));
            if text.len() + item.len() > 32 {
                text.push_str(", …");
                return text;
            }
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&item);
        }
    }
    text
}

/// A ReadWriteOnce (or ReadWriteOncePod) claim the VM mounts is also mounted by another VM of
/// the namespace that runs or will run, and the VM's disk for it is not `shareable: true`. On
/// another node the second launcher pod waits on a Multi-Attach error; on the same node QEMU's
/// image lock stops the second VM. The VM being updated is in the view under its own name and
/// is never counted against itself. Access modes are the PVC's (a `dataVolume` volume mounts
/// the claim of the DataVolume's name), else those of the VM's own template of that name; a
/// claim that also allows ReadWriteMany or ReadOnlyMany may attach to several nodes and is not
/// reported, nor is one whose modes are unknown. Ephemeral volumes open their claim read-only.
/// KubeVirt's admission does not check this.
pub fn pvc_in_use(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    if view.virtual_machines(cx.namespace).is_none() {
        return;
    }
    let me = cx.vm.metadata.name.as_deref();
    let mounted = claims(cx)
        .filter(|claim| claim.field == "persistentVolumeClaim.claimName")
        .chain(data_volumes(cx));
    for claim in mounted {
        let volume = &cx.spec.volumes[claim.volume].name;
        let shareable = cx
            .spec
            .domain
            .devices
            .disks
            .iter()
            .any(|disk| disk.name == *volume && disk.shareable == Some(true));
        if shareable {
            continue;
        }
        let Some(mode) = single_writer_mode(cx, view, claim.name) else {
            continue;
        };
        let Some(mut others) = view.virtual_machines(cx.namespace) else {
            return;
        };
        let other = others.find(|(name, vm)| {
            Some(*name) != me && vm.starts && vm.claims.iter().any(|c| &*c.claim == claim.name)
        });
        if let Some((other, _)) = other {
            out.emit(
                claim.path(),
                format!(
                    "PVC {:?} is {mode} and running VM {other:?} uses it too: use RWX, shareable: true or another PVC",
                    claim.name
                ),
            );
        }
    }
}

/// `ReadWriteOncePod` or `ReadWriteOnce` when the claim can be attached to one node only
/// (Kubernetes allows several only with ReadWriteMany or ReadOnlyMany); `None` otherwise or
/// when its modes are unknown.
fn single_writer_mode(cx: &VmContext<'_>, view: &ClusterView, claim: &str) -> Option<&'static str> {
    let from_template = || {
        cx.vm
            .spec
            .data_volume_templates
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(claim))
            .and_then(|t| t.spec.pvc.as_ref().or(t.spec.storage.as_ref()))
            .map(|spec| {
                spec.access_modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
            })
    };
    let modes: Vec<&str> = match view.pvc(cx.namespace, claim) {
        Lookup::Present(pvc) => pvc.access_modes.iter().map(String::as_str).collect(),
        Lookup::Absent => from_template()?,
        Lookup::Unknown => return None,
    };
    if modes
        .iter()
        .any(|m| matches!(*m, "ReadWriteMany" | "ReadOnlyMany"))
    {
        return None;
    }
    ["ReadWriteOncePod", "ReadWriteOnce"]
        .into_iter()
        .find(|wanted| modes.contains(wanted))
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::{self, *};
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn of(rule: RuleId, value: Value, view: &crate::cluster::ClusterView) -> Vec<(RuleId, String)> {
        fired_in(value, view)
            .into_iter()
            .filter(|(r, _)| *r == rule)
            .collect()
    }

    fn template_vm(storage: Value) -> Value {
        valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "root-dv"}, "spec": {
                "source": {"blank": {}}, "storage": storage}}]);
            spec(vm)["volumes"][0] = json!({"name": "rootdisk", "dataVolume": {"name": "root-dv"}});
        })
    }

    fn profile(sets: Value) -> crate::cluster::ClusterView {
        base_cluster_with(|items| {
            items.retain(|i| i["kind"] != "StorageProfile");
            items.push(
                json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                "metadata": {"name": "standard"}, "status": {"claimPropertySets": sets}}),
            );
        })
    }

    const MODES: &str = "spec.dataVolumeTemplates[0].spec.storage.accessModes";

    #[test]
    fn an_access_mode_the_profile_does_not_list() {
        let rwo_only =
            profile(json!([{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]));
        let rwx = template_vm(
            json!({"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}),
        );
        assert_eq!(
            of(AccessModeUnsupported, rwx.clone(), &rwo_only),
            vec![(AccessModeUnsupported, MODES.into())]
        );
        let finding = findings_in(rwx.clone(), &rwo_only)
            .into_iter()
            .find(|f| f.rule == AccessModeUnsupported)
            .unwrap();
        assert!(
            finding.message.contains("ReadWriteOnce/Filesystem"),
            "{}",
            finding.message
        );
        assert!(
            finding.message.chars().count() <= 120,
            "{}",
            finding.message
        );
        // The clean twin: a profile that lists RWX.
        let both = profile(json!([
            {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"},
            {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]));
        assert_eq!(of(AccessModeUnsupported, rwx.clone(), &both), vec![]);
        // ... but RWX only with Block volumes: a Filesystem RWX claim is not listed.
        let rwx_fs = template_vm(
            json!({"accessModes": ["ReadWriteMany"], "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": "1Gi"}}}),
        );
        assert_eq!(of(AccessModeUnsupported, rwx_fs, &both).len(), 1);
        // A profile without modes is storage-profile-incomplete's business; unknown: nothing.
        assert_eq!(
            of(AccessModeUnsupported, rwx.clone(), &profile(json!([]))),
            vec![]
        );
        let unknown = base_cluster_with(|items| without_kind(items, "StorageProfile"));
        assert_eq!(of(AccessModeUnsupported, rwx, &unknown), vec![]);
    }

    #[test]
    fn a_template_whose_data_volume_exists_asks_for_nothing() {
        // KubeVirt uses the existing DataVolume `existing-dv` (base cluster) as it is.
        let rwo_only =
            profile(json!([{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]));
        let vm = valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "existing-dv"}, "spec": {
                "source": {"blank": {}}, "storage": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}}]);
            spec(vm)["volumes"][0] =
                json!({"name": "rootdisk", "dataVolume": {"name": "existing-dv"}});
        });
        assert_eq!(of(AccessModeUnsupported, vm, &rwo_only), vec![]);
    }

    #[test]
    fn the_pvc_api_defaults_to_filesystem_and_the_kubernetes_default_class() {
        let block_rwx = profile(json!([
            {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"},
            {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]));
        let pvc_api = valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "root-dv"}, "spec": {
                "source": {"blank": {}}, "pvc": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}}]);
            spec(vm)["volumes"][0] = json!({"name": "rootdisk", "dataVolume": {"name": "root-dv"}});
        });
        assert_eq!(
            of(AccessModeUnsupported, pvc_api, &block_rwx),
            vec![(
                AccessModeUnsupported,
                "spec.dataVolumeTemplates[0].spec.pvc.accessModes".into()
            )]
        );
    }

    fn vm_using(name: &str, run_strategy: &str, volume: Value, shareable: bool) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"runStrategy": run_strategy, "template": {"spec": {
                "domain": {"devices": {"disks": [{"name": "data", "shareable": shareable}]}},
                "volumes": [volume]}}}})
    }

    fn claim_view(access_modes: Value, others: Vec<Value>) -> crate::cluster::ClusterView {
        base_cluster_with(|items| {
            items.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "shared-disk", "namespace": "default"},
                "spec": {"storageClassName": "standard", "accessModes": access_modes},
                "status": {"phase": "Bound"}}));
            items.extend(others);
        })
    }

    fn with_data(volume: Value, shareable: bool) -> Value {
        valid_vm_with(|vm| {
            spec(vm)["volumes"].as_array_mut().unwrap().push(volume);
            spec(vm)["domain"]["devices"]["disks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "data", "disk": {}, "shareable": shareable}));
        })
    }

    const CLAIM: &str = "spec.template.spec.volumes[2].persistentVolumeClaim.claimName";

    #[test]
    fn a_single_writer_claim_another_running_vm_holds() {
        let pvc = json!({"name": "data", "persistentVolumeClaim": {"claimName": "shared-disk"}});
        let other = vm_using("other", "Always", pvc.clone(), false);
        let rwo = claim_view(json!(["ReadWriteOnce"]), vec![other.clone()]);
        assert_eq!(
            of(PvcInUse, with_data(pvc.clone(), false), &rwo),
            vec![(PvcInUse, CLAIM.into())]
        );
        let message = findings_in(with_data(pvc.clone(), false), &rwo)
            .into_iter()
            .find(|f| f.rule == PvcInUse)
            .unwrap()
            .message;
        assert!(
            message.contains("\"other\"") && message.chars().count() <= 120,
            "{message}"
        );
        // Clean twins: an RWX claim; a shareable disk; the other VM halted.
        let rwx = claim_view(json!(["ReadWriteMany"]), vec![other.clone()]);
        assert_eq!(of(PvcInUse, with_data(pvc.clone(), false), &rwx), vec![]);
        assert_eq!(of(PvcInUse, with_data(pvc.clone(), true), &rwo), vec![]);
        let halted = claim_view(
            json!(["ReadWriteOnce"]),
            vec![vm_using("other", "Halted", pvc.clone(), false)],
        );
        assert_eq!(of(PvcInUse, with_data(pvc.clone(), false), &halted), vec![]);
        // The VM itself in the view (an UPDATE) is not another user.
        let itself = claim_view(
            json!(["ReadWriteOnce"]),
            vec![vm_using("testvm", "Always", pvc.clone(), false)],
        );
        assert_eq!(of(PvcInUse, with_data(pvc.clone(), false), &itself), vec![]);
        // Unknown modes, or VMs unknown: nothing.
        let no_modes = claim_view(json!([]), vec![other]);
        assert_eq!(
            of(PvcInUse, with_data(pvc.clone(), false), &no_modes),
            vec![]
        );
        let no_vms = claim_view(json!(["ReadWriteOnce"]), vec![]);
        assert_eq!(of(PvcInUse, with_data(pvc, false), &no_vms), vec![]);
    }

    #[test]
    fn data_volumes_mount_the_claim_of_their_name() {
        // The other VM mounts the claim through a dataVolume volume; this VM creates it from a
        // template whose modes say RWO (no PVC yet).
        let other = vm_using(
            "other",
            "Always",
            json!({"name": "data", "dataVolume": {"name": "new-disk"}}),
            false,
        );
        let view = base_cluster_with(|items| items.push(other));
        let vm = valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "new-disk"}, "spec": {
                "source": {"blank": {}}, "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}]);
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "data", "dataVolume": {"name": "new-disk"}}));
        });
        assert_eq!(
            of(PvcInUse, vm, &view),
            vec![(
                PvcInUse,
                "spec.template.spec.volumes[2].dataVolume.name".into()
            )]
        );
    }
}
