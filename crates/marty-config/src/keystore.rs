//! Where a service keeps its private keys.
//!
//! | key | variable | default |
//! |---|---|---|
//! | `services.<id>.keys.store` | `MARTY_<SERVICE>_KEY_STORE` | `envelope` (AES-256-GCM under the service's KEK); `pkcs11` puts keys in a token |
//! | `services.<id>.keys.pkcs11_module` | `MARTY_<SERVICE>_PKCS11_MODULE` | SoftHSM2's module where it is installed (required in production) |
//! | `services.<id>.keys.pkcs11_token` | `MARTY_<SERVICE>_PKCS11_TOKEN` | `marty-<service id>` |
//! | – | `MARTY_<SERVICE>_PKCS11_PIN` or `…_PKCS11_PIN_FILE` (0600) | – (never in the file) |
//!
//! Only the CSCA, the Document Signer and the PKD hold private keys. The PIN is read when the
//! service opens its store ([`crate::Config::pkcs11_pin`]), like a KEK.

use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::{ConfigError, Environment, Loader, Origin, Service};

pub(crate) const KEYS_KEYS: &[&str] = &["store", "pkcs11_module", "pkcs11_token"];

/// Where SoftHSM2's module lies on Debian and Ubuntu.
const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
];

/// The kind of key store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStoreKind {
    Envelope,
    Pkcs11,
}

impl FromStr for KeyStoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "envelope" => Ok(KeyStoreKind::Envelope),
            "pkcs11" => Ok(KeyStoreKind::Pkcs11),
            _ => Err(format!(
                "unknown key store {s:?}: expected envelope or pkcs11"
            )),
        }
    }
}

/// A service's key store settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyStoreSettings {
    /// Envelope encryption under the service's KEK ([`crate::Config::kek`]).
    Envelope,
    /// A PKCS#11 token.
    Pkcs11 { module: PathBuf, token: String },
}

/// Where a service's PIN comes from, before it is read.
#[derive(Clone, Debug)]
pub(crate) enum PinSource {
    Value(Zeroizing<String>, String),
    File(PathBuf, String),
}

impl Loader<'_> {
    pub(crate) fn key_store(
        &mut self,
        service: Service,
        environment: Environment,
    ) -> Result<(KeyStoreSettings, Option<PinSource>), ConfigError> {
        let id = service.id();
        let prefix = service.env_prefix();
        let c = self
            .env_value(&format!("MARTY_{prefix}_KEY_STORE"))
            .or(self.file_value(&["services", id, "keys", "store"])?);
        let kind: KeyStoreKind = self.take(
            &format!("services.{id}.keys.store"),
            Some(service),
            c,
            "envelope",
            "envelope or pkcs11",
        )?;
        if kind == KeyStoreKind::Envelope {
            return Ok((KeyStoreSettings::Envelope, None));
        }
        if !service.holds_keys() {
            return Err(self.invalid(
                &format!("services.{id}.keys.store"),
                format!("the {id} service holds no private keys"),
            ));
        }
        let c = self
            .env_value(&format!("MARTY_{prefix}_PKCS11_MODULE"))
            .or(self.file_value(&["services", id, "keys", "pkcs11_module"])?);
        let softhsm = SOFTHSM_MODULES
            .iter()
            .find(|m| std::path::Path::new(m).exists())
            .filter(|_| environment != Environment::Production);
        let module: String = match (c, softhsm) {
            (Some(c), _) => self.take(
                &format!("services.{id}.keys.pkcs11_module"),
                Some(service),
                Some(c),
                "",
                "the path of a PKCS#11 module",
            )?,
            (None, Some(default)) => self.take(
                &format!("services.{id}.keys.pkcs11_module"),
                Some(service),
                None,
                default,
                "the path of a PKCS#11 module",
            )?,
            (None, None) => {
                return Err(self.invalid(
                    &format!("services.{id}.keys.pkcs11_module"),
                    format!(
                        "the {id} service keeps its keys in a PKCS#11 token: name the token's module with MARTY_{prefix}_PKCS11_MODULE or services.{id}.keys.pkcs11_module"
                    ),
                ));
            }
        };
        let c = self
            .env_value(&format!("MARTY_{prefix}_PKCS11_TOKEN"))
            .or(self.file_value(&["services", id, "keys", "pkcs11_token"])?);
        let token: String = self.take(
            &format!("services.{id}.keys.pkcs11_token"),
            Some(service),
            c,
            &format!("marty-{}", id.replace('_', "-")),
            "a token label",
        )?;
        let var = format!("MARTY_{prefix}_PKCS11_PIN");
        if self.env.get(&var).is_some() && self.env.get(&format!("{var}_FILE")).is_some() {
            return Err(ConfigError::Env {
                var: format!("{var}_FILE"),
                message: format!("set either {var} or {var}_FILE, not both"),
            });
        }
        let pin = if let Some(v) = self.env.get(&var) {
            Some(PinSource::Value(Zeroizing::new(v.to_owned()), var.clone()))
        } else {
            let file_var = format!("{var}_FILE");
            self.env
                .get(&file_var)
                .map(|p| PinSource::File(PathBuf::from(p), file_var))
        };
        let origin = match &pin {
            Some(PinSource::Value(_, var) | PinSource::File(_, var)) => {
                Origin::Env { var: var.clone() }
            }
            None => Origin::Default,
        };
        let shown = if pin.is_some() { "" } else { "(not set)" };
        self.record(
            &format!("services.{id}.keys.pkcs11_pin"),
            Some(service),
            shown.into(),
            pin.is_some(),
            origin,
        );
        Ok((
            KeyStoreSettings::Pkcs11 {
                module: PathBuf::from(module),
                token,
            },
            pin,
        ))
    }
}

impl PinSource {
    pub(crate) fn resolve(
        source: Option<&PinSource>,
        service: Service,
    ) -> Result<Zeroizing<String>, ConfigError> {
        let prefix = service.env_prefix();
        let bad = |message: String| ConfigError::KeyStore { service, message };
        match source {
            None => Err(bad(format!(
                "the {service} service keeps its keys in a PKCS#11 token and no PIN is configured: set MARTY_{prefix}_PKCS11_PIN or MARTY_{prefix}_PKCS11_PIN_FILE (a 0600 file holding it)"
            ))),
            Some(PinSource::Value(v, _)) => Ok(Zeroizing::new(v.as_str().to_owned())),
            Some(PinSource::File(path, var)) => {
                let text = crate::kek::read_private(path)
                    .map_err(|m| bad(format!("{} (named by {var}) {m}", path.display())))?;
                // The line ending a file ends with is not part of the PIN; spaces may be.
                let pin = text.strip_suffix('\n').unwrap_or(&text);
                let pin = pin.strip_suffix('\r').unwrap_or(pin);
                Ok(Zeroizing::new(pin.to_owned()))
            }
        }
    }
}
