//! Interfaces and networks pair up by name. With neither listed, KubeVirt adds the default pod
//! network and its interface, so an empty pair is fine.

use super::small_set::SmallSet;
use super::{Emitter, VmContext};
use crate::model::TEMPLATE_SPEC;

pub fn interface_without_network(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let networks: SmallSet<&str> = cx.spec.networks.iter().map(|n| n.name.as_str()).collect();
    for (index, interface) in cx.spec.domain.devices.interfaces.iter().enumerate() {
        if !networks.contains(interface.name.as_str()) {
            out.emit(
                format!("{TEMPLATE_SPEC}.domain.devices.interfaces[{index}].name"),
                format!(
                    "interface {:?} names no network: add that network (e.g. pod: {{}}) or fix the name",
                    interface.name
                ),
            );
        }
    }
}

pub fn network_without_interface(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let interfaces: SmallSet<&str> = cx
        .spec
        .domain
        .devices
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    for (index, network) in cx.spec.networks.iter().enumerate() {
        if !interfaces.contains(network.name.as_str()) {
            out.emit(
                format!("{TEMPLATE_SPEC}.networks[{index}].name"),
                format!(
                    "network {:?} is used by no interface: add an interface of that name or remove it",
                    network.name
                ),
            );
        }
    }
}

/// An interface's `binding: {name}` names a plugin the KubeVirt CR does not register
/// (`spec.configuration.network.binding`): virt-controller cannot render the launcher pod
/// ("couldn't find configuration for network binding") and the VM stays Starting.
pub fn network_binding_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(config) = cx.kubevirt().and_then(|kubevirt| kubevirt.configuration()) else {
        return;
    };
    for (index, interface) in cx.spec.domain.devices.interfaces.iter().enumerate() {
        let Some(binding) = interface.binding.as_ref() else {
            continue;
        };
        if !config.network_bindings.contains_key(binding.name.as_str()) {
            out.emit(
                format!("{TEMPLATE_SPEC}.domain.devices.interfaces[{index}].binding.name"),
                format!(
                    "network binding plugin {:?} is not registered in the KubeVirt CR \
                     (spec.configuration.network.binding): register it or fix the name",
                    binding.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::json;

    #[test]
    fn interface_without_network() {
        let broken = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["interfaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "storage", "bridge": {}}));
        });
        assert_eq!(
            fired(broken),
            vec![(
                InterfaceWithoutNetwork,
                "spec.template.spec.domain.devices.interfaces[1].name".into()
            )]
        );
        let fixed = valid_vm_with(|vm| {
            spec(vm)["domain"]["devices"]["interfaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "storage", "bridge": {}}));
            spec(vm)["networks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "storage", "multus": {"networkName": "storage-net"}}));
        });
        assert_eq!(fired(fixed), vec![]);
    }

    #[test]
    fn network_without_interface() {
        let broken = valid_vm_with(|vm| {
            spec(vm)["networks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "storage", "multus": {"networkName": "storage-net"}}));
        });
        assert_eq!(
            fired(broken),
            vec![(
                NetworkWithoutInterface,
                "spec.template.spec.networks[1].name".into()
            )]
        );
    }

    #[test]
    fn neither_interfaces_nor_networks_is_the_default_pod_network() {
        let value = valid_vm_with(|vm| {
            spec(vm).as_object_mut().unwrap().remove("networks");
            spec(vm)["domain"]["devices"]
                .as_object_mut()
                .unwrap()
                .remove("interfaces");
        });
        assert_eq!(fired(value), vec![]);
    }
}
