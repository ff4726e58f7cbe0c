//! One release's arithmetic on one set of known facts: the compute container's figures, in
//! bytes and nanocores. Unknown cluster settings come in as `None` and are taken at the value
//! that gives the smallest request (the caller then drops the upper bound).

use std::collections::BTreeMap;

use compact_str::CompactString;

use super::era::{AutoLimits, DedicatedOverhead, EmulatorParity, Formula};
use super::vm::{Guest, TpmDevice, Tri, VmFacts};
use crate::cluster::kubevirt::NetworkBinding;
use crate::model::ParsedQuantity;

const MI: u128 = 1 << 20;
const GI: u128 = 1 << 30;
const NANOS: u128 = 1_000_000_000;

/// The KubeVirt configuration as the arithmetic needs it; `None` / `Unknown` = not known.
#[derive(Debug, Clone)]
pub(super) struct Settings<'a> {
    pub memory_overcommit: Option<u64>,
    pub cpu_allocation_ratio: Option<u64>,
    pub cpu_request: CpuRequestSetting,
    pub overhead_ratio: RatioSetting,
    pub bindings: Option<&'a BTreeMap<CompactString, NetworkBinding>>,
    /// The AutoResourceLimitsGate is listed (matters for v1.1–v1.4).
    pub auto_limits_gate: Tri,
    /// A ResourceQuota of the namespace sets `limits.cpu` / `limits.memory`.
    pub quota_limits_cpu: Tri,
    pub quota_limits_memory: Tri,
    /// The namespace matches `autoCPULimitNamespaceLabelSelector`.
    pub cpu_limit_selector: Tri,
    /// `alpha.kubevirt.io/auto-memory-limits-ratio` as KubeVirt reads it; `None` = unknown.
    pub memory_limit_ratio: Option<f64>,
}

/// The CR's `cpuRequest`, which virt-api writes into VMIs only when it is not `100m`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum CpuRequestSetting {
    Default,
    Override(ParsedQuantity),
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum RatioSetting {
    Unset,
    Ratio(f64),
    Unknown,
}

/// One combination of what may be unknown.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scenario<'f> {
    pub formula: &'f Formula,
    pub arm64: bool,
    pub graphics: bool,
}

/// What does not depend on the release, for one choice of dedicated CPUs: worked out once per
/// VM, not once per release (the divisions are most of the cost).
#[derive(Debug, Clone, Copy)]
pub(super) struct Prepared {
    dedicated: bool,
    cpu_request: VmiCpuRequest,
    vcpus: u128,
    /// The memory request before the overhead.
    base: u128,
    /// Page tables sized from `base` (up to v1.6) and from the written request (v1.7+).
    page_tables_default: u128,
    page_tables_written: u128,
    guaranteed: bool,
    /// The shared CPUs' request from the ratio, without and with IO-thread CPUs.
    ratio_request: [u128; 2],
    cpu_limit_written: Option<u128>,
}

pub(super) fn prepare(vm: &VmFacts<'_>, settings: &Settings<'_>, dedicated: bool) -> Prepared {
    let cpu_request = vmi_cpu_request(vm, settings, dedicated);
    let vcpus = vcpus(vm, cpu_request);
    let base = memory_base(vm, settings);
    let ratio_request = |cpus: u128| match settings.cpu_allocation_ratio {
        Some(ratio) if ratio > 0 => (cpus * NANOS).div_ceil(u128::from(ratio)),
        _ => 0,
    };
    Prepared {
        dedicated,
        cpu_request,
        vcpus,
        base,
        page_tables_default: page_tables(base),
        page_tables_written: page_tables(vm.memory_request.unwrap_or(0)),
        guaranteed: wants_guaranteed(vm),
        ratio_request: [
            ratio_request(vcpus),
            ratio_request(vcpus + u128::from(vm.pool_threads)),
        ],
        cpu_limit_written: vm.cpu_limit.as_ref().map(nanos),
    }
}

/// One bit per 512 bytes of RAM, from the request rounded up to kilobytes.
fn page_tables(request: u128) -> u128 {
    request.div_ceil(1000) * 1000 / 512
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LimitCase {
    Absent,
    Set(u128),
    /// KubeVirt sets this limit or none, depending on what is unknown.
    Maybe(u128),
}

impl LimitCase {
    fn of(fixed: Option<u128>, automatic: Tri, automatic_value: u128) -> Self {
        match (fixed, automatic) {
            (Some(value), _) => LimitCase::Set(value),
            (None, Tri::Yes) => LimitCase::Set(automatic_value),
            (None, Tri::No) => LimitCase::Absent,
            (None, Tri::Unknown) => LimitCase::Maybe(automatic_value),
        }
    }
}

/// The compute container, in bytes and nanocores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Figures {
    pub overhead: u128,
    pub memory_request: u128,
    pub memory_limit: LimitCase,
    pub cpu_request: u128,
    pub cpu_limit: LimitCase,
    pub hugepages: Option<u128>,
    /// The memory limit is (or may be) request × the namespace's ratio.
    pub memory_limit_scaled: bool,
}

/// The largest amount taken from the configuration (an int64 in KubeVirt): keeps sums in u128.
const LARGEST: u128 = i64::MAX as u128;

fn nanos(quantity: &ParsedQuantity) -> u128 {
    quantity
        .ceil_scaled(-9)
        .unwrap_or(u128::MAX)
        .min(LARGEST * NANOS)
}

fn whole(quantity: &ParsedQuantity) -> u128 {
    quantity.ceil_scaled(0).unwrap_or(u128::MAX).min(LARGEST)
}

fn non_zero(quantity: Option<&ParsedQuantity>) -> Option<&ParsedQuantity> {
    quantity.filter(|q| **q != ParsedQuantity::ZERO)
}

/// The VMI's CPU request after virt-api's defaults (`setDefaultResourceRequests`, all
/// releases): the request, else the limit, else the CR's `cpuRequest` unless the CPUs are
/// dedicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VmiCpuRequest {
    Set(u128, Option<u128>),
    Unset,
    /// From a CR we cannot read: anything from a millicore up.
    Unknown,
}

fn vmi_cpu_request(vm: &VmFacts<'_>, settings: &Settings<'_>, dedicated: bool) -> VmiCpuRequest {
    let written = non_zero(vm.cpu_request.as_ref())
        .or(non_zero(vm.cpu_limit.as_ref()))
        .or(vm.cpu_request.as_ref());
    if let Some(q) = written {
        return VmiCpuRequest::Set(nanos(q), Some(whole(q)));
    }
    if dedicated {
        return VmiCpuRequest::Unset;
    }
    match settings.cpu_request {
        CpuRequestSetting::Default => VmiCpuRequest::Unset,
        CpuRequestSetting::Override(q) => VmiCpuRequest::Set(nanos(&q), Some(whole(&q))),
        CpuRequestSetting::Unknown => VmiCpuRequest::Unknown,
    }
}

/// vCPUs after `SetDefaultGuestCPUTopology`: the topology, else sockets = the CPU limit, else
/// the (defaulted) CPU request, rounded up; at least 1.
fn vcpus(vm: &VmFacts<'_>, request: VmiCpuRequest) -> u128 {
    // `uint32(quantity.Value())`: Go truncates to 32 bits.
    let from_resources = match (vm.cpu_limit.as_ref(), request) {
        (Some(limit), _) => u128::from(whole(limit) as u32),
        (None, VmiCpuRequest::Set(_, Some(cores))) => u128::from(cores as u32),
        _ => 1,
    };
    vm.topology_vcpus.map_or(from_resources, u128::from).max(1)
}

/// Whether the VMI wants guaranteed QoS (`WantsToHaveQOSGuaranteed` on the defaulted VMI):
/// memory and CPU limits set and equal to their requests (an absent request becomes the
/// limit).
fn wants_guaranteed(vm: &VmFacts<'_>) -> bool {
    let memory = match (vm.memory_request.filter(|r| *r != 0), vm.memory_limit) {
        (Some(request), Some(limit)) => request == limit,
        (None, Some(limit)) => limit != 0,
        _ => false,
    };
    let cpu = match (
        non_zero(vm.cpu_request.as_ref()),
        non_zero(vm.cpu_limit.as_ref()),
    ) {
        (Some(request), Some(limit)) => request == limit,
        (None, Some(_)) => true,
        _ => false,
    };
    memory && cpu
}

/// The memory request before the overhead: the request, else the limit, else guest (or the
/// hugepage size) × 100 ÷ memoryOvercommit. Same in every release (virt-api's defaults until
/// v1.6, `WithMemoryRequests` since v1.7).
fn memory_base(vm: &VmFacts<'_>, settings: &Settings<'_>) -> u128 {
    if let Some(request) = vm.memory_request.filter(|r| *r != 0) {
        return request;
    }
    if let Some(limit) = vm.memory_limit.filter(|l| *l != 0) {
        return limit;
    }
    if let Some(request) = vm.memory_request {
        return request;
    }
    let guest = match vm.guest {
        Guest::Bytes(bytes) => bytes,
        Guest::Unknown => return 0,
        Guest::Absent => vm
            .hugepages
            .as_ref()
            .and_then(|(_, size)| *size)
            .unwrap_or(0),
    };
    match settings.memory_overcommit {
        Some(100) => guest,
        Some(percent) if percent > 0 => guest * 100 / u128::from(percent),
        _ => 0,
    }
}

/// `GetMemoryOverhead` plus the network bindings' overhead (`CalculateMemoryOverhead`).
fn overhead(
    scenario: &Scenario<'_>,
    prepared: &Prepared,
    vm: &VmFacts<'_>,
    settings: &Settings<'_>,
) -> u128 {
    let f = scenario.formula;
    let mut total = if f.page_tables_from_default {
        prepared.page_tables_default
    } else {
        prepared.page_tables_written
    };
    total += f.daemons + 8 * MI * prepared.vcpus + 8 * MI;
    if scenario.graphics {
        total += f.video;
    }
    if scenario.arm64 {
        total += 128 * MI;
    }
    if vm.vfio {
        total += GI;
    }
    if vm.downward_metrics {
        total += MI;
    }
    if vm.exec_probes > 0 {
        total += 100 * MI + 10 * MI * u128::from(vm.exec_probes);
    }
    if vm.sev || (f.snp && vm.snp) {
        total += 256 * MI;
    }
    let tpm_costs = match vm.tpm {
        TpmDevice::None => false,
        TpmDevice::Enabled => true,
        TpmDevice::Disabled => !f.tpm_honours_enabled,
    };
    if tpm_costs {
        total += 53 * MI;
    }
    if f.passt_interface {
        total += 800 * MI * u128::from(vm.passt_all_ports);
    }
    let pinned = prepared.dedicated || prepared.guaranteed;
    if pinned && f.dedicated_overhead == DedicatedOverhead::BeforeRatio {
        total += 100 * MI;
    }
    if f.reserved_overhead {
        total += vm.reserved_overhead.unwrap_or(0);
    }
    if let RatioSetting::Ratio(ratio) = settings.overhead_ratio {
        total = multiply(total, ratio);
    }
    if pinned && f.dedicated_overhead == DedicatedOverhead::AfterRatio {
        total += 100 * MI;
    }
    total + network_overhead(f, vm, settings)
}

/// `multiplyMemory`: adds `int64(ceil(total / 1000) × (ratio − 1)) × 1000`.
fn multiply(total: u128, ratio: f64) -> u128 {
    // Float to integer saturates (Go's is undefined past int64; no real ratio gets there).
    let addition = ((total.div_ceil(1000) as f64 * (ratio - 1.0)) as i128).saturating_mul(1000);
    u128::try_from((total as i128).saturating_add(addition)).unwrap_or(0)
}

fn network_overhead(f: &Formula, vm: &VmFacts<'_>, settings: &Settings<'_>) -> u128 {
    let mut total = 0;
    if f.binding_plugins
        && let Some(bindings) = settings.bindings
    {
        // Each plugin once, however many interfaces use it; unregistered ones add nothing.
        for (index, interface) in vm.interfaces.iter().enumerate() {
            let Some(name) = interface.binding.as_ref().map(|b| &b.name) else {
                continue;
            };
            let seen = vm.interfaces[..index]
                .iter()
                .any(|i| i.binding.as_ref().is_some_and(|b| b.name == *name));
            if seen {
                continue;
            }
            total += bindings
                .get(name)
                .and_then(|b| b.memory_overhead.as_ref())
                .map_or(0, whole);
        }
    }
    if f.passt_binding && vm.passt_binding {
        total += 250 * MI;
    }
    total
}

/// Whether KubeVirt adds the limits of a namespace whose quota sets `limits.<resource>`.
fn auto_limits(f: &Formula, settings: &Settings<'_>, quota: Tri) -> Tri {
    match f.auto_limits {
        AutoLimits::Never => Tri::No,
        AutoLimits::Gated => settings.auto_limits_gate.and(quota),
        AutoLimits::Always => quota,
    }
}

/// `int64(float64(request) × ratio)` (`WithAutoMemoryLimits`).
fn scaled_limit(request: u128, ratio: f64) -> u128 {
    let value = request as f64 * ratio;
    if value.is_finite() && value > 0.0 {
        value as u128
    } else {
        0
    }
}

pub(super) fn figures(
    scenario: &Scenario<'_>,
    prepared: &Prepared,
    vm: &VmFacts<'_>,
    settings: &Settings<'_>,
) -> Figures {
    let f = scenario.formula;
    let base = prepared.base;
    let overhead = overhead(scenario, prepared, vm, settings);

    // Memory. Dedicated CPUs pin the memory limit to the request before the overhead
    // (`WithCPUPinning` runs before `WithMemoryOverhead` / `WithHugePages`).
    let limit_before_overhead = if prepared.dedicated {
        Some(base)
    } else {
        vm.memory_limit
    };
    let (memory_request, memory_limit, hugepages) = match &vm.hugepages {
        None => {
            let request = if vm.overcommit_guest_overhead {
                base
            } else {
                base + overhead
            };
            (request, limit_before_overhead.map(|l| l + overhead), None)
        }
        // `WithHugePages`: the guest is in hugepages; memory is the overhead plus whatever the
        // request or limit asks beyond the guest.
        Some(_) => {
            let guest = match vm.guest {
                Guest::Bytes(bytes) => bytes,
                Guest::Absent | Guest::Unknown => base,
            };
            let pages = base.min(guest);
            let request = overhead + base.saturating_sub(guest);
            let limit = limit_before_overhead.map(|l| overhead + l.saturating_sub(guest));
            (request, limit, Some(pages))
        }
    };
    let automatic_memory = auto_limits(f, settings, settings.quota_limits_memory);
    let memory_limit_scaled = memory_limit.is_none() && automatic_memory != Tri::No;
    let memory_limit = LimitCase::of(
        memory_limit,
        automatic_memory,
        scaled_limit(memory_request, settings.memory_limit_ratio.unwrap_or(1.0)),
    );

    // CPU.
    let io_cpus = if f.io_thread_cpus {
        u128::from(vm.pool_threads)
    } else {
        0
    };
    let (cpu_request, cpu_limit) = if prepared.dedicated {
        dedicated_cpus(f, vm, prepared, io_cpus)
    } else {
        let total = prepared.vcpus + io_cpus;
        let request = match prepared.cpu_request {
            VmiCpuRequest::Set(nanos, _) => nanos,
            VmiCpuRequest::Unknown => 0,
            VmiCpuRequest::Unset => prepared.ratio_request[usize::from(f.io_thread_cpus)],
        };
        let automatic =
            auto_limits(f, settings, settings.quota_limits_cpu).or(settings.cpu_limit_selector);
        let limit = LimitCase::of(prepared.cpu_limit_written, automatic, total * NANOS);
        (request, limit)
    };

    Figures {
        overhead,
        memory_request,
        memory_limit,
        cpu_request,
        cpu_limit,
        hugepages,
        memory_limit_scaled,
    }
}

/// `WithCPUPinning`: whole CPUs, plus 1 (or 2, to complete an even count when the VM asks) for
/// an isolated emulator thread.
fn dedicated_cpus(
    f: &Formula,
    vm: &VmFacts<'_>,
    prepared: &Prepared,
    io_cpus: u128,
) -> (u128, LimitCase) {
    let vcpus = prepared.vcpus;
    let pool = if vm.pool_policy {
        u128::from(vm.pool_threads)
    } else {
        0
    };
    let base = vcpus + io_cpus;
    let parity_count = match f.emulator_parity {
        EmulatorParity::None => None,
        EmulatorParity::Vcpus => Some(vcpus),
        EmulatorParity::VcpusAndPool => Some(vcpus + pool),
        EmulatorParity::TotalAndPool => Some(base + pool),
    };
    let emulator = match (vm.isolate_emulator_thread, parity_count) {
        (false, _) => 0,
        (true, Some(count)) if vm.even_parity && count % 2 == 0 => 2,
        (true, _) => 1,
    };
    if f.io_thread_cpus {
        // v1.6+: request = limit = vCPUs + IO-thread CPUs, whatever the VM wrote.
        let cpus = (base + emulator) * NANOS;
        return (cpus, LimitCase::Set(cpus));
    }
    // Up to v1.5 the VM's own values stay; the emulator CPUs replace its limit.
    let limit = if emulator > 0 {
        (vcpus + emulator) * NANOS
    } else {
        prepared.cpu_limit_written.unwrap_or(vcpus * NANOS)
    };
    let request = match prepared.cpu_request {
        VmiCpuRequest::Set(nanos, _) => nanos + emulator * NANOS,
        // The API server copies the limit into a missing request.
        VmiCpuRequest::Unset | VmiCpuRequest::Unknown => limit,
    };
    (request, LimitCase::Set(limit))
}
