//! virt-preflight: find the misconfigurations that leave a KubeVirt `VirtualMachine` stuck,
//! before the VM is stored.
//!
//! Three crates along the purity line: `virt-preflight-core` (crates/core: model, rules,
//! cluster view, check, reports, the stuck-VM logic; no tokio, hyper, axum or kube client),
//! `virt-preflight-runtime` (crates/runtime: the live view, the webhook, the watcher's loop,
//! Events, metrics) and this one, the binary's command line ([`cli`]). Everything is
//! re-exported here under its module's name. See ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub use virt_preflight_runtime::*;

pub mod cli;
