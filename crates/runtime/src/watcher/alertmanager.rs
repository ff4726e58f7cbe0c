//! Alerts to Alertmanager's v2 API (`POST /api/v2/alerts`), the way Prometheus sends them:
//! each firing alert carries an `endsAt` a few resend intervals ahead and is sent again before
//! then while it lasts; a resolved one is sent once more with `endsAt` = now.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tracing::{debug, warn};

use crate::metrics::{Metrics, ResultLabels};
use crate::outbox::Outbox;

/// One alert as `postableAlert` of the v2 API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

impl Alert {
    /// The same alert, firing until `now + lifetime` unless sent again.
    pub fn firing(&self, now: Timestamp, lifetime: Duration) -> Alert {
        let lifetime = SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::from_hours(1));
        Alert {
            ends_at: now.saturating_add(lifetime).unwrap_or(now),
            ..self.clone()
        }
    }

    /// The same alert, resolved now.
    pub fn resolved(&self, now: Timestamp) -> Alert {
        Alert {
            ends_at: now.max(self.starts_at),
            ..self.clone()
        }
    }
}

/// Why a POST failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("invalid Alertmanager URL {0:?}")]
    Url(String),
    #[error("cannot reach Alertmanager: {0}")]
    Connect(String),
    #[error("Alertmanager answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("no answer from Alertmanager within {0:?}")]
    Timeout(Duration),
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for one Alertmanager (`http://` or `https://`, verified against the system roots).
#[derive(Clone)]
pub struct Alertmanager {
    endpoint: hyper::Uri,
    client: HttpsClient,
    timeout: Duration,
}

impl Alertmanager {
    /// `base` is Alertmanager's root, e.g. `http://alertmanager-operated.monitoring:9093`.
    pub fn new(base: &str) -> Result<Self, PostError> {
        let trimmed = base.trim_end_matches('/');
        let endpoint: hyper::Uri = format!("{trimmed}/api/v2/alerts")
            .parse()
            .map_err(|_| PostError::Url(base.to_string()))?;
        if !matches!(endpoint.scheme_str(), Some("http" | "https")) || endpoint.host().is_none() {
            return Err(PostError::Url(base.to_string()));
        }
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match builder.with_native_roots() {
            Ok(builder) => builder.https_or_http().enable_http1().build(),
            Err(err) => {
                // No system roots: plain http still works, https will fail to verify.
                warn!(%err, "no system CA roots for Alertmanager over https");
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    )
                    .https_or_http()
                    .enable_http1()
                    .build()
            }
        };
        Ok(Alertmanager {
            endpoint,
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout: Duration::from_secs(10),
        })
    }

    pub fn endpoint(&self) -> &hyper::Uri {
        &self.endpoint
    }

    /// Posts alerts in one request.
    pub async fn post(&self, alerts: &[Alert]) -> Result<(), PostError> {
        let body = serde_json::to_vec(alerts).unwrap_or_else(|_| b"[]".to_vec());
        let request = hyper::Request::post(self.endpoint.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PostError::Connect(e.to_string()))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| PostError::Timeout(self.timeout))?
            .map_err(|e| PostError::Connect(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(PostError::Status {
            status: status.as_u16(),
            body: crate::rules::finding::one_line(&body, 200),
        })
    }
}

/// Batches waiting to be posted; more are dropped (the next resend carries the firing ones).
const QUEUE_CAPACITY: usize = 64;

/// The sending side of the posting task: never waits on Alertmanager; a full queue drops and
/// counts the batch (`virt_preflight_alertmanager_posts_total{result="dropped"}`).
pub type AlertQueue = Outbox<Vec<Alert>>;

fn count(metrics: &Metrics, result: &str) {
    metrics
        .watcher
        .alertmanager_posts
        .get_or_create(&ResultLabels {
            result: result.to_string(),
        })
        .inc();
}

/// Starts the task that posts queued batches.
pub fn start(alertmanager: Alertmanager, metrics: Arc<Metrics>) -> AlertQueue {
    let dropped = metrics
        .watcher
        .alertmanager_posts
        .get_or_create(&ResultLabels {
            result: "dropped".to_string(),
        })
        .clone();
    let (queue, mut receiver) = Outbox::<Vec<Alert>>::new(QUEUE_CAPACITY, dropped);
    let worker_metrics = metrics.clone();
    tokio::spawn(async move {
        while let Some(alerts) = receiver.recv().await {
            match alertmanager.post(&alerts).await {
                Ok(()) => {
                    debug!(count = alerts.len(), "alerts posted to Alertmanager");
                    count(&worker_metrics, "ok");
                }
                Err(err) => {
                    warn!(%err, endpoint = %alertmanager.endpoint(), "cannot post alerts");
                    count(&worker_metrics, "error");
                }
            }
        }
    });
    queue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_serialize_as_the_v2_api_reads_them() {
        let alert = Alert {
            labels: BTreeMap::from([("alertname".to_string(), "X".to_string())]),
            annotations: BTreeMap::new(),
            starts_at: "2026-11-25T10:00:00Z".parse().unwrap(),
            ends_at: "2026-11-25T10:04:00Z".parse().unwrap(),
        };
        let json = serde_json::to_value(&alert).unwrap();
        assert_eq!(json["startsAt"], "2026-11-25T10:00:00Z");
        assert_eq!(json["endsAt"], "2026-11-25T10:04:00Z");
        let now: Timestamp = "2026-11-25T10:01:00Z".parse().unwrap();
        assert_eq!(
            alert.firing(now, Duration::from_secs(240)).ends_at,
            "2026-11-25T10:05:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(alert.resolved(now).ends_at, now);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Alertmanager::new("not a url").is_err());
        assert!(Alertmanager::new("ftp://am:9093").is_err());
        let am = Alertmanager::new("http://am.monitoring:9093/").unwrap();
        assert_eq!(
            am.endpoint().to_string(),
            "http://am.monitoring:9093/api/v2/alerts"
        );
    }
}
