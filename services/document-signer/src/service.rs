//! The Document Signer's operations.
//!
//! **Keys.** A signer's key is generated here, sealed (marty-keys) and stored *pending* before
//! its CSR leaves the process, so no certificate can exist whose key was lost; the CSCA's
//! answer is checked (the key is ours, the profile is a DSC, the CSCA's signature verifies)
//! and the certificate stored and activated in one transaction with
//! `document_signer.signer.activated`; the previous signer of the country and document type
//! retires in that transaction.
//!
//! **Signing.** Each signature runs in a transaction that takes the (country, document type)
//! signing lock shared, reads the active signer, checks the private key usage period and
//! validity, signs, and writes the audit row; the response leaves only after the commit. A
//! revocation or rotation takes that lock exclusively before it retires the key: it waits for
//! the signatures in progress, and no signature starts with the key after it. (A transaction
//! advisory lock rather than `select … for share`: sixteen concurrent share locks on one row
//! make PostgreSQL build a multixact per signature, which costs more than the signature.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use marty_config::SignerPolicy;
use marty_events::NewEvent;
use marty_icao::algo::DigestAlgorithm;
use marty_icao::cert::Certificate;
use marty_icao::cms::SidChoice;
use marty_icao::issue::{KeyPair, KeySpec, SodSigner};
use marty_icao::name::Name;
use marty_icao::sod::LdsSecurityObject;
use marty_keys::KeyStore;
use marty_proto::csca::v1 as csca_pb;
use marty_proto::csca::v1::csca_service_client::CscaServiceClient;
use marty_runtime::ServiceContext;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::{Result, SignerError};
use crate::store::{self, AuditEntry, PendingKey, SignerRow};

fn internal(e: impl std::fmt::Display) -> SignerError {
    SignerError::internal(e)
}

/// A signer's key and certificate, opened and checked against each other once.
type Opened = SodSigner;

/// Why a new signer is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacing {
    /// CreateSigner: there must be no active signer.
    Nothing,
    /// RotateSigner, EnsureActiveSigner, the rotation task: the active one retires as rotated.
    Rotation,
    /// The active signer's usage period is over.
    UsageEnded,
}

/// What SignLdsSecurityObject asks for.
#[derive(Debug, Clone, Default)]
pub struct SignLds {
    pub hash_algorithm: String,
    pub hashes: Vec<(u32, Vec<u8>)>,
    pub lds_version: String,
    pub document_reference: String,
    pub country: String,
    pub document_type: String,
    pub signing_time: bool,
    pub requested_by: String,
}

/// What the audit records of a signature about to be made.
struct Audited<'a> {
    country: &'a str,
    document_type: &'a str,
    kind: &'static str,
    document_reference: Option<&'a str>,
    requested_by: &'a str,
    content_sha256: Vec<u8>,
}

/// Signing work handed to a worker: what to sign, with the opened signer.
type SignFn = Box<dyn FnOnce(&Opened) -> Result<(Vec<u8>, String, String)> + Send>;

/// The most signatures one transaction makes.
const MAX_BATCH: usize = 64;

/// A signature waiting for a worker.
struct Job {
    country: String,
    document_type: String,
    kind: &'static str,
    document_reference: Option<String>,
    requested_by: String,
    content_sha256: Vec<u8>,
    sign: SignFn,
    reply: tokio::sync::oneshot::Sender<Result<Signed>>,
}

/// Where a job's answer goes, and what its audit row records.
type Reply = (
    tokio::sync::oneshot::Sender<Result<Signed>>,
    &'static str,
    Option<String>,
    String,
    Vec<u8>,
);

/// A signature and its audit record.
#[derive(Debug, Clone)]
pub struct Signed {
    pub bytes: Vec<u8>,
    pub signer_serial: Vec<u8>,
    pub audit_id: i64,
}

pub struct DocumentSigner {
    ctx: ServiceContext,
    policy: SignerPolicy,
    keys: Arc<dyn KeyStore>,
    csca: CscaServiceClient<tonic::transport::Channel>,
    csca_url: String,
    opened: Mutex<HashMap<(Uuid, Uuid), Arc<Opened>>>,
    /// Signer creation in this process, one at a time (a CSR round trip each).
    creating: tokio::sync::Mutex<()>,
    /// Signatures waiting for a worker.
    jobs: marty_runtime::batch::BatchQueue<Job>,
}

impl std::fmt::Debug for DocumentSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocumentSigner")
    }
}

fn hex(b: &[u8]) -> String {
    marty_icao::hex::encode(b)
}

/// A short reference for the audit: printable, at most 64 characters.
fn document_reference(s: &str) -> Result<Option<String>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > 64 || s.chars().any(char::is_control) {
        return Err(SignerError::InvalidArgument(
            "document_reference must be at most 64 printable characters (a document number, never other personal data)".into(),
        ));
    }
    Ok(Some(s.to_owned()))
}

impl DocumentSigner {
    pub fn new(ctx: ServiceContext) -> anyhow::Result<Self> {
        let policy = match ctx.policy() {
            marty_runtime::ServicePolicy::DocumentSigner(p) => p.clone(),
            _ => anyhow::bail!("the Document Signer runs with its own policy only"),
        };
        policy
            .default_key
            .parse::<KeySpec>()
            .map_err(|e| anyhow::anyhow!("services.document_signer.policy.default_key: {e}"))?;
        let channel = ctx
            .peers()
            .channel(marty_config::Service::Csca)
            .map_err(anyhow::Error::msg)?;
        let csca_url = ctx
            .peers()
            .url(marty_config::Service::Csca)
            .unwrap_or_default()
            .to_owned();
        let keys = ctx.keys();
        // Bounded: under overload callers wait for room rather than the process for memory.
        Ok(Self {
            ctx,
            policy,
            keys,
            csca: CscaServiceClient::new(channel)
                .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES),
            csca_url,
            opened: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            jobs: marty_runtime::batch::BatchQueue::new(4 * MAX_BATCH),
        })
    }

    pub fn policy(&self) -> &SignerPolicy {
        &self.policy
    }

    fn country(&self, requested: &str) -> Result<String> {
        let c = requested.trim();
        let c = if c.is_empty() {
            self.policy.country.clone().ok_or_else(|| {
                SignerError::InvalidArgument(
                    "no country given and none configured (services.document_signer.policy.country, MARTY_DOCUMENT_SIGNER_COUNTRY)".into(),
                )
            })?
        } else {
            c.to_owned()
        };
        if marty_icao::country::is_alpha2(&c) {
            Ok(c)
        } else {
            Err(SignerError::InvalidArgument(format!(
                "country {:?} must be two upper-case letters (ISO 3166 alpha-2)",
                marty_icao::text::printable(&c)
            )))
        }
    }

    fn document_type(&self, requested: &str) -> Result<String> {
        let d = requested.trim();
        let d = if d.is_empty() {
            self.policy.document_type.clone()
        } else {
            d.to_owned()
        };
        if (1..=2).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(d)
        } else {
            Err(SignerError::InvalidArgument(format!(
                "document type {:?} must be an MRZ document code such as P",
                marty_icao::text::printable(&d)
            )))
        }
    }

    /// Re-wraps keys sealed under a previous KEK, and retires keys abandoned half-way.
    pub async fn at_start(&self) -> anyhow::Result<()> {
        let mut tx = self.ctx.db().begin().await?;
        let n = marty_keys::table::rewrap_table(&mut tx, self.keys.as_ref(), "signer_keys").await?;
        let abandoned = store::retire_abandoned_pending(&mut tx).await?;
        tx.commit().await?;
        if n > 0 {
            tracing::info!(
                keys = n,
                "re-wrapped signer keys under the current key-encryption key"
            );
        }
        if abandoned > 0 {
            tracing::warn!(
                keys = abandoned,
                "retired signer keys left pending by an interrupted activation"
            );
        }
        Ok(())
    }

    pub async fn active(&self, country: &str, document_type: &str) -> Result<SignerRow> {
        let country = self.country(country)?;
        let document_type = self.document_type(document_type)?;
        let mut conn = self.ctx.db().acquire().await?;
        store::active(&mut conn, &country, &document_type)
            .await?
            .ok_or_else(|| {
                SignerError::NotFound(format!(
                    "no active signer for {country}/{document_type}: run `marty signer activate --country {country}`"
                ))
            })
    }

    /// Whether `signer` may sign at `now`, and for how much longer.
    fn usable_for(signer: &SignerRow, now: OffsetDateTime) -> Option<Duration> {
        let start = signer
            .key_usage_not_before
            .unwrap_or(signer.not_before)
            .max(signer.not_before);
        let end = signer
            .key_usage_not_after
            .unwrap_or(signer.not_after)
            .min(signer.not_after);
        (start <= now && now < end).then(|| end - now)
    }

    /// A new signer for (country, document type): key, CSR, certificate from the CSCA,
    /// activation.
    #[tracing::instrument(skip_all, fields(country = %country, document_type = %document_type))]
    pub async fn create(
        &self,
        country: &str,
        document_type: &str,
        key_spec: &str,
        replacing: Replacing,
    ) -> Result<SignerRow> {
        let country = self.country(country)?;
        let document_type = self.document_type(document_type)?;
        let _one_at_a_time = self.creating.lock().await;
        if replacing == Replacing::Nothing
            && let Ok(existing) = self.active(&country, &document_type).await
        {
            return Err(SignerError::AlreadyExists(format!(
                "{country}/{document_type} already has an active signer ({}): use RotateSigner to replace it",
                hex(&existing.serial)
            )));
        }
        let spec_text = if key_spec.trim().is_empty() {
            self.policy.default_key.clone()
        } else {
            key_spec.trim().to_owned()
        };
        let spec: KeySpec = spec_text
            .parse()
            .map_err(|e: String| SignerError::InvalidArgument(e))?;
        let key_id = Uuid::new_v4();
        let keys = self.keys.clone();
        let subject = {
            let cn = format!(
                "Document Signer {country} {}",
                OffsetDateTime::now_utc().unix_timestamp()
            );
            let mut attrs: Vec<(&'static str, &str)> =
                vec![(marty_icao::oid::COUNTRY, country.as_str())];
            if let Some(o) = &self.policy.organization {
                attrs.push((marty_icao::oid::ORGANIZATION, o.as_str()));
            }
            attrs.push((marty_icao::oid::COMMON_NAME, cn.as_str()));
            Name::build(&attrs)
        };
        let (pair, sealed, csr) = marty_runtime::cpu(move || -> Result<_> {
            let (pair, sealed) = keys.generate(key_id, spec)?;
            let csr = marty_icao::csr::build(&subject, &pair).map_err(internal)?;
            Ok((pair, sealed, csr))
        })
        .await
        .map_err(internal)??;
        {
            let mut conn = self.ctx.db().acquire().await?;
            store::insert_pending(
                &mut conn,
                PendingKey {
                    sealed: &sealed,
                    country: &country,
                    document_type: &document_type,
                    key_spec: &spec,
                },
            )
            .await?;
        }
        let certified = self.certify(&pair, csr, &country, &document_type).await;
        let (dsc, csca_cert) = match certified {
            Ok(c) => c,
            Err(e) => {
                let mut conn = self.ctx.db().acquire().await?;
                store::delete_pending(&mut conn, key_id).await?;
                return Err(e);
            }
        };
        let mut tx = self.ctx.db().begin().await?;
        let reason = match replacing {
            Replacing::UsageEnded => "usage_period_ended",
            _ => "rotated",
        };
        let row = store::activate(&mut tx, key_id, &dsc, &csca_cert, reason)
            .await?
            .ok_or_else(|| internal("the activated signer is not active"))?;
        marty_events::outbox::enqueue(
            &mut tx,
            crate::SERVICE,
            &NewEvent::new(
                "document_signer.signer.activated",
                format!("signer:{country}/{document_type}"),
                serde_json::json!({
                    "country": country,
                    "document_type": document_type,
                    "serial_hex": hex(&dsc.serial),
                    "fingerprint_sha256": hex(&dsc.fingerprint_sha256()),
                    "not_before": marty_icao::cert::rfc3339(dsc.not_before),
                    "not_after": marty_icao::cert::rfc3339(dsc.not_after),
                    "private_key_usage_not_after": row.key_usage_not_after.map(marty_icao::cert::rfc3339),
                    "der": openssl::base64::encode_block(&dsc.raw),
                    "csca_der": openssl::base64::encode_block(&csca_cert.raw),
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        let opened = SodSigner::new(dsc, pair).map_err(internal)?;
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((row.key_id, row.certificate_id), Arc::new(opened));
        tracing::info!(serial = %hex(&row.serial), "signer activated");
        Ok(row)
    }

    /// Sends the CSR to the CSCA and checks its answer.
    async fn certify(
        &self,
        pair: &KeyPair,
        csr: Vec<u8>,
        country: &str,
        document_type: &str,
    ) -> Result<(Certificate, Certificate)> {
        let request = csca_pb::IssueCertificateRequest {
            csr_der: csr,
            profile: csca_pb::Profile::DocumentSigner as i32,
            country: country.to_owned(),
            validity_days: self.policy.validity_days,
            key_usage_days: self.policy.key_usage_days,
            document_types: vec![document_type.to_owned()],
            issuer_serial_hex: String::new(),
        };
        let response = self
            .csca
            .clone()
            .issue_certificate(request)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                    SignerError::Unavailable(format!(
                        "the CSCA at {} is unreachable: {}",
                        self.csca_url,
                        s.message()
                    ))
                }
                _ => SignerError::FailedPrecondition(format!(
                    "the CSCA refused the certificate request: {}",
                    s.message()
                )),
            })?
            .into_inner();
        let (dsc_der, csca_der) = match (response.certificate, response.issuer) {
            (Some(c), Some(i)) => (c.der, i.der),
            _ => {
                return Err(internal(
                    "the CSCA's answer lacks the certificate or its issuer",
                ));
            }
        };
        let (dsc, csca) = marty_runtime::untrusted(move || {
            Ok::<_, String>((
                Certificate::from_der(&dsc_der).map_err(|e| e.to_string())?,
                Certificate::from_der(&csca_der).map_err(|e| e.to_string())?,
            ))
        })
        .await
        .map_err(internal)?
        .map_err(|e| internal(format!("the CSCA returned an unreadable certificate: {e}")))?;
        if !pair.matches(&dsc) {
            return Err(internal("the CSCA returned a certificate for another key"));
        }
        if let Some(problem) = dsc.document_signer_problem() {
            return Err(internal(format!(
                "the CSCA returned a certificate that is not a DSC: {problem}"
            )));
        }
        marty_icao::issue::require_csca(&csca, "CSCA").map_err(internal)?;
        if dsc.subject.country() != Some(country) || csca.subject.country() != Some(country) {
            return Err(internal(
                "the CSCA returned a certificate of another country",
            ));
        }
        dsc.verify_signature_with(&csca.spki).map_err(|e| {
            internal(format!(
                "the DSC's signature does not verify with the CSCA's key: {e}"
            ))
        })?;
        Ok((dsc, csca))
    }

    /// The active signer, replaced first when it is missing or leaves its usage period within
    /// the policy's margin.
    pub async fn ensure_active(&self, country: &str, document_type: &str) -> Result<SignerRow> {
        let margin = Duration::days(i64::from(self.policy.rotate_before_days));
        match self.active(country, document_type).await {
            Ok(s) => match Self::usable_for(&s, OffsetDateTime::now_utc()) {
                Some(left) if left > margin => Ok(s),
                Some(_) => {
                    self.create(country, document_type, "", Replacing::Rotation)
                        .await
                }
                None => {
                    self.create(country, document_type, "", Replacing::UsageEnded)
                        .await
                }
            },
            Err(SignerError::NotFound(_)) => {
                self.create(country, document_type, "", Replacing::Rotation)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// The rotation task's pass: replaces signers near the end of their usage period and
    /// signers whose DSC was revoked.
    pub async fn rotate_due(&self) -> Result<usize> {
        let margin = Duration::days(i64::from(self.policy.rotate_before_days));
        let (active, revoked) = {
            let mut conn = self.ctx.db().acquire().await?;
            (
                store::all_active(&mut conn).await?,
                store::revoked_without_successor(&mut conn).await?,
            )
        };
        let now = OffsetDateTime::now_utc();
        let mut done = 0;
        for s in active {
            let replacing = match Self::usable_for(&s, now) {
                Some(left) if left > margin => continue,
                Some(_) => Replacing::Rotation,
                None => Replacing::UsageEnded,
            };
            let spec = s.key_spec.clone().unwrap_or_default();
            match self
                .create(&s.country, &s.document_type, &spec, replacing)
                .await
            {
                Ok(_) => done += 1,
                Err(e) => {
                    tracing::warn!(country = %s.country, error = %e, "rotating the signer failed; retried at the next pass")
                }
            }
        }
        for (country, document_type, spec) in revoked {
            let spec = spec.unwrap_or_default();
            match self
                .create(&country, &document_type, &spec, Replacing::Rotation)
                .await
            {
                Ok(_) => done += 1,
                Err(e) => {
                    tracing::warn!(%country, error = %e, "replacing the revoked signer failed; retried at the next pass")
                }
            }
        }
        Ok(done)
    }

    /// The opened key of `signer`, read through the caller's connection (a signature holds
    /// one connection only: 50 concurrent first signatures must not wait for a second).
    async fn open(&self, conn: &mut sqlx::PgConnection, signer: &SignerRow) -> Result<Arc<Opened>> {
        let slot = (signer.key_id, signer.certificate_id);
        if let Some(o) = self
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
        {
            return Ok(o.clone());
        }
        let sealed = store::sealed_key(conn, signer.key_id)
            .await?
            .ok_or_else(|| internal("signer key row missing"))?;
        let keys = self.keys.clone();
        let der = signer.der.clone();
        let opened = marty_runtime::cpu(move || -> Result<Opened> {
            let dsc = Certificate::from_der(&der).map_err(internal)?;
            let mut key = keys.open(&sealed)?;
            // The published key of the DSC keeps explicit EC parameters.
            key.spki = dsc.spki.clone();
            SodSigner::new(dsc, key).map_err(internal)
        })
        .await
        .map_err(internal)??;
        let opened = Arc::new(opened);
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot, opened.clone());
        Ok(opened)
    }

    /// Signs with the active signer: the job joins the queue the signing workers drain in
    /// batches (see [`DocumentSigner::work`]); the answer comes once its audit row committed.
    async fn sign_audited(&self, what: Audited<'_>, sign: SignFn) -> Result<Signed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            country: what.country.to_owned(),
            document_type: what.document_type.to_owned(),
            kind: what.kind,
            document_reference: what.document_reference.map(str::to_owned),
            requested_by: what.requested_by.to_owned(),
            content_sha256: what.content_sha256,
            sign,
            reply,
        };
        self.jobs
            .push(job)
            .await
            .map_err(|_| SignerError::Unavailable("the Document Signer is shutting down".into()))?;
        answer
            .await
            .map_err(|_| SignerError::Unavailable("the Document Signer is shutting down".into()))?
    }

    /// A signing worker: takes what is queued (up to [`MAX_BATCH`] jobs), and signs each
    /// (country, document type) group in one transaction — signing lock shared, the active
    /// signer read and checked once, every signature made, every audit row inserted, one
    /// commit — before answering. Under load the queue fills while a batch is in flight, so
    /// the database work of a signature shrinks with the load; alone, a job is a batch of one.
    pub async fn work(self: Arc<Self>, stop: marty_runtime::Shutdown) -> anyhow::Result<()> {
        while let Some(batch) = self.jobs.next_batch(&stop, MAX_BATCH).await {
            let mut groups: Vec<((String, String), Vec<Job>)> = Vec::new();
            for job in batch {
                let key = (job.country.clone(), job.document_type.clone());
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, jobs)) => jobs.push(job),
                    None => groups.push((key, vec![job])),
                }
            }
            for ((country, document_type), jobs) in groups {
                self.sign_group(&country, &document_type, jobs).await;
            }
        }
        Ok(())
    }

    async fn sign_group(&self, country: &str, document_type: &str, jobs: Vec<Job>) {
        let mut replies = Vec::with_capacity(jobs.len());
        let mut work = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((
                job.reply,
                job.kind,
                job.document_reference,
                job.requested_by,
                job.content_sha256,
            ));
            work.push(job.sign);
        }
        match self
            .sign_batch(country, document_type, work, &replies)
            .await
        {
            Ok(results) => {
                for ((reply, ..), result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // Nothing of the batch committed: every caller learns it failed.
                if let SignerError::Internal(ref cause) = e {
                    tracing::error!(
                        error = format!("{cause:#}"),
                        jobs = replies.len(),
                        "a signing batch failed"
                    );
                }
                for (reply, ..) in replies {
                    let _ = reply.send(Err(e.duplicate()));
                }
            }
        }
    }

    async fn sign_batch(
        &self,
        country: &str,
        document_type: &str,
        work: Vec<SignFn>,
        meta: &[Reply],
    ) -> Result<Vec<Result<Signed>>> {
        let mut tx = self.ctx.db().begin().await?;
        let signer = store::active_for_signing(&mut tx, country, document_type)
            .await?
            .ok_or_else(|| {
                SignerError::FailedPrecondition(format!(
                    "no active signer for {country}/{document_type}: run `marty signer activate --country {country}`"
                ))
            })?;
        let now = OffsetDateTime::now_utc();
        if Self::usable_for(&signer, now).is_none() {
            self.ctx.wake();
            return Err(SignerError::FailedPrecondition(format!(
                "the signer {} of {country}/{document_type} is outside its private key usage period or validity; a replacement is being activated (or run `marty signer rotate`)",
                hex(&signer.serial)
            )));
        }
        let opened = self.open(&mut tx, &signer).await?;
        // Each signature on a blocking thread of its own: a batch of RSA signatures uses every
        // core rather than one.
        let tasks: Vec<_> = work
            .into_iter()
            .map(|sign| {
                let opened = opened.clone();
                marty_runtime::cpu(move || sign(&opened))
            })
            .collect();
        let mut signed: Vec<Result<(Vec<u8>, String, String)>> = Vec::with_capacity(tasks.len());
        for t in futures::future::join_all(tasks).await {
            signed.push(t.map_err(internal)?);
        }
        let mut entries = Vec::new();
        for (result, (_, kind, reference, requested_by, content)) in signed.iter().zip(meta) {
            if let Ok((bytes, digest, algorithm)) = result {
                entries.push(AuditEntry {
                    signer: &signer,
                    document_reference: reference.as_deref(),
                    digest_algorithm: digest,
                    signature_algorithm: algorithm,
                    content_sha256: content,
                    output_sha256: DigestAlgorithm::Sha256.digest(bytes),
                    requested_by,
                    kind,
                });
            }
        }
        let ids = store::insert_audits(&mut tx, &entries).await?;
        tx.commit().await?;
        let mut ids = ids.into_iter();
        Ok(signed
            .into_iter()
            .map(|r| {
                r.map(|(bytes, _, _)| Signed {
                    bytes,
                    signer_serial: signer.serial.clone(),
                    audit_id: ids.next().unwrap_or_default(),
                })
            })
            .collect())
    }

    /// EF.SOD over the given hashes.
    #[tracing::instrument(skip_all, fields(country = %req.country, data_groups = req.hashes.len()))]
    pub async fn sign_lds(&self, req: SignLds) -> Result<Signed> {
        let hash: DigestAlgorithm = if req.hash_algorithm.trim().is_empty() {
            DigestAlgorithm::Sha256
        } else {
            req.hash_algorithm
                .parse()
                .map_err(SignerError::InvalidArgument)?
        };
        let lds_version = Some(req.lds_version.trim().to_owned()).filter(|v| !v.is_empty());
        let lds = LdsSecurityObject::from_hashes(hash, req.hashes, lds_version)
            .map_err(|e| SignerError::InvalidArgument(e.to_string()))?;
        let country = self.country(&req.country)?;
        let document_type = self.document_type(&req.document_type)?;
        let reference = document_reference(&req.document_reference)?;
        let content_sha256 = DigestAlgorithm::Sha256.digest(&lds.to_der());
        let signing_time = req.signing_time.then(OffsetDateTime::now_utc);
        let signed = self
            .sign_audited(
                Audited {
                    country: &country,
                    document_type: &document_type,
                    kind: "lds_security_object",
                    document_reference: reference.as_deref(),
                    requested_by: &req.requested_by,
                    content_sha256,
                },
                Box::new(move |o: &Opened| {
                    let sod = o
                        .sign(&lds, SidChoice::IssuerAndSerial, signing_time)
                        .map_err(|e| SignerError::InvalidArgument(e.to_string()))?;
                    Ok((
                        sod,
                        lds.hash_algorithm.name().to_owned(),
                        o.key().signature_algorithm().name(),
                    ))
                }),
            )
            .await?;
        tracing::info!(audit_id = signed.audit_id, "EF.SOD signed");
        Ok(signed)
    }

    /// A detached CMS signature over `data` (RFC 5652; eContentType id-data).
    #[tracing::instrument(skip_all, fields(country = %country, bytes = data.len()))]
    pub async fn sign_document(
        &self,
        data: Vec<u8>,
        reference: &str,
        country: &str,
        requested_by: &str,
    ) -> Result<Signed> {
        if data.is_empty() {
            return Err(SignerError::InvalidArgument(
                "data is empty: nothing to sign".into(),
            ));
        }
        let country = self.country(country)?;
        let document_type = self.policy.document_type.clone();
        let reference = document_reference(reference)?;
        let content_sha256 = DigestAlgorithm::Sha256.digest(&data);
        self.sign_audited(
            Audited {
                country: &country,
                document_type: &document_type,
                kind: "document",
                document_reference: reference.as_deref(),
                requested_by,
                content_sha256,
            },
            Box::new(move |o: &Opened| {
                let digest = o.key().digest();
                let signature_algorithm = o.key().signature_algorithm();
                let cms = marty_icao::cms::sign(&marty_icao::cms::SignRequest {
                    content_type: marty_icao::oid::DATA,
                    content: &data,
                    signer: o.certificate(),
                    extra_certificates: &[],
                    key: &o.key().private,
                    digest,
                    signature_algorithm,
                    sid: SidChoice::IssuerAndSerial,
                    signing_time: Some(OffsetDateTime::now_utc()),
                    detached: true,
                })
                .map_err(internal)?;
                Ok((cms, digest.name().to_owned(), signature_algorithm.name()))
            }),
        )
        .await
    }

    pub async fn audit(
        &self,
        before: Option<i64>,
        document_reference: Option<&str>,
        limit: i64,
    ) -> Result<Vec<store::AuditRow>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::list_audit(&mut conn, before, document_reference, limit).await?)
    }
}

/// `csca.certificate.revoked`: a revoked DSC's key stops signing in this transaction (see the
/// module docs); the rotation task, woken, activates a replacement.
#[derive(Debug, Clone)]
pub struct RevocationHandler {
    pub ctx: ServiceContext,
}

impl RevocationHandler {
    /// Asks the CSCA service whether it revoked the certificate with this fingerprint.
    async fn confirm_revoked(&self, fingerprint: &[u8]) -> std::result::Result<(), String> {
        let channel = self.ctx.peers().channel(marty_config::Service::Csca)?;
        let record = CscaServiceClient::new(channel)
            .get_certificate(marty_proto::csca::v1::GetCertificateRequest {
                fingerprint_sha256: hex(fingerprint),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("asking the CSCA service about the revocation: {s}"))?
            .into_inner();
        if record.status == marty_proto::csca::v1::CertificateStatus::Revoked as i32 {
            Ok(())
        } else {
            Err("the CSCA service does not confirm this revocation".into())
        }
    }
}

impl marty_events::Handler for RevocationHandler {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &marty_events::Envelope,
    ) -> std::result::Result<(), String> {
        let revoked_at = event.payload["revoked_at"].as_str().and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        let reason = event.payload["reason_code"]
            .as_i64()
            .and_then(|r| i16::try_from(r).ok());
        // An event is a notification, not evidence (anyone who reaches NATS may publish one):
        // the CSCA service must confirm the revocation before a key stops signing.
        let revoked_fingerprint = match event.payload["type"].as_str() {
            Some("csca") | Some("link") => event.payload["der"]
                .as_str()
                .and_then(|b| openssl::base64::decode_block(b).ok())
                .map(|der| DigestAlgorithm::Sha256.digest(&der)),
            _ => event.payload["fingerprint_sha256"]
                .as_str()
                .and_then(|f| marty_icao::hex::decode(f).ok()),
        }
        .filter(|f| f.len() == 32)
        .ok_or("the revocation event names no certificate")?;
        self.confirm_revoked(&revoked_fingerprint).await?;
        // The DSCs to stop: the revoked DSC itself, or — when a CSCA (or link) certificate is
        // revoked — every active DSC its key issued (their authority key identifier is its
        // subject key identifier): a DSC under a revoked CSCA must not sign another document.
        let fingerprints: Vec<Vec<u8>> = match event.payload["type"].as_str() {
            Some("document_signer") => vec![
                event.payload["fingerprint_sha256"]
                    .as_str()
                    .and_then(|f| marty_icao::hex::decode(f).ok())
                    .filter(|f| f.len() == 32)
                    .ok_or("the revocation event lacks a SHA-256 fingerprint")?,
            ],
            Some("csca") | Some("link") => {
                let der = event.payload["der"]
                    .as_str()
                    .and_then(|b| openssl::base64::decode_block(b).ok())
                    .ok_or("the revocation event lacks the certificate")?;
                let active = store::active_certificates(tx)
                    .await
                    .map_err(|e| format!("reading the active signers: {e}"))?;
                // The event comes from the bus: parsed off the async workers, like all input.
                marty_runtime::untrusted(move || {
                    let ski = Certificate::from_der(&der)
                        .map_err(|e| format!("the revoked CSCA certificate: {e}"))?
                        .subject_key_id
                        .ok_or("the revoked CSCA certificate has no subject key identifier")?;
                    Ok::<_, String>(
                        active
                            .into_iter()
                            .filter(|(_, der)| {
                                Certificate::from_der(der).is_ok_and(|c| {
                                    c.authority_key_id.as_deref() == Some(ski.as_slice())
                                })
                            })
                            .map(|(fingerprint, _)| fingerprint)
                            .collect(),
                    )
                })
                .await??
            }
            _ => return Ok(()),
        };
        for fingerprint in fingerprints {
            if let Some((key, country, document_type)) =
                store::retire_revoked(tx, &fingerprint, revoked_at, reason)
                    .await
                    .map_err(|e| format!("retiring the revoked signer: {e}"))?
            {
                tracing::warn!(%key, %country, %document_type, revoked = event.payload["type"].as_str().unwrap_or("?"), serial = event.payload["serial_hex"].as_str().unwrap_or("?"), "the CSCA revoked the active DSC or its CSCA: its key no longer signs");
                self.ctx.wake();
            }
        }
        Ok(())
    }
}
