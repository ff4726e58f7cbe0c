//! The core's cluster view, and the live one that follows the API server ([`live`]).

pub use virt_preflight_core::cluster::*;

pub mod client;
pub mod live;
pub mod proxy;
