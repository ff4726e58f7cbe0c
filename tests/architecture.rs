//! The purity line is the compiler's: the core crate (the model, the rules, the view, the
//! stuck-VM logic) depends on no async runtime, HTTP stack or Kubernetes client.

use std::process::Command;

#[test]
fn the_core_crate_depends_on_no_tokio_hyper_axum_or_kube_client() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "virt-preflight-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"kube-core"), "{tree}");
    for forbidden in [
        "tokio",
        "hyper",
        "axum",
        "kube",
        "kube-client",
        "kube-runtime",
    ] {
        assert!(
            !crates.contains(&forbidden),
            "virt-preflight-core depends on {forbidden}:\n{tree}"
        );
    }
}
