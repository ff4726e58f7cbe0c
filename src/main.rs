//! The `virt-preflight` binary: parses flags and hands over to the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

/// Memory is zeroed when freed. The API server sends a Secret's metadata with the
/// `kubectl.kubernetes.io/last-applied-configuration` annotation, which holds its data; the
/// view never keeps it (see `cluster::objects`), but the buffers it was read from are freed
/// memory that the allocator hands out again without clearing. Zeroed, no Secret value lingers
/// in the process (a core dump, a heap read) after the read that brought it.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

use clap::{Parser, Subcommand};
use virt_preflight::cli::{
    self, CertsArgs, CheckArgs, DiagnoseArgs, Exit, RulesFormat, ServeArgs, WatchArgs,
};

#[derive(Parser)]
#[command(
    name = "virt-preflight",
    version,
    about = "Find what would leave a KubeVirt VirtualMachine stuck, before it is stored"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check VirtualMachine manifests (exit 0 clean, 1 findings, 2 bad input).
    Check(CheckArgs),
    /// List the rules: ID, default severity, scope, description.
    Rules {
        #[arg(short, long, value_enum, default_value_t = RulesFormat::Text)]
        output: RulesFormat,
    },
    /// Run the validating admission webhook (HTTPS) until SIGTERM.
    Serve(ServeArgs),
    /// Make a CA and a serving certificate for the webhook Service; print the caBundle.
    Certs(CertsArgs),
    /// Watch VMs and raise VirtualMachineStuckInUnhealthyState with a cause, until SIGTERM.
    Watch(WatchArgs),
    /// Why is this VM stuck, or (--all) every unhealthy VM by cause (exit 0 none stuck, 1 stuck, 2 error)
    Diagnose(DiagnoseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // kube's client and our server both use rustls; exactly one crypto provider is compiled
    // in (ring), and it must be installed before either builds a TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Check(args) => match cli::run_check(&args) {
            Ok(exit) => exit.into(),
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Exit::Clean.into(),
            Err(err) => {
                eprintln!("error: {err}");
                Exit::InputError.into()
            }
        },
        Command::Rules { output } => {
            print!("{}", cli::rules_table(output));
            Exit::Clean.into()
        }
        Command::Serve(args) => match cli::run_serve(&args) {
            Ok(()) => Exit::Clean.into(),
            Err(err) => {
                eprintln!("error: {err:#}");
                Exit::InputError.into()
            }
        },
        Command::Watch(args) => match cli::run_watch(&args) {
            Ok(()) => Exit::Clean.into(),
            Err(err) => {
                eprintln!("error: {err:#}");
                Exit::InputError.into()
            }
        },
        Command::Diagnose(args) => match cli::run_diagnose(&args) {
            Ok(outcome) => {
                print!("{}", outcome.text);
                if outcome.stuck {
                    Exit::Findings.into()
                } else {
                    Exit::Clean.into()
                }
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                Exit::InputError.into()
            }
        },
        Command::Certs(args) => match cli::run_certs(&args) {
            Ok(ca_bundle) => {
                eprintln!(
                    "wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key; caBundle:",
                    args.out.display()
                );
                println!("{ca_bundle}");
                Exit::Clean.into()
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                Exit::InputError.into()
            }
        },
    }
}
