//! Memory, CPU and storage amounts.

use super::{Emitter, VmContext};
use crate::model::{ParsedQuantity, QuantityText, ResourceRequirements, TEMPLATE_SPEC};

/// `prefix.key`, or `prefix[key]` where the key has dots or slashes (`nvidia.com/gpu`), as the
/// API server writes map keys.
fn key_path(prefix: &str, key: &str) -> String {
    if key.contains(['.', '/']) {
        format!("{prefix}[{key}]")
    } else {
        format!("{prefix}.{key}")
    }
}

fn parsed(quantity: Option<&QuantityText>) -> Option<ParsedQuantity> {
    quantity.and_then(|q| q.parse().ok())
}

/// KubeVirt fills guest memory from these, in this order; with none, its VMI admission
/// rejects "no memory requested" and the VM never starts.
pub fn memory_missing(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let domain = &cx.spec.domain;
    let memory = domain.memory.as_ref();
    let has_memory = memory.is_some_and(|m| m.guest.is_some() || m.hugepages.is_some())
        || domain.resources.requests.contains_key("memory")
        || domain.resources.limits.contains_key("memory")
        || cx.vm.spec.instancetype.is_some();
    if !has_memory {
        out.emit(
            format!("{TEMPLATE_SPEC}.domain.memory.guest"),
            "no memory is requested: set domain.memory.guest, a memory request, or an instancetype",
        );
    }
}

pub fn requests_exceed_limits(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let resources = &cx.spec.domain.resources;
    for resource in ["cpu", "memory"] {
        let request = resources.requests.get(resource);
        let limit = resources.limits.get(resource);
        if let (Some(request_value), Some(limit_value)) = (parsed(request), parsed(limit))
            && request_value > limit_value
        {
            out.emit(
                format!("{TEMPLATE_SPEC}.domain.resources.requests.{resource}"),
                format!(
                    "{resource} request {} is above its limit {}: raise the limit or lower the request",
                    request.map(QuantityText::as_str).unwrap_or_default(),
                    limit.map(QuantityText::as_str).unwrap_or_default()
                ),
            );
        }
    }
}

pub fn guest_memory_exceeds_limit(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let domain = &cx.spec.domain;
    let guest = domain.memory.as_ref().and_then(|m| m.guest.as_ref());
    let limit = domain.resources.limits.get("memory");
    if let (Some(guest_value), Some(limit_value)) = (parsed(guest), parsed(limit))
        && guest_value > limit_value
    {
        out.emit(
            format!("{TEMPLATE_SPEC}.domain.memory.guest"),
            format!(
                "guest memory {} is above the memory limit {}: the launcher pod cannot hold it",
                guest.map(QuantityText::as_str).unwrap_or_default(),
                limit.map(QuantityText::as_str).unwrap_or_default()
            ),
        );
    }
}

/// What [`each_quantity`] calls: a quantity, and how to name its path (built only when asked:
/// almost every quantity is valid).
type Visit<'v, 'a> = dyn FnMut(&'a QuantityText, &dyn Fn() -> String) + 'v;

fn requirements<'a>(
    visit: &mut Visit<'_, 'a>,
    prefix: &dyn Fn() -> String,
    resources: &'a ResourceRequirements,
) {
    for (field, map) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (key, quantity) in map {
            visit(quantity, &|| {
                key_path(&format!("{}.{field}", prefix()), key)
            });
        }
    }
}

/// Visits every quantity the VM writes.
fn each_quantity<'a>(cx: &VmContext<'a>, visit: &mut Visit<'_, 'a>) {
    let domain = &cx.spec.domain;
    requirements(
        visit,
        &|| format!("{TEMPLATE_SPEC}.domain.resources"),
        &domain.resources,
    );
    for (index, template) in cx.vm.spec.data_volume_templates.iter().enumerate() {
        for (field, storage) in [
            ("pvc", &template.spec.pvc),
            ("storage", &template.spec.storage),
        ] {
            if let Some(storage) = storage {
                requirements(
                    visit,
                    &|| format!("spec.dataVolumeTemplates[{index}].spec.{field}.resources"),
                    &storage.resources,
                );
            }
        }
    }
    if let Some(memory) = &domain.memory {
        for (field, quantity) in [("guest", &memory.guest), ("maxGuest", &memory.max_guest)] {
            if let Some(quantity) = quantity {
                visit(quantity, &|| {
                    format!("{TEMPLATE_SPEC}.domain.memory.{field}")
                });
            }
        }
    }
    for (index, volume) in cx.spec.volumes.iter().enumerate() {
        let capacities = [
            (
                "emptyDisk",
                volume.empty_disk.as_ref().and_then(|d| d.capacity.as_ref()),
            ),
            (
                "hostDisk",
                volume.host_disk.as_ref().and_then(|d| d.capacity.as_ref()),
            ),
        ];
        for (source, capacity) in capacities {
            if let Some(capacity) = capacity {
                visit(capacity, &|| {
                    format!("{TEMPLATE_SPEC}.volumes[{index}].{source}.capacity")
                });
            }
        }
    }
}

pub fn quantity_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    each_quantity(cx, &mut |quantity, path| {
        if let Err(err) = quantity.parse() {
            out.emit(
                path(),
                format!(
                    "{:?} is not a quantity: it {err} (e.g. 2Gi, 500m)",
                    quantity.as_str()
                ),
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::json;

    fn domain(vm: &mut serde_json::Value) -> &mut serde_json::Value {
        &mut spec(vm)["domain"]
    }

    #[test]
    fn memory_missing() {
        let broken = valid_vm_with(|vm| {
            domain(vm).as_object_mut().unwrap().remove("memory");
            domain(vm)["resources"] = json!({"requests": {"cpu": "1"}});
        });
        assert_eq!(
            fired(broken),
            vec![(
                MemoryMissing,
                "spec.template.spec.domain.memory.guest".into()
            )]
        );
        for (what, edit) in [
            ("request", json!({"requests": {"memory": "1Gi"}})),
            ("limit", json!({"limits": {"memory": "1Gi"}})),
        ] {
            let fixed = valid_vm_with(|vm| {
                domain(vm).as_object_mut().unwrap().remove("memory");
                domain(vm)["resources"] = edit;
            });
            assert_eq!(fired(fixed), vec![], "{what}");
        }
        let hugepages = valid_vm_with(|vm| {
            domain(vm)["memory"] = json!({"hugepages": {"pageSize": "2Mi"}});
            domain(vm)["resources"] = json!({});
        });
        assert_eq!(fired(hugepages), vec![]);
        let instancetype = valid_vm_with(|vm| {
            domain(vm).as_object_mut().unwrap().remove("memory");
            domain(vm)["resources"] = json!({});
            vm["spec"]["instancetype"] = json!({"name": "u1.medium"});
        });
        assert_eq!(fired(instancetype), vec![]);
    }

    #[test]
    fn requests_exceed_limits() {
        let broken = valid_vm_with(|vm| {
            domain(vm)["resources"]["requests"]["cpu"] = json!("2500m");
        });
        assert_eq!(
            fired(broken),
            vec![(
                RequestsExceedLimits,
                "spec.template.spec.domain.resources.requests.cpu".into()
            )]
        );
        // Equal is fine, and so are different spellings of the same amount.
        let fixed = valid_vm_with(|vm| {
            domain(vm)["resources"]["requests"]["cpu"] = json!("2000m");
            domain(vm)["resources"]["requests"]["memory"] = json!("2048Mi");
        });
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn guest_memory_exceeds_limit() {
        let broken = valid_vm_with(|vm| domain(vm)["memory"]["guest"] = json!("3Gi"));
        assert_eq!(
            fired(broken),
            vec![(
                GuestMemoryExceedsLimit,
                "spec.template.spec.domain.memory.guest".into()
            )]
        );
        let fixed = valid_vm_with(|vm| domain(vm)["memory"]["guest"] = json!("2Gi"));
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn quantity_invalid() {
        let broken = valid_vm_with(|vm| domain(vm)["resources"]["limits"]["memory"] = json!("2GB"));
        assert_eq!(
            fired(broken),
            vec![(
                QuantityInvalid,
                "spec.template.spec.domain.resources.limits.memory".into()
            )]
        );
        let device = valid_vm_with(|vm| {
            domain(vm)["resources"]["limits"]["nvidia.com/gpu"] = json!("one");
        });
        assert_eq!(
            fired(device),
            vec![(
                QuantityInvalid,
                "spec.template.spec.domain.resources.limits[nvidia.com/gpu]".into()
            )]
        );
        let storage = valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "d"},
                "spec": {"storage": {"resources": {"requests": {"storage": "10 Gi"}}}}}]);
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "d", "dataVolume": {"name": "d"}}));
        });
        assert_eq!(
            fired(storage),
            vec![(
                QuantityInvalid,
                "spec.dataVolumeTemplates[0].spec.storage.resources.requests.storage".into()
            )]
        );
        let numbers = valid_vm_with(|vm| {
            domain(vm)["resources"]["limits"]["cpu"] = json!(2);
            domain(vm)["resources"]["requests"]["cpu"] = json!(1.5);
        });
        assert_eq!(fired(numbers), vec![]);
    }
}
