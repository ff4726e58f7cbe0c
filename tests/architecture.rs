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
    // The runtime, HTTP and client families, by prefix (tokio-util, hyper-util, axum-core,
    // kube-client...): kube-core, the types alone, is the one kube crate allowed.
    let forbidden = |name: &str| {
        ["tokio", "hyper", "axum", "tower", "kube"]
            .iter()
            .any(|family| name == *family || name.starts_with(&format!("{family}-")))
            && name != "kube-core"
    };
    let found: Vec<&&str> = crates.iter().filter(|name| forbidden(name)).collect();
    assert!(
        found.is_empty(),
        "virt-preflight-core depends on {found:?}:\n{tree}"
    );
}
