//! The cluster reached through a proxy, as from a laptop or a CI runner behind one, decided as
//! kubectl decides it: a kubeconfig's `proxy-url` always (HTTP `CONNECT` with its credentials,
//! or SOCKS5); otherwise
//! `HTTPS_PROXY`/`HTTP_PROXY` unless `NO_PROXY` names the server or it is loopback
//! (`NO_PROXY` itself: `cluster::proxy`'s unit tests). Before, any proxy setting failed every
//! live command.

mod support;
use support::binary::{self, shown};
use support::connect_proxy::{ConnectProxy, Tunnel};
use support::fake_api::FakeApi;
use support::stuck::{gpu_vm, t4_node};

use std::path::Path;
use std::process::Output;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

/// A fake API server with one `gpu=t4` node, and in `dir` a VM that selects `gpu=a100`: read
/// with the cluster, the VM gets `node-selector-unsatisfiable`.
async fn cluster(dir: &Path) -> FakeApi {
    let api = FakeApi::start(vec![("/api/v1/nodes", vec![t4_node()])], &[]).await;
    let mut vm = gpu_vm("gpu", "Stopped", jiff::Timestamp::now());
    vm.as_object_mut().unwrap().remove("status");
    std::fs::write(dir.join("vm.yaml"), vm.to_string()).unwrap();
    api
}

/// The fake's kubeconfig in `dir`, its server's host replaced by `host`, with `proxy_url`.
fn kubeconfig(api: &FakeApi, dir: &Path, host: &str, proxy_url: Option<&str>) {
    let path = api.kubeconfig(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let server = api.url.replace("127.0.0.1", host);
    let mut cluster = format!("server: {server}");
    if let Some(proxy_url) = proxy_url {
        cluster.push_str(&format!("\n    proxy-url: {proxy_url}"));
    }
    let text = text.replace(&format!("server: {}", api.url), &cluster);
    std::fs::write(path, text).unwrap();
}

/// `check --kubeconfig DIR/kubeconfig DIR/vm.yaml` with `env`.
async fn check(dir: &Path, env: &[(&str, &str)]) -> Output {
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

fn assert_read_the_cluster(output: &Output) {
    assert_eq!(output.status.code(), Some(1), "{}", shown(output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("node-selector-unsatisfiable"),
        "the live nodes were read: {}",
        shown(output)
    );
}

/// Some requests went through `proxy`, every one in a tunnel like `expected`.
fn assert_tunnelled(proxy: &ConnectProxy, expected: Tunnel) {
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty(), "nothing went through the proxy");
    assert!(tunnels.iter().all(|t| *t == expected), "{tunnels:?}");
}

fn port(url: &str) -> &str {
    url.rsplit_once(':').unwrap().1
}

fn basic(userinfo: &str) -> Option<String> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
    Some(format!("Basic {encoded}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubeconfigs_proxy_url_carries_every_request_with_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let api = cluster(dir.path()).await;
    let proxy = ConnectProxy::start().await;
    let proxy_url = proxy.url.replace("http://", "http://viewer:pa%40ss@");
    kubeconfig(&api, dir.path(), "127.0.0.1", Some(&proxy_url));
    // kubectl uses a kubeconfig's proxy-url for every request: NO_PROXY does not apply to it.
    let output = check(dir.path(), &[("NO_PROXY", "*")]).await;
    assert_read_the_cluster(&output);
    let expected = Tunnel {
        target: format!("127.0.0.1:{}", port(&api.url)),
        authorization: basic("viewer:pa@ss"),
    };
    assert_tunnelled(&proxy, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_proxy_url_logs_in_and_resolves_the_servers_name_itself() {
    let dir = tempfile::tempdir().unwrap();
    let api = cluster(dir.path()).await;
    let proxy = ConnectProxy::start_socks5().await;
    let proxy_url = proxy.url.replace("socks5://", "socks5://viewer:pa%40ss@");
    kubeconfig(&api, dir.path(), "api.corp.test", Some(&proxy_url));
    let output = check(dir.path(), &[]).await;
    assert_read_the_cluster(&output);
    let expected = Tunnel {
        target: format!("api.corp.test:{}", port(&api.url)),
        authorization: Some("viewer:pa@ss".into()),
    };
    assert_tunnelled(&proxy, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_proxy_carries_requests_to_a_server_no_proxy_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let api = cluster(dir.path()).await;
    let proxy = ConnectProxy::start().await;
    // Only the proxy knows api.corp.test. The fake serves http://, so HTTP_PROXY is the one
    // that applies; written with no scheme, and NO_PROXY written as people write it.
    kubeconfig(&api, dir.path(), "api.corp.test", None);
    let env = [
        ("HTTP_PROXY", proxy.url.trim_start_matches("http://")),
        ("NO_PROXY", "localhost, .other.test,,10.0.0.0/8,"),
    ];
    let output = check(dir.path(), &env).await;
    assert_read_the_cluster(&output);
    let expected = Tunnel {
        target: format!("api.corp.test:{}", port(&api.url)),
        authorization: None,
    };
    assert_tunnelled(&proxy, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_server_is_reached_directly_whatever_the_environment_says() {
    let dir = tempfile::tempdir().unwrap();
    let api = cluster(dir.path()).await;
    let proxy = ConnectProxy::start().await;
    kubeconfig(&api, dir.path(), "127.0.0.1", None);
    let env = [
        ("HTTP_PROXY", proxy.url.as_str()),
        ("HTTPS_PROXY", proxy.url.as_str()),
    ];
    let output = check(dir.path(), &env).await;
    assert_read_the_cluster(&output);
    assert_eq!(proxy.tunnels(), vec![], "as Go's proxy rules say");
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
    let client = virt_preflight_runtime::cluster::client::unpooled(&config).unwrap();
    let secrets = Api::<Secret>::all(client);
    for _ in 0..2 {
        let list = secrets.list(&Default::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
    }
    let tunnels = proxy.tunnels();
    assert_eq!(tunnels.len(), 2, "a tunnel per list: {tunnels:?}");
    let expected = Tunnel {
        target: format!("127.0.0.1:{}", port(&api.url)),
        authorization: basic("viewer:pa@ss"),
    };
    assert_tunnelled(&proxy, expected);
}
