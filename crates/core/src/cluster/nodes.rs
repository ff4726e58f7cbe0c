//! Nodes, indexed so that matching a VM costs bit-set operations, not a walk over every node.
//!
//! Matching follows the Kubernetes scheduler (`component-helpers/scheduling/corev1`):
//! nodeSelector labels all equal; required node affinity terms ORed, each term's expressions
//! and fields ANDed, an empty term matching nothing; tolerations against NoSchedule and
//! NoExecute taints; then what KubeVirt adds: the node is not cordoned, is Ready, and carries
//! `kubevirt.io/schedulable=true`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use foldhash::{HashMap, HashMapExt};
use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, Toleration};
use serde::Deserialize;
use serde_json::Value;

use super::wire::Meta;
use crate::model::{Labels, ParsedQuantity, QuantityText};

/// Label virt-handler puts on nodes that can run VMs.
pub const SCHEDULABLE_LABEL: &str = "kubevirt.io/schedulable";
/// Prefix of the labels virt-handler puts for each CPU model a node offers.
pub const CPU_MODEL_LABEL_PREFIX: &str = "cpu-model.node.kubevirt.io/";

/// Taints the node lifecycle controller sets for cordon and readiness; those states have their
/// own rule (`no-schedulable-node`), so `taints-not-tolerated` leaves these taints out.
const LIFECYCLE_TAINTS: [&str; 4] = [
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/network-unavailable",
];

/// A set of nodes, by index into the [`NodeIndex`].
pub type NodeSet = FixedBitSet;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::EnumString,
)]
pub enum TaintEffect {
    NoSchedule,
    NoExecute,
    PreferNoSchedule,
}

impl TaintEffect {
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

impl Taint {
    fn describe(&self) -> String {
        if self.value.is_empty() {
            format!("{}:{}", self.key, self.effect.as_str())
        } else {
            format!("{}={}:{}", self.key, self.value, self.effect.as_str())
        }
    }
}

/// Whether a toleration tolerates a taint (the scheduler's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect.as_str()
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value,
        "Exists" => true,
        _ => false,
    }
}

/// One node, as far as the rules care.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// NoSchedule and NoExecute taints, lifecycle taints left out, sorted.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub allocatable: BTreeMap<String, ParsedQuantity>,
    /// Device-plugin resources whose plugin has registered devices, none of them healthy: the
    /// kubelet counts unhealthy devices in capacity, not in allocatable (virt-handler's KVM
    /// plugin on a node without `/dev/kvm`). A resource at 0 capacity is not here: its plugin
    /// has not registered (yet), which says nothing about the device.
    pub no_healthy_devices: Vec<String>,
}

/// A Node as read off the wire (see [`super::objects`]).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeBody {
    #[serde(default)]
    pub(super) metadata: Meta<BTreeMap<String, String>>,
    #[serde(default)]
    spec: NodeSpec,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct NodeSpec {
    #[serde(default)]
    unschedulable: bool,
    #[serde(default)]
    taints: Vec<RawTaint>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawTaint {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    effect: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct NodeStatus {
    #[serde(default)]
    allocatable: BTreeMap<String, QuantityText>,
    #[serde(default)]
    capacity: BTreeMap<String, QuantityText>,
    #[serde(default)]
    conditions: Vec<NodeCondition>,
}

#[derive(Debug, Clone, Deserialize)]
struct NodeCondition {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    status: String,
}

impl From<NodeBody> for NodeInfo {
    fn from(node: NodeBody) -> Self {
        let mut taints: Vec<Taint> = node
            .spec
            .taints
            .into_iter()
            .filter(|t| !LIFECYCLE_TAINTS.contains(&t.key.as_str()))
            .filter_map(|t| {
                let effect = TaintEffect::parse(&t.effect)?;
                if effect == TaintEffect::PreferNoSchedule {
                    return None; // a preference, never a reason not to schedule
                }
                Some(Taint {
                    key: t.key,
                    value: t.value,
                    effect,
                })
            })
            .collect();
        taints.sort();
        let allocatable = node
            .status
            .allocatable
            .iter()
            .filter_map(|(name, q)| q.parse().ok().map(|v| (name.clone(), v)))
            .collect::<BTreeMap<_, _>>();
        let above_zero = |q: &QuantityText| q.parse().is_ok_and(|v| v > ParsedQuantity::ZERO);
        let no_healthy_devices = node
            .status
            .capacity
            .iter()
            .filter(|(name, q)| {
                above_zero(q)
                    && allocatable
                        .get(name.as_str())
                        .is_none_or(|v| *v == ParsedQuantity::ZERO)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let ready = node
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        NodeInfo {
            name: node.metadata.name,
            labels: node.metadata.labels,
            taints,
            unschedulable: node.spec.unschedulable,
            ready,
            allocatable,
            no_healthy_devices,
        }
    }
}

/// A node an autoscaler can add (a cluster-autoscaler node group that scales from zero, a
/// Karpenter NodePool), as the policy file describes it. The scheduling rules count it as a
/// node: a VM that would make the autoscaler add one is not denied for want of a node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeTemplate {
    pub name: String,
    /// The labels a new node of the group carries. virt-handler labels a node it runs on
    /// `kubevirt.io/schedulable=true`; that label is assumed unless given otherwise.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<TemplateTaint>,
    /// What a new node has allocatable: `cpu`, `memory`, `devices.kubevirt.io/kvm`, GPUs, …
    #[serde(default)]
    pub allocatable: BTreeMap<String, QuantityText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateTaint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

impl NodeTemplate {
    /// Checks what serde cannot: the quantities parse and the taint effects are known.
    pub fn validate(&self) -> Result<(), String> {
        for (resource, quantity) in &self.allocatable {
            quantity
                .parse()
                .map_err(|err| format!("allocatable.{resource}: {err}"))?;
        }
        for (i, taint) in self.taints.iter().enumerate() {
            TaintEffect::parse(&taint.effect).ok_or_else(|| {
                format!(
                    "taints[{i}].effect: {:?} is not NoSchedule, PreferNoSchedule or NoExecute",
                    taint.effect
                )
            })?;
        }
        Ok(())
    }
}

impl From<&NodeTemplate> for NodeInfo {
    fn from(template: &NodeTemplate) -> Self {
        let mut labels = template.labels.clone();
        labels
            .entry(SCHEDULABLE_LABEL.to_string())
            .or_insert_with(|| "true".to_string());
        NodeInfo::from(NodeBody {
            metadata: Meta {
                name: format!("{} (node template)", template.name),
                labels,
                ..Meta::default()
            },
            spec: NodeSpec {
                unschedulable: false,
                taints: template
                    .taints
                    .iter()
                    .map(|t| RawTaint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.clone(),
                    })
                    .collect(),
            },
            status: NodeStatus {
                allocatable: template.allocatable.clone(),
                capacity: BTreeMap::new(),
                conditions: vec![NodeCondition {
                    type_: "Ready".to_string(),
                    status: "True".to_string(),
                }],
            },
        })
    }
}

impl NodeInfo {
    /// Reads a Node object (tests and benchmarks build nodes this way).
    pub fn from_value(value: &Value) -> Result<Self, String> {
        NodeBody::deserialize(value)
            .map(NodeInfo::from)
            .map_err(|e| e.to_string())
    }

    pub fn kubevirt_schedulable(&self) -> bool {
        self.labels.get(SCHEDULABLE_LABEL).map(String::as_str) == Some("true")
    }
}

/// All nodes, with the indexes matching needs.
#[derive(Debug, Clone, Default)]
pub struct NodeIndex {
    nodes: Vec<Arc<NodeInfo>>,
    by_name: HashMap<String, usize>,
    /// label key → value → nodes.
    by_label: HashMap<String, HashMap<String, NodeSet>>,
    /// label key → nodes that have it.
    by_key: HashMap<String, NodeSet>,
    all: NodeSet,
    cordoned: NodeSet,
    not_ready: NodeSet,
    not_kubevirt: NodeSet,
    /// Nodes that are none of the three above: where a new VM can go.
    ready_for_vms: NodeSet,
    /// Nodes grouped by their (sorted) taint list: tolerations are checked once per group.
    taint_groups: Vec<(Vec<Taint>, NodeSet)>,
    /// Extended resource name → nodes whose allocatable has some of it.
    resources: HashMap<String, NodeSet>,
    /// Whether any node carries a CPU-model label (the node labeller runs).
    labels_cpu_models: bool,
}

impl NodeIndex {
    /// Indexes the nodes, ordered by name (so that messages naming "the nearest" node do not
    /// depend on the order the nodes arrived in).
    pub fn new(nodes: impl IntoIterator<Item = impl Into<Arc<NodeInfo>>>) -> Self {
        let mut nodes: Vec<Arc<NodeInfo>> = nodes.into_iter().map(Into::into).collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let count = nodes.len();
        let empty = || FixedBitSet::with_capacity(count);
        let mut index = NodeIndex {
            all: empty(),
            cordoned: empty(),
            not_ready: empty(),
            not_kubevirt: empty(),
            ..Default::default()
        };
        let mut groups: HashMap<Vec<Taint>, NodeSet> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            index.all.insert(i);
            index.by_name.insert(node.name.clone(), i);
            for (key, value) in &node.labels {
                index
                    .by_label
                    .entry(key.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_insert_with(empty)
                    .insert(i);
                index
                    .by_key
                    .entry(key.clone())
                    .or_insert_with(empty)
                    .insert(i);
                if key.starts_with(CPU_MODEL_LABEL_PREFIX) {
                    index.labels_cpu_models = true;
                }
            }
            if node.unschedulable {
                index.cordoned.insert(i);
            }
            if !node.ready {
                index.not_ready.insert(i);
            }
            if !node.kubevirt_schedulable() {
                index.not_kubevirt.insert(i);
            }
            groups
                .entry(node.taints.clone())
                .or_insert_with(empty)
                .insert(i);
            for (resource, amount) in &node.allocatable {
                if *amount > ParsedQuantity::ZERO {
                    index
                        .resources
                        .entry(resource.clone())
                        .or_insert_with(empty)
                        .insert(i);
                }
            }
        }
        index.ready_for_vms = index.all.clone();
        index.ready_for_vms.difference_with(&index.cordoned);
        index.ready_for_vms.difference_with(&index.not_ready);
        index.ready_for_vms.difference_with(&index.not_kubevirt);
        index.taint_groups = groups.into_iter().collect();
        index.taint_groups.sort_by(|a, b| a.0.cmp(&b.0));
        index.nodes = nodes;
        index
    }

    /// Every node, in index order.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<NodeInfo>> {
        self.nodes.iter()
    }

    /// The node named `name`.
    pub fn by_name(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|&i| self.nodes[i].as_ref())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, index: usize) -> &NodeInfo {
        &self.nodes[index]
    }

    pub fn all(&self) -> NodeSet {
        self.all.clone()
    }

    fn empty(&self) -> NodeSet {
        FixedBitSet::with_capacity(self.nodes.len())
    }

    fn with_label(&self, key: &str, value: &str) -> Option<&NodeSet> {
        self.by_label.get(key).and_then(|values| values.get(value))
    }

    /// Nodes carrying every label of `selector`: the index's own set for no label or one
    /// (the usual selector), a new one for more.
    pub fn matching_selector(&self, selector: &Labels) -> Cow<'_, NodeSet> {
        let mut labels = selector.iter();
        let mut set = match labels.next() {
            None => return Cow::Borrowed(&self.all),
            Some((key, value)) => match self.with_label(key, value) {
                Some(nodes) => Cow::Borrowed(nodes),
                None => return Cow::Owned(self.empty()),
            },
        };
        for (key, value) in labels {
            if set.is_clear() {
                break;
            }
            match self.with_label(key, value) {
                Some(nodes) => set.to_mut().intersect_with(nodes),
                None => return Cow::Owned(self.empty()),
            }
        }
        set
    }

    /// Nodes satisfying a required node affinity (terms ORed).
    pub fn matching_affinity(&self, selector: &NodeSelector) -> NodeSet {
        let mut set = self.empty();
        for term in &selector.node_selector_terms {
            let expressions = term.match_expressions.as_deref().unwrap_or_default();
            let fields = term.match_fields.as_deref().unwrap_or_default();
            if expressions.is_empty() && fields.is_empty() {
                continue; // an empty term matches no node
            }
            let mut term_set = self.all();
            for requirement in expressions {
                term_set.intersect_with(&self.matching_label_requirement(requirement));
            }
            for requirement in fields {
                term_set.intersect_with(&self.matching_field_requirement(requirement));
            }
            set.union_with(&term_set);
        }
        set
    }

    fn matching_label_requirement(&self, requirement: &NodeSelectorRequirement) -> NodeSet {
        let key = requirement.key.as_str();
        let values = requirement.values.as_deref().unwrap_or_default();
        let union_of = |values: &[String]| {
            let mut set = self.empty();
            for value in values {
                if let Some(nodes) = self.with_label(key, value) {
                    set.union_with(nodes);
                }
            }
            set
        };
        let with_key = || {
            self.by_key
                .get(key)
                .cloned()
                .unwrap_or_else(|| self.empty())
        };
        let complement = |set: NodeSet| {
            let mut all = self.all();
            all.difference_with(&set);
            all
        };
        match requirement.operator.as_str() {
            "In" => union_of(values),
            "NotIn" => complement(union_of(values)),
            "Exists" => with_key(),
            "DoesNotExist" => complement(with_key()),
            operator @ ("Gt" | "Lt") => {
                let Some(bound) = values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return self.empty();
                };
                let mut set = self.empty();
                for (value, nodes) in self.by_label.get(key).into_iter().flatten() {
                    let Ok(number) = value.parse::<i64>() else {
                        continue;
                    };
                    let matches = if operator == "Gt" {
                        number > bound
                    } else {
                        number < bound
                    };
                    if matches {
                        set.union_with(nodes);
                    }
                }
                set
            }
            _ => self.empty(),
        }
    }

    /// `matchFields` supports only `metadata.name` with In and NotIn.
    fn matching_field_requirement(&self, requirement: &NodeSelectorRequirement) -> NodeSet {
        if requirement.key != "metadata.name" {
            return self.empty();
        }
        let mut named = self.empty();
        for value in requirement.values.as_deref().unwrap_or_default() {
            if let Some(&i) = self.by_name.get(value) {
                named.insert(i);
            }
        }
        match requirement.operator.as_str() {
            "In" => named,
            "NotIn" => {
                let mut all = self.all();
                all.difference_with(&named);
                all
            }
            _ => self.empty(),
        }
    }

    /// The nodes of `set` whose NoSchedule/NoExecute taints are all tolerated.
    pub fn tolerating<'s>(
        &'s self,
        set: Cow<'s, NodeSet>,
        tolerations: &[Toleration],
    ) -> Cow<'s, NodeSet> {
        // The groups partition the nodes: take out those with a taint not tolerated (usually
        // none: most nodes share one taint list, often empty). `set` is copied only then.
        let mut result = set;
        for (taints, nodes) in &self.taint_groups {
            if !taints
                .iter()
                .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
                && !result.is_disjoint(nodes)
            {
                result.to_mut().difference_with(nodes);
            }
        }
        result
    }

    /// The first taint of a node in `set` that no toleration tolerates, for messages.
    pub fn untolerated_example(
        &self,
        set: &NodeSet,
        tolerations: &[Toleration],
    ) -> Option<(String, String)> {
        let i = set.ones().next()?;
        let node = &self.nodes[i];
        node.taints
            .iter()
            .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
            .map(|taint| (node.name.clone(), taint.describe()))
    }

    /// The nodes of `set` that can take a new VM: not cordoned, Ready, KubeVirt-schedulable.
    pub fn schedulable<'s>(&'s self, set: Cow<'s, NodeSet>) -> Cow<'s, NodeSet> {
        if set.is_subset(&self.ready_for_vms) {
            return set; // the usual case: every selected node is ready
        }
        let mut result = set.into_owned();
        result.intersect_with(&self.ready_for_vms);
        Cow::Owned(result)
    }

    /// How many nodes of `set` are cordoned, NotReady, and without `kubevirt.io/schedulable`.
    pub fn unschedulable_counts(&self, set: &NodeSet) -> (usize, usize, usize) {
        let count = |bad: &NodeSet| set.intersection(bad).count();
        (
            count(&self.cordoned),
            count(&self.not_ready),
            count(&self.not_kubevirt),
        )
    }

    /// Nodes of `set` with some of an extended resource allocatable.
    pub fn with_resource(&self, set: &NodeSet, resource: &str) -> NodeSet {
        match self.resources.get(resource) {
            Some(nodes) => {
                let mut result = set.clone();
                result.intersect_with(nodes);
                result
            }
            None => self.empty(),
        }
    }

    /// Nodes of `set` labelled as offering CPU model `model`; `None` if no node carries any
    /// CPU-model label (the node labeller is off, or the snapshot lacks labels: unknown).
    pub fn offering_cpu_model(&self, set: &NodeSet, model: &str) -> Option<NodeSet> {
        if !self.labels_cpu_models {
            return None;
        }
        let key = format!("{CPU_MODEL_LABEL_PREFIX}{model}");
        let mut result = self
            .with_label(&key, "true")
            .cloned()
            .unwrap_or_else(|| self.empty());
        result.intersect_with(set);
        Some(result)
    }

    /// The first node of `set` whose allocatable CPU and memory hold the request, if any.
    pub fn first_fitting(
        &self,
        set: &NodeSet,
        cpu: Option<ParsedQuantity>,
        memory: Option<ParsedQuantity>,
    ) -> Option<usize> {
        set.ones().find(|&i| {
            let node = &self.nodes[i];
            let fits = |resource: &str, want: Option<ParsedQuantity>| match want {
                None => true,
                // A node that does not report the resource is given the benefit of the doubt.
                Some(want) => node
                    .allocatable
                    .get(resource)
                    .is_none_or(|have| *have >= want),
            };
            fits("cpu", cpu) && fits("memory", memory)
        })
    }

    /// The largest allocatable CPU and memory among `set`, for messages.
    pub fn largest(&self, set: &NodeSet) -> (Option<ParsedQuantity>, Option<ParsedQuantity>) {
        let max = |resource: &str| {
            set.ones()
                .filter_map(|i| self.nodes[i].allocatable.get(resource).copied())
                .max()
        };
        (max("cpu"), max("memory"))
    }

    /// For a nodeSelector that matches nothing: the node that carries the most of its labels,
    /// and the first label it lacks, described as `worker-3 has gpu=t4` or `worker-3 has no gpu`.
    pub fn nearest_miss(&self, selector: &Labels) -> Option<(String, String)> {
        // Most labels matched wins; among those, a node that has the key with another value
        // tells more than one without the key. `rev` makes the first such node win ties.
        let best = self.nodes.iter().rev().max_by_key(|node| {
            let matched = selector
                .iter()
                .filter(|(k, v)| node.labels.get(k.as_str()).is_some_and(|have| have == *v))
                .count();
            let present = selector
                .keys()
                .filter(|k| node.labels.contains_key(k.as_str()))
                .count();
            (matched, present)
        })?;
        let (key, _) = selector
            .iter()
            .find(|(k, v)| best.labels.get(k.as_str()).is_none_or(|have| have != *v))?;
        let has = match best.labels.get(key.as_str()) {
            Some(value) => format!("has {key}={value}"),
            None => format!("has no {key} label"),
        };
        Some((best.name.clone(), has))
    }

    pub fn approximate_bytes(&self) -> usize {
        let words = self.nodes.len().div_ceil(64) * 8 + 24;
        let labels: usize = self
            .nodes
            .iter()
            .map(|n| {
                n.labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                    + n.allocatable.len() * 64
                    + n.no_healthy_devices.len() * 48
                    + n.name.len()
                    + 128
            })
            .sum();
        let sets = self.by_label.values().map(|v| v.len()).sum::<usize>()
            + self.by_key.len()
            + self.taint_groups.len()
            + self.resources.len()
            + 4;
        labels + sets * (words + 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorTerm;
    use serde_json::json;

    fn node(name: &str, labels: Value, taints: Value) -> NodeInfo {
        NodeInfo::from_value(&json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {
                "allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/A100": "2"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .unwrap()
    }

    fn index() -> NodeIndex {
        NodeIndex::new(vec![
            node(
                "n0",
                json!({"zone": "a", "gen": "3", "kubevirt.io/schedulable": "true"}),
                json!([]),
            ),
            node(
                "n1",
                json!({"zone": "b", "gen": "5"}),
                json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            ),
            node(
                "n2",
                json!({"zone": "c"}),
                json!([{"key": "dedicated", "effect": "NoExecute"}, {"key": "soft", "effect": "PreferNoSchedule"}]),
            ),
        ])
    }

    fn names(index: &NodeIndex, set: &NodeSet) -> Vec<String> {
        set.ones().map(|i| index.node(i).name.clone()).collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelector {
        NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: key.into(),
                    operator: operator.into(),
                    values: Some(values.iter().map(|v| v.to_string()).collect()),
                }]),
                match_fields: None,
            }],
        }
    }

    #[test]
    fn affinity_operators_follow_the_scheduler() {
        let index = index();
        let cases: &[(&str, &str, &[&str], &[&str])] = &[
            ("zone", "In", &["a", "b"], &["n0", "n1"]),
            ("zone", "NotIn", &["a"], &["n1", "n2"]),
            ("gen", "NotIn", &["3"], &["n1", "n2"]), // NotIn matches nodes without the label
            ("gen", "Exists", &[], &["n0", "n1"]),
            ("gen", "DoesNotExist", &[], &["n2"]),
            ("gen", "Gt", &["4"], &["n1"]),
            ("gen", "Lt", &["4"], &["n0"]),
            ("gen", "Gt", &["x"], &[]),
            ("zone", "Bogus", &["a"], &[]),
        ];
        for (key, operator, values, expected) in cases {
            let set = index.matching_affinity(&requirement(key, operator, values));
            assert_eq!(
                names(&index, &set),
                *expected,
                "{key} {operator} {values:?}"
            );
        }
    }

    #[test]
    fn terms_are_ored_and_empty_terms_match_nothing() {
        let index = index();
        let mut selector = requirement("zone", "In", &["a"]);
        selector.node_selector_terms.push(NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec!["n2".into()]),
            }]),
        });
        assert_eq!(
            names(&index, &index.matching_affinity(&selector)),
            ["n0", "n2"]
        );
        let empty = NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm::default()],
        };
        assert!(index.matching_affinity(&empty).is_clear());
    }

    #[test]
    fn match_fields_support_only_metadata_name() {
        let index = index();
        let fields = |key: &str, operator: &str| NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: key.into(),
                    operator: operator.into(),
                    values: Some(vec!["n1".into()]),
                }]),
            }],
        };
        assert_eq!(
            names(
                &index,
                &index.matching_affinity(&fields("metadata.name", "NotIn"))
            ),
            ["n0", "n2"]
        );
        assert!(
            index
                .matching_affinity(&fields("metadata.uid", "In"))
                .is_clear()
        );
    }

    fn toleration(
        key: Option<&str>,
        operator: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: operator.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_follow_tolerates_taint() {
        let taint = Taint {
            key: "gpu".into(),
            value: "yes".into(),
            effect: TaintEffect::NoSchedule,
        };
        let cases = [
            (
                toleration(Some("gpu"), Some("Equal"), Some("yes"), Some("NoSchedule")),
                true,
            ),
            (toleration(Some("gpu"), None, Some("yes"), None), true),
            (
                toleration(Some("gpu"), Some("Equal"), Some("no"), None),
                false,
            ),
            (toleration(Some("gpu"), Some("Exists"), None, None), true),
            (
                toleration(Some("gpu"), Some("Exists"), None, Some("NoExecute")),
                false,
            ),
            (toleration(None, Some("Exists"), None, None), true),
            (toleration(Some("other"), Some("Exists"), None, None), false),
        ];
        for (toleration, expected) in cases {
            assert_eq!(tolerates(&toleration, &taint), expected, "{toleration:?}");
        }
    }

    #[test]
    fn taints_prefer_no_schedule_is_ignored_and_groups_are_checked() {
        let index = index();
        let all = index.all();
        let tolerating = |tolerations| index.tolerating(Cow::Borrowed(&all), tolerations);
        assert_eq!(names(&index, &tolerating(&[])), ["n0"]);
        let tolerate_dedicated = [toleration(Some("dedicated"), Some("Exists"), None, None)];
        assert_eq!(
            names(&index, &tolerating(&tolerate_dedicated)),
            ["n0", "n2"]
        );
        assert_eq!(
            index.untolerated_example(
                &index.matching_selector(&Labels::from([("zone".into(), "b".into())])),
                &[]
            ),
            Some(("n1".into(), "gpu=yes:NoSchedule".into()))
        );
    }

    #[test]
    fn stages_that_filter_nothing_hand_on_the_set_they_got() {
        let index = index();
        let zone_a = index.matching_selector(&Labels::from([("zone".into(), "a".into())]));
        assert!(
            matches!(zone_a, Cow::Borrowed(_)),
            "one label: the index's set"
        );
        // n0 has no taint and is ready: neither stage takes anything out, nothing is copied.
        let tolerated = index.tolerating(zone_a.clone(), &[]);
        assert!(matches!(tolerated, Cow::Borrowed(_)));
        let schedulable = index.schedulable(tolerated);
        assert!(matches!(schedulable, Cow::Borrowed(_)));
        assert_eq!(names(&index, &schedulable), ["n0"]);
        // n1 (zone b) is tainted and not KubeVirt-schedulable: each stage filters, on a copy,
        // and the index's own set stays as it was.
        let zone_b = index.matching_selector(&Labels::from([("zone".into(), "b".into())]));
        let tolerated = index.tolerating(zone_b.clone(), &[]);
        assert!(matches!(tolerated, Cow::Owned(_)) && tolerated.is_clear());
        let untainted = index.tolerating(
            zone_b.clone(),
            &[toleration(Some("gpu"), Some("Exists"), None, None)],
        );
        assert!(index.schedulable(untainted).is_clear());
        assert_eq!(names(&index, &zone_b), ["n1"]);
        let both = Labels::from([("zone".into(), "a".into()), ("gen".into(), "3".into())]);
        assert_eq!(names(&index, &index.matching_selector(&both)), ["n0"]);
        assert_eq!(
            names(&index, index.with_label("zone", "a").unwrap()),
            ["n0"]
        );
    }

    #[test]
    fn schedulable_needs_kubevirt_label_ready_and_no_cordon() {
        let index = index();
        assert_eq!(
            names(&index, &index.schedulable(Cow::Owned(index.all()))),
            ["n0"]
        );
        assert_eq!(index.unschedulable_counts(&index.all()), (0, 0, 2));
    }

    #[test]
    fn nearest_miss_names_the_closest_node() {
        let index = index();
        let selector = Labels::from([("zone".into(), "a".into()), ("gen".into(), "5".into())]);
        assert!(index.matching_selector(&selector).is_clear());
        let (name, has) = index.nearest_miss(&selector).unwrap();
        assert!(name == "n0" || name == "n1");
        assert!(has.starts_with("has "), "{has}");
    }

    #[test]
    fn nearest_miss_prefers_a_node_with_the_key() {
        let index = NodeIndex::new(vec![
            node("plain", json!({}), json!([])),
            node("t4", json!({"gpu": "t4"}), json!([])),
            node("other", json!({}), json!([])),
        ]);
        let selector = Labels::from([("gpu".into(), "a100".into())]);
        assert_eq!(
            index.nearest_miss(&selector),
            Some(("t4".to_string(), "has gpu=t4".to_string()))
        );
    }
}
