//! virt-preflight's runtime: the I/O around the pure core ([`virt_preflight_core`]). The live
//! cluster view ([`cluster::live`]), the webhook ([`admission`], [`server`], [`tls`]) with
//! its confirmation GET ([`confirm`]), Events ([`events`]), metrics ([`metrics`]), the
//! stuck-VM watcher's loop, leader election and Alertmanager ([`watcher`]), and the policy
//! report writer ([`policy_report::writer`]).
//!
//! The core's modules are re-exported under the same names, so that `crate::model` reads the
//! same here and there; `cluster`, `watcher` and `policy_report` are the core's, plus their
//! runtime parts.

#![forbid(unsafe_code)]

pub use virt_preflight_core::{
    certs, check, fix, launcher, manifest, model, policy, report, rules, schema,
};

pub mod admission;
pub mod cluster;
pub mod confirm;
pub mod events;
pub mod metrics;
pub mod outbox;
pub mod policy_report;
pub mod server;
pub mod tls;
pub mod watcher;
