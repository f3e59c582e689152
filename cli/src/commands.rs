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
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every effective setting with its origin (default, file, variable); secrets masked.
    Show {
        /// Only the settings of this service (aliases such as csca-service are accepted).
        #[arg(long)]
        service: Option<Service>,
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
        #[arg(long)]
        json: bool,
    },
    /// Apply each service's pending migrations, as that service's owner role.
    Migrate {
        #[command(flatten)]
        filter: ServiceFilter,
        #[arg(long)]
        json: bool,
    },
    /// Per service: reachable, server version, applied and pending migrations, size, connections.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Prove isolation: every role tries every database; prints the matrix and an audit.
    ///
    /// Exits 1 on any deviation from the declared policy.
    Verify {
        #[arg(long)]
        json: bool,
        /// How many matrix cells run at once (1 = sequential).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
    },
    /// Each service's app role connects to its own database; prints latency; exit 1 on failure.
    TestConnections {
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
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum DevAction {
    /// Initialise (first time) and start it; the configuration then uses its port.
    Start,
    /// Stop it (the data stays).
    Stop,
    /// Say whether it runs and where.
    Status,
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Show { service, json }) => config_show(service, json),
        Command::Db(cmd) => db(cmd).await,
        Command::Dev(DevCommand::Postgres { action }) => dev_postgres(action),
        Command::Dev(DevCommand::Nats { action }) => crate::events::dev_nats(&load()?, action),
        Command::Events(command) => crate::events::run(&load()?, command).await,
        Command::Icao(command) => Ok(crate::icao::run(command)),
    }
}

fn load() -> Result<Config> {
    Config::load().context("loading configuration")
}

fn migrator(service: Service) -> &'static Migrator {
    match service {
        Service::Csca => &marty_csca::MIGRATOR,
        Service::DocumentSigner => &marty_document_signer::MIGRATOR,
        Service::PassportEngine => &marty_passport_engine::MIGRATOR,
        Service::Pkd => &marty_pkd::MIGRATOR,
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
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
    let config = load()?;
    match cmd {
        DbCommand::Setup { filter, json } => {
            let started = Instant::now();
            let report = provision::setup(&config, &filter.services()).await?;
            if json {
                print_json(&report)?;
            } else if report.changes.is_empty() {
                println!(
                    "setup: nothing changed; roles, databases and privileges are as declared ({:.1}s)",
                    started.elapsed().as_secs_f64()
                );
            } else {
                for change in &report.changes {
                    println!("  {:32} {}", change.scope, change.action);
                }
                println!(
                    "setup: {} change(s) applied ({:.1}s)",
                    report.changes.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Migrate { filter, json } => {
            marty_db::ensure_isolated(&config)?;
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
                rows.push(status::status(db, migrator(db.service)).await);
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
        DbCommand::Verify { json, concurrency } => {
            let report = verify::verify(&config, usize::from(concurrency)).await?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", verify::render(&report));
            }
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
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
            "  MODIFIED:    {:?} (applied migrations whose files changed since: restore them)",
            s.modified
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
        DevAction::Status => match (cluster.is_running()?, cluster.state()?) {
            (true, Some(state)) => println!(
                "running on {}:{} (data in {})",
                state.host,
                state.port,
                cluster.root().display()
            ),
            _ => {
                println!("not running (start it with `marty dev postgres start`)");
                return Ok(ExitCode::from(3));
            }
        },
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
}
