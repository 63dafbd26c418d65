//! ACM's role: the HTTPS certificate. From PEM files (chain and key), reloaded when their
//! content changes (a bad or half-written file keeps the previous certificate); or, with no
//! files given, a self-signed certificate for the configured host names, made on first start
//! and kept in `<data dir>/tls/` for the next starts, with a warning. rustls with the `ring`
//! provider only. Also [`HstsLayer`] for HTTPS answers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tower::{Layer, Service};

use crate::config::TlsConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path} is not a PEM private key (PKCS#8, SEC1 or PKCS#1): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key {key} does not belong to the certificate {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("give both [edge.tls] cert and key, or neither for a self-signed certificate")]
    HalfConfigured,
    #[error("cannot make a self-signed certificate for {hosts:?}: {reason}")]
    SelfSigned { hosts: Vec<String>, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Serves the current certificate to every handshake.
#[derive(Debug)]
struct CurrentCert {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().expect("not poisoned").clone())
    }
}

/// The server's certificate and the means to keep it current.
#[derive(Clone)]
pub struct Tls {
    current: Arc<CurrentCert>,
    cert_path: PathBuf,
    key_path: PathBuf,
    self_signed: bool,
    reload_interval: Duration,
    /// A hash of the files last looked at.
    seen: Arc<Mutex<[u8; 32]>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert_path)
            .field("self_signed", &self.self_signed)
            .finish()
    }
}

impl Tls {
    /// The certificate of `config`: its files, or a self-signed one kept under `data_dir`.
    pub fn load(config: &TlsConfig, data_dir: &Path) -> Result<Tls, TlsError> {
        let (cert_path, key_path, self_signed) = match (&config.cert, &config.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), false),
            (None, None) => {
                let (c, k) = self_signed(&config.hosts, &data_dir.join("tls"))?;
                (c, k, true)
            }
            _ => return Err(TlsError::HalfConfigured),
        };
        let (cert_pem, key_pem) = read_pair(&cert_path, &key_path)?;
        let key = certified_key(&cert_pem, &key_pem, &cert_path, &key_path)?;
        Ok(Tls {
            current: Arc::new(CurrentCert {
                key: RwLock::new(Arc::new(key)),
            }),
            seen: Arc::new(Mutex::new(pair_hash(&cert_pem, &key_pem))),
            cert_path,
            key_path,
            self_signed,
            reload_interval: config.reload_interval.max(Duration::from_millis(50)),
        })
    }

    /// The PEM file of the certificate served (for clients that must trust a self-signed one).
    pub fn certificate_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// The certificate chain served now.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.key.read().expect("not poisoned").cert.clone()
    }

    /// Reads the files; serves their certificate from the next handshake on when their
    /// content changed and is valid. `Ok(true)`: a new certificate is served.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        let hash = pair_hash(&cert_pem, &key_pem);
        {
            let mut seen = self.seen.lock().expect("not poisoned");
            if *seen == hash {
                return Ok(false);
            }
            // Looked at: a broken pair is reported once, not on every check.
            *seen = hash;
        }
        let key = certified_key(&cert_pem, &key_pem, &self.cert_path, &self.key_path)?;
        *self.current.key.write().expect("not poisoned") = Arc::new(key);
        Ok(true)
    }

    /// Checks the files every `reload_interval` until aborted.
    pub fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tls.reload_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                match tls.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert = %tls.cert_path.display(), "TLS certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the TLS certificate files changed but cannot be used; still serving the previous certificate")
                    }
                }
            }
        })
    }

    /// rustls settings: TLS 1.2 and 1.3 with ring, ALPN `h2` (when `http2`) and `http/1.1`.
    pub fn server_config(&self, http2: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Arc::new(config)
    }

    pub fn acceptor(&self, http2: bool) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config(http2))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((read(cert)?, read(key)?))
}

fn pair_hash(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}

/// What was made, to know when to make it again.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SelfSignedMeta {
    hosts: Vec<String>,
    /// Unix seconds.
    not_after: i64,
}

/// How long a self-signed certificate is made for, and how early it is made anew.
const SELF_SIGNED_DAYS: i64 = 397;
const RENEW_BEFORE_DAYS: i64 = 30;

/// The self-signed pair in `dir`, made when missing, for other hosts, or near its end.
fn self_signed(hosts: &[String], dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join("self-signed.crt");
    let key = dir.join("self-signed.key");
    let meta_path = dir.join("self-signed.json");
    let now = time::OffsetDateTime::now_utc();
    let reusable = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<SelfSignedMeta>(&b).ok())
        .is_some_and(|m| {
            m.hosts == hosts
                && m.not_after > (now + time::Duration::days(RENEW_BEFORE_DAYS)).unix_timestamp()
        })
        && cert.exists()
        && key.exists();
    if reusable {
        tracing::warn!(cert = %cert.display(), hosts = ?hosts,
            "serving HTTPS with the self-signed certificate made earlier: browsers will warn until it is trusted; set [edge.tls] cert and key for a real one");
        return Ok((cert, key));
    }
    let fail = |reason: String| TlsError::SelfSigned {
        hosts: hosts.to_vec(),
        reason,
    };
    let mut params =
        rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| fail(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "EcoCityHub (self-signed)");
    params.not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    params.not_after = not_after;
    let pair = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let made = params.self_signed(&pair).map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomically(&key, pair.serialize_pem().as_bytes(), true)?;
    write_atomically(&cert, made.pem().as_bytes(), false)?;
    let meta = SelfSignedMeta {
        hosts: hosts.to_vec(),
        not_after: not_after.unix_timestamp(),
    };
    write_atomically(
        &meta_path,
        &serde_json::to_vec_pretty(&meta).expect("plain data"),
        false,
    )?;
    tracing::warn!(cert = %cert.display(), hosts = ?hosts,
        "made a self-signed certificate for HTTPS: browsers will warn until it is trusted; set [edge.tls] cert and key for a real one");
    Ok((cert, key))
}

/// Writes through a temporary file and a rename, so a reader never sees half a file;
/// `secret`: readable by the owner only.
fn write_atomically(path: &Path, content: &[u8], secret: bool) -> Result<(), TlsError> {
    let fail = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    {
        use std::io::Write;
        let mut file = options.open(&tmp).map_err(fail)?;
        file.write_all(content).map_err(fail)?;
        file.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Adds `Strict-Transport-Security` to answers (serve it on HTTPS only).
#[derive(Debug, Clone)]
pub struct HstsLayer {
    value: HeaderValue,
}

impl HstsLayer {
    /// `None` for a zero `max_age` (no header).
    pub fn new(max_age: Duration, include_subdomains: bool) -> Option<HstsLayer> {
        if max_age.is_zero() {
            return None;
        }
        let mut v = format!("max-age={}", max_age.as_secs());
        if include_subdomains {
            v.push_str("; includeSubDomains");
        }
        Some(HstsLayer {
            value: HeaderValue::from_str(&v).expect("digits and ASCII"),
        })
    }

    pub fn from_config(config: &TlsConfig) -> Option<HstsLayer> {
        HstsLayer::new(config.hsts_max_age, config.hsts_include_subdomains)
    }
}

impl<S> Layer<S> for HstsLayer {
    type Service = Hsts<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hsts {
            inner,
            value: self.value.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hsts<S> {
    inner: S,
    value: HeaderValue,
}

impl<S> Service<Request> for Hsts<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let future = self.inner.call(request);
        let value = self.value.clone();
        Box::pin(async move {
            let mut response = future.await?;
            response
                .headers_mut()
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert(value);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TlsConfig {
        TlsConfig {
            enabled: true,
            ..TlsConfig::default()
        }
    }

    #[test]
    fn a_self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Tls::load(&config(), dir.path()).unwrap();
        assert!(first.is_self_signed());
        let pem = std::fs::read(first.certificate_path()).unwrap();
        let again = Tls::load(&config(), dir.path()).unwrap();
        assert_eq!(std::fs::read(again.certificate_path()).unwrap(), pem);
        assert_eq!(first.current_chain(), again.current_chain());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join("tls/self-signed.key");
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is the owner's only");
        }
        // Other host names: a new certificate.
        let mut other = config();
        other.hosts = vec!["air.example.org".into()];
        let third = Tls::load(&other, dir.path()).unwrap();
        assert_ne!(std::fs::read(third.certificate_path()).unwrap(), pem);
    }

    #[test]
    fn bad_files_are_refused_with_their_path_and_keep_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let made = Tls::load(&config(), dir.path()).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::copy(made.certificate_path(), &cert).unwrap();
        std::fs::copy(dir.path().join("tls/self-signed.key"), &key).unwrap();
        let mut c = config();
        c.cert = Some(cert.clone());
        c.key = Some(key.clone());
        let tls = Tls::load(&c, dir.path()).unwrap();
        assert!(!tls.is_self_signed());
        let before = tls.current_chain();
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        let e = tls.reload_if_changed().unwrap_err().to_string();
        assert!(e.contains("c.pem"), "{e}");
        assert_eq!(tls.current_chain(), before);
        // A key of another certificate is refused too.
        let mut other = config();
        other.hosts = vec!["other.example".into()];
        let other_dir = tempfile::tempdir().unwrap();
        Tls::load(&other, other_dir.path()).unwrap();
        std::fs::copy(made.certificate_path(), &cert).unwrap();
        std::fs::copy(other_dir.path().join("tls/self-signed.key"), &key).unwrap();
        assert!(matches!(
            tls.reload_if_changed(),
            Err(TlsError::Mismatch { .. })
        ));
        c.cert = None;
        assert!(matches!(
            Tls::load(&c, dir.path()),
            Err(TlsError::HalfConfigured)
        ));
    }
}
