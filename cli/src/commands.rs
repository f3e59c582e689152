//! The command tree and what each command prints.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use marty_config::{Config, Service};
use marty_db::local::LocalPostgres;
use marty_db::{migrate, provision, status, verify};
use serde::Serialize;
use sqlx::migrate::Migrator;

#[derive(Debug, Parser)]
#[command(
    name = "marty",
    version,
    about = "Marty, the ICAO Doc 9303 ePassport PKI platform: databases, services and tools",
    long_about = "Marty, the ICAO Doc 9303 ePassport PKI platform.\n\n\
        Each of the four services (csca, document_signer, passport_engine, pkd) owns an isolated \
        PostgreSQL database. This command provisions, migrates and proves the isolation of those \
        databases, and runs local development servers.\n\n\
        Configuration: MARTY_ENV selects config/<env>.yaml (development, testing, production); \
        see `marty config show` for every effective value and where it came from."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Provision, migrate, inspect and verify the per-service databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// Local development servers kept under the state directory (.marty/).
    #[command(subcommand)]
    Dev(DevCommand),
    /// The event backbone: outbox health, stream and consumer lag, load benchmark.
    #[command(subcommand)]
    Events(crate::events::EventsCommand),
    /// The offline ICAO Doc 9303 toolkit: MRZ, EF.SOD, certificates, CRLs, master lists,
    /// Passive Authentication (exit 0 valid, 1 invalid, 2 indeterminate, 3 usage/input error).
    #[command(subcommand)]
    Icao(crate::icao::IcaoCommand),
    /// Run a service (or `all`): gRPC with health and reflection, HTTP /healthz /readyz
    /// /metrics, its event relay and consumers; SIGTERM or Ctrl-C stops it gracefully.
    Serve(crate::serve::ServeArgs),
    /// Operate the running CSCA: create, roll over, list, revoke, CRLs (gRPC).
    #[command(subcommand)]
    Csca(crate::operate::CscaCommand),
    /// Operate the running Document Signer: activate, rotate, status, sign EF.SOD, audit (gRPC).
    #[command(subcommand)]
    Signer(crate::operate::SignerCommand),
    /// Issue and verify passports through the running Passport Engine (gRPC).
    #[command(subcommand)]
    Passport(crate::platform::PassportCommand),
    /// Operate the running PKD: import master lists, CRLs and LDIF downloads, publish a
    /// master list, list trust material (gRPC).
    #[command(subcommand)]
    Pkd(crate::platform::PkdCommand),
    /// Load the running platform: issuance or verification throughput and latency through
    /// the Passport Engine's gRPC API.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// The services' private keys as their key store reports them (PKCS#11 tokens).
    #[command(subcommand)]
    Keys(crate::keys::KeysCommand),
}

impl Cli {
    /// `marty serve` sets up its own logging (format from the configuration).
    pub fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every effective setting with its origin (default, file, variable); secrets masked.
    Show {
        /// Only the settings of this service (aliases such as csca-service are accepted).
        #[arg(long)]
        service: Option<Service>,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ServiceFilter {
    /// Only this service (default: all four, plus the legacy database for setup).
    #[arg(long)]
    service: Option<Service>,
}

impl ServiceFilter {
    fn services(&self) -> Vec<Service> {
        match self.service {
            Some(s) => vec![s],
            None => Service::ALL.to_vec(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create or repair roles, databases and hardening, with the administrative connection.
    ///
    /// Idempotent: a second run changes nothing. Repairs drift (PUBLIC privileges, missing
    /// default privileges, wrong owners, dangerous role attributes) and names each repair.
    Setup {
        #[command(flatten)]
        filter: ServiceFilter,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply each service's pending migrations, as that service's owner role.
    Migrate {
        #[command(flatten)]
        filter: ServiceFilter,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Per service: reachable, server version, applied and pending migrations, size, connections.
    Status {
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Prove isolation: every role tries every database; prints the matrix and an audit.
    ///
    /// Exit codes, for a periodic job: 0 verified; 1 a deviation was proven (or the check
    /// could not run: the error is on stderr); 2 nothing deviates but something could not be
    /// decided (a lock, the deadline); 3 invalid configuration. `--metrics-file` keeps a
    /// Prometheus textfile (`marty_isolation_verified`, `marty_isolation_last_run_timestamp_seconds`)
    /// that deploy/prometheus/alerts.yml watches: a run that fails to finish leaves the file's
    /// timestamp to age, which the staleness alert catches.
    Verify {
        /// Also write the outcome as Prometheus text to this file (replaced atomically; for
        /// node_exporter's textfile collector).
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<std::path::PathBuf>,
        /// Also write the JSON report to this file (replaced atomically): what the console's
        /// Isolation page shows (it reads <state dir>/isolation.json unless
        /// MARTY_CONSOLE_ISOLATION_FILE says otherwise).
        #[arg(long, value_name = "FILE")]
        json_file: Option<std::path::PathBuf>,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
        /// How many matrix cells run at once (1 = sequential).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// Deadline of the whole run in seconds: what is not proven by then (a locked table,
        /// an unresponsive server) is reported as a deviation instead of waited for.
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// The drift gate: applied vs embedded migrations, the live schema vs the one the
    /// migrations build (in a scratch database), grants and default privileges vs the policy.
    ///
    /// Each finding on one line; exits 1 on any.
    Drift {
        #[command(flatten)]
        filter: ServiceFilter,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Back up service databases with a verifiable manifest; `backup verify FILE` checks one.
    Backup(crate::backup::BackupArgs),
    /// Restore a service's database from a dump (checked, hardened, then put in place).
    Restore(crate::backup::RestoreArgs),
    /// Copy each service's tables out of the shared legacy database, resumably, with parity.
    ///
    /// The legacy layout keeps each service's tables in a schema named after the service
    /// (csca, document_signer, passport_engine, pkd) of the legacy database (marty_dev). The
    /// service databases must exist and be migrated first (`marty db setup && marty db
    /// migrate`), and nothing may write to the legacy tables meanwhile (stop the old
    /// application; `--revoke-legacy-writes` keeps it stopped). Rows are copied in batches in
    /// primary-key order, one transaction of the service database each, with progress on
    /// stderr; an interrupted run resumes where it stopped, and a service database written to
    /// behind the copy's back is refused. Every table is then compared by row count and content
    /// checksum on both sides. Exit 0 when every table has parity (or on --dry-run), 1 otherwise.
    SplitLegacy(crate::split::SplitArgs),
    /// Build a legacy shared database from the current schemas (for testing split-legacy).
    ///
    /// Creates a schema per service in the legacy database (marty_dev), applies the service's
    /// migrations there and fills it with ROWS rows (events in every outbox, verification
    /// records in the Passport Engine's tables), plus the role marty_legacy_app with write
    /// access to all of it, as the old layout's shared application user had. Refuses to run in
    /// production, and to replace existing schemas without --replace.
    LegacyFixture(crate::split::FixtureArgs),
    /// Rotate a role's password with an overlap (two logins), then remove the old one.
    ///
    /// Step 1 (without --finish): the role's other login (the role itself, or its alternate
    /// <role>_alt, a member of it whose sessions act as it) gets a new password; the old and the
    /// new credential both work, and the sessions still on the old one are listed. In
    /// development the new password goes to the secrets file; elsewhere to --password-file for
    /// your secret store, with the login to set (MARTY_<SERVICE>_<ROLE>_LOGIN). Running services
    /// pick it up on SIGHUP or within 10 s from password files, and retire their old sessions as
    /// they use them.
    ///
    /// Step 2 (--finish, once every process uses the new credential): the old login loses its
    /// password and LOGIN, its remaining sessions are listed (or ended with
    /// --terminate-old-sessions), and a login with the old password is tried and must fail.
    RotatePassword(crate::rotate::RotateArgs),
    /// Each service's app role connects to its own database; prints latency; exit 1 on failure.
    TestConnections {
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// A private PostgreSQL cluster under the state directory, on a free loopback port.
    Postgres {
        #[command(subcommand)]
        action: DevAction,
    },
    /// A private nats-server with JetStream under the state directory, on a free loopback port.
    Nats {
        #[command(subcommand)]
        action: crate::events::NatsAction,
    },
    /// A development CA and a certificate per identity for mutual TLS (tls.mode: mutual):
    /// the four services, `operator` (what the CLI presents) and `verifier`, in the TLS
    /// directory (tls.dir, MARTY_TLS_DIR; default .marty/tls). Keeps what is there and still
    /// valid; keys are written 0600.
    Certs {
        /// Where to write them (default: the configured TLS directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// A new CA and new certificates for every identity, even if the old ones are valid
        /// (everything issued by the old CA stops being accepted).
        #[arg(long)]
        force: bool,
        /// More operator identities, each as operator-NAME.crt (repeatable); the CLI presents
        /// one with MARTY_TLS_IDENTITY=operator-NAME.
        #[arg(long = "operator", value_name = "NAME")]
        operators: Vec<String>,
        /// More verifier identities, each as verifier-NAME.crt (repeatable).
        #[arg(long = "verifier", value_name = "NAME")]
        verifiers: Vec<String>,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum DevAction {
    /// Initialise (first time) and start it; the configuration then uses its port.
    Start,
    /// Stop it (the data stays).
    Stop,
    /// Say whether it runs and where; exit 0 if it runs, 1 if not.
    Status {
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn dev_certs(
    dir: Option<std::path::PathBuf>,
    force: bool,
    operators: Vec<String>,
    verifiers: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    use marty_tls::Identity;
    let configured = dir.is_none();
    let dir = match dir {
        Some(d) => d,
        None => load()?.tls().dir.clone(),
    };
    let mut identities = marty_tls::dev::default_identities();
    for (names, make) in [
        (&operators, Identity::Operator as fn(String) -> Identity),
        (&verifiers, Identity::Verifier as fn(String) -> Identity),
    ] {
        for name in names {
            let id = make(name.clone());
            if marty_tls::Identity::from_uri(&id.uri()).as_ref() != Some(&id) {
                return Err(crate::operate::InputError::from(anyhow::anyhow!(
                    "{name:?}: a name is 1-64 of a-z, 0-9, '-', '_' and '.'"
                ))
                .into());
            }
            identities.push(id);
        }
    }
    let issued = marty_tls::dev::ensure(&dir, &identities, force)?;
    if json {
        let rows: Vec<serde_json::Value> = issued
            .iter()
            .map(|i| {
                serde_json::json!({
                    "identity": i.identity.uri(),
                    "certificate": i.cert,
                    "key": i.key,
                    "created": i.created,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ca": dir.join("ca.crt"),
                "certificates": rows,
            }))?
        );
    } else {
        println!("CA: {}", dir.join("ca.crt").display());
        for i in &issued {
            println!(
                "  {:<28} {} ({})",
                i.identity.uri(),
                i.cert.display(),
                if i.created { "created" } else { "kept" }
            );
        }
        if configured {
            println!(
                "Mutual TLS is now on for this state directory (tls.mode defaults to mutual once the CA exists):\n  services present <service>.crt, the CLI presents operator.crt (MARTY_TLS_IDENTITY chooses another)."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A command that failed: the error, its kind for `--json` output and the exit code.
pub struct Failure {
    pub error: anyhow::Error,
    pub kind: &'static str,
    pub exit: u8,
}

impl Failure {
    /// Input errors of `marty icao` (unreadable or malformed files) exit 3.
    fn input(error: anyhow::Error) -> Self {
        Self {
            error,
            kind: "input",
            exit: crate::EXIT_USAGE,
        }
    }

    /// An invalid configuration is an input error (exit 3); everything else is a failure.
    fn classify(error: anyhow::Error) -> Self {
        if error.is::<crate::operate::InputError>() {
            return Self::input(error);
        }
        if let Some(e) = error.downcast_ref::<crate::operate::ServiceError>() {
            let (kind, exit) = (e.kind(), e.exit_code());
            return Self { error, kind, exit };
        }
        if let Some(e) = error.downcast_ref::<marty_runtime::StartError>() {
            let (kind, exit) = if e.is_configuration() {
                ("configuration", crate::EXIT_USAGE)
            } else {
                ("start", 1)
            };
            return Self { error, kind, exit };
        }
        let is = |f: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool| error.chain().any(f);
        let isolation = |e: &(dyn std::error::Error + 'static)| {
            matches!(
                e.downcast_ref::<marty_db::DbError>(),
                Some(marty_db::DbError::Isolation(_) | marty_db::DbError::Config(_))
            )
        };
        // A configuration that breaks isolation is an invalid configuration.
        let (kind, exit) = if is(&|e| e.is::<marty_config::ConfigError>()) || is(&isolation) {
            ("configuration", crate::EXIT_USAGE)
        } else if is(&|e| e.is::<marty_db::DbError>()) {
            ("database", 1)
        } else if is(&|e| e.is::<marty_events::EventError>()) {
            ("events", 1)
        } else {
            ("error", 1)
        };
        Self { error, kind, exit }
    }
}

/// The error and its causes in one line, each cause once: a cause whose text the message
/// already holds (an error that prints its source) is not repeated.
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let result = match cli.command {
        Command::Icao(command) => return crate::icao::run(command).map_err(Failure::input),
        Command::Config(ConfigCommand::Show { service, json }) => config_show(service, json),
        Command::Db(cmd) => db(cmd).await,
        Command::Dev(DevCommand::Postgres { action }) => dev_postgres(action),
        Command::Dev(DevCommand::Nats { action }) => match load() {
            Ok(config) => crate::events::dev_nats(&config, action).await,
            Err(e) => Err(e),
        },
        Command::Dev(DevCommand::Certs {
            dir,
            force,
            operators,
            verifiers,
            json,
        }) => dev_certs(dir, force, operators, verifiers, json),
        // Needs no configuration: a deployment author runs it anywhere.
        Command::Events(crate::events::EventsCommand::Authorization) => {
            print!("{}", crate::events::authorization_block());
            Ok(ExitCode::SUCCESS)
        }
        Command::Events(command) => match load() {
            Ok(config) => crate::events::run(&config, command).await,
            Err(e) => Err(e),
        },
        Command::Serve(args) => match load() {
            Ok(config) => crate::serve::run(args, &config).await,
            Err(e) => Err(e),
        },
        Command::Csca(command) => crate::operate::csca(command).await,
        Command::Signer(command) => crate::operate::signer(command).await,
        Command::Passport(command) => crate::platform::passport(command).await,
        Command::Pkd(command) => crate::platform::pkd(command).await,
        Command::Bench(command) => crate::bench::run(command).await,
        Command::Keys(command) => match load() {
            Ok(config) => crate::keys::run(&config, command),
            Err(e) => Err(e),
        },
    };
    result.map_err(Failure::classify)
}

fn load() -> Result<Config> {
    Config::load().context("loading configuration")
}

/// The configuration for `db setup`: the one command that may generate the development
/// secrets file (and then gives the roles those passwords).
fn load_for_setup() -> Result<Config> {
    Config::load_generating(&marty_config::Env::from_process()).context("loading configuration")
}

fn migrator(service: Service) -> &'static Migrator {
    crate::serve::descriptor(service).migrator
}

pub(crate) fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn config_show(service: Option<Service>, json: bool) -> Result<ExitCode> {
    let config = load()?;
    let settings: Vec<_> = config
        .settings()
        .iter()
        .filter(|s| service.is_none() || s.service == service)
        .collect();
    if json {
        #[derive(Serialize)]
        struct Shown<'a> {
            environment: &'a str,
            file: String,
            settings: Vec<&'a marty_config::Setting>,
        }
        print_json(&Shown {
            environment: config.environment.as_str(),
            file: config.file.display().to_string(),
            settings,
        })?;
    } else {
        println!(
            "environment: {} (file {})",
            config.environment.as_str(),
            config.file.display()
        );
        let width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
        let vwidth = settings
            .iter()
            .map(|s| s.value.len())
            .max()
            .unwrap_or(0)
            .min(40);
        for s in settings {
            println!("  {:width$}  {:vwidth$}  {}", s.key, s.value, s.origin);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn db(cmd: DbCommand) -> Result<ExitCode> {
    let config = if matches!(cmd, DbCommand::Setup { .. }) {
        load_for_setup()?
    } else {
        load()?
    };
    match cmd {
        DbCommand::Setup { filter, json } => {
            let started = Instant::now();
            let report = provision::setup(&config, &filter.services()).await?;
            if json {
                print_json(&report)?;
            } else {
                for change in &report.changes {
                    println!("  {:32} {}", change.scope, change.action);
                }
                for left in &report.unrepaired {
                    println!("  {:32} NOT REPAIRED: {}", left.scope, left.action);
                }
                let took = started.elapsed().as_secs_f64();
                match (report.changes.len(), report.unrepaired.len()) {
                    (0, 0) => println!(
                        "setup: nothing changed; roles, databases and privileges are as declared ({took:.1}s)"
                    ),
                    (n, 0) => println!("setup: {n} change(s) applied ({took:.1}s)"),
                    (n, left) => println!(
                        "setup: {n} change(s) applied; {left} deviation(s) setup may not or could not repair — an operator must act on each ({took:.1}s)"
                    ),
                }
            }
            Ok(if report.unrepaired.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DbCommand::Drift { filter, json } => {
            marty_db::ensure_isolated(&config, marty_db::Probe::Admin).await?;
            let mut reports = Vec::new();
            for service in filter.services() {
                let report =
                    marty_db::gate::drift_gate(&config, service, migrator(service)).await?;
                if !json {
                    for f in &report.findings {
                        println!("{service}: {}: {}", f.area, f.detail);
                    }
                    if report.findings.is_empty() {
                        println!(
                            "{service}: no drift (migrations, schema and privileges of {} are what this build makes)",
                            report.database
                        );
                    }
                }
                reports.push(report);
            }
            if json {
                print_json(&reports)?;
            }
            Ok(if reports.iter().all(|r| r.findings.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DbCommand::Backup(args) => crate::backup::backup(&config, args).await,
        DbCommand::Restore(args) => crate::backup::restore(&config, args).await,
        DbCommand::SplitLegacy(args) => crate::split::split_legacy(&config, args).await,
        DbCommand::LegacyFixture(args) => crate::split::legacy_fixture(&config, args).await,
        DbCommand::RotatePassword(args) => crate::rotate::rotate_password(&config, args).await,
        DbCommand::Migrate { filter, json } => {
            let every_owner = Service::ALL.iter().all(|s| {
                config
                    .database(*s)
                    .password(marty_config::Role::Owner)
                    .is_ok()
            });
            match filter.service {
                // A per-service migration job holds only that service's owner credential: it
                // proves its own database by setup's mark, as the service does at start. With
                // every owner's credential, the whole placement is probed as before.
                Some(service) if !every_owner => {
                    let conflicts = config.isolation_conflicts();
                    if !conflicts.is_empty() {
                        return Err(marty_db::DbError::Isolation(conflicts).into());
                    }
                    marty_db::startup::check_own_database(
                        config.database(service),
                        marty_config::Role::Owner,
                    )
                    .await?;
                }
                _ => {
                    marty_db::ensure_isolated(
                        &config,
                        marty_db::Probe::Role(marty_config::Role::Owner),
                    )
                    .await?;
                }
            }
            #[derive(Serialize)]
            struct Row {
                service: Service,
                database: String,
                #[serde(flatten)]
                outcome: migrate::MigrateOutcome,
            }
            let mut rows = Vec::new();
            for service in filter.services() {
                let db = config.database(service);
                let outcome = migrate::migrate(db, migrator(service)).await?;
                if !json {
                    if outcome.applied.is_empty() {
                        println!(
                            "{service}: up to date ({} migration(s) applied before)",
                            outcome.already_applied
                        );
                    } else {
                        for m in &outcome.applied {
                            println!("{service}: applied {} {}", m.version, m.description);
                        }
                    }
                }
                rows.push(Row {
                    service,
                    database: db.database.clone(),
                    outcome,
                });
            }
            if json {
                print_json(&rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Status { json } => {
            let mut rows = Vec::new();
            for db in config.databases() {
                let mut row = status::status(db, migrator(db.service)).await;
                row.pool = scrape_metrics(config.api(db.service))
                    .await
                    .and_then(|text| status::PoolFigures::from_metrics(&text, db.service));
                rows.push(row);
            }
            if json {
                print_json(&rows)?;
            } else {
                for s in &rows {
                    print_status(s);
                }
            }
            Ok(
                if rows.iter().all(|r| r.reachable && r.modified.is_empty()) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        DbCommand::Verify {
            json,
            concurrency,
            timeout,
            metrics_file,
            json_file,
        } => {
            if let Some(path) = &metrics_file {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                anyhow::ensure!(
                    dir.is_dir(),
                    "--metrics-file {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                );
            }
            let report = verify::verify(
                &config,
                usize::from(concurrency),
                std::time::Duration::from_secs(timeout),
            )
            .await?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", verify::render(&report));
            }
            if let Some(path) = json_file {
                marty_db::backup::write_atomically(
                    &path,
                    serde_json::to_string_pretty(&report)?.as_bytes(),
                    0o644,
                )
                .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = metrics_file {
                marty_db::backup::write_atomically(
                    &path,
                    report.to_prometheus().as_bytes(),
                    0o644,
                )?;
            }
            Ok(match report.outcome {
                _ if report.passed() => ExitCode::SUCCESS,
                verify::VerifyOutcome::NotProven => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            })
        }
        DbCommand::TestConnections { json } => {
            let mut checks = Vec::new();
            for db in config.databases() {
                checks.push(status::test_connection(db).await);
            }
            if json {
                print_json(&checks)?;
            } else {
                for c in &checks {
                    match &c.error {
                        None => println!(
                            "ok    {:16} {:28} {:>7.1} ms  {}",
                            c.service.id(),
                            c.role,
                            c.latency_ms,
                            c.location
                        ),
                        Some(e) => println!(
                            "FAIL  {:16} {:28} {:>7.1} ms  {}",
                            c.service.id(),
                            c.role,
                            c.latency_ms,
                            e
                        ),
                    }
                }
            }
            Ok(if checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// A running service's `/metrics` (over mutual TLS with the CLI's certificate when TLS is on),
/// or `None` when nothing answers within 3 s.
async fn scrape_metrics(api: &marty_config::ServiceApi) -> Option<String> {
    let tls = crate::operate::client_tls().ok().flatten();
    marty_console::fetch(tls.as_ref(), api, "/metrics")
        .await
        .ok()
}

fn print_status(s: &status::ServiceStatus) {
    println!("{} ({} on {})", s.service, s.database, s.location);
    match &s.error {
        Some(e) if !s.reachable => {
            println!("  reachable:   no: {e}");
            return;
        }
        Some(e) => println!("  error:       {e}"),
        None => {}
    }
    println!(
        "  reachable:   yes (PostgreSQL {})",
        s.server_version.as_deref().unwrap_or("?")
    );
    let list = |v: &[status::MigrationInfo]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.iter()
                .map(|m| format!("{} {}", m.version, m.description))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("  applied:     {}", list(&s.applied));
    println!("  pending:     {}", list(&s.pending));
    if !s.modified.is_empty() {
        println!(
            "  MODIFIED:    {} (applied migrations whose files changed since: restore them)",
            s.modified
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(size) = s.size_bytes {
        println!("  size:        {:.1} MiB", size as f64 / (1024.0 * 1024.0));
    }
    let conns: Vec<String> = s
        .connections
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect();
    println!(
        "  connections: {}",
        if conns.is_empty() {
            "none".into()
        } else {
            conns.join(", ")
        }
    );
    match &s.pool {
        Some(p) => println!(
            "  pool:        {} of {} in use ({:.0}% saturated), {} waiting, mean wait {:.1} ms",
            p.in_use,
            p.max,
            p.saturation * 100.0,
            p.waiting,
            p.mean_wait_seconds * 1000.0
        ),
        None => println!("  pool:        service not running (no /metrics answer)"),
    }
    if let Some(o) = &s.outbox {
        println!(
            "  outbox:      {} unpublished, oldest {:.0} s",
            o.backlog,
            o.oldest_unpublished_age_secs.unwrap_or(0.0)
        );
    }
    match &s.last_backup {
        Some(b) => println!(
            "  last backup: {} ({} ago, {})",
            b.finished_at,
            human_age(b.age_seconds),
            b.dump_file
        ),
        None => println!("  last backup: never"),
    }
}

fn human_age(seconds: f64) -> String {
    let s = seconds as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn dev_postgres(action: DevAction) -> Result<ExitCode> {
    let config = load()?;
    let cluster = LocalPostgres::in_state_dir(&config.state_dir);
    match action {
        DevAction::Start => {
            let state = cluster.start()?;
            println!(
                "local PostgreSQL running on {}:{} (data in {}, administrator {}; credentials in {})",
                state.host,
                state.port,
                cluster.root().display(),
                state.admin_user,
                cluster.root().join("cluster.json").display()
            );
        }
        DevAction::Stop => {
            if cluster.stop()? {
                println!(
                    "local PostgreSQL stopped (data kept in {})",
                    cluster.root().display()
                );
            } else {
                println!("local PostgreSQL was not running");
            }
        }
        DevAction::Status { json } => {
            let running = cluster.is_running()?;
            let state = cluster.state()?.filter(|_| running);
            if json {
                print_json(&serde_json::json!({
                    "running": running,
                    "host": state.as_ref().map(|s| s.host.clone()),
                    "port": state.as_ref().map(|s| s.port),
                    "data_dir": cluster.root().display().to_string(),
                }))?;
            } else {
                match &state {
                    Some(state) => println!(
                        "running on {}:{} (data in {})",
                        state.host,
                        state.port,
                        cluster.root().display()
                    ),
                    None => println!("not running (start it with `marty dev postgres start`)"),
                }
            }
            if state.is_none() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// Every subcommand and every argument says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help"
                    && sub
                        .get_about()
                        .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(name.clone());
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "marty", &mut missing);
        assert!(
            missing.is_empty(),
            "without help text:\n{}",
            missing.join("\n")
        );
    }
}
