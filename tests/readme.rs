//! README.md is a contract with newcomers: its rule table, quick start and test command must
//! stay true.

mod support;

use std::path::Path;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable")
}

/// The text between `<!-- NAME:start -->` and `<!-- NAME:end -->`.
fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let from = text
        .find(&start)
        .unwrap_or_else(|| panic!("README has no {start}"))
        + start.len();
    let to = text[from..]
        .find(&end)
        .unwrap_or_else(|| panic!("README has no {end}"));
    &text[from..from + to]
}

fn binary() -> Command {
    support::binary::command()
}

#[test]
fn rule_table_is_what_the_registry_prints() {
    let output = binary()
        .args(["rules", "--output", "markdown"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        section(&readme(), "rules"),
        printed,
        "README's rule table is stale: paste `virt-preflight rules --output markdown` between the rules markers"
    );
}

/// The first command of the first ```sh block after `heading`.
fn first_command_after(text: &str, heading: &str) -> String {
    let at = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let block = &text[at..];
    let start = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    block[start..]
        .lines()
        .next()
        .expect("a line")
        .trim()
        .to_string()
}

#[test]
fn test_command_is_what_ci_runs() {
    let text = readme();
    let command = first_command_after(&text, "Run the tests");
    assert_eq!(command, "cargo test --locked");
    let ci = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run"))
        .expect(".ci/run is readable");
    assert!(
        ci.lines().any(|line| line.trim() == command),
        ".ci/run must run exactly the README's test command {command:?}"
    );
}

#[test]
fn quick_start_runs_on_the_shipped_examples() {
    let command = first_command_after(&readme(), "## Quick start");
    let args: Vec<&str> = command
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("quick start is a cargo run of the binary: {command}"))
        .split_whitespace()
        .collect();
    let output = binary().args(&args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The examples hold broken VMs on purpose: exit 1, with findings and a summary.
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(" error disk-without-volume "), "{stdout}");
    assert!(stdout.contains("VMs checked"), "{stdout}");
    // And the valid ones are clean on their own.
    let valid = binary()
        .args(["check", "examples/valid"])
        .output()
        .expect("runs");
    assert_eq!(
        valid.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&valid.stdout)
    );
}

#[test]
fn cluster_example_adds_the_cluster_rules() {
    let output = binary()
        .args([
            "check",
            "--cluster-state",
            "examples/cluster/cluster.yaml",
            "examples/",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("prod/trainer error node-selector-unsatisfiable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("prod/trainer error secret-not-found"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("prod/db-01"),
        "the valid VM stays clean: {stdout}"
    );
}

#[test]
fn watch_section_diagnoses_the_shipped_stuck_vm() {
    let command = first_command_after(&readme(), "## `watch`");
    let args: Vec<&str> = command
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("a cargo run of the binary: {command}"))
        .split_whitespace()
        .collect();
    assert_eq!(args.first(), Some(&"diagnose"));
    let output = binary().args(&args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "stuck: {stdout}");
    // The output README shows, but for the duration, which grows by the day.
    let text = readme();
    let shown = section(&text, "watch");
    for line in stdout.lines().skip(1) {
        assert!(shown.contains(line), "README shows {line:?}");
    }
}

/// Runs the `cargo run --release -- …` line of the watch section that starts with `prefix` and
/// checks that the output block right after it is what the command prints.
fn assert_watch_example_prints_what_readme_shows(prefix: &str, exit_code: i32) {
    assert_example_prints_what_readme_shows("watch", prefix, exit_code);
}

/// The same, in the README section `name`.
fn assert_example_prints_what_readme_shows(name: &str, prefix: &str, exit_code: i32) {
    let text = readme();
    let shown = section(&text, name);
    let command = shown
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("README's watch section runs {prefix}"));
    let args: Vec<&str> = command
        .strip_prefix("cargo run --release -- ")
        .unwrap()
        .split_whitespace()
        .collect();
    let output = binary().args(&args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(exit_code), "{command}: {stdout}");
    // Every line, as shown (the fixture is read at a fixed --as-of).
    let block_start = shown.find(command).unwrap();
    let after = &shown[block_start..];
    // Past the end of the sh block, the start of the output block.
    let closed = after.find("```\n").unwrap() + 4;
    let open = after[closed..].find("```\n").unwrap() + closed + 4;
    let close = after[open..].find("```").unwrap() + open;
    assert_eq!(
        &after[open..close],
        stdout,
        "README shows what {command} prints"
    );
}

#[test]
fn watch_section_shows_what_diagnose_all_prints() {
    assert_watch_example_prints_what_readme_shows("cargo run --release -- diagnose --all", 1);
}

#[test]
fn audit_section_shows_what_audit_prints() {
    assert_example_prints_what_readme_shows("audit", "cargo run --release -- audit", 1);
}

#[test]
fn watch_section_shows_a_vm_stuck_on_kubevirt() {
    assert_watch_example_prints_what_readme_shows(
        "cargo run --release -- diagnose prod/web-1 --cluster-state tests/fixtures/diagnose/kubevirt-degraded.yaml",
        1,
    );
}

/// The node templates README shows for cluster-autoscaler and Karpenter are a valid policy.
#[test]
fn the_node_templates_example_is_a_valid_policy() {
    let text = readme();
    let start = text
        .find("  ```yaml\n  nodeTemplates:")
        .expect("README shows nodeTemplates");
    let block: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.trim() != "```")
        .map(|line| format!("{}\n", line.strip_prefix("  ").unwrap_or(line)))
        .collect();
    let policy = virt_preflight::policy::Policy::parse(&block)
        .unwrap_or_else(|err| panic!("{block}\n{err}"));
    assert_eq!(policy.node_templates.len(), 2);
}
