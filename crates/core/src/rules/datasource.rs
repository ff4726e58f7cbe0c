//! CDI DataSources named by a DataVolume template's `sourceRef`: golden images that must exist
//! and be imported before the DataVolume can clone them.
//!
//! CDI accepts a DataVolume whose DataSource is missing or not ready (its webhook checks only
//! the reference's kind and name) and keeps it waiting: the VM's disk never fills and the VM
//! never starts. It looks the DataSource up in `sourceRef.namespace`, or the DataVolume's own
//! namespace when that is empty (`getSourceRefOp`, `populateSourceIfSourceRef`).

use super::storage::existing_data_volume;
use super::{Emitter, VmContext};
use crate::cluster::{CloneGrant, ClusterView, Kind, Lookup, ObjectKey};
use crate::model::SourceRef;

/// The only kind of `sourceRef` CDI supports.
const DATA_SOURCE: &str = "DataSource";

/// A template's `sourceRef` to a DataSource.
struct DataSourceRef<'a> {
    template: usize,
    /// The template's `metadata.name`: the DataVolume KubeVirt creates from it.
    data_volume: Option<&'a str>,
    namespace: &'a str,
    name: &'a str,
}

impl DataSourceRef<'_> {
    fn path(&self) -> String {
        format!(
            "spec.dataVolumeTemplates[{}].spec.sourceRef.name",
            self.template
        )
    }
}

fn data_source_refs<'a>(cx: &VmContext<'a>) -> impl Iterator<Item = DataSourceRef<'a>> {
    let namespace = cx.namespace;
    cx.vm
        .spec
        .data_volume_templates
        .iter()
        .enumerate()
        .filter_map(move |(template, t)| {
            let SourceRef {
                kind,
                name,
                namespace: written,
            } = t.spec.source_ref.as_ref()?;
            let name = name.as_deref().filter(|n| !n.is_empty())?;
            // CDI rejects any other kind (and a missing one) itself.
            (kind.as_deref() == Some(DATA_SOURCE)).then_some(DataSourceRef {
                template,
                data_volume: t.metadata.name.as_deref().filter(|n| !n.is_empty()),
                namespace: written
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(namespace),
                name,
            })
        })
}

/// An existing DataVolume of the template's name is used as it is and its `sourceRef` never
/// read ([`existing_data_volume`]); DataVolumes unknown leave that open: no finding either way.
fn created_already(cx: &VmContext<'_>, view: &ClusterView, source: &DataSourceRef<'_>) -> bool {
    !existing_data_volume(cx, view, source.template).is_absent()
}

/// A template's `sourceRef` names a DataSource that does not exist. Emitted as a missing
/// object, so that the webhook asks the API server before it denies. KubeVirt's own admission
/// looks a DataSource up only to infer an instancetype or preference from a volume
/// (`inferFromVolume`); that mutation fails before this validating webhook sees the VM.
pub fn datasource_not_found(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for source in data_source_refs(cx) {
        if created_already(cx, view, &source) {
            continue;
        }
        if view.datasource(source.namespace, source.name).is_absent() {
            // The DataVolume too: if the API server has it, the DataSource does not matter.
            let looked_for = std::iter::once(ObjectKey::new(
                Kind::DataSource,
                source.namespace,
                source.name,
            ))
            .chain(
                source
                    .data_volume
                    .map(|dv| ObjectKey::new(Kind::DataVolume, cx.namespace, dv)),
            )
            .collect();
            out.emit_missing(
                looked_for,
                source.path(),
                format!(
                    "DataSource {:?} does not exist in namespace {}: the DataVolume would wait; create it or fix sourceRef",
                    source.name, source.namespace
                ),
            );
        }
    }
}

/// The DataSource's PVC is in another namespace, and the ServiceAccount virt-controller
/// authorizes the clone as (the VM's `serviceAccount` volume, else `default`) may not
/// `create datavolumes/source` there: virt-controller refuses to create the DataVolume
/// (`Failure=True FailedCreate: not authorized to create DataVolume`), whatever the run
/// strategy. Only an answer of the API server's (`check --kubeconfig` asks it; a snapshot may
/// carry SubjectAccessReviews) reports; without one the rule is silent.
pub fn clone_not_authorized(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for (source, grant) in cross_namespace_clones(cx, view) {
        if view.clone_allowed(&grant) == Some(false) {
            let source_namespace = &grant.source_namespace;
            out.emit(
                source.path(),
                format!(
                    "ServiceAccount {}/{} may not clone from namespace {source_namespace} \
                     (create datavolumes/source): grant it there",
                    grant.account_namespace, grant.account
                ),
            );
        }
    }
}

/// The clones of the VM's DataVolume templates from another namespace, each with the grant
/// CDI asks for.
fn cross_namespace_clones<'a>(
    cx: &VmContext<'a>,
    view: &ClusterView,
) -> Vec<(DataSourceRef<'a>, CloneGrant)> {
    data_source_refs(cx)
        .filter(|source| !created_already(cx, view, source))
        .filter_map(|source| {
            let Lookup::Present(info) = view.datasource(source.namespace, source.name) else {
                return None;
            };
            let source_namespace = info.source_namespace.as_deref()?;
            // A clone within the namespace needs no grant.
            (source_namespace != cx.namespace).then(|| {
                let grant = CloneGrant {
                    account_namespace: cx.namespace.to_string(),
                    account: clone_account(cx).to_string(),
                    source_namespace: source_namespace.to_string(),
                };
                (source, grant)
            })
        })
        .collect()
}

/// What the API server must be asked (by the caller: rules do no I/O) for
/// `clone-not-authorized` to judge this VM: the grants it does not know yet.
pub fn clone_questions(cx: &VmContext<'_>) -> Vec<CloneGrant> {
    let Some(view) = cx.cluster else {
        return Vec::new();
    };
    cross_namespace_clones(cx, view)
        .into_iter()
        .map(|(_, grant)| grant)
        .filter(|grant| view.clone_allowed(grant).is_none())
        .collect()
}

/// The ServiceAccount virt-controller checks a VM's clones as: its `serviceAccount` volume's
/// (the last one), else `default` (`authorizeDataVolume`).
fn clone_account<'a>(cx: &VmContext<'a>) -> &'a str {
    cx.spec
        .volumes
        .iter()
        .rev()
        .filter_map(|v| v.service_account.as_ref())
        .filter_map(|sa| sa.service_account_name.as_deref())
        .find(|name| !name.is_empty())
        .unwrap_or("default")
}

/// The DataSource exists but its `Ready` condition is False (its source PVC or snapshot is not
/// there yet, or still importing): the DataVolume waits until it is. A DataSource CDI has not
/// given a Ready condition yet (or one of status Unknown) is no finding.
pub fn datasource_not_ready(cx: &VmContext<'_>, out: &mut Emitter<'_>) {
    let Some(view) = cx.cluster else { return };
    for source in data_source_refs(cx) {
        if created_already(cx, view, &source) {
            continue;
        }
        let Lookup::Present(info) = view.datasource(source.namespace, source.name) else {
            continue;
        };
        if info.ready != Some(false) {
            continue;
        }
        let reason: String = info
            .reason
            .as_deref()
            .map(|r| format!(" ({})", r.chars().take(30).collect::<String>()))
            .unwrap_or_default();
        out.emit(
            source.path(),
            format!(
                "DataSource {}/{} is not Ready{reason}: the DataVolume waits for its import",
                source.namespace, source.name
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleId::{self, *};
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn with_source_ref(source_ref: Value) -> Value {
        valid_vm_with(|vm| {
            vm["spec"]["dataVolumeTemplates"] = json!([{"metadata": {"name": "root-dv"}, "spec": {
                "sourceRef": source_ref,
                "storage": {"resources": {"requests": {"storage": "30Gi"}}, "accessModes": ["ReadWriteOnce"]}}}]);
            spec(vm)["volumes"][0] = json!({"name": "rootdisk", "dataVolume": {"name": "root-dv"}});
        })
    }

    fn data_source(namespace: &str, name: &str, ready: Option<(&str, &str)>) -> Value {
        let conditions = ready.map_or(
            json!([]),
            |(status, reason)| json!([{"type": "Ready", "status": status, "reason": reason}]),
        );
        json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": {"pvc": {"name": name, "namespace": namespace}}},
            "status": {"conditions": conditions}})
    }

    fn view(sources: Vec<Value>) -> crate::cluster::ClusterView {
        base_cluster_with(|items| items.extend(sources))
    }

    fn of(rule: RuleId, value: Value, view: &crate::cluster::ClusterView) -> Vec<(RuleId, String)> {
        fired_in(value, view)
            .into_iter()
            .filter(|(r, _)| *r == rule)
            .collect()
    }

    const PATH: &str = "spec.dataVolumeTemplates[0].spec.sourceRef.name";

    #[test]
    fn a_missing_data_source_is_looked_up_in_the_right_namespace() {
        let golden = view(vec![data_source(
            "os-images",
            "fedora",
            Some(("True", "Ready")),
        )]);
        let elsewhere = with_source_ref(
            json!({"kind": "DataSource", "name": "fedora", "namespace": "os-images"}),
        );
        assert_eq!(fired_in(elsewhere, &golden), vec![]);
        // Without a namespace, the VM's own (default) is searched: not there.
        let here = with_source_ref(json!({"kind": "DataSource", "name": "fedora"}));
        assert_eq!(
            of(DatasourceNotFound, here.clone(), &golden),
            vec![(DatasourceNotFound, PATH.into())]
        );
        let findings = findings_in(here.clone(), &golden);
        let missing = &findings
            .iter()
            .find(|f| f.rule == DatasourceNotFound)
            .unwrap()
            .missing;
        // The DataVolume too: if the API server has it, KubeVirt uses it and the finding goes.
        let missing: Vec<_> = missing
            .iter()
            .map(|key| (key.kind, key.namespace.as_str(), key.name.as_str()))
            .collect();
        assert_eq!(
            missing,
            vec![
                (crate::cluster::Kind::DataSource, "default", "fedora"),
                (crate::cluster::Kind::DataVolume, "default", "root-dv")
            ]
        );
        // An empty namespace is the VM's too.
        let empty =
            with_source_ref(json!({"kind": "DataSource", "name": "fedora", "namespace": ""}));
        assert_eq!(of(DatasourceNotFound, empty, &golden).len(), 1);
        // DataSources unknown: nothing.
        assert_eq!(of(DatasourceNotFound, here, &cluster(BASE_CLUSTER)), vec![]);
        // Another kind is CDI's own error.
        let other = with_source_ref(json!({"kind": "PersistentVolumeClaim", "name": "fedora"}));
        assert_eq!(of(DatasourceNotFound, other, &golden), vec![]);
    }

    #[test]
    fn a_data_volume_that_already_exists_is_used_as_it_is() {
        // KubeVirt creates a template's DataVolume only when none of that name exists
        // (`handleDataVolumes`): an existing one (a VM re-created over its orphaned disk, or
        // created long ago from a DataSource deleted since) never reads the sourceRef again.
        let created = |deleting: bool| {
            base_cluster_with(|items| {
                let mut dv = json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                    "metadata": {"name": "root-dv", "namespace": "default"},
                    "status": {"phase": "Succeeded"}});
                if deleting {
                    dv["metadata"]["deletionTimestamp"] = json!("2026-11-29T12:00:00Z");
                    dv["metadata"]["finalizers"] = json!(["kubernetes.io/pvc-protection"]);
                }
                items.push(dv);
                items.push(data_source("default", "stale", Some(("False", "NotFound"))));
            })
        };
        for name in ["fedora", "stale"] {
            let vm = with_source_ref(json!({"kind": "DataSource", "name": name}));
            assert_eq!(fired_in(vm, &created(false)), vec![], "{name}");
        }
        // A DataVolume being deleted is created again from the template: the DataSource counts.
        let vm = with_source_ref(json!({"kind": "DataSource", "name": "fedora"}));
        assert_eq!(
            of(DatasourceNotFound, vm, &created(true)),
            vec![(DatasourceNotFound, PATH.into())]
        );
    }

    #[test]
    fn a_data_source_that_is_not_ready() {
        let not_ready = view(vec![data_source(
            "default",
            "fedora",
            Some(("False", "NotFound")),
        )]);
        let vm = with_source_ref(json!({"kind": "DataSource", "name": "fedora"}));
        assert_eq!(
            fired_in(vm.clone(), &not_ready),
            vec![(DatasourceNotReady, PATH.into())]
        );
        let finding = findings_in(vm.clone(), &not_ready).remove(0);
        assert_eq!(finding.severity, crate::rules::finding::Severity::Warning);
        assert!(finding.message.contains("NotFound"), "{}", finding.message);
        // Ready, or not reconciled yet: nothing.
        let ready = view(vec![data_source(
            "default",
            "fedora",
            Some(("True", "Ready")),
        )]);
        assert_eq!(fired_in(vm.clone(), &ready), vec![]);
        let fresh = view(vec![data_source("default", "fedora", None)]);
        assert_eq!(fired_in(vm, &fresh), vec![]);
    }
}
