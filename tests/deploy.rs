//! The manifests in deploy/ render with kubectl's kustomize and say what the code needs: the
//! webhook never blocks the cluster, the pods run locked down, and the ClusterRole grants
//! exactly the reads that crates/runtime/src/cluster/live.rs makes, so RBAC cannot drift from the code.
//!
//! Needs `kubectl` on PATH (Debian: `apt-get install kubernetes-client`; `.ci/run` installs it).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use clap::Parser;
use serde_json::Value;
use virt_preflight::cli::ServeArgs;
use virt_preflight::cluster::KindSet;
use virt_preflight::cluster::live::api_resource;
use virt_preflight::policy::{Mode, Policy};
use virt_preflight::policy_report::{ReportApi, writer};

const NAMESPACE: &str = "virt-preflight";
const IMAGE: &str = "ghcr.io/virt-preflight/virt-preflight";

/// `kubectl kustomize DIR` (relative to the crate), parsed into its documents. kustomize must
/// warn about nothing: a deprecated field (`bases`, `patchesStrategicMerge`, ...) makes
/// `kubectl apply -k` print a warning on every apply.
fn kustomize(dir: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = match Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(root)
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not on PATH, and these tests render deploy/ with it: install \
             kubernetes-client (Debian: `apt-get install kubernetes-client`; .ci/run does this)"
        ),
        Err(err) => panic!("cannot run kubectl: {err}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl kustomize {dir} failed: {stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "kubectl kustomize {dir} warns: {stderr}"
    );
    let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|err| panic!("kubectl kustomize {dir} printed bad YAML: {err}"));
    assert!(
        !documents.is_empty(),
        "kubectl kustomize {dir} printed nothing"
    );
    documents
}

/// The base, rendered once for all tests.
fn base() -> &'static [Value] {
    static BASE: OnceLock<Vec<Value>> = OnceLock::new();
    BASE.get_or_init(|| kustomize("deploy"))
}

fn all_of<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found = all_of(documents, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found[0]
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_string()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The labels the Deployment gives its pods.
fn pod_labels() -> &'static serde_json::Map<String, Value> {
    one(base(), "Deployment")["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels")
}

fn selects_pods(match_labels: &Value) {
    let match_labels = match_labels.as_object().expect("matchLabels");
    assert!(!match_labels.is_empty());
    for (key, value) in match_labels {
        assert_eq!(pod_labels().get(key), Some(value), "selector {key}={value}");
    }
}

#[test]
fn every_kustomization_renders() {
    assert!(!base().is_empty());
    one(&kustomize("deploy/monitoring"), "ServiceMonitor");
    kustomize("deploy/overlays/cert-manager");
}

#[test]
fn namespaced_objects_are_in_the_namespace() {
    let namespace = one(base(), "Namespace");
    assert_eq!(namespace["metadata"]["name"], NAMESPACE);
    let cluster_scoped = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    ];
    for document in base() {
        let kind = document["kind"].as_str().expect("kind");
        if !cluster_scoped.contains(&kind) {
            assert_eq!(
                document["metadata"]["namespace"], NAMESPACE,
                "{kind} {}",
                document["metadata"]["name"]
            );
        }
    }
}

#[test]
fn webhook_never_blocks_and_matches_vms() {
    let configuration = one(base(), "ValidatingWebhookConfiguration");
    assert_eq!(configuration["metadata"]["name"], "virt-preflight");
    let webhooks = configuration["webhooks"].as_array().expect("webhooks");
    assert_eq!(webhooks.len(), 1);
    let webhook = &webhooks[0];
    assert_eq!(webhook["failurePolicy"], "Ignore");
    assert_eq!(webhook["timeoutSeconds"], 5);
    assert_eq!(webhook["sideEffects"], "NoneOnDryRun");
    assert_eq!(webhook["matchPolicy"], "Equivalent");
    assert_eq!(strings(&webhook["admissionReviewVersions"]), set(&["v1"]));

    let rules = webhook["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(strings(&rule["apiGroups"]), set(&["kubevirt.io"]));
    assert_eq!(strings(&rule["apiVersions"]), set(&["v1"]));
    assert_eq!(strings(&rule["operations"]), set(&["CREATE", "UPDATE"]));
    assert_eq!(strings(&rule["resources"]), set(&["virtualmachines"]));

    let expressions = webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("namespaceSelector.matchExpressions");
    let excluded: BTreeSet<String> = expressions
        .iter()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strings(&e["values"]))
        .collect();
    assert!(
        excluded.is_superset(&set(&["kube-system", NAMESPACE])),
        "namespaceSelector must leave out kube-system and {NAMESPACE}: {excluded:?}"
    );

    // The Service the webhook calls exists and serves 443 from the container's https port.
    let service_ref = &webhook["clientConfig"]["service"];
    assert_eq!(service_ref["name"], "virt-preflight");
    assert_eq!(service_ref["namespace"], NAMESPACE);
    assert_eq!(service_ref["path"], "/validate");
    assert_eq!(service_ref["port"], 443);
    let service = one(base(), "Service");
    assert_eq!(service["metadata"]["name"], service_ref["name"]);
    let ports = service["spec"]["ports"].as_array().expect("ports");
    let https = ports
        .iter()
        .find(|p| p["name"] == "https")
        .expect("https port");
    assert_eq!(https["port"], 443);
    assert_eq!(https["targetPort"], "https");
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("metrics port");
    assert_eq!(metrics["port"], 9090);
    assert_eq!(metrics["targetPort"], "metrics");
    selects_pods(&service["spec"]["selector"]);

    // No caBundle in the base: re-applying deploy/ must not wipe the one cert-manager or
    // `kubectl patch` filled in (certs/README.md).
    assert!(
        webhook["clientConfig"].get("caBundle").is_none(),
        "leave caBundle out of the base (see the comment in validatingwebhookconfiguration.yaml)"
    );
}

/// Parses the container's args with the real `serve` flags.
fn serve_args(args: &[String]) -> ServeArgs {
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    let argv = std::iter::once("virt-preflight".to_string()).chain(args[1..].iter().cloned());
    Serve::try_parse_from(argv)
        .unwrap_or_else(|err| panic!("the Deployment's args: {err}"))
        .args
}

#[test]
fn deployment_runs_locked_down() {
    let deployment = one(base(), "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    selects_pods(&spec["selector"]["matchLabels"]);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "virt-preflight");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(strings(&security["capabilities"]["drop"]), set(&["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    for key in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][key][resource].is_string(),
                "resources.{key}.{resource}"
            );
        }
    }

    // The image is the crate's version, so a release bumps both together.
    let image = container["image"].as_str().expect("image");
    assert_eq!(
        image,
        format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION")),
        "deploy/base/kustomization.yaml images: newTag is the crate version"
    );

    // The args are ones `serve` accepts, and they point into the mounted volumes.
    let args: Vec<String> = strings_in_order(&container["args"]);
    assert!(args.iter().any(|a| a == "--watch"), "serve --watch");
    let serve = serve_args(&args);
    assert!(serve.watch);
    // Leader election follows the pod's namespace, where the Role grants the Lease.
    let env = container["env"].as_array().expect("env");
    assert!(
        env.iter().any(|e| e["name"] == "POD_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "POD_NAMESPACE from the downward API"
    );
    assert!(!serve.watcher.no_leader_election);
    let mount = |name: &str| -> String {
        container["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no volumeMount {name}"))["mountPath"]
            .as_str()
            .expect("mountPath")
            .to_string()
    };
    let volume = |name: &str| -> &Value {
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let tls = mount("tls");
    assert_eq!(tls, "/tls");
    assert_eq!(volume("tls")["secret"]["secretName"], "virt-preflight-tls");
    assert_eq!(serve.tls_cert, Path::new(&tls).join("tls.crt"));
    assert_eq!(serve.tls_key, Path::new(&tls).join("tls.key"));
    let config = serve.config.as_ref().expect("--config");
    assert!(config.starts_with(mount("config")));
    let config_map = volume("config")["configMap"]["name"]
        .as_str()
        .expect("config volume from a ConfigMap");
    let policy = all_of(base(), "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == config_map)
        .unwrap_or_else(|| panic!("no ConfigMap {config_map} in deploy/"));
    let file = config.file_name().unwrap().to_str().unwrap();
    assert!(policy["data"][file].is_string(), "ConfigMap key {file}");

    // Ports and probes match the server's addresses.
    let port = |name: &str| -> u16 {
        let value = &container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no port {name}"))["containerPort"];
        value.as_u64().expect("containerPort") as u16
    };
    assert_eq!(port("https"), serve.addr.port());
    assert_eq!(port("metrics"), serve.metrics_addr.port());
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(get["port"], "https", "{probe}");
    }

    // SIGTERM gives in-flight reviews their grace before the kubelet kills the pod.
    let termination = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination > serve.shutdown_grace().as_secs(),
        "terminationGracePeriodSeconds {termination} must exceed --shutdown-grace {:?}",
        serve.shutdown_grace()
    );

    let budget = one(base(), "PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    selects_pods(&budget["spec"]["selector"]["matchLabels"]);
}

fn strings_in_order(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn shipped_policy_enforces_and_its_examples_are_valid() {
    let config_map = all_of(base(), "ConfigMap")
        .into_iter()
        .find(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("virt-preflight-policy"))
        })
        .expect("the policy ConfigMap");
    let text = config_map["data"]["policy.yaml"]
        .as_str()
        .expect("policy.yaml");
    let policy = Policy::parse(text).expect("the shipped policy parses");
    assert_eq!(policy.mode, Mode::Enforce);
    assert!(policy.rules.is_empty(), "no override is on by default");

    // The commented example overrides, uncommented, name real rules and settings.
    let uncommented: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# rules:"))
        .map_while(|l| l.strip_prefix("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(uncommented.starts_with("rules:"), "{uncommented}");
    let examples = Policy::parse(&uncommented)
        .unwrap_or_else(|err| panic!("the commented examples:\n{uncommented}\n{err}"));
    assert!(!examples.rules.is_empty());

    // So does the commented node template.
    let uncommented: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# nodeTemplates:"))
        .map_while(|l| l.strip_prefix("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    let templates = Policy::parse(&uncommented)
        .unwrap_or_else(|err| panic!("the commented node template:\n{uncommented}\n{err}"));
    assert_eq!(templates.node_templates.len(), 1);
}

#[test]
fn cluster_role_reads_exactly_what_the_code_lists() {
    let role = one(base(), "ClusterRole");
    // What crates/runtime/src/cluster/live.rs lists and watches, and the VMs the watcher follows.
    let mut wanted: BTreeSet<(String, String)> = KindSet::all()
        .iter()
        .map(|kind| {
            let resource = api_resource(kind);
            (resource.group, resource.plural)
        })
        .collect();
    for plural in ["virtualmachines", "virtualmachineinstances"] {
        wanted.insert(("kubevirt.io".into(), plural.into()));
    }

    let mut granted = BTreeSet::new();
    let mut events = BTreeSet::new();
    // The stuck-VM watcher's reads of a stuck VM's launcher pod and its core Events
    // (crates/runtime/src/watcher/run.rs, `read_launcher`): lists, not watches, and nothing else of them.
    let mut launcher_reads = vec![
        (String::new(), "events".to_string(), set(&["list"])),
        (String::new(), "pods".to_string(), set(&["list"])),
    ];
    let mut granted_launcher = Vec::new();
    // Kinds the code reads one name of are granted that name only, in a rule of their own.
    let named: BTreeSet<(String, String, String)> = KindSet::all()
        .iter()
        .filter_map(|kind| {
            let name = kind.only_named()?;
            let resource = api_resource(kind);
            Some((resource.group, resource.plural, name.to_string()))
        })
        .collect();
    let mut granted_named = BTreeSet::new();
    let mut reports_granted = false;
    for rule in role["rules"].as_array().expect("rules") {
        assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
        if let Some(names) = rule.get("resourceNames") {
            let (groups, resources) = (strings(&rule["apiGroups"]), strings(&rule["resources"]));
            assert_eq!(
                strings(&rule["verbs"]),
                set(&["get", "list", "watch"]),
                "read-only: {rule}"
            );
            assert!(
                groups.len() == 1 && resources.len() == 1,
                "one resource: {rule}"
            );
            for name in strings(names) {
                granted_named.insert((
                    groups.first().cloned().unwrap_or_default(),
                    resources.first().cloned().unwrap_or_default(),
                    name,
                ));
            }
            continue;
        }
        let verbs = strings(&rule["verbs"]);
        let resources = strings(&rule["resources"]);
        let groups = strings(&rule["apiGroups"]);
        for name in verbs.iter().chain(&resources).chain(&groups) {
            assert_ne!(name, "*", "no wildcards: {rule}");
        }
        if groups == set(&[""]) && (resources.contains("pods") || resources.contains("events")) {
            assert_eq!(
                resources.len(),
                1,
                "pods and events in a rule of their own: {rule}"
            );
            let resource = resources.first().cloned().unwrap_or_default();
            granted_launcher.push((String::new(), resource, verbs));
            continue;
        }
        if groups
            .iter()
            .any(|g| g.ends_with("openreports.io") || g.contains("wgpolicyk8s"))
        {
            // The policy-report writer's, and nothing else in that rule.
            let apis = ReportApi::ALL.map(|api| api.resource());
            assert_eq!(
                groups,
                apis.iter().map(|r| r.group.clone()).collect(),
                "{rule}"
            );
            assert_eq!(
                resources,
                apis.iter().map(|r| r.plural.clone()).collect(),
                "{rule}"
            );
            assert_eq!(verbs, set(&writer::VERBS), "{rule}");
            reports_granted = true;
            continue;
        }
        if resources.contains("events") {
            assert_eq!(resources, set(&["events"]), "events in a rule of their own");
            assert!(
                verbs.is_subset(&set(&["create", "patch"])),
                "events: create/patch only: {rule}"
            );
            events.extend(groups);
            continue;
        }
        assert_eq!(verbs, set(&["get", "list", "watch"]), "read-only: {rule}");
        for group in &groups {
            for resource in &resources {
                granted.insert((group.clone(), resource.clone()));
            }
        }
    }
    assert_eq!(
        granted_named, named,
        "the ClusterRole's resourceNames are the names the code reads (Kind::only_named)"
    );
    for (group, resource, _) in &named {
        wanted.remove(&(group.clone(), resource.clone()));
    }
    let extra: Vec<_> = granted.difference(&wanted).collect();
    assert!(
        extra.is_empty(),
        "the ClusterRole grants what the code never reads: {extra:?}"
    );
    let missing: Vec<_> = wanted.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the code reads what the ClusterRole does not grant (the kind would stay unknown): \
         {missing:?}"
    );
    // kube-runtime's Recorder writes events.k8s.io/v1 Events.
    assert!(events.contains("events.k8s.io"), "events.k8s.io events");
    assert!(reports_granted, "the policy reports the watcher writes");
    granted_launcher.sort();
    launcher_reads.sort();
    assert_eq!(
        granted_launcher, launcher_reads,
        "the launcher pods and their core Events, listed only"
    );

    let binding = one(base(), "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_service_account(&binding["subjects"]);
}

fn assert_service_account(subjects: &Value) {
    let subjects = subjects.as_array().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], "virt-preflight");
    assert_eq!(subjects[0]["namespace"], NAMESPACE);
    let account = one(base(), "ServiceAccount");
    assert_eq!(account["metadata"]["name"], "virt-preflight");
}

#[test]
fn leader_election_is_confined_to_leases_in_the_namespace() {
    let role = one(base(), "Role");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    let rules = role["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(
        strings(&rules[0]["apiGroups"]),
        set(&["coordination.k8s.io"])
    );
    assert_eq!(strings(&rules[0]["resources"]), set(&["leases"]));
    let verbs = strings(&rules[0]["verbs"]);
    assert!(
        verbs.is_superset(&set(&["get", "create", "update"])),
        "{verbs:?}"
    );
    assert!(
        !verbs.contains("delete") && !verbs.contains("*"),
        "{verbs:?}"
    );

    let binding = one(base(), "RoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_service_account(&binding["subjects"]);
}

#[test]
fn service_monitor_scrapes_the_metrics_port() {
    let monitoring = kustomize("deploy/monitoring");
    let monitor = one(&monitoring, "ServiceMonitor");
    let service = one(base(), "Service");
    let labels = service["metadata"]["labels"].as_object().expect("labels");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(labels.get(key), Some(value), "Service label {key}");
    }
    assert_eq!(
        strings(&monitor["spec"]["namespaceSelector"]["matchNames"]),
        set(&[NAMESPACE])
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    // The stuck-VM series carry the VM's namespace label.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    // And the PrometheusRule is deployed with it.
    let rule = one(&monitoring, "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"][0]["rules"][0]["alert"],
        "VirtualMachineStuckInUnhealthyState"
    );
}

#[test]
fn monitoring_ships_the_inhibition_and_the_dashboard() {
    let monitoring = kustomize("deploy/monitoring");
    let config = one(&monitoring, "AlertmanagerConfig");
    assert_eq!(config["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        config["spec"]["inhibitRules"][0]["equal"],
        serde_json::json!(["alertname", "namespace", "name"])
    );
    let dashboard = all_of(&monitoring, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "virt-preflight-dashboard")
        .expect("the dashboard's ConfigMap");
    assert_eq!(dashboard["metadata"]["namespace"], NAMESPACE);
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(
        dashboard["data"]["virt-preflight.json"]
            .as_str()
            .expect("the dashboard's JSON"),
    )
    .expect("JSON");
    assert_eq!(json["uid"], "virt-preflight");
    // The rule's alerts, and ours tell themselves from KubeVirt's.
    let rule = one(&monitoring, "PrometheusRule");
    let alerts: Vec<&Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .collect();
    for name in [
        "VirtualMachineStuckInUnhealthyState",
        "VirtualMachineStuckOnNode",
        "VirtualMachineStuckBeforeNode",
    ] {
        let alert = alerts
            .iter()
            .find(|a| a["alert"] == name)
            .unwrap_or_else(|| panic!("the rule has {name}"));
        assert_eq!(alert["labels"]["source"], "virt-preflight", "{name}");
    }
    assert!(
        alerts
            .iter()
            .any(|a| a["alert"] == "MultipleVirtualMachinesStuck")
    );
}

#[test]
fn cert_manager_overlay_issues_the_secret_and_injects_the_ca() {
    let overlay = kustomize("deploy/overlays/cert-manager");
    let serving = all_of(&overlay, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == "virt-preflight-tls")
        .expect("a Certificate for the Secret virt-preflight-tls");
    let dns = strings(&serving["spec"]["dnsNames"]);
    assert!(
        dns.is_superset(&set(&[
            "virt-preflight.virt-preflight.svc",
            "virt-preflight.virt-preflight.svc.cluster.local",
        ])),
        "{dns:?}"
    );
    let issuer = serving["spec"]["issuerRef"]["name"]
        .as_str()
        .expect("issuer");
    let ca_issuer = all_of(&overlay, "Issuer")
        .into_iter()
        .find(|i| i["metadata"]["name"] == issuer)
        .expect("the serving Certificate's Issuer");
    assert!(ca_issuer["spec"]["ca"]["secretName"].is_string());

    let webhook = one(&overlay, "ValidatingWebhookConfiguration");
    let inject = format!(
        "{}/{}",
        serving["metadata"]["namespace"]
            .as_str()
            .expect("namespace"),
        serving["metadata"]["name"].as_str().expect("name")
    );
    assert_eq!(inject, "virt-preflight/virt-preflight-serving");
    assert_eq!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        inject.as_str()
    );
    // The rest of the base comes through unchanged.
    assert_eq!(webhook["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(one(&overlay, "Deployment"), one(base(), "Deployment"));
}

/// The text of the shell heredoc `cat > {file} <<...` in `markdown`.
fn heredoc(markdown: &str, file: &str) -> String {
    let start = format!("cat > {file} <<");
    let opening = markdown
        .lines()
        .position(|line| line.starts_with(&start))
        .unwrap_or_else(|| panic!("no `{start}` in certs/README.md"));
    markdown
        .lines()
        .skip(opening + 1)
        .take_while(|line| *line != "EOF")
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_ca_bundle_overlay_of_certs_readme_renders_and_sets_the_ca_bundle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("certs/README.md")).expect("certs/README.md");
    // Three levels below the crate, as certs/out/overlay is, so that its path to the base holds.
    // `target/` is ignored by git; it may not exist where CARGO_TARGET_DIR points elsewhere.
    let parent = root.join("target");
    std::fs::create_dir_all(&parent).expect("the crate's target/ directory");
    let dir = tempfile::tempdir_in(&parent).expect("a directory under target/");
    let overlay = dir.path().join("overlay");
    std::fs::create_dir(&overlay).expect("the overlay directory");
    let kustomization = heredoc(&readme, "certs/out/overlay/kustomization.yaml");
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).expect("write");
    let patch =
        heredoc(&readme, "certs/out/overlay/ca-bundle.yaml").replace("${CA_BUNDLE}", "Q0E=");
    std::fs::write(overlay.join("ca-bundle.yaml"), patch).expect("write");
    let relative = overlay.strip_prefix(root).expect("under the crate");
    let rendered = kustomize(relative.to_str().expect("a UTF-8 path"));
    let webhook = one(&rendered, "ValidatingWebhookConfiguration");
    assert_eq!(webhook["webhooks"][0]["clientConfig"]["caBundle"], "Q0E=");
    assert_eq!(one(&rendered, "Deployment"), one(base(), "Deployment"));
}

/// deploy/overlays/least-privilege is the base less every access to Secrets: the ClusterRole
/// names them nowhere, and every other object and rule is the base's.
#[test]
fn the_least_privilege_overlay_grants_no_secret_and_changes_nothing_else() {
    let overlay = kustomize("deploy/overlays/least-privilege");
    let role = one(&overlay, "ClusterRole");
    let rules = role["rules"].as_array().expect("rules");
    assert!(
        rules.iter().all(|rule| rule["resources"]
            .as_array()
            .is_none_or(|resources| !resources.iter().any(|r| r == "secrets"))),
        "{role}"
    );
    let mut base_role = one(base(), "ClusterRole").clone();
    let resources = base_role["rules"][0]["resources"]
        .as_array_mut()
        .expect("the base's first rule lists resources");
    let before = resources.len();
    resources.retain(|r| r != "secrets");
    assert_eq!(resources.len(), before - 1, "the base reads Secrets");
    assert_eq!(*role, base_role);
    let others = |documents: &[Value]| -> Vec<Value> {
        documents
            .iter()
            .filter(|d| d["kind"] != "ClusterRole")
            .cloned()
            .collect()
    };
    assert_eq!(others(&overlay), others(base()));
}
