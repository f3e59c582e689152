//! Publishing: the PKD signs an ICAO master list (Doc 9303 Part 12 §5.3) of the CSCA and link
//! certificates it trusts, with a Master List Signer key of its own.
//!
//! The key is generated here, certified by this platform's CSCA from the PKD's CSR (profile
//! MASTER_LIST_SIGNER) and stored only once certified, sealed under the PKD's KEK like every
//! other private key of the platform. It is reused while its private key usage period has more
//! than [`RENEW_BEFORE`] left and neither it nor the CSCA that issued it is revoked.
//!
//! Before a list is stored or returned it is verified as a receiving State would verify it:
//! CMS signature, signer chain to the issuing CSCA, content. A list that fails is an internal
//! error, never a publication.

use marty_icao::algo::{self, DigestAlgorithm};
use marty_icao::cert::Certificate;
use marty_icao::issue::{KeyPair, KeySpec};
use marty_icao::masterlist::MasterList;
use marty_icao::name::Name;
use marty_icao::trust::TrustStore;
use marty_keys::SealedKey;
use marty_keys::table::SEALED_COLUMNS;
use marty_proto::csca::v1 as csca_pb;
use sqlx::{PgConnection, Row};
use time::{Duration, OffsetDateTime};

use crate::error::{PkdError, Result, internal};
use crate::service::Pkd;
use crate::store;

/// The Master List Signer key's algorithm: P-256 with named parameters, which every receiving
/// State's verifier reads.
const KEY_SPEC: &str = "ec:P-256:named";

/// A Master List Signer is replaced when less than this is left of its key usage period.
const RENEW_BEFORE: Duration = Duration::days(7);

/// A published master list.
#[derive(Debug, Clone)]
pub struct Published {
    pub der: Vec<u8>,
    pub fingerprint: Vec<u8>,
    pub certificate_count: u32,
    pub countries: Vec<String>,
    pub signer: Certificate,
    pub csca: Certificate,
    pub signing_time: OffsetDateTime,
}

/// A usable Master List Signer: its certificate, its issuer, its key.
struct Signer {
    certificate: Certificate,
    csca: Certificate,
    key: KeyPair,
}

const KEY_TABLE: &str = "master_list_signer_keys";

impl Pkd {
    /// Re-wraps Master List Signer keys sealed under a previous KEK (a KEK rotation).
    pub async fn at_start(&self) -> anyhow::Result<()> {
        let keys = self.ctx().keys();
        let mut tx = self.ctx().db().begin().await?;
        let n = marty_keys::table::rewrap_table(&mut tx, keys.as_ref(), KEY_TABLE).await?;
        tx.commit().await?;
        if n > 0 {
            tracing::info!(
                keys = n,
                "Master List Signer keys re-wrapped under the current KEK"
            );
        }
        Ok(())
    }

    /// Signs, stores and announces a master list of every CSCA and link certificate the PKD
    /// trusts (not revoked), issued by `country` (this platform's CSCA country).
    #[tracing::instrument(skip_all, fields(country = %country))]
    pub async fn export_master_list(&self, country: &str) -> Result<Published> {
        let country = self.issuing_country(country).await?;
        let job = store::start_job(
            &mut *self.ctx().db().acquire().await?,
            "publish_master_list",
            &format!("export:{country}"),
            0,
        )
        .await?;
        let result = self.export_in(&country).await;
        let mut conn = self.ctx().db().acquire().await?;
        match &result {
            Ok(p) => store::finish_job(&mut conn, job, p.certificate_count as i32, None).await?,
            Err(e) => store::finish_job(&mut conn, job, 0, Some(&e.to_string())).await?,
        }
        result
    }

    /// The country whose master list this is: the one asked for, which must be a country this
    /// platform's CSCA serves, or the only such country.
    async fn issuing_country(&self, requested: &str) -> Result<String> {
        let own = store::local_countries(&mut *self.ctx().db().acquire().await?).await?;
        let requested = requested.trim().to_ascii_uppercase();
        if requested.is_empty() {
            return match own.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(PkdError::FailedPrecondition(
                    "the PKD knows no CSCA of this platform yet: create one (marty csca create) and let its event reach the PKD".into(),
                )),
                many => Err(PkdError::InvalidArgument(format!(
                    "country: this platform's CSCA serves {}; name the issuing State",
                    many.join(", ")
                ))),
            };
        }
        if own.contains(&requested) {
            Ok(requested)
        } else {
            Err(PkdError::FailedPrecondition(format!(
                "{} is not a country this platform's CSCA serves (known: {})",
                marty_icao::text::printable(&requested),
                if own.is_empty() {
                    "none yet".to_owned()
                } else {
                    own.join(", ")
                }
            )))
        }
    }

    async fn export_in(&self, country: &str) -> Result<Published> {
        let signer = self.master_list_signer(country).await?;
        let mut conn = self.ctx().db().acquire().await?;
        let (certificates, _) = store::trust_material(&mut conn, None, None).await?;
        drop(conn);
        let ders: Vec<Vec<u8>> = certificates
            .iter()
            .filter(|c| !c.revoked)
            .map(|c| c.der.clone())
            .collect();
        let now = OffsetDateTime::now_utc();
        let (der, count, countries, signer) = marty_runtime::cpu(move || -> Result<_> {
            let certs = ders
                .iter()
                .map(|d| Certificate::from_der(d))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(internal)?;
            let digest = DigestAlgorithm::Sha256;
            let alg =
                algo::default_signature_algorithm(&signer.key.private, digest, signer.key.pss);
            let der = marty_icao::masterlist::build(
                &certs,
                &signer.certificate,
                &signer.csca,
                &signer.key.private,
                digest,
                alg,
                now,
            )
            .map_err(internal)?;
            // Verified as a receiving State would, before anyone sees it.
            let parsed = MasterList::parse(&der).map_err(internal)?;
            let check = parsed.verify(&TrustStore::new(vec![signer.csca.clone()], vec![]), now);
            if !check.valid {
                return Err(internal(format!(
                    "the master list just signed does not verify: {}",
                    check.errors.join("; ")
                )));
            }
            Ok((der, parsed.certificates.len(), parsed.countries(), signer))
        })
        .await
        .map_err(internal)??;
        let fingerprint = DigestAlgorithm::Sha256.digest(&der);
        let mut tx = self.ctx().db().begin().await?;
        let list_id = store::insert_master_list(
            &mut tx,
            &store::NewMasterList {
                direction: "published",
                issuer_country: country,
                signer_subject_dn: Some(signer.certificate.subject.to_string()),
                signing_time: Some(now),
                certificate_count: count as i32,
                der: &der,
                fingerprint: &fingerprint,
                report: serde_json::json!({ "countries": countries }),
            },
        )
        .await?;
        if list_id.is_some() {
            marty_events::outbox::enqueue(
                &mut tx,
                crate::SERVICE,
                &marty_events::NewEvent::new(
                    "pkd.masterlist.published",
                    format!("masterlist:{country}"),
                    serde_json::json!({
                        "country": country,
                        "certificate_count": count,
                        "countries": countries,
                        "fingerprint_sha256": marty_icao::hex::encode(&fingerprint),
                        "signer_subject": signer.certificate.subject.to_string(),
                        "signing_time": marty_icao::cert::rfc3339(now),
                    }),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(certificates = count, "master list published");
        Ok(Published {
            der,
            fingerprint,
            certificate_count: count as u32,
            countries,
            signer: signer.certificate,
            csca: signer.csca,
            signing_time: now,
        })
    }

    /// The current Master List Signer of `country`, certified anew when there is none usable.
    async fn master_list_signer(&self, country: &str) -> Result<Signer> {
        let _one_at_a_time = self.certifying().lock().await;
        let now = OffsetDateTime::now_utc();
        let mut conn = self.ctx().db().acquire().await?;
        if let Some((sealed, cert_der, csca_der)) = current_key(&mut conn, country, now).await? {
            // Neither the signer's certificate nor its CSCA may be revoked.
            let csca_fp = DigestAlgorithm::Sha256.digest(&csca_der);
            let signer_fp = DigestAlgorithm::Sha256.digest(&cert_der);
            let revoked = store::is_revoked(&mut conn, &csca_fp).await?
                || store::is_revoked(&mut conn, &signer_fp).await?;
            if !revoked {
                let keys = self.ctx().keys();
                return marty_runtime::cpu(move || -> Result<Signer> {
                    let certificate = Certificate::from_der(&cert_der).map_err(internal)?;
                    let csca = Certificate::from_der(&csca_der).map_err(internal)?;
                    let key = keys.open(&sealed).map_err(internal)?;
                    Ok(Signer {
                        certificate,
                        csca,
                        key,
                    })
                })
                .await
                .map_err(internal)?;
            }
        }
        drop(conn);
        self.certify_new_signer(country).await
    }

    async fn certify_new_signer(&self, country: &str) -> Result<Signer> {
        let key_id = uuid::Uuid::new_v4();
        let keys = self.ctx().keys();
        let subject = Name::build(&[
            (marty_icao::oid::COUNTRY, country),
            (
                marty_icao::oid::COMMON_NAME,
                &format!(
                    "Master List Signer {country} {}",
                    OffsetDateTime::now_utc().unix_timestamp()
                ),
            ),
        ]);
        let spec: KeySpec = KEY_SPEC.parse().map_err(internal)?;
        let (pair, sealed, csr) = marty_runtime::cpu(move || -> Result<_> {
            let (pair, sealed) = keys.generate(key_id, spec).map_err(internal)?;
            let csr = marty_icao::csr::build(&subject, &pair).map_err(internal)?;
            Ok((pair, sealed, csr))
        })
        .await
        .map_err(internal)??;
        let channel = self
            .ctx()
            .peers()
            .channel(marty_config::Service::Csca)
            .map_err(PkdError::Unavailable)?;
        let response = csca_pb::csca_service_client::CscaServiceClient::new(channel)
            .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES)
            .issue_certificate(csca_pb::IssueCertificateRequest {
                csr_der: csr,
                profile: csca_pb::Profile::MasterListSigner as i32,
                country: country.to_owned(),
                ..Default::default()
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                    PkdError::Unavailable(format!("the CSCA is unreachable: {}", s.message()))
                }
                _ => PkdError::FailedPrecondition(format!(
                    "the CSCA refused the Master List Signer request: {}",
                    s.message()
                )),
            })?
            .into_inner();
        let (Some(cert), Some(issuer)) = (response.certificate, response.issuer) else {
            return Err(internal(
                "the CSCA's answer lacks the certificate or its issuer",
            ));
        };
        let (cert_der, csca_der) = (cert.der, issuer.der);
        let (certificate, csca, pair) =
            marty_runtime::untrusted(move || -> std::result::Result<_, String> {
                let certificate = Certificate::from_der(&cert_der).map_err(|e| e.to_string())?;
                let csca = Certificate::from_der(&csca_der).map_err(|e| e.to_string())?;
                if !pair.matches(&certificate) {
                    return Err("the CSCA returned a certificate for another key".into());
                }
                marty_icao::issue::require_csca(&csca, "CSCA").map_err(|e| e.to_string())?;
                certificate.verify_signature_with(&csca.spki).map_err(|e| {
                    format!("the certificate's signature does not verify with the CSCA's key: {e}")
                })?;
                if certificate.kind() != marty_icao::cert::CertificateKind::MasterListSigner {
                    return Err(
                        "the CSCA returned a certificate that is not a Master List Signer".into(),
                    );
                }
                Ok((certificate, csca, pair))
            })
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let key_usage_not_after = certificate
            .private_key_usage_period
            .and_then(|(_, end)| end)
            .unwrap_or(certificate.not_after)
            .min(certificate.not_after);
        let mut conn = self.ctx().db().acquire().await?;
        insert_key(
            &mut conn,
            &sealed,
            country,
            &certificate,
            &csca,
            key_usage_not_after,
        )
        .await?;
        tracing::info!(subject = %certificate.subject, "Master List Signer certified");
        Ok(Signer {
            certificate,
            csca,
            key: pair,
        })
    }
}

/// The newest key of `country` whose usage period has more than [`RENEW_BEFORE`] left.
async fn current_key(
    conn: &mut PgConnection,
    country: &str,
    now: OffsetDateTime,
) -> Result<Option<(SealedKey, Vec<u8>, Vec<u8>)>> {
    let row = sqlx::query(&format!(
        "select {SEALED_COLUMNS}, certificate_der, csca_der from {KEY_TABLE}
          where country_code = $1 and key_usage_not_after > $2
          order by created_at desc limit 1"
    ))
    .bind(country)
    .bind(now + RENEW_BEFORE)
    .fetch_optional(conn)
    .await?;
    row.map(|r| -> Result<_> {
        Ok((
            SealedKey::from_row(&r)?,
            r.try_get("certificate_der")?,
            r.try_get("csca_der")?,
        ))
    })
    .transpose()
}

async fn insert_key(
    conn: &mut PgConnection,
    s: &SealedKey,
    country: &str,
    certificate: &Certificate,
    csca: &Certificate,
    key_usage_not_after: OffsetDateTime,
) -> Result<()> {
    let sql = format!(
        "insert into {KEY_TABLE} ({SEALED_COLUMNS}, country_code, certificate_der, csca_der,
             not_after, key_usage_not_after)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    );
    marty_keys::table::bind_sealed(sqlx::query(&sql), s)
        .bind(country)
        .bind(&certificate.raw)
        .bind(&csca.raw)
        .bind(certificate.not_after)
        .bind(key_usage_not_after)
        .execute(conn)
        .await?;
    Ok(())
}
