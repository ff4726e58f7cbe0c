//! Webhook load test on loopback: a real TLS client with keep-alive sends a typical VM's
//! AdmissionReview to `virt-preflight serve` and, in the same run, to a bare axum + rustls
//! server that only answers "allowed". Prints requests/s and p50/p99 at a fixed rate and at
//! saturation, for the webhook without a cluster view and with a 5,000-node snapshot.
//!
//! Run: `cargo bench --bench webhook_load` (about two minutes; `WEBHOOK_LOAD_ONLY=echo,webhook`
//! runs the echo server and the webhook without a view, leaving out `nodes`;
//! `WEBHOOK_LOAD_ROUNDS=N` sets the saturation rounds, 5 by default;
//! `WEBHOOK_LOAD_ECHO_WORK_US=N` adds an echo server that spins N µs per request, to show what
//! that much work per request costs in throughput on the machine;
//! `WEBHOOK_LOAD_ECHO_PIPELINE=parse|review` adds an echo server that runs the webhook's reading
//! of the review (and its rules and response) in-process: the webhook's code under load without
//! its server;
//! `WEBHOOK_LOAD_BASELINE=path/to/virt-preflight` adds another build of the webhook, say of
//! main, to the same rounds, for a before/after comparison). Each server is its own
//! process (this file re-runs itself as the echo server), so client and server do not share
//! a runtime; on a 2-core machine they do share the cores, the same way for every server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use virt_preflight::admission;
use virt_preflight::policy::Policy;

const SERVER_NAME: &str = "virt-preflight.virt-preflight.svc";
const RATE: u64 = 1_000;
const FIXED_SECONDS: u64 = 10;
const SATURATION_SECONDS: u64 = 5;
/// Saturation rounds per server (`WEBHOOK_LOAD_ROUNDS`); the median is reported.
const ROUNDS: usize = 5;
const CONNECTIONS: usize = 16;

fn typical_vm() -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "fedora-web-1", "namespace": "ns-7", "labels": {"app": "web"},
                     "annotations": {"description": "a typical VM"}},
        "spec": {
            "runStrategy": "Always",
            "dataVolumeTemplates": [{"metadata": {"name": "fedora-web-1-root"}, "spec": {
                "storage": {"resources": {"requests": {"storage": "30Gi"}}, "storageClassName": "standard"},
                "source": {"registry": {"url": "docker://quay.io/containerdisks/fedora:41"}}}}],
            "template": {
                "metadata": {"labels": {"kubevirt.io/domain": "fedora-web-1"}},
                "spec": {
                    "nodeSelector": {"topology.kubernetes.io/zone": "b"},
                    "domain": {
                        "cpu": {"cores": 2, "sockets": 1, "threads": 1},
                        "memory": {"guest": "4Gi"},
                        "resources": {"requests": {"memory": "4Gi", "cpu": "1"}, "limits": {"memory": "5Gi"}},
                        "devices": {
                            "disks": [
                                {"name": "root", "disk": {"bus": "virtio"}, "bootOrder": 1},
                                {"name": "cloudinit", "disk": {"bus": "virtio"}}
                            ],
                            "interfaces": [{"name": "default", "masquerade": {}}]
                        }
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": [
                        {"name": "root", "dataVolume": {"name": "fedora-web-1-root"}},
                        {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: fedora\nchpasswd: {expire: false}\n"}}
                    ]
                }
            }
        }
    })
}

fn review_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
            "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
            "requestKind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
            "requestResource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
            "name": "fedora-web-1", "namespace": "ns-7", "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": typical_vm(), "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .expect("serialises")
}

/// A 5,000-node cluster (plus what the typical VM names) as `kubectl get -o json` prints it.
fn write_snapshot(path: &Path) {
    let mut items: Vec<Value> = (0..5_000)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("worker-{i}"), "labels": {
                    "kubernetes.io/hostname": format!("worker-{i}"),
                    "topology.kubernetes.io/zone": (["a", "b", "c"][i % 3]),
                    "kubevirt.io/schedulable": "true"}},
                "status": {"allocatable": {"cpu": "32", "memory": "128Gi"},
                    "conditions": [{"type": "Ready", "status": "True"}]}})
        })
        .collect();
    for i in 0..20_000 {
        items.push(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("secret-{i}"), "namespace": format!("ns-{}", i % 100)}}));
    }
    items.push(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}));
    items.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "unrelated", "namespace": "ns-7"}, "status": {"phase": "Bound"}}));
    items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns-7"}}));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(path, serde_json::to_vec(&list).expect("serialises")).expect("snapshot written");
}

// ---------------------------------------------------------------- echo server (child mode)

/// Busy CPU time the echo server spends per request (`WEBHOOK_LOAD_ECHO_WORK_US`), to show
/// what a given amount of work per request costs in throughput on this machine.
fn echo_work() -> Duration {
    std::env::var("ECHO_WORK_US")
        .ok()
        .and_then(|us| us.parse().ok())
        .map(Duration::from_micros)
        .unwrap_or_default()
}

/// How much of the webhook's own pipeline the echo server runs in-process
/// (`WEBHOOK_LOAD_ECHO_PIPELINE`): whether the webhook's cost under load is its code or its server.
#[derive(Clone, Copy, PartialEq)]
enum Pipeline {
    /// Only the echo's own read of the uid.
    None,
    /// `admission::parse_review`, the webhook's reading of the review into the model.
    Parse,
    /// That, then `admission::review` (no cluster view) and its response.
    Review,
}

impl Pipeline {
    fn parse(text: &str) -> Option<Pipeline> {
        match text {
            "parse" => Some(Pipeline::Parse),
            "review" => Some(Pipeline::Review),
            _ => None,
        }
    }
}

/// The echo's answer for a request whose review reads.
fn echo_response(body: &[u8], pipeline: Pipeline, policy: &Policy) -> axum::response::Response {
    use axum::response::IntoResponse;
    #[derive(serde::Deserialize)]
    struct Review {
        request: Request,
    }
    #[derive(serde::Deserialize)]
    struct Request {
        uid: String,
    }
    let allowed = |uid: &str| {
        axum::Json(
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": true}}),
        )
        .into_response()
    };
    if pipeline == Pipeline::None {
        let uid = serde_json::from_slice::<Review>(body)
            .map(|r| r.request.uid)
            .unwrap_or_default();
        return allowed(&uid);
    }
    let Ok(request) = admission::parse_review(body) else {
        return allowed("");
    };
    if pipeline == Pipeline::Parse {
        return allowed(&request.uid);
    }
    let verdict = admission::review(&request, None, policy);
    axum::Json(verdict.response(&request).into_review()).into_response()
}

fn run_echo_server(cert: &str, key: &str) {
    let work = echo_work();
    let pipeline = std::env::var("ECHO_PIPELINE")
        .ok()
        .and_then(|stage| Pipeline::parse(&stage))
        .unwrap_or(Pipeline::None);
    let policy = std::sync::Arc::new(Policy::default());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/validate",
            axum::routing::post(move |body: Bytes| async move {
                let response = echo_response(&body, pipeline, &policy);
                let spin = Instant::now();
                while spin.elapsed() < work {
                    std::hint::spin_loop();
                }
                response
            }),
        );
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .expect("echo TLS config");
        let handle = axum_server::Handle::new();
        let announce = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = announce.listening().await {
                println!("listening on https://{addr}");
            }
        });
        axum_server::bind_rustls("127.0.0.1:0".parse::<SocketAddr>().expect("addr"), config)
            .handle(handle)
            .serve(app.into_make_service())
            .await
            .expect("echo server");
    });
}

// ---------------------------------------------------------------- driver

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut command: Command) -> Server {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("server prints its address");
    let addr = line
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    Server { child, addr }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client(ca_pem: &[u8], addr: SocketAddr) -> (HttpsClient, String) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("CA added");
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // Resolve the service name to the loopback address the server is on.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONNECTIONS * 2)
        .build(connector);
    // The certificate names the service; connect by IP with that SNI via the URL host and a
    // hosts-style mapping is not available here, so the server's cert also lists 127.0.0.1.
    (
        client,
        format!("https://127.0.0.1:{}/validate", addr.port()),
    )
}

async fn send(client: &HttpsClient, url: &str, body: &Bytes) -> bool {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .expect("request");
    match client.request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

struct Figures {
    requests: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// CPU time a process has used so far, user and system (the kernel's share: syscalls, TCP on
/// loopback, wakeups).
#[derive(Clone, Copy, Default)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl CpuTime {
    fn total(self) -> Duration {
        self.user + self.system
    }

    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// CPU time a process has used so far, from `/proc/PID/stat` (Linux; zero elsewhere). Shows
/// where the cores went: the client and the server share them.
fn cpu_time(pid: u32) -> CpuTime {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return CpuTime::default();
    };
    // Fields after the command name, which ends at the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return CpuTime::default();
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line (the state, field 3, is index 0 here);
    // Linux counts them in USER_HZ, which is 100 on every architecture.
    CpuTime {
        user: Duration::from_millis(ticks(11) * 10),
        system: Duration::from_millis(ticks(12) * 10),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Open-loop fixed rate: request i is sent at start + i/rate whatever the earlier ones are
/// doing, so a stall shows as latency instead of a slower send rate.
async fn fixed_rate(client: &HttpsClient, url: &str, body: &Bytes) -> Figures {
    let total = RATE * FIXED_SECONDS;
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / RATE);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        // Sending never waits for earlier answers (each request is its own task), so a slow
        // server cannot hold requests back; latency counts from the moment of sending.
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = send(&client, &url, &body).await;
            (ok, sent.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for task in tasks {
        let (ok, latency) = task.await.expect("task");
        if !ok {
            errors += 1;
        }
        latencies.push(latency);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Figures {
        requests: total as usize,
        rps: total as f64 / elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        errors,
    }
}

/// Closed loop: CONNECTIONS workers send back to back.
async fn saturation(client: &HttpsClient, url: &str, body: &Bytes) -> Figures {
    let deadline = Instant::now() + Duration::from_secs(SATURATION_SECONDS);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if !send(&client, &url, &body).await {
                    errors += 1;
                }
                latencies.push(sent.elapsed());
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mut l, e) = worker.await.expect("worker");
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Figures {
        requests: latencies.len(),
        rps: latencies.len() as f64 / elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        errors,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Ok(files) = std::env::var("ECHO_SERVER_TLS") {
        let (cert, key) = files.split_once(',').expect("cert,key");
        run_echo_server(cert, key);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks a harness for its benchmarks
    }
    let _ = rustls::crypto::ring::default_provider().install_default();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut names = virt_preflight::certs::service_names("virt-preflight", "virt-preflight");
    names.push("127.0.0.1".to_string());
    let generated = virt_preflight::certs::generate(&names).expect("certificate");
    virt_preflight::certs::write(&generated, dir.path()).expect("certificate written");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, br#"{"apiVersion":"v1","kind":"List","items":[]}"#).expect("write");
    let big = dir.path().join("nodes-5000.json");
    write_snapshot(&big);
    let _ = SERVER_NAME;

    let body = Bytes::from(review_body());
    println!(
        "typical VM review: {} bytes; {CONNECTIONS} keep-alive connections; fixed rate {RATE}/s for {FIXED_SECONDS}s; saturation {SATURATION_SECONDS}s",
        body.len()
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>7}",
        "server / load", "req/s", "p50", "p99", "errors"
    );

    let binary = env!("CARGO_BIN_EXE_virt-preflight");
    let webhook_of = |binary: &Path, snapshot: &Path| {
        let mut command = Command::new(binary);
        command.args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--tls-cert",
        ]);
        command
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--cluster-state")
            .arg(snapshot);
        command.env("RUST_LOG", "error");
        command
    };
    let webhook = |snapshot: &Path| webhook_of(Path::new(binary), snapshot);
    // WEBHOOK_LOAD_BASELINE=path/to/virt-preflight: another build (say, of main) in the same
    // rounds, without a view, for a before/after that the machine's drift does not skew.
    let baseline = std::env::var_os("WEBHOOK_LOAD_BASELINE").map(std::path::PathBuf::from);
    let echo_in = |work_us: u64, pipeline: &str| {
        let mut command = Command::new(std::env::current_exe().expect("self"));
        command.env(
            "ECHO_SERVER_TLS",
            format!("{},{}", cert.display(), key.display()),
        );
        command.env("ECHO_WORK_US", work_us.to_string());
        command.env("ECHO_PIPELINE", pipeline);
        command
    };
    let echo = |work_us: u64| echo_in(work_us, "");
    // WEBHOOK_LOAD_ECHO_PIPELINE=parse|review: an echo that runs that much of the webhook's
    // code in-process, to tell the cost of the code under load from the cost of the server.
    let echo_pipeline = std::env::var("WEBHOOK_LOAD_ECHO_PIPELINE")
        .ok()
        .filter(|stage| Pipeline::parse(stage).is_some());
    let echo_pipeline_label = format!(
        "echo running the webhook's {}",
        echo_pipeline.as_deref().unwrap_or("")
    );
    let echo_work_us: Option<u64> = std::env::var("WEBHOOK_LOAD_ECHO_WORK_US")
        .ok()
        .and_then(|us| us.parse().ok());
    let echo_work_label = format!("echo + {} µs of work", echo_work_us.unwrap_or(0));
    let rounds: usize = std::env::var("WEBHOOK_LOAD_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(ROUNDS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // WEBHOOK_LOAD_ONLY=echo,webhook runs a subset (while working on one of them).
    let only = std::env::var("WEBHOOK_LOAD_ONLY").ok();
    let wanted = |key: &str| {
        only.as_deref()
            .is_none_or(|only| only.split(',').any(|k| k == key))
    };
    // Every server runs from the start; an idle one costs nothing. Saturation runs take turns
    // round by round, so that a change in the machine's speed during the run (it is shared)
    // falls on every server alike, and each round's ratio to the echo compares like with like.
    let mut targets = Vec::new();
    for (key, label, command) in [
        ("echo", "echo (axum+rustls, allow only)", echo(0)),
        (
            "echo-work",
            echo_work_label.as_str(),
            echo(echo_work_us.unwrap_or(0)),
        ),
        (
            "echo-pipeline",
            echo_pipeline_label.as_str(),
            echo_in(0, echo_pipeline.as_deref().unwrap_or("")),
        ),
        ("webhook", "virt-preflight, no cluster", webhook(&empty)),
        ("nodes", "virt-preflight, 5,000-node view", webhook(&big)),
        (
            "baseline",
            "baseline build, no cluster",
            webhook_of(baseline.as_deref().unwrap_or(Path::new(binary)), &empty),
        ),
    ] {
        let absent = match key {
            "echo-work" => echo_work_us.is_none(),
            "echo-pipeline" => echo_pipeline.is_none(),
            "baseline" => baseline.is_none(),
            _ => false,
        };
        if !wanted(key) || absent {
            continue;
        }
        let server = start(command);
        let (client, url) = client(generated.ca_cert_pem.as_bytes(), server.addr);
        targets.push(Target {
            label,
            server,
            client,
            url,
            rounds: Vec::new(),
        });
    }
    for target in &targets {
        let fixed = runtime.block_on(async {
            // Warm up connections and caches.
            for _ in 0..200 {
                send(&target.client, &target.url, &body).await;
            }
            fixed_rate(&target.client, &target.url, &body).await
        });
        print_row(&format!("{} / fixed", target.label), &fixed);
    }
    for _ in 0..rounds {
        for target in &mut targets {
            let pid = target.server.child.id();
            let round = runtime.block_on(async {
                let (server, client) = (cpu_time(pid), cpu_time(std::process::id()));
                let figures = saturation(&target.client, &target.url, &body).await;
                Round {
                    server_cpu: cpu_time(pid).since(server),
                    client_cpu: cpu_time(std::process::id()).since(client).total(),
                    figures,
                }
            });
            target.rounds.push(round);
        }
    }
    println!(
        "saturation: {rounds} rounds of {SATURATION_SECONDS}s each, servers taking turns; the median round of each:"
    );
    for target in &targets {
        let median = target.median();
        print_row(&format!("{} / saturation", target.label), &median.figures);
        let requests = (median.figures.requests as f64).max(1.0);
        let all: Vec<String> = target
            .rounds
            .iter()
            .map(|r| format!("{:.0}", r.figures.rps))
            .collect();
        println!(
            "{:<34} rounds: {} req/s; per request: server CPU {:.1} µs (of which system {:.1} µs; {:.2} cores), client CPU {:.1} µs ({:.2} cores)",
            "",
            all.join(", "),
            median.server_cpu.total().as_secs_f64() * 1e6 / requests,
            median.server_cpu.system.as_secs_f64() * 1e6 / requests,
            median.server_cpu.total().as_secs_f64() / SATURATION_SECONDS as f64,
            median.client_cpu.as_secs_f64() * 1e6 / requests,
            median.client_cpu.as_secs_f64() / SATURATION_SECONDS as f64
        );
    }
    let Some(echo) = targets.first().filter(|_| wanted("echo")) else {
        return;
    };
    for target in &targets[1..] {
        let mut ratios: Vec<f64> = target
            .rounds
            .iter()
            .zip(&echo.rounds)
            .map(|(own, echo)| own.figures.rps / echo.figures.rps * 100.0)
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "{}: {:.0}% of the echo server's saturated throughput (median of {} rounds; {:.0}–{:.0}%)",
            target.label,
            ratios[ratios.len() / 2],
            ratios.len(),
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

struct Target<'a> {
    label: &'a str,
    server: Server,
    client: HttpsClient,
    url: String,
    rounds: Vec<Round>,
}

struct Round {
    figures: Figures,
    server_cpu: CpuTime,
    client_cpu: Duration,
}

impl Target<'_> {
    /// The round with the median throughput.
    fn median(&self) -> &Round {
        let mut sorted: Vec<&Round> = self.rounds.iter().collect();
        sorted.sort_by(|a, b| a.figures.rps.total_cmp(&b.figures.rps));
        sorted[sorted.len() / 2]
    }
}

fn print_row(label: &str, figures: &Figures) {
    println!(
        "{:<34} {:>10.0} {:>10.3?} {:>10.3?} {:>7}",
        label, figures.rps, figures.p50, figures.p99, figures.errors
    );
}
