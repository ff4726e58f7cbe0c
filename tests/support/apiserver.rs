//! A real kube-apiserver and etcd for end-to-end tests, found and started the way envtest does:
//! the environment variable `VIRT_PREFLIGHT_APISERVER_DIR` names the directory that holds
//! `start.sh` (../shared/kube-apiserver in the project's workspace; its README says what the
//! server is and is not). Unset, the tests that need it print why and skip (a user's clone has
//! no ../shared); set but unusable, they fail: `.ci/run` sets it, and CI must never pass by
//! skipping.
//!
//! One server per test binary, started on first use and shared by its tests (each test works
//! in its own namespaces). The server outlives no test process: a watchdog `sh`, in its own
//! session and deaf to Ctrl-C, runs `start.sh` itself and kills etcd, the API server and every
//! process registered with [`ApiServer::register_pid`] once the test process is gone, however
//! it ended (a panic in a static never runs a destructor).
//!
//! Included with `#[path]` by the tests and the bench that need it, so that the other test
//! binaries do not compile it.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Names the directory holding `start.sh` (and `kube-apiserver.gz`).
pub const APISERVER_DIR_VAR: &str = "VIRT_PREFLIGHT_APISERVER_DIR";

/// How long `start.sh` may take (it needs 5–15 s on two busy cores).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Every kubectl call gives up after this, so a wedged server fails a test instead of hanging it.
const KUBECTL_TIMEOUT: &str = "--request-timeout=30s";

/// A running API server: its admin kubeconfig, URL and CA.
pub struct ApiServer {
    /// Where `start.sh` keeps the server's files (pki/, logs, etcd data).
    pub dir: PathBuf,
    /// Control files of this run (start.env, pids) and room for the tests' own files.
    pub run_dir: PathBuf,
    /// cluster-admin, by client certificate.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA of the API server's serving certificate.
    pub ca: PathBuf,
}

/// The crate's root: where `deploy/` and `tests/fixtures/` are.
pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding `start.sh`, or `None` (with the reason printed) when the variable is
/// unset. Set but wrong is a failure, not a skip.
pub fn start_script() -> Option<PathBuf> {
    script_from_env(
        APISERVER_DIR_VAR,
        "a kube-apiserver for tests, e.g. ../shared/kube-apiserver",
    )
}

/// `start.sh` in the directory the variable `var` names (`what` says what it starts, for the
/// skip message), or `None`, with the reason printed, when it is unset. Set but holding no
/// `start.sh` is a failure: CI must never pass by skipping.
pub fn script_from_env(var: &str, what: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os(var) else {
        eprintln!(
            "skipped: {var} is not set (it names the directory holding start.sh of {what}; \
             .ci/run sets it)"
        );
        return None;
    };
    let script = PathBuf::from(&dir).join("start.sh");
    assert!(
        script.is_file(),
        "{var} is set to {} but it holds no start.sh",
        PathBuf::from(dir).display()
    );
    Some(script)
}

impl ApiServer {
    /// The server of this test binary, started on the first call. `None` when
    /// [`APISERVER_DIR_VAR`] is unset (the reason is printed); a server that cannot start
    /// fails every test that asks for it, with the reason.
    pub fn shared() -> Option<&'static ApiServer> {
        static SERVER: OnceLock<Result<ApiServer, String>> = OnceLock::new();
        let script = start_script()?;
        match SERVER.get_or_init(|| ApiServer::start(&script)) {
            Ok(server) => Some(server),
            Err(reason) => panic!("the test API server is unusable: {reason}"),
        }
    }

    fn start(script: &Path) -> Result<ApiServer, String> {
        let server = ApiServer::start_bare(script, "apiserver")?;
        server.install_crds()?;
        Ok(server)
    }

    /// A server with nothing installed, its run directory named after `purpose` (the control
    /// plane installs KubeVirt's and CDI's real CRDs in place of the fixtures').
    pub fn start_bare(script: &Path, purpose: &str) -> Result<ApiServer, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let prefix = format!("{purpose}-{}-", env!("CARGO_CRATE_NAME"));
        remove_dead_runs(tmp, &prefix);
        let run_dir = tmp.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        let dir = run_dir.join("server");
        spawn_watchdog(script, &run_dir, &dir)?;
        let env = wait_started(&run_dir)?;
        let var = |name: &str| {
            export_value(&env, name)
                .ok_or_else(|| format!("start.sh printed no {name}; it printed:\n{env}"))
        };
        let server = ApiServer {
            kubeconfig: PathBuf::from(var("KUBECONFIG")?),
            url: var("TEST_APISERVER_URL")?,
            ca: dir.join("pki/ca.crt"),
            dir,
            run_dir,
        };
        Ok(server)
    }

    /// Installs `tests/fixtures/crds/*.yaml` and waits until every one is Established.
    fn install_crds(&self) -> Result<(), String> {
        let crds = manifest_dir().join("tests/fixtures/crds");
        let crds = crds.to_string_lossy();
        self.kubectl(&["apply", "-f", &crds]).result()?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &crds,
        ])
        .result()?;
        Ok(())
    }

    /// Has the watchdog kill `pid` (a process the test started) when the test process ends.
    pub fn register_pid(&self, pid: u32) {
        self.edit_pids(|pids| pids.push(pid));
    }

    /// Takes back [`ApiServer::register_pid`] for a process the test has stopped, so that the
    /// watchdog never kills another process that got its pid since.
    pub fn unregister_pid(&self, pid: u32) {
        self.edit_pids(|pids| pids.retain(|&p| p != pid));
    }

    /// Rewrites the watchdog's pid list (one pid a line), one test at a time.
    fn edit_pids(&self, edit: impl FnOnce(&mut Vec<u32>)) {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _held = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = self.run_dir.join("pids");
        let mut pids: Vec<u32> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        edit(&mut pids);
        let text: String = pids.iter().map(|pid| format!("{pid}\n")).collect();
        // Written whole and renamed, so the watchdog never reads half a list.
        let partial = self.run_dir.join("pids.partial");
        std::fs::write(&partial, text).expect("write the watchdog's pid list");
        std::fs::rename(&partial, &path).expect("replace the watchdog's pid list");
    }

    /// `kubectl` as cluster-admin.
    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_with_input(args, None)
    }

    /// `kubectl` as cluster-admin, with `input` on stdin (for `-f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Kubectl {
        kubectl_as(&self.kubeconfig, args, input)
    }

    /// Creates a namespace with these labels.
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        self.kubectl(&["create", "namespace", name]).ok();
        if !labels.is_empty() {
            let mut args = vec!["label".to_string(), "namespace".into(), name.into()];
            args.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.kubectl(&args).ok();
        }
    }

    /// Installs the CRDs of `file` (server-side, as their READMEs say) and waits until `crd` is
    /// established.
    pub fn install_crd_file(&self, file: &Path, crd: &str) {
        self.kubectl(&["apply", "--server-side", "-f", &file.to_string_lossy()])
            .ok();
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{crd}"),
        ])
        .ok();
    }

    /// `kubectl apply` of `objects` as one List, as cluster-admin; panics if it fails.
    pub fn apply_list(&self, objects: &[serde_json::Value]) {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.kubectl_with_input(&["apply", "-f", "-"], Some(&list.to_string()))
            .ok();
    }

    /// A kube client as cluster-admin. A new one per call: a client belongs to the tokio
    /// runtime it first runs on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> kube::Client {
        use kube::config::{Config, KubeConfigOptions, Kubeconfig};
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read admin.kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a client configuration from admin.kubeconfig");
        kube::Client::try_from(config).expect("a kube client")
    }

    /// The API server's own metrics (its `/metrics`, as cluster-admin).
    pub fn metrics(&self) -> String {
        self.kubectl(&["get", "--raw", "/metrics"]).ok()
    }
}

/// What one kubectl call did.
pub struct Kubectl {
    pub args: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// Its stdout; panics, with stderr, if it failed.
    pub fn ok(self) -> String {
        match self.result() {
            Ok(stdout) => stdout,
            Err(reason) => panic!("{reason}"),
        }
    }

    pub fn result(self) -> Result<String, String> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(format!(
                "kubectl {} failed:\n{}{}",
                self.args, self.stdout, self.stderr
            ))
        }
    }

    /// Its stdout as JSON (for `-o json`).
    pub fn json(self) -> serde_json::Value {
        let args = self.args.clone();
        let stdout = self.ok();
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("kubectl {args} printed no JSON ({e}):\n{stdout}"))
    }
}

/// `kubectl` with this kubeconfig, with `input` on stdin.
pub fn kubectl_as(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Kubectl {
    let mut command = Command::new("kubectl");
    command
        .arg(KUBECTL_TIMEOUT)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(manifest_dir())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run kubectl ({e}); the API server tests need it on PATH \
             (Debian: apt-get install kubernetes-client)"
        ),
    };
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("kubectl's stdin");
        stdin
            .write_all(input.as_bytes())
            .expect("write kubectl's stdin");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for kubectl");
    Kubectl {
        args: args.join(" "),
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The watchdog: runs start.sh, records how it went, then waits for the test process to end
/// and stops everything the run started. Its own session and ignored signals keep a Ctrl-C
/// (sent to the test's process group) from killing it before it has done its work.
const WATCHDOG: &str = r#"
trap '' INT HUP TERM PIPE
test_pid=$1 run=$2 script=$3 dir=$4
"$script" "$dir" > "$run/start.env" 2> "$run/start.err"
echo $? > "$run/start.status"
while kill -0 "$test_pid" 2>/dev/null; do sleep 0.5; done
TEST_APISERVER_PIDS=
. "$run/start.env" 2>/dev/null
pids="$TEST_APISERVER_PIDS $(cat "$run/pids" 2>/dev/null)"
kill $pids 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do
  alive=
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ -z "$alive" ] && break
  sleep 0.5
done
kill -9 $pids 2>/dev/null
# Keep the logs for a post-mortem; drop the 100 MB binary and the etcd data.
rm -rf "$dir/kube-apiserver" "$dir/etcd"
touch "$run/stopped"
"#;

fn spawn_watchdog(script: &Path, run_dir: &Path, dir: &Path) -> Result<(), String> {
    Command::new("setsid")
        .args(["sh", "-c", WATCHDOG, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(run_dir)
        .arg(script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the watchdog (setsid sh): {e}"))
}

/// Waits for start.sh to finish; its `export` lines, or why it failed.
fn wait_started(run_dir: &Path) -> Result<String, String> {
    let started = Instant::now();
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(run_dir.join("start.status"))
            && !text.trim().is_empty()
        {
            break text.trim().to_string();
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!(
                "start.sh did not finish within {START_TIMEOUT:?} (see {})",
                run_dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |name: &str| std::fs::read_to_string(run_dir.join(name)).unwrap_or_default();
    if status != "0" {
        return Err(format!(
            "start.sh exited with {status}:\n{}",
            read("start.err")
        ));
    }
    Ok(read("start.env"))
}

/// The value of `export NAME=VALUE` (quotes removed) in start.sh's output.
fn export_value(env: &str, name: &str) -> Option<String> {
    env.lines().find_map(|line| {
        let value = line
            .strip_prefix("export ")?
            .strip_prefix(name)?
            .strip_prefix('=')?;
        Some(value.trim_matches('"').to_string())
    })
}

/// Removes the directories of earlier runs of this binary whose test process is gone and whose
/// watchdog has stopped everything (their logs are no longer anyone's).
fn remove_dead_runs(tmp: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
        let gone = pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists();
        if gone && entry.path().join("stopped").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Calls `probe` until it succeeds, for at most `timeout`; its last error if it never does.
pub fn poll<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(last) if started.elapsed() > timeout => {
                return Err(format!("{last} (still, after {timeout:?})"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Polls `probe` until it returns `Some`, for at most `timeout`; panics naming `what`.
pub fn eventually<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    poll(timeout, || probe().ok_or_else(|| what.to_string()))
        .unwrap_or_else(|reason| panic!("{reason}"))
}
