//! The live cluster view at scale, as deployed: `virt-preflight serve` (its own process) reads
//! a loopback API server (tests/support/fake_api.rs) that serves 5,000 Nodes, 100,000 Secrets,
//! 20,000 ConfigMaps and 20,000 PVCs, lists and watches. Every Secret carries its value in
//! `data` and, as `kubectl apply` leaves it, in the last-applied annotation.
//!
//! Prints, for 1,000 and for 100,000 Secrets: time until /readyz says the view is synced, the
//! server's resident memory, its CPU time per Secret change (1,000 changes at 100/s, or one every
//! `LIVE_VIEW_CHANGE_INTERVAL_US` µs; the idle
//! CPU of as long subtracted), how long until the view holds a new Secret (from the watch event),
//! and how many copies of Secret values the process's memory holds (read from
//! /proc/PID/mem: the server runs as the same user).
//!
//! Beside it, on the same fake API server and fed the same changes, runs the floor (issue 25):
//! a bare kube-runtime metadata watcher on Secrets, with the same kube and tokio stack and
//! allocator (the fake API server is plain HTTP for both), with kube's default backoff, that
//! counts events and stores nothing (this bench's own binary, re-run with
//! `LIVE_VIEW_BARE_WATCHER=1`). The ratios printed: CPU per Secret change, and Secret copies
//! in memory, of `serve` against the bare watcher.
//!
//! Run: `cargo bench --bench live_view` (a few minutes once built). `LIVE_VIEW_SECRETS=N` runs one
//! size only.

// The binary's allocator, so that the bare watcher (this binary too) leaves no more freed
// copies of Secret values than `serve` does: the copies compared are the ones each keeps.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

// The tests' support, whole, as every test binary includes it.
#[path = "../tests/support/mod.rs"]
mod support;
use support::fake_api;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use fake_api::FakeApi;
use serde_json::{Value, json};

const NODES: usize = 5_000;
const CONFIGMAPS: usize = 20_000;
const PVCS: usize = 20_000;
const NAMESPACES: usize = 100;
/// Secret changes sent one at a time, every 10 ms (as a busy cluster's churn arrives).
const CHANGES: usize = 1_000;
/// Single Secrets sent one after another to time how soon the view has each.
const FRESHNESS_SAMPLES: usize = 20;
/// Every Secret's value starts with this, so the process's memory can be searched for it.
const SECRET_PREFIX: &str = "hunter2-secret-value-";

fn node(i: usize) -> Value {
    let zone = ["a", "b", "c"][i % 3];
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("worker-{i}"), "resourceVersion": "1", "labels": {
            "kubernetes.io/hostname": format!("worker-{i}"),
            "topology.kubernetes.io/zone": zone,
            "kubevirt.io/schedulable": "true",
            "cpu-model.node.kubevirt.io/Haswell": "true",
            "node.kubernetes.io/instance-type": format!("m{}.large", i % 7)}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110", "devices.kubevirt.io/kvm": "1k"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

fn namespace(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

/// A Secret as `kubectl apply` leaves it: its data also in the last-applied annotation.
fn secret(i: usize, generation: usize) -> Value {
    let value = base64::engine::general_purpose::STANDARD
        .encode(format!("{SECRET_PREFIX}{i}-{generation}"));
    let name = format!("secret-{i}");
    let applied = json!({"apiVersion": "v1", "kind": "Secret", "data": {"password": value},
        "metadata": {"name": name, "namespace": namespace(i)}});
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace(i), "resourceVersion": format!("{}", 2 + generation),
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()}},
        "type": "Opaque",
        "data": {"password": value}
    })
}

fn configmap(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i}"), "namespace": namespace(i), "resourceVersion": "1"},
        "data": {"key": "value"}})
}

fn pvc(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("pvc-{i}"), "namespace": namespace(i), "resourceVersion": "1"},
        "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"]},
        "status": {"phase": "Bound"}})
}

fn secret_marker() -> Vec<u8> {
    // Base64 of the prefix, cut where a 3-byte group ends, so every encoded value contains it.
    let prefix = &SECRET_PREFIX.as_bytes()[..SECRET_PREFIX.len() / 3 * 3];
    base64::engine::general_purpose::STANDARD
        .encode(prefix)
        .into_bytes()
}

fn kubeconfig(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{url}\"}}\n\
         users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\n\
         current-context: fake\n"
    );
    std::fs::write(&path, text).expect("kubeconfig written");
    path
}

struct Server {
    child: Child,
    metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &Path, kubeconfig: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-preflight"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let metrics = line
        .split("metrics: ")
        .nth(1)
        .and_then(|rest| rest.trim().strip_suffix(')'))
        .expect("metrics address")
        .to_string();
    Server { child, metrics }
}

/// The floor: this binary as a bare kube-runtime metadata watcher on Secrets.
struct Bare {
    child: Child,
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bare(kubeconfig: &Path) -> Bare {
    let mut child = Command::new(std::env::current_exe().expect("the bench's own path"))
        .env(BARE_WATCHER, "1")
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the bare watcher starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the bare watcher's synced line");
    assert_eq!(line.trim(), "synced", "the bare watcher printed {line:?}");
    Bare { child }
}

const BARE_WATCHER: &str = "LIVE_VIEW_BARE_WATCHER";

/// A metadata watcher on every Secret, as kube-runtime gives it: counts the events, keeps
/// nothing, says `synced` once the first list is done.
fn bare_watcher() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Secret;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    use std::io::Write;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .expect("a client from KUBECONFIG");
        // Metadata only, as the view reads Secrets.
        let secrets = kube::Api::<kube::core::PartialObjectMeta<Secret>>::all(client);
        let mut stream =
            std::pin::pin!(watcher::watcher(secrets, watcher::Config::default()).default_backoff());
        let mut events: u64 = 0;
        while let Some(event) = stream.next().await {
            if let Ok(event) = event {
                events += 1;
                if matches!(event, Event::InitDone) {
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "synced");
                    let _ = out.flush();
                }
            }
        }
        std::hint::black_box(events);
    });
}

fn get(url: &str) -> Option<String> {
    let url = url.strip_prefix("http://")?;
    let (host, path) = url.split_once('/')?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    use std::io::Write;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// The value of a gauge with one label, from the metrics text.
fn gauge(metrics: &str, name: &str, kind: &str) -> Option<i64> {
    let prefix = format!("{name}{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The pause between Secret changes: 10 ms (100/s), or `LIVE_VIEW_CHANGE_INTERVAL_US`.
fn change_interval() -> Duration {
    std::env::var("LIVE_VIEW_CHANGE_INTERVAL_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(10), Duration::from_micros)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

fn secrets_in_view(server: &Server) -> Option<i64> {
    gauge(
        &get(&server.metrics)?,
        "virt_preflight_cache_objects",
        "Secret",
    )
}

fn synced(server: &Server) -> bool {
    get(&server.metrics).is_some_and(|m| {
        ["Node", "Secret", "ConfigMap", "PersistentVolumeClaim"]
            .iter()
            .all(|kind| gauge(&m, "virt_preflight_cache_synced", kind) == Some(1))
    })
}

/// Seconds of CPU (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// How often `needle` occurs in the process's writable memory (heap, stacks, anonymous maps).
fn occurrences_in_memory(pid: u32, needle: &[u8]) -> Option<usize> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut memory = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut count = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let mut region = vec![0; (end - start) as usize];
        if memory.seek(SeekFrom::Start(start)).is_err() || memory.read_exact(&mut region).is_err() {
            continue;
        }
        count += region
            .windows(needle.len())
            .filter(|window| *window == needle)
            .count();
    }
    Some(count)
}

fn run(secrets: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = runtime.block_on(FakeApi::start(
        vec![
            ("/api/v1/nodes", (0..NODES).map(node).collect()),
            (
                "/api/v1/secrets",
                (0..secrets).map(|i| secret(i, 0)).collect(),
            ),
            (
                "/api/v1/configmaps",
                (0..CONFIGMAPS).map(configmap).collect(),
            ),
            (
                "/api/v1/persistentvolumeclaims",
                (0..PVCS).map(pvc).collect(),
            ),
        ],
        &[],
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let names = vec!["localhost".to_string()];
    let generated = virt_preflight::certs::generate(&names).expect("certificate");
    virt_preflight::certs::write(&generated, dir.path()).expect("certificate written");
    let kubeconfig = kubeconfig(dir.path(), &fake.url);

    let started = Instant::now();
    let server = start_server(dir.path(), &kubeconfig);
    let pid = server.child.id();
    wait_for("view synced", Duration::from_secs(300), || synced(&server));
    let ready = started.elapsed();
    let bare = start_bare(&kubeconfig);
    let bare_pid = bare.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");

    // Idle CPU over the span the changes take, to subtract.
    let interval = change_interval();
    let span = interval * CHANGES as u32 + Duration::from_millis(1000);
    let cpu = || (cpu_seconds(pid), cpu_seconds(bare_pid));
    let idle_before = cpu();
    std::thread::sleep(span);
    let idle_after = cpu();
    let before = cpu();
    for change in 0..CHANGES {
        let i = change * (secrets / CHANGES).max(1) % secrets;
        fake.send("/api/v1/secrets", "MODIFIED", secret(i, 1 + change));
        std::thread::sleep(interval);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let after = cpu();
    let per_change = |busy: f64, idle: f64| (busy - idle).max(0.0) / CHANGES as f64 * 1e6;
    let (busy, idle) = (after.0 - before.0, idle_after.0 - idle_before.0);
    let per_change_us = per_change(busy, idle);
    let bare_us = per_change(after.1 - before.1, idle_after.1 - idle_before.1);

    // Freshness: one new Secret at a time, from the watch event sent until the view counts it.
    let mut delays = Vec::new();
    for new in 0..FRESHNESS_SAMPLES {
        let before = secrets_in_view(&server).expect("metrics");
        // The fake's own bookkeeping (a scan of its 100,000 Secrets) is done before the event
        // goes out: the clock starts when it is on its way.
        fake.send("/api/v1/secrets", "ADDED", secret(secrets + new, 0));
        let sent = Instant::now();
        wait_for("a new Secret in the view", Duration::from_secs(10), || {
            secrets_in_view(&server) == Some(before + 1)
        });
        delays.push(sent.elapsed());
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    let slowest = delays[delays.len() - 1];

    let copies = occurrences_in_memory(pid, &secret_marker());
    let bare_copies = occurrences_in_memory(bare_pid, &secret_marker());
    let shown = |copies: Option<usize>| {
        copies.map_or_else(|| "not readable".to_string(), |c| c.to_string())
    };
    println!(
        "{secrets:>7} Secrets, {NODES} Nodes, {CONFIGMAPS} ConfigMaps, {PVCS} PVCs: ready in {:.2} s; RSS {:.1} MiB (peak {:.1} MiB); \
         CPU per Secret change {per_change_us:.0} µs (busy {busy:.2} s, idle {idle:.2} s over {:.1} s); \
         a new Secret in the view after {:.1} ms (median of {FRESHNESS_SAMPLES}; slowest {:.1} ms); \
         Secret values in the server's memory: {}; \
         against the bare metadata watcher: CPU per change {bare_us:.0} µs, ratio {:.2}x; Secret values {}",
        ready.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        span.as_secs_f64(),
        median.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3,
        shown(copies),
        per_change_us / bare_us.max(f64::MIN_POSITIVE),
        shown(bare_copies),
    );
    drop(bare);
    drop(server);
    drop(fake);
    runtime.shutdown_background();
}

fn main() {
    if std::env::var_os(BARE_WATCHER).is_some() {
        return bare_watcher();
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks a harness for its benchmarks
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes: Vec<usize> = match std::env::var("LIVE_VIEW_SECRETS") {
        Ok(n) => vec![n.parse().expect("LIVE_VIEW_SECRETS is a number")],
        Err(_) => vec![1_000, 20_000, 100_000],
    };
    for secrets in sizes {
        run(secrets);
    }
}
