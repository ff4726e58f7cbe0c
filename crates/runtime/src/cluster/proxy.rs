//! Which proxy, if any, carries the requests to the API server: decided as kubectl (client-go)
//! decides it, so that `virt-preflight --kubeconfig` reaches a cluster wherever `kubectl` does.
//!
//! - A kubeconfig cluster's `proxy-url` is used for every request, whatever `NO_PROXY` says
//!   (client-go's `http.ProxyURL`).
//! - Otherwise `HTTPS_PROXY` (`HTTP_PROXY` for an `http://` server), unless `NO_PROXY` names
//!   the API server or the server is `localhost` or a loopback address, as Go's
//!   `httpproxy.FromEnvironment` reads them. A value with no scheme is `http://`. One that is
//!   not a URL stops the command with an error naming the variable (Go would quietly connect
//!   directly; kube's own loader refuses it too). An `http://` server is reached through a
//!   `CONNECT` tunnel, where Go would forward its requests.
//!
//! kube-rs reads these too, but matches `NO_PROXY` against the proxy's own address, fails on an
//! empty entry (`a,b,`) and never ignores a loopback server; so kube's proxy features stay off
//! and the clients are built on this choice (`cluster::client`). hyper-util's `Matcher` reads
//! them as curl does (`ALL_PROXY`, no ports, no loopback rule, a bad URL silently dropped, the
//! credentials taken out of the URL that `kube::Config` carries): not what kubectl users expect.

use std::net::IpAddr;

use ipnet::IpNet;
use kube::config::Kubeconfig;
use thiserror::Error;

use hyper::http::Uri;

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("{source_name}: {value:?} is not a proxy URL: {error}")]
    Url {
        source_name: &'static str,
        value: String,
        error: hyper::http::uri::InvalidUri,
    },
}

/// The proxy settings a process was given: a kubeconfig's `proxy-url` and the environment.
#[derive(Debug, Default, Clone)]
pub struct ProxySettings {
    /// The `proxy-url` of the kubeconfig's cluster in use.
    pub kubeconfig: Option<String>,
    pub https_proxy: Option<String>,
    pub http_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxySettings {
    /// The environment's settings (upper case first, as Go reads them), and `kubeconfig`.
    pub fn from_env(kubeconfig: Option<String>) -> ProxySettings {
        let var = |upper: &str, lower: &str| {
            [upper, lower]
                .into_iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        };
        ProxySettings {
            kubeconfig: kubeconfig.filter(|v| !v.is_empty()),
            https_proxy: var("HTTPS_PROXY", "https_proxy"),
            http_proxy: var("HTTP_PROXY", "http_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }

    /// The proxy for requests to `server`, or `None` to connect directly.
    pub fn proxy_for(&self, server: &Uri) -> Result<Option<Uri>, ProxyError> {
        if let Some(url) = &self.kubeconfig {
            return parse("the kubeconfig's proxy-url", url).map(Some);
        }
        let (source_name, value) = match server.scheme_str() {
            Some("http") => ("HTTP_PROXY", &self.http_proxy),
            _ => ("HTTPS_PROXY", &self.https_proxy),
        };
        let Some(value) = value else {
            return Ok(None);
        };
        let no_proxy = NoProxy::parse(self.no_proxy.as_deref().unwrap_or_default());
        if no_proxy.bypasses(server) {
            return Ok(None);
        }
        parse(source_name, value).map(Some)
    }
}

/// The `proxy-url` of the cluster that `context` (or the current context) of `kubeconfig` uses.
pub fn kubeconfig_proxy_url(kubeconfig: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let context = context.or(kubeconfig.current_context.as_deref())?;
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|named| named.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    kubeconfig
        .clusters
        .iter()
        .find(|named| named.name == cluster)?
        .cluster
        .as_ref()?
        .proxy_url
        .clone()
}

/// A proxy URL; one with no scheme is `http://`, as Go reads it.
fn parse(source_name: &'static str, value: &str) -> Result<Uri, ProxyError> {
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    with_scheme.parse().map_err(|error| ProxyError::Url {
        source_name,
        value: value.to_string(),
        error,
    })
}

/// `NO_PROXY`, read as Go's `httpproxy` reads it: comma-separated entries, each `*`, an IP
/// address or CIDR, or a domain (`corp.example`, `.corp.example` or `*.corp.example`, matching
/// the domain and its subdomains; a leading dot, only subdomains), with an optional `:port`.
/// An entry that is none of these is ignored, as Go ignores it.
#[derive(Debug, Default, PartialEq)]
struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, PartialEq)]
enum Entry {
    Net(IpNet),
    Ip {
        ip: IpAddr,
        port: Option<u16>,
    },
    /// `suffix` starts with a dot; `exact` also matches the domain itself.
    Domain {
        suffix: String,
        exact: bool,
        port: Option<u16>,
    },
}

impl NoProxy {
    fn parse(value: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for entry in value.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
                continue;
            }
            if let Ok(net) = entry.parse::<IpNet>() {
                no_proxy.entries.push(Entry::Net(net));
                continue;
            }
            let (host, port) = split_port(&entry);
            if let Ok(ip) = host.parse::<IpAddr>() {
                no_proxy.entries.push(Entry::Ip { ip, port });
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            if host.is_empty() || host == "." {
                continue;
            }
            let entry = match host.strip_prefix('.') {
                Some(_) => Entry::Domain {
                    suffix: host.to_string(),
                    exact: false,
                    port,
                },
                None => Entry::Domain {
                    suffix: format!(".{host}"),
                    exact: true,
                    port,
                },
            };
            no_proxy.entries.push(entry);
        }
        no_proxy
    }

    /// Whether requests to `server` go direct: `localhost` and loopback addresses always do.
    fn bypasses(&self, server: &Uri) -> bool {
        let Some(host) = server.host() else {
            return true;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        if self.all {
            return true;
        }
        let port = server.port_u16().or(match server.scheme_str() {
            Some("http") => Some(80),
            _ => Some(443),
        });
        let port_matches = |wanted: &Option<u16>| wanted.is_none() || *wanted == port;
        self.entries.iter().any(|entry| match entry {
            Entry::Net(net) => ip.is_some_and(|ip| net.contains(&ip)),
            Entry::Ip {
                ip: wanted,
                port: p,
            } => ip == Some(*wanted) && port_matches(p),
            Entry::Domain {
                suffix,
                exact,
                port: p,
            } => {
                let matches = host.ends_with(suffix.as_str()) || (*exact && host == suffix[1..]);
                matches && port_matches(p)
            }
        })
    }
}

/// `host:port` into its parts (`[::1]:8443` too); a port that is not a number is kept in the
/// host, which then matches nothing.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => (entry, None),
        Some((host, port)) => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        None => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn bypasses(no_proxy: &str, server: &str) -> bool {
        NoProxy::parse(no_proxy).bypasses(&uri(server))
    }

    #[test]
    fn domains_match_themselves_and_their_subdomains() {
        let server = "https://api.corp.example:6443";
        for entry in [
            "corp.example",
            ".corp.example",
            "*.corp.example",
            "api.corp.example",
        ] {
            assert!(bypasses(entry, server), "{entry}");
        }
        for entry in ["other.example", "rp.example", "api.corp.example.org"] {
            assert!(!bypasses(entry, server), "{entry}");
        }
        // A leading dot: subdomains only.
        assert!(!bypasses(".corp.example", "https://corp.example"));
        assert!(bypasses("corp.example", "https://corp.example"));
        assert!(bypasses("CORP.example", "https://Api.Corp.Example"));
    }

    #[test]
    fn a_port_in_an_entry_must_match_the_servers() {
        assert!(bypasses(
            "corp.example:6443",
            "https://api.corp.example:6443"
        ));
        assert!(!bypasses(
            "corp.example:443",
            "https://api.corp.example:6443"
        ));
        // No port in the URL: the scheme's.
        assert!(bypasses("corp.example:443", "https://api.corp.example"));
        assert!(bypasses("10.0.0.1:6443", "https://10.0.0.1:6443"));
        assert!(!bypasses("10.0.0.1:443", "https://10.0.0.1:6443"));
    }

    #[test]
    fn addresses_and_networks_match_addresses_only() {
        assert!(bypasses("10.0.0.0/8", "https://10.96.0.1"));
        assert!(!bypasses("10.0.0.0/8", "https://192.168.1.1"));
        assert!(bypasses("fd00::/8", "https://[fd00::1]:6443"));
        assert!(bypasses("[fd00::1]:6443", "https://[fd00::1]:6443"));
        assert!(bypasses("fd00::1", "https://[fd00::1]:6443"));
        assert!(bypasses("192.168.1.1", "https://192.168.1.1:6443"));
        // A network never matches a name, a name never matches an address.
        assert!(!bypasses("10.0.0.0/8", "https://api.corp.example"));
        assert!(!bypasses("10.0.0.1", "https://api.corp.example"));
    }

    #[test]
    fn loopback_and_localhost_always_go_direct() {
        for server in [
            "https://127.0.0.1:6443",
            "https://localhost:6443",
            "https://[::1]:6443",
        ] {
            assert!(bypasses("", server), "{server}");
        }
        assert!(!bypasses("", "https://api.corp.example"));
    }

    #[test]
    fn a_star_bypasses_everything_and_junk_is_ignored() {
        assert!(bypasses("*", "https://api.corp.example"));
        // Empty entries, spaces, a bare dot or star inside a list: ignored, the rest still read.
        let messy = " localhost, ,.,*.,10.0.0.0/33,corp.example ,";
        assert!(bypasses(messy, "https://api.corp.example"));
        assert!(!bypasses(messy, "https://api.other.example"));
    }

    fn settings(kubeconfig: Option<&str>, https: Option<&str>, no_proxy: &str) -> ProxySettings {
        ProxySettings {
            kubeconfig: kubeconfig.map(str::to_string),
            https_proxy: https.map(str::to_string),
            http_proxy: Some("http://plain-proxy:3128".into()),
            no_proxy: Some(no_proxy.to_string()),
        }
    }

    #[test]
    fn the_kubeconfig_proxy_wins_and_ignores_no_proxy() {
        let server = uri("https://127.0.0.1:6443");
        let chosen = settings(Some("socks5://gw:1080"), Some("http://env:3128"), "*")
            .proxy_for(&server)
            .unwrap();
        assert_eq!(chosen, Some(uri("socks5://gw:1080")));
    }

    #[test]
    fn the_environment_proxy_is_per_scheme_and_no_proxy_applies() {
        let server = uri("https://api.corp.example:6443");
        let https = settings(None, Some("proxy.corp.example:3128"), "");
        assert_eq!(
            https.proxy_for(&server).unwrap(),
            Some(uri("http://proxy.corp.example:3128")),
            "no scheme: http"
        );
        assert_eq!(
            https
                .proxy_for(&uri("http://api.corp.example:8080"))
                .unwrap(),
            Some(uri("http://plain-proxy:3128"))
        );
        let bypassed = settings(None, Some("http://proxy:3128"), ".corp.example");
        assert_eq!(bypassed.proxy_for(&server).unwrap(), None);
        assert_eq!(settings(None, None, "").proxy_for(&server).unwrap(), None);
    }

    #[test]
    fn a_proxy_that_is_not_a_url_is_an_error_naming_its_source() {
        let error = settings(None, Some("http://pro xy:3128"), "")
            .proxy_for(&uri("https://api.corp.example"))
            .unwrap_err();
        assert!(error.to_string().starts_with("HTTPS_PROXY: "), "{error}");
    }
}
