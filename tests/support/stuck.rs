//! Fixtures of the watcher's tests: a VM that asks for a GPU no node has, the one node it
//! misses, and a plain-HTTP GET for scraping and for Alertmanager's API.

#![allow(dead_code)]

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use virt_preflight::cluster::{ClusterView, Kind, ViewBuilder};

pub fn minutes_ago(minutes: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_mins(minutes)
}

/// `prod/NAME` asking for `gpu=a100`, in `status` since `since` (its Ready condition's time).
pub fn gpu_vm(name: &str, status: &str, since: Timestamp) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "prod", "uid": format!("uid-{name}"),
                     "resourceVersion": "1"},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "nodeSelector": {"gpu": "a100"},
            "domain": {"devices": {}, "memory": {"guest": "1Gi"}},
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]
        }}},
        "status": {"printableStatus": status, "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": since.to_string()}
        ]}
    })
}

/// The VirtualMachineInstance of `namespace/name` in `phase`, on worker-1 once scheduled.
pub fn vmi(namespace: &str, name: &str, phase: &str) -> Value {
    let mut status = json!({"phase": phase});
    if matches!(phase, "Scheduled" | "Running") {
        status["nodeName"] = json!("worker-1");
    }
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
           "metadata": {"name": name, "namespace": namespace}, "status": status})
}

/// A Ready, schedulable node with `gpu=t4`: the nearest miss of [`gpu_vm`].
pub fn t4_node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "worker-1", "labels": {"gpu": "t4", "kubevirt.io/schedulable": "true"}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// A view that knows Nodes: just [`t4_node`].
pub fn t4_view() -> ClusterView {
    let mut builder = ViewBuilder::new();
    builder.add(Kind::Node, &t4_node()).expect("a node");
    builder.build()
}

/// GET over plain HTTP: the status and the body, or `None` if nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let response = client.get(url.parse().ok()?).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}
