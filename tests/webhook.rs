//! The admission webhook end to end: the real `virt-preflight serve` binary on 127.0.0.1,
//! with a certificate made by `virt-preflight certs`, spoken to over HTTPS by a client that
//! trusts only that certificate's CA (where the API server stands).
//!
//! Every test starts its own server process (killed when the test ends), so that counters,
//! policies and certificates never leak from one test into another. Two clients are used: a
//! hyper client (HTTP/2 by ALPN, as the API server speaks to webhooks) for the admission
//! semantics, and a small blocking HTTP/1.1-over-rustls client for what needs one connection
//! in hand: the certificate a connection got, a connection kept open across a certificate
//! swap, and `Expect: 100-continue` requests held in flight across SIGTERM (next to HTTP/2
//! streams held the same way).
//!
//! The per-rule tests reuse the broken VMs of tests/fixtures/rules (one per rule, see
//! tests/rule_fixtures.rs); the rest of the fixtures are in tests/fixtures/webhook.
//!
//! Waits are bounded polls with a message saying what did not happen; there are no sleeps
//! that a test's outcome depends on.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::fake_api::FakeApi;
use virt_preflight::check::object_ref;
use virt_preflight::cluster::{ClusterView, snapshot};
use virt_preflight::finding::{Finding, Severity};
use virt_preflight::manifest::{self, ReadOptions};
use virt_preflight::model::VirtualMachine;
use virt_preflight::rules::{self, REGISTRY, RuleInfo, Scope};

const BIN: &str = env!("CARGO_BIN_EXE_virt-preflight");
/// The name the test certificates are for (`certs --service localhost`); clients connect to
/// 127.0.0.1 and send it as SNI.
const SERVER_NAME: &str = "localhost";
/// How long a server gets to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one HTTP exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on waiting for something asynchronous (a reload, an Event, readiness).
const EVENTUAL_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The API server's limits on warnings.
const MAX_WARNING_CHARS: usize = 120;
const MAX_WARNINGS_TOTAL_CHARS: usize = 4096;
/// The webhook's request body limit.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const DENIAL_PREFIX: &str = "virt-preflight denied this VirtualMachine";

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/webhook").join(name)
}

/// The one document of a YAML file, read as `check` reads it.
fn load_yaml(path: &Path) -> Value {
    let mut parsed = manifest::read_path(path, ReadOptions::default());
    assert_eq!(parsed.len(), 1, "{}: expected one document", path.display());
    match parsed.remove(0) {
        Ok(document) => document.value,
        Err(err) => panic!("{}: {err}", path.display()),
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("virt-preflight-webhook-")
        .tempdir()
        .expect("create a temporary directory")
}

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// What `virt-preflight certs` wrote.
struct CertFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    /// The DER of the serving (leaf) certificate.
    fn leaf_der(&self) -> Vec<u8> {
        CertificateDer::pem_file_iter(&self.cert)
            .expect("read tls.crt")
            .next()
            .expect("tls.crt holds a certificate")
            .expect("tls.crt is PEM")
            .to_vec()
    }
}

/// Runs `virt-preflight certs --service localhost --out <out>`.
fn generate_certs(out: &Path) -> CertFiles {
    let output = Command::new(BIN)
        .args([
            "certs",
            "--service",
            SERVER_NAME,
            "--namespace",
            "webhook-test",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .expect("run virt-preflight certs");
    assert!(
        output.status.success(),
        "virt-preflight certs failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let files = CertFiles {
        ca: out.join("ca.crt"),
        cert: out.join("tls.crt"),
        key: out.join("tls.key"),
    };
    let bundle = String::from_utf8_lossy(&output.stdout);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .expect("the printed caBundle is base64");
    assert_eq!(
        decoded,
        fs::read(&files.ca).expect("read ca.crt"),
        "the printed caBundle is ca.crt"
    );
    files
}

/// A rustls client configuration whose only roots are `cas` (no system or webpki roots).
fn client_config(cas: &[&Path]) -> rustls::ClientConfig {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_file_iter(ca).expect("read the CA file") {
            roots
                .add(cert.expect("the CA file is PEM"))
                .expect("the CA certificate is usable as a root");
        }
    }
    assert_eq!(roots.len(), cas.len(), "one root per CA file");
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection makes a full handshake and verifies the certificate, as the API
    // server's webhook client does: a resumed TLS 1.3 session would carry the certificate of
    // the connection that issued the ticket, whatever the server serves now.
    config.resumption = rustls::client::Resumption::disabled();
    config
}

// ---------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A running `virt-preflight serve`, killed (if still running) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    stderr_log: PathBuf,
    /// The CA the server's first certificate chains to.
    ca: PathBuf,
    /// Certificates and logs, when the server owns them.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Server {
    /// A server with fresh certificates, serving from the snapshot `cluster` with the policy
    /// file `config` (none: the default policy).
    fn with_snapshot(cluster: &Path, config: Option<&Path>) -> Server {
        let mut args: Vec<OsString> = vec!["--cluster-state".into(), cluster.into()];
        if let Some(config) = config {
            args.push("--config".into());
            args.push(config.into());
        }
        Server::start(args, &[])
    }

    /// Spec rules only (an empty snapshot), with the policy file `config`.
    fn spec_only(config: Option<&Path>) -> Server {
        Server::with_snapshot(&fixture("no-cluster.yaml"), config)
    }

    /// A server with fresh certificates in its own directory and `args` after the TLS and
    /// address flags.
    fn start(args: Vec<OsString>, env: &[(&str, &str)]) -> Server {
        let dir = tempdir();
        let certs = generate_certs(&dir.path().join("certs"));
        let mut server = Server::spawn(dir.path(), &certs.cert, &certs.key, &certs.ca, args, env);
        server._dir = Some(dir);
        server
    }

    /// Starts `serve` with the given files and waits for its `listening on` line.
    fn spawn(
        work: &Path,
        cert: &Path,
        key: &Path,
        ca: &Path,
        args: Vec<OsString>,
        env: &[(&str, &str)],
    ) -> Server {
        let stderr_log = work.join(format!("serve-{}.stderr", next_id()));
        let log = fs::File::create(&stderr_log).expect("create the server's log file");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(&args)
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn virt-preflight serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, received) = mpsc::channel::<String>();
        thread::spawn(move || {
            // Read to the end so that the server never writes into a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        // The first line on stdout is the `listening on` line, or something went wrong.
        let failure = match received.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => match parse_listening(&line) {
                Some((addr, metrics_addr)) => {
                    return Server {
                        child,
                        addr,
                        metrics_addr,
                        stderr_log,
                        ca: ca.to_path_buf(),
                        _dir: None,
                    };
                }
                None => format!("unexpected line on stdout: {line:?}"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                format!("no `listening on` line within {STARTUP_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                "stdout closed before the `listening on` line".to_string()
            }
        };
        let _ = child.kill();
        let status = child.wait();
        panic!(
            "virt-preflight serve {args:?}: {failure} (exit: {status:?}); stderr:\n{}",
            fs::read_to_string(&stderr_log).unwrap_or_default()
        );
    }

    /// What the server wrote on stderr so far.
    fn logs(&self) -> String {
        fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as the kubelet does when it stops the pod.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {timeout:?}; stderr:\n{}",
                self.logs()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// A hyper client for this server's HTTPS port that trusts only its CA.
    fn https(&self) -> Https {
        Https::new(self, client_config(&[&self.ca]))
    }
}

/// `listening on https://ADDR (metrics: http://ADDR/metrics)`.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("listening on https://")?;
    let (addr, rest) = rest.split_once(" (metrics: http://")?;
    let metrics = rest.strip_suffix("/metrics)")?;
    Some((addr.parse().ok()?, metrics.parse().ok()?))
}

// ---------------------------------------------------------------------------------------
// The hyper client
// ---------------------------------------------------------------------------------------

/// A response, read to the end.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: String,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

/// An error with its sources, for assertions on why a connection failed.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

fn https_client(config: rustls::ClientConfig, server_name: &str) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            ServerName::try_from(server_name.to_string()).expect("a DNS name"),
        ))
        .enable_all_versions()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn exchange<C>(
    client: &Client<C, Full<Bytes>>,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Reply, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header(hyper::header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Full::new(body)).expect("a valid request");
    let work = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| error_chain(&e))?
            .to_bytes();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no response within {REQUEST_TIMEOUT:?}")),
    }
}

/// The API server's side: HTTPS to the webhook, plain HTTP to its metrics.
struct Https {
    client: HttpsClient,
    base: String,
    metrics_client: Client<HttpConnector, Full<Bytes>>,
    metrics_url: String,
    stderr_log: PathBuf,
}

impl Https {
    fn new(server: &Server, config: rustls::ClientConfig) -> Https {
        Https {
            client: https_client(config, SERVER_NAME),
            base: format!("https://{}", server.addr),
            metrics_client: Client::builder(TokioExecutor::new()).build_http(),
            metrics_url: format!("http://{}/metrics", server.metrics_addr),
            stderr_log: server.stderr_log.clone(),
        }
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    async fn try_send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let uri = format!("{}{path}", self.base);
        exchange(&self.client, method, &uri, content_type, body.into()).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        match self.try_send(method, path, content_type, body).await {
            Ok(reply) => reply,
            Err(err) => panic!("{path}: {err}; server stderr:\n{}", self.logs()),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    async fn post_validate(&self, content_type: Option<&str>, body: impl Into<Bytes>) -> Reply {
        self.send(Method::POST, "/validate", content_type, body)
            .await
    }

    /// Sends the review of `request` and returns its `response`, after checking the envelope
    /// and that the request's uid came back.
    async fn review(&self, request: &ReviewRequest) -> Value {
        let uid = new_uid();
        let body = serde_json::to_vec(&request.to_json(&uid)).expect("serialise the review");
        let reply = self.post_validate(Some("application/json"), body).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{request:?}: {}",
            reply.text()
        );
        assert!(
            reply.content_type.starts_with("application/json"),
            "content type {:?}",
            reply.content_type
        );
        let review = reply.json();
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
        assert_eq!(review["kind"], "AdmissionReview", "{review}");
        let response = review["response"].clone();
        assert_eq!(
            response["uid"],
            uid.as_str(),
            "the request uid is echoed: {review}"
        );
        assert!(response["allowed"].is_boolean(), "{review}");
        response
    }

    async fn metrics(&self) -> Metrics {
        let reply = exchange(
            &self.metrics_client,
            Method::GET,
            &self.metrics_url,
            None,
            Bytes::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("GET {}: {e}", self.metrics_url));
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(
            reply
                .content_type
                .starts_with("application/openmetrics-text"),
            "{}",
            reply.content_type
        );
        Metrics::parse(&reply.text())
    }

    /// Polls /readyz until it answers 200 (bounded).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + EVENTUAL_TIMEOUT;
        loop {
            let reply = self.get("/readyz").await;
            if reply.status == StatusCode::OK {
                assert_eq!(reply.text(), "ok");
                return;
            }
            assert_eq!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                reply.text()
            );
            assert!(
                Instant::now() < deadline,
                "/readyz still {} after {EVENTUAL_TIMEOUT:?}: {}",
                reply.status,
                reply.text()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Metrics in the text exposition format
// ---------------------------------------------------------------------------------------

struct Metrics {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut series = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name_and_labels, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("metrics line without a value: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("metrics line with a bad value: {line}"));
            let (name, labels) = match name_and_labels.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels end with }");
                    let labels = labels
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                            (key.to_string(), value.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (name_and_labels.to_string(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Metrics {
            series,
            text: text.to_string(),
        }
    }

    /// The sum of the series named `name` that carry all of `labels` (0 if none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn requests(&self, operation: &str, result: &str) -> f64 {
        self.value(
            "virt_preflight_admission_requests_total",
            &[("operation", operation), ("result", result)],
        )
    }

    fn findings(&self, rule: &str, action: &str) -> f64 {
        self.value(
            "virt_preflight_admission_findings_total",
            &[("rule", rule), ("action", action)],
        )
    }
}

// ---------------------------------------------------------------------------------------
// AdmissionReviews, as the API server sends them
// ---------------------------------------------------------------------------------------

fn new_uid() -> String {
    format!("5f0c2a8e-7b1d-4e3a-9c6f-{:012x}", next_id())
}

#[derive(Debug, Clone)]
struct ReviewRequest {
    operation: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    resource: &'static str,
    namespace: String,
    name: String,
    object: Option<Value>,
    old_object: Option<Value>,
    dry_run: bool,
}

fn metadata_str(object: &Value, field: &str) -> String {
    object["metadata"][field]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl ReviewRequest {
    fn vm(operation: &'static str, object: Option<&Value>, old: Option<&Value>) -> Self {
        let named = object.or(old).expect("an object or an old object");
        ReviewRequest {
            operation,
            group: "kubevirt.io",
            version: "v1",
            kind: "VirtualMachine",
            resource: "virtualmachines",
            namespace: metadata_str(named, "namespace"),
            name: metadata_str(named, "name"),
            object: object.cloned(),
            old_object: old.cloned(),
            dry_run: false,
        }
    }

    fn create(vm: &Value) -> Self {
        ReviewRequest::vm("CREATE", Some(vm), None)
    }

    fn update(old: &Value, new: &Value) -> Self {
        ReviewRequest::vm("UPDATE", Some(new), Some(old))
    }

    fn delete(old: &Value) -> Self {
        ReviewRequest::vm("DELETE", None, Some(old))
    }

    fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    fn of_kind(
        mut self,
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        resource: &'static str,
    ) -> Self {
        self.group = group;
        self.version = version;
        self.kind = kind;
        self.resource = resource;
        self
    }

    /// The `admission.k8s.io/v1` AdmissionReview the API server would send.
    fn to_json(&self, uid: &str) -> Value {
        let gvk = json!({"group": self.group, "version": self.version, "kind": self.kind});
        let gvr = json!({"group": self.group, "version": self.version, "resource": self.resource});
        let options_kind = match self.operation {
            "CREATE" => "CreateOptions",
            "UPDATE" => "UpdateOptions",
            _ => "DeleteOptions",
        };
        let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": options_kind});
        if self.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": gvk,
                "resource": gvr,
                "requestKind": gvk,
                "requestResource": gvr,
                "name": self.name,
                "namespace": self.namespace,
                "operation": self.operation,
                "userInfo": {
                    "username": "kubernetes-admin",
                    "uid": "aws-iam-authenticator:1234",
                    "groups": ["system:masters", "system:authenticated"]
                },
                "object": self.object,
                "oldObject": self.old_object,
                "dryRun": self.dry_run,
                "options": options,
            }
        })
    }
}

/// The response of a request allowed with nothing to say: `{uid, allowed: true}` only.
fn assert_clean_allow(response: &Value, what: &str) {
    let mut rest = response.clone();
    rest.as_object_mut()
        .expect("response is an object")
        .remove("uid");
    assert_eq!(rest, json!({"allowed": true}), "{what}: {response}");
}

/// The denial message of a denied response (403 Forbidden).
fn denial(response: &Value, what: &str) -> String {
    assert_eq!(response["allowed"], false, "{what}: {response}");
    assert_eq!(response["status"]["code"], 403, "{what}: {response}");
    assert_eq!(
        response["status"]["reason"], "Forbidden",
        "{what}: {response}"
    );
    response["status"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no status.message: {response}"))
        .to_string()
}

fn assert_allowed(response: &Value, what: &str) {
    assert_eq!(response["allowed"], true, "{what}: {response}");
    assert!(
        response.get("status").is_none(),
        "{what}: an allowed response carries no status: {response}"
    );
}

/// The warnings of a response; an absent field is none, an empty list is not allowed.
fn warnings(response: &Value) -> Vec<String> {
    match response.get("warnings") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            assert!(!items.is_empty(), "empty warnings list: {response}");
            items
                .iter()
                .map(|w| w.as_str().expect("a warning is a string").to_string())
                .collect()
        }
        Some(other) => panic!("warnings is not a list: {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// VirtualMachines and what the rules say about them
// ---------------------------------------------------------------------------------------

fn valid_vm() -> Value {
    load_yaml(&fixture("vm-valid.yaml"))
}

fn devices(vm: &mut Value) -> &mut Value {
    &mut vm["spec"]["template"]["spec"]["domain"]["devices"]
}

fn push(array: &mut Value, item: Value) {
    array.as_array_mut().expect("an array").push(item);
}

/// Adds disk `name` with no volume: a `disk-without-volume` error.
fn with_disk_without_volume(mut vm: Value, name: &str) -> Value {
    push(
        &mut devices(&mut vm)["disks"],
        json!({"name": name, "disk": {"bus": "virtio"}}),
    );
    vm
}

/// Pulls the root disk's image by `:latest` without `Always`: an `image-tag-latest` warning.
fn with_latest_image(mut vm: Value) -> Value {
    let disk = &mut vm["spec"]["template"]["spec"]["volumes"][0]["containerDisk"];
    disk["image"] = json!("quay.io/containerdisks/fedora:latest");
    disk["imagePullPolicy"] = json!("IfNotPresent");
    vm
}

/// An unknown run strategy: a `run-strategy-invalid` error.
fn with_bad_run_strategy(mut vm: Value) -> Value {
    vm["spec"]["runStrategy"] = json!("Sometimes");
    vm
}

/// A VM the model cannot read (disks is not a list): the webhook lets it through unchecked.
fn unreadable_vm() -> Value {
    let mut vm = valid_vm();
    devices(&mut vm)["disks"] = json!("root");
    assert!(
        VirtualMachine::from_value(&vm).is_err(),
        "the VM is readable"
    );
    vm
}

const NOT_CHECKED: &str = "[virt-preflight] the VirtualMachine could not be read; not checked";

/// Cloud-init user data from Secret `secret` instead of inline.
fn with_cloud_init_secret(mut vm: Value, secret: &str) -> Value {
    vm["spec"]["template"]["spec"]["volumes"][1]["cloudInitNoCloud"] =
        json!({"secretRef": {"name": secret}});
    vm
}

fn named(mut vm: Value, name: &str) -> Value {
    vm["metadata"]["name"] = json!(name);
    vm["metadata"]["uid"] = json!(format!("0d3e2b1a-0000-4000-8000-{:012x}", next_id()));
    vm
}

fn in_namespace(mut vm: Value, namespace: &str) -> Value {
    vm["metadata"]["namespace"] = json!(namespace);
    vm
}

/// What the rules find in `vm` (the library's view, which the webhook must pass on).
fn findings_of(vm: &Value, cluster: Option<&ClusterView>) -> Vec<Finding> {
    let typed = VirtualMachine::from_value(vm).expect("a readable VirtualMachine");
    let namespace = vm["metadata"]["namespace"].as_str().unwrap_or("default");
    rules::evaluate(&typed, &object_ref(&typed, namespace), cluster).findings
}

/// A finding as the webhook writes it: `[rule-id] path: message`.
fn line(finding: &Finding) -> String {
    format!("[{}] {}: {}", finding.rule, finding.path, finding.message)
}

/// `text` cut as the API server's limit needs: at most 120 characters, `…` where cut.
fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_WARNING_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX_WARNING_CHARS - 1).collect();
    short.push('…');
    short
}

/// The exact denial message for `lines`.
fn denial_message(lines: &[String]) -> String {
    format!(
        "{DENIAL_PREFIX} ({} finding{}): {}",
        lines.len(),
        if lines.len() == 1 { "" } else { "s" },
        lines.join("; ")
    )
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

/// Checks a response against the findings of `vm` and which of them the policy denies.
fn assert_verdict(
    response: &Value,
    vm: &Value,
    cluster: Option<&ClusterView>,
    denies: impl Fn(&Finding) -> bool,
    what: &str,
) {
    let findings = findings_of(vm, cluster);
    let denied: Vec<String> = findings.iter().filter(|f| denies(f)).map(line).collect();
    let warned: Vec<String> = findings
        .iter()
        .filter(|f| !denies(f))
        .map(|f| cut(&line(f)))
        .collect();
    if denied.is_empty() {
        assert_allowed(response, what);
    } else {
        assert_eq!(denial(response, what), denial_message(&denied), "{what}");
    }
    assert_eq!(
        sorted(warnings(response)),
        sorted(warned),
        "{what}: {response}"
    );
}

fn write_file(path: &Path, text: &str) -> PathBuf {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

// ---------------------------------------------------------------------------------------
// A blocking HTTP/1.1 client over rustls, one connection in hand
// ---------------------------------------------------------------------------------------

struct TlsConnection {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// Bytes read past the last response.
    buffer: Vec<u8>,
}

#[derive(Debug)]
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// HTTP/1.1 only, so that requests can be written by hand.
fn http1_config(cas: &[&Path]) -> Arc<rustls::ClientConfig> {
    let mut config = client_config(cas);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl TlsConnection {
    /// Connects and completes the handshake (verifying the certificate for `localhost`).
    fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Self, String> {
        let tcp = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(REQUEST_TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(REQUEST_TIMEOUT)))
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(SERVER_NAME).expect("a DNS name");
        let connection = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("TLS handshake: {}", error_chain(&e)))?;
        }
        Ok(TlsConnection {
            stream,
            buffer: Vec::new(),
        })
    }

    /// The DER of the certificate the server presented on this connection.
    fn peer_leaf(&self) -> Vec<u8> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server presented a certificate")
            .to_vec()
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("write: {e}"))
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self
            .stream
            .read(&mut chunk)
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err(format!(
                "connection closed with {} unparsed byte(s)",
                self.buffer.len()
            ));
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    /// Reads one response (an interim `100 Continue` counts as one).
    fn read_response(&mut self) -> Result<RawReply, String> {
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        self.buffer.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut reply = RawReply {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            return Ok(reply);
        }
        let length: usize = match reply.header("content-length") {
            Some(length) => length.parse().map_err(|_| "bad content-length")?,
            None => return Err(format!("no content-length in {head:?}")),
        };
        while self.buffer.len() < length {
            self.fill()?;
        }
        reply.body = self.buffer.drain(..length).collect();
        Ok(reply)
    }

    fn get(&mut self, path: &str) -> Result<RawReply, String> {
        self.write_all(format!("GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n").as_bytes())?;
        self.read_response()
    }
}

// ---------------------------------------------------------------------------------------
// Tests: admission semantics
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_vm_is_allowed_without_warnings_and_the_uid_is_echoed() {
    let server = Server::spec_only(None);
    let https = server.https();
    let health = https.get("/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok")
    );
    https.wait_ready().await;

    let vm = valid_vm();
    assert!(
        findings_of(&vm, None).is_empty(),
        "vm-valid.yaml has findings"
    );
    let uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let body = serde_json::to_vec(&ReviewRequest::create(&vm).to_json(uid)).unwrap();
    let reply = https.post_validate(Some("application/json"), body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": true}
        })
    );

    let update = https.review(&ReviewRequest::update(&vm, &vm)).await;
    assert_clean_allow(&update, "UPDATE of a valid VM");
}

/// The VM of `tests/fixtures/rules/<id>/broken.yaml`, which triggers that rule (the fixtures
/// of tests/rule_fixtures.rs).
fn broken_fixture(rule: &RuleInfo) -> (PathBuf, Value) {
    let path = manifest_dir()
        .join("tests/fixtures/rules")
        .join(rule.name)
        .join("broken.yaml");
    let vm = load_yaml(&path);
    (path, vm)
}

/// Sends every spec rule's broken VM to the server and checks the verdict; `denies` says
/// which findings the server's policy denies (the others must warn). Returns how many.
async fn check_every_spec_rule(https: &Https, denies: impl Fn(&Finding) -> bool) -> usize {
    let mut checked = 0;
    for rule in spec_rules() {
        let (path, vm) = broken_fixture(rule);
        let findings = findings_of(&vm, None);
        assert!(
            findings.iter().any(|f| f.rule == rule.id),
            "{}: the broken VM has no {} finding",
            path.display(),
            rule.name
        );
        let response = https.review(&ReviewRequest::create(&vm)).await;
        assert_verdict(&response, &vm, None, &denies, rule.name);
        checked += 1;
    }
    checked
}

fn spec_rules() -> impl Iterator<Item = &'static RuleInfo> {
    REGISTRY.iter().filter(|r| r.scope == Scope::Spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_spec_rule_denies_or_warns_by_its_severity_under_the_default_policy() {
    let server = Server::spec_only(None);
    let https = server.https();
    let checked = check_every_spec_rule(&https, |f| f.severity == Severity::Error).await;
    assert_eq!(checked, spec_rules().count());
    assert!(checked >= 20, "only {checked} spec rules");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_rule_overrides_turn_denials_into_warnings_and_warnings_into_denials() {
    let dir = tempdir();
    // Every spec rule the other way round: errors warn, warnings deny.
    let mut flipped = String::from("mode: enforce\nrules:\n");
    for rule in spec_rules() {
        let setting = match rule.severity {
            Severity::Error => "warn",
            Severity::Warning => "deny",
        };
        flipped.push_str(&format!("  {}: {setting}\n", rule.name));
    }
    let flipped = write_file(&dir.path().join("flipped.yaml"), &flipped);
    let server = Server::spec_only(Some(&flipped));
    let https = server.https();
    let checked = check_every_spec_rule(&https, |f| f.severity == Severity::Warning).await;
    assert_eq!(checked, spec_rules().count());

    // Every rule off: nothing is said about any VM.
    let mut off = String::from("rules:\n");
    for rule in REGISTRY {
        off.push_str(&format!("  {}: \"off\"\n", rule.name));
    }
    let off = write_file(&dir.path().join("off.yaml"), &off);
    let server = Server::spec_only(Some(&off));
    let https = server.https();
    for rule in spec_rules() {
        let (_, vm) = broken_fixture(rule);
        let response = https.review(&ReviewRequest::create(&vm)).await;
        assert_clean_allow(&response, rule.name);
    }
    let metrics = https.metrics().await;
    assert_eq!(
        metrics.value("virt_preflight_admission_findings_total", &[]),
        0.0,
        "rules that are off are not counted:\n{}",
        metrics.text
    );
    assert_eq!(
        metrics.requests("CREATE", "allowed"),
        spec_rules().count() as f64
    );

    // One rule off, the others as by default; and the VM's own skip annotation.
    let partial = write_file(
        &dir.path().join("partial.yaml"),
        "rules:\n  image-tag-latest: off\n  run-strategy-invalid: warn\n",
    );
    let server = Server::spec_only(Some(&partial));
    let https = server.https();
    let vm = with_disk_without_volume(with_bad_run_strategy(with_latest_image(valid_vm())), "data");
    let response = https.review(&ReviewRequest::create(&vm)).await;
    let message = denial(&response, "partial overrides");
    assert!(
        message.starts_with(&format!(
            "{DENIAL_PREFIX} (1 finding): [disk-without-volume] "
        )),
        "{message}"
    );
    let warned = warnings(&response);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].starts_with("[run-strategy-invalid] spec.runStrategy: "),
        "{warned:?}"
    );

    let mut skipping = vm.clone();
    skipping["metadata"]["annotations"] = json!({"virt-preflight.io/skip": "disk-without-volume"});
    let response = https.review(&ReviewRequest::create(&skipping)).await;
    assert_allowed(&response, "skip annotation");
    assert_eq!(warnings(&response), warned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_modes_enforce_warn_and_audit() {
    let vm = with_latest_image(with_disk_without_volume(valid_vm(), "data"));
    let findings = findings_of(&vm, None);
    let lines: Vec<String> = findings.iter().map(line).collect();
    assert_eq!(findings.len(), 2, "{lines:?}");
    let error_line = "[disk-without-volume] spec.template.spec.domain.devices.disks[2].name: \
                      disk \"data\" names no volume: add that volume or fix the name";
    assert!(lines.contains(&error_line.to_string()), "{lines:?}");
    let warning_line = lines
        .iter()
        .find(|l| {
            l.starts_with("[image-tag-latest] spec.template.spec.volumes[0].containerDisk.image: ")
        })
        .unwrap_or_else(|| panic!("no image-tag-latest finding: {lines:?}"))
        .clone();

    // enforce: the error denies (403 with `[rule-id] path: message`), the warning warns.
    let server = Server::spec_only(Some(&fixture("policy-enforce.yaml")));
    let https = server.https();
    let response = https.review(&ReviewRequest::create(&vm)).await;
    assert_eq!(
        denial(&response, "enforce"),
        format!("{DENIAL_PREFIX} (1 finding): {error_line}")
    );
    assert_eq!(warnings(&response), vec![cut(&warning_line)]);
    let response = https.review(&ReviewRequest::create(&unreadable_vm())).await;
    assert_allowed(&response, "enforce, unreadable VM");
    assert_eq!(warnings(&response), vec![NOT_CHECKED.to_string()]);
    drop(server);

    // warn: everything warns, nothing denies.
    let server = Server::spec_only(Some(&fixture("policy-warn.yaml")));
    let https = server.https();
    let response = https.review(&ReviewRequest::create(&vm)).await;
    assert_allowed(&response, "warn");
    assert_eq!(
        sorted(warnings(&response)),
        sorted(lines.iter().map(|l| cut(l)).collect())
    );
    let metrics = https.metrics().await;
    assert_eq!(
        metrics.findings("disk-without-volume", "warn"),
        1.0,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.requests("CREATE", "warned"),
        1.0,
        "{}",
        metrics.text
    );
    let response = https.review(&ReviewRequest::create(&unreadable_vm())).await;
    assert_allowed(&response, "warn, unreadable VM");
    assert_eq!(warnings(&response), vec![NOT_CHECKED.to_string()]);
    drop(server);

    // audit: nothing in the response; the findings are counted.
    let server = Server::spec_only(Some(&fixture("policy-audit.yaml")));
    let https = server.https();
    let response = https.review(&ReviewRequest::create(&vm)).await;
    assert_clean_allow(&response, "audit");
    let metrics = https.metrics().await;
    assert_eq!(
        metrics.findings("disk-without-volume", "audit"),
        1.0,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.findings("image-tag-latest", "audit"),
        1.0,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.requests("CREATE", "allowed"),
        1.0,
        "{}",
        metrics.text
    );
    // Not even the note that a VM could not be read.
    let response = https.review(&ReviewRequest::create(&unreadable_vm())).await;
    assert_clean_allow(&response, "audit, unreadable VM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_label_overrides_the_policy_mode() {
    // The policy says warn; team-enforce and team-audit say otherwise by label.
    let cluster_file = fixture("cluster.yaml");
    let view = snapshot::read(&[&cluster_file], ReadOptions::default()).view;
    let server = Server::with_snapshot(&cluster_file, Some(&fixture("policy-warn.yaml")));
    let https = server.https();
    let broken = with_latest_image(with_disk_without_volume(valid_vm(), "data"));
    for (namespace, mode) in [
        ("default", "warn"), // no label: the policy's mode
        ("team-enforce", "enforce"),
        ("team-warn", "warn"),
        ("team-audit", "audit"),
        ("team-typo", "warn"), // a label that names no mode is ignored
        ("not-in-the-snapshot", "warn"),
    ] {
        let vm = in_namespace(broken.clone(), namespace);
        let response = https.review(&ReviewRequest::create(&vm)).await;
        let what = format!("namespace {namespace} (mode {mode})");
        match mode {
            "enforce" => assert_verdict(
                &response,
                &vm,
                Some(&view),
                |f| f.severity == Severity::Error,
                &what,
            ),
            "warn" => assert_verdict(&response, &vm, Some(&view), |_| false, &what),
            _ => assert_clean_allow(&response, &what),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rule_denies_from_a_cluster_state_snapshot() {
    let cluster_file = fixture("cluster.yaml");
    let snapshot = snapshot::read(&[&cluster_file], ReadOptions::default());
    assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
    let view = snapshot.view;
    let server = Server::with_snapshot(&cluster_file, None);
    let https = server.https();

    // The Secret is fedora-cloud-init; the VM names fedora-cloudinit.
    let missing = with_cloud_init_secret(valid_vm(), "fedora-cloudinit");
    let response = https.review(&ReviewRequest::create(&missing)).await;
    let message = denial(&response, "missing Secret");
    assert!(
        message.contains(
            "[secret-not-found] spec.template.spec.volumes[1].cloudInitNoCloud.secretRef.name: "
        ),
        "{message}"
    );
    assert_verdict(
        &response,
        &missing,
        Some(&view),
        |f| f.severity == Severity::Error,
        "missing Secret",
    );

    let present = with_cloud_init_secret(valid_vm(), "fedora-cloud-init");
    assert_clean_allow(
        &https.review(&ReviewRequest::create(&present)).await,
        "existing Secret",
    );

    // Secrets are namespaced: the same name in another namespace does not exist.
    let elsewhere = in_namespace(present.clone(), "team-enforce");
    let message = denial(
        &https.review(&ReviewRequest::create(&elsewhere)).await,
        "other namespace",
    );
    assert!(message.contains("[secret-not-found] "), "{message}");

    // Without the Secrets in the view, the rule says nothing: never deny on unknown data.
    let spec_only = Server::spec_only(None);
    let response = spec_only
        .https()
        .review(&ReviewRequest::create(&missing))
        .await;
    assert_clean_allow(&response, "no cluster view");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_obey_the_api_server_limits() {
    let server = Server::spec_only(Some(&fixture("policy-warn.yaml")));
    let https = server.https();
    // 150 disks without volumes, with names long enough that every line needs cutting, and a
    // run strategy with a line break in it.
    let mut vm = valid_vm();
    for index in 0..150 {
        let name = format!("disk-{index:03}-{}", "a".repeat(50));
        vm = with_disk_without_volume(vm, &name);
    }
    vm["spec"]["running"] = json!(true);
    vm["spec"]["runStrategy"] = json!("Always\nor not");
    let expected: Vec<String> = findings_of(&vm, None)
        .iter()
        .map(|f| cut(&line(f)))
        .collect();
    assert!(expected.len() > 150, "{} findings", expected.len());
    assert!(
        expected
            .iter()
            .any(|l| l.starts_with("[run-strategy-conflict] ")),
        "{expected:?}"
    );

    let response = https.review(&ReviewRequest::create(&vm)).await;
    assert_allowed(&response, "warn mode");
    let warned = warnings(&response);
    for warning in &warned {
        assert!(
            warning.chars().count() <= MAX_WARNING_CHARS,
            "longer than {MAX_WARNING_CHARS} characters: {warning:?}"
        );
        assert!(
            !warning.chars().any(char::is_control),
            "not one line: {warning:?}"
        );
    }
    let total: usize = warned.iter().map(|w| w.chars().count()).sum();
    assert!(
        total <= MAX_WARNINGS_TOTAL_CHARS,
        "{total} characters in all"
    );
    let unique: HashSet<&String> = warned.iter().collect();
    assert_eq!(unique.len(), warned.len(), "duplicates in {warned:?}");

    // The warnings shown are the first ones, in order, then one `…and N more` for the rest.
    let (last, shown) = warned.split_last().expect("warnings");
    assert_eq!(shown, &expected[..shown.len()]);
    let rest = expected.len() - shown.len();
    assert_eq!(last, &format!("…and {rest} more"));
    // As many as fit: the next one would not have fitted along with its trailer.
    let shown_chars: usize = shown.iter().map(|w| w.chars().count()).sum();
    let next = expected[shown.len()].chars().count();
    let trailer = format!("…and {} more", rest - 1).chars().count();
    assert!(
        shown_chars + next + trailer > MAX_WARNINGS_TOTAL_CHARS,
        "room was left for another warning: {shown_chars} + {next} + {trailer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_is_denied_only_for_findings_the_old_object_did_not_have() {
    let server = Server::spec_only(None);
    let https = server.https();
    let valid = valid_vm();
    let broken = with_disk_without_volume(valid_vm(), "data");
    let broken_line = line(&findings_of(&broken, None)[0]);

    // Unchanged finding: it may warn, not deny (a label edit on a broken VM goes through).
    let mut relabelled = broken.clone();
    relabelled["metadata"]["labels"]["team"] = json!("blue");
    let response = https
        .review(&ReviewRequest::update(&broken, &relabelled))
        .await;
    assert_allowed(&response, "pre-existing finding");
    assert_eq!(warnings(&response), vec![cut(&broken_line)]);

    // A new finding denies.
    let response = https.review(&ReviewRequest::update(&valid, &broken)).await;
    assert_eq!(
        denial(&response, "new finding"),
        denial_message(std::slice::from_ref(&broken_line))
    );

    // Old and new together: only the new one denies; the old one warns.
    let worse = with_bad_run_strategy(broken.clone());
    let new_line = line(
        findings_of(&worse, None)
            .iter()
            .find(|f| f.rule.to_string() == "run-strategy-invalid")
            .expect("run-strategy-invalid"),
    );
    let response = https.review(&ReviewRequest::update(&broken, &worse)).await;
    assert_eq!(
        denial(&response, "old and new"),
        denial_message(std::slice::from_ref(&new_line))
    );
    assert_eq!(warnings(&response), vec![cut(&broken_line)]);

    // A fix is allowed and says nothing.
    assert_clean_allow(
        &https.review(&ReviewRequest::update(&broken, &valid)).await,
        "fixing update",
    );
    // The same object on CREATE is denied: ratcheting is for UPDATE only.
    denial(
        &https.review(&ReviewRequest::create(&broken)).await,
        "CREATE",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_being_deleted_is_never_denied() {
    let server = Server::spec_only(None);
    let https = server.https();
    let valid = valid_vm();
    let mut deleting = with_bad_run_strategy(with_disk_without_volume(valid_vm(), "data"));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-24T10:00:00Z");
    deleting["metadata"]["finalizers"] = json!([]);

    // A finalizer's update of a VM being deleted, with findings the old object did not have.
    let response = https
        .review(&ReviewRequest::update(&valid, &deleting))
        .await;
    assert_allowed(&response, "update of a VM being deleted");
    let mut old = deleting.clone();
    old["metadata"]["finalizers"] = json!(["kubevirt.io/virtualMachineControllerFinalize"]);
    let response = https.review(&ReviewRequest::update(&old, &deleting)).await;
    assert_allowed(&response, "finalizer removal");

    // DELETE itself (object null, oldObject the VM), even if dry run.
    let broken = with_disk_without_volume(valid_vm(), "data");
    assert_clean_allow(
        &https.review(&ReviewRequest::delete(&broken)).await,
        "DELETE",
    );
    assert_clean_allow(
        &https
            .review(&ReviewRequest::delete(&broken).dry_run())
            .await,
        "DELETE dry run",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_requests_are_evaluated_the_same() {
    let server = Server::spec_only(None);
    let https = server.https();
    let broken = with_latest_image(with_disk_without_volume(valid_vm(), "data"));
    let warned_only = with_latest_image(valid_vm());
    for (request, what) in [
        (ReviewRequest::create(&broken), "denied CREATE"),
        (ReviewRequest::create(&warned_only), "warned CREATE"),
        (ReviewRequest::update(&valid_vm(), &broken), "denied UPDATE"),
        (ReviewRequest::create(&valid_vm()), "clean CREATE"),
    ] {
        let wet = https.review(&request).await;
        let dry = https.review(&request.clone().dry_run()).await;
        let strip = |mut response: Value| {
            response.as_object_mut().unwrap().remove("uid");
            response
        };
        assert_eq!(strip(dry), strip(wet), "{what}");
    }
    let metrics = https.metrics().await;
    assert_eq!(
        metrics.requests("CREATE", "denied"),
        2.0,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.requests("CREATE", "warned"),
        2.0,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.requests("UPDATE", "denied"),
        2.0,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.requests("CREATE", "allowed"),
        2.0,
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_kinds_are_allowed_without_warnings() {
    let server = Server::spec_only(None);
    let https = server.https();
    let broken = with_bad_run_strategy(with_disk_without_volume(valid_vm(), "data"));
    let mut vmi = broken.clone();
    vmi["kind"] = json!("VirtualMachineInstance");
    vmi["spec"] = vmi["spec"]["template"]["spec"].clone();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "virt-launcher-fedora-abcde", "namespace": "default"},
        "spec": {"containers": [{"name": "compute", "image": "quay.io/kubevirt/virt-launcher:latest"}]}});
    let mut foreign = broken.clone();
    foreign["apiVersion"] = json!("example.com/v1");
    for (request, what) in [
        (
            ReviewRequest::create(&pod).of_kind("", "v1", "Pod", "pods"),
            "Pod",
        ),
        (
            ReviewRequest::create(&vmi).of_kind(
                "kubevirt.io",
                "v1",
                "VirtualMachineInstance",
                "virtualmachineinstances",
            ),
            "VirtualMachineInstance",
        ),
        (
            ReviewRequest::create(&foreign).of_kind(
                "example.com",
                "v1",
                "VirtualMachine",
                "virtualmachines",
            ),
            "VirtualMachine of another group",
        ),
        (ReviewRequest::vm("CONNECT", Some(&broken), None), "CONNECT"),
    ] {
        assert_clean_allow(&https.review(&request).await, what);
    }
    let metrics = https.metrics().await;
    assert_eq!(
        metrics.value("virt_preflight_admission_findings_total", &[]),
        0.0,
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_wrongly_typed_requests_get_http_errors() {
    let server = Server::spec_only(None);
    let https = server.https();
    let json_type = Some("application/json");

    // 400: not a v1 AdmissionReview.
    let v1beta1 = {
        let mut review = ReviewRequest::create(&valid_vm()).to_json(&new_uid());
        review["apiVersion"] = json!("admission.k8s.io/v1beta1");
        serde_json::to_vec(&review).unwrap()
    };
    for (body, what) in [
        (b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\"".to_vec(), "truncated JSON"),
        (b"[1, 2, 3]".to_vec(), "a JSON array"),
        (v1beta1, "admission.k8s.io/v1beta1"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "no request",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{}}}"#
                .to_vec(),
            "a request without uid",
        ),
    ] {
        let reply = https.post_validate(json_type, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.text());
        assert!(
            reply.text().starts_with("malformed AdmissionReview"),
            "{what}: {}",
            reply.text()
        );
    }

    // 415: not JSON by its content type.
    let valid_body =
        serde_json::to_vec(&ReviewRequest::create(&valid_vm()).to_json(&new_uid())).unwrap();
    for content_type in [Some("text/plain"), Some("application/yaml"), None] {
        let reply = https.post_validate(content_type, valid_body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {}",
            reply.text()
        );
    }
    // Parameters of the media type are fine.
    let response = https.review(&ReviewRequest::create(&valid_vm())).await;
    assert_clean_allow(&response, "plain application/json");
    let reply = https
        .post_validate(Some("application/json; charset=utf-8"), valid_body.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // 413: a body over 8 MiB.
    let mut huge = vec![b' '; MAX_BODY_BYTES + 1];
    huge[0] = b'{';
    huge[MAX_BODY_BYTES] = b'}';
    let reply = https.post_validate(json_type, huge).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );

    // An UPDATE carries the object twice: 2 × 1.5 MiB is within the limit (and over axum's
    // 2 MB default).
    let mut big = valid_vm();
    big["metadata"]["annotations"] = json!({"example.com/blob": "x".repeat(1536 * 1024)});
    let request = ReviewRequest::update(&big, &big);
    let size = serde_json::to_vec(&request.to_json("x")).unwrap().len();
    assert!(size > 3 * 1024 * 1024 && size < MAX_BODY_BYTES, "{size}");
    assert_clean_allow(&https.review(&request).await, "a 3 MiB UPDATE");

    let metrics = https.metrics().await;
    // Every 400, 413 and 415 above is counted as an error.
    assert_eq!(metrics.requests("", "error"), 9.0, "{}", metrics.text);
    assert_eq!(
        metrics.requests("CREATE", "allowed"),
        2.0,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.requests("UPDATE", "allowed"),
        1.0,
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_operation_and_result_and_findings_by_rule_and_action() {
    let server = Server::spec_only(None);
    let https = server.https();
    let before = https.metrics().await;
    assert!(before.text.ends_with("# EOF\n"), "{}", before.text);
    assert_eq!(
        before.value("virt_preflight_admission_requests_total", &[]),
        0.0,
        "{}",
        before.text
    );

    let valid = valid_vm();
    let warned = with_latest_image(valid_vm());
    let denied = with_disk_without_volume(valid_vm(), "data");
    https.review(&ReviewRequest::create(&valid)).await;
    https.review(&ReviewRequest::create(&warned)).await;
    https.review(&ReviewRequest::create(&denied)).await;
    https
        .review(&ReviewRequest::create(&denied).dry_run())
        .await;
    https.review(&ReviewRequest::update(&valid, &denied)).await;
    https.review(&ReviewRequest::update(&denied, &denied)).await;
    https.review(&ReviewRequest::delete(&denied)).await;
    https.post_validate(Some("application/json"), "{").await;

    let after = https.metrics().await;
    for ((operation, result), count) in [
        (("CREATE", "allowed"), 1.0),
        (("CREATE", "warned"), 1.0),
        (("CREATE", "denied"), 2.0),
        (("UPDATE", "denied"), 1.0),
        (("UPDATE", "warned"), 1.0),
        (("DELETE", "allowed"), 1.0),
        (("", "error"), 1.0),
    ] {
        assert_eq!(
            after.requests(operation, result),
            count,
            "requests{{operation={operation:?}, result={result:?}}}:\n{}",
            after.text
        );
    }
    assert_eq!(
        after.value("virt_preflight_admission_requests_total", &[]),
        8.0,
        "{}",
        after.text
    );
    // deny: two CREATEs and the new finding of an UPDATE; warn: the latest image and the
    // finding the old object already had.
    assert_eq!(
        after.findings("disk-without-volume", "deny"),
        3.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.findings("disk-without-volume", "warn"),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.findings("image-tag-latest", "warn"),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value("virt_preflight_admission_findings_total", &[]),
        5.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value("virt_preflight_admission_duration_seconds_count", &[]),
        7.0,
        "every answered review is timed:\n{}",
        after.text
    );
}

// ---------------------------------------------------------------------------------------
// Tests: TLS
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_with_the_generated_ca_and_name_gets_through() {
    let server = Server::spec_only(None);
    // The right CA and name work (over HTTP/2, as ALPN offers it).
    let https = server.https();
    assert_eq!(https.get("/healthz").await.status, StatusCode::OK);

    // Plain HTTP to the HTTPS port gets no HTTP response.
    let plain: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let result = exchange(
        &plain,
        Method::GET,
        &format!("http://{}/healthz", server.addr),
        None,
        Bytes::new(),
    )
    .await;
    assert!(result.is_err(), "plaintext HTTP got an answer: {result:?}");

    let addr = server.addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        // The server answers with a TLS alert or nothing, then closes (a reset is fine too).
        let _ = tcp.read_to_end(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1."),
        "plaintext got an HTTP answer: {:?}",
        String::from_utf8_lossy(&raw)
    );

    // A client that trusts another CA refuses the certificate.
    let other = tempdir();
    let other_certs = generate_certs(other.path());
    let stranger = Https::new(&server, client_config(&[&other_certs.ca]));
    let err = stranger
        .try_send(Method::GET, "/healthz", None, Bytes::new())
        .await
        .expect_err("a certificate from an untrusted CA was accepted");
    assert!(err.contains("invalid peer certificate"), "{err}");

    // The right CA but another name: refused too.
    let wrong_name = Https {
        client: https_client(client_config(&[&server.ca]), "virt-preflight.example.com"),
        ..server.https()
    };
    let err = wrong_name
        .try_send(Method::GET, "/healthz", None, Bytes::new())
        .await
        .expect_err("a certificate for another name was accepted");
    assert!(err.contains("not valid for name"), "{err}");
}

/// A directory laid out as the kubelet mounts a Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<timestamp>`, swapped by renaming a new `..data` symlink over the old one.
struct SecretVolume {
    dir: PathBuf,
    generation: u32,
}

impl SecretVolume {
    fn new(dir: &Path, cert: &Path, key: &Path) -> SecretVolume {
        fs::create_dir_all(dir).unwrap();
        let mut volume = SecretVolume {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        volume.swap(cert, key);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
        }
        volume
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// Writes a new timestamped directory and swaps `..data` to it atomically, then removes
    /// the old one, as the kubelet's AtomicWriter does.
    fn swap(&mut self, cert: &Path, key: &Path) {
        let old = fs::read_link(self.dir.join("..data")).ok();
        self.generation += 1;
        let stamp = format!("..2026_11_24_10_00_{:02}.{:09}", self.generation, next_id());
        let target = self.dir.join(&stamp);
        fs::create_dir(&target).unwrap();
        fs::copy(cert, target.join("tls.crt")).unwrap();
        fs::copy(key, target.join("tls.key")).unwrap();
        let temporary = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &temporary).unwrap();
        fs::rename(&temporary, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

#[test]
fn a_certificate_swapped_on_disk_is_served_to_new_connections() {
    let dir = tempdir();
    let first = generate_certs(&dir.path().join("first"));
    let second = generate_certs(&dir.path().join("second"));
    let mut volume = SecretVolume::new(&dir.path().join("secret"), &first.cert, &first.key);
    let server = Server::spawn(
        dir.path(),
        &volume.cert(),
        &volume.key(),
        &first.ca,
        vec![
            "--tls-reload-seconds".into(),
            "1".into(),
            "--cluster-state".into(),
            fixture("no-cluster.yaml").into(),
        ],
        &[],
    );
    let both_cas = http1_config(&[&first.ca, &second.ca]);
    let first_ca_only = http1_config(&[&first.ca]);
    let connect = |config: &Arc<rustls::ClientConfig>| {
        TlsConnection::connect(server.addr, config.clone())
            .unwrap_or_else(|e| panic!("{e}; server stderr:\n{}", server.logs()))
    };

    // A connection opened before the swap, kept open.
    let mut kept = connect(&first_ca_only);
    assert_eq!(kept.peer_leaf(), first.leaf_der());
    assert_eq!(kept.get("/healthz").expect("GET /healthz").status, 200);

    // A pair that does not match (the new certificate with the old key) is not taken.
    volume.swap(&second.cert, &first.key);
    let deadline = Instant::now() + EVENTUAL_TIMEOUT;
    while !server.logs().contains("serving certificate not reloaded") {
        assert!(
            Instant::now() < deadline,
            "the mismatched pair was not read within {EVENTUAL_TIMEOUT:?}; stderr:\n{}",
            server.logs()
        );
        thread::sleep(POLL_INTERVAL);
    }
    assert_eq!(
        connect(&both_cas).peer_leaf(),
        first.leaf_der(),
        "a mismatched pair replaced the certificate"
    );

    // The whole new pair: new connections get the new certificate.
    volume.swap(&second.cert, &second.key);
    let deadline = Instant::now() + EVENTUAL_TIMEOUT;
    loop {
        let leaf = connect(&both_cas).peer_leaf();
        if leaf == second.leaf_der() {
            break;
        }
        assert_eq!(leaf, first.leaf_der(), "a certificate that is neither");
        assert!(
            Instant::now() < deadline,
            "still the old certificate {EVENTUAL_TIMEOUT:?} after the swap; stderr:\n{}",
            server.logs()
        );
        thread::sleep(POLL_INTERVAL);
    }
    // ... and a client that trusts only the old CA can no longer connect.
    let err = TlsConnection::connect(server.addr, first_ca_only.clone())
        .err()
        .expect("the old CA still verifies new connections");
    assert!(err.contains("invalid peer certificate"), "{err}");

    // The connection opened before the swap carries on with the certificate it negotiated.
    let reply = kept
        .get("/healthz")
        .expect("GET /healthz on the kept connection");
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, b"ok".as_slice())
    );
    assert_eq!(kept.peer_leaf(), first.leaf_der());
}

// ---------------------------------------------------------------------------------------
// Tests: shutdown
// ---------------------------------------------------------------------------------------

/// A request body that sends its first half, reports that it has, and sends the rest only
/// when released: a request held in flight.
struct HeldBody {
    first: Option<Bytes>,
    rest: Option<Bytes>,
    started: Option<tokio::sync::oneshot::Sender<()>>,
    release: Option<tokio::sync::oneshot::Receiver<()>>,
    length: u64,
}

impl HeldBody {
    fn empty() -> HeldBody {
        HeldBody {
            first: None,
            rest: None,
            started: None,
            release: None,
            length: 0,
        }
    }

    /// The body, a receiver told when its first half is sent, a sender that releases the rest.
    fn held(
        bytes: Vec<u8>,
    ) -> (
        HeldBody,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (started, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release) = tokio::sync::oneshot::channel();
        let mut bytes = Bytes::from(bytes);
        let length = bytes.len() as u64;
        let rest = bytes.split_off(bytes.len() / 2);
        let body = HeldBody {
            first: Some(bytes),
            rest: Some(rest),
            started: Some(started),
            release: Some(release),
            length,
        };
        (body, started_rx, release_tx)
    }
}

impl hyper::body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if let Some(first) = self.first.take() {
            if let Some(started) = self.started.take() {
                let _ = started.send(());
            }
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(first))));
        }
        if let Some(release) = self.release.as_mut() {
            if std::pin::Pin::new(release).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.release = None;
        }
        Poll::Ready(
            self.rest
                .take()
                .map(|rest| Ok(hyper::body::Frame::data(rest))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.length)
    }
}

/// A CREATE review of a valid VM (even `index`) or a broken one (odd), and its uid.
fn numbered_review(index: usize) -> (String, Vec<u8>) {
    let vm = if index.is_multiple_of(2) {
        valid_vm()
    } else {
        with_disk_without_volume(valid_vm(), "data")
    };
    let uid = new_uid();
    let body = serde_json::to_vec(&ReviewRequest::create(&vm).to_json(&uid)).unwrap();
    (uid, body)
}

/// Checks the answer to [`numbered_review`] `index`.
fn check_numbered_answer(index: usize, uid: &str, status: u16, body: &[u8], server: &Server) {
    assert_eq!(
        status,
        200,
        "request {index}: {}; stderr:\n{}",
        String::from_utf8_lossy(body),
        server.logs()
    );
    let review: Value = serde_json::from_slice(body).expect("a JSON review");
    assert_eq!(review["response"]["uid"], uid, "request {index}");
    assert_eq!(
        review["response"]["allowed"],
        index.is_multiple_of(2),
        "{review}"
    );
}

#[test]
fn sigterm_lets_every_in_flight_request_finish() {
    const HTTP1_IN_FLIGHT: usize = 12;
    const HTTP2_IN_FLIGHT: usize = 12;
    let mut server = Server::start(
        vec![
            "--shutdown-grace-seconds".into(),
            "10".into(),
            "--cluster-state".into(),
            fixture("no-cluster.yaml").into(),
        ],
        &[],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    // HTTP/1.1, one connection each: a request is in flight for certain once the server has
    // answered its `Expect: 100-continue` (its handler is reading the body). The body follows
    // SIGTERM.
    let config = http1_config(&[&server.ca]);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let mut http1_releases = Vec::new();
    let mut http1_workers = Vec::new();
    for index in 0..HTTP1_IN_FLIGHT {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        http1_releases.push(release_tx);
        let ready = ready_tx.clone();
        let config = config.clone();
        let addr = server.addr;
        let (uid, body) = numbered_review(index);
        http1_workers.push(thread::spawn(
            move || -> Result<(String, RawReply), String> {
                let mut connection = TlsConnection::connect(addr, config)?;
                connection.write_all(
                    format!(
                        "POST /validate HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\
                     Expect: 100-continue\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )?;
                let interim = connection.read_response()?;
                if interim.status != 100 {
                    return Err(format!("expected 100 Continue, got {interim:?}"));
                }
                let _ = ready.send(());
                release_rx
                    .recv_timeout(EVENTUAL_TIMEOUT)
                    .map_err(|_| "never released".to_string())?;
                connection.write_all(&body)?;
                Ok((uid, connection.read_response()?))
            },
        ));
    }
    drop(ready_tx);
    for _ in 0..HTTP1_IN_FLIGHT {
        ready_rx.recv_timeout(EVENTUAL_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "not every HTTP/1.1 request got in flight; stderr:\n{}",
                server.logs()
            )
        });
    }

    // HTTP/2, as the API server speaks it: many streams on one connection, each with half its
    // body sent. The server has read every one of their HEADERS frames once it has answered a
    // request sent after them on the same connection.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&[&server.ca]))
        .https_only()
        .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            ServerName::try_from(SERVER_NAME).expect("a DNS name"),
        ))
        .enable_http2()
        .build();
    let h2: Client<_, HeldBody> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector);
    let base = format!("https://{}", server.addr);
    let healthz = |h2: Client<_, HeldBody>, base: String| async move {
        let request = Request::get(format!("{base}/healthz"))
            .body(HeldBody::empty())
            .unwrap();
        let response = tokio::time::timeout(REQUEST_TIMEOUT, h2.request(request))
            .await
            .expect("GET /healthz timed out")
            .map_err(|e| error_chain(&e))
            .expect("GET /healthz over HTTP/2");
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
    };
    // The connection the requests share.
    runtime.block_on(healthz(h2.clone(), base.clone()));
    let mut http2_releases = Vec::new();
    let mut http2_started = Vec::new();
    let mut http2_requests = Vec::new();
    for index in HTTP1_IN_FLIGHT..HTTP1_IN_FLIGHT + HTTP2_IN_FLIGHT {
        let (uid, bytes) = numbered_review(index);
        let (body, started, release) = HeldBody::held(bytes);
        http2_started.push(started);
        http2_releases.push(release);
        let request = Request::post(format!("{base}/validate"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        let h2 = h2.clone();
        http2_requests.push(runtime.spawn(async move {
            let response = h2.request(request).await.map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| error_chain(&e))?
                .to_bytes();
            Ok::<_, String>((uid, status, body))
        }));
    }
    runtime.block_on(async {
        for started in http2_started {
            tokio::time::timeout(EVENTUAL_TIMEOUT, started)
                .await
                .expect("an HTTP/2 request never started its body")
                .expect("the request was dropped");
        }
        healthz(h2.clone(), base.clone()).await;
    });

    server.terminate();
    // Shutdown has begun while the requests are in flight: new connections are refused.
    let deadline = Instant::now() + EVENTUAL_TIMEOUT;
    while TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections {EVENTUAL_TIMEOUT:?} after SIGTERM; stderr:\n{}",
            server.logs()
        );
        thread::sleep(POLL_INTERVAL);
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited with requests in flight"
    );

    for release in http1_releases {
        release.send(()).expect("an HTTP/1.1 worker waiting");
    }
    for release in http2_releases {
        release.send(()).expect("an HTTP/2 request waiting");
    }
    for (index, worker) in http1_workers.into_iter().enumerate() {
        let (uid, reply) = worker.join().expect("worker thread").unwrap_or_else(|e| {
            panic!(
                "HTTP/1.1 request {index} was lost: {e}; stderr:\n{}",
                server.logs()
            )
        });
        check_numbered_answer(index, &uid, reply.status, &reply.body, &server);
    }
    for (offset, request) in http2_requests.into_iter().enumerate() {
        let index = HTTP1_IN_FLIGHT + offset;
        let (uid, status, body) = runtime
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, request).await })
            .unwrap_or_else(|_| panic!("HTTP/2 request {index}: no answer"))
            .expect("request task")
            .unwrap_or_else(|e| {
                panic!(
                    "HTTP/2 request {index} was lost: {e}; stderr:\n{}",
                    server.logs()
                )
            });
        check_numbered_answer(index, &uid, status, &body, &server);
    }
    drop(h2);
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.logs()
    );
}

// ---------------------------------------------------------------------------------------
// Tests: Events, against a fake API server
// ---------------------------------------------------------------------------------------

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true"}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn namespace(name: &str, mode: Option<&str>) -> Value {
    let mut namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "resourceVersion": "1"}});
    if let Some(mode) = mode {
        namespace["metadata"]["labels"] = json!({"virt-preflight.io/mode": mode});
    }
    namespace
}

fn kubeconfig(path: &Path, server_url: &str) -> PathBuf {
    write_file(
        path,
        &format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server_url}
users:
- name: tester
  user: {{}}
contexts:
- name: fake
  context:
    cluster: fake
    user: tester
    namespace: default
current-context: fake
"
        ),
    )
}

const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warned_findings_become_events_but_dry_runs_do_not() {
    install_crypto();
    let api = FakeApi::start(
        vec![
            ("/api/v1/nodes", vec![node("worker-1")]),
            (
                "/api/v1/namespaces",
                vec![
                    namespace("default", None),
                    namespace("quiet", Some("audit")),
                ],
            ),
        ],
        &[],
    )
    .await;
    let dir = tempdir();
    let config = kubeconfig(&dir.path().join("kubeconfig"), &api.url);
    let server = tokio::task::spawn_blocking(move || {
        Server::start(
            vec!["--kubeconfig".into(), config.into()],
            &[("POD_NAME", "virt-preflight-7d9f-abcde")],
        )
    })
    .await
    .expect("start the server");
    let https = server.https();
    https.wait_ready().await;

    let valid = valid_vm();
    assert_clean_allow(
        &https.review(&ReviewRequest::create(&valid)).await,
        "valid VM, live view",
    );

    // None of these makes an Event: a dry run, a denial, a DELETE.
    let dry = named(with_latest_image(valid_vm()), "dry-run-vm");
    let response = https.review(&ReviewRequest::create(&dry).dry_run()).await;
    assert_allowed(&response, "dry run");
    assert_eq!(warnings(&response).len(), 1, "{response}");
    let denied = named(with_disk_without_volume(valid_vm(), "data"), "denied-vm");
    denial(
        &https.review(&ReviewRequest::create(&denied)).await,
        "denied",
    );
    assert_clean_allow(
        &https.review(&ReviewRequest::delete(&denied)).await,
        "DELETE",
    );

    // These do: a warned finding, and a finding audited in a namespace labelled audit.
    let warned = named(with_latest_image(valid_vm()), "warned-vm");
    let response = https.review(&ReviewRequest::create(&warned)).await;
    assert_allowed(&response, "warned");
    assert_eq!(warnings(&response).len(), 1, "{response}");
    let warning = line(&findings_of(&warned, None)[0]);
    let audited = in_namespace(
        named(with_disk_without_volume(valid_vm(), "data"), "audited-vm"),
        "quiet",
    );
    assert_clean_allow(
        &https.review(&ReviewRequest::create(&audited)).await,
        "audited",
    );

    // Events are sent in order, one at a time: once the last one is in, any Event for the
    // earlier requests would be too.
    let deadline = Instant::now() + EVENTUAL_TIMEOUT;
    let posted = loop {
        let posted: Vec<_> = api
            .seen()
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect();
        if posted
            .iter()
            .any(|s| s.path.ends_with("/namespaces/quiet/events"))
        {
            break posted;
        }
        assert!(
            Instant::now() < deadline,
            "no Event for audited-vm within {EVENTUAL_TIMEOUT:?}: {posted:?}; stderr:\n{}",
            server.logs()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    assert_eq!(posted.len(), 2, "exactly two Events: {posted:#?}");
    assert!(posted.iter().all(|s| s.method == "POST"), "{posted:#?}");
    assert_eq!(api.seen_with("POST", EVENTS_PATH).len(), 1);

    let event = posted[0].body.clone().expect("the Event is JSON");
    assert_eq!(posted[0].path, EVENTS_PATH);
    assert_eq!(event["apiVersion"], "events.k8s.io/v1", "{event:#}");
    assert_eq!(event["kind"], "Event", "{event:#}");
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert_eq!(event["reason"], "PreflightFindings", "{event:#}");
    assert_eq!(event["reportingController"], "virt-preflight", "{event:#}");
    assert_eq!(
        event["reportingInstance"], "virt-preflight-7d9f-abcde",
        "{event:#}"
    );
    assert_eq!(event["metadata"]["namespace"], "default", "{event:#}");
    assert_eq!(
        event["regarding"],
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "namespace": "default",
            "name": "warned-vm",
            "uid": warned["metadata"]["uid"],
        }),
        "{event:#}"
    );
    let note = event["note"].as_str().expect("a note");
    assert_eq!(note, format!("1 finding(s): {warning}"));

    let event = posted[1].body.clone().expect("the Event is JSON");
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert_eq!(event["reason"], "PreflightFindings", "{event:#}");
    assert_eq!(event["regarding"]["name"], "audited-vm", "{event:#}");
    assert_eq!(event["regarding"]["namespace"], "quiet", "{event:#}");
    let note = event["note"].as_str().expect("a note");
    assert!(note.contains("[disk-without-volume] "), "{note:?}");

    let deadline = Instant::now() + EVENTUAL_TIMEOUT;
    loop {
        let metrics = https.metrics().await;
        if metrics.value("virt_preflight_events_sent_total", &[]) == 2.0 {
            assert_eq!(
                metrics.value("virt_preflight_events_dropped_total", &[]),
                0.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events_sent never reached 2:\n{}",
            metrics.text
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
