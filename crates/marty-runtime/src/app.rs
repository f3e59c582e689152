//! Building and running one service process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marty_config::{Config, ConfigError, Role, Service};
use marty_db::ConnectTarget;
use marty_events::relay::RelayMetricsSnapshot;
use marty_events::{Relay, RelayConfig};
use marty_keys::KeyStore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::context::{Peers, ServiceContext, ServiceDb, ServicePolicy};
use crate::http_api::{self, HttpState};
use crate::metrics::{GrpcMetricsLayer, KnownMethods, Registry};
use crate::shutdown::{Shutdown, terminate_signal};
use crate::{ServiceDescriptor, ServiceParts};

/// How long the relay gets to publish what in-flight calls wrote, after they finished.
const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// How long consumers and background tasks get to stop.
const TASK_STOP: Duration = Duration::from_secs(10);
/// gRPC messages larger than this are refused (CSRs, data group hashes and documents to sign
/// are far smaller; the limit bounds what one call can make the server allocate).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Calls one HTTP/2 connection may have in flight.
pub const MAX_STREAMS: u32 = 32;
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// A call that takes longer is cancelled with DEADLINE_EXCEEDED.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a service refused to start. Each names what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("refusing to start {service}: the configuration would break database isolation:\n  - {}", problems.join("\n  - "))]
    Isolation {
        service: Service,
        problems: Vec<String>,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] marty_db::DbError),
    #[error(
        "{service} cannot listen on {addr} ({what}): {source}{hint}",
        hint = if source.kind() == std::io::ErrorKind::AddrInUse { format!(" — is another {service} running? Choose another port with MARTY_{}_{}_PORT", service.env_prefix(), what.to_ascii_uppercase()) } else { String::new() }
    )]
    Bind {
        service: Service,
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("{service}: {0}", service = .1)]
    Build(String, Service),
    #[error("refusing to start {service}: {message}")]
    Tls { service: Service, message: String },
    #[error("refusing to start {service}: its key store: {message}")]
    Keys { service: Service, message: String },
}

impl StartError {
    /// Whether the operator's configuration is at fault (exit 3) rather than the environment.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StartError::Isolation { .. }
                | StartError::Config(_)
                | StartError::Tls { .. }
                | StartError::Keys { .. }
                | StartError::Database(marty_db::DbError::Config(_))
                // A database that is not the service's own, not provisioned or not migrated.
                | StartError::Database(marty_db::DbError::Startup { .. })
        )
    }
}

/// The relay, once NATS was reached, for metrics and the final flush.
#[derive(Debug, Default)]
pub(crate) struct RelayStatus {
    relay: Mutex<Option<Arc<Relay>>>,
    client: Mutex<Option<async_nats::Client>>,
}

impl RelayStatus {
    pub(crate) fn snapshot(&self) -> RelayMetricsSnapshot {
        self.relay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.metrics())
            .unwrap_or_default()
    }

    pub(crate) fn connected(&self) -> bool {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    fn relay(&self) -> Option<Arc<Relay>> {
        self.relay.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A service, built and bound, ready to run.
pub struct Application {
    service: Service,
    ctx: ServiceContext,
    parts: ServiceParts,
    grpc: TcpListener,
    http: TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    check: marty_db::startup::DatabaseCheck,
    migrator: &'static sqlx::migrate::Migrator,
    credential: Credential,
    nats_url: String,
    nats_login: Option<marty_config::NatsCredential>,
    grace: Duration,
    tls: Option<Arc<marty_tls::TlsMaterial>>,
    tls_reload: Duration,
    authz: Arc<crate::authz::Policy>,
}

/// What the pool logs in with, and how a new one reaches it.
struct Credential {
    epoch: Arc<marty_db::connect::CredentialEpoch>,
    login: String,
    password: secrecy::SecretString,
    /// The environment the configuration is read again from on reload (none: no reload).
    env: Option<marty_config::Env>,
    reload: crate::credentials::CredentialReload,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("service", &self.service)
            .field("grpc", &self.grpc_addr)
            .field("http", &self.http_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(
    service: Service,
    what: &'static str,
    host: &str,
    port: u16,
) -> Result<TcpListener, StartError> {
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            service,
            what,
            addr,
            source,
        })
}

impl Application {
    /// Checks, connects and binds `descriptor`'s service as configured (see the crate docs).
    pub async fn build(
        descriptor: &ServiceDescriptor,
        config: &Config,
    ) -> Result<Application, StartError> {
        let service = descriptor.service;
        let problems = config.isolation_conflicts();
        if !problems.is_empty() {
            return Err(StartError::Isolation { service, problems });
        }
        let db = config.database(service);
        let epoch = Arc::new(marty_db::connect::CredentialEpoch::default());
        let pool = ConnectTarget::rotating_service_pool(db, Role::App, epoch.clone())?;
        let credential = Credential {
            epoch,
            login: db.login_name(Role::App),
            password: db.password(Role::App)?.clone(),
            env: None,
            reload: Default::default(),
        };
        let check =
            marty_db::startup::check_service_database(&pool, db, descriptor.migrator).await?;
        let tls_settings = config.tls();
        let tls = if tls_settings.enabled() {
            let material = marty_tls::TlsMaterial::from_settings(tls_settings, service.id())
                .map_err(|e| StartError::Tls {
                    service,
                    message: e.to_string(),
                })?;
            // The certificate must be this service's: a process holding another identity's
            // certificate would act with that identity's rights.
            let own = marty_tls::Identity::Service(service);
            if material.identity().as_ref() != Some(&own) {
                return Err(StartError::Tls {
                    service,
                    message: format!(
                        "{} carries {}, not {}",
                        tls_settings.pair(service.id()).0.display(),
                        material
                            .identity()
                            .map(|i| i.uri())
                            .unwrap_or_else(|| "no Marty identity".into()),
                        own.uri()
                    ),
                });
            }
            Some(material)
        } else {
            tracing::warn!(%service, "TLS is off (tls.mode: off): every caller is trusted; development only");
            None
        };
        let known = KnownMethods::from_descriptor_sets(&[
            marty_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ]);
        let authz = Arc::new(
            crate::authz::Policy::new(tls_settings, &known)
                .map_err(|message| StartError::Tls { service, message })?,
        );
        let keys: Option<Arc<dyn KeyStore>> = if descriptor.needs_keys {
            Some(
                marty_keys::configured(config, service).map_err(|e| StartError::Keys {
                    service,
                    message: e.to_string(),
                })?,
            )
        } else {
            None
        };
        let api = config.api(service).clone();
        let grpc = bind(service, "grpc", &api.listen_host, api.grpc_port).await?;
        let http = bind(service, "http", &api.listen_host, api.http_port).await?;
        let grpc_addr = grpc
            .local_addr()
            .map_err(|e| StartError::Build(e.to_string(), service))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| StartError::Build(e.to_string(), service))?;
        let policy = match service {
            Service::Csca => ServicePolicy::Csca(config.csca_policy().clone()),
            Service::DocumentSigner => {
                ServicePolicy::DocumentSigner(config.signer_policy().clone())
            }
            Service::PassportEngine | Service::Pkd => ServicePolicy::None,
        };
        let peers = Peers::new(
            Service::ALL
                .into_iter()
                .filter(|s| *s != service)
                .map(|s| (s, config.api(s).url.clone()))
                .collect(),
            tls.clone(),
        );
        let metrics = Arc::new(Registry::default());
        let ctx = ServiceContext {
            service,
            environment: config.environment,
            db: ServiceDb::new(pool, metrics.clone(), service),
            keys,
            policy,
            api: marty_config::ServiceApi {
                grpc_port: grpc_addr.port(),
                http_port: http_addr.port(),
                ..api
            },
            peers,
            metrics,
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        let parts = (descriptor.build)(ctx.clone())
            .await
            .map_err(|e| StartError::Build(format!("{e:#}"), service))?;
        if let Some((filter, _)) = parts
            .consumers
            .iter()
            .find(|(f, _)| !descriptor.consumes.contains(&f.as_str()))
        {
            return Err(StartError::Build(
                format!(
                    "consumer of {filter} is not in the descriptor's `consumes` (its NATS user could not read it)"
                ),
                service,
            ));
        }
        tracing::info!(
            %service,
            grpc = %grpc_addr,
            http = %http_addr,
            database = %check.database,
            migration_version = check.migration_version,
            "ready to serve: gRPC (with health and reflection) and HTTP (/healthz /readyz /metrics); SIGTERM or Ctrl-C stops it"
        );
        Ok(Application {
            service,
            ctx,
            parts,
            grpc,
            http,
            grpc_addr,
            http_addr,
            check,
            migrator: descriptor.migrator,
            credential,
            nats_url: config.nats_url().to_owned(),
            nats_login: config.nats_credential(service.id()).cloned(),
            grace: config.runtime().shutdown_grace,
            tls,
            tls_reload: tls_settings.reload_interval,
            authz,
        })
    }

    pub fn service(&self) -> Service {
        self.service
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_addr.port()
    }

    pub fn http_port(&self) -> u16 {
        self.http_addr.port()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    /// Lets the service pick up a new database credential from `env` (the environment it was
    /// configured from) on SIGHUP, on [`Self::credential_reload`] and periodically.
    pub fn reload_from(mut self, env: marty_config::Env) -> Self {
        self.credential.env = Some(env);
        self
    }

    /// Asks for an immediate credential reload (when [`Self::reload_from`] was given).
    pub fn credential_reload(&self) -> crate::credentials::CredentialReload {
        self.credential.reload.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run(terminate_signal()).await
    }

    /// Serves until `stop` resolves, then shuts down gracefully (see the crate docs).
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Application {
            service,
            ctx,
            parts,
            grpc,
            http,
            check,
            migrator,
            credential,
            nats_url,
            nats_login,
            grace,
            tls,
            tls_reload,
            authz,
            ..
        } = self;
        let serving = Shutdown::new();
        let tasks_stop = Shutdown::new();
        let http_stop = Shutdown::new();
        let relay_status = Arc::new(RelayStatus::default());

        // gRPC: the service's own services, health, reflection, all counted and timed.
        let (health, health_service) = tonic_health::server::health_reporter();
        // Reflection advertises what this process serves, not every contract of the platform.
        let advertised = [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ];
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(marty_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in advertised {
            reflection = reflection.with_service_name(name);
        }
        for name in &parts.names {
            reflection = reflection.with_service_name(*name);
        }
        let reflection_v1alpha = {
            let mut b = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(marty_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
            for name in advertised {
                b = b.with_service_name(name);
            }
            for name in &parts.names {
                b = b.with_service_name(*name);
            }
            b.build_v1alpha()?
        };
        let reflection = reflection.build_v1()?;
        for name in &parts.names {
            health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let mut routes = parts.routes;
        routes
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha);
        let known = KnownMethods::from_descriptor_sets(&[
            marty_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ]);
        let layer = GrpcMetricsLayer::new(ctx.metrics.clone(), service.id(), known);
        let authz = crate::authz::AuthzLayer::new(authz, ctx.metrics.clone(), service);
        let refused = |listener: &'static str| -> marty_tls::listen::OnRefused {
            let metrics = ctx.metrics.clone();
            Arc::new(move |remote, reason| {
                tracing::debug!(%service, listener, %remote, reason, "TLS handshake refused");
                metrics.add(
                    "marty_tls_handshake_failures_total",
                    "Connections refused during the TLS handshake (no client certificate, another CA, expired, not TLS).",
                    &[("service", service.id()), ("listener", listener)],
                    1.0,
                );
            })
        };
        let incoming = marty_tls::listen::accept(
            grpc,
            tls.clone().map(|m| (m, marty_tls::listen::Alpn::Grpc)),
            refused("grpc"),
        )?;
        let http = marty_tls::listen::accept(
            http,
            tls.clone().map(|m| (m, marty_tls::listen::Alpn::Http)),
            refused("http"),
        )?;
        let tls_watch = tls.as_ref().map(|m| m.watch(tls_reload));
        let grpc_signal = serving.clone();
        let grpc_server = tonic::transport::Server::builder()
            .timeout(CALL_TIMEOUT)
            // Memory per connection is bounded: at most MAX_STREAMS calls at once (HTTP/2
            // refuses more streams, so nothing queues inside the server and no call can wait
            // on another's flow control), and small flow-control windows, so what a client
            // sends ahead of the handlers stays small.
            .max_concurrent_streams(Some(MAX_STREAMS))
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .layer(layer)
            .layer(authz)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, async move { grpc_signal.wait().await });
        let mut grpc_task: JoinHandle<Result<(), tonic::transport::Error>> =
            tokio::spawn(grpc_server);

        // HTTP: health, readiness, metrics; it outlives gRPC so probes see the shutdown.
        let http_state = HttpState {
            service,
            db: ctx.db.clone(),
            migration_version: check.migration_version,
            migrator,
            system_identifier: check.system_identifier,
            metrics: ctx.metrics.clone(),
            shutdown: serving.clone(),
            relay: relay_status.clone(),
        };
        let http_signal = http_stop.clone();
        let http_router = http_api::router(http_state.clone())
            .merge(parts.http)
            .layer(axum::middleware::from_fn(crate::authz::require_certificate));
        let http_server = axum::serve(
            http,
            http_router.into_make_service_with_connect_info::<marty_tls::PeerInfo>(),
        )
        .with_graceful_shutdown(async move { http_signal.wait().await });
        let mut http_task = tokio::spawn(async move { http_server.await });

        // gRPC health follows readiness.
        let watcher = {
            let state = http_state.clone();
            let names = parts.names.clone();
            let stop = tasks_stop.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let mut last = true;
                loop {
                    tokio::select! {
                        _ = stop.wait() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    let ready = http_api::readiness(&state).await;
                    let now = ready.is_ok();
                    if now != last {
                        match &ready {
                            Ok(()) => tracing::info!(%service, "ready again"),
                            Err(reason) => tracing::warn!(%service, %reason, "not ready"),
                        }
                        let status = if now {
                            tonic_health::ServingStatus::Serving
                        } else {
                            tonic_health::ServingStatus::NotServing
                        };
                        for name in names.iter().copied().chain([""]) {
                            health.set_service_status(name, status).await;
                        }
                        last = now;
                    }
                }
            })
        };

        // A rotated database credential, picked up without a restart.
        let credentials = credential.env.map(|env| {
            tokio::spawn(crate::credentials::watch(crate::credentials::Watch {
                service,
                env,
                pool: ctx.db.pool().clone(),
                epoch: credential.epoch,
                login: credential.login,
                password: credential.password,
                trigger: credential.reload,
                stop: tasks_stop.clone(),
            }))
        });
        // Background tasks of the service.
        let mut handles: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        for (name, task) in parts.tasks {
            let stop = tasks_stop.clone();
            handles.push((name, tokio::spawn(task(stop))));
        }
        // Events: the relay and the consumers, (re)connected whenever NATS is reachable.
        let events = tokio::spawn(events_task(
            service,
            ctx.db.pool().clone(),
            nats_url,
            nats_login,
            parts.consumers,
            tasks_stop.clone(),
            relay_status.clone(),
        ));

        // Serve until asked to stop, or until a listener fails.
        let failure = tokio::select! {
            _ = stop => None,
            r = &mut grpc_task => Some(format!("the gRPC server stopped: {}", describe_join(r))),
            r = &mut http_task => Some(format!("the HTTP server stopped: {}", describe_join(r.map(|x| x.map_err(|e| e.to_string()))))),
        };
        if let Some(f) = &failure {
            tracing::error!(%service, failure = %f, "shutting down");
        }
        tracing::info!(%service, "shutting down: no new calls; waiting for those in flight");
        for name in parts.names.iter().copied().chain([""]) {
            health
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
        serving.trigger();
        if failure.is_none() || !grpc_task.is_finished() {
            match tokio::time::timeout(grace, &mut grpc_task).await {
                Ok(_) => tracing::info!(%service, "all calls finished"),
                Err(_) => {
                    tracing::warn!(%service, grace_secs = grace.as_secs(), "calls still running after the grace period are cancelled");
                    grpc_task.abort();
                }
            }
        }
        tasks_stop.trigger();
        for (name, handle) in handles {
            match tokio::time::timeout(TASK_STOP, handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(%service, task = name, error = format!("{e:#}"), "task ended with an error")
                }
                Ok(Err(e)) => tracing::warn!(%service, task = name, error = %e, "task panicked"),
                Err(_) => tracing::warn!(%service, task = name, "task did not stop in time"),
            }
        }
        let _ = tokio::time::timeout(TASK_STOP, events).await;
        watcher.abort();
        if let Some(task) = tls_watch {
            task.abort();
        }
        if let Some(task) = credentials {
            task.abort();
        }
        // What the last calls wrote goes out now rather than at the next start.
        if let Some(relay) = relay_status.relay() {
            let deadline = tokio::time::Instant::now() + FINAL_FLUSH;
            let mut published = 0;
            while tokio::time::Instant::now() < deadline {
                match tokio::time::timeout_at(deadline, relay.relay_once()).await {
                    Ok(Ok(outcome)) if outcome.claimed > 0 && outcome.published > 0 => {
                        published += outcome.published;
                    }
                    _ => break,
                }
            }
            tracing::info!(%service, published, "outbox flushed");
        }
        http_stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
        tracing::info!(%service, "stopped");
        match failure {
            Some(f) => Err(anyhow::anyhow!(f)),
            None => Ok(()),
        }
    }
}

fn describe_join<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "ended".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Connects to NATS (retrying in the background), makes sure the stream exists, then runs the
/// relay and every consumer, restarting a consumer that fails, until `stop`.
async fn events_task(
    service: Service,
    pool: sqlx::PgPool,
    nats_url: String,
    login: Option<marty_config::NatsCredential>,
    consumers: Vec<(String, crate::ConsumerFn)>,
    stop: Shutdown,
    status: Arc<RelayStatus>,
) {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(login) = login {
        // Logged in, the server limits this service to its own subjects and inbox.
        options = options
            .user_and_password(login.user, marty_config::expose(&login.password).to_owned())
            .custom_inbox_prefix(marty_events::auth::inbox_prefix(service));
    }
    let client = match options
        .name(format!("marty-{}", service.id()))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(&nats_url)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%service, nats = %nats_url, error = %e, "cannot use the NATS server: events stay in the outbox");
            return;
        }
    };
    *status.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
    let js = async_nats::jetstream::new(client);
    let config = RelayConfig::new(service);
    let mut backoff = Duration::from_millis(500);
    loop {
        let ensured = tokio::select! {
            _ = stop.wait() => return,
            r = marty_events::relay::ensure_stream(&js, &config.stream) => r,
        };
        match ensured {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(%service, error = %e, "NATS not reachable yet; events wait in the outbox");
                tokio::select! {
                    _ = stop.wait() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    let relay = Arc::new(Relay::new(pool.clone(), js.clone(), config));
    *status.relay.lock().unwrap_or_else(|e| e.into_inner()) = Some(relay.clone());
    let mut tasks = Vec::new();
    {
        let relay = relay.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = relay.run(stop.wait()).await {
                    tracing::warn!(%service, error = %e, "relay failed; restarting");
                }
                if stop.is_triggered() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    for (filter, make) in consumers {
        let pool = pool.clone();
        let js = js.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let run = make(service, pool.clone(), js.clone(), stop.clone());
                match run.await {
                    Ok(()) if stop.is_triggered() => return,
                    Ok(()) => {}
                    Err(e) => tracing::warn!(%service, subject = %filter, error = %e, "consumer failed; restarting"),
                }
                tokio::select! {
                    _ = stop.wait() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
