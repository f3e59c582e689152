//! A [`KeyStore`] whose private keys are generated and used inside a PKCS#11 token (an HSM, or
//! SoftHSM2 in development and in the tests) and never leave it.
//!
//! Every private key is created by the token with `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`
//! and `CKA_EXTRACTABLE = false`, labelled `marty/<service>/<key id>` and identified by the key
//! id's 16 bytes (`CKA_ID`). The service's key table keeps the public key and, in place of a
//! ciphertext, the key's PKCS#11 URI (RFC 7512): a handle, not the key. Signing hashes in the
//! process and hands the digest to the token (`CKM_ECDSA`, `CKM_RSA_PKCS` over a DigestInfo,
//! `CKM_RSA_PKCS_PSS`), so one mechanism per key type covers every digest.
//!
//! A key is used only while the token still says it cannot be extracted and only if the token's
//! public key is the one the table publishes: a table row pointing at another object is refused.
//!
//! EC keys are generated on the named curve; the SubjectPublicKeyInfo Marty publishes carries
//! explicit domain parameters when the CSCA profile asks for them (the key is the same either
//! way), so tokens that only accept named curves still serve ICAO's explicit-parameter profile.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use marty_config::Service;
use marty_icao::algo::{DigestAlgorithm, SignatureAlgorithm};
use marty_icao::der;
use marty_icao::issue::{Curve, ExternalSigner, KeyPair, KeySpec, SigningKey};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{Asn1Flag, EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{KeyError, KeyStore, SealedKey};

/// The scheme recorded beside a key that lives in a PKCS#11 token.
pub const PKCS11_SCHEME: &str = "pkcs11/v1";

/// Where a service's token is and how to log in to it.
pub struct Pkcs11Config {
    /// The PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &"********")
            .finish()
    }
}

/// How often a read that failed with `CKR_GENERAL_ERROR` is tried in all.
const TRANSIENT_TRIES: u32 = 6;

/// Runs `f` until it succeeds, fails with anything but `CKR_GENERAL_ERROR`, or has been tried
/// `tries` times, waiting 50 ms, 100 ms, 200 ms, … between tries. Only for reads: a login is
/// never repeated (a token counts failed logins).
fn retry_transient<T>(tries: u32, mut f: impl FnMut() -> Result<T, CkError>) -> Result<T, CkError> {
    let mut wait = std::time::Duration::from_millis(50);
    let mut tried = 1;
    loop {
        match f() {
            Err(CkError::Pkcs11(RvError::GeneralError, _)) if tried < tries => {
                std::thread::sleep(wait);
                wait *= 2;
                tried += 1;
            }
            result => return result,
        }
    }
}

fn token_err(what: &str) -> impl Fn(CkError) -> KeyError + '_ {
    move |e| KeyError::Token(format!("{what}: {e}"))
}

/// One loaded module per process: PKCS#11 allows a single `C_Initialize` per application, and
/// the login state of a token belongs to the application, not to a session.
fn module(path: &Path) -> Result<Pkcs11, KeyError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    if !path.exists() {
        return Err(KeyError::Token(format!(
            "the PKCS#11 module {} does not exist (install the token's library, e.g. Debian's softhsm2, or correct the module path)",
            path.display()
        )));
    }
    let context = Pkcs11::new(path).map_err(|e| {
        KeyError::Token(format!(
            "loading the PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(KeyError::Token(format!(
                "initialising the PKCS#11 module {}: {e}",
                path.display()
            )));
        }
    }
    modules.insert(path.to_path_buf(), context.clone());
    Ok(context)
}

/// A token by module and label.
type TokenKey = (PathBuf, String);

/// A logged-in token, shared by every store of the process that uses it.
struct Token {
    context: Pkcs11,
    slot: Slot,
    label: String,
    /// Kept open for the life of the process: closing an application's last session logs it
    /// out of the token.
    _login: Mutex<Session>,
    /// Sessions ready for signing (a session serves one operation at a time).
    idle: Mutex<Vec<Session>>,
}

impl Token {
    fn open(config: &Pkcs11Config) -> Result<Arc<Token>, KeyError> {
        static TOKENS: OnceLock<Mutex<HashMap<TokenKey, Arc<Token>>>> = OnceLock::new();
        let mut tokens = TOKENS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (config.module.clone(), config.token.clone());
        if let Some(t) = tokens.get(&key) {
            return Ok(t.clone());
        }
        let context = module(&config.module)?;
        // Every token of the module is read here, including those other processes are
        // writing to (a login rewrites a SoftHSM token's state file): such a read can fail
        // with CKR_GENERAL_ERROR and succeed a moment later.
        let slots = retry_transient(TRANSIENT_TRIES, || {
            context
                .get_slots_with_token()?
                .into_iter()
                .map(|slot| Ok((slot, context.get_token_info(slot)?)))
                .collect::<Result<Vec<_>, CkError>>()
        })
        .map_err(token_err("listing the token slots"))?;
        let mut labels = Vec::new();
        let mut found = None;
        for (slot, info) in slots {
            if !info.token_initialized() {
                continue;
            }
            let label = info.label().trim_end().to_owned();
            if label == config.token {
                if found.is_some() {
                    return Err(KeyError::Token(format!(
                        "two tokens are labelled {:?} in {}: give each token a label of its own",
                        config.token,
                        config.module.display()
                    )));
                }
                found = Some(slot);
            }
            labels.push(label);
        }
        let slot = found.ok_or_else(|| {
            KeyError::Token(format!(
                "no token labelled {:?} in {} (tokens there: {}); initialise one (`softhsm2-util --init-token --free --label {}`) or correct the label",
                config.token,
                config.module.display(),
                if labels.is_empty() {
                    "none".to_owned()
                } else {
                    labels.join(", ")
                },
                config.token
            ))
        })?;
        if config.pin.is_empty() {
            return Err(KeyError::Token(format!(
                "the PIN of token {:?} is empty (an empty PIN file?): refusing to spend a login attempt on it",
                config.token
            )));
        }
        let info = retry_transient(TRANSIENT_TRIES, || context.get_token_info(slot))
            .map_err(token_err("reading the token's description"))?;
        let locked = || {
            KeyError::Token(format!(
                "the user PIN of token {:?} is locked: its security officer must unlock it",
                config.token
            ))
        };
        if info.user_pin_locked() {
            return Err(locked());
        }
        if info.user_pin_final_try() {
            // A restart loop with a wrong PIN would lock the token for good.
            return Err(KeyError::Token(format!(
                "the user PIN of token {:?} has one try left: refusing to log in automatically; check the PIN and log in once by hand",
                config.token
            )));
        }
        let login = context
            .open_rw_session(slot)
            .map_err(token_err("opening a session"))?;
        let pin = AuthPin::new(config.pin.as_str().into());
        match login.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(KeyError::Token(format!(
                    "the PIN of token {:?} is wrong (the token counts failed logins and may lock)",
                    config.token
                )));
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => return Err(locked()),
            Err(e) => return Err(token_err("logging in to the token")(e)),
        }
        let token = Arc::new(Token {
            context,
            slot,
            label: config.token.clone(),
            _login: Mutex::new(login),
            idle: Mutex::new(Vec::new()),
        });
        tokens.insert(key, token.clone());
        Ok(token)
    }

    /// Runs `f` on an idle session (opening one when none is idle) and keeps the session for
    /// the next call unless the token said it is gone.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, CkError>,
    ) -> Result<T, CkError> {
        let session = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match session {
            Some(s) => s,
            None => self.context.open_rw_session(self.slot)?,
        };
        let result = f(&session);
        let broken = matches!(
            result,
            Err(CkError::Pkcs11(
                RvError::SessionClosed
                    | RvError::SessionHandleInvalid
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent,
                _
            ))
        );
        if !broken {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(session);
        }
        result
    }
}

/// A PKCS#11-backed key store of one service.
pub struct Pkcs11KeyStore {
    service: Service,
    token: Arc<Token>,
    /// Recorded in the key table's `key_encryption_key_id` column: which token holds the key.
    store_id: String,
}

impl fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11KeyStore({}, {})", self.service, self.store_id)
    }
}

/// What the token says about one of the service's private keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenKeyInfo {
    pub key_id: Option<Uuid>,
    pub label: String,
    pub key_type: String,
    pub sensitive: bool,
    pub extractable: bool,
    pub always_sensitive: bool,
    pub never_extractable: bool,
    /// Whether the token refused to return the private key's value when asked.
    pub value_refused: bool,
}

impl TokenKeyInfo {
    /// The key cannot leave the token and never could.
    pub fn confined(&self) -> bool {
        self.sensitive
            && !self.extractable
            && self.always_sensitive
            && self.never_extractable
            && self.value_refused
    }
}

impl Pkcs11KeyStore {
    /// Logs in to the configured token (once per process and token).
    pub fn open(service: Service, config: &Pkcs11Config) -> Result<Self, KeyError> {
        let token = Token::open(config)?;
        Ok(Self {
            service,
            store_id: format!("pkcs11:{}", token.label),
            token,
        })
    }

    fn label(&self, key_id: Uuid) -> String {
        format!("marty/{}/{key_id}", self.service.id())
    }

    /// RFC 7512 URI of a key: the handle the key table keeps.
    fn uri(&self, key_id: Uuid) -> String {
        format!(
            "pkcs11:token={};object={};id={};type=private",
            pct(self.token.label.as_bytes()),
            pct(self.label(key_id).as_bytes()),
            pct_all(key_id.as_bytes())
        )
    }

    /// The service's private keys as the token describes them.
    pub fn inspect(&self) -> Result<Vec<TokenKeyInfo>, KeyError> {
        let prefix = format!("marty/{}/", self.service.id());
        self.token
            .with_session(|s| {
                let mut out = Vec::new();
                for object in s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])? {
                    let attrs = s.get_attributes(
                        object,
                        &[
                            AttributeType::Label,
                            AttributeType::Id,
                            AttributeType::KeyType,
                            AttributeType::Sensitive,
                            AttributeType::Extractable,
                            AttributeType::AlwaysSensitive,
                            AttributeType::NeverExtractable,
                        ],
                    )?;
                    let mut info = TokenKeyInfo {
                        key_id: None,
                        label: String::new(),
                        key_type: "unknown".into(),
                        sensitive: false,
                        extractable: true,
                        always_sensitive: false,
                        never_extractable: false,
                        value_refused: false,
                    };
                    for a in attrs {
                        match a {
                            Attribute::Label(l) => info.label = String::from_utf8_lossy(&l).into(),
                            Attribute::Id(id) => info.key_id = Uuid::from_slice(&id).ok(),
                            Attribute::KeyType(t) => info.key_type = key_type_name(t).into(),
                            Attribute::Sensitive(b) => info.sensitive = b,
                            Attribute::Extractable(b) => info.extractable = b,
                            Attribute::AlwaysSensitive(b) => info.always_sensitive = b,
                            Attribute::NeverExtractable(b) => info.never_extractable = b,
                            _ => {}
                        }
                    }
                    if !info.label.starts_with(&prefix) {
                        continue;
                    }
                    let secret = if info.key_type == "EC" {
                        AttributeType::Value
                    } else {
                        AttributeType::PrivateExponent
                    };
                    info.value_refused = matches!(
                        s.get_attribute_info(object, &[secret])?.first(),
                        Some(AttributeInfo::Sensitive)
                    );
                    out.push(info);
                }
                Ok(out)
            })
            .map_err(token_err("listing the token's keys"))
    }

    fn find(
        &self,
        s: &Session,
        class: ObjectClass,
        key_id: Uuid,
    ) -> Result<Vec<ObjectHandle>, CkError> {
        // By id and label: in a token several services share, a row of one cannot reach
        // another's key.
        s.find_objects(&[
            Attribute::Class(class),
            Attribute::Label(self.label(key_id).into_bytes()),
            Attribute::Id(key_id.as_bytes().to_vec()),
        ])
    }

    /// The token's public key of `key_id` as a SubjectPublicKeyInfo-able key.
    fn token_public_key(
        &self,
        s: &Session,
        public: ObjectHandle,
    ) -> Result<Result<PKey<Public>, KeyError>, CkError> {
        let attrs = s.get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )?;
        let (mut kind, mut params, mut point, mut n, mut e) = (None, None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => kind = Some(t),
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                Attribute::Modulus(m) => n = Some(m),
                Attribute::PublicExponent(x) => e = Some(x),
                _ => {}
            }
        }
        Ok(match (kind, params, point, n, e) {
            (Some(KeyType::EC), Some(params), Some(point), _, _) => {
                ec_public_key(&params, &point, false)
            }
            (Some(KeyType::RSA), _, _, Some(n), Some(e)) => rsa_public_key(&n, &e),
            _ => Err(KeyError::Token(
                "the token's public key is neither a complete EC nor RSA key".into(),
            )),
        })
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn generate(&self, key_id: Uuid, spec: KeySpec) -> Result<(KeyPair, SealedKey), KeyError> {
        let id = key_id.as_bytes().to_vec();
        let label = self.label(key_id).into_bytes();
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
                Attribute::Private(private),
            ]
        };
        let mut public_template = common(false);
        public_template.push(Attribute::Verify(true));
        let mut private_template = common(true);
        private_template.extend([
            Attribute::Sign(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
        ]);
        let (mechanism, explicit, pss) = match spec {
            KeySpec::Ec { curve, explicit } => {
                public_template.push(Attribute::EcParams(named_curve_der(curve)));
                (Mechanism::EccKeyPairGen, explicit, false)
            }
            KeySpec::Rsa { bits } | KeySpec::RsaPss { bits } => {
                public_template.push(Attribute::ModulusBits(u64::from(bits).into()));
                public_template.push(Attribute::PublicExponent(vec![1, 0, 1]));
                (
                    Mechanism::RsaPkcsKeyPairGen,
                    false,
                    matches!(spec, KeySpec::RsaPss { .. }),
                )
            }
        };
        let (public, private) = self
            .token
            .with_session(|s| s.generate_key_pair(&mechanism, &public_template, &private_template))
            .map_err(|e| KeyError::Generate(format!("in token {:?}: {e}", self.token.label)))?;
        let public_key = self
            .token
            .with_session(|s| self.token_public_key(s, public))
            .map_err(token_err("reading the generated public key"))??;
        let public_key = match spec {
            KeySpec::Ec { .. } if explicit => reencode_ec(&public_key, true)?,
            _ => public_key,
        };
        let spki = public_key.public_key_to_der().map_err(crate::crypto)?;
        let pair = self.pair(private, public_key, spki, pss);
        let sealed = SealedKey {
            key_id,
            spki: pair.spki.clone(),
            pss,
            scheme: PKCS11_SCHEME.into(),
            kek_id: self.store_id.clone(),
            ciphertext: self.uri(key_id).into_bytes(),
            nonce: Vec::new(),
            wrapped_data_key: Vec::new(),
            data_key_nonce: Vec::new(),
        };
        Ok((pair, sealed))
    }

    fn open(&self, sealed: &SealedKey) -> Result<KeyPair, KeyError> {
        if sealed.scheme != PKCS11_SCHEME {
            return Err(KeyError::Scheme(sealed.key_id, sealed.scheme.clone()));
        }
        if sealed.kek_id != self.store_id
            || sealed.ciphertext != self.uri(sealed.key_id).into_bytes()
        {
            return Err(KeyError::Token(format!(
                "the key {} is held by {}, not by this service's token {:?}",
                sealed.key_id,
                String::from_utf8_lossy(&sealed.ciphertext),
                self.token.label
            )));
        }
        let key_id = sealed.key_id;
        let (private, public) = self
            .token
            .with_session(|s| {
                let private = self.find(s, ObjectClass::PRIVATE_KEY, key_id)?;
                let public = self.find(s, ObjectClass::PUBLIC_KEY, key_id)?;
                let [private] = private[..] else {
                    return Ok(Err(KeyError::Token(format!(
                        "the token {:?} holds {} private keys with the id of key {key_id} (expected one)",
                        self.token.label,
                        private.len()
                    ))));
                };
                let [public] = public[..] else {
                    return Ok(Err(KeyError::Token(format!(
                        "the token {:?} holds {} public keys with the id of key {key_id} (expected one)",
                        self.token.label,
                        public.len()
                    ))));
                };
                let flags = s.get_attributes(
                    private,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::AlwaysSensitive,
                        AttributeType::NeverExtractable,
                        AttributeType::Local,
                        AttributeType::Sign,
                    ],
                )?;
                // Generated in the token and never out of it: a key imported under the same
                // id and label (made, and perhaps kept, elsewhere) is not one of ours.
                let confined = [
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::AlwaysSensitive(true),
                    Attribute::NeverExtractable(true),
                    Attribute::Local(true),
                    Attribute::Sign(true),
                ]
                .iter()
                .all(|a| flags.contains(a));
                if !confined {
                    return Ok(Err(KeyError::Token(format!(
                        "refusing key {key_id}: the token does not hold it as a signing key generated in the token that was always sensitive and never extractable"
                    ))));
                }
                Ok(self.token_public_key(s, public)?.map(|p| (private, p)))
            })
            .map_err(token_err("finding the key in the token"))??;
        // The table publishes `sealed.spki`; the token must sign with that key's private half.
        let stored =
            marty_icao::algo::public_key(&sealed.spki).map_err(|_| KeyError::Integrity(key_id))?;
        if !stored.public_eq(&public) {
            return Err(KeyError::Token(format!(
                "the key {key_id}: the table publishes another public key than the token holds for it"
            )));
        }
        let pair = self.pair(private, stored, sealed.spki.clone(), sealed.pss);
        prove_signing(&pair, key_id)?;
        Ok(pair)
    }

    fn rewrap(&self, sealed: &SealedKey) -> Result<SealedKey, KeyError> {
        // A token key has no data key to re-wrap.
        Ok(sealed.clone())
    }

    fn scheme(&self) -> &'static str {
        PKCS11_SCHEME
    }

    fn current_kek_id(&self) -> &str {
        &self.store_id
    }
}

impl Pkcs11KeyStore {
    fn pair(
        &self,
        handle: ObjectHandle,
        public: PKey<Public>,
        spki: Vec<u8>,
        pss: bool,
    ) -> KeyPair {
        let describe = format!(
            "{} in PKCS#11 token {:?}",
            marty_icao::algo::describe_public_key(&spki),
            self.token.label
        );
        let signer = TokenSigner {
            token: self.token.clone(),
            handle,
            public,
            describe,
        };
        KeyPair {
            private: SigningKey::External(Arc::new(signer)),
            spki,
            pss,
        }
    }
}

/// A private key inside the token, used through it.
struct TokenSigner {
    token: Arc<Token>,
    handle: ObjectHandle,
    public: PKey<Public>,
    describe: String,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

impl ExternalSigner for TokenSigner {
    fn public_key(&self) -> &PKey<Public> {
        &self.public
    }

    fn sign_digest(
        &self,
        algorithm: &SignatureAlgorithm,
        digest: DigestAlgorithm,
        hash: &[u8],
    ) -> Result<Vec<u8>, String> {
        let (mechanism, input) = match algorithm {
            SignatureAlgorithm::Ecdsa { .. } => (Mechanism::Ecdsa, hash.to_vec()),
            SignatureAlgorithm::RsaPkcs1 { .. } | SignatureAlgorithm::RsaPkcs1Unspecified => {
                (Mechanism::RsaPkcs, digest_info(digest, hash))
            }
            SignatureAlgorithm::RsaPss {
                mgf1_digest,
                salt_len,
                ..
            } => (
                Mechanism::RsaPkcsPss(PkcsPssParams {
                    hash_alg: hash_mechanism(digest),
                    mgf: mgf1(*mgf1_digest),
                    s_len: u64::from(*salt_len).into(),
                }),
                hash.to_vec(),
            ),
            other => return Err(format!("the token does not sign {other:?}")),
        };
        let signature = self
            .token
            .with_session(|s| s.sign(&mechanism, self.handle, &input))
            .map_err(|e| format!("signing in token {:?}: {e}", self.token.label))?;
        if let SignatureAlgorithm::Ecdsa { .. } = algorithm {
            // PKCS#11 returns r ‖ s; X.509 and CMS carry ECDSA-Sig-Value (DER).
            if signature.is_empty() || signature.len() % 2 != 0 {
                return Err("the token returned a malformed ECDSA signature".into());
            }
            let (r, s) = signature.split_at(signature.len() / 2);
            let sig = BigNum::from_slice(r)
                .and_then(|r| BigNum::from_slice(s).map(|s| (r, s)))
                .and_then(|(r, s)| EcdsaSig::from_private_components(r, s))
                .and_then(|sig| sig.to_der())
                .map_err(|e| e.to_string())?;
            return Ok(sig);
        }
        Ok(signature)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// Signs a digest with the opened key and verifies it with the published public key: what the
/// token signs with must be what the certificates certify.
fn prove_signing(pair: &KeyPair, key_id: Uuid) -> Result<(), KeyError> {
    let algorithm = pair.signature_algorithm();
    let message = format!("marty key check {key_id}");
    let signature = marty_icao::algo::sign(&pair.private, &algorithm, message.as_bytes())
        .map_err(|e| KeyError::Token(format!("the key {key_id} does not sign: {e}")))?;
    marty_icao::algo::verify(
        &pair.spki,
        &algorithm,
        pair.digest(),
        message.as_bytes(),
        &signature,
    )
    .map_err(|_| {
        KeyError::Token(format!(
            "the key {key_id}: the token's signature does not verify with the published public key"
        ))
    })
}

fn key_type_name(t: KeyType) -> &'static str {
    if t == KeyType::EC {
        "EC"
    } else if t == KeyType::RSA {
        "RSA"
    } else {
        "other"
    }
}

fn hash_mechanism(d: DigestAlgorithm) -> MechanismType {
    match d {
        DigestAlgorithm::Sha1 => MechanismType::SHA1,
        DigestAlgorithm::Sha224 => MechanismType::SHA224,
        DigestAlgorithm::Sha256 => MechanismType::SHA256,
        DigestAlgorithm::Sha384 => MechanismType::SHA384,
        DigestAlgorithm::Sha512 => MechanismType::SHA512,
    }
}

fn mgf1(d: DigestAlgorithm) -> PkcsMgfType {
    match d {
        DigestAlgorithm::Sha1 => PkcsMgfType::MGF1_SHA1,
        DigestAlgorithm::Sha224 => PkcsMgfType::MGF1_SHA224,
        DigestAlgorithm::Sha256 => PkcsMgfType::MGF1_SHA256,
        DigestAlgorithm::Sha384 => PkcsMgfType::MGF1_SHA384,
        DigestAlgorithm::Sha512 => PkcsMgfType::MGF1_SHA512,
    }
}

/// PKCS#1 v1.5's DigestInfo: what `CKM_RSA_PKCS` pads and signs.
fn digest_info(d: DigestAlgorithm, hash: &[u8]) -> Vec<u8> {
    let algorithm = der::sequence(&[&der::Oid::known(d.oid()).to_der(), &der::null()]);
    der::sequence(&[&algorithm, &der::octet_string(hash)])
}

/// `CKA_EC_PARAMS` for a named curve: the DER of its OID.
fn named_curve_der(curve: Curve) -> Vec<u8> {
    let dotted = match curve {
        Curve::P256 => "1.2.840.10045.3.1.7",
        Curve::P384 => "1.3.132.0.34",
        Curve::P521 => "1.3.132.0.35",
        Curve::BrainpoolP256r1 => "1.3.36.3.3.2.8.1.1.7",
        Curve::BrainpoolP384r1 => "1.3.36.3.3.2.8.1.1.11",
        Curve::BrainpoolP512r1 => "1.3.36.3.3.2.8.1.1.13",
    };
    der::Oid::parse(dotted)
        .map(|o| o.to_der())
        .unwrap_or_default()
}

/// The EC public key of `CKA_EC_PARAMS` and `CKA_EC_POINT` (a DER OCTET STRING holding the
/// point, or the bare point as some tokens return it).
fn ec_public_key(params: &[u8], point: &[u8], explicit: bool) -> Result<PKey<Public>, KeyError> {
    let bad = |what: &str| KeyError::Token(format!("the token's EC public key: {what}"));
    let curve = Curve::ALL
        .into_iter()
        .find(|c| named_curve_der(*c) == params)
        .ok_or_else(|| bad("a curve Marty does not issue with"))?;
    let mut group = EcGroup::from_curve_name(curve.nid()).map_err(crate::crypto)?;
    group.set_asn1_flag(if explicit {
        Asn1Flag::EXPLICIT_CURVE
    } else {
        Asn1Flag::NAMED_CURVE
    });
    let mut ctx = BigNumContext::new().map_err(crate::crypto)?;
    // 0x04 is both the OCTET STRING tag and the uncompressed-point marker, so try the wrapped
    // reading first and the bare one after it: only one of them is a point of the curve.
    let wrapped = der::parse(point)
        .ok()
        .filter(|t| t.tag == der::Tag::OCTET_STRING && t.raw.len() == point.len())
        .map(|t| t.value);
    let p = wrapped
        .into_iter()
        .chain([point])
        .find_map(|bytes| EcPoint::from_bytes(&group, bytes, &mut ctx).ok())
        .ok_or_else(|| bad("not a point of its curve"))?;
    let key = EcKey::from_public_key(&group, &p).map_err(crate::crypto)?;
    PKey::from_ec_key(key).map_err(crate::crypto)
}

/// The same EC key with its domain parameters written out (ICAO's CSCA profile).
fn reencode_ec(key: &PKey<Public>, explicit: bool) -> Result<PKey<Public>, KeyError> {
    let ec = key.ec_key().map_err(crate::crypto)?;
    let mut group = EcGroup::from_curve_name(
        ec.group()
            .curve_name()
            .ok_or_else(|| KeyError::Token("an EC key without a named curve".into()))?,
    )
    .map_err(crate::crypto)?;
    group.set_asn1_flag(if explicit {
        Asn1Flag::EXPLICIT_CURVE
    } else {
        Asn1Flag::NAMED_CURVE
    });
    let key = EcKey::from_public_key(&group, ec.public_key()).map_err(crate::crypto)?;
    PKey::from_ec_key(key).map_err(crate::crypto)
}

fn rsa_public_key(n: &[u8], e: &[u8]) -> Result<PKey<Public>, KeyError> {
    let rsa = Rsa::from_public_components(
        BigNum::from_slice(n).map_err(crate::crypto)?,
        BigNum::from_slice(e).map_err(crate::crypto)?,
    )
    .map_err(crate::crypto)?;
    PKey::from_rsa(rsa).map_err(crate::crypto)
}

/// RFC 7512 percent-encoding of an attribute value: unreserved characters stay.
fn pct(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (*b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every byte percent-encoded (RFC 7512 writes binary ids so).
fn pct_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    fn failing(rv: RvError) -> CkError {
        CkError::Pkcs11(rv, Function::GetTokenInfo)
    }

    #[test]
    fn a_general_error_is_tried_again_until_it_passes() {
        let mut calls = 0;
        let got = retry_transient(TRANSIENT_TRIES, || {
            calls += 1;
            if calls < 3 {
                Err(failing(RvError::GeneralError))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn retries_stop_after_the_last_try_and_on_any_other_error() {
        let mut calls = 0;
        let got: Result<(), _> = retry_transient(3, || {
            calls += 1;
            Err(failing(RvError::GeneralError))
        });
        assert!(matches!(
            got,
            Err(CkError::Pkcs11(RvError::GeneralError, _))
        ));
        assert_eq!(calls, 3);

        let mut calls = 0;
        let got: Result<(), _> = retry_transient(TRANSIENT_TRIES, || {
            calls += 1;
            Err(failing(RvError::PinIncorrect))
        });
        assert!(matches!(
            got,
            Err(CkError::Pkcs11(RvError::PinIncorrect, _))
        ));
        assert_eq!(calls, 1, "only a general error is tried again");
    }
}
