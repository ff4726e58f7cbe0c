//! End to end on a real kube-apiserver and etcd (`tests/support/apiserver.rs`): virt-preflight
//! installed with `kubectl apply -k deploy/`, running `serve --watch` as deploy/'s
//! ServiceAccount, its webhook registered by URL (`tests/support/deployment.rs`). What the
//! loopback fake API server cannot show: deploy/'s RBAC, the API server's own calls to the
//! webhook (dry run, warnings, denials through kubectl), real watches, Events and the Lease.
//!
//! Skipped, saying why, when `VIRT_PREFLIGHT_APISERVER_DIR` is unset; `.ci/run` sets it.

mod support;
use support::{apiserver, deployment, scrape, vms};

use std::time::Duration;

use apiserver::eventually;
use deployment::{Deployment, NAMESPACE, Process, WEBHOOK_NAME};
use scrape::{Sample, sum_of};
use serde_json::{Value, json};
use virt_preflight::cluster::Kind;

/// Events reach the API server through a queue; the watcher ticks every 5 s.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `kubectl apply -f -` of these documents, as cluster-admin.
fn apply(deployment: &Deployment, extra: &[&str], documents: &[Value]) -> apiserver::Kubectl {
    let mut args = vec!["apply"];
    args.extend_from_slice(extra);
    args.extend(["-f", "-"]);
    deployment
        .server
        .kubectl_with_input(&args, Some(&vms::manifest(documents)))
}

/// The events.k8s.io/v1 Events in `namespace` about `name` with `reason`.
fn events(deployment: &Deployment, namespace: &str, name: &str, reason: &str) -> Vec<Value> {
    let list = deployment
        .server
        .kubectl(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            namespace,
            "-o",
            "json",
        ])
        .json();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
        .cloned()
        .collect()
}

fn exists(deployment: &Deployment, kind: &str, namespace: &str, name: &str) -> bool {
    deployment
        .server
        .kubectl(&["get", kind, name, "-n", namespace, "-o", "name"])
        .success
}

/// The samples of `name` about one VM.
fn vm_samples(metrics: &[Sample], name: &str, namespace: &str, vm: &str) -> Vec<Sample> {
    metrics
        .iter()
        .filter(|s| s.name == name && s.has(&[("namespace", namespace), ("name", vm)]))
        .cloned()
        .collect()
}

/// The metrics parser these tests read gauges with: a `cause` label holds free text.
#[test]
fn samples_with_quoted_commas_braces_and_escapes_parse() {
    let text =
        "# HELP x y\nvm_stuck{namespace=\"a\",cause=\"[r] p: x, {y} \\\"z\\\"\"} 1\nplain 2.5\n";
    let samples = scrape::parse_samples(text);
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].label("cause"), Some("[r] p: x, {y} \"z\""));
    assert_eq!(samples[0].label("namespace"), Some("a"));
    assert_eq!(samples[1].value, 2.5);
}

/// deploy/'s ClusterRole, bound to its ServiceAccount, lets the live view list and watch every
/// kind it reads (CRDs installed): each kind is synced, nothing is forbidden, and the process
/// is ready. A resource missing from the ClusterRole leaves its kind unsynced and logs
/// "forbidden".
#[test]
fn deploy_rbac_lets_the_service_account_sync_every_kind() {
    let Some(deployment) = Deployment::shared() else {
        return;
    };
    let logs = deployment.logs();
    let metrics = deployment.metrics();
    let unsynced: Vec<&str> = Kind::ALL
        .into_iter()
        .filter(|kind| {
            sum_of(
                &metrics,
                "virt_preflight_cache_synced",
                &[("kind", kind.as_str())],
            ) != 1.0
        })
        .map(Kind::as_str)
        .collect();
    assert!(
        unsynced.is_empty(),
        "kinds not synced as deploy/'s ServiceAccount: {unsynced:?}\n{logs}"
    );
    for kind in Kind::ALL {
        assert!(
            logs.contains(&format!("cluster view synced kind={kind}")),
            "no sync of {kind} in the log:\n{logs}"
        );
    }
    let refused: Vec<&str> = logs
        .lines()
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            line.contains("forbidden") || line.contains("cannot list")
        })
        .collect();
    assert!(refused.is_empty(), "refused: {refused:#?}");
    assert_eq!(
        sum_of(&metrics, "virt_preflight_watcher_synced", &[]),
        1.0,
        "the watcher has not listed VMs and VMIs\n{logs}"
    );
    let (status, body) = deployment.readyz().expect("GET /readyz");
    assert_eq!(status, 200, "{body}");
}

/// KubeVirt's two components are readable by name only: deploy/'s ServiceAccount lists and
/// watches the Deployment `virt-controller` and the DaemonSet `virt-handler` with a
/// `metadata.name` field selector (what the live view sends), and no other workload.
#[test]
fn deploy_rbac_reads_kubevirts_components_by_name_and_no_other_workload() {
    let Some(deployment) = Deployment::shared() else {
        return;
    };
    let as_service_account =
        |args: &[&str]| apiserver::kubectl_as(&deployment.service_account_kubeconfig, args, None);
    for (resource, name) in [
        ("deployments.apps", "virt-controller"),
        ("daemonsets.apps", "virt-handler"),
    ] {
        let selector = format!("metadata.name={name}");
        let by_name = as_service_account(&["get", resource, "-A", "--field-selector", &selector]);
        assert!(by_name.success, "{resource} {name}: {}", by_name.stderr);
        let watch = as_service_account(&[
            "get",
            resource,
            "-n",
            "kube-system",
            "--field-selector",
            &selector,
            "--watch-only",
            "--request-timeout=1s",
        ]);
        assert!(
            !watch.stderr.to_ascii_lowercase().contains("forbidden"),
            "watch {resource} {name}: {}",
            watch.stderr
        );
        let all = as_service_account(&["get", resource, "-A"]);
        assert!(
            !all.success && all.stderr.contains("forbidden"),
            "every {resource} of the cluster must stay unreadable: {}{}",
            all.stdout,
            all.stderr
        );
        let other = as_service_account(&["get", resource, "-n", "kube-system", "coredns"]);
        assert!(
            other.stderr.contains("forbidden"),
            "another {resource} by name: {}{}",
            other.stdout,
            other.stderr
        );
    }
}

/// The API server calls deploy/'s webhook, registered by URL with the certificate
/// `virt-preflight certs --dns-name localhost` made: `kubectl apply` of a VM with a spec error
/// is denied, with the rule ID and KubeVirt's path, and nothing is stored.
#[test]
fn kubectl_apply_of_a_vm_with_a_spec_error_is_denied_with_the_rule_id() {
    let namespace = "deny-spec-error";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let vm = vms::with_disk_without_volume(vms::vm(namespace, "broken"));
    let applied = apply(deployment, &[], &[vm]);
    assert!(
        !applied.success,
        "a broken VM was admitted: {}",
        applied.stdout
    );
    for expected in [
        &format!("admission webhook \"{WEBHOOK_NAME}\" denied the request"),
        "[disk-without-volume] disk \"data\" names no volume: add that volume or fix the name \
         — spec.template.spec.domain.devices.disks[2].name",
    ] {
        assert!(
            applied.stderr.contains(expected),
            "{expected:?} not in {}",
            applied.stderr
        );
    }
    assert!(!exists(deployment, "vm", namespace, "broken"));
}

/// A VM KubeVirt would run is stored, with no warning.
#[test]
fn kubectl_apply_of_a_valid_vm_is_admitted_without_warnings() {
    let namespace = "admit-valid";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let applied = apply(deployment, &[], &[vms::vm(namespace, "fedora")]);
    assert!(applied.success, "{}", applied.stderr);
    assert!(
        !applied.stderr.contains("Warning"),
        "warned: {}",
        applied.stderr
    );
    assert!(exists(deployment, "vm", namespace, "fedora"));
}

/// deploy/'s namespaceSelector leaves kube-system and virt-preflight's own namespace alone: a
/// broken VM there is not reviewed (server-side dry run, so nothing is stored).
#[test]
fn namespaces_excluded_by_deploy_are_not_reviewed() {
    let Some(deployment) = Deployment::shared() else {
        return;
    };
    for namespace in ["kube-system", NAMESPACE] {
        let vm = vms::with_disk_without_volume(vms::vm(namespace, "unreviewed"));
        let applied = apply(deployment, &["--dry-run=server"], &[vm]);
        assert!(applied.success, "{namespace}: {}", applied.stderr);
    }
}

/// A warning reaches kubectl both ways, but only a real apply records the `PreflightFindings`
/// Event: the webhook honours `dryRun` (deploy/ declares `sideEffects: NoneOnDryRun`). Events
/// leave through one queue in order, so once the real apply's Event is stored, an Event of the
/// earlier dry run would be too.
#[test]
fn server_dry_run_records_no_event_and_a_real_apply_does() {
    let namespace = "dry-run-events";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let warning = "Warning: [image-tag-latest] image \"quay.io/containerdisks/fedora:latest\" \
                   is :latest or untagged, pulled IfNotPresent: pin a tag or digest \
                   — spec.template.spec.volumes[0].containerDisk.image";

    let dry = vms::with_latest_image(vms::vm(namespace, "dry"));
    let applied = apply(deployment, &["--dry-run=server"], &[dry]);
    assert!(applied.success, "{}", applied.stderr);
    assert!(
        applied.stdout.contains("(server dry run)"),
        "{}",
        applied.stdout
    );
    assert!(applied.stderr.contains(warning), "{}", applied.stderr);
    assert!(!exists(deployment, "vm", namespace, "dry"));

    let real = vms::with_latest_image(vms::vm(namespace, "real"));
    let applied = apply(deployment, &[], &[real]);
    assert!(applied.success, "{}", applied.stderr);
    assert!(applied.stderr.contains(warning), "{}", applied.stderr);
    let recorded = eventually(
        "the PreflightFindings Event of VM real",
        EVENT_TIMEOUT,
        || {
            events(deployment, namespace, "real", "PreflightFindings")
                .into_iter()
                .next()
        },
    );
    assert_eq!(recorded["type"], "Warning");
    let note = recorded["note"].as_str().unwrap_or_default();
    assert!(note.contains("[image-tag-latest]"), "{recorded:#}");

    let dry_events = events(deployment, namespace, "dry", "PreflightFindings");
    assert!(dry_events.is_empty(), "a dry run recorded {dry_events:#?}");
}

/// The status KubeVirt's controller would write for a VM its scheduler cannot place, dated
/// `minutes` ago.
fn unschedulable_status(minutes: i64) -> (Value, jiff::Timestamp) {
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
    let since = since.round(jiff::Unit::Second).expect("round to seconds");
    let status = json!({"status": {
        "printableStatus": "ErrorUnschedulable",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodNotScheduled",
             "lastTransitionTime": since.to_string()},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}
        ]
    }});
    (status, since)
}

/// The namespace label under which the webhook only warns: how a VM slips past admission.
const WARN_MODE: &[(&str, &str)] = &[("virt-preflight.io/mode", "warn")];

/// A VM asking for a GPU no node has, admitted with a warning (in a [`WARN_MODE`] namespace),
/// then given `status` as KubeVirt's controller would write it.
fn stuck_gpu_vm(deployment: &Deployment, namespace: &str, name: &str, status: &Value) {
    let applied = apply(
        deployment,
        &[],
        &[vms::with_gpu(vms::vm(namespace, name), "a100")],
    );
    assert!(applied.success, "{}", applied.stderr);
    assert!(
        applied.stderr.contains("[node-selector-unsatisfiable]"),
        "{}",
        applied.stderr
    );
    deployment
        .server
        .kubectl(&[
            "patch",
            "vm",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .ok();
}

/// The watcher of `serve --watch` (`--stuck-after 3s`) follows real watches: a VM whose status
/// is patched to ErrorUnschedulable with no VMI raises `virt_preflight_vm_stuck` with the
/// diagnosed cause and the `VirtualMachineStuckInUnhealthyState` Event; creating its VMI
/// clears the gauge.
#[test]
fn the_watcher_raises_a_vm_patched_stuck_and_hands_it_to_before_node_when_its_vmi_appears() {
    let namespace = "watcher-stuck";
    let Some(deployment) = Deployment::with_namespace(namespace, WARN_MODE) else {
        return;
    };
    let (status, _) = unschedulable_status(120);
    stuck_gpu_vm(deployment, namespace, "gpu-vm", &status);

    let stuck = eventually("virt_preflight_vm_stuck for gpu-vm", EVENT_TIMEOUT, || {
        vm_samples(
            &deployment.metrics(),
            "virt_preflight_vm_stuck",
            namespace,
            "gpu-vm",
        )
        .into_iter()
        .next()
    });
    assert_eq!(stuck.value, 1.0);
    assert_eq!(stuck.label("status"), Some("errorunschedulable"));
    assert_eq!(
        stuck.label("rule"),
        Some("node-selector-unsatisfiable"),
        "{stuck:?}"
    );
    let event = eventually("the stuck Event of gpu-vm", EVENT_TIMEOUT, || {
        events(
            deployment,
            namespace,
            "gpu-vm",
            "VirtualMachineStuckInUnhealthyState",
        )
        .into_iter()
        .next()
    });
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("ErrorUnschedulable for ")
            && note.contains("[node-selector-unsatisfiable]"),
        "{event:#}"
    );

    let vmi = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "gpu-vm", "namespace": namespace},
        "spec": {"domain": {"devices": {}}}
    });
    apply(deployment, &[], &[vmi]).ok();
    // KubeVirt's alert ends (it has a VMI); the VMI has not reached a node, so ours begins,
    // dated from now: not stuck yet.
    eventually(
        "gpu-vm under VirtualMachineStuckBeforeNode, not stuck",
        EVENT_TIMEOUT,
        || {
            let metrics = deployment.metrics();
            let stuck = vm_samples(&metrics, "virt_preflight_vm_stuck", namespace, "gpu-vm");
            let since: Vec<Sample> = vm_samples(
                &metrics,
                "virt_preflight_vm_unhealthy_since_timestamp_seconds",
                namespace,
                "gpu-vm",
            );
            let alerts: Vec<Option<&str>> = since.iter().map(|s| s.label("alert")).collect();
            (stuck.is_empty() && alerts == [Some("VirtualMachineStuckBeforeNode")]).then_some(())
        },
    );
}

/// A watcher that starts after a VM got stuck (a restart, a new leader) dates it by the
/// `lastTransitionTime` KubeVirt wrote, so under the default 10-minute threshold a VM
/// unhealthy for 30 minutes is stuck at once. Runs `virt-preflight watch` as deploy/'s
/// ServiceAccount, as a second process.
#[test]
fn a_watcher_started_after_a_vm_got_stuck_dates_it_by_its_conditions() {
    let namespace = "watcher-restart";
    let Some(deployment) = Deployment::with_namespace(namespace, WARN_MODE) else {
        return;
    };
    let (status, since) = unschedulable_status(30);
    stuck_gpu_vm(deployment, namespace, "gpu-vm", &status);

    let args = [
        "watch",
        "--no-leader-election",
        "--metrics-addr",
        "127.0.0.1:0",
        "--kubeconfig",
    ]
    .map(std::ffi::OsString::from);
    let mut args = args.to_vec();
    args.push(
        deployment
            .service_account_kubeconfig
            .clone()
            .into_os_string(),
    );
    let watch =
        Process::start(deployment.server, "watch", &args, &[]).unwrap_or_else(|e| panic!("{e}"));
    let metrics_addr: std::net::SocketAddr = watch
        .first_line
        .strip_prefix("watching VirtualMachines (metrics: http://")
        .and_then(|rest| rest.strip_suffix("/metrics)"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("watch printed {:?}", watch.first_line));

    let scrape = || match scrape::http_get(metrics_addr, "/metrics") {
        Ok((200, body)) => scrape::parse_samples(&body),
        other => panic!("watch's /metrics: {other:?}\n{}", watch.logs()),
    };
    let stuck = eventually("the restarted watcher's stuck gauge", EVENT_TIMEOUT, || {
        vm_samples(&scrape(), "virt_preflight_vm_stuck", namespace, "gpu-vm")
            .into_iter()
            .next()
    });
    assert_eq!(stuck.value, 1.0, "{}", watch.logs());
    let unhealthy_since = vm_samples(
        &scrape(),
        "virt_preflight_vm_unhealthy_since_timestamp_seconds",
        namespace,
        "gpu-vm",
    );
    assert_eq!(
        unhealthy_since.iter().map(|s| s.value).collect::<Vec<_>>(),
        [since.as_second() as f64],
        "dated by the Ready condition ({since})"
    );
}

/// The watcher elects itself on deploy/'s Lease (with deploy/'s Role) and holds it as its
/// `POD_NAME`, renewing it.
#[test]
fn the_watcher_lease_is_held_by_the_process() {
    let Some(deployment) = Deployment::shared() else {
        return;
    };
    let lease = eventually("the Lease held by this process", EVENT_TIMEOUT, || {
        let lease = deployment
            .server
            .kubectl(&[
                "get",
                "lease",
                "virt-preflight-watcher",
                "-n",
                NAMESPACE,
                "-o",
                "json",
            ])
            .result()
            .ok()?;
        let lease: Value = serde_json::from_str(&lease).ok()?;
        (lease["spec"]["holderIdentity"] == deployment.identity.as_str()).then_some(lease)
    });
    let renewed: jiff::Timestamp = lease["spec"]["renewTime"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no renewTime: {lease:#}"));
    let age = jiff::Timestamp::now().duration_since(renewed);
    assert!(
        age < jiff::SignedDuration::from_secs(60),
        "renewed {age:?} ago: {lease:#}"
    );
    assert_eq!(
        sum_of(&deployment.metrics(), "virt_preflight_watcher_leader", &[]),
        1.0
    );
}
