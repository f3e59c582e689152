//! `marty db split-legacy` and `marty db legacy-fixture`: the commands around
//! [`marty_db::split`].

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use marty_config::{Config, Service};
use marty_db::split::{self, SplitOptions};

/// Arguments of the command (its help is on the `DbCommand` variant).
#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Only this service (default: all four).
    #[arg(long)]
    service: Option<Service>,
    /// Report what would be copied (rows per table, where a resumed copy would start) and
    /// change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rows per batch (one transaction of the service database each).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    batch_rows: u64,
    /// Once every table has parity, revoke INSERT, UPDATE, DELETE and TRUNCATE on the legacy
    /// tables from every role but their owner, so nothing keeps writing to the old copy.
    #[arg(long, conflicts_with = "dry_run")]
    revoke_legacy_writes: bool,
    /// Print machine-readable JSON on standard output instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of the command (its help is on the `DbCommand` variant).
#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// Rows to write in all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    rows: u64,
    /// Drop and rebuild the service schemas if they exist.
    #[arg(long)]
    replace: bool,
}

fn progress() -> marty_db::backup::Progress {
    Arc::new(|line: String| eprintln!("{line}"))
}

pub async fn split_legacy(config: &Config, args: SplitArgs) -> Result<ExitCode> {
    marty_db::ensure_isolated(config, marty_db::Probe::Admin).await?;
    let services = match args.service {
        Some(s) => vec![s],
        None => Service::ALL.to_vec(),
    };
    let options = SplitOptions {
        dry_run: args.dry_run,
        batch_rows: args.batch_rows as usize,
        revoke_legacy_writes: args.revoke_legacy_writes,
    };
    let reports = split::split_legacy(config, &services, &options, progress()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!(
                "{} (legacy schema {} -> database {}, {:.1} s)",
                r.service, r.legacy_schema, r.database, r.seconds
            );
            for t in &r.tables {
                println!(
                    "  {:<8} {:<28} legacy {:>9}  service {:>9}  {}",
                    if t.parity {
                        "parity"
                    } else if args.dry_run {
                        "pending"
                    } else {
                        "DIFFERS"
                    },
                    t.table,
                    t.legacy_rows,
                    t.target_rows,
                    t.action
                );
            }
            for g in &r.revoked {
                println!("  revoked {g}");
            }
        }
        let copied: i64 = reports.iter().map(|r| r.rows_copied()).sum();
        let seconds: f64 = reports.iter().map(|r| r.seconds).sum();
        let all = reports.iter().all(|r| r.parity);
        println!(
            "{}: {copied} rows copied in {seconds:.1} s ({:.0} rows/s){}",
            if args.dry_run { "dry run" } else { "split" },
            if seconds > 0.0 {
                copied as f64 / seconds
            } else {
                0.0
            },
            if all {
                "; every table has parity"
            } else if args.dry_run {
                "; nothing was changed"
            } else {
                "; some tables differ (above)"
            }
        );
    }
    Ok(if args.dry_run || reports.iter().all(|r| r.parity) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn legacy_fixture(config: &Config, args: FixtureArgs) -> Result<ExitCode> {
    let migrators: Vec<_> = Service::ALL
        .into_iter()
        .map(|s| (s, crate::serve::descriptor(s).migrator))
        .collect();
    let written =
        split::legacy_fixture(config, &migrators, args.rows, args.replace, progress()).await?;
    println!(
        "legacy database {}: a schema per service, {written} rows",
        config.default_database().database
    );
    Ok(ExitCode::SUCCESS)
}
