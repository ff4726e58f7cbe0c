//! Where the VM's launcher pod could run. The scheduler filters nodes in stages; each rule
//! reports the first stage that leaves none, so one cause gives one finding. Capacity is
//! conservative: allocatable, not what is free, so only a VM that could never fit fires.

use super::{Emitter, VmContext};
use crate::model::{ParsedQuantity, QuantityText, TEMPLATE_SPEC};

fn selector_text(cx: &VmContext<'_>) -> String {
    cx.spec
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn has_required_affinity(cx: &VmContext<'_>) -> bool {
    cx.spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some()
}

pub fn node_selector_unsatisfiable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    if !placement.selected.is_clear() || nodes.is_empty() {
        return;
    }
    let selector = &cx.spec.node_selector;
    let selector_alone = nodes.matching_selector(selector);
    if !selector.is_empty() && selector_alone.is_clear() {
        let nearest = nodes
            .nearest_miss(selector)
            .map(|(name, has)| format!(" (nearest: {name} {has})"))
            .unwrap_or_default();
        out.emit(
            format!("{TEMPLATE_SPEC}.nodeSelector"),
            format!(
                "nodeSelector {} matches none of {} nodes{nearest}",
                selector_text(cx),
                nodes.len()
            ),
        );
    } else if has_required_affinity(cx) {
        let with = if selector.is_empty() {
            String::new()
        } else {
            format!(" with nodeSelector {}", selector_text(cx))
        };
        out.emit(
            format!("{TEMPLATE_SPEC}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
            format!("required node affinity{with} matches none of {} nodes", nodes.len()),
        );
    }
}

pub fn taints_not_tolerated(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    if placement.selected.is_clear() || !placement.tolerated.is_clear() {
        return;
    }
    let example = nodes
        .untolerated_example(&placement.selected, &cx.spec.tolerations)
        .map(|(name, taint)| format!(" (e.g. {name}: {taint})"))
        .unwrap_or_default();
    out.emit(
        format!("{TEMPLATE_SPEC}.tolerations"),
        format!(
            "all {} matching nodes have taints the VM does not tolerate{example}",
            placement.selected.count_ones(..)
        ),
    );
}

pub fn no_schedulable_node(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    if placement.tolerated.is_clear() || !placement.schedulable.is_clear() {
        return;
    }
    let (cordoned, not_ready, not_kubevirt) = nodes.unschedulable_counts(&placement.tolerated);
    let path = if cx.spec.node_selector.is_empty() {
        TEMPLATE_SPEC.to_string()
    } else {
        format!("{TEMPLATE_SPEC}.nodeSelector")
    };
    out.emit(
        path,
        format!(
            "none of {} matching nodes can take a VM: {cordoned} cordoned, {not_ready} NotReady, {not_kubevirt} not kubevirt.io/schedulable",
            placement.tolerated.count_ones(..)
        ),
    );
}

/// What the launcher pod will request at least: explicit requests (or limits, which
/// Kubernetes copies into absent requests), else guest memory, and whole CPUs for dedicated
/// placement. Shared vCPUs are requested at a fraction (cpuAllocationRatio), so they do not
/// count: counting them would report VMs that run.
fn minimum_request(cx: &VmContext<'_>) -> (Option<ParsedQuantity>, Option<ParsedQuantity>) {
    let domain = &cx.spec.domain;
    let resources = &domain.resources;
    let amount = |name: &str| {
        resources
            .requests
            .get(name)
            .or_else(|| resources.limits.get(name))
            .and_then(|q: &QuantityText| q.parse().ok())
    };
    let guest = domain
        .memory
        .as_ref()
        .and_then(|m| m.guest.as_ref())
        .and_then(|q| q.parse().ok());
    // The launcher pod asks for the memory request, else the limit, else the guest memory:
    // a guest larger than its request is overcommitted on purpose, not a bigger pod.
    let memory = amount("memory").or(guest);
    let dedicated_cpus = domain
        .cpu
        .as_ref()
        .filter(|c| c.dedicated_cpu_placement == Some(true))
        .map(|c| {
            // Three u32 counts can pass u64: saturate (no node has that many CPUs anyway).
            let count = u64::from(c.cores.unwrap_or(1))
                .saturating_mul(u64::from(c.sockets.unwrap_or(1)))
                .saturating_mul(u64::from(c.threads.unwrap_or(1)));
            ParsedQuantity::from_integer(count)
        });
    let cpu = amount("cpu").max(dedicated_cpus);
    (cpu, memory)
}

pub fn resources_exceed_capacity(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    if placement.schedulable.is_clear() {
        return;
    }
    let (cpu, memory) = minimum_request(cx);
    if cpu.is_none() && memory.is_none() {
        return;
    }
    if nodes
        .first_fitting(&placement.schedulable, cpu, memory)
        .is_some()
    {
        return;
    }
    let (largest_cpu, largest_memory) = nodes.largest(&placement.schedulable);
    let show = |q: Option<ParsedQuantity>| q.map_or_else(|| "?".to_string(), |q| q.to_string());
    let path = match (memory, largest_memory) {
        (Some(want), Some(have)) if want > have => {
            format!("{TEMPLATE_SPEC}.domain.resources.requests.memory")
        }
        _ => format!("{TEMPLATE_SPEC}.domain.resources.requests.cpu"),
    };
    out.emit(
        path,
        format!(
            "needs cpu {} and memory {} bytes; no matching node has that (largest: cpu {}, memory {})",
            show(cpu),
            show(memory),
            show(largest_cpu),
            show(largest_memory)
        ),
    );
}

/// CPU modes that are not a named model.
const CPU_MODES: [&str; 2] = ["host-passthrough", "host-model"];

pub fn cpu_model_unavailable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    let Some(model) = cx
        .spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.model.as_deref())
        .filter(|m| !m.is_empty() && !CPU_MODES.contains(m))
    else {
        return;
    };
    if placement.schedulable.is_clear() {
        return;
    }
    if let Some(offering) = nodes.offering_cpu_model(&placement.schedulable, model)
        && offering.is_clear()
    {
        out.emit(
            format!("{TEMPLATE_SPEC}.domain.cpu.model"),
            format!(
                "CPU model {model:?} is offered by none of {} matching nodes",
                placement.schedulable.count_ones(..)
            ),
        );
    }
}

pub fn device_unavailable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    if placement.schedulable.is_clear() {
        return;
    }
    let devices = &cx.spec.domain.devices;
    let gpus = devices
        .gpus
        .iter()
        .enumerate()
        .map(|(i, g)| (format!("gpus[{i}]"), g.device_name.as_deref()));
    let host_devices = devices
        .host_devices
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("hostDevices[{i}]"), h.device_name.as_deref()));
    for (field, device) in gpus.chain(host_devices) {
        let Some(device) = device.filter(|d| !d.is_empty()) else {
            continue; // DRA claims name no device resource
        };
        if nodes
            .with_resource(&placement.schedulable, device)
            .is_clear()
        {
            out.emit(
                format!("{TEMPLATE_SPEC}.domain.devices.{field}.deviceName"),
                format!(
                    "device {device:?} is allocatable on none of {} matching nodes",
                    placement.schedulable.count_ones(..)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn gpu_toleration(vm: &mut Value) {
        spec(vm)["tolerations"] =
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    }

    #[test]
    fn node_selector_unsatisfiable_names_the_nearest_miss() {
        let view = cluster(BASE_CLUSTER);
        let broken = valid_vm_with(|vm| spec(vm)["nodeSelector"] = json!({"gpu": "a100"}));
        let found = crate::rules::testing::findings_in(broken.clone(), &view);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, NodeSelectorUnsatisfiable);
        assert_eq!(found[0].path, "spec.template.spec.nodeSelector");
        assert_eq!(
            found[0].message,
            "nodeSelector gpu=a100 matches none of 2 nodes (nearest: worker-2 has gpu=a10)"
        );
        let fixed = valid_vm_with(|vm| spec(vm)["nodeSelector"] = json!({"zone": "a"}));
        assert_eq!(fired_in(fixed, &view), vec![]);
        let unknown = base_cluster_with(|items| without_kind(items, "Node"));
        assert_eq!(fired_in(broken, &unknown), vec![]);
    }

    #[test]
    fn required_affinity_alone_can_match_nothing() {
        let view = cluster(BASE_CLUSTER);
        let affinity = |zone: &str| {
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": [zone]}]}
            ]}}})
        };
        let broken = valid_vm_with(|vm| spec(vm)["affinity"] = affinity("c"));
        assert_eq!(
            fired_in(broken, &view),
            vec![(
                NodeSelectorUnsatisfiable,
                "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution".into()
            )]
        );
        let fixed = valid_vm_with(|vm| spec(vm)["affinity"] = affinity("a"));
        assert_eq!(fired_in(fixed, &view), vec![]);
    }

    #[test]
    fn taints_not_tolerated() {
        let view = cluster(BASE_CLUSTER);
        let broken = valid_vm_with(|vm| spec(vm)["nodeSelector"] = json!({"gpu": "a10"}));
        assert_eq!(
            fired_in(broken, &view),
            vec![(TaintsNotTolerated, "spec.template.spec.tolerations".into())]
        );
        let fixed = valid_vm_with(|vm| {
            spec(vm)["nodeSelector"] = json!({"gpu": "a10"});
            gpu_toleration(vm);
        });
        assert_eq!(fired_in(fixed, &view), vec![]);
    }

    #[test]
    fn no_schedulable_node() {
        let cordoned = base_cluster_with(|items| items[0]["spec"] = json!({"unschedulable": true}));
        let vm = valid_vm_with(|vm| spec(vm)["nodeSelector"] = json!({"zone": "a"}));
        assert_eq!(
            fired_in(vm.clone(), &cordoned),
            vec![(NoSchedulableNode, "spec.template.spec.nodeSelector".into())]
        );
        let not_ready = base_cluster_with(|items| {
            items[0]["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}])
        });
        assert_eq!(fired_in(vm.clone(), &not_ready).len(), 1);
        let no_handler = base_cluster_with(|items| {
            items[0]["metadata"]["labels"]["kubevirt.io/schedulable"] = json!("false")
        });
        assert_eq!(fired_in(vm.clone(), &no_handler).len(), 1);
        assert_eq!(fired_in(vm, &cluster(BASE_CLUSTER)), vec![]);
    }

    fn sized(memory: &str) -> Value {
        valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": memory}});
            spec(vm)["domain"]["memory"]["guest"] = json!(memory);
        })
    }

    #[test]
    fn resources_exceed_capacity_of_every_schedulable_node() {
        let view = cluster(BASE_CLUSTER);
        // worker-2 has 128Gi but a taint the VM does not tolerate: only worker-1 (64Gi) counts.
        assert_eq!(
            fired_in(sized("100Gi"), &view),
            vec![(
                ResourcesExceedCapacity,
                "spec.template.spec.domain.resources.requests.memory".into()
            )]
        );
        assert_eq!(fired_in(sized("64Gi"), &view), vec![]);
        let tolerating = valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "100Gi"}});
            gpu_toleration(vm);
        });
        assert_eq!(fired_in(tolerating, &view), vec![]);
    }

    #[test]
    fn an_overcommitted_guest_is_not_a_bigger_pod() {
        let view = cluster(BASE_CLUSTER);
        // The launcher pod asks for the 8Gi request; the 100Gi guest is overcommitted.
        let overcommitted = valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "8Gi"}});
            spec(vm)["domain"]["memory"]["guest"] = json!("100Gi");
        });
        assert_eq!(fired_in(overcommitted, &view), vec![]);
        // Without a request or limit, the guest memory is what the pod asks for.
        let guest_only = valid_vm_with(|vm| {
            spec(vm)["domain"]["memory"]["guest"] = json!("100Gi");
        });
        assert_eq!(fired_in(guest_only, &view).len(), 1);
    }

    #[test]
    fn only_dedicated_cpus_count_whole() {
        let view = cluster(BASE_CLUSTER);
        let cpus = |dedicated: bool| {
            valid_vm_with(|vm| {
                spec(vm)["domain"]["cpu"] =
                    json!({"cores": 20, "dedicatedCpuPlacement": dedicated});
                spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "1Gi"}});
            })
        };
        assert_eq!(
            fired_in(cpus(true), &view),
            vec![(
                ResourcesExceedCapacity,
                "spec.template.spec.domain.resources.requests.cpu".into()
            )]
        );
        // Shared vCPUs are requested at a fraction: 20 of them fit a 16-CPU node.
        assert_eq!(fired_in(cpus(false), &view), vec![]);
    }

    #[test]
    fn huge_dedicated_cpu_counts_saturate() {
        let view = cluster(BASE_CLUSTER);
        let huge = valid_vm_with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({
                "cores": u32::MAX, "sockets": u32::MAX, "threads": u32::MAX,
                "dedicatedCpuPlacement": true
            });
        });
        assert_eq!(
            fired_in(huge, &view),
            vec![(
                ResourcesExceedCapacity,
                "spec.template.spec.domain.resources.requests.cpu".into()
            )]
        );
    }

    #[test]
    fn cpu_model_unavailable() {
        let view = cluster(BASE_CLUSTER);
        let model =
            |model: &str| valid_vm_with(|vm| spec(vm)["domain"]["cpu"] = json!({"model": model}));
        assert_eq!(
            fired_in(model("Skylake-Server"), &view),
            vec![(
                CpuModelUnavailable,
                "spec.template.spec.domain.cpu.model".into()
            )]
        );
        assert_eq!(fired_in(model("Haswell"), &view), vec![]);
        assert_eq!(fired_in(model("host-passthrough"), &view), vec![]);
        // Without any CPU-model label the node labeller is off: unknown, not missing.
        let unlabelled = base_cluster_with(|items| {
            for item in items.iter_mut().filter(|i| i["kind"] == "Node") {
                item["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .retain(|k, _| !k.starts_with("cpu-model"));
            }
        });
        assert_eq!(fired_in(model("Skylake-Server"), &unlabelled), vec![]);
    }

    #[test]
    fn device_unavailable() {
        let view = cluster(BASE_CLUSTER);
        let gpu = |tolerate: bool| {
            valid_vm_with(|vm| {
                spec(vm)["domain"]["devices"]["gpus"] =
                    json!([{"name": "gpu1", "deviceName": "nvidia.com/GA102GL_A10"}]);
                if tolerate {
                    gpu_toleration(vm);
                }
            })
        };
        assert_eq!(
            fired_in(gpu(false), &view),
            vec![(
                DeviceUnavailable,
                "spec.template.spec.domain.devices.gpus[0].deviceName".into()
            )]
        );
        assert_eq!(fired_in(gpu(true), &view), vec![]);
    }
}
