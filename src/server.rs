//! `virt-preflight serve`: the validating webhook over rustls, health endpoints on the same
//! port, Prometheus metrics on a plain-HTTP port.
//!
//! The request path reads the body (bounded), parses the review, and runs the pure
//! [`admission::review`] against the cluster view as it is in memory: in place for a body of
//! typical size, on a blocking thread under a deadline for a large one. It never calls the API
//! server, never waits on a cache, and answers "allowed" if anything goes wrong inside,
//! a panic included (the webhook is `failurePolicy: Ignore` in spirit too).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::LengthLimitError;
use tracing::{error, info, warn};

use crate::admission::{self, AdmissionRequest, EventRequest, Operation, Verdict};
use crate::cluster::ClusterView;
use crate::cluster::live::LiveView;
use crate::events::EventQueue;
use crate::metrics::{FindingLabels, Metrics, RequestLabels, RequestResult};
use crate::policy::{Mode, Policy};
use crate::tls::ReloadingCert;

/// Largest AdmissionReview accepted (an UPDATE carries the object twice).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Internal deadline, well under the webhook's `timeoutSeconds: 5`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(1500);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub view: LiveView,
    pub policy: Arc<Policy>,
    pub metrics: Arc<Metrics>,
    pub events: Option<EventQueue>,
    pub deadline: Duration,
    /// Set once the server is listening with a certificate.
    pub serving: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(
        view: LiveView,
        policy: Policy,
        metrics: Arc<Metrics>,
        events: Option<EventQueue>,
    ) -> Self {
        AppState {
            view,
            policy: Arc::new(policy),
            metrics,
            events,
            deadline: DEFAULT_DEADLINE,
            serving: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The HTTPS port's routes. The state is shared behind one `Arc`: every request takes a
/// handle on it, and one reference count is cheaper than one per field on two busy cores.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(state))
}

/// The metrics port's routes.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
}

/// The routes of `watch` (plain HTTP): metrics, liveness, and readiness once the VMs, VMIs
/// and the cluster view have been listed.
pub fn watcher_router(metrics: Arc<Metrics>, view: LiveView) -> Router {
    #[derive(Clone)]
    struct Watching {
        metrics: Arc<Metrics>,
        view: LiveView,
    }
    Router::new()
        .route(
            "/metrics",
            get(|State(w): State<Watching>| async move { scrape(&w.metrics, &w.view) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(w): State<Watching>| async move {
                if w.metrics.watcher_synced.get() == 1 && w.view.settled() {
                    "ok".into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "still listing").into_response()
                }
            }),
        )
        .with_state(Watching { metrics, view })
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.serving.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not serving yet").into_response();
    }
    if !state.view.settled() {
        let synced: Vec<&str> = state.view.synced().iter().map(|k| k.as_str()).collect();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cluster view still syncing (synced: {})", synced.join(", ")),
        )
            .into_response();
    }
    "ok".into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    scrape(&state.metrics, &state.view)
}

/// The text exposition, with the view's sync state as of this scrape.
fn scrape(metrics: &Metrics, view: &LiveView) -> Response {
    metrics.set_view(&view.current());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn count_request(state: &AppState, operation: Operation, result: RequestResult) {
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { operation, result })
        .inc();
}

/// Takes the request whole, rather than through extractors, so that the headers are read in
/// place (not copied) and the content type is checked before the body is read.
async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if !is_json(&parts.headers) {
        count_request(&state, Operation::Other, RequestResult::Error);
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json (an admission.k8s.io/v1 AdmissionReview)",
        )
            .into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            count_request(&state, Operation::Other, RequestResult::Error);
            let err = err.into_inner();
            return if err.is::<LengthLimitError>() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("AdmissionReview larger than {MAX_BODY_BYTES} bytes"),
                )
                    .into_response()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {err}"),
                )
                    .into_response()
            };
        }
    };
    let request = match admission::parse_review(&body) {
        Ok(request) => request,
        Err(err) => {
            count_request(&state, Operation::Other, RequestResult::Error);
            return (
                StatusCode::BAD_REQUEST,
                format!("malformed AdmissionReview: {err}"),
            )
                .into_response();
        }
    };
    let verdict = decide(&state, request, body.len()).await;
    let result = if !verdict.allowed {
        RequestResult::Denied
    } else if !verdict.warnings.is_empty() {
        RequestResult::Warned
    } else {
        RequestResult::Allowed
    };
    count_request(&state, verdict.operation, result);
    for judged in &verdict.judged {
        state
            .metrics
            .findings
            .get_or_create(&FindingLabels {
                rule: judged.finding.rule,
                action: judged.action,
            })
            .inc();
    }
    let response = axum::Json(verdict.to_review()).into_response();
    state
        .metrics
        .latency
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Reviews of bodies up to this size run on the async worker that read them. Their cost is
/// bounded by their size (about 20 µs for a typical VM), less than handing them to another
/// thread; larger ones go to the blocking pool, under the deadline.
pub const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Why a review gave no verdict (the request is then allowed).
#[derive(Debug, Clone, Copy)]
enum Failure {
    Internal,
    Deadline,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Internal => "internal error",
            Failure::Deadline => "deadline exceeded",
        }
    }
}

type Reviewed = (Verdict, Option<EventRequest>);

/// The pure review and its Event; a panic inside becomes a failure, not a dropped connection.
fn review_guarded(
    request: &AdmissionRequest,
    view: &ClusterView,
    policy: &Policy,
) -> Result<Reviewed, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let verdict = admission::review(request, Some(view), policy);
        let event = admission::event_for(&verdict, request);
        (verdict, event)
    }))
    .map_err(|_| Failure::Internal)
}

/// Reviews the request against the view as it is now; any failure inside allows.
async fn decide(state: &AppState, request: AdmissionRequest, body_len: usize) -> Verdict {
    let view = state.view.current();
    if body_len <= INLINE_BODY_BYTES {
        let outcome = review_guarded(&request, &view, &state.policy);
        return deliver(state, outcome, &request, &view);
    }
    // Only the blocking pool needs the request shared (and kept for a verdict past the deadline).
    let request = Arc::new(request);
    let (job_request, job_view, job_policy) = (request.clone(), view.clone(), state.policy.clone());
    let job =
        tokio::task::spawn_blocking(move || review_guarded(&job_request, &job_view, &job_policy));
    let outcome = match tokio::time::timeout(state.deadline, job).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(Failure::Internal),
        Err(_) => Err(Failure::Deadline),
    };
    deliver(state, outcome, &request, &view)
}

/// Queues the review's Event, or turns a failure into an allowing verdict.
fn deliver(
    state: &AppState,
    outcome: Result<Reviewed, Failure>,
    request: &AdmissionRequest,
    view: &ClusterView,
) -> Verdict {
    let failure = match outcome {
        Ok((verdict, event)) => {
            if let (Some(event), Some(queue)) = (event, &state.events) {
                queue.offer(event);
            }
            return verdict;
        }
        Err(failure) => failure,
    };
    match failure {
        Failure::Internal => error!(uid = %request.uid, "review failed; allowing"),
        Failure::Deadline => {
            state.metrics.deadline_exceeded.inc();
            warn!(uid = %request.uid, "review passed the deadline; allowing");
        }
    }
    // Audit mode promises an empty response, failures included.
    let mode = admission::mode_for_request(request, Some(view), &state.policy);
    let warnings = if mode == Mode::Audit {
        Vec::new()
    } else {
        vec![format!(
            "[virt-preflight] not checked: {}",
            failure.as_str()
        )]
    };
    Verdict {
        uid: request.uid.clone(),
        allowed: true,
        warnings,
        operation: request.operation,
        mode: Some(mode),
        ..Verdict::default()
    }
}

/// Where and how to serve.
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub cert: Arc<ReloadingCert>,
    /// How long in-flight requests get to finish after the shutdown signal.
    pub grace: Duration,
}

/// Serves until `shutdown` completes, then stops accepting and lets in-flight requests finish.
/// `on_listening` receives the bound addresses (HTTPS, metrics).
pub async fn serve(
    options: ServeOptions,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr, Option<SocketAddr>) + Send + 'static,
) -> std::io::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(crate::tls::server_config(
        options.cert.clone(),
    ));
    let handle = axum_server::Handle::new();

    let metrics_listener = match options.metrics_addr {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = metrics_listener {
        let app = metrics_router(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = metrics_stopped.await;
                })
                .await;
        });
    }

    let https = axum_server::bind_rustls(options.addr, tls).handle(handle.clone());
    let serving = state.serving.clone();
    let app = router(state);
    let watcher = handle.clone();
    let grace = options.grace;
    tokio::spawn(async move {
        if let Some(addr) = watcher.listening().await {
            serving.store(true, Ordering::Release);
            info!(%addr, "webhook listening (TLS)");
            on_listening(addr, metrics_addr);
        }
        shutdown.await;
        info!("shutting down: finishing in-flight requests");
        serving.store(false, Ordering::Release);
        watcher.graceful_shutdown(Some(grace));
    });
    let result = https.serve(app.into_make_service()).await;
    let _ = metrics_stop.send(());
    result
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when
/// the future is first polled, so a SIGTERM that arrives while the server is still binding is
/// not lost (nor does it kill the process with the default action). Call inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .inspect_err(|err| warn!(%err, "cannot listen for SIGTERM"))
        .ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = terminate => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app_state(policy: &str, deadline: Duration) -> AppState {
        let mut state = AppState::new(
            LiveView::fixed(ClusterView::default()),
            Policy::parse(policy).expect("policy"),
            Arc::new(Metrics::new()),
            None,
        );
        state.deadline = deadline;
        state
    }

    /// A CREATE review of a VM with `disks` disks, each with its volume.
    fn review_body(disks: usize) -> Vec<u8> {
        let names: Vec<String> = (0..disks).map(|i| format!("disk-{i}")).collect();
        let vm = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "vm1", "namespace": "ns"},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"memory": {"guest": "1Gi"}, "devices": {"disks":
                    names.iter().map(|n| json!({"name": n, "disk": {}})).collect::<Vec<_>>()}},
                "volumes": names.iter().map(|n| json!({"name": n,
                    "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}))
                    .collect::<Vec<_>>()
            }}}
        });
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "operation": "CREATE", "namespace": "ns",
                "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
                "object": vm}
        }))
        .expect("serialises")
    }

    async fn decide_body(state: &AppState, body: &[u8]) -> Verdict {
        let request = admission::parse_review(body).expect("review");
        decide(state, request, body.len()).await
    }

    #[tokio::test]
    async fn a_large_review_past_the_deadline_is_allowed_with_a_note() {
        let body = review_body(2_000);
        assert!(body.len() > INLINE_BODY_BYTES);
        let state = app_state("mode: enforce", Duration::ZERO);
        let verdict = decide_body(&state, &body).await;
        assert!(verdict.allowed && !verdict.evaluated);
        assert_eq!(
            verdict.warnings,
            vec!["[virt-preflight] not checked: deadline exceeded".to_string()]
        );
        assert_eq!(state.metrics.deadline_exceeded.get(), 1);
        // Audit mode puts nothing in the response, failures included.
        let audit = decide_body(&app_state("mode: audit", Duration::ZERO), &body).await;
        assert!(audit.allowed && audit.warnings.is_empty());
        // Within the deadline, the same review is done.
        let done = decide_body(&app_state("mode: enforce", DEFAULT_DEADLINE), &body).await;
        assert!(done.evaluated && done.warnings.is_empty(), "{done:?}");
    }

    #[tokio::test]
    async fn a_typical_review_is_done_in_place_whatever_the_deadline() {
        let body = review_body(2);
        assert!(body.len() <= INLINE_BODY_BYTES);
        let state = app_state("mode: enforce", Duration::ZERO);
        let verdict = decide_body(&state, &body).await;
        assert!(verdict.allowed && verdict.evaluated, "{verdict:?}");
        assert!(verdict.warnings.is_empty(), "{verdict:?}");
        assert_eq!(state.metrics.deadline_exceeded.get(), 0);
    }
}
