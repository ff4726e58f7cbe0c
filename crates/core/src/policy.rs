//! What the webhook does with a finding, Pod-Security-Admission style: a cluster-wide mode, a
//! per-namespace override by label, per-rule overrides, and the VM's own skip annotation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::cluster::nodes::NodeTemplate;
use crate::rules::RuleId;
use crate::rules::finding::Severity;

/// Namespace label that overrides the mode for the VMs in that namespace.
pub const MODE_LABEL: &str = "virt-preflight.io/mode";

/// How the webhook treats findings.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    serde::Serialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Mode {
    /// Errors deny, warnings warn.
    #[default]
    Enforce,
    /// Everything warns; nothing is denied.
    Warn,
    /// Nothing in the response; metrics and Events only.
    Audit,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        text.parse().ok()
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A per-rule override in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSetting {
    Deny,
    Warn,
    Off,
}

impl<'de> Deserialize<'de> for RuleSetting {
    /// YAML 1.1 reads an unquoted `off` as `false`; accept that as `off` too.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bool(bool),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(false) => Ok(RuleSetting::Off),
            Raw::Text(text) => match text.as_str() {
                "deny" => Ok(RuleSetting::Deny),
                "warn" => Ok(RuleSetting::Warn),
                "off" => Ok(RuleSetting::Off),
                other => Err(serde::de::Error::custom(format!(
                    "unknown rule setting {other:?}: use deny, warn or off"
                ))),
            },
            Raw::Bool(true) => Err(serde::de::Error::custom(
                "a rule setting is deny, warn or off, not true",
            )),
        }
    }
}

/// What happens to one finding.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Action {
    Deny,
    Warn,
    /// Counted and reported as an Event, not shown in the response.
    Audit,
    Off,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy file: `mode`, `rules` and `nodeTemplates`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub rules: BTreeMap<RuleId, RuleSetting>,
    /// Nodes an autoscaler can add; the scheduling rules count them as nodes.
    #[serde(default)]
    pub node_templates: Vec<NodeTemplate>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Policy, String> {
        if text.trim().is_empty() {
            return Ok(Policy::default());
        }
        let policy = serde_saphyr::from_str::<Option<Policy>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| e.without_snippet().to_string())?;
        for (i, template) in policy.node_templates.iter().enumerate() {
            template
                .validate()
                .map_err(|err| format!("nodeTemplates[{i}].{err}"))?;
        }
        Ok(policy)
    }

    /// The mode for a namespace whose [`MODE_LABEL`] says `label` (if it has one).
    pub fn mode_for(&self, label: Option<&str>) -> Mode {
        label.and_then(Mode::parse).unwrap_or(self.mode)
    }

    /// The action for a finding of `rule` with `severity` under `mode`. A rule override sets
    /// what the rule does when enforcing; the mode then caps it (warn: nothing denies;
    /// audit: nothing reaches the response).
    pub fn action(&self, rule: RuleId, severity: Severity, mode: Mode) -> Action {
        let enforced = match self.rules.get(&rule) {
            Some(RuleSetting::Off) => return Action::Off,
            Some(RuleSetting::Deny) => Action::Deny,
            Some(RuleSetting::Warn) => Action::Warn,
            None => match severity {
                Severity::Error => Action::Deny,
                Severity::Warning => Action::Warn,
            },
        };
        match mode {
            Mode::Enforce => enforced,
            Mode::Warn => Action::Warn,
            Mode::Audit => Action::Audit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_policy_file_and_yaml_off() {
        let policy = Policy::parse(
            "mode: warn\nrules:\n  image-tag-latest: off\n  boot-order-missing: deny\n",
        )
        .unwrap();
        assert_eq!(policy.mode, Mode::Warn);
        assert_eq!(policy.rules[&RuleId::ImageTagLatest], RuleSetting::Off);
        assert_eq!(policy.rules[&RuleId::BootOrderMissing], RuleSetting::Deny);
        assert!(Policy::parse("rules: {no-such-rule: deny}").is_err());
        assert!(Policy::parse("mode: strict").is_err());
        assert!(Policy::parse("moed: warn").is_err());
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
    }

    #[test]
    fn modes_cap_actions() {
        let policy = Policy::parse(
            "rules: {boot-order-missing: deny, memory-missing: warn, quantity-invalid: off}",
        )
        .unwrap();
        let e = Mode::Enforce;
        assert_eq!(
            policy.action(RuleId::DiskWithoutVolume, Severity::Error, e),
            Action::Deny
        );
        assert_eq!(
            policy.action(RuleId::ImageTagLatest, Severity::Warning, e),
            Action::Warn
        );
        assert_eq!(
            policy.action(RuleId::BootOrderMissing, Severity::Warning, e),
            Action::Deny
        );
        assert_eq!(
            policy.action(RuleId::MemoryMissing, Severity::Error, e),
            Action::Warn
        );
        assert_eq!(
            policy.action(RuleId::QuantityInvalid, Severity::Error, e),
            Action::Off
        );
        assert_eq!(
            policy.action(RuleId::DiskWithoutVolume, Severity::Error, Mode::Warn),
            Action::Warn
        );
        assert_eq!(
            policy.action(RuleId::DiskWithoutVolume, Severity::Error, Mode::Audit),
            Action::Audit
        );
        assert_eq!(
            policy.action(RuleId::QuantityInvalid, Severity::Error, Mode::Audit),
            Action::Off
        );
    }

    #[test]
    fn node_templates_are_checked_when_read() {
        let good = "nodeTemplates:\n- name: pool\n  taints: [{key: k, effect: NoSchedule}]\n  allocatable: {memory: 64Gi}\n";
        assert_eq!(Policy::parse(good).unwrap().node_templates.len(), 1);
        let err = Policy::parse(&good.replace("64Gi", "64GiB")).unwrap_err();
        assert!(
            err.starts_with("nodeTemplates[0].allocatable.memory: "),
            "{err}"
        );
        let err = Policy::parse(&good.replace("NoSchedule", "Never")).unwrap_err();
        assert!(
            err.starts_with("nodeTemplates[0].taints[0].effect: "),
            "{err}"
        );
    }

    #[test]
    fn namespace_label_overrides_the_mode() {
        let policy = Policy::default();
        assert_eq!(policy.mode_for(Some("audit")), Mode::Audit);
        assert_eq!(policy.mode_for(Some("loose")), Mode::Enforce);
        assert_eq!(policy.mode_for(None), Mode::Enforce);
    }
}
