//! What the launcher pod needs from a node besides CPU and memory: the hypervisor device, a
//! CPU-manager node for dedicated CPUs, hugepages of the VM's page size.
//!
//! KubeVirt's admission checks none of these: virt-api stores the VM, virt-controller renders a
//! launcher pod that asks for the device, the label or the pages, and the pod stays Pending. So
//! these rules duplicate no KubeVirt message. Like the scheduling rules, each looks at the nodes
//! the VM could otherwise land on (`Placement::schedulable`) and says nothing when that set is
//! empty: an earlier stage has its own finding.
//!
//! `hugepages-<size>` is listed by every node that runs a kubelet, at 0 when the node has none;
//! `devices.kubevirt.io/kvm` by every node where virt-handler's device plugin has registered,
//! with its devices in capacity and only the healthy ones (none without `/dev/kvm`) in
//! allocatable. A node that does not list the resource at all (a hand-written snapshot, an
//! autoscaler node template), or lists the device at 0 capacity (the plugin has not registered
//! since the kubelet restarted), is given the benefit of the doubt.

use super::{Emitter, VmContext};
use crate::cluster::kubevirt::{CPU_MANAGER_GATE, GateSetting};
use crate::cluster::{Kind, KubeVirt, Lookup, NodeIndex, NodeSet};
use crate::model::{Labels, TEMPLATE_SPEC};

/// The nodes of `set` the rule may judge, with the index; `None` when Nodes are unknown or no
/// node is left before this stage.
fn candidates<'a>(cx: &'a VmContext<'_>) -> Option<(&'a NodeIndex, &'a NodeSet)> {
    let nodes = cx.cluster?.nodes()?;
    let set = cx.placement()?.schedulable.as_ref();
    (!set.is_clear()).then_some((nodes, set))
}

/// Whether every node of `set` lists `resource` in its allocatable (at any amount).
fn every_node_lists(nodes: &NodeIndex, set: &NodeSet, resource: &str) -> bool {
    set.ones()
        .all(|i| nodes.node(i).allocatable.contains_key(resource))
}

/// Where a finding about the matching nodes points: the nodeSelector when the VM has one.
fn placement_path(cx: &VmContext<'_>) -> String {
    if cx.spec.node_selector.is_empty() {
        TEMPLATE_SPEC.to_string()
    } else {
        format!("{TEMPLATE_SPEC}.nodeSelector")
    }
}

/// `kvm-unavailable`: the launcher asks for one `devices.kubevirt.io/kvm` (`mshv` with the
/// hyperv-direct hypervisor, KubeVirt ≥ 1.8) unless the CR turns on software emulation; on a
/// node without `/dev/kvm` the plugin registers its devices unhealthy (`generic_device.go`).
pub fn kvm_unavailable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(config) = cx.kubevirt().and_then(KubeVirt::configuration) else {
        return;
    };
    if config.use_emulation {
        return;
    }
    let Some(device) = config.hypervisor().device_resource() else {
        return; // a hypervisor this tool does not know
    };
    if virt_handler_restarting(cx) {
        return;
    }
    let Some((nodes, set)) = candidates(cx) else {
        return;
    };
    if !nodes.with_resource(set, device).is_clear()
        || !set
            .ones()
            .all(|i| nodes.node(i).no_healthy_devices.iter().any(|d| d == device))
    {
        return;
    }
    out.emit(
        placement_path(cx),
        format!(
            "none of {} matching nodes has {device} (hardware virtualization): enable it or use other nodes",
            set.count_ones(..)
        ),
    );
}

/// Some virt-handler pod is not ready: a crashed or restarting one leaves its node's devices
/// at 0 allocatable (the kubelet keeps them registered, unhealthy, for minutes), which looks
/// like a node without `/dev/kvm` until it is back. Where the view cannot read the DaemonSet,
/// nothing is known either way and the nodes speak alone.
fn virt_handler_restarting(cx: &VmContext<'_>) -> bool {
    let (Some(view), Some(kubevirt)) = (cx.cluster, cx.kubevirt()) else {
        return false;
    };
    match view.readiness(Kind::DaemonSet, &kubevirt.namespace) {
        Lookup::Present(readiness) => readiness
            .counts
            .is_none_or(|counts| counts.ready < counts.desired),
        Lookup::Absent | Lookup::Unknown => false,
    }
}

/// `dedicated-cpu-unavailable`: virt-controller adds `<label>=true` to the launcher's
/// nodeSelector for dedicated CPUs (`nodeselectorrenderer.go`); virt-handler sets it only with
/// the CPUManager gate on a node whose kubelet runs the static CPU manager, `false` elsewhere
/// (`heartbeat.go`). The label depends on KubeVirt's version, so an unknown version reports
/// nothing; so does a matching node without the label.
pub fn dedicated_cpu_unavailable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let dedicated = cx
        .spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.dedicated_cpu_placement)
        == Some(true);
    if !dedicated {
        return;
    }
    let Some(kubevirt) = cx.kubevirt() else {
        return;
    };
    let Some(label) = kubevirt.cpu_manager_label() else {
        return;
    };
    let Some((nodes, set)) = candidates(cx) else {
        return;
    };
    let selector: Labels = [(label.into(), "true".into())].into_iter().collect();
    if !nodes.matching_selector(&selector).is_disjoint(set) {
        return;
    }
    // virt-handler writes the label, true or false, on every node it runs on: a node without it
    // (an autoscaler node template, a node not yet labelled) may still turn out to have it.
    if !set.ones().all(|i| nodes.node(i).labels.contains_key(label)) {
        return;
    }
    let gate_on = kubevirt
        .configuration()
        .is_some_and(|c| c.feature_gate(CPU_MANAGER_GATE) == GateSetting::Enabled);
    let remedy = if gate_on {
        "run a kubelet with cpuManagerPolicy static"
    } else {
        "enable the CPUManager gate in the KubeVirt CR"
    };
    out.emit(
        format!("{TEMPLATE_SPEC}.domain.cpu.dedicatedCpuPlacement"),
        format!("no matching node has {label}=true for dedicated CPUs: {remedy}"),
    );
}

/// `hugepages-unavailable`: the launcher asks for the guest memory (or the smaller memory
/// request) as `hugepages-<pageSize>` (`WithHugePages`); at least that much must be allocatable
/// on some node. The amount is the launcher's lower bound, so an unknown KubeVirt CR (memory
/// overcommit) only makes the rule ask for less.
pub fn hugepages_unavailable(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let memory = cx.spec.domain.memory.as_ref();
    if memory.and_then(|m| m.hugepages.as_ref()).is_none() {
        return; // the usual VM: no launcher figures needed
    }
    let Some(hugepages) = cx.launcher().and_then(|l| l.hugepages.as_ref()) else {
        return;
    };
    let Some((nodes, set)) = candidates(cx) else {
        return;
    };
    let resource = hugepages.resource.as_str();
    let wanted = hugepages.amount.at_least;
    // Nodes with some pages (any count above 0): a VM cannot run on a node with none.
    let holders = nodes.with_resource(set, resource);
    let amount = |i: usize| nodes.node(i).allocatable.get(resource).copied();
    if holders
        .ones()
        .any(|i| amount(i).is_some_and(|have| have >= wanted))
        || !every_node_lists(nodes, set, resource)
    {
        return;
    }
    let largest = holders
        .ones()
        .filter_map(amount)
        .max()
        .map_or_else(|| "none".to_string(), super::scheduling::memory_text);
    out.emit(
        format!("{TEMPLATE_SPEC}.domain.memory.hugepages.pageSize"),
        format!(
            "needs {} of {resource}; no matching node has that much (largest: {largest}): reserve more hugepages",
            super::scheduling::memory_text(wanted),
        ),
    );
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    /// [`BASE_CLUSTER`] with a KubeVirt CR and each node's allocatable / labels edited.
    fn cluster_with(cr: Option<Value>, node: impl Fn(&mut Value)) -> crate::cluster::ClusterView {
        base_cluster_with(|items| {
            for item in items.iter_mut().filter(|i| i["kind"] == "Node") {
                node(item);
            }
            items.extend(cr);
        })
    }

    /// The kubelet's `devices.kubevirt.io/kvm` as virt-handler's device plugin leaves it: 1,000
    /// devices registered, `amount` of them healthy (all or none).
    fn kvm(amount: &'static str) -> impl Fn(&mut Value) {
        move |node| {
            node["status"]["capacity"]["devices.kubevirt.io/kvm"] = json!("1k");
            node["status"]["allocatable"]["devices.kubevirt.io/kvm"] = json!(amount);
        }
    }

    #[test]
    fn kvm_unavailable_leaves_a_node_whose_plugin_has_not_registered_unknown() {
        // After a reboot the kubelet lists the resource from its checkpoint at 0 capacity and
        // 0 allocatable until virt-handler's device plugin registers again: not yet known.
        let cr = || Some(kubevirt_cr("v1.6.2", json!({})));
        let restarted = |node: &mut Value| {
            node["status"]["capacity"]["devices.kubevirt.io/kvm"] = json!("0");
            node["status"]["allocatable"]["devices.kubevirt.io/kvm"] = json!("0");
        };
        assert_eq!(fired_in(valid_vm(), &cluster_with(cr(), restarted)), vec![]);
        // A node listing allocatable 0 and no capacity (a hand-written snapshot): unknown too.
        let allocatable_only = |node: &mut Value| {
            node["status"]["allocatable"]["devices.kubevirt.io/kvm"] = json!("0");
        };
        assert_eq!(
            fired_in(valid_vm(), &cluster_with(cr(), allocatable_only)),
            vec![]
        );
    }

    #[test]
    fn kvm_unavailable_waits_while_virt_handler_is_not_ready() {
        let with_handler = |ready: u32| {
            base_cluster_with(|items| {
                for item in items.iter_mut().filter(|i| i["kind"] == "Node") {
                    kvm("0")(item);
                }
                items.push(kubevirt_cr("v1.6.2", json!({})));
                items.push(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "virt-handler", "namespace": "kubevirt"},
                    "status": {"desiredNumberScheduled": 3, "numberReady": ready}}));
            })
        };
        assert_eq!(fired_in(valid_vm(), &with_handler(2)), vec![]);
        assert_eq!(
            fired_in(valid_vm(), &with_handler(3)),
            vec![(KvmUnavailable, "spec.template.spec".into())]
        );
    }

    #[test]
    fn kvm_unavailable_when_every_matching_node_lists_none() {
        let cr = || Some(kubevirt_cr("v1.6.2", json!({})));
        let broken = cluster_with(cr(), kvm("0"));
        assert_eq!(
            fired_in(valid_vm(), &broken),
            vec![(KvmUnavailable, "spec.template.spec".into())]
        );
        // The twin: a node with /dev/kvm.
        assert_eq!(fired_in(valid_vm(), &cluster_with(cr(), kvm("1k"))), vec![]);
        // Only the nodes the VM could land on count: worker-2 has KVM but a taint.
        let gpu_node_only = cluster_with(cr(), |node| {
            let amount = if node["metadata"]["name"] == "worker-2" {
                "1k"
            } else {
                "0"
            };
            kvm(amount)(node);
        });
        assert_eq!(
            fired_in(valid_vm(), &gpu_node_only),
            vec![(KvmUnavailable, "spec.template.spec".into())]
        );
        // A node that does not list the device at all is not known to lack it.
        assert_eq!(fired_in(valid_vm(), &cluster_with(cr(), |_| ())), vec![]);
        // No CR: whether KubeVirt emulates is unknown.
        assert_eq!(fired_in(valid_vm(), &cluster_with(None, kvm("0"))), vec![]);
    }

    #[test]
    fn kvm_unavailable_follows_emulation_and_the_hypervisor() {
        let emulating = kubevirt_cr(
            "v1.6.2",
            json!({"developerConfiguration": {"useEmulation": true}}),
        );
        assert_eq!(
            fired_in(valid_vm(), &cluster_with(Some(emulating), kvm("0"))),
            vec![]
        );
        let hyperv = |gates: Value| {
            kubevirt_cr(
                "v1.8.0",
                json!({"developerConfiguration": {"featureGates": gates},
                       "hypervisors": [{"name": "hyperv-direct"}]}),
            )
        };
        let mshv_nodes = |node: &mut Value| {
            kvm("0")(node);
            node["status"]["allocatable"]["devices.kubevirt.io/mshv"] = json!("1k");
        };
        // hyperv-direct asks for mshv, which the nodes have.
        let with_gate = cluster_with(Some(hyperv(json!(["ConfigurableHypervisor"]))), mshv_nodes);
        assert_eq!(fired_in(valid_vm(), &with_gate), vec![]);
        // Without its gate KubeVirt stays on KVM, which they lack.
        let without_gate = cluster_with(Some(hyperv(json!([]))), mshv_nodes);
        assert_eq!(
            fired_in(valid_vm(), &without_gate),
            vec![(KvmUnavailable, "spec.template.spec".into())]
        );
        let message = &findings_in(valid_vm(), &without_gate)[0].message;
        assert!(message.contains("devices.kubevirt.io/kvm"), "{message}");
    }

    fn dedicated() -> Value {
        valid_vm_with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({"cores": 2, "dedicatedCpuPlacement": true});
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "1Gi"}});
        })
    }

    const PATH: &str = "spec.template.spec.domain.cpu.dedicatedCpuPlacement";

    #[test]
    fn dedicated_cpu_unavailable_leaves_a_node_without_the_label_unknown() {
        // virt-handler writes the label (true or false) on every node it runs on; a node without
        // it (an autoscaler node template, a node virt-handler has not labelled yet) may get it.
        let template = crate::cluster::nodes::NodeTemplate {
            name: "pinned-pool".into(),
            labels: Default::default(),
            taints: vec![],
            allocatable: [("cpu", "16"), ("memory", "64Gi")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), crate::model::QuantityText::new(v)))
                .collect(),
        };
        let cr = || Some(kubevirt_cr("v1.7.4", json!({})));
        let with_template =
            cluster_with(cr(), cpu_manager("false", None)).with_node_templates(&[template]);
        assert_eq!(fired_in(dedicated(), &with_template), vec![]);
        // The twin: without the template every node says false.
        assert_eq!(
            fired_in(dedicated(), &cluster_with(cr(), cpu_manager("false", None))),
            vec![(DedicatedCpuUnavailable, PATH.into())]
        );
    }

    /// A node labelled by virt-handler: `cpumanager` (and, since 1.8, `kubevirt.io/cpumanager`)
    /// as given.
    fn cpu_manager(old: &'static str, new: Option<&'static str>) -> impl Fn(&mut Value) {
        move |node| {
            node["metadata"]["labels"]["cpumanager"] = json!(old);
            if let Some(new) = new {
                node["metadata"]["labels"]["kubevirt.io/cpumanager"] = json!(new);
            }
        }
    }

    #[test]
    fn dedicated_cpu_unavailable_reads_the_label_of_the_release() {
        let at = |version: &str| Some(kubevirt_cr(version, json!({})));
        // 1.8 selects kubevirt.io/cpumanager, not the old label.
        let only_old = cpu_manager("true", Some("false"));
        assert_eq!(
            fired_in(dedicated(), &cluster_with(at("v1.8.1"), &only_old)),
            vec![(DedicatedCpuUnavailable, PATH.into())]
        );
        let only_new = cpu_manager("false", Some("true"));
        assert_eq!(
            fired_in(dedicated(), &cluster_with(at("v1.8.1"), &only_new)),
            vec![]
        );
        // Before 1.8 the launcher selects cpumanager=true.
        assert_eq!(
            fired_in(dedicated(), &cluster_with(at("v1.7.4"), &only_old)),
            vec![]
        );
        assert_eq!(
            fired_in(dedicated(), &cluster_with(at("v1.7.4"), &only_new)),
            vec![(DedicatedCpuUnavailable, PATH.into())]
        );
        // A 1.8 cluster whose nodes virt-handler 1.8 has not labelled yet: unknown.
        assert_eq!(
            fired_in(
                dedicated(),
                &cluster_with(at("v1.8.1"), cpu_manager("false", None))
            ),
            vec![]
        );
        // A build that straddles 1.8 (its rc) or no CR: the label is unknown.
        let none = cpu_manager("false", Some("false"));
        assert_eq!(
            fired_in(dedicated(), &cluster_with(at("v1.8.0-rc.1"), &none)),
            vec![]
        );
        assert_eq!(fired_in(dedicated(), &cluster_with(None, &none)), vec![]);
        // Shared CPUs need no label.
        assert_eq!(
            fired_in(valid_vm(), &cluster_with(at("v1.7.4"), &none)),
            vec![]
        );
    }

    #[test]
    fn dedicated_cpu_unavailable_says_what_to_turn_on() {
        let message = |configuration: Value| {
            let view = cluster_with(
                Some(kubevirt_cr("v1.8.1", configuration)),
                cpu_manager("false", Some("false")),
            );
            findings_in(dedicated(), &view)[0].message.clone()
        };
        assert_eq!(
            message(json!({})),
            "no matching node has kubevirt.io/cpumanager=true for dedicated CPUs: \
             enable the CPUManager gate in the KubeVirt CR"
        );
        let gated = message(json!({"developerConfiguration": {"featureGates": ["CPUManager"]}}));
        assert!(
            gated.ends_with("run a kubelet with cpuManagerPolicy static"),
            "{gated}"
        );
    }

    fn hugepages(guest: &str) -> Value {
        valid_vm_with(|vm| {
            spec(vm)["domain"]["memory"] =
                json!({"guest": guest, "hugepages": {"pageSize": "1Gi"}});
            spec(vm)["domain"]["resources"] = json!({});
        })
    }

    fn pages(amount: &'static str) -> impl Fn(&mut Value) {
        move |node| node["status"]["allocatable"]["hugepages-1Gi"] = json!(amount)
    }

    #[test]
    fn hugepages_unavailable_compares_the_guest_with_the_pages() {
        let path = "spec.template.spec.domain.memory.hugepages.pageSize";
        let cr = || Some(kubevirt_cr("v1.6.2", json!({})));
        assert_eq!(
            fired_in(hugepages("8Gi"), &cluster_with(cr(), pages("0"))),
            vec![(HugepagesUnavailable, path.into())]
        );
        let small = cluster_with(cr(), pages("4Gi"));
        assert_eq!(
            fired_in(hugepages("8Gi"), &small),
            vec![(HugepagesUnavailable, path.into())]
        );
        let message = &findings_in(hugepages("8Gi"), &small)[0].message;
        assert!(
            message.contains("8Gi of hugepages-1Gi") && message.contains("largest: 4Gi"),
            "{message}"
        );
        // The twin: enough pages.
        assert_eq!(
            fired_in(hugepages("8Gi"), &cluster_with(cr(), pages("16Gi"))),
            vec![]
        );
        // Pages of another size do not count; a node that lists no size at all is unknown.
        let other_size = cluster_with(cr(), |node| {
            node["status"]["allocatable"]["hugepages-1Gi"] = json!("0");
            node["status"]["allocatable"]["hugepages-2Mi"] = json!("64Gi");
        });
        assert_eq!(fired_in(hugepages("8Gi"), &other_size).len(), 1);
        assert_eq!(
            fired_in(hugepages("8Gi"), &cluster_with(cr(), |_| ())),
            vec![]
        );
    }

    #[test]
    fn hugepages_are_the_memory_request_when_it_is_below_the_guest() {
        // KubeVirt puts min(request, guest) in hugepages: a 2Gi request of an 8Gi guest fits 4Gi.
        let requested = valid_vm_with(|vm| {
            spec(vm)["domain"]["memory"] =
                json!({"guest": "8Gi", "hugepages": {"pageSize": "1Gi"}});
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "2Gi"}});
        });
        let cr = Some(kubevirt_cr("v1.6.2", json!({})));
        assert_eq!(fired_in(requested, &cluster_with(cr, pages("4Gi"))), vec![]);
        // memoryOvercommit 200 asks for half the guest: 4Gi of pages do for 8Gi.
        let overcommit = kubevirt_cr(
            "v1.6.2",
            json!({"developerConfiguration": {"memoryOvercommit": 200}}),
        );
        let view = cluster_with(Some(overcommit), pages("4Gi"));
        assert_eq!(fired_in(hugepages("8Gi"), &view), vec![]);
        // Without a CR the overcommit is unknown: only a node without pages is certain to fail.
        assert_eq!(
            fired_in(hugepages("8Gi"), &cluster_with(None, pages("4Gi"))),
            vec![]
        );
        assert_eq!(
            fired_in(hugepages("8Gi"), &cluster_with(None, pages("0"))).len(),
            1
        );
    }
}
