//! Trust stores and ICAO path validation (Doc 9303 Part 12 §6.1, App. D).
//!
//! An eMRTD certification path is exactly one certificate (the DSC) under a trust anchor. The
//! first key of each CSCA is trusted out of band (a self-signed certificate given to the store,
//! or a verified master list); a later key becomes trusted through a link certificate that an
//! already trusted key signed. Link certificates are therefore never path elements: they only
//! add anchors. The anchor for a DSC is chosen by its authorityKeyIdentifier, several anchors
//! per CSCA being normal.
//!
//! OpenSSL's chain verifier is not used: it refuses the explicit EC domain parameters Doc 9303
//! mandates (see `clippy.toml`).

use serde::Serialize;
use time::OffsetDateTime;

use openssl::pkey::{PKey, Public};

use crate::algo::{self, AlgorithmError};
use crate::cert::{Certificate, key_usage};
use crate::crl::Crl;
use crate::hex;

/// How an anchor came to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnchorSource {
    /// A self-signed CSCA certificate given to the store.
    SelfSigned,
    /// A link certificate verified with the key of an anchor already trusted.
    Link { signed_by: String },
}

#[derive(Debug, Clone)]
pub struct Anchor {
    pub cert: Certificate,
    pub source: AnchorSource,
    /// The decoded public key, kept so that verifying a DSC does not decode it again.
    key: Option<PKey<Public>>,
    /// The summary every report shows, computed once.
    summary: crate::cert::CertificateSummary,
}

impl Anchor {
    fn new(cert: Certificate, source: AnchorSource) -> Anchor {
        let key = algo::public_key(&cert.spki).ok();
        let summary = cert.summary();
        Anchor {
            cert,
            source,
            key,
            summary,
        }
    }

    /// Verifies that this anchor's key signed `cert`; an error other than
    /// [`AlgorithmError::BadSignature`] means the signature could not be checked at all.
    pub fn check(&self, cert: &Certificate) -> Result<(), AlgorithmError> {
        match &self.key {
            Some(key) => cert.verify_signature_with_key(key),
            None => cert.verify_signature_with(&self.cert.spki),
        }
    }

    pub fn signed(&self, cert: &Certificate) -> bool {
        self.check(cert).is_ok()
    }
}

/// CSCA certificates, link certificates and CRLs a verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    pub anchors: Vec<Anchor>,
    pub crls: Vec<Crl>,
    /// Certificates given to the store that could not be trusted, with why.
    pub rejected: Vec<(Certificate, String)>,
    /// What this store has verified already (the warm path of a long-lived store).
    memo: MemoSlot,
}

/// A store's memory: a clone starts with none, since its anchors and CRLs may then change.
#[derive(Debug, Default)]
struct MemoSlot(Memo);

impl Clone for MemoSlot {
    fn clone(&self) -> Self {
        MemoSlot::default()
    }
}

impl std::ops::Deref for MemoSlot {
    type Target = Memo;
    fn deref(&self) -> &Memo {
        &self.0
    }
}

/// Most DSC paths one store remembers; beyond, it starts afresh.
const MEMO_PATHS: usize = 50_000;

/// A valid path: the result, and the span of inspection times it holds for.
type RememberedPath = (PathValidation, OffsetDateTime, OffsetDateTime);

/// Results that depend only on the store's material and the certificate's bytes, so that a
/// long-lived store (a verifier's cache of one trust material version) checks each DSC's path
/// and each CRL's signature once. A path is reused only while the inspection time lies inside
/// the validity of both the DSC and the anchor that verified it, the only part of a valid
/// result that depends on the time.
#[derive(Debug, Default)]
struct Memo {
    /// DSC fingerprint → its valid path.
    paths: std::sync::Mutex<std::collections::HashMap<Vec<u8>, RememberedPath>>,
    /// CRL index → whether an anchor of its country verified its signature.
    crls: std::sync::Mutex<std::collections::HashMap<usize, bool>>,
}

impl TrustStore {
    /// Builds a store from CSCA and link certificates (any order) and CRLs.
    pub fn new(certificates: Vec<Certificate>, crls: Vec<Crl>) -> TrustStore {
        let mut store = TrustStore {
            anchors: Vec::new(),
            crls,
            rejected: Vec::new(),
            memo: Default::default(),
        };
        let mut pending = Vec::new();
        for cert in certificates {
            if store.anchors.iter().any(|a| a.cert.raw == cert.raw) {
                continue;
            }
            if let Err(e) = cert.check_signature_algorithms() {
                store.rejected.push((cert, e.to_string()));
                continue;
            }
            if cert.is_self_signed() {
                store
                    .anchors
                    .push(Anchor::new(cert, AnchorSource::SelfSigned));
            } else {
                pending.push(cert);
            }
        }
        store.add_links(pending);
        store
    }

    /// Adds link certificates whose signature verifies under an anchor, repeatedly, so that a
    /// chain of rollovers (old → newer → newest) is followed in any order.
    pub fn add_links(&mut self, mut pending: Vec<Certificate>) {
        loop {
            let before = pending.len();
            let mut still = Vec::new();
            for cert in pending {
                let signer = self
                    .issuer_candidates(&cert)
                    .into_iter()
                    .find(|a| a.signed(&cert))
                    .map(|a| {
                        a.cert.subject.to_string()
                            + " / key "
                            + &a.cert
                                .subject_key_id
                                .as_deref()
                                .map(hex::encode)
                                .unwrap_or_default()
                    });
                match signer {
                    Some(by) if cert.is_ca() || cert.has_key_usage(key_usage::KEY_CERT_SIGN) => {
                        self.anchors
                            .push(Anchor::new(cert, AnchorSource::Link { signed_by: by }))
                    }
                    Some(_) => self.rejected.push((cert, "not a CA certificate".into())),
                    None => still.push(cert),
                }
            }
            pending = still;
            if pending.len() == before || pending.is_empty() {
                break;
            }
        }
        for cert in pending {
            let reason = match self
                .anchors
                .iter()
                .find(|a| a.cert.public_key_bits() == cert.public_key_bits())
            {
                // A link certificate whose signer is absent but whose key is trusted anyway.
                Some(a) => format!(
                    "not needed: the key it certifies is already trusted through {} (the key that signed it is not in the store)",
                    a.cert.subject
                ),
                None => "no trusted key verifies its signature".into(),
            };
            self.rejected.push((cert, reason));
        }
    }

    /// Anchors that may have signed `cert`: those whose subjectKeyIdentifier equals its
    /// authorityKeyIdentifier, else (no AKI) those whose subject is its issuer.
    pub fn issuer_candidates(&self, cert: &Certificate) -> Vec<&Anchor> {
        let by_key: Vec<&Anchor> = match &cert.authority_key_id {
            Some(aki) => self
                .anchors
                .iter()
                .filter(|a| a.cert.subject_key_id.as_deref() == Some(aki.as_slice()))
                .collect(),
            None => Vec::new(),
        };
        if !by_key.is_empty() {
            return by_key;
        }
        self.anchors
            .iter()
            .filter(|a| a.cert.subject.matches(&cert.issuer))
            .collect()
    }

    /// Validates a DSC at `at`: anchor by AKI, signature, validity of both, key usage, critical
    /// extensions.
    ///
    /// A path this store validated before for the same DSC bytes is reused while `at` lies
    /// inside the validity of the DSC and of its anchor: no signature is checked again, and
    /// [`PathValidation::from_cache`] says so.
    pub fn validate(&self, dsc: &Certificate, at: OffsetDateTime) -> PathValidation {
        let fingerprint = dsc.fingerprint_sha256();
        if let Some((v, from, until)) = self
            .memo
            .paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fingerprint)
            && *from <= at
            && at <= *until
        {
            let mut v = v.clone();
            v.from_cache = true;
            return v;
        }
        let v = self.validate_signer(dsc, at, SignerRole::DocumentSigner);
        let anchor = v.anchor.as_ref().and_then(|summary| {
            self.anchors
                .iter()
                .find(|a| a.summary.fingerprint_sha256 == summary.fingerprint_sha256)
        });
        if let Some(anchor) = anchor.filter(|_| v.outcome == PathOutcome::Valid) {
            let from = dsc.not_before.max(anchor.cert.not_before);
            let until = dsc.not_after.min(anchor.cert.not_after);
            let mut paths = self.memo.paths.lock().unwrap_or_else(|e| e.into_inner());
            if paths.len() >= MEMO_PATHS {
                paths.clear();
            }
            paths.insert(fingerprint, (v.clone(), from, until));
        }
        v
    }

    /// Validates a certificate issued by a CSCA — a DSC or a Master List Signer — at `at`.
    /// `role` names it in the reasons and selects the profile warnings that apply to it.
    pub fn validate_signer(
        &self,
        dsc: &Certificate,
        at: OffsetDateTime,
        role: SignerRole,
    ) -> PathValidation {
        let who = role.noun();
        let mut v = PathValidation::default();
        let mut candidates = self.issuer_candidates(dsc);
        let not_found = |v: &mut PathValidation, detail: &str| {
            v.outcome = PathOutcome::AnchorNotFound;
            v.reason = format!(
                "no trusted CSCA for issuer {}{}{detail}",
                dsc.issuer,
                dsc.authority_key_id
                    .as_deref()
                    .map(|k| format!(" (authority key {})", hex::encode(k)))
                    .unwrap_or_default()
            );
        };
        if candidates.is_empty() {
            not_found(&mut v, "");
            return v;
        }
        // Candidates found by key identifier hold the key the DSC names: if none verifies, the
        // signature is bad. Candidates found only by name may simply be another key of that
        // CSCA: then the right key is missing, which is not a bad signature.
        let by_key = dsc.authority_key_id.is_some()
            && candidates
                .iter()
                .any(|a| a.cert.subject_key_id == dsc.authority_key_id);
        // Among anchors of the same key, prefer one valid at the inspection time.
        candidates.sort_by_key(|a| !a.cert.valid_at(at));
        let mut cannot_check = None;
        let mut anchor = None;
        for a in &candidates {
            match a.check(dsc) {
                Ok(()) => {
                    anchor = Some(*a);
                    break;
                }
                Err(AlgorithmError::BadSignature) => {}
                Err(AlgorithmError::Inconsistent(reason)) => {
                    // The certificate itself is malformed: no key can make it valid.
                    v.outcome = PathOutcome::SignatureInvalid;
                    v.reason = format!("the {who}'s signature is not valid: {reason}");
                    return v;
                }
                Err(other) => cannot_check = Some(other),
            }
        }
        let Some(anchor) = anchor else {
            if !by_key {
                not_found(
                    &mut v,
                    ": the trusted CSCA certificates of that name hold other keys",
                );
                return v;
            }
            if let Some(reason) = cannot_check {
                // Nothing failed: Marty cannot check this signature (algorithm, key form).
                v.outcome = PathOutcome::CannotVerify;
                v.reason = format!("the {who}'s signature cannot be checked: {reason}");
                return v;
            }
            v.outcome = PathOutcome::SignatureInvalid;
            v.reason = format!(
                "the {who}'s signature does not verify with the key of CSCA {}",
                candidates[0].cert.subject
            );
            return v;
        };
        if !by_key && dsc.authority_key_id.is_some() {
            v.warnings.push(format!("the {who}'s authorityKeyIdentifier matches no CSCA subjectKeyIdentifier; the CSCA was found by name"));
        }
        v.anchor = Some(anchor.summary.clone());
        v.anchor_country = anchor.cert.subject.country().map(str::to_ascii_uppercase);
        v.anchor_mrz_codes = anchor.cert.alt_name_mrz_country.iter().cloned().collect();
        // A renamed CSCA keeps its country (Part 12 App. D.1.2): a certificate claiming another
        // country than the key that signed it is not that country's, and revocation would be
        // looked up on the wrong CRL. Table 5: issuer and subject countries must also match.
        let country = |n: &crate::name::Name| n.country().map(str::to_ascii_uppercase);
        if country(&dsc.issuer) != country(&anchor.cert.subject) {
            v.outcome = PathOutcome::CountryMismatch;
            v.reason = format!(
                "the {who}'s issuer country ({}) differs from that of the CSCA whose key signed it ({})",
                country(&dsc.issuer).unwrap_or_else(|| "none".into()),
                country(&anchor.cert.subject).unwrap_or_else(|| "none".into())
            );
            return v;
        }
        if country(&dsc.subject) != country(&anchor.cert.subject) {
            v.outcome = PathOutcome::CountryMismatch;
            v.reason = format!(
                "the {who}'s subject country ({}) differs from that of the CSCA whose key signed it ({})",
                country(&dsc.subject).unwrap_or_else(|| "none".into()),
                country(&anchor.cert.subject).unwrap_or_else(|| "none".into())
            );
            return v;
        }
        v.anchor_source = Some(anchor.source.clone());
        if !dsc.valid_at(at) {
            v.outcome = PathOutcome::DscNotValidAt;
            v.reason = format!(
                "the {who} is valid from {} to {}, not at {}",
                crate::cert::rfc3339(dsc.not_before),
                crate::cert::rfc3339(dsc.not_after),
                crate::cert::rfc3339(at)
            );
            return v;
        }
        if !anchor.cert.is_ca() && !anchor.cert.has_key_usage(key_usage::KEY_CERT_SIGN) {
            v.warnings.push(format!(
                "the CSCA certificate {} is neither marked cA nor has keyCertSign",
                anchor.cert.subject
            ));
        }
        if !anchor.cert.valid_at(at) {
            v.outcome = PathOutcome::AnchorNotValidAt;
            v.reason = format!(
                "the CSCA certificate is valid from {} to {}, not at {}",
                crate::cert::rfc3339(anchor.cert.not_before),
                crate::cert::rfc3339(anchor.cert.not_after),
                crate::cert::rfc3339(at)
            );
            return v;
        }
        let unknown = dsc.unknown_critical_extensions();
        if !unknown.is_empty() {
            v.outcome = PathOutcome::UnknownCriticalExtension;
            v.reason = format!(
                "the {who} has critical extensions Marty does not understand: {}",
                unknown.join(", ")
            );
            return v;
        }
        if dsc.issuer.matches_only_normalised(&anchor.cert.subject) {
            v.warnings.push(format!(
                "the {who}'s issuer name matches the CSCA's subject only after normalisation"
            ));
        } else if !dsc.issuer.matches(&anchor.cert.subject) {
            v.warnings.push(format!(
                "the {who}'s issuer ({}) differs from the CSCA's subject ({}): a renamed CSCA?",
                dsc.issuer, anchor.cert.subject
            ));
        }
        if role == SignerRole::DocumentSigner {
            if dsc.private_key_usage_period.is_none() {
                v.warnings.push(
                    "the DSC has no privateKeyUsagePeriod (mandatory in the 8th-edition profile)"
                        .into(),
                );
            }
            if dsc.document_types.is_none() {
                v.warnings.push(
                    "the DSC has no documentTypeList (mandatory in the 8th-edition profile)".into(),
                );
            }
        }
        v.outcome = PathOutcome::Valid;
        v.reason = format!(
            "{} signed by trusted CSCA {}",
            role.title(),
            anchor.cert.subject
        );
        v
    }

    /// The revocation status of `dsc` (Doc 9303 Part 12 App. D.1.2): the country's newest
    /// CRL, verified with any anchor of that country.
    pub fn revocation(&self, dsc: &Certificate, at: OffsetDateTime) -> Revocation {
        let country = dsc.issuer.country().map(str::to_ascii_uppercase);
        let mut crls: Vec<&Crl> = self
            .crls
            .iter()
            .filter(|c| c.issuer.country().map(str::to_ascii_uppercase) == country)
            .collect();
        if crls.is_empty() {
            return Revocation::NotChecked {
                reason: format!(
                    "no CRL for country {} in the trust store",
                    country.unwrap_or_else(|| "?".into())
                ),
            };
        }
        crls.sort_by_key(|c| std::cmp::Reverse(c.this_update));
        // The newest CRL of the country is the current one.
        if let Some(crl) = crls.first() {
            let index = self
                .crls
                .iter()
                .position(|c| std::ptr::eq(c, *crl))
                .unwrap_or(usize::MAX);
            let remembered = self
                .memo
                .crls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&index)
                .copied();
            let verified = remembered.unwrap_or_else(|| {
                let verified = self
                    .anchors
                    .iter()
                    .filter(|a| {
                        a.cert.subject.country().map(str::to_ascii_uppercase)
                            == crl.issuer.country().map(str::to_ascii_uppercase)
                    })
                    .any(|a| crl.verify_signature(&a.cert).is_ok());
                self.memo
                    .crls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(index, verified);
                verified
            });
            if !verified {
                return Revocation::Indeterminate {
                    reason: format!(
                        "the CRL of {} does not verify with any trusted CSCA key of that country",
                        crl.issuer
                    ),
                };
            }
            if let Some(entry) = crl.is_revoked(&dsc.serial) {
                return Revocation::Revoked {
                    reason: format!(
                        "the DSC is listed on the CRL of {} (revoked {})",
                        crl.issuer,
                        crate::cert::rfc3339(entry.revocation_date)
                    ),
                };
            }
            if crl.is_stale(at) {
                return Revocation::Indeterminate {
                    reason: format!(
                        "the CRL of {} is stale: its nextUpdate {} has passed",
                        crl.issuer,
                        crl.next_update
                            .map(crate::cert::rfc3339)
                            .unwrap_or_default()
                    ),
                };
            }
            return Revocation::Good {
                reason: format!(
                    "not on the CRL of {} (this update {})",
                    crl.issuer,
                    crate::cert::rfc3339(crl.this_update)
                ),
            };
        }
        Revocation::NotChecked {
            reason: "no usable CRL".into(),
        }
    }
}

/// What the certificate being validated under a CSCA is, for reasons and profile checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerRole {
    DocumentSigner,
    MasterListSigner,
}

impl SignerRole {
    fn noun(self) -> &'static str {
        match self {
            SignerRole::DocumentSigner => "DSC",
            SignerRole::MasterListSigner => "master list signer's certificate",
        }
    }

    fn title(self) -> &'static str {
        match self {
            SignerRole::DocumentSigner => "DSC",
            SignerRole::MasterListSigner => "master list signer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PathOutcome {
    Valid,
    #[default]
    AnchorNotFound,
    SignatureInvalid,
    DscNotValidAt,
    AnchorNotValidAt,
    UnknownCriticalExtension,
    /// The issuer country of the DSC is not the signing CSCA's.
    CountryMismatch,
    /// The signature uses an algorithm or key form Marty cannot check (INDETERMINATE).
    CannotVerify,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PathValidation {
    pub outcome: PathOutcome,
    pub reason: String,
    pub anchor: Option<crate::cert::CertificateSummary>,
    /// The anchor's countryName (upper case), once an anchor verified the certificate.
    #[serde(skip)]
    pub anchor_country: Option<String>,
    /// The MRZ code in the anchor's subjectAltName directoryName (localityName), if any.
    #[serde(skip)]
    pub anchor_mrz_codes: Vec<String>,
    pub anchor_source: Option<AnchorSource>,
    pub warnings: Vec<String>,
    /// The store had verified this very path before (see [`TrustStore::validate`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_cache: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Revocation {
    Good {
        reason: String,
    },
    Revoked {
        reason: String,
    },
    /// A CRL is present but stale or unverifiable.
    Indeterminate {
        reason: String,
    },
    /// No CRL for the issuing country.
    NotChecked {
        reason: String,
    },
}
