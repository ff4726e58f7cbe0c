//! virt-preflight: find the misconfigurations that leave a KubeVirt `VirtualMachine` stuck,
//! before the VM is stored.
//!
//! Data flows one way: manifest text ([`manifest`]) → typed model ([`model`]) → pure rules
//! ([`rules`]) → findings ([`finding`]) → a report ([`report`]) or an admission response
//! ([`admission`]). See ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod confirm;
pub mod events;
pub mod fix;
pub mod launcher;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod policy;
pub mod policy_report;
pub mod report;
pub mod rules;
pub mod schema;
pub mod server;
pub mod tls;
pub mod watcher;
