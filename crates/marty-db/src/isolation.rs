//! The isolation guard: no two services may use one database, and no service a database that
//! is not its own (the legacy shared one, PostgreSQL's own, the administrator's).
//!
//! "The same database" is decided by what the servers say about themselves, never by how the
//! configuration spells them: `localhost`, `127.0.0.1`, `::1`, a DNS alias and a Unix socket
//! directory can all reach one server. Each server reports its `system_identifier` (from
//! `pg_control_system()`, readable by every role, fixed at `initdb`), and within one server a
//! database is its name. So two services are in conflict when their database names are equal
//! and their servers report the same identifier — which can only be learnt by connecting, for
//! the services whose database names are equal (in every sound configuration, none).
//!
//! Names alone decide the rest ([`marty_config::Config::isolation_conflicts`]): a service
//! database named like the legacy database, the administrator's maintenance database or one of
//! PostgreSQL's own is refused wherever it is. `setup` also refuses a service database that
//! exists as a template (`datistemplate`), whatever its name.

use std::collections::BTreeMap;

use marty_config::{Config, Role, Service};
use sqlx::{Connection, PgConnection};

use crate::connect::ConnectTarget;
use crate::{DbError, SqlContext};

/// Which credentials the guard may use to ask a server who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The administrative connection, to the maintenance database of each service's server
    /// (`setup`, `verify`: they have it, and the service database may not exist yet).
    Admin,
    /// Each service's own role, to its own database (`migrate` as owner, a service as app).
    Role(Role),
}

/// A server's identity: `pg_control_system().system_identifier`, unique per cluster.
pub async fn server_identity(conn: &mut PgConnection) -> Result<i64, DbError> {
    sqlx::query_scalar("select system_identifier from pg_control_system()")
        .fetch_one(conn)
        .await
        .context(|| "reading the server's system identifier".into())
}

/// Where a service's database is, as far as the guard established it.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The system identifier of each service's server, for the services that were probed.
    pub servers: BTreeMap<Service, i64>,
}

/// Refuses a configuration that would make a service use a database that is not its own.
/// Every configured service takes part, whichever are about to be acted on: a service acted on
/// must not share its database with any other.
pub async fn ensure_isolated(config: &Config, probe: Probe) -> Result<Placement, DbError> {
    let problems = config.isolation_conflicts();
    if !problems.is_empty() {
        return Err(DbError::Isolation(problems));
    }
    let mut by_name: BTreeMap<&str, Vec<Service>> = BTreeMap::new();
    for db in config.databases() {
        by_name.entry(&db.database).or_default().push(db.service);
    }
    let mut placement = Placement::default();
    let mut problems = Vec::new();
    for (name, services) in by_name.into_iter().filter(|(_, s)| s.len() > 1) {
        let mut seen: Vec<(Service, i64)> = Vec::new();
        for service in services {
            let identity = identify(config, service, probe).await.map_err(|e| {
                DbError::Isolation(vec![format!(
                    "services {} are all configured with a database named {name}; whether that is one database cannot be established, because {e}",
                    config
                        .databases()
                        .filter(|d| d.database == name)
                        .map(|d| format!("{} ({})", d.service, d.location()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )])
            })?;
            placement.servers.insert(service, identity);
            for (other, other_identity) in &seen {
                if *other_identity == identity {
                    problems.push(format!(
                        "services {other} ({}) and {service} ({}) are configured with the same database: {name} on one server (system identifier {identity}), however its address is written; each service must own its database, or one could read and change the other's data",
                        config.database(*other).location(),
                        config.database(service).location(),
                    ));
                }
            }
            seen.push((service, identity));
        }
    }
    if problems.is_empty() {
        Ok(placement)
    } else {
        Err(DbError::Isolation(problems))
    }
}

async fn identify(config: &Config, service: Service, probe: Probe) -> Result<i64, DbError> {
    let db = config.database(service);
    let target = match probe {
        Probe::Admin => ConnectTarget::admin(config.admin()).at(&db.host, db.port, db.sslmode),
        Probe::Role(role) => ConnectTarget::role(db, role)?,
    };
    let mut conn = target.connect().await?;
    let identity = server_identity(&mut conn).await;
    conn.close().await.ok();
    identity
}
