//! CSCA master lists (Doc 9303 Part 12 §9): parse, verify, extract, build.

use serde::Serialize;
use time::OffsetDateTime;

use crate::algo::{DigestAlgorithm, SignatureAlgorithm};
use crate::cert::{CertError, Certificate, CertificateSummary};
use crate::cms::{self, CmsError, SidChoice, SignedData, SignerMatch};
use crate::der::{self, DerError, Tag};
use crate::oid;
use crate::trust::TrustStore;

#[derive(Debug, Clone)]
pub struct MasterList {
    pub signed_data: SignedData,
    pub version: i64,
    /// certList as listed (duplicates kept: a self-signed CSCA and the link certificate for
    /// the same key are different certificates).
    pub certificates: Vec<Certificate>,
    /// Entries that did not parse, with why.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterListError {
    #[error(transparent)]
    Cms(#[from] CmsError),
    #[error("malformed master list: {0}")]
    Der(#[from] DerError),
    #[error("eContentType is {0}, not a CSCA master list (2.23.136.1.1.2)")]
    WrongContentType(String),
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error("cannot build the master list: {0}")]
    Content(String),
}

impl MasterList {
    pub fn parse(bytes: &[u8]) -> Result<MasterList, MasterListError> {
        let signed_data = SignedData::parse(bytes)?;
        if !signed_data.content_type.is(oid::CSCA_MASTER_LIST) {
            return Err(MasterListError::WrongContentType(
                signed_data.content_type.to_string(),
            ));
        }
        let content = signed_data.content.as_deref().ok_or(CmsError::NoContent)?;
        let top = der::parse(content)?;
        let mut r = top.expect(Tag::SEQUENCE, "CscaMasterList")?.children();
        let version = r.expect(Tag::INTEGER, "version")?.integer_i64()?;
        let mut list = r.expect(Tag::SET, "certList")?.children();
        let mut certificates = Vec::new();
        let mut problems = Vec::new();
        while let Some(c) = list.next()? {
            match Certificate::from_tlv(&c) {
                Ok(cert) => certificates.push(cert),
                Err(e) => problems.push(format!("entry at byte {}: {e}", c.offset)),
            }
        }
        Ok(MasterList {
            signed_data,
            version,
            certificates,
            problems,
        })
    }

    /// Number of distinct public keys (a self-signed CSCA and its link certificate share one).
    pub fn distinct_keys(&self) -> usize {
        // The key itself, whatever the encoding of its parameters (named curve or explicit).
        let mut keys: Vec<Vec<u8>> = self
            .certificates
            .iter()
            .map(|c| c.public_key_bits())
            .collect();
        keys.sort();
        keys.dedup();
        keys.len()
    }

    pub fn countries(&self) -> Vec<String> {
        let mut c: Vec<String> = self
            .certificates
            .iter()
            .filter_map(|c| c.subject.country().map(str::to_ascii_uppercase))
            .collect();
        c.sort();
        c.dedup();
        c
    }

    /// Verifies the signature, the signer's EKU and its chain to a trusted root, at `at`.
    pub fn verify(&self, roots: &TrustStore, at: OffsetDateTime) -> MasterListVerification {
        let mut v = MasterListVerification::default();
        let Some(si) = self.signed_data.signer_infos.first() else {
            v.errors.push("no SignerInfo".into());
            return v;
        };
        let Some((signer, how)) = self.signed_data.find_signer(si) else {
            v.errors
                .push("the signer certificate is not embedded in the SignedData".into());
            return v;
        };
        v.signer = Some(signer.summary());
        v.signer_found_by = Some(how);
        match self.signed_data.verify_signer_with(si, &signer.spki) {
            Ok(()) => v.signature_valid = true,
            Err(e) => v.errors.push(e.to_string()),
        }
        v.signer_has_eku = signer
            .ext_key_usage
            .iter()
            .any(|o| o.is(oid::MASTER_LIST_SIGNER_EKU));
        if !v.signer_has_eku {
            v.errors.push(
                "the signer certificate lacks the master list signer EKU 2.23.136.1.1.3".into(),
            );
        }
        let path = roots.validate_signer(signer, at, crate::trust::SignerRole::MasterListSigner);
        v.chain_valid = path.outcome == crate::trust::PathOutcome::Valid;
        if !v.chain_valid {
            v.errors.push(format!("signer chain: {}", path.reason));
        }
        v.chain = Some(path);
        v.signing_time = si.signing_time().map(crate::cert::rfc3339);
        if si.signing_time().is_none() {
            v.warnings
                .push("no signingTime signed attribute (Doc 9303 requires one)".into());
        }
        v.valid = v.signature_valid && v.signer_has_eku && v.chain_valid;
        v
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct MasterListVerification {
    pub valid: bool,
    pub signature_valid: bool,
    pub signer_has_eku: bool,
    pub chain_valid: bool,
    pub signer: Option<CertificateSummary>,
    pub signer_found_by: Option<SignerMatch>,
    pub signing_time: Option<String>,
    pub chain: Option<crate::trust::PathValidation>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Builds and signs a master list: certList DER-sorted, signer identified by SKI, signingTime,
/// the signer's and its CSCA's certificates embedded (Part 12 §5.3).
pub fn build(
    certificates: &[Certificate],
    signer: &Certificate,
    csca: &Certificate,
    key: &crate::algo::SigningKey,
    digest: DigestAlgorithm,
    signature_algorithm: SignatureAlgorithm,
    signing_time: OffsetDateTime,
) -> Result<Vec<u8>, MasterListError> {
    // Part 12 §5.3: CSCA (and link) certificates only, of real countries; signed by a Master
    // List Signer, never by a CSCA directly.
    for c in certificates {
        // Case as received: real lists carry `C=al` beside `C=AL`, and a list republishes
        // certificates unchanged.
        let country_ok = c
            .subject
            .country()
            .is_some_and(|c| crate::country::is_alpha2(&c.to_ascii_uppercase()));
        if !matches!(
            c.kind(),
            crate::cert::CertificateKind::Csca | crate::cert::CertificateKind::Link
        ) || !country_ok
        {
            return Err(MasterListError::Content(format!(
                "{} is not a CSCA or link certificate of a country (two letters)",
                c.subject
            )));
        }
    }
    if !signer
        .ext_key_usage
        .iter()
        .any(|o| o.is(oid::MASTER_LIST_SIGNER_EKU))
    {
        return Err(MasterListError::Content(format!(
            "{} is not a Master List Signer (extKeyUsage 2.23.136.1.1.3)",
            signer.subject
        )));
    }
    let mut raws: Vec<Vec<u8>> = certificates.iter().map(|c| c.raw.clone()).collect();
    // One entry per distinct certificate (a SET has no duplicates).
    raws.sort();
    raws.dedup();
    let content = der::sequence(&[&der::integer(0), &der::set_of(raws)]);
    Ok(cms::sign(&cms::SignRequest {
        content_type: oid::CSCA_MASTER_LIST,
        content: &content,
        signer,
        extra_certificates: &[csca],
        key,
        digest,
        signature_algorithm,
        sid: SidChoice::SubjectKeyIdentifier,
        signing_time: Some(signing_time),
        detached: false,
    })?)
}
