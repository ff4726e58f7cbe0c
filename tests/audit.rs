//! `virt-preflight audit`: every stored VM judged as if it were started again now. On a
//! snapshot (always) and on the real API server (with `VIRT_PREFLIGHT_APISERVER_DIR`): a
//! running VM whose Secret is deleted would not start again, and is fine once the Secret is
//! back.

use std::process::Command;

use serde_json::{Value, json};

mod support;
use support::apiserver::ApiServer;
use support::binary::{run, shown};
use support::stuck::t4_node;

#[test]
fn a_snapshot_is_audited_and_grouped_by_cause() {
    let output = run(&[
        "audit",
        "--cluster-state",
        "examples/cluster/cluster.yaml",
        "--cluster-state",
        "examples/stuck/vms.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("2 VirtualMachines audited (0 running): 1 errors")
            && stdout.contains("1. error [node-selector-unsatisfiable] nodeSelector gpu=a100")
            && stdout.contains("1 VM: prod/gpu-vm"),
        "{}",
        shown(&output)
    );
    let none = run(&["audit"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("audit needs the VMs"));
}

fn vm(name: &str, run_strategy: &str) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "audit"},
        "spec": {"runStrategy": run_strategy, "template": {"spec": {
            "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}},
                                             {"name": "cloudinit", "disk": {"bus": "virtio"}}]},
                       "memory": {"guest": "1Gi"}},
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                        {"name": "cloudinit", "cloudInitNoCloud": {"secretRef": {"name": "userdata"}}}]}}}})
}

/// The nodes both live tests place VMs on, created once (the tests run at once, on one server):
/// worker-1 with `gpu=t4`, worker-2 without.
fn nodes(server: &ApiServer) {
    static NODES: std::sync::Once = std::sync::Once::new();
    NODES.call_once(|| {
        let mut plain = t4_node();
        plain["metadata"]["name"] = json!("worker-2");
        plain["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("gpu");
        server.apply_list(&[t4_node(), plain]);
    });
}

/// The VMI `namespace/name` Running on worker-1, written as virt-handler would where its status
/// is a subresource.
fn runs_on_worker_1(server: &ApiServer, namespace: &str, name: &str) {
    let _ = server
        .kubectl(&[
            "-n",
            namespace,
            "patch",
            "vmi",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status": {"phase": "Running", "nodeName": "worker-1"}}"#,
        ])
        .result();
}

#[test]
fn a_running_vm_whose_secret_is_deleted_would_not_start_again() {
    let Some(server) = ApiServer::shared() else {
        return;
    };
    server.create_namespace("audit", &[]);
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "userdata", "namespace": "audit"},
        "stringData": {"userdata": "#cloud-config\n"}});
    let vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "db", "namespace": "audit"},
        "spec": {"domain": {"devices": {}}},
        "status": {"phase": "Running", "nodeName": "worker-1"}});
    nodes(server);
    server.apply_list(&[
        secret.clone(),
        vm("db", "Always"),
        vm("stopped", "Halted"),
        vmi,
    ]);
    runs_on_worker_1(server, "audit", "db");
    let kubeconfig = server.kubeconfig.to_string_lossy().into_owned();
    let audit = |format: &str| {
        run(&[
            "audit",
            "-n",
            "audit",
            "-o",
            format,
            "--kubeconfig",
            &kubeconfig,
        ])
    };

    let clean = audit("json");
    assert_eq!(clean.status.code(), Some(0), "{}", shown(&clean));

    server
        .kubectl(&["-n", "audit", "delete", "secret", "userdata"])
        .ok();
    let broken = audit("text");
    assert_eq!(broken.status.code(), Some(1), "{}", shown(&broken));
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(
        text.starts_with("2 VirtualMachines audited (1 running): 1 errors, 1 warnings")
            && text.contains(
                "error [secret-not-found] Secret \"userdata\" does not exist in namespace audit"
            )
            && text.contains("audit/db (running: would not start again)"),
        "{}",
        shown(&broken)
    );
    let json: Value = serde_json::from_slice(&audit("json").stdout).expect("check's JSON");
    let messages: Vec<String> = json["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(format!(
                "{} {}",
                f["severity"].as_str()?,
                f["message"].as_str()?
            ))
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("error would not start again: Secret \"userdata\"")),
        "{json:#}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("warning Secret \"userdata\"")),
        "the halted VM warns: {json:#}"
    );

    // As the kubectl plugin, on kubectl's current context (no --kubeconfig, no --live).
    let plugins = tempfile::tempdir().expect("a directory");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_virt-preflight"),
        plugins.path().join("kubectl-virt_preflight"),
    )
    .expect("the plugin's name");
    let path = format!(
        "{}:{}",
        plugins.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = Command::new("kubectl")
        .args(["virt-preflight", "audit", "-n", "audit"])
        .env("PATH", &path)
        .env("KUBECONFIG", &server.kubeconfig)
        .output()
        .expect("kubectl runs");
    assert_eq!(plugin.status.code(), Some(1), "{}", shown(&plugin));
    assert!(
        String::from_utf8_lossy(&plugin.stdout)
            .contains("audit/db (running: would not start again)"),
        "{}",
        shown(&plugin)
    );
    let help = Command::new("kubectl")
        .args(["virt-preflight", "--help"])
        .env("PATH", &path)
        .output()
        .expect("kubectl runs");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl virt-preflight <COMMAND>"),
        "{}",
        shown(&help)
    );

    server.apply_list(&[secret]);
    let fixed = audit("text");
    assert_eq!(fixed.status.code(), Some(0), "{}", shown(&fixed));
}

/// A VM that can run only on worker-1 (`gpu=t4`) and one that can run anywhere, both running
/// there: draining worker-1 reports the first and not the second.
#[test]
fn a_drain_reports_the_vm_that_can_only_run_on_the_drained_node() {
    let Some(server) = ApiServer::shared() else {
        return;
    };
    server.create_namespace("drain", &[]);
    nodes(server);
    let running_vm = |name: &str, selector: Option<Value>| {
        let mut vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "drain"},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                           "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "root",
                             "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]}}}});
        if let Some(selector) = selector {
            vm["spec"]["template"]["spec"]["nodeSelector"] = selector;
        }
        let vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "drain"},
            "spec": {"domain": {"devices": {}}},
            "status": {"phase": "Running", "nodeName": "worker-1"}});
        [vm, vmi]
    };
    let mut objects = Vec::new();
    objects.extend(running_vm("pinned", Some(json!({"gpu": "t4"}))));
    objects.extend(running_vm("roams", None));
    server.apply_list(&objects);
    for name in ["pinned", "roams"] {
        runs_on_worker_1(server, "drain", name);
    }
    let kubeconfig = server.kubeconfig.to_string_lossy().into_owned();
    let audit = |extra: &[&str]| {
        let mut args = vec!["audit", "-n", "drain", "--kubeconfig", &kubeconfig];
        args.extend(extra);
        run(&args)
    };
    let as_is = audit(&[]);
    assert_eq!(as_is.status.code(), Some(0), "{}", shown(&as_is));

    let drained = audit(&["--drain", "worker-1"]);
    assert_eq!(drained.status.code(), Some(1), "{}", shown(&drained));
    let text = String::from_utf8_lossy(&drained.stdout);
    assert!(
        text.starts_with("2 VirtualMachines audited (2 running): 1 errors")
            && text.contains("[node-selector-unsatisfiable] would not come back after draining worker-1: nodeSelector gpu=t4")
            && text.contains("drain/pinned")
            && !text.contains("drain/roams")
            && text.contains("together: the 2 VMs evicted from worker-1 ask for at least"),
        "{}",
        shown(&drained)
    );
    // Nothing runs on worker-2: draining it moves nothing.
    let elsewhere = audit(&["--drain", "worker-2"]);
    assert_eq!(elsewhere.status.code(), Some(0), "{}", shown(&elsewhere));
    let unknown = audit(&["--drain", "worker-9"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", shown(&unknown));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("\"worker-9\" is not in the cluster")
    );
}
