//! Kubernetes Events about VMs, emitted off the request path through a bounded queue: the
//! webhook never waits on the API server, and when the queue is full an Event is dropped and
//! counted rather than slowing admission down.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tracing::warn;

use crate::metrics::Metrics;
use crate::outbox::Outbox;

/// A Warning Event to emit about a VirtualMachine: from the webhook (findings it warned about
/// or audited) or from the watcher (a stuck VM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRequest {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub reason: String,
    /// What was done or is failing: `Validate` for the webhook, `Diagnose` for a stuck VM.
    pub action: String,
    pub note: String,
}

/// Events waiting to be sent; more are dropped.
pub const QUEUE_CAPACITY: usize = 1024;

/// The sending side: [`Outbox::offer`] never waits, on the request path; a full queue drops
/// and counts the Event (`virt_preflight_events_dropped_total`).
pub type EventQueue = Outbox<EventRequest>;

/// A queue counting its drops in `metrics`, and its receiving end (what [`start`] drains into
/// the API; tests read it).
pub fn queue(metrics: &Metrics, capacity: usize) -> (EventQueue, mpsc::Receiver<EventRequest>) {
    Outbox::new(capacity, metrics.events.dropped.clone())
}

/// Starts the task that publishes queued Events as `reporter`.
pub fn start(client: Client, reporter: &str, metrics: Arc<Metrics>, capacity: usize) -> EventQueue {
    let (queue, mut receiver) = queue(&metrics, capacity);
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: reporter.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let worker_metrics = metrics.clone();
    tokio::spawn(async move {
        while let Some(request) = receiver.recv().await {
            let reference = ObjectReference {
                api_version: Some("kubevirt.io/v1".into()),
                kind: Some("VirtualMachine".into()),
                namespace: Some(request.namespace.clone()),
                name: Some(request.name.clone()),
                uid: request.uid.clone(),
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: request.reason.clone(),
                note: Some(request.note.clone()),
                action: request.action.clone(),
                secondary: None,
            };
            match recorder.publish(&event, &reference).await {
                Ok(()) => {
                    worker_metrics.events.sent.inc();
                }
                Err(err) => {
                    worker_metrics.events.dropped.inc();
                    warn!(namespace = %request.namespace, name = %request.name, %err, "could not emit Event");
                }
            };
        }
    });
    queue
}
