//! The policy-report writer under a burst (issue 26, "Performance": at most one write per
//! namespace per debounce interval under a burst of 1,000 changes), on the test API server
//! with the PolicyReport CRD: `virt-preflight watch --report-debounce 2s` follows 16
//! namespaces of 5 VMs, each VM naming the Secret `userdata` of its namespace, while the bench
//! deletes and recreates those Secrets 1,000 times in about 10 s: each change flips the
//! namespace's results between fail and pass. A watch on PolicyReports
//! timestamps every write. It reports the writes per namespace, the shortest time between two
//! writes of one namespace (the bound: the debounce), and that every report ends as the
//! cluster does.
//!
//! Run: `VIRT_PREFLIGHT_APISERVER_DIR=../shared/kube-apiserver
//! VIRT_PREFLIGHT_POLICY_REPORTS_DIR=../shared/policy-reports cargo bench --bench
//! policy_reports`. Without the variables it prints why it skips.

// The tests' support, whole, as every test binary includes it.
#[path = "../tests/support/mod.rs"]
mod support;
use support::{apiserver, deployment, vms};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use deployment::Process;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

/// 1,000 changes round robin: half the namespaces end with their Secret deleted.
const NAMESPACES: usize = 16;
const VMS_PER_NAMESPACE: usize = 5;
const CHANGES: usize = 1_000;
const DEBOUNCE: Duration = Duration::from_secs(2);
/// The burst's pace: 1,000 changes in about 10 s, five debounce intervals.
const PACE: Duration = Duration::from_millis(10);

fn namespace(index: usize) -> String {
    format!("reports-bench-{index:02}")
}

fn policy_reports() -> ApiResource {
    ApiResource {
        group: "wgpolicyk8s.io".into(),
        version: "v1alpha2".into(),
        api_version: "wgpolicyk8s.io/v1alpha2".into(),
        kind: "PolicyReport".into(),
        plural: "policyreports".into(),
    }
}

fn fail_count(report: &DynamicObject) -> i64 {
    report.data["summary"]["fail"].as_i64().unwrap_or(-1)
}

async fn run(server: &'static ApiServer) -> Result<(), String> {
    let client = server.client().await;
    let secret = |ns: &str| -> Secret {
        serde_json::from_value(vms::cloud_init_secret(ns, "userdata")).expect("a Secret")
    };
    let mut objects = Vec::new();
    for n in 0..NAMESPACES {
        let ns = namespace(n);
        server.create_namespace(&ns, &[]);
        objects.push(vms::cloud_init_secret(&ns, "userdata"));
        for v in 0..VMS_PER_NAMESPACE {
            objects.push(vms::with_cloud_init_secret(
                vms::vm(&ns, &format!("vm-{v}")),
                "userdata",
            ));
        }
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    server
        .kubectl_with_input(&["apply", "-f", "-"], Some(&list.to_string()))
        .result()?;

    // Every write of a report, timestamped as it arrives.
    let writes: Arc<Mutex<Vec<(String, Instant, i64)>>> = Arc::default();
    let reports: Api<DynamicObject> = Api::all_with(client.clone(), &policy_reports());
    let recorded = writes.clone();
    let recorder = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(reports, watcher::Config::default()));
        while let Some(event) = stream.next().await {
            // Writes only: a relist of this watch (InitApply) is no write.
            if let Ok(Event::Apply(report) | Event::Delete(report)) = event {
                let ns = report.metadata.namespace.clone().unwrap_or_default();
                let fails = fail_count(&report);
                recorded
                    .lock()
                    .expect("writes")
                    .push((ns, Instant::now(), fails));
            }
        }
    });

    let debounce = format!("{}s", DEBOUNCE.as_secs());
    let args = [
        "watch".into(),
        "--kubeconfig".into(),
        server.kubeconfig.as_os_str().to_os_string(),
        "--no-leader-election".into(),
        "--report-debounce".into(),
        debounce.into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
    ];
    let watch = Process::start(server, "watch", &args, &[])?;
    // Settled: all judged clean, nothing written (no VM has had a result yet).
    tokio::time::sleep(DEBOUNCE * 3).await;
    writes.lock().expect("writes").clear();

    // The burst: each change deletes or recreates one namespace's Secret, round robin.
    let started = Instant::now();
    let mut present = [true; NAMESPACES];
    for change in 0..CHANGES {
        let n = change % NAMESPACES;
        let ns = namespace(n);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        if present[n] {
            secrets
                .delete("userdata", &DeleteParams::default())
                .await
                .map_err(|e| format!("delete {ns}/userdata: {e}"))?;
        } else {
            secrets
                .create(&PostParams::default(), &secret(&ns))
                .await
                .map_err(|e| format!("create {ns}/userdata: {e}"))?;
        }
        present[n] = !present[n];
        tokio::time::sleep(PACE).await;
    }
    let burst = started.elapsed();
    // The last changes settle, and are written.
    tokio::time::sleep(DEBOUNCE * 4).await;
    recorder.abort();

    let writes = writes.lock().expect("writes").clone();
    let mut by_namespace: BTreeMap<String, Vec<(Instant, i64)>> = BTreeMap::new();
    for (ns, at, fails) in writes {
        by_namespace.entry(ns).or_default().push((at, fails));
    }
    let mut shortest = Duration::MAX;
    let mut most = 0;
    let mut wrong_end = Vec::new();
    for (n, present) in present.iter().enumerate() {
        let ns = namespace(n);
        let seen = by_namespace.get(&ns).cloned().unwrap_or_default();
        most = most.max(seen.len());
        for pair in seen.windows(2) {
            shortest = shortest.min(pair[1].0.duration_since(pair[0].0));
        }
        // Ends as the cluster is: every VM fails where the Secret is absent; where it is
        // present, no failure (or no report, where no judgement ever found it absent).
        let expected = if *present {
            0
        } else {
            VMS_PER_NAMESPACE as i64
        };
        let last = seen.last().map(|(_, fails)| *fails);
        if last.unwrap_or(0) != expected {
            wrong_end.push(format!(
                "{ns}: last write {:?}, expected fail={expected}",
                seen.last().map(|s| s.1)
            ));
        }
    }
    let total: usize = by_namespace.values().map(Vec::len).sum();
    let window = burst + DEBOUNCE * 4;
    let bound = (window.as_secs_f64() / DEBOUNCE.as_secs_f64()).ceil() as usize + 1;
    println!(
        "policy reports: {CHANGES} changes in {:.2} s over {NAMESPACES} namespaces ({} VMs), debounce {} s",
        burst.as_secs_f64(),
        NAMESPACES * VMS_PER_NAMESPACE,
        DEBOUNCE.as_secs()
    );
    println!(
        "  writes: {total} in all, at most {most} per namespace in {:.1} s (bound: one per debounce, {bound}); shortest time between two writes of one namespace: {}",
        window.as_secs_f64(),
        if shortest == Duration::MAX {
            "n/a (one write each)".to_string()
        } else {
            format!("{:.2} s", shortest.as_secs_f64())
        }
    );
    let logs = watch.logs();
    if !wrong_end.is_empty() {
        return Err(format!(
            "reports do not end as the cluster does: {wrong_end:?}\n{logs}"
        ));
    }
    // A write is timestamped when its watch event arrives: allow the delivery's jitter.
    if shortest < DEBOUNCE.mul_f64(0.9) || most > bound {
        return Err(format!(
            "more than one write per namespace per debounce interval\n{logs}"
        ));
    }
    println!(
        "  ok: at most one write per namespace per debounce interval, and every report ends as the cluster does"
    );
    Ok(())
}

fn main() {
    let Some(server) = ApiServer::shared() else {
        return;
    };
    let Some(dir) = std::env::var_os("VIRT_PREFLIGHT_POLICY_REPORTS_DIR") else {
        eprintln!(
            "skipped: VIRT_PREFLIGHT_POLICY_REPORTS_DIR is not set (the directory of the policy report CRDs, e.g. ../shared/policy-reports)"
        );
        return;
    };
    let crds = std::path::PathBuf::from(dir).join("wgpolicyk8s-crds.yaml");
    server.install_crd_file(&crds, "policyreports.wgpolicyk8s.io");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(reason) = runtime.block_on(run(server)) {
        eprintln!("error: {reason}");
        std::process::exit(1);
    }
}
