//! LimitRanges of the VM's namespace against the launcher pod's requests and limits.
//!
//! Kubernetes' LimitRanger admission first fills a container's missing limits and requests
//! from `default` / `defaultRequest` (a LimitRange item with a `max` and no `default` gets the
//! max as its default when it is stored), then rejects the pod when, for a resource of an item
//! of type Container, a container's request or limit is above `max` or below `min`; for type
//! Pod it compares the sums over the pod's containers (`pkg/admission/plugin/limitranger`).

use super::amounts::{certain_limit, figure, overhead_note, path, show};
use super::{Emitter, VmContext};
use crate::cluster::LimitItem;
use crate::launcher::{Bound, LauncherRequest};
use crate::model::ParsedQuantity;

/// Which LimitRange items apply, and to what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
enum Scope {
    Container,
    Pod,
}

impl Scope {
    fn of(item: &LimitItem) -> Option<Scope> {
        item.type_.parse().ok()
    }

    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The compute container's request or limit (as KubeVirt computes it, from
/// [`crate::launcher`]) is above the `max` of a LimitRange item of type Container or Pod, or
/// below the `min` of one of type Container. A max is compared with `at_least`, a min with
/// `at_most`, both at LimitRanger's precision (millis rounded up), so a VM that some possible
/// KubeVirt would size within the range is not reported. A limit KubeVirt may or may not set is left out: without one, LimitRanger
/// gives the default, which the API server keeps within min and max. Pod minimums are left
/// out: the pod's sum includes support containers whose size the KubeVirt CR may change
/// (`supportContainerResources`), so no upper bound of it is known. KubeVirt's own admission
/// does not check LimitRanges.
pub fn limit_range_exceeded(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    let Some(ranges) = view.limit_ranges(cx.namespace) else {
        return;
    };
    let Some(pod) = cx.launcher() else { return };
    for (name, range) in ranges {
        for item in &range.limits {
            let Some(scope) = Scope::of(item) else {
                continue;
            };
            for (resource, max) in &item.max {
                if let Some((limit, amount)) = above(pod, resource, max) {
                    let side = if limit { "limit" } else { "request" };
                    out.emit(
                        path(cx, resource, limit),
                        format!(
                            "LimitRange {name:?}: {resource} {side} ≥{}{} > {} max {}: raise max or shrink the VM",
                            show(resource, &amount.at_least),
                            if limit { String::new() } else { overhead_note(pod, resource) },
                            scope.as_str(),
                            show(resource, max),
                        ),
                    );
                }
            }
            if scope == Scope::Pod {
                continue;
            }
            for (resource, min) in &item.min {
                if let Some((limit, amount)) = below(pod, resource, min) {
                    let side = if limit { "limit" } else { "request" };
                    out.emit(
                        path(cx, resource, limit),
                        format!(
                            "LimitRange {name:?}: {resource} {side} ≤{} < Container min {}: lower min or grow the VM",
                            amount.at_most.as_ref().map_or_else(String::new, |most| show(resource, most)),
                            show(resource, min),
                        ),
                    );
                }
            }
        }
    }
}

/// The request (first) or the certain limit that is above `max`: (is the limit, its bound).
fn above(pod: &LauncherRequest, resource: &str, max: &ParsedQuantity) -> Option<(bool, Bound)> {
    let figure = figure(pod, resource)?;
    let exceeds = |amount: &Bound| enforced(&amount.at_least, max).is_some_and(|(a, m)| a > m);
    if exceeds(&figure.request) {
        return Some((false, figure.request));
    }
    certain_limit(figure.limit)
        .filter(exceeds)
        .map(|limit| (true, limit))
}

/// The request (first) or the certain limit that is below `min`.
fn below(pod: &LauncherRequest, resource: &str, min: &ParsedQuantity) -> Option<(bool, Bound)> {
    let figure = figure(pod, resource)?;
    let below = |amount: &Bound| {
        amount
            .at_most
            .and_then(|most| enforced(&most, min))
            .is_some_and(|(a, m)| a < m)
    };
    if below(&figure.request) {
        return Some((false, figure.request));
    }
    certain_limit(figure.limit)
        .filter(below)
        .map(|limit| (true, limit))
}

/// `amount` and the LimitRange's `bound` as LimitRanger compares them
/// (`requestLimitEnforcedValues`, `plugin/pkg/admission/limitranger/admission.go`): in millis,
/// each rounded up (333333334n is 334m), or in whole units when one is beyond an int64 of
/// millis. `None` when one cannot be compared (negative, too large).
fn enforced(amount: &ParsedQuantity, bound: &ParsedQuantity) -> Option<(u128, u128)> {
    const MAX_MILLI_VALUE: u128 = (i64::MAX / 1000) as u128;
    let (amount_units, bound_units) = (amount.ceil_scaled(0)?, bound.ceil_scaled(0)?);
    if amount_units <= MAX_MILLI_VALUE && bound_units <= MAX_MILLI_VALUE {
        Some((amount.ceil_scaled(-3)?, bound.ceil_scaled(-3)?))
    } else {
        Some((amount_units, bound_units))
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn view(items: Value) -> crate::cluster::ClusterView {
        base_cluster_with(|all| {
            all.push(json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                "status": {"observedKubeVirtVersion": "v1.6.2"}}));
            all.push(json!({"apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "limits", "namespace": "default"},
                "spec": {"limits": items}}));
        })
    }

    fn fired_here(vm: Value, view: &crate::cluster::ClusterView) -> Vec<String> {
        findings_in(vm, view)
            .into_iter()
            .filter(|f| f.rule == LimitRangeExceeded)
            .map(|f| {
                assert!(f.message.chars().count() <= 120, "{}", f.message);
                f.path
            })
            .collect()
    }

    /// 2Gi requested and limited: the launcher asks 2Gi + overhead for both.
    fn two_gi() -> Value {
        valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "2Gi", "cpu": "1"}, "limits": {"memory": "2Gi", "cpu": "2"}});
        })
    }

    #[test]
    fn the_overhead_takes_a_vm_past_a_container_max() {
        let max = view(json!([{"type": "Container", "max": {"memory": "2Gi", "cpu": "4"}}]));
        assert_eq!(
            fired_here(two_gi(), &max),
            vec!["spec.template.spec.domain.resources.requests.memory".to_string()]
        );
        let findings = findings_in(two_gi(), &max);
        let message = &findings
            .iter()
            .find(|f| f.rule == LimitRangeExceeded)
            .unwrap()
            .message;
        assert!(
            message.contains("overhead") && message.contains("2Gi"),
            "{message}"
        );
        // The clean twin: room for the overhead.
        let roomy = view(json!([{"type": "Container", "max": {"memory": "3Gi", "cpu": "4"}}]));
        assert_eq!(fired_here(two_gi(), &roomy), Vec::<String>::new());
    }

    #[test]
    fn limits_and_pod_maximums() {
        // The request fits, the limit (2Gi + overhead... written 4Gi) does not.
        let vm = valid_vm_with(|vm| {
            spec(vm)["domain"]["resources"] =
                json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi"}});
        });
        let max = view(json!([{"type": "Pod", "max": {"memory": "3Gi"}}]));
        assert_eq!(
            fired_here(vm, &max),
            vec!["spec.template.spec.domain.resources.limits.memory".to_string()]
        );
        // PersistentVolumeClaim items are not the launcher's.
        let pvc = view(json!([{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]));
        assert_eq!(fired_here(two_gi(), &pvc), Vec::<String>::new());
    }

    #[test]
    fn container_minimums_need_an_upper_bound() {
        let min = view(json!([{"type": "Container", "min": {"memory": "4Gi"}}]));
        let mut found = fired_here(two_gi(), &min);
        found.sort();
        assert_eq!(
            found,
            vec!["spec.template.spec.domain.resources.requests.memory".to_string()]
        );
        assert_eq!(
            fired_here(
                two_gi(),
                &view(json!([{"type": "Container", "min": {"memory": "1Gi"}}]))
            ),
            Vec::<String>::new()
        );
        // A Pod min is never judged (support containers may be resized by the CR).
        assert_eq!(
            fired_here(
                two_gi(),
                &view(json!([{"type": "Pod", "min": {"memory": "4Gi"}}]))
            ),
            Vec::<String>::new()
        );
        // Without the KubeVirt CR there is no upper bound: nothing.
        let unknown_kubevirt = base_cluster_with(|all| {
            all.push(json!({"apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "limits", "namespace": "default"},
                "spec": {"limits": [{"type": "Container", "min": {"memory": "4Gi"}}]}}));
        });
        assert_eq!(
            fired_here(two_gi(), &unknown_kubevirt),
            Vec::<String>::new()
        );
    }

    #[test]
    fn limit_ranger_compares_millis_rounded_up() {
        // 1 vCPU at cpuAllocationRatio 3 asks for 333333334n, which LimitRanger reads as 334m
        // (`requestLimitEnforcedValues`): within a 334m min, and within a 333333333n max.
        let third = |items: Value| {
            base_cluster_with(|all| {
                all.push(kubevirt_cr(
                    "v1.6.2",
                    json!({"developerConfiguration": {"cpuAllocationRatio": 3}}),
                ));
                all.push(json!({"apiVersion": "v1", "kind": "LimitRange",
                    "metadata": {"name": "limits", "namespace": "default"},
                    "spec": {"limits": items}}));
            })
        };
        let vm = valid_vm_with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({"cores": 1});
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "1Gi"}});
        });
        let cpu = "spec.template.spec.domain.resources.requests.cpu".to_string();
        for fits in [
            json!([{"type": "Container", "min": {"cpu": "334m"}}]),
            json!([{"type": "Container", "max": {"cpu": "333333333n"}}]),
        ] {
            assert_eq!(
                fired_here(vm.clone(), &third(fits.clone())),
                Vec::<String>::new(),
                "{fits}"
            );
        }
        // The twins a milli away are outside.
        for outside in [
            json!([{"type": "Container", "min": {"cpu": "335m"}}]),
            json!([{"type": "Container", "max": {"cpu": "333m"}}]),
        ] {
            assert_eq!(
                fired_here(vm.clone(), &third(outside.clone())),
                vec![cpu.clone()],
                "{outside}"
            );
        }
    }

    #[test]
    fn shared_cpus_are_requested_at_a_fraction() {
        // 4 vCPUs without a CPU request: 400m at the default ratio of 10, under a 1-CPU max.
        let vm = valid_vm_with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({"cores": 4});
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "1Gi"}});
        });
        let cpu_max = view(json!([{"type": "Container", "max": {"cpu": "1"}}]));
        assert_eq!(fired_here(vm.clone(), &cpu_max), Vec::<String>::new());
        let cpu_min = view(json!([{"type": "Container", "min": {"cpu": "500m"}}]));
        assert_eq!(
            fired_here(vm, &cpu_min),
            vec!["spec.template.spec.domain.resources.requests.cpu".to_string()]
        );
    }
}
