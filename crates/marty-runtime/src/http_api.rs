//! The HTTP listener of every service: `/healthz` (the process is alive), `/readyz` (it can
//! serve: its own database answers with the expected migrations, and it is not shutting down)
//! and `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use marty_config::Service;

use crate::context::ServiceDb;
use crate::metrics::Registry;
use crate::shutdown::Shutdown;

/// How long `/readyz` waits for the database before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(crate) struct HttpState {
    pub service: Service,
    pub db: ServiceDb,
    pub migration_version: i64,
    pub migrator: &'static sqlx::migrate::Migrator,
    pub system_identifier: i64,
    pub metrics: Arc<Registry>,
    pub shutdown: Shutdown,
    pub relay: Arc<crate::app::RelayStatus>,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(state): State<HttpState>) -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({ "status": "alive", "service": state.service.id() }),
    )
}

/// Whether the service can serve, and why not.
pub(crate) async fn readiness(state: &HttpState) -> Result<(), String> {
    if state.shutdown.is_triggered() {
        return Err("shutting down".into());
    }
    match tokio::time::timeout(
        READY_TIMEOUT,
        marty_db::startup::ready(state.db.pool(), state.migration_version),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(format!(
            "database did not answer within {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match readiness(&state).await {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({
                "ready": true,
                "service": state.service.id(),
                "migration_version": state.migration_version,
            }),
        ),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "ready": false, "service": state.service.id(), "reason": reason }),
        ),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let service = state.service.id();
    let m = &state.metrics;
    let pool = state.db.pool();
    let size = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    let labels = [("service", service)];
    m.set(
        "marty_db_pool_connections",
        "Connections of the service's pool by state.",
        &[("service", service), ("state", "in_use")],
        (size - idle).max(0.0),
    );
    m.set(
        "marty_db_pool_connections",
        "Connections of the service's pool by state.",
        &[("service", service), ("state", "idle")],
        idle,
    );
    let max = f64::from(pool.options().get_max_connections());
    m.set(
        "marty_db_pool_max_connections",
        "Connections the service's pool may open.",
        &labels,
        max,
    );
    m.set(
        "marty_db_pool_saturation",
        "Share of the pool's connections in use (1 = every connection busy).",
        &labels,
        if max > 0.0 {
            (size - idle).max(0.0) / max
        } else {
            0.0
        },
    );
    m.set(
        "marty_db_pool_waiting",
        "Requests waiting for a pooled connection.",
        &labels,
        state.db.waiting() as f64,
    );
    m.set(
        "marty_build_info",
        "The running binary's version, as a label (the value is always 1).",
        &[("service", service), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    m.set(
        "marty_migration_version",
        "Newest migration the binary embeds and the database has applied.",
        &labels,
        state.migration_version as f64,
    );
    let ready = readiness(&state).await.is_ok();
    m.set(
        "marty_ready",
        "1 when the service can serve (database reachable, migrations as expected).",
        &labels,
        if ready { 1.0 } else { 0.0 },
    );
    // The database as it sees itself: size, sessions, migrations, last backup.
    let health = async {
        let mut conn = pool.acquire().await.ok()?;
        marty_db::monitor::health(&mut conn, state.migrator)
            .await
            .ok()
    };
    if let Ok(Some(h)) = tokio::time::timeout(READY_TIMEOUT, health).await {
        database_metrics(m, service, &h);
    }
    // The outbox as the database sees it; skipped (and kept at its last value) when the
    // database does not answer in time, so a scrape never hangs.
    let outbox = async {
        let mut conn = pool.acquire().await.ok()?;
        marty_events::outbox::metrics(&mut conn).await.ok()
    };
    if let Ok(Some(o)) = tokio::time::timeout(READY_TIMEOUT, outbox).await {
        m.set(
            "marty_outbox_backlog",
            "Events written but not yet published to NATS.",
            &labels,
            o.backlog as f64,
        );
        m.set(
            "marty_outbox_oldest_age_seconds",
            "Age of the oldest unpublished event (0 when none).",
            &labels,
            o.oldest_unpublished_age_secs.unwrap_or(0.0),
        );
        m.set(
            "marty_outbox_dead_lettered",
            "Events the relay gave up on.",
            &labels,
            o.dead_lettered as f64,
        );
        m.set(
            "marty_inbox_parked",
            "Consumed events parked after too many failures.",
            &labels,
            o.parked as f64,
        );
    }
    let relay = state.relay.snapshot();
    m.set(
        "marty_relay_published",
        "Events this process published to NATS.",
        &labels,
        relay.published as f64,
    );
    m.set(
        "marty_relay_publish_failures",
        "Failed publish attempts of this process.",
        &labels,
        relay.publish_failures as f64,
    );
    m.set(
        "marty_nats_connected",
        "1 while the event relay is connected to NATS.",
        &labels,
        if state.relay.connected() { 1.0 } else { 0.0 },
    );
    m.set(
        "marty_server_identity",
        "The PostgreSQL system identifier the service checked at start (as a label).",
        &[
            ("service", service),
            ("system_identifier", &state.system_identifier.to_string()),
        ],
        1.0,
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
        .into_response()
}

fn database_metrics(m: &Registry, service: &str, h: &marty_db::monitor::DatabaseHealth) {
    let labels = [("service", service)];
    m.set(
        "marty_db_size_bytes",
        "Size of the service's database.",
        &labels,
        h.size_bytes as f64,
    );
    let by_role: Vec<(Vec<(&str, &str)>, f64)> = h
        .connections
        .iter()
        .map(|(role, n)| {
            (
                vec![("service", service), ("role", role.as_str())],
                *n as f64,
            )
        })
        .collect();
    m.set_all(
        "marty_db_connections",
        "Sessions connected to the service's database, per role (all clients, not only this process).",
        &by_role,
    );
    m.set(
        "marty_migrations_pending",
        "Migrations the binary embeds that the database has not applied.",
        &labels,
        h.pending_migrations as f64,
    );
    let (at, age) = match &h.last_backup {
        Some(b) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            (Some(now - b.age_seconds), b.age_seconds)
        }
        None => (None, f64::INFINITY),
    };
    m.set(
        "marty_backup_age_seconds",
        "Time since the last successful `marty db backup` of the service's database (+Inf: never).",
        &labels,
        age,
    );
    if let Some(at) = at {
        m.set(
            "marty_backup_last_success_timestamp_seconds",
            "When the last successful backup of the service's database finished (Unix time).",
            &labels,
            at.round(),
        );
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}
