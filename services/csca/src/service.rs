//! The CSCA's operations. Each change commits in one transaction with its events (and, for a
//! revocation, the CRL that lists it): all of it or none of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use marty_config::CscaPolicy;
use marty_events::NewEvent;
use marty_icao::cert::Certificate;
use marty_icao::issue::{self, CertificateRequest, KeyPair, KeySpec};
use marty_keys::KeyStore;
use marty_runtime::ServiceContext;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::domain::{self, CertKind, CertStatus};
use crate::error::{CscaError, Result};
use crate::store::{self, CertRow, CrlRow, CscaKey, ListFilter, NewCertificate, NewKey};

/// The CSCA of this process: its database, keys and policy.
pub struct Csca {
    ctx: ServiceContext,
    policy: CscaPolicy,
    keys: Arc<dyn KeyStore>,
    /// Opened CSCA keys by key id: opening costs an AES-GCM decryption and a PKCS#8 parse.
    opened: Mutex<HashMap<Uuid, Arc<KeyPair>>>,
    /// Key generation in flight (bounded: an RSA-8192 key takes seconds of a core).
    keygen: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Csca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csca")
    }
}

/// What CreateCsca asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateCsca {
    pub country: String,
    pub mrz_country: String,
    pub key_spec: String,
    pub validity_days: u32,
    pub key_usage_days: u32,
    pub common_name: String,
    pub organization: String,
    pub crl_distribution_point: String,
    /// Who asks (the caller's identity), recorded with the certificate and its CRL.
    pub requested_by: String,
}

/// The `requested_by` of what the CSCA does on its own (CRLs renewed before nextUpdate).
pub const SCHEDULER: &str = "csca scheduler";

/// What IssueCertificate asks for.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub csr_der: Vec<u8>,
    pub kind: CertKind,
    pub country: String,
    pub issuer_serial: Option<Vec<u8>>,
    pub validity_days: u32,
    pub key_usage_days: u32,
    pub document_types: Vec<String>,
    pub requester: String,
}

fn internal(e: impl std::fmt::Display) -> CscaError {
    CscaError::internal(e)
}

fn b64(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
}

fn rfc3339(t: OffsetDateTime) -> String {
    marty_icao::cert::rfc3339(t)
}

/// `csca.certificate.issued` / `csca.certificate.revoked`: everything a consumer needs,
/// the DER included, so that nobody has to call back.
fn certificate_event(event_type: &str, row: &CertRow) -> NewEvent {
    let mut payload = serde_json::json!({
        "certificate_id": row.id,
        "type": row.kind.as_db(),
        "country": row.country,
        "serial_hex": marty_icao::hex::encode(&row.serial),
        "fingerprint_sha256": marty_icao::hex::encode(&row.fingerprint),
        "subject": row.subject_dn,
        "issuer": row.issuer_dn,
        "not_before": rfc3339(row.not_before),
        "not_after": rfc3339(row.not_after),
        "der": b64(&row.der),
    });
    if let (Some(at), Some(code)) = (row.revoked_at, row.revocation_reason) {
        payload["revoked_at"] = rfc3339(at).into();
        payload["reason"] = domain::reason_name(code).into();
        payload["reason_code"] = code.into();
    }
    NewEvent::new(
        event_type,
        format!("certificate:{}", marty_icao::hex::encode(&row.fingerprint)),
        payload,
    )
}

fn crl_event(crl: &CrlRow, revoked: &[(Vec<u8>, OffsetDateTime)]) -> NewEvent {
    NewEvent::new(
        "csca.crl.issued",
        format!("crl:{}", crl.country),
        serde_json::json!({
            "country": crl.country,
            "crl_number": crl.crl_number.to_string(),
            "this_update": rfc3339(crl.this_update),
            "next_update": rfc3339(crl.next_update),
            "revoked_serials_hex": revoked.iter().map(|(s, _)| marty_icao::hex::encode(s)).collect::<Vec<_>>(),
            "der": b64(&crl.der),
        }),
    )
}

async fn enqueue(conn: &mut PgConnection, event: &NewEvent) -> Result<()> {
    marty_events::outbox::enqueue(conn, crate::SERVICE, event).await?;
    Ok(())
}

/// The keys the CSCA certifies (ICAO-FACTS §3; the same bounds as the keys Marty generates):
/// RSA of 2048 to 8192 bits, EC on a curve of at least 256 bits. Anything weaker would let
/// whoever reaches the CSCA obtain a Document Signer whose key can be broken.
fn key_strong_enough(key: &openssl::pkey::PKey<openssl::pkey::Public>) -> Result<()> {
    use openssl::pkey::Id;
    let bits = key.bits();
    match key.id() {
        Id::RSA | Id::RSA_PSS if !(2048..=8192).contains(&bits) => {
            Err(CscaError::InvalidArgument(format!(
                "the request's RSA key has {bits} bits: the CSCA certifies RSA keys of 2048 to 8192 bits"
            )))
        }
        Id::RSA | Id::RSA_PSS => {
            // The public exponent too (FIPS 186-4 §B.3.1: odd, 2^16 < e < 2^256): with e = 1
            // the "signature" is the message itself, and anyone could sign as the DSC.
            let rsa = key.rsa().map_err(|e| {
                CscaError::InvalidArgument(format!("the request's RSA key cannot be read: {e}"))
            })?;
            let e = rsa.e();
            let ok = e.is_bit_set(0) && e.num_bits() > 16 && e.num_bits() <= 256;
            if ok {
                Ok(())
            } else {
                Err(CscaError::InvalidArgument(format!(
                    "the request's RSA public exponent {} is not allowed: it must be odd and between 2^16 and 2^256",
                    e.to_dec_str().map(|s| s.to_string()).unwrap_or_default()
                )))
            }
        }
        Id::EC if bits >= 256 => Ok(()),
        Id::EC => Err(CscaError::InvalidArgument(format!(
            "the request's EC key is on a {bits}-bit curve: the CSCA certifies curves of at least 256 bits"
        ))),
        _ => Err(CscaError::InvalidArgument(
            "the request's key is neither RSA nor EC: Doc 9303 signers use RSA, RSASSA-PSS or ECDSA".into(),
        )),
    }
}

/// Parses a certificate Marty just built or stored (it is Marty's own DER, but it goes through
/// the bounded parser anyway).
fn parse_own(der: &[u8]) -> Result<Certificate> {
    Certificate::from_der(der).map_err(internal)
}

impl Csca {
    pub fn new(ctx: ServiceContext) -> anyhow::Result<Self> {
        let policy = match ctx.policy() {
            marty_runtime::ServicePolicy::Csca(p) => p.clone(),
            _ => anyhow::bail!("the CSCA runs with the CSCA's policy only"),
        };
        // The default key must parse before the first request needs it.
        policy
            .default_key
            .parse::<KeySpec>()
            .map_err(|e| anyhow::anyhow!("services.csca.policy.default_key: {e}"))?;
        if ctx.environment() == marty_config::Environment::Production {
            let host = url::Url::parse(&policy.crl_distribution_point.replace("{country}", "XX"))
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            if host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
                || host.starts_with("127.")
            {
                anyhow::bail!(
                    "services.csca.policy.crl_distribution_point is {}, a loopback address: relying parties abroad could never fetch the CRLs it names. Set MARTY_CSCA_CRL_DISTRIBUTION_POINT to the public URL",
                    policy.crl_distribution_point
                );
            }
        }
        let keys = ctx.keys();
        Ok(Self {
            ctx,
            policy,
            keys,
            opened: Mutex::new(HashMap::new()),
            keygen: tokio::sync::Semaphore::new(2),
        })
    }

    fn already_has(country: &str, current: &CscaKey) -> CscaError {
        CscaError::AlreadyExists(format!(
            "{country} already has a CSCA ({}, valid until {}): a CSCA changes keys by RolloverCsca, which also issues the link certificate",
            marty_icao::hex::encode(&current.certificate.serial),
            rfc3339(current.certificate.not_after)
        ))
    }

    pub fn policy(&self) -> &CscaPolicy {
        &self.policy
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.ctx.db().begin().await?)
    }

    /// The private key of a CSCA, opened once per process.
    async fn open(&self, key: &CscaKey) -> Result<Arc<KeyPair>> {
        if let Some(k) = self
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key.sealed.key_id)
        {
            return Ok(k.clone());
        }
        let keys = self.keys.clone();
        let sealed = key.sealed.clone();
        let pair = marty_runtime::cpu(move || keys.open(&sealed))
            .await
            .map_err(internal)??;
        let pair = Arc::new(pair);
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.sealed.key_id, pair.clone());
        Ok(pair)
    }

    /// Re-wraps keys sealed under a previous KEK (a KEK rotation), at start.
    pub async fn rewrap_keys(&self) -> anyhow::Result<usize> {
        let mut tx = self.ctx.db().begin().await?;
        let n = marty_keys::table::rewrap_table(&mut tx, self.keys.as_ref(), "csca_keys").await?;
        tx.commit().await?;
        Ok(n)
    }

    /// A usable CSCA of `country` to issue from: not retired, not revoked, valid and within
    /// its private key usage period.
    fn check_usable(key: &CscaKey, now: OffsetDateTime, what: &str) -> Result<()> {
        let c = &key.certificate;
        let serial = marty_icao::hex::encode(&c.serial);
        if let Some(at) = key.retired_at {
            return Err(CscaError::FailedPrecondition(format!(
                "the CSCA {serial} of {} was retired on {} by a rollover: {what} with the current CSCA",
                c.country,
                rfc3339(at)
            )));
        }
        match domain::status_at(c.revoked_at, c.not_before, c.not_after, now) {
            CertStatus::Revoked => Err(CscaError::FailedPrecondition(format!(
                "the CSCA {serial} of {} is revoked: nothing is issued under it; create a new CSCA",
                c.country
            ))),
            CertStatus::Expired => Err(CscaError::FailedPrecondition(format!(
                "the CSCA {serial} of {} expired on {}",
                c.country,
                rfc3339(c.not_after)
            ))),
            CertStatus::NotYetValid => Err(CscaError::FailedPrecondition(format!(
                "the CSCA {serial} of {} is not valid before {}",
                c.country,
                rfc3339(c.not_before)
            ))),
            CertStatus::Valid => match c.key_usage_not_after {
                Some(end) if end < now => Err(CscaError::FailedPrecondition(format!(
                    "the private key usage period of the CSCA {serial} of {} ended on {}: roll over to a new CSCA key",
                    c.country,
                    rfc3339(end)
                ))),
                _ => Ok(()),
            },
        }
    }

    /// A new CSCA for a country that has no usable one: key, self-signed certificate and the
    /// first CRL, with their events.
    #[tracing::instrument(skip_all, fields(country = %req.country))]
    pub async fn create(&self, req: CreateCsca) -> Result<(CertRow, Option<CrlRow>)> {
        let country = domain::country(&req.country)?;
        let mrz = domain::mrz_country(&country, &req.mrz_country)?;
        let spec = domain::key_spec(&req.key_spec, &self.policy.default_key)?;
        let now = OffsetDateTime::now_utc();
        let period = domain::csca_period(now, req.validity_days, req.key_usage_days, &self.policy)?;
        let common_name = domain::name_value("common_name", &req.common_name)?
            .unwrap_or_else(|| format!("CSCA {country}"));
        let organization = domain::name_value("organization", &req.organization)?;
        let dp = if req.crl_distribution_point.trim().is_empty() {
            domain::crl_distribution_point(&self.policy.crl_distribution_point, &country)
        } else {
            req.crl_distribution_point.trim().to_owned()
        };
        let request = CertificateRequest {
            subject: issue::Subject {
                country: country.clone(),
                mrz_country: mrz,
                organization,
                common_name,
            },
            period,
            crl_distribution_point: dp,
            serial: None,
        };
        // Refuse before the expensive part: a key can take seconds (RSA-8192), and a request
        // that is going to be refused must not cost them. (The check is repeated under the
        // country's lock below, which decides.)
        if let Some(current) =
            store::current_csca(&mut *self.ctx.db().acquire().await?, &country).await?
            && Self::check_usable(&current, now, "issue").is_ok()
        {
            return Err(Self::already_has(&country, &current));
        }
        // At most two keys are generated at once, whatever the number of callers.
        let _permit = self.keygen.acquire().await.map_err(internal)?;
        let key_id = Uuid::new_v4();
        let keys = self.keys.clone();
        let (pair, sealed, cert) = marty_runtime::cpu(move || -> Result<_> {
            let (pair, sealed) = keys.generate(key_id, spec)?;
            let cert = issue::make_csca(&request, &pair)
                .map_err(|e| CscaError::InvalidArgument(e.to_string()))?;
            Ok((pair, sealed, cert))
        })
        .await
        .map_err(internal)??;

        let mut tx = self.begin().await?;
        store::lock_country(&mut tx, &country, true).await?;
        if let Some(current) = store::current_csca(&mut tx, &country).await?
            && Self::check_usable(&current, now, "issue").is_ok()
        {
            return Err(Self::already_has(&country, &current));
        } else if let Some(unusable) = store::current_csca(&mut tx, &country).await? {
            // Revoked or expired: the new CSCA replaces it (no link: the old key is not trusted).
            store::retire_key(&mut tx, unusable.sealed.key_id).await?;
        }
        store::insert_key(
            &mut tx,
            NewKey {
                sealed: &sealed,
                key_spec: spec.to_string(),
                country: &country,
                key_usage_not_before: period.key_usage_not_before,
                key_usage_not_after: period.key_usage_not_after,
            },
        )
        .await?;
        let row = store::insert_certificate(
            &mut tx,
            NewCertificate {
                certificate: &cert,
                kind: CertKind::Csca,
                country: &country,
                key_id: Some(key_id),
                issuer_certificate_id: None,
                requested_by: &req.requested_by,
            },
        )
        .await?;
        enqueue(&mut tx, &certificate_event("csca.certificate.issued", &row)).await?;
        let key = CscaKey {
            sealed,
            key_spec: Some(spec.to_string()),
            retired_at: None,
            certificate: row.clone(),
        };
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key_id, Arc::new(pair));
        let crl = self
            .issue_crl_in(&mut tx, &key, now, &req.requested_by)
            .await?;
        tx.commit().await?;
        tracing::info!(serial = %marty_icao::hex::encode(&row.serial), "CSCA created");
        Ok((row, Some(crl)))
    }

    /// A new CSCA key and certificate for `country`, and the link certificate signed by the
    /// current key certifying the new one (Part 12 §4.1.4.3). The old key retires.
    #[tracing::instrument(skip_all, fields(country = %country))]
    pub async fn rollover(
        &self,
        country: &str,
        key_spec: &str,
        validity_days: u32,
        key_usage_days: u32,
        requested_by: &str,
    ) -> Result<(CertRow, CertRow, CertRow)> {
        let country = domain::country(country)?;
        let now = OffsetDateTime::now_utc();
        let current = {
            let mut conn = self.ctx.db().acquire().await?;
            store::current_csca(&mut conn, &country).await?
        }
        .ok_or_else(|| {
            CscaError::FailedPrecondition(format!(
                "{country} has no CSCA to roll over: create one with CreateCsca"
            ))
        })?;
        Self::check_usable(&current, now, "roll over")?;
        let old_cert = parse_own(&current.certificate.der)?;
        let old_key = self.open(&current).await?;
        let default_spec = current
            .key_spec
            .clone()
            .unwrap_or_else(|| self.policy.default_key.clone());
        let spec = domain::key_spec(key_spec, &default_spec)?;
        let period = domain::csca_period(now, validity_days, key_usage_days, &self.policy)?;
        let subject = domain::subject_of(&old_cert);
        let dp = old_cert
            .crl_distribution_points
            .first()
            .cloned()
            .unwrap_or_else(|| {
                domain::crl_distribution_point(&self.policy.crl_distribution_point, &country)
            });
        let request = CertificateRequest {
            subject: subject.clone(),
            period,
            crl_distribution_point: dp.clone(),
            serial: None,
        };
        let _permit = self.keygen.acquire().await.map_err(internal)?;
        let key_id = Uuid::new_v4();
        let keys = self.keys.clone();
        let (pair, sealed, new_cert, link) = marty_runtime::cpu(move || -> Result<_> {
            let (pair, sealed) = keys.generate(key_id, spec)?;
            let new_cert = issue::make_csca(&request, &pair).map_err(internal)?;
            // The link lives as long as both keys' certificates do.
            let link_period = issue::Period {
                not_after: period.not_after.min(old_cert.not_after),
                ..period
            };
            let link = issue::make_link(
                &old_cert,
                &old_key,
                &subject,
                &new_cert,
                &subject,
                &link_period,
                &dp,
                None,
            )
            .map_err(internal)?;
            Ok((pair, sealed, new_cert, link))
        })
        .await
        .map_err(internal)??;

        let mut tx = self.begin().await?;
        store::lock_country(&mut tx, &country, true).await?;
        // Nobody rolled over meanwhile.
        match store::current_csca(&mut tx, &country).await? {
            Some(k) if k.sealed.key_id == current.sealed.key_id => {}
            _ => {
                return Err(CscaError::FailedPrecondition(format!(
                    "the CSCA of {country} changed while this rollover was prepared: try again"
                )));
            }
        }
        store::retire_key(&mut tx, current.sealed.key_id).await?;
        store::insert_key(
            &mut tx,
            NewKey {
                sealed: &sealed,
                key_spec: spec.to_string(),
                country: &country,
                key_usage_not_before: period.key_usage_not_before,
                key_usage_not_after: period.key_usage_not_after,
            },
        )
        .await?;
        let new_row = store::insert_certificate(
            &mut tx,
            NewCertificate {
                certificate: &new_cert,
                kind: CertKind::Csca,
                country: &country,
                key_id: Some(key_id),
                issuer_certificate_id: None,
                requested_by,
            },
        )
        .await?;
        let link_row = store::insert_certificate(
            &mut tx,
            NewCertificate {
                certificate: &link,
                kind: CertKind::Link,
                country: &country,
                key_id: Some(key_id),
                issuer_certificate_id: Some(current.certificate.id),
                requested_by,
            },
        )
        .await?;
        enqueue(
            &mut tx,
            &certificate_event("csca.certificate.issued", &new_row),
        )
        .await?;
        enqueue(
            &mut tx,
            &certificate_event("csca.certificate.issued", &link_row),
        )
        .await?;
        let key = CscaKey {
            sealed,
            key_spec: Some(spec.to_string()),
            retired_at: None,
            certificate: new_row.clone(),
        };
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key_id, Arc::new(pair));
        // Part 12 §4.1.5: CRLs are signed with the newest key.
        self.issue_crl_in(&mut tx, &key, now, requested_by).await?;
        tx.commit().await?;
        tracing::info!(new = %marty_icao::hex::encode(&new_row.serial), link = %marty_icao::hex::encode(&link_row.serial), "CSCA rolled over");
        Ok((new_row, link_row, current.certificate))
    }

    /// A Document Signer or Master List Signer certificate from a PKCS#10 request.
    #[tracing::instrument(skip_all, fields(country = %req.country, kind = req.kind.as_db()))]
    pub async fn issue(&self, req: IssueRequest) -> Result<(CertRow, CertRow)> {
        if req.csr_der.is_empty() {
            return Err(CscaError::InvalidArgument(
                "csr_der is empty: send a DER PKCS#10 certification request".into(),
            ));
        }
        let csr_der = req.csr_der.clone();
        let csr = marty_runtime::untrusted(move || marty_icao::csr::Csr::from_der(&csr_der))
            .await
            .map_err(internal)?
            .map_err(|e| CscaError::InvalidArgument(e.to_string()))?;
        let country = if req.country.trim().is_empty() {
            domain::country(csr.subject.country().unwrap_or_default())?
        } else {
            domain::country(&req.country)?
        };
        let outcome = self.issue_parsed(&req, csr, &country).await;
        // Decisions on well-formed requests are recorded, issued or not.
        match &outcome {
            Ok(_) => {}
            Err(CscaError::InvalidArgument(why)) | Err(CscaError::FailedPrecondition(why)) => {
                let mut conn = self.ctx.db().acquire().await?;
                store::record_request(&mut conn, &req.requester, req.kind, &req.csr_der, Err(why))
                    .await?;
            }
            Err(_) => {}
        }
        outcome
    }

    async fn issue_parsed(
        &self,
        req: &IssueRequest,
        csr: marty_icao::csr::Csr,
        country: &str,
    ) -> Result<(CertRow, CertRow)> {
        let csr = {
            let verified = csr.clone();
            marty_runtime::cpu(move || verified.verify())
                .await
                .map_err(internal)?
                .map_err(|e| CscaError::InvalidArgument(e.to_string()))?;
            csr
        };
        let key = marty_icao::algo::public_key(&csr.spki).map_err(|e| {
            CscaError::InvalidArgument(format!("the request's public key cannot be used: {e}"))
        })?;
        key_strong_enough(&key)?;
        let now = OffsetDateTime::now_utc();
        let mut tx = self.begin().await?;
        store::lock_country(&mut tx, country, false).await?;
        let issuer = match &req.issuer_serial {
            None => store::current_csca(&mut tx, country).await?.ok_or_else(|| {
                CscaError::FailedPrecondition(format!(
                    "{country} has no CSCA: create one with `marty csca create --country {country}`"
                ))
            })?,
            Some(serial) => {
                let rows = store::by_serial(&mut tx, serial, Some(country)).await?;
                let row = rows
                    .into_iter()
                    .find(|r| r.kind == CertKind::Csca)
                    .ok_or_else(|| {
                        CscaError::NotFound(format!(
                            "no CSCA certificate {} of {country}",
                            marty_icao::hex::encode(serial)
                        ))
                    })?;
                store::csca_by_certificate(&mut tx, row.id)
                    .await?
                    .ok_or_else(|| internal("CSCA certificate without its key"))?
            }
        };
        Self::check_usable(&issuer, now, "issue")?;
        let issuer_cert = parse_own(&issuer.certificate.der)?;
        let issuer_subject = domain::subject_of(&issuer_cert);
        let subject = domain::subject_from_csr(&csr.subject, country, &issuer_subject.mrz_country)?;
        let (policy_validity, policy_usage) = match req.kind {
            CertKind::DocumentSigner => (
                self.policy.dsc_validity_days,
                self.policy.dsc_key_usage_days,
            ),
            CertKind::MasterListSigner => (
                self.policy.ml_signer_validity_days,
                self.policy.ml_signer_key_usage_days,
            ),
            CertKind::Csca | CertKind::Link => {
                return Err(CscaError::InvalidArgument(
                    "CSCA and link certificates are never issued from a request".into(),
                ));
            }
        };
        let period = domain::issued_period(
            now,
            (req.validity_days, req.key_usage_days),
            (policy_validity, policy_usage),
            issuer.certificate.not_after,
        )?;
        let document_types: Vec<String> = if req.document_types.is_empty() {
            vec!["P".into()]
        } else {
            req.document_types.clone()
        };
        let request = CertificateRequest {
            subject,
            period,
            crl_distribution_point: issuer_cert
                .crl_distribution_points
                .first()
                .cloned()
                .unwrap_or_else(|| {
                    domain::crl_distribution_point(&self.policy.crl_distribution_point, country)
                }),
            serial: None,
        };
        let key = self.open(&issuer).await?;
        let kind = req.kind;
        let spki = csr.spki.clone();
        let cert = marty_runtime::cpu(move || {
            let types: Vec<&str> = document_types.iter().map(String::as_str).collect();
            match kind {
                CertKind::DocumentSigner => {
                    issue::make_dsc(&issuer_cert, &key, &issuer_subject, &request, &spki, &types)
                }
                _ => issue::make_ml_signer(&issuer_cert, &key, &issuer_subject, &request, &spki),
            }
        })
        .await
        .map_err(internal)?
        .map_err(|e| match e {
            issue::IssueError::Invalid(m) => CscaError::InvalidArgument(m),
            other => internal(other),
        })?;
        let row = store::insert_certificate(
            &mut tx,
            NewCertificate {
                certificate: &cert,
                kind,
                country,
                key_id: None,
                issuer_certificate_id: Some(issuer.certificate.id),
                requested_by: &req.requester,
            },
        )
        .await?;
        store::record_request(&mut tx, &req.requester, kind, &req.csr_der, Ok(row.id)).await?;
        enqueue(&mut tx, &certificate_event("csca.certificate.issued", &row)).await?;
        tx.commit().await?;
        tracing::info!(serial = %marty_icao::hex::encode(&row.serial), "certificate issued");
        Ok((row, issuer.certificate))
    }

    /// Records a revocation and, in the same transaction, issues the CRL that lists it.
    #[tracing::instrument(skip_all, fields(serial = %marty_icao::hex::encode(serial)))]
    pub async fn revoke(
        &self,
        serial: &[u8],
        country: Option<&str>,
        reason: i32,
        requested_by: &str,
    ) -> Result<(CertRow, Option<CrlRow>)> {
        let reason = domain::revocation_reason(reason)?;
        let country = country.map(domain::country).transpose()?;
        let found = {
            let mut conn = self.ctx.db().acquire().await?;
            self.find_one(&mut conn, serial, country.as_deref()).await?
        };
        let mut tx = self.begin().await?;
        store::lock_country(&mut tx, &found.country, true).await?;
        let revoked = store::revoke(&mut tx, found.id, reason.code, requested_by)
            .await?
            .ok_or_else(|| {
                CscaError::FailedPrecondition(format!(
                    "certificate {} is already revoked",
                    marty_icao::hex::encode(serial)
                ))
            })?;
        enqueue(
            &mut tx,
            &certificate_event("csca.certificate.revoked", &revoked),
        )
        .await?;
        let now = OffsetDateTime::now_utc();
        let crl = match store::current_csca(&mut tx, &revoked.country).await? {
            Some(signer) if signer.certificate.not_after > now => Some(
                self.issue_crl_in(&mut tx, &signer, now, requested_by)
                    .await?,
            ),
            _ => {
                tracing::warn!(country = %revoked.country, "no CSCA can sign a CRL: the revocation is recorded, the CRL waits for a new CSCA");
                None
            }
        };
        tx.commit().await?;
        tracing::info!(reason = reason.name, "certificate revoked");
        Ok((revoked, crl))
    }

    /// One certificate by serial (and country, when serials of several countries collide).
    pub async fn find_one(
        &self,
        conn: &mut PgConnection,
        serial: &[u8],
        country: Option<&str>,
    ) -> Result<CertRow> {
        let mut rows = store::by_serial(conn, serial, country).await?;
        match rows.len() {
            0 => Err(CscaError::NotFound(format!(
                "no certificate with serial {}{}",
                marty_icao::hex::encode(serial),
                country.map(|c| format!(" in {c}")).unwrap_or_default()
            ))),
            1 => Ok(rows.remove(0)),
            _ => Err(CscaError::InvalidArgument(format!(
                "serial {} exists in {}: name the country",
                marty_icao::hex::encode(serial),
                rows.iter()
                    .map(|r| r.country.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))),
        }
    }

    /// Signs and stores a CRL of `signer`'s country in the caller's transaction (which holds
    /// the country's lock), with its event.
    async fn issue_crl_in(
        &self,
        tx: &mut PgConnection,
        signer: &CscaKey,
        now: OffsetDateTime,
        requested_by: &str,
    ) -> Result<CrlRow> {
        let country = signer.certificate.country.clone();
        let revoked = store::revoked_for_crl(tx, &country, signer.certificate.id).await?;
        let number = store::latest_crl(tx, &country)
            .await?
            .map_or(1, |c| c.crl_number + 1);
        let key = self.open(signer).await?;
        let cert = parse_own(&signer.certificate.der)?;
        let this_update = domain::whole_seconds(now);
        let next_update = this_update + Duration::days(i64::from(self.policy.crl_validity_days));
        let entries = revoked.clone();
        let der = marty_runtime::cpu(move || {
            marty_icao::crl::build(
                &cert,
                &key.private,
                &key.signature_algorithm(),
                this_update,
                next_update,
                number,
                &entries,
            )
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let crl = CrlRow {
            country,
            crl_number: number,
            this_update,
            next_update,
            der,
        };
        store::insert_crl(tx, signer.sealed.key_id, &crl, requested_by).await?;
        enqueue(tx, &crl_event(&crl, &revoked)).await?;
        Ok(crl)
    }

    /// A CRL of `country` now.
    #[tracing::instrument(skip_all, fields(country = %country))]
    pub async fn issue_crl(&self, country: &str, requested_by: &str) -> Result<CrlRow> {
        let country = domain::country(country)?;
        let now = OffsetDateTime::now_utc();
        let mut tx = self.begin().await?;
        store::lock_country(&mut tx, &country, true).await?;
        let signer = store::current_csca(&mut tx, &country)
            .await?
            .ok_or_else(|| {
                CscaError::FailedPrecondition(format!("{country} has no CSCA to sign a CRL"))
            })?;
        if signer.certificate.not_after <= now {
            return Err(CscaError::FailedPrecondition(format!(
                "the CSCA of {country} has expired: it cannot sign CRLs"
            )));
        }
        let crl = self
            .issue_crl_in(&mut tx, &signer, now, requested_by)
            .await?;
        tx.commit().await?;
        Ok(crl)
    }

    /// The scheduler's pass: a new CRL for every country whose latest one reaches its
    /// nextUpdate within the policy's margin (or that has none). Several CSCA processes may
    /// run it: the country lock and the re-check inside it issue each CRL once.
    pub async fn renew_due_crls(&self) -> Result<usize> {
        let countries = {
            let mut conn = self.ctx.db().acquire().await?;
            store::countries(&mut conn).await?
        };
        let margin = Duration::days(i64::from(self.policy.crl_renew_before_days));
        let mut issued = 0;
        for country in countries {
            let now = OffsetDateTime::now_utc();
            let mut tx = self.begin().await?;
            store::lock_country(&mut tx, &country, true).await?;
            let due = match store::latest_crl(&mut tx, &country).await? {
                Some(crl) => crl.next_update - now <= margin,
                None => true,
            };
            if !due {
                continue;
            }
            let Some(signer) = store::current_csca(&mut tx, &country).await? else {
                continue;
            };
            if signer.certificate.not_after <= now {
                tracing::warn!(%country, "the CSCA has expired: no CRL can be issued");
                continue;
            }
            let crl = self.issue_crl_in(&mut tx, &signer, now, SCHEDULER).await?;
            tx.commit().await?;
            tracing::info!(%country, crl_number = crl.crl_number, "scheduled CRL issued");
            issued += 1;
        }
        Ok(issued)
    }

    pub async fn latest_crl(&self, country: &str) -> Result<CrlRow> {
        let country = domain::country(country)?;
        let mut conn = self.ctx.db().acquire().await?;
        store::latest_crl(&mut conn, &country)
            .await?
            .ok_or_else(|| CscaError::NotFound(format!("{country} has no CRL yet")))
    }

    /// The current CSCA certificate of `country`.
    pub async fn current(&self, country: &str) -> Result<CertRow> {
        let country = domain::country(country)?;
        let mut conn = self.ctx.db().acquire().await?;
        store::current_csca(&mut conn, &country)
            .await?
            .map(|k| k.certificate)
            .ok_or_else(|| CscaError::NotFound(format!("{country} has no CSCA")))
    }

    pub async fn get(
        &self,
        serial: Option<&[u8]>,
        country: Option<&str>,
        fingerprint: Option<&[u8]>,
    ) -> Result<CertRow> {
        let mut conn = self.ctx.db().acquire().await?;
        match (serial, fingerprint) {
            (_, Some(fp)) => store::by_fingerprint(&mut conn, fp).await?.ok_or_else(|| {
                CscaError::NotFound(format!(
                    "no certificate with SHA-256 fingerprint {}",
                    marty_icao::hex::encode(fp)
                ))
            }),
            (Some(serial), None) => {
                let country = country.map(domain::country).transpose()?;
                self.find_one(&mut conn, serial, country.as_deref()).await
            }
            (None, None) => Err(CscaError::InvalidArgument(
                "name the certificate by serial_hex (and country) or fingerprint_sha256".into(),
            )),
        }
    }

    pub async fn list(&self, at: OffsetDateTime, filter: &ListFilter) -> Result<Vec<CertRow>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::list(&mut conn, at, filter).await?)
    }

    pub async fn summarize(
        &self,
        at: OffsetDateTime,
        expiring_before: OffsetDateTime,
    ) -> Result<Vec<store::CertSummary>> {
        let mut conn = self.ctx.db().acquire().await?;
        Ok(store::summarize(&mut conn, at, expiring_before).await?)
    }
}
