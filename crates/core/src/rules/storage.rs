//! PVCs, DataVolumes, StorageClasses and CDI StorageProfiles. `dataVolumeTemplates` count as
//! PVCs and DataVolumes that will exist: KubeVirt creates them with the VM.

use super::small_set::SmallSet;
use super::{Emitter, VmContext};
use crate::cluster::{ClusterView, Kind, Lookup, ObjectKey};
use crate::model::{StorageSpec, TEMPLATE_SPEC};

/// A claim a volume names: `persistentVolumeClaim`, `ephemeral` or `dataVolume`.
pub(super) struct Claim<'a> {
    /// The volume's index and the field under it that names the claim.
    pub volume: usize,
    pub field: &'static str,
    pub name: &'a str,
}

impl Claim<'_> {
    /// Built for a finding only.
    pub fn path(&self) -> String {
        format!("{TEMPLATE_SPEC}.volumes[{}].{}", self.volume, self.field)
    }
}

pub(super) fn claims<'a>(cx: &VmContext<'a>) -> impl Iterator<Item = Claim<'a>> {
    cx.spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(i, volume)| {
            let direct = volume
                .persistent_volume_claim
                .as_ref()
                .and_then(|c| c.claim_name.as_deref())
                .map(|name| ("persistentVolumeClaim.claimName", name));
            let ephemeral = volume
                .ephemeral
                .as_ref()
                .and_then(|e| e.persistent_volume_claim.as_ref())
                .and_then(|c| c.claim_name.as_deref())
                .map(|name| ("ephemeral.persistentVolumeClaim.claimName", name));
            direct
                .or(ephemeral)
                .filter(|(_, name)| !name.is_empty())
                .map(|(field, name)| Claim {
                    volume: i,
                    field,
                    name,
                })
        })
}

/// `dataVolume` volumes.
pub(super) fn data_volumes<'a>(cx: &VmContext<'a>) -> impl Iterator<Item = Claim<'a>> {
    cx.spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(i, volume)| {
            let name = volume.data_volume.as_ref()?.name.as_deref()?;
            (!name.is_empty()).then_some(Claim {
                volume: i,
                field: "dataVolume.name",
                name,
            })
        })
}

fn template_names<'a>(cx: &VmContext<'a>) -> SmallSet<&'a str> {
    cx.vm
        .spec
        .data_volume_templates
        .iter()
        .filter_map(|t| t.metadata.name.as_deref())
        .collect()
}

/// A template's storage section: `pvc`, or `storage` (the storage API, which CDI completes
/// from the StorageProfile).
pub(super) struct TemplateStorage<'a> {
    pub template: usize,
    pub storage_api: bool,
    pub spec: &'a StorageSpec,
}

impl TemplateStorage<'_> {
    /// The path of `field` in this section (built for a finding only).
    pub fn path(&self, field: &str) -> String {
        let section = if self.storage_api { "storage" } else { "pvc" };
        format!(
            "spec.dataVolumeTemplates[{}].spec.{section}{field}",
            self.template
        )
    }
}

pub(super) fn template_storage<'a>(
    cx: &VmContext<'a>,
) -> impl Iterator<Item = TemplateStorage<'a>> {
    cx.vm
        .spec
        .data_volume_templates
        .iter()
        .enumerate()
        .flat_map(|(i, template)| {
            [(false, &template.spec.pvc), (true, &template.spec.storage)]
                .into_iter()
                .filter_map(move |(storage_api, spec)| {
                    spec.as_ref().map(|spec| TemplateStorage {
                        template: i,
                        storage_api,
                        spec,
                    })
                })
        })
}

/// Whether the DataVolume of template `index` exists already: KubeVirt creates a template's
/// DataVolume only when none of its name exists in the VM's namespace (`handleDataVolumes`,
/// `pkg/virt-controller/watch/vm/vm.go`) and uses an existing one as it is, never reading the
/// template's source, class or modes. One being deleted counts as absent (it is created again);
/// `Unknown` when DataVolumes are unknown.
pub(super) fn existing_data_volume(
    cx: &VmContext<'_>,
    view: &ClusterView,
    index: usize,
) -> Lookup<()> {
    let name = cx
        .vm
        .spec
        .data_volume_templates
        .get(index)
        .and_then(|t| t.metadata.name.as_deref())
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Lookup::Absent;
    };
    match view.datavolume(cx.namespace, name) {
        Lookup::Present(info) if !info.deleting => Lookup::Present(()),
        Lookup::Present(_) | Lookup::Absent => Lookup::Absent,
        Lookup::Unknown => Lookup::Unknown,
    }
}

pub fn pvc_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    let templates = template_names(cx);
    for claim in claims(cx) {
        let kind = Kind::PersistentVolumeClaim;
        if !templates.contains(claim.name)
            && view.exists(kind, cx.namespace, claim.name).is_absent()
        {
            out.emit_missing(
                vec![ObjectKey::new(kind, cx.namespace, claim.name)],
                claim.path(),
                format!(
                    "PVC {:?} does not exist in namespace {}: create it or add a dataVolumeTemplate",
                    claim.name, cx.namespace
                ),
            );
        }
    }
}

pub fn datavolume_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    let templates = template_names(cx);
    for volume in data_volumes(cx) {
        if templates.contains(volume.name) {
            continue;
        }
        let looked_for = [Kind::DataVolume, Kind::PersistentVolumeClaim];
        if looked_for
            .iter()
            .all(|kind| view.exists(*kind, cx.namespace, volume.name).is_absent())
        {
            let hotplug = cx.spec.volumes[volume.volume]
                .data_volume
                .as_ref()
                .and_then(|d| d.hotpluggable)
                == Some(true);
            let message = if hotplug {
                format!(
                    "hotplug DataVolume {:?} does not exist: KubeVirt starts the VM without it",
                    volume.name
                )
            } else {
                format!(
                    "DataVolume {:?} is neither a dataVolumeTemplate nor an existing DataVolume or PVC",
                    volume.name
                )
            };
            let finding = out.emit_missing(
                looked_for
                    .iter()
                    .map(|kind| ObjectKey::new(*kind, cx.namespace, volume.name))
                    .collect(),
                volume.path(),
                message,
            );
            // Not a stuck VM: the volume is attached when it appears.
            if hotplug {
                finding.severity = crate::rules::finding::Severity::Warning;
            }
        }
    }
}

pub fn storage_class_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for storage in template_storage(cx) {
        let Some(class) = storage
            .spec
            .storage_class_name
            .as_deref()
            .filter(|c| !c.is_empty())
        else {
            continue;
        };
        if existing_data_volume(cx, view, storage.template)
            .present()
            .is_some()
        {
            continue;
        }
        if view.storage_class(class).is_absent() {
            out.emit_missing(
                vec![ObjectKey::new(Kind::StorageClass, "", class)],
                storage.path(".storageClassName"),
                format!("StorageClass {class:?} does not exist: the DataVolume would stay Pending"),
            );
        }
    }
    // An existing claim only suffers while unbound; a Bound PVC keeps working without its class.
    let templates = template_names(cx);
    for claim in claims(cx).chain(data_volumes(cx)) {
        if templates.contains(claim.name) {
            continue;
        }
        let Lookup::Present(pvc) = view.pvc(cx.namespace, claim.name) else {
            continue;
        };
        let Some(class) = pvc.storage_class.as_deref().filter(|c| !c.is_empty()) else {
            continue;
        };
        if pvc.phase.as_deref() == Some("Pending") && view.storage_class(class).is_absent() {
            // A claim binds to a pre-created PersistentVolume of the same class name without
            // any StorageClass object (static provisioning; seen on the real control plane in
            // tests/differential.rs). The view reads no PersistentVolumes: it cannot tell.
            out.emit_missing(
                vec![ObjectKey::new(Kind::StorageClass, "", class)],
                claim.path(),
                format!(
                    "PVC {:?} is Pending on StorageClass {class:?}, which does not exist",
                    claim.name
                ),
            )
            .assuming(
                "no PersistentVolume of that class will bind it (PersistentVolumes are not read)",
            );
        }
    }
}

pub fn no_default_storage_class(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    if !view.default_storage_class().is_absent() {
        return;
    }
    for storage in template_storage(cx) {
        // An explicit "" asks for no class (static binding), not for the default.
        if storage.spec.storage_class_name.is_none()
            && existing_data_volume(cx, view, storage.template)
                .present()
                .is_none()
        {
            out.emit(
                storage.path(""),
                "no storageClassName and the cluster has no default StorageClass: name one",
            );
        }
    }
}

pub fn storage_profile_incomplete(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for storage in template_storage(cx) {
        if !storage.storage_api
            || !storage.spec.access_modes.is_empty()
            || existing_data_volume(cx, view, storage.template)
                .present()
                .is_some()
        {
            continue;
        }
        let class = match storage.spec.storage_class_name.as_deref() {
            Some("") => continue,
            Some(class) => Some(class),
            None => view.default_storage_class().present(),
        };
        let Some(class) = class else { continue };
        if let Lookup::Present(profile) = view.storage_profile(class)
            && !profile.has_access_modes()
        {
            out.emit(
                storage.path(".accessModes"),
                format!(
                    "StorageProfile {class:?} gives no accessModes: set spec.storage.accessModes or the profile"
                ),
            );
        }
    }
}

pub fn pvc_lost(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for claim in claims(cx).chain(data_volumes(cx)) {
        if let Lookup::Present(pvc) = view.pvc(cx.namespace, claim.name)
            && pvc.phase.as_deref() == Some("Lost")
        {
            out.emit(
                claim.path(),
                format!(
                    "PVC {:?} is Lost (its PersistentVolume is gone): restore or replace it",
                    claim.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::{self, *};
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    /// The valid VM with an extra data disk backed by `volume` (and dataVolumeTemplates).
    fn with_data(volume: Value, templates: Value) -> Value {
        valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = templates;
            spec(vm)["volumes"].as_array_mut().unwrap().push(volume);
            spec(vm)["domain"]["devices"]["disks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "data", "disk": {}}));
        })
    }

    fn template(storage: Value) -> Value {
        json!([{"metadata": {"name": "data-dv"}, "spec": {"storage": storage, "source": {"blank": {}}}}])
    }

    fn size() -> Value {
        json!({"requests": {"storage": "10Gi"}})
    }

    #[test]
    fn pvc_not_found() {
        let view = cluster(BASE_CLUSTER);
        let broken = with_data(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "nope"}}),
            json!([]),
        );
        let path = "spec.template.spec.volumes[2].persistentVolumeClaim.claimName";
        assert_eq!(
            fired_in(broken.clone(), &view),
            vec![(PvcNotFound, path.into())]
        );
        let fixed = with_data(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}}),
            json!([]),
        );
        assert_eq!(fired_in(fixed, &view), vec![]);
        // A dataVolumeTemplate of that name will create the claim.
        let templated = with_data(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-dv"}}),
            template(json!({"resources": size()})),
        );
        assert_eq!(fired_in(templated, &view), vec![]);
        let ephemeral = with_data(
            json!({"name": "data", "ephemeral": {"persistentVolumeClaim": {"claimName": "nope"}}}),
            json!([]),
        );
        assert_eq!(
            fired_in(ephemeral, &view),
            vec![(
                PvcNotFound,
                "spec.template.spec.volumes[2].ephemeral.persistentVolumeClaim.claimName".into()
            )]
        );
        let unknown = base_cluster_with(|items| without_kind(items, "PersistentVolumeClaim"));
        assert_eq!(fired_in(broken, &unknown), vec![]);
    }

    #[test]
    fn datavolume_not_found() {
        let view = cluster(BASE_CLUSTER);
        let broken = with_data(
            json!({"name": "data", "dataVolume": {"name": "nope"}}),
            json!([]),
        );
        assert_eq!(
            fired_in(broken.clone(), &view),
            vec![(
                DatavolumeNotFound,
                "spec.template.spec.volumes[2].dataVolume.name".into()
            )]
        );
        for existing in ["existing-dv", "data-pvc"] {
            let fixed = with_data(
                json!({"name": "data", "dataVolume": {"name": existing}}),
                json!([]),
            );
            assert_eq!(fired_in(fixed, &view), vec![], "{existing}");
        }
        let unknown = base_cluster_with(|items| without_kind(items, "DataVolume"));
        assert_eq!(fired_in(broken, &unknown), vec![]);
    }

    fn dv_vm(storage: Value) -> Value {
        with_data(
            json!({"name": "data", "dataVolume": {"name": "data-dv"}}),
            template(storage),
        )
    }

    #[test]
    fn storage_class_not_found() {
        let view = cluster(BASE_CLUSTER);
        let broken = dv_vm(json!({"storageClassName": "gold", "resources": size()}));
        assert_eq!(
            fired_in(broken.clone(), &view),
            vec![(
                StorageClassNotFound,
                "spec.dataVolumeTemplates[0].spec.storage.storageClassName".into()
            )]
        );
        assert_eq!(
            fired_in(
                dv_vm(json!({"storageClassName": "standard", "resources": size()})),
                &view
            ),
            vec![]
        );
        let unknown = base_cluster_with(|items| without_kind(items, "StorageClass"));
        assert_eq!(fired_in(broken, &unknown), vec![]);
    }

    #[test]
    fn pending_pvc_on_a_missing_class() {
        let view = base_cluster_with(|items| {
            items.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "stuck", "namespace": "default"},
                "spec": {"storageClassName": "gold"}, "status": {"phase": "Pending"}}));
            items.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "bound", "namespace": "default"},
                "spec": {"storageClassName": "gold"}, "status": {"phase": "Bound"}}));
        });
        let stuck = with_data(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "stuck"}}),
            json!([]),
        );
        let found = findings_in(stuck.clone(), &view);
        assert_eq!(
            fired_in(stuck, &view),
            vec![(
                StorageClassNotFound,
                "spec.template.spec.volumes[2].persistentVolumeClaim.claimName".into()
            )]
        );
        // A pre-created PersistentVolume of that class may still bind it: a warning.
        assert_eq!(found[0].severity, crate::rules::finding::Severity::Warning);
        assert!(found[0].assumption.is_some());
        let bound = with_data(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "bound"}}),
            json!([]),
        );
        assert_eq!(fired_in(bound, &view), vec![]);
    }

    #[test]
    fn no_default_storage_class() {
        let no_default = base_cluster_with(|items| {
            items.retain(|i| i["kind"] != "StorageClass");
            items.push(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard"}}));
        });
        let broken = dv_vm(json!({"resources": size(), "accessModes": ["ReadWriteOnce"]}));
        assert_eq!(
            fired_in(broken.clone(), &no_default),
            vec![(
                NoDefaultStorageClass,
                "spec.dataVolumeTemplates[0].spec.storage".into()
            )]
        );
        assert_eq!(fired_in(broken.clone(), &cluster(BASE_CLUSTER)), vec![]);
        let named = dv_vm(json!({"resources": size(), "storageClassName": "standard"}));
        assert_eq!(fired_in(named, &no_default), vec![]);
        let virt_default = base_cluster_with(|items| {
            items.retain(|i| i["kind"] != "StorageClass");
            items.push(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard",
                "annotations": {"storageclass.kubevirt.io/is-default-virt-class": "true"}}}));
        });
        assert_eq!(fired_in(broken, &virt_default), vec![]);
    }

    #[test]
    fn a_template_whose_data_volume_exists_is_not_created_again() {
        // KubeVirt uses an existing DataVolume of the template's name as it is
        // (`handleDataVolumes`): the class it was created with, since deleted or no longer the
        // default, does not matter to a VM re-created over it (or one that runs on it).
        let existing = |storage: Value| {
            with_data(
                json!({"name": "data", "dataVolume": {"name": "existing-dv"}}),
                json!([{"metadata": {"name": "existing-dv"}, "spec": {"storage": storage, "source": {"blank": {}}}}]),
            )
        };
        let no_default = base_cluster_with(|items| {
            items.retain(|i| i["kind"] != "StorageClass");
            items.push(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard"}}));
        });
        let gone = existing(json!({"storageClassName": "gold", "resources": size()}));
        let unnamed = existing(json!({"resources": size(), "accessModes": ["ReadWriteOnce"]}));
        assert_eq!(fired_in(gone.clone(), &cluster(BASE_CLUSTER)), vec![]);
        assert_eq!(fired_in(unnamed, &no_default), vec![]);
        // Being deleted, it is created again from the template.
        let deleting = base_cluster_with(|items| {
            for item in items.iter_mut().filter(|i| i["kind"] == "DataVolume") {
                item["metadata"]["deletionTimestamp"] = json!("2026-11-29T12:00:00Z");
                item["metadata"]["finalizers"] = json!(["kubernetes.io/pvc-protection"]);
            }
        });
        assert_eq!(
            fired_in(gone, &deleting),
            vec![(
                StorageClassNotFound,
                "spec.dataVolumeTemplates[0].spec.storage.storageClassName".into()
            )]
        );
    }

    #[test]
    fn storage_profile_incomplete() {
        let empty_profile = base_cluster_with(|items| {
            items.retain(|i| i["kind"] != "StorageProfile");
            items.push(
                json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                "metadata": {"name": "standard"}, "status": {}}),
            );
        });
        let broken = dv_vm(json!({"resources": size()}));
        assert_eq!(
            fired_in(broken.clone(), &empty_profile),
            vec![(
                StorageProfileIncomplete,
                "spec.dataVolumeTemplates[0].spec.storage.accessModes".into()
            )]
        );
        let fixed = dv_vm(json!({"resources": size(), "accessModes": ["ReadWriteOnce"]}));
        assert_eq!(fired_in(fixed, &empty_profile), vec![]);
        assert_eq!(fired_in(broken.clone(), &cluster(BASE_CLUSTER)), vec![]);
        let unknown = base_cluster_with(|items| without_kind(items, "StorageProfile"));
        assert_eq!(fired_in(broken, &unknown), vec![]);
        // KubeVirt uses the existing DataVolume `existing-dv` as it is: no profile is read.
        let existing = with_data(
            json!({"name": "data", "dataVolume": {"name": "existing-dv"}}),
            json!([{"metadata": {"name": "existing-dv"}, "spec": {"storage": {"resources": size()}, "source": {"blank": {}}}}]),
        );
        assert_eq!(fired_in(existing, &empty_profile), vec![]);
    }

    #[test]
    fn pvc_lost() {
        let view = base_cluster_with(|items| {
            items.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "gone", "namespace": "default"}, "status": {"phase": "Lost"}}));
        });
        let rule: RuleId = PvcLost;
        let broken = with_data(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "gone"}}),
            json!([]),
        );
        assert_eq!(
            fired_in(broken, &view),
            vec![(
                rule,
                "spec.template.spec.volumes[2].persistentVolumeClaim.claimName".into()
            )]
        );
        let fixed = with_data(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}}),
            json!([]),
        );
        assert_eq!(fired_in(fixed, &view), vec![]);
    }
}
