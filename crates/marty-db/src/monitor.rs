//! What monitoring reads from a service's own database: size, sessions per role, migrations
//! still pending, and the last successful backup.
//!
//! A running service can read only its own database, so the fact that it was backed up has to
//! be recorded there: `marty db backup` appends a row to [`BACKUP_HISTORY_TABLE`] (as the owner
//! role, after the dump and its manifest are on disk), and both `/metrics` and `marty db status`
//! report its age. The table is created by `marty db migrate` beside the migrations' history
//! and, like it, is read-only for the service's `app` role.

use std::collections::BTreeMap;

use marty_config::{Role, ServiceDatabase};
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::backup::Manifest;
use crate::connect::ConnectTarget;
use crate::migrate::applied;
use crate::sql::ident;
use crate::{DbError, SqlContext};

/// The platform's record of successful backups, one row per dump.
pub const BACKUP_HISTORY_TABLE: &str = "marty_backup_history";

/// The most recent successful backup of a database.
#[derive(Debug, Clone, Serialize)]
pub struct LastBackup {
    pub finished_at: String,
    pub age_seconds: f64,
    pub dump_file: String,
    pub dump_sha256: String,
    pub dump_bytes: i64,
}

/// The database-side figures of one service.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseHealth {
    pub size_bytes: i64,
    /// Sessions connected to the database, per role.
    pub connections: BTreeMap<String, i64>,
    /// Newest applied migration.
    pub migration_version: Option<i64>,
    /// Embedded migrations not applied yet.
    pub pending_migrations: usize,
    pub last_backup: Option<LastBackup>,
}

/// Reads the figures over `conn`, a connection to the service's own database as any of its
/// roles.
pub async fn health(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<DatabaseHealth, DbError> {
    let size_bytes: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
        .fetch_one(&mut *conn)
        .await
        .context(|| "reading the database size".into())?;
    let connections = connections(conn).await?;
    let done = applied(conn).await?;
    let pending_migrations = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| !done.iter().any(|a| a.version == m.version))
        .count();
    Ok(DatabaseHealth {
        size_bytes,
        connections,
        migration_version: done.last().map(|m| m.version),
        pending_migrations,
        last_backup: last_backup(conn).await?,
    })
}

/// Sessions on the current database per role (`(background)` for server processes).
pub async fn connections(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>, DbError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select coalesce(usename::text, '(background)'), count(*) from pg_stat_activity
         where datname = current_database() group by 1 order by 1",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading connections".into())?;
    Ok(rows.into_iter().collect())
}

/// The newest row of the backup history; `None` when there is none (or no table: a database
/// restored from a dump older than the table).
pub async fn last_backup(conn: &mut PgConnection) -> Result<Option<LastBackup>, DbError> {
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(format!("public.{BACKUP_HISTORY_TABLE}"))
        .fetch_one(&mut *conn)
        .await
        .context(|| "looking for the backup history".into())?;
    if !exists {
        return Ok(None);
    }
    let row: Option<(String, f64, String, String, i64)> = sqlx::query_as(&format!(
        "select to_char(finished_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                extract(epoch from now() - finished_at)::float8,
                dump_file, dump_sha256, dump_bytes
         from public.{BACKUP_HISTORY_TABLE} order by finished_at desc limit 1"
    ))
    .fetch_optional(&mut *conn)
    .await
    .context(|| "reading the backup history".into())?;
    Ok(row.map(
        |(finished_at, age_seconds, dump_file, dump_sha256, dump_bytes)| LastBackup {
            finished_at,
            age_seconds: age_seconds.max(0.0),
            dump_file,
            dump_sha256,
            dump_bytes,
        },
    ))
}

/// Creates the backup history if it is missing (idempotent), readable by the service's roles
/// and writable only by the owner. Run as the owner.
pub(crate) async fn ensure_backup_history(
    conn: &mut PgConnection,
    db: &ServiceDatabase,
) -> Result<(), DbError> {
    let table = format!("public.{BACKUP_HISTORY_TABLE}");
    sqlx::raw_sql(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             finished_at timestamptz PRIMARY KEY,
             started_at timestamptz NOT NULL,
             dump_file text NOT NULL,
             dump_sha256 text NOT NULL,
             dump_bytes bigint NOT NULL,
             tables integer NOT NULL,
             rows bigint NOT NULL,
             made_by text NOT NULL
         );
         REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {table} FROM {app};
         GRANT SELECT ON {table} TO {app}, {readonly};",
        app = ident(&db.role_name(Role::App)),
        readonly = ident(&db.role_name(Role::Readonly)),
    ))
    .execute(&mut *conn)
    .await
    .context(|| format!("{}: creating {BACKUP_HISTORY_TABLE}", db.service))?;
    Ok(())
}

/// Records a finished backup in the service's own database, as its owner role. The time is the
/// database server's, not the backup host's: a host whose clock runs ahead cannot make the last
/// backup look younger than it is.
pub async fn record_backup(db: &ServiceDatabase, manifest: &Manifest) -> Result<(), DbError> {
    let mut conn = ConnectTarget::role(db, Role::Owner)?.connect().await?;
    ensure_backup_history(&mut conn, db).await?;
    sqlx::query(&format!(
        "insert into public.{BACKUP_HISTORY_TABLE}
             (finished_at, started_at, dump_file, dump_sha256, dump_bytes, tables, rows, made_by)
         values (now(), $1::timestamptz, $2, $3, $4, $5, $6, $7)
         on conflict (finished_at) do nothing"
    ))
    .bind(&manifest.started_at)
    .bind(&manifest.dump_file)
    .bind(&manifest.dump_sha256)
    .bind(manifest.dump_bytes as i64)
    .bind(manifest.tables.len() as i32)
    .bind(manifest.rows())
    .bind(&manifest.made_by)
    .execute(&mut conn)
    .await
    .context(|| format!("{}: recording the backup", db.service))?;
    conn.close().await.ok();
    Ok(())
}
