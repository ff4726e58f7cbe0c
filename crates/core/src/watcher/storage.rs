//! What the cluster view says of a VM's DataVolumes and PVCs: those not ready yet (CDI's phase
//! and messages, the claim's phase) and those being deleted. A claim with a deletionTimestamp
//! is gone for the VM: `kubernetes.io/pvc-protection` keeps it only while a pod uses it, a
//! DataVolume being deleted takes its PVC with it, and neither comes back by itself (a
//! template's DataVolume is created again by virt-controller once it is gone). Pure: the VM
//! and the view in.

use crate::cluster::{ClusterView, Lookup};
use crate::model::VirtualMachine;
use crate::rules::finding::one_line;

use super::state::VmStatus;

/// A DataVolume or PVC with a deletionTimestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleting {
    pub kind: ClaimKind,
    pub namespace: String,
    pub name: String,
    /// One of the VM's `dataVolumeTemplates` (or that DataVolume's PVC): owned by the VM, so
    /// it blocks the VM's foreground deletion, and created again by virt-controller once gone.
    pub from_template: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum ClaimKind {
    DataVolume,
    #[strum(serialize = "PVC")]
    Pvc,
}

impl ClaimKind {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The statuses a claim being deleted explains: the VM waits for its volumes (Provisioning,
/// ErrorPvcNotFound, DataVolumeError), or its launcher pod cannot be scheduled with a claim
/// that is being deleted (Starting, ErrorUnschedulable).
pub fn deletion_explains(status: Option<VmStatus>) -> bool {
    matches!(
        status,
        Some(
            VmStatus::Provisioning
                | VmStatus::ErrorPvcNotFound
                | VmStatus::DataVolumeError
                | VmStatus::Starting
                | VmStatus::ErrorUnschedulable
        )
    )
}

/// The volumes' claims: (DataVolume name, claim name), the DataVolume's PVC having its name.
fn claims(vm: &VirtualMachine) -> impl Iterator<Item = (Option<&str>, &str)> {
    vm.template_spec().volumes.iter().filter_map(|volume| {
        let datavolume = volume.data_volume.as_ref().and_then(|d| d.name.as_deref());
        let claim = volume
            .persistent_volume_claim
            .as_ref()
            .and_then(|c| c.claim_name.as_deref());
        Some((datavolume, claim.or(datavolume)?))
    })
}

/// The VM's DataVolumes and PVCs that are being deleted, in volume order (a DataVolume before
/// its PVC).
pub fn deleting(vm: &VirtualMachine, namespace: &str, view: &ClusterView) -> Vec<Deleting> {
    let template = |name: &str| {
        vm.spec
            .data_volume_templates
            .iter()
            .any(|t| t.metadata.name.as_deref() == Some(name))
    };
    let mut found: Vec<Deleting> = Vec::new();
    let mut add = |kind: ClaimKind, name: &str| {
        let item = Deleting {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            from_template: template(name),
        };
        if !found.contains(&item) {
            found.push(item);
        }
    };
    for (datavolume, claim) in claims(vm) {
        if let Some(name) = datavolume
            && let Lookup::Present(info) = view.datavolume(namespace, name)
            && info.deleting
        {
            add(ClaimKind::DataVolume, name);
        }
        if let Lookup::Present(pvc) = view.pvc(namespace, claim)
            && pvc.deleting
        {
            add(ClaimKind::Pvc, claim);
        }
    }
    found
}

impl Deleting {
    /// `PVC data/db-data is being deleted`: the same for every VM that uses it.
    pub fn text(&self) -> String {
        format!(
            "{} {}/{} is being deleted",
            self.kind.as_str(),
            self.namespace,
            self.name
        )
    }

    /// The first step: what keeps it.
    pub fn what_holds(&self) -> String {
        let (ns, name) = (&self.namespace, &self.name);
        match self.kind {
            ClaimKind::DataVolume => format!(
                "see what holds DataVolume {name}: kubectl -n {ns} get dv {name} -o jsonpath='{{.metadata.finalizers}}'"
            ),
            ClaimKind::Pvc => {
                let whose = if self.from_template {
                    format!(", the PVC of the VM's DataVolume {name}")
                } else {
                    String::new()
                };
                format!(
                    "see what holds PVC {name}{whose}: kubernetes.io/pvc-protection keeps it while a pod uses it (kubectl -n {ns} describe pvc {name}: Used By, Finalizers)"
                )
            }
        }
    }

    /// What to do for a VM that waits for it: it will be gone.
    pub fn next_step(&self) -> String {
        let then = match (self.kind, self.from_template) {
            (ClaimKind::DataVolume, true) => {
                "; once it is gone, virt-controller creates it again from the VM's dataVolumeTemplates".to_string()
            }
            (ClaimKind::DataVolume, false) => {
                "; once it is gone, it does not come back: create it again or point the VM at another volume".to_string()
            }
            // It goes with its DataVolume, whose step says what follows.
            (ClaimKind::Pvc, true) => String::new(),
            (ClaimKind::Pvc, false) => {
                "; once it is gone, it does not come back: restore or recreate it, or point the VM at another claim".to_string()
            }
        };
        format!("{}{then}", self.what_holds())
    }
}

/// Several, in one line: `PVC a/x is being deleted; DataVolume a/y is being deleted`.
pub fn describe(deleting: &[Deleting]) -> String {
    deleting
        .iter()
        .map(Deleting::text)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Their next steps, one per object.
pub fn next_steps(deleting: &[Deleting]) -> String {
    deleting
        .iter()
        .map(Deleting::next_step)
        .collect::<Vec<_>>()
        .join("; then ")
}

/// What the view says of the VM's DataVolumes and PVCs that are not ready or are being
/// deleted, one line each.
pub fn evidence(vm: &VirtualMachine, namespace: &str, view: &ClusterView) -> Vec<String> {
    let mut evidence = Vec::new();
    for (datavolume, claim) in claims(vm) {
        if let Some(name) = datavolume
            && let Lookup::Present(info) = view.datavolume(namespace, name)
            && info.phase.as_deref() != Some("Succeeded")
            && let Some(phase) = info.phase.as_deref()
        {
            let mut line = format!("DataVolume {name} is {phase}");
            if !info.messages.is_empty() {
                line.push_str(": ");
                line.push_str(&info.messages.join("; "));
            }
            evidence.push(one_line(&line, 200));
        }
        if let Lookup::Present(pvc) = view.pvc(namespace, claim)
            && let Some(phase) = pvc.phase.as_deref()
            && phase != "Bound"
        {
            evidence.push(format!("PVC {claim} is {phase}"));
        }
    }
    evidence.extend(deleting(vm, namespace, view).iter().map(Deleting::text));
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Kind, ViewBuilder};
    use serde_json::{Value, json};

    fn vm(volumes: Value, templates: Value) -> VirtualMachine {
        VirtualMachine::from_value(&json!({
            "metadata": {"name": "vm1", "namespace": "ns"},
            "spec": {"dataVolumeTemplates": templates,
                     "template": {"spec": {"volumes": volumes}}}
        }))
        .unwrap()
    }

    fn view(objects: &[(Kind, Value)]) -> ClusterView {
        let mut builder = ViewBuilder::new();
        builder.mark_known(Kind::PersistentVolumeClaim);
        builder.mark_known(Kind::DataVolume);
        for (kind, object) in objects {
            builder.add(*kind, object).unwrap();
        }
        builder.build()
    }

    fn deleted(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns",
            "deletionTimestamp": "2026-11-26T02:00:00Z",
            "finalizers": ["kubernetes.io/pvc-protection"]}})
    }

    #[test]
    fn claims_being_deleted_are_found_with_their_owner() {
        let vm = vm(
            json!([{"name": "root", "dataVolume": {"name": "root-dv"}},
                   {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                   {"name": "logs", "persistentVolumeClaim": {"claimName": "logs"}}]),
            json!([{"metadata": {"name": "root-dv"}}]),
        );
        let view = view(&[
            (Kind::DataVolume, deleted("root-dv")),
            (Kind::PersistentVolumeClaim, deleted("root-dv")),
            (Kind::PersistentVolumeClaim, deleted("data")),
            (
                Kind::PersistentVolumeClaim,
                json!({"metadata": {"name": "logs", "namespace": "ns"}}),
            ),
        ]);
        let found = deleting(&vm, "ns", &view);
        let names: Vec<(ClaimKind, &str, bool)> = found
            .iter()
            .map(|d| (d.kind, d.name.as_str(), d.from_template))
            .collect();
        assert_eq!(
            names,
            vec![
                (ClaimKind::DataVolume, "root-dv", true),
                (ClaimKind::Pvc, "root-dv", true),
                (ClaimKind::Pvc, "data", false)
            ]
        );
        assert_eq!(
            describe(&found[2..]),
            "PVC ns/data is being deleted",
            "the namespace is named: the same name elsewhere is another claim"
        );
        assert!(
            found[0].next_step().contains("creates it again"),
            "{}",
            found[0].next_step()
        );
        assert!(
            found[1]
                .next_step()
                .starts_with("see what holds PVC root-dv, the PVC of the VM's DataVolume root-dv:")
                && !found[1].next_step().contains("once it is gone"),
            "{}",
            found[1].next_step()
        );
        assert!(
            found[2].next_step().contains("does not come back"),
            "{}",
            found[2].next_step()
        );
        let evidence = evidence(&vm, "ns", &view);
        assert_eq!(
            evidence,
            vec![
                "DataVolume ns/root-dv is being deleted".to_string(),
                "PVC ns/root-dv is being deleted".to_string(),
                "PVC ns/data is being deleted".to_string()
            ]
        );
    }

    #[test]
    fn nothing_is_said_of_claims_not_deleted_or_unknown() {
        let vm = vm(
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
            json!([]),
        );
        let fine = view(&[(
            Kind::PersistentVolumeClaim,
            json!({"metadata": {"name": "data", "namespace": "ns"}, "status": {"phase": "Bound"}}),
        )]);
        assert!(deleting(&vm, "ns", &fine).is_empty());
        assert!(deleting(&vm, "ns", &ClusterView::default()).is_empty());
        assert!(evidence(&vm, "ns", &fine).is_empty());
    }

    #[test]
    fn a_deletion_explains_the_statuses_that_wait_for_a_claim() {
        for status in [
            VmStatus::Provisioning,
            VmStatus::ErrorPvcNotFound,
            VmStatus::DataVolumeError,
            VmStatus::Starting,
        ] {
            assert!(deletion_explains(Some(status)), "{status:?}");
        }
        assert!(!deletion_explains(Some(VmStatus::ImagePullBackOff)));
        assert!(!deletion_explains(Some(VmStatus::Terminating)));
        assert!(!deletion_explains(None));
    }
}
