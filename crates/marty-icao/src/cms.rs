//! CMS SignedData (RFC 5652) as Doc 9303 uses it for EF.SOD and master lists: parsed over the
//! original bytes, verified, and built (DER).

use serde::Serialize;
use time::OffsetDateTime;

use crate::algo::{self, AlgorithmError, DigestAlgorithm, SignatureAlgorithm};
use crate::cert::{CertError, Certificate};
use crate::der::{self, DerError, Oid, Tag, Tlv};
use crate::name::Name;
use crate::oid;

/// How a SignerInfo names its certificate.
#[derive(Debug, Clone)]
pub enum SignerIdentifier {
    IssuerAndSerial { issuer: Name, serial: Vec<u8> },
    SubjectKeyIdentifier(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub oid: Oid,
    /// The attribute values, each as encoded.
    pub values: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct SignerInfo {
    pub version: i64,
    pub sid: SignerIdentifier,
    pub digest_algorithm: Result<DigestAlgorithm, AlgorithmError>,
    /// The signedAttrs element as received (tag [0]); what is signed is this with a SET tag.
    pub signed_attrs_raw: Option<Vec<u8>>,
    pub signed_attrs: Vec<Attribute>,
    pub signature_algorithm: Result<SignatureAlgorithm, AlgorithmError>,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct SignedData {
    pub version: i64,
    pub content_type: Oid,
    /// The eContent octets (constructed BER strings joined).
    pub content: Option<Vec<u8>>,
    pub certificates: Vec<Certificate>,
    /// Certificates that did not parse, with why.
    pub certificate_problems: Vec<String>,
    pub signer_infos: Vec<SignerInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmsError {
    #[error("malformed CMS structure: {0}")]
    Der(#[from] DerError),
    #[error("ContentInfo contentType is {0}, not signedData (1.2.840.113549.1.7.2)")]
    NotSignedData(String),
    #[error("SignedData has no SignerInfo: nothing signs this content")]
    NoSignerInfo,
    #[error("SignedData has no encapsulated content")]
    NoContent,
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error(transparent)]
    Algorithm(#[from] AlgorithmError),
    #[error("signer certificate not found among the embedded certificates")]
    SignerNotFound,
    #[error("signed attribute contentType ({found}) differs from eContentType ({expected})")]
    ContentTypeMismatch { expected: String, found: String },
    #[error("signed attribute messageDigest does not match the content's {0} digest")]
    MessageDigestMismatch(DigestAlgorithm),
    #[error("signed attribute {0} is missing")]
    MissingAttribute(&'static str),
    #[error("SignerInfo signature does not verify with the signer certificate's key: {0}")]
    BadSignature(AlgorithmError),
}

impl SignedData {
    /// Parses a ContentInfo holding SignedData.
    pub fn parse(bytes: &[u8]) -> Result<SignedData, CmsError> {
        let top = der::parse(bytes)?;
        Self::parse_tlv(&top)
    }

    pub fn parse_tlv(top: &Tlv<'_>) -> Result<SignedData, CmsError> {
        let mut ci = top.expect(Tag::SEQUENCE, "ContentInfo")?.children();
        let ct = ci.expect(Tag::OID, "contentType")?.oid()?;
        if !ct.is(oid::SIGNED_DATA) {
            return Err(CmsError::NotSignedData(ct.to_string()));
        }
        let sd = ci
            .expect(Tag::context(0), "content")?
            .children()
            .expect(Tag::SEQUENCE, "SignedData")?;
        let mut r = sd.children();
        let version = r.expect(Tag::INTEGER, "version")?.integer_i64()?;
        r.expect(Tag::SET, "digestAlgorithms")?;
        let mut eci = r.expect(Tag::SEQUENCE, "encapContentInfo")?.children();
        let content_type = eci.expect(Tag::OID, "eContentType")?.oid()?;
        let content = match eci.optional(Tag::context(0))? {
            Some(wrapper) => Some(wrapper.children().any("eContent")?.octets()?.into_owned()),
            None => None,
        };
        let mut certificates = Vec::new();
        let mut certificate_problems = Vec::new();
        let mut next = r.any("signerInfos")?;
        if next.tag == Tag::context(0) {
            let mut certs = next.children();
            while let Some(c) = certs.next()? {
                match Certificate::from_tlv(&c) {
                    Ok(cert) => certificates.push(cert),
                    Err(e) => certificate_problems.push(e.to_string()),
                }
            }
            next = r.any("signerInfos")?;
        }
        if next.tag == Tag::context(1) {
            // CRLs inside SignedData are not used by Doc 9303 (Table 18: x); skip.
            next = r.any("signerInfos")?;
        }
        let mut infos = next.expect(Tag::SET, "signerInfos")?.children();
        let mut signer_infos = Vec::new();
        while let Some(si) = infos.next()? {
            signer_infos.push(parse_signer_info(&si)?);
        }
        if signer_infos.is_empty() {
            return Err(CmsError::NoSignerInfo);
        }
        Ok(SignedData {
            version,
            content_type,
            content,
            certificates,
            certificate_problems,
            signer_infos,
        })
    }

    /// The certificate a SignerInfo names: by subjectKeyIdentifier, or by issuer and serial
    /// (issuer compared after normalisation), or — when neither matches and exactly one
    /// certificate is embedded — that one. The flag says whether a fallback was needed.
    pub fn find_signer(&self, si: &SignerInfo) -> Option<(&Certificate, SignerMatch)> {
        let exact = self.certificates.iter().find(|c| match &si.sid {
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                c.subject_key_id.as_deref() == Some(ski.as_slice())
            }
            SignerIdentifier::IssuerAndSerial { issuer, serial } => {
                c.issuer.raw == issuer.raw && strip(&c.serial) == strip(serial)
            }
        });
        if let Some(c) = exact {
            return Some((c, SignerMatch::Exact));
        }
        if let SignerIdentifier::IssuerAndSerial { issuer, serial } = &si.sid
            && let Some(c) = self
                .certificates
                .iter()
                .find(|c| c.issuer.matches(issuer) && strip(&c.serial) == strip(serial))
        {
            return Some((c, SignerMatch::NormalisedIssuer));
        }
        match self.certificates.as_slice() {
            [only] => Some((only, SignerMatch::SoleCertificate)),
            _ => None,
        }
    }

    /// Verifies one SignerInfo against the content: the signer certificate, contentType and
    /// messageDigest attributes, and the signature. Returns the signer and how it was found.
    pub fn verify_signer(&self, si: &SignerInfo) -> Result<(&Certificate, SignerMatch), CmsError> {
        let (signer, how) = self.find_signer(si).ok_or(CmsError::SignerNotFound)?;
        self.verify_signer_with(si, &signer.spki)?;
        Ok((signer, how))
    }

    /// Verifies a SignerInfo with the given public key.
    pub fn verify_signer_with(&self, si: &SignerInfo, spki: &[u8]) -> Result<(), CmsError> {
        let content = self.content.as_deref().ok_or(CmsError::NoContent)?;
        let digest = si.digest_algorithm.clone()?;
        let alg = si.signature_algorithm.clone()?;
        let message: Vec<u8> = match &si.signed_attrs_raw {
            Some(raw) => {
                let ct = si
                    .attribute(oid::CONTENT_TYPE)
                    .ok_or(CmsError::MissingAttribute("contentType"))?;
                let found = der::parse(ct)?.oid()?;
                if found != self.content_type {
                    return Err(CmsError::ContentTypeMismatch {
                        expected: self.content_type.to_string(),
                        found: found.to_string(),
                    });
                }
                let md = si
                    .attribute(oid::MESSAGE_DIGEST)
                    .ok_or(CmsError::MissingAttribute("messageDigest"))?;
                let md = der::parse(md)?
                    .expect(Tag::OCTET_STRING, "messageDigest")?
                    .octets()?
                    .into_owned();
                if md != digest.digest(content) {
                    return Err(CmsError::MessageDigestMismatch(digest));
                }
                signed_attrs_message(raw)
            }
            None => content.to_vec(),
        };
        algo::verify(spki, &alg, digest, &message, &si.signature).map_err(CmsError::BadSignature)
    }
}

/// How a signer certificate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerMatch {
    Exact,
    /// The SignerIdentifier's issuer differs from the certificate's in RDN order or string
    /// types (a real-world quirk).
    NormalisedIssuer,
    /// Nothing matched; the only embedded certificate was used.
    SoleCertificate,
}

impl std::fmt::Display for SignerMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignerMatch::Exact => "found by its identifier",
            SignerMatch::NormalisedIssuer => "found by its issuer name after normalisation",
            SignerMatch::SoleCertificate => {
                "the only embedded certificate (its identifier matched none)"
            }
        })
    }
}

fn strip(serial: &[u8]) -> &[u8] {
    let mut s = serial;
    while s.len() > 1 && s[0] == 0 {
        s = &s[1..];
    }
    s
}

/// The bytes a signature over signed attributes covers: the [0] IMPLICIT element re-tagged as
/// the SET OF it stands for (RFC 5652 §5.4). Only the tag octet changes; the contents stay as
/// received.
fn signed_attrs_message(raw: &[u8]) -> Vec<u8> {
    let mut m = raw.to_vec();
    if let Some(first) = m.first_mut() {
        *first = 0x31;
    }
    m
}

impl SignerInfo {
    /// The first value of a signed attribute.
    pub fn attribute(&self, o: &str) -> Option<&[u8]> {
        self.signed_attrs
            .iter()
            .find(|a| a.oid.is(o))
            .and_then(|a| a.values.first())
            .map(Vec::as_slice)
    }

    /// The digest algorithm's name, if supported.
    pub fn digest_name(&self) -> Option<String> {
        self.digest_algorithm
            .as_ref()
            .ok()
            .map(|d| d.name().to_owned())
    }

    /// The signature algorithm's name, if supported.
    pub fn signature_name(&self) -> Option<String> {
        self.signature_algorithm.as_ref().ok().map(|a| a.name())
    }

    pub fn signing_time(&self) -> Option<OffsetDateTime> {
        self.attribute(oid::SIGNING_TIME)
            .and_then(|v| der::parse(v).ok()?.time().ok())
    }
}

fn parse_signer_info(si: &Tlv<'_>) -> Result<SignerInfo, CmsError> {
    let mut r = si.expect(Tag::SEQUENCE, "SignerInfo")?.children();
    let version = r.expect(Tag::INTEGER, "version")?.integer_i64()?;
    let sid_tlv = r.any("sid")?;
    let sid = if sid_tlv.tag == Tag::context_primitive(0) {
        SignerIdentifier::SubjectKeyIdentifier(sid_tlv.value.to_vec())
    } else {
        let mut ias = sid_tlv
            .expect(Tag::SEQUENCE, "IssuerAndSerialNumber")?
            .children();
        let issuer = Name::parse(&ias.any("issuer")?)?;
        let serial = ias
            .expect(Tag::INTEGER, "serialNumber")?
            .integer_bytes()?
            .to_vec();
        SignerIdentifier::IssuerAndSerial { issuer, serial }
    };
    let digest_algorithm = DigestAlgorithm::parse(&r.expect(Tag::SEQUENCE, "digestAlgorithm")?);
    let mut signed_attrs_raw = None;
    let mut signed_attrs = Vec::new();
    let mut next = r.any("signatureAlgorithm")?;
    if next.tag == Tag::context(0) {
        signed_attrs_raw = Some(next.raw.to_vec());
        let mut attrs = next.children();
        while let Some(a) = attrs.next()? {
            let mut f = a.expect(Tag::SEQUENCE, "Attribute")?.children();
            let oid = f.expect(Tag::OID, "attrType")?.oid()?;
            let values = f
                .expect(Tag::SET, "attrValues")?
                .children()
                .collect_all()?
                .iter()
                .map(|v| v.raw.to_vec())
                .collect();
            signed_attrs.push(Attribute { oid, values });
        }
        next = r.any("signatureAlgorithm")?;
    }
    let signature_algorithm =
        SignatureAlgorithm::parse(&next.expect(Tag::SEQUENCE, "signatureAlgorithm")?);
    let signature = r
        .expect(Tag::OCTET_STRING, "signature")?
        .octets()?
        .into_owned();
    Ok(SignerInfo {
        version,
        sid,
        digest_algorithm,
        signed_attrs_raw,
        signed_attrs,
        signature_algorithm,
        signature,
    })
}

/// How Marty's SignerInfo identifies the signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidChoice {
    IssuerAndSerial,
    SubjectKeyIdentifier,
}

/// What to sign and how.
#[allow(missing_debug_implementations)] // holds a private key: never printed
pub struct SignRequest<'a> {
    pub content_type: &'static str,
    pub content: &'a [u8],
    pub signer: &'a Certificate,
    /// Additional certificates to embed after the signer (e.g. the CSCA for master lists).
    pub extra_certificates: &'a [&'a Certificate],
    pub key: &'a crate::algo::SigningKey,
    pub digest: DigestAlgorithm,
    pub signature_algorithm: SignatureAlgorithm,
    pub sid: SidChoice,
    pub signing_time: Option<OffsetDateTime>,
    /// Leave the content out of the structure (a detached signature, RFC 5652 §5.2: the
    /// verifier supplies the content).
    pub detached: bool,
}

/// Builds a DER ContentInfo/SignedData with one SignerInfo: signed attributes contentType,
/// messageDigest (and signingTime when asked), the signer certificate embedded.
pub fn sign(req: &SignRequest<'_>) -> Result<Vec<u8>, CmsError> {
    let attr = |o: &'static str, value: Vec<u8>| {
        der::sequence(&[&Oid::known(o).to_der(), &der::set_of(vec![value])])
    };
    let mut attrs = vec![
        attr(oid::CONTENT_TYPE, Oid::known(req.content_type).to_der()),
        attr(
            oid::MESSAGE_DIGEST,
            der::octet_string(&req.digest.digest(req.content)),
        ),
    ];
    if let Some(t) = req.signing_time {
        attrs.push(attr(oid::SIGNING_TIME, der::time(t)));
    }
    let signed_set = der::set_of(attrs);
    let signature = algo::sign(req.key, &req.signature_algorithm, &signed_set)?;
    let signed_attrs_implicit = {
        let mut v = signed_set.clone();
        v[0] = 0xA0;
        v
    };
    let (sid, si_version) = match req.sid {
        SidChoice::IssuerAndSerial => (
            der::sequence(&[
                &req.signer.issuer.raw,
                &der::tlv(Tag::INTEGER, &req.signer.serial),
            ]),
            1,
        ),
        SidChoice::SubjectKeyIdentifier => {
            let ski = req
                .signer
                .subject_key_id
                .clone()
                .ok_or(CmsError::MissingAttribute(
                    "subjectKeyIdentifier of the signer certificate",
                ))?;
            (der::tlv(Tag::context_primitive(0), &ski), 3)
        }
    };
    let signer_info = der::sequence(&[
        &der::integer(si_version),
        &sid,
        &req.digest.to_der(),
        &signed_attrs_implicit,
        &req.signature_algorithm.to_der(),
        &der::octet_string(&signature),
    ]);
    // CertificateSet is a SET OF: DER sorts its elements.
    let mut certs: Vec<Vec<u8>> = vec![req.signer.raw.clone()];
    certs.extend(req.extra_certificates.iter().map(|c| c.raw.clone()));
    certs.sort();
    let certs = certs.concat();
    let encap = if req.detached {
        der::sequence(&[&Oid::known(req.content_type).to_der()])
    } else {
        der::sequence(&[
            &Oid::known(req.content_type).to_der(),
            &der::explicit(0, &der::octet_string(req.content)),
        ])
    };
    // Version 3 (RFC 5652 §5.1): eContentType is not id-data.
    let signed_data = der::sequence(&[
        &der::integer(3),
        &der::set_of(vec![req.digest.to_der()]),
        &encap,
        &der::tlv(Tag::context(0), &certs),
        &der::set_of(vec![signer_info]),
    ]);
    Ok(der::sequence(&[
        &Oid::known(oid::SIGNED_DATA).to_der(),
        &der::explicit(0, &signed_data),
    ]))
}
