//! `marty db status` and `marty db test-connections`: what each service database looks like,
//! seen through the service's own roles (readonly for monitoring, app for connectivity).

use std::collections::BTreeMap;
use std::time::Instant;

use marty_config::{Role, Service, ServiceDatabase};
use serde::Serialize;
use sqlx::Connection;
use sqlx::migrate::Migrator;

use crate::connect::ConnectTarget;
use crate::migrate::applied;
use crate::{DbError, SqlContext};

#[derive(Debug, Serialize)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub service: Service,
    pub database: String,
    pub location: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub server_version: Option<String>,
    pub applied: Vec<MigrationInfo>,
    pub pending: Vec<MigrationInfo>,
    /// Applied migrations whose embedded file has changed since (must never happen).
    pub modified: Vec<i64>,
    pub size_bytes: Option<i64>,
    /// Sessions connected to this database, per role.
    pub connections: BTreeMap<String, i64>,
    /// Events written but not yet published, and the age of the oldest.
    pub outbox: Option<marty_events::outbox::OutboxMetrics>,
    pub last_backup: Option<crate::monitor::LastBackup>,
    /// The running service's connection pool, from its `/metrics` (absent when it is not
    /// running).
    pub pool: Option<PoolFigures>,
}

/// A running service's pool as its `/metrics` reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolFigures {
    pub in_use: f64,
    pub idle: f64,
    pub max: f64,
    pub saturation: f64,
    pub waiting: f64,
    /// Mean wait for a connection since the service started.
    pub mean_wait_seconds: f64,
}

impl PoolFigures {
    /// Reads the figures from a Prometheus text exposition; `None` when the pool's metrics
    /// are not in it.
    pub fn from_metrics(text: &str, service: Service) -> Option<Self> {
        // Whatever answers on the port must be this service (not another one, or another
        // program): its pool figures carry its label.
        let label = format!("service=\"{}\"", service.id());
        let mut p = PoolFigures::default();
        let (mut wait_sum, mut wait_count, mut seen) = (0.0, 0.0, false);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let metric = name.split('{').next().unwrap_or(name);
            if metric.starts_with("marty_db_pool") && !name.contains(&label) {
                continue;
            }
            match metric {
                "marty_db_pool_connections" if name.contains("state=\"in_use\"") => {
                    p.in_use = value;
                    seen = true;
                }
                "marty_db_pool_connections" if name.contains("state=\"idle\"") => p.idle = value,
                "marty_db_pool_max_connections" => p.max = value,
                "marty_db_pool_saturation" => p.saturation = value,
                "marty_db_pool_waiting" => p.waiting = value,
                "marty_db_pool_wait_seconds_sum" => wait_sum = value,
                "marty_db_pool_wait_seconds_count" => wait_count = value,
                _ => {}
            }
        }
        if wait_count > 0.0 {
            p.mean_wait_seconds = wait_sum / wait_count;
        }
        seen.then_some(p)
    }
}

/// Reads the status of `db` as its readonly role; an unreachable database is reported, not an
/// error.
pub async fn status(db: &ServiceDatabase, migrator: &Migrator) -> ServiceStatus {
    let mut out = ServiceStatus {
        service: db.service,
        database: db.database.clone(),
        location: format!("{}:{}", db.host, db.port),
        reachable: false,
        error: None,
        server_version: None,
        applied: Vec::new(),
        pending: Vec::new(),
        modified: Vec::new(),
        size_bytes: None,
        connections: BTreeMap::new(),
        outbox: None,
        last_backup: None,
        pool: None,
    };
    if let Err(e) = fill(db, migrator, &mut out).await {
        out.error = Some(e.to_string());
    }
    out
}

async fn fill(
    db: &ServiceDatabase,
    migrator: &Migrator,
    out: &mut ServiceStatus,
) -> Result<(), DbError> {
    // A lock or a stalled server must not hold the status up.
    let mut conn = ConnectTarget::role(db, Role::Readonly)?
        .with_session_settings(&[("statement_timeout", "5000".to_owned())])
        .connect()
        .await?;
    out.reachable = true;
    let (version, size): (String, i64) = sqlx::query_as(
        "select current_setting('server_version'), pg_database_size(current_database())",
    )
    .fetch_one(&mut conn)
    .await
    .context(|| "reading server version and size".into())?;
    out.server_version = Some(version);
    out.size_bytes = Some(size);
    out.connections = crate::monitor::connections(&mut conn).await?;
    out.last_backup = crate::monitor::last_backup(&mut conn).await?;
    out.outbox = marty_events::outbox::metrics(&mut conn).await.ok();
    let done = applied(&mut conn).await?;
    for m in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match done.iter().find(|a| a.version == m.version) {
            Some(a) => {
                if a.checksum != *m.checksum {
                    out.modified.push(m.version);
                }
                out.applied.push(MigrationInfo {
                    version: m.version,
                    description: m.description.to_string(),
                });
            }
            None => out.pending.push(MigrationInfo {
                version: m.version,
                description: m.description.to_string(),
            }),
        }
    }
    conn.close().await.ok();
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct ConnectionCheck {
    pub service: Service,
    pub role: String,
    pub location: String,
    pub ok: bool,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Connects as the app role to its own database and runs `select 1`, timing both.
pub async fn test_connection(db: &ServiceDatabase) -> ConnectionCheck {
    let start = Instant::now();
    let result = async {
        let mut conn = ConnectTarget::role(db, Role::App)?.connect().await?;
        sqlx::query("select 1")
            .execute(&mut conn)
            .await
            .context(|| "select 1".into())?;
        conn.close().await.ok();
        Ok::<_, DbError>(())
    }
    .await;
    ConnectionCheck {
        service: db.service,
        role: db.role_name(Role::App),
        location: db.location(),
        ok: result.is_ok(),
        latency_ms: start.elapsed().as_secs_f64() * 1000.0,
        error: result.err().map(|e| e.to_string()),
    }
}
