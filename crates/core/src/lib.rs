//! virt-preflight's pure core: find the misconfigurations that leave a KubeVirt
//! `VirtualMachine` stuck, from a VM and a cluster view, with no I/O on the network. It
//! depends on no tokio, hyper, axum or kube client: the compiler holds "rules are pure".
//!
//! Data flows one way: manifest text ([`manifest`]) → typed model ([`model`]) → pure rules
//! ([`rules`]) → findings ([`rules::finding`]) → a report ([`report`]), a policy report
//! ([`policy_report`]) or, in the runtime crate, an admission response. The stuck-VM logic
//! ([`watcher`]) is a state machine over watch events with the time as an argument. See
//! ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod certs;
pub mod check;
pub mod cluster;
pub mod fix;
pub mod launcher;
pub mod manifest;
pub mod model;
pub mod policy;
pub mod policy_report;
pub mod report;
pub mod rules;
pub mod schema;
pub mod watcher;
