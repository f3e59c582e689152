//! `marty serve`: run one service, or all four as child processes stopped together.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use marty_config::{Config, LogFormat, Service};
use marty_runtime::{Application, ServiceDescriptor};

/// Every service, once: `marty serve`, `marty db migrate|status` and the tests iterate these.
pub const DESCRIPTORS: [&ServiceDescriptor; 4] = [
    &marty_csca::DESCRIPTOR,
    &marty_document_signer::DESCRIPTOR,
    &marty_passport_engine::DESCRIPTOR,
    &marty_pkd::DESCRIPTOR,
];

pub fn descriptor(service: Service) -> &'static ServiceDescriptor {
    DESCRIPTORS
        .into_iter()
        .find(|d| d.service == service)
        .expect("DESCRIPTORS lists every service")
}

/// What to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    One(Service),
    All,
    /// The operator console (reads the services' APIs; no database of its own).
    Console,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => return Ok(Target::All),
            "console" => return Ok(Target::Console),
            _ => {}
        }
        s.parse::<Service>()
            .map(Target::One)
            .map_err(|e| format!("{e}, all or console"))
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service to run (csca, document_signer, passport_engine, pkd; aliases accepted),
    /// `all`: each service in a child process of its own and the console, stopped together,
    /// or `console`: the operator console on MARTY_CONSOLE_LISTEN (default 127.0.0.1:9090).
    pub target: Target,
    /// Log format: human lines or one JSON object per line (default: runtime.log_format,
    /// MARTY_LOG_FORMAT).
    #[arg(long, value_parser = ["human", "json"])]
    pub log_format: Option<String>,
}

pub async fn run(args: ServeArgs, config: &Config) -> Result<ExitCode> {
    let format = match args.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Human,
        None => config.runtime().log_format,
    };
    marty_runtime::telemetry::init(format);
    match args.target {
        Target::One(service) => serve_one(service, config).await,
        Target::All => serve_all(config, args.log_format.as_deref()).await,
        Target::Console => serve_console(config).await,
    }
}

/// The console: plain HTTP on loopback by default (it shows what the services' read APIs
/// show, and can change nothing); MARTY_CONSOLE_LISTEN moves it.
async fn serve_console(config: &Config) -> Result<ExitCode> {
    let listen = std::env::var("MARTY_CONSOLE_LISTEN").unwrap_or_else(|_| "127.0.0.1:9090".into());
    let console = crate::operate::input(
        marty_console::Console::connect(config).map_err(|e| anyhow::anyhow!("the console: {e}")),
    )?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| {
            format!("the console cannot listen on {listen} (set MARTY_CONSOLE_LISTEN)")
        })?;
    eprintln!("console on http://{}", listener.local_addr()?);
    tokio::select! {
        r = marty_console::serve(console, listener) => r.context("the console")?,
        _ = marty_runtime::terminate_signal() => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve_one(service: Service, config: &Config) -> Result<ExitCode> {
    // The runtime logs where it listens once it is ready.
    // SIGHUP (and a periodic check) picks up a rotated database credential.
    let app = Application::build(descriptor(service), config)
        .await?
        .reload_from(marty_config::Env::from_process());
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

/// Variables that carry (or point at) a secret the console must not hold: passwords and
/// passphrases, key encryption keys, PINs, tokens and credentials, database URLs, and any URL
/// with a user name or password in it (`nats://user:pass@…`).
fn is_secret_variable(name: &str, value: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let in_name = [
        "PASSWORD",
        "PASSPHRASE",
        "PASSFILE",
        "_KEK",
        "_PIN",
        "SECRET",
        "TOKEN",
        "CREDENTIAL",
        "CREDS",
        "PGSERVICEFILE",
        "DATABASE_URL",
        "ADMIN_URL",
    ]
    .iter()
    .any(|s| name.contains(s));
    let url_with_user = value.split_once("://").is_some_and(|(_, rest)| {
        rest.split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .contains('@')
    });
    in_name || url_with_user
}

/// Sends SIGTERM to a child (the `kill` utility: no unsafe signal code in this crate).
fn terminate(pid: u32) {
    signal(pid, "-TERM");
}

fn signal(pid: u32, which: &str) {
    let _ = std::process::Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status();
}

async fn serve_all(config: &Config, log_format: Option<&str>) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the marty binary")?;
    let mut children = Vec::new();
    for d in DESCRIPTORS {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("serve").arg(d.service.id());
        if let Some(f) = log_format {
            cmd.arg("--log-format").arg(f);
        }
        // A child must not outlive `serve all` if this process is killed outright.
        cmd.kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", d.service))?;
        children.push((d.service, child));
    }
    // The console beside them: it reads their APIs, so it starts last and stops with them.
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("serve").arg("console").kill_on_drop(true);
    if let Some(f) = log_format {
        cmd.arg("--log-format").arg(f);
    }
    // The console connects to no database: it gets none of the secrets in this environment.
    for (name, value) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && is_secret_variable(name, &value.to_string_lossy())
        {
            cmd.env_remove(name);
        }
    }
    let console = cmd.spawn().context("starting the console")?;
    let grace = config.runtime().shutdown_grace + Duration::from_secs(10);
    let pids: Vec<u32> = children.iter().filter_map(|(_, c)| c.id()).collect();
    // Wait for a signal, or for a child to end on its own (then the others stop too); SIGHUP
    // goes on to every service (a credential reload).
    let first_exit = {
        let waits = children.iter_mut().map(|(service, child)| {
            let service = *service;
            Box::pin(async move { (service, child.wait().await) })
        });
        let mut any_exit = futures::future::select_all(waits);
        let term = marty_runtime::terminate_signal();
        tokio::pin!(term);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            tokio::select! {
                _ = &mut term => break None,
                ((service, status), _, _) = &mut any_exit => break Some((service, status)),
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    for pid in &pids {
                        signal(*pid, "-HUP");
                    }
                }
            }
        }
    };
    if let Some((service, status)) = &first_exit {
        eprintln!(
            "{service} exited ({}); stopping the other services",
            status
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string())
        );
    }
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            terminate(pid);
        }
    }
    // The console is not watched like a service: if it cannot start (its port taken), the
    // platform goes on without it; it said why on standard error.
    let mut console = console;
    if let Some(pid) = console.id() {
        terminate(pid);
    }
    let deadline = Instant::now() + grace;
    if tokio::time::timeout(grace, console.wait()).await.is_err() {
        let _ = console.kill().await;
    }
    let mut clean = first_exit.is_none();
    for (service, child) in &mut children {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                // The child that ended first was reported already.
                if first_exit.as_ref().map(|(s, _)| s) != Some(service) {
                    eprintln!("{service} exited with {status}");
                }
                clean = false;
            }
            Ok(Err(e)) => {
                eprintln!("{service}: {e}");
                clean = false;
            }
            Err(_) => {
                eprintln!(
                    "{service} did not stop within {} s: killed",
                    grace.as_secs()
                );
                let _ = child.kill().await;
                clean = false;
            }
        }
    }
    if clean {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("not every service ran and stopped cleanly (see above)")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_console_gets_no_secret_variable() {
        for secret in [
            "DB_PASSWORD",
            "PGPASSWORD",
            "PGPASSFILE",
            "MARTY_CSCA_APP_PASSWORD_FILE",
            "MARTY_NATS_PASSWORD",
            "MARTY_CSCA_KEK",
            "MARTY_CSCA_PREVIOUS_KEK",
            "MARTY_PKD_KEK_FILE",
            "MARTY_CSCA_PKCS11_PIN",
            "MARTY_PKD_PKCS11_PIN_FILE",
            "MARTY_ADMIN_DATABASE_URL",
            "CSCA_DATABASE_URL",
            "marty_csca_app_password",
            "MARTY_KEY_PASSPHRASE",
            "MARTY_TEST_PG_ADMIN_URL",
            "GITHUB_TOKEN",
            "AWS_CREDENTIALS",
            "PGSERVICEFILE",
        ] {
            assert!(super::is_secret_variable(secret, "x"), "{secret}");
        }
        // A URL is kept unless it carries a user name or password.
        assert!(super::is_secret_variable(
            "MARTY_NATS_URL",
            "nats://marty_csca:s3cret@127.0.0.1:4222"
        ));
        assert!(!super::is_secret_variable(
            "MARTY_NATS_URL",
            "nats://127.0.0.1:4222/?x=a@b"
        ));
        for kept in [
            "MARTY_CONSOLE_LISTEN",
            "MARTY_TLS_DIR",
            "MARTY_CSCA_GRPC_PORT",
            "MARTY_STATE_DIR",
            "PATH",
        ] {
            assert!(!super::is_secret_variable(kept, "/srv/marty"), "{kept}");
        }
    }
}
