//! Denials a live cluster can trust (issue 15), on a real kube-apiserver with virt-preflight
//! installed from deploy/ (`tests/support/deployment.rs`): objects created in the same
//! `kubectl apply` as the VM that names them are never held against it, a truly missing
//! Secret is still denied, and a VM that will not start is warned, not denied, for cluster
//! facts.
//!
//! Skipped, saying why, when `VIRT_PREFLIGHT_APISERVER_DIR` is unset; `.ci/run` sets it.

mod support;
use support::{apiserver, deployment, scrape, vms};

use deployment::{Deployment, WEBHOOK_NAME};
use serde_json::Value;

/// How many objects and VMs one GitOps apply creates.
const GITOPS_VMS: usize = 10;

/// `kubectl apply -f FILE` of these documents, as a GitOps tool applies a directory: one
/// file, objects in order, each created by its own request.
fn apply_file(deployment: &Deployment, name: &str, documents: &[Value]) -> apiserver::Kubectl {
    let path = deployment.server.run_dir.join(name);
    std::fs::write(&path, vms::manifest(documents)).expect("write the manifest");
    deployment
        .server
        .kubectl(&["apply", "-f", &path.to_string_lossy()])
}

/// The VMs of `namespace` the API server stored.
fn stored_vms(deployment: &Deployment, namespace: &str) -> Vec<String> {
    let list = deployment
        .server
        .kubectl(&["get", "vm", "-n", namespace, "-o", "json"])
        .json();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|vm| vm["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// The webhook's denials in kubectl's stderr, one line each.
fn denials(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains(&format!("admission webhook \"{WEBHOOK_NAME}\" denied")))
        .collect()
}

/// Each object immediately followed by the VM that needs it, as in a GitOps repository where
/// every VM sits beside its own Secret or ConfigMap: the VM reaches the webhook milliseconds
/// after the object is stored, before a watch-fed view can have heard of it.
fn gitops_apply(
    namespace: &str,
    object: impl Fn(&str, &str) -> Value,
    vm: impl Fn(Value, &str) -> Value,
) -> Vec<Value> {
    (0..GITOPS_VMS)
        .flat_map(|i| {
            let object_name = format!("vm-{i}-data");
            [
                object(namespace, &object_name),
                vm(vms::vm(namespace, &format!("vm-{i}")), &object_name),
            ]
        })
        .collect()
}

fn assert_admitted_whole(deployment: &Deployment, namespace: &str, applied: apiserver::Kubectl) {
    let denied = denials(&applied.stderr);
    assert!(
        denied.is_empty(),
        "{} of {GITOPS_VMS} VMs denied in one apply:\n{}",
        denied.len(),
        denied.join("\n")
    );
    assert!(applied.success, "{}", applied.stderr);
    let expected: Vec<String> = {
        let mut names: Vec<String> = (0..GITOPS_VMS).map(|i| format!("vm-{i}")).collect();
        names.sort();
        names
    };
    assert_eq!(stored_vms(deployment, namespace), expected);
}

/// Issue 15, "GitOps apply is denied": one `kubectl apply -f` of a file holding 10 Secrets and
/// 10 VMs whose cloud-init `secretRef` names them admits every VM. The webhook must not deny
/// on a Secret its view has not heard of yet (it confirms an absence with the API server
/// before denying).
#[test]
fn gitops_apply_of_secrets_and_the_vms_naming_them_admits_every_vm() {
    let namespace = "gitops-secrets";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let documents = gitops_apply(
        namespace,
        vms::cloud_init_secret,
        vms::with_cloud_init_secret,
    );
    let applied = apply_file(deployment, "gitops-secrets.yaml", &documents);
    assert_admitted_whole(deployment, namespace, applied);
}

/// The same GitOps apply with 10 ConfigMaps and 10 VMs mounting them (configMap volumes):
/// every VM admitted.
#[test]
fn gitops_apply_of_config_maps_and_the_vms_mounting_them_admits_every_vm() {
    let namespace = "gitops-configmaps";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let documents = gitops_apply(namespace, vms::config_map, vms::with_config_map);
    let applied = apply_file(deployment, "gitops-configmaps.yaml", &documents);
    assert_admitted_whole(deployment, namespace, applied);
}

/// Trust goes both ways: a VM whose cloud-init names a Secret that does not exist (and is not
/// created) is still denied with `secret-not-found`, once the API server confirms the absence.
#[test]
fn a_vm_naming_a_secret_that_does_not_exist_is_denied() {
    let namespace = "missing-secret";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let vm = vms::with_cloud_init_secret(vms::vm(namespace, "orphan"), "never-created");
    let applied = apply_file(deployment, "missing-secret.yaml", &[vm]);
    assert!(!applied.success, "admitted: {}", applied.stdout);
    let denied = denials(&applied.stderr);
    assert_eq!(denied.len(), 1, "{}", applied.stderr);
    assert!(
        denied[0].contains("[secret-not-found] Secret \"never-created\" does not exist")
            && denied[0]
                .ends_with(" — spec.template.spec.volumes[1].cloudInitNoCloud.secretRef.name"),
        "{}",
        denied[0]
    );
    assert!(stored_vms(deployment, namespace).is_empty());
    // The API server's answer is counted, and the wait on it timed.
    let metrics = deployment.metrics();
    let absent = scrape::sum_of(
        &metrics,
        "virt_preflight_admission_confirmations_total",
        &[("result", "absent")],
    );
    assert!(absent >= 1.0, "no confirmed absence counted");
    let timed = scrape::sum_of(
        &metrics,
        "virt_preflight_admission_confirmation_duration_seconds_count",
        &[],
    );
    assert!(timed >= 1.0, "no confirmation timed");
}

/// Issue 15 and RULES.md: a VM with `runStrategy: Halted` cannot get stuck until someone starts
/// it, so a cluster finding (a missing Secret) is a warning: the VM is stored and kubectl shows
/// `secret-not-found` as a warning.
#[test]
fn a_halted_vm_naming_a_missing_secret_is_admitted_with_a_warning() {
    let namespace = "halted-missing-secret";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let vm = vms::halted(vms::with_cloud_init_secret(
        vms::vm(namespace, "stopped"),
        "never-created",
    ));
    let applied = apply_file(deployment, "halted-missing-secret.yaml", &[vm]);
    assert!(applied.success, "denied: {}", applied.stderr);
    assert!(
        applied.stderr.contains("Warning: [secret-not-found]"),
        "no warning: {}",
        applied.stderr
    );
    assert_eq!(stored_vms(deployment, namespace), ["stopped"]);
}

/// What the webhook asks before a denial, on the real API server: a Table row without the
/// object (no annotation, so no value from kubectl's last-applied copy). The API server
/// answers it for a Secret applied with kubectl and a custom resource (a DataVolume: its
/// Table comes from the CRD) (present), and for a Secret, a DataVolume and a cluster-scoped
/// PriorityClass never created (absent).
#[test]
fn confirmations_are_answered_by_the_api_server() {
    use virt_preflight::cluster::{Kind, ObjectKey};
    use virt_preflight::confirm::{Confirmation, Confirmer};

    let namespace = "confirm-table";
    let Some(deployment) = Deployment::with_namespace(namespace, &[]) else {
        return;
    };
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": namespace},
        "stringData": {"password": "hunter2"}});
    let data_volume = serde_json::json!({"apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume", "metadata": {"name": "root", "namespace": namespace},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}});
    let applied = apply_file(
        deployment,
        "confirm-table-objects.yaml",
        &[secret, data_volume],
    );
    assert!(applied.success, "{}", applied.stderr);
    let keys = [
        ObjectKey::new(Kind::Secret, namespace, "db"),
        ObjectKey::new(Kind::Secret, namespace, "never-created"),
        ObjectKey::new(Kind::PriorityClass, "", "never-created"),
        ObjectKey::new(Kind::DataVolume, namespace, "root"),
        ObjectKey::new(Kind::DataVolume, namespace, "never-created"),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let answers = runtime.block_on(async {
        let confirmer = Confirmer::new(
            deployment.server.client().await,
            std::time::Duration::from_secs(10),
        );
        confirmer.confirm(keys.clone()).await
    });
    assert_eq!(answers[&keys[0]], Confirmation::Present);
    assert_eq!(answers[&keys[1]], Confirmation::Absent);
    assert_eq!(answers[&keys[2]], Confirmation::Absent);
    assert_eq!(answers[&keys[3]], Confirmation::Present);
    assert_eq!(answers[&keys[4]], Confirmation::Absent);
}
