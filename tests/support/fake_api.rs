//! A loopback stand-in for the Kubernetes API server: serves lists (full or
//! PartialObjectMetadata, as the Accept header asks; a `metadata.name` field selector filters
//! them), newline-delimited watch streams fed by the test, and 404 for kinds whose CRD is "not
//! installed". It records every request, with its method and JSON body; a POST, PUT or PATCH (an Event, say) is answered by echoing the
//! body back, as the API server answers a create with the stored object.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// One request the fake saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub accept: String,
    /// The request body, if it was JSON.
    pub body: Option<Value>,
    /// The client's end of the connection that carried it.
    pub peer: SocketAddr,
}

#[derive(Clone)]
struct Shared {
    objects: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    missing: Arc<HashSet<String>>,
    events: broadcast::Sender<(String, Value)>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct FakeApi {
    pub url: String,
    shared: Shared,
}

const METADATA_AS: &str = "as=PartialObjectMetadata";

fn metadata_only(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"].clone(),
    })
}

impl FakeApi {
    /// Serves `objects` (by collection path, e.g. `/api/v1/secrets`); `missing` paths get 404.
    pub async fn start(objects: Vec<(&str, Vec<Value>)>, missing: &[&str]) -> FakeApi {
        let (events, _) = broadcast::channel(4096);
        let shared = Shared {
            objects: Arc::new(Mutex::new(
                objects
                    .into_iter()
                    .map(|(path, items)| (path.to_string(), items))
                    .collect(),
            )),
            missing: Arc::new(missing.iter().map(|p| p.to_string()).collect()),
            events,
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        FakeApi { url, shared }
    }

    /// A kubeconfig file in `dir` that points at this server, for the binary's `--kubeconfig`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: t\n",
            self.url
        );
        std::fs::write(&path, config).unwrap();
        path
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) to watchers of `path`, and keeps
    /// the collection in step for later lists.
    pub fn send(&self, path: &str, event: &str, object: Value) {
        {
            let mut objects = self.shared.objects.lock().unwrap();
            let items = objects.entry(path.to_string()).or_default();
            let name = object["metadata"]["name"].clone();
            items.retain(|o| o["metadata"]["name"] != name);
            if event != "DELETED" {
                items.push(object.clone());
            }
        }
        let _ = self
            .shared
            .events
            .send((path.to_string(), json!({"type": event, "object": object})));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The requests with this method (`POST`, ...) whose path ends with `suffix`.
    pub fn seen_with(&self, method: &str, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path.ends_with(suffix))
            .collect()
    }

    /// Number of watch connections currently open on `path`.
    pub fn watchers(&self) -> usize {
        self.shared.events.receiver_count()
    }
}

/// Largest request body the fake reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

async fn handle(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(bytes) if !bytes.is_empty() => serde_json::from_slice::<Value>(&bytes).ok(),
        _ => None,
    };
    shared.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        accept: accept.clone(),
        body: body.clone(),
        peer,
    });
    if method != axum::http::Method::GET {
        // A create answers 201 with the object, an update or patch 200; the fake stores none.
        let status = if method == axum::http::Method::POST {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return (status, axum::Json(body.unwrap_or_else(|| json!({})))).into_response();
    }
    let metadata = accept.contains(METADATA_AS);
    if shared.missing.contains(&path) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404});
        return (StatusCode::NOT_FOUND, axum::Json(status)).into_response();
    }
    if query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1")
    {
        let stream = BroadcastStream::new(shared.events.subscribe()).filter_map(move |event| {
            let path = path.clone();
            async move {
                let (event_path, mut event) = event.ok()?;
                if event_path != path {
                    return None;
                }
                if metadata {
                    event["object"] = metadata_only(&event["object"]);
                }
                let mut line = serde_json::to_vec(&event).ok()?;
                line.push(b'\n');
                Some(Ok::<_, Infallible>(Bytes::from(line)))
            }
        });
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    if let Some((collection, namespace, name)) = single_object(&path) {
        let found = shared
            .objects
            .lock()
            .unwrap()
            .get(&collection)
            .and_then(|items| {
                items
                    .iter()
                    .find(|o| {
                        o["metadata"]["name"] == name && o["metadata"]["namespace"] == namespace
                    })
                    .cloned()
            });
        return match found {
            Some(object) if metadata => axum::Json(metadata_only(&object)).into_response(),
            Some(object) => axum::Json(object).into_response(),
            None => {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": format!("{name} not found"), "reason": "NotFound", "code": 404});
                (StatusCode::NOT_FOUND, axum::Json(status)).into_response()
            }
        };
    }
    // A namespaced list is the cluster-wide one, filtered; pages as the API server does:
    // `limit` items from the `continue` offset.
    let (collection, namespace) = namespaced_collection(&path)
        .map_or((path.clone(), None), |(collection, ns)| {
            (collection, Some(ns))
        });
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<usize>().ok())
    };
    // `fieldSelector=metadata.name=NAME`, the one field selector the process sends.
    let only_name: Option<String> = query
        .split('&')
        .find_map(|p| p.strip_prefix("fieldSelector="))
        .map(|v| v.replace("%3D", "=").replace("%3d", "="))
        .and_then(|v| v.strip_prefix("metadata.name=").map(str::to_string));
    let offset = param("continue").unwrap_or(0);
    let (items, next) = {
        let objects = shared.objects.lock().unwrap();
        let all: Vec<&Value> = objects
            .get(&collection)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|o| {
                namespace
                    .as_ref()
                    .is_none_or(|ns| o["metadata"]["namespace"] == **ns)
                    && only_name
                        .as_ref()
                        .is_none_or(|name| o["metadata"]["name"] == **name)
            })
            .collect();
        let end = param("limit").map_or(all.len(), |limit| (offset + limit).min(all.len()));
        let items: Vec<Value> = all
            .get(offset..end)
            .unwrap_or_default()
            .iter()
            .map(|o| {
                if metadata {
                    metadata_only(o)
                } else {
                    (*o).clone()
                }
            })
            .collect();
        (items, (end < all.len()).then(|| end.to_string()))
    };
    let (api_version, kind) = if metadata {
        ("meta.k8s.io/v1", "PartialObjectMetadataList")
    } else {
        ("v1", "List")
    };
    let mut list_meta = json!({"resourceVersion": "1"});
    if let Some(next) = next {
        list_meta["continue"] = json!(next);
    }
    axum::Json(json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": list_meta,
        "items": items,
    }))
    .into_response()
}

/// `/apis/G/V/namespaces/NS/PLURAL`: the cluster-wide collection path and the namespace.
fn namespaced_collection(path: &str) -> Option<(String, String)> {
    let (prefix, rest) = path.split_once("/namespaces/")?;
    let (namespace, plural) = rest.split_once('/')?;
    (!plural.contains('/')).then(|| (format!("{prefix}/{plural}"), namespace.to_string()))
}

/// `/apis/G/V/namespaces/NS/PLURAL/NAME` (or `/api/v1/...`): the cluster-wide collection path
/// the objects are stored under, the namespace and the name.
fn single_object(path: &str) -> Option<(String, String, String)> {
    let (prefix, rest) = path.split_once("/namespaces/")?;
    let mut parts = rest.split('/');
    let (namespace, plural, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        format!("{prefix}/{plural}"),
        namespace.to_string(),
        name.to_string(),
    ))
}
