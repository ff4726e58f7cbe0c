//! Where the VM's launcher pod could run. The scheduler filters nodes in stages; each rule
//! reports the first stage that leaves none, so one cause gives one finding. Capacity is
//! conservative: allocatable, not what is free, so only a VM that could never fit fires.

use super::{Emitter, VmContext};
use crate::cluster::KubeVirt;
use crate::model::{ParsedQuantity, TEMPLATE_SPEC};

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

/// A byte amount for messages: whole Gi (`8Gi`), else Mi rounded up (`64052Mi`), so that a
/// request and an allocatable compare at a glance.
pub(super) fn memory_text(amount: ParsedQuantity) -> String {
    const MI: u128 = 1 << 20;
    const GI: u128 = 1 << 30;
    match amount.ceil_scaled(0) {
        Some(bytes) if bytes >= GI && bytes % GI == 0 => format!("{}Gi", bytes / GI),
        Some(bytes) => format!("{}Mi", bytes.div_ceil(MI)),
        None => amount.to_string(),
    }
}

/// CPUs for messages: whole, else millicores rounded up (as the scheduler counts them).
fn cpu_text(amount: ParsedQuantity) -> String {
    match amount.ceil_scaled(-3) {
        Some(millis) if millis % 1000 == 0 => (millis / 1000).to_string(),
        Some(millis) => format!("{millis}m"),
        None => amount.to_string(),
    }
}

/// The launcher pod's CPU and memory requests as KubeVirt computes them ([`crate::launcher`]:
/// the VM's request, else its limit, else guest × 100 ÷ memoryOvercommit, plus KubeVirt's
/// overhead; CPU by request, cpuRequest, cpuAllocationRatio or whole dedicated CPUs), against
/// the allocatable of the nodes the VM could land on. The lower bound (`at_least`) over every
/// release and configuration the view allows is compared, so a VM that some possible KubeVirt
/// would fit is never reported; without a KubeVirt CR that bound leaves out what the CR
/// decides (guest-derived memory, ratio-derived CPUs). Hugepages are their own rule.
pub fn resources_exceed_capacity(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    if placement.schedulable.is_clear() {
        return;
    }
    let Some(launcher) = cx.launcher() else {
        return;
    };
    if let Some((field, message)) = capacity_shortfall(cx, launcher, placement, nodes) {
        out.emit(
            format!("{TEMPLATE_SPEC}.domain.resources.requests.{field}"),
            message,
        );
        return;
    }
    // No KubeVirt CR in the view: the bound above leaves out what its configuration decides
    // (guest-derived memory, ratio-derived CPUs). Judged by KubeVirt's defaults, it warns.
    if let Some(assumed) = cx.launcher_by_defaults()
        && let Some((field, message)) = capacity_shortfall(cx, assumed, placement, nodes)
    {
        out.emit(
            format!("{TEMPLATE_SPEC}.domain.resources.requests.{field}"),
            format!("{message} (assumed KubeVirt defaults: no KubeVirt CR)"),
        )
        .assuming("KubeVirt's default configuration (no KubeVirt CR in the view)");
    }
}

/// Which of CPU and memory no matching node has room for, and what to say; `None` when some
/// node fits the pod.
fn capacity_shortfall(
    cx: &VmContext<'_>,
    launcher: &crate::launcher::LauncherRequest,
    placement: &super::Placement<'_>,
    nodes: &crate::cluster::NodeIndex,
) -> Option<(&'static str, String)> {
    let positive = |q: ParsedQuantity| (q > ParsedQuantity::ZERO).then_some(q);
    // The whole pod, as the scheduler adds it up (KubeVirt's support containers included).
    let cpu = positive(launcher.pod.cpu.at_least);
    let memory = positive(launcher.pod.memory.at_least);
    if cpu.is_none() && memory.is_none() {
        return None;
    }
    if nodes
        .first_fitting(&placement.schedulable, cpu, memory)
        .is_some()
    {
        return None;
    }
    let (largest_cpu, largest_memory) = nodes.largest(&placement.schedulable);
    let above = |want: Option<ParsedQuantity>, have: Option<ParsedQuantity>| {
        want.zip(have).filter(|(want, have)| want > have)
    };
    // The overhead is in the request unless the VM overcommits it (and has no hugepages, whose
    // memory request is the overhead).
    let with_overhead = cx.spec.domain.resources.overcommit_guest_overhead != Some(true)
        || launcher.hugepages.is_some();
    let overhead = positive(launcher.memory_overhead.at_least)
        .filter(|_| with_overhead)
        .map(|o| format!(" ({} KubeVirt overhead)", memory_text(o)))
        .unwrap_or_default();
    Some(if let Some((want, have)) = above(memory, largest_memory) {
        (
            "memory",
            format!(
                "launcher pod needs {} memory{overhead}; the largest matching node has {}: lower it or add a node",
                memory_text(want),
                memory_text(have)
            ),
        )
    } else if let Some((want, have)) = above(cpu, largest_cpu) {
        (
            "cpu",
            format!(
                "launcher pod needs {} CPUs; the largest matching node has {}: lower it or add a node",
                cpu_text(want),
                cpu_text(have)
            ),
        )
    } else {
        let show = |q: Option<ParsedQuantity>, text: fn(ParsedQuantity) -> String| {
            q.map_or_else(|| "?".to_string(), text)
        };
        (
            "cpu",
            format!(
                "launcher pod needs {} CPUs and {} memory{overhead}; no matching node has both",
                show(cpu, cpu_text),
                show(memory, memory_text)
            ),
        )
    })
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

/// A device KubeVirt's CR does not permit is `host-device-not-permitted`'s: virt-controller
/// stops before the scheduler would look for it.
pub fn device_unavailable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let (Some(placement), Some(nodes)) = (cx.placement(), cx.cluster.and_then(|v| v.nodes()))
    else {
        return;
    };
    if placement.schedulable.is_clear() {
        return;
    }
    let permitted = cx
        .kubevirt()
        .and_then(KubeVirt::configuration)
        .and_then(|c| c.permitted_host_devices.as_ref());
    for device in cx.plugin_devices() {
        if permitted.is_some_and(|p| !p.permits(device.name)) {
            continue;
        }
        if nodes
            .with_resource(&placement.schedulable, device.name)
            .is_clear()
        {
            out.emit(
                device.path(),
                format!(
                    "device {:?} is allocatable on none of {} matching nodes",
                    device.name,
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
        assert_eq!(fired_in(sized("60Gi"), &view), vec![]);
        let tolerating = valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "100Gi"}});
            gpu_toleration(vm);
        });
        assert_eq!(fired_in(tolerating, &view), vec![]);
    }

    /// One node with `memory` allocatable, and a KubeVirt v1.8.1 CR on amd64 when `kubevirt`.
    fn one_node(memory: &str, kubevirt: bool) -> crate::cluster::ClusterView {
        let mut items = vec![json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "edge", "labels": {"kubevirt.io/schedulable": "true"}},
            "status": {"allocatable": {"cpu": "16", "memory": memory},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        })];
        if kubevirt {
            items.push(kubevirt_cr("v1.8.1", json!({})));
        }
        cluster(&json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string())
    }

    #[test]
    fn the_launcher_overhead_decides_a_vm_at_the_edge() {
        // 2Gi requested, 1 vCPU, graphics on. KubeVirt v1.8 (GetMemoryOverhead,
        // hypervisorbackend.go): page tables floor(2,147,484,000 / 512) = 4Mi, daemons 220Mi,
        // one vCPU 8Mi, IO thread 8Mi, video 32Mi: 272Mi. The pod asks 2Gi + 272Mi = 2320Mi.
        let vm = valid_vm_with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({"cores": 1});
            spec(vm)["domain"]["memory"]["guest"] = json!("2Gi");
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "2Gi"}});
        });
        let memory = "spec.template.spec.domain.resources.requests.memory";
        // Fits without the overhead (2Gi < 2148Mi), not with it: reported, with or without
        // the CR (the smallest overhead of any release is 246Mi here).
        for kubevirt in [true, false] {
            assert_eq!(
                fired_in(vm.clone(), &one_node("2148Mi", kubevirt)),
                vec![(ResourcesExceedCapacity, memory.into())],
                "CR known: {kubevirt}"
            );
        }
        assert_eq!(
            findings_in(vm.clone(), &one_node("2319Mi", true))[0].message,
            "launcher pod needs 2320Mi memory (272Mi KubeVirt overhead); \
             the largest matching node has 2319Mi: lower it or add a node"
        );
        // Fits with the overhead: not reported.
        assert_eq!(fired_in(vm.clone(), &one_node("2320Mi", true)), vec![]);
        // Overhead the VM overcommits is not in the request.
        let overcommitted = valid_vm_with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({"cores": 1});
            spec(vm)["domain"]["resources"] =
                json!({"requests": {"memory": "2Gi"}, "overcommitGuestOverhead": true});
        });
        assert_eq!(fired_in(overcommitted, &one_node("2148Mi", true)), vec![]);
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
        // Without a request or limit, KubeVirt asks for guest × 100 ÷ memoryOvercommit.
        let guest_only = || {
            valid_vm_with(|vm| {
                spec(vm)["domain"]["resources"] = json!({});
                spec(vm)["domain"]["memory"]["guest"] = json!("100Gi");
            })
        };
        let with_overcommit = |percent: u32| {
            base_cluster_with(|items| {
                items.push(kubevirt_cr(
                    "v1.6.2",
                    json!({"developerConfiguration": {"memoryOvercommit": percent}}),
                ))
            })
        };
        assert_eq!(fired_in(guest_only(), &with_overcommit(100)).len(), 1);
        assert_eq!(fired_in(guest_only(), &with_overcommit(200)), vec![]);
        // Without the CR the overcommit is unknown: judged by KubeVirt's defaults (100 %), it
        // is a warning that names the assumption, never a denial.
        let assumed = findings_in(guest_only(), &view);
        assert_eq!(assumed.len(), 1, "{assumed:?}");
        assert_eq!(
            assumed[0].severity,
            crate::rules::finding::Severity::Warning
        );
        assert!(assumed[0].assumption.is_some(), "{assumed:?}");
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
        // Go multiplies the counts in uint32: 4,294,967,295 vCPUs, whose 8Mi of page tables
        // each make the memory overhead the first thing no node has.
        let found = findings_in(huge, &view);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].path,
            "spec.template.spec.domain.resources.requests.memory"
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
