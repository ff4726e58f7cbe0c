//! What changed in the launcher's arithmetic, release by release (v1.0.0 to v1.9.0, the newest
//! studied). Each row is the first release of a formula; a release uses the last row at or
//! before it. Sources: `GetMemoryOverhead` (`pkg/virt-controller/services/renderresources.go`
//! up to v1.7, `pkg/hypervisor/kvm/hypervisorbackend.go` since v1.8), the options of
//! `VMIResourcePredicates` (`pkg/virt-controller/services/template.go`) and virt-api's
//! defaults. /work/notes/kubevirt-facts.md has the details and commits.

use crate::cluster::kubevirt::KubeVirtVersion;

const MI: u128 = 1 << 20;

/// Where the 100Mi for dedicated CPUs / guaranteed QoS goes relative to the overhead ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DedicatedOverhead {
    /// v1.0: not added.
    None,
    /// Added after `additionalGuestMemoryOverheadRatio` multiplies the rest (not scaled).
    AfterRatio,
    /// Added before it (scaled), since commit fc8038d11d (v1.4.1, v1.5.3, v1.6.0).
    BeforeRatio,
}

/// What decides whether `isolateEmulatorThread` takes 2 CPUs instead of 1 (with the
/// `alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity` annotation, when the count is even).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EmulatorParity {
    /// v1.0–v1.1: always 1.
    None,
    /// v1.2–v1.4: the vCPUs.
    Vcpus,
    /// v1.5: the vCPUs plus the supplemental pool's threads.
    VcpusAndPool,
    /// v1.6+: the vCPUs and IO-thread CPUs, plus the supplemental pool's threads.
    TotalAndPool,
}

/// Whether KubeVirt adds limits in a namespace whose ResourceQuota sets `limits.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AutoLimits {
    /// v1.0: the feature does not exist.
    Never,
    /// v1.1–v1.4: with the AutoResourceLimitsGate.
    Gated,
    /// v1.5+: GA.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Formula {
    /// The first release (major, minor, patch) that computes this way.
    pub since: (u32, u32, u32),
    /// virt-launcher-monitor + virt-launcher + virtlogd + virtqemud + qemu.
    pub daemons: u128,
    /// Video RAM unless `autoattachGraphicsDevice: false`.
    pub video: u128,
    pub dedicated_overhead: DedicatedOverhead,
    /// `tpm: {enabled: false}` costs nothing (`tpm.HasDevice`); before, any `tpm` cost 53Mi.
    pub tpm_honours_enabled: bool,
    /// 800Mi per core `passt` interface that forwards all ports (no `ports`).
    pub passt_interface: bool,
    /// Binding plugins' `computeResourceOverhead.requests.memory`.
    pub binding_plugins: bool,
    /// 250Mi once for the core `passtBinding`.
    pub passt_binding: bool,
    /// SEV-SNP (and SEV-ES) guests get the SEV overhead too.
    pub snp: bool,
    /// `memory.reservedOverhead.addedOverhead` is added.
    pub reserved_overhead: bool,
    /// Page tables are sized from the request virt-api defaulted into the VMI (≤ v1.6); since
    /// v1.7 only an explicit request counts (commits 0a0b5cfc08, 51927ed13c).
    pub page_tables_from_default: bool,
    /// `ioThreads.supplementalPoolThreadCount` CPUs are requested (shared: divided by the ratio;
    /// dedicated: whole), and dedicated CPUs set request = limit = vCPUs + those (commit
    /// a49ba6c0b9).
    pub io_thread_cpus: bool,
    pub emulator_parity: EmulatorParity,
    pub auto_limits: AutoLimits,
}

const V1_0_0: Formula = Formula {
    since: (1, 0, 0),
    daemons: (25 + 100 + 20 + 35 + 30) * MI,
    video: 16 * MI,
    dedicated_overhead: DedicatedOverhead::None,
    tpm_honours_enabled: false,
    passt_interface: true,
    binding_plugins: false,
    passt_binding: false,
    snp: false,
    reserved_overhead: false,
    page_tables_from_default: true,
    io_thread_cpus: false,
    emulator_parity: EmulatorParity::None,
    auto_limits: AutoLimits::Never,
};

const V1_1_0: Formula = Formula {
    since: (1, 1, 0),
    dedicated_overhead: DedicatedOverhead::AfterRatio,
    auto_limits: AutoLimits::Gated,
    ..V1_0_0
};

const V1_2_0: Formula = Formula {
    since: (1, 2, 0),
    emulator_parity: EmulatorParity::Vcpus,
    ..V1_1_0
};

/// Core passt removed (commit 917ea8e368).
const V1_3_0: Formula = Formula {
    since: (1, 3, 0),
    passt_interface: false,
    ..V1_2_0
};

const V1_4_0: Formula = Formula {
    since: (1, 4, 0),
    binding_plugins: true,
    ..V1_3_0
};

const V1_4_1: Formula = Formula {
    since: (1, 4, 1),
    dedicated_overhead: DedicatedOverhead::BeforeRatio,
    tpm_honours_enabled: true,
    ..V1_4_0
};

/// virtlogd 25Mi, virtqemud 40Mi (commit 10b0d9b181); AutoResourceLimits GA (24e37fc166).
/// v1.5.0 itself still had the old TPM check and the 100Mi after the ratio.
const V1_5_0: Formula = Formula {
    since: (1, 5, 0),
    daemons: (25 + 100 + 25 + 40 + 30) * MI,
    dedicated_overhead: DedicatedOverhead::AfterRatio,
    tpm_honours_enabled: false,
    emulator_parity: EmulatorParity::VcpusAndPool,
    auto_limits: AutoLimits::Always,
    ..V1_4_1
};

const V1_5_1: Formula = Formula {
    since: (1, 5, 1),
    tpm_honours_enabled: true,
    ..V1_5_0
};

const V1_5_3: Formula = Formula {
    since: (1, 5, 3),
    dedicated_overhead: DedicatedOverhead::BeforeRatio,
    ..V1_5_1
};

/// Video 32Mi (commit 314fd5cfe8); IO-thread CPUs. Page tables only from a written request:
/// v1.6.6's real launcher pods (tests/differential.rs) show v1.7's commits backported; taken
/// from v1.6.0 so that an earlier v1.6 patch, if it still counted the defaulted request, is
/// under-, never over-estimated.
const V1_6_0: Formula = Formula {
    since: (1, 6, 0),
    video: 32 * MI,
    page_tables_from_default: false,
    io_thread_cpus: true,
    emulator_parity: EmulatorParity::TotalAndPool,
    ..V1_5_3
};

const V1_7_0: Formula = Formula {
    since: (1, 7, 0),
    snp: true,
    ..V1_6_0
};

/// `GetMemoryOverhead` moves to `pkg/hypervisor/kvm/hypervisorbackend.go` (same terms, and the
/// same for hyperv-direct's `mshv` backend); v1.9.0 is unchanged.
const V1_8_0: Formula = Formula {
    since: (1, 8, 0),
    passt_binding: true,
    reserved_overhead: true,
    ..V1_7_0
};

impl Formula {
    pub fn first_release(&self) -> KubeVirtVersion {
        let (major, minor, patch) = self.since;
        KubeVirtVersion::release(major, minor, patch)
    }
}

/// Oldest first.
pub(super) const FORMULAS: [Formula; 13] = [
    V1_0_0, V1_1_0, V1_2_0, V1_3_0, V1_4_0, V1_4_1, V1_5_0, V1_5_1, V1_5_3, V1_6_0, V1_7_0, V1_8_0,
    V1_9_0,
];

/// The newest release studied (same arithmetic as v1.8): a later minor may have changed
/// anything.
const V1_9_0: Formula = Formula {
    since: (1, 9, 0),
    ..V1_8_0
};
const NEWEST_STUDIED_MINOR: (u32, u32) = (1, 9);

/// The formulas the running KubeVirt may use: one for a release we studied; every one when the
/// version is unknown, older than v1.0, newer than the newest minor studied, or a build that
/// spans several (a release candidate: from the previous minor's `.0` to itself).
pub(super) fn formulas_for(version: Option<&KubeVirtVersion>) -> &'static [Formula] {
    let Some(version) = version else {
        return &FORMULAS;
    };
    let (low, high) = version.release_range();
    let newest = KubeVirtVersion::release(NEWEST_STUDIED_MINOR.0, NEWEST_STUDIED_MINOR.1 + 1, 0);
    if low < FORMULAS[0].first_release() || high >= newest {
        return &FORMULAS;
    }
    let index = |v: &KubeVirtVersion| {
        FORMULAS
            .iter()
            .rposition(|f| f.first_release() <= *v)
            .unwrap_or(0)
    };
    &FORMULAS[index(&low)..=index(&high)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KubeVirtVersion {
        KubeVirtVersion::parse(text).unwrap()
    }

    fn sinces(version: Option<&KubeVirtVersion>) -> Vec<String> {
        formulas_for(version)
            .iter()
            .map(|f| f.first_release().to_string())
            .collect()
    }

    #[test]
    fn a_release_uses_the_last_formula_at_or_before_it() {
        assert_eq!(sinces(Some(&v("v1.4.0"))), ["v1.4.0"]);
        assert_eq!(sinces(Some(&v("v1.4.1"))), ["v1.4.1"]);
        assert_eq!(sinces(Some(&v("v1.5.2"))), ["v1.5.1"]);
        assert_eq!(sinces(Some(&v("v1.6.6"))), ["v1.6.0"]);
        assert_eq!(sinces(Some(&v("v1.9.0"))), ["v1.9.0"]);
        // A later patch of the newest minor studied keeps its formula.
        assert_eq!(sinces(Some(&v("v1.9.3"))), ["v1.9.0"]);
    }

    #[test]
    fn unknown_future_old_and_candidate_builds_span_formulas() {
        assert_eq!(formulas_for(None).len(), FORMULAS.len());
        assert_eq!(formulas_for(Some(&v("v1.10.0"))).len(), FORMULAS.len());
        assert_eq!(formulas_for(Some(&v("v0.59.0"))).len(), FORMULAS.len());
        assert_eq!(formulas_for(Some(&v("v1.0.0-rc.1"))).len(), FORMULAS.len());
        assert_eq!(
            sinces(Some(&v("v1.6.0-rc.1"))),
            ["v1.5.0", "v1.5.1", "v1.5.3", "v1.6.0"]
        );
    }

    #[test]
    fn rows_are_in_release_order() {
        assert!(FORMULAS.windows(2).all(|w| w[0].since < w[1].since));
    }
}
