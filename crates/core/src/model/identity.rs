//! What a VM will do and what its parts are called, independent of how the manifest orders
//! them: the questions the webhook asks to compare an UPDATE's old and new VM.

use super::{RunStrategy, TEMPLATE_SPEC, VirtualMachine};

/// Whether a VM with this `spec.running` and `spec.runStrategy` starts (see
/// [`VirtualMachine::will_start`]).
pub fn starts(running: Option<bool>, run_strategy: Option<&str>) -> bool {
    let strategy = match (running, run_strategy) {
        (Some(running), None) => Some(RunStrategy::from_running(running)),
        (None, Some(text)) => RunStrategy::parse(text),
        (None, None) => Some(RunStrategy::Halted),
        (Some(_), Some(_)) => None,
    };
    strategy != Some(RunStrategy::Halted)
}

impl VirtualMachine {
    /// Whether KubeVirt starts this VM as written. KubeVirt reads `spec.running` (true: Always,
    /// false: Halted), else `spec.runStrategy`, else Halted (`VirtualMachine.RunStrategy()`).
    /// A `Manual` VM is started through its status, which no admission webhook sees, so it
    /// counts as one that starts; so does a strategy KubeVirt would reject (it has its own
    /// finding).
    pub fn will_start(&self) -> bool {
        starts(self.spec.running, self.spec.run_strategy.as_deref())
    }

    /// `path` with the index of every named item replaced by its name:
    /// `spec.template.spec.volumes[2].secret.secretName` becomes
    /// `spec.template.spec.volumes[name=creds].secret.secretName`. Inserting a disk before
    /// another then leaves the other's findings where they were. Unnamed items (tolerations,
    /// accessCredentials) and indexes past the end keep their number.
    pub fn named_path(&self, path: &str) -> String {
        let spec = self.template_spec();
        let devices = &spec.domain.devices;
        let name_at = |list: &str, index: usize| -> Option<&str> {
            let name = match list {
                "spec.dataVolumeTemplates" => self
                    .spec
                    .data_volume_templates
                    .get(index)?
                    .metadata
                    .name
                    .as_deref()?,
                _ => match list.strip_prefix(TEMPLATE_SPEC)? {
                    ".volumes" => spec.volumes.get(index)?.name.as_str(),
                    ".networks" => spec.networks.get(index)?.name.as_str(),
                    ".domain.devices.disks" => devices.disks.get(index)?.name.as_str(),
                    ".domain.devices.interfaces" => devices.interfaces.get(index)?.name.as_str(),
                    ".domain.devices.filesystems" => devices.filesystems.get(index)?.name.as_str(),
                    ".domain.devices.gpus" => devices.gpus.get(index)?.name.as_str(),
                    ".domain.devices.hostDevices" => devices.host_devices.get(index)?.name.as_str(),
                    _ => return None,
                },
            };
            (!name.is_empty()).then_some(name)
        };
        let mut named = String::with_capacity(path.len() + 16);
        let mut rest = path;
        while let Some(open) = rest.find('[') {
            let Some(close) = rest[open..].find(']').map(|c| open + c) else {
                break;
            };
            named.push_str(&rest[..open]);
            let list = &path[..path.len() - rest.len() + open];
            let name = rest[open + 1..close]
                .parse::<usize>()
                .ok()
                .and_then(|index| name_at(list, index));
            match name {
                Some(name) => {
                    named.push_str("[name=");
                    named.push_str(name);
                    named.push(']');
                }
                None => named.push_str(&rest[open..=close]),
            }
            rest = &rest[close + 1..];
        }
        named.push_str(rest);
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(spec: serde_json::Value) -> VirtualMachine {
        VirtualMachine::from_value(&json!({"spec": spec})).unwrap()
    }

    #[test]
    fn only_halted_vms_do_not_start() {
        let cases = [
            (json!({"runStrategy": "Always"}), true),
            (json!({"runStrategy": "Manual"}), true),
            (json!({"runStrategy": "Once"}), true),
            (json!({"runStrategy": "RerunOnFailure"}), true),
            (json!({"runStrategy": "Halted"}), false),
            (json!({"running": false}), false),
            (json!({"running": true}), true),
            (json!({}), false),
            (json!({"runStrategy": "always"}), true),
            (json!({"running": false, "runStrategy": "Halted"}), true),
        ];
        for (spec, starts) in cases {
            assert_eq!(vm(spec.clone()).will_start(), starts, "{spec}");
        }
    }

    #[test]
    fn named_items_are_named_and_the_rest_keep_their_index() {
        let vm = vm(json!({
            "dataVolumeTemplates": [{"metadata": {"name": "root-dv"}}],
            "template": {"spec": {
                "domain": {"devices": {"disks": [{"name": "root"}, {"name": ""}]}},
                "volumes": [{"name": "root"}, {"name": "creds"}],
                "accessCredentials": [{}]
            }}
        }));
        let cases = [
            (
                "spec.template.spec.volumes[1].secret.secretName",
                "spec.template.spec.volumes[name=creds].secret.secretName",
            ),
            (
                "spec.template.spec.domain.devices.disks[0].bootOrder",
                "spec.template.spec.domain.devices.disks[name=root].bootOrder",
            ),
            (
                "spec.template.spec.domain.devices.disks[1].name",
                "spec.template.spec.domain.devices.disks[1].name",
            ),
            (
                "spec.template.spec.domain.devices.disks[9].name",
                "spec.template.spec.domain.devices.disks[9].name",
            ),
            (
                "spec.dataVolumeTemplates[0].spec.storage.storageClassName",
                "spec.dataVolumeTemplates[name=root-dv].spec.storage.storageClassName",
            ),
            (
                "spec.template.spec.accessCredentials[0].sshPublicKey",
                "spec.template.spec.accessCredentials[0].sshPublicKey",
            ),
            ("spec.running", "spec.running"),
            (
                "spec.template.spec.tolerations[",
                "spec.template.spec.tolerations[",
            ),
        ];
        for (path, named) in cases {
            assert_eq!(vm.named_path(path), named);
        }
    }
}
