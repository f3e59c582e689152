//! Certificate revocation lists (Doc 9303 Part 12 Tables 9 and 10): parse, verify, build.

use serde::Serialize;
use time::OffsetDateTime;

use crate::algo::{self, AlgorithmError, DigestAlgorithm, SignatureAlgorithm};
use crate::cert::{Certificate, rfc3339};
use crate::der::{self, DerError, Oid, Tag};
use crate::name::Name;
use crate::{hex, oid};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedCertificate {
    #[serde(serialize_with = "crate::hex::serialize")]
    pub serial: Vec<u8>,
    #[serde(serialize_with = "serialize_time")]
    pub revocation_date: OffsetDateTime,
    /// RFC 5280 CRLReason, when an entry carries one (Doc 9303 forbids entry extensions, but
    /// foreign CRLs may have them).
    pub reason: Option<i64>,
}

fn serialize_time<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

#[derive(Debug, Clone)]
pub struct Crl {
    pub raw: Vec<u8>,
    pub tbs: Vec<u8>,
    pub version: i64,
    pub signature_algorithm: Result<SignatureAlgorithm, AlgorithmError>,
    pub issuer: Name,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    pub revoked: Vec<RevokedCertificate>,
    pub crl_number: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    #[error("not a valid CRL: {0}")]
    Der(#[from] DerError),
    #[error("CRL signature: {0}")]
    Signature(#[from] AlgorithmError),
    #[error("cannot issue the CRL: {0}")]
    Issuer(String),
}

impl Crl {
    pub fn from_der(bytes: &[u8]) -> Result<Crl, CrlError> {
        let top = der::parse(bytes)?;
        let mut c = top.expect(Tag::SEQUENCE, "CertificateList")?.children();
        let tbs = c.expect(Tag::SEQUENCE, "tbsCertList")?;
        let sig_alg = c.expect(Tag::SEQUENCE, "signatureAlgorithm")?;
        let (_, signature) = c.expect(Tag::BIT_STRING, "signatureValue")?.bit_string()?;
        c.finish()?;
        let mut t = tbs.children();
        let version = match t.optional(Tag::INTEGER)? {
            Some(v) => v.integer_i64()? + 1,
            None => 1,
        };
        let inner_sig_alg = t.expect(Tag::SEQUENCE, "signature")?;
        // Part 12 Table 9 and RFC 5280 §5.1.1.2: the two must be equal; a CRL that says two
        // things about how it is signed is not verified.
        let signature_algorithm = if inner_sig_alg.raw == sig_alg.raw {
            SignatureAlgorithm::parse(&sig_alg)
        } else {
            Err(AlgorithmError::Inconsistent(
                "the CRL's signatureAlgorithm differs from the signature field of its tbsCertList (RFC 5280 §5.1.1.2)".into(),
            ))
        };
        let issuer = Name::parse(&t.any("issuer")?)?;
        let this_update = t.any("thisUpdate")?.time()?;
        let mut next_update = None;
        let mut revoked = Vec::new();
        let mut crl_number = None;
        let mut authority_key_id = None;
        while let Some(field) = t.next()? {
            if field.tag == Tag::UTC_TIME || field.tag == Tag::GENERALIZED_TIME {
                next_update = Some(field.time()?);
            } else if field.tag == Tag::SEQUENCE {
                let mut entries = field.children();
                while let Some(entry) = entries.next()? {
                    let mut e = entry
                        .expect(Tag::SEQUENCE, "revoked certificate")?
                        .children();
                    let serial = e
                        .expect(Tag::INTEGER, "userCertificate")?
                        .integer_bytes()?
                        .to_vec();
                    let revocation_date = e.any("revocationDate")?.time()?;
                    let mut reason = None;
                    if let Some(exts) = e.optional(Tag::SEQUENCE)? {
                        let mut x = exts.children();
                        while let Some(ext) = x.next()? {
                            let mut f = ext.children();
                            let o = f.expect(Tag::OID, "extnID")?.oid()?;
                            f.optional(Tag::BOOLEAN)?;
                            let v = f.expect(Tag::OCTET_STRING, "extnValue")?.octets()?;
                            if o.is(oid::CRL_REASON) {
                                reason = Some(der::parse(&v)?.integer_i64()?);
                            }
                        }
                    }
                    revoked.push(RevokedCertificate {
                        serial,
                        revocation_date,
                        reason,
                    });
                }
            } else if field.tag == Tag::context(0) {
                let mut exts = field
                    .children()
                    .expect(Tag::SEQUENCE, "crlExtensions")?
                    .children();
                while let Some(ext) = exts.next()? {
                    let mut f = ext.children();
                    let o = f.expect(Tag::OID, "extnID")?.oid()?;
                    f.optional(Tag::BOOLEAN)?;
                    let v = f.expect(Tag::OCTET_STRING, "extnValue")?.octets()?;
                    let inner = der::parse(&v)?;
                    if o.is(oid::CRL_NUMBER) {
                        crl_number = Some(inner.integer_bytes()?.to_vec());
                    } else if o.is(oid::AUTHORITY_KEY_IDENTIFIER) {
                        let mut a = inner.children();
                        if let Some(k) = a.optional(Tag::context_primitive(0))? {
                            authority_key_id = Some(k.value.to_vec());
                        }
                    }
                }
            }
        }
        Ok(Crl {
            raw: top.raw.to_vec(),
            tbs: tbs.raw.to_vec(),
            version,
            signature_algorithm,
            issuer,
            this_update,
            next_update,
            revoked,
            crl_number,
            authority_key_id,
            signature: signature.to_vec(),
        })
    }

    /// Verifies the CRL's signature with `issuer`'s key.
    pub fn verify_signature(&self, issuer: &Certificate) -> Result<(), CrlError> {
        let alg = self.signature_algorithm.clone()?;
        algo::verify(
            &issuer.spki,
            &alg,
            DigestAlgorithm::Sha256,
            &self.tbs,
            &self.signature,
        )?;
        Ok(())
    }

    /// Past its nextUpdate at `at` (stale, not invalid: Doc 9303 Part 12 App. D).
    pub fn is_stale(&self, at: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|n| n < at)
    }

    pub fn is_revoked(&self, serial: &[u8]) -> Option<&RevokedCertificate> {
        let strip = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|b| *b == 0).collect() };
        self.revoked
            .iter()
            .find(|r| strip(&r.serial) == strip(serial))
    }

    pub fn summary(&self) -> CrlSummary {
        CrlSummary {
            version: self.version,
            issuer: self.issuer.to_string(),
            this_update: rfc3339(self.this_update),
            next_update: self.next_update.map(rfc3339),
            crl_number: self.crl_number.as_deref().map(hex::encode),
            authority_key_id: self.authority_key_id.as_deref().map(hex::encode),
            signature_algorithm: match &self.signature_algorithm {
                Ok(a) => a.name(),
                Err(e) => e.to_string(),
            },
            revoked: self.revoked.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CrlSummary {
    pub version: i64,
    pub issuer: String,
    pub this_update: String,
    pub next_update: Option<String>,
    pub crl_number: Option<String>,
    pub authority_key_id: Option<String>,
    pub signature_algorithm: String,
    pub revoked: Vec<RevokedCertificate>,
}

/// Builds a v2 CRL to the Doc 9303 profile: CRL number and AKI extensions, entries without
/// extensions, no revokedCertificates element when empty.
#[allow(clippy::too_many_arguments)]
pub fn build(
    issuer: &Certificate,
    key: &crate::algo::SigningKey,
    signature_algorithm: &SignatureAlgorithm,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    crl_number: u64,
    revoked: &[(Vec<u8>, OffsetDateTime)],
) -> Result<Vec<u8>, CrlError> {
    // Part 12 Table 6: a CSCA signs CRLs with keyUsage cRLSign; nobody else may.
    if !issuer.is_ca() || !issuer.has_key_usage(crate::cert::key_usage::CRL_SIGN) {
        return Err(CrlError::Issuer(format!(
            "{} is not a CSCA certificate with keyUsage cRLSign",
            issuer.subject
        )));
    }
    let alg = signature_algorithm.to_der();
    let ext = |o: &'static str, value: Vec<u8>| {
        der::sequence(&[&Oid::known(o).to_der(), &der::octet_string(&value)])
    };
    let mut exts = vec![ext(
        oid::CRL_NUMBER,
        der::unsigned_integer(&crl_number.to_be_bytes()),
    )];
    if let Some(ski) = &issuer.subject_key_id {
        exts.insert(
            0,
            ext(
                oid::AUTHORITY_KEY_IDENTIFIER,
                der::sequence(&[&der::tlv(Tag::context_primitive(0), ski)]),
            ),
        );
    }
    let ext_refs: Vec<&[u8]> = exts.iter().map(Vec::as_slice).collect();
    let mut parts: Vec<Vec<u8>> = vec![
        der::integer(1),
        alg.clone(),
        issuer.subject.raw.clone(),
        der::time(this_update),
        der::time(next_update),
    ];
    if !revoked.is_empty() {
        let entries: Vec<Vec<u8>> = revoked
            .iter()
            .map(|(serial, date)| {
                der::sequence(&[&der::tlv(Tag::INTEGER, serial), &der::time(*date)])
            })
            .collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        parts.push(der::sequence(&refs));
    }
    parts.push(der::explicit(0, &der::sequence(&ext_refs)));
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let tbs = der::sequence(&refs);
    let signature = algo::sign(key, signature_algorithm, &tbs)?;
    Ok(der::sequence(&[
        &tbs,
        &alg,
        &der::bit_string(0, &signature),
    ]))
}
