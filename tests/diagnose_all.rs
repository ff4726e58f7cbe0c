//! `virt-preflight diagnose --all` and the diagnosis of a deleted VM, end to end: the binary on
//! the snapshot fixtures of tests/fixtures/diagnose/, at a fixed `--as-of`, its output compared
//! with the snapshot files beside them (`UPDATE_SNAPSHOTS=1 cargo test --test diagnose_all`
//! writes them anew; read the diff before committing), its exit codes, and the same against a
//! live (loopback) API server.

mod support;
use support::binary::{self, shown};

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use support::fake_api::FakeApi;
use support::stuck::{gpu_vm, minutes_ago, t4_node, vmi};

const AS_OF: &str = "2026-11-26T03:00:00Z";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diagnose")
}

fn run(args: &[&str]) -> Output {
    binary::command()
        .args(args)
        .current_dir(fixtures())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the binary runs")
}

/// Compares `actual` with the snapshot file `name` (or writes it, with UPDATE_SNAPSHOTS set).
fn snapshot(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .map(|(i, (e, a))| format!("line {}:\n  - {e}\n  + {a}", i + 1))
            .collect();
        panic!(
            "{name} differs from the output ({} vs {} lines):\n{}\n--- output\n{actual}",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

fn fleet(extra: &[&str]) -> Output {
    fleet_at(AS_OF, extra)
}

/// `diagnose --all` on fleet.yaml as of `as_of`.
fn fleet_at(as_of: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "diagnose",
        "--all",
        "--cluster-state",
        "fleet.yaml",
        "--as-of",
        as_of,
    ];
    args.extend(extra);
    run(&args)
}

#[test]
fn four_vms_on_one_selector_and_one_on_a_missing_pvc_make_two_groups() {
    let output = fleet(&["-o", "json"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "some are stuck: {}",
        shown(&output)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["stuck"], 5, "{json:#}");
    assert_eq!(
        json["unhealthy"], 6,
        "the VM whose VMI has no phase counts; the running one does not"
    );
    let groups = json["groups"].as_array().unwrap();
    let sizes: Vec<usize> = groups
        .iter()
        .map(|g| g["vms"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![4, 1, 1], "largest first");
    assert_eq!(groups[0]["rule"], "node-selector-unsatisfiable");
    assert_eq!(
        groups[1]["vms"][0]["alert"],
        "VirtualMachineStuckBeforeNode"
    );
    assert_eq!(groups[2]["rule"], "pvc-not-found");
    let two_minutes = &groups[0]["vms"][3];
    assert_eq!(two_minutes["name"], "gpu-4");
    assert_eq!(two_minutes["since"], "2026-11-26T02:58:00Z");
    assert_eq!(
        two_minutes["stuck"], false,
        "unhealthy for two minutes is not stuck"
    );
    assert!(
        groups[0]["next"]
            .as_str()
            .unwrap()
            .starts_with("3 stuck VMs share this cause: escalate to the cluster administrator"),
        "three stuck VMs on one selector escalate: {}",
        groups[0]["next"]
    );
    assert!(
        !groups[2]["next"].as_str().unwrap().contains("escalate"),
        "one VM does not"
    );
    snapshot("fleet.json", &String::from_utf8_lossy(&output.stdout));
}

#[test]
fn the_text_report_is_the_snapshot() {
    let output = fleet(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    snapshot("fleet.txt", &String::from_utf8_lossy(&output.stdout));
}

#[test]
fn a_namespace_narrows_the_report_and_the_exit_code_follows_what_is_stuck() {
    let data = fleet(&["-n", "data"]);
    assert_eq!(data.status.code(), Some(1), "{}", shown(&data));
    snapshot("fleet-data.txt", &String::from_utf8_lossy(&data.stdout));

    let empty = fleet(&["-n", "nowhere"]);
    assert_eq!(empty.status.code(), Some(0), "{}", shown(&empty));
    assert!(
        String::from_utf8_lossy(&empty.stdout)
            .starts_with("no unhealthy VM among 0 VirtualMachines listed"),
        "{}",
        shown(&empty)
    );

    // At 00:05 no VM had been unhealthy ten minutes; at 01:00 only gpu-1 had.
    let stuck_at = |as_of: &str| {
        let output = fleet_at(as_of, &["-o", "json"]);
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        (output.status.code(), json["stuck"].clone())
    };
    assert_eq!(stuck_at("2026-11-26T00:05:00Z"), (Some(0), json!(0)));
    assert_eq!(stuck_at("2026-11-26T01:00:00Z"), (Some(1), json!(1)));

    // A stricter threshold: gpu-4 is stuck after a minute too, and all six are.
    let strict = fleet(&["--stuck-after", "1m", "-o", "json"]);
    let json: Value = serde_json::from_slice(&strict.stdout).unwrap();
    assert_eq!(json["stuck"], 6, "{json:#}");
}

#[test]
fn a_vm_terminating_with_a_finalizer_is_held_by_it() {
    let output = run(&[
        "diagnose",
        "data/old-db",
        "--cluster-state",
        "terminating.yaml",
        "--as-of",
        AS_OF,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("cause: deleted at 2026-11-26T01:30:00Z; held by finalizer kubevirt.io/virtualMachineControllerFinalize (virt-controller"),
        "{stdout}"
    );
    assert!(
        stdout.contains("next: check that virt-controller runs"),
        "{stdout}"
    );
    snapshot("terminating.txt", &stdout);

    let all = run(&[
        "diagnose",
        "--all",
        "-o",
        "json",
        "--cluster-state",
        "terminating.yaml",
        "--as-of",
        AS_OF,
    ]);
    let json: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(json["groups"][0]["rule"], Value::Null);
    assert_eq!(
        json["groups"][0]["cause"],
        "held by finalizer kubevirt.io/virtualMachineControllerFinalize (virt-controller, which removes it once the VM has no VMI)",
        "the group's cause has no time in it"
    );
}

/// `diagnose` (one VM, or `--all` with more arguments) on a fixture as of [`AS_OF`].
fn diagnose_on(fixture: &str, args: &[&str]) -> Output {
    let mut all = vec!["diagnose"];
    all.extend(args);
    all.extend(["--cluster-state", fixture, "--as-of", AS_OF]);
    run(&all)
}

#[test]
fn a_clean_vm_on_a_kubevirt_that_is_down_is_stuck_on_kubevirt() {
    let fixture = "kubevirt-degraded.yaml";
    let kubevirt = "KubeVirt is not healthy: virt-controller has 0 of 2 replicas ready; the KubeVirt CR kubevirt/kubevirt is Available=False (DeploymentInProgress: Deploying version v1.6.0 with registry quay.io/kubevirt)";
    let clean = diagnose_on(fixture, &["prod/web-1"]);
    assert_eq!(clean.status.code(), Some(1), "{}", shown(&clean));
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(
        stdout.contains(&format!("\ncause: {kubevirt}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("next: virt-controller creates every VM's VMI")
            && stdout.contains("VirtControllerDown"),
        "the next step names KubeVirt's alert: {stdout}"
    );
    snapshot("kubevirt-degraded.txt", &stdout);

    // A VM with a cause of its own keeps it; KubeVirt's state is still shown.
    let own = diagnose_on(fixture, &["prod/gpu-1"]);
    let stdout = String::from_utf8_lossy(&own.stdout);
    assert!(
        stdout.contains("\ncause: [node-selector-unsatisfiable] "),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("\n{kubevirt}\n")), "{stdout}");
    snapshot("kubevirt-degraded-own-cause.txt", &stdout);

    // In the fleet, the VMs stuck on KubeVirt are one group, escalated.
    let all = diagnose_on(fixture, &["--all", "-o", "json"]);
    assert_eq!(all.status.code(), Some(1), "{}", shown(&all));
    let json: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(json["kubevirt"], kubevirt, "{json:#}");
    let group = &json["groups"][0];
    assert_eq!(group["rule"], Value::Null);
    assert_eq!(group["cause"], kubevirt);
    let names: Vec<&str> = group["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| vm["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["web-1", "web-2", "web-3", "web-4"]);
    assert!(
        group["next"]
            .as_str()
            .unwrap()
            .starts_with("3 stuck VMs share this cause: escalate"),
        "{group:#}"
    );
    assert_eq!(json["groups"][1]["rule"], "node-selector-unsatisfiable");
    let text = diagnose_on(fixture, &["--all"]);
    snapshot(
        "kubevirt-degraded-all.txt",
        &String::from_utf8_lossy(&text.stdout),
    );
}

#[test]
fn a_claim_being_deleted_is_the_cause_of_a_vm_waiting_for_it() {
    let fixture = "pvc-deleting.yaml";
    let db = diagnose_on(fixture, &["data/db"]);
    assert_eq!(db.status.code(), Some(1), "{}", shown(&db));
    let stdout = String::from_utf8_lossy(&db.stdout);
    assert!(
        stdout.contains("\ncause: PVC data/db-data is being deleted\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("next: see what holds PVC db-data: kubernetes.io/pvc-protection"),
        "{stdout}"
    );
    snapshot("pvc-deleting.txt", &stdout);

    let all = diagnose_on(fixture, &["--all", "-o", "json"]);
    let json: Value = serde_json::from_slice(&all.stdout).unwrap();
    let causes: Vec<&str> = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["cause"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes,
        vec![
            "DataVolume data/etl-root is being deleted; PVC data/etl-root is being deleted",
            "PVC data/db-data is being deleted"
        ],
        "{json:#}"
    );
    assert!(
        json["groups"][0]["next"]
            .as_str()
            .unwrap()
            .contains("virt-controller creates it again from the VM's dataVolumeTemplates"),
        "{json:#}"
    );
    assert!(
        json.get("kubevirt").is_none(),
        "KubeVirt is healthy: {json:#}"
    );
}

#[test]
fn bad_input_is_exit_2_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let nameless = dir.path().join("nameless.yaml");
    std::fs::write(
        &nameless,
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {namespace: prod}\nstatus: {printableStatus: Starting}\n",
    )
    .unwrap();
    let output = run(&[
        "diagnose",
        "--all",
        "--cluster-state",
        nameless.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", shown(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nameless.yaml") && stderr.contains("metadata.name"),
        "{stderr}"
    );
    let output = fleet_at("yesterday", &[]);
    assert_eq!(output.status.code(), Some(2), "{}", shown(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("yesterday"),
        "{}",
        shown(&output)
    );
    let output = run(&["diagnose", "--all"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--cluster-state"));
    let output = run(&[
        "diagnose",
        "prod/gpu-1",
        "-o",
        "json",
        "--cluster-state",
        "fleet.yaml",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("go with --all"));
    let output = run(&["diagnose", "--all", "prod/gpu-1"]);
    assert_eq!(output.status.code(), Some(2), "one VM or all, not both");
    let output = fleet(&["--escalate-shared-cause", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", shown(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_reads_the_vms_their_vmis_and_the_view_from_a_live_cluster() {
    let mut other = gpu_vm("elsewhere", "ErrorUnschedulable", minutes_ago(30));
    other["metadata"]["namespace"] = json!("dev");
    let api = FakeApi::start(
        vec![
            (
                "/apis/kubevirt.io/v1/virtualmachines",
                vec![
                    gpu_vm("a", "ErrorUnschedulable", minutes_ago(20)),
                    gpu_vm("b", "ErrorUnschedulable", minutes_ago(3)),
                    gpu_vm("started", "Starting", minutes_ago(30)),
                    other,
                ],
            ),
            (
                "/apis/kubevirt.io/v1/virtualmachineinstances",
                vec![vmi("prod", "started", "Scheduling")],
            ),
            ("/api/v1/nodes", vec![t4_node()]),
        ],
        &[],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = api.kubeconfig(dir.path());
    let config = config.to_str().unwrap().to_string();
    let all = |namespace: Option<&'static str>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["diagnose", "--all", "-o", "json", "--kubeconfig", &config];
            if let Some(ns) = namespace {
                args.extend(["-n", ns]);
            }
            run(&args)
        })
    };
    let output = all(None).await.unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (json["stuck"].clone(), json["unhealthy"].clone()),
        (json!(3), json!(4)),
        "the VM whose VMI waits for a node is stuck too: {json:#}"
    );
    assert_eq!(
        json["groups"][0]["rule"], "node-selector-unsatisfiable",
        "the live nodes: {json:#}"
    );
    let alerts: Vec<(&str, &str)> = json["groups"][0]["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| (vm["name"].as_str().unwrap(), vm["alert"].as_str().unwrap()))
        .collect();
    assert!(
        alerts.contains(&("started", "VirtualMachineStuckBeforeNode"))
            && alerts.contains(&("a", "VirtualMachineStuckInUnhealthyState")),
        "{alerts:?}"
    );

    let prod = all(Some("prod")).await.unwrap();
    let json: Value = serde_json::from_slice(&prod.stdout).unwrap();
    assert_eq!(
        (json["stuck"].clone(), json["unhealthy"].clone()),
        (json!(2), json!(3)),
        "{json:#}"
    );
    assert!(
        !api.seen_with("GET", "/namespaces/prod/virtualmachines")
            .is_empty(),
        "-n lists one namespace"
    );
}
