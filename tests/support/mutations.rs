//! A mutation corpus of realistic VirtualMachine mistakes.
//!
//! Every operator takes the valid VM of [`base_vm`] and makes one mistake a user makes in a
//! `kubevirt.io/v1` VirtualMachine manifest: a disk that names a volume by a typo, `1GB` for
//! `1Gi`, `userData` next to `userDataBase64`, a field one level too high, a feature-gated device
//! on a cluster without the gate, ... The corpus exists to compare what `virt-preflight check`
//! says of a manifest with what a real KubeVirt says of it (virt-api's admission at
//! `kubectl apply`, or virt-controller's conditions once the VM starts): the operators are the
//! rows of that table, and each row's expected outcome is KubeVirt's, not ours.
//!
//! The operators were surveyed against KubeVirt v1.6.6 (virt-api and virt-controller, no feature
//! gates enabled) with `kubectl apply --dry-run=server` (kubectl's strict field validation).
//! Not every operator is refused: some are mistakes KubeVirt admits and that fail later (no
//! memory at all: the VMI is refused at start), some are mistakes KubeVirt quietly repairs (a
//! volume that no disk names gets a disk), and some are only mistakes on a real node. The
//! `instancetype` family references the namespaced VirtualMachineInstancetype `u1-small` that
//! [`u1_small_instancetype`] describes: without it in the VM's namespace, KubeVirt v1.6.6 admits
//! those VMs and virt-controller fails them with `FailedFindInstancetype`.

#![allow(dead_code)]

use serde_json::{Value, json};

/// The root disk's and its volume's name.
const ROOT: &str = "rootdisk";
/// The cloud-init disk's and its volume's name.
const CLOUD_INIT: &str = "cloudinitdisk";
/// The pod network's and its interface's name.
const POD_NETWORK: &str = "default";
/// The base VM's cloud-config.
const USER_DATA: &str = "#cloud-config\npassword: fedora\nchpasswd: { expire: False }\n";
/// [`USER_DATA`], base64-encoded.
const USER_DATA_BASE64: &str =
    "I2Nsb3VkLWNvbmZpZwpwYXNzd29yZDogZmVkb3JhCmNocGFzc3dkOiB7IGV4cGlyZTogRmFsc2UgfQo=";
/// The namespaced instancetype the `instancetype` family references.
const INSTANCETYPE: &str = "u1-small";

/// The valid VM every operator starts from (runStrategy Always, containerDisk root disk with
/// bootOrder 1, cloudInitNoCloud userData disk, masquerade interface on the pod network,
/// resources.requests.memory 1Gi, cpu cores 1).
pub fn base_vm(name: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"kubevirt.io/domain": name}},
                "spec": {
                    "domain": {
                        "cpu": {"cores": 1},
                        "resources": {"requests": {"memory": "1Gi"}},
                        "devices": {
                            "disks": [
                                {"name": ROOT, "bootOrder": 1, "disk": {"bus": "virtio"}},
                                {"name": CLOUD_INIT, "disk": {"bus": "virtio"}}
                            ],
                            "interfaces": [{"name": POD_NETWORK, "masquerade": {}}]
                        }
                    },
                    "networks": [{"name": POD_NETWORK, "pod": {}}],
                    "volumes": [
                        {"name": ROOT, "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                        {"name": CLOUD_INIT, "cloudInitNoCloud": {"userData": USER_DATA}}
                    ]
                }
            }
        }
    })
}

/// The VirtualMachineInstancetype `u1-small` (1 vCPU, 1Gi) that the `instancetype` family
/// references: create it in the VM's namespace for KubeVirt to apply it at admission.
pub fn u1_small_instancetype() -> Value {
    json!({
        "apiVersion": "instancetype.kubevirt.io/v1beta1",
        "kind": "VirtualMachineInstancetype",
        "metadata": {"name": INSTANCETYPE},
        "spec": {"cpu": {"guest": 1}, "memory": {"guest": "1Gi"}}
    })
}

pub struct Mutation {
    /// Stable, kebab-case, unique: becomes the VM's name suffix and the table's case name.
    pub name: &'static str,
    /// The family: one of "names", "boot-order", "run-strategy", "quantities", "user-data",
    /// "volume-sources", "devices", "feature-gates", "firmware", "cpu-memory-layout",
    /// "instancetype", "unknown-fields", "networks", "scheduling".
    pub family: &'static str,
    /// One line: the mistake, as a user would make it.
    pub what: &'static str,
    pub apply: fn(&mut Value),
}

/// The families, in the order [`mutations`] lists them.
pub const FAMILIES: [&str; 14] = [
    "names",
    "boot-order",
    "run-strategy",
    "quantities",
    "user-data",
    "volume-sources",
    "devices",
    "feature-gates",
    "firmware",
    "cpu-memory-layout",
    "instancetype",
    "unknown-fields",
    "networks",
    "scheduling",
];

// Paths into a VM built by `base_vm`. Indexing a `Value` mutably inserts a missing key (as
// null, which a later index turns into an object), so these also reach fields the base lacks.

fn template_spec(vm: &mut Value) -> &mut Value {
    &mut vm["spec"]["template"]["spec"]
}

fn domain(vm: &mut Value) -> &mut Value {
    &mut template_spec(vm)["domain"]
}

fn devices(vm: &mut Value) -> &mut Value {
    &mut domain(vm)["devices"]
}

/// The base VM's disk `index`: 0 is the root disk, 1 the cloud-init disk.
fn disk(vm: &mut Value, index: usize) -> &mut Value {
    &mut devices(vm)["disks"][index]
}

/// The base VM's volume `index`: 0 is the root disk's, 1 the cloud-init disk's.
fn volume(vm: &mut Value, index: usize) -> &mut Value {
    &mut template_spec(vm)["volumes"][index]
}

fn interface(vm: &mut Value) -> &mut Value {
    &mut devices(vm)["interfaces"][0]
}

fn network(vm: &mut Value) -> &mut Value {
    &mut template_spec(vm)["networks"][0]
}

fn cloud_init(vm: &mut Value) -> &mut Value {
    &mut volume(vm, 1)["cloudInitNoCloud"]
}

/// Appends `item` to the list at `list`, making it a list if it is not one.
fn push(list: &mut Value, item: Value) {
    match list {
        Value::Array(items) => items.push(item),
        other => *other = Value::Array(vec![item]),
    }
}

/// Removes `key` from the object at `object` (keeping the other keys' order); no-op otherwise.
fn remove(object: &mut Value, key: &str) -> Value {
    match object {
        Value::Object(map) => map.shift_remove(key).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Adds a second NIC: an interface `name` with `binding` (e.g. `{"bridge": {}}`) and a Multus
/// network `name` for the NetworkAttachmentDefinition `network_name`.
fn add_secondary_nic(vm: &mut Value, name: &str, binding: Value, network_name: &str) {
    let mut iface = json!({"name": name});
    if let (Value::Object(iface), Value::Object(binding)) = (&mut iface, binding) {
        iface.extend(binding);
    }
    push(&mut devices(vm)["interfaces"], iface);
    push(
        &mut template_spec(vm)["networks"],
        json!({"name": name, "multus": {"networkName": network_name}}),
    );
}

/// Replaces the root volume's containerDisk with a PVC `claim` (the disk keeps its name).
fn root_on_pvc(vm: &mut Value, claim: &str) {
    *volume(vm, 0) = json!({"name": ROOT, "persistentVolumeClaim": {"claimName": claim}});
}

/// Drops the VM's own sizing (cpu cores and memory requests), as a VM with an instancetype has.
fn drop_sizing(vm: &mut Value) {
    remove(domain(vm), "cpu");
    remove(domain(vm), "resources");
}

/// A cloud-config with an `ssh_authorized_keys` list of a whole team, over virt-api's 2048-byte
/// limit for inline user data.
fn team_keys_user_data() -> String {
    let mut user_data = String::from("#cloud-config\nssh_authorized_keys:\n");
    for member in 1..=32 {
        user_data.push_str(&format!(
            "  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH{member:04}kq3Vx9bQmT8wR2pL5yZ7nF0cJ6hD4sG1aE engineer{member}@example.com\n"
        ));
    }
    user_data
}

fn op(
    name: &'static str,
    family: &'static str,
    what: &'static str,
    apply: fn(&mut Value),
) -> Mutation {
    Mutation {
        name,
        family,
        what,
        apply,
    }
}

/// Every operator, grouped by family in the order of [`FAMILIES`]. Names are unique.
pub fn mutations() -> Vec<Mutation> {
    vec![
        // --- names -------------------------------------------------------------------------
        op(
            "disk-names-missing-volume",
            "names",
            "the root disk is renamed root-disk but its volume is still rootdisk",
            |vm| disk(vm, 0)["name"] = json!("root-disk"),
        ),
        op(
            "duplicate-disk-name",
            "names",
            "the cloud-init disk entry is copied from the root disk and keeps the name rootdisk",
            |vm| disk(vm, 1)["name"] = json!(ROOT),
        ),
        op(
            "duplicate-volume-name",
            "names",
            "the cloud-init volume is copied from the root volume and keeps the name rootdisk",
            |vm| volume(vm, 1)["name"] = json!(ROOT),
        ),
        op(
            "duplicate-interface-name",
            "names",
            "a second NIC is copy-pasted from the first and keeps the interface name default",
            |vm| {
                push(
                    &mut devices(vm)["interfaces"],
                    json!({"name": POD_NETWORK, "bridge": {}}),
                );
                push(
                    &mut template_spec(vm)["networks"],
                    json!({"name": "secondary", "multus": {"networkName": "vlan10"}}),
                );
            },
        ),
        op(
            "duplicate-network-name",
            "names",
            "a Multus network is added under the name default, which the pod network already has",
            |vm| {
                push(
                    &mut template_spec(vm)["networks"],
                    json!({"name": POD_NETWORK, "multus": {"networkName": "vlan10"}}),
                );
            },
        ),
        op(
            "volume-without-disk",
            "names",
            "a scratch emptyDisk volume is added without a disk (KubeVirt adds one)",
            |vm| {
                push(
                    &mut template_spec(vm)["volumes"],
                    json!({"name": "scratch", "emptyDisk": {"capacity": "2Gi"}}),
                );
            },
        ),
        op(
            "camel-case-disk-name",
            "names",
            "the root disk and its volume are named rootDisk, camelCase",
            |vm| {
                disk(vm, 0)["name"] = json!("rootDisk");
                volume(vm, 0)["name"] = json!("rootDisk");
            },
        ),
        op(
            "hostname-underscore",
            "names",
            "the guest hostname is set to web_01, with an underscore",
            |vm| template_spec(vm)["hostname"] = json!("web_01"),
        ),
        // --- boot-order --------------------------------------------------------------------
        op(
            "boot-order-zero",
            "boot-order",
            "the root disk gets bootOrder 0, counting from zero",
            |vm| disk(vm, 0)["bootOrder"] = json!(0),
        ),
        op(
            "boot-order-duplicate",
            "boot-order",
            "both disks get bootOrder 1",
            |vm| disk(vm, 1)["bootOrder"] = json!(1),
        ),
        op(
            "boot-order-negative",
            "boot-order",
            "the cloud-init disk gets bootOrder -1 to keep it out of the boot list",
            |vm| disk(vm, 1)["bootOrder"] = json!(-1),
        ),
        op(
            "boot-order-on-cloud-init",
            "boot-order",
            "bootOrder 1 is on the cloud-init disk instead of the root disk",
            |vm| {
                remove(disk(vm, 0), "bootOrder");
                disk(vm, 1)["bootOrder"] = json!(1);
            },
        ),
        op(
            "boot-order-none-cloud-init-first",
            "boot-order",
            "no disk has a bootOrder and the cloud-init disk is listed first",
            |vm| {
                remove(disk(vm, 0), "bootOrder");
                if let Value::Array(disks) = &mut devices(vm)["disks"] {
                    disks.reverse();
                }
            },
        ),
        op(
            "boot-order-string",
            "boot-order",
            "bootOrder is quoted: \"1\"",
            |vm| disk(vm, 0)["bootOrder"] = json!("1"),
        ),
        op(
            "boot-order-interface-clash",
            "boot-order",
            "the NIC gets bootOrder 1 for PXE, the number the root disk already has",
            |vm| interface(vm)["bootOrder"] = json!(1),
        ),
        // --- run-strategy ------------------------------------------------------------------
        op(
            "running-and-run-strategy",
            "run-strategy",
            "running: true is left in next to runStrategy: Always",
            |vm| vm["spec"]["running"] = json!(true),
        ),
        op(
            "running-false-and-run-strategy",
            "run-strategy",
            "running: false is left in next to runStrategy: Always",
            |vm| vm["spec"]["running"] = json!(false),
        ),
        op(
            "run-strategy-running",
            "run-strategy",
            "runStrategy: Running, the printable status, instead of Always",
            |vm| vm["spec"]["runStrategy"] = json!("Running"),
        ),
        op(
            "run-strategy-lowercase",
            "run-strategy",
            "runStrategy: always, lower case",
            |vm| vm["spec"]["runStrategy"] = json!("always"),
        ),
        op(
            "no-run-strategy",
            "run-strategy",
            "neither running nor runStrategy is set",
            |vm| {
                remove(&mut vm["spec"], "runStrategy");
            },
        ),
        op(
            "running-string",
            "run-strategy",
            "the deprecated running is used, quoted: running: \"true\"",
            |vm| {
                remove(&mut vm["spec"], "runStrategy");
                vm["spec"]["running"] = json!("true");
            },
        ),
        // --- quantities --------------------------------------------------------------------
        op(
            "memory-space-in-quantity",
            "quantities",
            "memory request written with a space: \"1 Gi\"",
            |vm| domain(vm)["resources"]["requests"]["memory"] = json!("1 Gi"),
        ),
        op(
            "memory-gb-suffix",
            "quantities",
            "memory request written as 1GB instead of 1Gi",
            |vm| domain(vm)["resources"]["requests"]["memory"] = json!("1GB"),
        ),
        op(
            "memory-lowercase-suffix",
            "quantities",
            "memory request written as 1gi",
            |vm| domain(vm)["resources"]["requests"]["memory"] = json!("1gi"),
        ),
        op(
            "memory-bare-number",
            "quantities",
            "memory request \"1024\" meant as MiB, which is 1024 bytes",
            |vm| domain(vm)["resources"]["requests"]["memory"] = json!("1024"),
        ),
        op(
            "memory-negative",
            "quantities",
            "memory request -1Gi",
            |vm| domain(vm)["resources"]["requests"]["memory"] = json!("-1Gi"),
        ),
        op(
            "memory-requests-above-limits",
            "quantities",
            "memory limit 512Mi below the 1Gi request",
            |vm| domain(vm)["resources"]["limits"] = json!({"memory": "512Mi"}),
        ),
        op(
            "guest-memory-above-limit",
            "quantities",
            "memory.guest 2Gi with a memory limit of 1Gi",
            |vm| {
                domain(vm)["memory"] = json!({"guest": "2Gi"});
                domain(vm)["resources"]["limits"] = json!({"memory": "1Gi"});
            },
        ),
        op(
            "cpu-decimal",
            "quantities",
            "cpu request written as \"0.5\" rather than 500m (the same quantity)",
            |vm| domain(vm)["resources"]["requests"]["cpu"] = json!("0.5"),
        ),
        op(
            "cpu-requests-above-limits",
            "quantities",
            "cpu request 2 with a cpu limit of 1",
            |vm| {
                domain(vm)["resources"]["requests"]["cpu"] = json!("2");
                domain(vm)["resources"]["limits"] = json!({"cpu": "1"});
            },
        ),
        op(
            "memory-missing",
            "quantities",
            "no memory anywhere: resources removed, no memory.guest",
            |vm| {
                remove(domain(vm), "resources");
            },
        ),
        // --- user-data ---------------------------------------------------------------------
        op(
            "userdata-and-base64",
            "user-data",
            "cloudInitNoCloud has both userData and userDataBase64",
            |vm| cloud_init(vm)["userDataBase64"] = json!(USER_DATA_BASE64),
        ),
        op(
            "userdata-and-secret-ref",
            "user-data",
            "cloudInitNoCloud has both userData and a userDataSecretRef",
            |vm| cloud_init(vm)["secretRef"] = json!({"name": "cloud-init-secret"}),
        ),
        op(
            "config-drive-userdata-and-base64",
            "user-data",
            "cloudInitConfigDrive has both userData and userDataBase64",
            |vm| {
                volume(vm, 1)["cloudInitConfigDrive"] =
                    json!({"userData": USER_DATA, "userDataBase64": USER_DATA_BASE64});
                remove(volume(vm, 1), "cloudInitNoCloud");
            },
        ),
        op(
            "userdata-too-large",
            "user-data",
            "inline userData of a whole team's ssh keys, over 2 KiB",
            |vm| cloud_init(vm)["userData"] = json!(team_keys_user_data()),
        ),
        op(
            "userdata-base64-not-encoded",
            "user-data",
            "the plain cloud-config is pasted into userDataBase64",
            |vm| {
                remove(cloud_init(vm), "userData");
                cloud_init(vm)["userDataBase64"] = json!(USER_DATA);
            },
        ),
        op(
            "cloud-init-empty",
            "user-data",
            "cloudInitNoCloud: {} with neither user data nor network data",
            |vm| *cloud_init(vm) = json!({}),
        ),
        op(
            "networkdata-and-base64",
            "user-data",
            "cloudInitNoCloud has both networkData and networkDataBase64",
            |vm| {
                cloud_init(vm)["networkData"] =
                    json!("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n");
                cloud_init(vm)["networkDataBase64"] =
                    json!("dmVyc2lvbjogMgpldGhlcm5ldHM6CiAgZXRoMDoKICAgIGRoY3A0OiB0cnVlCg==");
            },
        ),
        op(
            "userdata-without-header",
            "user-data",
            "userData without its #cloud-config first line",
            |vm| {
                cloud_init(vm)["userData"] =
                    json!("password: fedora\nchpasswd: { expire: False }\n");
            },
        ),
        // --- volume-sources ----------------------------------------------------------------
        op(
            "volume-without-source",
            "volume-sources",
            "the root volume has only a name, its containerDisk was deleted",
            |vm| *volume(vm, 0) = json!({"name": ROOT}),
        ),
        op(
            "volume-two-sources",
            "volume-sources",
            "the root volume has a persistentVolumeClaim added next to its containerDisk",
            |vm| volume(vm, 0)["persistentVolumeClaim"] = json!({"claimName": "fedora-root"}),
        ),
        op(
            "container-disk-without-image",
            "volume-sources",
            "containerDisk with no image",
            |vm| volume(vm, 0)["containerDisk"] = json!({}),
        ),
        op(
            "container-disk-image-uppercase",
            "volume-sources",
            "containerDisk image with an upper-case repository: quay.io/ContainerDisks/fedora:41",
            |vm| {
                volume(vm, 0)["containerDisk"]["image"] = json!("quay.io/ContainerDisks/fedora:41");
            },
        ),
        op(
            "pvc-without-claim-name",
            "volume-sources",
            "persistentVolumeClaim: {} with no claimName",
            |vm| *volume(vm, 0) = json!({"name": ROOT, "persistentVolumeClaim": {}}),
        ),
        op(
            "pvc-missing",
            "volume-sources",
            "the root volume is a PVC fedora-root that does not exist",
            |vm| root_on_pvc(vm, "fedora-root"),
        ),
        op(
            "datavolume-missing",
            "volume-sources",
            "a dataVolume volume that names no dataVolumeTemplates entry and no DataVolume",
            |vm| *volume(vm, 0) = json!({"name": ROOT, "dataVolume": {"name": "fedora-root"}}),
        ),
        op(
            "datavolume-empty-name",
            "volume-sources",
            "a dataVolume volume with an empty name",
            |vm| *volume(vm, 0) = json!({"name": ROOT, "dataVolume": {"name": ""}}),
        ),
        op(
            "datavolume-template-unused",
            "volume-sources",
            "a dataVolumeTemplates entry no volume uses (the root volume is still a containerDisk)",
            |vm| {
                vm["spec"]["dataVolumeTemplates"] = json!([{
                    "metadata": {"name": "fedora-root"},
                    "spec": {
                        "storage": {"resources": {"requests": {"storage": "10Gi"}}},
                        "source": {"registry": {"url": "docker://quay.io/containerdisks/fedora:41"}}
                    }
                }]);
            },
        ),
        op(
            "empty-disk-without-capacity",
            "volume-sources",
            "a scratch emptyDisk volume with no capacity",
            |vm| {
                push(
                    &mut devices(vm)["disks"],
                    json!({"name": "scratch", "disk": {"bus": "virtio"}}),
                );
                push(
                    &mut template_spec(vm)["volumes"],
                    json!({"name": "scratch", "emptyDisk": {}}),
                );
            },
        ),
        op(
            "configmap-without-name",
            "volume-sources",
            "a configMap volume with no name",
            |vm| {
                push(
                    &mut devices(vm)["disks"],
                    json!({"name": "app-config", "disk": {"bus": "virtio"}}),
                );
                push(
                    &mut template_spec(vm)["volumes"],
                    json!({"name": "app-config", "configMap": {}}),
                );
            },
        ),
        // --- devices -----------------------------------------------------------------------
        op(
            "disk-and-cdrom-targets",
            "devices",
            "the root disk has both disk: and cdrom: targets",
            |vm| disk(vm, 0)["cdrom"] = json!({"bus": "sata"}),
        ),
        op(
            "cdrom-virtio-bus",
            "devices",
            "the cloud-init disk is a cdrom on the virtio bus",
            |vm| {
                remove(disk(vm, 1), "disk");
                disk(vm, 1)["cdrom"] = json!({"bus": "virtio"});
            },
        ),
        op(
            "disk-bus-ide",
            "devices",
            "the root disk is on the ide bus, from an old example",
            |vm| disk(vm, 0)["disk"]["bus"] = json!("ide"),
        ),
        op(
            "disk-bus-typo",
            "devices",
            "the root disk's bus is spelled virtIO",
            |vm| disk(vm, 0)["disk"]["bus"] = json!("virtIO"),
        ),
        op(
            "disk-bus-sata",
            "devices",
            "the root disk is on the sata bus (works, slower)",
            |vm| disk(vm, 0)["disk"]["bus"] = json!("sata"),
        ),
        op(
            "empty-cdrom",
            "devices",
            "an installer cdrom with no volume, to insert media later",
            |vm| {
                push(
                    &mut devices(vm)["disks"],
                    json!({"name": "installer", "cdrom": {"bus": "sata"}}),
                );
            },
        ),
        op(
            "lun-on-container-disk",
            "devices",
            "the root containerDisk is attached as a lun",
            |vm| {
                remove(disk(vm, 0), "disk");
                disk(vm, 0)["lun"] = json!({});
            },
        ),
        op(
            "disk-cache-invalid",
            "devices",
            "the root disk's cache is write-back instead of writeback",
            |vm| disk(vm, 0)["cache"] = json!("write-back"),
        ),
        op(
            "disk-serial-invalid-chars",
            "devices",
            "the root disk's serial has spaces and a slash",
            |vm| disk(vm, 0)["serial"] = json!("root disk #1/fedora"),
        ),
        op(
            "no-devices",
            "devices",
            "domain.devices is left out entirely",
            |vm| {
                remove(domain(vm), "devices");
            },
        ),
        op(
            "interface-model-invalid",
            "devices",
            "the NIC model is virtio-net instead of virtio",
            |vm| interface(vm)["model"] = json!("virtio-net"),
        ),
        op(
            "mac-address-invalid",
            "devices",
            "a MAC address with five octets",
            |vm| interface(vm)["macAddress"] = json!("02:00:00:ab:cd"),
        ),
        op(
            "mac-address-duplicate",
            "devices",
            "two NICs with the same MAC address",
            |vm| {
                interface(vm)["macAddress"] = json!("02:00:00:ab:cd:01");
                add_secondary_nic(
                    vm,
                    "secondary",
                    json!({"bridge": {}, "macAddress": "02:00:00:ab:cd:01"}),
                    "vlan10",
                );
            },
        ),
        op(
            "input-ps2-bus",
            "devices",
            "a tablet input device on the ps2 bus",
            |vm| {
                devices(vm)["inputs"] = json!([{"name": "tablet", "type": "tablet", "bus": "ps2"}]);
            },
        ),
        op(
            "sound-model-invalid",
            "devices",
            "a sound device with model hda",
            |vm| devices(vm)["sound"] = json!({"name": "audio", "model": "hda"}),
        ),
        // --- feature-gates -----------------------------------------------------------------
        op(
            "video-without-gate",
            "feature-gates",
            "a video device type (VideoConfig gate)",
            |vm| devices(vm)["video"] = json!({"type": "virtio"}),
        ),
        op(
            "vsock-without-gate",
            "feature-gates",
            "autoattachVSOCK: true (VSOCK gate)",
            |vm| devices(vm)["autoattachVSOCK"] = json!(true),
        ),
        op(
            "downward-metrics-volume",
            "feature-gates",
            "a downwardMetrics volume and disk (DownwardMetrics gate)",
            |vm| {
                push(
                    &mut devices(vm)["disks"],
                    json!({"name": "metrics", "disk": {"bus": "virtio"}}),
                );
                push(
                    &mut template_spec(vm)["volumes"],
                    json!({"name": "metrics", "downwardMetrics": {}}),
                );
            },
        ),
        op(
            "downward-metrics-device",
            "feature-gates",
            "a downwardMetrics virtio-serial device (DownwardMetrics gate)",
            |vm| devices(vm)["downwardMetrics"] = json!({}),
        ),
        op(
            "hostdisk-without-gate",
            "feature-gates",
            "a hostDisk volume for scratch space (HostDisk gate)",
            |vm| {
                push(
                    &mut devices(vm)["disks"],
                    json!({"name": "scratch", "disk": {"bus": "virtio"}}),
                );
                push(
                    &mut template_spec(vm)["volumes"],
                    json!({"name": "scratch", "hostDisk": {
                        "path": "/var/lib/scratch/disk.img",
                        "type": "DiskOrCreate",
                        "capacity": "10Gi"
                    }}),
                );
            },
        ),
        op(
            "host-devices-without-gate",
            "feature-gates",
            "a PCI host device passed through (HostDevices gate)",
            |vm| {
                devices(vm)["hostDevices"] =
                    json!([{"name": "nic", "deviceName": "intel.com/x710"}]);
            },
        ),
        op(
            "gpu-not-permitted",
            "feature-gates",
            "a GPU whose deviceName the KubeVirt CR does not permit",
            |vm| {
                devices(vm)["gpus"] =
                    json!([{"name": "gpu1", "deviceName": "nvidia.com/GA102GL_A10"}]);
            },
        ),
        op(
            "panic-device-without-gate",
            "feature-gates",
            "a panic device (PanicDevices gate)",
            |vm| devices(vm)["panicDevices"] = json!([{"model": "isa"}]),
        ),
        op(
            "sidecar-annotation-without-gate",
            "feature-gates",
            "a hook sidecar annotation on the template (Sidecar gate)",
            |vm| {
                vm["spec"]["template"]["metadata"]["annotations"]["hooks.kubevirt.io/hookSidecars"] =
                    json!("[{\"image\": \"quay.io/kubevirt/sidecar-shim:v1.6.6\"}]");
            },
        ),
        op(
            "ignition-annotation-without-gate",
            "feature-gates",
            "Ignition data in the template annotation (ExperimentalIgnitionSupport gate)",
            |vm| {
                vm["spec"]["template"]["metadata"]["annotations"]["kubevirt.io/ignitiondata"] =
                    json!("{\"ignition\": {\"version\": \"3.2.0\"}}");
            },
        ),
        op(
            "lun-reservation-without-gate",
            "feature-gates",
            "a PVC lun with SCSI persistent reservation (PersistentReservation gate)",
            |vm| {
                root_on_pvc(vm, "shared-lun");
                *disk(vm, 0) = json!({"name": ROOT, "bootOrder": 1, "lun": {"reservation": true}});
            },
        ),
        op(
            "virtiofs-configmap-without-gate",
            "feature-gates",
            "a configMap shared as a virtiofs filesystem (EnableVirtioFsConfigVolumes gate)",
            |vm| {
                devices(vm)["filesystems"] = json!([{"name": "app-config", "virtiofs": {}}]);
                push(
                    &mut template_spec(vm)["volumes"],
                    json!({"name": "app-config", "configMap": {"name": "app-config"}}),
                );
            },
        ),
        op(
            "sev-without-gate",
            "feature-gates",
            "launchSecurity.sev with EFI (WorkloadEncryptionSEV gate)",
            |vm| {
                domain(vm)["launchSecurity"] = json!({"sev": {}});
                domain(vm)["firmware"] = json!({"bootloader": {"efi": {"secureBoot": false}}});
            },
        ),
        op(
            "architecture-arm64-without-gate",
            "feature-gates",
            "architecture: arm64 on an amd64 cluster (MultiArchitecture gate)",
            |vm| template_spec(vm)["architecture"] = json!("arm64"),
        ),
        op(
            "persistent-tpm",
            "feature-gates",
            "a persistent TPM (VMPersistentState, GA in v1.6: needs backend storage)",
            |vm| devices(vm)["tpm"] = json!({"persistent": true}),
        ),
        op(
            "persistent-efi",
            "feature-gates",
            "persistent EFI variables (VMPersistentState, GA in v1.6: needs backend storage)",
            |vm| {
                domain(vm)["firmware"] =
                    json!({"bootloader": {"efi": {"secureBoot": false, "persistent": true}}});
            },
        ),
        // --- firmware ----------------------------------------------------------------------
        op(
            "secure-boot-smm-disabled",
            "firmware",
            "EFI secureBoot with the SMM feature explicitly disabled",
            |vm| {
                domain(vm)["firmware"] = json!({"bootloader": {"efi": {"secureBoot": true}}});
                domain(vm)["features"] = json!({"smm": {"enabled": false}});
            },
        ),
        op(
            "secure-boot-no-features",
            "firmware",
            "EFI secureBoot with no features section (SMM left to the defaults)",
            |vm| domain(vm)["firmware"] = json!({"bootloader": {"efi": {"secureBoot": true}}}),
        ),
        op(
            "efi-default-secure-boot",
            "firmware",
            "efi: {} for plain UEFI, not knowing that secureBoot defaults to true (and needs SMM)",
            |vm| domain(vm)["firmware"] = json!({"bootloader": {"efi": {}}}),
        ),
        op(
            "bootloader-bios-and-efi",
            "firmware",
            "the bootloader has both bios and efi",
            |vm| domain(vm)["firmware"] = json!({"bootloader": {"bios": {}, "efi": {}}}),
        ),
        op(
            "firmware-serial-too-long",
            "firmware",
            "a firmware serial of 300 characters",
            |vm| domain(vm)["firmware"] = json!({"serial": "S".repeat(300)}),
        ),
        op(
            "firmware-uuid-invalid",
            "firmware",
            "a firmware uuid that is not a UUID",
            |vm| domain(vm)["firmware"] = json!({"uuid": "fedora-vm-01"}),
        ),
        op(
            "acpi-without-table",
            "firmware",
            "firmware.acpi: {} with neither SLIC nor MSDM",
            |vm| domain(vm)["firmware"] = json!({"acpi": {}}),
        ),
        op(
            "kernel-boot-without-image",
            "firmware",
            "kernelBoot container with kernelPath but no image",
            |vm| {
                domain(vm)["firmware"] = json!({"kernelBoot": {
                    "kernelArgs": "console=ttyS0",
                    "container": {"kernelPath": "/boot/vmlinuz"}
                }});
            },
        ),
        // --- cpu-memory-layout -------------------------------------------------------------
        op(
            "cpu-cores-zero",
            "cpu-memory-layout",
            "cpu.cores: 0",
            |vm| domain(vm)["cpu"]["cores"] = json!(0),
        ),
        op(
            "sockets-above-max-sockets",
            "cpu-memory-layout",
            "cpu.sockets 4 with maxSockets 2",
            |vm| domain(vm)["cpu"] = json!({"cores": 1, "sockets": 4, "maxSockets": 2}),
        ),
        op(
            "dedicated-cpu-requests-not-limits",
            "cpu-memory-layout",
            "dedicatedCpuPlacement with cpu request 2 and limit 4",
            |vm| {
                domain(vm)["cpu"] = json!({"dedicatedCpuPlacement": true});
                domain(vm)["resources"] = json!({
                    "requests": {"cpu": "2", "memory": "1Gi"},
                    "limits": {"cpu": "4", "memory": "1Gi"}
                });
            },
        ),
        op(
            "dedicated-cpu-fractional",
            "cpu-memory-layout",
            "dedicatedCpuPlacement with a cpu of 1500m",
            |vm| {
                domain(vm)["cpu"] = json!({"dedicatedCpuPlacement": true});
                domain(vm)["resources"] = json!({
                    "requests": {"cpu": "1500m", "memory": "1Gi"},
                    "limits": {"cpu": "1500m", "memory": "1Gi"}
                });
            },
        ),
        op(
            "dedicated-cpu-cores-and-requests",
            "cpu-memory-layout",
            "dedicatedCpuPlacement with cores 1 and also a cpu request and limit of 1",
            |vm| {
                domain(vm)["cpu"]["dedicatedCpuPlacement"] = json!(true);
                domain(vm)["resources"] = json!({
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"cpu": "1", "memory": "1Gi"}
                });
            },
        ),
        op(
            "isolate-emulator-thread-alone",
            "cpu-memory-layout",
            "isolateEmulatorThread without dedicatedCpuPlacement",
            |vm| domain(vm)["cpu"]["isolateEmulatorThread"] = json!(true),
        ),
        op(
            "cpu-feature-policy-invalid",
            "cpu-memory-layout",
            "a CPU feature vmx with policy enabled instead of require",
            |vm| domain(vm)["cpu"]["features"] = json!([{"name": "vmx", "policy": "enabled"}]),
        ),
        op(
            "cpu-model-empty",
            "cpu-memory-layout",
            "cpu.model: \"\" (left empty by a template)",
            |vm| domain(vm)["cpu"]["model"] = json!(""),
        ),
        op(
            "hugepages-page-size-3mi",
            "cpu-memory-layout",
            "hugepages with pageSize 3Mi, no such page size",
            |vm| domain(vm)["memory"] = json!({"hugepages": {"pageSize": "3Mi"}}),
        ),
        op(
            "hugepages-page-size-2mb",
            "cpu-memory-layout",
            "hugepages with pageSize 2MB instead of 2Mi",
            |vm| domain(vm)["memory"] = json!({"hugepages": {"pageSize": "2MB"}}),
        ),
        op(
            "hugepages-larger-than-memory",
            "cpu-memory-layout",
            "hugepages of 1Gi for a VM of 512Mi",
            |vm| {
                domain(vm)["memory"] = json!({"hugepages": {"pageSize": "1Gi"}});
                domain(vm)["resources"]["requests"]["memory"] = json!("512Mi");
            },
        ),
        op(
            "max-guest-below-guest",
            "cpu-memory-layout",
            "memory.maxGuest 1Gi below memory.guest 2Gi",
            |vm| {
                domain(vm)["memory"] = json!({"guest": "2Gi", "maxGuest": "1Gi"});
                remove(domain(vm), "resources");
            },
        ),
        // --- instancetype ------------------------------------------------------------------
        op(
            "instancetype-with-cpu-and-memory",
            "instancetype",
            "an instancetype is added but the template keeps its own cpu and memory",
            |vm| {
                vm["spec"]["instancetype"] =
                    json!({"kind": "VirtualMachineInstancetype", "name": INSTANCETYPE});
            },
        ),
        op(
            "instancetype-kind-preference",
            "instancetype",
            "the instancetype's kind is copied from a preference line: VirtualMachinePreference",
            |vm| {
                drop_sizing(vm);
                vm["spec"]["instancetype"] =
                    json!({"kind": "VirtualMachinePreference", "name": INSTANCETYPE});
            },
        ),
        op(
            "instancetype-kind-unknown",
            "instancetype",
            "instancetype kind VirtualMachineFlavor, from an old blog post",
            |vm| {
                drop_sizing(vm);
                vm["spec"]["instancetype"] =
                    json!({"kind": "VirtualMachineFlavor", "name": INSTANCETYPE});
            },
        ),
        op(
            "instancetype-kind-wrong-case",
            "instancetype",
            "instancetype kind VirtualMachineInstanceType, wrong case (KubeVirt ignores case)",
            |vm| {
                drop_sizing(vm);
                vm["spec"]["instancetype"] =
                    json!({"kind": "VirtualMachineInstanceType", "name": INSTANCETYPE});
            },
        ),
        op(
            "instancetype-kind-lowercase",
            "instancetype",
            "instancetype kind virtualmachineinstancetype, the resource name",
            |vm| {
                drop_sizing(vm);
                vm["spec"]["instancetype"] =
                    json!({"kind": "virtualmachineinstancetype", "name": INSTANCETYPE});
            },
        ),
        op(
            "instancetype-not-found",
            "instancetype",
            "a cluster instancetype u1.medium that is not installed",
            |vm| {
                drop_sizing(vm);
                vm["spec"]["instancetype"] = json!({"name": "u1.medium"});
            },
        ),
        op(
            "preference-kind-instancetype",
            "instancetype",
            "the preference's kind is copied from the instancetype line",
            |vm| {
                drop_sizing(vm);
                vm["spec"]["instancetype"] =
                    json!({"kind": "VirtualMachineInstancetype", "name": INSTANCETYPE});
                vm["spec"]["preference"] =
                    json!({"kind": "VirtualMachineInstancetype", "name": "fedora"});
            },
        ),
        // --- unknown-fields ----------------------------------------------------------------
        op(
            "volumes-under-template",
            "unknown-fields",
            "volumes one level too high: spec.template.volumes",
            |vm| {
                let volumes = remove(template_spec(vm), "volumes");
                vm["spec"]["template"]["volumes"] = volumes;
            },
        ),
        op(
            "disks-under-domain",
            "unknown-fields",
            "disks directly under domain, without devices",
            |vm| {
                let disks = remove(devices(vm), "disks");
                domain(vm)["disks"] = disks;
            },
        ),
        op(
            "run-strategy-misspelled",
            "unknown-fields",
            "spec.runStategy: Always, misspelled",
            |vm| {
                let strategy = remove(&mut vm["spec"], "runStrategy");
                vm["spec"]["runStategy"] = strategy;
            },
        ),
        op(
            "memory-guest-number",
            "unknown-fields",
            "memory.guest: 2048, a number meant as MiB",
            |vm| {
                remove(domain(vm), "resources");
                domain(vm)["memory"] = json!({"guest": 2048});
            },
        ),
        op(
            "resources-on-template-spec",
            "unknown-fields",
            "resources on the template spec as on a pod, not under domain",
            |vm| {
                let resources = remove(domain(vm), "resources");
                template_spec(vm)["resources"] = resources;
            },
        ),
        op(
            "cpu-cores-string",
            "unknown-fields",
            "cpu.cores quoted: \"2\"",
            |vm| domain(vm)["cpu"]["cores"] = json!("2"),
        ),
        op(
            "bus-outside-disk-target",
            "unknown-fields",
            "bus set on the disk entry itself, without the disk: target",
            |vm| {
                remove(disk(vm, 0), "disk");
                disk(vm, 0)["bus"] = json!("virtio");
            },
        ),
        op(
            "node-selector-on-vm-spec",
            "unknown-fields",
            "nodeSelector on the VM's spec instead of the template's",
            |vm| vm["spec"]["nodeSelector"] = json!({"kubernetes.io/arch": "amd64"}),
        ),
        op(
            "interfaces-under-template-spec",
            "unknown-fields",
            "interfaces on the template spec next to networks",
            |vm| {
                let interfaces = remove(devices(vm), "interfaces");
                template_spec(vm)["interfaces"] = interfaces;
            },
        ),
        // --- networks ----------------------------------------------------------------------
        op(
            "interface-without-network",
            "networks",
            "the network is named pod while the interface is named default",
            |vm| network(vm)["name"] = json!("pod"),
        ),
        op(
            "network-without-interface",
            "networks",
            "a Multus network is added without an interface",
            |vm| {
                push(
                    &mut template_spec(vm)["networks"],
                    json!({"name": "secondary", "multus": {"networkName": "vlan10"}}),
                );
            },
        ),
        op(
            "multus-network-name-empty",
            "networks",
            "a Multus network with networkName \"\"",
            |vm| add_secondary_nic(vm, "secondary", json!({"bridge": {}}), ""),
        ),
        op(
            "secondary-network-nad-missing",
            "networks",
            "a bridged Multus NIC whose NetworkAttachmentDefinition does not exist",
            |vm| add_secondary_nic(vm, "secondary", json!({"bridge": {}}), "vlan10"),
        ),
        op(
            "two-pod-networks",
            "networks",
            "a second interface on a second pod network",
            |vm| {
                push(
                    &mut devices(vm)["interfaces"],
                    json!({"name": "second", "masquerade": {}}),
                );
                push(
                    &mut template_spec(vm)["networks"],
                    json!({"name": "second", "pod": {}}),
                );
            },
        ),
        op(
            "masquerade-and-bridge",
            "networks",
            "the interface has both masquerade and bridge bindings",
            |vm| interface(vm)["bridge"] = json!({}),
        ),
        op(
            "masquerade-on-multus",
            "networks",
            "a second NIC with masquerade binding on a Multus network",
            |vm| add_secondary_nic(vm, "vlan10", json!({"masquerade": {}}), "vlan10"),
        ),
        op(
            "bridge-on-pod-network",
            "networks",
            "bridge binding on the pod network instead of masquerade",
            |vm| *interface(vm) = json!({"name": POD_NETWORK, "bridge": {}}),
        ),
        op(
            "port-protocol-lowercase",
            "networks",
            "a forwarded port with protocol tcp, lower case",
            |vm| interface(vm)["ports"] = json!([{"name": "ssh", "port": 22, "protocol": "tcp"}]),
        ),
        op(
            "dns-policy-none-without-config",
            "networks",
            "dnsPolicy None without dnsConfig",
            |vm| template_spec(vm)["dnsPolicy"] = json!("None"),
        ),
        // --- scheduling --------------------------------------------------------------------
        op(
            "node-selector-bool",
            "scheduling",
            "a nodeSelector value written as an unquoted true",
            |vm| template_spec(vm)["nodeSelector"] = json!({"nvidia.com/gpu.present": true}),
        ),
        op(
            "toleration-operator-invalid",
            "scheduling",
            "a toleration with operator Equals instead of Equal",
            |vm| {
                template_spec(vm)["tolerations"] = json!([{
                    "key": "dedicated", "operator": "Equals", "value": "vms", "effect": "NoSchedule"
                }]);
            },
        ),
        op(
            "toleration-exists-with-value",
            "scheduling",
            "a toleration with operator Exists and a value",
            |vm| {
                template_spec(vm)["tolerations"] = json!([{
                    "key": "dedicated", "operator": "Exists", "value": "vms", "effect": "NoSchedule"
                }]);
            },
        ),
        op(
            "affinity-empty-terms",
            "scheduling",
            "required node affinity with an empty nodeSelectorTerms list",
            |vm| {
                template_spec(vm)["affinity"] = json!({"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                }});
            },
        ),
        op(
            "affinity-operator-lowercase",
            "scheduling",
            "a node affinity match expression with operator in, lower case",
            |vm| {
                template_spec(vm)["affinity"] = json!({"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                        "matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "in", "values": ["zone-a"]}
                        ]
                    }]}
                }});
            },
        ),
        op(
            "affinity-in-without-values",
            "scheduling",
            "a node affinity match expression with operator In and no values",
            |vm| {
                template_spec(vm)["affinity"] = json!({"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                        "matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In"}]
                    }]}
                }});
            },
        ),
        op(
            "topology-spread-max-skew-zero",
            "scheduling",
            "a topology spread constraint with maxSkew 0",
            |vm| {
                template_spec(vm)["topologySpreadConstraints"] = json!([{
                    "maxSkew": 0,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}}
                }]);
            },
        ),
        op(
            "priority-class-missing",
            "scheduling",
            "priorityClassName high-priority, which the cluster does not have",
            |vm| template_spec(vm)["priorityClassName"] = json!("high-priority"),
        ),
        op(
            "eviction-strategy-invalid",
            "scheduling",
            "evictionStrategy Migrate instead of LiveMigrate",
            |vm| template_spec(vm)["evictionStrategy"] = json!("Migrate"),
        ),
    ]
}
