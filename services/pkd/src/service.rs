//! The PKD's operations: imports (master lists, CRLs), what it learns from the CSCA's and the
//! Document Signer's events, and the trust material it serves.
//!
//! **Nothing becomes trust unverified.** A master list is stored only when its CMS signature
//! and its signer's chain to a root the operator named verify, and then only its CSCA and link
//! certificates; a CRL only when a stored CSCA of its country signed it; a certificate learnt
//! from an event only when it is a self-signed CSCA whose signature holds, or a certificate
//! whose issuer (by authority key identifier) is a stored CSCA of its country and verifies it.
//! An event that fails those checks is retried and then parked with the reason.
//!
//! **Every import is a job.** A `sync_jobs` row records it (running, then succeeded or failed
//! with the error); the import itself is one transaction, so a failure stores nothing.

use std::collections::BTreeSet;

use marty_icao::algo::DigestAlgorithm;
use marty_icao::cert::{Certificate, CertificateKind};
use marty_icao::crl::Crl;
use marty_icao::masterlist::MasterList;
use marty_icao::trust::TrustStore;
use marty_runtime::ServiceContext;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{PkdError, Result, internal};
use crate::store::{self, CertRow, CrlRow, NewCertificate, NewCrl, Source};

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub job_id: Uuid,
    pub total: u32,
    pub added: u32,
    pub duplicates: u32,
    pub rejected: Vec<(String, String)>,
    pub countries: BTreeSet<String>,
    pub distinct_keys: u32,
    pub links: u32,
    /// Rejected items in all (`rejected` keeps the first [`MAX_REJECTED_LISTED`]).
    pub rejected_total: u32,
    /// Of an LDIF import: entries by kind.
    pub certificates: u32,
    pub crls: u32,
    pub master_lists: u32,
}

/// Longest subject or issuer name stored (the names are indexed; a btree row holds ~2.7 kB).
pub const MAX_DN_BYTES: usize = 2048;

/// Rejections listed one by one in a report; beyond them only the count grows.
pub const MAX_REJECTED_LISTED: usize = 1000;

impl ImportReport {
    pub fn reject(&mut self, subject: impl Into<String>, reason: impl Into<String>) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_REJECTED_LISTED {
            self.rejected.push((subject.into(), reason.into()));
        }
    }

    /// Adds what another import (one master list of an LDIF file) did.
    pub fn absorb(&mut self, other: ImportReport) {
        self.total += other.total;
        self.added += other.added;
        self.duplicates += other.duplicates;
        // Distinct keys are counted per list; a sum over lists would count repeats.
        self.distinct_keys = self.distinct_keys.max(other.distinct_keys);
        self.links += other.links;
        self.countries.extend(other.countries);
        let unlisted = other
            .rejected_total
            .saturating_sub(other.rejected.len() as u32);
        for (subject, reason) in other.rejected {
            self.reject(subject, reason);
        }
        self.rejected_total += unlisted;
    }
}

/// The trust material of a query, with a version that changes whenever it does.
#[derive(Debug, Clone)]
pub struct TrustMaterial {
    pub certificates: Vec<CertRow>,
    pub crls: Vec<CrlRow>,
    pub version: String,
}

#[derive(Debug, Clone)]
pub struct Pkd {
    ctx: ServiceContext,
    /// One Master List Signer certification at a time.
    certifying: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// One LDIF import at a time.
    importing: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A CRL number (big-endian INTEGER contents) in decimal, as `numeric` takes it.
fn decimal(bytes: &[u8]) -> Result<String> {
    openssl::bn::BigNum::from_slice(bytes)
        .and_then(|n| n.to_dec_str().map(|s| s.to_string()))
        .map_err(internal)
}

pub(crate) fn kind_name(kind: CertificateKind) -> Option<&'static str> {
    match kind {
        CertificateKind::Csca => Some("csca"),
        CertificateKind::Link => Some("link"),
        CertificateKind::DocumentSigner => Some("document_signer"),
        CertificateKind::MasterListSigner => Some("master_list_signer"),
        CertificateKind::DeviationListSigner => Some("deviation_list_signer"),
        CertificateKind::Other => None,
    }
}

/// The certificate's country: its subject's countryName, two upper-case letters.
pub(crate) fn country_of(cert: &Certificate) -> std::result::Result<String, String> {
    let c = cert
        .subject
        .country()
        .ok_or("the subject has no countryName")?
        .to_ascii_uppercase();
    if marty_icao::country::is_alpha2(&c) {
        Ok(c)
    } else {
        Err(format!(
            "the subject's countryName {:?} is not an ISO 3166 alpha-2 code",
            marty_icao::text::printable(&c)
        ))
    }
}

pub(crate) fn new_certificate<'a>(
    cert: &'a Certificate,
    country: &'a str,
    kind: &'a str,
    fingerprint: &'a [u8],
    source: Source,
    source_reference: Option<String>,
    verified_by: Option<Uuid>,
) -> NewCertificate<'a> {
    NewCertificate {
        country,
        kind,
        subject_dn: cert.subject.to_string(),
        issuer_dn: cert.issuer.to_string(),
        serial: &cert.serial,
        ski: cert.subject_key_id.as_deref(),
        aki: cert.authority_key_id.as_deref(),
        not_before: cert.not_before,
        not_after: cert.not_after,
        der: &cert.raw,
        fingerprint,
        source,
        source_reference,
        verified_by,
    }
}

async fn parse_untrusted<T, F>(what: &str, f: F) -> Result<T>
where
    F: FnOnce() -> std::result::Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    marty_runtime::untrusted(f)
        .await
        .map_err(internal)?
        .map_err(|e| PkdError::InvalidArgument(format!("{what}: {e}")))
}

impl Pkd {
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            ctx,
            certifying: Default::default(),
            importing: Default::default(),
        }
    }

    pub fn ctx(&self) -> &ServiceContext {
        &self.ctx
    }

    pub(crate) fn certifying(&self) -> &tokio::sync::Mutex<()> {
        &self.certifying
    }

    pub(crate) fn importing(&self) -> &tokio::sync::Mutex<()> {
        &self.importing
    }

    /// Imports a master list whose signer chains to one of `roots` (DER).
    #[tracing::instrument(skip_all, fields(bytes = bytes.len(), roots = roots.len(), source = %source_name))]
    pub async fn import_master_list(
        &self,
        bytes: Vec<u8>,
        roots: Vec<Vec<u8>>,
        source_name: &str,
        source: Source,
    ) -> Result<ImportReport> {
        if roots.is_empty() {
            return Err(PkdError::InvalidArgument(
                "a master list is imported only against a root its signer must chain to: give at least one root certificate".into(),
            ));
        }
        let der = bytes.clone();
        let (ml, roots) = parse_untrusted("the master list", move || {
            let ml = MasterList::parse(&bytes).map_err(|e| e.to_string())?;
            let roots = roots
                .iter()
                .enumerate()
                .map(|(i, r)| Certificate::from_der(r).map_err(|e| format!("root {}: {e}", i + 1)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok((ml, roots))
        })
        .await?;
        let job = store::start_job(
            &mut *self.ctx.db().acquire().await?,
            "master_list_import",
            source_name,
            i32::try_from(ml.certificates.len()).unwrap_or(i32::MAX),
        )
        .await?;
        let result = self
            .import_master_list_in(ml, der, roots, source, job)
            .await;
        let mut conn = self.ctx.db().acquire().await?;
        match &result {
            Ok(r) => {
                store::finish_job(&mut conn, job, r.added as i32 + r.duplicates as i32, None)
                    .await?
            }
            Err(e) => store::finish_job(&mut conn, job, 0, Some(&e.to_string())).await?,
        }
        result
    }

    pub(crate) async fn import_master_list_in(
        &self,
        ml: MasterList,
        der: Vec<u8>,
        roots: Vec<Certificate>,
        source: Source,
        job: Uuid,
    ) -> Result<ImportReport> {
        let now = OffsetDateTime::now_utc();
        let (ml, verification) = marty_runtime::cpu(move || {
            let v = ml.verify(&TrustStore::new(roots, vec![]), now);
            (ml, v)
        })
        .await
        .map_err(internal)?;
        if !verification.valid {
            return Err(PkdError::InvalidArgument(format!(
                "the master list does not verify against the roots given: {}",
                verification.errors.join("; ")
            )));
        }
        let issuer_country = verification
            .chain
            .as_ref()
            .and_then(|c| c.anchor_country.clone())
            .filter(|c| marty_icao::country::is_alpha2(c))
            .ok_or_else(|| {
                PkdError::InvalidArgument(
                    "the master list's root has no ISO 3166 alpha-2 countryName".into(),
                )
            })?;
        let fingerprint = DigestAlgorithm::Sha256.digest(&der);
        let mut report = ImportReport {
            job_id: job,
            total: ml.certificates.len() as u32,
            distinct_keys: ml.distinct_keys() as u32,
            ..Default::default()
        };
        for p in &ml.problems {
            report.reject("(unparsable entry)", p.clone());
        }
        let mut tx = self.ctx.db().begin().await?;
        let Some(list_id) = store::insert_master_list(
            &mut tx,
            &store::NewMasterList {
                direction: "imported",
                issuer_country: &issuer_country,
                signer_subject_dn: verification.signer.as_ref().map(|s| s.subject.clone()),
                signing_time: verification.signing_time.as_deref().and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                }),
                certificate_count: report.total as i32,
                der: &der,
                fingerprint: &fingerprint,
                report: serde_json::to_value(&verification).unwrap_or_default(),
            },
        )
        .await?
        else {
            // The same file again: every certificate in it is stored already.
            report.duplicates = report.total;
            return Ok(report);
        };
        // This platform's own countries are vouched for by its CSCA service alone: a master
        // list (whoever signed it) never adds a CSCA for them.
        let own: BTreeSet<String> = store::local_countries(&mut tx).await?.into_iter().collect();
        // Checked one by one, stored in one statement (a list holds hundreds). What is stored
        // already was checked when it was stored: the real download repeats most certificates
        // in list after list, and checking a CSCA's self-signature is the expensive part.
        let all: Vec<Vec<u8>> = ml
            .certificates
            .iter()
            .map(|c| c.fingerprint_sha256())
            .collect();
        let stored: BTreeSet<Vec<u8>> = store::stored_fingerprints(&mut tx, &all)
            .await?
            .into_iter()
            .collect();
        let mut seen = BTreeSet::new();
        let mut accepted = Vec::new();
        let mut known = Vec::new();
        for (cert, fp) in ml.certificates.iter().zip(all) {
            if stored.contains(&fp) {
                if seen.insert(fp.clone()) {
                    known.push(fp);
                }
                report.duplicates += 1;
                continue;
            }
            let subject = cert.subject.to_string();
            let kind = cert.kind();
            if !matches!(kind, CertificateKind::Csca | CertificateKind::Link) {
                report.reject(
                    subject,
                    "not a CSCA or link certificate: a master list carries only those",
                );
                continue;
            }
            let country = match country_of(cert) {
                Ok(c) => c,
                Err(reason) => {
                    report.reject(subject, reason);
                    continue;
                }
            };
            if own.contains(&country) {
                report.reject(
                    subject,
                    format!("{country} is this platform's own country: its CSCAs come from the CSCA service, never from a master list"),
                );
                continue;
            }
            if cert.subject.to_string().len() > MAX_DN_BYTES
                || cert.issuer.to_string().len() > MAX_DN_BYTES
            {
                report.reject(subject, format!("a name longer than {MAX_DN_BYTES} bytes"));
                continue;
            }
            if !seen.insert(fp.clone()) {
                report.duplicates += 1;
                continue;
            }
            accepted.push((cert, country, kind, fp));
        }
        let reference = list_id.to_string();
        let rows: Vec<NewCertificate<'_>> = accepted
            .iter()
            .map(|(cert, country, kind, fp)| {
                new_certificate(
                    cert,
                    country,
                    kind_name(*kind).unwrap_or("csca"),
                    fp,
                    source,
                    Some(reference.clone()),
                    None,
                )
            })
            .collect();
        let added: BTreeSet<Vec<u8>> = store::insert_certificates(&mut tx, &rows)
            .await?
            .into_iter()
            .collect();
        for (_, country, kind, fp) in &accepted {
            if added.contains(fp) {
                report.added += 1;
                report.countries.insert(country.clone());
                if *kind == CertificateKind::Link {
                    report.links += 1;
                }
            } else {
                report.duplicates += 1;
            }
        }
        let fingerprints: Vec<Vec<u8>> = accepted
            .iter()
            .map(|(_, _, _, fp)| fp.clone())
            .chain(known)
            .collect();
        let ids = store::ids_of(&mut tx, &fingerprints).await?;
        store::insert_master_list_entries(&mut tx, list_id, &ids).await?;
        tx.commit().await?;
        tracing::info!(
            added = report.added,
            duplicates = report.duplicates,
            rejected = report.rejected_total,
            "master list imported"
        );
        Ok(report)
    }

    /// Imports a CRL signed by a stored CSCA of its country.
    #[tracing::instrument(skip_all, fields(bytes = bytes.len(), source = %source_name))]
    pub async fn import_crl(
        &self,
        bytes: Vec<u8>,
        source_name: &str,
        source: Source,
    ) -> Result<ImportReport> {
        let crl = parse_untrusted("the CRL", move || {
            Crl::from_der(&bytes).map_err(|e| e.to_string())
        })
        .await?;
        let job = store::start_job(
            &mut *self.ctx.db().acquire().await?,
            "crl_import",
            source_name,
            1,
        )
        .await?;
        let result = async {
            let mut tx = self.ctx.db().begin().await?;
            let added = learn_crl(&mut tx, &crl, source).await?;
            tx.commit().await?;
            let country = crl.issuer.country().unwrap_or_default().to_owned();
            Ok::<_, PkdError>(ImportReport {
                job_id: job,
                total: 1,
                added: u32::from(added),
                duplicates: u32::from(!added),
                countries: [country].into_iter().collect(),
                ..Default::default()
            })
        }
        .await;
        let mut conn = self.ctx.db().acquire().await?;
        match &result {
            Ok(_) => store::finish_job(&mut conn, job, 1, None).await?,
            Err(e) => store::finish_job(&mut conn, job, 0, Some(&e.to_string())).await?,
        }
        result
    }

    /// CSCAs, links and the latest CRLs of `country` (all when `None`), optionally only those
    /// of one key identifier.
    pub async fn trust_material(
        &self,
        country: Option<&str>,
        ski: Option<&[u8]>,
    ) -> Result<TrustMaterial> {
        let mut conn = self.ctx.db().acquire().await?;
        let (certificates, crls) = store::trust_material(&mut conn, country, ski).await?;
        Ok(TrustMaterial {
            version: version_of(&certificates, &crls),
            certificates,
            crls,
        })
    }

    pub async fn document_signers(&self) -> Result<Vec<CertRow>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::document_signers(&mut conn).await?)
    }

    pub async fn latest_crls(&self, country: &str) -> Result<Vec<CrlRow>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::latest_crls(&mut conn, country).await?)
    }

    pub async fn latest_published(
        &self,
        country: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::latest_published(&mut conn, country).await?)
    }

    pub async fn jobs(&self, limit: i64) -> Result<Vec<store::JobRow>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::jobs(&mut conn, limit).await?)
    }
}

/// A digest over what a trust query returned: certificates (with their revocation flag) and
/// CRLs, in the store's order.
fn version_of(certs: &[CertRow], crls: &[CrlRow]) -> String {
    let mut bytes = Vec::with_capacity(certs.len() * 33 + crls.len() * 32);
    for c in certs {
        bytes.extend_from_slice(&c.fingerprint);
        bytes.push(u8::from(c.revoked));
    }
    bytes.push(0xff);
    for c in crls {
        bytes.extend_from_slice(&c.fingerprint);
    }
    marty_icao::hex::encode(&DigestAlgorithm::Sha256.digest(&bytes)[..16])
}

/// Stores `crl` if a stored CSCA (or link certificate) of its country signed it.
pub(crate) async fn learn_crl(tx: &mut PgConnection, crl: &Crl, source: Source) -> Result<bool> {
    let country = crl
        .issuer
        .country()
        .map(str::to_ascii_uppercase)
        .filter(|c| marty_icao::country::is_alpha2(c))
        .ok_or_else(|| {
            PkdError::InvalidArgument("the CRL's issuer has no ISO 3166 alpha-2 countryName".into())
        })?;
    let aki = crl.authority_key_id.clone().ok_or_else(|| {
        PkdError::InvalidArgument(
            "the CRL has no authority key identifier, which Doc 9303 Part 12 requires".into(),
        )
    })?;
    // A CRL from the future would be "the newest" of its country until then.
    if crl.this_update > OffsetDateTime::now_utc() + time::Duration::days(1) {
        return Err(PkdError::InvalidArgument(format!(
            "the CRL's thisUpdate {} lies in the future",
            marty_icao::cert::rfc3339(crl.this_update)
        )));
    }
    if crl.next_update.is_some_and(|n| n <= crl.this_update) {
        return Err(PkdError::InvalidArgument(
            "the CRL's nextUpdate is not after its thisUpdate".into(),
        ));
    }
    if crl.crl_number.as_ref().is_some_and(|n| {
        let digits = n.iter().skip_while(|b| **b == 0).count();
        digits > 20 || (digits == 20 && n.iter().find(|b| **b != 0).is_some_and(|b| *b >= 0x80))
    }) {
        return Err(PkdError::InvalidArgument(
            "the CRL number exceeds 159 bits (RFC 5280 §5.2.3: at most 20 octets, non-negative)"
                .into(),
        ));
    }
    if crl.issuer.to_string().len() > MAX_DN_BYTES {
        return Err(PkdError::InvalidArgument(format!(
            "the CRL's issuer name is longer than {MAX_DN_BYTES} bytes"
        )));
    }
    let candidates = store::issuers(tx, &country, Some(&aki), store::IssuerOf::Crl).await?;
    let candidates = if candidates.is_empty() {
        store::issuers(tx, &country, None, store::IssuerOf::Crl).await?
    } else {
        candidates
    };
    let crl_for_check = crl.clone();
    let signer = marty_runtime::cpu(move || {
        candidates.into_iter().find(|c| {
            Certificate::from_der(&c.der)
                .ok()
                .is_some_and(|issuer| crl_for_check.verify_signature(&issuer).is_ok())
        })
    })
    .await
    .map_err(internal)?;
    let Some(signer) = signer else {
        let advice = if store::local_countries(tx).await?.contains(&country) {
            "this platform's CSCA serves the country, and none of its keys signed it"
        } else {
            "import the country's CSCA (its master list) first"
        };
        return Err(PkdError::FailedPrecondition(format!(
            "no stored CSCA of {country} verifies this CRL: {advice}"
        )));
    };
    let fingerprint = DigestAlgorithm::Sha256.digest(&crl.raw);
    let added = store::insert_crl(
        tx,
        &NewCrl {
            country: &country,
            issuer_dn: crl.issuer.to_string(),
            aki: &aki,
            crl_number: decimal(crl.crl_number.as_deref().unwrap_or(&[0]))?,
            this_update: crl.this_update,
            next_update: crl.next_update,
            der: &crl.raw,
            fingerprint: &fingerprint,
            source,
        },
    )
    .await?;
    let serials: Vec<Vec<u8>> = crl.revoked.iter().map(|r| r.serial.clone()).collect();
    let times: Vec<OffsetDateTime> = crl.revoked.iter().map(|r| r.revocation_date).collect();
    store::mark_listed_revoked(
        tx,
        &crl.issuer.to_string(),
        &aki,
        signer.source == Source::LocalEvent,
        &serials,
        &times,
    )
    .await?;
    Ok(added)
}

/// What makes a certificate from an event trustworthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vouched {
    /// The CSCA service confirmed over gRPC that it holds this very certificate: the only way
    /// a self-signed CSCA enters from an event (anyone who reaches NATS can publish one).
    ByCscaService,
    /// Nothing beyond the event: the certificate must chain to a stored CSCA.
    No,
}

/// Stores a certificate learnt from an event once it verifies: a self-signed CSCA only when
/// the CSCA service vouched for it, anything else by the signature of a stored CSCA or link
/// certificate of its country. `only` restricts the kind the event may carry.
async fn learn_certificate(
    tx: &mut PgConnection,
    der: Vec<u8>,
    reference: String,
    vouched: Vouched,
    only: Option<CertificateKind>,
) -> Result<bool> {
    let cert = parse_untrusted("the certificate", move || {
        Certificate::from_der(&der).map_err(|e| e.to_string())
    })
    .await?;
    let country = country_of(&cert).map_err(PkdError::InvalidArgument)?;
    let kind = cert.kind();
    let kind_name = kind_name(kind).ok_or_else(|| {
        PkdError::InvalidArgument("not a certificate of a Doc 9303 profile".into())
    })?;
    if only.is_some_and(|k| k != kind) {
        return Err(PkdError::InvalidArgument(format!(
            "the event carries a {kind_name} certificate, which its type never does"
        )));
    }
    let verified_by = if kind == CertificateKind::Csca {
        if vouched != Vouched::ByCscaService {
            return Err(PkdError::FailedPrecondition(format!(
                "a self-signed CSCA certificate of {country} the CSCA service does not hold: not trusted on an event's word"
            )));
        }
        None
    } else {
        let candidates = store::issuers(
            tx,
            &country,
            cert.authority_key_id.as_deref(),
            store::IssuerOf::Certificate,
        )
        .await?;
        let spkis: Vec<(Uuid, Vec<u8>)> = candidates
            .iter()
            .filter_map(|c| Certificate::from_der(&c.der).ok().map(|i| (c.id, i.spki)))
            .collect();
        let check = cert.clone();
        let found = marty_runtime::cpu(move || {
            spkis
                .into_iter()
                .find(|(_, spki)| check.verify_signature_with(spki).is_ok())
                .map(|(id, _)| id)
        })
        .await
        .map_err(internal)?;
        Some(found.ok_or_else(|| {
            PkdError::FailedPrecondition(format!(
                "no stored CSCA of {country} signed the {kind_name} certificate {}",
                cert.subject
            ))
        })?)
    };
    let fp = cert.fingerprint_sha256();
    let (_, added) = store::insert_certificate(
        tx,
        &new_certificate(
            &cert,
            &country,
            kind_name,
            &fp,
            Source::LocalEvent,
            Some(reference),
            verified_by,
        ),
    )
    .await?;
    Ok(added)
}

fn der_field(payload: &serde_json::Value, field: &str) -> std::result::Result<Vec<u8>, String> {
    payload[field]
        .as_str()
        .and_then(|b| openssl::base64::decode_block(b).ok())
        .ok_or_else(|| format!("the event has no base64 {field}"))
}

/// The PKD's consumer of `marty.csca.>` and `marty.document_signer.signer.activated`.
///
/// An event is a notification, not evidence: until NATS authenticates publishers (issue 11),
/// anyone who reaches it can publish on any subject. So the envelope's source must match its
/// type; a self-signed CSCA, and every revocation, is confirmed with the CSCA service over
/// gRPC before it changes trust; everything else must verify against stored CSCAs. A forged
/// event fails, is retried, and is parked with the reason.
#[derive(Debug, Clone)]
pub struct EventHandler {
    pub ctx: ServiceContext,
}

impl EventHandler {
    /// The CSCA service's record of the certificate with this DER: `None` if it holds none.
    async fn csca_record(
        &self,
        der: &[u8],
    ) -> std::result::Result<Option<marty_proto::csca::v1::Certificate>, String> {
        let channel = self.ctx.peers().channel(marty_config::Service::Csca)?;
        let mut client =
            marty_proto::csca::v1::csca_service_client::CscaServiceClient::new(channel);
        let fingerprint = marty_icao::hex::encode(&DigestAlgorithm::Sha256.digest(der));
        match client
            .get_certificate(marty_proto::csca::v1::GetCertificateRequest {
                fingerprint_sha256: fingerprint,
                ..Default::default()
            })
            .await
        {
            Ok(r) => Ok(Some(r.into_inner()).filter(|c| c.der == der)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(format!(
                "asking the CSCA service about the certificate: {s}"
            )),
        }
    }

    async fn vouched(&self, der: &[u8]) -> std::result::Result<Vouched, String> {
        Ok(match self.csca_record(der).await? {
            Some(_) => Vouched::ByCscaService,
            None => Vouched::No,
        })
    }
}

impl marty_events::Handler for EventHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &marty_events::Envelope,
    ) -> std::result::Result<(), String> {
        if event.event_type.split('.').next() != Some(event.source.id()) {
            return Err(format!(
                "the envelope says it comes from {}, but its type is {}",
                event.source, event.event_type
            ));
        }
        let reference = format!("event:{}", event.id);
        let p = &event.payload;
        let outcome = match event.event_type.as_str() {
            "csca.certificate.issued" => {
                let der = der_field(p, "der")?;
                let vouched = if p["type"] == "csca" {
                    self.vouched(&der).await?
                } else {
                    Vouched::No
                };
                learn_certificate(tx, der, reference, vouched, None)
                    .await
                    .map(|_| ())
            }
            "csca.certificate.revoked" => {
                let der = der_field(p, "der")?;
                let record = self.csca_record(&der).await?;
                let revoked = record.as_ref().is_some_and(|c| {
                    c.status == marty_proto::csca::v1::CertificateStatus::Revoked as i32
                });
                if !revoked {
                    return Err("the CSCA service does not confirm this revocation".into());
                }
                let fingerprint = DigestAlgorithm::Sha256.digest(&der);
                learn_certificate(tx, der, reference, Vouched::ByCscaService, None)
                    .await
                    .map_err(|e| e.to_string())?;
                let at = p["revoked_at"].as_str().and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                });
                store::mark_revoked(tx, &fingerprint, at)
                    .await
                    .map(|_| ())
                    .map_err(PkdError::from)
            }
            "csca.crl.issued" => {
                let der = der_field(p, "der")?;
                let crl = parse_untrusted("the CRL", move || {
                    Crl::from_der(&der).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?;
                learn_crl(tx, &crl, Source::LocalEvent).await.map(|_| ())
            }
            "document_signer.signer.activated" => learn_certificate(
                tx,
                der_field(p, "der")?,
                reference,
                Vouched::No,
                Some(CertificateKind::DocumentSigner),
            )
            .await
            .map(|_| ()),
            _ => Ok(()),
        };
        outcome.map_err(|e| match e {
            PkdError::Internal(cause) => format!("{cause:#}"),
            other => other.to_string(),
        })
    }
}
