//! What a rule reports, and about which object: the finding shape of the rule registry
//! (`crates/core/src/rules/registry.rs`, printed as README's rule table), its one-line form, and the one
//! place that decides which namespace a VM is in.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::RuleId;
use crate::cluster::ObjectKey;
use crate::model::VirtualMachine;

/// How bad a finding is. `Error` means the VM as written will not start or will get stuck.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The namespace of an object that names none, as kubectl and the API server default it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace a VM is in: the admission request's, else the one its manifest names, else
/// `fallback` (`check --namespace`, [`DEFAULT_NAMESPACE`] everywhere else). Empty counts as
/// unset, as the API server treats it. Every part of the crate asks here.
pub fn vm_namespace<'a>(
    request: Option<&'a str>,
    manifest: Option<&'a str>,
    fallback: &'a str,
) -> &'a str {
    [request, manifest]
        .into_iter()
        .flatten()
        .find(|namespace| !namespace.is_empty())
        .unwrap_or(fallback)
}

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    /// `None` for a manifest with `generateName` or none at all; shown as `<unnamed>`.
    pub name: Option<String>,
}

impl ObjectRef {
    /// The VirtualMachine `vm`, in the namespace [`vm_namespace`] decides for it.
    pub fn virtual_machine(
        vm: &VirtualMachine,
        request_namespace: Option<&str>,
        fallback_namespace: &str,
    ) -> ObjectRef {
        ObjectRef {
            kind: "VirtualMachine".to_string(),
            namespace: vm_namespace(
                request_namespace,
                vm.metadata.namespace.as_deref(),
                fallback_namespace,
            )
            .to_string(),
            name: vm
                .metadata
                .name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        }
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("<unnamed>")
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.display_name())
    }
}

/// Longest message a rule may write (the registry's contract: one line saying what is wrong
/// and what to do).
pub const MAX_MESSAGE_CHARS: usize = 120;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub rule: RuleId,
    pub severity: Severity,
    pub object: ObjectRef,
    /// The field, as KubeVirt writes it: `spec.template.spec.domain.devices.disks[1].name`.
    pub path: String,
    /// One line, at most [`MAX_MESSAGE_CHARS`] characters: what is wrong and what to do.
    pub message: String,
    /// An RFC 6902 patch against the object that mends it, where that is mechanical and safe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<json_patch::Patch>,
    /// For a finding about an object the VM names and the cluster view did not find: every
    /// object that would have satisfied it. The webhook asks the API server for these before
    /// it denies (the view lags the API server), and an UPDATE matches old and new findings by
    /// them.
    #[serde(skip)]
    pub missing: Vec<ObjectKey>,
    /// What the rule assumed for data the view lacks (the release, the feature gates, the
    /// KubeVirt configuration): such a finding is a warning, never a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assumption: Option<String>,
}

impl Finding {
    /// Marks the finding as made on `assumption`, which makes it a warning.
    pub fn assuming(&mut self, assumption: &str) -> &mut Self {
        self.severity = Severity::Warning;
        self.assumption = Some(assumption.to_string());
        self
    }
}

/// The one-line form every output that is not a table uses (the webhook's denial message and
/// warnings, Events, the watcher's cause): `[rule-id] message — path`. What is wrong and what
/// to do come first, so that where a length limit cuts the line (an admission warning), it
/// cuts the path.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} — {}", self.rule, self.message, self.path)
    }
}

/// Makes `text` one line (control characters become spaces) of at most `max_chars`
/// characters, ending in `…` if cut.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let mut cut: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_and_cuts_on_characters() {
        assert_eq!(one_line("a\nb", 10), "a b");
        let long = "é".repeat(200);
        let cut = one_line(&long, MAX_MESSAGE_CHARS);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn the_namespace_is_the_requests_else_the_manifests_else_the_fallback() {
        assert_eq!(vm_namespace(Some("req"), Some("obj"), "fb"), "req");
        assert_eq!(vm_namespace(Some(""), Some("obj"), "fb"), "obj");
        assert_eq!(vm_namespace(None, Some("obj"), "fb"), "obj");
        assert_eq!(vm_namespace(None, Some(""), "fb"), "fb");
        assert_eq!(vm_namespace(None, None, DEFAULT_NAMESPACE), "default");
        let vm: VirtualMachine =
            serde_json::from_str(r#"{"metadata": {"name": "", "namespace": "team"}}"#).unwrap();
        let object = ObjectRef::virtual_machine(&vm, None, "fb");
        assert_eq!(
            (object.namespace.as_str(), object.name.as_deref()),
            ("team", None)
        );
        assert_eq!(object.to_string(), "team/<unnamed>");
        let object = ObjectRef::virtual_machine(&vm, Some("req"), "fb");
        assert_eq!(object.namespace, "req");
    }

    #[test]
    fn the_one_line_form_leads_with_the_message_and_ends_with_the_path() {
        let finding = Finding {
            rule: RuleId::PvcNotFound,
            severity: Severity::Error,
            object: ObjectRef {
                kind: "VirtualMachine".into(),
                namespace: "ns".into(),
                name: Some("vm".into()),
            },
            path: "spec.template.spec.volumes[2].persistentVolumeClaim.claimName".into(),
            message: "PVC \"data\" does not exist: create it".into(),
            fix: None,
            missing: Vec::new(),
            assumption: None,
        };
        assert_eq!(
            finding.to_string(),
            "[pvc-not-found] PVC \"data\" does not exist: create it — \
             spec.template.spec.volumes[2].persistentVolumeClaim.claimName"
        );
    }
}
