//! The subcommands' work, behind the flags `main.rs` parses.

pub mod audit;
mod diagnose;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::check::{CheckOptions, CheckReport, check_all, check_document};
use crate::cluster::proxy::{self, ProxySettings};
use crate::cluster::{ClusterView, client, live, snapshot};
use crate::fix;
use crate::manifest::{self, Document, InputError, ReadOptions, Source};
use crate::report::{self, Format};
use crate::rules::REGISTRY;
use crate::rules::finding::Severity;
use crate::watcher::escalation::{self, Thresholds};

pub use audit::{AuditArgs, AuditFormat, run_audit};
pub use diagnose::{DiagnoseArgs, DiagnoseFormat, DiagnoseOutcome, run_diagnose};

/// Exit codes of `check`: a pipeline's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// No finding at or above `--fail-on`.
    Clean = 0,
    /// At least one finding at or above `--fail-on`.
    Findings = 1,
    /// Bad usage or input that could not be read.
    InputError = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// The subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Check VirtualMachine manifests (exit 0 clean, 1 findings, 2 bad input).
    Check(CheckArgs),
    /// List the rules: ID, default severity, scope, description.
    Rules {
        #[arg(short, long, value_enum, default_value_t = RulesFormat::Text)]
        output: RulesFormat,
    },
    /// Run the validating admission webhook (HTTPS) until SIGTERM.
    Serve(Box<ServeArgs>),
    /// Make a CA and a serving certificate for the webhook Service; print the caBundle.
    Certs(CertsArgs),
    /// Watch VMs and raise KubeVirt's stuck-VM alerts (and the stuck VMs they miss) with a
    /// cause, until SIGTERM.
    Watch(WatchArgs),
    /// Why is this VM stuck, or (--all) every unhealthy VM by cause (exit 0 none stuck, 1 stuck, 2 error)
    Diagnose(DiagnoseArgs),
    /// Every VM stored in the cluster, judged as if started again now (exit 0 clean, 1 findings, 2 error)
    Audit(AuditArgs),
}

/// Runs a subcommand to its exit code: the one place an error becomes exit 2 (a closed pipe
/// on stdout, as `check … | head` makes, is not an error).
pub fn run(command: Command) -> Exit {
    let result = match command {
        Command::Check(args) => run_check(&args).map_err(anyhow::Error::from),
        Command::Rules { output } => {
            print!("{}", rules_table(output));
            Ok(Exit::Clean)
        }
        Command::Serve(args) => run_serve(&args).map(|()| Exit::Clean),
        Command::Watch(args) => run_watch(&args).map(|()| Exit::Clean),
        Command::Diagnose(args) => run_diagnose(&args).map(|outcome| {
            print!("{}", outcome.text);
            if outcome.stuck {
                Exit::Findings
            } else {
                Exit::Clean
            }
        }),
        Command::Audit(args) => run_audit(&args),
        Command::Certs(args) => run_certs(&args).map(|ca_bundle| {
            eprintln!(
                "wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key; caBundle:",
                args.out.display()
            );
            println!("{ca_bundle}");
            Exit::Clean
        }),
    };
    match result {
        Ok(exit) => exit,
        Err(err)
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Exit::Clean
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            Exit::InputError
        }
    }
}

/// What decides `check`'s exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
}

impl FailOn {
    pub fn severity(self) -> Severity {
        match self {
            FailOn::Error => Severity::Error,
            FailOn::Warning => Severity::Warning,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Files, directories (searched for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(value_name = "PATH", default_value = "-")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Lowest severity that makes the exit code 1.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// Print the documents with every available fix applied, as YAML on stdout (the report
    /// goes to stderr). Input files are never written.
    #[arg(long)]
    pub fix: bool,
    /// Namespace for VMs whose manifest names none.
    #[arg(short, long, default_value = crate::rules::finding::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Largest input file read, in bytes.
    #[arg(long, default_value_t = manifest::DEFAULT_MAX_INPUT_BYTES)]
    pub max_input_bytes: u64,
    /// The webhook's policy file: its `nodeTemplates` join the cluster's nodes and its per-rule
    /// `rules` settings apply (`off` drops, `deny` makes an error, `warn` a warning), so that
    /// a pipeline fails on what the webhook would deny. `mode` is the webhook's alone.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Where the cluster view comes from: a snapshot, a live cluster, or nowhere (spec rules only).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Cluster snapshot: what `kubectl get ... -A -o yaml` prints (repeatable). The kinds in
    /// the files are the known kinds.
    #[arg(long = "cluster-state", value_name = "FILE")]
    pub cluster_state: Vec<PathBuf>,
    /// Read the live cluster of this kubeconfig file.
    #[arg(long, value_name = "FILE", conflicts_with = "cluster_state")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (implies a live cluster).
    #[arg(long, conflicts_with = "cluster_state")]
    pub context: Option<String>,
    /// Read the live cluster from the default kubeconfig ($KUBECONFIG, ~/.kube/config) or the
    /// in-cluster service account.
    #[arg(long, conflicts_with = "cluster_state")]
    pub live: bool,
}

impl ClusterArgs {
    /// Whether the live cluster is asked: `--live`, `--kubeconfig` or `--context`, or run as
    /// `kubectl virt-preflight` (a plugin works on kubectl's current context) with no
    /// `--cluster-state`.
    pub fn wants_live(&self) -> bool {
        self.live
            || self.kubeconfig.is_some()
            || self.context.is_some()
            || (as_kubectl_plugin() && self.cluster_state.is_empty())
    }
}

/// Whether this process runs as the kubectl plugin `kubectl virt-preflight`: its executable
/// is named `kubectl-virt_preflight` (kubectl finds plugins by that name on `PATH`).
pub fn as_kubectl_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().starts_with("kubectl-"))
        })
        .unwrap_or(false)
}

/// A kube client for the live cluster the flags name.
pub async fn kube_client(args: &ClusterArgs) -> anyhow::Result<kube::Client> {
    Ok(client::pooled(&kube_config(args).await?)?)
}

/// The clients a long-running view reads the cluster the flags name through.
async fn view_clients(args: &ClusterArgs) -> anyhow::Result<live::ViewClients> {
    Ok(live::ViewClients::new(&kube_config(args).await?)?)
}

/// The configuration of the live cluster the flags name, with the proxy kubectl would use.
async fn kube_config(args: &ClusterArgs) -> anyhow::Result<kube::Config> {
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Some(
            Kubeconfig::read_from(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        None => Kubeconfig::read().ok(),
    };
    let Some(kubeconfig) = kubeconfig else {
        // No kubeconfig: kube says why a named context cannot be found; otherwise the pod's
        // ServiceAccount, reached directly (kube's in-cluster configuration has no proxy).
        return Ok(match args.context {
            Some(_) => Config::from_kubeconfig(&options).await?,
            None => Config::infer().await?,
        });
    };
    let context = args.context.as_deref();
    let proxy = ProxySettings::from_env(proxy::kubeconfig_proxy_url(&kubeconfig, context));
    let inferred = args.kubeconfig.is_none() && args.context.is_none();
    let mut config = match Config::from_custom_kubeconfig(kubeconfig, &options).await {
        Ok(config) => config,
        // As `Config::infer`: a default kubeconfig that does not load (no current context, a
        // stale file in a pod) gives way to the pod's ServiceAccount.
        Err(_) if inferred => return Ok(Config::infer().await?),
        Err(error) => return Err(error.into()),
    };
    if inferred {
        // As `Config::infer` does: kube's KUBE_RS_DEBUG_* variables (impersonation, URL).
        config.apply_debug_overrides();
    }
    config.proxy_url = proxy.proxy_for(&config.cluster_url)?;
    Ok(config)
}

/// The view the flags ask for, with the errors of its snapshot files and notes on what it
/// could not read.
pub fn load_cluster(
    args: &ClusterArgs,
    read: ReadOptions,
) -> anyhow::Result<(Option<ClusterView>, Vec<InputError>, Vec<String>)> {
    if !args.cluster_state.is_empty() {
        let snapshot = snapshot::read(&args.cluster_state, read);
        return Ok((Some(snapshot.view), snapshot.errors, Vec::new()));
    }
    if !args.wants_live() {
        return Ok((None, Vec::new(), Vec::new()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listed = runtime.block_on(async {
        let client = kube_client(args).await?;
        anyhow::Ok(live::list_once(client).await)
    })?;
    Ok((Some(listed.view), Vec::new(), listed.notes))
}

/// `view` with the API server's answers to the clone-permission questions of these VMs. A
/// cluster that cannot be asked leaves them unknown (the rule then stays silent).
fn ask_clone_grants(
    args: &ClusterArgs,
    view: ClusterView,
    documents: &[manifest::Parsed],
    default_namespace: &str,
) -> ClusterView {
    let mut questions: Vec<crate::cluster::CloneGrant> = Vec::new();
    for document in documents
        .iter()
        .flatten()
        .filter(|d| d.is_virtual_machine())
    {
        let Ok(vm) = crate::model::VirtualMachine::from_value(&document.value) else {
            continue;
        };
        let namespace = crate::rules::finding::vm_namespace(
            None,
            vm.metadata.namespace.as_deref(),
            default_namespace,
        );
        for question in crate::rules::clone_questions(&vm, namespace, &view) {
            if !questions.contains(&question) {
                questions.push(question);
            }
        }
    }
    if questions.is_empty() {
        return view;
    }
    let answers = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                let client = kube_client(args).await?;
                anyhow::Ok(live::ask_clone_grants(client, questions).await)
            })
        });
    match answers {
        Ok(answers) => view.with_clone_grants(answers),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "cannot ask about clone permissions");
            view
        }
    }
}

/// Outcome of a whole run: the exit code follows from the report.
pub fn exit_for(report: &CheckReport, fail_on: Severity) -> Exit {
    if report.input_errors().next().is_some() {
        Exit::InputError
    } else if report.findings().any(|(_, f)| f.severity >= fail_on) {
        Exit::Findings
    } else {
        Exit::Clean
    }
}

/// A closed stdout is the reader's choice, not an error of ours.
fn ignore_broken_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

pub fn run_check(args: &CheckArgs) -> io::Result<Exit> {
    let read = ReadOptions {
        max_input_bytes: args.max_input_bytes,
    };
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let policy = match &args.config {
        Some(path) => match crate::policy::Policy::load(path) {
            Ok(policy) => policy,
            Err(error) => {
                writeln!(err, "error: {error}")?;
                return Ok(Exit::InputError);
            }
        },
        None => crate::policy::Policy::default(),
    };
    let (cluster, cluster_errors, notes) = match load_cluster(&args.cluster, read) {
        Ok(loaded) => loaded,
        Err(error) => {
            writeln!(err, "error: cannot read the cluster: {error:#}")?;
            return Ok(Exit::InputError);
        }
    };
    for note in notes {
        writeln!(err, "note: {note}")?;
    }
    let documents: Vec<manifest::Parsed> = args
        .paths
        .iter()
        .flat_map(|path| manifest::read_path(path, read))
        .collect();
    // What no watch or snapshot says (CDI's clone permissions) is asked of a live cluster.
    let cluster = match cluster {
        Some(view) if args.cluster.wants_live() && args.cluster.cluster_state.is_empty() => Some(
            ask_clone_grants(&args.cluster, view, &documents, &args.namespace),
        ),
        other => other,
    };
    let options = CheckOptions {
        default_namespace: args.namespace.clone(),
        cluster: cluster
            .map(|view| std::sync::Arc::new(view.with_node_templates(&policy.node_templates))),
        rules: policy.rules,
    };
    let parsed = cluster_errors.into_iter().map(Err).chain(documents);
    let report = check_all(parsed, &options);

    for input_error in report.input_errors() {
        writeln!(err, "error: {input_error}")?;
    }
    let fail_on = args.fail_on.severity();
    if !args.fix {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        // A reader that stops early (`| head`) must not turn findings into a clean exit.
        ignore_broken_pipe(
            report::render(&report, args.output, fail_on, &mut out).and_then(|()| out.flush()),
        )?;
        return Ok(exit_for(&report, fail_on));
    }

    // --fix: the report of the input goes to stderr, the fixed documents to stdout, and the
    // exit code says what is still wrong after the fixes.
    report::render(&report, args.output, fail_on, &mut err)?;
    let (documents, count) = fix::fixed_documents(&report);
    let yaml = fix::to_yaml(&documents).map_err(io::Error::other)?;
    ignore_broken_pipe(io::stdout().lock().write_all(yaml.as_bytes()))?;
    writeln!(
        err,
        "applied {} fix(es){}",
        count.applied,
        if count.failed > 0 {
            format!(", {} could not be applied", count.failed)
        } else {
            String::new()
        }
    )?;
    let recheck = CheckReport {
        coverage: report.coverage.clone(),
        documents: documents
            .into_iter()
            .enumerate()
            .map(|(index, value)| {
                let source = Source {
                    file: "<fixed>".into(),
                    document: index + 1,
                    item: None,
                    line: 1,
                };
                check_document(Document { source, value }, &options)
            })
            .collect(),
    };
    let mut exit = exit_for(&recheck, fail_on);
    if report.input_errors().next().is_some() {
        exit = Exit::InputError;
    }
    Ok(exit)
}

/// Formats of `rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesFormat {
    Text,
    Json,
    Markdown,
}

pub fn rules_table(format: RulesFormat) -> String {
    match format {
        RulesFormat::Text => {
            let width = REGISTRY.iter().map(|r| r.name.len()).max().unwrap_or(0);
            REGISTRY
                .iter()
                .map(|r| {
                    format!(
                        "{:<width$}  {:<7}  {:<7}  {}\n",
                        r.name,
                        r.severity.as_str(),
                        r.scope.as_str(),
                        r.description
                    )
                })
                .collect()
        }
        RulesFormat::Json => {
            let mut text = serde_json::to_string_pretty(REGISTRY).unwrap_or_default();
            text.push('\n');
            text
        }
        RulesFormat::Markdown => {
            let mut text = String::from(
                "| ID | severity | scope | fires when | KubeVirt's outcome |\n|---|---|---|---|---|\n",
            );
            for r in REGISTRY {
                text.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} |\n",
                    r.name,
                    r.severity.as_str(),
                    r.scope.as_str(),
                    r.description,
                    crate::rules::Outcome::of(r.id).as_str()
                ));
            }
            text
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// PEM certificate chain for the webhook (re-read when it changes).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// PEM private key for the certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// HTTPS address of /validate, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub addr: std::net::SocketAddr,
    /// Plain-HTTP address of /metrics.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: std::net::SocketAddr,
    /// Policy file (YAML): `mode`, per-rule `rules`, `nodeTemplates`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Time one review may spend asking the API server whether the objects a denial says are
    /// missing exist; unanswered by then, the denial becomes a warning.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    pub confirm_timeout: std::time::Duration,
    /// How often the certificate files are re-read.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload: std::time::Duration,
    /// Internal deadline for one review; past it the VM is allowed.
    #[arg(long, value_name = "DURATION", default_value = "1500ms", value_parser = parse_duration)]
    pub deadline: std::time::Duration,
    /// Time in-flight requests get to finish after SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// The flags' spellings before every duration was written `10s`, `1500ms`: still read.
    #[command(flatten)]
    pub legacy: LegacyDurations,
    /// Also run the stuck-VM watcher in this process (needs a live cluster).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub watcher: WatcherArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `serve`'s duration flags as they were spelled before one convention (a number in the unit
/// of the name). Hidden, still read: a Deployment written for an older release keeps working.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LegacyDurations {
    #[arg(long, hide = true, conflicts_with = "confirm_timeout", value_parser = millis)]
    pub confirm_timeout_ms: Option<std::time::Duration>,
    #[arg(long, hide = true, conflicts_with = "tls_reload", value_parser = seconds)]
    pub tls_reload_seconds: Option<std::time::Duration>,
    #[arg(long, hide = true, conflicts_with = "deadline", value_parser = millis)]
    pub deadline_ms: Option<std::time::Duration>,
    #[arg(long, hide = true, conflicts_with = "shutdown_grace", value_parser = seconds)]
    pub shutdown_grace_seconds: Option<std::time::Duration>,
}

impl ServeArgs {
    pub fn confirm_timeout(&self) -> std::time::Duration {
        self.legacy
            .confirm_timeout_ms
            .unwrap_or(self.confirm_timeout)
    }

    pub fn tls_reload(&self) -> std::time::Duration {
        self.legacy.tls_reload_seconds.unwrap_or(self.tls_reload)
    }

    pub fn deadline(&self) -> std::time::Duration {
        self.legacy.deadline_ms.unwrap_or(self.deadline)
    }

    pub fn shutdown_grace(&self) -> std::time::Duration {
        self.legacy
            .shutdown_grace_seconds
            .unwrap_or(self.shutdown_grace)
    }
}

fn seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse()
        .map(std::time::Duration::from_secs)
        .map_err(|e| format!("{text:?} is not a number of seconds ({e})"))
}

fn millis(text: &str) -> Result<std::time::Duration, String> {
    text.parse()
        .map(std::time::Duration::from_millis)
        .map_err(|e| format!("{text:?} is not a number of milliseconds ({e})"))
}

/// A duration as people write it: `10m`, `90s`, `1h30m`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 10m or 90s ({e})"))?;
    std::time::Duration::try_from(signed).map_err(|_| format!("{text:?} is negative"))
}

/// When stuck VMs call for the cluster administrator: the thresholds of the escalation, shared
/// by the watcher's alert and `diagnose --all`. The defaults are the PrometheusRule's.
#[derive(Debug, Clone, clap::Args)]
pub struct EscalationArgs {
    /// Escalate when this many stuck VMs share one known cause.
    #[arg(long, value_name = "VMS", default_value_t = escalation::DEFAULT_SHARED_CAUSE as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub escalate_shared_cause: u32,
    /// Escalate when this many VMs are stuck at once, whatever their causes.
    #[arg(long, value_name = "VMS", default_value_t = escalation::DEFAULT_STUCK as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub escalate_stuck: u32,
}

impl EscalationArgs {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            shared_cause: self.escalate_shared_cause as usize,
            stuck: self.escalate_stuck as usize,
        }
    }
}

/// How long each stuck alert's condition must hold, shared by the watcher and `diagnose`.
#[derive(Debug, Clone, clap::Args)]
pub struct StuckAfterArgs {
    /// How long a VM must be unhealthy with no VMI (KubeVirt's
    /// VirtualMachineStuckInUnhealthyState: 10m), or should run and not reach a node
    /// (VirtualMachineStuckBeforeNode), to be stuck.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub stuck_after: std::time::Duration,
    /// How long a VM must be unhealthy with its VMI on a node to be stuck (KubeVirt's
    /// VirtualMachineStuckOnNode: 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub stuck_on_node_after: std::time::Duration,
}

impl StuckAfterArgs {
    pub fn thresholds(&self) -> crate::watcher::StuckAfter {
        crate::watcher::StuckAfter {
            unhealthy: self.stuck_after,
            on_node: self.stuck_on_node_after,
        }
    }
}

/// The watcher's flags, shared by `watch` and `serve --watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatcherArgs {
    #[command(flatten)]
    pub stuck_after: StuckAfterArgs,
    /// Post alerts to this Alertmanager (its root URL, e.g. http://alertmanager:9093).
    #[arg(long, value_name = "URL")]
    pub alertmanager_url: Option<String>,
    /// How often firing alerts are sent again to Alertmanager (they expire after 4 times this).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub alertmanager_resend: std::time::Duration,
    /// Namespace of the leader-election Lease (without it, no election: this process leads).
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's name in the election, unique per replica [default: the host name].
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    pub lease_identity: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "virt-preflight-watcher")]
    pub lease_name: String,
    /// Do not elect a leader: this process raises Events, alerts and the stuck gauges.
    #[arg(long)]
    pub no_leader_election: bool,
    #[command(flatten)]
    pub escalation: EscalationArgs,
    /// Policy reports: a namespace's report is written at most once per this long, once its
    /// changes pause for a second (or after four of these, if they never do).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub report_debounce: std::time::Duration,
    /// Write no policy reports (and judge no VM for `virt_preflight_vms_would_not_start`).
    #[arg(long)]
    pub no_policy_reports: bool,
}

impl WatcherArgs {
    fn lease_namespace(&self) -> Option<String> {
        if self.no_leader_election {
            return None;
        }
        self.lease_namespace.clone().filter(|ns| !ns.is_empty())
    }

    /// Starts the watcher's outputs and leadership, and returns its future.
    fn start(
        &self,
        client: kube::Client,
        view: live::LiveView,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        events: Option<crate::events::EventQueue>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        use crate::watcher::{Outputs, Watcher, WatcherOptions, alertmanager, leader, run};
        let alerts = match &self.alertmanager_url {
            Some(url) => Some(alertmanager::start(
                alertmanager::Alertmanager::new(url)?,
                metrics.clone(),
            )),
            None => None,
        };
        let options = WatcherOptions {
            stuck_after: self.stuck_after.thresholds(),
            resend: self
                .alertmanager_resend
                .max(std::time::Duration::from_secs(1)),
            thresholds: self.escalation.thresholds(),
            ..WatcherOptions::default()
        };
        let leadership = match self.lease_namespace() {
            Some(namespace) => {
                // Unique per replica: the pod name, else the host name (a container's pid is
                // 1 in every replica), else the pid and the start time.
                let identity = [self.lease_identity.clone(), std::env::var("HOSTNAME").ok()]
                    .into_iter()
                    .flatten()
                    .find(|n| !n.is_empty())
                    .unwrap_or_else(|| {
                        format!(
                            "virt-preflight-{}-{}",
                            std::process::id(),
                            jiff::Timestamp::now().as_nanosecond()
                        )
                    });
                leader::elect(client.clone(), namespace, self.lease_name.clone(), identity)
            }
            None => leader::Leadership::Always,
        };
        use futures::FutureExt;
        let shutdown = shutdown.shared();
        let reports = (!self.no_policy_reports).then(|| {
            crate::policy_report::writer::run(
                client.clone(),
                view.clone(),
                leadership.follower(),
                metrics.clone(),
                crate::policy_report::writer::WriterOptions {
                    debounce: self
                        .report_debounce
                        .max(std::time::Duration::from_millis(100)),
                },
                shutdown.clone(),
            )
        });
        let watcher = Watcher::new(options, metrics, Outputs { events, alerts });
        let watching = run::run(client, view, watcher, leadership, shutdown);
        Ok(async move {
            // Its own task: judging a namespace is CPU work that must not hold up the
            // stuck-VM watcher's loop.
            let reports = reports.map(tokio::spawn);
            watching.await;
            if let Some(reports) = reports {
                let _ = reports.await;
            }
        })
    }
}

/// Runs the webhook until SIGTERM.
pub fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    use crate::{events, metrics::Metrics, policy::Policy, server, tls::ServingCert};
    use std::sync::Arc;
    use std::time::Duration;

    if args.watch && !args.cluster.cluster_state.is_empty() {
        anyhow::bail!("--watch needs a live cluster; it cannot run on --cluster-state");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let policy = match &args.config {
            Some(path) => Policy::load(path)?,
            None => Policy::default(),
        };
        let cert = ServingCert::load(&args.tls_cert, &args.tls_key).await?;
        crate::rules::warm_up();
        cert.spawn_reloader(args.tls_reload().max(Duration::from_secs(1)));
        let metrics = Arc::new(Metrics::new());
        let (view, events, confirmer) = if args.cluster.cluster_state.is_empty() {
            let clients = view_clients(&args.cluster).await?;
            let client = clients.objects.clone();
            let confirmer = crate::confirm::Confirmer::new(client.clone(), args.confirm_timeout());
            let queue = events::start(
                client.clone(),
                "virt-preflight",
                metrics.clone(),
                events::QUEUE_CAPACITY,
            );
            let view = live::LiveView::start(clients, &policy.node_templates);
            if args.watch {
                let watcher = args.watcher.start(
                    client,
                    view.clone(),
                    metrics.clone(),
                    Some(queue.clone()),
                    server::shutdown_signal(),
                )?;
                tokio::spawn(watcher);
            }
            (view, Some(queue), Some(confirmer))
        } else {
            let snapshot = snapshot::read(&args.cluster.cluster_state, ReadOptions::default());
            if let Some(first) = snapshot.errors.first() {
                anyhow::bail!(
                    "cluster state: {first} ({} error(s) in all)",
                    snapshot.errors.len()
                );
            }
            tracing::info!("serving from a fixed cluster snapshot; Events are not emitted");
            let view = snapshot.view.with_node_templates(&policy.node_templates);
            // A snapshot is the truth it was given: nothing to confirm against.
            (live::LiveView::fixed(view), None, None)
        };
        let mut state = server::AppState::new(view, policy, metrics, events);
        state.deadline = args.deadline();
        state.confirmer = confirmer;
        let options = server::ServeOptions {
            addr: args.addr,
            metrics_addr: Some(args.metrics_addr),
            cert,
            grace: args.shutdown_grace(),
        };
        server::serve(
            options,
            state,
            server::shutdown_signal(),
            |addr, metrics| {
                // One line on stdout that scripts and tests can wait for.
                println!(
                    "listening on https://{addr} (metrics: {})",
                    metrics.map_or_else(|| "off".to_string(), |m| format!("http://{m}/metrics"))
                );
            },
        )
        .await?;
        anyhow::Ok(())
    })
}

#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, default_value = "virt-preflight")]
    pub service: String,
    /// Namespace of the Service.
    #[arg(long, default_value = "virt-preflight")]
    pub namespace: String,
    /// Directory for ca.crt, tls.crt and tls.key.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Another DNS name for the certificate (repeatable): the host of a webhook the API
    /// server reaches by `clientConfig.url`, e.g. one running outside the cluster.
    #[arg(long = "dns-name", value_name = "NAME")]
    pub dns_names: Vec<String>,
}

/// Writes a CA and a serving certificate; prints the caBundle.
pub fn run_certs(args: &CertsArgs) -> anyhow::Result<String> {
    let mut names = crate::certs::service_names(&args.service, &args.namespace);
    names.extend(args.dns_names.iter().cloned());
    let generated = crate::certs::generate(&names)?;
    crate::certs::write(&generated, &args.out)?;
    Ok(generated.ca_bundle())
}

#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Plain-HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: std::net::SocketAddr,
    #[command(flatten)]
    pub watcher: WatcherArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs the stuck-VM watcher until SIGTERM.
pub fn run_watch(args: &WatchArgs) -> anyhow::Result<()> {
    use crate::{events, metrics::Metrics, server};
    use std::sync::Arc;

    if !args.cluster.cluster_state.is_empty() {
        anyhow::bail!(
            "watch follows a live cluster; for a snapshot use `virt-preflight diagnose NAMESPACE/NAME --cluster-state FILE`"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let clients = view_clients(&args.cluster).await?;
        let client = clients.objects.clone();
        let metrics = Arc::new(Metrics::new());
        let events = events::start(
            client.clone(),
            "virt-preflight",
            metrics.clone(),
            events::QUEUE_CAPACITY,
        );
        let view = live::LiveView::start(clients, &[]);
        let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
        let addr = listener.local_addr()?;
        let app = server::watcher_router(metrics.clone(), view.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "metrics server stopped");
            }
        });
        let watcher = args.watcher.start(
            client,
            view,
            metrics,
            Some(events),
            server::shutdown_signal(),
        )?;
        println!("watching VirtualMachines (metrics: http://{addr}/metrics)");
        watcher.await;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec!["serve", "--tls-cert", "c", "--tls-key", "k"];
        argv.extend(args);
        Serve::try_parse_from(argv).map(|s| s.args)
    }

    #[test]
    fn durations_read_as_people_write_them_and_the_old_spellings_still_work() {
        let defaults = serve(&[]).unwrap();
        assert_eq!(defaults.deadline(), Duration::from_millis(1500));
        assert_eq!(defaults.confirm_timeout(), Duration::from_millis(250));
        assert_eq!(defaults.tls_reload(), Duration::from_secs(10));
        assert_eq!(defaults.shutdown_grace(), Duration::from_secs(20));

        let new = serve(&["--deadline", "900ms", "--shutdown-grace", "1m"]).unwrap();
        assert_eq!(new.deadline(), Duration::from_millis(900));
        assert_eq!(new.shutdown_grace(), Duration::from_secs(60));

        let old = serve(&[
            "--deadline-ms",
            "900",
            "--confirm-timeout-ms",
            "100",
            "--tls-reload-seconds",
            "5",
            "--shutdown-grace-seconds",
            "30",
        ])
        .unwrap();
        assert_eq!(old.deadline(), Duration::from_millis(900));
        assert_eq!(old.confirm_timeout(), Duration::from_millis(100));
        assert_eq!(old.tls_reload(), Duration::from_secs(5));
        assert_eq!(old.shutdown_grace(), Duration::from_secs(30));

        assert!(serve(&["--deadline", "1s", "--deadline-ms", "900"]).is_err());
        assert!(
            serve(&["--deadline", "900"]).is_err(),
            "a duration has a unit"
        );
    }
}
