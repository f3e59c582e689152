//! Running a service's embedded migrations as its owner role.
//!
//! sqlx serialises migrators with a session-level advisory lock per database. We take the same
//! lock first (session advisory locks are re-entrant), so that "what was applied by this run"
//! is computed under the lock: when four `marty db migrate` processes start at once, one
//! applies, the others wait and then report that nothing was pending.

use marty_config::{Role, ServiceDatabase};
use serde::Serialize;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Connection, PgConnection};

use crate::provision::MIGRATIONS_TABLE;
use crate::sql::ident;
use crate::{DbError, SqlContext, connect_role};

/// A migration recorded in a database.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
    #[serde(skip)]
    pub checksum: Vec<u8>,
}

/// What one `migrate` run did for one service.
#[derive(Debug, Serialize)]
pub struct MigrateOutcome {
    /// Migrations this run applied.
    pub applied: Vec<AppliedMigration>,
    /// Migrations that were already applied before this run.
    pub already_applied: usize,
}

/// Applies `migrator`'s pending migrations to `db`, connected as the owner role.
pub async fn migrate(db: &ServiceDatabase, migrator: &Migrator) -> Result<MigrateOutcome, DbError> {
    let service = db.service;
    let mut conn = connect_role(db, Role::Owner).await?;
    let failed = |e: MigrateError| DbError::Migration {
        service,
        message: explain(e, db),
    };
    conn.lock().await.map_err(failed)?;
    let before = applied(&mut conn).await?;
    migrator.run(&mut conn).await.map_err(failed)?;
    let after = applied(&mut conn).await?;
    // The runtime role reads the history (status) but must never rewrite it.
    sqlx::raw_sql(&format!(
        "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {MIGRATIONS_TABLE} FROM {}",
        ident(&db.role_name(Role::App))
    ))
    .execute(&mut conn)
    .await
    .context(|| format!("{service}: protecting {MIGRATIONS_TABLE}"))?;
    crate::monitor::ensure_backup_history(&mut conn, db).await?;
    conn.unlock().await.map_err(failed)?;
    conn.close().await.ok();
    Ok(MigrateOutcome {
        already_applied: before.len(),
        applied: after
            .into_iter()
            .filter(|m| !before.iter().any(|b| b.version == m.version))
            .collect(),
    })
}

/// The migrations recorded in the connected database (none if the table does not exist).
pub async fn applied(conn: &mut PgConnection) -> Result<Vec<AppliedMigration>, DbError> {
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(format!("public.{MIGRATIONS_TABLE}"))
        .fetch_one(&mut *conn)
        .await
        .context(|| "looking for the migrations table".into())?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(&format!(
        "select version, description, checksum from public.{MIGRATIONS_TABLE} where success order by version"
    ))
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading applied migrations".into())?;
    Ok(rows
        .into_iter()
        .map(|(version, description, checksum)| AppliedMigration {
            version,
            description,
            checksum,
        })
        .collect())
}

fn explain(e: MigrateError, db: &ServiceDatabase) -> String {
    let service = db.service;
    match e {
        MigrateError::VersionMismatch(v) => format!(
            "migration {v} was applied to {} with different contents than the file now embedded in this build: \
             an applied migration must never be edited; restore the original file and add a new migration for the change",
            db.location()
        ),
        MigrateError::VersionMissing(v) => format!(
            "{} has migration {v} applied, which this build of marty does not know: it was migrated by a newer version; \
             use that version, or restore the migration file",
            db.location()
        ),
        MigrateError::Dirty(v) => format!(
            "migration {v} failed part-way on an earlier run and is marked dirty in {}; repair the database by hand, \
             then delete its row from {MIGRATIONS_TABLE}",
            db.location()
        ),
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            format!("a migration of {service} failed and was rolled back: {e}")
        }
        other => other.to_string(),
    }
}
