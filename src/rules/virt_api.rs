//! TEMPORARY stub while the real module is written.
use serde_json::Value;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal { pub path: String, pub message: String }
pub fn devices(_vm: &Value) -> Vec<Refusal> { vec![] }
pub fn firmware(_vm: &Value) -> Vec<Refusal> { vec![] }
pub fn networks(_vm: &Value) -> Vec<Refusal> { vec![] }
pub fn names(_vm: &Value) -> Vec<Refusal> { vec![] }
pub fn scheduling(_vm: &Value) -> Vec<Refusal> { vec![] }
pub fn cpu_memory(_vm: &Value) -> Vec<Refusal> { vec![] }
pub fn cloud_init(_vm: &Value) -> Vec<Refusal> { vec![] }
