//! The core's policy reports, and the [`writer`] that keeps them on the API server.

pub use virt_preflight_core::policy_report::*;

pub mod writer;
