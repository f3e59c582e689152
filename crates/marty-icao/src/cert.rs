//! X.509 certificates as Doc 9303 uses them: parsed over their original bytes (a DSC that is
//! not canonically encoded must keep verifying), with the extensions of the Part 12 profiles.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use crate::algo::{self, AlgorithmError, DigestAlgorithm, SignatureAlgorithm};
use crate::der::{self, DerError, Oid, Tag, Tlv};
use crate::name::Name;
use crate::{hex, oid};

/// keyUsage bits (RFC 5280 §4.2.1.3), as numbered there.
pub mod key_usage {
    pub const DIGITAL_SIGNATURE: u16 = 0;
    pub const KEY_CERT_SIGN: u16 = 5;
    pub const CRL_SIGN: u16 = 6;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub oid: Oid,
    pub critical: bool,
    pub value: Vec<u8>,
}

/// What a certificate is in the eMRTD PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateKind {
    /// Self-signed CSCA certificate.
    Csca,
    /// CSCA link certificate: a CA certificate signed by another CSCA key.
    Link,
    DocumentSigner,
    MasterListSigner,
    DeviationListSigner,
    Other,
}

impl fmt::Display for CertificateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateKind::Csca => "CSCA",
            CertificateKind::Link => "CSCA link",
            CertificateKind::DocumentSigner => "Document Signer",
            CertificateKind::MasterListSigner => "Master List Signer",
            CertificateKind::DeviationListSigner => "Deviation List Signer",
            CertificateKind::Other => "other",
        })
    }
}

#[derive(Clone)]
pub struct Certificate {
    /// The certificate as received.
    pub raw: Vec<u8>,
    /// The tbsCertificate as received: what the signature covers.
    pub tbs: Vec<u8>,
    pub version: i64,
    /// Serial number contents (big-endian two's complement, as encoded).
    pub serial: Vec<u8>,
    pub signature_algorithm_raw: Vec<u8>,
    /// The `signature` field inside tbsCertificate, as received: RFC 5280 §4.1.1.2 requires
    /// it to equal the outer signatureAlgorithm.
    pub tbs_signature_algorithm_raw: Vec<u8>,
    pub signature_algorithm: Result<SignatureAlgorithm, AlgorithmError>,
    pub issuer: Name,
    pub subject: Name,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// SubjectPublicKeyInfo as received.
    pub spki: Vec<u8>,
    pub signature: Vec<u8>,
    pub extensions: Vec<Extension>,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    /// keyUsage bits set, by RFC 5280 number.
    pub key_usage: Option<Vec<u16>>,
    /// (cA, pathLenConstraint)
    pub basic_constraints: Option<(bool, Option<i64>)>,
    pub ext_key_usage: Vec<Oid>,
    pub private_key_usage_period: Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)>,
    pub document_types: Option<Vec<String>>,
    pub crl_distribution_points: Vec<String>,
    pub name_change: bool,
    /// The issuer's code as written in the MRZ, from the subjectAltName directoryName's
    /// localityName (Part 12 §7.1.1.2), e.g. `D` for Germany.
    pub alt_name_mrz_country: Option<String>,
    /// The subjectAltName directoryName's stateOrProvinceName: the 3-letter code of an issuer
    /// that the MRZ code alone does not identify (e.g. HKG beside CHN).
    pub alt_name_mrz_state: Option<String>,
    /// Extensions that could not be parsed, with why (reported, not fatal).
    pub extension_problems: Vec<String>,
    /// Whether it is self-signed: a signature verification, so computed once when first asked.
    self_signed: std::sync::OnceLock<bool>,
}

/// Errors of certificate parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("not a valid X.509 certificate: {0}")]
    Der(#[from] DerError),
    #[error("not a valid X.509 certificate: {0}")]
    Invalid(String),
}

impl Certificate {
    /// Parses a DER (or BER) certificate.
    pub fn from_der(bytes: &[u8]) -> Result<Certificate, CertError> {
        let top = der::parse(bytes)?;
        Self::from_tlv(&top)
    }

    pub fn from_tlv(top: &Tlv<'_>) -> Result<Certificate, CertError> {
        let mut c = top.expect(Tag::SEQUENCE, "Certificate")?.children();
        let tbs = c.expect(Tag::SEQUENCE, "tbsCertificate")?;
        let sig_alg = c.expect(Tag::SEQUENCE, "signatureAlgorithm")?;
        let (unused, signature) = c.expect(Tag::BIT_STRING, "signatureValue")?.bit_string()?;
        if unused != 0 {
            return Err(CertError::Invalid("signature has unused bits".into()));
        }
        c.finish()?;

        let mut t = tbs.children();
        let version = match t.optional(Tag::context(0))? {
            Some(v) => {
                v.children()
                    .expect(Tag::INTEGER, "version")?
                    .integer_i64()?
                    + 1
            }
            None => 1,
        };
        let serial = t
            .expect(Tag::INTEGER, "serialNumber")?
            .integer_bytes()?
            .to_vec();
        let inner_sig_alg = t.expect(Tag::SEQUENCE, "signature")?;
        let issuer = Name::parse(&t.any("issuer")?)?;
        let mut validity = t.expect(Tag::SEQUENCE, "validity")?.children();
        let not_before = validity.any("notBefore")?.time()?;
        let not_after = validity.any("notAfter")?.time()?;
        let subject = Name::parse(&t.any("subject")?)?;
        let spki = t
            .expect(Tag::SEQUENCE, "subjectPublicKeyInfo")?
            .raw
            .to_vec();
        let mut extensions = Vec::new();
        while let Some(field) = t.next()? {
            if field.tag == Tag::context(3) {
                let mut exts = field
                    .children()
                    .expect(Tag::SEQUENCE, "extensions")?
                    .children();
                while let Some(ext) = exts.next()? {
                    let mut e = ext.expect(Tag::SEQUENCE, "Extension")?.children();
                    let oid = e.expect(Tag::OID, "extnID")?.oid()?;
                    let critical = match e.optional(Tag::BOOLEAN)? {
                        Some(b) => b.boolean()?,
                        None => false,
                    };
                    let value = e.expect(Tag::OCTET_STRING, "extnValue")?.octets()?.to_vec();
                    extensions.push(Extension {
                        oid,
                        critical,
                        value,
                    });
                }
            }
            // issuerUniqueID [1] / subjectUniqueID [2] are ignored (Doc 9303 forbids them).
        }
        let mut cert = Certificate {
            raw: top.raw.to_vec(),
            tbs: tbs.raw.to_vec(),
            version,
            serial,
            signature_algorithm_raw: sig_alg.raw.to_vec(),
            tbs_signature_algorithm_raw: inner_sig_alg.raw.to_vec(),
            signature_algorithm: SignatureAlgorithm::parse(&sig_alg),
            issuer,
            subject,
            not_before,
            not_after,
            spki,
            signature: signature.to_vec(),
            extensions: Vec::new(),
            subject_key_id: None,
            authority_key_id: None,
            key_usage: None,
            basic_constraints: None,
            ext_key_usage: Vec::new(),
            private_key_usage_period: None,
            document_types: None,
            crl_distribution_points: Vec::new(),
            name_change: false,
            alt_name_mrz_country: None,
            alt_name_mrz_state: None,
            extension_problems: Vec::new(),
            self_signed: std::sync::OnceLock::new(),
        };
        for ext in &extensions {
            if let Err(e) = cert.apply_extension(ext) {
                cert.extension_problems
                    .push(format!("extension {}: {e}", ext.oid));
            }
        }
        cert.extensions = extensions;
        Ok(cert)
    }

    fn apply_extension(&mut self, ext: &Extension) -> Result<(), DerError> {
        let v = der::parse(&ext.value)?;
        match ext.oid.to_string().as_str() {
            oid::SUBJECT_KEY_IDENTIFIER => {
                self.subject_key_id = Some(
                    v.expect(Tag::OCTET_STRING, "keyIdentifier")?
                        .octets()?
                        .to_vec(),
                );
            }
            oid::AUTHORITY_KEY_IDENTIFIER => {
                let mut r = v
                    .expect(Tag::SEQUENCE, "AuthorityKeyIdentifier")?
                    .children();
                if let Some(k) = r.optional(Tag::context_primitive(0))? {
                    self.authority_key_id = Some(k.value.to_vec());
                }
            }
            oid::KEY_USAGE => {
                let (_, bits) = v.expect(Tag::BIT_STRING, "KeyUsage")?.bit_string()?;
                let mut set = Vec::new();
                for (i, byte) in bits.iter().enumerate() {
                    for b in 0..8 {
                        if byte & (0x80 >> b) != 0 {
                            set.push((i * 8 + b) as u16);
                        }
                    }
                }
                self.key_usage = Some(set);
            }
            oid::BASIC_CONSTRAINTS => {
                let mut r = v.expect(Tag::SEQUENCE, "BasicConstraints")?.children();
                let ca = match r.optional(Tag::BOOLEAN)? {
                    Some(b) => b.boolean()?,
                    None => false,
                };
                let path = match r.optional(Tag::INTEGER)? {
                    Some(i) => Some(i.integer_i64()?),
                    None => None,
                };
                self.basic_constraints = Some((ca, path));
            }
            oid::EXT_KEY_USAGE => {
                let mut r = v.expect(Tag::SEQUENCE, "ExtKeyUsageSyntax")?.children();
                while let Some(o) = r.next()? {
                    self.ext_key_usage
                        .push(o.expect(Tag::OID, "KeyPurposeId")?.oid()?);
                }
            }
            oid::PRIVATE_KEY_USAGE_PERIOD => {
                let mut r = v.expect(Tag::SEQUENCE, "PrivateKeyUsagePeriod")?.children();
                let mut period = (None, None);
                while let Some(t) = r.next()? {
                    // [0]/[1] IMPLICIT GeneralizedTime.
                    let as_time = Tlv {
                        tag: Tag::GENERALIZED_TIME,
                        ..t
                    };
                    let time = as_time.time()?;
                    if t.tag.number == 0 {
                        period.0 = Some(time);
                    } else {
                        period.1 = Some(time);
                    }
                }
                self.private_key_usage_period = Some(period);
            }
            oid::DOCUMENT_TYPE_LIST => {
                let mut r = v
                    .expect(Tag::SEQUENCE, "DocumentTypeListSyntax")?
                    .children();
                r.expect(Tag::INTEGER, "version")?;
                let mut types = Vec::new();
                let mut set = r.expect(Tag::SET, "docTypeList")?.children();
                while let Some(t) = set.next()? {
                    types.push(t.text()?);
                }
                self.document_types = Some(types);
            }
            oid::CRL_DISTRIBUTION_POINTS => {
                // Collect every URI anywhere inside (fullName GeneralNames, [6] IA5String).
                fn uris(t: &Tlv<'_>, out: &mut Vec<String>, depth: usize) -> Result<(), DerError> {
                    if t.tag == Tag::context_primitive(6) {
                        out.push(String::from_utf8_lossy(t.value).into_owned());
                    } else if t.tag.constructed && depth < 8 {
                        let mut r = t.children();
                        while let Some(c) = r.next()? {
                            uris(&c, out, depth + 1)?;
                        }
                    }
                    Ok(())
                }
                uris(&v, &mut self.crl_distribution_points, 0)?;
            }
            oid::NAME_CHANGE => self.name_change = true,
            oid::SUBJECT_ALT_NAME => {
                // GeneralNames: the directoryName [4] (EXPLICIT Name) carries the MRZ code.
                let mut names = v.expect(Tag::SEQUENCE, "GeneralNames")?.children();
                while let Some(general) = names.next()? {
                    if general.tag == Tag::context(4) {
                        let dir = Name::parse(&general.children().any("directoryName")?)?;
                        self.alt_name_mrz_country = dir.attribute(oid::LOCALITY).map(str::to_owned);
                        self.alt_name_mrz_state = dir.attribute(oid::STATE).map(str::to_owned);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn extension(&self, o: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.oid.is(o))
    }

    /// Critical extensions Marty does not understand (a certificate with one must be rejected).
    pub fn unknown_critical_extensions(&self) -> Vec<String> {
        const UNDERSTOOD: &[&str] = &[
            oid::SUBJECT_KEY_IDENTIFIER,
            oid::AUTHORITY_KEY_IDENTIFIER,
            oid::KEY_USAGE,
            oid::BASIC_CONSTRAINTS,
            oid::EXT_KEY_USAGE,
            oid::PRIVATE_KEY_USAGE_PERIOD,
            oid::DOCUMENT_TYPE_LIST,
            oid::CRL_DISTRIBUTION_POINTS,
            oid::NAME_CHANGE,
            oid::SUBJECT_ALT_NAME,
            oid::ISSUER_ALT_NAME,
            oid::CERTIFICATE_POLICIES,
        ];
        self.extensions
            .iter()
            .filter(|e| e.critical && !UNDERSTOOD.iter().any(|u| e.oid.is(u)))
            .map(|e| e.oid.to_string())
            .collect()
    }

    pub fn has_key_usage(&self, bit: u16) -> bool {
        self.key_usage.as_ref().is_some_and(|k| k.contains(&bit))
    }

    pub fn is_ca(&self) -> bool {
        self.basic_constraints.is_some_and(|(ca, _)| ca)
    }

    /// The subjectPublicKey bits (EC point or RSAPublicKey): the key itself, whatever the
    /// encoding of its algorithm parameters.
    pub fn public_key_bits(&self) -> Vec<u8> {
        (|| -> Option<Vec<u8>> {
            let spki = der::parse(&self.spki).ok()?;
            let mut r = spki.children();
            r.any("algorithm").ok()?;
            Some(
                r.expect(Tag::BIT_STRING, "subjectPublicKey")
                    .ok()?
                    .bit_string()
                    .ok()?
                    .1
                    .into_owned(),
            )
        })()
        .unwrap_or_else(|| self.spki.clone())
    }

    pub fn fingerprint_sha256(&self) -> Vec<u8> {
        DigestAlgorithm::Sha256.digest(&self.raw)
    }

    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }

    /// Verifies this certificate's signature with `issuer_spki` (over the tbs bytes as
    /// received).
    pub fn verify_signature_with(&self, issuer_spki: &[u8]) -> Result<(), AlgorithmError> {
        self.check_signature_algorithms()?;
        let alg = self.signature_algorithm.clone()?;
        algo::verify(
            issuer_spki,
            &alg,
            DigestAlgorithm::Sha256,
            &self.tbs,
            &self.signature,
        )
    }

    /// Verifies this certificate's signature with an already decoded issuer key.
    pub fn verify_signature_with_key(
        &self,
        issuer_key: &openssl::pkey::PKey<openssl::pkey::Public>,
    ) -> Result<(), AlgorithmError> {
        self.check_signature_algorithms()?;
        let alg = self.signature_algorithm.clone()?;
        algo::verify_with_key(
            issuer_key,
            &alg,
            DigestAlgorithm::Sha256,
            &self.tbs,
            &self.signature,
        )
    }

    /// RFC 5280 §4.1.1.2: the outer signatureAlgorithm must be the `signature` field of the
    /// tbsCertificate. A certificate whose two differ is refused as badly signed: an attacker
    /// who could change the outer one would choose how the signature is checked.
    pub fn check_signature_algorithms(&self) -> Result<(), AlgorithmError> {
        if self.signature_algorithm_raw == self.tbs_signature_algorithm_raw {
            Ok(())
        } else {
            Err(AlgorithmError::Inconsistent(
                "the certificate's signatureAlgorithm differs from the signature field of its tbsCertificate (RFC 5280 §4.1.1.2)".into(),
            ))
        }
    }

    /// Why this certificate may not sign an EF.SOD, if it may not: a Document Signer is not a
    /// CA (basicConstraints cA), not a Master List or Deviation List Signer (extKeyUsage), and
    /// has `digitalSignature` when it has a keyUsage (Part 12 Table 6, Part 11 §5.1.1).
    pub fn document_signer_problem(&self) -> Option<String> {
        if self.is_ca() {
            return Some(
                "it is a CA certificate (basicConstraints cA=TRUE), not a Document Signer".into(),
            );
        }
        if self.has_key_usage(key_usage::KEY_CERT_SIGN) {
            return Some(
                "its keyUsage has keyCertSign: it is a CA key, not a Document Signer".into(),
            );
        }
        if self
            .ext_key_usage
            .iter()
            .any(|o| o.is(oid::MASTER_LIST_SIGNER_EKU))
        {
            return Some(
                "it is a Master List Signer (extKeyUsage 2.23.136.1.1.3), not a Document Signer"
                    .into(),
            );
        }
        if self
            .ext_key_usage
            .iter()
            .any(|o| o.is(oid::DEVIATION_LIST_SIGNER_EKU))
        {
            return Some(
                "it is a Deviation List Signer (extKeyUsage 2.23.136.1.1.8), not a Document Signer"
                    .into(),
            );
        }
        if self.key_usage.is_some() && !self.has_key_usage(key_usage::DIGITAL_SIGNATURE) {
            return Some("its keyUsage lacks digitalSignature".into());
        }
        None
    }

    /// Subject = issuer and the signature verifies with its own key.
    pub fn is_self_signed(&self) -> bool {
        *self.self_signed.get_or_init(|| {
            self.subject.matches(&self.issuer) && self.verify_signature_with(&self.spki).is_ok()
        })
    }

    pub fn kind(&self) -> CertificateKind {
        if self
            .ext_key_usage
            .iter()
            .any(|o| o.is(oid::MASTER_LIST_SIGNER_EKU))
        {
            CertificateKind::MasterListSigner
        } else if self
            .ext_key_usage
            .iter()
            .any(|o| o.is(oid::DEVIATION_LIST_SIGNER_EKU))
        {
            CertificateKind::DeviationListSigner
        } else if self.is_ca() || self.has_key_usage(key_usage::KEY_CERT_SIGN) {
            if self.is_self_signed() {
                CertificateKind::Csca
            } else {
                CertificateKind::Link
            }
        } else if self.has_key_usage(key_usage::DIGITAL_SIGNATURE) || self.document_types.is_some()
        {
            CertificateKind::DocumentSigner
        } else {
            CertificateKind::Other
        }
    }

    pub fn valid_at(&self, at: OffsetDateTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }

    /// The public key's algorithm and size, for reports.
    pub fn key_description(&self) -> String {
        algo::describe_public_key(&self.spki)
    }

    /// A summary for `cert inspect` and reports.
    pub fn summary(&self) -> CertificateSummary {
        CertificateSummary {
            kind: self.kind(),
            subject: self.subject.to_string(),
            issuer: self.issuer.to_string(),
            serial: self.serial_hex(),
            not_before: rfc3339(self.not_before),
            not_after: rfc3339(self.not_after),
            public_key: self.key_description(),
            signature_algorithm: match &self.signature_algorithm {
                Ok(a) => a.name(),
                Err(e) => e.to_string(),
            },
            subject_key_id: self.subject_key_id.as_deref().map(hex::encode),
            authority_key_id: self.authority_key_id.as_deref().map(hex::encode),
            key_usage: self
                .key_usage
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|b| key_usage_name(*b).to_owned())
                .collect(),
            basic_constraints: self.basic_constraints.map(|(ca, path)| {
                format!(
                    "cA={ca}{}",
                    path.map(|p| format!(", pathLen={p}")).unwrap_or_default()
                )
            }),
            ext_key_usage: self.ext_key_usage.iter().map(ToString::to_string).collect(),
            private_key_usage_period: self.private_key_usage_period.map(|(a, b)| {
                format!(
                    "{} .. {}",
                    a.map(rfc3339).unwrap_or_else(|| "-".into()),
                    b.map(rfc3339).unwrap_or_else(|| "-".into())
                )
            }),
            document_types: self.document_types.clone(),
            crl_distribution_points: self.crl_distribution_points.clone(),
            fingerprint_sha256: hex::encode(&self.fingerprint_sha256()),
            problems: self.extension_problems.clone(),
        }
    }
}

fn key_usage_name(bit: u16) -> &'static str {
    match bit {
        0 => "digitalSignature",
        1 => "nonRepudiation",
        2 => "keyEncipherment",
        3 => "dataEncipherment",
        4 => "keyAgreement",
        5 => "keyCertSign",
        6 => "cRLSign",
        7 => "encipherOnly",
        8 => "decipherOnly",
        _ => "unknown",
    }
}

/// RFC 3339 text of a time, for reports.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificateSummary {
    pub kind: CertificateKind,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub public_key: String,
    pub signature_algorithm: String,
    pub subject_key_id: Option<String>,
    pub authority_key_id: Option<String>,
    pub key_usage: Vec<String>,
    pub basic_constraints: Option<String>,
    pub ext_key_usage: Vec<String>,
    pub private_key_usage_period: Option<String>,
    pub document_types: Option<Vec<String>>,
    pub crl_distribution_points: Vec<String>,
    pub fingerprint_sha256: String,
    pub problems: Vec<String>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Certificate({}, serial {})",
            self.subject,
            self.serial_hex()
        )
    }
}
