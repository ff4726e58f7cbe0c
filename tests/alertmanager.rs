//! The watcher's alerts reach a real Alertmanager (Debian's `prometheus-alertmanager`, started
//! on loopback): active while the VM is stuck, resolved when it recovers; and with README's
//! inhibition (the same as deploy/monitoring/alertmanagerconfig.yaml), KubeVirt's copy of
//! VirtualMachineStuckInUnhealthyState or VirtualMachineStuckOnNode is inhibited for a VM where
//! ours of the same name fires, ours never.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::watcher::Event;
use serde_json::Value;
use support::stuck::{gpu_vm, http_get, t4_view, vmi};
use virt_preflight::metrics::Metrics;
use virt_preflight::watcher::alertmanager::{self, Alertmanager};
use virt_preflight::watcher::object::WatchedVmi;
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

const NO_ROUTES: &str = "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n";

async fn start_alertmanager(config_text: &str) -> Running {
    let binary = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("Alertmanager is needed (Debian: apt-get install prometheus-alertmanager; .ci/run installs it)");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, config_text).unwrap();
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

/// A leading watcher posting to `am`, whose first lists hold `names` stuck for 14 minutes on a
/// GPU no node has.
fn stuck_watcher(
    am: &Alertmanager,
    metrics: Arc<Metrics>,
    names: &[&str],
    now: Timestamp,
) -> Watcher {
    stuck_watcher_with_nodes(am, metrics, names, &[], now)
}

/// [`stuck_watcher`], whose first lists also hold `on_node`: VMs Starting for 14 minutes with
/// their VMI Running on worker-1 (VirtualMachineStuckOnNode).
fn stuck_watcher_with_nodes(
    am: &Alertmanager,
    metrics: Arc<Metrics>,
    names: &[&str],
    on_node: &[&str],
    now: Timestamp,
) -> Watcher {
    let queue = alertmanager::start(am.clone(), metrics.clone());
    let mut watcher = Watcher::new(
        WatcherOptions::default(),
        metrics,
        Outputs {
            events: None,
            alerts: Some(queue),
        },
    );
    let view = t4_view();
    watcher.set_leader(true, now);
    let since = now - jiff::SignedDuration::from_mins(14);
    watcher.on_vm_event(Event::Init, now, &view);
    for name in names {
        watcher.on_vm_event(
            Event::InitApply(observe(gpu_vm(name, "ErrorUnschedulable", since))),
            now,
            &view,
        );
    }
    for name in on_node {
        watcher.on_vm_event(
            Event::InitApply(observe(gpu_vm(name, "Starting", since))),
            now,
            &view,
        );
    }
    watcher.on_vm_event(Event::InitDone, now, &view);
    watcher.on_vmi_event(Event::Init, now, &view);
    for name in on_node {
        let running = WatchedVmi::from_value(&vmi("prod", name, "Running")).unwrap();
        watcher.on_vmi_event(
            Event::InitApply((running.key().unwrap(), running.facts.clone())),
            now,
            &view,
        );
    }
    watcher.on_vmi_event(Event::InitDone, now, &view);
    watcher
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
    let am = start_alertmanager(NO_ROUTES).await;
    let metrics = Arc::new(Metrics::new());
    let now = Timestamp::now();
    let mut watcher = stuck_watcher(
        &Alertmanager::new(&am.url).unwrap(),
        metrics.clone(),
        &["gpu-vm"],
        now,
    );
    let view = t4_view();

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

/// README's `inhibit_rules` (the YAML block between the `inhibit` markers).
fn readme_inhibition() -> String {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let start = readme
        .find("<!-- inhibit:start -->")
        .expect("README has <!-- inhibit:start -->");
    let end = readme[start..]
        .find("<!-- inhibit:end -->")
        .expect("README has <!-- inhibit:end -->")
        + start;
    let block = &readme[start..end];
    let from = block.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let to = block[from..].find("```").expect("the block ends") + from;
    block[from..to].to_string()
}

/// `name op value` for each matcher of the AlertmanagerConfig's `sourceMatch`/`targetMatch`.
fn operator_matchers(matchers: &Value) -> Vec<String> {
    matchers
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {} {}",
                m["name"].as_str().unwrap(),
                m["matchType"].as_str().unwrap(),
                m["value"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn the_alertmanagerconfig_is_readmes_inhibition() {
    let readme: Value = serde_saphyr::from_str(&readme_inhibition()).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/monitoring/alertmanagerconfig.yaml");
    let config: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(config["kind"], "AlertmanagerConfig");
    assert_eq!(config["apiVersion"], "monitoring.coreos.com/v1alpha1");
    let ours = &config["spec"]["inhibitRules"];
    let theirs = &readme["inhibit_rules"];
    assert_eq!(
        ours.as_array().unwrap().len(),
        theirs.as_array().unwrap().len()
    );
    for (ours, theirs) in ours
        .as_array()
        .unwrap()
        .iter()
        .zip(theirs.as_array().unwrap())
    {
        assert_eq!(
            operator_matchers(&ours["sourceMatch"]),
            *theirs["source_matchers"].as_array().unwrap()
        );
        assert_eq!(
            operator_matchers(&ours["targetMatch"]),
            *theirs["target_matchers"].as_array().unwrap()
        );
        assert_eq!(ours["equal"], theirs["equal"]);
    }
}

/// KubeVirt's own VirtualMachineStuckInUnhealthyState for a VM, as its PrometheusRule labels it.
fn kubevirts_alert(name: &str, now: Timestamp) -> alertmanager::Alert {
    kubevirts(
        "VirtualMachineStuckInUnhealthyState",
        name,
        "errorunschedulable",
        None,
        now,
    )
}

/// KubeVirt's own `alertname` for a VM in `status` (on `node`), as its PrometheusRule labels it.
fn kubevirts(
    alertname: &str,
    name: &str,
    status: &str,
    node: Option<&str>,
    now: Timestamp,
) -> alertmanager::Alert {
    let mut labels = vec![
        ("alertname", alertname),
        ("namespace", "prod"),
        ("name", name),
        ("status", status),
        ("severity", "warning"),
        ("operator_health_impact", "none"),
        ("kubernetes_operator_part_of", "kubevirt"),
        ("kubernetes_operator_component", "kubevirt"),
    ];
    if let Some(node) = node {
        labels.push(("node", node));
    }
    alertmanager::Alert {
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: Default::default(),
        starts_at: now,
        ends_at: now,
    }
    .firing(now, Duration::from_secs(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubevirts_alert_is_inhibited_where_ours_fires_and_ours_never() {
    const UNHEALTHY: &str = "VirtualMachineStuckInUnhealthyState";
    const ON_NODE: &str = "VirtualMachineStuckOnNode";
    let am = start_alertmanager(&format!("{NO_ROUTES}{}", readme_inhibition())).await;
    let client = Alertmanager::new(&am.url).unwrap();
    let now = Timestamp::now();
    // KubeVirt's VirtualMachineStuckInUnhealthyState for two VMs, and its
    // VirtualMachineStuckOnNode for a third; ours (through the watcher) for gpu-vm (no VMI) and
    // node-vm (its VMI on worker-1). KubeVirt's VirtualMachineStuckInUnhealthyState for node-vm
    // too (from before its VMI came, not yet resolved): another alert than ours for that VM.
    client
        .post(&[
            kubevirts_alert("gpu-vm", now),
            kubevirts_alert("other-vm", now),
            kubevirts(ON_NODE, "node-vm", "starting", Some("worker-1"), now),
            kubevirts(UNHEALTHY, "node-vm", "starting", None, now),
        ])
        .await
        .expect("posted");
    let _watcher = stuck_watcher_with_nodes(
        &client,
        Arc::new(Metrics::new()),
        &["gpu-vm"],
        &["node-vm"],
        now,
    );

    let state =
        |alerts: &[Value], alertname: &str, name: &str, ours: bool| -> Option<(String, usize)> {
            alerts
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == alertname
                        && a["labels"]["name"] == name
                        && (a["labels"]["source"] == "virt-preflight") == ours
                })
                .map(|a| {
                    (
                        a["status"]["state"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len),
                    )
                })
        };
    let mut alerts = Vec::new();
    for _ in 0..200 {
        let (_, listed) = get(&format!("{}/api/v2/alerts", am.url))
            .await
            .unwrap_or_default();
        alerts = listed.as_array().cloned().unwrap_or_default();
        let suppressed = |alertname, name| {
            state(&alerts, alertname, name, false).is_some_and(|(s, _)| s == "suppressed")
        };
        if suppressed(UNHEALTHY, "gpu-vm")
            && suppressed(ON_NODE, "node-vm")
            && state(&alerts, UNHEALTHY, "gpu-vm", true).is_some()
            && state(&alerts, ON_NODE, "node-vm", true).is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = serde_json::to_string_pretty(&alerts).unwrap();
    let active = Some(("active".to_string(), 0));
    let inhibited = Some(("suppressed".to_string(), 1));
    assert_eq!(
        state(&alerts, UNHEALTHY, "gpu-vm", true),
        active,
        "ours is active, with the cause: {shown}"
    );
    assert_eq!(
        state(&alerts, UNHEALTHY, "gpu-vm", false),
        inhibited,
        "KubeVirt's is inhibited by ours: {shown}"
    );
    assert_eq!(
        state(&alerts, UNHEALTHY, "other-vm", false),
        active,
        "KubeVirt's for a VM we do not alert on stays: {shown}"
    );
    let ours_on_node = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == ON_NODE && a["labels"]["source"] == "virt-preflight")
        .unwrap_or_else(|| panic!("our VirtualMachineStuckOnNode: {shown}"));
    assert_eq!(ours_on_node["labels"]["node"], "worker-1", "{shown}");
    assert_eq!(
        state(&alerts, ON_NODE, "node-vm", true),
        active,
        "ours on the node is active: {shown}"
    );
    assert_eq!(
        state(&alerts, ON_NODE, "node-vm", false),
        inhibited,
        "KubeVirt's VirtualMachineStuckOnNode is inhibited by ours: {shown}"
    );
    assert_eq!(
        state(&alerts, UNHEALTHY, "node-vm", false),
        active,
        "ours of one name does not silence KubeVirt's of the other: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_vms_stuck_on_one_selector_post_the_escalation() {
    use virt_preflight::watcher::escalation::{ADVICE, ALERT_NAME};
    let am = start_alertmanager(NO_ROUTES).await;
    let _watcher = stuck_watcher(
        &Alertmanager::new(&am.url).unwrap(),
        Arc::new(Metrics::new()),
        &["gpu-a", "gpu-b", "gpu-c"],
        Timestamp::now(),
    );

    let mut escalation = None;
    for _ in 0..100 {
        let (_, listed) = get(&format!("{}/api/v2/alerts", am.url))
            .await
            .unwrap_or_default();
        escalation = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"]["alertname"] == ALERT_NAME)
            .cloned();
        if escalation.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let escalation = escalation.expect("the escalation reached Alertmanager");
    assert_eq!(escalation["status"]["state"], "active", "{escalation}");
    assert_eq!(escalation["labels"]["rule"], "node-selector-unsatisfiable");
    assert_eq!(escalation["labels"]["source"], "virt-preflight");
    assert_eq!(escalation["annotations"]["count"], "3");
    let description = escalation["annotations"]["description"].as_str().unwrap();
    assert!(description.ends_with(ADVICE), "{description}");
    assert!(
        escalation["annotations"]["next_step"]
            .as_str()
            .unwrap()
            .contains("describe pod"),
        "{escalation}"
    );
}
