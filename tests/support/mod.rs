//! What the integration tests share. Every test binary includes it whole, as `mod support;`,
//! and uses what it needs (`use support::apiserver;`): what one binary does not use is not
//! dead code for the others.

#![allow(dead_code)]

pub mod apiserver;
pub mod binary;
pub mod connect_proxy;
pub mod control_plane;
pub mod deployment;
pub mod fake_api;
pub mod judge;
pub mod mutations;
pub mod review;
pub mod scrape;
pub mod shared;
pub mod stuck;
pub mod vms;
