//! Imports of the ICAO PKD download: LDIF files whose entries carry master lists
//! (`pkdMasterListContent`), certificates (`userCertificate;binary`) and CRLs
//! (`certificateRevocationList;binary`).
//!
//! Every item is verified as by the single imports: a master list against the roots the
//! operator named, a certificate against a stored (or just imported) CSCA or link certificate
//! of its country, a CRL likewise. The order is what makes that possible whatever the file's
//! order: master lists first (each in its own transaction, as a separate import would be),
//! then certificates and CRLs in one transaction, so a failure there stores none of them.
//!
//! At the size of the real download (about 31,000 certificates and CRLs) the work is the
//! signature checks: they run on every core, each issuer key decoded once; rows are stored in
//! batches. Items already stored (same fingerprint) are neither verified again nor written: a
//! second import of the same file is a fast no-op that reports them as duplicates.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use marty_icao::algo::DigestAlgorithm;
use marty_icao::cert::{Certificate, CertificateKind};
use marty_icao::crl::Crl;
use marty_icao::masterlist::MasterList;
use uuid::Uuid;

use crate::error::{PkdError, Result, internal};
use crate::service::{ImportReport, Pkd, country_of, kind_name, learn_crl, new_certificate};
use crate::store::{self, Source};

/// Largest LDIF file accepted (the real download is about 75 MiB).
pub const MAX_LDIF_BYTES: usize = 512 * 1024 * 1024;

/// Certificates stored per statement.
const BATCH: usize = 2000;

/// Where an import is, for the caller's progress line.
#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
}

/// What the entries of a file hold, decoded.
#[derive(Default)]
struct Items {
    master_lists: Vec<(String, Vec<u8>)>,
    certificates: Vec<(String, Vec<u8>)>,
    crls: Vec<(String, Vec<u8>)>,
    problems: Vec<(String, String)>,
    /// Problem entries in all (`problems` keeps the first ones).
    unlisted_problems: u32,
}

fn split(bytes: &[u8]) -> std::result::Result<Items, String> {
    let mut items = Items::default();
    for entry in marty_icao::ldif::entries(bytes) {
        let entry = entry.map_err(|e| format!("the LDIF file: {e}"))?;
        let dn = marty_icao::text::printable(&entry.dn)
            .chars()
            .take(300)
            .collect::<String>();
        let mut any = false;
        for v in entry.values("pkdMasterListContent") {
            items.master_lists.push((dn.clone(), v.to_vec()));
            any = true;
        }
        for v in entry
            .values("userCertificate")
            .chain(entry.values("cACertificate"))
        {
            items.certificates.push((dn.clone(), v.to_vec()));
            any = true;
        }
        for v in entry.values("certificateRevocationList") {
            items.crls.push((dn.clone(), v.to_vec()));
            any = true;
        }
        if !any && entry.dn.contains("=") && entry.values("objectClass").count() > 0 {
            // Container entries (dc=data, c=DE, o=dsc…) carry nothing to import.
            continue;
        }
        if !any {
            // Counted, and listed up to the report's limit: a file of empty entries must not
            // cost memory per entry.
            items.unlisted_problems += 1;
            if items.problems.len() < crate::service::MAX_REJECTED_LISTED {
                items.problems.push((
                    dn,
                    "the entry carries no certificate, CRL or master list".into(),
                ));
            }
        }
    }
    Ok(items)
}

/// A certificate that passed its checks, with the issuer that verified it.
struct Accepted {
    cert: Certificate,
    country: String,
    kind: &'static str,
    fingerprint: Vec<u8>,
    verified_by: Uuid,
}

impl Pkd {
    /// Imports an LDIF download; `progress` hears of each phase.
    #[tracing::instrument(skip_all, fields(bytes = bytes.len(), roots = roots.len(), source = %source_name))]
    pub async fn import_ldif(
        &self,
        bytes: Vec<u8>,
        roots: Vec<Vec<u8>>,
        source_name: &str,
        progress: impl Fn(Progress) + Send + Sync + 'static,
    ) -> Result<ImportReport> {
        // One import at a time: each holds the whole file and its parsed items in memory.
        let _one_at_a_time = self.importing().try_lock().map_err(|_| {
            PkdError::Unavailable(
                "another LDIF import is running: try again when it has finished".into(),
            )
        })?;
        let progress = Arc::new(progress);
        progress(Progress {
            phase: "parsing",
            done: 0,
            total: bytes.len() as u64,
        });
        let (items, roots) = marty_runtime::untrusted(move || -> std::result::Result<_, String> {
            let items = split(&bytes)?;
            let roots = roots
                .iter()
                .enumerate()
                .map(|(i, r)| Certificate::from_der(r).map_err(|e| format!("root {}: {e}", i + 1)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok((items, roots))
        })
        .await
        .map_err(internal)?
        .map_err(PkdError::InvalidArgument)?;
        if !items.master_lists.is_empty() && roots.is_empty() {
            return Err(PkdError::InvalidArgument(format!(
                "the file holds {} master lists: give the root certificate(s) their signers must chain to",
                items.master_lists.len()
            )));
        }
        let total = items.master_lists.len() + items.certificates.len() + items.crls.len();
        let job = store::start_job(
            &mut *self.ctx().db().acquire().await?,
            "ldif_import",
            source_name,
            i32::try_from(total).unwrap_or(i32::MAX),
        )
        .await?;
        let result = self.import_items(items, roots, job, progress).await;
        let mut conn = self.ctx().db().acquire().await?;
        match &result {
            Ok(r) => {
                let done = (r.added + r.duplicates + r.rejected_total) as i32;
                store::finish_job(&mut conn, job, done, None).await?
            }
            Err(e) => store::finish_job(&mut conn, job, 0, Some(&e.to_string())).await?,
        }
        result
    }

    async fn import_items(
        &self,
        items: Items,
        roots: Vec<Certificate>,
        job: Uuid,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<ImportReport> {
        let mut report = ImportReport {
            job_id: job,
            master_lists: items.master_lists.len() as u32,
            certificates: items.certificates.len() as u32,
            crls: items.crls.len() as u32,
            ..Default::default()
        };
        report.rejected_total += items.unlisted_problems - items.problems.len() as u32;
        report.total += items.unlisted_problems;
        for (dn, reason) in items.problems {
            report.reject(dn, reason);
        }
        // 1. Master lists: the CSCAs everything else is verified against.
        let lists = items.master_lists.len() as u64;
        for (i, (dn, der)) in items.master_lists.into_iter().enumerate() {
            progress(Progress {
                phase: "master lists",
                done: i as u64,
                total: lists,
            });
            let fingerprint = DigestAlgorithm::Sha256.digest(&der);
            // The same list again: every certificate in it is stored already.
            if let Some(n) =
                store::stored_master_list(&mut *self.ctx().db().acquire().await?, &fingerprint)
                    .await?
            {
                report.duplicates += n.max(0) as u32;
                report.total += n.max(0) as u32;
                continue;
            }
            let bytes = der.clone();
            let parsed = marty_runtime::untrusted(move || MasterList::parse(&bytes))
                .await
                .map_err(internal)?;
            let ml = match parsed {
                Ok(ml) => ml,
                Err(e) => {
                    report.total += 1;
                    report.reject(dn, format!("master list: {e}"));
                    continue;
                }
            };
            match self
                .import_master_list_in(ml, der, roots.clone(), Source::Ldif, job)
                .await
            {
                Ok(r) => report.absorb(r),
                Err(PkdError::InvalidArgument(reason)) => {
                    report.total += 1;
                    report.reject(dn, reason);
                }
                Err(e) => return Err(e),
            }
        }
        // 2. Certificates: parse, drop what is stored, verify the rest against stored issuers.
        let certs = items.certificates;
        let count = certs.len() as u64;
        report.total += count as u32 + items.crls.len() as u32;
        progress(Progress {
            phase: "verifying",
            done: 0,
            total: count,
        });
        let (parsed, bad) = marty_runtime::untrusted(move || parse_all(certs))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        for (dn, reason) in bad {
            report.reject(dn, reason);
        }
        let mut tx = self.ctx().db().begin().await?;
        let fingerprints: Vec<Vec<u8>> =
            parsed.iter().map(|(_, c)| c.fingerprint_sha256()).collect();
        let stored: HashSet<Vec<u8>> = store::stored_fingerprints(&mut tx, &fingerprints)
            .await?
            .into_iter()
            .collect();
        let mut fresh = Vec::new();
        let mut seen = HashSet::new();
        for ((dn, cert), fp) in parsed.into_iter().zip(fingerprints) {
            if stored.contains(&fp) || !seen.insert(fp) {
                report.duplicates += 1;
            } else {
                fresh.push((dn, cert));
            }
        }
        let countries: Vec<String> = fresh
            .iter()
            .filter_map(|(_, c)| country_of(c).ok())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let issuers = store::issuers_of(&mut tx, &countries).await?;
        let reporter = progress.clone();
        let (accepted, refused) =
            marty_runtime::cpu(move || verify_all(fresh, issuers, reporter.as_ref()))
                .await
                .map_err(internal)?
                .map_err(internal)?;
        for (dn, reason) in refused {
            report.reject(dn, reason);
        }
        // 3. Store them, in batches, in this one transaction.
        let stored_total = accepted.len() as u64;
        for (i, chunk) in accepted.chunks(BATCH).enumerate() {
            progress(Progress {
                phase: "storing",
                done: (i * BATCH) as u64,
                total: stored_total,
            });
            let rows: Vec<_> = chunk
                .iter()
                .map(|a| {
                    new_certificate(
                        &a.cert,
                        &a.country,
                        a.kind,
                        &a.fingerprint,
                        Source::Ldif,
                        Some(format!("ldif:{job}")),
                        Some(a.verified_by),
                    )
                })
                .collect();
            let added = store::insert_certificates(&mut tx, &rows).await?.len();
            report.duplicates += chunk.len() as u32 - added as u32;
            report.added += added as u32;
            for a in chunk {
                report.countries.insert(a.country.clone());
            }
        }
        // 4. CRLs, each against a stored CSCA of its country (including those just imported).
        let crls = items.crls.len() as u64;
        for (i, (dn, der)) in items.crls.into_iter().enumerate() {
            if i.is_multiple_of(50) {
                progress(Progress {
                    phase: "CRLs",
                    done: i as u64,
                    total: crls,
                });
            }
            let parsed = marty_runtime::untrusted(move || Crl::from_der(&der))
                .await
                .map_err(internal)?;
            let crl = match parsed {
                Ok(c) => c,
                Err(e) => {
                    report.reject(dn, format!("CRL: {e}"));
                    continue;
                }
            };
            match learn_crl(&mut tx, &crl, Source::Ldif).await {
                Ok(true) => {
                    report.added += 1;
                    if let Some(c) = crl.issuer.country() {
                        report.countries.insert(c.to_ascii_uppercase());
                    }
                }
                Ok(false) => report.duplicates += 1,
                Err(PkdError::InvalidArgument(reason) | PkdError::FailedPrecondition(reason)) => {
                    report.reject(dn, reason)
                }
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        progress(Progress {
            phase: "done",
            done: report.total as u64,
            total: report.total as u64,
        });
        tracing::info!(
            added = report.added,
            duplicates = report.duplicates,
            rejected = report.rejected_total,
            "LDIF imported"
        );
        Ok(report)
    }
}

/// Parses every certificate (on every core); the unparsable ones with their reason.
type Parsed = (Vec<(String, Certificate)>, Vec<(String, String)>);

fn parse_all(certs: Vec<(String, Vec<u8>)>) -> std::result::Result<Parsed, String> {
    let results = parallel(certs, |(dn, der)| match Certificate::from_der(&der) {
        Ok(c) => Ok((dn, c)),
        Err(e) => Err((dn, format!("certificate: {e}"))),
    })?;
    let mut ok = Vec::with_capacity(results.len());
    let mut bad = Vec::new();
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => bad.push(e),
        }
    }
    Ok((ok, bad))
}

/// The certificates that passed, and those refused with their reason.
type Verified = (Vec<Accepted>, Vec<(String, String)>);

/// An issuer's key, decoded once.
struct Issuer {
    id: Uuid,
    key: openssl::pkey::PKey<openssl::pkey::Public>,
}

/// Checks each certificate: a Doc 9303 end-entity kind (CSCAs come only through master
/// lists), of a country, signed by a stored CSCA or link certificate of that country.
fn verify_all(
    fresh: Vec<(String, Certificate)>,
    issuers: Vec<store::CertRow>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> std::result::Result<Verified, String> {
    // (country, SKI) → keys; a CSCA and its link certificate share one.
    let mut by_key: HashMap<(String, Vec<u8>), Vec<Issuer>> = HashMap::new();
    let mut by_country: HashMap<String, Vec<(Uuid, Vec<u8>)>> = HashMap::new();
    for row in issuers {
        let Ok(cert) = Certificate::from_der(&row.der) else {
            continue;
        };
        let Ok(key) = marty_icao::algo::public_key(&cert.spki) else {
            continue;
        };
        by_country
            .entry(row.country.clone())
            .or_default()
            .push((row.id, cert.spki.clone()));
        if let Some(ski) = &row.ski {
            by_key
                .entry((row.country.clone(), ski.clone()))
                .or_default()
                .push(Issuer { id: row.id, key });
        }
    }
    let total = fresh.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let results = parallel(fresh, |(dn, cert)| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(2000) {
            progress(Progress {
                phase: "verifying",
                done: n,
                total,
            });
        }
        if cert.subject.to_string().len() > crate::service::MAX_DN_BYTES
            || cert.issuer.to_string().len() > crate::service::MAX_DN_BYTES
        {
            return Err((
                dn,
                format!("a name longer than {} bytes", crate::service::MAX_DN_BYTES),
            ));
        }
        let kind = cert.kind();
        let Some(kind_name) = kind_name(kind) else {
            return Err((dn, "not a certificate of a Doc 9303 profile".to_owned()));
        };
        if matches!(kind, CertificateKind::Csca | CertificateKind::Link) {
            return Err((
                dn,
                format!("a {kind_name} certificate enters only through a verified master list"),
            ));
        }
        let country = match country_of(&cert) {
            Ok(c) => c,
            Err(reason) => return Err((dn, reason)),
        };
        let by_aki = cert
            .authority_key_id
            .as_ref()
            .and_then(|aki| by_key.get(&(country.clone(), aki.clone())));
        let found = match by_aki {
            Some(keys) => keys
                .iter()
                .find(|i| cert.verify_signature_with_key(&i.key).is_ok())
                .map(|i| i.id),
            // No key identifier match: try the country's issuers one by one.
            None => by_country.get(&country).and_then(|keys| {
                keys.iter()
                    .find(|(_, spki)| cert.verify_signature_with(spki).is_ok())
                    .map(|(id, _)| *id)
            }),
        };
        match found {
            Some(verified_by) => Ok(Accepted {
                fingerprint: cert.fingerprint_sha256(),
                country,
                kind: kind_name,
                verified_by,
                cert,
            }),
            None => Err((
                dn,
                format!(
                    "no stored CSCA of {country} signed the {kind_name} certificate {}",
                    cert.subject
                ),
            )),
        }
    })?;
    let mut accepted = Vec::with_capacity(results.len());
    let mut refused = Vec::new();
    for r in results {
        match r {
            Ok(a) => accepted.push(a),
            Err(e) => refused.push(e),
        }
    }
    Ok((accepted, refused))
}

/// `f` over `items` on every core (each thread with the parser's stack), results in input
/// order.
fn parallel<T: Send, R: Send>(
    items: Vec<T>,
    f: impl Fn(T) -> R + Sync,
) -> std::result::Result<Vec<R>, String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    if threads == 1 || items.len() < 64 {
        return Ok(items.into_iter().map(f).collect());
    }
    let per = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut it = items.into_iter();
    loop {
        let chunk: Vec<T> = it.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                std::thread::Builder::new()
                    .stack_size(marty_icao::PARSER_STACK_BYTES)
                    .spawn_scoped(scope, move || chunk.into_iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            let h = h.map_err(|e| format!("cannot start a worker thread: {e}"))?;
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(out)
    })
}
