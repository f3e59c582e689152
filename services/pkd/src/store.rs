//! The PKD's rows: `certificates`, `crls`, `master_lists`, `master_list_entries`,
//! `sync_jobs`. Every function takes the caller's connection or transaction.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

/// Where trust material came from (`source` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    LocalEvent,
    MasterList,
    ManualImport,
    Ldif,
}

impl Source {
    pub fn as_db(self) -> &'static str {
        match self {
            Source::LocalEvent => "local_event",
            Source::MasterList => "master_list",
            Source::ManualImport => "manual_import",
            Source::Ldif => "ldif",
        }
    }

    pub fn from_db(s: &str) -> Source {
        match s {
            "local_event" => Source::LocalEvent,
            "master_list" => Source::MasterList,
            "ldif" => Source::Ldif,
            _ => Source::ManualImport,
        }
    }
}

/// A certificate to store.
#[derive(Debug, Clone)]
pub struct NewCertificate<'a> {
    pub country: &'a str,
    pub kind: &'a str,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub serial: &'a [u8],
    pub ski: Option<&'a [u8]>,
    pub aki: Option<&'a [u8]>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub der: &'a [u8],
    pub fingerprint: &'a [u8],
    pub source: Source,
    pub source_reference: Option<String>,
    pub verified_by: Option<Uuid>,
}

/// A stored certificate.
#[derive(Debug, Clone)]
pub struct CertRow {
    pub id: Uuid,
    pub country: String,
    pub kind: String,
    pub subject_dn: String,
    pub serial: Vec<u8>,
    pub ski: Option<Vec<u8>>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub der: Vec<u8>,
    pub fingerprint: Vec<u8>,
    pub source: Source,
    pub revoked: bool,
}

/// The CSCA and link certificates that count as trust: not revoked, and for a country this
/// platform's own CSCA serves only those learnt from it — whatever a master list or download
/// brought for that country before (or after) its first own CSCA is kept, but never trusted.
const TRUSTED_ISSUER: &str =
    "kind in ('csca', 'link') and not revoked and (source = 'local_event' or country_code not in (
        select country_code from certificates where source = 'local_event' and kind = 'csca'))";

/// As [`TRUSTED_ISSUER`], revoked ones included: the signers a CRL may come from (a revoked
/// CSCA still signs the CRL that lists its own revocation).
const CRL_ISSUER: &str =
    "kind in ('csca', 'link') and (source = 'local_event' or country_code not in (
        select country_code from certificates where source = 'local_event' and kind = 'csca'))";

const CERT_SELECT: &str =
    "select id, country_code::text as country, kind, subject_dn, serial_number,
        subject_key_identifier, not_before, not_after, der, fingerprint_sha256, source, revoked
   from certificates";

fn cert_row(r: &PgRow) -> Result<CertRow, sqlx::Error> {
    Ok(CertRow {
        id: r.try_get("id")?,
        country: r.try_get("country")?,
        kind: r.try_get("kind")?,
        subject_dn: r.try_get("subject_dn")?,
        serial: r.try_get("serial_number")?,
        ski: r.try_get("subject_key_identifier")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        der: r.try_get("der")?,
        fingerprint: r.try_get("fingerprint_sha256")?,
        source: Source::from_db(r.try_get::<&str, _>("source")?),
        revoked: r.try_get("revoked")?,
    })
}

/// Stores a certificate unless one with its fingerprint is stored; returns its id and whether
/// it was added now.
pub async fn insert_certificate(
    conn: &mut PgConnection,
    c: &NewCertificate<'_>,
) -> Result<(Uuid, bool), sqlx::Error> {
    let added: Option<Uuid> = sqlx::query_scalar(
        "insert into certificates (country_code, kind, subject_dn, issuer_dn, serial_number,
             subject_key_identifier, authority_key_identifier, not_before, not_after, der,
             fingerprint_sha256, source, source_reference, verified_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         on conflict (fingerprint_sha256) do nothing
         returning id",
    )
    .bind(c.country)
    .bind(c.kind)
    .bind(&c.subject_dn)
    .bind(&c.issuer_dn)
    .bind(c.serial)
    .bind(c.ski)
    .bind(c.aki)
    .bind(c.not_before)
    .bind(c.not_after)
    .bind(c.der)
    .bind(c.fingerprint)
    .bind(c.source.as_db())
    .bind(c.source_reference.as_deref())
    .bind(c.verified_by)
    .fetch_optional(&mut *conn)
    .await?;
    match added {
        Some(id) => Ok((id, true)),
        None => {
            let id =
                sqlx::query_scalar("select id from certificates where fingerprint_sha256 = $1")
                    .bind(c.fingerprint)
                    .fetch_one(conn)
                    .await?;
            Ok((id, false))
        }
    }
}

/// What an issuer is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerOf {
    /// A certificate: trusted issuers only ([`TRUSTED_ISSUER`]).
    Certificate,
    /// A CRL: revoked issuers too ([`CRL_ISSUER`]).
    Crl,
}

/// CSCA and link certificates of `country` whose subject key identifier is `ski` (any, when
/// `None`): the candidates that may have signed a certificate or CRL of that country.
pub async fn issuers(
    conn: &mut PgConnection,
    country: &str,
    ski: Option<&[u8]>,
    of: IssuerOf,
) -> Result<Vec<CertRow>, sqlx::Error> {
    let condition = match of {
        IssuerOf::Certificate => TRUSTED_ISSUER,
        IssuerOf::Crl => CRL_ISSUER,
    };
    let sql = format!(
        "{CERT_SELECT} where country_code = $1 and {condition}
           and ($2::bytea is null or subject_key_identifier = $2)
         order by not_before"
    );
    sqlx::query(&sql)
        .bind(country)
        .bind(ski)
        .fetch_all(conn)
        .await?
        .iter()
        .map(cert_row)
        .collect()
}

/// CSCA and link certificates of the given countries: the issuers an import's certificates
/// are verified against.
pub async fn issuers_of(
    conn: &mut PgConnection,
    countries: &[String],
) -> Result<Vec<CertRow>, sqlx::Error> {
    let sql = format!(
        "{CERT_SELECT} where country_code = any($1) and {TRUSTED_ISSUER} order by not_before"
    );
    sqlx::query(&sql)
        .bind(countries)
        .fetch_all(conn)
        .await?
        .iter()
        .map(cert_row)
        .collect()
}

/// Which of these fingerprints are stored.
pub async fn stored_fingerprints(
    conn: &mut PgConnection,
    fingerprints: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "select fingerprint_sha256 from certificates where fingerprint_sha256 = any($1)",
    )
    .bind(fingerprints)
    .fetch_all(conn)
    .await
}

/// The certificate count of the stored master list with this fingerprint, if one is stored.
pub async fn stored_master_list(
    conn: &mut PgConnection,
    fingerprint: &[u8],
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("select certificate_count from master_lists where fingerprint_sha256 = $1")
        .bind(fingerprint)
        .fetch_optional(conn)
        .await
}

/// The ids of the stored certificates with these fingerprints.
pub async fn ids_of(
    conn: &mut PgConnection,
    fingerprints: &[Vec<u8>],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select id from certificates where fingerprint_sha256 = any($1)")
        .bind(fingerprints)
        .fetch_all(conn)
        .await
}

/// Stores many certificates in one statement (those whose fingerprint is stored are skipped);
/// returns the fingerprints of those added.
pub async fn insert_certificates(
    conn: &mut PgConnection,
    rows: &[NewCertificate<'_>],
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    let col = |f: &dyn Fn(&NewCertificate<'_>) -> Option<Vec<u8>>| -> Vec<Option<Vec<u8>>> {
        rows.iter().map(f).collect()
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "insert into certificates (country_code, kind, subject_dn, issuer_dn, serial_number,
             subject_key_identifier, authority_key_identifier, not_before, not_after, der,
             fingerprint_sha256, source, source_reference, verified_by)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
             $6::bytea[], $7::bytea[], $8::timestamptz[], $9::timestamptz[], $10::bytea[],
             $11::bytea[], $12::text[], $13::text[], $14::uuid[])
         on conflict (fingerprint_sha256) do nothing
         returning fingerprint_sha256",
    )
    .bind(rows.iter().map(|c| c.country).collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.kind).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|c| c.subject_dn.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|c| c.issuer_dn.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(col(&|c| Some(c.serial.to_vec())))
    .bind(col(&|c| c.ski.map(<[u8]>::to_vec)))
    .bind(col(&|c| c.aki.map(<[u8]>::to_vec)))
    .bind(rows.iter().map(|c| c.not_before).collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.not_after).collect::<Vec<_>>())
    .bind(col(&|c| Some(c.der.to_vec())))
    .bind(col(&|c| Some(c.fingerprint.to_vec())))
    .bind(rows.iter().map(|c| c.source.as_db()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|c| c.source_reference.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|c| c.verified_by).collect::<Vec<_>>())
    .fetch_all(conn)
    .await
}

/// Countries whose CSCAs this PKD learnt from its own CSCA service.
pub async fn local_countries(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select distinct country_code::text from certificates
          where source = 'local_event' and kind = 'csca'",
    )
    .fetch_all(conn)
    .await
}

/// Whether the certificate with this fingerprint is stored and revoked.
pub async fn is_revoked(conn: &mut PgConnection, fingerprint: &[u8]) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, bool>(
        "select revoked from certificates where fingerprint_sha256 = $1",
    )
    .bind(fingerprint)
    .fetch_optional(conn)
    .await?
    .unwrap_or(false))
}

/// Marks a certificate this country's CSCA issued revoked (idempotent): foreign trust material
/// is revoked only by its own CRLs. Returns whether it was found.
pub async fn mark_revoked(
    conn: &mut PgConnection,
    fingerprint: &[u8],
    at: Option<OffsetDateTime>,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "update certificates set revoked = true, revoked_at = coalesce(revoked_at, $2)
          where fingerprint_sha256 = $1 and source = 'local_event'",
    )
    .bind(fingerprint)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Marks revoked the certificates a CRL lists: same issuer name, issued under the key that
/// signed the CRL (authority key identifier), listed serial. Certificates this platform's
/// CSCA issued are revoked only by a CRL whose signer the PKD learnt from that CSCA
/// (`local_signer`): a foreign key of the same name revokes nothing of ours.
pub async fn mark_listed_revoked(
    conn: &mut PgConnection,
    issuer_dn: &str,
    aki: &[u8],
    local_signer: bool,
    serials: &[Vec<u8>],
    times: &[OffsetDateTime],
) -> Result<u64, sqlx::Error> {
    let n = sqlx::query(
        "update certificates c set revoked = true, revoked_at = coalesce(c.revoked_at, l.at)
           from unnest($2::bytea[], $3::timestamptz[]) as l(serial, at)
          where c.issuer_dn = $1 and c.serial_number = l.serial and not c.revoked
            and c.authority_key_identifier = $4
            and (c.source <> 'local_event' or $5)",
    )
    .bind(issuer_dn)
    .bind(serials)
    .bind(times)
    .bind(aki)
    .bind(local_signer)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n)
}

/// A CRL to store.
#[derive(Debug, Clone)]
pub struct NewCrl<'a> {
    pub country: &'a str,
    pub issuer_dn: String,
    pub aki: &'a [u8],
    pub crl_number: String,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    pub der: &'a [u8],
    pub fingerprint: &'a [u8],
    pub source: Source,
}

/// Stores a CRL unless it (or another with the same issuer key and number) is stored;
/// returns whether it was added.
pub async fn insert_crl(conn: &mut PgConnection, c: &NewCrl<'_>) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "insert into crls (country_code, issuer_dn, authority_key_identifier, crl_number,
             this_update, next_update, der, fingerprint_sha256, source)
         values ($1, $2, $3, $4::numeric, $5, $6, $7, $8, $9)
         on conflict do nothing",
    )
    .bind(c.country)
    .bind(&c.issuer_dn)
    .bind(c.aki)
    .bind(&c.crl_number)
    .bind(c.this_update)
    .bind(c.next_update)
    .bind(c.der)
    .bind(c.fingerprint)
    .bind(c.source.as_db())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// A stored CRL.
#[derive(Debug, Clone)]
pub struct CrlRow {
    pub country: String,
    pub aki: Vec<u8>,
    pub crl_number: String,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    pub der: Vec<u8>,
    pub fingerprint: Vec<u8>,
    pub source: Source,
}

fn crl_row(r: &PgRow) -> Result<CrlRow, sqlx::Error> {
    Ok(CrlRow {
        country: r.try_get("country")?,
        aki: r.try_get("authority_key_identifier")?,
        crl_number: r.try_get("crl_number")?,
        this_update: r.try_get("this_update")?,
        next_update: r.try_get("next_update")?,
        der: r.try_get("der")?,
        fingerprint: r.try_get("fingerprint_sha256")?,
        source: Source::from_db(r.try_get::<&str, _>("source")?),
    })
}

/// The trust material of `country` (every country when `None`): CSCA and link certificates,
/// and the latest CRL of each issuer key. With `ski`, only certificates with that subject key
/// identifier and CRLs with that authority key identifier.
pub async fn trust_material(
    conn: &mut PgConnection,
    country: Option<&str>,
    ski: Option<&[u8]>,
) -> Result<(Vec<CertRow>, Vec<CrlRow>), sqlx::Error> {
    // Revoked ones are returned (flagged) so that verifiers see them; a foreign certificate
    // of this platform's own countries is not.
    let sql = format!(
        "{CERT_SELECT} where kind in ('csca', 'link')
           and (source = 'local_event' or country_code not in (
               select country_code from certificates where source = 'local_event' and kind = 'csca'))
           and ($1::text is null or country_code = $1)
           and ($2::bytea is null or subject_key_identifier = $2)
         order by country_code, not_before, fingerprint_sha256"
    );
    let certs = sqlx::query(&sql)
        .bind(country)
        .bind(ski)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(cert_row)
        .collect::<Result<Vec<_>, _>>()?;
    let crls = sqlx::query(
        "select distinct on (country_code, authority_key_identifier)
                country_code::text as country, authority_key_identifier, crl_number::text,
                this_update, next_update, der, fingerprint_sha256, source
           from crls
          where ($1::text is null or country_code = $1)
            and ($2::bytea is null or authority_key_identifier = $2)
            -- as for certificates: a country this platform's CSCA serves has its CRLs only
            and (source = 'local_event' or country_code not in (
                select country_code from certificates where source = 'local_event' and kind = 'csca'))
          order by country_code, authority_key_identifier, crl_number desc",
    )
    .bind(country)
    .bind(ski)
    .fetch_all(conn)
    .await?
    .iter()
    .map(crl_row)
    .collect::<Result<Vec<_>, _>>()?;
    Ok((certs, crls))
}

/// The latest CRL of each issuer key of `country`.
pub async fn latest_crls(
    conn: &mut PgConnection,
    country: &str,
) -> Result<Vec<CrlRow>, sqlx::Error> {
    Ok(trust_material(conn, Some(country), None).await?.1)
}

/// Every Document Signer certificate, by country.
pub async fn document_signers(conn: &mut PgConnection) -> Result<Vec<CertRow>, sqlx::Error> {
    let sql = format!(
        "{CERT_SELECT} where kind = 'document_signer' order by country_code, not_before, fingerprint_sha256"
    );
    sqlx::query(&sql)
        .fetch_all(conn)
        .await?
        .iter()
        .map(cert_row)
        .collect()
}

/// Certificates by country and kind, for listing.
pub async fn list(
    conn: &mut PgConnection,
    country: Option<&str>,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<CertRow>, sqlx::Error> {
    let sql = format!(
        "{CERT_SELECT} where ($1::text is null or country_code = $1)
           and ($2::text is null or kind = $2)
         order by country_code, kind, not_before, fingerprint_sha256 limit $3"
    );
    sqlx::query(&sql)
        .bind(country)
        .bind(kind)
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(cert_row)
        .collect()
}

/// An imported or published master list.
#[derive(Debug, Clone)]
pub struct NewMasterList<'a> {
    pub direction: &'a str,
    pub issuer_country: &'a str,
    pub signer_subject_dn: Option<String>,
    pub signing_time: Option<OffsetDateTime>,
    pub certificate_count: i32,
    pub der: &'a [u8],
    pub fingerprint: &'a [u8],
    pub report: serde_json::Value,
}

/// Stores a master list; `None` when the same file is stored already.
pub async fn insert_master_list(
    conn: &mut PgConnection,
    m: &NewMasterList<'_>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "insert into master_lists (direction, issuer_country, signer_subject_dn, signing_time,
             certificate_count, der, fingerprint_sha256, signature_verified, verification_report)
         values ($1, $2, $3, $4, $5, $6, $7, true, $8)
         on conflict (fingerprint_sha256) do nothing
         returning id",
    )
    .bind(m.direction)
    .bind(m.issuer_country)
    .bind(&m.signer_subject_dn)
    .bind(m.signing_time)
    .bind(m.certificate_count)
    .bind(m.der)
    .bind(m.fingerprint)
    .bind(&m.report)
    .fetch_optional(conn)
    .await
}

pub async fn insert_master_list_entries(
    conn: &mut PgConnection,
    master_list: Uuid,
    certificates: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into master_list_entries (master_list_id, certificate_id)
         select $1, c from unnest($2::uuid[]) as c on conflict do nothing",
    )
    .bind(master_list)
    .bind(certificates)
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest master list this PKD published: (DER, fingerprint).
pub async fn latest_published(
    conn: &mut PgConnection,
    country: Option<&str>,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "select der, fingerprint_sha256 from master_lists where direction = 'published'
            and ($1::text is null or issuer_country = $1)
          order by created_at desc limit 1",
    )
    .bind(country)
    .fetch_optional(conn)
    .await
}

/// A sync job, recorded as running from now.
pub async fn start_job(
    conn: &mut PgConnection,
    kind: &str,
    source: &str,
    items_total: i32,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into sync_jobs (kind, status, source, started_at, items_total, items_done)
         values ($1, 'running', $2, now(), $3, 0) returning id",
    )
    .bind(kind)
    .bind(source)
    .bind(items_total)
    .fetch_one(conn)
    .await
}

/// Ends a job: succeeded with `items_done`, or failed with `error`.
pub async fn finish_job(
    conn: &mut PgConnection,
    id: Uuid,
    items_done: i32,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update sync_jobs set status = case when $3::text is null then 'succeeded' else 'failed' end,
                finished_at = greatest(now(), started_at), items_done = least($2, items_total), error = $3
          where id = $1",
    )
    .bind(id)
    .bind(items_done)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// A recorded job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub source: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub items_total: Option<i32>,
    pub items_done: Option<i32>,
    pub error: Option<String>,
}

pub async fn jobs(conn: &mut PgConnection, limit: i64) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, kind, status, source, started_at, finished_at, items_total, items_done, error
           from sync_jobs order by created_at desc limit $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}
