//! ResourceQuotas of the VM's namespace against what the VM asks of them: its launcher pod's
//! requests and limits (KubeVirt's overhead and automatic limits included, from
//! [`crate::launcher`]), one pod and one VMI when it starts, and the VM object itself.
//!
//! Kubernetes' quota admission (the ResourceQuota plugin with the pod evaluator,
//! `pkg/quota/v1/evaluator/core/pods.go`) rejects an object when, for a resource it uses (zero
//! amounts dropped), `status.used` + its usage is above `status.hard`, and rejects a pod whose
//! containers lack a request or limit a quota tracks ("must specify limits.memory"). Scoped
//! quotas (`scopes`, `scopeSelector`) are left out: which pods they count is not always known
//! from the view. The figures are the compute container's: the pod's other containers only
//! add to them, so a VM reported here is over whatever they ask.

use super::amounts::{certain_limit, figure, overhead_note, path, show};
use super::{Emitter, VmContext};
use crate::cluster::{ClusterView, QuotaInfo};
use crate::launcher::{LauncherRequest, Limit};
use crate::model::ParsedQuantity;

/// What of this VM a quota's `status.used` may already hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Not in the view under its name (a CREATE, or a VM without a name): neither the VM nor a
    /// launcher pod of it is counted.
    New,
    /// In the view and not started: the VM object is counted, no launcher pod.
    Stopped,
    /// In the view and started, so its launcher pod may be counted already (an UPDATE of a
    /// running VM); or VirtualMachines are unknown.
    MaybeRunning,
}

/// The rules do not see CREATE or UPDATE: a VM the view already holds under its own name is
/// the one being updated (or diagnosed).
fn standing(cx: &VmContext<'_>, view: &ClusterView) -> Standing {
    let Some(name) = cx.vm.metadata.name.as_deref() else {
        return Standing::New;
    };
    let Some(mut vms) = view.virtual_machines(cx.namespace) else {
        return Standing::MaybeRunning;
    };
    match vms.find(|(other, _)| *other == name) {
        None => Standing::New,
        Some((_, vm)) if vm.starts => Standing::MaybeRunning,
        Some(_) => Standing::Stopped,
    }
}

/// What a quota key asks of the VM, and what of it `status.used` may already count.
#[derive(Debug, Clone, Copy)]
struct Demand {
    amount: ParsedQuantity,
    counts: Counts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counts {
    /// The launcher pod (and the VMI it runs).
    Pod,
    /// The VirtualMachine object.
    Vm,
}

fn demand(cx: &VmContext<'_>, pod: Option<&LauncherRequest>, key: &str) -> Option<Demand> {
    let one = || ParsedQuantity::from_integer(1);
    match key {
        // One launcher pod and one VMI for a VM that starts.
        "pods" | "count/pods" | "count/virtualmachineinstances.kubevirt.io" => {
            cx.vm.will_start().then(|| Demand {
                amount: one(),
                counts: Counts::Pod,
            })
        }
        "count/virtualmachines.kubevirt.io" => Some(Demand {
            amount: one(),
            counts: Counts::Vm,
        }),
        _ => {
            let (resource, limit) = resource_of(key)?;
            let pod = pod?;
            let figure = figure(pod, resource)?;
            let bound = match (limit, resource) {
                (true, _) => certain_limit(figure.limit)?,
                // Quota counts the whole pod: KubeVirt's support containers too.
                (false, "cpu") => pod.pod.cpu,
                (false, "memory") => pod.pod.memory,
                (false, _) => figure.request,
            };
            Some(Demand {
                amount: bound.at_least,
                counts: Counts::Pod,
            })
        }
    }
}

/// `requests.X` / `limits.X` (and `cpu`, `memory`, `ephemeral-storage`, which quotas read as
/// requests) as (resource, is a limit). Quota admission counts limits of these three only
/// (`podResources` in `pkg/quota/v1/evaluator/core/pods.go`): an extended resource's
/// `limits.<name>` is accepted in `hard` and never counted.
fn resource_of(key: &str) -> Option<(&str, bool)> {
    const COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
    if let Some(resource) = key.strip_prefix("requests.") {
        Some((resource, false))
    } else if let Some(resource) = key.strip_prefix("limits.") {
        COMPUTE.contains(&resource).then_some((resource, true))
    } else if COMPUTE.contains(&key) {
        Some((key, false))
    } else {
        None
    }
}

/// Where a count finding points: what makes the VM start, or the namespace it is created in.
fn count_path(cx: &VmContext<'_>, key: &str) -> String {
    if key == "count/virtualmachines.kubevirt.io" {
        "metadata.namespace".to_string()
    } else if cx.vm.spec.running.is_some() && cx.vm.spec.run_strategy.is_none() {
        "spec.running".to_string()
    } else {
        "spec.runStrategy".to_string()
    }
}

/// The launcher pod (or the VM itself) asks a ResourceQuota of its namespace for more than it
/// has left. Kubernetes' own quota admission rejects the VM object at once for
/// `count/virtualmachines.kubevirt.io` (this says so earlier, in `check`); for the rest it
/// rejects the launcher pod or VMI later, and the VM is stuck.
///
/// A VM the view holds under its own name that starts may have its pod counted in
/// `status.used` already: it is compared with `status.hard` alone, and never for the VM count.
/// A quota whose `status.hard` is not its `spec.hard` yet (just created or edited) is left out.
pub fn resource_quota_exceeded(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    let Some(quotas) = view.resource_quotas(cx.namespace) else {
        return;
    };
    let standing = standing(cx, view);
    let pod = cx.launcher();
    for (name, quota) in quotas.filter(|(_, quota)| !quota.scoped && quota.settled) {
        for (key, hard) in &quota.hard {
            let Some(demand) = demand(cx, pod, key) else {
                continue;
            };
            if demand.amount <= ParsedQuantity::ZERO {
                continue;
            }
            match (demand.counts, standing) {
                (Counts::Vm, Standing::New) | (Counts::Pod, Standing::New | Standing::Stopped) => {
                    check_room(cx, out, pod, name, quota, key, hard, demand.amount);
                }
                (Counts::Pod, Standing::MaybeRunning) => {
                    if demand.amount > *hard {
                        let amount = show_for(key, &demand.amount);
                        out.emit(
                            finding_path(cx, key),
                            format!(
                                "ResourceQuota {name:?} allows {} {key}; launcher alone needs ≥{amount}{}: raise it or shrink VM",
                                show_for(key, hard),
                                note_for(pod, key)
                            ),
                        );
                    }
                }
                (Counts::Vm, Standing::Stopped | Standing::MaybeRunning) => {}
            }
        }
    }
}

/// used + amount > hard, as quota admission computes it; a key without `status.used` is one
/// the quota controller has not counted yet (admission itself refuses then), so nothing.
#[allow(clippy::too_many_arguments)]
fn check_room(
    cx: &VmContext<'_>,
    out: &mut Emitter<'_>,
    pod: Option<&LauncherRequest>,
    name: &str,
    quota: &QuotaInfo,
    key: &str,
    hard: &ParsedQuantity,
    amount: ParsedQuantity,
) {
    let Some(used) = quota.used.get(key) else {
        return;
    };
    let Some(total) = used.checked_add(amount) else {
        return;
    };
    if total <= *hard {
        return;
    }
    let message = if resource_of(key).is_some() {
        let left = hard.checked_sub(*used).unwrap_or(ParsedQuantity::ZERO);
        format!(
            "ResourceQuota {name:?}: {} {key} left, launcher needs ≥{}{}; raise it or shrink VM",
            show_for(key, &left),
            show_for(key, &amount),
            note_for(pod, key)
        )
    } else {
        format!(
            "ResourceQuota {name:?} is full for {key} ({used} of {hard} used): raise it or free one",
        )
    };
    out.emit(finding_path(cx, key), message);
}

fn show_for(key: &str, quantity: &ParsedQuantity) -> String {
    show(
        resource_of(key).map_or(key, |(resource, _)| resource),
        quantity,
    )
}

fn note_for(pod: Option<&LauncherRequest>, key: &str) -> String {
    match (pod, resource_of(key)) {
        (Some(pod), Some((resource, false))) => overhead_note(pod, resource),
        _ => String::new(),
    }
}

fn finding_path(cx: &VmContext<'_>, key: &str) -> String {
    match resource_of(key) {
        Some((resource, limit)) => path(cx, resource, limit),
        None => count_path(cx, key),
    }
}

/// A ResourceQuota of the namespace tracks `limits.cpu` or `limits.memory`, the launcher's
/// compute container will have no such limit (the VM sets none and KubeVirt adds none:
/// AutoResourceLimits is GA since v1.5, behind `AutoResourceLimitsGate` in v1.1–v1.4, absent
/// before), and no LimitRange of type Container gives a default (or a max, which Kubernetes
/// copies into the default): quota admission then rejects the launcher pod ("must specify
/// limits.memory"). When the version or configuration leaves it open whether KubeVirt adds
/// the limit (`Limit::Maybe`), nothing is reported. KubeVirt's own admission does not check
/// this.
pub fn resource_quota_needs_limits(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    let (Some(quotas), Some(ranges), Some(pod)) = (
        view.resource_quotas(cx.namespace),
        view.limit_ranges(cx.namespace),
        cx.launcher(),
    ) else {
        return;
    };
    let quotas: Vec<_> = quotas
        .filter(|(_, quota)| !quota.scoped && quota.settled)
        .collect();
    let ranges: Vec<_> = ranges.collect();
    for (resource, key, limit) in [
        ("cpu", "limits.cpu", pod.cpu.limit),
        ("memory", "limits.memory", pod.memory.limit),
    ] {
        if limit != Limit::Absent {
            continue;
        }
        let Some((name, _)) = quotas
            .iter()
            .find(|(_, quota)| quota.hard.contains_key(key))
        else {
            continue;
        };
        let defaulted = ranges.iter().any(|(_, range)| {
            range.limits.iter().any(|item| {
                item.type_ == "Container"
                    && (item.default.contains_key(resource) || item.max.contains_key(resource))
            })
        });
        if defaulted {
            continue;
        }
        let version = view
            .kubevirt()
            .present()
            .and_then(|kubevirt| kubevirt.version.as_ref())
            .map_or_else(|| "here".to_string(), ToString::to_string);
        out.emit(
            path(cx, resource, true),
            format!(
                "ResourceQuota {name:?} requires {key}; KubeVirt {version} adds none: set domain.resources.{key}"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::{self, *};
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn kubevirt(version: &str, gates: Value) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {"configuration": {"developerConfiguration": {"featureGates": gates}}},
            "status": {"observedKubeVirtVersion": version}})
    }

    fn quota(name: &str, hard: Value, used: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hard": hard}, "status": {"hard": hard, "used": used}})
    }

    fn vm_object(name: &str, run_strategy: &str) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"runStrategy": run_strategy, "template": {"spec": {}}}})
    }

    /// The base cluster with a KubeVirt CR, no LimitRange, VirtualMachines known, and `extra`.
    fn view_with(version: &str, extra: Vec<Value>) -> crate::cluster::ClusterView {
        base_cluster_with(|items| {
            items.push(kubevirt(version, json!([])));
            items.push(json!({"apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "none", "namespace": "other"}, "spec": {"limits": []}}));
            items.push(vm_object("unrelated", "Always"));
            items.extend(extra);
        })
    }

    fn only(rule: RuleId, found: Vec<(RuleId, String)>) -> Vec<(RuleId, String)> {
        found.into_iter().filter(|(r, _)| *r == rule).collect()
    }

    /// 1Gi requested (no limit) on 1 vCPU: the launcher asks 1Gi + overhead (~246–276Mi).
    fn small_vm() -> Value {
        valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "1Gi", "cpu": "1"}});
        })
    }

    #[test]
    fn memory_overhead_counts_against_the_room_left() {
        let memory = "spec.template.spec.domain.resources.requests.memory";
        // 1.1Gi left: 1Gi fits, 1Gi + overhead does not.
        let tight = view_with(
            "v1.6.2",
            vec![quota(
                "compute",
                json!({"requests.memory": "8Gi"}),
                json!({"requests.memory": "6.9Gi"}),
            )],
        );
        let findings: Vec<_> = findings_in(small_vm(), &tight)
            .into_iter()
            .filter(|f| f.rule == ResourceQuotaExceeded)
            .collect();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].path, memory);
        assert!(
            findings[0].message.contains("1.1Gi requests.memory left"),
            "{}",
            findings[0].message
        );
        assert!(
            findings[0].message.contains("overhead"),
            "{}",
            findings[0].message
        );
        // Room for it (the clean twin): 2Gi left.
        let roomy = view_with(
            "v1.6.2",
            vec![quota(
                "compute",
                json!({"requests.memory": "8Gi", "memory": "8Gi"}),
                json!({"requests.memory": "6Gi", "memory": "6Gi"}),
            )],
        );
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &roomy)),
            vec![]
        );
        // `memory` is read as `requests.memory`.
        let bare = view_with(
            "v1.6.2",
            vec![quota(
                "compute",
                json!({"memory": "8Gi"}),
                json!({"memory": "7.5Gi"}),
            )],
        );
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &bare)),
            vec![(ResourceQuotaExceeded, memory.into())]
        );
    }

    #[test]
    fn an_unknown_kubevirt_never_overstates_the_request() {
        // Without the CR the overhead's smallest release still counts, so a quota with 1Gi
        // left is still exceeded; with 1.5Gi left, some release would fit: nothing.
        let unknown = |left_of_8: &str| {
            base_cluster_with(|items| {
                items.push(vm_object("unrelated", "Always"));
                items.push(quota(
                    "compute",
                    json!({"requests.memory": "8Gi"}),
                    json!({"requests.memory": left_of_8}),
                ));
            })
        };
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &unknown("7Gi"))).len(),
            1
        );
        assert_eq!(
            only(
                ResourceQuotaExceeded,
                fired_in(small_vm(), &unknown("6.5Gi"))
            ),
            vec![]
        );
    }

    #[test]
    fn cpu_pods_and_vm_counts() {
        let full = view_with(
            "v1.6.2",
            vec![quota(
                "objects",
                json!({"requests.cpu": "4", "pods": "10", "count/virtualmachines.kubevirt.io": "5"}),
                json!({"requests.cpu": "3.5", "pods": "10", "count/virtualmachines.kubevirt.io": "5"}),
            )],
        );
        let mut found = only(ResourceQuotaExceeded, fired_in(small_vm(), &full));
        found.sort();
        assert_eq!(
            found,
            vec![
                (ResourceQuotaExceeded, "metadata.namespace".into()),
                (ResourceQuotaExceeded, "spec.runStrategy".into()),
                (
                    ResourceQuotaExceeded,
                    "spec.template.spec.domain.resources.requests.cpu".into()
                ),
            ]
        );
        // A VM that will not start asks for no pod (and its other findings warn).
        let halted = valid_vm_with(|vm| {
            vm["spec"]["runStrategy"] = json!("Halted");
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "1Gi", "cpu": "100m"}});
        });
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(halted, &full)),
            vec![(ResourceQuotaExceeded, "metadata.namespace".into())]
        );
    }

    #[test]
    fn an_update_is_not_counted_against_itself() {
        let hard = json!({"requests.memory": "8Gi", "pods": "3", "count/virtualmachines.kubevirt.io": "3"});
        let used = json!({"requests.memory": "7.5Gi", "pods": "3", "count/virtualmachines.kubevirt.io": "3"});
        // The VM is in the view and runs: its pod may be in `used` already, so only a request
        // above the whole quota counts, and the VM itself is counted already.
        let running = view_with(
            "v1.6.2",
            vec![
                vm_object("testvm", "Always"),
                quota("compute", hard.clone(), used.clone()),
            ],
        );
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &running)),
            vec![]
        );
        let huge = valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "8Gi", "cpu": "1"}});
        });
        let found = findings_in(huge, &running);
        let found: Vec<_> = found
            .iter()
            .filter(|f| f.rule == ResourceQuotaExceeded)
            .collect();
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("alone"), "{}", found[0].message);
        // In the view but halted: starting it needs the room (and the pod), not the VM count.
        let stopped = view_with(
            "v1.6.2",
            vec![vm_object("testvm", "Halted"), quota("compute", hard, used)],
        );
        let mut found = only(ResourceQuotaExceeded, fired_in(small_vm(), &stopped));
        found.sort();
        assert_eq!(
            found,
            vec![
                (ResourceQuotaExceeded, "spec.runStrategy".into()),
                (
                    ResourceQuotaExceeded,
                    "spec.template.spec.domain.resources.requests.memory".into()
                ),
            ]
        );
    }

    #[test]
    fn quotas_track_extended_resources_by_request_only() {
        // Quota admission counts a device plugin's resource as `requests.<name>` only
        // (`isExtendedResourceNameForQuota`); a `limits.<name>` key is accepted in `hard` but
        // nothing counts against it, so a running VM with the GPU is not over it.
        let gpu_vm = || {
            valid_vm_with(|vm| {
                spec(vm)["domain"]["devices"]["gpus"] =
                    json!([{"name": "gpu1", "deviceName": "nvidia.com/A10"}]);
            })
        };
        let with_hard = |key: &str| {
            view_with(
                "v1.6.2",
                vec![
                    vm_object("testvm", "Always"),
                    quota("gpus", json!({key: "0"}), json!({})),
                ],
            )
        };
        assert_eq!(
            only(
                ResourceQuotaExceeded,
                fired_in(gpu_vm(), &with_hard("limits.nvidia.com/A10"))
            ),
            vec![]
        );
        assert_eq!(
            only(
                ResourceQuotaExceeded,
                fired_in(gpu_vm(), &with_hard("requests.nvidia.com/A10"))
            ),
            vec![(
                ResourceQuotaExceeded,
                "spec.template.spec.domain.devices.gpus[0].deviceName".into()
            )]
        );
    }

    #[test]
    fn automatic_memory_limits_count_against_limits_memory() {
        // v1.6 adds limits under a limits.memory quota: at least the request (the namespace's
        // ratio is not in the view, so ×1 is all that is certain).
        let limits = |used: &str| {
            view_with(
                "v1.6.2",
                vec![quota(
                    "limits",
                    json!({"limits.memory": "8Gi"}),
                    json!({"limits.memory": used}),
                )],
            )
        };
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &limits("7Gi"))),
            vec![(
                ResourceQuotaExceeded,
                "spec.template.spec.domain.resources.limits.memory".into()
            )]
        );
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &limits("4Gi"))),
            vec![]
        );
    }

    /// A quota edited in the same sync as the VM (raised, or new and not yet counted): the
    /// quota controller has not copied `spec.hard` to `status.hard`, and what admission will
    /// enforce when the VM's pod is created is not known yet.
    #[test]
    fn a_quota_the_controller_has_not_caught_up_with_is_left_out() {
        let full = |spec_hard: Value, status: Value| {
            view_with(
                "v1.6.2",
                vec![json!({"apiVersion": "v1", "kind": "ResourceQuota",
                    "metadata": {"name": "compute", "namespace": "default"},
                    "spec": {"hard": spec_hard}, "status": status})],
            )
        };
        let counted =
            json!({"hard": {"requests.memory": "8Gi"}, "used": {"requests.memory": "7.5Gi"}});
        // Settled (the same amount, written another way): the finding stands.
        assert_eq!(
            only(
                ResourceQuotaExceeded,
                fired_in(
                    small_vm(),
                    &full(json!({"requests.memory": "8192Mi"}), counted.clone())
                )
            )
            .len(),
            1
        );
        // Raised to 16Gi a moment ago: the status still says 8Gi.
        assert_eq!(
            only(
                ResourceQuotaExceeded,
                fired_in(
                    small_vm(),
                    &full(json!({"requests.memory": "16Gi"}), counted)
                )
            ),
            vec![]
        );
        // Created a moment ago: no status yet.
        assert_eq!(
            only(
                ResourceQuotaExceeded,
                fired_in(
                    small_vm(),
                    &full(json!({"requests.memory": "1Gi"}), json!({}))
                )
            ),
            vec![]
        );
    }

    #[test]
    fn scoped_quotas_and_unknown_quotas_are_left_out() {
        let scoped = view_with(
            "v1.6.2",
            vec![json!({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "best-effort", "namespace": "default"},
                "spec": {"hard": {"pods": "0"}, "scopes": ["BestEffort"]},
                "status": {"hard": {"pods": "0"}, "used": {"pods": "0"}}})],
        );
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &scoped)),
            vec![]
        );
        let unknown = cluster(BASE_CLUSTER);
        assert_eq!(
            only(ResourceQuotaExceeded, fired_in(small_vm(), &unknown)),
            vec![]
        );
    }

    fn needs_limits_view(
        version: &str,
        gates: Value,
        extra: Vec<Value>,
    ) -> crate::cluster::ClusterView {
        base_cluster_with(|items| {
            items.push(kubevirt(version, gates));
            items.push(quota(
                "limits",
                json!({"limits.memory": "64Gi", "limits.cpu": "32"}),
                json!({"limits.memory": "0", "limits.cpu": "0"}),
            ));
            items.push(json!({"apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "none", "namespace": "other"}, "spec": {"limits": []}}));
            items.extend(extra);
        })
    }

    #[test]
    fn quota_limits_without_automatic_limits() {
        let cpu = "spec.template.spec.domain.resources.limits.cpu";
        let memory = "spec.template.spec.domain.resources.limits.memory";
        let mut found = only(
            ResourceQuotaNeedsLimits,
            fired_in(small_vm(), &needs_limits_view("v1.4.1", json!([]), vec![])),
        );
        found.sort();
        assert_eq!(
            found,
            vec![
                (ResourceQuotaNeedsLimits, cpu.into()),
                (ResourceQuotaNeedsLimits, memory.into())
            ]
        );
        // v1.0 has no automatic limits at all.
        assert_eq!(
            only(
                ResourceQuotaNeedsLimits,
                fired_in(small_vm(), &needs_limits_view("v1.0.1", json!([]), vec![]))
            )
            .len(),
            2
        );
        // The gate in v1.1–v1.4, and GA since v1.5, add them: nothing.
        let gated = needs_limits_view("v1.4.1", json!(["AutoResourceLimitsGate"]), vec![]);
        assert_eq!(
            only(ResourceQuotaNeedsLimits, fired_in(small_vm(), &gated)),
            vec![]
        );
        let ga = needs_limits_view("v1.5.0", json!([]), vec![]);
        assert_eq!(
            only(ResourceQuotaNeedsLimits, fired_in(small_vm(), &ga)),
            vec![]
        );
        // An unknown version may be either: nothing.
        let unknown = needs_limits_view("latest", json!([]), vec![]);
        assert_eq!(
            only(ResourceQuotaNeedsLimits, fired_in(small_vm(), &unknown)),
            vec![]
        );
        // The VM's own limits (valid_vm sets both) satisfy the quota.
        assert_eq!(
            only(
                ResourceQuotaNeedsLimits,
                fired_in(valid_vm(), &needs_limits_view("v1.4.1", json!([]), vec![]))
            ),
            vec![]
        );
    }

    #[test]
    fn a_limit_range_default_gives_the_limit() {
        let defaulted = needs_limits_view(
            "v1.4.1",
            json!([]),
            vec![json!({"apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "defaults", "namespace": "default"},
                "spec": {"limits": [{"type": "Container", "default": {"memory": "4Gi"}}]}})],
        );
        assert_eq!(
            only(ResourceQuotaNeedsLimits, fired_in(small_vm(), &defaulted)),
            vec![(
                ResourceQuotaNeedsLimits,
                "spec.template.spec.domain.resources.limits.cpu".into()
            )]
        );
    }
}
