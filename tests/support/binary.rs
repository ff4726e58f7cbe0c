//! The virt-preflight binary as the tests run it, and its output as a failing test shows it.

#![allow(dead_code)]

use std::process::{Command, Output};

/// The binary, in the crate's root, with none of the caller's cluster in its environment
/// (no kubeconfig, no proxy, no pod name or namespace): a test says what it runs against.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_virt-preflight"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KUBECONFIG")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME");
    for proxy in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(proxy);
    }
    command
}

/// Runs the binary with `args` to its end.
pub fn run(args: &[&str]) -> Output {
    command().args(args).output().expect("virt-preflight runs")
}

/// Its exit code, stdout and stderr, for an assertion's message.
pub fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
