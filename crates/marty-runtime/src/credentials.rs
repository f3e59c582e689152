//! A running service picks up a rotated database credential without a restart.
//!
//! On SIGHUP, on [`CredentialReload::now`], and every [`CHECK_EVERY`] (so that a password file
//! updated in place — a mounted Kubernetes Secret — is noticed without a signal), the
//! configuration is read again from the environment the service started with. When the `app`
//! role's login or password differ, the pool's connect options are replaced: new sessions log in
//! with the new credential, and sessions opened before are closed when they are next handed out
//! (see `ConnectTarget::rotating_service_pool`), so no in-flight query is cut. Only the
//! credential is reloaded; every other setting needs a restart.

use std::sync::Arc;
use std::time::Duration;

use marty_config::{Config, Env, Role, Service};
use marty_db::ConnectTarget;
use marty_db::connect::CredentialEpoch;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::shutdown::Shutdown;

/// How often the configuration is checked for a new credential without a signal.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// A handle to ask a service for an immediate reload (tests; SIGHUP does the same).
#[derive(Debug, Clone, Default)]
pub struct CredentialReload(Arc<Notify>);

impl CredentialReload {
    pub fn now(&self) {
        self.0.notify_one();
    }
}

pub(crate) struct Watch {
    pub service: Service,
    pub env: Env,
    pub pool: PgPool,
    pub epoch: Arc<CredentialEpoch>,
    pub login: String,
    pub password: SecretString,
    pub trigger: CredentialReload,
    pub stop: Shutdown,
}

pub(crate) async fn watch(mut w: Watch) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.tick().await;
    let mut last_error = String::new();
    loop {
        let asked = tokio::select! {
            _ = w.stop.wait() => return,
            _ = tick.tick() => false,
            _ = w.trigger.0.notified() => true,
            Some(()) = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        if asked {
            tracing::info!(service = %w.service, "reloading the database credential");
        }
        match reload(&w) {
            Ok(Some((target, login, password))) => {
                w.pool.set_connect_options(target.connect_options());
                w.epoch.changed();
                tracing::info!(
                    service = %w.service,
                    old_login = %w.login,
                    new_login = %login,
                    "database credential changed: new sessions use it, older ones are retired as they are used"
                );
                w.login = login;
                w.password = password;
                last_error.clear();
            }
            Ok(None) => {
                if asked {
                    tracing::info!(service = %w.service, login = %w.login, "database credential unchanged");
                }
                last_error.clear();
            }
            Err(e) => {
                // Reported once per distinct problem; the service keeps its credential.
                if asked || e != last_error {
                    tracing::warn!(service = %w.service, error = %e, "reloading the configuration failed; keeping the current credential");
                }
                last_error = e;
            }
        }
    }
}

fn reload(w: &Watch) -> Result<Option<(ConnectTarget, String, SecretString)>, String> {
    let config = Config::load_from(&w.env).map_err(|e| e.to_string())?;
    let db = config.database(w.service);
    let login = db.login_name(Role::App);
    let password = db.password(Role::App).map_err(|e| e.to_string())?.clone();
    if login == w.login && password.expose_secret() == w.password.expose_secret() {
        return Ok(None);
    }
    let target = ConnectTarget::role(db, Role::App).map_err(|e| e.to_string())?;
    Ok(Some((target, login, password)))
}
