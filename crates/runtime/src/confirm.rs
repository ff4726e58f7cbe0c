//! Asking the API server before a denial: the cluster view lags it by a watch event, and a
//! Secret and the VM that names it often arrive in the same `kubectl apply`, Helm release or
//! Argo CD sync. A finding about a missing object denies only once the API server says the
//! object is not there.
//!
//! Every object of one review is asked for at once, under one budget, as a Table row without
//! the object (`includeObject=None`): the answer is thrown away but for its existence, and it
//! carries no annotation or data, so a Secret applied with its VM leaves none of its values in
//! a pooled connection's buffer (even the metadata-only form carries them, in kubectl's
//! last-applied annotation). What is not answered in time, or answered with an error, is
//! unanswered: the finding then warns instead of denying.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hyper::header::{ACCEPT, HeaderValue};
use kube::Client;
use kube::api::{DynamicObject, GetParams};
use kube::core::{Request, Resource};

use crate::cluster::ObjectKey;
use crate::cluster::live::api_resource;
use crate::metrics::ConfirmationResult;

/// What a confirmation asks for: a Table, whose rows name objects and their printed columns.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// What the API server said of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    Present,
    Absent,
    /// No answer within the budget, or an error (RBAC, the server unreachable): why.
    Unanswered(String),
}

impl From<&Confirmation> for ConfirmationResult {
    fn from(answer: &Confirmation) -> Self {
        match answer {
            Confirmation::Present => ConfirmationResult::Present,
            Confirmation::Absent => ConfirmationResult::Absent,
            Confirmation::Unanswered(_) => ConfirmationResult::Unanswered,
        }
    }
}

/// Asks the API server whether objects exist.
#[derive(Clone)]
pub struct Confirmer {
    client: Client,
    budget: Duration,
}

impl Confirmer {
    pub fn new(client: Client, budget: Duration) -> Self {
        Confirmer { client, budget }
    }

    /// Asks for every key at once; returns an answer for each, within the budget.
    pub async fn confirm(
        &self,
        keys: impl IntoIterator<Item = ObjectKey>,
    ) -> BTreeMap<ObjectKey, Confirmation> {
        let mut answers: BTreeMap<ObjectKey, Confirmation> = keys
            .into_iter()
            .map(|key| (key, Confirmation::Unanswered("no answer in time".into())))
            .collect();
        let mut pending: FuturesUnordered<_> = answers
            .keys()
            .cloned()
            .map(|key| {
                let client = self.client.clone();
                async move {
                    let answer = ask(client, &key).await;
                    (key, answer)
                }
            })
            .collect();
        let deadline = tokio::time::Instant::now() + self.budget;
        while let Ok(Some((key, answer))) = tokio::time::timeout_at(deadline, pending.next()).await
        {
            answers.insert(key, answer);
        }
        answers
    }
}

async fn ask(client: Client, key: &ObjectKey) -> Confirmation {
    let request = match table_request(key) {
        Ok(request) => request,
        Err(why) => return Confirmation::Unanswered(why),
    };
    match client.request_text(request).await {
        Ok(_) => Confirmation::Present,
        Err(kube::Error::Api(status)) if status.code == 404 => Confirmation::Absent,
        Err(kube::Error::Api(status)) => {
            Confirmation::Unanswered(format!("{} {}", status.code, status.reason))
        }
        Err(err) => Confirmation::Unanswered(err.to_string()),
    }
}

/// `GET …/NAME?includeObject=None`, asking for a Table; why not, for a name kube refuses.
fn table_request(key: &ObjectKey) -> Result<hyper::Request<Vec<u8>>, String> {
    let resource = api_resource(key.kind);
    let namespace = key.kind.is_namespaced().then_some(key.namespace.as_str());
    let path = DynamicObject::url_path(&resource, namespace);
    let (mut parts, body) = Request::new(path)
        .get(&key.name, &GetParams::default())
        .map_err(|e| e.to_string())?
        .into_parts();
    let uri = parts.uri.to_string();
    let separator = if uri.contains('?') { '&' } else { '?' };
    parts.uri = format!("{uri}{separator}includeObject=None")
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
    parts
        .headers
        .insert(ACCEPT, HeaderValue::from_static(TABLE));
    Ok(hyper::Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Kind;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    use serde_json::json;

    /// An API server that knows one Secret, forbids ConfigMaps and never answers for
    /// ServiceAccounts.
    async fn api_server() -> Client {
        async fn answer(uri: Uri, headers: HeaderMap) -> axum::response::Response {
            let path = uri.path();
            let status = |code: StatusCode, reason: &str| {
                let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": reason, "code": code.as_u16(), "message": reason});
                (code, axum::Json(body)).into_response()
            };
            let table = headers.get(ACCEPT).is_some_and(|accept| accept == TABLE)
                && uri.query() == Some("includeObject=None");
            if !table {
                // Only a Table without the object is answered: anything else could carry a
                // Secret's values.
                status(StatusCode::NOT_ACCEPTABLE, "NotAcceptable")
            } else if path == "/api/v1/namespaces/ns/secrets/db" {
                axum::Json(json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table",
                    "columnDefinitions": [{"name": "Name", "type": "string"}],
                    "rows": [{"cells": ["db"], "object": null}]}))
                .into_response()
            } else if path.contains("/configmaps/") {
                status(StatusCode::FORBIDDEN, "Forbidden")
            } else if path.contains("/serviceaccounts/") {
                tokio::time::sleep(Duration::from_secs(30)).await;
                status(StatusCode::OK, "late")
            } else {
                status(StatusCode::NOT_FOUND, "NotFound")
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, Router::new().fallback(answer)).await });
        Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
    }

    #[tokio::test]
    async fn every_object_is_asked_for_at_once_and_the_budget_bounds_the_wait() {
        let confirmer = Confirmer::new(api_server().await, Duration::from_millis(300));
        let keys = [
            ObjectKey::new(Kind::Secret, "ns", "db"),
            ObjectKey::new(Kind::Secret, "ns", "gone"),
            ObjectKey::new(Kind::ConfigMap, "ns", "cfg"),
            ObjectKey::new(Kind::ServiceAccount, "ns", "slow"),
            ObjectKey::new(Kind::PriorityClass, "ns", "high"),
        ];
        let started = std::time::Instant::now();
        let answers = confirmer.confirm(keys.clone()).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "waited {took:?}");
        assert!(
            took >= Duration::from_millis(300),
            "the slow one was waited for"
        );
        assert_eq!(answers[&keys[0]], Confirmation::Present);
        assert_eq!(answers[&keys[1]], Confirmation::Absent);
        assert!(
            matches!(&answers[&keys[2]], Confirmation::Unanswered(why) if why.starts_with("403")),
            "{:?}",
            answers[&keys[2]]
        );
        assert!(matches!(answers[&keys[3]], Confirmation::Unanswered(_)));
        // Cluster-scoped: asked without a namespace.
        assert_eq!(answers[&keys[4]], Confirmation::Absent);
    }
}
