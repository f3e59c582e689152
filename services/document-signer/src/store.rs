//! The Document Signer's rows: `signer_keys`, `signer_certificates`, `signature_audit`.
//! Every function takes the caller's connection or transaction.

use marty_icao::cert::Certificate;
use marty_keys::SealedKey;
use marty_keys::table::SEALED_COLUMNS;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

/// A signer: a key with its certificate.
#[derive(Debug, Clone)]
pub struct SignerRow {
    pub key_id: Uuid,
    pub certificate_id: Uuid,
    pub country: String,
    pub document_type: String,
    pub key_spec: Option<String>,
    pub status: String,
    pub der: Vec<u8>,
    pub serial: Vec<u8>,
    pub fingerprint: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key_usage_not_before: Option<OffsetDateTime>,
    pub key_usage_not_after: Option<OffsetDateTime>,
}

const SIGNER_SELECT: &str =
    "select k.id as key_id, c.id as certificate_id, k.country_code::text as country,
        k.document_type, k.key_spec, k.status, c.der, c.serial_number, c.fingerprint_sha256,
        c.not_before, c.not_after, c.private_key_usage_not_before, c.private_key_usage_not_after
   from signer_keys k
   join signer_certificates c on c.signer_key_id = k.id";

fn signer_row(r: &PgRow) -> Result<SignerRow, sqlx::Error> {
    Ok(SignerRow {
        key_id: r.try_get("key_id")?,
        certificate_id: r.try_get("certificate_id")?,
        country: r.try_get("country")?,
        document_type: r.try_get("document_type")?,
        key_spec: r.try_get("key_spec")?,
        status: r.try_get("status")?,
        der: r.try_get("der")?,
        serial: r.try_get("serial_number")?,
        fingerprint: r.try_get("fingerprint_sha256")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        key_usage_not_before: r.try_get("private_key_usage_not_before")?,
        key_usage_not_after: r.try_get("private_key_usage_not_after")?,
    })
}

/// The active signer of (country, document type).
pub async fn active(
    conn: &mut PgConnection,
    country: &str,
    document_type: &str,
) -> Result<Option<SignerRow>, sqlx::Error> {
    let sql = format!(
        "{SIGNER_SELECT} where k.country_code = $1 and k.document_type = $2 and k.status = 'active'
          order by c.received_at desc limit 1"
    );
    sqlx::query(&sql)
        .bind(country)
        .bind(document_type)
        .fetch_optional(conn)
        .await?
        .map(|r| signer_row(&r))
        .transpose()
}

/// The signing lock of (country, document type), until the caller's transaction ends:
/// shared by signatures, exclusive for retiring a signer.
async fn signing_lock(
    conn: &mut PgConnection,
    country: &str,
    document_type: &str,
    exclusive: bool,
) -> Result<(), sqlx::Error> {
    let sql = if exclusive {
        "select pg_advisory_xact_lock(hashtext('marty_ds_signing'), hashtext($1 || '/' || $2))"
    } else {
        "select pg_advisory_xact_lock_shared(hashtext('marty_ds_signing'), hashtext($1 || '/' || $2))"
    };
    sqlx::query(sql)
        .bind(country)
        .bind(document_type)
        .execute(conn)
        .await?;
    Ok(())
}

/// As [`active`], under the signing lock taken shared until the caller's transaction ends: a
/// retirement waits for every signature in progress with the key, and no signature starts
/// with it after the retirement committed. The lock is taken in a statement of its own, before
/// the one that reads the signer, so that the read sees what committed before the lock was
/// granted.
pub async fn active_for_signing(
    conn: &mut PgConnection,
    country: &str,
    document_type: &str,
) -> Result<Option<SignerRow>, sqlx::Error> {
    signing_lock(conn, country, document_type, false).await?;
    active(conn, country, document_type).await
}

/// Every active signer.
pub async fn all_active(conn: &mut PgConnection) -> Result<Vec<SignerRow>, sqlx::Error> {
    let sql = format!(
        "{SIGNER_SELECT} where k.status = 'active' order by k.country_code, k.document_type"
    );
    let rows = sqlx::query(&sql).fetch_all(conn).await?;
    rows.iter().map(signer_row).collect()
}

/// The sealed private key of a signer.
pub async fn sealed_key(
    conn: &mut PgConnection,
    key_id: Uuid,
) -> Result<Option<SealedKey>, sqlx::Error> {
    sqlx::query(&format!(
        "select {SEALED_COLUMNS} from signer_keys where id = $1"
    ))
    .bind(key_id)
    .fetch_optional(conn)
    .await?
    .map(|r| SealedKey::from_row(&r))
    .transpose()
}

/// A key generated and sealed, waiting for its certificate.
#[derive(Debug)]
pub struct PendingKey<'a> {
    pub sealed: &'a SealedKey,
    pub country: &'a str,
    pub document_type: &'a str,
    pub key_spec: &'a marty_icao::issue::KeySpec,
}

pub async fn insert_pending(
    conn: &mut PgConnection,
    key: PendingKey<'_>,
) -> Result<(), sqlx::Error> {
    let (algorithm, size) = match key.key_spec {
        marty_icao::issue::KeySpec::Ec { curve, .. } => ("ecdsa", curve.name().to_owned()),
        marty_icao::issue::KeySpec::Rsa { bits } => ("rsa", bits.to_string()),
        marty_icao::issue::KeySpec::RsaPss { bits } => ("rsassa-pss", bits.to_string()),
    };
    let s = key.sealed;
    let sql = format!(
        "insert into signer_keys ({SEALED_COLUMNS}, key_label, country_code, document_type,
                algorithm, curve_or_size, key_spec, status)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'pending_certificate')"
    );
    let key_spec = key.key_spec.to_string();
    marty_keys::table::bind_sealed(sqlx::query(&sql), s)
        .bind(format!(
            "ds-{}-{}-{}",
            key.country, key.document_type, s.key_id
        ))
        .bind(key.country)
        .bind(key.document_type)
        .bind(algorithm)
        .bind(size)
        .bind(&key_spec)
        .execute(conn)
        .await?;
    Ok(())
}

/// A key the CSCA did not certify goes away: nothing ever referred to it.
pub async fn delete_pending(conn: &mut PgConnection, key_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("delete from signer_keys where id = $1 and status = 'pending_certificate'")
        .bind(key_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keys left pending by a process that died between the CSR and the activation: retired so
/// that they never sign (the CSCA may have certified them; the certificate is unused).
pub async fn retire_abandoned_pending(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "update signer_keys set status = 'retired', retired_at = now(), retirement_reason = 'not_activated'
          where status = 'pending_certificate' and created_at < now() - interval '10 minutes'",
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Activates `key_id` with its certificate: the certificate is stored, the current active
/// signer of (country, document type) retires with `retired_because`, the key becomes active.
pub async fn activate(
    conn: &mut PgConnection,
    key_id: Uuid,
    dsc: &Certificate,
    csca: &Certificate,
    retired_because: &str,
) -> Result<Option<SignerRow>, sqlx::Error> {
    let (pkup_nb, pkup_na) = dsc.private_key_usage_period.unwrap_or((None, None));
    let (country, document_type): (String, String) = sqlx::query_as(
        "select country_code::text, document_type from signer_keys where id = $1 and status = 'pending_certificate' for update",
    )
    .bind(key_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| sqlx::Error::RowNotFound)?;
    // One activation per (country, document type) at a time, across processes.
    sqlx::query(
        "select pg_advisory_xact_lock(hashtext('marty_ds_activation'), hashtext($1 || '/' || $2))",
    )
    .bind(&country)
    .bind(&document_type)
    .execute(&mut *conn)
    .await?;
    // The signing lock first: the retirement is dated after the signatures in progress with
    // the old key.
    signing_lock(conn, &country, &document_type, true).await?;
    sqlx::query(
        "update signer_keys set status = 'retired', retired_at = clock_timestamp(), retirement_reason = $3
          where country_code = $1 and document_type = $2 and status = 'active'",
    )
    .bind(&country)
    .bind(&document_type)
    .bind(retired_because)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "insert into signer_certificates (signer_key_id, der, fingerprint_sha256, serial_number, issuer_dn,
                subject_dn, subject_key_identifier, not_before, not_after,
                private_key_usage_not_before, private_key_usage_not_after, csca_der)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(key_id)
    .bind(&dsc.raw)
    .bind(dsc.fingerprint_sha256())
    .bind(&dsc.serial)
    .bind(dsc.issuer.to_string())
    .bind(dsc.subject.to_string())
    .bind(&dsc.subject_key_id)
    .bind(dsc.not_before)
    .bind(dsc.not_after)
    .bind(pkup_nb)
    .bind(pkup_na)
    .bind(&csca.raw)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update signer_keys set status = 'active', activated_at = now(),
                private_key_usage_not_before = $2, private_key_usage_not_after = $3
          where id = $1",
    )
    .bind(key_id)
    .bind(pkup_nb)
    .bind(pkup_na)
    .execute(&mut *conn)
    .await?;
    active(conn, &country, &document_type).await
}

/// Records the CSCA's revocation of a DSC and retires its key at once. Returns the key's
/// (country, document type) if the key was active.
pub async fn retire_revoked(
    conn: &mut PgConnection,
    fingerprint: &[u8],
    revoked_at: Option<OffsetDateTime>,
    reason: Option<i16>,
) -> Result<Option<(Uuid, String, String)>, sqlx::Error> {
    let key: Option<Uuid> = sqlx::query_scalar(
        "update signer_certificates set revoked_at = coalesce($2, now()), revocation_reason = $3
          where fingerprint_sha256 = $1 returning signer_key_id",
    )
    .bind(fingerprint)
    .bind(revoked_at)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(key) = key else {
        return Ok(None);
    };
    let (country, document_type): (String, String) =
        sqlx::query_as("select country_code::text, document_type from signer_keys where id = $1")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
    // The signing lock first: it waits for every signature in progress with the key (and the
    // retirement is dated in the statement after it, so after those signatures).
    signing_lock(conn, &country, &document_type, true).await?;
    sqlx::query_as(
        "update signer_keys set status = 'retired', retired_at = clock_timestamp(), retirement_reason = 'revoked'
          where id = $1 and status <> 'retired'
          returning id, country_code::text, document_type",
    )
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// (fingerprint, DER) of the certificates of active signers.
pub async fn active_certificates(
    conn: &mut PgConnection,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "select c.fingerprint_sha256, c.der from signer_certificates c
           join signer_keys k on k.id = c.signer_key_id where k.status = 'active'",
    )
    .fetch_all(conn)
    .await
}

/// (country, document type, key spec) of signers retired for a revocation that have no
/// signer since: the replacement gets the same kind of key.
pub async fn revoked_without_successor(
    conn: &mut PgConnection,
) -> Result<Vec<(String, String, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "select distinct on (k.country_code, k.document_type) k.country_code::text, k.document_type, k.key_spec
           from signer_keys k
          where k.status = 'retired' and k.retirement_reason = 'revoked'
            and not exists (select 1 from signer_keys n
                             where n.country_code = k.country_code and n.document_type = k.document_type
                               and (n.status = 'active' or n.created_at > k.retired_at))
          order by k.country_code, k.document_type, k.retired_at desc",
    )
    .fetch_all(conn)
    .await
}

/// What the audit records of one signature.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub signer: &'a SignerRow,
    pub document_reference: Option<&'a str>,
    pub digest_algorithm: &'a str,
    pub signature_algorithm: &'a str,
    pub content_sha256: &'a [u8],
    pub output_sha256: Vec<u8>,
    pub requested_by: &'a str,
    pub kind: &'static str,
}

/// Inserts the audit rows of a batch in one statement; returns their ids in `entries` order.
/// (The ids come from one identity sequence, drawn row by row in the statement's order.)
pub async fn insert_audits(
    conn: &mut PgConnection,
    entries: &[AuditEntry<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let col =
        |f: &dyn Fn(&AuditEntry<'_>) -> String| entries.iter().map(f).collect::<Vec<String>>();
    let keys: Vec<Uuid> = entries.iter().map(|e| e.signer.key_id).collect();
    let certs: Vec<Uuid> = entries.iter().map(|e| e.signer.certificate_id).collect();
    let refs: Vec<Option<String>> = entries
        .iter()
        .map(|e| e.document_reference.map(str::to_owned))
        .collect();
    let contents: Vec<Vec<u8>> = entries.iter().map(|e| e.content_sha256.to_vec()).collect();
    let outputs: Vec<Vec<u8>> = entries.iter().map(|e| e.output_sha256.clone()).collect();
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "insert into signature_audit (signer_key_id, certificate_id, document_number, digest_algorithm,
                signature_algorithm, lds_security_object_sha256, sod_sha256, requested_by, kind, signed_at)
         select k, c, d, h, s, l, o, r, t, clock_timestamp()
           from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::text[], $9::text[])
                with ordinality as input(k, c, d, h, s, l, o, r, t, n)
          order by n
         returning id",
    )
    .bind(keys)
    .bind(certs)
    .bind(refs)
    .bind(col(&|e| e.digest_algorithm.to_owned()))
    .bind(col(&|e| e.signature_algorithm.to_owned()))
    .bind(contents)
    .bind(outputs)
    .bind(col(&|e| e.requested_by.to_owned()))
    .bind(col(&|e| e.kind.to_owned()))
    .fetch_all(conn)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// One audit record with the signer's serial.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub document_number: Option<String>,
    pub digest_algorithm: String,
    pub signature_algorithm: String,
    pub lds_security_object_sha256: Vec<u8>,
    pub serial_number: Vec<u8>,
    pub signed_at: OffsetDateTime,
    pub requested_by: Option<String>,
    pub kind: String,
}

/// Audit records newest first, below `before` (an id) when paging.
pub async fn list_audit(
    conn: &mut PgConnection,
    before: Option<i64>,
    document_reference: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "select a.id, a.document_number, a.digest_algorithm, a.signature_algorithm,
                a.lds_security_object_sha256, c.serial_number, a.signed_at, a.requested_by, a.kind
           from signature_audit a join signer_certificates c on c.id = a.certificate_id
          where ($1::bigint is null or a.id < $1) and ($2::text is null or a.document_number = $2)
          order by a.id desc limit $3",
    )
    .bind(before)
    .bind(document_reference)
    .bind(limit)
    .fetch_all(conn)
    .await
}
