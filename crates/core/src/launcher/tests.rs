//! Table tests against figures worked out by hand from KubeVirt's code (the arithmetic is in
//! the comments; Mi = 1,048,576 bytes, Gi = 1,073,741,824).
//!
//! Page tables: floor(ceil(R / 1000) × 1000 / 512) bytes: R = 2Gi → 2,147,484,000 / 512 =
//! 4,194,304 (4Mi); R = 4Gi → 4,294,968,000 / 512 = 8,388,609.
//! Fixed part for 1 vCPU with graphics: v1.0–1.4 210 + 8 + 8 + 16 = 242Mi; v1.5 220 + 8 + 8 + 16
//! = 252Mi; v1.6+ 220 + 8 + 8 + 32 = 268Mi.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde_json::{Value, json};

use super::*;
use crate::model::VirtualMachine;

const MI: u128 = 1 << 20;
const GI: u128 = 1 << 30;

fn vm(template_spec: Value) -> VirtualMachine {
    vm_with(json!({}), template_spec)
}

/// A VM whose `spec` has `extra` (instancetype, preference) besides the template.
fn vm_with(extra: Value, template_spec: Value) -> VirtualMachine {
    let mut spec = json!({"template": {"spec": template_spec}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    VirtualMachine::from_value(&json!({"spec": spec})).unwrap()
}

fn guest(memory: &str, cores: u32) -> Value {
    json!({"domain": {"cpu": {"cores": cores}, "memory": {"guest": memory}}})
}

/// A KubeVirt CR at `version` (None: no observed version) on amd64.
fn kubevirt(version: Option<&str>, configuration: Value) -> KubeVirt {
    let mut status = json!({"defaultArchitecture": "amd64"});
    if let Some(version) = version {
        status["observedKubeVirtVersion"] = json!(version);
    }
    KubeVirt::from_value(&json!({"spec": {"configuration": configuration}, "status": status}))
        .unwrap()
}

fn at(version: &str) -> KubeVirt {
    kubevirt(Some(version), json!({}))
}

/// No quota with limits, labels known and empty.
fn known_namespace() -> NamespaceFacts<'static> {
    static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    NamespaceFacts {
        quota_limits_cpu: Some(false),
        quota_limits_memory: Some(false),
        labels: Some(EMPTY.get_or_init(BTreeMap::new)),
    }
}

fn launcher(vm: &VirtualMachine, kubevirt: Option<&KubeVirt>) -> LauncherRequest {
    launcher_in(vm, kubevirt, known_namespace())
}

fn launcher_in(
    vm: &VirtualMachine,
    kubevirt: Option<&KubeVirt>,
    namespace: NamespaceFacts<'_>,
) -> LauncherRequest {
    request(&LauncherInput {
        vm,
        kubevirt,
        instancetype: None,
        namespace,
    })
    .expect("the VM can be judged")
}

fn bytes(value: u128) -> ParsedQuantity {
    ParsedQuantity::from_scaled(value, 0).unwrap()
}

fn cores(text: &str) -> ParsedQuantity {
    ParsedQuantity::parse(text).unwrap()
}

fn exactly(value: ParsedQuantity) -> Bound {
    Bound {
        at_least: value,
        at_most: Some(value),
    }
}

fn memory(request: &LauncherRequest) -> ParsedQuantity {
    request
        .memory
        .request
        .exact()
        .expect("an exact memory request")
}

#[test]
fn one_vcpu_2gi_guest_by_release() {
    let vm = vm(guest("2Gi", 1));
    // v1.4: 2Gi + 4Mi page tables + 242Mi = 2294Mi (2,405,433,344 B).
    let v14 = launcher(&vm, Some(&at("v1.4.0")));
    assert_eq!(memory(&v14), bytes(2294 * MI));
    assert_eq!(v14.memory_overhead, exactly(bytes(246 * MI)));
    // v1.5: 2Gi + 4Mi + 252Mi.
    assert_eq!(
        memory(&launcher(&vm, Some(&at("v1.5.3")))),
        bytes(2304 * MI)
    );
    // v1.6: no page tables for a guest-only VM (what v1.6.6's real launcher pods ask for:
    // tests/differential.rs): 2Gi + 268Mi = 2316Mi.
    assert_eq!(
        memory(&launcher(&vm, Some(&at("v1.6.2")))),
        bytes(2316 * MI)
    );
    // v1.8: no page tables either (the VMI carries no request since v1.7): 2316Mi.
    let v18 = launcher(&vm, Some(&at("v1.8.0")));
    assert_eq!(memory(&v18), bytes(2316 * MI));
    // CPU: 1 vCPU ÷ cpuAllocationRatio 10 = 100m, in every release; no limit.
    for request in [&v14, &v18] {
        assert_eq!(request.cpu.request, exactly(cores("100m")));
        assert_eq!(request.cpu.limit, Limit::Absent);
        assert_eq!(request.memory.limit, Limit::Absent);
        assert_eq!(request.unknowns, Unknowns::default());
    }
    // ephemeral-storage: 50M on top of nothing.
    assert_eq!(v18.ephemeral_storage.request, exactly(bytes(50_000_000)));
}

#[test]
fn an_unknown_version_spans_every_release() {
    let vm = vm(guest("2Gi", 1));
    let request = launcher(&vm, Some(&kubevirt(None, json!({}))));
    // Smallest: v1.0–1.4 (2294Mi); largest: v1.6 and later (2316Mi).
    assert_eq!(
        request.memory.request,
        Bound {
            at_least: bytes(2294 * MI),
            at_most: Some(bytes(2316 * MI)),
        }
    );
    assert!(request.unknowns.version && !request.unknowns.configuration);
    assert_eq!(request.memory.request.exact(), None);
    // A release candidate of 1.8 may carry 1.7's or 1.8's arithmetic (the same here).
    let rc = launcher(&vm, Some(&at("v1.8.0-rc.1")));
    assert_eq!(memory(&rc), bytes(2316 * MI));
    assert!(rc.unknowns.version);
}

#[test]
fn a_gpu_adds_a_gibibyte_and_its_device() {
    let vm = vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
        "devices": {"gpus": [{"name": "g1", "deviceName": "nvidia.com/GA102"},
                             {"name": "g2", "deviceName": "nvidia.com/GA102"},
                             {"name": "dra", "claimRequest": {"claimName": "c", "requestName": "r"}}]}}}),
    );
    // v1.8: 2Gi + 268Mi + 1Gi (VFIO) = 3340Mi; two device-plugin GPUs, the DRA one is a claim.
    let request = launcher(&vm, Some(&at("v1.8.0")));
    assert_eq!(memory(&request), bytes(3340 * MI));
    assert_eq!(
        request.devices,
        vec![DeviceRequest {
            resource: "nvidia.com/GA102".into(),
            count: 2
        }]
    );
    // An SR-IOV interface is VFIO too.
    let sriov = self::vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
        "devices": {"interfaces": [{"name": "n", "sriov": {}}]}}}),
    );
    assert_eq!(
        memory(&launcher(&sriov, Some(&at("v1.8.0")))),
        bytes(3340 * MI)
    );
}

#[test]
fn dedicated_cpus() {
    let vm = vm(
        json!({"domain": {"cpu": {"cores": 2, "dedicatedCpuPlacement": true},
        "memory": {"guest": "4Gi"}}}),
    );
    // v1.8: 4Gi + (220 + 2×8 + 8 + 32 + 100)Mi = 4Gi + 376Mi; limit = request; 2 whole CPUs.
    let v18 = launcher(&vm, Some(&at("v1.8.0")));
    assert_eq!(memory(&v18), bytes(4472 * MI));
    assert_eq!(v18.memory.limit, Limit::Set(exactly(bytes(4472 * MI))));
    assert_eq!(v18.cpu.request, exactly(cores("2")));
    assert_eq!(v18.cpu.limit, Limit::Set(exactly(cores("2"))));
    // v1.4: 4Gi + 8,388,609 (page tables) + (210 + 16 + 8 + 16 + 100)Mi = 4,670,357,505 B; the
    // limit of 2 CPUs becomes the request.
    let v14 = launcher(&vm, Some(&at("v1.4.0")));
    assert_eq!(memory(&v14), bytes(4_670_357_505));
    assert_eq!(v14.cpu.request, exactly(cores("2")));
    assert_eq!(v14.cpu.limit, Limit::Set(exactly(cores("2"))));
    // v1.0 had no 100Mi: 4Gi + 8,388,609 + 250Mi.
    assert_eq!(
        memory(&launcher(&vm, Some(&at("v1.0.1")))),
        bytes(4 * GI + 8_388_609 + 250 * MI)
    );
}

#[test]
fn an_isolated_emulator_thread_takes_one_or_two_cpus() {
    let spec = |annotated: bool| {
        let annotations = if annotated {
            json!({"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity": ""})
        } else {
            json!({})
        };
        let doc = json!({"spec": {"template": {"metadata": {"annotations": annotations},
            "spec": {"domain": {"cpu": {"cores": 2, "dedicatedCpuPlacement": true,
                "isolateEmulatorThread": true}, "memory": {"guest": "1Gi"}}}}}});
        VirtualMachine::from_value(&doc).unwrap()
    };
    let cpus = |vm: &VirtualMachine, version: &str| launcher(vm, Some(&at(version))).cpu.request;
    // 2 vCPUs + 1; with the annotation and an even count, + 2 (since v1.2).
    assert_eq!(cpus(&spec(false), "v1.8.0"), exactly(cores("3")));
    assert_eq!(cpus(&spec(true), "v1.8.0"), exactly(cores("4")));
    assert_eq!(cpus(&spec(true), "v1.4.0"), exactly(cores("4")));
    assert_eq!(cpus(&spec(true), "v1.1.0"), exactly(cores("3")));
}

#[test]
fn io_thread_cpus_count_since_1_6() {
    let vm = vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "1Gi"},
        "ioThreadsPolicy": "supplementalPool", "ioThreads": {"supplementalPoolThreadCount": 2}}}),
    );
    // (1 vCPU + 2 pool threads) ÷ 10 = 300m since v1.6; 1 ÷ 10 before.
    assert_eq!(
        launcher(&vm, Some(&at("v1.6.0"))).cpu.request,
        exactly(cores("300m"))
    );
    assert_eq!(
        launcher(&vm, Some(&at("v1.5.3"))).cpu.request,
        exactly(cores("100m"))
    );
}

#[test]
fn hugepages_move_the_guest_out_of_memory() {
    let vm = vm(json!({"domain": {"cpu": {"cores": 1},
        "memory": {"guest": "4Gi", "hugepages": {"pageSize": "1Gi"}}}}));
    // v1.8: hugepages-1Gi = 4Gi; memory = the overhead alone, 268Mi.
    let v18 = launcher(&vm, Some(&at("v1.8.0")));
    assert_eq!(memory(&v18), bytes(268 * MI));
    let pages = v18.hugepages.as_ref().unwrap();
    assert_eq!(pages.resource, "hugepages-1Gi");
    assert_eq!(pages.amount, exactly(bytes(4 * GI)));
    // v1.4: page tables from 4Gi: 8,388,609 + 242Mi = 262,144,001 B.
    assert_eq!(
        memory(&launcher(&vm, Some(&at("v1.4.0")))),
        bytes(262_144_001)
    );
    // A request above the guest stays in memory: 5Gi requested, 4Gi guest → 1Gi + overhead
    // (v1.8, page tables from the 5Gi request: ceil(5,368,709,120 / 1000) × 1000 / 512 =
    // 10,485,761).
    let larger = self::vm(json!({"domain": {"cpu": {"cores": 1},
        "resources": {"requests": {"memory": "5Gi"}},
        "memory": {"guest": "4Gi", "hugepages": {"pageSize": "2Mi"}}}}));
    let request = launcher(&larger, Some(&at("v1.8.0")));
    assert_eq!(memory(&request), bytes(GI + 10_485_761 + 268 * MI));
    assert_eq!(request.hugepages.unwrap().amount, exactly(bytes(4 * GI)));
}

#[test]
fn overcommit_guest_overhead_leaves_the_overhead_out_of_the_request() {
    let vm = vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
        "resources": {"overcommitGuestOverhead": true,
            "requests": {"memory": "2Gi"}, "limits": {"memory": "3Gi"}}}}),
    );
    // v1.8: request 2Gi (no overhead); the limit keeps it: 3Gi + 4Mi (page tables of the
    // explicit 2Gi request) + 268Mi = 3344Mi.
    let request = launcher(&vm, Some(&at("v1.8.0")));
    assert_eq!(memory(&request), bytes(2 * GI));
    assert_eq!(request.memory.limit, Limit::Set(exactly(bytes(3344 * MI))));
    assert_eq!(request.memory_overhead, exactly(bytes(272 * MI)));
}

#[test]
fn memory_overcommit_scales_the_guest() {
    let vm = vm(guest("3Gi", 1));
    let overcommit = |version| {
        kubevirt(
            Some(version),
            json!({"developerConfiguration": {"memoryOvercommit": 150}}),
        )
    };
    // 3Gi × 100 ÷ 150 = 2Gi; then as a 2Gi guest: v1.8 2316Mi, v1.4 2294Mi.
    assert_eq!(
        memory(&launcher(&vm, Some(&overcommit("v1.8.0")))),
        bytes(2316 * MI)
    );
    assert_eq!(
        memory(&launcher(&vm, Some(&overcommit("v1.4.0")))),
        bytes(2294 * MI)
    );
    // A written request is not scaled: 3Gi + 6,291,457 (page tables) + 268Mi.
    let requested = self::vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "3Gi"},
        "resources": {"requests": {"memory": "3Gi"}}}}),
    );
    assert_eq!(
        memory(&launcher(&requested, Some(&overcommit("v1.8.0")))),
        bytes(3 * GI + 6_291_457 + 268 * MI)
    );
}

#[test]
fn request_limit_or_guest() {
    let requests = vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
        "resources": {"requests": {"memory": "2Gi"}}}}),
    );
    let limits = vm(json!({"domain": {"cpu": {"cores": 1},
        "resources": {"limits": {"memory": "2Gi"}}}}));
    let only_guest = vm(guest("2Gi", 1));
    // v1.8: a written request has page tables (4Mi): 2320Mi; a limit or a guest alone has
    // none: 2316Mi; the limit gets the overhead too.
    let v18 = at("v1.8.0");
    assert_eq!(memory(&launcher(&requests, Some(&v18))), bytes(2320 * MI));
    let limited = launcher(&limits, Some(&v18));
    assert_eq!(memory(&limited), bytes(2316 * MI));
    assert_eq!(limited.memory.limit, Limit::Set(exactly(bytes(2316 * MI))));
    assert_eq!(memory(&launcher(&only_guest, Some(&v18))), bytes(2316 * MI));
    // v1.4 sized page tables from the defaulted request in all three cases: 2294Mi.
    let v14 = at("v1.4.0");
    for vm in [&requests, &limits, &only_guest] {
        assert_eq!(memory(&launcher(vm, Some(&v14))), bytes(2294 * MI));
    }
}

#[test]
fn cpu_request_from_the_kubevirt_cr() {
    let with = |cpu_request: &str| kubevirt(Some("v1.8.0"), json!({"cpuRequest": cpu_request}));
    // 4 vCPUs: the CR's 500m replaces 4 ÷ 10; the default 100m does not (400m).
    let four = vm(guest("2Gi", 4));
    assert_eq!(
        launcher(&four, Some(&with("500m"))).cpu.request,
        exactly(cores("500m"))
    );
    assert_eq!(
        launcher(&four, Some(&with("100m"))).cpu.request,
        exactly(cores("400m"))
    );
    // Without a topology the CR's request also sets the vCPUs (sockets = 2): 2Gi + (220 + 2×8
    // + 8 + 32)Mi.
    let bare = vm(json!({"domain": {"memory": {"guest": "2Gi"}}}));
    let request = launcher(&bare, Some(&with("2")));
    assert_eq!(request.cpu.request, exactly(cores("2")));
    assert_eq!(memory(&request), bytes(2 * GI + 276 * MI));
    // A written CPU request wins; a limit alone becomes the request.
    let limited = vm(json!({"domain": {"memory": {"guest": "2Gi"},
        "resources": {"limits": {"cpu": "1500m"}}}}));
    let request = launcher(&limited, Some(&with("500m")));
    assert_eq!(request.cpu.request, exactly(cores("1.5")));
    assert_eq!(request.cpu.limit, Limit::Set(exactly(cores("1.5"))));
}

#[test]
fn instancetype_figures_when_given() {
    let vm = vm_with(
        json!({"instancetype": {"name": "u1.medium"}}),
        json!({"domain": {"devices": {}}}),
    );
    let spec = InstancetypeSpec::from_object(&json!({"spec": {
        "cpu": {"guest": 2}, "memory": {"guest": "4Gi"}}}))
    .unwrap();
    let input = |instancetype| LauncherInput {
        vm: &vm,
        kubevirt: None,
        instancetype,
        namespace: known_namespace(),
    };
    let v18 = at("v1.8.0");
    let request = request(&LauncherInput {
        kubevirt: Some(&v18),
        ..input(Some(&spec))
    })
    .unwrap();
    // 2 vCPUs ÷ 10 = 200m; 4Gi + (220 + 16 + 8 + 32)Mi = 4372Mi.
    assert_eq!(request.cpu.request, exactly(cores("200m")));
    assert_eq!(memory(&request), bytes(4372 * MI));

    // overcommitPercent 10: request = float32(4Gi) × float32(0.9) = 3,865,470,464 B (float32
    // rounding), page tables from it: ceil(/1000) × 1000 / 512 = 7,549,748; + 276Mi.
    let overcommitted = InstancetypeSpec::from_object(&json!({"spec": {
        "cpu": {"guest": 2}, "memory": {"guest": "4Gi", "overcommitPercent": 10}}}))
    .unwrap();
    let request = self::request(&LauncherInput {
        kubevirt: Some(&v18),
        ..input(Some(&overcommitted))
    })
    .unwrap();
    assert_eq!(
        memory(&request),
        bytes(3_865_470_464 + 7_549_748 + 276 * MI)
    );
}

#[test]
fn instancetype_unknown_is_a_lower_bound() {
    // The template carries no CPU or memory: with the instancetype unknown, the least any
    // instancetype could give is 1 vCPU and no guest memory, on shared CPUs: 100m and the
    // overhead alone (v1.8: 268Mi), with no upper bound.
    let vm = vm_with(
        json!({"instancetype": {"name": "u1.large"}}),
        json!({"domain": {"devices": {}}}),
    );
    let request = launcher(&vm, Some(&at("v1.8.0")));
    assert_eq!(
        request.memory.request,
        Bound {
            at_least: bytes(268 * MI),
            at_most: None
        }
    );
    assert_eq!(request.cpu.request.at_least, cores("100m"));
    assert_eq!(request.cpu.request.at_most, None);
    assert!(request.unknowns.instancetype);
    // A template that writes what an instancetype sets is rejected by KubeVirt: nothing to say.
    let conflicting = vm_with(
        json!({"instancetype": {"name": "u1.large"}}),
        guest("2Gi", 1),
    );
    assert!(
        self::request(&LauncherInput {
            vm: &conflicting,
            kubevirt: None,
            instancetype: None,
            namespace: known_namespace()
        })
        .is_none()
    );
}

#[test]
fn without_the_kubevirt_cr_only_written_amounts_count() {
    // Overcommit, ratio and cpuRequest unknown: a guest-only VM asks for at least the smallest
    // overhead of any release (v1.0–1.4 with no request to size page tables: 242Mi) and no CPU.
    let only_guest = vm(guest("2Gi", 1));
    let request = launcher(&only_guest, None);
    assert_eq!(
        request.memory.request,
        Bound {
            at_least: bytes(242 * MI),
            at_most: None
        }
    );
    assert_eq!(request.cpu.request.at_least, ParsedQuantity::ZERO);
    assert!(request.unknowns.configuration && request.unknowns.version);
    assert!(request.unknowns.architecture);
    // A written request counts in full: 2Gi + 4Mi page tables + 242Mi (v1.0–1.4) = 2294Mi.
    let requested = vm(json!({"domain": {"cpu": {"cores": 1},
        "resources": {"requests": {"memory": "2Gi", "cpu": "2"}}}}));
    let request = launcher(&requested, None);
    assert_eq!(request.memory.request.at_least, bytes(2294 * MI));
    assert_eq!(request.cpu.request.at_least, cores("2"));
    // So does one a refused configuration cannot change.
    let refused = kubevirt(
        Some("v1.8.0"),
        json!({"developerConfiguration": {"memoryOvercommit": -1}}),
    );
    assert!(launcher(&requested, Some(&refused)).unknowns.configuration);
}

#[test]
fn architecture_from_the_vm_or_the_cr() {
    let vm = vm(
        json!({"architecture": "arm64", "domain": {"cpu": {"cores": 1},
        "memory": {"guest": "2Gi"}}}),
    );
    // arm64 adds 128Mi of UEFI flash: 2316 + 128 = 2444Mi on v1.8.
    assert_eq!(
        memory(&launcher(&vm, Some(&at("v1.8.0")))),
        bytes(2444 * MI)
    );
    let arm_cluster = KubeVirt::from_value(&json!({"status": {
        "observedKubeVirtVersion": "v1.8.0", "defaultArchitecture": "arm64"}}))
    .unwrap();
    assert_eq!(
        memory(&launcher(&self::vm(guest("2Gi", 1)), Some(&arm_cluster))),
        bytes(2444 * MI)
    );
    let unknown_arch =
        KubeVirt::from_value(&json!({"status": {"observedKubeVirtVersion": "v1.8.0"}})).unwrap();
    let request = launcher(&self::vm(guest("2Gi", 1)), Some(&unknown_arch));
    assert_eq!(
        request.memory.request,
        Bound {
            at_least: bytes(2316 * MI),
            at_most: Some(bytes(2444 * MI))
        }
    );
    assert!(request.unknowns.architecture);
}

#[test]
fn automatic_limits_under_a_quota() {
    let vm = vm(guest("2Gi", 1));
    let quota = NamespaceFacts {
        quota_limits_cpu: Some(true),
        quota_limits_memory: Some(true),
        ..known_namespace()
    };
    // v1.5+: limits added. Memory: request × 2 (default ratio) = 2 × 2316Mi; CPU: 1 vCPU.
    let v18 = launcher_in(&vm, Some(&at("v1.8.0")), quota);
    assert_eq!(v18.memory.limit, Limit::Set(exactly(bytes(2 * 2316 * MI))));
    assert_eq!(v18.cpu.limit, Limit::Set(exactly(cores("1"))));
    // v1.4 adds none without the gate, and does with it.
    let v14 = launcher_in(&vm, Some(&at("v1.4.0")), quota);
    assert_eq!(
        (v14.memory.limit, v14.cpu.limit),
        (Limit::Absent, Limit::Absent)
    );
    let gated = kubevirt(
        Some("v1.4.0"),
        json!({"developerConfiguration": {"featureGates": ["AutoResourceLimitsGate"]}}),
    );
    assert_eq!(
        launcher_in(&vm, Some(&gated), quota).memory.limit,
        Limit::Set(exactly(bytes(2 * 2294 * MI)))
    );
    // Version unknown (1.4 without the gate, or 1.5+): maybe.
    let unknown = launcher_in(&vm, Some(&kubevirt(None, json!({}))), quota);
    assert!(matches!(unknown.memory.limit, Limit::Maybe(_)));
    // Quotas unknown: maybe.
    let quotas_unknown = NamespaceFacts {
        quota_limits_cpu: None,
        quota_limits_memory: None,
        ..known_namespace()
    };
    let request = launcher_in(&vm, Some(&at("v1.8.0")), quotas_unknown);
    assert!(matches!(request.memory.limit, Limit::Maybe(_)));
    assert!(matches!(request.cpu.limit, Limit::Maybe(_)));
    // The namespace's ratio label: 1.5 × 2316Mi = 3,642,753,024 B.
    let labels: Labels = [(
        CompactString::from(MEMORY_LIMITS_RATIO_LABEL),
        CompactString::from("1.5"),
    )]
    .into_iter()
    .collect();
    let ratio = NamespaceFacts {
        labels: Some(&labels),
        ..quota
    };
    assert_eq!(
        launcher_in(&vm, Some(&at("v1.8.0")), ratio).memory.limit,
        Limit::Set(exactly(bytes(3_642_753_024)))
    );
    // Labels unknown: at least request × 1, no upper bound.
    let no_labels = NamespaceFacts {
        labels: None,
        ..quota
    };
    assert_eq!(
        launcher_in(&vm, Some(&at("v1.8.0")), no_labels)
            .memory
            .limit,
        Limit::Set(Bound {
            at_least: bytes(2316 * MI),
            at_most: None
        })
    );
    // A written limit is never replaced.
    let limited = self::vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
        "resources": {"limits": {"memory": "3Gi", "cpu": "2"}}}}),
    );
    let request = launcher_in(&limited, Some(&at("v1.8.0")), no_labels);
    assert_eq!(request.cpu.limit, Limit::Set(exactly(cores("2"))));
    assert!(matches!(request.memory.limit, Limit::Set(b) if b.exact().is_some()));
}

#[test]
fn auto_cpu_limit_namespace_selector() {
    let vm = vm(guest("2Gi", 2));
    let cr = kubevirt(
        Some("v1.3.0"),
        json!({"autoCPULimitNamespaceLabelSelector": {"matchLabels": {"cpu-limits": "on"}}}),
    );
    let labels: Labels = [(CompactString::from("cpu-limits"), CompactString::from("on"))]
        .into_iter()
        .collect();
    let matching = NamespaceFacts {
        labels: Some(&labels),
        ..known_namespace()
    };
    // Not gated: 2 whole vCPUs, even in v1.3 without AutoResourceLimitsGate.
    assert_eq!(
        launcher_in(&vm, Some(&cr), matching).cpu.limit,
        Limit::Set(exactly(cores("2")))
    );
    assert_eq!(launcher(&vm, Some(&cr)).cpu.limit, Limit::Absent);
    let unknown = NamespaceFacts {
        labels: None,
        ..known_namespace()
    };
    assert!(matches!(
        launcher_in(&vm, Some(&cr), unknown).cpu.limit,
        Limit::Maybe(_)
    ));
}

#[test]
fn the_overhead_ratio_and_the_dedicated_100mi_by_patch_release() {
    let vm = vm(
        json!({"domain": {"cpu": {"cores": 2, "dedicatedCpuPlacement": true},
        "memory": {"guest": "4Gi"}}}),
    );
    let cr = |version| {
        kubevirt(
            Some(version),
            json!({"additionalGuestMemoryOverheadRatio": "2"}),
        )
    };
    // Before the ratio: 8,388,609 + (220 + 16 + 8 + 16)Mi = 281,018,369 B.
    // v1.5.0 multiplies then adds 100Mi: 281,018,369 + 281,019 × 1000 + 104,857,600 = 666,894,969.
    let v150 = launcher(&vm, Some(&cr("v1.5.0")));
    assert_eq!(v150.memory_overhead, exactly(bytes(666_894_969)));
    // v1.5.3 adds 100Mi first: 385,875,969 + 385,876 × 1000 = 771,751,969.
    let v153 = launcher(&vm, Some(&cr("v1.5.3")));
    assert_eq!(v153.memory_overhead, exactly(bytes(771_751_969)));
    assert_eq!(memory(&v153), bytes(4 * GI + 771_751_969));
}

#[test]
fn features_that_cost_the_launcher_memory() {
    fn merge(into: &mut Value, extra: &Value) {
        match (into, extra) {
            (Value::Object(into), Value::Object(extra)) => {
                for (key, value) in extra {
                    merge(into.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
            (into, extra) => *into = extra.clone(),
        }
    }
    let base = |extra: Value| {
        let mut spec = guest("2Gi", 1);
        merge(&mut spec, &extra);
        vm(spec)
    };
    let overhead = |vm: &VirtualMachine, version: &str| {
        launcher(vm, Some(&at(version)))
            .memory_overhead
            .exact()
            .unwrap()
    };
    let plain = overhead(&base(json!({})), "v1.8.0");
    assert_eq!(plain, bytes(268 * MI));
    let more = |extra: Value, version: &str, mib: u128| {
        let vm = base(extra.clone());
        let baseline = overhead(&self::vm(guest("2Gi", 1)), version);
        let expected = bytes(baseline.ceil_scaled(0).unwrap() + mib * MI);
        assert_eq!(overhead(&vm, version), expected, "{extra} on {version}");
    };
    // No graphics: −32Mi on v1.8 (expressed by comparing with the plain VM).
    assert_eq!(
        overhead(
            &base(json!({"domain": {"devices": {"autoattachGraphicsDevice": false}}})),
            "v1.8.0"
        ),
        bytes(236 * MI)
    );
    more(json!({"domain": {"devices": {"tpm": {}}}}), "v1.8.0", 53);
    // `enabled: false` cost 53Mi until v1.4.1.
    more(
        json!({"domain": {"devices": {"tpm": {"enabled": false}}}}),
        "v1.4.0",
        53,
    );
    more(
        json!({"domain": {"devices": {"tpm": {"enabled": false}}}}),
        "v1.4.1",
        0,
    );
    more(
        json!({"domain": {"launchSecurity": {"sev": {}}}}),
        "v1.8.0",
        256,
    );
    more(
        json!({"domain": {"launchSecurity": {"snp": {}}}}),
        "v1.6.0",
        0,
    );
    more(
        json!({"domain": {"launchSecurity": {"snp": {}}}}),
        "v1.7.0",
        256,
    );
    // Exec probes: 100Mi once and 10Mi each.
    more(
        json!({"livenessProbe": {"exec": {"command": ["true"]}},
               "readinessProbe": {"exec": {"command": ["true"]}}}),
        "v1.8.0",
        120,
    );
    more(
        json!({"readinessProbe": {"tcpSocket": {"port": 22}}}),
        "v1.8.0",
        0,
    );
    more(
        json!({"volumes": [{"name": "m", "downwardMetrics": {}}]}),
        "v1.8.0",
        1,
    );
    more(
        json!({"domain": {"memory": {"reservedOverhead": {"addedOverhead": "64Mi"}}}}),
        "v1.8.0",
        64,
    );
    more(
        json!({"domain": {"memory": {"reservedOverhead": {"addedOverhead": "64Mi"}}}}),
        "v1.7.0",
        0,
    );
    // Core passt forwarding every port: 800Mi per interface up to v1.2.
    let passt = json!({"domain": {"devices": {"interfaces": [{"name": "a", "passt": {}},
        {"name": "b", "passt": {}, "ports": [{"port": 80}]}]}}});
    more(passt.clone(), "v1.2.0", 800);
    more(passt, "v1.3.0", 0);
    // The passtBinding core binding: 250Mi since v1.8.
    let binding =
        json!({"domain": {"devices": {"interfaces": [{"name": "a", "passtBinding": {}}]}}});
    more(binding.clone(), "v1.8.0", 250);
    more(binding, "v1.7.0", 0);
}

#[test]
fn binding_plugins_add_their_declared_overhead_once() {
    let vm = vm(
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
        "devices": {"interfaces": [{"name": "a", "binding": {"name": "slirp"}},
                                   {"name": "b", "binding": {"name": "slirp"}},
                                   {"name": "c", "binding": {"name": "unregistered"}}]}}}),
    );
    let cr = |version| {
        kubevirt(
            Some(version),
            json!({"network": {"binding": {"slirp": {"computeResourceOverhead": {"requests": {"memory": "500Mi"}}}}}}),
        )
    };
    // v1.8: 268Mi + 500Mi; v1.3 had no such overhead (2Gi page tables 4Mi + 242Mi).
    assert_eq!(
        launcher(&vm, Some(&cr("v1.8.0"))).memory_overhead,
        exactly(bytes(768 * MI))
    );
    assert_eq!(
        launcher(&vm, Some(&cr("v1.3.0"))).memory_overhead,
        exactly(bytes(246 * MI))
    );
}

#[test]
fn a_preference_may_turn_graphics_off() {
    // The preference is not read: it may set preferredAutoattachGraphicsDevice: false, so the
    // least is without the 32Mi of video RAM (2316 − 32 = 2284Mi); it may also add a TPM or
    // choose arm64, so nothing bounds it above.
    let vm = vm_with(json!({"preference": {"name": "p"}}), guest("2Gi", 1));
    let request = launcher(&vm, Some(&at("v1.8.0")));
    assert_eq!(
        request.memory.request,
        Bound {
            at_least: bytes(2284 * MI),
            at_most: None
        }
    );
    // A template that says whether it wants graphics is not changed by the preference.
    let explicit = vm_with(
        json!({"preference": {"name": "p"}}),
        json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
            "devices": {"autoattachGraphicsDevice": true}}}),
    );
    assert_eq!(
        launcher(&explicit, Some(&at("v1.8.0")))
            .memory
            .request
            .at_least,
        bytes(2316 * MI)
    );
}

#[test]
fn a_vm_that_cannot_be_judged_gives_nothing() {
    let none = |spec: Value| {
        let vm = vm(spec);
        request(&LauncherInput {
            vm: &vm,
            kubevirt: None,
            instancetype: None,
            namespace: NamespaceFacts::default(),
        })
    };
    assert!(none(json!({"domain": {"memory": {"guest": "lots"}}})).is_none());
    assert!(none(json!({"domain": {"memory": {"guest": "1Gi"}, "resources": {"requests": {"cpu": "-1"}}}})).is_none());
    assert!(none(json!({"domain": {"cpu": {"cores": 1}}})).is_none());
    assert!(none(json!({"domain": {"memory": {"guest": "1Gi"}}})).is_some());
}

#[test]
fn bounds_answer_exceeds_and_below_safely() {
    let range = Bound {
        at_least: bytes(10),
        at_most: Some(bytes(20)),
    };
    assert!(range.exceeds(&bytes(9)) && !range.exceeds(&bytes(10)));
    assert!(range.below(&bytes(21)) && !range.below(&bytes(20)));
    let open = Bound {
        at_least: bytes(10),
        at_most: None,
    };
    assert!(!open.below(&bytes(1_000_000)));
    assert_eq!(open.exact(), None);
}

#[test]
fn the_corners_bound_every_architecture_and_graphics_combination() {
    // Brute force over every (arm64, graphics) pair against what `request` folds from the two
    // corners: the same bounds, for ratios above, at and below 1.
    let vm_value = vm_with(
        json!({"preference": {"name": "p"}}),
        json!({"domain": {"cpu": {"cores": 3, "dedicatedCpuPlacement": true},
            "memory": {"guest": "3001M"}}}),
    );
    for ratio in ["1.7", "1", "0.3"] {
        let cr = KubeVirt::from_value(&json!({
            "spec": {"configuration": {"additionalGuestMemoryOverheadRatio": ratio}},
            "status": {"observedKubeVirtVersion": "v1.5.0"}}))
        .unwrap();
        let input = LauncherInput {
            vm: &vm_value,
            kubevirt: Some(&cr),
            instancetype: None,
            namespace: known_namespace(),
        };
        let folded = request(&input).unwrap();
        let facts = vm::resolve(&vm_value, None).unwrap();
        let settings = settings(&input, cr.configuration());
        let prepared = compute::prepare(&facts, &settings, true);
        let formula = &era::formulas_for(cr.version.as_ref())[0];
        let overheads: Vec<u128> = [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .map(|(arm64, graphics)| {
                let scenario = Scenario {
                    formula,
                    arm64,
                    graphics,
                };
                compute::figures(&scenario, &prepared, &facts, &settings).overhead
            })
            .collect();
        let low = overheads.iter().min().copied().unwrap();
        assert_eq!(folded.memory_overhead.at_least, bytes(low), "ratio {ratio}");
    }
}
