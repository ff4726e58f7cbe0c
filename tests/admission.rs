//! The webhook's admission semantics, in process: the router `serve` runs
//! (`server::router`), driven request by request with `tower::ServiceExt::oneshot`, with the
//! policy and cluster view the flags would give it. What only the binary over real HTTPS shows
//! (TLS, certificate rotation, shutdown, the flags, Events sent to an API server) is in
//! tests/webhook.rs.
//!
//! The per-rule tests reuse the broken VMs of tests/fixtures/rules (one per rule, see
//! tests/rule_fixtures.rs); the rest of the fixtures are in tests/fixtures/webhook.

mod support;
use support::review;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use review::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use virt_preflight::cluster::live::LiveView;
use virt_preflight::cluster::{ClusterView, snapshot};
use virt_preflight::manifest::ReadOptions;
use virt_preflight::metrics;
use virt_preflight::policy::Policy;
use virt_preflight::rules::REGISTRY;
use virt_preflight::rules::finding::{Finding, Severity};
use virt_preflight::server::{self, AppState};

/// The webhook as `serve --cluster-state FILE [--config FILE]` builds it, without the
/// listener: the same router, state and metrics.
struct App {
    router: Router,
    metrics_router: Router,
    state: AppState,
}

impl App {
    /// The snapshot `cluster` and the policy file `config` (none: the default policy).
    fn with_snapshot(cluster: &Path, config: Option<&Path>) -> App {
        let snapshot = snapshot::read(&[cluster], ReadOptions::default());
        assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
        let policy = config.map_or_else(Policy::default, |path| {
            Policy::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        });
        let state = AppState::new(
            LiveView::fixed(snapshot.view),
            policy,
            Arc::new(metrics::Metrics::new()),
            None,
        );
        App {
            router: server::router(state.clone()),
            metrics_router: server::metrics_router(state.clone()),
            state,
        }
    }

    /// Spec rules only (an empty snapshot), with the policy file `config`.
    fn spec_only(config: Option<&Path>) -> App {
        App::with_snapshot(&fixture("no-cluster.yaml"), config)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Body::from(body.into()))
            .expect("a valid request");
        let router = if path == "/metrics" {
            &self.metrics_router
        } else {
            &self.router
        };
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the body reads")
            .to_bytes();
        Reply {
            status,
            content_type,
            body,
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
        let reply = self.get("/metrics").await;
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
}

/// Sends every spec rule's broken VM and checks the verdict; `denies` says which findings the
/// policy denies (the others must warn). Returns how many.
async fn check_every_spec_rule(app: &App, denies: impl Fn(&Finding) -> bool) -> usize {
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
        let response = app.review(&ReviewRequest::create(&vm)).await;
        assert_verdict(&response, &vm, None, &denies, rule.name);
        checked += 1;
    }
    checked
}

#[tokio::test]
async fn health_readiness_and_a_valid_vm_allowed_with_its_uid_echoed() {
    let app = App::spec_only(None);
    let health = app.get("/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok")
    );
    // Ready once serving (the listener sets it) and the view has settled (a snapshot has).
    let ready = app.get("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text()
    );
    app.state.serving.store(true, Ordering::Release);
    let ready = app.get("/readyz").await;
    // Ready, and it says what a view that knows no kind cannot check.
    assert_eq!(ready.status, StatusCode::OK);
    assert!(
        ready
            .text()
            .starts_with("ok; not checked (kinds unknown: Node, ")
            && ready.text().contains("secret-not-found"),
        "{}",
        ready.text()
    );

    let vm = valid_vm();
    assert!(
        findings_of(&vm, None).is_empty(),
        "vm-valid.yaml has findings"
    );
    let uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let body = serde_json::to_vec(&ReviewRequest::create(&vm).to_json(uid)).unwrap();
    let reply = app.post_validate(Some("application/json"), body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": true, "status": {}}
        })
    );
    let update = app.review(&ReviewRequest::update(&vm, &vm)).await;
    assert_clean_allow(&update, "UPDATE of a valid VM");
}

#[tokio::test]
async fn each_spec_rule_denies_or_warns_by_its_severity_under_the_default_policy() {
    let app = App::spec_only(None);
    let checked = check_every_spec_rule(&app, |f| f.severity == Severity::Error).await;
    assert_eq!(checked, spec_rules().count());
    assert!(checked >= 20, "only {checked} spec rules");
}

#[tokio::test]
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
    let app = App::spec_only(Some(&flipped));
    let checked = check_every_spec_rule(&app, |f| f.severity == Severity::Warning).await;
    assert_eq!(checked, spec_rules().count());

    // Every rule off: nothing is said about any VM.
    let mut off = String::from("rules:\n");
    for rule in REGISTRY {
        off.push_str(&format!("  {}: \"off\"\n", rule.name));
    }
    let off = write_file(&dir.path().join("off.yaml"), &off);
    let app = App::spec_only(Some(&off));
    for rule in spec_rules() {
        let (_, vm) = broken_fixture(rule);
        let response = app.review(&ReviewRequest::create(&vm)).await;
        assert_clean_allow(&response, rule.name);
    }
    let metrics = app.metrics().await;
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
    let app = App::spec_only(Some(&partial));
    let vm = with_disk_without_volume(with_bad_run_strategy(with_latest_image(valid_vm())), "data");
    let response = app.review(&ReviewRequest::create(&vm)).await;
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
        warned[0].starts_with("[run-strategy-invalid] ")
            && warned[0].ends_with(" — spec.runStrategy"),
        "{warned:?}"
    );

    let mut skipping = vm.clone();
    skipping["metadata"]["annotations"] = json!({"virt-preflight.io/skip": "disk-without-volume"});
    let response = app.review(&ReviewRequest::create(&skipping)).await;
    assert_allowed(&response, "skip annotation");
    assert_eq!(warnings(&response), warned);
}

#[tokio::test]
async fn policy_modes_enforce_warn_and_audit() {
    let vm = with_latest_image(with_disk_without_volume(valid_vm(), "data"));
    let findings = findings_of(&vm, None);
    let lines: Vec<String> = findings.iter().map(line).collect();
    assert_eq!(findings.len(), 2, "{lines:?}");
    let error_line = "[disk-without-volume] disk \"data\" names no volume: add that volume or fix \
                      the name — spec.template.spec.domain.devices.disks[2].name";
    assert!(lines.contains(&error_line.to_string()), "{lines:?}");
    let warning_line = lines
        .iter()
        .find(|l| {
            l.starts_with("[image-tag-latest] ")
                && l.ends_with(" — spec.template.spec.volumes[0].containerDisk.image")
        })
        .unwrap_or_else(|| panic!("no image-tag-latest finding: {lines:?}"))
        .clone();

    // enforce: the error denies (403 with its one-line form), the warning warns.
    let app = App::spec_only(Some(&fixture("policy-enforce.yaml")));
    let response = app.review(&ReviewRequest::create(&vm)).await;
    assert_eq!(
        denial(&response, "enforce"),
        format!("{DENIAL_PREFIX} (1 finding): {error_line}")
    );
    assert_eq!(warnings(&response), vec![cut(&warning_line)]);
    let response = app.review(&ReviewRequest::create(&unreadable_vm())).await;
    assert_allowed(&response, "enforce, unreadable VM");
    assert_eq!(warnings(&response), vec![NOT_CHECKED.to_string()]);

    // warn: everything warns, nothing denies.
    let app = App::spec_only(Some(&fixture("policy-warn.yaml")));
    let response = app.review(&ReviewRequest::create(&vm)).await;
    assert_allowed(&response, "warn");
    assert_eq!(
        sorted(warnings(&response)),
        sorted(lines.iter().map(|l| cut(l)).collect())
    );
    let metrics = app.metrics().await;
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
    let response = app.review(&ReviewRequest::create(&unreadable_vm())).await;
    assert_allowed(&response, "warn, unreadable VM");
    assert_eq!(warnings(&response), vec![NOT_CHECKED.to_string()]);

    // audit: nothing in the response; the findings are counted.
    let app = App::spec_only(Some(&fixture("policy-audit.yaml")));
    let response = app.review(&ReviewRequest::create(&vm)).await;
    assert_clean_allow(&response, "audit");
    let metrics = app.metrics().await;
    for rule in ["disk-without-volume", "image-tag-latest"] {
        assert_eq!(metrics.findings(rule, "audit"), 1.0, "{}", metrics.text);
    }
    assert_eq!(
        metrics.requests("CREATE", "allowed"),
        1.0,
        "{}",
        metrics.text
    );
    // Not even the note that a VM could not be read.
    let response = app.review(&ReviewRequest::create(&unreadable_vm())).await;
    assert_clean_allow(&response, "audit, unreadable VM");
}

#[tokio::test]
async fn a_namespace_label_overrides_the_policy_mode() {
    // The policy says warn; team-enforce and team-audit say otherwise by label.
    let cluster_file = fixture("cluster.yaml");
    let view = snapshot::read(&[&cluster_file], ReadOptions::default()).view;
    let app = App::with_snapshot(&cluster_file, Some(&fixture("policy-warn.yaml")));
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
        let response = app.review(&ReviewRequest::create(&vm)).await;
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

#[tokio::test]
async fn a_cluster_rule_denies_from_a_cluster_state_snapshot() {
    let cluster_file = fixture("cluster.yaml");
    let view: ClusterView = snapshot::read(&[&cluster_file], ReadOptions::default()).view;
    let app = App::with_snapshot(&cluster_file, None);

    // The Secret is fedora-cloud-init; the VM names fedora-cloudinit.
    let missing = with_cloud_init_secret(valid_vm(), "fedora-cloudinit");
    let response = app.review(&ReviewRequest::create(&missing)).await;
    let message = denial(&response, "missing Secret");
    assert!(
        message.contains(" — spec.template.spec.volumes[1].cloudInitNoCloud.secretRef.name")
            && message.contains("[secret-not-found] "),
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
        &app.review(&ReviewRequest::create(&present)).await,
        "existing Secret",
    );

    // Secrets are namespaced: the same name in another namespace does not exist.
    let elsewhere = in_namespace(present.clone(), "team-enforce");
    let message = denial(
        &app.review(&ReviewRequest::create(&elsewhere)).await,
        "other namespace",
    );
    assert!(message.contains("[secret-not-found] "), "{message}");

    // Without the Secrets in the view, the rule says nothing: never deny on unknown data.
    let response = App::spec_only(None)
        .review(&ReviewRequest::create(&missing))
        .await;
    assert_clean_allow(&response, "no cluster view");
}

#[tokio::test]
async fn warnings_obey_the_api_server_limits() {
    let app = App::spec_only(Some(&fixture("policy-warn.yaml")));
    // 150 disks without volumes, far more than 4,096 characters of warnings, and a run
    // strategy with a line break in it.
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

    let response = app.review(&ReviewRequest::create(&vm)).await;
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

#[tokio::test]
async fn update_is_denied_only_for_findings_the_old_object_did_not_have() {
    let app = App::spec_only(None);
    let valid = valid_vm();
    let broken = with_disk_without_volume(valid_vm(), "data");
    let broken_line = line(&findings_of(&broken, None)[0]);

    // Unchanged finding: it may warn, not deny (a label edit on a broken VM goes through).
    let mut relabelled = broken.clone();
    relabelled["metadata"]["labels"]["team"] = json!("blue");
    let response = app
        .review(&ReviewRequest::update(&broken, &relabelled))
        .await;
    assert_allowed(&response, "pre-existing finding");
    assert_eq!(warnings(&response), vec![cut(&broken_line)]);

    // A new finding denies.
    let response = app.review(&ReviewRequest::update(&valid, &broken)).await;
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
    let response = app.review(&ReviewRequest::update(&broken, &worse)).await;
    assert_eq!(
        denial(&response, "old and new"),
        denial_message(std::slice::from_ref(&new_line))
    );
    assert_eq!(warnings(&response), vec![cut(&broken_line)]);

    // A fix is allowed and says nothing.
    assert_clean_allow(
        &app.review(&ReviewRequest::update(&broken, &valid)).await,
        "fixing update",
    );
    // The same object on CREATE is denied: ratcheting is for UPDATE only.
    denial(&app.review(&ReviewRequest::create(&broken)).await, "CREATE");
}

#[tokio::test]
async fn a_vm_being_deleted_is_never_denied() {
    let app = App::spec_only(None);
    let valid = valid_vm();
    let mut deleting = with_bad_run_strategy(with_disk_without_volume(valid_vm(), "data"));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-24T10:00:00Z");
    deleting["metadata"]["finalizers"] = json!([]);

    // A finalizer's update of a VM being deleted, with findings the old object did not have.
    let response = app.review(&ReviewRequest::update(&valid, &deleting)).await;
    assert_allowed(&response, "update of a VM being deleted");
    let mut old = deleting.clone();
    old["metadata"]["finalizers"] = json!(["kubevirt.io/virtualMachineControllerFinalize"]);
    let response = app.review(&ReviewRequest::update(&old, &deleting)).await;
    assert_allowed(&response, "finalizer removal");

    // DELETE itself (object null, oldObject the VM), even if dry run.
    let broken = with_disk_without_volume(valid_vm(), "data");
    assert_clean_allow(&app.review(&ReviewRequest::delete(&broken)).await, "DELETE");
    assert_clean_allow(
        &app.review(&ReviewRequest::delete(&broken).dry_run()).await,
        "DELETE dry run",
    );
}

#[tokio::test]
async fn dry_run_requests_are_evaluated_the_same() {
    let app = App::spec_only(None);
    let broken = with_latest_image(with_disk_without_volume(valid_vm(), "data"));
    let warned_only = with_latest_image(valid_vm());
    for (request, what) in [
        (ReviewRequest::create(&broken), "denied CREATE"),
        (ReviewRequest::create(&warned_only), "warned CREATE"),
        (ReviewRequest::update(&valid_vm(), &broken), "denied UPDATE"),
        (ReviewRequest::create(&valid_vm()), "clean CREATE"),
    ] {
        let wet = app.review(&request).await;
        let dry = app.review(&request.clone().dry_run()).await;
        let strip = |mut response: Value| {
            response.as_object_mut().unwrap().remove("uid");
            response
        };
        assert_eq!(strip(dry), strip(wet), "{what}");
    }
    let metrics = app.metrics().await;
    for ((operation, result), count) in [
        (("CREATE", "denied"), 2.0),
        (("CREATE", "warned"), 2.0),
        (("UPDATE", "denied"), 2.0),
        (("CREATE", "allowed"), 2.0),
    ] {
        assert_eq!(
            metrics.requests(operation, result),
            count,
            "{operation} {result}:\n{}",
            metrics.text
        );
    }
}

#[tokio::test]
async fn other_kinds_are_allowed_without_warnings() {
    let app = App::spec_only(None);
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
        assert_clean_allow(&app.review(&request).await, what);
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.value("virt_preflight_admission_findings_total", &[]),
        0.0,
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn malformed_oversized_and_wrongly_typed_requests_get_http_errors() {
    let app = App::spec_only(None);
    let json_type = Some("application/json");

    // 400: not a v1 AdmissionReview, saying why.
    let v1beta1 = {
        let mut review = ReviewRequest::create(&valid_vm()).to_json(&new_uid());
        review["apiVersion"] = json!("admission.k8s.io/v1beta1");
        serde_json::to_vec(&review).unwrap()
    };
    for (body, what, why) in [
        (
            b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\"".to_vec(),
            "truncated JSON",
            "EOF while parsing",
        ),
        (b"[1, 2, 3]".to_vec(), "a JSON array", "invalid type: sequence"),
        (v1beta1, "admission.k8s.io/v1beta1", "admission.k8s.io/v1beta1/AdmissionReview"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "no request",
            "AdmissionReview has no request",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{}}}"#
                .to_vec(),
            "a request without uid",
            "request.kind: missing field `group`",
        ),
    ] {
        let reply = app.post_validate(json_type, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.text());
        assert!(
            reply.text().starts_with("malformed AdmissionReview") && reply.text().contains(why),
            "{what}: {}",
            reply.text()
        );
    }

    // 415: not JSON by its content type.
    let valid_body =
        serde_json::to_vec(&ReviewRequest::create(&valid_vm()).to_json(&new_uid())).unwrap();
    for content_type in [Some("text/plain"), Some("application/yaml"), None] {
        let reply = app.post_validate(content_type, valid_body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {}",
            reply.text()
        );
    }
    // Parameters of the media type are fine.
    let response = app.review(&ReviewRequest::create(&valid_vm())).await;
    assert_clean_allow(&response, "plain application/json");
    let reply = app
        .post_validate(Some("application/json; charset=utf-8"), valid_body.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // 413: a body over 8 MiB.
    let mut huge = vec![b' '; MAX_BODY_BYTES + 1];
    huge[0] = b'{';
    huge[MAX_BODY_BYTES] = b'}';
    let reply = app.post_validate(json_type, huge).await;
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
    assert_clean_allow(&app.review(&request).await, "a 3 MiB UPDATE");

    let metrics = app.metrics().await;
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

#[tokio::test]
async fn metrics_count_requests_by_operation_and_result_and_findings_by_rule_and_action() {
    let app = App::spec_only(None);
    let before = app.metrics().await;
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
    app.review(&ReviewRequest::create(&valid)).await;
    app.review(&ReviewRequest::create(&warned)).await;
    app.review(&ReviewRequest::create(&denied)).await;
    app.review(&ReviewRequest::create(&denied).dry_run()).await;
    app.review(&ReviewRequest::update(&valid, &denied)).await;
    app.review(&ReviewRequest::update(&denied, &denied)).await;
    app.review(&ReviewRequest::delete(&denied)).await;
    app.post_validate(Some("application/json"), "{").await;

    let after = app.metrics().await;
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
    for ((rule, action), count) in [
        (("disk-without-volume", "deny"), 3.0),
        (("disk-without-volume", "warn"), 1.0),
        (("image-tag-latest", "warn"), 1.0),
    ] {
        assert_eq!(after.findings(rule, action), count, "{}", after.text);
    }
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
