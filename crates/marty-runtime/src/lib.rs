//! The runtime every Marty service runs on.
//!
//! A service is described once by a [`ServiceDescriptor`] — its id, its migrations, whether it
//! holds private keys, and a `build` function that turns a [`ServiceContext`] into its gRPC
//! services, event consumers and background tasks ([`ServiceParts`]). `marty serve`,
//! `marty db migrate` and the tests all iterate the same descriptors.
//!
//! [`Application::build`] then does, in order, what every service needs:
//!
//! 1. refuses a configuration that breaks isolation by name, connects its `app` role pool and
//!    proves it reached its own database on the provisioned server with its migrations applied
//!    ([`marty_db::startup`]);
//! 2. opens its key store under its KEK (re-wrapping keys sealed under a previous KEK is the
//!    service's business, at its own start);
//! 3. binds the gRPC and HTTP listeners itself (port 0 allowed; [`Application::grpc_port`] and
//!    [`Application::http_port`] report the real ones);
//! 4. builds the service's parts.
//!
//! [`Application::run`] serves gRPC (with `grpc.health.v1` and server reflection), HTTP
//! (`/healthz`, `/readyz`, `/metrics`), the outbox relay and the consumers, until the shutdown
//! signal; then it stops accepting, lets in-flight calls finish (within the grace period), stops
//! the consumers and tasks, flushes the outbox to NATS once more, and returns.

mod app;
pub mod authz;
pub mod batch;
mod context;
pub mod credentials;
mod error;
mod http_api;
pub mod metrics;
pub mod paging;
mod shutdown;
pub mod telemetry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use marty_config::Service;
use sqlx::migrate::Migrator;

pub use app::{Application, MAX_MESSAGE_BYTES, StartError};
pub use context::{Peers, ServiceContext, ServiceDb, ServicePolicy};
pub use error::ApiError;
pub use shutdown::{Shutdown, terminate_signal};

/// A boxed future, as descriptors and tasks return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a service is built.
#[derive(Clone, Copy)]
pub struct ServiceDescriptor {
    pub service: Service,
    /// The embedded migrations of the service's database.
    pub migrator: &'static Migrator,
    /// Whether the service holds private keys (and so needs its KEK to start).
    pub needs_keys: bool,
    /// The subject filters its consumers read: what its NATS user may subscribe to (see
    /// `marty_events::auth`). A consumer the service adds must be one of these.
    pub consumes: &'static [&'static str],
    /// Builds the service's parts from its context.
    pub build: fn(ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>>,
}

impl std::fmt::Debug for ServiceDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDescriptor")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

type TaskFn = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, anyhow::Result<()>> + Send>;
type ConsumerFn = Arc<
    dyn Fn(
            Service,
            sqlx::PgPool,
            async_nats::jetstream::Context,
            Shutdown,
        ) -> BoxFuture<'static, Result<(), marty_events::EventError>>
        + Send
        + Sync,
>;

/// What a service contributes to its process.
#[derive(Default)]
pub struct ServiceParts {
    pub(crate) routes: tonic::service::RoutesBuilder,
    pub(crate) names: Vec<&'static str>,
    pub(crate) tasks: Vec<(&'static str, TaskFn)>,
    pub(crate) consumers: Vec<(String, ConsumerFn)>,
    pub(crate) http: axum::Router,
}

impl std::fmt::Debug for ServiceParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceParts")
            .field("grpc", &self.names)
            .field(
                "tasks",
                &self.tasks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "consumers",
                &self.consumers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ServiceParts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves a generated gRPC service (its health status follows the process's readiness).
    pub fn grpc<S>(mut self, service: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Serves `router`'s routes on the service's HTTP listener, beside `/healthz`, `/readyz`
    /// and `/metrics` (which it must not redefine).
    pub fn http(mut self, router: axum::Router) -> Self {
        self.http = self.http.merge(router);
        self
    }

    /// Runs `task` until shutdown; an error is logged and the task is not restarted.
    pub fn task<F, Fut>(mut self, name: &'static str, task: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks
            .push((name, Box::new(move |s| Box::pin(task(s)))));
        self
    }

    /// Consumes events matching `filter_subject` (e.g. `marty.csca.certificate.revoked`) with
    /// `handler`, in a transaction of the service's own database with the inbox row. The
    /// runtime (re)connects the consumer whenever NATS is reachable.
    pub fn consume<H>(mut self, filter_subject: &str, handler: H) -> Self
    where
        H: marty_events::Handler + 'static,
    {
        let handler = Arc::new(handler);
        let filter = filter_subject.to_owned();
        let f: ConsumerFn = {
            let filter = filter.clone();
            Arc::new(move |service, pool, js, shutdown: Shutdown| {
                let handler = SharedHandler(handler.clone());
                let config = marty_events::ConsumerConfig::new(service, filter.clone());
                Box::pin(async move {
                    let mut consumer =
                        marty_events::Consumer::new(pool, &js, config, handler).await?;
                    consumer.run(shutdown.wait()).await
                })
            })
        };
        self.consumers.push((filter, f));
        self
    }
}

/// A handler shared between consumer restarts.
struct SharedHandler<H>(Arc<H>);

impl<H: marty_events::Handler> marty_events::Handler for SharedHandler<H> {
    fn handle<'a>(
        &'a self,
        tx: &'a mut sqlx::PgConnection,
        event: &'a marty_events::Envelope,
    ) -> impl Future<Output = Result<(), String>> + Send + 'a {
        self.0.handle(tx, event)
    }
}

/// Runs `f` — which parses input from the network — on a blocking thread with
/// [`marty_icao::PARSER_STACK_BYTES`] of stack, so that no input can exhaust an async worker's
/// stack. A panic in `f` becomes an error.
pub async fn untrusted<T, F>(f: F) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || marty_icao::on_parser_stack(f))
        .await
        .map_err(|e| format!("parser task failed: {e}"))
}

/// Runs CPU-bound work (signing, key generation) off the async workers.
pub async fn cpu<T, F>(f: F) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("worker task failed: {e}"))
}

/// Logs an unexpected error once, with its causes and an id, and returns the opaque status
/// that clients see: never SQL, paths or other internals.
/// (Called inside the RPC's span, which names the service and the method.)
pub fn internal_status(error: &anyhow::Error) -> tonic::Status {
    let id = uuid::Uuid::new_v4();
    tracing::error!(error_id = %id, error = format!("{error:#}"), "internal error");
    tonic::Status::internal(format!("internal error (reference {id})"))
}
