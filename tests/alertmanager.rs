//! The watcher's alerts reach a real Alertmanager (Debian's `prometheus-alertmanager`, started
//! on loopback): active while the VM is stuck, resolved when it recovers.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::watcher::Event;
use serde_json::Value;
use support::stuck::{gpu_vm, http_get, t4_view};
use virt_preflight::metrics::Metrics;
use virt_preflight::watcher::alertmanager::{self, Alertmanager};
use virt_preflight::watcher::{Outputs, VmObservation, Watcher, WatcherOptions};

struct Running {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Option<(u16, Value)> {
    let (status, body) = http_get(url).await?;
    Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

async fn start_alertmanager() -> Running {
    let binary = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("Alertmanager is needed (Debian: apt-get install prometheus-alertmanager; .ci/run installs it)");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        // No gossip: a single Alertmanager, no cluster port.
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Alertmanager");
    let url = format!("http://127.0.0.1:{port}");
    let running = Running {
        child,
        url,
        _dir: dir,
    };
    for _ in 0..200 {
        if let Some((200, _)) = get(&format!("{}/api/v2/status", running.url)).await {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Alertmanager did not come up on {}", running.url);
}

fn observe(object: Value) -> VmObservation {
    VmObservation::from_object(&object).unwrap()
}

/// Our alerts in Alertmanager, as its API lists them.
async fn our_alerts(url: &str) -> Vec<Value> {
    let (_, alerts) = get(&format!("{url}/api/v2/alerts"))
        .await
        .unwrap_or_default();
    alerts
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["name"] == "gpu-vm")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_vm_is_active_in_alertmanager_then_resolved() {
    let am = start_alertmanager().await;
    let metrics = Arc::new(Metrics::new());
    let queue = alertmanager::start(Alertmanager::new(&am.url).unwrap(), metrics.clone());
    let mut watcher = Watcher::new(
        WatcherOptions::default(),
        metrics.clone(),
        Outputs {
            events: None,
            alerts: Some(queue),
        },
    );
    let view = t4_view();
    let now = Timestamp::now();
    watcher.set_leader(true, now);
    let since = now - jiff::SignedDuration::from_mins(14);
    watcher.on_vm_event(Event::Init, now, &view);
    watcher.on_vm_event(
        Event::InitApply(observe(gpu_vm("gpu-vm", "ErrorUnschedulable", since))),
        now,
        &view,
    );
    watcher.on_vm_event(Event::InitDone, now, &view);
    watcher.on_vmi_event(Event::Init, now, &view);
    watcher.on_vmi_event(Event::InitDone, now, &view);

    let mut active = Vec::new();
    for _ in 0..100 {
        active = our_alerts(&am.url).await;
        if !active.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active.len(), 1, "the stuck VM's alert reached Alertmanager");
    let alert = &active[0];
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(
        alert["labels"]["alertname"],
        "VirtualMachineStuckInUnhealthyState"
    );
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["status"], "errorunschedulable");
    assert_eq!(alert["annotations"]["rule"], "node-selector-unsatisfiable");
    assert!(
        alert["labels"].get("rule").is_none(),
        "a new diagnosis is not a new alert"
    );
    let cause = alert["annotations"]["cause"].as_str().unwrap();
    assert!(
        cause.starts_with("ErrorUnschedulable for 14m: [node-selector-unsatisfiable]"),
        "{cause}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .contains("VirtualMachineStuckInUnhealthyState")
    );

    // The VM starts: the alert is sent resolved and leaves Alertmanager's active list.
    let later = Timestamp::now();
    watcher.on_vm_event(
        Event::Apply(observe(gpu_vm("gpu-vm", "Running", later))),
        later,
        &view,
    );
    let mut remaining = active;
    for _ in 0..100 {
        remaining = our_alerts(&am.url).await;
        if remaining.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(remaining.is_empty(), "resolved: {remaining:?}");
    // Alertmanager may list the change before our task has counted its answer.
    let counted = "virt_preflight_alertmanager_posts_total{result=\"ok\"} 2";
    for _ in 0..100 {
        if metrics.encode().contains(counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.encode().contains(counted), "{}", metrics.encode());
}
