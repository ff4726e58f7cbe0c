//! VirtualMachines for the API server tests, as JSON values (kubectl takes JSON, and a JSON
//! document is a YAML document, so a `---` stream of them is a manifest file).

#![allow(dead_code)]

use serde_json::{Value, json};

/// A VM KubeVirt would run: a Fedora container disk (pinned tag) and inline cloud-init.
pub fn vm(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runStrategy": "Always",
            "template": {"spec": {
                "domain": {
                    "memory": {"guest": "1Gi"},
                    "devices": {"disks": [
                        {"name": "root", "disk": {"bus": "virtio"}},
                        {"name": "cloudinit", "disk": {"bus": "virtio"}}
                    ]}
                },
                "volumes": [
                    {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                    {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: fedora\n"}}
                ]
            }}
        }
    })
}

fn template_spec(vm: &mut Value) -> &mut Value {
    vm.pointer_mut("/spec/template/spec")
        .expect("a VM built by vm()")
}

fn volumes(vm: &mut Value) -> &mut Vec<Value> {
    template_spec(vm)["volumes"]
        .as_array_mut()
        .expect("volumes")
}

fn disks(vm: &mut Value) -> &mut Vec<Value> {
    template_spec(vm)["domain"]["devices"]["disks"]
        .as_array_mut()
        .expect("disks")
}

/// Adds a disk `data` that names no volume: `disk-without-volume`, an error.
pub fn with_disk_without_volume(mut vm: Value) -> Value {
    disks(&mut vm).push(json!({"name": "data", "disk": {"bus": "virtio"}}));
    vm
}

/// Boots from `:latest` pulled IfNotPresent: `image-tag-latest`, a warning.
pub fn with_latest_image(mut vm: Value) -> Value {
    volumes(&mut vm)[0]["containerDisk"] = json!({
        "image": "quay.io/containerdisks/fedora:latest",
        "imagePullPolicy": "IfNotPresent"
    });
    vm
}

/// Asks for nodes labelled `gpu=<model>` (the test cluster's one node has gpu=t4).
pub fn with_gpu(mut vm: Value, model: &str) -> Value {
    template_spec(&mut vm)["nodeSelector"] = json!({"gpu": model});
    vm
}

/// Its cloud-init user data comes from the Secret `secret` (`cloudInitNoCloud.secretRef`).
pub fn with_cloud_init_secret(mut vm: Value, secret: &str) -> Value {
    volumes(&mut vm)[1] =
        json!({"name": "cloudinit", "cloudInitNoCloud": {"secretRef": {"name": secret}}});
    vm
}

/// Adds a disk backed by the ConfigMap `config_map` (a configMap volume).
pub fn with_config_map(mut vm: Value, config_map: &str) -> Value {
    disks(&mut vm).push(json!({"name": "config", "disk": {"bus": "virtio"}}));
    volumes(&mut vm).push(json!({"name": "config", "configMap": {"name": config_map}}));
    vm
}

/// `runStrategy: Halted`: stored, not started.
pub fn halted(mut vm: Value) -> Value {
    vm["spec"]["runStrategy"] = json!("Halted");
    vm
}

/// A Secret holding cloud-init user data.
pub fn cloud_init_secret(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"userdata": "#cloud-config\npassword: fedora\n"}
    })
}

/// A ConfigMap with one file.
pub fn config_map(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"app.conf": "mode=production\n"}
    })
}

/// The documents as one manifest file (a YAML stream).
pub fn manifest(documents: &[Value]) -> String {
    documents
        .iter()
        .map(|document| format!("---\n{document}\n"))
        .collect()
}
