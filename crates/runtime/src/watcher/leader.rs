//! Leader election on a `coordination.k8s.io` Lease, so that of several replicas only one
//! emits Events, posts to Alertmanager and exports the stuck-VM series.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Who leads.
pub enum Leadership {
    /// A single replica (or `--no-leader-election`): always the leader.
    Always,
    /// Follows a Lease; `true` while this replica holds it.
    Lease {
        receiver: watch::Receiver<bool>,
        /// The election task, which releases the Lease once every receiver is dropped (the
        /// owner's, and its followers': the policy-report writer's ends with the process's
        /// shutdown too).
        task: Option<JoinHandle<()>>,
    },
}

impl Leadership {
    /// Follows whatever `receiver` says (the election, or a test).
    pub fn following(receiver: watch::Receiver<bool>) -> Self {
        Leadership::Lease {
            receiver,
            task: None,
        }
    }

    /// Another part of the process that follows the same election (it does not hold the
    /// Lease: [`Leadership::release`] is the owner's).
    pub fn follower(&self) -> Self {
        match self {
            Leadership::Always => Leadership::Always,
            Leadership::Lease { receiver, .. } => Leadership::following(receiver.clone()),
        }
    }

    pub fn is_leader(&self) -> bool {
        match self {
            Leadership::Always => true,
            Leadership::Lease { receiver, .. } => *receiver.borrow(),
        }
    }

    /// Waits for the next change; never returns for `Always` or once the election task ends.
    pub async fn changed(&mut self) -> bool {
        match self {
            Leadership::Always => std::future::pending().await,
            Leadership::Lease { receiver, .. } => {
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                *receiver.borrow_and_update()
            }
        }
    }

    /// Leaves the election, releasing the Lease if held (bounded: a shutdown does not wait
    /// on an API server that does not answer).
    pub async fn release(self) {
        if let Leadership::Lease { receiver, task } = self {
            drop(receiver);
            if let Some(task) = task {
                let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
            }
        }
    }
}

/// How long a Lease holds without renewal, and how early it is renewed.
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;

/// Starts taking part in the election on `namespace/lease_name` as `identity`. Until the
/// Lease is reachable (RBAC, API server down) this replica is not the leader; it keeps trying.
pub fn elect(
    client: Client,
    namespace: String,
    lease_name: String,
    identity: String,
) -> Leadership {
    let (sender, receiver) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        let manager = loop {
            let built = LeaseManagerBuilder::new(client.clone(), lease_name.clone())
                .with_namespace(namespace.clone())
                .with_identity(identity.clone())
                .with_duration(LEASE_SECONDS)
                .with_grace(GRACE_SECONDS)
                .build()
                .await;
            match built {
                Ok(manager) => break manager,
                Err(err) => {
                    warn!(%err, lease = %format!("{namespace}/{lease_name}"), "cannot use the leader Lease; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        };
        let (mut lease, task) = manager.watch().await;
        loop {
            let leading = *lease.borrow_and_update();
            info!(identity = %identity, leading, "leader election");
            if sender.send(leading).is_err() {
                break;
            }
            tokio::select! {
                changed = lease.changed() => if changed.is_err() { break },
                // The watcher stopped: leave, so that kube-lease-manager releases the Lease.
                () = sender.closed() => break,
            }
        }
        drop(lease);
        let _ = task.await;
    });
    Leadership::Lease {
        receiver,
        task: Some(task),
    }
}
