//! Data that lives outside the repository (KubeVirt's own examples, beside the crate in the
//! project's workspace), found the way envtest finds its binaries: through an environment
//! variable. A user's clone has none of it, so the tests that need it print why they skip;
//! `.ci/run` sets the variable, so CI never skips them.

use std::path::PathBuf;

/// Names the directory that holds KubeVirt's `examples/` (SOURCES.md, swagger.json).
pub const KUBEVIRT_DIR_VAR: &str = "VIRT_PREFLIGHT_KUBEVIRT_DIR";

/// KubeVirt's examples directory, or `None` (with the reason printed) when the variable is
/// unset. Set but wrong is a failure, not a skip: CI must not pass by skipping.
pub fn kubevirt_examples() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os(KUBEVIRT_DIR_VAR) else {
        eprintln!(
            "skipped: {KUBEVIRT_DIR_VAR} is not set (it names a directory holding KubeVirt's \
             examples/, e.g. ../shared/kubevirt; .ci/run sets it)"
        );
        return None;
    };
    let examples = PathBuf::from(dir).join("examples");
    assert!(
        examples.is_dir(),
        "{KUBEVIRT_DIR_VAR} is set but {} is not a directory",
        examples.display()
    );
    Some(examples)
}
