//! Digest and signature algorithms: AlgorithmIdentifier encoding and the OpenSSL calls.
//!
//! OpenSSL does the arithmetic (hashing, signing, verifying); Marty decides which algorithm an
//! AlgorithmIdentifier means, including the quirks of real documents: digest parameters NULL or
//! absent, `rsaEncryption` used as a signature algorithm (the digest then comes from the
//! SignerInfo), RSASSA-PSS parameters, BSI plain ECDSA signatures, and public keys with
//! explicit EC domain parameters (which Doc 9303 mandates and OpenSSL's chain verifier refuses).

use std::fmt;
use std::sync::Arc;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer, Verifier};
use serde::Serialize;

use crate::der::{self, DerError, Oid, Tag, Tlv};
use crate::oid;

/// Hash functions of Doc 9303 (SHA-1 only for verifying legacy documents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestAlgorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    pub fn oid(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha1 => oid::SHA1,
            DigestAlgorithm::Sha224 => oid::SHA224,
            DigestAlgorithm::Sha256 => oid::SHA256,
            DigestAlgorithm::Sha384 => oid::SHA384,
            DigestAlgorithm::Sha512 => oid::SHA512,
        }
    }

    pub fn from_oid(o: &Oid) -> Option<Self> {
        [
            DigestAlgorithm::Sha1,
            DigestAlgorithm::Sha224,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha384,
            DigestAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|d| o.is(d.oid()))
    }

    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha1 => "SHA-1",
            DigestAlgorithm::Sha224 => "SHA-224",
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha384 => "SHA-384",
            DigestAlgorithm::Sha512 => "SHA-512",
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha1 => 20,
            DigestAlgorithm::Sha224 => 28,
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
            DigestAlgorithm::Sha512 => 64,
        }
    }

    pub fn is_weak(self) -> bool {
        self == DigestAlgorithm::Sha1
    }

    fn md(self) -> MessageDigest {
        match self {
            DigestAlgorithm::Sha1 => MessageDigest::sha1(),
            DigestAlgorithm::Sha224 => MessageDigest::sha224(),
            DigestAlgorithm::Sha256 => MessageDigest::sha256(),
            DigestAlgorithm::Sha384 => MessageDigest::sha384(),
            DigestAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        openssl::hash::hash(self.md(), data)
            .map(|d| d.to_vec())
            .unwrap_or_default()
    }

    /// DigestAlgorithmIdentifier without parameters (Doc 9303 Part 10 §4.6.2.3 Note 2).
    pub fn to_der(self) -> Vec<u8> {
        der::sequence(&[&Oid::known(self.oid()).to_der()])
    }

    /// Parses a DigestAlgorithmIdentifier; parameters NULL or absent are both accepted.
    pub fn parse(t: &Tlv<'_>) -> Result<Self, AlgorithmError> {
        let mut r = t.expect(Tag::SEQUENCE, "AlgorithmIdentifier")?.children();
        let o = r.expect(Tag::OID, "algorithm")?.oid()?;
        if let Some(p) = r.next()?
            && p.tag != Tag::NULL
        {
            return Err(AlgorithmError::Parameters(o.to_string()));
        }
        DigestAlgorithm::from_oid(&o).ok_or(AlgorithmError::Unsupported(o.to_string()))
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Hash names as users type them: `sha256`, `SHA-256`, `sha-384`… SHA-1 parses (it is read
/// in legacy documents); issuing refuses it.
impl std::str::FromStr for DigestAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "sha1" => Ok(DigestAlgorithm::Sha1),
            "sha224" => Ok(DigestAlgorithm::Sha224),
            "sha256" => Ok(DigestAlgorithm::Sha256),
            "sha384" => Ok(DigestAlgorithm::Sha384),
            "sha512" => Ok(DigestAlgorithm::Sha512),
            _ => Err(format!(
                "unknown hash {:?}: expected sha256, sha384, sha512 or sha224",
                crate::text::printable(s)
            )),
        }
    }
}

/// A signature algorithm as an AlgorithmIdentifier names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum SignatureAlgorithm {
    Ecdsa {
        digest: DigestAlgorithm,
    },
    /// BSI TR-03111 `ecdsa-plain-*`: the signature is r || s, not DER.
    EcdsaPlain {
        digest: DigestAlgorithm,
    },
    RsaPkcs1 {
        digest: DigestAlgorithm,
    },
    /// `rsaEncryption` where a signature algorithm belongs: PKCS#1 v1.5 with the digest the
    /// context (the SignerInfo's digestAlgorithm) names.
    RsaPkcs1Unspecified,
    RsaPss {
        digest: DigestAlgorithm,
        mgf1_digest: DigestAlgorithm,
        salt_len: u32,
    },
}

/// Why an algorithm could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    #[error(transparent)]
    Der(#[from] DerError),
    #[error("unsupported algorithm {0}")]
    Unsupported(String),
    #[error("unexpected parameters for algorithm {0}")]
    Parameters(String),
    #[error("public key not usable: {0}")]
    Key(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("key type {key} cannot be used with {algorithm}")]
    Mismatch { key: String, algorithm: String },
    #[error("signing failed: {0}")]
    Signing(String),
    /// The signed object contradicts itself about its algorithm: a failed check, not an
    /// algorithm Marty cannot verify.
    #[error("{0}")]
    Inconsistent(String),
}

impl SignatureAlgorithm {
    /// The digest the signature hashes with (`fallback` for `rsaEncryption`).
    pub fn digest(&self, fallback: DigestAlgorithm) -> DigestAlgorithm {
        match self {
            SignatureAlgorithm::Ecdsa { digest }
            | SignatureAlgorithm::EcdsaPlain { digest }
            | SignatureAlgorithm::RsaPkcs1 { digest }
            | SignatureAlgorithm::RsaPss { digest, .. } => *digest,
            SignatureAlgorithm::RsaPkcs1Unspecified => fallback,
        }
    }

    pub fn name(&self) -> String {
        match self {
            SignatureAlgorithm::Ecdsa { digest } => format!("ECDSA with {digest}"),
            SignatureAlgorithm::EcdsaPlain { digest } => {
                format!("ECDSA (plain r||s) with {digest}")
            }
            SignatureAlgorithm::RsaPkcs1 { digest } => format!("RSA PKCS#1 v1.5 with {digest}"),
            SignatureAlgorithm::RsaPkcs1Unspecified => {
                "RSA PKCS#1 v1.5 (rsaEncryption OID as signature algorithm)".into()
            }
            SignatureAlgorithm::RsaPss {
                digest,
                mgf1_digest,
                salt_len,
            } => format!("RSASSA-PSS with {digest}, MGF1-{mgf1_digest}, salt {salt_len}"),
        }
    }

    pub fn parse(t: &Tlv<'_>) -> Result<Self, AlgorithmError> {
        let mut r = t.expect(Tag::SEQUENCE, "AlgorithmIdentifier")?.children();
        let o = r.expect(Tag::OID, "algorithm")?.oid()?;
        let params = r.next()?;
        let alg = match o.to_string().as_str() {
            oid::ECDSA_WITH_SHA1 => SignatureAlgorithm::Ecdsa {
                digest: DigestAlgorithm::Sha1,
            },
            oid::ECDSA_WITH_SHA224 => SignatureAlgorithm::Ecdsa {
                digest: DigestAlgorithm::Sha224,
            },
            oid::ECDSA_WITH_SHA256 => SignatureAlgorithm::Ecdsa {
                digest: DigestAlgorithm::Sha256,
            },
            oid::ECDSA_WITH_SHA384 => SignatureAlgorithm::Ecdsa {
                digest: DigestAlgorithm::Sha384,
            },
            oid::ECDSA_WITH_SHA512 => SignatureAlgorithm::Ecdsa {
                digest: DigestAlgorithm::Sha512,
            },
            oid::SHA1_WITH_RSA => SignatureAlgorithm::RsaPkcs1 {
                digest: DigestAlgorithm::Sha1,
            },
            oid::SHA224_WITH_RSA => SignatureAlgorithm::RsaPkcs1 {
                digest: DigestAlgorithm::Sha224,
            },
            oid::SHA256_WITH_RSA => SignatureAlgorithm::RsaPkcs1 {
                digest: DigestAlgorithm::Sha256,
            },
            oid::SHA384_WITH_RSA => SignatureAlgorithm::RsaPkcs1 {
                digest: DigestAlgorithm::Sha384,
            },
            oid::SHA512_WITH_RSA => SignatureAlgorithm::RsaPkcs1 {
                digest: DigestAlgorithm::Sha512,
            },
            oid::RSA_ENCRYPTION => SignatureAlgorithm::RsaPkcs1Unspecified,
            oid::RSASSA_PSS => return parse_pss(params.as_ref()),
            other => match other
                .strip_prefix(oid::ECDSA_PLAIN_ARC)
                .and_then(|s| s.strip_prefix('.'))
            {
                Some("1") => SignatureAlgorithm::EcdsaPlain {
                    digest: DigestAlgorithm::Sha1,
                },
                Some("2") => SignatureAlgorithm::EcdsaPlain {
                    digest: DigestAlgorithm::Sha224,
                },
                Some("3") => SignatureAlgorithm::EcdsaPlain {
                    digest: DigestAlgorithm::Sha256,
                },
                Some("4") => SignatureAlgorithm::EcdsaPlain {
                    digest: DigestAlgorithm::Sha384,
                },
                Some("5") => SignatureAlgorithm::EcdsaPlain {
                    digest: DigestAlgorithm::Sha512,
                },
                _ => return Err(AlgorithmError::Unsupported(other.to_owned())),
            },
        };
        Ok(alg)
    }

    /// The AlgorithmIdentifier Marty writes: RSA with NULL parameters (RFC 3447), ECDSA
    /// without (RFC 5758), PSS with explicit parameters.
    pub fn to_der(&self) -> Vec<u8> {
        let with = |o: &'static str, params: Option<Vec<u8>>| {
            let mut body = Oid::known(o).to_der();
            if let Some(p) = params {
                body.extend(p);
            }
            der::tlv(Tag::SEQUENCE, &body)
        };
        match self {
            SignatureAlgorithm::Ecdsa { digest } => with(
                match digest {
                    DigestAlgorithm::Sha1 => oid::ECDSA_WITH_SHA1,
                    DigestAlgorithm::Sha224 => oid::ECDSA_WITH_SHA224,
                    DigestAlgorithm::Sha256 => oid::ECDSA_WITH_SHA256,
                    DigestAlgorithm::Sha384 => oid::ECDSA_WITH_SHA384,
                    DigestAlgorithm::Sha512 => oid::ECDSA_WITH_SHA512,
                },
                None,
            ),
            SignatureAlgorithm::EcdsaPlain { digest } => {
                let n = match digest {
                    DigestAlgorithm::Sha1 => 1,
                    DigestAlgorithm::Sha224 => 2,
                    DigestAlgorithm::Sha256 => 3,
                    DigestAlgorithm::Sha384 => 4,
                    DigestAlgorithm::Sha512 => 5,
                };
                der::sequence(&[&Oid::parse(&format!("{}.{n}", oid::ECDSA_PLAIN_ARC))
                    .map(|o| o.to_der())
                    .unwrap_or_default()])
            }
            SignatureAlgorithm::RsaPkcs1 { digest } => with(
                match digest {
                    DigestAlgorithm::Sha1 => oid::SHA1_WITH_RSA,
                    DigestAlgorithm::Sha224 => oid::SHA224_WITH_RSA,
                    DigestAlgorithm::Sha256 => oid::SHA256_WITH_RSA,
                    DigestAlgorithm::Sha384 => oid::SHA384_WITH_RSA,
                    DigestAlgorithm::Sha512 => oid::SHA512_WITH_RSA,
                },
                Some(der::null()),
            ),
            SignatureAlgorithm::RsaPkcs1Unspecified => with(oid::RSA_ENCRYPTION, Some(der::null())),
            SignatureAlgorithm::RsaPss {
                digest,
                mgf1_digest,
                salt_len,
            } => {
                // Hash and MGF identifiers carry NULL parameters, as RFC 4055 and every
                // verifier expect inside PSS parameters.
                let hash_id = |d: DigestAlgorithm| {
                    der::sequence(&[&Oid::known(d.oid()).to_der(), &der::null()])
                };
                let mgf = der::sequence(&[&Oid::known(oid::MGF1).to_der(), &hash_id(*mgf1_digest)]);
                let params = der::sequence(&[
                    &der::explicit(0, &hash_id(*digest)),
                    &der::explicit(1, &mgf),
                    &der::explicit(2, &der::integer(i64::from(*salt_len))),
                ]);
                with(oid::RSASSA_PSS, Some(params))
            }
        }
    }
}

fn parse_pss(params: Option<&Tlv<'_>>) -> Result<SignatureAlgorithm, AlgorithmError> {
    // RFC 4055 defaults: SHA-1, MGF1-SHA-1, salt 20.
    let mut digest = DigestAlgorithm::Sha1;
    let mut mgf1_digest = DigestAlgorithm::Sha1;
    let mut salt_len = 20u32;
    if let Some(p) = params.filter(|p| p.tag != Tag::NULL) {
        let mut r = p.expect(Tag::SEQUENCE, "RSASSA-PSS-params")?.children();
        while let Some(field) = r.next()? {
            let inner = field.children().any("PSS parameter")?;
            match field.tag {
                t if t == Tag::context(0) => digest = DigestAlgorithm::parse(&inner)?,
                t if t == Tag::context(1) => {
                    let mut m = inner.expect(Tag::SEQUENCE, "maskGenAlgorithm")?.children();
                    let mgf = m.expect(Tag::OID, "MGF")?.oid()?;
                    if !mgf.is(oid::MGF1) {
                        return Err(AlgorithmError::Unsupported(format!(
                            "mask generation {mgf}"
                        )));
                    }
                    mgf1_digest = DigestAlgorithm::parse(&m.any("MGF1 digest")?)?;
                }
                t if t == Tag::context(2) => {
                    salt_len = u32::try_from(inner.integer_i64()?)
                        .map_err(|_| AlgorithmError::Parameters("RSASSA-PSS salt length".into()))?;
                }
                t if t == Tag::context(3) => {
                    if inner.integer_i64()? != 1 {
                        return Err(AlgorithmError::Parameters(
                            "RSASSA-PSS trailer field".into(),
                        ));
                    }
                }
                _ => return Err(AlgorithmError::Parameters("RSASSA-PSS".into())),
            }
        }
    }
    Ok(SignatureAlgorithm::RsaPss {
        digest,
        mgf1_digest,
        salt_len,
    })
}

/// A public key from a SubjectPublicKeyInfo, including EC keys with explicit domain parameters.
///
/// Keys are built from their components with OpenSSL's key constructors rather than its DER
/// decoder: OpenSSL 3's decoder framework looks providers up on every call, which cost more
/// than the signature verification itself (see docs/PERFORMANCE.md).
pub fn public_key(spki_der: &[u8]) -> Result<PKey<Public>, AlgorithmError> {
    match key_from_components(spki_der) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => {
            PKey::public_key_from_der(spki_der).map_err(|e| AlgorithmError::Key(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

/// EC (named or explicit) and RSA keys from their SPKI fields; `None` for other key types.
fn key_from_components(spki_der: &[u8]) -> Result<Option<PKey<Public>>, AlgorithmError> {
    let key_err = |m: String| AlgorithmError::Key(m);
    let ssl = |e: openssl::error::ErrorStack| AlgorithmError::Key(e.to_string());
    let spki = der::parse(spki_der)?;
    let mut r = spki
        .expect(Tag::SEQUENCE, "SubjectPublicKeyInfo")?
        .children();
    let mut alg = r.expect(Tag::SEQUENCE, "algorithm")?.children();
    let alg_oid = alg.expect(Tag::OID, "algorithm")?.oid()?;
    let params = alg.next()?;
    let (_, key_bits) = r
        .expect(Tag::BIT_STRING, "subjectPublicKey")?
        .bit_string()?;
    if alg_oid.is(oid::EC_PUBLIC_KEY) {
        let group = match params {
            Some(p) if p.tag == Tag::OID => {
                let curve = p.oid()?;
                let nid = NAMED_CURVE_OIDS
                    .iter()
                    .find(|(o, _)| curve.is(o))
                    .map(|(_, nid)| *nid)
                    .ok_or_else(|| key_err(format!("unsupported named curve {curve}")))?;
                EcGroup::from_curve_name(nid).map_err(ssl)?
            }
            Some(p) if p.tag == Tag::SEQUENCE => ec_group_from_explicit(&p)?,
            _ => return Err(key_err("EC key without domain parameters".into())),
        };
        let mut ctx = BigNumContext::new().map_err(ssl)?;
        let point = EcPoint::from_bytes(&group, &key_bits, &mut ctx)
            .map_err(|_| key_err("public point not on the curve".into()))?;
        let ec = EcKey::from_public_key(&group, &point).map_err(ssl)?;
        return PKey::from_ec_key(ec).map(Some).map_err(ssl);
    }
    if alg_oid.is(oid::RSA_ENCRYPTION) || alg_oid.is(oid::RSASSA_PSS) {
        let key = der::parse(&key_bits)?;
        let mut k = key.expect(Tag::SEQUENCE, "RSAPublicKey")?.children();
        let n =
            BigNum::from_slice(k.expect(Tag::INTEGER, "modulus")?.integer_bytes()?).map_err(ssl)?;
        let e = BigNum::from_slice(k.expect(Tag::INTEGER, "publicExponent")?.integer_bytes()?)
            .map_err(ssl)?;
        let rsa = openssl::rsa::Rsa::from_public_components(n, e).map_err(ssl)?;
        return PKey::from_rsa(rsa).map(Some).map_err(ssl);
    }
    Ok(None)
}

const NAMED_CURVE_OIDS: [(&str, Nid); 6] = [
    (oid::SECP256R1, Nid::X9_62_PRIME256V1),
    (oid::SECP384R1, Nid::SECP384R1),
    (oid::SECP521R1, Nid::SECP521R1),
    (oid::BRAINPOOL_P256R1, Nid::BRAINPOOL_P256R1),
    (oid::BRAINPOOL_P384R1, Nid::BRAINPOOL_P384R1),
    (oid::BRAINPOOL_P512R1, Nid::BRAINPOOL_P512R1),
];

/// A named curve and its (p, a, b, order) as big-endian bytes.
type CurveParameters = (Nid, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// The parameters of the supported curves, computed once.
fn named_curve_parameters() -> &'static [CurveParameters] {
    static TABLE: std::sync::OnceLock<Vec<CurveParameters>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        CURVES
            .iter()
            .filter_map(|nid| {
                let group = EcGroup::from_curve_name(*nid).ok()?;
                let mut ctx = BigNumContext::new().ok()?;
                let (mut p, mut a, mut b, mut n) = (
                    BigNum::new().ok()?,
                    BigNum::new().ok()?,
                    BigNum::new().ok()?,
                    BigNum::new().ok()?,
                );
                group
                    .components_gfp(&mut p, &mut a, &mut b, &mut ctx)
                    .ok()?;
                group.order(&mut n, &mut ctx).ok()?;
                Some((*nid, p.to_vec(), a.to_vec(), b.to_vec(), n.to_vec()))
            })
            .collect()
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The curve of explicit ECParameters: matched to a named curve when the parameters are one
/// (so that OpenSSL uses its optimised code), else built from the components.
pub fn ec_group_from_explicit(params: &Tlv<'_>) -> Result<EcGroup, AlgorithmError> {
    let key_err = |m: String| AlgorithmError::Key(m);
    let mut p = params.children();
    p.expect(Tag::INTEGER, "ECParameters version")?;
    let mut field = p.expect(Tag::SEQUENCE, "fieldID")?.children();
    if !field
        .expect(Tag::OID, "fieldType")?
        .oid()?
        .is(oid::PRIME_FIELD)
    {
        return Err(key_err("only prime-field curves are supported".into()));
    }
    let prime = field.expect(Tag::INTEGER, "prime")?.integer_bytes()?;
    let mut curve = p.expect(Tag::SEQUENCE, "curve")?.children();
    let a = curve.expect(Tag::OCTET_STRING, "a")?.octets()?;
    let b = curve.expect(Tag::OCTET_STRING, "b")?.octets()?;
    let base = p.expect(Tag::OCTET_STRING, "base point")?.octets()?;
    let order = p.expect(Tag::INTEGER, "order")?.integer_bytes()?;
    for (nid, np, na, nb, nn) in named_curve_parameters() {
        if strip_zeros(prime) == np.as_slice()
            && strip_zeros(&a) == na.as_slice()
            && strip_zeros(&b) == nb.as_slice()
            && strip_zeros(order) == nn.as_slice()
        {
            return EcGroup::from_curve_name(*nid).map_err(|e| key_err(e.to_string()));
        }
    }
    let bn = |bytes: &[u8]| BigNum::from_slice(bytes).map_err(|e| key_err(e.to_string()));
    let mut ctx = BigNumContext::new().map_err(|e| key_err(e.to_string()))?;
    let mut group = EcGroup::from_components(bn(prime)?, bn(&a)?, bn(&b)?, &mut ctx)
        .map_err(|e| key_err(e.to_string()))?;
    let generator =
        EcPoint::from_bytes(&group, &base, &mut ctx).map_err(|e| key_err(e.to_string()))?;
    let cofactor = match p.optional(Tag::INTEGER)? {
        Some(h) => bn(h.integer_bytes()?)?,
        None => BigNum::from_u32(1).map_err(|e| key_err(e.to_string()))?,
    };
    group
        .set_generator(generator, bn(order)?, cofactor)
        .map_err(|e| key_err(e.to_string()))?;
    Ok(group)
}

/// The curves Marty issues on and recognises in explicit parameters.
pub const CURVES: [Nid; 6] = [
    Nid::X9_62_PRIME256V1,
    Nid::SECP384R1,
    Nid::SECP521R1,
    Nid::BRAINPOOL_P256R1,
    Nid::BRAINPOOL_P384R1,
    Nid::BRAINPOOL_P512R1,
];

fn pss_salt(salt_len: u32) -> RsaPssSaltlen {
    RsaPssSaltlen::custom(i32::try_from(salt_len).unwrap_or(i32::MAX))
}

/// Verifies `signature` over `message` with the key of `spki_der`. `digest_hint` is the digest
/// to use when the algorithm does not name one (`rsaEncryption`).
pub fn verify(
    spki_der: &[u8],
    algorithm: &SignatureAlgorithm,
    digest_hint: DigestAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), AlgorithmError> {
    let key = public_key(spki_der)?;
    verify_with_key(&key, algorithm, digest_hint, message, signature)
}

pub fn verify_with_key(
    key: &PKey<Public>,
    algorithm: &SignatureAlgorithm,
    digest_hint: DigestAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), AlgorithmError> {
    let digest = algorithm.digest(digest_hint);
    let key_type = key_type_name(key.id());
    let mismatch = || AlgorithmError::Mismatch {
        key: key_type.to_owned(),
        algorithm: algorithm.name(),
    };
    let sig_err = |_| AlgorithmError::BadSignature;
    let signature: Vec<u8> = match algorithm {
        SignatureAlgorithm::EcdsaPlain { .. } => {
            if !signature.len().is_multiple_of(2) || signature.is_empty() {
                return Err(AlgorithmError::BadSignature);
            }
            let (r, s) = signature.split_at(signature.len() / 2);
            let sig = EcdsaSig::from_private_components(
                BigNum::from_slice(r).map_err(sig_err)?,
                BigNum::from_slice(s).map_err(sig_err)?,
            )
            .map_err(sig_err)?;
            sig.to_der().map_err(sig_err)?
        }
        _ => signature.to_vec(),
    };
    let is_ec = key.id() == Id::EC;
    let is_rsa = key.id() == Id::RSA || key.id() == Id::RSA_PSS;
    match algorithm {
        SignatureAlgorithm::Ecdsa { .. } | SignatureAlgorithm::EcdsaPlain { .. } if !is_ec => {
            return Err(mismatch());
        }
        SignatureAlgorithm::RsaPkcs1 { .. }
        | SignatureAlgorithm::RsaPkcs1Unspecified
        | SignatureAlgorithm::RsaPss { .. }
            if !is_rsa =>
        {
            return Err(mismatch());
        }
        _ => {}
    }
    let mut verifier =
        Verifier::new(digest.md(), key).map_err(|e| AlgorithmError::Key(e.to_string()))?;
    if let SignatureAlgorithm::RsaPss {
        salt_len,
        mgf1_digest,
        ..
    } = algorithm
    {
        let key_err = |e: openssl::error::ErrorStack| AlgorithmError::Key(e.to_string());
        verifier
            .set_rsa_padding(Padding::PKCS1_PSS)
            .map_err(key_err)?;
        verifier
            .set_rsa_pss_saltlen(pss_salt(*salt_len))
            .map_err(key_err)?;
        verifier
            .set_rsa_mgf1_md(mgf1_digest.md())
            .map_err(key_err)?;
    }
    match verifier.verify_oneshot(&signature, message) {
        Ok(true) => Ok(()),
        _ => Err(AlgorithmError::BadSignature),
    }
}

/// Signs `message` with `key` as `algorithm` says.
pub fn sign(
    key: &SigningKey,
    algorithm: &SignatureAlgorithm,
    message: &[u8],
) -> Result<Vec<u8>, AlgorithmError> {
    let digest = algorithm.digest(DigestAlgorithm::Sha256);
    let key = match key {
        SigningKey::Software(k) => k,
        SigningKey::External(external) => {
            if let SignatureAlgorithm::EcdsaPlain { .. } = algorithm {
                return Err(AlgorithmError::Unsupported(
                    "issuing plain ECDSA signatures".into(),
                ));
            }
            return external
                .sign_digest(algorithm, digest, &digest.digest(message))
                .map_err(AlgorithmError::Signing);
        }
    };
    let err = |e: openssl::error::ErrorStack| AlgorithmError::Signing(e.to_string());
    if let (SignatureAlgorithm::Ecdsa { .. }, Ok(ec)) = (algorithm, key.ec_key()) {
        // ECDSA directly on the digest: the EVP signing path looks the algorithm up in the
        // provider on every call, a third of the cost of a P-256 signature.
        let hash = digest.digest(message);
        return EcdsaSig::sign(&hash, &ec)
            .and_then(|sig| sig.to_der())
            .map_err(err);
    }
    let mut signer = Signer::new(digest.md(), key).map_err(err)?;
    if let SignatureAlgorithm::RsaPss {
        salt_len,
        mgf1_digest,
        ..
    } = algorithm
    {
        signer.set_rsa_padding(Padding::PKCS1_PSS).map_err(err)?;
        signer
            .set_rsa_pss_saltlen(pss_salt(*salt_len))
            .map_err(err)?;
        signer.set_rsa_mgf1_md(mgf1_digest.md()).map_err(err)?;
    }
    if let SignatureAlgorithm::EcdsaPlain { .. } = algorithm {
        return Err(AlgorithmError::Unsupported(
            "issuing plain ECDSA signatures".into(),
        ));
    }
    signer.sign_oneshot_to_vec(message).map_err(err)
}

fn key_type_name(id: Id) -> &'static str {
    match id {
        Id::EC => "EC",
        Id::RSA => "RSA",
        Id::RSA_PSS => "RSA-PSS",
        _ => "unknown",
    }
}

/// A human description of a public key: "EC brainpoolP256r1 (explicit parameters)", "RSA 2048".
pub fn describe_public_key(spki_der: &[u8]) -> String {
    let explicit = spki_has_explicit_ec_params(spki_der);
    match public_key(spki_der) {
        Ok(key) => match key.id() {
            Id::EC => {
                let curve = key
                    .ec_key()
                    .ok()
                    .and_then(|k| k.group().curve_name())
                    .and_then(|n| n.short_name().ok().map(str::to_owned))
                    .unwrap_or_else(|| "custom curve".into());
                format!(
                    "EC {curve}{}",
                    if explicit {
                        " (explicit parameters)"
                    } else {
                        ""
                    }
                )
            }
            Id::RSA | Id::RSA_PSS => format!("{} {}", key_type_name(key.id()), key.bits()),
            _ => "unknown key type".into(),
        },
        Err(e) => format!("unusable key ({e})"),
    }
}

/// Whether an EC SPKI carries explicit domain parameters rather than a named curve.
pub fn spki_has_explicit_ec_params(spki_der: &[u8]) -> bool {
    (|| -> Result<bool, DerError> {
        let spki = der::parse(spki_der)?;
        let mut r = spki.children();
        let mut alg = r.any("algorithm")?.children();
        let o = alg.any("oid")?.oid()?;
        Ok(o.is(oid::EC_PUBLIC_KEY) && alg.next()?.is_some_and(|p| p.tag == Tag::SEQUENCE))
    })()
    .unwrap_or(false)
}

/// The signature algorithm Marty uses for a key: ECDSA with the digest matching the curve size,
/// RSASSA-PSS (Doc 9303 Part 12 §4.1.6.1: issuers SHOULD) or PKCS#1 v1.5 for RSA.
pub fn default_signature_algorithm(
    key: &SigningKey,
    digest: DigestAlgorithm,
    rsa_pss: bool,
) -> SignatureAlgorithm {
    if key.id() == Id::EC {
        SignatureAlgorithm::Ecdsa { digest }
    } else if rsa_pss || key.id() == Id::RSA_PSS {
        SignatureAlgorithm::RsaPss {
            digest,
            mgf1_digest: digest,
            salt_len: digest.output_len() as u32,
        }
    } else {
        SignatureAlgorithm::RsaPkcs1 { digest }
    }
}

/// A private key Marty signs with: in this process, or held by a device (a PKCS#11 token)
/// that signs digests and never hands the key out.
#[derive(Clone)]
pub enum SigningKey {
    Software(PKey<Private>),
    External(Arc<dyn ExternalSigner>),
}

/// A key that signs outside the process. It receives the digest of the message, computed
/// here, and returns the signature as X.509 and CMS carry it (DER ECDSA-Sig-Value for ECDSA).
pub trait ExternalSigner: Send + Sync + fmt::Debug {
    fn public_key(&self) -> &PKey<Public>;
    fn sign_digest(
        &self,
        algorithm: &SignatureAlgorithm,
        digest: DigestAlgorithm,
        hash: &[u8],
    ) -> Result<Vec<u8>, String>;
    /// What holds the key, for messages ("EC prime256v1 in PKCS#11 token \"marty-csca\"").
    fn describe(&self) -> String;
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Software(k) => write!(f, "SigningKey::Software({:?})", k.id()),
            SigningKey::External(e) => write!(f, "SigningKey::External({})", e.describe()),
        }
    }
}

impl From<PKey<Private>> for SigningKey {
    fn from(key: PKey<Private>) -> Self {
        SigningKey::Software(key)
    }
}

impl SigningKey {
    /// The key type (EC, RSA, RSA-PSS).
    pub fn id(&self) -> Id {
        match self {
            SigningKey::Software(k) => k.id(),
            SigningKey::External(e) => e.public_key().id(),
        }
    }

    /// The key size in bits (the curve's for EC).
    pub fn bits(&self) -> u32 {
        match self {
            SigningKey::Software(k) => k.bits(),
            SigningKey::External(e) => e.public_key().bits(),
        }
    }

    /// The private key itself, when it lives in this process.
    pub fn software(&self) -> Option<&PKey<Private>> {
        match self {
            SigningKey::Software(k) => Some(k),
            SigningKey::External(_) => None,
        }
    }

    /// Is `other` this key's public key?
    pub fn public_eq<T: HasPublic>(&self, other: &PKeyRef<T>) -> bool {
        match self {
            SigningKey::Software(k) => k.public_eq(other),
            SigningKey::External(e) => e.public_key().public_eq(other),
        }
    }
}
