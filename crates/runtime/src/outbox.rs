//! A bounded queue that never waits: what the request path and the watcher's loop hand to a
//! background task (Events to the API server, alerts to Alertmanager). When the task falls
//! behind, what does not fit is dropped and counted, never waited for.

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// The sending side: `try_send`, never `send().await`.
#[derive(Debug, Clone)]
pub struct Outbox<T> {
    sender: mpsc::Sender<T>,
    dropped: Counter,
}

impl<T> Outbox<T> {
    /// An outbox of `capacity` items that counts what it drops in `dropped`, and the
    /// receiving end its task drains.
    pub fn new(capacity: usize, dropped: Counter) -> (Self, mpsc::Receiver<T>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Outbox { sender, dropped }, receiver)
    }

    /// Queues `item`; drops and counts it if the queue is full (or its task is gone).
    pub fn offer(&self, item: T) {
        if self.sender.try_send(item).is_err() {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_does_not_fit_is_dropped_and_counted() {
        let dropped = Counter::default();
        let (outbox, mut receiver) = Outbox::new(1, dropped.clone());
        outbox.offer(1);
        outbox.offer(2);
        assert_eq!(dropped.get(), 1);
        assert_eq!(receiver.try_recv().ok(), Some(1));
        assert!(receiver.try_recv().is_err());
    }
}
