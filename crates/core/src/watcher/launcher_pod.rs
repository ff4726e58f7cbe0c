//! What a stuck VM's virt-launcher pod says: the kubelet's waiting reasons (`ErrImagePull`,
//! `CrashLoopBackOff`, `CreateContainerConfigError`) and the pod's Warning Events (`FailedMount`
//! of a Secret or ConfigMap that does not exist, `FailedScheduling`). Only a kubelet shows
//! these: KubeVirt's conditions repeat some and not others. Read once per stuck VM with a VMI,
//! off the watcher's decisions (the read is I/O, in `run.rs`); mapped here, purely.

use k8s_openapi::api::core::v1::{Event, Pod};

use super::kubevirt_says::Said;
use crate::rules::RuleId;
use crate::rules::finding::one_line;

/// A container the kubelet has not started, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub container: String,
    pub reason: String,
    pub message: String,
}

/// A VM's launcher pod as the kubelet and the scheduler left it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LauncherPod {
    pub name: String,
    /// `status.phase` (`Pending` while the kubelet has not started it).
    pub phase: String,
    /// `spec.nodeName`, once the scheduler bound it.
    pub node: Option<String>,
    /// Its containers (init containers first) that wait, with the kubelet's reason.
    pub waiting: Vec<Waiting>,
    /// Its Warning Events, newest first: (reason, message).
    pub warnings: Vec<(String, String)>,
}

/// Kubelet words about a volume, and the rules that predict them.
const MOUNT_WORDS: &[(&str, RuleId)] = &[
    ("secret \"", RuleId::SecretNotFound),
    ("configmap \"", RuleId::ConfigmapNotFound),
    ("persistentvolumeclaim \"", RuleId::PvcNotFound),
];

/// Waiting reasons of a container image that does not pull.
const IMAGE_REASONS: &[&str] = &["ErrImagePull", "ImagePullBackOff", "InvalidImageName"];

impl LauncherPod {
    /// From the pod and the Events whose `involvedObject` it is.
    pub fn read(pod: &Pod, events: &[Event]) -> Self {
        let status = pod.status.as_ref();
        let statuses = status.into_iter().flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        });
        let waiting = statuses
            .filter_map(|c| {
                let waiting = c.state.as_ref()?.waiting.as_ref()?;
                Some(Waiting {
                    container: c.name.clone(),
                    reason: waiting.reason.clone().unwrap_or_default(),
                    message: waiting.message.clone().unwrap_or_default(),
                })
            })
            .collect();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        // Events outlive what they reported: a pod the kubelet runs has mounted its volumes,
        // and a bound pod was scheduled after all.
        let still_true = |e: &&Event| match e.reason.as_deref() {
            _ if phase == "Running" => false,
            Some("FailedScheduling") => node.is_none(),
            _ => true,
        };
        let mut events: Vec<&Event> = events
            .iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter(still_true)
            .collect();
        events.sort_by_key(|e| {
            std::cmp::Reverse(
                e.last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or(e.event_time.as_ref().map(|t| t.0))
                    .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
        });
        LauncherPod {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase,
            node,
            waiting,
            warnings: events
                .into_iter()
                .map(|e| {
                    (
                        e.reason.clone().unwrap_or_default(),
                        e.message.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    /// What the pod says is wrong, most telling first: a volume that does not mount, an image
    /// that does not pull, any other waiting container, then any other Warning. `None` when
    /// it says nothing is.
    pub fn said(&self) -> Option<Said> {
        let pod = &self.name;
        let mount = self
            .warnings
            .iter()
            .find(|(reason, _)| reason == "FailedMount")
            .map(|(reason, message)| Said {
                by: "the kubelet",
                rules: MOUNT_WORDS
                    .iter()
                    .filter(|(words, _)| message.contains(words))
                    .map(|(_, rule)| *rule)
                    .take(1)
                    .collect(),
                words: one_line(&format!("pod {pod}: {reason}: {message}"), 200),
            });
        let waiting = |image: bool| {
            self.waiting
                .iter()
                .find(|w| IMAGE_REASONS.contains(&w.reason.as_str()) == image)
                .map(|w| Said {
                    by: "the kubelet",
                    rules: if image {
                        vec![RuleId::ImageReferenceInvalid]
                    } else {
                        Vec::new()
                    },
                    words: one_line(
                        &format!(
                            "pod {pod}: container {} {}: {}",
                            w.container, w.reason, w.message
                        ),
                        200,
                    ),
                })
        };
        mount
            .or_else(|| waiting(true))
            .or_else(|| waiting(false).filter(|_| self.phase != "Running"))
            .or_else(|| {
                self.warnings.first().map(|(reason, message)| Said {
                    by: "the kubelet",
                    rules: Vec::new(),
                    words: one_line(&format!("pod {pod}: {reason}: {message}"), 200),
                })
            })
    }

    /// `pod P Pending on node-1`, for the evidence.
    pub fn summary(&self) -> String {
        match &self.node {
            Some(node) => format!("pod {} {} on {node}", self.name, self.phase),
            None => format!("pod {} {}, not scheduled", self.name, self.phase),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "virt-launcher-a-x"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": status
        }))
        .unwrap()
    }

    fn event(kind: &str, reason: &str, message: &str, at: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("e-{reason}-{at}")},
            "involvedObject": {"kind": "Pod", "name": "virt-launcher-a-x"},
            "type": kind, "reason": reason, "message": message, "lastTimestamp": at
        }))
        .unwrap()
    }

    #[test]
    fn events_of_what_is_over_are_not_said() {
        let scheduling = event(
            "Warning",
            "FailedScheduling",
            "0/2 nodes are available",
            "2026-11-25T10:00:00Z",
        );
        let mount = event(
            "Warning",
            "FailedMount",
            "MountVolume.SetUp failed for volume \"cloudinit\" : secret \"s\" not found",
            "2026-11-25T10:01:00Z",
        );
        // Bound (pod() sets a node), not running: the mount failure holds, the scheduling
        // failure is over.
        let bound = LauncherPod::read(
            &pod(json!({"phase": "Pending"})),
            &[scheduling.clone(), mount.clone()],
        );
        assert_eq!(bound.warnings.len(), 1);
        assert_eq!(bound.warnings[0].0, "FailedMount");
        let running = LauncherPod::read(&pod(json!({"phase": "Running"})), &[scheduling, mount]);
        assert!(running.warnings.is_empty());
        assert!(running.said().is_none(), "{running:?}");
    }

    #[test]
    fn a_secret_that_does_not_mount_is_the_secret_rule() {
        let read = LauncherPod::read(
            &pod(json!({"phase": "Pending"})),
            &[
                event("Normal", "Scheduled", "assigned", "2026-11-25T10:00:00Z"),
                event(
                    "Warning",
                    "FailedMount",
                    "MountVolume.SetUp failed for volume \"cloudinit\" : secret \"seed\" not found",
                    "2026-11-25T10:01:00Z",
                ),
            ],
        );
        assert_eq!(read.summary(), "pod virt-launcher-a-x Pending on node-1");
        let said = read.said().unwrap();
        assert_eq!(said.rules, vec![RuleId::SecretNotFound]);
        assert!(
            said.words.contains("secret \"seed\" not found"),
            "{}",
            said.words
        );
        let config_map = LauncherPod {
            warnings: vec![(
                "FailedMount".into(),
                "configmap \"settings\" not found".into(),
            )],
            ..read
        };
        assert_eq!(
            config_map.said().unwrap().rules,
            vec![RuleId::ConfigmapNotFound]
        );
    }

    #[test]
    fn an_image_that_does_not_pull_is_the_image_rule_and_a_crash_is_quoted() {
        let waiting = |reason: &str| {
            LauncherPod::read(
                &pod(json!({"phase": "Pending", "containerStatuses": [
                    {"name": "volumerootdisk", "image": "x", "imageID": "", "ready": false,
                     "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "failed"}}}]})),
                &[],
            )
        };
        assert_eq!(
            waiting("ErrImagePull").said().unwrap().rules,
            vec![RuleId::ImageReferenceInvalid]
        );
        let crash = waiting("CrashLoopBackOff").said().unwrap();
        assert!(crash.rules.is_empty());
        assert_eq!(
            crash.words,
            "pod virt-launcher-a-x: container volumerootdisk CrashLoopBackOff: failed"
        );
        // A pod that says nothing is wrong says nothing.
        assert_eq!(
            LauncherPod::read(&pod(json!({"phase": "Pending"})), &[]).said(),
            None
        );
    }
}
