//! kube's client stack (`kube::client::ClientBuilder::try_from`), layer for layer, built with
//! [`ConfigExt`] as kube's documentation shows for a custom client, for two reasons:
//!
//! - **The proxy.** kube's proxy features are off (its `NO_PROXY` reading is wrong: see
//!   [`super::proxy`]); `config.proxy_url`, chosen there as kubectl chooses it, is reached here
//!   as kube would reach it: an HTTP(S) `CONNECT` tunnel with the URL's credentials, or SOCKS5.
//! - **Secrets without a pool** ([`unpooled`]). A connection keeps what it last read in its
//!   read buffer until a later read overwrites it, and kube's client pools idle connections
//!   with no timer, so one that is idle stays open as long as the API server lets it. When the
//!   view lists Secrets page by page, the next page is sometimes asked for before the last
//!   connection is back in the pool: a second connection opens, and once the list is done one
//!   of the two sits idle, holding the tail of a page of Secrets (their values, in the
//!   last-applied annotation kubectl writes) for the life of the process (`cargo bench --bench
//!   live_view` caught 162 such copies, still there 95 s later). Without a pool, each list page
//!   (one TLS handshake per 500 Secrets, at start and at a relist) and each watch (renewed every
//!   few minutes) has a connection of its own, closed once read. Confirmations (`confirm`) stay
//!   on the pooled client: they ask for a Table row without the object, which carries no value.
//!
//! Left out of kube's stack: its `TraceLayer` (debug spans per request), and an exec plugin's
//! client-certificate expiry (`with_valid_until`, not public; nothing here rebuilds a client).

use base64::Engine;
use hyper::http::{HeaderValue, Uri};
use hyper::rt::{Read, Write};
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// A client for `config` that keeps idle connections for reuse, as kube's own does.
pub fn pooled(config: &Config) -> Result<Client, kube::Error> {
    build(config, usize::MAX)
}

/// A client for `config` whose connections are never pooled.
pub fn unpooled(config: &Config) -> Result<Client, kube::Error> {
    build(config, 0)
}

/// A client for `config` that keeps at most `idle_per_host` idle connections.
fn build(config: &Config, idle_per_host: usize) -> Result<Client, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let Some(proxy) = &config.proxy_url else {
        return with_connector(config, http, idle_per_host);
    };
    match proxy.scheme_str() {
        Some("http") => with_connector(config, tunnel(proxy, http), idle_per_host),
        Some("https") => {
            let to_proxy = config.rustls_https_connector_with_connector(http)?;
            with_connector(config, tunnel(proxy, to_proxy), idle_per_host)
        }
        Some("socks5") => with_connector(config, socks(proxy, http), idle_per_host),
        _ => Err(kube::Error::ProxyProtocolUnsupported {
            proxy_url: Box::new(proxy.clone()),
        }),
    }
}

/// A CONNECT tunnel through `proxy`, with the credentials its URL carries.
fn tunnel<C>(proxy: &Uri, connector: C) -> Tunnel<C> {
    let tunnel = Tunnel::new(proxy.clone(), connector);
    match userinfo(proxy).and_then(basic_auth) {
        Some(header) => tunnel.with_auth(header),
        None => tunnel,
    }
}

/// A SOCKS5 proxy, with the credentials its URL carries (kubectl sends them; kube does not)
/// and, when it names no port, SOCKS's own (1080; hyper's connector would dial 80).
fn socks<C>(proxy: &Uri, connector: C) -> SocksV5<C> {
    let socks = SocksV5::new(with_default_port(proxy, 1080), connector);
    match userinfo(proxy) {
        Some(userinfo) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            socks.with_auth(decode(user), decode(pass))
        }
        None => socks,
    }
}

/// `user:password` of a URL, as written (percent-encoded).
fn userinfo(url: &Uri) -> Option<&str> {
    let (userinfo, _) = url.authority()?.as_str().split_once('@')?;
    Some(userinfo)
}

/// `url` with `port` when it names none.
fn with_default_port(url: &Uri, port: u16) -> Uri {
    let Some(authority) = url.authority().filter(|a| a.port().is_none()) else {
        return url.clone();
    };
    let mut parts = url.clone().into_parts();
    parts.authority = format!("{authority}:{port}").parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| url.clone())
}

/// `Basic` credentials from a URL's userinfo, percent-decoded first (`http::Uri` keeps the
/// escapes a password with `@` or `:` needs, and a proxy would refuse them as written).
fn basic_auth(userinfo: &str) -> Option<HeaderValue> {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(userinfo).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(decoded);
    HeaderValue::from_str(&format!("Basic {encoded}")).ok()
}

/// kube's stack over `connector` (TLS to the API server, kube's timeouts).
fn with_connector<C>(
    config: &Config,
    connector: C,
    idle_per_host: usize,
) -> Result<Client, kube::Error>
where
    C: tower::Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Connection + Read + Write + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    let https = config.rustls_https_connector_with_connector(connector)?;
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle_per_host)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_are_decoded_before_they_are_encoded() {
        let header = basic_auth("user:pa%40ss%3Aword").expect("a header");
        let expected = base64::engine::general_purpose::STANDARD.encode("user:pa@ss:word");
        assert_eq!(header.to_str().unwrap(), format!("Basic {expected}"));
    }

    #[test]
    fn a_socks_proxy_without_a_port_is_dialled_on_1080() {
        let url = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            with_default_port(&url("socks5://u:p@gw"), 1080),
            url("socks5://u:p@gw:1080")
        );
        assert_eq!(
            with_default_port(&url("socks5://gw:9050"), 1080),
            url("socks5://gw:9050")
        );
    }

    #[test]
    fn an_unknown_proxy_scheme_is_refused_with_its_url() {
        let mut config = Config::new("https://127.0.0.1:6443".parse().unwrap());
        config.proxy_url = Some("ftp://proxy.example:21".parse().unwrap());
        let error = pooled(&config).err().expect("refused");
        assert!(
            error.to_string().contains("ftp://proxy.example:21"),
            "{error}"
        );
    }
}
