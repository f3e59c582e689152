//! What a service's handlers are given: its own database, keys, policy and peers, nothing else.
//!
//! The context is built by the runtime from the configuration, and the configuration itself —
//! which holds every service's passwords — never reaches a service crate. A service crate
//! therefore has no way to name another service's database: no URL, no credentials, no pool.
//! (`services/clippy.toml` forbids the calls that would open a connection or load the
//! configuration behind the runtime's back.)

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use marty_config::{CscaPolicy, Service, ServiceApi, SignerPolicy};
use marty_keys::KeyStore;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};

use crate::metrics::Registry;

/// The service's own database, through its `app` role.
///
/// Every wait for a pooled connection goes through [`ServiceDb::begin`] or
/// [`ServiceDb::acquire`], so that the pool's saturation shows in `/metrics` as the number of
/// callers waiting and as the `marty_db_pool_wait_seconds` histogram.
#[derive(Debug, Clone)]
pub struct ServiceDb {
    pool: PgPool,
    waiting: Arc<AtomicI64>,
    metrics: Arc<Registry>,
    service: &'static str,
}

impl ServiceDb {
    pub(crate) fn new(pool: PgPool, metrics: Arc<Registry>, service: Service) -> Self {
        Self {
            pool,
            waiting: Arc::new(AtomicI64::new(0)),
            metrics,
            service: service.id(),
        }
    }

    /// A transaction.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.timed(self.pool.begin()).await
    }

    /// A pooled connection, for statements outside a transaction.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.timed(self.pool.acquire()).await
    }

    async fn timed<T>(
        &self,
        wait: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let started = Instant::now();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let got = wait.await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.metrics.observe(
            "marty_db_pool_wait_seconds",
            "Time callers waited for a connection of the service's pool.",
            &[("service", self.service)],
            started.elapsed().as_secs_f64(),
        );
        got
    }

    /// The pool itself (for a caller that needs its options or hands it to a library).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// The policy section of the service's own configuration.
#[derive(Debug, Clone)]
pub enum ServicePolicy {
    Csca(CscaPolicy),
    DocumentSigner(SignerPolicy),
    None,
}

/// Clients of other services: lazily connected gRPC channels to their configured URLs.
#[derive(Debug, Clone)]
pub struct Peers {
    urls: Arc<Vec<(Service, String)>>,
    /// This service's own certificate, presented to peers (none: plaintext).
    tls: Option<Arc<marty_tls::TlsMaterial>>,
}

/// How long a call to another service may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Peers {
    pub(crate) fn new(
        urls: Vec<(Service, String)>,
        tls: Option<Arc<marty_tls::TlsMaterial>>,
    ) -> Self {
        Self {
            urls: Arc::new(urls),
            tls,
        }
    }

    /// A channel to `service`, connected on first use and reconnected when it drops.
    pub fn channel(&self, service: Service) -> Result<tonic::transport::Channel, String> {
        let url = self
            .url(service)
            .ok_or_else(|| format!("no address configured for {service}"))?;
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("{service} address {url:?}: {e}"))?
            .connect_timeout(PEER_CONNECT_TIMEOUT)
            .timeout(PEER_TIMEOUT)
            .tcp_nodelay(true);
        Ok(marty_tls::connect::channel(
            endpoint,
            self.tls.as_ref(),
            service,
        ))
    }

    pub fn url(&self, service: Service) -> Option<&str> {
        self.urls
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, u)| u.as_str())
    }
}

/// Everything a service's code may use.
#[derive(Clone)]
pub struct ServiceContext {
    pub(crate) service: Service,
    pub(crate) environment: marty_config::Environment,
    pub(crate) db: ServiceDb,
    pub(crate) keys: Option<Arc<dyn KeyStore>>,
    pub(crate) policy: ServicePolicy,
    pub(crate) api: ServiceApi,
    pub(crate) peers: Peers,
    pub(crate) metrics: Arc<Registry>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContext")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ServiceContext {
    pub fn service(&self) -> Service {
        self.service
    }

    /// development, testing or production.
    pub fn environment(&self) -> marty_config::Environment {
        self.environment
    }

    pub fn db(&self) -> &ServiceDb {
        &self.db
    }

    /// The service's key store. Services whose descriptor asks for keys always have one.
    pub fn keys(&self) -> Arc<dyn KeyStore> {
        self.keys
            .clone()
            .expect("the runtime builds a key store for every service whose descriptor needs keys")
    }

    pub fn policy(&self) -> &ServicePolicy {
        &self.policy
    }

    pub fn api(&self) -> &ServiceApi {
        &self.api
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub fn metrics(&self) -> &Registry {
        &self.metrics
    }

    /// Wakes the service's background tasks that wait on [`ServiceContext::woken`] (a
    /// consumer asking for work it must not do inside its transaction).
    pub fn wake(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Resolves at the next [`ServiceContext::wake`].
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
