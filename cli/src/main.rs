//! `marty`: provisions, migrates, verifies and operates Marty's databases.
//!
//! Exit codes, the same for every command:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success; the document or artefact is valid |
//! | 1 | failure: an operation failed, a check found a deviation, a document is invalid |
//! | 2 | indeterminate (verification commands only): the evidence to decide is missing |
//! | 3 | usage or input error: bad arguments, unreadable input, invalid configuration |
//!
//! With `--json`, an error is also printed on standard output as `{"error": …, "kind": …}`
//! so that a script reading the output learns why there is no result.

mod backup;
mod bench;
mod commands;
mod events;
mod icao;
mod keys;
mod load;
mod operate;
mod platform;
mod rotate;
mod serve;
mod split;
mod test_ldif;

use std::process::ExitCode;

use clap::Parser;

/// Exit code of usage and input errors (see the module documentation).
pub const EXIT_USAGE: u8 = 3;

fn main() -> ExitCode {
    quiet_broken_pipe();
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, json),
    };
    if !cli.is_serve() {
        init_tracing();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                &anyhow::anyhow!("cannot start the async runtime: {e}"),
                "internal",
                1,
                json,
            );
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(failure) => report(&failure.error, failure.kind, failure.exit, json),
    }
}

/// Prints an error once, with its causes, on stderr (and as JSON on stdout with `--json`).
fn report(error: &anyhow::Error, kind: &str, exit: u8, json: bool) -> ExitCode {
    let message = commands::describe_error(error);
    eprintln!("error: {message}");
    if json {
        println!(
            "{}",
            serde_json::json!({ "error": message, "kind": kind, "exit_code": exit })
        );
    }
    ExitCode::from(exit)
}

/// `marty … | head` closes stdout early; Rust ignores SIGPIPE, so the next print panics.
/// Exit quietly instead, as command-line tools do.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Help and version exit 0; usage errors exit 3 everywhere (1 and 2 mean invalid and
/// indeterminate for the verification commands).
fn usage_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let _ = e.print();
            if json {
                // The message up to the usage line, in one line: what was wrong and, for a
                // missing argument, which.
                let text = e.render().to_string();
                let first = text
                    .lines()
                    .take_while(|l| !l.starts_with("Usage:"))
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim_start_matches("error: ")
                    .to_owned();
                println!(
                    "{}",
                    serde_json::json!({ "error": first, "kind": "usage", "exit_code": EXIT_USAGE })
                );
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Logs go to stderr so that `--json` output on stdout stays parseable; `RUST_LOG` selects.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
