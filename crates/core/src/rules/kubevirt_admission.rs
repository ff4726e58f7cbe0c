//! What KubeVirt refuses at `kubectl apply`, judged on the manifest as written, so that a
//! pipeline fails where the apply would: the API server's validation against KubeVirt's CRD
//! schema, and virt-api's VM admission (`virt_api.rs` mirrors its checks). Each was seen on
//! the real KubeVirt v1.6.6 (`tests/differential.rs`, `docs/differential/admission.md`).
//!
//! These are manifest rules ([`super::Scope::Manifest`]): `check` runs them; the webhook does
//! not need to, since the API server and virt-api refuse the same in the same admission chain.
//!
//! Where the answer depends on what the cluster runs (the release, its feature gates) and the
//! view does not say, the rule judges by KubeVirt's defaults and the release it was tested on,
//! and warns, naming that assumption, instead of denying.

use serde_json::Value;

use super::{Emitter, VmContext, virt_api};
use crate::cluster::kubevirt::{GateSetting, KubeVirt};

/// The release whose schema and admission these rules mirror.
pub const MIRRORED_RELEASE: (u32, u32) = (1, 6);

/// What the view says of the KubeVirt the VM would meet.
enum Target<'a> {
    /// A KubeVirt CR of the mirrored minor release.
    Mirrored(&'a KubeVirt),
    /// A KubeVirt CR of another or an unreadable release: its admission may differ.
    Other(&'a KubeVirt),
    /// No KubeVirt CR in the view (offline, or the kind unknown).
    Unknown,
}

/// Whether the CR's KubeVirt is certainly of the mirrored minor release.
pub fn is_mirrored_release(kubevirt: &KubeVirt) -> bool {
    kubevirt.version.as_ref().is_some_and(|version| {
        let (low, high) = version.release_range();
        [low, high]
            .iter()
            .all(|v| (v.major(), v.minor()) == MIRRORED_RELEASE)
    })
}

fn target<'a>(cx: &VmContext<'a>) -> Target<'a> {
    let Some(kubevirt) = cx.cluster.and_then(|view| view.kubevirt().present()) else {
        return Target::Unknown;
    };
    if is_mirrored_release(kubevirt) {
        Target::Mirrored(kubevirt)
    } else {
        Target::Other(kubevirt)
    }
}

/// The manifest does not fit KubeVirt's VirtualMachine CRD schema (v1.6.6): an unknown or
/// misplaced field, a wrong type, a value outside an enum, a missing required field. kubectl
/// validates strictly by default, so the API server refuses the apply.
pub fn schema_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(manifest) = cx.manifest else { return };
    for violation in crate::schema::kubevirt_v1_6_6().validate(manifest) {
        out.emit(
            violation.path.clone(),
            format!("the API server refuses it: {violation}"),
        );
    }
}

/// Neither `spec.runStrategy` nor `spec.running`: v1.6's virt-api refuses the VM
/// ("RunStrategy must be specified"). Other releases may default it: a warning there.
pub fn run_strategy_missing(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let spec = &cx.vm.spec;
    if spec.run_strategy.is_some() || spec.running.is_some() {
        return;
    }
    let (message, certain) = match target(cx) {
        Target::Mirrored(_) => (
            "neither runStrategy nor running is set; virt-api refuses it (RunStrategy must be \
             specified): set spec.runStrategy",
            true,
        ),
        _ => (
            "neither runStrategy nor running is set; KubeVirt v1.6 refuses it (assuming that \
             release): set spec.runStrategy",
            false,
        ),
    };
    let finding = out.emit("spec.runStrategy", message);
    if !certain {
        finding.assuming("KubeVirt v1.6 (the release is not known)");
    }
}

/// A field behind a feature gate the cluster has off. virt-api refuses it; offline (no
/// KubeVirt CR) the gates are assumed to be KubeVirt's defaults (none on), and it warns.
pub fn feature_gate_disabled(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(manifest) = cx.manifest else { return };
    let target = target(cx);
    let default_architecture = match &target {
        Target::Mirrored(kubevirt) | Target::Other(kubevirt) => {
            kubevirt.default_architecture.as_deref()
        }
        Target::Unknown => None,
    };
    for gated in gated_fields(manifest, default_architecture.unwrap_or("amd64")) {
        let (assumption, note) = match &target {
            Target::Mirrored(kubevirt) => match kubevirt.configuration() {
                Some(config) if config.feature_gate(gated.gate) == GateSetting::Enabled => {
                    continue;
                }
                Some(_) => (None, "is off in the KubeVirt CR"),
                None => (
                    Some("the gate is off (the KubeVirt CR's configuration is unreadable)"),
                    "may be off (the KubeVirt CR is unreadable)",
                ),
            },
            Target::Other(kubevirt) => match kubevirt.configuration() {
                Some(config) if config.feature_gate(gated.gate) == GateSetting::Enabled => {
                    continue;
                }
                _ => (
                    Some("v1.6's gates (the cluster runs another release)"),
                    "is off in the KubeVirt CR (gates differ by release; checked on v1.6)",
                ),
            },
            Target::Unknown => (
                Some("KubeVirt's default feature gates (no KubeVirt CR in the view)"),
                "is off by default (assumed: no KubeVirt CR)",
            ),
        };
        let finding = out.emit(
            gated.path,
            format!(
                "{} needs the {} feature gate, which {note}",
                gated.what, gated.gate
            ),
        );
        if let Some(assumption) = assumption {
            finding.assuming(assumption);
        }
    }
}

/// A field that virt-api admits only with a feature gate on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gated {
    path: String,
    what: &'static str,
    gate: &'static str,
}

/// The gated fields of the manifest (KubeVirt v1.6's VMI admission, `vmi-create-admitter.go`);
/// `default_architecture` is the cluster's (amd64 where it is not known).
fn gated_fields(vm: &Value, default_architecture: &str) -> Vec<Gated> {
    const T: &str = "spec.template.spec";
    let spec = &vm["spec"]["template"]["spec"];
    let devices = &spec["domain"]["devices"];
    let mut found = Vec::new();
    let mut gate = |path: String, what: &'static str, gate: &'static str| {
        found.push(Gated { path, what, gate });
    };
    if devices.get("video").is_some_and(|v| !v.is_null()) {
        gate(
            format!("{T}.domain.devices.video"),
            "a video device",
            "VideoConfig",
        );
    }
    if devices["autoattachVSOCK"] == Value::Bool(true) {
        gate(
            format!("{T}.domain.devices.autoattachVSOCK"),
            "VSOCK",
            "VSOCK",
        );
    }
    if devices.get("downwardMetrics").is_some_and(|v| !v.is_null()) {
        gate(
            format!("{T}.domain.devices.downwardMetrics"),
            "a downwardMetrics device",
            "DownwardMetrics",
        );
    }
    if devices["hostDevices"]
        .as_array()
        .is_some_and(|d| !d.is_empty())
    {
        gate(
            format!("{T}.domain.devices.hostDevices"),
            "host devices",
            "HostDevices",
        );
    }
    if devices["panicDevices"]
        .as_array()
        .is_some_and(|d| !d.is_empty())
    {
        gate(
            format!("{T}.domain.devices.panicDevices"),
            "panic devices",
            "PanicDevices",
        );
    }
    for (i, disk) in devices["disks"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if disk["lun"]["reservation"] == Value::Bool(true) {
            gate(
                format!("{T}.domain.devices.disks[{i}].lun.reservation"),
                "a LUN reservation",
                "PersistentReservation",
            );
        }
    }
    if spec["domain"]["launchSecurity"]
        .get("sev")
        .is_some_and(|v| !v.is_null())
    {
        gate(
            format!("{T}.domain.launchSecurity.sev"),
            "SEV",
            "WorkloadEncryptionSEV",
        );
    }
    let volumes = spec["volumes"].as_array();
    let is_config_volume = |name: &str| {
        volumes.into_iter().flatten().any(|v| {
            v["name"] == name
                && ["configMap", "secret", "serviceAccount", "downwardAPI"]
                    .iter()
                    .any(|kind| v.get(*kind).is_some_and(|s| !s.is_null()))
        })
    };
    for (i, fs) in devices["filesystems"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if fs.get("virtiofs").is_some_and(|v| !v.is_null())
            && fs["name"].as_str().is_some_and(is_config_volume)
        {
            gate(
                format!("{T}.domain.devices.filesystems[{i}]"),
                "virtiofs for a config volume",
                "EnableVirtioFsConfigVolumes",
            );
        }
    }
    for (i, volume) in volumes.into_iter().flatten().enumerate() {
        if volume.get("downwardMetrics").is_some_and(|v| !v.is_null()) {
            gate(
                format!("{T}.volumes[{i}].downwardMetrics"),
                "a downwardMetrics volume",
                "DownwardMetrics",
            );
        }
        if volume.get("hostDisk").is_some_and(|v| !v.is_null()) {
            gate(
                format!("{T}.volumes[{i}].hostDisk"),
                "a hostDisk volume",
                "HostDisk",
            );
        }
    }
    if spec["architecture"]
        .as_str()
        .is_some_and(|arch| !arch.is_empty() && arch != default_architecture)
    {
        gate(
            format!("{T}.architecture"),
            "an architecture other than the cluster's default",
            "MultiArchitecture",
        );
    }
    let annotations = &vm["spec"]["template"]["metadata"]["annotations"];
    if annotations.get("hooks.kubevirt.io/hookSidecars").is_some() {
        gate(
            "spec.template.metadata.annotations".to_string(),
            "a hook sidecar",
            "Sidecar",
        );
    }
    if annotations.get("kubevirt.io/ignitiondata").is_some() {
        gate(
            "spec.template.metadata.annotations".to_string(),
            "Ignition data",
            "ExperimentalIgnitionSupport",
        );
    }
    found
}

/// Runs one of virt-api's mirrored checks. A field the schema already refuses is reported
/// once, by `schema-invalid` (the API server refuses it before virt-api would).
fn mirror(cx: &VmContext<'_>, out: &mut Emitter<'_>, check: fn(&Value) -> Vec<virt_api::Refusal>) {
    let Some(manifest) = cx.manifest else { return };
    let refusals = check(manifest);
    if refusals.is_empty() {
        return;
    }
    let schema: Vec<String> = crate::schema::kubevirt_v1_6_6()
        .validate(manifest)
        .into_iter()
        .map(|violation| violation.path)
        .collect();
    for refusal in refusals {
        if !schema.contains(&refusal.path) {
            out.emit(refusal.path, refusal.message);
        }
    }
}

pub fn cloud_init_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    mirror(cx, out, virt_api::cloud_init);
}

pub fn device_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    mirror(cx, out, virt_api::devices);
}

pub fn firmware_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    mirror(cx, out, virt_api::firmware);
}

pub fn network_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    mirror(cx, out, virt_api::networks);
}

pub fn name_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    mirror(cx, out, virt_api::names);
}

pub fn scheduling_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    mirror(cx, out, virt_api::scheduling);
    mirror(cx, out, operator_enums);
}

/// Operators outside the enums of virt-api's OpenAPI validation ("in body should be one of"):
/// tolerations and required node affinity terms.
fn operator_enums(vm: &Value) -> Vec<virt_api::Refusal> {
    const T: &str = "spec.template.spec";
    const TOLERATION: [&str; 2] = ["Equal", "Exists"];
    const SELECTOR: [&str; 6] = ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"];
    let spec = &vm["spec"]["template"]["spec"];
    let mut found = Vec::new();
    let mut check = |path: String, value: &Value, allowed: &[&str]| {
        if let Some(op) = value
            .as_str()
            .filter(|op| !op.is_empty() && !allowed.contains(op))
        {
            found.push(virt_api::Refusal {
                message: format!(
                    "operator {op:?} is not one of {}: virt-api refuses it",
                    allowed.join(", ")
                ),
                path,
            });
        }
    };
    for (i, toleration) in spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        check(
            format!("{T}.tolerations[{i}].operator"),
            &toleration["operator"],
            &TOLERATION,
        );
    }
    let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    for (i, term) in terms.as_array().into_iter().flatten().enumerate() {
        for field in ["matchExpressions", "matchFields"] {
            for (j, expression) in term[field].as_array().into_iter().flatten().enumerate() {
                check(
                    format!(
                        "{T}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.\
                         nodeSelectorTerms[{i}].{field}[{j}].operator"
                    ),
                    &expression["operator"],
                    &SELECTOR,
                );
            }
        }
    }
    found
}

pub fn cpu_memory_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    mirror(cx, out, virt_api::cpu_memory);
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::rules::RuleId;
    use crate::rules::finding::Severity;
    use serde_json::json;

    fn manifest_findings(value: Value) -> Vec<crate::rules::finding::Finding> {
        let vm = vm(value.clone());
        let object = crate::rules::finding::ObjectRef {
            kind: "VirtualMachine".into(),
            namespace: "default".into(),
            name: None,
        };
        crate::rules::evaluate_manifest(&vm, &value, &object, None).findings
    }

    #[test]
    fn a_valid_vm_gets_no_manifest_finding() {
        let found = manifest_findings(valid_vm());
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_vm_without_run_strategy_warns_offline() {
        let value = valid_vm_with(|vm| {
            vm["spec"].as_object_mut().unwrap().remove("runStrategy");
        });
        let found = manifest_findings(value);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, RuleId::RunStrategyMissing);
        assert_eq!(found[0].severity, Severity::Warning);
    }

    #[test]
    fn gated_fields_are_found_where_virt_api_looks() {
        let value = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["video"] = json!({"type": "vga"});
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "h", "hostDisk": {"path": "/x", "type": "Disk"}}));
        });
        let gates: Vec<&str> = gated_fields(&value, "amd64")
            .iter()
            .map(|g| g.gate)
            .collect();
        assert_eq!(gates, ["VideoConfig", "HostDisk"]);
        let found = manifest_findings(value);
        assert!(
            found
                .iter()
                .all(|f| f.rule == RuleId::FeatureGateDisabled && f.severity == Severity::Warning),
            "{found:?}"
        );
        assert_eq!(gated_fields(&valid_vm(), "amd64"), []);
    }

    #[test]
    fn operators_outside_the_enums_are_refused() {
        let value = valid_vm_with(|vm| {
            spec(vm)["tolerations"] = json!([{"key": "a", "operator": "equal"},
                {"key": "b", "operator": "Exists"}]);
        });
        let found = operator_enums(&value);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.template.spec.tolerations[0].operator");
        assert_eq!(operator_enums(&valid_vm()), []);
    }

    #[test]
    fn a_misplaced_field_is_a_schema_error() {
        let value = valid_vm_with(|vm| {
            vm["spec"]["template"]["volumes"] = json!([]);
        });
        let found = manifest_findings(value);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, RuleId::SchemaInvalid);
        assert_eq!(found[0].path, "spec.template.volumes");
    }
}
