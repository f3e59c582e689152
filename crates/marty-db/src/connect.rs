//! Connections built from typed configuration, with a hard connect timeout and errors that
//! name host, port, database and role (never the password).

use std::time::Duration;

use marty_config::{AdminConnection, LegacyDatabase, PoolSettings, Role, ServiceDatabase, SslMode};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, PgConnection};

use crate::DbError;

/// The search path of sessions that must not resolve a name outside the catalogs (`pg_temp`
/// last, so that a temporary object cannot shadow one either).
pub const CATALOG_SEARCH_PATH: &str = "pg_catalog,pg_temp";

/// Where a connection goes and as whom.
#[derive(Clone)]
pub struct ConnectTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    password: Option<SecretString>,
    pub sslmode: SslMode,
    pub connect_timeout: Duration,
    /// Settings sent with the startup packet (`-c name=value`), e.g. lock and statement
    /// timeouts for sessions that must never wait.
    pub session_settings: Vec<(String, String)>,
}

/// When a pool's credential last changed, so that older connections can be retired.
#[derive(Debug)]
pub struct CredentialEpoch {
    started: std::time::Instant,
    /// Milliseconds after `started` of the last change (0: never changed).
    changed_ms: std::sync::atomic::AtomicU64,
}

impl Default for CredentialEpoch {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            changed_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl CredentialEpoch {
    /// Marks the credential as changed now.
    pub fn changed(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.changed_ms
            .store(ms.max(1), std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a connection of age `age` was opened after the last change.
    pub fn opened_after_change(&self, age: Duration) -> bool {
        let changed = self.changed_ms.load(std::sync::atomic::Ordering::SeqCst);
        if changed == 0 {
            return true;
        }
        let since_change = self
            .started
            .elapsed()
            .saturating_sub(Duration::from_millis(changed));
        age < since_change
    }
}

impl std::fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ConnectTarget {
    /// `role` connecting to its service's own database.
    ///
    /// The credential may belong to the role's alternate login (after a password rotation);
    /// the session then takes the role at once (`role` in the startup packet), so that it
    /// acts, owns and is checked exactly as the role.
    pub fn role(db: &ServiceDatabase, role: Role) -> Result<Self, DbError> {
        Ok(Self::login(
            db,
            role,
            &db.login_name(role),
            db.password(role)?.clone(),
        ))
    }

    /// `login` (the role itself or its alternate) with `password`, acting as `role`.
    pub fn login(db: &ServiceDatabase, role: Role, login: &str, password: SecretString) -> Self {
        let base = db.role_name(role);
        let session_settings = if login == base {
            Vec::new()
        } else {
            vec![("role".to_owned(), base)]
        };
        Self {
            host: db.host.clone(),
            port: db.port,
            database: db.database.clone(),
            user: login.to_owned(),
            password: Some(password),
            sslmode: db.sslmode,
            connect_timeout: db.connect_timeout,
            session_settings,
        }
    }

    /// The administrative role connecting to its maintenance database. Its sessions resolve
    /// names in `pg_catalog` only: an administrator (often a superuser) running a query in a
    /// service database must never call a function or operator that the service's owner put
    /// in `public` under a catalog name (`public.quote_ident(name)` would win over
    /// `pg_catalog.quote_ident(text)` and run with the administrator's privileges).
    pub fn admin(admin: &AdminConnection) -> Self {
        Self {
            host: admin.host.clone(),
            port: admin.port,
            database: admin.database.clone(),
            user: admin.user.clone(),
            password: admin.password.clone(),
            sslmode: admin.sslmode,
            connect_timeout: admin.connect_timeout,
            session_settings: vec![("search_path".to_owned(), CATALOG_SEARCH_PATH.to_owned())],
        }
    }

    /// The same target, its sessions started with `settings` (name, value) in addition to
    /// its own (a setting given again is replaced).
    pub fn with_session_settings(&self, settings: &[(&str, String)]) -> Self {
        let mut session_settings = self.session_settings.clone();
        for (k, v) in settings {
            session_settings.retain(|(name, _)| name != k);
            session_settings.push(((*k).to_owned(), v.clone()));
        }
        Self {
            session_settings,
            ..self.clone()
        }
    }

    /// The same identity, another database on the same server.
    pub fn with_database(&self, database: &str) -> Self {
        Self {
            database: database.to_owned(),
            ..self.clone()
        }
    }

    /// The same identity on another server.
    pub fn at(&self, host: &str, port: u16, sslmode: SslMode) -> Self {
        Self {
            host: host.to_owned(),
            port,
            sslmode,
            ..self.clone()
        }
    }

    /// The same identity and server as `self`, aimed at the legacy database's location.
    pub fn for_legacy(&self, legacy: &LegacyDatabase) -> Self {
        Self {
            host: legacy.host.clone(),
            port: legacy.port,
            database: legacy.database.clone(),
            sslmode: legacy.sslmode,
            ..self.clone()
        }
    }

    /// The same identity with another password (used to prove wrong passwords fail).
    pub fn with_password(&self, password: &str) -> Self {
        Self {
            password: Some(SecretString::from(password.to_owned())),
            ..self.clone()
        }
    }

    /// A libpq client program (`pg_dump`, `pg_restore`) aimed at this target through its
    /// environment: the password travels in `PGPASSWORD` of the child only, never on a command
    /// line another user could read in `ps`; the `PG*` variables of the caller's environment
    /// are cleared so that none of them redirects the program.
    pub fn libpq_command(&self, program: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                c.env_remove(k);
            }
        }
        c.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.database)
            .env("PGSSLMODE", self.sslmode.as_str())
            .env(
                "PGCONNECT_TIMEOUT",
                self.connect_timeout.as_secs().max(2).to_string(),
            )
            .env("PGAPPNAME", "marty")
            // No password file of the caller's: the configured password or none.
            .env("PGPASSFILE", "/dev/null");
        if let Some(p) = &self.password {
            c.env("PGPASSWORD", p.expose_secret());
        }
        if !self.session_settings.is_empty() {
            let options: Vec<String> = self
                .session_settings
                .iter()
                .map(|(k, v)| format!("-c {k}={}", v.replace(' ', "\\ ")))
                .collect();
            c.env("PGOPTIONS", options.join(" "));
        }
        c
    }

    pub fn describe(&self) -> String {
        format!(
            "{}:{} (database {}, role {})",
            self.host, self.port, self.database, self.user
        )
    }

    /// A pool of connections to this target (runtime use: relays, consumers, services), sized
    /// by the service's pool settings; a request waits at most `acquire_timeout` for one.
    pub fn pool(&self, settings: PoolSettings, acquire_timeout: Duration) -> sqlx::PgPool {
        self.pool_options(settings, acquire_timeout)
            .connect_lazy_with(self.options())
    }

    fn pool_options(
        &self,
        settings: PoolSettings,
        acquire_timeout: Duration,
    ) -> sqlx::postgres::PgPoolOptions {
        sqlx::postgres::PgPoolOptions::new()
            .min_connections(settings.min_connections)
            .max_connections(settings.max_connections)
            .acquire_timeout(acquire_timeout)
    }

    /// A pool for `db`'s role, with the service's configured pool settings.
    pub fn service_pool(db: &ServiceDatabase, role: Role) -> Result<sqlx::PgPool, DbError> {
        Ok(Self::role(db, role)?.pool(db.pool, db.acquire_timeout))
    }

    /// As [`Self::service_pool`], for a pool whose credential can change while it runs
    /// (`CredentialEpoch::changed` after [`sqlx::Pool::set_connect_options`]): a connection
    /// opened before the last change is closed instead of handed out, so that sessions of a
    /// rotated credential drain as the pool is used, without an in-flight query being cut.
    pub fn rotating_service_pool(
        db: &ServiceDatabase,
        role: Role,
        epoch: std::sync::Arc<CredentialEpoch>,
    ) -> Result<sqlx::PgPool, DbError> {
        let target = Self::role(db, role)?;
        Ok(target
            .pool_options(db.pool, db.acquire_timeout)
            .before_acquire(move |_conn, meta| {
                let fresh = epoch.opened_after_change(meta.age);
                Box::pin(async move { Ok(fresh) })
            })
            .connect_lazy_with(target.options()))
    }

    /// The connection options (for [`sqlx::Pool::set_connect_options`]).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options()
    }

    fn options(&self) -> PgConnectOptions {
        let mut options = PgConnectOptions::new()
            .username(&self.user)
            .database(&self.database)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => PgSslMode::Disable,
                SslMode::Allow => PgSslMode::Allow,
                SslMode::Prefer => PgSslMode::Prefer,
                SslMode::Require => PgSslMode::Require,
                SslMode::VerifyCa => PgSslMode::VerifyCa,
                SslMode::VerifyFull => PgSslMode::VerifyFull,
            })
            .application_name("marty")
            // Statements are logged by the server if an operator asks for it, not by us: they
            // may carry password verifiers.
            .disable_statement_logging();
        options = if self.host.starts_with('/') {
            options.socket(&self.host).port(self.port)
        } else {
            options.host(&self.host).port(self.port)
        };
        if let Some(p) = &self.password {
            options = options.password(p.expose_secret());
        }
        if !self.session_settings.is_empty() {
            options = options.options(self.session_settings.iter().cloned());
        }
        options
    }

    /// Opens one connection, failing after the connect timeout with host and port named.
    pub async fn connect(&self) -> Result<PgConnection, DbError> {
        match tokio::time::timeout(self.connect_timeout, self.options().connect()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(DbError::Connect {
                target: self.describe(),
                message: describe_connect_error(&e),
            }),
            Err(_) => Err(DbError::Connect {
                target: self.describe(),
                message: format!(
                    "no answer within {}s (connect timeout)",
                    self.connect_timeout.as_secs_f32()
                ),
            }),
        }
    }

    /// Opens one connection and reports the raw driver error, for callers that classify it.
    pub async fn try_connect(&self) -> Result<PgConnection, ConnectFailure> {
        match tokio::time::timeout(self.connect_timeout, self.options().connect()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ConnectFailure::Driver(e)),
            Err(_) => Err(ConnectFailure::Timeout),
        }
    }
}

/// A failed connection attempt, before it is turned into a message.
#[derive(Debug)]
pub enum ConnectFailure {
    Driver(sqlx::Error),
    Timeout,
}

/// The server's message and SQLSTATE, or the I/O error, in one line.
pub fn describe_connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            format!(
                "{io}: no PostgreSQL server is listening there — start it (the local development server: `marty dev postgres start`) or correct DB_HOST/DB_PORT"
            )
        }
        sqlx::Error::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}

/// The SQLSTATE of a database error, if it is one.
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Connects as `role` of a service to the service's database.
pub async fn connect_role(db: &ServiceDatabase, role: Role) -> Result<PgConnection, DbError> {
    ConnectTarget::role(db, role)?.connect().await
}

/// The configured password of `role`, for computing its SCRAM verifier.
pub(crate) fn expose_password(db: &ServiceDatabase, role: Role) -> Result<&str, DbError> {
    Ok(db.password(role)?.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_take_their_size_from_the_service_settings() {
        let target = ConnectTarget {
            host: "127.0.0.1".into(),
            port: 5432,
            database: "marty_csca".into(),
            user: "marty_csca_app".into(),
            password: None,
            sslmode: SslMode::Prefer,
            connect_timeout: Duration::from_secs(1),
            session_settings: Vec::new(),
        };
        let settings = PoolSettings {
            min_connections: 2,
            max_connections: 7,
        };
        // A runtime is needed to create even a lazy pool.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let pool = target.pool(settings, Duration::from_millis(1500));
        assert_eq!(pool.options().get_max_connections(), 7);
        assert_eq!(pool.options().get_min_connections(), 2);
        assert_eq!(
            pool.options().get_acquire_timeout(),
            Duration::from_millis(1500)
        );
    }
}
