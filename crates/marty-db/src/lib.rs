//! Marty's database-per-service platform.
//!
//! - [`backup`]: verified backup and restore of one service's database.
//! - [`gate`]: the drift gate (`marty db drift`): migrations, schema and privileges of a live
//!   database against a reference built from the embedded migrations.
//! - [`provision`]: `marty db setup`, idempotent and convergent provisioning of the roles,
//!   databases and hardening of each service, with drift repair.
//! - [`rotate`]: password rotation with an overlap (a role and its alternate login).
//! - [`migrate`]: running each service's embedded migrations as its owner role, and status.
//! - [`monitor`]: database-side figures for `/metrics` and `marty db status`, and the backup
//!   history that lets a service report the age of its last backup.
//! - [`verify`]: the isolation proof: every role tries every database, plus a catalog audit.
//! - [`isolation`]: the guard that refuses a configuration in which a service would use a
//!   database that is not its own, deciding "same database" by the servers' own identity.
//! - [`split`]: `marty db split-legacy`, copying each service's tables out of the shared
//!   pre-split database with parity proven per table, and the fixture that builds one.
//! - [`startup`]: what a service proves about its own database before it serves.
//! - [`local`]: a private PostgreSQL cluster for development and the tests.
//!
//! Every operation connects with the identity it is about: provisioning as the administrative
//! role, migrations as `owner`, checks as the role being checked. Nothing runs as a superuser
//! that does not have to.

pub mod backup;
pub mod connect;
pub mod drift;
pub mod gate;
pub mod isolation;
pub mod local;
pub mod migrate;
pub mod monitor;
pub mod provision;
pub mod rotate;
pub mod scram;
pub mod split;
mod sql;
pub mod startup;
pub mod status;
pub mod verify;

pub use connect::{ConnectTarget, connect_role};

use marty_config::{ConfigError, Service};

/// Errors of database operations. Messages name what was being done and where.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    #[error("refusing to continue, the configuration would break database isolation:\n  - {}", .0.join("\n  - "))]
    Isolation(Vec<String>),
    #[error(
        "the administrative role {user} lacks {missing}: `marty db setup` needs a role with CREATEROLE and CREATEDB (or a superuser); grant it with `ALTER ROLE {user} {missing}` or set DB_USER/DB_PASSWORD to such a role"
    )]
    AdminPrivilege { user: String, missing: String },
    #[error("{service}: {message}")]
    Migration { service: Service, message: String },
    #[error("refusing to start {service}: {message}")]
    Startup { service: Service, message: String },
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Backup(String),
    #[error("local PostgreSQL: {0}")]
    Local(String),
}

/// Adds what was being done to a database error.
pub(crate) trait SqlContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, DbError>;
}

impl<T> SqlContext<T> for Result<T, sqlx::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, DbError> {
        self.map_err(|source| DbError::Sql {
            context: context(),
            source,
        })
    }
}

pub use isolation::{Probe, ensure_isolated};
