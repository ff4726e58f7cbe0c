//! `virt-preflight diagnose` and `virt-preflight watch` as a user runs them: the binary, its
//! output and its exit code; `watch` against a loopback API server through a kubeconfig.

mod support;
use support::binary::{run, shown};

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_api::FakeApi;
use support::stuck::{gpu_vm, http_get, minutes_ago, t4_node, vmi};

const SNAPSHOT: [&str; 4] = [
    "--cluster-state",
    "examples/cluster/cluster.yaml",
    "--cluster-state",
    "examples/stuck/vms.yaml",
];

#[test]
fn diagnose_names_the_cause_of_a_stuck_vm_and_exits_1() {
    let mut args = vec!["diagnose", "prod/gpu-vm"];
    args.extend(SNAPSHOT);
    let output = run(&args);
    let report = shown(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("VirtualMachine prod/gpu-vm: ErrorUnschedulable for ")
            && first.ends_with(
                "no VMI: STUCK under KubeVirt's VirtualMachineStuckInUnhealthyState (threshold 10m)"
            ),
        "{report}"
    );
    assert!(
        stdout.contains("cause: [node-selector-unsatisfiable] nodeSelector gpu=a100 matches none of 2 nodes (nearest: worker-1 has gpu=t4) — spec.template.spec.nodeSelector\n"),
        "{report}"
    );
    assert!(
        stdout.contains("PodScheduled (Unschedulable): 0/3 nodes"),
        "{report}"
    );
    assert!(
        stdout.contains("next: read the launcher pod's scheduling events"),
        "{report}"
    );
    assert!(stdout.contains(
        "runbook: https://kubevirt.io/monitoring/runbooks/VirtualMachineStuckInUnhealthyState.html"
    ));
}

#[test]
fn diagnose_a_running_vm_exits_0() {
    let mut args = vec!["diagnose", "prod/fedora"];
    args.extend(SNAPSHOT);
    let output = run(&args);
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("no stuck alert holds"),
        "{}",
        shown(&output)
    );
}

#[test]
fn diagnose_errors_name_what_is_missing_and_exit_2() {
    let mut args = vec!["diagnose", "prod/absent"];
    args.extend(SNAPSHOT);
    let missing = run(&args);
    assert_eq!(missing.status.code(), Some(2), "{}", shown(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("VirtualMachine prod/absent is not in the cluster state files"),
        "{}",
        shown(&missing)
    );
    let malformed = run(&[
        "diagnose",
        "gpu-vm",
        "--cluster-state",
        "examples/stuck/vms.yaml",
    ]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("NAMESPACE/NAME"));
    let nowhere = run(&["diagnose", "prod/gpu-vm"]);
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("--cluster-state"));
    let unreadable = run(&[
        "diagnose",
        "prod/gpu-vm",
        "--cluster-state",
        "no/such/file.yaml",
    ]);
    assert_eq!(unreadable.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unreadable.stderr).contains("no/such/file.yaml"),
        "{}",
        shown(&unreadable)
    );
}

#[test]
fn bad_durations_are_usage_errors() {
    let output = run(&["watch", "--stuck-after", "ten"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not a duration like 10m"),
        "{}",
        shown(&output)
    );
    let output = run(&["watch", "--cluster-state", "examples/cluster/cluster.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("diagnose"));
    // The webhook on a fixed snapshot cannot watch: said at once, not after binding.
    let output = run(&[
        "serve",
        "--watch",
        "--tls-cert",
        "none.crt",
        "--tls-key",
        "none.key",
        "--cluster-state",
        "examples/cluster/cluster.yaml",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", shown(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--watch needs a live cluster"),
        "{}",
        shown(&output)
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stuck_vm() -> Value {
    gpu_vm("gpu-vm", "ErrorUnschedulable", minutes_ago(20))
}

async fn scrape(url: &str) -> String {
    http_get(url)
        .await
        .map(|(_, body)| body)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exports_the_stuck_vm_from_a_kubeconfig_cluster() {
    let api = FakeApi::start(
        vec![
            ("/apis/kubevirt.io/v1/virtualmachines", vec![stuck_vm()]),
            ("/apis/kubevirt.io/v1/virtualmachineinstances", vec![]),
            ("/api/v1/nodes", vec![t4_node()]),
        ],
        &[],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = api.kubeconfig(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-preflight"))
        .args([
            "watch",
            "--metrics-addr",
            "127.0.0.1:0",
            "--no-leader-election",
        ])
        .arg("--kubeconfig")
        .arg(&config)
        .env_remove("POD_NAMESPACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch starts");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        line
    })
    .await
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("watching VirtualMachines (metrics: ")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the listening line: {line:?}"))
        .to_string();
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = scrape(&url).await;
        if metrics.contains("virt_preflight_vm_stuck{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stuck: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("virt_preflight_vm_stuck{"))
        .collect();
    assert_eq!(stuck.len(), 1, "{metrics}");
    assert!(
        stuck[0].contains("rule=\"node-selector-unsatisfiable\""),
        "the live view's nodes diagnose it: {}",
        stuck[0]
    );
    assert!(metrics.contains("virt_preflight_watcher_leader 1"));
    let ready = scrape(&url.replace("/metrics", "/readyz")).await;
    assert!(ready.starts_with("ok"), "{ready}");
    // One Event about it.
    let events = api.seen_with("POST", "/apis/events.k8s.io/v1/namespaces/prod/events");
    assert_eq!(events.len(), 1, "one Event");
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_reads_the_vm_its_vmi_and_the_view_from_a_live_cluster() {
    // Unschedulable with its VMI waiting for a node, as KubeVirt v1.6 leaves it: the hole
    // between KubeVirt's two alerts.
    let mut pending = stuck_vm();
    pending["metadata"]["name"] = json!("pending");
    let mut running = stuck_vm();
    running["metadata"]["name"] = json!("running");
    running["status"]["printableStatus"] = json!("Running");
    let api = FakeApi::start(
        vec![
            (
                "/apis/kubevirt.io/v1/virtualmachines",
                vec![stuck_vm(), pending, running],
            ),
            (
                "/apis/kubevirt.io/v1/virtualmachineinstances",
                vec![
                    vmi("prod", "pending", "Scheduling"),
                    vmi("prod", "running", "Running"),
                ],
            ),
            ("/api/v1/nodes", vec![t4_node()]),
        ],
        &[],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = api.kubeconfig(dir.path());
    let config = config.to_str().unwrap().to_string();
    let diagnose = |target: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || run(&["diagnose", target, "--kubeconfig", &config]))
    };
    let stuck = diagnose("prod/gpu-vm").await.unwrap();
    assert_eq!(stuck.status.code(), Some(1), "{}", shown(&stuck));
    let stdout = String::from_utf8_lossy(&stuck.stdout);
    assert!(
        stdout.contains("for 20m; no VMI: STUCK"),
        "{}",
        shown(&stuck)
    );
    assert!(
        stdout.contains("cause: [node-selector-unsatisfiable]"),
        "the live nodes: {}",
        shown(&stuck)
    );
    let pending = diagnose("prod/pending").await.unwrap();
    assert_eq!(pending.status.code(), Some(1), "{}", shown(&pending));
    let stdout = String::from_utf8_lossy(&pending.stdout);
    assert!(
        stdout.contains(
            "for 20m; VMI Scheduling: STUCK under virt-preflight's VirtualMachineStuckBeforeNode"
        ) && stdout.contains("cause: [node-selector-unsatisfiable]"),
        "{}",
        shown(&pending)
    );
    let running = diagnose("prod/running").await.unwrap();
    assert_eq!(running.status.code(), Some(0), "{}", shown(&running));
    assert!(
        String::from_utf8_lossy(&running.stdout)
            .contains("VMI Running on node worker-1: no stuck alert holds"),
        "{}",
        shown(&running)
    );
    let absent = diagnose("prod/absent").await.unwrap();
    assert_eq!(absent.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&absent.stderr).contains("VirtualMachine prod/absent not found")
    );
}
