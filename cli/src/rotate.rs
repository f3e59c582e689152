//! `marty db rotate-password`: the command around [`marty_db::rotate`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use marty_config::{Config, Role, Service};
use marty_db::rotate;
use secrecy::SecretString;

/// Arguments of the command (its help is on the `DbCommand` variant).
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The service whose role is rotated.
    #[arg(long)]
    service: Service,
    /// Which of its roles: owner, app or readonly.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Remove the old credential (step 2).
    #[arg(long)]
    finish: bool,
    /// Where the new password is written (mode 0600), when there is no development secrets
    /// file.
    #[arg(long, value_name = "FILE", conflicts_with = "finish")]
    password_file: Option<PathBuf>,
    /// The old password, to prove that it no longer logs in (development: taken from the
    /// secrets file).
    #[arg(long, value_name = "FILE", requires = "finish")]
    old_password_file: Option<PathBuf>,
    /// End the old login's remaining sessions (a pool reconnects with the new credential).
    #[arg(long, requires = "finish")]
    terminate_old_sessions: bool,
    /// Print machine-readable JSON on standard output instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "owner" => Ok(Role::Owner),
        "app" => Ok(Role::App),
        "readonly" => Ok(Role::Readonly),
        _ => Err(format!(
            "unknown role {s:?}: expected owner, app or readonly"
        )),
    }
}

fn print_sessions(title: &str, sessions: &[rotate::Session]) {
    if sessions.is_empty() {
        println!("  {title}: none");
        return;
    }
    println!("  {title}: {}", sessions.len());
    for s in sessions {
        println!(
            "    pid {} {} from {} since {} ({})",
            s.pid,
            if s.application_name.is_empty() {
                "-"
            } else {
                &s.application_name
            },
            s.client_addr.as_deref().unwrap_or("local socket"),
            s.backend_start,
            s.state.as_deref().unwrap_or("?")
        );
    }
}

pub async fn rotate_password(config: &Config, args: RotateArgs) -> Result<ExitCode> {
    let (service, role) = (args.service, args.role);
    if !args.finish {
        let r = rotate::start(config, service, role, args.password_file.as_deref()).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{service} {}: new password on {} (recorded in {}); old credential ({}) {}, new {}",
                r.role,
                r.new_login,
                r.recorded_in,
                r.old_login,
                if r.old_credential_works {
                    "still works"
                } else {
                    "does NOT work"
                },
                if r.new_credential_works {
                    "works"
                } else {
                    "does NOT work"
                },
            );
            print_sessions(
                &format!("sessions still on {}", r.old_login),
                &r.old_sessions,
            );
            println!(
                "  next: reload the services (SIGHUP) or wait for their periodic check, then `marty db rotate-password --service {service} --role {} --finish`",
                r.role
            );
        }
        return Ok(if r.old_credential_works && r.new_credential_works {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let old = match &args.old_password_file {
        Some(path) => Some(SecretString::from(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        )),
        None => None,
    };
    let r = rotate::finish(config, service, role, old, args.terminate_old_sessions).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{service} {}: {} has no credential any more; the configured one ({}) works; old credential {}",
            r.role, r.removed_login, r.login, r.old_credential
        );
        print_sessions("sessions ended", &r.terminated);
        print_sessions(
            &format!("sessions still on {}", r.removed_login),
            &r.old_sessions,
        );
    }
    Ok(ExitCode::SUCCESS)
}
