//! The VM's own figures, as integers, before any release's arithmetic: what the template (and
//! its instancetype) ask for and which features cost the launcher memory.

use compact_str::CompactString;

use super::instancetype::InstancetypeSpec;
use crate::model::{Interface, ParsedQuantity, QuantityText, VirtualMachine, VmiSpec};

/// The annotation that makes an isolated emulator thread take two CPUs when that completes an
/// even count (`v1.EmulatorThreadCompleteToEvenParity`).
const EVEN_PARITY_ANNOTATION: &str = "alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity";

/// A fact that may be unknown (an instancetype we were not given, a preference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    pub fn of(value: bool) -> Self {
        if value { Tri::Yes } else { Tri::No }
    }

    /// The values to try: one when known, both when not.
    pub fn cases(self) -> &'static [bool] {
        match self {
            Tri::Yes => &[true],
            Tri::No => &[false],
            Tri::Unknown => &[false, true],
        }
    }

    /// The value, or for an unknown one the given choice.
    pub fn pick(self, when_unknown: bool) -> bool {
        match self {
            Tri::Yes => true,
            Tri::No => false,
            Tri::Unknown => when_unknown,
        }
    }

    pub fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Unknown,
        }
    }

    pub fn or(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
            (Tri::No, Tri::No) => Tri::No,
            _ => Tri::Unknown,
        }
    }
}

/// Guest memory: KubeVirt sizes the request from it when no request or limit is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Guest {
    Bytes(u128),
    /// Not written (the request comes from a request, a limit or the hugepage size).
    Absent,
    /// From an instancetype we were not given.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TpmDevice {
    None,
    Enabled,
    /// `tpm: {enabled: false}`: no swtpm since v1.4.1 / v1.5.1, 53Mi before.
    Disabled,
}

#[derive(Debug, Clone)]
pub(super) struct VmFacts<'a> {
    /// `resources.requests.memory` (or an instancetype's overcommitPercent), bytes.
    pub memory_request: Option<u128>,
    pub memory_limit: Option<u128>,
    pub guest: Guest,
    /// `hugepages-<pageSize>` and the page size in bytes (`None` if it is not a quantity).
    pub hugepages: Option<(CompactString, Option<u128>)>,
    pub overcommit_guest_overhead: bool,
    /// Exact, for the request = limit comparisons of guaranteed QoS.
    pub cpu_request: Option<ParsedQuantity>,
    pub cpu_limit: Option<ParsedQuantity>,
    /// Product of the non-zero cores/sockets/threads (or an instancetype's guest CPUs); `None`
    /// when the VM writes no topology (virt-api then takes it from the CPU limit or request).
    pub topology_vcpus: Option<u64>,
    pub dedicated: Tri,
    pub isolate_emulator_thread: bool,
    pub even_parity: bool,
    pub pool_threads: u64,
    pub pool_policy: bool,
    pub graphics: Tri,
    pub architecture: Option<&'a str>,
    pub vfio: bool,
    pub downward_metrics: bool,
    pub exec_probes: u32,
    pub sev: bool,
    pub snp: bool,
    pub tpm: TpmDevice,
    pub passt_all_ports: u32,
    pub passt_binding: bool,
    pub reserved_overhead: Option<u128>,
    pub interfaces: &'a [Interface],
    pub ephemeral_request: Option<u128>,
    pub ephemeral_limit: Option<u128>,
    /// The instancetype is unknown or sets what is not modelled, or a preference applies: no
    /// upper bound.
    pub open: bool,
}

/// Kubernetes computes with int64 (`Value()`); larger amounts are not judged. It also keeps
/// every sum below in u128.
const LARGEST: u128 = i64::MAX as u128;

/// Bytes of a memory quantity, rounded up as Kubernetes' `Value()`.
fn bytes(quantity: &QuantityText) -> Option<u128> {
    quantity
        .parse()
        .ok()?
        .ceil_scaled(0)
        .filter(|b| *b <= LARGEST)
}

fn exact(quantity: &QuantityText) -> Option<ParsedQuantity> {
    quantity
        .parse()
        .ok()
        .filter(|q| q.ceil_scaled(0).is_some_and(|whole| whole <= LARGEST))
}

/// `None` when the VM cannot be judged: a quantity that does not parse (the `quantity-invalid`
/// rule reports it), a template that conflicts with its instancetype (KubeVirt rejects the
/// VM), or no memory at all (`memory-missing`).
pub(super) fn resolve<'a>(
    vm: &'a VirtualMachine,
    instancetype: Option<&'a InstancetypeSpec>,
) -> Option<VmFacts<'a>> {
    let spec: &'a VmiSpec = vm.template_spec();
    let domain = &spec.domain;
    let resources = &domain.resources;
    let read = |map: &'a std::collections::BTreeMap<CompactString, QuantityText>, key: &str| {
        map.get(key).map(bytes).map_or(Some(None), |v| v.map(Some))
    };
    let read_exact = |map: &'a std::collections::BTreeMap<CompactString, QuantityText>,
                      key: &str| {
        map.get(key).map(exact).map_or(Some(None), |v| v.map(Some))
    };
    let mut memory_request = read(&resources.requests, "memory")?;
    let memory_limit = read(&resources.limits, "memory")?;
    let cpu_request = read_exact(&resources.requests, "cpu")?;
    let cpu_limit = read_exact(&resources.limits, "cpu")?;
    let memory = domain.memory.as_ref();
    let mut guest = match memory.and_then(|m| m.guest.as_ref()) {
        Some(q) => Guest::Bytes(bytes(q)?),
        None => Guest::Absent,
    };
    let mut hugepage_size = memory
        .and_then(|m| m.hugepages.as_ref())
        .and_then(|h| h.page_size.as_ref());
    let cpu = domain.cpu.as_ref();
    // `hardware.GetNumberOfVCPUs`: the product of the non-zero counts, in uint32 as Go does.
    let product = cpu.map_or(0, |c| {
        [c.cores, c.sockets, c.threads]
            .into_iter()
            .flatten()
            .filter(|n| *n != 0)
            .fold(
                0u32,
                |acc, n| if acc == 0 { n } else { acc.wrapping_mul(n) },
            )
    });
    let mut topology_vcpus = (product != 0).then_some(u64::from(product));
    let mut dedicated = Tri::of(cpu.and_then(|c| c.dedicated_cpu_placement) == Some(true));
    let mut isolate_emulator_thread = cpu.and_then(|c| c.isolate_emulator_thread) == Some(true);
    let mut open = false;
    let mut extra_gpus: &[crate::model::Gpu] = &[];
    let mut extra_host_devices: &[crate::model::HostDevice] = &[];

    if vm.spec.instancetype.is_some() {
        // The template may not write what the instancetype sets (KubeVirt's conflict check).
        let conflicts = memory_request.is_some()
            || memory_limit.is_some()
            || cpu_request.is_some()
            || cpu_limit.is_some()
            || guest != Guest::Absent
            || topology_vcpus.is_some();
        if conflicts {
            return None;
        }
        match instancetype {
            Some(it) => {
                guest = Guest::Bytes(bytes(it.memory.guest.as_ref()?)?);
                if let (Guest::Bytes(g), Some(percent)) = (guest, it.memory.overcommit_percent)
                    && percent > 0
                {
                    memory_request = Some(instancetype_request(g, percent));
                }
                topology_vcpus = it.cpu.guest.map(u64::from).filter(|n| *n != 0);
                if it.cpu.dedicated_cpu_placement == Some(true) {
                    dedicated = Tri::Yes;
                }
                isolate_emulator_thread |= it.cpu.isolate_emulator_thread == Some(true);
                hugepage_size = hugepage_size.or(it.hugepages_size());
                extra_gpus = &it.gpus;
                extra_host_devices = &it.host_devices;
                open = it.has_unmodelled_fields();
            }
            None => {
                guest = Guest::Unknown;
                if dedicated == Tri::No {
                    dedicated = Tri::Unknown;
                }
                open = true;
            }
        }
    }
    // A preference fills what the template leaves unset: graphics off (less), a TPM or arm64
    // (more). Only the former can lower the request; the latter leave no upper bound.
    open |= vm.spec.preference.is_some();
    let has_memory = memory_request.is_some()
        || memory_limit.is_some()
        || guest != Guest::Absent
        || hugepage_size.is_some();
    if !has_memory {
        return None;
    }

    let devices = &domain.devices;
    let interfaces = devices.interfaces.as_slice();
    let template_annotations = &vm.spec.template.as_ref()?.metadata.annotations;
    let graphics = match devices.autoattach_graphics_device {
        Some(value) => Tri::of(value),
        // A preference may turn the graphics device off.
        None if vm.spec.preference.is_some() => Tri::Unknown,
        None => Tri::Yes,
    };
    let probe_is_exec =
        |p: &Option<crate::model::Probe>| p.as_ref().is_some_and(|p| p.exec.is_some());
    let security = domain.launch_security.as_ref();
    Some(VmFacts {
        memory_request,
        memory_limit,
        guest,
        hugepages: hugepage_size.map(|size| {
            (
                compact_str::format_compact!("hugepages-{size}"),
                ParsedQuantity::parse(size)
                    .ok()
                    .and_then(|q| q.ceil_scaled(0)),
            )
        }),
        overcommit_guest_overhead: resources.overcommit_guest_overhead == Some(true),
        cpu_request,
        cpu_limit,
        topology_vcpus,
        dedicated,
        isolate_emulator_thread,
        even_parity: template_annotations.contains_key(EVEN_PARITY_ANNOTATION),
        pool_threads: domain
            .io_threads
            .as_ref()
            .and_then(|t| t.supplemental_pool_thread_count)
            .map_or(0, u64::from),
        pool_policy: domain.io_threads_policy.as_deref() == Some("supplementalPool"),
        graphics,
        architecture: spec.architecture.as_deref().filter(|a| !a.is_empty()),
        vfio: !devices.gpus.is_empty()
            || !devices.host_devices.is_empty()
            || !extra_gpus.is_empty()
            || !extra_host_devices.is_empty()
            || interfaces.iter().any(|i| i.sriov.is_some()),
        downward_metrics: spec.volumes.iter().any(|v| v.downward_metrics.is_some()),
        exec_probes: u32::from(probe_is_exec(&spec.liveness_probe))
            + u32::from(probe_is_exec(&spec.readiness_probe)),
        sev: security.is_some_and(|s| s.sev.is_some()),
        snp: security.is_some_and(|s| s.snp.is_some()),
        tpm: match &devices.tpm {
            None => TpmDevice::None,
            Some(tpm) if tpm.enabled == Some(false) => TpmDevice::Disabled,
            Some(_) => TpmDevice::Enabled,
        },
        passt_all_ports: interfaces
            .iter()
            .filter(|i| i.passt.is_some() && i.ports.is_empty())
            .count()
            .try_into()
            .unwrap_or(u32::MAX),
        passt_binding: interfaces.iter().any(|i| i.passt_binding.is_some()),
        reserved_overhead: match memory
            .and_then(|m| m.reserved_overhead.as_ref())
            .and_then(|r| r.added_overhead.as_ref())
        {
            Some(q) => Some(bytes(q)?),
            None => None,
        },
        interfaces,
        ephemeral_request: read(&resources.requests, "ephemeral-storage")?,
        ephemeral_limit: read(&resources.limits, "ephemeral-storage")?,
        open,
    })
}

/// `int64(float32(guest) × (1 − float32(pct)/100))`, in float32 as KubeVirt computes it
/// (`applyMemory`, `pkg/instancetype/apply/memory.go`, v1.9).
fn instancetype_request(guest: u128, percent: i64) -> u128 {
    let value = guest as f32 * (1.0 - percent as f32 / 100.0);
    // Go's int64 conversion of a float; a negative result (percent over 100) is no request.
    if value.is_finite() && value > 0.0 {
        value as u128
    } else {
        0
    }
}

/// Each GPU and host device that a device plugin serves adds one of its resource to requests
/// and limits (`requestResource`); DRA devices (`claimRequest`) become ResourceClaims instead.
pub(super) fn devices<'a>(
    vm: &'a VirtualMachine,
    instancetype: Option<&'a InstancetypeSpec>,
) -> Vec<(CompactString, u64)> {
    let devices = &vm.template_spec().domain.devices;
    let from_instancetype = instancetype.filter(|_| vm.spec.instancetype.is_some());
    let gpus = devices
        .gpus
        .iter()
        .chain(from_instancetype.map_or(&[][..], |it| &it.gpus))
        .map(|g| (&g.device_name, g.claim_request.is_some()));
    let host_devices = devices
        .host_devices
        .iter()
        .chain(from_instancetype.map_or(&[][..], |it| &it.host_devices))
        .map(|d| (&d.device_name, d.claim_request.is_some()));
    let mut counts: Vec<(CompactString, u64)> = Vec::new();
    for (name, claimed) in gpus.chain(host_devices) {
        let Some(name) = name.as_ref().filter(|n| !n.is_empty() && !claimed) else {
            continue;
        };
        match counts.iter_mut().find(|(n, _)| n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name.clone(), 1)),
        }
    }
    counts
}
