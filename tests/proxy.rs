//! The cluster reached through a proxy, as from a laptop or a CI runner behind one: a
//! kubeconfig's `proxy-url` or `HTTPS_PROXY` is followed through a `CONNECT` tunnel, with its
//! credentials, and `NO_PROXY` is honoured. Before, kube's proxy features were off and any
//! proxy setting failed the run, whatever `NO_PROXY` said.

mod support;
use support::binary::{self, shown};
use support::connect_proxy::ConnectProxy;
use support::fake_api::FakeApi;
use support::stuck::{gpu_vm, t4_node};

use std::process::Output;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

/// A fake API server with one `gpu=t4` node, a kubeconfig for it, and a VM that selects
/// `gpu=a100`: read with the cluster, the VM gets `node-selector-unsatisfiable`.
async fn cluster() -> (FakeApi, tempfile::TempDir) {
    let api = FakeApi::start(vec![("/api/v1/nodes", vec![t4_node()])], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    api.kubeconfig(dir.path());
    let mut vm = gpu_vm("gpu", "Stopped", jiff::Timestamp::now());
    vm.as_object_mut().unwrap().remove("status");
    std::fs::write(dir.path().join("vm.yaml"), vm.to_string()).unwrap();
    (api, dir)
}

/// `check --kubeconfig DIR/kubeconfig DIR/vm.yaml` with `env`.
async fn check(dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut command = binary::command();
    command.args([
        "check",
        "--kubeconfig",
        dir.join("kubeconfig").to_str().unwrap(),
        dir.join("vm.yaml").to_str().unwrap(),
    ]);
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

fn authority(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_cluster_through_https_proxy() {
    let (api, dir) = cluster().await;
    let proxy = ConnectProxy::start().await;
    let output = check(dir.path(), &[("HTTPS_PROXY", &proxy.url)]).await;
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("node-selector-unsatisfiable"),
        "the live nodes were read: {}",
        shown(&output)
    );
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty(), "nothing went through the proxy");
    assert!(
        tunnels.iter().all(|t| t.target == authority(&api.url)),
        "{tunnels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_reaches_the_api_server_directly() {
    let (api, dir) = cluster().await;
    let proxy = ConnectProxy::start().await;
    let env = [
        ("HTTPS_PROXY", proxy.url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let output = check(dir.path(), &env).await;
    assert_eq!(output.status.code(), Some(1), "{}", shown(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("node-selector-unsatisfiable"),
        "{}",
        shown(&output)
    );
    assert_eq!(proxy.tunnels(), vec![], "NO_PROXY names the API server");
    assert!(!api.seen_with("GET", "/nodes").is_empty());
}

/// The view's Secrets client goes through the proxy too, with the credentials of the proxy
/// URL, percent-decoded, and still keeps no connection: each list gets a tunnel of its own.
#[tokio::test]
async fn the_views_secrets_client_tunnels_with_the_proxys_credentials() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "prod"}, "data": {}});
    let api = FakeApi::start(vec![("/api/v1/secrets", vec![secret])], &[]).await;
    let proxy = ConnectProxy::start().await;
    let mut config = kube::Config::new(api.url.parse().unwrap());
    let proxy_url = proxy.url.replace("http://", "http://viewer:pa%40ss@");
    config.proxy_url = Some(proxy_url.parse().unwrap());
    let client = virt_preflight_runtime::cluster::unpooled::client(&config).unwrap();
    let secrets = Api::<Secret>::all(client);
    for _ in 0..2 {
        let list = secrets.list(&Default::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
    }
    let tunnels = proxy.tunnels();
    assert_eq!(tunnels.len(), 2, "a tunnel per list: {tunnels:?}");
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode("viewer:pa@ss");
    for tunnel in &tunnels {
        let expected = format!("Basic {credentials}");
        assert_eq!(tunnel.authorization.as_deref(), Some(expected.as_str()));
        assert_eq!(tunnel.target, authority(&api.url));
    }
}
