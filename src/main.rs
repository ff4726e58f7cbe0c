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

use clap::{CommandFactory, FromArgMatches, Parser};
use virt_preflight::cli::{self, Command};

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

fn main() -> ExitCode {
    let mut command = Cli::command();
    if cli::as_kubectl_plugin() {
        command = command.bin_name("kubectl virt-preflight");
    }
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
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
    cli::run(cli.command).into()
}
