//! What holds a deleted VM: its `metadata.deletionTimestamp` is set, so nothing but its remaining
//! finalizers keeps it in the API, and each finalizer has an owner that must remove it. Under
//! foreground deletion the garbage collector waits for what the VM owns: its template
//! DataVolumes (and their PVCs), which may be held in turn. Pure: the VM object in, a
//! [`Held`] out.

use super::record::VmRecord;
use super::state::VmKey;
use super::storage::{self, Deleting};

/// Who removes a finalizer, as far as KubeVirt's and Kubernetes' sources say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// `kubevirt.io/virtualMachineControllerFinalize`: virt-controller's VM controller removes
    /// it once the VM has no VMI.
    VirtController,
    /// `snapshot.kubevirt.io/snapshot-source-protection`: virt-controller's snapshot controller
    /// holds the VM while a VirtualMachineSnapshot of it is in progress.
    SnapshotInProgress,
    /// `foregroundDeletion`: the garbage collector deletes the VM after its dependents that
    /// block their owner's deletion (its VMI, DataVolumes, pods).
    ForegroundDeletion,
    /// `orphan`: the garbage collector removes it after orphaning the VM's dependents.
    Orphan,
    /// Any other finalizer: whatever controller added it.
    Other,
}

impl Owner {
    fn of(finalizer: &str) -> Owner {
        match finalizer {
            "kubevirt.io/virtualMachineControllerFinalize" => Owner::VirtController,
            "snapshot.kubevirt.io/snapshot-source-protection" => Owner::SnapshotInProgress,
            "foregroundDeletion" => Owner::ForegroundDeletion,
            "orphan" => Owner::Orphan,
            _ => Owner::Other,
        }
    }

    /// Who holds it, in a few words.
    fn holder(self) -> &'static str {
        match self {
            Owner::VirtController => "virt-controller, which removes it once the VM has no VMI",
            Owner::SnapshotInProgress => "a VirtualMachineSnapshot in progress",
            Owner::ForegroundDeletion => {
                "the garbage collector, until the VM's dependents are deleted"
            }
            Owner::Orphan => "the garbage collector, orphaning the VM's dependents",
            Owner::Other => "the controller that added it",
        }
    }
}

/// A deleted VM's remaining finalizers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// `metadata.deletionTimestamp`, as the object writes it.
    pub deleted_at: String,
    /// In the object's order, with their owners.
    pub finalizers: Vec<(String, Owner)>,
    /// What the VM owns that is being deleted, which the garbage collector waits for under
    /// `foregroundDeletion` (see [`Held::waiting_for`]).
    waiting: Vec<Deleting>,
}

/// The finalizers that hold a VM; `None` unless it has a deletionTimestamp and finalizers
/// (without finalizers the API server removes a deleted object at once).
pub fn held(vm: &VmRecord) -> Option<Held> {
    let deleted_at = vm.deletion_timestamp.clone()?;
    let finalizers: Vec<(String, Owner)> = vm
        .finalizers
        .iter()
        .map(|f| (f.clone(), Owner::of(f)))
        .collect();
    (!finalizers.is_empty()).then_some(Held {
        deleted_at,
        finalizers,
        waiting: Vec::new(),
    })
}

impl Held {
    /// Notes the VM's claims being deleted (from [`storage::deleting`]) that hold it: under
    /// `foregroundDeletion`, the ones it owns (its dataVolumeTemplates' DataVolumes and their
    /// PVCs, created with `blockOwnerDeletion`). Other finalizers do not wait for them.
    pub fn waiting_for(mut self, deleting: Vec<Deleting>) -> Self {
        if self
            .finalizers
            .iter()
            .any(|(_, owner)| *owner == Owner::ForegroundDeletion)
        {
            self.waiting = deleting.into_iter().filter(|d| d.from_template).collect();
        }
        self
    }

    /// What holds the VM, the same for every VM held alike (no time, no name): the group's
    /// subject.
    pub fn subject(&self) -> String {
        let each = |(name, owner): &(String, Owner)| format!("{name} ({})", owner.holder());
        let held = match self.finalizers.as_slice() {
            [one] => format!("held by finalizer {}", each(one)),
            many => format!(
                "held by {} finalizers: {}",
                many.len(),
                many.iter().map(each).collect::<Vec<_>>().join(", ")
            ),
        };
        if self.waiting.is_empty() {
            held
        } else {
            format!("{held}; {}", storage::describe(&self.waiting))
        }
    }

    /// The cause of this VM: when it was deleted and what holds it.
    pub fn text(&self) -> String {
        format!("deleted at {}; {}", self.deleted_at, self.subject())
    }

    /// What to do, one step per kind of owner, in the order the finalizers are listed.
    pub fn next_step(&self, key: &VmKey) -> String {
        let (ns, name) = (&key.namespace, &key.name);
        let mut owners: Vec<(usize, Owner)> = Vec::new();
        for (index, (_, owner)) in self.finalizers.iter().enumerate() {
            if !owners.iter().any(|(_, o)| o == owner) {
                owners.push((index, *owner));
            }
        }
        owners
            .into_iter()
            .map(|(index, owner)| match owner {
                Owner::VirtController => {
                    "check that virt-controller runs and what it logs about the VM: kubectl -n kubevirt get pods -l kubevirt.io=virt-controller; ".to_string()
                        + &format!("kubectl -n kubevirt logs -l kubevirt.io=virt-controller --tail=500 | grep {name}")
                }
                Owner::SnapshotInProgress => format!(
                    "find the VirtualMachineSnapshot in progress and let it finish or delete it: kubectl -n {ns} get vmsnapshot"
                ),
                Owner::ForegroundDeletion if !self.waiting.is_empty() => self
                    .waiting
                    .iter()
                    .map(Deleting::what_holds)
                    .collect::<Vec<_>>()
                    .join("; then "),
                Owner::ForegroundDeletion => format!(
                    "list what the VM still owns (deleted first): kubectl -n {ns} get vmi,dv,pvc,pods -o custom-columns=KIND:.kind,NAME:.metadata.name,OWNER:.metadata.ownerReferences[*].name | grep -w {name}"
                ),
                Owner::Orphan => "check the garbage collector in kube-controller-manager: kubectl -n kube-system get pods -l component=kube-controller-manager".to_string(),
                Owner::Other => format!(
                    "find the controller that owns {}; only once it is gone for good, remove the finalizer: kubectl -n {ns} patch vm {name} --type=json -p '[{{\"op\":\"remove\",\"path\":\"/metadata/finalizers/{index}\"}}]'",
                    self.finalizers[index].0
                ),
            })
            .collect::<Vec<_>>()
            .join("; then ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::{VmKey, WatchedVm};
    use serde_json::{Value, json};

    fn vm(meta: Value) -> VmRecord {
        let object = json!({"metadata": meta, "status": {"printableStatus": "Terminating"}});
        let key = VmKey::of(&object).unwrap();
        WatchedVm::from_value(&object).unwrap().record(&key)
    }

    #[test]
    fn virt_controllers_finalizer_names_virt_controller() {
        let held = held(&vm(json!({"name": "a", "namespace": "ns",
            "deletionTimestamp": "2026-11-25T10:00:00Z",
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"]})))
        .unwrap();
        assert_eq!(held.finalizers[0].1, Owner::VirtController);
        assert_eq!(
            held.text(),
            "deleted at 2026-11-25T10:00:00Z; held by finalizer kubevirt.io/virtualMachineControllerFinalize (virt-controller, which removes it once the VM has no VMI)"
        );
        let next = held.next_step(&VmKey::new("ns", "a"));
        assert!(next.contains("kubevirt.io=virt-controller"), "{next}");
        assert!(next.contains("grep a"), "{next}");
    }

    #[test]
    fn several_finalizers_are_all_named_with_one_step_per_owner() {
        let held = held(&vm(json!({"name": "a", "namespace": "ns",
            "deletionTimestamp": "2026-11-25T10:00:00Z",
            "finalizers": ["foregroundDeletion", "example.com/backup", "example.com/other",
                           "snapshot.kubevirt.io/snapshot-source-protection"]})))
        .unwrap();
        let subject = held.subject();
        assert!(subject.starts_with("held by 4 finalizers: foregroundDeletion (the garbage collector, until the VM's dependents are deleted), example.com/backup (the controller that added it)"), "{subject}");
        let next = held.next_step(&VmKey::new("ns", "a"));
        let steps: Vec<&str> = next.split("; then ").collect();
        assert_eq!(steps.len(), 3, "{next}");
        assert!(steps[0].contains("ownerReferences"), "{next}");
        assert!(
            steps[1].contains("owns example.com/backup")
                && steps[1].contains("/metadata/finalizers/1"),
            "the index of the finalizer named: {next}"
        );
        assert!(steps[2].contains("get vmsnapshot"), "{next}");
    }

    fn deleting(name: &str, from_template: bool) -> Deleting {
        Deleting {
            kind: storage::ClaimKind::DataVolume,
            namespace: "ns".into(),
            name: name.into(),
            from_template,
        }
    }

    #[test]
    fn foreground_deletion_waits_for_what_the_vm_owns_being_deleted() {
        let object = vm(json!({"name": "a", "namespace": "ns",
            "deletionTimestamp": "2026-11-25T10:00:00Z",
            "finalizers": ["foregroundDeletion"]}));
        let foreground = held(&object)
            .unwrap()
            .waiting_for(vec![deleting("root", true), deleting("shared", false)]);
        assert_eq!(
            foreground.subject(),
            "held by finalizer foregroundDeletion (the garbage collector, until the VM's dependents are deleted); DataVolume ns/root is being deleted",
            "a volume the VM does not own does not hold it"
        );
        let next = foreground.next_step(&VmKey::new("ns", "a"));
        assert!(
            next.starts_with("see what holds DataVolume root: kubectl -n ns get dv root"),
            "{next}"
        );
        // virt-controller's finalizer does not wait for volumes.
        let object = vm(json!({"name": "a", "namespace": "ns",
            "deletionTimestamp": "2026-11-25T10:00:00Z",
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"]}));
        let controller = held(&object)
            .unwrap()
            .waiting_for(vec![deleting("root", true)]);
        assert!(
            !controller.subject().contains("being deleted"),
            "{}",
            controller.subject()
        );
    }

    #[test]
    fn nothing_holds_a_vm_not_deleted_or_without_finalizers() {
        assert_eq!(
            held(&vm(json!({"name": "a",
                "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"]}))),
            None,
            "not deleted: its finalizers hold nothing"
        );
        assert_eq!(
            held(&vm(
                json!({"name": "a", "deletionTimestamp": "2026-11-25T10:00:00Z"})
            )),
            None
        );
    }
}
