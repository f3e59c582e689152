//! The Passport Engine's rows: `passports`, `validation_requests`, `trust_cache`.
//! Every function takes the caller's connection or transaction.

use sqlx::{PgConnection, Row};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// A passport to store.
#[derive(Debug, Clone)]
pub struct NewPassport<'a> {
    pub document_number: &'a str,
    pub document_type: &'a str,
    pub issuing_state: &'a str,
    pub primary: &'a str,
    pub secondary: &'a str,
    pub nationality: &'a str,
    pub date_of_birth: &'a str,
    pub sex: char,
    pub date_of_expiry: Date,
    pub mrz: &'a str,
    pub dg1: &'a [u8],
    pub dg2: &'a [u8],
    pub ef_com: &'a [u8],
    pub ef_sod: &'a [u8],
    pub signer_fingerprint: &'a [u8],
}

/// A stored passport.
#[derive(Debug, Clone)]
pub struct PassportRow {
    pub id: Uuid,
    pub document_number: String,
    pub document_type: String,
    pub issuing_state: String,
    pub mrz: String,
    pub dg1: Vec<u8>,
    pub dg2: Option<Vec<u8>>,
    pub ef_com: Vec<u8>,
    pub ef_sod: Vec<u8>,
    pub signer_fingerprint: Option<Vec<u8>>,
    pub status: String,
    pub issued_at: OffsetDateTime,
    pub date_of_expiry: Option<Date>,
}

const SELECT: &str =
    "select id, document_number, document_type, issuing_state::text as issuing_state, mrz,
        dg1, dg2, ef_com, ef_sod, signer_certificate_fingerprint, status, issued_at, date_of_expiry
   from passports";

fn row(r: &sqlx::postgres::PgRow) -> Result<PassportRow, sqlx::Error> {
    Ok(PassportRow {
        id: r.try_get("id")?,
        document_number: r.try_get("document_number")?,
        document_type: r.try_get("document_type")?,
        issuing_state: r.try_get("issuing_state")?,
        mrz: r.try_get("mrz")?,
        dg1: r.try_get("dg1")?,
        dg2: r.try_get("dg2")?,
        ef_com: r.try_get("ef_com")?,
        ef_sod: r.try_get("ef_sod")?,
        signer_fingerprint: r.try_get("signer_certificate_fingerprint")?,
        status: r.try_get("status")?,
        issued_at: r.try_get("issued_at")?,
        date_of_expiry: r.try_get("date_of_expiry")?,
    })
}

/// Inserts a passport; `None` when the document number is taken in its issuing state.
pub async fn insert(
    conn: &mut PgConnection,
    p: &NewPassport<'_>,
) -> Result<Option<PassportRow>, sqlx::Error> {
    let sql = format!(
        "with ins as (
           insert into passports (document_number, document_type, issuing_state, holder_primary_name,
               holder_secondary_name, nationality, date_of_birth, sex, date_of_expiry, mrz, dg1, dg2,
               ef_com, ef_sod, signer_certificate_fingerprint)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           on conflict (issuing_state, document_number) do nothing
           returning *)
         {}",
        SELECT.replace("from passports", "from ins")
    );
    sqlx::query(&sql)
        .bind(p.document_number)
        .bind(p.document_type)
        .bind(p.issuing_state)
        .bind(p.primary)
        .bind(p.secondary)
        .bind(p.nationality)
        .bind(p.date_of_birth)
        .bind(p.sex.to_string())
        .bind(p.date_of_expiry)
        .bind(p.mrz)
        .bind(p.dg1)
        .bind(p.dg2)
        .bind(p.ef_com)
        .bind(p.ef_sod)
        .bind(p.signer_fingerprint)
        .fetch_optional(conn)
        .await?
        .map(|r| row(&r))
        .transpose()
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<PassportRow>, sqlx::Error> {
    sqlx::query(&format!("{SELECT} where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| row(&r))
        .transpose()
}

pub async fn by_number(
    conn: &mut PgConnection,
    number: &str,
) -> Result<Option<PassportRow>, sqlx::Error> {
    sqlx::query(&format!(
        "{SELECT} where document_number = $1 order by issued_at desc limit 1"
    ))
    .bind(number)
    .fetch_optional(conn)
    .await?
    .map(|r| row(&r))
    .transpose()
}

/// A page of passports, newest first, after the (issued_at, id) cursor.
pub async fn page(
    conn: &mut PgConnection,
    after: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<PassportRow>, sqlx::Error> {
    let (t, id) = after.unzip();
    sqlx::query(&format!(
        "{SELECT} where ($1::timestamptz is null or (issued_at, id) < ($1, $2))
          order by issued_at desc, id desc limit $3"
    ))
    .bind(t)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(row)
    .collect()
}

/// A recorded verification.
#[derive(Debug, sqlx::FromRow)]
pub struct ValidationRow {
    pub id: Uuid,
    pub requested_at: OffsetDateTime,
    pub verdict: String,
    pub report: serde_json::Value,
    pub requested_by: Option<String>,
    pub issued_here: bool,
    pub sod_sha256: Vec<u8>,
}

/// Recorded verifications, newest first, after the (time, id) of a previous page.
pub async fn validations(
    conn: &mut PgConnection,
    after: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<ValidationRow>, sqlx::Error> {
    let (t, id) = after.unzip();
    sqlx::query_as(
        "select id, requested_at, verdict, report, requested_by,
                passport_id is not null as issued_here, sod_sha256
           from validation_requests
          where ($1::timestamptz is null or (requested_at, id) < ($1, $2))
          order by requested_at desc, id desc limit $3",
    )
    .bind(t)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A verification to record.
#[derive(Debug)]
pub struct NewValidation {
    /// Chosen by the engine, so that a batch's callers know their row without relying on
    /// the order of `returning`.
    pub id: Uuid,
    pub sod_sha256: Vec<u8>,
    pub verdict: &'static str,
    pub report: serde_json::Value,
    pub requested_by: String,
}

/// Records a batch of verifications in one statement, each linked to the passport issued
/// here with the EF.SOD of its SHA-256, if any (an index on the digest).
pub async fn record_validations(
    conn: &mut PgConnection,
    records: &[NewValidation],
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let digests: Vec<Vec<u8>> = records.iter().map(|r| r.sod_sha256.clone()).collect();
    let verdicts: Vec<&str> = records.iter().map(|r| r.verdict).collect();
    let reports: Vec<&serde_json::Value> = records.iter().map(|r| &r.report).collect();
    let callers: Vec<&str> = records.iter().map(|r| r.requested_by.as_str()).collect();
    sqlx::query(
        "insert into validation_requests (id, passport_id, sod_sha256, verdict, report, requested_by)
         select i, (select p.id from passports p where sha256(p.ef_sod) = d limit 1), d, v, r, b
           from unnest($1::uuid[], $2::bytea[], $3::text[], $4::jsonb[], $5::text[]) as input(i, d, v, r, b)",
    )
    .bind(ids)
    .bind(digests)
    .bind(verdicts)
    .bind(reports)
    .bind(callers)
    .execute(conn)
    .await?;
    Ok(())
}

/// The version and age of a country's cached trust material, without the material.
#[derive(Debug, Clone)]
pub struct TrustStamp {
    pub version: String,
    pub fetched_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub async fn trust_stamp(
    conn: &mut PgConnection,
    country: &str,
) -> Result<Option<TrustStamp>, sqlx::Error> {
    let r = sqlx::query(
        "select version, fetched_at, expires_at from trust_cache where country_code = $1",
    )
    .bind(country)
    .fetch_optional(conn)
    .await?;
    r.map(|r| {
        Ok(TrustStamp {
            version: r.try_get("version")?,
            fetched_at: r.try_get("fetched_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Cached trust material of a country.
#[derive(Debug, Clone)]
pub struct CachedTrust {
    pub version: String,
    pub certificates: Vec<Vec<u8>>,
    pub crls: Vec<Vec<u8>>,
    pub fetched_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub async fn cached_trust(
    conn: &mut PgConnection,
    country: &str,
) -> Result<Option<CachedTrust>, sqlx::Error> {
    let r = sqlx::query(
        "select version, certificates, crls, fetched_at, expires_at from trust_cache where country_code = $1",
    )
    .bind(country)
    .fetch_optional(conn)
    .await?;
    r.map(|r| {
        Ok(CachedTrust {
            version: r.try_get("version")?,
            certificates: r.try_get("certificates")?,
            crls: r.try_get("crls")?,
            fetched_at: r.try_get("fetched_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Serialises, per country, the caching of trust material with the invalidations of events
/// (until the transaction ends).
pub async fn lock_country(conn: &mut PgConnection, country: &str) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock(hashtext('marty.trust_cache.' || $1))")
        .bind(country)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn store_trust(
    conn: &mut PgConnection,
    country: &str,
    t: &CachedTrust,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into trust_cache (country_code, version, certificates, crls, fetched_at, expires_at)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (country_code) do update set version = excluded.version,
             certificates = excluded.certificates, crls = excluded.crls,
             fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
    )
    .bind(country)
    .bind(&t.version)
    .bind(&t.certificates)
    .bind(&t.crls)
    .bind(t.fetched_at)
    .bind(t.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a country's cached trust material and verified chains (a CRL or a revocation
/// changed it).
/// What the PKD's material of a country must show before it is cached again.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub id: i64,
    /// A CRL of the country with at least this number (decimal).
    pub min_crl_number: Option<String>,
    /// … by the key with this identifier (any key of the country when `None`).
    pub crl_authority_key: Option<Vec<u8>>,
    /// A CSCA or link certificate with this fingerprint, marked revoked.
    pub revoked_fingerprint: Option<Vec<u8>>,
    pub announced_at: OffsetDateTime,
}

pub async fn expect(
    conn: &mut PgConnection,
    country: &str,
    min_crl_number: Option<(&str, Option<&[u8]>)>,
    revoked_fingerprint: Option<&[u8]>,
    event_id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into trust_expectations (country_code, min_crl_number, crl_authority_key,
             revoked_fingerprint, event_id)
         values ($1, $2::numeric, $3, $4, $5)",
    )
    .bind(country)
    .bind(min_crl_number.map(|(n, _)| n))
    .bind(min_crl_number.and_then(|(_, aki)| aki))
    .bind(revoked_fingerprint)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn expectations(
    conn: &mut PgConnection,
    country: &str,
) -> Result<Vec<Expectation>, sqlx::Error> {
    let rows = sqlx::query(
        "select id, min_crl_number::text as min_crl_number, crl_authority_key,
                revoked_fingerprint, announced_at
           from trust_expectations where country_code = $1 order by id",
    )
    .bind(country)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Expectation {
                id: r.try_get("id")?,
                min_crl_number: r.try_get("min_crl_number")?,
                crl_authority_key: r.try_get("crl_authority_key")?,
                revoked_fingerprint: r.try_get("revoked_fingerprint")?,
                announced_at: r.try_get("announced_at")?,
            })
        })
        .collect()
}

pub async fn met(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("delete from trust_expectations where id = any($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn invalidate(conn: &mut PgConnection, country: &str) -> Result<(), sqlx::Error> {
    sqlx::query("delete from trust_cache where country_code = $1")
        .bind(country)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
