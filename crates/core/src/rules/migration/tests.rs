use serde_json::{Value, json};

use crate::rules::RuleId::*;
use crate::rules::testing::*;

/// [`BASE_CLUSTER`] with a KubeVirt CR at `version` and an RWX claim `shared-pvc`.
fn view(version: &str, configuration: Value) -> crate::cluster::ClusterView {
    base_cluster_with(|items| {
        items.push(kubevirt_cr(version, configuration));
        items.push(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "shared-pvc", "namespace": "default"},
            "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteMany"]},
            "status": {"phase": "Bound"}
        }));
        for item in items.iter_mut() {
            if item["metadata"]["name"] == "data-pvc" {
                item["spec"]["accessModes"] = json!(["ReadWriteOnce"]);
            }
        }
    })
}

fn cluster_default(strategy: &str) -> crate::cluster::ClusterView {
    view("v1.6.2", json!({"evictionStrategy": strategy}))
}

/// The valid VM with a data volume on `claim` and `strategy` in its template.
fn vm_on(claim: &str, strategy: Option<&str>) -> Value {
    valid_vm_with(|vm| {
        spec(vm)["domain"]["devices"]["disks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "data", "disk": {}}));
        spec(vm)["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "data", "persistentVolumeClaim": {"claimName": claim}}));
        if let Some(strategy) = strategy {
            spec(vm)["evictionStrategy"] = json!(strategy);
        }
    })
}

const DATA: &str = "spec.template.spec.volumes[2].persistentVolumeClaim.claimName";

#[test]
fn an_rwo_claim_under_live_migrate_blocks_drains() {
    let view = cluster_default("None");
    let broken = vm_on("data-pvc", Some("LiveMigrate"));
    assert_eq!(
        fired_in(broken.clone(), &view),
        vec![(EvictionNotMigratable, DATA.into())]
    );
    let message = &findings_in(broken, &view)[0].message;
    assert_eq!(
        message,
        "claim data-pvc is not ReadWriteMany, so LiveMigrate blocks drains: \
         use RWX storage or LiveMigrateIfPossible"
    );
    assert!(message.chars().count() <= 120);
    // The twins: an RWX claim, or a strategy that does not wait for a migration.
    assert_eq!(
        fired_in(vm_on("shared-pvc", Some("LiveMigrate")), &view),
        vec![]
    );
    for strategy in ["LiveMigrateIfPossible", "None", "External"] {
        assert_eq!(fired_in(vm_on("data-pvc", Some(strategy)), &view), vec![]);
    }
}

#[test]
fn the_cluster_strategy_applies_when_the_vm_sets_none() {
    assert_eq!(
        fired_in(vm_on("data-pvc", None), &cluster_default("LiveMigrate")),
        vec![(EvictionNotMigratable, DATA.into())]
    );
    // The VM's own strategy wins over the cluster's.
    assert_eq!(
        fired_in(
            vm_on("data-pvc", Some("LiveMigrateIfPossible")),
            &cluster_default("LiveMigrate")
        ),
        vec![]
    );
    // KubeVirt's default is None; without a CR the default is unknown.
    assert_eq!(
        fired_in(vm_on("data-pvc", None), &view("v1.6.2", json!({}))),
        vec![]
    );
    let no_cr = base_cluster_with(|items| {
        for item in items.iter_mut() {
            if item["metadata"]["name"] == "data-pvc" {
                item["spec"]["accessModes"] = json!(["ReadWriteOnce"]);
            }
        }
    });
    assert_eq!(
        fired_in(vm_on("data-pvc", Some("LiveMigrate")), &no_cr),
        vec![]
    );
}

#[test]
fn claims_of_unknown_access_modes_are_no_reason() {
    let view = cluster_default("LiveMigrate");
    // A claim the view does not have, and one listed without access modes.
    assert_eq!(
        fired_in(vm_on("other-pvc", None), &view),
        vec![(PvcNotFound, DATA.into())]
    );
    let unlisted = base_cluster_with(|items| {
        items.push(kubevirt_cr(
            "v1.6.2",
            json!({"evictionStrategy": "LiveMigrate"}),
        ));
    });
    assert_eq!(fired_in(vm_on("data-pvc", None), &unlisted), vec![]);
}

#[test]
fn a_datavolume_template_counts_with_its_own_access_modes() {
    let view = cluster_default("LiveMigrate");
    // Only this rule: the base StorageProfile lists ReadWriteOnce alone, so access-mode-unsupported
    // has its own say on the ReadWriteMany template.
    let migration = |vm: Value| -> Vec<(crate::rules::RuleId, String)> {
        fired_in(vm, &view)
            .into_iter()
            .filter(|(rule, _)| *rule == EvictionNotMigratable)
            .collect()
    };
    let with_template = |modes: Value| {
        valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "root-dv"}, "spec": {
                "storage": {"accessModes": modes, "resources": {"requests": {"storage": "10Gi"}}},
                "source": {"blank": {}}}}]);
            spec(vm)["domain"]["devices"]["disks"][0]["bootOrder"] = json!(1);
            spec(vm)["volumes"][0] = json!({"name": "rootdisk", "dataVolume": {"name": "root-dv"}});
        })
    };
    assert_eq!(
        migration(with_template(json!(["ReadWriteOnce"]))),
        vec![(
            EvictionNotMigratable,
            "spec.template.spec.volumes[0].dataVolume.name".into()
        )]
    );
    assert_eq!(migration(with_template(json!(["ReadWriteMany"]))), vec![]);
    // No access modes: the StorageProfile picks them; unknown here.
    assert_eq!(migration(with_template(json!([]))), vec![]);
}

#[test]
fn the_pod_interface_must_migrate() {
    let view = view(
        "v1.6.2",
        json!({"evictionStrategy": "LiveMigrate", "network": {"binding": {
            "plain": {"sidecarImage": "x"}, "migrating": {"sidecarImage": "y", "migration": {}}}}}),
    );
    let interface = |binding: Value, annotated: bool| {
        valid_vm_with(|vm| {
            let mut iface = json!({"name": "default"});
            iface
                .as_object_mut()
                .unwrap()
                .extend(binding.as_object().unwrap().clone());
            spec(vm)["domain"]["devices"]["interfaces"] = json!([iface]);
            if annotated {
                vm["spec"]["template"]["metadata"] = json!({"annotations":
                    {"kubevirt.io/allow-pod-bridge-network-live-migration": ""}});
            }
        })
    };
    let path = "spec.template.spec.domain.devices.interfaces[0]";
    assert_eq!(
        fired_in(interface(json!({"bridge": {}}), false), &view),
        vec![(EvictionNotMigratable, path.into())]
    );
    assert_eq!(
        fired_in(interface(json!({"bridge": {}}), true), &view),
        vec![]
    );
    assert_eq!(
        fired_in(interface(json!({"masquerade": {}}), false), &view),
        vec![]
    );
    assert_eq!(
        fired_in(interface(json!({"passtBinding": {}}), false), &view),
        vec![]
    );
    assert_eq!(
        fired_in(
            interface(json!({"binding": {"name": "plain"}}), false),
            &view
        ),
        vec![(EvictionNotMigratable, path.into())]
    );
    assert_eq!(
        fired_in(
            interface(json!({"binding": {"name": "migrating"}}), false),
            &view
        ),
        vec![]
    );
    // A bridge on a secondary (multus) network does not matter.
    let secondary = valid_vm_with(|vm| {
        spec(vm)["domain"]["devices"]["interfaces"] =
            json!([{"name": "default", "masquerade": {}}, {"name": "storage", "bridge": {}}]);
        spec(vm)["networks"] = json!([{"name": "default", "pod": {}},
            {"name": "storage", "multus": {"networkName": "storage-net"}}]);
    });
    assert_eq!(fired_in(secondary, &view), vec![]);
}

#[test]
fn a_vm_without_interfaces_gets_the_default_one() {
    let bare = |autoattach: Option<bool>| {
        valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]
                .as_object_mut()
                .unwrap()
                .remove("interfaces");
            spec(vm).as_object_mut().unwrap().remove("networks");
            if let Some(value) = autoattach {
                spec(vm)["domain"]["devices"]["autoattachPodInterface"] = json!(value);
            }
        })
    };
    let bridge = view("v1.6.2", json!({"evictionStrategy": "LiveMigrate"}));
    assert_eq!(
        fired_in(bare(None), &bridge),
        vec![(
            EvictionNotMigratable,
            "spec.template.spec.domain.devices.interfaces".into()
        )]
    );
    assert_eq!(fired_in(bare(Some(false)), &bridge), vec![]);
    let masquerade = view(
        "v1.6.2",
        json!({"evictionStrategy": "LiveMigrate", "network": {"defaultNetworkInterface": "masquerade"}}),
    );
    assert_eq!(fired_in(bare(None), &masquerade), vec![]);
}

/// The valid VM with `gpus` (tolerating the GPU node) and `host_devices`.
fn with_devices(gpus: usize, host_devices: bool) -> Value {
    valid_vm_with(|vm| {
        spec(vm)["tolerations"] =
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
        spec(vm)["domain"]["devices"]["gpus"] = (0..gpus)
            .map(|i| json!({"name": format!("gpu{i}"), "deviceName": "nvidia.com/GA102GL_A10"}))
            .collect();
        if host_devices {
            spec(vm)["domain"]["devices"]["hostDevices"] =
                json!([{"name": "nic", "deviceName": "nvidia.com/GA102GL_A10"}]);
        }
    })
}

#[test]
fn host_devices_and_gpus_by_release() {
    let gpus = "spec.template.spec.domain.devices.gpus";
    let at = |version: &str, configuration: Value| {
        let mut configuration = configuration;
        configuration["evictionStrategy"] = json!("LiveMigrate");
        view(version, configuration)
    };
    let v16 = at("v1.6.2", json!({}));
    assert_eq!(
        fired_in(with_devices(0, true), &v16),
        vec![(
            EvictionNotMigratable,
            "spec.template.spec.domain.devices.hostDevices".into()
        )]
    );
    assert_eq!(
        fired_in(with_devices(2, false), &v16),
        vec![(EvictionNotMigratable, gpus.into())]
    );
    // One GPU: never before 1.9.
    assert_eq!(
        fired_in(with_devices(1, false), &v16),
        vec![(EvictionNotMigratable, gpus.into())]
    );
    // 1.9: a permitted mediated device with the gate migrates.
    let mdev = json!({"mediatedDevices": [{"mdevNameSelector": "A10-4Q", "resourceName": "nvidia.com/GA102GL_A10"}]});
    let v19 = |gates: Value| {
        at(
            "v1.9.0",
            json!({"developerConfiguration": {"featureGates": gates}, "permittedHostDevices": mdev}),
        )
    };
    assert_eq!(
        fired_in(with_devices(1, false), &v19(json!(["VGPULiveMigration"]))),
        vec![]
    );
    assert_eq!(
        fired_in(with_devices(1, false), &v19(json!([]))),
        vec![(EvictionNotMigratable, gpus.into())]
    );
    // Still more than one GPU cannot.
    assert_eq!(
        fired_in(with_devices(2, false), &v19(json!(["VGPULiveMigration"]))),
        vec![(EvictionNotMigratable, gpus.into())]
    );
    // A version that straddles 1.9, or one not studied: one GPU is no certain reason.
    for version in ["v1.9.0-rc.1", "v1.10.0", "latest"] {
        assert_eq!(
            fired_in(with_devices(1, false), &at(version, json!({}))),
            vec![],
            "{version}"
        );
    }
}

#[test]
fn sev_and_host_disks() {
    let view = cluster_default("LiveMigrate");
    let sev = valid_vm_with(|vm| spec(vm)["domain"]["launchSecurity"] = json!({"sev": {}}));
    assert_eq!(
        fired_in(sev, &view),
        vec![(
            EvictionNotMigratable,
            "spec.template.spec.domain.launchSecurity".into()
        )]
    );
    let host_disk = |shared: bool| {
        valid_vm_with(|vm| {
            spec(vm)["volumes"].as_array_mut().unwrap().push(json!({"name": "scratch",
                "hostDisk": {"path": "/data/disk.img", "type": "DiskOrCreate", "capacity": "1Gi", "shared": shared}}));
        })
    };
    assert_eq!(
        fired_in(host_disk(false), &view),
        vec![(
            EvictionNotMigratable,
            "spec.template.spec.volumes[2].hostDisk".into()
        )]
    );
    assert_eq!(fired_in(host_disk(true), &view), vec![]);
}
