//! virt-preflight installed on the test API server as a user installs it: `kubectl apply -k
//! deploy/` (Namespace, ServiceAccount, RBAC, webhook configuration...), then the real binary
//! `serve --watch`, authenticated as deploy/'s ServiceAccount (`kubectl create token`), with a
//! serving certificate from `virt-preflight certs` that also names `localhost`, and deploy/'s
//! ValidatingWebhookConfiguration pointed at it by URL, so that deploy/'s rules,
//! namespaceSelector and failurePolicy are what the tests exercise. Nothing runs pods on the
//! test server, so the process runs on the test's machine in place of the Deployment's pods.
//!
//! One deployment per test binary, on the binary's one API server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use super::apiserver::{ApiServer, manifest_dir, poll};
use super::scrape::{self, Sample};
use super::vms;

/// deploy/'s webhook, as the API server's metrics name it.
pub const WEBHOOK_NAME: &str = "virtualmachines.virt-preflight.io";
/// The namespace deploy/ installs into (its ServiceAccount, Lease and policy).
pub const NAMESPACE: &str = "virt-preflight";
/// `--stuck-after` of the deployed process: short, so that a test sees a VM become stuck.
pub const STUCK_AFTER: &str = "3s";
/// `--report-debounce` of the deployed process: short, so that a test sees a report change.
pub const REPORT_DEBOUNCE: &str = "1s";
/// A namespace whose VMs only probe that the API server calls the webhook.
const PROBE_NAMESPACE: &str = "virt-preflight-probe";
const BIN: &str = env!("CARGO_BIN_EXE_virt-preflight");
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The running `virt-preflight serve --watch` and how to reach it.
pub struct Deployment {
    pub server: &'static ApiServer,
    /// The webhook's HTTPS address (the API server calls `https://localhost:PORT/validate`).
    pub addr: SocketAddr,
    /// Plain-HTTP /metrics.
    pub metrics_addr: SocketAddr,
    /// The CA that signed the serving certificate (the webhook's caBundle).
    pub webhook_ca: PathBuf,
    /// A kubeconfig for deploy/'s ServiceAccount.
    pub service_account_kubeconfig: PathBuf,
    /// The process's identity in leader election (`POD_NAME`).
    pub identity: String,
    pub process: Process,
}

impl Deployment {
    /// The deployment of this test binary, installed on the first call; `None` when the API
    /// server is not configured (the reason is printed).
    pub fn shared() -> Option<&'static Deployment> {
        static DEPLOYMENT: OnceLock<Result<Deployment, String>> = OnceLock::new();
        let server = ApiServer::shared()?;
        match DEPLOYMENT.get_or_init(|| Deployment::install(server)) {
            Ok(deployment) => Some(deployment),
            Err(reason) => panic!("virt-preflight could not be installed: {reason}"),
        }
    }

    /// The deployment of this test binary from `deploy/overlays/least-privilege` (no access to
    /// Secrets), installed on the first call; a binary uses this or [`Deployment::shared`].
    pub fn least_privilege() -> Option<&'static Deployment> {
        static DEPLOYMENT: OnceLock<Result<Deployment, String>> = OnceLock::new();
        let server = ApiServer::shared()?;
        match DEPLOYMENT
            .get_or_init(|| Deployment::install_from(server, "deploy/overlays/least-privilege"))
        {
            Ok(deployment) => Some(deployment),
            Err(reason) => panic!("virt-preflight could not be installed: {reason}"),
        }
    }

    /// [`Deployment::shared`], with a new namespace for the calling test.
    pub fn with_namespace(namespace: &str, labels: &[(&str, &str)]) -> Option<&'static Deployment> {
        let deployment = Deployment::shared()?;
        deployment.server.create_namespace(namespace, labels);
        Some(deployment)
    }

    fn install(server: &'static ApiServer) -> Result<Deployment, String> {
        Deployment::install_from(server, "deploy/")
    }

    /// Installs the kustomization `dir` and runs `serve --watch` as its ServiceAccount.
    fn install_from(server: &'static ApiServer, dir: &str) -> Result<Deployment, String> {
        server.kubectl(&["apply", "-k", dir]).result()?;
        let node = manifest_dir().join("tests/fixtures/apiserver/node.yaml");
        server
            .kubectl(&["create", "-f", &node.to_string_lossy()])
            .result()?;

        let certs = server.run_dir.join("webhook-certs");
        let ca_bundle = run_certs(&certs)?;
        let service_account_kubeconfig = server.run_dir.join("virt-preflight.kubeconfig");
        write_service_account_kubeconfig(server, &service_account_kubeconfig)?;

        let identity = format!("virt-preflight-test-{}", std::process::id());
        let config = manifest_dir().join("deploy/base/policy.yaml");
        let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
        let args = [
            "serve".as_ref(),
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--watch".as_ref(),
            "--stuck-after".as_ref(),
            STUCK_AFTER.as_ref(),
            "--report-debounce".as_ref(),
            REPORT_DEBOUNCE.as_ref(),
            "--kubeconfig".as_ref(),
            service_account_kubeconfig.as_os_str(),
            "--addr".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--metrics-addr".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        let process = Process::start(
            server,
            "serve",
            &args.map(|a| a.to_os_string()),
            &[("POD_NAMESPACE", NAMESPACE), ("POD_NAME", &identity)],
        )?;
        let (addr, metrics_addr) = parse_listening(&process.first_line)
            .ok_or_else(|| format!("serve printed {:?}", process.first_line))?;

        // deploy/'s webhook, pointed at this process instead of the Service.
        let patch = serde_json::json!([{
            "op": "replace",
            "path": "/webhooks/0/clientConfig",
            "value": {
                "url": format!("https://localhost:{}/validate", addr.port()),
                "caBundle": ca_bundle,
            }
        }]);
        server
            .kubectl(&[
                "patch",
                "validatingwebhookconfiguration",
                "virt-preflight",
                "--type=json",
                "-p",
                &patch.to_string(),
            ])
            .result()?;

        let deployment = Deployment {
            server,
            addr,
            metrics_addr,
            webhook_ca: certs.join("ca.crt"),
            service_account_kubeconfig,
            identity,
            process,
        };
        deployment.wait_ready()?;
        Ok(deployment)
    }

    /// Ready as the Deployment's readinessProbe sees it, the watcher synced, and the API
    /// server calling the webhook (it picks up a changed configuration a moment later).
    fn wait_ready(&self) -> Result<(), String> {
        let with_logs = |reason: String| format!("{reason}\n{}", self.logs());
        poll(READY_TIMEOUT, || match self.readyz()? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("/readyz: {status} {body}")),
        })
        .map_err(with_logs)?;
        poll(READY_TIMEOUT, || {
            let metrics = self.try_metrics()?;
            if scrape::sum_of(&metrics, "virt_preflight_watcher_synced", &[]) == 1.0 {
                Ok(())
            } else {
                Err("the watcher has not listed VMs and VMIs".to_string())
            }
        })
        .map_err(with_logs)?;
        self.server.create_namespace(PROBE_NAMESPACE, &[]);
        let probe = vms::with_disk_without_volume(vms::vm(PROBE_NAMESPACE, "probe")).to_string();
        poll(READY_TIMEOUT, || {
            let applied = self
                .server
                .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], Some(&probe));
            match applied.success {
                false if applied.stderr.contains(WEBHOOK_NAME) => Ok(()),
                _ => Err(format!(
                    "the API server does not call the webhook yet: {}",
                    applied.stderr
                )),
            }
        })
        .map_err(with_logs)
    }

    /// `GET /readyz` over HTTPS, as the kubelet's probe would.
    pub fn readyz(&self) -> Result<(u16, String), String> {
        scrape::https_get(self.addr, "localhost", &self.webhook_ca, "/readyz")
    }

    pub fn try_metrics(&self) -> Result<Vec<Sample>, String> {
        match scrape::http_get(self.metrics_addr, "/metrics")? {
            (200, body) => Ok(scrape::parse_samples(&body)),
            (status, body) => Err(format!("/metrics: {status} {body}")),
        }
    }

    /// The process's metrics.
    pub fn metrics(&self) -> Vec<Sample> {
        self.try_metrics()
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// What the process has logged so far (RUST_LOG=info).
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

/// `virt-preflight certs` for the Service's names and `localhost`; the caBundle it prints.
fn run_certs(out: &Path) -> Result<String, String> {
    let output = Command::new(BIN)
        .args([
            "certs",
            "--service",
            "virt-preflight",
            "--namespace",
            NAMESPACE,
        ])
        .args(["--dns-name", "localhost", "--out"])
        .arg(out)
        .output()
        .map_err(|e| format!("run virt-preflight certs: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "virt-preflight certs: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A kubeconfig for deploy/'s ServiceAccount: a token from `kubectl create token`, the API
/// server's URL and CA.
fn write_service_account_kubeconfig(server: &ApiServer, path: &Path) -> Result<(), String> {
    let token = server
        .kubectl(&["create", "token", "virt-preflight", "-n", NAMESPACE])
        .result()?;
    let path = path.to_string_lossy();
    let ca = server.ca.to_string_lossy();
    let steps: [&[&str]; 4] = [
        &[
            "set-cluster",
            "test",
            "--server",
            &server.url,
            "--certificate-authority",
            &ca,
            "--embed-certs",
        ],
        &["set-credentials", "virt-preflight", "--token", token.trim()],
        &[
            "set-context",
            "virt-preflight",
            "--cluster=test",
            "--user=virt-preflight",
            "--namespace",
            NAMESPACE,
        ],
        &["use-context", "virt-preflight"],
    ];
    for step in steps {
        let mut args = vec!["config", "--kubeconfig", &path];
        args.extend_from_slice(step);
        server.kubectl(&args).result()?;
    }
    Ok(())
}

/// `listening on https://ADDR (metrics: http://ADDR/metrics)`.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("listening on https://")?;
    let (addr, rest) = rest.split_once(' ')?;
    let metrics = rest
        .strip_prefix("(metrics: http://")?
        .strip_suffix("/metrics)")?;
    Some((addr.parse().ok()?, metrics.parse().ok()?))
}

/// A virt-preflight process the watchdog stops with the test process (and that stops when
/// dropped): stderr to a log file, the first line of stdout read.
pub struct Process {
    child: Child,
    server: &'static ApiServer,
    /// What it printed first (where it listens).
    pub first_line: String,
    pub log: PathBuf,
}

impl Process {
    /// Starts the binary with `args`, logging at info, and waits for its first line.
    pub fn start(
        server: &'static ApiServer,
        name: &str,
        args: &[std::ffi::OsString],
        env: &[(&str, &str)],
    ) -> Result<Process, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = server.run_dir.join(format!("{name}-{n}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start virt-preflight {name}: {e}"))?;
        server.register_pid(child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            // Keep reading, so that a later line never meets a closed pipe.
            lines.for_each(drop);
        });
        let logs = || std::fs::read_to_string(&log).unwrap_or_default();
        match receiver.recv_timeout(READY_TIMEOUT) {
            Ok(Some(Ok(first_line))) => Ok(Process {
                child,
                server,
                first_line,
                log,
            }),
            Ok(_) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                server.unregister_pid(child.id());
                Err(format!(
                    "virt-preflight {name} printed no first line:\n{}",
                    logs()
                ))
            }
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.server.unregister_pid(self.child.id());
    }
}
