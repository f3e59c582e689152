//! Private keys of the services (CSCA keys, Document Signer keys, Master List Signer keys),
//! never stored in clear.
//!
//! [`EnvelopeKeyStore`] is envelope encryption: each private key (PKCS#8 DER) is encrypted with
//! AES-256-GCM under a data key of its own, and the data key is wrapped — AES-256-GCM again —
//! by the service's key-encryption key (KEK). The KEK comes from configuration
//! (`MARTY_<SERVICE>_KEK` or `MARTY_<SERVICE>_KEK_FILE`), never from the database, so a copy
//! of the database alone decrypts nothing. The associated data of both encryptions names the
//! service and the key id, so a ciphertext moved to another row or another service's database
//! does not decrypt. Rotating the KEK re-wraps data keys ([`KeyStore::rewrap`]); the private
//! keys' ciphertexts stay as they are.
//!
//! [`KeyStore`] is the seam a hardware store (PKCS#11) fits behind.

pub mod pkcs11;
pub mod table;

use std::collections::BTreeMap;
use std::fmt;

use marty_config::Service;
use marty_icao::issue::{KeyPair, KeySpec};
use openssl::pkey::PKey;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The scheme name recorded beside every sealed key.
pub const ENVELOPE_SCHEME: &str = "envelope-aes-256-gcm/v1";

const GCM_NONCE: usize = 12;
const GCM_TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a key: {0}")]
    Generate(String),
    #[error(
        "the key {key_id} cannot be decrypted: its data key was wrapped by key-encryption key {kek_id}, which this service is not configured with (set the KEK that was in use, or the previous one during a rotation)"
    )]
    UnknownKek { key_id: Uuid, kek_id: String },
    #[error(
        "the key {0} does not decrypt: its ciphertext was altered, moved to another key or service, or the key-encryption key is not the one it was sealed with"
    )]
    Integrity(Uuid),
    #[error("the key {0} is sealed with an unknown scheme {1}")]
    Scheme(Uuid, String),
    #[error("key encryption: {0}")]
    Crypto(String),
    #[error("PKCS#11 token: {0}")]
    Token(String),
    #[error(transparent)]
    Config(#[from] marty_config::ConfigError),
}

/// The key store `service` is configured with: its PKCS#11 token, or envelope encryption
/// under its KEK.
pub fn configured(
    config: &marty_config::Config,
    service: Service,
) -> Result<std::sync::Arc<dyn KeyStore>, KeyError> {
    Ok(match config.key_store(service) {
        marty_config::KeyStoreSettings::Envelope => std::sync::Arc::new(
            EnvelopeKeyStore::from_config(service, &config.kek(service)?),
        ),
        marty_config::KeyStoreSettings::Pkcs11 { .. } => {
            std::sync::Arc::new(configured_token(config, service)?)
        }
    })
}

/// The PKCS#11 store of `service` (an error when it is configured with envelope encryption).
pub fn configured_token(
    config: &marty_config::Config,
    service: Service,
) -> Result<pkcs11::Pkcs11KeyStore, KeyError> {
    let marty_config::KeyStoreSettings::Pkcs11 { module, token } = config.key_store(service) else {
        return Err(KeyError::Token(format!(
            "{service} is configured with envelope encryption, not a PKCS#11 token"
        )));
    };
    pkcs11::Pkcs11KeyStore::open(
        service,
        &pkcs11::Pkcs11Config {
            module: module.clone(),
            token: token.clone(),
            pin: config.pkcs11_pin(service)?,
        },
    )
}

fn crypto(e: openssl::error::ErrorStack) -> KeyError {
    KeyError::Crypto(e.to_string())
}

/// A key-encryption key: 32 bytes, zeroed when dropped. Its id is derived from it (a hash,
/// which reveals nothing of it), so a row records which KEK wrapped its data key.
pub struct Kek {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

impl Kek {
    pub fn new(key: [u8; 32]) -> Kek {
        let key = Zeroizing::new(key);
        let mut material = b"marty key-encryption key id/".to_vec();
        material.extend_from_slice(&*key);
        let digest = openssl::sha::sha256(&material);
        material.iter_mut().for_each(|b| *b = 0);
        let id = format!("kek-{}", marty_icao::hex::encode(&digest[..8]));
        Kek { id, key }
    }

    /// From configuration.
    pub fn from_config(secret: &marty_config::KekSecret) -> Kek {
        Kek::new(*secret.bytes())
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A private key as stored: the public key in clear, the private key sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    pub key_id: Uuid,
    /// SubjectPublicKeyInfo, DER (kept with explicit EC parameters when the key has them).
    pub spki: Vec<u8>,
    /// Whether the key signs with RSASSA-PSS.
    pub pss: bool,
    pub scheme: String,
    pub kek_id: String,
    /// AES-256-GCM of the PKCS#8 DER under the data key, tag appended.
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// AES-256-GCM of the data key under the KEK, tag appended.
    pub wrapped_data_key: Vec<u8>,
    pub data_key_nonce: Vec<u8>,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedKey({}, {}, {})",
            self.key_id, self.scheme, self.kek_id
        )
    }
}

/// Where private keys are kept and used.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// A new key pair for `key_id`, and how to store it.
    fn generate(&self, key_id: Uuid, spec: KeySpec) -> Result<(KeyPair, SealedKey), KeyError>;
    /// The key pair of a stored key.
    fn open(&self, sealed: &SealedKey) -> Result<KeyPair, KeyError>;
    /// The same key, its data key wrapped by the current KEK (a no-op for a key already so).
    fn rewrap(&self, sealed: &SealedKey) -> Result<SealedKey, KeyError>;
    /// The id of the KEK new keys are sealed with.
    fn current_kek_id(&self) -> &str;
    /// The scheme of the keys this store opens ([`ENVELOPE_SCHEME`], [`pkcs11::PKCS11_SCHEME`]).
    fn scheme(&self) -> &'static str;
}

/// Envelope encryption under the service's KEK (and, during a rotation, previous KEKs that
/// still open keys not yet re-wrapped).
#[derive(Debug)]
pub struct EnvelopeKeyStore {
    service: Service,
    current: Kek,
    previous: BTreeMap<String, Kek>,
}

impl EnvelopeKeyStore {
    pub fn new(service: Service, current: Kek, previous: Vec<Kek>) -> Self {
        Self {
            service,
            previous: previous.into_iter().map(|k| (k.id.clone(), k)).collect(),
            current,
        }
    }

    /// The store of `service` under its configured KEKs.
    pub fn from_config(service: Service, keks: &marty_config::KekConfig) -> Self {
        Self::new(
            service,
            Kek::from_config(&keks.current),
            keks.previous.iter().map(Kek::from_config).collect(),
        )
    }

    fn kek(&self, id: &str) -> Option<&Kek> {
        if self.current.id == id {
            Some(&self.current)
        } else {
            self.previous.get(id)
        }
    }

    /// Binds the private key's ciphertext to this service and key id.
    fn key_aad(&self, key_id: Uuid) -> Vec<u8> {
        format!("marty/{}/{key_id}/private-key", self.service.id()).into_bytes()
    }

    /// Binds a wrapped data key to this service, key id and KEK.
    fn wrap_aad(&self, key_id: Uuid, kek_id: &str) -> Vec<u8> {
        format!("marty/{}/{key_id}/data-key/{kek_id}", self.service.id()).into_bytes()
    }

    fn seal(&self, key_id: Uuid, pair: &KeyPair) -> Result<SealedKey, KeyError> {
        let mut data_key = Zeroizing::new([0u8; 32]);
        openssl::rand::rand_bytes(&mut *data_key).map_err(crypto)?;
        let private = pair.private.software().ok_or_else(|| {
            KeyError::Crypto("a key held by a device cannot be sealed into the database".into())
        })?;
        let plain = Zeroizing::new(private.private_key_to_pkcs8().map_err(crypto)?);
        let (ciphertext, nonce) = gcm_seal(&*data_key, &self.key_aad(key_id), &plain)?;
        let (wrapped_data_key, data_key_nonce) = gcm_seal(
            &*self.current.key,
            &self.wrap_aad(key_id, &self.current.id),
            &*data_key,
        )?;
        Ok(SealedKey {
            key_id,
            spki: pair.spki.clone(),
            pss: pair.pss,
            scheme: ENVELOPE_SCHEME.into(),
            kek_id: self.current.id.clone(),
            ciphertext,
            nonce,
            wrapped_data_key,
            data_key_nonce,
        })
    }

    fn data_key(&self, sealed: &SealedKey) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.scheme != ENVELOPE_SCHEME {
            return Err(KeyError::Scheme(sealed.key_id, sealed.scheme.clone()));
        }
        let kek = self
            .kek(&sealed.kek_id)
            .ok_or_else(|| KeyError::UnknownKek {
                key_id: sealed.key_id,
                kek_id: sealed.kek_id.clone(),
            })?;
        gcm_open(
            &*kek.key,
            &self.wrap_aad(sealed.key_id, &sealed.kek_id),
            &sealed.data_key_nonce,
            &sealed.wrapped_data_key,
        )
        .map_err(|_| KeyError::Integrity(sealed.key_id))
    }
}

impl KeyStore for EnvelopeKeyStore {
    fn generate(&self, key_id: Uuid, spec: KeySpec) -> Result<(KeyPair, SealedKey), KeyError> {
        let pair = KeyPair::generate(spec).map_err(|e| KeyError::Generate(e.to_string()))?;
        let sealed = self.seal(key_id, &pair)?;
        Ok((pair, sealed))
    }

    fn open(&self, sealed: &SealedKey) -> Result<KeyPair, KeyError> {
        let data_key = self.data_key(sealed)?;
        let plain = gcm_open(
            &data_key,
            &self.key_aad(sealed.key_id),
            &sealed.nonce,
            &sealed.ciphertext,
        )
        .map_err(|_| KeyError::Integrity(sealed.key_id))?;
        let private = PKey::private_key_from_pkcs8(&plain).map_err(crypto)?;
        // The sealed public key must be the private key's: a swapped column would otherwise
        // publish one key and sign with another.
        let public =
            openssl::pkey::PKey::public_key_from_der(&private.public_key_to_der().map_err(crypto)?)
                .map_err(crypto)?;
        let pair = KeyPair {
            private: private.into(),
            spki: sealed.spki.clone(),
            pss: sealed.pss,
        };
        match marty_icao::algo::public_key(&sealed.spki) {
            Ok(stored) if stored.public_eq(&public) => Ok(pair),
            _ => Err(KeyError::Integrity(sealed.key_id)),
        }
    }

    fn rewrap(&self, sealed: &SealedKey) -> Result<SealedKey, KeyError> {
        if sealed.kek_id == self.current.id {
            return Ok(sealed.clone());
        }
        let data_key = self.data_key(sealed)?;
        let (wrapped_data_key, data_key_nonce) = gcm_seal(
            &*self.current.key,
            &self.wrap_aad(sealed.key_id, &self.current.id),
            &data_key,
        )?;
        Ok(SealedKey {
            kek_id: self.current.id.clone(),
            wrapped_data_key,
            data_key_nonce,
            ..sealed.clone()
        })
    }

    fn current_kek_id(&self) -> &str {
        &self.current.id
    }

    fn scheme(&self) -> &'static str {
        ENVELOPE_SCHEME
    }
}

/// AES-256-GCM with a random nonce: (ciphertext ‖ tag, nonce).
fn gcm_seal(key: &[u8], aad: &[u8], plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let mut nonce = vec![0u8; GCM_NONCE];
    openssl::rand::rand_bytes(&mut nonce).map_err(crypto)?;
    let mut tag = [0u8; GCM_TAG];
    let mut out = encrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(&nonce),
        aad,
        plain,
        &mut tag,
    )
    .map_err(crypto)?;
    out.extend_from_slice(&tag);
    Ok((out, nonce))
}

fn gcm_open(
    key: &[u8],
    aad: &[u8],
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < GCM_TAG || nonce.len() != GCM_NONCE {
        return Err(KeyError::Crypto("truncated ciphertext".into()));
    }
    let (ciphertext, tag) = sealed.split_at(sealed.len() - GCM_TAG);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(nonce),
        aad,
        ciphertext,
        tag,
    )
    .map(Zeroizing::new)
    .map_err(crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use marty_icao::issue::Curve;

    fn store(service: Service, kek: [u8; 32]) -> EnvelopeKeyStore {
        EnvelopeKeyStore::new(service, Kek::new(kek), vec![])
    }

    #[test]
    fn sealed_keys_open_only_where_they_were_sealed() {
        let s = store(Service::Csca, [7; 32]);
        let id = Uuid::new_v4();
        let spec = KeySpec::Ec {
            curve: Curve::BrainpoolP256r1,
            explicit: true,
        };
        let (pair, sealed) = s.generate(id, spec).unwrap();
        let opened = s.open(&sealed).unwrap();
        assert!(opened.private.public_eq(pair.private.software().unwrap()));
        assert_eq!(opened.spki, pair.spki);
        // The PKCS#8 DER is not in the ciphertext.
        let plain = pair
            .private
            .software()
            .unwrap()
            .private_key_to_pkcs8()
            .unwrap();
        assert!(
            !sealed
                .ciphertext
                .windows(16)
                .any(|w| plain.windows(16).any(|p| p == w))
        );
        // Another KEK, another service, another key id: none opens it.
        assert!(matches!(
            store(Service::Csca, [8; 32]).open(&sealed),
            Err(KeyError::UnknownKek { .. })
        ));
        let other_service = EnvelopeKeyStore::new(Service::Pkd, Kek::new([7; 32]), vec![]);
        assert!(matches!(
            other_service.open(&sealed),
            Err(KeyError::Integrity(_))
        ));
        let moved = SealedKey {
            key_id: Uuid::new_v4(),
            ..sealed.clone()
        };
        assert!(matches!(s.open(&moved), Err(KeyError::Integrity(_))));
        let mut tampered = sealed.clone();
        tampered.ciphertext[3] ^= 1;
        assert!(matches!(s.open(&tampered), Err(KeyError::Integrity(_))));
        // A public key swapped for another's is caught.
        let (other, _) = s.generate(Uuid::new_v4(), spec).unwrap();
        let swapped = SealedKey {
            spki: other.spki,
            ..sealed.clone()
        };
        assert!(matches!(s.open(&swapped), Err(KeyError::Integrity(_))));
    }

    #[test]
    fn rotating_the_kek_rewraps_only_the_data_key() {
        let old = store(Service::DocumentSigner, [1; 32]);
        let (_, sealed) = old
            .generate(Uuid::new_v4(), KeySpec::Rsa { bits: 2048 })
            .unwrap();
        let rotated = EnvelopeKeyStore::new(
            Service::DocumentSigner,
            Kek::new([2; 32]),
            vec![Kek::new([1; 32])],
        );
        // During the rotation the previous KEK still opens it…
        rotated.open(&sealed).unwrap();
        let rewrapped = rotated.rewrap(&sealed).unwrap();
        assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
        assert_eq!(rewrapped.nonce, sealed.nonce);
        assert_ne!(rewrapped.wrapped_data_key, sealed.wrapped_data_key);
        assert_eq!(rewrapped.kek_id, rotated.current_kek_id());
        // …and afterwards the new KEK alone does.
        store(Service::DocumentSigner, [2; 32])
            .open(&rewrapped)
            .unwrap();
        assert!(
            store(Service::DocumentSigner, [2; 32])
                .open(&sealed)
                .is_err()
        );
    }
}
