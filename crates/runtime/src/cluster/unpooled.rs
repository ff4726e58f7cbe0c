//! A kube client that keeps no connection idle: each connection is closed once its response
//! has been read.
//!
//! Why: a connection keeps what it last read in its read buffer until a later read overwrites
//! it, and kube's client pools idle connections with no timer, so one that is idle stays open
//! as long as the API server lets it. When the view lists Secrets page by page, the next page
//! is sometimes asked for before the last connection is back in the pool: a second connection
//! opens, and once the list is done one of the two sits idle, holding the tail of a page of
//! Secrets (their values, in the last-applied annotation kubectl writes) for the life of the
//! process (`cargo bench --bench live_view` caught 162 such copies, still there 95 s later).
//!
//! The stack is kube's own (`kube::client::ClientBuilder::try_from`), layer for layer, built
//! with [`ConfigExt`] as kube's documentation shows for a custom client; only the pool differs.
//! Left out of kube's stack: its `TraceLayer` (debug spans per request), and an exec plugin's
//! client-certificate expiry (`with_valid_until`, not public). A configuration with a proxy is
//! handed to kube's own client, which refuses it in this build (kube's proxy features are off)
//! rather than being connected to directly.
//!
//! Only the view's Secrets go through it: a connection per list page (one TLS handshake per
//! 500 Secrets, at start and at a relist) and per watch (renewed every few minutes).
//! Confirmations (`confirm`) stay on the pooled client: they ask for a Table row without the
//! object, which carries no value.

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// A client for `config` whose connections are never pooled.
pub fn client(config: &Config) -> Result<Client, kube::Error> {
    if config.proxy_url.is_some() {
        return Client::try_from(config.clone());
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace.clone()))
}
