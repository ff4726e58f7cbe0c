//! Policy reports on the real API server: deploy/ (`serve --watch` as its ServiceAccount)
//! writes a `wgpolicyk8s.io/v1alpha2` PolicyReport per namespace, and a `watch` started where
//! `openreports.io/v1alpha1` is installed too writes Reports instead. The CRDs are
//! `../shared/policy-reports`, found through `VIRT_PREFLIGHT_POLICY_REPORTS_DIR`.

mod support;

use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::apiserver::{ApiServer, eventually};
use support::deployment::{Deployment, Process};
use support::scrape;
use support::vms;

const CRDS_VAR: &str = "VIRT_PREFLIGHT_POLICY_REPORTS_DIR";
/// How long a change may take to show in a report (the test's debounce is 1 s).
const WITHIN: Duration = Duration::from_secs(20);

fn crds(file: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os(CRDS_VAR) else {
        eprintln!(
            "skipped: {CRDS_VAR} is not set (it names the directory holding the policy report \
             CRDs, e.g. ../shared/policy-reports; .ci/run sets it)"
        );
        return None;
    };
    let path = PathBuf::from(dir).join(file);
    assert!(path.is_file(), "{CRDS_VAR} holds no {file}");
    Some(path)
}

fn install(server: &ApiServer, file: &str, crd: &str) -> Option<()> {
    server.install_crd_file(&crds(file)?, crd);
    Some(())
}

/// deploy/, started once the PolicyReport CRD is installed (the process asks at start which
/// report API is served, and again only while none is).
fn deployment() -> Option<&'static Deployment> {
    static CRD: Once = Once::new();
    let server = ApiServer::shared()?;
    crds("wgpolicyk8s-crds.yaml")?;
    CRD.call_once(|| {
        install(
            server,
            "wgpolicyk8s-crds.yaml",
            "policyreports.wgpolicyk8s.io",
        );
    });
    let deployment = Deployment::shared()?;
    // Its choice made (PolicyReports) before any test installs openreports.io's CRD.
    eventually("the deployment writing PolicyReports", WITHIN, || {
        let logs = deployment.logs();
        (logs.contains("writing policy reports") && logs.contains("wgpolicyk8s.io/v1alpha2"))
            .then_some(())
    });
    Some(deployment)
}

/// The report `virt-preflight` of `namespace` as `resource`, if there is one.
fn report(server: &ApiServer, resource: &str, namespace: &str) -> Option<Value> {
    let got = server
        .kubectl(&[
            "-n",
            namespace,
            "get",
            resource,
            "virt-preflight",
            "-o",
            "json",
        ])
        .result()
        .ok()?;
    serde_json::from_str(&got).ok()
}

/// The result of `rule` for the VM `name` in a report.
fn result<'a>(report: &'a Value, rule: &str, name: &str) -> Option<&'a Value> {
    report["results"].as_array()?.iter().find(|result| {
        result["rule"] == rule
            && result["policy"] == "virt-preflight"
            && result["resources"][0]["name"] == name
    })
}

fn would_not_start(deployment: &Deployment, rule: &str) -> f64 {
    scrape::sum_of(
        &deployment.metrics(),
        "virt_preflight_vms_would_not_start",
        &[("rule", rule)],
    )
}

#[test]
fn a_running_vm_whose_secret_is_deleted_fails_its_report_and_passes_once_it_is_back() {
    let Some(deployment) = deployment() else {
        return;
    };
    let server = deployment.server;
    let ns = "reports";
    server.create_namespace(ns, &[]);
    let secret = vms::cloud_init_secret(ns, "userdata");
    let vm = vms::with_cloud_init_secret(vms::vm(ns, "db"), "userdata");
    server.apply_list(&[secret.clone(), vm, vms::vm(ns, "clean")]);
    let uid = server
        .kubectl(&[
            "-n",
            ns,
            "get",
            "vm",
            "db",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .ok();

    // Judged and found clean: nothing to report yet.
    std::thread::sleep(Duration::from_secs(3));
    assert!(report(server, "policyreports.wgpolicyk8s.io", ns).is_none());

    server
        .kubectl(&["-n", ns, "delete", "secret", "userdata"])
        .ok();
    let deleted = Instant::now();
    let failing = eventually("a failing PolicyReport result", WITHIN, || {
        let report = report(server, "policyreports.wgpolicyk8s.io", ns)?;
        (result(&report, "secret-not-found", "db")?["result"] == "fail").then_some(report)
    });
    eprintln!(
        "the failing result appeared {:?} after the Secret was deleted",
        deleted.elapsed()
    );
    let failed = result(&failing, "secret-not-found", "db").expect("the result");
    assert_eq!(failed["severity"], "high");
    assert_eq!(failed["resources"][0]["uid"], uid.as_str());
    assert_eq!(failed["resources"][0]["kind"], "VirtualMachine");
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"userdata\"")),
        "{failed}"
    );
    assert_eq!(failing["summary"]["fail"], 1, "{failing}");
    assert!(
        result(&failing, "secret-not-found", "clean").is_none(),
        "a clean VM gets no result"
    );
    assert_eq!(
        failing["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "virt-preflight"
    );
    // At least this VM (the walkthrough's, running at once, may count too).
    assert!(would_not_start(deployment, "secret-not-found") >= 1.0);

    server.apply_list(&[secret]);
    let passing = eventually("the result back to pass", WITHIN, || {
        let report = report(server, "policyreports.wgpolicyk8s.io", ns)?;
        (result(&report, "secret-not-found", "db")?["result"] == "pass").then_some(report)
    });
    assert_eq!(passing["summary"]["fail"], 0, "{passing}");
    assert_eq!(passing["summary"]["pass"], 1, "{passing}");

    // No VM left: no report left.
    server
        .kubectl(&["-n", ns, "delete", "vm", "db", "clean"])
        .ok();
    eventually("the report deleted with the last VM", WITHIN, || {
        report(server, "policyreports.wgpolicyk8s.io", ns)
            .is_none()
            .then_some(())
    });
    let logs = deployment.logs();
    assert!(
        logs.contains("writing policy reports") && logs.contains("wgpolicyk8s.io/v1alpha2"),
        "{logs}"
    );
}

#[test]
fn where_openreports_is_installed_reports_are_written_there() {
    let Some(deployment) = deployment() else {
        return;
    };
    let server = deployment.server;
    install(server, "openreports-crds.yaml", "reports.openreports.io");
    // A second watcher process, started where both APIs are served (deploy/'s chose at its
    // start, when only PolicyReports were).
    let kubeconfig = server.kubeconfig.as_os_str().to_os_string();
    let args = [
        "watch".into(),
        "--kubeconfig".into(),
        kubeconfig,
        "--no-leader-election".into(),
        "--report-debounce".into(),
        "1s".into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
    ];
    let watch = Process::start(server, "watch", &args, &[]).expect("watch starts");
    let ns = "openreports";
    server.create_namespace(ns, &[]);
    // Halted: what the cluster lacks warns (it cannot get stuck until someone starts it).
    let vm = vms::halted(vms::with_config_map(vms::vm(ns, "stopped"), "settings"));
    server.apply_list(&[vm]);
    let report = eventually("a Report with a warning", WITHIN, || {
        let report = report(server, "reports.openreports.io", ns)?;
        (result(&report, "configmap-not-found", "stopped")?["result"] == "warn").then_some(report)
    });
    assert_eq!(report["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(report["source"], "virt-preflight");
    assert_eq!(report["summary"]["warn"], 1, "{report}");
    let logs = watch.logs();
    assert!(logs.contains("openreports.io/v1alpha1 Report"), "{logs}");
}

/// An operator's session before draining a node, run for real and shown in README's
/// walkthrough (`VIRT_PREFLIGHT_BLESS=1` rewrites it there).
struct Transcript {
    server: &'static ApiServer,
    text: String,
}

impl Transcript {
    /// `kubectl ARGS` as cluster-admin, shown without the kubeconfig.
    fn kubectl(&mut self, args: &[&str]) -> String {
        let ran = self.server.kubectl(args);
        assert!(ran.success, "kubectl {}: {}", args.join(" "), ran.stderr);
        self.show(&format!("kubectl {}", quoted(args)), &ran.stdout, 0);
        ran.stdout
    }

    /// `kubectl virt-preflight ARGS`: the binary, on the test server's kubeconfig.
    fn plugin(&mut self, args: &[&str]) -> (i32, String) {
        let kubeconfig = self.server.kubeconfig.to_string_lossy().into_owned();
        let output = support::binary::command()
            .args(args)
            .args(["--kubeconfig", &kubeconfig])
            .output()
            .expect("virt-preflight runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let code = output.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.show(
            &format!("kubectl virt-preflight {}", quoted(args)),
            &stdout,
            code,
        );
        (code, stdout)
    }

    fn show(&mut self, command: &str, output: &str, code: i32) {
        self.text.push_str(&format!("$ {command}\n{output}"));
        if !output.is_empty() && !output.ends_with('\n') {
            self.text.push('\n');
        }
        if code != 0 {
            self.text.push_str(&format!("(exit {code})\n"));
        }
        self.text.push('\n');
    }

    /// The report of `namespace`: its summary, then its results.
    fn reports(&mut self, namespace: &str) {
        self.kubectl(&["-n", namespace, "get", "policyreports", "-o", SUMMARY]);
        let one = [
            "-n",
            namespace,
            "get",
            "policyreport",
            "virt-preflight",
            "-o",
            RESULTS,
        ];
        self.kubectl(&one);
    }

    fn say(&mut self, comment: &str) {
        self.text.push_str(&format!("# {comment}\n"));
    }
}

/// `args` as a shell line: an argument a shell would split or expand is single-quoted.
fn quoted(args: &[&str]) -> String {
    args.iter()
        .map(|arg| {
            if arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
            {
                arg.to_string()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const SUMMARY: &str =
    "custom-columns=NAME:.metadata.name,PASS:.summary.pass,FAIL:.summary.fail,WARN:.summary.warn";
const RESULTS: &str = r#"jsonpath={range .results[*]}{.result}{"  "}{.rule}{"  "}{.resources[0].name}{": "}{.message}{"\n"}{end}"#;

fn wait_for_summary(server: &ApiServer, ns: &str, pass: i64, fail: i64) {
    eventually(
        &format!("{ns}'s report at pass={pass} fail={fail}"),
        WITHIN,
        || {
            let report = report(server, "policyreports.wgpolicyk8s.io", ns)?;
            (report["summary"]["pass"] == pass && report["summary"]["fail"] == fail).then_some(())
        },
    );
}

#[test]
fn the_readme_maintenance_walkthrough_is_what_an_operator_sees() {
    let Some(deployment) = deployment() else {
        return;
    };
    let server = deployment.server;
    let ns = "prod";
    server.create_namespace(ns, &[]);
    // worker-1 (deploy's test node, gpu=t4) and worker-2, with no gpu label.
    let mut worker_2 = support::review::load_yaml(
        &support::apiserver::manifest_dir().join("tests/fixtures/apiserver/node.yaml"),
    );
    worker_2["metadata"]["name"] = json!("worker-2");
    worker_2["metadata"]["labels"]["kubernetes.io/hostname"] = json!("worker-2");
    worker_2["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
        .remove("gpu");
    let mut gpu_job = vms::vm(ns, "gpu-job");
    gpu_job["spec"]["template"]["spec"]["nodeSelector"] = json!({"gpu": "t4"});
    // Running, as virt-handler would write it (the test server's VMI has no status
    // subresource).
    let vmi = |name: &str, node: &str| {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": ns}, "spec": {"domain": {"devices": {}}},
            "status": {"phase": "Running", "nodeName": node}})
    };
    server.apply_list(&[
        worker_2,
        vms::cloud_init_secret(ns, "userdata"),
        vms::with_cloud_init_secret(vms::vm(ns, "db"), "userdata"),
        gpu_job,
        vms::vm(ns, "web"),
        vmi("db", "worker-1"),
        vmi("gpu-job", "worker-1"),
        vmi("web", "worker-2"),
    ]);

    let mut session = Transcript {
        server,
        text: String::new(),
    };
    session.say("a clean-up job deleted a Secret that a running VM boots with");
    session.kubectl(&["-n", ns, "delete", "secret", "userdata"]);
    wait_for_summary(server, ns, 0, 1);
    session.say("the next morning, before draining worker-1: what do the reports say?");
    session.reports(ns);
    session.say("what would not come back if worker-1 were drained now?");
    let (code, _) = session.plugin(&["audit", "-n", ns, "--drain", "worker-1"]);
    assert_eq!(code, 1);
    session.say(
        "put the Secret back, and give worker-2 the GPU label it has (its card was installed)",
    );
    let secret = vms::cloud_init_secret(ns, "userdata").to_string();
    let applied = server.kubectl_with_input(&["apply", "-f", "-"], Some(&secret));
    assert!(applied.success, "{}", applied.stderr);
    session.show("kubectl apply -f userdata-secret.yaml", &applied.stdout, 0);
    session.kubectl(&["label", "node", "worker-2", "gpu=t4"]);
    let (code, _) = session.plugin(&["audit", "-n", ns, "--drain", "worker-1"]);
    assert_eq!(code, 0);
    wait_for_summary(server, ns, 1, 0);
    session.reports(ns);
    session.say("every VM on worker-1 comes back elsewhere: drain it");

    let block = format!(
        "```console\n{}```\n",
        session.text.trim_end_matches('\n').to_string() + "\n"
    );
    readme_block("walkthrough", &block);
}

/// Compares README's text between `<!-- NAME:start -->` and `<!-- NAME:end -->` with `text`,
/// and rewrites it there where `VIRT_PREFLIGHT_BLESS=1`.
fn readme_block(name: &str, text: &str) {
    let path = support::apiserver::manifest_dir().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (start, end) = (
        format!("<!-- {name}:start -->\n"),
        format!("<!-- {name}:end -->"),
    );
    let from = readme.find(&start).expect("the start marker") + start.len();
    let to = readme[from..].find(&end).expect("the end marker") + from;
    if readme[from..to] == *text {
        return;
    }
    if std::env::var_os("VIRT_PREFLIGHT_BLESS").is_some_and(|v| v == "1") {
        let updated = format!("{}{text}{}", &readme[..from], &readme[to..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    panic!(
        "README's {name} block is not what this run shows; rerun with VIRT_PREFLIGHT_BLESS=1 \
         to accept it:\n{text}"
    );
}
