//! The watcher's state at scale: 100,000 VMs of which 2 % are unhealthy (98 % running, with a
//! VMI). Measures the RSS the tracker holds and the time to process a full relist of VMs and
//! VMIs, from JSON bytes (as kube-rs hands them over after reading the wire) and from parsed
//! objects. Goals: ≤ 200 MB, a relist under 1 s.
//!
//!     cargo bench --bench watcher

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use virt_preflight::watcher::object::WatchedVmi;
use virt_preflight::watcher::{StuckAfter, Tracker, VmObservation, WatchedVm};

const VMS: usize = 100_000;
const UNHEALTHY_EVERY: usize = 50; // 2 %

fn vm(index: usize) -> Value {
    let unhealthy = index.is_multiple_of(UNHEALTHY_EVERY);
    let status = if unhealthy {
        "ErrorUnschedulable"
    } else {
        "Running"
    };
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {
            "name": format!("vm-{index:06}"), "namespace": format!("tenant-{:03}", index % 500),
            "uid": format!("6f1c2a4e-0000-4000-8000-{index:012}"), "resourceVersion": "123456",
            "generation": 3, "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": {"app": "web", "kubevirt.io/os": "fedora"},
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "kubevirt.io/v1",
                "time": "2026-11-01T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:runStrategy": {}, "f:template": {"f:spec": {"f:domain": {}}}}}}]
        },
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "nodeSelector": {"gpu": "a100"},
            "domain": {"cpu": {"cores": 2}, "memory": {"guest": "4Gi"},
                "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}},
                                      {"name": "cloudinit", "disk": {"bus": "virtio"}}],
                            "interfaces": [{"name": "default", "masquerade": {}}]}},
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [{"name": "root", "dataVolume": {"name": format!("vm-{index:06}-root")}},
                        {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: fedora\n"}}]
        }}},
        "status": {"printableStatus": status, "ready": !unhealthy, "created": !unhealthy,
            "conditions": [
                {"type": "Ready", "status": if unhealthy {"False"} else {"True"},
                 "lastTransitionTime": "2026-11-25T10:00:00Z"},
                {"type": "LiveMigratable", "status": "True", "lastTransitionTime": "2026-11-25T10:00:00Z"}
            ],
            "volumeSnapshotStatuses": [{"name": "root", "enabled": true}]}
    })
}

/// A running VMI as the API server sends it (a spec the watcher skips, a status it reads).
fn vmi(index: usize) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
           "metadata": {"name": format!("vm-{index:06}"), "namespace": format!("tenant-{:03}", index % 500),
                        "uid": format!("7f1c2a4e-0000-4000-8000-{index:012}"), "resourceVersion": "123457",
                        "labels": {"kubevirt.io/nodeName": format!("node-{:04}", index % 5000)}},
           "spec": {"domain": {"cpu": {"cores": 2}, "memory": {"guest": "4Gi"},
                "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                            "interfaces": [{"name": "default", "masquerade": {}}]}},
                "networks": [{"name": "default", "pod": {}}],
                "volumes": [{"name": "root", "dataVolume": {"name": format!("vm-{index:06}-root")}}]},
           "status": {"phase": "Running", "nodeName": format!("node-{:04}", index % 5000),
                "conditions": [{"type": "Ready", "status": "True"}],
                "interfaces": [{"name": "default", "ipAddress": "10.0.0.1"}]}})
}

fn has_vmi(index: usize) -> bool {
    !index.is_multiple_of(UNHEALTHY_EVERY)
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One full relist of VMs and VMIs from JSON bytes, decoded as the watcher decodes them
/// (VMs into the slim [`WatchedVm`], VMIs into [`WatchedVmi`]: name, phase and node).
fn relist_from_bytes(tracker: &mut Tracker, vms: &[Vec<u8>], vmis: &[Vec<u8>], now: Timestamp) {
    tracker.begin_vm_relist();
    for bytes in vms {
        let vm: WatchedVm = serde_json::from_slice(bytes).expect("a VM");
        if let Ok(observation) = VmObservation::from_watched(&vm) {
            tracker.apply_vm(observation, now);
        }
    }
    tracker.end_vm_relist();
    tracker.begin_vmi_relist();
    for bytes in vmis {
        let vmi: WatchedVmi = serde_json::from_slice(bytes).expect("a VMI");
        if let Some(key) = vmi.key() {
            tracker.apply_vmi(key, vmi.facts, now);
        }
    }
    tracker.end_vmi_relist(now);
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not have.
    let now: Timestamp = "2026-11-25T10:30:00Z".parse().expect("timestamp");

    // Memory: the tracker fed one object at a time, so that only its state stays resident.
    let before = rss_bytes();
    let mut tracker = Tracker::new(StuckAfter::default());
    tracker.begin_vm_relist();
    for index in 0..VMS {
        let bytes = serde_json::to_vec(&vm(index)).expect("serializes");
        let watched: WatchedVm = serde_json::from_slice(&bytes).expect("a VM");
        if let Ok(observation) = VmObservation::from_watched(&watched) {
            tracker.apply_vm(observation, now);
        }
    }
    tracker.end_vm_relist();
    tracker.begin_vmi_relist();
    for index in (0..VMS).filter(|i| has_vmi(*i)) {
        let bytes = serde_json::to_vec(&vmi(index)).expect("serializes");
        let vmi: WatchedVmi = serde_json::from_slice(&bytes).expect("a VMI");
        if let Some(key) = vmi.key() {
            tracker.apply_vmi(key, vmi.facts, now);
        }
    }
    tracker.end_vmi_relist(now);
    let after = rss_bytes();
    let stuck = tracker.tick(now).len();
    println!(
        "state: {VMS} VMs, {} unhealthy, {} VMIs, {stuck} stuck; RSS +{:.1} MiB (estimate {:.1} MiB)",
        tracker.unhealthy_count(),
        tracker.vmi_count(),
        mib(after.saturating_sub(before)),
        mib(tracker.approximate_bytes())
    );

    // The policy-report writer's copy (the leader's): every VM less its status, by namespace
    // and name, as `policy_report::writer` keeps them to judge a namespace again.
    let before = rss_bytes();
    let mut kept: BTreeMap<String, BTreeMap<String, WatchedVm>> = BTreeMap::new();
    for index in 0..VMS {
        let bytes = serde_json::to_vec(&vm(index)).expect("serializes");
        let watched: WatchedVm = serde_json::from_slice(&bytes).expect("a VM");
        let (Some(ns), Some(name)) = (watched.namespace(), watched.name()) else {
            continue;
        };
        let (ns, name) = (ns.to_string(), name.to_string());
        kept.entry(ns)
            .or_default()
            .insert(name, watched.without_status());
    }
    let after = rss_bytes();
    println!(
        "policy reports: every VM kept to be judged again ({VMS} VMs in {} namespaces): RSS +{:.1} MiB",
        kept.len(),
        mib(after.saturating_sub(before))
    );
    drop(kept);

    // Relist time: the same cluster listed again (the watch reconnected), three runs.
    let vm_bytes: Vec<Vec<u8>> = (0..VMS)
        .map(|i| serde_json::to_vec(&vm(i)).expect("serializes"))
        .collect();
    let vmi_bytes: Vec<Vec<u8>> = (0..VMS)
        .filter(|i| has_vmi(*i))
        .map(|i| serde_json::to_vec(&vmi(i)).expect("serializes"))
        .collect();
    let total: usize = vm_bytes.iter().map(Vec::len).sum();
    println!(
        "relist input: {VMS} VMs ({:.1} MiB of JSON), {} VMIs",
        mib(total),
        vmi_bytes.len()
    );
    let mut best = Duration::MAX;
    for run in 1..=3 {
        let start = Instant::now();
        relist_from_bytes(&mut tracker, &vm_bytes, &vmi_bytes, now);
        let elapsed = start.elapsed();
        best = best.min(elapsed);
        let raised_again = tracker.tick(now).len();
        println!(
            "relist {run}: {:.3} s (JSON parse + tracker), {raised_again} raised again",
            elapsed.as_secs_f64()
        );
    }
    let decoded: Vec<WatchedVm> = vm_bytes
        .iter()
        .map(|b| serde_json::from_slice(b).expect("a VM"))
        .collect();
    let start = Instant::now();
    tracker.begin_vm_relist();
    for vm in &decoded {
        if let Ok(observation) = VmObservation::from_watched(vm) {
            tracker.apply_vm(observation, now);
        }
    }
    tracker.end_vm_relist();
    let tracker_only = start.elapsed();
    // For comparison: decoding the same bytes into full JSON trees, as a DynamicObject would.
    let start = Instant::now();
    for bytes in &vm_bytes {
        let value: Value = serde_json::from_slice(bytes).expect("valid JSON");
        std::hint::black_box(value);
    }
    let full_trees = start.elapsed();
    println!(
        "best relist {:.3} s; the tracker's share (VMs already decoded): {:.3} s; decoding the VMs as full JSON trees instead: {:.3} s",
        best.as_secs_f64(),
        tracker_only.as_secs_f64(),
        full_trees.as_secs_f64()
    );
}
