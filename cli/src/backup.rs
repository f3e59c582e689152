//! `marty db backup`, `marty db backup verify` and `marty db restore`: the commands around
//! [`marty_db::backup`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand};
use marty_config::{Config, Role, Service};
use marty_db::backup::{self, Progress};

/// Back up each service's database: `pg_dump -Fc` as its readonly role, beside a manifest of
/// server and migration version, per-table row counts and content checksums, and the dump's
/// SHA-256 and size.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// Only this service (default: all four).
    #[arg(long)]
    service: Option<Service>,
    /// Directory receiving `<service>/<database>.dump` and `<service>/manifest.json` (a
    /// previous backup there is replaced only once the new one is complete).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Print machine-readable JSON (the manifests) on standard output instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Restore a dump into a scratch database, compare migration version, row counts and
    /// checksums with its manifest, drop the scratch. Exit 1 on any difference, naming the
    /// table.
    Verify {
        /// The dump (`<database>.dump`, its manifest.json beside it).
        file: PathBuf,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Restore a dump as a service's database: into a scratch database first (as the service's
/// owner, without the dump's owners and grants), checked against its manifest and this
/// build's migrations, the role model of `setup` re-applied; then it takes the database's
/// name. An existing database is replaced only with --force.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The service whose database this is.
    #[arg(long)]
    service: Service,
    /// The dump to restore (its manifest.json beside it is checked when present).
    #[arg(long)]
    from: PathBuf,
    /// Restore under this name instead of the service's configured database.
    #[arg(long)]
    into: Option<String>,
    /// Replace the database if it exists (its sessions are ended; it is dropped only after
    /// the restored copy took its name).
    #[arg(long)]
    force: bool,
    /// Print machine-readable JSON on standard output instead of text.
    #[arg(long)]
    json: bool,
}

fn progress() -> Progress {
    Arc::new(|line: String| eprintln!("{line}"))
}

fn migrator(service: Service) -> &'static sqlx::migrate::Migrator {
    crate::serve::descriptor(service).migrator
}

pub async fn backup(config: &Config, args: BackupArgs) -> Result<ExitCode> {
    if let Some(BackupCommand::Verify { file, json }) = args.command {
        return verify(config, file, json).await;
    }
    let out = args.out.expect("required unless a subcommand is given");
    marty_db::ensure_isolated(config, marty_db::Probe::Role(Role::Readonly)).await?;
    let services = match args.service {
        Some(s) => vec![s],
        None => Service::ALL.to_vec(),
    };
    let mut manifests = Vec::new();
    for service in services {
        let started = std::time::Instant::now();
        let m = backup::backup(config, service, &out, progress()).await?;
        if !args.json {
            println!(
                "{service}: {} ({}, {} tables, {} rows, migration {}) in {:.1}s, SHA-256 {}",
                out.join(service.id()).join(&m.dump_file).display(),
                backup::mib(m.dump_bytes),
                m.tables.len(),
                m.rows(),
                m.migration_version.map_or("none".into(), |v| v.to_string()),
                started.elapsed().as_secs_f64(),
                m.dump_sha256
            );
        }
        manifests.push(m);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifests)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(config: &Config, file: PathBuf, json: bool) -> Result<ExitCode> {
    marty_db::ensure_isolated(config, marty_db::Probe::Admin).await?;
    let check = backup::verify_backup(config, migrator, &file, progress()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    } else {
        for f in &check.findings {
            println!("DIFFERS {f}");
        }
        if check.findings.is_empty() {
            println!(
                "{}: {}'s backup holds what its manifest says: {} tables, {} rows, migration {}",
                check.file,
                check.service,
                check.tables_checked,
                check.rows,
                check
                    .migration_version
                    .map_or("none".into(), |v| v.to_string())
            );
        } else {
            println!(
                "{}: {} difference(s) from its manifest",
                check.file,
                check.findings.len()
            );
        }
    }
    Ok(if check.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn restore(config: &Config, args: RestoreArgs) -> Result<ExitCode> {
    marty_db::ensure_isolated(config, marty_db::Probe::Admin).await?;
    let report = backup::restore(
        config,
        args.service,
        migrator(args.service),
        &args.from,
        args.into.as_deref(),
        args.force,
        progress(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: restored {} as {} ({} tables, {} rows, migration {}{}){}",
            report.service,
            report.from,
            report.database,
            report.tables,
            report.rows,
            report
                .migration_version
                .map_or("none".into(), |v| v.to_string()),
            if report.manifest_checked {
                ", checked against its manifest"
            } else {
                ", no manifest to check against"
            },
            if report.replaced {
                "; the previous database was replaced"
            } else {
                ""
            }
        );
        if report.pending_migrations > 0 {
            println!(
                "{}: {} migration(s) of this build are not applied yet: run `marty db migrate --service {}`",
                report.service, report.pending_migrations, report.service
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
