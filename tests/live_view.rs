//! The live cluster source against a loopback API server that speaks list and watch.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_api::FakeApi;
use virt_preflight::cluster::live::{LiveView, ViewClients, list_once};
use virt_preflight::cluster::{ClusterView, Kind, Lookup};
use virt_preflight::model::VirtualMachine;
use virt_preflight::rules::finding::{DEFAULT_NAMESPACE, ObjectRef};
use virt_preflight::rules::{self, RuleId};

const SECRETS: &str = "/api/v1/secrets";
const DATAVOLUMES: &str = "/apis/cdi.kubevirt.io/v1beta1/datavolumes";

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn secret(name: &str, resource_version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": resource_version},
        "data": {"password": "c2VjcmV0"}})
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true"}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}})
}

async fn fake_cluster() -> FakeApi {
    FakeApi::start(
        vec![
            (SECRETS, vec![secret("existing", "1")]),
            ("/api/v1/nodes", vec![node("worker-1")]),
        ],
        &[DATAVOLUMES],
    )
    .await
}

/// A VM whose cloud-init user data comes from Secret `secret`.
fn vm_using(secret: &str) -> VirtualMachine {
    VirtualMachine::from_value(&json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "vm", "namespace": "default"},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"devices": {"disks": [{"name": "root", "disk": {}}, {"name": "ci", "disk": {}}]},
                       "memory": {"guest": "1Gi"}},
            "volumes": [
                {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                {"name": "ci", "cloudInitNoCloud": {"secretRef": {"name": secret}}}
            ]}}}
    }))
    .unwrap()
}

fn fired(vm: &VirtualMachine, view: &ClusterView) -> Vec<RuleId> {
    let object = ObjectRef::virtual_machine(vm, None, DEFAULT_NAMESPACE);
    rules::evaluate(vm, &object, Some(view))
        .findings
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

#[tokio::test]
async fn list_once_reads_metadata_only_secrets_and_marks_missing_crds_unknown() {
    install_crypto();
    let api = fake_cluster().await;
    let listed = list_once(api.client()).await;
    let view = &listed.view;
    assert_eq!(
        view.exists(Kind::Secret, "default", "existing"),
        Lookup::Present(())
    );
    assert_eq!(
        view.exists(Kind::Secret, "default", "other"),
        Lookup::Absent
    );
    assert_eq!(view.nodes().map(|n| n.len()), Some(1));
    assert!(!view.is_known(Kind::DataVolume));
    assert!(
        listed
            .notes
            .iter()
            .any(|n| n.starts_with("DataVolume: not served")),
        "{:?}",
        listed.notes
    );

    let seen = api.seen();
    let secrets = seen
        .iter()
        .find(|s| s.path == SECRETS)
        .expect("secrets listed");
    assert!(
        secrets.accept.contains("as=PartialObjectMetadataList"),
        "secret list must ask for metadata only: {}",
        secrets.accept
    );
    let nodes = seen
        .iter()
        .find(|s| s.path == "/api/v1/nodes")
        .expect("nodes listed");
    assert!(!nodes.accept.contains("PartialObjectMetadata"));

    assert_eq!(
        fired(&vm_using("new-secret"), view),
        vec![RuleId::SecretNotFound]
    );
    assert_eq!(fired(&vm_using("existing"), view), vec![]);
}

/// Waits (bounded) until `done` holds for the live view.
async fn wait_for(view: &mut LiveView, what: &str, done: impl Fn(&ClusterView) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(&view.current()) {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!remaining.is_zero(), "timed out waiting for {what}");
        let _ = tokio::time::timeout(remaining, view.changed()).await;
    }
}

#[tokio::test]
async fn a_watch_event_that_adds_a_secret_clears_secret_not_found() {
    install_crypto();
    let api = fake_cluster().await;
    let mut view = LiveView::start(ViewClients::sharing(api.client()), &[]);
    wait_for(&mut view, "Secrets and Nodes to sync", |v| {
        v.is_known(Kind::Secret) && v.is_known(Kind::Node)
    })
    .await;
    let vm = vm_using("new-secret");
    assert_eq!(fired(&vm, &view.current()), vec![RuleId::SecretNotFound]);
    assert!(
        !view.current().is_known(Kind::DataVolume),
        "missing CRD stays unknown"
    );

    // The watch on secrets must be open before the event is sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !api
        .seen()
        .iter()
        .any(|s| s.path == SECRETS && s.query.contains("watch=true"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no watch on secrets"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.send(SECRETS, "ADDED", secret("new-secret", "2"));
    wait_for(&mut view, "the new Secret", |v| {
        v.exists(Kind::Secret, "default", "new-secret") == Lookup::Present(())
    })
    .await;
    assert_eq!(fired(&vm, &view.current()), vec![]);

    let watch = api
        .seen()
        .into_iter()
        .find(|s| s.path == SECRETS && s.query.contains("watch=true"))
        .unwrap();
    assert!(
        watch.accept.contains("as=PartialObjectMetadata"),
        "{}",
        watch.accept
    );

    api.send(SECRETS, "DELETED", secret("new-secret", "3"));
    wait_for(&mut view, "the Secret to go", |v| {
        v.exists(Kind::Secret, "default", "new-secret") == Lookup::Absent
    })
    .await;
    assert_eq!(fired(&vm, &view.current()), vec![RuleId::SecretNotFound]);
}

/// Secrets are read through a client of their own (its own connection pool), and nothing
/// else is: a connection that carried a page of Secrets never goes on to carry another kind's
/// quiet watch, holding the page in its read buffer.
#[tokio::test]
async fn secrets_are_read_through_their_own_client_and_nothing_else_is() {
    install_crypto();
    let objects = fake_cluster().await;
    let secrets = FakeApi::start(vec![(SECRETS, vec![secret("existing", "1")])], &[]).await;
    let mut view = LiveView::start(
        ViewClients {
            objects: objects.client(),
            secrets: secrets.client(),
        },
        &[],
    );
    wait_for(&mut view, "Secrets and Nodes to sync", |v| {
        v.is_known(Kind::Secret) && v.is_known(Kind::Node)
    })
    .await;
    assert_eq!(
        view.current().exists(Kind::Secret, "default", "existing"),
        Lookup::Present(())
    );
    let read_from_secrets: Vec<String> = secrets.seen().into_iter().map(|s| s.path).collect();
    assert!(!read_from_secrets.is_empty());
    assert!(
        read_from_secrets.iter().all(|path| path == SECRETS),
        "the Secrets client read {read_from_secrets:?}"
    );
    assert!(
        objects.seen().iter().all(|s| s.path != SECRETS),
        "Secrets were read through the other client"
    );
}

/// Each request for Secrets goes out on a connection of its own, closed once it is answered:
/// none is pooled, so none sits idle holding the page of Secrets it last read.
#[tokio::test]
async fn every_secrets_request_has_a_connection_of_its_own() {
    install_crypto();
    // Three pages of 500.
    let secrets = (0..1_200).map(|i| secret(&format!("s-{i}"), "1")).collect();
    let api = FakeApi::start(
        vec![
            (SECRETS, secrets),
            ("/api/v1/nodes", vec![node("worker-1")]),
        ],
        &[],
    )
    .await;
    let config = kube::Config::new(api.url.parse().expect("the fake's URL"));
    let clients = ViewClients::new(&config).expect("clients");
    let mut view = LiveView::start(clients, &[]);
    wait_for(&mut view, "Secrets to sync", |v| v.is_known(Kind::Secret)).await;
    assert_eq!(
        view.current().exists(Kind::Secret, "default", "s-1199"),
        Lookup::Present(())
    );
    let requests: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|s| s.path == SECRETS)
        .collect();
    let pages = requests
        .iter()
        .filter(|s| s.query.contains("limit="))
        .count();
    assert!(pages >= 3, "{requests:?}");
    let connections: std::collections::BTreeSet<_> = requests.iter().map(|s| s.peer).collect();
    assert_eq!(
        connections.len(),
        requests.len(),
        "Secrets requests shared a connection: {requests:?}"
    );
}
