//! Objects the VM names by name: Secrets, ConfigMaps, ServiceAccounts, network attachments,
//! instancetypes and preferences, PriorityClasses. Each lookup answers from the cluster view;
//! an unknown kind answers `None` and the rule stays silent.

use super::{Emitter, VmContext};
use crate::cluster::{Kind, ObjectKey};
use crate::model::TEMPLATE_SPEC;

/// A name the VM uses, and the path of the field that says it.
pub struct Reference<'a> {
    pub path: String,
    pub name: &'a str,
}

/// The path is built only for a name that is there (most optional references are not).
fn reference(path: impl FnOnce() -> String, name: Option<&str>) -> Option<Reference<'_>> {
    name.filter(|n| !n.is_empty())
        .map(|name| Reference { path: path(), name })
}

/// Every Secret the VM needs: secret volumes (unless optional), cloud-init secret refs,
/// sysprep, accessCredentials, containerDisk pull secrets, DataVolume template import sources.
pub fn secret_references<'a>(cx: &VmContext<'a>) -> Vec<Reference<'a>> {
    let mut refs = Vec::new();
    for (i, volume) in cx.spec.volumes.iter().enumerate() {
        let at = |field: &str| format!("{TEMPLATE_SPEC}.volumes[{i}].{field}");
        if let Some(secret) = &volume.secret
            && secret.optional != Some(true)
        {
            refs.extend(reference(
                || at("secret.secretName"),
                secret.secret_name.as_deref(),
            ));
        }
        for (source, cloud_init) in [
            ("cloudInitNoCloud", &volume.cloud_init_no_cloud),
            ("cloudInitConfigDrive", &volume.cloud_init_config_drive),
        ] {
            if let Some(cloud_init) = cloud_init {
                let user = cloud_init
                    .secret_ref
                    .as_ref()
                    .and_then(|r| r.name.as_deref());
                refs.extend(reference(|| at(&format!("{source}.secretRef.name")), user));
                let network = cloud_init
                    .network_data_secret_ref
                    .as_ref()
                    .and_then(|r| r.name.as_deref());
                refs.extend(reference(
                    || at(&format!("{source}.networkDataSecretRef.name")),
                    network,
                ));
            }
        }
        if let Some(sysprep) = &volume.sysprep {
            let name = sysprep.secret.as_ref().and_then(|r| r.name.as_deref());
            refs.extend(reference(|| at("sysprep.secret.name"), name));
        }
        if let Some(disk) = &volume.container_disk {
            refs.extend(reference(
                || at("containerDisk.imagePullSecret"),
                disk.image_pull_secret.as_deref(),
            ));
        }
    }
    for (i, credential) in cx.spec.access_credentials.iter().enumerate() {
        for (field, source) in [
            ("sshPublicKey", &credential.ssh_public_key),
            ("userPassword", &credential.user_password),
        ] {
            let name = source
                .as_ref()
                .and_then(|s| s.source.as_ref())
                .and_then(|s| s.secret.as_ref())
                .and_then(|s| s.secret_name.as_deref());
            refs.extend(reference(
                || {
                    format!(
                        "{TEMPLATE_SPEC}.accessCredentials[{i}].{field}.source.secret.secretName"
                    )
                },
                name,
            ));
        }
    }
    for (i, template) in cx.vm.spec.data_volume_templates.iter().enumerate() {
        if let Some(source) = &template.spec.source {
            for (kind, import) in source.imports() {
                refs.extend(reference(
                    || format!("spec.dataVolumeTemplates[{i}].spec.source.{kind}.secretRef"),
                    import.secret_ref.as_deref(),
                ));
            }
        }
    }
    refs
}

/// Every ConfigMap the VM needs: configMap volumes (unless optional), sysprep, and DataVolume
/// template `certConfigMap`s.
pub fn configmap_references<'a>(cx: &VmContext<'a>) -> Vec<Reference<'a>> {
    let mut refs = Vec::new();
    for (i, volume) in cx.spec.volumes.iter().enumerate() {
        if let Some(config_map) = &volume.config_map
            && config_map.optional != Some(true)
        {
            refs.extend(reference(
                || format!("{TEMPLATE_SPEC}.volumes[{i}].configMap.name"),
                config_map.name.as_deref(),
            ));
        }
        if let Some(sysprep) = &volume.sysprep {
            refs.extend(reference(
                || format!("{TEMPLATE_SPEC}.volumes[{i}].sysprep.configMap.name"),
                sysprep.config_map.as_ref().and_then(|r| r.name.as_deref()),
            ));
        }
    }
    for (i, template) in cx.vm.spec.data_volume_templates.iter().enumerate() {
        if let Some(source) = &template.spec.source {
            for (kind, import) in source.imports() {
                refs.extend(reference(
                    || format!("spec.dataVolumeTemplates[{i}].spec.source.{kind}.certConfigMap"),
                    import.cert_config_map.as_deref(),
                ));
            }
        }
    }
    refs
}

/// Reports each reference whose object does not exist in the VM's namespace.
fn report_missing(cx: &VmContext<'_>, out: &mut Emitter<'_>, kind: Kind, refs: Vec<Reference<'_>>) {
    let Some(view) = cx.cluster else { return };
    for Reference { path, name } in refs {
        if view.exists(kind, cx.namespace, name).is_absent() {
            out.emit_missing(
                vec![ObjectKey::new(kind, cx.namespace, name)],
                path,
                format!(
                    "{kind} {name:?} does not exist in namespace {}: create it first",
                    cx.namespace
                ),
            );
        }
    }
}

pub fn secret_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    report_missing(cx, out, Kind::Secret, secret_references(cx));
}

pub fn configmap_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    report_missing(cx, out, Kind::ConfigMap, configmap_references(cx));
}

pub fn service_account_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let refs = cx
        .spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(i, volume)| {
            reference(
                || format!("{TEMPLATE_SPEC}.volumes[{i}].serviceAccount.serviceAccountName"),
                volume
                    .service_account
                    .as_ref()
                    .and_then(|s| s.service_account_name.as_deref()),
            )
        })
        .collect();
    report_missing(cx, out, Kind::ServiceAccount, refs);
}

/// Multus `networkName` is `name` (the VM's namespace) or `namespace/name`.
pub fn network_attachment_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for (i, network) in cx.spec.networks.iter().enumerate() {
        let Some(full) = network
            .multus
            .as_ref()
            .and_then(|m| m.network_name.as_deref())
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let (namespace, name) = full.split_once('/').unwrap_or((cx.namespace, full));
        let kind = Kind::NetworkAttachmentDefinition;
        if view.exists(kind, namespace, name).is_absent() {
            out.emit_missing(
                vec![ObjectKey::new(kind, namespace, name)],
                format!("{TEMPLATE_SPEC}.networks[{i}].multus.networkName"),
                format!(
                    "NetworkAttachmentDefinition {namespace}/{name} does not exist: create it first"
                ),
            );
        }
    }
}

/// The kind a matcher names: its `kind`, case-insensitively, or the cluster-wide default.
pub(super) fn matcher_kind(
    kind: Option<&str>,
    namespaced: Kind,
    cluster_wide: Kind,
) -> Option<Kind> {
    match kind.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Some(cluster_wide),
        Some(k) if k == namespaced.as_str().to_ascii_lowercase() => Some(namespaced),
        Some(k) if k == cluster_wide.as_str().to_ascii_lowercase() => Some(cluster_wide),
        Some(_) => None,
    }
}

pub fn instancetype_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    let matchers = [
        (
            "instancetype",
            &cx.vm.spec.instancetype,
            Kind::VirtualMachineInstancetype,
            Kind::VirtualMachineClusterInstancetype,
        ),
        (
            "preference",
            &cx.vm.spec.preference,
            Kind::VirtualMachinePreference,
            Kind::VirtualMachineClusterPreference,
        ),
    ];
    for (field, matcher, namespaced, cluster_wide) in matchers {
        let Some(matcher) = matcher else { continue };
        let Some(name) = matcher.name.as_deref().filter(|n| !n.is_empty()) else {
            continue; // inferFromVolume: the name comes later
        };
        let Some(kind) = matcher_kind(matcher.kind.as_deref(), namespaced, cluster_wide) else {
            continue;
        };
        if view.exists(kind, cx.namespace, name).is_absent() {
            let scope = if kind.is_namespaced() {
                format!(" in namespace {}", cx.namespace)
            } else {
                String::new()
            };
            out.emit_missing(
                vec![ObjectKey::new(kind, cx.namespace, name)],
                format!("spec.{field}.name"),
                format!("{kind} {name:?} does not exist{scope}: create it or fix the name"),
            );
        }
    }
}

/// Built in to every cluster, whether or not a snapshot lists them.
const SYSTEM_PRIORITY_CLASSES: [&str; 2] = ["system-node-critical", "system-cluster-critical"];

pub fn priority_class_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    let Some(name) = cx
        .spec
        .priority_class_name
        .as_deref()
        .filter(|n| !n.is_empty())
    else {
        return;
    };
    if SYSTEM_PRIORITY_CLASSES.contains(&name) {
        return;
    }
    if view.exists(Kind::PriorityClass, "", name).is_absent() {
        out.emit_missing(
            vec![ObjectKey::new(Kind::PriorityClass, "", name)],
            format!("{TEMPLATE_SPEC}.priorityClassName"),
            format!("PriorityClass {name:?} does not exist: the launcher pod would be rejected"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::{self, *};
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn add_volume(vm: &mut Value, volume: Value) {
        spec(vm)["volumes"].as_array_mut().unwrap().push(volume);
    }

    /// (rule, kind it needs, VM that triggers it with the path, twin that is clean)
    fn cases() -> Vec<(RuleId, &'static str, Value, &'static str, Value)> {
        vec![
            (
                SecretNotFound,
                "Secret",
                valid_vm_with(|vm| {
                    spec(vm)["volumes"][1]["cloudInitNoCloud"] =
                        json!({"secretRef": {"name": "missing"}})
                }),
                "spec.template.spec.volumes[1].cloudInitNoCloud.secretRef.name",
                valid_vm_with(|vm| {
                    spec(vm)["volumes"][1]["cloudInitNoCloud"] =
                        json!({"secretRef": {"name": "user-data"}})
                }),
            ),
            (
                SecretNotFound,
                "Secret",
                valid_vm_with(|vm| {
                    spec(vm)["accessCredentials"] = json!([{"sshPublicKey": {"source": {"secret": {"secretName": "keys"}}, "propagationMethod": {"noCloud": {}}}}]);
                }),
                "spec.template.spec.accessCredentials[0].sshPublicKey.source.secret.secretName",
                valid_vm_with(|vm| {
                    spec(vm)["accessCredentials"] = json!([{"sshPublicKey": {"source": {"secret": {"secretName": "user-data"}}, "propagationMethod": {"noCloud": {}}}}]);
                }),
            ),
            (
                SecretNotFound,
                "Secret",
                valid_vm_with(|vm| {
                    add_volume(
                        vm,
                        json!({"name": "s", "secret": {"secretName": "missing"}}),
                    )
                }),
                "spec.template.spec.volumes[2].secret.secretName",
                valid_vm_with(|vm| {
                    add_volume(
                        vm,
                        json!({"name": "s", "secret": {"secretName": "missing", "optional": true}}),
                    )
                }),
            ),
            (
                ConfigmapNotFound,
                "ConfigMap",
                valid_vm_with(|vm| {
                    add_volume(vm, json!({"name": "c", "configMap": {"name": "missing"}}))
                }),
                "spec.template.spec.volumes[2].configMap.name",
                valid_vm_with(|vm| {
                    add_volume(
                        vm,
                        json!({"name": "c", "configMap": {"name": "sysprep-config"}}),
                    )
                }),
            ),
            (
                ServiceAccountNotFound,
                "ServiceAccount",
                valid_vm_with(|vm| {
                    add_volume(
                        vm,
                        json!({"name": "sa", "serviceAccount": {"serviceAccountName": "missing"}}),
                    )
                }),
                "spec.template.spec.volumes[2].serviceAccount.serviceAccountName",
                valid_vm_with(|vm| {
                    add_volume(
                        vm,
                        json!({"name": "sa", "serviceAccount": {"serviceAccountName": "vm-sa"}}),
                    )
                }),
            ),
            (
                NetworkAttachmentNotFound,
                "NetworkAttachmentDefinition",
                valid_vm_with(|vm| {
                    spec(vm)["networks"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "s", "multus": {"networkName": "other/storage-net"}}));
                    spec(vm)["domain"]["devices"]["interfaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "s", "bridge": {}}));
                }),
                "spec.template.spec.networks[1].multus.networkName",
                valid_vm_with(|vm| {
                    spec(vm)["networks"].as_array_mut().unwrap().push(
                        json!({"name": "s", "multus": {"networkName": "default/storage-net"}}),
                    );
                    spec(vm)["domain"]["devices"]["interfaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "s", "bridge": {}}));
                }),
            ),
            (
                InstancetypeNotFound,
                "VirtualMachineClusterInstancetype",
                valid_vm_with(|vm| vm["spec"]["instancetype"] = json!({"name": "u1.huge"})),
                "spec.instancetype.name",
                valid_vm_with(|vm| {
                    vm["spec"]["instancetype"] =
                        json!({"name": "u1.medium", "kind": "virtualmachineclusterinstancetype"})
                }),
            ),
            (
                InstancetypeNotFound,
                "VirtualMachineClusterPreference",
                valid_vm_with(|vm| vm["spec"]["preference"] = json!({"name": "windows"})),
                "spec.preference.name",
                valid_vm_with(|vm| vm["spec"]["preference"] = json!({"name": "fedora"})),
            ),
            (
                PriorityClassNotFound,
                "PriorityClass",
                valid_vm_with(|vm| spec(vm)["priorityClassName"] = json!("vm-low")),
                "spec.template.spec.priorityClassName",
                valid_vm_with(|vm| spec(vm)["priorityClassName"] = json!("vm-high")),
            ),
        ]
    }

    #[test]
    fn each_reference_rule_fires_where_the_object_is_missing() {
        let view = cluster(BASE_CLUSTER);
        for (rule, kind, broken, path, fixed) in cases() {
            assert_eq!(
                fired_in(broken.clone(), &view),
                vec![(rule, path.to_string())],
                "{rule} {path}"
            );
            assert_eq!(fired_in(fixed, &view), vec![], "{rule} fixed");
            let unknown = base_cluster_with(|items| without_kind(items, kind));
            assert_eq!(
                fired_in(broken, &unknown),
                vec![],
                "{rule} with {kind} unknown"
            );
        }
    }

    #[test]
    fn system_priority_classes_always_exist() {
        let vm = valid_vm_with(|vm| spec(vm)["priorityClassName"] = json!("system-node-critical"));
        assert_eq!(fired_in(vm, &cluster(BASE_CLUSTER)), vec![]);
    }

    #[test]
    fn namespaced_instancetype_is_looked_up_in_the_vm_namespace() {
        let vm = valid_vm_with(|vm| {
            vm["spec"]["instancetype"] =
                json!({"name": "small", "kind": "VirtualMachineInstancetype"})
        });
        let view = base_cluster_with(|items| {
            items.push(json!({"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineInstancetype", "metadata": {"name": "small", "namespace": "other"}}))
        });
        assert_eq!(
            fired_in(vm, &view),
            vec![(InstancetypeNotFound, "spec.instancetype.name".into())]
        );
    }
}
