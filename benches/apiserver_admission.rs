//! Admission latency through a real kube-apiserver (issue 15 and 17, "Performance"): the test
//! API server of `tests/support/apiserver.rs` with virt-preflight installed from deploy/ and
//! registered by URL (`tests/support/deployment.rs`), driven by a kube client that creates VMs
//! one after another with server-side dry run (the webhook is called, nothing is stored).
//!
//! For each case it reports the client's p50/p99/mean/max, the mean webhook call the API server
//! itself recorded (`apiserver_admission_webhook_admission_duration_seconds`, sum/count over
//! the run, our webhook only), virt-preflight's own time per review
//! (`virt_preflight_admission_duration_seconds`) and the API server's own time on GETs of
//! Secrets (`apiserver_request_duration_seconds`: the confirmations). The cases: a VM in a namespace deploy/
//! excludes (the API server's own cost, no webhook: the scale), a VM that is allowed, one
//! denied by a spec rule, and one denied because a Secret it names does not exist (a cluster
//! rule: where the webhook would confirm the absence with the API server before denying).
//!
//! The floor (issue 25): a bare always-allow webhook (axum + rustls, the same certificates,
//! its own 2-thread runtime, answering every review `allowed` without reading the object),
//! registered the same way (by URL, deploy/'s rules, timeout and failurePolicy) for
//! `kube-system` only, which deploy/'s webhook leaves out. The ratios printed: virt-preflight's
//! allowed and denied reviews against it, at p50 and p99 and as the API server timed them.
//!
//! Run: `VIRT_PREFLIGHT_APISERVER_DIR=../shared/kube-apiserver cargo bench --bench
//! apiserver_admission` (`APISERVER_BENCH_REQUESTS=N` per case, 500 by default). Without the
//! variable it prints why it skips.

// The tests' support, whole, as every test binary includes it.
#[path = "../tests/support/mod.rs"]
mod support;
use support::{deployment, scrape, vms};

use std::time::{Duration, Instant};

use deployment::{Deployment, NAMESPACE, WEBHOOK_NAME};
use kube::api::{Api, DynamicObject, PostParams};
use scrape::{Sample, parse_samples, sum_of};
use serde_json::Value;

const DEFAULT_REQUESTS: usize = 500;
const WARMUP: usize = 20;
/// Rounds in which the cases take turns.
const ROUNDS: usize = 5;
const BENCH_NAMESPACE: &str = "admission-bench";

/// One kind of request, and what the webhook must answer to it.
struct Case {
    name: &'static str,
    namespace: &'static str,
    vm: Value,
    /// The rule ID the denial names, or `None` for an allowed VM.
    denied_by: Option<&'static str>,
    /// The webhook the API server calls for this namespace, if any.
    webhook: Option<&'static str>,
}

/// The bare webhook's name, as the API server's metrics name it.
const BARE_WEBHOOK: &str = "bare-allow.virt-preflight.io";
/// Where only the bare webhook is called (deploy/'s leaves kube-system out).
const BARE_NAMESPACE: &str = "kube-system";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "not reviewed (namespace excluded)",
            namespace: NAMESPACE,
            vm: vms::vm(NAMESPACE, "bench"),
            denied_by: None,
            webhook: None,
        },
        Case {
            name: "bare always-allow webhook",
            namespace: BARE_NAMESPACE,
            vm: vms::vm(BARE_NAMESPACE, "bench"),
            denied_by: None,
            webhook: Some(BARE_WEBHOOK),
        },
        Case {
            name: "allowed",
            namespace: BENCH_NAMESPACE,
            vm: vms::vm(BENCH_NAMESPACE, "bench"),
            denied_by: None,
            webhook: Some(WEBHOOK_NAME),
        },
        Case {
            name: "denied, spec rule",
            namespace: BENCH_NAMESPACE,
            vm: vms::with_disk_without_volume(vms::vm(BENCH_NAMESPACE, "bench")),
            denied_by: Some("disk-without-volume"),
            webhook: Some(WEBHOOK_NAME),
        },
        Case {
            name: "denied, missing Secret",
            namespace: BENCH_NAMESPACE,
            vm: vms::with_cloud_init_secret(vms::vm(BENCH_NAMESPACE, "bench"), "absent"),
            denied_by: Some("secret-not-found"),
            webhook: Some(WEBHOOK_NAME),
        },
    ]
}

/// Sums and counts of a histogram, for the difference over a run.
#[derive(Clone, Copy, Default)]
struct Histogram {
    sum: f64,
    count: f64,
}

impl Histogram {
    fn read(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Histogram {
        Histogram {
            sum: sum_of(samples, &format!("{name}_sum"), labels),
            count: sum_of(samples, &format!("{name}_count"), labels),
        }
    }

    fn since(self, before: Histogram) -> Histogram {
        Histogram {
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    fn plus(self, other: Histogram) -> Histogram {
        Histogram {
            sum: self.sum + other.sum,
            count: self.count + other.count,
        }
    }

    fn mean(self) -> String {
        if self.count == 0.0 {
            "-".to_string()
        } else {
            format!("{:.3} ms", self.sum / self.count * 1000.0)
        }
    }
}

/// What one reading of both processes' metrics gives.
#[derive(Clone, Copy)]
struct Readings {
    /// The calls to the webhook, as the API server timed them.
    webhook: Histogram,
    /// virt-preflight's own time per review.
    own: Histogram,
    /// Of which waiting on the API server's answers to its confirmations.
    confirming: Histogram,
    /// The API server's own time on GETs of Secrets: virt-preflight's confirmations (no
    /// controller runs beside this API server, and the bench's client GETs no Secret).
    secret_gets: Histogram,
}

/// The calls to `webhook` the API server recorded, virt-preflight's reviews, and the
/// API server's time on GETs of Secrets.
async fn histograms(
    client: &kube::Client,
    deployment: &Deployment,
    webhook: &str,
) -> Result<Readings, String> {
    let request = hyper::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("the API server's /metrics: {e}"))?;
    let samples = parse_samples(&text);
    let webhook = Histogram::read(
        &samples,
        "apiserver_admission_webhook_admission_duration_seconds",
        &[("name", webhook), ("type", "validating")],
    );
    let secret_gets = Histogram::read(
        &samples,
        "apiserver_request_duration_seconds",
        &[("verb", "GET"), ("resource", "secrets")],
    );
    let ours = deployment.try_metrics()?;
    let own = Histogram::read(&ours, "virt_preflight_admission_duration_seconds", &[]);
    let confirming = Histogram::read(
        &ours,
        "virt_preflight_admission_confirmation_duration_seconds",
        &[],
    );
    Ok(Readings {
        webhook,
        own,
        confirming,
        secret_gets,
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// One dry-run create; checks the answer is the case's.
async fn create(api: &Api<DynamicObject>, case: &Case, vm: &DynamicObject) -> Result<(), String> {
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match (api.create(&params, vm).await, case.denied_by) {
        (Ok(_), None) => Ok(()),
        (Err(err), Some(rule)) if err.to_string().contains(&format!("[{rule}]")) => Ok(()),
        (Ok(_), Some(rule)) => Err(format!("{}: admitted, expected [{rule}]", case.name)),
        (Err(err), _) => Err(format!("{}: {err}", case.name)),
    }
}

/// What one case measured over every round.
#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    webhook: Histogram,
    own: Histogram,
    confirming: Histogram,
    secret_gets: Histogram,
}

async fn run(deployment: &Deployment, requests: usize) -> Result<(), String> {
    deployment.server.create_namespace(BENCH_NAMESPACE, &[]);
    let certs = deployment
        .webhook_ca
        .parent()
        .ok_or("the webhook's certificate directory")?;
    register_bare_webhook(deployment, start_bare_webhook(certs))?;
    let client = deployment.server.client().await;
    let resource =
        virt_preflight::watcher::object::kubevirt_resource("VirtualMachine", "virtualmachines");
    let cases = cases();
    // The API server takes up a new webhook configuration a moment later.
    let bare = cases
        .iter()
        .find(|case| case.webhook == Some(BARE_WEBHOOK))
        .ok_or("the bare case")?;
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), bare.namespace, &resource);
    let vm: DynamicObject = serde_json::from_value(bare.vm.clone()).map_err(|e| e.to_string())?;
    let waited = Instant::now();
    while histograms(&client, deployment, BARE_WEBHOOK)
        .await?
        .webhook
        .count
        == 0.0
    {
        if waited.elapsed() > Duration::from_secs(30) {
            return Err("the API server never called the bare webhook".into());
        }
        create(&api, bare, &vm).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut apis = Vec::new();
    for case in &cases {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), case.namespace, &resource);
        let vm: DynamicObject =
            serde_json::from_value(case.vm.clone()).map_err(|e| e.to_string())?;
        for _ in 0..WARMUP {
            create(&api, case, &vm).await?;
        }
        apis.push((api, vm));
    }
    // The cases take turns in rounds, so that a drift in the machine's load falls on all alike.
    let per_round = requests.div_ceil(ROUNDS);
    let mut measured: Vec<Measured> = cases.iter().map(|_| Measured::default()).collect();
    for _ in 0..ROUNDS {
        for ((case, (api, vm)), measured) in cases.iter().zip(&apis).zip(&mut measured) {
            let webhook = case.webhook.unwrap_or(WEBHOOK_NAME);
            let before = histograms(&client, deployment, webhook).await?;
            for _ in 0..per_round {
                let started = Instant::now();
                create(api, case, vm).await?;
                measured.latencies.push(started.elapsed());
            }
            let after = histograms(&client, deployment, webhook).await?;
            measured.webhook = measured.webhook.plus(after.webhook.since(before.webhook));
            measured.own = measured.own.plus(after.own.since(before.own));
            measured.confirming = measured
                .confirming
                .plus(after.confirming.since(before.confirming));
            measured.secret_gets = measured
                .secret_gets
                .plus(after.secret_gets.since(before.secret_gets));
        }
    }

    let total = per_round * ROUNDS;
    let answered = BARE_CALLS.load(std::sync::atomic::Ordering::Relaxed);
    // Every bare case request, and the warm-up and the wait before, were answered by it.
    if answered < total as u64 {
        return Err(format!(
            "the bare webhook answered {answered} reviews for {total} requests: the API server did not reach it"
        ));
    }
    println!(
        "{total} sequential dry-run creates per case through kube-apiserver 1.32 (one kube client, \
         {ROUNDS} rounds of {per_round} per case in turn, after {WARMUP} warm-up requests each): \
         client-side latency; the webhook call as the API server timed it; virt-preflight's own \
         time per review (means over the same requests)\n"
    );
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>9}   {:>22}   {:>14}   {:>10}   {:>22}",
        "case",
        "p50",
        "p99",
        "mean",
        "max",
        "API server -> webhook",
        "virt-preflight",
        "confirming",
        "its GETs of Secrets"
    );
    let mut summary: Vec<(&str, Duration, Duration, f64)> = Vec::new();
    for (case, mut measured) in cases.iter().zip(measured) {
        let expected_calls = if case.webhook.is_some() {
            total as f64
        } else {
            0.0
        };
        if measured.webhook.count != expected_calls {
            return Err(format!(
                "{}: the API server called the webhook {} times for {total} requests",
                case.name, measured.webhook.count
            ));
        }
        let latencies = &mut measured.latencies;
        latencies.sort();
        let mean = latencies.iter().sum::<Duration>() / total as u32;
        println!(
            "{:<36} {:>9} {:>9} {:>9} {:>9}   {:>22}   {:>14}   {:>10}   {:>22}",
            case.name,
            ms(percentile(latencies, 50)),
            ms(percentile(latencies, 99)),
            ms(mean),
            ms(latencies[total - 1]),
            format!(
                "{} ({} calls)",
                measured.webhook.mean(),
                measured.webhook.count
            ),
            measured.own.mean(),
            measured.confirming.mean(),
            format!(
                "{} ({} GETs)",
                measured.secret_gets.mean(),
                measured.secret_gets.count
            ),
        );
        summary.push((
            case.name,
            percentile(latencies, 50),
            percentile(latencies, 99),
            measured.webhook.sum / measured.webhook.count.max(1.0),
        ));
    }
    let of = |name: &str| summary.iter().find(|(n, ..)| *n == name).copied();
    if let Some((_, bare_p50, bare_p99, bare_call)) = of("bare always-allow webhook") {
        println!(
            "\nagainst the bare always-allow webhook (goal: allowed <= 1.1x, denied <= 1.3x):"
        );
        for (name, p50, p99, call) in &summary {
            if name.starts_with("allowed") || name.starts_with("denied") {
                println!(
                    "{name:<36} p50 {:.2}x   p99 {:.2}x   API server -> webhook {:.2}x",
                    p50.as_secs_f64() / bare_p50.as_secs_f64(),
                    p99.as_secs_f64() / bare_p99.as_secs_f64(),
                    call / bare_call
                );
            }
        }
    }
    Ok(())
}

/// Reviews the bare webhook answered: with failurePolicy Ignore a failed call would still
/// be counted by the API server, and a broken floor look fast.
static BARE_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The bare always-allow webhook on `127.0.0.1:0`, on its own runtime and thread; its port.
fn start_bare_webhook(certs: &std::path::Path) -> u16 {
    use axum::Json;
    use axum::routing::post;

    /// All it reads of a review: the uid its answer must carry.
    #[derive(serde::Deserialize)]
    struct Review {
        request: Request,
    }
    #[derive(serde::Deserialize)]
    struct Request {
        uid: String,
    }

    async fn allow(Json(review): Json<Review>) -> Json<Value> {
        BARE_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Json(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review.request.uid, "allowed": true},
        }))
    }

    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .expect("the serving certificate");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
            let _ = sender.send(listener.local_addr().expect("its address").port());
            let app = axum::Router::new().route("/validate", post(allow));
            axum_server::from_tcp_rustls(listener, config)
                .expect("a TLS listener")
                .serve(app.into_make_service())
                .await
                .expect("the bare webhook serves");
        });
    });
    receiver.recv().expect("the bare webhook's port")
}

/// Registers the bare webhook as deploy/ registers virt-preflight's, for `kube-system` only.
fn register_bare_webhook(deployment: &Deployment, port: u16) -> Result<(), String> {
    let ca = std::fs::read(&deployment.webhook_ca).map_err(|e| e.to_string())?;
    use base64::Engine;
    let configuration = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bare-allow"},
        "webhooks": [{
            "name": BARE_WEBHOOK,
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "sideEffects": "NoneOnDryRun",
            "matchPolicy": "Equivalent",
            "rules": [{"apiGroups": ["kubevirt.io"], "apiVersions": ["v1"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["virtualmachines"],
                       "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": BARE_NAMESPACE}},
            "clientConfig": {
                "url": format!("https://localhost:{port}/validate"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
            },
        }],
    });
    deployment
        .server
        .kubectl_with_input(&["apply", "-f", "-"], Some(&configuration.to_string()))
        .result()
        .map(|_| ())
}

fn main() {
    let Some(deployment) = Deployment::shared() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let requests = std::env::var("APISERVER_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_REQUESTS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(reason) = runtime.block_on(run(deployment, requests)) {
        eprintln!("error: {reason}\n{}", deployment.logs());
        std::process::exit(1);
    }
}
