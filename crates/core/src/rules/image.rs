//! containerDisk image references.

use oci_spec::distribution::Reference;

use super::{Emitter, VmContext};
use crate::model::{ContainerDiskSource, TEMPLATE_SPEC};

/// Each containerDisk with the index of its volume.
fn container_disks<'a>(
    cx: &VmContext<'a>,
) -> impl Iterator<Item = (usize, &'a ContainerDiskSource)> + 'a {
    cx.spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(index, volume)| volume.container_disk.as_ref().map(|disk| (index, disk)))
}

/// The path of the `image` field of the containerDisk of volume `index`.
fn image_path(index: usize) -> String {
    format!("{TEMPLATE_SPEC}.volumes[{index}].containerDisk.image")
}

/// The tag of a reference, if it has one: after the last `:` of the last path component,
/// ignoring any `@digest`.
fn tag_of(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, tag)| tag)
}

fn has_digest(image: &str) -> bool {
    image.contains('@')
}

pub fn image_reference_invalid(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    for (index, disk) in container_disks(cx) {
        match disk.image.as_deref() {
            None | Some("") => {
                out.emit(
                    image_path(index),
                    "containerDisk has no image: set image to a registry reference",
                );
            }
            Some(image) => {
                if let Err(err) = image.parse::<Reference>() {
                    out.emit(
                        image_path(index),
                        format!("image {image:?} is not a valid image reference: {err}"),
                    );
                }
            }
        }
    }
}

/// Kubernetes pulls an untagged or `:latest` image Always unless told otherwise, so only an
/// explicit other policy pins a node to whatever `latest` it pulled first.
pub fn image_tag_latest(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    for (index, disk) in container_disks(cx) {
        let Some(image) = disk.image.as_deref().filter(|i| !i.is_empty()) else {
            continue;
        };
        let floating = match tag_of(image) {
            Some(tag) => tag == "latest",
            None => !has_digest(image),
        };
        let policy = disk.image_pull_policy.as_deref();
        if floating && policy.is_some_and(|p| p != "Always") {
            out.emit(
                image_path(index),
                format!(
                    "image {image:?} is :latest or untagged, pulled {}: pin a tag or digest",
                    policy.unwrap_or_default()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tag_of;
    use crate::rules::RuleId::*;
    use crate::rules::testing::*;
    use serde_json::json;

    fn with_image(image: &str, policy: Option<&str>) -> serde_json::Value {
        valid_vm_with(|vm| {
            let disk = &mut spec(vm)["volumes"][0]["containerDisk"];
            disk["image"] = json!(image);
            if let Some(policy) = policy {
                disk["imagePullPolicy"] = json!(policy);
            }
        })
    }

    const PATH: &str = "spec.template.spec.volumes[0].containerDisk.image";

    #[test]
    fn tags_are_found_after_a_registry_port() {
        assert_eq!(tag_of("registry:5000/kubevirt/cirros"), None);
        assert_eq!(tag_of("registry:5000/kubevirt/cirros:devel"), Some("devel"));
        assert_eq!(tag_of("quay.io/x/y:1@sha256:abc"), Some("1"));
    }

    #[test]
    fn image_reference_invalid() {
        for bad in [
            "Quay.io/Fedora/Fedora:41",
            "quay.io/x/y:",
            "quay.io//y",
            "quay.io/x/y:tag with space",
            "",
        ] {
            assert_eq!(
                fired(with_image(bad, None)),
                vec![(ImageReferenceInvalid, PATH.into())],
                "{bad:?}"
            );
        }
        let digest = format!("quay.io/x/y@sha256:{}", "a".repeat(64));
        for good in [
            "registry:5000/kubevirt/cirros-container-disk-demo:devel",
            "quay.io/containerdisks/fedora:41",
            "fedora",
            "localhost:5000/x/y:1.0",
            digest.as_str(),
        ] {
            assert_eq!(fired(with_image(good, None)), vec![], "{good:?}");
        }
    }

    #[test]
    fn image_tag_latest_only_with_a_policy_that_does_not_pull() {
        for (image, policy) in [
            ("quay.io/containerdisks/fedora:latest", "IfNotPresent"),
            ("quay.io/containerdisks/fedora", "Never"),
        ] {
            assert_eq!(
                fired(with_image(image, Some(policy))),
                vec![(ImageTagLatest, PATH.into())],
                "{image} {policy}"
            );
        }
        for (image, policy) in [
            ("quay.io/containerdisks/fedora:latest", Some("Always")),
            ("quay.io/containerdisks/fedora:latest", None),
            ("quay.io/containerdisks/fedora:41", Some("IfNotPresent")),
        ] {
            assert_eq!(
                fired(with_image(image, policy)),
                vec![],
                "{image} {policy:?}"
            );
        }
        let pinned = format!("quay.io/x/y@sha256:{}", "a".repeat(64));
        assert_eq!(fired(with_image(&pinned, Some("IfNotPresent"))), vec![]);
    }
}
