//! The CSCA's rows and the SQL that reads and writes them. Every function takes the caller's
//! connection or transaction: the operations in [`crate::service`] decide what commits
//! together.

use marty_keys::SealedKey;
use marty_keys::table::SEALED_COLUMNS;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::CertKind;

/// A certificate as stored.
#[derive(Debug, Clone)]
pub struct CertRow {
    pub id: Uuid,
    pub kind: CertKind,
    pub country: String,
    pub serial: Vec<u8>,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub subject_key_identifier: Option<Vec<u8>>,
    pub authority_key_identifier: Option<Vec<u8>>,
    pub key_id: Option<Uuid>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key_usage_not_before: Option<OffsetDateTime>,
    pub key_usage_not_after: Option<OffsetDateTime>,
    pub der: Vec<u8>,
    pub fingerprint: Vec<u8>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revocation_reason: Option<i16>,
    pub created_at: OffsetDateTime,
    pub issuer_certificate_id: Option<Uuid>,
}

const CERT_COLUMNS: &str = "id, kind, country_code, serial_number, subject_dn, issuer_dn, subject_key_identifier, authority_key_identifier, key_id, not_before, not_after, private_key_usage_not_before, private_key_usage_not_after, der, fingerprint_sha256, revoked_at, revocation_reason, created_at, issuer_certificate_id";

fn cert_row(row: &PgRow) -> Result<CertRow, sqlx::Error> {
    Ok(CertRow {
        id: row.try_get("id")?,
        kind: CertKind::from_db(row.try_get::<&str, _>("kind")?),
        country: row.try_get::<String, _>("country_code")?,
        serial: row.try_get("serial_number")?,
        subject_dn: row.try_get("subject_dn")?,
        issuer_dn: row.try_get("issuer_dn")?,
        subject_key_identifier: row.try_get("subject_key_identifier")?,
        authority_key_identifier: row.try_get("authority_key_identifier")?,
        key_id: row.try_get("key_id")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        key_usage_not_before: row.try_get("private_key_usage_not_before")?,
        key_usage_not_after: row.try_get("private_key_usage_not_after")?,
        der: row.try_get("der")?,
        fingerprint: row.try_get("fingerprint_sha256")?,
        revoked_at: row.try_get("revoked_at")?,
        revocation_reason: row.try_get("revocation_reason")?,
        created_at: row.try_get("created_at")?,
        issuer_certificate_id: row.try_get("issuer_certificate_id")?,
    })
}

/// A CSCA key with the certificate it is the subject of.
#[derive(Debug, Clone)]
pub struct CscaKey {
    pub sealed: SealedKey,
    pub key_spec: Option<String>,
    pub retired_at: Option<OffsetDateTime>,
    pub certificate: CertRow,
}

/// Serialises changes to one country's CSCA (create, rollover, revocation, CRLs): exclusive
/// for those, shared for issuing, so that no certificate is issued by a key a concurrent
/// rollover retires.
pub async fn lock_country(
    conn: &mut PgConnection,
    country: &str,
    exclusive: bool,
) -> Result<(), sqlx::Error> {
    let sql = if exclusive {
        "select pg_advisory_xact_lock(hashtext('marty_csca_country'), hashtext($1))"
    } else {
        "select pg_advisory_xact_lock_shared(hashtext('marty_csca_country'), hashtext($1))"
    };
    sqlx::query(sql).bind(country).execute(conn).await?;
    Ok(())
}

fn csca_key(row: &PgRow) -> Result<CscaKey, sqlx::Error> {
    Ok(CscaKey {
        sealed: SealedKey::from_row(row)?,
        key_spec: row.try_get("key_spec")?,
        retired_at: row.try_get("retired_at")?,
        certificate: CertRow {
            id: row.try_get("cert_id")?,
            kind: CertKind::Csca,
            country: row.try_get::<String, _>("country_code")?,
            serial: row.try_get("serial_number")?,
            subject_dn: row.try_get("subject_dn")?,
            issuer_dn: row.try_get("issuer_dn")?,
            subject_key_identifier: row.try_get("subject_key_identifier")?,
            authority_key_identifier: row.try_get("authority_key_identifier")?,
            key_id: Some(row.try_get("id")?),
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
            key_usage_not_before: row.try_get("private_key_usage_not_before")?,
            key_usage_not_after: row.try_get("private_key_usage_not_after")?,
            der: row.try_get("der")?,
            fingerprint: row.try_get("fingerprint_sha256")?,
            revoked_at: row.try_get("revoked_at")?,
            revocation_reason: row.try_get("revocation_reason")?,
            created_at: row.try_get("cert_created_at")?,
            issuer_certificate_id: None,
        },
    })
}

fn csca_key_query(filter: &str) -> String {
    let sealed: Vec<String> = SEALED_COLUMNS
        .split(", ")
        .map(|c| format!("k.{c}"))
        .collect();
    format!(
        "select {}, k.key_spec, k.retired_at,
                c.id as cert_id, c.country_code, c.serial_number, c.subject_dn, c.issuer_dn,
                c.subject_key_identifier, c.authority_key_identifier, c.not_before, c.not_after,
                c.private_key_usage_not_before, c.private_key_usage_not_after, c.der,
                c.fingerprint_sha256, c.revoked_at, c.revocation_reason, c.created_at as cert_created_at
           from csca_keys k
           join certificates c on c.key_id = k.id and c.kind = 'csca'
          where {filter}",
        sealed.join(", ")
    )
}

/// The country's newest CSCA key that is not retired, with its certificate.
pub async fn current_csca(
    conn: &mut PgConnection,
    country: &str,
) -> Result<Option<CscaKey>, sqlx::Error> {
    let sql = csca_key_query(
        "c.country_code = $1 and k.retired_at is null order by k.created_at desc limit 1",
    );
    sqlx::query(&sql)
        .bind(country)
        .fetch_optional(conn)
        .await?
        .map(|r| csca_key(&r))
        .transpose()
}

/// The CSCA key whose self-signed certificate is `certificate_id`.
pub async fn csca_by_certificate(
    conn: &mut PgConnection,
    certificate_id: Uuid,
) -> Result<Option<CscaKey>, sqlx::Error> {
    let sql = csca_key_query("c.id = $1");
    sqlx::query(&sql)
        .bind(certificate_id)
        .fetch_optional(conn)
        .await?
        .map(|r| csca_key(&r))
        .transpose()
}

/// Countries that have a current (not retired) CSCA key.
pub async fn countries(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select distinct country_code::text from csca_keys where retired_at is null and country_code is not null order by 1",
    )
    .fetch_all(conn)
    .await
}

/// What is stored about a new CSCA key beside its sealed form.
#[derive(Debug)]
pub struct NewKey<'a> {
    pub sealed: &'a SealedKey,
    pub key_spec: String,
    pub country: &'a str,
    pub key_usage_not_before: OffsetDateTime,
    pub key_usage_not_after: OffsetDateTime,
}

pub async fn insert_key(conn: &mut PgConnection, key: NewKey<'_>) -> Result<(), sqlx::Error> {
    let spec: marty_icao::issue::KeySpec = key
        .key_spec
        .parse()
        .map_err(|e: String| sqlx::Error::Protocol(e))?;
    let (algorithm, curve_or_size) = match spec {
        marty_icao::issue::KeySpec::Ec { curve, .. } => ("ecdsa", curve.name().to_owned()),
        marty_icao::issue::KeySpec::Rsa { bits } => ("rsa", bits.to_string()),
        marty_icao::issue::KeySpec::RsaPss { bits } => ("rsassa-pss", bits.to_string()),
    };
    let s = key.sealed;
    let sql = format!(
        "insert into csca_keys ({SEALED_COLUMNS}, key_label, algorithm, curve_or_size, key_spec,
                country_code, private_key_usage_not_before, private_key_usage_not_after)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    );
    marty_keys::table::bind_sealed(sqlx::query(&sql), s)
        .bind(format!("csca-{}-{}", key.country, s.key_id))
        .bind(algorithm)
        .bind(curve_or_size)
        .bind(&key.key_spec)
        .bind(key.country)
        .bind(key.key_usage_not_before)
        .bind(key.key_usage_not_after)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn retire_key(conn: &mut PgConnection, key_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("update csca_keys set retired_at = now() where id = $1 and retired_at is null")
        .bind(key_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// What is stored about a certificate beside its DER.
#[derive(Debug)]
pub struct NewCertificate<'a> {
    pub certificate: &'a marty_icao::cert::Certificate,
    pub kind: CertKind,
    pub country: &'a str,
    pub key_id: Option<Uuid>,
    pub issuer_certificate_id: Option<Uuid>,
    /// Who asked for it (the caller's identity).
    pub requested_by: &'a str,
}

pub async fn insert_certificate(
    conn: &mut PgConnection,
    new: NewCertificate<'_>,
) -> Result<CertRow, sqlx::Error> {
    let c = new.certificate;
    let (pkup_nb, pkup_na) = c.private_key_usage_period.unwrap_or((None, None));
    let sql = format!(
        "insert into certificates (kind, country_code, serial_number, subject_dn, issuer_dn,
                subject_key_identifier, authority_key_identifier, key_id, not_before, not_after,
                private_key_usage_not_before, private_key_usage_not_after, der,
                fingerprint_sha256, issuer_certificate_id, document_types, requested_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         returning {CERT_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(new.kind.as_db())
        .bind(new.country)
        .bind(&c.serial)
        .bind(c.subject.to_string())
        .bind(c.issuer.to_string())
        .bind(&c.subject_key_id)
        .bind(&c.authority_key_id)
        .bind(new.key_id)
        .bind(c.not_before)
        .bind(c.not_after)
        .bind(pkup_nb)
        .bind(pkup_na)
        .bind(&c.raw)
        .bind(c.fingerprint_sha256())
        .bind(new.issuer_certificate_id)
        .bind(c.document_types.clone())
        .bind(new.requested_by)
        .fetch_one(conn)
        .await?;
    cert_row(&row)
}

/// Certificates with `serial` (one per country at most), optionally of one country.
pub async fn by_serial(
    conn: &mut PgConnection,
    serial: &[u8],
    country: Option<&str>,
) -> Result<Vec<CertRow>, sqlx::Error> {
    let sql = format!(
        "select {CERT_COLUMNS} from certificates where serial_number = $1 and ($2::text is null or country_code = $2) order by country_code"
    );
    let rows = sqlx::query(&sql)
        .bind(serial)
        .bind(country)
        .fetch_all(conn)
        .await?;
    rows.iter().map(cert_row).collect()
}

pub async fn by_fingerprint(
    conn: &mut PgConnection,
    fingerprint: &[u8],
) -> Result<Option<CertRow>, sqlx::Error> {
    let sql = format!("select {CERT_COLUMNS} from certificates where fingerprint_sha256 = $1");
    sqlx::query(&sql)
        .bind(fingerprint)
        .fetch_optional(conn)
        .await?
        .map(|r| cert_row(&r))
        .transpose()
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<CertRow>, sqlx::Error> {
    let sql = format!("select {CERT_COLUMNS} from certificates where id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| cert_row(&r))
        .transpose()
}

/// Marks a certificate revoked; `false` if it already was (the row is locked first).
pub async fn revoke(
    conn: &mut PgConnection,
    id: Uuid,
    reason: i16,
    revoked_by: &str,
) -> Result<Option<CertRow>, sqlx::Error> {
    let sql = format!(
        "update certificates set status = 'revoked', revoked_at = now(), revocation_reason = $2,
                revoked_by = $3
          where id = $1 and status <> 'revoked'
          returning {CERT_COLUMNS}"
    );
    sqlx::query(&sql)
        .bind(id)
        .bind(reason)
        .bind(revoked_by)
        .fetch_optional(conn)
        .await?
        .map(|r| cert_row(&r))
        .transpose()
}

/// Filters of a listing; statuses are evaluated at `at`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub country: Option<String>,
    pub kind: Option<CertKind>,
    /// valid, not_yet_valid, expired, revoked
    pub status: Option<&'static str>,
    pub after: Option<(OffsetDateTime, Uuid)>,
    pub limit: i64,
    /// Only certificates not revoked whose validity ends before this.
    pub expiring_before: Option<OffsetDateTime>,
}

pub async fn list(
    conn: &mut PgConnection,
    at: OffsetDateTime,
    f: &ListFilter,
) -> Result<Vec<CertRow>, sqlx::Error> {
    let sql = format!(
        "select {CERT_COLUMNS} from certificates
          where ($1::text is null or country_code = $1)
            and ($2::text is null or kind = $2)
            and ($3::text is null
                 or ($3 = 'revoked' and status = 'revoked' and revoked_at <= $4)
                 or ($3 = 'not_yet_valid' and not (status = 'revoked' and revoked_at <= $4) and not_before > $4)
                 or ($3 = 'expired' and not (status = 'revoked' and revoked_at <= $4) and not_after < $4)
                 or ($3 = 'valid' and not (status = 'revoked' and revoked_at <= $4) and not_before <= $4 and not_after >= $4))
            and ($5::timestamptz is null or (created_at, id) > ($5, $6))
            and ($8::timestamptz is null or (status <> 'revoked' and not_after >= $4 and not_after <= $8))
          order by {}
          limit $7",
        if f.expiring_before.is_some() {
            "not_after, id"
        } else {
            "created_at, id"
        }
    );
    let (after_t, after_id) = match f.after {
        Some((t, id)) => (Some(t), Some(id)),
        None => (None, None),
    };
    let rows = sqlx::query(&sql)
        .bind(f.country.as_deref())
        .bind(f.kind.map(CertKind::as_db))
        .bind(f.status)
        .bind(at)
        .bind(after_t)
        .bind(after_id)
        .bind(f.limit)
        .bind(f.expiring_before)
        .fetch_all(conn)
        .await?;
    rows.iter().map(cert_row).collect()
}

/// One country's certificates of one kind, counted at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub country: String,
    pub kind: CertKind,
    pub total: i64,
    pub valid: i64,
    pub not_yet_valid: i64,
    pub expired: i64,
    pub revoked: i64,
    pub expiring: i64,
    pub next_expiry: Option<OffsetDateTime>,
}

/// Counts per country and kind at `at`, with the statuses [`list`] filters by; "expiring" is
/// valid and ending no later than `expiring_before`.
///
/// The database puts each certificate in exactly one bucket (one CASE per row, counted per
/// country, kind and bucket) and the buckets are added up here: cheaper per row than a
/// filtered aggregate per status.
pub async fn summarize(
    conn: &mut PgConnection,
    at: OffsetDateTime,
    expiring_before: OffsetDateTime,
) -> Result<Vec<CertSummary>, sqlx::Error> {
    let rows = sqlx::query(
        "select country_code::text as country, kind,
                case when status = 'revoked' and revoked_at <= $1 then 'revoked'
                     when not_before > $1 then 'not_yet_valid'
                     when not_after < $1 then 'expired'
                     when not_after <= $2 then 'expiring'
                     else 'valid' end as bucket,
                count(*) as n, min(not_after) as soonest
           from certificates
          group by country_code, kind, bucket
          order by country_code, kind",
    )
    .bind(at)
    .bind(expiring_before)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<CertSummary> = Vec::new();
    for row in &rows {
        let country: String = row.try_get("country")?;
        let kind = CertKind::from_db(row.try_get::<&str, _>("kind")?);
        let bucket: &str = row.try_get("bucket")?;
        let n: i64 = row.try_get("n")?;
        let soonest: OffsetDateTime = row.try_get("soonest")?;
        let summary = match out.last_mut() {
            Some(s) if s.country == country && s.kind == kind => s,
            _ => {
                out.push(CertSummary {
                    country,
                    kind,
                    total: 0,
                    valid: 0,
                    not_yet_valid: 0,
                    expired: 0,
                    revoked: 0,
                    expiring: 0,
                    next_expiry: None,
                });
                out.last_mut().expect("just pushed")
            }
        };
        summary.total += n;
        match bucket {
            "revoked" => summary.revoked += n,
            "expired" => summary.expired += n,
            // Neither revoked nor expired: these count for the next expiry.
            live => {
                match live {
                    "not_yet_valid" => summary.not_yet_valid += n,
                    "expiring" => {
                        summary.valid += n;
                        summary.expiring += n;
                    }
                    _ => summary.valid += n,
                }
                summary.next_expiry = Some(summary.next_expiry.map_or(soonest, |t| t.min(soonest)));
            }
        }
    }
    Ok(out)
}

/// A CRL as stored.
#[derive(Debug, Clone)]
pub struct CrlRow {
    pub country: String,
    pub crl_number: u64,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub der: Vec<u8>,
}

fn crl_row(row: &PgRow) -> Result<CrlRow, sqlx::Error> {
    let number: String = row.try_get("crl_number")?;
    Ok(CrlRow {
        country: row.try_get("country_code")?,
        crl_number: number
            .parse()
            .map_err(|_| sqlx::Error::Protocol(format!("CRL number {number} out of range")))?,
        this_update: row.try_get("this_update")?,
        next_update: row.try_get("next_update")?,
        der: row.try_get("der")?,
    })
}

pub async fn latest_crl(
    conn: &mut PgConnection,
    country: &str,
) -> Result<Option<CrlRow>, sqlx::Error> {
    sqlx::query(
        "select country_code::text, crl_number::text, this_update, next_update, der
           from crls where country_code = $1 order by crl_number desc limit 1",
    )
    .bind(country)
    .fetch_optional(conn)
    .await?
    .map(|r| crl_row(&r))
    .transpose()
}

/// The serials and revocation times a country's CRL lists: every revoked certificate of the
/// country but the CRL signer's own.
pub async fn revoked_for_crl(
    conn: &mut PgConnection,
    country: &str,
    signer_certificate: Uuid,
) -> Result<Vec<(Vec<u8>, OffsetDateTime)>, sqlx::Error> {
    sqlx::query_as(
        "select serial_number, revoked_at from certificates
          where country_code = $1 and status = 'revoked' and id <> $2
          order by revoked_at, serial_number",
    )
    .bind(country)
    .bind(signer_certificate)
    .fetch_all(conn)
    .await
}

pub async fn insert_crl(
    conn: &mut PgConnection,
    issuer_key: Uuid,
    crl: &CrlRow,
    requested_by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into crls (country_code, issuer_key_id, crl_number, this_update, next_update, der, requested_by)
         values ($1, $2, $3::numeric, $4, $5, $6, $7)",
    )
    .bind(&crl.country)
    .bind(issuer_key)
    .bind(crl.crl_number.to_string())
    .bind(crl.this_update)
    .bind(crl.next_update)
    .bind(&crl.der)
    .bind(requested_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the decision on a certification request.
pub async fn record_request(
    conn: &mut PgConnection,
    requester: &str,
    kind: CertKind,
    csr_der: &[u8],
    outcome: Result<Uuid, &str>,
) -> Result<(), sqlx::Error> {
    // A rejected request keeps at most its first 4 KiB (a real CSR is smaller): enough to
    // diagnose, and refusing requests cannot be turned into filling the disk.
    const REJECTED_KEPT: usize = 4096;
    let (status, certificate, reason, csr_der) = match outcome {
        Ok(id) => ("issued", Some(id), None, csr_der),
        Err(why) => (
            "rejected",
            None,
            Some(why.chars().take(1000).collect::<String>()),
            &csr_der[..csr_der.len().min(REJECTED_KEPT)],
        ),
    };
    sqlx::query(
        "insert into certificate_requests (requester, kind, csr_der, status, certificate_id, rejection_reason, decided_at)
         values ($1, $2, $3, $4, $5, $6, now())",
    )
    .bind(requester)
    .bind(kind.as_db())
    .bind(csr_der)
    .bind(status)
    .bind(certificate)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}
