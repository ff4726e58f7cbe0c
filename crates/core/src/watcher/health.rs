//! KubeVirt's own health, the runbook's step 4: what virt-operator writes into the KubeVirt CR
//! (`Available`, `Degraded`), and whether virt-controller (it creates every VM's VMI and
//! launcher pod) and virt-handler (it runs them on each node, and offers the node's
//! `devices.kubevirt.io/kvm`) are ready. A VM stuck with no cause of its own is stuck on
//! KubeVirt when KubeVirt is not healthy.
//!
//! The CR alone is not enough: virt-operator writes its conditions on its own syncs and says
//! nothing when it is down itself, and "not Available" does not say which component. So the
//! view also reads the two components' readiness (only those two objects: see
//! [`Kind::only_named`]). Pure: the cluster view in, a [`Health`] out; what is not known is
//! not judged.

use crate::cluster::kubevirt::{Condition, ConditionStatus};
use crate::cluster::{ClusterView, Kind, Lookup, Readiness, ReadyCounts};
use crate::rules::finding::one_line;

/// What is known of KubeVirt's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The KubeVirt CR, as `namespace/name`; its namespace is where its components run.
    pub namespace: String,
    pub name: String,
    /// Empty when all that is known is fine.
    pub problems: Vec<Problem>,
    /// What is known and fine, for the summary (`Available`, `virt-controller 2 of 2 ready`).
    fine: Vec<String>,
}

/// One thing wrong with KubeVirt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// virt-controller's Deployment has no ready replica; `None`: it does not exist.
    ControllerDown(Option<ReadyCounts>),
    /// virt-handler's DaemonSet is ready on fewer nodes than it is scheduled on, or is
    /// scheduled on none; `None`: it does not exist.
    HandlerNotReady(Option<ReadyCounts>),
    /// virt-operator says the CR is not Available, or Degraded (each `Some` when so).
    Operator {
        available: Option<Condition>,
        degraded: Option<Condition>,
    },
}

/// KubeVirt's runbook for one of its alerts.
fn runbook(alert: &str) -> String {
    format!("https://kubevirt.io/monitoring/runbooks/{alert}.html")
}

/// `(Reason: message)`, from what the condition has.
fn detail(condition: &Condition) -> String {
    let message = condition
        .message
        .as_deref()
        .map(|m| one_line(m.trim(), 160));
    match (condition.reason.as_deref(), message) {
        (Some(reason), Some(message)) => format!(" ({reason}: {message})"),
        (Some(reason), None) => format!(" ({reason})"),
        (None, Some(message)) => format!(" ({message})"),
        (None, None) => String::new(),
    }
}

/// What the view says of KubeVirt; `None` when it knows no KubeVirt CR, or nothing of its
/// health. Problems in the order they stop VMs: virt-controller, virt-handler, the CR.
pub fn of(view: &ClusterView) -> Option<Health> {
    let Lookup::Present(kubevirt) = view.kubevirt() else {
        return None;
    };
    let namespace = kubevirt.namespace.to_string();
    let mut fine = Vec::new();
    let controller = match view.readiness(Kind::Deployment, &namespace) {
        Lookup::Absent => Some(Problem::ControllerDown(None)),
        Lookup::Present(Readiness {
            counts: Some(counts),
        }) if counts.ready == 0 => Some(Problem::ControllerDown(Some(counts))),
        Lookup::Present(Readiness {
            counts: Some(counts),
        }) => {
            fine.push(format!(
                "virt-controller {} of {} ready",
                counts.ready, counts.desired
            ));
            None
        }
        _ => None,
    };
    let handler = match view.readiness(Kind::DaemonSet, &namespace) {
        Lookup::Absent => Some(Problem::HandlerNotReady(None)),
        Lookup::Present(Readiness {
            counts: Some(counts),
        }) if counts.ready < counts.desired || counts.desired == 0 => {
            Some(Problem::HandlerNotReady(Some(counts)))
        }
        Lookup::Present(Readiness {
            counts: Some(counts),
        }) => {
            fine.push(format!(
                "virt-handler ready on {} of {} nodes",
                counts.ready, counts.desired
            ));
            None
        }
        _ => None,
    };
    let conditions = &kubevirt.conditions;
    let holds = |condition: &Option<Condition>, status: ConditionStatus| {
        condition.clone().filter(|c| c.status == status)
    };
    if holds(&conditions.available, ConditionStatus::True).is_some() {
        fine.insert(0, "Available".to_string());
    }
    let available = holds(&conditions.available, ConditionStatus::False);
    let degraded = holds(&conditions.degraded, ConditionStatus::True);
    let operator = (available.is_some() || degraded.is_some()).then_some(Problem::Operator {
        available,
        degraded,
    });
    let problems: Vec<Problem> = [controller, handler, operator]
        .into_iter()
        .flatten()
        .collect();
    (!problems.is_empty() || !fine.is_empty()).then(|| Health {
        namespace,
        name: kubevirt.name.to_string(),
        problems,
        fine,
    })
}

impl Problem {
    fn text(&self, health: &Health) -> String {
        let ns = &health.namespace;
        match self {
            Problem::ControllerDown(None) => {
                format!("the Deployment virt-controller does not exist in namespace {ns}")
            }
            Problem::ControllerDown(Some(counts)) => {
                format!("virt-controller has 0 of {} replicas ready", counts.desired)
            }
            Problem::HandlerNotReady(None) => {
                format!("the DaemonSet virt-handler does not exist in namespace {ns}")
            }
            Problem::HandlerNotReady(Some(counts)) if counts.desired == 0 => {
                "virt-handler is scheduled on no node".to_string()
            }
            Problem::HandlerNotReady(Some(counts)) => format!(
                "virt-handler is ready on {} of {} nodes",
                counts.ready, counts.desired
            ),
            Problem::Operator {
                available,
                degraded,
            } => {
                let said = match (available, degraded) {
                    (Some(a), Some(d)) if a.reason == d.reason && a.message == d.message => {
                        format!("Available=False, Degraded=True{}", detail(a))
                    }
                    (Some(a), Some(d)) => {
                        format!("Available=False{}, Degraded=True{}", detail(a), detail(d))
                    }
                    (Some(a), None) => format!("Available=False{}", detail(a)),
                    (None, Some(d)) => format!("Degraded=True{}", detail(d)),
                    (None, None) => String::new(),
                };
                format!("the KubeVirt CR {ns}/{} is {said}", health.name)
            }
        }
    }

    fn next_step(&self, health: &Health) -> String {
        let ns = &health.namespace;
        match self {
            Problem::ControllerDown(_) => format!(
                "virt-controller creates every VM's VMI and launcher pod, and none is ready: KubeVirt's VirtControllerDown or NoReadyVirtController fires ({}); kubectl -n {ns} get deployment virt-controller; kubectl -n {ns} describe pods -l kubevirt.io=virt-controller",
                runbook("VirtControllerDown")
            ),
            Problem::HandlerNotReady(counts) if counts.is_none_or(|c| c.ready == 0) => format!(
                "no virt-handler is ready, so no node can run a VM: KubeVirt's VirtHandlerDown or NoReadyVirtHandler fires, and KubeVirtNoAvailableNodesToRunVMs ({}); kubectl -n {ns} get daemonset virt-handler; kubectl -n {ns} get pods -l kubevirt.io=virt-handler -o wide",
                runbook("VirtHandlerDown")
            ),
            Problem::HandlerNotReady(_) => format!(
                "a node whose virt-handler is not ready takes no new VM: KubeVirt's VirtHandlerDaemonSetRolloutFailing fires, and LowKVMNodesCount when fewer than two nodes offer devices.kubevirt.io/kvm ({}); kubectl -n {ns} get pods -l kubevirt.io=virt-handler -o wide; kubectl -n {ns} describe daemonset virt-handler",
                runbook("VirtHandlerDaemonSetRolloutFailing")
            ),
            Problem::Operator { .. } => format!(
                "read what virt-operator says and whether it runs: kubectl -n {ns} get kubevirt {} -o jsonpath='{{.status.conditions}}'; kubectl -n {ns} get pods -l kubevirt.io=virt-operator (KubeVirt's VirtOperatorDown or NoReadyVirtOperator fires when it does not: {})",
                health.name,
                runbook("VirtOperatorDown")
            ),
        }
    }
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// What is wrong, the same for every VM it holds (the group's subject); `None` when
    /// nothing known is wrong.
    pub fn subject(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| {
            let problems: Vec<String> = self.problems.iter().map(|p| p.text(self)).collect();
            format!("KubeVirt is not healthy: {}", problems.join("; "))
        })
    }

    /// One line, healthy or not: `KubeVirt kubevirt/kubevirt: Available, virt-controller 2 of
    /// 2 ready, ...`.
    pub fn summary(&self) -> String {
        match self.subject() {
            Some(subject) => subject,
            None => format!(
                "KubeVirt {}/{}: {}",
                self.namespace,
                self.name,
                self.fine.join(", ")
            ),
        }
    }

    /// What to do, one step per problem, naming KubeVirt's alert for it.
    pub fn next_step(&self) -> String {
        self.problems
            .iter()
            .map(|p| p.next_step(self))
            .collect::<Vec<_>>()
            .join("; then ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ViewBuilder;
    use serde_json::{Value, json};

    fn kubevirt(conditions: Value) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "status": {"observedKubeVirtVersion": "v1.6.0", "conditions": conditions}})
    }

    fn available() -> Value {
        json!([{"type": "Available", "status": "True", "reason": "AllComponentsReady",
                "message": "All components are ready."},
               {"type": "Degraded", "status": "False", "reason": "AllComponentsReady"}])
    }

    fn controller(ready: u32, desired: u32) -> (Kind, Value) {
        (
            Kind::Deployment,
            json!({"metadata": {"name": "virt-controller", "namespace": "kubevirt"},
                "spec": {"replicas": desired}, "status": {"readyReplicas": ready}}),
        )
    }

    fn handler(ready: u32, desired: u32) -> (Kind, Value) {
        (
            Kind::DaemonSet,
            json!({"metadata": {"name": "virt-handler", "namespace": "kubevirt"},
                "status": {"desiredNumberScheduled": desired, "numberReady": ready}}),
        )
    }

    fn view(cr: Option<Value>, objects: &[(Kind, Value)], known: &[Kind]) -> ClusterView {
        let mut builder = ViewBuilder::new();
        builder.mark_known(Kind::KubeVirt);
        for kind in known {
            builder.mark_known(*kind);
        }
        if let Some(cr) = cr {
            builder.add(Kind::KubeVirt, &cr).unwrap();
        }
        for (kind, object) in objects {
            builder.add(*kind, object).unwrap();
        }
        builder.build()
    }

    #[test]
    fn a_healthy_kubevirt_says_what_is_known_and_has_no_subject() {
        let health = of(&view(
            Some(kubevirt(available())),
            &[controller(2, 2), handler(3, 3)],
            &[],
        ))
        .unwrap();
        assert!(health.is_healthy());
        assert_eq!(health.subject(), None);
        assert_eq!(
            health.summary(),
            "KubeVirt kubevirt/kubevirt: Available, virt-controller 2 of 2 ready, virt-handler ready on 3 of 3 nodes"
        );
    }

    #[test]
    fn virt_controller_down_comes_first_with_its_alert() {
        let conditions = json!([
            {"type": "Available", "status": "False", "reason": "DeploymentInProgress",
             "message": "Deploying version v1.6.0 with registry quay.io/kubevirt"},
            {"type": "Degraded", "status": "False", "reason": "DeploymentInProgress",
             "message": "Deploying version v1.6.0 with registry quay.io/kubevirt"}]);
        let health = of(&view(
            Some(kubevirt(conditions)),
            &[controller(0, 2), handler(3, 3)],
            &[],
        ))
        .unwrap();
        assert_eq!(
            health.subject().as_deref(),
            Some(
                "KubeVirt is not healthy: virt-controller has 0 of 2 replicas ready; the KubeVirt CR kubevirt/kubevirt is Available=False (DeploymentInProgress: Deploying version v1.6.0 with registry quay.io/kubevirt)"
            )
        );
        let next = health.next_step();
        let steps: Vec<&str> = next.split("; then ").collect();
        assert_eq!(steps.len(), 2, "{next}");
        assert!(
            steps[0].contains("VirtControllerDown")
                && steps[0].contains("runbooks/VirtControllerDown.html")
                && steps[0].contains("kubectl -n kubevirt get deployment virt-controller"),
            "{next}"
        );
        assert!(
            steps[1].contains("get kubevirt kubevirt") && steps[1].contains("VirtOperatorDown"),
            "{next}"
        );
    }

    #[test]
    fn virt_handler_names_the_alert_for_how_many_are_ready() {
        let some = of(&view(
            Some(kubevirt(available())),
            &[controller(2, 2), handler(2, 3)],
            &[],
        ))
        .unwrap();
        assert_eq!(
            some.subject().as_deref(),
            Some("KubeVirt is not healthy: virt-handler is ready on 2 of 3 nodes")
        );
        assert!(
            some.next_step()
                .contains("VirtHandlerDaemonSetRolloutFailing"),
            "{}",
            some.next_step()
        );
        let none = of(&view(Some(kubevirt(available())), &[handler(0, 3)], &[])).unwrap();
        let next = none.next_step();
        assert!(
            next.contains("VirtHandlerDown") && next.contains("KubeVirtNoAvailableNodesToRunVMs"),
            "{next}"
        );
        let unscheduled = of(&view(Some(kubevirt(available())), &[handler(0, 0)], &[])).unwrap();
        assert_eq!(
            unscheduled.subject().as_deref(),
            Some("KubeVirt is not healthy: virt-handler is scheduled on no node")
        );
    }

    #[test]
    fn components_missing_from_a_known_kind_are_down() {
        let health = of(&view(
            Some(kubevirt(available())),
            &[],
            &[Kind::Deployment, Kind::DaemonSet],
        ))
        .unwrap();
        assert_eq!(
            health.subject().as_deref(),
            Some(
                "KubeVirt is not healthy: the Deployment virt-controller does not exist in namespace kubevirt; the DaemonSet virt-handler does not exist in namespace kubevirt"
            )
        );
    }

    #[test]
    fn degraded_and_not_available_for_different_reasons_say_both() {
        let conditions = json!([
            {"type": "Available", "status": "False", "reason": "DeploymentFailed", "message": "a"},
            {"type": "Degraded", "status": "True", "reason": "UpdateInProgress", "message": "b"}]);
        let health = of(&view(Some(kubevirt(conditions)), &[], &[])).unwrap();
        assert_eq!(
            health.subject().as_deref(),
            Some(
                "KubeVirt is not healthy: the KubeVirt CR kubevirt/kubevirt is Available=False (DeploymentFailed: a), Degraded=True (UpdateInProgress: b)"
            )
        );
    }

    #[test]
    fn unknown_is_not_judged() {
        assert_eq!(of(&ClusterView::default()), None, "KubeVirt CRs unknown");
        assert_eq!(of(&view(None, &[], &[])), None, "no CR");
        // A CR with no conditions, components not read: nothing known.
        assert_eq!(of(&view(Some(kubevirt(json!([]))), &[], &[])), None);
        // A status not written yet is not "0 ready".
        let fresh = view(
            Some(kubevirt(available())),
            &[(
                Kind::DaemonSet,
                json!({"metadata": {"name": "virt-handler", "namespace": "kubevirt"}}),
            )],
            &[],
        );
        assert!(of(&fresh).unwrap().is_healthy());
        // Available Unknown is not False.
        let unknown = json!([{"type": "Available", "status": "Unknown"}]);
        assert_eq!(
            of(&view(Some(kubevirt(unknown)), &[controller(1, 1)], &[]))
                .unwrap()
                .subject(),
            None
        );
        // Components in another namespace are not KubeVirt's.
        let elsewhere = view(
            Some(kubevirt(available())),
            &[(
                Kind::Deployment,
                json!({"metadata": {"name": "virt-controller", "namespace": "other"},
                    "status": {"readyReplicas": 0}}),
            )],
            &[],
        );
        assert_eq!(
            of(&elsewhere).unwrap().subject().as_deref(),
            Some(
                "KubeVirt is not healthy: the Deployment virt-controller does not exist in namespace kubevirt"
            )
        );
    }
}
