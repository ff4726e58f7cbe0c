//! What the VM's virt-launcher pod asks the scheduler, quotas and LimitRanges for, computed as
//! KubeVirt computes it: in one place, for the capacity, quota and LimitRange rules.
//!
//! KubeVirt v1.0.0 to v1.9.0 were read (the newest studied); [`era`] holds what changed when.
//! The memory overhead follows `GetMemoryOverhead` (`pkg/virt-controller/services/
//! renderresources.go` to v1.7, `pkg/hypervisor/kvm/hypervisorbackend.go` since v1.8), the rest
//! the renderer's options in `renderresources.go` and virt-api's defaults
//! (`pkg/defaults/defaults.go`). /work/notes/kubevirt-facts.md has the formulas and commits.
//!
//! **Ranges, never guesses.** Each figure is a [`Bound`]: `at_least` is the smallest value any
//! release and configuration consistent with what we know would ask for, `at_most` the largest
//! (or `None` when nothing bounds it: the KubeVirt configuration or the instancetype is
//! unknown). A rule that reports "too much" compares `at_least`, so a VM that some possible
//! KubeVirt would fit is never reported; a rule that reports "too little" (a LimitRange `min`)
//! compares `at_most`. When the version, configuration, architecture, namespace and
//! instancetype are all known, the bounds meet (`Bound::exact`).
//!
//! The figures are the **compute container's**. The pod also has small support containers
//! (guest console log, containerDisk copies, hook sidecars; see the notes), so the pod's totals
//! are at least these.

mod compute;
mod era;
mod instancetype;
mod support;
mod vm;

use compact_str::CompactString;

use crate::cluster::kubevirt::{AUTO_RESOURCE_LIMITS_GATE, Configuration, GateSetting, KubeVirt};
use crate::model::{Labels, ParsedQuantity, VirtualMachine};
use compute::{CpuRequestSetting, Figures, LimitCase, RatioSetting, Scenario, Settings};
pub use instancetype::{InstancetypeCpu, InstancetypeMemory, InstancetypeSpec};
use vm::Tri;

/// The namespace label that scales automatic memory limits (`AutoMemoryLimitsRatioLabel`).
pub const MEMORY_LIMITS_RATIO_LABEL: &str = "alpha.kubevirt.io/auto-memory-limits-ratio";
/// KubeVirt's ratio when the label is absent or invalid (`DefaultMemoryLimitOverheadRatio`).
const DEFAULT_MEMORY_LIMITS_RATIO: f64 = 2.0;
/// Added to the compute container's ephemeral-storage request (`ephemeralStorageOverheadSize`).
const EPHEMERAL_STORAGE_OVERHEAD: u128 = 50_000_000;

/// What the computation reads. Every cluster-side part may be unknown.
#[derive(Debug, Clone, Copy)]
pub struct LauncherInput<'a> {
    pub vm: &'a VirtualMachine,
    /// The cluster's KubeVirt CR; `None` when the view has none (unknown, not "defaults").
    pub kubevirt: Option<&'a KubeVirt>,
    /// The spec of the instancetype `spec.instancetype` names, when the VM names one and the
    /// view has it. Ignored for a VM without `spec.instancetype`.
    pub instancetype: Option<&'a InstancetypeSpec>,
    pub namespace: NamespaceFacts<'a>,
}

/// What KubeVirt reads from the VM's namespace when it adds automatic limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceFacts<'a> {
    /// Some ResourceQuota of the namespace has `spec.hard["limits.cpu"]`; `None` = quotas unknown.
    pub quota_limits_cpu: Option<bool>,
    /// Likewise `limits.memory`.
    pub quota_limits_memory: Option<bool>,
    /// The namespace's labels; `None` = namespace unknown.
    pub labels: Option<&'a Labels>,
}

/// A range of amounts: the smallest and largest any possible KubeVirt would ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub at_least: ParsedQuantity,
    /// `None`: no upper bound is known.
    pub at_most: Option<ParsedQuantity>,
}

impl Bound {
    /// The amount, when every release and configuration that may be running agree on it.
    pub fn exact(&self) -> Option<ParsedQuantity> {
        self.at_most.filter(|most| *most == self.at_least)
    }

    /// Certainly more than `available`: every possible KubeVirt asks for more.
    pub fn exceeds(&self, available: &ParsedQuantity) -> bool {
        self.at_least > *available
    }

    /// Certainly less than `minimum`: no possible KubeVirt asks for as much.
    pub fn below(&self, minimum: &ParsedQuantity) -> bool {
        self.at_most.is_some_and(|most| most < *minimum)
    }
}

/// A limit of the compute container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No release or configuration that may be running sets one.
    Absent,
    /// Every one sets one, in this range.
    Set(Bound),
    /// Some set one (in this range), some do not: a rule must not assume either.
    Maybe(Bound),
}

/// A request and a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub request: Bound,
    pub limit: Limit,
}

/// `hugepages-<pageSize>`: requested and limited alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepagesRequest {
    pub resource: CompactString,
    pub amount: Bound,
}

/// A device-plugin resource (a GPU or host device `deviceName`): requested and limited alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    pub resource: CompactString,
    pub count: u64,
}

/// Why figures are ranges rather than exact: for messages ("at least …, KubeVirt's version is
/// unknown").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unknowns {
    /// No KubeVirt CR, or a version that is no single studied release.
    pub version: bool,
    /// No KubeVirt CR, or a configuration KubeVirt would refuse.
    pub configuration: bool,
    /// The VM names an instancetype the input does not carry (or one with fields not
    /// modelled), or a preference (which may add devices or turn graphics off).
    pub instancetype: bool,
    /// Neither the VM nor the CR says amd64 or arm64 (arm64 adds 128Mi).
    pub architecture: bool,
}

/// The compute container of the VM's launcher pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherRequest {
    /// Cores (`0.1` = 100m; shared vCPUs are divided by `cpuAllocationRatio` to nanocore
    /// precision, as KubeVirt's quantity parsing rounds up; the scheduler rounds up to millis).
    pub cpu: Resource,
    /// Bytes, KubeVirt's overhead included.
    pub memory: Resource,
    pub ephemeral_storage: Resource,
    /// Present when the VM (or its instancetype) asks for hugepages.
    pub hugepages: Option<HugepagesRequest>,
    /// GPUs and host devices served by device plugins. Also a lower bound: SR-IOV networks'
    /// resources (named by their NetworkAttachmentDefinition) and KubeVirt's own devices
    /// (`devices.kubevirt.io/kvm`, `tun`, `vhost-net`) are not listed.
    pub devices: Vec<DeviceRequest>,
    /// The overhead KubeVirt adds to the memory request (for messages).
    pub memory_overhead: Bound,
    /// The whole pod as the scheduler adds it up: the compute container and KubeVirt's support
    /// containers (guest console log, one per containerDisk).
    pub pod: PodRequest,
    pub unknowns: Unknowns,
}

/// The launcher pod's request as the scheduler counts it (containers and native sidecars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRequest {
    pub cpu: Bound,
    pub memory: Bound,
}

/// The launcher pod's compute container for this VM, as KubeVirt would render it. `None` when
/// the VM cannot be judged: a CPU or memory quantity that does not parse, no memory at all, or
/// a template that conflicts with its instancetype (other rules report those).
pub fn request(input: &LauncherInput<'_>) -> Option<LauncherRequest> {
    let vm = vm::resolve(input.vm, input.instancetype)?;
    let configuration = input.kubevirt.and_then(KubeVirt::configuration);
    let settings = settings(input, configuration);
    let version = input.kubevirt.and_then(|kv| kv.version.as_ref());
    let formulas = era::formulas_for(version);
    let architecture = vm.architecture.or_else(|| {
        input
            .kubevirt
            .and_then(|kv| kv.default_architecture.as_deref())
    });
    let arm64 = architecture.map_or(Tri::Unknown, |a| Tri::of(a == "arm64"));

    // arm64 and graphics only add to the overhead, and every figure grows with the overhead
    // while the overhead ratio is at least 1: their smallest and largest corners bound all
    // four combinations. A ratio below 1 can shrink a sum at kilobyte steps: try them all.
    let corners: &[(bool, bool)] = match settings.overhead_ratio {
        _ if arm64 != Tri::Unknown && vm.graphics != Tri::Unknown => &[(false, false)],
        RatioSetting::Ratio(ratio) if ratio < 1.0 => {
            &[(false, false), (false, true), (true, false), (true, true)]
        }
        _ => &[(false, false), (true, true)],
    };
    let mut folded: Option<Folded> = None;
    for &dedicated in vm.dedicated.cases() {
        let prepared = compute::prepare(&vm, &settings, dedicated);
        for formula in formulas {
            for &(arm64_corner, graphics_corner) in corners {
                let scenario = Scenario {
                    formula,
                    arm64: arm64.pick(arm64_corner),
                    graphics: vm.graphics.pick(graphics_corner),
                };
                let figures = compute::figures(&scenario, &prepared, &vm, &settings);
                folded = Some(match folded {
                    None => Folded::new(&figures),
                    Some(f) => f.with(&figures),
                });
            }
        }
    }
    let folded = folded?;

    let unbounded = configuration.is_none() || vm.open;
    let bound = |range: Range, exponent: i32, open: bool| Bound {
        at_least: quantity(range.low, exponent),
        at_most: (!open).then(|| quantity(range.high, exponent)),
    };
    let limit = |limit: LimitRange, exponent: i32, open: bool| match limit.kind {
        LimitKind::Absent => Limit::Absent,
        LimitKind::Set => Limit::Set(bound(limit.range, exponent, open)),
        LimitKind::Maybe => Limit::Maybe(bound(limit.range, exponent, open)),
    };
    // The namespace's ratio only matters where the memory limit is KubeVirt's automatic one.
    let ratio_unknown = settings.memory_limit_ratio.is_none() && folded.memory_limit_scaled;
    let ephemeral_request = vm.ephemeral_request.unwrap_or(0) + EPHEMERAL_STORAGE_OVERHEAD;
    let exact = |value: u128| Bound {
        at_least: quantity(value, 0),
        at_most: Some(quantity(value, 0)),
    };
    let cpu = Resource {
        request: bound(folded.cpu_request, -9, unbounded),
        limit: limit(folded.cpu_limit, -9, unbounded),
    };
    let memory = Resource {
        request: bound(folded.memory_request, 0, unbounded),
        limit: limit(folded.memory_limit, 0, unbounded || ratio_unknown),
    };
    let pod = pod_request(input.vm, configuration, formulas, &folded, unbounded);
    Some(LauncherRequest {
        cpu,
        memory,
        ephemeral_storage: Resource {
            request: exact(ephemeral_request),
            limit: vm.ephemeral_limit.map_or(Limit::Absent, |l| {
                Limit::Set(exact(l + EPHEMERAL_STORAGE_OVERHEAD))
            }),
        },
        hugepages: vm.hugepages.as_ref().map(|(resource, _)| HugepagesRequest {
            resource: resource.clone(),
            amount: bound(folded.hugepages, 0, unbounded),
        }),
        devices: vm::devices(input.vm, input.instancetype)
            .into_iter()
            .map(|(resource, count)| DeviceRequest { resource, count })
            .collect(),
        memory_overhead: bound(folded.overhead, 0, unbounded),
        pod,
        unknowns: Unknowns {
            version: formulas.len() > 1,
            configuration: configuration.is_none(),
            instancetype: vm.open,
            architecture: arm64 == Tri::Unknown,
        },
    })
}

/// The whole pod: the compute container and KubeVirt's support containers. Known for the v1.6
/// line (seen on v1.6.6's real pods); for another or an unknown release the compute container
/// is the lower bound and nothing bounds it from above.
fn pod_request(
    vm: &VirtualMachine,
    configuration: Option<&Configuration>,
    formulas: &[era::Formula],
    folded: &Folded,
    unbounded: bool,
) -> PodRequest {
    let observed = matches!(formulas, [only] if (only.since.0, only.since.1) == (1, 6));
    if !observed {
        return PodRequest {
            cpu: Bound {
                at_least: quantity(folded.cpu_request.low, -9),
                at_most: None,
            },
            memory: Bound {
                at_least: quantity(folded.memory_request.low, 0),
                at_most: None,
            },
        };
    }
    // Guaranteed QoS: every figure's request equals its limit, in every scenario.
    let pinned = |request: Range, limit: LimitRange| {
        limit.kind == LimitKind::Set
            && limit.range.low == request.low
            && limit.range.high == request.high
    };
    let guaranteed = match (
        pinned(folded.cpu_request, folded.cpu_limit),
        pinned(folded.memory_request, folded.memory_limit),
    ) {
        (true, true) if folded.cpu_request.low == folded.cpu_request.high => vm::Tri::Yes,
        (true, true) => vm::Tri::Unknown,
        _ if folded.cpu_limit.kind == LimitKind::Absent
            || folded.memory_limit.kind == LimitKind::Absent =>
        {
            vm::Tri::No
        }
        _ => vm::Tri::Unknown,
    };
    let console = support::console_log(vm, configuration);
    let mut low: Option<(u128, u128)> = None;
    let mut high = (0, 0);
    for &g in guaranteed.cases() {
        for &c in console.cases() {
            let (cpu, memory) = support::request(vm, g, c);
            low = Some(low.map_or((cpu, memory), |(lc, lm)| (lc.min(cpu), lm.min(memory))));
            high = (high.0.max(cpu), high.1.max(memory));
        }
    }
    let (low_cpu, low_memory) = low.unwrap_or_default();
    PodRequest {
        cpu: Bound {
            at_least: quantity(folded.cpu_request.low + low_cpu, -9),
            at_most: (!unbounded).then(|| quantity(folded.cpu_request.high + high.0, -9)),
        },
        memory: Bound {
            at_least: quantity(folded.memory_request.low + low_memory, 0),
            at_most: (!unbounded).then(|| quantity(folded.memory_request.high + high.1, 0)),
        },
    }
}

/// `value × 10^exponent` as a quantity (bytes: 0; nanocores: −9).
fn quantity(value: u128, exponent: i32) -> ParsedQuantity {
    ParsedQuantity::from_scaled(value, exponent).expect("a small exponent cannot overflow")
}

/// The KubeVirt settings the arithmetic reads; all unknown without a usable configuration.
fn settings<'a>(
    input: &LauncherInput<'a>,
    configuration: Option<&'a Configuration>,
) -> Settings<'a> {
    let namespace = &input.namespace;
    let tri = |known: Option<bool>| known.map_or(Tri::Unknown, Tri::of);
    let label = |key: &str| {
        namespace
            .labels
            .map(|labels| labels.get(key).map(CompactString::as_str))
    };
    let memory_limit_ratio = label(MEMORY_LIMITS_RATIO_LABEL).and_then(|value| {
        match value.map(|v| v.trim().parse::<f64>()) {
            None | Some(Err(_)) => Some(DEFAULT_MEMORY_LIMITS_RATIO),
            Some(Ok(ratio)) if !ratio.is_finite() => None,
            Some(Ok(ratio)) if ratio < 1.0 => Some(DEFAULT_MEMORY_LIMITS_RATIO),
            Some(Ok(ratio)) => Some(ratio),
        }
    });
    let Some(config) = configuration else {
        return Settings {
            memory_overcommit: None,
            cpu_allocation_ratio: None,
            cpu_request: CpuRequestSetting::Unknown,
            overhead_ratio: RatioSetting::Unknown,
            bindings: None,
            auto_limits_gate: Tri::Unknown,
            quota_limits_cpu: tri(namespace.quota_limits_cpu),
            quota_limits_memory: tri(namespace.quota_limits_memory),
            cpu_limit_selector: Tri::Unknown,
            memory_limit_ratio,
        };
    };
    let cpu_limit_selector = if !config.has_auto_cpu_limit_selector() {
        Tri::No
    } else {
        match namespace.labels {
            Some(labels) => Tri::of(
                config.auto_cpu_limit_applies(|key| labels.get(key).map(CompactString::as_str)),
            ),
            None => Tri::Unknown,
        }
    };
    Settings {
        memory_overcommit: Some(config.memory_overcommit),
        cpu_allocation_ratio: Some(config.cpu_allocation_ratio),
        cpu_request: config
            .cpu_request
            .map_or(CpuRequestSetting::Default, CpuRequestSetting::Override),
        overhead_ratio: config
            .overhead_ratio
            .map_or(RatioSetting::Unset, RatioSetting::Ratio),
        bindings: Some(&config.network_bindings),
        auto_limits_gate: Tri::of(
            config.feature_gate(AUTO_RESOURCE_LIMITS_GATE) == GateSetting::Enabled,
        ),
        quota_limits_cpu: tri(namespace.quota_limits_cpu),
        quota_limits_memory: tri(namespace.quota_limits_memory),
        cpu_limit_selector,
        memory_limit_ratio,
    }
}

/// Smallest and largest of one figure over the scenarios.
#[derive(Debug, Clone, Copy)]
struct Range {
    low: u128,
    high: u128,
}

impl Range {
    fn new(value: u128) -> Self {
        Range {
            low: value,
            high: value,
        }
    }

    fn with(self, value: u128) -> Self {
        Range {
            low: self.low.min(value),
            high: self.high.max(value),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitKind {
    Absent,
    Set,
    Maybe,
}

#[derive(Debug, Clone, Copy)]
struct LimitRange {
    kind: LimitKind,
    /// Over the scenarios that set a limit (zero when none does).
    range: Range,
}

impl LimitRange {
    fn new(case: LimitCase) -> Self {
        match case {
            LimitCase::Absent => LimitRange {
                kind: LimitKind::Absent,
                range: Range::new(0),
            },
            LimitCase::Set(value) => LimitRange {
                kind: LimitKind::Set,
                range: Range::new(value),
            },
            LimitCase::Maybe(value) => LimitRange {
                kind: LimitKind::Maybe,
                range: Range::new(value),
            },
        }
    }

    fn with(self, case: LimitCase) -> Self {
        let next = LimitRange::new(case);
        let kind = match (self.kind, next.kind) {
            (LimitKind::Absent, LimitKind::Absent) => LimitKind::Absent,
            (LimitKind::Set, LimitKind::Set) => LimitKind::Set,
            _ => LimitKind::Maybe,
        };
        let range = match (self.kind, next.kind) {
            (LimitKind::Absent, _) => next.range,
            (_, LimitKind::Absent) => self.range,
            _ => Range {
                low: self.range.low.min(next.range.low),
                high: self.range.high.max(next.range.high),
            },
        };
        LimitRange { kind, range }
    }
}

#[derive(Debug, Clone, Copy)]
struct Folded {
    overhead: Range,
    memory_request: Range,
    memory_limit: LimitRange,
    cpu_request: Range,
    cpu_limit: LimitRange,
    hugepages: Range,
    memory_limit_scaled: bool,
}

impl Folded {
    fn new(figures: &Figures) -> Self {
        Folded {
            overhead: Range::new(figures.overhead),
            memory_request: Range::new(figures.memory_request),
            memory_limit: LimitRange::new(figures.memory_limit),
            cpu_request: Range::new(figures.cpu_request),
            cpu_limit: LimitRange::new(figures.cpu_limit),
            hugepages: Range::new(figures.hugepages.unwrap_or(0)),
            memory_limit_scaled: figures.memory_limit_scaled,
        }
    }

    fn with(self, figures: &Figures) -> Self {
        Folded {
            overhead: self.overhead.with(figures.overhead),
            memory_request: self.memory_request.with(figures.memory_request),
            memory_limit: self.memory_limit.with(figures.memory_limit),
            cpu_request: self.cpu_request.with(figures.cpu_request),
            cpu_limit: self.cpu_limit.with(figures.cpu_limit),
            hugepages: self.hugepages.with(figures.hugepages.unwrap_or(0)),
            memory_limit_scaled: self.memory_limit_scaled || figures.memory_limit_scaled,
        }
    }
}

#[cfg(test)]
mod tests;
