//! What a service proves about its database before it serves, and keeps proving for `/readyz`.
//!
//! A service process holds only its own `app` role's credentials, so it cannot run the whole
//! isolation guard (which logs in to every service's database). What it can check, acting as
//! that role on the database it reached:
//!
//! - the server says it is connected as `marty_<service>_app` to the configured database name
//!   (a pooler could map users or rename databases);
//! - the database is owned by `marty_<service>_owner`;
//! - the database carries the mark `marty db setup` writes after the guard accepted the
//!   placement: the service's id and the server's `system_identifier`. A database copied to
//!   another server, or provisioned for another service, is refused until `setup` runs there;
//! - every migration the binary embeds is applied, unedited, and none it does not know.
//!
//! A database of another service is normally refused earlier still: the role has no CONNECT
//! privilege on it.

use marty_config::{Role, Service, ServiceDatabase};
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool};

use crate::connect::{describe_connect_error, sqlstate};
use crate::isolation::server_identity;
use crate::migrate::applied;
use crate::{DbError, SqlContext};

/// The comment `marty db setup` puts on a service's database.
pub fn marker(service: Service, system_identifier: i64) -> String {
    format!(
        "marty: database of service {} on server {system_identifier}",
        service.id()
    )
}

/// What the service established about its database at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseCheck {
    pub system_identifier: i64,
    pub database: String,
    /// The newest applied migration, which is the newest embedded one.
    pub migration_version: i64,
}

fn refuse(service: Service, message: String) -> DbError {
    DbError::Startup { service, message }
}

/// Runs the checks of the module documentation on a connection from `pool` (the service's app
/// role pool for `db`).
pub async fn check_service_database(
    pool: &PgPool,
    db: &ServiceDatabase,
    migrator: &Migrator,
) -> Result<DatabaseCheck, DbError> {
    let service = db.service;
    let mut conn = pool.acquire().await.map_err(|e| {
        let message = match sqlstate(&e).as_deref() {
            Some("42501") => format!(
                "its role {} may not connect to database {} ({}): that is not {service}'s database, or `marty db setup` has not provisioned it",
                db.role_name(Role::App),
                db.database,
                db.location()
            ),
            Some("3D000") => format!(
                "database {} does not exist at {}: run `marty db setup` and `marty db migrate`",
                db.database,
                db.location()
            ),
            Some("28P01") | Some("28000") => format!(
                "the server at {} refused {}'s password: set {} to the password `marty db setup` gave it",
                db.location(),
                db.role_name(Role::App),
                service.password_env(Role::App)
            ),
            // Unreachable: the environment, not the configuration, is at fault.
            _ => {
                return DbError::Connect {
                    target: format!("{} as {}", db.location(), db.role_name(Role::App)),
                    message: describe_connect_error(&e),
                };
            }
        };
        refuse(service, message)
    })?;
    check_identity(&mut conn, db, Role::App).await?;
    let system_identifier = server_identity(&mut conn).await?;
    let migration_version = check_migrations(&mut conn, service, migrator).await?;
    Ok(DatabaseCheck {
        system_identifier,
        database: db.database.clone(),
        migration_version,
    })
}

/// That `role`'s connection reaches `db`'s own database on the server `marty db setup`
/// provisioned it on (its mark), without any other service's credentials: what a job that
/// holds only one service's secrets (a per-service migration Job) can prove, and what the
/// services themselves rely on at start. The mark is written by setup only after the isolation
/// guard accepted the whole placement.
pub async fn check_own_database(db: &ServiceDatabase, role: Role) -> Result<(), DbError> {
    let mut conn = crate::ConnectTarget::role(db, role)?.connect().await?;
    let checked = check_identity(&mut conn, db, role).await;
    sqlx::Connection::close(conn).await.ok();
    checked
}

async fn check_identity(
    conn: &mut PgConnection,
    db: &ServiceDatabase,
    role: Role,
) -> Result<(), DbError> {
    let service = db.service;
    let (user, database, owner, comment, system_identifier): (
        String,
        String,
        String,
        Option<String>,
        i64,
    ) = sqlx::query_as(
        "select current_user::text, pg_catalog.current_database()::text,
                pg_catalog.pg_get_userbyid(d.datdba)::text,
                pg_catalog.shobj_description(d.oid, 'pg_database'),
                (select system_identifier from pg_catalog.pg_control_system())
           from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("{service}: reading which database the connection reached"))?;
    let expected = db.role_name(role);
    if user != expected {
        return Err(refuse(
            service,
            format!("the server says this connection is role {user}, not {expected}"),
        ));
    }
    if database != db.database {
        return Err(refuse(
            service,
            format!(
                "configured with database {}, the server connected it to {database} (a connection pooler renaming databases?)",
                db.database
            ),
        ));
    }
    let wanted_owner = db.role_name(Role::Owner);
    if owner != wanted_owner {
        return Err(refuse(
            service,
            format!(
                "database {database} at {} is owned by {owner}, not {wanted_owner}: it is not {service}'s database, or `marty db setup` has not run",
                db.location()
            ),
        ));
    }
    let wanted = marker(service, system_identifier);
    match comment {
        Some(c) if c == wanted => Ok(()),
        Some(c) if c.starts_with("marty: database of service ") => {
            let named_service = c
                .trim_start_matches("marty: database of service ")
                .split(' ')
                .next()
                .unwrap_or("?")
                .to_owned();
            if named_service != service.id() {
                Err(refuse(
                    service,
                    format!(
                        "database {database} at {} is marked as {named_service}'s database",
                        db.location()
                    ),
                ))
            } else {
                Err(refuse(
                    service,
                    format!(
                        "database {database} was provisioned on another server ({c:?}, this server is {system_identifier}): it was copied or restored without `marty db setup`; run it here so the isolation guard sees the new placement"
                    ),
                ))
            }
        }
        _ => Err(refuse(
            service,
            format!(
                "database {database} at {} does not carry the mark `marty db setup` writes after the isolation guard accepted it: run `marty db setup`",
                db.location()
            ),
        )),
    }
}

/// Every embedded migration applied with the same checksum, none unknown; the newest version.
async fn check_migrations(
    conn: &mut PgConnection,
    service: Service,
    migrator: &Migrator,
) -> Result<i64, DbError> {
    let applied = applied(conn).await?;
    for m in migrator.iter() {
        match applied.iter().find(|a| a.version == m.version) {
            None => {
                return Err(refuse(
                    service,
                    format!(
                        "migration {} ({}) is not applied: run `marty db migrate --service {}`",
                        m.version,
                        m.description,
                        service.id()
                    ),
                ));
            }
            Some(a) if a.checksum != m.checksum.as_ref() => {
                return Err(refuse(
                    service,
                    format!(
                        "migration {} was applied with different contents than this build embeds (an edited migration)",
                        m.version
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(unknown) = applied
        .iter()
        .find(|a| !migrator.iter().any(|m| m.version == a.version))
    {
        return Err(refuse(
            service,
            format!(
                "the database has migration {} applied, which this build does not know: it was migrated by a newer version",
                unknown.version
            ),
        ));
    }
    Ok(migrator.iter().map(|m| m.version).max().unwrap_or(0))
}

/// For `/readyz`: the database answers and its newest migration is `expected`.
pub async fn ready(pool: &PgPool, expected: i64) -> Result<(), String> {
    let version: Option<i64> =
        sqlx::query_scalar("select max(version) from public._sqlx_migrations where success")
            .fetch_one(pool)
            .await
            .map_err(|e| format!("database unreachable: {}", describe_connect_error(&e)))?;
    match version {
        Some(v) if v == expected => Ok(()),
        other => Err(format!(
            "migration version {} in the database, {expected} expected",
            other.map_or("none".to_owned(), |v| v.to_string())
        )),
    }
}
