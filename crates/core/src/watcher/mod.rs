//! The stuck-VM watcher: raises KubeVirt's `VirtualMachineStuckInUnhealthyState` and
//! `VirtualMachineStuckOnNode`, and ours for the hole between them,
//! `VirtualMachineStuckBeforeNode`, each with a diagnosed cause, for whatever slipped past
//! admission.
//!
//! - [`object`]: the VM and the VMI as read off the wire, slim;
//! - [`record`]: what is kept of them, typed;
//! - [`state`]: which VMs are stuck and under which of the three alerts, a pure state machine
//!   over watch events and the time;
//! - [`diagnose`]: why, from the rules and from what KubeVirt and CDI say;
//! - [`kubevirt_says`]: KubeVirt's own conditions, mapped to the rules that predict them;
//! - [`terminating`]: what holds a deleted VM (its finalizers and their owners);
//! - [`storage`]: the VM's DataVolumes and PVCs not ready or being deleted;
//! - [`health`]: KubeVirt's own health (its CR's conditions, virt-controller, virt-handler);
//! - [`groups`]: VMs stuck for one cause are one problem;
//! - [`escalation`]: when several stuck VMs call for the cluster administrator;
//! - [`fleet`]: every unhealthy VM of a listed cluster, grouped (`diagnose --all`);
//!
//! This is the pure part; the runtime crate's `watcher` adds the watches, the clock, Events,
//! metrics, Alertmanager and the leader election (`run`, `alertmanager`, `leader`).

pub mod diagnose;
pub mod escalation;
pub mod fleet;
pub mod groups;
pub mod health;
pub mod kubevirt_says;
pub mod launcher_pod;
pub mod object;
pub mod record;
pub mod state;
pub mod storage;
pub mod terminating;

pub use diagnose::{Diagnosis, diagnose};
pub use object::WatchedVm;
pub use record::{VmRecord, VmStatus, VmiFacts};
pub use state::{StuckAfter, StuckAlert, Tracker, Transition, VmKey, VmObservation};
