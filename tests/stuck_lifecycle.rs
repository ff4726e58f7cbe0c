//! The whole stuck lifecycle on the real KubeVirt v1.6.6 control plane
//! (../shared/kube-control-plane): VMs are created for real with the causes that leave a VM
//! stuck, virt-controller, virt-api and the scheduler put each where it really goes, and
//! `virt-preflight watch` (run as a user runs it, `--stuck-after 0s`) must raise each under the
//! right alert with a cause that names a rule or quotes KubeVirt; `diagnose` and `diagnose --all`
//! must say the same. Then each cause is fixed, and the test writes only what the absent
//! kubelet and virt-handler would (the launcher pod running, the VMI running): the VM must go
//! through KubeVirt's `VirtualMachineStuckOnNode` (its VMI on a node, not running yet) and
//! clear once it runs.
//!
//! Needs `VIRT_PREFLIGHT_APISERVER_DIR` and `VIRT_PREFLIGHT_CONTROL_PLANE_DIR`; skips, saying
//! why, without them.

mod support;
use support::{apiserver, control_plane, scrape};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use apiserver::poll;
use control_plane::{ControlPlane, NodeSpec};

const BEFORE_NODE: &str = "VirtualMachineStuckBeforeNode";
const ON_NODE: &str = "VirtualMachineStuckOnNode";
const UNHEALTHY_STATE: &str = "VirtualMachineStuckInUnhealthyState";

/// How long KubeVirt, the scheduler and the watcher (a 5 s tick) get for one step.
const STEP: Duration = Duration::from_secs(90);

/// What a case's cause must say: the rule it names, or (no rule applies) KubeVirt's words.
#[derive(Debug, Clone, Copy)]
enum Cause {
    Rule(&'static str),
    /// No rule predicts it: the cause quotes what KubeVirt or the kubelet says, with these words.
    Quote(&'static str),
}

/// How a case's cause is fixed, as its user would.
enum Fix {
    /// `kubectl label node NODE KEY=VALUE`.
    LabelNode(&'static str, &'static str, &'static str),
    /// `kubectl create` of the missing objects.
    Create(Vec<Value>),
    /// `kubectl delete` of KIND NAME in the case's namespace.
    Delete(&'static str, &'static str),
    /// A merge patch of the VM, and its VMI deleted (a restart: virt-controller makes a new one).
    EditAndRestart(Value),
    /// The node's device plugin registers: its status as the kubelet reports it.
    NodeStatus(&'static str, Value),
    /// The cause is fixed, but what follows needs CDI or a retry this test does not wait for:
    /// the VM must only leave the alert.
    Leaves(Vec<Value>),
}

/// What the kubelet reports of a launcher pod it cannot start (none runs here: the test
/// writes it as the kubelet would).
enum Kubelet {
    /// A container waiting, with the kubelet's reason and message.
    Waiting(&'static str, &'static str, &'static str),
    /// A Warning Event about the pod.
    Warns(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    /// Objects the VM's namespace holds first (a quota, a LimitRange).
    before: Vec<Value>,
    vm: Value,
    /// What the kubelet says once the launcher pod is bound.
    kubelet: Option<Kubelet>,
    cause: Cause,
    fix: Fix,
}

fn vm(name: &str, template_spec: Value) -> Value {
    let mut spec = json!({
        "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                   "memory": {"guest": "1Gi"}},
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), template_spec.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
           "metadata": {"name": name, "namespace": name},
           "spec": {"runStrategy": "Always", "template": {"spec": spec}}})
}

fn cases() -> Vec<Case> {
    let pvc_volumes = json!({
        "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}},
                                         {"name": "data", "disk": {"bus": "virtio"}}]},
                   "memory": {"guest": "1Gi"}},
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    });
    let mut datasource = vm(
        "datasource",
        json!({
            "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                       "memory": {"guest": "1Gi"}},
            "volumes": [{"name": "root", "dataVolume": {"name": "datasource-root"}}]
        }),
    );
    datasource["spec"]["dataVolumeTemplates"] = json!([{
        "metadata": {"name": "datasource-root"},
        "spec": {"sourceRef": {"kind": "DataSource", "name": "fedora"},
                 "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}]);
    let mut instancetype = vm("instancetype", json!({}));
    instancetype["spec"]["instancetype"] =
        json!({"kind": "VirtualMachineInstancetype", "name": "u1-small"});
    if let Some(domain) = instancetype["spec"]["template"]["spec"]["domain"].as_object_mut() {
        domain.remove("memory");
    }
    vec![
        Case {
            name: "selector",
            before: vec![],
            kubelet: None,
            vm: vm("selector", json!({"nodeSelector": {"gpu": "a100"}})),
            cause: Cause::Rule("node-selector-unsatisfiable"),
            fix: Fix::LabelNode("life-1", "gpu", "a100"),
        },
        Case {
            name: "memory",
            before: vec![],
            kubelet: None,
            vm: vm(
                "memory",
                json!({"domain": {
                "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                "memory": {"guest": "64Gi"}}}),
            ),
            cause: Cause::Rule("resources-exceed-capacity"),
            fix: Fix::EditAndRestart(json!({"spec": {"template": {"spec": {"domain": {
                "memory": {"guest": "1Gi"}}}}}})),
        },
        Case {
            name: "nokvm",
            before: vec![],
            kubelet: None,
            vm: vm("nokvm", json!({"nodeSelector": {"pool": "nokvm"}})),
            cause: Cause::Rule("kvm-unavailable"),
            fix: Fix::NodeStatus(
                "life-nokvm",
                json!({"status": {"allocatable": {"devices.kubevirt.io/kvm": "1k"}}}),
            ),
        },
        Case {
            name: "pvc",
            before: vec![],
            kubelet: None,
            vm: vm("pvc", pvc_volumes),
            cause: Cause::Rule("pvc-not-found"),
            fix: Fix::Create(vec![
                json!({"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": "life-pvc-data"},
                    "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                             "storageClassName": "", "hostPath": {"path": "/tmp/life-pvc-data"},
                             "claimRef": {"namespace": "pvc", "name": "data"}}}),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "namespace": "pvc"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                             "volumeName": "life-pvc-data",
                             "resources": {"requests": {"storage": "1Gi"}}}}),
            ]),
        },
        Case {
            name: "quota",
            kubelet: None,
            before: vec![json!({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "tight", "namespace": "quota"},
                "spec": {"hard": {"requests.memory": "512Mi"}}})],
            vm: vm("quota", json!({})),
            cause: Cause::Rule("resource-quota-exceeded"),
            fix: Fix::Delete("resourcequota", "tight"),
        },
        Case {
            name: "limitrange",
            kubelet: None,
            before: vec![json!({"apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "small", "namespace": "limitrange"},
                "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]}})],
            vm: vm("limitrange", json!({})),
            cause: Cause::Rule("limit-range-exceeded"),
            fix: Fix::Delete("limitrange", "small"),
        },
        Case {
            name: "nad",
            before: vec![],
            kubelet: None,
            vm: vm(
                "nad",
                json!({
                "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                                       "interfaces": [{"name": "storage", "bridge": {}}]},
                           "memory": {"guest": "1Gi"}},
                "networks": [{"name": "storage", "multus": {"networkName": "storage-net"}}]}),
            ),
            cause: Cause::Rule("network-attachment-not-found"),
            fix: Fix::Create(vec![json!({"apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "storage-net", "namespace": "nad"},
                "spec": {"config": "{\"cniVersion\": \"0.3.1\", \"type\": \"bridge\", \"bridge\": \"br1\"}"}})]),
        },
        Case {
            name: "priority",
            before: vec![],
            kubelet: None,
            vm: vm("priority", json!({"priorityClassName": "vm-critical"})),
            cause: Cause::Rule("priority-class-not-found"),
            fix: Fix::Create(vec![json!({"apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass", "metadata": {"name": "vm-critical"}, "value": 1000})]),
        },
        Case {
            name: "image",
            before: vec![],
            vm: vm(
                "image",
                json!({"volumes": [{"name": "root",
                "containerDisk": {"image": "registry.example.com/vms/fedora:41"}}]}),
            ),
            kubelet: Some(Kubelet::Waiting(
                "volumeroot",
                "ErrImagePull",
                "failed to pull and unpack image \"registry.example.com/vms/fedora:41\": not found",
            )),
            cause: Cause::Quote("ErrImagePull"),
            fix: Fix::EditAndRestart(json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]}}}})),
        },
        Case {
            name: "secret",
            before: vec![],
            vm: vm(
                "secret",
                json!({
                "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}},
                                                 {"name": "cloudinit", "disk": {"bus": "virtio"}}]},
                           "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                            {"name": "cloudinit", "cloudInitNoCloud": {"secretRef": {"name": "userdata"}}}]}),
            ),
            kubelet: Some(Kubelet::Warns(
                "FailedMount",
                "MountVolume.SetUp failed for volume \"cloudinitvolume-cloudinit\" : secret \"userdata\" not found",
            )),
            cause: Cause::Rule("secret-not-found"),
            fix: Fix::Create(vec![json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "userdata", "namespace": "secret"},
                "stringData": {"userdata": "#cloud-config\n"}})]),
        },
        Case {
            name: "datasource",
            before: vec![],
            kubelet: None,
            vm: datasource,
            cause: Cause::Rule("datasource-not-found"),
            // With the DataSource, virt-controller makes the DataVolume, which waits for CDI
            // (absent here): KubeVirt's own alert takes over (Provisioning, no VMI).
            fix: Fix::Leaves(vec![json!({"apiVersion": "cdi.kubevirt.io/v1beta1",
                "kind": "DataSource",
                "metadata": {"name": "fedora", "namespace": "datasource"},
                "spec": {"source": {"pvc": {"name": "fedora-golden", "namespace": "datasource"}}}})]),
        },
        Case {
            name: "instancetype",
            before: vec![],
            kubelet: None,
            vm: instancetype,
            cause: Cause::Rule("instancetype-not-found"),
            fix: Fix::Create(vec![
                json!({"apiVersion": "instancetype.kubevirt.io/v1beta1",
                "kind": "VirtualMachineInstancetype",
                "metadata": {"name": "u1-small", "namespace": "instancetype"},
                "spec": {"cpu": {"guest": 1}, "memory": {"guest": "1Gi"}}}),
            ]),
        },
    ]
}

/// Nodes with room for every fixed VM, and one whose KVM device plugin has not registered.
fn nodes() -> Vec<NodeSpec> {
    vec![
        NodeSpec::new("life-1", "8", "16Gi").label("pool", "general"),
        NodeSpec::new("life-2", "8", "16Gi").label("pool", "general"),
        NodeSpec::new("life-nokvm", "8", "16Gi")
            .label("pool", "nokvm")
            .resource("devices.kubevirt.io/kvm", "1k", "0"),
    ]
}

/// `virt-preflight watch` as a user runs it, against the control plane.
struct Watch {
    child: Child,
    metrics: SocketAddr,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn start(plane: &ControlPlane) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_virt-preflight"))
            .args([
                "watch",
                "--stuck-after",
                "0s",
                "--stuck-on-node-after",
                "0s",
                "--no-leader-election",
                "--metrics-addr",
                "127.0.0.1:0",
                "--kubeconfig",
            ])
            .arg(&plane.api.kubeconfig)
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("virt-preflight watch starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let url = line
            .trim()
            .strip_prefix("watching VirtualMachines (metrics: http://")
            .and_then(|rest| rest.strip_suffix("/metrics)"))
            .unwrap_or_else(|| panic!("the listening line: {line:?}"));
        Watch {
            metrics: url.parse().expect("an address"),
            child,
        }
    }

    /// The labels of each `virt_preflight_vm_stuck` series, by VM name.
    fn stuck(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let (_, body) = scrape::http_get(self.metrics, "/metrics").unwrap_or_default();
        body.lines()
            .filter_map(|line| line.strip_prefix("virt_preflight_vm_stuck{"))
            .map(labels)
            .filter_map(|labels| Some((labels.get("name")?.clone(), labels)))
            .collect()
    }
}

/// The labels of a series' text after its `{`.
fn labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
        if rest.starts_with('}') {
            break;
        }
    }
    labels
}

/// The rule a cause names (`[rule] …`), if any.
fn rule_of(cause: &str) -> Option<&str> {
    cause
        .strip_prefix('[')?
        .split_once(']')
        .map(|(rule, _)| rule)
}

fn diagnose(plane: &ControlPlane, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_virt-preflight"))
        .arg("diagnose")
        .args(args)
        .args([
            "--stuck-after",
            "0s",
            "--stuck-on-node-after",
            "0s",
            "--kubeconfig",
        ])
        .arg(&plane.api.kubeconfig)
        .output()
        .expect("virt-preflight diagnose runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The launcher pod of `name` (in namespace `name`), once bound: its name and node.
fn bound_pod(plane: &ControlPlane, name: &str) -> Result<(String, String), String> {
    let pods = plane
        .kubectl(&[
            "-n",
            name,
            "get",
            "pods",
            "-l",
            &format!("vm.kubevirt.io/name={name}"),
            "-o",
            "json",
        ])
        .json();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .find_map(|p| {
            let node = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())?;
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                node.to_string(),
            ))
        })
        .ok_or_else(|| format!("{name}: no bound launcher pod: {pods}"))
}

/// What the kubelet writes once it runs the launcher pod.
fn play_kubelet(plane: &ControlPlane, namespace: &str, pod: &str) {
    let now = jiff::Timestamp::now().to_string();
    let running = |name: &str| {
        json!({"name": name, "image": "quay.io/kubevirt/virt-launcher:v1.6.6", "imageID": "",
               "ready": true, "restartCount": 0, "state": {"running": {"startedAt": now}}})
    };
    let patch = json!({"status": {"phase": "Running", "podIP": "10.244.0.10",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [running("compute")]}});
    patch_pod_status(plane, namespace, pod, &patch);
}

/// Writes a launcher pod's status, as only the kubelet does in a cluster.
fn patch_pod_status(plane: &ControlPlane, namespace: &str, pod: &str, patch: &Value) {
    plane
        .kubectl(&[
            "-n",
            namespace,
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .ok();
}

/// What the kubelet writes of a launcher pod it cannot start.
fn kubelet_says(plane: &ControlPlane, namespace: &str, pod: &str, says: &Kubelet) {
    match says {
        Kubelet::Waiting(container, reason, message) => {
            let patch = json!({"status": {"containerStatuses": [{"name": container,
                "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}}]}});
            patch_pod_status(plane, namespace, pod, &patch);
        }
        Kubelet::Warns(reason, message) => {
            let now = jiff::Timestamp::now().to_string();
            create(
                plane,
                &[json!({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": format!("{pod}.kubelet"), "namespace": namespace},
                    "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
                    "type": "Warning", "reason": reason, "message": message,
                    "source": {"component": "kubelet"},
                    "firstTimestamp": now, "lastTimestamp": now, "count": 1})],
            );
        }
    }
}

/// What virt-handler writes once the domain runs: the VMI `Running`.
fn play_virt_handler(plane: &ControlPlane, namespace: &str, name: &str) {
    let mut vmi = plane
        .kubectl(&["-n", namespace, "get", "vmi", name, "-o", "json"])
        .json();
    vmi["status"]["phase"] = json!("Running");
    apiserver::kubectl_as(
        &plane.virt_handler_kubeconfig,
        &["replace", "-f", "-"],
        Some(&vmi.to_string()),
    )
    .ok();
}

fn create(plane: &ControlPlane, objects: &[Value]) {
    if objects.is_empty() {
        return;
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    plane
        .kubectl_with_input(&["create", "-f", "-"], &list.to_string())
        .ok();
}

#[test]
fn every_stuck_vm_is_raised_under_its_alert_with_its_cause_and_clears_once_it_runs() {
    let Some(plane) = ControlPlane::shared() else {
        return;
    };
    plane.create_nodes(&nodes());
    let cases = cases();
    for case in &cases {
        plane.namespace(case.name);
        create(plane, &case.before);
    }
    // A halted VM with an unsatisfiable selector: stopped on purpose, never stuck.
    plane.namespace("halted");
    let mut halted = vm("halted", json!({"nodeSelector": {"gpu": "a100"}}));
    halted["spec"]["runStrategy"] = json!("Halted");
    let mut vms: Vec<Value> = cases.iter().map(|c| c.vm.clone()).collect();
    vms.push(halted);
    let watch = Watch::start(plane);
    create(plane, &vms);
    for case in &cases {
        let Some(kubelet) = &case.kubelet else {
            continue;
        };
        let (pod, _) = poll(STEP, || bound_pod(plane, case.name)).unwrap_or_else(|e| panic!("{e}"));
        kubelet_says(plane, case.name, &pod, kubelet);
    }

    // Raised, each under the alert between KubeVirt's two, with its cause.
    let raised = poll(STEP, || {
        let stuck = watch.stuck();
        let missing: Vec<&str> = cases
            .iter()
            .map(|c| c.name)
            .filter(|name| !stuck.contains_key(*name))
            .collect();
        if missing.is_empty() {
            Ok(stuck)
        } else {
            Err(format!("not raised: {missing:?}; raised: {stuck:#?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // What was raised, for the reader of the test's output (`--nocapture`).
    for case in &cases {
        let labels = &raised[case.name];
        eprintln!(
            "{:<13} {:<20} {}: {}",
            case.name, labels["status"], labels["alert"], labels["cause"]
        );
    }
    let mut wrong = Vec::new();
    for case in &cases {
        let labels = &raised[case.name];
        let cause_holds = match case.cause {
            Cause::Rule(rule) => rule_of(&labels["cause"]) == Some(rule),
            Cause::Quote(words) => labels["cause"].contains(words),
        };
        if labels["alert"] != BEFORE_NODE || !cause_holds {
            wrong.push(format!(
                "{}: expected {BEFORE_NODE} with {:?}, got {labels:?}",
                case.name, case.cause
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        !raised.contains_key("halted"),
        "a halted VM is not stuck: {raised:#?}"
    );

    // `diagnose` and `diagnose --all` say what the watcher says.
    let all: Value = serde_json::from_str(&diagnose(plane, &["--all", "-o", "json"]))
        .expect("diagnose --all -o json");
    for case in &cases {
        let labels = &raised[case.name];
        let one = diagnose(plane, &[&format!("{0}/{0}", case.name)]);
        let cause = one
            .lines()
            .find_map(|l| l.strip_prefix("cause: "))
            .unwrap_or_default();
        assert!(
            one.lines()
                .next()
                .unwrap_or_default()
                .contains(&format!("STUCK under virt-preflight's {BEFORE_NODE}"))
                && rule_of(cause) == rule_of(&labels["cause"]),
            "diagnose {0}/{0} disagrees with the watcher ({labels:?}):\n{one}",
            case.name
        );
        // The launcher pod as the kubelet left it is read, live, into the evidence.
        let kubelet_words = match &case.kubelet {
            Some(Kubelet::Waiting(_, reason, _) | Kubelet::Warns(reason, _)) => Some(*reason),
            None => None,
        };
        if let Some(words) = kubelet_words {
            assert!(
                one.lines()
                    .any(|l| l.contains("pod virt-launcher-") && l.contains(words)),
                "diagnose {0}/{0} quotes the launcher pod's {words}:\n{one}",
                case.name
            );
        }
        let grouped = all["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|g| {
                let vm = g["vms"]
                    .as_array()?
                    .iter()
                    .find(|vm| vm["name"] == case.name)?;
                Some((g["rule"].clone(), vm["alert"].clone()))
            });
        assert_eq!(
            grouped,
            Some((json!(rule_of(&labels["cause"])), json!(BEFORE_NODE))),
            "diagnose --all on {}: {all:#}",
            case.name
        );
    }

    // Fixed as a user fixes them.
    for case in &cases {
        let ns = case.name;
        match &case.fix {
            Fix::LabelNode(node, key, value) => {
                plane
                    .kubectl(&["label", "node", node, &format!("{key}={value}")])
                    .ok();
            }
            Fix::Create(objects) | Fix::Leaves(objects) => create(plane, objects),
            Fix::Delete(kind, name) => {
                plane.kubectl(&["-n", ns, "delete", kind, name]).ok();
            }
            Fix::EditAndRestart(patch) => {
                plane
                    .kubectl(&[
                        "-n",
                        ns,
                        "patch",
                        "vm",
                        ns,
                        "--type=merge",
                        "-p",
                        &patch.to_string(),
                    ])
                    .ok();
                plane
                    .kubectl(&["-n", ns, "delete", "vmi", ns, "--wait=false"])
                    .ok();
                // A bound pod ends when its kubelet has stopped it (none runs here).
                plane
                    .kubectl(&[
                        "-n",
                        ns,
                        "delete",
                        "pod",
                        "-l",
                        &format!("vm.kubevirt.io/name={ns}"),
                        "--force",
                        "--grace-period=0",
                    ])
                    .ok();
            }
            Fix::NodeStatus(node, patch) => {
                let mut patch = patch.clone();
                patch["status"]["capacity"] = patch["status"]["allocatable"].clone();
                plane
                    .kubectl(&[
                        "patch",
                        "node",
                        node,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        &patch.to_string(),
                    ])
                    .ok();
            }
        }
    }

    // Each reaches its launcher pod bound; the kubelet runs it, virt-controller marks the VMI
    // Scheduled: KubeVirt's VirtualMachineStuckOnNode holds, on that node, until
    // virt-handler reports the VMI running.
    let running: Vec<&Case> = cases
        .iter()
        .filter(|c| !matches!(c.fix, Fix::Leaves(_)))
        .collect();
    let mut nodes = BTreeMap::new();
    for case in &running {
        let (pod, node) =
            poll(STEP, || bound_pod(plane, case.name)).unwrap_or_else(|e| panic!("{e}"));
        play_kubelet(plane, case.name, &pod);
        nodes.insert(case.name, node);
    }
    poll(STEP, || {
        let stuck = watch.stuck();
        let off: Vec<String> = running
            .iter()
            .filter(|c| {
                stuck
                    .get(c.name)
                    .is_none_or(|l| l["alert"] != ON_NODE || Some(&l["node"]) != nodes.get(c.name))
            })
            .map(|c| format!("{}: {:?}", c.name, stuck.get(c.name)))
            .collect();
        if off.is_empty() {
            Ok(())
        } else {
            Err(format!("not on their node under {ON_NODE}: {off:#?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for case in &running {
        play_virt_handler(plane, case.name, case.name);
    }
    poll(STEP, || {
        let stuck = watch.stuck();
        let still: Vec<(&String, &BTreeMap<String, String>)> = stuck
            .iter()
            .filter(|(name, _)| running.iter().any(|c| c.name == name.as_str()))
            .collect();
        if still.is_empty() {
            Ok(())
        } else {
            Err(format!("still stuck once running: {still:#?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // A VM whose fix hands it to CDI leaves our alert for KubeVirt's own.
    for case in cases.iter().filter(|c| matches!(c.fix, Fix::Leaves(_))) {
        poll(STEP, || match watch.stuck().get(case.name) {
            Some(l) if l["alert"] == UNHEALTHY_STATE && l["status"] == "provisioning" => Ok(()),
            other => Err(format!("{}: {other:?}", case.name)),
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
