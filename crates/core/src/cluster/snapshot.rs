//! A cluster view from files: what `kubectl get ... -A -o yaml` (a `List`) or `-o json`
//! prints, or multi-document YAML. The kinds present in the files are the known kinds.

use std::path::Path;

use super::{CloneGrant, ClusterView, Kind, ViewBuilder};
use crate::manifest::{self, Document, InputError, Parsed, ReadOptions};

/// A view read from snapshot files, and what else the files held.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub view: ClusterView,
    /// Objects the view does not index (VirtualMachineInstances, Pods...).
    pub other: Vec<Document>,
    pub errors: Vec<InputError>,
}

/// Reads every file (or directory) and builds one view from all of them.
pub fn read(paths: &[impl AsRef<Path>], options: ReadOptions) -> Snapshot {
    from_documents(
        paths
            .iter()
            .flat_map(|path| manifest::read_path(path.as_ref(), options)),
    )
}

pub fn from_documents(documents: impl IntoIterator<Item = Parsed>) -> Snapshot {
    let mut builder = ViewBuilder::new();
    let mut snapshot = Snapshot::default();
    for document in documents {
        let document = match document {
            Ok(document) => document,
            Err(err) => {
                snapshot.errors.push(err);
                continue;
            }
        };
        let kind = match (document.api_version(), document.kind()) {
            (Some(api_version), Some(kind)) => Kind::of(api_version, kind),
            _ => None,
        };
        match kind {
            Some(kind) => {
                if let Err(err) = builder.add(kind, &document.value) {
                    snapshot.errors.push(InputError::in_document(
                        &document.source,
                        None,
                        err.to_string(),
                    ));
                }
            }
            None => snapshot.other.push(document),
        }
    }
    // Answers no watch gives: what `kubectl create -f review.yaml -o yaml` printed for a
    // SubjectAccessReview of CDI's clone permission.
    let mut grants = Vec::new();
    snapshot
        .other
        .retain(|document| match clone_grant(document) {
            Some(grant) => {
                grants.push(grant);
                false
            }
            None => true,
        });
    snapshot.view = builder.build().with_clone_grants(grants);
    snapshot
}

/// A SubjectAccessReview answered by the API server, when it asks whether a ServiceAccount may
/// `create datavolumes/source` (cdi.kubevirt.io) in a namespace.
fn clone_grant(document: &Document) -> Option<(CloneGrant, bool)> {
    let value = &document.value;
    if document.kind() != Some("SubjectAccessReview")
        || document.api_version() != Some("authorization.k8s.io/v1")
    {
        return None;
    }
    let spec = &value["spec"];
    let attributes = &spec["resourceAttributes"];
    let clone = attributes["verb"] == "create"
        && attributes["group"] == "cdi.kubevirt.io"
        && attributes["resource"] == "datavolumes"
        && attributes["subresource"] == "source";
    let (account_namespace, account) = spec["user"]
        .as_str()?
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')?;
    let allowed = value["status"]["allowed"].as_bool()?;
    clone.then(|| {
        (
            CloneGrant {
                account_namespace: account_namespace.to_string(),
                account: account.to_string(),
                source_namespace: attributes["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            },
            allowed,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Lookup;
    use crate::manifest::parse_text;
    use std::sync::Arc;

    #[test]
    fn lists_and_documents_make_known_kinds() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata: {name: s1, namespace: ns}
- apiVersion: v1
  kind: Node
  metadata: {name: n1, labels: {kubevirt.io/schedulable: 'true'}}
  status: {conditions: [{type: Ready, status: 'True'}]}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
---
apiVersion: v1
kind: Node
metadata: {name: broken, labels: [1]}
";
        let snapshot = from_documents(parse_text(&Arc::from("state.yaml"), text));
        assert_eq!(
            snapshot.view.exists(Kind::Secret, "ns", "s1"),
            Lookup::Present(())
        );
        assert_eq!(snapshot.view.nodes().map(|n| n.len()), Some(1));
        assert_eq!(
            snapshot.view.exists(Kind::ConfigMap, "ns", "c"),
            Lookup::Unknown
        );
        assert_eq!(snapshot.other.len(), 1);
        assert_eq!(snapshot.errors.len(), 1);
        assert!(
            snapshot.errors[0].to_string().contains("Node broken"),
            "{}",
            snapshot.errors[0]
        );
    }
}
