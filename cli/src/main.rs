//! `marty`: provisions, migrates, verifies and operates Marty's databases.
//!
//! Exit codes: 0 success; 1 failure (an error, a deviation found by `db verify`, a failed
//! connection in `db test-connections`); 2 usage errors (from clap).

mod commands;
mod events;
mod icao;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // The whole cause chain, once.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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

/// Help and version exit 0; usage errors exit 2, except under `marty icao`, whose exit codes
/// 1 and 2 mean invalid and indeterminate, and whose usage errors therefore exit 3.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ if std::env::args().nth(1).as_deref() == Some("icao") => ExitCode::from(icao::EXIT_USAGE),
        _ => ExitCode::from(2),
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
