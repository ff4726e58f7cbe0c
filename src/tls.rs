//! Serving certificates that follow the files: cert-manager or the kubelet rotate the mounted
//! Secret (by swapping a `..data` symlink), and new connections get the new certificate
//! without a restart, while open connections carry on with the one they negotiated.
//!
//! The files are re-read by path on an interval, so a symlink swap is seen whatever inotify
//! would have reported; a pair that does not load (half-written, key not matching) is ignored
//! until the next read, and the last good certificate stays in use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: String },
    #[error("{path}: no usable PEM private key: {message}")]
    BadKey { path: String, message: String },
    #[error("{cert} and {key} do not match: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
}

/// Reads and checks a certificate chain and its key.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<(CertifiedKey, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.display().to_string(),
        });
    }
    let bad_key = |message: String| TlsError::BadKey {
        path: key_path.display().to_string(),
        message,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert_path.display().to_string(),
        key: key_path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut fingerprint = cert_pem;
    fingerprint.extend_from_slice(&key_pem);
    Ok((certified, fingerprint))
}

/// The certificate handed to every new TLS handshake; swapped when the files change.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Vec<u8>)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the pair; fails if it does not load now (a server must not start without one).
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let (key, fingerprint) = load_pair(cert_path, key_path)?;
        Ok(Arc::new(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new((Arc::new(key), fingerprint)),
        }))
    }

    /// Re-reads the files; swaps the certificate if they changed and load. Returns whether it
    /// swapped.
    pub fn reload(&self) -> bool {
        match load_pair(&self.cert_path, &self.key_path) {
            Ok((key, fingerprint)) => {
                let Ok(mut current) = self.current.write() else {
                    return false;
                };
                if current.1 == fingerprint {
                    return false;
                }
                *current = (Arc::new(key), fingerprint);
                info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                true
            }
            Err(err) => {
                warn!(%err, "serving certificate not reloaded; keeping the current one");
                false
            }
        }
    }

    /// Re-reads the files every `interval`, for the life of the process.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let reloader = this.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.0.clone())
    }
}

/// TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1, certificates from `resolver`.
pub fn server_config(resolver: Arc<ReloadingCert>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
