//! The core's stuck-VM logic, and what runs it against a cluster:
//!
//! - [`run`]: the watches, the clock, Events, metrics and alerts wired together;
//! - [`alertmanager`]: alerts posted to Alertmanager's v2 API;
//! - [`leader`]: one replica of several raises.

pub use virt_preflight_core::watcher::*;

pub mod alertmanager;
pub mod leader;
pub mod run;

pub use run::{Outputs, Watcher, WatcherOptions};
