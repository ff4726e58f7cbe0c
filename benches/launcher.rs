//! The launcher's request for one VM: with everything known (one release's arithmetic), with
//! the KubeVirt version unknown (every release's), and with no KubeVirt CR, an unknown
//! architecture and an unknown instancetype (the most combinations).
//!
//! `cargo bench --bench launcher`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use virt_preflight::cluster::kubevirt::KubeVirt;
use virt_preflight::launcher::{self, LauncherInput, NamespaceFacts};
use virt_preflight::model::{Labels, VirtualMachine};

fn bench(c: &mut Criterion) {
    let vm = VirtualMachine::from_value(&json!({"spec": {"template": {"spec": {"domain": {
        "cpu": {"cores": 2},
        "memory": {"guest": "4Gi"},
        "resources": {"requests": {"memory": "4Gi"}},
        "devices": {"gpus": [{"name": "g", "deviceName": "nvidia.com/GA102"}]}
    }}}}}))
    .unwrap();
    let unknown_instancetype = VirtualMachine::from_value(&json!({"spec": {
        "instancetype": {"name": "u1.large"}, "preference": {"name": "fedora"},
        "template": {"spec": {"domain": {"devices": {}}}}}}))
    .unwrap();
    let cr = |status: serde_json::Value| {
        KubeVirt::from_value(&json!({"spec": {"configuration": {}}, "status": status})).unwrap()
    };
    let known = cr(json!({"observedKubeVirtVersion": "v1.8.0", "defaultArchitecture": "amd64"}));
    let no_version = cr(json!({"defaultArchitecture": "amd64"}));
    let labels = Labels::new();
    let namespace = NamespaceFacts {
        quota_limits_cpu: Some(true),
        quota_limits_memory: Some(true),
        labels: Some(&labels),
    };
    let input = |vm, kubevirt| LauncherInput {
        vm,
        kubevirt,
        instancetype: None,
        namespace,
    };
    for (name, input) in [
        ("known", input(&vm, Some(&known))),
        ("version_unknown", input(&vm, Some(&no_version))),
        ("nothing_known", input(&unknown_instancetype, None)),
    ] {
        c.bench_function(&format!("launcher_request/{name}"), |b| {
            b.iter(|| launcher::request(black_box(&input)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
