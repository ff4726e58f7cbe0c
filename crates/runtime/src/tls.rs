//! Serving certificates that follow the files: cert-manager or the kubelet rotate the mounted
//! Secret (by swapping a `..data` symlink), and new connections get the new certificate
//! without a restart, while open connections carry on with the one they negotiated.
//!
//! The certificate is axum-server's `RustlsConfig`, swapped by its `reload_from_pem`. What
//! triggers a reload is ours: the files are re-read by path on an interval, because a watch on
//! `tls.crt` misses the kubelet's `..data` swap (the file itself never changes). Not
//! `reload_from_pem_file`: the bytes are read first, so that an unchanged pair keeps its
//! config (and TLS sessions) and a bad one names its file. A pair that does not load
//! (half-written, key not matching) is ignored until the next read, and the last good one
//! stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
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
    #[error("{cert} and {key} cannot serve together: {source}")]
    Unusable {
        cert: String,
        key: String,
        source: std::io::Error,
    },
}

/// A certificate chain and its key, as read from their files.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PemPair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PemPair {
    /// Reads both files; an error names the file that is unreadable or holds no certificate
    /// (or key). Whether the two match is rustls' check, when the config is built.
    async fn read(cert_path: &Path, key_path: &Path) -> Result<PemPair, TlsError> {
        let read = |path: &Path| {
            let path = path.to_path_buf();
            async move {
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| TlsError::Read {
                        path: path.display().to_string(),
                        source,
                    })
            }
        };
        let pair = PemPair {
            cert: read(cert_path).await?,
            key: read(key_path).await?,
        };
        if !CertificateDer::pem_slice_iter(&pair.cert).any(|item| item.is_ok()) {
            return Err(TlsError::NoCertificate {
                path: cert_path.display().to_string(),
            });
        }
        PrivateKeyDer::from_pem_slice(&pair.key).map_err(|err| TlsError::BadKey {
            path: key_path.display().to_string(),
            message: err.to_string(),
        })?;
        Ok(pair)
    }
}

/// The serving certificate, re-read from its files.
#[derive(Debug)]
pub struct ServingCert {
    config: RustlsConfig,
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The pair `config` serves, to tell a rotation from a re-read of the same files.
    serving: Mutex<PemPair>,
}

impl ServingCert {
    /// Loads the pair; fails if it does not load now (a server must not start without one).
    /// TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN (axum-server's defaults).
    pub async fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let pair = PemPair::read(cert_path, key_path).await?;
        let config = RustlsConfig::from_pem(pair.cert.clone(), pair.key.clone())
            .await
            .map_err(|source| TlsError::Unusable {
                cert: cert_path.display().to_string(),
                key: key_path.display().to_string(),
                source,
            })?;
        Ok(Arc::new(ServingCert {
            config,
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            serving: Mutex::new(pair),
        }))
    }

    /// What the server hands every new TLS handshake (a handle: reloads reach it).
    pub fn config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Re-reads the files; serves them from now on if they changed and load. Returns whether
    /// it swapped.
    pub async fn reload(&self) -> bool {
        let pair = match PemPair::read(&self.cert_path, &self.key_path).await {
            Ok(pair) => pair,
            Err(err) => {
                warn!(%err, "serving certificate not reloaded; keeping the current one");
                return false;
            }
        };
        if self.serving.lock().is_ok_and(|serving| *serving == pair) {
            return false;
        }
        if let Err(err) = self
            .config
            .reload_from_pem(pair.cert.clone(), pair.key.clone())
            .await
        {
            warn!(%err, cert = %self.cert_path.display(), "serving certificate not reloaded; keeping the current one");
            return false;
        }
        if let Ok(mut serving) = self.serving.lock() {
            *serving = pair;
        }
        info!(cert = %self.cert_path.display(), "serving certificate reloaded");
        true
    }

    /// Re-reads the files every `interval`, for the life of the process.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                this.reload().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;

    fn install_crypto() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let generated = certs::generate(&["localhost".to_string()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &generated.cert_pem).unwrap();
        std::fs::write(&key, &generated.key_pem).unwrap();
        (cert, key)
    }

    /// Points `link` at `target` by renaming a new symlink over it, as the kubelet swaps a
    /// Secret volume's `..data`.
    fn swap_link(dir: &Path, link: &str, target: &Path) {
        let temporary = dir.join(format!("{link}.tmp"));
        std::os::unix::fs::symlink(target, &temporary).unwrap();
        std::fs::rename(&temporary, dir.join(link)).unwrap();
    }

    #[tokio::test]
    async fn a_rotated_pair_is_served_and_a_bad_or_unchanged_one_is_not() {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("..first");
        let second = dir.path().join("..second");
        let mixed = dir.path().join("..mixed");
        for version in [&first, &second, &mixed] {
            std::fs::create_dir(version).unwrap();
        }
        let (_, key_1) = pair(&first, "tls");
        let (cert_2, _) = pair(&second, "tls");
        // A new certificate with the old key: half a rotation.
        std::fs::copy(&cert_2, mixed.join("tls.crt")).unwrap();
        std::fs::copy(&key_1, mixed.join("tls.key")).unwrap();
        // tls.crt -> ..data/tls.crt, ..data -> ..first: the layout of a Secret volume.
        swap_link(dir.path(), "..data", &first);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.path().join(file)).unwrap();
        }
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let serving = ServingCert::load(&cert, &key).await.unwrap();
        let initial = serving.config().get_inner();

        assert!(!serving.reload().await, "the same files swapped the config");
        assert!(Arc::ptr_eq(&initial, &serving.config().get_inner()));

        swap_link(dir.path(), "..data", &mixed);
        assert!(!serving.reload().await, "a mismatched pair was taken");
        assert!(Arc::ptr_eq(&initial, &serving.config().get_inner()));

        swap_link(dir.path(), "..data", &second);
        assert!(serving.reload().await, "the rotated pair was not taken");
        let rotated = serving.config().get_inner();
        assert!(!Arc::ptr_eq(&initial, &rotated));
        assert_eq!(
            rotated.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(!serving.reload().await);
    }

    #[tokio::test]
    async fn a_pair_that_does_not_load_names_its_file() {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "tls");
        let missing = dir.path().join("absent.crt");
        let error = |result: Result<Arc<ServingCert>, TlsError>| result.unwrap_err().to_string();
        assert_eq!(
            error(ServingCert::load(&missing, &key).await),
            format!("{}: cannot read", missing.display())
        );
        // Each file in the other's place.
        assert_eq!(
            error(ServingCert::load(&key, &key).await),
            format!("{}: no PEM certificate in it", key.display())
        );
        assert!(
            error(ServingCert::load(&cert, &cert).await)
                .starts_with(&format!("{}: no usable PEM private key", cert.display()))
        );
        let (other_cert, _) = pair(dir.path(), "other");
        assert!(
            error(ServingCert::load(&other_cert, &key).await).starts_with(&format!(
                "{} and {} cannot serve together: ",
                other_cert.display(),
                key.display()
            ))
        );
    }
}
