//! Marty's configuration: one typed [`Config`] per environment, with the origin of every value.
//!
//! Layers, lowest first: built-in defaults < `config/<MARTY_ENV>.yaml` < the local development
//! cluster (`marty dev postgres start`, when the file enables it) < environment variables.
//! Strings in the file may use `${VAR}` and `${VAR:-default}` (nested defaults allowed).
//!
//! Variables read:
//!
//! | variable | effect |
//! |---|---|
//! | `MARTY_ENV` | `development` (default), `testing` or `production`: selects the file |
//! | `MARTY_CONFIG_DIR` | directory of the YAML files (default `./config`) |
//! | `MARTY_STATE_DIR` | local state: secrets file, local clusters (default `./.marty`) |
//! | `DB_HOST`, `DB_PORT` | host/port of every service database and of the admin connection |
//! | `<SERVICE>_DB_HOST`, `<SERVICE>_DB_PORT` | host/port of one service (`CSCA_DB_HOST`, …) |
//! | `<SERVICE>_DATABASE_URL` | full URL of one service database (`PKD_SERVICE_DATABASE_URL` for the PKD) |
//! | `MARTY_<SERVICE>_<ROLE>_PASSWORD` | password of a role, e.g. `MARTY_CSCA_APP_PASSWORD` |
//! | `MARTY_<SERVICE>_<ROLE>_PASSWORD_FILE` | the same in a file (not world-readable), re-read on reload (SIGHUP) |
//! | `MARTY_DATABASE_URL` | the legacy shared database `marty_dev` |
//! | `DB_USER`, `DB_PASSWORD` | administrative credentials used by `marty db setup` only |
//! | `MARTY_ADMIN_DATABASE_URL` | the administrative connection as one URL |
//! | `MARTY_NATS_URL` | the NATS server of the event bus |
//! | `MARTY_<SERVICE>_KEK`, `MARTY_<SERVICE>_KEK_FILE` | a key-holding service's key-encryption key (hex or base64; a file must be 0600) |
//! | `MARTY_<SERVICE>_PREVIOUS_KEK[_FILE]` | the previous KEK during a rotation |
//! | `MARTY_<SERVICE>_LISTEN_HOST`, `_GRPC_PORT`, `_HTTP_PORT` | where a service listens (port 0: a free one) |
//! | `MARTY_<SERVICE>_URL` | where clients reach a service's gRPC API |
//! | `MARTY_CSCA_CRL_DISTRIBUTION_POINT` | cRLDistributionPoints URI of issued certificates |
//! | `MARTY_DOCUMENT_SIGNER_COUNTRY`, `MARTY_DOCUMENT_SIGNER_KEY` | the signer's default country and key |
//! | `MARTY_LOG_FORMAT` | `human` or `json` |
//!
//! Secrets are [`SecretString`]s: no `Debug`, `Display` or log line shows them, and
//! [`Config::settings`] masks them.

mod env;
mod expand;
mod kek;
mod keystore;
mod runtime;
mod secrets;
mod service;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

pub use env::Env;
pub use kek::{KekConfig, KekSecret};
pub use keystore::{KeyStoreKind, KeyStoreSettings};
pub use runtime::{CscaPolicy, LogFormat, RuntimeSettings, ServiceApi, SignerPolicy};
pub use secrets::{
    alternate_login, forget_alternate, generate_password, record_rotation, stored_password,
    write_private, write_private_new,
};
pub use service::{Role, Service, UnknownService};
pub use tls::{Caller, TlsMode, TlsSettings, valid_identity_stem};

use expand::{ExpandError, expand};

/// The deployment environment, chosen by `MARTY_ENV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Development,
    Testing,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Testing => "testing",
            Environment::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "testing" | "test" => Ok(Environment::Testing),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err(ConfigError::Env {
                var: "MARTY_ENV".into(),
                message: format!(
                    "unknown environment {s:?}: expected development, testing or production"
                ),
            }),
        }
    }
}

/// Why configuration could not be loaded. Every variant names the file and key, or the
/// variable, at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read configuration file {path}: {source} (set MARTY_CONFIG_DIR to the directory holding development.yaml, testing.yaml and production.yaml)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: {key}: variable ${{{var}}} is not set and has no default")]
    MissingVariable {
        path: PathBuf,
        key: String,
        var: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{path}: {message}")]
    Secrets { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    LocalCluster { path: PathBuf, message: String },
    #[error("no password configured for role {role}: set {var}{hint}")]
    MissingPassword {
        role: String,
        var: String,
        /// How else it could be supplied, if at all.
        hint: String,
    },
    #[error("key-encryption key of {service}: {message}")]
    Kek { service: Service, message: String },
    #[error("key store of {service}: {message}")]
    KeyStore { service: Service, message: String },
    #[error(transparent)]
    UnknownService(#[from] UnknownService),
}

/// Where a value came from, shown by `marty config show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Default,
    File { path: PathBuf, key: String },
    Env { var: String },
    LocalCluster { path: PathBuf },
    SecretsFile { path: PathBuf },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, key } => write!(f, "{} ({key})", path.display()),
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::LocalCluster { path } => write!(f, "local cluster {}", path.display()),
            Origin::SecretsFile { path } => write!(f, "secrets file {}", path.display()),
        }
    }
}

/// One effective setting as `marty config show` prints it. Secret values are masked.
#[derive(Clone, Debug, Serialize)]
pub struct Setting {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    pub value: String,
    pub secret: bool,
    pub origin: Origin,
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(format!(
                    "unknown sslmode {s:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection pool bounds of a service's runtime pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PoolSettings {
    pub min_connections: u32,
    pub max_connections: u32,
}

/// The database of one service and the credentials of its three roles.
#[derive(Clone, Debug)]
pub struct ServiceDatabase {
    pub service: Service,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub sslmode: SslMode,
    pub pool: PoolSettings,
    /// How long to wait for the server to accept a connection.
    pub connect_timeout: Duration,
    /// How long a request may wait for a pooled connection before failing.
    pub acquire_timeout: Duration,
    passwords: BTreeMap<Role, SecretString>,
    /// The login that carries each role's credential when it is not the role itself (the
    /// role's alternate, during and after a password rotation).
    logins: BTreeMap<Role, String>,
    /// Where development passwords would be generated, when the environment generates them.
    secrets_file: Option<PathBuf>,
}

impl ServiceDatabase {
    /// The role that holds the grants and owns the objects, e.g. `marty_csca_app`.
    pub fn role_name(&self, role: Role) -> String {
        self.service.role_name(role)
    }

    /// The login the credential of `role` belongs to: the role itself, or its alternate
    /// (`marty_csca_app_alt`), a member of it, after `marty db rotate-password`. Sessions of
    /// the alternate `SET ROLE` to the role at once, so that they act exactly as it.
    pub fn login_name(&self, role: Role) -> String {
        self.logins
            .get(&role)
            .cloned()
            .unwrap_or_else(|| self.role_name(role))
    }

    /// The development secrets file, when this environment keeps passwords there.
    pub fn secrets_file(&self) -> Option<&Path> {
        self.secrets_file.as_deref()
    }

    /// The password of `role`, or an error naming the variable that would supply it.
    pub fn password(&self, role: Role) -> Result<&SecretString, ConfigError> {
        self.passwords
            .get(&role)
            .ok_or_else(|| ConfigError::MissingPassword {
                role: self.role_name(role),
                var: self.service.password_env(role),
                hint: self
                    .secrets_file
                    .as_ref()
                    .map(|f| {
                        format!(
                            ", or run `marty db setup`, which generates development passwords into {}",
                            f.display()
                        )
                    })
                    .unwrap_or_default(),
            })
    }

    /// `host:port/database`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

/// The administrative connection `marty db setup` uses: never a service's runtime identity.
#[derive(Clone, Debug)]
pub struct AdminConnection {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretString>,
    /// The maintenance database to connect to (`postgres`).
    pub database: String,
    pub sslmode: SslMode,
    pub connect_timeout: Duration,
}

/// The legacy shared database `marty_dev` of the reference platform. No service role may
/// connect to it; it is provisioned, locked down and reached with the administrative identity.
#[derive(Clone, Debug)]
pub struct LegacyDatabase {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub sslmode: SslMode,
}

/// Privileges and limits `marty db setup` applies to every service's roles.
#[derive(Clone, Debug, Serialize)]
pub struct RolePolicy {
    /// `statement_timeout` of the app role: a runaway query cannot hold locks for long.
    pub app_statement_timeout: Duration,
    /// `idle_in_transaction_session_timeout` of the app role: an abandoned transaction must not
    /// block vacuum and migrations.
    pub app_idle_in_transaction_timeout: Duration,
    /// `CONNECTION LIMIT` per role: one service cannot exhaust the server's connections.
    pub connection_limits: BTreeMap<Role, i32>,
}

/// Written by `marty dev postgres start`: where the local development cluster listens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalClusterState {
    pub host: String,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub admin_user: String,
    /// Written to the 0600 state file; never shown by `Debug`.
    #[serde(
        serialize_with = "serialize_secret",
        deserialize_with = "deserialize_secret"
    )]
    pub admin_password: SecretString,
}

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

/// Serialises a secret for a file that is itself a secret (mode 0600).
fn serialize_secret<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

impl LocalClusterState {
    /// The state file of the cluster kept under `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("postgres").join("cluster.json")
    }
}

/// A NATS login (the password never printed).
#[derive(Clone)]
pub struct NatsCredential {
    pub user: String,
    pub password: SecretString,
}

impl fmt::Debug for NatsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsCredential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The effective configuration.
#[derive(Debug)]
pub struct Config {
    pub environment: Environment,
    pub file: PathBuf,
    pub state_dir: PathBuf,
    services: BTreeMap<Service, ServiceDatabase>,
    legacy: LegacyDatabase,
    admin: AdminConnection,
    role_policy: RolePolicy,
    nats_url: String,
    nats_credentials: BTreeMap<String, NatsCredential>,
    runtime: RuntimeSettings,
    tls: TlsSettings,
    apis: BTreeMap<Service, ServiceApi>,
    csca_policy: CscaPolicy,
    signer_policy: SignerPolicy,
    keks: BTreeMap<Service, kek::KekSources>,
    key_stores: BTreeMap<Service, (KeyStoreSettings, Option<keystore::PinSource>)>,
    settings: Vec<Setting>,
}

impl Config {
    /// Loads the configuration of `MARTY_ENV` from the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(&Env::from_process())
    }

    /// Loads the configuration using `env` as the environment. Never writes anything: in
    /// development, role passwords come from the secrets file only if it exists.
    pub fn load_from(env: &Env) -> Result<Self, ConfigError> {
        Self::load_with(env, false)
    }

    /// As [`Config::load_from`], and generates the development secrets file when it does not
    /// exist and the environment's file enables it (`marty db setup`, which gives the roles
    /// those passwords).
    pub fn load_generating(env: &Env) -> Result<Self, ConfigError> {
        Self::load_with(env, true)
    }

    fn load_with(env: &Env, may_generate: bool) -> Result<Self, ConfigError> {
        let environment = env
            .get("MARTY_ENV")
            .map(Environment::from_str)
            .transpose()?
            .unwrap_or(Environment::Development);
        let dir = PathBuf::from(env.get("MARTY_CONFIG_DIR").unwrap_or("config"));
        let file = dir.join(format!("{}.yaml", environment.as_str()));
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let state_dir = PathBuf::from(env.get("MARTY_STATE_DIR").unwrap_or(".marty"));
        Loader::new(env, file, &text)?.load(environment, state_dir, may_generate)
    }

    /// The database settings of `service`.
    pub fn database(&self, service: Service) -> &ServiceDatabase {
        &self.services[&service]
    }

    /// All service databases, in [`Service::ALL`] order.
    pub fn databases(&self) -> impl Iterator<Item = &ServiceDatabase> {
        self.services.values()
    }

    /// The legacy shared database `marty_dev`.
    pub fn default_database(&self) -> &LegacyDatabase {
        &self.legacy
    }

    pub fn admin(&self) -> &AdminConnection {
        &self.admin
    }

    pub fn role_policy(&self) -> &RolePolicy {
        &self.role_policy
    }

    /// The NATS server of the event bus.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// The NATS login of `user` (a service id, or `operator` for the CLI's event tools):
    /// `MARTY_<SERVICE>_NATS_PASSWORD` / `MARTY_NATS_OPERATOR_PASSWORD` (or `…_FILE`, a file
    /// holding it), else the users file
    /// of `marty dev nats start` when the file enables the local server. None: connect
    /// without logging in (a server without authentication).
    pub fn nats_credential(&self, user: &str) -> Option<&NatsCredential> {
        self.nats_credentials.get(user)
    }

    /// Settings every service process shares (log format, shutdown grace).
    pub fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }

    /// Mutual TLS and the per-RPC authorization policy.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// Where `service` listens and how peers reach it.
    pub fn api(&self, service: Service) -> &ServiceApi {
        &self.apis[&service]
    }

    pub fn csca_policy(&self) -> &CscaPolicy {
        &self.csca_policy
    }

    pub fn signer_policy(&self) -> &SignerPolicy {
        &self.signer_policy
    }

    /// The key-encryption keys of `service`, read now (a KEK file is read at this call, not
    /// when the configuration loads). An error names the variables that would supply them.
    pub fn kek(&self, service: Service) -> Result<KekConfig, ConfigError> {
        self.keks[&service].resolve(service)
    }

    /// Where `service` keeps its private keys.
    pub fn key_store(&self, service: Service) -> &KeyStoreSettings {
        &self.key_stores[&service].0
    }

    /// The PIN of `service`'s PKCS#11 token, read now (a PIN file is read at this call).
    pub fn pkcs11_pin(&self, service: Service) -> Result<zeroize::Zeroizing<String>, ConfigError> {
        keystore::PinSource::resolve(self.key_stores[&service].1.as_ref(), service)
    }

    /// Every effective setting with its origin, secrets masked.
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }

    /// Configurations that break isolation whatever the servers are: a service (or the
    /// legacy database) named like one of PostgreSQL's own databases, a service named like the
    /// legacy shared database or the administrative maintenance database.
    ///
    /// Whether two services with the same database name reach the same database can only be
    /// told by the servers themselves (a host has many spellings): `marty_db::isolation` asks
    /// them after connecting.
    pub fn isolation_conflicts(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let system = |name: &str| SYSTEM_DATABASES.contains(&name);
        for db in self.services.values() {
            if system(&db.database) {
                problems.push(format!(
                    "service {} is configured to use {}, one of PostgreSQL's own databases ({}): provisioning would hand it to {}, and every database created from a template would inherit its objects",
                    db.service,
                    db.database,
                    SYSTEM_DATABASES.join(", "),
                    db.role_name(Role::Owner)
                ));
            } else if db.database == self.legacy.database {
                problems.push(format!(
                    "service {} is configured to use the legacy shared database {} ({}): a service must own a database no other component uses",
                    db.service,
                    self.legacy.database,
                    db.location()
                ));
            } else if db.database == self.admin.database {
                problems.push(format!(
                    "service {} is configured to use {}, the administrative connection's maintenance database: a service must own a database no other component uses",
                    db.service, db.database
                ));
            }
        }
        if system(&self.legacy.database) {
            problems.push(format!(
                "the legacy shared database is configured as {}, one of PostgreSQL's own databases ({}): provisioning would lock every role out of it",
                self.legacy.database,
                SYSTEM_DATABASES.join(", ")
            ));
        }
        problems
    }
}

/// A PostgreSQL database name as configured: 1 to 63 bytes (NAMEDATALEN), no control
/// characters — libpq would cut a name at a NUL and reach another database than the one named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DatabaseName(String);

impl FromStr for DatabaseName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 63 {
            return Err(format!("{} bytes; a database name has 1 to 63", s.len()));
        }
        if s.chars().any(char::is_control) {
            return Err("it holds a control character".into());
        }
        Ok(DatabaseName(s.to_owned()))
    }
}

/// A server's host name, address or Unix socket directory: one, without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostName(String);

impl FromStr for HostName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty".into());
        }
        if s.chars().any(char::is_control) {
            return Err("it holds a control character".into());
        }
        if s.contains(',') {
            return Err("it lists several hosts; name one".into());
        }
        Ok(HostName(s.to_owned()))
    }
}

/// The databases every PostgreSQL cluster has; none may be a service's or the legacy one.
pub const SYSTEM_DATABASES: &[&str] = &["postgres", "template0", "template1"];

/// Reads the YAML document and merges it with the other layers.
struct Loader<'a> {
    env: &'a Env,
    file: PathBuf,
    root: Mapping,
    settings: Vec<Setting>,
}

const TOP_KEYS: &[&str] = &[
    "database",
    "services",
    "legacy",
    "admin",
    "events",
    "runtime",
    "tls",
    "authorization",
];
const EVENTS_KEYS: &[&str] = &["nats_url", "local_nats"];
const DATABASE_KEYS: &[&str] = &[
    "host",
    "port",
    "sslmode",
    "connect_timeout_secs",
    "acquire_timeout_secs",
    "pool",
    "app_role",
    "connection_limits",
    "generate_passwords",
    "local_postgres",
];
const SERVICE_KEYS: &[&str] = &[
    "database",
    "host",
    "port",
    "sslmode",
    "pool",
    "passwords",
    "logins",
    "api",
    "keys",
];
const SERVICE_KEYS_WITH_POLICY: &[&str] = &[
    "database",
    "host",
    "port",
    "sslmode",
    "pool",
    "passwords",
    "logins",
    "api",
    "keys",
    "policy",
];
const POOL_KEYS: &[&str] = &["min_connections", "max_connections"];
const APP_ROLE_KEYS: &[&str] = &[
    "statement_timeout_ms",
    "idle_in_transaction_session_timeout_ms",
];
const ROLE_KEYS: &[&str] = &["owner", "app", "readonly"];
const LEGACY_KEYS: &[&str] = &["database"];
const ADMIN_KEYS: &[&str] = &["host", "port", "user", "password", "database"];

/// A candidate value for a setting: its raw text and where it came from.
type Candidate = (String, Origin);

impl<'a> Loader<'a> {
    fn new(env: &'a Env, file: PathBuf, text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let root = match value {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => {
                return Err(ConfigError::Yaml {
                    path: file,
                    message: "the document must be a mapping of sections (database, services, legacy, admin)".into(),
                });
            }
        };
        let loader = Self {
            env,
            file,
            root,
            settings: Vec::new(),
        };
        loader.check_keys(&[], TOP_KEYS)?;
        loader.check_keys(&["database"], DATABASE_KEYS)?;
        loader.check_keys(&["database", "pool"], POOL_KEYS)?;
        loader.check_keys(&["database", "app_role"], APP_ROLE_KEYS)?;
        loader.check_keys(&["database", "connection_limits"], ROLE_KEYS)?;
        loader.check_keys(&["legacy"], LEGACY_KEYS)?;
        loader.check_keys(&["admin"], ADMIN_KEYS)?;
        loader.check_keys(&["events"], EVENTS_KEYS)?;
        let service_ids: Vec<&str> = Service::ALL.iter().map(|s| s.id()).collect();
        loader.check_keys(&["services"], &service_ids)?;
        loader.check_keys(&["runtime"], runtime::RUNTIME_KEYS)?;
        loader.check_keys(&["tls"], tls::TLS_KEYS)?;
        for s in Service::ALL {
            let policy = runtime::policy_keys(s);
            loader.check_keys(
                &["services", s.id()],
                if policy.is_some() {
                    SERVICE_KEYS_WITH_POLICY
                } else {
                    SERVICE_KEYS
                },
            )?;
            loader.check_keys(&["services", s.id(), "pool"], POOL_KEYS)?;
            loader.check_keys(&["services", s.id(), "passwords"], ROLE_KEYS)?;
            loader.check_keys(&["services", s.id(), "logins"], ROLE_KEYS)?;
            loader.check_keys(&["services", s.id(), "api"], runtime::API_KEYS)?;
            loader.check_keys(&["services", s.id(), "keys"], keystore::KEYS_KEYS)?;
            if let Some(keys) = policy {
                loader.check_keys(&["services", s.id(), "policy"], keys)?;
            }
        }
        Ok(loader)
    }

    fn node(&self, path: &[&str]) -> Option<&Value> {
        let mut node: Option<&Value> = None;
        let mut map = &self.root;
        for (i, key) in path.iter().enumerate() {
            let v = map.get(Value::String((*key).to_owned()))?;
            node = Some(v);
            if i + 1 < path.len() {
                map = v.as_mapping()?;
            }
        }
        node
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.file.clone(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Rejects keys not in `allowed` under `path`: a typo must not silently fall back to a default.
    fn check_keys(&self, path: &[&str], allowed: &[&str]) -> Result<(), ConfigError> {
        let map = match if path.is_empty() {
            Some(&Value::Null)
        } else {
            self.node(path)
        } {
            None | Some(Value::Null) if !path.is_empty() => return Ok(()),
            None | Some(Value::Null) => &self.root,
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(self.invalid(&path.join("."), "expected a mapping")),
        };
        for key in map.keys() {
            let name = key.as_str().unwrap_or("");
            if !allowed.contains(&name) {
                let shown = if path.is_empty() {
                    format!("{key:?}")
                } else {
                    format!("{}.{}", path.join("."), key.as_str().unwrap_or("?"))
                };
                return Err(self.invalid(
                    shown.trim_matches('"'),
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// The file's value at `path`, as text, with `${…}` expanded.
    fn file_value(&self, path: &[&str]) -> Result<Option<Candidate>, ConfigError> {
        let key = path.join(".");
        let raw = match self.node(path) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(_) => return Err(self.invalid(&key, "expected a scalar value")),
        };
        let value = expand(&raw, self.env).map_err(|e| match e {
            ExpandError::Missing(var) => ConfigError::MissingVariable {
                path: self.file.clone(),
                key: key.clone(),
                var,
            },
            ExpandError::Malformed(message) => self.invalid(&key, message),
        })?;
        Ok(Some((
            value,
            Origin::File {
                path: self.file.clone(),
                key,
            },
        )))
    }

    fn env_value(&self, var: &str) -> Option<Candidate> {
        self.env.get(var).map(|v| {
            (
                v.to_owned(),
                Origin::Env {
                    var: var.to_owned(),
                },
            )
        })
    }

    /// Parses the winning candidate, naming its origin on failure, and records it.
    fn take<T: FromStr>(
        &mut self,
        key: &str,
        service: Option<Service>,
        winner: Option<Candidate>,
        default: &str,
        expected: &str,
    ) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let (raw, origin) = winner.unwrap_or_else(|| (default.to_owned(), Origin::Default));
        let value = raw.trim().parse::<T>().map_err(|e| {
            let message = format!("expected {expected}, found {raw:?} ({e})");
            match &origin {
                Origin::File { path, key } => ConfigError::Invalid {
                    path: path.clone(),
                    key: key.clone(),
                    message,
                },
                Origin::Env { var } => ConfigError::Env {
                    var: var.clone(),
                    message,
                },
                other => self.invalid(&format!("{key} (from {other})"), message),
            }
        })?;
        self.record(key, service, raw, false, origin);
        Ok(value)
    }

    fn record(
        &mut self,
        key: &str,
        service: Option<Service>,
        value: String,
        secret: bool,
        origin: Origin,
    ) {
        self.settings.push(Setting {
            key: key.to_owned(),
            service,
            value: if secret { "********".into() } else { value },
            secret,
            origin,
        });
    }

    fn load(
        mut self,
        environment: Environment,
        state_dir: PathBuf,
        may_generate: bool,
    ) -> Result<Config, ConfigError> {
        let local = self.local_cluster(&state_dir)?;
        let local_path = LocalClusterState::path(&state_dir);
        let local_host = local.as_ref().map(|l| {
            (
                l.host.clone(),
                Origin::LocalCluster {
                    path: local_path.clone(),
                },
            )
        });
        let local_port = local.as_ref().map(|l| {
            (
                l.port.to_string(),
                Origin::LocalCluster {
                    path: local_path.clone(),
                },
            )
        });

        let connect_timeout_secs: u64 = self.take(
            "database.connect_timeout_secs",
            None,
            self.file_value(&["database", "connect_timeout_secs"])?,
            "5",
            "a number of seconds",
        )?;
        let acquire_timeout_secs: u64 = self.take(
            "database.acquire_timeout_secs",
            None,
            self.file_value(&["database", "acquire_timeout_secs"])?,
            "5",
            "a number of seconds",
        )?;
        let generate: bool = self.take(
            "database.generate_passwords",
            None,
            self.file_value(&["database", "generate_passwords"])?,
            "false",
            "true or false",
        )?;
        let statement_timeout_ms: u64 = self.take(
            "database.app_role.statement_timeout_ms",
            None,
            self.file_value(&["database", "app_role", "statement_timeout_ms"])?,
            "30000",
            "milliseconds",
        )?;
        let idle_ms: u64 = self.take(
            "database.app_role.idle_in_transaction_session_timeout_ms",
            None,
            self.file_value(&[
                "database",
                "app_role",
                "idle_in_transaction_session_timeout_ms",
            ])?,
            "60000",
            "milliseconds",
        )?;
        let mut connection_limits = BTreeMap::new();
        for (role, default) in [(Role::Owner, "5"), (Role::App, "50"), (Role::Readonly, "5")] {
            let key = format!("database.connection_limits.{role}");
            let limit: i32 = self.take(
                &key,
                None,
                self.file_value(&["database", "connection_limits", role.as_str()])?,
                default,
                "a connection count",
            )?;
            connection_limits.insert(role, limit);
        }

        // Role passwords: env > URL user > file > secrets file (generated in development).
        // Production never reads, let alone writes, the development secrets file: a password
        // missing there is an error naming its variable.
        let secrets_path = state_dir.join("secrets.json");
        let role_names: Vec<String> = Service::ALL
            .iter()
            .flat_map(|s| Role::ALL.map(|r| s.role_name(r)))
            .collect();
        if environment == Environment::Production && generate {
            return Err(self.invalid(
                "database.generate_passwords",
                "must be false in production: passwords come from MARTY_<SERVICE>_<ROLE>_PASSWORD, never from a generated file",
            ));
        }
        let service_ids: Vec<&str> = Service::ALL.iter().map(|s| s.id()).collect();
        let stored_secrets = if environment == Environment::Production {
            secrets::StoredSecrets::default()
        } else {
            secrets::load(
                &secrets_path,
                &role_names,
                &service_ids,
                generate && may_generate,
            )?
        };
        let stored = &stored_secrets.passwords;

        let mut services = BTreeMap::new();
        for service in Service::ALL {
            let db = self.service_database(
                environment,
                service,
                &local_host,
                &local_port,
                stored,
                &stored_secrets.logins,
                &secrets_path,
                generate && environment != Environment::Production,
                Duration::from_secs(connect_timeout_secs),
                Duration::from_secs(acquire_timeout_secs),
            )?;
            services.insert(service, db);
        }

        let legacy = self.legacy(&local_host, &local_port)?;
        let nats_url = self.nats_url(&state_dir)?;
        let nats_credentials = self.nats_credentials(&state_dir)?;
        let admin = self.admin(
            &local,
            &local_path,
            Duration::from_secs(connect_timeout_secs),
        )?;
        let runtime = self.runtime()?;
        let tls = self.tls(environment, &state_dir)?;
        let mut apis = BTreeMap::new();
        let mut keks = BTreeMap::new();
        let mut key_stores = BTreeMap::new();
        for service in Service::ALL {
            apis.insert(service, self.api(service, tls.enabled())?);
            key_stores.insert(service, self.key_store(service, environment)?);
            let generates_here = generate && environment != Environment::Production;
            keks.insert(
                service,
                self.kek_sources(
                    service,
                    stored_secrets.keks.get(service.id()),
                    &secrets_path,
                    generates_here,
                ),
            );
        }
        let csca_policy = self.csca_policy()?;
        let signer_policy = self.signer_policy()?;

        Ok(Config {
            environment,
            file: self.file.clone(),
            state_dir,
            services,
            legacy,
            admin,
            role_policy: RolePolicy {
                app_statement_timeout: Duration::from_millis(statement_timeout_ms),
                app_idle_in_transaction_timeout: Duration::from_millis(idle_ms),
                connection_limits,
            },
            nats_url,
            nats_credentials,
            runtime,
            tls,
            apis,
            csca_policy,
            signer_policy,
            keks,
            key_stores,
            settings: self.settings,
        })
    }

    /// `MARTY_<SERVICE>_KEK` > `MARTY_<SERVICE>_KEK_FILE` > the secrets file (not in
    /// production); the previous KEK of a rotation from `…_PREVIOUS_KEK[_FILE]`.
    fn kek_sources(
        &mut self,
        service: Service,
        stored: Option<&String>,
        secrets_path: &Path,
        generates: bool,
    ) -> kek::KekSources {
        let prefix = service.env_prefix();
        let from_env = |this: &Self, name: &str| -> Option<kek::KekSource> {
            let var = format!("MARTY_{prefix}_{name}");
            if let Some(value) = this.env.get(&var) {
                return Some(kek::KekSource::Value {
                    value: zeroize::Zeroizing::new(value.to_owned()),
                    origin: Origin::Env { var },
                });
            }
            let file_var = format!("{var}_FILE");
            this.env.get(&file_var).map(|path| kek::KekSource::File {
                path: PathBuf::from(path),
                var: file_var,
            })
        };
        let current = from_env(self, "KEK").or_else(|| {
            stored.map(|value| kek::KekSource::Value {
                value: zeroize::Zeroizing::new(value.clone()),
                origin: Origin::SecretsFile {
                    path: secrets_path.to_path_buf(),
                },
            })
        });
        let previous = from_env(self, "PREVIOUS_KEK");
        let key = format!("services.{}.kek", service.id());
        match &current {
            Some(source) => {
                let origin = match source {
                    kek::KekSource::Value { origin, .. } => origin.clone(),
                    kek::KekSource::File { var, .. } => Origin::Env { var: var.clone() },
                };
                self.record(&key, Some(service), String::new(), true, origin);
            }
            None => self.record(
                &key,
                Some(service),
                "(not set)".into(),
                false,
                Origin::Default,
            ),
        }
        kek::KekSources {
            current,
            previous,
            secrets_file: generates.then(|| secrets_path.to_path_buf()),
        }
    }

    /// `MARTY_NATS_URL` > the local server of `marty dev nats start` (when the file enables
    /// it) > `events.nats_url` > `nats://127.0.0.1:4222`.
    fn nats_url(&mut self, state_dir: &Path) -> Result<String, ConfigError> {
        let local_enabled = match self.file_value(&["events", "local_nats"])? {
            Some((v, _)) => v.parse::<bool>().map_err(|_| {
                self.invalid(
                    "events.local_nats",
                    format!("expected true or false, found {v:?}"),
                )
            })?,
            None => false,
        };
        let local = if local_enabled {
            let path = state_dir.join("nats").join("state.json");
            std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["url"].as_str().map(str::to_owned))
                .map(|url| (url, Origin::LocalCluster { path }))
        } else {
            None
        };
        let candidate = self
            .env_value("MARTY_NATS_URL")
            .or(local)
            .or(self.file_value(&["events", "nats_url"])?);
        self.take(
            "events.nats_url",
            None,
            candidate,
            "nats://127.0.0.1:4222",
            "a NATS URL",
        )
    }

    fn nats_credentials(
        &mut self,
        state_dir: &Path,
    ) -> Result<BTreeMap<String, NatsCredential>, ConfigError> {
        let local_enabled = matches!(
            self.file_value(&["events", "local_nats"])?,
            Some((v, _)) if v == "true"
        );
        let path = state_dir.join("nats").join("users.json");
        let local: BTreeMap<String, String> = if local_enabled {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    secrets::check_private(&path).map_err(|message| ConfigError::Secrets {
                        path: path.clone(),
                        message,
                    })?;
                    serde_json::from_slice(&bytes).map_err(|e| ConfigError::Secrets {
                        path: path.clone(),
                        message: format!("not the users file of `marty dev nats start`: {e}"),
                    })?
                }
                Err(_) => BTreeMap::new(),
            }
        } else {
            BTreeMap::new()
        };
        let mut out = BTreeMap::new();
        let users = Service::ALL
            .iter()
            .map(|s| {
                (
                    s.id().to_owned(),
                    format!("MARTY_{}_NATS_PASSWORD", s.env_prefix()),
                )
            })
            .chain([(
                "operator".to_owned(),
                "MARTY_NATS_OPERATOR_PASSWORD".to_owned(),
            )]);
        for (user, var) in users {
            let file_var = format!("{var}_FILE");
            let from_file = match self.env.get(&file_var) {
                Some(file) => Some(
                    std::fs::read_to_string(file)
                        .map(|p| p.trim_end_matches(['\n', '\r']).to_owned())
                        .map_err(|e| ConfigError::Env {
                            var: file_var.clone(),
                            message: format!("reading {file}: {e}"),
                        })?,
                ),
                None => None,
            };
            let (password, origin) = match (self.env.get(&var), from_file, local.get(&user)) {
                (Some(p), _, _) => (p.to_owned(), Origin::Env { var: var.clone() }),
                (None, Some(p), _) => (p, Origin::Env { var: file_var }),
                (None, None, Some(p)) => (p.clone(), Origin::SecretsFile { path: path.clone() }),
                (None, None, None) => continue,
            };
            if password.is_empty() {
                return Err(ConfigError::Env {
                    var,
                    message: "an empty NATS password".into(),
                });
            }
            self.record(
                &format!("events.users.{user}"),
                None,
                String::new(),
                true,
                origin,
            );
            out.insert(
                user.clone(),
                NatsCredential {
                    user,
                    password: SecretString::from(password),
                },
            );
        }
        Ok(out)
    }

    fn local_cluster(&self, state_dir: &Path) -> Result<Option<LocalClusterState>, ConfigError> {
        let enabled = match self.file_value(&["database", "local_postgres"])? {
            Some((v, _)) => v.parse::<bool>().map_err(|_| {
                self.invalid(
                    "database.local_postgres",
                    format!("expected true or false, found {v:?}"),
                )
            })?,
            None => false,
        };
        if !enabled {
            return Ok(None);
        }
        let path = LocalClusterState::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| ConfigError::LocalCluster {
                        path,
                        message: format!(
                            "not valid cluster state ({e}); run `marty dev postgres start` again"
                        ),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConfigError::LocalCluster {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Host: `<SERVICE>_DB_HOST` > `DB_HOST` > local cluster > file (service) > file (global).
    fn host(
        &self,
        service: Option<Service>,
        local: &Option<Candidate>,
    ) -> Result<Option<Candidate>, ConfigError> {
        let per_service =
            service.and_then(|s| self.env_value(&format!("{}_DB_HOST", s.env_prefix())));
        Ok(per_service
            .or_else(|| self.env_value("DB_HOST"))
            .or_else(|| local.clone())
            .or(match service {
                Some(s) => self.file_value(&["services", s.id(), "host"])?,
                None => None,
            })
            .or(self.file_value(&["database", "host"])?))
    }

    fn port(
        &self,
        service: Option<Service>,
        local: &Option<Candidate>,
    ) -> Result<Option<Candidate>, ConfigError> {
        let per_service =
            service.and_then(|s| self.env_value(&format!("{}_DB_PORT", s.env_prefix())));
        Ok(per_service
            .or_else(|| self.env_value("DB_PORT"))
            .or_else(|| local.clone())
            .or(match service {
                Some(s) => self.file_value(&["services", s.id(), "port"])?,
                None => None,
            })
            .or(self.file_value(&["database", "port"])?))
    }

    #[allow(clippy::too_many_arguments)]
    fn service_database(
        &mut self,
        environment: Environment,
        service: Service,
        local_host: &Option<Candidate>,
        local_port: &Option<Candidate>,
        stored: &BTreeMap<String, String>,
        stored_logins: &BTreeMap<String, String>,
        secrets_path: &Path,
        generates: bool,
        connect_timeout: Duration,
        acquire_timeout: Duration,
    ) -> Result<ServiceDatabase, ConfigError> {
        let id = service.id();
        let url = self.service_url(service)?;
        let url_part = |f: &dyn Fn(&ParsedUrl) -> Option<String>| {
            url.as_ref().and_then(|u| {
                f(u).map(|v| {
                    (
                        v,
                        Origin::Env {
                            var: service.url_env().to_owned(),
                        },
                    )
                })
            })
        };

        let host_candidate =
            url_part(&|u| u.host.clone()).or(self.host(Some(service), local_host)?);
        let HostName(host) = self.take(
            &format!("services.{id}.host"),
            Some(service),
            host_candidate,
            "127.0.0.1",
            "a host name",
        )?;
        let port_candidate =
            url_part(&|u| u.port.map(|p| p.to_string())).or(self.port(Some(service), local_port)?);
        let port: u16 = self.take(
            &format!("services.{id}.port"),
            Some(service),
            port_candidate,
            "5432",
            "a port number (1-65535)",
        )?;
        let default_db = match environment {
            Environment::Production => service.production_database(),
            _ => service.default_database(),
        };
        let db_candidate =
            url_part(&|u| u.database.clone()).or(self.file_value(&["services", id, "database"])?);
        let DatabaseName(database) = self.take(
            &format!("services.{id}.database"),
            Some(service),
            db_candidate,
            &default_db,
            "a database name",
        )?;
        let ssl_candidate = url_part(&|u| u.sslmode.clone())
            .or(self.file_value(&["services", id, "sslmode"])?)
            .or(self.file_value(&["database", "sslmode"])?);
        let sslmode: SslMode = self.take(
            &format!("services.{id}.sslmode"),
            Some(service),
            ssl_candidate,
            "prefer",
            "an sslmode",
        )?;
        let min_candidate = self
            .file_value(&["services", id, "pool", "min_connections"])?
            .or(self.file_value(&["database", "pool", "min_connections"])?);
        let min_connections: u32 = self.take(
            &format!("services.{id}.pool.min_connections"),
            Some(service),
            min_candidate,
            "0",
            "a connection count",
        )?;
        let max_candidate = self
            .file_value(&["services", id, "pool", "max_connections"])?
            .or(self.file_value(&["database", "pool", "max_connections"])?);
        let max_connections: u32 = self.take(
            &format!("services.{id}.pool.max_connections"),
            Some(service),
            max_candidate,
            "10",
            "a connection count",
        )?;
        if max_connections == 0 || min_connections > max_connections {
            return Err(self.invalid(
                &format!("services.{id}.pool"),
                format!("need 0 <= min_connections <= max_connections and max_connections >= 1 (got {min_connections}..{max_connections})"),
            ));
        }

        let mut passwords = BTreeMap::new();
        let mut logins = BTreeMap::new();
        for role in Role::ALL {
            let base = service.role_name(role);
            let login = self.login_of(service, role, stored_logins)?;
            let name = login.clone();
            if login != base {
                logins.insert(role, login);
            }
            let from_url = url
                .as_ref()
                .filter(|u| u.user.as_deref() == Some(name.as_str()))
                .and_then(|u| {
                    u.password.clone().map(|p| {
                        (
                            p,
                            Origin::Env {
                                var: service.url_env().to_owned(),
                            },
                        )
                    })
                });
            let candidate = self
                .env_value(&service.password_env(role))
                .or(self.password_file(service, role)?)
                .or(from_url)
                .or(self.file_value(&["services", id, "passwords", role.as_str()])?)
                .or_else(|| {
                    stored.get(&name).map(|p| {
                        (
                            p.clone(),
                            Origin::SecretsFile {
                                path: secrets_path.to_path_buf(),
                            },
                        )
                    })
                });
            let key = format!("services.{id}.passwords.{role}");
            match candidate {
                Some((password, origin)) => {
                    self.record(&key, Some(service), String::new(), true, origin);
                    passwords.insert(role, SecretString::from(password));
                }
                None => self.record(
                    &key,
                    Some(service),
                    "(not set)".into(),
                    false,
                    Origin::Default,
                ),
            }
        }

        Ok(ServiceDatabase {
            service,
            host,
            port,
            database,
            sslmode,
            pool: PoolSettings {
                min_connections,
                max_connections,
            },
            connect_timeout,
            acquire_timeout,
            passwords,
            logins,
            secrets_file: generates.then(|| secrets_path.to_path_buf()),
        })
    }

    /// The login of `role`: `MARTY_<SERVICE>_<ROLE>_LOGIN` > `…_LOGIN_FILE` (e.g. the
    /// `username` key of a mounted basic-auth Secret) > `services.<id>.logins.<role>` > the
    /// secrets file > the role itself. Only the role or its alternate are accepted.
    fn login_of(
        &self,
        service: Service,
        role: Role,
        stored: &BTreeMap<String, String>,
    ) -> Result<String, ConfigError> {
        let base = service.role_name(role);
        let var = format!(
            "MARTY_{}_{}_LOGIN",
            service.env_prefix(),
            role.as_str().to_ascii_uppercase()
        );
        let (login, origin) = if let Some(v) = self.env.get(&var) {
            (v.trim().to_owned(), var.clone())
        } else if let Some(path) = self.env.get(&format!("{var}_FILE")) {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Env {
                var: format!("{var}_FILE"),
                message: format!("{path}: cannot read it: {e}"),
            })?;
            (text.trim().to_owned(), format!("{var}_FILE"))
        } else if let Some((v, _)) =
            self.file_value(&["services", service.id(), "logins", role.as_str()])?
        {
            (v, format!("services.{}.logins.{role}", service.id()))
        } else if let Some(v) = stored.get(&base) {
            (v.clone(), "the secrets file".to_owned())
        } else {
            return Ok(base);
        };
        if login != base && login != secrets::alternate_login(&base) {
            return Err(ConfigError::Env {
                var: origin,
                message: format!(
                    "{login:?} is not a login of {base}: expected {base} or {}",
                    secrets::alternate_login(&base)
                ),
            });
        }
        Ok(login)
    }

    /// `MARTY_<SERVICE>_<ROLE>_PASSWORD_FILE`: the password in a file (a mounted Kubernetes
    /// Secret, a file an operator rotates), re-read whenever the configuration is reloaded, so
    /// a running service picks up a rotated password on SIGHUP. Like a KEK file, it must not be
    /// readable by others (group read is allowed: that is how Secret volumes reach a non-root
    /// process through `fsGroup`).
    fn password_file(
        &self,
        service: Service,
        role: Role,
    ) -> Result<Option<(String, Origin)>, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let var = format!("{}_FILE", service.password_env(role));
        let Some(path) = self.env.get(&var) else {
            return Ok(None);
        };
        let bad = |message: String| ConfigError::Env {
            var: var.clone(),
            message: format!("{path}: {message}"),
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        if meta.permissions().mode() & kek::SECRET_FILE_FORBIDDEN != 0 {
            return Err(bad(format!(
                "is readable by other users (mode {:o}); run `chmod 600 {path}`",
                meta.permissions().mode() & 0o777
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let password = text.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            return Err(bad("is empty".into()));
        }
        Ok(Some((password, Origin::Env { var })))
    }

    fn service_url(&self, service: Service) -> Result<Option<ParsedUrl>, ConfigError> {
        let var = service.url_env();
        let Some(raw) = self.env.get(var) else {
            return Ok(None);
        };
        let parsed = ParsedUrl::parse(raw).map_err(|message| ConfigError::Env {
            var: var.to_owned(),
            message,
        })?;
        if let Some(user) = &parsed.user
            && Service::parse_role_name(user).map(|(s, _)| s) != Some(service)
        {
            return Err(ConfigError::Env {
                var: var.to_owned(),
                message: format!(
                    "names user {user:?}, but {service} connects only as its own roles ({}, {}, {})",
                    service.role_name(Role::Owner),
                    service.role_name(Role::App),
                    service.role_name(Role::Readonly)
                ),
            });
        }
        Ok(Some(parsed))
    }

    fn legacy(
        &mut self,
        local_host: &Option<Candidate>,
        local_port: &Option<Candidate>,
    ) -> Result<LegacyDatabase, ConfigError> {
        let url = match self.env.get("MARTY_DATABASE_URL") {
            Some(raw) => Some(ParsedUrl::parse(raw).map_err(|message| ConfigError::Env {
                var: "MARTY_DATABASE_URL".into(),
                message,
            })?),
            None => None,
        };
        let from_url = |f: &dyn Fn(&ParsedUrl) -> Option<String>| {
            url.as_ref().and_then(|u| {
                f(u).map(|v| {
                    (
                        v,
                        Origin::Env {
                            var: "MARTY_DATABASE_URL".into(),
                        },
                    )
                })
            })
        };
        let host_c = from_url(&|u| u.host.clone()).or(self.host(None, local_host)?);
        let HostName(host) = self.take("legacy.host", None, host_c, "127.0.0.1", "a host name")?;
        let port_c = from_url(&|u| u.port.map(|p| p.to_string())).or(self.port(None, local_port)?);
        let port = self.take(
            "legacy.port",
            None,
            port_c,
            "5432",
            "a port number (1-65535)",
        )?;
        let db_c = from_url(&|u| u.database.clone()).or(self.file_value(&["legacy", "database"])?);
        let DatabaseName(database) = self.take(
            "legacy.database",
            None,
            db_c,
            "marty_dev",
            "a database name",
        )?;
        let ssl_c = from_url(&|u| u.sslmode.clone()).or(self.file_value(&["database", "sslmode"])?);
        let sslmode = self.take("legacy.sslmode", None, ssl_c, "prefer", "an sslmode")?;
        Ok(LegacyDatabase {
            host,
            port,
            database,
            sslmode,
        })
    }

    /// Admin: `MARTY_ADMIN_DATABASE_URL` > `DB_USER`/`DB_PASSWORD` (+ `DB_HOST`/`DB_PORT`) >
    /// local cluster > file `admin.*` > defaults.
    fn admin(
        &mut self,
        local: &Option<LocalClusterState>,
        local_path: &Path,
        connect_timeout: Duration,
    ) -> Result<AdminConnection, ConfigError> {
        let url = match self.env.get("MARTY_ADMIN_DATABASE_URL") {
            Some(raw) => Some(ParsedUrl::parse(raw).map_err(|message| ConfigError::Env {
                var: "MARTY_ADMIN_DATABASE_URL".into(),
                message,
            })?),
            None => None,
        };
        let url_origin = || Origin::Env {
            var: "MARTY_ADMIN_DATABASE_URL".into(),
        };
        let from_url = |f: &dyn Fn(&ParsedUrl) -> Option<String>| {
            url.as_ref().and_then(|u| f(u).map(|v| (v, url_origin())))
        };
        let local_origin = || Origin::LocalCluster {
            path: local_path.to_path_buf(),
        };
        let from_local = |f: &dyn Fn(&LocalClusterState) -> String| {
            local.as_ref().map(|l| (f(l), local_origin()))
        };

        let host_c = from_url(&|u| u.host.clone())
            .or_else(|| self.env_value("DB_HOST"))
            .or_else(|| from_local(&|l| l.host.clone()))
            .or(self.file_value(&["admin", "host"])?)
            .or(self.file_value(&["database", "host"])?);
        let HostName(host) = self.take("admin.host", None, host_c, "127.0.0.1", "a host name")?;
        let port_c = from_url(&|u| u.port.map(|p| p.to_string()))
            .or_else(|| self.env_value("DB_PORT"))
            .or_else(|| from_local(&|l| l.port.to_string()))
            .or(self.file_value(&["admin", "port"])?)
            .or(self.file_value(&["database", "port"])?);
        let port = self.take(
            "admin.port",
            None,
            port_c,
            "5432",
            "a port number (1-65535)",
        )?;
        let user_c = from_url(&|u| u.user.clone())
            .or_else(|| self.env_value("DB_USER"))
            .or_else(|| from_local(&|l| l.admin_user.clone()))
            .or(self.file_value(&["admin", "user"])?);
        let user: String = self.take("admin.user", None, user_c, "postgres", "a role name")?;
        if Service::parse_role_name(&user).is_some() {
            return Err(ConfigError::Env {
                var: "DB_USER".into(),
                message: format!(
                    "{user} is a service role; the administrative connection must be a separate identity with CREATEROLE and CREATEDB"
                ),
            });
        }
        let db_c = from_url(&|u| u.database.clone()).or(self.file_value(&["admin", "database"])?);
        let DatabaseName(database) =
            self.take("admin.database", None, db_c, "postgres", "a database name")?;
        let ssl_c = from_url(&|u| u.sslmode.clone()).or(self.file_value(&["database", "sslmode"])?);
        let sslmode = self.take("admin.sslmode", None, ssl_c, "prefer", "an sslmode")?;
        let password_c = from_url(&|u| u.password.clone())
            .or_else(|| self.env_value("DB_PASSWORD"))
            .or_else(|| from_local(&|l| l.admin_password.expose_secret().to_owned()))
            .or(self.file_value(&["admin", "password"])?);
        let password = match password_c {
            Some((p, origin)) => {
                self.record("admin.password", None, String::new(), true, origin);
                Some(SecretString::from(p))
            }
            None => {
                self.record(
                    "admin.password",
                    None,
                    "(not set)".into(),
                    false,
                    Origin::Default,
                );
                None
            }
        };
        Ok(AdminConnection {
            host,
            port,
            user,
            password,
            database,
            sslmode,
            connect_timeout,
        })
    }
}

/// The parts of a `postgres://user:password@host:port/database?sslmode=…` URL Marty uses.
#[derive(Debug, Default)]
struct ParsedUrl {
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
    sslmode: Option<String>,
}

impl ParsedUrl {
    fn parse(raw: &str) -> Result<Self, String> {
        // The URL holds a password: errors describe the problem, never echo the input.
        // libpq allows an empty host (`postgres://user@/db?host=/run/postgresql`), which the
        // URL parser refuses: parse it with a placeholder and forget the placeholder after.
        const NO_HOST: &str = "marty-no-host.invalid";
        let (raw, empty_host) = match raw.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
                let (authority, tail) = rest.split_at(authority_end);
                let (userinfo, hostport) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, authority),
                };
                if hostport.is_empty() || hostport.starts_with(':') {
                    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                    (
                        format!("{scheme}://{userinfo}{NO_HOST}{hostport}{tail}"),
                        true,
                    )
                } else {
                    (raw.to_owned(), false)
                }
            }
            None => (raw.to_owned(), false),
        };
        let url = url::Url::parse(&raw).map_err(|e| format!("not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme must be postgres:// or postgresql://, not {}://",
                url.scheme()
            ));
        }
        // RFC 3986 percent-decoding, as libpq does: `+` is a plus sign, not a space (that is
        // only form encoding, which URLs' userinfo and paths do not use).
        let decode = |s: &str| -> Result<String, String> {
            let bytes = s.as_bytes();
            let malformed = bytes.iter().enumerate().any(|(i, b)| {
                *b == b'%'
                    && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            });
            if malformed {
                return Err("holds a '%' that is not followed by two hex digits".into());
            }
            let value = percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| "a percent-encoded part is not valid UTF-8".to_owned())?;
            if value.chars().any(char::is_control) {
                return Err("a part holds a control character (such as %00)".into());
            }
            Ok(value)
        };
        let database = url.path().trim_start_matches('/');
        // As libpq: a parameter given twice counts with its last value, and a query parameter
        // overrides the same part of the authority.
        let query = |key: &str| {
            url.query_pairs()
                .filter(|(k, _)| k == key)
                .last()
                .map(|(_, v)| v.into_owned())
        };
        // libpq: `host` and `port` may also be query parameters, and a host that starts with a
        // slash is a Unix socket directory (`postgres://user@/db?host=/run/postgresql`, or
        // percent-encoded in the authority: `postgres://%2Frun%2Fpostgresql/db`).
        let authority_host = url
            .host_str()
            .filter(|h| !h.is_empty() && !empty_host)
            .map(decode)
            .transpose()?;
        let host = query("host").or(authority_host);
        if host
            .as_deref()
            .is_some_and(|h| h.chars().any(char::is_control))
        {
            return Err("the host holds a control character".into());
        }
        if host.as_deref().is_some_and(|h| h.contains(',')) {
            return Err(
                "lists several hosts; Marty connects each service to one server (name one host)"
                    .into(),
            );
        }
        let port = match query("port") {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("the port parameter {p:?} is not a port number"))?,
            ),
            None => url.port(),
        };
        for (key, _) in url.query_pairs() {
            if !matches!(key.as_ref(), "sslmode" | "host" | "port") {
                return Err(format!(
                    "unsupported URL parameter {key:?}: Marty reads host, port and sslmode"
                ));
            }
        }
        Ok(Self {
            host,
            port,
            database: (!database.is_empty())
                .then(|| decode(database))
                .transpose()?,
            user: (!url.username().is_empty())
                .then(|| decode(url.username()))
                .transpose()?,
            password: url.password().map(decode).transpose()?,
            sslmode: query("sslmode"),
        })
    }
}

impl fmt::Display for AdminConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// Exposes a secret for building a connection; the only place configuration code reads one.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests;
