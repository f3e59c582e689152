//! A real PostgreSQL for each test, and a way to run the real `marty` binary against it.
//!
//! By default every test gets a private cluster (initdb in a temp dir, free port, scram
//! passwords), because role names are global to a cluster and tests run in parallel. With
//! `MARTY_TEST_PG_ADMIN_URL` set, tests use that server instead, one at a time, dropping
//! Marty's databases and roles before each test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use marty_config::{Config, Env, Service};
use marty_db::local::LocalPostgres;
use sqlx::{Connection, PgConnection};

static EXTERNAL_SERVER: Mutex<()> = Mutex::new(());

pub struct TestDb {
    pub host: String,
    pub port: u16,
    pub admin_url: String,
    pub dir: tempfile::TempDir,
    cluster: Option<LocalPostgres>,
    _serial: Option<MutexGuard<'static, ()>>,
}

/// The repository's config directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
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
            state.admin_user, state.admin_password, state.port
        );
        Self {
            host: state.host,
            port: state.port,
            admin_url,
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

    /// Runs `marty args…` with [`Self::env`] plus `extra`, and nothing else of this process's
    /// environment but PATH, so that a developer's variables cannot leak in.
    pub fn marty_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marty"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(args).output().expect("running marty")
    }

    pub fn marty(&self, args: &[&str]) -> Output {
        self.marty_with(args, &[])
    }

    /// `marty args…`, asserting success; returns stdout.
    pub fn marty_ok(&self, args: &[&str]) -> String {
        let out = self.marty(args);
        assert!(
            out.status.success(),
            "marty {args:?} failed:\n{}",
            show(&out)
        );
        String::from_utf8(out.stdout).unwrap()
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

    /// setup + migrate through the CLI.
    pub fn provision(&self) {
        self.marty_ok(&["db", "setup"]);
        self.marty_ok(&["db", "migrate"]);
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.stop().ok();
        }
    }
}

pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
