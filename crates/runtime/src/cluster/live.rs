//! The cluster view from a live API server, with kube-rs.
//!
//! Two ways, one builder: [`list_once`] lists every kind once (for `check`), and
//! [`LiveView::start`] keeps a view current with one watcher per kind (for the webhook and the
//! watcher), applying each watch event to the [`ViewBuilder`] on its own. Objects are read
//! straight into the wire types of [`super::objects`], as metadata only where that is all the
//! view keeps: the process never parses a Secret's data into a string. A kind that cannot be
//! listed (CRD not installed, RBAC) stays unknown, and this is logged once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::Client;
use kube::api::{Api, ApiResource, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tracing::{info, warn};

use super::nodes::NodeTemplate;
use super::objects::{Body, KindVisitor, Wire, visit_kind};
use super::{ClusterView, Kind, KindSet, ViewBuilder};

/// Where Kubernetes serves each kind.
pub fn api_resource(kind: Kind) -> ApiResource {
    let facts = kind.facts();
    ApiResource {
        group: facts.group.to_string(),
        version: facts.version.to_string(),
        api_version: if facts.group.is_empty() {
            facts.version.to_string()
        } else {
            format!("{}/{}", facts.group, facts.version)
        },
        kind: facts.name.to_string(),
        plural: facts.plural.to_string(),
    }
}

/// `metadata.name=NAME` for a kind the view reads one name of ([`Kind::only_named`]): the
/// API server then sends only that object, and RBAC can grant it by `resourceNames` (a list
/// or watch is authorized by name only with this selector).
pub fn field_selector(kind: Kind) -> Option<String> {
    kind.only_named()
        .map(|name| format!("metadata.name={name}"))
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

/// Lists one kind, page by page, into `builder`.
struct ListKind<'a> {
    client: Client,
    builder: &'a mut ViewBuilder,
}

impl<'a> KindVisitor for ListKind<'a> {
    type Output = BoxFuture<'a, Result<(), kube::Error>>;

    fn visit<B: Body>(self, kind: Kind) -> Self::Output {
        async move {
            let api = Api::<Wire<B>>::all_with(self.client, &api_resource(kind));
            let mut params = ListParams::default().limit(PAGE);
            if let Some(fields) = field_selector(kind) {
                params = params.fields(&fields);
            }
            let mut fresh = ViewBuilder::new();
            fresh.mark_known(kind);
            loop {
                let page = api.list(&params).await?;
                for item in page.items {
                    fresh.apply_body(kind, item.body);
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
            self.builder.replace_kind(kind, &fresh);
            Ok(())
        }
        .boxed()
    }
}

/// Lists every kind once.
pub async fn list_once(client: Client) -> Listed {
    let mut builder = ViewBuilder::new();
    let mut notes = Vec::new();
    for kind in Kind::ALL {
        let listing = ListKind {
            client: client.clone(),
            builder: &mut builder,
        };
        if let Err(err) = visit_kind(kind, listing).await {
            notes.push(describe_error(kind, &err));
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

/// How long the Node watcher gathers further events before it rebuilds the node index (a
/// rolling update of a 5,000-node pool is a few rebuilds, not 5,000). Other kinds publish
/// each batch of events as soon as it is read.
const NODE_DEBOUNCE: Duration = Duration::from_millis(100);

/// The clients the watchers read through. Secrets are read through a client that keeps no
/// connection idle ([`super::client::unpooled`]): an idle connection would hold, in its read buffer,
/// the last page of Secrets it carried.
#[derive(Clone)]
pub struct ViewClients {
    pub objects: Client,
    pub secrets: Client,
}

impl ViewClients {
    /// A pooled client for every kind but Secrets, and an unpooled one for Secrets.
    pub fn new(config: &kube::Config) -> Result<ViewClients, kube::Error> {
        Ok(ViewClients {
            secrets: super::client::unpooled(config)?,
            objects: super::client::pooled(config)?,
        })
    }

    /// One pooled client for every kind, Secrets included: for tests, where no Secret value is
    /// at stake.
    pub fn sharing(client: Client) -> ViewClients {
        ViewClients {
            objects: client.clone(),
            secrets: client,
        }
    }

    fn for_kind(&self, kind: Kind) -> Client {
        match kind {
            Kind::Secret => self.secrets.clone(),
            _ => self.objects.clone(),
        }
    }
}

impl LiveView {
    /// Starts the watchers on the current tokio runtime. Until a kind's first list completes
    /// it is unknown, so its rules are skipped (fail open). `node_templates` are the nodes an
    /// autoscaler can add, counted as nodes once Nodes have synced.
    pub fn start(clients: ViewClients, node_templates: &[NodeTemplate]) -> LiveView {
        let (sender, receiver) = watch::channel(Arc::new(ClusterView::default()));
        let mut builder = ViewBuilder::new();
        builder.set_node_templates(node_templates);
        let shared = Shared {
            builder: Arc::new(Mutex::new(builder)),
            sender: Arc::new(sender),
            settled: Arc::new(AtomicU32::new(0)),
        };
        for kind in Kind::ALL {
            visit_kind(
                kind,
                SpawnWatch {
                    client: clients.for_kind(kind),
                    shared: shared.clone(),
                },
            );
        }
        LiveView {
            receiver,
            settled: shared.settled,
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

/// What the watchers of all kinds share: the one builder and where its views are published.
#[derive(Clone)]
struct Shared {
    builder: Arc<Mutex<ViewBuilder>>,
    sender: Arc<watch::Sender<Arc<ClusterView>>>,
    settled: Arc<AtomicU32>,
}

impl Shared {
    fn settle(&self, kind: Kind) {
        let mut bit = KindSet::default();
        bit.insert(kind);
        self.settled.fetch_or(bit.bits(), Ordering::AcqRel);
    }
}

struct SpawnWatch {
    client: Client,
    shared: Shared,
}

impl KindVisitor for SpawnWatch {
    type Output = ();

    fn visit<B: Body>(self, kind: Kind) {
        let api = Api::<Wire<B>>::all_with(self.client, &api_resource(kind));
        let mut config = watcher::Config::default().page_size(PAGE);
        if let Some(fields) = field_selector(kind) {
            config = config.fields(&fields);
        }
        let stream = watcher::watcher(api, config).default_backoff();
        tokio::spawn(run_kind(kind, stream, self.shared));
    }
}

/// What one kind's watcher has seen.
struct KindWatch<B> {
    kind: Kind,
    /// A relist in progress: built on the side, swapped in whole at its end.
    relist: Option<ViewBuilder>,
    synced: bool,
    failing: bool,
    _body: std::marker::PhantomData<B>,
}

/// What applying one watch item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing visible changed (a relist is under way).
    Nothing,
    Changed,
}

impl<B: Body> KindWatch<B> {
    fn new(kind: Kind) -> Self {
        KindWatch {
            kind,
            relist: None,
            synced: false,
            failing: false,
            _body: std::marker::PhantomData,
        }
    }

    /// Applies one item of the watch stream to the builder.
    fn apply(
        &mut self,
        item: Result<Event<Wire<B>>, watcher::Error>,
        builder: &mut ViewBuilder,
    ) -> Outcome {
        let kind = self.kind;
        let event = match item {
            Ok(event) => event,
            Err(err) => {
                if !self.failing {
                    let message = match &err {
                        watcher::Error::InitialListFailed(e)
                        | watcher::Error::WatchStartFailed(e) => describe_error(kind, e),
                        other => format!("{kind}: watch failed ({other}); retrying"),
                    };
                    warn!("{message}");
                    self.failing = true;
                }
                // What the view holds of this kind may now be behind the API server.
                builder.set_stale(kind, self.synced);
                return Outcome::Changed;
            }
        };
        if self.failing {
            self.failing = false;
            builder.set_stale(kind, false);
        }
        match event {
            Event::Init => {
                let mut fresh = ViewBuilder::new();
                fresh.mark_known(kind);
                self.relist = Some(fresh);
                Outcome::Nothing
            }
            Event::InitApply(object) => {
                self.relist
                    .get_or_insert_with(ViewBuilder::new)
                    .apply_body(kind, object.body);
                Outcome::Nothing
            }
            Event::InitDone => {
                let mut fresh = self.relist.take().unwrap_or_default();
                fresh.mark_known(kind);
                builder.replace_kind(kind, &fresh);
                builder.set_stale(kind, false);
                if !self.synced {
                    info!(%kind, count = fresh.count(kind), "cluster view synced");
                }
                self.synced = true;
                Outcome::Changed
            }
            Event::Apply(object) => {
                builder.apply_body(kind, object.body);
                Outcome::Changed
            }
            Event::Delete(object) => {
                builder.delete(kind, object.body.meta());
                Outcome::Changed
            }
        }
    }
}

/// Applies a kind's watch events to the shared builder, publishing after each batch of
/// events that were ready together (and, for Nodes, after [`NODE_DEBOUNCE`]).
async fn run_kind<B, S>(kind: Kind, stream: S, shared: Shared)
where
    B: Body,
    S: Stream<Item = Result<Event<Wire<B>>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut watch = KindWatch::<B>::new(kind);
    let mut batch = Vec::new();
    loop {
        let Some(first) = stream.next().await else {
            return;
        };
        batch.push(first);
        if kind == Kind::Node {
            let deadline = tokio::time::Instant::now() + NODE_DEBOUNCE;
            while let Ok(Some(item)) = tokio::time::timeout_at(deadline, stream.next()).await {
                batch.push(item);
            }
        } else {
            while let Some(Some(item)) = stream.next().now_or_never() {
                batch.push(item);
            }
        }
        let Ok(mut builder) = shared.builder.lock() else {
            return; // a panicked writer poisoned the view; readers keep the last one
        };
        let mut changed = false;
        for item in batch.drain(..) {
            changed |= watch.apply(item, &mut builder) == Outcome::Changed;
        }
        if changed {
            let view = builder.view();
            drop(builder);
            shared.sender.send_replace(Arc::new(view));
        } else {
            drop(builder);
        }
        if watch.synced || watch.failing {
            shared.settle(kind);
        }
    }
}

/// CDI's clone authorization, asked of the API server: may each ServiceAccount
/// `create datavolumes/source` (group cdi.kubevirt.io) in the source namespace? One
/// SubjectAccessReview per question, as virt-controller asks. A question the server does not
/// answer (no permission to ask, an error) is left out: unknown, and the rule stays silent.
pub async fn ask_clone_grants(
    client: Client,
    questions: Vec<super::CloneGrant>,
) -> Vec<(super::CloneGrant, bool)> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client);
    let mut answers = Vec::new();
    for grant in questions {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!(
                    "system:serviceaccount:{}:{}",
                    grant.account_namespace, grant.account
                )),
                groups: Some(vec![
                    "system:serviceaccounts".to_string(),
                    format!("system:serviceaccounts:{}", grant.account_namespace),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(grant.source_namespace.clone()),
                    verb: Some("create".to_string()),
                    group: Some("cdi.kubevirt.io".to_string()),
                    resource: Some("datavolumes".to_string()),
                    subresource: Some("source".to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        match reviews.create(&Default::default(), &review).await {
            Ok(answer) => {
                let allowed = answer.status.is_some_and(|status| status.allowed);
                answers.push((grant, allowed));
            }
            Err(error) => warn!(%error, "cannot ask the API server about a clone permission"),
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(api_resource(Kind::Deployment).api_version, "apps/v1");
        assert_eq!(api_resource(Kind::DaemonSet).plural, "daemonsets");
    }

    #[test]
    fn only_kubevirts_components_are_asked_for_by_name() {
        assert_eq!(
            field_selector(Kind::Deployment).as_deref(),
            Some("metadata.name=virt-controller")
        );
        assert_eq!(
            field_selector(Kind::DaemonSet).as_deref(),
            Some("metadata.name=virt-handler")
        );
        assert_eq!(field_selector(Kind::Secret), None);
    }
}
