//! The watch path end to end against a loopback API server that speaks list and watch: a
//! stuck VM gets the gauge with its cause and one Warning Event; its VMI appearing clears it;
//! only the leader raises.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_api::FakeApi;
use support::stuck::{gpu_vm, minutes_ago, t4_view};
use tokio::sync::{oneshot, watch};
use virt_preflight::cluster::live::{LiveView, ViewClients};
use virt_preflight::events;
use virt_preflight::metrics::Metrics;
use virt_preflight::watcher::leader::Leadership;
use virt_preflight::watcher::{Outputs, Watcher, WatcherOptions, run};

const VMS: &str = "/apis/kubevirt.io/v1/virtualmachines";
const VMIS: &str = "/apis/kubevirt.io/v1/virtualmachineinstances";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";

fn vm(name: &str, status: &str, minutes: i64) -> Value {
    gpu_vm(name, status, minutes_ago(minutes))
}

fn vmi(name: &str, phase: &str) -> Value {
    let mut vmi = support::stuck::vmi("prod", name, phase);
    vmi["metadata"]["resourceVersion"] = json!("2");
    vmi
}

struct Started {
    api: FakeApi,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(vms: Vec<Value>, vmis: Vec<Value>, leadership: Leadership) -> Started {
    let api = FakeApi::start(vec![(VMS, vms), (VMIS, vmis)], &[]).await;
    run_on(api, |_| LiveView::fixed(t4_view()), leadership)
}

/// Runs the watcher on `api`, with the cluster view `view` makes.
fn run_on(
    api: FakeApi,
    view: impl FnOnce(&FakeApi) -> LiveView,
    leadership: Leadership,
) -> Started {
    let view = view(&api);
    let client = api.client();
    let metrics = Arc::new(Metrics::new());
    let events = events::start(client.clone(), "virt-preflight", metrics.clone(), 16);
    let options = WatcherOptions {
        tick: Duration::from_millis(50),
        ..WatcherOptions::default()
    };
    let watcher = Watcher::new(
        options,
        metrics.clone(),
        Outputs {
            events: Some(events),
            alerts: None,
        },
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run::run(client, view, watcher, leadership, async {
        let _ = stopped.await;
    }));
    Started {
        api,
        metrics,
        stop: Some(stop),
        task,
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn stuck_series(metrics: &Metrics) -> Vec<String> {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("virt_preflight_vm_stuck{"))
        .map(String::from)
        .collect()
}

async fn wait_for<F: Future<Output = ()>>(future: F) {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .expect("finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_vm_gets_its_gauge_and_one_event_and_its_vmi_clears_it() {
    let mut started = start(
        vec![
            vm("gpu-vm", "ErrorUnschedulable", 14),
            vm("young", "Starting", 1),
            vm("running", "Running", 600),
        ],
        vec![],
        Leadership::Always,
    )
    .await;
    let metrics = started.metrics.clone();
    eventually("the stuck gauge", || !stuck_series(&metrics).is_empty()).await;
    let series = stuck_series(&metrics);
    assert_eq!(series.len(), 1, "only the VM unhealthy for 14m: {series:?}");
    let line = &series[0];
    for label in [
        "name=\"gpu-vm\"",
        "namespace=\"prod\"",
        "status=\"errorunschedulable\"",
        "rule=\"node-selector-unsatisfiable\"",
        "cause=\"[node-selector-unsatisfiable] nodeSelector gpu=a100 matches none of 1 nodes (nearest: worker-1 has gpu=t4) — spec.template.spec.nodeSelector\"",
    ] {
        assert!(line.contains(label), "{label} in {line}");
    }
    assert!(line.ends_with(" 1"), "{line}");
    let text = metrics.encode();
    assert!(
        text.contains("virt_preflight_vm_unhealthy_since_timestamp_seconds{alert=\"VirtualMachineStuckInUnhealthyState\",namespace=\"prod\",name=\"young\",status=\"starting\",node=\"\"}"),
        "the young VM is unhealthy, not stuck: {text}"
    );

    eventually("one Event POST", || {
        !started.api.seen_with("POST", EVENTS).is_empty()
    })
    .await;
    let posted = started.api.seen_with("POST", EVENTS);
    let event = posted[0].body.clone().unwrap();
    assert_eq!(event["reason"], "VirtualMachineStuckInUnhealthyState");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "gpu-vm");
    assert_eq!(event["regarding"]["kind"], "VirtualMachine");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.starts_with("ErrorUnschedulable for 14m: [node-selector-unsatisfiable]"),
        "{note}"
    );

    // Its VMI appears, waiting for a node: KubeVirt's alert ends, ours begins (seen now:
    // not stuck for ten minutes yet).
    started.api.send(VMIS, "ADDED", vmi("gpu-vm", "Scheduling"));
    eventually("the gauge gone", || stuck_series(&metrics).is_empty()).await;
    let before_node = "virt_preflight_vm_unhealthy_since_timestamp_seconds{alert=\"VirtualMachineStuckBeforeNode\",namespace=\"prod\",name=\"gpu-vm\",status=\"errorunschedulable\",node=\"\"}";
    eventually("under VirtualMachineStuckBeforeNode", || {
        metrics.encode().contains(before_node)
    })
    .await;
    // It runs: nothing holds.
    started.api.send(VMIS, "MODIFIED", vmi("gpu-vm", "Running"));
    started
        .api
        .send(VMS, "MODIFIED", vm("gpu-vm", "Running", 0));
    eventually("nothing holds", || {
        !metrics.encode().contains("name=\"gpu-vm\"")
    })
    .await;
    // Ticks went on all along: still one Event, not one per tick.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(started.api.seen_with("POST", EVENTS).len(), 1);

    // The VMI goes again and the VM is deleted: nothing comes back.
    started
        .api
        .send(VMS, "DELETED", vm("gpu-vm", "ErrorUnschedulable", 14));
    started.api.send(VMIS, "DELETED", vmi("gpu-vm", "Running"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stuck_series(&metrics).is_empty());

    let _ = started.stop.take().unwrap().send(());
    wait_for(async { started.task.await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_raises() {
    let (lead, leadership) = watch::channel(false);
    let mut started = start(
        vec![vm("gpu-vm", "ErrorUnschedulable", 14)],
        vec![],
        Leadership::following(leadership),
    )
    .await;
    let metrics = started.metrics.clone();
    // A follower tracks (and logs) but exports nothing and emits no Event.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(stuck_series(&metrics).is_empty());
    assert!(started.api.seen_with("POST", EVENTS).is_empty());
    assert!(metrics.encode().contains("virt_preflight_watcher_leader 0"));

    // It takes the Lease: it exports what is already stuck, without a second Event (the former
    // leader emitted it).
    lead.send(true).unwrap();
    eventually("the stuck gauge", || !stuck_series(&metrics).is_empty()).await;
    assert!(metrics.encode().contains("virt_preflight_watcher_leader 1"));
    assert!(started.api.seen_with("POST", EVENTS).is_empty());

    // It loses the Lease: the series go.
    lead.send(false).unwrap();
    eventually("the gauge gone", || stuck_series(&metrics).is_empty()).await;

    let _ = started.stop.take().unwrap().send(());
    wait_for(async { started.task.await.unwrap() }).await;
}

/// A VM with nothing wrong of its own, Starting for 14 minutes, on a cluster whose
/// virt-controller has no ready replica: the live view reads KubeVirt's CR and components,
/// and KubeVirt is the cause in the gauge, the Event and the alert's view of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_vm_on_a_kubevirt_that_is_down_is_stuck_on_kubevirt() {
    let mut clean = vm("clean", "Starting", 14);
    clean["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("nodeSelector");
    let kubevirt = json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt", "resourceVersion": "1"},
        "status": {"conditions": [
            {"type": "Available", "status": "True", "reason": "AllComponentsReady"}]}});
    let deployment = |name: &str, ready: u32| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "kubevirt", "resourceVersion": "1"},
            "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": ready}})
    };
    let api = FakeApi::start(
        vec![
            (VMS, vec![clean]),
            (VMIS, vec![]),
            ("/api/v1/nodes", vec![support::stuck::t4_node()]),
            ("/apis/kubevirt.io/v1/kubevirts", vec![kubevirt]),
            (
                "/apis/apps/v1/deployments",
                vec![deployment("virt-controller", 0), deployment("web", 2)],
            ),
            (
                "/apis/apps/v1/daemonsets",
                vec![json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "virt-handler", "namespace": "kubevirt",
                                 "resourceVersion": "1"},
                    "status": {"desiredNumberScheduled": 1, "numberReady": 1}})],
            ),
        ],
        &[],
    )
    .await;
    let mut started = run_on(
        api,
        |api| LiveView::start(ViewClients::sharing(api.client()), &[]),
        Leadership::Always,
    );
    let metrics = started.metrics.clone();
    eventually("the stuck gauge", || !stuck_series(&metrics).is_empty()).await;
    let cause = "KubeVirt is not healthy: virt-controller has 0 of 2 replicas ready";
    let by_cause = format!("virt_preflight_vms_stuck{{rule=\"none\",cause=\"{cause}\"}} 1");
    assert!(
        metrics.encode().lines().any(|l| l == by_cause),
        "{by_cause} in\n{}",
        metrics.encode()
    );
    eventually("one Event POST", || {
        !started.api.seen_with("POST", EVENTS).is_empty()
    })
    .await;
    let event = started.api.seen_with("POST", EVENTS)[0]
        .body
        .clone()
        .unwrap();
    assert_eq!(
        event["note"].as_str().unwrap(),
        format!("Starting for 14m: {cause}")
    );
    // The view asked for virt-controller by name, as deploy/'s RBAC requires.
    assert!(
        started
            .api
            .seen()
            .iter()
            .filter(|s| s.path == "/apis/apps/v1/deployments")
            .all(|s| s
                .query
                .contains("fieldSelector=metadata.name%3Dvirt-controller")),
        "{:?}",
        started.api.seen()
    );

    // virt-controller comes back: the cause goes with it (re-diagnosed on the new view).
    started.api.send(
        "/apis/apps/v1/deployments",
        "MODIFIED",
        deployment("virt-controller", 2),
    );
    eventually("the KubeVirt cause gone", || {
        let text = metrics.encode();
        !text.contains("KubeVirt is not healthy") && !stuck_series(&metrics).is_empty()
    })
    .await;

    let _ = started.stop.take().unwrap().send(());
    wait_for(async { started.task.await.unwrap() }).await;
}
