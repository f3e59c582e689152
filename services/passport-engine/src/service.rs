//! The Passport Engine's operations.
//!
//! **Issuing.** Holder data is validated field by field (an error names the field), the MRZ
//! is built with its check digits, then DG1, DG2 (ISO/IEC 19794-5 around the face image) and
//! EF.COM (LDS 1.8: `0108`, Unicode 4.0.0 — the current version of Part 10, and the one whose
//! EF.SOD is v1 with ldsVersionInfo). The data group hashes go to the Document Signer, which
//! returns EF.SOD; the passport row and its `passport_engine.passport.issued` event then commit
//! in one transaction. A crash before the commit leaves a signature in the Document Signer's
//! audit and nothing here — never a stored passport without a SOD, nor an event without a
//! passport.
//!
//! **The issuing State** is the Document Signer's: the engine asks for the active signer and
//! writes the MRZ code of its country (`D` for DE, else ISO alpha-3), so that Passive
//! Authentication finds DG1's issuing State and the CSCA's country in agreement.
//!
//! **Verifying.** The DSC's country selects the trust material, fetched from the PKD and cached
//! in the engine's database for [`TRUST_TTL`]; a `csca.crl.issued` or
//! `csca.certificate.revoked` event deletes the country's entry. When the PKD cannot be reached
//! a cached entry up to [`TRUST_STALE_LIMIT`] old is used and the report says so; with nothing
//! cached the verdict is INDETERMINATE — never VALID on missing evidence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use marty_icao::algo::DigestAlgorithm;
use marty_icao::cert::Certificate;
use marty_icao::crl::Crl;
use marty_icao::inputs::LdsFiles;
use marty_icao::lds::{self, EfCom, FaceImage, LdsFile};
use marty_icao::mrz::{MrzBuilder, MrzError, MrzFormat, Sex};
use marty_icao::pa::{self, PaReport, Verdict};
use marty_icao::sod::Sod;
use marty_icao::trust::TrustStore;
use marty_proto::pkd::v1 as pkd;
use marty_proto::signer::v1 as signer;
use marty_runtime::ServiceContext;
use marty_runtime::batch::BatchQueue;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::{EngineError, Result, internal, peer};
use crate::store::{self, CachedTrust, NewPassport, PassportRow};

/// How long trust material from the PKD is used without asking again.
pub const TRUST_TTL: Duration = Duration::minutes(5);
/// The oldest cached trust material used when the PKD cannot be reached.
pub const TRUST_STALE_LIMIT: Duration = Duration::hours(24);
/// LDS version of issued documents (EF.COM and the SOD's ldsVersionInfo).
pub const LDS_VERSION: &str = "0108";
const UNICODE_VERSION: &str = "040000";
/// Largest face image accepted.
const MAX_FACE_BYTES: usize = 2 * 1024 * 1024;

/// What IssuePassport asks for.
#[derive(Debug, Clone)]
pub struct Holder {
    pub primary_identifier: String,
    pub secondary_identifier: String,
    pub nationality: String,
    pub date_of_birth: String,
    pub sex: String,
    pub date_of_expiry: String,
    pub document_type: String,
    pub document_number: String,
    pub face_image: Vec<u8>,
}

/// A verification and how it was reached.
#[derive(Debug, Clone)]
pub struct Verification {
    pub report: PaReport,
    pub trust_from_cache: bool,
    /// The DSC's path to its CSCA was verified before against the same trust material.
    pub chain_from_cache: bool,
    pub trust_version: String,
    pub request_id: Uuid,
}

/// A trust store and the version of the material it was built from.
type VersionedStore = (String, Arc<TrustStore>);

#[derive(Debug, Clone)]
pub struct Engine {
    ctx: ServiceContext,
    /// Trust stores built from cached trust material, per country, with the material's
    /// version: while the version is unchanged the store (its parsed certificates and CRLs,
    /// and the paths and CRL signatures it verified) serves every verification — the warm
    /// path. The database's cache stays the truth: a new version replaces the store.
    stores: Arc<Mutex<HashMap<String, VersionedStore>>>,
    /// The Document Signer's country per document type, as it last answered, for
    /// [`SIGNER_COUNTRY_TTL`]: the issuing State rarely changes, and asking on every
    /// issuance costs a round trip and a query there. The signature itself always comes from
    /// the signer active at that moment.
    signer_country: Arc<Mutex<HashMap<String, (String, std::time::Instant)>>>,
    /// Verifications waiting to be recorded: the recording workers insert what is queued in
    /// one statement (one commit for many verifications under load), and each verification
    /// answers only once its record committed.
    records: Arc<BatchQueue<RecordJob>>,
}

type RecordJob = (
    store::NewValidation,
    tokio::sync::oneshot::Sender<Result<()>>,
);

/// The most verifications recorded by one statement.
const MAX_RECORD_BATCH: usize = 64;

/// How long the engine trusts its memory of the Document Signer's country.
const SIGNER_COUNTRY_TTL: StdDuration = StdDuration::from_secs(30);

fn invalid(field: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidArgument(format!("{field}: {why}"))
}

fn iso_date(field: &str, s: &str) -> Result<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &format).map_err(|_| invalid(field, "a date as YYYY-MM-DD"))
}

fn yymmdd(d: Date) -> String {
    format!(
        "{:02}{:02}{:02}",
        d.year().rem_euclid(100),
        u8::from(d.month()),
        d.day()
    )
}

/// A fresh document number: 9 characters of letters and digits, starting with a letter.
fn allocate_number() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
    let bytes = *Uuid::new_v4().as_bytes();
    let mut s = String::with_capacity(9);
    s.push(char::from(ALPHABET[usize::from(bytes[0]) % 23]));
    for b in &bytes[1..9] {
        s.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
    }
    s
}

/// The CSCA and link certificates that may anchor a chain: a revoked certificate anchors
/// nothing, and neither does any other certificate of the same key (a link certificate
/// carries the new CSCA's key: revoking the CSCA must not leave its link as an anchor).
fn unrevoked_keys(certificates: impl Iterator<Item = (Vec<u8>, bool)>) -> Vec<Vec<u8>> {
    let parsed: Vec<(Vec<u8>, bool, Option<Vec<u8>>)> = certificates
        .map(|(der, revoked)| {
            let key = Certificate::from_der(&der)
                .ok()
                .map(|c| c.public_key_bits());
            (der, revoked, key)
        })
        .collect();
    let revoked_keys: Vec<&Vec<u8>> = parsed
        .iter()
        .filter(|(_, revoked, _)| *revoked)
        .filter_map(|(_, _, key)| key.as_ref())
        .collect();
    parsed
        .iter()
        .filter(|(_, revoked, key)| {
            !revoked && key.as_ref().is_some_and(|k| !revoked_keys.contains(&k))
        })
        .map(|(der, _, _)| der.clone())
        .collect()
}

/// The holder field an MRZ that cannot be built is about.
fn holder_field(e: &MrzError, primary: &str) -> &'static str {
    match e {
        MrzError::Value { field, .. } => match *field {
            "nationality" => "nationality",
            "document number" => "document_number",
            "document code" => "document_type",
            "date of birth" => "date_of_birth",
            "date of expiry" => "date_of_expiry",
            "primary identifier" => "primary_identifier",
            _ => "holder",
        },
        MrzError::Transliteration { text, .. } if primary.contains(text.as_str()) => {
            "primary_identifier"
        }
        MrzError::Transliteration { .. } => "secondary_identifier",
        _ => "holder",
    }
}

impl Engine {
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            ctx,
            stores: Default::default(),
            signer_country: Default::default(),
            records: Arc::new(BatchQueue::new(4 * MAX_RECORD_BATCH)),
        }
    }

    /// Records a verification (see [`Engine::recorder`]); returns once it committed.
    async fn record(&self, v: store::NewValidation) -> Result<()> {
        let gone = || EngineError::Unavailable("the Passport Engine is shutting down".into());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.records.push((v, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// A recording worker: inserts the queued verifications in one statement, then answers
    /// each of their callers. Nothing of a failed batch committed, and each caller learns it.
    pub async fn recorder(self: Arc<Self>, stop: marty_runtime::Shutdown) -> anyhow::Result<()> {
        while let Some(batch) = self.records.next_batch(&stop, MAX_RECORD_BATCH).await {
            let (rows, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let recorded = async {
                let mut conn = self.ctx.db().acquire().await?;
                store::record_validations(&mut conn, &rows).await
            }
            .await
            .map_err(EngineError::from);
            match recorded {
                Ok(()) => {
                    for reply in replies {
                        let _ = reply.send(Ok(()));
                    }
                }
                Err(e) => {
                    if let EngineError::Internal(ref cause) = e {
                        tracing::error!(
                            error = format!("{cause:#}"),
                            verifications = rows.len(),
                            "recording verifications failed"
                        );
                    }
                    for reply in replies {
                        let _ = reply.send(Err(e.duplicate()));
                    }
                }
            }
        }
        Ok(())
    }

    fn signer_client(
        &self,
    ) -> Result<signer::document_signer_client::DocumentSignerClient<tonic::transport::Channel>>
    {
        let channel = self
            .ctx
            .peers()
            .channel(marty_config::Service::DocumentSigner)
            .map_err(EngineError::Unavailable)?;
        Ok(
            signer::document_signer_client::DocumentSignerClient::new(channel)
                .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES),
        )
    }

    fn pkd_client(
        &self,
    ) -> Result<pkd::pkd_service_client::PkdServiceClient<tonic::transport::Channel>> {
        let channel = self
            .ctx
            .peers()
            .channel(marty_config::Service::Pkd)
            .map_err(EngineError::Unavailable)?;
        Ok(pkd::pkd_service_client::PkdServiceClient::new(channel)
            .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES))
    }

    /// Issues a passport: MRZ, DG1, DG2, EF.COM, EF.SOD from the Document Signer, stored with
    /// its event in one transaction.
    #[tracing::instrument(skip_all, fields(document_type = %h.document_type))]
    pub async fn issue(&self, h: Holder) -> Result<PassportRow> {
        let document_type = match h.document_type.trim() {
            "" => "P".to_owned(),
            t => t.to_ascii_uppercase(),
        };
        if !(document_type == "P"
            || (document_type.len() == 2
                && document_type.starts_with('P')
                && document_type.as_bytes()[1].is_ascii_uppercase()))
        {
            return Err(invalid(
                "document_type",
                "P, or P followed by a letter (a TD3 passport)",
            ));
        }
        let birth = iso_date("date_of_birth", &h.date_of_birth)?;
        let expiry = iso_date("date_of_expiry", &h.date_of_expiry)?;
        let today = OffsetDateTime::now_utc().date();
        if birth.year() < 1900 {
            return Err(invalid("date_of_birth", "before 1900"));
        }
        if birth > today {
            return Err(invalid("date_of_birth", "lies in the future"));
        }
        if expiry <= today {
            return Err(invalid("date_of_expiry", "must lie in the future"));
        }
        let ten_years = today
            .replace_year(today.year() + 10)
            .unwrap_or_else(|_| today + Duration::days(3652));
        if expiry > ten_years {
            return Err(invalid(
                "date_of_expiry",
                "a passport is valid for at most 10 years",
            ));
        }
        let sex = match h.sex.trim() {
            "F" | "f" => Sex::Female,
            "M" | "m" => Sex::Male,
            "X" | "x" | "<" => Sex::Unspecified,
            _ => return Err(invalid("sex", "F, M or X")),
        };
        if h.primary_identifier.trim().is_empty() {
            return Err(invalid("primary_identifier", "is required"));
        }
        if h.face_image.is_empty() {
            return Err(invalid("face_image", "is required (JPEG or JPEG 2000)"));
        }
        if h.face_image.len() > MAX_FACE_BYTES {
            return Err(invalid(
                "face_image",
                format!("larger than {} bytes", MAX_FACE_BYTES),
            ));
        }
        let document_number = match h.document_number.trim() {
            "" => allocate_number(),
            n => {
                let n = n.to_ascii_uppercase();
                if n.len() > 9 || !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(invalid("document_number", "1 to 9 letters and digits"));
                }
                n
            }
        };
        if h.document_number.trim().is_empty() {
            // Allocated: a collision (1 in 33^8 per pair) ends as ALREADY_EXISTS below.
        } else if store::by_number(&mut *self.ctx.db().acquire().await?, &document_number)
            .await?
            .is_some()
        {
            // Checked before anything is signed; the unique constraint decides races.
            return Err(EngineError::AlreadyExists(format!(
                "document_number: {document_number} is already issued"
            )));
        }
        // The issuing State: the active signer's country.
        let mut signer_client = self.signer_client()?;
        let country = self
            .signer_country(&mut signer_client, &document_type)
            .await?;
        let issuing_state = marty_icao::country::mrz_code_for(&country)
            .ok_or_else(|| internal(format!("no MRZ code for the signer's country {country}")))?
            .to_owned();
        let builder = MrzBuilder {
            format: MrzFormat::Td3,
            document_code: document_type.clone(),
            issuing_state: issuing_state.clone(),
            document_number: document_number.clone(),
            primary_identifier: h.primary_identifier.trim().to_owned(),
            secondary_identifier: h.secondary_identifier.trim().to_owned(),
            nationality: h.nationality.trim().to_ascii_uppercase(),
            date_of_birth: yymmdd(birth),
            sex,
            date_of_expiry: yymmdd(expiry),
            optional_data: String::new(),
            umlauts: Default::default(),
        };
        let face = h.face_image;
        let (mrz, dg1, dg2) = marty_runtime::untrusted(move || {
            let primary = builder.primary_identifier.clone();
            let mrz = builder
                .build()
                .map_err(|e| invalid(holder_field(&e, &primary), e))?;
            let dg1 = lds::build_dg1(&mrz);
            let face = FaceImage::from_image(face).map_err(|e| invalid("face_image", e))?;
            let dg2 = lds::build_dg2(&face).map_err(|e| invalid("face_image", e))?;
            Ok::<_, EngineError>((mrz, dg1, dg2))
        })
        .await
        .map_err(internal)??;
        let ef_com = EfCom {
            lds_version: LDS_VERSION.into(),
            unicode_version: UNICODE_VERSION.into(),
            data_groups: vec![LdsFile::Dg(1), LdsFile::Dg(2)],
        }
        .to_der();
        let sha = DigestAlgorithm::Sha256;
        let signed = signer_client
            .sign_lds_security_object(signer::SignLdsSecurityObjectRequest {
                hash_algorithm: "sha256".into(),
                data_group_hashes: vec![
                    signer::DataGroupHash {
                        number: 1,
                        hash: sha.digest(&dg1),
                    },
                    signer::DataGroupHash {
                        number: 2,
                        hash: sha.digest(&dg2),
                    },
                ],
                lds_version: LDS_VERSION.into(),
                document_reference: document_number.clone(),
                country: country.clone(),
                document_type: document_type.clone(),
                signing_time: true,
            })
            .await
            .map_err(|s| peer("Document Signer", s))?
            .into_inner();
        let ef_sod = signed.ef_sod;
        let sod = marty_runtime::untrusted({
            let ef_sod = ef_sod.clone();
            move || Sod::parse(&ef_sod).map_err(|e| e.to_string())
        })
        .await
        .map_err(internal)?
        .map_err(|e| {
            internal(format!(
                "the Document Signer returned an unreadable EF.SOD: {e}"
            ))
        })?;
        let signer_fingerprint = sod
            .signed_data
            .certificates
            .first()
            .map(Certificate::fingerprint_sha256)
            .ok_or_else(|| internal("the EF.SOD carries no DSC"))?;
        let mrz_text = mrz.lines.join("\n");
        let mut tx = self.ctx.db().begin().await?;
        let row = store::insert(
            &mut tx,
            &NewPassport {
                document_number: &document_number,
                document_type: &document_type,
                issuing_state: &format!("{issuing_state:<<3}"),
                primary: &mrz.primary_identifier,
                secondary: &mrz.secondary_identifier,
                nationality: &mrz.nationality,
                date_of_birth: &mrz.date_of_birth,
                sex: sex.to_char(),
                date_of_expiry: expiry,
                mrz: &mrz_text,
                dg1: &dg1,
                dg2: &dg2,
                ef_com: &ef_com,
                ef_sod: &ef_sod,
                signer_fingerprint: &signer_fingerprint,
            },
        )
        .await?
        .ok_or_else(|| {
            EngineError::AlreadyExists(format!(
                "document_number: {document_number} is already issued by {issuing_state}"
            ))
        })?;
        marty_events::outbox::enqueue(
            &mut tx,
            crate::SERVICE,
            &marty_events::NewEvent::new(
                "passport_engine.passport.issued",
                format!("passport:{}", row.id),
                serde_json::json!({
                    "passport_id": row.id,
                    "document_number": row.document_number,
                    "document_type": row.document_type,
                    "issuing_state": issuing_state,
                    "signer_fingerprint_sha256": marty_icao::hex::encode(&signer_fingerprint),
                    "sod_sha256": marty_icao::hex::encode(&sha.digest(&ef_sod)),
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(passport = %row.id, "passport issued");
        Ok(row)
    }

    /// The passport of `document_number`, issued now if there is none (the reference's
    /// ProcessPassport): a specimen holder, the sample face.
    pub async fn get(&self, id: Option<Uuid>, number: Option<&str>) -> Result<PassportRow> {
        let mut conn = self.ctx.db().acquire().await?;
        let found = match (id, number) {
            (Some(id), _) => store::by_id(&mut conn, id).await?,
            (None, Some(n)) => store::by_number(&mut conn, n).await?,
            (None, None) => {
                return Err(EngineError::InvalidArgument(
                    "id or document_number is required".into(),
                ));
            }
        };
        found.ok_or_else(|| EngineError::NotFound("no such passport".into()))
    }

    pub async fn page(
        &self,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<PassportRow>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::page(&mut conn, after, limit).await?)
    }

    pub async fn verifications(
        &self,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<store::ValidationRow>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::validations(&mut conn, after, limit).await?)
    }

    /// The trust store of `country`: from fresh cached material, else from the PKD's (then
    /// cached), else from cached material within the stale limit; with the material's
    /// version and whether it came from the cache. `None` when there is none.
    ///
    /// Each call reads the cache entry's version and expiry (a small row); the material itself
    /// is read and parsed only when this process has no store of that version — the database
    /// stays the truth (an event's invalidation deletes the entry, in whichever engine process
    /// consumed it), the memory saves the reading.
    async fn trust(
        &self,
        country: &str,
        notes: &mut Vec<String>,
    ) -> Result<Option<(VersionedStore, bool)>> {
        let now = OffsetDateTime::now_utc();
        let mut conn = self.ctx.db().acquire().await?;
        if let Some(stamp) = store::trust_stamp(&mut conn, country).await?
            && stamp.expires_at > now
        {
            if let Some(store) = self.remembered_store(country, &stamp.version) {
                return Ok(Some(((stamp.version, store), true)));
            }
            if let Some(c) = store::cached_trust(&mut conn, country).await?
                && c.expires_at > now
            {
                let store = self.trust_store(country, &c).await?;
                return Ok(Some(((c.version, store), true)));
            }
        }
        drop(conn);
        let fetched = async {
            let mut client = self.pkd_client()?;
            let call = client.get_trust_material(pkd::GetTrustMaterialRequest {
                country: country.to_owned(),
                authority_key_identifier: Vec::new(),
            });
            match tokio::time::timeout(StdDuration::from_secs(10), call).await {
                Ok(r) => r.map_err(|s| peer("PKD", s)).map(|r| r.into_inner()),
                Err(_) => Err(EngineError::Unavailable(
                    "the PKD did not answer within 10 s".into(),
                )),
            }
        }
        .await;
        match fetched {
            Ok(m) => {
                // What the CSCA announced must be in it, or it is neither cached nor used.
                // Checked and cached under the country's lock, which the invalidation of an
                // event takes too: no announcement slips in between the check and the write.
                let mut tx = self.ctx.db().begin().await?;
                store::lock_country(&mut tx, country).await?;
                let expectations = store::expectations(&mut tx, country).await?;
                let (met, unmet): (Vec<_>, Vec<_>) =
                    expectations.iter().partition(|e| expectation_met(e, &m));
                let (overdue, waiting): (Vec<_>, Vec<_>) = unmet
                    .into_iter()
                    .partition(|e| now - e.announced_at > EXPECTATION_WAIT);
                for e in &overdue {
                    tracing::warn!(%country, expectation = ?e, "the PKD never showed what an event announced; expectation dropped");
                }
                if !waiting.is_empty() {
                    notes.push(format!(
                        "the PKD has not yet learnt what the CSCA announced for {country} ({}): its trust material is not used until it has",
                        waiting.iter().map(|e| describe_expectation(e)).collect::<Vec<_>>().join("; ")
                    ));
                    return Ok(None);
                }
                let done: Vec<i64> = met.iter().chain(&overdue).map(|e| e.id).collect();
                if !done.is_empty() {
                    store::met(&mut tx, &done).await?;
                }
                // Material that lacks something announced (given up on) is kept briefly only.
                let ttl = if overdue.is_empty() {
                    TRUST_TTL
                } else {
                    OVERDUE_TTL
                };
                let certificates = marty_runtime::untrusted(move || {
                    unrevoked_keys(
                        m.cscas
                            .into_iter()
                            .chain(m.links)
                            .map(|c| (c.der, c.revoked)),
                    )
                })
                .await
                .map_err(internal)?;
                let t = CachedTrust {
                    version: m.version,
                    certificates,
                    crls: m.crls.into_iter().map(|c| c.der).collect(),
                    fetched_at: now,
                    expires_at: now + ttl,
                };
                store::store_trust(&mut tx, country, &t).await?;
                tx.commit().await?;
                let store = self.trust_store(country, &t).await?;
                Ok(Some(((t.version, store), false)))
            }
            Err(e) => {
                tracing::warn!(error = %e, %country, "trust material from the PKD unavailable");
                let cached =
                    store::cached_trust(&mut *self.ctx.db().acquire().await?, country).await?;
                match cached {
                    Some(c) if now - c.fetched_at <= TRUST_STALE_LIMIT => {
                        notes.push(format!(
                            "the PKD could not be reached ({e}); trust material cached at {} was used",
                            marty_icao::cert::rfc3339(c.fetched_at)
                        ));
                        let store = self.trust_store(country, &c).await?;
                        Ok(Some(((c.version, store), true)))
                    }
                    _ => {
                        notes.push(format!("the PKD could not be reached and no trust material of {country} is cached: {e}"));
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The country of the Document Signer's active signer for `document_type`.
    async fn signer_country(
        &self,
        client: &mut signer::document_signer_client::DocumentSignerClient<
            tonic::transport::Channel,
        >,
        document_type: &str,
    ) -> Result<String> {
        if let Some((country, at)) = self
            .signer_country
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(document_type)
            && at.elapsed() < SIGNER_COUNTRY_TTL
        {
            return Ok(country.clone());
        }
        let active = client
            .get_active_signer(signer::GetActiveSignerRequest {
                country: String::new(),
                document_type: document_type.to_owned(),
            })
            .await
            .map_err(|s| peer("Document Signer", s))?
            .into_inner();
        self.signer_country
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                document_type.to_owned(),
                (active.country.clone(), std::time::Instant::now()),
            );
        Ok(active.country)
    }

    /// The trust store this process built for `country`'s material of `version`, if any.
    fn remembered_store(&self, country: &str, version: &str) -> Option<Arc<TrustStore>> {
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(country)
            .filter(|(v, _)| v == version)
            .map(|(_, store)| store.clone())
    }

    /// The trust store of `country`'s material `t`: the one built before for this version, or
    /// a new one.
    async fn trust_store(&self, country: &str, t: &CachedTrust) -> Result<Arc<TrustStore>> {
        if let Some(store) = self.remembered_store(country, &t.version) {
            return Ok(store);
        }
        let (certificates, crls) = (t.certificates.clone(), t.crls.clone());
        let store = marty_runtime::untrusted(move || {
            Arc::new(TrustStore::new(
                certificates
                    .iter()
                    .filter_map(|d| Certificate::from_der(d).ok())
                    .collect(),
                crls.iter().filter_map(|d| Crl::from_der(d).ok()).collect(),
            ))
        })
        .await
        .map_err(internal)?;
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        // One store per country at most; a bounded number of countries.
        if stores.len() >= 512 && !stores.contains_key(country) {
            stores.clear();
        }
        stores.insert(country.to_owned(), (t.version.clone(), store.clone()));
        Ok(store)
    }

    /// Passive Authentication of `ef_sod` and `data_groups` at `at`, recorded.
    #[tracing::instrument(skip_all, fields(data_groups = data_groups.len()))]
    pub async fn verify(
        &self,
        ef_sod: Vec<u8>,
        data_groups: Vec<Vec<u8>>,
        at: Option<OffsetDateTime>,
        requested_by: &str,
    ) -> Result<Verification> {
        let at = at.unwrap_or_else(OffsetDateTime::now_utc);
        let sod_bytes = ef_sod.clone();
        // The DSC's country chooses the trust material; a SOD that does not parse is left to
        // Passive Authentication to report.
        let (country, numbered) = marty_runtime::untrusted(move || {
            let country = Sod::parse(&sod_bytes).ok().and_then(|s| {
                s.signed_data
                    .certificates
                    .first()
                    .and_then(|c| c.issuer.country().map(str::to_ascii_uppercase))
            });
            let named = data_groups
                .into_iter()
                .enumerate()
                .map(|(i, dg)| (format!("data_groups[{i}]"), dg));
            let files = LdsFiles::collect(named).map_err(|e| e.to_string())?;
            if files.sod.is_some() || !files.notes.is_empty() {
                return Err(format!(
                    "data_groups: only data groups belong here (EF.SOD goes in ef_sod); {}",
                    files.notes.join("; ")
                ));
            }
            Ok((country, files.data_groups))
        })
        .await
        .map_err(internal)?
        .map_err(EngineError::InvalidArgument)?;
        let mut notes = Vec::new();
        let trust = match country
            .as_deref()
            .filter(|c| marty_icao::country::is_alpha2(c))
        {
            Some(c) => self.trust(c, &mut notes).await?,
            None => None,
        };
        let found_trust = trust.is_some();
        let ((trust_version, store), trust_from_cache) = trust.unwrap_or_else(|| {
            (
                (String::new(), Arc::new(TrustStore::new(vec![], vec![]))),
                false,
            )
        });
        let sod = ef_sod.clone();
        let mut report = marty_runtime::untrusted(move || {
            pa::passive_authentication(&sod, &numbered, &store, at, false)
        })
        .await
        .map_err(internal)?;
        // Without trust material the report is never VALID (no anchor); say why.
        if !found_trust && report.verdict != Verdict::Invalid {
            report.reason = notes
                .last()
                .cloned()
                .unwrap_or_else(|| "no trust material for the DSC's country".into());
        }
        for n in notes.iter().rev() {
            report.warnings.insert(0, n.clone());
        }
        let request_id = Uuid::new_v4();
        self.record(store::NewValidation {
            id: request_id,
            sod_sha256: DigestAlgorithm::Sha256.digest(&ef_sod),
            verdict: report.verdict.as_str(),
            report: serde_json::to_value(&report).map_err(internal)?,
            requested_by: requested_by.to_owned(),
        })
        .await?;
        Ok(Verification {
            chain_from_cache: report.chain_from_cache,
            report,
            trust_from_cache,
            trust_version,
            request_id,
        })
    }
}

/// How long an expectation may wait for the PKD before it is dropped.
const EXPECTATION_WAIT: Duration = Duration::minutes(2);

/// How long material is cached that lacked an expectation dropped as overdue: the engine asks
/// the PKD again soon rather than serving it for the whole [`TRUST_TTL`].
const OVERDUE_TTL: Duration = Duration::seconds(10);

/// Two non-negative decimal numbers: `a >= b`.
fn decimal_ge(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) >= (b.len(), b)
}

fn expectation_met(e: &store::Expectation, m: &pkd::TrustMaterial) -> bool {
    if let Some(n) = &e.min_crl_number {
        let aki = e.crl_authority_key.as_deref().map(marty_icao::hex::encode);
        return m.crls.iter().any(|c| {
            decimal_ge(&c.crl_number, n)
                && aki
                    .as_ref()
                    .is_none_or(|k| c.authority_key_identifier_hex.eq_ignore_ascii_case(k))
        });
    }
    if let Some(fp) = &e.revoked_fingerprint {
        let fp = marty_icao::hex::encode(fp);
        return m
            .cscas
            .iter()
            .chain(&m.links)
            .any(|c| c.revoked && c.fingerprint_sha256.eq_ignore_ascii_case(&fp));
    }
    true
}

fn describe_expectation(e: &store::Expectation) -> String {
    match (&e.min_crl_number, &e.revoked_fingerprint) {
        (Some(n), _) => format!("CRL number {n}"),
        (_, Some(fp)) => format!("the revocation of {}", marty_icao::hex::encode(fp)),
        _ => "an update".into(),
    }
}

/// `csca.crl.issued` / `csca.certificate.revoked`: the country's cached trust material is
/// stale from this event on, and what the event announced is expected in the next material
/// the PKD returns (see `trust_expectations`).
#[derive(Debug, Clone)]
pub struct TrustInvalidation;

impl marty_events::Handler for TrustInvalidation {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &marty_events::Envelope,
    ) -> std::result::Result<(), String> {
        if let Some(country) = event.payload["country"]
            .as_str()
            .map(str::to_ascii_uppercase)
            .filter(|c| marty_icao::country::is_alpha2(c))
        {
            let country = country.as_str();
            store::lock_country(tx, country)
                .await
                .map_err(|e| format!("locking the country's trust cache: {e}"))?;
            store::invalidate(tx, country)
                .await
                .map_err(|e| format!("invalidating trust material: {e}"))?;
            let p = &event.payload;
            let db = |e: sqlx::Error| format!("recording what the event announced: {e}");
            match event.event_type.as_str() {
                "csca.crl.issued" => {
                    if let Some(n) = p["crl_number"].as_str().filter(|n| {
                        !n.is_empty() && n.len() <= 48 && n.bytes().all(|b| b.is_ascii_digit())
                    }) {
                        let der = p["der"]
                            .as_str()
                            .and_then(|b| openssl::base64::decode_block(b).ok())
                            .unwrap_or_default();
                        let aki = marty_runtime::untrusted(move || {
                            Crl::from_der(&der).ok().and_then(|c| c.authority_key_id)
                        })
                        .await
                        .ok()
                        .flatten();
                        store::expect(tx, country, Some((n, aki.as_deref())), None, event.id)
                            .await
                            .map_err(db)?;
                    }
                }
                "csca.certificate.revoked"
                    if matches!(p["type"].as_str(), Some("csca" | "link")) =>
                {
                    if let Some(fp) = p["fingerprint_sha256"]
                        .as_str()
                        .and_then(|h| marty_icao::hex::decode(h).ok())
                        .filter(|f| f.len() == 32)
                    {
                        store::expect(tx, country, None, Some(&fp), event.id)
                            .await
                            .map_err(db)?;
                    }
                }
                _ => {}
            }
            tracing::info!(%country, event = %event.event_type, "cached trust material invalidated");
        }
        Ok(())
    }
}
