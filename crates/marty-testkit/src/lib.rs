//! Test support for Marty: real PostgreSQL clusters and nats-servers per test, and
//! [`spawn_app`], which starts a real service on port 0 against them.
//!
//! By default every test gets a private cluster (initdb in a temp dir, free port, scram
//! passwords), because role names are global to a cluster and tests run in parallel. With
//! `MARTY_TEST_PG_ADMIN_URL` set, tests use that server instead, one at a time, dropping
//! Marty's databases and roles before each test. Likewise every test gets a private
//! nats-server unless `MARTY_TEST_NATS_URL` names one.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod app;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use marty_config::{Config, Env, Service};
use marty_db::local::LocalPostgres;
use sqlx::{Connection, PgConnection};

pub use app::{TestApp, spawn_app};

static EXTERNAL_SERVER: Mutex<()> = Mutex::new(());

#[derive(Debug)]
pub struct TestDb {
    pub host: String,
    pub port: u16,
    pub admin_url: String,
    /// The private cluster's Unix socket directory (none on a shared server).
    pub socket_dir: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    cluster: Option<LocalPostgres>,
    _serial: Option<MutexGuard<'static, ()>>,
}

/// The repository's config directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn url_parts(url: &str) -> (String, u16) {
    let rest = url.split('@').next_back().unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    (host.to_owned(), port.parse().unwrap())
}

impl TestDb {
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("marty-test-")
            .tempdir()
            .unwrap();
        // The postgres OS user (when we run as root) must traverse into the cluster directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        if let Ok(url) = std::env::var("MARTY_TEST_PG_ADMIN_URL") {
            let guard = EXTERNAL_SERVER.lock().unwrap_or_else(|e| e.into_inner());
            let (host, port) = url_parts(&url);
            let db = Self {
                host,
                port,
                admin_url: url,
                socket_dir: None,
                dir,
                cluster: None,
                _serial: Some(guard),
            };
            db.drop_everything().await;
            return db;
        }
        let cluster = LocalPostgres::ephemeral(&dir.path().join("pg"));
        let state = cluster.start().expect("starting a private PostgreSQL");
        let admin_url = format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            state.admin_user,
            secrecy::ExposeSecret::expose_secret(&state.admin_password),
            state.port
        );
        Self {
            host: state.host,
            port: state.port,
            admin_url,
            socket_dir: Some(state.socket_dir.clone()),
            dir,
            cluster: Some(cluster),
            _serial: None,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The environment `marty` runs with: testing config, this server, a private state dir.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("MARTY_ENV".into(), "testing".into()),
            (
                "MARTY_CONFIG_DIR".into(),
                config_dir().display().to_string(),
            ),
            (
                "MARTY_STATE_DIR".into(),
                self.state_dir().display().to_string(),
            ),
            ("DB_HOST".into(), self.host.clone()),
            ("DB_PORT".into(), self.port.to_string()),
            ("MARTY_ADMIN_DATABASE_URL".into(), self.admin_url.clone()),
        ]
    }

    pub fn config(&self) -> Config {
        Config::load_from(&Env::from_pairs(self.env())).unwrap()
    }

    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url).await.unwrap()
    }

    pub async fn admin_on(&self, database: &str) -> PgConnection {
        let url = self.admin_url.rsplit_once('/').unwrap().0.to_owned() + "/" + database;
        PgConnection::connect(&url).await.unwrap()
    }

    pub async fn exec(&self, database: &str, sql: &str) {
        let mut conn = self.admin_on(database).await;
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.unwrap();
    }

    /// Removes every database and role Marty creates (shared servers only).
    async fn drop_everything(&self) {
        let mut conn = self.admin().await;
        let mut dbs: Vec<String> = Service::ALL.iter().map(|s| s.default_database()).collect();
        dbs.push("marty_dev".into());
        // Databases tests create for themselves.
        let extra: Vec<String> = sqlx::query_scalar(
            "select datname::text from pg_database where datname like 'marty\\_test\\_%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        dbs.extend(extra);
        for db in dbs {
            sqlx::raw_sql(&format!("drop database if exists \"{db}\" with (force)"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let roles: Vec<String> = sqlx::query_scalar(
            "select rolname::text from pg_roles where rolname like 'marty\\_%\\_%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for role in roles
            .into_iter()
            .filter(|r| Service::parse_role_name(r).is_some() || r.starts_with("marty_test_"))
        {
            sqlx::raw_sql(&format!(
                "drop owned by \"{role}\" cascade; drop role \"{role}\""
            ))
            .execute(&mut conn)
            .await
            .ok();
        }
    }

    /// Stops the private server (a database outage); [`Self::start_server`] brings it back on
    /// the same port with the same data.
    pub fn stop_server(&self) {
        self.cluster
            .as_ref()
            .expect("only a private cluster can be stopped")
            .stop()
            .unwrap();
    }

    pub fn start_server(&self) {
        self.cluster
            .as_ref()
            .expect("only a private cluster can be started")
            .start()
            .unwrap();
    }

    /// Whether this test has a server of its own (it may stop it).
    pub fn is_private(&self) -> bool {
        self.cluster.is_some()
    }

    /// [`Self::env`] for a service process: the test NATS, every service on port 0 (HTTP and
    /// gRPC), and `extra` (e.g. `MARTY_CSCA_URL` pointing a Document Signer at a test CSCA).
    pub fn service_env(&self, nats: &TestNats, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push(("MARTY_NATS_URL".into(), nats.url.clone()));
        for s in Service::ALL {
            env.push((format!("MARTY_{}_GRPC_PORT", s.env_prefix()), "0".into()));
            env.push((format!("MARTY_{}_HTTP_PORT", s.env_prefix()), "0".into()));
        }
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    }

    /// `marty db setup` and `marty db migrate` for `descriptors`, through the libraries (the
    /// secrets file, with passwords and KEKs, is generated in this test's state directory).
    pub async fn provision_services(&self, descriptors: &[&marty_runtime::ServiceDescriptor]) {
        let config = Config::load_generating(&Env::from_pairs(self.env())).unwrap();
        let report = marty_db::provision::setup(&config, &Service::ALL)
            .await
            .unwrap();
        assert!(report.unrepaired.is_empty(), "{:?}", report.unrepaired);
        for d in descriptors {
            marty_db::migrate::migrate(config.database(d.service), d.migrator)
                .await
                .unwrap();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.stop().ok();
        }
    }
}

/// A private nats-server with JetStream for one test (its own port and store), unless
/// `MARTY_TEST_NATS_URL` names a shared one (then tests using it run one at a time).
#[derive(Debug)]
pub struct TestNats {
    pub url: String,
    pub port: u16,
    store: PathBuf,
    child: Option<std::process::Child>,
    _dir: tempfile::TempDir,
    _serial: Option<MutexGuard<'static, ()>>,
}

static EXTERNAL_NATS: Mutex<()> = Mutex::new(());

impl TestNats {
    /// A server this test may stop and restart: always private.
    pub fn private() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("marty-nats-")
            .tempdir()
            .unwrap();
        let port = marty_events::local::free_port().unwrap();
        let store = dir.path().join("js");
        let child = marty_events::local::spawn(port, &store, &dir.path().join("nats.log")).unwrap();
        Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
            child: Some(child),
            _dir: dir,
            _serial: None,
        }
    }

    pub fn start() -> Self {
        match std::env::var("MARTY_TEST_NATS_URL") {
            Ok(url) => {
                let guard = EXTERNAL_NATS.lock().unwrap_or_else(|e| e.into_inner());
                let dir = tempfile::tempdir().unwrap();
                Self {
                    port: 0,
                    url,
                    store: dir.path().to_path_buf(),
                    child: None,
                    _dir: dir,
                    _serial: Some(guard),
                }
            }
            Err(_) => Self::private(),
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the server again on the same port with the same JetStream store.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let log = self.store.with_extension("log");
        self.child = Some(marty_events::local::spawn(self.port, &self.store, &log).unwrap());
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&self.url)
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        if self._serial.is_some() {
            // A shared server: start from an empty stream.
            js.delete_stream("MARTY").await.ok();
        }
        js
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.stop();
    }
}
