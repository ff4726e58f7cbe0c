//! What a rule reports: the finding shape of RULES.md.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cluster::ObjectKey;
use crate::rules::RuleId;

/// How bad a finding is. `Error` means the VM as written will not start or will get stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("<unnamed>")
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.display_name())
    }
}

/// Longest message RULES.md allows.
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
}

/// Makes `text` one line of at most [`MAX_MESSAGE_CHARS`] characters, ending in `…` if cut.
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
}
