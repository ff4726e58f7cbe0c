use serde_json::json;

use super::*;

fn kv(value: Value) -> KubeVirt {
    KubeVirt::from_value(&value).unwrap_or_else(|e| panic!("{e}"))
}

fn config(configuration: Value) -> Option<Configuration> {
    kv(json!({"spec": {"configuration": configuration}}))
        .configuration()
        .cloned()
}

fn q(text: &str) -> ParsedQuantity {
    ParsedQuantity::parse(text).unwrap()
}

#[test]
fn reads_what_the_rules_need() {
    let cr = kv(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt", "labels": {"x": "y"}},
        "spec": {"configuration": {
            "developerConfiguration": {
                "featureGates": ["CPUManager", "ConfigurableHypervisor"],
                "disabledFeatureGates": ["Snapshot"],
                "memoryOvercommit": 150, "cpuAllocationRatio": 4, "useEmulation": true
            },
            "cpuRequest": "250m",
            "additionalGuestMemoryOverheadRatio": "1.5",
            "evictionStrategy": "LiveMigrate",
            "hypervisors": [{"name": "hyperv-direct"}],
            "permittedHostDevices": {
                "pciHostDevices": [{"pciVendorSelector": "10DE:1EB8", "resourceName": "nvidia.com/TU104GL"}],
                "mediatedDevices": [{"mdevNameSelector": "GRID T4-1Q", "resourceName": "nvidia.com/GRID_T4-1Q"}]
            },
            "network": {"binding": {
                "sidecar": {"sidecarImage": "x", "computeResourceOverhead": {"requests": {"memory": "500Mi"}}},
                "migrating": {"migration": {}}
            }}
        }},
        "status": {
            "observedKubeVirtVersion": "v1.8.2",
            "defaultArchitecture": "arm64",
            "phase": "Deployed",
            "conditions": [
                {"type": "Available", "status": "True", "reason": "AllComponentsReady", "message": "All components are ready."},
                {"type": "Degraded", "status": "False", "reason": "", "message": ""},
                {"type": "Created", "status": "True"}
            ]
        }
    }));
    assert_eq!(
        (cr.name.as_str(), cr.namespace.as_str()),
        ("kubevirt", "kubevirt")
    );
    assert_eq!(cr.version, Some(KubeVirtVersion::release(1, 8, 2)));
    assert_eq!(cr.default_architecture.as_deref(), Some("arm64"));
    let config = cr.configuration().unwrap();
    assert_eq!(config.memory_overcommit, 150);
    assert_eq!(config.cpu_allocation_ratio, 4);
    assert_eq!(config.cpu_request, Some(q("250m")));
    assert!(config.use_emulation);
    assert_eq!(config.overhead_ratio, Some(1.5));
    assert_eq!(config.eviction_strategy, EvictionStrategy::LiveMigrate);
    assert_eq!(config.hypervisor(), Hypervisor::HypervDirect);
    assert_eq!(
        config.hypervisor().device_resource(),
        Some("devices.kubevirt.io/mshv")
    );
    assert_eq!(config.feature_gate("CPUManager"), GateSetting::Enabled);
    assert_eq!(config.feature_gate("Snapshot"), GateSetting::Disabled);
    assert_eq!(config.feature_gate("Other"), GateSetting::Unset);
    let permitted = config.permitted_host_devices.as_ref().unwrap();
    assert!(permitted.permits("nvidia.com/TU104GL") && permitted.permits("nvidia.com/GRID_T4-1Q"));
    assert!(!permitted.permits("intel.com/qat"));
    assert_eq!(
        config.network_bindings["sidecar"],
        NetworkBinding {
            memory_overhead: Some(q("500Mi")),
            migratable: false
        }
    );
    assert!(config.network_bindings["migrating"].migratable);
    let available = cr.conditions.available.as_ref().unwrap();
    assert_eq!(available.status, ConditionStatus::True);
    assert_eq!(available.reason.as_deref(), Some("AllComponentsReady"));
    let degraded = cr.conditions.degraded.as_ref().unwrap();
    assert_eq!(
        (degraded.status, &degraded.reason, &degraded.message),
        (ConditionStatus::False, &None, &None)
    );
    assert_eq!(cr.conditions.progressing, None);
}

#[test]
fn kubevirt_defaults_where_the_cr_is_silent() {
    for configuration in [
        json!(null),
        json!({}),
        json!({"developerConfiguration": null}),
        json!({"developerConfiguration": {"memoryOvercommit": 0, "cpuAllocationRatio": 0}}),
    ] {
        let config = config(configuration.clone()).unwrap();
        assert_eq!(config.memory_overcommit, 100, "{configuration}");
        assert_eq!(config.cpu_allocation_ratio, 10);
        assert_eq!(config.cpu_request, None);
        assert!(!config.use_emulation);
        assert_eq!(config.overhead_ratio, None);
        assert_eq!(config.eviction_strategy, EvictionStrategy::None);
        assert_eq!(config.permitted_host_devices, None);
        assert_eq!(config.hypervisor(), Hypervisor::Kvm);
        assert!(!config.has_auto_cpu_limit_selector());
        assert_eq!(
            config.default_network_interface,
            DefaultNetworkInterface::Bridge
        );
    }
    let bare = kv(json!({}));
    assert_eq!((&bare.version, &bare.default_architecture), (&None, &None));
    assert!(bare.configuration().is_some());
}

#[test]
fn permitted_host_devices_present_but_empty_differs_from_absent() {
    let empty = config(json!({"permittedHostDevices": {}})).unwrap();
    let permitted = empty.permitted_host_devices.unwrap();
    assert_eq!(permitted, PermittedHostDevices::default());
    assert!(!permitted.permits("nvidia.com/TU104GL"));
    assert_eq!(config(json!({})).unwrap().permitted_host_devices, None);
    let usb =
        config(json!({"permittedHostDevices": {"usb": [{"resourceName": "kubevirt.io/storage"}]}}));
    assert!(
        usb.unwrap()
            .permitted_host_devices
            .unwrap()
            .permits("kubevirt.io/storage")
    );
}

#[test]
fn the_default_network_interface_is_read() {
    for (text, expected) in [
        ("", DefaultNetworkInterface::Bridge),
        ("bridge", DefaultNetworkInterface::Bridge),
        ("masquerade", DefaultNetworkInterface::Masquerade),
        ("slirp", DefaultNetworkInterface::Slirp),
    ] {
        let config = config(json!({"network": {"defaultNetworkInterface": text}})).unwrap();
        assert_eq!(config.default_network_interface, expected, "{text:?}");
    }
}

#[test]
fn the_default_cpu_request_is_no_override() {
    for text in ["100m", "0.1"] {
        assert_eq!(
            config(json!({"cpuRequest": text})).unwrap().cpu_request,
            None,
            "{text}"
        );
    }
    assert_eq!(
        config(json!({"cpuRequest": 2})).unwrap().cpu_request,
        Some(q("2"))
    );
}

#[test]
fn a_configuration_kubevirt_refuses_is_unknown() {
    for refused in [
        json!({"developerConfiguration": {"memoryOvercommit": -5}}),
        json!({"developerConfiguration": {"cpuAllocationRatio": -1}}),
        json!({"developerConfiguration": {"lessPVCSpaceToleration": 101}}),
        json!({"imagePullPolicy": "Sometimes"}),
        json!({"network": {"defaultNetworkInterface": "macvtap"}}),
        json!({"cpuRequest": "lots"}),
        json!({"additionalGuestMemoryOverheadRatio": "Inf"}),
        json!({"network": {"binding": {"x": {"computeResourceOverhead": {"requests": {"memory": "big"}}}}}}),
    ] {
        assert_eq!(config(refused.clone()), None, "{refused}");
    }
    // KubeVirt ignores a ratio that is not a number (it logs and adds nothing).
    assert_eq!(
        config(json!({"additionalGuestMemoryOverheadRatio": "x"}))
            .unwrap()
            .overhead_ratio,
        None
    );
}

#[test]
fn wrong_types_name_the_field() {
    let doc =
        json!({"spec": {"configuration": {"developerConfiguration": {"memoryOvercommit": "150"}}}});
    let err = KubeVirt::from_value(&doc).unwrap_err();
    assert_eq!(
        err.path,
        "spec.configuration.developerConfiguration.memoryOvercommit"
    );
    assert!(err.message.contains("invalid type"), "{}", err.message);
    let err = KubeVirt::from_json(&doc.to_string()).unwrap_err();
    assert_eq!(
        err.path,
        "spec.configuration.developerConfiguration.memoryOvercommit"
    );
    let err =
        KubeVirt::from_json(r#"{"status": {"conditions": [{"type": "Available", "status": 1}]}}"#)
            .unwrap_err();
    assert_eq!(err.path, "status.conditions[0].status");
    assert_eq!(KubeVirt::from_json("7").unwrap_err().path, "(document)");
}

#[test]
fn a_version_that_is_no_release_number_is_unknown() {
    for text in ["latest", "sha256:0123", "", "devel"] {
        let cr = kv(json!({"status": {"observedKubeVirtVersion": text}}));
        assert_eq!(cr.version, None, "{text}");
        assert_eq!(cr.cpu_manager_label(), None);
    }
}

#[test]
fn cpu_manager_label_by_release() {
    let label = |version: &str| {
        kv(json!({"status": {"observedKubeVirtVersion": version}})).cpu_manager_label()
    };
    assert_eq!(label("v1.7.4"), Some("cpumanager"));
    assert_eq!(label("v1.8.0"), Some("kubevirt.io/cpumanager"));
    assert_eq!(label("v1.8.0-rc.1"), None);
}

#[test]
fn the_hypervisor_needs_its_gate() {
    let without_gate = config(json!({"hypervisors": [{"name": "hyperv-direct"}]})).unwrap();
    assert_eq!(without_gate.hypervisor(), Hypervisor::Kvm);
    let unknown = config(json!({
        "developerConfiguration": {"featureGates": ["ConfigurableHypervisor"]},
        "hypervisors": [{"name": "firecracker"}]
    }))
    .unwrap();
    assert_eq!(unknown.hypervisor().device_resource(), None);
    let empty = config(json!({
        "developerConfiguration": {"featureGates": ["ConfigurableHypervisor"]},
        "hypervisors": [{}]
    }))
    .unwrap();
    assert_eq!(empty.hypervisor(), Hypervisor::Kvm);
}

#[test]
fn auto_cpu_limit_selector_matches_as_kubernetes_selectors_do() {
    let selecting = config(json!({"autoCPULimitNamespaceLabelSelector": {
        "matchLabels": {"team": "a"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["gold", "silver"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "limits", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"}
        ]
    }}))
    .unwrap();
    assert!(selecting.has_auto_cpu_limit_selector());
    let matches = |pairs: &[(&'static str, &'static str)]| {
        selecting
            .auto_cpu_limit_applies(|key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    };
    let good = [("team", "a"), ("tier", "gold"), ("limits", "")];
    assert!(matches(&good));
    assert!(matches(&[
        ("team", "a"),
        ("tier", "silver"),
        ("limits", "1"),
        ("env", "prod")
    ]));
    assert!(!matches(&[("team", "b"), ("tier", "gold"), ("limits", "")]));
    assert!(!matches(&[
        ("team", "a"),
        ("tier", "bronze"),
        ("limits", "")
    ]));
    assert!(!matches(&[
        ("team", "a"),
        ("tier", "gold"),
        ("limits", ""),
        ("env", "dev")
    ]));
    assert!(!matches(&[("team", "a"), ("tier", "gold")]));
    assert!(!matches(&[
        ("team", "a"),
        ("tier", "gold"),
        ("limits", ""),
        ("legacy", "1")
    ]));

    let everything = config(json!({"autoCPULimitNamespaceLabelSelector": {}})).unwrap();
    assert!(everything.auto_cpu_limit_applies(|_| None));
    let broken = config(json!({"autoCPULimitNamespaceLabelSelector": {
        "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
    }}))
    .unwrap();
    assert!(!broken.auto_cpu_limit_applies(|_| Some("2")));
    assert!(!config(json!({})).unwrap().auto_cpu_limit_applies(|_| None));
}
