//! KubeVirt's containers in the launcher pod besides `compute`, which the scheduler and quota
//! count with it: one per containerDisk (it serves the image to the guest) and the
//! `guest-console-log` native sidecar. Their requests are fixed in the renderer; as seen on
//! the real v1.6.6 launcher pods of `tests/differential.rs`. With guaranteed QoS (dedicated
//! CPUs) every container requests its limit.

use super::vm::Tri;
use crate::cluster::kubevirt::Configuration;
use crate::model::VirtualMachine;

const MILLI: u128 = 1_000_000;
/// Memory is in bytes; KubeVirt writes these in SI megabytes (`1M`, `35M`).
const MEGA: u128 = 1_000_000;

/// One container's request, in nanocores and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    cpu: u128,
    memory: u128,
}

impl Request {
    const fn new(cpu_millis: u128, memory_megabytes: u128) -> Self {
        Request {
            cpu: cpu_millis * MILLI,
            memory: memory_megabytes * MEGA,
        }
    }
}

/// A containerDisk's container: requests 1m / 1M, limits 10m / 40M.
const CONTAINER_DISK: [Request; 2] = [Request::new(1, 1), Request::new(10, 40)];
/// `guest-console-log`: requests 5m / 35M, limits 15m / 60M.
const CONSOLE_LOG: [Request; 2] = [Request::new(5, 35), Request::new(15, 60)];

/// Whether the pod has the console log sidecar: the VM's `logSerialConsole`, else the CR's
/// `disableSerialConsoleLog`; never without a serial console.
pub(super) fn console_log(vm: &VirtualMachine, configuration: Option<&Configuration>) -> Tri {
    let devices = &vm.template_spec().domain.devices;
    if devices.autoattach_serial_console == Some(false) {
        return Tri::No;
    }
    if let Some(log) = devices.log_serial_console {
        return Tri::of(log);
    }
    configuration.map_or(Tri::Unknown, |c| Tri::of(!c.serial_console_log_disabled))
}

/// The support containers' request (nanocores, bytes) for a pod with or without guaranteed
/// QoS and the console log.
pub(super) fn request(vm: &VirtualMachine, guaranteed: bool, console_log: bool) -> (u128, u128) {
    let side = usize::from(guaranteed);
    let disks = vm
        .template_spec()
        .volumes
        .iter()
        .filter(|v| v.container_disk.is_some())
        .count() as u128;
    let mut cpu = disks * CONTAINER_DISK[side].cpu;
    let mut memory = disks * CONTAINER_DISK[side].memory;
    if console_log {
        cpu += CONSOLE_LOG[side].cpu;
        memory += CONSOLE_LOG[side].memory;
    }
    (cpu, memory)
}
