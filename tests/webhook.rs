//! The webhook binary end to end: the real `virt-preflight serve` on 127.0.0.1, with a
//! certificate made by `virt-preflight certs`, spoken to over HTTPS by a client that trusts
//! only that certificate's CA (where the API server stands). Only what needs the process and
//! real TLS is here: the flags, the HTTPS and metrics ports, TLS itself, certificate rotation
//! without a restart, shutdown with requests in flight, and Events sent to an API server. The
//! admission semantics (policies, rules, ratchet, limits, malformed requests, metrics) are
//! tested in process in tests/admission.rs.
//!
//! Every test starts its own server process (killed when the test ends). Two clients are used:
//! a hyper client (HTTP/2 by ALPN, as the API server speaks to webhooks), and a small blocking
//! HTTP/1.1-over-rustls client for what needs one connection in hand: the certificate a
//! connection got, a connection kept open across a certificate swap, and
//! `Expect: 100-continue` requests held in flight across SIGTERM (next to HTTP/2 streams held
//! the same way).
//!
//! Waits are bounded polls with a message saying what did not happen; there are no sleeps
//! that a test's outcome depends on.

mod support;
use support::review;

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
use review::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::fake_api::FakeApi;
use virt_preflight::cluster::snapshot;
use virt_preflight::manifest::ReadOptions;
use virt_preflight::rules::finding::Severity;

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

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        reply.review_response(request, &uid)
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
                // `ok`, and what a view that cannot read some kinds leaves unchecked.
                assert!(reply.text().starts_with("ok"), "{}", reply.text());
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
// Tests: the process, its flags and its two ports
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reviews_over_https_with_the_policy_and_snapshot_of_its_flags() {
    // --cluster-state and --config, as a deployment passes them: the policy warns, the
    // namespace team-enforce is labelled enforce, the snapshot has the Secrets.
    let cluster_file = fixture("cluster.yaml");
    let view = snapshot::read(&[&cluster_file], ReadOptions::default()).view;
    let server = Server::with_snapshot(&cluster_file, Some(&fixture("policy-warn.yaml")));
    let https = server.https();
    let health = https.get("/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok")
    );
    https.wait_ready().await;

    let uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let body = serde_json::to_vec(&ReviewRequest::create(&valid_vm()).to_json(uid)).unwrap();
    let reply = https.post_validate(Some("application/json"), body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": true, "status": {}}
        })
    );

    // A Secret missing from the snapshot: warned by the policy file's mode...
    let missing = with_cloud_init_secret(valid_vm(), "fedora-cloudinit");
    let response = https.review(&ReviewRequest::create(&missing)).await;
    assert_verdict(&response, &missing, Some(&view), |_| false, "policy: warn");
    assert!(
        warnings(&response)[0].starts_with("[secret-not-found] "),
        "{response}"
    );
    // ... and denied where the snapshot's namespace label says enforce.
    let enforced = in_namespace(missing, "team-enforce");
    let response = https.review(&ReviewRequest::create(&enforced)).await;
    assert_verdict(
        &response,
        &enforced,
        Some(&view),
        |f| f.severity == Severity::Error,
        "namespace label: enforce",
    );

    // The metrics port, plain HTTP.
    let metrics = https.metrics().await;
    for (result, count) in [("allowed", 1.0), ("warned", 1.0), ("denied", 1.0)] {
        assert_eq!(
            metrics.requests("CREATE", result),
            count,
            "{}",
            metrics.text
        );
    }
    assert_eq!(
        metrics.findings("secret-not-found", "deny"),
        1.0,
        "{}",
        metrics.text
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
            "--tls-reload".into(),
            "1s".into(),
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
            "--shutdown-grace".into(),
            "10s".into(),
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
