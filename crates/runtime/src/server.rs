//! `virt-preflight serve`: the validating webhook over rustls, health endpoints on the same
//! port, Prometheus metrics on a plain-HTTP port.
//!
//! The request path reads the body (bounded), then reads the review from it and runs the pure
//! [`admission::review`] against the cluster view as it is in memory: in place for a body of
//! typical size, on a blocking thread under a deadline (reading included) for a large one. It
//! never waits on a cache. Its one call to the API server is the confirmation before a denial
//! for a missing object (metadata GETs, all at once, under a budget of 250 ms by default):
//! the view lags the API server, so only a confirmed absence denies. If anything goes wrong
//! once the request is read, a panic included, it answers "allowed" (the webhook is
//! `failurePolicy: Ignore` in spirit too); before that, an HTTP error, and the failurePolicy
//! decides.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::LengthLimitError;
use tracing::{error, info, warn};

use crate::admission::{self, ReviewError, Verdict};
use crate::cluster::ClusterView;
use crate::cluster::live::LiveView;
use crate::confirm::Confirmer;
use crate::events::EventQueue;
use crate::metrics::{
    ConfirmationLabels, ConfirmationResult, FindingLabels, Label, Metrics, OperationLabel,
    RequestLabels, RequestResult,
};
use crate::policy::{Mode, Policy};
use crate::tls::ServingCert;

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
    /// Asks the API server before a denial for a missing object; `None` for a fixed snapshot,
    /// which is the truth it was given.
    pub confirmer: Option<Confirmer>,
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
            confirmer: None,
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
                if w.metrics.watcher.synced.get() == 1 && w.view.settled() {
                    ready_detail(&w.view.current()).into_response()
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
    ready_detail(&state.view.current()).into_response()
}

/// `ok`, and what the view cannot check: the kinds it could not read (not served, or
/// forbidden, as deploy/overlays/least-privilege forbids Secrets) and the rules that then
/// report nothing. Still ready: the rest is checked.
fn ready_detail(view: &ClusterView) -> String {
    let coverage = crate::check::ClusterCoverage::of(Some(view));
    if coverage.skipped_rules.is_empty() {
        return "ok".to_string();
    }
    let kinds: Vec<&str> = coverage.unknown.iter().map(|k| k.as_str()).collect();
    let rules: Vec<&str> = coverage.skipped_rules.iter().map(|r| r.as_str()).collect();
    format!(
        "ok; not checked (kinds unknown: {}): {}",
        kinds.join(", "),
        rules.join(", ")
    )
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

fn count_request(state: &AppState, operation: OperationLabel, result: RequestResult) {
    state
        .metrics
        .admission
        .requests
        .get_or_create(&RequestLabels { operation, result })
        .inc();
}

/// A plain-text HTTP error: for a request that cannot be answered with an AdmissionReview.
fn http_error(state: &AppState, status: StatusCode, text: String) -> Response {
    count_request(state, OperationLabel::Unread, RequestResult::Error);
    (status, text).into_response()
}

/// Takes the request whole, rather than through extractors, so that the headers are read in
/// place (not copied) and the content type is checked before the body is read.
async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if !is_json(&parts.headers) {
        return http_error(
            &state,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json (an admission.k8s.io/v1 AdmissionReview)"
                .to_string(),
        );
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            let err = err.into_inner();
            return if err.is::<LengthLimitError>() {
                http_error(
                    &state,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("AdmissionReview larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                http_error(
                    &state,
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {err}"),
                )
            };
        }
    };
    let (request, mut verdict) = match decide(&state, body).await {
        Decided::Verdict(request, verdict) => (request, verdict),
        Decided::Malformed(err) => {
            return http_error(
                &state,
                StatusCode::BAD_REQUEST,
                format!("malformed AdmissionReview: {err}"),
            );
        }
        Decided::Unread(failure) => {
            return http_error(
                &state,
                failure.status(),
                format!("AdmissionReview not read: {}", failure.as_str()),
            );
        }
    };
    confirm(&state, &mut verdict).await;
    if let (Some(event), Some(queue)) = (admission::event_for(&verdict, &request), &state.events) {
        queue.offer(event);
    }
    let result = if !verdict.allowed {
        RequestResult::Denied
    } else if !verdict.warnings.is_empty() {
        RequestResult::Warned
    } else {
        RequestResult::Allowed
    };
    count_request(&state, OperationLabel::from(&request.operation), result);
    for judged in &verdict.judged {
        state
            .metrics
            .admission
            .findings
            .get_or_create(&FindingLabels {
                rule: Label(judged.finding.rule),
                action: Label(judged.action),
            })
            .inc();
    }
    let response = axum::Json(verdict.response(&request).into_review()).into_response();
    state
        .metrics
        .admission
        .latency
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Asks the API server for the objects a denial says are missing, all at once under the
/// confirmer's budget, and applies the answers (see [`Verdict::confirm`]).
async fn confirm(state: &AppState, verdict: &mut Verdict) {
    let Some(confirmer) = &state.confirmer else {
        return;
    };
    let keys = verdict.to_confirm();
    if keys.is_empty() {
        return;
    }
    let asked = Instant::now();
    let answers = confirmer.confirm(keys).await;
    state
        .metrics
        .admission
        .confirmation_latency
        .observe(asked.elapsed().as_secs_f64());
    for answer in answers.values() {
        state
            .metrics
            .admission
            .confirmations
            .get_or_create(&ConfirmationLabels {
                result: ConfirmationResult::from(answer),
            })
            .inc();
    }
    verdict.confirm(&answers);
}

/// Bodies up to this size are read and reviewed on the async worker that received them. Their
/// cost is bounded by their size (tens of µs for a typical VM), less than handing them to
/// another thread; larger ones go to the blocking pool, under the deadline.
pub const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Why a body got no verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
enum Failure {
    #[strum(serialize = "internal error")]
    Internal,
    #[strum(serialize = "deadline exceeded")]
    Deadline,
}

impl Failure {
    fn as_str(self) -> &'static str {
        self.into()
    }

    /// The HTTP status when not even the request could be read.
    fn status(self) -> StatusCode {
        match self {
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::Deadline => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// What became of a body.
enum Decided {
    /// The request and its verdict (an allowing one if the review failed or ran late).
    Verdict(Arc<admission::Request>, Verdict),
    /// Not a review: answered 400.
    Malformed(ReviewError),
    /// No request read, for `Failure`: answered with an HTTP error (the API server then applies
    /// the webhook's failurePolicy, Ignore).
    Unread(Failure),
}

/// The request, once read: what a failure after reading needs to still answer in-band.
type ReadSlot = Arc<OnceLock<Arc<admission::Request>>>;

/// Reads the body and reviews it, the pure part of a request: the request is put in `slot` as
/// soon as it is read. `Err` only for a panic inside (which must not drop the connection).
fn read_and_review(
    body: &[u8],
    view: &ClusterView,
    policy: &Policy,
    slot: &ReadSlot,
) -> Result<Result<Verdict, ReviewError>, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let request = Arc::new(admission::parse_review(body)?);
        let _ = slot.set(request.clone());
        Ok(admission::review(&request, Some(view), policy))
    }))
    .map_err(|_| Failure::Internal)
}

/// Reads and reviews a body against the view as it is now: in place for a typical one, on the
/// blocking pool under the deadline (reading included) for a large one.
async fn decide(state: &AppState, body: Bytes) -> Decided {
    let view = state.view.current();
    let slot = ReadSlot::default();
    let outcome = if body.len() <= INLINE_BODY_BYTES {
        read_and_review(&body, &view, &state.policy, &slot)
    } else {
        let (job_view, job_policy, job_slot) = (view.clone(), state.policy.clone(), slot.clone());
        let job = tokio::task::spawn_blocking(move || {
            read_and_review(&body, &job_view, &job_policy, &job_slot)
        });
        match tokio::time::timeout(state.deadline, job).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Failure::Internal),
            Err(_) => Err(Failure::Deadline),
        }
    };
    settle(state, &view, slot.get().cloned(), outcome)
}

/// Answers a failure: a request read by then is allowed (with a note, except in audit mode);
/// one not read gets an HTTP error.
fn settle(
    state: &AppState,
    view: &ClusterView,
    request: Option<Arc<admission::Request>>,
    outcome: Result<Result<Verdict, ReviewError>, Failure>,
) -> Decided {
    let failure = match outcome {
        Ok(Ok(verdict)) => {
            return match request {
                Some(request) => Decided::Verdict(request, verdict),
                None => Decided::Unread(Failure::Internal),
            };
        }
        Ok(Err(malformed)) => return Decided::Malformed(malformed),
        Err(failure) => failure,
    };
    if failure == Failure::Deadline {
        state.metrics.admission.deadline_exceeded.inc();
    }
    let Some(request) = request else {
        error!(reason = failure.as_str(), "no AdmissionReview read");
        return Decided::Unread(failure);
    };
    match failure {
        Failure::Internal => error!(uid = %request.uid, "review failed; allowing"),
        Failure::Deadline => warn!(uid = %request.uid, "review passed the deadline; allowing"),
    }
    // Audit mode promises an empty response, failures included.
    let mode = admission::mode_for_request(&request, Some(view), &state.policy);
    let mut verdict = Verdict::allow();
    verdict.mode = Some(mode);
    if mode != Mode::Audit {
        verdict.warnings.push(format!(
            "[virt-preflight] not checked: {}",
            failure.as_str()
        ));
    }
    Decided::Verdict(request, verdict)
}

/// Where and how to serve.
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub cert: Arc<ServingCert>,
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
    let tls = options.cert.config();
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
                "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
                "userInfo": {}, "object": vm}
        }))
        .expect("serialises")
    }

    async fn decide_body(state: &AppState, body: &[u8]) -> Decided {
        decide(state, Bytes::copy_from_slice(body)).await
    }

    fn verdict(decided: Decided) -> Verdict {
        match decided {
            Decided::Verdict(_, verdict) => verdict,
            Decided::Malformed(err) => panic!("malformed: {err}"),
            Decided::Unread(failure) => panic!("unread: {}", failure.as_str()),
        }
    }

    #[test]
    fn a_request_read_before_a_failure_is_allowed_with_a_note_one_not_read_is_not_answered() {
        let body = review_body(2);
        let read = Arc::new(admission::parse_review(&body).expect("review"));
        let view = ClusterView::default();
        for failure in [Failure::Deadline, Failure::Internal] {
            let state = app_state("mode: enforce", DEFAULT_DEADLINE);
            let allowed = verdict(settle(&state, &view, Some(read.clone()), Err(failure)));
            assert!(allowed.allowed && !allowed.evaluated);
            assert_eq!(
                allowed.warnings,
                vec![format!(
                    "[virt-preflight] not checked: {}",
                    failure.as_str()
                )]
            );
            // Audit mode puts nothing in the response, failures included.
            let audit = app_state("mode: audit", DEFAULT_DEADLINE);
            let quiet = verdict(settle(&audit, &view, Some(read.clone()), Err(failure)));
            assert!(quiet.allowed && quiet.warnings.is_empty());
            let unread = settle(&state, &view, None, Err(failure));
            assert!(matches!(unread, Decided::Unread(f) if f == failure));
            let counted = u64::from(failure == Failure::Deadline) * 2;
            assert_eq!(state.metrics.admission.deadline_exceeded.get(), counted);
        }
    }

    #[tokio::test]
    async fn a_large_review_is_read_and_done_under_the_deadline() {
        let body = review_body(2_000);
        assert!(body.len() > INLINE_BODY_BYTES);
        let done = verdict(decide_body(&app_state("mode: enforce", DEFAULT_DEADLINE), &body).await);
        assert!(done.evaluated && done.warnings.is_empty(), "{done:?}");
        // Reading a body this size takes milliseconds: with no time at all, it is not read
        // when the deadline passes, and the answer is an HTTP error (failurePolicy decides).
        let huge = review_body(60_000);
        let state = app_state("mode: enforce", Duration::ZERO);
        let decided = decide_body(&state, &huge).await;
        assert!(matches!(decided, Decided::Unread(Failure::Deadline)));
        assert_eq!(state.metrics.admission.deadline_exceeded.get(), 1);
    }

    #[tokio::test]
    async fn a_typical_review_is_done_in_place_whatever_the_deadline() {
        let body = review_body(2);
        assert!(body.len() <= INLINE_BODY_BYTES);
        let state = app_state("mode: enforce", Duration::ZERO);
        let verdict = verdict(decide_body(&state, &body).await);
        assert!(verdict.allowed && verdict.evaluated, "{verdict:?}");
        assert!(verdict.warnings.is_empty(), "{verdict:?}");
        assert_eq!(state.metrics.admission.deadline_exceeded.get(), 0);
    }

    #[tokio::test]
    async fn a_malformed_body_is_malformed_inline_or_not() {
        let state = app_state("mode: enforce", DEFAULT_DEADLINE);
        assert!(matches!(
            decide_body(&state, b"{").await,
            Decided::Malformed(_)
        ));
        let mut large = vec![b' '; INLINE_BODY_BYTES + 1];
        large[0] = b'[';
        large[INLINE_BODY_BYTES] = b']';
        assert!(matches!(
            decide_body(&state, &large).await,
            Decided::Malformed(_)
        ));
    }
}
