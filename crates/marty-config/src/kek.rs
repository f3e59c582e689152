//! Key-encryption keys: where each service's KEK comes from.
//!
//! A service's private keys are sealed under its KEK (see `marty-keys`); the KEK itself never
//! enters a database. It comes from, in order:
//!
//! 1. `MARTY_<SERVICE>_KEK`: 64 hex digits, or the base64 of 32 bytes (`openssl rand -hex 32`);
//! 2. `MARTY_<SERVICE>_KEK_FILE`: a file readable by its owner only (mode 0600) holding one;
//! 3. in development and testing only, the secrets file, where `marty db setup` generates one
//!    per service once.
//!
//! During a rotation `MARTY_<SERVICE>_PREVIOUS_KEK` (or `…_PREVIOUS_KEK_FILE`) names the KEK
//! being replaced: the service still opens keys sealed under it and re-wraps them.
//!
//! Values are resolved when a service asks for them ([`crate::Config::kek`]), not when the
//! configuration loads: `marty db …` commands run by an operator who may not read the KEK file
//! must not fail because of it.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{ConfigError, Origin, Service};

/// A 32-byte key-encryption key, zeroed when dropped; never printed.
pub struct KekSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for KekSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KekSecret(********)")
    }
}

impl KekSecret {
    /// 64 hex digits or base64 (standard alphabet, padded or not) of exactly 32 bytes;
    /// surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<KekSecret, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Zeroizing::new(
                (0..32)
                    .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect::<Vec<u8>>(),
            )
        } else {
            decode_base64(text).ok_or_else(|| {
                "expected 64 hex digits or the base64 of 32 random bytes (e.g. `openssl rand -hex 32`)"
                    .to_owned()
            })?
        };
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "a key-encryption key has 32 bytes, this one {} (e.g. `openssl rand -hex 32`)",
                bytes.len()
            )
        })?;
        if key.iter().all(|b| *b == key[0]) {
            return Err("a key-encryption key must be random, not one repeated byte".into());
        }
        Ok(KekSecret(Zeroizing::new(key)))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A fresh random KEK, as 64 hex digits, for the development secrets file.
    pub(crate) fn generate_hex() -> String {
        use rand::RngCore;
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        key.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where a KEK comes from, before it is read.
#[derive(Debug, Clone)]
pub(crate) enum KekSource {
    /// The value itself (a variable or the secrets file).
    Value {
        value: Zeroizing<String>,
        origin: Origin,
    },
    /// A file holding the value.
    File { path: PathBuf, var: String },
}

impl KekSource {
    fn origin(&self) -> Origin {
        match self {
            KekSource::Value { origin, .. } => origin.clone(),
            KekSource::File { var, .. } => Origin::Env { var: var.clone() },
        }
    }

    fn resolve(&self, service: Service) -> Result<KekSecret, ConfigError> {
        let bad = |what: String, message: String| ConfigError::Kek {
            service,
            message: format!("{what}: {message}"),
        };
        match self {
            KekSource::Value { value, origin } => {
                KekSecret::parse(value).map_err(|m| bad(origin.to_string(), m))
            }
            KekSource::File { path, var } => {
                let what = format!("{} (named by {var})", path.display());
                let text = read_private(path).map_err(|m| bad(what.clone(), m))?;
                KekSecret::parse(&text).map_err(|m| bad(what, m))
            }
        }
    }
}

/// Permission bits a file holding a secret must not have: group write, anything for others.
pub(crate) const SECRET_FILE_FORBIDDEN: u32 = 0o037;

pub(crate) fn read_private(path: &Path) -> Result<Zeroizing<String>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mode = meta.permissions().mode();
    // Group read is allowed (a Kubernetes Secret volume reaches a non-root process only
    // through `fsGroup`); group write and anything for others is not.
    if mode & SECRET_FILE_FORBIDDEN != 0 {
        return Err(format!(
            "is readable by other users (mode {:o}); run `chmod 600 {}`",
            mode & 0o777,
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    String::from_utf8(bytes)
        .map(Zeroizing::new)
        .map_err(|_| "is not text".to_owned())
}

/// The configured KEK sources of one service.
#[derive(Debug, Clone, Default)]
pub(crate) struct KekSources {
    pub current: Option<KekSource>,
    pub previous: Option<KekSource>,
    /// Where development KEKs are generated, when the environment generates them.
    pub secrets_file: Option<PathBuf>,
}

/// A service's KEKs, read.
#[derive(Debug)]
pub struct KekConfig {
    /// Seals new keys; re-wraps keys sealed under `previous`.
    pub current: KekSecret,
    /// The KEK being rotated away from, if any.
    pub previous: Option<KekSecret>,
    pub origin: Origin,
}

impl KekSources {
    pub(crate) fn resolve(&self, service: Service) -> Result<KekConfig, ConfigError> {
        let Some(current) = &self.current else {
            let prefix = service.env_prefix();
            return Err(ConfigError::Kek {
                service,
                message: format!(
                    "no key-encryption key configured: set MARTY_{prefix}_KEK (64 hex digits, e.g. from `openssl rand -hex 32`) or MARTY_{prefix}_KEK_FILE (a 0600 file holding one){}",
                    self.secrets_file
                        .as_ref()
                        .map(|f| format!(
                            ", or run `marty db setup`, which generates development KEKs into {}",
                            f.display()
                        ))
                        .unwrap_or_default()
                ),
            });
        };
        let kek = current.resolve(service)?;
        let previous = self
            .previous
            .as_ref()
            .map(|p| p.resolve(service))
            .transpose()?;
        if previous.as_ref().is_some_and(|p| p.bytes() == kek.bytes()) {
            return Err(ConfigError::Kek {
                service,
                message:
                    "the previous key-encryption key is the current one: a rotation needs a new KEK"
                        .into(),
            });
        }
        Ok(KekConfig {
            current: kek,
            previous,
            origin: current.origin(),
        })
    }
}

/// RFC 4648 base64 (standard alphabet), padding optional; `None` on anything else.
fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = text.trim_end_matches('=');
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 3 / 4));
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding (fewer than 6 of them).
    if bits >= 6 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_parse_to_the_same_key() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let a = KekSecret::parse(hex).unwrap();
        let b = KekSecret::parse(b64).unwrap();
        let c = KekSecret::parse(&format!("  {}\n", b64.trim_end_matches('='))).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert_eq!(a.bytes(), c.bytes());
        assert_eq!(a.bytes()[31], 31);
        assert_eq!(format!("{a:?}"), "KekSecret(********)");
    }

    #[test]
    fn wrong_lengths_and_weak_keys_are_refused() {
        for bad in [
            "",
            "00",
            "AAEC",
            &"ab".repeat(31),
            &"ab".repeat(33),
            "not base64 at all!",
            &"00".repeat(32),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
        ] {
            assert!(KekSecret::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = KekSecret::generate_hex();
        let b = KekSecret::generate_hex();
        assert_ne!(a, b);
        KekSecret::parse(&a).unwrap();
    }
}
