//! The cluster view from a live API server, with kube-rs.
//!
//! Two ways: [`list_once`] lists every kind once (for `check`), and [`LiveView::start`] keeps
//! a view current with one watcher per kind (for the webhook and the watcher). Secrets,
//! ConfigMaps, ServiceAccounts and every kind whose names are all the rules need are read as
//! metadata only (`PartialObjectMetadata`): the process never holds secret data. A kind that
//! cannot be listed (CRD not installed, RBAC) stays unknown, and this is logged once.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{ClusterView, Kind, KindSet, ViewBuilder};

/// Where a kind is served, and whether its metadata is enough.
struct KindApi {
    version: &'static str,
    plural: &'static str,
    /// The rules need only names, labels or annotations of this kind.
    metadata_only: bool,
}

fn kind_api(kind: Kind) -> KindApi {
    let (version, plural, metadata_only) = match kind {
        Kind::Node => ("v1", "nodes", false),
        Kind::StorageClass => ("v1", "storageclasses", true),
        Kind::StorageProfile => ("v1beta1", "storageprofiles", false),
        Kind::PriorityClass => ("v1", "priorityclasses", true),
        Kind::Namespace => ("v1", "namespaces", true),
        Kind::Secret => ("v1", "secrets", true),
        Kind::ConfigMap => ("v1", "configmaps", true),
        Kind::ServiceAccount => ("v1", "serviceaccounts", true),
        Kind::PersistentVolumeClaim => ("v1", "persistentvolumeclaims", false),
        // Not metadata only: a stuck VM's diagnosis reads its DataVolumes' phase.
        Kind::DataVolume => ("v1beta1", "datavolumes", false),
        Kind::NetworkAttachmentDefinition => ("v1", "network-attachment-definitions", true),
        Kind::VirtualMachineInstancetype => ("v1beta1", "virtualmachineinstancetypes", true),
        Kind::VirtualMachineClusterInstancetype => {
            ("v1beta1", "virtualmachineclusterinstancetypes", true)
        }
        Kind::VirtualMachinePreference => ("v1beta1", "virtualmachinepreferences", true),
        Kind::VirtualMachineClusterPreference => {
            ("v1beta1", "virtualmachineclusterpreferences", true)
        }
    };
    KindApi {
        version,
        plural,
        metadata_only,
    }
}

/// The kube-rs description of a kind's API.
pub fn api_resource(kind: Kind) -> ApiResource {
    let api = kind_api(kind);
    let group = kind.group();
    ApiResource {
        group: group.to_string(),
        version: api.version.to_string(),
        api_version: if group.is_empty() {
            api.version.to_string()
        } else {
            format!("{group}/{}", api.version)
        },
        kind: kind.as_str().to_string(),
        plural: api.plural.to_string(),
    }
}

/// Keeps only what [`ViewBuilder::add`] reads, so a long-running process holds little per
/// object (no managedFields, no data).
fn prune(kind: Kind, object: Value) -> Value {
    let Value::Object(mut map) = object else {
        return Value::Null;
    };
    let mut metadata = Map::new();
    if let Some(Value::Object(meta)) = map.remove("metadata") {
        for key in ["name", "namespace", "labels", "annotations"] {
            if let Some(value) = meta.get(key) {
                metadata.insert(key.to_string(), value.clone());
            }
        }
    }
    let mut pruned = Map::new();
    pruned.insert("metadata".into(), Value::Object(metadata));
    if matches!(
        kind,
        Kind::Node | Kind::PersistentVolumeClaim | Kind::StorageProfile
    ) {
        for key in ["spec", "status"] {
            if let Some(value) = map.remove(key) {
                pruned.insert(key.into(), value);
            }
        }
    }
    if kind == Kind::DataVolume
        && let Some(status) = map.remove("status")
    {
        pruned.insert("status".into(), status);
    }
    Value::Object(pruned)
}

/// A one-line reason a kind is unknown.
fn describe_error(kind: Kind, err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 404 => {
            format!("{kind}: not served by this cluster (CRD not installed); its rules are skipped")
        }
        kube::Error::Api(status) if status.code == 403 => {
            format!(
                "{kind}: forbidden by RBAC ({}); its rules are skipped",
                status.message
            )
        }
        other => format!("{kind}: cannot list ({other}); its rules are skipped"),
    }
}

/// The result of listing every kind once.
pub struct Listed {
    pub view: ClusterView,
    /// Why some kinds are unknown, one line each.
    pub notes: Vec<String>,
}

const PAGE: u32 = 500;

async fn list_kind<K>(api: Api<K>) -> Result<Vec<Value>, kube::Error>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    let mut values = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        for item in page.items {
            values.push(serde_json::to_value(&item).map_err(kube::Error::SerdeError)?);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(values),
        }
    }
}

/// Lists every kind once, metadata only where that is enough.
pub async fn list_once(client: Client) -> Listed {
    let mut builder = ViewBuilder::new();
    let mut notes = Vec::new();
    for kind in Kind::ALL {
        let resource = api_resource(kind);
        let listed = if kind_api(kind).metadata_only {
            list_kind(Api::<PartialObjectMeta<DynamicObject>>::all_with(
                client.clone(),
                &resource,
            ))
            .await
        } else {
            list_kind(Api::<DynamicObject>::all_with(client.clone(), &resource)).await
        };
        match listed {
            Ok(objects) => {
                builder.mark_known(kind);
                for object in objects {
                    if let Err(err) = builder.add(kind, &object) {
                        notes.push(format!("skipped an object: {err}"));
                    }
                }
            }
            Err(err) => notes.push(describe_error(kind, &err)),
        }
    }
    Listed {
        view: builder.build(),
        notes,
    }
}

/// A cluster view kept current by one watcher per kind. Readers take the latest view with
/// [`LiveView::current`]: an `Arc` clone, never a wait and never an API call.
#[derive(Clone)]
pub struct LiveView {
    receiver: watch::Receiver<Arc<ClusterView>>,
    /// Kinds whose first list has finished, synced or failed (a missing CRD settles as
    /// unknown): readiness waits for every kind to settle, not to succeed.
    settled: Arc<AtomicU32>,
    /// Holds the channel open for a view that no task publishes to (a fixed snapshot).
    _fixed: Option<Arc<watch::Sender<Arc<ClusterView>>>>,
}

/// How long a kind's watcher gathers further events before it publishes a rebuilt part.
const DEBOUNCE: Duration = Duration::from_millis(100);

impl LiveView {
    /// Starts the watchers on the current tokio runtime. Until a kind's first list completes
    /// it is unknown, so its rules are skipped (fail open).
    pub fn start(client: Client) -> LiveView {
        let (sender, receiver) = watch::channel(Arc::new(ClusterView::default()));
        let shared = Arc::new(Mutex::new(ClusterView::default()));
        let sender = Arc::new(sender);
        let settled = Arc::new(AtomicU32::new(0));
        for kind in Kind::ALL {
            let resource = api_resource(kind);
            let publisher = Publisher {
                kind,
                shared: shared.clone(),
                sender: sender.clone(),
                settled: settled.clone(),
            };
            let config = watcher::Config::default().page_size(PAGE);
            if kind_api(kind).metadata_only {
                let api =
                    Api::<PartialObjectMeta<DynamicObject>>::all_with(client.clone(), &resource);
                tokio::spawn(run_kind(
                    watcher::watcher(api, config).default_backoff(),
                    publisher,
                ));
            } else {
                let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
                tokio::spawn(run_kind(
                    watcher::watcher(api, config).default_backoff(),
                    publisher,
                ));
            }
        }
        LiveView {
            receiver,
            settled,
            _fixed: None,
        }
    }

    /// A view that never changes (a snapshot), behind the same interface.
    pub fn fixed(view: ClusterView) -> LiveView {
        let (sender, receiver) = watch::channel(Arc::new(view));
        LiveView {
            receiver,
            settled: Arc::new(AtomicU32::new(KindSet::all().bits())),
            _fixed: Some(Arc::new(sender)),
        }
    }

    /// Whether every kind has finished its first list (synced, or found unavailable).
    pub fn settled(&self) -> bool {
        KindSet::from_bits(self.settled.load(Ordering::Acquire)) == KindSet::all()
    }

    pub fn current(&self) -> Arc<ClusterView> {
        self.receiver.borrow().clone()
    }

    /// The kinds synced so far.
    pub fn synced(&self) -> KindSet {
        self.receiver.borrow().known()
    }

    /// Waits until the view changes (for tests and readiness).
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }
}

struct Publisher {
    kind: Kind,
    shared: Arc<Mutex<ClusterView>>,
    sender: Arc<watch::Sender<Arc<ClusterView>>>,
    settled: Arc<AtomicU32>,
}

impl Publisher {
    fn settle(&self) {
        let mut bit = KindSet::default();
        bit.insert(self.kind);
        self.settled.fetch_or(bit.bits(), Ordering::AcqRel);
    }

    /// Rebuilds this kind's part from `objects` and publishes the whole view.
    fn publish(&self, objects: &HashMap<(String, String), Value>, synced: bool) {
        let mut builder = ViewBuilder::new();
        if synced {
            builder.mark_known(self.kind);
            for object in objects.values() {
                if let Err(err) = builder.add(self.kind, object) {
                    debug!(%err, "object left out of the view");
                }
            }
        }
        let part = builder.build();
        let Ok(mut view) = self.shared.lock() else {
            return; // a panicked publisher poisoned the view; the others keep the last one
        };
        view.replace_kind(self.kind, &part);
        self.sender.send_replace(Arc::new(view.clone()));
    }
}

fn key_of(object: &Value) -> (String, String) {
    let field = |name: &str| {
        object
            .pointer(&format!("/metadata/{name}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("namespace"), field("name"))
}

/// Applies a kind's watch events to its objects and publishes the rebuilt part, gathering
/// bursts of events for [`DEBOUNCE`] so that a relist of 100,000 Secrets is one rebuild.
async fn run_kind<K, S>(stream: S, publisher: Publisher)
where
    K: Resource + Serialize,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let kind = publisher.kind;
    let mut stream = std::pin::pin!(stream);
    let mut objects: HashMap<(String, String), Value> = HashMap::new();
    let mut buffer: HashMap<(String, String), Value> = HashMap::new();
    let mut synced = false;
    let mut reported_error = false;
    loop {
        let Some(first) = stream.next().await else {
            return;
        };
        let mut changed = false;
        let mut apply = |item: Result<Event<K>, watcher::Error>, changed: &mut bool| match item {
            Ok(event) => {
                let value =
                    |object: K| prune(kind, serde_json::to_value(object).unwrap_or(Value::Null));
                match event {
                    Event::Init => buffer.clear(),
                    Event::InitApply(object) => {
                        let value = value(object);
                        buffer.insert(key_of(&value), value);
                    }
                    Event::InitDone => {
                        objects = std::mem::take(&mut buffer);
                        if !synced {
                            info!(%kind, count = objects.len(), "cluster view synced");
                        }
                        synced = true;
                        reported_error = false;
                        *changed = true;
                    }
                    Event::Apply(object) => {
                        let value = value(object);
                        objects.insert(key_of(&value), value);
                        *changed = true;
                    }
                    Event::Delete(object) => {
                        let value = value(object);
                        objects.remove(&key_of(&value));
                        *changed = true;
                    }
                }
            }
            Err(err) => {
                if !reported_error {
                    let message = match &err {
                        watcher::Error::InitialListFailed(e)
                        | watcher::Error::WatchStartFailed(e) => describe_error(kind, e),
                        other => format!("{kind}: watch failed ({other}); retrying"),
                    };
                    warn!("{message}");
                    reported_error = true;
                }
            }
        };
        apply(first, &mut changed);
        let deadline = tokio::time::Instant::now() + DEBOUNCE;
        while let Ok(Some(item)) = tokio::time::timeout_at(deadline, stream.next()).await {
            apply(item, &mut changed);
        }
        if changed && synced {
            publisher.publish(&objects, synced);
        }
        if synced || reported_error {
            publisher.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_resources_are_where_kubernetes_serves_them() {
        let nad = api_resource(Kind::NetworkAttachmentDefinition);
        assert_eq!(nad.api_version, "k8s.cni.cncf.io/v1");
        assert_eq!(nad.plural, "network-attachment-definitions");
        assert_eq!(api_resource(Kind::Secret).api_version, "v1");
        assert_eq!(
            api_resource(Kind::DataVolume).api_version,
            "cdi.kubevirt.io/v1beta1"
        );
    }

    #[test]
    fn prune_keeps_what_the_view_reads() {
        let pruned = prune(
            Kind::Secret,
            json!({"metadata": {"name": "s", "namespace": "n", "managedFields": [1]}, "data": {"k": "djE="}}),
        );
        assert_eq!(pruned, json!({"metadata": {"name": "s", "namespace": "n"}}));
        let node = prune(
            Kind::Node,
            json!({"metadata": {"name": "n"}, "spec": {"x": 1}, "status": {"y": 2}}),
        );
        assert_eq!(node["status"], json!({"y": 2}));
    }
}
