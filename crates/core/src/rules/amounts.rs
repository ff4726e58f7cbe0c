//! The launcher pod's figures under the resource names ResourceQuotas and LimitRanges use, and
//! how the rules that compare them show and locate them.

use super::VmContext;
use crate::launcher::{Bound, LauncherRequest, Limit, Resource};
use crate::model::{ParsedQuantity, TEMPLATE_SPEC};

/// The compute container's request and limit of `resource` (`cpu`, `memory`,
/// `ephemeral-storage`, `hugepages-<size>` or a device plugin's resource); `None` when it asks
/// for none of it. Hugepages and devices are requested and limited alike.
pub fn figure(pod: &LauncherRequest, resource: &str) -> Option<Resource> {
    let alike = |amount: Bound| Resource {
        request: amount,
        limit: Limit::Set(amount),
    };
    match resource {
        "cpu" => Some(pod.cpu),
        "memory" => Some(pod.memory),
        "ephemeral-storage" => Some(pod.ephemeral_storage),
        _ => {
            if let Some(pages) = pod.hugepages.as_ref().filter(|h| h.resource == resource) {
                return Some(alike(pages.amount));
            }
            let device = pod.devices.iter().find(|d| d.resource == resource)?;
            let count = ParsedQuantity::from_integer(device.count);
            Some(alike(Bound {
                at_least: count,
                at_most: Some(count),
            }))
        }
    }
}

/// The limit every release and configuration that may be running sets; `None` when some set
/// none (a rule then compares nothing).
pub fn certain_limit(limit: Limit) -> Option<Bound> {
    match limit {
        Limit::Set(bound) => Some(bound),
        Limit::Absent | Limit::Maybe(_) => None,
    }
}

/// Where a finding about `resource` points: the field of the VM that sizes it.
pub fn path(cx: &VmContext<'_>, resource: &str, limit: bool) -> String {
    let side = if limit { "limits" } else { "requests" };
    match resource {
        "cpu" | "memory" | "ephemeral-storage" => {
            format!("{TEMPLATE_SPEC}.domain.resources.{side}.{resource}")
        }
        _ if resource.starts_with("hugepages-") => {
            format!("{TEMPLATE_SPEC}.domain.memory.hugepages.pageSize")
        }
        _ => {
            let devices = &cx.spec.domain.devices;
            let named =
                |name: &Option<compact_str::CompactString>| name.as_deref() == Some(resource);
            if let Some(i) = devices.gpus.iter().position(|g| named(&g.device_name)) {
                format!("{TEMPLATE_SPEC}.domain.devices.gpus[{i}].deviceName")
            } else if let Some(i) = devices
                .host_devices
                .iter()
                .position(|d| named(&d.device_name))
            {
                format!("{TEMPLATE_SPEC}.domain.devices.hostDevices[{i}].deviceName")
            } else {
                format!("{TEMPLATE_SPEC}.domain.devices")
            }
        }
    }
}

/// " (268Mi overhead)" for a memory request KubeVirt adds its overhead to, for messages.
pub fn overhead_note(pod: &LauncherRequest, resource: &str) -> String {
    let overhead = pod.memory_overhead.at_least;
    if resource == "memory" && overhead > ParsedQuantity::ZERO {
        format!(" ({} overhead)", show("memory", &overhead))
    } else {
        String::new()
    }
}

const MI: u128 = 1 << 20;
const GI: u128 = 1 << 30;
const NANOS: u128 = 1_000_000_000;

/// `b` in `unit`s to a tenth, rounded down.
fn tenths(b: u128, unit: u128, suffix: &str) -> String {
    let tenths = b * 10 / unit;
    match tenths % 10 {
        0 => format!("{}{suffix}", tenths / 10),
        tenth => format!("{}.{tenth}{suffix}", tenths / 10),
    }
}

/// A quantity as a person reads it: bytes in Gi or Mi (to a tenth, rounded down), CPUs in
/// cores or millicores (rounded up, as the scheduler counts them), counts as they are.
pub fn show(resource: &str, quantity: &ParsedQuantity) -> String {
    let bytes_like =
        matches!(resource, "memory" | "ephemeral-storage") || resource.starts_with("hugepages-");
    match resource {
        _ if bytes_like => match quantity.ceil_scaled(0) {
            Some(0) => "0".to_string(),
            Some(b) if b % GI == 0 => format!("{}Gi", b / GI),
            Some(b) if b % MI == 0 => format!("{}Mi", b / MI),
            Some(b) if b > GI => tenths(b, GI, "Gi"),
            Some(b) if b > MI => tenths(b, MI, "Mi"),
            _ => quantity.to_string(),
        },
        "cpu" => match quantity.ceil_scaled(-9) {
            Some(n) if n % NANOS == 0 => (n / NANOS).to_string(),
            Some(n) => format!("{}m", n.div_ceil(1_000_000)),
            None => quantity.to_string(),
        },
        _ => quantity.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> ParsedQuantity {
        ParsedQuantity::parse(text).unwrap()
    }

    #[test]
    fn shows_bytes_and_cpus_as_people_write_them() {
        assert_eq!(show("memory", &q("2Gi")), "2Gi");
        assert_eq!(show("memory", &q("2316Mi")), "2316Mi");
        assert_eq!(show("memory", &q("2405433344")), "2294Mi");
        assert_eq!(show("memory", &q("1500000")), "1.4Mi");
        assert_eq!(show("memory", &q("1.15Gi")), "1.1Gi");
        assert_eq!(show("memory", &q("297838592")), "284Mi");
        assert_eq!(show("memory", &q("512")), "512");
        assert_eq!(show("memory", &q("0")), "0");
        assert_eq!(show("hugepages-2Mi", &q("1Gi")), "1Gi");
        assert_eq!(show("cpu", &q("2")), "2");
        assert_eq!(show("cpu", &q("333333334n")), "334m");
        assert_eq!(show("cpu", &q("100m")), "100m");
        assert_eq!(show("pods", &q("3")), "3");
    }
}
