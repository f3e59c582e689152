//! `marty db rotate-password`: rotating a service role's password with an overlap.
//!
//! PostgreSQL keeps one password per role, so an overlap needs two logins. Each service role
//! (`marty_csca_app`) keeps its grants and objects, and may have one alternate login
//! (`marty_csca_app_alt`): a member of the role and of nothing else, whose sessions take the
//! role at once (`SET ROLE` in the startup packet), so they act, own and are checked exactly as
//! the role. A rotation alternates the credential between the two:
//!
//! 1. `rotate-password`: the other login gets a new password, and both credentials work; the
//!    new one is recorded (the development secrets file, or a file for the operator's secret
//!    store), and the sessions still on the old one are listed. Running services pick the new
//!    one up on reload (SIGHUP, or their periodic check of the password file) and retire the old
//!    sessions as they are handed out.
//! 2. `rotate-password --finish`: the old login loses its password (and, for the alternate,
//!    LOGIN), its remaining sessions are listed or ended, and a login with the old password is
//!    tried and must fail.

use std::path::Path;

use marty_config::{Config, Role, Service, alternate_login};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::connect::{ConnectFailure, ConnectTarget};
use crate::provision::{Recorder, SetupReport, ensure_alternate, exec};
use crate::sql::{ident, literal};
use crate::{DbError, SqlContext, scram};

fn failed(message: impl Into<String>) -> DbError {
    DbError::Backup(message.into())
}

/// A session of a login, from `pg_stat_activity`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Session {
    pub pid: i32,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub backend_start: String,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RotationStarted {
    pub service: Service,
    pub role: String,
    pub old_login: String,
    pub new_login: String,
    /// Where the new password went.
    pub recorded_in: String,
    /// Both credentials logged in (and acted as the role) after the change.
    pub old_credential_works: bool,
    pub new_credential_works: bool,
    /// Sessions still using the old credential.
    pub old_sessions: Vec<Session>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RotationFinished {
    pub service: Service,
    pub role: String,
    pub login: String,
    pub removed_login: String,
    pub new_credential_works: bool,
    /// What trying the old credential gave: it must be refused.
    pub old_credential: String,
    pub terminated: Vec<Session>,
    /// Sessions of the removed login still connected (they keep working until they end).
    pub old_sessions: Vec<Session>,
}

fn admin_for(config: &Config, service: Service) -> ConnectTarget {
    let db = config.database(service);
    ConnectTarget::admin(config.admin()).at(&db.host, db.port, db.sslmode)
}

fn other_login(base: &str, login: &str) -> String {
    if login == base {
        alternate_login(base)
    } else {
        base.to_owned()
    }
}

async fn sessions(
    admin: &mut PgConnection,
    login: &str,
    database: &str,
) -> Result<Vec<Session>, DbError> {
    sqlx::query_as(
        "select pid, coalesce(application_name, '') as application_name,
                client_addr::text as client_addr,
                to_char(backend_start at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') as backend_start,
                state
           from pg_stat_activity where usename = $1 and datname = $2 and pid <> pg_backend_pid()
          order by backend_start",
    )
    .bind(login)
    .bind(database)
    .fetch_all(&mut *admin)
    .await
    .context(|| format!("reading the sessions of {login}"))
}

/// Logs in as `login` with `password` acting as `role`; `Ok(true)` when it works and the
/// session is the role.
async fn works(
    config: &Config,
    service: Service,
    role: Role,
    login: &str,
    password: &SecretString,
) -> Result<bool, String> {
    let db = config.database(service);
    let target = ConnectTarget::login(db, role, login, password.clone());
    match target.try_connect().await {
        Ok(mut conn) => {
            let user: String = sqlx::query_scalar("select current_user::text")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            conn.close().await.ok();
            Ok(user == db.role_name(role))
        }
        Err(ConnectFailure::Driver(e)) => Err(crate::connect::describe_connect_error(&e)),
        Err(ConnectFailure::Timeout) => Err("no answer within the connect timeout".into()),
    }
}

/// Step 1: a new password on the other login; both work.
pub async fn start(
    config: &Config,
    service: Service,
    role: Role,
    password_file: Option<&Path>,
) -> Result<RotationStarted, DbError> {
    let db = config.database(service);
    let base = db.role_name(role);
    let old_login = db.login_name(role);
    let new_login = other_login(&base, &old_login);
    let secrets = db.secrets_file().map(Path::to_path_buf);
    if secrets.is_none() && password_file.is_none() {
        return Err(failed(format!(
            "{service}: this environment keeps no secrets file, so the new password must go to a file for your secret store: pass --password-file FILE"
        )));
    }
    let old_password = db.password(role)?.clone();
    let mut admin = admin_for(config, service).connect().await?;
    let in_progress: bool = sqlx::query_scalar(
        "select exists (select from pg_roles where rolname = $1 and rolcanlogin)",
    )
    .bind(&new_login)
    .fetch_one(&mut admin)
    .await
    .context(|| format!("looking for {new_login}"))?;
    if in_progress {
        return Err(failed(format!(
            "{service}: a rotation of {base} is in progress ({new_login} can still log in besides {old_login}): run `marty db rotate-password --service {service} --role {role} --finish` first",
            role = role.as_str()
        )));
    }
    let mut report = SetupReport::default();
    let limit = config
        .role_policy()
        .connection_limits
        .get(&role)
        .copied()
        .unwrap_or(-1);
    if new_login != base {
        let mut rec = Recorder {
            report: &mut report,
            scope: new_login.clone(),
        };
        ensure_alternate(&mut admin, db, role, limit, &mut rec).await?;
    }
    let password = marty_config::generate_password();
    let verifier = scram::verifier(&password);
    // The role itself must be able to log in again when the credential returns to it.
    let login_attribute = if new_login == base { " LOGIN" } else { "" };
    exec(
        &mut admin,
        &format!(
            "ALTER ROLE {}{login_attribute} PASSWORD {}",
            ident(&new_login),
            literal(&verifier)
        ),
    )
    .await?;
    // The new credential is recorded before anything else can fail: a password set and not
    // kept would lock the operator out of the new login.
    let recorded_in = match (password_file, &secrets) {
        (Some(file), _) => {
            marty_config::write_private(file, format!("{password}\n").as_bytes())
                .map_err(|e| failed(format!("{}: {e}", file.display())))?;
            format!(
                "{} (set {} from it and MARTY_{}_{}_LOGIN={new_login})",
                file.display(),
                format_args!("{}_FILE", service.password_env(role)),
                service.env_prefix(),
                role.as_str().to_ascii_uppercase()
            )
        }
        (None, Some(path)) => {
            marty_config::record_rotation(path, &base, &new_login, &password)?;
            path.display().to_string()
        }
        (None, None) => unreachable!("checked above"),
    };
    let new_password = SecretString::from(password);
    let new_credential_works = works(config, service, role, &new_login, &new_password)
        .await
        .map_err(|e| {
            failed(format!(
                "{service}: the new credential of {new_login} does not log in: {e}"
            ))
        })?;
    let old_credential_works = works(config, service, role, &old_login, &old_password)
        .await
        .unwrap_or(false);
    let old_sessions = sessions(&mut admin, &old_login, &db.database).await?;
    admin.close().await.ok();
    Ok(RotationStarted {
        service,
        role: role.as_str().to_owned(),
        old_login,
        new_login,
        recorded_in,
        old_credential_works,
        new_credential_works,
        old_sessions,
    })
}

/// Step 2: the old login loses its credential; proven by trying it.
pub async fn finish(
    config: &Config,
    service: Service,
    role: Role,
    old_password: Option<SecretString>,
    terminate: bool,
) -> Result<RotationFinished, DbError> {
    let db = config.database(service);
    let base = db.role_name(role);
    let login = db.login_name(role);
    let removed = other_login(&base, &login);
    let mut admin = admin_for(config, service).connect().await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select from pg_roles where rolname = $1)")
            .bind(&removed)
            .fetch_one(&mut admin)
            .await
            .context(|| format!("looking for {removed}"))?;
    if !exists {
        return Err(failed(format!(
            "{service}: no rotation of {base} to finish ({removed} does not exist; the credential is {login}'s)"
        )));
    }
    // The configuration must already use the new credential, or finishing would lock out
    // every process that reads it.
    let new_credential_works = works(config, service, role, &login, db.password(role)?)
        .await
        .map_err(|e| {
            failed(format!(
                "{service}: the configured credential ({login}) does not log in ({e}); finish only once the configuration holds the new one"
            ))
        })?;
    // The old password, for the proof: given, or still in the development secrets file.
    let old_password = match old_password {
        Some(p) => Some(p),
        None => db
            .secrets_file()
            .and_then(|path| marty_config::stored_password(path, &removed).ok().flatten())
            .map(SecretString::from),
    };
    exec(
        &mut admin,
        &format!("ALTER ROLE {} NOLOGIN PASSWORD NULL", ident(&removed)),
    )
    .await?;
    let mut terminated = Vec::new();
    if terminate {
        for s in sessions(&mut admin, &removed, &db.database).await? {
            let done: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
                .bind(s.pid)
                .fetch_one(&mut admin)
                .await
                .context(|| format!("ending session {} of {removed}", s.pid))?;
            if done {
                terminated.push(s);
            }
        }
    }
    let old_credential = match &old_password {
        Some(p) => match works(config, service, role, &removed, p).await {
            Ok(_) => {
                return Err(failed(format!(
                    "{service}: the old credential of {removed} still logs in after its password was removed"
                )));
            }
            Err(e) => format!("refused: {e}"),
        },
        None => "not tried (pass --old-password-file to prove it); its password is removed".into(),
    };
    if removed != base
        && let Some(path) = db.secrets_file()
    {
        marty_config::forget_alternate(path, &removed)?;
    }
    let old_sessions = sessions(&mut admin, &removed, &db.database).await?;
    admin.close().await.ok();
    Ok(RotationFinished {
        service,
        role: role.as_str().to_owned(),
        login,
        removed_login: removed,
        new_credential_works,
        old_credential,
        terminated,
        old_sessions,
    })
}
