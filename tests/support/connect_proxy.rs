//! A loopback proxy, as a corporate one serves a kubeconfig's `proxy-url` or `HTTPS_PROXY`: HTTP
//! `CONNECT`, or SOCKS5 with no authentication. It records each tunnel's target and the
//! `Proxy-Authorization` it was given, and resolves every host to 127.0.0.1 (as a proxy resolves
//! names its clients cannot), so a test can name its API server `api.corp.test`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One tunnel the proxy opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// `host:port`, as the client named it.
    pub target: String,
    pub authorization: Option<String>,
}

#[derive(Clone, Copy)]
enum Protocol {
    Connect,
    Socks5,
}

pub struct ConnectProxy {
    /// `http://127.0.0.1:PORT` or `socks5://127.0.0.1:PORT`
    pub url: String,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

impl ConnectProxy {
    /// An HTTP proxy that answers `CONNECT`.
    pub async fn start() -> ConnectProxy {
        Self::serve(Protocol::Connect).await
    }

    /// A SOCKS5 proxy (RFC 1928, no authentication, `CONNECT` only).
    pub async fn start_socks5() -> ConnectProxy {
        Self::serve(Protocol::Socks5).await
    }

    async fn serve(protocol: Protocol) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = match protocol {
            Protocol::Connect => "http",
            Protocol::Socks5 => "socks5",
        };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut client = BufReader::new(client);
                    let tunnel = match protocol {
                        Protocol::Connect => connect_handshake(&mut client).await,
                        Protocol::Socks5 => socks5_handshake(&mut client).await,
                    };
                    let Some(tunnel) = tunnel else { return };
                    let port = tunnel.target.rsplit_once(':').map_or("443", |(_, p)| p);
                    let upstream = TcpStream::connect(format!("127.0.0.1:{port}")).await;
                    seen.lock().unwrap().push(tunnel);
                    let (ok, failed): (&[u8], &[u8]) = match protocol {
                        Protocol::Connect => (
                            b"HTTP/1.1 200 Connection Established\r\n\r\n",
                            b"HTTP/1.1 502 Bad Gateway\r\n\r\n",
                        ),
                        Protocol::Socks5 => (
                            &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
                            &[5, 5, 0, 1, 0, 0, 0, 0, 0, 0],
                        ),
                    };
                    let Ok(mut upstream) = upstream else {
                        let _ = client.get_mut().write_all(failed).await;
                        return;
                    };
                    if client.get_mut().write_all(ok).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        ConnectProxy { url, tunnels }
    }

    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

/// Reads a `CONNECT host:port` request and its headers.
async fn connect_handshake(client: &mut BufReader<TcpStream>) -> Option<Tunnel> {
    let mut line = String::new();
    client.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return None;
    };
    let target = target.to_string();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        match client.read_line(&mut header).await {
            Ok(0) | Err(_) => return None,
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
    Some(Tunnel {
        target,
        authorization,
    })
}

/// Reads a SOCKS5 greeting (answered: username and password if offered, which are recorded as
/// `user:password`, else no authentication) and a `CONNECT` request.
async fn socks5_handshake(client: &mut BufReader<TcpStream>) -> Option<Tunnel> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await.ok()?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await.ok()?;
    if head[0] != 5 {
        return None;
    }
    let mut authorization = None;
    if methods.contains(&2) {
        client.get_mut().write_all(&[5, 2]).await.ok()?;
        // RFC 1929: version 1, then the username and the password, each after its length.
        if client.read_u8().await.ok()? != 1 {
            return None;
        }
        let user = read_field(client).await?;
        let password = read_field(client).await?;
        authorization = Some(format!("{user}:{password}"));
        client.get_mut().write_all(&[1, 0]).await.ok()?;
    } else if methods.contains(&0) {
        client.get_mut().write_all(&[5, 0]).await.ok()?;
    } else {
        return None;
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await.ok()?;
    if request[..2] != [5, 1] {
        return None;
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await.ok()?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let length = client.read_u8().await.ok()?;
            let mut name = vec![0u8; usize::from(length)];
            client.read_exact(&mut name).await.ok()?;
            String::from_utf8(name).ok()?
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await.ok()?;
            format!("[{}]", std::net::Ipv6Addr::from(ip))
        }
        _ => return None,
    };
    let port = client.read_u16().await.ok()?;
    Some(Tunnel {
        target: format!("{host}:{port}"),
        authorization,
    })
}

/// A SOCKS field: its length in one byte, then its bytes.
async fn read_field(client: &mut BufReader<TcpStream>) -> Option<String> {
    let length = client.read_u8().await.ok()?;
    let mut bytes = vec![0u8; usize::from(length)];
    client.read_exact(&mut bytes).await.ok()?;
    String::from_utf8(bytes).ok()
}
