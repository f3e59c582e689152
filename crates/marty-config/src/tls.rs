//! Mutual TLS between the services, the CLI and verifiers, and who may call which RPC.
//!
//! | key | variable | default |
//! |---|---|---|
//! | `tls.mode` | `MARTY_TLS` | `mutual` in production (which refuses `off`); elsewhere `mutual` once `<tls.dir>/ca.crt` exists (`marty dev certs`), else `off` |
//! | `tls.dir` | `MARTY_TLS_DIR` | `<state dir>/tls`: `ca.crt`, and `<identity>.crt` + `<identity>.key` per identity |
//! | `tls.identity` | `MARTY_TLS_IDENTITY` | the certificate a CLI presents: `operator` |
//! | `tls.reload_interval_secs` | `MARTY_TLS_RELOAD_SECS` | 10: certificate files are re-read when they change |
//! | `authorization."<package.Service>/<Method>"` | – | the built-in policy (`marty-runtime`'s `authz`) |
//!
//! A service presents `<dir>/<service id>.crt`; everything else presents `<dir>/<identity>.crt`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_yaml::Value;

use crate::{ConfigError, Environment, Loader, Origin, Service};

/// Whether listeners require TLS with client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plaintext; every caller is trusted (development only).
    Off,
    /// TLS 1.3 with a client certificate from the configured CA on every connection.
    Mutual,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(TlsMode::Off),
            "mutual" | "mtls" => Ok(TlsMode::Mutual),
            _ => Err(format!("unknown TLS mode {s:?}: expected off or mutual")),
        }
    }
}

/// Who may be allowed to call an RPC: the identity a caller's certificate carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    /// One of the four services.
    Service(Service),
    /// A person operating the platform (the CLI's certificate).
    Operator,
    /// A relying party that only reads trust material and verifies documents.
    Verifier,
    /// Any holder of a certificate from the configured CA.
    Any,
}

impl FromStr for Caller {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "operator" => Ok(Caller::Operator),
            "verifier" => Ok(Caller::Verifier),
            "any" => Ok(Caller::Any),
            other => other.parse::<Service>().map(Caller::Service).map_err(|_| {
                format!(
                    "unknown caller {s:?}: expected csca, document_signer, passport_engine, pkd, operator, verifier or any"
                )
            }),
        }
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Service(s) => f.write_str(s.id()),
            Caller::Operator => f.write_str("operator"),
            Caller::Verifier => f.write_str("verifier"),
            Caller::Any => f.write_str("any"),
        }
    }
}

/// The TLS settings.
#[derive(Clone, Debug, Serialize)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// Holds `ca.crt` and a certificate and key per identity.
    pub dir: PathBuf,
    /// The file stem of the certificate a client (the CLI) presents.
    pub identity: String,
    pub reload_interval: Duration,
    /// Per-RPC overrides of the built-in policy: `/package.Service/Method` → allowed callers.
    pub authorization: BTreeMap<String, Vec<Caller>>,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.mode == TlsMode::Mutual
    }

    /// The CA certificates every peer must chain to.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The certificate and key of `identity` (a service id, or a client's stem).
    pub fn pair(&self, identity: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{identity}.crt")),
            self.dir.join(format!("{identity}.key")),
        )
    }
}

pub(crate) const TLS_KEYS: &[&str] = &["mode", "dir", "identity", "reload_interval_secs"];

/// A client identity's file stem (`operator`, `operator-alice.ops`): lower-case letters,
/// digits, `-`, `_` and `.` (not first), so that it can never name a path outside the TLS
/// directory.
pub fn valid_identity_stem(stem: &str) -> bool {
    !stem.is_empty()
        && stem.len() <= 80
        && !stem.starts_with('.')
        && stem.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

impl Loader<'_> {
    pub(crate) fn tls(
        &mut self,
        environment: Environment,
        state_dir: &std::path::Path,
    ) -> Result<TlsSettings, ConfigError> {
        let default_dir = state_dir.join("tls");
        let c = self
            .env_value("MARTY_TLS_DIR")
            .or(self.file_value(&["tls", "dir"])?);
        let dir: PathBuf = self.take(
            "tls.dir",
            None,
            c,
            &default_dir.display().to_string(),
            "a directory",
        )?;
        // Outside production, `marty dev certs` switches it on: once its CA exists, the
        // services and the CLI of this state directory use it.
        let default_mode = if environment == Environment::Production || dir.join("ca.crt").exists()
        {
            "mutual"
        } else {
            "off"
        };
        let c = self
            .env_value("MARTY_TLS")
            .or(self.file_value(&["tls", "mode"])?);
        let origin = c.as_ref().map(|(_, o)| o.clone());
        let mode: TlsMode = self.take("tls.mode", None, c, default_mode, "off or mutual")?;
        if mode == TlsMode::Off && environment == Environment::Production {
            let message = "production requires mutual TLS: without it any process that reaches a service can obtain certificates and signatures".to_owned();
            return Err(match origin {
                Some(Origin::Env { var }) => ConfigError::Env { var, message },
                _ => self.invalid("tls.mode", message),
            });
        }
        let c = self
            .env_value("MARTY_TLS_IDENTITY")
            .or(self.file_value(&["tls", "identity"])?);
        let identity: String = self.take("tls.identity", None, c, "operator", "a file stem")?;
        if !valid_identity_stem(&identity) {
            return Err(self.invalid(
                "tls.identity",
                format!(
                    "{identity:?}: expected lower-case letters, digits, '-', '_' and '.' (the stem of <dir>/<identity>.crt)"
                ),
            ));
        }
        let c = self
            .env_value("MARTY_TLS_RELOAD_SECS")
            .or(self.file_value(&["tls", "reload_interval_secs"])?);
        let secs: u64 = self.take(
            "tls.reload_interval_secs",
            None,
            c,
            "10",
            "a number of seconds",
        )?;
        if secs == 0 {
            return Err(self.invalid("tls.reload_interval_secs", "must be at least 1 second"));
        }
        let reload_interval = Duration::from_secs(secs);
        let authorization = self.authorization()?;
        Ok(TlsSettings {
            mode,
            dir,
            identity,
            reload_interval,
            authorization,
        })
    }

    fn authorization(&mut self) -> Result<BTreeMap<String, Vec<Caller>>, ConfigError> {
        let mut rules = BTreeMap::new();
        let map = match self.node(&["authorization"]) {
            None | Some(Value::Null) => return Ok(rules),
            Some(Value::Mapping(m)) => m.clone(),
            Some(_) => {
                return Err(self.invalid(
                    "authorization",
                    "expected a mapping of \"package.Service/Method\" to a list of callers",
                ));
            }
        };
        for (k, v) in map {
            let Value::String(method) = k else {
                return Err(self.invalid("authorization", "keys must be strings"));
            };
            let key = format!("authorization.{method}");
            let method = format!("/{}", method.trim_start_matches('/'));
            if method.matches('/').count() != 2 {
                return Err(self.invalid(&key, "expected \"package.Service/Method\""));
            }
            let items = match v {
                Value::Sequence(items) => items,
                Value::String(s) => vec![Value::String(s)],
                _ => return Err(self.invalid(&key, "expected a list of callers")),
            };
            let mut callers = Vec::new();
            for item in items {
                let Value::String(s) = item else {
                    return Err(self.invalid(&key, "expected a list of callers"));
                };
                callers.push(
                    s.trim()
                        .parse::<Caller>()
                        .map_err(|e| self.invalid(&key, e))?,
                );
            }
            self.record(
                &key,
                None,
                callers
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                false,
                Origin::File {
                    path: self.file.clone(),
                    key: key.clone(),
                },
            );
            rules.insert(method, callers);
        }
        Ok(rules)
    }
}
