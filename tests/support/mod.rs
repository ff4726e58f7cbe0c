pub mod fake_api;
pub mod stuck;
