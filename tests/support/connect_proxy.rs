//! A loopback HTTP proxy that answers `CONNECT` and relays bytes, as a corporate proxy does for
//! a kubeconfig's `proxy-url` or `HTTPS_PROXY`. It records each tunnel's target and the
//! `Proxy-Authorization` it was given, and resolves every host to 127.0.0.1 (as a proxy resolves
//! names its clients cannot), so a test can name its API server `api.corp.test`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One tunnel the proxy opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// `host:port`, as the `CONNECT` line named it.
    pub target: String,
    pub authorization: Option<String>,
}

pub struct ConnectProxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, seen.clone()));
            }
        });
        ConnectProxy { url, tunnels }
    }

    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

/// Reads the `CONNECT` request, dials its target and copies both ways until either side closes.
async fn relay(client: TcpStream, tunnels: Arc<Mutex<Vec<Tunnel>>>) {
    let mut client = BufReader::new(client);
    let mut line = String::new();
    if client.read_line(&mut line).await.is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    };
    let target = target.to_string();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        match client.read_line(&mut header).await {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("proxy-authorization")
                {
                    authorization = Some(value.trim().to_string());
                }
            }
        }
    }
    tunnels.lock().unwrap().push(Tunnel {
        target: target.clone(),
        authorization,
    });
    let port = target.rsplit_once(':').map_or("443", |(_, port)| port);
    let Ok(mut upstream) = TcpStream::connect(format!("127.0.0.1:{port}")).await else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            .await;
        return;
    };
    if client
        .get_mut()
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
