//! Issuing: key pairs and certificates to the Doc 9303 Part 12 (8th edition) profiles, EF.SOD.
//!
//! | profile | KU (critical) | BC (critical) | EKU | other |
//! |---|---|---|---|---|
//! | CSCA | keyCertSign, cRLSign | cA, pathLen 0 | – | SKI, PKUP, SAN = IAN, CRLDP |
//! | link | keyCertSign, cRLSign | cA, pathLen 0 | – | AKI (old key), SKI (new key), PKUP, SAN (new), IAN (old), CRLDP, nameChange if renamed |
//! | DSC | digitalSignature | – | – | AKI, SKI, PKUP, SAN, IAN, CRLDP, documentTypeList |
//! | master list signer | digitalSignature | – | 2.23.136.1.1.3 | AKI, SKI, PKUP, SAN, IAN, CRLDP |
//!
//! SAN and IAN carry a directoryName whose localityName is the issuer's code as written in the
//! MRZ (`D` for Germany) (Part 12 §7.1.1.2). Private keys leave this module only as encrypted
//! PKCS#8.

use std::fmt;
use std::str::FromStr;

use openssl::ec::{Asn1Flag, EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use time::OffsetDateTime;

use crate::algo::{self, AlgorithmError, DigestAlgorithm, SignatureAlgorithm};
pub use crate::algo::{ExternalSigner, SigningKey};
use crate::cert::{CertError, Certificate};
use crate::cms::{self, CmsError, SidChoice};
use crate::der::{self, Oid, Tag};
use crate::name::Name;
use crate::oid;
use crate::sod::{self, LdsSecurityObject};

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Algorithm(#[from] AlgorithmError),
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error(transparent)]
    Cms(#[from] CmsError),
    #[error("key: {0}")]
    Key(String),
    #[error("{0}")]
    Invalid(String),
}

/// PBKDF2-HMAC-SHA256 iterations protecting private key files: OWASP's 2023 recommendation.
/// Deriving takes a few hundred milliseconds, once per key load.
pub const KEY_FILE_PBKDF2_ITERATIONS: u32 = 600_000;

/// Shortest passphrase accepted for new key files.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

fn key_err(e: openssl::error::ErrorStack) -> IssueError {
    IssueError::Key(e.to_string())
}

/// The curves of Doc 9303 Part 12 §4.1.6.2 that Marty issues on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
    BrainpoolP256r1,
    BrainpoolP384r1,
    BrainpoolP512r1,
}

impl Curve {
    pub const ALL: [Curve; 6] = [
        Curve::P256,
        Curve::P384,
        Curve::P521,
        Curve::BrainpoolP256r1,
        Curve::BrainpoolP384r1,
        Curve::BrainpoolP512r1,
    ];

    /// OpenSSL's identifier of the curve.
    pub fn nid(self) -> Nid {
        match self {
            Curve::P256 => Nid::X9_62_PRIME256V1,
            Curve::P384 => Nid::SECP384R1,
            Curve::P521 => Nid::SECP521R1,
            Curve::BrainpoolP256r1 => Nid::BRAINPOOL_P256R1,
            Curve::BrainpoolP384r1 => Nid::BRAINPOOL_P384R1,
            Curve::BrainpoolP512r1 => Nid::BRAINPOOL_P512R1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::BrainpoolP256r1 => "brainpoolP256r1",
            Curve::BrainpoolP384r1 => "brainpoolP384r1",
            Curve::BrainpoolP512r1 => "brainpoolP512r1",
        }
    }

    /// The digest matching the curve's strength.
    pub fn digest(self) -> DigestAlgorithm {
        match self {
            Curve::P256 | Curve::BrainpoolP256r1 => DigestAlgorithm::Sha256,
            Curve::P384 | Curve::BrainpoolP384r1 => DigestAlgorithm::Sha384,
            Curve::P521 | Curve::BrainpoolP512r1 => DigestAlgorithm::Sha512,
        }
    }
}

impl Curve {
    /// The names OpenSSL and SEC 2 give the NIST curves (`openssl ecparam -list_curves`).
    fn openssl_aliases(self) -> &'static [&'static str] {
        match self {
            Curve::P256 => &["prime256v1", "secp256r1"],
            Curve::P384 => &["secp384r1"],
            Curve::P521 => &["secp521r1"],
            _ => &[],
        }
    }
}

impl FromStr for Curve {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n = s.to_ascii_lowercase().replace(['-', '_'], "");
        Curve::ALL
            .into_iter()
            .find(|c| {
                c.name().to_ascii_lowercase().replace('-', "") == n
                    || c.openssl_aliases().contains(&n.as_str())
            })
            .ok_or_else(|| format!("unknown curve {s:?}: expected P-256 (prime256v1, secp256r1), P-384 (secp384r1), P-521 (secp521r1), brainpoolP256r1, brainpoolP384r1 or brainpoolP512r1"))
    }
}

/// What kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// ECDSA; `explicit` encodes the domain parameters in full (Part 12 §4.1.6.2 requires it
    /// for CSCA and DSC keys; generic verifiers such as `openssl verify` want named curves).
    Ec { curve: Curve, explicit: bool },
    /// RSA with PKCS#1 v1.5 signatures.
    Rsa { bits: u32 },
    /// RSA with RSASSA-PSS signatures (Part 12 §4.1.6.1: issuers SHOULD use PSS).
    RsaPss { bits: u32 },
}

impl FromStr for KeySpec {
    type Err = String;
    /// `ec:<curve>[:named|:explicit]`, `rsa:<bits>`, `rsa-pss:<bits>`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bits = |b: &str| -> Result<u32, String> {
            let bits: u32 = b.parse().map_err(|_| format!("invalid RSA size {b:?}"))?;
            if !(2048..=8192).contains(&bits) {
                return Err(format!("RSA keys must have 2048 to 8192 bits, not {bits}"));
            }
            Ok(bits)
        };
        match parts.as_slice() {
            ["ec", curve] => Ok(KeySpec::Ec {
                curve: curve.parse()?,
                explicit: true,
            }),
            ["ec", curve, "explicit"] => Ok(KeySpec::Ec {
                curve: curve.parse()?,
                explicit: true,
            }),
            ["ec", curve, "named"] => Ok(KeySpec::Ec {
                curve: curve.parse()?,
                explicit: false,
            }),
            ["rsa", b] => Ok(KeySpec::Rsa { bits: bits(b)? }),
            ["rsa-pss", b] => Ok(KeySpec::RsaPss { bits: bits(b)? }),
            _ => Err(format!(
                "unknown key spec {s:?}: expected ec:<curve>[:named|:explicit], rsa:<bits> or rsa-pss:<bits>"
            )),
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Ec { curve, explicit } => write!(
                f,
                "ec:{}:{}",
                curve.name(),
                if *explicit { "explicit" } else { "named" }
            ),
            KeySpec::Rsa { bits } => write!(f, "rsa:{bits}"),
            KeySpec::RsaPss { bits } => write!(f, "rsa-pss:{bits}"),
        }
    }
}

/// A private key with the SubjectPublicKeyInfo Marty publishes for it. Cloning shares the
/// key (OpenSSL reference counting, or the device's handle), it does not copy it.
#[derive(Clone)]
pub struct KeyPair {
    pub private: SigningKey,
    pub spki: Vec<u8>,
    /// Whether signatures use RSASSA-PSS.
    pub pss: bool,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", algo::describe_public_key(&self.spki))
    }
}

impl KeyPair {
    pub fn generate(spec: KeySpec) -> Result<KeyPair, IssueError> {
        match spec {
            KeySpec::Ec { curve, explicit } => {
                let mut group = EcGroup::from_curve_name(curve.nid()).map_err(key_err)?;
                group.set_asn1_flag(if explicit {
                    Asn1Flag::EXPLICIT_CURVE
                } else {
                    Asn1Flag::NAMED_CURVE
                });
                let ec = EcKey::generate(&group).map_err(key_err)?;
                let private = PKey::from_ec_key(ec).map_err(key_err)?;
                let spki = private.public_key_to_der().map_err(key_err)?;
                Ok(KeyPair {
                    private: private.into(),
                    spki,
                    pss: false,
                })
            }
            KeySpec::Rsa { bits } | KeySpec::RsaPss { bits } => {
                let private =
                    PKey::from_rsa(Rsa::generate(bits).map_err(key_err)?).map_err(key_err)?;
                let spki = private.public_key_to_der().map_err(key_err)?;
                Ok(KeyPair {
                    private: private.into(),
                    spki,
                    pss: matches!(spec, KeySpec::RsaPss { .. }),
                })
            }
        }
    }

    /// The signature algorithm this key signs with by default.
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        algo::default_signature_algorithm(&self.private, self.digest(), self.pss)
    }

    /// SHA-256 for RSA; the curve's strength for EC.
    pub fn digest(&self) -> DigestAlgorithm {
        if self.private.id() == Id::EC {
            let bits = self.private.bits();
            if bits > 384 {
                DigestAlgorithm::Sha512
            } else if bits > 256 {
                DigestAlgorithm::Sha384
            } else {
                DigestAlgorithm::Sha256
            }
        } else {
            DigestAlgorithm::Sha256
        }
    }

    /// Encrypted PKCS#8 PEM: PBES2 with PBKDF2-HMAC-SHA256 at [`KEY_FILE_PBKDF2_ITERATIONS`]
    /// and AES-256-CBC (RFC 8018), never in clear. OpenSSL's own writer uses 2,048 iterations,
    /// which a GPU tries passphrases against by the billion, so the structure is built here;
    /// `openssl pkcs8` and every PKCS#8 reader still read it. The passphrase must have at
    /// least [`MIN_PASSPHRASE_CHARS`] characters.
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> Result<Vec<u8>, IssueError> {
        // Spaces around the passphrase add nothing to guess.
        let chars = String::from_utf8_lossy(passphrase).trim().chars().count();
        if chars < MIN_PASSPHRASE_CHARS {
            return Err(IssueError::Key(format!(
                "refusing to protect a private key with a passphrase of {chars} characters: use at least {MIN_PASSPHRASE_CHARS}"
            )));
        }
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        openssl::rand::rand_bytes(&mut salt).map_err(key_err)?;
        openssl::rand::rand_bytes(&mut iv).map_err(key_err)?;
        let mut key = [0u8; 32];
        openssl::pkcs5::pbkdf2_hmac(
            passphrase,
            &salt,
            KEY_FILE_PBKDF2_ITERATIONS as usize,
            openssl::hash::MessageDigest::sha256(),
            &mut key,
        )
        .map_err(key_err)?;
        let private = self.private.software().ok_or_else(|| {
            IssueError::Key(
                "this private key lives in a hardware token and cannot be written to a file".into(),
            )
        })?;
        let mut plain = private.private_key_to_pkcs8().map_err(key_err)?;
        let encrypted = openssl::symm::encrypt(Cipher::aes_256_cbc(), &key, Some(&iv), &plain);
        // The clear key and the derived key leave memory as soon as they are used.
        plain.iter_mut().for_each(|b| *b = 0);
        key.iter_mut().for_each(|b| *b = 0);
        let encrypted = encrypted.map_err(key_err)?;
        let algorithm_identifier =
            |o: &'static str, params: &[u8]| der::sequence(&[&Oid::known(o).to_der(), params]);
        let kdf = algorithm_identifier(
            oid::PBKDF2,
            &der::sequence(&[
                &der::octet_string(&salt),
                &der::integer(i64::from(KEY_FILE_PBKDF2_ITERATIONS)),
                &der::integer(32),
                &algorithm_identifier(oid::HMAC_WITH_SHA256, &der::null()),
            ]),
        );
        let scheme = algorithm_identifier(oid::AES256_CBC, &der::octet_string(&iv));
        let info = der::sequence(&[
            &algorithm_identifier(oid::PBES2, &der::sequence(&[&kdf, &scheme])),
            &der::octet_string(&encrypted),
        ]);
        Ok(crate::inputs::encode_pem("ENCRYPTED PRIVATE KEY", &info))
    }

    /// Reads an encrypted PKCS#8 PEM written by [`KeyPair::to_encrypted_pem`]. The published
    /// SPKI is taken from `certificate` when given (it keeps explicit EC parameters).
    pub fn from_encrypted_pem(
        pem: &[u8],
        passphrase: &[u8],
        certificate: Option<&Certificate>,
    ) -> Result<KeyPair, IssueError> {
        let private = PKey::private_key_from_pem_passphrase(pem, passphrase).map_err(|_| {
            IssueError::Key(
                "cannot decrypt the private key: wrong passphrase or not an encrypted PKCS#8 PEM"
                    .into(),
            )
        })?;
        let spki = match certificate {
            Some(c) => c.spki.clone(),
            None => private.public_key_to_der().map_err(key_err)?,
        };
        let pss = certificate.is_some_and(|c| {
            matches!(c.signature_algorithm, Ok(SignatureAlgorithm::RsaPss { .. }))
        });
        Ok(KeyPair {
            private: private.into(),
            spki,
            pss,
        })
    }

    /// Does this key belong to `certificate`?
    pub fn matches(&self, certificate: &Certificate) -> bool {
        algo::public_key(&certificate.spki)
            .ok()
            .is_some_and(|public| self.private.public_eq(&public))
    }
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (an identifier, not a
/// security function).
pub fn key_identifier(spki: &[u8]) -> Vec<u8> {
    (|| -> Option<Vec<u8>> {
        let t = der::parse(spki).ok()?;
        let mut r = t.children();
        r.any("algorithm").ok()?;
        let (_, bits) = r.expect(Tag::BIT_STRING, "key").ok()?.bit_string().ok()?;
        Some(DigestAlgorithm::Sha1.digest(&bits))
    })()
    .unwrap_or_else(|| DigestAlgorithm::Sha1.digest(spki))
}

/// A positive random serial number of 16 octets (RFC 5280: at most 20).
pub fn random_serial() -> Vec<u8> {
    let mut serial = [0u8; 16];
    if openssl::rand::rand_bytes(&mut serial).is_err() {
        // Fall back to time-derived bytes; uniqueness matters, secrecy does not.
        let now = OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes();
        serial.copy_from_slice(&now);
    }
    serial[0] = (serial[0] & 0x7F) | 0x40;
    serial.to_vec()
}

/// Who a certificate is about.
#[derive(Debug, Clone)]
pub struct Subject {
    /// ISO 3166 alpha-2 country, upper case (countryName).
    pub country: String,
    /// The issuer's code as written in the MRZ (`D` for Germany, `UTO`), for SAN/IAN.
    pub mrz_country: String,
    pub organization: Option<String>,
    pub common_name: String,
}

impl Subject {
    pub fn name(&self) -> Name {
        let mut attrs: Vec<(&'static str, &str)> = vec![(oid::COUNTRY, self.country.as_str())];
        if let Some(o) = &self.organization {
            attrs.push((oid::ORGANIZATION, o.as_str()));
        }
        attrs.push((oid::COMMON_NAME, self.common_name.as_str()));
        Name::build(&attrs)
    }

    fn check(&self) -> Result<(), IssueError> {
        if !crate::country::is_alpha2(&self.country) {
            return Err(IssueError::Invalid(format!(
                "country {:?} must be two upper-case letters (ISO 3166 alpha-2)",
                self.country
            )));
        }
        if self.mrz_country.is_empty()
            || self.mrz_country.len() > 3
            || !self.mrz_country.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(IssueError::Invalid(format!(
                "MRZ country code {:?} must be 1 to 3 upper-case letters",
                self.mrz_country
            )));
        }
        if self.common_name.trim().is_empty() {
            return Err(IssueError::Invalid(
                "commonName must not be empty (Part 12 §7.1.1.1.1)".into(),
            ));
        }
        // The MRZ code goes into SAN/IAN beside countryName: they must name one State.
        if let crate::country::MrzCountry::Alpha2(codes) =
            crate::country::from_mrz(&self.mrz_country)
            && !codes.contains(&self.country.as_str())
        {
            return Err(IssueError::Invalid(format!(
                "MRZ country code {} is {}'s, not {}'s: the subjectAltName and countryName must name the same State",
                self.mrz_country,
                codes.join(" or "),
                self.country
            )));
        }
        Ok(())
    }

    /// GeneralNames with the directoryName { localityName = MRZ code } Part 12 §7.1.1.2 asks for.
    fn alt_name(&self) -> Vec<u8> {
        let dir = Name::build(&[(oid::LOCALITY, self.mrz_country.as_str())]);
        der::sequence(&[&der::tlv(Tag::context(4), &dir.raw)])
    }
}

/// Validity and private key usage period of a new certificate.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key_usage_not_before: OffsetDateTime,
    pub key_usage_not_after: OffsetDateTime,
}

impl Period {
    fn check(&self) -> Result<(), IssueError> {
        if self.not_after <= self.not_before
            || self.key_usage_not_after <= self.key_usage_not_before
        {
            return Err(IssueError::Invalid(
                "validity and key usage periods must end after they start".into(),
            ));
        }
        Ok(())
    }
}

fn ext(o: &'static str, critical: bool, value: Vec<u8>) -> Vec<u8> {
    let mut body = Oid::known(o).to_der();
    if critical {
        body.extend(der::boolean(true));
    }
    body.extend(der::octet_string(&value));
    der::tlv(Tag::SEQUENCE, &body)
}

/// keyUsage as a DER named bit list (trailing zero bits dropped).
fn key_usage(bits: &[u16]) -> Vec<u8> {
    let max = bits.iter().copied().max().unwrap_or(0);
    let len = usize::from(max / 8) + 1;
    let mut bytes = vec![0u8; len];
    for b in bits {
        bytes[usize::from(b / 8)] |= 0x80 >> (b % 8);
    }
    der::bit_string((7 - (max % 8)) as u8, &bytes)
}

fn pkup(p: &Period) -> Vec<u8> {
    let implicit = |n: u32, t: OffsetDateTime| {
        let mut v = der::generalized_time(t);
        v[0] = Tag::context_primitive(n).to_bytes()[0];
        v
    };
    der::sequence(&[
        &implicit(0, p.key_usage_not_before),
        &implicit(1, p.key_usage_not_after),
    ])
}

fn crl_dp(url: &str) -> Vec<u8> {
    let uri = der::tlv(Tag::context_primitive(6), url.as_bytes());
    let full_name = der::tlv(Tag::context(0), &uri);
    let dp_name = der::tlv(Tag::context(0), &full_name);
    der::sequence(&[&der::sequence(&[&dp_name])])
}

fn aki(key_id: &[u8]) -> Vec<u8> {
    der::sequence(&[&der::tlv(Tag::context_primitive(0), key_id)])
}

fn basic_constraints_ca() -> Vec<u8> {
    der::sequence(&[&der::boolean(true), &der::integer(0)])
}

/// Assembles, signs and parses back a certificate.
#[allow(clippy::too_many_arguments)]
fn certificate(
    serial: &[u8],
    issuer: &Name,
    subject: &Name,
    period: &Period,
    spki: &[u8],
    extensions: Vec<Vec<u8>>,
    signer: &KeyPair,
) -> Result<Certificate, IssueError> {
    period.check()?;
    let alg = signer.signature_algorithm();
    let exts: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    let mut validity = der::time(period.not_before);
    validity.extend(der::time(period.not_after));
    let tbs = der::sequence(&[
        &der::explicit(0, &der::integer(2)),
        &der::unsigned_integer(serial),
        &alg.to_der(),
        &issuer.raw,
        &der::tlv(Tag::SEQUENCE, &validity),
        &subject.raw,
        spki,
        &der::explicit(3, &der::sequence(&exts)),
    ]);
    let signature = algo::sign(&signer.private, &alg, &tbs)?;
    let raw = der::sequence(&[&tbs, &alg.to_der(), &der::bit_string(0, &signature)]);
    Ok(Certificate::from_der(&raw)?)
}

/// Common inputs of the issuing functions.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    pub subject: Subject,
    pub period: Period,
    /// cRLDistributionPoints URI (ldap, http or https; Part 12 §7.1.1.4).
    pub crl_distribution_point: String,
    pub serial: Option<Vec<u8>>,
}

impl CertificateRequest {
    fn check(&self) -> Result<(), IssueError> {
        self.subject.check()?;
        self.period.check()?;
        let dp = &self.crl_distribution_point;
        if !(dp.starts_with("http://") || dp.starts_with("https://") || dp.starts_with("ldap://")) {
            return Err(IssueError::Invalid(format!(
                "CRL distribution point {dp:?} must be an ldap, http or https URI"
            )));
        }
        Ok(())
    }

    fn serial(&self) -> Vec<u8> {
        self.serial.clone().unwrap_or_else(random_serial)
    }
}

/// The extensions of the CSCA profiles (root and link): AKI, SKI, KU keyCertSign + cRLSign,
/// PKUP, SAN, IAN, BC cA with pathLen 0, CRLDP.
fn ca_extensions(
    authority_key: &[u8],
    subject_key: &[u8],
    period: &Period,
    san: Vec<u8>,
    ian: Vec<u8>,
    crl_distribution_point: &str,
) -> Vec<Vec<u8>> {
    use crate::cert::key_usage::{CRL_SIGN, KEY_CERT_SIGN};
    vec![
        ext(oid::AUTHORITY_KEY_IDENTIFIER, false, aki(authority_key)),
        ext(
            oid::SUBJECT_KEY_IDENTIFIER,
            false,
            der::octet_string(subject_key),
        ),
        ext(oid::KEY_USAGE, true, key_usage(&[KEY_CERT_SIGN, CRL_SIGN])),
        ext(oid::PRIVATE_KEY_USAGE_PERIOD, false, pkup(period)),
        ext(oid::SUBJECT_ALT_NAME, false, san),
        ext(oid::ISSUER_ALT_NAME, false, ian),
        ext(oid::BASIC_CONSTRAINTS, true, basic_constraints_ca()),
        ext(
            oid::CRL_DISTRIBUTION_POINTS,
            false,
            crl_dp(crl_distribution_point),
        ),
    ]
}

/// A self-signed CSCA certificate.
pub fn make_csca(req: &CertificateRequest, key: &KeyPair) -> Result<Certificate, IssueError> {
    req.check()?;
    let name = req.subject.name();
    let ski = key_identifier(&key.spki);
    let alt = req.subject.alt_name();
    let exts = ca_extensions(
        &ski,
        &ski,
        &req.period,
        alt.clone(),
        alt,
        &req.crl_distribution_point,
    );
    certificate(
        &req.serial(),
        &name,
        &name,
        &req.period,
        &key.spki,
        exts,
        key,
    )
}

#[allow(clippy::too_many_arguments)]
/// A link certificate: the old key certifies the new CSCA's key (Part 12 §4.1.4.3, §7.1.1.5).
pub fn make_link(
    old: &Certificate,
    old_key: &KeyPair,
    old_subject: &Subject,
    new: &Certificate,
    new_subject: &Subject,
    period: &Period,
    crl_distribution_point: &str,
    serial: Option<Vec<u8>>,
) -> Result<Certificate, IssueError> {
    require_csca(old, "old CSCA")?;
    require_csca(new, "new CSCA")?;
    if !old_key.matches(old) {
        return Err(IssueError::Invalid(
            "the old CSCA's private key does not belong to the old CSCA certificate".into(),
        ));
    }
    let ski = key_identifier(&new.spki);
    let old_ski = old
        .subject_key_id
        .clone()
        .unwrap_or_else(|| key_identifier(&old.spki));
    let mut exts = ca_extensions(
        &old_ski,
        &ski,
        period,
        new_subject.alt_name(),
        old_subject.alt_name(),
        crl_distribution_point,
    );
    if !old.subject.matches(&new.subject) {
        exts.push(ext(oid::NAME_CHANGE, false, der::null()));
    }
    let serial = serial.unwrap_or_else(random_serial);
    certificate(
        &serial,
        &old.subject,
        &new.subject,
        period,
        &new.spki,
        exts,
        old_key,
    )
}

/// Only a CSCA certificate (cA, keyCertSign) may issue certificates: a DSC's key must not.
pub fn require_csca(cert: &Certificate, role: &str) -> Result<(), IssueError> {
    if cert.is_ca() && cert.has_key_usage(crate::cert::key_usage::KEY_CERT_SIGN) {
        Ok(())
    } else {
        Err(IssueError::Invalid(format!(
            "the {role} {} is not a CSCA certificate (it needs basicConstraints cA and keyUsage keyCertSign)",
            cert.subject
        )))
    }
}

fn end_entity(
    csca: &Certificate,
    csca_key: &KeyPair,
    csca_subject: &Subject,
    req: &CertificateRequest,
    spki: &[u8],
    extra: Vec<Vec<u8>>,
) -> Result<Certificate, IssueError> {
    req.check()?;
    require_csca(csca, "issuer")?;
    if !csca_key.matches(csca) {
        return Err(IssueError::Invalid(
            "the CSCA private key does not belong to the CSCA certificate".into(),
        ));
    }
    if !req
        .subject
        .country
        .eq_ignore_ascii_case(csca.subject.country().unwrap_or_default())
    {
        return Err(IssueError::Invalid(
            "countryName of issuer and subject must match (Part 12 Table 5)".into(),
        ));
    }
    let csca_ski = csca
        .subject_key_id
        .clone()
        .unwrap_or_else(|| key_identifier(&csca.spki));
    let mut exts = vec![
        ext(oid::AUTHORITY_KEY_IDENTIFIER, false, aki(&csca_ski)),
        ext(
            oid::SUBJECT_KEY_IDENTIFIER,
            false,
            der::octet_string(&key_identifier(spki)),
        ),
        ext(
            oid::KEY_USAGE,
            true,
            key_usage(&[crate::cert::key_usage::DIGITAL_SIGNATURE]),
        ),
        ext(oid::PRIVATE_KEY_USAGE_PERIOD, false, pkup(&req.period)),
        ext(oid::SUBJECT_ALT_NAME, false, req.subject.alt_name()),
        ext(oid::ISSUER_ALT_NAME, false, csca_subject.alt_name()),
        ext(
            oid::CRL_DISTRIBUTION_POINTS,
            false,
            crl_dp(&req.crl_distribution_point),
        ),
    ];
    exts.extend(extra);
    certificate(
        &req.serial(),
        &csca.subject,
        &req.subject.name(),
        &req.period,
        spki,
        exts,
        csca_key,
    )
}

/// A Document Signer certificate for `spki`, with its documentTypeList (e.g. `["P"]`).
pub fn make_dsc(
    csca: &Certificate,
    csca_key: &KeyPair,
    csca_subject: &Subject,
    req: &CertificateRequest,
    spki: &[u8],
    document_types: &[&str],
) -> Result<Certificate, IssueError> {
    if document_types.is_empty()
        || document_types
            .iter()
            .any(|t| t.is_empty() || t.len() > 2 || !der::is_printable(t))
    {
        return Err(IssueError::Invalid(
            "documentTypeList needs 1- or 2-character document codes such as P or ID".into(),
        ));
    }
    let list = der::sequence(&[
        &der::integer(0),
        &der::set_of(
            document_types
                .iter()
                .map(|t| der::printable_string(t))
                .collect(),
        ),
    ]);
    end_entity(
        csca,
        csca_key,
        csca_subject,
        req,
        spki,
        vec![ext(oid::DOCUMENT_TYPE_LIST, false, list)],
    )
}

/// A Master List Signer certificate (EKU 2.23.136.1.1.3, critical).
pub fn make_ml_signer(
    csca: &Certificate,
    csca_key: &KeyPair,
    csca_subject: &Subject,
    req: &CertificateRequest,
    spki: &[u8],
) -> Result<Certificate, IssueError> {
    let eku = der::sequence(&[&Oid::known(oid::MASTER_LIST_SIGNER_EKU).to_der()]);
    end_entity(
        csca,
        csca_key,
        csca_subject,
        req,
        spki,
        vec![ext(oid::EXT_KEY_USAGE, true, eku)],
    )
}

/// A Document Signer ready to sign many SODs: the certificate's profile and the key's match
/// are checked once, here, not at every signature (checking a key with explicit EC parameters
/// costs far more than the signature).
#[derive(Debug, Clone)]
pub struct SodSigner {
    dsc: Certificate,
    key: KeyPair,
}

impl SodSigner {
    pub fn new(dsc: Certificate, key: KeyPair) -> Result<SodSigner, IssueError> {
        if let Some(problem) = dsc.document_signer_problem() {
            return Err(IssueError::Invalid(format!(
                "refusing to sign an EF.SOD with {}: {problem}",
                dsc.subject
            )));
        }
        if !key.matches(&dsc) {
            return Err(IssueError::Invalid(
                "the Document Signer's private key does not belong to the DSC".into(),
            ));
        }
        Ok(SodSigner { dsc, key })
    }

    pub fn certificate(&self) -> &Certificate {
        &self.dsc
    }

    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    /// Signs an LDS security object into EF.SOD (0x77-wrapped CMS SignedData, eContentType
    /// 2.23.136.1.1.1, contentType + messageDigest [+ signingTime], the DSC embedded).
    pub fn sign(
        &self,
        lds: &LdsSecurityObject,
        sid: SidChoice,
        signing_time: Option<OffsetDateTime>,
    ) -> Result<Vec<u8>, IssueError> {
        if lds.hash_algorithm.is_weak() {
            return Err(IssueError::Invalid(
                "Marty never issues SHA-1 (Doc 9303 Part 12 §4.1.6)".into(),
            ));
        }
        let content = lds.to_der();
        let content_info = cms::sign(&cms::SignRequest {
            content_type: oid::LDS_SECURITY_OBJECT,
            content: &content,
            signer: &self.dsc,
            extra_certificates: &[],
            key: &self.key.private,
            digest: lds.hash_algorithm,
            signature_algorithm: algo::default_signature_algorithm(
                &self.key.private,
                lds.hash_algorithm,
                self.key.pss,
            ),
            sid,
            signing_time,
            detached: false,
        })?;
        Ok(sod::wrap(&content_info))
    }
}

/// Signs one EF.SOD (see [`SodSigner::sign`]).
pub fn make_sod(
    lds: &LdsSecurityObject,
    dsc: &Certificate,
    key: &KeyPair,
    sid: SidChoice,
    signing_time: Option<OffsetDateTime>,
) -> Result<Vec<u8>, IssueError> {
    if lds.hash_algorithm.is_weak() {
        return Err(IssueError::Invalid(
            "Marty never issues SHA-1 (Doc 9303 Part 12 §4.1.6)".into(),
        ));
    }
    SodSigner::new(dsc.clone(), key.clone())?.sign(lds, sid, signing_time)
}
