//! A real KubeVirt control plane for the tests that hold virt-preflight to what KubeVirt does:
//! KubeVirt v1.6.6's virt-api (its admission webhooks) and virt-controller, kube-scheduler and
//! kube-controller-manager, on a kube-apiserver of its own (../shared/kube-control-plane's
//! README says what runs and what does not: no kubelet, virt-handler or CDI controller).
//!
//! Found the way envtest finds its binaries: `VIRT_PREFLIGHT_CONTROL_PLANE_DIR` names the
//! directory holding the control plane's `start.sh`, `VIRT_PREFLIGHT_APISERVER_DIR` the API
//! server's. Either unset, the tests print why and skip (a user's clone has no ../shared); set
//! but unusable, they fail: `.ci/run` sets both, and CI must never pass by skipping.
//!
//! One control plane per test binary, started on first use; its processes are stopped by the
//! API server's watchdog when the test process ends (see `apiserver.rs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::apiserver::{self, ApiServer, Kubectl, eventually};

/// Names the directory holding the control plane's `start.sh`.
pub const CONTROL_PLANE_DIR_VAR: &str = "VIRT_PREFLIGHT_CONTROL_PLANE_DIR";

/// The KubeVirt release the control plane runs (its README): the release the tests judge by.
pub const KUBEVIRT_RELEASE: &str = "v1.6.6";

/// A running API server with KubeVirt's control plane on it.
pub struct ControlPlane {
    pub api: ApiServer,
    /// A kubeconfig for virt-handler's ServiceAccount: the only identity (besides
    /// virt-controller's) whose VMI status writes virt-api keeps.
    pub virt_handler_kubeconfig: PathBuf,
    /// virt-controller's HTTPS endpoint (`/metrics` is open).
    pub virt_controller_url: String,
}

/// `start.sh` of the control plane, or `None` with the reason printed.
fn start_script() -> Option<PathBuf> {
    apiserver::script_from_env(
        CONTROL_PLANE_DIR_VAR,
        "a KubeVirt control plane for tests, e.g. ../shared/kube-control-plane",
    )
}

impl ControlPlane {
    /// The control plane of this test binary, started on the first call; `None` when either
    /// variable is unset (the reason is printed).
    pub fn shared() -> Option<&'static ControlPlane> {
        static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let control_plane = start_script()?;
        let apiserver = apiserver::start_script()?;
        match PLANE.get_or_init(|| ControlPlane::start(&apiserver, &control_plane)) {
            Ok(plane) => Some(plane),
            Err(reason) => panic!("the KubeVirt control plane is unusable: {reason}"),
        }
    }

    fn start(apiserver: &Path, control_plane: &Path) -> Result<ControlPlane, String> {
        let api = ApiServer::start_bare(apiserver, "control-plane")?;
        let dir = api.run_dir.join("control-plane");
        let output = Command::new(control_plane)
            .arg(&dir)
            .env("KUBECONFIG", &api.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", control_plane.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        // Registered before the status is looked at: a start that failed halfway may have
        // left processes running, and the watchdog must stop them too.
        if let Some(pids) = export_value(&stdout, "KUBE_CONTROL_PLANE_PIDS") {
            for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                api.register_pid(pid);
            }
        }
        if !output.status.success() {
            return Err(format!(
                "{} exited with {}:\n{}",
                control_plane.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let var = |name: &str| {
            export_value(&stdout, name)
                .ok_or_else(|| format!("start.sh printed no {name}; it printed:\n{stdout}"))
        };
        let plane = ControlPlane {
            virt_handler_kubeconfig: PathBuf::from(var("VIRT_HANDLER_KUBECONFIG")?),
            virt_controller_url: var("VIRT_CONTROLLER_URL")?,
            api,
        };
        // Multus' CRD: KubeVirt reads NetworkAttachmentDefinitions when it renders a launcher
        // pod, and the network rules read them too. The control plane does not install it.
        let nad = apiserver::manifest_dir()
            .join("tests/fixtures/crds/k8s.cni.cncf.io_network-attachment-definitions.yaml");
        let nad = nad.to_string_lossy();
        plane.api.kubectl(&["apply", "-f", &nad]).result()?;
        plane
            .api
            .kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                &nad,
            ])
            .result()?;
        Ok(plane)
    }

    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.api.kubectl(args)
    }

    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Kubectl {
        self.api.kubectl_with_input(args, Some(input))
    }

    /// Creates `nodes` as a kubelet and virt-handler would have registered them, and waits
    /// until the node lifecycle controller has lifted the not-ready taint admission puts on
    /// every new Node.
    pub fn create_nodes(&self, nodes: &[NodeSpec]) {
        let items: Vec<serde_json::Value> = nodes.iter().map(NodeSpec::to_json).collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        self.kubectl_with_input(&["create", "-f", "-"], &list.to_string())
            .ok();
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        eventually(
            "the new Nodes lose admission's not-ready taint",
            Duration::from_secs(60),
            || {
                let listed = self.kubectl(&["get", "nodes", "-o", "json"]).json();
                let items = listed["items"].as_array()?;
                let pending = items.iter().any(|node| {
                    let name = node["metadata"]["name"].as_str().unwrap_or_default();
                    names.contains(&name)
                        && node["spec"]["taints"].as_array().is_some_and(|taints| {
                            taints
                                .iter()
                                .any(|t| t["key"].as_str() == Some("node.kubernetes.io/not-ready"))
                        })
                });
                (!pending).then_some(())
            },
        );
    }

    /// Creates a namespace and waits for its `default` ServiceAccount (a pod needs it: the
    /// API server runs ServiceAccount admission).
    pub fn namespace(&self, name: &str) {
        self.kubectl(&["create", "namespace", name]).ok();
        eventually(
            &format!("ServiceAccount {name}/default"),
            Duration::from_secs(60),
            || {
                self.kubectl(&["-n", name, "get", "serviceaccount", "default"])
                    .result()
                    .ok()
            },
        );
    }

    /// Merges `configuration` into the KubeVirt CR's `spec.configuration`. virt-controller and
    /// virt-api read it live; a test that changes it waits until both have (see
    /// [`ControlPlane::wait_configuration`]).
    pub fn configure_kubevirt(&self, configuration: &serde_json::Value) {
        let patch = serde_json::json!({"spec": {"configuration": configuration}});
        self.kubectl(&[
            "-n",
            "kubevirt",
            "patch",
            "kubevirt",
            "kubevirt",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .ok();
    }
}

/// A fake Node, status and all, as a kubelet and virt-handler leave it.
#[derive(Clone)]
pub struct NodeSpec {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub labels: Vec<(String, String)>,
    /// Extra allocatable resources (hugepages, devices), with their capacity.
    pub resources: Vec<(String, String, String)>,
    pub taints: Vec<serde_json::Value>,
}

impl NodeSpec {
    /// A node virt-handler has made ready for VMs: KVM, tun and vhost-net devices, the
    /// schedulable label and the q35 machine-type label (virt-api defaults every VMI to q35).
    /// The CPU manager labels are the caller's: virt-handler writes `true` or `false`.
    pub fn new(name: &str, cpu: &str, memory: &str) -> NodeSpec {
        NodeSpec {
            name: name.to_string(),
            cpu: cpu.to_string(),
            memory: memory.to_string(),
            labels: vec![],
            resources: vec![],
            taints: vec![],
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> NodeSpec {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    /// An extended resource with this capacity and allocatable.
    pub fn resource(mut self, name: &str, capacity: &str, allocatable: &str) -> NodeSpec {
        self.resources.push((
            name.to_string(),
            capacity.to_string(),
            allocatable.to_string(),
        ));
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> NodeSpec {
        self.taints
            .push(serde_json::json!({"key": key, "value": value, "effect": effect}));
        self
    }

    fn to_json(&self) -> serde_json::Value {
        let mut labels = serde_json::Map::new();
        for (key, value) in [
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("kubevirt.io/schedulable", "true"),
            ("machine-type.node.kubevirt.io/q35", "true"),
        ] {
            labels.insert(key.into(), value.into());
        }
        for (key, value) in &self.labels {
            labels.insert(key.clone(), value.clone().into());
        }
        // A kubelet on x86 lists both hugepage sizes, at 0 where none are reserved.
        let mut capacity = serde_json::json!({
            "cpu": self.cpu, "memory": self.memory, "pods": "110",
            "ephemeral-storage": "100Gi", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
            "devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k",
            "devices.kubevirt.io/vhost-net": "1k",
        });
        let mut allocatable = capacity.clone();
        for (name, cap, alloc) in &self.resources {
            capacity[name] = cap.clone().into();
            allocatable[name] = alloc.clone().into();
        }
        let now = "2026-01-01T00:00:00Z";
        let condition = |kind: &str, status: &str, reason: &str| {
            serde_json::json!({"type": kind, "status": status, "reason": reason,
                "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": self.taints},
            "status": {
                "capacity": capacity,
                "allocatable": allocatable,
                "conditions": [
                    condition("Ready", "True", "KubeletReady"),
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                ],
            },
        })
    }
}

/// The value of `export NAME=VALUE` (quotes removed) in start.sh's output.
fn export_value(env: &str, name: &str) -> Option<String> {
    env.lines().find_map(|line| {
        let value = line
            .strip_prefix("export ")?
            .strip_prefix(name)?
            .strip_prefix('=')?;
        Some(value.trim_matches('"').to_string())
    })
}
