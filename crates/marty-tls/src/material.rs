//! The CA, certificate and key of one identity, as rustls configs that follow the files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Identity, TlsError, identity_of, provider};

/// Key files readable by anyone but their owner (and its group) are refused, as the KEK and
/// password files are.
const FORBIDDEN_KEY_BITS: u32 = 0o037;

/// What a file looked like when it was read: a change of any of these means read it again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(Vec<(u64, u64, i64, i64)>);

fn stamp(paths: &[&Path]) -> Stamp {
    Stamp(
        paths
            .iter()
            .map(|p| match std::fs::metadata(p) {
                Ok(m) => (m.ino(), m.len(), m.mtime(), m.mtime_nsec()),
                Err(_) => (0, 0, 0, 0),
            })
            .collect(),
    )
}

struct Loaded {
    stamp: Stamp,
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    identity: Option<Identity>,
}

/// One identity's TLS material: `ca`, `cert` and `key` files, re-read when they change.
pub struct TlsMaterial {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// Which application protocol a listener speaks (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    Grpc,
    Http,
}

impl TlsMaterial {
    /// Reads the material of `identity` (a file stem) from `settings.dir`.
    pub fn from_settings(
        settings: &marty_config::TlsSettings,
        identity: &str,
    ) -> Result<Arc<TlsMaterial>, TlsError> {
        let (cert, key) = settings.pair(identity);
        TlsMaterial::load(&settings.ca_file(), &cert, &key)
    }

    /// Reads the three files; any problem is an error naming the file.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<TlsMaterial>, TlsError> {
        let loaded = read(ca, cert, key)?;
        Ok(Arc::new(TlsMaterial {
            ca: ca.to_owned(),
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: RwLock::new(loaded),
        }))
    }

    /// Reads the files again if any of them changed. `Ok(true)`: the new material is in use
    /// for new connections. An error leaves the previous material in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&[&self.ca, &self.cert, &self.key]);
        if now == self.read_lock().stamp {
            return Ok(false);
        }
        let fresh = read(&self.ca, &self.cert, &self.key)?;
        // The identity is checked once, at start (a service refuses another's certificate);
        // new files must carry the same one, or a swapped file would change whom this
        // process acts as.
        let current = self.read_lock().identity.clone();
        if fresh.identity != current {
            return Err(TlsError::file(
                &self.cert,
                format!(
                    "now carries {}, not {}: not used",
                    fresh
                        .identity
                        .map(|i| i.uri())
                        .unwrap_or_else(|| "no Marty identity".into()),
                    current
                        .map(|i| i.uri())
                        .unwrap_or_else(|| "no Marty identity".into())
                ),
            ));
        }
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(true)
    }

    /// Re-reads the files every `every` until the returned task is aborted; a change is
    /// logged, a broken file is logged and the previous material kept.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                let Some(me) = me.upgrade() else { return };
                match me.reload_if_changed() {
                    Ok(true) => {
                        failing = false;
                        tracing::info!(cert = %me.cert.display(), "TLS certificate files changed: new connections use them");
                    }
                    Ok(false) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "TLS files changed but cannot be used; keeping the previous ones");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn server_config(&self, alpn: Alpn) -> Arc<ServerConfig> {
        let l = self.read_lock();
        match alpn {
            Alpn::Grpc => l.grpc.clone(),
            Alpn::Http => l.http.clone(),
        }
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.read_lock().client.clone()
    }

    /// The identity this material's own certificate carries.
    pub fn identity(&self) -> Option<Identity> {
        self.read_lock().identity.clone()
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::file(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::file(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| TlsError::file(path, e))?;
    let mode = meta.permissions().mode();
    if mode & FORBIDDEN_KEY_BITS != 0 {
        return Err(TlsError::file(
            path,
            format!(
                "a private key readable by others (mode {:o}); chmod 600 it",
                mode & 0o777
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| TlsError::file(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| TlsError::file(path, format!("not a PEM private key: {e}")))
}

fn read(ca: &Path, cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    // The stamp is taken first: a change made while reading is picked up by the next look.
    let stamp = stamp(&[ca, cert, key]);
    let mut roots = RootCertStore::empty();
    for c in certificates(ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError::file(ca, format!("not a usable CA certificate: {e}")))?;
    }
    let roots = Arc::new(roots);
    let chain = certificates(cert)?;
    let identity = identity_of(&chain[0]);
    let key_der = private_key(key)?;
    let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let server = |optional: bool| {
        let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        // A client certificate, when presented, must chain to the CA either way.
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        let verifier = builder
            .build()
            .map_err(|e| TlsError::file(ca, format!("cannot verify clients with it: {e}")))?;
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|e| TlsError::file(cert, format!("does not match its key: {e}")))
    };
    // gRPC: a certificate on every connection. HTTP: optional in the handshake so that
    // orchestrators' probes (which present none) reach /healthz and /readyz; every other
    // path requires one (see `marty-runtime`'s HTTP layer).
    let mut grpc = server(false)?;
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    let mut http = server(true)?;
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| TlsError::file(cert, format!("does not match its key: {e}")))?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        stamp,
        grpc: Arc::new(grpc),
        http: Arc::new(http),
        client: Arc::new(client),
        identity,
    })
}
