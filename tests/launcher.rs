//! The launcher's request on KubeVirt's own examples (found through
//! `VIRT_PREFLIGHT_KUBEVIRT_DIR`, read in place), and no panic on any input: arbitrary KubeVirt
//! CRs and VMs with extreme values.
//!
//! Figures are worked out by hand from KubeVirt v1.8's code (Mi = 1,048,576 bytes).

mod support;
use support::shared;

use std::collections::BTreeMap;

use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{TestRng, TestRunner};
use serde_json::{Value, json};
use virt_preflight::cluster::kubevirt::KubeVirt;
use virt_preflight::launcher::{
    self, InstancetypeSpec, LauncherInput, LauncherRequest, Limit, NamespaceFacts,
};
use virt_preflight::manifest::{self, ReadOptions};
use virt_preflight::model::{Labels, ParsedQuantity, VirtualMachine};

const MI: u128 = 1 << 20;

fn kubevirt_v18() -> KubeVirt {
    KubeVirt::from_value(&json!({
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": {"developerConfiguration": {"featureGates": []}}},
        "status": {"observedKubeVirtVersion": "v1.8.0", "defaultArchitecture": "amd64"}
    }))
    .unwrap()
}

fn namespace(labels: &Labels) -> NamespaceFacts<'_> {
    NamespaceFacts {
        quota_limits_cpu: Some(false),
        quota_limits_memory: Some(false),
        labels: Some(labels),
    }
}

fn bytes(value: u128) -> ParsedQuantity {
    ParsedQuantity::from_scaled(value, 0).unwrap()
}

/// Every VirtualMachine of the examples, and every VirtualMachineInstance as the template of a
/// VM (by name); plus the instancetypes, by name.
struct Examples {
    vms: Vec<(String, VirtualMachine)>,
    instancetypes: BTreeMap<String, InstancetypeSpec>,
}

/// `None` when the examples are not available (the test then skips, saying why).
fn examples() -> Option<Examples> {
    let dir = shared::kubevirt_examples()?;
    let mut vms = Vec::new();
    let mut instancetypes = BTreeMap::new();
    for parsed in manifest::read_path(&dir, ReadOptions::default()) {
        let document = parsed.unwrap_or_else(|err| panic!("example did not parse: {err}"));
        let name = document.value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let vm = match document.kind() {
            Some("VirtualMachine") => document.value.clone(),
            Some("VirtualMachineInstance") => json!({"spec": {"template": {
                "metadata": document.value["metadata"], "spec": document.value["spec"]}}}),
            Some("VirtualMachineInstancetype" | "VirtualMachineClusterInstancetype") => {
                let spec = InstancetypeSpec::from_object(&document.value)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                instancetypes.insert(name, spec);
                continue;
            }
            _ => continue,
        };
        let vm = VirtualMachine::from_value(&vm).unwrap_or_else(|e| panic!("{name}: {e}"));
        vms.push((name, vm));
    }
    Some(Examples { vms, instancetypes })
}

fn request_for(
    vm: &VirtualMachine,
    instancetypes: &BTreeMap<String, InstancetypeSpec>,
    kubevirt: &KubeVirt,
    labels: &Labels,
) -> Option<LauncherRequest> {
    let instancetype = vm
        .spec
        .instancetype
        .as_ref()
        .and_then(|m| m.name.as_deref())
        .and_then(|name| instancetypes.get(name));
    launcher::request(&LauncherInput {
        vm,
        kubevirt: Some(kubevirt),
        instancetype,
        namespace: namespace(labels),
    })
}

#[test]
fn every_example_gets_an_exact_request_or_is_an_instancetype_conflict() {
    let Some(Examples { vms, instancetypes }) = examples() else {
        return;
    };
    assert!(vms.len() >= 30, "only {} VMs and VMIs read", vms.len());
    assert!(instancetypes.contains_key("clarge") && instancetypes.contains_key("csmall"));
    let kubevirt = kubevirt_v18();
    let labels = Labels::new();
    let mut judged = 0;
    for (name, vm) in &vms {
        let request = request_for(vm, &instancetypes, &kubevirt, &labels);
        if vm.spec.instancetype.is_some() {
            // KubeVirt's generator writes `memory.guest: 128Mi` into every template, which
            // conflicts with the instancetype: KubeVirt's VM admission rejects it, so there is
            // no launcher to size.
            assert!(request.is_none(), "{name}: an instancetype conflict");
            continue;
        }
        let request = request.unwrap_or_else(|| panic!("{name}: not judged"));
        let memory = request.memory.request.exact();
        let overhead = request.memory_overhead.exact();
        assert!(
            memory.is_some() && overhead.is_some(),
            "{name}: {request:?}"
        );
        assert!(memory >= overhead, "{name}");
        assert!(request.cpu.request.exact().is_some(), "{name}");
        judged += 1;
    }
    assert!(judged >= 25, "only {judged} examples judged");
}

#[test]
fn example_figures() {
    let Some(Examples { vms, instancetypes }) = examples() else {
        return;
    };
    let kubevirt = kubevirt_v18();
    let labels = Labels::new();
    let find = |name: &str| {
        let (_, vm) = vms
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not among the examples"));
        request_for(vm, &instancetypes, &kubevirt, &labels).unwrap()
    };

    // vmi-gpu: guest 1024M (1,024,000,000 B), 1 vCPU, one GPU: overhead 268Mi + 1Gi (VFIO).
    let gpu = find("vmi-gpu");
    assert_eq!(
        gpu.memory.request.exact(),
        Some(bytes(1_024_000_000 + 1292 * MI))
    );
    assert_eq!(gpu.devices.len(), 1);
    assert_eq!(gpu.devices[0].resource, "nvidia.com/GP102GL_Tesla_P40");
    assert_eq!(gpu.cpu.request.exact(), ParsedQuantity::parse("100m").ok());

    // vmi-fedora-isolated: 1 dedicated vCPU + the isolated emulator thread = 2 CPUs; memory
    // 1024M + (220 + 8 + 8 + 32 + 100)Mi, limit = request.
    let isolated = find("vmi-fedora");
    assert_eq!(
        isolated.cpu.request.exact(),
        ParsedQuantity::parse("2").ok()
    );
    let memory = bytes(1_024_000_000 + 368 * MI);
    assert_eq!(isolated.memory.request.exact(), Some(memory));
    assert!(matches!(isolated.memory.limit, Limit::Set(b) if b.exact() == Some(memory)));
}

#[test]
fn an_example_instancetype_sizes_its_vm_when_the_template_leaves_it_alone() {
    let Some(Examples { instancetypes, .. }) = examples() else {
        return;
    };
    let vm = VirtualMachine::from_value(&json!({"spec": {
        "instancetype": {"kind": "VirtualMachineInstancetype", "name": "clarge"},
        "template": {"spec": {"domain": {"devices": {}}}}
    }}))
    .unwrap();
    let request = request_for(&vm, &instancetypes, &kubevirt_v18(), &Labels::new()).unwrap();
    // clarge: 4 vCPUs, 2Gi. 4 ÷ 10 = 400m; 2Gi + (220 + 4×8 + 8 + 32)Mi = 2340Mi.
    assert_eq!(
        request.cpu.request.exact(),
        ParsedQuantity::parse("400m").ok()
    );
    assert_eq!(request.memory.request.exact(), Some(bytes(2340 * MI)));
}

// ---------------------------------------------------------------------------------------------
// No panic

fn arb_quantity() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!("0"),
        json!("1n"),
        json!("1.5"),
        json!("100m"),
        json!("4Gi"),
        json!("1024M"),
        json!("-1"),
        json!("9223372036854775807"),
        json!("9223372036854775808"),
        json!("1e38"),
        json!("1e-30"),
        json!("8Ei"),
        json!("junk"),
        json!(1),
    ])
}

fn arb_count() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(0),
        json!(1),
        json!(2),
        json!(65_536),
        json!(u32::MAX),
    ])
}

/// Well-typed VMs that touch every input of the computation, with extreme values.
fn arb_vm() -> impl Strategy<Value = Value> {
    (
        (arb_quantity(), arb_quantity(), arb_quantity(), arb_quantity(), arb_quantity()),
        (arb_count(), arb_count(), arb_count(), arb_count()),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (guest, request, limit, cpu_request, cpu_limit),
                (cores, sockets, threads, pool),
                (dedicated, isolate, hugepages, instancetype, preference),
                (gpu, ogo, arm, passt),
            )| {
                let mut spec = json!({
                    "template": {
                        "metadata": {"annotations": {"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity": ""}},
                        "spec": {
                            "architecture": if arm { "arm64" } else { "amd64" },
                            "livenessProbe": {"exec": {}},
                            "domain": {
                                "cpu": {"cores": cores, "sockets": sockets, "threads": threads,
                                        "dedicatedCpuPlacement": dedicated, "isolateEmulatorThread": isolate},
                                "ioThreadsPolicy": "supplementalPool",
                                "ioThreads": {"supplementalPoolThreadCount": pool},
                                "memory": {"guest": guest, "reservedOverhead": {"addedOverhead": request}},
                                "resources": {
                                    "overcommitGuestOverhead": ogo,
                                    "requests": {"memory": request, "cpu": cpu_request, "ephemeral-storage": limit},
                                    "limits": {"memory": limit, "cpu": cpu_limit, "ephemeral-storage": request}
                                },
                                "devices": {
                                    "tpm": {"enabled": false},
                                    "gpus": if gpu { json!([{"name": "g", "deviceName": "x/y"}]) } else { json!([]) },
                                    "interfaces": [{"name": "a", "passt": {}, "sriov": if passt { json!({}) } else { Value::Null }},
                                                   {"name": "b", "binding": {"name": "plugin"}, "passtBinding": {}}]
                                }
                            },
                            "volumes": [{"name": "m", "downwardMetrics": {}}]
                        }
                    }
                });
                if hugepages {
                    let size = guest.as_str().unwrap_or("2Mi");
                    spec["template"]["spec"]["domain"]["memory"]["hugepages"] = json!({"pageSize": size});
                }
                if instancetype {
                    spec["instancetype"] = json!({"name": "it"});
                }
                if preference {
                    spec["preference"] = json!({"name": "p"});
                }
                json!({"spec": spec})
            },
        )
}

fn arb_kubevirt() -> impl Strategy<Value = Value> {
    let version = prop::sample::select(vec![
        json!("v1.0.0"),
        json!("v1.4.1"),
        json!("v1.5.0-rc.1"),
        json!("v1.8.2"),
        json!("v9.9.9"),
        json!("latest"),
        Value::Null,
    ]);
    let integer = prop::sample::select(vec![
        json!(0),
        json!(1),
        json!(150),
        json!(-1),
        json!(i64::MAX),
    ]);
    let ratio = prop::sample::select(vec![
        json!("1.5"),
        json!("0.5"),
        json!("1e300"),
        json!("-1e300"),
        json!("NaN"),
        json!("x"),
        Value::Null,
    ]);
    (version, integer.clone(), integer, ratio, arb_quantity(), arb_quantity()).prop_map(
        |(version, overcommit, allocation, ratio, cpu_request, binding)| {
            json!({
                "spec": {"configuration": {
                    "developerConfiguration": {"memoryOvercommit": overcommit, "cpuAllocationRatio": allocation,
                        "featureGates": ["AutoResourceLimitsGate", "ConfigurableHypervisor"]},
                    "cpuRequest": cpu_request,
                    "additionalGuestMemoryOverheadRatio": ratio,
                    "autoCPULimitNamespaceLabelSelector": {"matchLabels": {"a": "b"}},
                    "network": {"binding": {"plugin": {"computeResourceOverhead": {"requests": {"memory": binding}}}}},
                    "hypervisors": [{"name": "hyperv-direct"}]
                }},
                "status": {"observedKubeVirtVersion": version}
            })
        },
    )
}

/// Extreme values everywhere: a request or `None`, never a panic, and at_least ≤ at_most.
/// Counts the inputs that reach the arithmetic, so that it cannot pass on `None` alone.
#[test]
fn no_input_makes_the_launcher_panic() {
    let inputs = (
        arb_vm(),
        prop::option::of(arb_kubevirt()),
        prop::option::of(any::<bool>()),
        any::<bool>(),
        prop::sample::select(vec!["1.5", "0", "Inf", "NaN", "junk", "1e308"]),
        prop::option::of((
            arb_count(),
            arb_quantity(),
            prop::sample::select(vec![0i64, 10, 100, 200, -5]),
        )),
    );
    // A fixed seed: the count of inputs the launcher computes (asserted below) must not depend
    // on the draw.
    let config = ProptestConfig {
        cases: 600,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let computed = Cell::new(0);
    let result = runner.run(
        &inputs,
        |(vm, kubevirt, quota, labels_known, ratio, instancetype)| {
            let vm = VirtualMachine::from_value(&vm).expect("the generator writes well-typed VMs");
            let kubevirt = kubevirt.map(|cr| KubeVirt::from_value(&cr).expect("well-typed CR"));
            let labels: Labels = [
                ("a".into(), "b".into()),
                (launcher::MEMORY_LIMITS_RATIO_LABEL.into(), ratio.into()),
            ]
            .into_iter()
            .collect();
            let instancetype = instancetype.map(|(cpus, memory, percent)| {
                InstancetypeSpec::from_object(&json!({"spec": {"cpu": {"guest": cpus},
                    "memory": {"guest": memory, "overcommitPercent": percent,
                               "hugepages": {"pageSize": "2Mi"}},
                    "gpus": [{"name": "g", "deviceName": "x/y"}]}}))
                .expect("well-typed instancetype")
            });
            let request = launcher::request(&LauncherInput {
                vm: &vm,
                kubevirt: kubevirt.as_ref(),
                instancetype: instancetype.as_ref(),
                namespace: NamespaceFacts {
                    quota_limits_cpu: quota,
                    quota_limits_memory: quota,
                    labels: labels_known.then_some(&labels),
                },
            });
            if let Some(request) = request {
                computed.set(computed.get() + 1);
                for bound in [
                    request.cpu.request,
                    request.memory.request,
                    request.memory_overhead,
                ] {
                    prop_assert!(
                        bound.at_most.is_none_or(|most| bound.at_least <= most),
                        "{:?}",
                        bound
                    );
                }
            }
            Ok(())
        },
    );
    if let Err(err) = result {
        panic!("{err}");
    }
    assert!(
        computed.get() >= 20,
        "only {} inputs computed",
        computed.get()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any JSON in the configuration: a KubeVirt or an error with a path, never a panic.
    #[test]
    fn no_configuration_makes_the_kubevirt_cr_panic(value in any_json()) {
        let cr = json!({"spec": {"configuration": value.clone()}, "status": {"conditions": value}});
        if let Err(err) = KubeVirt::from_value(&cr) {
            prop_assert!(!err.path.is_empty());
        }
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9.-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let keys = prop::sample::select(vec![
            "developerConfiguration",
            "memoryOvercommit",
            "featureGates",
            "permittedHostDevices",
            "pciHostDevices",
            "resourceName",
            "hypervisors",
            "name",
            "network",
            "binding",
            "type",
            "status",
            "cpuRequest",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(keys, inner, 0..4).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}
