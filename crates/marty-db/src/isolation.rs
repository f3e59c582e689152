//! The isolation guard: no two services may use one database, and no service a database that
//! is not its own (the legacy shared one, PostgreSQL's own, the administrator's).
//!
//! "The same database" is decided by what the servers say about themselves, never by how the
//! configuration spells them: `localhost`, `127.0.0.1`, `::1`, a DNS alias and a Unix socket
//! directory can all reach one server, and a connection pooler may even hand one database out
//! under another name. So the guard connects to every service's database and asks: the
//! server's `system_identifier` (from `pg_control_system()`, readable by every role, fixed at
//! `initdb`), the OID and name of the database it actually reached. A database reached under
//! another name than the configured one is refused; two services reaching the same (server,
//! database) are refused. A database that does not exist yet (before `setup` creates it) is
//! identified by its server and its name.
//!
//! Names alone decide the rest ([`marty_config::Config::isolation_conflicts`]): a service
//! database named like the legacy database, the administrator's maintenance database or one of
//! PostgreSQL's own is refused wherever it is.

use std::collections::BTreeMap;

use marty_config::{Config, Role, Service};
use sqlx::{Connection, PgConnection};

use crate::connect::{
    CATALOG_SEARCH_PATH, ConnectFailure, ConnectTarget, describe_connect_error, sqlstate,
};
use crate::{DbError, SqlContext};

/// Which credentials the guard may use to ask a server who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The administrative connection (`setup`, `verify`: they have it, and a service database
    /// may not exist yet).
    Admin,
    /// Each service's own role, to its own database (`migrate` as owner, a service as app).
    Role(Role),
}

/// A server's identity: `pg_control_system().system_identifier`, unique per cluster.
pub async fn server_identity(conn: &mut PgConnection) -> Result<i64, DbError> {
    sqlx::query_scalar("select system_identifier from pg_catalog.pg_control_system()")
        .fetch_one(conn)
        .await
        .context(|| "reading the server's system identifier".into())
}

/// Which database a connection reached, as the server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseIdentity {
    pub system_identifier: i64,
    /// The database's OID; `None` for a database that does not exist yet.
    pub oid: Option<u32>,
    pub name: String,
    /// The database's owner, when it exists.
    pub owner: Option<String>,
    pub is_template: bool,
}

/// Reads the identity of the database `conn` is connected to.
pub async fn connected_database(conn: &mut PgConnection) -> Result<DatabaseIdentity, DbError> {
    let (system_identifier, oid, name, owner, is_template): (i64, sqlx::postgres::types::Oid, String, String, bool) =
        sqlx::query_as(
            "select (select system_identifier from pg_catalog.pg_control_system()),
                    d.oid, d.datname::text, pg_catalog.pg_get_userbyid(d.datdba)::text, d.datistemplate
               from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()",
        )
        .fetch_one(conn)
        .await
        .context(|| "reading which database the connection reached".into())?;
    Ok(DatabaseIdentity {
        system_identifier,
        oid: Some(oid.0),
        name,
        owner: Some(owner),
        is_template,
    })
}

/// Where each service's database is, as the guard established it.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub databases: BTreeMap<Service, DatabaseIdentity>,
}

/// Refuses a configuration that would make a service use a database that is not its own.
/// Every configured service takes part, whichever are about to be acted on: a service acted on
/// must not share its database with any other.
pub async fn ensure_isolated(config: &Config, probe: Probe) -> Result<Placement, DbError> {
    let problems = config.isolation_conflicts();
    if !problems.is_empty() {
        return Err(DbError::Isolation(problems));
    }
    let mut placement = Placement::default();
    let mut problems = Vec::new();
    for db in config.databases() {
        let identity = identify(config, db.service, probe).await?;
        let owner = db.role_name(Role::Owner);
        if identity.is_template {
            match probe {
                // A template the service owns was provisioned, then flagged: `setup` repairs it.
                Probe::Admin if identity.owner.as_deref() == Some(owner.as_str()) => {}
                Probe::Admin => problems.push(format!(
                    "service {} is configured to use {}, which is a template database owned by {}: every database created from it would inherit the service's objects",
                    db.service,
                    db.location(),
                    identity.owner.as_deref().unwrap_or("?")
                )),
                Probe::Role(_) => problems.push(format!(
                    "service {}'s database {} is marked as a template, so anyone allowed to create databases can copy it: run `marty db setup`, which clears the mark",
                    db.service,
                    db.location()
                )),
            }
        }
        if identity.name != db.database {
            problems.push(format!(
                "service {} is configured with database {}, but the server at {}:{} connected it to database {}: something between (a connection pooler?) renames databases, and {} would act on another service's data",
                db.service, db.database, db.host, db.port, identity.name, db.service
            ));
        }
        for (other, other_identity) in &placement.databases {
            let same = identity.system_identifier == other_identity.system_identifier
                && match (identity.oid, other_identity.oid) {
                    (Some(a), Some(b)) => a == b,
                    _ => identity.name == other_identity.name,
                };
            if same {
                problems.push(format!(
                    "services {other} ({}) and {} ({}) are configured with the same database: {} on one server (system identifier {}), however its address is written; each service must own its database, or one could read and change the other's data",
                    config.database(*other).location(),
                    db.service,
                    db.location(),
                    identity.name,
                    identity.system_identifier,
                ));
            }
        }
        placement.databases.insert(db.service, identity);
    }
    if probe == Probe::Admin {
        // The legacy database: not a template, and none of the services'.
        let legacy = config.default_database();
        let target = ConnectTarget::admin(config.admin())
            .for_legacy(legacy)
            .with_session_settings(&[("search_path", CATALOG_SEARCH_PATH.to_owned())]);
        if let Ok(mut conn) = target.try_connect().await {
            let identity = connected_database(&mut conn).await;
            conn.close().await.ok();
            let identity = identity?;
            if identity.is_template {
                problems.push(format!(
                    "the legacy shared database {} is a template database: provisioning would change what every new database inherits",
                    legacy.database
                ));
            }
            if identity.name != legacy.database {
                problems.push(format!(
                    "the legacy shared database is configured as {}, but the server connected it to database {}",
                    legacy.database, identity.name
                ));
            }
            for (service, other) in &placement.databases {
                if other.system_identifier == identity.system_identifier
                    && other.oid == identity.oid
                {
                    problems.push(format!(
                        "service {service} and the legacy shared database are the same database {} on one server",
                        identity.name
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(placement)
    } else {
        Err(DbError::Isolation(problems))
    }
}

/// The identity of `service`'s database, connecting to it with the probe's credentials; with
/// the administrator, a database that does not exist yet is identified by server and name.
async fn identify(
    config: &Config,
    service: Service,
    probe: Probe,
) -> Result<DatabaseIdentity, DbError> {
    let db = config.database(service);
    let target = match probe {
        Probe::Admin => ConnectTarget::admin(config.admin())
            .at(&db.host, db.port, db.sslmode)
            .with_database(&db.database),
        Probe::Role(role) => ConnectTarget::role(db, role)?,
    }
    .with_session_settings(&[("search_path", CATALOG_SEARCH_PATH.to_owned())]);
    let cannot = |message: String| {
        DbError::Isolation(vec![format!(
            "whether service {service}'s database {} is its own cannot be established: {message}",
            db.location()
        )])
    };
    match target.try_connect().await {
        Ok(mut conn) => {
            let identity = connected_database(&mut conn).await;
            conn.close().await.ok();
            identity
        }
        // Not created yet: the server (through its maintenance database) and the name.
        Err(ConnectFailure::Driver(e))
            if probe == Probe::Admin && sqlstate(&e).as_deref() == Some("3D000") =>
        {
            let mut conn = target
                .with_database(&config.admin().database)
                .connect()
                .await?;
            let system_identifier = server_identity(&mut conn).await;
            conn.close().await.ok();
            Ok(DatabaseIdentity {
                system_identifier: system_identifier?,
                oid: None,
                name: db.database.clone(),
                owner: None,
                is_template: false,
            })
        }
        // Refused by the database's privileges: the role reached a database that is not open to
        // it, which its own database would be.
        Err(ConnectFailure::Driver(e)) if sqlstate(&e).as_deref() == Some("42501") => {
            Err(cannot(describe_connect_error(&e)))
        }
        Err(ConnectFailure::Driver(e)) => Err(DbError::Connect {
            target: target.describe(),
            message: describe_connect_error(&e),
        }),
        Err(ConnectFailure::Timeout) => Err(DbError::Connect {
            target: target.describe(),
            message: format!(
                "no answer within {}s (connect timeout)",
                target.connect_timeout.as_secs_f32()
            ),
        }),
    }
}
